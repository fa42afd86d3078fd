/* listeners.h — tcpmapd's listening sockets: the ones systemd passes in $LISTEN_FDS (with
 * the fd store's and an Accept=yes connection told apart from them), or, standalone, the
 * ones it binds itself for the config's listeners. Each is kept with its local address,
 * which selects the listener of a connection accepted on it.
 *
 * It only gathers and binds sockets: it never accepts on one, never decides which worker
 * watches which (server.c does), and never closes a socket systemd gave unless told to. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "handoff.h"
#include "model.h"

struct listen_fd {
	int fd;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	bool wildcard; /* bound to 0.0.0.0 or ::: the accepted socket's address selects */
	bool nodelay;  /* TCP_NODELAY set here, so accepted sockets have it already */
};

struct listeners {
	struct listen_fd *fds;
	size_t n;
};

/* Keep the listening socket `fd`: its address read, TCP_NODELAY set for what it accepts,
 * made non-blocking. Returns 0 or -errno; the set holds fd either way, unless -ENOMEM. */
int listeners_add_fd(struct listeners *set, int fd);

/* Take what systemd passed ($LISTEN_FDS, then unset): fds named for the fd store go to
 * `stored`, listening sockets to `set`, and the first socket that is not listening is the
 * one connection of an Accept=yes unit, in *ret_connected_fd (else -EBADF; closed when
 * listening sockets came too, which are then served). Returns 0 or -errno, logged. */
int listeners_take_systemd(struct listeners *set, struct handoff_store *stored,
                           int *ret_connected_fd);

/* Standalone: bind and listen on every listener of `c`, one socket each shared by all
 * workers. Returns 0 or -errno, logged; what was bound stays in `set` either way. */
int listeners_bind(struct listeners *set, const struct config *c);

/* Forget every socket, closing them only when `close_fds` (they were bound here: systemd's
 * are systemd's). */
void listeners_done(struct listeners *set, bool close_fds);
