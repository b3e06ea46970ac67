/* SPDX-License-Identifier: MIT */
/*
 * Maps. Names are ≤ 15 characters (the kernel truncates longer ones). TypeScript finds them by these
 * names (src/dataplane/xdp/layout.ts MAPS).
 */
#ifndef FLB_MAPS_H
#define FLB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"

/* Run-time settings (one entry). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flb_config);
} flb_config SEC(".maps");

/* Listen address → service index. Lookup of every packet's destination. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SERVICES);
	__type(key, struct svc_key);
	__type(value, struct svc_val);
} flb_svc SEC(".maps");

/* Per service: which of its PLAN_BUFFERS plan tables is live. TS writes a whole new plan into the other
 * buffer, then flips this u32 (one aligned 4-byte store: readers see the old or the new plan, never a mix). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, __u32);
} flb_svc_act SEC(".maps");

/* Plan headers at [svc * PLAN_BUFFERS + buffer]. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES * PLAN_BUFFERS);
	__type(key, __u32);
	__type(value, struct plan_hdr);
} flb_plans SEC(".maps");

/* Plan members (healthy set with weights) at [(svc * PLAN_BUFFERS + buffer) * MAX_BACKENDS + i]. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES * PLAN_BUFFERS * MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct plan_member);
} flb_members SEC(".maps");

/* Plan slots (member ids), a pool shared by all plans; each plan header points at its range. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOT_POOL_SIZE);
	__type(key, __u32);
	__type(value, __u32);
} flb_slots SEC(".maps");

/* Backend addresses at [svc * MAX_BACKENDS + id]. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES * MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend);
} flb_backends SEC(".maps");

/* Active flows per backend at [svc * MAX_BACKENDS + id]. Not per-CPU on purpose: least-connection
 * picks must read one global value, so it is updated with atomic adds. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES * MAX_BACKENDS);
	__type(key, __u32);
	__type(value, __u64);
} flb_be_active SEC(".maps");

/* Correction of flb_be_active at [svc * MAX_BACKENDS + id], written ONLY by user space (no read-modify-
 * write races with the atomic adds above): the number of flows counted active that left the flow table
 * without a FIN/RST (LRU eviction, idle expiry). The TS sweeper recomputes it from a walk of flb_fwd, so
 * errors do not accumulate. Effective active = flb_be_active − flb_be_adj. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES * MAX_BACKENDS);
	__type(key, __u32);
	__type(value, __u64);
} flb_be_adj SEC(".maps");

/* Counters per backend at [svc * MAX_BACKENDS + id]; TS sums the CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SERVICES * MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct flb_counters);
} flb_be_stats SEC(".maps");

/* Counters per service. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct flb_counters);
} flb_svc_stats SEC(".maps");

/* Packets by outcome (REASON_*): every pass path bumps one. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, REASON_MAX);
	__type(key, __u32);
	__type(value, __u64);
} flb_reasons SEC(".maps");

/* Forward flows: client→service 4-tuple → backend + SNAT port. LRU: a full table evicts the least
 * recently used flow instead of refusing new ones. max_entries is set by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FLOW_TABLE_DEFAULT);
	__type(key, struct flow_key);
	__type(value, struct flow_fwd);
} flb_fwd SEC(".maps");

/* Reverse flows: backend→LB 4-tuple (daddr = service IP, dport = SNAT port) → the forward key.
 * Inserted with BPF_NOEXIST, which is also how SNAT ports are claimed atomically. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FLOW_TABLE_DEFAULT);
	__type(key, struct flow_key);
	__type(value, struct flow_key);
} flb_rev SEC(".maps");

/* Per-CPU cursor of the SNAT port allocator (see nat.h alloc_snat_port). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} flb_port_cur SEC(".maps");

/* featherlb's neighbour table: backend IPv4 → MAC of its next hop on the attached interface, kept by
 * the loader (src/dataplane/xdp/nexthops.ts). Used when bpf_fib_lookup refuses because forwarding is
 * off (nat.h resolve_l2), and by the packet tables (CFG_STATIC_NEIGH). One entry per backend address. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SERVICES * MAX_BACKENDS);
	__type(key, __be32);
	__type(value, struct nbr_mac);
} flb_nbr SEC(".maps");

#endif
