/* test-worker.c — the worker without any connection code: links counted in and out with
 * their peak, deadlines fired through the one timer in order and only once due, a deadline
 * moved later firing at its new time, deadlines run by hand for a given time, and a link
 * released during a poller batch kept until the batch ends (the graveyard), then freed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "util.h"
#include "worker.h"

struct item {
	struct worker_link link; /* first: the worker frees it */
	int id;
};

static int fired[8], n_fired;
static uint64_t fired_at[8];

static void on_deadline(struct worker_link *l, uint64_t usec) {
	struct item *it = container_of(l, struct item, link);
	if (n_fired < 8) {
		fired_at[n_fired] = usec;
		fired[n_fired++] = it->id;
	}
}

static struct item *item_new(struct worker *w, int id) {
	struct item *it = calloc(1, sizeof *it);
	assert_non_null(it);
	it->id = id;
	worker_add(w, &it->link, on_deadline);
	return it;
}

static void run_for(sd_event *e, uint64_t usec) {
	uint64_t end = now_usec() + usec;
	while (now_usec() < end)
		assert_true(sd_event_run(e, 5 * 1000) >= 0);
}

static void test_deadlines_fire_in_order(void **state) {
	sd_event *e;
	struct worker w = {0};
	(void)state;

	n_fired = 0;
	assert_int_equal(sd_event_new(&e), 0);
	assert_int_equal(worker_init(&w, 0), 0);
	assert_int_equal(worker_attach(&w, e), 0);

	struct item *a = item_new(&w, 1), *b = item_new(&w, 2), *c = item_new(&w, 3);
	assert_int_equal(w.n_conns, 3);
	assert_int_equal(w.conns_peak, 3);
	uint64_t now = now_usec();
	assert_int_equal(worker_set_deadline(&w, &b->link, now + 20 * 1000), 0);
	assert_int_equal(worker_set_deadline(&w, &a->link, now + 40 * 1000), 0);
	assert_int_equal(worker_set_deadline(&w, &c->link, now + 10 * 1000), 0);
	/* moved later: the timer, armed for it, fires early once and re-arms */
	assert_int_equal(worker_set_deadline(&w, &c->link, now + 60 * 1000), 0);

	/* until all have fired, or two seconds: the order and the times, not the latency, are
	 * the promise (the machine may be busy) */
	for (int i = 0; i < 400 && n_fired < 3; i++)
		run_for(e, 5 * 1000);
	assert_int_equal(n_fired, 3);
	assert_int_equal(fired[0], 2);
	assert_int_equal(fired[1], 1);
	assert_int_equal(fired[2], 3);
	assert_true(fired_at[0] >= now + 20 * 1000);
	assert_true(fired_at[1] >= now + 40 * 1000);
	assert_true(fired_at[2] >= now + 60 * 1000);

	worker_release(&w, &a->link);
	worker_release(&w, &b->link);
	worker_release(&w, &c->link);
	assert_int_equal(w.n_conns, 0);
	assert_int_equal(w.conns_peak, 3);
	assert_null(w.conns);
	worker_detach(&w);
	worker_done(&w);
	sd_event_unref(e);
}

struct releaser {
	struct poller_handle io;
	struct worker *w;
	struct item *it;
	bool graveyard_held_it;
};

static void release_in_batch(struct poller_handle *h, uint32_t revents) {
	struct releaser *r = container_of(h, struct releaser, io);
	(void)revents;
	if (!r->it)
		return;
	worker_release(r->w, &r->it->link);
	r->graveyard_held_it = r->w->graveyard == &r->it->link;
	r->it = NULL;
}

static int batch_ends;
static void count_batch_end(struct worker *w) {
	(void)w;
	batch_ends++;
}

static void test_release_in_batch_waits_for_its_end(void **state) {
	sd_event *e;
	struct worker w = {.on_batch_end = count_batch_end};
	int sv[2];
	(void)state;

	assert_int_equal(sd_event_new(&e), 0);
	assert_int_equal(worker_init(&w, 1), 0);
	assert_int_equal(worker_attach(&w, e), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);

	struct releaser r = {.io.dispatch = release_in_batch, .w = &w, .it = item_new(&w, 7)};
	assert_int_equal(poller_add(&w.poller, sv[0], EPOLLIN, &r.io), 0);
	assert_int_equal(write(sv[1], "x", 1), 1);
	batch_ends = 0;
	for (int i = 0; i < 20 && batch_ends == 0; i++)
		assert_true(sd_event_run(e, 10 * 1000) >= 0);
	assert_true(r.graveyard_held_it);
	assert_int_equal(batch_ends, 1);
	assert_null(w.graveyard); /* freed at the batch's end (ASan checks the free) */
	assert_int_equal(w.n_conns, 0);

	safe_close(sv[0]);
	safe_close(sv[1]);
	worker_detach(&w);
	worker_done(&w);
	sd_event_unref(e);
}

/* The watchdog's view: a loop that turns beats at its interval; one that does not ages;
 * a detached one is not expected to beat at all. */
static void test_heartbeat(void **state) {
	sd_event *e;
	struct worker w = {0};
	(void)state;

	assert_int_equal(sd_event_new(&e), 0);
	assert_int_equal(worker_init(&w, 3), 0);
	assert_int_equal(worker_heartbeat_age(&w, now_usec()), 0); /* not attached */
	w.heartbeat_interval_usec = 20 * 1000;
	assert_int_equal(worker_attach(&w, e), 0);
	uint64_t first = atomic_load(&w.heartbeat_usec);
	assert_true(first != WORKER_HEARTBEAT_NONE);

	/* turning: the beat moves on, never older than a few intervals (a busy machine) */
	run_for(e, 200 * 1000);
	uint64_t now = now_usec();
	assert_true(atomic_load(&w.heartbeat_usec) > first);
	uint64_t age_running = worker_heartbeat_age(&w, now);
	assert_true(age_running < 150 * 1000);
	/* not turning: the age grows with the time the loop stands still */
	(void)usleep(100 * 1000);
	assert_true(worker_heartbeat_age(&w, now_usec()) >= 100 * 1000);
	print_message("# heartbeat every 20 ms: age %llu us while turning, over 100 ms when not\n",
	              (unsigned long long)age_running);

	worker_detach(&w);
	assert_int_equal(atomic_load(&w.heartbeat_usec), WORKER_HEARTBEAT_NONE);
	assert_int_equal(worker_heartbeat_age(&w, now_usec()), 0);
	worker_done(&w);
	sd_event_unref(e);
}

/* Time passed by hand (the connection fuzz harness): only what is due at the given time
 * runs, in order, each once; the rest keeps its place. */
static void test_run_deadlines_by_hand(void **state) {
	sd_event *e;
	struct worker w = {0};
	(void)state;

	n_fired = 0;
	assert_int_equal(sd_event_new(&e), 0);
	assert_int_equal(worker_init(&w, 2), 0);
	assert_int_equal(worker_attach(&w, e), 0);
	struct item *a = item_new(&w, 1), *b = item_new(&w, 2);
	uint64_t now = now_usec(), hour = 3600ull * 1000 * 1000;
	assert_int_equal(worker_set_deadline(&w, &a->link, now + 2 * hour), 0);
	assert_int_equal(worker_set_deadline(&w, &b->link, now + hour), 0);

	worker_run_deadlines(&w, now);
	assert_int_equal(n_fired, 0);
	worker_run_deadlines(&w, now + hour);
	assert_int_equal(n_fired, 1);
	assert_int_equal(fired[0], 2);
	assert_true(fired_at[0] == now + hour);
	worker_run_deadlines(&w, now + 3 * hour);
	assert_int_equal(n_fired, 2);
	assert_int_equal(fired[1], 1);
	worker_run_deadlines(&w, now + 4 * hour); /* each fires once: they left the heap */
	assert_int_equal(n_fired, 2);

	worker_release(&w, &a->link);
	worker_release(&w, &b->link);
	worker_detach(&w);
	worker_done(&w);
	sd_event_unref(e);
}

static void test_exhaustion_errors(void **state) {
	(void)state;
	assert_true(worker_err_is_exhaustion(EMFILE));
	assert_true(worker_err_is_exhaustion(ENFILE));
	assert_true(worker_err_is_exhaustion(ENOBUFS));
	assert_true(worker_err_is_exhaustion(ENOMEM));
	assert_false(worker_err_is_exhaustion(ECONNREFUSED));
	assert_false(worker_err_is_exhaustion(EAGAIN));
}

int main(void) {
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_deadlines_fire_in_order),
	        cmocka_unit_test(test_release_in_batch_waits_for_its_end),
	        cmocka_unit_test(test_heartbeat),
	        cmocka_unit_test(test_run_deadlines_by_hand),
	        cmocka_unit_test(test_exhaustion_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
