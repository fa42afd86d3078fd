/* netaddr.h — IP literals and socket addresses as text, in one place.
 *
 * The config (listener addresses, literal upstreams), the resolver, the TLS layer (no SNI to
 * an IP literal) and the access log all need the same answers; these are pure functions with
 * no allocation. */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Every address family a tcpmap socket can have. */
union sockaddr_ip {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

/* Parse an IPv4 or IPv6 literal (no brackets, no port). On success stores the family in
 * *family and, when `ret` is not NULL, the address with `port` (host order) in *ret and its
 * length in *ret_len. Returns 0, or -EINVAL when `s` is not an IP literal. Pure. */
int netaddr_parse_literal(const char *s, uint16_t port, int *family, union sockaddr_ip *ret,
                          socklen_t *ret_len);

/* The one spelling of an address, so that equivalent spellings make one listener: IPv4
 * dotted ("127.0.0.1", also for "::ffff:127.0.0.1"), IPv6 as inet_ntop writes it ("::1" for
 * "0:0:0:0:0:0:0:1"). Returns 0, -EINVAL when `s` is no IP literal, or -ENAMETOOLONG. */
int netaddr_canonical(const char *s, char *buf, size_t size);

/* Is `s` an IPv4 or IPv6 literal? */
bool netaddr_is_literal(const char *s);

/* "1.2.3.4:80", "[::1]:80", or "-" for an address of another family. An IPv4-mapped IPv6
 * address prints as IPv4, as people wrote it. Always NUL-terminates. */
#define NETADDR_TEXT_MAX (INET6_ADDRSTRLEN + 8)
void netaddr_format(const struct sockaddr *sa, char *buf, size_t size);
/* The same, without the port: "1.2.3.4", "::1". */
void netaddr_format_host(const struct sockaddr *sa, char *buf, size_t size);
