/* tlsrelay.h — relaying when either side speaks TLS: OpenSSL on one or both sockets, one
 * 64 KiB buffer per direction while bytes are in flight. Half-close maps both ways: a peer's
 * close_notify or FIN becomes close_notify + FIN (toward a TLS side) or FIN (toward a cleartext
 * side), once everything before it has been written.
 *
 * Like relay.h it knows no event loop: call tls_relay_pump() whenever either socket may
 * have become ready; it runs until every direction is blocked. Handshakes are done before. */
#pragma once

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

/* Four full records: each send then carries four, and each costs the kernel's loopback or
 * NIC path once instead of four times. */
#define TLS_RELAY_BUFFER (64 * 1024)

struct tls_end {
	int fd;
	SSL *ssl; /* NULL: cleartext socket */
};

struct tls_direction {
	struct tls_end *from, *to;
	uint8_t *buf; /* allocated while bytes wait in it, so idle connections hold none */
	size_t len, off;
	uint64_t bytes; /* delivered to `to` */
	bool eof;
	bool shut;
};

struct tls_relay {
	struct tls_end client, upstream;
	struct tls_direction up, down; /* client->upstream, upstream->client */
};

void tls_relay_init(struct tls_relay *r, int client_fd, SSL *client_ssl, int upstream_fd,
                    SSL *upstream_ssl);
/* Returns RELAY_* flags (relay.h) or -errno on a hard error of either side. */
int tls_relay_pump(struct tls_relay *r);
/* Free buffers (not the SSL objects or sockets). */
void tls_relay_release(struct tls_relay *r);
