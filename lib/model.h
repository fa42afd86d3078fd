/* model.h — the immutable, reference-counted routing model that config.c builds from YAML.
 *
 * Field names follow the YAML. Once config_load() returns a model nothing mutates it, so
 * workers read it without locks and a reload swaps one pointer (config_ref/config_unref). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "strindex.h"

struct source_pos {
	const char *file; /* owned by the config (config->files) */
	unsigned line;    /* 1-based; 0 when unknown */
	unsigned column;  /* 1-based */
};

/* Ambassador's circuit_breakers, priority "default" only (TCP has no other use for it). */
struct circuit_breakers {
	bool set;                      /* present in the mapping or the Module */
	uint32_t max_connections;      /* 0 = no limit */
	uint32_t max_pending_requests; /* 0 = no limit */
	/* `max_connections: 0` written: Envoy refuses every connection. The breaker table
	 * must treat it as a limit of zero (lib/breaker.c), not as "no limit". */
	bool refuse_all;
};

enum tls_origination {
	TLS_ORIGINATE_NONE,    /* `tls` absent or false */
	TLS_ORIGINATE_PLAIN,   /* `tls: true`: no client certificate */
	TLS_ORIGINATE_CONTEXT, /* `tls: NAME`: that TLSContext's certificate is offered */
};

enum proxy_protocol {
	PROXY_PROTOCOL_NONE,
	PROXY_PROTOCOL_V1,
	PROXY_PROTOCOL_V2,
};

/* The TLSContext fields that lib/tls points its diags at, in the order of the field table
 * (lib/kind-tlscontext.c). */
enum tls_field {
	TF_HOSTS,
	TF_SECRET,
	TF_CA_SECRET,
	TF_CERT_CHAIN_FILE,
	TF_PRIVATE_KEY_FILE,
	TF_CACERT_CHAIN_FILE,
	TF_CERT_REQUIRED,
	TF_MIN_TLS_VERSION,
	TF_MAX_TLS_VERSION,
	TF_CIPHER_SUITES,
	TF_ECDH_CURVES,
	TF_ALPN_PROTOCOLS,
	TF_CRL_SECRET,
	_TF_MAX,
};

struct tls_context {
	char *name;
	struct source_pos pos;
	struct source_pos field_pos[_TF_MAX]; /* line 0 where the field is absent */
	char **hosts;                         /* NULL-terminated; exact names or "*.example.com" */
	size_t n_hosts;
	char *secret;
	char *cert_chain_file;
	char *private_key_file;
	char *ca_secret;
	char *cacert_chain_file;
	bool cert_required;
	char *min_tls_version; /* "v1.2", "v1.3" as in Ambassador; NULL = default */
	char *max_tls_version;
	char **cipher_suites; /* NULL-terminated or NULL */
	char **ecdh_curves;
	char **alpn_protocols; /* Ambassador gives a comma-separated string; split here */
	char *sni;
	char *crl_secret; /* revoked client certificates, checked with cert_required */
	/* A Host (lib/kind-host.c) is kept as a context of its own: `hosts` holds its hostname
	 * glob; `context_ref` the TLSContext it takes its settings from (lib/configbuild.c).
	 * Hosts are never found by name and are asked first (model_tlscontext_for_host). */
	bool from_host;
	char *context_ref;
	const char *label; /* "tlscontext" or "host", in diags */
	void *runtime;     /* lib/tls attaches its SSL_CTX state here; not owned by config.c */
};

struct mapping {
	char *name;
	struct source_pos pos; /* of the document's `metadata` / start */
	unsigned index;        /* position in config->mappings */

	char *address; /* NULL = every address */
	uint16_t port;
	char *service;          /* as written */
	char *upstream_host;    /* host part of service; IPv6 literals without brackets */
	uint16_t upstream_port; /* from service, else 80, or 443 when tls originates */
	char *host;             /* SNI host; NULL = none. Lower-cased. */
	enum tls_origination tls;
	char *tls_context_name; /* with TLS_ORIGINATE_CONTEXT */
	struct tls_context *tls_context;
	int weight;                /* as written; -1 = absent */
	unsigned effective_weight; /* normalised percentage of the group, 0..100 */
	uint32_t idle_timeout_ms;  /* 0 = no timeout */
	bool enable_ipv4;
	bool enable_ipv6;
	struct circuit_breakers circuit_breakers;
	uint32_t connect_timeout_ms;
	enum proxy_protocol proxy_protocol;
	bool tls_passthrough;
	bool per_connection_process; /* relay in a process of its own (a listener setting) */
	bool per_connection_unit;    /* tcpmap-inetd@ serves the listener (a listener setting) */
	char *cluster; /* key of the upstream cluster: service + tls + breakers, as Emissary */
	struct mapping_group *group;
	uint32_t breaker_entry; /* set by the server once, before the model is published */
};

/* Mappings that share (address, port, host); traffic is split among them by weight. */
struct mapping_group {
	char *key; /* "address|port|host", stable across reloads; names WRR state */
	char *address;
	uint16_t port;
	char *host; /* NULL = catch-all group of its listener */
	bool host_is_wildcard;
	struct mapping **mappings;
	size_t n_mappings;
	struct listener *listener;
	/* The TLSContext whose hosts cover `host` (terminating groups); set by lib/tls. */
	struct tls_context *termination_context;
};

/* One (address, port) to listen on. */
struct listener {
	char *address; /* NULL = every address */
	uint16_t port;
	struct sockaddr_storage sockaddr; /* wildcard 0.0.0.0 for NULL address */
	socklen_t sockaddr_len;
	struct mapping_group **groups; /* exact hosts first, then wildcards, then host-less */
	size_t n_groups;
	struct mapping_group *catch_all; /* host-less group, or NULL */
	bool needs_sni;                  /* some group has a host */
	/* every mapping says per_connection_process: each connection, once admitted and
	 * connected, is relayed by a process forked for it alone */
	bool per_connection_process;
	/* every mapping says per_connection_unit: the listener's socket unit is
	 * tcpmap-inetd@.socket (Accept=yes), so systemd accepts and starts one tcpmapd, in a
	 * unit of its own, per connection; tcpmap@.socket is the one otherwise (lib/unitgen.c) */
	bool per_connection_unit;
	/* the lookup by port (model_index_listeners): its key, and the other listeners on the
	 * same port, addresses first and the wildcard last */
	char port_key[6];
	bool wildcard;
	struct listener *next_on_port;
	/* Set by tcpmapd before lib/tls loads the model: no socket of this process serves
	 * this listener (another socket unit's instance does), so its TLSContexts' secrets,
	 * which only that instance may be given (LoadCredential=), are not this process's to
	 * load. Never set by tcpmapctl: `check` loads every secret. */
	bool served_elsewhere;
};
/* Does this process serve the listener (see served_elsewhere)? */
static inline bool listener_served_here(const struct listener *l) {
	return !l || !l->served_elsewhere;
}

struct module_config {
	bool enable_ipv4;                         /* default true */
	bool enable_ipv6;                         /* default false */
	struct circuit_breakers circuit_breakers; /* default for mappings without their own */
	uint32_t preread_timeout_ms;              /* default 5000 */
	uint32_t connect_timeout_ms;              /* default 3000, as Emissary */
	/* How long a stop (or the old image after a re-exec) lets connections that cannot be
	 * handed over finish. Unset, a stop closes them at once and a re-exec drains 30000 ms:
	 * a stop's drain holds every new client in the socket's backlog, a re-exec's does not. */
	uint32_t drain_timeout_ms;         /* default 30000 */
	bool drain_timeout_configured;     /* set in the config, so a stop drains too */
	uint32_t silent_client_timeout_ms; /* ours; 0: the default, 1000 */
	char *ambassador_id;               /* ours; default "default" */
};

struct ticket_keys; /* ticketkeys.h */

struct config {
	int refcount; /* atomic */
	uint64_t generation;
	char **files; /* every file read, for source_pos.file */
	size_t n_files;
	struct mapping **mappings;
	size_t n_mappings;
	struct mapping_group **groups;
	size_t n_groups;
	struct listener **listeners;
	size_t n_listeners;
	struct tls_context **tls_contexts;
	size_t n_tls_contexts;
	struct module_config module;
	struct strindex listeners_by_port; /* port_key -> first listener on that port */
	/* lib/tls's SSL_CTXs for this model, released through tls_runtime_free before the
	 * model is freed (model.c knows nothing of OpenSSL). */
	void *tls_runtime;
	void (*tls_runtime_free)(struct config *c);
	/* The host's shared session-ticket keys (ticketkeys.h), not owned: set by tcpmapd
	 * before lib/tls loads the model, and outliving it. NULL (tcpmapctl, the tests, a
	 * table that could not be opened): OpenSSL's own keys, good in this process only. */
	struct ticket_keys *ticket_keys;
};

struct config *config_ref(struct config *c);
struct config *config_unref(struct config *c); /* returns NULL */
static inline void config_unrefp(struct config **c) {
	if (*c)
		config_unref(*c);
}

/* Build the lookup config_find_listener uses: every listener by its port, in constant time
 * however many the config has. Called once when the model is built. Returns 0 or -ENOMEM. */
int model_index_listeners(struct config *c);

/* The listener a socket bound to `sa` belongs to: exact address first, else the wildcard
 * listener on that port. NULL when the config has none. */
struct listener *config_find_listener(const struct config *c, const struct sockaddr *sa,
                                      socklen_t len);
/* Listener by textual address and port; NULL = the wildcard listener only, never an
 * address-specific one. For tcpmapctl route. */
struct listener *config_find_listener_by_name(const struct config *c, const char *address,
                                              uint16_t port);
struct tls_context *config_find_tls_context(const struct config *c, const char *name);

/* Does TLSContext `t` list `host`: "*", the same name, or a wildcard that matches it? `host`
 * may be a client's SNI or a mapping's host (itself possibly "*.example.com", which only
 * that same wildcard or "*" covers). */
bool model_tlscontext_covers(const struct tls_context *t, const char *host);
/* The context that terminates TLS for `host`, as Emissary looks: first the Hosts whose
 * hostname matches it, then the TLSContexts that list it; among either, an exact name beats
 * a wildcard, a longer wildcard a shorter one, and "*" comes last; ties go to the first in
 * the files. NULL when none covers it. The one rule both the loader and lib/tls ask. */
struct tls_context *model_tlscontext_for_host(const struct config *c, const char *host);

/* Append `item` to the pointer array *arrayp of *n items, as the loader grows the model.
 * Returns 0 or -ENOMEM (the array is then unchanged). */
int model_push(void *arrayp, size_t *n, void *item);
