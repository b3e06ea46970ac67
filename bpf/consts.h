/* SPDX-License-Identifier: MIT */
/*
 * featherlb BPF constants. Values shared with TypeScript are mirrored in src/dataplane/xdp/layout.ts;
 * the sizes that shape maps are defined in src/config/limits.ts (a config that needs more is refused
 * when it is loaded), re-exported by layout.ts and checked by test/xdp/layout.test.ts via BTF.
 */
#ifndef FLB_CONSTS_H
#define FLB_CONSTS_H

/* Helpers return an XDP action (>= 0) or FLB_GO_ON: callers do `if (action >= 0) return action;`. */
#define FLB_GO_ON -1

/* Services the data plane can hold at once (array maps are sized MAX_SERVICES × …). */
#define MAX_SERVICES 64
/* Backends per service; equals MAX_BACKENDS in src/config/limits.ts. */
#define MAX_BACKENDS 256
/* Plan tables per service: one active, one being built (flip by index, see maps.h flb_svc_act). */
#define PLAN_BUFFERS 2
/* Member ids in plan slots, shared by every plan; TS allocates a range per (service, buffer). 4 Mi
 * entries (16 MiB) hold e.g. two buffers of the largest Maglev table (2^20) plus room for others. */
#define SLOT_POOL_SIZE (1 << 22)
/* Default flow-table capacity; the loader overrides it from xdp.flow_table_size before load. */
#define FLOW_TABLE_DEFAULT 65536
/* SNAT port allocation probes this many candidate ports before giving up (verifier bound). */
#define SNAT_TRIES 32
/* Distance between the per-CPU cursors' starting points in the port range (prime: spreads CPUs). */
#define SNAT_CPU_STRIDE 4099

/* Plan kinds: the order of PlanKind in src/control/algorithms/types.ts (layout.ts PLAN_KIND). */
#define PLAN_SEQUENCE 0
#define PLAN_RANDOM 1
#define PLAN_HASH 2
#define PLAN_LEAST 3
#define PLAN_TWO_CHOICES 4

/* struct flow_fwd.state bits. FIN_* say which side sent a FIN; CLOSED means the active count was
 * already decremented (set with an atomic fetch-or, so exactly one packet does it). */
#define FLOW_FIN_C2B (1U << 0)      /* client sent FIN */
#define FLOW_FIN_B2C (1U << 1)      /* backend sent FIN */
#define FLOW_LAST_FIN_B2C (1U << 2) /* the second FIN came from the backend (so the client ACKs last) */
#define FLOW_CLOSED (1U << 3)       /* counted as closed */
#define FLOW_TS_MOD (1U << 4)       /* the SYN carried a timestamp option: TSval/TSecr are rewritten (nat.h) */

/* TCP options (RFC 9293, RFC 7323). A TCP header holds at most 40 bytes of options. */
#define TCP_OPTS_MAX 40
#define TCPOPT_EOL 0
#define TCPOPT_NOP 1
#define TCPOPT_TIMESTAMP 8
#define TCPOLEN_TIMESTAMP 10 /* kind, len, TSval (4), TSecr (4) */

/* Direction of a packet through the LB. */
#define DIR_C2B 0 /* client → backend */
#define DIR_B2C 1 /* backend → client */

/* struct flb_config.flags */
#define CFG_STATIC_NEIGH (1U << 0) /* TEST ONLY: skip bpf_fib_lookup, next hops from flb_nbr (see nat.h resolve_l2) */
#define CFG_DRAINING (1U << 1)     /* no new flows: SYNs of unknown flows are passed (the kernel resets them) */

/* struct backend.flags */
#define BACKEND_PRESENT (1U << 0)

/* Why a packet was passed to the kernel (index into flb_reasons); layout.ts REASONS mirrors these. */
#define REASON_NOT_IPV4 0        /* ARP, IPv6, VLAN-tagged, … */
#define REASON_TRUNCATED 1       /* a header runs past the end of the packet */
#define REASON_IP_OPTIONS 2      /* IHL != 5: we do not rewrite around options */
#define REASON_FRAGMENT 3        /* MF set or non-zero fragment offset */
#define REASON_NOT_TCP 4
#define REASON_NOT_OURS 5        /* neither a service address nor a SNAT port */
#define REASON_NO_FLOW 6         /* non-SYN packet of an unknown flow (the kernel resets it) */
#define REASON_NO_BACKEND 7      /* the service has no healthy backend */
#define REASON_NO_NEIGH 8        /* neighbour MAC unknown: let the kernel resolve ARP */
#define REASON_FIB_FAIL 9        /* no route */
#define REASON_SNAT_EXHAUSTED 10 /* SNAT_TRIES candidate ports were all busy */
#define REASON_DRAINING 11
#define REASON_TX_C2B 12         /* not a pass: packets rewritten toward a backend */
#define REASON_TX_B2C 13         /* not a pass: packets rewritten toward a client */
#define REASON_NEIGH_LEARNED 14  /* not a pass: a flow's reply hop resolved to the MAC the client's SYN came from
				  * (counted per resolution, i.e. per flow and second, not per packet) */
#define REASON_NEIGH_TABLE 15    /* not a pass: a hop resolved from featherlb's neighbour table (flb_nbr) because
				  * IPv4 forwarding is off on the interface (per resolution, as above) */
#define REASON_SYN_RACE 16       /* not a pass: a SYN found its flow created by another CPU a moment earlier
				  * (a duplicate in flight) and followed it */
#define REASON_MAX 17

#endif
