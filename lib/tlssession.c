/* tlssession.c — the per-connection side of TLS: a session from a config's ready SSL_CTX,
 * the upstream SNI and name to verify, handshake steps, and the reason a handshake failed,
 * for the access log. See tls.h.
 *
 * It only asks tls.c for the contexts (tls_server_ctx, tls_client_ctx) and never builds or
 * changes one: everything that can fail slowly was done when the config was loaded. It
 * must never log (callers log the result) and never block: the sockets are non-blocking. */
#include "tls.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "keywipe.h"
#include "tlsflight.h"
#include "netaddr.h"
#include "util.h"

const char *tls_upstream_sni(const struct mapping *m) {
	if (!m)
		return NULL;
	if (m->tls_context && m->tls_context->sni && m->tls_context->sni[0])
		return m->tls_context->sni;
	/* RFC 6066: SNI carries host names only, never an address. */
	if (!m->upstream_host || !m->upstream_host[0] || netaddr_is_literal(m->upstream_host))
		return NULL;
	return m->upstream_host;
}

int tls_client_prepare(SSL *ssl, const struct mapping *m) {
	const char *sni, *expected;

	if (!ssl || !m)
		return -EINVAL;
	sni = tls_upstream_sni(m);
	if (sni && SSL_set_tlsext_host_name(ssl, sni) != 1) {
		ERR_clear_error();
		return -EINVAL;
	}
	if (!(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER))
		return 0;

	/* Verify the name we asked for: the context's sni if set, else the service host. */
	expected = sni ? sni : m->upstream_host;
	if (!expected || !expected[0])
		return -EINVAL;
	if (netaddr_is_literal(expected)) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), expected) != 1) {
			ERR_clear_error();
			return -EINVAL;
		}
		return 0;
	}
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (SSL_set1_host(ssl, expected) != 1) {
		ERR_clear_error();
		return -ENOMEM;
	}
	return 0;
}

/* A session on `fd` from `ctx` (none when ctx is NULL): originating for mapping `m`, else
 * terminating. Returns 1, 0 without a context, or -ENOMEM. */
static int session_new(SSL_CTX *ctx, int fd, const struct mapping *m, SSL **ret) {
	*ret = NULL;
	if (!ctx)
		return 0;
	SSL *ssl = SSL_new(ctx);
	/* a server's steps write the most: its flight, then its tickets (tlsflight.c) */
	if (!ssl || (m ? SSL_set_fd(ssl, fd) != 1 : tls_flight_attach(ssl, fd) < 0) ||
	    (m && tls_client_prepare(ssl, m) < 0)) {
		SSL_free(ssl);
		return -ENOMEM;
	}
	/* Within a step a buffer freed as soon as it runs empty is allocated again at once,
	 * and every free wipes it (keywipe.c): buffers are given back at the end of each
	 * step instead (tls_handshake_step), and as they run empty once it is done. */
	SSL_clear_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
	if (m)
		SSL_set_connect_state(ssl);
	else
		SSL_set_accept_state(ssl);
	*ret = ssl;
	return 1;
}

int tls_server_session(const struct config *c, const struct mapping_group *g, int fd, SSL **ret) {
	return session_new(tls_server_ctx(c, g), fd, NULL, ret);
}

int tls_client_session(const struct config *c, const struct mapping *m, int fd, SSL **ret) {
	return session_new(tls_client_ctx(c, m), fd, m, ret);
}

int tls_server_resume(SSL *client, SSL *upstream, int alert) {
	int r = tls_gate_open(client, upstream, alert);
	return r < 0 ? r : tls_handshake_step(client);
}

int tls_handshake_step(SSL *ssl) {
	/* what the last step could not send goes before anything this one writes */
	int sent = tls_flight_send(ssl);
	if (sent == -EAGAIN)
		return 0;
	if (sent < 0)
		return sent;
	tls_flight_hold(ssl);
	ERR_clear_error();
	errno = 0;
	int r = SSL_do_handshake(ssl);
	keywipe_stack();
	int saved_errno = errno;
	int err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, r);
	sent = tls_flight_send(ssl);
	if (r == 1)
		SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
	/* a waiting handshake holds no buffer: what RELEASE_BUFFERS did after each use */
	(void)SSL_free_buffers(ssl);
	switch (err) {
	case SSL_ERROR_NONE:
		/* done only once its last bytes are out: until then the socket's next
		 * writable edge brings another step, and the relay never sees them */
		if (sent < 0)
			return sent == -EAGAIN ? 0 : sent;
		tls_flight_detach(ssl);
		return 1;
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return sent == -EAGAIN ? 0 : sent;
	case SSL_ERROR_WANT_CLIENT_HELLO_CB:
		return sent < 0 && sent != -EAGAIN ? sent : TLS_HANDSHAKE_HELD;
	case SSL_ERROR_SSL:
		return -EPROTO; /* the reason stays in the error queue */
	case SSL_ERROR_SYSCALL:
		/* errno 0: the peer closed mid-handshake without an alert */
		return saved_errno > 0 ? -saved_errno : -ECONNRESET;
	case SSL_ERROR_ZERO_RETURN:
		return -ECONNRESET; /* close_notify before the handshake was done */
	default:
		return -EIO; /* a callback state our contexts never set up */
	}
}

void tls_session_free(SSL *ssl) {
	tls_gate_free(ssl);
	SSL_free(ssl);
}

const char *tls_verify_failure_detail(SSL *ssl) {
	/* OpenSSL judges the chain even when told not to verify: only a verifying session's
	 * result says anything about the failure */
	if (!ssl || !(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER))
		return NULL;
	long v = SSL_get_verify_result(ssl);
	return v == X509_V_OK ? NULL : X509_verify_cert_error_string(v);
}

const char *tls_handshake_failure_reason(void) {
	unsigned long e = ERR_peek_last_error();

	if (e == 0 || ERR_GET_LIB(e) != ERR_LIB_SSL)
		return "handshake_failed";
	switch (ERR_GET_REASON(e)) {
	case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
		return "unknown_ca";
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
	case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
		return "no_certificate";
	case SSL_R_CERTIFICATE_VERIFY_FAILED:
		return "certificate_verify_failed";
	case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
	case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
		return "bad_certificate";
	case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_NO_PROTOCOLS_AVAILABLE:
	case SSL_R_VERSION_TOO_LOW:
	case SSL_R_VERSION_TOO_HIGH:
		return "protocol_version";
	case SSL_R_NO_SHARED_CIPHER:
		return "no_shared_cipher";
	case SSL_R_TLSV1_UNRECOGNIZED_NAME:
	case SSL_R_CALLBACK_FAILED:
		/* the only fatal callback on our server contexts is the SNI check */
		return "unrecognized_name";
	/* a record header no TLS version writes: the peer speaks something else */
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_HTTP_REQUEST:
	case SSL_R_PACKET_LENGTH_TOO_LONG:
		return "not_tls";
	default:
		return "handshake_failed";
	}
}
