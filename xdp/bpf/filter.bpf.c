// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * asdic_filter: hands asdic's echo replies and the ICMP errors about asdic's
 * probes to AF_XDP sockets; every other frame goes on to the kernel.
 *
 * A frame is ours when it passes the closed list of classify() (untagged, to
 * our MAC or a group address, a sound IP header to the run's source address,
 * not a fragment, ICMPv6 within MAX_EXT extension headers) and it is
 *   - an ICMP echo reply (type 0) or ICMPv6 echo reply (129) whose identifier
 *     is in [ident_base, ident_base + ident_span) (wrapping at 2^16), with at
 *     least the 32-byte stamp of payload, whose first 4 bytes (big-endian) are
 *     the session id;
 *   - an ICMP error (3, 4, 5, 11, 12) or ICMPv6 error (1, 2, 3, 4) quoting an
 *     echo request (8 / 128) with such an identifier, session and whole stamp;
 * and its family is enabled in asdic_cfg. With FLAG_STAMP, ours carries its receive
 * stamp in front of the frame: 16 bytes, ASDIC_STAMP_MAGIC then bpf_ktime_get_ns() taken
 * as the program began (CLOCK_MONOTONIC), both host order. Ours goes to asdic_xsks at key
 * rx_queue_index * 2 + (IPv6 ? 1 : 0); when no socket sits there it is
 * counted as redirect_failed and dropped or passed as configured. Everything
 * else goes to the kernel, counted by reason: other programs keep their ICMP
 * (`ping -s 0`), and the engine reads the kernel's copy through a raw socket
 * beside (fragments reassembled, errors quoting only 8 bytes of our probes).
 *
 * License: "Dual BSD/GPL" is GPL-compatible for the kernel (any helper may be
 * used, now or later) while the source stays under a permissive license, as
 * the rest of asdic (MIT OR Apache-2.0). The helpers used here do not need GPL.
 */
#include "common.h"

/* asdic_cfg's one value; xdp/src/filter.rs encodes it (little-endian host, 64 bytes). */
struct asdic_filter_cfg {
	__u32 session;
	__u16 ident_base;
	__u16 pad;
	__u32 ident_span; /* 1..=65536 */
	__u32 families;   /* bit 0: IPv4, bit 1: IPv6, bit 2: drop ours without a socket,
			   * bit 3: check the stamp's MAC */
	__u8 mac[6];      /* the interface's MAC */
	__u16 pad2;
	__be32 src4;      /* the run's IPv4 source (network order) */
	__u8 src6[16];    /* the run's IPv6 source */
	__u32 pad3;
	__u64 k0;         /* the run's SipHash-1-3 key (crates/wire Key) */
	__u64 k1;
};

#define FAMILY_V4 1
#define FAMILY_V6 2
/* Ours without a socket: dropped (the engine reads the kernel's ICMP beside its sockets, and
 * would see it there behind the count's back) rather than passed to the kernel. */
#define FLAG_DROP_UNSERVED 4
/* A frame with this run's session whose stamp's MAC fails is dropped here (counted). */
#define FLAG_CHECK_MAC 8
/* Ours carries its receive stamp in front (struct asdic_rx_stamp). */
#define FLAG_STAMP 16

/* What FLAG_STAMP puts in front of a frame of ours (xdp/src/filter.rs RX_STAMP_LEN). */
struct asdic_rx_stamp {
	__u64 magic;
	__u64 ns;
};
#define ASDIC_STAMP_MAGIC 0xa5d1c57a3f5e1c01ULL

/* Extension headers walked to the ICMPv6 header, at most. */
#define MAX_EXT 6
/* Extension header next-header values (RFC 8200). */
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST 60

/*
 * asdic_stats slots (xdp/src/filter.rs reads them in this order, and names them). Every
 * frame is counted in exactly one.
 */
enum {
	STAT_REDIRECTED = 0,     /* ours, on an AF_XDP socket */
	STAT_REDIRECT_FAILED = 1, /* ours, no socket for its queue and family */
	STAT_PASS_NOT_IP = 2,    /* not IPv4/IPv6, or a family the run does not use (ARP, ...) */
	STAT_PASS_VLAN = 3,      /* an 802.1Q / 802.1ad tag in the frame */
	STAT_PASS_MAC = 4,       /* unicast to another MAC */
	STAT_PASS_BAD_HEADER = 5, /* IP version, IHL, header checksum, lengths, cut frame */
	STAT_PASS_DST = 6,       /* IP destination not the run's source */
	STAT_PASS_FRAGMENT = 7,  /* any fragment: the kernel reassembles, the raw socket reads */
	STAT_PASS_EXT_CHAIN = 8, /* more than MAX_EXT extension headers */
	STAT_PASS_NOT_ICMP = 9,  /* another protocol */
	STAT_PASS_NOT_OURS = 10, /* ICMP that is not a reply or error of this run */
	STAT_DROP_FORGED = 11,   /* this run's session, a MAC that fails: dropped */
	STAT_COUNT = 12,
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 128);
	__type(key, __u32);
	__type(value, __u32);
} asdic_xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct asdic_filter_cfg);
} asdic_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} asdic_stats SEC(".maps");

/* asdic's mark (xdp/src/attach.rs): how a leftover of ours is told from a namesake. */
ASDIC_MARKER_MAP;

/* (u16)(id - ident_base) < ident_span: a range that may wrap past 0xffff. */
static __always_inline int ident_ok(const struct asdic_filter_cfg *cfg, __be16 id)
{
	__u16 off = (__u16)(bpf_ntohs(id) - cfg->ident_base);

	return (__u32)off < cfg->ident_span;
}

/* asdic's payload stamp (crates/wire, payload::LEN): session, probe number, cookie, send
 * time and MAC. Every probe carries it whole. */
#define ASDIC_STAMP_LEN 32

/* What a payload says: not ours, ours, or this run's session under a MAC that fails. */
#define NOT_OURS 0
#define OURS 1
#define FORGED 2

#define ROTL64(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                  \
	do {                                                                      \
		v0 += v1; v1 = ROTL64(v1, 13); v1 ^= v0; v0 = ROTL64(v0, 32);     \
		v2 += v3; v3 = ROTL64(v3, 16); v3 ^= v2;                          \
		v0 += v3; v3 = ROTL64(v3, 21); v3 ^= v0;                          \
		v2 += v1; v1 = ROTL64(v1, 17); v1 ^= v2; v2 = ROTL64(v2, 32);     \
	} while (0)

/* The 8 bytes at p (packet memory, any alignment: the verifier allows unaligned packet reads
 * where the architecture does them, as every header field past the Ethernet header is) as a
 * little-endian word, SipHash's reading of a message. */
static __always_inline __u64 ld64le(const void *p)
{
	__u64 w = *(const __u64 *)p;

#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	w = __builtin_bswap64(w);
#endif
	return w;
}

static __always_inline __u32 ld32le(const void *p)
{
	__u32 w = *(const __u32 *)p;

#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	w = __builtin_bswap32(w);
#endif
	return w;
}

/* A target address (16 bytes, IPv4 mapped) as SipHash's first two message words. */
struct target_words {
	__u64 w0;
	__u64 w1;
};

/* The IPv4 address `a` (network order, as loaded from the packet) mapped: 0 x 10, ff ff, a. */
static __always_inline struct target_words mapped4(__be32 a)
{
	struct target_words t;
	__u32 raw = a;

#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	raw = __builtin_bswap32(raw);
#endif
	t.w0 = 0;
	t.w1 = 0xffff0000ULL | ((__u64)raw << 32);
	return t;
}

/* The IPv6 address at p (in the packet). */
static __always_inline struct target_words words6(const void *p)
{
	struct target_words t = { .w0 = ld64le(p), .w1 = ld64le(p + 8) };

	return t;
}

/*
 * SipHash-1-3 under (k0, k1) of crates/wire's Key::mac message, 44 bytes: the target (two
 * words), then the ICMP identifier, sequence and the first 24 stamp bytes, which lie in the
 * packet as they lie in the message: 24 contiguous bytes from the identifier on (icmp + 4),
 * read as three words and a 4-byte tail. Six compressions and three finalisation rounds.
 */
static __always_inline __u64 sip13_44(__u64 k0, __u64 k1, struct target_words t,
				      const void *icmp)
{
	__u64 v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
	__u64 v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
	__u64 w[5] = { t.w0, t.w1, ld64le(icmp + 4), ld64le(icmp + 12), ld64le(icmp + 20) };

#pragma unroll
	for (int i = 0; i < 5; i++) {
		v3 ^= w[i];
		SIPROUND;
		v0 ^= w[i];
	}
	__u64 last = ((__u64)44 << 56) | ld32le(icmp + 28);

	v3 ^= last;
	SIPROUND;
	v0 ^= last;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/*
 * Ours only with the whole stamp there (behind the 8-byte ICMP header at `icmp`), its first
 * 4 bytes the session id, and (when configured) its MAC verifying over `target`, identifier
 * and sequence (as on the wire) and the stamp: a frame with our session and a MAC that fails
 * is FORGED, dropped here, so that a flood of them never fills the AF_XDP ring. `avail`:
 * the payload bytes the IP header claims and the frame holds. A shorter payload (another
 * program's `ping -s 0`) or a quote without the stamp (an error quoting RFC 792's 8 bytes)
 * goes to the kernel: other programs get theirs, and the engine's raw socket beside reads
 * the kernel's copy, so a short quote of one of our probes is still matched.
 */
static __always_inline int stamp_verdict(const struct asdic_filter_cfg *cfg,
					 struct target_words target, void *icmp, void *data_end,
					 long avail)
{
	__u8 *b = icmp + ASDIC_ICMP_HDR_LEN;

	if (avail < ASDIC_STAMP_LEN)
		return NOT_OURS;
	if ((void *)(b + ASDIC_STAMP_LEN) > data_end)
		return NOT_OURS;
	if (bpf_ntohl(*(__be32 *)b) != cfg->session)
		return NOT_OURS;
	if (!(cfg->families & FLAG_CHECK_MAC))
		return OURS;
	__u64 want = sip13_44(cfg->k0, cfg->k1, target, icmp);
	__u64 got = bpf_be64_to_cpu(*(__u64 *)(b + 24));

	return got == want ? OURS : FORGED;
}

/* The counter slot of a payload's verdict. */
static __always_inline int verdict_slot(int v)
{
	return v == OURS ? STAT_REDIRECTED : v == FORGED ? STAT_DROP_FORGED : STAT_PASS_NOT_OURS;
}

/*
 * The IPv4 datagram quoted by an ICMP error, `len` bytes of the error message
 * after its 8-byte header: an echo request with our identifier (and session)?
 */
static __always_inline int quoted_v4(const struct asdic_filter_cfg *cfg, void *q, void *data_end,
				     long len)
{
	struct iphdr *ip = q;

	if ((void *)(ip + 1) > data_end)
		return 0;
	if (ip->version != 4 || ip->protocol != IPPROTO_ICMP)
		return 0;
	if (ip->frag_off & bpf_htons(ASDIC_IP_OFFSET))
		return 0;
	__u32 ihl = ip->ihl * 4;

	if (ihl < sizeof(*ip))
		return 0;
	struct asdic_icmphdr *icmp = q + ihl;

	if ((void *)icmp + ASDIC_ICMP_HDR_LEN > data_end)
		return 0;
	if (icmp->type != ASDIC_ICMP_ECHO || !ident_ok(cfg, icmp->id))
		return 0;
	long claimed = (long)bpf_ntohs(ip->tot_len) - ihl - ASDIC_ICMP_HDR_LEN;
	long present = len - ihl - ASDIC_ICMP_HDR_LEN;

	return stamp_verdict(cfg, mapped4(ip->daddr), icmp, data_end,
			     claimed < present ? claimed : present);
}

/* The IPv6 packet quoted by an ICMPv6 error (next header ICMPv6 only). */
static __always_inline int quoted_v6(const struct asdic_filter_cfg *cfg, void *q, void *data_end,
				     long len)
{
	struct ipv6hdr *ip6 = q;

	if ((void *)(ip6 + 1) > data_end)
		return 0;
	if (ip6->version != 6 || ip6->nexthdr != IPPROTO_ICMPV6)
		return 0;
	struct icmp6hdr *icmp = (void *)(ip6 + 1);

	if ((void *)icmp + ASDIC_ICMP_HDR_LEN > data_end)
		return 0;
	if (icmp->icmp6_type != ICMPV6_ECHO_REQUEST ||
	    !ident_ok(cfg, icmp->icmp6_dataun.u_echo.identifier))
		return 0;
	long claimed = (long)bpf_ntohs(ip6->payload_len) - ASDIC_ICMP_HDR_LEN;
	long present = len - (long)sizeof(*ip6) - ASDIC_ICMP_HDR_LEN;

	return stamp_verdict(cfg, words6(ip6->daddr.in6_u.u6_addr8), icmp, data_end,
			     claimed < present ? claimed : present);
}

/* The ICMP message at `icmp`, `len` bytes by the IP header: ours? */
static __always_inline int icmp_ours_v4(const struct asdic_filter_cfg *cfg, struct asdic_icmphdr *icmp,
					void *data_end, long len, __be32 saddr)
{
	if ((void *)icmp + ASDIC_ICMP_HDR_LEN > data_end || len < ASDIC_ICMP_HDR_LEN)
		return 0;
	void *rest = (void *)icmp + ASDIC_ICMP_HDR_LEN;

	switch (icmp->type) {
	case ASDIC_ICMP_ECHOREPLY:
		if (!ident_ok(cfg, icmp->id))
			return NOT_OURS;
		return stamp_verdict(cfg, mapped4(saddr), icmp, data_end, len - ASDIC_ICMP_HDR_LEN);
	case ASDIC_ICMP_DEST_UNREACH:
	case ASDIC_ICMP_SOURCE_QUENCH:
	case ASDIC_ICMP_REDIRECT:
	case ASDIC_ICMP_TIME_EXCEEDED:
	case ASDIC_ICMP_PARAMETERPROB:
		return quoted_v4(cfg, rest, data_end, len - ASDIC_ICMP_HDR_LEN);
	}
	return 0;
}

/* One 16-bit word of the IPv4 header into the sum, when the header has it (constant offsets:
 * each access checked against data_end right before, as the verifier needs). */
#define CSUM_WORD(i)                                            \
	do {                                                    \
		if ((i) * 2 < ihl) {                            \
			if (l3 + (i) * 2 + 2 > data_end)        \
				return 0;                       \
			sum += ((__u16 *)l3)[(i)];              \
		}                                               \
	} while (0)

/* The IPv4 header checksum over `ihl` bytes (20..60) verifies: at most 30 words. */
static __always_inline int ipv4_csum_ok(void *l3, void *data_end, __u32 ihl)
{
	__u32 sum = 0;

	CSUM_WORD(0); CSUM_WORD(1); CSUM_WORD(2); CSUM_WORD(3); CSUM_WORD(4);
	CSUM_WORD(5); CSUM_WORD(6); CSUM_WORD(7); CSUM_WORD(8); CSUM_WORD(9);
	CSUM_WORD(10); CSUM_WORD(11); CSUM_WORD(12); CSUM_WORD(13); CSUM_WORD(14);
	CSUM_WORD(15); CSUM_WORD(16); CSUM_WORD(17); CSUM_WORD(18); CSUM_WORD(19);
	CSUM_WORD(20); CSUM_WORD(21); CSUM_WORD(22); CSUM_WORD(23); CSUM_WORD(24);
	CSUM_WORD(25); CSUM_WORD(26); CSUM_WORD(27); CSUM_WORD(28); CSUM_WORD(29);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

/* A STAT_* slot for an IPv4 packet at l3. */
static __always_inline int classify_v4(const struct asdic_filter_cfg *cfg, void *l3, void *data_end)
{
	struct iphdr *ip = l3;

	if ((void *)(ip + 1) > data_end)
		return STAT_PASS_BAD_HEADER;
	__u32 ihl = ip->ihl * 4;
	__u32 tot = bpf_ntohs(ip->tot_len);

	if (ip->version != 4 || ihl < sizeof(*ip) || tot < ihl)
		return STAT_PASS_BAD_HEADER;
	if (l3 + tot > data_end)
		return STAT_PASS_BAD_HEADER;
	if (!ipv4_csum_ok(l3, data_end, ihl))
		return STAT_PASS_BAD_HEADER;
	if (ip->daddr != cfg->src4)
		return STAT_PASS_DST;
	if (ip->protocol != IPPROTO_ICMP)
		return STAT_PASS_NOT_ICMP;
	/* Every fragment, the first one too: the kernel reassembles them. */
	if (ip->frag_off & bpf_htons(ASDIC_IP_MF | ASDIC_IP_OFFSET))
		return STAT_PASS_FRAGMENT;
	if (ihl > 60)
		return STAT_PASS_BAD_HEADER;
	struct asdic_icmphdr *icmp = l3 + ihl;

	return verdict_slot(icmp_ours_v4(cfg, icmp, data_end, (long)tot - ihl, ip->saddr));
}

static __always_inline int icmp_ours_v6(const struct asdic_filter_cfg *cfg, struct icmp6hdr *icmp,
					void *data_end, long len, struct target_words saddr)
{
	if ((void *)icmp + ASDIC_ICMP_HDR_LEN > data_end || len < ASDIC_ICMP_HDR_LEN)
		return 0;
	void *rest = (void *)icmp + ASDIC_ICMP_HDR_LEN;

	switch (icmp->icmp6_type) {
	case ICMPV6_ECHO_REPLY:
		if (!ident_ok(cfg, icmp->icmp6_dataun.u_echo.identifier))
			return NOT_OURS;
		return stamp_verdict(cfg, saddr, icmp, data_end, len - ASDIC_ICMP_HDR_LEN);
	case ICMPV6_DEST_UNREACH:
	case ICMPV6_PKT_TOOBIG:
	case ICMPV6_TIME_EXCEED:
	case ICMPV6_PARAMPROB:
		return quoted_v6(cfg, rest, data_end, len - ASDIC_ICMP_HDR_LEN);
	}
	return 0;
}

static __always_inline int same6(const __u8 *a, const __u8 *b)
{
	int diff = 0;

#pragma unroll
	for (int i = 0; i < 16; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

/* A STAT_* slot for an IPv6 packet at l3, its extension headers walked. */
static __always_inline int classify_v6(const struct asdic_filter_cfg *cfg, void *l3, void *data_end)
{
	struct ipv6hdr *ip6 = l3;

	if ((void *)(ip6 + 1) > data_end)
		return STAT_PASS_BAD_HEADER;
	__u32 end = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);

	if (ip6->version != 6 || l3 + end > data_end)
		return STAT_PASS_BAD_HEADER;
	if (!same6(ip6->daddr.in6_u.u6_addr8, cfg->src6))
		return STAT_PASS_DST;
	__u8 next = ip6->nexthdr;
	__u32 off = sizeof(*ip6);

#pragma unroll
	for (int i = 0; i < MAX_EXT; i++) {
		if (next == IPPROTO_ICMPV6)
			break;
		if (next == NEXTHDR_FRAGMENT)
			return STAT_PASS_FRAGMENT;
		if (next != NEXTHDR_HOP && next != NEXTHDR_ROUTING && next != NEXTHDR_DEST)
			return STAT_PASS_NOT_ICMP;
		/* Hop-by-hop options only right after the fixed header (RFC 8200 4.3). */
		if (next == NEXTHDR_HOP && i != 0)
			return STAT_PASS_BAD_HEADER;
		if (off > 4096)
			return STAT_PASS_BAD_HEADER;
		__u8 *h = l3 + off;

		if ((void *)(h + 2) > data_end)
			return STAT_PASS_BAD_HEADER;
		next = h[0];
		off += ((__u32)h[1] + 1) * 8;
		if (off > end)
			return STAT_PASS_BAD_HEADER;
	}
	if (next != IPPROTO_ICMPV6)
		return (next == NEXTHDR_HOP || next == NEXTHDR_ROUTING || next == NEXTHDR_DEST ||
			next == NEXTHDR_FRAGMENT)
			       ? STAT_PASS_EXT_CHAIN
			       : STAT_PASS_NOT_ICMP;
	if (off > 4096)
		return STAT_PASS_BAD_HEADER;
	struct icmp6hdr *icmp = l3 + off;

	return verdict_slot(icmp_ours_v6(cfg, icmp, data_end, (long)end - off,
					 words6(ip6->saddr.in6_u.u6_addr8)));
}

/* Whether the frame's destination is the interface, or a group address (broadcast, multicast). */
static __always_inline int mac_ok(const struct asdic_filter_cfg *cfg, const struct ethhdr *eth)
{
	if (eth->h_dest[0] & 1)
		return 1;
	int diff = 0;

#pragma unroll
	for (int i = 0; i < 6; i++)
		diff |= eth->h_dest[i] ^ cfg->mac[i];
	return diff == 0;
}

/* A STAT_* slot for the frame: STAT_REDIRECTED when it is ours. */
static __always_inline int classify(const struct asdic_filter_cfg *cfg, void *data, void *data_end,
				    int *v6)
{
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return STAT_PASS_BAD_HEADER;
	__u16 proto = bpf_ntohs(eth->h_proto);

	/* asdic sends untagged: a tagged frame is never ours (tags stripped by VLAN
	 * acceleration never show here). */
	if (proto == ETH_P_8021Q || proto == ETH_P_8021AD)
		return STAT_PASS_VLAN;
	if (!mac_ok(cfg, eth))
		return STAT_PASS_MAC;
	if (proto == ETH_P_IP && (cfg->families & FAMILY_V4))
		return classify_v4(cfg, eth + 1, data_end);
	if (proto == ETH_P_IPV6 && (cfg->families & FAMILY_V6)) {
		*v6 = 1;
		return classify_v6(cfg, eth + 1, data_end);
	}
	return STAT_PASS_NOT_IP;
}

/* Puts the receive stamp in front of the frame; whether it did (no headroom: the engine
 * counts the frame as unstamped). */
static __always_inline int prepend_stamp(struct xdp_md *ctx, __u64 ns)
{
	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct asdic_rx_stamp)))
		return 0;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct asdic_rx_stamp *st = data;

	if ((void *)(st + 1) > data_end)
		return 0;
	st->magic = ASDIC_STAMP_MAGIC;
	st->ns = ns;
	return 1;
}

SEC("xdp")
int asdic_filter(struct xdp_md *ctx)
{
	/* The receive stamp: as early as a program can take it. */
	__u64 now = bpf_ktime_get_ns();
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	int v6 = 0;

	struct asdic_filter_cfg *cfg = bpf_map_lookup_elem(&asdic_cfg, &zero);

	if (!cfg || !bpf_map_lookup_elem(&asdic_marker, &zero))
		return XDP_PASS;
	int verdict = classify(cfg, data, data_end, &v6);

	if (verdict == STAT_DROP_FORGED) {
		ASDIC_COUNT(asdic_stats, verdict);
		return XDP_DROP;
	}
	if (verdict != STAT_REDIRECTED) {
		ASDIC_COUNT(asdic_stats, verdict);
		return XDP_PASS;
	}

	__u32 key = ctx->rx_queue_index * 2 + v6;

	/* No socket for this queue and family: counted, and dropped or passed as configured. */
	int unserved = (cfg->families & FLAG_DROP_UNSERVED) ? XDP_DROP : XDP_PASS;

	if (!bpf_map_lookup_elem(&asdic_xsks, &key)) {
		ASDIC_COUNT(asdic_stats, STAT_REDIRECT_FAILED);
		return unserved;
	}
	int stamped = (cfg->families & FLAG_STAMP) && prepend_stamp(ctx, now);
	/* The low bits of flags are the action when the slot emptied meanwhile. */
	long act = bpf_redirect_map(&asdic_xsks, key, unserved);

	if (act != XDP_REDIRECT) {
		/* The kernel gets the frame as it came. */
		if (stamped)
			bpf_xdp_adjust_head(ctx, (int)sizeof(struct asdic_rx_stamp));
		ASDIC_COUNT(asdic_stats, STAT_REDIRECT_FAILED);
		return unserved;
	}
	ASDIC_COUNT(asdic_stats, STAT_REDIRECTED);
	return XDP_REDIRECT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
