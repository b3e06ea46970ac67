// SPDX-License-Identifier: MIT
/*
 * TEST ONLY: an XDP program that passes everything. The netns test attaches it to the bridge side of the
 * LB's veth so native-mode XDP_TX on the LB's veth is delivered (veth only runs the peer's NAPI, which
 * XDP_TX frames need, when the peer has an XDP program).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
