/* test-config-alloc.c — the loader under allocation failure: fail the Nth allocation, for
 * every N until a load needs no more, and check that each load either fails with -ENOMEM,
 * returning no config, or returns the whole config. Never a config with a mapping missing.
 *
 * The Makefile links this binary alone with -Wl,--wrap for the allocator functions below,
 * so every allocation the tcpmap library makes goes through failing_allocator_*. libyaml's
 * own allocations (a shared library) and libc's internal ones (opendir, qsort) are not
 * hooked. Under SAN=1, LeakSanitizer checks that every failed load freed what it took. */
/* The YAML fixtures are laid out line by line as the YAML reads. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <sys/stat.h>

#include "config.h"
#include "helpers-config.h"
#include "util.h"

/* ---- the failing allocator ------------------------------------------------------------ */

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_vasprintf(char **ret, const char *fmt, va_list ap);

void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
int __wrap_vasprintf(char **ret, const char *fmt, va_list ap);
int __wrap_asprintf(char **ret, const char *fmt, ...);

static long allocations_before_failure = -1; /* -1: never fail */
static bool failure_injected;

static bool fail_this_allocation(void) {
	if (allocations_before_failure < 0)
		return false;
	if (allocations_before_failure-- > 0)
		return false;
	failure_injected = true;
	return true;
}

void *__wrap_malloc(size_t size) { return fail_this_allocation() ? NULL : __real_malloc(size); }
void *__wrap_calloc(size_t n, size_t size) {
	return fail_this_allocation() ? NULL : __real_calloc(n, size);
}
void *__wrap_realloc(void *p, size_t size) {
	return fail_this_allocation() ? NULL : __real_realloc(p, size);
}
char *__wrap_strdup(const char *s) { return fail_this_allocation() ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n) {
	return fail_this_allocation() ? NULL : __real_strndup(s, n);
}
int __wrap_vasprintf(char **ret, const char *fmt, va_list ap) {
	return fail_this_allocation() ? -1 : __real_vasprintf(ret, fmt, ap);
}
int __wrap_asprintf(char **ret, const char *fmt, ...) {
	va_list ap;
	int r;

	if (fail_this_allocation())
		return -1;
	va_start(ap, fmt);
	r = __real_vasprintf(ret, fmt, ap);
	va_end(ap);
	return r;
}

/* ---- fixtures ------------------------------------------------------------------------- */

/* Every kind, anchors and aliases, a directory of two files, and warnings and debug notes
 * on the way, so that diags are allocated too. */
static const char module_and_context[] =
	"apiVersion: getambassador.io/v2\n"
	"kind: Module\n"
	"metadata:\n"
	"  name: ambassador\n"
	"spec:\n"
	"  config:\n"
	"    enable_ipv6: true\n"
	"    connect_timeout_ms: 2000\n"
	"    circuit_breakers:\n"
	"    - max_connections: 100\n"
	"---\n"
	"apiVersion: getambassador.io/v2\n"
	"kind: TLSContext\n"
	"metadata:\n"
	"  name: ctx\n"
	"spec:\n"
	"  hosts: [\"a.example.com\", \"*.example.org\"]\n"
	"  secret: ctx-secret\n"
	"  alpn_protocols: \"h2, http/1.1\"\n"
	"  cipher_suites: [\"ECDHE-RSA-AES128-GCM-SHA256\"]\n"
	"  redirect_cleartext_from: 8080\n"
	"---\n"
	"apiVersion: getambassador.io/v2\n"
	"kind: Mapping\n"
	"metadata:\n"
	"  name: someone-elses\n"
	"spec:\n"
	"  prefix: /\n";

static const char mappings[] =
	"apiVersion: getambassador.io/v2\n"
	"kind: TCPMapping\n"
	"metadata:\n"
	"  name: blue\n"
	"spec:\n"
	"  port: 6443\n"
	"  service: blue.svc:8443\n"
	"  host: a.example.com\n"
	"  weight: 30\n"
	"  frobnicate: 1\n"
	"---\n"
	"apiVersion: getambassador.io/v2\n"
	"kind: TCPMapping\n"
	"metadata:\n"
	"  name: green\n"
	"spec:\n"
	"  port: 6443\n"
	"  service: green.svc:8443\n"
	"  host: a.example.com\n"
	"  weight: 30\n"
	"---\n"
	"apiVersion: getambassador.io/v2\n"
	"kind: TCPMapping\n"
	"metadata:\n"
	"  name: &name ssh\n"
	"  labels: {app: *name}\n"
	"spec:\n"
	"  port: 2222\n"
	"  address: 127.0.0.1\n"
	"  service: \"[::1]:22\"\n"
	"  idle_timeout_ms: 60000\n"
	"  circuit_breakers:\n"
	"  - max_connections: 5\n"
	"    max_pending_requests: 2\n"
	"  cluster_tag: x\n"
	"---\n"
	"apiVersion: getambassador.io/v3alpha1\n"
	"kind: TCPMapping\n"
	"metadata:\n"
	"  name: db\n"
	"spec:\n"
	"  port: 5432\n"
	"  service: db.svc\n"
	"  connect_timeout_ms: 500\n"
	"  enable_ipv4: &yes true\n"
	"  enable_ipv6: *yes\n"
	"  proxy_protocol: v2\n";

/* The model as text, without the generation number, which every load changes. */
static char *describe(const struct config *c) {
	char *text = NULL, *rest;
	size_t size = 0;
	FILE *f = open_memstream(&text, &size);

	assert_non_null(f);
	config_print_show(c, f);
	fclose(f);
	rest = strchr(text, '\n');
	assert_non_null(rest);
	rest = strdup(rest);
	free(text);
	return rest;
}

typedef int (*load_fn)(struct loaded *l, void *arg);

/* Load once without failures, then once per allocation the load makes, failing that one. */
static void check_every_failure(load_fn load, void *arg, size_t n_mappings) {
	_cleanup_free_ char *expected = NULL;
	struct loaded l = {};
	unsigned failed_loads = 0;
	long n;

	l.r = load(&l, arg);
	assert_int_equal(l.r, 0);
	assert_int_equal(l.config->n_mappings, n_mappings);
	assert_true(l.diags.n_warnings > 0); /* diags are allocated on the way too */
	expected = describe(l.config);
	loaded_free(&l);

	for (n = 0;; n++) {
		failure_injected = false;
		allocations_before_failure = n;
		l.r = load(&l, arg);
		allocations_before_failure = -1;
		if (!failure_injected) {
			/* the load made fewer than n+1 allocations: every one has been failed */
			assert_int_equal(l.r, 0);
			loaded_free(&l);
			break;
		}
		if (l.r == 0) {
			_cleanup_free_ char *got = describe(l.config);
			if (!streq(got, expected))
				print_message("# allocation %ld failed, the load returned this:\n%s\n",
				              n + 1, got);
			assert_string_equal(got, expected);
		} else {
			if (l.r != -ENOMEM)
				print_message("# allocation %ld failed, load returned %d\n", n + 1,
				              l.r);
			assert_int_equal(l.r, -ENOMEM);
			assert_null(l.config);
			failed_loads++;
		}
		loaded_free(&l);
	}
	print_message("# %ld allocations failed one by one, %u loads failed with -ENOMEM\n", n,
	              failed_loads);
	assert_true(n > 50);
	assert_true(failed_loads > 0);
}

static int load_buffer(struct loaded *l, void *arg) {
	const char *yaml = arg;
	return config_load_buffer("t.yaml", yaml, strlen(yaml), NULL, &l->config, &l->diags);
}

static void test_buffer(void **state) {
	_cleanup_free_ char *yaml = NULL;

	(void)state;
	assert_true(asprintf(&yaml, "%s---\n%s", module_and_context, mappings) > 0);
	check_every_failure(load_buffer, yaml, 4);
}

static void write_file(const char *dir, const char *name, const char *text) {
	_cleanup_free_ char *path = NULL;
	FILE *f;

	assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static int load_directory(struct loaded *l, void *arg) {
	const char *const paths[] = {arg};
	return config_load(paths, 1, NULL, &l->config, &l->diags);
}

static void test_directory(void **state) {
	char dir[] = "/tmp/test-config-alloc.XXXXXX";

	(void)state;
	assert_non_null(mkdtemp(dir));
	write_file(dir, "10-module.yaml", module_and_context);
	write_file(dir, "20-mappings.yml", mappings);
	check_every_failure(load_directory, dir, 4);
	{
		_cleanup_free_ char *a = NULL, *b = NULL;
		assert_true(asprintf(&a, "%s/10-module.yaml", dir) > 0);
		assert_true(asprintf(&b, "%s/20-mappings.yml", dir) > 0);
		assert_int_equal(unlink(a), 0);
		assert_int_equal(unlink(b), 0);
		assert_int_equal(rmdir(dir), 0);
	}
}

int main(void) {
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buffer),
		cmocka_unit_test(test_directory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
