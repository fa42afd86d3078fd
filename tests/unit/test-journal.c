/* test-journal.c — journald's native protocol as journal.c writes it: plain fields as
 * "KEY=value\n", a value with a newline in the binary-safe form, and refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "journal.h"
#include "util.h"

#define FIELD(s) ((struct iovec){.iov_base = (void *)(s), .iov_len = sizeof(s) - 1})

/* The entry FIELDS format to: exactly WANT (a literal, its NULs included). */
#define assert_entry(fields, want)                                                                 \
	assert_entry_is(fields, ELEMENTSOF(fields), want, sizeof(want) - 1)
static void assert_entry_is(const struct iovec *f, size_t n_fields, const char *want, size_t len) {
	char buf[128];
	ssize_t n = journal_entry_format(f, n_fields, buf, sizeof buf);
	assert_int_equal(n, len);
	assert_memory_equal(buf, want, len);
}

static void test_plain_fields(void **state) {
	struct iovec f[] = {FIELD("MESSAGE=hello"), FIELD("PRIORITY=6"), FIELD("TCPMAP_SNI=")};
	(void)state;
	assert_entry(f, "MESSAGE=hello\nPRIORITY=6\nTCPMAP_SNI=\n");
}

static void test_newline_is_binary(void **state) {
	struct iovec f[] = {FIELD("MESSAGE=a\nb"), FIELD("X=y")};
	(void)state;
	assert_entry(f, "MESSAGE\n\x03\0\0\0\0\0\0\0a\nb\nX=y\n");
}

static void test_refusals(void **state) {
	struct iovec no_eq[] = {FIELD("MESSAGE")}, no_key[] = {FIELD("=v")};
	struct iovec f[] = {FIELD("MESSAGE=hello")}, nl[] = {FIELD("M=\n")};
	char buf[64];
	(void)state;

	assert_int_equal(journal_entry_format(no_eq, 1, buf, sizeof buf), -EINVAL);
	assert_int_equal(journal_entry_format(no_key, 1, buf, sizeof buf), -EINVAL);
	/* exactly the length fits; a byte less does not, and nothing is cut */
	assert_int_equal(journal_entry_format(f, 1, buf, 14), 14);
	assert_int_equal(journal_entry_format(f, 1, buf, 13), -ENOBUFS);
	assert_int_equal(journal_entry_format(nl, 1, buf, 1 + 1 + 8 + 1 + 1), 12);
	assert_int_equal(journal_entry_format(nl, 1, buf, 11), -ENOBUFS);
	assert_int_equal(journal_entry_format(NULL, 0, buf, 0), 0);
}

int main(void) {
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_plain_fields),
	        cmocka_unit_test(test_newline_is_binary),
	        cmocka_unit_test(test_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
