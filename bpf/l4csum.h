/* SPDX-License-Identifier: MIT */
/*
 * The TCP checksum field of a packet we rewrite: full, or partial (CHECKSUM_PARTIAL).
 *
 * A full checksum is ~(pseudo-header + segment). A partial one is what Linux puts in an skb whose
 * checksum something later completes (the NIC, or skb_checksum_help() when the egress device has no
 * TX checksum offload): the folded pseudo-header sum only, NOT complemented; the completer adds the sum
 * of the segment from the TCP header on and stores the complement. Who hands XDP a partial checksum:
 *
 * - generic XDP (it runs after GRO, on the skb): GRO super-packets (tcp4_gro_complete sets
 *   CHECKSUM_PARTIAL), and every packet from a local sender whose device offloads TX checksums (a veth
 *   peer with `tx on`, the default: containers, network namespaces), GSO super-packets included. The
 *   skb stays CHECKSUM_PARTIAL through XDP_TX/redirect, so the field must stay partial;
 * - native XDP on a veth: packets from a peer with `tx on`. XDP_TX/redirect turn the packet into an
 *   xdp_frame, and the skb built from it on the other side is CHECKSUM_NONE: the field must leave as a
 *   full checksum. The loader tells the program it runs native (CFG_NATIVE), and it completes them;
 * - never native XDP on a NIC: frames off the wire carry the sender's full checksum.
 *
 * XDP cannot see skb->ip_summed (struct xdp_md has no such field, and no metadata kfunc reports it), so
 * the program recognises a partial checksum by its value: the field equals the folded pseudo-header sum
 * of the packet as it arrived. A full checksum has that value by chance once in 65,536 packets, so
 * before believing it the segment is summed: if the checksum verifies as a full one, it is one
 * (tcp_segment_sum). That pass runs for partial packets only (and that 1/65,536 of full ones); a full
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

/* tcp_segment_sum sums the segment in chunks of CSUM_CHUNK bytes (bpf_csum_diff: a multiple of 4) after
 * a head of words. A packet longer than JUMBO_MAX (the largest jumbo frame Ethernet switches carry)
 * came off no wire: it is a GSO/GRO super-packet, and those are always partial. */
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
 * Summed as a head of len % CSUM_CHUNK bytes (its whole words, then 2 and 1 bytes) and then
 * len / CSUM_CHUNK whole chunks, with bpf_csum_diff(NULL, 0, p, n, 0) (the kernel's csum_partial: the
 * sum of the n bytes at p, n a multiple of 4, as if p were word-aligned). When the head is odd the chunks start at odd offsets of the
 * segment, so their sum is byte-swapped back (RFC 1071 §2(B): the sum commutes with byte swapping).
 *
 * A global (non-inlined) function: the verifier checks it once, on its own (globals get only ctx, so it
 * re-reads data/data_end). Shaped for the verifier: the length is capped at JUMBO_MAX before it becomes
 * an offset; every read follows an explicit `> data_end` check of its own end; both loops are bounded
 * and not unrolled; the head loop counts down a copy of the head length, so its exits differ only in
 * dead registers and are pruned into one state, and the chunks start at `seg + head`, a variable offset
 * the same on every path. (Chunks first, then the rest from wherever they ended, had the verifier walk
 * the rest once for every chunk count, and the whole program's verified instructions grew by two
 * thirds; this way they stay where they were, about 220,000 on 6.18.)
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
	__u32 head = len % CSUM_CHUNK;
	__u64 sum = 0;

	/* The head's whole words: with a chunk after it, in one bpf_csum_diff call (the chunk's bytes prove
	 * to the verifier that any head size < CSUM_CHUNK is inside the packet); else (a short segment,
	 * all head) word by word. */
	__u8 *c = seg;
	__u32 left = head & ~3U;
	if (len >= CSUM_CHUNK) {
		if ((void *)(seg + CSUM_CHUNK) > data_end)
			return -1;
		sum += (__u32)bpf_csum_diff(NULL, 0, (void *)seg, left, 0);
		left = 0;
	}
#pragma clang loop unroll(disable)
	for (int i = 0; i < CSUM_CHUNK / 4; i++) {
		if (left < 4)
			break;
		/* Keep `c + 4 > data_end` as written: clang otherwise moves the constant onto data_end, and the
		 * verifier refuses arithmetic on pkt_end. */
		asm volatile("" : "+r"(c));
		if ((void *)(c + 4) > data_end)
			return -1;
		__u32 w;
		__builtin_memcpy(&w, c, 4);
		sum += w;
		c += 4;
		left -= 4;
	}
	/* The head's last 0–3 bytes, at an offset that is a multiple of 4. */
	c = seg + (head & ~3U);
	if (head & 2) {
		if ((void *)(c + 2) > data_end)
			return -1;
		__u16 w;
		__builtin_memcpy(&w, c, 2);
		sum += w;
		c += 2;
	}
	if (head & 1) {
		if ((void *)(c + 1) > data_end)
			return -1;
		__u16 last = 0; /* an odd byte is the high-order byte of its word */
		__builtin_memcpy(&last, c, 1);
		sum += last;
	}

	/* The whole chunks, from seg + head on. */
	__u64 chunks = 0;
	__u8 *base = seg + head;
	__u32 n = len / CSUM_CHUNK;
#pragma clang loop unroll(disable)
	for (int i = 0; i < CSUM_CHUNKS; i++) {
		if (i >= n)
			break;
		__u8 *k = base + i * CSUM_CHUNK;
		asm volatile("" : "+r"(k));
		if ((void *)(k + CSUM_CHUNK) > data_end)
			return -1;
		chunks += (__u32)bpf_csum_diff(NULL, 0, (void *)k, CSUM_CHUNK, 0);
	}
	__u16 cs = csum_fold64(chunks);
	if (head & 1)
		cs = (cs << 8) | (cs >> 8);
	return csum_fold64(sum + cs);
}

/**
 * Set p->csum_partial (0xffff: the TCP checksum field holds a partial checksum, see above; else 0: the
 * mask the updates below use). The cheap test first (does the field equal the pseudo-header sum?), the
 * segment sum only when it does: a field that verifies as a full checksum is one. Attached natively
 * (CFG_NATIVE), a partial checksum is completed here, as skb_checksum_help() would: field = ~(segment
 * sum, the field's pseudo-header sum included), and the packet goes on as a full one (native
 * XDP_TX/redirect send the bytes as they are, see above); if it is then passed to the kernel after all
 * (no flow, draining), its stack gets a full checksum, which it accepts either way. A super-packet
 * (over JUMBO_MAX) stays partial: native XDP never sees one.
 */
static __always_inline void tcp_csum_classify(struct xdp_md *ctx, const struct flb_config *cfg, struct packet *p)
{
	__u16 pseudo = csum_fold32(tcp_pseudo_sum(p->iph, bpf_ntohs(p->iph->tot_len) - sizeof(struct iphdr)));
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
	p->csum_partial = 0xffff;
}

/*
 * The updates are branchless: p->csum_partial is a mask (0 for full, 0xffff for partial), so the
 * verifier follows one path through every rewrite, not one per case and update site.
 */

/** The TCP checksum of `p` for a pseudo-header word pair (an address) changing from `from` to `to`. */
static __always_inline void tcp_csum_replace_addr(struct packet *p, __u32 from, __u32 to)
{
	/* full: RFC 1624 on C; partial: P' = P − m + m' = ~(RFC 1624 on ~P). */
	__u16 c = p->tcph->check ^ (__u16)p->csum_partial;
	csum_replace4(&c, from, to);
	p->tcph->check = c ^ (__u16)p->csum_partial;
}

/** The TCP checksum of `p` for a 16-bit word of the segment (a port) changing: full only. */
static __always_inline void tcp_csum_replace2(struct packet *p, __u16 from, __u16 to)
{
	__u16 c = p->tcph->check;
	csum_replace2(&c, from, to);
	p->tcph->check = c ^ ((c ^ p->tcph->check) & (__u16)p->csum_partial); /* partial: unchanged */
}

/** Same for a 32-bit field of the segment (a timestamp) that starts `odd` (1) or even (0) bytes into it. */
static __always_inline void tcp_csum_replace4(struct packet *p, __u32 from, __u32 to, int odd)
{
	__u16 c = p->tcph->check;
	if (odd)
		csum_replace4_odd(&c, from, to);
	else
		csum_replace4(&c, from, to);
	p->tcph->check = c ^ ((c ^ p->tcph->check) & (__u16)p->csum_partial); /* partial: unchanged */
}

#endif
