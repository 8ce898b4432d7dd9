#!/usr/bin/env bash
# Helpers shared by the test beds built of network namespaces (scripts/bed.sh,
# scripts/chain.sh and scripts/fork.sh, which source this file). The caller sets SCRIPT (its name, for
# messages), PREFIX (its namespaces are PREFIX-ID-ROLE), ID_RE and NS_RE (the bed IDs and
# namespaces it may touch) first.

die() {
	printf '%s: %s\n' "$SCRIPT" "$*" >&2
	exit 2
}

need_root() { [[ $EUID -eq 0 ]] || die "must run as root"; }

need_tools() {
	local t
	for t in ip nft ping; do
		command -v "$t" >/dev/null 2>&1 || die "missing tool: $t (apt-get install -y iproute2 nftables iputils-ping)"
	done
}

check_id() { [[ $1 =~ $ID_RE ]] || die "invalid bed ID '$1' (want [a-z0-9]{1,12})"; }

check_ns() { [[ $1 =~ $NS_RE ]] || die "refusing to touch namespace '$1'"; }

nsx() {
	local ns=$1
	shift
	check_ns "$ns"
	ip netns exec "$ns" "$@"
}

ns_del() {
	local ns=$1
	check_ns "$ns"
	if [[ -e /run/netns/$ns ]]; then
		ip netns del "$ns" 2>/dev/null || [[ ! -e /run/netns/$ns ]] || ip netns del "$ns"
	fi
	return 0
}

# sysctl_common NS: IPv6 on, no duplicate address detection (addresses usable at once).
sysctl_common() {
	nsx "$1" sysctl -qew \
		net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
		net.ipv6.conf.all.dad_transmits=0 net.ipv6.conf.default.dad_transmits=0 \
		net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0 >/dev/null
}

# sysctl_no_ratelimit NS: errors and echo replies without rate limits (per namespace; -e
# skips keys an older kernel keeps global, and the root namespace's are never written). An
# empty mask exempts every type.
sysctl_no_ratelimit() {
	local ns=$1
	nsx "$ns" sysctl -qw net.ipv4.icmp_ratelimit=0 net.ipv6.icmp.ratelimit=0
	nsx "$ns" sysctl -qew net.ipv4.icmp_msgs_per_sec=1000000 net.ipv4.icmp_msgs_burst=1000000 \
		net.ipv4.icmp_ratemask=0 >/dev/null
	if nsx "$ns" test -e /proc/sys/net/ipv6/icmp/ratemask; then
		nsx "$ns" sh -c 'printf "\n" > /proc/sys/net/ipv6/icmp/ratemask'
	fi
}

sysctls() {
	sysctl_common "$1"
	sysctl_no_ratelimit "$1"
}

# wait_ready NS DEV: until DEV is operationally up and has a usable IPv6 link-local
# address. Until then IPv6 neighbour discovery cannot send solicitations and the first
# packets wait for a 1 s retransmit.
wait_ready() {
	local ns=$1 dev=$2 i
	for ((i = 0; i < 100; i++)); do
		if [[ $(ip -n "$ns" -o link show dev "$dev") == *"state UP"* &&
			$(ip -n "$ns" -6 -o addr show dev "$dev" scope link -tentative) == *inet6* ]]; then
			return 0
		fi
		sleep 0.02
	done
	printf '%s: %s in %s did not come up\n' "$SCRIPT" "$dev" "$ns" >&2
	return 1
}

ping_ok() {
	local ns=$1 addr=$2 fam=$3 try
	for try in 1 2 3 4 5; do
		nsx "$ns" ping "-$fam" -n -q -c1 -W1 "$addr" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	printf '%s: self test failed: %s does not answer from %s\n' "$SCRIPT" "$addr" "$ns" >&2
	return 1
}

# exec_in_scan KIND DEFAULT_ID [ID] -- CMD...: runs CMD in the scanner namespace of bed ID
# (DEFAULT_ID when none is given), which must be up.
exec_in_scan() {
	local kind=$1 id=$2
	shift 2
	if [[ $# -gt 0 && $1 != -* ]]; then
		check_id "$1"
		id=$1
		shift
	fi
	[[ $# -gt 0 && $1 == -- ]] || die "expected '--' before the command"
	shift
	(($# > 0)) || die "no command given"
	need_root
	local ns="$PREFIX-$id-scan"
	check_ns "$ns"
	[[ -e /run/netns/$ns ]] || die "$kind bed '$id' is not up"
	exec ip netns exec "$ns" "$@"
}
