/* SPDX-License-Identifier: MIT */
/* The NAT rewrite of a packet's MACs, addresses and ports, with incremental checksum updates (csum.h). */
#ifndef FLB_REWRITE_H
#define FLB_REWRITE_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include "csum.h"
#include "l4csum.h"
#include "parsing.h"
#include "structs.h"

/**
 * Rewrite the packet to saddr:sport → daddr:dport with the MACs of `out`, updating both checksums
 * incrementally (csum.h; the TCP one full or partial, as p->csum_partial says: l4csum.h). Every argument
 * is in network order.
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
	tcp_csum_replace_addr(p, iph->saddr, saddr);
	iph->saddr = saddr;
	csum_replace4(&iph->check, iph->daddr, daddr);
	tcp_csum_replace_addr(p, iph->daddr, daddr);
	iph->daddr = daddr;
	/* Ports are only in the TCP checksum (a full one: a partial one gets them when it is completed). */
	tcp_csum_replace2(p, tcph->source, sport);
	tcph->source = sport;
	tcp_csum_replace2(p, tcph->dest, dport);
	tcph->dest = dport;
}

#endif
