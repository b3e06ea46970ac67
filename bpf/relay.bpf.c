// SPDX-License-Identifier: MIT
/*
 * featherlb kernel relay: the proxy data plane hands an established client/backend socket pair to the
 * kernel, which moves each side's received bytes straight into the other side's send queue. No byte of
 * a relayed connection is read into user space again (src/dataplane/proxy/kernelrelay.ts).
 *
 * The pair sits in flb_relay_socks at indexes 2k and 2k+1 (a pair's sockets are neighbours: the peer of
 * index i is i ^ 1). The program is attached to that map as its BPF_SK_SKB_VERDICT program: the kernel
 * runs it for every skb the socket receives (tcp_read_skb, no stream parser) and sends the skb where the
 * program redirects it. The proxy owns the sockets' lifecycle: it inserts the pair, and the kernel takes
 * a socket out of the map when the proxy closes it.
 *
 * What stays in user space, and why it still works:
 *   - FIN: tcp_read_skb does not pass a FIN on; the proxy sees the end of stream as before (the socket
 *     reads 0) and forwards it with shutdown(), once flb_relay_bytes says every byte went out first.
 *   - Backpressure: an skb the peer's send buffer cannot take waits in the peer's psock queue, and the
 *     source's receive window closes as its receive memory stays charged (the kernel, not us).
 *   - Idle timeouts, byte counters: flb_relay_bytes, an mmap-able array read by the proxy without a
 *     system call. Slot i counts the bytes received on socket i and handed to socket i ^ 1.
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
