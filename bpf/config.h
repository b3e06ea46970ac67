/* SPDX-License-Identifier: MIT */
/* The run-time settings the loader writes into flb_config (struct flb_config), and predicates on them. */
#ifndef FLB_CONFIG_H
#define FLB_CONFIG_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "maps.h"

/** flb_config[0], or NULL (never, for an array map of one entry: the verifier wants the check). */
static __always_inline struct flb_config *config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&flb_config, &zero);
}

static __always_inline int cfg_static_neigh(const struct flb_config *c) { return c->flags & CFG_STATIC_NEIGH; }
static __always_inline int cfg_draining(const struct flb_config *c) { return c->flags & CFG_DRAINING; }
static __always_inline int cfg_native(const struct flb_config *c) { return c->flags & CFG_NATIVE; }
/** Is `port` (network order) one new flows take from, or one of the range a reload replaced? */
static __always_inline int cfg_is_snat_port(const struct flb_config *c, __be16 port)
{
	__u16 p = bpf_ntohs(port);
	if (c->snat_first && p >= c->snat_first && p <= c->snat_last)
		return 1;
	return c->prev_first && p >= c->prev_first && p <= c->prev_last;
}

#endif
