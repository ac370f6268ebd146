#!/bin/bash
# mkroot.sh DIR: a throwaway root like cmd/ccboot's newRoot (a Debian
# instance whose image already carries the packages and Claude Code, nothing
# ccboot configures), for whole-process measurements in --root mode.
set -euo pipefail
r=$1
v=${CLAUDE_VERSION:-2.1.332}
mkdir -p "$r"/etc "$r"/var/lib/dpkg "$r"/usr/lib/systemd/system "$r"/usr/local/bin \
	"$r"/usr/local/lib/claude-code/versions/"$v" "$r"/home/ec2-user
printf 'ID=debian\nVERSION_ID="12"\n' >"$r/etc/os-release"
printf 'root:x:0:0:root:/root:/bin/bash\nec2-user:x:1000:1000::/home/ec2-user:/bin/bash\n' >"$r/etc/passwd"
printf 'root:x:0:\nec2-user:x:1000:\n' >"$r/etc/group"
printf 'root:*:20000:0:99999:7:::\nec2-user:!:20000:0:99999:7:::\n' >"$r/etc/shadow"
printf 'root:*::\nec2-user:!::\n' >"$r/etc/gshadow"
chmod 0640 "$r/etc/shadow" "$r/etc/gshadow"
printf 'UUID=1234 / ext4 defaults 0 1\n' >"$r/etc/fstab"
for p in unzip git jq nodejs npm docker.io; do
	printf 'Package: %s\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\n' "$p"
done >"$r/var/lib/dpkg/status"
printf '[Unit]\nDescription=Docker\n[Service]\nExecStart=/usr/bin/dockerd\n[Install]\nWantedBy=multi-user.target\n' >"$r/usr/lib/systemd/system/docker.service"
# Claude Code as ccboot installs it: the executable, its install record
# (what Check compares with one stat) and the PREFIX/bin/claude link.
exe=$r/usr/local/lib/claude-code/versions/$v/claude
printf '#!/bin/sh\necho "%s (Claude Code)"\n' "$v" >"$exe"
chmod 0755 "$exe"
mtime=$(stat -c %.9Y "$exe")
printf '{"version":"%s","source":"release","platform":"linux-x64","url":"preinstalled","sha256":"%s","size":%s,"mtime_ns":%s}\n' \
	"$v" "$(sha256sum "$exe" | cut -d' ' -f1)" "$(stat -c %s "$exe")" "${mtime/./}" >"${exe%/claude}/install.json"
ln -sfn "../lib/claude-code/versions/$v/claude" "$r/usr/local/bin/claude"
printf '# ~/.bashrc\n' >"$r/home/ec2-user/.bashrc"
chown 1000:1000 "$r/home/ec2-user" "$r/home/ec2-user/.bashrc"
