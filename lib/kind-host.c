/* kind-host.c — the Host schema, only the parts that matter to TCP: which names it covers
 * (hostname), where their certificate comes from (tlsSecret), and the TLS settings
 * (tls, or the TLSContext named by tlsContext). Emissary's HTTP parts (ACME, request
 * policy, mapping selectors) are noted at debug level.
 *
 * A Host becomes a tls_context of its own, marked from_host, which
 * model_tlscontext_for_host asks before any TLSContext; this file never opens a secret. */
#include <stddef.h>

#include "kind.h"
#include "util.h"

#define FIELD_ARGS                                                                                 \
	struct yobject *o, const struct field_def *def, const struct fields *f,                    \
	        const struct ynode *value, void *target

enum host_field {
	HF_HOSTNAME,
	HF_TLS_SECRET,
	HF_TLS_CONTEXT,
	HF_TLS,
};

/* "example.com", "*.example.com" or "*": a glob as Emissary reads it, matched as SNI is. */
static int read_hostname(FIELD_ARGS) {
	struct tls_context *t = target;
	_cleanup_free_ char *hostname = NULL;
	int r = get_string(o, def->key, value, &hostname);

	(void)f;
	if (r < 0)
		return r;
	/* absent, a Host covers every name, as Emissary's does */
	if (r == 0 || !*hostname) {
		free(hostname);
		hostname = strdup("*");
		if (!hostname)
			return -ENOMEM;
	} else if (!streq(hostname, "*") && normalise_host(o, "hostname", value, hostname) < 0)
		return 0;
	if (strv_push(&t->hosts, &t->n_hosts, TAKE_PTR(hostname)) < 0)
		return -ENOMEM;
	return 0;
}

/* tlsSecret: {name: NAME}, and tlsContext: {name: NAME}: the name is all tcpmap needs. */
static int read_name_ref(struct yobject *o, const char *field, const struct ynode *value,
                         char **dst) {
	const struct ynode *name;
	char label[64];
	int r;

	if (ynode_is_null(value))
		return 0;
	if (value->kind != YNODE_MAPPING) {
		yobject_diag(o, DIAG_ERROR, value, "%s: must be a mapping with a name, not %s",
		             field, ynode_describe(value));
		return 0;
	}
	name = ymap_get(value, "name");
	snprintf(label, sizeof(label), "%s.name", field);
	r = get_string(o, label, name, dst);
	if (r == 0)
		yobject_diag(o, DIAG_ERROR, value, "%s.name: missing (required)", field);
	if (r > 0 && (!**dst || strchr(*dst, '/') || streq(*dst, ".") || streq(*dst, ".."))) {
		yobject_diag(o, DIAG_ERROR, name, "%s.name: \"%s\" is not a usable name", field,
		             *dst);
		return 0;
	}
	return MIN(r, 0);
}

static int read_tls_secret(FIELD_ARGS) {
	(void)f;
	return read_name_ref(o, def->key, value, &((struct tls_context *)target)->secret);
}

static int read_tls_context(FIELD_ARGS) {
	(void)f;
	return read_name_ref(o, def->key, value, &((struct tls_context *)target)->context_ref);
}

static int read_tls(FIELD_ARGS) {
	(void)def, (void)f;
	return kind_tlscontext_read_settings(o, value, target);
}

static const struct field_def host_fields[] = {
        [HF_HOSTNAME] = {"hostname", NULL, read_hostname, 0, 0},
        [HF_TLS_SECRET] = {"tlsSecret", NULL, read_tls_secret, 0, 0},
        [HF_TLS_CONTEXT] = {"tlsContext", NULL, read_tls_context, 0, 0},
        [HF_TLS] = {"tls", NULL, read_tls, 0, 0},
        /* Emissary's HTTP and certificate-management parts */
        {"ambassador_id", NULL, NULL, 0, FIELD_NOT_USED},
        {"ambassadorId", NULL, NULL, 0, FIELD_NOT_USED},
        {"acmeProvider", NULL, NULL, 0, FIELD_NOT_USED},
        {"requestPolicy", NULL, NULL, 0, FIELD_NOT_USED},
        {"selector", NULL, NULL, 0, FIELD_NOT_USED},
        {"mappingSelector", NULL, NULL, 0, FIELD_NOT_USED},
        {"previewUrl", NULL, NULL, 0, FIELD_NOT_USED},
        {"generation", NULL, NULL, 0, FIELD_NOT_USED},
        {"metadata_labels", NULL, NULL, 0, FIELD_NOT_USED},
};

static const struct field_table host_table = {
        .fields = host_fields,
        .n_fields = ELEMENTSOF(host_fields),
};

int kind_host_read(struct kinds_state *s, struct yobject *o, const struct ynode *root,
                   const struct ynode *name, const struct ynode *spec) {
	struct tls_context *t;
	struct fields f;
	int r;

	(void)name;
	r = kind_tlscontext_new(s, o, root, "host", &t);
	if (r < 0)
		return r;
	t->from_host = true;
	r = fields_parse(o, &host_table, spec, &f, t);
	if (r < 0)
		return r;
	if (f.at[HF_HOSTNAME])
		t->field_pos[TF_HOSTS] = ynode_pos(o->file, f.at[HF_HOSTNAME]);
	if (f.at[HF_TLS_SECRET])
		t->field_pos[TF_SECRET] = ynode_pos(o->file, f.at[HF_TLS_SECRET]);
	if (!t->hosts) {
		t->hosts = calloc(1, sizeof(char *));
		if (!t->hosts)
			return -ENOMEM;
	}
	return 0;
}
