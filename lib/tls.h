/* tls.h — OpenSSL contexts for a config: termination (server) contexts per TLSContext,
 * origination (client) contexts per mapping, secrets looked up as tls_config_load says
 * (the same order as tcpmap.yaml(5) documents).
 *
 * Everything here is prepared once per config load, in the main thread, so the per-
 * connection path only creates SSL objects from ready SSL_CTXs. Key material is never
 * logged, and private keys are loaded from files only (never copied into our own memory). */
#pragma once

#include <openssl/ssl.h>

#include "config.h"
#include "tlsgate.h"
#include "tlsrelay.h"

/* tls.c, tlssession.c and tlsrelay.c are built twice: linked in (tcpmapctl, the tests) and as
 * tcpmap-tls.so, which tcpmapd loads only when a config uses TLS (lib/tlsload.c), so that a
 * cleartext process never maps OpenSSL, two thirds of its start-up (docs/ARCHITECTURE.md,
 * 'Why the TLS module is loaded lazily'). The layouts they share
 * with the loading binary must match; tcpmap_tls_abi says which ones they were built with. */
struct tls_abi {
	char version[16];
	size_t config, mapping, group, context, tls_relay, diag_list;
};
#define TLS_ABI_INIT                                                                               \
	{                                                                                          \
		TCPMAP_VERSION, sizeof(struct config), sizeof(struct mapping),                     \
		        sizeof(struct mapping_group), sizeof(struct tls_context),                  \
		        sizeof(struct tls_relay), sizeof(struct diag_list)                         \
	}
extern const struct tls_abi tcpmap_tls_abi;

/* Whether a mapping group of a listener this process serves terminates TLS (it has a
 * `host` and is not tls_passthrough) or one of its mappings originates TLS. */
static inline bool tls_group_served_needs_tls(const struct mapping_group *g) {
	if (!listener_served_here(g->listener))
		return false;
	bool passthrough = false;
	for (size_t i = 0; i < g->n_mappings; i++) {
		if (g->mappings[i]->tls != TLS_ORIGINATE_NONE)
			return true;
		passthrough = passthrough || g->mappings[i]->tls_passthrough;
	}
	return g->host && g->n_mappings > 0 && !passthrough;
}

/* Whether a config needs any of this: a TLSContext, or a mapping originating TLS. When
 * some listeners are served elsewhere (listener.served_elsewhere), only what the served
 * ones use counts: a cleartext instance then never maps OpenSSL. */
static inline bool tls_config_needed(const struct config *c) {
	bool filtered = false;
	for (size_t i = 0; i < c->n_listeners; i++)
		filtered = filtered || c->listeners[i]->served_elsewhere;
	if (filtered) {
		for (size_t i = 0; i < c->n_groups; i++)
			if (tls_group_served_needs_tls(c->groups[i]))
				return true;
		return false;
	}
	if (c->n_tls_contexts > 0)
		return true;
	for (size_t i = 0; i < c->n_mappings; i++)
		if (c->mappings[i]->tls != TLS_ORIGINATE_NONE)
			return true;
	return false;
}

/* Prepare every SSL_CTX the config needs:
 *  - for each group with a `host` (and no tls_passthrough), find the TLSContext whose `hosts`
 *    cover it (exact beats wildcard) and set group->termination_context; none -> error;
 *  - for each such TLSContext, a server SSL_CTX with its certificate and key, versions,
 *    cipher_suites, ecdh_curves, alpn_protocols and, with cert_required and a CA
 *    (ca_secret / cacert_chain_file), mandatory client certificates;
 *  - for each mapping with `tls`, a client SSL_CTX: no certificate for `tls: true`, the
 *    context's certificate for `tls: NAME`; peer verification only when the context names
 *    a CA;
 * Secrets NAME are looked up as $CREDENTIALS_DIRECTORY/NAME.crt + NAME.key, then
 * SECRETS_DIR/NAME/tls.crt + tls.key; cert_chain_file / private_key_file are used as given.
 * Errors go to diags as "FILE:LINE:COL: tlscontext \"NAME\": secret: ..." naming the paths
 * tried; returns 0 or -EINVAL. On success sets c->tls_runtime and c->tls_runtime_free.
 * Listeners marked served_elsewhere (model.h) are left out: their groups terminate nothing
 * here, their mappings originate nothing, and a context only they use is not loaded. */
int tls_config_load(struct config *c, const char *secrets_dir, struct diag_list *diags);

/* The terminating SSL_CTX of a group (NULL when the group does not terminate). */
SSL_CTX *tls_server_ctx(const struct config *c, const struct mapping_group *g);
/* The originating SSL_CTX of a mapping (NULL when it does not originate). */
SSL_CTX *tls_client_ctx(const struct config *c, const struct mapping *m);
/* Per connection (tlssession.c), from the contexts above. */

/* The SNI to send upstream: the context's `sni`, else the service's host name (NULL for an
 * IP literal, which must not be sent as SNI). */
const char *tls_upstream_sni(const struct mapping *m);

/* A terminating session on `fd` when group `g` terminates TLS: returns 1 with *ret set (in
 * accept state), 0 with *ret NULL when it does not terminate, -ENOMEM. */
int tls_server_session(const struct config *c, const struct mapping_group *g, int fd, SSL **ret);
/* An originating session on `fd` when mapping `m` has `tls` (SNI and verification set up,
 * in connect state): 1, 0 when it does not originate, or -ENOMEM. */
int tls_client_session(const struct config *c, const struct mapping *m, int fd, SSL **ret);
/* One step of a handshake: 1 done, 0 wants more I/O, or a negative errno when it failed:
 * -EPROTO for a TLS failure (the reason is in this thread's error queue:
 * tls_handshake_failure_reason()), -ECONNRESET when the peer closed mid-handshake, the
 * socket's -errno for an I/O error, -EIO otherwise. Callers test `< 0`. */
int tls_handshake_step(SSL *ssl);
void tls_session_free(SSL *ssl);

/* Holding a terminating handshake until the upstream is ready (issue 24, items 18 and 19).
 * After tls_server_hold(), tls_handshake_step() stops at the client's hello and returns
 * TLS_HANDSHAKE_HELD: nothing has been answered yet, so if the upstream cannot be reached the
 * client still gets a real alert instead of a reset, and the ALPN it is told can be the
 * upstream's own answer. tls_server_resume() goes on: with alert 0 it answers the hello
 * (taking `upstream`'s ALPN choice when originating, NULL otherwise); with an alert it
 * refuses the hello with that fatal alert. It returns as tls_handshake_step() does. */
#define TLS_HANDSHAKE_HELD 2
int tls_server_resume(SSL *client, SSL *upstream, int alert);
/* tls_server_hold and tls_client_offer_alpn: tlsgate.h */

/* Result names for the access log from a failed handshake's error queue (this thread's;
 * only peeked, the caller clears it): "unknown_ca", "no_certificate", "bad_certificate",
 * "certificate_verify_failed", "protocol_version", "no_shared_cipher",
 * "unrecognized_name", "not_tls", "handshake_failed". Static strings. */
const char *tls_handshake_failure_reason(void);
/* Why the peer's certificate did not verify ("certificate has expired", "hostname
 * mismatch", "unable to get local issuer certificate": X509_verify_cert_error_string), or
 * NULL when it did or was not checked. A static string. */
const char *tls_verify_failure_detail(SSL *ssl);

/* Set up a client SSL for origination: SNI (tls_upstream_sni) and, when the context names a
 * CA, the host name to verify. Returns 0 or -errno. */
int tls_client_prepare(SSL *ssl, const struct mapping *m);
