#!/usr/bin/env bash
# Install the host tools the e2e harness needs. Idempotent: a second run
# installs nothing. Needs root and the host's apt and Go module proxy.
# Test tools only, never linked into or shipped with ccboot; several are
# GPL: qemu, busybox, genisoimage (GPL-2.0), rpm, dnf, createrepo-c
# (GPL-2.0+), shellcheck (GPL-3.0+); the guests' cloud-init is GPL-3.0 or
# Apache-2.0.
set -euo pipefail

pkgs=(
	debootstrap systemd-container
	qemu-system-x86 qemu-utils genisoimage busybox
	dpkg-dev rpm createrepo-c dnf
	e2fsprogs iproute2 util-linux curl jq
	shellcheck gpg
)
aemm_version=v1.13.0

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if ((${#missing[@]})); then
	echo "deps: installing ${missing[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
	echo "deps: host packages already installed" >&2
fi

# npm comes with the host's Node.js (Debian's npm conflicts with NodeSource's nodejs).
command -v npm >/dev/null || { echo "deps: npm is not on PATH; install Node.js >= 18 with npm" >&2; exit 1; }
command -v go >/dev/null || { echo "deps: go is not on PATH; install Go first" >&2; exit 1; }
gobin=$(go env GOBIN)
[[ -n $gobin ]] || gobin="$(go env GOPATH)/bin"
aemm="$gobin/ec2-metadata-mock"
if [[ -x $aemm ]] && go version -m "$aemm" 2>/dev/null | grep -q "amazon-ec2-metadata-mock[[:space:]]*$aemm_version"; then
	echo "deps: ec2-metadata-mock $aemm_version already at $aemm" >&2
else
	echo "deps: go install ec2-metadata-mock@$aemm_version" >&2
	go install "github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@$aemm_version"
fi
