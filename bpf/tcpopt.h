/* SPDX-License-Identifier: MIT */
/*
 * TCP options (RFC 9293 §3.2, RFC 7323): finding one option in a packet parse_packet accepted. Used for
 * timestamps (tsmod.h) on every packet that has options, and for the window scale on SYNs (flow.h).
 */
#ifndef FLB_TCPOPT_H
#define FLB_TCPOPT_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>

/* A TCP header holds at most 40 bytes of options. */
#define TCP_OPTS_MAX 40
#define TCPOPT_EOL 0
#define TCPOPT_NOP 1
#define TCPOPT_WINDOW 3
#define TCPOLEN_WINDOW 3     /* kind, len, shift count */
#define TCPOPT_TIMESTAMP 8
#define TCPOLEN_TIMESTAMP 10 /* kind, len, TSval (4), TSecr (4) */

/* Where the TCP header starts: parse_packet only lets through untagged Ethernet and IPv4 with IHL 5. */
#define TCP_HDR_OFF (sizeof(struct ethhdr) + sizeof(struct iphdr))
/* The largest offset tcp_opt_off can return: an option's data ends within 40 bytes of options. */
#define TCP_OPT_OFF_MAX (TCP_HDR_OFF + sizeof(struct tcphdr) + TCP_OPTS_MAX - 1)

/**
 * Find option `kind` of length `olen_want` in the TCP header. Returns the offset from the packet start
 * of its data (after kind and length; not necessarily aligned), or 0 when the header has no such option
 * or a malformed one: a length below 2, an option running past doff or past data_end, the option with
 * another length, or an EOL before it. The caller then leaves the options alone (the endpoints judge them).
 *
 * A global (non-inlined) function: the verifier checks it once, on its own, instead of once per call
 * site with every caller's state (the walk is the costliest loop in the program; inlined at its call
 * sites it multiplied the verified instructions by 4.5). Globals get only ctx and scalars, so it
 * re-reads data/data_end from ctx and the caller bounds the result again (tcp_opt()).
 *
 * Verifier bounds: `off` is checked against `len` (≤ 40, from the 4-bit doff) and against TCP_OPTS_MAX
 * explicitly, so `opt + off` is a packet pointer with a bounded variable offset, and every byte is read
 * only after an explicit `> data_end` check on that pointer. One step per option, each consuming ≥ 1
 * byte, so TCP_OPTS_MAX iterations always suffice (bounded loop, Linux ≥ 5.3).
 */
__noinline int tcp_opt_off(struct xdp_md *ctx, __u32 kind, __u32 olen_want)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct tcphdr *t = data + TCP_HDR_OFF;
	if ((void *)(t + 1) > data_end || t->doff <= 5)
		return 0;
	__u8 *opt = (__u8 *)(t + 1);
	__u32 len = t->doff * 4 - sizeof(struct tcphdr);

	__u32 off = 0;
	for (int i = 0; i < TCP_OPTS_MAX; i++) {
		if (off >= len || off >= TCP_OPTS_MAX)
			return 0;
		__u8 *k = opt + off;
		if ((void *)(k + 1) > data_end)
			return 0;
		if (k[0] == TCPOPT_EOL)
			return 0;
		if (k[0] == TCPOPT_NOP) {
			off += 1;
			continue;
		}
		if ((void *)(k + 2) > data_end)
			return 0;
		__u32 olen = k[1];
		if (olen < 2 || off + olen > len)
			return 0;
		if (k[0] == kind) {
			if (olen != olen_want || (void *)(k + olen) > data_end)
				return 0;
			return TCP_HDR_OFF + sizeof(struct tcphdr) + off + 2;
		}
		off += olen;
	}
	return 0;
}

/**
 * The data of option `kind` (length `olen`, so `olen - 2` data bytes) in the packet, or NULL. The
 * offset from the global function is an unknown scalar to the verifier here, hence the range check
 * before it becomes a pointer, and the bounds check of the data against data_end.
 */
static __always_inline __u8 *tcp_opt(struct xdp_md *ctx, __u32 kind, __u32 olen)
{
	__u32 off = tcp_opt_off(ctx, kind, olen);
	if (off < TCP_HDR_OFF + sizeof(struct tcphdr) || off > TCP_OPT_OFF_MAX)
		return NULL;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *d = data + off;
	if ((void *)(d + (olen - 2)) > data_end) /* olen is a constant at every (inlined) call */
		return NULL;
	return d;
}

#endif
