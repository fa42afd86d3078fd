/* server-internal.h — what server.c and conn.c share. Not a public API. */
#pragma once

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <systemd/sd-event.h>

#include "breaker.h"
#include "config.h"
#include "deadlines.h"
#include "handover.h"
#include "netaddr.h"
#include "poller.h"
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
	bool nodelay;  /* TCP_NODELAY set here, so accepted sockets have it already */
};

struct server {
	struct server_options opts;
	const char *runtime_dir;

	pthread_mutex_t config_lock;
	struct config *config; /* current; take with server_config_get() */

	struct breaker_table *breakers;

	struct listen_fd *fds;
	size_t n_fds;
	struct stored_fd *stored; /* from the fd store, until adopted */
	size_t n_stored;

	struct worker *workers;
	unsigned n_workers;

	atomic_uint_fast64_t n_active; /* live connections, for STATUS= */
	atomic_uint_fast64_t n_total;
	uint64_t active_peak; /* since the last malloc_trim; main thread only */
	atomic_bool stopping;
	bool handover; /* on stop, move spliced connections to systemd's fd store */

	sd_event *event; /* main thread's loop: signals, notify, reaping */
};

struct accept_watch {
	struct poller_handle io;
	struct worker *worker;
	size_t index; /* in server.fds */
	bool on;      /* registered with the poller */
};

struct worker {
	struct server *server;
	unsigned index;
	pthread_t thread;
	sd_event *event;
	struct accept_watch *accepts;  /* one per listen fd */
	sd_event_source *accept_retry; /* re-enables accepting after EMFILE */
	int wake_fd;                   /* eventfd: the main thread asks us to stop */
	sd_event_source *wake_source;
	struct resolve_queue *resolver;
	sd_event_source *resolver_source;
	struct poller poller;            /* every connection's sockets */
	struct conn *graveyard;          /* closed during a poller batch, freed after it */
	struct conn *conns;              /* doubly linked list of live connections */
	atomic_uint_fast64_t n_conns;    /* read by the main thread too */
	atomic_uint_fast64_t conns_peak; /* since this loop was built */
	atomic_bool rebuild_requested;
	int resolver_fd;
	uint64_t last_shed_log_usec;
	uint64_t n_shed;
	int reserve_fd;                  /* spent to accept-and-close when out of fds */
	struct deadline_heap deadlines;  /* every connection's next deadline */
	sd_event_source *deadline_timer; /* armed at the earliest of them */
	uint64_t timer_armed_at;
	sd_event_source *drain_timer; /* stopping: connections that could not move */
	sd_event_source *drain_check;
};

/* Count connections closed unserved for lack of fds or memory, and log it (rate-limited). */
void worker_note_shed(struct worker *w, int err, unsigned closed);

/* A new reference to the current config. */
struct config *server_config_get(struct server *s);

enum {
	CONN_START_NODELAY = 1 << 0, /* the socket has TCP_NODELAY from its listener already */
	CONN_START_PRIVATE = 1 << 1, /* from accept(): no other descriptor shares its file */
};
/* Take over a connected client socket (non-blocking). `local` is its local address, `peer`
 * the client's as accept() gave it (NULL: ask the socket); `flags` from CONN_START_*.
 * Returns 0, or -errno after closing fd. */
int conn_start(struct worker *w, int fd, const struct sockaddr *local, socklen_t local_len,
               const struct sockaddr *peer, socklen_t peer_len, unsigned flags);
/* Free the connections closed during the poller batch that just ended (on_batch_end). */
void conn_free_graveyard(void *userdata);
/* The worker's one timer for all its connections' deadlines. */
int conn_timer_init(struct worker *w);
void conn_timer_done(struct worker *w);
/* Close every connection of the worker with `result` (shutdown). */
void conn_close_all(struct worker *w, const char *result);

/* Hand a spliced, relaying connection to systemd's fd store and forget it: its fds are
 * pushed with FDNAMEs from handover.h and its record appended to state_fd. Returns 0, or
 * -EBUSY when the connection cannot move (TLS, or not relaying yet): it stays. */
int conn_handover(struct conn *c, int state_fd);
/* Move every connection of the worker that can move; returns how many did. */
unsigned conn_handover_all(struct worker *w, int state_fd);
/* Take over a connection from a previous process. `fds` holds -EBADF where absent; this
 * takes ownership of every fd in it, adopted or not. Returns 0 or -errno (logged). */
int conn_adopt(struct worker *w, const struct handover_record *r, int fds[_HANDOVER_FD_MAX]);
