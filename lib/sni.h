/* sni.h — a pure, bounded parser of the TLS ClientHello at the start of a byte stream.
 *
 * It never reads a socket: the caller peeks bytes (recv MSG_PEEK) and calls sni_parse()
 * again on the whole prefix whenever more arrive, so any split across TCP segments or TLS
 * records is handled by re-parsing. Handshake fragments spread over several TLS records
 * are reassembled (post-quantum hellos are 1.5-2 KiB and often span records). */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Bytes the caller should ever peek; a hello that needs more is SNI_INVALID. */
#define SNI_MAX_PEEK 16384

enum sni_result {
	SNI_NEED_MORE = 0, /* a valid prefix; call again with more bytes */
	SNI_FOUND,         /* hello complete with a server_name host_name: out->sni */
	SNI_NONE,          /* hello complete without server_name */
	SNI_NOT_TLS,       /* the first bytes cannot start a TLS handshake record */
	SNI_INVALID,       /* TLS-looking but malformed, or longer than SNI_MAX_PEEK */
};

struct client_hello {
	char sni[256];           /* NUL-terminated, lower-cased; valid with SNI_FOUND */
	uint16_t legacy_version; /* client_version field of the hello */
	uint16_t versions[16];   /* supported_versions, GREASE removed, in offered order */
	size_t n_versions;
	char alpn[8][64]; /* offered ALPN protocols, NUL-terminated, first 8 */
	size_t n_alpn;
	size_t hello_bytes; /* bytes of the stream the hello occupies (all records) */
};

/* Parse the stream prefix buf[0..len). Contract:
 *  - never reads past buf+len, never allocates, never fails for any input;
 *  - SNI_NEED_MORE only while len < SNI_MAX_PEEK;
 *  - the result for a prefix that is complete does not change when more bytes follow;
 *  - `out` is fully written for SNI_FOUND and SNI_NONE, unspecified otherwise. */
enum sni_result sni_parse(const uint8_t *buf, size_t len, struct client_hello *out);

const char *sni_result_to_string(enum sni_result r);
