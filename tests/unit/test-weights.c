/* test-weights.c — the smooth weighted round-robin (exact splits over every window, picks
 * interleaved rather than bunched, weight 0 and the eligibility mask), and the shares of
 * 100 that written weights come to.
 *
 * Groups are built by hand here so these tests depend on weights.c alone; test-breaker.c
 * checks the same splits through the shared table across processes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <limits.h>

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

/* ---- normalising: written weights to shares of 100 ---- */

struct written_group {
	struct mapping mappings[ROUTE_MAX_GROUP_MAPPINGS];
	struct mapping *ptrs[ROUTE_MAX_GROUP_MAPPINGS];
	struct mapping_group group;
};

/* `written` ends at INT_MIN; -1 is "no weight written". Effective weights start at 7 so a
 * value left alone shows. */
static struct mapping_group *written_group_init(struct written_group *w, const int *written) {
	memset(w, 0, sizeof(*w));
	size_t n = 0;
	for (; written[n] != INT_MIN; n++) {
		w->mappings[n].weight = written[n];
		w->mappings[n].effective_weight = 7;
		w->ptrs[n] = &w->mappings[n];
	}
	w->group.mappings = w->ptrs;
	w->group.n_mappings = n;
	return &w->group;
}

static void assert_normalised(const int *written, enum weights_outcome outcome, unsigned total,
                              const unsigned *effective) {
	struct written_group w;
	struct mapping_group *g = written_group_init(&w, written);
	unsigned got_total = 12345;

	assert_int_equal(weights_normalise(g, &got_total), outcome);
	assert_int_equal(got_total, total);
	for (size_t i = 0; i < g->n_mappings; i++)
		assert_int_equal(g->mappings[i]->effective_weight, effective[i]);
}

static void test_normalise(void **state) {
	(void)state;
	/* alone: 100 whatever it says */
	assert_normalised((const int[]){10, INT_MIN}, WEIGHTS_ALONE, 10, (const unsigned[]){100});
	assert_normalised((const int[]){0, INT_MIN}, WEIGHTS_ALONE, 0, (const unsigned[]){100});
	assert_normalised((const int[]){-1, INT_MIN}, WEIGHTS_ALONE, 0, (const unsigned[]){100});
	/* as written */
	assert_normalised((const int[]){10, 90, INT_MIN}, WEIGHTS_AS_WRITTEN, 100,
	                  (const unsigned[]){10, 90});
	assert_normalised((const int[]){0, 100, 0, INT_MIN}, WEIGHTS_AS_WRITTEN, 100,
	                  (const unsigned[]){0, 100, 0});
	/* the unweighted share the rest, the first ones taking the rounding */
	assert_normalised((const int[]){20, -1, -1, INT_MIN}, WEIGHTS_SHARED_REST, 20,
	                  (const unsigned[]){20, 40, 40});
	assert_normalised((const int[]){-1, 30, -1, -1, INT_MIN}, WEIGHTS_SHARED_REST, 30,
	                  (const unsigned[]){24, 30, 23, 23});
	assert_normalised((const int[]){99, -1, -1, INT_MIN}, WEIGHTS_SHARED_REST, 99,
	                  (const unsigned[]){99, 1, 0});
	/* all zero */
	assert_normalised((const int[]){0, 0, INT_MIN}, WEIGHTS_ALL_ZERO, 0,
	                  (const unsigned[]){0, 0});
	/* under 100: scaled, largest remainder first, earlier first on ties */
	assert_normalised((const int[]){1, 1, 1, INT_MIN}, WEIGHTS_SCALED_UP, 3,
	                  (const unsigned[]){34, 33, 33});
	assert_normalised((const int[]){10, 20, INT_MIN}, WEIGHTS_SCALED_UP, 30,
	                  (const unsigned[]){33, 67});
	assert_normalised((const int[]){1, 0, 2, INT_MIN}, WEIGHTS_SCALED_UP, 3,
	                  (const unsigned[]){33, 0, 67});
	/* over 100: an error, nothing touched */
	assert_normalised((const int[]){60, 50, INT_MIN}, WEIGHTS_OVER_100, 110,
	                  (const unsigned[]){7, 7});
}

/* Whatever is written, a group that is not an error totals exactly 100 (or 0 when all its
 * weights are 0), and the pick then splits exactly by those shares. */
static void test_normalise_totals_100(void **state) {
	(void)state;
	for (unsigned seed = 1; seed <= 2000; seed++) {
		int written[ROUTE_MAX_GROUP_MAPPINGS + 1];
		unsigned r = seed * 2654435761u;
		size_t n = 2 + r % (ROUTE_MAX_GROUP_MAPPINGS - 1);
		for (size_t i = 0; i < n; i++) {
			r = r * 1103515245u + 12345u;
			written[i] = (r >> 16) % 5 == 0 ? -1 : (int)((r >> 8) % (100 / n + 1));
		}
		written[n] = INT_MIN;
		struct written_group w;
		struct mapping_group *g = written_group_init(&w, written);
		enum weights_outcome o = weights_normalise(g, NULL);
		assert_int_not_equal(o, WEIGHTS_OVER_100);
		unsigned sum = 0;
		for (size_t i = 0; i < n; i++)
			sum += g->mappings[i]->effective_weight;
		assert_int_equal(sum, o == WEIGHTS_ALL_ZERO ? 0 : 100);
	}
}

int main(void) {
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_wrr_10_90_exact),
	        cmocka_unit_test(test_wrr_33_33_34),
	        cmocka_unit_test(test_wrr_is_smooth),
	        cmocka_unit_test(test_wrr_weight_zero_never),
	        cmocka_unit_test(test_wrr_eligible_mask),
	        cmocka_unit_test(test_wrr_many_mappings),
	        cmocka_unit_test(test_normalise),
	        cmocka_unit_test(test_normalise_totals_100),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
