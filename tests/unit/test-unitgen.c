/* test-unitgen.c — the generator's plan: unit names escaped as systemd-escape escapes them,
 * the instance text of each listener, the drop-in an IPv6 wildcard needs, and the files
 * written into a generator directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <limits.h>
#include <sys/stat.h>

#include "config.h"
#include "unitgen.h"
#include "util.h"

static void test_escape(void **state) {
	char buf[UNITGEN_NAME_MAX];
	(void)state;

	/* each expected value is what `systemd-escape` (systemd 252) printed for the input */
	static const struct {
		const char *in, *out;
	} cases[] = {
	        {"2222", "2222"},
	        {"127.0.0.1:2222", "127.0.0.1:2222"},
	        {"[::1]:2222", "\\x5b::1\\x5d:2222"},
	        {"[fe80::1%eth0]:22", "\\x5bfe80::1\\x25eth0\\x5d:22"},
	        {"a-b/c d.x", "a\\x2db-c\\x20d.x"},
	        {".hidden", "\\x2ehidden"},
	};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		assert_int_equal(unitgen_escape(cases[i].in, buf, sizeof buf), 0);
		assert_string_equal(buf, cases[i].out);
	}
	char small[8];
	assert_int_equal(unitgen_escape("[::1]:2222", small, sizeof small), -ENAMETOOLONG);
	assert_int_equal(unitgen_escape("1234567", small, sizeof small), 0);
	assert_int_equal(unitgen_escape("12345678", small, sizeof small), -ENAMETOOLONG);
}

static struct config *load(const char *yaml) {
	struct config *c = NULL;
	struct diag_list d = {0};
	int r = config_load_buffer("test.yaml", yaml, strlen(yaml), NULL, &c, &d);
	for (size_t i = 0; i < d.n; i++)
		if (d.items[i].level == DIAG_ERROR)
			print_message("%s\n", d.items[i].message);
	diag_list_free(&d);
	assert_int_equal(r, 0);
	return c;
}

static const char *three_listeners = "apiVersion: getambassador.io/v3alpha1\n"
                                     "kind: TCPMapping\n"
                                     "metadata: {name: a}\n"
                                     "spec: {port: 2201, address: 127.0.0.1, service: up:1}\n"
                                     "---\n"
                                     "apiVersion: getambassador.io/v3alpha1\n"
                                     "kind: TCPMapping\n"
                                     "metadata: {name: b}\n"
                                     "spec: {port: 2202, address: '::1', service: up:1}\n"
                                     "---\n"
                                     "apiVersion: getambassador.io/v3alpha1\n"
                                     "kind: TCPMapping\n"
                                     "metadata: {name: c}\n"
                                     "spec: {port: 2203, service: up:1}\n"
                                     "---\n"
                                     "apiVersion: getambassador.io/v3alpha1\n"
                                     "kind: TCPMapping\n"
                                     "metadata: {name: d}\n"
                                     "spec: {port: 2204, address: '::', service: up:1}\n";

static const struct unitgen_unit *find(const struct unitgen_plan *p, const char *name) {
	for (size_t i = 0; i < p->n_units; i++)
		if (streq(p->units[i].name, name))
			return &p->units[i];
	return NULL;
}

static void test_plan(void **state) {
	_cleanup_(config_unrefp) struct config *c = load(three_listeners);
	struct unitgen_plan p = {0};
	(void)state;

	assert_int_equal(unitgen_plan(c, &p), 0);
	assert_int_equal(p.n_units, 4);
	const struct unitgen_unit *a = find(&p, "tcpmap@127.0.0.1:2201.socket");
	const struct unitgen_unit *b = find(&p, "tcpmap@\\x5b::1\\x5d:2202.socket");
	const struct unitgen_unit *cu = find(&p, "tcpmap@2203.socket");
	const struct unitgen_unit *d = find(&p, "tcpmap@\\x5b::\\x5d:2204.socket");
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(cu);
	assert_non_null(d);
	assert_string_equal(b->instance, "[::1]:2202");
	assert_string_equal(cu->template, "tcpmap@.socket");
	/* only the IPv6 wildcard needs to be kept off IPv4 */
	assert_null(a->dropin);
	assert_null(b->dropin);
	assert_null(cu->dropin);
	assert_non_null(d->dropin);
	assert_non_null(strstr(d->dropin, "BindIPv6Only=ipv6-only"));
	unitgen_plan_free(&p);
}

static void test_write(void **state) {
	_cleanup_(config_unrefp) struct config *c = load(three_listeners);
	struct unitgen_plan p = {0};
	char dir[] = "/tmp/test-unitgen-XXXXXX", path[PATH_MAX], target[PATH_MAX];
	(void)state;

	assert_non_null(mkdtemp(dir));
	assert_int_equal(unitgen_plan(c, &p), 0);
	assert_int_equal(unitgen_write(&p, dir, "/lib/systemd/system"), 0);
	/* a second run over the same directory (systemd empties it, a test may not) is fine */
	assert_int_equal(unitgen_write(&p, dir, "/lib/systemd/system"), 0);

	snprintf(path, sizeof path, "%s/tcpmap.target.wants/tcpmap@127.0.0.1:2201.socket", dir);
	ssize_t n = readlink(path, target, sizeof target - 1);
	assert_true(n > 0);
	target[n] = '\0';
	assert_string_equal(target, "/lib/systemd/system/tcpmap@.socket");

	snprintf(path, sizeof path, "%s/tcpmap@\\x5b::\\x5d:2204.socket.d/%s", dir,
	         UNITGEN_DROPIN_NAME);
	FILE *f = fopen(path, "re");
	assert_non_null(f);
	char text[256] = "";
	size_t got = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[got] = '\0';
	assert_string_equal(text, "[Socket]\nBindIPv6Only=ipv6-only\n");

	/* print shows the same four links */
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	unitgen_print(&p, "/lib/systemd/system", out);
	fclose(out);
	size_t links = 0;
	for (char *s = buf; (s = strstr(s, "tcpmap.target.wants/")); s++)
		links++;
	assert_int_equal(links, 4);
	free(buf);

	unitgen_plan_free(&p);
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* A per_connection_unit listener is a tcpmap-inetd@ instance, named, linked and given its
 * drop-in exactly as a tcpmap@ one; the other listeners stay tcpmap@. */
static void test_plan_per_connection(void **state) {
	_cleanup_(config_unrefp) struct config *c =
	        load("apiVersion: getambassador.io/v2\n"
	             "kind: TCPMapping\n"
	             "metadata: {name: a}\n"
	             "spec: {port: 2201, address: 127.0.0.1, service: up:1}\n"
	             "---\n"
	             "apiVersion: getambassador.io/v2\n"
	             "kind: TCPMapping\n"
	             "metadata: {name: b}\n"
	             "spec: {port: 2202, address: '::', service: up:1, per_connection_unit: true}\n"
	             "---\n"
	             "apiVersion: getambassador.io/v2\n"
	             "kind: TCPMapping\n"
	             "metadata: {name: c}\n"
	             "spec: {port: 2203, service: up:1, per_connection_unit: true}\n");
	struct unitgen_plan p = {0};
	char dir[] = "/tmp/test-unitgen-XXXXXX", path[PATH_MAX], target[PATH_MAX];
	(void)state;

	assert_int_equal(unitgen_plan(c, &p), 0);
	assert_int_equal(p.n_units, 3);
	const struct unitgen_unit *a = find(&p, "tcpmap@127.0.0.1:2201.socket");
	const struct unitgen_unit *b = find(&p, "tcpmap-inetd@\\x5b::\\x5d:2202.socket");
	const struct unitgen_unit *cu = find(&p, "tcpmap-inetd@2203.socket");
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(cu);
	assert_false(a->per_connection);
	assert_true(b->per_connection);
	assert_string_equal(a->template, "tcpmap@.socket");
	assert_string_equal(b->template, "tcpmap-inetd@.socket");
	assert_string_equal(b->instance, "[::]:2202");
	assert_non_null(b->dropin);
	assert_non_null(strstr(b->dropin, "BindIPv6Only=ipv6-only"));
	assert_null(cu->dropin);

	assert_non_null(mkdtemp(dir));
	assert_int_equal(unitgen_write(&p, dir, "/lib/systemd/system"), 0);
	snprintf(path, sizeof path, "%s/tcpmap.target.wants/tcpmap-inetd@2203.socket", dir);
	ssize_t n = readlink(path, target, sizeof target - 1);
	assert_true(n > 0);
	target[n] = '\0';
	assert_string_equal(target, "/lib/systemd/system/tcpmap-inetd@.socket");
	snprintf(path, sizeof path, "%s/tcpmap-inetd@\\x5b::\\x5d:2202.socket.d/%s", dir,
	         UNITGEN_DROPIN_NAME);
	assert_int_equal(access(path, F_OK), 0);

	/* the review says which model each listener has */
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	unitgen_print(&p, "/lib/systemd/system", out);
	fclose(out);
	assert_non_null(strstr(buf, "tcpmap.target.wants/tcpmap-inetd@2203.socket -> "
	                            "/lib/systemd/system/tcpmap-inetd@.socket\t# listens on 2203, "
	                            "a unit per connection (per_connection_unit)\n"));
	assert_non_null(strstr(buf, "tcpmap.target.wants/tcpmap@127.0.0.1:2201.socket -> "
	                            "/lib/systemd/system/tcpmap@.socket\t# listens on "
	                            "127.0.0.1:2201\n"));
	free(buf);

	unitgen_plan_free(&p);
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void) {
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_escape),
	        cmocka_unit_test(test_plan),
	        cmocka_unit_test(test_write),
	        cmocka_unit_test(test_plan_per_connection),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
