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

/* Default flow-table capacity; the loader overrides it from xdp.flow_table_size before load. */
#define FLOW_TABLE_DEFAULT 65536
/* SNAT port allocation probes this many candidate ports before giving up (verifier bound). */
#define SNAT_TRIES 32
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

/* struct flow_fwd.state bits. FIN_* say which side sent a FIN; CLOSED means the active count was
 * already decremented (set with an atomic fetch-or, so exactly one packet does it). */
enum flb_flow_state {
	FLOW_FIN_C2B = 1U << 0,      /* client sent FIN */
	FLOW_FIN_B2C = 1U << 1,      /* backend sent FIN */
	FLOW_LAST_FIN_B2C = 1U << 2, /* the second FIN came from the backend (so the client ACKs last) */
	FLOW_CLOSED = 1U << 3,       /* counted as closed */
	FLOW_TS_MOD = 1U << 4,       /* the SYN carried a timestamp option: TSval/TSecr are rewritten (tsmod.h) */
};

/* Direction of a packet through the LB. */
#define DIR_C2B 0 /* client → backend */
#define DIR_B2C 1 /* backend → client */

/* struct flb_config.flags */
enum flb_cfg_flag {
	CFG_STATIC_NEIGH = 1U << 0, /* TEST ONLY: skip bpf_fib_lookup, next hops from flb_nbr (see neigh.h resolve_l2) */
	CFG_DRAINING = 1U << 1,     /* no new flows: SYNs of unknown flows are passed (the kernel resets them) */
	CFG_NATIVE = 1U << 2,       /* attached in native mode: what leaves is sent as it is, so a partial TCP
				     * checksum is completed on arrival (l4csum.h tcp_csum_classify) */
};

/* struct backend.flags */
enum flb_backend_flag {
	BACKEND_PRESENT = 1U << 0,
};

/* Why a packet was passed to the kernel (index into flb_reasons); layout.ts REASONS lists them in order. */
enum flb_reason {
	REASON_NOT_IPV4 = 0,        /* ARP, IPv6, VLAN-tagged, … */
	REASON_TRUNCATED = 1,       /* a header runs past the end of the packet */
	REASON_IP_OPTIONS = 2,      /* IHL != 5: we do not rewrite around options */
	REASON_FRAGMENT = 3,        /* MF set or non-zero fragment offset */
	REASON_NOT_TCP = 4,         /* UDP, …, and ICMP other than an error quoting TCP */
	REASON_NOT_OURS = 5,        /* neither a service address nor a SNAT port */
	REASON_NO_FLOW = 6,         /* non-SYN packet of an unknown flow (the kernel resets it) */
	REASON_NO_BACKEND = 7,      /* the service has no healthy backend */
	REASON_NO_NEIGH = 8,        /* neighbour MAC unknown: let the kernel resolve ARP */
	REASON_FIB_FAIL = 9,        /* no route */
	REASON_SNAT_EXHAUSTED = 10, /* SNAT_TRIES candidate ports were all busy */
	REASON_DRAINING = 11,
	REASON_TX_C2B = 12,         /* not a pass: packets rewritten toward a backend */
	REASON_TX_B2C = 13,         /* not a pass: packets rewritten toward a client */
	REASON_NEIGH_LEARNED = 14,  /* not a pass: a flow's reply hop resolved to the MAC the client's SYN came from
				     * (counted per resolution, i.e. per flow and second, not per packet) */
	REASON_NEIGH_TABLE = 15,    /* not a pass: a hop resolved from featherlb's neighbour table (flb_nbr) because
				     * IPv4 forwarding is off on the interface (per resolution, as above) */
	REASON_SYN_RACE = 16,       /* not a pass: a SYN found its flow created by another CPU a moment earlier
				     * (a duplicate in flight) and followed it */
	REASON_ICMP_C2B = 17,       /* not a pass: an ICMP error from the client side about a flow, translated and
				     * sent to its backend (icmp.h) */
	REASON_ICMP_B2C = 18,       /* not a pass: an ICMP error from the backend side about a flow, translated and
				     * sent to its client */
	REASON_ICMP_NO_FLOW = 19,   /* an ICMP error quoting a service address and port or a SNAT port of no live flow */
	REASON_MAX = 20,            /* the number of reasons (flb_reasons' size) */
};

/*
 * BTF anchor: clang puts a type in the object's BTF only when something emitted refers to it, and an
 * enum whose constants are merely used in code is not. This variable refers to every shared enum, so
 * the layout test finds them all in build/bpf/featherlb.bpf.o. It lives in a section of its own,
 * which libbpf skips ("unrecognized data section"): no map is created for it, the program never reads
 * it. A new shared enum goes here too (the layout test fails on a TS enum missing from BTF).
 */
struct flb_contract {
	enum flb_limit limit;
	enum flb_plan_kind plan_kind;
	enum flb_flow_state flow_state;
	enum flb_cfg_flag cfg_flag;
	enum flb_backend_flag backend_flag;
	enum flb_reason reason;
};
struct flb_contract flb_contract __attribute__((section(".flb.contract"), used)) = {};

#endif
