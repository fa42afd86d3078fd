/* sni.c — find the server_name, ALPN and offered versions in the ClientHello at the start
 * of a byte stream, for routing before anything is relayed or terminated.
 *
 * A pure function over the bytes the caller has peeked so far: it knows TLS record framing
 * and the ClientHello layout (RFC 8446 4.1.2, RFC 6066 3, RFC 7301 3.1) and nothing else.
 * It must never read past buf+len, allocate, or look at bytes beyond SNI_MAX_PEEK; every
 * decision depends only on the bytes before the point where it is taken, which is what
 * makes a complete prefix's answer stable however many bytes follow. */
#include "sni.h"

#include <string.h>

#include "util.h"

#define TLS_RECORD_HEADER 5
#define TLS_CONTENT_HANDSHAKE 22
#define TLS_HANDSHAKE_HEADER 4
#define TLS_HANDSHAKE_CLIENT_HELLO 1
/* RFC 8446 5.2 allows 2^14 + 256 for ciphertext; we accept that much for plaintext too
 * rather than reject a peer that is merely generous. */
#define TLS_RECORD_MAX (16384 + 256)

#define EXT_SERVER_NAME 0
#define EXT_ALPN 16
#define EXT_SUPPORTED_VERSIONS 43
#define SERVER_NAME_HOST_NAME 0

/* A bounds-checked view of the reassembled hello; every read either succeeds or marks the
 * whole parse invalid, so the walk below reads as the RFC's structure definitions. */
struct reader {
	const uint8_t *p;
	size_t left;
};

static bool read_u8(struct reader *r, uint8_t *v) {
	if (r->left < 1)
		return false;
	*v = r->p[0];
	r->p++;
	r->left--;
	return true;
}

static bool read_u16(struct reader *r, uint16_t *v) {
	if (r->left < 2)
		return false;
	*v = (uint16_t)(r->p[0] << 8 | r->p[1]);
	r->p += 2;
	r->left -= 2;
	return true;
}

/* Take `n` bytes as a sub-reader: a vector's body is parsed without being able to run into
 * the bytes after it. */
static bool read_sub(struct reader *r, size_t n, struct reader *sub) {
	if (r->left < n)
		return false;
	sub->p = r->p;
	sub->left = n;
	r->p += n;
	r->left -= n;
	return true;
}

static bool read_vector8(struct reader *r, struct reader *sub) {
	uint8_t n;
	return read_u8(r, &n) && read_sub(r, n, sub);
}

static bool read_vector16(struct reader *r, struct reader *sub) {
	uint16_t n;
	return read_u16(r, &n) && read_sub(r, n, sub);
}

/* RFC 8701: 0x0A0A, 0x1A1A, ... 0xFAFA are reserved so that servers learn to ignore them. */
static bool is_grease(uint16_t v) { return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff); }

/* Every invalid answer says which alert tells the client why (sni.h, enum sni_alert). */
static enum sni_result invalid(struct client_hello *out, enum sni_alert alert) {
	out->alert = alert;
	return SNI_INVALID;
}

/* RFC 6066 wants an ASCII host name without a trailing dot, but clients do send the
 * absolute form ("a.example.com."), and tcpmap.yaml(5) promises that one trailing dot is
 * ignored, as route_host_matches() ignores it: the dot is not part of the returned length.
 * Anything else cannot match a configured host, and bytes such as '/' or NUL must never
 * reach logs or routing keys. Returns the length without the dot, or 0 when invalid. */
static size_t host_name_valid_length(const uint8_t *name, size_t n) {
	if (n > 1 && name[n - 1] == '.')
		n--;
	if (n == 0 || n > 255)
		return 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = name[i];
		bool ldh = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		           (c >= '0' && c <= '9') || c == '-' || c == '_';
		if (c == '.') {
			/* an empty label: leading dot, "..", or a second trailing dot */
			if (i == 0 || name[i - 1] == '.' || i == n - 1)
				return 0;
		} else if (!ldh)
			return 0;
	}
	return n;
}

static enum sni_result parse_server_name(struct reader ext, struct client_hello *out) {
	struct reader list;
	bool have_host = false;

	if (!read_vector16(&ext, &list) || ext.left != 0 || list.left == 0)
		return invalid(out, SNI_ALERT_DECODE_ERROR);
	while (list.left > 0) {
		uint8_t type;
		struct reader name;

		if (!read_u8(&list, &type) || !read_vector16(&list, &name))
			return invalid(out, SNI_ALERT_DECODE_ERROR);
		if (type != SERVER_NAME_HOST_NAME)
			continue; /* RFC 6066: unknown name types are skipped, not fatal */
		/* two host names would make the route depend on which one we picked; RFC 6066
		 * forbids them, and OpenSSL answers them with decode_error too */
		if (have_host)
			return invalid(out, SNI_ALERT_DECODE_ERROR);
		size_t len = host_name_valid_length(name.p, name.left);
		if (len == 0)
			return invalid(out, SNI_ALERT_UNRECOGNIZED_NAME);
		for (size_t i = 0; i < len; i++) {
			uint8_t c = name.p[i];
			out->sni[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
		}
		out->sni[len] = '\0';
		have_host = true;
	}
	return have_host ? SNI_FOUND : SNI_NONE;
}

static enum sni_result parse_alpn(struct reader ext, struct client_hello *out) {
	struct reader list;

	if (!read_vector16(&ext, &list) || ext.left != 0 || list.left == 0)
		return invalid(out, SNI_ALERT_DECODE_ERROR);
	while (list.left > 0) {
		struct reader proto;

		if (!read_vector8(&list, &proto) || proto.left == 0)
			return invalid(out, SNI_ALERT_DECODE_ERROR);
		/* A name that does not fit, or holds a NUL, cannot be kept as a C string without
		 * becoming another name; leave it out rather than report something not offered. */
		if (out->n_alpn >= ELEMENTSOF(out->alpn) || proto.left >= sizeof(out->alpn[0]) ||
		    memchr(proto.p, '\0', proto.left))
			continue;
		memcpy(out->alpn[out->n_alpn], proto.p, proto.left);
		out->alpn[out->n_alpn][proto.left] = '\0';
		out->n_alpn++;
	}
	return SNI_NONE;
}

static enum sni_result parse_supported_versions(struct reader ext, struct client_hello *out) {
	struct reader list;

	if (!read_vector8(&ext, &list) || ext.left != 0 || list.left < 2 || list.left % 2 != 0)
		return invalid(out, SNI_ALERT_DECODE_ERROR);
	while (list.left > 0) {
		uint16_t v = 0;

		(void)read_u16(&list, &v); /* cannot fail: the length is even */
		if (is_grease(v) || out->n_versions >= ELEMENTSOF(out->versions))
			continue;
		out->versions[out->n_versions++] = v;
	}
	return SNI_NONE;
}

/* The ClientHello body, after its 4-byte handshake header. */
static enum sni_result parse_client_hello(struct reader r, struct client_hello *out) {
	struct reader session_id, cipher_suites, compression, extensions;
	uint8_t random[32];
	bool seen_sni = false, seen_alpn = false, seen_versions = false;
	enum sni_result result = SNI_NONE;

	if (!read_u16(&r, &out->legacy_version) || r.left < sizeof(random))
		return invalid(out, SNI_ALERT_DECODE_ERROR);
	r.p += sizeof(random);
	r.left -= sizeof(random);
	if (!read_vector8(&r, &session_id) || session_id.left > 32)
		return invalid(out, SNI_ALERT_DECODE_ERROR);
	if (!read_vector16(&r, &cipher_suites) || cipher_suites.left < 2 ||
	    cipher_suites.left % 2 != 0)
		return invalid(out, SNI_ALERT_DECODE_ERROR);
	if (!read_vector8(&r, &compression) || compression.left < 1)
		return invalid(out, SNI_ALERT_DECODE_ERROR);
	if (r.left == 0)
		return SNI_NONE; /* TLS 1.2 and older may omit extensions altogether */
	if (!read_vector16(&r, &extensions) || r.left != 0)
		return invalid(out, SNI_ALERT_DECODE_ERROR);

	while (extensions.left > 0) {
		uint16_t type;
		struct reader data;
		enum sni_result ext_result = SNI_NONE;
		bool *seen = NULL;

		if (!read_u16(&extensions, &type) || !read_vector16(&extensions, &data))
			return invalid(out, SNI_ALERT_DECODE_ERROR);
		switch (type) {
		case EXT_SERVER_NAME:
			seen = &seen_sni;
			break;
		case EXT_ALPN:
			seen = &seen_alpn;
			break;
		case EXT_SUPPORTED_VERSIONS:
			seen = &seen_versions;
			break;
		default:
			continue;
		}
		/* RFC 8446 4.2: a repeated extension is an error; for these three it would
		 * also make the answer depend on which copy we believed. */
		if (*seen)
			return invalid(out, SNI_ALERT_ILLEGAL_PARAMETER);
		*seen = true;
		if (type == EXT_SERVER_NAME)
			ext_result = parse_server_name(data, out);
		else if (type == EXT_ALPN)
			ext_result = parse_alpn(data, out);
		else
			ext_result = parse_supported_versions(data, out);
		if (ext_result == SNI_INVALID)
			return SNI_INVALID;
		if (ext_result == SNI_FOUND)
			result = SNI_FOUND;
	}
	return result;
}

/* The bytes so far end before the hello does: nothing can change before `need` are there.
 * Every record carries at least one byte of the hello, so `need` never passes
 * SNI_MAX_PEEK for a hello within SNI_MAX_HELLO; the check only keeps the contract's
 * promise that a caller who peeked all it may is never told to wait. */
static enum sni_result need_more(size_t len, size_t need, struct client_hello *out) {
	if (len >= SNI_MAX_PEEK || need > SNI_MAX_PEEK)
		return invalid(out, SNI_ALERT_RECORD_OVERFLOW);
	out->need_bytes = need;
	return SNI_NEED_MORE;
}

enum sni_result sni_parse(const uint8_t *buf, size_t len, struct client_hello *out) {
	/* The handshake message gathered from its records. Its size is what the contract
	 * bounds anyway, and a stack buffer keeps the "never allocates" promise. */
	uint8_t message[SNI_MAX_HELLO];
	size_t got = 0, need = TLS_HANDSHAKE_HEADER;
	size_t avail = MIN(len, (size_t)SNI_MAX_PEEK);
	size_t pos = 0;
	bool first_record = true;
	enum sni_result r;

	memset(out, 0, sizeof(*out));

	while (got < need) {
		size_t record_len;

		/* Judge the header byte by byte, so that text protocols are told apart from
		 * TLS from their first byte and never wait for a fifth. */
		if (pos >= avail)
			return need_more(len, pos + 1, out);
		if (buf[pos] != TLS_CONTENT_HANDSHAKE)
			return first_record ? SNI_NOT_TLS
			                    : invalid(out, SNI_ALERT_UNEXPECTED_MESSAGE);
		if (pos + 1 >= avail)
			return need_more(len, pos + 2, out);
		if (buf[pos + 1] != 3)
			return first_record ? SNI_NOT_TLS : invalid(out, SNI_ALERT_DECODE_ERROR);
		if (pos + TLS_RECORD_HEADER > avail)
			return need_more(len, pos + TLS_RECORD_HEADER, out);
		record_len = (size_t)buf[pos + 3] << 8 | buf[pos + 4];
		/* RFC 8446 5.1: handshake records are never empty */
		if (record_len == 0)
			return invalid(out, SNI_ALERT_DECODE_ERROR);
		if (record_len > TLS_RECORD_MAX)
			return invalid(out, SNI_ALERT_RECORD_OVERFLOW);
		pos += TLS_RECORD_HEADER;
		first_record = false;

		/* Only the bytes of this one message are taken from the record; the header is
		 * taken first so that its length can bound everything that follows. */
		while (record_len > 0 && got < need) {
			size_t take = MIN(record_len, need - got);
			if (take > avail - pos) {
				memcpy(message + got, buf + pos, avail - pos);
				got += avail - pos;
				if (got >= 1 && message[0] != TLS_HANDSHAKE_CLIENT_HELLO)
					return invalid(out, SNI_ALERT_UNEXPECTED_MESSAGE);
				/* the message type is judged as soon as its byte is there */
				return need_more(len, got == 0 ? pos + 1 : pos + take, out);
			}
			memcpy(message + got, buf + pos, take);
			got += take;
			pos += take;
			record_len -= take;
			if (message[0] != TLS_HANDSHAKE_CLIENT_HELLO)
				return invalid(out, SNI_ALERT_UNEXPECTED_MESSAGE);
			if (need == TLS_HANDSHAKE_HEADER && got == TLS_HANDSHAKE_HEADER) {
				size_t body = (size_t)message[1] << 16 | (size_t)message[2] << 8 |
				              message[3];
				/* Only handshake bytes count, not record headers: a hello that is
				 * legal in one record stays legal however it is framed. */
				if (body > SNI_MAX_HELLO - TLS_HANDSHAKE_HEADER)
					return invalid(out, SNI_ALERT_RECORD_OVERFLOW);
				need += body;
			}
		}
	}

	r = parse_client_hello(
	        (struct reader){message + TLS_HANDSHAKE_HEADER, need - TLS_HANDSHAKE_HEADER}, out);
	if (r == SNI_INVALID)
		return r;
	out->hello_bytes = pos;
	return r;
}

const char *sni_result_to_string(enum sni_result r) {
	switch (r) {
	case SNI_NEED_MORE:
		return "need_more";
	case SNI_FOUND:
		return "found";
	case SNI_NONE:
		return "none";
	case SNI_NOT_TLS:
		return "not_tls";
	case SNI_INVALID:
		return "invalid";
	}
	return "unknown";
}
