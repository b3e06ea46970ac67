// SPDX-License-Identifier: MIT
/*
 * A sockmap relay: the prototype featherlb's kernel relay was measured against and rejected for (it
 * uses splice(2) instead: docs/config.md#kernel_relay). test/bench/tools/sockmap-relay.ts loads it and
 * measures it; docs/benchmarks.md#kernel-relay has the figures.
 *
 * A client/backend socket pair sits in flb_relay_socks at indexes 2k and 2k+1 (the peer of index i is
 * i ^ 1). The program is attached to that map as its BPF_SK_SKB_VERDICT program: the kernel runs it for
 * every skb a socket in the map receives (tcp_read_skb, no stream parser) and queues the skb on the
 * peer's psock, whose worker writes it into the peer's send queue. No byte reaches user space.
 *
 * Why it was rejected (Linux 6.18): tcp_read_skb takes each skb off the receive queue and the window
 * reopens, whether or not the peer could take the bytes; the psock queue has no bound. Behind a reader
 * that stopped, the kernel queued 2.3 GB in 6 s. User space cannot see that queue either, so it cannot
 * tell when a FIN may be forwarded without cutting bytes still queued.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Sized by the loader (bpf_map__set_max_entries): two slots per relayed connection. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} flb_relay_socks SEC(".maps");

/* Socket cookie (SO_COOKIE) → the socket's slot in flb_relay_socks. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2);
	__type(key, __u64);
	__type(value, __u32);
} flb_relay_slot SEC(".maps");

/* Per slot: bytes received on that socket and redirected to its peer. Read by user space through mmap. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
} flb_relay_bytes SEC(".maps");

SEC("sk_skb")
int flb_relay(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	__u32 *slot = bpf_map_lookup_elem(&flb_relay_slot, &cookie);
	/* A socket in the map without a slot is being taken out: leave the bytes to its reader. */
	if (!slot)
		return SK_PASS;
	__u32 at = *slot;
	__u64 *bytes = bpf_map_lookup_elem(&flb_relay_bytes, &at);
	if (bytes)
		/* One writer per slot at a time (a socket's skbs are read under its lock), one reader
		 * (the proxy): an atomic add keeps the reader from seeing a torn value. */
		__sync_fetch_and_add(bytes, skb->len);
	/* Egress redirect (flags 0): into the peer's send queue. An empty peer slot drops the skb: the
	 * proxy empties a pair's slots only while closing it. */
	return bpf_sk_redirect_map(skb, &flb_relay_socks, at ^ 1, 0);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
