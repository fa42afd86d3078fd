/* poller.h — one epoll instance per worker for the sockets of its connections, together
 * with the worker's sd-event loop in one of two ways: as a single source of that loop (a
 * loop shared with the main thread), or driving it (a worker thread's own loop), with the
 * loop's own epoll fd as one entry here and poller_run() as the thread's loop. Driving saves
 * the second epoll_wait() that every wake-up costs when one epoll sits inside the other.
 *
 * Why not one sd_event_source per socket: each costs about 300 bytes of heap, a getpid()
 * on every sd-event call that touches it and an EPOLL_CTL_DEL when it goes, and a proxy
 * holds two sockets per connection. Here a socket costs an epoll registration and nothing
 * else, and a socket this process alone holds needs no removal: closing it is enough.
 *
 * Events are dispatched in batches. A handler may free what a later event of the same
 * batch points at, so the owner of a handle must keep its memory valid until the batch
 * ends (poller_in_batch() says whether one is running; on_batch_end runs after each). */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <systemd/sd-event.h>

struct poller_handle {
	void (*dispatch)(struct poller_handle *h, uint32_t revents);
};

struct poller {
	int fd;
	sd_event *event;
	sd_event_source *source; /* not driving: our entry in `event` */
	bool drives;
	bool event_changed; /* driving: a handler touched `event`, which must look again */
	struct poller_handle event_entry; /* driving: `event`'s fd in ours */
	bool in_batch;
	uint64_t batches;    /* numbers the current (or last) batch */
	uint64_t batch_usec; /* CLOCK_MONOTONIC when the current batch started */
	void (*on_batch_end)(void *userdata);
	void *userdata;
};

/* Create the epoll instance and hook it into `event`, or, with `drive`, hook `event` into
 * it. Returns 0 or -errno. */
int poller_init(struct poller *p, sd_event *event, bool drive, void (*on_batch_end)(void *userdata),
                void *userdata);
/* The loop of a driving poller: batches of socket events, and `event`'s own dispatches when
 * its fd is ready or a handler said it changed it. Returns `event`'s exit code once it has
 * finished, or -errno. */
int poller_run(struct poller *p);
/* For a handler that changed a source of the driven loop (a timer's time, a new source, an
 * exit request): sd-event arms its timers only when it runs, so it must run before the next
 * wait. Costs nothing when not driving. */
static inline void poller_event_changed(struct poller *p) { p->event_changed = true; }
/* Unhook and close; every socket still registered is simply forgotten. */
void poller_done(struct poller *p);

/* Watch `fd` for `events` (EPOLL* flags, edge-triggered if EPOLLET is among them). */
int poller_add(struct poller *p, int fd, uint32_t events, struct poller_handle *h);
/* Change the events `fd` is watched for. Edge-triggered: an event the new mask adds that
 * is already pending is reported, so nothing is lost by having left it out for a while.
 * Inline: relaywatch.c calls it, and the relay helper (bin/tcpmap-relay.c), linked with
 * libc alone, must not pull in the rest of the poller and sd-event with it. */
static inline int poller_modify(struct poller *p, int fd, uint32_t events,
                                struct poller_handle *h) {
	struct epoll_event ev = {.events = events, .data.ptr = h};
	return epoll_ctl(p->fd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}
/* Stop watching `fd`. Needed only when the file stays open elsewhere after we close our
 * descriptor (a copy sent to the fd store, a socket inherited as stdin and stdout). */
void poller_remove(struct poller *p, int fd);

static inline bool poller_in_batch(const struct poller *p) { return p->in_batch; }
