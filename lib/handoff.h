/* handoff.h — moving spliced connections through systemd's fd store across a restart: on
 * stop, each connection's fds go to the store under names from handover.h and its record
 * into a state memfd stored beside them; on start, the records are read back and each
 * connection adopted by a worker, and the store is emptied of every name we were given.
 *
 * This is the only file that speaks FDSTORE=1 / FDSTOREREMOVE=1. The record encoding is
 * handover.c's (pure); what a connection says of itself is conn.c's (conn_export,
 * conn_adopt). It never decides whether to hand over: server.c does. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "conn.h"
#include "worker.h"

/* Whether a stop can move connections to the fd store: only under systemd with a store
 * (FileDescriptorStoreMax= > 0, announced by the unit as TCPMAP_FDSTORE or by systemd >= 254
 * as FDSTORE). */
bool handoff_available(void);

/* Store one fd in systemd's fd store under `name`. Returns 0 or -errno (-ENOTCONN: no
 * notify socket). */
int handoff_store_fd(const char *name, int fd);

/* Move every connection of the worker that can move (spliced and relaying) to the fd
 * store, with their records in one state memfd. Returns how many moved, or -errno when the
 * state memfd could not be made (then none did). */
int handoff_worker(struct worker *w);

/* The fds the previous process left in the store, as systemd passed them back to us; or
 * (handoff_worker_direct) the copies a re-executing process passes to its new image. */
struct handoff_stored;
struct handoff_store {
	struct handoff_stored *fds;
	size_t n;
	/* they came from an old image, not systemd's store: nothing to remove there (which
	 * would cost a message per fd while nobody accepts) */
	bool not_in_fdstore;
};

/* As handoff_worker(), but into `to` (under `lock`, shared by the workers): duplicates of
 * the fds and of the state memfd, for server.c to pass to a new image it starts itself. The
 * connections are forgotten here as with the store; `to` keeps their files open. */
int handoff_worker_direct(struct worker *w, struct handoff_store *to, pthread_mutex_t *lock);
/* Walk `s`: the i-th fd (still owned by `s`) and its name. */
size_t handoff_store_size(const struct handoff_store *s);
int handoff_store_get(const struct handoff_store *s, size_t i, const char **ret_name);
/* Close every fd of `s` and empty it (the new image has its own copies now). */
void handoff_store_clear(struct handoff_store *s);

/* Is this LISTEN_FDNAMES name one that handoff_worker() gives (a state memfd or one of a
 * connection's fds)? */
bool handoff_is_stored_name(const char *name);
/* Keep `fd` named `name` until handoff_adopt_all(); on failure the caller still owns fd. */
int handoff_store_add(struct handoff_store *s, int fd, const char *name);
/* Adopt every stored connection, each on the worker `next_worker` gives, then close what
 * no record claimed and remove every name from the store: adopted or not, nothing stays
 * behind to grow with restarts. Empties `s`. */
void handoff_adopt_all(struct handoff_store *s, struct conn_env *env,
                       struct worker *(*next_worker)(void *userdata), void *userdata);
