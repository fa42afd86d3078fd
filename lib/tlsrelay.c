/* tlsrelay.c — see tlsrelay.h. Must never drop a byte: a buffer is only refilled once
 * fully written, and a shutdown is only forwarded once the buffer is empty. */
#include "tlsrelay.h"

#include <openssl/err.h>
#include <sys/socket.h>

#include "relay.h"
#include "util.h"

enum io { IO_OK, IO_BLOCKED, IO_EOF, IO_ERROR };

void tls_relay_init(struct tls_relay *r, int client_fd, SSL *client_ssl, int upstream_fd,
                    SSL *upstream_ssl) {
	*r = (struct tls_relay){
	        .client = {.fd = client_fd, .ssl = client_ssl},
	        .upstream = {.fd = upstream_fd, .ssl = upstream_ssl},
	};
	r->up.from = &r->client;
	r->up.to = &r->upstream;
	r->down.from = &r->upstream;
	r->down.to = &r->client;
}

static enum io end_read(struct tls_end *e, uint8_t *buf, size_t size, size_t *ret) {
	if (!e->ssl) {
		ssize_t n = recv(e->fd, buf, size, 0);
		if (n > 0) {
			*ret = (size_t)n;
			return IO_OK;
		}
		if (n == 0)
			return IO_EOF;
		return errno == EAGAIN || errno == EINTR ? IO_BLOCKED : IO_ERROR;
	}
	ERR_clear_error();
	if (SSL_read_ex(e->ssl, buf, size, ret) == 1)
		return IO_OK;
	switch (SSL_get_error(e->ssl, 0)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return IO_BLOCKED;
	case SSL_ERROR_ZERO_RETURN:
		return IO_EOF; /* close_notify */
	case SSL_ERROR_SYSCALL:
		/* a FIN without close_notify: the peer closed its side, as with cleartext */
		return errno == 0 ? IO_EOF : IO_ERROR;
	case SSL_ERROR_SSL:
		/* OpenSSL 3 reports a bare FIN as "unexpected eof while reading" */
		if (ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
			return IO_EOF;
		return IO_ERROR;
	default:
		return IO_ERROR;
	}
}

static enum io end_write(struct tls_end *e, const uint8_t *buf, size_t size, size_t *ret) {
	if (!e->ssl) {
		ssize_t n = send(e->fd, buf, size, MSG_NOSIGNAL);
		if (n >= 0) {
			*ret = (size_t)n;
			return IO_OK;
		}
		return errno == EAGAIN || errno == EINTR ? IO_BLOCKED : IO_ERROR;
	}
	ERR_clear_error();
	if (SSL_write_ex(e->ssl, buf, size, ret) == 1)
		return IO_OK;
	switch (SSL_get_error(e->ssl, 0)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return IO_BLOCKED;
	default:
		return IO_ERROR;
	}
}

/* Forward an end of stream: close_notify then FIN toward TLS, FIN toward cleartext. */
static enum io end_shutdown(struct tls_end *e) {
	if (e->ssl) {
		ERR_clear_error();
		int r = SSL_shutdown(e->ssl);
		if (r < 0) {
			int err = SSL_get_error(e->ssl, r);
			if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ)
				return IO_BLOCKED;
			/* the peer is already gone; the FIN below is all that is left to do */
		}
	}
	if (shutdown(e->fd, SHUT_WR) < 0 && errno != ENOTCONN)
		return IO_ERROR;
	return IO_OK;
}

static int direction_pump(struct tls_direction *d) {
	int flags = 0;

	for (;;) {
		bool moved = false;

		/* fill: SSL_read() gives one record at a time, so gather what has arrived */
		while (!d->eof && d->off == 0 && d->len < TLS_RELAY_BUFFER) {
			if (!d->buf) {
				d->buf = malloc(TLS_RELAY_BUFFER);
				if (!d->buf)
					return -ENOMEM;
			}
			size_t n = 0;
			enum io io =
			        end_read(d->from, d->buf + d->len, TLS_RELAY_BUFFER - d->len, &n);
			if (io == IO_ERROR)
				return -ECONNRESET;
			if (io == IO_BLOCKED)
				break;
			moved = true;
			if (io == IO_EOF)
				d->eof = true;
			else
				d->len += n;
		}
		if (d->len > d->off) {
			size_t n = 0;
			switch (end_write(d->to, d->buf + d->off, d->len - d->off, &n)) {
			case IO_OK:
				d->off += n;
				d->bytes += n;
				if (d->off == d->len)
					d->len = d->off = 0;
				moved = true;
				break;
			case IO_BLOCKED:
				break;
			default:
				return -EPIPE;
			}
		}
		if (!moved)
			break;
		flags |= RELAY_PROGRESS;
	}

	if (d->len == 0 && d->buf) {
		/* idle: give the buffer back, as SSL_MODE_RELEASE_BUFFERS does for OpenSSL's own */
		d->buf = mfree(d->buf);
	}
	if (d->eof && d->len == 0 && !d->shut) {
		switch (end_shutdown(d->to)) {
		case IO_OK:
			d->shut = true;
			flags |= RELAY_PROGRESS;
			break;
		case IO_BLOCKED:
			break;
		default:
			return -EPIPE;
		}
	}
	return flags;
}

int tls_relay_pump(struct tls_relay *r) {
	int a = direction_pump(&r->up);
	if (a < 0)
		return a;
	int b = direction_pump(&r->down);
	if (b < 0)
		return b;
	/* a TLS read may have consumed records that carried data for the other direction's
	 * socket state (key updates, tickets): one more round settles it */
	if (b & RELAY_PROGRESS) {
		int c = direction_pump(&r->up);
		if (c < 0)
			return c;
		a |= c;
	}
	int flags = a | b;
	if (r->up.shut && r->down.shut)
		flags |= RELAY_DONE;
	return flags;
}

void tls_relay_release(struct tls_relay *r) {
	r->up.buf = mfree(r->up.buf);
	r->down.buf = mfree(r->down.buf);
}
