/* tlsgate.h — the gate that holds a terminating handshake at the client's hello (tls.h,
 * tls_server_hold and tls_server_resume, say what it is for). */
#pragma once

#include <openssl/ssl.h>

struct mapping;

/* Hold `client` at its hello (its app data becomes the gate). 0 or -ENOMEM. */
int tls_server_hold(SSL *client);
/* Open the gate: with alert 0 the hello is answered (taking `upstream`'s ALPN choice when
 * originating, NULL otherwise); with an alert it is refused with that fatal alert. 0, or
 * -EINVAL when `client` was not held. The caller steps the handshake on. */
int tls_gate_open(SSL *client, SSL *upstream, int alert);
/* Offer `upstream` the protocols the held `client` offered, those the client's TLSContext
 * also lists when it has alpn_protocols; unless the origination context names its own
 * alpn_protocols, which then stand. Returns 0 or -ENOMEM. */
int tls_client_offer_alpn(SSL *upstream, SSL *client, const struct mapping *m);
/* Free a held session's gate (with the session). */
void tls_gate_free(SSL *ssl);
/* tls.c's server contexts call these. */
int tls_gate_client_hello(SSL *ssl, int *alert, void *arg);
/* The upstream's ALPN choice for a held session that was resumed with one: 1 with *proto
 * and *len set, 0 when the upstream chose none, -1 when the session is not originating. */
int tls_gate_alpn(SSL *ssl, const unsigned char **proto, unsigned char *len);
