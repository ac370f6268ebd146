#!/usr/bin/env bash
# A loopback-only network namespace with the AWS EC2 metadata mock (AEMM)
# in it, for tests that boot more than one guest against one mock.
#
#   netns.sh up NAME CONFIG.json [PORT]   create netns NAME (only lo), start
#                                         AEMM on 127.0.0.1:PORT (default 1338,
#                                         IMDSv2 only), wait until it answers
#   netns.sh down NAME                    stop the mock, delete the netns
#   netns.sh get NAME PATH [PORT]         IMDSv2 GET of PATH inside the netns
#   netns.sh exec NAME CMD...             run CMD inside the netns
#   netns.sh config REGION ACCOUNT INSTANCE_ID PROFILE [PARTITION]
#                                         print a consistent AEMM config
#
# State (mock pid, HOME, config, log) is in $CCBOOT_E2E_RUN/NAME (default
# /run/ccboot-e2e/NAME). Boot scripts join the netns with --netns NAME.
# Scripts that need one mock for their own lifetime can instead source lib.sh
# and use e2e_netns_create / e2e_mock_start (the mock then dies with them).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

run_root=${CCBOOT_E2E_RUN:-/run/ccboot-e2e}
usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
	exit 2
}

cmd=${1:-}
[[ -n $cmd ]] || usage
shift
case $cmd in
up)
	(($# >= 2)) || usage
	ns=$1 config=$2 port=${3:-1338}
	state=$run_root/$ns
	[[ ! -e /run/netns/$ns ]] || e2e_die "netns $ns exists; run: netns.sh down $ns"
	mkdir -p "$state"
	e2e_netns_create "$ns"
	echo "$port" >"$state/port"
	E2E_MOCK_DETACH=1 e2e_mock_start "$ns" "$config" "$state" "$port"
	e2e_log "netns $ns up; mock pid $E2E_MOCK_PID on 127.0.0.1:$port; log $state/aemm.log"
	;;
down)
	(($# == 1)) || usage
	ns=$1 state=$run_root/$1
	if [[ -f $state/aemm.pid ]]; then
		pid=$(cat "$state/aemm.pid")
		if kill -0 "$pid" 2>/dev/null; then kill "$pid"; fi
	fi
	e2e_netns_delete "$ns"
	rm -rf "$state"
	;;
get)
	(($# >= 2)) || usage
	e2e_mock_get "$1" "$2" "${3:-$(cat "$run_root/$1/port" 2>/dev/null || echo 1338)}"
	echo
	;;
exec)
	(($# >= 2)) || usage
	ns=$1
	shift
	exec ip netns exec "$ns" "$@"
	;;
config)
	(($# >= 4)) || usage
	e2e_mock_config "$@"
	;;
*) usage ;;
esac
