/* SPDX-License-Identifier: MIT */
/*
 * Flow state: the two tables a flow lives in (handshake, then established), the pair of entries of a
 * flow (forward and reverse, tied by one id), TCP sequence tracking per direction, and the RST/FIN/ACK
 * rules that end a flow exactly once. The why of it: bpf/README.md "Flows".
 *
 * Concurrency: packets of one flow can run on several CPUs at once. State bits change only with atomic
 * fetch-or / compare-and-swap; entries are inserted with BPF_NOEXIST or taken over with a
 * compare-and-swap on the reverse entry's id (snat.h); the sequence fields are plain loads and stores
 * that only move forward (a lost race leaves a value a packet behind: the next packet corrects it).
 */
#ifndef FLB_FLOW_H
#define FLB_FLOW_H

#include <linux/bpf.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "counters.h"
#include "maps.h"
#include "parsing.h"
#include "tcpopt.h"

/* A window scale absent from a SYN (RFC 7323 §2.2); the largest one honoured is 14 (§2.3). */
#define WSCALE_NONE 0xff
#define WSCALE_MAX 14

/* ---- time ---- */

/** CLOCK_MONOTONIC in seconds (the coarse clock is enough for idle expiry and cheaper). */
static __always_inline __u32 now_seconds(void)
{
	return (__u32)(bpf_ktime_get_coarse_ns() / 1000000000ULL);
}

/** Refresh last_seen, writing only when the second changed (avoids dirtying a shared cache line per packet). */
static __always_inline void touch_flow(struct flow_fwd *f, __u32 now)
{
	if (f->last_seen != now)
		f->last_seen = now;
}

/** More than `limit` seconds between `then` and `now` (signed: a `then` stamped a moment later by
 * another CPU is not "long ago"). */
static __always_inline int older_than(__u32 then, __u32 now, __u32 limit)
{
	return (__s32)(now - then) > (__s32)limit;
}

/* ---- the pair of entries ---- */

/** The reverse-table key of a flow: what the backend's replies look like. */
static __always_inline void reverse_key(const struct flow_key *fk, const struct flow_fwd *f, struct flow_key *rk)
{
	rk->saddr = f->be_addr;
	rk->daddr = f->snat_addr; /* the LB's source toward the backend (not the service IP: scale-out.md) */
	rk->sport = f->be_port;
	rk->dport = f->snat_port;
}

/** A new flow id: this CPU's counter (from 1) in the high 48 bits, the CPU in the low 16; never 0 (0 = no owner). */
static __always_inline __u64 new_flow_id(void)
{
	__u32 zero = 0;
	struct cpu_state *cs = bpf_map_lookup_elem(&flb_cpu, &zero);
	if (!cs)
		return 0;
	cs->next_id += 1;
	return (cs->next_id << 16) | (bpf_get_smp_processor_id() & 0xffff);
}

/**
 * Does `rev` (a reverse table) still name flow `f` as the owner of its port? A packet is rewritten only
 * if it does: an entry evicted from one table (LRU) or taken over by another flow breaks the pair, and
 * then neither half may carry bytes (they could reach another client's connection).
 */
static __always_inline int pair_ok(void *rev, const struct flow_key *fk, const struct flow_fwd *f)
{
	struct flow_key rk = {};
	reverse_key(fk, f, &rk);
	struct flow_rev *r = bpf_map_lookup_elem(rev, &rk);
	return r && r->id == f->id;
}

/**
 * The flow owning `rk` (a backend → LB SNAT port 4-tuple) in reverse table `rev` (its flows in `fwd`),
 * if both entries agree (same id): its forward key in *fk, or NULL.
 */
static __always_inline struct flow_fwd *owner_of(void *rev, void *fwd, const struct flow_key *rk, struct flow_key *fk)
{
	struct flow_rev *r = bpf_map_lookup_elem(rev, rk);
	if (!r)
		return NULL;
	*fk = r->fwd;
	__u64 id = r->id;
	struct flow_fwd *f = bpf_map_lookup_elem(fwd, fk);
	return f && f->id == id ? f : NULL;
}

/**
 * The flow a backend-side 4-tuple `rk` belongs to, as replies (from_backend) and ICMP errors (icmp.h)
 * find it: the established flow that owns the port, else the handshake that does (*established says
 * which); its forward key in *fk. NULL when neither pair agrees.
 */
static __always_inline struct flow_fwd *flow_of_reverse(const struct flow_key *rk, struct flow_key *fk, int *established)
{
	struct flow_fwd *f = owner_of(&flb_rev, &flb_fwd, rk, fk);
	*established = f != NULL;
	if (f)
		return f;
	return owner_of(&flb_syn_rev, &flb_syn_fwd, rk, fk);
}

/**
 * Is the owner of reverse entry `r` (in forward table `fwd`) gone? It is if the forward entry is absent
 * (evicted, deleted) once the claim is REV_CLAIM_GRACE_S old, or belongs to another flow now.
 */
static __always_inline int rev_owner_gone(void *fwd, const struct flow_rev *r, __u64 id, __u32 since, __u32 now)
{
	struct flow_key ok = r->fwd;
	struct flow_fwd *o = bpf_map_lookup_elem(fwd, &ok);
	if (!o)
		return older_than(since, now, REV_CLAIM_GRACE_S);
	return o->id != id;
}

/**
 * Make `rv` the owner of `rk` in reverse table `rev` (whose flows live in `fwd`): insert it if absent,
 * or take over an entry whose owner is gone, with a compare-and-swap on its id so that of two CPUs
 * taking it at once exactly one succeeds. Returns 0, or -1 when a live flow owns the port.
 *
 * After the id swap the forward key is written with plain stores: a reader that sees the new id with
 * the old (or a torn) key looks up a flow whose id differs and treats the pair as broken (pair_ok).
 */
static __always_inline int claim_rev(void *rev, void *fwd, const struct flow_key *rk, const struct flow_rev *rv,
				     __u32 now)
{
	if (bpf_map_update_elem(rev, rk, rv, BPF_NOEXIST) == 0)
		return 0;
	struct flow_rev *cur = bpf_map_lookup_elem(rev, rk);
	if (!cur)
		return bpf_map_update_elem(rev, rk, rv, BPF_NOEXIST) == 0 ? 0 : -1;
	__u64 old = cur->id;
	if (old == rv->id)
		return 0;
	if (!rev_owner_gone(fwd, cur, old, cur->since, now))
		return -1;
	if (__sync_val_compare_and_swap(&cur->id, old, rv->id) != old)
		return -1;
	cur->fwd = rv->fwd;
	cur->since = rv->since;
	return 0;
}

/** A port toward a backend slot came free: SYNs toward it search the SNAT range again (snat.h). */
static __always_inline void port_freed(__u32 svc, __u32 backend)
{
	__u32 k = backend_key(svc, backend);
	__u64 *full = bpf_map_lookup_elem(&flb_snat_full, &k);
	if (full && *full)
		*full = 0;
}

/**
 * Remove a flow's two entries from tables `rev` and `fwd`, each only if it is still this flow's (by
 * id). The reverse entry goes first: while the forward entry exists with this id nobody takes the port
 * over (rev_owner_gone), so the delete cannot hit a new owner's entry.
 */
static __always_inline void forget_pair(void *rev, void *fwd, const struct flow_key *fk, const struct flow_fwd *f)
{
	struct flow_key rk = {};
	reverse_key(fk, f, &rk);
	struct flow_rev *r = bpf_map_lookup_elem(rev, &rk);
	if (r && r->id == f->id)
		bpf_map_delete_elem(rev, &rk);
	struct flow_fwd *cur = bpf_map_lookup_elem(fwd, fk);
	if (cur && cur->id == f->id)
		bpf_map_delete_elem(fwd, fk);
	port_freed(f->svc, f->backend);
}

/** Remove an established flow (after an exact RST, the ACK of the last FIN, or a broken pair). */
static __always_inline void forget_flow(const struct flow_key *fk, const struct flow_fwd *f)
{
	forget_pair(&flb_rev, &flb_fwd, fk, f);
}

/** Remove a handshake (an RST during it, or a lost port). */
static __always_inline void forget_handshake(const struct flow_key *fk, const struct flow_fwd *f)
{
	forget_pair(&flb_syn_rev, &flb_syn_fwd, fk, f);
}

/** Mark a flow closed; the first caller (atomic fetch-or) decrements the active count. */
static __always_inline void close_flow(struct flow_fwd *f)
{
	__u32 old = __sync_fetch_and_or(&f->state, FLOW_CLOSED);
	if (!(old & FLOW_CLOSED))
		count_flow_close(f->svc, f->backend, f->gen, old & FLOW_COUNTED);
}

static __always_inline int flow_is_closed(const struct flow_fwd *f) { return f->state & FLOW_CLOSED; }

/* ---- sequence numbers (RFC 9293 §3.4: arithmetic modulo 2^32) ---- */

static __always_inline int seq_before(__u32 a, __u32 b) { return (__s32)(a - b) < 0; }
static __always_inline int seq_after(__u32 a, __u32 b) { return (__s32)(b - a) < 0; }

/** lo ≤ x ≤ hi in sequence space; a range whose hi is before lo holds lo only. */
static __always_inline int seq_within(__u32 x, __u32 lo, __u32 hi)
{
	if ((__s32)(hi - lo) < 0)
		return x == lo;
	return x - lo <= hi - lo;
}

/* A segment's numbers, host order. */
struct seg {
	__u32 seq;
	__u32 end; /* seq + data + 1 for SYN + 1 for FIN */
	__u32 ack;
	__u32 win; /* the raw window field */
};

static __always_inline void seg_of(const struct packet *p, struct seg *g)
{
	const struct tcphdr *t = p->tcph;
	g->seq = bpf_ntohl(t->seq);
	g->end = g->seq + p->payload + t->syn + t->fin;
	g->ack = bpf_ntohl(t->ack_seq);
	g->win = bpf_ntohs(t->window);
}

/** The window scale a SYN or SYN-ACK offers (RFC 7323 §2.2), or WSCALE_NONE. */
static __always_inline __u8 syn_wscale(struct xdp_md *ctx, const struct packet *p)
{
	if (p->tcph->doff <= 5)
		return WSCALE_NONE;
	__u8 *ws = tcp_opt(ctx, TCPOPT_WINDOW, TCPOLEN_WINDOW);
	if (!ws)
		return WSCALE_NONE;
	return ws[0] > WSCALE_MAX ? WSCALE_MAX : ws[0];
}

/* ---- the established stage ---- */

/* What track_seq decided for a packet of an established flow. */
#define TRACK_SEND 0   /* rewrite and transmit */
#define TRACK_FORGET 1 /* rewrite and transmit, then delete the flow's entries (exact RST, last FIN acked) */
#define TRACK_DROP 2   /* drop: an RST outside the receiver's window */

/**
 * Track a packet of an established flow travelling in `dir` and apply the RST/FIN rules. Sets *event to
 * REASON_RST_IN_WINDOW for an RST that is forwarded without ending the flow, else leaves it.
 *
 * RST (RFC 5961 §3, seen from the middle): the receiver's RCV.NXT lies between the last ACK it sent
 * (r->ack) and what the sender has sent (s->end). An RST with its sequence number in that range is the
 * one RFC 5961 lets reset a connection (usually a single value: nothing in flight): the flow closes
 * and its entries go. An RST elsewhere in the receiver's window is forwarded and the flow kept: the
 * endpoint answers it with a challenge ACK, and a genuine sender then resets at the exact number. An
 * RST outside the window is dropped and counted: a blind attacker guessing a 4-tuple hits the window
 * with probability window / 2^32, and the exact range with ~1 / 2^32.
 *
 * Other segments move the tracking only if they fit: an ACK must lie between the sender's previous ACK
 * and what the receiver has sent; a segment's end may advance s->end only up to the receiver's window
 * edge. So spoofed segments cannot drag the numbers the RST check relies on.
 *
 * FIN: counts only inside the receiver's window. Both FINs → closed (the active gauge drops once).
 * The flow's entries go with the ACK that acknowledges the last outstanding FIN, checked by its ACK
 * number (not "any ACK after two FINs"); anything later (a retransmitted FIN) finds no flow and the
 * kernel resets it.
 */
static __always_inline int track_seq(struct flow_fwd *f, const struct packet *p, int dir, enum flb_reason *event)
{
	struct tcp_dir *s = dir == DIR_C2B ? &f->c2b : &f->b2c; /* the sender's side */
	struct tcp_dir *r = dir == DIR_C2B ? &f->b2c : &f->c2b; /* the receiver's side */
	const struct tcphdr *t = p->tcph;
	struct seg g;
	seg_of(p, &g);

	if (t->rst) {
		if (seq_within(g.seq, r->ack, s->end)) {
			close_flow(f);
			return TRACK_FORGET;
		}
		if (seq_within(g.seq, r->ack, r->edge)) {
			*event = REASON_RST_IN_WINDOW;
			return TRACK_SEND;
		}
		return TRACK_DROP;
	}

	__u32 fin_s = dir == DIR_C2B ? FLOW_FIN_C2B : FLOW_FIN_B2C;
	__u32 fin_r = dir == DIR_C2B ? FLOW_FIN_B2C : FLOW_FIN_C2B;
	__u32 acked_r = dir == DIR_C2B ? FLOW_FIN_B2C_ACKED : FLOW_FIN_C2B_ACKED;
	__u32 add = 0;
	__u32 state = f->state;

	if (t->ack && seq_within(g.ack, s->ack, r->end)) {
		if (g.ack != s->ack)
			s->ack = g.ack;
		__u32 edge = g.ack + (g.win << s->wscale);
		if (seq_after(edge, s->edge))
			s->edge = edge;
		if ((state & fin_r) && !seq_before(g.ack, r->end))
			add |= acked_r; /* r's FIN is the last thing it sent: acked */
	}
	if (seq_after(g.end, s->end) && !seq_after(g.end, r->edge))
		s->end = g.end;
	if (t->fin && seq_within(g.end, r->ack, r->edge))
		add |= fin_s;

	if (add & ~state) {
		state = __sync_fetch_and_or(&f->state, add) | add;
		if ((state & FLOW_FIN_C2B) && (state & FLOW_FIN_B2C))
			close_flow(f); /* once: close_flow is guarded by FLOW_CLOSED */
	}
	if ((state & FLOW_FIN_C2B_ACKED) && (state & FLOW_FIN_B2C_ACKED))
		return TRACK_FORGET;
	return TRACK_SEND;
}

/* ---- the handshake stage ---- */

/** A SYN's sequence state, in the flow it creates (not yet in a map). */
static __always_inline void track_syn(struct flow_fwd *f, const struct seg *g, __u8 wscale)
{
	f->c2b.end = g->end;       /* ISN + 1 (+ data: TCP Fast Open) */
	f->c2b.wscale = wscale;    /* final once the SYN-ACK says whether both sides scale */
	f->b2c.ack = g->seq + 1;   /* the least the backend must acknowledge: the SYN */
}

/**
 * The backend's SYN-ACK of handshake `f`. It must acknowledge the SYN (RFC 9293 §3.10.7.3): between
 * ISN + 1 and the SYN's end. Returns 0 when it does (the backend's side is recorded), -1 otherwise.
 * A retransmitted SYN-ACK records the same numbers again.
 */
static __always_inline int track_synack(struct flow_fwd *f, const struct seg *g, __u8 wscale)
{
	if (!seq_within(g->ack, f->b2c.ack, f->c2b.end))
		return -1;
	f->b2c.end = g->end;        /* its ISN + 1 (+ data) */
	f->b2c.ack = g->ack;
	f->b2c.edge = g->ack + g->win; /* a SYN's window is never scaled */
	f->b2c.wscale = wscale;
	f->c2b.ack = g->seq + 1;    /* the least the client must acknowledge: the SYN-ACK */
	if (!(f->state & FLOW_SYNACK))
		__sync_fetch_and_or(&f->state, FLOW_SYNACK);
	return 0;
}

/** Does the client's segment `g` complete handshake `f`: an ACK of the SYN-ACK, after the SYN-ACK? */
static __always_inline int completes_handshake(const struct flow_fwd *f, const struct tcphdr *t, const struct seg *g)
{
	return (f->state & FLOW_SYNACK) && t->ack && !t->syn && !t->rst && seq_within(g->ack, f->c2b.ack, f->b2c.end);
}

/**
 * An RST during the handshake, from `dir`. From the backend it must acknowledge the SYN (the SYN-SENT
 * rule, RFC 9293 §3.10.7.3) or, after its SYN-ACK, sit at the client's next number; from the client, sit
 * between the SYN's end and what the client sent. Returns 1 when it ends the handshake.
 */
static __always_inline int handshake_rst_ok(const struct flow_fwd *f, const struct tcphdr *t, const struct seg *g, int dir)
{
	if (dir == DIR_C2B)
		return seq_within(g->seq, f->b2c.ack, f->c2b.end);
	if (t->ack && seq_within(g->ack, f->b2c.ack, f->c2b.end))
		return 1;
	return (f->state & FLOW_SYNACK) && seq_within(g->seq, f->c2b.ack, f->b2c.end);
}

/**
 * Move handshake `sf` (in flb_syn_fwd under `fk`) to the established tables: the client's ACK
 * acknowledged the SYN-ACK. Returns 0 (the caller finds the flow in flb_fwd), or -1 with *reason set
 * (the packet is dropped or passed by the caller).
 *
 * Steps, and why in this order:
 * 1. FLOW_PROMOTING by compare-and-swap, unless FLOW_DEAD: against the SNAT allocator taking back the
 *    port of a handshake it judges abandoned (snat.h) and against a duplicate ACK on another CPU.
 * 2. The reverse entry in flb_rev first (claim_rev: absent, or stale and taken over by id swap), so an
 *    established forward entry never exists without its reverse entry.
 * 3. Check flb_syn_rev still holds the port for this flow. An atomic (a locked instruction on x86,
 *    a full barrier) orders step 2's insert before this read, so a SYN that claimed the port in the
 *    handshake table meanwhile (possible only if our entry there was evicted) is seen here and this
 *    flow yields; that SYN's own check of flb_rev (snat.h) sees our step 2 otherwise. At worst both
 *    give up, never both keep the port.
 * 4. The forward entry with BPF_NOEXIST; an older established entry of the same 4-tuple (a closed flow
 *    whose last ACK was lost) is closed and replaced.
 * 5. The handshake entries go.
 */
static __always_inline int promote(const struct flow_key *fk, struct flow_fwd *sf, __u32 now, enum flb_reason *reason)
{
	__u32 st = sf->state;
	if ((st & (FLOW_PROMOTING | FLOW_DEAD)) ||
	    __sync_val_compare_and_swap(&sf->state, st, st | FLOW_PROMOTING) != st) {
		/* Another CPU is promoting it (a duplicate ACK, or the client's next segment right behind):
		 * carry this one along if that is done, else drop it (TCP retransmits). */
		*reason = REASON_SYN_BUSY;
		return bpf_map_lookup_elem(&flb_fwd, fk) ? 0 : -1;
	}
	struct flow_fwd f = *sf;
	f.state = st & FLOW_TS_MOD;
	if (f.c2b.wscale == WSCALE_NONE || f.b2c.wscale == WSCALE_NONE) {
		f.c2b.wscale = 0; /* scaling needs both SYNs to offer it (RFC 7323 §2.2) */
		f.b2c.wscale = 0;
	}
	f.c2b.edge = f.c2b.ack; /* the client's window: extended by this ACK's window in track_seq */
	f.last_seen = now;
	struct flow_key rk = {};
	reverse_key(fk, &f, &rk);
	struct flow_rev rv = { .fwd = *fk, .since = now, .id = f.id };

	if (claim_rev(&flb_rev, &flb_fwd, &rk, &rv, now) != 0)
		goto lost;
	__sync_fetch_and_or(&sf->state, FLOW_PROMOTING); /* the barrier of step 3 (the bit is already set) */
	struct flow_rev *mine = bpf_map_lookup_elem(&flb_syn_rev, &rk);
	if (!mine || mine->id != f.id) {
		struct flow_rev *er = bpf_map_lookup_elem(&flb_rev, &rk);
		if (er)
			__sync_val_compare_and_swap(&er->id, f.id, 0); /* release step 2 (an id-0 entry is stale) */
		goto lost;
	}

	/* Counted before the entry is visible: a close racing right behind never takes the gauge below 0. */
	int counted = backend_gen(f.svc, f.backend) == f.gen;
	if (counted)
		f.state |= FLOW_COUNTED;
	count_flow_open(f.svc, f.backend, counted);
	if (bpf_map_update_elem(&flb_fwd, fk, &f, BPF_NOEXIST) != 0) {
		struct flow_fwd *old = bpf_map_lookup_elem(&flb_fwd, fk);
		if (old)
			close_flow(old);
		if (bpf_map_update_elem(&flb_fwd, fk, &f, BPF_ANY) != 0) {
			count_flow_close(f.svc, f.backend, f.gen, counted);
			goto lost;
		}
	}
	bpf_map_delete_elem(&flb_syn_rev, &rk);
	bpf_map_delete_elem(&flb_syn_fwd, fk);
	count_svc_reason(f.svc, REASON_ESTABLISHED);
	return 0;

lost:
	/* The port went to another flow: this handshake cannot become a flow. */
	forget_handshake(fk, &f);
	*reason = REASON_PAIR_MISMATCH;
	return -1;
}

#endif
