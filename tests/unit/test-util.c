/* test-util.c — util.c's helpers that other tests do not reach on their own: the places a
 * companion file (the TLS module, the relay spawner) is looked for. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "util.h"

static void test_companion_path_places(void **state) {
	char exe[PATH_MAX], dir[PATH_MAX], want[PATH_MAX + 64], got[PATH_MAX + 64];
	(void)state;

	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	assert_true(n > 0);
	exe[n] = '\0';
	strcpy(dir, exe);
	*strrchr(dir, '/') = '\0';

	/* beside this executable, then ../lib/tcpmap/ from it, and nowhere else */
	assert_int_equal(companion_path("tcpmap-spawner", 0, got, sizeof got), 0);
	snprintf(want, sizeof want, "%s/tcpmap-spawner", dir);
	assert_string_equal(got, want);
	assert_int_equal(companion_path("tcpmap-tls.so", 1, got, sizeof got), 0);
	snprintf(want, sizeof want, "%s/../lib/tcpmap/tcpmap-tls.so", dir);
	assert_string_equal(got, want);
	assert_int_equal(companion_path("tcpmap-tls.so", 2, got, sizeof got), -ERANGE);
	/* never a truncated path that would name some other file */
	assert_int_equal(companion_path("tcpmap-tls.so", 0, got, strlen(dir) + 4), -ENAMETOOLONG);
}

int main(void) {
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_companion_path_places),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
