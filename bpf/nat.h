/* SPDX-License-Identifier: MIT */
/*
 * One-arm full NAT: L2 next hop, SNAT port allocation, header rewrite and flow-state tracking.
 */
#ifndef FLB_NAT_H
#define FLB_NAT_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include "counters.h"
#include "csum.h"

#ifndef AF_INET
#define AF_INET 2
#endif

static __always_inline struct flb_config *config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&flb_config, &zero);
}

static __always_inline int cfg_static_neigh(const struct flb_config *c) { return c->flags & CFG_STATIC_NEIGH; }
static __always_inline int cfg_draining(const struct flb_config *c) { return c->flags & CFG_DRAINING; }
static __always_inline int cfg_is_snat_port(const struct flb_config *c, __be16 port)
{
	__u16 p = bpf_ntohs(port);
	return c->snat_first && p >= c->snat_first && p <= c->snat_last;
}

/**
 * Resolve the MACs and egress interface toward `dst` (sent from `src`). FLB_GO_ON with *out filled, or
 * XDP_PASS: an unknown neighbour is left to the kernel, which resolves ARP.
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
		return pass(REASON_NO_NEIGH);
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
		return pass(REASON_FIB_FAIL);
	__builtin_memcpy(out->dmac, fib.dmac, ETH_ALEN);
	__builtin_memcpy(out->smac, fib.smac, ETH_ALEN);
	out->ifindex = fib.ifindex;
	return FLB_GO_ON;
}

/**
 * The next hop of a packet of an existing flow, in *out: the flow's cached hop for this direction if it
 * was resolved this second, else resolve_l2() again (FLB_GO_ON, or the action for the packet) and
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
	int action = resolve_l2(ctx, cfg, src, dst, learned, ours, out);
	if (action >= 0)
		return action;
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

/**
 * Rewrite the packet to saddr:sport → daddr:dport with the MACs of `out`, updating both checksums
 * incrementally (csum.h). Every argument is in network order.
 */
static __always_inline void rewrite(struct packet *p, const struct next_hop *out, __be32 saddr, __be16 sport,
				    __be32 daddr, __be16 dport)
{
	struct iphdr *iph = p->iph;
	struct tcphdr *tcph = p->tcph;

	__builtin_memcpy(p->eth->h_dest, out->dmac, ETH_ALEN);
	__builtin_memcpy(p->eth->h_source, out->smac, ETH_ALEN);

	/* Addresses are in the IP header checksum and in the TCP pseudo-header. */
	csum_replace4(&iph->check, iph->saddr, saddr);
	csum_replace4(&tcph->check, iph->saddr, saddr);
	iph->saddr = saddr;
	csum_replace4(&iph->check, iph->daddr, daddr);
	csum_replace4(&tcph->check, iph->daddr, daddr);
	iph->daddr = daddr;
	/* Ports are only in the TCP checksum. */
	csum_replace2(&tcph->check, tcph->source, sport);
	tcph->source = sport;
	csum_replace2(&tcph->check, tcph->dest, dport);
	tcph->dest = dport;
}

/** The reverse-table key of a forward flow: what the backend's replies look like. */
static __always_inline void reverse_key(const struct flow_key *fk, const struct flow_fwd *f, struct flow_key *rk)
{
	rk->saddr = f->be_addr;
	rk->daddr = fk->daddr; /* SNAT source = the service IP */
	rk->sport = f->be_port;
	rk->dport = f->snat_port;
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

/*
 * TCP timestamp modulation (pf's `modulate state` idea applied to RFC 7323 timestamps).
 *
 * Why: the backend keys TIME_WAIT by (LB address, SNAT port). When that SNAT port is later reused toward
 * the same backend by another client, the new SYN's TSval comes from that client's clock (Linux also
 * randomises the TS offset per address pair), usually "older" than the ts_recent the TIME_WAIT socket
 * holds, and PAWS drops the SYN (TcpExtPAWSTimewait): the client retransmits after 1 s, or never gets in.
 * So every flow's TSvals toward backends are moved onto one LB clock:
 *
 *   on the SYN that creates the flow   ts_off  = lb_now_ms − TSval            (u32, wrapping)
 *   client → backend                   TSval' = TSval + ts_off
 *   backend → client                   TSecr' = TSecr − ts_off   (the client gets its own values back)
 *
 * lb_now_ms is CLOCK_MONOTONIC (bpf_ktime_get_ns) in milliseconds truncated to u32. Milliseconds: RFC 7323
 * §5.4 wants a timestamp clock between 1 ms and 1 s per tick, and 1 ms is what Linux clients tick at,
 * so a flow's TSval' keeps advancing at about the LB clock's rate. Monotonic: never steps back (unlike
 * the wall clock), shared by every CPU, so a later flow's SYN always carries a TSval' at or above
 * what earlier flows sent from the same SNAT port. The u32 wrap (49.7 days) is harmless: PAWS compares
 * with s32 differences and treats ts_recent older than 24 days as invalid.
 *
 * Limits: after its SYN, a flow's TSval' advances at its client's clock rate, so it can run a few ms
 * ahead of the LB clock (transit jitter), or further on a long flow from a client ticking faster than
 * 1 kHz. A SYN reusing the port within that margin may then tie or trail; the backend still accepts a
 * SYN whose ISN is above the TIME_WAIT socket's rcv_nxt, so these cases fall back to today's odds.
 */

/** The LB timestamp clock: CLOCK_MONOTONIC in ms, truncated to u32 (see above). */
static __always_inline __u32 lb_ts_clock(void)
{
	return (__u32)(bpf_ktime_get_ns() / 1000000ULL);
}

static __always_inline int flow_modulates_ts(const struct flow_fwd *f) { return f->state & FLOW_TS_MOD; }

/**
 * Add `delta` (host order, wrapping) to the 4-byte timestamp field at `field` (network order, maybe
 * unaligned: read and written with memcpy) and update the TCP checksum for it:
 * RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), over the field's two 16-bit words (csum_replace4).
 */
static __always_inline void ts_field_add(struct tcphdr *t, __u8 *field, __u32 delta)
{
	__be32 old, new;
	__builtin_memcpy(&old, field, sizeof(old));
	new = bpf_htonl(bpf_ntohl(old) + delta);
	csum_replace4(&t->check, old, new);
	__builtin_memcpy(field, &new, sizeof(new));
}

/**
 * On the SYN that creates a flow: when it carries a timestamp option, set FLOW_TS_MOD and ts_off in `f`
 * (not yet in the map) and return the option's data for ts_field_add once the flow is recorded (a SYN
 * passed to the kernel instead must stay unmodified). Without the option: NULL, `f` unchanged, and the
 * flow's later packets are never looked at for timestamps.
 */
static __always_inline __u8 *ts_start_flow(struct xdp_md *ctx, struct packet *p, struct flow_fwd *f)
{
	__u8 *ts = ts_data(ctx, p);
	if (!ts)
		return NULL;
	__be32 tsval;
	__builtin_memcpy(&tsval, ts, sizeof(tsval));
	f->ts_off = lb_ts_clock() - bpf_ntohl(tsval);
	f->state |= FLOW_TS_MOD;
	return ts;
}

/**
 * Rewrite the timestamps of a packet of an existing flow travelling in `dir`: TSval + ts_off toward the
 * backend, TSecr − ts_off toward the client. Packets without the option (or with malformed options) are
 * left as they are. `f` is a copy taken from the map (ts_off never changes after the SYN).
 */
static __always_inline void ts_modulate(struct xdp_md *ctx, struct packet *p, const struct flow_fwd *f, int dir)
{
	if (!flow_modulates_ts(f))
		return;
	__u8 *ts = ts_data(ctx, p);
	if (!ts)
		return;
	if (dir == DIR_C2B)
		ts_field_add(p->tcph, ts, f->ts_off);      /* TSval */
	else
		ts_field_add(p->tcph, ts + 4, -f->ts_off); /* TSecr */
}

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
