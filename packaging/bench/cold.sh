#!/usr/bin/env bash
# Cold bootstrap, ccboot vs the seed shell UserData, in alternating nspawn
# boots of the e2e image (--volatile=overlay: every boot starts pristine),
# same local apt repository and npm offline cache. Each boot's probe
# (guest-probe.sh) times the cold run, then measures the re-run (shell) or
# the no-op repair / status (ccboot) on the machine it just bootstrapped.
#
#   cold.sh OUTDIR PAIRS CCBOOT_BINARY
# Results: OUTDIR/{shell,ccboot}-N/boot-1/probe.out (key=value lines).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
e2e=$here/../e2e
out=$1 pairs=$2 bin=$3
mkdir -p "$out"
out=$(realpath "$out")

dist=$out/dist
mkdir -p "$dist/lib"
install -m 0755 "$bin" "$dist/ccboot"
install -m 0755 "$here/seed-userdata.sh" "$dist/seed-userdata.sh"
# hyperfine and strace from the host (same Debian release as the guest);
# strace's libraries beside it (the guest image has no libunwind).
install -m 0755 "$(command -v hyperfine)" "$dist/hyperfine"
install -m 0755 "$(command -v strace)" "$dist/strace"
ldd "$(command -v strace)" | awk '/=> \// {print $3}' | while read -r lib; do
	case $(basename "$lib") in libc.so.* | libm.so.* | ld-linux*) ;; *) cp -L "$lib" "$dist/lib/" ;; esac
done

# Claude Code's release channel, made from the real platform package in
# the e2e cache's npm cache (nothing is fetched); the probe serves /srv/dist
# on the guest's loopback and points ccboot at it.
v=${CLAUDE_VERSION:-2.1.332}
cache=$("$e2e/cache.sh" --path)
cacache=$cache/srv/npm-cache/_cacache
integrity=$(grep -rh "/claude-code-linux-x64-$v.tgz\"" "$cacache/index-v5" | tail -1 | sed -n 's/.*"integrity":"\([^"]*\)".*/\1/p')
[[ -n $integrity ]] || { echo "cold: no claude-code-linux-x64-$v in $cacache; rebuild the e2e cache" >&2; exit 1; }
hex=$(printf '%s' "${integrity#sha512-}" | base64 -d | od -An -v -tx1 | tr -d ' \n')
rel=$dist/claude-code-releases/$v
mkdir -p "$rel/linux-x64"
tar -xzf "$cacache/content-v2/sha512/${hex:0:2}/${hex:2:2}/${hex:4}" -O package/claude >"$rel/linux-x64/claude"
printf '{"version":"%s","platforms":{"linux-x64":{"checksum":"%s","size":%s}}}\n' "$v" \
	"$(sha256sum "$rel/linux-x64/claude" | cut -d' ' -f1)" "$(stat -c %s "$rel/linux-x64/claude")" >"$rel/manifest.json"
# Signed like Anthropic's (VERSION/manifest.json.sig), by a throwaway key
# the guest's ccboot trusts through [claude-code] signing_key.
gnupg=$(mktemp -d)
GNUPGHOME=$gnupg gpg --batch -q --passphrase '' --quick-gen-key 'ccboot bench <bench@example.invalid>' ed25519 sign never
GNUPGHOME=$gnupg gpg --batch -q --armor --export >"$dist/release-key.asc"
GNUPGHOME=$gnupg gpg --batch -q --yes --armor --detach-sign -o "$rel/manifest.json.sig" "$rel/manifest.json"
rm -rf "$gnupg"
chmod 0644 "$dist/release-key.asc"
# BENCH_NPM=1: ccboot's package list includes npm, as the shell's does.
printf 'BENCH_CLAUDE_VERSION=%s\nBENCH_NPM=%s\n' "$v" "${BENCH_NPM:-0}" >"$dist/bench.env"

seed=$out/seed
mkdir -p "$seed"
# cloud-init has nothing to do: the probe runs the workload, timed, after it.
printf '#cloud-config\n{}\n' >"$seed/user-data"
printf 'instance-id: i-0e2e0000000000001\nlocal-hostname: ccboot-bench\n' >"$seed/meta-data"
for m in shell ccboot; do
	{ echo "BENCH_MODE=$m"; cat "$here/guest-probe.sh"; } >"$out/probe-$m.sh"
done

boot() { # MODE N
	local d=$out/$1-$2
	rm -rf "$d"
	echo "cold: pair $2, $1" >&2
	"$e2e/boot-nspawn.sh" --docker --seed "$seed" --out "$d" --dist "$dist" \
		--probe "$out/probe-$1.sh" --timeout 1200 >"$out/$1-$2.log" 2>&1 ||
		echo "cold: $1-$2 boot exit $? (see $out/$1-$2.log)" >&2
	grep -E '^(cold_s|cold_rc|repair_rc|rerun_s)=' "$d/boot-1/probe.out" 2>/dev/null | tr '\n' ' ' >&2
	echo >&2
}
if [[ -n ${BENCH_ONLY:-} ]]; then # one boot of one side, for trying the probe
	boot "$BENCH_ONLY" 1
	exit
fi
for ((i = 1; i <= pairs; i++)); do
	# Alternate who goes first, so drift on the host hits both sides alike.
	if ((i % 2)); then boot shell "$i"; boot ccboot "$i"; else boot ccboot "$i"; boot shell "$i"; fi
done
