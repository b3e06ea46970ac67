/* SPDX-License-Identifier: MIT */
/* SNAT source-port allocation: a port toward one backend is claimed by inserting the flow's reverse entry. */
#ifndef FLB_SNAT_H
#define FLB_SNAT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "maps.h"

/**
 * Claim a SNAT source port toward one backend and record the reverse flow. Returns the port (network
 * order) or 0 when every probe was busy.
 *
 * Scheme: a per-CPU cursor walks the configured range; CPU c starts SNAT_CPU_STRIDE·c ports further on,
 * so CPUs rarely probe the same ports. A candidate is claimed by inserting the reverse entry with
 * BPF_NOEXIST, which is atomic across CPUs: two CPUs cannot take the same (backend, port). An existing
 * entry whose forward flow is gone (LRU eviction) or no longer points back at it is stale and is taken
 * over. The LB's own sockets never use these ports: the loader reserves the range in
 * net.ipv4.ip_local_reserved_ports. SNAT_TRIES probes bound the loop for the verifier.
 */
static __always_inline __be16 alloc_snat_port(const struct flb_config *cfg, const struct flow_key *fk,
					      __be32 be_addr, __be16 be_port)
{
	__u32 zero = 0;
	__u32 *cur = bpf_map_lookup_elem(&flb_port_cur, &zero);
	if (!cur)
		return 0;
	__u32 first = cfg->snat_first, last = cfg->snat_last;
	if (!first || last < first)
		return 0;
	__u32 range = last - first + 1;
	__u32 base = *cur + bpf_get_smp_processor_id() * SNAT_CPU_STRIDE;

	for (__u32 i = 0; i < SNAT_TRIES; i++) {
		__be16 port = bpf_htons((__u16)(first + (base + i) % range));
		struct flow_key rk = { .saddr = be_addr, .daddr = fk->daddr, .sport = be_port, .dport = port };
		if (bpf_map_update_elem(&flb_rev, &rk, fk, BPF_NOEXIST) == 0) {
			*cur += i + 1;
			return port;
		}
		struct flow_key *owner = bpf_map_lookup_elem(&flb_rev, &rk);
		if (!owner)
			continue;
		struct flow_key ok = *owner;
		struct flow_fwd *f = bpf_map_lookup_elem(&flb_fwd, &ok);
		if (!f || f->snat_port != port || f->be_addr != be_addr || f->be_port != be_port) {
			if (bpf_map_update_elem(&flb_rev, &rk, fk, BPF_ANY) == 0) {
				*cur += i + 1;
				return port;
			}
		}
	}
	*cur += SNAT_TRIES;
	return 0;
}

#endif
