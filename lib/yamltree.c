/* yamltree.c — see yamltree.h. */
#include "yamltree.h"

#include <yaml.h>

#include "util.h"

struct yanchor {
	char *name;
	struct ynode *node;
};

struct ybuilder {
	struct ynode **all; /* every node of the current document; aliases are not copies */
	size_t n_all;
	struct ynode **stack;
	size_t depth;
	struct yanchor *anchors;
	size_t n_anchors;
	char **pending_anchors; /* anchor of each open collection, by depth */
	struct ynode *root;
	size_t expanded;
	bool have_root;
};

/* What one file's parse needs besides the tree. */
struct yparse {
	const char *file;
	const struct yamltree_limits *limits;
	struct diag_list *diags;
	yamltree_document_fn on_document;
	void *userdata;
};

static void ybuilder_reset(struct ybuilder *b) {
	for (size_t i = 0; i < b->n_all; i++) {
		if (!b->all[i]->shared) {
			free(b->all[i]->value);
			free(b->all[i]->items);
		}
		free(b->all[i]);
	}
	for (size_t i = 0; i < b->n_anchors; i++)
		free(b->anchors[i].name);
	for (size_t i = 0; i < b->depth; i++)
		free(b->pending_anchors[i]);
	free(b->all);
	free(b->stack);
	free(b->anchors);
	free(b->pending_anchors);
	*b = (struct ybuilder){};
}

static int ynode_append(struct ynode *parent, struct ynode *child) {
	if (parent->n_items == parent->cap_items) {
		size_t cap = parent->cap_items ? parent->cap_items * 2 : 4;
		struct ynode **items = realloc(parent->items, cap * sizeof(*items));
		if (!items)
			return -ENOMEM;
		parent->items = items;
		parent->cap_items = cap;
	}
	parent->items[parent->n_items++] = child;
	return 0;
}

static struct ynode *ybuilder_new_node(struct ybuilder *b, enum ynode_kind kind,
                                       const yaml_mark_t *mark) {
	struct ynode *n, **all;

	all = realloc(b->all, (b->n_all + 1) * sizeof(*all));
	if (!all)
		return NULL;
	b->all = all;
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->kind = kind;
	n->line = (unsigned)mark->line + 1;
	n->column = (unsigned)mark->column + 1;
	n->size = 1;
	b->all[b->n_all++] = n;
	return n;
}

static int ybuilder_attach(struct ybuilder *b, struct ynode *n) {
	if (b->depth == 0) {
		b->root = n;
		b->have_root = true;
		return 0;
	}
	return ynode_append(b->stack[b->depth - 1], n);
}

static int ybuilder_add_anchor(struct ybuilder *b, char *name, struct ynode *n) {
	struct yanchor *a;

	if (!name)
		return 0;
	a = realloc(b->anchors, (b->n_anchors + 1) * sizeof(*a));
	if (!a) {
		free(name);
		return -ENOMEM;
	}
	b->anchors = a;
	b->anchors[b->n_anchors++] = (struct yanchor){.name = name, .node = n};
	return 0;
}

static struct ynode *ybuilder_find_anchor(struct ybuilder *b, const char *name) {
	/* A later anchor with the same name replaces an earlier one (YAML 1.2 §3.2.2.2). */
	for (size_t i = b->n_anchors; i > 0; i--)
		if (streq(b->anchors[i - 1].name, name))
			return b->anchors[i - 1].node;
	return NULL;
}

bool ynode_is_null(const struct ynode *n) {
	if (!n)
		return true;
	if (n->kind != YNODE_SCALAR || !n->plain)
		return false;
	return n->value_len == 0 || streq(n->value, "~") || streq(n->value, "null") ||
	       streq(n->value, "Null") || streq(n->value, "NULL");
}

const struct ynode *ymap_get(const struct ynode *m, const char *key) {
	if (!m || m->kind != YNODE_MAPPING)
		return NULL;
	for (size_t i = 0; i + 1 < m->n_items; i += 2) {
		const struct ynode *k = m->items[i];
		if (k->kind == YNODE_SCALAR && streq(k->value, key))
			return m->items[i + 1];
	}
	return NULL;
}

const char *ynode_describe(const struct ynode *n) {
	if (n->kind == YNODE_SEQUENCE)
		return "a list";
	if (n->kind == YNODE_MAPPING)
		return "a mapping";
	return n->plain ? "a scalar" : "a string";
}

static void offset_to_position(const char *data, size_t size, size_t offset, unsigned *line,
                               unsigned *column) {
	*line = 1;
	*column = 1;
	for (size_t i = 0; i < offset && i < size; i++) {
		if (data[i] == '\n') {
			(*line)++;
			*column = 1;
		} else
			(*column)++;
	}
}

static void report_parser_error(const struct yparse *y, const char *data, size_t size,
                                const yaml_parser_t *p) {
	unsigned line, column;

	if (p->error == YAML_MEMORY_ERROR) {
		diag_add(y->diags, DIAG_ERROR, y->file, 0, 0, "out of memory");
		return;
	}
	if (p->error == YAML_READER_ERROR) {
		/* Reader errors (bad UTF-8, control characters) carry a byte offset only. */
		offset_to_position(data, size, p->problem_offset, &line, &column);
		diag_add(y->diags, DIAG_ERROR, y->file, line, column,
		         "invalid YAML: %s (the file must be UTF-8 text)",
		         p->problem ? p->problem : "unreadable input");
		return;
	}
	line = (unsigned)p->problem_mark.line + 1;
	column = (unsigned)p->problem_mark.column + 1;
	if (p->context)
		diag_add(y->diags, DIAG_ERROR, y->file, line, column, "invalid YAML: %s %s",
		         p->problem ? p->problem : "syntax error", p->context);
	else
		diag_add(y->diags, DIAG_ERROR, y->file, line, column, "invalid YAML: %s",
		         p->problem ? p->problem : "syntax error");
}

/* The event's anchor, copied; *ret stays NULL when it has none. */
static int event_anchor(const yaml_event_t *ev, char **ret) {
	const yaml_char_t *a = NULL;

	*ret = NULL;
	if (ev->type == YAML_SCALAR_EVENT)
		a = ev->data.scalar.anchor;
	else if (ev->type == YAML_SEQUENCE_START_EVENT)
		a = ev->data.sequence_start.anchor;
	else if (ev->type == YAML_MAPPING_START_EVENT)
		a = ev->data.mapping_start.anchor;
	if (!a)
		return 0;
	*ret = strdup((const char *)a);
	return *ret ? 0 : -ENOMEM;
}

static int builder_scalar(struct ybuilder *b, const yaml_event_t *ev) {
	const char *tag = (const char *)ev->data.scalar.tag;
	struct ynode *n;
	char *anchor;

	n = ybuilder_new_node(b, YNODE_SCALAR, &ev->start_mark);
	if (!n)
		return -ENOMEM;
	n->value = strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
	if (!n->value)
		return -ENOMEM;
	n->value_len = ev->data.scalar.length;
	n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	           (!tag || !streq(tag, YAML_STR_TAG));
	if (ybuilder_attach(b, n) < 0 || event_anchor(ev, &anchor) < 0)
		return -ENOMEM;
	return ybuilder_add_anchor(b, anchor, n);
}

static int builder_open(const struct yparse *y, struct ybuilder *b, const yaml_event_t *ev) {
	struct ynode *n, **stack;
	char **pending;

	if (b->depth >= y->limits->max_depth) {
		diag_add(y->diags, DIAG_ERROR, y->file, (unsigned)ev->start_mark.line + 1,
		         (unsigned)ev->start_mark.column + 1,
		         "invalid YAML: nesting deeper than %zu levels", y->limits->max_depth);
		return -E2BIG;
	}
	n = ybuilder_new_node(
	        b, ev->type == YAML_SEQUENCE_START_EVENT ? YNODE_SEQUENCE : YNODE_MAPPING,
	        &ev->start_mark);
	if (!n || ybuilder_attach(b, n) < 0)
		return -ENOMEM;
	stack = realloc(b->stack, (b->depth + 1) * sizeof(*stack));
	if (!stack)
		return -ENOMEM;
	b->stack = stack;
	pending = realloc(b->pending_anchors, (b->depth + 1) * sizeof(*pending));
	if (!pending)
		return -ENOMEM;
	b->pending_anchors = pending;
	/* Registered only when the collection closes, so an alias inside its own anchor
	 * ("&a [*a]") is unknown rather than a cycle. */
	if (event_anchor(ev, &b->pending_anchors[b->depth]) < 0)
		return -ENOMEM;
	b->stack[b->depth] = n;
	b->depth++;
	return 0;
}

/* One key: value pair of a mapping being closed, own or merged, in output order. */
struct ypair {
	struct ynode *key, *value;
	size_t position;
	bool own; /* written in this mapping, not merged from a source */
	bool keep;
};

static bool is_merge_key(const struct ynode *key) {
	return key->kind == YNODE_SCALAR && key->plain && streq(key->value, "<<");
}

static int ypair_compare(const void *a, const void *b) {
	const struct ypair *x = *(const struct ypair *const *)a,
	                   *y = *(const struct ypair *const *)b;
	size_t len = MIN(x->key->value_len, y->key->value_len);
	int r = memcmp(x->key->value, y->key->value, len);

	if (r != 0)
		return r;
	if (x->key->value_len != y->key->value_len)
		return x->key->value_len < y->key->value_len ? -1 : 1;
	/* own keys first, then by position: the first of a group is the one that counts */
	if (x->own != y->own)
		return x->own ? -1 : 1;
	return x->position < y->position ? -1 : x->position > y->position;
}

static int ypairs_push(struct ypair **pairs, size_t *n, size_t *cap, struct ynode *key,
                       struct ynode *value, bool own) {
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 16;
		struct ypair *p = realloc(*pairs, c * sizeof(*p));
		if (!p)
			return -ENOMEM;
		*pairs = p;
		*cap = c;
	}
	(*pairs)[*n] = (struct ypair){
	        .key = key, .value = value, .position = *n, .own = own, .keep = true};
	(*n)++;
	return 0;
}

/* The pairs of mapping `n` in order, each merge key replaced by its sources' pairs. */
static int collect_pairs(const struct yparse *y, const struct ynode *n, struct ypair **pairs,
                         size_t *n_pairs) {
	size_t cap = 0;

	for (size_t i = 0; i + 1 < n->n_items; i += 2) {
		struct ynode *key = n->items[i], *value = n->items[i + 1];
		const struct ynode *const *sources = (const struct ynode *const *)&n->items[i + 1];
		size_t n_sources = 1;

		if (!is_merge_key(key)) {
			if (ypairs_push(pairs, n_pairs, &cap, key, value, true) < 0)
				return -ENOMEM;
			continue;
		}
		if (value->kind == YNODE_SEQUENCE) {
			sources = (const struct ynode *const *)value->items;
			n_sources = value->n_items;
		}
		for (size_t s = 0; s < n_sources; s++) {
			const struct ynode *src = sources[s];

			if (src->kind != YNODE_MAPPING) {
				diag_add(y->diags, DIAG_ERROR, y->file, src->line, src->column,
				         "<<: a merge key takes a mapping or a list of mappings, "
				         "not "
				         "%s",
				         ynode_describe(src));
				continue;
			}
			for (size_t k = 0; k + 1 < src->n_items; k += 2)
				if (ypairs_push(pairs, n_pairs, &cap, src->items[k],
				                src->items[k + 1], false) < 0)
					return -ENOMEM;
		}
	}
	return 0;
}

/* Report own keys written twice, and drop merged keys that an own key or an earlier
 * source already gives. */
static int resolve_pairs(const struct yparse *y, struct ypair *pairs, size_t n_pairs) {
	_cleanup_free_ struct ypair **sorted = NULL;
	size_t n_sorted = 0;

	sorted = malloc((n_pairs ?: 1) * sizeof(*sorted));
	if (!sorted)
		return -ENOMEM;
	for (size_t i = 0; i < n_pairs; i++)
		if (pairs[i].key->kind == YNODE_SCALAR)
			sorted[n_sorted++] = &pairs[i];
	qsort(sorted, n_sorted, sizeof(*sorted), ypair_compare);
	for (size_t i = 0; i < n_sorted;) {
		const struct ypair *first = sorted[i];
		size_t end = i + 1;

		while (end < n_sorted && first->key->value_len == sorted[end]->key->value_len &&
		       memcmp(first->key->value, sorted[end]->key->value, first->key->value_len) ==
		               0)
			end++;
		for (size_t k = i + 1; k < end; k++) {
			struct ypair *p = sorted[k];
			if (p->own)
				diag_add(y->diags, DIAG_ERROR, y->file, p->key->line,
				         p->key->column, "duplicate key \"%s\" (first at %s:%u:%u)",
				         p->key->value, y->file, first->key->line,
				         first->key->column);
			else
				p->keep = false;
		}
		i = end;
	}
	return 0;
}

/* Duplicate keys and merge keys of mapping `n`, which has just closed. */
static int mapping_finish(const struct yparse *y, struct ynode *n) {
	_cleanup_free_ struct ypair *pairs = NULL;
	bool has_merge = false;
	size_t n_pairs = 0, n_items = 0;
	struct ynode **items;
	int r;

	for (size_t i = 0; i + 1 < n->n_items; i += 2)
		has_merge = has_merge || is_merge_key(n->items[i]);
	r = collect_pairs(y, n, &pairs, &n_pairs);
	if (r < 0)
		return r;
	r = resolve_pairs(y, pairs, n_pairs);
	if (r < 0 || !has_merge)
		return r;
	items = malloc((2 * n_pairs ?: 1) * sizeof(*items));
	if (!items)
		return -ENOMEM;
	for (size_t i = 0; i < n_pairs; i++)
		if (pairs[i].keep) {
			items[n_items++] = pairs[i].key;
			items[n_items++] = pairs[i].value;
		}
	free(n->items);
	n->items = items;
	n->n_items = n->cap_items = n_items;
	return 0;
}

static int builder_close(const struct yparse *y, struct ybuilder *b) {
	struct ynode *n;
	char *anchor;
	int r;

	if (b->depth == 0)
		return -EINVAL;
	b->depth--;
	n = b->stack[b->depth];
	if (n->kind == YNODE_MAPPING) {
		r = mapping_finish(y, n);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < n->n_items; i++)
		n->size += n->items[i]->size;
	anchor = TAKE_PTR(b->pending_anchors[b->depth]);
	return ybuilder_add_anchor(b, anchor, n);
}

static int builder_alias(const struct yparse *y, struct ybuilder *b, const yaml_event_t *ev) {
	struct ynode *target = ybuilder_find_anchor(b, (const char *)ev->data.alias.anchor), *copy;
	unsigned line = (unsigned)ev->start_mark.line + 1,
	         column = (unsigned)ev->start_mark.column + 1;

	if (!target) {
		diag_add(y->diags, DIAG_ERROR, y->file, line, column,
		         "invalid YAML: alias *%s refers to no earlier anchor",
		         (const char *)ev->data.alias.anchor);
		return -EINVAL;
	}
	if (target->size > y->limits->max_alias_expansion ||
	    b->expanded + target->size > y->limits->max_alias_expansion) {
		diag_add(y->diags, DIAG_ERROR, y->file, line, column,
		         "invalid YAML: aliases expand to more than %zu nodes",
		         y->limits->max_alias_expansion);
		return -E2BIG;
	}
	b->expanded += target->size;
	/* A copy of the node, not of its subtree: it only carries the alias's position. */
	copy = ybuilder_new_node(b, target->kind, &ev->start_mark);
	if (!copy)
		return -ENOMEM;
	copy->value = target->value;
	copy->value_len = target->value_len;
	copy->plain = target->plain;
	copy->items = target->items;
	copy->n_items = copy->cap_items = target->n_items;
	copy->size = target->size;
	copy->shared = true;
	return ybuilder_attach(b, copy);
}

/* Returns 0 to go on, or a negative errno after reporting why this file stops. */
static int builder_event(const struct yparse *y, struct ybuilder *b, const yaml_event_t *ev) {
	int r;

	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		ybuilder_reset(b);
		return 0;
	case YAML_DOCUMENT_END_EVENT:
		r = y->on_document(y->userdata, y->file, b->root);
		ybuilder_reset(b);
		return r;
	case YAML_SCALAR_EVENT:
		return builder_scalar(b, ev);
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		return builder_open(y, b, ev);
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		return builder_close(y, b);
	case YAML_ALIAS_EVENT:
		return builder_alias(y, b, ev);
	default:
		return 0;
	}
}

int yamltree_parse(const char *file, const char *data, size_t size,
                   const struct yamltree_limits *limits, struct diag_list *diags,
                   yamltree_document_fn on_document, void *userdata) {
	const struct yparse y = {.file = file,
	                         .limits = limits,
	                         .diags = diags,
	                         .on_document = on_document,
	                         .userdata = userdata};
	_cleanup_(ybuilder_reset) struct ybuilder b = {};
	yaml_parser_t parser;
	int r = 0;

	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)data, size);
	for (;;) {
		yaml_event_t ev;
		bool done;

		if (!yaml_parser_parse(&parser, &ev)) {
			report_parser_error(&y, data, size, &parser);
			r = parser.error == YAML_MEMORY_ERROR ? -ENOMEM : -EINVAL;
			break;
		}
		done = ev.type == YAML_STREAM_END_EVENT;
		r = builder_event(&y, &b, &ev);
		yaml_event_delete(&ev);
		if (r == -ENOMEM)
			diag_add(diags, DIAG_ERROR, file, 0, 0, "out of memory");
		if (done || r < 0)
			break;
	}
	yaml_parser_delete(&parser);
	return r;
}
