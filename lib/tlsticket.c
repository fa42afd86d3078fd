/* tlsticket.c — session tickets under the host's shared keys (ticketkeys.h), so a ticket
 * one tcpmap process issued resumes in any other. Part of the TLS module: OpenSSL asks this
 * callback for the key to seal a ticket with, and for the key a returning ticket names.
 *
 * It must never log (a key, or anything else: callers see a full handshake at worst), and
 * never keep a key's bytes after the callback returns; OpenSSL's copies of them (the AES
 * schedule, the HMAC key) are freed through keywipe's wiping free. */
#include "tlsticket.h"

#include <errno.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/rand.h>

#include "ticketkeys.h"

_Static_assert(TICKETKEYS_NAME_SIZE == 16, "OpenSSL's key name is 16 bytes");

/* The ticket's encryption (AES-256-CBC) and MAC (HMAC-SHA256) under `k`. */
static int ticket_crypto_init(const struct ticket_key *k, const unsigned char *iv,
                              EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc) {
	OSSL_PARAM params[] = {
	        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
	        OSSL_PARAM_construct_end(),
	};
	if (EVP_MAC_init(hctx, k->hmac_key, sizeof k->hmac_key, params) != 1)
		return -1;
	if (enc)
		return EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes_key, iv) == 1 ? 0
		                                                                              : -1;
	return EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes_key, iv) == 1 ? 0 : -1;
}

/* OpenSSL's contract (SSL_CTX_set_tlsext_ticket_key_evp_cb(3)): sealing returns 1, or 0 for
 * no ticket; opening returns 0 for a key we do not (or no longer) accept, which means a full
 * handshake, 1 to resume, 2 to resume and send a fresh ticket under the newest key; -1 is an
 * error. */
static int ticket_key_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
                         EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc) {
	struct ticket_keys *keys = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	struct ticket_key k;
	int r;

	if (!keys)
		return enc ? 0 : -1;
	int64_t now = ticketkeys_now(keys);
	if (enc) {
		if (ticketkeys_issue(keys, now, &k) < 0)
			return 0;
		int iv_len = EVP_CIPHER_get_iv_length(EVP_aes_256_cbc());
		if (RAND_bytes(iv, iv_len) != 1 || ticket_crypto_init(&k, iv, cctx, hctx, 1) < 0)
			r = 0;
		else {
			memcpy(key_name, k.name, sizeof k.name);
			r = 1;
		}
	} else {
		r = ticketkeys_find(keys, key_name, now, &k);
		if (r == -ENOENT)
			return 0;
		if (r < 0)
			return -1;
		if (ticket_crypto_init(&k, iv, cctx, hctx, 0) < 0)
			r = -1;
	}
	explicit_bzero(&k, sizeof k);
	return r;
}

int tls_ticket_keys_use(SSL_CTX *ctx, struct ticket_keys *keys) {
	if (!ctx || !keys)
		return -EINVAL;
	if (SSL_CTX_set_app_data(ctx, keys) != 1 ||
	    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb) != 1)
		return -ENOMEM;
	/* A ticket stays good as long as its key is accepted: issued under a key at most one
	 * rotation old, it must still resume until that key leaves the window. OpenSSL's own
	 * default (2 h) would end it sooner than the schedule tcpmapd(8) documents. */
	SSL_CTX_set_timeout(ctx, TICKETKEYS_LIFE_SEC - TICKETKEYS_ROTATE_SEC);
	return 0;
}
