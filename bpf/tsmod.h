/* SPDX-License-Identifier: MIT */
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
 *
 * This header is the whole feature but the option walk (tcpopt.h): finding the option (ts_data), the LB
 * clock, ts_off on the SYN (ts_start_flow) and the TSval/TSecr rewrites with their checksum updates
 * (ts_modulate).
 */
#ifndef FLB_TSMOD_H
#define FLB_TSMOD_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "csum.h"
#include "l4csum.h"
#include "parsing.h"
#include "structs.h"
#include "tcpopt.h"

/**
 * The timestamp option's data bytes of packet `p` (TSval, TSecr), or NULL. Skips the walk when doff
 * is 5 (no options: the common data packet of a flow without timestamps).
 */
static __always_inline __u8 *ts_data(struct xdp_md *ctx, const struct packet *p)
{
	if (p->tcph->doff <= 5)
		return NULL;
	/* Fast path: NOP, NOP, TS(8, 10) as the first option bytes — what Linux, BSD and Windows put on
	 * every segment after the handshake (RFC 7323 Appendix A). Same answer as the walk, without the call. */
	__u8 *opt = (__u8 *)(p->tcph + 1);
	void *end = (void *)(long)ctx->data_end;
	if (p->tcph->doff >= 8 && (void *)(opt + 12) <= end && opt[0] == TCPOPT_NOP && opt[1] == TCPOPT_NOP &&
	    opt[2] == TCPOPT_TIMESTAMP && opt[3] == TCPOLEN_TIMESTAMP)
		return opt + 4;
	return tcp_opt(ctx, TCPOPT_TIMESTAMP, TCPOLEN_TIMESTAMP);
}

/** The LB timestamp clock: CLOCK_MONOTONIC in ms, truncated to u32 (see above). */
static __always_inline __u32 lb_ts_clock(void)
{
	return (__u32)(bpf_ktime_get_ns() / 1000000ULL);
}

static __always_inline int flow_modulates_ts(const struct flow_fwd *f) { return f->state & FLOW_TS_MOD; }

/**
 * Add `delta` (host order, wrapping) to the 4-byte timestamp field at `field` (network order, maybe
 * unaligned: read and written with memcpy) and update the TCP checksum for it:
 * RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), over the field's two 16-bit words, byte-swapped when the
 * field starts at an odd offset (tcp_csum_replace4; a partial checksum is left alone, l4csum.h).
 */
static __always_inline void ts_field_add(struct packet *p, __u8 *field, __u32 delta)
{
	__be32 old, new;
	__builtin_memcpy(&old, field, sizeof(old));
	new = bpf_htonl(bpf_ntohl(old) + delta);
	/* Linux puts the option at an even offset (NOP, NOP, TS), but nothing requires it: NOP, TS, … puts
	 * TSval at an odd one, where its bytes straddle the checksum's 16-bit words (csum.h). */
	tcp_csum_replace4(p, old, new, (int)((field - (__u8 *)p->tcph) & 1));
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
		ts_field_add(p, ts, f->ts_off);      /* TSval */
	else
		ts_field_add(p, ts + 4, -f->ts_off); /* TSecr */
}

#endif
