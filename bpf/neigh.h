/* SPDX-License-Identifier: MIT */
/*
 * The L2 next hop of a rewritten packet: bpf_fib_lookup, else featherlb's neighbour table (flb_nbr),
 * else the MAC a client's SYN came from; cached per flow and direction (struct next_hop); transmit.
 */
#ifndef FLB_NEIGH_H
#define FLB_NEIGH_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include "config.h"
#include "counters.h"

#ifndef AF_INET
#define AF_INET 2
#endif

/* resolve_l2 / next_hop failures (besides FLB_GO_ON); the caller decides what the packet gets. */
#define NH_NO_NEIGH -2 /* the next hop's MAC is unknown */
#define NH_FIB_FAIL -3 /* no route */

/**
 * Resolve the MACs and egress interface toward `dst` (sent from `src`). FLB_GO_ON with *out filled, or
 * NH_NO_NEIGH / NH_FIB_FAIL. The caller drops or answers the packet: passing it to the kernel would not
 * resolve anything (the kernel keeps backends resolved through featherlb's managed neighbour entries)
 * and would make the kernel reset the connection.
 *
 * Two sources, tried in this order:
 *
 * 1. bpf_fib_lookup: the kernel's routing table and neighbour cache, exactly as a forwarded packet
 *    would see them (policy routing, several interfaces, immediate neighbour updates).
 * 2. featherlb's neighbour table (flb_nbr, dst → MAC, written by the loader: src/dataplane/xdp/nexthops.ts)
 *    when the kernel refuses the lookup because IPv4 forwarding is off on the ingress interface
 *    (BPF_FIB_LKUP_RET_FWD_DISABLED, the default on a fresh host: net.ipv4.ip_forward=0).
 *    bpf_ipv4_fib_lookup checks IN_DEV_FORWARD of params->ifindex before anything else, with or without
 *    BPF_FIB_LOOKUP_OUTPUT, so there is no lookup flavour that works with forwarding off. A one-arm NAT
 *    is not forwarding: the program answers for the service address and originates its own packets
 *    toward backends, so it needs no sysctl changed. The loader resolves each backend's next hop from
 *    the main routing table and the ARP cache once a second and keeps the kernel resolving it (managed
 *    neighbour entries); egress is the ingress interface and the source MAC its address (flb_config.smac).
 *
 * `learned` (replies to clients only) is the MAC the client's SYN arrived from and `ours` the MAC it
 * was sent to: used when neither source knows the client, which is common (the client ARPed for the
 * service IP, so the LB's kernel never needed the client's MAC, and the loader's table holds backends
 * only). Sending the reply back to where the request came from is what a one-arm balancer behind a
 * router wants anyway. Backends have no such fallback.
 *
 * CFG_STATIC_NEIGH (BPF_PROG_TEST_RUN packet tables only, where the test process has no such routes)
 * skips step 1.
 */
static __always_inline int use_learned(struct xdp_md *ctx, const __u8 *learned, const __u8 *ours,
				       struct next_hop *out)
{
	if (!learned)
		return NH_NO_NEIGH;
	__builtin_memcpy(out->dmac, learned, ETH_ALEN);
	__builtin_memcpy(out->smac, ours, ETH_ALEN);
	out->ifindex = ctx->ingress_ifindex;
	count_reason(REASON_NEIGH_LEARNED);
	return FLB_GO_ON;
}

/** Step 2 of resolve_l2: featherlb's own neighbour table. */
static __always_inline int resolve_from_table(struct xdp_md *ctx, const struct flb_config *cfg, __be32 dst,
					      const __u8 *learned, const __u8 *ours, struct next_hop *out)
{
	struct nbr_mac *m = bpf_map_lookup_elem(&flb_nbr, &dst);
	if (!m)
		return use_learned(ctx, learned, ours, out);
	__builtin_memcpy(out->dmac, m->mac, ETH_ALEN);
	__builtin_memcpy(out->smac, cfg->smac, ETH_ALEN);
	out->ifindex = ctx->ingress_ifindex;
	count_reason(REASON_NEIGH_TABLE);
	return FLB_GO_ON;
}

static __always_inline int resolve_l2(struct xdp_md *ctx, const struct flb_config *cfg, __be32 src,
				      __be32 dst, const __u8 *learned, const __u8 *ours,
				      struct next_hop *out)
{
	if (cfg_static_neigh(cfg))
		return resolve_from_table(ctx, cfg, dst, learned, ours, out);

	struct bpf_fib_lookup fib = {};
	fib.family = AF_INET;
	fib.l4_protocol = IPPROTO_TCP;
	/* fib.tot_len stays 0 so the lookup skips its MTU check: we never fragment, and a packet above
	 * the MTU here is a GSO/GRO super-packet (generic XDP sees them, e.g. from a TSO-enabled veth
	 * peer) that the egress device segments. With the length set, the lookup answers FRAG_NEEDED, the
	 * packet would be passed to our own stack, and the kernel would reset a connection it does not know. */
	fib.ipv4_src = src;
	fib.ipv4_dst = dst;
	fib.ifindex = ctx->ingress_ifindex;
	long rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_FWD_DISABLED)
		return resolve_from_table(ctx, cfg, dst, learned, ours, out);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return use_learned(ctx, learned, ours, out);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return NH_FIB_FAIL;
	__builtin_memcpy(out->dmac, fib.dmac, ETH_ALEN);
	__builtin_memcpy(out->smac, fib.smac, ETH_ALEN);
	out->ifindex = fib.ifindex;
	return FLB_GO_ON;
}

/**
 * The next hop of a packet of an existing flow, in *out: the flow's cached hop for this direction if it
 * was resolved this second, else resolve_l2() again (FLB_GO_ON, or NH_NO_NEIGH / NH_FIB_FAIL) and
 * cache the answer. So bpf_fib_lookup, the costliest step of a packet's path, runs about once per
 * flow, direction and second instead of once per packet; a route or neighbour change reaches an
 * established flow within a second.
 *
 * Concurrency: packets of one flow on two CPUs may both refresh `cache` in the same second; both write
 * what the FIB answered (the same bytes unless the neighbour changed in that instant). A reader copies
 * the cache once, so the worst case is one packet sent to a MAC that has just been replaced — TCP
 * retransmits it.
 */
static __always_inline int next_hop(struct xdp_md *ctx, const struct flb_config *cfg, struct next_hop *cache,
				    __u32 now, __be32 src, __be32 dst, const __u8 *learned, const __u8 *ours,
				    struct next_hop *out)
{
	*out = *cache;
	if (out->ifindex && out->at == now)
		return FLB_GO_ON;
	int rc = resolve_l2(ctx, cfg, src, dst, learned, ours, out);
	if (rc != FLB_GO_ON)
		return rc;
	out->at = now;
	*cache = *out;
	return FLB_GO_ON;
}

/** Transmit a rewritten packet: back out of the ingress interface, or redirected to another one. */
static __always_inline int transmit(struct xdp_md *ctx, const struct next_hop *out)
{
	if (out->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(out->ifindex, 0);
}

/** A next-hop failure (NH_NO_NEIGH / NH_FIB_FAIL) of a packet of an existing flow, or of an ICMP error about
 * one: dropped (the sender retransmits; passing it would make the kernel reset a connection it does not
 * know). Counted for service `svc`. */
static __always_inline int hop_failed(__u32 svc, int rc)
{
	return svc_drop(svc, rc == NH_NO_NEIGH ? REASON_NO_NEIGH : REASON_FIB_FAIL);
}

#endif
