/* tlsgate.c — holding a terminating handshake at the client's hello until the upstream is
 * ready, so that an upstream failure can still reach the client as a TLS alert and the
 * client is told only the ALPN protocol the upstream accepted (tls.h, tls_server_hold).
 *
 * The gate is the held session's app data. tls.c's server contexts call its hello and
 * ALPN callbacks; tlssession.c opens it. It builds no context and steps no handshake. */
#include "tlsgate.h"

#include <openssl/ssl.h>
#include <openssl/tls1.h>

#include "model.h"
#include "util.h"

enum gate_state { GATE_OPEN, GATE_HOLD, GATE_REFUSE };

/* Kept as the SSL's app data of a held session, freed with it (tls_session_free). */
struct tls_gate {
	enum gate_state state;
	int alert;
	bool originating; /* resumed with an upstream session: its ALPN answer decides */
	unsigned char upstream_alpn[256]; /* length-prefixed; [0] == 0: none chosen */
	unsigned char *client_alpn;       /* the client's protocol list, wire format */
	size_t client_alpn_len;
};

int tls_server_hold(SSL *client) {
	struct tls_gate *g = calloc(1, sizeof *g);

	if (!g)
		return -ENOMEM;
	g->state = GATE_HOLD;
	if (SSL_set_app_data(client, g) != 1) {
		free(g);
		return -ENOMEM;
	}
	return 0;
}

void tls_gate_free(SSL *ssl) {
	struct tls_gate *g = ssl ? SSL_get_app_data(ssl) : NULL;

	if (!g)
		return;
	free(g->client_alpn);
	free(g);
	(void)SSL_set_app_data(ssl, NULL);
}

/* The client hello callback of every server context: hold, answer or refuse. */
int tls_gate_client_hello(SSL *ssl, int *alert, void *arg) {
	struct tls_gate *g = SSL_get_app_data(ssl);
	const unsigned char *ext;
	size_t len;
	(void)arg;

	if (!g || g->state == GATE_OPEN)
		return SSL_CLIENT_HELLO_SUCCESS;
	if (g->state == GATE_REFUSE) {
		*alert = g->alert;
		return SSL_CLIENT_HELLO_ERROR;
	}
	/* Keep the client's ALPN list for the upstream: RFC 7301 3.1, a 2-byte length and
	 * then the list; a malformed one is OpenSSL's to refuse once the hello goes on. */
	if (!g->client_alpn &&
	    SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext,
	                              &len) == 1 &&
	    len > 2 && (size_t)(ext[0] << 8 | ext[1]) == len - 2) {
		g->client_alpn = malloc(len - 2);
		if (g->client_alpn) {
			memcpy(g->client_alpn, ext + 2, len - 2);
			g->client_alpn_len = len - 2;
		}
	}
	return SSL_CLIENT_HELLO_RETRY;
}

int tls_gate_open(SSL *client, SSL *upstream, int alert) {
	struct tls_gate *g = SSL_get_app_data(client);

	if (!g)
		return -EINVAL;
	if (alert) {
		g->state = GATE_REFUSE;
		g->alert = alert;
	} else {
		const unsigned char *proto = NULL;
		unsigned len = 0;

		g->state = GATE_OPEN;
		g->originating = upstream != NULL;
		if (upstream)
			SSL_get0_alpn_selected(upstream, &proto, &len);
		g->upstream_alpn[0] = (unsigned char)(proto ? len : 0);
		if (proto && len > 0 && len < sizeof g->upstream_alpn)
			memcpy(g->upstream_alpn + 1, proto, len);
	}
	return 0;
}

int tls_gate_alpn(SSL *ssl, const unsigned char **proto, unsigned char *len) {
	struct tls_gate *g = SSL_get_app_data(ssl);

	if (!g || !g->originating)
		return -1;
	*len = g->upstream_alpn[0];
	*proto = g->upstream_alpn + 1;
	return *len > 0;
}

/* Is `proto` (length-prefixed) in the wire-format list? */
static bool alpn_list_has(const unsigned char *list, size_t n, const unsigned char *proto) {
	for (size_t i = 0; i < n && i + 1 + list[i] <= n; i += 1 + list[i])
		if (list[i] == proto[0] && memcmp(list + i + 1, proto + 1, proto[0]) == 0)
			return true;
	return false;
}

int tls_client_offer_alpn(SSL *upstream, SSL *client, const struct mapping *m) {
	struct tls_gate *g = client ? SSL_get_app_data(client) : NULL;
	const struct tls_context *term = m && m->group ? m->group->termination_context : NULL;
	unsigned char *offer;
	size_t n = 0;

	if (!g || !g->client_alpn_len)
		return 0;
	if (m->tls_context && m->tls_context->alpn_protocols && m->tls_context->alpn_protocols[0])
		return 0; /* the origination context's own list, set on its SSL_CTX */
	offer = malloc(g->client_alpn_len);
	if (!offer)
		return -ENOMEM;
	for (size_t i = 0;
	     i < g->client_alpn_len && i + 1 + g->client_alpn[i] <= g->client_alpn_len;
	     i += 1 + g->client_alpn[i]) {
		const unsigned char *proto = g->client_alpn + i;
		bool allowed = !term || !term->alpn_protocols || !term->alpn_protocols[0];
		for (char **a = term && !allowed ? term->alpn_protocols : NULL; a && *a; a++)
			allowed = allowed ||
			          (strlen(*a) == proto[0] && memcmp(*a, proto + 1, proto[0]) == 0);
		if (!allowed || proto[0] == 0 || alpn_list_has(offer, n, proto))
			continue;
		memcpy(offer + n, proto, 1u + proto[0]);
		n += 1u + proto[0];
	}
	int r = n > 0 && SSL_set_alpn_protos(upstream, offer, (unsigned)n) != 0 ? -ENOMEM : 0;
	free(offer);
	return r;
}
