/* tlsrelay.h — relaying when either side speaks TLS: OpenSSL on one or both sockets, one
 * 64 KiB buffer per direction while bytes are in flight. Half-close maps both ways, once
 * everything before it has been written, and each ending is passed on as it came, so that a
 * truncation is never hidden: a TLS peer's close_notify becomes close_notify + FIN toward a
 * TLS side, its bare FIN a bare FIN; a cleartext peer's FIN (its only clean ending) becomes
 * close_notify + FIN toward a TLS side; toward a cleartext side every ending is a FIN.
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
	/* The peer's close_notify came: OpenSSL reads a bare FIN as one too
	 * (SSL_OP_IGNORE_UNEXPECTED_EOF), so only its alert record tells them apart. */
	bool close_notify_seen;
	/* The last read found the socket empty (EAGAIN) and no readable event came since:
	 * the sockets are edge-triggered, so new bytes, a FIN or an error will say so, and
	 * until then another read can only fail again. Cleared by tls_relay_readable(). */
	bool drained;
	/* The socket reported a hangup: a short read no longer means it is empty, since the
	 * FIN that follows the bytes has had its edge already. */
	bool hup_seen;
	/* OpenSSL's last read of the socket since the last readable event got less than it
	 * asked for */
	bool last_read_short;
};

struct tls_direction {
	struct tls_end *from, *to;
	uint8_t *buf; /* allocated while bytes wait in it, so idle connections hold none */
	size_t len, off;
	uint64_t bytes; /* delivered to `to` */
	bool eof;
	bool eof_clean; /* `from` ended with close_notify, or is cleartext */
	bool shut;
};

struct tls_relay {
	struct tls_end client, upstream;
	struct tls_direction up, down; /* client->upstream, upstream->client */
	/* The upstream ended the session with a fatal alert before sending a byte: a TLS 1.3
	 * server refusing our certificate after its handshake (certificate_required). The
	 * failure reason (tls_handshake_failure_reason's names); NULL otherwise. */
	const char *upstream_refused;
};

void tls_relay_init(struct tls_relay *r, int client_fd, SSL *client_ssl, int upstream_fd,
                    SSL *upstream_ssl);
/* Returns RELAY_* flags (relay.h) or -errno on a hard error of either side. */
int tls_relay_pump(struct tls_relay *r);
/* An event said the client's (or the upstream's) socket may be readable: the next pump
 * reads it again. Call it before tls_relay_pump() for every readable or hangup event, and
 * once for each side after tls_relay_init(); `hup`: that socket has ever reported a hangup. */
static inline void tls_relay_readable(struct tls_relay *r, bool client_side, bool hup) {
	struct tls_end *e = client_side ? &r->client : &r->upstream;

	e->drained = false;
	e->last_read_short = false;
	e->hup_seen = hup;
}
/* Free buffers (not the SSL objects or sockets). */
void tls_relay_release(struct tls_relay *r);
/* tcpmapd ends the connection itself (idle timeout, drain, stop): send close_notify on every
 * TLS leg that has not been shut yet. Best effort and never blocking: one try each. */
void tls_relay_notify_close(struct tls_relay *r);
