// SPDX-License-Identifier: MIT
/*
 * rawtcp: spoofed TCP segments for the hostile-traffic tests (test/xdp/hostile.ts). Reads tuples from
 * stdin, one per line: "<src ip> <src port> <dst ip> <dst port>", and sends `count` segments per tuple,
 * round robin over the tuples, with `flags` (a string of F S R P A), each with a random sequence number
 * (and a random ACK number when A is set), through a raw socket with IP_HDRINCL: the source address is
 * whatever the line says. Prints {"sent": n} and exits. Root (CAP_NET_RAW) only.
 *
 *   rawtcp <flags> <count-per-tuple> < tuples
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

#define MAX_TUPLES 4096

struct tuple {
	struct in_addr src, dst;
	uint16_t sport, dport;
};

/* RFC 1071 checksum over `len` bytes plus a 32-bit initial sum. */
static uint16_t csum(const void *data, size_t len, uint32_t sum)
{
	const uint8_t *p = data;
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static uint32_t rnd32(void)
{
	uint32_t v;
	if (getrandom(&v, sizeof(v), 0) != sizeof(v))
		abort();
	return v;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: rawtcp <flags FSRPA> <count-per-tuple> < tuples\n");
		return 2;
	}
	uint8_t flags = 0;
	for (const char *f = argv[1]; *f; f++) {
		switch (*f) {
		case 'F': flags |= TH_FIN; break;
		case 'S': flags |= TH_SYN; break;
		case 'R': flags |= TH_RST; break;
		case 'P': flags |= TH_PUSH; break;
		case 'A': flags |= TH_ACK; break;
		default: fprintf(stderr, "rawtcp: unknown flag %c\n", *f); return 2;
		}
	}
	long count = strtol(argv[2], NULL, 10);
	static struct tuple t[MAX_TUPLES];
	int n = 0;
	char src[64], dst[64];
	unsigned sport, dport;
	while (n < MAX_TUPLES && scanf("%63s %u %63s %u", src, &sport, dst, &dport) == 4) {
		if (!inet_aton(src, &t[n].src) || !inet_aton(dst, &t[n].dst) || sport > 65535 || dport > 65535) {
			fprintf(stderr, "rawtcp: bad tuple %s %u %s %u\n", src, sport, dst, dport);
			return 2;
		}
		t[n].sport = (uint16_t)sport;
		t[n].dport = (uint16_t)dport;
		n++;
	}
	int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW); /* IPPROTO_RAW implies IP_HDRINCL */
	if (fd < 0) {
		perror("rawtcp: socket");
		return 1;
	}
	long sent = 0;
	for (long k = 0; k < count; k++) {
		for (int i = 0; i < n; i++) {
			uint8_t pkt[40] = { 0 };
			struct iphdr *ip = (struct iphdr *)pkt;
			struct tcphdr *tcp = (struct tcphdr *)(pkt + 20);
			ip->version = 4;
			ip->ihl = 5;
			ip->tot_len = htons(sizeof(pkt));
			ip->id = htons((uint16_t)rnd32());
			ip->frag_off = htons(0x4000);
			ip->ttl = 64;
			ip->protocol = IPPROTO_TCP;
			ip->saddr = t[i].src.s_addr;
			ip->daddr = t[i].dst.s_addr;
			ip->check = htons(csum(ip, 20, 0));
			tcp->th_sport = htons(t[i].sport);
			tcp->th_dport = htons(t[i].dport);
			tcp->th_seq = htonl(rnd32());
			tcp->th_ack = (flags & TH_ACK) ? htonl(rnd32()) : 0;
			tcp->th_off = 5;
			tcp->th_flags = flags;
			tcp->th_win = htons(flags & TH_RST ? 0 : 502);
			/* pseudo-header: addresses, protocol, TCP length */
			uint32_t sum = 0;
			const uint8_t *a = (const uint8_t *)&ip->saddr;
			for (int j = 0; j < 8; j += 2)
				sum += (uint32_t)(a[j] << 8 | a[j + 1]);
			sum += IPPROTO_TCP + 20;
			tcp->th_sum = htons(csum(tcp, 20, sum));
			struct sockaddr_in to = { .sin_family = AF_INET, .sin_addr = t[i].dst };
			if (sendto(fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&to, sizeof(to)) == sizeof(pkt))
				sent++;
		}
	}
	printf("{\"sent\": %ld}\n", sent);
	return 0;
}
