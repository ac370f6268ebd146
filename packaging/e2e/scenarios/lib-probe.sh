# shellcheck shell=bash
# Sourced by the scenario probes. They collect facts from inside the guest
# into $E2E_OUT; the Go test (packaging/e2e/e2e_test.go) makes the
# assertions, so a probe keeps going after a surprise and reports it.
o=${E2E_OUT:?}

# cc: ccboot with the flags this scenario's unit runs with (the e2e drop-in's
# ExecStart), from $E2E_CCBOOT_FLAGS, so hand-run commands see the same config.
cc() {
	local sub=$1
	shift
	# shellcheck disable=SC2086 # word splitting of the flags is intended
	ccboot "$sub" ${E2E_CCBOOT_FLAGS:-} "$@"
}

# capture NAME CMD...: stdout to NAME.out, stderr to NAME.err, exit code to
# NAME.rc, wall time in milliseconds to NAME.ms.
capture() {
	local name=$1 t0 rc=0
	shift
	t0=$(date +%s%N)
	"$@" >"$o/$name.out" 2>"$o/$name.err" || rc=$?
	echo "$rc" >"$o/$name.rc"
	echo $((($(date +%s%N) - t0) / 1000000)) >"$o/$name.ms"
	return 0
}

# snapshot NAME FILES...: inode, mtime (ns), mode, owner and sha256 of each
# file that exists, one line each.
snapshot() {
	local name=$1 f
	shift
	: >"$o/$name"
	for f in "$@"; do
		if [ -e "$f" ]; then
			printf '%s %s %s\n' "$f" "$(stat -c '%i %.9Y %a %U:%G' "$f")" "$(sha256sum <"$f" | cut -c1-16)" >>"$o/$name"
		else
			printf '%s missing\n' "$f" >>"$o/$name"
		fi
	done
}

# temp_files NAME: leftover temp files of atomic writes anywhere ccboot writes.
temp_files() {
	find / -xdev \( -path /proc -o -path /sys -o -path /out -o -path /srv \) -prune -o \
		-name '*.ccboot-tmp-*' -print >"$o/$1" 2>/dev/null || true
}

# inventory_probe NAME: the SSM agent's custom inventory folder as ccboot
# left it: its entries, the modes on the way, and ccboot.json's content.
inventory_probe() {
	local d
	ls -a /var/lib/amazon/ssm/*/inventory/custom >"$o/inventory-ls-$1.txt" 2>&1
	for d in /var/lib/amazon /var/lib/amazon/ssm /var/lib/amazon/ssm/* /var/lib/amazon/ssm/*/inventory \
		/var/lib/amazon/ssm/*/inventory/custom /var/lib/amazon/ssm/*/inventory/custom/ccboot.json; do
		stat -c '%n %a %U:%G' "$d" 2>&1
	done >"$o/inventory-modes-$1.txt"
	cat /var/lib/amazon/ssm/*/inventory/custom/ccboot.json >"$o/inventory-$1.json" 2>&1
}

# Every file ccboot manages (and the things around them whose identity
# must not change on a no-op run).
managed_files=(
	/etc/profile.d/claude-bedrock.sh
	/home/ec2-user/.aws/config
	/home/ec2-user/.bashrc
	/etc/fstab
	/etc/group
	/etc/gshadow
	/usr/local/bin/ccboot
	/etc/systemd/system/ccboot.service
	/usr/local/lib/claude-code/versions/2.1.332/install.json
	/usr/local/lib/claude-code/versions/2.1.332/claude
	/usr/local/bin/claude
)

# For the typed-session scenarios (claude-user.sh, enforced-user.sh), which
# define cmds (NAME|LINE), o, u, count and settle. hook runs the script's
# function before_NAME / after_NAME as root around a line, if it has one.
hook() { if declare -F "$1_$2" >/dev/null; then "$1_$2" </dev/null >>"$o/hooks.log" 2>&1; fi; }

# type_lines: write each line to the terminal, wait for its exit code (at
# most 180 s) and for the stand-in to settle, then type the next; finally
# `exit`.
type_lines() {
	local e name line i t
	for e in "${cmds[@]}"; do
		name=${e%%|*} line=${e#*|}
		hook before "$name"
		count >"$o/$name.log-from"
		t=$(date +%s%N)
		printf '%s; echo $? >%s/%s.rc\n' "$line" "$u" "$name"
		for ((i = 0; i < 1800; i++)); do
			[ -s "$u/$name.rc" ] && break
			sleep 0.1
		done
		echo $((($(date +%s%N) - t) / 1000000)) >"$o/$name.ms"
		if [ ! -s "$u/$name.rc" ]; then
			count >"$o/$name.log-to"
			echo "$name: no exit code after 180 s" >>"$o/session-errors.txt"
			break
		fi
		settle || echo "$name: connections to the stand-in still open 30 s after it exited" >>"$o/session-errors.txt"
		count >"$o/$name.log-to"
		hook after "$name"
	done
	echo exit
}
