/* conn.c — one client connection's life: peek, route, admit, resolve, connect, relay, close.
 *
 * Every connection belongs to one worker and is only touched from that worker's thread.
 * All sockets are non-blocking and watched edge-triggered, so every handler runs its step
 * until it would block. A connection must never hang: each waiting state has a deadline. */
#include <arpa/inet.h>
#include <stddef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "log.h"
#include "proxyproto.h"
#include "route.h"
#include "server-internal.h"
#include "tls.h"
#include "tlsrelay.h"

enum conn_state {
	CONN_PREREAD,            /* peeking at the ClientHello */
	CONN_HANDSHAKE,          /* terminating TLS with the client */
	CONN_RESOLVING,          /* waiting for the resolver */
	CONN_CONNECTING,         /* TCP connect upstream */
	CONN_UPSTREAM_HANDSHAKE, /* originating TLS upstream */
	CONN_RELAYING,
	CONN_DEAD, /* closed, its memory kept until the poller's batch ends */
};

struct conn {
	struct worker *worker;
	struct conn *prev, *next;
	enum conn_state state;

	struct config *config; /* the model this connection was routed with */
	struct listener *listener;
	struct mapping_group *group;
	struct mapping *mapping;

	int client_fd;
	int upstream_fd;
	struct poller_handle client_io;
	struct poller_handle upstream_io;
	/* Some other process or descriptor holds these files too (inetd's stdin and stdout, the
	 * fd store): their epoll registrations must be removed by hand, closing is not enough. */
	bool fds_shared;
	/* the poller batch in which the upstream socket was replaced: events already taken for
	 * the old one are stale */
	uint64_t upstream_replaced_in;
	/* An event has shown a hang-up (FIN, reset, error) on the socket. Until then a short
	 * read drains it (relay.h, short_read_drains). */
	bool client_hup, upstream_hup;
	struct deadline_item deadline; /* in the worker's heap: preread, connect or idle */

	/* Only IPv4 and IPv6 reach here: a sockaddr_in6 holds either, in a fifth of a
	 * sockaddr_storage. Idle connections are what a proxy holds most of. */
	union sockaddr_ip client_addr;
	socklen_t client_addr_len;
	union sockaddr_ip local_addr;
	socklen_t local_addr_len;
	char *sni; /* NULL when the client sent none */

	uint64_t start_usec;
	uint64_t last_activity_usec;

	breaker_slot_t slot;
	bool connected;

	struct resolve_result *addrs; /* while connecting only */
	size_t addr_index;
	uint64_t resolve_token;
	union sockaddr_ip upstream_addr;
	socklen_t upstream_addr_len;

	SSL *client_ssl;   /* terminating */
	SSL *upstream_ssl; /* originating */
	bool use_tls_relay;
	union {
		struct relay relay;         /* !use_tls_relay */
		struct tls_relay tls_relay; /* use_tls_relay */
	};
	const char *result;
};

/* Copy an address in if it is one we keep; otherwise leave it unknown (length 0). */
static socklen_t sockaddr_ip_set(union sockaddr_ip *dst, const void *src, socklen_t len) {
	if (!src || len > sizeof *dst || len < sizeof(struct sockaddr_in)) {
		memset(dst, 0, sizeof *dst);
		return 0;
	}
	memcpy(dst, src, len);
	return len;
}

static void conn_finish(struct conn *c, const char *result);
static int conn_connect_next(struct conn *c);
static void conn_choose_and_connect(struct conn *c);

/* Inside a batch, the time it started: one clock read serves every event in it. */
static uint64_t event_now(struct conn *c) {
	const struct poller *p = &c->worker->poller;
	return poller_in_batch(p) ? p->batch_usec : now_usec();
}

static void format_addr(const union sockaddr_ip *ss, char *buf, size_t size) {
	char host[INET6_ADDRSTRLEN] = "?";

	if (ss->sa.sa_family == AF_INET) {
		const struct sockaddr_in *s = &ss->in;
		inet_ntop(AF_INET, &s->sin_addr, host, sizeof host);
		snprintf(buf, size, "%s:%u", host, ntohs(s->sin_port));
	} else if (ss->sa.sa_family == AF_INET6) {
		const struct sockaddr_in6 *s = &ss->in6;
		bool v4 = IN6_IS_ADDR_V4MAPPED(&s->sin6_addr);
		if (v4)
			inet_ntop(AF_INET, &s->sin6_addr.s6_addr[12], host, sizeof host);
		else
			inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof host);
		snprintf(buf, size, v4 ? "%s:%u" : "[%s]:%u", host, ntohs(s->sin6_port));
	} else
		snprintf(buf, size, "-");
}

/* Make sure the worker's one timer fires no later than its earliest deadline. It is moved
 * only to fire sooner: a deadline that went away or moved later leaves it where it is, and
 * it then fires early once and re-arms, instead of re-arming on every connection. */
static void arm_worker_timer(struct worker *w) {
	struct deadline_item *first = deadline_peek(&w->deadlines);
	uint64_t when = first ? first->when : DEADLINE_NONE;

	if (when == DEADLINE_NONE || w->timer_armed_at <= when)
		return;
	w->timer_armed_at = when;
	sd_event_source_set_time(w->deadline_timer, when);
	sd_event_source_set_enabled(w->deadline_timer, SD_EVENT_ONESHOT);
	poller_event_changed(&w->poller);
}

/* One deadline per connection serves every state: preread, handshake, connect and idle. */
static int set_deadline(struct conn *c, uint64_t usec) {
	int r = deadline_set(&c->worker->deadlines, &c->deadline, usec);
	arm_worker_timer(c->worker);
	return r;
}

static uint64_t bytes_in(const struct conn *c) {
	return c->use_tls_relay ? c->tls_relay.up.bytes : c->relay.up.bytes;
}

static uint64_t bytes_out(const struct conn *c) {
	return c->use_tls_relay ? c->tls_relay.down.bytes : c->relay.down.bytes;
}

static void log_close(struct conn *c) {
	char client[64], upstream[300], in[24], out[24], duration[24];
	uint64_t ms = (now_usec() - c->start_usec) / 1000;
	bool ok = streq(c->result, "ok") || streq(c->result, "idle_timeout");

	format_addr(&c->client_addr, client, sizeof client);
	if (c->upstream_addr_len > 0)
		format_addr(&c->upstream_addr, upstream, sizeof upstream);
	else
		snprintf(upstream, sizeof upstream, "%s", c->mapping ? c->mapping->service : "-");
	snprintf(in, sizeof in, "%llu", (unsigned long long)bytes_in(c));
	snprintf(out, sizeof out, "%llu", (unsigned long long)bytes_out(c));
	snprintf(duration, sizeof duration, "%llu", (unsigned long long)ms);

	struct log_field f[] = {
	        {"MAPPING", c->mapping ? c->mapping->name : NULL},
	        {"CLIENT", client},
	        {"SNI", c->sni},
	        {"UPSTREAM", upstream},
	        {"BYTES_IN", in},
	        {"BYTES_OUT", out},
	        {"DURATION_MS", duration},
	        {"RESULT", c->result},
	};
	log_event(ok ? LOG_INFO : LOG_WARNING, TCPMAP_MID_CLOSE, "close", f, ELEMENTSOF(f),
	          "%s %s -> %s: %s, %s bytes in, %s bytes out, %s ms",
	          c->mapping ? c->mapping->name : "-", client, upstream, c->result, in, out,
	          duration);
}

static void conn_free(struct conn *c) {
	struct worker *w = c->worker;

	if (c->fds_shared) {
		poller_remove(&w->poller, c->client_fd);
		poller_remove(&w->poller, c->upstream_fd);
	}
	deadline_remove(&w->deadlines, &c->deadline);
	arm_worker_timer(w);
	resolve_cancel(w->resolver, c->resolve_token);
	if (c->use_tls_relay)
		tls_relay_release(&c->tls_relay);
	else
		relay_release(&c->relay);
	free(c->addrs);
	free(c->sni);
	if (c->client_ssl)
		tls_session_free(c->client_ssl);
	if (c->upstream_ssl)
		tls_session_free(c->upstream_ssl);
	safe_close(c->client_fd);
	safe_close(c->upstream_fd);
	config_unref(c->config);

	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->n_conns--;
	atomic_fetch_sub(&w->server->n_active, 1);
	if (poller_in_batch(&w->poller)) {
		/* a later event of this batch may still point here */
		c->state = CONN_DEAD;
		c->next = w->graveyard;
		w->graveyard = c;
		return;
	}
	free(c);
}

void conn_free_graveyard(void *userdata) {
	struct worker *w = userdata;
	while (w->graveyard) {
		struct conn *c = w->graveyard;
		w->graveyard = c->next;
		free(c);
	}
}

static void conn_finish(struct conn *c, const char *result) {
	struct server *s = c->worker->server;

	c->result = result;
	if (streq(result, "shed"))
		worker_note_shed(c->worker, EMFILE, 1);
	if (c->mapping && !c->connected &&
	    (streq(result, "connect_failed") || streq(result, "connect_timeout"))) {
		char upstream[64] = "-";
		if (c->upstream_addr_len > 0)
			format_addr(&c->upstream_addr, upstream, sizeof upstream);
		struct log_field f[] = {
		        {"MAPPING", c->mapping->name},
		        {"UPSTREAM", c->upstream_addr_len > 0 ? upstream : c->mapping->service},
		        {"RESULT", result}};
		log_event(LOG_WARNING, TCPMAP_MID_UPSTREAM_FAILED, "upstream_failed", f,
		          ELEMENTSOF(f), "mapping \"%s\": upstream %s unreachable: %s",
		          c->mapping->name, c->mapping->service, result);
	}
	if (c->slot) {
		if (!c->connected &&
		    (streq(result, "connect_failed") || streq(result, "connect_timeout")))
			breaker_table_connect_failed(s->breakers, c->slot);
		breaker_table_release(s->breakers, c->slot, bytes_in(c), bytes_out(c));
		c->slot = 0;
	}
	log_close(c);
	conn_free(c);
}

/* ---- relaying ---- */

enum { PUMP_UP = 1 << 0, PUMP_DOWN = 1 << 1, PUMP_BOTH = PUMP_UP | PUMP_DOWN };

/* Events that show the peer hung up or failed; with EPOLLIN, that the socket has something
 * for a read to find. */
#define EPOLL_HANGUP (EPOLLRDHUP | EPOLLHUP | EPOLLERR)
#define EPOLL_READABLE (EPOLLIN | EPOLL_HANGUP)

/* Which directions an event on the client (or upstream) socket concerns: the one reading
 * from it when it is readable, and the one writing to it when it is writable. A writable
 * socket matters only to a direction with bytes waiting in its pipe: one with none has
 * read its source to the end, and that source's own event will say when there is more.
 * Without this, each ACK that frees send space would cost a read that can only say EAGAIN. */
static int pump_mask(const struct conn *c, uint32_t revents, bool client_side) {
	if (revents & (EPOLLERR | EPOLLHUP))
		return PUMP_BOTH;
	int reads = client_side ? PUMP_UP : PUMP_DOWN, writes = client_side ? PUMP_DOWN : PUMP_UP;
	int mask = revents & EPOLL_READABLE ? reads : 0; /* ERR and HUP returned above */
	if (revents & EPOLLOUT) {
		const struct relay_direction *d = writes == PUMP_UP ? &c->relay.up : &c->relay.down;
		if (c->use_tls_relay || d->in_pipe > 0)
			mask |= writes;
	}
	return mask;
}

static void conn_pump(struct conn *c, int mask) {
	if (mask == 0)
		return;
	if (!c->use_tls_relay) {
		c->relay.up.short_read_drains = !c->client_hup;
		c->relay.down.short_read_drains = !c->upstream_hup;
	}
	/* TLS may need to write to read (and the reverse): it always pumps both */
	int r = c->use_tls_relay ? tls_relay_pump(&c->tls_relay)
	                         : relay_pump_some(&c->relay, mask & PUMP_UP, mask & PUMP_DOWN);
	if (r < 0) {
		/* A reset or broken pipe on either side ends the connection; every byte that was
		 * delivered is counted, and nothing else can be delivered. */
		conn_finish(c, "ok");
		return;
	}
	if (r & RELAY_PROGRESS)
		c->last_activity_usec = event_now(c);
	if (r & RELAY_DONE) {
		conn_finish(c, "ok");
		return;
	}
	if (!c->use_tls_relay)
		relay_trim(&c->relay);
}

/* `mask`: the directions that may have bytes waiting (PUMP_*). */
static void start_relay(struct conn *c, int mask) {
	c->state = CONN_RELAYING;
	c->use_tls_relay = c->client_ssl || c->upstream_ssl;
	if (c->use_tls_relay)
		tls_relay_init(&c->tls_relay, c->client_fd, c->client_ssl, c->upstream_fd,
		               c->upstream_ssl);
	else
		relay_init(&c->relay, c->client_fd, c->upstream_fd);
	c->last_activity_usec = event_now(c);

	int r = set_deadline(c, c->mapping->idle_timeout_ms > 0
	                                ? c->last_activity_usec +
	                                          (uint64_t)c->mapping->idle_timeout_ms * 1000
	                                : UINT64_MAX);
	if (r < 0) {
		conn_finish(c, "ok");
		return;
	}
	conn_pump(c, mask);
}

/* ---- TLS handshakes ---- */

static void continue_client_handshake(struct conn *c) {
	int r = tls_handshake_step(c->client_ssl);
	if (r == 0)
		return;
	if (r < 0) {
		log_debug("TLS handshake with client failed: %s", tls_handshake_failure_reason());
		conn_finish(c, "handshake_failed");
		return;
	}
	conn_choose_and_connect(c);
}

static void continue_upstream_handshake(struct conn *c) {
	int r = tls_handshake_step(c->upstream_ssl);
	if (r == 0)
		return;
	if (r < 0) {
		log_warning("mapping \"%s\": TLS handshake with %s failed: %s", c->mapping->name,
		            c->mapping->service, tls_handshake_failure_reason());
		conn_finish(c, "handshake_failed");
		return;
	}
	start_relay(c, PUMP_BOTH); /* TLS pumps both directions anyway */
}

/* ---- connecting ---- */

/* `revents`: the event on the upstream socket that showed the connect done. */
static void on_connected(struct conn *c, uint32_t revents) {
	struct server *s = c->worker->server;

	c->connected = true;
	breaker_table_connected(s->breakers, c->slot);
	c->addrs = mfree(c->addrs);
	if (c->mapping->proxy_protocol != PROXY_PROTOCOL_NONE) {
		uint8_t header[PROXYPROTO_HEADER_MAX];
		int len = proxyproto_write(c->mapping->proxy_protocol, &c->client_addr.sa,
		                           &c->local_addr.sa, header, sizeof header);
		/* A fresh socket's send buffer always has room for one small header. */
		ssize_t n = len < 0 ? -1 : send(c->upstream_fd, header, (size_t)len, MSG_NOSIGNAL);
		if (n != len) {
			conn_finish(c, "connect_failed");
			return;
		}
	}
	if (c->mapping->tls != TLS_ORIGINATE_NONE) {
		if (tls_client_session(c->config, c->mapping, c->upstream_fd, &c->upstream_ssl) <=
		    0) {
			conn_finish(c, "handshake_failed");
			return;
		}
		c->state = CONN_UPSTREAM_HANDSHAKE;
		continue_upstream_handshake(c);
		return;
	}
	/* The client's bytes may have waited since before the connect. The upstream's can only
	 * be there if this very event says so: anything later is a new edge. A client-first
	 * protocol so saves a splice that could only say EAGAIN. */
	start_relay(c, PUMP_UP | (revents & EPOLL_READABLE ? PUMP_DOWN : 0));
}

static void check_connect(struct conn *c, uint32_t revents) {
	int err = 0;
	socklen_t len = sizeof err;

	/* writable without an error is a finished connect: ask the socket only otherwise */
	if (!(revents & (EPOLLERR | EPOLLHUP)) && (revents & EPOLLOUT)) {
		on_connected(c, revents);
		return;
	}
	if (getsockopt(c->upstream_fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err == 0) {
		if (revents & EPOLLOUT)
			on_connected(c, revents);
		return;
	}
	char addr[64];
	format_addr(&c->upstream_addr, addr, sizeof addr);
	log_debug("mapping \"%s\": connect to %s failed: %s", c->mapping->name, addr,
	          strerror(err));
	c->addr_index++;
	int r = conn_connect_next(c);
	if (r < 0)
		conn_finish(c, r == -EMFILE ? "shed" : "connect_failed");
}

static void on_upstream_io(struct poller_handle *h, uint32_t revents) {
	struct conn *c = container_of(h, struct conn, upstream_io);

	if (c->upstream_replaced_in == c->worker->poller.batches)
		return; /* about the socket this one replaced */
	if (revents & EPOLL_HANGUP)
		c->upstream_hup = true;
	switch (c->state) {
	case CONN_CONNECTING:
		check_connect(c, revents);
		break;
	case CONN_UPSTREAM_HANDSHAKE:
		continue_upstream_handshake(c);
		break;
	case CONN_RELAYING:
		conn_pump(c, pump_mask(c, revents, false));
		break;
	default:
		break;
	}
}

/* Try addresses from addr_index on; returns 0 while a connect is under way or done,
 * -errno when none is left. */
static int conn_connect_next(struct conn *c) {
	static const int one = 1;

	if (c->upstream_fd >= 0) {
		if (c->fds_shared)
			poller_remove(&c->worker->poller, c->upstream_fd);
		c->upstream_fd = safe_close(c->upstream_fd);
		c->upstream_hup = false;
		if (poller_in_batch(&c->worker->poller))
			c->upstream_replaced_in = c->worker->poller.batches;
	}

	for (; c->addr_index < c->addrs->n; c->addr_index++) {
		const struct sockaddr *sa =
		        (const struct sockaddr *)&c->addrs->addrs[c->addr_index];
		socklen_t len = c->addrs->lens[c->addr_index];

		c->upstream_addr_len = sockaddr_ip_set(&c->upstream_addr, sa, len);
		c->upstream_fd =
		        socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (c->upstream_fd < 0) {
			/* our own limits, not the upstream's fault: say so, and try no further */
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM)
				return -EMFILE;
			continue;
		}
		(void)setsockopt(c->upstream_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (connect(c->upstream_fd, sa, len) < 0 && errno != EINPROGRESS) {
			c->upstream_fd = safe_close(c->upstream_fd);
			continue;
		}
		/* edge-triggered from the start: EPOLLOUT says connected, and the same source
		 * then serves the handshake and the relay */
		return poller_add(&c->worker->poller, c->upstream_fd,
		                  EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &c->upstream_io);
	}
	return -ECONNREFUSED;
}

static void on_resolved(const struct resolve_result *r, void *userdata) {
	struct conn *c = userdata;

	c->resolve_token = 0;
	if (r->error < 0 || r->n == 0) {
		log_debug("mapping \"%s\": resolving %s: %s", c->mapping->name,
		          c->mapping->upstream_host,
		          strerror(-(r->error ? r->error : -EHOSTUNREACH)));
		conn_finish(c, "connect_failed");
		return;
	}
	c->addrs = malloc(sizeof *c->addrs);
	if (!c->addrs) {
		conn_finish(c, "connect_failed");
		return;
	}
	*c->addrs = *r;
	c->addr_index = 0;
	c->state = CONN_CONNECTING;
	int e = conn_connect_next(c);
	if (e < 0)
		conn_finish(c, e == -EMFILE ? "shed" : "connect_failed");
}

/* ---- routing and admission ---- */

/* Pick the group's mapping by weight, skipping mappings whose breaker is open, take a
 * breaker slot and start resolving. */
static void conn_choose_and_connect(struct conn *c) {
	struct server *s = c->worker->server;
	struct mapping_group *g = c->group;
	bool eligible[ROUTE_MAX_GROUP_MAPPINGS];
	bool any_open = false;

	for (size_t i = 0; i < g->n_mappings && i < ROUTE_MAX_GROUP_MAPPINGS; i++) {
		struct mapping *m = g->mappings[i];
		eligible[i] = breaker_table_would_admit(s->breakers, m->breaker_entry,
		                                        &m->circuit_breakers);
		any_open = any_open || !eligible[i];
	}
	int idx = breaker_table_pick(s->breakers, g, any_open ? eligible : NULL);
	if (idx < 0 && any_open)
		/* every breaker is open: the weighted choice says whose overflow this is */
		idx = breaker_table_pick(s->breakers, g, NULL);
	if (idx < 0) {
		conn_finish(c, "connect_failed"); /* every weight is 0 */
		return;
	}
	c->mapping = g->mappings[idx];

	int r = breaker_table_admit(s->breakers, c->mapping->breaker_entry,
	                            &c->mapping->circuit_breakers, &c->slot);
	if (r < 0 && r != -EBUSY) {
		/* not a breaker limit: the table itself has no free slot */
		log_warning_errno(r, "mapping \"%s\": no breaker slot", c->mapping->name);
		c->slot = 0;
		conn_finish(c, "connect_failed");
		return;
	}
	if (r < 0) {
		char client[64];
		format_addr(&c->client_addr, client, sizeof client);
		struct log_field f[] = {{"MAPPING", c->mapping->name},
		                        {"CLIENT", client},
		                        {"UPSTREAM", c->mapping->service},
		                        {"RESULT", "breaker_overflow"}};
		log_event(LOG_WARNING, TCPMAP_MID_OVERFLOW, "overflow", f, ELEMENTSOF(f),
		          "mapping \"%s\": circuit breaker open for %s, closing %s",
		          c->mapping->name, c->mapping->cluster, client);
		c->slot = 0;
		conn_finish(c, "breaker_overflow");
		return;
	}
	if (any_open && eligible[idx]) {
		struct log_field f[] = {{"MAPPING", c->mapping->name}};
		log_event(LOG_NOTICE, TCPMAP_MID_FAILOVER, "failover", f, ELEMENTSOF(f),
		          "group %s: a circuit breaker is open, routing to \"%s\"", g->key,
		          c->mapping->name);
	}

	if (set_deadline(c, event_now(c) + (uint64_t)c->mapping->connect_timeout_ms * 1000) < 0) {
		conn_finish(c, "connect_failed");
		return;
	}
	c->state = CONN_RESOLVING;
	r = resolve_start(c->worker->resolver, c->mapping->upstream_host, c->mapping->upstream_port,
	                  c->mapping->enable_ipv4, c->mapping->enable_ipv6, on_resolved, c,
	                  &c->resolve_token);
	if (r < 0)
		conn_finish(c, "connect_failed");
}

/* The group for this connection; then terminate TLS if the group says so, or go on. */
static void conn_route(struct conn *c, const char *sni, const char *not_found_result) {
	struct mapping_group *g = route_select_group(c->listener, sni);

	if (!g) {
		if (streq(not_found_result, "unknown_sni")) {
			/* fatal alert unrecognized_name(112): the doc's "handshake fails" */
			static const uint8_t alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70};
			ssize_t _unused_ n = send(c->client_fd, alert, sizeof alert, MSG_NOSIGNAL);
		}
		conn_finish(c, not_found_result);
		return;
	}
	c->group = g;

	int r = tls_server_session(c->config, g, c->client_fd, &c->client_ssl);
	if (r == 0) {
		conn_choose_and_connect(c);
		return;
	}
	if (r < 0) {
		conn_finish(c, "handshake_failed");
		return;
	}
	c->state = CONN_HANDSHAKE;
	continue_client_handshake(c);
}

/* ---- preread ---- */

static void conn_preread(struct conn *c) {
	uint8_t buf[SNI_MAX_PEEK];
	struct client_hello hello;

	ssize_t n = recv(c->client_fd, buf, sizeof buf, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_finish(c, "not_tls");
		return;
	}
	switch (sni_parse(buf, (size_t)n, &hello)) {
	case SNI_NEED_MORE:
		return;
	case SNI_FOUND:
		c->sni = strdup(hello.sni);
		if (!c->sni) {
			conn_finish(c, "shed");
			return;
		}
		conn_route(c, c->sni, "unknown_sni");
		return;
	case SNI_NONE:
		conn_route(c, NULL, "unknown_sni");
		return;
	case SNI_NOT_TLS:
	case SNI_INVALID:
		conn_route(c, NULL, "not_tls");
		return;
	}
}

static void on_client_io(struct poller_handle *h, uint32_t revents) {
	struct conn *c = container_of(h, struct conn, client_io);

	if (revents & EPOLL_HANGUP)
		c->client_hup = true;
	switch (c->state) {
	case CONN_PREREAD:
		/* not on the writable edge every new socket reports */
		if (revents & EPOLL_READABLE)
			conn_preread(c);
		break;
	case CONN_HANDSHAKE:
		continue_client_handshake(c);
		break;
	case CONN_RELAYING:
		conn_pump(c, pump_mask(c, revents, true));
		break;
	default:
		break; /* bytes wait in the socket until the relay starts; or it is dead */
	}
}

static void conn_on_deadline(struct conn *c, uint64_t usec) {
	switch (c->state) {
	case CONN_PREREAD:
		conn_finish(c, "preread_timeout");
		break;
	case CONN_HANDSHAKE:
		conn_finish(c, "handshake_failed");
		break;
	case CONN_RESOLVING:
	case CONN_CONNECTING:
	case CONN_UPSTREAM_HANDSHAKE:
		conn_finish(c, "connect_timeout");
		break;
	case CONN_DEAD:
		break;
	case CONN_RELAYING: {
		/* activity only records a time; the deadline moves lazily, here */
		uint64_t idle = (uint64_t)c->mapping->idle_timeout_ms * 1000;
		if (usec >= c->last_activity_usec + idle ||
		    set_deadline(c, c->last_activity_usec + idle) < 0)
			conn_finish(c, "idle_timeout");
		break;
	}
	}
}

static int on_worker_timer(sd_event_source *src, uint64_t usec, void *userdata) {
	struct worker *w = userdata;
	struct deadline_item *first;
	(void)src;

	w->timer_armed_at = DEADLINE_NONE; /* a oneshot source is off once it fired */
	/* bounded: each round removes the item or moves it past `usec` */
	while ((first = deadline_peek(&w->deadlines)) && first->when <= usec) {
		struct conn *c = (struct conn *)((char *)first - offsetof(struct conn, deadline));
		deadline_remove(&w->deadlines, first);
		conn_on_deadline(c, usec);
	}
	arm_worker_timer(w);
	return 0;
}

int conn_timer_init(struct worker *w) {
	w->timer_armed_at = DEADLINE_NONE;
	return sd_event_add_time(w->event, &w->deadline_timer, CLOCK_MONOTONIC, UINT64_MAX, 1000,
	                         on_worker_timer, w);
}

void conn_timer_done(struct worker *w) {
	w->deadline_timer = sd_event_source_disable_unref(w->deadline_timer);
	deadline_heap_free(&w->deadlines);
}

int conn_start(struct worker *w, int fd, const struct sockaddr *local, socklen_t local_len,
               const struct sockaddr *peer, socklen_t peer_len, unsigned flags) {
	static const int one = 1;
	struct server *s = w->server;
	struct conn *c;
	int r;

	c = calloc(1, sizeof *c);
	if (!c) {
		safe_close(fd);
		return -ENOMEM;
	}
	c->worker = w;
	c->deadline.when = DEADLINE_NONE;
	c->client_io.dispatch = on_client_io;
	c->upstream_io.dispatch = on_upstream_io;
	c->fds_shared = !(flags & CONN_START_PRIVATE);
	c->client_fd = fd;
	c->upstream_fd = -EBADF;
	relay_init(&c->relay, -EBADF, -EBADF);
	c->start_usec = now_usec();
	c->result = "ok";
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	if (++w->n_conns > w->conns_peak)
		w->conns_peak = w->n_conns;
	atomic_fetch_add(&s->n_active, 1);
	atomic_fetch_add(&s->n_total, 1);

	c->local_addr_len = sockaddr_ip_set(&c->local_addr, local, local_len);
	if (peer)
		c->client_addr_len = sockaddr_ip_set(&c->client_addr, peer, peer_len);
	else {
		c->client_addr_len = sizeof c->client_addr;
		if (getpeername(fd, &c->client_addr.sa, &c->client_addr_len) < 0)
			c->client_addr_len = 0;
	}

	c->config = server_config_get(s);
	c->listener = config_find_listener(c->config, local, local_len);
	if (!c->listener) {
		char addr[64];
		format_addr(&c->local_addr, addr, sizeof addr);
		log_warning("no mapping listens on %s, closing the connection", addr);
		conn_finish(c, "no_listener");
		return -ENOENT;
	}
	if (!(flags & CONN_START_NODELAY))
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (log_get_max_level() >= LOG_DEBUG) {
		/* one line per accept doubles the log volume: only when asked for */
		char client[64], local_s[64];
		format_addr(&c->client_addr, client, sizeof client);
		format_addr(&c->local_addr, local_s, sizeof local_s);
		struct log_field f[] = {{"CLIENT", client}, {"LOCAL", local_s}};
		log_event(LOG_DEBUG, TCPMAP_MID_ACCEPT, "accept", f, ELEMENTSOF(f),
		          "accepted %s on %s", client, local_s);
	}

	r = poller_add(&w->poller, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &c->client_io);
	if (r < 0) {
		conn_finish(c, "connect_failed");
		return r;
	}

	if (c->listener->needs_sni) {
		c->state = CONN_PREREAD;
		/* the same bound covers the peek and a terminating handshake */
		r = set_deadline(c, event_now(c) +
		                            (uint64_t)c->config->module.preread_timeout_ms * 1000);
		if (r < 0) {
			conn_finish(c, "preread_timeout");
			return r;
		}
		/* no peek now: a ClientHello already here was reported when the socket was
		 * added, and one still to come will be, so a peek now could only say EAGAIN */
		return 0;
	}
	conn_route(c, NULL, "connect_failed");
	return 0;
}

void conn_close_all(struct worker *w, const char *result) {
	while (w->conns)
		conn_finish(w->conns, result);
}

/* ---- hand-over across restarts ---- */

static int store_fd(const char *id, enum handover_fd_kind kind, int fd) {
	char name[64], msg[96];
	int r = handover_fd_name(id, kind, name, sizeof name);
	if (r < 0)
		return r;
	snprintf(msg, sizeof msg, "FDSTORE=1\nFDNAME=%s", name);
	r = sd_pid_notify_with_fds(0, false, msg, &fd, 1);
	return r < 0 ? r : r == 0 ? -ENOTCONN : 0;
}

int conn_handover(struct conn *c, int state_fd) {
	static atomic_uint_fast64_t counter;
	struct handover_record rec = {.magic = HANDOVER_MAGIC, .version = HANDOVER_VERSION};
	struct relay *rl = &c->relay;
	int r;

	if (c->state != CONN_RELAYING || c->use_tls_relay)
		return -EBUSY;

	snprintf(rec.id, sizeof rec.id, "%d-%llu", (int)getpid(),
	         (unsigned long long)atomic_fetch_add(&counter, 1));
	snprintf(rec.mapping, sizeof rec.mapping, "%s", c->mapping->name);
	snprintf(rec.sni, sizeof rec.sni, "%s", c->sni ? c->sni : "");
	rec.slot = c->slot;
	rec.bytes_in = rl->up.bytes;
	rec.bytes_out = rl->down.bytes;
	rec.in_pipe_up = rl->up.in_pipe;
	rec.in_pipe_down = rl->down.in_pipe;
	rec.flags = (rl->up.eof ? HANDOVER_UP_EOF : 0) | (rl->up.shut ? HANDOVER_UP_SHUT : 0) |
	            (rl->down.eof ? HANDOVER_DOWN_EOF : 0) |
	            (rl->down.shut ? HANDOVER_DOWN_SHUT : 0);
	if (c->mapping->idle_timeout_ms > 0) {
		uint64_t deadline =
		        c->last_activity_usec + (uint64_t)c->mapping->idle_timeout_ms * 1000;
		uint64_t now = event_now(c);
		rec.idle_remaining_ms = deadline > now ? (deadline - now) / 1000 : 0;
	} else
		rec.idle_remaining_ms = UINT64_MAX;
	rec.started_realtime_ms = (uint64_t)time(NULL) * 1000 - (now_usec() - c->start_usec) / 1000;
	memcpy(&rec.client_addr, &c->client_addr, c->client_addr_len);
	rec.client_addr_len = c->client_addr_len;
	memcpy(&rec.local_addr, &c->local_addr, c->local_addr_len);
	rec.local_addr_len = c->local_addr_len;
	memcpy(&rec.upstream_addr, &c->upstream_addr, c->upstream_addr_len);
	rec.upstream_addr_len = c->upstream_addr_len;

	/* The fds first: a record without its fds is discarded by the next process, while fds
	 * without a record would be closed by it, so either order is safe; this one loses less. */
	r = store_fd(rec.id, HANDOVER_FD_CLIENT, c->client_fd);
	if (r >= 0)
		r = store_fd(rec.id, HANDOVER_FD_UPSTREAM, c->upstream_fd);
	if (r >= 0 && rl->up.in_pipe > 0) {
		r = store_fd(rec.id, HANDOVER_FD_UP_READ, rl->up.pipe_r);
		if (r >= 0)
			r = store_fd(rec.id, HANDOVER_FD_UP_WRITE, rl->up.pipe_w);
	}
	if (r >= 0 && rl->down.in_pipe > 0) {
		r = store_fd(rec.id, HANDOVER_FD_DOWN_READ, rl->down.pipe_r);
		if (r >= 0)
			r = store_fd(rec.id, HANDOVER_FD_DOWN_WRITE, rl->down.pipe_w);
	}
	if (r >= 0 && write(state_fd, &rec, sizeof rec) != (ssize_t)sizeof rec)
		r = -errno ? -errno : -EIO;
	if (r < 0)
		return log_warning_errno(
		        r, "connection %s could not move to the fd store, it stays", rec.id);

	char client[64], in[24], out[24];
	format_addr(&c->client_addr, client, sizeof client);
	snprintf(in, sizeof in, "%llu", (unsigned long long)rec.bytes_in);
	snprintf(out, sizeof out, "%llu", (unsigned long long)rec.bytes_out);
	struct log_field f[] = {{"MAPPING", c->mapping->name},
	                        {"CLIENT", client},
	                        {"CONNECTION", rec.id},
	                        {"BYTES_IN", in},
	                        {"BYTES_OUT", out}};
	log_event(LOG_INFO, TCPMAP_MID_ADOPT, "handover", f, ELEMENTSOF(f),
	          "%s %s: handed to the fd store as c%s", c->mapping->name, client, rec.id);

	/* The slot now belongs to the next process; our copies of the fds just close, and
	 * their files live on in the store. */
	c->slot = 0;
	c->fds_shared = true;
	if (rl->up.in_pipe > 0)
		rl->up.in_pipe = 0, rl->up.pipe_r = safe_close(rl->up.pipe_r),
		rl->up.pipe_w = safe_close(rl->up.pipe_w);
	if (rl->down.in_pipe > 0)
		rl->down.in_pipe = 0, rl->down.pipe_r = safe_close(rl->down.pipe_r),
		rl->down.pipe_w = safe_close(rl->down.pipe_w);
	conn_free(c);
	return 0;
}

unsigned conn_handover_all(struct worker *w, int state_fd) {
	unsigned n = 0;
	for (struct conn *c = w->conns, *next; c; c = next) {
		next = c->next;
		if (conn_handover(c, state_fd) >= 0)
			n++;
	}
	return n;
}

static struct mapping *find_mapping(const struct config *cfg, const char *name) {
	for (size_t i = 0; i < cfg->n_mappings; i++)
		if (streq(cfg->mappings[i]->name, name))
			return cfg->mappings[i];
	return NULL;
}

int conn_adopt(struct worker *w, const struct handover_record *r, int fds[_HANDOVER_FD_MAX]) {
	struct server *s = w->server;
	struct conn *c;
	int e;

	c = calloc(1, sizeof *c);
	if (!c) {
		for (int k = 0; k < _HANDOVER_FD_MAX; k++)
			fds[k] = safe_close(fds[k]);
		return -ENOMEM;
	}
	c->worker = w;
	c->deadline.when = DEADLINE_NONE;
	c->client_io.dispatch = on_client_io;
	c->upstream_io.dispatch = on_upstream_io;
	c->fds_shared = true; /* the fd store may still hold them */
	c->client_fd = TAKE_FD(fds[HANDOVER_FD_CLIENT]);
	c->upstream_fd = TAKE_FD(fds[HANDOVER_FD_UPSTREAM]);
	relay_init(&c->relay, c->client_fd, c->upstream_fd);
	c->relay.up.pipe_r = TAKE_FD(fds[HANDOVER_FD_UP_READ]);
	c->relay.up.pipe_w = TAKE_FD(fds[HANDOVER_FD_UP_WRITE]);
	c->relay.down.pipe_r = TAKE_FD(fds[HANDOVER_FD_DOWN_READ]);
	c->relay.down.pipe_w = TAKE_FD(fds[HANDOVER_FD_DOWN_WRITE]);
	c->start_usec = now_usec();
	uint64_t now_real = (uint64_t)time(NULL) * 1000;
	if (r->started_realtime_ms < now_real)
		c->start_usec -=
		        MIN(now_real - r->started_realtime_ms, c->start_usec / 1000) * 1000;
	c->result = "ok";
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->n_conns++;
	atomic_fetch_add(&s->n_active, 1);
	atomic_fetch_add(&s->n_total, 1);
	c->client_addr_len = sockaddr_ip_set(&c->client_addr, &r->client_addr, r->client_addr_len);
	c->local_addr_len = sockaddr_ip_set(&c->local_addr, &r->local_addr, r->local_addr_len);
	c->upstream_addr_len =
	        sockaddr_ip_set(&c->upstream_addr, &r->upstream_addr, r->upstream_addr_len);
	c->sni = r->sni[0] ? strdup(r->sni) : NULL;
	c->relay.up.bytes = r->bytes_in;
	c->relay.down.bytes = r->bytes_out;
	c->relay.up.in_pipe = r->in_pipe_up;
	c->relay.down.in_pipe = r->in_pipe_down;
	c->relay.up.eof = r->flags & HANDOVER_UP_EOF;
	c->relay.up.shut = r->flags & HANDOVER_UP_SHUT;
	c->relay.down.eof = r->flags & HANDOVER_DOWN_EOF;
	c->relay.down.shut = r->flags & HANDOVER_DOWN_SHUT;
	c->connected = true;
	c->config = server_config_get(s);
	c->mapping = find_mapping(c->config, r->mapping);

	if (c->client_fd < 0 || c->upstream_fd < 0 || !c->mapping ||
	    (r->in_pipe_up > 0 && (c->relay.up.pipe_r < 0 || c->relay.up.pipe_w < 0)) ||
	    (r->in_pipe_down > 0 && (c->relay.down.pipe_r < 0 || c->relay.down.pipe_w < 0))) {
		log_warning("connection c%s (mapping \"%s\") cannot be adopted: %s, closing it",
		            r->id, r->mapping,
		            !c->mapping ? "the mapping is gone from the config"
		                        : "fds are missing");
		/* its old slot is the dead process's: the reaper frees it */
		conn_finish(c, "adopt_failed");
		return -ENOENT;
	}
	c->group = c->mapping->group;
	c->listener = c->group ? c->group->listener : NULL;

	/* Re-own the slot; if a reaper already freed it, count the connection anew (no limit
	 * applies: it was admitted once already). */
	c->slot = r->slot;
	if (r->slot == 0 || breaker_table_adopt(s->breakers, r->slot) < 0) {
		c->slot = 0;
		if (breaker_table_admit(s->breakers, c->mapping->breaker_entry, NULL, &c->slot) >=
		    0)
			breaker_table_connected(s->breakers, c->slot);
	}

	c->state = CONN_RELAYING;
	e = poller_add(&w->poller, c->client_fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
	               &c->client_io);
	if (e >= 0)
		e = poller_add(&w->poller, c->upstream_fd,
		               EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &c->upstream_io);
	if (e < 0) {
		conn_finish(c, "adopt_failed");
		return log_warning_errno(e, "adopting connection c%s", r->id);
	}
	c->last_activity_usec = event_now(c);
	if (r->idle_remaining_ms != UINT64_MAX && c->mapping->idle_timeout_ms > 0) {
		/* keep the old deadline: last activity as if it had been idle since then */
		uint64_t idle = (uint64_t)c->mapping->idle_timeout_ms * 1000;
		uint64_t remaining = MIN(r->idle_remaining_ms * 1000, idle);
		c->last_activity_usec = c->last_activity_usec + remaining - idle;
		set_deadline(c, c->last_activity_usec + idle);
	}

	char client[64];
	format_addr(&c->client_addr, client, sizeof client);
	struct log_field f[] = {
	        {"MAPPING", c->mapping->name}, {"CLIENT", client}, {"CONNECTION", r->id}};
	log_event(LOG_INFO, TCPMAP_MID_ADOPT, "adopt", f, ELEMENTSOF(f),
	          "%s %s: adopted c%s from the fd store", c->mapping->name, client, r->id);
	return 0;
}

/* After adoption the pump runs once the worker's loop starts (edge-triggered sources
 * report the sockets' current readiness when added). */
