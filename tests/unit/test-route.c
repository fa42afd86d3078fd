/* test-route.c — SNI host matching and group selection (the weighted pick within a group
 * is tested in test-weights.c).
 *
 * The model is built by hand here so these tests depend on route.c alone; the loader's own
 * tests check that config.c builds the same shapes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "route.h"
#include "util.h"

static void test_host_exact(void **state) {
	(void)state;
	assert_true(route_host_matches("example.com", "example.com"));
	assert_true(route_host_matches("example.com", "EXAMPLE.Com"));
	assert_true(route_host_matches("example.com", "example.com."));
	assert_true(route_host_matches("Example.COM", "example.com"));
	assert_false(route_host_matches("example.com", "example.co"));
	assert_false(route_host_matches("example.com", "xexample.com"));
	assert_false(route_host_matches("example.com", "a.example.com"));
	assert_false(route_host_matches("example.com", ""));
	assert_false(route_host_matches("example.com", "."));
	assert_false(route_host_matches(NULL, "example.com"));
	assert_false(route_host_matches("example.com", NULL));
}

static void test_host_wildcard(void **state) {
	(void)state;
	assert_true(route_host_matches("*.example.com", "a.example.com"));
	assert_true(route_host_matches("*.example.com", "A.EXAMPLE.COM"));
	assert_true(route_host_matches("*.example.com", "a.example.com."));
	assert_true(route_host_matches("*.example.com", "x-1.example.com"));
	/* Any number of labels, as Envoy's server_names match (tcpmap.yaml(5)). */
	assert_true(route_host_matches("*.example.com", "a.b.example.com"));
	assert_true(route_host_matches("*.example.com", "a.b.c.example.com."));
	assert_false(route_host_matches("*.example.com", "example.com"));
	assert_false(route_host_matches("*.example.com", ".example.com"));
	assert_false(route_host_matches("*.example.com", "aexample.com"));
	assert_false(route_host_matches("*.example.com", "a.example.org"));
}

/* A hand-built listener: groups ordered as config.c orders them. */
struct fixture {
	struct mapping mappings[6];
	struct mapping *group_mappings[6][1];
	struct mapping_group groups[6];
	struct mapping_group *ordered[6];
	struct listener listener;
};

static void fixture_init(struct fixture *f, bool with_catch_all) {
	static const char *const hosts[] = {"a.example.com", "b.example.com", "*.sub.example.com",
	                                    "*.example.com", NULL};
	size_t n = with_catch_all ? 5 : 4;

	memset(f, 0, sizeof(*f));
	for (size_t i = 0; i < n; i++) {
		f->mappings[i].effective_weight = 100;
		f->group_mappings[i][0] = &f->mappings[i];
		f->groups[i] = (struct mapping_group){
		        .host = (char *)hosts[i],
		        .host_is_wildcard = hosts[i] && hosts[i][0] == '*',
		        .mappings = f->group_mappings[i],
		        .n_mappings = 1,
		        .listener = &f->listener,
		};
		f->ordered[i] = &f->groups[i];
	}
	f->listener.groups = f->ordered;
	f->listener.n_groups = n;
	f->listener.needs_sni = true;
	f->listener.catch_all = with_catch_all ? &f->groups[4] : NULL;
}

static void test_select_group(void **state) {
	(void)state;
	struct fixture f;

	fixture_init(&f, true);
	assert_ptr_equal(route_select_group(&f.listener, "a.example.com"), &f.groups[0]);
	assert_ptr_equal(route_select_group(&f.listener, "B.Example.Com."), &f.groups[1]);
	/* The longer wildcard wins; the shorter one still takes its own names. */
	assert_ptr_equal(route_select_group(&f.listener, "x.sub.example.com"), &f.groups[2]);
	assert_ptr_equal(route_select_group(&f.listener, "c.example.com"), &f.groups[3]);
	assert_ptr_equal(route_select_group(&f.listener, "sub.example.com"), &f.groups[3]);
	/* Catch-all: an unknown name, no SNI, or an empty one. */
	assert_ptr_equal(route_select_group(&f.listener, "other.org"), &f.groups[4]);
	assert_ptr_equal(route_select_group(&f.listener, NULL), &f.groups[4]);
	assert_ptr_equal(route_select_group(&f.listener, ""), &f.groups[4]);
	assert_null(route_select_group(NULL, "a.example.com"));
}

static void test_exact_beats_wildcard_in_any_order(void **state) {
	(void)state;
	struct fixture f;

	fixture_init(&f, false);
	/* Put the wildcard first: the exact host must still win. */
	f.ordered[0] = &f.groups[3];
	f.ordered[3] = &f.groups[0];
	assert_ptr_equal(route_select_group(&f.listener, "a.example.com"), &f.groups[0]);
	assert_ptr_equal(route_select_group(&f.listener, "z.example.com"), &f.groups[3]);
}

static void test_select_no_match(void **state) {
	(void)state;
	struct fixture f;

	fixture_init(&f, false);
	assert_null(route_select_group(&f.listener, "other.org"));
	assert_null(route_select_group(&f.listener, NULL));
	/* deeper names reach the longest wildcard above them (Envoy's server_names) */
	assert_ptr_equal(route_select_group(&f.listener, "a.b.sub.example.com"), &f.groups[2]);
	assert_ptr_equal(route_select_group(&f.listener, "a.b.example.com"), &f.groups[3]);
}

int main(void) {
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_host_exact),
	        cmocka_unit_test(test_host_wildcard),
	        cmocka_unit_test(test_select_group),
	        cmocka_unit_test(test_exact_beats_wildcard_in_any_order),
	        cmocka_unit_test(test_select_no_match),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
