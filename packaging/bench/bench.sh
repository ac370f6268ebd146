#!/usr/bin/env bash
# make bench: every performance figure of issue 6 in one run, printed as a
# table and written to BENCHMARKS.md (with the machine and the date).
#
#   1. cold bootstrap, ccboot vs the seed shell UserData (seed-userdata.sh),
#      alternating nspawn boots of the e2e image (cold.sh)
#   2. no-op `ccboot repair` (wall, processes, files written) vs re-running
#      the shell script, in the guest that was just bootstrapped, and on the
#      host in --root mode (host.sh)
#   3. ccboot's own CPU time and peak RSS (getrusage SELF, logged on the
#      "done" line) during the cold runs
#   4. binary sizes and the dependency ladder (sizes.sh)
#   5. `ccboot status` and `status --check` wall time
#   6. IMDS requests per run, counted at the mock
#   7. a baked image (e2e scenario 11: ccboot bake --root, then nspawn boots
#      as new instances): ccboot.service's wall time and IMDS requests at boot
# plus the Go benchmarks (cmd/ccboot/bench_test.go) of the in-process paths.
#
# A stage whose results are already in BENCH_OUT is not run again (to
# redo one, delete its folder or file there).
# Environment: BENCH_PAIRS (cold pairs, default 3; 0 skips the nspawn part),
# BENCH_OUT (results, default a new dir under /var/tmp), BENCH_MD (default
# BENCHMARKS.md at the top of the repository; empty: print only),
# BENCH_COLD_DIR (reuse the results of an earlier cold.sh run).
# Needs root, the e2e cache (packaging/e2e/cache.sh builds it on first use),
# hyperfine, strace, jq, ec2-metadata-mock.
# shellcheck disable=SC1090,SC2154 # variables come from the sourced .env files
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
cd "$top"
pairs=${BENCH_PAIRS:-3}
out=${BENCH_OUT:-$(mktemp -d /var/tmp/ccboot-bench.XXXXXX)}
md=${BENCH_MD-$top/BENCHMARKS.md}
mkdir -p "$out"
out=$(realpath "$out")
log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
for tool in hyperfine strace jq go; do
	command -v $tool >/dev/null || { log "$tool not found (apt-get install hyperfine strace jq)"; exit 1; }
done
[[ $(id -u) == 0 ]] || { log "needs root (nspawn, chown in --root mode)"; exit 1; }

log "results in $out"
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
dirty=''
if git status --porcelain --untracked-files=no 2>/dev/null | grep -q .; then dirty=' +local changes'; fi
bin=$out/ccboot
[[ -x $bin ]] || CGO_ENABLED=0 go build -trimpath -buildvcs=false -tags nethttpomithttp2 -ldflags "-s -w" -o "$bin" ./cmd/ccboot
# The figures describe the binary built here: record what it was built from.
[[ -f $out/build.env ]] || printf 'commit=%s\ndirty=%s\ngoversion=%s\n' "$commit" "$dirty" "$(go env GOVERSION)" >"$out/build.env"
commit=$(sed -n 's/^commit=//p' "$out/build.env")
dirty=$(sed -n 's/^dirty=//p' "$out/build.env")
goversion=$(sed -n 's/^goversion=//p' "$out/build.env")

# 4. sizes
log "binary sizes and dependency ladder"
[[ -f $out/sizes/ladder.txt ]] || "$here/sizes.sh" "$out/sizes"
# shellcheck disable=SC1091
. "$out/sizes/sizes.env"

# Go benchmarks + IMDS count (in-process; TestMain builds the binary).
log "go benchmarks"
[[ -s $out/gobench.txt ]] || {
AEMM=${AEMM:-$(go env GOPATH)/bin/ec2-metadata-mock} go test ./cmd/ccboot -count 1 -run '^TestMetadataCallsPerRun$' -v \
	-bench . -benchtime 20x -benchmem >"$out/gobench.txt" 2>&1 || log "go benchmarks failed; see $out/gobench.txt"
AEMM=${AEMM:-$(go env GOPATH)/bin/ec2-metadata-mock} go test ./cmd/ccboot -count 4 -run '^$' \
	-bench . -benchtime 20x -benchmem >>"$out/gobench.txt" 2>&1 || true
}

# 2/3/5/6 on the host, --root mode, in a loopback-only netns.
log "host --root figures"
[[ -f $out/host/host.env ]] || unshare --net --mount --propagation private "$here/host.sh" "$out/host" "$bin"
# shellcheck disable=SC1091
. <(sed 's/^\([A-Za-z0-9_]*\)=\(.*\)$/\1='"'"'\2'"'"'/' "$out/host/host.env")

# 1/2/3/5 in nspawn
cold=${BENCH_COLD_DIR:-$out/cold}
if [[ -z ${BENCH_COLD_DIR:-} && $pairs -gt 0 ]]; then
	log "cold bootstrap: $pairs alternating pairs in nspawn (~3 min a pair)"
	"$here/cold.sh" "$cold" "$pairs" "$bin"
	# One more ccboot boot whose package list includes npm, as the shell's does.
	log "cold bootstrap: ccboot with npm in its package list"
	BENCH_NPM=1 BENCH_ONLY=ccboot "$here/cold.sh" "$cold-npm" 1 "$bin"
fi

# 7. baked image (e2e scenario 11), in the same run as the cold boots
if [[ ! -f $out/baked.txt ]] && ((pairs > 0)); then
	log "baked image: bake offline, boot twice as new instances (e2e scenario 11)"
	CCBOOT_E2E_BIN_AMD64=$bin go test -tags e2e -count=1 -v -timeout 30m -run 'TestE2E/11_' ./packaging/e2e/ >"$out/baked.log" 2>&1 ||
		log "baked-image scenario failed; see $out/baked.log"
	grep -a -E '^(timing|imds): baked boot|^baked: boot' "$out/baked.log" | sort -u >"$out/baked.txt" || true
fi

median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) {print "n/a"; exit} if (NR % 2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
probe() { # SIDE KEY -> values across boots
	local f
	for f in "$cold"/"$1"-*/boot-1/probe.out; do
		if [[ -f $f ]]; then sed -n "s/^$2=//p" "$f"; fi
	done
}
fmt() { awk -v v="$1" -v d="${2:-1}" 'BEGIN { if (v == "n/a" || v == "") print "n/a"; else printf "%.*f\n", d, v }'; }
shell_cold=$(probe shell cold_s | median)
cc_cold=$(probe ccboot cold_s | median)
n_shell=$(probe shell cold_s | wc -l)
n_cc=$(probe ccboot cold_s | wc -l)
ratio=$(awk -v a="$cc_cold" -v b="$shell_cold" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2f", a/b }')
cc_cold_npm=$(sed -n 's/^cold_s=//p' "$cold-npm"/ccboot-*/boot-1/probe.out 2>/dev/null | median)
ratio_npm=$(awk -v a="$cc_cold_npm" -v b="$shell_cold" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2f", a/b }')
claude_step=$(probe ccboot claude_step_ms | median)
claude_floor=$(probe ccboot claude_floor_ms | median)
claude_ratio=$(awk -v a="$claude_step" -v b="$claude_floor" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2f", a/b }')
pair_ratios=$(for d in "$cold"/ccboot-*; do
	[[ -d $d ]] || continue
	i=${d##*-}
	a=$(sed -n 's/^cold_s=//p' "$d/boot-1/probe.out" 2>/dev/null)
	b=$(sed -n 's/^cold_s=//p' "$cold/shell-$i/boot-1/probe.out" 2>/dev/null)
	if [[ -n $a && -n $b ]]; then awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f ", a/b}'; fi
done)
cc_rc=$(probe ccboot cold_rc | sort | uniq -c | awk '{printf "%s×rc%s ", $1, $2}')
rerun=$(probe shell rerun_s | median)
rerun_execs=$(probe shell rerun_execs | awk 'NR == 1')
rerun_written=$(probe shell rerun_files_written | median)
rerun_dups="fstab swap lines $(probe shell rerun_fstab_swap_lines | awk 'NR == 1'), alias lines $(probe shell rerun_alias_lines | awk 'NR == 1')"
g_repair_execs=$(probe ccboot repair_execs | awk 'NR == 1')
g_repair_written=$(probe ccboot repair_files_written_list | awk 'NR == 1')
hf_median() { # NAME -> median ms over the boots' medians
	local f
	for f in "$cold"/ccboot-*/boot-1/hyperfine.json; do
		if [[ -f $f ]]; then jq -r --arg n "$1" '.results[] | select(.command == $n) | .median * 1000' "$f"; fi
	done | median
}
g_repair=$(hf_median repair)
g_status=$(hf_median status)
g_check=$(hf_median status_check)
self() { # FILE-GLOB FIELD -> median
	local f
	for f in "$cold"/ccboot-*/boot-1/"$1"; do
		if [[ -f $f ]]; then jq -r ".self.$2" "$f"; fi
	done | median
}
g_cpu=$(self done-run.json cpu_ms)
g_rss=$(self done-run.json maxrss_kib)
g_spawned=$(self done-run.json spawned)
r_cpu=$(jq -r .cpu_ms <<<"$root_run_done")
r_rss=$(jq -r .maxrss_kib <<<"$root_run_done")
gob() { # BENCH NAME -> median ns/op over -count runs, as ms
	awk -v n="$1" '$1 ~ "^"n"(-[0-9]+)?$" { for (i=2; i<=NF; i++) if ($(i+1) == "ns/op") print $i/1e6 }' "$out/gobench.txt" | median
}
gob_metric() { # BENCH UNIT
	awk -v n="$1" -v u="$2" '$1 ~ "^"n"(-[0-9]+)?$" { for (i=2; i<=NF; i++) if ($(i+1) == u) print $i }' "$out/gobench.txt" | median
}
imds_run=$(sed -n 's/.*bench_test.go:[0-9]*: run: \([0-9]*\) IMDS requests: \(.*\); *$/\1 (\2)/p' "$out/gobench.txt" | awk 'NR == 1')
imds_repair=$(sed -n 's/.*bench_test.go:[0-9]*: repair: \([0-9]*\) IMDS requests.*/\1/p' "$out/gobench.txt" | awk 'NR == 1')
# "baked: boot N: ccboot.service wall W s, systemctl start docker D s" (ms
# precision); older results have only the timing line (0.1 s).
baked_wall=$(sed -n 's/^baked: boot [0-9]*: ccboot.service wall \([0-9.]*\) s,.*/\1/p' "$out/baked.txt" 2>/dev/null | median)
[[ $baked_wall != n/a ]] || baked_wall=$(sed -n 's/^timing: baked boot [0-9]*: ccboot.service wall *\([0-9.]*\)s$/\1/p' "$out/baked.txt" 2>/dev/null | median)
baked_docker=$(sed -n 's/^baked: boot [0-9]*: .*systemctl start docker \([0-9.]*\) s$/\1/p' "$out/baked.txt" 2>/dev/null | median)
baked_rest=$(sed -n 's/^baked: boot [0-9]*: ccboot.service wall \([0-9.]*\) s, systemctl start docker \([0-9.]*\) s$/\1 \2/p' "$out/baked.txt" 2>/dev/null | awk '{printf "%.3f\n", $1 - $2}' | median)
n_baked=$(grep -c '^timing: baked boot' "$out/baked.txt" 2>/dev/null || echo 0)
baked_imds=$(sed -n 's/^imds: baked boot [0-9]*: \([0-9]*\) requests.*/\1/p' "$out/baked.txt" 2>/dev/null | sort -u | tr '\n' ' ')
baked_speedup=$(awk -v a="$cc_cold" -v b="$baked_wall" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.0f", a/b }')
mib() { awk -v b="$1" 'BEGIN{printf "%.2f MiB", b/1048576}'; }
kib_mib() { awk -v k="$1" 'BEGIN{ if (k == "n/a" || k == "") print "n/a"; else printf "%.1f MiB", k/1024}'; }
verdict() { # VALUE OP LIMIT -> ✅/❌
	awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { if (v == "n/a" || v == "") { print "–"; exit } ok = (op == "<=") ? (v+0 <= l+0) : (v+0 >= l+0); print ok ? "met" : "MISSED" }'
}
ladder_arm=$(awk -F'\t' '$1 == "arm64" { printf "| %s | %d | %s |\n", $2, $3, $4 }' "$out/sizes/ladder.txt")
ladder_amd=$(awk -F'\t' '$1 == "amd64" { printf "%s: %d (%s); ", substr($2, 1, 1), $3, $4 }' "$out/sizes/ladder.txt")
cpu_model=$(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//')
machine="$(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r), $(nproc) CPUs ($cpu_model), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, load average at the end $(cut -d' ' -f1-3 /proc/loadavg); $goversion"

table=$(
	cat <<-EOF
	| # | figure | ccboot | baseline / goal | verdict |
	|---|---|---|---|---|
	| 1 | cold bootstrap, nspawn Debian 12, local apt repo, Claude Code from a loopback release channel (shell: npm offline cache) (median of $n_cc ccboot / $n_shell shell boots, alternating) | $(fmt "$cc_cold") s | seed shell UserData $(fmt "$shell_cold") s; ratio **$ratio** (pairs: ${pair_ratios:-n/a}); goal ≤ 0.5; ccboot exit codes: ${cc_rc:-n/a}(1 = swapon refused in a container, all other steps done) | $(verdict "$ratio" "<=" 0.5) |
	| 7 | baked image (\`ccboot bake --root\` of the same rootfs, offline), boot as a new instance in nspawn: ccboot.service start to exit (median of $n_baked boots) | $(fmt "$baked_wall" 2) s, of which waiting for \`systemctl start docker\` $(fmt "$baked_docker" 2) s (the rest: $(fmt "$baked_rest" 2) s) | goal ≤ 1 s ($(verdict "$baked_wall" "<=" 1)); **${baked_speedup}×** faster than row 1's cold boot, goal ≥ 30× | $(verdict "$baked_speedup" ">=" 30) |
	| 7b | IMDS requests at a baked boot, counted at the mock (whole boot; cloud-init reads NoCloud) | ${baked_imds:-n/a} | the instance steps' values only: 1 token + 1 per value | – |
	| 1b | the same, ccboot's package list including \`npm\` like the shell's (1 boot) | $(fmt "$cc_cold_npm") s | ratio **$ratio_npm** to the shell's $(fmt "$shell_cold") s | – |
	| 1c | claude-code step (native download from the loopback release channel, verified) vs the floor: the same bytes by \`curl -o\` + \`sha256sum\` + sync from the same server, in the guest | $(fmt "$claude_step" 0) ms | floor $(fmt "$claude_floor" 0) ms; ratio **$claude_ratio**; goal ≤ 1.3 | $(verdict "$claude_ratio" "<=" 1.3) |
	| 2a | no-op \`ccboot repair\`, live in the bootstrapped guest (hyperfine median, --skip swap: swapon is EPERM in a container) | $(fmt "$g_repair") ms | goal ≤ 100 ms; re-running the shell script: $(fmt "$rerun") s | $(verdict "$g_repair" "<=" 100) |
	| 2b | no-op repair, processes (strace execve, guest) | ${g_repair_execs:-n/a} | goal 0 package-manager/npm processes; shell re-run: ${rerun_execs:-n/a} | $(case "$g_repair_execs" in "") echo –;; *apt*|*dpkg*|*npm*|*dnf*|*rpm*) echo MISSED;; *) echo met;; esac) |
	| 2c | no-op repair, files written (guest, everything under / newer than a marker) | ${g_repair_written:-n/a} | goal 0 managed files; shell re-run wrote $(fmt "$rerun_written" 0) files, $rerun_dups | $(case "$g_repair_written" in "") echo –;; *etc/*|*home/*|*swapfile*) echo MISSED;; *) echo "met (only ccboot's own records: state, log, SSM inventory)";; esac) |
	| 2d | no-op repair, host \`--root\` mode (hyperfine median) | ${root_repair_ms:-n/a} ms; processes: ${root_repair_execs:-n/a}; written: ${root_repair_written:-n/a} | goal ≤ 100 ms | $(verdict "${root_repair_ms%% *}" "<=" 100) |
	| 3a | ccboot's own CPU (getrusage SELF, children excluded), cold run in nspawn | $(fmt "$g_cpu" 0) ms ($(fmt "$g_spawned" 0) processes started) | goal ≤ 50 ms | $(verdict "$g_cpu" "<=" 50) |
	| 3b | ccboot's own CPU, cold \`--root\` run on the host (ext4: swap file by fallocate) | $(fmt "$r_cpu" 0) ms | goal ≤ 50 ms | $(verdict "$r_cpu" "<=" 50) |
	| 3a′ | why 3a is high: cold \`--root\` run on a tmpfs root (no fallocate, 512 MiB of zeros written, as on nspawn's overlayfs) with swap 512M / off | $(jq -r .cpu_ms <<<"${tmpfs_run_swap_512M:-{\}}") ms / $(jq -r .cpu_ms <<<"${tmpfs_run_swap_off:-{\}}") ms | – | – |
	| 3c | ccboot's peak RSS (getrusage SELF maxrss), cold run nspawn / host | $(kib_mib "$g_rss") / $(kib_mib "$r_rss") | goal ≤ 25 MiB | $(verdict "$(awk -v a="$g_rss" -v b="$r_rss" 'BEGIN{print (a > b ? a : b)/1024}')" "<=" 25) |
	| 4a | binary linux/arm64, static, stripped, -trimpath | $size_arm64 B ($(mib "$size_arm64")) | goal ≤ 6 MiB (6291456 B) | $(verdict "$size_arm64" "<=" 6291456) |
	| 4b | binary linux/amd64 | $size_amd64 B ($(mib "$size_amd64")) | – | – |
	| 5a | \`ccboot status\` (hyperfine median) guest / host | $(fmt "$g_status") ms / ${root_status_ms:-n/a} ms | goal ≤ 20 ms | $(verdict "$(awk -v a="$g_status" -v b="${root_status_ms%% *}" 'BEGIN{print (a > b ? a : b)}')" "<=" 20) |
	| 5b | \`ccboot status --check\` guest / host | $(fmt "$g_check") ms / ${root_status_check_ms:-n/a} ms | – | – |
	| 6 | IMDS requests per run, counted at the mock (cold run; no-op repair) | ${imds_run:-n/a}; repair ${imds_repair:-n/a} | goal 1 token + 1 per value | $(case "$imds_run" in 4*) echo met;; "") echo –;; *) echo check;; esac) |
	EOF
)
gotable=$(
	cat <<-EOF
	| Go benchmark (in process, converged --root, median of 4×20 iterations) | ms/op | extra |
	|---|---|---|
	| BenchmarkRepairNoop (open, lock, 7 Checks, one state save) | $(fmt "$(gob BenchmarkRepairNoop)" 2) | $(gob_metric BenchmarkRepairNoop procs/op) procs/op, $(gob_metric BenchmarkRepairNoop imds-req/op) IMDS requests/op |
	| BenchmarkStatus | $(fmt "$(gob BenchmarkStatus)" 2) | |
	| BenchmarkStatusCheck | $(fmt "$(gob BenchmarkStatusCheck)" 2) | |
	| BenchmarkLoadConfig | $(fmt "$(gob BenchmarkLoadConfig)" 3) | |
	$(for s in packages claude-code docker-group swap profile-env aws-config aliases; do echo "| BenchmarkCheck/$s | $(fmt "$(gob "BenchmarkCheck/$s")" 3) | $(gob_metric "BenchmarkCheck/$s" procs/op) procs/op |"; done)
	EOF
)
report=$(
	cat <<-EOF
	# ccboot benchmarks

	Generated by \`make bench\` (packaging/bench/bench.sh) on $(date -u +%Y-%m-%d) at commit $commit$dirty.
	Machine: $machine. Timings are medians; every ratio is against the baseline measured in the same run.

	$table

	## Binary size: what each dependency costs (linux/arm64, same flags as the release build)

	Each rung is a tiny program that links one more dependency than the rung above (packaging/bench/sizes.sh).
	Sizes move in 64 KiB steps (segment alignment).

	| rung | bytes | added |
	|---|---|---|
	$ladder_arm

	amd64: $ladder_amd

	$gotable
	EOF
)
printf '%s\n' "$report"
if [[ -n $md ]]; then
	notes=$here/NOTES.md
	{ printf '%s\n' "$report"; if [[ -f $notes ]]; then echo; cat "$notes"; fi; } >"$md"
	log "wrote $md"
fi
