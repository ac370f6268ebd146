#!/bin/bash
# The baseline: the seed's shell UserData, step for step, adapted to Debian
# the way /work/shared/TESTBED.md measured it (apt instead of dnf, Debian's
# package names, npm offline from a local cache). It is deliberately as naive
# as the original: no checks, so a second run re-downloads, re-installs and
# appends duplicate fstab and alias lines. Do not "fix" it: it is what ccboot
# is measured against.
#
# Environment (the bench sets these; defaults are the seed's):
#   SEED_IMDS        IMDS base URL (default http://169.254.169.254)
#   SEED_NPM_CACHE   npm cache directory; when set npm installs --offline from it
#   SEED_MODEL       ANTHROPIC_MODEL (default us.anthropic.claude-sonnet-4-6)
#   SEED_CLAUDE_VERSION  (default 2.1.332, the version ccboot pins)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

imds=${SEED_IMDS:-http://169.254.169.254}
model=${SEED_MODEL:-us.anthropic.claude-sonnet-4-6}
version=${SEED_CLAUDE_VERSION:-2.1.332}

# Instance facts over IMDSv2, as the seed did: one curl per value.
token=$(curl -sSf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 21600' "$imds/latest/api/token")
md() { curl -sSf -H "X-aws-ec2-metadata-token: $token" "$imds/latest/$1"; }
region=$(md meta-data/placement/region)
account=$(md dynamic/instance-identity/document | jq -r .accountId 2>/dev/null || true)
profile_arn=$(md meta-data/iam/info | sed -n 's/.*"InstanceProfileArn" *: *"\([^"]*\)".*/\1/p')
partition=$(printf '%s' "$profile_arn" | cut -d: -f2)
stack=${profile_arn##*/claudecode-ec2-}
[ -n "$account" ] || account=$(printf '%s' "$profile_arn" | cut -d: -f5)

# 1. packages (seed: dnf install -y unzip git jq nodejs npm docker)
apt-get install -y unzip git jq nodejs npm docker.io

# 2. Claude Code
npm_args=()
if [ -n "${SEED_NPM_CACHE:-}" ]; then npm_args=(--offline --cache "$SEED_NPM_CACHE"); fi
npm install -g "${npm_args[@]}" "@anthropic-ai/claude-code@$version"

# 3. docker
usermod -aG docker ec2-user
systemctl enable docker
systemctl start docker

# 4. swap
dd if=/dev/zero of=/swapfile bs=1M count=512
chmod 600 /swapfile
mkswap /swapfile
swapon /swapfile || echo "seed: swapon failed (no swap in a container)" >&2
echo '/swapfile none swap sw 0 0' >>/etc/fstab

# 5. environment for Claude Code on Bedrock
cat >/etc/profile.d/claude-bedrock.sh <<PROFILE
export CLAUDE_CODE_USE_BEDROCK=1
export AWS_REGION=$region
export ANTHROPIC_MODEL=$model
export DISABLE_AUTOUPDATER=1
PROFILE

# 6. ~/.aws/config with the two role profiles
mkdir -p /home/ec2-user/.aws
cat >/home/ec2-user/.aws/config <<AWS
[default]
region = $region

[profile claudecode-readonly]
role_arn = arn:$partition:iam::$account:role/claudecode-readonly-$stack
credential_source = Ec2InstanceMetadata
role_session_name = claudecode-readonly-session
region = $region

[profile claudecode-elevated]
role_arn = arn:$partition:iam::$account:role/claudecode-elevated-$stack
source_profile = claudecode-readonly
role_session_name = claudecode-elevated-session
region = $region
AWS
chown -R ec2-user:ec2-user /home/ec2-user/.aws

# 7. aliases
cat >>/home/ec2-user/.bashrc <<'ALIASES'
alias claude-ro='AWS_PROFILE=claudecode-readonly claude'
alias claude-el='AWS_PROFILE=claudecode-elevated claude'
ALIASES
