// SPDX-License-Identifier: MIT
/*
 * featherlb XDP data plane: one-arm full NAT for TCP services.
 *
 *   client → LB:   c:cp → vip:vp      becomes   lb:snat → be:bp     (forward table)
 *   backend → LB:  be:bp → lb:snat    becomes   vip:vp → c:cp       (reverse table)
 *
 * lb is the SNAT address (flb_config.snat_addr: xdp.snat_address, by default the interface's own
 * address), not the service address: behind ECMP every instance holds the VIP, and a backend's replies
 * must come back to the instance that owns the flow (docs/scale-out.md).
 *
 * ICMP errors about a flow are translated and sent to the other side (icmp.h). Everything else (ARP,
 * IPv6, VLAN, other ICMP, non-TCP, fragments, IP options, the LB's own traffic) is passed to the kernel
 * untouched; a service SYN never is (answer.h). This file only composes the headers:
 *   consts.h structs.h maps.h config.h counters.h (data)   parsing.h csum.h l4csum.h rewrite.h answer.h
 *   (packet)   hash.h select.h (plan interpreter)   neigh.h (next hop)   flow.h (flow state)   snat.h
 *   (SNAT ports)   tcpopt.h tsmod.h (TCP options, timestamp modulation)   icmp.h (ICMP errors).
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
#include "answer.h"
#include "hash.h"
#include "select.h"
#include "neigh.h"
#include "flow.h"
#include "snat.h"
#include "tcpopt.h"
#include "tsmod.h"
#include "icmp.h"

/* The backend a SYN picked (pick_for_syn), with the next hop toward it. */
struct picked {
	int id;        /* backend id within the service */
	__u32 bk;      /* its backend_key */
	__be32 addr;
	__be16 port;
	__u32 gen;     /* the slot's generation (struct backend.gen) */
	struct next_hop out;
};

/**
 * The first steps of every new flow, NAT or DSR (dsr.h): draining, the plan's pick, the backend's
 * address and the L2 next hop toward it from `src` (the SNAT address for NAT, the service address for
 * DSR, whose packets keep the client's). FLB_GO_ON with *pk filled, or the action for the SYN (an RST
 * built in place, or a drop): an unknown neighbour leaves no half-made flow behind.
 */
static __always_inline int pick_for_syn(struct xdp_md *ctx, const struct flb_config *cfg, struct packet *p,
					const struct flow_key *fk, __u32 s, __be32 src, struct picked *pk)
{
	if (cfg_draining(cfg))
		return answer_syn(ctx, p, s, REASON_DRAINING);

	int id = pick_backend(s, client_hash(fk->saddr));
	if (id < 0 || id >= (int)flb_sizes.backends)
		return answer_syn(ctx, p, s, REASON_NO_BACKEND);
	pk->id = id;
	pk->bk = backend_key(s, id);
	struct backend *be = bpf_map_lookup_elem(&flb_backends, &pk->bk);
	if (!be || !(be->flags & BACKEND_PRESENT))
		return answer_syn(ctx, p, s, REASON_NO_BACKEND);
	pk->addr = be->addr;
	pk->port = be->port;
	pk->gen = be->gen;

	int rc = resolve_l2(ctx, cfg, src, pk->addr, NULL, NULL, &pk->out);
	if (rc == NH_NO_NEIGH)
		return svc_drop(s, REASON_NO_NEIGH); /* the managed neighbour entry resolves it; the client retransmits */
	if (rc != FLB_GO_ON)
		return answer_syn(ctx, p, s, REASON_FIB_FAIL);
	return FLB_GO_ON;
}

/** Whether flow `f`'s backend is still the one in its slot and in the service's pick set. */
static __always_inline int backend_eligible(const struct flow_fwd *f)
{
	if (f->backend >= flb_sizes.backends)
		return 0;
	__u32 bk = backend_key(f->svc, f->backend);
	const struct backend *be = bpf_map_lookup_elem(&flb_backends, &bk);
	return be && (be->flags & BACKEND_ELIGIBLE) && be->gen == f->gen && be->addr == f->be_addr && be->port == f->be_port;
}

/**
 * Whether a retransmitted SYN of handshake `f` is to be balanced anew (counted syn_moved; the caller
 * forgets the handshake, NAT or DSR): its backend never answered and has left the pick set since (a
 * health check took it out, a reload removed it). So the client's connect() rides out a dead backend
 * instead of retransmitting into it until it gives up; nothing reached a socket yet, so nothing breaks.
 */
static __always_inline int syn_moves(const struct flow_fwd *f)
{
	if ((f->state & (FLOW_SYNACK | FLOW_PROMOTING)) || backend_eligible(f))
		return 0;
	count_svc_reason(f->svc, REASON_SYN_MOVED);
	return 1;
}

#include "dsr.h"

/**
 * A SYN for no known flow: pick a backend, claim a SNAT port, record the handshake (flb_syn_fwd,
 * flb_syn_rev). Returns the action for the packet, or FLB_GO_ON when another CPU recorded this 4-tuple
 * first (two copies of one SYN in flight at once): the caller then carries the packet along that flow.
 * Every SYN ends here, in XDP: transmitted to a backend, answered with an RST, or dropped (answer.h).
 */
static __always_inline int new_flow(struct xdp_md *ctx, const struct flb_config *cfg, struct packet *p,
				    const struct flow_key *fk, __u32 s)
{
	__be32 snat_addr = cfg->snat_addr; /* this instance's own source address, kept in the flow */
	struct picked pk = {};
	int action = pick_for_syn(ctx, cfg, p, fk, s, snat_addr, &pk);
	if (action >= 0)
		return action;
	int id = pk.id;
	__u32 bk = pk.bk;
	__be32 be_addr = pk.addr;
	__be16 be_port = pk.port;
	__u32 gen = pk.gen;
	struct next_hop out = pk.out;

	__u32 now = now_seconds();
	out.at = now;
	struct seg g;
	seg_of(p, &g);
	struct flow_fwd f = {
		.id = new_flow_id(), .be_addr = be_addr, .be_port = be_port, .svc = s, .backend = id, .gen = gen,
		.last_seen = now, .to_backend = out, /* .to_client: resolved by the first reply */
		.snat_addr = snat_addr,
	};
	__builtin_memcpy(f.client_mac, p->eth->h_source, ETH_ALEN);
	track_syn(&f, &g, syn_wscale(ctx, p));
	__u8 *ts = ts_start_flow(ctx, p, &f);

	f.snat_port = alloc_snat_port(cfg, fk, f.id, snat_addr, be_addr, be_port, bk, now);
	if (!f.snat_port)
		return svc_drop(s, REASON_SNAT_EXHAUSTED); /* transient: ports come back within seconds */
	/* BPF_NOEXIST: the lookups in from_client and this insert are not atomic, so two CPUs can both get
	 * here for one 4-tuple. Exactly one insert wins; the other gives its SNAT port back and follows the
	 * winner, so a 4-tuple never has two handshakes and a port never two owners. */
	long err = bpf_map_update_elem(&flb_syn_fwd, fk, &f, BPF_NOEXIST);
	if (err != 0) {
		struct flow_key rk = {};
		reverse_key(fk, &f, &rk);
		bpf_map_delete_elem(&flb_syn_rev, &rk); /* ours: claimed a moment ago, nobody takes it (snat.h) */
		if (err == -EEXIST) {
			count_svc_reason(s, REASON_SYN_RACE);
			return FLB_GO_ON;
		}
		return svc_drop(s, REASON_SYN_BUSY);
	}
	count_packet(s, id, DIR_C2B, p->payload);
	count_svc_reason(s, REASON_TX_C2B);
	if (ts)
		ts_field_add(p, ts, f.ts_off); /* TSval' = TSval + ts_off */
	rewrite(p, &out, snat_addr, f.snat_port, be_addr, be_port);
	return transmit(ctx, &out);
}

/* What the checks of a flow's stage decided for a packet it carries. */
struct verdict {
	int established;       /* the flow is in the established tables (else the handshake tables) */
	int promoted;          /* … because this packet moved it there (its entries were just made a pair) */
	int forget;            /* delete the flow's entries once the packet is rewritten */
	enum flb_reason event; /* an event to count with it, or REASON_MAX */
};

/**
 * A packet of established flow `f` (in flb_fwd under `fk`) travelling in `dir`: FLB_GO_ON when it is to
 * be rewritten (after the RST/FIN/ACK rules of track_seq), else the action. A client packet also needs
 * the flow's reverse entry to name it (a backend packet found the flow through it).
 */
static __always_inline int check_established(struct packet *p, const struct flow_key *fk, struct flow_fwd *f, int dir,
					     struct verdict *v)
{
	if (dir == DIR_C2B && !v->promoted && !pair_ok(&flb_rev, fk, f)) {
		/* The reverse entry was evicted or taken over: the flow cannot be carried any more. Forget it
		 * and let the kernel answer with an RST, so the client learns at once. */
		struct flow_fwd old = *f;
		close_flow(f);
		forget_flow(fk, &old);
		return svc_pass(old.svc, REASON_PAIR_MISMATCH);
	}
	int t = track_seq(f, p, dir, &v->event);
	if (t == TRACK_DROP)
		return svc_drop(f->svc, REASON_RST_OUT_OF_WINDOW);
	v->forget = t == TRACK_FORGET;
	return FLB_GO_ON;
}

/**
 * A client packet of handshake `sf` (in flb_syn_fwd under `fk`): a retransmitted SYN goes the same way;
 * the ACK of the backend's SYN-ACK moves the flow to the established tables (promote: v->established,
 * the caller finds it there); an RST that fits ends it; anything else is dropped (the handshake is not
 * done). FLB_GO_ON or the action.
 */
static __always_inline int check_handshake_c2b(struct packet *p, const struct flow_key *fk, struct flow_fwd *sf,
					       __u32 now, struct verdict *v)
{
	__u32 svc = sf->svc;
	const struct tcphdr *t = p->tcph;
	struct seg g;
	seg_of(p, &g);
	if (completes_handshake(sf, t, &g)) {
		enum flb_reason why = REASON_SYN_BUSY;
		touch_flow(sf, now);
		if (promote(fk, sf, now, &why) != 0)
			return why == REASON_PAIR_MISMATCH ? svc_pass(svc, why) : svc_drop(svc, why);
		v->established = 1;
		v->promoted = why != REASON_SYN_BUSY; /* not when another CPU did it */
		return FLB_GO_ON;
	}
	if (sf->state & FLOW_PROMOTING)
		return svc_drop(svc, REASON_SYN_BUSY);
	if (t->rst) {
		if (!handshake_rst_ok(sf, t, &g, DIR_C2B))
			return svc_drop(svc, REASON_RST_OUT_OF_WINDOW);
		v->forget = 1;
	} else if (!tcp_is_syn_only(t)) {
		return svc_drop(svc, REASON_BAD_HANDSHAKE);
	} else if (!(sf->state & FLOW_SYNACK) && g.end != sf->c2b.end) {
		track_syn(sf, &g, sf->c2b.wscale); /* a SYN with a new ISN on this 4-tuple: follow it */
	}
	return FLB_GO_ON;
}

/**
 * A backend packet of handshake `sf`: its SYN-ACK (which must acknowledge the SYN) or an RST that fits.
 * A plain ACK before any SYN-ACK that does not acknowledge the SYN comes from a socket the backend still
 * holds for an older connection on this 4-tuple (RFC 5961 §4: a SYN for an established connection gets
 * a "challenge ACK"), e.g. of a flow broken when the SNAT address and port were last used by an instance
 * that stopped, or of one the LB forgot: answered with an RST from its ACK number, as the client's own
 * TCP in SYN-SENT would do (RFC 9293 §3.10.7.3), so the stale socket closes and the client's next SYN
 * (retransmitted within a second) gets a SYN-ACK. Otherwise that socket would answer every SYN so.
 */
static __always_inline int check_handshake_b2c(struct xdp_md *ctx, struct packet *p, struct flow_fwd *sf, struct verdict *v)
{
	__u32 svc = sf->svc;
	const struct tcphdr *t = p->tcph;
	struct seg g;
	seg_of(p, &g);
	if (sf->state & (FLOW_DEAD | FLOW_PROMOTING))
		return svc_drop(svc, REASON_SYN_BUSY);
	if (t->ack && !t->syn && !t->rst && !(sf->state & FLOW_SYNACK) && !seq_within(g.ack, sf->b2c.ack, sf->c2b.end))
		return answer_stale(ctx, p, svc);
	if (t->rst) {
		if (!handshake_rst_ok(sf, t, &g, DIR_B2C))
			return svc_drop(svc, REASON_RST_OUT_OF_WINDOW);
		v->forget = 1;
	} else if (!(t->syn && t->ack) || track_synack(sf, &g, syn_wscale(ctx, p)) != 0) {
		return svc_drop(svc, REASON_BAD_HANDSHAKE);
	}
	return FLB_GO_ON;
}

/** Forget flow `f` from the tables of its stage (its entries, by id). */
static __always_inline void forget_stage(const struct flow_key *fk, const struct flow_fwd *f, const struct verdict *v)
{
	if (v->established)
		forget_flow(fk, f);
	else
		forget_handshake(fk, f);
}

/**
 * Client → service address: the flow's stage decides (check_*), then the one rewrite toward the backend.
 * Each piece is inlined once: a handshake ACK goes through both checks, every packet through one tail.
 */
static __always_inline int from_client(struct xdp_md *ctx, const struct flb_config *cfg, struct packet *p,
				       const struct svc_val *svc)
{
	struct flow_key fk = {
		.saddr = p->iph->saddr, .daddr = p->iph->daddr, .sport = p->tcph->source, .dport = p->tcph->dest,
	};
	__u32 s = svc->index;
	__u32 now = now_seconds();
	int syn = tcp_is_syn_only(p->tcph);
	struct verdict v = { .event = REASON_MAX };
	int action;

	struct flow_fwd *f = bpf_map_lookup_elem(&flb_fwd, &fk);
	if (f && flow_is_closed(f) && syn) {
		/* The client reuses a 4-tuple whose flow has ended: start over. */
		struct flow_fwd old = *f;
		forget_flow(&fk, &old);
		f = NULL;
	}
	if (f) {
		v.established = 1;
	} else {
		f = bpf_map_lookup_elem(&flb_syn_fwd, &fk);
		/* A handshake carries on unless it was abandoned (its port taken back) or lost its port
		 * otherwise (its reverse entry evicted); one being promoted has handed its entry on already. */
		if (f && ((f->state & FLOW_DEAD) || !((f->state & FLOW_PROMOTING) || pair_ok(&flb_syn_rev, &fk, f)))) {
			struct flow_fwd old = *f; /* start over: a SYN makes a new handshake, anything else finds no flow */
			forget_handshake(&fk, &old);
			f = NULL;
		} else if (f && syn && syn_moves(f)) {
			struct flow_fwd old = *f;
			forget_handshake(&fk, &old);
			f = NULL;
		}
		if (!f) {
			if (svc->flags & SVC_RETIRED)
				return pass(REASON_NOT_OURS); /* a reload removed the service: only its open flows are ours */
			if (!syn)
				return svc_pass(s, REASON_NO_FLOW);
			action = new_flow(ctx, cfg, p, &fk, s);
			if (action >= 0)
				return action;
			f = bpf_map_lookup_elem(&flb_syn_fwd, &fk); /* another CPU's, a moment old: follow it */
			if (!f)
				return svc_drop(s, REASON_SYN_BUSY);
		}
		action = check_handshake_c2b(p, &fk, f, now, &v);
		if (action >= 0)
			return action;
		if (v.established) {
			f = bpf_map_lookup_elem(&flb_fwd, &fk); /* promoted: on as an established packet */
			if (!f)
				return svc_drop(s, REASON_SYN_BUSY);
		}
	}
	if (v.established) {
		action = check_established(p, &fk, f, DIR_C2B, &v);
		if (action >= 0)
			return action;
	}

	struct next_hop out;
	int rc = next_hop(ctx, cfg, &f->to_backend, now, f->snat_addr, f->be_addr, NULL, NULL, &out);
	if (rc != FLB_GO_ON)
		return hop_failed(f->svc, rc);
	touch_flow(f, now);
	struct flow_fwd fv = *f;
	count_packet(fv.svc, fv.backend, DIR_C2B, p->payload);
	count_svc_reason(fv.svc, REASON_TX_C2B);
	if (v.event != REASON_MAX)
		count_svc_reason(fv.svc, v.event);
	if (v.forget)
		forget_stage(&fk, &fv, &v);
	ts_modulate(ctx, p, &fv, DIR_C2B);
	rewrite(p, &out, fv.snat_addr, fv.snat_port, fv.be_addr, fv.be_port);
	return transmit(ctx, &out);
}

/** Backend → LB SNAT address and port: the established flow that owns the port, else the handshake
 * that does (the reverse key holds the SNAT address, so a packet to any other address finds none);
 * rewritten back to the client as if from the service. */
static __always_inline int from_backend(struct xdp_md *ctx, const struct flb_config *cfg, struct packet *p)
{
	struct flow_key rk = {
		.saddr = p->iph->saddr, .daddr = p->iph->daddr, .sport = p->tcph->source, .dport = p->tcph->dest,
	};
	struct flow_key fk = {};
	struct verdict v = { .event = REASON_MAX };
	struct flow_fwd *f = flow_of_reverse(&rk, &fk, &v.established);
	if (!f)
		return pass(REASON_NO_FLOW_BACKEND);
	int action = v.established ? check_established(p, &fk, f, DIR_B2C, &v) : check_handshake_b2c(ctx, p, f, &v);
	if (action >= 0)
		return action;

	__u8 ours[ETH_ALEN];
	__builtin_memcpy(ours, p->eth->h_dest, ETH_ALEN);
	__u8 client_mac[ETH_ALEN];
	__builtin_memcpy(client_mac, f->client_mac, ETH_ALEN);
	__u32 now = now_seconds();
	struct next_hop out;
	int rc = next_hop(ctx, cfg, &f->to_client, now, fk.daddr, fk.saddr, client_mac, ours, &out);
	if (rc != FLB_GO_ON)
		return hop_failed(f->svc, rc);
	/* A handshake lives on its client's packets: the backend retransmits its SYN-ACK for half a minute
	 * to a client that is gone (a spoofed SYN), which must not keep it. */
	if (v.established)
		touch_flow(f, now);
	struct flow_fwd fv = *f;
	count_packet(fv.svc, fv.backend, DIR_B2C, p->payload);
	count_svc_reason(fv.svc, REASON_TX_B2C);
	if (v.event != REASON_MAX)
		count_svc_reason(fv.svc, v.event);
	if (v.forget)
		forget_stage(&fk, &fv, &v);
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
		tcp_csum_classify(ctx, cfg, &p); /* DSR too: natively attached, a partial checksum is completed */
		if (svc->flags & SVC_DSR)
			return dsr_from_client(ctx, cfg, &p, svc);
		return from_client(ctx, cfg, &p, svc);
	}
	if (cfg_is_snat_port(cfg, p.tcph->dest)) {
		tcp_csum_classify(ctx, cfg, &p);
		return from_backend(ctx, cfg, &p);
	}
	return pass(REASON_NOT_OURS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
