/* test-resolve.c — the resolver pool against a getaddrinfo() of the test's own (the
 * Makefile links this binary alone with -Wl,--wrap=getaddrinfo): a name whose DNS server
 * never answers holds one thread, and a prompt name asked after it is answered at once,
 * even when asked before an idle thread woke for the slow one;
 * many requests for the one slow name never take more than one thread; the pool stays
 * bounded; a cancelled lookup never calls back; a numeric host never reaches a thread. */
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "resolve.h"
#include "util.h"

int __real_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res);
int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res);

/* "slow-*" names block until the test lets them go; every other name is 127.0.0.1 */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static unsigned slow_blocked, calls;

int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res) {
	pthread_mutex_lock(&gate_lock);
	calls++;
	if (strncmp(node, "slow-", 5) == 0) {
		slow_blocked++;
		pthread_cond_broadcast(&gate_cond);
		while (!gate_open)
			pthread_cond_wait(&gate_cond, &gate_lock);
		slow_blocked--;
	}
	pthread_mutex_unlock(&gate_lock);
	return __real_getaddrinfo("127.0.0.1", service, hints, res);
}

static void gate_set(bool open) {
	pthread_mutex_lock(&gate_lock);
	gate_open = open;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
}

static unsigned blocked_now(void) {
	pthread_mutex_lock(&gate_lock);
	unsigned n = slow_blocked;
	pthread_mutex_unlock(&gate_lock);
	return n;
}

struct answer {
	int calls;
	int error;
	size_t n;
};

static void on_answer(const struct resolve_result *r, void *userdata) {
	struct answer *a = userdata;
	a->calls++;
	a->error = r->error;
	a->n = r->n;
}

/* Dispatch the queue until `done` has been called back or `ms` passed; returns the
 * milliseconds it took, or -1. */
static long wait_answer(struct resolve_queue *q, struct answer *a, long ms) {
	uint64_t start = now_ms();
	while (a->calls == 0 && now_ms() - start < (uint64_t)ms) {
		resolve_queue_dispatch(q);
		if (a->calls == 0)
			(void)usleep(1000);
	}
	return a->calls ? (long)(now_ms() - start) : -1;
}

static void wait_blocked(unsigned n) {
	for (int i = 0; i < 2000 && blocked_now() < n; i++)
		(void)usleep(1000);
	assert_int_equal(blocked_now(), n);
}

/* First in the process: one thread, idle. Two names asked back to back, the slow one first,
 * before that thread has woken for either: the second must not be left to it. */
static void test_back_to_back_with_one_idle_thread(void **state) {
	(void)state;
	struct resolve_queue *q;
	int fd;
	uint64_t tok;
	struct answer warm = {0}, slow = {0}, fast = {0};

	gate_set(false);
	assert_int_equal(resolve_queue_new(&q, &fd), 0);
	assert_int_equal(resolve_start(q, "warm.test", 80, true, false, on_answer, &warm, &tok), 0);
	assert_true(wait_answer(q, &warm, 2000) >= 0);
	assert_int_equal(resolve_threads_running(), 1);
	(void)usleep(20000); /* the thread is back waiting */
	assert_int_equal(
	        resolve_start(q, "slow-first.test", 80, true, false, on_answer, &slow, &tok), 0);
	assert_int_equal(resolve_start(q, "second.test", 80, true, false, on_answer, &fast, &tok),
	                 0);
	long ms = wait_answer(q, &fast, 2000);
	printf("# with one idle thread, a name asked right after a slow one: answered in %ld ms, "
	       "%u threads\n",
	       ms, resolve_threads_running());
	assert_true(ms >= 0 && ms < 1000);
	gate_set(true);
	assert_true(wait_answer(q, &slow, 3000) >= 0);
	resolve_queue_free(q);
}

static void test_prompt_name_not_behind_slow_ones(void **state) {
	(void)state;
	struct resolve_queue *q;
	int fd;
	uint64_t tok;
	struct answer slow1 = {0}, slow2 = {0}, slow_again[5] = {{0}}, fast = {0}, numeric = {0};

	gate_set(false);
	assert_int_equal(resolve_queue_new(&q, &fd), 0);
	assert_int_equal(
	        resolve_start(q, "slow-one.test", 80, true, false, on_answer, &slow1, &tok), 0);
	assert_int_equal(
	        resolve_start(q, "slow-two.test", 80, true, false, on_answer, &slow2, &tok), 0);
	wait_blocked(2);
	/* five more for a name already in flight: they wait in the queue, not in threads */
	for (int i = 0; i < 5; i++)
		assert_int_equal(resolve_start(q, "slow-one.test", 80, true, false, on_answer,
		                               &slow_again[i], &tok),
		                 0);
	assert_int_equal(resolve_start(q, "prompt.test", 80, true, false, on_answer, &fast, &tok),
	                 0);
	long ms = wait_answer(q, &fast, 2000);
	printf("# prompt name answered in %ld ms while 2 slow names hold 2 of %u threads\n", ms,
	       resolve_threads_running());
	assert_true(ms >= 0 && ms < 1000);
	assert_int_equal(fast.error, 0);
	assert_int_equal(fast.n, 1);
	assert_int_equal(blocked_now(), 2); /* still: one thread per slow name, never more */
	assert_true(resolve_threads_running() <= 4);
	assert_int_equal(slow1.calls, 0);

	/* a numeric host is answered before resolve_start returns */
	assert_int_equal(resolve_start(q, "127.0.0.9", 80, true, false, on_answer, &numeric, &tok),
	                 0);
	assert_int_equal(numeric.calls, 1);
	assert_int_equal(tok, 0);

	gate_set(true);
	assert_true(wait_answer(q, &slow1, 3000) >= 0);
	assert_true(wait_answer(q, &slow2, 3000) >= 0);
	for (int i = 0; i < 5; i++) {
		assert_true(wait_answer(q, &slow_again[i], 3000) >= 0);
		assert_int_equal(slow_again[i].error, 0);
	}
	resolve_queue_free(q);
}

static void test_pool_is_bounded_and_cancel_is_silent(void **state) {
	(void)state;
	struct resolve_queue *q;
	int fd;
	uint64_t tok[6];
	struct answer a[6] = {{0}};
	char name[32];

	gate_set(false);
	assert_int_equal(resolve_queue_new(&q, &fd), 0);
	for (int i = 0; i < 6; i++) {
		snprintf(name, sizeof name, "slow-bound-%d.test", i);
		assert_int_equal(
		        resolve_start(q, name, 443, true, false, on_answer, &a[i], &tok[i]), 0);
	}
	wait_blocked(4);
	(void)usleep(50000);
	printf("# 6 silent names: %u threads blocked, %u started (bound 4)\n", blocked_now(),
	       resolve_threads_running());
	assert_int_equal(blocked_now(), 4);
	assert_int_equal(resolve_threads_running(), 4);
	/* one in a thread and one still queued: neither calls back once cancelled */
	resolve_cancel(q, tok[0]);
	resolve_cancel(q, tok[5]);
	gate_set(true);
	for (int i = 1; i < 5; i++)
		assert_true(wait_answer(q, &a[i], 3000) >= 0);
	(void)wait_answer(q, &a[0], 300);
	(void)wait_answer(q, &a[5], 300);
	assert_int_equal(a[0].calls, 0);
	assert_int_equal(a[5].calls, 0);
	resolve_queue_free(q);
}

int main(void) {
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_back_to_back_with_one_idle_thread),
	        cmocka_unit_test(test_prompt_name_not_behind_slow_ones),
	        cmocka_unit_test(test_pool_is_bounded_and_cancel_is_silent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
