/* test-emissary.c — the loader reads what Emissary reads (issue 15): ambassador_id and its
 * spellings, service schemes and v3alpha1's `tls`, annotation-style documents, Host, names
 * per namespace, max_connections: 0, and the listener rules.
 *
 * Pure: YAML from memory; never opens a socket. */
/* The YAML fixtures are laid out line by line as the YAML reads. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "config.h"
#include "util.h"

struct loaded {
	int r;
	struct config *config;
	struct diag_list diags;
};

static void loaded_free(struct loaded *l) {
	if (l->config)
		config_unref(l->config);
	diag_list_free(&l->diags);
	*l = (struct loaded){};
}

static struct loaded load_id(const char *yaml, const char *id) {
	struct loaded l = {};
	struct config_options o = {.ambassador_id = id};
	l.r = config_load_buffer("t.yaml", yaml, strlen(yaml), &o, &l.config, &l.diags);
	return l;
}

static struct loaded load(const char *yaml) { return load_id(yaml, NULL); }

static void print_diags(const struct diag_list *d) {
	for (size_t i = 0; i < d->n; i++)
		print_message("# diag[%d] %s\n", d->items[i].level, d->items[i].message);
}

static const struct diag *find_diag(const struct loaded *l, enum diag_level level,
				    const char *needle) {
	for (size_t i = 0; i < l->diags.n; i++)
		if (l->diags.items[i].level == level && strstr(l->diags.items[i].message, needle))
			return &l->diags.items[i];
	print_message("# wanted level %d: %s\n", level, needle);
	print_diags(&l->diags);
	return NULL;
}

static void assert_ok(const struct loaded *l) {
	if (l->r != 0)
		print_diags(&l->diags);
	assert_int_equal(l->r, 0);
}

static struct mapping *find_mapping(const struct config *c, const char *name) {
	for (size_t i = 0; i < c->n_mappings; i++)
		if (streq(c->mappings[i]->name, name))
			return c->mappings[i];
	return NULL;
}

#define MAPPING_P(api, name, port, service, extra)                                                 \
	"---\napiVersion: getambassador.io/" api "\nkind: TCPMapping\nmetadata:\n  name: " name   \
	"\nspec:\n  port: " port "\n  service: " service "\n" extra
#define MAPPING_S(api, name, service, extra) MAPPING_P(api, name, "2000", service, extra)
#define MAPPING(api, name, extra) MAPPING_S(api, name, "up", extra)

/* ---- item 1: ambassador_id ------------------------------------------------------------- */

static void test_ambassador_id(void **state) {
	(void)state;
	static const char yaml[] =
		MAPPING("v2", "mine", "  ambassador_id: [other, edge]\n")
		MAPPING("v2", "auto", "  ambassador_id: _automatic_\n")
		MAPPING("v3alpha1", "camel", "  ambassadorId: [edge]\n")
		MAPPING("v2", "plain", "");
	struct loaded l = load_id(yaml, "edge");

	assert_ok(&l);
	assert_non_null(find_mapping(l.config, "mine"));
	assert_non_null(find_mapping(l.config, "auto"));
	assert_non_null(find_mapping(l.config, "camel"));
	assert_null(find_mapping(l.config, "plain"));
	loaded_free(&l);

	/* no id given: $AMBASSADOR_ID, else default */
	setenv("AMBASSADOR_ID", "edge", 1);
	l = load(yaml);
	assert_ok(&l);
	assert_int_equal(l.config->n_mappings, 3);
	loaded_free(&l);
	unsetenv("AMBASSADOR_ID");
	l = load(yaml);
	assert_ok(&l);
	assert_int_equal(l.config->n_mappings, 2); /* auto and plain */
	assert_non_null(find_mapping(l.config, "plain"));
	loaded_free(&l);
}

static void test_no_mapping_for_our_id(void **state) {
	(void)state;
	struct loaded l = load_id(MAPPING("v2", "a", "  ambassador_id: other\n"), "edge");

	assert_ok(&l);
	assert_int_equal(l.config->n_mappings, 0);
	assert_non_null(find_diag(&l, DIAG_WARNING,
				  "no TCPMapping found for ambassador_id \"edge\" (1 document was "
				  "skipped for other ids"));
	loaded_free(&l);
}

/* ---- item 3: service schemes and tls --------------------------------------------------- */

static void test_service_schemes(void **state) {
	(void)state;
	struct loaded l = load(MAPPING_P("v2", "v2-https", "2001", "https://up-a", "")
			       MAPPING_P("v3alpha1", "v3-https", "2002", "https://up-b:8443", "")
			       MAPPING_P("v3alpha1", "v3-http", "2003", "http://up-c", "")
			       MAPPING_P("v2", "v2-bool", "2004", "up-d", "  tls: true\n"));
	struct mapping *m;

	assert_ok(&l);
	m = find_mapping(l.config, "v2-https");
	assert_int_equal(m->tls, TLS_ORIGINATE_PLAIN);
	assert_string_equal(m->upstream_host, "up-a");
	assert_int_equal(m->upstream_port, 443);
	m = find_mapping(l.config, "v3-https");
	assert_int_equal(m->tls, TLS_ORIGINATE_PLAIN);
	assert_int_equal(m->upstream_port, 8443);
	m = find_mapping(l.config, "v3-http");
	assert_int_equal(m->tls, TLS_ORIGINATE_NONE);
	assert_string_equal(m->upstream_host, "up-c");
	assert_int_equal(m->upstream_port, 80);
	assert_int_equal(find_mapping(l.config, "v2-bool")->tls, TLS_ORIGINATE_PLAIN);
	loaded_free(&l);

	/* v3alpha1: tls is a context name; "true" is one, and an unquoted true is an error */
	l = load(MAPPING("v3alpha1", "q", "  tls: \"true\"\n"));
	assert_int_equal(l.r, -EINVAL);
	assert_non_null(find_diag(&l, DIAG_ERROR, "\"true\""));
	loaded_free(&l);
	l = load(MAPPING("v3alpha1", "u", "  tls: true\n"));
	assert_int_equal(l.r, -EINVAL);
	assert_non_null(find_diag(&l, DIAG_ERROR, "tls: is a TLSContext name in getambassador.io/v3alpha1"));
	loaded_free(&l);
	/* https:// with a context: the context supplies the client side */
	l = load("---\napiVersion: getambassador.io/v3alpha1\nkind: TLSContext\nmetadata:\n  name: c\n"
		 "spec:\n  sni: x\n"
		 MAPPING_S("v3alpha1", "ctx", "https://up", "  tls: c\n"));
	assert_ok(&l);
	m = find_mapping(l.config, "ctx");
	assert_int_equal(m->tls, TLS_ORIGINATE_CONTEXT);
	assert_int_equal(m->upstream_port, 443);
	loaded_free(&l);
}

/* ---- item 2: annotation style ---------------------------------------------------------- */

static const char annotated[] =
	"apiVersion: v1\n"                                   /* 1 */
	"kind: Service\n"                                    /* 2 */
	"metadata:\n"                                        /* 3 */
	"  name: upstream\n"                                 /* 4 */
	"  namespace: shop\n"                                /* 5 */
	"  annotations:\n"                                   /* 6 */
	"    getambassador.io/config: |\n"                   /* 7 */
	"      ---\n"                                        /* 8 */
	"      apiVersion: getambassador.io/v2\n"            /* 9 */
	"      kind: TCPMapping\n"                           /* 10 */
	"      name: flat-a\n"                               /* 11 */
	"      port: 2000\n"                                 /* 12 */
	"      service: up-a\n"                              /* 13 */
	"      ---\n"                                        /* 14 */
	"      apiVersion: getambassador.io/v2\n"            /* 15 */
	"      kind: TCPMapping\n"                           /* 16 */
	"      name: flat-b\n"                               /* 17 */
	"      ambassador_id: default\n"                     /* 18 */
	"      port: 2001\n"                                 /* 19 */
	"      service: up-b\n"                              /* 20 */
	"      weight: %s\n"                                 /* 21 */
	"spec:\n"
	"  ports: [{port: 80}]\n"
	"---\n"
	"apiVersion: getambassador.io/v2\n"
	"kind: TCPMapping\n"
	"name: flat-top\n"
	"port: 2002\n"
	"service: up-c\n";

static void test_annotation_style(void **state) {
	(void)state;
	char yaml[2048];
	struct loaded l;
	const struct diag *d;

	snprintf(yaml, sizeof(yaml), annotated, "50");
	l = load(yaml);
	assert_ok(&l);
	assert_int_equal(l.config->n_mappings, 3);
	assert_string_equal(find_mapping(l.config, "flat-b")->upstream_host, "up-b");
	assert_int_equal(find_mapping(l.config, "flat-b")->weight, 50);
	/* the envelope keys of the flat form are not unknown fields */
	for (size_t i = 0; i < l.diags.n; i++)
		assert_null(strstr(l.diags.items[i].message, "unknown field"));
	loaded_free(&l);

	/* the same validation, at the file's line and column */
	snprintf(yaml, sizeof(yaml), annotated, "150");
	l = load(yaml);
	assert_int_equal(l.r, -EINVAL);
	d = find_diag(&l, DIAG_ERROR, "mapping \"flat-b\": weight: 150 is over 100");
	assert_non_null(d);
	assert_int_equal(d->line, 21);
	assert_int_equal(d->column, 15);
	loaded_free(&l);

	/* the flat form's name is required, as metadata.name is */
	l = load("apiVersion: getambassador.io/v2\nkind: TCPMapping\nname: ~\nport: 1\nservice: u\n");
	assert_int_equal(l.r, -EINVAL);
	assert_non_null(find_diag(&l, DIAG_ERROR, "name: missing or not a string"));
	loaded_free(&l);
}

/* ---- item 8: names per namespace -------------------------------------------------------- */

static void test_names_per_namespace(void **state) {
	(void)state;
	struct loaded l = load(
		"---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata:\n  name: a\n"
		"  namespace: one\nspec:\n  port: 2000\n  service: up\n  weight: 50\n"
		"---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata:\n  name: a\n"
		"  namespace: two\nspec:\n  port: 2000\n  service: up2\n  weight: 50\n");

	assert_ok(&l);
	assert_int_equal(l.config->n_mappings, 2);
	loaded_free(&l);
	/* no namespace is the default one: a clash with "default" is a duplicate */
	l = load("---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata:\n  name: a\n"
		 "  namespace: default\nspec:\n  port: 2000\n  service: up\n"
		 "---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata:\n  name: a\n"
		 "spec:\n  port: 2001\n  service: up2\n");
	assert_int_equal(l.r, -EINVAL);
	assert_non_null(find_diag(&l, DIAG_ERROR, "duplicate name, first defined at t.yaml:5:9 (both in namespace \"default\")"));
	loaded_free(&l);
}

/* ---- item 4: Host ----------------------------------------------------------------------- */

static void test_host_lookup(void **state) {
	(void)state;
	struct loaded l = load(
		"---\napiVersion: getambassador.io/v2\nkind: TLSContext\nmetadata:\n  name: ctx\n"
		"spec:\n  hosts: [a.domain.com, c.other.com]\n  secret: ctx-secret\n  min_tls_version: v1.3\n"
		"---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata:\n  name: wild\n"
		"spec:\n  hostname: \"*.domain.com\"\n  tlsSecret:\n    name: wild-secret\n"
		"  requestPolicy:\n    insecure:\n      action: Route\n"
		"---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata:\n  name: ctx\n"
		"spec:\n  hostname: b.other.com\n  tlsContext:\n    name: ctx\n"
		MAPPING_P("v2", "a", "6789", "up", "  host: a.domain.com\n")
		MAPPING_P("v2", "b", "6789", "up", "  host: b.other.com\n")
		MAPPING_P("v2", "c", "6789", "up", "  host: c.other.com\n"));
	const struct tls_context *t;

	assert_ok(&l);
	/* Hosts first, even when a TLSContext lists the exact name */
	t = model_tlscontext_for_host(l.config, "a.domain.com");
	assert_true(t->from_host);
	assert_string_equal(t->name, "wild");
	assert_string_equal(t->secret, "wild-secret");
	/* a Host with a tlsContext takes that context's settings */
	t = model_tlscontext_for_host(l.config, "b.other.com");
	assert_true(t->from_host);
	assert_string_equal(t->secret, "ctx-secret");
	assert_string_equal(t->min_tls_version, "v1.3");
	/* then TLSContexts */
	t = model_tlscontext_for_host(l.config, "c.other.com");
	assert_false(t->from_host);
	/* a Host is never a context by name (tls: NAME) */
	assert_false(config_find_tls_context(l.config, "ctx")->from_host);
	assert_null(config_find_tls_context(l.config, "wild"));
	loaded_free(&l);

	/* a host nothing covers still names both kinds */
	l = load(MAPPING_P("v2", "a", "6789", "up", "  host: x.domain.com\n"));
	assert_int_equal(l.r, -EINVAL);
	assert_non_null(find_diag(&l, DIAG_ERROR, "nor does any Host's hostname match it"));
	loaded_free(&l);
}

/* ---- item 6: max_connections: 0, priority spellings ------------------------------------ */

static void test_max_connections_zero(void **state) {
	(void)state;
	struct loaded l = load(MAPPING("v2", "zero",
				       "  circuit_breakers:\n  - priority: DEFAULT\n    max_connections: 0\n")
			       MAPPING_P("v2", "none", "2001", "up",
					 "  circuit_breakers:\n  - priority: High\n    max_connections: 5\n"));

	assert_ok(&l);
	assert_true(find_mapping(l.config, "zero")->circuit_breakers.refuse_all);
	assert_false(find_mapping(l.config, "none")->circuit_breakers.refuse_all);
	assert_non_null(find_diag(&l, DIAG_WARNING, "max_connections: 0 refuses every connection"));
	assert_non_null(find_diag(&l, DIAG_WARNING, "priority high is not applicable to TCP"));
	loaded_free(&l);
}

int main(void) {
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ambassador_id),
		cmocka_unit_test(test_no_mapping_for_our_id),
		cmocka_unit_test(test_service_schemes),
		cmocka_unit_test(test_annotation_style),
		cmocka_unit_test(test_names_per_namespace),
		cmocka_unit_test(test_host_lookup),
		cmocka_unit_test(test_max_connections_zero),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
