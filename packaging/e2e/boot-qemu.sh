#!/usr/bin/env bash
# Boot a cached rootfs as a QEMU VM (TCG, its own kernel: swap, fstab and
# reboots are real), with IMDS at 169.254.169.254:80 forwarded to the mock,
# everything inside a loopback-only network namespace. Waits until the
# guest's probe unit has written its results and powered off, or kills the
# VM after a timeout. The guest may reboot (the probe asks for it by creating
# $E2E_OUT/reboot): QEMU runs with -no-reboot, and the host starts it again
# on the same disks (a cold boot each time, like nspawn) until the guest has
# written /out/done, at most CCBOOT_E2E_QEMU_MAX_BOOTS (default 4) boots.
# Results of every boot are collected.
#
# usage: boot-qemu.sh --seed DIR --out DIR [options]
#   --seed DIR         NoCloud seed with user-data and meta-data (an ISO
#                      labelled cidata)
#   --out DIR          results; must be empty or absent
#   --variant NAME     debian (default) or al2023
#   --image FILE       root disk (raw ext4) instead of the cache's
#                      VARIANT.ext4, e.g. a baked copy; only read (a
#                      per-run qcow2 overlay takes the writes)
#   --probe FILE       script the guest runs after `cloud-init status --wait`
#   --dist DIR         read-only at /srv/dist (a disk made from DIR)
#   --netns NAME       join a netns made by `netns.sh up`; default: private
#   --mock-config FILE config for the private mock (default as boot-nspawn.sh)
#   --port PORT        the mock's port in the netns (default 1338)
#   --fwd IP:PORT      the guest's connections to IP:PORT go to 127.0.0.1:PORT
#                      in the netns (e.g. a stand-in); IP in 169.254.169.0/24,
#                      not .2 (the host), .3 (DNS) or .254 (IMDS); repeatable
#   --timeout SECS     hard limit for the whole run (default 900)
#   --mem MB --smp N   VM size (default 2048, 2)
#
# Guest: /out is a disk (label E2EOUT) the host reads back with debugfs into
# OUT; /srv/repo /srv/npm-cache /srv/rpm-repo come from the cache's srv disk
# through a per-run qcow2 overlay (writable, discarded); /srv/dist is
# read-only. Host-side logs: OUT/host/console.log (serial), OUT/host/qemu.log.
# CCBOOT_E2E_KEEP=1 keeps the run dir (root overlay qcow2 etc.) and prints it.
# Exit: 0 finished and all probes exited 0; 3 a probe failed; 124 timeout;
# 1 anything else.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

seed='' out='' variant=debian image='' probe='' dist='' netns='' mock_config='' port=1338 fwds=()
timeout=900 mem=2048 smp=2
while (($#)); do
	case $1 in
	--seed) seed=$2 && shift ;;
	--out) out=$2 && shift ;;
	--variant) variant=$2 && shift ;;
	--image) image=$2 && shift ;;
	--probe) probe=$2 && shift ;;
	--dist) dist=$2 && shift ;;
	--netns) netns=$2 && shift ;;
	--mock-config) mock_config=$2 && shift ;;
	--port) port=$2 && shift ;;
	--fwd) fwds+=("$2") && shift ;;
	--timeout) timeout=$2 && shift ;;
	--mem) mem=$2 && shift ;;
	--smp) smp=$2 && shift ;;
	*) e2e_die "unknown argument $1 (see the header of $0)" ;;
	esac
	shift
done
[[ -n $seed && -n $out ]] || e2e_die "usage: boot-qemu.sh --seed DIR --out DIR [options]"
[[ -f $seed/user-data && -f $seed/meta-data ]] || e2e_die "$seed needs user-data and meta-data"
[[ -z $probe || -f $probe ]] || e2e_die "probe $probe not found"
[[ -z $dist || -d $dist ]] || e2e_die "dist $dist is not a directory"
busybox=$(command -v busybox) || e2e_die "busybox not found; run deps.sh"

t0=$(e2e_now)
e2e_cache_ensure
q=$E2E_CACHE/qemu
image=${image:-$q/$variant.ext4}
[[ -f $image ]] || e2e_die "no QEMU image $image (variant '$variant')"
image=$(realpath "$image")
e2e_timing cache "$t0"

e2e_require_empty_dir "$out"
out=$(realpath "$out")
mkdir -p "$out/host"
run=$(mktemp -d "${TMPDIR:-/var/tmp}/ccboot-e2e-qemu.XXXXXX")

child='' own_ns=''
cleanup() {
	if [[ -n $child ]] && kill -0 "$child" 2>/dev/null; then kill -KILL "$child" 2>/dev/null || true; fi
	if [[ -n ${E2E_MOCK_PID:-} ]]; then
		e2e_mock_stop "$E2E_MOCK_PID"
		cp "$run/mock/aemm.log" "$out/host/aemm.log" 2>/dev/null || true
	fi
	if [[ -n $own_ns ]]; then e2e_netns_delete "$own_ns"; fi
	if [[ ${CCBOOT_E2E_KEEP:-0} == 1 ]]; then
		e2e_log "kept run dir $run"
	else
		rm -rf "$run"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Per-run disks.
t=$(e2e_now)
qemu-img create -q -f qcow2 -F raw -b "$image" "$run/root.qcow2"
qemu-img create -q -f qcow2 -F raw -b "$q/srv.ext4" "$run/srv.qcow2"
genisoimage -quiet -volid cidata -joliet -rock -o "$run/seed.iso" "$seed"
mkdir -p "$run/out"
if [[ -n $probe ]]; then install -m 0755 "$probe" "$run/out/probe.sh"; fi
truncate -s "${CCBOOT_E2E_QEMU_OUT_MB:-256}M" "$run/out.img"
mkfs.ext4 -q -F -L E2EOUT -d "$run/out" "$run/out.img"
if [[ -z $dist ]]; then
	dist=$run/dist
	mkdir -p "$dist"
fi
truncate -s "$(($(du -sm "$dist" | cut -f1) * 5 / 4 + 16))M" "$run/dist.img"
mkfs.ext4 -q -F -L E2EDIST -d "$dist" "$run/dist.img"
e2e_timing qemu-disks "$t"

if [[ -z $netns ]]; then
	own_ns=$(e2e_ns_name ccboot-e2e-qemu)
	netns=$own_ns
	e2e_netns_create "$netns"
	if [[ -z $mock_config ]]; then
		mock_config=$run/mock-config.json
		e2e_mock_config us-west-2 111122223333 i-0e2e0000000000001 claudecode-ec2-demo >"$mock_config"
	fi
	t=$(e2e_now)
	e2e_mock_start "$netns" "$mock_config" "$run/mock" "$port"
	e2e_timing mock-start "$t"
fi
[[ -e /run/netns/$netns ]] || e2e_die "no netns $netns (netns.sh up $netns CONFIG)"

# IMDS: the guest connects to 169.254.169.254:80; QEMU runs busybox nc for
# each connection, inside the netns, to the mock on 127.0.0.1. restrict=on:
# no other traffic leaves the VM, and the netns has nothing but lo anyway.
netdev="user,id=n0,restrict=on,net=169.254.169.0/24,host=169.254.169.2,dns=169.254.169.3"
netdev+=",guestfwd=tcp:169.254.169.254:80-cmd:$busybox nc 127.0.0.1 $port"
for f in "${fwds[@]}"; do
	[[ $f =~ ^169\.254\.169\.([0-9]+):([0-9]+)$ ]] && ((BASH_REMATCH[1] > 3 && BASH_REMATCH[1] < 254)) ||
		e2e_die "--fwd $f: want 169.254.169.N:PORT with N in 4..253"
	netdev+=",guestfwd=tcp:$f-cmd:$busybox nc 127.0.0.1 ${BASH_REMATCH[2]}"
done
qemu=(
	qemu-system-x86_64 -name ccboot-e2e -nodefaults -no-user-config
	-machine q35 -accel "tcg,thread=multi" -cpu max -smp "$smp" -m "$mem"
	-display none -monitor none -no-reboot
	-chardev "file,id=ser0,path=$out/host/console.log,append=on" -serial chardev:ser0
	-kernel "$q/vmlinuz" -initrd "$q/initrd.img"
	-append "root=/dev/vda rw console=ttyS0 ccboot_e2e net.ifnames=0"
	-drive "file=$run/root.qcow2,format=qcow2,if=virtio"
	-drive "file=$run/seed.iso,format=raw,if=virtio,readonly=on"
	-drive "file=$run/out.img,format=raw,if=virtio"
	-drive "file=$run/srv.qcow2,format=qcow2,if=virtio"
	-drive "file=$run/dist.img,format=raw,if=virtio,readonly=on"
	-netdev "$netdev" -device "virtio-net-pci,netdev=n0"
	-device virtio-rng-pci
)

guest_done() { debugfs -R "cat /done" "$run/out.img" 2>/dev/null | grep -q .; }

e2e_log "qemu: booting $variant (TCG, timeout ${timeout}s); serial log $out/host/console.log"
t_boot=$(e2e_now)
deadline=$(($(date +%s) + timeout))
max_boots=${CCBOOT_E2E_QEMU_MAX_BOOTS:-4}
rc=0 boot=0
while :; do
	boot=$((boot + 1))
	left=$((deadline - $(date +%s)))
	if ((left <= 0)); then
		e2e_log "qemu: TIMEOUT after ${timeout}s"
		rc=124
		break
	fi
	setsid ip netns exec "$netns" "${qemu[@]}" >>"$out/host/qemu.log" 2>&1 </dev/null &
	child=$!
	sleep "$left" &
	sleeper=$!
	finished='' rc=0
	wait -n -p finished "$child" "$sleeper" || rc=$?
	if [[ $finished == "$sleeper" ]]; then
		kill -KILL "$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
		child=''
		e2e_log "qemu: TIMEOUT after ${timeout}s, VM killed"
		rc=124
		break
	fi
	kill "$sleeper" 2>/dev/null || true
	child=''
	if ((rc != 0)); then
		e2e_log "qemu exited $rc; log: $out/host/qemu.log"
		tail -20 "$out/host/qemu.log" >&2
		break
	fi
	if guest_done; then break; fi
	if ((boot >= max_boots)); then
		e2e_log "qemu: the guest went down $boot times without finishing (CCBOOT_E2E_QEMU_MAX_BOOTS=$max_boots)"
		rc=1
		break
	fi
	e2e_log "qemu: the guest rebooted (boot $boot, $(e2e_elapsed "$t_boot") s); starting it again"
done
e2e_timing qemu-run "$t_boot"

# Read the guest's results from the out disk (no loop mount needed).
debugfs -R "rdump / $out" "$run/out.img" >/dev/null 2>&1 || e2e_log "could not read $run/out.img"
rm -rf "$out/lost+found"
for d in "$out"/boot-*; do
	[[ -f $d/t-cloud-init-done ]] || continue
	e2e_log "$(basename "$d"): seconds since guest boot: probe unit started $(cat "$d/t-probe-start"), cloud-init done $(cat "$d/t-cloud-init-done"), probe done $(cat "$d/t-probe-done" 2>/dev/null || echo '?')"
done
if ((rc == 124)); then
	e2e_log "logs: $out/host/console.log $out/host/qemu.log $out/boot-*/"
	exit 124
fi
report=0
e2e_report_boots "$out" || report=$?
if ((report != 0 || rc != 0)); then
	e2e_log "logs: $out/host/console.log $out/host/qemu.log $out/boot-*/"
	exit $((report != 0 ? report : rc))
fi
