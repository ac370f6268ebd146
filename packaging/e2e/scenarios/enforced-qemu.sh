# shellcheck shell=bash
# Probe of scenario 13q (enforced tiers under QEMU: a kernel with Yama, a
# reboot). On each boot, first, before this probe logs in as ec2-user: when
# the IMDS filter and the broker's socket came up against
# systemd-user-sessions.service and the user's manager, and the live nft
# table. Then, as ec2-user in login shells (su -), and as root: no root for
# the user, IMDS for root only, ReadOnly through the broker, Elevated
# refused, and (boot 1) rootless Docker: a local image runs as the user,
# the root daemon's socket is refused, and host networking does not reach
# IMDS. Boot 1 asks for the reboot.
set -u
# (the test prepends lib-probe.sh)
b=$E2E_BOOT
standin=${E2E_STANDIN:?} # IP:PORT of the stand-in as the guest reaches it
user=ec2-user
uid=$(id -u "$user")
imds=http://169.254.169.254

for unit in ccboot-imds-filter.service ccboot-broker.socket systemd-user-sessions.service "user@$uid.service" ccboot.service; do
	systemctl show "$unit" -p ActiveState -p ActiveEnterTimestampMonotonic -p InactiveExitTimestampMonotonic \
		-p After -p Before -p WantedBy -p FragmentPath >"$o/unit-$unit.txt" 2>&1
done
capture nft-table nft list table inet ccboot_imds
cp /var/lib/ccboot/state.json "$o/state-boot.json" 2>/dev/null
cp /etc/systemd/system/ccboot-imds-filter.service "$o/imds-filter.service" 2>/dev/null
capture status cc status

# as NAME CMD: CMD in a login shell of the user (profile.d, pam_systemd's
# session), stdout/stderr/exit code as capture's.
as() {
	local name=$1
	shift
	capture "$name" su - "$user" -c "$*"
}
token_put="curl -sS -m 10 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' $imds/latest/api/token"
as imds-user "$token_put"
capture root-imds sh -c "$token_put"
as aws-ro aws sts get-caller-identity --profile claudecode-readonly --output json
as aws-el aws sts get-caller-identity --profile claudecode-elevated --output json
as creds-el ccboot credentials elevated
[ ! -s "$o/creds-el.out" ] || echo "(redacted: $(wc -c <"$o/creds-el.out") bytes)" >"$o/creds-el.out"
as id id
as sudo sudo -n true

# rootless Docker: the user's own daemon, up by linger on boot 2. A
# FROM-scratch image of Debian's static busybox (no registry here),
# imported on boot 1 and run again on boot 2 from the user's own store.
# shellcheck disable=SC2016 # expands in the user's shell
waitdocker='for i in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 1; done'
as docker-info "$waitdocker; echo DOCKER_HOST=\$DOCKER_HOST; docker info --format '{{json .SecurityOptions}} {{.DockerRootDir}}'"
if [ "$b" = 1 ]; then
	ctx=/tmp/e2e-busybox
	rm -rf "$ctx" && mkdir -p "$ctx/x" "$ctx/img/bin"
	dpkg-deb -x /srv/repo/busybox-static_*.deb "$ctx/x"
	install -m 0755 "$ctx/x/bin/busybox" "$ctx/img/bin/busybox"
	tar -C "$ctx/img" -cf "$ctx/busybox.tar" .
	chmod -R a+rX "$ctx"
	as docker-import "docker import $ctx/busybox.tar e2e-busybox:1"
fi
as docker-run docker run --rm e2e-busybox:1 /bin/busybox id -u
# Host networking is the rootless daemon's namespace: slirp4netns connects
# for it as the user, so the filter refuses IMDS and nothing else.
# httpget HOST PORT: a plain HTTP/1.0 GET from inside the container; the
# stand-in (any answer) is the control that the network works at all.
# shellcheck disable=SC2028 # busybox's printf expands the escapes
httpget() { echo "docker run --rm --network host e2e-busybox:1 /bin/busybox sh -c 'printf \"GET /latest/api/token HTTP/1.0\\r\\n\\r\\n\" | /bin/busybox nc -w 10 $1 $2'"; }
as docker-imds "$(httpget 169.254.169.254 80)"
as docker-standin "$(httpget "${standin%:*}" "${standin#*:}")"
as root-socket DOCKER_HOST=unix:///var/run/docker.sock docker ps
capture root-docker-active systemctl is-active docker.service
capture root-images docker -H unix:///var/run/docker.sock image ls --format '{{.Repository}}:{{.Tag}}'

if [ "$b" = 1 ]; then
	capture ptrace sysctl -n kernel.yama.ptrace_scope
	cp /etc/sysctl.d/60-ccboot-ptrace.conf "$o/ptrace.conf" 2>/dev/null
	capture sudo-l sudo -n -l -U "$user"
	capture visudo visudo -c
	capture cloud-init-sudoers cat /etc/sudoers.d/90-cloud-init-users
	capture status-json cc status --format json
	# doctor as root (the user has no sudo), with the test-only endpoints.
	# It walks the Elevated chain as root may: two unsigned requests to the
	# stand-in's Bedrock runtime mark its part of the stand-in's log.
	mark() { curl -s -m 10 -o /dev/null -X POST "http://$standin/model/e2e-mark-$1/invoke"; }
	ep=$(sed -n 's/^export //p' /etc/profile.d/zz-e2e-endpoints.sh | tr '\n' ' ')
	mark doctor-begin
	# shellcheck disable=SC2086 # the NAME=value words are intended
	capture doctor env $ep ccboot doctor
	mark doctor-end
	touch "$o/reboot"
fi
journalctl -u ccboot-broker.service -b --no-pager -o cat >"$o/broker-journal.txt" 2>&1
exit 0
