/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Shared by asdic's XDP programs: packet headers from the kernel's UAPI, the
 * one 802.1Q tag that may sit in front of the IP header, per-CPU counters and
 * RFC 1624 checksum updates.
 *
 * Every packet access is checked against data_end right before it; the
 * verifier insists, and a short or malformed frame must end in XDP_PASS, never
 * in a read past the frame.
 */
#ifndef ASDIC_COMMON_H
#define ASDIC_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/icmpv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* IEEE 802.1Q tag (the kernel's struct vlan_hdr is not in the UAPI):
 *
 *   0                   1                   2                   3
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   | PCP |D|        VLAN ID        |     encapsulated EtherType    |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 */
struct asdic_vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

/*
 * ICMP echo and error header (RFC 792). <linux/icmp.h> pulls in libc's
 * socket headers, which do not build for the BPF target, so it is spelt out:
 *
 *   0                   1                   2                   3
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |     Type      |     Code      |          Checksum             |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |           Identifier          |        Sequence Number        |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Errors have 4 unused (or type-specific) bytes in place of identifier and
 * sequence, followed by the start of the datagram that caused them.
 */
struct asdic_icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 id;
	__be16 sequence;
};

#define ASDIC_ICMP_ECHOREPLY 0
#define ASDIC_ICMP_DEST_UNREACH 3
#define ASDIC_ICMP_SOURCE_QUENCH 4
#define ASDIC_ICMP_REDIRECT 5
#define ASDIC_ICMP_ECHO 8
#define ASDIC_ICMP_TIME_EXCEEDED 11
#define ASDIC_ICMP_PARAMETERPROB 12

/* IPv4: fragment offset and "more fragments" bits of frag_off. */
#define ASDIC_IP_MF 0x2000
#define ASDIC_IP_OFFSET 0x1fff

/* Echo messages: type, code, checksum, identifier, sequence (RFC 792, 4443). */
#define ASDIC_ICMP_HDR_LEN 8

/*
 * parse_eth: the L3 protocol (host order) and the offset of the L3 header,
 * after the Ethernet header and at most one 802.1Q (or 802.1ad) tag; 0 when
 * the frame is too short.
 */
static __always_inline __u16 parse_eth(void *data, void *data_end, void **l3)
{
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return 0;
	__u16 proto = bpf_ntohs(eth->h_proto);
	void *next = eth + 1;

	if (proto == ETH_P_8021Q || proto == ETH_P_8021AD) {
		struct asdic_vlan_hdr *vlan = next;

		if ((void *)(vlan + 1) > data_end)
			return 0;
		proto = bpf_ntohs(vlan->encap_proto);
		next = vlan + 1;
	}
	*l3 = next;
	return proto;
}

/*
 * asdic_marker: one u64 the loader writes (xdp/src/attach.rs, an asdic constant per program).
 * The program looks it up, so the map is among the program's map_ids: that is how a
 * leftover of ours is recognised, whatever its name.
 */
#define ASDIC_MARKER_MAP                                 \
	struct {                                         \
		__uint(type, BPF_MAP_TYPE_ARRAY);        \
		__uint(max_entries, 1);                  \
		__type(key, __u32);                      \
		__type(value, __u64);                    \
	} asdic_marker SEC(".maps")

/* Adds one to per-CPU counter `slot` of `map` (no atomics: the slot is this CPU's). */
#define ASDIC_COUNT(map, slot)                                       \
	({                                                           \
		__u32 __k = (slot);                                  \
		__u64 *__v = bpf_map_lookup_elem(&(map), &__k);      \
		if (__v)                                             \
			*__v += 1;                                   \
	})

/*
 * RFC 1624, eqn. 3: when a 16-bit word of a checksummed region changes from m
 * to m', the checksum HC becomes HC' = ~(~HC + ~m + m'). One's complement sums
 * do not depend on byte order, so all three stay as they are on the wire.
 */
static __always_inline __u16 csum_replace16(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~check;

	sum += (__u16)~old;
	sum += new;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

#endif
