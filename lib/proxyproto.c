/* proxyproto.c — write (and, for tests, parse) PROXY protocol v1 and v2 headers, as
 * described in HAProxy's doc/proxy-protocol.txt.
 *
 * Pure byte work: no sockets, no allocation, no logging. It must never write past
 * buf+size, and never emit a header the spec tells receivers to reject. */
#include "proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "netaddr.h"
#include "util.h"

static const uint8_t v2_signature[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                         0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
#define V2_HEADER_LEN 16
#define V2_VERSION 0x20
#define V2_CMD_LOCAL 0x00
#define V2_CMD_PROXY 0x01
#define V2_FAM_UNSPEC 0x00
#define V2_FAM_TCP4 0x11
#define V2_FAM_TCP6 0x21
#define V2_ADDR_LEN_TCP4 12
#define V2_ADDR_LEN_TCP6 36

static const char v1_prefix[] = "PROXY ";

/* One endpoint reduced to what the header carries. */
struct endpoint {
	int family; /* AF_INET or AF_INET6; 0 = nothing the header can say */
	uint8_t addr[16];
	uint16_t port; /* host order */
};

static struct endpoint endpoint_from_sockaddr(const struct sockaddr *sa) {
	struct endpoint e = {0};

	if (!sa)
		return e;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		e.family = AF_INET;
		memcpy(e.addr, &in->sin_addr, 4);
		e.port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		e.port = ntohs(in6->sin6_port);
		/* a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; upstreams
		 * expect to see them as the IPv4 clients they are */
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			e.family = AF_INET;
			memcpy(e.addr, &in6->sin6_addr.s6_addr[12], 4);
		} else {
			e.family = AF_INET6;
			memcpy(e.addr, &in6->sin6_addr, 16);
		}
	}
	return e;
}

static void endpoint_map_to_ipv6(struct endpoint *e) {
	if (e->family != AF_INET)
		return;
	memmove(e->addr + 12, e->addr, 4);
	memset(e->addr, 0, 10);
	e->addr[10] = e->addr[11] = 0xff;
	e->family = AF_INET6;
}

static int write_v1(const struct endpoint *src, const struct endpoint *dst, uint8_t *buf,
                    size_t size) {
	char line[PROXYPROTO_HEADER_MAX + 1], src_text[INET6_ADDRSTRLEN],
	        dst_text[INET6_ADDRSTRLEN];
	int n;

	if (src->family == 0)
		n = snprintf(line, sizeof(line), "PROXY UNKNOWN\r\n");
	else {
		/* not netaddr_format_host: a mapped IPv4 address must stay ::ffff:a.b.c.d in a
		 * TCP6 line, where netaddr prints it as the IPv4 address it carries */
		if (!inet_ntop(src->family, src->addr, src_text, sizeof(src_text)) ||
		    !inet_ntop(dst->family, dst->addr, dst_text, sizeof(dst_text)))
			return -EINVAL;
		n = snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n",
		             src->family == AF_INET ? "TCP4" : "TCP6", src_text, dst_text,
		             (unsigned)src->port, (unsigned)dst->port);
	}
	if (n < 0 || n > PROXYPROTO_V1_MAX)
		return -EINVAL;
	if ((size_t)n > size)
		return -ENOBUFS;
	memcpy(buf, line, (size_t)n);
	return n;
}

static int write_v2(const struct endpoint *src, const struct endpoint *dst, uint8_t *buf,
                    size_t size) {
	size_t addr_len = src->family == AF_INET    ? V2_ADDR_LEN_TCP4
	                  : src->family == AF_INET6 ? V2_ADDR_LEN_TCP6
	                                            : 0;
	size_t total = V2_HEADER_LEN + addr_len;

	if (total > size)
		return -ENOBUFS;
	memcpy(buf, v2_signature, sizeof(v2_signature));
	if (addr_len == 0) {
		buf[12] = V2_VERSION | V2_CMD_LOCAL;
		buf[13] = V2_FAM_UNSPEC;
	} else {
		buf[12] = V2_VERSION | V2_CMD_PROXY;
		buf[13] = src->family == AF_INET ? V2_FAM_TCP4 : V2_FAM_TCP6;
	}
	buf[14] = (uint8_t)(addr_len >> 8);
	buf[15] = (uint8_t)addr_len;
	if (addr_len > 0) {
		size_t ip_len = (addr_len - 4) / 2;
		uint8_t *p = buf + V2_HEADER_LEN;
		memcpy(p, src->addr, ip_len);
		memcpy(p + ip_len, dst->addr, ip_len);
		p += 2 * ip_len;
		p[0] = (uint8_t)(src->port >> 8);
		p[1] = (uint8_t)src->port;
		p[2] = (uint8_t)(dst->port >> 8);
		p[3] = (uint8_t)dst->port;
	}
	return (int)total;
}

int proxyproto_write(enum proxy_protocol version, const struct sockaddr *src,
                     const struct sockaddr *dst, uint8_t *buf, size_t size) {
	struct endpoint s = endpoint_from_sockaddr(src), d = endpoint_from_sockaddr(dst);

	if (s.family == 0 || d.family == 0)
		s.family = d.family = 0;
	else if (s.family != d.family) {
		/* both sides must share one family in either version of the header */
		endpoint_map_to_ipv6(&s);
		endpoint_map_to_ipv6(&d);
	}

	switch (version) {
	case PROXY_PROTOCOL_V1:
		return write_v1(&s, &d, buf, size);
	case PROXY_PROTOCOL_V2:
		return write_v2(&s, &d, buf, size);
	default:
		return -EINVAL;
	}
}

static void endpoint_to_sockaddr(int family, const uint8_t *addr, uint16_t port,
                                 struct sockaddr_storage *ss) {
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;
		in->sin_family = AF_INET;
		memcpy(&in->sin_addr, addr, 4);
		in->sin_port = htons(port);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
		in6->sin6_family = AF_INET6;
		memcpy(&in6->sin6_addr, addr, 16);
		in6->sin6_port = htons(port);
	}
}

/* Decimal 0..65535, without sign or leading zeros, as the spec writes ports. */
static bool parse_port(const char *s, size_t n, uint16_t *port) {
	unsigned v = 0;

	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

/* One address of a v1 line: an IP literal of the family that the line's protocol named. */
static bool parse_address(int family, const char *s, size_t n, uint8_t addr[16]) {
	char text[INET6_ADDRSTRLEN];
	union sockaddr_ip a;
	int found;

	if (n == 0 || n >= sizeof(text))
		return false;
	memcpy(text, s, n);
	text[n] = '\0';
	if (netaddr_parse_literal(text, 0, &found, &a, NULL) < 0 || found != family)
		return false;
	if (family == AF_INET)
		memcpy(addr, &a.in.sin_addr, 4);
	else
		memcpy(addr, &a.in6.sin6_addr, 16);
	return true;
}

static int parse_v1(const uint8_t *buf, size_t len, struct proxyproto_header *out) {
	const char *line = (const char *)buf, *fields[5];
	size_t field_len[5], n_fields = 0, end = 0, start;
	uint8_t src[16], dst[16];
	uint16_t sport, dport;
	int family;

	/* the line ends at the first CRLF, within the spec's 107 bytes */
	for (size_t i = 0; i < MIN(len, (size_t)PROXYPROTO_V1_MAX); i++) {
		if (buf[i] == '\n') {
			if (i == 0 || buf[i - 1] != '\r')
				return -EINVAL;
			end = i + 1;
			break;
		}
		if (buf[i] == '\0')
			return -EINVAL;
	}
	if (end == 0)
		return len >= PROXYPROTO_V1_MAX ? -EINVAL : 0;

	out->version = PROXY_PROTOCOL_V1;
	start = sizeof(v1_prefix) - 1;
	/* "UNKNOWN" may be followed by anything up to the CRLF, which receivers ignore */
	if (end - start >= 9 && memcmp(line + start, "UNKNOWN", 7) == 0 &&
	    (line[start + 7] == ' ' || line[start + 7] == '\r'))
		return (int)end;
	/* split what follows "PROXY " on single spaces */
	for (size_t i = start; i <= end - 2; i++) {
		if (i < end - 2 && line[i] != ' ')
			continue;
		if (n_fields == ELEMENTSOF(fields))
			return -EINVAL;
		fields[n_fields] = line + start;
		field_len[n_fields] = i - start;
		n_fields++;
		start = i + 1;
	}
	if (n_fields != 5 || field_len[0] != 4)
		return -EINVAL;
	if (memcmp(fields[0], "TCP4", 4) == 0)
		family = AF_INET;
	else if (memcmp(fields[0], "TCP6", 4) == 0)
		family = AF_INET6;
	else
		return -EINVAL;
	if (!parse_address(family, fields[1], field_len[1], src) ||
	    !parse_address(family, fields[2], field_len[2], dst) ||
	    !parse_port(fields[3], field_len[3], &sport) ||
	    !parse_port(fields[4], field_len[4], &dport))
		return -EINVAL;
	endpoint_to_sockaddr(family, src, sport, &out->src);
	endpoint_to_sockaddr(family, dst, dport, &out->dst);
	out->has_addresses = true;
	return (int)end;
}

static int parse_v2(const uint8_t *buf, size_t len, struct proxyproto_header *out) {
	size_t addr_len, total, ip_len;
	uint8_t command, family;
	const uint8_t *p;

	if (len < V2_HEADER_LEN)
		return 0;
	if ((buf[12] & 0xf0) != V2_VERSION)
		return -EINVAL;
	command = buf[12] & 0x0f;
	family = buf[13];
	if (command != V2_CMD_LOCAL && command != V2_CMD_PROXY)
		return -EINVAL;
	/* the spec's families: UNSPEC, or INET/INET6/UNIX over STREAM/DGRAM */
	if (family != V2_FAM_UNSPEC &&
	    ((family >> 4) < 1 || (family >> 4) > 3 || (family & 0x0f) < 1 || (family & 0x0f) > 2))
		return -EINVAL;
	addr_len = (size_t)buf[14] << 8 | buf[15];
	total = V2_HEADER_LEN + addr_len;
	if ((family == V2_FAM_TCP4 && addr_len < V2_ADDR_LEN_TCP4) ||
	    (family == V2_FAM_TCP6 && addr_len < V2_ADDR_LEN_TCP6))
		return -EINVAL;
	if (len < total)
		return 0;

	out->version = PROXY_PROTOCOL_V2;
	if (command == V2_CMD_LOCAL || (family != V2_FAM_TCP4 && family != V2_FAM_TCP6))
		return (int)total; /* use the connection's own endpoints; skip any block */

	ip_len = family == V2_FAM_TCP4 ? 4 : 16;
	p = buf + V2_HEADER_LEN;
	endpoint_to_sockaddr(ip_len == 4 ? AF_INET : AF_INET6, p,
	                     (uint16_t)(p[2 * ip_len] << 8 | p[2 * ip_len + 1]), &out->src);
	endpoint_to_sockaddr(ip_len == 4 ? AF_INET : AF_INET6, p + ip_len,
	                     (uint16_t)(p[2 * ip_len + 2] << 8 | p[2 * ip_len + 3]), &out->dst);
	out->has_addresses = true;
	return (int)total;
}

int proxyproto_parse(const uint8_t *buf, size_t len, struct proxyproto_header *out) {
	size_t n;

	memset(out, 0, sizeof(*out));
	if (len == 0)
		return 0;
	n = MIN(len, sizeof(v2_signature));
	if (memcmp(buf, v2_signature, n) == 0)
		return n < sizeof(v2_signature) ? 0 : parse_v2(buf, len, out);
	n = MIN(len, sizeof(v1_prefix) - 1);
	if (memcmp(buf, v1_prefix, n) == 0)
		return n < sizeof(v1_prefix) - 1 ? 0 : parse_v1(buf, len, out);
	return -EINVAL;
}
