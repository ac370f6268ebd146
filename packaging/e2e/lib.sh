# shellcheck shell=bash
# Shared helpers for the e2e harness. Source it; it defines functions and
# E2E_DIR, and changes no shell options of the caller.
#
# Environment:
#   CCBOOT_E2E_CACHE  cache root (default /var/cache/ccboot-e2e); the cache of
#                     one recipe lives in $CCBOOT_E2E_CACHE/<recipe hash>.
#   CCBOOT_E2E_AEMM   path of ec2-metadata-mock (default: $(go env GOPATH)/bin
#                     or PATH).

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

e2e_log() { printf '%s e2e: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
e2e_die() {
	e2e_log "error: $*"
	exit 1
}

# Monotonic seconds with millisecond precision.
e2e_now() { awk '{print $1}' /proc/uptime; }
# e2e_elapsed START -> seconds since START (one decimal).
e2e_elapsed() { awk -v s="$1" -v n="$(e2e_now)" 'BEGIN{printf "%.1f", n-s}'; }
# e2e_timing NAME START: print a timing line on stderr, and append it to
# $E2E_TIMINGS if that is set.
e2e_timing() {
	local line
	line=$(printf 'timing: %-28s %6ss' "$1" "$(e2e_elapsed "$2")")
	printf '%s\n' "$line" >&2
	if [[ -n ${E2E_TIMINGS:-} ]]; then printf '%s\n' "$line" >>"$E2E_TIMINGS"; fi
}

# The files whose content defines the cache. Changing any of them changes
# the recipe hash, so the next run builds a new cache.
e2e_recipe_files() {
	(cd "$E2E_DIR" && { echo cache.sh; find image -type f; } | LC_ALL=C sort)
}

e2e_recipe_hash() {
	local f
	(
		cd "$E2E_DIR" || exit
		uname -m
		for f in $(e2e_recipe_files); do
			printf '%s\n' "$f"
			sha256sum <"$f"
		done
	) | sha256sum | cut -c1-16
}

e2e_cache_root() { printf '%s\n' "${CCBOOT_E2E_CACHE:-/var/cache/ccboot-e2e}"; }
e2e_cache_dir() { printf '%s/%s\n' "$(e2e_cache_root)" "$(e2e_recipe_hash)"; }

# e2e_cache_ensure: build the cache if needed (cache.sh is a no-op when it is
# complete) and set E2E_CACHE to its directory.
e2e_cache_ensure() {
	E2E_CACHE=$("$E2E_DIR/cache.sh")
	[[ -f $E2E_CACHE/.complete ]] || e2e_die "cache $E2E_CACHE is not complete"
}

e2e_aemm_bin() {
	if [[ -n ${CCBOOT_E2E_AEMM:-} ]]; then
		printf '%s\n' "$CCBOOT_E2E_AEMM"
		return
	fi
	if command -v ec2-metadata-mock >/dev/null; then
		command -v ec2-metadata-mock
		return
	fi
	local gobin
	gobin=$(go env GOBIN 2>/dev/null || true)
	[[ -n $gobin ]] || gobin="$(go env GOPATH 2>/dev/null)/bin"
	[[ -x $gobin/ec2-metadata-mock ]] || e2e_die "ec2-metadata-mock not found; run packaging/e2e/deps.sh"
	printf '%s\n' "$gobin/ec2-metadata-mock"
}

# ---------------------------------------------------------------------------
# Loopback-only network namespace + the AWS metadata mock (AEMM).

# e2e_netns_create NAME: a named namespace (/run/netns/NAME) with only lo, up.
e2e_netns_create() {
	local ns=$1
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	# Nothing but loopback may exist in it.
	if ip -n "$ns" -o link show | grep -v ': lo:' | grep -q .; then
		e2e_die "netns $ns has links other than lo"
	fi
}

e2e_netns_delete() {
	local ns=$1
	if [[ -e /run/netns/$ns ]]; then ip netns delete "$ns" || true; fi
}

# e2e_mock_config REGION ACCOUNT INSTANCE_ID PROFILE_NAME [PARTITION]
# prints an AEMM config JSON whose values agree with each other.
e2e_mock_config() {
	local region=$1 account=$2 instance=$3 profile=$4 partition=${5:-aws}
	jq -n --arg r "$region" --arg a "$account" --arg i "$instance" \
		--arg p "$profile" --arg part "$partition" '{
		metadata: {values: {
			"placement-region": $r,
			"placement-availability-zone": ($r + "a"),
			"instance-id": $i,
			"instance-type": "m7i.large",
			"services-partition": $part,
			"services-domain": (if $part == "aws-cn" then "amazonaws.com.cn" else "amazonaws.com" end),
			"mac-owner-id": $a,
			"iam-info": {
				Code: "Success",
				LastUpdated: "2025-01-01T00:00:00Z",
				InstanceProfileArn: ("arn:" + $part + ":iam::" + $a + ":instance-profile/" + $p),
				InstanceProfileId: "AIPAE2EEXAMPLE0000000"
			},
			"iam-security-credentials-role": $p
		}},
		dynamic: {values: {"instance-identity-document": {
			accountId: $a, region: $r, availabilityZone: ($r + "a"),
			instanceId: $i, instanceType: "m7i.large", architecture: "x86_64",
			imageId: "ami-0e2e0e2e0e2e0e2e0", privateIp: "10.0.0.10",
			pendingTime: "2025-01-01T00:00:00Z", version: "2017-09-30",
			kernelId: null, ramdiskId: null, billingProducts: null,
			devpayProductCodes: null, marketplaceProductCodes: null
		}}}
	}'
}

# e2e_mock_start NS CONFIG STATEDIR [PORT]
# Starts AEMM in netns NS on 127.0.0.1:PORT (default 1338), IMDSv2 only, with
# HOME=STATEDIR/home and its log in STATEDIR/aemm.log; waits until it hands
# out a token. Sets E2E_MOCK_PID. Unless E2E_MOCK_DETACH=1, the mock gets
# SIGKILL when the calling shell dies (call this in the main shell, not in $(...)).
e2e_mock_start() {
	local ns=$1 config=$2 state=$3 port=${4:-1338} aemm pdeath=() deadline
	aemm=$(e2e_aemm_bin)
	[[ -f $config ]] || e2e_die "mock config $config not found"
	jq -e . "$config" >/dev/null || e2e_die "mock config $config is not JSON"
	mkdir -p "$state/home"
	cp "$config" "$state/aemm-config.json"
	if [[ ${E2E_MOCK_DETACH:-0} != 1 ]]; then pdeath=(setpriv --pdeathsig KILL); fi
	HOME="$state/home" "${pdeath[@]}" ip netns exec "$ns" \
		"$aemm" -n 127.0.0.1 -p "$port" -I -c "$state/aemm-config.json" \
		>"$state/aemm.log" 2>&1 </dev/null &
	E2E_MOCK_PID=$!
	echo "$E2E_MOCK_PID" >"$state/aemm.pid"
	deadline=$(($(date +%s) + 30))
	until e2e_mock_token "$ns" "$port" >/dev/null 2>&1; do
		if ! kill -0 "$E2E_MOCK_PID" 2>/dev/null; then
			cat "$state/aemm.log" >&2
			e2e_die "ec2-metadata-mock exited; log: $state/aemm.log"
		fi
		if (($(date +%s) > deadline)); then
			e2e_die "ec2-metadata-mock did not answer within 30 s; log: $state/aemm.log"
		fi
		sleep 0.2
	done
}

# e2e_mock_token NS [PORT]: an IMDSv2 token from the mock (inside NS).
e2e_mock_token() {
	ip netns exec "$1" curl -sSf --max-time 2 -X PUT \
		-H 'X-aws-ec2-metadata-token-ttl-seconds: 300' \
		"http://127.0.0.1:${2:-1338}/latest/api/token"
}

# e2e_mock_get NS PATH [PORT]: GET an IMDS path (e.g. /latest/meta-data/placement/region).
e2e_mock_get() {
	local token
	token=$(e2e_mock_token "$1" "${3:-1338}")
	ip netns exec "$1" curl -sSf --max-time 2 -H "X-aws-ec2-metadata-token: $token" \
		"http://127.0.0.1:${3:-1338}$2"
}

e2e_mock_stop() {
	local pid=$1
	if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
}

# e2e_ns_name PREFIX: a netns name unique to this process.
e2e_ns_name() { printf '%s-%s\n' "$1" "$$"; }

# ---------------------------------------------------------------------------
# Result checks shared by the boot scripts.

# e2e_require_empty_dir DIR: create DIR, refuse one with content (stale results).
e2e_require_empty_dir() {
	mkdir -p "$1"
	if [[ -n $(ls -A "$1") ]]; then e2e_die "$1 is not empty; give a fresh directory"; fi
}

# e2e_report_boots OUT: one line per boot with cloud-init and probe results;
# returns 0 if the guest finished (OUT/done) and every probe exited 0.
e2e_report_boots() {
	local out=$1 d rc=0 ci probe
	for d in "$out"/boot-*; do
		[[ -d $d ]] || continue
		ci=$(jq -r '.status // "?"' "$d/cloud-init-status.json" 2>/dev/null || echo '?')
		probe=$(cat "$d/probe.rc" 2>/dev/null || echo none)
		e2e_log "$(basename "$d"): cloud-init=$ci probe-rc=$probe state=$(cat "$d/system-state" 2>/dev/null || echo '?')"
		if [[ $probe != none && $probe != 0 ]]; then rc=3; fi
	done
	if [[ ! -f $out/done ]]; then
		e2e_log "guest did not finish (no $out/done)"
		return 1
	fi
	return "$rc"
}
