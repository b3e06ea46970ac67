/* SPDX-License-Identifier: MIT */
/*
 * The TCP checksum field of a packet we rewrite: full, or partial (CHECKSUM_PARTIAL).
 *
 * A full checksum is ~(pseudo-header + segment). A partial one is what Linux puts in an skb whose
 * checksum something later completes (the NIC, or skb_checksum_help() when the egress device has no
 * TX checksum offload): the folded pseudo-header sum only, NOT complemented; the completer adds the sum of
 * the segment from the TCP header on and stores the complement. Who hands XDP a partial checksum:
 *
 * - generic XDP (it runs after GRO, on the skb): GRO super-packets (tcp4_gro_complete sets
 *   CHECKSUM_PARTIAL), and every packet from a local sender whose device offloads TX checksums (a veth
 *   peer with `tx on`, the default: containers, network namespaces), GSO super-packets included. The
 *   skb stays CHECKSUM_PARTIAL through XDP_TX/redirect, so the field must stay partial;
 * - native XDP on a veth: packets from a peer with `tx on` (XDP_TX/redirect then turn the packet into
 *   an xdp_frame, and the skb built from it on the other side is CHECKSUM_NONE: the field is taken as
 *   full, which no program can make right without knowing it runs native; see bpf/README.md);
 * - never native XDP on a NIC: frames off the wire carry the sender's full checksum.
 *
 * XDP cannot see skb->ip_summed (struct xdp_md has no such field, and no metadata kfunc reports it), so
 * the program recognises a partial checksum by its value: the field equals the folded pseudo-header sum
 * of the packet as it arrived. A full checksum has that value by chance once in 65,536 packets, so
 * before believing it the segment is summed: if the checksum verifies as a full one, it is one
 * (tcp_csum_verifies). That pass runs for partial packets only (and that 1/65,536 of full ones); a full
 * checksum is never mistaken for a partial one. The one residue: a partial packet whose segment sum
 * makes its field also verify as a full checksum (again 1/65,536 of partial packets) is treated as full.
 *
 * Updates (what the kernel's inet_proto_csum_replace4() does for an skb, with its `pseudohdr` flag):
 * - full: RFC 1624 for every changed word (csum.h);
 * - partial: only words of the pseudo-header (addresses) change the field, and as a sum: P' = P − m + m'
 *   (the complement of the RFC 1624 update of ~P). Ports and TCP options are summed by whoever completes
 *   the checksum, so they must not be reflected in the field.
 */
#ifndef FLB_L4CSUM_H
#define FLB_L4CSUM_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "csum.h"
#include "config.h"
#include "parsing.h"

/* tcp_csum_verifies sums the segment in chunks of CSUM_CHUNK bytes (bpf_csum_diff: a multiple of 4),
 * the rest in smaller powers of two. A packet longer than JUMBO_MAX (the largest jumbo frame Ethernet
 * switches carry) came off no wire: it is a GSO/GRO super-packet, and those are always partial. */
#define CSUM_CHUNK 512
#define JUMBO_MAX 9216
#define CSUM_CHUNKS (JUMBO_MAX / CSUM_CHUNK)

/** Fold a 64-bit one's-complement accumulator into 16 bits. */
static __always_inline __u16 csum_fold64(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	return csum_fold32((__u32)s);
}

/**
 * The one's-complement sum (unfolded, words as stored) of the TCP pseudo-header: source and
 * destination address, zero + protocol, TCP length (RFC 9293 §3.1).
 */
static __always_inline __u32 tcp_pseudo_sum(const struct iphdr *iph, __u32 seg_len)
{
	return (iph->saddr & 0xffff) + (iph->saddr >> 16) + (iph->daddr & 0xffff) + (iph->daddr >> 16) +
	       bpf_htons(IPPROTO_TCP) + bpf_htons((__u16)seg_len);
}

/**
 * The one's-complement sum of the TCP segment of the packet (header, checksum field included, and
 * payload, up to the IP total length), folded to 16 bits as stored; -1 when the packet is longer than
 * JUMBO_MAX (a super-packet) or runs past data_end. For packets parse_packet accepted (untagged
 * Ethernet, IPv4 with IHL 5).
 *
 * A global (non-inlined) function: the verifier checks the loop once, on its own. Globals get only ctx,
 * so it re-reads data/data_end. Verifier bounds: the length is capped at JUMBO_MAX before it becomes an
 * offset; every chunk is read after an explicit `> data_end` check of its own end; the loop runs at
 * most CSUM_CHUNKS times and is not unrolled (unrolled, its constant offsets pass 64 KiB, which the
 * verifier refuses for packet pointers). bpf_csum_diff(NULL, 0, p, n, 0) is the sum of the n bytes at p
 * (n a multiple of 4); every chunk starts at an even offset of the segment, so the sums add up as words
 * as stored.
 */
__noinline int tcp_segment_sum(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *iph = data + sizeof(struct ethhdr);
	if ((void *)(iph + 1) > data_end)
		return -1;
	__u32 tot = bpf_ntohs(iph->tot_len);
	if (tot < sizeof(struct iphdr) + sizeof(struct tcphdr) || tot > JUMBO_MAX)
		return -1;
	__u32 len = tot - sizeof(struct iphdr);
	__u8 *seg = (__u8 *)(iph + 1);
	__u64 sum = 0;

	__u32 off = 0;
#pragma clang loop unroll(disable)
	for (int i = 0; i < CSUM_CHUNKS; i++) {
		if (off + CSUM_CHUNK > len)
			break;
		__u8 *c = seg + off;
		if ((void *)(c + CSUM_CHUNK) > data_end)
			return -1;
		sum += (__u32)bpf_csum_diff(NULL, 0, (void *)c, CSUM_CHUNK, 0);
		off += CSUM_CHUNK;
	}
	if (off > JUMBO_MAX)
		return -1;
	__u8 *c = seg + off;
	__u32 rest = len - off; /* < CSUM_CHUNK */
#define CSUM_TAIL(n)                                                                 \
	if (rest & (n)) {                                                            \
		if ((void *)(c + (n)) > data_end)                                    \
			return -1;                                                   \
		sum += (__u32)bpf_csum_diff(NULL, 0, (void *)c, (n), 0);             \
		c += (n);                                                            \
	}
	CSUM_TAIL(256)
	CSUM_TAIL(128)
	CSUM_TAIL(64)
	CSUM_TAIL(32)
	CSUM_TAIL(16)
	CSUM_TAIL(8)
	CSUM_TAIL(4)
#undef CSUM_TAIL
	if (rest & 2) {
		if ((void *)(c + 2) > data_end)
			return -1;
		__u16 w;
		__builtin_memcpy(&w, c, 2);
		sum += w;
		c += 2;
	}
	if (rest & 1) {
		if ((void *)(c + 1) > data_end)
			return -1;
		__u16 last = 0; /* the odd byte is the high-order byte of a word padded with zero */
		__builtin_memcpy(&last, c, 1);
		sum += last;
	}
	return csum_fold64(sum);
}

/**
 * Set p->csum_partial: does the packet's TCP checksum field hold a partial checksum (see above)? The
 * cheap test first (does the field equal the pseudo-header sum?), the segment sum only when it does:
 * a field that verifies as a full checksum is one. Attached natively (CFG_NATIVE), a partial checksum
 * is completed here, as skb_checksum_help() would: field = ~(segment sum, the field's pseudo-header
 * sum included), and the packet goes on as a full one (native XDP_TX/redirect send the bytes as they
 * are, see above); if it is then passed to the kernel after all (no flow, draining), its stack gets a
 * full checksum, which it accepts either way. A super-packet (over JUMBO_MAX) stays partial: native XDP
 * never sees one.
 */
static __always_inline void tcp_csum_classify(struct xdp_md *ctx, const struct flb_config *cfg, struct packet *p)
{
	__u32 seg_len = bpf_ntohs(p->iph->tot_len) - sizeof(struct iphdr);
	__u16 pseudo = csum_fold32(tcp_pseudo_sum(p->iph, seg_len));
	p->csum_partial = 0;
	if (p->tcph->check != pseudo)
		return;
	int seg = tcp_segment_sum(ctx);
	if (seg >= 0 && csum_fold32((__u32)pseudo + (__u32)seg) == 0xffff)
		return;
	if (seg >= 0 && cfg_native(cfg)) {
		p->tcph->check = ~(__u16)seg;
		return;
	}
	p->csum_partial = 1;
}

/** The TCP checksum of `p` for a pseudo-header word pair (an address) changing from `from` to `to`. */
static __always_inline void tcp_csum_replace_addr(struct packet *p, __u32 from, __u32 to)
{
	if (!p->csum_partial) {
		csum_replace4(&p->tcph->check, from, to);
		return;
	}
	/* P' = P − m + m' = ~(RFC 1624 applied to ~P) */
	__u16 c = ~p->tcph->check;
	csum_replace4(&c, from, to);
	p->tcph->check = ~c;
}

/** The TCP checksum of `p` for a 16-bit word of the segment (a port) changing: nothing if partial. */
static __always_inline void tcp_csum_replace2(struct packet *p, __u16 from, __u16 to)
{
	if (!p->csum_partial)
		csum_replace2(&p->tcph->check, from, to);
}

/** Same for a 32-bit field of the segment (a timestamp). */
static __always_inline void tcp_csum_replace4(struct packet *p, __u32 from, __u32 to)
{
	if (!p->csum_partial)
		csum_replace4(&p->tcph->check, from, to);
}

#endif
