/* test-config.c — the YAML loader: every validation error with its line, the semantics of
 * weights, groups, defaults and listeners, and the doc's examples as shipped.
 *
 * Pure: reads YAML from memory or from conf/examples and a private temp directory; never
 * opens a socket. */
/* The YAML fixtures below are string literals spliced with HEAD(), laid out line by line as
 * the YAML reads; the formatter would fold them beyond recognition. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include "config.h"
#include "helpers-config.h"
#include "route.h"
#include "util.h"

#ifndef EXAMPLES_DIR
#define EXAMPLES_DIR "conf/examples"
#endif

/* ---- validation errors, each with its line -------------------------------------------- */

static void test_port_missing(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  service: up:22\n");
	assert_error(&l, 6, "mapping \"a\": port: missing");
	assert_string_equal(l.diags.items[0].message, "t.yaml:6:3: mapping \"a\": port: missing (required)");
	loaded_free(&l);
}

static void test_port_zero(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  service: up:22\n  port: 0\n");
	assert_error(&l, 7, "mapping \"a\": port: 0 is outside 1-65535");
	loaded_free(&l);
}

static void test_port_too_big(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  port: 70000\n  service: up:22\n");
	assert_error(&l, 6, "port: 70000 is outside 1-65535");
	assert_int_equal(l.diags.items[0].column, 9);
	loaded_free(&l);
}

static void test_service_missing(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  port: 2222\n");
	assert_error(&l, 6, "mapping \"a\": service: missing");
	loaded_free(&l);
}

static void test_service_path_and_scheme(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  port: 1\n  service: up:22/x\n---\n" HEAD("b")
				       "  port: 2\n  service: http://up:80\n");
	assert_error(&l, 7, "mapping \"a\": service: \"up:22/x\" must not include a path");
	/* http:// is dropped, as Emissary drops it; any other scheme is an error */
	assert_int_equal(l.diags.n_errors, 1);
	loaded_free(&l);
	l = load(HEAD("c") "  port: 2\n  service: ftp://up:80\n");
	assert_error(&l, 7, "mapping \"c\": service: \"ftp://up:80\" has a scheme other than https://");
	loaded_free(&l);
}

static void test_service_bad_port(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  port: 1\n  service: up:99999\n");
	assert_error(&l, 7, "service: port \"99999\" is not 1-65535");
	loaded_free(&l);
}

static void test_duplicate_names(void **state) {
	(void)state;
	struct loaded l = load(HEAD("dup") "  port: 1\n  service: a:1\n---\n" HEAD("dup")
				       "  port: 2\n  service: b:1\n");
	assert_error(&l, 12, "mapping \"dup\": metadata.name: duplicate name, first defined at t.yaml:4:9");
	loaded_free(&l);
}

static void test_duplicate_tlscontext_names(void **state) {
	(void)state;
	struct loaded l = load("apiVersion: getambassador.io/v2\nkind: TLSContext\nmetadata:\n  name: c\n"
			       "spec:\n  secret: s\n---\n"
			       "apiVersion: getambassador.io/v2\nkind: TLSContext\nmetadata:\n  name: c\n"
			       "spec:\n  secret: t\n---\n" HEAD("c") "  port: 1\n  service: a:1\n");
	/* Names are unique per kind: the TCPMapping "c" is fine, the second TLSContext is not. */
	assert_error(&l, 11, "tlscontext \"c\": metadata.name: duplicate name, first defined at t.yaml:4:9");
	assert_int_equal(l.diags.n_errors, 1);
	loaded_free(&l);
}

static void test_weight_over_100(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  port: 1\n  service: a:1\n  weight: 150\n");
	assert_error(&l, 8, "mapping \"a\": weight: 150 is over 100");
	loaded_free(&l);
}

static void test_weight_total_over_100(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  port: 1\n  service: a:1\n  weight: 60\n---\n" HEAD("b")
				       "  port: 1\n  service: b:1\n  weight: 50\n");
	assert_error(&l, 17, "mapping \"b\": weight: the weights of group (address *, port 1, host (any)) total 110, over 100");
	loaded_free(&l);
}

static void test_group_inconsistent(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  port: 1\n  service: a:1\n  idle_timeout_ms: \"500\"\n---\n" HEAD("b")
				       "  port: 1\n  service: b:1\n  idle_timeout_ms: 600\n");
	assert_error(&l, 17, "mapping \"b\": idle_timeout_ms: differs from mapping \"a\" (t.yaml:1:1)");
	loaded_free(&l);

	l = load(HEAD("a") "  port: 1\n  service: a:1\n---\n" HEAD("b") "  port: 1\n  service: b:1\n"
			   "  enable_ipv6: true\n");
	assert_error(&l, 16, "mapping \"b\": enable_ipv6: differs from mapping \"a\"");
	loaded_free(&l);

	l = load(HEAD("a") "  port: 1\n  service: a:1\n---\n" HEAD("b") "  port: 1\n  service: b:1\n"
			   "  circuit_breakers:\n  - max_connections: 5\n");
	assert_error(&l, 17, "circuit_breakers: differs");
	loaded_free(&l);

	l = load(HEAD("a") "  port: 1\n  service: a:1\n---\n" HEAD("b") "  port: 1\n  service: b:1\n"
			   "  tls: true\n");
	assert_error(&l, 16, "mapping \"b\": tls: differs");
	loaded_free(&l);
}

static void test_bad_types(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  port: \"abc\"\n  service: a:1\n  weight: [1]\n"
					 "  enable_ipv4: maybe\n  idle_timeout_ms: soon\n"
					 "  circuit_breakers: {max_connections: 1}\n");
	assert_error(&l, 6, "port: must be an integer, not the string \"abc\"");
	assert_diag(&l, DIAG_ERROR, 8, "weight: must be an integer, not a list");
	assert_diag(&l, DIAG_ERROR, 9, "enable_ipv4: must be true or false, not \"maybe\"");
	assert_diag(&l, DIAG_ERROR, 10, "idle_timeout_ms: \"soon\" is not a number of milliseconds");
	assert_diag(&l, DIAG_ERROR, 11, "circuit_breakers: must be a list");
	/* All of them, not just the first. */
	assert_int_equal(l.diags.n_errors, 5);
	loaded_free(&l);

	l = load(HEAD("a") "  port: abc\n  service: [a]\n");
	assert_error(&l, 6, "port: \"abc\" is not an integer");
	assert_diag(&l, DIAG_ERROR, 7, "service: must be a string, not a list");
	loaded_free(&l);
}

static void test_invalid_yaml(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  port: 1\n  service: [a, b\n  weight: 3\n");
	assert_error(&l, 8, "invalid YAML");
	assert_true(strncmp(l.diags.items[0].message, "t.yaml:8:", 9) == 0);
	loaded_free(&l);

	l = load("a: b\n c: d\n: : :\n");
	assert_int_equal(l.r, -EINVAL);
	assert_true(l.diags.n_errors >= 1);
	assert_true(strstr(l.diags.items[0].message, "invalid YAML") != NULL);
	assert_true(l.diags.items[0].line >= 1);
	loaded_free(&l);
}

static void test_not_utf8(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  port: 1\n  service: caf\xe9:1\n");
	assert_error(&l, 7, "invalid YAML");
	assert_true(strstr(l.diags.items[0].message, "UTF-8") != NULL);
	assert_true(strncmp(l.diags.items[0].message, "t.yaml:7:", 9) == 0);
	loaded_free(&l);
}

static void test_alias_bomb(void **state) {
	(void)state;
	static const char bomb[] = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
				   "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
				   "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
				   "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
				   "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
				   "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
	struct loaded l = load(bomb);
	assert_error(&l, 4, "aliases expand to more than 10000 nodes");
	loaded_free(&l);

	/* A small, legitimate alias is fine. */
	l = load(HEAD("a") "  port: 1\n  service: a:1\n  circuit_breakers: &cb\n  - max_connections: 3\n"
			   "---\n" HEAD("b") "  port: 2\n  service: b:1\n  circuit_breakers: *cb\n");
	/* Anchors are per document in YAML, so this one is unknown. */
	assert_error(&l, 18, "alias *cb refers to no earlier anchor");
	loaded_free(&l);

	l = load(HEAD("a") "  port: 1\n  service: &svc a:1\n  host: &h x.example\n"
			   "  circuit_breakers: &cb\n  - max_connections: 3\n  extra: *cb\n"
			   "---\napiVersion: getambassador.io/v2\nkind: TLSContext\nmetadata:\n"
			   "  name: c\nspec:\n  hosts: [x.example]\n");
	assert_ok(&l);
	assert_int_equal(l.config->mappings[0]->circuit_breakers.max_connections, 3);
	loaded_free(&l);
}

static void test_alias_limit_option(void **state) {
	(void)state;
	struct config_options opts = {.max_alias_expansion = 5};
	struct loaded l = load_opts("a: &a [1, 2, 3]\nb: [*a, *a]\n", &opts);
	assert_error(&l, 2, "aliases expand to more than 5 nodes");
	loaded_free(&l);
}

static void test_depth_limit(void **state) {
	(void)state;
	char yaml[400];
	size_t n = 0;

	for (int i = 0; i < 100; i++)
		yaml[n++] = '[';
	for (int i = 0; i < 100; i++)
		yaml[n++] = ']';
	yaml[n++] = '\n';
	yaml[n] = '\0';
	struct loaded l = load(yaml);
	assert_error(&l, 1, "nesting deeper than 64 levels");
	loaded_free(&l);
}

static void test_file_size_limit(void **state) {
	(void)state;
	struct config_options opts = {.max_file_size = 16};
	struct loaded l = load_opts(HEAD("a") "  port: 1\n  service: a:1\n", &opts);
	assert_int_equal(l.r, -EINVAL);
	assert_true(strstr(l.diags.items[0].message, "larger than 16 bytes") != NULL);
	loaded_free(&l);
}

static void test_api_version(void **state) {
	(void)state;
	struct loaded l = load("apiVersion: getambassador.io/v1\nkind: TCPMapping\nmetadata:\n"
			       "  name: a\nspec:\n  port: 1\n  service: a:1\n");
	assert_error(&l, 1, "apiVersion: \"getambassador.io/v1\" is not supported");
	loaded_free(&l);
}

static void test_tls_context_missing(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  port: 1\n  service: a:1\n  tls: nope\n---\n" HEAD("b")
				       "  port: 2\n  service: b:1\n  host: B.example.com\n");
	assert_error(&l, 8, "mapping \"a\": tls: no TLSContext named \"nope\"");
	assert_diag(&l, DIAG_ERROR, 17, "mapping \"b\": host: no TLSContext lists \"b.example.com\"");
	loaded_free(&l);
}

/* ---- warnings, skips and defaults ----------------------------------------------------- */

static void test_unknown_field_warns(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  port: 1\n  service: a:1\n  colour: blue\n  cluster_tag: x\n");
	assert_ok(&l);
	assert_diag(&l, DIAG_WARNING, 8, "mapping \"a\": colour: unknown field, ignoring");
	assert_int_equal(l.diags.n_warnings, 1);
	assert_diag(&l, DIAG_DEBUG, 9, "cluster_tag: not used by tcpmap");
	loaded_free(&l);
}

static void test_v3alpha1_extension_warns(void **state) {
	(void)state;
	struct loaded l = load("apiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nmetadata:\n"
			       "  name: a\nspec:\n  port: 1\n  service: a:1\n  connect_timeout_ms: 700\n"
			       "  proxy_protocol: v2\n");
	assert_ok(&l);
	assert_diag(&l, DIAG_WARNING, 8, "connect_timeout_ms: tcpmap extension in a getambassador.io/v3alpha1");
	assert_diag(&l, DIAG_WARNING, 9, "proxy_protocol: tcpmap extension");
	assert_int_equal(l.config->mappings[0]->connect_timeout_ms, 700);
	assert_int_equal(l.config->mappings[0]->proxy_protocol, PROXY_PROTOCOL_V2);
	loaded_free(&l);

	/* The same fields in v2 are silent. */
	l = load(HEAD("a") "  port: 1\n  service: a:1\n  connect_timeout_ms: \"700\"\n  proxy_protocol: v1\n");
	assert_ok(&l);
	assert_int_equal(l.diags.n_warnings, 0);
	assert_int_equal(l.config->mappings[0]->proxy_protocol, PROXY_PROTOCOL_V1);
	loaded_free(&l);
}

static void test_ambassador_id_skip(void **state) {
	(void)state;
	static const char yaml[] = HEAD("mine") "  port: 1\n  service: a:1\n---\n" HEAD("theirs")
		"  ambassador_id: [other, more]\n  port: 2\n  service: b:1\n---\n" HEAD("listed")
		"  ambassador_id: [other, default]\n  port: 3\n  service: c:1\n---\n" HEAD("str")
		"  ambassador_id: other\n  port: 4\n  service: d:1\n";
	struct loaded l = load(yaml);
	assert_ok(&l);
	assert_int_equal(l.config->n_mappings, 2);
	assert_string_equal(l.config->mappings[0]->name, "mine");
	assert_string_equal(l.config->mappings[1]->name, "listed");
	loaded_free(&l);

	struct config_options opts = {.ambassador_id = "other"};
	l = load_opts(yaml, &opts);
	assert_ok(&l);
	assert_int_equal(l.config->n_mappings, 3);
	assert_string_equal(l.config->mappings[0]->name, "theirs");
	assert_string_equal(l.config->module.ambassador_id, "other");
	loaded_free(&l);
}

static void test_other_kinds_skipped(void **state) {
	(void)state;
	struct loaded l = load("apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata:\n"
			       "  name: http\nspec:\n  prefix: /\n  service: http://x\n---\n"
			       "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n---\n" HEAD("a")
			       "  port: 1\n  service: a:1\n---\n");
	assert_ok(&l);
	assert_int_equal(l.config->n_mappings, 1);
	assert_diag(&l, DIAG_DEBUG, 2, "skipping kind Mapping");
	assert_diag(&l, DIAG_DEBUG, 10, "skipping kind Service");
	assert_int_equal(l.diags.n_warnings, 0);
	loaded_free(&l);
}

static void test_module_defaults(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  port: 1\n  service: a:1\n");
	assert_ok(&l);
	struct mapping *m = l.config->mappings[0];
	assert_true(m->enable_ipv4);
	assert_false(m->enable_ipv6);
	assert_int_equal(m->connect_timeout_ms, 3000);
	assert_int_equal(m->idle_timeout_ms, 0);
	assert_false(m->circuit_breakers.set);
	assert_int_equal(m->upstream_port, 1);
	assert_int_equal(l.config->module.preread_timeout_ms, 5000);
	assert_int_equal(l.config->module.drain_timeout_ms, 30000);
	/* not set: a stop closes what cannot move at once (server.c, drain_usec) */
	assert_false(l.config->module.drain_timeout_configured);
	loaded_free(&l);

	/* The Module may come after the mappings it configures. */
	l = load(HEAD("a") "  port: 1\n  service: a:1\n---\n" HEAD("b")
			   "  port: 2\n  service: b:1\n  enable_ipv6: false\n  connect_timeout_ms: 99\n"
			   "  circuit_breakers:\n  - max_pending_requests: 4\n"
			   "---\napiVersion: getambassador.io/v2\nkind: Module\nmetadata:\n  name: ambassador\n"
			   "spec:\n  config:\n    enable_ipv6: true\n    enable_ipv4: true\n"
			   "    use_remote_address: false\n    preread_timeout_ms: 1200\n"
			   "    connect_timeout_ms: \"1500\"\n    drain_timeout_ms: 10\n"
			   "    circuit_breakers:\n    - max_connections: 7\n      max_pending_requests: 2\n"
			   "    - priority: high\n      max_connections: 1\n");
	assert_ok(&l);
	m = find_mapping(l.config, "a");
	assert_true(m->enable_ipv4);
	assert_true(m->enable_ipv6);
	assert_int_equal(m->connect_timeout_ms, 1500);
	assert_true(m->circuit_breakers.set);
	assert_int_equal(m->circuit_breakers.max_connections, 7);
	assert_int_equal(m->circuit_breakers.max_pending_requests, 2);
	m = find_mapping(l.config, "b");
	assert_true(m->enable_ipv4);
	assert_false(m->enable_ipv6);
	assert_int_equal(m->connect_timeout_ms, 99);
	assert_int_equal(m->circuit_breakers.max_connections, 0);
	assert_int_equal(m->circuit_breakers.max_pending_requests, 4);
	assert_string_equal(m->cluster, "b:1|plain|-|0|4");
	assert_int_equal(l.config->module.preread_timeout_ms, 1200);
	assert_int_equal(l.config->module.drain_timeout_ms, 10);
	assert_true(l.config->module.drain_timeout_configured);
	assert_diag(&l, DIAG_WARNING, 36, "priority high is not applicable to TCP");
	loaded_free(&l);
}

static void test_module_other_name_ignored(void **state) {
	(void)state;
	struct loaded l = load("apiVersion: getambassador.io/v2\nkind: Module\nmetadata:\n  name: tls\n"
			       "spec:\n  config:\n    enable_ipv6: true\n---\n" HEAD("a")
			       "  port: 1\n  service: a:1\n");
	assert_ok(&l);
	assert_false(l.config->mappings[0]->enable_ipv6);
	loaded_free(&l);
}

static void test_breakers_not_applicable(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  port: 1\n  service: a:1\n  circuit_breakers:\n"
					 "  - priority: default\n    max_connections: 10\n    max_requests: 5\n"
					 "  - priority: high\n    max_connections: 1\n");
	assert_ok(&l);
	assert_diag(&l, DIAG_WARNING, 11, "circuit_breakers.max_requests: not applicable to TCP");
	assert_diag(&l, DIAG_WARNING, 12, "circuit_breakers: priority high is not applicable to TCP");
	assert_int_equal(l.config->mappings[0]->circuit_breakers.max_connections, 10);
	loaded_free(&l);

	l = load(HEAD("a") "  port: 1\n  service: a:1\n  circuit_breakers:\n  - priority: urgent\n");
	assert_error(&l, 9, "circuit_breakers.priority: \"urgent\" is not default or high");
	loaded_free(&l);
}

static void test_idle_timeout_forms(void **state) {
	(void)state;
	struct loaded l = load(HEAD("s") "  port: 1\n  service: a:1\n  idle_timeout_ms: \"500\"\n---\n" HEAD("i")
				       "  port: 2\n  service: a:1\n  idle_timeout_ms: 500\n---\n" HEAD("z")
				       "  port: 3\n  service: a:1\n  idle_timeout_ms: 0\n");
	assert_ok(&l);
	assert_int_equal(find_mapping(l.config, "s")->idle_timeout_ms, 500);
	assert_int_equal(find_mapping(l.config, "i")->idle_timeout_ms, 500);
	assert_int_equal(find_mapping(l.config, "z")->idle_timeout_ms, 0);
	loaded_free(&l);

	l = load(HEAD("a") "  port: 1\n  service: a:1\n  idle_timeout_ms: \"-5\"\n");
	assert_error(&l, 8, "idle_timeout_ms: \"-5\" is not a number");
	loaded_free(&l);
}

/* ---- weights -------------------------------------------------------------------------- */

static const char *weights_yaml(const char *w1, const char *w2, const char *w3) {
	static char buf[2048];
	const char *w[] = {w1, w2, w3};
	size_t n = 0;

	buf[0] = '\0';
	for (int i = 0; i < 3; i++) {
		if (!w[i])
			continue;
		n += (size_t)snprintf(buf + n, sizeof(buf) - n,
				      "---\napiVersion: getambassador.io/v2\nkind: TCPMapping\n"
				      "metadata:\n  name: m%d\nspec:\n  port: 7000\n  service: up%d:1\n%s",
				      i, i, w[i]);
	}
	return buf;
}

static void assert_weights(const struct loaded *l, int a, int b, int c) {
	int want[] = {a, b, c};
	assert_ok(l);
	for (size_t i = 0; i < l->config->n_mappings; i++)
		assert_int_equal(l->config->mappings[i]->effective_weight, want[i]);
	assert_int_equal(l->config->n_groups, 1);
}

static void test_weights_10_90(void **state) {
	(void)state;
	struct loaded l = load(weights_yaml("  weight: 10\n", "  weight: 90\n", NULL));
	assert_weights(&l, 10, 90, -1);
	assert_int_equal(l.diags.n_warnings, 0);
	loaded_free(&l);
}

static void test_weights_remainder_shared(void **state) {
	(void)state;
	struct loaded l = load(weights_yaml("  weight: 30\n", "", ""));
	assert_weights(&l, 30, 35, 35);
	loaded_free(&l);

	/* Rounding goes to the first unweighted ones so the sum is exactly 100. */
	l = load(weights_yaml("", "", ""));
	assert_weights(&l, 34, 33, 33);
	loaded_free(&l);

	l = load(weights_yaml("", "  weight: 1\n", ""));
	assert_weights(&l, 50, 1, 49);
	loaded_free(&l);
}

static void test_weight_single_zero(void **state) {
	(void)state;
	struct loaded l = load(weights_yaml("  weight: 0\n", NULL, NULL));
	assert_weights(&l, 100, -1, -1);
	assert_int_equal(l.config->mappings[0]->weight, 0);
	loaded_free(&l);
}

static void test_weights_scaled(void **state) {
	(void)state;
	struct loaded l = load(weights_yaml("  weight: 20\n", "  weight: 30\n", NULL));
	assert_weights(&l, 40, 60, -1);
	assert_diag(&l, DIAG_WARNING, 18, "total 50, under 100; scaled to 100");
	loaded_free(&l);

	/* Largest remainder: 33.3 + 33.3 + 33.3 -> 34 + 33 + 33. */
	l = load(weights_yaml("  weight: 1\n", "  weight: 1\n", "  weight: 1\n"));
	assert_weights(&l, 34, 33, 33);
	loaded_free(&l);

	l = load(weights_yaml("  weight: 10\n", "  weight: 0\n", "  weight: 60\n"));
	assert_weights(&l, 14, 0, 86);
	loaded_free(&l);
}

static void test_weight_zero_in_group(void **state) {
	(void)state;
	struct loaded l = load(weights_yaml("  weight: 0\n", "  weight: 100\n", NULL));
	assert_weights(&l, 0, 100, -1);
	loaded_free(&l);
}

/* ---- groups, listeners, services ------------------------------------------------------ */

#define TLSCTX_STAR                                                                                \
	"---\napiVersion: getambassador.io/v2\nkind: TLSContext\n"                                  \
	"metadata:\n  name: ctx\nspec:\n  hosts: [\"*.example.com\", "                            \
	"a.example.com, a.b.example.com, \"*.b.example.com\"]\n  secret: s\n"

static void test_groups_and_listeners(void **state) {
	(void)state;
	char yaml[4096];
	snprintf(yaml, sizeof(yaml),
		 "%s---\n" HEAD("catch") "  port: 443\n  service: c:1\n---\n" HEAD("wild")
		 "  port: 443\n  host: \"*.example.com\"\n  service: w:1\n---\n" HEAD("wild2")
		 "  port: 443\n  host: \"*.b.example.com\"\n  service: w2:1\n---\n" HEAD("exact")
		 "  port: 443\n  host: A.Example.com\n  service: e:1\n---\n" HEAD("local")
		 "  port: 445\n  address: 127.0.0.1\n  service: l:1\n---\n" HEAD("v6")
		 "  port: 445\n  address: \"[::1]\"\n  service: \"[::1]:8443\"\n---\n" HEAD("bare6")
		 "  port: 444\n  service: \"fe80::1\"\n  tls: true\n",
		 TLSCTX_STAR);
	struct loaded l = load(yaml);
	assert_ok(&l);
	struct config *c = l.config;
	assert_int_equal(c->n_listeners, 4);
	assert_int_equal(c->n_groups, 7);

	struct listener *any443 = config_find_listener_by_name(c, NULL, 443);
	assert_non_null(any443);
	assert_null(any443->address);
	assert_true(any443->needs_sni);
	assert_int_equal(any443->n_groups, 4);
	assert_string_equal(any443->groups[0]->host, "a.example.com");
	assert_false(any443->groups[0]->host_is_wildcard);
	assert_string_equal(any443->groups[1]->host, "*.b.example.com");
	assert_string_equal(any443->groups[2]->host, "*.example.com");
	assert_null(any443->groups[3]->host);
	assert_ptr_equal(any443->catch_all, any443->groups[3]);
	assert_string_equal(any443->groups[0]->key, "*|443|a.example.com");
	assert_string_equal(any443->catch_all->key, "*|443|*");

	/* every address: [::], which takes IPv4 too (issue 23, defect 6) */
	struct sockaddr_in6 *sin = (struct sockaddr_in6 *)&any443->sockaddr;
	assert_int_equal(sin->sin6_family, AF_INET6);
	assert_int_equal(ntohs(sin->sin6_port), 443);
	assert_true(IN6_IS_ADDR_UNSPECIFIED(&sin->sin6_addr));
	assert_int_equal(any443->sockaddr_len, sizeof(struct sockaddr_in6));

	struct listener *v6 = config_find_listener_by_name(c, "::1", 445);
	assert_non_null(v6);
	assert_string_equal(v6->address, "::1");
	assert_false(v6->needs_sni);
	assert_int_equal(((struct sockaddr_in6 *)&v6->sockaddr)->sin6_family, AF_INET6);
	assert_int_equal(v6->sockaddr_len, sizeof(struct sockaddr_in6));
	struct mapping *m = find_mapping(c, "v6");
	assert_string_equal(m->upstream_host, "::1");
	assert_int_equal(m->upstream_port, 8443);
	assert_string_equal(v6->catch_all->key, "::1|445|*");

	m = find_mapping(c, "bare6");
	assert_string_equal(m->upstream_host, "fe80::1");
	assert_int_equal(m->upstream_port, 443);
	assert_int_equal(m->tls, TLS_ORIGINATE_PLAIN);

	m = find_mapping(c, "exact");
	assert_string_equal(m->host, "a.example.com");
	assert_int_equal(m->upstream_port, 1);

	/* config_find_listener: exact address first, else the wildcard on that port. (One
	 * port cannot have both any more: the loader refuses what cannot bind.) */
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(445)};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	struct listener *local = config_find_listener(c, (struct sockaddr *)&a, sizeof(a));
	assert_non_null(local);
	assert_string_equal(local->address, "127.0.0.1");
	a.sin_port = htons(443);
	inet_pton(AF_INET, "127.0.0.2", &a.sin_addr);
	assert_ptr_equal(config_find_listener(c, (struct sockaddr *)&a, sizeof(a)), any443);
	a.sin_port = htons(9);
	assert_null(config_find_listener(c, (struct sockaddr *)&a, sizeof(a)));

	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(445)};
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &a6.sin6_addr);
	assert_ptr_equal(config_find_listener(c, (struct sockaddr *)&a6, sizeof(a6)), local);
	inet_pton(AF_INET6, "::1", &a6.sin6_addr);
	assert_ptr_equal(config_find_listener(c, (struct sockaddr *)&a6, sizeof(a6)), v6);
	a6.sin6_port = htons(443);
	inet_pton(AF_INET6, "::2", &a6.sin6_addr);
	assert_ptr_equal(config_find_listener(c, (struct sockaddr *)&a6, sizeof(a6)), any443);

	/* route_select_group on the real model. */
	assert_string_equal(route_select_group(any443, "A.EXAMPLE.COM.")->host, "a.example.com");
	assert_string_equal(route_select_group(any443, "x.b.example.com")->host, "*.b.example.com");
	assert_string_equal(route_select_group(any443, "z.example.com")->host, "*.example.com");
	assert_ptr_equal(route_select_group(any443, "other.org"), any443->catch_all);
	assert_ptr_equal(route_select_group(any443, NULL), any443->catch_all);
	loaded_free(&l);
}

/* Issue 23, defect 7: equivalent spellings make one listener, and a port that cannot bind
 * twice is refused with both mappings named. */
static void test_listener_addresses(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  port: 7001\n  address: \"::1\"\n  service: a:1\n  host: a.example\n  tls_passthrough: true\n---\n"
	                       HEAD("b") "  port: 7001\n  address: \"0:0:0:0:0:0:0:1\"\n  service: b:1\n---\n"
	                       HEAD("c") "  port: 7002\n  address: \"::ffff:127.0.0.1\"\n  service: c:1\n---\n"
	                       HEAD("d") "  port: 7002\n  address: 127.0.0.1\n  service: d:1\n  host: d.example\n  tls_passthrough: true\n---\n"
	                       HEAD("e") "  port: 7003\n  address: 0.0.0.0\n  service: e:1\n---\n"
	                       HEAD("f") "  port: 7003\n  service: f:1\n  host: f.example\n  tls_passthrough: true\n---\n"
	                       HEAD("g") "  port: 7004\n  address: \"::\"\n  service: g:1\n---\n"
	                       HEAD("h") "  port: 7004\n  address: 127.0.0.1\n  service: h:1\n");
	assert_ok(&l);
	assert_int_equal(l.config->n_listeners, 5);
	assert_string_equal(find_mapping(l.config, "b")->address, "::1");
	assert_string_equal(find_mapping(l.config, "c")->address, "127.0.0.1");
	assert_null(find_mapping(l.config, "e")->address);
	loaded_free(&l);

	l = load(HEAD("every") "  port: 7001\n  service: a:1\n---\n"
	         HEAD("one") "  port: 7001\n  address: 127.0.0.1\n  service: b:1\n");
	assert_error(&l, 15, "address: port 7001 on 127.0.0.1 cannot be bound beside port 7001 on every address of mapping \"every\"");
	loaded_free(&l);
	l = load(HEAD("six") "  port: 7001\n  address: \"::\"\n  service: a:1\n---\n"
	         HEAD("one") "  port: 7001\n  address: \"::1\"\n  service: b:1\n");
	assert_error(&l, 16, "address: port 7001 on ::1 cannot be bound beside port 7001 on :: of mapping \"six\"");
	loaded_free(&l);
}

static void test_host_invalid(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  port: 1\n  service: a:1\n  host: \"a.*.com\"\n");
	assert_error(&l, 8, "host: \"a.*.com\": a wildcard is allowed only as a whole leading label");
	loaded_free(&l);
}

static void test_tls_passthrough(void **state) {
	(void)state;
	struct loaded l = load(HEAD("p") "  port: 443\n  service: a:443\n  host: p.example\n  tls_passthrough: true\n");
	assert_ok(&l);
	assert_true(l.config->mappings[0]->tls_passthrough);
	assert_int_equal(l.config->mappings[0]->tls, TLS_ORIGINATE_NONE);
	loaded_free(&l);

	l = load(HEAD("p") "  port: 443\n  service: a:443\n  tls_passthrough: true\n");
	assert_error(&l, 8, "tls_passthrough: needs host");
	loaded_free(&l);
}

/* per_connection_unit picks the listener's socket unit (tcpmap-inetd@, lib/unitgen.c): a
 * setting of the listener, as per_connection_process is, and exclusive with it. */
static void test_per_connection_unit(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  port: 22\n  service: a:22\n  per_connection_unit: true\n---\n"
			       HEAD("b") "  port: 22\n  service: b:22\n  per_connection_unit: true\n---\n"
			       HEAD("c") "  port: 23\n  service: c:23\n");
	assert_ok(&l);
	assert_int_equal(l.diags.n_warnings, 0);
	assert_true(find_mapping(l.config, "a")->per_connection_unit);
	assert_true(find_mapping(l.config, "a")->group->listener->per_connection_unit);
	assert_false(find_mapping(l.config, "c")->group->listener->per_connection_unit);
	assert_false(find_mapping(l.config, "a")->group->listener->per_connection_process);
	loaded_free(&l);

	/* mappings that share the listener must agree; the error names the first */
	l = load(HEAD("a") "  port: 22\n  service: a:22\n  per_connection_unit: true\n---\n"
		 HEAD("b") "  port: 22\n  service: b:22\n  per_connection_unit: false\n");
	assert_error(&l, 17, "per_connection_unit: differs from mapping \"a\" (t.yaml:1:1) on the same listener (address *, port 22)");
	loaded_free(&l);
	/* left out is false, and the error points at the mapping */
	l = load(HEAD("a") "  port: 22\n  service: a:22\n  per_connection_unit: true\n---\n"
		 HEAD("b") "  port: 22\n  service: b:22\n  host: b.example\n  tls_passthrough: true\n");
	assert_error(&l, 0, "per_connection_unit: differs from mapping ");
	loaded_free(&l);

	/* a unit per connection is a process per connection already */
	l = load(HEAD("a") "  port: 22\n  service: a:22\n  per_connection_process: true\n  per_connection_unit: true\n");
	assert_error(&l, 9, "per_connection_unit: cannot be combined with per_connection_process");
	loaded_free(&l);
	l = load(HEAD("a") "  port: 22\n  service: a:22\n  per_connection_unit: yes please\n");
	assert_error(&l, 8, "per_connection_unit: must be true or false");
	loaded_free(&l);

	/* a tcpmap extension: Kubernetes prunes it from a v3alpha1 document */
	l = load("apiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nmetadata:\n"
		 "  name: a\nspec:\n  port: 1\n  service: a:1\n  per_connection_unit: true\n");
	assert_ok(&l);
	assert_diag(&l, DIAG_WARNING, 8, "per_connection_unit: tcpmap extension in a getambassador.io/v3alpha1");
	loaded_free(&l);
}

static void test_tlscontext_fields(void **state) {
	(void)state;
	struct loaded l = load("apiVersion: getambassador.io/v2\nkind: TLSContext\nmetadata:\n  name: full\n"
			       "spec:\n  hosts: [Foo.Example]\n  secret: s1\n  cert_chain_file: /c.pem\n"
			       "  private_key_file: /k.pem\n  ca_secret: ca\n  cacert_chain_file: /ca.pem\n"
			       "  cert_required: true\n  min_tls_version: v1.2\n  max_tls_version: v1.3\n"
			       "  cipher_suites: [A, B]\n  ecdh_curves: [X25519, P-256]\n"
			       "  alpn_protocols: \"h2, http/1.1\"\n  sni: up.example\n  frobnicate: 1\n"
			       "---\n" HEAD("m") "  port: 1\n  service: a:1\n  host: foo.example\n  tls: full\n");
	assert_ok(&l);
	struct tls_context *t = config_find_tls_context(l.config, "full");
	assert_non_null(t);
	assert_int_equal(t->n_hosts, 1);
	assert_string_equal(t->hosts[0], "foo.example");
	assert_null(t->hosts[1]);
	assert_string_equal(t->secret, "s1");
	assert_string_equal(t->cert_chain_file, "/c.pem");
	assert_string_equal(t->private_key_file, "/k.pem");
	assert_string_equal(t->ca_secret, "ca");
	assert_string_equal(t->cacert_chain_file, "/ca.pem");
	assert_true(t->cert_required);
	assert_string_equal(t->min_tls_version, "v1.2");
	assert_string_equal(t->max_tls_version, "v1.3");
	assert_string_equal(t->cipher_suites[1], "B");
	assert_null(t->cipher_suites[2]);
	assert_string_equal(t->ecdh_curves[0], "X25519");
	assert_string_equal(t->alpn_protocols[0], "h2");
	assert_string_equal(t->alpn_protocols[1], "http/1.1");
	assert_null(t->alpn_protocols[2]);
	assert_string_equal(t->sni, "up.example");
	assert_diag(&l, DIAG_WARNING, 19, "tlscontext \"full\": frobnicate: unknown field");
	struct mapping *m = l.config->mappings[0];
	assert_ptr_equal(m->tls_context, t);
	assert_int_equal(m->upstream_port, 1);
	assert_null(config_find_tls_context(l.config, "nope"));
	loaded_free(&l);

	l = load("apiVersion: getambassador.io/v2\nkind: TLSContext\nmetadata:\n  name: bad\n"
		 "spec:\n  secret: ../../etc\n  min_tls_version: v9\n");
	assert_error(&l, 6, "secret: \"../../etc\" is not a usable secret name");
	assert_diag(&l, DIAG_ERROR, 7, "min_tls_version: \"v9\" is not v1.0, v1.1, v1.2 or v1.3");
	loaded_free(&l);
}

static void test_group_limit(void **state) {
	(void)state;
	char *yaml = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&yaml, &size);

	for (int i = 0; i <= ROUTE_MAX_GROUP_MAPPINGS; i++)
		fprintf(f, "---\n" HEAD("m%d") "  port: 5\n  service: s:1\n", i);
	fclose(f);
	struct loaded l = load(yaml);
	assert_int_equal(l.r, -EINVAL);
	assert_true(find_diag(&l.diags, DIAG_ERROR, 1 + 8 * ROUTE_MAX_GROUP_MAPPINGS + 1,
			      "already has 32 mappings") != NULL);
	loaded_free(&l);
	free(yaml);
}

/* ---- files and directories ------------------------------------------------------------ */

static void write_file(const char *path, const char *text) {
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_directory_order(void **state) {
	(void)state;
	char dir[] = "/tmp/tcpmap-test-config-XXXXXX", path[256];
	struct config *c = NULL;
	struct diag_list d = {};

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/b.yaml", dir);
	write_file(path, HEAD("from-b") "  port: 1\n  service: b:1\n");
	snprintf(path, sizeof(path), "%s/a.yml", dir);
	write_file(path, HEAD("from-a") "  port: 2\n  service: a:1\n");
	snprintf(path, sizeof(path), "%s/c.txt", dir);
	write_file(path, "not yaml at all: [");
	snprintf(path, sizeof(path), "%s/.hidden.yaml", dir);
	write_file(path, "not yaml at all: [");

	const char *paths[] = {dir};
	assert_int_equal(config_load(paths, 1, NULL, &c, &d), 0);
	assert_int_equal(c->n_mappings, 2);
	assert_string_equal(c->mappings[0]->name, "from-a");
	assert_string_equal(c->mappings[1]->name, "from-b");
	assert_non_null(strstr(c->mappings[0]->pos.file, "/a.yml"));
	assert_true(c->generation > 0);
	config_unref(c);
	c = NULL;

	/* Positions name the file the error is in. */
	snprintf(path, sizeof(path), "%s/b.yaml", dir);
	write_file(path, HEAD("from-b") "  port: 0\n  service: b:1\n");
	assert_int_equal(config_load(paths, 1, NULL, &c, &d), -EINVAL);
	assert_null(c);
	bool found = false;
	for (size_t i = 0; i < d.n; i++)
		if (d.items[i].level == DIAG_ERROR && strstr(d.items[i].file, "/b.yaml") &&
		    d.items[i].line == 6)
			found = true;
	assert_true(found);
	diag_list_free(&d);

	const char *missing[] = {"/nonexistent/tcpmap.yaml"};
	assert_int_equal(config_load(missing, 1, NULL, &c, &d), -ENOENT);
	assert_null(c);
	assert_true(d.n_errors == 1);
	diag_list_free(&d);

	/* No diag list: errors still fail the load. */
	assert_int_equal(config_load(paths, 1, NULL, &c, NULL), -EINVAL);

	snprintf(path, sizeof(path), "%s/a.yml", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/b.yaml", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/c.txt", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/.hidden.yaml", dir);
	unlink(path);
	rmdir(dir);
}

static void test_refcount(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  port: 1\n  service: a:1\n");
	assert_ok(&l);
	assert_ptr_equal(config_ref(l.config), l.config);
	assert_int_equal(l.config->refcount, 2);
	assert_null(config_unref(l.config));
	assert_int_equal(l.config->refcount, 1);
	assert_null(config_unref(NULL));
	loaded_free(&l);
}

static char *capture_show(const struct config *c) {
	char *text = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&text, &size);
	config_print_show(c, f);
	fclose(f);
	return text;
}

static char *capture_route(const struct config *c, const char *addr, uint16_t port, const char *sni,
			   int *r) {
	char *text = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&text, &size);
	*r = config_print_route(c, addr, port, sni, f);
	fclose(f);
	return text;
}

static void test_show_and_route(void **state) {
	(void)state;
	struct loaded l = load(weights_yaml("  weight: 10\n  idle_timeout_ms: \"500\"\n",
					    "  weight: 90\n  idle_timeout_ms: \"500\"\n", NULL));
	assert_ok(&l);
	_cleanup_free_ char *show = capture_show(l.config);
	assert_non_null(strstr(show, "listener *:7000"));
	assert_non_null(strstr(show, "group host (any)"));
	assert_non_null(strstr(show, "mapping \"m0\"  weight 10%"));
	assert_non_null(strstr(show, "mapping \"m1\"  weight 90%"));
	assert_non_null(strstr(show, "upstream         up0:1\n"));
	assert_non_null(strstr(show, "ipv4 only"));
	assert_non_null(strstr(show, "idle timeout     500 ms"));
	assert_non_null(strstr(show, "connect timeout  3000 ms"));

	int r;
	_cleanup_free_ char *route = capture_route(l.config, NULL, 7000, NULL, &r);
	assert_int_equal(r, 0);
	assert_non_null(strstr(route, "catch-all"));
	assert_non_null(strstr(route, "first connection goes to mapping \"m1\""));
	_cleanup_free_ char *none = capture_route(l.config, "127.0.0.1", 7001, NULL, &r);
	assert_int_equal(r, -ENOENT);
	loaded_free(&l);

	l = load(HEAD("h") "  port: 443\n  host: h.example\n  service: up\n---\n" TLSCTX_STAR
		 "---\napiVersion: getambassador.io/v2\nkind: TLSContext\nmetadata:\n  name: c2\n"
		 "spec:\n  hosts: [h.example]\n---\n" HEAD("w") "  port: 443\n  host: \"*.example.com\"\n"
		 "  service: w\n  tls: true\n");
	assert_ok(&l);
	_cleanup_free_ char *show2 = capture_show(l.config);
	assert_non_null(strstr(show2, "upstream         up:80 (default port)"));
	assert_non_null(strstr(show2, "upstream         w:443 (default port)"));
	assert_non_null(strstr(show2, "(peeks SNI)"));
	_cleanup_free_ char *exact = capture_route(l.config, NULL, 443, "H.example", &r);
	assert_non_null(strstr(exact, "group host h.example: exact match"));
	_cleanup_free_ char *wild = capture_route(l.config, NULL, 443, "x.example.com", &r);
	assert_non_null(strstr(wild, "wildcard match"));
	_cleanup_free_ char *miss = capture_route(l.config, NULL, 443, "other", &r);
	/* issue 24 item 5: no group taking the SNI is a failure (route exits 1) */
	assert_int_equal(r, -ESRCH);
	assert_non_null(strstr(miss, "no match"));
	loaded_free(&l);
}

/* ---- the doc's examples, as shipped in conf/examples ---------------------------------- */

static struct config *load_example(const char *name) {
	char path[512];
	struct config *c = NULL;
	struct diag_list d = {};

	snprintf(path, sizeof(path), "%s/%s", EXAMPLES_DIR, name);
	const char *paths[] = {path};
	int r = config_load(paths, 1, NULL, &c, &d);
	if (r != 0)
		print_diags(&d);
	assert_int_equal(r, 0);
	assert_int_equal(d.n_errors, 0);
	assert_int_equal(d.n_warnings, 0);
	diag_list_free(&d);
	return c;
}

static void test_example_ssh(void **state) {
	(void)state;
	struct config *c = load_example("ssh.yaml");
	assert_int_equal(c->n_mappings, 1);
	struct mapping *m = c->mappings[0];
	assert_string_equal(m->name, "ssh");
	assert_int_equal(m->port, 2222);
	assert_string_equal(m->upstream_host, "upstream");
	assert_int_equal(m->upstream_port, 22);
	assert_int_equal(m->effective_weight, 100);
	assert_int_equal(c->n_listeners, 1);
	assert_false(c->listeners[0]->needs_sni);
	assert_ptr_equal(c->listeners[0]->catch_all, m->group);
	config_unref(c);
}

static void test_example_cockroach(void **state) {
	(void)state;
	struct config *c = load_example("cockroach.yaml");
	assert_int_equal(c->n_mappings, 1);
	assert_string_equal(c->mappings[0]->name, "cockroach");
	assert_int_equal(c->mappings[0]->port, 26257);
	assert_string_equal(c->mappings[0]->upstream_host, "cockroach");
	assert_int_equal(c->mappings[0]->upstream_port, 26257);
	config_unref(c);
}

static void test_example_tls_terminate(void **state) {
	(void)state;
	struct config *c = load_example("tls-terminate.yaml");
	assert_int_equal(c->n_tls_contexts, 1);
	assert_string_equal(c->tls_contexts[0]->name, "my-context");
	assert_int_equal(c->tls_contexts[0]->n_hosts, 2);
	assert_string_equal(c->tls_contexts[0]->secret, "supersecret");
	assert_int_equal(c->n_mappings, 2);
	assert_int_equal(c->n_listeners, 1);
	struct listener *l = c->listeners[0];
	assert_true(l->needs_sni);
	assert_null(l->catch_all);
	assert_int_equal(l->n_groups, 2);
	for (int i = 0; i < 2; i++) {
		struct mapping *m = c->mappings[i];
		assert_int_equal(m->port, 2222);
		assert_int_equal(m->tls, TLS_ORIGINATE_NONE);
		assert_int_equal(m->upstream_port, 9999);
	}
	assert_string_equal(route_select_group(l, "my-host-1")->mappings[0]->upstream_host,
			    "upstream-host-1");
	assert_string_equal(route_select_group(l, "my-host-2")->mappings[0]->upstream_host,
			    "upstream-host-2");
	assert_null(route_select_group(l, "my-host-3"));
	assert_null(route_select_group(l, NULL));
	config_unref(c);
}

static void test_example_tls_terminate_originate(void **state) {
	(void)state;
	struct config *c = load_example("tls-terminate-originate.yaml");
	assert_int_equal(c->n_tls_contexts, 2);
	struct mapping *t1 = find_mapping(c, "test-1"), *t2 = find_mapping(c, "test-2");
	assert_string_equal(t1->host, "my-host-1");
	assert_int_equal(t1->tls, TLS_ORIGINATE_PLAIN);
	assert_null(t1->tls_context);
	assert_string_equal(t2->host, "my-host-2");
	assert_int_equal(t2->tls, TLS_ORIGINATE_CONTEXT);
	assert_string_equal(t2->tls_context_name, "origination-context");
	assert_ptr_equal(t2->tls_context, config_find_tls_context(c, "origination-context"));
	assert_string_equal(t2->tls_context->secret, "othersecret");
	assert_int_equal(t2->upstream_port, 9999);
	assert_true(c->listeners[0]->needs_sni);
	config_unref(c);
}

static void test_example_tls_originate(void **state) {
	(void)state;
	struct config *c = load_example("tls-originate.yaml");
	assert_int_equal(c->n_mappings, 1);
	struct mapping *m = c->mappings[0];
	assert_string_equal(m->name, "test");
	assert_null(m->host);
	assert_int_equal(m->tls, TLS_ORIGINATE_PLAIN);
	assert_string_equal(m->upstream_host, "upstream-host");
	assert_int_equal(m->upstream_port, 9999);
	assert_false(c->listeners[0]->needs_sni);
	config_unref(c);
}

/* One rule for "which TLSContext terminates this host", asked by the loader and lib/tls:
 * an exact name beats a wildcard, a longer wildcard a shorter one, "*" comes last, and a
 * wildcard host is covered only by that same wildcard (or "*"). */
static void test_tlscontext_for_host(void **state) {
	(void)state;
	struct loaded l = load(
		"apiVersion: getambassador.io/v2\nkind: TLSContext\nmetadata:\n  name: any\n"
		"spec:\n  hosts: [\"*\"]\n"
		"---\napiVersion: getambassador.io/v2\nkind: TLSContext\nmetadata:\n  name: short\n"
		"spec:\n  hosts: [\"*.example.com\"]\n"
		"---\napiVersion: getambassador.io/v2\nkind: TLSContext\nmetadata:\n  name: long\n"
		"spec:\n  hosts: [\"*.b.example.com\"]\n"
		"---\napiVersion: getambassador.io/v2\nkind: TLSContext\nmetadata:\n  name: exact\n"
		"spec:\n  hosts: [\"a.b.example.com\", \"x.example.org\"]\n"
		"---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata:\n  name: m\n"
		"spec:\n  port: 443\n  service: up\n");
	const struct config *c;

	assert_ok(&l);
	c = l.config;
	assert_string_equal(model_tlscontext_for_host(c, "a.b.example.com")->name, "exact");
	assert_string_equal(model_tlscontext_for_host(c, "A.B.Example.COM.")->name, "exact");
	assert_string_equal(model_tlscontext_for_host(c, "z.b.example.com")->name, "long");
	assert_string_equal(model_tlscontext_for_host(c, "b.example.com")->name, "short");
	assert_string_equal(model_tlscontext_for_host(c, "*.example.com")->name, "short");
	/* a wildcard covers any depth below it, as Envoy's server_names match */
	assert_string_equal(model_tlscontext_for_host(c, "*.c.example.com")->name, "short");
	assert_string_equal(model_tlscontext_for_host(c, "*.b.example.com")->name, "long");
	assert_string_equal(model_tlscontext_for_host(c, "example.net")->name, "any");
	assert_null(model_tlscontext_for_host(c, NULL));

	assert_true(model_tlscontext_covers(config_find_tls_context(c, "exact"), "x.example.org"));
	assert_false(model_tlscontext_covers(config_find_tls_context(c, "exact"), "y.example.org"));
	assert_true(model_tlscontext_covers(config_find_tls_context(c, "short"), "q.example.com"));
	assert_true(model_tlscontext_covers(config_find_tls_context(c, "short"),
					    "q.b.example.com"));
	assert_false(model_tlscontext_covers(config_find_tls_context(c, "long"), "*.example.com"));
	loaded_free(&l);
}

int main(void) {
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_port_missing),
		cmocka_unit_test(test_port_zero),
		cmocka_unit_test(test_port_too_big),
		cmocka_unit_test(test_service_missing),
		cmocka_unit_test(test_service_path_and_scheme),
		cmocka_unit_test(test_service_bad_port),
		cmocka_unit_test(test_duplicate_names),
		cmocka_unit_test(test_duplicate_tlscontext_names),
		cmocka_unit_test(test_weight_over_100),
		cmocka_unit_test(test_weight_total_over_100),
		cmocka_unit_test(test_group_inconsistent),
		cmocka_unit_test(test_bad_types),
		cmocka_unit_test(test_invalid_yaml),
		cmocka_unit_test(test_not_utf8),
		cmocka_unit_test(test_alias_bomb),
		cmocka_unit_test(test_alias_limit_option),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_file_size_limit),
		cmocka_unit_test(test_api_version),
		cmocka_unit_test(test_tls_context_missing),
		cmocka_unit_test(test_unknown_field_warns),
		cmocka_unit_test(test_v3alpha1_extension_warns),
		cmocka_unit_test(test_ambassador_id_skip),
		cmocka_unit_test(test_other_kinds_skipped),
		cmocka_unit_test(test_module_defaults),
		cmocka_unit_test(test_module_other_name_ignored),
		cmocka_unit_test(test_breakers_not_applicable),
		cmocka_unit_test(test_idle_timeout_forms),
		cmocka_unit_test(test_weights_10_90),
		cmocka_unit_test(test_weights_remainder_shared),
		cmocka_unit_test(test_weight_single_zero),
		cmocka_unit_test(test_weights_scaled),
		cmocka_unit_test(test_weight_zero_in_group),
		cmocka_unit_test(test_groups_and_listeners),
		cmocka_unit_test(test_listener_addresses),
		cmocka_unit_test(test_host_invalid),
		cmocka_unit_test(test_tls_passthrough),
		cmocka_unit_test(test_per_connection_unit),
		cmocka_unit_test(test_tlscontext_fields),
		cmocka_unit_test(test_group_limit),
		cmocka_unit_test(test_directory_order),
		cmocka_unit_test(test_refcount),
		cmocka_unit_test(test_show_and_route),
		cmocka_unit_test(test_example_ssh),
		cmocka_unit_test(test_example_cockroach),
		cmocka_unit_test(test_example_tls_terminate),
		cmocka_unit_test(test_example_tls_terminate_originate),
		cmocka_unit_test(test_example_tls_originate),
		cmocka_unit_test(test_tlscontext_for_host),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
/* clang-format on */
