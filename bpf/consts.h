/* SPDX-License-Identifier: MIT */
/*
 * featherlb BPF constants, in two kinds:
 *
 * - `enum flb_*`: shared with TypeScript. Every one is listed in struct flb_contract below so that it
 *   is in the object's BTF, and test/xdp/layout.test.ts checks every enumerator's name and value
 *   against src/dataplane/xdp/layout.ts (both ways: one side without the other fails). The limits that
 *   size maps (enum flb_limit) are the config's: src/config/limits.ts defines them, a config that needs
 *   more is refused when it is loaded.
 * - `#define`: private to the C side (verifier bounds, tuning, direction).
 */
#ifndef FLB_CONSTS_H
#define FLB_CONSTS_H

/* Helpers return an XDP action (>= 0) or FLB_GO_ON: callers do `if (action >= 0) return action;`. */
#define FLB_GO_ON -1

/* Limits: src/config/limits.ts defines the same names (the config contract). The maps are sized at load
 * time from the config (src/dataplane/xdp/capacity.ts sets max_entries and flb_sizes, maps.h); these are
 * the largest sizes the loader may choose, and the size maps.h declares. Only MAX_BACKENDS is also a
 * bound the verifier needs (select.h pick_least's loop, the backend id check in new_flow). */
enum flb_limit {
	/* Services one program holds (the service dimension of the per-service arrays). */
	MAX_SERVICES = 1024,
	/* Backends per service: the largest flb_sizes.backends, and the verifier's bound on loops over a
	 * plan's members (pick_least). */
	MAX_BACKENDS = 4096,
	/* Plan tables per service: one active, one being built (flip by index, see maps.h flb_svc_act). */
	PLAN_BUFFERS = 2,
	/* Member ids in plan slots, shared by every plan; TS allocates a range per (service, buffer). The
	 * loader sizes the pool from the config's plans; this caps it (256 MiB). */
	SLOT_POOL_MAX = 1 << 26,
};

/*
 * The layout of every map a later process may adopt (item 6 of issue 11 pins them): bump it with any
 * change to the key or value of flb_fwd, flb_rev, flb_syn_fwd, flb_syn_rev or the structs they hold,
 * so a process never reads flows written with another layout.
 */
enum flb_layout {
	FLB_LAYOUT_VERSION = 3, /* 2: handshake tables, flow ids, per-direction sequence tracking; 3: each flow
				 * keeps its SNAT address (the reverse key holds it) */
};

/* Timing shared with TypeScript (the sweeper uses the same limits as the program). */
enum flb_timing {
	/* A handshake (embryonic flow) that saw no packet for this long is abandoned: its SNAT port may be
	 * taken by a new flow (snat.h) and the sweeper deletes it. Linux clients retransmit a SYN after 1,
	 * 3 and 7 s: a retransmission after a longer gap simply starts a new handshake. */
	SYN_TIMEOUT_S = 5,
	/* After a search of the whole SNAT range toward one backend found no free port, SYNs toward that
	 * backend fail at once for this long, unless a flow toward it ends earlier (snat.h). */
	SNAT_FULL_BACKOFF_MS = 100,
	/* A reverse entry whose forward entry is missing counts as abandoned only once it is older than
	 * this: a flow inserts its reverse entry first and its forward entry a moment later (snat.h,
	 * flow.h promote). */
	REV_CLAIM_GRACE_S = 1,
};

/* Default table capacities; the loader overrides them from xdp.flow_table_size before load. */
#define FLOW_TABLE_DEFAULT 65536
#define SYN_TABLE_DEFAULT 16384
/* Distance between the per-CPU cursors' starting points in the port range (prime: spreads CPUs). */
#define SNAT_CPU_STRIDE 4099

/* struct plan_hdr.kind: the order of PlanKind in src/control/algorithms/types.ts (layout.ts PLAN_KIND). */
enum flb_plan_kind {
	PLAN_SEQUENCE = 0,
	PLAN_RANDOM = 1,
	PLAN_HASH = 2,
	PLAN_LEAST = 3,
	PLAN_TWO_CHOICES = 4,
};

/* struct flow_fwd.state bits, changed with atomic fetch-or or compare-and-swap only (several CPUs may
 * handle one flow's packets at once). */
enum flb_flow_state {
	FLOW_FIN_C2B = 1U << 0,       /* the client's FIN was seen, in the backend's window */
	FLOW_FIN_B2C = 1U << 1,       /* the backend's FIN was seen, in the client's window */
	FLOW_FIN_C2B_ACKED = 1U << 2, /* the backend acknowledged the client's FIN */
	FLOW_FIN_B2C_ACKED = 1U << 3, /* the client acknowledged the backend's FIN */
	FLOW_CLOSED = 1U << 4,        /* both FINs or an exact RST seen; the active gauge was decremented (once) */
	FLOW_TS_MOD = 1U << 5,        /* the SYN carried a timestamp option: TSval/TSecr are rewritten (tsmod.h) */
	FLOW_SYNACK = 1U << 6,        /* handshake: the backend's SYN-ACK was seen (its side's sequence is known) */
	FLOW_PROMOTING = 1U << 7,     /* handshake: the client's ACK is moving it to the established table */
	FLOW_DEAD = 1U << 8,          /* handshake: abandoned (SYN_TIMEOUT_S) and its SNAT port taken back */
	FLOW_COUNTED = 1U << 9,       /* established and counted in flb_be_active (its gen matched) */
};

/* Direction of a packet through the LB. */
#define DIR_C2B 0 /* client → backend */
#define DIR_B2C 1 /* backend → client */

/* struct flb_config.flags */
enum flb_cfg_flag {
	CFG_STATIC_NEIGH = 1U << 0, /* TEST ONLY: skip bpf_fib_lookup, next hops from flb_nbr (see neigh.h resolve_l2) */
	CFG_DRAINING = 1U << 1,     /* no new flows: SYNs of unknown flows are answered with a RST (answer.h) */
	CFG_NATIVE = 1U << 2,       /* attached in native mode: what leaves is sent as it is, so a partial TCP
				     * checksum is completed on arrival (l4csum.h tcp_csum_classify) */
};

/* struct svc_val.flags */
enum flb_svc_flag {
	SVC_RETIRED = 1U << 0, /* gone from the config: its open flows still translate, new SYNs are not its */
};

/* struct backend.flags */
enum flb_backend_flag {
	BACKEND_PRESENT = 1U << 0,
	BACKEND_ELIGIBLE = 1U << 1, /* in the current pick set (enabled and healthy): a SYN retransmitted to a
				     * backend without it is balanced anew (featherlb.bpf.c from_client) */
};

/*
 * What the program did with a packet, counted in flb_reasons per service where the service is known
 * (counters.h). Outcomes: every packet is counted under exactly one (pass to the kernel, drop, or
 * transmit). Events: counted in addition to the packet's outcome. layout.ts REASONS lists them in
 * order with their kind; /metrics shows every one (featherlb_xdp_packets_total, _events_total).
 */
enum flb_reason {
	/* pass: not balanced by us, the kernel handles it */
	REASON_NOT_IPV4 = 0,        /* ARP, IPv6, VLAN-tagged, … */
	REASON_TRUNCATED = 1,       /* a header runs past the end of the packet */
	REASON_IP_OPTIONS = 2,      /* IHL != 5: we do not rewrite around options */
	REASON_FRAGMENT = 3,        /* MF set or non-zero fragment offset */
	REASON_NOT_TCP = 4,         /* UDP, …, and ICMP other than an error quoting TCP */
	REASON_NOT_OURS = 5,        /* neither a service address nor a SNAT port */
	/* pass: ours but no flow; the kernel answers with a RST, which is what the sender must learn */
	REASON_NO_FLOW = 6,         /* client → service: a non-SYN packet of an unknown flow */
	REASON_NO_FLOW_BACKEND = 7, /* backend → SNAT port: no flow owns that port */
	REASON_PAIR_MISMATCH = 8,   /* the flow's forward and reverse entries disagree (one was evicted): forgotten */
	REASON_ICMP_NO_FLOW = 9,    /* an ICMP error quoting a service address and port, or a SNAT port, of no flow
				     * whose entries agree (icmp.h) */
	/* transmit: rewritten */
	REASON_TX_C2B = 10,         /* toward a backend */
	REASON_TX_B2C = 11,         /* toward a client */
	REASON_ICMP_C2B = 12,       /* an ICMP error from the client side about a flow or handshake, translated and
				     * sent to its backend (icmp.h) */
	REASON_ICMP_B2C = 13,       /* an ICMP error from the backend side about a flow or handshake, translated and
				     * sent to its client */
	/* transmit: a SYN answered with a RST built here (answer.h), so the kernel never sees it */
	REASON_DRAINING = 14,       /* the balancer is draining */
	REASON_NO_BACKEND = 15,     /* the service has no healthy backend */
	REASON_FIB_FAIL = 16,       /* no route to the backend */
	/* drop */
	REASON_NO_NEIGH = 17,       /* the next hop's MAC is unknown (being resolved): the sender retransmits */
	REASON_SNAT_EXHAUSTED = 18, /* a SYN found no free SNAT port toward its backend */
	REASON_RST_OUT_OF_WINDOW = 19, /* an RST whose sequence number is outside the receiver's window (RFC 5961) */
	REASON_BAD_HANDSHAKE = 20,  /* a SYN-ACK that does not acknowledge the SYN, an ACK that does not
				     * acknowledge the SYN-ACK, or data before the handshake completed */
	REASON_SYN_BUSY = 21,       /* a packet of a handshake that another CPU is setting up or moving */
	/* events */
	REASON_NEIGH_LEARNED = 22,  /* a flow's reply hop resolved to the MAC the client's SYN came from
				     * (counted per resolution, i.e. per flow and second, not per packet) */
	REASON_NEIGH_TABLE = 23,    /* a hop resolved from featherlb's neighbour table (flb_nbr) because
				     * IPv4 forwarding is off on the interface (per resolution, as above) */
	REASON_SYN_RACE = 24,       /* a SYN found its flow created by another CPU a moment earlier (a duplicate
				     * in flight) and followed it */
	REASON_RST_IN_WINDOW = 25,  /* an RST in the receiver's window but not at its next sequence number:
				     * forwarded (the endpoint answers with a challenge ACK), the flow is kept */
	REASON_ESTABLISHED = 26,    /* a handshake completed: the flow moved to the established table */
	REASON_PORT_RECLAIMED = 27, /* the SNAT port of an abandoned handshake was taken for a new flow */
	REASON_SYN_MOVED = 28,      /* a retransmitted SYN of a handshake whose backend left the pick set (health
				     * check, reload) before answering was balanced anew */
	/* transmit (after the events, so the numbers above stay as they were) */
	REASON_STALE_RESET = 29,    /* a backend answered a handshake's SYN with an ACK of an older connection
				     * on the same 4-tuple (its socket outlived the flow): answered with an RST */
	REASON_MAX = 30,            /* the number of reasons (a row of flb_reasons) */
};

/*
 * BTF anchor: clang puts a type in the object's BTF only when something emitted refers to it, and an
 * enum whose constants are merely used in code is not. This variable refers to every shared enum, so
 * the layout test finds them all in build/bpf/featherlb.bpf.o. It lives in a section of its own,
 * which libbpf skips ("unrecognized data section"): no map is created for it, the program never reads
 * it. A new shared enum goes here too (the layout test fails on a TS enum missing from BTF).
 */
struct flb_contract {
	enum flb_layout layout;
	enum flb_timing timing;
	enum flb_limit limit;
	enum flb_plan_kind plan_kind;
	enum flb_flow_state flow_state;
	enum flb_cfg_flag cfg_flag;
	enum flb_svc_flag svc_flag;
	enum flb_backend_flag backend_flag;
	enum flb_reason reason;
};
struct flb_contract flb_contract __attribute__((section(".flb.contract"), used)) = {};

#endif
