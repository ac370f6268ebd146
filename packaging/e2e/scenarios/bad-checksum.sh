# Scenario 7: UserData was given a wrong SHA-256. The binary must never run.
set -u
for p in /usr/local/bin/ccboot /etc/ccboot/ccboot.conf /var/lib/ccboot /var/lib/ccboot/state.json \
	/etc/systemd/system/ccboot.service /var/log/ccboot.log /etc/profile.d/claude-bedrock.sh; do
	if [ -e "$p" ]; then echo "present $p"; else echo "absent $p"; fi
done >"$o/paths.txt"
journalctl -b -u e2e-dist-http --no-pager >"$o/dist-http.txt" 2>&1
exit 0
