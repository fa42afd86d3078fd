/* netaddr.c — see netaddr.h. */
#include "netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

int netaddr_parse_literal(const char *s, uint16_t port, int *family, union sockaddr_ip *ret,
                          socklen_t *ret_len) {
	union sockaddr_ip a;
	socklen_t len;

	memset(&a, 0, sizeof a);
	if (!s)
		return -EINVAL;
	if (inet_pton(AF_INET, s, &a.in.sin_addr) == 1) {
		a.in.sin_family = AF_INET;
		a.in.sin_port = htons(port);
		len = sizeof a.in;
	} else if (inet_pton(AF_INET6, s, &a.in6.sin6_addr) == 1) {
		a.in6.sin6_family = AF_INET6;
		a.in6.sin6_port = htons(port);
		len = sizeof a.in6;
	} else
		return -EINVAL;
	if (family)
		*family = a.sa.sa_family;
	if (ret)
		*ret = a;
	if (ret_len)
		*ret_len = len;
	return 0;
}

int netaddr_canonical(const char *s, char *buf, size_t size) {
	union sockaddr_ip a;

	if (size > 0)
		buf[0] = '\0';
	if (netaddr_parse_literal(s, 0, NULL, &a, NULL) < 0)
		return -EINVAL;
	if (a.sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a.in6.sin6_addr)) {
		struct in_addr v4;
		memcpy(&v4, &a.in6.sin6_addr.s6_addr[12], sizeof v4);
		a.in = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr = v4};
	}
	if (!inet_ntop(a.sa.sa_family,
	               a.sa.sa_family == AF_INET ? (const void *)&a.in.sin_addr
	                                         : (const void *)&a.in6.sin6_addr,
	               buf, size))
		return -ENAMETOOLONG;
	return 0;
}

bool netaddr_is_literal(const char *s) {
	return netaddr_parse_literal(s, 0, NULL, NULL, NULL) == 0;
}

static unsigned format_host(const struct sockaddr *sa, char *host, size_t size, bool *bracket) {
	*bracket = false;
	snprintf(host, size, "?");
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s->sin_addr, host, size);
		return ntohs(s->sin_port);
	}
	const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;
	if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr))
		inet_ntop(AF_INET, &s->sin6_addr.s6_addr[12], host, size);
	else {
		inet_ntop(AF_INET6, &s->sin6_addr, host, size);
		*bracket = true;
	}
	return ntohs(s->sin6_port);
}

void netaddr_format(const struct sockaddr *sa, char *buf, size_t size) {
	char host[INET6_ADDRSTRLEN];
	bool bracket;

	if (!sa || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)) {
		snprintf(buf, size, "-");
		return;
	}
	unsigned port = format_host(sa, host, sizeof host, &bracket);
	snprintf(buf, size, bracket ? "[%s]:%u" : "%s:%u", host, port);
}

void netaddr_format_host(const struct sockaddr *sa, char *buf, size_t size) {
	bool bracket;

	if (!sa || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)) {
		snprintf(buf, size, "-");
		return;
	}
	format_host(sa, buf, size, &bracket);
}
