/* listeners.c — where tcpmapd's listening sockets come from: systemd's $LISTEN_FDS, or its
 * own binds for the config's listeners; see listeners.h. Must never accept on a socket, and
 * never close one that systemd gave (systemd owns it) unless the caller says so. */
#include "listeners.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static bool sockaddr_is_wildcard(const struct sockaddr_storage *ss) {
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
	return false;
}

int listeners_add_fd(struct listeners *set, int fd) {
	struct listen_fd *lf;
	struct listen_fd *n = realloc(set->fds, (set->n + 1) * sizeof *set->fds);
	if (!n)
		return -ENOMEM;
	set->fds = n;
	lf = &set->fds[set->n++];
	*lf = (struct listen_fd){.fd = fd};
	lf->addr_len = sizeof lf->addr;
	if (getsockname(fd, (struct sockaddr *)&lf->addr, &lf->addr_len) < 0)
		return -errno;
	lf->wildcard = sockaddr_is_wildcard(&lf->addr);
	/* accepted sockets inherit TCP_NODELAY from their listener: one call here instead of
	 * one per connection */
	static const int one = 1;
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0)
		lf->nodelay = true;
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	return 0;
}

/* Binding ourselves, one socket per listener serves every worker, as systemd's do: each
 * worker watches it with EPOLLEXCLUSIVE, so a connection wakes one of them, and whichever
 * is free takes it. (Per-worker SO_REUSEPORT sockets pin a connection to one worker when
 * its SYN arrives, and it waits there while that worker is busy: a worse p99 under load.) */
static int bind_one(const struct sockaddr *sa, socklen_t len, int v6only, int *ret) {
	static const int one = 1;

	_cleanup_close_ int fd =
	        socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (sa->sa_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) < 0)
		return -errno;
	if (bind(fd, sa, len) < 0)
		return -errno;
	*ret = TAKE_FD(fd);
	return 0;
}

int listeners_bind(struct listeners *set, const struct config *c) {
	for (size_t i = 0; i < c->n_listeners; i++) {
		struct listener *l = c->listeners[i];
		const struct sockaddr *sa = (const struct sockaddr *)&l->sockaddr;
		char where[80];
		int fd = -EBADF, r;

		snprintf(where, sizeof where, "%s:%u", l->address ? l->address : "*", l->port);
		/* No address is IPv4 and IPv6 on one socket; an explicit "::" is IPv6 only (as
		 * tcpmapctl units writes it for systemd). Where IPv6 is off, every address is
		 * every IPv4 address. */
		r = bind_one(sa, l->sockaddr_len, l->address ? 1 : 0, &fd);
		if (!l->address && (r == -EAFNOSUPPORT || r == -EADDRNOTAVAIL)) {
			struct sockaddr_in any4 = {.sin_family = AF_INET,
			                           .sin_port = htons(l->port),
			                           .sin_addr.s_addr = htonl(INADDR_ANY)};
			log_info("%s: no IPv6 here (%s), listening on IPv4 only", where,
			         strerror(-r));
			r = bind_one((const struct sockaddr *)&any4, sizeof any4, 0, &fd);
		}
		if (r < 0)
			return log_error_errno(r, "cannot listen on %s", where);
		if (listen(fd, 4096) < 0) {
			r = -errno;
			safe_close(fd);
			return log_error_errno(r, "listen on %s", where);
		}
		/* the set holds it now, failed or not: closed at exit */
		r = listeners_add_fd(set, fd);
		if (r < 0)
			return r;
		log_info("listening on %s", where);
	}
	return 0;
}

static bool is_listening(int fd) {
	int v = 0;
	socklen_t len = sizeof v;
	return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 && v;
}

int listeners_take_systemd(struct listeners *set, struct handoff_store *stored,
                           int *ret_connected_fd) {
	int connected_fd = -EBADF, r = 0;
	char **names = NULL;
	/* LISTEN_FDNAMES is colon-separated, so a socket unit named after an address
	 * (tcpmap@127.0.0.1:2222.socket) makes it unparseable: fall back to no names,
	 * which only costs adopting stored connections. */
	int n = sd_listen_fds_with_names(0, &names);
	if (n == -EINVAL) {
		names = NULL;
		n = sd_listen_fds(0);
	}
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (n < 0)
		return log_error_errno(n, "reading LISTEN_FDS");
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		const char *name = names && names[i] ? names[i] : "";

		if (handoff_is_stored_name(name)) {
			/* one connection the next start cannot adopt: not a reason to fail */
			int k = handoff_store_add(stored, fd, name);
			if (k < 0) {
				safe_close(fd);
				log_warning_errno(k, "stored fd %s", name);
			}
		} else if (!is_listening(fd)) {
			if (connected_fd < 0)
				connected_fd = fd; /* Accept=yes: the one connection */
			else {
				log_warning("fd %d (%s) from systemd is not a listening "
				            "socket, ignoring",
				            fd, name);
				safe_close(fd);
			}
		} else {
			r = listeners_add_fd(set, fd);
			if (r < 0) {
				log_error_errno(r, "fd %d from systemd", fd);
				break;
			}
		}
	}
	for (int i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
	if (r < 0) {
		safe_close(connected_fd);
		return r;
	}
	if (connected_fd >= 0 && set->n > 0) {
		log_warning("got listening sockets and a connection; serving the listening "
		            "sockets");
		connected_fd = safe_close(connected_fd);
	}
	*ret_connected_fd = connected_fd;
	return 0;
}

void listeners_done(struct listeners *set, bool close_fds) {
	if (close_fds)
		for (size_t i = 0; i < set->n; i++)
			safe_close(set->fds[i].fd);
	set->fds = mfree(set->fds);
	set->n = 0;
}
