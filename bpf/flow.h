/* SPDX-License-Identifier: MIT */
/*
 * Flow state: the two entries of a flow (flb_fwd, flb_rev), its last-seen second, and FIN/RST tracking
 * that closes it exactly once (the active-flow gauge in counters.h).
 */
#ifndef FLB_FLOW_H
#define FLB_FLOW_H

#include <linux/bpf.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include "counters.h"
#include "maps.h"
#include "parsing.h"

/** The reverse-table key of a forward flow: what the backend's replies look like. */
static __always_inline void reverse_key(const struct flow_key *fk, const struct flow_fwd *f, struct flow_key *rk)
{
	rk->saddr = f->be_addr;
	rk->daddr = fk->daddr; /* SNAT source = the service IP */
	rk->sport = f->be_port;
	rk->dport = f->snat_port;
}

/**
 * The flow a backend-side 4-tuple belongs to (`rk`: backend → LB SNAT port, the reverse-table key):
 * its forward entry, with its key in *fk, or NULL. A reverse entry whose forward flow was evicted or
 * replaced (it no longer points back at rk) is stale: NULL.
 */
static __always_inline struct flow_fwd *flow_of_reverse(const struct flow_key *rk, struct flow_key *fk)
{
	struct flow_key *owner = bpf_map_lookup_elem(&flb_rev, rk);
	if (!owner)
		return NULL;
	*fk = *owner;
	struct flow_fwd *f = bpf_map_lookup_elem(&flb_fwd, fk);
	if (!f || f->snat_port != rk->dport || f->be_addr != rk->saddr || f->be_port != rk->sport)
		return NULL;
	return f;
}

/** Remove both directions of a flow (after RST, or the last ACK of a FIN handshake). */
static __always_inline void forget_flow(const struct flow_key *fk, const struct flow_fwd *f)
{
	struct flow_key rk = {};
	reverse_key(fk, f, &rk);
	bpf_map_delete_elem(&flb_rev, &rk);
	bpf_map_delete_elem(&flb_fwd, fk);
}

/** Mark a flow closed; the first caller (atomic fetch-or) decrements the active count. */
static __always_inline void close_flow(struct flow_fwd *f, __u32 extra_bits)
{
	__u32 old = __sync_fetch_and_or(&f->state, FLOW_CLOSED | extra_bits);
	if (!(old & FLOW_CLOSED))
		count_flow_close(f->svc, f->backend);
}

static __always_inline int flow_is_closed(const struct flow_fwd *f) { return f->state & FLOW_CLOSED; }

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

/**
 * Track FIN/RST for a packet of an existing flow travelling in `dir`. Returns 1 when the flow's entries
 * must be deleted once this packet has been rewritten (RST, or the ACK that ends a FIN handshake).
 *
 * - RST: the connection is gone for both ends → close and forget.
 * - FIN: set this side's bit; when both sides have sent FIN the flow is closed (active−1, once) and we
 *   remember which side's FIN came second.
 * - Pure ACK after both FINs, from the side that did not send the second FIN: it acknowledges the last
 *   FIN → forget. Anything arriving later (a retransmitted FIN) is passed and the kernel resets it.
 */
static __always_inline int track_state(struct flow_fwd *f, const struct tcphdr *t, int dir)
{
	if (tcp_is_rst(t)) {
		close_flow(f, 0);
		return 1;
	}
	if (tcp_is_fin(t)) {
		__u32 mine = dir == DIR_C2B ? FLOW_FIN_C2B : FLOW_FIN_B2C;
		__u32 other = dir == DIR_C2B ? FLOW_FIN_B2C : FLOW_FIN_C2B;
		__u32 old = __sync_fetch_and_or(&f->state, mine);
		if ((old & other) && !(old & mine))
			close_flow(f, dir == DIR_B2C ? FLOW_LAST_FIN_B2C : 0);
		return 0;
	}
	if (tcp_is_pure_ack(t) && flow_is_closed(f)) {
		__u32 s = f->state;
		int last_from_b = !!(s & FLOW_LAST_FIN_B2C);
		if ((s & FLOW_FIN_C2B) && (s & FLOW_FIN_B2C) && (last_from_b ? dir == DIR_C2B : dir == DIR_B2C))
			return 1;
	}
	return 0;
}

#endif
