#!/usr/bin/env bash
# Build, once, everything the e2e boots need, and print the cache directory.
#
#   cache.sh            build if missing, print the cache dir on stdout
#   cache.sh --path     print the cache dir; exit 1 if it is not built
#   cache.sh --prune    also delete caches of other recipe hashes
#
# The cache lives in $CCBOOT_E2E_CACHE/<hash> (default root
# /var/cache/ccboot-e2e), where <hash> covers this script and image/. The
# plain debootstrap output is a layer of its own in
# $CCBOOT_E2E_CACHE/debootstrap-<key>, <key> covering only the suite and
# image/debootstrap.list, so other recipe changes skip debootstrap. A build
# happens in $CCBOOT_E2E_CACHE/.build-<hash>.<pid> and is renamed into place
# only when complete, so a killed build never looks valid; the next run
# deletes the leftovers. Concurrent runs wait on a lock.
#
# Layout of the cache:
#   rootfs/debian/     Debian bookworm + systemd + cloud-init + kernel, and
#                      the AWS CLI v2 (awscli 2.17.3 from bookworm-backports,
#                      Apache-2.0; bookworm's own 2.9.19 ignores
#                      AWS_ENDPOINT_URL_*), as a user's image has it
#   rootfs/al2023/     the same with dnf, Amazon Linux 2023 os-release, no apt
#   srv/repo/          flat apt repo: unzip git jq nodejs npm docker.io,
#                      rootlesskit slirp4netns uidmap dbus-user-session,
#                      busybox-static
#   srv/npm-cache/     npm cache: @anthropic-ai/claude-code(-linux-x64)
#   srv/rpm-repo/      rpm repo: stub unzip git jq nodejs nodejs22(-npm) docker
#   qemu/{debian,al2023}.ext4  root file systems for QEMU (raw, sparse)
#   qemu/srv.ext4      srv/ as a disk (label E2ESRV)
#   qemu/vmlinuz qemu/initrd.img
#   NOTES  build.log  .complete
#
# Network: debootstrap, apt-get --download-only and npm cache add reach the
# Debian mirror of this host (bookworm and, for awscli, bookworm-backports)
# and the npm registry; nothing else does.
# shellcheck disable=SC2016 # the bash -c scripts expand inside the chroot
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

suite=bookworm
claude_version=2.1.332
apt_targets=(unzip git jq nodejs npm docker.io)
# In the repository too, not requested by ccboot's default package set:
# what enforced mode's packages step adds beside docker.io for the user's
# rootless dockerd (steps/rootlessdocker.go rootlessAptPackages), and a
# static busybox the QEMU enforced scenario (13q) imports as a container
# image (FROM scratch: no registry is reachable).
rootless_targets=(rootlesskit slirp4netns uidmap dbus-user-session)
image_build_targets=(busybox-static)
# The AWS CLI v2 a user's image has (Amazon Linux ships v2 as well), pinned:
# 2.13.30 is the first to honour AWS_ENDPOINT_URL_STS, which points it at
# the loopback stand-in; bookworm's 2.9.19 is older. Its python3-awscrt
# must come from backports too.
awscli_pkgs=(awscli=2.17.3-1~bpo12+1 python3-awscrt=0.20.4+dfsg-1~bpo12+1)
# nftables: Debian 12's cloud images have it (Priority: important), and
# enforced tiers load ccboot's IMDS filter with nft (scenario 13).
image_pkgs=(nftables)
mapfile -t rootfs_include < <(grep -v '^#' "$here/image/debootstrap.list" | grep .)
masked_units=(
	apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer
	e2scrub_all.timer e2scrub_reap.service fstrim.timer man-db.timer
)

mode=build
case ${1:-} in
"") ;;
--path) mode=path ;;
--prune) mode=prune ;;
*) e2e_die "usage: cache.sh [--path|--prune]" ;;
esac

hash=$(e2e_recipe_hash)
root=$(e2e_cache_root)
final=$root/$hash
# The debootstrap output is a cache layer of its own, keyed only by the
# suite and image/debootstrap.list: changing the rest of the recipe reuses it.
base_key=$( (
	echo "$suite"
	uname -m
	cat "$here/image/debootstrap.list"
) | sha256sum | cut -c1-16)
base=$root/debootstrap-$base_key

if [[ $mode == path ]]; then
	echo "$final"
	[[ -f $final/.complete ]]
	exit
fi
if [[ $mode == prune ]]; then
	for d in "$root"/*; do
		[[ -d $d && $d != "$final" && $d != "$base" ]] || continue
		e2e_log "prune: removing $d"
		rm -rf "$d"
	done
fi
if [[ -f $final/.complete ]]; then
	echo "$final"
	exit 0
fi

[[ $(id -u) == 0 ]] || e2e_die "cache.sh must run as root (debootstrap, chroot)"
mkdir -p "$root"
exec 9>"$root/.lock"
flock 9
if [[ -f $final/.complete ]]; then # built by the run we waited for
	echo "$final"
	exit 0
fi
for stale in "$root"/.build-*; do # we hold the lock: these are dead builds
	if [[ -e $stale ]]; then
		e2e_log "removing an unfinished build: $stale"
		rm -rf "$stale"
	fi
done
if [[ -e $final ]]; then
	e2e_log "removing incomplete $final"
	rm -rf "$final"
fi

work=$root/.build-$hash.$$
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work"
exec 3>&2 2> >(tee "$work/build.log" >&3)
t_all=$(e2e_now)
E2E_TIMINGS=$work/timings
e2e_log "building cache $hash in $work"

# The Debian mirror this host uses (the first URIs of a stanza with our suite).
debian_mirror() {
	local src=/etc/apt/sources.list.d/debian.sources m
	if [[ -n ${CCBOOT_E2E_MIRROR:-} ]]; then
		echo "$CCBOOT_E2E_MIRROR"
		return
	fi
	if [[ -f $src ]]; then
		m=$(awk -v s="$suite" '
			/^[[:space:]]*$/ {u=""}
			/^URIs:/ {u=$2}
			/^Suites:/ {for (i=2; i<=NF; i++) if ($i==s && u!="") {print u; exit}}' "$src")
	else
		m=$(awk -v s="$suite" '$1=="deb" && $3==s {print $2; exit}' /etc/apt/sources.list)
	fi
	[[ -n $m ]] || e2e_die "no $suite mirror found in the host's apt sources; set CCBOOT_E2E_MIRROR"
	echo "$m"
}

# in_chroot ROOT [--bind SRC DST]... -- CMD...: run CMD chrooted in ROOT with
# /proc /sys /dev, in a private mount namespace (mounts vanish with it).
in_chroot() {
	local r=$1 binds=()
	shift
	while [[ $1 == --bind ]]; do
		binds+=("$2" "$3")
		shift 3
	done
	[[ $1 == -- ]] && shift
	unshare --mount --propagation private -- bash -euc '
		r=$1; n=$2; shift 2
		while ((n > 0)); do
			mkdir -p "$r$2"; mount --bind "$1" "$r$2"; shift 2; n=$((n - 2))
		done
		mount -t proc proc "$r/proc"
		mount -t sysfs sysfs "$r/sys"
		mount --rbind /dev "$r/dev"
		exec chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
			DEBIAN_FRONTEND=noninteractive HOME=/root "$@"
	' in_chroot "$r" "${#binds[@]}" "${binds[@]}" "$@"
}

# apt_download STATUS DEST PKG...: resolve PKG on top of a dpkg status file
# with the host's apt sources (plus bookworm-backports of the same mirror when
# APT_BACKPORTS=1), download the debs into DEST.
apt_download() {
	local status=$1 dest=$2 a=$work/aptroot
	shift 2
	rm -rf "$a"
	mkdir -p "$a"/etc/apt/{apt.conf.d,preferences.d,sources.list.d,trusted.gpg.d} \
		"$a"/var/lib/apt/lists/partial "$a"/var/cache/apt/archives/partial "$a"/var/lib/dpkg
	cp "$status" "$a/var/lib/dpkg/status"
	# Only Debian's own sources: other repositories the host may have (e.g.
	# NodeSource) must not leak into the guest's package set.
	if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
		cp /etc/apt/sources.list.d/debian.sources "$a/etc/apt/sources.list.d/"
	else
		cp /etc/apt/sources.list "$a/etc/apt/"
	fi
	if [[ ${APT_BACKPORTS:-0} == 1 ]]; then
		printf 'Types: deb\nURIs: %s\nSuites: %s-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
			"$(debian_mirror)" "$suite" >"$a/etc/apt/sources.list.d/ccboot-e2e-backports.sources"
	fi
	cp -a /etc/apt/trusted.gpg.d/. "$a/etc/apt/trusted.gpg.d/" 2>/dev/null || true
	cat >"$a/apt.conf" <<-EOF
		Dir "$a/";
		Dir::State::status "$a/var/lib/dpkg/status";
		APT::Architecture "amd64";
		APT::Architectures { "amd64"; };
		APT::Install-Recommends "false";
		Acquire::Languages "none";
	EOF
	APT_CONFIG=$a/apt.conf apt-get -q update >/dev/null
	APT_CONFIG=$a/apt.conf apt-get -qq -y --download-only install "$@" >/dev/null
	mkdir -p "$dest"
	cp "$a"/var/cache/apt/archives/*.deb "$dest/"
	rm -rf "$a"
}

step_debootstrap() {
	local t b mirror
	t=$(e2e_now)
	if [[ ! -f $base/.complete ]]; then
		rm -rf "$base"
		b=$root/.build-debootstrap-$base_key.$$
		mirror=$(debian_mirror)
		e2e_log "debootstrap $suite from $mirror into $b"
		mkdir -p "$b"
		unshare --mount --propagation private -- debootstrap --variant=minbase \
			--include="$(
				IFS=,
				echo "${rootfs_include[*]}"
			)" "$suite" "$b/rootfs" "$mirror" >"$b/debootstrap.log" 2>&1 ||
			{
				tail -30 "$b/debootstrap.log" >&2
				rm -rf "$b"
				e2e_die "debootstrap failed (log above)"
			}
		date -u +%FT%TZ >"$b/.complete"
		mv -T "$b" "$base"
		e2e_timing debootstrap "$t"
		t=$(e2e_now)
	fi
	mkdir -p "$work/rootfs"
	cp -a --reflink=auto "$base/rootfs" "$work/rootfs/debian"
	e2e_timing debootstrap-copy "$t"
}

step_configure_debian() {
	local t r=$work/rootfs/debian g=$here/image/guest u
	t=$(e2e_now)
	install -m 0644 "$g/resolv.conf" "$r/etc/resolv.conf"
	install -m 0644 "$g/hosts" "$r/etc/hosts"
	echo ccboot-e2e >"$r/etc/hostname"
	printf '# ccboot e2e: the root file system is / (nspawn) or /dev/vda (QEMU)\n' >"$r/etc/fstab"
	# An empty machine-id: each boot gets a fresh one, as on a cloud image.
	: >"$r/etc/machine-id"
	rm -f "$r/var/lib/dbus/machine-id"

	# apt: only the local repository, bind-mounted at /srv/repo.
	rm -f "$r"/etc/apt/sources.list.d/*
	echo 'deb [trusted=yes] file:/srv/repo ./' >"$r/etc/apt/sources.list"
	echo 'Acquire::Languages "none";' >"$r/etc/apt/apt.conf.d/90ccboot-e2e"

	install -D -m 0644 "$g/99-ccboot-e2e.cfg" "$r/etc/cloud/cloud.cfg.d/99-ccboot-e2e.cfg"
	install -D -m 0755 "$g/probe-runner" "$r/usr/local/libexec/ccboot-e2e/probe-runner"
	install -D -m 0755 "$g/mounts" "$r/usr/local/libexec/ccboot-e2e/mounts"
	install -m 0644 "$g/ccboot-e2e-probe.service" "$g/ccboot-e2e-mounts.service" "$r/etc/systemd/system/"
	install -D -m 0644 "$g/80-e2e-dhcp.network" "$r/etc/systemd/network/80-e2e-dhcp.network"
	for u in systemd-networkd.service systemd-networkd.socket systemd-networkd-wait-online.service; do
		install -D -m 0644 "$g/not-in-container.conf" "$r/etc/systemd/system/$u.d/ccboot-e2e.conf"
	done

	in_chroot "$r" -- bash -euc '
		groupadd -r wheel
		useradd -m -u 1000 -U -s /bin/bash -c "EC2 Default User" -G wheel,adm,systemd-journal ec2-user
		echo "ec2-user ALL=(ALL) NOPASSWD:ALL" >/etc/sudoers.d/90-cloud-init-users
		chmod 0440 /etc/sudoers.d/90-cloud-init-users
		systemctl enable ccboot-e2e-probe.service ccboot-e2e-mounts.service systemd-networkd.service
		systemctl mask "$@"
		ls /boot/vmlinuz-* /boot/initrd.img-* >/dev/null
	' configure "${masked_units[@]}"
	rm -rf "$r"/var/lib/cloud/* "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*
	e2e_timing configure-debian "$t"
}

# The AWS CLI v2 from backports, installed offline into the Debian rootfs
# (the al2023 variant, a copy of it, keeps it: Amazon Linux has v2 too).
step_awscli() {
	local t r=$work/rootfs/debian debs=$work/awscli-debs v
	t=$(e2e_now)
	APT_BACKPORTS=1 apt_download "$r/var/lib/dpkg/status" "$debs" "${awscli_pkgs[@]}" "${image_pkgs[@]}"
	in_chroot "$r" --bind "$debs" /tmp/awscli-debs -- bash -euc '
		printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
		dpkg -i /tmp/awscli-debs/*.deb >/dev/null
		rm -f /usr/sbin/policy-rc.d
	'
	rm -rf "$debs"
	v=$(in_chroot "$r" -- aws --version)
	[[ $v == aws-cli/2.17.3\ * ]] || e2e_die "awscli in the rootfs: $v, want aws-cli/2.17.3"
	in_chroot "$r" -- nft --version >/dev/null || e2e_die "nft is missing from the rootfs (image_pkgs)"
	echo "awscli: $v (bookworm-backports, Apache-2.0)" >>"$work/NOTES"
	e2e_timing awscli "$t"
}

step_apt_repo() {
	local t r=$work/rootfs/debian repo=$work/srv/repo n mb
	t=$(e2e_now)
	apt_download "$r/var/lib/dpkg/status" "$repo" "${apt_targets[@]}" "${rootless_targets[@]}" "${image_build_targets[@]}"
	(cd "$repo" && dpkg-scanpackages --multiversion . /dev/null >Packages 2>/dev/null)
	# Index it in the image, and prove the repository is complete: the
	# guest's own apt must resolve the whole set from it alone.
	in_chroot "$r" --bind "$repo" /srv/repo -- bash -euc '
		apt-get -q update >/dev/null
		apt-get -q -s install --no-install-recommends "$@" >/dev/null
	' apt "${apt_targets[@]}" "${rootless_targets[@]}" "${image_build_targets[@]}"
	n=$(find "$repo" -name '*.deb' | wc -l)
	mb=$(du -sm "$repo" | cut -f1)
	echo "apt repo: $n debs, $mb MB (apt-get install --no-install-recommends ${apt_targets[*]} ${rootless_targets[*]} ${image_build_targets[*]})" >>"$work/NOTES"
	e2e_timing apt-repo "$t"
}

step_npm_cache() {
	local t c=$work/srv/npm-cache
	t=$(e2e_now)
	mkdir -p "$c"
	npm cache add --cache "$c" --loglevel=warn \
		"@anthropic-ai/claude-code@$claude_version" \
		"@anthropic-ai/claude-code-linux-x64@$claude_version" >&2
	echo "npm cache: @anthropic-ai/claude-code@$claude_version (+linux-x64), $(du -sm "$c" | cut -f1) MB" >>"$work/NOTES"
	e2e_timing npm-cache "$t"
}

step_rpm_repo() {
	local t top=$work/rpmbuild repo=$work/srv/rpm-repo s
	t=$(e2e_now)
	mkdir -p "$repo"
	for s in "$here"/image/rpm/*.spec; do
		rpmbuild --quiet --define "_topdir $top" -bb "$s" >&2
	done
	cp "$top"/RPMS/noarch/*.rpm "$repo/"
	createrepo_c --quiet "$repo"
	rm -rf "$top"
	echo "rpm repo: $(find "$repo" -name '*.rpm' | wc -l) rpms: $(find "$repo" -name '*.rpm' -printf '%f\n' | sort | tr '\n' ' ')" >>"$work/NOTES"
	e2e_timing rpm-repo "$t"
}

step_al2023() {
	local t d=$work/rootfs/debian r=$work/rootfs/al2023 a=$here/image/al2023 debs=$work/dnf-debs
	t=$(e2e_now)
	cp -a --reflink=auto "$d" "$r"
	# dnf from Debian, downloaded on the host, installed offline; and the
	# rpm command, which Amazon Linux always has (ccboot queries rpm -q).
	apt_download "$r/var/lib/dpkg/status" "$debs" dnf rpm
	in_chroot "$r" --bind "$debs" /tmp/dnf-debs -- bash -euc '
		printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
		dpkg -i /tmp/dnf-debs/*.deb >/dev/null
		rm -f /usr/sbin/policy-rc.d
		# Amazon Linux has no apt: make sure nothing can take that path.
		dpkg --purge --force-depends apt >/dev/null 2>&1
		rm -rf /etc/apt /var/lib/apt /var/cache/apt
	'
	rm -rf "$debs"
	rm -f "$r/etc/os-release" "$r/usr/lib/os-release"
	install -m 0644 "$a/os-release" "$r/usr/lib/os-release"
	ln -s ../usr/lib/os-release "$r/etc/os-release"
	install -m 0644 "$a/system-release" "$r/etc/system-release"
	install -m 0755 "$a/alternatives" "$r/usr/sbin/alternatives"
	ln -s system-release "$r/etc/amazon-linux-release"
	mkdir -p "$r/etc/yum.repos.d"
	install -m 0644 "$a/local.repo" "$r/etc/yum.repos.d/local.repo"
	# The virtual base package, then prove `dnf install jq` resolves offline.
	in_chroot "$r" --bind "$work/srv/rpm-repo" /srv/rpm-repo -- bash -euc '
		dnf -q -y --releasever=2023 install e2e-base >/dev/null
		dnf -q -y --setopt=tsflags=test install jq unzip git nodejs22 nodejs22-npm docker >/dev/null
		dnf -q clean all >/dev/null
	'
	e2e_timing al2023-rootfs "$t"
}

step_qemu_images() {
	local t q=$work/qemu v size r
	t=$(e2e_now)
	mkdir -p "$q"
	for v in debian al2023; do
		r=$work/rootfs/$v
		truncate -s 6G "$q/$v.ext4"
		mkfs.ext4 -q -F -L root -d "$r" "$q/$v.ext4"
	done
	cp "$(find "$work/rootfs/debian/boot" -name 'vmlinuz-*' | sort | tail -1)" "$q/vmlinuz"
	cp "$(find "$work/rootfs/debian/boot" -name 'initrd.img-*' | sort | tail -1)" "$q/initrd.img"
	size=$(($(du -sm "$work/srv" | cut -f1) * 5 / 4 + 256))
	truncate -s "${size}M" "$q/srv.ext4"
	mkfs.ext4 -q -F -L E2ESRV -d "$work/srv" "$q/srv.ext4"
	e2e_timing qemu-images "$t"
}

step_debootstrap
step_configure_debian
step_awscli
step_apt_repo
step_npm_cache
step_rpm_repo
step_al2023
step_qemu_images

{
	echo "recipe: $hash"
	echo "rootfs/debian: $(du -sm "$work/rootfs/debian" | cut -f1) MB"
	echo "rootfs/al2023: $(du -sm "$work/rootfs/al2023" | cut -f1) MB"
	echo "qemu: $(du -sm "$work/qemu" | cut -f1) MB on disk (sparse)"
	echo "cache total: $(du -sm "$work" | cut -f1) MB"
} >>"$work/NOTES"
e2e_timing cache-total "$t_all"
cat "$work/timings" >>"$work/NOTES"
sed 's/^/  /' "$work/NOTES" >&2
e2e_recipe_files | sed 's/^/recipe file: /' >"$work/RECIPE"
date -u +%FT%TZ >"$work/.complete"
sync -f "$work/.complete"
mv -T "$work" "$final"
echo "$final"
