# Scenario 8: ccboot killed (SIGKILL to its whole cgroup, like the OOM
# killer or systemctl kill) in the middle of the packages step, then in the
# middle of the aws-config step (the crash-hook build kills itself at a
# named point); each time `ccboot repair` must converge with no duplicate
# lines and no temp files. UserData did not run ccboot here: the probe does.
set -u
install -m 0755 /srv/dist/ccboot /usr/local/bin/ccboot
install -m 0755 /srv/dist/ccboot-crashhook /usr/local/bin/ccboot-crashhook
mkdir -p /etc/ccboot
printf '[bedrock]\nmodel = anthropic.e2e-interrupted\n' >/etc/ccboot/ccboot.conf
setenv=()
for v in AWS_EC2_METADATA_SERVICE_ENDPOINT npm_config_offline npm_config_cache; do
	setenv+=("--setenv=$v=${!v}")
done

# --- packages: kill while dpkg is at work
systemd-run --unit=e2e-crash-packages --quiet "${setenv[@]}" /usr/local/bin/ccboot repair $E2E_CCBOOT_FLAGS
seen=
for _ in $(seq 1 1200); do
	if pgrep -x dpkg >/dev/null; then seen=1 && break; fi
	sleep 0.1
done
sleep 3 # well into the unpack/configure of ~380 packages
echo "dpkg-seen=$seen" >"$o/packages-kill.txt"
ps -eo pid,comm --no-headers | grep -E 'ccboot|apt|dpkg' >>"$o/packages-kill.txt"
systemctl kill -s KILL e2e-crash-packages >>"$o/packages-kill.txt" 2>&1
sleep 1
systemctl show e2e-crash-packages -p Result -p ExecMainStatus -p ExecMainCode >>"$o/packages-kill.txt"
dpkg --audit >"$o/dpkg-audit-after-kill.txt" 2>&1
capture packages-repair cc repair
capture packages-check cc status --check
dpkg --audit >"$o/dpkg-audit-end.txt" 2>&1
dpkg-query -W -f='${Package} ${Status}\n' unzip git jq nodejs docker.io >"$o/dpkg.txt" 2>&1
temp_files temp-files-packages.txt

# --- aws-config: learn the crash points of a rewrite, then die in one
sed -i '/^role_arn/s/claudecode-readonly/claudecode-tampered/' /home/ec2-user/.aws/config
CCBOOT_CRASH_LOG=$o/points.txt ccboot-crashhook repair $E2E_CCBOOT_FLAGS >"$o/points-run.out" 2>&1
point=$(grep -m1 '^replace/written .*\.aws/config#' "$o/points.txt")
echo "$point" >"$o/aws-point.txt"
sed -i '/^role_arn/s/claudecode-readonly/claudecode-tampered/' /home/ec2-user/.aws/config
systemd-run --unit=e2e-crash-aws --quiet --wait "${setenv[@]}" --setenv=CCBOOT_CRASH_AT="$point" \
	/usr/local/bin/ccboot-crashhook repair $E2E_CCBOOT_FLAGS >"$o/aws-crash.txt" 2>&1
echo "rc=$?" >>"$o/aws-crash.txt"
ls -la /home/ec2-user/.aws >"$o/aws-dir-after-kill.txt" 2>&1
capture aws-repair cc repair
capture aws-check cc status --check
cp /home/ec2-user/.aws/config "$o/aws-config" 2>/dev/null
cp /home/ec2-user/.bashrc "$o/bashrc" 2>/dev/null
cp /etc/fstab "$o/fstab"
cp /etc/group "$o/group"
temp_files temp-files-end.txt
exit 0
