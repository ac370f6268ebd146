#!/bin/bash
# ccboot UserData: download the ccboot binary, verify its SHA-256, write
# /etc/ccboot/ccboot.conf and run `ccboot install`, which installs and starts
# ccboot.service and exits with the result of the bootstrap run.
#
# Single source: packaging/cloudformation/ccboot.yaml embeds this file, with
# the settings block below filled by !Sub. After editing this file run
#   go test ./packaging -run TestTemplateUserData -update
# Standalone (any host, any launcher): set the CCBOOT_* variables and run it.
#
# Settings (environment variables):
#   CCBOOT_URL_ARM64, CCBOOT_SHA256_ARM64   binary for aarch64 hosts
#   CCBOOT_URL_AMD64, CCBOOT_SHA256_AMD64   binary for x86_64 hosts
#   CCBOOT_URL, CCBOOT_SHA256               if set, used whatever the arch
#   CCBOOT_READONLY_ROLE_ARN, CCBOOT_ELEVATED_ROLE_ARN   [aws] *_role_arn (both or neither)
#   CCBOOT_MODEL                            [bedrock] model
#   CCBOOT_TIER_MODE                        [tiers] mode: advisory (default) or enforced
#   CCBOOT_REGION                           [aws] region (empty: the instance's)
#   CCBOOT_WAIT_CONDITION_URL               [ccboot] wait_condition_url
#   CCBOOT_CONF_DIR (/etc/ccboot), CCBOOT_BIN_DIR (/usr/local/bin)
# URLs are https:// (plain http:// only to a literal loopback IP, for tests)
# or s3:// (needs the aws CLI). The binary never runs unless its SHA-256
# matches.
set -euo pipefail
umask 022

# @cfn-settings (the CloudFormation template sets the variables here)

conf_dir=${CCBOOT_CONF_DIR:-/etc/ccboot}
bin_dir=${CCBOOT_BIN_DIR:-/usr/local/bin}
wait_url=${CCBOOT_WAIT_CONDITION_URL:-}

log() { echo "ccboot-userdata: $*" >&2; }

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

# signal_failure tells a CloudFormation WaitCondition at once, instead of
# letting the stack wait out its timeout, when ccboot never got to signal.
signal_failure() {
  [ -n "$wait_url" ] || return 0
  local reason
  reason=$(printf '%s' "$1" | tr -d '\042\134' | tr '\n\t' '  ' | cut -c1-200)
  curl --silent --show-error --fail --retry 3 --retry-all-errors --max-time 30 \
    -X PUT -H 'Content-Type:' \
    --data-binary "{\"Status\":\"FAILURE\",\"Reason\":\"$reason\",\"UniqueId\":\"ccboot-userdata\",\"Data\":\"$reason\"}" \
    "$wait_url" >/dev/null || log "could not signal the wait condition"
}

die() {
  log "ERROR: $*"
  signal_failure "$*"
  exit 1
}

# The pre-signed URL carries its signature: it goes nowhere but https (or a
# loopback IP in tests), and curl does not follow redirects with it.
if [ -n "$wait_url" ] && ! https_or_loopback "$wait_url"; then
  bad=$wait_url wait_url=""
  die "wait condition URL $bad must be https:// (plain http:// only to a loopback IP such as 127.0.0.1, for tests)"
fi

case "$(uname -m)" in
  aarch64 | arm64) arch=arm64 url=${CCBOOT_URL_ARM64:-} sum=${CCBOOT_SHA256_ARM64:-} ;;
  x86_64 | amd64) arch=amd64 url=${CCBOOT_URL_AMD64:-} sum=${CCBOOT_SHA256_AMD64:-} ;;
  *) die "unsupported machine $(uname -m); ccboot is built for aarch64 and x86_64" ;;
esac
if [ -n "${CCBOOT_URL:-}" ]; then
  url=$CCBOOT_URL sum=${CCBOOT_SHA256:-}
fi
sum=$(printf '%s' "$sum" | tr 'A-F' 'a-f')
[ -n "$url" ] || die "no ccboot URL for $arch; set CCBOOT_URL_${arch^^} (stack parameter CcbootUrl${arch^})"
[[ "$sum" =~ ^[0-9a-f]{64}$ ]] ||
  die "no valid SHA-256 for $arch (got '$sum'); set CCBOOT_SHA256_${arch^^} to the 64-hex value from SHA256SUMS; refusing to run an unverified binary"

# advisory is ccboot's default and writes no key, so the file is as it always
# was; enforced is written out, and a ccboot without [tiers] refuses the key
# rather than running advisory on an instance meant to be enforced.
tier_mode=${CCBOOT_TIER_MODE:-advisory}
case "$tier_mode" in
  advisory | enforced) ;;
  *) die "CCBOOT_TIER_MODE '$tier_mode' must be advisory or enforced (stack parameter TierMode)" ;;
esac

# Values go into an INI file: refuse anything that would not read back as
# written (whitespace, comment characters, quotes).
for v in "$wait_url" "${CCBOOT_REGION:-}" "${CCBOOT_READONLY_ROLE_ARN:-}" "${CCBOOT_ELEVATED_ROLE_ARN:-}" "${CCBOOT_MODEL:-}"; do
  [[ "$v" =~ ^[^[:space:]\#\;\`\"\']*$ ]] || die "setting '$v' contains whitespace, quotes, # or ;, which ccboot.conf cannot hold"
done

tmp=$(mktemp -d)
conf_tmp=""
trap 'rm -rf "$tmp" ${conf_tmp:+"$conf_tmp"}' EXIT

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

mkdir -p "$bin_dir" "$conf_dir"
install -m 0755 "$tmp/ccboot" "$bin_dir/ccboot"

# The config is written to a temp file in the same directory and renamed,
# so ccboot never reads half a file.
{
  echo "# Written by UserData at first boot. ccboot reads it on every run."
  echo "[ccboot]"
  [ -z "$wait_url" ] || echo "wait_condition_url = $wait_url"
  echo
  echo "[aws]"
  [ -z "${CCBOOT_REGION:-}" ] || echo "region = $CCBOOT_REGION"
  [ -z "${CCBOOT_READONLY_ROLE_ARN:-}" ] || echo "readonly_role_arn = $CCBOOT_READONLY_ROLE_ARN"
  [ -z "${CCBOOT_ELEVATED_ROLE_ARN:-}" ] || echo "elevated_role_arn = $CCBOOT_ELEVATED_ROLE_ARN"
  echo
  echo "[bedrock]"
  [ -z "${CCBOOT_MODEL:-}" ] || echo "model = $CCBOOT_MODEL"
  if [ "$tier_mode" = enforced ]; then
    echo
    echo "[tiers]"
    echo "mode = enforced"
  fi
} >"$tmp/ccboot.conf"
chmod 0644 "$tmp/ccboot.conf"
conf_tmp=$(mktemp "$conf_dir/.ccboot.conf.XXXXXX")
cat "$tmp/ccboot.conf" >"$conf_tmp"
chmod 0644 "$conf_tmp"
if [ "$(id -u)" = 0 ]; then chown 0:0 "$conf_tmp"; fi
mv -f "$conf_tmp" "$conf_dir/ccboot.conf"

log "running $bin_dir/ccboot install"
rc=0
"$bin_dir/ccboot" install || rc=$?
if [ "$rc" -ne 0 ]; then
  die "ccboot install exited $rc; see 'ccboot status' and journalctl -u ccboot"
fi
log "done"
