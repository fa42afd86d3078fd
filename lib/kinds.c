/* kinds.c — the envelope of every document and the table of kinds; see kinds.h. */
#include "kinds.h"

#include <strings.h>

#include "util.h"

struct kind {
	const char *kind;  /* as in `kind:` */
	const char *label; /* names its objects in diags: `mapping "ssh": ...` */
	kind_read_fn *read;
};

static const struct kind kinds[_KIND_MAX] = {
        [KIND_TCPMAPPING] = {"TCPMapping", "mapping", kind_tcpmapping_read},
        [KIND_TLSCONTEXT] = {"TLSContext", "tlscontext", kind_tlscontext_read},
        [KIND_MODULE] = {"Module", "module", kind_module_read},
};

static void name_set_free(struct name_set *s) {
	strindex_done(&s->by_name);
	for (size_t i = 0; i < s->n; i++)
		free(s->items[i].name);
	free(s->items);
	*s = (struct name_set){};
}

void kinds_state_done(struct kinds_state *s) {
	free(s->extras);
	s->extras = NULL;
	for (size_t i = 0; i < _KIND_MAX; i++)
		name_set_free(&s->names[i]);
}

/* Names are unique per kind, as in Kubernetes within one namespace. */
static int check_unique_name(struct yobject *o, struct name_set *s, const struct ynode *at) {
	struct seen_name *items;
	char *copy;

	/* one lookup per document, not a walk of every name seen so far */
	uintptr_t seen = (uintptr_t)strindex_get(&s->by_name, o->name);
	if (seen) {
		const struct seen_name *first = &s->items[seen - 1];
		yobject_diag(o, DIAG_ERROR, at,
		             "metadata.name: duplicate name, first defined at %s:%u:%u",
		             first->pos.file, first->pos.line, first->pos.column);
		return 0;
	}
	items = realloc(s->items, (s->n + 1) * sizeof(*items));
	if (!items)
		return -ENOMEM;
	s->items = items;
	copy = strdup(o->name);
	if (!copy)
		return -ENOMEM;
	s->items[s->n++] = (struct seen_name){.name = copy, .pos = ynode_pos(o->file, at)};
	return strindex_put(&s->by_name, copy, (void *)(uintptr_t)s->n);
}

static bool is_v3alpha1(const char *api) { return streq(api, "getambassador.io/v3alpha1"); }

/* Does the document's ambassador_id (string or list) include ours? Absent = "default". */
static bool ambassador_id_matches(const struct kinds_state *s, const struct ynode *n) {
	if (ynode_is_null(n))
		return streq(s->ambassador_id, "default");
	if (n->kind == YNODE_SCALAR)
		return streq(n->value, s->ambassador_id);
	if (n->kind == YNODE_SEQUENCE)
		for (size_t i = 0; i < n->n_items; i++)
			if (n->items[i]->kind == YNODE_SCALAR &&
			    streq(n->items[i]->value, s->ambassador_id))
				return true;
	return false;
}

static const struct kind *find_kind(const char *name, bool ignoring_case) {
	for (size_t i = 0; i < _KIND_MAX; i++)
		if (ignoring_case ? strcasecmp(kinds[i].kind, name) == 0
		                  : streq(kinds[i].kind, name))
			return &kinds[i];
	return NULL;
}

/* Kubernetes' object names (a DNS-1123 subdomain), which Emissary inherits: lower-case
 * letters, digits, '-' and '.', each dot-separated part starting and ending with a letter
 * or digit, 253 at most. It also keeps every byte a name can put into a diag, the journal
 * or `tcpmapctl` printable. */
static bool is_kubernetes_name(const char *s, size_t len) {
	if (len == 0 || len > 253 || strlen(s) != len)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		bool edge = i == 0 || i + 1 == len || s[i - 1] == '.' || s[i + 1] == '.';

		if (alnum)
			continue;
		if ((c != '-' && c != '.') || edge)
			return false;
	}
	return true;
}

/* kind and apiVersion: is this document ours at all, and in a version we read? */
static const struct kind *check_kind(struct yobject *o, const struct ynode *root) {
	const struct ynode *kind, *api;
	const struct kind *k;

	kind = ymap_get(root, "kind");
	if (ynode_is_null(kind) || kind->kind != YNODE_SCALAR) {
		yobject_diag(o, DIAG_ERROR, kind ? kind : root, "kind: missing or not a string");
		return NULL;
	}
	k = find_kind(kind->value, false);
	if (!k && find_kind(kind->value, true)) {
		/* Kubernetes would refuse it; Emissary would ignore it: either way, not quietly */
		yobject_diag(o, DIAG_WARNING, kind,
		             "kind: \"%s\" is not %s (kinds are case-sensitive), skipping",
		             kind->value, find_kind(kind->value, true)->kind);
		return NULL;
	}
	if (!k) {
		/* Shared with Emissary: Mappings, Hosts, Services... are someone else's. */
		yobject_diag(o, DIAG_DEBUG, kind, "skipping kind %s", kind->value);
		return NULL;
	}
	o->label = k->label;
	o->kind = kind->value;

	api = ymap_get(root, "apiVersion");
	if (ynode_is_null(api) || api->kind != YNODE_SCALAR) {
		yobject_diag(o, DIAG_ERROR, api ? api : root,
		             "apiVersion: missing or not a string");
		return NULL;
	}
	if (!streq(api->value, "getambassador.io/v2") && !is_v3alpha1(api->value)) {
		yobject_diag(o, DIAG_ERROR, api,
		             "apiVersion: \"%s\" is not supported (use getambassador.io/v2 or "
		             "getambassador.io/v3alpha1)",
		             api->value);
		return NULL;
	}
	o->v3alpha1 = is_v3alpha1(api->value);
	return k;
}

int kinds_read_document(struct kinds_state *s, const char *file, const struct ynode *root) {
	struct yobject o = {.diags = s->diags, .file = file, .kind = "document"};
	const struct ynode *metadata, *name, *spec, *id;
	const struct kind *k;
	int r;

	if (!root || ynode_is_null(root))
		return 0; /* an empty document, e.g. after a trailing "---" */
	if (root->kind != YNODE_MAPPING) {
		yobject_diag(&o, DIAG_ERROR, root, "a document must be a mapping, not %s",
		             ynode_describe(root));
		return 0;
	}
	k = check_kind(&o, root);
	if (!k)
		return 0;

	spec = ymap_get(root, "spec");
	/* Emissary reads ambassador_id from spec; annotation-style configs have it on top. */
	id = spec ? ymap_get(spec, "ambassador_id") : NULL;
	if (!id)
		id = ymap_get(root, "ambassador_id");
	if (!ambassador_id_matches(s, id)) {
		yobject_diag(&o, DIAG_DEBUG, id, "not for ambassador_id \"%s\", skipping",
		             s->ambassador_id);
		return 0;
	}

	metadata = ymap_get(root, "metadata");
	name = ymap_get(metadata, "name");
	if (ynode_is_null(name) || name->kind != YNODE_SCALAR || !*name->value ||
	    strlen(name->value) != name->value_len) {
		yobject_diag(&o, DIAG_ERROR,
		             name       ? name
		             : metadata ? metadata
		                        : root,
		             "metadata.name: missing or not a string");
		return 0;
	}
	if (!is_kubernetes_name(name->value, name->value_len)) {
		yobject_diag(&o, DIAG_ERROR, name,
		             "metadata.name: \"%s\" is not a valid name (lower-case letters, "
		             "digits, '-' and '.', starting and ending with a letter or digit, at "
		             "most 253)",
		             name->value);
		return 0;
	}
	o.name = name->value;

	if (ynode_is_null(spec) || spec->kind != YNODE_MAPPING) {
		yobject_diag(&o, DIAG_ERROR, spec ? spec : root, "spec: missing or not a mapping");
		return 0;
	}

	r = check_unique_name(&o, &s->names[k - kinds], name);
	if (r < 0)
		return r;
	return k->read(s, &o, root, name, spec);
}
