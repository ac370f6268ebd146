# Probe of scenario 11b (the baked image under QEMU), run before
# swap-reboot.sh on each boot: how ccboot's unit ended, the commands its
# runs started (-v log), and whether the image is still baked and in sync.
set -u
# (the test prepends lib-probe.sh)
systemctl show ccboot.service -p Result -p ExecMainStatus \
	-p ExecMainStartTimestampMonotonic -p ExecMainExitTimestampMonotonic >"$o/unit-ccboot.txt"
cp /var/log/ccboot.log "$o/ccboot.log" 2>/dev/null
cp /home/ec2-user/.aws/config "$o/aws-config" 2>/dev/null
capture bake-check ccboot bake --check
