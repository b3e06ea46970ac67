/* SPDX-License-Identifier: MIT */
/*
 * Counter helpers: outcomes and events (flb_reasons, a row per service), traffic counters (per-CPU, so
 * plain adds are race-free) and the active-flow gauge (global, atomic).
 */
#ifndef FLB_COUNTERS_H
#define FLB_COUNTERS_H

#include "maps.h"

/** Count `reason` (REASON_*) once for service `svc` (NO_SVC: the row of packets of no known service). */
static __always_inline void count_svc_reason(__u32 svc, enum flb_reason reason)
{
	__u32 k = reason_key(svc, reason);
	__u64 *n = bpf_map_lookup_elem(&flb_reasons, &k);
	if (n)
		*n += 1;
}

static __always_inline void count_reason(enum flb_reason reason)
{
	count_svc_reason(NO_SVC, reason);
}

/** Count a packet of no known service under `reason` and return XDP_PASS. */
static __always_inline int pass(enum flb_reason reason)
{
	count_reason(reason);
	return XDP_PASS;
}

/** Count a packet of service `svc` under `reason` and return XDP_PASS. */
static __always_inline int svc_pass(__u32 svc, enum flb_reason reason)
{
	count_svc_reason(svc, reason);
	return XDP_PASS;
}

/** Count a packet of service `svc` under `reason` and return XDP_DROP. */
static __always_inline int svc_drop(__u32 svc, enum flb_reason reason)
{
	count_svc_reason(svc, reason);
	return XDP_DROP;
}

static __always_inline struct flb_counters *svc_counters(__u32 svc)
{
	return bpf_map_lookup_elem(&flb_svc_stats, &svc);
}

static __always_inline struct flb_counters *be_counters(__u32 svc, __u32 id)
{
	__u32 k = backend_key(svc, id);
	return bpf_map_lookup_elem(&flb_be_stats, &k);
}

/** Count one packet of `payload` bytes in direction `dir` for a service and one of its backends. */
static __always_inline void count_packet(__u32 svc, __u32 id, int dir, __u32 payload)
{
	struct flb_counters *c = svc_counters(svc);
	struct flb_counters *b = be_counters(svc, id);
	if (dir == DIR_C2B) {
		if (c) { c->packets_in += 1; c->bytes_in += payload; }
		if (b) { b->packets_in += 1; b->bytes_in += payload; }
	} else {
		if (c) { c->packets_out += 1; c->bytes_out += payload; }
		if (b) { b->packets_out += 1; b->bytes_out += payload; }
	}
}

/** Active-flow gauge of one backend (the value least-connection picks read), or NULL. */
static __always_inline __u64 *be_active(__u32 svc, __u32 id)
{
	__u32 k = backend_key(svc, id);
	return bpf_map_lookup_elem(&flb_be_active, &k);
}

/** The generation of a backend slot (struct backend.gen), or ~0 when the slot has no backend. */
static __always_inline __u32 backend_gen(__u32 svc, __u32 id)
{
	__u32 k = backend_key(svc, id);
	struct backend *be = bpf_map_lookup_elem(&flb_backends, &k);
	return be ? be->gen : ~0U;
}

/**
 * A flow was established: the per-CPU totals, and the global gauge (atomic) if `counted`: the flow's
 * generation is the slot's (backend_gen; the flow then carries FLOW_COUNTED).
 *
 * Why generations: TS zeroes a slot's gauge when another backend takes the slot (a reload that renames
 * a service or moves it to another port can reuse an index). Flows of the previous occupant must then
 * neither add to nor subtract from the new gauge, or it would wrap below zero and least_connections
 * would starve the backend. So a flow adds only under the slot's current generation, and subtracts only
 * if it added and the generation is still the same (count_flow_close).
 */
static __always_inline void count_flow_open(__u32 svc, __u32 id, int counted)
{
	struct flb_counters *c = svc_counters(svc);
	struct flb_counters *b = be_counters(svc, id);
	if (c)
		c->flows_new += 1;
	if (b)
		b->flows_new += 1;
	__u64 *a = counted ? be_active(svc, id) : NULL;
	if (a)
		__sync_fetch_and_add(a, 1);
}

/** A counted flow closed (called exactly once per flow, guarded by FLOW_CLOSED). */
static __always_inline void count_flow_close(__u32 svc, __u32 id, __u32 gen, int counted)
{
	struct flb_counters *c = svc_counters(svc);
	struct flb_counters *b = be_counters(svc, id);
	if (c)
		c->flows_closed += 1;
	if (b)
		b->flows_closed += 1;
	if (!counted || backend_gen(svc, id) != gen)
		return;
	__u64 *a = be_active(svc, id);
	if (a)
		__sync_fetch_and_sub(a, 1);
}

#endif
