/* conn.c — one client connection's life: peek, route, admit, resolve, connect, relay, close.
 *
 * Every connection belongs to one worker and is only touched from that worker's thread.
 * All sockets are non-blocking and watched edge-triggered, so every handler runs its step
 * until it would block. A connection must never hang: each waiting state has a deadline.
 * It calls down only: the worker (loop, deadlines, resolver), the relays, routing, the
 * breaker table; never server.c, and never systemd's fd store (handoff.c). */
#include "conn.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "accesslog.h"
#include "log.h"
#include "netaddr.h"
#include "proxyproto.h"
#include "relay.h"
#include "relayfork.h"
#include "relaywatch.h"
#include "resolve.h"
#include "route.h"
#include "sni.h"
#include "tls.h"
#include "tlsrelay.h"

/* silent_client_timeout_ms when the Module sets none: long enough for any client-first
 * protocol's first bytes on a slow link, short against a server-first one's greeting */
#define DEFAULT_SILENT_CLIENT_TIMEOUT_MS 1000u

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
	struct worker_link link; /* first: the worker frees a released connection through it */
	struct worker *worker;
	struct conn_env *env;
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
	/* While relaying: the events the socket is not watched for (WATCH_NO_*), see
	 * relay_rewatch(); 0 is the whole mask every socket is added with. */
	uint8_t client_unwatched, upstream_unwatched;

	/* Only IPv4 and IPv6 reach here: a sockaddr_in6 holds either, in a fifth of a
	 * sockaddr_storage. Idle connections are what a proxy holds most of. */
	union sockaddr_ip client_addr;
	socklen_t client_addr_len;
	union sockaddr_ip local_addr;
	socklen_t local_addr_len;
	char *sni; /* NULL when the client sent none */
	/* While the hello is incomplete: the stream length the parser waits for, and the
	 * SO_RCVLOWAT asked for it (0: not raised; set back to 1 before relaying). */
	uint32_t preread_need;
	int rcvlowat;
	uint64_t preread_end_usec; /* the preread timeout, when a silent-client one comes first */

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
	bool relay_broken; /* a side reset or failed: nothing more may be written to either */
	/* The client's handshake waits at its hello until the upstream is ready
	 * (tls_server_hold): a failure can still be told with an alert. */
	bool client_held;
	union {
		struct relay relay;         /* !use_tls_relay */
		struct tls_relay tls_relay; /* use_tls_relay */
	};
	enum conn_result result;
};
_Static_assert(offsetof(struct conn, link) == 0, "worker.h: the link comes first");

struct config *conn_env_config(struct conn_env *e) {
	pthread_mutex_lock(&e->config_lock);
	struct config *c = config_ref(e->config);
	pthread_mutex_unlock(&e->config_lock);
	return c;
}

struct config *conn_env_swap_config(struct conn_env *e, struct config *c) {
	pthread_mutex_lock(&e->config_lock);
	struct config *old = e->config;
	e->config = c;
	pthread_mutex_unlock(&e->config_lock);
	return old;
}

struct conn *conn_of(struct worker_link *l) {
	return l ? container_of(l, struct conn, link) : NULL;
}

/* Copy an address in if it is one we keep; otherwise leave it unknown (length 0). */
static socklen_t sockaddr_ip_set(union sockaddr_ip *dst, const void *src, socklen_t len) {
	if (!src || len > sizeof *dst || len < sizeof(struct sockaddr_in)) {
		memset(dst, 0, sizeof *dst);
		return 0;
	}
	memcpy(dst, src, len);
	return len;
}

static void conn_finish(struct conn *c, enum conn_result result);
static int conn_connect_next(struct conn *c);
static void conn_choose_and_connect(struct conn *c);

static uint64_t event_now(const struct conn *c) { return worker_now(c->worker); }

/* One deadline per connection serves every state: preread, handshake, connect and idle. */
static int set_deadline(struct conn *c, uint64_t usec) {
	return worker_set_deadline(c->worker, &c->link, usec);
}

static uint64_t bytes_in(const struct conn *c) {
	return c->use_tls_relay ? c->tls_relay.up.bytes : c->relay.up.bytes;
}

static uint64_t bytes_out(const struct conn *c) {
	return c->use_tls_relay ? c->tls_relay.down.bytes : c->relay.down.bytes;
}

/* In a process forked for one connection (per_connection_process): its pid, which its
 * access-log entry names; 0 in every other process. */
static pid_t relay_child_pid;

static void log_close(struct conn *c) {
	struct accesslog_entry e = {
	        .mapping = c->mapping ? c->mapping->name : NULL,
	        .client = &c->client_addr.sa,
	        .sni = c->sni,
	        .upstream = c->upstream_addr_len > 0 ? &c->upstream_addr.sa : NULL,
	        .service = c->mapping ? c->mapping->service : NULL,
	        .bytes_in = bytes_in(c),
	        .bytes_out = bytes_out(c),
	        .duration_ms = (now_usec() - c->start_usec) / 1000,
	        .result = c->result,
	        .pid = relay_child_pid,
	};
	accesslog_close(&e);
}

static void conn_free(struct conn *c) {
	struct worker *w = c->worker;

	if (c->fds_shared) {
		poller_remove(&w->poller, c->client_fd);
		poller_remove(&w->poller, c->upstream_fd);
	}
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
	atomic_fetch_sub(&c->env->n_active, 1);
	c->state = CONN_DEAD; /* a later event of this batch may still find it */
	worker_release(w, &c->link);
}

static void conn_finish(struct conn *c, enum conn_result result) {
	struct breaker_table *breakers = c->env->breakers;
	bool upstream_failed =
	        c->mapping && !c->connected && conn_result_is_upstream_failure(result);

	c->result = result;
	if (c->client_held) {
		/* nothing was answered yet: refuse the hello properly rather than reset */
		c->client_held = false;
		(void)tls_server_resume(c->client_ssl, NULL, SSL_AD_INTERNAL_ERROR);
	}
	if (c->state == CONN_RELAYING && c->use_tls_relay && !c->relay_broken)
		/* tcpmapd ends it itself (idle timeout, drain, stop): its TLS peers are told
		 * the end is deliberate, not a truncation (RFC 8446 6.1) */
		tls_relay_notify_close(&c->tls_relay);
	if (result == CONN_RESULT_SHED)
		worker_note_shed(c->worker, EMFILE, 1);
	if (upstream_failed) {
		char upstream[NETADDR_TEXT_MAX] = "-";
		if (c->upstream_addr_len > 0)
			netaddr_format(&c->upstream_addr.sa, upstream, sizeof upstream);
		struct log_field f[] = {
		        {"MAPPING", c->mapping->name},
		        {"UPSTREAM", c->upstream_addr_len > 0 ? upstream : c->mapping->service},
		        {"RESULT", conn_result_name(result)}};
		log_event(LOG_WARNING, TCPMAP_MID_UPSTREAM_FAILED, "upstream_failed", f,
		          ELEMENTSOF(f), "mapping \"%s\": upstream %s unreachable: %s",
		          c->mapping->name, c->mapping->service, conn_result_name(result));
	}
	if (c->slot) {
		if (!c->connected && conn_result_is_upstream_failure(result))
			breaker_table_connect_failed(breakers, c->slot);
		breaker_table_release(breakers, c->slot, bytes_in(c), bytes_out(c));
		c->slot = 0;
	}
	/* once, here: a connection handed to the next process leaves by conn_forget_moved */
	breaker_table_note_end(breakers,
	                       c->mapping ? c->mapping->breaker_entry : BREAKER_ENTRY_NONE, result,
	                       now_usec() - c->start_usec);
	log_close(c);
	conn_free(c);
}

/* How a failed conn_connect_next() ends the connection. */
static enum conn_result connect_next_result(int r) {
	return r == -EMFILE         ? CONN_RESULT_SHED
	       : r == -ECONNREFUSED ? CONN_RESULT_CONNECT_FAILED
	                            : CONN_RESULT_INTERNAL_ERROR;
}

/* A failed TLS handshake with the upstream, with the structured fields a connect failure
 * has (upstream_failed) and the reason; for a certificate that did not verify, why
 * (expired, another name, an unknown CA: X509_verify_cert_error_string). */
static void log_upstream_handshake_failure(struct conn *c, const char *reason) {
	char upstream[NETADDR_TEXT_MAX] = "-";
	const char *detail = c->upstream_ssl ? tls_verify_failure_detail(c->upstream_ssl) : NULL;

	if (c->upstream_addr_len > 0)
		netaddr_format(&c->upstream_addr.sa, upstream, sizeof upstream);
	struct log_field f[] = {
	        {"MAPPING", c->mapping->name},
	        {"UPSTREAM", c->upstream_addr_len > 0 ? upstream : c->mapping->service},
	        {"RESULT", conn_result_name(CONN_RESULT_HANDSHAKE_FAILED)},
	        {"REASON", reason},
	        {"VERIFY_ERROR", detail},
	};
	log_event(LOG_WARNING, TCPMAP_MID_UPSTREAM_FAILED, "upstream_failed", f, ELEMENTSOF(f),
	          "mapping \"%s\": TLS handshake with %s failed: %s%s%s", c->mapping->name,
	          c->mapping->service, reason, detail ? ": " : "", detail ? detail : "");
}

/* ---- relaying ---- */

/* Watch the cleartext relay's sockets only for what can move bytes now (relaywatch.h).
 * Changing a registered socket's mask fails only on a bug; should it, the connection ends
 * rather than wait for an event nobody asked for. `idle_out`: relaywatch_idle_out(). */
static void relay_rewatch(struct conn *c, int idle_out) {
	uint8_t client_want, upstream_want;

	relaywatch_wanted(&c->relay, idle_out, c->client_unwatched, c->upstream_unwatched,
	                  &client_want, &upstream_want);
	int r = relaywatch_set(&c->worker->poller, c->client_fd, &c->client_io,
	                       &c->client_unwatched, client_want);
	if (r >= 0)
		r = relaywatch_set(&c->worker->poller, c->upstream_fd, &c->upstream_io,
		                   &c->upstream_unwatched, upstream_want);
	if (r < 0) {
		log_warning_errno(r, "changing the events a relayed connection is watched for");
		c->relay_broken = true;
		conn_finish(c, CONN_RESULT_INTERNAL_ERROR);
	}
}

/* `idle_out`: see relay_rewatch(). */
static void conn_pump(struct conn *c, int mask, int idle_out) {
	if (mask == 0) {
		if (!c->use_tls_relay)
			relay_rewatch(c, idle_out);
		return;
	}
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
		c->relay_broken = true;
		if (c->use_tls_relay && c->tls_relay.upstream_refused) {
			/* a TLS 1.3 server judges our certificate after its handshake is done:
			 * its alert is the handshake's failure, not a relayed connection's end */
			log_upstream_handshake_failure(c, c->tls_relay.upstream_refused);
			conn_finish(c, CONN_RESULT_HANDSHAKE_FAILED);
			return;
		}
		conn_finish(c, CONN_RESULT_OK);
		return;
	}
	if (r & RELAY_PROGRESS)
		c->last_activity_usec = event_now(c);
	if (r & RELAY_DONE) {
		conn_finish(c, CONN_RESULT_OK);
		return;
	}
	if (!c->use_tls_relay) {
		relay_trim(&c->relay);
		relay_rewatch(c, idle_out);
	}
}

/* An event on a relaying socket. */
static void relay_event(struct conn *c, uint32_t revents, bool client_side) {
	if (c->use_tls_relay && (revents & EPOLL_READABLE))
		tls_relay_readable(&c->tls_relay, client_side,
		                   client_side ? c->client_hup : c->upstream_hup);
	int idle_out = c->use_tls_relay ? 0 : relaywatch_idle_out(&c->relay, revents, client_side);
	conn_pump(c, relaywatch_pump_mask(&c->relay, c->use_tls_relay, revents, client_side),
	          idle_out);
	/* an error the pump could not take ends it here, as one it took does */
	if (c->state == CONN_RELAYING &&
	    relaywatch_failed(client_side ? c->client_fd : c->upstream_fd, revents)) {
		c->relay_broken = true;
		conn_finish(c, CONN_RESULT_OK);
	}
}

static void conn_fork_relay(struct conn *c, int mask);

/* `mask`: the directions that may have bytes waiting (PUMP_*). */
static void start_relay(struct conn *c, int mask) {
	if (c->listener && c->listener->per_connection_process && !relay_child_pid) {
		conn_fork_relay(c, mask);
		return;
	}
	c->state = CONN_RELAYING;
	c->use_tls_relay = c->client_ssl || c->upstream_ssl;
	if (c->use_tls_relay) {
		tls_relay_init(&c->tls_relay, c->client_fd, c->client_ssl, c->upstream_fd,
		               c->upstream_ssl);
		/* a hangup seen during the handshake had its edge then */
		tls_relay_readable(&c->tls_relay, true, c->client_hup);
		tls_relay_readable(&c->tls_relay, false, c->upstream_hup);
	} else
		relay_init(&c->relay, c->client_fd, c->upstream_fd);
	c->last_activity_usec = event_now(c);

	int r = set_deadline(c, c->mapping->idle_timeout_ms > 0
	                                ? c->last_activity_usec +
	                                          (uint64_t)c->mapping->idle_timeout_ms * 1000
	                                : UINT64_MAX);
	if (r < 0) {
		conn_finish(c, CONN_RESULT_OK);
		return;
	}
	conn_pump(c, mask, 0);
}

/* ---- TLS handshakes ---- */

/* `r`: what the last step of the client's handshake said. */
static void client_handshake_went(struct conn *c, int r) {
	if (r == 0)
		return;
	if (r < 0) {
		log_debug("TLS handshake with client failed: %s", tls_handshake_failure_reason());
		conn_finish(c, CONN_RESULT_HANDSHAKE_FAILED);
		return;
	}
	if (r == TLS_HANDSHAKE_HELD) {
		/* at the hello: connect upstream first, answer the client after */
		c->client_held = true;
		conn_choose_and_connect(c);
		return;
	}
	if (c->connected)
		start_relay(c, PUMP_BOTH); /* TLS pumps both directions anyway */
	else
		conn_choose_and_connect(c);
}

static void continue_client_handshake(struct conn *c) {
	client_handshake_went(c, tls_handshake_step(c->client_ssl));
}

/* The upstream is ready (connected, and its handshake done when originating): answer the
 * client's hello now, with the upstream's ALPN choice. The rest of the client's handshake
 * has the preread timeout again. */
static void release_client_handshake(struct conn *c) {
	c->client_held = false;
	c->state = CONN_HANDSHAKE;
	if (set_deadline(c, event_now(c) + (uint64_t)c->config->module.preread_timeout_ms * 1000) <
	    0) {
		conn_finish(c, CONN_RESULT_HANDSHAKE_FAILED);
		return;
	}
	client_handshake_went(c, tls_server_resume(c->client_ssl, c->upstream_ssl, 0));
}

static void continue_upstream_handshake(struct conn *c) {
	int r = tls_handshake_step(c->upstream_ssl);
	if (r == 0)
		return;
	if (r < 0) {
		log_upstream_handshake_failure(c, tls_handshake_failure_reason());
		conn_finish(c, CONN_RESULT_HANDSHAKE_FAILED);
		return;
	}
	if (c->client_held) {
		release_client_handshake(c);
		return;
	}
	start_relay(c, PUMP_BOTH); /* TLS pumps both directions anyway */
}

/* ---- connecting ---- */

/* `revents`: the event on the upstream socket that showed the connect done. */
static void on_connected(struct conn *c, uint32_t revents) {
	struct breaker_table *breakers = c->env->breakers;

	c->connected = true;
	breaker_table_connected(breakers, c->slot);
	c->addrs = mfree(c->addrs);
	if (c->mapping->proxy_protocol != PROXY_PROTOCOL_NONE) {
		uint8_t header[PROXYPROTO_HEADER_MAX];
		int len = proxyproto_write(c->mapping->proxy_protocol, &c->client_addr.sa,
		                           &c->local_addr.sa, header, sizeof header);
		/* A fresh socket's send buffer always has room for one small header. */
		ssize_t n = len < 0 ? -1 : send(c->upstream_fd, header, (size_t)len, MSG_NOSIGNAL);
		if (n != len) {
			conn_finish(c, CONN_RESULT_CONNECT_FAILED);
			return;
		}
	}
	if (c->mapping->tls != TLS_ORIGINATE_NONE) {
		if (tls_client_session(c->config, c->mapping, c->upstream_fd, &c->upstream_ssl) <=
		            0 ||
		    (c->client_held &&
		     tls_client_offer_alpn(c->upstream_ssl, c->client_ssl, c->mapping) < 0)) {
			conn_finish(c, CONN_RESULT_HANDSHAKE_FAILED);
			return;
		}
		c->state = CONN_UPSTREAM_HANDSHAKE;
		continue_upstream_handshake(c);
		return;
	}
	if (c->client_held) {
		release_client_handshake(c);
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
	char addr[NETADDR_TEXT_MAX];
	netaddr_format(&c->upstream_addr.sa, addr, sizeof addr);
	log_debug("mapping \"%s\": connect to %s failed: %s", c->mapping->name, addr,
	          strerror(err));
	c->addr_index++;
	int r = conn_connect_next(c);
	if (r < 0)
		conn_finish(c, connect_next_result(r));
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
		relay_event(c, revents, false);
		break;
	default:
		break;
	}
}

/* Try addresses from addr_index on. Returns 0 while a connect is under way or done,
 * -ECONNREFUSED when no address is left, -EMFILE when this process is out of fds or memory,
 * or another -errno when the socket could not be watched. */
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
			if (worker_err_is_exhaustion(errno))
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
		conn_finish(c, CONN_RESULT_CONNECT_FAILED);
		return;
	}
	c->addrs = malloc(sizeof *c->addrs);
	if (!c->addrs) {
		conn_finish(c, CONN_RESULT_CONNECT_FAILED);
		return;
	}
	*c->addrs = *r;
	c->addr_index = 0;
	c->state = CONN_CONNECTING;
	int e = conn_connect_next(c);
	if (e < 0)
		conn_finish(c, connect_next_result(e));
}

/* ---- routing and admission ---- */

/* Pick the group's mapping by weight, skipping mappings whose breaker is open, take a
 * breaker slot and start resolving. */
static void conn_choose_and_connect(struct conn *c) {
	struct breaker_table *breakers = c->env->breakers;
	struct mapping_group *g = c->group;
	bool eligible[ROUTE_MAX_GROUP_MAPPINGS];
	bool any_open = false;

	for (size_t i = 0; i < g->n_mappings && i < ROUTE_MAX_GROUP_MAPPINGS; i++) {
		struct mapping *m = g->mappings[i];
		eligible[i] =
		        breaker_table_would_admit(breakers, m->breaker_entry, &m->circuit_breakers);
		any_open = any_open || !eligible[i];
	}
	int idx = breaker_table_pick(breakers, g, any_open ? eligible : NULL);
	if (idx < 0 && any_open)
		/* every breaker is open: the weighted choice says whose overflow this is */
		idx = breaker_table_pick(breakers, g, NULL);
	if (idx < 0) {
		conn_finish(c, CONN_RESULT_NO_WEIGHT);
		return;
	}
	c->mapping = g->mappings[idx];

	int r = breaker_table_admit(breakers, c->mapping->breaker_entry,
	                            &c->mapping->circuit_breakers, &c->slot);
	if (r < 0 && r != -EBUSY) {
		/* not a breaker limit: the table itself has no free slot */
		log_warning_errno(r, "mapping \"%s\": no breaker slot", c->mapping->name);
		c->slot = 0;
		conn_finish(c, CONN_RESULT_CONNECT_FAILED);
		return;
	}
	if (r < 0) {
		char client[NETADDR_TEXT_MAX];
		netaddr_format(&c->client_addr.sa, client, sizeof client);
		struct log_field f[] = {{"MAPPING", c->mapping->name},
		                        {"CLIENT", client},
		                        {"UPSTREAM", c->mapping->service},
		                        {"RESULT", "breaker_overflow"}};
		log_event(LOG_WARNING, TCPMAP_MID_OVERFLOW, "overflow", f, ELEMENTSOF(f),
		          "mapping \"%s\": circuit breaker open for %s, closing %s",
		          c->mapping->name, c->mapping->cluster, client);
		c->slot = 0;
		conn_finish(c, CONN_RESULT_BREAKER_OVERFLOW);
		return;
	}
	if (any_open && eligible[idx]) {
		struct log_field f[] = {{"MAPPING", c->mapping->name}};
		breaker_table_note_failover(breakers, g);
		log_event(LOG_NOTICE, TCPMAP_MID_FAILOVER, "failover", f, ELEMENTSOF(f),
		          "group %s: a circuit breaker is open, routing to \"%s\"", g->key,
		          c->mapping->name);
	}

	if (set_deadline(c, event_now(c) + (uint64_t)c->mapping->connect_timeout_ms * 1000) < 0) {
		conn_finish(c, CONN_RESULT_CONNECT_FAILED);
		return;
	}
	c->state = CONN_RESOLVING;
	r = resolve_start(c->worker->resolver, c->mapping->upstream_host, c->mapping->upstream_port,
	                  c->mapping->enable_ipv4, c->mapping->enable_ipv6, on_resolved, c,
	                  &c->resolve_token);
	if (r < 0)
		conn_finish(c, CONN_RESULT_CONNECT_FAILED);
}

/* Tell a client whose hello we refuse why, in a cleartext fatal alert (RFC 8446 6.2), and
 * take in the `hello_len` bytes it sent, so that the close is a FIN after the alert rather
 * than a reset that may overtake it. Best effort: the connection ends either way. */
static void refuse_hello(struct conn *c, uint8_t alert, size_t hello_len) {
	const uint8_t record[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02 /* fatal */, alert};
	static _Thread_local uint8_t sink[4096];
	ssize_t _unused_ n = send(c->client_fd, record, sizeof record, MSG_NOSIGNAL);

	while (hello_len > 0 &&
	       (n = recv(c->client_fd, sink, MIN(hello_len, sizeof sink), MSG_DONTWAIT)) > 0)
		hello_len -= (size_t)n;
}

/* The group for this connection; then terminate TLS if the group says so, or go on. */
static void conn_route(struct conn *c, const char *sni, enum conn_result not_found_result,
                       size_t hello_len) {
	static const int one = 1;
	struct mapping_group *g = route_select_group(c->listener, sni);

	if (c->rcvlowat > 1) {
		/* from here on every byte counts as it comes; if this fails, a relay would
		 * wait for bytes that never come, so the connection cannot go on */
		if (setsockopt(c->client_fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one) < 0) {
			conn_finish(c, CONN_RESULT_INTERNAL_ERROR);
			return;
		}
		c->rcvlowat = 0;
	}
	if (!g) {
		if (not_found_result == CONN_RESULT_UNKNOWN_SNI)
			/* fatal alert unrecognized_name(112): the doc's "handshake fails" */
			refuse_hello(c, SNI_ALERT_UNRECOGNIZED_NAME, hello_len);
		conn_finish(c, not_found_result);
		return;
	}
	c->group = g;

	int r = tls_server_session(c->config, g, c->client_fd, &c->client_ssl);
	if (r == 0) {
		conn_choose_and_connect(c);
		return;
	}
	if (r > 0)
		r = tls_server_hold(c->client_ssl);
	if (r < 0) {
		conn_finish(c, CONN_RESULT_HANDSHAKE_FAILED);
		return;
	}
	c->state = CONN_HANDSHAKE;
	continue_client_handshake(c);
}

/* ---- preread ---- */

/* Above this, SO_RCVLOWAT would grow the receive buffer and clamp the window for the
 * connection's whole life (tcp_set_rcvlowat); only hellos in tiny records need more. */
#define PREREAD_LOWAT_MAX (32 * 1024)

/* Sleep until `need` bytes are there: otherwise a hello dribbled one byte per segment
 * costs a peek and a parse of the whole prefix for every segment (issue 26, item 7). A
 * FIN or an error still wakes us, and the deadline still runs. */
static void preread_wait_for(struct conn *c, size_t need) {
	int lowat = (int)MIN(need, (size_t)PREREAD_LOWAT_MAX);

	c->preread_need = (uint32_t)need;
	/* Only on a change: setting it makes the kernel re-check readiness, and with the
	 * receive buffer under pressure (many tiny segments) that alone would wake us. */
	if (lowat == c->rcvlowat)
		return;
	/* best effort: without it we are only woken more often */
	if (setsockopt(c->client_fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat) == 0)
		c->rcvlowat = lowat;
}

/* The kernel still wakes a reader under receive-memory pressure whatever SO_RCVLOWAT says:
 * then counting the queued bytes (no copy) tells us whether a peek can say more. */
static bool preread_still_short(struct conn *c) {
	int queued = 0;

	if (c->preread_need == 0 || c->client_hup)
		return false;
	if (ioctl(c->client_fd, FIONREAD, &queued) < 0)
		return false;
	return (size_t)queued < c->preread_need;
}

static void conn_preread(struct conn *c) {
	/* per thread, not per connection: a slow hello holds no buffer while it waits */
	static _Thread_local uint8_t buf[SNI_MAX_PEEK];
	struct client_hello hello;

	if (preread_still_short(c))
		return;
	ssize_t n = recv(c->client_fd, buf, sizeof buf, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_finish(c, CONN_RESULT_NOT_TLS);
		return;
	}
	switch (sni_parse(buf, (size_t)n, &hello)) {
	case SNI_NEED_MORE:
		/* The client has shut its side: the rest of the hello can never come, and
		 * waiting for the preread timeout would only hold the connection. */
		if (c->client_hup) {
			conn_finish(c, CONN_RESULT_BAD_HELLO);
			return;
		}
		preread_wait_for(c, hello.need_bytes);
		return;
	case SNI_FOUND:
		c->sni = strdup(hello.sni);
		if (!c->sni) {
			conn_finish(c, CONN_RESULT_SHED);
			return;
		}
		conn_route(c, c->sni, CONN_RESULT_UNKNOWN_SNI, (size_t)n);
		return;
	case SNI_NONE:
		conn_route(c, NULL, CONN_RESULT_UNKNOWN_SNI, (size_t)n);
		return;
	case SNI_NOT_TLS:
		/* another protocol: the catch-all's, if there is one */
		conn_route(c, NULL, CONN_RESULT_NOT_TLS, 0);
		return;
	case SNI_INVALID:
		/* A hello, but one no TLS server would take: the client is told why, as a
		 * TLS server would tell it, and it never reaches the catch-all, which would
		 * only hand it to a server that fails it less clearly. */
		log_debug("malformed ClientHello, sending alert %d", (int)hello.alert);
		refuse_hello(c, (uint8_t)hello.alert, (size_t)n);
		conn_finish(c, CONN_RESULT_BAD_HELLO);
		return;
	}
}

/* The silent-client timeout ran out on a port with a catch-all: a client that has sent
 * nothing at all speaks a server-first protocol (SMTP, MySQL, SSH), so it goes to the
 * catch-all, as nginx's ssl_preread hands it to the default after its timeout. Returns
 * false when the preread timeout itself has come. */
static bool preread_silent_client(struct conn *c, uint64_t usec) {
	uint8_t byte;

	if (!c->preread_end_usec || usec >= c->preread_end_usec)
		return false;
	if (recv(c->client_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) != -1 || errno != EAGAIN) {
		/* something came (or the client is gone): the hello has until the end */
		if (set_deadline(c, c->preread_end_usec) < 0)
			return false;
		c->preread_end_usec = 0;
		return true;
	}
	/* a TLS-terminating catch-all still has only the preread time for its handshake */
	if (set_deadline(c, c->preread_end_usec) < 0)
		return false;
	c->preread_end_usec = 0;
	conn_route(c, NULL, CONN_RESULT_PREREAD_TIMEOUT, 0);
	return true;
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
		relay_event(c, revents, true);
		break;
	default:
		break; /* bytes wait in the socket until the relay starts; or it is dead */
	}
}

static void conn_on_deadline(struct conn *c, uint64_t usec) {
	switch (c->state) {
	case CONN_PREREAD:
		if (!preread_silent_client(c, usec))
			conn_finish(c, CONN_RESULT_PREREAD_TIMEOUT);
		break;
	case CONN_HANDSHAKE:
		conn_finish(c, CONN_RESULT_HANDSHAKE_FAILED);
		break;
	case CONN_RESOLVING:
	case CONN_CONNECTING:
	case CONN_UPSTREAM_HANDSHAKE:
		conn_finish(c, CONN_RESULT_CONNECT_TIMEOUT);
		break;
	case CONN_DEAD:
		break;
	case CONN_RELAYING: {
		/* activity only records a time; the deadline moves lazily, here */
		uint64_t idle = (uint64_t)c->mapping->idle_timeout_ms * 1000;
		if (usec >= c->last_activity_usec + idle ||
		    set_deadline(c, c->last_activity_usec + idle) < 0)
			conn_finish(c, CONN_RESULT_IDLE_TIMEOUT);
		break;
	}
	}
}

static void on_deadline(struct worker_link *l, uint64_t usec) {
	conn_on_deadline(conn_of(l), usec);
}

/* ---- a process of its own (per_connection_process) ----
 *
 * The dispatcher peeks, routes, admits, connects and runs any TLS handshake in its worker
 * thread, as for every connection; then, where the relay would start, it forks. The child
 * keeps this connection's two sockets and nothing of any other connection, takes over the
 * breaker slot, and relays in a loop of its own until the connection ends; the parent
 * forgets the connection (no slot release, no log: both are the child's). Forking after
 * the connect keeps resolving and connect failures, the commonest refusals, in the
 * dispatcher, at no process cost; the child so never needs the resolver thread, which
 * fork() does not copy. */

/* The child's loop ends once its connection has: after a batch (socket events) or any
 * other dispatch (the idle deadline, SIGTERM). */
static void child_check_done(struct worker *w) {
	if (w->n_conns == 0) {
		(void)sd_event_exit(w->event, 0);
		poller_event_changed(&w->poller);
	}
}

static int on_child_post(sd_event_source *src, void *userdata) {
	(void)src;
	child_check_done(userdata);
	return 0;
}

static int on_child_drain_end(sd_event_source *src, uint64_t usec, void *userdata) {
	(void)src, (void)usec;
	conn_close_all(userdata, CONN_RESULT_DRAIN_TIMEOUT);
	return 0;
}

/* systemd signals every process of the unit's cgroup on stop and restart. The connection
 * cannot move to the next process (its isolation would not survive the fd store): it ends
 * at once (`shutdown`), or, when the Module sets drain_timeout_ms, is given that long. */
static int on_child_sigterm(sd_event_source *src, const struct signalfd_siginfo *si,
                            void *userdata) {
	struct worker *w = userdata;
	struct conn *c = conn_of(w->conns);
	uint32_t drain_ms = c && c->config->module.drain_timeout_configured
	                            ? c->config->module.drain_timeout_ms
	                            : 0;
	(void)si;

	(void)sd_event_source_set_enabled(src, SD_EVENT_OFF); /* a second one changes nothing */
	if (drain_ms == 0 ||
	    sd_event_add_time_relative(w->event, NULL, CLOCK_MONOTONIC, (uint64_t)drain_ms * 1000,
	                               1000, on_child_drain_end, w) < 0)
		conn_close_all(w, CONN_RESULT_SHUTDOWN);
	return 0;
}

/* Runs in the child only, and never returns: the parent's stack below it (its worker's
 * batch) must never run here. Everything it builds is new; of the parent's state it uses
 * only this connection, the config it holds a reference to and the breaker table (shared
 * memory, whose locks are process-shared and robust). */
static _Noreturn void relay_child_run(struct conn *c, int mask, int fork_error) {
	struct worker *w = calloc(1, sizeof *w);
	int r;

	relay_child_pid = getpid();
	log_own_journal_socket(); /* for log_flush() at the end: this relay's entries only */
	relay_pool_forget();
	if (!w || fork_error < 0) {
		/* cannot be isolated: end it here, with its slot and its log line */
		conn_finish(c, CONN_RESULT_INTERNAL_ERROR);
		_exit(1);
	}
	if (breaker_table_adopt(c->env->breakers, c->slot) < 0)
		/* reaped as a dead owner's (it cannot be: the parent lives) or the table is
		 * gone; the release at the end then finds nothing, and the count is right */
		log_debug("relay process: breaker slot %llu not adopted",
		          (unsigned long long)c->slot);
	r = worker_init(w, 0);
	if (r >= 0)
		r = worker_attach(w, NULL);
	if (r >= 0)
		r = sd_event_add_signal(w->event, NULL, SIGTERM, on_child_sigterm, w);
	if (r >= 0)
		r = sd_event_add_signal(w->event, NULL, SIGINT, on_child_sigterm, w);
	if (r >= 0)
		r = sd_event_add_post(w->event, NULL, on_child_post, w);
	c->worker = w;
	worker_add(w, &c->link, on_deadline);
	w->on_batch_end = child_check_done;
	if (r >= 0)
		r = poller_add(&w->poller, c->client_fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
		               &c->client_io);
	if (r >= 0)
		r = poller_add(&w->poller, c->upstream_fd,
		               EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &c->upstream_io);
	if (r < 0) {
		log_warning_errno(r, "relay process: setting up its event loop");
		conn_finish(c, CONN_RESULT_INTERNAL_ERROR);
		_exit(1);
	}
	start_relay(c, mask);
	if (w->n_conns > 0)
		r = worker_run(w);
	log_flush(); /* the close entry, with its unit, before tcpmapd reaps this process */
	/* no exit(): the parent's atexit handlers (OpenSSL's among them) are not ours to run */
	_exit(r < 0 ? 1 : 0);
}

/* Hand the connection to the relay spawner: 0 when a relay of its has it now. Only a
 * spliced one: a TLS session lives in this process's memory, and cannot travel. */
static int conn_send_to_spawner(struct conn *c, int mask) {
	struct relay_order o = {
	        .magic = RELAY_ORDER_MAGIC,
	        .mask = (uint32_t)mask,
	        .slot = c->slot,
	        .breaker_entry = c->mapping->breaker_entry,
	        .idle_timeout_ms = c->mapping->idle_timeout_ms,
	        .drain_timeout_ms = c->config->module.drain_timeout_configured
	                                    ? c->config->module.drain_timeout_ms
	                                    : 0,
	        .start_usec = c->start_usec,
	};

	if (!c->env->spawner || c->client_ssl || c->upstream_ssl)
		return -ENOTCONN;
	if (strlen(c->mapping->name) >= sizeof o.mapping ||
	    strlen(c->mapping->service) >= sizeof o.service ||
	    (c->sni && strlen(c->sni) >= sizeof o.sni))
		return -ENAMETOOLONG; /* never a log line with a truncated name: fork it here */
	strcpy(o.mapping, c->mapping->name);
	strcpy(o.service, c->mapping->service);
	strcpy(o.sni, c->sni ? c->sni : "");
	memcpy(&o.client_addr, &c->client_addr, c->client_addr_len);
	o.client_addr_len = c->client_addr_len;
	memcpy(&o.upstream_addr, &c->upstream_addr, c->upstream_addr_len);
	o.upstream_addr_len = c->upstream_addr_len;
	return relayspawn_send(c->env->spawner, c->env->breakers, &o, c->client_fd, c->upstream_fd);
}

static void conn_fork_relay(struct conn *c, int mask) {
	struct worker *w = c->worker;
	int keep[4] = {c->client_fd, c->upstream_fd};
	size_t n_keep = 2 + breaker_table_fds(c->env->breakers, keep + 2);
	pid_t pid;

	/* before the fork: an epoll watches files, not fds, so the child's copies would
	 * otherwise still wake this worker */
	poller_remove(&w->poller, c->client_fd);
	poller_remove(&w->poller, c->upstream_fd);
	if (conn_send_to_spawner(c, mask) == 0) {
		/* the spawner's relay owns it now: its slot, its log line, its fds */
		c->slot = 0;
		conn_free(c);
		return;
	}
	/* No spawner (TLS, or it is down): fork this process, as the spawner would. */
	int r = relayfork_fork(keep, n_keep, &pid);
	if (pid == 0)
		relay_child_run(c, mask, r);
	if (r < 0) {
		/* no process to be had (EAGAIN: a pid or memory limit): refuse, as for a lack
		 * of fds, rather than relay it without the isolation it was configured for */
		log_warning_errno(r, "mapping \"%s\": cannot fork a relay process",
		                  c->mapping->name);
		conn_finish(c, CONN_RESULT_SHED);
		return;
	}
	/* The child owns the connection now: its slot, its log line, its fds. */
	c->slot = 0;
	conn_free(c);
}

/* The one setup of a connection, accepted or adopted: `client_fd` and `upstream_fd` are
 * its from here on (-EBADF for none). NULL when out of memory; the fds are then not taken. */
static struct conn *conn_new(struct conn_env *env, struct worker *w, int client_fd, int upstream_fd,
                             bool fds_shared) {
	struct conn *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->worker = w;
	c->env = env;
	c->client_io.dispatch = on_client_io;
	c->upstream_io.dispatch = on_upstream_io;
	c->fds_shared = fds_shared;
	c->client_fd = client_fd;
	c->upstream_fd = upstream_fd;
	relay_init(&c->relay, -EBADF, -EBADF);
	c->start_usec = now_usec();
	c->result = CONN_RESULT_OK;
	c->config = conn_env_config(env);
	worker_add(w, &c->link, on_deadline);
	atomic_fetch_add(&env->n_active, 1);
	atomic_fetch_add(&env->n_total, 1);
	return c;
}

int conn_start(struct conn_env *env, struct worker *w, int fd, const struct sockaddr *local,
               socklen_t local_len, const struct sockaddr *peer, socklen_t peer_len,
               unsigned flags) {
	static const int one = 1;
	int r;

	struct conn *c = conn_new(env, w, fd, -EBADF, !(flags & CONN_START_PRIVATE));
	if (!c) {
		safe_close(fd);
		return -ENOMEM;
	}
	c->local_addr_len = sockaddr_ip_set(&c->local_addr, local, local_len);
	if (peer)
		c->client_addr_len = sockaddr_ip_set(&c->client_addr, peer, peer_len);
	else {
		c->client_addr_len = sizeof c->client_addr;
		if (getpeername(fd, &c->client_addr.sa, &c->client_addr_len) < 0)
			c->client_addr_len = 0;
	}

	c->listener = config_find_listener(c->config, local, local_len);
	if (!c->listener) {
		char addr[NETADDR_TEXT_MAX];
		netaddr_format(&c->local_addr.sa, addr, sizeof addr);
		log_warning("no mapping listens on %s, closing the connection", addr);
		conn_finish(c, CONN_RESULT_NO_LISTENER);
		return -ENOENT;
	}
	if (!(flags & CONN_START_NODELAY))
		/* best effort: without it only small writes wait a little longer */
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (log_get_max_level() >= LOG_DEBUG) {
		/* one line per accept doubles the log volume: only when asked for */
		char client[NETADDR_TEXT_MAX], local_s[NETADDR_TEXT_MAX];
		netaddr_format(&c->client_addr.sa, client, sizeof client);
		netaddr_format(&c->local_addr.sa, local_s, sizeof local_s);
		struct log_field f[] = {{"CLIENT", client}, {"LOCAL", local_s}};
		log_event(LOG_DEBUG, TCPMAP_MID_ACCEPT, "accept", f, ELEMENTSOF(f),
		          "accepted %s on %s", client, local_s);
	}

	r = poller_add(&w->poller, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &c->client_io);
	if (r < 0) {
		conn_finish(c, CONN_RESULT_INTERNAL_ERROR);
		return r;
	}

	if (c->listener->needs_sni) {
		const struct module_config *mod = &c->config->module;
		uint64_t silent_ms = mod->silent_client_timeout_ms
		                             ? mod->silent_client_timeout_ms
		                             : DEFAULT_SILENT_CLIENT_TIMEOUT_MS;
		uint64_t preread_end = event_now(c) + (uint64_t)mod->preread_timeout_ms * 1000;

		c->state = CONN_PREREAD;
		/* the same bound covers the peek and a terminating handshake; with a catch-all,
		 * a client still silent after silent_client_timeout_ms goes to it first */
		if (c->listener->catch_all && silent_ms < mod->preread_timeout_ms) {
			c->preread_end_usec = preread_end;
			r = set_deadline(c, event_now(c) + silent_ms * 1000);
		} else
			r = set_deadline(c, preread_end);
		if (r < 0) {
			conn_finish(c, CONN_RESULT_PREREAD_TIMEOUT);
			return r;
		}
		/* no peek now: a ClientHello already here was reported when the socket was
		 * added, and one still to come will be, so a peek now could only say EAGAIN */
		return 0;
	}
	conn_route(c, NULL, CONN_RESULT_NO_ROUTE, 0);
	return 0;
}

void conn_close_all(struct worker *w, enum conn_result result) {
	while (w->conns)
		conn_finish(conn_of(w->conns), result);
}

/* ---- hand-over across restarts: what the connection says of itself ---- */

/* Accepted, not relaying yet, and nothing of the client's consumed: the hello is only
 * peeked at and no TLS is terminated, so the next process can start it over from the client
 * socket alone (HANDOVER_UNSTARTED). Without this a restart would close every connection
 * caught between its accept and its first relayed byte. */
static bool conn_unstarted(const struct conn *c) {
	return !c->client_ssl && (c->state == CONN_PREREAD || c->state == CONN_RESOLVING ||
	                          c->state == CONN_CONNECTING);
}

int conn_export(struct conn *c, struct handover_record *rec, int fds[_HANDOVER_FD_MAX]) {
	static atomic_uint_fast64_t counter;
	struct relay_state rs;
	bool unstarted = conn_unstarted(c);

	if (!unstarted && (c->state != CONN_RELAYING || c->use_tls_relay))
		return -EBUSY;

	*rec = (struct handover_record){.magic = HANDOVER_MAGIC, .version = HANDOVER_VERSION};
	snprintf(rec->id, sizeof rec->id, "%d-%llu", (int)getpid(),
	         (unsigned long long)atomic_fetch_add(&counter, 1));
	snprintf(rec->mapping, sizeof rec->mapping, "%s", c->mapping ? c->mapping->name : "");
	rec->started_realtime_ms =
	        (uint64_t)time(NULL) * 1000 - (now_usec() - c->start_usec) / 1000;
	memcpy(&rec->client_addr, &c->client_addr, c->client_addr_len);
	rec->client_addr_len = c->client_addr_len;
	memcpy(&rec->local_addr, &c->local_addr, c->local_addr_len);
	rec->local_addr_len = c->local_addr_len;
	if (unstarted) {
		rec->flags = HANDOVER_UNSTARTED;
		/* a hello waited for raised it; the next process peeks afresh from 1 */
		if (c->rcvlowat > 1)
			(void)setsockopt(c->client_fd, SOL_SOCKET, SO_RCVLOWAT, &(int){1},
			                 sizeof(int));
		for (int k = 0; k < _HANDOVER_FD_MAX; k++)
			fds[k] = -EBADF;
		fds[HANDOVER_FD_CLIENT] = c->client_fd;
		return 0;
	}
	snprintf(rec->sni, sizeof rec->sni, "%s", c->sni ? c->sni : "");
	rec->slot = c->slot;
	relay_export(&c->relay, &rs);
	handover_record_set_relay(rec, &rs);
	if (c->mapping->idle_timeout_ms > 0) {
		uint64_t deadline =
		        c->last_activity_usec + (uint64_t)c->mapping->idle_timeout_ms * 1000;
		uint64_t now = event_now(c);
		rec->idle_remaining_ms = deadline > now ? (deadline - now) / 1000 : 0;
	} else
		rec->idle_remaining_ms = UINT64_MAX;
	memcpy(&rec->upstream_addr, &c->upstream_addr, c->upstream_addr_len);
	rec->upstream_addr_len = c->upstream_addr_len;

	fds[HANDOVER_FD_CLIENT] = c->client_fd;
	fds[HANDOVER_FD_UPSTREAM] = c->upstream_fd;
	fds[HANDOVER_FD_UP_READ] = rs.up.pipe_r;
	fds[HANDOVER_FD_UP_WRITE] = rs.up.pipe_w;
	fds[HANDOVER_FD_DOWN_READ] = rs.down.pipe_r;
	fds[HANDOVER_FD_DOWN_WRITE] = rs.down.pipe_w;
	return 0;
}

void conn_forget_moved(struct conn *c) {
	/* The slot now belongs to the next process; our copies of the fds just close (a pipe
	 * with bytes in it is closed, never pooled), and their files live on in the store,
	 * whose copies keep them registered with our epoll unless removed. An unstarted
	 * connection's slot, if it was admitted already, is given back: the next process
	 * admits it anew, and its upstream connect, if one was under way, is abandoned. */
	if (c->slot && conn_unstarted(c))
		breaker_table_release(c->env->breakers, c->slot, 0, 0);
	c->slot = 0;
	c->fds_shared = true;
	conn_free(c);
}

static struct mapping *find_mapping(const struct config *cfg, const char *name) {
	for (size_t i = 0; i < cfg->n_mappings; i++)
		if (streq(cfg->mappings[i]->name, name))
			return cfg->mappings[i];
	return NULL;
}

/* One direction's pipe as the record describes it: conn_export() stores a pipe only while
 * it holds bytes, so a pipe must come with both ends of one pipe, with in_pipe > 0, and
 * hold exactly `in_pipe` bytes. A pipe holding more than the record says would be pooled as empty
 * and carry this connection's bytes into the next one. */
static const char *adopt_check_pipe(int rd, int wr, uint64_t in_pipe) {
	struct stat rst, wst;
	int queued;

	if (rd < 0 && wr < 0)
		return in_pipe > 0 ? "a pipe with bytes in it is missing" : NULL;
	if (rd < 0 || wr < 0)
		return "a pipe came with one end only";
	if (in_pipe == 0)
		return "a pipe came with a record that says it is empty";
	if (fstat(rd, &rst) < 0 || fstat(wr, &wst) < 0 || !S_ISFIFO(rst.st_mode) ||
	    !S_ISFIFO(wst.st_mode) || rst.st_dev != wst.st_dev || rst.st_ino != wst.st_ino)
		return "a pipe's fds are not the two ends of one pipe";
	if ((fcntl(rd, F_GETFL) & O_ACCMODE) != O_RDONLY ||
	    (fcntl(wr, F_GETFL) & O_ACCMODE) != O_WRONLY)
		return "a pipe's ends are swapped";
	if (ioctl(rd, FIONREAD, &queued) < 0 || queued < 0 || (uint64_t)queued != in_pipe)
		return "a pipe does not hold the bytes its record says";
	return NULL;
}

static const char *adopt_check_socket(int fd) {
	struct stat st;
	int type;
	socklen_t len = sizeof type;

	if (fd < 0)
		return "a socket is missing";
	if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode) ||
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM)
		return "a connection fd is not a stream socket";
	return NULL;
}

const char *conn_adopt_check(const struct handover_record *r, const int fds[_HANDOVER_FD_MAX]) {
	const char *why = adopt_check_socket(fds[HANDOVER_FD_CLIENT]);
	if (why || (r->flags & HANDOVER_UNSTARTED))
		return why; /* an unstarted record holds the client's socket alone */
	if (!why)
		why = adopt_check_socket(fds[HANDOVER_FD_UPSTREAM]);
	if (!why)
		why = adopt_check_pipe(fds[HANDOVER_FD_UP_READ], fds[HANDOVER_FD_UP_WRITE],
		                       r->in_pipe_up);
	if (!why)
		why = adopt_check_pipe(fds[HANDOVER_FD_DOWN_READ], fds[HANDOVER_FD_DOWN_WRITE],
		                       r->in_pipe_down);
	return why;
}

/* An unstarted connection (HANDOVER_UNSTARTED) starts over as if just accepted. */
static int conn_adopt_unstarted(struct conn_env *env, struct worker *w,
                                const struct handover_record *r, int fds[_HANDOVER_FD_MAX]) {
	int client = TAKE_FD(fds[HANDOVER_FD_CLIENT]);
	for (int k = 0; k < _HANDOVER_FD_MAX; k++)
		fds[k] = safe_close(fds[k]);
	const char *why = client < 0 ? "its socket is missing" : adopt_check_socket(client);
	if (why) {
		log_warning("connection c%s cannot be adopted: %s, closing it", r->id, why);
		safe_close(client);
		return -EBADMSG;
	}
	char addr[NETADDR_TEXT_MAX];
	netaddr_format((const struct sockaddr *)&r->client_addr, addr, sizeof addr);
	struct log_field f[] = {{"MAPPING", r->mapping[0] ? r->mapping : "-"},
	                        {"CLIENT", addr},
	                        {"CONNECTION", r->id}};
	log_event(LOG_INFO, TCPMAP_MID_ADOPT, "adopt", f, ELEMENTSOF(f),
	          "%s: adopted c%s from the previous process before it started; starting it over",
	          addr, r->id);
	/* not CONN_START_PRIVATE: the fd store may still hold the socket */
	return conn_start(env, w, client, (const struct sockaddr *)&r->local_addr,
	                  r->local_addr_len,
	                  r->client_addr_len ? (const struct sockaddr *)&r->client_addr : NULL,
	                  r->client_addr_len, 0);
}

int conn_adopt(struct conn_env *env, struct worker *w, const struct handover_record *r,
               int fds[_HANDOVER_FD_MAX]) {
	struct relay_state rs;
	int e;

	if (r->flags & HANDOVER_UNSTARTED)
		return conn_adopt_unstarted(env, w, r, fds);

	/* The store is written only by our own service's main process, but everything read
	 * back is checked before use: what the record says must be what the fds hold. */
	const char *inconsistent = conn_adopt_check(r, fds);
	if (inconsistent) {
		/* Pipes are closed with whatever they hold, never pooled. Two real sockets still
		 * go through conn_finish below, so the client's close is logged (adopt_failed). */
		for (int k = HANDOVER_FD_UP_READ; k <= HANDOVER_FD_DOWN_WRITE; k++)
			fds[k] = safe_close(fds[k]);
		if (adopt_check_socket(fds[HANDOVER_FD_CLIENT]) ||
		    adopt_check_socket(fds[HANDOVER_FD_UPSTREAM])) {
			log_warning("connection c%s (mapping \"%s\") cannot be adopted: %s, "
			            "closing it",
			            r->id, r->mapping, inconsistent);
			fds[HANDOVER_FD_CLIENT] = safe_close(fds[HANDOVER_FD_CLIENT]);
			fds[HANDOVER_FD_UPSTREAM] = safe_close(fds[HANDOVER_FD_UPSTREAM]);
			return -EBADMSG;
		}
	}

	struct conn *c = conn_new(env, w, fds[HANDOVER_FD_CLIENT], fds[HANDOVER_FD_UPSTREAM],
	                          true /* the fd store may still hold them */);
	if (!c) {
		for (int k = 0; k < _HANDOVER_FD_MAX; k++)
			fds[k] = safe_close(fds[k]);
		return -ENOMEM;
	}
	fds[HANDOVER_FD_CLIENT] = fds[HANDOVER_FD_UPSTREAM] = -EBADF;
	handover_record_get_relay(r, fds, &rs); /* takes the pipe ends */
	relay_import(&c->relay, c->client_fd, c->upstream_fd, &rs);
	uint64_t now_real = (uint64_t)time(NULL) * 1000;
	if (r->started_realtime_ms < now_real)
		c->start_usec -=
		        MIN(now_real - r->started_realtime_ms, c->start_usec / 1000) * 1000;
	c->client_addr_len = sockaddr_ip_set(&c->client_addr, &r->client_addr, r->client_addr_len);
	c->local_addr_len = sockaddr_ip_set(&c->local_addr, &r->local_addr, r->local_addr_len);
	c->upstream_addr_len =
	        sockaddr_ip_set(&c->upstream_addr, &r->upstream_addr, r->upstream_addr_len);
	/* out of memory, the connection goes on without its SNI in the log */
	c->sni = r->sni[0] ? strdup(r->sni) : NULL;
	c->connected = true;
	c->mapping = find_mapping(c->config, r->mapping);

	if (inconsistent || c->client_fd < 0 || c->upstream_fd < 0 || !c->mapping ||
	    (rs.up.in_pipe > 0 && (c->relay.up.pipe_r < 0 || c->relay.up.pipe_w < 0)) ||
	    (rs.down.in_pipe > 0 && (c->relay.down.pipe_r < 0 || c->relay.down.pipe_w < 0))) {
		log_warning("connection c%s (mapping \"%s\") cannot be adopted: %s, closing it",
		            r->id, r->mapping,
		            inconsistent  ? inconsistent
		            : !c->mapping ? "the mapping is gone from the config"
		                          : "fds are missing");
		/* its old slot is the dead process's: the reaper frees it */
		conn_finish(c, CONN_RESULT_ADOPT_FAILED);
		return -ENOENT;
	}
	c->group = c->mapping->group;
	c->listener = c->group ? c->group->listener : NULL;

	/* Re-own the slot; if a reaper already freed it, count the connection anew (no limit
	 * applies: it was admitted once already). */
	c->slot = r->slot;
	if (r->slot == 0 || breaker_table_adopt(env->breakers, r->slot) < 0) {
		c->slot = 0;
		if (breaker_table_admit(env->breakers, c->mapping->breaker_entry, NULL, &c->slot) >=
		    0)
			breaker_table_connected(env->breakers, c->slot);
	}

	c->state = CONN_RELAYING;
	e = poller_add(&w->poller, c->client_fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
	               &c->client_io);
	if (e >= 0)
		e = poller_add(&w->poller, c->upstream_fd,
		               EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &c->upstream_io);
	c->last_activity_usec = event_now(c);
	if (e >= 0 && r->idle_remaining_ms != UINT64_MAX && c->mapping->idle_timeout_ms > 0) {
		/* keep the old deadline: last activity as if it had been idle since then */
		uint64_t idle = (uint64_t)c->mapping->idle_timeout_ms * 1000;
		uint64_t remaining = MIN(r->idle_remaining_ms * 1000, idle);
		c->last_activity_usec = c->last_activity_usec + remaining - idle;
		e = set_deadline(c, c->last_activity_usec + idle);
	}
	if (e < 0) {
		conn_finish(c, CONN_RESULT_ADOPT_FAILED);
		return log_warning_errno(e, "adopting connection c%s", r->id);
	}

	char client[NETADDR_TEXT_MAX];
	netaddr_format(&c->client_addr.sa, client, sizeof client);
	struct log_field f[] = {
	        {"MAPPING", c->mapping->name}, {"CLIENT", client}, {"CONNECTION", r->id}};
	log_event(LOG_INFO, TCPMAP_MID_ADOPT, "adopt", f, ELEMENTSOF(f),
	          "%s %s: adopted c%s from the previous process", c->mapping->name, client, r->id);
	return 0;
}

/* After adoption the pump runs once the worker's loop starts (edge-triggered sources
 * report the sockets' current readiness when added). */
