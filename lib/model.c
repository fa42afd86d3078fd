/* model.c — lifetime of the routing model, lookups on it, and its human-readable dumps.
 *
 * A loaded config is immutable and shared by every worker; the last config_unref() frees
 * it, so a reload only swaps a pointer. Nothing here may modify a model that has been
 * handed out, or log: callers decide what to print and where. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdatomic.h>

#include "config.h"
#include "model.h"
#include "netaddr.h"
#include "route.h"
#include "weights.h"
#include "util.h"

static void tls_context_free(struct tls_context *t) {
	if (!t)
		return;
	/* t->runtime belongs to lib/tls and was released through config->tls_runtime_free. */
	free(t->name);
	strv_free(t->hosts);
	free(t->secret);
	free(t->cert_chain_file);
	free(t->private_key_file);
	free(t->ca_secret);
	free(t->cacert_chain_file);
	free(t->min_tls_version);
	free(t->max_tls_version);
	strv_free(t->cipher_suites);
	strv_free(t->ecdh_curves);
	strv_free(t->alpn_protocols);
	free(t->sni);
	free(t->crl_secret);
	free(t->context_ref);
	free(t);
}

static void mapping_free(struct mapping *m) {
	if (!m)
		return;
	free(m->name);
	free(m->address);
	free(m->service);
	free(m->upstream_host);
	free(m->host);
	free(m->tls_context_name);
	free(m->cluster);
	free(m);
}

static void config_free(struct config *c) {
	/* lib/tls hangs OpenSSL state off the model; it goes first, while the contexts it
	 * points into still exist. */
	if (c->tls_runtime_free)
		c->tls_runtime_free(c);
	strindex_done(&c->listeners_by_port);
	for (size_t i = 0; i < c->n_listeners; i++) {
		free(c->listeners[i]->address);
		free(c->listeners[i]->groups);
		free(c->listeners[i]);
	}
	free(c->listeners);
	for (size_t i = 0; i < c->n_groups; i++) {
		free(c->groups[i]->key);
		free(c->groups[i]->address);
		free(c->groups[i]->host);
		free(c->groups[i]->mappings);
		free(c->groups[i]);
	}
	free(c->groups);
	for (size_t i = 0; i < c->n_mappings; i++)
		mapping_free(c->mappings[i]);
	free(c->mappings);
	for (size_t i = 0; i < c->n_tls_contexts; i++)
		tls_context_free(c->tls_contexts[i]);
	free(c->tls_contexts);
	for (size_t i = 0; i < c->n_files; i++)
		free(c->files[i]);
	free(c->files);
	free(c->module.ambassador_id);
	free(c);
}

struct config *config_ref(struct config *c) {
	if (c)
		__atomic_add_fetch(&c->refcount, 1, __ATOMIC_RELAXED);
	return c;
}

struct config *config_unref(struct config *c) {
	/* acq_rel so every worker's reads happen before the free in whichever thread is last. */
	if (c && __atomic_sub_fetch(&c->refcount, 1, __ATOMIC_ACQ_REL) == 0)
		config_free(c);
	return NULL;
}

/* An address as family + bytes, with IPv4-mapped IPv6 folded to IPv4: a dual-stack socket
 * reports ::ffff:127.0.0.1 for a connection that is, to the user, on 127.0.0.1. */
struct ip_addr {
	int family;
	unsigned char bytes[16];
	uint16_t port;
};

static int ip_addr_from_sockaddr(const struct sockaddr *sa, socklen_t len, struct ip_addr *ret) {
	static const unsigned char v4_mapped_prefix[12] = {0, 0, 0, 0, 0,    0,
	                                                   0, 0, 0, 0, 0xff, 0xff};

	*ret = (struct ip_addr){};
	if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		ret->family = AF_INET;
		memcpy(ret->bytes, &sin->sin_addr, 4);
		ret->port = ntohs(sin->sin_port);
		return 0;
	}
	if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		ret->port = ntohs(sin6->sin6_port);
		if (memcmp(&sin6->sin6_addr, v4_mapped_prefix, 12) == 0) {
			ret->family = AF_INET;
			memcpy(ret->bytes, (const unsigned char *)&sin6->sin6_addr + 12, 4);
		} else {
			ret->family = AF_INET6;
			memcpy(ret->bytes, &sin6->sin6_addr, 16);
		}
		return 0;
	}
	return -EAFNOSUPPORT;
}

/* lib/netaddr parses the literal; the IPv4-mapped folding is ip_addr_from_sockaddr's. */
static int ip_addr_from_string(const char *s, struct ip_addr *ret) {
	union sockaddr_ip a;
	socklen_t len;

	*ret = (struct ip_addr){};
	if (netaddr_parse_literal(s, 0, NULL, &a, &len) < 0)
		return -EINVAL;
	return ip_addr_from_sockaddr(&a.sa, len, ret);
}

static bool ip_addr_is_any(const struct ip_addr *a) {
	size_t n = a->family == AF_INET ? 4 : 16;
	for (size_t i = 0; i < n; i++)
		if (a->bytes[i])
			return false;
	return true;
}

static bool ip_addr_equal(const struct ip_addr *a, const struct ip_addr *b) {
	return a->family == b->family &&
	       memcmp(a->bytes, b->bytes, a->family == AF_INET ? 4 : 16) == 0;
}

/* "every address": no address, or 0.0.0.0 / :: written out. */
static bool listener_is_wildcard(const struct listener *l) {
	struct ip_addr a;
	return !l->address || (ip_addr_from_string(l->address, &a) == 0 && ip_addr_is_any(&a));
}

/* The index key of a port: its decimal digits. Written by hand because it runs on every
 * accept, where snprintf's generality costs more than the lookup it serves. */
static void port_key(char buf[6], uint16_t port) {
	char digits[6];
	size_t n = 0;
	do {
		digits[n++] = (char)('0' + port % 10);
		port /= 10;
	} while (port);
	for (size_t i = 0; i < n; i++)
		buf[i] = digits[n - 1 - i];
	buf[n] = '\0';
}

int model_index_listeners(struct config *c) {
	for (size_t i = 0; i < c->n_listeners; i++) {
		struct listener *l = c->listeners[i];
		port_key(l->port_key, l->port);
		l->wildcard = listener_is_wildcard(l);
		/* a port has a handful of listeners at most: a chain, walked whole */
		l->next_on_port = strindex_get(&c->listeners_by_port, l->port_key);
		int r = strindex_set(&c->listeners_by_port, l->port_key, l);
		if (r < 0)
			return r;
	}
	return 0;
}

static struct listener *find_listener(const struct config *c, const struct ip_addr *want,
                                      uint16_t port) {
	struct listener *wildcard = NULL;
	char key[6];

	if (!c)
		return NULL;
	port_key(key, port);
	for (struct listener *l = strindex_get(&c->listeners_by_port, key); l;
	     l = l->next_on_port) {
		struct ip_addr a;

		if (l->wildcard) {
			if (!wildcard || !l->address)
				wildcard = l;
			continue;
		}
		if (want &&
		    ip_addr_from_sockaddr((const struct sockaddr *)&l->sockaddr, l->sockaddr_len,
		                          &a) == 0 &&
		    ip_addr_equal(&a, want))
			return l;
	}
	return wildcard;
}

struct listener *config_find_listener(const struct config *c, const struct sockaddr *sa,
                                      socklen_t len) {
	struct ip_addr a;

	if (!sa || ip_addr_from_sockaddr(sa, len, &a) < 0)
		return NULL;
	return find_listener(c, &a, a.port);
}

struct listener *config_find_listener_by_name(const struct config *c, const char *address,
                                              uint16_t port) {
	struct ip_addr a;

	if (!c)
		return NULL;
	if (address) {
		const char *s = address;
		_cleanup_free_ char *unbracketed = NULL;
		size_t len = strlen(address);

		if (len > 2 && address[0] == '[' && address[len - 1] == ']') {
			unbracketed = strndup(address + 1, len - 2);
			if (!unbracketed)
				return NULL;
			s = unbracketed;
		}
		if (ip_addr_from_string(s, &a) < 0)
			return NULL;
		return find_listener(c, &a, port);
	}
	/* No address: the wildcard listener only, as tcpmapctl(1) says. A listener bound to
	 * one address never receives a connection to another, so answering for it would
	 * describe a route that does not exist. */
	return find_listener(c, NULL, port);
}

struct tls_context *config_find_tls_context(const struct config *c, const char *name) {
	if (!c || !name)
		return NULL;
	for (size_t i = 0; i < c->n_tls_contexts; i++)
		if (!c->tls_contexts[i]->from_host && streq(c->tls_contexts[i]->name, name))
			return c->tls_contexts[i];
	return NULL;
}

/* 0 when `pattern` does not cover `host`; otherwise higher for a more specific pattern. */
static int host_pattern_rank(const char *pattern, const char *host) {
	if (streq(pattern, "*"))
		return 1;
	if (!route_host_matches(pattern, host))
		return 0;
	/* A wildcard covers any depth below it (lib/route.c), a wildcard host included:
	 * "*.example.com" covers "*.b.example.com". The longer the more specific. */
	if (pattern[0] == '*')
		return (2 << 16) + (int)MIN(strlen(pattern), 65535u);
	return 3 << 16; /* the same name */
}

static int tlscontext_rank(const struct tls_context *t, const char *host) {
	int best = 0;

	for (size_t i = 0; i < t->n_hosts; i++)
		best = MAX(best, host_pattern_rank(t->hosts[i], host));
	return best;
}

bool model_tlscontext_covers(const struct tls_context *t, const char *host) {
	return t && host && tlscontext_rank(t, host) > 0;
}

struct tls_context *model_tlscontext_for_host(const struct config *c, const char *host) {
	struct tls_context *best = NULL;
	int best_rank = 0;

	if (!c || !host)
		return NULL;
	/* Hosts first, then TLSContexts: Emissary's order since Host arrived (2.0). */
	for (int pass = 0; pass < 2 && !best; pass++)
		for (size_t i = 0; i < c->n_tls_contexts; i++) {
			int rank;

			if (c->tls_contexts[i]->from_host != (pass == 0))
				continue;
			rank = tlscontext_rank(c->tls_contexts[i], host);
			if (rank > best_rank) {
				best_rank = rank;
				best = c->tls_contexts[i];
			}
		}
	return best;
}

int model_push(void *arrayp, size_t *n, void *item) {
	void ***array = arrayp;
	void **a = realloc(*array, (*n + 1) * sizeof(void *));

	if (!a)
		return -ENOMEM;
	a[(*n)++] = item;
	*array = a;
	return 0;
}

/* ---- dumps ---------------------------------------------------------------------------- */

static const char *tls_mode_string(const struct mapping *m) {
	if (m->tls_passthrough)
		return "passthrough (SNI routed, not terminated)";
	if (m->host && m->tls == TLS_ORIGINATE_NONE)
		return "terminate";
	if (m->host)
		return "terminate + originate";
	if (m->tls != TLS_ORIGINATE_NONE)
		return "originate";
	return "none (bytes relayed as they are)";
}

static void print_breakers(FILE *out, const struct circuit_breakers *cb) {
	if (!cb->set || (cb->max_connections == 0 && cb->max_pending_requests == 0)) {
		fputs("none\n", out);
		return;
	}
	fprintf(out, "max_connections %s", cb->max_connections ? "" : "unlimited");
	if (cb->max_connections)
		fprintf(out, "%" PRIu32, cb->max_connections);
	fprintf(out, ", max_pending_requests %s", cb->max_pending_requests ? "" : "unlimited");
	if (cb->max_pending_requests)
		fprintf(out, "%" PRIu32, cb->max_pending_requests);
	fputc('\n', out);
}

static void print_upstream(FILE *out, const struct mapping *m) {
	if (strchr(m->upstream_host, ':'))
		fprintf(out, "[%s]:%u", m->upstream_host, m->upstream_port);
	else
		fprintf(out, "%s:%u", m->upstream_host, m->upstream_port);
}

/* Mirrors config.c's service syntax: "[v6]:port", "host:port"; a bare IPv6 has no port. */
static bool service_has_port(const char *service) {
	const char *colon;

	if (service[0] == '[')
		return strstr(service, "]:") != NULL;
	colon = strchr(service, ':');
	return colon && !strchr(colon + 1, ':');
}

static void print_mapping(FILE *out, const struct mapping *m, const char *indent) {
	fprintf(out, "%smapping \"%s\"  weight %u%%", indent, m->name, m->effective_weight);
	if (m->weight < 0)
		fputs(" (unweighted)", out);
	else if ((unsigned)m->weight != m->effective_weight)
		fprintf(out, " (written %d)", m->weight);
	fprintf(out, "  [%s:%u]\n", m->pos.file, m->pos.line);
	fprintf(out, "%s  service          %s\n", indent, m->service);
	fprintf(out, "%s  upstream         ", indent);
	print_upstream(out, m);
	fputs(service_has_port(m->service) ? "\n" : " (default port)\n", out);
	fprintf(out, "%s  ip families      %s\n", indent,
	        m->enable_ipv4 && m->enable_ipv6 ? "ipv6, then ipv4"
	        : m->enable_ipv6                 ? "ipv6 only"
	                                         : "ipv4 only");
	fprintf(out, "%s  tls              %s", indent, tls_mode_string(m));
	if (m->tls == TLS_ORIGINATE_PLAIN)
		fputs(", upstream without client certificate", out);
	else if (m->tls == TLS_ORIGINATE_CONTEXT)
		fprintf(out, ", upstream with TLSContext \"%s\"", m->tls_context_name);
	fputc('\n', out);
	if (m->idle_timeout_ms)
		fprintf(out, "%s  idle timeout     %" PRIu32 " ms\n", indent, m->idle_timeout_ms);
	else
		fprintf(out, "%s  idle timeout     none\n", indent);
	fprintf(out, "%s  connect timeout  %" PRIu32 " ms\n", indent, m->connect_timeout_ms);
	fprintf(out, "%s  circuit breakers ", indent);
	print_breakers(out, &m->circuit_breakers);
	if (m->proxy_protocol != PROXY_PROTOCOL_NONE)
		fprintf(out, "%s  proxy protocol   %s\n", indent,
		        m->proxy_protocol == PROXY_PROTOCOL_V1 ? "v1" : "v2");
	fprintf(out, "%s  cluster          %s\n", indent, m->cluster);
}

static void print_listener_head(FILE *out, const struct listener *l) {
	if (l->address && strchr(l->address, ':'))
		fprintf(out, "listener [%s]:%u", l->address, l->port);
	else
		fprintf(out, "listener %s:%u", l->address ?: "*", l->port);
	fprintf(out, "%s\n", l->needs_sni ? "  (peeks SNI)" : "");
}

void config_print_show(const struct config *c, FILE *out) {
	const struct module_config *mod;

	if (!c || !out)
		return;
	mod = &c->module;
	fprintf(out,
	        "config generation %" PRIu64 ": %zu listener(s), %zu group(s), %zu mapping(s), "
	        "%zu TLSContext(s)\n",
	        c->generation, c->n_listeners, c->n_groups, c->n_mappings, c->n_tls_contexts);
	fprintf(out,
	        "module: ambassador_id %s, ipv4 %s, ipv6 %s, preread timeout %" PRIu32
	        " ms, connect timeout %" PRIu32 " ms, drain timeout %" PRIu32 " ms\n",
	        mod->ambassador_id ?: "default", mod->enable_ipv4 ? "on" : "off",
	        mod->enable_ipv6 ? "on" : "off", mod->preread_timeout_ms, mod->connect_timeout_ms,
	        mod->drain_timeout_ms);
	for (size_t i = 0; i < c->n_listeners; i++) {
		const struct listener *l = c->listeners[i];
		fputc('\n', out);
		print_listener_head(out, l);
		for (size_t k = 0; k < l->n_groups; k++) {
			const struct mapping_group *g = l->groups[k];
			fprintf(out, "  group host %s%s\n", g->host ?: "(any)",
			        g->host ? (g->host_is_wildcard ? "  (wildcard)" : "  (exact)")
			                : "  (catch-all)");
			for (size_t j = 0; j < g->n_mappings; j++)
				print_mapping(out, g->mappings[j], "    ");
		}
	}
	for (size_t i = 0; i < c->n_tls_contexts; i++) {
		const struct tls_context *t = c->tls_contexts[i];
		if (i == 0)
			fputc('\n', out);
		fprintf(out, "tlscontext \"%s\"  hosts", t->name);
		if (t->n_hosts == 0)
			fputs(" (none)", out);
		for (size_t h = 0; h < t->n_hosts; h++)
			fprintf(out, " %s", t->hosts[h]);
		if (t->secret)
			fprintf(out, "  secret %s", t->secret);
		if (t->ca_secret || t->cacert_chain_file)
			fputs("  (verifies peers)", out);
		fputc('\n', out);
	}
}

int config_print_route(const struct config *c, const char *address, uint16_t port, const char *sni,
                       FILE *out) {
	const struct listener *l = config_find_listener_by_name(c, address, port);
	const struct mapping_group *g;
	int32_t current[ROUTE_MAX_GROUP_MAPPINGS] = {};
	int first;

	if (!l) {
		fprintf(out, "no listener on %s port %u\n", address ?: "any address", port);
		return -ENOENT;
	}
	print_listener_head(out, l);
	if (!l->needs_sni)
		fputs("no mapping on this listener has a host, so SNI is not looked at\n", out);
	g = route_select_group(l, l->needs_sni ? sni : NULL);
	if (!g) {
		if (sni)
			fprintf(out,
			        "no match: SNI \"%s\" matches no host and the listener has no "
			        "host-less mapping, so the handshake fails\n",
			        sni);
		else
			fputs("no match: no SNI (or not TLS) and the listener has no host-less "
			      "mapping, "
			      "so the connection is closed\n",
			      out);
		return -ESRCH;
	}
	if (!g->host)
		fprintf(out, "group host (any): catch-all, because %s\n",
		        !l->needs_sni ? "it is the only group"
		        : sni         ? "no host matched the SNI"
		                      : "the client sent no SNI");
	else if (g->host_is_wildcard)
		fprintf(out,
		        "group host %s: wildcard match of SNI \"%s\" (no exact host matched)\n",
		        g->host, sni);
	else
		fprintf(out, "group host %s: exact match of SNI \"%s\"\n", g->host, sni);

	for (size_t j = 0; j < g->n_mappings; j++)
		print_mapping(out, g->mappings[j], "  ");
	first = weights_pick(g, current, NULL);
	if (first >= 0)
		fprintf(out,
		        "first connection goes to mapping \"%s\" (then by weight, smooth "
		        "round-robin)\n",
		        g->mappings[first]->name);
	else
		fputs("every mapping of this group has weight 0: connections are refused\n", out);
	return 0;
}
