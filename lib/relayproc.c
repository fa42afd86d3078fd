/* relayproc.c — one spawned relay process's loop; see relayproc.h. Must never return to
 * its caller, never run an exit handler (the spawner's image's are not its own), and never
 * hold any fd but its connection's two sockets, its epoll, its signalfd and a pipe pair. */
#include "relayproc.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "accesslog.h"
#include "log.h"
#include "proclive.h"
#include "relay.h"
#include "relayfork.h"
#include "relaywatch.h"

/* The epoll data of each source. */
enum { SOURCE_CLIENT, SOURCE_UPSTREAM, SOURCE_SIGNAL };

struct relayproc {
	struct breaker_table *breakers;
	const struct relay_order *order;
	int epoll_fd, signal_fd;
	struct relay relay;
	bool client_hup, upstream_hup;
	uint8_t client_unwatched, upstream_unwatched; /* WATCH_NO_* */
	uint64_t last_activity_usec;
	uint64_t drain_end_usec; /* 0: no stop asked for */
	bool ended;
	enum conn_result result;
};

static void relayproc_end(struct relayproc *p, enum conn_result result) {
	if (!p->ended) {
		p->ended = true;
		p->result = result;
	}
}

/* What conn.c's conn_finish does for a relaying connection, in the same order: the slot
 * first (a limit frees as soon as it can), then the table's note, then the log line. */
static void relayproc_finish(struct relayproc *p) {
	const struct relay_order *o = p->order;
	uint64_t in = p->relay.up.bytes, out = p->relay.down.bytes;
	uint64_t duration_usec = now_usec() - o->start_usec, starttime;

	if (o->slot)
		breaker_table_release(p->breakers, o->slot, in, out);
	breaker_table_note_end(p->breakers, o->breaker_entry, p->result, duration_usec);
	struct accesslog_entry e = {
	        .mapping = o->mapping,
	        .client = o->client_addr_len > 0 ? (const struct sockaddr *)&o->client_addr : NULL,
	        .sni = o->sni[0] ? o->sni : NULL,
	        .upstream = o->upstream_addr_len > 0 ? (const struct sockaddr *)&o->upstream_addr
	                                             : NULL,
	        .service = o->service,
	        .bytes_in = in,
	        .bytes_out = out,
	        .duration_ms = duration_usec / 1000,
	        .result = p->result,
	        .pid = proclive_self(&starttime), /* cached by the standby: no system call */
	};
	accesslog_close(&e);
}

static int watch(struct relayproc *p, int op, int fd, uint8_t unwatched, uint32_t source) {
	struct epoll_event ev = {.events = relaywatch_events(unwatched), .data.u32 = source};
	return epoll_ctl(p->epoll_fd, op, fd, &ev) < 0 ? -errno : 0;
}

/* Watch each socket only for what can move bytes now (relaywatch.h), as conn.c does. */
static void rewatch(struct relayproc *p, int idle_out) {
	uint8_t client_want, upstream_want;
	int r = 0;

	relaywatch_wanted(&p->relay, idle_out, p->client_unwatched, p->upstream_unwatched,
	                  &client_want, &upstream_want);
	if (client_want != p->client_unwatched) {
		r = watch(p, EPOLL_CTL_MOD, p->relay.up.from, client_want, SOURCE_CLIENT);
		p->client_unwatched = client_want;
	}
	if (r >= 0 && upstream_want != p->upstream_unwatched) {
		r = watch(p, EPOLL_CTL_MOD, p->relay.down.from, upstream_want, SOURCE_UPSTREAM);
		p->upstream_unwatched = upstream_want;
	}
	if (r < 0) {
		log_warning_errno(r, "changing the events a relayed connection is watched for");
		relayproc_end(p, CONN_RESULT_INTERNAL_ERROR);
	}
}

/* `mask`: the directions that may move (PUMP_*); `idle_out`: relaywatch_idle_out(). */
static void pump(struct relayproc *p, int mask, int idle_out) {
	if (mask == 0) {
		rewatch(p, idle_out);
		return;
	}
	p->relay.up.short_read_drains = !p->client_hup;
	p->relay.down.short_read_drains = !p->upstream_hup;
	int r = relay_pump_some(&p->relay, mask & PUMP_UP, mask & PUMP_DOWN);
	if (r < 0 || (r & RELAY_DONE)) {
		/* a reset on either side, or both directions done: every delivered byte is
		 * counted, and nothing more can be delivered */
		relayproc_end(p, CONN_RESULT_OK);
		return;
	}
	if (r & RELAY_PROGRESS)
		p->last_activity_usec = now_usec();
	relay_trim(&p->relay);
	rewatch(p, idle_out);
}

static void socket_event(struct relayproc *p, uint32_t revents, bool client_side) {
	if (revents & EPOLL_HANGUP)
		*(client_side ? &p->client_hup : &p->upstream_hup) = true;
	int idle_out = relaywatch_idle_out(&p->relay, revents, client_side);
	pump(p, relaywatch_pump_mask(&p->relay, false, revents, client_side), idle_out);
	/* an error the pump could not take ends it here, as in conn.c's relay_event() */
	if (relaywatch_failed(client_side ? p->relay.up.from : p->relay.down.from, revents))
		relayproc_end(p, CONN_RESULT_OK);
}

/* systemd signals every process of the unit's cgroup on a stop: the connection ends at
 * once, or is given the Module's drain_timeout_ms. A second signal changes nothing. */
static void signal_event(struct relayproc *p) {
	struct signalfd_siginfo si;
	bool stop = false;

	while (read(p->signal_fd, &si, sizeof si) == sizeof si)
		stop = true;
	if (!stop || p->drain_end_usec)
		return;
	if (p->order->drain_timeout_ms == 0) {
		relayproc_end(p, CONN_RESULT_SHUTDOWN);
		return;
	}
	p->drain_end_usec = now_usec() + (uint64_t)p->order->drain_timeout_ms * 1000;
}

/* Milliseconds until the first deadline (rounded up, so it is never woken early for
 * nothing), -1 for none; or ends the connection when one has come. */
static int next_timeout(struct relayproc *p) {
	uint64_t now = now_usec(), deadline = UINT64_MAX;

	if (p->order->idle_timeout_ms > 0)
		deadline = p->last_activity_usec + (uint64_t)p->order->idle_timeout_ms * 1000;
	if (p->drain_end_usec && p->drain_end_usec < deadline)
		deadline = p->drain_end_usec;
	if (deadline == UINT64_MAX)
		return -1;
	if (now >= deadline) {
		relayproc_end(p, p->drain_end_usec && now >= p->drain_end_usec
		                         ? CONN_RESULT_DRAIN_TIMEOUT
		                         : CONN_RESULT_IDLE_TIMEOUT);
		return 0;
	}
	return (int)MIN((deadline - now + 999) / 1000, (uint64_t)INT32_MAX);
}

static int setup(struct relayproc *p, int client_fd, int upstream_fd) {
	sigset_t mask;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	p->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	p->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (p->signal_fd < 0 || p->epoll_fd < 0)
		return -errno;
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = SOURCE_SIGNAL};
	if (epoll_ctl(p->epoll_fd, EPOLL_CTL_ADD, p->signal_fd, &ev) < 0)
		return -errno;
	/* edge-triggered, for everything at first, as conn.c adds them */
	int r = watch(p, EPOLL_CTL_ADD, client_fd, 0, SOURCE_CLIENT);
	if (r >= 0)
		r = watch(p, EPOLL_CTL_ADD, upstream_fd, 0, SOURCE_UPSTREAM);
	return r;
}

_Noreturn void relayproc_run(struct breaker_table *t, const struct relay_order *o, int client_fd,
                             int upstream_fd) {
	struct relayproc p = {.breakers = t,
	                      .order = o,
	                      .epoll_fd = -EBADF,
	                      .signal_fd = -EBADF,
	                      .result = CONN_RESULT_OK};

	/* first: the test hook's fd report is to see the connection's fds alone */
	relayfork_mark();
	log_own_journal_socket(); /* for log_flush() at the end: this relay's entries only */
	if (o->slot && breaker_table_adopt(t, o->slot) < 0)
		/* reaped meanwhile (the table is gone?): the release at the end then finds
		 * nothing, and the count is right */
		log_debug("relay process: breaker slot %llu not adopted",
		          (unsigned long long)o->slot);
	relay_init(&p.relay, client_fd, upstream_fd);
	p.last_activity_usec = now_usec();
	int r = setup(&p, client_fd, upstream_fd);
	if (r < 0) {
		log_warning_errno(r, "relay process: setting up its event loop");
		relayproc_end(&p, CONN_RESULT_INTERNAL_ERROR);
	} else
		pump(&p, (int)o->mask, 0);

	while (!p.ended) {
		struct epoll_event ev[3];
		int timeout = next_timeout(&p);
		if (p.ended)
			break;
		int n = epoll_wait(p.epoll_fd, ev, ELEMENTSOF(ev), timeout);
		if (n < 0 && errno != EINTR) {
			log_warning_errno(errno, "relay process: epoll_wait");
			relayproc_end(&p, CONN_RESULT_INTERNAL_ERROR);
		}
		for (int i = 0; i < n && !p.ended; i++) {
			if (ev[i].data.u32 == SOURCE_SIGNAL)
				signal_event(&p);
			else
				socket_event(&p, ev[i].events, ev[i].data.u32 == SOURCE_CLIENT);
		}
	}
	relayproc_finish(&p);
	log_flush(); /* the close entry, with its unit, before the spawner reaps this process */
	/* the sockets' close sends the last FIN (relay.h); the rest goes with the process */
	_exit(0);
}
