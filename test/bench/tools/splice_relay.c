/*
 * splice_relay — a reference TCP relay for the bench (issue 13): established connections are relayed
 * with splice(2) through a pipe, so the bytes never enter user space. Not product code: it answers
 * "what does a kernel-copy relay cost on this machine", next to featherlb proxy and the eBPF sockmap.
 *
 *   splice_relay [-p PIPE_BYTES] LISTEN_IP:PORT BACKEND_IP:PORT [BACKEND_IP:PORT...]
 *   splice_relay [-p PIPE_BYTES] -l LISTEN_IP:PORT=BACKEND_IP:PORT[,BACKEND_IP:PORT...] [-l ...]
 *
 * Each listener picks its backends round robin. SIGUSR1 prints counters (connections, bytes, pooled
 * pipes, system calls by kind) on stderr; SIGTERM/SIGINT print them and exit.
 *
 * How it works. One thread, one epoll set. Per connection two sockets (client, backend) and per
 * direction one pipe (pipe2 O_NONBLOCK, grown with F_SETPIPE_SZ to PIPE_BYTES, default 1 MiB), taken
 * when the direction first has bytes (a MSG_PEEK tells) from a pool of empty pipes, or made; given back
 * to the pool when the connection closes with it empty. A direction moves bytes with
 * splice(src → pipe) then splice(pipe → dst), SPLICE_F_MOVE|NONBLOCK.
 *
 * Edge-triggered epoll, why: every socket is registered once (EPOLLIN|EPOLLOUT|EPOLLET) and never
 * modified, so backpressure costs no epoll_ctl calls. The price is the edge rule: a direction, once
 * pumped, runs until a splice says EAGAIN (pump below), or it would never hear from that socket again.
 * Listeners are level-triggered (accept4 in a loop until EAGAIN; on EMFILE a spare descriptor is given
 * up to accept and close one connection, so a full table neither spins nor leaves the queue stuck).
 *
 * Backpressure: when splice(pipe → dst) says EAGAIN the direction is marked blocked; from then on
 * EPOLLIN on its source is ignored (its bytes stay in the source's receive buffer, so TCP's window
 * pushes back on the sender), until the destination's EPOLLOUT edge unblocks it and it is pumped again.
 * The pipe's byte count is tracked, but a pipe fills by slots (one per skb fragment), not bytes: so
 * EAGAIN from splice(src → pipe) with bytes in the pipe may mean "pipe full"; the pump flushes and
 * retries, and only EAGAIN with an empty pipe means the source is dry.
 *
 * Half-close: EOF from a source, once its pipe is empty, becomes shutdown(dst, SHUT_WR); the other
 * direction goes on. The pair (two sockets, its pipes) is closed when both directions are done, or at
 * once on an error of either side (EPOLLERR, a failed splice, a failed connect), with SO_LINGER 0 so
 * the surviving peer sees a reset rather than a clean end of a stream that was cut.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define SPLICE_FLAGS (SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
#define MAX_EVENTS 256
#define POOL_MAX 256 /* empty pipes kept for the next connections (HAProxy keeps a pipe pool too) */

enum kind { LISTENER, END };

struct listener {
  enum kind kind; /* first: an epoll event's data.ptr is a listener or an end */
  int fd;
  struct sockaddr_in *backends;
  int nbackends;
  unsigned next; /* round robin */
};

struct dir {          /* one direction: fd[d] → fd[!d] through pipe */
  int pipe[2];        /* -1 until the direction is first pumped */
  size_t inpipe;      /* bytes in the pipe */
  unsigned eof : 1;   /* the source said EOF */
  unsigned done : 1;  /* EOF and the pipe flushed: shutdown(dst, SHUT_WR) sent */
  unsigned blocked : 1; /* dst said EAGAIN: wait for its EPOLLOUT, do not read the source */
};

struct conn;
struct end { /* what epoll's data.ptr points at for a connection's socket */
  enum kind kind;
  struct conn *c;
  int side; /* 0 client, 1 backend */
};

struct conn {
  int fd[2]; /* 0 client, 1 backend */
  struct end end[2];
  struct dir dir[2]; /* 0 client → backend, 1 backend → client */
  unsigned connecting : 1;
  unsigned closed : 1;
  struct conn *next_dead;
};

static int ep, spare_fd = -1;
static int pipe_bytes = 1 << 20;
static int pool[POOL_MAX][2], npool;
static struct conn *dead; /* closed during this batch of events, freed after it */
static volatile sig_atomic_t want_stats, want_exit;
static struct {
  unsigned long long accepted, closed, errors, bytes, epoll_waits, splice_in, splice_out, eagain_in, eagain_out, other,
      peeks, pipes_made;
  long open;
} st;

static void die(const char *what) {
  perror(what);
  exit(1);
}

static struct sockaddr_in parse_addr(const char *s) {
  char ip[64];
  const char *colon = strrchr(s, ':');
  struct sockaddr_in sa = {.sin_family = AF_INET};
  if (!colon || (size_t)(colon - s) >= sizeof ip) goto bad;
  memcpy(ip, s, (size_t)(colon - s));
  ip[colon - s] = 0;
  char *endp;
  long port = strtol(colon + 1, &endp, 10);
  if (*endp || port <= 0 || port > 65535 || inet_pton(AF_INET, ip, &sa.sin_addr) != 1) goto bad;
  sa.sin_port = htons((unsigned short)port);
  return sa;
bad:
  fprintf(stderr, "splice_relay: expected IPv4:PORT, got %s\n", s);
  exit(2);
}

static void add_listener(const char *listen_at, char **backends, int n) {
  struct listener *l = calloc(1, sizeof *l);
  l->kind = LISTENER;
  l->backends = calloc((size_t)n, sizeof *l->backends);
  l->nbackends = n;
  for (int i = 0; i < n; i++) l->backends[i] = parse_addr(backends[i]);
  struct sockaddr_in sa = parse_addr(listen_at);
  int one = 1;
  l->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (l->fd < 0) die("socket");
  setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(l->fd, (struct sockaddr *)&sa, sizeof sa) || listen(l->fd, 65535)) die("bind/listen");
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, l->fd, &ev)) die("epoll_ctl listener");
}

/* A pipe for direction P: from the pool, or new, grown to pipe_bytes (best effort: without
 * F_SETPIPE_SZ a pipe keeps its 64 KiB, 16 slots). */
static int get_pipe(struct dir *p) {
  if (npool) {
    npool--;
    p->pipe[0] = pool[npool][0], p->pipe[1] = pool[npool][1];
    return 0;
  }
  if (pipe2(p->pipe, O_NONBLOCK | O_CLOEXEC)) return -1;
  fcntl(p->pipe[1], F_SETPIPE_SZ, pipe_bytes);
  st.pipes_made++;
  return 0;
}

/* Back to the pool if it is empty (inpipe counts exactly what it holds), else closed. */
static void put_pipe(struct dir *p) {
  if (p->pipe[0] < 0) return;
  if (!p->inpipe && npool < POOL_MAX) {
    pool[npool][0] = p->pipe[0], pool[npool][1] = p->pipe[1];
    npool++;
  } else {
    close(p->pipe[0]);
    close(p->pipe[1]);
  }
  p->pipe[0] = p->pipe[1] = -1;
}

static void close_conn(struct conn *c, int abort) {
  if (c->closed) return;
  c->closed = 1;
  for (int i = 0; i < 2; i++) {
    if (c->fd[i] >= 0) {
      if (abort) setsockopt(c->fd[i], SOL_SOCKET, SO_LINGER, &(struct linger){1, 0}, sizeof(struct linger));
      close(c->fd[i]); /* also leaves the epoll set: no descriptor is duplicated */
    }
    put_pipe(&c->dir[i]);
  }
  st.open--, st.closed++;
  if (abort) st.errors++;
  c->next_dead = dead;
  dead = c;
}

/* pump C D: move what direction D can move now. Returns -1 on an error (the caller aborts the pair).
 * Ends only on EAGAIN from the destination (blocked), on EAGAIN from the source with an empty pipe
 * (dry: the next EPOLLIN edge resumes it), or on EOF with an empty pipe (done); each turn of the loop
 * moves bytes or ends it, so it cannot spin. */
static int pump(struct conn *c, int d) {
  struct dir *p = &c->dir[d];
  int src = c->fd[d], dst = c->fd[!d];
  if (p->done) return 0;
  if (p->pipe[0] < 0) {
    /* A direction gets its pipe when it first has bytes (or at once if the pool has one): an idle
     * connection then holds two descriptors, like a user-space proxy's, not six. */
    if (!npool) {
      char b;
      ssize_t n = recv(src, &b, 1, MSG_PEEK);
      st.peeks++;
      if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
      if (n == 0) { /* EOF before any byte */
        shutdown(dst, SHUT_WR);
        st.other++;
        p->eof = p->done = 1;
        return 0;
      }
    }
    if (get_pipe(p)) return -1;
  }
  p->blocked = 0;
  for (;;) {
    int dry = 0;
    if (!p->eof) {
      ssize_t n = splice(src, NULL, p->pipe[1], NULL, (size_t)pipe_bytes, SPLICE_FLAGS);
      st.splice_in++;
      if (n > 0)
        p->inpipe += (size_t)n;
      else if (n == 0)
        p->eof = 1;
      else if (errno == EAGAIN)
        dry = 1, st.eagain_in++; /* or the pipe is full: flushed below, then read again */
      else if (errno != EINTR)
        return -1;
    }
    if (p->inpipe) {
      ssize_t m = splice(p->pipe[0], NULL, dst, NULL, p->inpipe, SPLICE_FLAGS);
      st.splice_out++;
      if (m > 0) {
        p->inpipe -= (size_t)m;
        st.bytes += (unsigned long long)m;
      } else if (m < 0 && errno == EAGAIN) {
        st.eagain_out++;
        p->blocked = 1;
        return 0;
      } else if (!(m < 0 && errno == EINTR))
        return -1;
    }
    if (p->eof && !p->inpipe) {
      shutdown(dst, SHUT_WR);
      st.other++;
      p->done = 1;
      return 0;
    }
    if (dry && !p->inpipe) return 0;
  }
}

static void accept_all(struct listener *l) {
  for (;;) {
    int cfd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) {
      if (errno == EAGAIN) return;
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      if ((errno == EMFILE || errno == ENFILE) && spare_fd >= 0) {
        /* out of descriptors: refuse one connection (closed at once) rather than leave it queued,
         * which a level-triggered listener would report again immediately (a busy loop) */
        close(spare_fd);
        cfd = accept(l->fd, NULL, NULL);
        if (cfd >= 0) close(cfd);
        spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        fprintf(stderr, "splice_relay: out of descriptors, refused a connection\n");
        return;
      }
      perror("splice_relay: accept4");
      return;
    }
    st.accepted++, st.open++;
    struct sockaddr_in *be = &l->backends[l->next++ % (unsigned)l->nbackends];
    int bfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (bfd < 0) {
      perror("splice_relay: socket");
      close(cfd);
      st.open--;
      continue;
    }
    struct conn *c = calloc(1, sizeof *c);
    c->fd[0] = cfd, c->fd[1] = bfd;
    for (int i = 0; i < 2; i++) {
      c->end[i] = (struct end){.kind = END, .c = c, .side = i};
      c->dir[i].pipe[0] = c->dir[i].pipe[1] = -1;
    }
    int one = 1;
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(bfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->connecting = 1;
    if (connect(bfd, (struct sockaddr *)be, sizeof *be) && errno != EINPROGRESS) {
      close_conn(c, 1);
      continue;
    }
    for (int i = 0; i < 2; i++) {
      struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = &c->end[i]};
      if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd[i], &ev)) {
        close_conn(c, 1);
        break;
      }
    }
  }
}

static void on_end(struct end *e, uint32_t ev) {
  struct conn *c = e->c;
  int s = e->side, err = 0;
  if (c->closed) return; /* its other socket's event closed it earlier in this batch */
  if (ev & EPOLLERR) {
    close_conn(c, 1);
    return;
  }
  if (c->connecting) {
    if (s == 0 || !(ev & (EPOLLOUT | EPOLLHUP))) return; /* client bytes wait for the backend */
    socklen_t len = sizeof err;
    if (getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &err, &len) || err) {
      close_conn(c, 1);
      return;
    }
    c->connecting = 0;
    /* the client's bytes (their EPOLLIN edge came while connecting) and whatever the backend sent */
    if (pump(c, 0) || ((ev & EPOLLIN) && pump(c, 1))) close_conn(c, 1);
  } else {
    /* bytes or EOF from this side, unless its direction waits for the other side's EPOLLOUT;
     * EPOLLOUT here resumes the direction writing to this side if it was blocked; EPOLLHUP both */
    int hup = (ev & EPOLLHUP) != 0;
    if ((((ev & EPOLLIN) || hup) && !c->dir[s].blocked && pump(c, s)) ||
        ((((ev & EPOLLOUT) && c->dir[!s].blocked) || hup) && pump(c, !s))) {
      close_conn(c, 1);
      return;
    }
  }
  if (c->dir[0].done && c->dir[1].done) close_conn(c, 0);
}

static void print_stats(void) {
  fprintf(stderr,
          "splice_relay: accepted %llu open %ld closed %llu (errors %llu) bytes %llu pooled %d | syscalls: epoll_wait %llu "
          "splice src->pipe %llu (EAGAIN %llu) splice pipe->dst %llu (EAGAIN %llu) shutdown %llu peek %llu pipes made %llu\n",
          st.accepted, st.open, st.closed, st.errors, st.bytes, npool, st.epoll_waits, st.splice_in, st.eagain_in,
          st.splice_out, st.eagain_out, st.other, st.peeks, st.pipes_made);
}

static void on_signal(int sig) {
  if (sig == SIGUSR1)
    want_stats = 1;
  else
    want_exit = 1;
}

static void usage(void) {
  fprintf(stderr,
          "usage: splice_relay [-p PIPE_BYTES] LISTEN_IP:PORT BACKEND_IP:PORT [BACKEND_IP:PORT...]\n"
          "       splice_relay [-p PIPE_BYTES] -l LISTEN_IP:PORT=BACKEND_IP:PORT[,BACKEND_IP:PORT...] [-l ...]\n");
  exit(2);
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN); /* a splice into a closed socket: EPIPE, handled, instead of death */
  struct sigaction sa = {.sa_handler = on_signal}; /* epoll_pwait returns EINTR */
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  /* The signals are blocked but inside epoll_pwait: one that arrives while events are handled
   * is taken by the next wait at once, not after the next network event. */
  sigset_t block, during_wait;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1), sigaddset(&block, SIGTERM), sigaddset(&block, SIGINT);
  sigprocmask(SIG_BLOCK, &block, &during_wait);
  sigdelset(&during_wait, SIGUSR1), sigdelset(&during_wait, SIGTERM), sigdelset(&during_wait, SIGINT);
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int nlisteners = 0, i = 1;
  for (; i < argc && argv[i][0] == '-'; i += 2) {
    if (i + 1 >= argc) usage();
    if (!strcmp(argv[i], "-p")) {
      pipe_bytes = atoi(argv[i + 1]);
      if (pipe_bytes < 4096) usage();
    } else if (!strcmp(argv[i], "-l")) {
      char *spec = strdup(argv[i + 1]), *eq = strchr(spec, '=');
      if (!eq || !eq[1]) usage();
      *eq = 0;
      char *bes[256];
      int n = 0;
      for (char *tok = strtok(eq + 1, ","); tok && n < 256; tok = strtok(NULL, ",")) bes[n++] = tok;
      add_listener(spec, bes, n);
      nlisteners++;
    } else
      usage();
  }
  if (i < argc) {
    if (nlisteners || argc - i < 2) usage();
    add_listener(argv[i], argv + i + 1, argc - i - 1);
    nlisteners++;
  }
  if (!nlisteners) usage();

  struct epoll_event evs[MAX_EVENTS];
  while (!want_exit) {
    int n = epoll_pwait(ep, evs, MAX_EVENTS, -1, &during_wait);
    st.epoll_waits++;
    if (want_stats) want_stats = 0, print_stats();
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_pwait");
    }
    for (int k = 0; k < n; k++) {
      if (*(enum kind *)evs[k].data.ptr == LISTENER)
        accept_all(evs[k].data.ptr);
      else
        on_end(evs[k].data.ptr, evs[k].events);
    }
    while (dead) {
      struct conn *c = dead;
      dead = c->next_dead;
      free(c);
    }
  }
  print_stats();
  return 0;
}
