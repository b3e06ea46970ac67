/* SPDX-License-Identifier: MIT */
/*
 * Incremental Internet checksum updates (RFC 1624).
 *
 * When a 16-bit word m in a checksummed region becomes m', the new checksum is (RFC 1624, eqn. 3)
 *     HC' = ~(~HC + ~m + m')
 * in one's-complement arithmetic. Eqn. 3 (unlike RFC 1141's HC' = HC + m - m') never produces the
 * wrong zero (0x0000 instead of 0xffff). A 32-bit field is two 16-bit words.
 *
 * Byte order: we read the checksum and the changed fields straight from the packet as native u16s,
 * without swapping. One's-complement sums commute with byte swapping (RFC 1071 §2(B)), so summing
 * swapped words and storing the swapped result gives the right bytes on the wire.
 *
 * The TCP checksum covers the pseudo-header (addresses), so an address change updates both the IP
 * and the TCP checksums; a port change updates only TCP.
 */
#ifndef FLB_CSUM_H
#define FLB_CSUM_H

#include <linux/types.h>

/** Fold a 32-bit one's-complement accumulator into 16 bits (two folds absorb every carry). */
static __always_inline __u16 csum_fold32(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/** *check: HC' = ~(~HC + ~m + m') for a 16-bit word changing from `from` to `to` (both as stored). */
static __always_inline void csum_replace2(__u16 *check, __u16 from, __u16 to)
{
	__u32 s = (__u16)~*check;
	s += (__u16)~from;
	s += to;
	*check = ~csum_fold32(s);
}

/** Same for a 32-bit field: its two 16-bit halves in one sum. */
static __always_inline void csum_replace4(__u16 *check, __u32 from, __u32 to)
{
	__u32 s = (__u16)~*check;
	s += (__u16)~(from & 0xffff);
	s += (__u16)~(from >> 16);
	s += to & 0xffff;
	s += to >> 16;
	*check = ~csum_fold32(s);
}

/**
 * csum_replace4 for a 32-bit field that starts at an ODD byte offset of the checksummed region (a TCP
 * option after a single NOP, say): its bytes straddle the region's 16-bit words. The one's-complement
 * sum of bytes shifted by one position is the byte-swapped sum of the same bytes aligned (RFC 1071
 * §2(B)), so the change ~m + m' is summed as if aligned, folded, byte-swapped, and then applied.
 */
static __always_inline void csum_replace4_odd(__u16 *check, __u32 from, __u32 to)
{
	__u32 d = (__u16)~(from & 0xffff);
	d += (__u16)~(from >> 16);
	d += to & 0xffff;
	d += to >> 16;
	__u16 f = csum_fold32(d);
	__u32 s = (__u16)~*check;
	s += (__u16)((f << 8) | (f >> 8));
	*check = ~csum_fold32(s);
}

#endif
