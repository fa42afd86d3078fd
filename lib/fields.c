/* fields.c — see fields.h. */
#include "fields.h"

#include <assert.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

void yobject_diag(struct yobject *o, enum diag_level level, const struct ynode *at, const char *fmt,
                  ...) {
	_cleanup_free_ char *body = NULL;
	va_list ap;
	int r;

	if (level == DIAG_ERROR)
		o->bad = true;
	va_start(ap, fmt);
	r = vasprintf(&body, fmt, ap);
	va_end(ap);
	if (r < 0) {
		body = NULL; /* undefined after a failure */
		diag_note_lost(o->diags);
		return;
	}
	if (o->name)
		diag_add(o->diags, level, o->file, at ? at->line : 0, at ? at->column : 0,
		         "%s \"%s\": %s", o->label, o->name, body);
	else
		diag_add(o->diags, level, o->file, at ? at->line : 0, at ? at->column : 0, "%s: %s",
		         o->kind, body);
}

struct source_pos ynode_pos(const char *file, const struct ynode *n) {
	return (struct source_pos){
	        .file = file, .line = n ? n->line : 0, .column = n ? n->column : 0};
}

int get_string(struct yobject *o, const char *field, const struct ynode *n, char **ret) {
	char *s;

	if (ynode_is_null(n))
		return 0;
	if (n->kind != YNODE_SCALAR) {
		yobject_diag(o, DIAG_ERROR, n, "%s: must be a string, not %s", field,
		             ynode_describe(n));
		return -EINVAL;
	}
	if (strlen(n->value) != n->value_len) {
		yobject_diag(o, DIAG_ERROR, n, "%s: contains a NUL byte", field);
		return -EINVAL;
	}
	s = strdup(n->value);
	if (!s)
		return -ENOMEM;
	free(*ret);
	*ret = s;
	return 1;
}

/* "010", "-007": YAML 1.1 tools (PyYAML, older Kubernetes tooling) read a leading zero as
 * octal, YAML 1.2 as decimal; refused, so that no two tools disagree on the number. */
static bool has_leading_zero(const char *s) {
	if (*s == '-' || *s == '+')
		s++;
	return s[0] == '0' && s[1] != '\0';
}

static int parse_int64(const char *s, int64_t *ret) {
	bool negative = false;
	uint64_t v;
	int r;

	if (*s == '-' || *s == '+') {
		negative = *s == '-';
		s++;
	}
	r = parse_uint(s, 0, (uint64_t)INT64_MAX, &v);
	if (r < 0)
		return r;
	*ret = negative ? -(int64_t)v : (int64_t)v;
	return 0;
}

int get_int(struct yobject *o, const char *field, const struct ynode *n, int64_t min, int64_t max,
            int64_t *ret) {
	int64_t v;
	int r;

	if (ynode_is_null(n))
		return 0;
	if (n->kind != YNODE_SCALAR) {
		yobject_diag(o, DIAG_ERROR, n, "%s: must be an integer, not %s", field,
		             ynode_describe(n));
		return -EINVAL;
	}
	/* The CRD types these as integers; a quoted "80" would fail `kubectl apply`. */
	if (!n->plain) {
		yobject_diag(o, DIAG_ERROR, n, "%s: must be an integer, not the string \"%s\"",
		             field, n->value);
		return -EINVAL;
	}
	if (has_leading_zero(n->value)) {
		yobject_diag(o, DIAG_ERROR, n,
		             "%s: %s has a leading zero (YAML 1.1 reads it as octal); write it "
		             "without",
		             field, n->value);
		return -EINVAL;
	}
	r = parse_int64(n->value, &v);
	if (r == -EINVAL) {
		yobject_diag(o, DIAG_ERROR, n, "%s: \"%s\" is not an integer", field, n->value);
		return -EINVAL;
	}
	if (r < 0 || v < min || v > max) {
		yobject_diag(o, DIAG_ERROR, n, "%s: %s is outside %" PRId64 "-%" PRId64, field,
		             n->value, min, max);
		return -EINVAL;
	}
	*ret = v;
	return 1;
}

int get_uint_or_digits(struct yobject *o, const char *field, const struct ynode *n, uint64_t min,
                       uint64_t max, uint64_t *ret) {
	uint64_t v;
	int r;

	if (ynode_is_null(n))
		return 0;
	if (n->kind != YNODE_SCALAR) {
		yobject_diag(o, DIAG_ERROR, n, "%s: must be a number of milliseconds, not %s",
		             field, ynode_describe(n));
		return -EINVAL;
	}
	if (n->plain && has_leading_zero(n->value)) {
		yobject_diag(o, DIAG_ERROR, n,
		             "%s: %s has a leading zero (YAML 1.1 reads it as octal); write it "
		             "without",
		             field, n->value);
		return -EINVAL;
	}
	r = parse_uint(n->value, 0, UINT64_MAX, &v);
	if (r == -EINVAL) {
		yobject_diag(o, DIAG_ERROR, n, "%s: \"%s\" is not a number of milliseconds", field,
		             n->value);
		return -EINVAL;
	}
	if (r < 0 || v < min || v > max) {
		yobject_diag(o, DIAG_ERROR, n, "%s: %s is outside %" PRIu64 "-%" PRIu64, field,
		             n->value, min, max);
		return -EINVAL;
	}
	*ret = v;
	return 1;
}

int yaml_bool(const struct ynode *n, bool *ret) {
	static const char *const yes[] = {"true", "True", "TRUE"};
	static const char *const no[] = {"false", "False", "FALSE"};

	if (n->kind != YNODE_SCALAR || !n->plain)
		return -EINVAL;
	for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
		if (streq(n->value, yes[i])) {
			*ret = true;
			return 0;
		}
		if (streq(n->value, no[i])) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

int get_bool(struct yobject *o, const char *field, const struct ynode *n, bool *ret) {
	if (ynode_is_null(n))
		return 0;
	if (yaml_bool(n, ret) < 0) {
		if (n->kind == YNODE_SCALAR && !n->plain)
			yobject_diag(
			        o, DIAG_ERROR, n,
			        "%s: must be true or false, not the quoted string \"%s\" (write "
			        "it without quotes)",
			        field, n->value);
		else if (n->kind == YNODE_SCALAR)
			yobject_diag(o, DIAG_ERROR, n, "%s: must be true or false, not \"%s\"",
			             field, n->value);
		else
			yobject_diag(o, DIAG_ERROR, n, "%s: must be true or false, not %s", field,
			             ynode_describe(n));
		return -EINVAL;
	}
	return 1;
}

int get_string_list(struct yobject *o, const char *field, const struct ynode *n, char ***ret,
                    size_t *ret_n) {
	char **v = NULL;
	size_t count = 0;

	if (ynode_is_null(n))
		return 0;
	if (n->kind != YNODE_SEQUENCE) {
		yobject_diag(o, DIAG_ERROR, n, "%s: must be a list of strings, not %s", field,
		             ynode_describe(n));
		return -EINVAL;
	}
	for (size_t i = 0; i < n->n_items; i++) {
		const struct ynode *item = n->items[i];

		if (item->kind != YNODE_SCALAR || ynode_is_null(item)) {
			yobject_diag(o, DIAG_ERROR, item, "%s: item %zu must be a string", field,
			             i + 1);
			strv_free(v);
			return -EINVAL;
		}
		/* strv_push takes a NULL from strdup as -ENOMEM, and frees on failure */
		if (strv_push(&v, &count, strdup(item->value)) < 0) {
			strv_free(v);
			return -ENOMEM;
		}
	}
	if (!v) {
		/* An empty list is still a list: keep it distinguishable from "absent". */
		v = calloc(1, sizeof(char *));
		if (!v)
			return -ENOMEM;
	}
	strv_free(*ret);
	*ret = v;
	if (ret_n)
		*ret_n = count;
	return 1;
}

/* The keys of one circuit_breakers entry that are neither read nor unknown. */
static int check_breaker_keys(struct yobject *o, const struct ynode *item) {
	int64_t ignored = 0;
	bool bad = false;

	for (size_t k = 0; k + 1 < item->n_items; k += 2) {
		const struct ynode *key = item->items[k], *value = item->items[k + 1];
		if (key->kind != YNODE_SCALAR) {
			yobject_diag(o, DIAG_ERROR, key, "circuit_breakers: keys must be strings");
			bad = true;
			continue;
		}
		if (streq(key->value, "max_requests") || streq(key->value, "max_retries")) {
			if (get_int(o, key->value, value, 0, UINT32_MAX, &ignored) < 0)
				bad = true;
			else
				yobject_diag(o, DIAG_WARNING, key,
				             "circuit_breakers.%s: not applicable to TCP, ignoring",
				             key->value);
		} else if (!streq(key->value, "priority") &&
		           !streq(key->value, "max_connections") &&
		           !streq(key->value, "max_pending_requests"))
			yobject_diag(o, DIAG_WARNING, key,
			             "circuit_breakers.%s: unknown field, ignoring", key->value);
	}
	return bad ? -EINVAL : 0;
}

int get_circuit_breakers(struct yobject *o, const char *field, const struct ynode *n,
                         struct circuit_breakers *ret) {
	struct circuit_breakers cb = {.set = true};
	bool have_default = false;

	if (ynode_is_null(n))
		return 0;
	if (n->kind != YNODE_SEQUENCE) {
		yobject_diag(o, DIAG_ERROR, n, "circuit_breakers: must be a list, not %s",
		             ynode_describe(n));
		return -EINVAL;
	}
	for (size_t i = 0; i < n->n_items; i++) {
		const struct ynode *item = n->items[i];
		_cleanup_free_ char *priority = NULL;
		int64_t max_connections = 0, max_pending = 0;
		bool bad = false;
		int r;

		if (item->kind != YNODE_MAPPING) {
			yobject_diag(o, DIAG_ERROR, item,
			             "circuit_breakers: item %zu must be a mapping", i + 1);
			return -EINVAL;
		}
		r = get_string(o, "circuit_breakers.priority", ymap_get(item, "priority"),
		               &priority);
		if (r == -ENOMEM)
			return r;
		if (r < 0)
			bad = true;
		if (get_int(o, "circuit_breakers.max_connections",
		            ymap_get(item, "max_connections"), 0, UINT32_MAX, &max_connections) < 0)
			bad = true;
		if (get_int(o, "circuit_breakers.max_pending_requests",
		            ymap_get(item, "max_pending_requests"), 0, UINT32_MAX,
		            &max_pending) < 0)
			bad = true;
		if (check_breaker_keys(o, item) < 0 || bad)
			return -EINVAL;
		if (priority && streq(priority, "high")) {
			/* Envoy's high priority is for HTTP routes marked high; a TCP proxy only
			 * ever uses the default priority, so these limits could never apply. */
			yobject_diag(o, DIAG_WARNING, ymap_get(item, "priority"),
			             "circuit_breakers: priority high is not applicable to TCP, "
			             "ignoring");
			continue;
		}
		if (priority && !streq(priority, "default")) {
			yobject_diag(o, DIAG_ERROR, ymap_get(item, "priority"),
			             "circuit_breakers.priority: \"%s\" is not default or high",
			             priority);
			return -EINVAL;
		}
		if (have_default) {
			yobject_diag(o, DIAG_ERROR, item,
			             "circuit_breakers: more than one entry for priority default");
			return -EINVAL;
		}
		have_default = true;
		cb.max_connections = (uint32_t)max_connections;
		cb.max_pending_requests = (uint32_t)max_pending;
	}
	if (!have_default) {
		/* Emissary replaces the Module's list with the mapping's, and Envoy then gives the
		 * default priority its own built-in limits. tcpmap keeps the one limit it knows
		 * of: a list that sets nothing for TCP is as if absent, and the warning says so. */
		if (streq(field, "circuit_breakers"))
			yobject_diag(o, DIAG_WARNING, n,
			             "circuit_breakers: no item of priority default, so the "
			             "Module's circuit_breakers apply");
		else
			yobject_diag(o, DIAG_WARNING, n,
			             "%s: no item of priority default, so mappings without their "
			             "own circuit_breakers have no limit",
			             field);
		return 0;
	}
	*ret = cb;
	return 1;
}

const char *host_name_problem(const char *host, bool allow_wildcard) {
	size_t len = strlen(host), label = 0;

	if (len == 0)
		return "is empty";
	if (len > 253)
		return "is longer than 253 characters";
	if (allow_wildcard && host[0] == '*') {
		if (host[1] != '.' || len < 3)
			return "has a wildcard that is not a whole leading label, as in "
			       "\"*.example.com\"";
		host += 2;
	}
	for (const char *p = host;; p++) {
		if (*p == '.' || *p == '\0') {
			if (label == 0)
				return *p || p == host ? "has an empty label" : NULL;
			if (p[-1] == '-' || *(p - (ptrdiff_t)label) == '-')
				return "has a label that starts or ends with '-'";
			if (!*p)
				return NULL;
			label = 0;
			continue;
		}
		if (*p == '*')
			return "has a wildcard that is not a whole leading label, as in "
			       "\"*.example.com\"";
		/* '_' is not in host names (RFC 952) but is in service records' names */
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
			return "holds a character not allowed in a host name";
		if (++label > 63)
			return "has a label longer than 63 characters";
	}
}

int normalise_host(struct yobject *o, const char *field, const struct ynode *at, char *host) {
	const char *problem;
	size_t len;

	for (char *p = host; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	len = strlen(host);
	if (len > 0 && host[len - 1] == '.')
		host[--len] = '\0';
	problem = host_name_problem(host, true);
	if (problem && strstr(problem, "wildcard")) {
		yobject_diag(
		        o, DIAG_ERROR, at,
		        "%s: \"%s\": a wildcard is allowed only as a whole leading label, as in "
		        "\"*.example.com\"",
		        field, host);
		return -EINVAL;
	}
	if (problem) {
		yobject_diag(o, DIAG_ERROR, at, "%s: \"%s\" is not a host name: it %s", field, host,
		             problem);
		return -EINVAL;
	}
	return 0;
}

/* ---- the field table ------------------------------------------------------------------- */

static const struct field_def *field_find(const struct field_table *table, const char *key,
                                          size_t *index) {
	for (size_t i = 0; i < table->n_fields; i++)
		if (streq(table->fields[i].key, key)) {
			*index = i;
			return &table->fields[i];
		}
	return NULL;
}

static bool strv_contains(const char *const *v, const char *s) {
	for (; *v; v++)
		if (streq(*v, s))
			return true;
	return false;
}

/* Match each key of `spec` to its field in f->at[]. In document order, each field is read as
 * soon as its key is met, so its diags come between those of the keys around it. */
static int fields_walk(struct yobject *o, const struct field_table *table, const struct ynode *spec,
                       struct fields *f, void *target) {
	*f = (struct fields){.spec = spec};
	for (size_t i = 0; spec && i + 1 < spec->n_items; i += 2) {
		const struct ynode *key = spec->items[i], *value = spec->items[i + 1];
		const struct field_def *def;
		size_t idx;

		if (key->kind != YNODE_SCALAR) {
			yobject_diag(o, DIAG_ERROR, key, "%s: keys must be strings",
			             table->prefix ? "config" : "spec");
			continue;
		}
		def = field_find(table, key->value, &idx);
		if (!def && table->others && strv_contains(table->others, key->value)) {
			yobject_diag(o, DIAG_DEBUG, key, "%s%s: not used by tcpmap, ignoring",
			             table->prefix ?: "", key->value);
			continue;
		}
		if (!def) {
			yobject_diag(o, DIAG_WARNING, key, "%s%s: unknown field, ignoring",
			             table->prefix ?: "", key->value);
			continue;
		}
		if (def->flags & FIELD_NOT_USED) {
			yobject_diag(o, DIAG_DEBUG, key, "%s: not used by tcpmap, ignoring",
			             key->value);
			continue;
		}
		/* written twice: an error lib/yamltree.c reported with both positions */
		if (f->at[idx])
			continue;
		f->at[idx] = value;
		if (table->order == FIELDS_IN_DOCUMENT_ORDER && def->parse &&
		    def->parse(o, def, f, value, target) == -ENOMEM)
			return -ENOMEM;
	}
	return 0;
}

int fields_parse(struct yobject *o, const struct field_table *table, const struct ynode *spec,
                 struct fields *f, void *target) {
	int r;

	assert(table->n_fields <= FIELDS_MAX);
	r = fields_walk(o, table, spec, f, target);
	if (r < 0)
		return r;
	for (size_t i = 0; table->order == FIELDS_IN_TABLE_ORDER && i < table->n_fields; i++) {
		const struct field_def *def = &table->fields[i];

		if (def->parse && def->parse(o, def, f, f->at[i], target) == -ENOMEM)
			return -ENOMEM;
	}
	for (size_t i = 0; o->v3alpha1 && i < table->n_fields; i++)
		if ((table->fields[i].flags & FIELD_EXTENSION) && f->at[i])
			yobject_diag(
			        o, DIAG_WARNING, f->at[i],
			        "%s: tcpmap extension in a getambassador.io/v3alpha1 document; "
			        "Kubernetes prunes unknown fields there, so put it in a "
			        "getambassador.io/v2 document",
			        field_label(&table->fields[i]));
	return 0;
}

int field_string(struct yobject *o, const struct field_def *def, const struct fields *f,
                 const struct ynode *value, void *target) {
	int r = get_string(o, field_label(def), value, (char **)((char *)target + def->offset));
	(void)f;
	return MIN(r, 0);
}

int field_bool(struct yobject *o, const struct field_def *def, const struct fields *f,
               const struct ynode *value, void *target) {
	int r = get_bool(o, field_label(def), value, (bool *)((char *)target + def->offset));
	(void)f;
	return MIN(r, 0);
}

int field_string_list(struct yobject *o, const struct field_def *def, const struct fields *f,
                      const struct ynode *value, void *target) {
	int r = get_string_list(o, field_label(def), value,
	                        (char ***)((char *)target + def->offset), NULL);
	(void)f;
	return MIN(r, 0);
}
