#!/usr/bin/env bash
# Smoke test of the e2e harness itself (no ccboot involved):
#   1. the cache (built on first use)
#   2. a loopback-only netns with the metadata mock, checked from the host
#   3. nspawn, Debian: user-data reads the region over IMDSv2 and
#      apt-get installs jq from the local repository; the probe reports
#   4. nspawn, al2023: the same with dnf from the local RPM repository;
#      then nspawn --state: a guest reboot keeps its changes
#   5. QEMU (CCBOOT_E2E_QEMU=0 skips it): user-data reads the region at
#      169.254.169.254, makes a 64 MiB swapfile, swapon, fstab line; the
#      probe reboots the guest once and the second boot must have the swap
#      back from fstab
# Prints a timing line per phase. Exit 0 when every check passed.
#
# Env: CCBOOT_E2E_QEMU=0 skip QEMU; CCBOOT_E2E_SMOKE_DIR=DIR keep the
# results there (default: a temp dir, deleted on success).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

keep=0
if [[ -n ${CCBOOT_E2E_SMOKE_DIR:-} ]]; then
	work=$CCBOOT_E2E_SMOKE_DIR
	keep=1
	e2e_require_empty_dir "$work"
else
	work=$(mktemp -d "${TMPDIR:-/var/tmp}/ccboot-e2e-smoke.XXXXXX")
fi
work=$(realpath "$work")
E2E_TIMINGS=$work/timings
: >"$E2E_TIMINGS"
failures=0
ns=''
cleanup() {
	if [[ -n ${E2E_MOCK_PID:-} ]]; then e2e_mock_stop "$E2E_MOCK_PID"; fi
	if [[ -n $ns ]]; then e2e_netns_delete "$ns"; fi
	if ((failures == 0 && keep == 0)); then rm -rf "$work"; else e2e_log "results kept in $work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

check() {
	local desc=$1
	shift
	if "$@"; then
		e2e_log "ok: $desc"
	else
		e2e_log "FAIL: $desc"
		failures=$((failures + 1))
	fi
}
has_line() { grep -qx -- "$2" "$1" 2>/dev/null; }
ci_done() { [[ $(jq -r .status "$1/cloud-init-status.json" 2>/dev/null) == "done" ]]; }

region=us-west-2
t_all=$(e2e_now)

# 1. cache
t=$(e2e_now)
e2e_cache_ensure
e2e_timing cache "$t"
e2e_log "cache: $E2E_CACHE ($(du -sh "$E2E_CACHE" | cut -f1))"

# 2. netns + mock, shared by the boots below
t=$(e2e_now)
ns=$(e2e_ns_name ccboot-e2e-smoke)
e2e_netns_create "$ns"
e2e_mock_config "$region" 111122223333 i-0e2e0000000000001 claudecode-ec2-demo >"$work/mock.json"
e2e_mock_start "$ns" "$work/mock.json" "$work/mock"
e2e_timing mock-start "$t"
check "mock: placement/region over IMDSv2" \
	test "$(e2e_mock_get "$ns" /latest/meta-data/placement/region)" == "$region"
check "mock: iam/info InstanceProfileArn" test "$(e2e_mock_get "$ns" /latest/meta-data/iam/info | jq -r .InstanceProfileArn)" \
	== arn:aws:iam::111122223333:instance-profile/claudecode-ec2-demo
check "mock: identity document region/account agree" test "$(e2e_mock_get "$ns" /latest/dynamic/instance-identity/document | jq -r '.region + " " + .accountId')" \
	== "$region 111122223333"
check "mock: IMDSv1 (no token) refused with 401" test "$(ip netns exec "$ns" curl -s -o /dev/null -w '%{http_code}' \
	http://127.0.0.1:1338/latest/meta-data/placement/region)" == 401
check "netns: only loopback" test "$(ip -n "$ns" -o link show | grep -vc ': lo:')" == 0

# user-data for the nspawn boots: IMDS on 127.0.0.1:1338 (shared netns)
write_seed() { # DIR INSTALL-COMMAND IMDS-URL
	mkdir -p "$1"
	cat >"$1/user-data" <<-EOF
		#!/bin/sh
		set -eu
		imds=$3
		token=\$(curl -sSf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "\$imds/latest/api/token")
		curl -sSf -H "X-aws-ec2-metadata-token: \$token" "\$imds/latest/meta-data/placement/region" >/var/tmp/e2e-region
		$2
	EOF
	printf 'instance-id: i-0e2e0000000000001\nlocal-hostname: ccboot-e2e\n' >"$1/meta-data"
}
mkdir -p "$work/dist"
echo "dist-ok" >"$work/dist/hello"
cat >"$work/probe-pkg.sh" <<'EOF'
set -u
. /etc/os-release
echo "os=$ID"
echo "dist=$(cat /srv/dist/hello)"
echo "region=$(cat /var/tmp/e2e-region)"
echo "jq=$(jq --version)"
echo "ec2-user=$(getent passwd ec2-user | cut -d: -f3,6,7)"
if getent hosts deb.debian.org >/dev/null 2>&1; then echo "dns=resolves"; else echo "dns=none"; fi
EOF

# 3. nspawn, Debian, apt
write_seed "$work/seed-debian" "apt-get install -y --no-install-recommends jq" http://127.0.0.1:1338
t=$(e2e_now)
rc=0
"$here/boot-nspawn.sh" --netns "$ns" --seed "$work/seed-debian" --out "$work/nspawn-debian" \
	--probe "$work/probe-pkg.sh" --dist "$work/dist" --timeout 300 || rc=$?
e2e_timing nspawn-debian "$t"
o=$work/nspawn-debian/boot-1
check "nspawn debian: boot finished (rc $rc)" test "$rc" == 0
check "nspawn debian: cloud-init status done" ci_done "$o"
check "nspawn debian: region from the mock" has_line "$o/probe.out" "region=$region"
check "nspawn debian: jq installed from /srv/repo" grep -q '^jq=jq-1\.' "$o/probe.out"
check "nspawn debian: os-release ID" has_line "$o/probe.out" "os=debian"
check "nspawn debian: ec2-user uid 1000" has_line "$o/probe.out" "ec2-user=1000:/home/ec2-user:/bin/bash"
check "nspawn debian: resolves nothing" has_line "$o/probe.out" "dns=none"
check "nspawn debian: /srv/dist" has_line "$o/probe.out" "dist=dist-ok"

# 4. nspawn, al2023, dnf
write_seed "$work/seed-al2023" "dnf install -y jq" http://127.0.0.1:1338
t=$(e2e_now)
rc=0
"$here/boot-nspawn.sh" --netns "$ns" --variant al2023 --seed "$work/seed-al2023" \
	--out "$work/nspawn-al2023" --probe "$work/probe-pkg.sh" --timeout 300 || rc=$?
e2e_timing nspawn-al2023 "$t"
o=$work/nspawn-al2023/boot-1
check "nspawn al2023: boot finished (rc $rc)" test "$rc" == 0
check "nspawn al2023: cloud-init status done" ci_done "$o"
check "nspawn al2023: region from the mock" has_line "$o/probe.out" "region=$region"
check "nspawn al2023: jq installed by dnf" has_line "$o/probe.out" "jq=jq-1.7.1"
check "nspawn al2023: os-release ID" has_line "$o/probe.out" "os=amzn"

# 4b. nspawn with --state: a reboot keeps the guest's changes, and the host
# sees them in STATE/upper afterwards
write_seed "$work/seed-state" "echo first-boot >/var/tmp/e2e-marker" http://127.0.0.1:1338
cat >"$work/probe-state.sh" <<'EOF'
echo "marker=$(cat /var/tmp/e2e-marker)"
if [ "$E2E_BOOT" = 1 ]; then touch "$E2E_OUT/reboot"; fi
EOF
t=$(e2e_now)
rc=0
"$here/boot-nspawn.sh" --netns "$ns" --seed "$work/seed-state" --out "$work/nspawn-state" \
	--state "$work/state" --probe "$work/probe-state.sh" --timeout 300 || rc=$?
e2e_timing nspawn-state-2-boots "$t"
o=$work/nspawn-state
check "nspawn --state: finished after 2 boots (rc $rc)" test "$(cat "$o/done" 2>/dev/null)" == 2
check "nspawn --state: boot 2 sees boot 1's file" has_line "$o/boot-2/probe.out" "marker=first-boot"
check "nspawn --state: host sees it in STATE/upper" test -f "$work/state/upper/var/tmp/e2e-marker"

# 5. QEMU: swap + fstab + one reboot
if [[ ${CCBOOT_E2E_QEMU:-1} != 0 ]]; then
	write_seed "$work/seed-qemu" "dd if=/dev/zero of=/swapfile bs=1M count=64 status=none
		chmod 600 /swapfile
		mkswap /swapfile >/dev/null
		swapon /swapfile
		echo '/swapfile none swap sw 0 0' >>/etc/fstab" http://169.254.169.254
	cat >"$work/probe-qemu.sh" <<-'EOF'
		set -u
		echo "boot=$E2E_BOOT"
		echo "region=$(cat /var/tmp/e2e-region)"
		echo "kernel=$(uname -r)"
		echo "dist=$(cat /srv/dist/hello)"
		awk 'NR > 1 {print "swap=" $1 " " $3}' /proc/swaps
		# Ask the harness for one reboot.
		if [ "$E2E_BOOT" = 1 ]; then touch "$E2E_OUT/reboot"; fi
	EOF
	t=$(e2e_now)
	rc=0
	"$here/boot-qemu.sh" --netns "$ns" --seed "$work/seed-qemu" --out "$work/qemu" \
		--probe "$work/probe-qemu.sh" --dist "$work/dist" --timeout 1500 || rc=$?
	e2e_timing qemu-2-boots "$t"
	o=$work/qemu
	check "qemu: finished after 2 boots (rc $rc)" test "$(cat "$o/done" 2>/dev/null)" == 2
	check "qemu: boot 1 cloud-init done" ci_done "$o/boot-1"
	check "qemu: boot 1 region via 169.254.169.254" has_line "$o/boot-1/probe.out" "region=$region"
	check "qemu: boot 1 swapon 64 MiB" has_line "$o/boot-1/probe.out" "swap=/swapfile 65532"
	check "qemu: boot 2 cloud-init done" ci_done "$o/boot-2"
	check "qemu: boot 2 swap back from fstab" has_line "$o/boot-2/probe.out" "swap=/swapfile 65532"
	check "qemu: /srv/dist" has_line "$o/boot-1/probe.out" "dist=dist-ok"
	for b in 1 2; do
		if [[ -f $o/boot-$b/t-cloud-init-done ]]; then
			e2e_log "qemu boot $b: cloud-init done $(cat "$o/boot-$b/t-cloud-init-done") s after boot"
		fi
	done
else
	e2e_log "CCBOOT_E2E_QEMU=0: skipping the QEMU boot"
fi

e2e_timing smoke-total "$t_all"
echo "--- timings" >&2
cat "$E2E_TIMINGS" >&2
if ((failures)); then
	e2e_log "$failures check(s) failed"
	exit 1
fi
e2e_log "smoke: all checks passed"
