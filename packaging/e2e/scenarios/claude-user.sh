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
# retries (and a short API timeout) keep that failure fast.
p='Reply with one short sentence.'
cmds=(
	"whoami|whoami >$u/whoami.out 2>$u/whoami.err"
	"env|env >$u/env.out 2>$u/env.err"
	"alias|alias >$u/alias.out 2>$u/alias.err"
	"claude-ro|claude-ro -p '$p' >$u/claude-ro.out 2>$u/claude-ro.err"
	"claude-el|claude-el -p '$p' >$u/claude-el.out 2>$u/claude-el.err"
	"claude-plain|CLAUDE_CODE_MAX_RETRIES=0 API_TIMEOUT_MS=20000 claude -p '$p' >$u/claude-plain.out 2>$u/claude-plain.err"
	"aws-ro|aws sts get-caller-identity --profile claudecode-readonly --output json >$u/aws-ro.out 2>$u/aws-ro.err"
	"aws-el|aws sts get-caller-identity --profile claudecode-elevated --output json >$u/aws-el.out 2>$u/aws-el.err"
)
if [ -n "${E2E_DOCTOR:-}" ]; then
	cmds+=("doctor|sudo ccboot doctor ${E2E_DOCTOR_FLAGS:-} >$u/doctor.out 2>$u/doctor.err")
fi
printf '%s\n' "${cmds[@]}" >"$o/commands.txt"

# The stand-in writes a request's log line before it answers, so once a
# command has exited all of its requests are counted.
count() { if [ -f "$log" ]; then wc -l <"$log"; else echo 0; fi; }

# type: write each line to the terminal, wait for its exit code (at most
# 180 s), then type the next; finally `exit`.
type_lines() {
	local e name line i
	for e in "${cmds[@]}"; do
		name=${e%%|*} line=${e#*|}
		count >"$o/$name.log-from"
		printf '%s; echo $? >%s/%s.rc\n' "$line" "$u" "$name"
		for ((i = 0; i < 1800; i++)); do
			[ -s "$u/$name.rc" ] && break
			sleep 0.1
		done
		count >"$o/$name.log-to"
		if [ ! -s "$u/$name.rc" ]; then
			echo "$name: no exit code after 180 s" >>"$o/session-errors.txt"
			break
		fi
	done
	echo exit
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
exit 0
