/* test-netaddr.c — IP literals parsed and addresses printed the one way every file uses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "netaddr.h"
#include "util.h"

static void test_literals(void **state) {
	union sockaddr_ip a;
	socklen_t len = 0;
	int family = 0;
	(void)state;

	assert_int_equal(netaddr_parse_literal("127.0.0.2", 80, &family, &a, &len), 0);
	assert_int_equal(family, AF_INET);
	assert_int_equal(len, sizeof(struct sockaddr_in));
	assert_int_equal(ntohs(a.in.sin_port), 80);
	assert_int_equal(ntohl(a.in.sin_addr.s_addr), 0x7f000002);

	assert_int_equal(netaddr_parse_literal("::1", 443, &family, &a, &len), 0);
	assert_int_equal(family, AF_INET6);
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	assert_int_equal(ntohs(a.in6.sin6_port), 443);
	assert_true(IN6_IS_ADDR_LOOPBACK(&a.in6.sin6_addr));

	assert_true(netaddr_is_literal("0:0:0:0:0:0:0:1"));
	assert_false(netaddr_is_literal("[::1]"));
	assert_false(netaddr_is_literal("example.com"));
	assert_false(netaddr_is_literal("1.2.3"));
	assert_false(netaddr_is_literal("1.2.3.4:80"));
	assert_false(netaddr_is_literal(""));
	assert_false(netaddr_is_literal(NULL));
	assert_int_equal(netaddr_parse_literal("nope", 1, &family, &a, &len), -EINVAL);
}

static void test_canonical(void **state) {
	char buf[NETADDR_TEXT_MAX];
	(void)state;

	assert_int_equal(netaddr_canonical("0:0:0:0:0:0:0:1", buf, sizeof buf), 0);
	assert_string_equal(buf, "::1");
	assert_int_equal(netaddr_canonical("::FFFF:127.0.0.1", buf, sizeof buf), 0);
	assert_string_equal(buf, "127.0.0.1");
	assert_int_equal(netaddr_canonical("2001:DB8:0::1", buf, sizeof buf), 0);
	assert_string_equal(buf, "2001:db8::1");
	assert_int_equal(netaddr_canonical("::ffff:0.0.0.0", buf, sizeof buf), 0);
	assert_string_equal(buf, "0.0.0.0");
	assert_int_equal(netaddr_canonical("0:0::0", buf, sizeof buf), 0);
	assert_string_equal(buf, "::");
	assert_int_equal(netaddr_canonical("localhost", buf, sizeof buf), -EINVAL);
	assert_int_equal(netaddr_canonical("1.2.3.4", buf, 4), -ENAMETOOLONG);
}

static void test_format(void **state) {
	union sockaddr_ip a;
	char buf[NETADDR_TEXT_MAX];
	(void)state;

	assert_int_equal(netaddr_parse_literal("10.1.2.3", 8080, NULL, &a, NULL), 0);
	netaddr_format(&a.sa, buf, sizeof buf);
	assert_string_equal(buf, "10.1.2.3:8080");
	netaddr_format_host(&a.sa, buf, sizeof buf);
	assert_string_equal(buf, "10.1.2.3");

	assert_int_equal(netaddr_parse_literal("2001:db8::1", 26257, NULL, &a, NULL), 0);
	netaddr_format(&a.sa, buf, sizeof buf);
	assert_string_equal(buf, "[2001:db8::1]:26257");

	/* an IPv4 client on a dual-stack socket is logged as people wrote it */
	assert_int_equal(netaddr_parse_literal("::ffff:127.0.0.1", 22, NULL, &a, NULL), 0);
	netaddr_format(&a.sa, buf, sizeof buf);
	assert_string_equal(buf, "127.0.0.1:22");

	struct sockaddr other = {.sa_family = AF_UNIX};
	netaddr_format(&other, buf, sizeof buf);
	assert_string_equal(buf, "-");
	netaddr_format(NULL, buf, sizeof buf);
	assert_string_equal(buf, "-");

	/* a short buffer is cut, never overrun */
	char small[6];
	assert_int_equal(netaddr_parse_literal("192.168.100.200", 1, NULL, &a, NULL), 0);
	netaddr_format(&a.sa, small, sizeof small);
	assert_int_equal(strlen(small), sizeof small - 1);
}

int main(void) {
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_literals),
	        cmocka_unit_test(test_format),
	        cmocka_unit_test(test_canonical),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
