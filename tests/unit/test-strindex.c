/* test-strindex.c — the model's string index: put, get, replace, growth past many keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "strindex.h"
#include "util.h"

static void test_put_get_set(void **state) {
	struct strindex x = {};
	int a = 1, b = 2;
	(void)state;

	assert_null(strindex_get(&x, "nothing yet"));
	assert_int_equal(strindex_put(&x, "a", &a), 0);
	assert_int_equal(strindex_put(&x, "a", &b), -EEXIST);
	assert_ptr_equal(strindex_get(&x, "a"), &a);
	assert_int_equal(strindex_set(&x, "a", &b), 0);
	assert_ptr_equal(strindex_get(&x, "a"), &b);
	assert_int_equal(strindex_set(&x, "b", &a), 0);
	assert_ptr_equal(strindex_get(&x, "b"), &a);
	assert_null(strindex_get(&x, "c"));
	assert_null(strindex_get(&x, ""));
	assert_int_equal(x.n, 2);
	strindex_done(&x);
	assert_null(strindex_get(&x, "a"));
}

static void test_many_keys(void **state) {
	enum { N = 50000 };
	static char keys[N][16];
	struct strindex x = {};
	(void)state;

	for (size_t i = 0; i < N; i++) {
		snprintf(keys[i], sizeof keys[i], "k%zu", i);
		assert_int_equal(strindex_put(&x, keys[i], keys[i]), 0);
	}
	assert_int_equal(x.n, N);
	assert_true(x.cap >= 2 * N); /* at most half full */
	for (size_t i = 0; i < N; i++)
		assert_ptr_equal(strindex_get(&x, keys[i]), keys[i]);
	assert_null(strindex_get(&x, "k50000"));
	strindex_done(&x);
}

int main(void) {
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_put_get_set),
	        cmocka_unit_test(test_many_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
