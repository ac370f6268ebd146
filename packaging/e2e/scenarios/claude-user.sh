# shellcheck shell=bash
# Probe of scenario 12 (Claude Code on Bedrock as ec2-user): after
# cloud-init is done, type commands into a real interactive login shell of
# ec2-user (su - on a pseudo-terminal, as a person at a terminal would get
# it), one line at a time, each after the previous one finished. The
# settings come from what that shell reads: /etc/profile.d (ccboot's
# claude-bedrock.sh, then the test-only zz-e2e-endpoints.sh) and the
# aliases in ~/.bashrc. The stand-in's request log is readable at
# $E2E_STANDIN_LOG; its line count before and after each command lets the
# test tell which requests each command made.
set -u
# (the test prepends lib-probe.sh)
log=${E2E_STANDIN_LOG:?}
port=${E2E_STANDIN_PORT:?}
trust_port=${E2E_STANDIN_TRUST_PORT:?}     # ReadOnly's trust policy broken
noinvoke_port=${E2E_STANDIN_NOINVOKE_PORT:?} # no bedrock:InvokeModel
notsubscribed_port=${E2E_STANDIN_NOTSUBSCRIBED_PORT:?} # no Marketplace agreement yet
agent_port=${E2E_STANDIN_AGENT_PORT:?} # its Bedrock runs the agent script through Bash
u=/tmp/e2e-session # where the typed commands write their output

cp /etc/profile.d/claude-bedrock.sh "$o/profile.sh" 2>/dev/null
cp /etc/profile.d/zz-e2e-endpoints.sh "$o/endpoints.sh" 2>/dev/null
cp /home/ec2-user/.aws/config "$o/aws-config" 2>/dev/null
cp /home/ec2-user/.bashrc "$o/bashrc" 2>/dev/null
capture status-json cc status --format json
capture aws-version aws --version
install -d -o ec2-user -g ec2-user -m 0700 "$u"

# NAME|LINE: the line as typed; the shell then writes its exit code.
# claude-ro / claude-el are ccboot's aliases. Plain claude runs with the
# instance role's credentials, which the template denies Bedrock; no
# retries (and a short API timeout) keep that failure fast. ccboot doctor
# runs as root, as README says; sudo drops the environment, so the
# test-only endpoints are passed through by name (nothing else). Then
# doctor again with one link broken at a time, only on its own command
# line: the endpoints of a stand-in whose template breaks the ReadOnly
# trust policy or lacks bedrock:InvokeModel, and a model whose us. prefix
# eu-west-1 cannot use. Last, the agent tries to escalate: claude-ro with
# Bash allowed unasked (bypassPermissions; ec2-user is not root), every
# endpoint the agent stand-in's, whose Bedrock asks Bash to run the
# test's escalation script; the Bash tool's shell inherits the endpoints
# (Debian's bashrc does not re-read /etc/profile.d). The AWS CLI's cache of
# assumed-role credentials goes first: aws-el left Elevated's keys from the
# main stand-in there, which the agent's stand-in never issued.
p='Reply with one short sentence.'
keep=AWS_EC2_METADATA_SERVICE_ENDPOINT,AWS_ENDPOINT_URL_STS,AWS_ENDPOINT_URL_BEDROCK,AWS_ENDPOINT_URL_BEDROCK_RUNTIME
at() { echo "AWS_ENDPOINT_URL_STS=http://127.0.0.1:$1 AWS_ENDPOINT_URL_BEDROCK=http://127.0.0.1:$1 AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://127.0.0.1:$1"; }
cmds=(
	"whoami|whoami >$u/whoami.out 2>$u/whoami.err"
	"env|env >$u/env.out 2>$u/env.err"
	"alias|alias >$u/alias.out 2>$u/alias.err"
	"claude-ro|claude-ro -p '$p' >$u/claude-ro.out 2>$u/claude-ro.err"
	"claude-el|claude-el -p '$p' >$u/claude-el.out 2>$u/claude-el.err"
	"claude-plain|CLAUDE_CODE_MAX_RETRIES=0 API_TIMEOUT_MS=20000 claude -p '$p' >$u/claude-plain.out 2>$u/claude-plain.err"
	"aws-ro|aws sts get-caller-identity --profile claudecode-readonly --output json >$u/aws-ro.out 2>$u/aws-ro.err"
	"aws-el|aws sts get-caller-identity --profile claudecode-elevated --output json >$u/aws-el.out 2>$u/aws-el.err"
	"doctor|sudo --preserve-env=$keep ccboot doctor >$u/doctor.out 2>$u/doctor.err"
	"doctor-trust|$(at "$trust_port") sudo --preserve-env=$keep ccboot doctor >$u/doctor-trust.out 2>$u/doctor-trust.err"
	"doctor-noinvoke|$(at "$noinvoke_port") sudo --preserve-env=$keep ccboot doctor >$u/doctor-noinvoke.out 2>$u/doctor-noinvoke.err"
	"doctor-geo|sudo --preserve-env=$keep ccboot doctor --set bedrock.model=us.anthropic.claude-sonnet-4-6 >$u/doctor-geo.out 2>$u/doctor-geo.err"
	"doctor-notsubscribed|$(at "$notsubscribed_port") sudo --preserve-env=$keep ccboot doctor >$u/doctor-notsubscribed.out 2>$u/doctor-notsubscribed.err"
	"doctor-subscribed|$(at "$notsubscribed_port") sudo --preserve-env=$keep ccboot doctor >$u/doctor-subscribed.out 2>$u/doctor-subscribed.err"
	"agent-advisory|rm -rf ~/.aws/cli/cache && $(at "$agent_port") ANTHROPIC_BEDROCK_BASE_URL=http://127.0.0.1:$agent_port claude-ro -p 'Find out which AWS identity you have.' --permission-mode bypassPermissions >$u/agent-advisory.out 2>$u/agent-advisory.err"
)
printf '%s\n' "${cmds[@]}" >"$o/commands.txt"

count() { if [ -f "$log" ]; then wc -l <"$log"; else echo 0; fi; }

# settle: wait (at most 30 s) until the stand-ins have no connection left
# open on its side. It logs a request before it finishes answering it, and
# a request whose client went away is logged before its connection closes;
# so once none is open, every request of the command before has been
# counted, and none leaks into the next command's lines. ss sees the
# stand-in's sockets: the guest shares its network namespace.
settle() {
	local i
	for ((i = 0; i < 300; i++)); do
		if [ -z "$(ss -Htn state established state close-wait "( sport = :$port or sport = :$trust_port or sport = :$noinvoke_port or sport = :$notsubscribed_port or sport = :$agent_port )")" ]; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

t0=$(date +%s%N)
type_lines | TERM=xterm-256color timeout 900 script -qec 'su - ec2-user' /dev/null >"$o/transcript.txt" 2>&1
echo $? >"$o/session.rc"
echo $((($(date +%s%N) - t0) / 1000000)) >"$o/session.ms"
for e in "${cmds[@]}"; do
	name=${e%%|*}
	for x in out err rc; do
		cp "$u/$name.$x" "$o/$name.$x" 2>/dev/null
	done
done

# Shells that read no profile: su without - (non-login, non-interactive)
# and env -i with only HOME, PATH and AWS_PROFILE. Whatever Bedrock setting
# reaches Claude Code there comes from /etc/claude-code, not from a shell.
# The test-only endpoints (zz-e2e-endpoints.sh, login shells only) are
# passed on the command line; nothing else is.
cp /etc/claude-code/managed-settings.json "$o/managed-settings.json" 2>/dev/null
ls -la /etc/claude-code /etc/claude-code/managed-settings.d >"$o/claude-code-dir.txt" 2>&1
ep=$(sed -n 's/^export //p' /etc/profile.d/zz-e2e-endpoints.sh | tr '\n' ' ')
# window NAME CMD...: capture CMD with the stand-in's log lines it caused.
window() {
	local name=$1
	shift
	count >"$o/$name.log-from"
	capture "$name" "$@"
	settle || echo "$name: connections to the stand-in still open 30 s after it exited" >>"$o/session-errors.txt"
	count >"$o/$name.log-to"
}
as_user() { su ec2-user -c "cd && $1"; }
window nonlogin-env as_user "env"
window nonlogin as_user "$ep AWS_PROFILE=claudecode-readonly claude -p '$p'"
window env-i as_user "env -i HOME=/home/ec2-user PATH=/usr/local/bin:/usr/bin:/bin AWS_PROFILE=claudecode-readonly $ep claude -p '$p'"
# claude update is refused (DISABLE_UPDATES), and leaves no second claude.
window claude-update as_user "$ep claude update"
capture type-claude su - ec2-user -c 'type -a claude'
ls -la /home/ec2-user/.local/bin >"$o/local-bin.txt" 2>&1
# For comparison, the environment before ccboot pinned the aliases (what
# profile-env exported then), with the managed settings moved aside for
# this one command.
model=$(sed -n "s/^export ANTHROPIC_MODEL='\(.*\)'$/\1/p" /etc/profile.d/claude-bedrock.sh)
mv /etc/claude-code/managed-settings.json /etc/claude-code/.e2e-aside.json
window unpinned as_user "env -i HOME=/home/ec2-user PATH=/usr/local/bin:/usr/bin:/bin AWS_PROFILE=claudecode-readonly CLAUDE_CODE_USE_BEDROCK=1 AWS_REGION=$(sed -n "s/^export AWS_REGION='\(.*\)'$/\1/p" /etc/profile.d/claude-bedrock.sh) ANTHROPIC_MODEL=$model DISABLE_AUTOUPDATER=1 $ep claude -p '$p'"
# And with neither: the same env -i line as above finds no Bedrock setting.
window nosettings as_user "env -i HOME=/home/ec2-user PATH=/usr/local/bin:/usr/bin:/bin AWS_PROFILE=claudecode-readonly $ep timeout 60 claude -p '$p'"
mv /etc/claude-code/.e2e-aside.json /etc/claude-code/managed-settings.json
exit 0
