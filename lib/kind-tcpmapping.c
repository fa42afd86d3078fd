/* kind-tcpmapping.c — the TCPMapping schema: one field table, one small parser per field.
 *
 * Checks what one document can check alone (types, ranges, the service syntax, fields that
 * exclude each other); what needs other documents (TLSContexts, groups, the Module's
 * defaults) is lib/configbuild.c's. */
#include <ctype.h>
#include <inttypes.h>
#include <strings.h>

#include "kind.h"
#include "netaddr.h"
#include "util.h"

/* What the field parsers fill: the mapping and where its fields were written. */
struct mapping_target {
	struct mapping *m;
	struct mapping_extra *x;
};

#define FIELD_ARGS                                                                                 \
	struct yobject *o, const struct field_def *def, const struct fields *f,                    \
	        const struct ynode *value, void *target

static int read_port(FIELD_ARGS) {
	struct mapping *m = ((struct mapping_target *)target)->m;
	int64_t v;
	int r = get_int(o, def->key, value, 1, 65535, &v);

	if (r == 0)
		yobject_diag(o, DIAG_ERROR, f->spec, "port: missing (required)");
	else if (r > 0)
		m->port = (uint16_t)v;
	return MIN(r, 0);
}

/* "host", "host:port", "[v6]:port", "[v6]" or a bare IPv6 literal, after any https:// or
 * http:// (read_service). No other scheme, no path. */
static int check_service_text(struct yobject *o, const struct ynode *at, const char *service) {
	if (strstr(service, "://")) {
		yobject_diag(o, DIAG_ERROR, at,
		             "service: \"%s\" has a scheme other than https:// or http:// "
		             "(TCPMapping services are [scheme://]host[:port])",
		             service);
		return -EINVAL;
	}
	if (strchr(service, '/')) {
		yobject_diag(o, DIAG_ERROR, at, "service: \"%s\" must not include a path", service);
		return -EINVAL;
	}
	for (const char *p = service; *p; p++)
		if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p)) {
			yobject_diag(o, DIAG_ERROR, at, "service: \"%s\" contains whitespace",
			             service);
			return -EINVAL;
		}
	return 0;
}

/* "[v6]" or "[v6]:port". */
static int split_bracketed(struct yobject *o, const struct ynode *at, const char *service,
                           char **ret_host, const char **ret_port_text) {
	_cleanup_free_ char *host = NULL;
	const char *end = strchr(service, ']');

	if (!end) {
		yobject_diag(o, DIAG_ERROR, at, "service: \"%s\" has no closing ]", service);
		return -EINVAL;
	}
	host = strndup(service + 1, (size_t)(end - service - 1));
	if (!host)
		return -ENOMEM;
	if (end[1] == ':')
		*ret_port_text = end + 2;
	else if (end[1] != '\0') {
		yobject_diag(o, DIAG_ERROR, at, "service: unexpected text after ] in \"%s\"",
		             service);
		return -EINVAL;
	}
	if (!netaddr_is_literal(host) || !strchr(host, ':')) {
		yobject_diag(o, DIAG_ERROR, at, "service: \"%s\" is not an IPv6 address", host);
		return -EINVAL;
	}
	*ret_host = TAKE_PTR(host);
	return 0;
}

/* "host", "host:port", or a bare IPv6 literal. */
static int split_unbracketed(struct yobject *o, const struct ynode *at, const char *service,
                             char **ret_host, const char **ret_port_text) {
	const char *colon = strchr(service, ':');

	if (colon && strchr(colon + 1, ':')) {
		/* Several colons and no brackets: only a whole IPv6 literal makes sense. */
		if (!netaddr_is_literal(service)) {
			yobject_diag(o, DIAG_ERROR, at,
			             "service: \"%s\" is ambiguous; write IPv6 as [addr]:port",
			             service);
			return -EINVAL;
		}
		*ret_host = strdup(service);
	} else if (colon) {
		*ret_host = strndup(service, (size_t)(colon - service));
		*ret_port_text = colon + 1;
	} else
		*ret_host = strdup(service);
	return *ret_host ? 0 : -ENOMEM;
}

static int parse_service(struct yobject *o, const struct ynode *at, const char *service,
                         char **ret_host, uint16_t *ret_port) {
	_cleanup_free_ char *host = NULL;
	const char *port_text = NULL;
	uint64_t port = 0;
	int r;

	r = check_service_text(o, at, service);
	if (r < 0)
		return r;
	if (service[0] == '[')
		r = split_bracketed(o, at, service, &host, &port_text);
	else
		r = split_unbracketed(o, at, service, &host, &port_text);
	if (r < 0)
		return r;
	if (!*host) {
		yobject_diag(o, DIAG_ERROR, at, "service: \"%s\" has no host", service);
		return -EINVAL;
	}
	if (!netaddr_is_literal(host)) {
		const char *problem = host_name_problem(host, false);
		if (problem) {
			yobject_diag(o, DIAG_ERROR, at, "service: \"%s\" is not a host name: it %s",
			             host, problem);
			return -EINVAL;
		}
	}
	if (port_text && (port_text[0] == '0' || parse_uint(port_text, 1, 65535, &port) < 0)) {
		yobject_diag(o, DIAG_ERROR, at, "service: port \"%s\" is not 1-65535", port_text);
		return -EINVAL;
	}
	*ret_host = TAKE_PTR(host);
	*ret_port = (uint16_t)port;
	return 0;
}

/* Emissary's schemes, in v2 and v3alpha1 alike: https:// originates TLS (port 443 unless
 * given), http:// is dropped and changes nothing. Returns the text after the scheme. */
static const char *strip_scheme(const char *service, bool *ret_https) {
	*ret_https = strncasecmp(service, "https://", 8) == 0;
	if (*ret_https)
		return service + 8;
	if (strncasecmp(service, "http://", 7) == 0)
		return service + 7;
	return service;
}

static int read_service(FIELD_ARGS) {
	struct mapping_target *t = target;
	struct mapping *m = t->m;
	const char *hostport;
	int r = get_string(o, def->key, value, &m->service);

	if (r == 0 || (r > 0 && !*m->service)) {
		yobject_diag(o, DIAG_ERROR, r > 0 ? value : f->spec, "service: missing (required)");
		return -EINVAL;
	}
	if (r < 0)
		return r;
	hostport = strip_scheme(m->service, &t->x->service_https);
	r = parse_service(o, value, hostport, &m->upstream_host, &m->upstream_port);
	if (r == 0)
		t->x->has_explicit_upstream_port = m->upstream_port != 0;
	return r;
}

static int read_address(FIELD_ARGS) {
	struct mapping *m = ((struct mapping_target *)target)->m;
	size_t len;
	int r = get_string(o, def->key, value, &m->address);

	(void)f;
	if (r <= 0)
		return r;
	len = strlen(m->address);
	/* "[::1]" reads naturally to people used to URLs; store the bare literal. */
	if (len > 2 && m->address[0] == '[' && m->address[len - 1] == ']') {
		memmove(m->address, m->address + 1, len - 2);
		m->address[len - 2] = '\0';
	}
	if (!netaddr_is_literal(m->address)) {
		yobject_diag(o, DIAG_ERROR, value, "address: \"%s\" is not an IP address",
		             m->address);
		return -EINVAL;
	}
	/* Emissary's listener without an address is 0.0.0.0, and so is tcpmap's: written
	 * out, it is the same listener, not a second one that never receives a connection. */
	if (streq(m->address, "0.0.0.0"))
		m->address = mfree(m->address);
	return 0;
}

static int read_host(FIELD_ARGS) {
	struct mapping *m = ((struct mapping_target *)target)->m;
	int r = get_string(o, def->key, value, &m->host);

	(void)f;
	if (r <= 0)
		return r;
	if (!*m->host) {
		m->host = mfree(m->host);
		return 0;
	}
	return normalise_host(o, "host", value, m->host);
}

/* v2: true, false, or the name of the TLSContext whose certificate is offered upstream.
 * v3alpha1: a TLSContext name only, as Emissary reads it there: a quoted "true" names a
 * context called "true" (the way to originate without one is service: https://...). */
static int read_tls(FIELD_ARGS) {
	struct mapping *m = ((struct mapping_target *)target)->m;
	bool b;

	(void)def, (void)f;
	if (ynode_is_null(value))
		return 0;
	if (value->kind == YNODE_SCALAR && value->plain && yaml_bool(value, &b) == 0) {
		if (o->v3alpha1) {
			yobject_diag(
			        o, DIAG_ERROR, value,
			        "tls: is a TLSContext name in getambassador.io/v3alpha1, not %s; "
			        "to originate TLS without one write service: https://HOST[:PORT]",
			        value->value);
			return -EINVAL;
		}
		m->tls = b ? TLS_ORIGINATE_PLAIN : TLS_ORIGINATE_NONE;
	} else if (value->kind != YNODE_SCALAR) {
		yobject_diag(o, DIAG_ERROR, value,
		             "tls: must be true, false or a TLSContext name, not %s",
		             ynode_describe(value));
		return -EINVAL;
	}
	/* v2 reads the quoted spellings as the booleans, as Emissary's v2 does */
	else if (!o->v3alpha1 && streq(value->value, "true"))
		m->tls = TLS_ORIGINATE_PLAIN;
	else if ((!o->v3alpha1 && streq(value->value, "false")) || value->value_len == 0)
		m->tls = TLS_ORIGINATE_NONE;
	else {
		m->tls = TLS_ORIGINATE_CONTEXT;
		m->tls_context_name = strdup(value->value);
		if (!m->tls_context_name)
			return -ENOMEM;
	}
	return 0;
}

static int read_weight(FIELD_ARGS) {
	struct mapping *m = ((struct mapping_target *)target)->m;
	int64_t v;
	int r = get_int(o, def->key, value, INT64_MIN, INT64_MAX, &v);

	(void)f;
	if (r <= 0)
		return r;
	if (v < 0) {
		yobject_diag(o, DIAG_ERROR, value,
		             "weight: %" PRId64 " is negative; a weight is 0-100", v);
		return -EINVAL;
	}
	if (v > 100) {
		yobject_diag(o, DIAG_ERROR, value, "weight: %" PRId64 " is over 100", v);
		return -EINVAL;
	}
	m->weight = (int)v;
	return 0;
}

static int read_idle_timeout(FIELD_ARGS) {
	struct mapping *m = ((struct mapping_target *)target)->m;
	uint64_t u;
	int r = get_uint_or_digits(o, def->key, value, 0, UINT32_MAX, &u);

	(void)f;
	if (r > 0)
		m->idle_timeout_ms = (uint32_t)u;
	return MIN(r, 0);
}

/* enable_ipv4 and enable_ipv6 fall back on the Module's when absent. */
static int read_enable_ipv4(FIELD_ARGS) {
	struct mapping_target *t = target;
	int r = get_bool(o, def->key, value, &t->m->enable_ipv4);

	(void)f;
	t->x->has_enable_ipv4 = r > 0;
	return MIN(r, 0);
}

static int read_enable_ipv6(FIELD_ARGS) {
	struct mapping_target *t = target;
	int r = get_bool(o, def->key, value, &t->m->enable_ipv6);

	(void)f;
	t->x->has_enable_ipv6 = r > 0;
	return MIN(r, 0);
}

static int read_breakers(FIELD_ARGS) {
	struct mapping *m = ((struct mapping_target *)target)->m;
	int r = get_circuit_breakers(o, def->key, value, &m->circuit_breakers);

	(void)f;
	return MIN(r, 0);
}

static int read_connect_timeout(FIELD_ARGS) {
	struct mapping_target *t = target;
	uint64_t u;
	int r = get_uint_or_digits(o, def->key, value, 1, UINT32_MAX, &u);

	(void)f;
	if (r > 0) {
		t->m->connect_timeout_ms = (uint32_t)u;
		t->x->has_connect_timeout = true;
	}
	return MIN(r, 0);
}

static int read_proxy_protocol(FIELD_ARGS) {
	struct mapping *m = ((struct mapping_target *)target)->m;
	_cleanup_free_ char *pp = NULL;
	int r = get_string(o, def->key, value, &pp);

	(void)f;
	if (r <= 0)
		return r;
	if (streq(pp, "v1"))
		m->proxy_protocol = PROXY_PROTOCOL_V1;
	else if (streq(pp, "v2"))
		m->proxy_protocol = PROXY_PROTOCOL_V2;
	else {
		yobject_diag(o, DIAG_ERROR, value, "proxy_protocol: \"%s\" is not v1 or v2", pp);
		return -EINVAL;
	}
	return 0;
}

/* Read after host and tls, which it depends on. */
static int read_tls_passthrough(FIELD_ARGS) {
	struct mapping *m = ((struct mapping_target *)target)->m;
	int r = get_bool(o, def->key, value, &m->tls_passthrough);

	(void)f;
	if (r <= 0 || !m->tls_passthrough)
		return MIN(r, 0);
	/* `host: ""` and `host: ~` leave no host either (read_host) */
	if (!m->host)
		yobject_diag(o, DIAG_ERROR, value,
		             "tls_passthrough: needs host (passthrough routes on the SNI)");
	if (m->tls != TLS_ORIGINATE_NONE)
		yobject_diag(o, DIAG_ERROR, value,
		             "tls_passthrough: cannot be combined with tls (the bytes are already "
		             "TLS)");
	return 0;
}

static int read_per_connection_process(FIELD_ARGS) {
	struct mapping *m = ((struct mapping_target *)target)->m;
	(void)f;
	return MIN(get_bool(o, def->key, value, &m->per_connection_process), 0);
}

/* Read after per_connection_process: a connection that is already a unit of its own, in a
 * process of its own, has nothing to gain from a second process. */
static int read_per_connection_unit(FIELD_ARGS) {
	struct mapping *m = ((struct mapping_target *)target)->m;
	int r = get_bool(o, def->key, value, &m->per_connection_unit);

	(void)f;
	if (r > 0 && m->per_connection_unit && m->per_connection_process)
		yobject_diag(o, DIAG_ERROR, value,
		             "per_connection_unit: cannot be combined with per_connection_process "
		             "(each connection already has a process of its own, in its own "
		             "tcpmap-inetd@ unit); choose one");
	return MIN(r, 0);
}

/* Table order is the order the fields are read, and so the order of their diags. */
static const struct field_def tcpmapping_fields[] = {
        [MF_PORT] = {"port", NULL, read_port, 0, 0},
        [MF_SERVICE] = {"service", NULL, read_service, 0, 0},
        [MF_ADDRESS] = {"address", NULL, read_address, 0, 0},
        [MF_HOST] = {"host", NULL, read_host, 0, 0},
        [MF_TLS] = {"tls", NULL, read_tls, 0, 0},
        [MF_WEIGHT] = {"weight", NULL, read_weight, 0, 0},
        [MF_IDLE_TIMEOUT] = {"idle_timeout_ms", NULL, read_idle_timeout, 0, 0},
        [MF_ENABLE_IPV4] = {"enable_ipv4", NULL, read_enable_ipv4, 0, 0},
        [MF_ENABLE_IPV6] = {"enable_ipv6", NULL, read_enable_ipv6, 0, 0},
        [MF_BREAKERS] = {"circuit_breakers", NULL, read_breakers, 0, 0},
        [MF_CONNECT_TIMEOUT] = {"connect_timeout_ms", NULL, read_connect_timeout, 0,
                                FIELD_EXTENSION},
        [MF_PROXY_PROTOCOL] = {"proxy_protocol", NULL, read_proxy_protocol, 0, FIELD_EXTENSION},
        [MF_TLS_PASSTHROUGH] = {"tls_passthrough", NULL, read_tls_passthrough, 0, FIELD_EXTENSION},
        [MF_PER_CONNECTION_PROCESS] = {"per_connection_process", NULL, read_per_connection_process,
                                       0, FIELD_EXTENSION},
        [MF_PER_CONNECTION_UNIT] = {"per_connection_unit", NULL, read_per_connection_unit, 0,
                                    FIELD_EXTENSION},
        /* Emissary's, meaningless to a single-host L4 proxy. */
        {"ambassador_id", NULL, NULL, 0, FIELD_NOT_USED},
        {"ambassadorId", NULL, NULL, 0, FIELD_NOT_USED},
        {"cluster_tag", NULL, NULL, 0, FIELD_NOT_USED},
        {"resolver", NULL, NULL, 0, FIELD_NOT_USED},
        {"stats_name", NULL, NULL, 0, FIELD_NOT_USED},
        {"v3StatsName", NULL, NULL, 0, FIELD_NOT_USED},
        {"v2ExplicitTLS", NULL, NULL, 0, FIELD_NOT_USED},
};

static const struct field_table tcpmapping_table = {
        .fields = tcpmapping_fields,
        .n_fields = ELEMENTSOF(tcpmapping_fields),
};

/* A new mapping at the end of s->config->mappings, with its extras slot. The slot says
 * "bad" until the mapping is read in full, so nothing later builds on a half-read one. */
static int mapping_new(struct kinds_state *s, struct yobject *o, struct mapping **ret) {
	struct config *c = s->config;
	_cleanup_free_ struct mapping *m = NULL;
	struct mapping_extra *extras;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	extras = realloc(s->extras, (c->n_mappings + 1) * sizeof(*extras));
	if (!extras)
		return -ENOMEM;
	s->extras = extras;
	m->name = strdup(o->name);
	if (!m->name || model_push(&c->mappings, &c->n_mappings, m) < 0) {
		free(m->name);
		return -ENOMEM;
	}
	m->weight = -1;
	m->index = (unsigned)c->n_mappings - 1;
	s->extras[m->index] = (struct mapping_extra){.bad = true};
	*ret = TAKE_PTR(m);
	return 0;
}

int kind_tcpmapping_read(struct kinds_state *s, struct yobject *o, const struct ynode *root,
                         const struct ynode *name, const struct ynode *spec) {
	struct mapping_extra extra = {};
	struct fields f;
	struct mapping *m;
	int r;

	r = mapping_new(s, o, &m);
	if (r < 0)
		return r;
	m->pos = ynode_pos(o->file, root);
	extra.name_pos = ynode_pos(o->file, name);

	r = fields_parse(o, &tcpmapping_table, spec, &f,
	                 &(struct mapping_target){.m = m, .x = &extra});
	if (r < 0)
		return r;
	for (size_t i = 0; i < _MF_MAX; i++)
		if (f.at[i])
			extra.field_pos[i] = ynode_pos(o->file, f.at[i]);
	/* https:// originates TLS unless `tls` names a context, which then supplies it */
	if (extra.service_https && m->tls == TLS_ORIGINATE_NONE)
		m->tls = TLS_ORIGINATE_PLAIN;
	extra.bad = o->bad;
	s->extras[m->index] = extra;
	return 0;
}
