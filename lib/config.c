/* config.c — Ambassador/Emissary YAML (TCPMapping, TLSContext, Module) to the model.
 *
 * libyaml's event parser feeds a small node tree of our own, so that every node keeps its
 * line and column and so that aliases are counted as they expand (a "billion laughs" file
 * is rejected after max_alias_expansion nodes, never materialised). Each document is
 * checked as soon as it ends; then the whole set is grouped, weighted and laid out into
 * listeners. Every problem becomes one diag with FILE:LINE:COL, and loading goes on so
 * that one run reports all of them.
 *
 * This file must never touch sockets, secrets, the breaker table or the log: it is run
 * by `tcpmapctl check` and by the fuzzer as well as by tcpmapd. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <yaml.h>

#include "route.h"
#include "util.h"

#define DEFAULT_MAX_FILE_SIZE (16u * 1024u * 1024u)
#define DEFAULT_MAX_ALIAS_EXPANSION 10000u
#define DEFAULT_MAX_DEPTH 64u

/* Same defaults as Emissary where it has one; tcpmap's own otherwise (DESIGN.md). */
#define DEFAULT_CONNECT_TIMEOUT_MS 3000u
#define DEFAULT_PREREAD_TIMEOUT_MS 5000u
#define DEFAULT_DRAIN_TIMEOUT_MS 30000u

static atomic_uint_fast64_t config_generation_counter;

/* ---- diagnostics ---------------------------------------------------------------------- */

/* ---- YAML node tree -------------------------------------------------------------------- */

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
};

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

static void ybuilder_reset(struct ybuilder *b) {
	for (size_t i = 0; i < b->n_all; i++) {
		free(b->all[i]->value);
		free(b->all[i]->items);
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

static bool ynode_is_null(const struct ynode *n) {
	if (!n)
		return true;
	if (n->kind != YNODE_SCALAR || !n->plain)
		return false;
	return n->value_len == 0 || streq(n->value, "~") || streq(n->value, "null") ||
	       streq(n->value, "Null") || streq(n->value, "NULL");
}

static const struct ynode *ymap_get(const struct ynode *m, const char *key) {
	if (!m || m->kind != YNODE_MAPPING)
		return NULL;
	for (size_t i = 0; i + 1 < m->n_items; i += 2) {
		const struct ynode *k = m->items[i];
		if (k->kind == YNODE_SCALAR && streq(k->value, key))
			return m->items[i + 1];
	}
	return NULL;
}

/* ---- the loader ----------------------------------------------------------------------- */

/* Where each field of a mapping was written, for errors raised after the document is gone. */
struct mapping_extra {
	struct source_pos name_pos;
	struct source_pos field_pos[16];
	bool has_enable_ipv4, has_enable_ipv6, has_connect_timeout;
	bool has_explicit_upstream_port;
	bool bad; /* had errors; kept only so its name counts for uniqueness */
};

enum mapping_field {
	MF_PORT,
	MF_SERVICE,
	MF_ADDRESS,
	MF_HOST,
	MF_TLS,
	MF_WEIGHT,
	MF_IDLE_TIMEOUT,
	MF_ENABLE_IPV4,
	MF_ENABLE_IPV6,
	MF_BREAKERS,
	MF_CONNECT_TIMEOUT,
	MF_PROXY_PROTOCOL,
	MF_TLS_PASSTHROUGH,
	_MF_MAX,
};

struct seen_name {
	char *name;
	struct source_pos pos;
};

struct name_set {
	struct seen_name *items;
	size_t n;
};

struct loader {
	const char *ambassador_id;
	size_t max_file_size, max_alias_expansion, max_depth;
	struct diag_list *diags;
	struct config *config;
	struct mapping_extra *extras; /* parallel to config->mappings */
	struct name_set mapping_names, tls_context_names, module_names;
	size_t errors_before; /* the caller's list may already hold diags */
	int io_error;
};

/* The object a diag is about: `mapping "ssh": port: ...`. */
struct object_ctx {
	struct loader *loader;
	const char *file;
	const char *label; /* "mapping", "tlscontext", "module" */
	const char *kind;  /* "TCPMapping", ... for objects without a usable name */
	const char *name;
	bool v3alpha1;
	bool bad;
};

_printf_(4, 5) static void obj_diag(struct object_ctx *o, enum diag_level level,
                                    const struct ynode *at, const char *fmt, ...) {
	_cleanup_free_ char *body = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&body, fmt, ap);
	va_end(ap);
	if (r < 0)
		return;
	if (level == DIAG_ERROR)
		o->bad = true;
	if (o->name)
		diag_add(o->loader->diags, level, o->file, at ? at->line : 0, at ? at->column : 0,
		         "%s \"%s\": %s", o->label, o->name, body);
	else
		diag_add(o->loader->diags, level, o->file, at ? at->line : 0, at ? at->column : 0,
		         "%s: %s", o->kind, body);
}

static struct source_pos ynode_pos(const char *file, const struct ynode *n) {
	return (struct source_pos){
	        .file = file, .line = n ? n->line : 0, .column = n ? n->column : 0};
}

static const char *ynode_describe(const struct ynode *n) {
	if (n->kind == YNODE_SEQUENCE)
		return "a list";
	if (n->kind == YNODE_MAPPING)
		return "a mapping";
	return n->plain ? "a scalar" : "a string";
}

/* Typed accessors. Each returns 1 when the value is present and valid, 0 when absent (or
 * null), and -EINVAL after reporting a bad value. */

static int get_string(struct object_ctx *o, const char *field, const struct ynode *n, char **ret) {
	char *s;

	if (ynode_is_null(n))
		return 0;
	if (n->kind != YNODE_SCALAR) {
		obj_diag(o, DIAG_ERROR, n, "%s: must be a string, not %s", field,
		         ynode_describe(n));
		return -EINVAL;
	}
	if (strlen(n->value) != n->value_len) {
		obj_diag(o, DIAG_ERROR, n, "%s: contains a NUL byte", field);
		return -EINVAL;
	}
	s = strdup(n->value);
	if (!s)
		return -ENOMEM;
	free(*ret);
	*ret = s;
	return 1;
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

static int get_int(struct object_ctx *o, const char *field, const struct ynode *n, int64_t min,
                   int64_t max, int64_t *ret) {
	int64_t v;
	int r;

	if (ynode_is_null(n))
		return 0;
	if (n->kind != YNODE_SCALAR) {
		obj_diag(o, DIAG_ERROR, n, "%s: must be an integer, not %s", field,
		         ynode_describe(n));
		return -EINVAL;
	}
	/* The CRD types these as integers; a quoted "80" would fail `kubectl apply`. */
	if (!n->plain) {
		obj_diag(o, DIAG_ERROR, n, "%s: must be an integer, not the string \"%s\"", field,
		         n->value);
		return -EINVAL;
	}
	r = parse_int64(n->value, &v);
	if (r == -EINVAL) {
		obj_diag(o, DIAG_ERROR, n, "%s: \"%s\" is not an integer", field, n->value);
		return -EINVAL;
	}
	if (r < 0 || v < min || v > max) {
		obj_diag(o, DIAG_ERROR, n, "%s: %s is outside %" PRId64 "-%" PRId64, field,
		         n->value, min, max);
		return -EINVAL;
	}
	*ret = v;
	return 1;
}

/* For fields the CRD types as strings but that hold a number (idle_timeout_ms): accept an
 * integer or a string of digits. */
static int get_uint_or_digits(struct object_ctx *o, const char *field, const struct ynode *n,
                              uint64_t min, uint64_t max, uint64_t *ret) {
	uint64_t v;
	int r;

	if (ynode_is_null(n))
		return 0;
	if (n->kind != YNODE_SCALAR) {
		obj_diag(o, DIAG_ERROR, n, "%s: must be a number of milliseconds, not %s", field,
		         ynode_describe(n));
		return -EINVAL;
	}
	r = parse_uint(n->value, 0, UINT64_MAX, &v);
	if (r == -EINVAL) {
		obj_diag(o, DIAG_ERROR, n, "%s: \"%s\" is not a number of milliseconds", field,
		         n->value);
		return -EINVAL;
	}
	if (r < 0 || v < min || v > max) {
		obj_diag(o, DIAG_ERROR, n, "%s: %s is outside %" PRIu64 "-%" PRIu64, field,
		         n->value, min, max);
		return -EINVAL;
	}
	*ret = v;
	return 1;
}

static int parse_yaml_bool(const struct ynode *n, bool *ret) {
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

static int get_bool(struct object_ctx *o, const char *field, const struct ynode *n, bool *ret) {
	if (ynode_is_null(n))
		return 0;
	if (parse_yaml_bool(n, ret) < 0) {
		if (n->kind == YNODE_SCALAR)
			obj_diag(o, DIAG_ERROR, n, "%s: must be true or false, not \"%s\"", field,
			         n->value);
		else
			obj_diag(o, DIAG_ERROR, n, "%s: must be true or false, not %s", field,
			         ynode_describe(n));
		return -EINVAL;
	}
	return 1;
}

static int get_string_list(struct object_ctx *o, const char *field, const struct ynode *n,
                           char ***ret, size_t *ret_n) {
	char **v = NULL;
	size_t count = 0;

	if (ynode_is_null(n))
		return 0;
	if (n->kind != YNODE_SEQUENCE) {
		obj_diag(o, DIAG_ERROR, n, "%s: must be a list of strings, not %s", field,
		         ynode_describe(n));
		return -EINVAL;
	}
	for (size_t i = 0; i < n->n_items; i++) {
		const struct ynode *item = n->items[i];
		if (item->kind != YNODE_SCALAR || ynode_is_null(item)) {
			obj_diag(o, DIAG_ERROR, item, "%s: item %zu must be a string", field,
			         i + 1);
			strv_free(v);
			return -EINVAL;
		}
		if (strv_push(&v, &count, strdup(item->value)) < 0 || !v[count - 1]) {
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

static void name_set_free(struct name_set *s) {
	for (size_t i = 0; i < s->n; i++)
		free(s->items[i].name);
	free(s->items);
	*s = (struct name_set){};
}

/* Names are unique per kind, as in Kubernetes within one namespace. */
static void check_unique_name(struct object_ctx *o, struct name_set *s, const struct ynode *at) {
	struct seen_name *items;

	for (size_t i = 0; i < s->n; i++)
		if (streq(s->items[i].name, o->name)) {
			obj_diag(o, DIAG_ERROR, at,
			         "metadata.name: duplicate name, first defined at %s:%u:%u",
			         s->items[i].pos.file, s->items[i].pos.line,
			         s->items[i].pos.column);
			return;
		}
	items = realloc(s->items, (s->n + 1) * sizeof(*items));
	if (!items)
		return;
	s->items = items;
	s->items[s->n].name = strdup(o->name);
	if (!s->items[s->n].name)
		return;
	s->items[s->n].pos = ynode_pos(o->file, at);
	s->n++;
}

static int parse_circuit_breakers(struct object_ctx *o, const struct ynode *n,
                                  struct circuit_breakers *ret) {
	struct circuit_breakers cb = {.set = true};
	bool have_default = false;

	if (ynode_is_null(n))
		return 0;
	if (n->kind != YNODE_SEQUENCE) {
		obj_diag(o, DIAG_ERROR, n, "circuit_breakers: must be a list, not %s",
		         ynode_describe(n));
		return -EINVAL;
	}
	for (size_t i = 0; i < n->n_items; i++) {
		const struct ynode *item = n->items[i];
		_cleanup_free_ char *priority = NULL;
		int64_t max_connections = 0, max_pending = 0, ignored = 0;
		bool bad = false;

		if (item->kind != YNODE_MAPPING) {
			obj_diag(o, DIAG_ERROR, item,
			         "circuit_breakers: item %zu must be a mapping", i + 1);
			return -EINVAL;
		}
		if (get_string(o, "circuit_breakers.priority", ymap_get(item, "priority"),
		               &priority) < 0)
			bad = true;
		if (get_int(o, "circuit_breakers.max_connections",
		            ymap_get(item, "max_connections"), 0, UINT32_MAX, &max_connections) < 0)
			bad = true;
		if (get_int(o, "circuit_breakers.max_pending_requests",
		            ymap_get(item, "max_pending_requests"), 0, UINT32_MAX,
		            &max_pending) < 0)
			bad = true;
		for (size_t k = 0; k + 1 < item->n_items; k += 2) {
			const struct ynode *key = item->items[k], *value = item->items[k + 1];
			if (key->kind != YNODE_SCALAR) {
				obj_diag(o, DIAG_ERROR, key,
				         "circuit_breakers: keys must be strings");
				bad = true;
				continue;
			}
			if (streq(key->value, "max_requests") || streq(key->value, "max_retries")) {
				if (get_int(o, key->value, value, 0, UINT32_MAX, &ignored) < 0)
					bad = true;
				else
					obj_diag(o, DIAG_WARNING, key,
					         "circuit_breakers.%s: not applicable to TCP, "
					         "ignoring",
					         key->value);
			} else if (!streq(key->value, "priority") &&
			           !streq(key->value, "max_connections") &&
			           !streq(key->value, "max_pending_requests"))
				obj_diag(o, DIAG_WARNING, key,
				         "circuit_breakers.%s: unknown field, ignoring",
				         key->value);
		}
		if (bad)
			return -EINVAL;
		if (priority && streq(priority, "high")) {
			/* Envoy's high priority is for HTTP routes marked high; a TCP proxy only
			 * ever uses the default priority, so these limits could never apply. */
			obj_diag(o, DIAG_WARNING, ymap_get(item, "priority"),
			         "circuit_breakers: priority high is not applicable to TCP, "
			         "ignoring");
			continue;
		}
		if (priority && !streq(priority, "default")) {
			obj_diag(o, DIAG_ERROR, ymap_get(item, "priority"),
			         "circuit_breakers.priority: \"%s\" is not default or high",
			         priority);
			return -EINVAL;
		}
		if (have_default) {
			obj_diag(o, DIAG_ERROR, item,
			         "circuit_breakers: more than one entry for priority default");
			return -EINVAL;
		}
		have_default = true;
		cb.max_connections = (uint32_t)max_connections;
		cb.max_pending_requests = (uint32_t)max_pending;
	}
	*ret = cb;
	return 1;
}

static bool is_ip_literal(const char *s, int *family) {
	unsigned char buf[sizeof(struct in6_addr)];

	if (inet_pton(AF_INET, s, buf) == 1) {
		if (family)
			*family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, s, buf) == 1) {
		if (family)
			*family = AF_INET6;
		return true;
	}
	return false;
}

/* "host", "host:port", "[v6]:port", "[v6]" or a bare IPv6 literal. No scheme, no path. */
static int parse_service(struct object_ctx *o, const struct ynode *at, const char *service,
                         char **ret_host, uint16_t *ret_port) {
	_cleanup_free_ char *host = NULL;
	const char *port_text = NULL;
	uint64_t port = 0;

	if (strstr(service, "://")) {
		obj_diag(o, DIAG_ERROR, at,
		         "service: \"%s\" must not include a scheme (TCPMapping services are "
		         "host:port)",
		         service);
		return -EINVAL;
	}
	if (strchr(service, '/')) {
		obj_diag(o, DIAG_ERROR, at, "service: \"%s\" must not include a path", service);
		return -EINVAL;
	}
	for (const char *p = service; *p; p++)
		if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p)) {
			obj_diag(o, DIAG_ERROR, at, "service: \"%s\" contains whitespace", service);
			return -EINVAL;
		}

	if (service[0] == '[') {
		const char *end = strchr(service, ']');
		if (!end) {
			obj_diag(o, DIAG_ERROR, at, "service: \"%s\" has no closing ]", service);
			return -EINVAL;
		}
		host = strndup(service + 1, (size_t)(end - service - 1));
		if (!host)
			return -ENOMEM;
		if (end[1] == ':')
			port_text = end + 2;
		else if (end[1] != '\0') {
			obj_diag(o, DIAG_ERROR, at, "service: unexpected text after ] in \"%s\"",
			         service);
			return -EINVAL;
		}
		if (!is_ip_literal(host, NULL) || !strchr(host, ':')) {
			obj_diag(o, DIAG_ERROR, at, "service: \"%s\" is not an IPv6 address", host);
			return -EINVAL;
		}
	} else {
		const char *colon = strchr(service, ':');
		if (colon && strchr(colon + 1, ':')) {
			/* Several colons and no brackets: only a whole IPv6 literal makes sense. */
			if (!is_ip_literal(service, NULL)) {
				obj_diag(o, DIAG_ERROR, at,
				         "service: \"%s\" is ambiguous; write IPv6 as [addr]:port",
				         service);
				return -EINVAL;
			}
			host = strdup(service);
		} else if (colon) {
			host = strndup(service, (size_t)(colon - service));
			port_text = colon + 1;
		} else
			host = strdup(service);
		if (!host)
			return -ENOMEM;
	}
	if (!*host) {
		obj_diag(o, DIAG_ERROR, at, "service: \"%s\" has no host", service);
		return -EINVAL;
	}
	if (port_text && parse_uint(port_text, 1, 65535, &port) < 0) {
		obj_diag(o, DIAG_ERROR, at, "service: port \"%s\" is not 1-65535", port_text);
		return -EINVAL;
	}
	*ret_host = TAKE_PTR(host);
	*ret_port = (uint16_t)port;
	return 0;
}

static int normalise_host(struct object_ctx *o, const char *field, const struct ynode *at,
                          char *host) {
	size_t len;

	for (char *p = host; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	len = strlen(host);
	if (len > 0 && host[len - 1] == '.')
		host[--len] = '\0';
	if (len == 0 || len > 253) {
		obj_diag(o, DIAG_ERROR, at, "%s: \"%s\" is not a host name", field, host);
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		char c = host[i];
		if (c == '*') {
			if (i != 0 || host[1] != '.' || len < 3) {
				obj_diag(
				        o, DIAG_ERROR, at,
				        "%s: \"%s\": a wildcard is allowed only as a whole leading "
				        "label, as in \"*.example.com\"",
				        field, host);
				return -EINVAL;
			}
			continue;
		}
		if (!isalnum((unsigned char)c) && c != '-' && c != '.' && c != '_') {
			obj_diag(o, DIAG_ERROR, at, "%s: \"%s\" is not a host name", field, host);
			return -EINVAL;
		}
	}
	return 0;
}

static bool is_v3alpha1(const char *api) { return streq(api, "getambassador.io/v3alpha1"); }

/* Fields Emissary knows that mean nothing to a single-host L4 proxy. */
static bool is_ignored_emissary_mapping_field(const char *k) {
	static const char *const names[] = {"ambassador_id", "cluster_tag", "resolver",
	                                    "stats_name",    "v3StatsName", "v2ExplicitTLS"};
	for (size_t i = 0; i < ELEMENTSOF(names); i++)
		if (streq(k, names[i]))
			return true;
	return false;
}

static int mapping_field_index(const char *k) {
	static const char *const names[_MF_MAX] = {
	        [MF_PORT] = "port",
	        [MF_SERVICE] = "service",
	        [MF_ADDRESS] = "address",
	        [MF_HOST] = "host",
	        [MF_TLS] = "tls",
	        [MF_WEIGHT] = "weight",
	        [MF_IDLE_TIMEOUT] = "idle_timeout_ms",
	        [MF_ENABLE_IPV4] = "enable_ipv4",
	        [MF_ENABLE_IPV6] = "enable_ipv6",
	        [MF_BREAKERS] = "circuit_breakers",
	        [MF_CONNECT_TIMEOUT] = "connect_timeout_ms",
	        [MF_PROXY_PROTOCOL] = "proxy_protocol",
	        [MF_TLS_PASSTHROUGH] = "tls_passthrough",
	};
	for (int i = 0; i < _MF_MAX; i++)
		if (streq(k, names[i]))
			return i;
	return -1;
}

static int config_push(void *arrayp, size_t *n, void *item) {
	void ***array = arrayp;
	void **a = realloc(*array, (*n + 1) * sizeof(void *));
	if (!a)
		return -ENOMEM;
	a[(*n)++] = item;
	*array = a;
	return 0;
}

static int parse_tcpmapping(struct object_ctx *o, const struct ynode *root,
                            const struct ynode *name_node, const struct ynode *spec) {
	struct loader *L = o->loader;
	struct config *c = L->config;
	const struct ynode *at[_MF_MAX] = {};
	struct mapping_extra extra = {};
	struct mapping *m, **mappings;
	struct mapping_extra *extras;
	int64_t v;
	uint64_t u;
	bool b;
	int r;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->weight = -1;
	m->name = strdup(o->name);
	m->pos = ynode_pos(o->file, root);
	extra.name_pos = ynode_pos(o->file, name_node);

	extras = realloc(L->extras, (c->n_mappings + 1) * sizeof(*extras));
	if (extras)
		L->extras = extras;
	mappings = realloc(c->mappings, (c->n_mappings + 1) * sizeof(*mappings));
	if (!mappings || !extras || !m->name) {
		if (mappings)
			c->mappings = mappings;
		free(m->name);
		free(m);
		return -ENOMEM;
	}
	c->mappings = mappings;
	m->index = (unsigned)c->n_mappings;
	c->mappings[c->n_mappings++] = m;

	for (size_t i = 0; i + 1 < spec->n_items; i += 2) {
		const struct ynode *key = spec->items[i];
		int idx;

		if (key->kind != YNODE_SCALAR) {
			obj_diag(o, DIAG_ERROR, key, "spec: keys must be strings");
			continue;
		}
		idx = mapping_field_index(key->value);
		if (idx >= 0) {
			if (at[idx])
				obj_diag(o, DIAG_ERROR, key, "%s: given twice", key->value);
			at[idx] = spec->items[i + 1];
			extra.field_pos[idx] = ynode_pos(o->file, spec->items[i + 1]);
		} else if (is_ignored_emissary_mapping_field(key->value))
			obj_diag(o, DIAG_DEBUG, key, "%s: not used by tcpmap, ignoring",
			         key->value);
		else
			obj_diag(o, DIAG_WARNING, key, "%s: unknown field, ignoring", key->value);
	}

	r = get_int(o, "port", at[MF_PORT], 1, 65535, &v);
	if (r == 0)
		obj_diag(o, DIAG_ERROR, spec, "port: missing (required)");
	else if (r > 0)
		m->port = (uint16_t)v;

	r = get_string(o, "service", at[MF_SERVICE], &m->service);
	if (r == 0 || (r > 0 && !*m->service))
		obj_diag(o, DIAG_ERROR, r > 0 ? at[MF_SERVICE] : spec,
		         "service: missing (required)");
	else if (r > 0 && parse_service(o, at[MF_SERVICE], m->service, &m->upstream_host,
	                                &m->upstream_port) == 0)
		extra.has_explicit_upstream_port = m->upstream_port != 0;

	r = get_string(o, "address", at[MF_ADDRESS], &m->address);
	if (r > 0) {
		size_t len = strlen(m->address);
		/* "[::1]" reads naturally to people used to URLs; store the bare literal. */
		if (len > 2 && m->address[0] == '[' && m->address[len - 1] == ']') {
			memmove(m->address, m->address + 1, len - 2);
			m->address[len - 2] = '\0';
		}
		if (!is_ip_literal(m->address, NULL))
			obj_diag(o, DIAG_ERROR, at[MF_ADDRESS],
			         "address: \"%s\" is not an IP address", m->address);
	}

	r = get_string(o, "host", at[MF_HOST], &m->host);
	if (r > 0 && !*m->host)
		m->host = mfree(m->host);
	else if (r > 0)
		(void)normalise_host(o, "host", at[MF_HOST], m->host);

	if (!ynode_is_null(at[MF_TLS])) {
		const struct ynode *t = at[MF_TLS];
		if (parse_yaml_bool(t, &b) == 0)
			m->tls = b ? TLS_ORIGINATE_PLAIN : TLS_ORIGINATE_NONE;
		else if (t->kind != YNODE_SCALAR)
			obj_diag(o, DIAG_ERROR, t,
			         "tls: must be true, false or a TLSContext name, not %s",
			         ynode_describe(t));
		/* v3alpha1 types `tls` as a string, so "true" arrives quoted there. */
		else if (streq(t->value, "true"))
			m->tls = TLS_ORIGINATE_PLAIN;
		else if (streq(t->value, "false") || t->value_len == 0)
			m->tls = TLS_ORIGINATE_NONE;
		else {
			m->tls = TLS_ORIGINATE_CONTEXT;
			m->tls_context_name = strdup(t->value);
			if (!m->tls_context_name)
				return -ENOMEM;
		}
	}

	if (get_int(o, "weight", at[MF_WEIGHT], 0, INT64_MAX, &v) > 0) {
		if (v > 100)
			obj_diag(o, DIAG_ERROR, at[MF_WEIGHT], "weight: %" PRId64 " is over 100",
			         v);
		else
			m->weight = (int)v;
	}

	if (get_uint_or_digits(o, "idle_timeout_ms", at[MF_IDLE_TIMEOUT], 0, UINT32_MAX, &u) > 0)
		m->idle_timeout_ms = (uint32_t)u;

	r = get_bool(o, "enable_ipv4", at[MF_ENABLE_IPV4], &m->enable_ipv4);
	extra.has_enable_ipv4 = r > 0;
	r = get_bool(o, "enable_ipv6", at[MF_ENABLE_IPV6], &m->enable_ipv6);
	extra.has_enable_ipv6 = r > 0;

	(void)parse_circuit_breakers(o, at[MF_BREAKERS], &m->circuit_breakers);

	if (get_uint_or_digits(o, "connect_timeout_ms", at[MF_CONNECT_TIMEOUT], 1, UINT32_MAX, &u) >
	    0) {
		m->connect_timeout_ms = (uint32_t)u;
		extra.has_connect_timeout = true;
	}

	{
		_cleanup_free_ char *pp = NULL;
		if (get_string(o, "proxy_protocol", at[MF_PROXY_PROTOCOL], &pp) > 0) {
			if (streq(pp, "v1"))
				m->proxy_protocol = PROXY_PROTOCOL_V1;
			else if (streq(pp, "v2"))
				m->proxy_protocol = PROXY_PROTOCOL_V2;
			else
				obj_diag(o, DIAG_ERROR, at[MF_PROXY_PROTOCOL],
				         "proxy_protocol: \"%s\" is not v1 or v2", pp);
		}
	}

	if (get_bool(o, "tls_passthrough", at[MF_TLS_PASSTHROUGH], &m->tls_passthrough) > 0 &&
	    m->tls_passthrough) {
		if (!m->host && !at[MF_HOST])
			obj_diag(o, DIAG_ERROR, at[MF_TLS_PASSTHROUGH],
			         "tls_passthrough: needs host (passthrough routes on the SNI)");
		if (m->tls != TLS_ORIGINATE_NONE)
			obj_diag(o, DIAG_ERROR, at[MF_TLS_PASSTHROUGH],
			         "tls_passthrough: cannot be combined with tls (the bytes are "
			         "already TLS)");
	}

	if (o->v3alpha1) {
		static const enum mapping_field ext[] = {MF_CONNECT_TIMEOUT, MF_PROXY_PROTOCOL,
		                                         MF_TLS_PASSTHROUGH};
		static const char *const ext_names[] = {"connect_timeout_ms", "proxy_protocol",
		                                        "tls_passthrough"};
		for (size_t i = 0; i < ELEMENTSOF(ext); i++)
			if (at[ext[i]])
				obj_diag(o, DIAG_WARNING, at[ext[i]],
				         "%s: tcpmap extension in a getambassador.io/v3alpha1 "
				         "document; "
				         "Kubernetes prunes unknown fields there, so put it in a "
				         "getambassador.io/v2 document",
				         ext_names[i]);
	}

	extra.bad = o->bad;
	L->extras[m->index] = extra;
	return 0;
}

static bool is_tls_version(const char *s) {
	return streq(s, "v1.0") || streq(s, "v1.1") || streq(s, "v1.2") || streq(s, "v1.3");
}

/* A secret name becomes a path component under the secrets directory and the credentials
 * directory; it must not be able to leave them. */
static bool is_safe_secret_name(const char *s) {
	return *s && !strchr(s, '/') && !streq(s, ".") && !streq(s, "..");
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
			char *item = strndup(a, (size_t)(b - a));
			if (!item || strv_push(&v, &n, item) < 0) {
				free(item);
				strv_free(v);
				return -ENOMEM;
			}
		}
		p = end ? end + 1 : p + len;
	}
	*ret = v;
	return 0;
}

static int parse_tlscontext(struct object_ctx *o, const struct ynode *root,
                            const struct ynode *spec) {
	struct loader *L = o->loader;
	struct tls_context *t;
	_cleanup_free_ char *alpn = NULL;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->name = strdup(o->name);
	if (!t->name || config_push(&L->config->tls_contexts, &L->config->n_tls_contexts, t) < 0) {
		free(t->name);
		free(t);
		return -ENOMEM;
	}
	t->pos = ynode_pos(o->file, root);

	for (size_t i = 0; i + 1 < spec->n_items; i += 2) {
		const struct ynode *key = spec->items[i], *value = spec->items[i + 1];
		const char *k;

		if (key->kind != YNODE_SCALAR) {
			obj_diag(o, DIAG_ERROR, key, "spec: keys must be strings");
			continue;
		}
		k = key->value;
		if (streq(k, "hosts")) {
			if (get_string_list(o, k, value, &t->hosts, &t->n_hosts) > 0)
				for (size_t h = 0; h < t->n_hosts; h++)
					if (!streq(t->hosts[h], "*"))
						(void)normalise_host(o, "hosts", value->items[h],
						                     t->hosts[h]);
		} else if (streq(k, "secret") || streq(k, "ca_secret")) {
			char **dst = streq(k, "secret") ? &t->secret : &t->ca_secret;
			if (get_string(o, k, value, dst) > 0 && !is_safe_secret_name(*dst))
				obj_diag(o, DIAG_ERROR, value,
				         "%s: \"%s\" is not a usable secret name", k, *dst);
		} else if (streq(k, "cert_chain_file"))
			(void)get_string(o, k, value, &t->cert_chain_file);
		else if (streq(k, "private_key_file"))
			(void)get_string(o, k, value, &t->private_key_file);
		else if (streq(k, "cacert_chain_file"))
			(void)get_string(o, k, value, &t->cacert_chain_file);
		else if (streq(k, "cert_required"))
			(void)get_bool(o, k, value, &t->cert_required);
		else if (streq(k, "min_tls_version") || streq(k, "max_tls_version")) {
			char **dst = streq(k, "min_tls_version") ? &t->min_tls_version
			                                         : &t->max_tls_version;
			if (get_string(o, k, value, dst) > 0 && !is_tls_version(*dst))
				obj_diag(o, DIAG_ERROR, value,
				         "%s: \"%s\" is not v1.0, v1.1, v1.2 or v1.3", k, *dst);
		} else if (streq(k, "cipher_suites"))
			(void)get_string_list(o, k, value, &t->cipher_suites, NULL);
		else if (streq(k, "ecdh_curves"))
			(void)get_string_list(o, k, value, &t->ecdh_curves, NULL);
		else if (streq(k, "alpn_protocols")) {
			if (get_string(o, k, value, &alpn) > 0 &&
			    split_alpn(alpn, &t->alpn_protocols) < 0)
				return -ENOMEM;
		} else if (streq(k, "sni"))
			(void)get_string(o, k, value, &t->sni);
		else if (streq(k, "ambassador_id") || streq(k, "secret_namespacing") ||
		         streq(k, "redirect_cleartext_from") || streq(k, "crl_secret") ||
		         streq(k, "v3CRLSecret") || streq(k, "v3Crl_secret"))
			obj_diag(o, DIAG_DEBUG, key, "%s: not used by tcpmap, ignoring", k);
		else
			obj_diag(o, DIAG_WARNING, key, "%s: unknown field, ignoring", k);
	}
	if (!t->hosts) {
		t->hosts = calloc(1, sizeof(char *));
		if (!t->hosts)
			return -ENOMEM;
	}
	return 0;
}

static void parse_module(struct object_ctx *o, const struct ynode *spec) {
	struct module_config *mod = &o->loader->config->module;
	const struct ynode *cfg = NULL;
	uint64_t u;

	for (size_t i = 0; i + 1 < spec->n_items; i += 2) {
		const struct ynode *key = spec->items[i];
		if (key->kind != YNODE_SCALAR)
			obj_diag(o, DIAG_ERROR, key, "spec: keys must be strings");
		else if (streq(key->value, "config"))
			cfg = spec->items[i + 1];
		else if (!streq(key->value, "ambassador_id"))
			obj_diag(o, DIAG_WARNING, key, "%s: unknown field, ignoring", key->value);
	}
	/* Only the Module named "ambassador" configures Ambassador itself (Emissary's rule). */
	if (!streq(o->name, "ambassador")) {
		obj_diag(o, DIAG_DEBUG, spec,
		         "only the Module named \"ambassador\" applies, skipping");
		return;
	}
	if (ynode_is_null(cfg))
		return;
	if (cfg->kind != YNODE_MAPPING) {
		obj_diag(o, DIAG_ERROR, cfg, "config: must be a mapping, not %s",
		         ynode_describe(cfg));
		return;
	}
	(void)get_bool(o, "config.enable_ipv4", ymap_get(cfg, "enable_ipv4"), &mod->enable_ipv4);
	(void)get_bool(o, "config.enable_ipv6", ymap_get(cfg, "enable_ipv6"), &mod->enable_ipv6);
	(void)parse_circuit_breakers(o, ymap_get(cfg, "circuit_breakers"), &mod->circuit_breakers);
	if (get_uint_or_digits(o, "config.preread_timeout_ms", ymap_get(cfg, "preread_timeout_ms"),
	                       1, UINT32_MAX, &u) > 0)
		mod->preread_timeout_ms = (uint32_t)u;
	if (get_uint_or_digits(o, "config.connect_timeout_ms", ymap_get(cfg, "connect_timeout_ms"),
	                       1, UINT32_MAX, &u) > 0)
		mod->connect_timeout_ms = (uint32_t)u;
	if (get_uint_or_digits(o, "config.drain_timeout_ms", ymap_get(cfg, "drain_timeout_ms"), 0,
	                       UINT32_MAX, &u) > 0)
		mod->drain_timeout_ms = (uint32_t)u;
	/* The Ambassador Module has dozens of HTTP settings; they are legitimately present in
	 * shared files, so they are not worth a warning. */
}

/* Does the document's ambassador_id (string or list) include ours? Absent = "default". */
static bool ambassador_id_matches(struct loader *L, const struct ynode *n) {
	if (ynode_is_null(n))
		return streq(L->ambassador_id, "default");
	if (n->kind == YNODE_SCALAR)
		return streq(n->value, L->ambassador_id);
	if (n->kind == YNODE_SEQUENCE)
		for (size_t i = 0; i < n->n_items; i++)
			if (n->items[i]->kind == YNODE_SCALAR &&
			    streq(n->items[i]->value, L->ambassador_id))
				return true;
	return false;
}

static void process_document(struct loader *L, const char *file, const struct ynode *root) {
	struct object_ctx o = {.loader = L, .file = file, .kind = "document"};
	const struct ynode *kind, *api, *metadata, *name, *spec, *id;

	if (!root || ynode_is_null(root))
		return; /* an empty document, e.g. after a trailing "---" */
	if (root->kind != YNODE_MAPPING) {
		obj_diag(&o, DIAG_ERROR, root, "a document must be a mapping, not %s",
		         ynode_describe(root));
		return;
	}

	kind = ymap_get(root, "kind");
	if (ynode_is_null(kind) || kind->kind != YNODE_SCALAR) {
		obj_diag(&o, DIAG_ERROR, kind ? kind : root, "kind: missing or not a string");
		return;
	}
	if (streq(kind->value, "TCPMapping"))
		o.label = "mapping";
	else if (streq(kind->value, "TLSContext"))
		o.label = "tlscontext";
	else if (streq(kind->value, "Module"))
		o.label = "module";
	else {
		/* Shared with Emissary: Mappings, Hosts, Services... are someone else's. */
		obj_diag(&o, DIAG_DEBUG, kind, "skipping kind %s", kind->value);
		return;
	}
	o.kind = kind->value;

	api = ymap_get(root, "apiVersion");
	if (ynode_is_null(api) || api->kind != YNODE_SCALAR) {
		obj_diag(&o, DIAG_ERROR, api ? api : root, "apiVersion: missing or not a string");
		return;
	}
	if (!streq(api->value, "getambassador.io/v2") && !is_v3alpha1(api->value)) {
		obj_diag(&o, DIAG_ERROR, api,
		         "apiVersion: \"%s\" is not supported (use getambassador.io/v2 or "
		         "getambassador.io/v3alpha1)",
		         api->value);
		return;
	}
	o.v3alpha1 = is_v3alpha1(api->value);

	spec = ymap_get(root, "spec");
	/* Emissary reads ambassador_id from spec; annotation-style configs have it on top. */
	id = spec ? ymap_get(spec, "ambassador_id") : NULL;
	if (!id)
		id = ymap_get(root, "ambassador_id");
	if (!ambassador_id_matches(L, id)) {
		obj_diag(&o, DIAG_DEBUG, id, "not for ambassador_id \"%s\", skipping",
		         L->ambassador_id);
		return;
	}

	metadata = ymap_get(root, "metadata");
	name = ymap_get(metadata, "name");
	if (ynode_is_null(name) || name->kind != YNODE_SCALAR || !*name->value ||
	    strlen(name->value) != name->value_len) {
		obj_diag(&o, DIAG_ERROR,
		         name       ? name
		         : metadata ? metadata
		                    : root,
		         "metadata.name: missing or not a string");
		return;
	}
	o.name = name->value;

	if (ynode_is_null(spec) || spec->kind != YNODE_MAPPING) {
		obj_diag(&o, DIAG_ERROR, spec ? spec : root, "spec: missing or not a mapping");
		return;
	}

	if (streq(o.label, "mapping")) {
		check_unique_name(&o, &L->mapping_names, name);
		(void)parse_tcpmapping(&o, root, name, spec);
	} else if (streq(o.label, "tlscontext")) {
		check_unique_name(&o, &L->tls_context_names, name);
		(void)parse_tlscontext(&o, root, spec);
	} else {
		check_unique_name(&o, &L->module_names, name);
		parse_module(&o, spec);
	}
}

/* ---- reading YAML --------------------------------------------------------------------- */

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

static void report_parser_error(struct loader *L, const char *file, const char *data, size_t size,
                                const yaml_parser_t *p) {
	unsigned line, column;

	if (p->error == YAML_READER_ERROR) {
		/* Reader errors (bad UTF-8, control characters) carry a byte offset only. */
		offset_to_position(data, size, p->problem_offset, &line, &column);
		diag_add(L->diags, DIAG_ERROR, file, line, column,
		         "invalid YAML: %s (the file must be UTF-8 text)",
		         p->problem ? p->problem : "unreadable input");
		return;
	}
	line = (unsigned)p->problem_mark.line + 1;
	column = (unsigned)p->problem_mark.column + 1;
	if (p->context)
		diag_add(L->diags, DIAG_ERROR, file, line, column, "invalid YAML: %s %s",
		         p->problem ? p->problem : "syntax error", p->context);
	else
		diag_add(L->diags, DIAG_ERROR, file, line, column, "invalid YAML: %s",
		         p->problem ? p->problem : "syntax error");
}

static char *event_anchor(const yaml_event_t *ev) {
	const yaml_char_t *a = NULL;

	if (ev->type == YAML_SCALAR_EVENT)
		a = ev->data.scalar.anchor;
	else if (ev->type == YAML_SEQUENCE_START_EVENT)
		a = ev->data.sequence_start.anchor;
	else if (ev->type == YAML_MAPPING_START_EVENT)
		a = ev->data.mapping_start.anchor;
	return a ? strdup((const char *)a) : NULL;
}

/* Returns 0 to go on, or a negative errno after reporting why this file stops. */
static int builder_event(struct loader *L, struct ybuilder *b, const char *file,
                         const yaml_event_t *ev) {
	struct ynode *n, *target;
	unsigned line = (unsigned)ev->start_mark.line + 1,
	         column = (unsigned)ev->start_mark.column + 1;

	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		ybuilder_reset(b);
		return 0;

	case YAML_DOCUMENT_END_EVENT:
		process_document(L, file, b->root);
		ybuilder_reset(b);
		return 0;

	case YAML_SCALAR_EVENT: {
		const char *tag = (const char *)ev->data.scalar.tag;

		n = ybuilder_new_node(b, YNODE_SCALAR, &ev->start_mark);
		if (!n)
			return -ENOMEM;
		n->value = strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
		if (!n->value)
			return -ENOMEM;
		n->value_len = ev->data.scalar.length;
		n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
		           (!tag || !streq(tag, YAML_STR_TAG));
		if (ybuilder_attach(b, n) < 0 || ybuilder_add_anchor(b, event_anchor(ev), n) < 0)
			return -ENOMEM;
		return 0;
	}

	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		struct ynode **stack;
		char **pending;

		if (b->depth >= L->max_depth) {
			diag_add(L->diags, DIAG_ERROR, file, line, column,
			         "invalid YAML: nesting deeper than %zu levels", L->max_depth);
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
		b->stack[b->depth] = n;
		/* Registered only when the collection closes, so an alias inside its own anchor
		 * ("&a [*a]") is unknown rather than a cycle. */
		b->pending_anchors[b->depth] = event_anchor(ev);
		b->depth++;
		return 0;
	}

	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		if (b->depth == 0)
			return -EINVAL;
		b->depth--;
		n = b->stack[b->depth];
		for (size_t i = 0; i < n->n_items; i++)
			n->size += n->items[i]->size;
		return ybuilder_add_anchor(b, b->pending_anchors[b->depth], n);

	case YAML_ALIAS_EVENT:
		target = ybuilder_find_anchor(b, (const char *)ev->data.alias.anchor);
		if (!target) {
			diag_add(L->diags, DIAG_ERROR, file, line, column,
			         "invalid YAML: alias *%s refers to no earlier anchor",
			         (const char *)ev->data.alias.anchor);
			return -EINVAL;
		}
		if (target->size > L->max_alias_expansion ||
		    b->expanded + target->size > L->max_alias_expansion) {
			diag_add(L->diags, DIAG_ERROR, file, line, column,
			         "invalid YAML: aliases expand to more than %zu nodes",
			         L->max_alias_expansion);
			return -E2BIG;
		}
		b->expanded += target->size;
		return ybuilder_attach(b, target);

	default:
		return 0;
	}
}

static void load_text(struct loader *L, const char *file, const char *data, size_t size) {
	_cleanup_(ybuilder_reset) struct ybuilder b = {};
	yaml_parser_t parser;

	if (size > L->max_file_size) {
		diag_add(L->diags, DIAG_ERROR, file, 0, 0, "file is larger than %zu bytes",
		         L->max_file_size);
		return;
	}
	if (!yaml_parser_initialize(&parser)) {
		L->io_error = L->io_error ?: -ENOMEM;
		return;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)data, size);
	for (;;) {
		yaml_event_t ev;
		bool done;
		int r;

		if (!yaml_parser_parse(&parser, &ev)) {
			report_parser_error(L, file, data, size, &parser);
			break;
		}
		done = ev.type == YAML_STREAM_END_EVENT;
		r = builder_event(L, &b, file, &ev);
		yaml_event_delete(&ev);
		if (r == -ENOMEM) {
			diag_add(L->diags, DIAG_ERROR, file, 0, 0, "out of memory");
			L->io_error = L->io_error ?: -ENOMEM;
		}
		if (done || r < 0)
			break;
	}
	yaml_parser_delete(&parser);
}

static int config_add_file(struct config *c, const char *name, const char **ret) {
	char *copy = strdup(name);

	if (!copy || config_push(&c->files, &c->n_files, copy) < 0) {
		free(copy);
		return -ENOMEM;
	}
	*ret = copy;
	return 0;
}

static void load_file(struct loader *L, const char *path) {
	_cleanup_close_ int fd = -EBADF;
	_cleanup_free_ char *data = NULL;
	const char *file;
	struct stat st;
	size_t got = 0;

	if (config_add_file(L->config, path, &file) < 0) {
		L->io_error = L->io_error ?: -ENOMEM;
		return;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		int err = errno;
		diag_add(L->diags, DIAG_ERROR, file, 0, 0, "cannot read: %s", strerror(err));
		L->io_error = L->io_error ?: -err;
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		diag_add(L->diags, DIAG_ERROR, file, 0, 0, "not a regular file");
		L->io_error = L->io_error ?: -EINVAL;
		return;
	}
	if ((uint64_t)st.st_size > L->max_file_size) {
		diag_add(L->diags, DIAG_ERROR, file, 0, 0, "file is larger than %zu bytes",
		         L->max_file_size);
		return;
	}
	data = malloc((size_t)st.st_size + 1);
	if (!data) {
		L->io_error = L->io_error ?: -ENOMEM;
		return;
	}
	/* Read what is there now; a file that grows meanwhile is read again on reload. */
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, data + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = errno;
			diag_add(L->diags, DIAG_ERROR, file, 0, 0, "cannot read: %s",
			         strerror(err));
			L->io_error = L->io_error ?: -err;
			return;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	load_text(L, file, data, got);
}

static int compare_strings(const void *a, const void *b) {
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool has_yaml_suffix(const char *name) {
	size_t len = strlen(name);
	return (len > 5 && streq(name + len - 5, ".yaml")) ||
	       (len > 4 && streq(name + len - 4, ".yml"));
}

static void load_directory(struct loader *L, const char *path, DIR *dir) {
	char **names = NULL;
	size_t n = 0;
	struct dirent *de;

	while ((de = readdir(dir))) {
		_cleanup_free_ char *full = NULL;
		struct stat st;

		/* Dot-files include Kubernetes ConfigMap mounts' "..data" and editors' backups. */
		if (de->d_name[0] == '.' || !has_yaml_suffix(de->d_name))
			continue;
		if (asprintf(&full, "%s/%s", path, de->d_name) < 0)
			break;
		if (stat(full, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (strv_push(&names, &n, TAKE_PTR(full)) < 0)
			break;
	}
	if (n > 0)
		qsort(names, n, sizeof(char *), compare_strings);
	for (size_t i = 0; i < n; i++)
		load_file(L, names[i]);
	strv_free(names);
}

static void load_path(struct loader *L, const char *path) {
	DIR *dir = opendir(path);

	if (dir) {
		load_directory(L, path, dir);
		closedir(dir);
		return;
	}
	load_file(L, path);
}

/* ---- from mappings to groups and listeners -------------------------------------------- */

static struct source_pos field_or_mapping_pos(const struct loader *L, const struct mapping *m,
                                              enum mapping_field f) {
	const struct source_pos *p = &L->extras[m->index].field_pos[f];
	return p->line > 0 ? *p : m->pos;
}

_printf_(5, 6) static void mapping_diag(struct loader *L, enum diag_level level,
                                        const struct mapping *m, struct source_pos pos,
                                        const char *fmt, ...) {
	_cleanup_free_ char *body = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&body, fmt, ap);
	va_end(ap);
	if (r < 0)
		return;
	diag_add(L->diags, level, pos.file, pos.line, pos.column, "mapping \"%s\": %s", m->name,
	         body);
}

static bool context_covers_host(const struct tls_context *t, const char *host) {
	for (size_t i = 0; i < t->n_hosts; i++) {
		const char *h = t->hosts[i];
		if (streq(h, "*") || streq(h, host))
			return true;
		if (host[0] != '*' && route_host_matches(h, host))
			return true;
	}
	return false;
}

static void resolve_mapping(struct loader *L, struct mapping *m) {
	const struct module_config *mod = &L->config->module;
	const struct mapping_extra *x = &L->extras[m->index];

	if (!x->has_enable_ipv4)
		m->enable_ipv4 = mod->enable_ipv4;
	if (!x->has_enable_ipv6)
		m->enable_ipv6 = mod->enable_ipv6;
	if (!m->enable_ipv4 && !m->enable_ipv6)
		mapping_diag(L, DIAG_ERROR, m,
		             field_or_mapping_pos(
		                     L, m, x->has_enable_ipv4 ? MF_ENABLE_IPV4 : MF_ENABLE_IPV6),
		             "enable_ipv4, enable_ipv6: both false, so the service can never be "
		             "resolved");
	if (!m->circuit_breakers.set)
		m->circuit_breakers = mod->circuit_breakers;
	if (!x->has_connect_timeout)
		m->connect_timeout_ms = mod->connect_timeout_ms;
	/* Same default as Emissary: 80, or 443 when originating TLS. */
	if (!x->has_explicit_upstream_port)
		m->upstream_port = m->tls != TLS_ORIGINATE_NONE ? 443 : 80;

	if (m->tls == TLS_ORIGINATE_CONTEXT) {
		m->tls_context = config_find_tls_context(L->config, m->tls_context_name);
		if (!m->tls_context)
			mapping_diag(L, DIAG_ERROR, m, field_or_mapping_pos(L, m, MF_TLS),
			             "tls: no TLSContext named \"%s\"", m->tls_context_name);
	}

	if (m->host && !m->tls_passthrough) {
		bool covered = false;
		for (size_t i = 0; i < L->config->n_tls_contexts && !covered; i++)
			covered = context_covers_host(L->config->tls_contexts[i], m->host);
		if (!covered)
			mapping_diag(
			        L, DIAG_ERROR, m, field_or_mapping_pos(L, m, MF_HOST),
			        "host: no TLSContext lists \"%s\" in its hosts (terminating TLS "
			        "needs its certificate)",
			        m->host);
	}

	/* Emissary names clusters by service, TLS origination and breaker settings; mappings
	 * that agree on all of them share one upstream cluster, and so one breaker. */
	if (asprintf(&m->cluster, "%s|%s|%s|%" PRIu32 "|%" PRIu32, m->service,
	             m->tls == TLS_ORIGINATE_NONE    ? "plain"
	             : m->tls == TLS_ORIGINATE_PLAIN ? "tls"
	                                             : "tls-context",
	             m->tls_context_name ? m->tls_context_name : "-",
	             m->circuit_breakers.max_connections,
	             m->circuit_breakers.max_pending_requests) < 0) {
		m->cluster = NULL;
		L->io_error = L->io_error ?: -ENOMEM;
	}
}

static char *group_key(const char *address, uint16_t port, const char *host) {
	char *key;
	if (asprintf(&key, "%s|%u|%s", address ?: "*", port, host ?: "*") < 0)
		return NULL;
	return key;
}

/* Names the first setting on which two mappings of one group disagree, or NULL. */
static const char *group_disagreement(const struct mapping *a, const struct mapping *b,
                                      enum mapping_field *field) {
	if (a->tls != b->tls || !streq_ptr(a->tls_context_name, b->tls_context_name)) {
		*field = MF_TLS;
		return "tls";
	}
	if (a->tls_passthrough != b->tls_passthrough) {
		*field = MF_TLS_PASSTHROUGH;
		return "tls_passthrough";
	}
	if (a->idle_timeout_ms != b->idle_timeout_ms) {
		*field = MF_IDLE_TIMEOUT;
		return "idle_timeout_ms";
	}
	if (a->enable_ipv4 != b->enable_ipv4) {
		*field = MF_ENABLE_IPV4;
		return "enable_ipv4";
	}
	if (a->enable_ipv6 != b->enable_ipv6) {
		*field = MF_ENABLE_IPV6;
		return "enable_ipv6";
	}
	if (a->circuit_breakers.max_connections != b->circuit_breakers.max_connections ||
	    a->circuit_breakers.max_pending_requests != b->circuit_breakers.max_pending_requests) {
		*field = MF_BREAKERS;
		return "circuit_breakers";
	}
	return NULL;
}

static void group_describe(const struct mapping_group *g, char *buf, size_t size) {
	snprintf(buf, size, "address %s, port %u, host %s", g->address ?: "*", g->port,
	         g->host ?: "(any)");
}

static void normalise_weights(struct loader *L, struct mapping_group *g) {
	unsigned total = 0, n_unweighted = 0;
	const struct mapping *last_weighted = NULL;
	char where[512];

	if (g->n_mappings == 1) {
		/* The doc's weight is a share of the group; alone, a mapping takes it all. */
		g->mappings[0]->effective_weight = 100;
		return;
	}
	for (size_t i = 0; i < g->n_mappings; i++) {
		const struct mapping *m = g->mappings[i];
		if (m->weight < 0)
			n_unweighted++;
		else {
			total += (unsigned)m->weight;
			last_weighted = m;
		}
	}
	group_describe(g, where, sizeof(where));
	if (total > 100) {
		mapping_diag(L, DIAG_ERROR, last_weighted,
		             field_or_mapping_pos(L, last_weighted, MF_WEIGHT),
		             "weight: the weights of group (%s) total %u, over 100", where, total);
		return;
	}
	if (n_unweighted > 0) {
		unsigned remainder = 100 - total, share = remainder / n_unweighted,
		         extra = remainder % n_unweighted;
		for (size_t i = 0; i < g->n_mappings; i++) {
			struct mapping *m = g->mappings[i];
			if (m->weight >= 0) {
				m->effective_weight = (unsigned)m->weight;
				continue;
			}
			/* The first unweighted mappings take the rounding so the sum is exactly
			 * 100. */
			m->effective_weight = share + (extra > 0 ? 1 : 0);
			if (extra > 0)
				extra--;
			if (m->effective_weight == 0)
				mapping_diag(
				        L, DIAG_WARNING, m, m->pos,
				        "weight: the other mappings of group (%s) take all 100%%, "
				        "so this one gets no traffic",
				        where);
		}
		return;
	}
	if (total == 0) {
		for (size_t i = 0; i < g->n_mappings; i++)
			g->mappings[i]->effective_weight = 0;
		mapping_diag(L, DIAG_WARNING, g->mappings[0],
		             field_or_mapping_pos(L, g->mappings[0], MF_WEIGHT),
		             "weight: every mapping of group (%s) has weight 0; it gets no traffic",
		             where);
		return;
	}
	if (total < 100) {
		/* Largest remainder: floor each share, then hand the missing points to the largest
		 * fractional parts (earlier mappings first on ties), so the total is exactly 100.
		 */
		unsigned assigned = 0, remainders[ROUTE_MAX_GROUP_MAPPINGS] = {};
		for (size_t i = 0; i < g->n_mappings; i++) {
			struct mapping *m = g->mappings[i];
			m->effective_weight = (unsigned)m->weight * 100 / total;
			remainders[i] = (unsigned)m->weight * 100 % total;
			assigned += m->effective_weight;
		}
		while (assigned < 100) {
			size_t best = 0;
			for (size_t i = 1; i < g->n_mappings; i++)
				if (remainders[i] > remainders[best])
					best = i;
			g->mappings[best]->effective_weight++;
			remainders[best] = 0;
			assigned++;
		}
		mapping_diag(L, DIAG_WARNING, last_weighted,
		             field_or_mapping_pos(L, last_weighted, MF_WEIGHT),
		             "weight: the weights of group (%s) total %u, under 100; scaled to 100",
		             where, total);
		return;
	}
	for (size_t i = 0; i < g->n_mappings; i++)
		g->mappings[i]->effective_weight = (unsigned)g->mappings[i]->weight;
}

static void build_groups(struct loader *L) {
	struct config *c = L->config;

	for (size_t i = 0; i < c->n_mappings; i++) {
		struct mapping *m = c->mappings[i];
		_cleanup_free_ char *key = NULL;
		struct mapping_group *g = NULL;
		enum mapping_field field;
		const char *what;
		char where[512];

		if (L->extras[i].bad)
			continue;
		key = group_key(m->address, m->port, m->host);
		if (!key) {
			L->io_error = L->io_error ?: -ENOMEM;
			return;
		}
		for (size_t k = 0; k < c->n_groups; k++)
			if (streq(c->groups[k]->key, key)) {
				g = c->groups[k];
				break;
			}
		if (!g) {
			g = calloc(1, sizeof(*g));
			if (!g || config_push(&c->groups, &c->n_groups, g) < 0) {
				free(g);
				L->io_error = L->io_error ?: -ENOMEM;
				return;
			}
			g->key = TAKE_PTR(key);
			g->address = m->address ? strdup(m->address) : NULL;
			g->port = m->port;
			g->host = m->host ? strdup(m->host) : NULL;
			g->host_is_wildcard = m->host && m->host[0] == '*';
		}
		group_describe(g, where, sizeof(where));
		if (g->n_mappings > 0 && (what = group_disagreement(g->mappings[0], m, &field))) {
			const struct mapping *first = g->mappings[0];
			mapping_diag(
			        L, DIAG_ERROR, m, field_or_mapping_pos(L, m, field),
			        "%s: differs from mapping \"%s\" (%s:%u:%u) in the same group "
			        "(%s); mappings of a group must agree on address, host, tls, "
			        "idle_timeout_ms, enable_ipv4/enable_ipv6 and circuit_breakers",
			        what, first->name, first->pos.file, first->pos.line,
			        first->pos.column, where);
			continue;
		}
		if (g->n_mappings >= ROUTE_MAX_GROUP_MAPPINGS) {
			mapping_diag(
			        L, DIAG_ERROR, m, m->pos,
			        "group (%s) already has %d mappings, the most one group may hold",
			        where, ROUTE_MAX_GROUP_MAPPINGS);
			continue;
		}
		if (config_push(&g->mappings, &g->n_mappings, m) < 0) {
			L->io_error = L->io_error ?: -ENOMEM;
			return;
		}
		m->group = g;
	}
	for (size_t k = 0; k < c->n_groups; k++)
		normalise_weights(L, c->groups[k]);
}

static int group_order(const void *a, const void *b) {
	const struct mapping_group *x = *(struct mapping_group *const *)a,
	                           *y = *(struct mapping_group *const *)b;
	int rank_x = !x->host              ? 2
	             : x->host_is_wildcard ? 1
	                                   : 0,
	    rank_y = !y->host              ? 2
	             : y->host_is_wildcard ? 1
	                                   : 0;

	if (rank_x != rank_y)
		return rank_x - rank_y;
	if (rank_x == 1 && strlen(x->host) != strlen(y->host))
		return strlen(x->host) > strlen(y->host) ? -1 : 1;
	if (rank_x != 2)
		return strcmp(x->host, y->host);
	return 0;
}

static int listener_fill_sockaddr(struct listener *l) {
	int family = AF_INET;

	memset(&l->sockaddr, 0, sizeof(l->sockaddr));
	if (l->address && !is_ip_literal(l->address, &family))
		return -EINVAL;
	if (family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&l->sockaddr;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(l->port);
		inet_pton(AF_INET6, l->address, &sin6->sin6_addr);
		l->sockaddr_len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&l->sockaddr;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(l->port);
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
		if (l->address)
			inet_pton(AF_INET, l->address, &sin->sin_addr);
		l->sockaddr_len = sizeof(*sin);
	}
	return 0;
}

static void build_listeners(struct loader *L) {
	struct config *c = L->config;

	for (size_t k = 0; k < c->n_groups; k++) {
		struct mapping_group *g = c->groups[k];
		struct listener *l = NULL;

		for (size_t i = 0; i < c->n_listeners; i++)
			if (c->listeners[i]->port == g->port &&
			    streq_ptr(c->listeners[i]->address, g->address)) {
				l = c->listeners[i];
				break;
			}
		if (!l) {
			l = calloc(1, sizeof(*l));
			if (!l || config_push(&c->listeners, &c->n_listeners, l) < 0) {
				free(l);
				L->io_error = L->io_error ?: -ENOMEM;
				return;
			}
			l->port = g->port;
			if (g->address && !(l->address = strdup(g->address))) {
				L->io_error = L->io_error ?: -ENOMEM;
				return;
			}
			(void)listener_fill_sockaddr(l);
		}
		if (config_push(&l->groups, &l->n_groups, g) < 0) {
			L->io_error = L->io_error ?: -ENOMEM;
			return;
		}
		g->listener = l;
		if (g->host)
			l->needs_sni = true;
		else
			l->catch_all = g;
	}
	for (size_t i = 0; i < c->n_listeners; i++) {
		struct listener *l = c->listeners[i];
		/* qsort is not stable, but hosts within a rank are unique, so order is total. */
		qsort(l->groups, l->n_groups, sizeof(*l->groups), group_order);
	}
}

/* ---- entry points --------------------------------------------------------------------- */

static void loader_init(struct loader *L, const struct config_options *opts,
                        struct diag_list *diags) {
	*L = (struct loader){
	        .ambassador_id = opts && opts->ambassador_id ? opts->ambassador_id : "default",
	        .max_file_size =
	                opts && opts->max_file_size ? opts->max_file_size : DEFAULT_MAX_FILE_SIZE,
	        .max_alias_expansion = opts && opts->max_alias_expansion
	                                       ? opts->max_alias_expansion
	                                       : DEFAULT_MAX_ALIAS_EXPANSION,
	        .max_depth = opts && opts->max_depth ? opts->max_depth : DEFAULT_MAX_DEPTH,
	        .diags = diags,
	        .errors_before = diags->n_errors,
	};
}

static int loader_start(struct loader *L) {
	struct config *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->refcount = 1;
	c->module = (struct module_config){
	        .enable_ipv4 = true,
	        .enable_ipv6 = false,
	        .preread_timeout_ms = DEFAULT_PREREAD_TIMEOUT_MS,
	        .connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS,
	        .drain_timeout_ms = DEFAULT_DRAIN_TIMEOUT_MS,
	        .ambassador_id = strdup(L->ambassador_id),
	};
	L->config = c;
	if (!c->module.ambassador_id)
		return -ENOMEM;
	return 0;
}

static int loader_finish(struct loader *L, struct config **ret) {
	struct config *c = L->config;

	for (size_t i = 0; i < c->n_mappings; i++)
		if (!L->extras[i].bad)
			resolve_mapping(L, c->mappings[i]);
	build_groups(L);
	build_listeners(L);

	if (c->n_mappings == 0 && L->diags->n_errors == L->errors_before)
		diag_add(L->diags, DIAG_WARNING, c->n_files > 0 ? c->files[0] : "config", 0, 0,
		         "no TCPMapping found; nothing to listen on");

	if (L->io_error)
		return L->io_error;
	/* A mapping flagged bad always produced an error diag, so counting diags suffices. */
	if (L->diags->n_errors > L->errors_before)
		return -EINVAL;
	c->generation = atomic_fetch_add(&config_generation_counter, 1) + 1;
	*ret = TAKE_PTR(L->config);
	return 0;
}

static void loader_done(struct loader *L) {
	if (L->config)
		config_unref(L->config);
	free(L->extras);
	name_set_free(&L->mapping_names);
	name_set_free(&L->tls_context_names);
	name_set_free(&L->module_names);
}

int config_load(const char *const *paths, size_t n_paths, const struct config_options *opts,
                struct config **ret, struct diag_list *diags) {
	struct diag_list local = {};
	struct loader L;
	int r;

	if (!ret || (!paths && n_paths > 0))
		return -EINVAL;
	/* Errors must be counted even when the caller does not want to see them. */
	loader_init(&L, opts, diags ?: &local);
	r = loader_start(&L);
	if (r >= 0) {
		for (size_t i = 0; i < n_paths; i++)
			load_path(&L, paths[i]);
		r = loader_finish(&L, ret);
	}
	loader_done(&L);
	diag_list_free(&local);
	return r;
}

int config_load_buffer(const char *name, const char *data, size_t size,
                       const struct config_options *opts, struct config **ret,
                       struct diag_list *diags) {
	struct diag_list local = {};
	struct loader L;
	const char *file;
	int r;

	if (!ret || (!data && size > 0))
		return -EINVAL;
	loader_init(&L, opts, diags ?: &local);
	r = loader_start(&L);
	if (r >= 0)
		r = config_add_file(L.config, name ?: "<buffer>", &file);
	if (r >= 0) {
		load_text(&L, file, data ?: "", size);
		r = loader_finish(&L, ret);
	}
	loader_done(&L);
	diag_list_free(&local);
	return r;
}
