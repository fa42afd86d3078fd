/* sni.h — a pure, bounded parser of the TLS ClientHello at the start of a byte stream.
 *
 * It never reads a socket: the caller peeks bytes (recv MSG_PEEK) and calls sni_parse()
 * again on the whole prefix whenever more arrive, so any split across TCP segments or TLS
 * records is handled by re-parsing. Handshake fragments spread over several TLS records
 * are reassembled (post-quantum hellos are 1.5-2 KiB and often span records). */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* The largest ClientHello taken, counted in handshake bytes (its 4-byte header included,
 * record headers not): one full TLS record, as Envoy's tls_inspector defaults to. A hello
 * with hybrid post-quantum key shares is 1.3-2 KiB (X25519MLKEM768 adds 1 216 bytes, an
 * ML-KEM-1024 hybrid 1 600), so even several of them leave room for padding and tickets. */
#define SNI_MAX_HELLO 16384
/* Bytes the caller should ever peek: every record carries at least one byte, so a hello of
 * SNI_MAX_HELLO bytes framed in any way fits, even in one-byte records. */
#define SNI_MAX_PEEK (6 * SNI_MAX_HELLO)

/* TLS alerts (RFC 8446 6.2) that say why a hello is SNI_INVALID. */
enum sni_alert {
	SNI_ALERT_UNEXPECTED_MESSAGE = 10, /* a record or message other than a ClientHello */
	SNI_ALERT_RECORD_OVERFLOW = 22,    /* a record or hello over the limits above */
	SNI_ALERT_ILLEGAL_PARAMETER = 47,  /* an extension sent twice */
	SNI_ALERT_DECODE_ERROR = 50,       /* lengths or vectors that do not add up */
	SNI_ALERT_UNRECOGNIZED_NAME = 112, /* a server_name no host can have */
};

enum sni_result {
	SNI_NEED_MORE = 0, /* a valid prefix; call again with more bytes */
	SNI_FOUND,         /* hello complete with a server_name host_name: out->sni */
	SNI_NONE,          /* hello complete without server_name */
	SNI_NOT_TLS,       /* the first bytes cannot start a TLS handshake record */
	SNI_INVALID,       /* TLS-looking but malformed, or longer than SNI_MAX_HELLO */
};

struct client_hello {
	char sni[256];           /* NUL-terminated, lower-cased; valid with SNI_FOUND */
	uint16_t legacy_version; /* client_version field of the hello */
	uint16_t versions[16];   /* supported_versions, GREASE removed, in offered order */
	size_t n_versions;
	char alpn[8][64]; /* offered ALPN protocols, NUL-terminated, first 8 */
	size_t n_alpn;
	size_t hello_bytes;   /* bytes of the stream the hello occupies (all records) */
	size_t need_bytes;    /* SNI_NEED_MORE: no shorter stream can change the answer */
	enum sni_alert alert; /* SNI_INVALID: the alert to send the client */
};

/* Parse the stream prefix buf[0..len). Contract:
 *  - never reads past buf+len, never allocates, never fails for any input;
 *  - SNI_NEED_MORE only while len < SNI_MAX_PEEK;
 *  - the result for a prefix that is complete does not change when more bytes follow;
 *  - `out` is fully written for SNI_FOUND and SNI_NONE; for SNI_NEED_MORE only need_bytes
 *    is, and is more than len: the answer stays SNI_NEED_MORE for every longer prefix
 *    shorter than it (a caller may sleep until that many bytes are there: SO_RCVLOWAT);
 *    for SNI_INVALID only alert is, and a longer stream keeps it. */
enum sni_result sni_parse(const uint8_t *buf, size_t len, struct client_hello *out);

const char *sni_result_to_string(enum sni_result r);
