/* tlsflight.c — a write BIO that turns what one handshake step writes into one send.
 * OpenSSL flushes its handshake buffer after each message group: a TLS 1.3 server writes
 * its two session tickets with two sends, two segments and two wake-ups of the client for
 * one step. Between tls_flight_hold() and tls_flight_send() this BIO, below OpenSSL's own
 * buffer, keeps every write and flush, and the caller sends them at the end of the step.
 *
 * It must never drop or reorder a byte and never block: what the socket does not take is
 * kept, sent before anything else, and the caller does not call a handshake done while
 * any of it waits. It holds only records OpenSSL has already protected (and the plain
 * hellos), never a key; the buffer is freed as soon as it is sent. */
#include "tlsflight.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>

struct flight {
	uint8_t *buf;
	size_t len, off, cap;
	bool holding;
};

static BIO_METHOD *flight_method;
static int flight_type;
static pthread_once_t flight_method_once = PTHREAD_ONCE_INIT;

/* Send what is kept: 1 all out, 0 the socket is full, -1 a socket error. */
static int flight_drain(BIO *b, struct flight *f) {
	BIO *next = BIO_next(b);

	while (f->off < f->len) {
		size_t sent = 0;
		if (BIO_write_ex(next, f->buf + f->off, f->len - f->off, &sent) != 1)
			return BIO_should_retry(next) ? 0 : -1;
		f->off += sent;
	}
	free(f->buf);
	*f = (struct flight){.holding = f->holding};
	return 1;
}

static bool flight_keep(struct flight *f, const void *data, size_t n) {
	if (f->len + n > f->cap) {
		size_t cap = f->cap ? f->cap : 4096;
		while (cap < f->len + n)
			cap *= 2;
		uint8_t *buf = realloc(f->buf, cap);
		if (!buf)
			return false;
		f->buf = buf;
		f->cap = cap;
	}
	memcpy(f->buf + f->len, data, n);
	f->len += n;
	return true;
}

static int flight_write(BIO *b, const char *data, size_t n, size_t *written) {
	struct flight *f = BIO_get_data(b);
	BIO *next = BIO_next(b);

	BIO_clear_retry_flags(b);
	*written = 0;
	if (f->holding && flight_keep(f, data, n)) {
		*written = n;
		return 1;
	}
	/* not holding (or out of memory): what is kept goes first, then this, directly */
	int r = flight_drain(b, f);
	if (r <= 0) {
		if (r == 0)
			BIO_set_retry_write(b);
		return 0;
	}
	r = BIO_write_ex(next, data, n, written);
	BIO_copy_next_retry(b);
	return r;
}

/* OpenSSL reads once it has written all it can before the peer answers: that is the
 * end of a flight, so what is kept goes now. Then the read, whatever the send did: bytes
 * may wait in the socket that no edge will announce again. */
static int flight_read(BIO *b, char *data, size_t n, size_t *got) {
	struct flight *f = BIO_get_data(b);

	if (f->len > 0)
		(void)flight_drain(
		        b, f); /* what the socket does not take now waits for the step's end */
	int r = BIO_read_ex(BIO_next(b), data, n, got);
	BIO_clear_retry_flags(b);
	BIO_copy_next_retry(b);
	return r;
}

static long flight_ctrl(BIO *b, int cmd, long num, void *ptr) {
	struct flight *f = BIO_get_data(b);
	BIO *next = BIO_next(b);

	switch (cmd) {
	case BIO_CTRL_FLUSH:
		if (f->holding)
			return 1; /* at the end of the step, with whatever comes after */
		BIO_clear_retry_flags(b);
		switch (flight_drain(b, f)) {
		case 0:
			BIO_set_retry_write(b);
			return 0;
		case -1:
			return 0;
		}
		break;
	case BIO_CTRL_WPENDING:
		return (long)(f->len - f->off) + (next ? BIO_ctrl(next, cmd, num, ptr) : 0);
	default:
		break;
	}
	return next ? BIO_ctrl(next, cmd, num, ptr) : 0;
}

static int flight_create(BIO *b) {
	struct flight *f = calloc(1, sizeof *f);

	if (!f)
		return 0;
	BIO_set_data(b, f);
	BIO_set_init(b, 1);
	return 1;
}

static int flight_destroy(BIO *b) {
	struct flight *f = BIO_get_data(b);

	if (f)
		free(f->buf);
	free(f);
	BIO_set_data(b, NULL);
	return 1;
}

static void flight_method_new(void) {
	int type = BIO_get_new_index();
	BIO_METHOD *m = type < 0 ? NULL : BIO_meth_new(type | BIO_TYPE_FILTER, "tcpmap flight");

	if (m && BIO_meth_set_write_ex(m, flight_write) && BIO_meth_set_read_ex(m, flight_read) &&
	    BIO_meth_set_ctrl(m, flight_ctrl) && BIO_meth_set_create(m, flight_create) &&
	    BIO_meth_set_destroy(m, flight_destroy)) {
		flight_method = m;
		flight_type = type | BIO_TYPE_FILTER;
		return;
	}
	BIO_meth_free(m);
}

/* The flight BIO of `ssl`, NULL when it has none. SSL_get_wbio() looks past OpenSSL's
 * handshake buffer. */
static BIO *flight_of(SSL *ssl) {
	BIO *b = SSL_get_wbio(ssl);

	return b && flight_method && BIO_method_type(b) == flight_type ? b : NULL;
}

int tls_flight_attach(SSL *ssl, int fd) {
	(void)pthread_once(&flight_method_once, flight_method_new);
	if (!flight_method)
		return -ENOMEM;
	BIO *sock = BIO_new_socket(fd, BIO_NOCLOSE);
	BIO *flight = BIO_new(flight_method);
	if (!sock || !flight) {
		BIO_free(sock);
		BIO_free(flight);
		return -ENOMEM;
	}
	/* it reads through the flight BIO too: a read is when a flight is complete */
	BIO_push(flight, sock);
	SSL_set_bio(ssl, flight, flight);
	return 0;
}

void tls_flight_hold(SSL *ssl) {
	BIO *b = flight_of(ssl);

	if (b)
		((struct flight *)BIO_get_data(b))->holding = true;
}

int tls_flight_send(SSL *ssl) {
	BIO *b = flight_of(ssl);

	if (!b)
		return 0;
	struct flight *f = BIO_get_data(b);
	f->holding = false;
	errno = 0;
	switch (flight_drain(b, f)) {
	case 1:
		return 0;
	case 0:
		return -EAGAIN;
	default:
		return errno > 0 ? -errno : -EIO;
	}
}

void tls_flight_detach(SSL *ssl) {
	BIO *b = flight_of(ssl);

	BIO *sock = b ? BIO_next(b) : NULL;

	/* the reference given to `ssl`; freeing the flight BIO drops the chain's own */
	if (!sock || !BIO_up_ref(sock))
		return;
	SSL_set_bio(ssl, sock, sock);
}
