/* fuzz-connection.c — libFuzzer harness for one whole connection in-process: conn_start()
 * on a worker driven by the harness's own sd-event loop, with fuzzed client bytes (in
 * chunks) and fuzzed upstream answers, so the peek (sni.c), the route choice (route.c),
 * breaker admission and failover (breaker.c), the PROXY header (proxyproto.c) and the
 * relay (relay.c, splice and copy) all run as in tcpmapd, with no thread and no real time.
 *
 * The config is fixed (CONFIG below): listener 7101 peeks SNI and routes a.example.com and
 * *.wild.example (two mappings with max_connections 1, for failover) as passthrough, the
 * rest to a cleartext catch-all; 7102 sends a PROXY v1 header; 7103 routes b.example.com
 * with a PROXY v2 header and has no catch-all; 7104 is a group of a live upstream and a
 * refused one; 7105 has max_connections 0. The upstreams are two loopback listeners of the
 * harness; the client is one end of a socketpair.
 *
 * Input: byte 0 is flags (FLAG_*), then steps, each one header byte:
 *   00llllll  client sends l bytes (63: l = 63 + next byte)
 *   01llllll  upstream answers l bytes (the same), once it is connected
 *   10tttttt  time passes: the worker's deadlines run as if t * 100 ms had gone by
 *   11hhhhhh  client sends (h << 8 | next byte) bytes
 * The bytes sent follow their header. After every step the loop runs until nothing moves
 * (bounded), so an input never waits for a real timeout.
 *
 * Invariants (violations are __builtin_trap()): the upstream receives a prefix of what the
 * client sent, after a well-formed PROXY header where the mapping asks for one; the client
 * receives a prefix of what the upstream sent, or, with no upstream, at most one TLS alert;
 * with both ends half-closing and no time passing, both streams arrive whole and the
 * breaker entries count exactly those bytes; after the close no connection is left, every
 * breaker entry has no active or pending slot, and no fd is leaked (pipes may stay pooled,
 * up to the pool's size). The harness writes only in its own mkdtemp directory and talks
 * only to loopback. FUZZ_CONNECTION_LOG=1 in the environment logs debug lines to stderr. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "breaker.h"
#include "conn.h"
#include "log.h"
#include "netaddr.h"
#include "proxyproto.h"
#include "rundir.h"
#include "util.h"
#include "worker.h"

#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x))                                                                          \
			__builtin_trap();                                                          \
	} while (0)

enum {
	FLAG_LISTENER = 7,          /* bits 0-2: the listener, modulo N_LISTENERS */
	FLAG_CLIENT_FIN = 1 << 3,   /* the client half-closes at the end */
	FLAG_UPSTREAM_FIN = 1 << 4, /* the upstream half-closes at the end */
	FLAG_ABORT = 1 << 5,        /* then the client closes and the upstream resets */
	FLAG_HOLD = 1 << 6,         /* the harness holds the limited entries' one slot */
	FLAG_IPV6 = 1 << 7,         /* the client and local addresses are IPv6 */
};

#define N_LISTENERS 5
#define FIRST_PORT 7101
#define PEER_PORT 40000
#define N_UPSTREAMS 2
#define SETTLE_ROUNDS 2000
#define BUF_MAX (1u << 20)
#define PIPE_POOL_FDS (2 * 64) /* relay.c keeps up to 64 empty pipes per thread */

/* %u: the two upstream ports. */
static const char CONFIG[] =
        "apiVersion: getambassador.io/v2\nkind: Module\nmetadata: {name: ambassador}\n"
        "spec:\n  config: {preread_timeout_ms: 5000, silent_client_timeout_ms: 1000,"
        " connect_timeout_ms: 3000}\n"
        "---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata: {name: tls-a}\n"
        "spec: {port: 7101, host: a.example.com, tls_passthrough: true,"
        " service: \"127.0.0.1:%1$u\"}\n"
        "---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata: {name: wild-a}\n"
        "spec: {port: 7101, host: \"*.wild.example\", tls_passthrough: true,"
        " service: \"127.0.0.1:%1$u\", weight: 50, circuit_breakers: [{max_connections: 1}]}\n"
        "---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata: {name: wild-b}\n"
        "spec: {port: 7101, host: \"*.wild.example\", tls_passthrough: true,"
        " service: \"127.0.0.1:%2$u\", weight: 50, circuit_breakers: [{max_connections: 1}]}\n"
        "---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata: {name: default}\n"
        "spec: {port: 7101, service: \"127.0.0.1:%1$u\", idle_timeout_ms: \"1000\"}\n"
        "---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata: {name: pp-v1}\n"
        "spec: {port: 7102, service: \"127.0.0.1:%1$u\", proxy_protocol: v1,"
        " idle_timeout_ms: \"1000\"}\n"
        "---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata: {name: pp-v2}\n"
        "spec: {port: 7103, host: b.example.com, tls_passthrough: true,"
        " service: \"127.0.0.1:%2$u\", proxy_protocol: v2}\n"
        "---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata: {name: held}\n"
        "spec: {port: 7104, service: \"127.0.0.1:%2$u\", weight: 50,"
        " circuit_breakers: [{max_connections: 1, max_pending_requests: 8}]}\n"
        "---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata: {name: refused}\n"
        "spec: {port: 7104, service: \"127.0.0.1:1\", weight: 50,"
        " circuit_breakers: [{max_connections: 1, max_pending_requests: 8}]}\n"
        "---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata: {name: overflow}\n"
        "spec: {port: 7105, service: \"127.0.0.1:%1$u\", circuit_breakers: [{max_connections: "
        "0}]}\n";

/* Built once: a process's worker, its loop, its breaker table and the upstreams. */
static struct {
	char dir[64];
	sd_event *event;
	struct worker worker;
	struct conn_env env;
	int upstream_listen[N_UPSTREAMS];
	uint32_t held_entries[2]; /* wild-a's and held's */
	size_t baseline_pipes;
	bool warming; /* the first inputs may open what the loop keeps (sd-event's timer fds) */
} h;

/* Bytes one side sent and the other received. */
struct buf {
	uint8_t *p;
	size_t n, size;
};

static void buf_add(struct buf *b, const uint8_t *p, size_t n) {
	if (n == 0)
		return;
	if (b->n + n > b->size) {
		size_t size = MAX(b->n + n, 2 * b->size);
		b->p = realloc(b->p, size);
		CHECK(b->p);
		b->size = size;
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

/* One end of the connection as the harness plays it. */
struct side {
	int fd;
	struct buf queued;   /* to send; [sent.n, queued.n) still waits */
	struct buf received; /* read from fd */
	bool eof;            /* read 0 */
	bool shut;           /* shutdown(SHUT_WR) done */
};

static void cleanup_dir(void) {
	char path[128];
	snprintf(path, sizeof path, "%s/breakers", h.dir);
	unlink(path);
	rmdir(h.dir);
}

static int listen_loopback(uint16_t *ret_port) {
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	CHECK(fd >= 0);
	CHECK(bind(fd, (struct sockaddr *)&a, len) == 0);
	CHECK(listen(fd, 16) == 0);
	CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	*ret_port = ntohs(a.sin_port);
	return fd;
}

/* Every fd but pipes in fds[] (sorted, as the directory lists them), and the pipes counted. */
static size_t list_fds(int *fds, size_t max, size_t *ret_pipes) {
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	size_t n = 0;

	CHECK(d);
	*ret_pipes = 0;
	while ((e = readdir(d))) {
		char path[64], target[64];
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name);
		if (fd == dirfd(d))
			continue;
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
		ssize_t len = readlink(path, target, sizeof target - 1);
		if (len > 0 && strncmp(target, "pipe:", 5) == 0) {
			(*ret_pipes)++;
			continue;
		}
		CHECK(n < max);
		fds[n++] = fd;
	}
	closedir(d);
	return n;
}

static int compare_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

static void init(void) {
	char yaml[sizeof CONFIG + 64];
	uint16_t port[N_UPSTREAMS];
	struct config *c = NULL;
	struct diag_list diags = {0};
	_cleanup_close_ int dir_fd = -EBADF;

	(void)signal(SIGPIPE, SIG_IGN); /* as tcpmapd does (server.c) */
	log_set_max_level(getenv("FUZZ_CONNECTION_LOG") ? LOG_DEBUG : LOG_CRIT);
	snprintf(h.dir, sizeof h.dir, "/tmp/fuzz-connection.XXXXXX");
	CHECK(mkdtemp(h.dir));
	atexit(cleanup_dir);
	CHECK(rundir_open(h.dir, false, &dir_fd) >= 0);
	CHECK(breaker_table_open(dir_fd, &h.env.breakers) >= 0);
	CHECK(sd_event_new(&h.event) >= 0);
	CHECK(worker_init(&h.worker, 0) >= 0);
	CHECK(worker_attach(&h.worker, h.event) >= 0);
	pthread_mutex_init(&h.env.config_lock, NULL);
	for (int i = 0; i < N_UPSTREAMS; i++)
		h.upstream_listen[i] = listen_loopback(&port[i]);

	snprintf(yaml, sizeof yaml, CONFIG, port[0], port[1]);
	CHECK(config_load_buffer("fuzz-connection.yaml", yaml, strlen(yaml), NULL, &c, &diags) ==
	      0);
	diag_list_free(&diags);
	for (size_t i = 0; i < c->n_mappings; i++) {
		struct mapping *m = c->mappings[i];
		CHECK(breaker_table_entry(h.env.breakers, m->cluster, &m->breaker_entry) == 0);
		if (streq(m->name, "wild-a"))
			h.held_entries[0] = m->breaker_entry;
		if (streq(m->name, "held"))
			h.held_entries[1] = m->breaker_entry;
	}
	config_unref(conn_env_swap_config(&h.env, c));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
	/* a relayed connection that passes time: every lazily made fd is made here */
	static const uint8_t warm_up[] = {
	        FLAG_CLIENT_FIN | FLAG_UPSTREAM_FIN | 1, 0x02, 'h', 'i', 0x42, 'o', 'k', 0x81};
	(void)argc, (void)argv;
	init();
	h.warming = true;
	for (unsigned i = 0; i < 2; i++)
		LLVMFuzzerTestOneInput(warm_up, sizeof warm_up);
	h.warming = false;
	return 0;
}

/* Close whatever waits in the upstreams' accept queues. */
static void drain_accept_queues(void) {
	for (int i = 0; i < N_UPSTREAMS; i++) {
		int fd;
		while ((fd = accept4(h.upstream_listen[i], NULL, NULL, SOCK_CLOEXEC)) >= 0)
			close(fd);
	}
}

/* Send what is queued and read what has come; returns whether anything moved. */
static bool side_io(struct side *s, size_t *sent) {
	static uint8_t chunk[65536];
	bool moved = false;

	if (s->fd < 0)
		return false;
	while (*sent < s->queued.n && !s->shut) {
		ssize_t n = send(s->fd, s->queued.p + *sent, s->queued.n - *sent,
		                 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n <= 0)
			break;
		*sent += (size_t)n;
		moved = true;
	}
	while (!s->eof) {
		ssize_t n = recv(s->fd, chunk, sizeof chunk, MSG_DONTWAIT);
		if (n == 0)
			s->eof = true;
		if (n <= 0)
			break;
		CHECK(s->received.n + (size_t)n <= BUF_MAX);
		buf_add(&s->received, chunk, (size_t)n);
		moved = true;
	}
	return moved;
}

struct run {
	struct side client, upstream;
	size_t client_sent, upstream_sent;
	bool upstream_accepted;
	bool quiet; /* every settle ended with nothing left to move */
};

/* Accept the upstream once tcpmapd connected; the first of the two to call wins. */
static bool accept_upstream(struct run *r) {
	static const int one = 1;

	if (r->upstream.fd >= 0)
		return false;
	for (int i = 0; i < N_UPSTREAMS; i++) {
		int fd = accept4(h.upstream_listen[i], NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			continue;
		/* without it, a small answer may wait for a delayed ACK: 40 ms */
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		r->upstream.fd = fd;
		r->upstream_accepted = true;
		return true;
	}
	return false;
}

/* Run the loop and both ends until nothing moves. */
static void settle(struct run *r) {
	for (int i = 0; i < SETTLE_ROUNDS; i++) {
		bool moved = accept_upstream(r);
		moved |= side_io(&r->client, &r->client_sent);
		moved |= side_io(&r->upstream, &r->upstream_sent);
		int e = sd_event_run(h.event, 0);
		CHECK(e >= 0);
		if (!moved && e == 0)
			return;
	}
	r->quiet = false;
}

static bool is_prefix(const struct buf *part, const uint8_t *whole, size_t whole_n) {
	return part->n <= whole_n && (part->n == 0 || memcmp(part->p, whole, part->n) == 0);
}

struct totals {
	uint64_t bytes_in, bytes_out;
};

/* Check every mapping's entry has no slot taken; add up their byte counts. The counts are
 * checked against the slots themselves every 64th time: a walk of the slot array costs
 * more than the rest of an input. */
static struct totals check_entries(void) {
	static unsigned calls;
	bool walk = calls++ % 64 == 0;
	struct totals t = {0};

	for (size_t i = 0; i < h.env.config->n_mappings; i++) {
		struct breaker_entry_stats s;
		uint32_t active, pending;
		uint32_t entry = h.env.config->mappings[i]->breaker_entry;

		CHECK(breaker_table_entry_stats(h.env.breakers, entry, &s) == 0);
		CHECK(s.active == 0 && s.pending == 0);
		if (walk) {
			CHECK(breaker_table_count_slots(h.env.breakers, entry, &active, &pending) ==
			      0);
			CHECK(active == 0 && pending == 0);
		}
		/* mappings of one cluster share an entry: count each once */
		bool seen = false;
		for (size_t k = 0; k < i; k++)
			seen = seen || h.env.config->mappings[k]->breaker_entry == entry;
		if (!seen) {
			t.bytes_in += s.bytes_in;
			t.bytes_out += s.bytes_out;
		}
	}
	return t;
}

/* What the upstream must have received before the client's bytes, by listener. */
static size_t check_proxy_header(const struct run *r, unsigned listener, bool ipv6) {
	struct proxyproto_header ph;
	uint16_t port = (uint16_t)(FIRST_PORT + listener);

	if (r->upstream.received.n == 0 || (port != 7102 && port != 7103))
		return 0;
	/* one send() of a fresh socket: the header arrives whole */
	int n = proxyproto_parse(r->upstream.received.p, r->upstream.received.n, &ph);
	CHECK(n > 0);
	CHECK(ph.version == (port == 7102 ? PROXY_PROTOCOL_V1 : PROXY_PROTOCOL_V2));
	CHECK(ph.has_addresses);
	CHECK(ph.src.ss_family == (ipv6 ? AF_INET6 : AF_INET));
	if (ipv6) {
		CHECK(ntohs(((struct sockaddr_in6 *)&ph.src)->sin6_port) == PEER_PORT);
		CHECK(ntohs(((struct sockaddr_in6 *)&ph.dst)->sin6_port) == port);
	} else {
		CHECK(ntohs(((struct sockaddr_in *)&ph.src)->sin_port) == PEER_PORT);
		CHECK(ntohs(((struct sockaddr_in *)&ph.dst)->sin_port) == port);
	}
	return (size_t)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
	int fds_before[256], fds_after[256], sv[2];
	size_t pipes_before, pipes_after;
	struct run r = {.client.fd = -EBADF, .upstream.fd = -EBADF, .quiet = true};
	bool time_passed = false;
	breaker_slot_t held[2] = {0, 0};

	if (size < 1)
		return 0;
	uint8_t flags = data[0];
	unsigned listener = (flags & FLAG_LISTENER) % N_LISTENERS;
	bool ipv6 = flags & FLAG_IPV6;
	data++, size--;

	drain_accept_queues();
	size_t n_before = list_fds(fds_before, ELEMENTSOF(fds_before), &pipes_before);
	if (h.baseline_pipes == 0 || pipes_before < h.baseline_pipes)
		h.baseline_pipes = pipes_before;
	struct totals totals_before = check_entries();
	if (flags & FLAG_HOLD)
		for (int i = 0; i < 2; i++)
			CHECK(breaker_table_admit(h.env.breakers, h.held_entries[i], NULL,
			                          &held[i]) == 0);

	/* the client's end of a socketpair, accepted on FIRST_PORT + listener */
	union sockaddr_ip local = {0}, peer = {0};
	socklen_t addr_len;
	if (ipv6) {
		local.in6 = (struct sockaddr_in6){.sin6_family = AF_INET6,
		                                  .sin6_port = htons(FIRST_PORT + listener),
		                                  .sin6_addr = IN6ADDR_LOOPBACK_INIT};
		peer.in6 = (struct sockaddr_in6){.sin6_family = AF_INET6,
		                                 .sin6_port = htons(PEER_PORT),
		                                 .sin6_addr = IN6ADDR_LOOPBACK_INIT};
		addr_len = sizeof(struct sockaddr_in6);
	} else {
		local.in = (struct sockaddr_in){.sin_family = AF_INET,
		                                .sin_port = htons(FIRST_PORT + listener),
		                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		peer.in = (struct sockaddr_in){.sin_family = AF_INET,
		                               .sin_port = htons(PEER_PORT),
		                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		addr_len = sizeof(struct sockaddr_in);
	}
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	r.client.fd = sv[0];
	int started = conn_start(&h.env, &h.worker, sv[1], &local.sa, addr_len, &peer.sa, addr_len,
	                         CONN_START_PRIVATE | CONN_START_NODELAY);
	CHECK(started == 0 || started == -ENOENT);
	settle(&r);

	/* the steps */
	while (size > 0) {
		uint8_t step = data[0];
		size_t len = step & 0x3f;
		data++, size--;
		if (step >> 6 == 2) {
			worker_run_deadlines(&h.worker, now_usec() + len * 100 * 1000);
			time_passed = time_passed || len > 0;
			settle(&r);
			continue;
		}
		if ((step >> 6 == 3 || len == 0x3f) && size > 0) {
			len = step >> 6 == 3 ? (len << 8 | data[0]) : len + data[0];
			data++, size--;
		}
		len = MIN(len, size);
		buf_add(step >> 6 == 1 ? &r.upstream.queued : &r.client.queued, data, len);
		data += len, size -= len;
		settle(&r);
	}

	/* the ends: a half-close each, then, when asked, a close and a reset */
	/* (a socket tcpmapd already reset says ENOTCONN: then it is no half-close) */
	if (flags & FLAG_CLIENT_FIN && r.client_sent == r.client.queued.n)
		r.client.shut = shutdown(r.client.fd, SHUT_WR) == 0;
	if (flags & FLAG_UPSTREAM_FIN && r.upstream.fd >= 0 &&
	    r.upstream_sent == r.upstream.queued.n)
		r.upstream.shut = shutdown(r.upstream.fd, SHUT_WR) == 0;
	settle(&r);
	if (flags & FLAG_ABORT) {
		static const struct linger reset = {.l_onoff = 1, .l_linger = 0};
		r.client.fd = safe_close(r.client.fd);
		if (r.upstream.fd >= 0)
			(void)setsockopt(r.upstream.fd, SOL_SOCKET, SO_LINGER, &reset,
			                 sizeof reset);
		r.upstream.fd = safe_close(r.upstream.fd);
		settle(&r);
	}
	bool ended_by_itself = h.worker.n_conns == 0;

	/* what arrived is what was sent, in order */
	size_t header = check_proxy_header(&r, listener, ipv6);
	struct buf payload = {.p = header ? r.upstream.received.p + header : r.upstream.received.p,
	                      .n = r.upstream.received.n - header};
	CHECK(is_prefix(&payload, r.client.queued.p, r.client_sent));
	if (r.upstream_accepted)
		CHECK(is_prefix(&r.client.received, r.upstream.queued.p, r.upstream_sent));
	else {
		/* refused before any upstream: at most a fatal alert (sni.h's alerts) */
		static const uint8_t alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02};
		CHECK(r.client.received.n == 0 ||
		      (r.client.received.n == sizeof alert + 1 &&
		       memcmp(r.client.received.p, alert, sizeof alert) == 0));
	}
	/* both half-closed, nothing reset, no time passed: everything arrives, and is counted */
	bool whole = ended_by_itself && r.upstream_accepted && r.quiet && r.client.shut &&
	             r.upstream.shut && !(flags & FLAG_ABORT) && !time_passed;
	if (whole) {
		CHECK(r.upstream.eof && r.client.eof);
		CHECK(payload.n == r.client_sent);
		CHECK(r.client.received.n == r.upstream_sent);
	}

	/* the end: close what is left, and the connection goes */
	r.client.fd = safe_close(r.client.fd);
	r.upstream.fd = safe_close(r.upstream.fd);
	settle(&r);
	if (h.worker.n_conns > 0)
		conn_close_all(&h.worker, CONN_RESULT_SHUTDOWN);
	CHECK(h.worker.n_conns == 0);
	CHECK(atomic_load(&h.env.n_active) == 0);
	for (int i = 0; i < 2; i++)
		if (held[i])
			breaker_table_release(h.env.breakers, held[i], 0, 0);
	struct totals totals_after = check_entries();
	if (whole) {
		CHECK(totals_after.bytes_in - totals_before.bytes_in == r.client_sent);
		CHECK(totals_after.bytes_out - totals_before.bytes_out == r.upstream_sent);
	}
	drain_accept_queues();

	size_t n_after = list_fds(fds_after, ELEMENTSOF(fds_after), &pipes_after);
	qsort(fds_before, n_before, sizeof(int), compare_int);
	qsort(fds_after, n_after, sizeof(int), compare_int);
	if (!h.warming) {
		CHECK(n_after == n_before);
		CHECK(memcmp(fds_before, fds_after, n_after * sizeof(int)) == 0);
		CHECK(pipes_after <= h.baseline_pipes + PIPE_POOL_FDS);
	}

	free(r.client.queued.p);
	free(r.client.received.p);
	free(r.upstream.queued.p);
	free(r.upstream.received.p);
	return 0;
}
