/* fields.h — reading one object's fields from the YAML tree: typed accessors and the one
 * field-table mechanism every kind's schema uses.
 *
 * A kind describes its `spec` as a table of struct field_def; fields_parse() matches the
 * keys against it (unknown keys warn, Emissary's keys that mean nothing here are noted at
 * debug level; a key given twice was already reported by lib/yamltree.c, and the first one
 * counts, as ymap_get reads it) and then runs each
 * field's parser. Every problem becomes one diag "FILE:LINE:COL: LABEL \"NAME\": FIELD: what".
 * This file knows no particular kind and builds nothing of the model but field values. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "diag.h"
#include "model.h"
#include "util.h"
#include "yamltree.h"

/* The object (one document) that diags are about: `mapping "ssh": port: ...`. */
struct yobject {
	struct diag_list *diags;
	const char *file;
	const char *label; /* "mapping", "tlscontext", "module" */
	const char *kind;  /* "TCPMapping", ... for objects without a usable name */
	const char *name;
	bool v3alpha1;
	bool bad; /* an error was reported about it */
};

_printf_(4, 5) void yobject_diag(struct yobject *o, enum diag_level level, const struct ynode *at,
                                 const char *fmt, ...);
struct source_pos ynode_pos(const char *file, const struct ynode *n);

/* Typed accessors. Each returns 1 when the value is present and valid, 0 when absent (or
 * null), -EINVAL after reporting a bad value, and -ENOMEM. `field` names it in diags. */
int get_string(struct yobject *o, const char *field, const struct ynode *n, char **ret);
int get_int(struct yobject *o, const char *field, const struct ynode *n, int64_t min, int64_t max,
            int64_t *ret);
/* For fields the CRD types as strings but that hold a number (idle_timeout_ms): an integer
 * or a string of digits. */
int get_uint_or_digits(struct yobject *o, const char *field, const struct ynode *n, uint64_t min,
                       uint64_t max, uint64_t *ret);
int get_bool(struct yobject *o, const char *field, const struct ynode *n, bool *ret);
/* A NULL-terminated list; an empty list is a non-NULL empty one. ret_n may be NULL. */
int get_string_list(struct yobject *o, const char *field, const struct ynode *n, char ***ret,
                    size_t *ret_n);
/* Ambassador's circuit_breakers list; only priority "default" applies to TCP. A list with no
 * default-priority item (empty, or only "high") warns and counts as absent (returns 0).
 * `field` is "circuit_breakers" in a mapping, "config.circuit_breakers" in the Module. */
int get_circuit_breakers(struct yobject *o, const char *field, const struct ynode *n,
                         struct circuit_breakers *ret);
/* true/True/TRUE/false/... as a plain scalar. Returns 0 or -EINVAL; reports nothing. */
int yaml_bool(const struct ynode *n, bool *ret);
/* NULL when `host` is a host name (labels of letters, digits, '-' and '_', 1-63 each, 253 in
 * all; "*.example.com" too when allow_wildcard); else what is wrong, as "it ...". */
const char *host_name_problem(const char *host, bool allow_wildcard);
/* Lower-case `host` in place, drop a trailing dot, and check it is a host name or a
 * "*.example.com" wildcard. Returns 0 or -EINVAL after a diag at `at`. */
int normalise_host(struct yobject *o, const char *field, const struct ynode *at, char *host);

/* ---- the field table ------------------------------------------------------------------- */

#define FIELDS_MAX 32

/* One object's fields as found in its spec. */
struct fields {
	const struct ynode *spec;
	const struct ynode *at[FIELDS_MAX]; /* value of each field of the table, NULL = absent */
};

struct field_def;
/* Read `value` (NULL when absent: required fields report that) into `target`. Returns 0,
 * -EINVAL after a diag (the object is bad, the other fields are still read), or -ENOMEM,
 * which stops the object. */
typedef int (*field_parse_fn)(struct yobject *o, const struct field_def *def,
                              const struct fields *f, const struct ynode *value, void *target);

enum field_flags {
	/* Emissary's, meaningless to a single-host L4 proxy: noted at debug level only. */
	FIELD_NOT_USED = 1 << 0,
	/* tcpmap's own: Kubernetes prunes it from getambassador.io/v3alpha1 documents. */
	FIELD_EXTENSION = 1 << 1,
};

struct field_def {
	const char *key;      /* as written in the YAML */
	const char *label;    /* in diags, when not the key: "config.enable_ipv4"; NULL = key */
	field_parse_fn parse; /* NULL: accepted and ignored */
	size_t offset;        /* where the generic parsers below store into the target */
	unsigned flags;
};

enum field_order {
	/* Each field once, in table order, absent ones too (with NULL, so that a required
	 * field can say it is missing, and a field can look at those read before it). */
	FIELDS_IN_TABLE_ORDER,
	/* Each key as written, in document order; absent fields are not called. For kinds
	 * whose fields stand alone. */
	FIELDS_IN_DOCUMENT_ORDER,
};

struct field_table {
	const struct field_def *fields;
	size_t n_fields; /* at most FIELDS_MAX */
	enum field_order order;
	/* Keys another program reads here (the Module's config holds dozens of Emissary's HTTP
	 * settings): noted at debug level; any other unknown key warns. NULL-terminated. */
	const char *const *others;
	const char *prefix; /* put before a key in diags: "config." */
};

/* Match the keys of mapping `spec` against `table` into `f`, then run the fields' parsers
 * with `target` in the table's order. Returns 0 (problems are diags and mark `o` bad) or -ENOMEM.
 */
int fields_parse(struct yobject *o, const struct field_table *table, const struct ynode *spec,
                 struct fields *f, void *target);
static inline const char *field_label(const struct field_def *def) {
	return def->label ?: def->key;
}

/* Generic parsers storing at def->offset: a char *, a bool, a char ** list. */
int field_string(struct yobject *o, const struct field_def *def, const struct fields *f,
                 const struct ynode *value, void *target);
int field_bool(struct yobject *o, const struct field_def *def, const struct fields *f,
               const struct ynode *value, void *target);
int field_string_list(struct yobject *o, const struct field_def *def, const struct fields *f,
                      const struct ynode *value, void *target);
