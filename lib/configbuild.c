/* configbuild.c — see configbuild.h. */
#include "configbuild.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include "netaddr.h"
#include "strindex.h"
#include "weights.h"
#include "route.h"
#include "util.h"

static struct source_pos field_or_mapping_pos(const struct kinds_state *s, const struct mapping *m,
                                              enum mapping_field f) {
	const struct source_pos *p = &s->extras[m->index].field_pos[f];
	return p->line > 0 ? *p : m->pos;
}

_printf_(5, 6) static void mapping_diag(struct kinds_state *s, enum diag_level level,
                                        const struct mapping *m, struct source_pos pos,
                                        const char *fmt, ...) {
	_cleanup_free_ char *body = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&body, fmt, ap);
	va_end(ap);
	if (r < 0) {
		body = NULL; /* undefined after a failure */
		diag_note_lost(s->diags);
		return;
	}
	diag_add(s->diags, level, pos.file, pos.line, pos.column, "mapping \"%s\": %s", m->name,
	         body);
}

static int resolve_mapping(struct kinds_state *s, struct mapping *m) {
	const struct module_config *mod = &s->config->module;
	const struct mapping_extra *x = &s->extras[m->index];
	_cleanup_free_ char *upstream = NULL;

	/* One spelling per address, so that "::1" and "0:0:0:0:0:0:0:1" make one listener, not
	 * a second one that cannot bind. 0.0.0.0 is every address, as no address is: both
	 * would take IPv4 on the port. (An explicit "::" stays: every IPv6 address only.) */
	if (m->address) {
		char canonical[NETADDR_TEXT_MAX];
		if (netaddr_canonical(m->address, canonical, sizeof canonical) == 0) {
			free(m->address);
			m->address = streq(canonical, "0.0.0.0") ? NULL : strdup(canonical);
			if (!m->address && !streq(canonical, "0.0.0.0"))
				return -ENOMEM;
		}
	}
	if (!x->has_enable_ipv4)
		m->enable_ipv4 = mod->enable_ipv4;
	if (!x->has_enable_ipv6)
		m->enable_ipv6 = mod->enable_ipv6;
	if (!m->enable_ipv4 && !m->enable_ipv6)
		mapping_diag(s, DIAG_ERROR, m,
		             field_or_mapping_pos(
		                     s, m, x->has_enable_ipv4 ? MF_ENABLE_IPV4 : MF_ENABLE_IPV6),
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
		m->tls_context = config_find_tls_context(s->config, m->tls_context_name);
		if (!m->tls_context)
			mapping_diag(s, DIAG_ERROR, m, field_or_mapping_pos(s, m, MF_TLS),
			             "tls: no TLSContext named \"%s\"", m->tls_context_name);
	}

	if (m->host && !m->tls_passthrough && !model_tlscontext_for_host(s->config, m->host))
		mapping_diag(s, DIAG_ERROR, m, field_or_mapping_pos(s, m, MF_HOST),
		             "host: no TLSContext lists \"%s\" in its hosts, nor does any Host's "
		             "hostname match it (terminating TLS needs its certificate)",
		             m->host);

	/* Emissary names clusters by service, TLS origination and breaker settings; mappings
	 * that agree on all of them share one upstream cluster, and so one breaker. The
	 * service is normalised first (host lower-cased, the default port written out), so
	 * that "up", "up:80" and "UP:80" are one cluster. */
	upstream = strdup(m->upstream_host);
	if (!upstream)
		return -ENOMEM;
	for (char *p = upstream; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (asprintf(&m->cluster, "%s%s%s:%u|%s|%s|%s%" PRIu32 "|%" PRIu32,
	             strchr(upstream, ':') ? "[" : "", upstream, strchr(upstream, ':') ? "]" : "",
	             m->upstream_port,
	             m->tls == TLS_ORIGINATE_NONE    ? "plain"
	             : m->tls == TLS_ORIGINATE_PLAIN ? "tls"
	                                             : "tls-context",
	             m->tls_context_name ? m->tls_context_name : "-",
	             m->circuit_breakers.refuse_all ? "refuse-" : "",
	             m->circuit_breakers.max_connections,
	             m->circuit_breakers.max_pending_requests) < 0) {
		m->cluster = NULL;
		return -ENOMEM;
	}
	return 0;
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
	if (a->circuit_breakers.refuse_all != b->circuit_breakers.refuse_all ||
	    a->circuit_breakers.max_connections != b->circuit_breakers.max_connections ||
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

/* The arithmetic is weights_normalise's (docs/ARCHITECTURE.md, "Why weights are exact");
 * the loader only says what it means for the user, at the field that caused it. */
static void normalise_weights(struct kinds_state *s, struct mapping_group *g) {
	const struct mapping *last_weighted = NULL;
	unsigned total = 0;
	char where[512];

	for (size_t i = 0; i < g->n_mappings; i++)
		if (g->mappings[i]->weight >= 0)
			last_weighted = g->mappings[i];
	group_describe(g, where, sizeof(where));
	switch (weights_normalise(g, &total)) {
	case WEIGHTS_ALONE:
	case WEIGHTS_AS_WRITTEN:
		return;
	case WEIGHTS_OVER_100:
		mapping_diag(s, DIAG_ERROR, last_weighted,
		             field_or_mapping_pos(s, last_weighted, MF_WEIGHT),
		             "weight: the weights of group (%s) total %u, over 100", where, total);
		return;
	case WEIGHTS_SHARED_REST:
		for (size_t i = 0; i < g->n_mappings; i++) {
			const struct mapping *m = g->mappings[i];
			if (m->weight < 0 && m->effective_weight == 0)
				mapping_diag(
				        s, DIAG_WARNING, m, m->pos,
				        "weight: the other mappings of group (%s) take all 100%%, "
				        "so this one gets no traffic",
				        where);
		}
		return;
	case WEIGHTS_ALL_ZERO:
		mapping_diag(s, DIAG_WARNING, g->mappings[0],
		             field_or_mapping_pos(s, g->mappings[0], MF_WEIGHT),
		             "weight: every mapping of group (%s) has weight 0; it gets no traffic",
		             where);
		return;
	case WEIGHTS_SCALED_UP:
		mapping_diag(s, DIAG_WARNING, last_weighted,
		             field_or_mapping_pos(s, last_weighted, MF_WEIGHT),
		             "weight: the weights of group (%s) total %u, under 100; scaled to 100",
		             where, total);
		return;
	}
}

static int build_groups(struct kinds_state *s) {
	struct config *c = s->config;
	/* group key -> group: finding a mapping's group is one lookup, not a walk of the groups
	 * made so far, which made a 50 000-mapping config take seconds */
	_cleanup_(strindex_done) struct strindex by_key = {};

	for (size_t i = 0; i < c->n_mappings; i++) {
		struct mapping *m = c->mappings[i];
		_cleanup_free_ char *key = NULL;
		struct mapping_group *g = NULL;
		enum mapping_field field;
		const char *what;
		char where[512];

		if (s->extras[i].bad)
			continue;
		key = group_key(m->address, m->port, m->host);
		if (!key) {
			return -ENOMEM;
		}
		g = strindex_get(&by_key, key);
		if (!g) {
			g = calloc(1, sizeof(*g));
			if (!g || model_push(&c->groups, &c->n_groups, g) < 0) {
				free(g);
				return -ENOMEM;
			}
			/* The config owns g now and frees what is set of it. */
			g->key = TAKE_PTR(key);
			if (strindex_put(&by_key, g->key, g) < 0)
				return -ENOMEM;
			g->port = m->port;
			g->host_is_wildcard = m->host && m->host[0] == '*';
			if ((m->address && !(g->address = strdup(m->address))) ||
			    (m->host && !(g->host = strdup(m->host))))
				return -ENOMEM;
		}
		group_describe(g, where, sizeof(where));
		if (g->n_mappings > 0 && (what = group_disagreement(g->mappings[0], m, &field))) {
			const struct mapping *first = g->mappings[0];
			mapping_diag(
			        s, DIAG_ERROR, m, field_or_mapping_pos(s, m, field),
			        "%s: differs from mapping \"%s\" (%s:%u:%u) in the same group "
			        "(%s); mappings of a group must agree on address, host, tls, "
			        "idle_timeout_ms, enable_ipv4/enable_ipv6 and circuit_breakers",
			        what, first->name, first->pos.file, first->pos.line,
			        first->pos.column, where);
			continue;
		}
		if (g->n_mappings >= ROUTE_MAX_GROUP_MAPPINGS) {
			mapping_diag(
			        s, DIAG_ERROR, m, m->pos,
			        "group (%s) already has %d mappings, the most one group may hold",
			        where, ROUTE_MAX_GROUP_MAPPINGS);
			continue;
		}
		if (model_push(&g->mappings, &g->n_mappings, m) < 0) {
			return -ENOMEM;
		}
		m->group = g;
	}
	for (size_t k = 0; k < c->n_groups; k++)
		normalise_weights(s, c->groups[k]);
	return 0;
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

/* No address is every address, IPv4 and IPv6: [::] without IPV6_V6ONLY, as systemd binds
 * ListenStream=PORT (lib/server.c falls back to 0.0.0.0 where IPv6 is off). */
static int listener_fill_sockaddr(struct listener *l) {
	union sockaddr_ip a = {.in6 = {.sin6_family = AF_INET6,
	                               .sin6_port = htons(l->port),
	                               .sin6_addr = IN6ADDR_ANY_INIT}};
	socklen_t len = sizeof(a.in6);

	memset(&l->sockaddr, 0, sizeof(l->sockaddr));
	if (l->address && netaddr_parse_literal(l->address, l->port, NULL, &a, &len) < 0)
		return -EINVAL;
	memcpy(&l->sockaddr, &a, len);
	l->sockaddr_len = len;
	return 0;
}

static bool listener_is_ipv6(const struct listener *l) {
	return l->address && strchr(l->address, ':');
}

/* Can both sockets bind at once? Every address (IPv4 and IPv6) takes the whole port, and
 * "::" every IPv6 address of it; the kernel refuses any other address of the port beside
 * them (EADDRINUSE), under systemd as when tcpmapd binds. */
static bool listeners_collide(const struct listener *a, const struct listener *b) {
	if (a->port != b->port)
		return false;
	if (!a->address || !b->address)
		return true;
	return (streq(a->address, "::") && listener_is_ipv6(b)) ||
	       (streq(b->address, "::") && listener_is_ipv6(a));
}

static void refuse_colliding_listeners(struct kinds_state *s) {
	struct config *c = s->config;

	for (size_t i = 0; i < c->n_listeners; i++)
		for (size_t j = 0; j < i; j++) {
			const struct listener *a = c->listeners[j], *b = c->listeners[i];
			if (!listeners_collide(a, b))
				continue;
			const struct mapping *first = a->groups[0]->mappings[0],
			                     *second = b->groups[0]->mappings[0];
			struct source_pos at = field_or_mapping_pos(s, first, MF_ADDRESS);
			mapping_diag(s, DIAG_ERROR, second,
			             field_or_mapping_pos(s, second, MF_ADDRESS),
			             "address: port %u on %s cannot be bound beside port %u on %s "
			             "of mapping \"%s\" (%s:%u:%u); give both the same address, "
			             "or each its own",
			             b->port, b->address ?: "every address", a->port,
			             a->address ?: "every address", first->name, at.file, at.line,
			             at.column);
			break;
		}
}

/* Settings that belong to the socket rather than to a route: one accept decides them before
 * the SNI picks a group, so every mapping on the listener must say the same. The first
 * mapping sets the listener's value; one that differs is an error naming both. */
static const struct listener_setting {
	enum mapping_field field;
	const char *name;
	size_t in_mapping, in_listener; /* offsets of the bools */
} listener_settings[] = {
        {MF_PER_CONNECTION_PROCESS, "per_connection_process",
         offsetof(struct mapping, per_connection_process),
         offsetof(struct listener, per_connection_process)},
        {MF_PER_CONNECTION_UNIT, "per_connection_unit",
         offsetof(struct mapping, per_connection_unit),
         offsetof(struct listener, per_connection_unit)},
};

static bool mapping_setting(const struct mapping *m, const struct listener_setting *set) {
	return *(const bool *)((const char *)m + set->in_mapping);
}

static void check_listener_settings(struct kinds_state *s, struct listener *l) {
	const struct mapping *first = NULL;

	for (size_t k = 0; k < l->n_groups; k++)
		for (size_t i = 0; i < l->groups[k]->n_mappings; i++) {
			const struct mapping *m = l->groups[k]->mappings[i];
			if (!first) {
				first = m;
				for (size_t j = 0; j < ELEMENTSOF(listener_settings); j++)
					*(bool *)((char *)l + listener_settings[j].in_listener) =
					        mapping_setting(m, &listener_settings[j]);
				continue;
			}
			for (size_t j = 0; j < ELEMENTSOF(listener_settings); j++) {
				const struct listener_setting *set = &listener_settings[j];
				if (mapping_setting(m, set) == mapping_setting(first, set))
					continue;
				mapping_diag(
				        s, DIAG_ERROR, m, field_or_mapping_pos(s, m, set->field),
				        "%s: differs from mapping \"%s\" (%s:%u:%u) on the same "
				        "listener (address %s, port %u); mappings that share a "
				        "listener must agree on it",
				        set->name, first->name, first->pos.file, first->pos.line,
				        first->pos.column, l->address ?: "*", l->port);
			}
		}
}

static int build_listeners(struct kinds_state *s) {
	struct config *c = s->config;
	/* "address|port" -> listener, for the same reason as build_groups' index; the keys live
	 * as long as the index */
	_cleanup_(strindex_done) struct strindex by_name = {};
	_cleanup_(strv_freep) char **keys = NULL;
	size_t n_keys = 0;

	for (size_t k = 0; k < c->n_groups; k++) {
		struct mapping_group *g = c->groups[k];
		struct listener *l = NULL;
		char *name = NULL;

		if (asprintf(&name, "%s|%u", g->address ?: "", g->port) < 0)
			return -ENOMEM;
		l = strindex_get(&by_name, name);
		if (l)
			free(name);
		else if (strv_push(&keys, &n_keys, name) < 0 ||
		         strindex_put(&by_name, name, NULL) < 0)
			return -ENOMEM;
		if (!l) {
			l = calloc(1, sizeof(*l));
			if (!l || model_push(&c->listeners, &c->n_listeners, l) < 0) {
				free(l);
				return -ENOMEM;
			}
			l->port = g->port;
			if (g->address && !(l->address = strdup(g->address))) {
				return -ENOMEM;
			}
			(void)listener_fill_sockaddr(l);
			if (strindex_set(&by_name, keys[n_keys - 1], l) < 0)
				return -ENOMEM;
		}
		if (model_push(&l->groups, &l->n_groups, g) < 0) {
			return -ENOMEM;
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
		check_listener_settings(s, l);
	}
	refuse_colliding_listeners(s);
	return model_index_listeners(c);
}

static int copy_string(char **dst, const char *src) {
	if (*dst || !src)
		return 0;
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

static int copy_strv(char ***dst, char *const *src) {
	char **v = NULL;
	size_t n = 0;

	if (*dst || !src)
		return 0;
	for (; *src; src++)
		if (strv_push(&v, &n, strdup(*src)) < 0) {
			strv_free(v);
			return -ENOMEM;
		}
	*dst = v;
	return 0;
}

/* A Host's tlsContext lends it every setting the Host does not make itself (its hostname
 * stays the Host's own), as Emissary merges them. */
static int resolve_host(struct kinds_state *s, struct tls_context *h) {
	const struct tls_context *t = config_find_tls_context(s->config, h->context_ref);
	int r = 0;

	if (!t) {
		diag_add(s->diags, DIAG_ERROR, h->pos.file, h->pos.line, h->pos.column,
		         "host \"%s\": tlsContext: no TLSContext named \"%s\"", h->name,
		         h->context_ref);
		return 0;
	}
	if (!h->secret && !h->cert_chain_file) {
		r = r ?: copy_string(&h->secret, t->secret);
		h->field_pos[TF_SECRET] = t->field_pos[TF_SECRET];
		r = r ?: copy_string(&h->cert_chain_file, t->cert_chain_file);
		r = r ?: copy_string(&h->private_key_file, t->private_key_file);
	}
	if (!h->ca_secret && !h->cacert_chain_file) {
		r = r ?: copy_string(&h->ca_secret, t->ca_secret);
		r = r ?: copy_string(&h->cacert_chain_file, t->cacert_chain_file);
		h->cert_required = h->cert_required || t->cert_required;
	}
	r = r ?: copy_string(&h->crl_secret, t->crl_secret);
	r = r ?: copy_string(&h->min_tls_version, t->min_tls_version);
	r = r ?: copy_string(&h->max_tls_version, t->max_tls_version);
	r = r ?: copy_strv(&h->cipher_suites, t->cipher_suites);
	r = r ?: copy_strv(&h->ecdh_curves, t->ecdh_curves);
	r = r ?: copy_strv(&h->alpn_protocols, t->alpn_protocols);
	return r;
}

int config_build(struct kinds_state *s) {
	struct config *c = s->config;
	int r;

	for (size_t i = 0; i < c->n_tls_contexts; i++)
		if (c->tls_contexts[i]->from_host && c->tls_contexts[i]->context_ref) {
			r = resolve_host(s, c->tls_contexts[i]);
			if (r < 0)
				return r;
		}

	for (size_t i = 0; i < c->n_mappings; i++)
		if (!s->extras[i].bad) {
			r = resolve_mapping(s, c->mappings[i]);
			if (r < 0)
				return r;
		}
	r = build_groups(s);
	if (r < 0)
		return r;
	return build_listeners(s);
}
