/* SPDX-License-Identifier: MIT */
/* Counter helpers: per-CPU, so plain adds are race-free. */
#ifndef FLB_COUNTERS_H
#define FLB_COUNTERS_H

#include "maps.h"

/** Count one packet under `reason` (REASON_*) and return XDP_PASS. */
static __always_inline int pass(enum flb_reason reason)
{
	__u64 *n = bpf_map_lookup_elem(&flb_reasons, &reason);
	if (n)
		*n += 1;
	return XDP_PASS;
}

static __always_inline void count_reason(enum flb_reason reason)
{
	__u64 *n = bpf_map_lookup_elem(&flb_reasons, &reason);
	if (n)
		*n += 1;
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

/** A flow opened: bump the global active gauge (atomic) and the per-CPU totals. */
static __always_inline void count_flow_open(__u32 svc, __u32 id)
{
	__u64 *a = be_active(svc, id);
	struct flb_counters *c = svc_counters(svc);
	struct flb_counters *b = be_counters(svc, id);
	if (a)
		__sync_fetch_and_add(a, 1);
	if (c)
		c->flows_new += 1;
	if (b)
		b->flows_new += 1;
}

/** A flow closed (called exactly once per flow, guarded by FLOW_CLOSED). */
static __always_inline void count_flow_close(__u32 svc, __u32 id)
{
	__u64 *a = be_active(svc, id);
	struct flb_counters *c = svc_counters(svc);
	struct flb_counters *b = be_counters(svc, id);
	if (a)
		__sync_fetch_and_sub(a, 1);
	if (c)
		c->flows_closed += 1;
	if (b)
		b->flows_closed += 1;
}

#endif
