/* SPDX-License-Identifier: MIT */
/*
 * ICMP errors about NATed flows follow their flow (RFC 5508 §4 for NATs; RFC 1812 §4.3.2.3 for what a
 * router quotes). Without this, path-MTU discovery between client and backend is black-holed: a router
 * says "fragmentation needed" to the LB's service address, the LB's stack has no such socket, and the
 * sender keeps sending segments the path drops.
 *
 * Translated: destination unreachable (type 3, every code: fragmentation needed is code 4) and time
 * exceeded (type 11), quoting TCP of a live flow. A quote is the start of a packet the LB transmitted,
 * and the error is addressed to that packet's source: the SNAT address lb (the flow's snat_addr) on
 * the backend side, the service address on the client side:
 *
 *   backend side: a router (or the backend) quotes  lb:snat → be:bp    (a packet toward the backend)
 *                 the client gets an error quoting  c:cp → vip:vp      (the packet it sent), from vip
 *   client side:  a router quotes                   vip:vp → c:cp      (a packet toward the client)
 *                 the backend gets an error quoting be:bp → lb:snat    (the packet it sent), from lb
 *
 * Looked up as the TCP path looks flows up, and only a flow whose two entries agree (the same id in its
 * forward and reverse entry, flow.h) is translated: a backend-side quote is the reverse-table key with
 * source and destination swapped (flow.h flow_of_reverse, as from_backend); a client-side quote is the
 * forward key swapped (a service address and port as its source; flow_of_forward below). Both look in
 * the established tables first, then in the handshake tables: an error about a handshake is
 * translated too (bpf/README.md "ICMP errors"): a router or the backend answering the SYN with
 * "unreachable" tells the client at once, whose connect() then fails instead of retrying for two
 * minutes; an error about the SYN-ACK tells the backend, which drops its half-open connection. A
 * handshake abandoned (FLOW_DEAD: its port was taken back) is no flow. Anything else is passed
 * untouched: a quote of no flow (REASON_ICMP_NO_FLOW), of the LB's own traffic (REASON_NOT_OURS), of
 * another protocol, other ICMP types (REASON_NOT_TCP).
 *
 * The rewrite, every field at an even offset of the ICMP message, so each checksum is updated
 * incrementally (RFC 1624, csum.h) and none is recomputed: a message that arrived with a wrong checksum
 * leaves with a wrong one, and its receiver drops it, as it should.
 * - Outer IP: source → the address the receiver talks to (the service address for the client, the
 *   SNAT address for the backend: the LB is the peer each side knows; a router's address on one side
 *   means nothing on the other, and the LB's address passes the receiver's rp_filter), destination →
 *   the client or the backend. IP header checksum.
 * - Quoted IP: source → the error's new destination (the client or backend that sent the packet),
 *   destination → that same LB address. Its header checksum.
 * - Quoted TCP: the two ports; its checksum when the quote reaches it (bytes 16–17; RFC 792 promises 8
 *   bytes of the transport header, Linux quotes up to 576 bytes of packet, so normally it does): an
 *   incremental update needs only the old and new value of each changed word (the pseudo-header's
 *   addresses, the ports), not the rest of the segment, so it becomes the checksum of the segment as
 *   its sender sent it — when the LB had sent it with a full checksum; it cannot be verified or
 *   recomputed, as only a prefix of the segment is quoted. Receivers never check it: they could not
 *   either, and Linux's tcp_v4_err() reads the ports (socket lookup) and the sequence number (must be
 *   in flight, RFC 5927 §4.1) only. TCP options in the quote stay as they are (a timestamp stays on
 *   the clock it was sent with, tsmod.h): nobody reads them.
 * - ICMP checksum: it covers the whole ICMP message, so every word changed inside the quote above is
 *   also applied to it (outer addresses are not in it: ICMP has no pseudo-header).
 * - The ICMP type, code and rest of header (the MTU of "fragmentation needed") are kept: a full NAT
 *   changes no packet size, so the path MTU a router reports is the one the other side must use.
 *
 * Sent to the flow's next hop for that direction (the flow's cached hop, neigh.h next_hop; a next hop
 * that cannot be resolved drops the error, counted as for TCP: hop_failed). The flow is not touched
 * otherwise (no last_seen, no state, a handshake stays one): an ICMP error is advice to the end host,
 * which judges it (Linux checks the quoted sequence number, so a blind forger fares no better through
 * the LB than directly). Counted per service (REASON_ICMP_C2B, REASON_ICMP_B2C).
 */
#ifndef FLB_ICMP_H
#define FLB_ICMP_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "config.h"
#include "counters.h"
#include "csum.h"
#include "flow.h"
#include "maps.h"
#include "neigh.h"
#include "parsing.h"

/* ICMP (RFC 792). Not from <linux/icmp.h>: it pulls in libc socket headers a BPF build lacks. */
#ifndef ICMP_DEST_UNREACH
#define ICMP_DEST_UNREACH 3
#endif
#ifndef ICMP_TIME_EXCEEDED
#define ICMP_TIME_EXCEEDED 11
#endif

struct icmp_hdr {
	__u8 type;
	__u8 code;
	__u16 checksum; /* over the whole ICMP message, no pseudo-header */
	__be32 rest;    /* unused, or (fragmentation needed) the next hop's MTU in the low 16 bits */
};

/* Bytes of the quoted TCP header up to and including its checksum field (offset 16, 2 bytes). */
#define QUOTED_TCP_CHECK_END 18

/* An ICMP error's headers: the ICMP header, the quoted IPv4 header, the quoted TCP header (at least its
 * first 8 bytes: ports and sequence number; the rest only up to data_end). */
struct icmp_quote {
	struct icmp_hdr *icmp;
	struct iphdr *iph;
	struct tcphdr *tcph;
	void *data_end;
};

/** Set a 16-bit word inside the ICMP message and update the ICMP checksum for it (RFC 1624). */
static __always_inline void icmp_set2(struct icmp_hdr *icmp, __u16 *word, __u16 val)
{
	csum_replace2(&icmp->checksum, *word, val);
	*word = val;
}

/** Same for a 32-bit field (two words). */
static __always_inline void icmp_set4(struct icmp_hdr *icmp, __u32 *word, __u32 val)
{
	csum_replace4(&icmp->checksum, *word, val);
	*word = val;
}

/** An ICMP error's quote of a TCP packet, bounds-checked: FLB_GO_ON with *q filled, or the pass. */
static __always_inline int parse_icmp_quote(struct packet *p, void *data_end, struct icmp_quote *q)
{
	struct icmp_hdr *icmp = (void *)(p->iph + 1);
	if ((void *)(icmp + 1) > data_end)
		return pass(REASON_TRUNCATED);
	if (icmp->type != ICMP_DEST_UNREACH && icmp->type != ICMP_TIME_EXCEEDED)
		return pass(REASON_NOT_TCP); /* echo, and every other ICMP message: the kernel's */
	struct iphdr *iph = (void *)(icmp + 1);
	if ((void *)(iph + 1) > data_end)
		return pass(REASON_TRUNCATED);
	/* The TCP path passes packets with IP options, so none of our flows' packets has them. */
	if (iph->version != 4 || iph->ihl != 5)
		return pass(REASON_IP_OPTIONS);
	if (iph->protocol != IPPROTO_TCP)
		return pass(REASON_NOT_TCP);
	/* A later fragment quotes no ports (the TCP path passes fragments anyway). */
	if (iph->frag_off & bpf_htons(0x1fff))
		return pass(REASON_FRAGMENT);
	struct tcphdr *tcph = (void *)(iph + 1);
	if ((void *)tcph + 8 > data_end)
		return pass(REASON_TRUNCATED);
	/* An error goes to the quoted packet's source; anything else is not about a packet we sent. */
	if (p->iph->daddr != iph->saddr)
		return pass(REASON_NOT_OURS);
	q->icmp = icmp;
	q->iph = iph;
	q->tcph = tcph;
	q->data_end = data_end;
	return FLB_GO_ON;
}

/**
 * Rewrite an ICMP error (see the top of this file) to go from the LB's address `vip` (the service
 * address toward a client, the SNAT address toward a backend) to `peer`, quoting the packet `peer`
 * sent, peer:psport → vip:pdport, with the MACs of `out`. Every argument is in network order.
 */
static __always_inline void icmp_rewrite(struct packet *p, struct icmp_quote *q, const struct next_hop *out,
					 __be32 vip, __be32 peer, __be16 psport, __be16 pdport)
{
	struct icmp_hdr *icmp = q->icmp;

	__builtin_memcpy(p->eth->h_dest, out->dmac, ETH_ALEN);
	__builtin_memcpy(p->eth->h_source, out->smac, ETH_ALEN);

	/* The quoted TCP checksum first: its update needs the old addresses (pseudo-header) and ports. */
	if ((void *)q->tcph + QUOTED_TCP_CHECK_END <= q->data_end) {
		__u16 c = q->tcph->check;
		csum_replace4(&c, q->iph->saddr, peer);
		csum_replace4(&c, q->iph->daddr, vip);
		csum_replace2(&c, q->tcph->source, psport);
		csum_replace2(&c, q->tcph->dest, pdport);
		icmp_set2(icmp, &q->tcph->check, c);
	}
	__u16 ic = q->iph->check;
	csum_replace4(&ic, q->iph->saddr, peer);
	csum_replace4(&ic, q->iph->daddr, vip);
	icmp_set2(icmp, &q->iph->check, ic);
	icmp_set4(icmp, &q->iph->saddr, peer);
	icmp_set4(icmp, &q->iph->daddr, vip);
	icmp_set2(icmp, &q->tcph->source, psport);
	icmp_set2(icmp, &q->tcph->dest, pdport);

	csum_replace4(&p->iph->check, p->iph->saddr, vip);
	p->iph->saddr = vip;
	csum_replace4(&p->iph->check, p->iph->daddr, peer);
	p->iph->daddr = peer;
}

/**
 * The flow of client-side 4-tuple `fk` whose entries agree: the established one, else the handshake
 * (not an abandoned one), or NULL. (from_client has its own walk: it also starts, restarts and
 * promotes flows.)
 */
static __always_inline struct flow_fwd *flow_of_forward(const struct flow_key *fk)
{
	struct flow_fwd *f = bpf_map_lookup_elem(&flb_fwd, fk);
	if (f && pair_ok(&flb_rev, fk, f))
		return f;
	f = bpf_map_lookup_elem(&flb_syn_fwd, fk);
	if (f && !(f->state & FLOW_DEAD) && pair_ok(&flb_syn_rev, fk, f))
		return f;
	return NULL;
}

/**
 * From the client side, about a packet the LB sent to a client of service `svc` (quote vip:vp → c:cp):
 * to the backend, from the flow's SNAT address, about the packet it sent (be:bp → lb:snat). Returns
 * the action.
 */
static __always_inline int icmp_to_backend(struct xdp_md *ctx, const struct flb_config *cfg, struct packet *p,
					   struct icmp_quote *q, __u32 svc)
{
	struct flow_key fk = {
		.saddr = q->iph->daddr, .daddr = q->iph->saddr, .sport = q->tcph->dest, .dport = q->tcph->source,
	};
	struct flow_fwd *f = flow_of_forward(&fk);
	if (!f)
		return svc_pass(svc, REASON_ICMP_NO_FLOW);
	struct next_hop out;
	int rc = next_hop(ctx, cfg, &f->to_backend, now_seconds(), f->snat_addr, f->be_addr, NULL, NULL, &out);
	if (rc != FLB_GO_ON)
		return hop_failed(f->svc, rc);
	/* The backend sent be:bp → lb:snat. */
	count_svc_reason(f->svc, REASON_ICMP_C2B);
	icmp_rewrite(p, q, &out, f->snat_addr, f->be_addr, f->be_port, f->snat_port);
	return transmit(ctx, &out);
}

/**
 * From the backend side, about a packet the LB sent to a backend (quote lb:snat → be:bp, addressed to
 * lb: the reverse key holds it): to the client, about the packet it sent (c:cp → vip:vp). Returns the
 * action.
 */
static __always_inline int icmp_to_client(struct xdp_md *ctx, const struct flb_config *cfg, struct packet *p,
					  struct icmp_quote *q)
{
	struct flow_key rk = {
		.saddr = q->iph->daddr, .daddr = q->iph->saddr, .sport = q->tcph->dest, .dport = q->tcph->source,
	};
	struct flow_key fk = {};
	int established;
	struct flow_fwd *f = flow_of_reverse(&rk, &fk, &established);
	if (!f || (f->state & FLOW_DEAD))
		return pass(REASON_ICMP_NO_FLOW);
	__u8 client_mac[ETH_ALEN], ours[ETH_ALEN];
	__builtin_memcpy(client_mac, f->client_mac, ETH_ALEN);
	__builtin_memcpy(ours, p->eth->h_dest, ETH_ALEN);
	struct next_hop out;
	int rc = next_hop(ctx, cfg, &f->to_client, now_seconds(), fk.daddr, fk.saddr, client_mac, ours, &out);
	if (rc != FLB_GO_ON)
		return hop_failed(f->svc, rc);
	/* The client sent c:cp → vip:vp. */
	count_svc_reason(f->svc, REASON_ICMP_B2C);
	icmp_rewrite(p, q, &out, fk.daddr, fk.saddr, fk.sport, fk.dport);
	return transmit(ctx, &out);
}

/**
 * An ICMP packet (parse_packet let it through with p->tcph NULL): an error about one of our flows is
 * translated and sent to the other side; everything else is passed, counted by reason.
 */
static __always_inline int icmp_error(struct xdp_md *ctx, const struct flb_config *cfg, struct packet *p)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct icmp_quote q;
	int action = parse_icmp_quote(p, data_end, &q);
	if (action >= 0)
		return action;
	/* Quoted source = a service address and port: a packet the LB sent to a client. */
	struct svc_key sk = { .addr = q.iph->saddr, .port = q.tcph->source, .pad = 0 };
	struct svc_val *svc = bpf_map_lookup_elem(&flb_svc, &sk);
	if (svc)
		return icmp_to_backend(ctx, cfg, p, &q, svc->index);
	/* Quoted source port = a SNAT port: a packet the LB sent to a backend. */
	if (cfg_is_snat_port(cfg, q.tcph->source))
		return icmp_to_client(ctx, cfg, p, &q);
	return pass(REASON_NOT_OURS);
}

#endif
