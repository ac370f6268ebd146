#!/bin/bash
# Bake ccboot into an image on a build instance (Packer's shell provisioner
# runs this file; EC2 Image Builder's component embeds the same lines):
# download the ccboot binary, verify its SHA-256 with the very lines the
# UserData uses, write the image's config, and run `ccboot bake`, which
# converges the image steps, installs ccboot with ccboot.service enabled and
# removes everything that belongs to the build instance. Then
# `ccboot bake --check` proves the image is baked.
#
# Settings (environment variables):
#   CCBOOT_URL, CCBOOT_SHA256   the binary for this machine and its SHA-256 (SHA256SUMS)
#   CCBOOT_CONFIG               optional: the image's /etc/ccboot/ccboot.conf
#                               (image settings: [packages], [claude-code], ...)
# URLs are https:// (http:// only on loopback, for tests) or s3:// (needs the
# aws CLI and an instance role that may read the object).
set -euo pipefail
umask 022

log() { echo "ccboot-bake: $*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

arch=$(uname -m)
url=${CCBOOT_URL:-}
sum=$(printf '%s' "${CCBOOT_SHA256:-}" | tr 'A-F' 'a-f')
[ -n "$url" ] || die "set CCBOOT_URL to the ccboot binary for $arch"
[[ "$sum" =~ ^[0-9a-f]{64}$ ]] ||
  die "no valid SHA-256 (got '$sum'); set CCBOOT_SHA256 to the 64-hex value from SHA256SUMS; refusing to run an unverified binary"

# The builder's own first boot must be over before its records are removed
# and before apt or dnf run beside cloud-init's.
if command -v cloud-init >/dev/null; then cloud-init status --wait >/dev/null || true; fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# @verified-download: userdata.sh's lines, copied by make generate
# loopback_http URL: whether URL is plain http:// to a literal loopback IP
# (127.0.0.0/8 or [::1]) with no user@ part. The host is parsed, not
# globbed: http://127.attacker.example/ and http://localhost:x@host/ are not
# loopback, and neither is a name (localhost), which DNS could answer.
loopback_http() {
  local rest=${1#http://} authority octet
  [ "$rest" != "$1" ] || return 1
  authority=${rest%%[/?#]*}
  if [[ $authority =~ ^\[::1\](:[0-9]{1,5})?$ ]]; then return 0; fi
  [[ $authority =~ ^127\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})(:[0-9]{1,5})?$ ]] || return 1
  for octet in "${BASH_REMATCH[@]:1:3}"; do
    [ "$((10#$octet))" -le 255 ] || return 1
  done
}

# https_or_loopback URL: the schemes a URL ccboot or curl is given may use.
https_or_loopback() { [[ $1 == https://* ]] || loopback_http "$1"; }

log "downloading $url ($arch)"
case "$url" in
  https://* | http://*)
    https_or_loopback "$url" ||
      die "refusing $url: plain http:// only to a loopback IP such as 127.0.0.1 (for tests); use https://"
    # --retry-all-errors: early in boot DNS and routes may not be up yet.
    curl --fail --silent --show-error --location --proto-redir =https \
      --connect-timeout 10 --max-time 600 --retry 5 --retry-all-errors \
      -o "$tmp/ccboot" "$url" || die "download $url failed; check the URL and that the instance can reach it"
    ;;
  s3://*)
    command -v aws >/dev/null ||
      die "$url is an s3:// URL but the aws CLI is not installed; use the object's https:// URL (with a bucket policy or a presigned URL)"
    ok=""
    for delay in 1 2 4 8 16; do
      if aws s3 cp --only-show-errors "$url" "$tmp/ccboot"; then ok=1 && break; fi
      log "aws s3 cp failed; retrying in ${delay}s"
      sleep "$delay"
    done
    [ -n "$ok" ] || die "download $url failed; check the instance role may s3:GetObject it"
    ;;
  *) die "unsupported URL $url; use https:// or s3://" ;;
esac

got=$(sha256sum "$tmp/ccboot" | cut -d' ' -f1)
if [ "$got" != "$sum" ]; then
  die "SHA-256 mismatch for $url: expected $sum, got $got; NOT running it (wrong release, wrong arch or tampered download)"
fi
log "sha256 ok: $got"
# @end-verified-download

chmod 0755 "$tmp/ccboot"
if [ -n "${CCBOOT_CONFIG:-}" ]; then
  mkdir -p /etc/ccboot
  conf_tmp=$(mktemp /etc/ccboot/.ccboot.conf.XXXXXX)
  printf '%s\n' "$CCBOOT_CONFIG" >"$conf_tmp"
  chmod 0644 "$conf_tmp"
  mv -f "$conf_tmp" /etc/ccboot/ccboot.conf
fi
"$tmp/ccboot" bake
"$tmp/ccboot" bake --check
