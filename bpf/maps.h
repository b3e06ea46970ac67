/* SPDX-License-Identifier: MIT */
/*
 * Maps, and the keys of the arrays indexed per service. Names are ≤ 15 characters (the kernel truncates
 * longer ones). TypeScript finds them by these names and knows their key and value types
 * (src/dataplane/xdp/layout.ts MAPS; test/xdp/layout.test.ts checks both against BTF).
 *
 * Sizes: max_entries below is the largest size (from enum flb_limit). The loader sets every map's size
 * from the config before load (src/dataplane/xdp/capacity.ts: the config's services, backends and plan
 * slots with room to grow on reload), and the stride of the per-backend arrays in flb_sizes.
 */
#ifndef FLB_MAPS_H
#define FLB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"

/* Load-time sizes (see struct flb_sizes). `const volatile`: libbpf puts it in .rodata, the loader writes
 * it before load (bpf_map__initial_value) and the kernel freezes it, so the verifier knows the value.
 * It must stay the only variable in .rodata: TypeScript writes it at offset 0 (layout.test.ts checks). */
const volatile struct flb_sizes flb_sizes = { .backends = MAX_BACKENDS };

/* Run-time settings (one entry; config.h reads it). */
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

/* Plan headers at [plan_key(svc, buffer)]. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES * PLAN_BUFFERS);
	__type(key, __u32);
	__type(value, struct plan_hdr);
} flb_plans SEC(".maps");

/* Plan members (healthy set with weights) at [member_key(plan_key(svc, buffer), i)]. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES * PLAN_BUFFERS * MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct plan_member);
} flb_members SEC(".maps");

/* Plan slots (member ids), a pool shared by all plans; each plan header points at its range.
 * BPF_F_MMAPABLE (Linux ≥ 5.5): TS writes plans straight into the map's memory (src/dataplane/xdp/
 * program.ts writePlan). A 65,537-slot Maglev table through BPF_MAP_UPDATE_BATCH took 20-60 ms of
 * syscall (one element at a time in the kernel); through the mapping it is a copy of 256 KiB. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, SLOT_POOL_MAX);
	__type(key, __u32);
	__type(value, __u32);
} flb_slots SEC(".maps");

/* Backend addresses at [backend_key(svc, id)]. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES * MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend);
} flb_backends SEC(".maps");

/* Active flows per backend at [backend_key(svc, id)]. Not per-CPU on purpose: least-connection
 * picks must read one global value, so it is updated with atomic adds. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES * MAX_BACKENDS);
	__type(key, __u32);
	__type(value, __u64);
} flb_be_active SEC(".maps");

/* Correction of flb_be_active at [backend_key(svc, id)], written ONLY by user space (no read-modify-
 * write races with the atomic adds above): the number of flows counted active that left the flow table
 * without a FIN/RST (LRU eviction, idle expiry, a lost pair). The TS sweeper recomputes it from a walk of flb_fwd, so
 * errors do not accumulate. Effective active = flb_be_active − flb_be_adj. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES * MAX_BACKENDS);
	__type(key, __u32);
	__type(value, __u64);
} flb_be_adj SEC(".maps");

/* Counters per backend at [backend_key(svc, id)]; TS sums the CPUs. */
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

/* Packets by outcome and events (REASON_*), a row of REASON_MAX counters per service and one for
 * packets of no known service: [reason_key(svc_row, reason)] (counters.h). TS sums the CPUs. The loader
 * sizes it (services + 1) × REASON_MAX. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, (MAX_SERVICES + 1) * REASON_MAX);
	__type(key, __u32);
	__type(value, __u64);
} flb_reasons SEC(".maps");

/*
 * The flow tables, two per stage (the design and its concurrency rules: bpf/README.md, flow.h, snat.h).
 *
 * Established flows (the client's handshake ACK acknowledged the backend's SYN-ACK): only these can
 * evict each other. LRU: a full table evicts the least recently used flow instead of refusing new
 * ones. max_entries is set by the loader (xdp.flow_table_size).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FLOW_TABLE_DEFAULT);
	__type(key, struct flow_key);
	__type(value, struct flow_fwd);
} flb_fwd SEC(".maps");

/* Established flows, reverse: backend→LB 4-tuple (daddr = SNAT address, dport = SNAT port) → the owner. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FLOW_TABLE_DEFAULT);
	__type(key, struct flow_key);
	__type(value, struct flow_rev);
} flb_rev SEC(".maps");

/*
 * Handshakes (embryonic flows): a SYN creates its flow here, never in flb_fwd/flb_rev, so a SYN flood
 * churns only these (LRU among themselves) and established flows stay. The client's valid handshake ACK
 * moves the flow to the established tables. max_entries is set by the loader (a quarter of
 * flow_table_size, at least 1024).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SYN_TABLE_DEFAULT);
	__type(key, struct flow_key);
	__type(value, struct flow_fwd);
} flb_syn_fwd SEC(".maps");

/* Handshakes, reverse. Inserted with BPF_NOEXIST: this is how a SYN claims its SNAT port (snat.h). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SYN_TABLE_DEFAULT);
	__type(key, struct flow_key);
	__type(value, struct flow_rev);
} flb_syn_rev SEC(".maps");

/* Per-CPU scratch state: the SNAT allocator's cursor, the flow-id counter (struct cpu_state). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_state);
} flb_cpu SEC(".maps");

/* Per backend slot [backend_key(svc, id)]: CLOCK_MONOTONIC ns when a search of the whole SNAT range
 * toward it found no free port, 0 once a flow toward it ended since (snat.h, SNAT_FULL_BACKOFF_MS).
 * Sized like the other per-backend arrays. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES * MAX_BACKENDS);
	__type(key, __u32);
	__type(value, __u64);
} flb_snat_full SEC(".maps");

/* featherlb's neighbour table: backend IPv4 → MAC of its next hop on the attached interface, kept by
 * the loader (src/dataplane/xdp/nexthops.ts). Used when bpf_fib_lookup refuses because forwarding is
 * off (neigh.h resolve_l2), and by the packet tables (CFG_STATIC_NEIGH). One entry per backend address. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SERVICES * MAX_BACKENDS);
	__type(key, __be32);
	__type(value, struct nbr_mac);
} flb_nbr SEC(".maps");

/* The keys of the arrays above; layout.ts backendKey, planKey and memberKey are their TypeScript twins. */

/** Per-backend arrays (flb_backends, flb_be_active, flb_be_adj, flb_be_stats, flb_snat_full): backend `id` of service `svc`. */
static __always_inline __u32 backend_key(__u32 svc, __u32 id)
{
	return svc * flb_sizes.backends + id;
}

/** flb_plans: plan table `buffer` (0 … PLAN_BUFFERS-1) of service `svc`. */
static __always_inline __u32 plan_key(__u32 svc, __u32 buffer)
{
	return svc * PLAN_BUFFERS + buffer;
}

/** flb_members: member `i` of plan table `plan` (a plan_key). A plan has at most one member per backend id. */
static __always_inline __u32 member_key(__u32 plan, __u32 i)
{
	return plan * flb_sizes.backends + i;
}

/** No service known (yet) for a packet: row 0 of flb_reasons. Service `svc` counts in row svc + 1. */
#define NO_SVC 0xffffU

/** flb_reasons: `reason` of service `svc` (or NO_SVC). */
static __always_inline __u32 reason_key(__u32 svc, __u32 reason)
{
	__u32 row = svc == NO_SVC ? 0 : svc + 1;
	return row * REASON_MAX + reason;
}

#endif
