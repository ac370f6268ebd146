# shellcheck shell=bash
# Runs inside the nspawn guest (bash, as root) from the e2e probe runner,
# after cloud-init finished. $E2E_OUT is this boot's result folder. The bench
# prepends BENCH_MODE=shell or BENCH_MODE=ccboot to this file; tools are in
# /srv/dist (ccboot, seed-userdata.sh, hyperfine, strace + its libraries).
# Everything measured is printed as key=value lines on stdout (probe.out).
set -u
mode=${BENCH_MODE:?}
imds=http://127.0.0.1:1338
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b-a}'; }
echo "mode=$mode"
echo "nproc=$(nproc)"

# Files written by a command: everything under / (this container's overlay
# root) newer than a marker, except the result and tool folders.
written() { # MARKER -> list of files
	find / -xdev \( -path /out -o -path /srv -o -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \) -prune \
		-o \( -type f -o -type l \) -newer "$1" -print 2>/dev/null | sort
}
strace_execs() { # LOG -> "N total: name×count ..."
	awk '/execve\(/ && !/ENOENT/ { if (match($0, /execve\("[^"]*"/)) { p=substr($0, RSTART+8, RLENGTH-9); n=split(p, a, "/"); c[a[n]]++; t++ } }
		END { printf "%d", t; for (k in c) printf " %s:%d", k, c[k]; print "" }' "$1"
}
export LD_LIBRARY_PATH=/srv/dist/lib

if [ "$mode" = shell ]; then
	t0=$(now)
	SEED_IMDS=$imds SEED_NPM_CACHE=/srv/npm-cache bash /srv/dist/seed-userdata.sh >"$E2E_OUT/seed-1.log" 2>&1
	rc=$?
	t1=$(now)
	echo "cold_rc=$rc"
	echo "cold_s=$(secs "$t0" "$t1")"
	# Re-running the script is the shell's "repair": timed once as is, then
	# a third time under strace to count the processes it starts.
	touch /var/tmp/bench-mark; sleep 0.05
	t0=$(now)
	SEED_IMDS=$imds SEED_NPM_CACHE=/srv/npm-cache bash /srv/dist/seed-userdata.sh >"$E2E_OUT/seed-2.log" 2>&1
	rc=$?
	t1=$(now)
	echo "rerun_rc=$rc"
	echo "rerun_s=$(secs "$t0" "$t1")"
	written /var/tmp/bench-mark >"$E2E_OUT/rerun-written.txt"
	echo "rerun_files_written=$(wc -l <"$E2E_OUT/rerun-written.txt")"
	echo "rerun_fstab_swap_lines=$(grep -c '^/swapfile' /etc/fstab)"
	echo "rerun_alias_lines=$(grep -c '^alias claude-ro' /home/ec2-user/.bashrc)"
	/srv/dist/strace -f -qq -e trace=execve -o "$E2E_OUT/rerun.strace" \
		env SEED_IMDS=$imds SEED_NPM_CACHE=/srv/npm-cache bash /srv/dist/seed-userdata.sh >"$E2E_OUT/seed-3.log" 2>&1
	echo "rerun_execs=$(strace_execs "$E2E_OUT/rerun.strace")"
	exit 0
fi

# ccboot. Claude Code comes from the release channel in /srv/dist, served
# on the guest's loopback like an instance's mirror would serve it.
# shellcheck disable=SC1091 # written by cold.sh
. /srv/dist/bench.env
python3 -m http.server 8099 --bind 127.0.0.1 --directory /srv/dist >/dev/null 2>&1 &
rel=http://127.0.0.1:8099/claude-code-releases
for _ in $(seq 1 100); do curl -fs -o /dev/null "$rel/$BENCH_CLAUDE_VERSION/manifest.json" && break; sleep 0.1; done
cc="/srv/dist/ccboot"
ccset="--set claude-code.release_url=$rel --set claude-code.signing_key=/srv/dist/release-key.asc"
if [ "$BENCH_NPM" = 1 ]; then ccset="$ccset --set packages.install=unzip,git,jq,nodejs,npm,docker"; fi
t0=$(now)
$cc run --imds-endpoint $imds $ccset >"$E2E_OUT/ccboot-run.out" 2>&1
rc=$?
t1=$(now)
echo "cold_rc=$rc"
echo "cold_s=$(secs "$t0" "$t1")"
# ccboot's own cost, children excluded: the "done" log line (parsed on the host).
grep '"msg":"done"' /var/log/ccboot.log | tail -1 >"$E2E_OUT/done-run.json"
cp /var/log/ccboot.log "$E2E_OUT/ccboot-run.log"
cp /var/lib/ccboot/state.json "$E2E_OUT/state-after-run.json" 2>/dev/null
# The claude-code step against its floor: the same bytes with curl -o and
# sha256sum from the same server, onto the same file system.
echo "claude_step_ms=$(jq -r '.steps[] | select(.name == "claude-code") | .duration_ms' /var/lib/ccboot/state.json 2>/dev/null)"
t2=$(now)
curl -fs -o /usr/local/lib/claude-floor "$rel/$BENCH_CLAUDE_VERSION/linux-x64/claude" && sha256sum /usr/local/lib/claude-floor >/dev/null && sync -f /usr/local/lib/claude-floor
echo "claude_floor_ms=$(awk -v a="$(secs "$t2" "$(now)")" 'BEGIN{printf "%d", a*1000}')"
rm -f /usr/local/lib/claude-floor

# No-op repair on the machine ccboot just bootstrapped. swapon is refused in
# a container (EPERM), so the swap step can never converge here: it is
# skipped for the repair and status figures (its Check reads /proc/swaps
# and the file's header, no process).
skip="--skip swap"
touch /var/tmp/bench-mark; sleep 0.05
/srv/dist/strace -f -qq -e trace=execve -o "$E2E_OUT/repair.strace" $cc repair --imds-endpoint $imds $skip $ccset >"$E2E_OUT/repair-1.out" 2>&1
echo "repair_rc=$?"
echo "repair_execs=$(strace_execs "$E2E_OUT/repair.strace")"
grep '"msg":"done"' /var/log/ccboot.log | tail -1 >"$E2E_OUT/done-repair.json"
written /var/tmp/bench-mark >"$E2E_OUT/repair-written.txt"
echo "repair_files_written=$(wc -l <"$E2E_OUT/repair-written.txt")"
echo "repair_files_written_list=$(tr '\n' ' ' <"$E2E_OUT/repair-written.txt")"
/srv/dist/hyperfine -N -w 3 -m 20 -i \
	-n repair "$cc repair --imds-endpoint $imds $skip $ccset" \
	-n status "$cc status" \
	-n status_check "$cc status --check --imds-endpoint $imds $skip $ccset" \
	--export-json "$E2E_OUT/hyperfine.json" >"$E2E_OUT/hyperfine.txt" 2>&1
echo "hyperfine_rc=$?"
exit 0
