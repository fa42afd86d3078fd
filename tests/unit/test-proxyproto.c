/* test-proxyproto.c — PROXY protocol v1/v2 headers: exact bytes written, buffer limits,
 * address families, and write-then-parse round trips.
 *
 * Pure byte tests; expected headers are spelled out by hand from HAProxy's
 * proxy-protocol.txt rather than produced by the code under test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "proxyproto.h"
#include "util.h"

static struct sockaddr_storage inet4(const char *addr, uint16_t port) {
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;

	in->sin_family = AF_INET;
	in->sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, addr, &in->sin_addr), 1);
	return ss;
}

static struct sockaddr_storage inet6(const char *addr, uint16_t port) {
	struct sockaddr_storage ss = {0};
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, addr, &in6->sin6_addr), 1);
	return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

/* Write with `version` and compare to the expected bytes; also check that every smaller
 * buffer is refused and that the parser reads the same header back. */
static void assert_written(enum proxy_protocol version, const struct sockaddr *src,
                           const struct sockaddr *dst, const void *expected, size_t expected_len) {
	uint8_t buf[PROXYPROTO_HEADER_MAX];
	struct proxyproto_header parsed;
	int n;

	n = proxyproto_write(version, src, dst, buf, sizeof(buf));
	assert_int_equal(n, (int)expected_len);
	assert_memory_equal(buf, expected, expected_len);
	for (size_t size = 0; size < expected_len; size++) {
		uint8_t *small = malloc(size ? size : 1);
		assert_non_null(small);
		assert_int_equal(proxyproto_write(version, src, dst, small, size), -ENOBUFS);
		free(small);
	}
	/* every strict prefix is "need more", the whole is the header */
	for (size_t len = 0; len < expected_len; len++)
		assert_int_equal(proxyproto_parse(buf, len, &parsed), 0);
	assert_int_equal(proxyproto_parse(buf, expected_len, &parsed), (int)expected_len);
	assert_int_equal(parsed.version, version);
}

static void assert_sockaddr_equal(const struct sockaddr_storage *got,
                                  const struct sockaddr_storage *want) {
	assert_int_equal(got->ss_family, want->ss_family);
	if (want->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)got, *b = (const void *)want;
		assert_int_equal(a->sin_port, b->sin_port);
		assert_memory_equal(&a->sin_addr, &b->sin_addr, 4);
	} else {
		const struct sockaddr_in6 *a = (const void *)got, *b = (const void *)want;
		assert_int_equal(a->sin6_port, b->sin6_port);
		assert_memory_equal(&a->sin6_addr, &b->sin6_addr, 16);
	}
}

static void test_v1_tcp4(void **state) {
	struct sockaddr_storage src = inet4("192.0.2.1", 56324), dst = inet4("127.0.0.1", 443);
	static const char expected[] = "PROXY TCP4 192.0.2.1 127.0.0.1 56324 443\r\n";
	struct proxyproto_header h;
	uint8_t buf[PROXYPROTO_HEADER_MAX];
	(void)state;

	assert_written(PROXY_PROTOCOL_V1, SA(src), SA(dst), expected, strlen(expected));
	proxyproto_write(PROXY_PROTOCOL_V1, SA(src), SA(dst), buf, sizeof(buf));
	assert_int_equal(proxyproto_parse(buf, strlen(expected), &h), (int)strlen(expected));
	assert_true(h.has_addresses);
	assert_sockaddr_equal(&h.src, &src);
	assert_sockaddr_equal(&h.dst, &dst);
}

static void test_v1_tcp6(void **state) {
	struct sockaddr_storage src = inet6("2001:db8::1", 1234), dst = inet6("::1", 8443);
	static const char expected[] = "PROXY TCP6 2001:db8::1 ::1 1234 8443\r\n";
	(void)state;

	assert_written(PROXY_PROTOCOL_V1, SA(src), SA(dst), expected, strlen(expected));
}

static void test_v1_longest(void **state) {
	struct sockaddr_storage a = inet6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
	static const char expected[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	                               "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	(void)state;

	assert_true(strlen(expected) <= PROXYPROTO_V1_MAX);
	assert_written(PROXY_PROTOCOL_V1, SA(a), SA(a), expected, strlen(expected));
}

static void test_v1_mapped_and_mixed(void **state) {
	struct sockaddr_storage mapped = inet6("::ffff:192.0.2.7", 40000),
	                        v4 = inet4("127.0.0.2", 80), v6 = inet6("::1", 80);
	static const char as_tcp4[] = "PROXY TCP4 192.0.2.7 127.0.0.2 40000 80\r\n";
	static const char as_tcp6[] = "PROXY TCP6 ::ffff:192.0.2.7 ::1 40000 80\r\n";
	(void)state;

	assert_written(PROXY_PROTOCOL_V1, SA(mapped), SA(v4), as_tcp4, strlen(as_tcp4));
	assert_written(PROXY_PROTOCOL_V1, SA(mapped), SA(v6), as_tcp6, strlen(as_tcp6));
}

static void test_v1_unknown(void **state) {
	struct sockaddr_storage v4 = inet4("127.0.0.1", 1);
	struct sockaddr_un un = {.sun_family = AF_UNIX, .sun_path = "/run/x"};
	static const char expected[] = "PROXY UNKNOWN\r\n";
	struct proxyproto_header h;
	(void)state;

	assert_written(PROXY_PROTOCOL_V1, (const struct sockaddr *)&un, SA(v4), expected,
	               strlen(expected));
	assert_written(PROXY_PROTOCOL_V1, NULL, NULL, expected, strlen(expected));
	assert_int_equal(proxyproto_parse((const uint8_t *)expected, strlen(expected), &h),
	                 (int)strlen(expected));
	assert_false(h.has_addresses);
}

static void test_v2_tcp4(void **state) {
	struct sockaddr_storage src = inet4("192.0.2.1", 56324), dst = inet4("127.0.0.1", 443);
	static const uint8_t expected[] = {
	        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, /* sig */
	        0x21, 0x11, 0x00, 0x0c,                      /* PROXY, TCP4, 12 */
	        192,  0,    2,    1,    127,  0,    0,    1, /* addresses */
	        0xdc, 0x04, 0x01, 0xbb,                      /* ports */
	};
	struct proxyproto_header h;
	uint8_t buf[PROXYPROTO_HEADER_MAX];
	(void)state;

	assert_written(PROXY_PROTOCOL_V2, SA(src), SA(dst), expected, sizeof(expected));
	proxyproto_write(PROXY_PROTOCOL_V2, SA(src), SA(dst), buf, sizeof(buf));
	assert_int_equal(proxyproto_parse(buf, sizeof(expected), &h), (int)sizeof(expected));
	assert_true(h.has_addresses);
	assert_sockaddr_equal(&h.src, &src);
	assert_sockaddr_equal(&h.dst, &dst);
}

static void test_v2_tcp6_and_mapped(void **state) {
	struct sockaddr_storage src = inet6("2001:db8::1", 1), dst = inet6("::1", 2),
	                        mapped = inet6("::ffff:10.0.0.1", 3), v4 = inet4("10.0.0.2", 4);
	uint8_t buf[PROXYPROTO_HEADER_MAX];
	struct proxyproto_header h;
	(void)state;

	assert_int_equal(proxyproto_write(PROXY_PROTOCOL_V2, SA(src), SA(dst), buf, sizeof(buf)),
	                 52);
	assert_int_equal(buf[12], 0x21);
	assert_int_equal(buf[13], 0x21);
	assert_int_equal(buf[15], 36);
	assert_int_equal(proxyproto_parse(buf, 52, &h), 52);
	assert_sockaddr_equal(&h.src, &src);
	assert_sockaddr_equal(&h.dst, &dst);
	assert_int_equal(proxyproto_write(PROXY_PROTOCOL_V2, SA(src), SA(dst), buf, 51), -ENOBUFS);

	assert_int_equal(proxyproto_write(PROXY_PROTOCOL_V2, SA(mapped), SA(v4), buf, sizeof(buf)),
	                 28);
	assert_int_equal(buf[13], 0x11);
	assert_int_equal(proxyproto_parse(buf, 28, &h), 28);
	assert_int_equal(h.src.ss_family, AF_INET);
	assert_string_equal(inet_ntoa(((struct sockaddr_in *)&h.src)->sin_addr), "10.0.0.1");
}

static void test_v2_unknown(void **state) {
	struct sockaddr_un un = {.sun_family = AF_UNIX, .sun_path = "/run/x"};
	static const uint8_t expected[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
	                                   0x55, 0x49, 0x54, 0x0a, 0x20, 0x00, 0x00, 0x00};
	struct proxyproto_header h;
	(void)state;

	assert_written(PROXY_PROTOCOL_V2, (const struct sockaddr *)&un,
	               (const struct sockaddr *)&un, expected, sizeof(expected));
	assert_int_equal(proxyproto_parse(expected, sizeof(expected), &h), 16);
	assert_false(h.has_addresses);
}

static void test_bad_version(void **state) {
	struct sockaddr_storage a = inet4("127.0.0.1", 1);
	uint8_t buf[PROXYPROTO_HEADER_MAX];
	(void)state;

	assert_int_equal(proxyproto_write(PROXY_PROTOCOL_NONE, SA(a), SA(a), buf, sizeof(buf)),
	                 -EINVAL);
}

static void test_parse_v1_rejects(void **state) {
	static const char *const bad[] = {
	        "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
	        "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
	        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
	        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
	        "PROXY TCP4 ::1 ::1 1 2\r\n",
	        "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
	        "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
	        "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
	        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
	        "PROXY \r\n",
	        "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
	        "GET / HTTP/1.1\r\n",
	};
	uint8_t no_crlf[200];
	struct proxyproto_header h;
	(void)state;

	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		if (proxyproto_parse((const uint8_t *)bad[i], strlen(bad[i]), &h) != -EINVAL)
			fail_msg("accepted: %s", bad[i]);

	memcpy(no_crlf, "PROXY UNKNOWN ", 14);
	memset(no_crlf + 14, 'x', sizeof(no_crlf) - 14);
	assert_int_equal(proxyproto_parse(no_crlf, PROXYPROTO_V1_MAX - 1, &h), 0);
	assert_int_equal(proxyproto_parse(no_crlf, PROXYPROTO_V1_MAX, &h), -EINVAL);
	/* UNKNOWN may carry anything up to the CRLF */
	memcpy(no_crlf + 50, "\r\n", 2);
	assert_int_equal(proxyproto_parse(no_crlf, sizeof(no_crlf), &h), 52);
	assert_false(h.has_addresses);
}

static void test_parse_v2_variants(void **state) {
	uint8_t buf[64] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
	                   0x21, 0x11, 0x00, 0x12, 10,   0,    0,    1,    10,   0,    0,    2,
	                   0x00, 0x50, 0x01, 0xbb, 0x04, 0x00, 0x02, 'h',  'i',  0x00};
	struct proxyproto_header h;
	(void)state;

	/* TLVs after the addresses are skipped with the block */
	assert_int_equal(proxyproto_parse(buf, 33, &h), 0);
	assert_int_equal(proxyproto_parse(buf, 34, &h), 34);
	assert_int_equal(ntohs(((struct sockaddr_in *)&h.dst)->sin_port), 443);

	buf[12] = 0x11; /* version 1 in the binary format */
	assert_int_equal(proxyproto_parse(buf, 34, &h), -EINVAL);
	buf[12] = 0x22; /* unknown command */
	assert_int_equal(proxyproto_parse(buf, 34, &h), -EINVAL);
	buf[12] = 0x21;
	buf[13] = 0x13; /* unknown transport */
	assert_int_equal(proxyproto_parse(buf, 34, &h), -EINVAL);
	buf[13] = 0x31; /* AF_UNIX: valid, but nothing tcpmap can use */
	assert_int_equal(proxyproto_parse(buf, 34, &h), 34);
	assert_false(h.has_addresses);
	buf[13] = 0x21; /* TCP6 needs 36 bytes of addresses */
	assert_int_equal(proxyproto_parse(buf, 34, &h), -EINVAL);
	buf[5] = 0x00; /* broken signature */
	assert_int_equal(proxyproto_parse(buf, 6, &h), -EINVAL);
}

int main(void) {
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_v1_tcp4),
	        cmocka_unit_test(test_v1_tcp6),
	        cmocka_unit_test(test_v1_longest),
	        cmocka_unit_test(test_v1_mapped_and_mixed),
	        cmocka_unit_test(test_v1_unknown),
	        cmocka_unit_test(test_v2_tcp4),
	        cmocka_unit_test(test_v2_tcp6_and_mapped),
	        cmocka_unit_test(test_v2_unknown),
	        cmocka_unit_test(test_bad_version),
	        cmocka_unit_test(test_parse_v1_rejects),
	        cmocka_unit_test(test_parse_v2_variants),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
