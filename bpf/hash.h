/* SPDX-License-Identifier: MIT */
/* The client hash both data planes agree on (src/control/algorithms/hash.ts clientHash). */
#ifndef FLB_HASH_H
#define FLB_HASH_H

#include <linux/types.h>

/* MurmurHash3's 32-bit finalizer; hash.ts fmix32 is its twin (a packet-table row pins a value). */
static __always_inline __u32 fmix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* clientHash of an IPv4 source: fmix32 of the address in host order (bpf_ntohl(iph->saddr)). */
static __always_inline __u32 client_hash(__be32 saddr)
{
	return fmix32(__builtin_bswap32(saddr));
}

#endif
