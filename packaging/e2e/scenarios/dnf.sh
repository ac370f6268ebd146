# Scenario 2: the al2023 guest (Amazon Linux os-release, local RPM repo of
# stub packages): the packages step ran real dnf.
set -u
cp /var/lib/ccboot/state.json "$o/state-boot.json" 2>/dev/null
systemctl is-active ccboot >"$o/is-active.txt" 2>&1
rpm -q unzip git jq nodejs22 nodejs22-npm docker >"$o/rpm-q.txt" 2>&1
cp /var/log/dnf.rpm.log "$o/" 2>/dev/null || true
. /etc/os-release && echo "$ID $VERSION_ID" >"$o/os.txt"
capture check cc status --check --format json
exit 0
