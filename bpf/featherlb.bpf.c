// SPDX-License-Identifier: MIT
/*
 * featherlb XDP data plane: one-arm full NAT for TCP services.
 *
 *   client → LB:   c:cp → vip:vp      becomes   vip:snat → be:bp    (forward table)
 *   backend → LB:  be:bp → vip:snat   becomes   vip:vp → c:cp       (reverse table)
 *
 * ICMP errors about a flow are translated and sent to the other side (icmp.h). Everything else (ARP,
 * IPv6, VLAN, other ICMP, non-TCP, fragments, IP options, the LB's own traffic) is passed to the kernel
 * untouched. This file only composes the headers:
 *   consts.h structs.h maps.h config.h counters.h (data)   parsing.h csum.h rewrite.h (packet)
 *   hash.h select.h (plan interpreter)   neigh.h (next hop)   flow.h (flow state)   snat.h (SNAT ports)
 *   tsmod.h (TCP timestamp modulation)   l4csum.h (partial checksums)   icmp.h (ICMP errors).
 */
#include <linux/bpf.h>
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "config.h"
#include "counters.h"
#include "parsing.h"
#include "csum.h"
#include "l4csum.h"
#include "rewrite.h"
#include "hash.h"
#include "select.h"
#include "neigh.h"
#include "flow.h"
#include "snat.h"
#include "tsmod.h"
#include "icmp.h"

/**
 * A SYN for no known flow: pick a backend, claim a SNAT port, record both directions. Returns the action
 * for the packet, or FLB_GO_ON when another CPU recorded this 4-tuple first (two copies of one SYN in
 * flight at once): the caller then carries the packet along that flow.
 */
static __always_inline int new_flow(struct xdp_md *ctx, const struct flb_config *cfg, struct packet *p,
				    const struct flow_key *fk, const struct svc_val *svc)
{
	__u32 s = svc->index;
	if (cfg_draining(cfg))
		return pass(REASON_DRAINING);

	int id = pick_backend(s, client_hash(fk->saddr));
	if (id < 0 || id >= (int)flb_sizes.backends) {
		struct flb_counters *c = svc_counters(s);
		if (c)
			c->no_backend += 1;
		return pass(REASON_NO_BACKEND);
	}
	__u32 bk = backend_key(s, id);
	struct backend *be = bpf_map_lookup_elem(&flb_backends, &bk);
	if (!be || !(be->flags & BACKEND_PRESENT))
		return pass(REASON_NO_BACKEND);
	__be32 be_addr = be->addr;
	__be16 be_port = be->port;

	/* Resolve L2 before creating state: an unknown neighbour leaves no half-made flow behind. */
	struct next_hop out = {};
	int action = resolve_l2(ctx, cfg, fk->daddr, be_addr, NULL, NULL, &out);
	if (action >= 0)
		return action;

	__be16 snat = alloc_snat_port(cfg, fk, be_addr, be_port);
	if (!snat) {
		struct flb_counters *c = svc_counters(s);
		if (c)
			c->snat_fail += 1;
		return pass(REASON_SNAT_EXHAUSTED);
	}
	__u32 now = now_seconds();
	out.at = now;
	struct flow_fwd f = {
		.be_addr = be_addr, .be_port = be_port, .snat_port = snat, .svc = s, .backend = id, .state = 0,
		.last_seen = now, .to_backend = out, /* .to_client: resolved by the first reply */
	};
	__builtin_memcpy(f.client_mac, p->eth->h_source, ETH_ALEN);
	__u8 *ts = ts_start_flow(ctx, p, &f);
	/* BPF_NOEXIST: the lookup in from_client and this insert are not atomic, so two CPUs can both get
	 * here for one 4-tuple. Exactly one insert wins; the other gives its SNAT port back and follows the
	 * winner, so a flow is counted (flows_new, be_active) once and never has two reverse entries. */
	long err = bpf_map_update_elem(&flb_fwd, fk, &f, BPF_NOEXIST);
	if (err != 0) {
		struct flow_key rk = {};
		reverse_key(fk, &f, &rk);
		bpf_map_delete_elem(&flb_rev, &rk);
		if (err == -EEXIST) {
			count_reason(REASON_SYN_RACE);
			return FLB_GO_ON;
		}
		return pass(REASON_SNAT_EXHAUSTED);
	}
	count_flow_open(s, id);
	count_packet(s, id, DIR_C2B, p->payload);
	count_reason(REASON_TX_C2B);
	if (ts)
		ts_field_add(p, ts, f.ts_off); /* TSval' = TSval + ts_off */
	rewrite(p, &out, fk->daddr, snat, be_addr, be_port);
	return transmit(ctx, &out);
}

/** Client → service address. */
static __always_inline int from_client(struct xdp_md *ctx, const struct flb_config *cfg, struct packet *p,
				       const struct svc_val *svc)
{
	struct flow_key fk = {
		.saddr = p->iph->saddr, .daddr = p->iph->daddr, .sport = p->tcph->source, .dport = p->tcph->dest,
	};
	struct flow_fwd *f = bpf_map_lookup_elem(&flb_fwd, &fk);
	if (f && flow_is_closed(f) && tcp_is_syn_only(p->tcph)) {
		/* The client reuses a 4-tuple whose flow has ended: start over. */
		struct flow_fwd old = *f;
		forget_flow(&fk, &old);
		f = NULL;
	}
	if (!f) {
		if (!tcp_is_syn_only(p->tcph))
			return pass(REASON_NO_FLOW);
		int action = new_flow(ctx, cfg, p, &fk, svc);
		if (action >= 0)
			return action;
		f = bpf_map_lookup_elem(&flb_fwd, &fk);
		if (!f)
			return pass(REASON_NO_FLOW);
	}

	__u32 now = now_seconds();
	struct next_hop out;
	int action = next_hop(ctx, cfg, &f->to_backend, now, fk.daddr, f->be_addr, NULL, NULL, &out);
	if (action >= 0)
		return action;
	touch_flow(f, now);
	int done = track_state(f, p->tcph, DIR_C2B);
	struct flow_fwd fv = *f;
	count_packet(fv.svc, fv.backend, DIR_C2B, p->payload);
	count_reason(REASON_TX_C2B);
	if (done)
		forget_flow(&fk, &fv);
	ts_modulate(ctx, p, &fv, DIR_C2B);
	rewrite(p, &out, fk.daddr, fv.snat_port, fv.be_addr, fv.be_port);
	return transmit(ctx, &out);
}

/** Backend → LB SNAT port. */
static __always_inline int from_backend(struct xdp_md *ctx, const struct flb_config *cfg, struct packet *p)
{
	struct flow_key rk = {
		.saddr = p->iph->saddr, .daddr = p->iph->daddr, .sport = p->tcph->source, .dport = p->tcph->dest,
	};
	struct flow_key fk;
	struct flow_fwd *f = flow_of_reverse(&rk, &fk);
	if (!f)
		return pass(REASON_NO_FLOW);

	struct flow_fwd fv = *f;
	__u8 ours[ETH_ALEN];
	__builtin_memcpy(ours, p->eth->h_dest, ETH_ALEN);
	__u32 now = now_seconds();
	struct next_hop out;
	int action = next_hop(ctx, cfg, &f->to_client, now, fk.daddr, fk.saddr, fv.client_mac, ours, &out);
	if (action >= 0)
		return action;
	touch_flow(f, now);
	int done = track_state(f, p->tcph, DIR_B2C);
	fv.state = f->state;
	count_packet(fv.svc, fv.backend, DIR_B2C, p->payload);
	count_reason(REASON_TX_B2C);
	if (done)
		forget_flow(&fk, &fv);
	ts_modulate(ctx, p, &fv, DIR_B2C);
	/* Back to the client as if it came from the service address. */
	rewrite(p, &out, fk.daddr, fk.dport, fk.saddr, fk.sport);
	return transmit(ctx, &out);
}

SEC("xdp")
int featherlb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct packet p = {};

	int action = parse_packet(data, data_end, &p);
	if (action >= 0)
		return action;

	struct flb_config *cfg = config();
	if (!cfg)
		return pass(REASON_NOT_OURS);
	/* ICMP (parse_packet leaves p.tcph NULL; tested on the pointer so the verifier sees it): icmp.h. */
	if (!p.tcph)
		return icmp_error(ctx, cfg, &p);

	struct svc_key sk = { .addr = p.iph->daddr, .port = p.tcph->dest, .pad = 0 };
	struct svc_val *svc = bpf_map_lookup_elem(&flb_svc, &sk);
	if (svc) {
		tcp_csum_classify(ctx, cfg, &p);
		return from_client(ctx, cfg, &p, svc);
	}
	if (cfg_is_snat_port(cfg, p.tcph->dest)) {
		tcp_csum_classify(ctx, cfg, &p);
		return from_backend(ctx, cfg, &p);
	}
	return pass(REASON_NOT_OURS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
