#!/usr/bin/env bash
# asdic fork bed: a path with a per-flow load balancer, for testing Paris
# traceroute (issue 26 part 4). Router r1 hashes the ICMP / ICMPv6 checksum of
# every echo request from the scanner (nftables `jhash @th,16,16 mod 2`) and
# sends the flow down one of two 2-hop branches (a1-a2 or b1-b2), which join
# again at r4 in front of the far host. A trace whose probes to one target
# differ in checksum joins hops that are not linked (a1 then b2, or b1 then
# a2). See scripts/README.md ("Fork bed").
#
# Safety: everything this script creates lives inside namespaces named
# asdic-<ID>-{scan,r1,a1,a2,b1,b2,r4,far}; it never changes the root
# namespace's interfaces, routes, sysctls or nftables, and only uses
# 198.18.0.0/15 and 2001:db8::/32. `scripts/bed.sh cleanup` removes its
# leftovers too (every asdic-* namespace).
set -euo pipefail

readonly PREFIX=asdic
readonly STATE_DIR=/run/asdic-bed
readonly ID_RE='^[a-z0-9]{1,12}$'
readonly NS_RE='^asdic-[a-z0-9]{1,12}-(scan|r1|a1|a2|b1|b2|r4|far)$'
readonly DEF_ID=fork
readonly SCRIPT=fork.sh
# die, need_root, need_tools, check_id, check_ns, nsx, ns_del, sysctls, wait_ready, ping_ok
# shellcheck source=scripts/netns.sh
. "$(dirname "${BASH_SOURCE[0]}")/netns.sh"

# Nodes, and the links between them: link k joins LINK_UP[k] (its interface
# LINK_UPIF[k], towards the targets) and LINK_DOWN[k] (interface
# LINK_DOWNIF[k], towards the scanner), with 198.18.0.(4k+1)/30 and
# 2001:db8:0:(k+1)::1/64 on the scanner's side and .(4k+2), ::2 on the other.
# Interfaces named a* face the scanner, b* face the targets.
#
#   scan --L0-- r1 --L1-- a1 --L3-- a2 --L5-- r4 --L7-- far
#                 \--L2-- b1 --L4-- b2 --L6--/
readonly NODES=(scan r1 a1 a2 b1 b2 r4 far)
readonly LINK_UP=(scan r1 r1 a1 b1 a2 b2 r4)
readonly LINK_UPIF=(b0 b0 b1 b0 b0 b0 b0 b0)
readonly LINK_DOWN=(r1 a1 b1 a2 b2 r4 r4 far)
readonly LINK_DOWNIF=(a0 a0 a0 a0 a0 a0 a1 a0)

readonly TARGET4=198.19.1.0/24 TARGET6=2001:db8:1:1::/64
readonly PROBE4=198.19.1.5 PROBE6=2001:db8:1:1::5
# r1's policy routing: fwmark 1 (the b branch) looks up this table.
readonly B_TABLE=100 B_RULE_PREF=100
# A fixed seed, so that which checksum takes which branch is the same in
# every bed (without one, the kernel picks a random seed per rule).
readonly HASH_SEED=0x61736463
readonly HASH_EXPR="jhash @th,16,16 mod 2 seed $HASH_SEED"
# up's self test: at most this many payload patterns per family.
readonly CHECK_PATTERNS=16 CHECK_IDENT=9029

usage() {
	cat <<'EOF'
usage: scripts/fork.sh SUBCOMMAND [ID] [ARGS...]

Fork bed for Paris traceroute (a per-flow load balancer on the ICMP checksum):

  asdic-ID-scan -- asdic-ID-r1 --+-- asdic-ID-a1 -- asdic-ID-a2 --+-- asdic-ID-r4 -- asdic-ID-far
                                 +-- asdic-ID-b1 -- asdic-ID-b2 --+

ID matches [a-z0-9]{1,12} and defaults to "fork". Needs root, iproute2,
nftables and ping (iputils).

subcommands:
  up [ID]
        (re)build the bed; a stale fork bed with the same ID is removed first.
        Checks that echo requests of different checksums take both branches
        (both families). Prints "fork ID up"; on failure tears down and exits
        != 0.
  down [ID]
        delete the bed's namespaces and state; idempotent.
  truth [ID]
        print the ground truth as JSON: per family the addresses of r1, a1,
        a2, b1, b2 and r4 as seen in time exceeded messages, and the two
        valid paths (hops 1..4; hop 5 is the target).
  exec [ID] -- CMD...
        run CMD inside asdic-ID-scan.
  -h, --help
        this text.

targets: 198.19.1.0/24 and 2001:db8:1:1::/64, every address answered by far.
EOF
}

ns_of() { printf '%s-%s-%s' "$PREFIX" "$1" "$2"; }

# Addresses of link K: side 1 (towards the scanner) and side 2.
a4() { printf '198.18.0.%d' "$((4 * $1 + $2))"; }
a6() { printf '2001:db8:0:%d::%d' "$(($1 + 1))" "$2"; }

# The link whose side 2 holds the address NODE's time exceeded messages come
# from (the source of its route back to the scanner; r4 faces the scanner on
# two links, and answers from the one towards a2, link 5, in both branches).
declare -A TE_LINK=([r1]=0 [a1]=1 [b1]=2 [a2]=3 [b2]=4 [r4]=5)
# Each node's route back to the scanner's link: via side 1 of this link.
declare -A BACK_LINK=([a1]=1 [b1]=2 [a2]=3 [b2]=4 [r4]=5 [far]=7)
# Each node's route to the targets (r1's main table: the a branch): via side
# 2 of this link.
declare -A FWD_LINK=([scan]=0 [r1]=1 [a1]=3 [b1]=4 [a2]=5 [b2]=6 [r4]=7)
readonly B_LINK=2

fork_down() {
	local id=$1 node
	for node in "${NODES[@]}"; do
		ns_del "$(ns_of "$id" "$node")"
	done
	rm -f "$STATE_DIR/$id.fork"
}

fork_sysctls() {
	local ns=$1
	sysctls "$ns"
	# Return traffic is asymmetric (the b branch answers through r1 on
	# another interface than the a branch's replies): no reverse path
	# filter. IPv4 errors leave from the source of the route back, not the
	# inbound interface's address.
	nsx "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
		net.ipv4.icmp_errors_use_inbound_ifaddr=0
}

# r1's load balancer: echo requests from the scanner get mark 0 or 1 from a
# hash of their ICMP / ICMPv6 checksum (transport header bits 16..31) before
# routing; `ip rule` sends mark 1 to the b branch. The counters count the
# requests each branch was given.
nft_r1() {
	cat <<EOF
table inet asdic_fork {
	counter to_a { }
	counter to_b { }
	chain prerouting {
		type filter hook prerouting priority mangle; policy accept;
		iifname "a0" icmp type echo-request meta mark set $HASH_EXPR
		iifname "a0" icmpv6 type echo-request meta mark set $HASH_EXPR
		iifname "a0" meta l4proto { icmp, ipv6-icmp } @th,0,8 { 8, 128 } meta mark 0 counter name "to_a"
		iifname "a0" meta l4proto { icmp, ipv6-icmp } @th,0,8 { 8, 128 } meta mark 1 counter name "to_b"
	}
}
EOF
}

# te_from NS FAM TTL PATTERN TARGET -> the source of the answer to one echo
# request (fixed identifier and sequence, 8-byte payload of PATTERN, so its
# checksum depends on PATTERN only), or nothing.
te_from() {
	local ns=$1 fam=$2 ttl=$3 pat=$4 dst=$5
	nsx "$ns" ping "-$fam" -n -c1 -W1 -t "$ttl" -s 8 -e "$CHECK_IDENT" -p "$pat" "$dst" 2>/dev/null |
		awk '$1 == "From" { print $2; exit } $3 == "from" { sub(/:$/, "", $4); print $4; exit }' || true
}

# check_branches ID FAM: probes at TTL 2 with up to CHECK_PATTERNS payload
# patterns must be answered by both a1 and b1; then the target must answer
# a pattern of each branch at full TTL.
check_branches() {
	local id=$1 fam=$2 scan i pat from pat_a="" pat_b="" seen=""
	local a1 b1 dst
	scan=$(ns_of "$id" scan)
	if [[ $fam == 4 ]]; then
		a1=$(a4 "${TE_LINK[a1]}" 2) b1=$(a4 "${TE_LINK[b1]}" 2) dst=$PROBE4
	else
		a1=$(a6 "${TE_LINK[a1]}" 2) b1=$(a6 "${TE_LINK[b1]}" 2) dst=$PROBE6
	fi
	for ((i = 0; i < CHECK_PATTERNS; i++)); do
		pat=$(printf '%02x%02x' "$((i * 17))" "$((255 - i * 16))")
		from=$(te_from "$scan" "$fam" 2 "$pat" "$dst")
		seen+=" $pat:${from:-none}"
		[[ $from == "$a1" && -z $pat_a ]] && pat_a=$pat
		[[ $from == "$b1" && -z $pat_b ]] && pat_b=$pat
		[[ -n $pat_a && -n $pat_b ]] && break
	done
	if [[ -z $pat_a || -z $pat_b ]]; then
		printf 'fork.sh: self test failed: IPv%s probes at TTL 2 did not reach both a1 (%s) and b1 (%s):%s\n' \
			"$fam" "$a1" "$b1" "$seen" >&2
		return 1
	fi
	for pat in "$pat_a" "$pat_b"; do
		from=$(te_from "$scan" "$fam" 64 "$pat" "$dst")
		if [[ $from != "$dst" ]]; then
			printf 'fork.sh: self test failed: IPv%s %s with pattern %s answered by %s\n' \
				"$fam" "$dst" "$pat" "${from:-nobody}" >&2
			return 1
		fi
	done
}

fork_up() {
	local id=$1 node ns k up down
	fork_down "$id"
	mkdir -p "$STATE_DIR"
	printf 'KIND=fork\n' >"$STATE_DIR/$id.fork"
	for node in "${NODES[@]}"; do
		ns=$(ns_of "$id" "$node")
		check_ns "$ns"
		ip netns add "$ns"
		ip -n "$ns" link set lo up
		fork_sysctls "$ns"
	done
	for ((k = 0; k < ${#LINK_UP[@]}; k++)); do
		up=$(ns_of "$id" "${LINK_UP[k]}")
		down=$(ns_of "$id" "${LINK_DOWN[k]}")
		ip link add "${LINK_UPIF[k]}" netns "$up" type veth peer name "${LINK_DOWNIF[k]}" netns "$down"
		ip -n "$up" link set "${LINK_UPIF[k]}" up
		ip -n "$down" link set "${LINK_DOWNIF[k]}" up
		ip -n "$up" addr add "$(a4 "$k" 1)/30" dev "${LINK_UPIF[k]}"
		ip -n "$up" -6 addr add "$(a6 "$k" 1)/64" dev "${LINK_UPIF[k]}" nodad
		ip -n "$down" addr add "$(a4 "$k" 2)/30" dev "${LINK_DOWNIF[k]}"
		ip -n "$down" -6 addr add "$(a6 "$k" 2)/64" dev "${LINK_DOWNIF[k]}" nodad
	done
	for node in "${!FWD_LINK[@]}"; do
		ns=$(ns_of "$id" "$node")
		k=${FWD_LINK[$node]}
		ip -n "$ns" route add "$TARGET4" via "$(a4 "$k" 2)"
		ip -n "$ns" -6 route add "$TARGET6" via "$(a6 "$k" 2)"
		[[ $node == scan ]] || nsx "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
	done
	# The route back names its source: errors leave from it (IPv6 would
	# otherwise pick the inbound interface's address, which for r4 depends
	# on the branch).
	for node in "${!BACK_LINK[@]}"; do
		ns=$(ns_of "$id" "$node")
		k=${BACK_LINK[$node]}
		if [[ $node == far ]]; then
			ip -n "$ns" route add 198.18.0.0/30 via "$(a4 "$k" 1)"
			ip -n "$ns" -6 route add 2001:db8:0:1::/64 via "$(a6 "$k" 1)"
		else
			ip -n "$ns" route add 198.18.0.0/30 via "$(a4 "$k" 1)" src "$(a4 "${TE_LINK[$node]}" 2)"
			ip -n "$ns" -6 route add 2001:db8:0:1::/64 via "$(a6 "$k" 1)" src "$(a6 "${TE_LINK[$node]}" 2)"
		fi
	done
	# r1: mark 1 -> the b branch.
	local r1 far
	r1=$(ns_of "$id" r1)
	far=$(ns_of "$id" far)
	ip -n "$r1" route add "$TARGET4" via "$(a4 "$B_LINK" 2)" table "$B_TABLE"
	ip -n "$r1" -6 route add "$TARGET6" via "$(a6 "$B_LINK" 2)" table "$B_TABLE"
	ip -n "$r1" rule add fwmark 1 table "$B_TABLE" pref "$B_RULE_PREF"
	ip -n "$r1" -6 rule add fwmark 1 table "$B_TABLE" pref "$B_RULE_PREF"
	nft_r1 | nsx "$r1" nft -f -
	# far answers every address of the targets.
	ip -n "$far" route add local "$TARGET4" dev lo
	ip -n "$far" -6 route add local "$TARGET6" dev lo

	for ((k = 0; k < ${#LINK_UP[@]}; k++)); do
		wait_ready "$(ns_of "$id" "${LINK_UP[k]}")" "${LINK_UPIF[k]}"
		wait_ready "$(ns_of "$id" "${LINK_DOWN[k]}")" "${LINK_DOWNIF[k]}"
	done
	local scan
	scan=$(ns_of "$id" scan)
	ping_ok "$scan" "198.19.1.1" 4
	ping_ok "$scan" "2001:db8:1:1::1" 6
	check_branches "$id" 4
	check_branches "$id" 6
	nsx "$r1" nft reset counters table inet asdic_fork >/dev/null
}

# counter NS NAME -> packets
counter() {
	nsx "$1" nft list counter inet asdic_fork "$2" 2>/dev/null | awk '$1 == "packets" { print $2; exit }'
}

# family_json FAM -> {"r1":..., ..., "paths":[[r1,a1,a2,r4],[r1,b1,b2,r4]]}
family_json() {
	local fam=$1 node out="" f
	declare -A addr
	[[ $fam == 4 ]] && f=a4 || f=a6
	for node in r1 a1 a2 b1 b2 r4; do
		addr[$node]=$("$f" "${TE_LINK[$node]}" 2)
		out+="\"$node\":\"${addr[$node]}\","
	done
	printf '{%s"paths":[["%s","%s","%s","%s"],["%s","%s","%s","%s"]]}' "$out" \
		"${addr[r1]}" "${addr[a1]}" "${addr[a2]}" "${addr[r4]}" \
		"${addr[r1]}" "${addr[b1]}" "${addr[b2]}" "${addr[r4]}"
}

cmd_truth() {
	local id=${1:-$DEF_ID} node
	check_id "$id"
	(($# <= 1)) || die "truth: too many arguments"
	need_root
	[[ -f $STATE_DIR/$id.fork ]] || die "fork bed '$id' is not up (no $STATE_DIR/$id.fork)"
	local r1 ns_list=""
	r1=$(ns_of "$id" r1)
	for node in "${NODES[@]}"; do
		ns_list+="\"$(ns_of "$id" "$node")\","
	done
	printf '{"id":"%s","scan_ns":"%s","src4":"%s","src6":"%s",' \
		"$id" "$(ns_of "$id" scan)" "$(a4 0 1)" "$(a6 0 1)"
	printf '"namespaces":[%s],' "${ns_list%,}"
	printf '"prefix4":"%s","prefix6":"%s","hops":5,' "$TARGET4" "$TARGET6"
	printf '"balancer":{"node":"r1","hash":"%s","mark_a":0,"mark_b":1},' "$HASH_EXPR"
	printf '"v4":%s,"v6":%s,' "$(family_json 4)" "$(family_json 6)"
	printf '"counters":{"to_a":%d,"to_b":%d}}\n' "$(counter "$r1" to_a)" "$(counter "$r1" to_b)"
}

_UP_ID=""
_up_fail() {
	local rc=$?
	trap - EXIT
	if [[ -n $_UP_ID ]]; then
		printf 'fork.sh: up %s failed (rc=%d), tearing down\n' "$_UP_ID" "$rc" >&2
		fork_down "$_UP_ID" || true
	fi
	exit "$((rc == 0 ? 1 : rc))"
}

cmd_up() {
	local id=$DEF_ID
	if [[ $# -gt 0 && $1 != -* ]]; then
		check_id "$1"
		id=$1
		shift
	fi
	(($# == 0)) || die "up: unknown option '$1'"
	need_root
	need_tools
	# Another kind of bed with this ID shares namespace names (scan, far,
	# r1, r4): refuse rather than delete it.
	[[ ! -e $STATE_DIR/$id.chain && ! -e /run/netns/$PREFIX-$id-rtr ]] ||
		die "bed ID '$id' is in use by a chain or nftables bed; pick another ID"
	_UP_ID=$id
	trap _up_fail EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	fork_up "$id"
	trap - EXIT INT TERM
	printf 'fork %s up\n' "$id"
}

main() {
	(($# > 0)) || {
		usage >&2
		exit 2
	}
	local sub=$1
	shift
	case $sub in
	-h | --help | help) usage ;;
	up) cmd_up "$@" ;;
	down)
		local id=${1:-$DEF_ID}
		check_id "$id"
		(($# <= 1)) || die "down: too many arguments"
		need_root
		fork_down "$id"
		printf 'fork %s down\n' "$id"
		;;
	truth) cmd_truth "$@" ;;
	exec) exec_in_scan fork "$DEF_ID" "$@" ;;
	*)
		usage >&2
		exit 2
		;;
	esac
}

main "$@"
