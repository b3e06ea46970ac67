/* SPDX-License-Identifier: MIT */
/*
 * SNAT source-port allocation. A port toward one backend (the 4-tuple LB:port → backend) is claimed by
 * inserting the new flow's reverse entry into the handshake table (flb_syn_rev); it is busy while an
 * established flow or a live handshake owns it.
 */
#ifndef FLB_SNAT_H
#define FLB_SNAT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "counters.h"
#include "flow.h"
#include "maps.h"

/** Does a live established flow own `rk`? (Its reverse entry exists and its forward entry names it.) */
static __always_inline int established_owns(const struct flow_key *rk)
{
	struct flow_key ok;
	return owner_of(&flb_rev, &flb_fwd, rk, &ok) != NULL;
}

/**
 * Claim `rk` for `rv` in the handshake reverse table: insert it, or take over an entry whose handshake
 * is gone (claim_rev's rule) or abandoned: no packet for SYN_TIMEOUT_S. An abandoned handshake is
 * marked FLOW_DEAD by compare-and-swap on its state, which fails if the client's ACK is promoting it
 * at that moment (FLOW_PROMOTING, flow.h promote): exactly one of the two wins. Returns 0 or -1 (busy).
 */
static __always_inline int claim_syn_rev(const struct flow_key *rk, const struct flow_rev *rv, __u32 now)
{
	if (bpf_map_update_elem(&flb_syn_rev, rk, rv, BPF_NOEXIST) == 0)
		return 0;
	struct flow_rev *cur = bpf_map_lookup_elem(&flb_syn_rev, rk);
	if (!cur)
		return -1; /* deleted in between: the next port will do */
	__u64 old = cur->id;
	struct flow_key ok = cur->fwd;
	struct flow_fwd *o = bpf_map_lookup_elem(&flb_syn_fwd, &ok);
	if (o && o->id == old) {
		__u32 st = o->state;
		if (st & FLOW_PROMOTING)
			return -1;
		if (!(st & FLOW_DEAD)) {
			if (!older_than(o->last_seen, now, SYN_TIMEOUT_S))
				return -1; /* a live handshake */
			if (__sync_val_compare_and_swap(&o->state, st, st | FLOW_DEAD) != st)
				return -1;
			count_svc_reason(o->svc, REASON_PORT_RECLAIMED);
		}
	} else if (!o && !older_than(cur->since, now, REV_CLAIM_GRACE_S)) {
		return -1; /* claimed a moment ago, its handshake entry is on its way */
	}
	if (__sync_val_compare_and_swap(&cur->id, old, rv->id) != old)
		return -1;
	cur->fwd = rv->fwd;
	cur->since = rv->since;
	return 0;
}

/* The state of one search (bpf_loop passes it to every probe). */
struct snat_search {
	struct flow_rev rv; /* the new flow's reverse entry */
	__be32 be_addr;
	__be32 snat_addr;
	__be16 be_port;
	__u16 pad;
	__u32 now;
	__u32 first;        /* the range, host order */
	__u32 range;
	__u32 base;         /* this CPU's cursor */
	__u32 found;        /* the port claimed (host order), 0 = none yet */
	__u32 tries;
};

/** bpf_loop callback: probe port number `i` of the search; 1 stops the loop (claimed). */
static long snat_probe(__u32 i, void *ctx)
{
	struct snat_search *s = ctx;
	__u32 port = s->first + (s->base + i) % s->range;
	struct flow_key rk = { .saddr = s->be_addr, .daddr = s->snat_addr, .sport = s->be_port, .dport = bpf_htons((__u16)port) };
	if (established_owns(&rk))
		return 0;
	if (claim_syn_rev(&rk, &s->rv, s->now) != 0)
		return 0;
	s->found = port;
	s->tries = i + 1;
	return 1;
}

/**
 * Claim a SNAT source port on `snat_addr` toward backend `be_addr:be_port` (slot `slot`) for flow `fk`
 * with id `id`: its reverse entry goes into flb_syn_rev. A port is busy per (SNAT address, backend): the
 * reverse key is the 4-tuple of the backend's replies. Returns the port (network order) or 0 when every port of the
 * range is busy.
 *
 * The search walks the whole range from a per-CPU cursor (CPU c starts SNAT_CPU_STRIDE·c ports further
 * on, so CPUs rarely probe the same ports), so it finds a free port whenever one exists: ports are
 * usually freed in about the order they were taken, so the cursor finds one in a probe or two, and only
 * a nearly full range costs a long walk. bpf_loop (Linux ≥ 5.17) lets the verifier check the probe once
 * instead of unrolling up to 64512 iterations. A probe skips a port an established flow owns (a lookup,
 * no insert: an insert into an LRU table could evict another handshake) and claims it in the handshake
 * table otherwise (claim_syn_rev).
 *
 * A search that found nothing costs one probe per port (~1 ms for 20,000 ports): to keep a full range
 * from costing that per SYN, the time is stored per backend slot (flb_snat_full) and SYNs toward that
 * backend fail at once for SNAT_FULL_BACKOFF_MS, unless a flow toward it ends before (flow.h
 * port_freed). Ports that come free silently meanwhile (an LRU eviction, a handshake expiring) are found
 * by the next search.
 *
 * The LB's own sockets never use these ports: the loader reserves the range in
 * net.ipv4.ip_local_reserved_ports.
 */
static __always_inline __be16 alloc_snat_port(const struct flb_config *cfg, const struct flow_key *fk, __u64 id,
					      __be32 snat_addr, __be32 be_addr, __be16 be_port, __u32 slot, __u32 now)
{
	__u32 zero = 0;
	struct cpu_state *cs = bpf_map_lookup_elem(&flb_cpu, &zero);
	if (!cs)
		return 0;
	__u32 first = cfg->snat_first, last = cfg->snat_last;
	if (!first || last < first)
		return 0;
	__u64 *full = bpf_map_lookup_elem(&flb_snat_full, &slot);
	__u64 t = bpf_ktime_get_coarse_ns();
	if (full && *full && t - *full < SNAT_FULL_BACKOFF_MS * 1000000ULL)
		return 0;

	struct snat_search s = {
		.rv = { .fwd = *fk, .since = now, .id = id },
		.be_addr = be_addr,
		.snat_addr = snat_addr,
		.be_port = be_port,
		.now = now,
		.first = first,
		.range = last - first + 1,
		.base = cs->port_cursor + bpf_get_smp_processor_id() * SNAT_CPU_STRIDE,
	};
	bpf_loop(s.range, snat_probe, &s, 0);
	if (!s.found) {
		cs->port_cursor += s.range;
		if (full)
			*full = t;
		return 0;
	}
	cs->port_cursor += s.tries;
	if (full && *full)
		*full = 0;
	return bpf_htons((__u16)s.found);
}

#endif
