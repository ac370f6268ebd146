#!/usr/bin/env bash
# Boot a cached rootfs with systemd-nspawn (systemd as PID 1, real
# cloud-init with a NoCloud seed), wait until the guest's probe unit has
# written its results to OUT and powered off, or kill it after a timeout.
#
# usage: boot-nspawn.sh --seed DIR --out DIR [options] [-- NSPAWN-ARGS...]
#   --seed DIR         NoCloud seed with user-data and meta-data (read-only
#                      at /var/lib/cloud/seed/nocloud)
#   --out DIR          results; must be empty or absent; /out in the guest
#   --variant NAME     debian (default) or al2023 (dnf, Amazon Linux os-release)
#   --probe FILE       script the guest runs after `cloud-init status --wait`
#                      (copied to OUT/probe.sh)
#   --dist DIR         read-only at /srv/dist (e.g. the ccboot binary)
#   --netns NAME       join a netns made by `netns.sh up` (its mock serves
#                      127.0.0.1:PORT); default: a private netns and mock
#   --mock-config FILE config for the private mock (default: netns.sh config
#                      us-west-2 111122223333 i-0e2e0000000000001 claudecode-ec2-demo)
#   --state DIR        keep the guest's changes in DIR/upper (overlayfs over
#                      the cached rootfs) across guest reboots and after the
#                      run; default: --volatile=overlay, all changes discarded
#   --docker           let dockerd run in the container (CAP_NET_ADMIN,
#                      writable /proc/sys/net; docker uses the vfs driver)
#   --timeout SECS     hard limit for the whole boot (default 900)
#
# Guest paths: /srv/repo (apt repo, sources point there), /srv/rpm-repo (dnf
# repo), /srv/npm-cache (writable overlay of the npm cache, discarded),
# /srv/dist, /out. Host-side logs: OUT/host/ (nspawn.log, aemm.log, and the
# guest's persistent journal: journalctl -D OUT/host/journal, kept even when
# the container is killed).
# Results: OUT/boot-N/ per boot (see image/guest/probe-runner), OUT/done.
# Exit: 0 guest finished and all probes exited 0; 3 a probe failed;
# 124 timeout (container killed); 1 anything else.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

seed='' out='' variant=debian probe='' dist='' netns='' mock_config='' state='' docker=0 timeout=900
extra=()
while (($#)); do
	case $1 in
	--seed) seed=$2 && shift ;;
	--out) out=$2 && shift ;;
	--variant) variant=$2 && shift ;;
	--probe) probe=$2 && shift ;;
	--dist) dist=$2 && shift ;;
	--netns) netns=$2 && shift ;;
	--mock-config) mock_config=$2 && shift ;;
	--state) state=$2 && shift ;;
	--docker) docker=1 ;;
	--timeout) timeout=$2 && shift ;;
	--)
		shift
		extra=("$@")
		break
		;;
	*) e2e_die "unknown argument $1 (see the header of $0)" ;;
	esac
	shift
done
[[ -n $seed && -n $out ]] || e2e_die "usage: boot-nspawn.sh --seed DIR --out DIR [options]"
[[ -f $seed/user-data && -f $seed/meta-data ]] || e2e_die "$seed needs user-data and meta-data"
[[ -z $probe || -f $probe ]] || e2e_die "probe $probe not found"
[[ -z $dist || -d $dist ]] || e2e_die "dist $dist is not a directory"

t0=$(e2e_now)
e2e_cache_ensure
rootfs=$E2E_CACHE/rootfs/$variant
[[ -d $rootfs ]] || e2e_die "no rootfs variant '$variant' in $E2E_CACHE/rootfs"
e2e_timing cache "$t0"

e2e_require_empty_dir "$out"
out=$(realpath "$out")
seed=$(realpath "$seed")
mkdir -p "$out/host/journal"
if [[ -n $probe ]]; then install -m 0755 "$probe" "$out/probe.sh"; fi
run=$(mktemp -d "${TMPDIR:-/var/tmp}/ccboot-e2e-nspawn.XXXXXX")
mkdir -p "$run/npm-cache-upper" # writes to /srv/npm-cache land here, deleted at exit
if [[ -z $dist ]]; then
	dist=$run/dist
	mkdir -p "$dist"
fi
dist=$(realpath "$dist")

child='' own_ns=''
cleanup() {
	if [[ -n $child ]] && kill -0 "$child" 2>/dev/null; then kill -KILL "$child" 2>/dev/null || true; fi
	if [[ -n ${E2E_MOCK_PID:-} ]]; then
		e2e_mock_stop "$E2E_MOCK_PID"
		cp "$run/mock/aemm.log" "$out/host/aemm.log" 2>/dev/null || true
	fi
	if [[ -n $own_ns ]]; then e2e_netns_delete "$own_ns"; fi
	rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z $netns ]]; then
	own_ns=$(e2e_ns_name ccboot-e2e-nspawn)
	netns=$own_ns
	e2e_netns_create "$netns"
	if [[ -z $mock_config ]]; then
		mock_config=$run/mock-config.json
		e2e_mock_config us-west-2 111122223333 i-0e2e0000000000001 claudecode-ec2-demo >"$mock_config"
	fi
	t=$(e2e_now)
	e2e_mock_start "$netns" "$mock_config" "$run/mock"
	e2e_timing mock-start "$t"
fi
[[ -e /run/netns/$netns ]] || e2e_die "no netns $netns (netns.sh up $netns CONFIG)"

# The machine name is per run: nspawn keys host-side state by it
# (/run/systemd/nspawn/propagate/NAME), so parallel runs must differ.
args=(
	--quiet --register=no --keep-unit --console=pipe --boot
	--machine="ccboot-e2e-$$" --link-journal=no --resolv-conf=off --timezone=off
	--network-namespace-path="/run/netns/$netns"
	--bind-ro="$seed:/var/lib/cloud/seed/nocloud"
	--bind="$out:/out"
	--bind="$out/host/journal:/var/log/journal"
	--bind-ro="$E2E_CACHE/srv/repo:/srv/repo"
	--bind-ro="$E2E_CACHE/srv/rpm-repo:/srv/rpm-repo"
	--overlay="$E2E_CACHE/srv/npm-cache:$run/npm-cache-upper:/srv/npm-cache"
	--bind-ro="$dist:/srv/dist"
)
env_vars=()
if ((docker)); then
	args+=(--capability=CAP_NET_ADMIN)
	env_vars+=(SYSTEMD_NSPAWN_API_VFS_WRITABLE=network)
fi
args+=("${extra[@]}")
if [[ -n $state ]]; then
	mkdir -p "$state"
	state=$(realpath "$state")
fi

# shellcheck disable=SC2016 # expands in the inner shell
# Runs as PID 1 of a private PID namespace: when it dies, the kernel kills
# the container with it. It boots again when the guest reboots (exit 133).
inner='
	set -u
	rootfs=$1 state=$2
	shift 2
	if [ -n "$state" ]; then
		mkdir -p "$state/upper" "$state/work" "$state/merged"
		mount -t overlay overlay \
			-o "lowerdir=$rootfs,upperdir=$state/upper,workdir=$state/work" "$state/merged" || exit 1
		set -- --directory="$state/merged" "$@"
	else
		set -- --directory="$rootfs" --volatile=overlay "$@"
	fi
	while :; do
		systemd-nspawn "$@"
		rc=$?
		[ "$rc" = 133 ] || exit "$rc"
		echo "ccboot-e2e: guest rebooted; booting it again" >&2
	done'

e2e_log "nspawn: booting $variant (timeout ${timeout}s); results in $out"
t_boot=$(e2e_now)
env "${env_vars[@]}" setsid unshare --mount --propagation private --pid --fork --kill-child --mount-proc \
	bash -c "$inner" boot-nspawn "$rootfs" "$state" "${args[@]}" \
	>"$out/host/nspawn.log" 2>&1 </dev/null &
child=$!
sleep "$timeout" &
sleeper=$!
finished='' rc=0
wait -n -p finished "$child" "$sleeper" || rc=$?
if [[ $finished == "$sleeper" ]]; then
	kill -KILL "$child" 2>/dev/null || true
	wait "$child" 2>/dev/null || true
	child=''
	e2e_timing nspawn-run "$t_boot"
	e2e_log "nspawn: TIMEOUT after ${timeout}s, container killed"
	e2e_log "logs: $out/host/nspawn.log; the guest's journal: journalctl -D $out/host/journal"
	exit 124
fi
kill "$sleeper" 2>/dev/null || true
child=''
e2e_timing nspawn-run "$t_boot"
for d in "$out"/boot-*; do
	[[ -f $d/t-cloud-init-done ]] || continue
	e2e_log "$(basename "$d"): seconds since guest boot: probe unit started $(cat "$d/t-probe-start"), cloud-init done $(cat "$d/t-cloud-init-done"), probe done $(cat "$d/t-probe-done" 2>/dev/null || echo '?')"
done
if ((rc != 0)); then
	e2e_log "nspawn exited $rc; log: $out/host/nspawn.log"
	tail -20 "$out/host/nspawn.log" >&2
fi
e2e_report_boots "$out" || {
	rc=$?
	e2e_log "logs: $out/host/nspawn.log $out/boot-*/; journal: journalctl -D $out/host/journal"
	exit "$rc"
}
