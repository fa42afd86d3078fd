/* kind-tlscontext.c — the TLSContext schema: its field table and the few fields that need
 * more than a generic parser. Only names are checked here; lib/tls finds the files and
 * builds the OpenSSL contexts later, and this file never opens a secret. */
#include <ctype.h>
#include <stddef.h>

#include "kind.h"
#include "util.h"

#define FIELD_ARGS                                                                                 \
	struct yobject *o, const struct field_def *def, const struct fields *f,                    \
	        const struct ynode *value, void *target

#define AT(field) offsetof(struct tls_context, field)

static int read_hosts(FIELD_ARGS) {
	struct tls_context *t = target;
	int r = get_string_list(o, def->key, value, &t->hosts, &t->n_hosts);

	(void)f;
	if (r <= 0)
		return r;
	for (size_t h = 0; h < t->n_hosts; h++)
		if (!streq(t->hosts[h], "*"))
			(void)normalise_host(o, "hosts", value->items[h], t->hosts[h]);
	return 0;
}

/* A secret name becomes a path component under the secrets directory and the credentials
 * directory; it must not be able to leave them. */
static bool is_safe_secret_name(const char *s) {
	return *s && !strchr(s, '/') && !streq(s, ".") && !streq(s, "..");
}

/* secret, ca_secret */
static int read_secret_name(FIELD_ARGS) {
	char **dst = (char **)((char *)target + def->offset);
	int r = get_string(o, def->key, value, dst);

	(void)f;
	if (r <= 0)
		return r;
	if (!is_safe_secret_name(*dst)) {
		yobject_diag(o, DIAG_ERROR, value, "%s: \"%s\" is not a usable secret name",
		             def->key, *dst);
		return -EINVAL;
	}
	return 0;
}

static bool is_tls_version(const char *s) {
	return streq(s, "v1.0") || streq(s, "v1.1") || streq(s, "v1.2") || streq(s, "v1.3");
}

/* min_tls_version, max_tls_version */
static int read_tls_version(FIELD_ARGS) {
	char **dst = (char **)((char *)target + def->offset);
	int r = get_string(o, def->key, value, dst);

	(void)f;
	if (r <= 0)
		return r;
	if (!is_tls_version(*dst)) {
		yobject_diag(o, DIAG_ERROR, value, "%s: \"%s\" is not v1.0, v1.1, v1.2 or v1.3",
		             def->key, *dst);
		return -EINVAL;
	}
	return 0;
}

static int split_alpn(const char *s, char ***ret) {
	char **v = NULL;
	size_t n = 0;
	const char *p = s;

	while (*p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *a = p, *b = p + len;

		while (a < b && isspace((unsigned char)*a))
			a++;
		while (b > a && isspace((unsigned char)b[-1]))
			b--;
		if (b > a) {
			/* strv_push takes a NULL from strndup as -ENOMEM, and frees on failure */
			if (strv_push(&v, &n, strndup(a, (size_t)(b - a))) < 0) {
				strv_free(v);
				return -ENOMEM;
			}
		}
		p = end ? end + 1 : p + len;
	}
	*ret = v;
	return 0;
}

/* Ambassador gives a comma-separated string; the model holds a list. */
static int read_alpn(FIELD_ARGS) {
	struct tls_context *t = target;
	_cleanup_free_ char *alpn = NULL;
	char **v = NULL;
	int r = get_string(o, def->key, value, &alpn);

	(void)f;
	if (r <= 0)
		return r;
	r = split_alpn(alpn, &v);
	if (r < 0)
		return r;
	strv_free(t->alpn_protocols);
	t->alpn_protocols = v;
	return 0;
}

/* cert_chain_file, private_key_file, cacert_chain_file: a relative path is taken from the
 * directory of the file it is written in (tcpmap.yaml(5)), not from the working directory,
 * which is / under systemd and anything at all for `tcpmapctl check`. */
static int read_file_path(FIELD_ARGS) {
	char **dst = (char **)((char *)target + def->offset);
	const char *slash = strrchr(o->file, '/');
	char *joined;
	int r = get_string(o, def->key, value, dst);

	(void)f;
	if (r <= 0)
		return r;
	if (!**dst) {
		yobject_diag(o, DIAG_ERROR, value, "%s: empty path", def->key);
		return -EINVAL;
	}
	/* a file named without a directory lives in the working directory already */
	if ((*dst)[0] == '/' || !slash)
		return 0;
	if (asprintf(&joined, "%.*s/%s", (int)(slash - o->file), o->file, *dst) < 0)
		return -ENOMEM;
	free(*dst);
	*dst = joined;
	return 0;
}

static const struct field_def tlscontext_fields[] = {
        [TF_HOSTS] = {"hosts", NULL, read_hosts, 0, 0},
        [TF_SECRET] = {"secret", NULL, read_secret_name, AT(secret), 0},
        [TF_CA_SECRET] = {"ca_secret", NULL, read_secret_name, AT(ca_secret), 0},
        [TF_CERT_CHAIN_FILE] = {"cert_chain_file", NULL, read_file_path, AT(cert_chain_file), 0},
        [TF_PRIVATE_KEY_FILE] = {"private_key_file", NULL, read_file_path, AT(private_key_file), 0},
        [TF_CACERT_CHAIN_FILE] = {"cacert_chain_file", NULL, read_file_path, AT(cacert_chain_file),
                                  0},
        [TF_CERT_REQUIRED] = {"cert_required", NULL, field_bool, AT(cert_required), 0},
        [TF_MIN_TLS_VERSION] = {"min_tls_version", NULL, read_tls_version, AT(min_tls_version), 0},
        [TF_MAX_TLS_VERSION] = {"max_tls_version", NULL, read_tls_version, AT(max_tls_version), 0},
        [TF_CIPHER_SUITES] = {"cipher_suites", NULL, field_string_list, AT(cipher_suites), 0},
        [TF_ECDH_CURVES] = {"ecdh_curves", NULL, field_string_list, AT(ecdh_curves), 0},
        [TF_ALPN_PROTOCOLS] = {"alpn_protocols", NULL, read_alpn, 0, 0},
        [TF_CRL_SECRET] = {"crl_secret", NULL, read_secret_name, AT(crl_secret), 0},
        {"sni", NULL, field_string, AT(sni), 0},
        /* Emissary's, meaningless to a single-host L4 proxy. */
        {"ambassador_id", NULL, NULL, 0, FIELD_NOT_USED},
        {"ambassadorId", NULL, NULL, 0, FIELD_NOT_USED},
        {"secret_namespacing", NULL, NULL, 0, FIELD_NOT_USED},
        {"redirect_cleartext_from", NULL, NULL, 0, FIELD_NOT_USED},
        {"v3CRLSecret", NULL, NULL, 0, FIELD_NOT_USED},
        {"v3Crl_secret", NULL, NULL, 0, FIELD_NOT_USED},
};

static const struct field_table tlscontext_table = {
        .fields = tlscontext_fields,
        .n_fields = ELEMENTSOF(tlscontext_fields),
        /* Its fields stand alone, so diags come in the order they are written. */
        .order = FIELDS_IN_DOCUMENT_ORDER,
};

/* A Host's `tls`: the TLSContext fields, read into the Host's own context. */
static const struct field_def host_tls_fields[] = {
        [TF_HOSTS] = {"hosts", "tls.hosts", NULL, 0, FIELD_NOT_USED},
        [TF_SECRET] = {"secret", "tls.secret", NULL, 0, FIELD_NOT_USED},
        [TF_CA_SECRET] = {"ca_secret", "tls.ca_secret", read_secret_name, AT(ca_secret), 0},
        [TF_CERT_CHAIN_FILE] = {"cert_chain_file", "tls.cert_chain_file", read_file_path,
                                AT(cert_chain_file), 0},
        [TF_PRIVATE_KEY_FILE] = {"private_key_file", "tls.private_key_file", read_file_path,
                                 AT(private_key_file), 0},
        [TF_CACERT_CHAIN_FILE] = {"cacert_chain_file", "tls.cacert_chain_file", read_file_path,
                                  AT(cacert_chain_file), 0},
        [TF_CERT_REQUIRED] = {"cert_required", "tls.cert_required", field_bool, AT(cert_required),
                              0},
        [TF_MIN_TLS_VERSION] = {"min_tls_version", "tls.min_tls_version", read_tls_version,
                                AT(min_tls_version), 0},
        [TF_MAX_TLS_VERSION] = {"max_tls_version", "tls.max_tls_version", read_tls_version,
                                AT(max_tls_version), 0},
        [TF_CIPHER_SUITES] = {"cipher_suites", "tls.cipher_suites", field_string_list,
                              AT(cipher_suites), 0},
        [TF_ECDH_CURVES] = {"ecdh_curves", "tls.ecdh_curves", field_string_list, AT(ecdh_curves),
                            0},
        [TF_ALPN_PROTOCOLS] = {"alpn_protocols", "tls.alpn_protocols", read_alpn, 0, 0},
        [TF_CRL_SECRET] = {"crl_secret", "tls.crl_secret", read_secret_name, AT(crl_secret), 0},
        {"sni", "tls.sni", field_string, AT(sni), 0},
        {"redirect_cleartext_from", NULL, NULL, 0, FIELD_NOT_USED},
        {"v3CRLSecret", NULL, NULL, 0, FIELD_NOT_USED},
};

static const struct field_table host_tls_table = {
        .fields = host_tls_fields,
        .n_fields = ELEMENTSOF(host_tls_fields),
        .order = FIELDS_IN_DOCUMENT_ORDER,
        .prefix = "tls.",
};

int kind_tlscontext_read_settings(struct yobject *o, const struct ynode *tls,
                                  struct tls_context *t) {
	struct fields f;
	int r;

	if (ynode_is_null(tls))
		return 0;
	if (tls->kind != YNODE_MAPPING) {
		yobject_diag(o, DIAG_ERROR, tls, "tls: must be a mapping, not %s",
		             ynode_describe(tls));
		return 0;
	}
	r = fields_parse(o, &host_tls_table, tls, &f, t);
	if (r < 0)
		return r;
	for (size_t i = 0; i < _TF_MAX; i++)
		if (f.at[i])
			t->field_pos[i] = ynode_pos(o->file, f.at[i]);
	return 0;
}

static bool strv_contains_str(char *const *v, const char *s) {
	for (; *v; v++)
		if (streq(*v, s))
			return true;
	return false;
}

/* Two contexts listing one host: only one can terminate it, and which one is easy to get
 * wrong when they live in different files. Exact names only; a wildcard that also covers a
 * listed host is the usual way to write a fallback. */
static void warn_shared_hosts(const struct config *c, struct yobject *o,
                              const struct tls_context *t, const struct ynode *hosts) {
	for (size_t h = 0; hosts && h < t->n_hosts && h < hosts->n_items; h++)
		for (size_t i = 0; i + 1 < c->n_tls_contexts; i++) {
			const struct tls_context *other = c->tls_contexts[i];

			/* a Host naming a context's host is how Emissary users write it */
			if (other->from_host)
				continue;
			if (!other->hosts || !strv_contains_str(other->hosts, t->hosts[h]))
				continue;
			yobject_diag(o, DIAG_WARNING, hosts->items[h],
			             "hosts: \"%s\" is also in tlscontext \"%s\" (%s:%u:%u); only "
			             "one of them can terminate it",
			             t->hosts[h], other->name, other->pos.file, other->pos.line,
			             other->pos.column);
			break;
		}
}

int kind_tlscontext_new(struct kinds_state *s, struct yobject *o, const struct ynode *root,
                        const char *label, struct tls_context **ret) {
	struct config *c = s->config;
	struct tls_context *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->name = strdup(o->name);
	if (!t->name || model_push(&c->tls_contexts, &c->n_tls_contexts, t) < 0) {
		free(t->name);
		free(t);
		return -ENOMEM;
	}
	/* the config owns it now */
	t->pos = ynode_pos(o->file, root);
	t->label = label;
	*ret = t;
	return 0;
}

int kind_tlscontext_read(struct kinds_state *s, struct yobject *o, const struct ynode *root,
                         const struct ynode *name, const struct ynode *spec) {
	struct config *c = s->config;
	struct tls_context *t;
	struct fields f;
	int r;

	(void)name;
	r = kind_tlscontext_new(s, o, root, "tlscontext", &t);
	if (r < 0)
		return r;

	r = fields_parse(o, &tlscontext_table, spec, &f, t);
	if (r < 0)
		return r;
	warn_shared_hosts(c, o, t, f.at[TF_HOSTS]);
	/* lib/tls reports what it finds wrong with the files at the field that named them */
	for (size_t i = 0; i < _TF_MAX; i++)
		if (f.at[i])
			t->field_pos[i] = ynode_pos(o->file, f.at[i]);
	if (!t->hosts) {
		t->hosts = calloc(1, sizeof(char *));
		if (!t->hosts)
			return -ENOMEM;
	}
	return 0;
}
