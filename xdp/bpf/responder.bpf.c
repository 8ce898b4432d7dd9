// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * asdic_responder: the far end of the speed bed. Answers ICMP echo requests to
 * a configured IPv4 and/or IPv6 prefix straight from the driver (XDP_TX),
 * with a known ground truth of dead hosts and random loss, and passes every
 * other frame (ARP, neighbour discovery, echo to the namespace's own address)
 * to the kernel.
 *
 * Ground truth (xdp/src/responder.rs mirrors it in Rust, `is_dead`):
 *   host index i = low 16 bits of the IPv4 address; for IPv6 the low 16 bits
 *   when bits 16..63 of the address are zero, else the host is never dead;
 *   dead iff dead_mod > 0 && i % dead_mod == dead_rem   -> XDP_DROP, deaddrop
 *   else with probability loss_ppm / 10^6                -> XDP_DROP, lossdrop
 *   else                                                 -> reply, replied
 * seen4 / seen6 count every echo request to the prefix, passed the rest.
 *
 * The reply is the request turned around in place: MACs and addresses
 * swapped, type 8 -> 0 (128 -> 129), TTL / hop limit 64. Checksums are
 * updated incrementally (RFC 1624): swapping the addresses changes neither
 * the IPv4 header sum nor the ICMPv6 pseudo-header sum, so only the type word
 * (and, for IPv4, the TTL word) needs fixing.
 *
 * How the reply leaves (tx_mode): by default bpf_redirect() to the ingress
 * device itself, which sends the frame back out of that device. Plain XDP_TX
 * (tx_mode 1) is the same on a NIC, but on veth (Linux 6.18 at least) XDP_TX
 * frames only wake the peer when the peer runs an XDP program of its own:
 * veth_xdp_flush() kicks the peer's NAPI only if that peer has an xdp_prog,
 * so towards a peer that merely has GRO (NAPI) on, the frames sit in its ring
 * and a kernel-stack peer (raw sockets, ping) never sees them. A redirect
 * goes through ndo_xdp_xmit with XDP_XMIT_FLUSH, which always kicks the
 * peer's NAPI; veth accepts it when the peer has GRO on or an XDP program.
 *
 * Fragmented requests and IPv6 requests behind extension headers are passed.
 * License: see filter.bpf.c.
 */
#include "common.h"

/* asdic_rcfg's one value; xdp/src/responder.rs encodes it. */
struct asdic_responder_cfg {
	__u8 prefix4[4];  /* network byte order */
	__u8 prefix6[16]; /* network byte order */
	__u8 len4;	  /* 0..=32 */
	__u8 len6;	  /* 0..=128 */
	__u8 families;	  /* bit 0: answer IPv4, bit 1: answer IPv6 */
	__u8 tx_mode;	  /* 0: redirect to the ingress device, 1: XDP_TX */
	__u32 dead_mod;
	__u32 dead_rem;
	__u32 loss_ppm; /* 0..=1000000 */
};

#define FAMILY_V4 1
#define FAMILY_V6 2

#define TX_REDIRECT 0
#define TX_XDP_TX 1

/* asdic_rstats slots (xdp/src/responder.rs reads them in this order). */
enum {
	STAT_SEEN4 = 0,
	STAT_SEEN6 = 1,
	STAT_REPLIED = 2,
	STAT_DEADDROP = 3,
	STAT_LOSSDROP = 4,
	STAT_PASSED = 5,
	STAT_COUNT = 6,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct asdic_responder_cfg);
} asdic_rcfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} asdic_rstats SEC(".maps");

/* asdic's mark (xdp/src/attach.rs): how a leftover of ours is told from a namesake. */
ASDIC_MARKER_MAP;

#define ICMPV6_ECHO_REQUEST_TYPE 128
#define ICMPV6_ECHO_REPLY_TYPE 129
#define REPLY_TTL 64

/* Network-order mask of `bits` leading one bits within one 32-bit word (bits may be < 0, > 32). */
static __always_inline __u32 word_mask(int bits)
{
	if (bits <= 0)
		return 0;
	if (bits >= 32)
		return 0xffffffff;
	return bpf_htonl(0xffffffffu << (32 - bits));
}

static __always_inline __u32 load32(const __u8 *p)
{
	__u32 v;

	__builtin_memcpy(&v, p, sizeof(v));
	return v;
}

/* 4 bytes as they lie in memory. */
/* Whether network-order words `a` lie in prefix/len (words compared in memory order). */
static __always_inline int in_prefix(const __u32 *a, const __u8 *prefix, int words, int len)
{
#pragma unroll
	for (int w = 0; w < 4; w++) {
		if (w >= words)
			break;
		__u32 m = word_mask(len - 32 * w);

		if ((a[w] & m) != (load32(prefix + 4 * w) & m))
			return 0;
	}
	return 1;
}

/* The ground truth's verdict for host index i: XDP_DROP (counted) or XDP_TX. */
static __always_inline int verdict(const struct asdic_responder_cfg *cfg, int has_index, __u32 i)
{
	if (has_index && cfg->dead_mod > 0 && i % cfg->dead_mod == cfg->dead_rem) {
		ASDIC_COUNT(asdic_rstats, STAT_DEADDROP);
		return XDP_DROP;
	}
	if (cfg->loss_ppm > 0) {
		/* r in [0, 10^6): the high bits of a 32x32 product, no division. */
		__u64 r = ((__u64)bpf_get_prandom_u32() * 1000000) >> 32;

		if (r < cfg->loss_ppm) {
			ASDIC_COUNT(asdic_rstats, STAT_LOSSDROP);
			return XDP_DROP;
		}
	}
	ASDIC_COUNT(asdic_rstats, STAT_REPLIED);
	return XDP_TX;
}

static __always_inline void swap_macs(struct ethhdr *eth)
{
	__u8 tmp[ETH_ALEN];

	__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
}

/* -1: not an echo request to the prefix (pass); else the XDP action. */
static __always_inline int echo_v4(const struct asdic_responder_cfg *cfg, struct ethhdr *eth,
				   void *l3, void *data_end)
{
	struct iphdr *ip = l3;

	if ((void *)(ip + 1) > data_end)
		return -1;
	if (ip->version != 4 || ip->protocol != IPPROTO_ICMP)
		return -1;
	/* Fragments (first or not) go to the kernel: the checksum spans them all. */
	if (ip->frag_off & bpf_htons(ASDIC_IP_MF | ASDIC_IP_OFFSET))
		return -1;
	__u32 ihl = ip->ihl * 4;

	if (ihl < sizeof(*ip))
		return -1;
	struct asdic_icmphdr *icmp = l3 + ihl;

	if ((void *)(icmp + 1) > data_end)
		return -1;
	if (icmp->type != ASDIC_ICMP_ECHO || icmp->code != 0)
		return -1;
	__u32 daddr = ip->daddr;

	if (!in_prefix(&daddr, cfg->prefix4, 1, cfg->len4))
		return -1;

	ASDIC_COUNT(asdic_rstats, STAT_SEEN4);
	int act = verdict(cfg, 1, bpf_ntohl(daddr) & 0xffff);

	if (act != XDP_TX)
		return act;

	swap_macs(eth);
	ip->daddr = ip->saddr;
	ip->saddr = daddr;

	/* TTL shares a 16-bit word with the protocol. */
	__u16 *ttl_word = (__u16 *)&ip->ttl;
	__u16 old = *ttl_word;

	ip->ttl = REPLY_TTL;
	ip->check = csum_replace16(ip->check, old, *ttl_word);

	/* Type shares a 16-bit word with the code. */
	__u16 *type_word = (__u16 *)&icmp->type;

	old = *type_word;
	icmp->type = ASDIC_ICMP_ECHOREPLY;
	icmp->checksum = csum_replace16(icmp->checksum, old, *type_word);
	return XDP_TX;
}

static __always_inline int echo_v6(const struct asdic_responder_cfg *cfg, struct ethhdr *eth,
				   void *l3, void *data_end)
{
	struct ipv6hdr *ip6 = l3;

	if ((void *)(ip6 + 1) > data_end)
		return -1;
	if (ip6->version != 6 || ip6->nexthdr != IPPROTO_ICMPV6)
		return -1;
	struct icmp6hdr *icmp = (void *)(ip6 + 1);

	if ((void *)(icmp + 1) > data_end)
		return -1;
	if (icmp->icmp6_type != ICMPV6_ECHO_REQUEST_TYPE || icmp->icmp6_code != 0)
		return -1;
	__u32 *d = ip6->daddr.in6_u.u6_addr32;

	if (!in_prefix(d, cfg->prefix6, 4, cfg->len6))
		return -1;

	ASDIC_COUNT(asdic_rstats, STAT_SEEN6);
	/* A host index only when bits 16..63 (bytes 8..13) are zero. */
	int has_index = d[2] == 0 && (bpf_ntohl(d[3]) >> 16) == 0;
	int act = verdict(cfg, has_index, bpf_ntohl(d[3]) & 0xffff);

	if (act != XDP_TX)
		return act;

	swap_macs(eth);
	struct in6_addr tmp = ip6->daddr;

	ip6->daddr = ip6->saddr;
	ip6->saddr = tmp;
	ip6->hop_limit = REPLY_TTL;

	__u16 *type_word = (__u16 *)&icmp->icmp6_type;
	__u16 old = *type_word;

	icmp->icmp6_type = ICMPV6_ECHO_REPLY_TYPE;
	icmp->icmp6_cksum = csum_replace16(icmp->icmp6_cksum, old, *type_word);
	return XDP_TX;
}

SEC("xdp")
int asdic_responder(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	void *l3 = data;
	__u32 zero = 0;
	int act = -1;

	struct asdic_responder_cfg *cfg = bpf_map_lookup_elem(&asdic_rcfg, &zero);

	if (!cfg || !bpf_map_lookup_elem(&asdic_marker, &zero))
		return XDP_PASS;
	__u16 proto = parse_eth(data, data_end, &l3);

	if (proto == ETH_P_IP && (cfg->families & FAMILY_V4))
		act = echo_v4(cfg, data, l3, data_end);
	else if (proto == ETH_P_IPV6 && (cfg->families & FAMILY_V6))
		act = echo_v6(cfg, data, l3, data_end);
	if (act < 0) {
		ASDIC_COUNT(asdic_rstats, STAT_PASSED);
		return XDP_PASS;
	}
	if (act == XDP_TX && cfg->tx_mode == TX_REDIRECT)
		return bpf_redirect(ctx->ingress_ifindex, 0);
	return act;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
