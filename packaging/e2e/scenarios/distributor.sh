# Scenario 14: ccboot's SSM Distributor package on an instance UserData set
# up with an older ccboot. Each package is unpacked where SSM Agent puts
# it (/var/lib/amazon/ssm/packages/NAME/VERSION, without the zip's mode
# bits, as a plain unzip leaves them) and its script run the way the agent
# runs it: `sh install.sh` in that directory. Then: upgrade (install.sh of
# a newer build), an in-place update to a build whose run fails (update.sh
# of the crash-hook build, told to die at its first crash point), the
# README's rollback command, and uninstall.sh.
set -u
pkgs=/var/lib/amazon/ssm/packages/ccboot

# unpack NAME: the debian x86_64 zip of /srv/dist/distributor/NAME.
unpack() {
	local zip
	zip=$(ls /srv/dist/distributor/"$1"/ccboot_*_debian_x86_64.zip)
	mkdir -p "$pkgs/$1"
	python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$zip" "$pkgs/$1"
	ls -l "$pkgs/$1" >"$o/unpacked-$1.txt"
}

# phase NAME: what the instance looks like after a step.
phase() {
	/usr/local/bin/ccboot version >"$o/$1-version.txt" 2>&1
	/usr/local/lib/ccboot/ccboot.previous version >"$o/$1-previous.txt" 2>&1
	systemctl show ccboot.service -p Result -p ExecMainStatus -p ExecMainStartTimestampMonotonic -p ActiveState >"$o/$1-unit.txt"
	cp /var/lib/ccboot/state.json "$o/$1-state.json" 2>/dev/null
	sha256sum /etc/ccboot/ccboot.conf >"$o/$1-conf.sha" 2>&1
}

phase boot

unpack new
cd "$pkgs/new" && capture upgrade sh install.sh
cd /
phase upgrade

# The broken build: the crash-hook build of ccboot, which SIGKILLs itself at
# the first crash point its run reaches, told so through the unit's
# environment. The drop-in stays: a normal build ignores the variable.
mkdir -p /etc/systemd/system/ccboot.service.d
printf '[Service]\nEnvironment=CCBOOT_CRASH_AT=1\n' >/etc/systemd/system/ccboot.service.d/zz-e2e-crash.conf
systemctl daemon-reload
unpack broken
cd "$pkgs/broken" && capture broken sh update.sh
cd /
phase broken
systemctl is-failed ccboot >"$o/broken-is-failed.txt" 2>&1

# README's rollback command.
capture rollback sudo /usr/local/lib/ccboot/ccboot.previous install
phase rollback
systemctl is-active ccboot >"$o/rollback-is-active.txt" 2>&1
capture rollback-status cc status

cd "$pkgs/new" && capture uninstall sh uninstall.sh
cd /
for p in /usr/local/bin/ccboot /usr/local/lib/ccboot /etc/systemd/system/ccboot.service \
	/etc/systemd/system/multi-user.target.wants/ccboot.service \
	/etc/ccboot/ccboot.conf /var/lib/ccboot/state.json /etc/profile.d/claude-bedrock.sh \
	/home/ec2-user/.aws/config /home/ec2-user/.bashrc; do
	if [ -e "$p" ]; then echo "present $p"; else echo "absent $p"; fi
done >"$o/after-uninstall.txt"
systemctl show ccboot.service -p LoadState >"$o/after-uninstall-unit.txt" 2>&1
grep -c '# >>> ccboot aliases >>>' /home/ec2-user/.bashrc >"$o/after-uninstall-aliases.txt" 2>&1
journalctl -b -u ccboot --no-pager >"$o/ccboot-journal.txt" 2>&1
exit 0
