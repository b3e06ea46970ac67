/* SPDX-License-Identifier: MIT */
/*
 * The plan interpreter: the C twin of src/control/algorithms/picker.ts. Same cursor walk, same modulo,
 * same tie-breaking; a change there needs a change here (the packet tables in test/xdp pin both).
 *
 * Differences that cannot matter: there is no `exclude` set (no connect retries in XDP), and the
 * sequence cursor is a free-running u32 taken modulo the slot count, where picker.ts wraps at the slot
 * count; the two agree until the u32 wraps (after 2^32 new flows on one plan).
 */
#ifndef FLB_SELECT_H
#define FLB_SELECT_H

#include "counters.h"

#define NO_MEMBER -1

static __always_inline struct plan_member *plan_member_at(__u32 plan, __u32 i)
{
	__u32 k = member_key(plan, i);
	return bpf_map_lookup_elem(&flb_members, &k);
}

/** Member id in slot `at` of the plan, or NO_MEMBER. */
static __always_inline int slot_at(const struct plan_hdr *p, __u32 at)
{
	__u32 k = p->slot_base + at;
	__u32 *id = bpf_map_lookup_elem(&flb_slots, &k);
	return id ? (int)*id : NO_MEMBER;
}

/** Effective active flows of a backend: the atomic gauge minus user space's correction (maps.h). */
static __always_inline __u64 active_of(__u32 svc, __u32 id)
{
	__u32 k = backend_key(svc, id);
	__u64 *a = bpf_map_lookup_elem(&flb_be_active, &k);
	__u64 *adj = bpf_map_lookup_elem(&flb_be_adj, &k);
	if (!a)
		return 0;
	__u64 v = *a, d = adj ? *adj : 0;
	return v > d ? v - d : 0;
}

/** a/wa < b/wb without division: a·wb < b·wa (active counts < 2^32, weights ≤ 1000: no overflow). */
static __always_inline int lighter(__u64 a, __u32 wa, __u64 b, __u32 wb)
{
	return a * wb < b * wa;
}

/* pick_least's state across bpf_loop iterations. */
struct least_walk {
	__u32 svc;
	__u32 plan;
	__u32 n;
	int best;
	__u64 best_active;
	__u32 best_weight;
	__u32 pad;
};

/** bpf_loop callback: look at member `i` of the plan; 1 ends the walk. */
static long least_step(__u32 i, void *data)
{
	struct least_walk *w = data;
	if (i >= w->n)
		return 1;
	struct plan_member *m = plan_member_at(w->plan, i);
	if (!m)
		return 1;
	__u64 a = active_of(w->svc, m->id);
	if (w->best == NO_MEMBER || lighter(a, m->weight, w->best_active, w->best_weight)) {
		w->best = m->id;
		w->best_active = a;
		w->best_weight = m->weight;
	}
	return 0;
}

/**
 * least: lowest active/weight, ties to the earlier member. A walk over up to MAX_BACKENDS (4096) members
 * with bpf_loop (Linux ≥ 5.17): the verifier checks least_step once. An unrolled bounded loop made it
 * walk every iteration with its branches, which stops at 8192 pending jumps ("the sequence of 8193 jumps
 * is too complex") a little above 1,000 iterations.
 */
static __always_inline int pick_least(__u32 svc, __u32 plan, __u32 n)
{
	struct least_walk w = { .svc = svc, .plan = plan, .n = n, .best = NO_MEMBER, .best_weight = 1 };
	bpf_loop(n < MAX_BACKENDS ? n : MAX_BACKENDS, least_step, &w, 0);
	return w.best;
}

/** two_choices: two distinct uniform members (the second drawn from the n − 1 others); the lighter wins,
 * ties to the first draw. */
static __always_inline int pick_two(__u32 svc, __u32 plan, __u32 n)
{
	struct plan_member *mi, *mj;
	if (n == 1) {
		mi = plan_member_at(plan, 0);
		return mi ? (int)mi->id : NO_MEMBER;
	}
	__u32 i = bpf_get_prandom_u32() % n;
	__u32 j = (i + 1 + bpf_get_prandom_u32() % (n - 1)) % n;
	mi = plan_member_at(plan, i);
	mj = plan_member_at(plan, j);
	if (!mi || !mj)
		return NO_MEMBER;
	__u32 idi = mi->id, wi = mi->weight, idj = mj->id, wj = mj->weight;
	return lighter(active_of(svc, idj), wj, active_of(svc, idi), wi) ? (int)idj : (int)idi;
}

/**
 * Pick a backend id for a new flow of service `svc` from its live plan, or NO_MEMBER when the healthy
 * set is empty. `chash` is client_hash(saddr).
 */
static __always_inline int pick_backend(__u32 svc, __u32 chash)
{
	__u32 *act = bpf_map_lookup_elem(&flb_svc_act, &svc);
	if (!act)
		return NO_MEMBER;
	__u32 plan = plan_key(svc, *act & 1);
	struct plan_hdr *p = bpf_map_lookup_elem(&flb_plans, &plan);
	if (!p || p->member_count == 0)
		return NO_MEMBER;
	__u32 n = p->member_count;
	__u32 slots = p->slot_count;

	switch (p->kind) {
	case PLAN_SEQUENCE:
		if (!slots)
			return NO_MEMBER;
		/* One shared cursor per plan, advanced atomically (BPF_ATOMIC | BPF_FETCH, kernel ≥ 5.12). */
		return slot_at(p, __sync_fetch_and_add(&p->cursor, 1) % slots);
	case PLAN_RANDOM:
		if (!slots)
			return NO_MEMBER;
		return slot_at(p, bpf_get_prandom_u32() % slots);
	case PLAN_HASH:
		if (!slots)
			return NO_MEMBER;
		return slot_at(p, chash % slots);
	case PLAN_LEAST:
		return pick_least(svc, plan, n);
	case PLAN_TWO_CHOICES:
		return pick_two(svc, plan, n);
	}
	return NO_MEMBER;
}

#endif
