/* SPDX-License-Identifier: MIT */
/*
 * SYNs the balancer answers itself, so the kernel never sees a service SYN: a process bound to the
 * service address and port gets no connection, whatever the balancer's state. Why an RST for some
 * reasons and a drop for others: bpf/README.md "SYNs the kernel never sees".
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

/** One's-complement sum of `n` 16-bit words at `w` (as stored; see csum.h on byte order) plus `sum`. */
static __always_inline __u32 csum_words(const __u16 *w, int n, __u32 sum)
{
#pragma unroll
	for (int i = 0; i < n; i++)
		sum += w[i];
	return sum;
}

/**
 * Turn the client SYN in `ctx` into the RST|ACK the kernel would have sent for a port nobody listens on
 * (RFC 9293 §3.10.7.1: a reset for a segment without ACK has seq 0 and acknowledges seq + length, the
 * SYN counting 1), in place, and send it back where it came from (XDP_TX). Counted under `reason` for
 * service `svc`.
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
 * A global (non-inlined) function, verified once: three reasons call it. Globals get only ctx and
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
	t->seq = 0;
	t->ack_seq = bpf_htonl(ack);
	((__u8 *)t)[12] = (sizeof(struct tcphdr) / 4) << 4; /* doff 5, no options */
	((__u8 *)t)[13] = TCP_FLAG_BYTE_RST_ACK;
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

#endif
