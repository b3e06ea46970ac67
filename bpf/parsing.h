/* SPDX-License-Identifier: MIT */
/*
 * Packet parsing (xdp-tutorial's parsing_helpers.h style): each parser checks bounds against data_end,
 * moves the cursor past its header and returns FLB_GO_ON, or returns XDP_PASS (counted) for anything
 * the balancer does not handle. We never change the packet's head or tail, so the pointers stay valid
 * for the whole run: no re-reading of data/data_end is needed after parsing.
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
	struct tcphdr *tcph;
	__u32 payload; /* TCP payload bytes (host order), from the IP total length */
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

/** IPv4 without options, not a fragment, carrying TCP. */
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
	if (iph->protocol != IPPROTO_TCP)
		return pass(REASON_NOT_TCP);
	p->iph = iph;
	c->pos = iph + 1;
	return FLB_GO_ON;
}

/** TCP: the fixed 20 bytes must be present; options are read only by tcp_ts_off (timestamp modulation, nat.h). */
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

static __always_inline int parse_packet(void *data, void *data_end, struct packet *p)
{
	struct hdr_cursor c = { .pos = data };
	int action = parse_eth(&c, data_end, p);
	if (action >= 0)
		return action;
	action = parse_ipv4(&c, data_end, p);
	if (action >= 0)
		return action;
	return parse_tcp(&c, data_end, p);
}

/* Where the TCP header starts: parse_packet only lets through untagged Ethernet and IPv4 with IHL 5. */
#define TCP_HDR_OFF (sizeof(struct ethhdr) + sizeof(struct iphdr))
/* The largest offset tcp_ts_off can return: the timestamp data ends within 40 bytes of options. */
#define TCP_TS_OFF_MAX (TCP_HDR_OFF + sizeof(struct tcphdr) + TCP_OPTS_MAX - 8)

/**
 * Find the TCP timestamp option (RFC 7323 §3: kind 8, length 10) of a packet parse_packet accepted.
 * Returns the offset from the packet start of its 8 data bytes (TSval then TSecr, network order, not
 * necessarily 4-byte aligned), or 0 when the header has no timestamp option or a malformed one:
 * a length below 2, an option running past doff or past data_end, a timestamp option whose length is
 * not 10, or an EOL before it. The caller then leaves the options alone (the endpoints judge them).
 *
 * A global (non-inlined) function: the verifier checks it once, on its own, instead of once per call
 * site with every caller's state (the walk is the costliest loop in the program; inlined at the three
 * call sites it multiplied the verified instructions by 4.5). Globals get only ctx and scalars, so it
 * re-reads data/data_end from ctx and the caller bounds the result again (ts_data()).
 *
 * Verifier bounds: `off` is checked against `len` (≤ 40, from the 4-bit doff) and against TCP_OPTS_MAX
 * explicitly, so `opt + off` is a packet pointer with a bounded variable offset, and every byte is read
 * only after an explicit `> data_end` check on that pointer. One step per option, each consuming ≥ 1
 * byte, so TCP_OPTS_MAX iterations always suffice (bounded loop, Linux ≥ 5.3).
 */
__noinline int tcp_ts_off(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct tcphdr *t = data + TCP_HDR_OFF;
	if ((void *)(t + 1) > data_end || t->doff <= 5)
		return 0;
	__u8 *opt = (__u8 *)(t + 1);
	__u32 len = t->doff * 4 - sizeof(struct tcphdr);

	__u32 off = 0;
	for (int i = 0; i < TCP_OPTS_MAX; i++) {
		if (off >= len || off >= TCP_OPTS_MAX)
			return 0;
		__u8 *k = opt + off;
		if ((void *)(k + 1) > data_end)
			return 0;
		if (k[0] == TCPOPT_EOL)
			return 0;
		if (k[0] == TCPOPT_NOP) {
			off += 1;
			continue;
		}
		if ((void *)(k + 2) > data_end)
			return 0;
		__u32 olen = k[1];
		if (olen < 2 || off + olen > len)
			return 0;
		if (k[0] == TCPOPT_TIMESTAMP) {
			if (olen != TCPOLEN_TIMESTAMP || (void *)(k + TCPOLEN_TIMESTAMP) > data_end)
				return 0;
			return TCP_HDR_OFF + sizeof(struct tcphdr) + off + 2;
		}
		off += olen;
	}
	return 0;
}

/**
 * The timestamp option's data bytes of packet `p` (TSval, TSecr), or NULL. Skips the call when doff
 * is 5 (no options: the common data packet of a flow without timestamps). The offset from the global
 * function is an unknown scalar to the verifier here, hence the range check before it becomes a pointer.
 */
static __always_inline __u8 *ts_data(struct xdp_md *ctx, const struct packet *p)
{
	if (p->tcph->doff <= 5)
		return NULL;
	/* Fast path: NOP, NOP, TS(8, 10) as the first option bytes — what Linux, BSD and Windows put on
	 * every segment after the handshake (RFC 7323 Appendix A). Same answer as the walk, without the call. */
	__u8 *opt = (__u8 *)(p->tcph + 1);
	void *end = (void *)(long)ctx->data_end;
	if (p->tcph->doff >= 8 && (void *)(opt + 12) <= end && opt[0] == TCPOPT_NOP && opt[1] == TCPOPT_NOP &&
	    opt[2] == TCPOPT_TIMESTAMP && opt[3] == TCPOLEN_TIMESTAMP)
		return opt + 4;
	__u32 off = tcp_ts_off(ctx);
	if (off < TCP_HDR_OFF + sizeof(struct tcphdr) || off > TCP_TS_OFF_MAX)
		return NULL;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *ts = data + off;
	if ((void *)(ts + 8) > data_end)
		return NULL;
	return ts;
}

/* TCP flag predicates (tcphdr bitfields are in wire order already). */
static __always_inline int tcp_is_syn_only(const struct tcphdr *t) { return t->syn && !t->ack && !t->rst && !t->fin; }
static __always_inline int tcp_is_rst(const struct tcphdr *t) { return t->rst; }
static __always_inline int tcp_is_fin(const struct tcphdr *t) { return t->fin; }
static __always_inline int tcp_is_pure_ack(const struct tcphdr *t) { return t->ack && !t->syn && !t->fin && !t->rst; }

#endif
