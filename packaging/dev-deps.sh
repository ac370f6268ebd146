#!/usr/bin/env bash
# Installs what `make demo` and `make test` drive for real, when missing (needs
# root for apt-get): shadow's groupadd/usermod, systemctl --root, mkswap and
# fallocate, dpkg-deb, npm, curl. Checked by command, not package name: a
# machine may carry e.g. npm from another Node.js distribution. packer
# (Debian's 1.6, MPL-2.0) only validates packaging/packer; a test tool.
# Test tools only, never linked into or shipped with ccboot (GPL among them:
# qemu-user-static and rpm GPL-2.0(+), shellcheck GPL-3.0+).
#
# Then the npm test tools of the IAM checks (packaging/iam, exact versions
# from its package-lock.json, `npm ci`): test tools only, never linked into
# or shipped with ccboot. @cloud-copilot/iam-simulate is AGPL-3.0.
set -euo pipefail
cd "$(dirname "$0")/.."

# iam_tools installs packaging/iam/node_modules unless it already matches
# the lock file it was installed from (a copy kept as node_modules/.ccboot-lock).
iam_tools() {
  local dir=packaging/iam
  if [ -f "$dir/node_modules/.ccboot-lock" ] && cmp -s "$dir/package-lock.json" "$dir/node_modules/.ccboot-lock"; then
    return 0
  fi
  echo "dev-deps: npm ci in $dir (IAM test tools)" >&2
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  cp "$dir/package-lock.json" "$dir/node_modules/.ccboot-lock"
}
declare -A package_of=(
  [make]=make [git]=git [curl]=curl [groupadd]=passwd [usermod]=passwd
  [systemctl]=systemd [mkswap]=util-linux [fallocate]=util-linux
  [dpkg-deb]=dpkg [npm]=npm [update-ca-certificates]=ca-certificates
  [qemu-aarch64-static]=qemu-user-static [rpm]=rpm [shellcheck]=shellcheck
  [packer]=packer [nft]=nftables
)
missing=()
for cmd in "${!package_of[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${package_of[$cmd]}")
done
for extra in "$@"; do missing+=("$extra"); done
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [ "$(id -u)" != 0 ]; then
    echo "dev-deps: missing packages: ${missing[*]}; run as root (sudo) or install them" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
iam_tools
