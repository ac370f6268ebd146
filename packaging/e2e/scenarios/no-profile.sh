# Scenario 6: IMDS has no instance profile. The failure must be visible to
# cloud-init, systemd and `ccboot status`, and nothing half-written.
set -u
systemctl is-failed ccboot >"$o/is-failed.txt" 2>&1
systemctl show ccboot.service -p Result -p ExecMainStatus >"$o/unit-ccboot.txt"
capture status cc status
capture status-json cc status --format json
ls -la /home/ec2-user/.aws >"$o/aws-dir.txt" 2>&1
test -e /home/ec2-user/.aws/config && echo present >"$o/aws-config-exists.txt" || echo absent >"$o/aws-config-exists.txt"
temp_files temp-files.txt
exit 0
