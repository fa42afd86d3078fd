/* test-config-strict.c — issue 24's loader items: YAML merge keys, duplicate keys anywhere,
 * breaker lists without a default item, passthrough without a host, Kubernetes names,
 * escaped diags, the v3alpha1 Module warning, and the smaller strictness fixes (leading
 * zeros, quoted booleans, negative weights, normalised clusters, host and service names,
 * misspelled kinds, unknown Module config keys, overlapping TLSContexts).
 *
 * Pure: YAML from memory and a private temp directory; never opens a socket. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "helpers-config.h"
#include "textesc.h"
#include "util.h"

/* ---- item 2: merge keys ----------------------------------------------------------------- */

static void test_merge_single(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a")
		"  x: &common\n"
		"    idle_timeout_ms: \"5000\"\n"
		"    enable_ipv6: true\n"
		"    circuit_breakers:\n"
		"    - max_connections: 7\n"
		"    port: 1\n"
		"  <<: *common\n"
		"  port: 2222\n"
		"  service: up:22\n");
	assert_diag(&l, DIAG_WARNING, 6, "x: unknown field");
	assert_no_diag(&l, "<<");
	assert_ok(&l);
	struct mapping *m = find_mapping(l.config, "a");
	assert_int_equal(m->idle_timeout_ms, 5000);
	assert_true(m->enable_ipv6);
	assert_int_equal(m->circuit_breakers.max_connections, 7);
	/* the explicit key wins over the merged one */
	assert_int_equal(m->port, 2222);
	loaded_free(&l);
}

static void test_merge_list_earlier_wins(void **state) {
	(void)state;
	struct loaded l = load(
		"apiVersion: getambassador.io/v2\n"
		"kind: TCPMapping\n"
		"metadata:\n"
		"  name: a\n"
		"  labels:\n"
		"    one: &one {port: 1111, idle_timeout_ms: 1}\n"
		"    two: &two {port: 2222, idle_timeout_ms: 2, weight: 40}\n"
		"spec:\n"
		"  <<: [*one, *two]\n"
		"  service: up:22\n"
		"  idle_timeout_ms: 3\n");
	assert_ok(&l);
	struct mapping *m = find_mapping(l.config, "a");
	assert_int_equal(m->port, 1111);
	assert_int_equal(m->idle_timeout_ms, 3);
	assert_int_equal(m->weight, 40);
	loaded_free(&l);
}

static void test_merge_not_a_mapping(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a")
		"  port: 1\n"
		"  service: up\n"
		"  <<: 5\n");
	assert_error(&l, 8, "<<: a merge key takes a mapping or a list of mappings");
	loaded_free(&l);
}

/* ---- item 3: duplicate keys anywhere ------------------------------------------------------ */

static void test_duplicate_keys_everywhere(void **state) {
	(void)state;
	static const struct {
		const char *yaml;
		unsigned line;
		const char *message;
	} cases[] = {
		{HEAD("a") "  port: 1\n  service: up\n  port: 2\n", 8,
		 "t.yaml:8:3: duplicate key \"port\" (first at t.yaml:6:3)"},
		{HEAD("a") "  port: 1\n  service: up\nspec:\n  port: 2\n", 8,
		 "duplicate key \"spec\" (first at t.yaml:5:1)"},
		{HEAD("a") "  port: 1\n  service: up\nkind: TCPMapping\n", 8,
		 "duplicate key \"kind\" (first at t.yaml:2:1)"},
		{"apiVersion: getambassador.io/v2\napiVersion: getambassador.io/v3alpha1\n"
		 "kind: TCPMapping\nmetadata:\n  name: a\nspec:\n  port: 1\n  service: up\n", 2,
		 "duplicate key \"apiVersion\" (first at t.yaml:1:1)"},
		{"apiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata:\n  name: a\n"
		 "  name: b\nspec:\n  port: 1\n  service: up\n", 5,
		 "duplicate key \"name\" (first at t.yaml:4:3)"},
		{"apiVersion: getambassador.io/v2\nkind: TLSContext\nmetadata:\n  name: c\nspec:\n"
		 "  secret: one\n  secret: two\n", 7,
		 "duplicate key \"secret\" (first at t.yaml:6:3)"},
		{"apiVersion: getambassador.io/v2\nkind: Module\nmetadata:\n  name: ambassador\n"
		 "spec:\n  config:\n    enable_ipv6: true\n    enable_ipv6: false\n", 8,
		 "duplicate key \"enable_ipv6\" (first at t.yaml:7:5)"},
		{HEAD("a") "  port: 1\n  service: up\n  circuit_breakers:\n  - max_connections: 1\n"
		 "    max_connections: 2\n", 10,
		 "duplicate key \"max_connections\" (first at t.yaml:9:5)"},
	};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		struct loaded l = load(cases[i].yaml);
		assert_error(&l, cases[i].line, cases[i].message);
		loaded_free(&l);
	}
}

/* ---- item 4: a breaker list without a default-priority item ------------------------------- */

#define MODULE_BREAKER                                                                             \
	"apiVersion: getambassador.io/v2\nkind: Module\nmetadata:\n  name: ambassador\n"           \
	"spec:\n  config:\n    circuit_breakers:\n    - max_connections: 50\n---\n"

static void test_breakers_high_only_keeps_module_default(void **state) {
	(void)state;
	struct loaded l = load(MODULE_BREAKER HEAD("a")
		"  port: 1\n  service: up\n"
		"  circuit_breakers:\n"
		"  - priority: high\n"
		"    max_connections: 9\n");
	assert_ok(&l);
	assert_int_equal(find_mapping(l.config, "a")->circuit_breakers.max_connections, 50);
	assert_diag(&l, DIAG_WARNING, 18, "no item of priority default, so the Module's circuit_breakers apply");
	loaded_free(&l);

	l = load(MODULE_BREAKER HEAD("a") "  port: 1\n  service: up\n  circuit_breakers: []\n");
	assert_ok(&l);
	assert_int_equal(find_mapping(l.config, "a")->circuit_breakers.max_connections, 50);
	assert_diag(&l, DIAG_WARNING, 17, "no item of priority default, so the Module's circuit_breakers apply");
	loaded_free(&l);
}

/* ---- item 6: passthrough needs a host that is not empty ------------------------------------ */

static void test_passthrough_empty_host(void **state) {
	(void)state;
	static const char *const hosts[] = {"\"\"", "~", "''", "null"};
	for (size_t i = 0; i < ELEMENTSOF(hosts); i++) {
		char yaml[512];
		snprintf(yaml, sizeof(yaml), HEAD("a") "  port: 1\n  service: up\n  host: %s\n"
			 "  tls_passthrough: true\n", hosts[i]);
		struct loaded l = load(yaml);
		assert_error(&l, 9, "tls_passthrough: needs host");
		loaded_free(&l);
	}
}

/* ---- item 8: names and escaping ------------------------------------------------------------ */

static void test_kubernetes_names(void **state) {
	(void)state;
	static const char *const bad[] = {"UPPER", "under_score", "-lead", "trail-", "a..b",
					  "\"a\\nerror: forged\"", "\"\\e]0;title\\a\""};
	static const char *const good[] = {"a", "ssh-1", "a.b.c", "0abc"};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		char yaml[512];
		snprintf(yaml, sizeof(yaml), HEAD("%s") "  port: 1\n  service: up\n", bad[i]);
		struct loaded l = load(yaml);
		assert_error(&l, 4, "metadata.name: ");
		assert_diag(&l, DIAG_ERROR, 4, "is not a valid name (lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253)");
		for (size_t k = 0; k < l.diags.n; k++)
			for (const char *p = l.diags.items[k].message; *p; p++)
				assert_false((unsigned char)*p < 0x20 || *p == 0x7f);
		loaded_free(&l);
	}
	for (size_t i = 0; i < ELEMENTSOF(good); i++) {
		char yaml[512];
		snprintf(yaml, sizeof(yaml), HEAD("%s") "  port: 1\n  service: up\n", good[i]);
		struct loaded l = load(yaml);
		assert_ok(&l);
		loaded_free(&l);
	}
	char name[300];
	memset(name, 'a', 254);
	name[254] = '\0';
	char yaml[600];
	snprintf(yaml, sizeof(yaml), HEAD("%s") "  port: 1\n  service: up\n", name);
	struct loaded l = load(yaml);
	assert_error(&l, 4, "is not a valid name");
	loaded_free(&l);
}

static void test_textesc(void **state) {
	(void)state;
	char *s = textesc("a\nb\x1b]0;x\x07\x7f" "\xc2\x9b" "\xc3\xa9\\z\xff", SIZE_MAX);
	assert_non_null(s);
	assert_string_equal(s, "a\\nb\\x1b]0;x\\x07\\x7f\\xc2\\x9b" "\xc3\xa9\\\\z\\xff");
	free(s);
	/* every diag is escaped, whatever its source: the apiVersion here */
	struct loaded l = load("apiVersion: \"v\\e[2J\"\nkind: TCPMapping\nmetadata:\n  name: a\nspec:\n  port: 1\n  service: up\n");
	assert_error(&l, 1, "apiVersion: \"v\\x1b[2J\" is not supported");
	loaded_free(&l);
}

/* ---- item 9: relative certificate paths ------------------------------------------------ */

static void test_relative_cert_paths(void **state) {
	(void)state;
	static const char yaml[] =
		"apiVersion: getambassador.io/v2\nkind: TLSContext\nmetadata:\n  name: c\nspec:\n"
		"  cert_chain_file: certs/c.pem\n  private_key_file: k.pem\n"
		"  cacert_chain_file: /abs/ca.pem\n---\n" HEAD("a") "  port: 1\n  service: up\n";
	struct loaded l = {};
	l.r = config_load_buffer("/srv/tcpmap/t.yaml", yaml, strlen(yaml), NULL, &l.config, &l.diags);
	assert_ok(&l);
	assert_string_equal(l.config->tls_contexts[0]->cert_chain_file, "/srv/tcpmap/certs/c.pem");
	assert_string_equal(l.config->tls_contexts[0]->private_key_file, "/srv/tcpmap/k.pem");
	assert_string_equal(l.config->tls_contexts[0]->cacert_chain_file, "/abs/ca.pem");
	loaded_free(&l);
}

/* ---- item 10: the v3alpha1 warning for the Module's extensions ----------------------------- */

static void test_module_extensions_v3alpha1(void **state) {
	(void)state;
	struct loaded l = load(
		"apiVersion: getambassador.io/v3alpha1\nkind: Module\nmetadata:\n  name: ambassador\n"
		"spec:\n  config:\n    preread_timeout_ms: 100\n    connect_timeout_ms: 200\n"
		"    drain_timeout_ms: 300\n    enable_ipv6: true\n---\n"
		HEAD("a") "  port: 1\n  service: up\n");
	assert_ok(&l);
	assert_diag(&l, DIAG_WARNING, 7, "preread_timeout_ms: tcpmap extension in a getambassador.io/v3alpha1 document");
	assert_diag(&l, DIAG_WARNING, 8, "connect_timeout_ms: tcpmap extension");
	assert_diag(&l, DIAG_WARNING, 9, "drain_timeout_ms: tcpmap extension");
	assert_no_diag(&l, "enable_ipv6: tcpmap extension");
	loaded_free(&l);
}

/* ---- item 11: the smaller ones ------------------------------------------------------------ */

static void test_alias_error_points_at_use(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a")
		"  service: &s up\n"
		"  port: *s\n");
	assert_error(&l, 7, "port: \"up\" is not an integer");
	loaded_free(&l);
}

static void test_quoted_bool_message(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  port: 1\n  service: up\n  enable_ipv6: \"true\"\n");
	assert_error(&l, 8, "enable_ipv6: must be true or false, not the quoted string \"true\" (write it without quotes)");
	loaded_free(&l);
}

static void test_negative_weight_message(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  port: 1\n  service: up\n  weight: -5\n");
	assert_error(&l, 8, "weight: -5 is negative; a weight is 0-100");
	assert_no_diag(&l, "9223372036854775807");
	loaded_free(&l);
}

static void test_leading_zeros(void **state) {
	(void)state;
	struct loaded l = load(HEAD("a") "  port: 010\n  service: up\n");
	assert_error(&l, 6, "port: 010 has a leading zero (YAML 1.1 reads it as octal)");
	loaded_free(&l);
	l = load(HEAD("a") "  port: 1\n  service: up\n  weight: 0\n");
	assert_ok(&l);
	loaded_free(&l);
}

static void test_misspelled_kind_warns(void **state) {
	(void)state;
	struct loaded l = load(
		"apiVersion: getambassador.io/v2\nkind: TcpMapping\nmetadata:\n  name: x\nspec:\n  port: 1\n---\n"
		HEAD("a") "  port: 1\n  service: up\n");
	assert_ok(&l);
	assert_diag(&l, DIAG_WARNING, 2, "kind: \"TcpMapping\" is not TCPMapping (kinds are case-sensitive), skipping");
	loaded_free(&l);
}

static void test_unknown_module_config_key_warns(void **state) {
	(void)state;
	struct loaded l = load(
		"apiVersion: getambassador.io/v2\nkind: Module\nmetadata:\n  name: ambassador\n"
		"spec:\n  config:\n    preread_timout_ms: 100\n    use_remote_address: true\n---\n"
		HEAD("a") "  port: 1\n  service: up\n");
	assert_ok(&l);
	assert_diag(&l, DIAG_WARNING, 7, "config.preread_timout_ms: unknown field, ignoring");
	/* Ambassador's own HTTP settings are legitimate in a shared file */
	assert_null(find_diag(&l.diags, DIAG_WARNING, 0, "use_remote_address"));
	loaded_free(&l);
}

static void test_overlapping_tlscontexts_warn(void **state) {
	(void)state;
	struct loaded l = load(
		"apiVersion: getambassador.io/v2\nkind: TLSContext\nmetadata:\n  name: one\n"
		"spec:\n  hosts: [a.example.com]\n  secret: s1\n---\n"
		"apiVersion: getambassador.io/v2\nkind: TLSContext\nmetadata:\n  name: two\n"
		"spec:\n  hosts: [b.example.com, A.example.com]\n  secret: s2\n---\n"
		HEAD("a") "  port: 1\n  service: up\n");
	assert_ok(&l);
	assert_diag(&l, DIAG_WARNING, 14, "tlscontext \"two\": hosts: \"a.example.com\" is also in tlscontext \"one\" (t.yaml:1:1)");
	loaded_free(&l);
}

static void test_clusters_normalised(void **state) {
	(void)state;
	struct loaded l = load(
		HEAD("a") "  port: 1\n  service: up\n---\n"
		HEAD("b") "  port: 2\n  service: up:80\n---\n"
		HEAD("c") "  port: 3\n  service: UP:80\n---\n"
		HEAD("d") "  port: 4\n  service: up:81\n");
	assert_ok(&l);
	const char *a = find_mapping(l.config, "a")->cluster;
	assert_string_equal(a, find_mapping(l.config, "b")->cluster);
	assert_string_equal(a, find_mapping(l.config, "c")->cluster);
	assert_string_not_equal(a, find_mapping(l.config, "d")->cluster);
	loaded_free(&l);
}

static void test_host_and_service_names(void **state) {
	(void)state;
	char label64[65], long_host[300];
	memset(label64, 'a', 64);
	label64[64] = '\0';
	memset(long_host, 0, sizeof(long_host));
	for (int i = 0; i < 4; i++)
		strcat(long_host, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.");
	strcat(long_host, "com");
	const char *const bad_services[] = {"user@host", "a..b", label64, long_host, ".a", "a-:80"};
	for (size_t i = 0; i < ELEMENTSOF(bad_services); i++) {
		char yaml[1024];
		snprintf(yaml, sizeof(yaml), HEAD("a") "  port: 1\n  service: \"%s\"\n", bad_services[i]);
		struct loaded l = load(yaml);
		assert_error(&l, 7, "service: ");
		assert_diag(&l, DIAG_ERROR, 7, "is not a host name");
		loaded_free(&l);
	}
	const char *const bad_hosts[] = {"a..example.com", label64, long_host, "user@x.example"};
	for (size_t i = 0; i < ELEMENTSOF(bad_hosts); i++) {
		char yaml[1024];
		snprintf(yaml, sizeof(yaml), HEAD("a") "  port: 1\n  service: up\n  host: \"%s\"\n"
			 "  tls_passthrough: true\n", bad_hosts[i]);
		struct loaded l = load(yaml);
		assert_error(&l, 8, "host: ");
		loaded_free(&l);
	}
	struct loaded l = load(HEAD("a") "  port: 1\n  service: my-up.example.com:8080\n---\n"
			       HEAD("b") "  port: 2\n  service: \"[::1]:22\"\n---\n"
			       HEAD("c") "  port: 3\n  service: 10.0.0.1\n");
	assert_ok(&l);
	loaded_free(&l);
}

int main(void) {
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merge_single),
		cmocka_unit_test(test_merge_list_earlier_wins),
		cmocka_unit_test(test_merge_not_a_mapping),
		cmocka_unit_test(test_duplicate_keys_everywhere),
		cmocka_unit_test(test_breakers_high_only_keeps_module_default),
		cmocka_unit_test(test_passthrough_empty_host),
		cmocka_unit_test(test_kubernetes_names),
		cmocka_unit_test(test_textesc),
		cmocka_unit_test(test_relative_cert_paths),
		cmocka_unit_test(test_module_extensions_v3alpha1),
		cmocka_unit_test(test_alias_error_points_at_use),
		cmocka_unit_test(test_quoted_bool_message),
		cmocka_unit_test(test_negative_weight_message),
		cmocka_unit_test(test_leading_zeros),
		cmocka_unit_test(test_misspelled_kind_warns),
		cmocka_unit_test(test_unknown_module_config_key_warns),
		cmocka_unit_test(test_overlapping_tlscontexts_warn),
		cmocka_unit_test(test_clusters_normalised),
		cmocka_unit_test(test_host_and_service_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
