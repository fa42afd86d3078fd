/* test-poller.c — the per-worker epoll, behind one sd-event source or driving the loop:
 * events arrive in batches with the batch end signalled after the last one, a driven loop
 * still dispatches its own sources and timers set from a handler, and a file that lives on
 * elsewhere stays registered after close() unless poller_remove() was called (why conn.c
 * tracks that). */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "poller.h"
#include "util.h"

struct probe {
	struct poller_handle io;
	struct poller *poller;
	int calls;
	bool saw_in_batch;
	uint64_t batch;
};

struct batch_log {
	int ends;
	int calls_at_end; /* dispatches seen by the first batch end */
	struct probe *probes;
	size_t n;
};

static void probe_dispatch(struct poller_handle *h, uint32_t revents) {
	struct probe *p = container_of(h, struct probe, io);
	(void)revents;
	p->calls++;
	p->saw_in_batch = poller_in_batch(p->poller);
	p->batch = p->poller->batches;
}

static void on_end(void *userdata) {
	struct batch_log *log = userdata;
	if (log->ends++ == 0)
		for (size_t i = 0; i < log->n; i++)
			log->calls_at_end += log->probes[i].calls;
}

static void run_once(sd_event *e) { assert_true(sd_event_run(e, 100 * 1000) >= 0); }

static void test_one_batch_then_its_end(void **state) {
	(void)state;
	sd_event *e = NULL;
	struct poller p;
	struct probe probes[3];
	struct batch_log log = {.probes = probes, .n = 3};
	int fds[3][2];

	assert_int_equal(sd_event_new(&e), 0);
	assert_int_equal(poller_init(&p, e, false, on_end, &log), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(pipe2(fds[i], O_NONBLOCK | O_CLOEXEC), 0);
		probes[i] = (struct probe){.io.dispatch = probe_dispatch, .poller = &p};
		assert_int_equal(poller_add(&p, fds[i][0], EPOLLIN | EPOLLET, &probes[i].io), 0);
		assert_int_equal(write(fds[i][1], "x", 1), 1);
	}
	run_once(e);
	/* all three in one batch, inside it, and the end hook after the last of them */
	assert_int_equal(log.ends, 1);
	assert_int_equal(log.calls_at_end, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(probes[i].calls, 1);
		assert_true(probes[i].saw_in_batch);
		assert_int_equal(probes[i].batch, 1);
	}
	assert_false(poller_in_batch(&p));

	/* edge-triggered: nothing new, nothing dispatched; new bytes, a second batch */
	assert_int_equal(sd_event_run(e, 0), 0);
	assert_int_equal(write(fds[1][1], "y", 1), 1);
	run_once(e);
	assert_int_equal(probes[1].calls, 2);
	assert_int_equal(probes[1].batch, 2);
	assert_int_equal(log.ends, 2);

	poller_done(&p);
	for (int i = 0; i < 3; i++)
		safe_close(fds[i][0]), safe_close(fds[i][1]);
	sd_event_unref(e);
}

/* close() drops a registration only with the last descriptor of the file; a duplicate
 * (inetd's stdout, a copy in the fd store) keeps it, and its events would still come. */
static void test_remove_needed_for_shared_files(void **state) {
	(void)state;
	sd_event *e = NULL;
	struct poller p;
	struct probe kept = {.io.dispatch = probe_dispatch, .poller = &p},
	             removed = {.io.dispatch = probe_dispatch, .poller = &p};
	int a[2], b[2];

	assert_int_equal(sd_event_new(&e), 0);
	assert_int_equal(poller_init(&p, e, false, NULL, NULL), 0);
	assert_int_equal(pipe2(a, O_NONBLOCK | O_CLOEXEC), 0);
	assert_int_equal(pipe2(b, O_NONBLOCK | O_CLOEXEC), 0);
	int a_dup = dup(a[0]), b_dup = dup(b[0]);
	assert_true(a_dup >= 0 && b_dup >= 0);

	assert_int_equal(poller_add(&p, a[0], EPOLLIN, &kept.io), 0);
	assert_int_equal(poller_add(&p, b[0], EPOLLIN, &removed.io), 0);
	a[0] = safe_close(a[0]);
	poller_remove(&p, b[0]);
	b[0] = safe_close(b[0]);

	assert_int_equal(write(a[1], "x", 1), 1);
	assert_int_equal(write(b[1], "x", 1), 1);
	run_once(e);
	assert_int_equal(kept.calls, 1);    /* still registered through the duplicate */
	assert_int_equal(removed.calls, 0); /* removed by hand: silent */

	poller_done(&p);
	safe_close(a_dup), safe_close(b_dup), safe_close(a[1]), safe_close(b[1]);
	sd_event_unref(e);
}

/* Driving: socket events come in batches from poller_run(); the sd-event loop's own io
 * source is dispatched when its fd is ready; a timer a handler adds fires once the handler
 * says so (poller_event_changed); and the loop's exit code is what poller_run() returns. */
struct driven {
	struct probe probe;
	sd_event *event;
	int timer_fired, wake_calls;
};

static int on_driven_timer(sd_event_source *src, uint64_t usec, void *userdata) {
	struct driven *d = userdata;
	(void)src, (void)usec;
	d->timer_fired++;
	return sd_event_exit(d->event, 42);
}

static void driven_dispatch(struct poller_handle *h, uint32_t revents) {
	struct driven *d = container_of(h, struct driven, probe.io);
	probe_dispatch(h, revents);
	if (d->probe.calls == 1) {
		assert_int_equal(sd_event_add_time_relative(d->event, NULL, CLOCK_MONOTONIC, 1000,
		                                            0, on_driven_timer, d),
		                 0);
		poller_event_changed(d->probe.poller);
	}
}

static int on_driven_wake(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
	struct driven *d = userdata;
	uint64_t v;
	(void)src, (void)revents;
	assert_int_equal(read(fd, &v, sizeof v), (ssize_t)sizeof v);
	d->wake_calls++;
	return 0;
}

static void test_driving_runs_the_loop(void **state) {
	(void)state;
	struct poller p;
	struct driven d = {.probe = {.io.dispatch = driven_dispatch, .poller = &p}};
	int fds[2];
	uint64_t one = 1;

	assert_int_equal(sd_event_new(&d.event), 0);
	assert_int_equal(poller_init(&p, d.event, true, NULL, NULL), 0);
	assert_true(p.source == NULL); /* the other way round: the loop is inside us */
	int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(wake >= 0);
	assert_int_equal(sd_event_add_io(d.event, NULL, wake, EPOLLIN, on_driven_wake, &d), 0);
	assert_int_equal(write(wake, &one, sizeof one), (ssize_t)sizeof one);
	assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
	assert_int_equal(poller_add(&p, fds[0], EPOLLIN | EPOLLET, &d.probe.io), 0);
	assert_int_equal(write(fds[1], "x", 1), 1);

	alarm(10); /* a timer the loop never armed would hang here */
	assert_int_equal(poller_run(&p), 42);
	alarm(0);
	assert_int_equal(d.probe.calls, 1);
	assert_true(d.probe.saw_in_batch);
	assert_int_equal(d.timer_fired, 1);
	assert_int_equal(d.wake_calls, 1);

	poller_done(&p);
	safe_close(fds[0]), safe_close(fds[1]), safe_close(wake);
	sd_event_unref(d.event);
}

int main(void) {
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_one_batch_then_its_end),
	        cmocka_unit_test(test_remove_needed_for_shared_files),
	        cmocka_unit_test(test_driving_runs_the_loop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
