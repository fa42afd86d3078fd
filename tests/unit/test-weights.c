/* test-weights.c — the smooth weighted round-robin: exact splits over every window, picks
 * interleaved rather than bunched, weight 0 and the eligibility mask.
 *
 * Groups are built by hand here so these tests depend on weights.c alone; test-breaker.c
 * checks the same splits through the shared table across processes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "route.h"
#include "util.h"
#include "weights.h"

struct wrr_group {
	struct mapping mappings[ROUTE_MAX_GROUP_MAPPINGS];
	struct mapping *ptrs[ROUTE_MAX_GROUP_MAPPINGS];
	struct mapping_group group;
};

static void wrr_group_init(struct wrr_group *w, const unsigned *weights, size_t n) {
	memset(w, 0, sizeof(*w));
	for (size_t i = 0; i < n; i++) {
		w->mappings[i].effective_weight = weights[i];
		w->ptrs[i] = &w->mappings[i];
	}
	w->group.mappings = w->ptrs;
	w->group.n_mappings = n;
}

static void count_picks(const struct wrr_group *w, int32_t *current, const bool *eligible,
                        unsigned picks, unsigned *counts) {
	for (unsigned i = 0; i < picks; i++) {
		int r = weights_pick(&w->group, current, eligible);
		assert_true(r >= 0);
		assert_true((size_t)r < w->group.n_mappings);
		counts[r]++;
	}
}

static void test_wrr_10_90_exact(void **state) {
	(void)state;
	static const unsigned weights[] = {10, 90};
	struct wrr_group w;
	int32_t current[2] = {};
	unsigned counts[2] = {};

	wrr_group_init(&w, weights, 2);
	count_picks(&w, current, NULL, 1000, counts);
	assert_int_equal(counts[0], 100);
	assert_int_equal(counts[1], 900);

	/* Exact over every window of 100 too, not just in total. */
	for (int round = 0; round < 10; round++) {
		unsigned window[2] = {};
		count_picks(&w, current, NULL, 100, window);
		assert_int_equal(window[0], 10);
		assert_int_equal(window[1], 90);
	}
}

static void test_wrr_33_33_34(void **state) {
	(void)state;
	static const unsigned weights[] = {33, 33, 34};
	struct wrr_group w;
	int32_t current[3] = {};
	unsigned counts[3] = {};

	wrr_group_init(&w, weights, 3);
	count_picks(&w, current, NULL, 100, counts);
	assert_int_equal(counts[0], 33);
	assert_int_equal(counts[1], 33);
	assert_int_equal(counts[2], 34);
}

static void test_wrr_is_smooth(void **state) {
	(void)state;
	static const unsigned weights[] = {50, 50};
	struct wrr_group w;
	int32_t current[2] = {};
	int last = -1;

	/* Equal weights alternate instead of sending 50 in a row to one upstream. */
	wrr_group_init(&w, weights, 2);
	for (int i = 0; i < 20; i++) {
		int r = weights_pick(&w.group, current, NULL);
		assert_int_not_equal(r, last);
		last = r;
	}
}

static void test_wrr_weight_zero_never(void **state) {
	(void)state;
	static const unsigned weights[] = {0, 100, 0};
	struct wrr_group w;
	int32_t current[3] = {};
	unsigned counts[3] = {};

	wrr_group_init(&w, weights, 3);
	count_picks(&w, current, NULL, 500, counts);
	assert_int_equal(counts[0], 0);
	assert_int_equal(counts[1], 500);
	assert_int_equal(counts[2], 0);
}

static void test_wrr_eligible_mask(void **state) {
	(void)state;
	static const unsigned weights[] = {20, 30, 50};
	bool eligible[3] = {true, false, true};
	struct wrr_group w;
	int32_t current[3] = {};
	unsigned counts[3] = {};

	wrr_group_init(&w, weights, 3);
	count_picks(&w, current, eligible, 700, counts);
	assert_int_equal(counts[1], 0);
	assert_int_equal(counts[0], 200);
	assert_int_equal(counts[2], 500);

	/* Nothing eligible with a weight: -ENOENT, and the state is left alone. */
	bool none[3] = {false, false, false};
	int32_t before[3] = {current[0], current[1], current[2]};
	assert_int_equal(weights_pick(&w.group, current, none), -ENOENT);
	assert_memory_equal(before, current, sizeof(before));

	static const unsigned zeros[] = {0, 0};
	wrr_group_init(&w, zeros, 2);
	assert_int_equal(weights_pick(&w.group, current, NULL), -ENOENT);
	assert_int_equal(weights_pick(NULL, current, NULL), -EINVAL);
}

static void test_wrr_many_mappings(void **state) {
	(void)state;
	unsigned weights[ROUTE_MAX_GROUP_MAPPINGS];
	unsigned counts[ROUTE_MAX_GROUP_MAPPINGS] = {};
	int32_t current[ROUTE_MAX_GROUP_MAPPINGS] = {};
	struct wrr_group w;

	/* 32 mappings: 4 x 1 + 27 x 3 = 85, then one of 15 -> 100. */
	for (size_t i = 0; i < ROUTE_MAX_GROUP_MAPPINGS; i++)
		weights[i] = i < 4 ? 1 : 3;
	weights[ROUTE_MAX_GROUP_MAPPINGS - 1] = 15;
	wrr_group_init(&w, weights, ROUTE_MAX_GROUP_MAPPINGS);
	count_picks(&w, current, NULL, 1000, counts);
	for (size_t i = 0; i < ROUTE_MAX_GROUP_MAPPINGS; i++)
		assert_int_equal(counts[i], weights[i] * 10);
}

int main(void) {
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_wrr_10_90_exact),
	        cmocka_unit_test(test_wrr_33_33_34),
	        cmocka_unit_test(test_wrr_is_smooth),
	        cmocka_unit_test(test_wrr_weight_zero_never),
	        cmocka_unit_test(test_wrr_eligible_mask),
	        cmocka_unit_test(test_wrr_many_mappings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
