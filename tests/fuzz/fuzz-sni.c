/* fuzz-sni.c — libFuzzer harness for sni_parse(): checks the contract in sni.h, not just
 * the absence of crashes.
 *
 * For each input it checks that the answer fits the result, that strict prefixes agree
 * with the whole wherever they already decided (an invalid one with the same alert), that
 * no prefix shorter than a need_bytes answer decides anything, and that re-framing a
 * complete hello into other record sizes, down to one byte per record, changes nothing
 * but hello_bytes: the limit counts handshake bytes, not record headers. A violation is
 * __builtin_trap(), so libFuzzer keeps the input. Prefixes are parsed from exact-size heap copies,
 * which lets ASan see any read past `len`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sni.h"
#include "util.h"

#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x))                                                                          \
			__builtin_trap();                                                          \
	} while (0)

static enum sni_result parse_copy(const uint8_t *data, size_t len, struct client_hello *out) {
	uint8_t *copy = malloc(len ? len : 1);
	enum sni_result r;

	CHECK(copy);
	memcpy(copy, data, len);
	r = sni_parse(copy, len, out);
	free(copy);
	return r;
}

static void check_answer(enum sni_result r, size_t len, const struct client_hello *h) {
	CHECK(r <= SNI_INVALID);
	if (r == SNI_NEED_MORE)
		CHECK(len < SNI_MAX_PEEK && h->need_bytes > len && h->need_bytes <= SNI_MAX_PEEK);
	if (r == SNI_INVALID)
		CHECK(h->alert == SNI_ALERT_UNEXPECTED_MESSAGE ||
		      h->alert == SNI_ALERT_RECORD_OVERFLOW || h->alert == SNI_ALERT_DECODE_ERROR ||
		      h->alert == SNI_ALERT_ILLEGAL_PARAMETER ||
		      h->alert == SNI_ALERT_UNRECOGNIZED_NAME);
	if (r != SNI_FOUND && r != SNI_NONE)
		return;
	CHECK(h->hello_bytes > 0 && h->hello_bytes <= len && h->hello_bytes <= SNI_MAX_PEEK);
	CHECK(h->n_versions <= ELEMENTSOF(h->versions));
	CHECK(h->n_alpn <= ELEMENTSOF(h->alpn));
	for (size_t i = 0; i < h->n_versions; i++)
		CHECK(!((h->versions[i] & 0x0f0f) == 0x0a0a &&
		        (h->versions[i] >> 8) == (h->versions[i] & 0xff)));
	for (size_t i = 0; i < h->n_alpn; i++) {
		size_t n = strnlen(h->alpn[i], sizeof(h->alpn[i]));
		CHECK(n > 0 && n < sizeof(h->alpn[i]));
	}
	if (r == SNI_NONE) {
		CHECK(h->sni[0] == '\0');
		return;
	}
	CHECK(h->sni[0] != '\0');
	CHECK(strnlen(h->sni, sizeof(h->sni)) < sizeof(h->sni));
	for (const char *p = h->sni; *p; p++)
		CHECK((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_' || *p == '.');
}

static bool same_hello(const struct client_hello *a, const struct client_hello *b,
                       bool compare_bytes) {
	struct client_hello x = *a, y = *b;
	if (!compare_bytes)
		x.hello_bytes = y.hello_bytes = 0;
	x.need_bytes = y.need_bytes = 0;
	x.alert = y.alert = 0;
	return memcmp(&x, &y, sizeof(x)) == 0;
}

/* Reassemble the handshake bytes of a parsed hello and frame them again in records of
 * `chunk` bytes: the answer must be the same. */
static void check_reframed(const uint8_t *data, const struct client_hello *whole, enum sni_result r,
                           size_t chunk) {
	static uint8_t message[SNI_MAX_HELLO], stream[SNI_MAX_PEEK];
	size_t msg_len = 0, pos = 0, out = 0;
	struct client_hello again;

	while (pos < whole->hello_bytes) {
		size_t n = (size_t)data[pos + 3] << 8 | data[pos + 4];
		n = MIN(n, whole->hello_bytes - pos - 5);
		memcpy(message + msg_len, data + pos + 5, n);
		msg_len += n;
		pos += 5 + n;
	}
	for (size_t off = 0; off < msg_len; off += chunk) {
		size_t n = MIN(chunk, msg_len - off);
		stream[out++] = 0x16;
		stream[out++] = 0x03;
		stream[out++] = 0x01;
		stream[out++] = (uint8_t)(n >> 8);
		stream[out++] = (uint8_t)n;
		memcpy(stream + out, message + off, n);
		out += n;
	}
	CHECK(out <= SNI_MAX_PEEK);
	CHECK(parse_copy(stream, out, &again) == r);
	CHECK(same_hello(whole, &again, false));
	CHECK(again.hello_bytes == out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
	struct client_hello whole, part;
	enum sni_result r = sni_parse(data, size, &whole);
	uint32_t seed = 2166136261u;
	bool complete = r == SNI_FOUND || r == SNI_NONE;

	check_answer(r, size, &whole);
	for (size_t i = 0; i < MIN(size, (size_t)64); i++)
		seed = (seed ^ data[i]) * 16777619u;

	/* every prefix for small inputs, a sample of them for large ones */
	for (size_t k = 0, step = 0; k < size; step++) {
		enum sni_result rk = parse_copy(data, k, &part);
		check_answer(rk, k, &part);
		if (rk != SNI_NEED_MORE) {
			CHECK(rk == r);
			if (complete)
				CHECK(same_hello(&whole, &part, true));
			if (r == SNI_INVALID)
				CHECK(part.alert == whole.alert);
		} else if (part.need_bytes - 1 > k && part.need_bytes - 1 <= size) {
			/* the caller may sleep until need_bytes: nothing is decided before */
			struct client_hello later;
			CHECK(parse_copy(data, part.need_bytes - 1, &later) == SNI_NEED_MORE);
			CHECK(later.need_bytes == part.need_bytes);
		}
		if (size <= 300)
			k++;
		else {
			seed = seed * 1103515245u + 12345u;
			k += 1 + (seed >> 8) % (size / 16 + 1);
		}
		if (step > 400)
			break;
	}

	if (complete) {
		/* the hello ends exactly at hello_bytes: one byte less still needs more */
		CHECK(parse_copy(data, whole.hello_bytes, &part) == r);
		CHECK(same_hello(&whole, &part, true));
		CHECK(parse_copy(data, whole.hello_bytes - 1, &part) == SNI_NEED_MORE);
		check_reframed(data, &whole, r, 1 + seed % 700);
		check_reframed(data, &whole, r, 16384);
		if (whole.hello_bytes < 4096)
			check_reframed(data, &whole, r, 1);
	}
	return 0;
}
