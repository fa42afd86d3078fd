/* yamltree.h — YAML text to a small tree of nodes that keep their line and column.
 *
 * libyaml's event parser feeds the tree, so that every node knows where it was written and
 * aliases are counted as they expand: a "billion laughs" file is rejected after
 * max_alias_expansion nodes, never materialised. Each document is handed to the caller as
 * soon as it ends and freed after. This file knows nothing of Ambassador's kinds or of the
 * model; it reads no files and never logs.
 *
 * Two things libyaml leaves to the application are done here, for every mapping as it
 * closes: a key written twice is an error naming both positions (YAML says keys are unique;
 * Kubernetes refuses duplicates too), and merge keys (`<<: *a`, `<<: [*a, *b]`) are
 * expanded with YAML 1.1's semantics, as PyYAML and Kubernetes tooling read them: the
 * mapping's own keys win over merged ones, and an earlier source in a list wins over a
 * later one. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "diag.h"

enum ynode_kind {
	YNODE_SCALAR,
	YNODE_SEQUENCE,
	YNODE_MAPPING,
};

struct ynode {
	enum ynode_kind kind;
	unsigned line, column; /* 1-based */
	char *value;           /* scalar, NUL-terminated */
	size_t value_len;
	bool plain;           /* unquoted and untagged: may be a number, bool or null */
	struct ynode **items; /* sequence items; for a mapping key, value, key, value... */
	size_t n_items, cap_items;
	size_t size; /* nodes in this subtree, aliases counted as expanded */
	/* An alias: a copy of its anchor's node placed where the alias is written, so diags
	 * about the value point at the use; value and items are the anchor's, not owned. */
	bool shared;
};

/* Absent, or a plain "", "~" or "null". */
bool ynode_is_null(const struct ynode *n);
/* The value of `key` in mapping `m` (the first one when written twice), or NULL. */
const struct ynode *ymap_get(const struct ynode *m, const char *key);
/* "a list", "a mapping", "a scalar" or "a string", for diags. */
const char *ynode_describe(const struct ynode *n);

struct yamltree_limits {
	size_t max_alias_expansion; /* total nodes produced through aliases */
	size_t max_depth;           /* nesting depth */
};

/* Called with each document's root (NULL for an empty one). Returns 0 to go on, or a
 * negative errno that stops the file and is returned by yamltree_parse. */
typedef int (*yamltree_document_fn)(void *userdata, const char *file, const struct ynode *root);

/* Parse `data` (named `file` in diags) document by document. Returns 0 when the stream was
 * read to its end, -ENOMEM when memory ran out ("out of memory" is also reported), the
 * callback's error, or -EINVAL / -E2BIG after reporting why the file stops in `diags`. */
int yamltree_parse(const char *file, const char *data, size_t size,
                   const struct yamltree_limits *limits, struct diag_list *diags,
                   yamltree_document_fn on_document, void *userdata);
