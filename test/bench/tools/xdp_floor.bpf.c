// SPDX-License-Identifier: MIT
/*
 * The bench's XDP floor: the cheapest one-arm XDP balancer the bench topology allows, as a reference
 * row (system "xdp-floor" in run.sh), NOT a product. No flow table, no SNAT ports, no lookups, no
 * counters, no timestamp handling: it rewrites addresses and MACs with compile-time constants and
 * sends the packet back out (XDP_TX), like the stateless teaching balancers.
 *
 *   client → VIP:8080  becomes  VIP:cport → backend (cport % 3):80      VIP:9000 → backend:9000 likewise
 *   backend:80 → VIP:cport  becomes  VIP:8080 → client:cport
 *
 * It works only for the bench: one client address (CLIENT_IP), whose source ports stay unique per
 * backend because it keeps them (no SNAT). Whatever featherlb's XDP plane costs beyond this row is the
 * price of being a real balancer (state, any client, SNAT, health, counters); whatever this row costs
 * beyond *direct* is the price of the extra hop itself (veth + bridge + generic XDP on the same cores).
 *
 * Built by run.sh with clang -target bpf and -D for every address:
 *   VIP CLIENT_IP BE0 BE1 BE2 (IPv4 as one host-order number), LB_MAC CLIENT_MAC BE0_MAC BE1_MAC BE2_MAC
 *   (six comma-separated bytes).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "../../../bpf/csum.h" /* the same RFC 1624 updates featherlb uses */

static __always_inline void set_addrs(struct iphdr *ip, struct tcphdr *t, __be32 src, __be32 dst)
{
	csum_replace4(&ip->check, ip->saddr, src);
	csum_replace4(&t->check, ip->saddr, src);
	ip->saddr = src;
	csum_replace4(&ip->check, ip->daddr, dst);
	csum_replace4(&t->check, ip->daddr, dst);
	ip->daddr = dst;
}

static const __u8 lb_mac[ETH_ALEN] = { LB_MAC };
static const __u8 client_mac[ETH_ALEN] = { CLIENT_MAC };
static const __u8 be_mac[3][ETH_ALEN] = { { BE0_MAC }, { BE1_MAC }, { BE2_MAC } };

SEC("xdp")
int xdp_floor(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *t = (void *)(ip + 1);
	if ((void *)(t + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_TCP || ip->daddr != bpf_htonl(VIP))
		return XDP_PASS;

	__be16 http = bpf_htons(8080), stream = bpf_htons(9000);
	if (t->dest == http || t->dest == stream) { /* client → backend */
		__u32 i = bpf_ntohs(t->source) % 3;
		__be32 be = i == 0 ? bpf_htonl(BE0) : i == 1 ? bpf_htonl(BE1) : bpf_htonl(BE2);
		__be16 port = t->dest == http ? bpf_htons(80) : stream;
		set_addrs(ip, t, bpf_htonl(VIP), be);
		csum_replace2(&t->check, t->dest, port);
		t->dest = port;
		/* constant indices only: the verifier rejects a variable offset into .rodata here */
		__builtin_memcpy(eth->h_dest, i == 0 ? be_mac[0] : i == 1 ? be_mac[1] : be_mac[2], ETH_ALEN);
		__builtin_memcpy(eth->h_source, lb_mac, ETH_ALEN);
		return XDP_TX;
	}
	if (t->source == bpf_htons(80) || t->source == stream) { /* backend → client */
		__be16 port = t->source == stream ? stream : http;
		set_addrs(ip, t, bpf_htonl(VIP), bpf_htonl(CLIENT_IP));
		csum_replace2(&t->check, t->source, port);
		t->source = port;
		__builtin_memcpy(eth->h_dest, client_mac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, lb_mac, ETH_ALEN);
		return XDP_TX;
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
