/* test-deadlines.c — the per-worker deadline heap against a brute-force model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "deadlines.h"
#include "util.h"

#define N 2000

static uint64_t brute_min(struct deadline_item *items, size_t n) {
	uint64_t m = DEADLINE_NONE;
	for (size_t i = 0; i < n; i++)
		if (items[i].when < m)
			m = items[i].when;
	return m;
}

static void check_positions(const struct deadline_heap *h) {
	for (size_t i = 0; i < h->n; i++) {
		assert_int_equal(h->items[i]->position, i);
		if (i > 0)
			assert_true(h->items[(i - 1) / 2]->when <= h->items[i]->when);
	}
}

static void test_random_operations(void **state) {
	(void)state;
	static struct deadline_item items[N];
	struct deadline_heap h = {0};
	uint64_t seed = 42;

	for (size_t i = 0; i < N; i++)
		items[i].when = DEADLINE_NONE;
	for (int step = 0; step < 100000; step++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		size_t i = (seed >> 33) % N;
		uint64_t op = (seed >> 20) % 4;
		uint64_t when = (seed >> 8) % 100000;
		assert_int_equal(deadline_set(&h, &items[i], op == 0 ? DEADLINE_NONE : when), 0);
		struct deadline_item *first = deadline_peek(&h);
		assert_true((first ? first->when : DEADLINE_NONE) == brute_min(items, N));
		if (step % 997 == 0)
			check_positions(&h);
	}
	check_positions(&h);
	/* popping in order gives a sorted sequence */
	uint64_t last = 0;
	while (deadline_peek(&h)) {
		struct deadline_item *it = deadline_peek(&h);
		assert_true(it->when >= last);
		last = it->when;
		deadline_remove(&h, it);
		assert_true(it->when == DEADLINE_NONE);
	}
	deadline_heap_free(&h);
}

static void test_shrinks_after_peak(void **state) {
	(void)state;
	static struct deadline_item items[N];
	struct deadline_heap h = {0};

	for (size_t i = 0; i < N; i++) {
		items[i].when = DEADLINE_NONE;
		assert_int_equal(deadline_set(&h, &items[i], i * 7 % 1000), 0);
	}
	size_t peak = h.allocated;
	assert_true(peak >= N);
	for (size_t i = 0; i < N; i++)
		deadline_remove(&h, &items[i]);
	assert_int_equal(h.n, 0);
	assert_true(h.allocated <= 128);
	assert_null(deadline_peek(&h));
	/* removing what is not in the heap is a no-op */
	deadline_remove(&h, &items[0]);
	assert_int_equal(h.n, 0);
	deadline_heap_free(&h);
}

int main(void) {
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_random_operations),
	        cmocka_unit_test(test_shrinks_after_peak),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
