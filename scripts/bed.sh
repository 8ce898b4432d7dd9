#!/usr/bin/env bash
# asdic test bed: three network namespaces joined by veth pairs, with
# nftables rules that emulate a known ground truth (dead hosts, a rejected
# /24, optional random loss); or, with --speed, two namespaces where an XDP
# program (asdic-responder) answers echo requests at line rate with the same
# kind of ground truth.  See scripts/README.md.
#
# Safety: everything this script creates lives inside namespaces named
# asdic-<ID>-{scan,rtr,far}; it never changes the root namespace's
# interfaces, routes, sysctls or nftables, and only uses 198.18.0.0/15 and
# 2001:db8::/32.
set -euo pipefail

readonly PREFIX=asdic
readonly STATE_DIR=/run/asdic-bed
readonly ID_RE='^[a-z0-9]{1,12}$'
readonly NS_RE='^asdic-[a-z0-9]{1,12}-(scan|rtr|far)$'

# Addressing plan (identical in every bed; the namespaces isolate them).
readonly SCAN4=198.18.0.1 RTR4_A=198.18.0.2 RTR4_B=198.18.1.1 FAR4=198.18.1.2
readonly SCAN6=2001:db8:0:1::1 RTR6_A=2001:db8:0:1::2 RTR6_B=2001:db8:0:2::1 FAR6=2001:db8:0:2::2
readonly TARGET4=198.19.0.0/16 TARGET6=2001:db8:1::/64
readonly REJECT4=198.19.77.0/24 REJECT6=2001:db8:1::4d00/120
# Host index i (0..65535) is a.b = i>>8 . i&255 in IPv4 and x = i in IPv6.
# The rejected /24 and /120 are both the indexes with i>>8 == 77 (0x4d).
readonly REJECT_HI=77

# Ground-truth defaults.
readonly DEF_DEAD_MOD=97 DEF_DEAD_REM=13 DEF_LOSS=0 DEF_LOSS_PPM=0 DEF_QUEUES=1

# Speed bed: scan (s0) and far (f0) share one /30 and /64; no router.
readonly SPEED_FAR4=198.18.0.2 SPEED_FAR6=2001:db8:0:1::2
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT_DIR

usage() {
	cat <<'EOF'
usage: scripts/bed.sh SUBCOMMAND [ID] [ARGS...]

Test bed for asdic: namespaces asdic-ID-scan -- asdic-ID-rtr -- asdic-ID-far.
ID matches [a-z0-9]{1,12} and defaults to "demo". Needs root, iproute2,
nftables and ping (iputils-ping).

subcommands:
  up [ID] [--loss PCT] [--dead-mod M] [--dead-rem R] [--queues Q] [--far-queues F]
     [--count-replies]
  up [ID] --speed [--loss-ppm N] [--dead-mod M] [--dead-rem R] [--queues Q]
        (re)build the bed; a stale bed with the same ID is removed first.
        PCT: 0..100 random loss of echo requests at the far end (default 0).
        IPv4 198.19.a.b is dead iff (a*256+b) % M == R; IPv6 2001:db8:1::x
        (x < 0x10000) is dead iff x % M == R (defaults M=97, R=13; M=0
        means no dead hosts). The rejected /24 (/120) is never dead.
        --speed: the speed bed, two namespaces asdic-ID-scan -- asdic-ID-far,
        where asdic-responder (XDP; binary from $ASDIC_RESPONDER, default
        target/release/asdic-responder) answers 198.19.0.0/16 and
        2001:db8:1::/64 with the same dead rule (no rejected block);
        N: random loss in parts per million (0..1000000, default 0).
        Q: RX and TX queues of both ends of the scanner's link (s0), 1..64
        (default 1); F: the same for the router-far link (r1/f0).
        --count-replies: the router counts the echo replies it forwards to
        the scanner per IPv4 target (set replies4, 65,536 elements filled
        before the run; truth does not list them: nft -j list set).
        Prints "bed ID up" on success; on failure tears down and exits != 0.
  down [ID]
        delete the bed's namespaces and state; idempotent.
  truth [ID]
        print the ground truth (parameters + live nft counters, or the
        responder's counters on a speed bed) as JSON.
  exec [ID] -- CMD...
        run CMD inside asdic-ID-scan.
  exec-far [ID] -- CMD...
        run CMD inside asdic-ID-far.
  run [ID] [up-options] -- CMD...
        up, run CMD in asdic-ID-scan, down (also on error, INT, TERM);
        exits with CMD's status.
  cleanup
        delete every namespace named asdic-* (leftovers of killed runs) and
        all bed state; prints what it removed.
  -h, --help
        this text.

See scripts/README.md for the topology and the ground-truth rules.
EOF
}

readonly SCRIPT=bed.sh
# die, need_root, check_id, check_ns, nsx, ns_del, sysctl_*, wait_ready, ping_ok.
# shellcheck source=scripts/netns.sh
. "$ROOT_DIR/scripts/netns.sh"

# bed.sh's own tool check (awk for the truth files; ping comes with need_ping).
need_tools() {
	local t
	for t in ip nft awk; do
		command -v "$t" >/dev/null 2>&1 || die "missing tool: $t (apt-get install -y iproute2 nftables)"
	done
}

need_ping() {
	command -v ping >/dev/null 2>&1 && return 0
	if command -v apt-get >/dev/null 2>&1; then
		printf 'bed.sh: installing iputils-ping\n' >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q iputils-ping >/dev/null 2>&1 || true
	fi
	command -v ping >/dev/null 2>&1 || die "missing tool: ping (apt-get install -y iputils-ping)"
}

ns_scan() { printf '%s-%s-scan' "$PREFIX" "$1"; }
ns_rtr() { printf '%s-%s-rtr' "$PREFIX" "$1"; }
ns_far() { printf '%s-%s-far' "$PREFIX" "$1"; }

ns_exists() {
	[[ -e /run/netns/$1 ]]
}

# ns_del_any NS: removes any namespace of asdic's beds (cleanup also removes the chain and
# fork beds' asdic-ID-rN and -bN, which this bed's NS_RE refuses).
ns_del_any() {
	local ns=$1
	[[ $ns == "${PREFIX}"-* ]] || die "refusing to delete namespace '$ns'"
	if ns_exists "$ns"; then
		# retry once if it failed but the namespace is still there
		ip netns del "$ns" 2>/dev/null || ! ns_exists "$ns" || ip netns del "$ns"
	fi
	return 0
}

# --------------------------------------------------------------------- down

# stop_pid PIDFILE: TERM the process it names (only if it is an asdic-responder),
# wait up to 2 s, then KILL; removes the pid file.
stop_pid() {
	local f=$1 pid i
	[[ -f $f ]] || return 0
	pid=$(<"$f")
	if [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == asdic-responder ]]; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 40; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$f"
}

# kill_ns_responders NS: KILL asdic-responder processes left inside NS (a killed
# bed.sh can leave one without a pid file). Prints what it killed.
kill_ns_responders() {
	local ns=$1 pid
	ns_exists "$ns" || return 0
	for pid in $(ip netns pids "$ns" 2>/dev/null); do
		if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == asdic-responder ]]; then
			kill -KILL "$pid" 2>/dev/null || true
			printf 'killed leftover asdic-responder %s in %s\n' "$pid" "$ns"
		fi
	done
}

bed_down() {
	local id=$1 ns
	stop_pid "$STATE_DIR/$id.responder.pid"
	kill_ns_responders "$(ns_far "$id")" >/dev/null
	for ns in "$(ns_scan "$id")" "$(ns_rtr "$id")" "$(ns_far "$id")"; do
		check_ns "$ns"
		ns_del "$ns"
	done
	rm -f "$STATE_DIR/$id.env" "$STATE_DIR/$id.responder.json" "$STATE_DIR/$id.responder.json.tmp" \
		"$STATE_DIR/$id.responder.log"
}

# ----------------------------------------------------------------- settings

# first_live -> the first host index >= 1 that is neither dead nor rejected
# (for the self test); fails if every host is dead.
first_live() {
	awk -v m="$DEAD_MOD" -v r="$DEAD_REM" -v rej="$REJECT_HI" 'BEGIN {
		for (i = 1; i < 65536; i++) {
			if (int(i / 256) == rej) continue
			if (m > 0 && i % m == r) continue
			print i
			exit 0
		}
		exit 1
	}'
}

# dead_elements 4|6 -> comma separated nft set elements (may be empty).
dead_elements() {
	awk -v fam="$1" -v m="$DEAD_MOD" -v r="$DEAD_REM" -v rej="$REJECT_HI" 'BEGIN {
		if (m <= 0) exit
		n = 0
		for (i = 0; i < 65536; i++) {
			if (int(i / 256) == rej) continue
			if (i % m != r) continue
			if (fam == 4) e = sprintf("198.19.%d.%d", int(i / 256), i % 256)
			else e = sprintf("2001:db8:1::%x", i)
			printf "%s%s", (n++ ? ",\n" : ""), e
		}
	}'
}

dead_count() {
	awk -v m="$DEAD_MOD" -v r="$DEAD_REM" -v rej="$REJECT_HI" 'BEGIN {
		n = 0
		if (m > 0) for (i = 0; i < 65536; i++) if (int(i / 256) != rej && i % m == r) n++
		print n
	}'
}

load_env() {
	local id=$1 f="$STATE_DIR/$1.env" k v
	[[ -f $f ]] || die "bed '$id' is not up (no $f)"
	LOSS=$DEF_LOSS DEAD_MOD=$DEF_DEAD_MOD DEAD_REM=$DEF_DEAD_REM SPEED=0 LOSS_PPM=$DEF_LOSS_PPM
	QUEUES=$DEF_QUEUES FAR_QUEUES=$DEF_QUEUES COUNT_REPLIES=0
	while IFS='=' read -r k v; do
		[[ $v =~ ^[0-9]+$ ]] || continue
		case $k in
		LOSS) LOSS=$v ;;
		SPEED) SPEED=$v ;;
		QUEUES) QUEUES=$v ;;
		FAR_QUEUES) FAR_QUEUES=$v ;;
		COUNT_REPLIES) COUNT_REPLIES=$v ;;
		LOSS_PPM) LOSS_PPM=$v ;;
		DEAD_MOD) DEAD_MOD=$v ;;
		DEAD_REM) DEAD_REM=$v ;;
		esac
	done <"$f"
}

# queue_opts Q -> the ip-link options for a device with Q RX and TX queues
# (nothing for one queue, the kernel's default).
queue_opts() {
	(($1 > 1)) && printf 'numtxqueues %d numrxqueues %d' "$1" "$1"
	return 0
}

# ------------------------------------------------------------------ nftables

nft_far() {
	local d4 d6 e4="" e6=""
	d4=$(dead_elements 4)
	d6=$(dead_elements 6)
	[[ -n $d4 ]] && e4="elements = { $d4 }"
	[[ -n $d6 ]] && e6="elements = { $d6 }"
	cat <<EOF
table inet asdic_bed {
	counter seen4 { }
	counter seen6 { }
	counter deaddrop { }
	counter lossdrop { }
	counter replied { }
	set dead4 {
		type ipv4_addr
		$e4
	}
	set dead6 {
		type ipv6_addr
		$e6
	}
	chain input {
		type filter hook input priority filter; policy accept;
		iifname "f0" ip daddr $TARGET4 icmp type echo-request jump echo4
		iifname "f0" ip6 daddr $TARGET6 icmpv6 type echo-request jump echo6
	}
	chain echo4 {
		counter name "seen4"
		ip daddr @dead4 counter name "deaddrop" drop
		jump loss
	}
	chain echo6 {
		counter name "seen6"
		ip6 daddr @dead6 counter name "deaddrop" drop
		jump loss
	}
	chain loss {
	}
	chain output {
		type filter hook output priority filter; policy accept;
		oifname "f0" icmp type echo-reply counter name "replied"
		oifname "f0" icmpv6 type echo-reply counter name "replied"
	}
}
EOF
}

# replies4_elements: every address of the IPv4 /16, comma-separated.
replies4_elements() {
	awk 'BEGIN { for (i = 0; i < 65536; i++) printf "%s198.19.%d.%d", (i ? "," : ""), int(i / 256), i % 256 }'
}

nft_rtr() {
	local set=""
	# The set is filled here; its rule comes after the self test (so its
	# counters see only the test's traffic): see bed_up.
	if ((COUNT_REPLIES)); then
		set="set replies4 {
		type ipv4_addr
		counter
		elements = { $(replies4_elements) }
	}"
	fi
	cat <<EOF
table inet asdic_bed {
	counter sent4 { }
	counter sent6 { }
	counter rejected { }
	$set
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "r0" ip daddr $TARGET4 icmp type echo-request counter name "sent4"
		iifname "r0" ip6 daddr $TARGET6 icmpv6 type echo-request counter name "sent6"
		ip daddr $REJECT4 icmp type echo-request counter name "rejected" reject with icmp type admin-prohibited
		ip6 daddr $REJECT6 icmpv6 type echo-request counter name "rejected" reject with icmpv6 type admin-prohibited
	}
}
EOF
}

# ----------------------------------------------------------------------- up

# Sysctls are per namespace; -e ignores keys this kernel lacks.
_UP_ID=""
_up_fail() {
	local rc=$?
	trap - EXIT
	if [[ -n $_UP_ID ]]; then
		printf 'bed.sh: up %s failed (rc=%d), tearing down\n' "$_UP_ID" "$rc" >&2
		bed_down "$_UP_ID" || true
	fi
	exit "$((rc == 0 ? 1 : rc))"
}

# parse_up_opts [ID] [OPTIONS] [-- CMD...]: sets UP_ID (default demo), LOSS, DEAD_MOD,
# DEAD_REM and UP_REST (the command after --).
parse_up_opts() {
	UP_ID=demo
	if [[ $# -gt 0 && $1 != -* ]]; then
		check_id "$1"
		UP_ID=$1
		shift
	fi
	LOSS=$DEF_LOSS DEAD_MOD=$DEF_DEAD_MOD DEAD_REM=$DEF_DEAD_REM SPEED=0 LOSS_PPM=$DEF_LOSS_PPM
	QUEUES=$DEF_QUEUES FAR_QUEUES=$DEF_QUEUES COUNT_REPLIES=0
	UP_REST=()
	local loss_given=0 ppm_given=0 nft_only=0
	while (($#)); do
		case $1 in
		--loss)
			[[ $# -ge 2 && $2 =~ ^[0-9]{1,3}$ ]] || die "--loss wants an integer 0..100"
			LOSS=$((10#$2))
			((LOSS <= 100)) || die "--loss wants an integer 0..100"
			loss_given=1
			shift 2
			;;
		--speed)
			SPEED=1
			shift
			;;
		--loss-ppm)
			[[ $# -ge 2 && $2 =~ ^[0-9]{1,7}$ ]] || die "--loss-ppm wants an integer 0..1000000"
			LOSS_PPM=$((10#$2))
			((LOSS_PPM <= 1000000)) || die "--loss-ppm wants an integer 0..1000000"
			ppm_given=1
			shift 2
			;;
		--queues | --far-queues)
			[[ $# -ge 2 && $2 =~ ^[0-9]{1,2}$ ]] && ((10#$2 >= 1 && 10#$2 <= 64)) ||
				die "$1 wants an integer 1..64"
			if [[ $1 == --queues ]]; then QUEUES=$((10#$2)); else
				FAR_QUEUES=$((10#$2))
				nft_only=1
			fi
			shift 2
			;;
		--count-replies)
			COUNT_REPLIES=1
			nft_only=1
			shift
			;;
		--dead-mod)
			[[ $# -ge 2 && $2 =~ ^[0-9]{1,6}$ ]] || die "--dead-mod wants an integer >= 0"
			DEAD_MOD=$((10#$2))
			shift 2
			;;
		--dead-rem)
			[[ $# -ge 2 && $2 =~ ^[0-9]{1,6}$ ]] || die "--dead-rem wants an integer >= 0"
			DEAD_REM=$((10#$2))
			shift 2
			;;
		--)
			shift
			UP_REST=("$@")
			break
			;;
		*) die "up: unknown option '$1'" ;;
		esac
	done
	if ((SPEED)); then
		((!loss_given)) || die "--loss is for the nftables bed; a --speed bed takes --loss-ppm N"
		((!nft_only)) || die "--far-queues and --count-replies are for the nftables bed (a --speed bed has no router)"
	else
		((!ppm_given)) || die "--loss-ppm is for --speed beds; the nftables bed takes --loss PCT"
	fi
	return 0
}

# ------------------------------------------------------------- speed bed

# responder_bin -> the asdic-responder binary to run (checked).
responder_bin() {
	local bin=${ASDIC_RESPONDER:-$ROOT_DIR/target/release/asdic-responder}
	if [[ ! -x $bin ]]; then
		printf 'bed.sh: asdic-responder not found at %s (set ASDIC_RESPONDER, or build it: cargo build --release -p asdic-responder)\n' "$bin" >&2
		return 1
	fi
	printf '%s' "$bin"
}

# start_responder ID LOSS_PPM: runs asdic-responder on f0 in far, in the
# background and in its own session (so a terminal's Ctrl-C meant for a
# command does not reach it), with its output in a log file; waits until it
# has attached (its counters file appears). Writes the pid file.
start_responder() {
	local id=$1 ppm=$2 far bin pid i
	far=$(ns_far "$id")
	check_ns "$far"
	bin=$(responder_bin) || return 1
	local counters="$STATE_DIR/$id.responder.json" log="$STATE_DIR/$id.responder.log"
	rm -f "$counters"
	setsid ip netns exec "$far" "$bin" f0 --v4 "$TARGET4" --v6 "$TARGET6" \
		--dead-mod "$DEAD_MOD" --dead-rem "$DEAD_REM" --loss-ppm "$ppm" \
		--counters "$counters" </dev/null >"$log" 2>&1 &
	pid=$!
	printf '%d\n' "$pid" >"$STATE_DIR/$id.responder.pid"
	for ((i = 0; i < 200; i++)); do
		[[ -s $counters ]] && return 0
		if ! kill -0 "$pid" 2>/dev/null; then
			printf 'bed.sh: asdic-responder failed on f0 in %s:\n' "$far" >&2
			sed 's/^/  /' "$log" >&2
			return 1
		fi
		sleep 0.025
	done
	printf 'bed.sh: asdic-responder did not attach within 5 s:\n' >&2
	sed 's/^/  /' "$log" >&2
	return 1
}

# ping_dead NS ADDR FAM: ADDR must not answer (one probe, 0.5 s).
ping_dead() {
	local ns=$1 addr=$2 fam=$3
	if nsx "$ns" ping "-$fam" -n -q -c1 -W0.5 "$addr" >/dev/null 2>&1; then
		printf 'bed.sh: self test failed: dead host %s answered from %s\n' "$addr" "$ns" >&2
		return 1
	fi
}

# speed_live / speed_dead -> the first live / dead host index >= 1 (no rejected block
# on a speed bed); fail if there is none.
speed_live() {
	awk -v m="$DEAD_MOD" -v r="$DEAD_REM" 'BEGIN {
		for (i = 1; i < 65536; i++) if (!(m > 0 && i % m == r)) { print i; exit 0 }
		exit 1
	}'
}
speed_dead() {
	awk -v m="$DEAD_MOD" -v r="$DEAD_REM" 'BEGIN {
		for (i = 1; i < 65536; i++) if (m > 0 && i % m == r) { print i; exit 0 }
		exit 1
	}'
}

# bed_up_speed ID (uses DEAD_MOD DEAD_REM LOSS_PPM): scan <-> far over one veth
# pair; asdic-responder answers the target prefixes in far with XDP_TX.
bed_up_speed() {
	local id=$1 scan far live dead
	scan=$(ns_scan "$id")
	far=$(ns_far "$id")
	check_ns "$scan"
	check_ns "$far"

	bed_down "$id" # stale bed of a killed run
	responder_bin >/dev/null

	ip netns add "$scan"
	ip netns add "$far"
	mkdir -p "$STATE_DIR"
	printf 'SPEED=1\nLOSS=0\nLOSS_PPM=%d\nDEAD_MOD=%d\nDEAD_REM=%d\nQUEUES=%d\n' \
		"$LOSS_PPM" "$DEAD_MOD" "$DEAD_REM" "$QUEUES" >"$STATE_DIR/$id.env"

	local ns
	for ns in "$scan" "$far"; do
		sysctl_common "$ns"
		ip -n "$ns" link set lo up
	done
	ip link add s0 netns "$scan" $(queue_opts "$QUEUES") type veth \
		peer name f0 netns "$far" $(queue_opts "$QUEUES")
	ip -n "$scan" link set s0 up
	ip -n "$far" link set f0 up
	ip -n "$scan" addr add "$SCAN4/30" dev s0
	ip -n "$scan" -6 addr add "$SCAN6/64" dev s0 nodad
	ip -n "$far" addr add "$SPEED_FAR4/30" dev f0
	ip -n "$far" -6 addr add "$SPEED_FAR6/64" dev f0 nodad
	ip -n "$scan" route add "$TARGET4" via "$SPEED_FAR4"
	ip -n "$scan" -6 route add "$TARGET6" via "$SPEED_FAR6"

	# XDP_TX on f0 hands frames straight to s0's receive queue (veth_xdp_xmit),
	# which exists only while s0 runs NAPI: when s0 has an XDP program of its
	# own, or GRO on (Linux 5.13+). Without either the kernel drops them
	# (counted as s0's rx drops / f0's tx drops), so a peer that uses the
	# kernel stack (raw sockets, zmap, ping) would see nothing. veth may report
	# GRO as on while NAPI is off, so it is switched off and on.
	nsx "$scan" ethtool -K s0 gro off
	nsx "$scan" ethtool -K s0 gro on

	need_ping
	wait_ready "$scan" s0
	wait_ready "$far" f0

	# self test with a responder without loss: live hosts answer, dead ones do not
	start_responder "$id" 0
	if live=$(speed_live); then
		ping_ok "$scan" "198.19.$((live >> 8)).$((live & 255))" 4
		ping_ok "$scan" "$(printf '2001:db8:1::%x' "$live")" 6
	fi
	if dead=$(speed_dead); then
		ping_dead "$scan" "198.19.$((dead >> 8)).$((dead & 255))" 4 &
		local p4=$!
		ping_dead "$scan" "$(printf '2001:db8:1::%x' "$dead")" 6 &
		local p6=$!
		wait "$p4"
		wait "$p6"
	fi
	# the bed's responder: its counters start at zero
	stop_pid "$STATE_DIR/$id.responder.pid"
	start_responder "$id" "$LOSS_PPM"
}

# bed_up ID (uses LOSS DEAD_MOD DEAD_REM, or SPEED LOSS_PPM). Runs in the current
# shell; on error the EXIT trap installed by the caller tears the bed down.
bed_up() {
	if ((SPEED)); then
		bed_up_speed "$1"
		return
	fi
	local id=$1 scan rtr far live
	scan=$(ns_scan "$id")
	rtr=$(ns_rtr "$id")
	far=$(ns_far "$id")
	check_ns "$scan"
	check_ns "$rtr"
	check_ns "$far"

	bed_down "$id" # stale bed of a killed run

	ip netns add "$scan"
	ip netns add "$rtr"
	ip netns add "$far"

	mkdir -p "$STATE_DIR"
	printf 'SPEED=0\nLOSS=%d\nDEAD_MOD=%d\nDEAD_REM=%d\nQUEUES=%d\nFAR_QUEUES=%d\nCOUNT_REPLIES=%d\n' \
		"$LOSS" "$DEAD_MOD" "$DEAD_REM" "$QUEUES" "$FAR_QUEUES" "$COUNT_REPLIES" >"$STATE_DIR/$id.env"

	local ns
	for ns in "$scan" "$rtr" "$far"; do
		sysctl_common "$ns"
		ip -n "$ns" link set lo up
	done

	# veth pairs are created directly inside the namespaces.
	ip link add s0 netns "$scan" $(queue_opts "$QUEUES") type veth \
		peer name r0 netns "$rtr" $(queue_opts "$QUEUES")
	ip link add r1 netns "$rtr" $(queue_opts "$FAR_QUEUES") type veth \
		peer name f0 netns "$far" $(queue_opts "$FAR_QUEUES")

	# Links go up first: the kernel's link watcher activates them
	# asynchronously while the rest is configured (see wait_ready).
	ip -n "$scan" link set s0 up
	ip -n "$rtr" link set r0 up
	ip -n "$rtr" link set r1 up
	ip -n "$far" link set f0 up

	ip -n "$scan" addr add "$SCAN4/30" dev s0
	ip -n "$scan" -6 addr add "$SCAN6/64" dev s0 nodad
	ip -n "$rtr" addr add "$RTR4_A/30" dev r0
	ip -n "$rtr" -6 addr add "$RTR6_A/64" dev r0 nodad
	ip -n "$rtr" addr add "$RTR4_B/30" dev r1
	ip -n "$rtr" -6 addr add "$RTR6_B/64" dev r1 nodad
	ip -n "$far" addr add "$FAR4/30" dev f0
	ip -n "$far" -6 addr add "$FAR6/64" dev f0 nodad

	# scan: only the target prefixes, no default route.
	ip -n "$scan" route add "$TARGET4" via "$RTR4_A"
	ip -n "$scan" -6 route add "$TARGET6" via "$RTR6_A"

	# rtr: forwarding, routes to the targets.
	nsx "$rtr" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
	ip -n "$rtr" route add "$TARGET4" via "$FAR4"
	ip -n "$rtr" -6 route add "$TARGET6" via "$FAR6"

	# far: every target address is local; routes back to scan.
	ip -n "$far" route add local "$TARGET4" dev lo
	ip -n "$far" -6 route add local "$TARGET6" dev lo
	ip -n "$far" route add 198.18.0.0/24 via "$RTR4_B"
	ip -n "$far" -6 route add 2001:db8:0:1::/64 via "$RTR6_B"
	nsx "$far" sysctl -qw net.ipv4.icmp_echo_ignore_broadcasts=0 net.ipv4.icmp_echo_ignore_all=0
	nsx "$far" sysctl -qew net.ipv6.icmp.echo_ignore_all=0 >/dev/null

	sysctl_no_ratelimit "$rtr"
	sysctl_no_ratelimit "$far"

	nft_rtr | nsx "$rtr" nft -f -

	# self test 1: the forwarding path, before the far end's rules exist
	need_ping
	wait_ready "$scan" s0
	wait_ready "$rtr" r0
	wait_ready "$rtr" r1
	wait_ready "$far" f0
	ping_ok "$scan" 198.19.0.1 4
	ping_ok "$scan" 2001:db8:1::1 6

	nft_far | nsx "$far" nft -f -

	# self test 2: a live host through the far rules (loss is still off, so
	# this is deterministic); skipped when every host is dead
	if live=$(first_live); then
		ping_ok "$scan" "198.19.$((live >> 8)).$((live & 255))" 4
		ping_ok "$scan" "$(printf '2001:db8:1::%x' "$live")" 6
	fi

	if ((LOSS >= 100)); then
		nsx "$far" nft add rule inet asdic_bed loss counter name lossdrop drop
	elif ((LOSS > 0)); then
		nsx "$far" nft add rule inet asdic_bed loss numgen random mod 100 lt "$LOSS" counter name lossdrop drop
	fi
	if ((COUNT_REPLIES)); then
		nsx "$rtr" nft add rule inet asdic_bed forward \
			iifname r1 oifname r0 icmp type echo-reply ip saddr @replies4
	fi
	nsx "$rtr" nft reset counters table inet asdic_bed >/dev/null
	nsx "$far" nft reset counters table inet asdic_bed >/dev/null
}

cmd_up() {
	parse_up_opts "$@"
	local id=$UP_ID
	((${#UP_REST[@]} == 0)) || die "up: unexpected arguments after --"
	need_root
	need_tools
	_UP_ID=$id
	trap _up_fail EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	bed_up "$id"
	trap - EXIT INT TERM
	_UP_ID=""
	printf 'bed %s up\n' "$id"
}

# -------------------------------------------------------------------- truth

# read_counters NS -> "name packets" lines
read_counters() {
	nsx "$1" nft list counters table inet asdic_bed 2>/dev/null | awk '
		$1 == "counter" { name = $2 }
		$1 == "packets" && name != "" { print name, $2; name = "" }'
}

# speed_dead_count -> dead host indexes in 0..65535 (no rejected block)
speed_dead_count() {
	awk -v m="$DEAD_MOD" -v r="$DEAD_REM" 'BEGIN {
		n = 0
		if (m > 0) for (i = 0; i < 65536; i++) if (i % m == r) n++
		print n
	}'
}

# mtime_ns FILE -> modification time in ns since the epoch (0 if missing)
mtime_ns() {
	local t
	t=$(stat -c %.9Y "$1" 2>/dev/null) || {
		echo 0
		return
	}
	echo "${t/./}"
}

truth_speed() {
	local id=$1 scan far f t0 i mac line
	scan=$(ns_scan "$id")
	far=$(ns_far "$id")
	ns_exists "$far" || die "bed '$id' is not up"
	f="$STATE_DIR/$id.responder.json"
	# The responder rewrites its counters every 50 ms: wait (<= 1 s) for a
	# write newer than this request, so that they include what was sent before.
	t0=$(date +%s%N)
	for ((i = 0; i < 100; i++)); do
		(($(mtime_ns "$f") > t0)) && break
		sleep 0.01
	done
	(($(mtime_ns "$f") > t0)) || die "the responder's counters ($f) were not updated within 1 s; is asdic-responder running? (see $STATE_DIR/$id.responder.log)"
	line=$(<"$f")
	declare -A c=([seen4]=0 [seen6]=0 [replied]=0 [deaddrop]=0 [lossdrop]=0 [passed]=0)
	local k v
	for k in "${!c[@]}"; do
		v=$(grep -o "\"$k\":[0-9]*" <<<"$line" | head -1 | cut -d: -f2)
		[[ $v =~ ^[0-9]+$ ]] && c[$k]=$v
	done
	mac=$(ip -n "$far" -o link show dev f0 | awk '{ for (i = 1; i < NF; i++) if ($i == "link/ether") print $(i + 1) }')
	local dc
	dc=$(speed_dead_count)
	printf '{"id":"%s","scan_ns":"%s","far_ns":"%s","speed":true,' "$id" "$scan" "$far"
	printf '"src4":"%s","src6":"%s","prefix4":"%s","prefix6":"%s",' "$SCAN4" "$SCAN6" "$TARGET4" "$TARGET6"
	printf '"dead_mod":%d,"dead_rem":%d,"dead4_count":%d,"dead6_count":%d,' "$DEAD_MOD" "$DEAD_REM" "$dc" "$dc"
	printf '"loss_ppm":%d,"gateway_mac":"%s","queues":%d,' "$LOSS_PPM" "$mac" "$QUEUES"
	printf '"counters":{"seen4":%d,"seen6":%d,"replied":%d,"deaddrop":%d,"lossdrop":%d,"passed":%d}}\n' \
		"${c[seen4]}" "${c[seen6]}" "${c[replied]}" "${c[deaddrop]}" "${c[lossdrop]}" "${c[passed]}"
}

cmd_truth() {
	local id=${1:-demo}
	check_id "$id"
	need_root
	load_env "$id"
	if ((SPEED)); then
		truth_speed "$id"
		return
	fi
	local scan rtr far
	scan=$(ns_scan "$id")
	rtr=$(ns_rtr "$id")
	far=$(ns_far "$id")
	if ! ns_exists "$far" || ! ns_exists "$rtr"; then
		die "bed '$id' is not up"
	fi
	declare -A c=([lossdrop]=0 [seen4]=0 [seen6]=0 [replied]=0 [deaddrop]=0 [sent4]=0 [sent6]=0 [rejected]=0)
	local name val
	while read -r name val; do
		[[ $val =~ ^[0-9]+$ ]] && c[$name]=$val
	done < <(read_counters "$far"; read_counters "$rtr")
	local dc
	dc=$(dead_count)
	printf '{"id":"%s","scan_ns":"%s","rtr_ns":"%s","far_ns":"%s",' "$id" "$scan" "$rtr" "$far"
	printf '"src4":"%s","src6":"%s","prefix4":"%s","prefix6":"%s",' "$SCAN4" "$SCAN6" "$TARGET4" "$TARGET6"
	printf '"dead_mod":%d,"dead_rem":%d,"dead4_count":%d,"dead6_count":%d,' "$DEAD_MOD" "$DEAD_REM" "$dc" "$dc"
	printf '"reject4":{"prefix":"%s","type":3,"code":13,"responder":"%s"},' "$REJECT4" "$RTR4_A"
	printf '"reject6":{"prefix":"%s","type":1,"code":1,"responder":"%s"},' "$REJECT6" "$RTR6_A"
	printf '"loss_pct":%d,"queues":%d,"far_queues":%d,"count_replies":%s,' "$LOSS" "$QUEUES" "$FAR_QUEUES" "$( ((COUNT_REPLIES)) && echo true || echo false)"
	printf '"counters":{"lossdrop":%d,"seen4":%d,"seen6":%d,"replied":%d,"deaddrop":%d,"sent4":%d,"sent6":%d,"rejected":%d}}\n' \
		"${c[lossdrop]}" "${c[seen4]}" "${c[seen6]}" "${c[replied]}" "${c[deaddrop]}" "${c[sent4]}" "${c[sent6]}" "${c[rejected]}"
}

# --------------------------------------------------------------- exec / run

# split_cmd ARGS...: sets ID and CMD from "[ID] -- CMD..."
split_cmd() {
	ID=demo
	if [[ $# -gt 0 && $1 != -* ]]; then
		check_id "$1"
		ID=$1
		shift
	fi
	[[ $# -gt 0 && $1 == -- ]] || die "expected '--' before the command"
	shift
	(($# > 0)) || die "no command given"
	CMD=("$@")
}

cmd_exec() {
	local which=$1
	shift
	split_cmd "$@"
	need_root
	local ns
	if [[ $which == far ]]; then ns=$(ns_far "$ID"); else ns=$(ns_scan "$ID"); fi
	check_ns "$ns"
	ns_exists "$ns" || die "bed '$ID' is not up (no namespace $ns)"
	exec ip netns exec "$ns" "${CMD[@]}"
}

_RUN_ID="" _RUN_CHILD=""
_run_exit() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $_RUN_CHILD ]] && kill -0 "$_RUN_CHILD" 2>/dev/null; then
		kill -TERM "$_RUN_CHILD" 2>/dev/null || true
		local i
		for ((i = 0; i < 50; i++)); do
			kill -0 "$_RUN_CHILD" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$_RUN_CHILD" 2>/dev/null || true
	fi
	[[ -n $_RUN_ID ]] && bed_down "$_RUN_ID"
	exit "$rc"
}

cmd_run() {
	parse_up_opts "$@"
	local id=$UP_ID
	((${#UP_REST[@]} > 0)) || die "run: expected '-- CMD...'"
	need_root
	need_tools
	_RUN_ID=$id
	trap _run_exit EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	bed_up "$id"
	printf 'bed %s up\n' "$id" >&2
	# Background + wait so that INT/TERM are handled at once; stdin is kept.
	ip netns exec "$(ns_scan "$id")" "${UP_REST[@]}" <&0 &
	_RUN_CHILD=$!
	local rc=0
	wait "$_RUN_CHILD" || rc=$?
	_RUN_CHILD=""
	exit "$rc"
}

# ------------------------------------------------------------------ cleanup

cmd_cleanup() {
	need_root
	local ns removed=0 f
	for f in "$STATE_DIR"/*.responder.pid; do
		[[ -e $f ]] && stop_pid "$f"
	done
	while read -r ns _; do
		[[ $ns == "${PREFIX}"-* ]] || continue
		kill_ns_responders "$ns"
		ns_del_any "$ns"
		printf 'removed %s\n' "$ns"
		removed=$((removed + 1))
	done < <(ip netns list 2>/dev/null)
	rm -rf "$STATE_DIR"
	printf 'cleanup: %d namespace(s) removed\n' "$removed"
}

# --------------------------------------------------------------------- main

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
		local id=${1:-demo}
		check_id "$id"
		(($# <= 1)) || die "down: too many arguments"
		need_root
		bed_down "$id"
		printf 'bed %s down\n' "$id"
		;;
	truth) cmd_truth "$@" ;;
	exec) cmd_exec scan "$@" ;;
	exec-far) cmd_exec far "$@" ;;
	run) cmd_run "$@" ;;
	cleanup) cmd_cleanup ;;
	*)
		usage >&2
		exit 2
		;;
	esac
}

main "$@"
