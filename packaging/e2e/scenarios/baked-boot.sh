# Probe of a boot of the baked image (scenario 11): what ccboot did at boot,
# how long its run took, which commands it started, and the instance's files.
set -u
# (the test prepends lib-probe.sh)
systemctl show ccboot.service -p Result -p ExecMainStatus \
	-p ExecMainStartTimestampMonotonic -p ExecMainExitTimestampMonotonic >"$o/unit-ccboot.txt"
cp /var/lib/ccboot/state.json "$o/state-boot.json" 2>/dev/null
cp /var/log/ccboot.log "$o/ccboot.log" 2>/dev/null
cp /etc/ccboot/ccboot.conf.d/50-instance.conf "$o/instance.conf" 2>/dev/null
cp /etc/profile.d/claude-bedrock.sh "$o/profile.sh" 2>/dev/null
cp /home/ec2-user/.aws/config "$o/aws-config" 2>/dev/null
id -nG ec2-user >"$o/ec2-user-groups.txt" 2>&1
# The image's files: the test compares them with the baked image.
snapshot image-files.txt /usr/local/bin/ccboot /etc/systemd/system/ccboot.service /etc/ccboot/baked.json \
	/etc/ccboot/ccboot.conf /var/lib/dpkg/status /usr/local/bin/claude \
	"/usr/local/lib/claude-code/versions/$E2E_CLAUDE_VERSION/claude" \
	"/usr/local/lib/claude-code/versions/$E2E_CLAUDE_VERSION/install.json"
capture claude-version runuser -u ec2-user -- bash -lc 'command -v claude && claude --version'
capture claude-ro runuser -u ec2-user -- bash -ic 'type claude-ro'
capture bake-check ccboot bake --check
capture status-json ccboot status --format json
