#!/bin/sh
# install.sh of ccboot's SSM Distributor package (made by make dist).
#
# SSM Agent runs it as root with `sh install.sh`, in the package's
# directory: POSIX sh, since sh is dash on Debian and Ubuntu. It may also be
# run by hand from any directory (sudo sh /path/to/install.sh), so every
# file is found from $0, never from the working directory.
#
# 1. check the package: its directory and files belong to root and nobody
#    else can write them, and the binary's SHA-256 is the one in
#    ccboot.sha256; otherwise refuse with one line and change nothing;
# 2. keep the installed /usr/local/bin/ccboot as
#    /usr/local/lib/ccboot/ccboot.previous (root, 0755, atomic), unless it
#    is this very binary, so a re-run keeps the real previous one;
# 3. run this package's `ccboot install` (binary, unit, a run, waiting for
#    it) and exit with its code, so Distributor and State Manager report a
#    failed run. /etc/ccboot and /var/lib/ccboot are never touched here.
set -eu

installed=/usr/local/bin/ccboot
keep_dir=/usr/local/lib/ccboot
previous=$keep_dir/ccboot.previous

fail() {
	echo "ccboot package: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || fail "install.sh must run as root (SSM Agent runs package scripts as root; by hand: sudo sh install.sh)"

case $0 in
*/*) here=${0%/*} ;;
*) here=. ;;
esac
here=$(cd -P -- "$here" && pwd) || fail "cannot enter the package directory of $0"

# root_only PATH: owned by root, and neither group nor others may write it
# (a sticky directory such as /tmp is fine: others cannot rename in it).
root_only() {
	meta=$(stat -c '%u %a' -- "$1") || return 1
	owner=${meta% *}
	mode=${meta#* }
	[ "$owner" = 0 ] || return 1
	[ $((0$mode & 022)) -eq 0 ] && return 0
	[ -d "$1" ] && [ $((0$mode & 01000)) -ne 0 ]
}

d=$here
while :; do
	root_only "$d" || fail "$d is not root's alone (owner or write bits); a package must be unpacked where only root can change it"
	[ "$d" = / ] && break
	d=$(dirname -- "$d")
done
for f in ccboot ccboot.sha256; do
	if [ -L "$here/$f" ] || [ ! -f "$here/$f" ]; then
		fail "$here/$f is missing or not a regular file; re-create the package from make dist's output"
	fi
	root_only "$here/$f" || fail "$here/$f is not root's alone; re-create the package from make dist's output"
done

want=$(sed -n '1s/^\([0-9a-f]\{64\}\)  ccboot$/\1/p' "$here/ccboot.sha256")
[ -n "$want" ] || fail "$here/ccboot.sha256 is not one 'SHA256  ccboot' line; re-create the package from make dist's output"
got=$(sha256sum <"$here/ccboot")
got=${got%% *}
[ "$got" = "$want" ] || fail "$here/ccboot has SHA-256 $got but ccboot.sha256 says $want: the package is damaged or was altered; nothing was changed (re-create it from make dist's output)"

if [ -e "$installed" ] || [ -L "$installed" ]; then
	if [ -L "$installed" ] || [ ! -f "$installed" ]; then
		fail "$installed is not a regular file; remove it (or put ccboot's binary there), then retry"
	fi
	if ! cmp -s -- "$installed" "$here/ccboot"; then
		mkdir -p -- "$keep_dir"
		if [ -L "$keep_dir" ] || [ ! -d "$keep_dir" ] || ! root_only "$keep_dir"; then
			fail "$keep_dir is not a directory only root can change; remove it, then retry"
		fi
		chmod 0755 -- "$keep_dir"
		# A temp file beside the final name, then rename: a crash leaves the
		# old previous binary or the new one, never half of one.
		tmp=$(mktemp -- "$keep_dir/.ccboot.previous.XXXXXX")
		trap 'rm -f -- "$tmp"' EXIT
		cp -- "$installed" "$tmp"
		chown 0:0 -- "$tmp"
		chmod 0755 -- "$tmp"
		sync -- "$tmp"
		mv -f -- "$tmp" "$previous"
		trap - EXIT
		echo "ccboot package: kept the installed ccboot as $previous ($("$previous" version 2>/dev/null | head -n 1))"
	fi
fi

# SSM Agent's unzip may drop the mode bits.
chmod 0755 -- "$here/ccboot"
echo "ccboot package: installing $("$here/ccboot" version 2>/dev/null | head -n 1)"
rc=0
"$here/ccboot" install || rc=$?
if [ "$rc" -ne 0 ] && [ -f "$previous" ]; then
	echo "ccboot package: ccboot install exited $rc; to roll back to the previous ccboot run: sudo $previous install" >&2
fi
exit "$rc"
