#!/usr/bin/env bash
# Whole-process figures on the host in --root mode (a throwaway root from
# mkroot.sh, the metadata mock on loopback). bench.sh runs this inside a
# loopback-only network namespace (unshare --net).
#   host.sh OUTDIR CCBOOT_BINARY
# Writes OUTDIR/host.env (key=value) and hyperfine JSON.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../e2e/lib.sh
. "$here/../e2e/lib.sh"
out=$1 cc=$2
ip link set lo up
port=1339
imds=http://127.0.0.1:$port
mkdir -p "$out/mock/home"
e2e_mock_config eu-west-1 111122223333 i-0123456789abcdef0 claudecode-ec2-demo >"$out/mock/config.json"
HOME=$out/mock/home setpriv --pdeathsig KILL "$(e2e_aemm_bin)" -n 127.0.0.1 -p $port -I -c "$out/mock/config.json" >"$out/mock/aemm.log" 2>&1 &
mock=$!
trap 'kill $mock 2>/dev/null || true' EXIT
for _ in $(seq 100); do
	curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' $imds/latest/api/token >/dev/null && break
	sleep 0.1
done
root=$out/root
rm -rf "$root"
"$here/mkroot.sh" "$root"
export INVOCATION_ID='' NOTIFY_SOCKET=''
flags=(--root "$root" --imds-endpoint "$imds")
env_out=$out/host.env
: >"$env_out"
kv() { printf '%s=%s\n' "$1" "$2" >>"$env_out"; }

# Cold run in --root mode (packages present in the image; swap file created
# with fallocate on ext4/xfs; nothing activated).
before=$(grep -c 'GenerateToken Received\|ValidateToken Received' "$out/mock/aemm.log" || true)
"$cc" run "${flags[@]}" >"$out/run.out" 2>&1 || kv root_run_rc $?
kv root_run_done "$(grep '"msg":"done"' "$root/var/log/ccboot.log" | tail -1 | jq -c .self)"
kv root_run_imds_tokens "$(($(grep -c 'GenerateToken Received' "$out/mock/aemm.log") - 1))" # minus the readiness probe
kv root_run_imds_gets "$(grep -o 'ValidateToken Received request: &{GET [^ ]*' "$out/mock/aemm.log" | awk '{print $NF}' | sort | uniq -c | awk '{printf "%s%s x%d", (NR>1?", ":""), $2, $1}')"
: "$before"

# Where the nspawn CPU figure goes: on a root without fallocate for swap
# (tmpfs here, overlayfs in nspawn) the swap file is written with zeros.
# bench.sh runs this in a private mount namespace, so the tmpfs is ours.
tmp=$out/tmpfs
mkdir -p "$tmp"
mount -t tmpfs -o size=1g tmpfs "$tmp"
for size in 512M off; do
	rm -rf "$tmp/root"
	"$here/mkroot.sh" "$tmp/root"
	"$cc" run --root "$tmp/root" --imds-endpoint "$imds" --set "swap.size=$size" >/dev/null 2>&1 || true
	kv "tmpfs_run_swap_${size}" "$(grep '"msg":"done"' "$tmp/root/var/log/ccboot.log" | tail -1 | jq -c .self)"
done
umount "$tmp"

# No-op repair: processes (strace), files written (anything under the root
# newer than a marker), wall time (hyperfine).
touch "$out/mark"
sleep 0.05
strace -f -qq -e trace=execve -o "$out/repair.strace" "$cc" repair "${flags[@]}" >"$out/repair.out" 2>&1
kv root_repair_execs "$(awk '/execve\(/ && !/ENOENT/ { if (match($0, /execve\("[^"]*"/)) { p=substr($0, RSTART+8, RLENGTH-9); n=split(p, a, "/"); c[a[n]]++; t++ } } END { printf "%d", t; for (k in c) printf " %s:%d", k, c[k] }' "$out/repair.strace")"
kv root_repair_written "$(find "$root" -newer "$out/mark" \( -type f -o -type l \) -printf '/%P ' | sort)"
kv root_repair_done "$(grep '"msg":"done"' "$root/var/log/ccboot.log" | tail -1 | jq -c .self)"
hyperfine -N -w 5 -r "${BENCH_RUNS:-30}" -i \
	-n repair "$cc repair ${flags[*]}" \
	-n status "$cc status --root $root" \
	-n status_check "$cc status --check ${flags[*]}" \
	--export-json "$out/hyperfine.json" >"$out/hyperfine.txt" 2>&1
for n in repair status status_check; do
	kv "root_${n}_ms" "$(jq -r --arg n "$n" '.results[] | select(.command == $n) | "\(.median*1000 | .*10 | round / 10) (min \(.min*1000 | .*10 | round / 10), max \(.max*1000 | .*10 | round / 10), n \(.times | length))"' "$out/hyperfine.json")"
done
