/* fields.h — reading one object's fields from the YAML tree: typed accessors and the one
 * field-table mechanism every kind's schema uses.
 *
 * A kind describes its `spec` as a table of struct field_def; fields_parse() matches the
 * keys against it (unknown keys warn, Emissary's keys that mean nothing here are noted at
 * debug level, a key given twice is an error where the table says so) and then runs each
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
/* Ambassador's circuit_breakers list; only priority "default" applies to TCP. */
int get_circuit_breakers(struct yobject *o, const char *field, const struct ynode *n,
                         struct circuit_breakers *ret);
/* true/True/TRUE/false/... as a plain scalar. Returns 0 or -EINVAL; reports nothing. */
int yaml_bool(const struct ynode *n, bool *ret);
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

enum field_duplicates {
	FIELDS_DUPLICATE_IS_ERROR, /* "given twice" */
	FIELDS_FIRST_WINS,         /* as a lookup by key reads it */
	FIELDS_LAST_WINS,          /* as a reader in document order reads it */
};

enum field_order {
	/* Each field once, in table order, absent ones too (with NULL, so that a required
	 * field can say it is missing, and a field can look at those read before it). */
	FIELDS_IN_TABLE_ORDER,
	/* Each key as written, in document order, a repeated key each time; absent fields are
	 * not called. For kinds whose fields stand alone. */
	FIELDS_IN_DOCUMENT_ORDER,
};

struct field_table {
	const struct field_def *fields;
	size_t n_fields; /* at most FIELDS_MAX */
	enum field_order order;
	enum field_duplicates duplicates; /* which value f->at[] holds */
	/* Other keys are legitimate here and pass in silence (the Module's config, which has
	 * dozens of HTTP settings). */
	bool quiet_unknown;
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
