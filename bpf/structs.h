/* SPDX-License-Identifier: MIT */
/*
 * Structs shared between the BPF program and TypeScript. The TypeScript side declares each once in
 * src/dataplane/xdp/layout.ts (its fields in order, each with its C type: byte order and nested structs
 * included); test/xdp/layout.test.ts reads this object's BTF and fails on any drift — size, a field's
 * name, offset, size or type, a field or a struct on one side only. Change a layout here → change
 * layout.ts → the test tells you if you missed one.
 * Wire-order fields are __be*; explicit pad fields keep every size a multiple of 4 (or 8 with __u64).
 */
#ifndef FLB_STRUCTS_H
#define FLB_STRUCTS_H

#include <linux/types.h>

/* A TCP flow in one direction as seen on the wire (all fields network order). Used as the forward
 * key (client → service), the reverse key (backend → LB SNAT address and port) and the reverse value
 * (the forward key). */
struct flow_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
};

/* A resolved L2 next hop, cached in each flow per direction (neigh.h next_hop): bpf_fib_lookup costs more
 * than the rest of a packet's work, so a flow resolves each direction once and again once a second. */
struct next_hop {
	__u8 dmac[6];
	__u8 smac[6];
	__u32 ifindex; /* egress interface; 0 = not resolved yet */
	__u32 at;      /* coarse CLOCK_MONOTONIC second it was resolved */
};

/*
 * One side of a flow's TCP sequence space as the LB has seen it (flow.h track_seq), for RFC 5961-style
 * checks: an RST or FIN acts only in the receiver's window, the last ACK must acknowledge the FIN.
 * Only segments that fit the other side's window move these, so spoofed packets cannot drag them.
 */
struct tcp_dir {
	__u32 end;    /* this side's SND.NXT as seen: highest seq + length (+1 for SYN and FIN) */
	__u32 ack;    /* highest ACK this side sent (a lower bound of its RCV.NXT); before it sent one, the
		       * least it must acknowledge (the other side's ISN + 1) */
	__u32 edge;   /* highest ack + scaled window this side advertised: where the other side's data must end */
	__u8 wscale;  /* this side's window scale (RFC 7323 §2; 0 unless both SYNs carried the option) */
	__u8 pad[3];
};

/*
 * A flow: the value of the forward tables (flb_fwd established, flb_syn_fwd during the handshake),
 * keyed by the client's 4-tuple. Its reverse entry (struct flow_rev) carries the same id: a packet is
 * rewritten only if both exist and agree (flow.h).
 */
struct flow_fwd {
	__u64 id;         /* unique per flow (per-CPU counter << 16 | CPU), never 0 */
	__be32 be_addr;   /* backend IPv4 */
	__be16 be_port;   /* backend port */
	__be16 snat_port; /* LB source port toward the backend (0 while the SYN's port is being claimed) */
	__u16 svc;        /* service index */
	__u16 backend;    /* backend id within the service */
	__u32 state;      /* FLOW_* bits, updated atomically */
	__u32 gen;        /* the backend slot's generation when the flow was counted (struct backend.gen) */
	__u32 last_seen;  /* CLOCK_MONOTONIC seconds of the last packet (coarse); the TS sweeper expires idle flows */
	__u32 ts_off;     /* FLOW_TS_MOD only: LB ms clock − the client's TSval on its SYN (u32, wraps); see tsmod.h */
	__u8 client_mac[6]; /* L2 source of the client's SYN: the reply's next hop if the kernel has no
			     * neighbour entry for the client (it need not: ARP was for the service IP) */
	__u16 pad;
	struct tcp_dir c2b; /* the client's side */
	struct tcp_dir b2c; /* the backend's side */
	struct next_hop to_backend; /* set by the SYN */
	struct next_hop to_client;  /* set by the backend's first reply */
	__be32 snat_addr;           /* LB source address toward the backend: flb_config.snat_addr when the SYN
				     * came (kept per flow: a later change of flb_config leaves open flows on theirs) */
};

/* Reverse-table value (flb_rev, flb_syn_rev), keyed by backend → LB SNAT address and port: which flow
 * owns the port.
 * `id` is the one word taken over with compare-and-swap when a stale entry changes owner (snat.h). */
struct flow_rev {
	struct flow_key fwd; /* the flow's forward key */
	__u32 since;         /* coarse CLOCK_MONOTONIC second of the claim (flow.h REV_CLAIM_GRACE_S) */
	__u64 id;            /* the owner's flow_fwd.id (0: released, free to take) */
};

/* Service table key: a listen address. */
struct svc_key {
	__be32 addr;
	__be16 port;
	__u16 pad;
};

struct svc_val {
	__u32 index; /* 0 … MAX_SERVICES-1: selects plans, backends, counters */
	__u32 flags; /* SVC_* */
};

/* One plan table header, at flb_plans[plan_key(svc, buffer)]. */
struct plan_hdr {
	__u32 kind;         /* PLAN_* */
	__u32 slot_base;    /* first index in flb_slots */
	__u32 slot_count;   /* slots in use (0 for least/two_choices) */
	__u32 member_count; /* entries at flb_members[member_key(plan_key(svc, buffer), i)] */
	__u32 cursor;       /* sequence plans: the shared cursor (atomic fetch-add), reset when the plan is written */
	__u32 pad;
};

/* One member of the healthy set: parallel to Plan.members/Plan.weights. */
struct plan_member {
	__u32 id;
	__u32 weight;
};

/* flb_backends[backend_key(svc, id)] */
struct backend {
	__be32 addr;
	__be16 port;
	__u16 flags; /* BACKEND_PRESENT, BACKEND_ELIGIBLE */
	__u32 gen;   /* bumped by TS when another backend takes the slot (its gauge restarts at 0): flows of
		      * an older generation no longer move flb_be_active (counters.h) */
};

/* Per-CPU counters per service and per backend. Bytes are TCP payload bytes (what the proxy counts). */
struct flb_counters {
	__u64 packets_in;  /* client → backend */
	__u64 bytes_in;
	__u64 packets_out; /* backend → client */
	__u64 bytes_out;
	__u64 flows_new;    /* handshakes completed (a SYN alone is no flow) */
	__u64 flows_closed; /* counted flows closed by FIN/RST */
};

/* flb_config[0]: run-time settings written by the loader. */
struct flb_config {
	__u16 snat_first; /* host order, inclusive: new flows take ports from here */
	__u16 snat_last;
	__u32 flags;         /* CFG_* */
	__u8 smac[6];        /* the attached interface's MAC: source MAC of hops from flb_nbr (neigh.h) */
	__u16 pad;
	__u16 prev_first;    /* the range before a reload changed it (0 = none): flows still using its */
	__u16 prev_last;     /* ports keep translating until the sweeper sees none left (plane.ts) */
	__be32 snat_addr;    /* source address toward backends (xdp.snat_address, default the interface's
			      * primary IPv4): each instance behind ECMP has its own, so replies come back to it */
};

/* flb_cpu value: per-CPU scratch state of the program. */
struct cpu_state {
	__u32 port_cursor; /* the SNAT allocator's cursor (snat.h) */
	__u32 pad;
	__u64 next_id;     /* flow ids handed out by this CPU (flow.h new_flow_id) */
};

/* Sizes chosen at load time (maps.h flb_sizes, in .rodata: the loader writes them before load, the
 * verifier then sees them as constants). */
struct flb_sizes {
	__u32 backends; /* backend ids per service: the stride of the per-backend arrays, ≤ MAX_BACKENDS */
	__u32 pad;
};

/* flb_nbr value: the MAC of a backend's next hop, written by the loader (neigh.h resolve_from_table). */
struct nbr_mac {
	__u8 mac[6];
	__u16 pad;
};

#endif
