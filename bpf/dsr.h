/* SPDX-License-Identifier: MIT */
/*
 * Direct server return, L2 (`forwarding: dsr`, the IPVS-DR model): a client packet of a DSR service
 * gets only its MAC addresses rewritten, to the next hop toward the chosen backend (the backend's own
 * MAC: it must share the LB interface's subnet, which the loader checks), and is transmitted. The IP
 * header and the TCP segment are untouched (no SNAT, no timestamp modulation, no checksum change); the
 * backend holds the service address on a non-ARPing interface and answers the client directly, so
 * the LB never sees the backend's side.
 *
 *   client c:cp → vip:vp  ──XDP (MACs only)──▶  backend (holds vip on lo)  ──▶  client, from vip:vp
 *
 * Flows live in the same tables as NAT flows (flb_syn_fwd, then flb_fwd), marked FLOW_DSR, keyed by the
 * client's 4-tuple, with no reverse entry (snat_port 0: nothing comes back to a SNAT port). What one
 * direction allows (bpf/README.md "Direct server return"):
 * - a SYN for an unknown 4-tuple picks a backend (pick_for_syn) and records a handshake in flb_syn_fwd,
 *   so a SYN flood churns the handshake table only; a retransmitted SYN goes the same way;
 * - the client's first ACK (no SYN, no RST) moves it to flb_fwd and counts it (flows_new, the active
 *   gauge): the LB never sees the SYN-ACK, so this is the best it can know that a connection exists;
 *   a handshake with no client packet for SYN_TIMEOUT_S is deleted by the sweeper;
 * - the client's FIN or RST closes the flow (the gauge −1 once, FLOW_CLOSED) but the entry stays, so
 *   the client's last ACKs and retransmissions still reach the same backend; the sweeper deletes it
 *   once it saw no client packet for the service's half_close_timeout (a half-closed download's ACKs
 *   look like the last ACK), an open flow after the service's idle timeout;
 *   a SYN on a closed flow's 4-tuple starts a new flow. Without the backend's side there is no window
 *   to check an RST or FIN against, so they close nothing but the count: the backend judges them (RFC
 *   5961) and a spoofed one costs no connection.
 */
#ifndef FLB_DSR_H
#define FLB_DSR_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include "counters.h"
#include "flow.h"
#include "neigh.h"
#include "parsing.h"

/** Send a DSR packet on with the hop's MACs: nothing in IP or TCP changes, so no checksum does. */
static __always_inline int dsr_transmit(struct xdp_md *ctx, struct packet *p, const struct next_hop *out)
{
	__builtin_memcpy(p->eth->h_dest, out->dmac, ETH_ALEN);
	__builtin_memcpy(p->eth->h_source, out->smac, ETH_ALEN);
	return transmit(ctx, out);
}

/** Delete DSR flow `f` from `fwd` (flb_fwd or flb_syn_fwd) if the entry under `fk` is still its (by id). */
static __always_inline void dsr_forget(void *fwd, const struct flow_key *fk, const struct flow_fwd *f)
{
	struct flow_fwd *cur = bpf_map_lookup_elem(fwd, fk);
	if (cur && cur->id == f->id)
		bpf_map_delete_elem(fwd, fk);
}

/**
 * A SYN for no known DSR flow: pick a backend and record the handshake in flb_syn_fwd (BPF_NOEXIST: two
 * copies of one SYN on two CPUs make one handshake). The action, or FLB_GO_ON when another CPU recorded
 * it first (the caller follows that one).
 */
static __always_inline int dsr_new_flow(struct xdp_md *ctx, const struct flb_config *cfg, struct packet *p,
					const struct flow_key *fk, __u32 s, __u32 now)
{
	struct picked pk = {};
	int action = pick_for_syn(ctx, cfg, p, fk, s, fk->daddr, &pk);
	if (action >= 0)
		return action;
	pk.out.at = now;
	struct flow_fwd f = {
		.id = new_flow_id(), .be_addr = pk.addr, .be_port = pk.port, .svc = s, .backend = pk.id, .gen = pk.gen,
		.state = FLOW_DSR, .last_seen = now, .to_backend = pk.out,
	};
	__builtin_memcpy(f.client_mac, p->eth->h_source, ETH_ALEN);
	long err = bpf_map_update_elem(&flb_syn_fwd, fk, &f, BPF_NOEXIST);
	if (err == -EEXIST) {
		count_svc_reason(s, REASON_SYN_RACE);
		return FLB_GO_ON;
	}
	if (err != 0)
		return svc_drop(s, REASON_SYN_BUSY);
	count_packet(s, pk.id, DIR_C2B, p->payload);
	count_svc_reason(s, REASON_TX_C2B);
	return dsr_transmit(ctx, p, &pk.out);
}

/**
 * The client's first ACK of DSR handshake `sf` (in flb_syn_fwd under `fk`): the flow moves to flb_fwd
 * and is counted. FLOW_PROMOTING by compare-and-swap makes one CPU do it; another CPU's packet goes on
 * if the move is done, else it is dropped (TCP retransmits). 0, or -1 (drop).
 */
static __always_inline int dsr_promote(const struct flow_key *fk, struct flow_fwd *sf, __u32 now)
{
	__u32 st = sf->state;
	if ((st & FLOW_PROMOTING) || __sync_val_compare_and_swap(&sf->state, st, st | FLOW_PROMOTING) != st)
		return bpf_map_lookup_elem(&flb_fwd, fk) ? 0 : -1;
	struct flow_fwd f = *sf;
	f.state = FLOW_DSR;
	f.last_seen = now;
	int rc = insert_established(fk, &f);
	dsr_forget(&flb_syn_fwd, fk, &f);
	if (rc != 0)
		return -1;
	count_svc_reason(f.svc, REASON_ESTABLISHED);
	return 0;
}

/**
 * Client → service address of a DSR service (svc->flags & SVC_DSR). Every outcome is counted for the
 * service, as in from_client; the backend → client counters stay at zero (those packets never come here).
 */
static __always_inline int dsr_from_client(struct xdp_md *ctx, const struct flb_config *cfg, struct packet *p,
					   const struct svc_val *svc)
{
	struct flow_key fk = {
		.saddr = p->iph->saddr, .daddr = p->iph->daddr, .sport = p->tcph->source, .dport = p->tcph->dest,
	};
	const struct tcphdr *t = p->tcph;
	__u32 s = svc->index;
	__u32 now = now_seconds();
	int syn = tcp_is_syn_only(t);

	struct flow_fwd *f = bpf_map_lookup_elem(&flb_fwd, &fk);
	if (f && flow_is_closed(f) && syn) {
		/* The client reuses the 4-tuple of a flow that ended: start over. */
		struct flow_fwd old = *f;
		dsr_forget(&flb_fwd, &fk, &old);
		f = NULL;
	}
	int established = f != NULL;
	if (!f) {
		f = bpf_map_lookup_elem(&flb_syn_fwd, &fk);
		if (f && syn && syn_moves(f)) {
			struct flow_fwd old = *f;
			dsr_forget(&flb_syn_fwd, &fk, &old);
			f = NULL;
		}
		if (!f) {
			if (svc->flags & SVC_RETIRED)
				return pass(REASON_NOT_OURS); /* a reload removed the service: only its open flows are ours */
			if (!syn)
				return svc_pass(s, REASON_NO_FLOW);
			int action = dsr_new_flow(ctx, cfg, p, &fk, s, now);
			if (action >= 0)
				return action;
			f = bpf_map_lookup_elem(&flb_syn_fwd, &fk); /* another CPU's, a moment old: follow it */
			if (!f)
				return svc_drop(s, REASON_SYN_BUSY);
		} else if (t->ack && !t->syn && !t->rst) {
			if (dsr_promote(&fk, f, now) != 0)
				return svc_drop(s, REASON_SYN_BUSY);
			f = bpf_map_lookup_elem(&flb_fwd, &fk);
			if (!f)
				return svc_drop(s, REASON_SYN_BUSY);
			established = 1;
		} else if (t->rst) {
			/* The client gives the handshake up: the backend judges the RST, the entry goes. */
			struct next_hop out;
			struct flow_fwd old = *f;
			int rc = next_hop(ctx, cfg, &f->to_backend, now, fk.daddr, old.be_addr, NULL, NULL, &out);
			if (rc != FLB_GO_ON)
				return hop_failed(s, rc);
			dsr_forget(&flb_syn_fwd, &fk, &old);
			count_packet(s, old.backend, DIR_C2B, p->payload);
			count_svc_reason(s, REASON_TX_C2B);
			return dsr_transmit(ctx, p, &out);
		}
	}
	if (established && (t->fin || t->rst))
		close_flow(f); /* an established flow: once (FLOW_CLOSED); the entry lingers for the last ACKs */

	struct next_hop out;
	int rc = next_hop(ctx, cfg, &f->to_backend, now, fk.daddr, f->be_addr, NULL, NULL, &out);
	if (rc != FLB_GO_ON)
		return hop_failed(f->svc, rc);
	touch_flow(f, now);
	count_packet(f->svc, f->backend, DIR_C2B, p->payload);
	count_svc_reason(f->svc, REASON_TX_C2B);
	return dsr_transmit(ctx, p, &out);
}

#endif
