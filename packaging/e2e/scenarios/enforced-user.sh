# shellcheck shell=bash
# Probe of scenario 13 (enforced tiers): after cloud-init is done, type
# commands into a real interactive login shell of ec2-user (su - on a
# pseudo-terminal, as claude-user.sh does), one line at a time. Between two
# lines root acts as an admin would: it approves an Elevated session
# (`ccboot elevate --for 15m -- COMMAND`) that runs beside the typed shell,
# and later revokes it. The stand-in's request log is readable at
# $E2E_STANDIN_LOG; its line count before and after each command lets the
# test tell which requests each command made.
set -u
# (the test prepends lib-probe.sh)
log=${E2E_STANDIN_LOG:?}
port=${E2E_STANDIN_PORT:?}
agent_port=${E2E_STANDIN_AGENT_PORT:?} # its Bedrock runs the agent script through Bash
imds=${E2E_IMDS:?}                     # the loopback metadata mock the guest uses
el_arn=${E2E_ELEVATED_ARN:?}
u=/tmp/e2e-session # where the typed commands write their output

cp /home/ec2-user/.aws/config "$o/aws-config" 2>/dev/null
capture status cc status
capture status-json cc status --format json
capture aws-version aws --version
nft list ruleset >"$o/nft.txt" 2>&1
install -d -o ec2-user -g ec2-user -m 0700 "$u"

token_put="curl -sS -m 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' $imds/latest/api/token"
# Root reaches IMDS through the same filter.
capture root-imds sh -c "$token_put"
# Docker: the root daemon's socket, if it runs.
capture docker-active systemctl is-active docker.service
# doctor as root (the user has no sudo), with the test-only endpoints.
ep=$(sed -n 's/^export //p' /etc/profile.d/zz-e2e-endpoints.sh | tr '\n' ' ')
# shellcheck disable=SC2086 # the NAME=value words are intended
capture doctor env $ep ccboot doctor

p='Reply with one short sentence.'
plan_prompt=${E2E_PLAN_PROMPT:?}     # the ReadOnly turn's prompt
resume_prompt=${E2E_RESUME_PROMPT:?} # the Elevated turn's
at() { echo "AWS_ENDPOINT_URL_STS=http://127.0.0.1:$1 AWS_ENDPOINT_URL_BEDROCK=http://127.0.0.1:$1 AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://127.0.0.1:$1"; }
cmds=(
	"whoami|whoami >$u/whoami.out 2>$u/whoami.err"
	"id|id >$u/id.out 2>$u/id.err"
	"imds-user|$token_put >$u/imds-user.out 2>$u/imds-user.err"
	"sudo|sudo -n true >$u/sudo.out 2>$u/sudo.err"
	"docker|docker ps >$u/docker.out 2>$u/docker.err"
	"aws-ro|aws sts get-caller-identity --profile claudecode-readonly --output json >$u/aws-ro.out 2>$u/aws-ro.err"
	"aws-el|aws sts get-caller-identity --profile claudecode-elevated --output json >$u/aws-el.out 2>$u/aws-el.err"
	"aws-assume|aws sts assume-role --profile claudecode-readonly --role-arn $el_arn --role-session-name e2e --output json >$u/aws-assume.out 2>$u/aws-assume.err"
	"claude-ro|claude-ro -p '$p' >$u/claude-ro.out 2>$u/claude-ro.err"
	# The seed's workflow: plan with claude-ro in a project directory;
	# then root approves and continues that conversation Elevated
	# (after_plan, README's transcript command).
	"plan|(mkdir -p ~/app && cd ~/app && claude-ro -p '$plan_prompt') >$u/plan.out 2>$u/plan.err"
	"creds-el|ccboot credentials elevated >$u/creds-el.out 2>$u/creds-el.err"
	# While the approved session runs (before_beside started it):
	"beside|ccboot credentials elevated >$u/beside.out 2>$u/beside.err"
	"aws-el-beside|aws sts get-caller-identity --profile claudecode-elevated --output json >$u/aws-el-beside.out 2>$u/aws-el-beside.err"
	# After the revoke (after_aws-el-beside):
	"aws-el-after|aws sts get-caller-identity --profile claudecode-elevated --output json >$u/aws-el-after.out 2>$u/aws-el-after.err"
	"agent-enforced|rm -rf ~/.aws/cli/cache && $(at "$agent_port") ANTHROPIC_BEDROCK_BASE_URL=http://127.0.0.1:$agent_port claude-ro -p 'Find out which AWS identity you have.' --permission-mode bypassPermissions >$u/agent-enforced.out 2>$u/agent-enforced.err"
)
printf '%s\n' "${cmds[@]}" >"$o/commands.txt"

count() { if [ -f "$log" ]; then wc -l <"$log"; else echo 0; fi; }

# settle: as claude-user.sh's, for this scenario's two stand-ins, except
# for the broker's connections: it keeps them open to STS between
# requests, so they are no command's. ports FILTER prints each matching
# connection's local and peer port (the two addr:port fields, whatever
# columns ss shows).
ports() { ss -Htnp "$@" | awk '{n = 0; for (i = 1; i <= NF; i++) if ($i ~ /:[0-9]+$/) { k = split($i, a, ":"); p[++n] = a[k] } print p[1], p[2], ($0 ~ /"ccboot"/) }'; }
settle() {
	local i broker open
	for ((i = 0; i < 300; i++)); do
		broker=" $(ports state established "( dport = :$port or dport = :$agent_port )" | awk '$3 == 1 {print $1}' | tr '\n' ' ') "
		open=$(ports state established state close-wait "( sport = :$port or sport = :$agent_port )" | while read -r _ peer _; do
			[[ $broker == *" $peer "* ]] || echo "$peer"
		done)
		[ -z "$open" ] && return 0
		sleep 0.1
	done
	return 1
}

# waitfor FILE SECONDS: until FILE exists.
waitfor() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		[ -e "$1" ] && return 0
		sleep 0.1
	done
	return 1
}

# The approved session: claude-el's command (the alias is ~/.bashrc's, not
# a login shell's: its expansion is typed out) and the AWS CLI with
# Elevated's profile, then it waits until root has revoked the approval and
# asks the broker once more from inside the same session. Its environment
# and groups are what elevate gave it (root's environment is the probe's).
el_script="id -G >$u/el-groups.out; env >$u/el-env.out
cd && AWS_PROFILE=claudecode-elevated claude -p '$p' >$u/el-session.out 2>$u/el-session.err; echo \$? >$u/el-session.rc
aws sts get-caller-identity --profile claudecode-elevated --output json >$u/el-aws.out 2>$u/el-aws.err; echo \$? >$u/el-aws.rc
touch $u/el-ready
for i in \$(seq 3000); do [ -e $u/revoked ] && break; sleep 0.1; done
ccboot credentials elevated >$u/el-revoked.out 2>$u/el-revoked.err; echo \$? >$u/el-revoked.rc
cat /proc/self/cgroup >$u/el-cgroup.out"
el_pid=""
before_beside() {
	count >"$o/el-session.log-from"
	(cd /home/ec2-user && AWS_SECRET_ACCESS_KEY=root-only-e2e ccboot elevate --for 15m -- /bin/bash -c "$el_script" \
		>"$o/elevate.out" 2>"$o/elevate.err" </dev/null
	echo $? >"$o/elevate.rc") &
	el_pid=$!
	waitfor "$u/el-ready" 300 || echo "elevate: the approved session did not get ready in 300 s" >>"$o/session-errors.txt"
	settle
	count >"$o/el-session.log-to"
	ls -la /var/lib/ccboot/approvals >"$o/approvals-during.txt" 2>&1
	cat /proc/self/cgroup >"$o/probe-cgroup.out"
}
# README's transcript, as an admin types it in the SSM session (sudo, in a
# directory the user cannot enter): approve and continue the plan's
# conversation Elevated, in the plan's directory. The stand-in's log
# between resume.log-from and .log-to is this session's.
after_plan() {
	count >"$o/resume.log-from"
	local t0 rc=0
	t0=$(date +%s%N)
	local cmd=(sudo ccboot elevate --for 15m --reason "apply the saved plan" --dir ~ec2-user/app -- claude --continue -p "$resume_prompt")
	printf '%q ' "${cmd[@]}" >"$o/resume.cmd"
	(cd /root && "${cmd[@]}") >"$o/resume.out" 2>"$o/resume.err" </dev/null || rc=$?
	echo "$rc" >"$o/resume.rc"
	echo $((($(date +%s%N) - t0) / 1000000)) >"$o/resume.ms"
	settle
	count >"$o/resume.log-to"
	ls -la /home/ec2-user/.claude/projects/ >"$o/claude-projects.txt" 2>&1
	ls -la /home/ec2-user/.claude/projects/*/ >>"$o/claude-projects.txt" 2>&1
}
after_aws-el-beside() {
	capture revoke ccboot elevate --revoke
	touch "$u/revoked"
	[ -z "$el_pid" ] || wait "$el_pid"
}
# The agent's stand-in issues its own keys: the broker (root's STS
# endpoint, the unit's drop-in) asks it from now on. Stopping the service
# leaves its socket listening; the next request starts it with the new
# endpoint.
before_agent-enforced() {
	sed -i "s|AWS_ENDPOINT_URL_STS=.*|AWS_ENDPOINT_URL_STS=http://127.0.0.1:$agent_port|" /etc/systemd/system/ccboot-broker.service.d/e2e.conf
	systemctl daemon-reload
	systemctl stop ccboot-broker.service
}
t0=$(date +%s%N)
type_lines | TERM=xterm-256color timeout 1200 script -qec 'su - ec2-user' /dev/null >"$o/transcript.txt" 2>&1
echo $? >"$o/session.rc"
echo $((($(date +%s%N) - t0) / 1000000)) >"$o/session.ms"
for e in "${cmds[@]}" el-session el-aws el-revoked el-cgroup el-groups el-env; do
	name=${e%%|*}
	for x in out err rc; do
		cp "$u/$name.$x" "$o/$name.$x" 2>/dev/null
	done
done
# The credentials the broker issued stay in the guest.
for name in beside creds-el el-revoked; do
	[ ! -s "$o/$name.out" ] || echo "(redacted: $(wc -c <"$o/$name.out") bytes)" >"$o/$name.out"
done
journalctl -u ccboot-broker.service --no-pager -o cat >"$o/broker-journal.txt" 2>&1
capture status-after cc status
exit 0
