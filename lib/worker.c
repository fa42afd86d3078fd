/* worker.c — a worker's event loop, its connections' one deadline timer, graveyard and shed
 * count; see worker.h. Must never call up into conn.c or server.c except through the
 * function pointers their owners set, and never free a connection during a poller batch. */
#include "worker.h"

#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* Make sure the worker's one timer fires no later than its earliest deadline. It is moved
 * only to fire sooner: a deadline that went away or moved later leaves it where it is, and
 * it then fires early once and re-arms, instead of re-arming on every connection. */
static void arm_timer(struct worker *w) {
	struct deadline_item *first = deadline_peek(&w->deadlines);
	uint64_t when = first ? first->when : DEADLINE_NONE;

	if (when == DEADLINE_NONE || w->timer_armed_at <= when)
		return;
	int r = sd_event_source_set_time(w->deadline_timer, when);
	if (r >= 0)
		r = sd_event_source_set_enabled(w->deadline_timer, SD_EVENT_ONESHOT);
	if (r < 0) {
		/* left as it was: the next change of any deadline tries again */
		log_debug("worker %u: arming the deadline timer: %s", w->index, strerror(-r));
		return;
	}
	w->timer_armed_at = when;
	poller_event_changed(&w->poller);
}

int worker_set_deadline(struct worker *w, struct worker_link *l, uint64_t usec) {
	int r = deadline_set(&w->deadlines, &l->deadline, usec);
	arm_timer(w);
	return r;
}

void worker_run_deadlines(struct worker *w, uint64_t usec) {
	struct deadline_item *first;

	/* bounded: each round removes the item or moves it past `usec` */
	while ((first = deadline_peek(&w->deadlines)) && first->when <= usec) {
		struct worker_link *l = container_of(first, struct worker_link, deadline);
		deadline_remove(&w->deadlines, first);
		w->on_deadline(l, usec);
	}
	arm_timer(w);
}

static int on_timer(sd_event_source *src, uint64_t usec, void *userdata) {
	struct worker *w = userdata;
	(void)src;

	w->timer_armed_at = DEADLINE_NONE; /* a oneshot source is off once it fired */
	worker_run_deadlines(w, usec);
	return 0;
}

void worker_add(struct worker *w, struct worker_link *l, worker_deadline_fn on_deadline) {
	w->on_deadline = on_deadline;
	l->deadline.when = DEADLINE_NONE;
	l->prev = NULL;
	l->next = w->conns;
	if (w->conns)
		w->conns->prev = l;
	w->conns = l;
	if (++w->n_conns > w->conns_peak)
		w->conns_peak = w->n_conns;
}

void worker_release(struct worker *w, struct worker_link *l) {
	deadline_remove(&w->deadlines, &l->deadline);
	arm_timer(w);
	if (l->prev)
		l->prev->next = l->next;
	else
		w->conns = l->next;
	if (l->next)
		l->next->prev = l->prev;
	w->n_conns--;
	if (poller_in_batch(&w->poller)) {
		/* a later event of this batch may still point here */
		l->next = w->graveyard;
		w->graveyard = l;
		return;
	}
	free(l);
}

static void on_batch_end(void *userdata) {
	struct worker *w = userdata;
	while (w->graveyard) {
		struct worker_link *l = w->graveyard;
		w->graveyard = l->next;
		free(l);
	}
	if (w->on_batch_end)
		w->on_batch_end(w);
}

void worker_note_shed(struct worker *w, int err, unsigned closed) {
	uint64_t now = now_usec();

	w->n_shed += closed;
	if (now - w->last_shed_log_usec > 1000000) {
		w->last_shed_log_usec = now;
		char n[24], shed_n[24];
		snprintf(n, sizeof n, "%llu", (unsigned long long)w->n_conns);
		snprintf(shed_n, sizeof shed_n, "%llu", (unsigned long long)w->n_shed);
		struct log_field f[] = {{"CONNECTIONS", n}, {"SHED", shed_n}};
		log_event(LOG_WARNING, TCPMAP_MID_SHED, "shed", f, ELEMENTSOF(f),
		          "out of resources: %s; %s connections open, %s closed unserved so far",
		          strerror(err), n, shed_n);
	}
}

static int on_resolver(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
	struct worker *w = userdata;
	(void)src, (void)fd, (void)revents;
	resolve_queue_dispatch(w->resolver);
	return 0;
}

/* TEST ONLY (tests/bats/systemd-watchdog.bats): with TCPMAP_TEST_STALL_WORKER naming a
 * file, the heartbeat looks for it; when it holds this worker's index, "idle" (and the
 * worker has no connection) or "busy" (and it has one), the worker removes the file (so
 * that one worker, once, takes it, and the restarted service does not) and stops making
 * progress for good, as a worker stuck in a bug would. Documented in tcpmapd(8) as a test
 * hook; it can only make this process fail. */
static void test_stall_hook(struct worker *w) {
	const char *path = getenv("TCPMAP_TEST_STALL_WORKER"); /* nothing here calls setenv() */
	char want[16] = "";

	if (!path || !*path)
		return;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	ssize_t n = read(fd, want, sizeof want - 1);
	close(fd);
	if (n <= 0)
		return;
	want[strcspn(want, " \n")] = 0;
	char index[16];
	snprintf(index, sizeof index, "%u", w->index);
	bool busy = atomic_load(&w->n_conns) > 0;
	if (!streq(want, index) && !(streq(want, "idle") && !busy) &&
	    !(streq(want, "busy") && busy))
		return;
	if (unlink(path) < 0)
		return; /* another worker took it */
	log_warning("test hook TCPMAP_TEST_STALL_WORKER: worker %u (%s connections) stops here",
	            w->index, busy ? "with" : "without");
	for (;;)
		(void)sleep(3600);
}

static int on_heartbeat(sd_event_source *src, uint64_t usec, void *userdata) {
	struct worker *w = userdata;

	atomic_store(&w->heartbeat_usec, now_usec());
	test_stall_hook(w);
	int r = sd_event_source_set_time(src, usec + w->heartbeat_interval_usec);
	if (r >= 0)
		r = sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
	poller_event_changed(&w->poller);
	return r;
}

uint64_t worker_heartbeat_age(const struct worker *w, uint64_t now) {
	uint64_t beat = atomic_load(&w->heartbeat_usec);
	return beat == WORKER_HEARTBEAT_NONE || beat >= now ? 0 : now - beat;
}

int worker_init(struct worker *w, unsigned index) {
	w->index = index;
	w->poller.fd = -EBADF; /* worker_detach() may run before worker_attach() did */
	w->resolver_fd = -EBADF;
	atomic_store(&w->heartbeat_usec, WORKER_HEARTBEAT_NONE);
	return resolve_queue_new(&w->resolver, &w->resolver_fd);
}

void worker_done(struct worker *w) {
	resolve_queue_free(w->resolver);
	w->resolver = NULL;
	deadline_heap_free(&w->deadlines);
}

int worker_attach(struct worker *w, sd_event *event) {
	int r;

	if (event)
		w->event = sd_event_ref(event);
	else {
		r = sd_event_new(&w->event);
		if (r < 0)
			return r;
	}
	w->timer_armed_at = DEADLINE_NONE;
	r = sd_event_add_time(w->event, &w->deadline_timer, CLOCK_MONOTONIC, UINT64_MAX, 1000,
	                      on_timer, w);
	if (r < 0)
		return r;
	/* a thread's own loop is driven by the poller; the main thread's has more to do */
	r = poller_init(&w->poller, w->event, !event, on_batch_end, w);
	if (r < 0)
		return r;
	r = sd_event_add_io(w->event, &w->resolver_source, w->resolver_fd, EPOLLIN, on_resolver, w);
	if (r < 0)
		return r;
	if (w->heartbeat_interval_usec > 0) {
		r = sd_event_add_time_relative(w->event, &w->heartbeat_timer, CLOCK_MONOTONIC,
		                               w->heartbeat_interval_usec,
		                               w->heartbeat_interval_usec / 10, on_heartbeat, w);
		if (r < 0)
			return r;
		atomic_store(&w->heartbeat_usec, now_usec());
	}
	w->conns_peak = 0;
	return 0;
}

void worker_detach(struct worker *w) {
	atomic_store(&w->heartbeat_usec, WORKER_HEARTBEAT_NONE);
	w->heartbeat_timer = sd_event_source_disable_unref(w->heartbeat_timer);
	w->deadline_timer = sd_event_source_disable_unref(w->deadline_timer);
	deadline_heap_free(&w->deadlines);
	poller_done(&w->poller);
	w->resolver_source = sd_event_source_disable_unref(w->resolver_source);
	w->event = sd_event_unref(w->event);
}
