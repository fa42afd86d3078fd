/* worker.h — one worker's event loop and what all connections on it share: the poller for
 * their sockets, one timer over all their deadlines, the resolver queue, the list of live
 * connections with a graveyard that keeps a closed one's memory until the poller's batch
 * ends, and the count of connections shed for lack of fds or memory.
 *
 * It knows nothing of what a connection does and never calls up into conn.c or server.c:
 * a connection is a struct worker_link to it, and the owner of the connections is called
 * back through the function it passed to worker_add() when a deadline passes. */
#pragma once

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "deadlines.h"
#include "poller.h"
#include "resolve.h"
#include "util.h"

/* What the worker keeps of a connection. It must be the first member of a block from
 * malloc(): the worker frees a released connection with free(). */
struct worker_link {
	struct worker_link *prev, *next;
	struct deadline_item deadline; /* in the worker's heap: one per connection */
};

/* Called from the worker's timer for a link whose deadline has passed (it is already out
 * of the heap); `usec` is the time the timer fired for. */
typedef void (*worker_deadline_fn)(struct worker_link *l, uint64_t usec);

struct worker {
	unsigned index;
	sd_event *event;
	struct poller poller; /* every connection's sockets */
	struct resolve_queue *resolver;
	int resolver_fd;
	sd_event_source *resolver_source;
	struct deadline_heap deadlines;  /* every connection's next deadline */
	sd_event_source *deadline_timer; /* armed at the earliest of them */
	uint64_t timer_armed_at;
	worker_deadline_fn on_deadline;
	struct worker_link *conns;       /* doubly linked list of live connections */
	struct worker_link *graveyard;   /* released during a poller batch, freed after it */
	atomic_uint_fast64_t n_conns;    /* read by the main thread too */
	atomic_uint_fast64_t conns_peak; /* since this loop was built */
	uint64_t last_shed_log_usec;
	uint64_t n_shed;
	/* Set by the owner of the worker: runs after each poller batch, once the graveyard is
	 * empty (a draining server checks there whether it is done). */
	void (*on_batch_end)(struct worker *w);
	/* The watchdog's view of this loop: with heartbeat_interval_usec set before
	 * worker_attach(), a timer on the worker's own loop stores the time in heartbeat_usec
	 * at that interval, so a loop that stops turning stops it. Read by the main thread;
	 * WORKER_HEARTBEAT_NONE while no loop is attached (it is then not expected to beat). */
	uint64_t heartbeat_interval_usec;
	atomic_uint_fast64_t heartbeat_usec;
	sd_event_source *heartbeat_timer;
};

#define WORKER_HEARTBEAT_NONE UINT64_MAX

/* The worker's lasting parts: its resolver queue. Returns 0 or -errno; worker_done() is
 * safe after a failure. */
int worker_init(struct worker *w, unsigned index);
void worker_done(struct worker *w);
/* Give the worker an event loop: `event` shared (the inetd model, the main thread's loop),
 * or NULL for a loop of its own, driven by its poller and run with worker_run(). Adds the
 * deadline timer and the resolver's source. Returns 0 or -errno. */
int worker_attach(struct worker *w, sd_event *event);
/* How long the worker's loop has not beaten at `now` (0 when it is not expected to). */
uint64_t worker_heartbeat_age(const struct worker *w, uint64_t now);
/* Drop the event loop and every source on it (a worker rebuilds its loop after a load
 * peak, so that sd-event's queues shrink back). Connections must be gone. */
void worker_detach(struct worker *w);
/* A worker thread's loop; returns the loop's exit code or -errno. */
static inline int worker_run(struct worker *w) { return poller_run(&w->poller); }

/* Count a new connection in, with no deadline yet. `on_deadline` is called for its
 * deadline (every connection of a worker has the same owner). */
void worker_add(struct worker *w, struct worker_link *l, worker_deadline_fn on_deadline);
/* Count a connection out and free its memory: at once, or when the current poller batch
 * ends, since a later event of that batch may still point at it. */
void worker_release(struct worker *w, struct worker_link *l);
/* Set (or move) the connection's one deadline; DEADLINE_NONE clears it. Returns 0 or
 * -ENOMEM (the connection then has no deadline). */
int worker_set_deadline(struct worker *w, struct worker_link *l, uint64_t usec);

/* Call back every connection whose deadline is at or before `usec`, as the worker's timer
 * does when it fires (outside any poller batch). The timer is its only caller in tcpmapd;
 * the connection fuzz harness calls it to pass time without waiting for it. */
void worker_run_deadlines(struct worker *w, uint64_t usec);

/* Inside a batch, the time it started: one clock read serves every event in it. (Inline:
 * every socket event asks.) */
static inline uint64_t worker_now(const struct worker *w) {
	return poller_in_batch(&w->poller) ? w->poller.batch_usec : now_usec();
}

/* Count connections closed unserved for lack of fds or memory, and log it (rate-limited). */
void worker_note_shed(struct worker *w, int err, unsigned closed);
/* The errors that mean this process is out of fds or memory: not a peer's fault, and the
 * answer to them is shedding. */
static inline bool worker_err_is_exhaustion(int err) {
	return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}
