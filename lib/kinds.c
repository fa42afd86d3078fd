/* kinds.c — the envelope of every document and the table of kinds; see kinds.h. */
#include "kinds.h"

#include <stdio.h>
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
        [KIND_HOST] = {"Host", "host", kind_host_read},
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

/* Names are unique per kind and namespace, as in Kubernetes (and so in Emissary): the same
 * name in two namespaces is two objects. */
static int check_unique_name(struct yobject *o, struct name_set *s, const struct ynode *at) {
	struct seen_name *items;
	char *copy;

	if (asprintf(&copy, "%s/%s", o->namespace, o->name) < 0)
		return -ENOMEM;
	/* one lookup per document, not a walk of every name seen so far */
	uintptr_t seen = (uintptr_t)strindex_get(&s->by_name, copy);
	if (seen) {
		const struct seen_name *first = &s->items[seen - 1];
		yobject_diag(o, DIAG_ERROR, at,
		             "metadata.name: duplicate name, first defined at %s:%u:%u (both in "
		             "namespace \"%s\")",
		             first->pos.file, first->pos.line, first->pos.column, o->namespace);
		free(copy);
		return 0;
	}
	items = realloc(s->items, (s->n + 1) * sizeof(*items));
	if (!items) {
		free(copy);
		return -ENOMEM;
	}
	s->items = items;
	s->items[s->n++] = (struct seen_name){.name = copy, .pos = ynode_pos(o->file, at)};
	return strindex_put(&s->by_name, copy, (void *)(uintptr_t)s->n);
}

static bool is_v3alpha1(const char *api) { return streq(api, "getambassador.io/v3alpha1"); }

/* Emissary's rule: "_automatic_" is every instance's; any other id must be ours. */
static bool id_is_ours(const struct kinds_state *s, const struct ynode *n) {
	return n->kind == YNODE_SCALAR &&
	       (streq(n->value, s->ambassador_id) || streq(n->value, "_automatic_"));
}

/* Does the document's ambassador_id (string or list) include ours? Absent = "default". */
static bool ambassador_id_matches(const struct kinds_state *s, const struct ynode *n) {
	if (ynode_is_null(n))
		return streq(s->ambassador_id, "default");
	if (n->kind == YNODE_SEQUENCE) {
		for (size_t i = 0; i < n->n_items; i++)
			if (id_is_ours(s, n->items[i]))
				return true;
		return false;
	}
	return id_is_ours(s, n);
}

/* ambassador_id, or its camel-case synonym ambassadorId (Emissary reads both), from `m`. */
static const struct ynode *get_ambassador_id(const struct ynode *m) {
	const struct ynode *id = ymap_get(m, "ambassador_id");
	return id ? id : ymap_get(m, "ambassadorId");
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

/* ---- annotation strings ------------------------------------------------------------------ */

#define CONFIG_ANNOTATION "getambassador.io/config"

/* Offset of the start of 1-based `line` in the file being read, or SIZE_MAX. */
static size_t line_offset(const struct kinds_state *s, unsigned line) {
	size_t off = 0;

	if (!s->data || line == 0)
		return SIZE_MAX;
	for (unsigned l = 1; l < line; l++) {
		const char *nl = memchr(s->data + off, '\n', s->size - off);
		if (!nl)
			return SIZE_MAX;
		off = (size_t)(nl - s->data) + 1;
	}
	return off;
}

/* The annotation's text laid out where it is in the file: as many empty lines as come
 * before it, and (for a block scalar, `|` or `>`) each line indented as it is written, so
 * that every position the parser reports is the file's. Document markers stay in column 1,
 * where YAML wants them. */
static char *annotation_in_place(const struct kinds_state *s, const struct ynode *text,
                                 size_t *ret_len) {
	size_t off = line_offset(s, text->line), indent = 0, len;
	unsigned before = text->line > 0 ? text->line - 1 : 0;
	bool block = false;
	char *buf = NULL;
	FILE *f;

	if (off != SIZE_MAX && off + text->column - 1 < s->size) {
		char c = s->data[off + text->column - 1];
		block = c == '|' || c == '>';
	}
	if (block) {
		/* the content starts on the next line, at the indentation of its first line */
		size_t next = line_offset(s, text->line + 1);
		before = text->line;
		while (next != SIZE_MAX && next + indent < s->size && s->data[next + indent] == ' ')
			indent++;
	}
	f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	for (unsigned i = 0; i < before; i++)
		fputc('\n', f);
	for (const char *p = text->value; *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		bool marker = n >= 3 && (strncmp(p, "---", 3) == 0 || strncmp(p, "...", 3) == 0);

		if (block && n > 0 && !marker)
			fprintf(f, "%*s", (int)indent, "");
		fwrite(p, 1, n, f);
		fputc('\n', f);
		p += n + (nl ? 1 : 0);
	}
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	*ret_len = len;
	return buf;
}

static int on_annotation_document(void *userdata, const char *file, const struct ynode *root) {
	return kinds_read_document(userdata, file, root);
}

/* A Kubernetes object (a Service, most often) whose metadata.annotations carry Emissary's
 * config: a string of `---`-separated annotation-style documents, read as if they stood in
 * the file, in the object's namespace. Not recursive: an annotation inside one is ignored. */
static int read_annotation(struct kinds_state *s, const char *file, const struct ynode *root) {
	const struct ynode *metadata = ymap_get(root, "metadata");
	const struct ynode *text = ymap_get(ymap_get(metadata, "annotations"), CONFIG_ANNOTATION);
	const struct ynode *ns = ymap_get(metadata, "namespace");
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r;

	if (!text || s->annotation_namespace || !s->limits)
		return 0;
	if (text->kind != YNODE_SCALAR) {
		struct yobject o = {.diags = s->diags, .file = file, .kind = "document"};
		yobject_diag(&o, DIAG_ERROR, text,
		             "metadata.annotations.%s: must be a string, not %s", CONFIG_ANNOTATION,
		             ynode_describe(text));
		return 0;
	}
	buf = annotation_in_place(s, text, &len);
	if (!buf)
		return -ENOMEM;
	s->annotation_namespace =
	        ns && ns->kind == YNODE_SCALAR && *ns->value ? ns->value : s->ambassador_namespace;
	r = yamltree_parse(file, buf, len, s->limits, s->diags, on_annotation_document, s);
	s->annotation_namespace = NULL;
	return r == -ENOMEM ? r : 0;
}

/* ---- one document --------------------------------------------------------------------- */

int kinds_read_document(struct kinds_state *s, const char *file, const struct ynode *root) {
	struct yobject o = {.diags = s->diags, .file = file, .kind = "document"};
	const struct ynode *metadata, *name, *spec, *id, *ns;
	const struct kind *k;
	int r;

	if (!root || ynode_is_null(root))
		return 0; /* an empty document, e.g. after a trailing "---" */
	if (root->kind != YNODE_MAPPING) {
		yobject_diag(&o, DIAG_ERROR, root, "a document must be a mapping, not %s",
		             ynode_describe(root));
		return 0;
	}
	r = read_annotation(s, file, root);
	if (r < 0)
		return r;
	k = check_kind(&o, root);
	if (!k)
		return 0;

	spec = ymap_get(root, "spec");
	metadata = ymap_get(root, "metadata");
	/* The annotation style (Emissary's oldest, still read): name and fields at the top. */
	if (!spec && !metadata && ymap_get(root, "name")) {
		o.flat = true;
		spec = root;
	}
	/* Emissary reads ambassador_id from spec; annotation-style configs have it on top. */
	id = spec ? get_ambassador_id(spec) : NULL;
	if (!id)
		id = get_ambassador_id(root);
	if (!ambassador_id_matches(s, id)) {
		yobject_diag(&o, DIAG_DEBUG, id, "not for ambassador_id \"%s\", skipping",
		             s->ambassador_id);
		s->n_other_id++;
		return 0;
	}

	name = o.flat ? ymap_get(root, "name") : ymap_get(metadata, "name");
	ns = o.flat ? ymap_get(root, "namespace") : ymap_get(metadata, "namespace");
	o.namespace = ns && ns->kind == YNODE_SCALAR && *ns->value ? ns->value
	              : s->annotation_namespace                    ? s->annotation_namespace
	                                                           : s->ambassador_namespace;
	if (ynode_is_null(name) || name->kind != YNODE_SCALAR || !*name->value ||
	    strlen(name->value) != name->value_len) {
		yobject_diag(&o, DIAG_ERROR,
		             name       ? name
		             : metadata ? metadata
		                        : root,
		             o.flat ? "name: missing or not a string"
		                    : "metadata.name: missing or not a string");
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
