#!/usr/bin/env bash
# make demo: ccboot's main job, locally, without AWS.
#
# Starts AWS's EC2 metadata mock on 127.0.0.1 (IMDSv2 only) with a made-up
# instance, builds a throwaway root that looks like a fresh instance (a
# user ec2-user, docker's unit file as if the package were installed), runs
# `ccboot run --root` against it twice, and shows what it wrote. The package
# and Claude Code steps are skipped: they need the image's own package
# manager (the e2e harness runs them for real in a booted guest).
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/ccboot-demo.XXXXXX)
root=$work/root
aemm_pid=
cleanup() { [ -n "$aemm_pid" ] && kill "$aemm_pid" 2>/dev/null; true; }
trap cleanup EXIT

if [ "$(id -u)" != 0 ]; then
  echo "demo: run as root (ccboot writes files owned by ec2-user): sudo make demo" >&2
  exit 1
fi

aemm=${AEMM:-$(command -v ec2-metadata-mock || echo "$(go env GOPATH)/bin/ec2-metadata-mock")}
[ -x "$aemm" ] || { echo "demo: ec2-metadata-mock missing; run: make tools" >&2; exit 1; }

echo "== building ccboot"
(cd "$here" && CGO_ENABLED=0 go build -trimpath -tags nethttpomithttp2 -o "$work/ccboot" ./cmd/ccboot)

echo "== starting the EC2 metadata mock on 127.0.0.1:1338 (IMDSv2 only)"
cat > "$work/aemm.json" <<'JSON'
{
  "metadata": { "values": {
    "placement-region": "eu-west-1", "placement-availability-zone": "eu-west-1b",
    "instance-id": "i-0123456789abcdef0", "services-partition": "aws",
    "iam-info": { "Code": "Success", "LastUpdated": "2026-11-27T00:00:00Z",
      "InstanceProfileArn": "arn:aws:iam::111122223333:instance-profile/claudecode-ec2-demo",
      "InstanceProfileId": "AIPAEXAMPLEPROFILEID" } } },
  "dynamic": { "values": { "instance-identity-document": {
    "accountId": "111122223333", "region": "eu-west-1", "availabilityZone": "eu-west-1b",
    "instanceId": "i-0123456789abcdef0", "architecture": "arm64", "instanceType": "t4g.medium",
    "imageId": "ami-0123456789abcdef0", "version": "2017-09-30", "privateIp": "10.0.0.10",
    "pendingTime": "2026-11-27T00:00:00Z" } } }
}
JSON
HOME=$work "$aemm" -n 127.0.0.1 -p 1338 -I -c "$work/aemm.json" >"$work/aemm.log" 2>&1 &
aemm_pid=$!
for _ in $(seq 100); do
  curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://127.0.0.1:1338/latest/api/token >/dev/null && break
  sleep 0.1
done

echo "== throwaway root at $root"
mkdir -p "$root"/etc "$root"/home/ec2-user "$root"/usr/lib/systemd/system
printf 'ID=amzn\nVERSION_ID="2023"\nPRETTY_NAME="Amazon Linux 2023 (ccboot demo root)"\n' > "$root/etc/os-release"
printf 'root:x:0:0:root:/root:/bin/bash\nec2-user:x:1000:1000:EC2 Default User:/home/ec2-user:/bin/bash\n' > "$root/etc/passwd"
printf 'root:x:0:\nec2-user:x:1000:\n' > "$root/etc/group"
printf 'root:*::0:99999:7:::\nec2-user:!!:20000:0:99999:7:::\n' > "$root/etc/shadow"
printf 'root:*::\nec2-user:!::\n' > "$root/etc/gshadow"
chmod 0640 "$root/etc/shadow" "$root/etc/gshadow"
printf '# /etc/fstab\nUUID=0000-demo / xfs defaults,noatime 1 1\n' > "$root/etc/fstab"
printf '# .bashrc\n[ -f /etc/bashrc ] && . /etc/bashrc\n' > "$root/home/ec2-user/.bashrc"
chown -R 1000:1000 "$root/home/ec2-user" && chmod 0700 "$root/home/ec2-user"
printf '[Unit]\nDescription=Docker (demo stand-in for the package)\n[Service]\nExecStart=/usr/bin/dockerd\n[Install]\nWantedBy=multi-user.target\n' > "$root/usr/lib/systemd/system/docker.service"

ccboot() { "$work/ccboot" "$@" --root "$root" --imds-endpoint http://127.0.0.1:1338; }

echo; echo "== ccboot plan (what would change)"
ccboot plan --skip packages,claude-code || true
echo; echo "== ccboot run"
ccboot run --skip packages,claude-code
echo; echo "== ccboot repair (second run: nothing to do)"
ccboot repair --skip packages,claude-code
echo; echo "== ccboot status"
ccboot status || true
for f in etc/profile.d/claude-bedrock.sh home/ec2-user/.aws/config home/ec2-user/.bashrc etc/fstab; do
  echo; echo "== $f ($(stat -c 'mode %a, owner %u:%g' "$root/$f"))"
  cat "$root/$f"
done
echo; echo "== /swapfile: $(stat -c '%s bytes, mode %a' "$root/swapfile")"
echo "== ec2-user groups: $(grep '^docker:' "$root/etc/group")"
echo "== docker enabled: $(ls "$root/etc/systemd/system/multi-user.target.wants/" 2>/dev/null | tr '\n' ' ')"
echo; echo "demo root left at $root (remove with: rm -rf $work)"
