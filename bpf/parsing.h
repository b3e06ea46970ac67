/* SPDX-License-Identifier: MIT */
/*
 * Packet parsing (xdp-tutorial's parsing_helpers.h style): each parser checks bounds against data_end,
 * moves the cursor past its header and returns FLB_GO_ON, or returns XDP_PASS (counted) for anything
 * the balancer does not handle (it handles TCP, and ICMP errors about its flows: icmp.h). We never
 * change the packet's head or tail, so the pointers stay valid for the whole run: no re-reading of
 * data/data_end is needed after parsing.
 */
#ifndef FLB_PARSING_H
#define FLB_PARSING_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include "counters.h"

struct hdr_cursor {
	void *pos;
};

/* The headers of a packet we may rewrite. */
struct packet {
	struct ethhdr *eth;
	struct iphdr *iph;
	struct tcphdr *tcph; /* NULL for ICMP (parse_packet) */
	__u32 payload; /* TCP payload bytes (host order), from the IP total length */
	__u32 csum_partial; /* 0xffff: the TCP checksum field holds only the pseudo-header sum, else 0 (l4csum.h) */
};

/** Ethernet: only untagged IPv4 goes on (VLAN tags, IPv6 and ARP are passed). */
static __always_inline int parse_eth(struct hdr_cursor *c, void *data_end, struct packet *p)
{
	struct ethhdr *eth = c->pos;
	if ((void *)(eth + 1) > data_end)
		return pass(REASON_TRUNCATED);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return pass(REASON_NOT_IPV4);
	p->eth = eth;
	c->pos = eth + 1;
	return FLB_GO_ON;
}

/** IPv4 without options, not a fragment. */
static __always_inline int parse_ipv4(struct hdr_cursor *c, void *data_end, struct packet *p)
{
	struct iphdr *iph = c->pos;
	if ((void *)(iph + 1) > data_end)
		return pass(REASON_TRUNCATED);
	if (iph->version != 4)
		return pass(REASON_NOT_IPV4);
	/* Options would shift the TCP header; they are rare on TCP and the kernel handles them fine. */
	if (iph->ihl != 5)
		return pass(REASON_IP_OPTIONS);
	/* frag_off: MF bit (0x2000) or a non-zero offset (low 13 bits) means a fragment: no ports to NAT. */
	if (iph->frag_off & bpf_htons(0x3fff))
		return pass(REASON_FRAGMENT);
	p->iph = iph;
	c->pos = iph + 1;
	return FLB_GO_ON;
}

/** TCP: the fixed 20 bytes must be present; options are read only by tsmod.h (timestamp modulation). */
static __always_inline int parse_tcp(struct hdr_cursor *c, void *data_end, struct packet *p)
{
	struct tcphdr *tcph = c->pos;
	if ((void *)(tcph + 1) > data_end)
		return pass(REASON_TRUNCATED);
	__u32 tot = bpf_ntohs(p->iph->tot_len);
	__u32 hdrs = sizeof(struct iphdr) + tcph->doff * 4;
	if (tcph->doff < 5 || tot < hdrs)
		return pass(REASON_TRUNCATED);
	p->tcph = tcph;
	p->payload = tot - hdrs;
	return FLB_GO_ON;
}

/**
 * Ethernet, IPv4, then TCP: FLB_GO_ON with p->tcph set. ICMP also goes on, with p->tcph NULL and the
 * cursor at the ICMP header (p->iph + 1): an ICMP error may be about one of our flows (icmp.h).
 */
static __always_inline int parse_packet(void *data, void *data_end, struct packet *p)
{
	struct hdr_cursor c = { .pos = data };
	int action = parse_eth(&c, data_end, p);
	if (action >= 0)
		return action;
	action = parse_ipv4(&c, data_end, p);
	if (action >= 0)
		return action;
	if (p->iph->protocol == IPPROTO_ICMP)
		return FLB_GO_ON;
	if (p->iph->protocol != IPPROTO_TCP)
		return pass(REASON_NOT_TCP);
	return parse_tcp(&c, data_end, p);
}

/* TCP flag predicates (tcphdr bitfields are in wire order already). */
static __always_inline int tcp_is_syn_only(const struct tcphdr *t) { return t->syn && !t->ack && !t->rst && !t->fin; }
static __always_inline int tcp_is_rst(const struct tcphdr *t) { return t->rst; }
static __always_inline int tcp_is_fin(const struct tcphdr *t) { return t->fin; }
static __always_inline int tcp_is_pure_ack(const struct tcphdr *t) { return t->ack && !t->syn && !t->fin && !t->rst; }

#endif
