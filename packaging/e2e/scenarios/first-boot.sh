# Probe of the main nspawn boot (Debian, apt, --docker): scenario 1 (first
# boot), then 4 (idempotent repair) and 5 (drift repair) on the same machine.
set -u
# (the test prepends lib-probe.sh)

# --- 1. first boot: facts as cloud-init left them
systemctl show ccboot.service -p ActiveState -p SubState -p Result -p ExecMainStatus \
	-p ActiveEnterTimestampMonotonic -p ExecMainExitTimestampMonotonic >"$o/unit-ccboot.txt"
systemctl show cloud-final.service -p ActiveState -p ActiveEnterTimestampMonotonic \
	-p ExecMainExitTimestampMonotonic >"$o/unit-cloud-final.txt"
systemctl is-active ccboot >"$o/is-active.txt" 2>&1
SYSTEMD_COLORS=0 systemctl status ccboot --no-pager -l -n 0 >"$o/systemctl-status.txt" 2>&1
cp /var/lib/ccboot/state.json "$o/state-boot.json" 2>/dev/null
capture status-json cc status --format json
capture status-text cc status
# The Custom:ccboot inventory where the SSM agent collects it (issue 22).
inventory_probe boot
dpkg-query -W -f='${Package} ${Status}\n' unzip git jq nodejs docker.io >"$o/dpkg.txt" 2>&1
capture claude-version runuser -u ec2-user -- bash -lc 'command -v claude && claude --version'
# Native install: where the link points, every claude on the user's PATH,
# and no npm copy.
readlink /usr/local/bin/claude >"$o/claude-link.txt" 2>&1
runuser -u ec2-user -- bash -lc 'type -a -P claude' >"$o/claude-on-path.txt" 2>&1
ls -d /usr/local/lib/node_modules/@anthropic-ai/claude-code >"$o/npm-copy.txt" 2>&1
id -nG ec2-user >"$o/ec2-user-groups.txt"
systemctl is-enabled docker.service >"$o/docker-enabled.txt" 2>&1
systemctl is-active docker.service >"$o/docker-active.txt" 2>&1
cp /etc/profile.d/claude-bedrock.sh "$o/profile.sh" 2>/dev/null
cp /home/ec2-user/.aws/config "$o/aws-config" 2>/dev/null
cp /home/ec2-user/.bashrc "$o/bashrc" 2>/dev/null
cp /etc/fstab "$o/fstab" 2>/dev/null
for f in /etc/profile.d/claude-bedrock.sh /home/ec2-user/.aws /home/ec2-user/.aws/config \
	/home/ec2-user/.bashrc /usr/local/bin/ccboot /etc/ccboot/ccboot.conf /var/lib/ccboot/state.json; do
	stat -c '%n %a %U:%G' "$f" 2>&1
done >"$o/modes.txt"
capture aliases runuser -u ec2-user -- bash -ic 'alias'
temp_files temp-files-boot.txt

# --- 4. idempotence: repair right after bootstrap
snapshot files-before.txt "${managed_files[@]}"
capture repair-noop cc repair
snapshot files-after.txt "${managed_files[@]}"
cp /var/lib/ccboot/state.json "$o/state-noop.json"

# --- 5. drift: break four things, check, repair, check
rm -f /etc/profile.d/claude-bedrock.sh
gpasswd -d ec2-user docker >"$o/gpasswd.txt" 2>&1
sed -i '/^role_arn/s/claudecode-readonly/claudecode-tampered/' /home/ec2-user/.aws/config
sed -i 's/^alias claude-ro=.*/alias claude-ro=true/' /home/ec2-user/.bashrc
capture drift-check cc status --check
capture drift-repair cc repair
capture drift-recheck cc status --check
cp /etc/profile.d/claude-bedrock.sh "$o/profile-repaired.sh" 2>/dev/null
cp /home/ec2-user/.aws/config "$o/aws-config-repaired" 2>/dev/null
cp /home/ec2-user/.bashrc "$o/bashrc-repaired" 2>/dev/null
id -nG ec2-user >"$o/ec2-user-groups-repaired.txt"

# the model line: change it in the profile.d file the repair just wrote
sed -i 's/^\(export \)\{0,1\}ANTHROPIC_MODEL=.*/export ANTHROPIC_MODEL=tampered.model/' /etc/profile.d/claude-bedrock.sh
cp /etc/profile.d/claude-bedrock.sh "$o/profile-tampered.sh"
capture model-check cc status --check
capture model-repair cc repair
capture model-recheck cc status --check
cp /etc/profile.d/claude-bedrock.sh "$o/profile-model-repaired.sh" 2>/dev/null
temp_files temp-files-end.txt

# --- 10. Claude Code: upgrade, a corrupted version, migration from npm
# The channel offers 2.1.333 (same executable), 2.1.334 (manifest
# checksum that does not match its bytes) and 2.1.335 (signed by another key).
capture claude-upgrade cc repair --set claude-code.version=2.1.333
readlink /usr/local/bin/claude >"$o/claude-link-upgraded.txt" 2>&1
capture claude-corrupt cc repair --set claude-code.version=2.1.334
readlink /usr/local/bin/claude >"$o/claude-link-corrupt.txt" 2>&1
# the failed repair as the inventory reports it
capture status-corrupt-json cc status --format json
inventory_probe corrupt
# 2.1.335: its manifest is signed by a key ccboot does not trust.
capture claude-badsig cc repair --set claude-code.version=2.1.335
readlink /usr/local/bin/claude >"$o/claude-link-badsig.txt" 2>&1
capture claude-version-corrupt runuser -u ec2-user -- bash -lc 'claude --version'
ls -a /usr/local/lib/claude-code/versions /usr/local/lib/claude-code/versions/* >"$o/claude-versions.txt" 2>&1
# The layout an older ccboot left: the npm package and its bin link.
npm_dir=/usr/local/lib/node_modules/@anthropic-ai/claude-code
mkdir -p "$npm_dir/bin"
cp /usr/local/lib/claude-code/versions/2.1.333/claude "$npm_dir/bin/claude.exe"
printf '{"name":"@anthropic-ai/claude-code","version":"2.1.300"}\n' >"$npm_dir/package.json"
ln -sfn ../lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe /usr/local/bin/claude
capture claude-migrate-check cc status --check
capture claude-migrate cc repair
readlink /usr/local/bin/claude >"$o/claude-link-migrated.txt" 2>&1
ls -d "$npm_dir" >"$o/npm-copy-migrated.txt" 2>&1
runuser -u ec2-user -- bash -lc 'type -a -P claude' >"$o/claude-on-path-migrated.txt" 2>&1
capture claude-version-migrated runuser -u ec2-user -- bash -lc 'claude --version'
temp_files temp-files-claude.txt
exit 0
