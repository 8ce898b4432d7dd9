// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * asdic_filter: hands asdic's echo replies and the ICMP errors about asdic's
 * probes to AF_XDP sockets; every other frame goes on to the kernel.
 *
 * A frame is ours when it is
 *   - an ICMP echo reply (type 0) or ICMPv6 echo reply (129) whose identifier
 *     is in [ident_base, ident_base + ident_span) (wrapping at 2^16) and, when
 *     it carries at least 4 bytes of payload, whose first 4 payload bytes
 *     (big-endian) are the session id;
 *   - an ICMP error (3, 4, 5, 11, 12) or ICMPv6 error (1, 2, 3, 4) quoting an
 *     echo request (8 / 128) with such an identifier (and such a session when
 *     at least 4 bytes of the quoted payload are there);
 * and its family is enabled in asdic_cfg. Ours goes to asdic_xsks at key
 * rx_queue_index * 2 + (IPv6 ? 1 : 0); when no socket sits there it is
 * counted as redirect_failed and passed to the kernel.
 *
 * IPv4: any header length, non-first fragments are not ours. IPv6: only when
 * the next header is ICMPv6 itself (extension headers: not ours).
 *
 * License: "Dual BSD/GPL" is GPL-compatible for the kernel (any helper may be
 * used, now or later) while the source stays under a permissive license, as
 * the rest of asdic (MIT OR Apache-2.0). The helpers used here do not need GPL.
 */
#include "common.h"

/* asdic_cfg's one value; xdp/src/filter.rs encodes it (little-endian host). */
struct asdic_filter_cfg {
	__u32 session;
	__u16 ident_base;
	__u16 pad;
	__u32 ident_span; /* 1..=65536 */
	__u32 families;   /* bit 0: IPv4, bit 1: IPv6 */
};

#define FAMILY_V4 1
#define FAMILY_V6 2

/* asdic_stats slots (xdp/src/filter.rs reads them in this order). */
enum {
	STAT_REDIRECTED = 0,
	STAT_PASSED = 1,
	STAT_REDIRECT_FAILED = 2,
	STAT_COUNT = 3,
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

/* (u16)(id - ident_base) < ident_span: a range that may wrap past 0xffff. */
static __always_inline int ident_ok(const struct asdic_filter_cfg *cfg, __be16 id)
{
	__u16 off = (__u16)(bpf_ntohs(id) - cfg->ident_base);

	return (__u32)off < cfg->ident_span;
}

/*
 * With fewer than 4 payload bytes there is no session to check. Otherwise the
 * first 4 bytes (read bytewise: no alignment assumed) must be the session id;
 * a frame that claims them but ends before them is not ours.
 */
static __always_inline int session_ok(const struct asdic_filter_cfg *cfg, void *payload,
				      void *data_end, long avail)
{
	__u8 *b = payload;

	if (avail < 4)
		return 1;
	if ((void *)(b + 4) > data_end)
		return 0;
	__u32 v = ((__u32)b[0] << 24) | ((__u32)b[1] << 16) | ((__u32)b[2] << 8) | b[3];

	return v == cfg->session;
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

	return session_ok(cfg, (void *)icmp + ASDIC_ICMP_HDR_LEN, data_end,
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

	return session_ok(cfg, (void *)icmp + ASDIC_ICMP_HDR_LEN, data_end,
			  claimed < present ? claimed : present);
}

static __always_inline int ours_v4(const struct asdic_filter_cfg *cfg, void *l3, void *data_end)
{
	struct iphdr *ip = l3;

	if ((void *)(ip + 1) > data_end)
		return 0;
	if (ip->version != 4 || ip->protocol != IPPROTO_ICMP)
		return 0;
	/* A non-first fragment has no ICMP header. */
	if (ip->frag_off & bpf_htons(ASDIC_IP_OFFSET))
		return 0;
	__u32 ihl = ip->ihl * 4;

	if (ihl < sizeof(*ip))
		return 0;
	struct asdic_icmphdr *icmp = l3 + ihl;

	if ((void *)icmp + ASDIC_ICMP_HDR_LEN > data_end)
		return 0;
	/* The ICMP message's length as the IP header tells it (frames may be padded). */
	long len = (long)bpf_ntohs(ip->tot_len) - ihl;

	if (len < ASDIC_ICMP_HDR_LEN)
		return 0;
	void *rest = (void *)icmp + ASDIC_ICMP_HDR_LEN;

	switch (icmp->type) {
	case ASDIC_ICMP_ECHOREPLY:
		return ident_ok(cfg, icmp->id) &&
		       session_ok(cfg, rest, data_end, len - ASDIC_ICMP_HDR_LEN);
	case ASDIC_ICMP_DEST_UNREACH:
	case ASDIC_ICMP_SOURCE_QUENCH:
	case ASDIC_ICMP_REDIRECT:
	case ASDIC_ICMP_TIME_EXCEEDED:
	case ASDIC_ICMP_PARAMETERPROB:
		return quoted_v4(cfg, rest, data_end, len - ASDIC_ICMP_HDR_LEN);
	}
	return 0;
}

static __always_inline int ours_v6(const struct asdic_filter_cfg *cfg, void *l3, void *data_end)
{
	struct ipv6hdr *ip6 = l3;

	if ((void *)(ip6 + 1) > data_end)
		return 0;
	if (ip6->version != 6 || ip6->nexthdr != IPPROTO_ICMPV6)
		return 0;
	struct icmp6hdr *icmp = (void *)(ip6 + 1);

	if ((void *)icmp + ASDIC_ICMP_HDR_LEN > data_end)
		return 0;
	long len = bpf_ntohs(ip6->payload_len);

	if (len < ASDIC_ICMP_HDR_LEN)
		return 0;
	void *rest = (void *)icmp + ASDIC_ICMP_HDR_LEN;

	switch (icmp->icmp6_type) {
	case ICMPV6_ECHO_REPLY:
		return ident_ok(cfg, icmp->icmp6_dataun.u_echo.identifier) &&
		       session_ok(cfg, rest, data_end, len - ASDIC_ICMP_HDR_LEN);
	case ICMPV6_DEST_UNREACH:
	case ICMPV6_PKT_TOOBIG:
	case ICMPV6_TIME_EXCEED:
	case ICMPV6_PARAMPROB:
		return quoted_v6(cfg, rest, data_end, len - ASDIC_ICMP_HDR_LEN);
	}
	return 0;
}

SEC("xdp")
int asdic_filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	void *l3 = data;
	__u32 zero = 0;
	int ours = 0, v6 = 0;

	struct asdic_filter_cfg *cfg = bpf_map_lookup_elem(&asdic_cfg, &zero);

	if (!cfg)
		return XDP_PASS;
	__u16 proto = parse_eth(data, data_end, &l3);

	if (proto == ETH_P_IP && (cfg->families & FAMILY_V4)) {
		ours = ours_v4(cfg, l3, data_end);
	} else if (proto == ETH_P_IPV6 && (cfg->families & FAMILY_V6)) {
		v6 = 1;
		ours = ours_v6(cfg, l3, data_end);
	}
	if (!ours) {
		ASDIC_COUNT(asdic_stats, STAT_PASSED);
		return XDP_PASS;
	}

	__u32 key = ctx->rx_queue_index * 2 + v6;

	/* No socket for this queue and family: the kernel gets it, and we say so. */
	if (!bpf_map_lookup_elem(&asdic_xsks, &key)) {
		ASDIC_COUNT(asdic_stats, STAT_REDIRECT_FAILED);
		return XDP_PASS;
	}
	/* The low bits of flags are the action when the slot emptied meanwhile. */
	long act = bpf_redirect_map(&asdic_xsks, key, XDP_PASS);

	if (act != XDP_REDIRECT) {
		ASDIC_COUNT(asdic_stats, STAT_REDIRECT_FAILED);
		return XDP_PASS;
	}
	ASDIC_COUNT(asdic_stats, STAT_REDIRECTED);
	return XDP_REDIRECT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
