/* fuzz-proxyproto.c — libFuzzer harness for the PROXY protocol writer and parser.
 *
 * The input is used twice: as bytes for proxyproto_parse(), whose answer must not depend
 * on anything after the header it reports; and as a recipe for two endpoints that are
 * written with proxyproto_write() and must parse back to the same addresses. Violations
 * are __builtin_trap(). Buffers are exact-size heap copies so ASan sees overruns. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "proxyproto.h"
#include "util.h"

#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x))                                                                          \
			__builtin_trap();                                                          \
	} while (0)

static int parse_copy(const uint8_t *data, size_t len, struct proxyproto_header *out) {
	uint8_t *copy = malloc(len ? len : 1);
	int r;

	CHECK(copy);
	memcpy(copy, data, len);
	r = proxyproto_parse(copy, len, out);
	free(copy);
	return r;
}

static void check_parse(const uint8_t *data, size_t size) {
	struct proxyproto_header h, again;
	int n = parse_copy(data, size, &h);

	CHECK(n == 0 || n == -EINVAL || (n > 0 && (size_t)n <= size));
	if (n <= 0)
		return;
	CHECK(h.version == PROXY_PROTOCOL_V1 || h.version == PROXY_PROTOCOL_V2);
	if (h.has_addresses) {
		CHECK(h.src.ss_family == AF_INET || h.src.ss_family == AF_INET6);
		CHECK(h.src.ss_family == h.dst.ss_family);
	}
	/* the header alone gives the same answer; any shorter prefix asks for more */
	CHECK(parse_copy(data, (size_t)n, &again) == n);
	CHECK(memcmp(&h, &again, sizeof(h)) == 0);
	for (size_t k = 0; k < (size_t)n; k += 1 + k / 8)
		CHECK(parse_copy(data, k, &again) == 0);
}

/* Consume bytes of the recipe, zeros once it runs out. */
struct recipe {
	const uint8_t *p;
	size_t left;
};

static uint8_t take(struct recipe *r) {
	if (r->left == 0)
		return 0;
	r->left--;
	return *r->p++;
}

/* An endpoint of a family chosen by the recipe: IPv4, IPv6, IPv4-mapped IPv6, AF_UNIX,
 * or none at all (NULL). */
static const struct sockaddr *make_endpoint(struct recipe *r, struct sockaddr_storage *ss) {
	uint8_t kind = take(r) % 5;

	memset(ss, 0, sizeof(*ss));
	if (kind == 0) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;
		in->sin_family = AF_INET;
		for (size_t i = 0; i < 4; i++)
			((uint8_t *)&in->sin_addr)[i] = take(r);
		in->sin_port = (uint16_t)(take(r) << 8 | take(r));
	} else if (kind == 1 || kind == 2) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
		in6->sin6_family = AF_INET6;
		for (size_t i = 0; i < 16; i++)
			in6->sin6_addr.s6_addr[i] = take(r);
		if (kind == 2) {
			memset(in6->sin6_addr.s6_addr, 0, 10);
			in6->sin6_addr.s6_addr[10] = in6->sin6_addr.s6_addr[11] = 0xff;
		}
		in6->sin6_port = (uint16_t)(take(r) << 8 | take(r));
	} else if (kind == 3) {
		struct sockaddr_un *un = (struct sockaddr_un *)ss;
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, "/run/fuzz");
	} else
		return NULL;
	return (const struct sockaddr *)ss;
}

/* What the header should carry for `sa` when the other side has `other_family`. */
static void expected_endpoint(const struct sockaddr_storage *ss, int header_family,
                              uint8_t addr[16], uint16_t *port) {
	memset(addr, 0, 16);
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		*port = ntohs(in->sin_port);
		if (header_family == AF_INET)
			memcpy(addr, &in->sin_addr, 4);
		else {
			addr[10] = addr[11] = 0xff;
			memcpy(addr + 12, &in->sin_addr, 4);
		}
	} else {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		*port = ntohs(in6->sin6_port);
		if (header_family == AF_INET)
			memcpy(addr, in6->sin6_addr.s6_addr + 12, 4);
		else
			memcpy(addr, &in6->sin6_addr, 16);
	}
}

static bool is_v4(const struct sockaddr_storage *ss) {
	return ss->ss_family == AF_INET ||
	       (ss->ss_family == AF_INET6 &&
	        IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)ss)->sin6_addr));
}

static void check_round_trip(const uint8_t *data, size_t size) {
	struct recipe r = {data, size};
	enum proxy_protocol version = take(&r) % 2 ? PROXY_PROTOCOL_V2 : PROXY_PROTOCOL_V1;
	struct sockaddr_storage src_ss, dst_ss;
	const struct sockaddr *src = make_endpoint(&r, &src_ss), *dst = make_endpoint(&r, &dst_ss);
	size_t size_hint = take(&r);
	uint8_t full[PROXYPROTO_HEADER_MAX], *buf;
	struct proxyproto_header h;
	int n = proxyproto_write(version, src, dst, full, sizeof(full));

	CHECK(n > 0 && n <= PROXYPROTO_HEADER_MAX);
	if (version == PROXY_PROTOCOL_V1)
		CHECK(n <= PROXYPROTO_V1_MAX);

	/* any smaller buffer is refused, any large enough one gets the same bytes */
	buf = malloc(size_hint ? size_hint : 1);
	CHECK(buf);
	if (size_hint < (size_t)n)
		CHECK(proxyproto_write(version, src, dst, buf, size_hint) == -ENOBUFS);
	else {
		CHECK(proxyproto_write(version, src, dst, buf, size_hint) == n);
		CHECK(memcmp(buf, full, (size_t)n) == 0);
	}
	free(buf);

	CHECK(parse_copy(full, (size_t)n, &h) == n);
	CHECK(h.version == version);
	bool known = src && dst && (src->sa_family == AF_INET || src->sa_family == AF_INET6) &&
	             (dst->sa_family == AF_INET || dst->sa_family == AF_INET6);
	CHECK(h.has_addresses == known);
	if (!known)
		return;

	int family = is_v4(&src_ss) && is_v4(&dst_ss) ? AF_INET : AF_INET6;
	uint8_t want[16], got[16];
	uint16_t want_port, got_port;
	const struct sockaddr_storage *parsed[2] = {&h.src, &h.dst}, *orig[2] = {&src_ss, &dst_ss};

	for (size_t i = 0; i < 2; i++) {
		CHECK(parsed[i]->ss_family == family);
		expected_endpoint(orig[i], family, want, &want_port);
		expected_endpoint(parsed[i], family, got, &got_port);
		CHECK(memcmp(want, got, 16) == 0);
		CHECK(want_port == got_port);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
	check_parse(data, size);
	check_round_trip(data, size);
	return 0;
}
