/* test-tls.c — lib/tls: secrets lookup, which TLSContext terminates which host, the
 * settings each SSL_CTX gets, and real handshakes between our contexts over BIO pairs.
 *
 * Keys and certificates are made at run time by the `openssl` CLI in a private mkdtemp
 * directory (mode 0700) and removed afterwards; no private key is committed. Nothing here
 * opens a socket: handshakes run in memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include "config.h"
#include "tls.h"
#include "tlsflight.h"
#include "util.h"

static char tmpdir[] = "/tmp/tcpmap-test-tls-XXXXXX";
static char secrets_dir[256], creds_dir[256];

/* ---- fixtures ------------------------------------------------------------------------- */

static const char openssl_cnf[] = "[req]\n"
                                  "distinguished_name = dn\n"
                                  "prompt = no\n"
                                  "[dn]\n"
                                  "CN = unused\n"
                                  "[ca_ext]\n"
                                  "basicConstraints = critical,CA:TRUE\n"
                                  "keyUsage = critical,keyCertSign,cRLSign\n"
                                  "subjectKeyIdentifier = hash\n"
                                  "[server_ext]\n"
                                  "basicConstraints = CA:FALSE\n"
                                  "extendedKeyUsage = serverAuth\n"
                                  "subjectAltName = DNS:my-host-1,DNS:my-host-2\n"
                                  "[wild_ext]\n"
                                  "basicConstraints = CA:FALSE\n"
                                  "extendedKeyUsage = serverAuth\n"
                                  "subjectAltName = DNS:*.example.com\n"
                                  "[client_ext]\n"
                                  "basicConstraints = CA:FALSE\n"
                                  "extendedKeyUsage = clientAuth\n";

_printf_(1, 2) static int run(const char *fmt, ...) {
	_cleanup_free_ char *cmd = NULL, *full = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&cmd, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	if (asprintf(&full, "cd '%s' && ( %s ) >/dev/null 2>&1", tmpdir, cmd) < 0)
		return -ENOMEM;
	r = system(full);
	if (r != 0)
		fprintf(stderr, "# command failed (%d): %s\n", r, cmd);
	return r == 0 ? 0 : -EIO;
}

/* A P-256 key and a certificate for `cn` signed by the test CA, as NAME.crt / NAME.key. */
static int make_leaf(const char *name, const char *cn, const char *ext, int serial) {
	return run("openssl req -config openssl.cnf -new -newkey ec -pkeyopt "
	           "ec_paramgen_curve:P-256 -nodes -keyout %s.key -out %s.csr -subj /CN=%s && "
	           "openssl x509 -req -in %s.csr -CA ca.crt -CAkey ca.key -set_serial %d -days 2 "
	           "-out %s.crt -extfile openssl.cnf -extensions %s",
	           name, name, cn, name, serial, name, ext);
}

/* secrets/SECRET/tls.crt + tls.key from NAME.crt + KEYNAME.key */
static int install_secret(const char *secret, const char *name, const char *key_name) {
	return run("mkdir -p secrets/%s && cp %s.crt secrets/%s/tls.crt && "
	           "cp %s.key secrets/%s/tls.key",
	           secret, name, secret, key_name, secret);
}

static int group_setup(void **state) {
	(void)state;
	_cleanup_fclose_ FILE *f = NULL;
	char path[512];

	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(secrets_dir, sizeof(secrets_dir), "%s/secrets", tmpdir);
	snprintf(creds_dir, sizeof(creds_dir), "%s/creds", tmpdir);
	snprintf(path, sizeof(path), "%s/openssl.cnf", tmpdir);
	f = fopen(path, "we");
	if (!f || fputs(openssl_cnf, f) < 0 || fflush(f) != 0)
		return -1;

	if (run("umask 077 && mkdir secrets creds") < 0 ||
	    run("openssl req -config openssl.cnf -x509 -newkey ec -pkeyopt "
	        "ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 2 "
	        "-subj /CN=tcpmap-test-ca -extensions ca_ext") < 0 ||
	    make_leaf("server", "my-host", "server_ext", 2) < 0 ||
	    make_leaf("wild", "wildcard.example.com", "wild_ext", 3) < 0 ||
	    make_leaf("client", "tcpmap-test-client", "client_ext", 4) < 0 ||
	    make_leaf("decoy", "decoy", "client_ext", 5) < 0)
		return -1;

	if (install_secret("supersecret", "server", "server") < 0 ||
	    install_secret("wildsecret", "wild", "wild") < 0 ||
	    /* the server certificate with the wildcard's key */
	    install_secret("mismatch", "server", "wild") < 0 ||
	    /* a CA secret as a Kubernetes CA secret holds it: tls.crt is the CA */
	    run("mkdir -p secrets/ca-secret && cp ca.crt secrets/ca-secret/tls.crt") < 0 ||
	    /* with ca.crt beside tls.crt, ca.crt is the CA; tls.crt here is not a CA at all */
	    run("mkdir -p secrets/ca-bundle && cp ca.crt secrets/ca-bundle/ca.crt && "
	        "cp wild.crt secrets/ca-bundle/tls.crt") < 0 ||
	    /* othersecret in both places: the credential (the client certificate) must win */
	    install_secret("othersecret", "decoy", "decoy") < 0 ||
	    run("cp client.crt creds/othersecret.crt && cp client.key creds/othersecret.key") < 0)
		return -1;

	setenv("CREDENTIALS_DIRECTORY", creds_dir, 1);
	return 0;
}

static int group_teardown(void **state) {
	(void)state;
	unsetenv("CREDENTIALS_DIRECTORY");
	if (tmpdir[strlen(tmpdir) - 1] != 'X')
		(void)run("cd / && rm -rf '%s'", tmpdir);
	return 0;
}

/* ---- loading -------------------------------------------------------------------------- */

struct loaded {
	int r; /* of tls_config_load */
	struct config *config;
	struct diag_list diags;
};

static void print_diags(const struct diag_list *d) {
	for (size_t i = 0; i < d->n; i++)
		print_message("# diag[%d] %s\n", d->items[i].level, d->items[i].message);
}

static void loaded_free(struct loaded *l) {
	if (l->config && l->config->tls_runtime_free)
		l->config->tls_runtime_free(l->config);
	config_unref(l->config);
	diag_list_free(&l->diags);
}

static struct loaded load_yaml(const char *yaml) {
	struct loaded l = {};
	int r;

	r = config_load_buffer("t.yaml", yaml, strlen(yaml), NULL, &l.config, &l.diags);
	if (r != 0)
		print_diags(&l.diags);
	assert_int_equal(r, 0);
	l.r = tls_config_load(l.config, secrets_dir, &l.diags);
	return l;
}

static const char *examples_dir(void) {
	static char dir[512];
	const char *root = getenv("TCPMAP_ROOT");

	snprintf(dir, sizeof(dir), "%s/conf/examples", root ? root : ".");
	return dir;
}

static struct loaded load_example(const char *name) {
	struct loaded l = {};
	char path[600];
	const char *paths[] = {path};
	int r;

	snprintf(path, sizeof(path), "%s/%s", examples_dir(), name);
	r = config_load(paths, 1, NULL, &l.config, &l.diags);
	if (r != 0)
		print_diags(&l.diags);
	assert_int_equal(r, 0);
	l.r = tls_config_load(l.config, secrets_dir, &l.diags);
	return l;
}

static void assert_ok(const struct loaded *l) {
	if (l->r != 0)
		print_diags(&l->diags);
	assert_int_equal(l->r, 0);
	assert_non_null(l->config->tls_runtime);
}

static void assert_error(const struct loaded *l, const char *needle) {
	bool found = false;

	for (size_t i = 0; i < l->diags.n; i++)
		if (l->diags.items[i].level == DIAG_ERROR &&
		    strstr(l->diags.items[i].message, needle))
			found = true;
	if (l->r != -EINVAL || !found) {
		print_message("# wanted an error containing: %s\n", needle);
		print_diags(&l->diags);
	}
	assert_int_equal(l->r, -EINVAL);
	assert_true(found);
	/* a failed load leaves nothing behind */
	assert_null(l->config->tls_runtime);
	assert_null(l->config->tls_runtime_free);
}

static struct mapping_group *group_by_host(const struct config *c, const char *host) {
	for (size_t i = 0; i < c->n_groups; i++)
		if (streq_ptr(c->groups[i]->host, host))
			return c->groups[i];
	fail_msg("no group for host %s", host);
	return NULL;
}

static struct mapping *mapping_by_name(const struct config *c, const char *name) {
	for (size_t i = 0; i < c->n_mappings; i++)
		if (streq(c->mappings[i]->name, name))
			return c->mappings[i];
	fail_msg("no mapping %s", name);
	return NULL;
}

/* The CN of a context's own certificate, or "" when it has none. */
static const char *ctx_cert_cn(SSL_CTX *ctx) {
	static char cn[128];
	X509 *x = SSL_CTX_get0_certificate(ctx);

	cn[0] = 0;
	if (x)
		X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
	return cn;
}

/* ---- handshakes in memory ------------------------------------------------------------- */

struct handshake {
	bool server_ok, client_ok;
	const char *server_failure, *client_failure; /* tls_handshake_failure_reason() */
};

static struct handshake run_handshake(SSL *server, SSL *client) {
	struct handshake h = {};
	BIO *server_bio = NULL, *client_bio = NULL;
	bool server_done = false, client_done = false;

	assert_int_equal(BIO_new_bio_pair(&server_bio, 0, &client_bio, 0), 1);
	SSL_set_bio(server, server_bio, server_bio);
	SSL_set_bio(client, client_bio, client_bio);
	SSL_set_accept_state(server);
	SSL_set_connect_state(client);
	ERR_clear_error();

	/* Each round moves at least one flight; a handful suffice, 100 is a hard bound. A
	 * side that fails stops, and the other gets a few more rounds to read the alert. */
	for (int round = 0, after_failure = 0; round < 100 && after_failure < 4; round++) {
		if (!client_done) {
			int r = SSL_do_handshake(client);
			if (r == 1)
				client_done = h.client_ok = true;
			else if (SSL_get_error(client, r) != SSL_ERROR_WANT_READ &&
			         SSL_get_error(client, r) != SSL_ERROR_WANT_WRITE) {
				h.client_failure = tls_handshake_failure_reason();
				client_done = true;
			}
			ERR_clear_error();
		}
		if (!server_done) {
			int r = SSL_do_handshake(server);
			if (r == 1)
				server_done = h.server_ok = true;
			else if (SSL_get_error(server, r) != SSL_ERROR_WANT_READ &&
			         SSL_get_error(server, r) != SSL_ERROR_WANT_WRITE) {
				h.server_failure = tls_handshake_failure_reason();
				server_done = true;
			}
			ERR_clear_error();
		}
		if (server_done && client_done)
			break;
		if (h.server_failure || h.client_failure)
			after_failure++;
	}
	/* TLS 1.3: the client is done before the server has checked its certificate; one
	 * read on the client then shows whether the server refused it. */
	if (h.client_ok && h.server_failure) {
		char byte;
		int r = SSL_read(client, &byte, 1);
		if (r <= 0 && SSL_get_error(client, r) == SSL_ERROR_SSL) {
			h.client_ok = false;
			h.client_failure = tls_handshake_failure_reason();
		}
		ERR_clear_error();
	}
	return h;
}

/* A plain test client: no verification, optionally the test client certificate, and an
 * ALPN offer in wire format. */
static SSL_CTX *test_client_ctx(bool with_cert, const unsigned char *alpn, size_t alpn_len) {
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char crt[512], key[512];

	assert_non_null(ctx);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (with_cert) {
		snprintf(crt, sizeof(crt), "%s/client.crt", tmpdir);
		snprintf(key, sizeof(key), "%s/client.key", tmpdir);
		assert_int_equal(SSL_CTX_use_certificate_file(ctx, crt, SSL_FILETYPE_PEM), 1);
		assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1);
	}
	if (alpn)
		assert_int_equal(SSL_CTX_set_alpn_protos(ctx, alpn, (unsigned)alpn_len), 0);
	return ctx;
}

/* A test upstream: the my-host-1/my-host-2 certificate; asks for (but does not require)
 * a client certificate from the test CA, so origination's certificate can be seen. */
static SSL_CTX *test_upstream_ctx(void) {
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char crt[512], key[512], ca[512];

	assert_non_null(ctx);
	snprintf(crt, sizeof(crt), "%s/server.crt", tmpdir);
	snprintf(key, sizeof(key), "%s/server.key", tmpdir);
	snprintf(ca, sizeof(ca), "%s/ca.crt", tmpdir);
	assert_int_equal(SSL_CTX_use_certificate_file(ctx, crt, SSL_FILETYPE_PEM), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1);
	assert_int_equal(SSL_CTX_load_verify_locations(ctx, ca, NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
}

/* ---- the doc's examples --------------------------------------------------------------- */

static void test_example_terminate(void **state) {
	(void)state;
	_cleanup_(loaded_free) struct loaded l = load_example("tls-terminate.yaml");
	struct mapping_group *g1, *g2;

	assert_ok(&l);
	g1 = group_by_host(l.config, "my-host-1");
	g2 = group_by_host(l.config, "my-host-2");
	assert_non_null(g1->termination_context);
	assert_string_equal(g1->termination_context->name, "my-context");
	assert_ptr_equal(g2->termination_context, g1->termination_context);
	assert_non_null(tls_server_ctx(l.config, g1));
	assert_ptr_equal(tls_server_ctx(l.config, g1), tls_server_ctx(l.config, g2));
	assert_string_equal(ctx_cert_cn(tls_server_ctx(l.config, g1)), "my-host");
	/* case 2 relays cleartext upstream */
	assert_null(tls_client_ctx(l.config, mapping_by_name(l.config, "my-host-1")));
	assert_null(tls_client_ctx(l.config, mapping_by_name(l.config, "my-host-2")));
}

static void test_example_terminate_originate(void **state) {
	(void)state;
	_cleanup_(loaded_free) struct loaded l = load_example("tls-terminate-originate.yaml");
	struct mapping *t1, *t2;
	SSL_CTX *c1, *c2;

	assert_ok(&l);
	assert_string_equal(group_by_host(l.config, "my-host-1")->termination_context->name,
	                    "my-context");
	assert_string_equal(group_by_host(l.config, "my-host-2")->termination_context->name,
	                    "my-context");
	t1 = mapping_by_name(l.config, "test-1");
	t2 = mapping_by_name(l.config, "test-2");
	c1 = tls_client_ctx(l.config, t1);
	c2 = tls_client_ctx(l.config, t2);
	assert_non_null(c1);
	assert_non_null(c2);
	/* tls: true offers no certificate; tls: origination-context offers its own, found as
	 * a credential before the secrets directory's decoy */
	assert_null(SSL_CTX_get0_certificate(c1));
	assert_string_equal(ctx_cert_cn(c2), "tcpmap-test-client");
	/* neither names a CA, so neither verifies the upstream */
	assert_int_equal(SSL_CTX_get_verify_mode(c1), SSL_VERIFY_NONE);
	assert_int_equal(SSL_CTX_get_verify_mode(c2), SSL_VERIFY_NONE);
	assert_int_equal(SSL_CTX_get_min_proto_version(c1), TLS1_2_VERSION);
	assert_string_equal(tls_upstream_sni(t1), "upstream-host-1");
	assert_string_equal(tls_upstream_sni(t2), "upstream-host-2");
}

static void test_example_originate(void **state) {
	(void)state;
	_cleanup_(loaded_free) struct loaded l = load_example("tls-originate.yaml");
	struct mapping *m;

	assert_ok(&l);
	m = mapping_by_name(l.config, "test");
	assert_non_null(tls_client_ctx(l.config, m));
	assert_null(SSL_CTX_get0_certificate(tls_client_ctx(l.config, m)));
	assert_null(m->group->termination_context);
	assert_null(tls_server_ctx(l.config, m->group));
	assert_string_equal(tls_upstream_sni(m), "upstream-host");
}

/* RFC 6066: no SNI to an IP literal, of either family; a name is sent as it is. */
static void test_upstream_sni_never_an_address(void **state) {
	(void)state;
	static const char *const literals[] = {"10.0.0.1", "::1", "2001:db8::7", "::ffff:1.2.3.4"};
	for (size_t i = 0; i < ELEMENTSOF(literals); i++) {
		struct mapping m = {.upstream_host = (char *)literals[i]};
		assert_null(tls_upstream_sni(&m));
	}
	struct mapping named = {.upstream_host = (char *)"10.0.0.1.example"};
	assert_string_equal(tls_upstream_sni(&named), "10.0.0.1.example");
	struct mapping bracketed = {.upstream_host = (char *)"[::1]"};
	assert_string_equal(tls_upstream_sni(&bracketed), "[::1]");
}

/* ---- secrets -------------------------------------------------------------------------- */

static const char yaml_missing_secret[] = "apiVersion: getambassador.io/v2\n"
                                          "kind: TCPMapping\n"
                                          "metadata:\n"
                                          "  name: m\n"
                                          "spec:\n"
                                          "  port: 2222\n"
                                          "  host: my-host-1\n"
                                          "  service: upstream:9999\n"
                                          "---\n"
                                          "apiVersion: getambassador.io/v2\n"
                                          "kind: TLSContext\n"
                                          "metadata:\n"
                                          "  name: my-context\n"
                                          "spec:\n"
                                          "  hosts: [my-host-1]\n"
                                          "  secret: nosuch\n";

static void test_missing_secret(void **state) {
	(void)state;
	_cleanup_(loaded_free) struct loaded l = load_yaml(yaml_missing_secret);
	_cleanup_free_ char *expected = NULL;

	/* issue 24 item 11: at the field that names the secret, not the document's start */
	assert_true(asprintf(&expected,
	                     "t.yaml:16:11: tlscontext \"my-context\": secret \"nosuch\": not "
	                     "found; tried %s/nosuch.crt, %s/nosuch/tls.crt",
	                     creds_dir, secrets_dir) > 0);
	assert_error(&l, expected);
	assert_null(group_by_host(l.config, "my-host-1")->termination_context);
}

static void test_missing_secret_without_credentials(void **state) {
	(void)state;
	_cleanup_free_ char *expected = NULL;
	struct loaded l;

	unsetenv("CREDENTIALS_DIRECTORY");
	l = load_yaml(yaml_missing_secret);
	setenv("CREDENTIALS_DIRECTORY", creds_dir, 1);
	assert_true(asprintf(&expected, "secret \"nosuch\": not found; tried %s/nosuch/tls.crt",
	                     secrets_dir) > 0);
	assert_error(&l, expected);
	assert_int_equal(l.diags.n_errors, 1);
	loaded_free(&l);
}

/* issue 23 defect 2: a process serves some listeners only (one socket unit's instance);
 * a missing secret of a listener served elsewhere is not its error. `check` marks
 * nothing, and so checks every secret. */
static void test_secrets_of_listeners_served_elsewhere(void **state) {
	(void)state;
	static const char yaml[] = "apiVersion: getambassador.io/v2\n"
	                           "kind: TCPMapping\n"
	                           "metadata:\n"
	                           "  name: clear\n"
	                           "spec:\n"
	                           "  port: 2223\n"
	                           "  service: upstream:9999\n"
	                           "---\n";
	_cleanup_free_ char *both = NULL;
	assert_true(asprintf(&both, "%s%s", yaml, yaml_missing_secret) > 0);
	struct loaded l = {};

	/* everything marked served (check, standalone): the missing secret is an error */
	assert_int_equal(
	        config_load_buffer("t.yaml", both, strlen(both), NULL, &l.config, &l.diags), 0);
	l.r = tls_config_load(l.config, secrets_dir, &l.diags);
	assert_error(&l, "secret \"nosuch\": not found");
	loaded_free(&l);

	/* port 2222's listener served by another process: nothing to load, no TLS at all */
	l = (struct loaded){};
	assert_int_equal(
	        config_load_buffer("t.yaml", both, strlen(both), NULL, &l.config, &l.diags), 0);
	for (size_t i = 0; i < l.config->n_listeners; i++)
		l.config->listeners[i]->served_elsewhere = l.config->listeners[i]->port == 2222;
	assert_false(tls_config_needed(l.config));
	l.r = tls_config_load(l.config, secrets_dir, &l.diags);
	if (l.r != 0)
		print_diags(&l.diags);
	assert_int_equal(l.r, 0);
	assert_int_equal(l.diags.n_errors, 0);
	assert_null(group_by_host(l.config, "my-host-1")->termination_context);
	loaded_free(&l);

	/* the other way round: this process serves 2222, so its secret is needed */
	l = (struct loaded){};
	assert_int_equal(
	        config_load_buffer("t.yaml", both, strlen(both), NULL, &l.config, &l.diags), 0);
	for (size_t i = 0; i < l.config->n_listeners; i++)
		l.config->listeners[i]->served_elsewhere = l.config->listeners[i]->port != 2222;
	assert_true(tls_config_needed(l.config));
	l.r = tls_config_load(l.config, secrets_dir, &l.diags);
	assert_error(&l, "secret \"nosuch\": not found");
	loaded_free(&l);
}

static void test_mismatched_key(void **state) {
	(void)state;
	_cleanup_(loaded_free) struct loaded l = load_yaml("apiVersion: getambassador.io/v2\n"
	                                                   "kind: TLSContext\n"
	                                                   "metadata:\n"
	                                                   "  name: bad-pair\n"
	                                                   "spec:\n"
	                                                   "  hosts: [my-host-1]\n"
	                                                   "  secret: mismatch\n");
	_cleanup_free_ char *expected = NULL;

	assert_true(asprintf(&expected,
	                     "tlscontext \"bad-pair\": private key %s/mismatch/tls.key does not "
	                     "match certificate %s/mismatch/tls.crt",
	                     secrets_dir, secrets_dir) > 0);
	assert_error(&l, expected);
}

/* issue 24 item 11: a key with a passphrase is named as such (not "PEM lib"), and errors
 * about given files point at the field that names them. */
static void test_passphrase_key_and_field_positions(void **state) {
	(void)state;
	_cleanup_free_ char *yaml = NULL, *expected = NULL;
	struct loaded l;

	assert_int_equal(run("openssl pkey -in wild.key -aes256 -passout pass:secret -out "
	                     "locked.key"),
	                 0);
	assert_true(asprintf(&yaml,
	                     "apiVersion: getambassador.io/v2\n"
	                     "kind: TLSContext\n"
	                     "metadata:\n"
	                     "  name: locked\n"
	                     "spec:\n"
	                     "  hosts: [my-host-1]\n"
	                     "  cert_chain_file: %s/wild.crt\n"
	                     "  private_key_file: %s/locked.key\n"
	                     "  alpn_protocols: h2\n",
	                     tmpdir, tmpdir) > 0);
	l = load_yaml(yaml);
	assert_true(asprintf(&expected,
	                     "t.yaml:8:21: tlscontext \"locked\": private key %s/locked.key is "
	                     "protected by a passphrase, which tcpmap cannot ask for",
	                     tmpdir) > 0);
	assert_error(&l, expected);
	loaded_free(&l);

	free(yaml);
	assert_true(asprintf(&yaml,
	                     "apiVersion: getambassador.io/v2\n"
	                     "kind: TLSContext\n"
	                     "metadata:\n"
	                     "  name: gone\n"
	                     "spec:\n"
	                     "  hosts: [my-host-1]\n"
	                     "  cert_chain_file: %s/nosuch.crt\n"
	                     "  private_key_file: %s/wild.key\n",
	                     tmpdir, tmpdir) > 0);
	l = load_yaml(yaml);
	assert_error(&l, "t.yaml:7:20: tlscontext \"gone\": cert_chain_file: cannot read");
	loaded_free(&l);
}

static void test_cert_chain_file(void **state) {
	(void)state;
	_cleanup_free_ char *yaml = NULL;
	struct loaded l;

	assert_true(asprintf(&yaml,
	                     "apiVersion: getambassador.io/v2\n"
	                     "kind: TLSContext\n"
	                     "metadata:\n"
	                     "  name: files\n"
	                     "spec:\n"
	                     "  hosts: [my-host-1]\n"
	                     "  cert_chain_file: %s/wild.crt\n"
	                     "  private_key_file: %s/wild.key\n"
	                     "---\n"
	                     "apiVersion: getambassador.io/v2\n"
	                     "kind: TCPMapping\n"
	                     "metadata:\n"
	                     "  name: m\n"
	                     "spec:\n"
	                     "  port: 2222\n"
	                     "  host: my-host-1\n"
	                     "  service: upstream:9999\n",
	                     tmpdir, tmpdir) > 0);
	l = load_yaml(yaml);
	assert_ok(&l);
	assert_string_equal(
	        ctx_cert_cn(tls_server_ctx(l.config, group_by_host(l.config, "my-host-1"))),
	        "wildcard.example.com");
	loaded_free(&l);
}

/* ---- which context terminates which host ---------------------------------------------- */

static const char yaml_wildcards[] = "apiVersion: getambassador.io/v2\n"
                                     "kind: TLSContext\n"
                                     "metadata:\n"
                                     "  name: wild-context\n"
                                     "spec:\n"
                                     "  hosts: ['*.example.com']\n"
                                     "  secret: wildsecret\n"
                                     "---\n"
                                     "apiVersion: getambassador.io/v2\n"
                                     "kind: TLSContext\n"
                                     "metadata:\n"
                                     "  name: exact-context\n"
                                     "spec:\n"
                                     "  hosts: [a.example.com]\n"
                                     "  secret: supersecret\n"
                                     "---\n"
                                     "apiVersion: getambassador.io/v2\n"
                                     "kind: TCPMapping\n"
                                     "metadata:\n"
                                     "  name: a\n"
                                     "spec:\n"
                                     "  port: 443\n"
                                     "  host: a.example.com\n"
                                     "  service: upstream-a:9999\n"
                                     "---\n"
                                     "apiVersion: getambassador.io/v2\n"
                                     "kind: TCPMapping\n"
                                     "metadata:\n"
                                     "  name: b\n"
                                     "spec:\n"
                                     "  port: 443\n"
                                     "  host: B.example.com\n"
                                     "  service: upstream-b:9999\n"
                                     "---\n"
                                     "apiVersion: getambassador.io/v2\n"
                                     "kind: TCPMapping\n"
                                     "metadata:\n"
                                     "  name: any\n"
                                     "spec:\n"
                                     "  port: 443\n"
                                     "  host: '*.example.com'\n"
                                     "  service: upstream-any:9999\n";

static void test_wildcard_and_exact(void **state) {
	(void)state;
	_cleanup_(loaded_free) struct loaded l = load_yaml(yaml_wildcards);

	assert_ok(&l);
	/* exact wins although the wildcard context comes first in the file */
	assert_string_equal(group_by_host(l.config, "a.example.com")->termination_context->name,
	                    "exact-context");
	assert_string_equal(group_by_host(l.config, "b.example.com")->termination_context->name,
	                    "wild-context");
	/* a wildcard host is covered by that same wildcard */
	assert_string_equal(group_by_host(l.config, "*.example.com")->termination_context->name,
	                    "wild-context");
	assert_string_equal(
	        ctx_cert_cn(tls_server_ctx(l.config, group_by_host(l.config, "a.example.com"))),
	        "my-host");
	assert_string_equal(
	        ctx_cert_cn(tls_server_ctx(l.config, group_by_host(l.config, "b.example.com"))),
	        "wildcard.example.com");
}

static void test_host_not_covered(void **state) {
	(void)state;
	_cleanup_(loaded_free) struct loaded l = {};
	struct tls_context *t;
	int r;

	/* config.c refuses an uncovered host itself... */
	r = config_load_buffer("t.yaml", yaml_missing_secret,
	                       strlen(yaml_missing_secret) - strlen("  secret: nosuch\n"), NULL,
	                       &l.config, &l.diags);
	assert_int_equal(r, 0);
	diag_list_free(&l.diags);
	/* ...so take a good model and narrow the context's hosts behind its back, to see that
	 * lib/tls does not rely on that. */
	t = config_find_tls_context(l.config, "my-context");
	assert_non_null(t);
	free(t->hosts[0]);
	t->hosts[0] = strdup("*.example.com");
	t->secret = strdup("supersecret");
	l.r = tls_config_load(l.config, secrets_dir, &l.diags);
	assert_error(&l, "t.yaml:1:1: mapping \"m\": host: no TLSContext covers \"my-host-1\"");
}

static void test_passthrough_needs_no_context(void **state) {
	(void)state;
	_cleanup_(loaded_free) struct loaded l = load_yaml("apiVersion: getambassador.io/v2\n"
	                                                   "kind: TCPMapping\n"
	                                                   "metadata:\n"
	                                                   "  name: through\n"
	                                                   "spec:\n"
	                                                   "  port: 443\n"
	                                                   "  host: my-host-1\n"
	                                                   "  tls_passthrough: true\n"
	                                                   "  service: upstream:443\n");

	/* nothing terminates or originates: OpenSSL is not even set up */
	assert_int_equal(l.r, 0);
	assert_null(l.config->tls_runtime);
	assert_null(group_by_host(l.config, "my-host-1")->termination_context);
	assert_null(tls_server_ctx(l.config, group_by_host(l.config, "my-host-1")));
}

/* ---- settings ------------------------------------------------------------------------- */

static const char yaml_settings_fmt[] = "apiVersion: getambassador.io/v2\n"
                                        "kind: TLSContext\n"
                                        "metadata:\n"
                                        "  name: my-context\n"
                                        "spec:\n"
                                        "  hosts: [my-host-1]\n"
                                        "  secret: supersecret\n"
                                        "%s"
                                        "---\n"
                                        "apiVersion: getambassador.io/v2\n"
                                        "kind: TCPMapping\n"
                                        "metadata:\n"
                                        "  name: m\n"
                                        "spec:\n"
                                        "  port: 2222\n"
                                        "  host: my-host-1\n"
                                        "  service: upstream:9999\n";

static struct loaded load_settings(const char *extra) {
	_cleanup_free_ char *yaml = NULL;

	assert_true(asprintf(&yaml, yaml_settings_fmt, extra) > 0);
	return load_yaml(yaml);
}

static SSL_CTX *server_ctx_of(const struct loaded *l) {
	SSL_CTX *ctx = tls_server_ctx(l->config, group_by_host(l->config, "my-host-1"));
	assert_non_null(ctx);
	return ctx;
}

static void test_defaults(void **state) {
	(void)state;
	_cleanup_(loaded_free) struct loaded l = load_settings("");
	SSL_CTX *ctx;

	assert_ok(&l);
	ctx = server_ctx_of(&l);
	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
	assert_int_equal(SSL_CTX_get_max_proto_version(ctx), 0);
	assert_true(SSL_CTX_get_options(ctx) & SSL_OP_NO_RENEGOTIATION);
	assert_true(SSL_CTX_get_options(ctx) & SSL_OP_CIPHER_SERVER_PREFERENCE);
	assert_false(SSL_CTX_get_options(ctx) & SSL_OP_NO_TICKET);
	assert_int_equal(SSL_CTX_get_mode(ctx) &
	                         (SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
	                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER),
	                 SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
	                         SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_NONE);
}

static void test_min_tls_version(void **state) {
	(void)state;
	_cleanup_(loaded_free) struct loaded l = load_settings("  min_tls_version: v1.3\n");
	_cleanup_(loaded_free) struct loaded both =
	        load_settings("  min_tls_version: v1.2\n  max_tls_version: v1.2\n");
	_cleanup_(loaded_free) struct loaded bad =
	        load_settings("  min_tls_version: v1.3\n  max_tls_version: v1.2\n");

	assert_ok(&l);
	assert_int_equal(SSL_CTX_get_min_proto_version(server_ctx_of(&l)), TLS1_3_VERSION);
	assert_ok(&both);
	assert_int_equal(SSL_CTX_get_min_proto_version(server_ctx_of(&both)), TLS1_2_VERSION);
	assert_int_equal(SSL_CTX_get_max_proto_version(server_ctx_of(&both)), TLS1_2_VERSION);
	assert_error(&bad, "min_tls_version v1.3 is above max_tls_version v1.2");
}

static void test_old_tls_honoured_with_warning(void **state) {
	(void)state;
	_cleanup_(loaded_free) struct loaded l = load_settings("  min_tls_version: v1.0\n");

	assert_ok(&l);
	assert_int_equal(SSL_CTX_get_min_proto_version(server_ctx_of(&l)), TLS1_VERSION);
	assert_int_equal(l.diags.n_warnings, 1);
}

static void test_ciphers_and_curves(void **state) {
	(void)state;
	_cleanup_(loaded_free) struct loaded l =
	        load_settings("  cipher_suites: [ECDHE-ECDSA-AES128-GCM-SHA256, "
	                      "ECDHE-ECDSA-CHACHA20-POLY1305]\n"
	                      "  ecdh_curves: [X25519, P-256]\n");
	_cleanup_(loaded_free) struct loaded bad_cipher =
	        load_settings("  cipher_suites: [ECDHE-ECDSA-AES128-GCM-SHA256, NOT-A-CIPHER]\n");
	_cleanup_(loaded_free) struct loaded bad_curve = load_settings("  ecdh_curves: [P-999]\n");
	STACK_OF(SSL_CIPHER) * ciphers;

	assert_ok(&l);
	ciphers = SSL_CTX_get_ciphers(server_ctx_of(&l));
	assert_non_null(ciphers);
	/* the two TLS 1.2 ones, plus OpenSSL's TLS 1.3 suites which this list does not govern */
	bool found = false;
	for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); i++)
		if (streq(SSL_CIPHER_get_name(sk_SSL_CIPHER_value(ciphers, i)),
		          "ECDHE-ECDSA-CHACHA20-POLY1305"))
			found = true;
	assert_true(found);
	assert_error(&bad_cipher, "cipher_suites: \"NOT-A-CIPHER\"");
	assert_error(&bad_curve, "ecdh_curves: OpenSSL does not know all of \"P-999\"");
}

static void test_cert_required_verify_mode(void **state) {
	(void)state;
	_cleanup_(loaded_free) struct loaded required =
	        load_settings("  ca_secret: ca-secret\n  cert_required: true\n");
	_cleanup_(loaded_free) struct loaded optional = load_settings("  ca_secret: ca-secret\n");
	_cleanup_(loaded_free) struct loaded no_ca = load_settings("  cert_required: true\n");
	_cleanup_(loaded_free) struct loaded missing_ca = load_settings("  ca_secret: no-ca\n");

	assert_ok(&required);
	assert_int_equal(SSL_CTX_get_verify_mode(server_ctx_of(&required)),
	                 SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
	assert_ok(&optional);
	assert_int_equal(SSL_CTX_get_verify_mode(server_ctx_of(&optional)), SSL_VERIFY_PEER);
	assert_error(&no_ca, "cert_required: needs ca_secret or cacert_chain_file");
	assert_error(&missing_ca, "ca_secret \"no-ca\": not found; tried");
}

/* ---- handshakes ----------------------------------------------------------------------- */

static const unsigned char alpn_client_offer[] = "\x08http/1.1\x02h2";

static void test_handshake_sni_and_alpn(void **state) {
	(void)state;
	_cleanup_(loaded_free) struct loaded l = load_settings("  alpn_protocols: h2, http/1.1\n");
	SSL_CTX *client_ctx;
	SSL *server, *client;
	struct handshake h;
	const unsigned char *proto;
	unsigned proto_len;

	assert_ok(&l);
	client_ctx = test_client_ctx(false, alpn_client_offer, sizeof(alpn_client_offer) - 1);
	server = SSL_new(server_ctx_of(&l));
	client = SSL_new(client_ctx);
	assert_int_equal(SSL_set_tlsext_host_name(client, "MY-HOST-1"), 1);
	h = run_handshake(server, client);
	assert_true(h.server_ok);
	assert_true(h.client_ok);
	assert_string_equal(SSL_get_servername(server, TLSEXT_NAMETYPE_host_name), "MY-HOST-1");
	/* our preference, not the client's */
	SSL_get0_alpn_selected(client, &proto, &proto_len);
	assert_int_equal(proto_len, 2);
	assert_memory_equal(proto, "h2", 2);
	SSL_free(server);
	SSL_free(client);

	/* an SNI the context does not cover fails with an alert, on both sides */
	server = SSL_new(server_ctx_of(&l));
	client = SSL_new(client_ctx);
	assert_int_equal(SSL_set_tlsext_host_name(client, "other-host"), 1);
	h = run_handshake(server, client);
	assert_false(h.server_ok);
	assert_false(h.client_ok);
	assert_string_equal(h.client_failure, "unrecognized_name");
	SSL_free(server);
	SSL_free(client);

	/* no overlap: the handshake goes on without ALPN */
	SSL_CTX_free(client_ctx);
	client_ctx = test_client_ctx(false,
	                             (const unsigned char *)"\x03"
	                                                    "foo",
	                             4);
	server = SSL_new(server_ctx_of(&l));
	client = SSL_new(client_ctx);
	assert_int_equal(SSL_set_tlsext_host_name(client, "my-host-1"), 1);
	h = run_handshake(server, client);
	assert_true(h.server_ok);
	assert_true(h.client_ok);
	SSL_get0_alpn_selected(client, &proto, &proto_len);
	assert_int_equal(proto_len, 0);
	SSL_free(server);
	SSL_free(client);
	SSL_CTX_free(client_ctx);
}

static void check_mtls(const char *ca_secret, const char *version) {
	_cleanup_free_ char *extra = NULL;
	struct loaded l;
	SSL_CTX *anonymous, *with_cert;
	SSL *server, *client;
	struct handshake h;
	X509 *peer;

	assert_true(asprintf(&extra,
	                     "  ca_secret: %s\n  cert_required: true\n"
	                     "  min_tls_version: %s\n  max_tls_version: %s\n",
	                     ca_secret, version, version) > 0);
	l = load_settings(extra);
	assert_ok(&l);
	anonymous = test_client_ctx(false, NULL, 0);
	with_cert = test_client_ctx(true, NULL, 0);

	server = SSL_new(server_ctx_of(&l));
	client = SSL_new(anonymous);
	SSL_set_tlsext_host_name(client, "my-host-1");
	h = run_handshake(server, client);
	assert_false(h.server_ok);
	assert_false(h.client_ok);
	assert_string_equal(h.server_failure, "no_certificate");
	SSL_free(server);
	SSL_free(client);

	server = SSL_new(server_ctx_of(&l));
	client = SSL_new(with_cert);
	SSL_set_tlsext_host_name(client, "my-host-1");
	h = run_handshake(server, client);
	assert_true(h.server_ok);
	assert_true(h.client_ok);
	peer = SSL_get1_peer_certificate(server);
	assert_non_null(peer);
	X509_free(peer);
	assert_int_equal(SSL_get_verify_result(server), X509_V_OK);
	SSL_free(server);
	SSL_free(client);

	SSL_CTX_free(anonymous);
	SSL_CTX_free(with_cert);
	loaded_free(&l);
}

static void test_handshake_client_cert_required(void **state) {
	(void)state;
	check_mtls("ca-secret", "v1.3");
	check_mtls("ca-secret", "v1.2");
	/* ca.crt beats tls.crt: were the wildcard leaf used as the CA, this would fail */
	check_mtls("ca-bundle", "v1.3");
}

static void test_handshake_failure_reasons(void **state) {
	(void)state;
	_cleanup_(loaded_free) struct loaded l = load_settings("  min_tls_version: v1.3\n");
	SSL_CTX *old_client = test_client_ctx(false, NULL, 0);
	SSL *server, *client;
	struct handshake h;
	BIO *in, *out;
	int r;

	assert_ok(&l);
	assert_int_equal(SSL_CTX_set_max_proto_version(old_client, TLS1_2_VERSION), 1);
	server = SSL_new(server_ctx_of(&l));
	client = SSL_new(old_client);
	SSL_set_tlsext_host_name(client, "my-host-1");
	h = run_handshake(server, client);
	assert_false(h.server_ok);
	assert_string_equal(h.server_failure, "protocol_version");
	assert_string_equal(h.client_failure, "protocol_version");
	SSL_free(server);
	SSL_free(client);
	SSL_CTX_free(old_client);

	/* cleartext where a ClientHello belongs */
	server = SSL_new(server_ctx_of(&l));
	in = BIO_new_mem_buf("SSH-2.0-OpenSSH_9.6\r\n", -1);
	out = BIO_new(BIO_s_mem());
	SSL_set_bio(server, in, out);
	SSL_set_accept_state(server);
	ERR_clear_error();
	r = SSL_do_handshake(server);
	assert_int_equal(SSL_get_error(server, r), SSL_ERROR_SSL);
	assert_string_equal(tls_handshake_failure_reason(), "not_tls");
	ERR_clear_error();
	SSL_free(server);

	/* an empty queue (the peer just closed) */
	assert_string_equal(tls_handshake_failure_reason(), "handshake_failed");
}

/* tls_handshake_step's contract: 0 while it wants bytes, a negative errno when it fails. */
static void test_handshake_step_returns(void **state) {
	(void)state;
	_cleanup_(loaded_free) struct loaded l = load_settings("");
	SSL *server;
	int r;

	assert_ok(&l);

	/* nothing to read yet */
	server = SSL_new(server_ctx_of(&l));
	SSL_set_bio(server, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
	SSL_set_accept_state(server);
	assert_int_equal(tls_handshake_step(server), 0);
	SSL_free(server);

	/* not TLS: a protocol failure, with its reason in the error queue */
	server = SSL_new(server_ctx_of(&l));
	SSL_set_bio(server, BIO_new_mem_buf("SSH-2.0-OpenSSH_9.6\r\n", -1), BIO_new(BIO_s_mem()));
	SSL_set_accept_state(server);
	assert_int_equal(tls_handshake_step(server), -EPROTO);
	assert_string_equal(tls_handshake_failure_reason(), "not_tls");
	ERR_clear_error();
	SSL_free(server);

	/* the peer is gone before its ClientHello (OpenSSL 3 calls that a protocol error) */
	server = SSL_new(server_ctx_of(&l));
	SSL_set_bio(server, BIO_new_mem_buf("", 0), BIO_new(BIO_s_mem()));
	SSL_set_accept_state(server);
	r = tls_handshake_step(server);
	assert_true(r == -EPROTO || r == -ECONNRESET);
	ERR_clear_error();
	SSL_free(server);
}

/* Fill `fd`'s way to its peer until the socket says EAGAIN; returns the bytes sent. */
static size_t fill_socket(int fd) {
	static const char junk[4096];
	size_t total = 0;
	ssize_t n;

	while ((n = send(fd, junk, sizeof junk, MSG_DONTWAIT)) > 0)
		total += (size_t)n;
	assert_true(n < 0 && errno == EAGAIN);
	return total;
}

static void drain_socket(int fd, size_t len) {
	char buf[4096];

	while (len > 0) {
		ssize_t n = recv(fd, buf, MIN(len, sizeof buf), MSG_DONTWAIT);
		assert_true(n > 0);
		len -= (size_t)n;
	}
}

/* The flight BIO (tlsflight.c) over a socket that takes nothing: what a step wrote waits
 * for the next step, and the handshake is not done before its last bytes (the tickets)
 * are out; after it the session writes the socket directly and the stream is intact. */
static void test_flight_over_a_full_socket(void **state) {
	(void)state;
	_cleanup_(loaded_free) struct loaded l = load_settings("");
	SSL_CTX *client_ctx;
	SSL *server, *client;
	int sv[2];
	char buf[16];
	size_t got = 0;

	assert_ok(&l);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	client_ctx = test_client_ctx(false, NULL, 0);
	server = SSL_new(server_ctx_of(&l));
	assert_int_equal(tls_flight_attach(server, sv[0]), 0);
	SSL_set_accept_state(server);
	client = SSL_new(client_ctx);
	assert_int_equal(SSL_set_fd(client, sv[1]), 1);
	assert_int_equal(SSL_set_tlsext_host_name(client, "my-host-1"), 1);
	SSL_set_connect_state(client);

	assert_int_equal(SSL_do_handshake(client), -1); /* hello sent */
	size_t junk = fill_socket(sv[0]);
	/* the flight cannot go: kept, and the step waits */
	assert_int_equal(tls_handshake_step(server), 0);
	assert_int_equal(tls_handshake_step(server), 0);
	drain_socket(sv[1], junk);
	assert_int_equal(tls_handshake_step(server), 0); /* flight out, waiting for Finished */
	assert_int_equal(SSL_do_handshake(client), 1);   /* Finished sent */

	junk = fill_socket(sv[0]);
	/* done on OpenSSL's side, but the tickets wait: not done for the caller */
	assert_int_equal(tls_handshake_step(server), 0);
	assert_true(SSL_is_init_finished(server));
	drain_socket(sv[1], junk);
	assert_int_equal(tls_handshake_step(server), 1);
	/* the flight BIO is gone: the session writes the socket itself */
	assert_int_equal(BIO_method_type(SSL_get_wbio(server)), BIO_TYPE_SOCKET);
	assert_ptr_equal(SSL_get_wbio(server), SSL_get_rbio(server));

	/* both ways intact, the tickets read on the way */
	assert_int_equal(SSL_write(client, "ping", 4), 4);
	assert_int_equal(SSL_read(server, buf, sizeof buf), 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(SSL_write(server, "pong", 4), 4);
	assert_int_equal(SSL_read_ex(client, buf, sizeof buf, &got), 1);
	assert_int_equal(got, 4);
	assert_memory_equal(buf, "pong", 4);
	assert_true(SSL_SESSION_is_resumable(SSL_get0_session(client)));

	SSL_free(server);
	SSL_free(client);
	SSL_CTX_free(client_ctx);
	close(sv[0]);
	close(sv[1]);
}

/* ---- a terminating handshake held for the upstream (tls_server_hold) ---- */

static int pick_http11(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg) {
	(void)ssl;
	(void)arg;
	for (unsigned i = 0; i + 1 < inlen && i + 1u + in[i] <= inlen; i += 1u + in[i])
		if (in[i] == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
			*out = in + i + 1;
			*outlen = 8;
			return SSL_TLSEXT_ERR_OK;
		}
	return SSL_TLSEXT_ERR_NOACK;
}

/* Step client and server until both are done or one fails; returns the server's last. */
static int finish_pair(SSL *server, SSL *client, bool *client_ok) {
	int rs = 0;
	*client_ok = false;
	for (int round = 0; round < 20; round++) {
		int rc = SSL_do_handshake(client);
		if (rc == 1)
			*client_ok = true;
		else if (SSL_get_error(client, rc) == SSL_ERROR_SSL)
			return rs;
		rs = tls_handshake_step(server);
		if (rs < 0 || (rs == 1 && *client_ok))
			return rs;
	}
	return rs;
}

static void test_held_handshake(void **state) {
	(void)state;
	_cleanup_(loaded_free) struct loaded l = load_settings("  alpn_protocols: h2, http/1.1\n");
	SSL_CTX *client_ctx, *up_ctx, *orig_ctx;
	SSL *server, *client, *up_server, *orig;
	BIO *a, *b;
	const unsigned char *proto;
	unsigned proto_len;
	bool client_ok;
	struct mapping m = {0};

	assert_ok(&l);
	client_ctx = test_client_ctx(false, alpn_client_offer, sizeof(alpn_client_offer) - 1);

	/* held at the hello, then refused: the client gets internal_error, not a reset */
	server = SSL_new(server_ctx_of(&l));
	client = SSL_new(client_ctx);
	assert_int_equal(tls_server_hold(server), 0);
	assert_int_equal(BIO_new_bio_pair(&a, 0, &b, 0), 1);
	SSL_set_bio(server, a, a);
	SSL_set_bio(client, b, b);
	SSL_set_accept_state(server);
	SSL_set_connect_state(client);
	assert_int_equal(SSL_set_tlsext_host_name(client, "my-host-1"), 1);
	assert_int_equal(SSL_do_handshake(client), -1);
	assert_int_equal(tls_handshake_step(server), TLS_HANDSHAKE_HELD);
	assert_int_equal(tls_handshake_step(server), TLS_HANDSHAKE_HELD);
	assert_true(tls_server_resume(server, NULL, SSL_AD_INTERNAL_ERROR) < 0);
	ERR_clear_error();
	assert_int_equal(SSL_do_handshake(client), -1);
	assert_int_equal(SSL_get_error(client, -1), SSL_ERROR_SSL);
	assert_int_equal(ERR_GET_REASON(ERR_peek_last_error()), SSL_R_TLSV1_ALERT_INTERNAL_ERROR);
	ERR_clear_error();
	tls_session_free(server);
	SSL_free(client);

	/* held, the upstream offered the client's list and chose http/1.1: the client is told
	 * http/1.1, though this context prefers h2 */
	server = SSL_new(server_ctx_of(&l));
	client = SSL_new(client_ctx);
	assert_int_equal(tls_server_hold(server), 0);
	assert_int_equal(BIO_new_bio_pair(&a, 0, &b, 0), 1);
	SSL_set_bio(server, a, a);
	SSL_set_bio(client, b, b);
	SSL_set_accept_state(server);
	SSL_set_connect_state(client);
	assert_int_equal(SSL_set_tlsext_host_name(client, "my-host-1"), 1);
	assert_int_equal(SSL_do_handshake(client), -1);
	assert_int_equal(tls_handshake_step(server), TLS_HANDSHAKE_HELD);

	up_ctx = test_upstream_ctx();
	SSL_CTX_set_verify(up_ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_alpn_select_cb(up_ctx, pick_http11, NULL);
	orig_ctx = test_client_ctx(false, NULL, 0);
	up_server = SSL_new(up_ctx);
	orig = SSL_new(orig_ctx);
	assert_int_equal(tls_client_offer_alpn(orig, server, &m), 0);
	struct handshake h = run_handshake(up_server, orig);
	assert_true(h.client_ok);
	SSL_get0_alpn_selected(orig, &proto, &proto_len);
	assert_int_equal(proto_len, 8);

	assert_int_equal(tls_server_resume(server, orig, 0), 0);
	assert_int_equal(finish_pair(server, client, &client_ok), 1);
	assert_true(client_ok);
	SSL_get0_alpn_selected(client, &proto, &proto_len);
	assert_int_equal(proto_len, 8);
	assert_memory_equal(proto, "http/1.1", 8);
	tls_session_free(server);
	SSL_free(client);
	SSL_free(up_server);
	SSL_free(orig);
	SSL_CTX_free(up_ctx);
	SSL_CTX_free(orig_ctx);
	SSL_CTX_free(client_ctx);
}

static const char yaml_origination[] = "apiVersion: getambassador.io/v2\n"
                                       "kind: TLSContext\n"
                                       "metadata:\n"
                                       "  name: verify-sni\n"
                                       "spec:\n"
                                       "  ca_secret: ca-secret\n"
                                       "  sni: my-host-2\n"
                                       "  secret: othersecret\n"
                                       "---\n"
                                       "apiVersion: getambassador.io/v2\n"
                                       "kind: TLSContext\n"
                                       "metadata:\n"
                                       "  name: verify-service\n"
                                       "spec:\n"
                                       "  ca_secret: ca-secret\n"
                                       "---\n"
                                       "apiVersion: getambassador.io/v2\n"
                                       "kind: TLSContext\n"
                                       "metadata:\n"
                                       "  name: no-ca\n"
                                       "spec:\n"
                                       "  secret: othersecret\n"
                                       "---\n"
                                       "apiVersion: getambassador.io/v2\n"
                                       "kind: TCPMapping\n"
                                       "metadata:\n"
                                       "  name: by-sni\n"
                                       "spec:\n"
                                       "  port: 2001\n"
                                       "  tls: verify-sni\n"
                                       "  service: upstream-host-2:9999\n"
                                       "---\n"
                                       "apiVersion: getambassador.io/v2\n"
                                       "kind: TCPMapping\n"
                                       "metadata:\n"
                                       "  name: by-service-good\n"
                                       "spec:\n"
                                       "  port: 2002\n"
                                       "  tls: verify-service\n"
                                       "  service: my-host-1:9999\n"
                                       "---\n"
                                       "apiVersion: getambassador.io/v2\n"
                                       "kind: TCPMapping\n"
                                       "metadata:\n"
                                       "  name: by-service-wrong\n"
                                       "spec:\n"
                                       "  port: 2003\n"
                                       "  tls: verify-service\n"
                                       "  service: wrong-host:9999\n"
                                       "---\n"
                                       "apiVersion: getambassador.io/v2\n"
                                       "kind: TCPMapping\n"
                                       "metadata:\n"
                                       "  name: unverified\n"
                                       "spec:\n"
                                       "  port: 2004\n"
                                       "  tls: no-ca\n"
                                       "  service: wrong-host:9999\n"
                                       "---\n"
                                       "apiVersion: getambassador.io/v2\n"
                                       "kind: TCPMapping\n"
                                       "metadata:\n"
                                       "  name: by-address\n"
                                       "spec:\n"
                                       "  port: 2005\n"
                                       "  tls: true\n"
                                       "  service: 127.0.0.1:9999\n";

/* Originate from mapping `name` to the test upstream; the upstream's view of the client
 * certificate goes to *peer_cn ("" without one). */
static struct handshake originate(const struct loaded *l, const char *name, char *peer_cn,
                                  size_t peer_cn_size) {
	const struct mapping *m = mapping_by_name(l->config, name);
	SSL_CTX *upstream_ctx = test_upstream_ctx();
	SSL *server = SSL_new(upstream_ctx), *client;
	struct handshake h;
	X509 *peer;

	assert_non_null(tls_client_ctx(l->config, m));
	client = SSL_new(tls_client_ctx(l->config, m));
	assert_int_equal(tls_client_prepare(client, m), 0);
	h = run_handshake(server, client);
	peer_cn[0] = 0;
	peer = SSL_get1_peer_certificate(server);
	if (peer) {
		X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, peer_cn,
		                          (int)peer_cn_size);
		X509_free(peer);
	}
	SSL_free(server);
	SSL_free(client);
	SSL_CTX_free(upstream_ctx);
	return h;
}

static void test_origination(void **state) {
	(void)state;
	_cleanup_(loaded_free) struct loaded l = load_yaml(yaml_origination);
	struct handshake h;
	char cn[128];

	assert_ok(&l);
	assert_int_equal(SSL_CTX_get_verify_mode(
	                         tls_client_ctx(l.config, mapping_by_name(l.config, "by-sni"))),
	                 SSL_VERIFY_PEER);
	assert_string_equal(tls_upstream_sni(mapping_by_name(l.config, "by-sni")), "my-host-2");
	assert_null(tls_upstream_sni(mapping_by_name(l.config, "by-address")));

	/* the context's sni is sent and verified, and its certificate is offered */
	h = originate(&l, "by-sni", cn, sizeof(cn));
	assert_true(h.client_ok);
	assert_true(h.server_ok);
	assert_string_equal(cn, "tcpmap-test-client");

	h = originate(&l, "by-service-good", cn, sizeof(cn));
	assert_true(h.client_ok);
	assert_string_equal(cn, "");

	/* the CA is right but the name is not */
	h = originate(&l, "by-service-wrong", cn, sizeof(cn));
	assert_false(h.client_ok);
	assert_string_equal(h.client_failure, "certificate_verify_failed");

	/* no CA named: not verified, whatever the name */
	h = originate(&l, "unverified", cn, sizeof(cn));
	assert_true(h.client_ok);
	assert_string_equal(cn, "tcpmap-test-client");

	h = originate(&l, "by-address", cn, sizeof(cn));
	assert_true(h.client_ok);
	assert_string_equal(cn, "");
}

static void test_reload_replaces_runtime(void **state) {
	(void)state;
	_cleanup_(loaded_free) struct loaded l = load_settings("");
	void *first;

	assert_ok(&l);
	first = l.config->tls_runtime;
	assert_non_null(first);
	assert_int_equal(tls_config_load(l.config, secrets_dir, &l.diags), 0);
	assert_non_null(l.config->tls_runtime);
	assert_non_null(server_ctx_of(&l));
	l.config->tls_runtime_free(l.config);
	assert_null(l.config->tls_runtime);
	assert_null(l.config->tls_contexts[0]->runtime);
	assert_null(tls_server_ctx(l.config, group_by_host(l.config, "my-host-1")));
}

int main(void) {
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_example_terminate),
	        cmocka_unit_test(test_flight_over_a_full_socket),
	        cmocka_unit_test(test_example_terminate_originate),
	        cmocka_unit_test(test_example_originate),
	        cmocka_unit_test(test_upstream_sni_never_an_address),
	        cmocka_unit_test(test_missing_secret),
	        cmocka_unit_test(test_missing_secret_without_credentials),
	        cmocka_unit_test(test_secrets_of_listeners_served_elsewhere),
	        cmocka_unit_test(test_mismatched_key),
	        cmocka_unit_test(test_cert_chain_file),
	        cmocka_unit_test(test_passphrase_key_and_field_positions),
	        cmocka_unit_test(test_wildcard_and_exact),
	        cmocka_unit_test(test_host_not_covered),
	        cmocka_unit_test(test_passthrough_needs_no_context),
	        cmocka_unit_test(test_defaults),
	        cmocka_unit_test(test_min_tls_version),
	        cmocka_unit_test(test_old_tls_honoured_with_warning),
	        cmocka_unit_test(test_ciphers_and_curves),
	        cmocka_unit_test(test_cert_required_verify_mode),
	        cmocka_unit_test(test_handshake_sni_and_alpn),
	        cmocka_unit_test(test_handshake_client_cert_required),
	        cmocka_unit_test(test_handshake_failure_reasons),
	        cmocka_unit_test(test_handshake_step_returns),
	        cmocka_unit_test(test_held_handshake),
	        cmocka_unit_test(test_origination),
	        cmocka_unit_test(test_reload_replaces_runtime),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
