# Scenario 3 (QEMU, own kernel): swap at the configured size and one fstab
# line; drift by swapoff is found and repaired; after a reboot swap is back,
# still one line, and ccboot's boot-time run changed nothing.
set -u
b=$E2E_BOOT
cat /proc/swaps >"$o/swaps.txt"
grep -c '^[^#]*[[:space:]]swap[[:space:]]' /etc/fstab >"$o/fstab-swap-lines.txt"
cp /etc/fstab "$o/fstab"
stat -c '%s %a %U:%G' /swapfile >"$o/swapfile-stat.txt" 2>&1
cp /var/lib/ccboot/state.json "$o/state-boot.json" 2>/dev/null
systemctl is-active ccboot >"$o/is-active.txt" 2>&1
journalctl -b -u ccboot -o cat --no-pager >"$o/ccboot-journal.txt" 2>&1
systemctl is-active docker >"$o/docker-active.txt" 2>&1
if [ "$b" = 1 ]; then
	swapoff /swapfile
	cat /proc/swaps >"$o/swaps-off.txt"
	capture swap-check cc status --check
	capture swap-repair cc repair
	capture swap-recheck cc status --check
	cat /proc/swaps >"$o/swaps-repaired.txt"
	grep -c '^[^#]*[[:space:]]swap[[:space:]]' /etc/fstab >"$o/fstab-swap-lines-repaired.txt"
	touch "$o/reboot"
fi
exit 0
