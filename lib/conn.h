/* conn.h — one client connection's life on a worker: peek, route, admit, resolve, connect,
 * relay, close; and how it ends (enum conn_result, one name each in the access log).
 *
 * A connection gets what it needs from the process through struct conn_env and from its
 * worker (worker.h) the loop, the deadline timer and the resolver. It never calls server.c
 * and never touches systemd's fd store: handoff.c moves connections across restarts, with
 * conn_export() and conn_adopt(). */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "breaker.h"
#include "config.h"
#include "handover.h"
#include "relayspawn.h"
#include "result.h"
#include "worker.h"

/* What the process gives its connections, shared by every worker. */
struct conn_env {
	struct breaker_table *breakers;
	pthread_mutex_t config_lock;
	struct config *config;         /* current; take it with conn_env_config() */
	atomic_uint_fast64_t n_active; /* live connections, for STATUS= */
	atomic_uint_fast64_t n_total;  /* connections since start */
	/* per_connection_process relays come from here (NULL, or the spawner is down: tcpmapd
	 * forks them itself) */
	struct relayspawn *spawner;
};

/* A new reference to the current config (any thread). */
struct config *conn_env_config(struct conn_env *e);
/* Make `c` current; returns the previous one, for the caller to unref. */
struct config *conn_env_swap_config(struct conn_env *e, struct config *c);

struct conn;

enum {
	CONN_START_NODELAY = 1 << 0, /* the socket has TCP_NODELAY from its listener already */
	CONN_START_PRIVATE = 1 << 1, /* from accept(): no other descriptor shares its file */
};
/* Take over a connected client socket (non-blocking). `local` is its local address, `peer`
 * the client's as accept() gave it (NULL: ask the socket); `flags` from CONN_START_*.
 * Returns 0, or -errno after closing fd. */
int conn_start(struct conn_env *env, struct worker *w, int fd, const struct sockaddr *local,
               socklen_t local_len, const struct sockaddr *peer, socklen_t peer_len,
               unsigned flags);
/* Close every connection of the worker with `result` (shutdown). */
void conn_close_all(struct worker *w, enum conn_result result);

/* The worker's live connections, for walking them (the next one must be taken before the
 * current one may go). NULL at the end. */
struct conn *conn_of(struct worker_link *l);

/* Hand-over across restarts (handoff.c drives it). */
/* Describe a connection that can move: its record and the fds to store (-EBADF where none).
 * The fds stay the connection's. Returns 0, or -EBUSY when it cannot move (TLS, or not
 * relaying yet). */
int conn_export(struct conn *c, struct handover_record *rec, int fds[_HANDOVER_FD_MAX]);
/* The connection was stored: forget it without closing it for the client (the stored
 * copies keep its files open) and without releasing its breaker slot (the next process
 * owns it now). */
void conn_forget_moved(struct conn *c);
/* Do the fds match what the record says of them: two stream sockets, and for each
 * direction either no pipe (and no byte in one) or both ends of one pipe holding exactly
 * the record's in_pipe bytes? For an unstarted record (HANDOVER_UNSTARTED), the client's
 * stream socket alone: the rest is never used, only closed. NULL when they match, else
 * why not (for the log). */
const char *conn_adopt_check(const struct handover_record *r, const int fds[_HANDOVER_FD_MAX]);
/* Take over a connection from a previous process (refused, every fd closed, when
 * conn_adopt_check() finds it inconsistent). `fds` holds -EBADF where absent; this
 * takes ownership of every fd in it, adopted or not. Returns 0 or -errno (logged). */
int conn_adopt(struct conn_env *env, struct worker *w, const struct handover_record *r,
               int fds[_HANDOVER_FD_MAX]);
