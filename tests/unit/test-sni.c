/* test-sni.c — the ClientHello parser against captured and hand-built hellos.
 *
 * Every buffer handed to sni_parse() is copied into a heap block of exactly its length,
 * so that under ASan (SAN=1) a read past `len` is a crash, not a silent pass. Nothing here
 * touches the network: the captured hellos live in hellos.h as byte arrays. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "hellos.h"
#include "sni.h"
#include "util.h"

/* ---- running the parser on exact-size copies ---- */

static enum sni_result parse_exact(const uint8_t *bytes, size_t len, struct client_hello *out) {
	uint8_t *copy = malloc(len ? len : 1);
	enum sni_result r;

	assert_non_null(copy);
	memcpy(copy, bytes, len);
	r = sni_parse(copy, len, out);
	free(copy);
	return r;
}

/* Feed the stream as it would arrive one byte at a time: every strict prefix must ask for
 * more, and the whole must give `expected`. */
static void assert_byte_by_byte(const uint8_t *bytes, size_t len, enum sni_result expected) {
	struct client_hello hello;

	for (size_t n = 0; n < len; n++) {
		enum sni_result r = parse_exact(bytes, n, &hello);
		if (r != SNI_NEED_MORE)
			fail_msg("prefix of %zu/%zu bytes gave %s", n, len,
			         sni_result_to_string(r));
	}
	assert_int_equal(parse_exact(bytes, len, &hello), expected);
}

/* A complete hello's answer must not change whatever follows it. */
static void assert_stable_with_trailing(const uint8_t *bytes, size_t len) {
	static const uint8_t tails[][6] = {
	        {0x14, 0x03, 0x03, 0x00, 0x01, 0x01}, /* TLS 1.3 middlebox ChangeCipherSpec */
	        {0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	        {0x16, 0x03, 0x01, 0xff, 0xff, 0x00},
	};
	struct client_hello first, again;
	enum sni_result r = parse_exact(bytes, len, &first);
	uint8_t *longer = malloc(len + sizeof(tails[0]));

	assert_non_null(longer);
	memcpy(longer, bytes, len);
	for (size_t t = 0; t < ELEMENTSOF(tails); t++)
		for (size_t extra = 1; extra <= sizeof(tails[t]); extra++) {
			memcpy(longer + len, tails[t], extra);
			assert_int_equal(parse_exact(longer, len + extra, &again), r);
			if (r == SNI_FOUND || r == SNI_NONE)
				assert_memory_equal(&first, &again, sizeof(first));
		}
	free(longer);
}

/* ---- building hellos by hand ---- */

struct bytes {
	uint8_t data[SNI_MAX_PEEK + 64];
	size_t len;
};

static void put_u8(struct bytes *b, uint8_t v) {
	assert_true(b->len < sizeof(b->data));
	b->data[b->len++] = v;
}

static void put_u16(struct bytes *b, uint16_t v) {
	put_u8(b, (uint8_t)(v >> 8));
	put_u8(b, (uint8_t)v);
}

static void put_bytes(struct bytes *b, const void *p, size_t n) {
	assert_true(b->len + n <= sizeof(b->data));
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

/* Vectors are written with a placeholder length patched when they close, so the builder
 * can also be told to lie about a length. */
static size_t open_vector(struct bytes *b, size_t width) {
	size_t at = b->len;
	for (size_t i = 0; i < width; i++)
		put_u8(b, 0);
	return at;
}

static void close_vector(struct bytes *b, size_t at, size_t width, long adjust) {
	size_t n = (size_t)((long)(b->len - at - width) + adjust);
	for (size_t i = 0; i < width; i++)
		b->data[at + i] = (uint8_t)(n >> (8 * (width - 1 - i)));
}

struct hello_spec {
	const char *sni;          /* NULL: no server_name extension */
	size_t sni_len;           /* 0: strlen(sni); lets a name hold NUL */
	const char *const *alpn;  /* NULL-terminated */
	const uint16_t *versions; /* 0-terminated; NULL: no supported_versions */
	bool grease;              /* GREASE cipher suite and extension */
	size_t padding;           /* bytes of a padding (21) extension; 0: none */
	long sni_list_adjust;     /* lie in the server_name list length */
	long sni_ext_adjust;      /* lie in the server_name extension length */
	long extensions_adjust;   /* lie in the extensions block length */
	bool duplicate_sni;
	bool two_host_names; /* a second host_name entry in the one server_name list */
	bool no_extensions;  /* TLS 1.2 style hello that ends after compression methods */
};

static void put_server_name(struct bytes *b, const struct hello_spec *s) {
	size_t ext, list, name;
	size_t n = s->sni_len ? s->sni_len : strlen(s->sni);

	put_u16(b, 0);
	ext = open_vector(b, 2);
	list = open_vector(b, 2);
	put_u8(b, 0);
	name = open_vector(b, 2);
	put_bytes(b, s->sni, n);
	close_vector(b, name, 2, 0);
	if (s->two_host_names) {
		put_u8(b, 0);
		name = open_vector(b, 2);
		put_bytes(b, "b.example", 9);
		close_vector(b, name, 2, 0);
	}
	close_vector(b, list, 2, s->sni_list_adjust);
	close_vector(b, ext, 2, s->sni_ext_adjust);
}

/* The handshake message (header included) for `s`. */
static void build_hello(const struct hello_spec *s, struct bytes *msg) {
	size_t body, ciphers, exts;
	uint8_t random[32];

	memset(msg, 0, sizeof(*msg));
	memset(random, 0x5a, sizeof(random));
	put_u8(msg, 1);
	body = open_vector(msg, 3);
	put_u16(msg, 0x0303);
	put_bytes(msg, random, sizeof(random));
	put_u8(msg, 32);
	put_bytes(msg, random, 32); /* session id */
	ciphers = open_vector(msg, 2);
	if (s->grease)
		put_u16(msg, 0x2a2a);
	put_u16(msg, 0x1301);
	put_u16(msg, 0x1302);
	put_u16(msg, 0xc02f);
	close_vector(msg, ciphers, 2, 0);
	put_u8(msg, 1);
	put_u8(msg, 0);
	if (s->no_extensions) {
		close_vector(msg, body, 3, 0);
		return;
	}

	exts = open_vector(msg, 2);
	if (s->grease) {
		put_u16(msg, 0x3a3a);
		put_u16(msg, 1);
		put_u8(msg, 0);
	}
	if (s->sni) {
		put_server_name(msg, s);
		if (s->duplicate_sni)
			put_server_name(msg, s);
	}
	if (s->alpn) {
		size_t ext, list;
		put_u16(msg, 16);
		ext = open_vector(msg, 2);
		list = open_vector(msg, 2);
		for (const char *const *p = s->alpn; *p; p++) {
			put_u8(msg, (uint8_t)strlen(*p));
			put_bytes(msg, *p, strlen(*p));
		}
		close_vector(msg, list, 2, 0);
		close_vector(msg, ext, 2, 0);
	}
	if (s->versions) {
		size_t ext, list;
		put_u16(msg, 43);
		ext = open_vector(msg, 2);
		list = open_vector(msg, 1);
		for (const uint16_t *v = s->versions; *v; v++)
			put_u16(msg, *v);
		close_vector(msg, list, 1, 0);
		close_vector(msg, ext, 2, 0);
	}
	if (s->padding) {
		put_u16(msg, 21);
		put_u16(msg, (uint16_t)s->padding);
		for (size_t i = 0; i < s->padding; i++)
			put_u8(msg, 0);
	}
	close_vector(msg, exts, 2, s->extensions_adjust);
	close_vector(msg, body, 3, 0);
}

/* Frame `msg` into handshake records carrying `sizes[i]` bytes each; the last record
 * takes whatever is left. */
static void frame(const struct bytes *msg, const size_t *sizes, size_t n_sizes,
                  struct bytes *stream) {
	size_t off = 0;

	memset(stream, 0, sizeof(*stream));
	for (size_t i = 0; off < msg->len; i++) {
		size_t n = i < n_sizes ? MIN(sizes[i], msg->len - off) : msg->len - off;
		put_u8(stream, 0x16);
		put_u16(stream, i == 0 ? 0x0301 : 0x0303);
		put_u16(stream, (uint16_t)n);
		put_bytes(stream, msg->data + off, n);
		off += n;
	}
}

static void build_stream(const struct hello_spec *s, struct bytes *stream) {
	static struct bytes msg;
	build_hello(s, &msg);
	frame(&msg, NULL, 0, stream);
}

static const uint16_t tls13_versions[] = {0x0304, 0x0303, 0};
static const char *const h2_alpn[] = {"h2", "http/1.1", NULL};

/* ---- captured hellos ---- */

static void test_captured_tls12_sni(void **state) {
	struct client_hello h;
	(void)state;

	assert_int_equal(parse_exact(hello_tls12_sni, sizeof(hello_tls12_sni), &h), SNI_FOUND);
	assert_string_equal(h.sni, "example.com"); /* sent as Example.COM */
	assert_int_equal(h.legacy_version, 0x0303);
	assert_int_equal(h.n_versions, 0); /* -tls1_2 sends no supported_versions */
	assert_int_equal(h.n_alpn, 0);
	assert_int_equal(h.hello_bytes, sizeof(hello_tls12_sni));
}

static void test_captured_tls13_sni(void **state) {
	struct client_hello h;
	(void)state;

	assert_int_equal(parse_exact(hello_tls13_sni, sizeof(hello_tls13_sni), &h), SNI_FOUND);
	assert_string_equal(h.sni, "example.com");
	assert_int_equal(h.legacy_version, 0x0303);
	assert_int_equal(h.n_versions, 1);
	assert_int_equal(h.versions[0], 0x0304);
	assert_int_equal(h.hello_bytes, sizeof(hello_tls13_sni));
}

static void test_captured_no_sni(void **state) {
	struct client_hello h;
	(void)state;

	assert_int_equal(parse_exact(hello_tls12_nosni, sizeof(hello_tls12_nosni), &h), SNI_NONE);
	assert_string_equal(h.sni, "");
	assert_int_equal(h.hello_bytes, sizeof(hello_tls12_nosni));
	assert_int_equal(parse_exact(hello_tls13_nosni, sizeof(hello_tls13_nosni), &h), SNI_NONE);
	assert_int_equal(h.n_versions, 1);
	assert_int_equal(h.versions[0], 0x0304);
}

static void test_captured_alpn(void **state) {
	static const uint16_t expected[] = {0x0304, 0x0303, 0x0302, 0x0301};
	struct client_hello h;
	(void)state;

	assert_int_equal(parse_exact(hello_tls13_alpn, sizeof(hello_tls13_alpn), &h), SNI_FOUND);
	assert_string_equal(h.sni, "example.com");
	assert_int_equal(h.n_alpn, 2);
	assert_string_equal(h.alpn[0], "h2");
	assert_string_equal(h.alpn[1], "http/1.1");
	assert_int_equal(h.n_versions, ELEMENTSOF(expected));
	for (size_t i = 0; i < ELEMENTSOF(expected); i++)
		assert_int_equal(h.versions[i], expected[i]);
}

static void test_captured_byte_by_byte(void **state) {
	(void)state;
	assert_byte_by_byte(hello_tls12_sni, sizeof(hello_tls12_sni), SNI_FOUND);
	assert_byte_by_byte(hello_tls13_sni, sizeof(hello_tls13_sni), SNI_FOUND);
	assert_byte_by_byte(hello_tls12_nosni, sizeof(hello_tls12_nosni), SNI_NONE);
	assert_byte_by_byte(hello_tls13_nosni, sizeof(hello_tls13_nosni), SNI_NONE);
	assert_byte_by_byte(hello_tls13_alpn, sizeof(hello_tls13_alpn), SNI_FOUND);
}

static void test_captured_stable(void **state) {
	(void)state;
	assert_stable_with_trailing(hello_tls12_sni, sizeof(hello_tls12_sni));
	assert_stable_with_trailing(hello_tls13_sni, sizeof(hello_tls13_sni));
	assert_stable_with_trailing(hello_tls12_nosni, sizeof(hello_tls12_nosni));
	assert_stable_with_trailing(hello_tls13_alpn, sizeof(hello_tls13_alpn));
}

/* The captured TLS 1.3 hello re-framed into two records, split inside the SNI. */
static void test_captured_reframed(void **state) {
	static struct bytes msg, stream;
	struct client_hello h;
	static const size_t sizes[] = {100};
	(void)state;

	msg.len = sizeof(hello_tls13_alpn) - 5;
	memcpy(msg.data, hello_tls13_alpn + 5, msg.len);
	frame(&msg, sizes, ELEMENTSOF(sizes), &stream);
	assert_int_equal(stream.len, sizeof(hello_tls13_alpn) + 5);
	assert_byte_by_byte(stream.data, stream.len, SNI_FOUND);
	assert_int_equal(parse_exact(stream.data, stream.len, &h), SNI_FOUND);
	assert_string_equal(h.sni, "example.com");
	assert_int_equal(h.hello_bytes, stream.len);
}

/* ---- hand-built hellos ---- */

static void test_grease_removed(void **state) {
	static const uint16_t versions[] = {0x5a5a, 0x0304, 0xfafa, 0x0303, 0};
	struct hello_spec s = {.sni = "grease.example", .versions = versions, .grease = true};
	static struct bytes stream;
	struct client_hello h;
	(void)state;

	build_stream(&s, &stream);
	assert_int_equal(parse_exact(stream.data, stream.len, &h), SNI_FOUND);
	assert_string_equal(h.sni, "grease.example");
	assert_int_equal(h.n_versions, 2);
	assert_int_equal(h.versions[0], 0x0304);
	assert_int_equal(h.versions[1], 0x0303);
	assert_byte_by_byte(stream.data, stream.len, SNI_FOUND);
}

/* A post-quantum sized hello (about 2 KiB) in three records. */
static void test_big_hello_three_records(void **state) {
	static const size_t sizes[] = {700, 700};
	struct hello_spec s = {.sni = "pq.example.com",
	                       .alpn = h2_alpn,
	                       .versions = tls13_versions,
	                       .padding = 1900};
	static struct bytes msg, stream;
	struct client_hello h;
	(void)state;

	build_hello(&s, &msg);
	assert_true(msg.len > 2000 && msg.len < 2200);
	frame(&msg, sizes, ELEMENTSOF(sizes), &stream);
	assert_int_equal(stream.len, msg.len + 3 * 5);

	assert_int_equal(parse_exact(stream.data, stream.len, &h), SNI_FOUND);
	assert_string_equal(h.sni, "pq.example.com");
	assert_int_equal(h.n_alpn, 2);
	assert_int_equal(h.n_versions, 2);
	assert_int_equal(h.hello_bytes, stream.len);

	/* only the first record: a parser that stops there would see a truncated hello */
	assert_int_equal(parse_exact(stream.data, 705, &h), SNI_NEED_MORE);
	assert_int_equal(parse_exact(stream.data, 710, &h), SNI_NEED_MORE);

	assert_byte_by_byte(stream.data, stream.len, SNI_FOUND);
	assert_stable_with_trailing(stream.data, stream.len);
}

/* Records split the handshake header itself, one byte per record. */
static void test_tiny_records(void **state) {
	static const size_t sizes[] = {1, 1, 1, 1, 1, 3};
	struct hello_spec s = {.sni = "tiny.example"};
	static struct bytes msg, stream;
	struct client_hello h;
	(void)state;

	build_hello(&s, &msg);
	frame(&msg, sizes, ELEMENTSOF(sizes), &stream);
	assert_byte_by_byte(stream.data, stream.len, SNI_FOUND);
	assert_int_equal(parse_exact(stream.data, stream.len, &h), SNI_FOUND);
	assert_string_equal(h.sni, "tiny.example");
	assert_int_equal(h.hello_bytes, stream.len);
}

static void test_no_extensions(void **state) {
	struct hello_spec s = {.no_extensions = true};
	static struct bytes stream;
	struct client_hello h;
	(void)state;

	build_stream(&s, &stream);
	assert_int_equal(parse_exact(stream.data, stream.len, &h), SNI_NONE);
	assert_byte_by_byte(stream.data, stream.len, SNI_NONE);
}

static void test_not_tls(void **state) {
	static const char *const texts[] = {"SSH-2.0-OpenSSH\r\n", "GET / HTTP/1.1", "\x80\x2e",
	                                    "\x16\x02\x00"};
	struct client_hello h;
	(void)state;

	for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
		const uint8_t *t = (const uint8_t *)texts[i];
		/* decided as soon as the deciding byte is there, and never revised */
		size_t decisive = t[0] == 0x16 ? 2 : 1;
		for (size_t n = decisive; n <= strlen(texts[i]); n++)
			assert_int_equal(parse_exact(t, n, &h), SNI_NOT_TLS);
	}
	assert_int_equal(parse_exact((const uint8_t *)"", 0, &h), SNI_NEED_MORE);
	assert_int_equal(parse_exact((const uint8_t *)"\x16", 1, &h), SNI_NEED_MORE);
	assert_int_equal(parse_exact((const uint8_t *)"\x16\x03", 2, &h), SNI_NEED_MORE);
}

static void test_record_lengths(void **state) {
	static const uint8_t too_long[] = {0x16, 0x03, 0x01, 0x41, 0x01, 0x01}; /* 16641 */
	static const uint8_t empty[] = {0x16, 0x03, 0x01, 0x00, 0x00, 0x01};
	static const uint8_t longest[] = {0x16, 0x03, 0x01, 0x41, 0x00, 0x01}; /* 16640 */
	struct client_hello h;
	(void)state;

	assert_int_equal(parse_exact(too_long, 5, &h), SNI_INVALID);
	assert_int_equal(parse_exact(too_long, 6, &h), SNI_INVALID);
	assert_int_equal(parse_exact(empty, 5, &h), SNI_INVALID);
	assert_int_equal(parse_exact(longest, 6, &h), SNI_NEED_MORE);
}

/* After the first record, anything but another handshake record is malformed. */
static void test_interleaved_record(void **state) {
	static const size_t sizes[] = {50};
	struct hello_spec s = {.sni = "a.example"};
	static struct bytes msg, stream;
	struct client_hello h;
	(void)state;

	build_hello(&s, &msg);
	frame(&msg, sizes, ELEMENTSOF(sizes), &stream);
	stream.data[55] = 0x15; /* the second record becomes an alert */
	assert_int_equal(parse_exact(stream.data, 55, &h), SNI_NEED_MORE);
	assert_int_equal(parse_exact(stream.data, 56, &h), SNI_INVALID);
	assert_int_equal(parse_exact(stream.data, stream.len, &h), SNI_INVALID);
	stream.data[55] = 0x16;
	stream.data[56] = 0x02;
	assert_int_equal(parse_exact(stream.data, 57, &h), SNI_INVALID);
}

static void test_not_client_hello(void **state) {
	static const uint8_t server_hello[] = {0x16, 0x03, 0x03, 0x00, 0x30, 0x02, 0x00};
	struct client_hello h;
	(void)state;

	assert_int_equal(parse_exact(server_hello, 5, &h), SNI_NEED_MORE);
	assert_int_equal(parse_exact(server_hello, 6, &h), SNI_INVALID);
	assert_int_equal(parse_exact(server_hello, 7, &h), SNI_INVALID);
}

static void test_bad_lengths(void **state) {
	static const struct hello_spec bad[] = {
	        {.sni = "x.example", .sni_list_adjust = -1},
	        {.sni = "x.example", .sni_list_adjust = 1},
	        {.sni = "x.example", .sni_ext_adjust = 1},    /* runs past the extensions */
	        {.sni = "x.example", .sni_ext_adjust = -1},   /* list longer than extension */
	        {.sni = "x.example", .extensions_adjust = 1}, /* past the hello's end */
	        {.sni = "x.example", .extensions_adjust = -1},
	        {.sni = "x.example", .duplicate_sni = true},
	};
	static struct bytes stream;
	struct client_hello h;
	(void)state;

	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		build_stream(&bad[i], &stream);
		if (parse_exact(stream.data, stream.len, &h) != SNI_INVALID)
			fail_msg("case %zu is not invalid", i);
		assert_byte_by_byte(stream.data, stream.len, SNI_INVALID);
	}
}

/* A hello whose handshake length promises more than its records carry, followed by
 * something that is not a record. */
static void test_truncated_handshake(void **state) {
	struct hello_spec s = {.sni = "x.example"};
	static struct bytes msg, stream;
	struct client_hello h;
	(void)state;

	build_hello(&s, &msg);
	msg.data[3] += 10; /* body length 10 bytes longer than the body */
	frame(&msg, NULL, 0, &stream);
	assert_int_equal(parse_exact(stream.data, stream.len, &h), SNI_NEED_MORE);
	put_bytes(&stream, "GET / HTTP/1.1\r\n", 16);
	assert_int_equal(parse_exact(stream.data, stream.len, &h), SNI_INVALID);
}

static void test_host_names(void **state) {
	static const struct {
		const char *name;
		size_t len;
	} bad[] = {
	        {"", 0},       {"a\0b", 3},        {"a/b", 0},        {"a\x01.example", 0},
	        {"a b", 0},    {".example", 0},    {"a..example", 0}, {"example..", 0},
	        {"ex\x7f", 0}, {"caf\xc3\xa9", 0}, {".", 0},          {"a..", 0},
	};
	char long_name[300];
	static struct bytes stream;
	struct client_hello h;
	(void)state;

	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		struct hello_spec s = {.sni = bad[i].name, .sni_len = bad[i].len};
		build_stream(&s, &stream);
		if (parse_exact(stream.data, stream.len, &h) != SNI_INVALID)
			fail_msg("host name %zu accepted", i);
	}

	memset(long_name, 'a', sizeof(long_name));
	long_name[255] = '\0';
	build_stream(&(struct hello_spec){.sni = long_name}, &stream);
	assert_int_equal(parse_exact(stream.data, stream.len, &h), SNI_FOUND);
	assert_int_equal(strlen(h.sni), 255);
	long_name[255] = 'a';
	long_name[256] = '\0';
	build_stream(&(struct hello_spec){.sni = long_name}, &stream);
	assert_int_equal(parse_exact(stream.data, stream.len, &h), SNI_INVALID);

	build_stream(&(struct hello_spec){.sni = "My_Host-1.EXAMPLE.com"}, &stream);
	assert_int_equal(parse_exact(stream.data, stream.len, &h), SNI_FOUND);
	assert_string_equal(h.sni, "my_host-1.example.com");

	/* the absolute form: one trailing dot is dropped, so "a.example.com." routes as
	 * "a.example.com" does in route_host_matches() */
	build_stream(&(struct hello_spec){.sni = "A.Example.com."}, &stream);
	assert_int_equal(parse_exact(stream.data, stream.len, &h), SNI_FOUND);
	assert_string_equal(h.sni, "a.example.com");
	long_name[255] = '\0';
	long_name[254] = '.';
	build_stream(&(struct hello_spec){.sni = long_name}, &stream);
	assert_int_equal(parse_exact(stream.data, stream.len, &h), SNI_FOUND);
	assert_int_equal(strlen(h.sni), 254);
}

static void test_alpn_limits(void **state) {
	char long_proto[80];
	const char *const many[] = {"a", "b", "c", "d", long_proto, "e", "f", "g", "h", "i", NULL};
	static struct bytes stream;
	struct client_hello h;
	(void)state;

	memset(long_proto, 'x', sizeof(long_proto) - 1);
	long_proto[sizeof(long_proto) - 1] = '\0';
	build_stream(&(struct hello_spec){.sni = "a.example", .alpn = many}, &stream);
	assert_int_equal(parse_exact(stream.data, stream.len, &h), SNI_FOUND);
	/* the over-long name is left out rather than cut into another name */
	assert_int_equal(h.n_alpn, 8);
	assert_string_equal(h.alpn[3], "d");
	assert_string_equal(h.alpn[4], "e");
	assert_string_equal(h.alpn[7], "h");

	build_stream(
	        &(struct hello_spec){.sni = "a.example", .alpn = (const char *const[]){"", NULL}},
	        &stream);
	assert_int_equal(parse_exact(stream.data, stream.len, &h), SNI_INVALID);
}

/* The hello limit counts handshake bytes only: a hello of exactly SNI_MAX_HELLO bytes is
 * found however it is framed (one record, four, or one byte per record), one byte more is
 * invalid with record_overflow, and that is known from the handshake header. */
static void test_hello_limit(void **state) {
	static struct bytes msg, stream, split;
	static const size_t quarters[] = {4096, 4096, 4096};
	static const size_t ones[SNI_MAX_HELLO] = {[0 ... SNI_MAX_HELLO - 1] = 1};
	struct hello_spec s = {.sni = "big.example", .padding = 100};
	struct client_hello h;
	size_t base;
	(void)state;

	build_hello(&s, &msg);
	base = msg.len - 100; /* handshake bytes without padding */
	s.padding = SNI_MAX_HELLO - base;
	build_hello(&s, &msg);
	assert_int_equal(msg.len, SNI_MAX_HELLO);

	/* a legal 16 384-byte hello in one maximal record: 16 389 bytes on the wire */
	frame(&msg, NULL, 0, &stream);
	assert_int_equal(parse_exact(stream.data, stream.len, &h), SNI_FOUND);
	assert_int_equal(h.hello_bytes, SNI_MAX_HELLO + 5);
	assert_int_equal(parse_exact(stream.data, stream.len - 1, &h), SNI_NEED_MORE);
	assert_int_equal(h.need_bytes, stream.len);

	/* the same hello in four records, and in one-byte records (6 * 16 384 bytes) */
	frame(&msg, quarters, ELEMENTSOF(quarters), &split);
	assert_int_equal(parse_exact(split.data, split.len, &h), SNI_FOUND);
	assert_int_equal(h.hello_bytes, SNI_MAX_HELLO + 4 * 5);
	frame(&msg, ones, ELEMENTSOF(ones), &split);
	assert_int_equal(split.len, SNI_MAX_PEEK);
	assert_int_equal(parse_exact(split.data, split.len, &h), SNI_FOUND);
	assert_string_equal(h.sni, "big.example");
	assert_int_equal(parse_exact(split.data, split.len - 1, &h), SNI_NEED_MORE);

	s.padding++;
	build_stream(&s, &stream);
	assert_int_equal(parse_exact(stream.data, 9, &h), SNI_INVALID);
	assert_int_equal(h.alert, SNI_ALERT_RECORD_OVERFLOW);
	assert_int_equal(parse_exact(stream.data, stream.len, &h), SNI_INVALID);
	assert_int_equal(h.alert, SNI_ALERT_RECORD_OVERFLOW);

	/* a handshake length far past the limit, declared in the first bytes */
	{
		static const uint8_t huge[] = {0x16, 0x03, 0x01, 0x00, 0x04,
		                               0x01, 0x00, 0x80, 0x00};
		assert_int_equal(parse_exact(huge, 8, &h), SNI_NEED_MORE);
		assert_int_equal(parse_exact(huge, 9, &h), SNI_INVALID);
		assert_int_equal(h.alert, SNI_ALERT_RECORD_OVERFLOW);
	}
	/* a record longer than TLS allows */
	{
		static const uint8_t long_record[] = {0x16, 0x03, 0x01, 0x41, 0x01};
		assert_int_equal(parse_exact(long_record, 5, &h), SNI_INVALID);
		assert_int_equal(h.alert, SNI_ALERT_RECORD_OVERFLOW);
	}
}

/* The issue's own cases: what a client is told for each malformed hello. */
static void test_alerts(void **state) {
	static const struct {
		struct hello_spec spec;
		enum sni_alert alert;
	} cases[] = {
	        /* an empty server_name extension: its 5 bytes read as the next extension */
	        {{.sni = "", .sni_ext_adjust = -5}, SNI_ALERT_DECODE_ERROR},
	        {{.sni = "a.example", .duplicate_sni = true}, SNI_ALERT_ILLEGAL_PARAMETER},
	        /* RFC 6066: one host name a list; two would make the route a matter of choice */
	        {{.sni = "a.example", .two_host_names = true}, SNI_ALERT_DECODE_ERROR},
	        {{.sni = "a..example.com"}, SNI_ALERT_UNRECOGNIZED_NAME},
	        {{.sni = "caf\xc3\xa9.example"}, SNI_ALERT_UNRECOGNIZED_NAME},
	        {{.sni = "a.example", .extensions_adjust = 1}, SNI_ALERT_DECODE_ERROR},
	};
	static struct bytes stream;
	char long_name[301];
	struct client_hello h;
	(void)state;

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		build_stream(&cases[i].spec, &stream);
		if (parse_exact(stream.data, stream.len, &h) != SNI_INVALID)
			fail_msg("case %zu not invalid", i);
		if (h.alert != cases[i].alert)
			fail_msg("case %zu: alert %d, not %d", i, h.alert, cases[i].alert);
	}

	memset(long_name, 'a', 300);
	long_name[300] = '\0';
	build_stream(&(struct hello_spec){.sni = long_name}, &stream);
	assert_int_equal(parse_exact(stream.data, stream.len, &h), SNI_INVALID);
	assert_int_equal(h.alert, SNI_ALERT_UNRECOGNIZED_NAME);

	/* a second record that is not a handshake record, a message that is no hello */
	{
		static const uint8_t alert_record[] = {0x16, 0x03, 0x01, 0x00, 0x01, 0x01,
		                                       0x15, 0x03, 0x03, 0x00, 0x02};
		static const uint8_t server_hello[] = {0x16, 0x03, 0x03, 0x00, 0x04, 0x02};
		assert_int_equal(parse_exact(alert_record, sizeof alert_record, &h), SNI_INVALID);
		assert_int_equal(h.alert, SNI_ALERT_UNEXPECTED_MESSAGE);
		assert_int_equal(parse_exact(server_hello, sizeof server_hello, &h), SNI_INVALID);
		assert_int_equal(h.alert, SNI_ALERT_UNEXPECTED_MESSAGE);
	}
}

/* need_bytes says how long the parser can sleep: every prefix shorter than it still needs
 * more, and at need_bytes the answer (or the need) moves on. */
static void test_need_bytes(void **state) {
	static struct bytes msg, stream;
	static const size_t sizes[] = {1, 2, 3, 100};
	struct client_hello h;
	(void)state;

	build_hello(&(struct hello_spec){.sni = "a.example", .versions = tls13_versions}, &msg);
	frame(&msg, sizes, ELEMENTSOF(sizes), &stream);
	size_t wakeups = 0;
	for (size_t n = 0; n < stream.len;) {
		assert_int_equal(parse_exact(stream.data, n, &h), SNI_NEED_MORE);
		size_t need = h.need_bytes;
		assert_true(need > n && need <= stream.len);
		for (size_t k = n; k < need; k++) {
			assert_int_equal(parse_exact(stream.data, k, &h), SNI_NEED_MORE);
			assert_int_equal(h.need_bytes, need);
		}
		n = need;
		wakeups++;
	}
	assert_int_equal(parse_exact(stream.data, stream.len, &h), SNI_FOUND);
	/* per record: its two judged header bytes, the rest of its header, its body, and the
	 * hello's own header in the first; not one per byte */
	printf("# %zu wake-ups for %zu bytes in 5 records\n", wakeups, stream.len);
	assert_true(wakeups <= 5 * 4 + 2);
}

static void test_result_to_string(void **state) {
	(void)state;
	assert_string_equal(sni_result_to_string(SNI_NEED_MORE), "need_more");
	assert_string_equal(sni_result_to_string(SNI_FOUND), "found");
	assert_string_equal(sni_result_to_string(SNI_NONE), "none");
	assert_string_equal(sni_result_to_string(SNI_NOT_TLS), "not_tls");
	assert_string_equal(sni_result_to_string(SNI_INVALID), "invalid");
	assert_string_equal(sni_result_to_string((enum sni_result)99), "unknown");
}

int main(void) {
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_captured_tls12_sni),
	        cmocka_unit_test(test_captured_tls13_sni),
	        cmocka_unit_test(test_captured_no_sni),
	        cmocka_unit_test(test_captured_alpn),
	        cmocka_unit_test(test_captured_byte_by_byte),
	        cmocka_unit_test(test_captured_stable),
	        cmocka_unit_test(test_captured_reframed),
	        cmocka_unit_test(test_grease_removed),
	        cmocka_unit_test(test_big_hello_three_records),
	        cmocka_unit_test(test_tiny_records),
	        cmocka_unit_test(test_no_extensions),
	        cmocka_unit_test(test_not_tls),
	        cmocka_unit_test(test_record_lengths),
	        cmocka_unit_test(test_interleaved_record),
	        cmocka_unit_test(test_not_client_hello),
	        cmocka_unit_test(test_bad_lengths),
	        cmocka_unit_test(test_truncated_handshake),
	        cmocka_unit_test(test_host_names),
	        cmocka_unit_test(test_alpn_limits),
	        cmocka_unit_test(test_hello_limit),
	        cmocka_unit_test(test_alerts),
	        cmocka_unit_test(test_need_bytes),
	        cmocka_unit_test(test_result_to_string),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
