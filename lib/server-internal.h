/* server-internal.h — what server.c and conn.c share. Not a public API. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <systemd/sd-event.h>

#include "breaker.h"
#include "config.h"
#include "relay.h"
#include "resolve.h"
#include "server.h"
#include "sni.h"

struct conn;

struct listen_fd {
	int fd;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	bool wildcard; /* bound to 0.0.0.0 or ::: the accepted socket's address selects */
};

struct server {
	struct server_options opts;
	const char *runtime_dir;

	pthread_mutex_t config_lock;
	struct config *config; /* current; take with server_config_get() */

	struct breaker_table *breakers;

	struct listen_fd *fds;
	size_t n_fds;

	struct worker *workers;
	unsigned n_workers;

	atomic_uint_fast64_t n_active; /* live connections, for STATUS= */
	atomic_uint_fast64_t n_total;
	atomic_bool stopping;

	sd_event *event; /* main thread's loop: signals, notify, reaping */
};

struct worker {
	struct server *server;
	unsigned index;
	pthread_t thread;
	sd_event *event;
	sd_event_source **accept_sources; /* one per listen fd */
	sd_event_source *accept_retry;    /* re-enables accepting after EMFILE */
	int wake_fd;                      /* eventfd: the main thread asks us to stop */
	sd_event_source *wake_source;
	struct resolve_queue *resolver;
	sd_event_source *resolver_source;
	struct conn *conns; /* doubly linked list of live connections */
	uint64_t n_conns;
	uint64_t last_shed_log_usec;
};

/* A new reference to the current config. */
struct config *server_config_get(struct server *s);

/* Take over a connected client socket (non-blocking). `local` is its local address.
 * Returns 0, or -errno after closing fd. */
int conn_start(struct worker *w, int fd, const struct sockaddr *local, socklen_t local_len);
/* Close every connection of the worker (shutdown). */
void conn_close_all(struct worker *w);
