/* tlsticket.h — TLS session tickets sealed with the host's shared keys (ticketkeys.h)
 * instead of OpenSSL's per-process ones. Part of the TLS module (tlsticket.c). */
#pragma once

#include <openssl/ssl.h>

struct ticket_keys;

/* Have server context `ctx` seal and open tickets with `keys` (which must outlive it), and
 * keep sessions as long as the key schedule accepts their tickets. Uses the context's app
 * data. Returns 0, -EINVAL or -ENOMEM. */
int tls_ticket_keys_use(SSL_CTX *ctx, struct ticket_keys *keys);
