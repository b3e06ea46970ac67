/* SPDX-License-Identifier: MIT */
/*
 * Segments the balancer answers itself with an RST. SYNs, so the kernel never sees a service SYN: a
 * process bound to the service address and port gets no connection, whatever the balancer's state (why
 * an RST for some reasons and a drop for others: bpf/README.md "SYNs the kernel never sees"). And a
 * backend's ACK of an older connection in answer to a handshake's SYN (featherlb.bpf.c
 * check_handshake_b2c), as the client's TCP in SYN-SENT would answer it.
 */
#ifndef FLB_ANSWER_H
#define FLB_ANSWER_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "counters.h"
#include "csum.h"
#include "parsing.h"
#include "tcpopt.h"

#define TCP_FLAG_BYTE_RST_ACK 0x14 /* byte 13 of the TCP header: ACK (0x10) | RST (0x04) */
#define TCP_FLAG_BYTE_RST 0x04

/** One's-complement sum of `n` 16-bit words at `w` (as stored; see csum.h on byte order) plus `sum`. */
static __always_inline __u32 csum_words(const __u16 *w, int n, __u32 sum)
{
#pragma unroll
	for (int i = 0; i < n; i++)
		sum += w[i];
	return sum;
}

/**
 * Turn the segment in `ctx` into the RST the kernel would send for it (RFC 9293 §3.10.7.1), in place,
 * and send it back where it came from (XDP_TX). For a SYN (no ACK: what a port nobody listens on gets)
 * an RST|ACK with seq 0 acknowledging seq + length, the SYN counting 1; for a segment with an ACK, an
 * RST whose seq is that ACK (what a SYN-SENT socket answers an unacceptable ACK with, §3.10.7.3), which
 * the stale socket that sent it accepts, since it sits at its next sequence number. Counted under
 * `reason` for service `svc`.
 *
 * Headers are rewritten in place and their checksums computed from scratch (20 + 20 bytes, two small
 * sums: cheaper than incremental updates of nearly every field), then options and data are cut off
 * with bpf_xdp_adjust_tail, after which no packet pointer is used again.
 *
 * `partial` (the SYN's p->csum_partial, l4csum.h): the SYN's skb is CHECKSUM_PARTIAL (generic XDP, a
 * local sender) and stays so through XDP_TX, so whoever completes it adds the sum of the TCP header
 * (from the same offset, over the RST's 20 bytes) to the field and complements it. The field then gets
 * the RST's folded pseudo-header sum only, as the kernel would have written it; else the full checksum.
 *
 * A global (non-inlined) function, verified once: four reasons call it. Globals get only ctx and
 * scalars, so it finds the headers again: parse_packet let through only untagged Ethernet, IPv4 with
 * IHL 5 and TCP, so they sit at fixed offsets (tcpopt.h TCP_HDR_OFF).
 */
__noinline int answer_rst(struct xdp_md *ctx, __u32 svc, __u32 reason, __u32 partial)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = data + sizeof(struct ethhdr);
	struct tcphdr *t = data + TCP_HDR_OFF;
	if ((void *)(t + 1) > data_end)
		return XDP_DROP; /* cannot happen after parse_packet; the verifier wants the check */
	__u32 hdrs = sizeof(struct iphdr) + t->doff * 4;
	__u32 tot = bpf_ntohs(iph->tot_len);
	__u32 payload = tot > hdrs ? tot - hdrs : 0;
	__u32 ack = bpf_ntohl(t->seq) + 1 + payload;
	__be32 seg_ack = t->ack_seq;
	int has_ack = t->ack;

	__u8 mac[ETH_ALEN];
	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);

	__be32 addr = iph->saddr;
	iph->saddr = iph->daddr;
	iph->daddr = addr;
	iph->tot_len = bpf_htons(sizeof(struct iphdr) + sizeof(struct tcphdr));
	iph->id = 0;
	iph->frag_off = bpf_htons(0x4000); /* DF */
	iph->ttl = 64;
	iph->check = 0;
	iph->check = ~csum_fold32(csum_words((__u16 *)iph, sizeof(struct iphdr) / 2, 0));

	__be16 port = t->source;
	t->source = t->dest;
	t->dest = port;
	t->seq = has_ack ? seg_ack : 0;
	t->ack_seq = has_ack ? 0 : bpf_htonl(ack);
	((__u8 *)t)[12] = (sizeof(struct tcphdr) / 4) << 4; /* doff 5, no options */
	((__u8 *)t)[13] = has_ack ? TCP_FLAG_BYTE_RST : TCP_FLAG_BYTE_RST_ACK;
	t->window = 0;
	t->urg_ptr = 0;
	t->check = 0;
	/* Pseudo-header (RFC 9293 §3.1): addresses, zero + protocol, TCP length; then the header. */
	__u32 sum = csum_words((__u16 *)&iph->saddr, 4, 0);
	sum += bpf_htons(IPPROTO_TCP);
	sum += bpf_htons(sizeof(struct tcphdr));
	if (partial)
		t->check = csum_fold32(sum);
	else
		t->check = ~csum_fold32(csum_words((__u16 *)t, sizeof(struct tcphdr) / 2, sum));

	count_svc_reason(svc, reason);
	int len = data_end - data;
	int want = TCP_HDR_OFF + sizeof(struct tcphdr);
	if (len > want && bpf_xdp_adjust_tail(ctx, want - len) != 0)
		return XDP_DROP;
	return XDP_TX;
}

/**
 * answer_rst for a caller: its action. The verifier does not know what a global function returns, and
 * after one that may move the packet's tail it holds every packet pointer invalid; the mask tells it the
 * result is an action (0…7, never FLB_GO_ON), so no path goes on with those pointers.
 */
static __always_inline int answer_syn(struct xdp_md *ctx, const struct packet *p, __u32 svc, enum flb_reason reason)
{
	return answer_rst(ctx, svc, reason, p->csum_partial) & 7;
}

/** The same for a backend's ACK of a stale connection (check_handshake_b2c): its action. */
static __always_inline int answer_stale(struct xdp_md *ctx, const struct packet *p, __u32 svc)
{
	return answer_rst(ctx, svc, REASON_STALE_RESET, p->csum_partial) & 7;
}

#endif
