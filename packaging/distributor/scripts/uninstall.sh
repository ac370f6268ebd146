#!/bin/sh
# uninstall.sh of ccboot's SSM Distributor package: removes ccboot's own
# units and binaries, nothing it converged.
#
# Removed: ccboot.service, the credential broker's socket and service (as
# `ccboot install` and the credential-broker step wrote them under
# /etc/systemd/system), /usr/local/bin/ccboot and the kept previous binary.
#
# Left alone: /etc/ccboot (config) and /var/lib/ccboot (state, approvals);
# packages, swap, profile.d, ~/.aws/config, aliases, Claude Code, the
# user's groups and privileges; and ccboot-imds-filter.service with
# /etc/ccboot/imds-filter.nft. In [tiers] mode = enforced that filter is
# what keeps IMDS (the instance role) to root: it needs only nft, not
# ccboot, so it goes on loading at boot. Removing it would hand the role to
# the agent; leaving it and removing the broker fails closed: the tier
# profiles' credential_process (/usr/local/bin/ccboot) is gone, so they get
# no credentials. To undo enforced mode, set [tiers] mode = advisory and run
# `sudo ccboot repair` before uninstalling.
#
# SSM Agent runs it as root with `sh uninstall.sh`: POSIX sh (dash on Debian).
set -eu

units=/etc/systemd/system
keep_dir=/usr/local/lib/ccboot

fail() {
	echo "ccboot package: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || fail "uninstall.sh must run as root (SSM Agent runs package scripts as root; by hand: sudo sh uninstall.sh)"

present=
for u in ccboot.service ccboot-broker.socket ccboot-broker.service; do
	if [ -e "$units/$u" ] || [ -L "$units/$u" ]; then
		present="$present $u"
	fi
done
if [ -n "$present" ]; then
	# stop waits for a run in progress to be stopped; ccboot's writes are
	# atomic, so a stopped run leaves every file whole.
	# shellcheck disable=SC2086 # one word per unit
	systemctl stop $present || fail "systemctl stop$present failed; see journalctl -u ccboot, then retry"
	# shellcheck disable=SC2086
	systemctl disable $present >/dev/null 2>&1 || true
fi
# The links `systemctl enable` made, in case disable could not (a unit
# file already gone): each is removed as a link, never what it points to.
rm -f -- "$units/multi-user.target.wants/ccboot.service" "$units/sockets.target.wants/ccboot-broker.socket"
rm -f -- "$units/ccboot.service" "$units/ccboot-broker.socket" "$units/ccboot-broker.service"
systemctl daemon-reload || fail "systemctl daemon-reload failed after removing ccboot's units; run it by hand"
rm -f -- /usr/local/bin/ccboot "$keep_dir/ccboot.previous"
if [ -d "$keep_dir" ] && [ ! -L "$keep_dir" ]; then
	rmdir -- "$keep_dir" 2>/dev/null || true
fi
echo "ccboot package: removed ccboot's units and binary; left its config (/etc/ccboot), state (/var/lib/ccboot) and everything it set up (packages, swap, profile.d, ~/.aws/config, aliases, Claude Code, the IMDS filter)"
