/* proxyproto.h — the HAProxy PROXY protocol header (v1 text, v2 binary) that tells an
 * upstream who the client really is.
 *
 * Writing is what tcpmapd needs: the header goes out before any other upstream byte. The
 * parser exists so that tests and the fuzz harness can check what was written; it is not
 * meant to accept headers from untrusted clients on a listening port. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "model.h"

/* v1's longest line ("PROXY TCP6" with two full IPv6 addresses and ports, CRLF) is 107
 * bytes, per the spec; v2 without TLVs is at most 16 + 36. A buffer this size always fits. */
#define PROXYPROTO_V1_MAX 107
#define PROXYPROTO_HEADER_MAX 108

struct proxyproto_header {
	enum proxy_protocol version;
	/* false for v1 "UNKNOWN", v2 LOCAL, and v2 families other than TCP over IPv4/IPv6:
	 * the receiver then uses the connection's own endpoints. */
	bool has_addresses;
	struct sockaddr_storage src; /* AF_INET or AF_INET6, port set; with has_addresses */
	struct sockaddr_storage dst;
};

/* Write the header for a connection from `src` to `dst` (the address the client reached)
 * into buf[0..size). Returns its length, -ENOBUFS when `size` is too small (nothing
 * useful is written then), or -EINVAL for a version other than V1/V2.
 *
 * IPv4-mapped IPv6 addresses are written as TCP4. When one side is IPv4 and the other
 * IPv6, the IPv4 one is written mapped and the header is TCP6. When either address is
 * NULL or of another family (AF_UNIX, ...), the header says "unknown": v1
 * "PROXY UNKNOWN\r\n", v2 the LOCAL command with AF_UNSPEC, as the spec prescribes. */
int proxyproto_write(enum proxy_protocol version, const struct sockaddr *src,
                     const struct sockaddr *dst, uint8_t *buf, size_t size);

/* Parse a header at the start of buf[0..len). Returns its length, 0 when the bytes so far
 * are a valid beginning of a header but more are needed, or -EINVAL. */
int proxyproto_parse(const uint8_t *buf, size_t len, struct proxyproto_header *out);
