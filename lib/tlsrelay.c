/* tlsrelay.c — see tlsrelay.h. Must never drop a byte: a buffer is only refilled once
 * fully written, and a shutdown is only forwarded once the buffer is empty. */
#include "tlsrelay.h"

#include <openssl/err.h>
#include <sys/socket.h>

#include "relay.h"
#include "tls.h"
#include "util.h"

/* IO_EOF: close_notify, or a cleartext FIN; IO_FIN: a TLS peer's FIN without close_notify */
enum io { IO_OK, IO_BLOCKED, IO_EOF, IO_FIN, IO_ERROR };

/* OpenSSL's message callback: note a received close_notify alert on its end. */
static void watch_alerts(int write_p, int version, int content_type, const void *buf, size_t len,
                         SSL *ssl, void *arg) {
	struct tls_end *e = arg;
	const uint8_t *alert = buf;
	(void)version;
	(void)ssl;

	if (!write_p && content_type == SSL3_RT_ALERT && len == 2 &&
	    alert[1] == SSL_AD_CLOSE_NOTIFY)
		e->close_notify_seen = true;
}

/* A short read empties a stream socket, but only a small one says the peer has paused:
 * behind a big one more is usually on its way, and a read finds it sooner than a trip
 * through epoll_wait (bench/RESULTS.md, 2026-12-06: TLS handshake). One record's worth. */
#define SMALL_READ (16 * 1024)

/* Note whether OpenSSL's last read of the socket came back short and small: it asks for
 * all the room its read-ahead buffer has, so a short read emptied the socket. */
static long watch_reads(BIO *b, int oper, const char *argp, size_t len, int argi, long argl,
                        int ret, size_t *processed) {
	struct tls_end *e = (struct tls_end *)BIO_get_callback_arg(b);
	(void)argp;
	(void)argi;
	(void)argl;

	if (oper == (BIO_CB_READ | BIO_CB_RETURN) && ret > 0 && processed)
		e->last_read_short = *processed < len && *processed < SMALL_READ;
	return ret;
}

void tls_relay_init(struct tls_relay *r, int client_fd, SSL *client_ssl, int upstream_fd,
                    SSL *upstream_ssl) {
	*r = (struct tls_relay){
	        .client = {.fd = client_fd, .ssl = client_ssl},
	        .upstream = {.fd = upstream_fd, .ssl = upstream_ssl},
	};
	struct tls_end *ends[] = {&r->client, &r->upstream};
	for (size_t i = 0; i < ELEMENTSOF(ends); i++)
		if (ends[i]->ssl) {
			SSL_set_msg_callback(ends[i]->ssl, watch_alerts);
			SSL_set_msg_callback_arg(ends[i]->ssl, ends[i]);
			BIO *rbio = SSL_get_rbio(ends[i]->ssl);
			BIO_set_callback_ex(rbio, watch_reads);
			BIO_set_callback_arg(rbio, (char *)ends[i]);
		}
	r->up.from = &r->client;
	r->up.to = &r->upstream;
	r->down.from = &r->upstream;
	r->down.to = &r->client;
}

static enum io end_read(struct tls_end *e, uint8_t *buf, size_t size, size_t *ret) {
	/* about half the reads of a short connection were this: a read just after one that
	 * found the socket empty, in the same pump or before the next event (issue 19) */
	if (e->drained)
		return IO_BLOCKED;
	if (!e->ssl) {
		ssize_t n = recv(e->fd, buf, size, 0);
		if (n > 0) {
			/* a stream socket's short read took all it had */
			if ((size_t)n < size && n < SMALL_READ && !e->hup_seen)
				e->drained = true;
			*ret = (size_t)n;
			return IO_OK;
		}
		if (n == 0)
			return IO_EOF;
		if (errno == EAGAIN)
			e->drained = true;
		return errno == EAGAIN || errno == EINTR ? IO_BLOCKED : IO_ERROR;
	}
	ERR_clear_error();
	errno = 0;
	if (SSL_read_ex(e->ssl, buf, size, ret) == 1) {
		/* the socket was emptied (by this read or one since the last event) and OpenSSL
		 * holds no byte of another record: the next read could only find it empty */
		if (e->last_read_short && !e->hup_seen && !SSL_has_pending(e->ssl))
			e->drained = true;
		return IO_OK;
	}
	int read_errno = errno;
	switch (SSL_get_error(e->ssl, 0)) {
	case SSL_ERROR_WANT_READ:
		/* only the socket's own EAGAIN: OpenSSL holds no whole record then, and the
		 * bytes that complete one come with an edge. A read blocked on a write
		 * (WANT_WRITE) is retried on the next pump, as before. */
		if (read_errno == EAGAIN)
			e->drained = true;
		return IO_BLOCKED;
	case SSL_ERROR_WANT_WRITE:
		return IO_BLOCKED;
	case SSL_ERROR_ZERO_RETURN:
		/* close_notify, or a bare FIN read as one (SSL_OP_IGNORE_UNEXPECTED_EOF) */
		return e->close_notify_seen ? IO_EOF : IO_FIN;
	case SSL_ERROR_SYSCALL:
		/* a FIN without close_notify: the peer closed its side, maybe truncating */
		return errno == 0 ? IO_FIN : IO_ERROR;
	case SSL_ERROR_SSL:
		/* OpenSSL 3 reports a bare FIN as "unexpected eof while reading" */
		if (ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
			return IO_FIN;
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

/* Forward an end of stream: close_notify then FIN toward TLS when it ended cleanly, else
 * only the FIN, as it came; toward cleartext a FIN. */
static enum io end_shutdown(struct tls_end *e, bool clean) {
	if (e->ssl && clean) {
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
			if (io == IO_EOF || io == IO_FIN) {
				d->eof = true;
				d->eof_clean = io == IO_EOF;
			} else
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
		switch (end_shutdown(d->to, d->eof_clean)) {
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

/* Did the upstream refuse the session with an alert before its first byte? The reason is
 * read from this thread's error queue, which the failed read has just filled. */
static void note_upstream_refusal(struct tls_relay *r) {
	unsigned long e = ERR_peek_last_error();

	/* an alert the peer sent is an SSL error whose reason is SSL_AD_REASON_OFFSET + alert */
	if (!r->upstream.ssl || r->down.bytes > 0 || r->down.len > 0 ||
	    ERR_GET_LIB(e) != ERR_LIB_SSL || ERR_GET_REASON(e) < SSL_AD_REASON_OFFSET)
		return;
	r->upstream_refused = tls_handshake_failure_reason();
}

int tls_relay_pump(struct tls_relay *r) {
	int a = direction_pump(&r->up);
	if (a < 0)
		return a;
	int b = direction_pump(&r->down);
	if (b == -ECONNRESET)
		note_upstream_refusal(r);
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

void tls_relay_notify_close(struct tls_relay *r) {
	struct tls_direction *dirs[] = {&r->up, &r->down};

	for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
		struct tls_direction *d = dirs[i];
		if (!d->to->ssl || d->shut || !SSL_is_init_finished(d->to->ssl))
			continue;
		ERR_clear_error();
		/* non-blocking socket: if the record does not fit in the send buffer now, the
		 * close goes on without it */
		(void)SSL_shutdown(d->to->ssl);
		d->shut = true;
	}
	ERR_clear_error();
}

void tls_relay_release(struct tls_relay *r) {
	r->up.buf = mfree(r->up.buf);
	r->down.buf = mfree(r->down.buf);
}
