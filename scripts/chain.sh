#!/usr/bin/env bash
# asdic chain bed: a scanner, a chain of N >= 3 router namespaces and a far
# host, for testing `asdic trace` against a known path. Router r2 rejects one
# prefix (ICMP unreachable), stays silent (no time exceeded) for another, and
# owns a third itself; the far host drops echo requests to a fourth. See
# scripts/README.md ("Chain bed").
#
# Safety: everything this script creates lives inside namespaces named
# asdic-<ID>-{scan,r1..r8,far}; it never changes the root namespace's
# interfaces, routes, sysctls or nftables, and only uses 198.18.0.0/15 and
# 2001:db8::/32. `scripts/bed.sh cleanup` removes its leftovers too (every
# asdic-* namespace).
set -euo pipefail

readonly PREFIX=asdic
readonly STATE_DIR=/run/asdic-bed
readonly ID_RE='^[a-z0-9]{1,12}$'
readonly NS_RE='^asdic-[a-z0-9]{1,12}-(scan|r[1-8]|far)$'
readonly MAX_ROUTERS=8 DEF_ROUTERS=3
readonly SCRIPT=chain.sh
# die, need_root, need_tools, check_id, check_ns, nsx, ns_del, sysctls, wait_ready, ping_ok
# shellcheck source=scripts/netns.sh
. "$(dirname "${BASH_SOURCE[0]}")/netns.sh"

# Link k (0..N) joins node k and node k+1 (node 0 = scan, 1..N = routers,
# N+1 = far): 198.18.0.(4k+1)/30 -- 198.18.0.(4k+2)/30 and
# 2001:db8:0:(k+1)::1/64 -- ::2. A router answers from its address on the
# link towards the scanner: r_k from 198.18.0.(4(k-1)+2), 2001:db8:0:k::2.
readonly TARGET4=198.19.0.0/16 TARGET6=2001:db8:1::/48
# Target classes: third IPv4 octet X is 2001:db8:1:X::/64 in IPv6 (X in hex
# digits written as decimal, e.g. 77 -> 2001:db8:1:77::/64).
readonly FAR_X=1 ROUTER_X=2 REJECT_X=77 SILENT_X=88 DEAD_X=99

usage() {
	cat <<'EOF'
usage: scripts/chain.sh SUBCOMMAND [ID] [ARGS...]

Chain bed for asdic trace: asdic-ID-scan -- asdic-ID-r1 -- ... -- asdic-ID-rN
-- asdic-ID-far. ID matches [a-z0-9]{1,12} and defaults to "chain". Needs
root, iproute2, nftables and ping.

subcommands:
  up [ID] [--routers N]
        (re)build the bed with N routers (3..8, default 3); a stale bed with
        the same ID is removed first. Prints "chain ID up"; on failure tears
        down and exits != 0.
  down [ID]
        delete the bed's namespaces and state; idempotent.
  truth [ID]
        print the ground truth (the path of every target class) as JSON.
  exec [ID] -- CMD...
        run CMD inside asdic-ID-scan.
  -h, --help
        this text.

target classes (IPv4 198.19.X.0/24, IPv6 2001:db8:1:X::/64):
  X=1   on far: N routers, then the target (N+1 hops)
  X=2   local on r2: r1, then the target (2 hops)
  X=77  rejected by r2: r1, r2, then r2's unreachable at hop 3
        (IPv4 host-unreachable !H, IPv6 admin-prohibited !X)
  X=88  on far, but r2 sends no time exceeded for it: hop 2 is silent
  X=99  on far, which drops echo requests to it: never reached
EOF
}

# node_ns ID K N -> the namespace of node K (0 = scan, N+1 = far)
node_ns() {
	local id=$1 k=$2 n=$3
	if ((k == 0)); then
		printf '%s-%s-scan' "$PREFIX" "$id"
	elif ((k == n + 1)); then
		printf '%s-%s-far' "$PREFIX" "$id"
	else
		printf '%s-%s-r%d' "$PREFIX" "$id" "$k"
	fi
}

# Addresses of link K: side 1 (towards the scanner) and side 2.
a4() { printf '198.18.0.%d' "$((4 * $1 + $2))"; }
a6() { printf '2001:db8:0:%d::%d' "$(($1 + 1))" "$2"; }

chain_down() {
	local id=$1 ns
	# Every namespace a bed of this ID may have, whatever its router count.
	for ns in "$PREFIX-$id-scan" "$PREFIX-$id-far" $(seq -f "$PREFIX-$id-r%g" 1 "$MAX_ROUTERS"); do
		ns_del "$ns"
	done
	rm -f "$STATE_DIR/$id.chain"
}

# r2's rules: reject one class, no time exceeded about another. The quoted
# packet's destination sits 24 bytes into an ICMP error (8-byte ICMP header,
# then the IPv4 header's daddr at 16) and 32 bytes into an ICMPv6 error (8,
# then the IPv6 header's daddr at 24); the silent class is matched there.
nft_r2() {
	cat <<EOF
table inet asdic_chain {
	counter rejected { }
	counter silenced { }
	chain forward {
		type filter hook forward priority filter; policy accept;
		ip daddr 198.19.$REJECT_X.0/24 icmp type echo-request counter name "rejected" reject with icmp type host-unreachable
		ip6 daddr 2001:db8:1:$REJECT_X::/64 icmpv6 type echo-request counter name "rejected" reject with icmpv6 type admin-prohibited
	}
	chain output {
		type filter hook output priority filter; policy accept;
		icmp type time-exceeded @th,192,24 0xc613$(printf '%02x' "$SILENT_X") counter name "silenced" drop
		icmpv6 type time-exceeded @th,256,64 0x20010db80001$(printf '%04d' "$SILENT_X") counter name "silenced" drop
	}
}
EOF
}

nft_far() {
	cat <<EOF
table inet asdic_chain {
	counter dropped { }
	chain input {
		type filter hook input priority filter; policy accept;
		ip daddr 198.19.$DEAD_X.0/24 icmp type echo-request counter name "dropped" drop
		ip6 daddr 2001:db8:1:$DEAD_X::/64 icmpv6 type echo-request counter name "dropped" drop
	}
}
EOF
}

chain_up() {
	local id=$1 n=$2 k ns prev next
	chain_down "$id"
	mkdir -p "$STATE_DIR"
	printf 'ROUTERS=%d\n' "$n" >"$STATE_DIR/$id.chain"
	for ((k = 0; k <= n + 1; k++)); do
		ns=$(node_ns "$id" "$k" "$n")
		check_ns "$ns"
		ip netns add "$ns"
		ip -n "$ns" link set lo up
		sysctls "$ns"
	done
	# Link k: node k's "b0" -- node k+1's "a0" (scan has only b0, far only a0).
	for ((k = 0; k <= n; k++)); do
		prev=$(node_ns "$id" "$k" "$n")
		next=$(node_ns "$id" "$((k + 1))" "$n")
		ip link add b0 netns "$prev" type veth peer name a0 netns "$next"
		ip -n "$prev" link set b0 up
		ip -n "$next" link set a0 up
		ip -n "$prev" addr add "$(a4 "$k" 1)/30" dev b0
		ip -n "$prev" -6 addr add "$(a6 "$k" 1)/64" dev b0 nodad
		ip -n "$next" addr add "$(a4 "$k" 2)/30" dev a0
		ip -n "$next" -6 addr add "$(a6 "$k" 2)/64" dev a0 nodad
	done
	# Forward: every node sends the targets on down the chain; back: every
	# node past the first router reaches the scanner's link up the chain.
	for ((k = 0; k <= n; k++)); do
		ns=$(node_ns "$id" "$k" "$n")
		ip -n "$ns" route add "$TARGET4" via "$(a4 "$k" 2)"
		ip -n "$ns" -6 route add "$TARGET6" via "$(a6 "$k" 2)"
		if ((k >= 1)); then
			nsx "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
		fi
	done
	for ((k = 2; k <= n + 1; k++)); do
		ns=$(node_ns "$id" "$k" "$n")
		ip -n "$ns" route add 198.18.0.0/30 via "$(a4 "$((k - 1))" 1)"
		ip -n "$ns" -6 route add 2001:db8:0:1::/64 via "$(a6 "$((k - 1))" 1)"
	done
	local r2 far
	r2=$(node_ns "$id" 2 "$n")
	far=$(node_ns "$id" "$((n + 1))" "$n")
	ip -n "$r2" route add local "198.19.$ROUTER_X.0/24" dev lo
	ip -n "$r2" -6 route add local "2001:db8:1:$ROUTER_X::/64" dev lo
	ip -n "$far" route add local "$TARGET4" dev lo
	ip -n "$far" -6 route add local "$TARGET6" dev lo
	nft_r2 | nsx "$r2" nft -f -
	nft_far | nsx "$far" nft -f -

	for ((k = 0; k <= n + 1; k++)); do
		ns=$(node_ns "$id" "$k" "$n")
		((k == 0)) || wait_ready "$ns" a0
		((k == n + 1)) || wait_ready "$ns" b0
	done
	local scan
	scan=$(node_ns "$id" 0 "$n")
	ping_ok "$scan" "198.19.$FAR_X.1" 4
	ping_ok "$scan" "2001:db8:1:$FAR_X::1" 6
	ping_ok "$scan" "198.19.$ROUTER_X.1" 4
	ping_ok "$scan" "2001:db8:1:$ROUTER_X::1" 6
	nsx "$r2" nft reset counters table inet asdic_chain >/dev/null
	nsx "$far" nft reset counters table inet asdic_chain >/dev/null
}

load_routers() {
	local id=$1 f="$STATE_DIR/$1.chain" k v
	[[ -f $f ]] || die "chain bed '$id' is not up (no $f)"
	ROUTERS=0
	while IFS='=' read -r k v; do
		[[ $k == ROUTERS && $v =~ ^[0-9]+$ ]] && ROUTERS=$v
	done <"$f"
	((ROUTERS >= 3 && ROUTERS <= MAX_ROUTERS)) || die "bad state in $f"
}

# json_list ITEM... -> ["a","b",null] (the word null stays bare)
json_list() {
	local out="" x
	for x in "$@"; do
		[[ $x == null ]] && out+="null," || out+="\"$x\","
	done
	printf '[%s]' "${out%,}"
}

# counter NS NAME -> packets
counter() {
	nsx "$1" nft list counter inet asdic_chain "$2" 2>/dev/null | awk '$1 == "packets" { print $2; exit }'
}

cmd_truth() {
	local id=${1:-chain}
	check_id "$id"
	need_root
	load_routers "$id"
	local n=$ROUTERS k
	local -a r4=() r6=()
	for ((k = 1; k <= n; k++)); do
		r4+=("$(a4 "$((k - 1))" 2)")
		r6+=("$(a6 "$((k - 1))" 2)")
	done
	# Paths: one entry per hop from TTL 1; "target" is the destination itself,
	# null a silent hop.
	local far4 far6 router4 router6 reject4 reject6 silent4 silent6 dead4 dead6
	far4=$(json_list "${r4[@]}" target)
	far6=$(json_list "${r6[@]}" target)
	router4=$(json_list "${r4[0]}" target)
	router6=$(json_list "${r6[0]}" target)
	reject4=$(json_list "${r4[0]}" "${r4[1]}" "${r4[1]}")
	reject6=$(json_list "${r6[0]}" "${r6[1]}" "${r6[1]}")
	silent4=$(json_list "${r4[0]}" null "${r4[@]:2}" target)
	silent6=$(json_list "${r6[0]}" null "${r6[@]:2}" target)
	dead4=$(json_list "${r4[@]}")
	dead6=$(json_list "${r6[@]}")
	local r2 far
	r2=$(node_ns "$id" 2 "$n")
	far=$(node_ns "$id" "$((n + 1))" "$n")
	printf '{"id":"%s","routers":%d,"scan_ns":"%s","src4":"%s","src6":"%s",' \
		"$id" "$n" "$(node_ns "$id" 0 "$n")" "$(a4 0 1)" "$(a6 0 1)"
	printf '"namespaces":%s,' "$(json_list $(for ((k = 0; k <= n + 1; k++)); do node_ns "$id" "$k" "$n"; echo; done))"
	printf '"classes":{'
	printf '"far":{"prefix4":"198.19.%d.0/24","prefix6":"2001:db8:1:%d::/64","path4":%s,"path6":%s,"end":"reply"},' \
		"$FAR_X" "$FAR_X" "$far4" "$far6"
	printf '"router":{"prefix4":"198.19.%d.0/24","prefix6":"2001:db8:1:%d::/64","path4":%s,"path6":%s,"end":"reply"},' \
		"$ROUTER_X" "$ROUTER_X" "$router4" "$router6"
	printf '"reject":{"prefix4":"198.19.%d.0/24","prefix6":"2001:db8:1:%d::/64","path4":%s,"path6":%s,"end":"unreachable",' \
		"$REJECT_X" "$REJECT_X" "$reject4" "$reject6"
	printf '"type4":3,"code4":1,"marker4":"!H","type6":1,"code6":1,"marker6":"!X"},'
	printf '"silent":{"prefix4":"198.19.%d.0/24","prefix6":"2001:db8:1:%d::/64","path4":%s,"path6":%s,"end":"reply"},' \
		"$SILENT_X" "$SILENT_X" "$silent4" "$silent6"
	printf '"dead":{"prefix4":"198.19.%d.0/24","prefix6":"2001:db8:1:%d::/64","path4":%s,"path6":%s,"end":"none"}},' \
		"$DEAD_X" "$DEAD_X" "$dead4" "$dead6"
	printf '"counters":{"rejected":%d,"silenced":%d,"dropped":%d}}\n' \
		"$(counter "$r2" rejected)" "$(counter "$r2" silenced)" "$(counter "$far" dropped)"
}

_UP_ID=""
_up_fail() {
	local rc=$?
	trap - EXIT
	if [[ -n $_UP_ID ]]; then
		printf 'chain.sh: up %s failed (rc=%d), tearing down\n' "$_UP_ID" "$rc" >&2
		chain_down "$_UP_ID" || true
	fi
	exit "$((rc == 0 ? 1 : rc))"
}

cmd_up() {
	local id=chain n=$DEF_ROUTERS
	if [[ $# -gt 0 && $1 != -* ]]; then
		check_id "$1"
		id=$1
		shift
	fi
	while (($#)); do
		case $1 in
		--routers)
			[[ $# -ge 2 && $2 =~ ^[0-9]$ ]] || die "--routers wants 3..$MAX_ROUTERS"
			n=$2
			((n >= 3 && n <= MAX_ROUTERS)) || die "--routers wants 3..$MAX_ROUTERS"
			shift 2
			;;
		*) die "up: unknown option '$1'" ;;
		esac
	done
	need_root
	need_tools
	_UP_ID=$id
	trap _up_fail EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	chain_up "$id" "$n"
	trap - EXIT INT TERM
	printf 'chain %s up\n' "$id"
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
		local id=${1:-chain}
		check_id "$id"
		(($# <= 1)) || die "down: too many arguments"
		need_root
		chain_down "$id"
		printf 'chain %s down\n' "$id"
		;;
	truth) cmd_truth "$@" ;;
	exec) exec_in_scan chain chain "$@" ;;
	*)
		usage >&2
		exit 2
		;;
	esac
}

main "$@"
