/*
 * flbbtool — the bench's tiny TCP helpers (one binary, three sub-commands).
 *
 *   flbbtool serve  <ip> <port> <seconds>   stream server: each accepted connection gets zeros as
 *                                           fast as the socket takes them for <seconds>, then EOF.
 *   flbbtool stream <ip> <port>             stream client: read until EOF; prints one JSON line with
 *                                           bytes, seconds and Gbit/s measured at the client.
 *   flbbtool hold   <ip> <port> <n> <secs>  open <n> idle connections (sequential blocking connects,
 *                                           so a full accept queue only slows it down), print
 *                                           "READY <n>", keep them open <secs>, close, exit.
 *
 * Why not iperf3: it opens a control and a data connection, which a round-robin balancer sends to
 * two different backends. Why C: a helper must not be the bottleneck it is measuring.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct sockaddr_in addr_of(const char *ip, const char *port) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(port))};
  if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1) {
    fprintf(stderr, "flbbtool: bad IPv4 address %s\n", ip);
    exit(2);
  }
  return sa;
}

static int serve(const char *ip, const char *port, double seconds) {
  struct sockaddr_in sa = addr_of(ip, port);
  int one = 1, ls = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(ls, (struct sockaddr *)&sa, sizeof sa) || listen(ls, 1024)) {
    perror("flbbtool serve: bind/listen");
    return 1;
  }
  signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel */
  static char buf[CHUNK];   /* zeros */
  for (;;) {
    int c = accept(ls, NULL, NULL);
    if (c < 0) {
      if (errno == EINTR) continue;
      perror("flbbtool serve: accept");
      return 1;
    }
    if (fork() == 0) {
      close(ls);
      double end = now() + seconds;
      while (now() < end)
        if (write(c, buf, sizeof buf) < 0) break;
      close(c);
      _exit(0);
    }
    close(c);
  }
}

static int stream(const char *ip, const char *port) {
  struct sockaddr_in sa = addr_of(ip, port);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(s, (struct sockaddr *)&sa, sizeof sa)) {
    perror("flbbtool stream: connect");
    return 1;
  }
  static char buf[CHUNK];
  unsigned long long bytes = 0;
  double t0 = now(), first = 0;
  for (;;) {
    ssize_t n = read(s, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (!bytes) first = now();
    bytes += (unsigned long long)n;
  }
  double t1 = now();
  double secs = t1 - (first ? first : t0);
  printf("{\"bytes\":%llu,\"seconds\":%.3f,\"gbps\":%.3f}\n", bytes, secs,
         secs > 0 ? bytes * 8.0 / secs / 1e9 : 0.0);
  return bytes ? 0 : 1;
}

static int hold(const char *ip, const char *port, int n, double seconds) {
  struct sockaddr_in sa = addr_of(ip, port);
  int *fds = calloc((size_t)n, sizeof *fds), ok = 0;
  double t0 = now();
  for (int i = 0; i < n; i++) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) {
      perror("flbbtool hold: socket");
      break;
    }
    struct timeval tv = {.tv_sec = 3}; /* bounds a connect the balancer never completes */
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(s, (struct sockaddr *)&sa, sizeof sa)) {
      perror("flbbtool hold: connect");
      close(s);
      break;
    }
    fds[ok++] = s;
  }
  printf("READY %d %.2f\n", ok, now() - t0);
  fflush(stdout);
  double end = now() + seconds;
  while (now() < end) usleep(100000);
  for (int i = 0; i < ok; i++) close(fds[i]);
  return ok == n ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc == 5 && !strcmp(argv[1], "serve")) return serve(argv[2], argv[3], atof(argv[4]));
  if (argc == 4 && !strcmp(argv[1], "stream")) return stream(argv[2], argv[3]);
  if (argc == 6 && !strcmp(argv[1], "hold")) return hold(argv[2], argv[3], atoi(argv[4]), atof(argv[5]));
  fprintf(stderr, "usage: flbbtool serve IP PORT SECS | stream IP PORT | hold IP PORT N SECS\n");
  return 2;
}
