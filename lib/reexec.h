/* reexec.h — replacing the running tcpmapd image with the installed binary in place (an
 * upgrade without an outage, as nginx's binary upgrade): the new image is started as a child
 * of the old one and inherits the listening sockets and the handed-over connections as fds
 * named in $LISTEN_FDS/$LISTEN_FDNAMES, exactly as systemd would pass them, so it takes them
 * through the same start-up path (handoff.h adopts the connections). It says it is ready on
 * a pipe named by $TCPMAP_REEXEC_READY_FD, after telling systemd MAINPID=.
 *
 * This file knows nothing of connections or workers: server.c decides when, and what goes. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Note which file the binary's path names now, at start, for reexec_binary_changed(). */
void reexec_remember_binary(void);
/* Has the file at the running image's path been replaced since reexec_remember_binary()
 * (another inode there)? False when that cannot be told. */
bool reexec_binary_changed(void);

/* Start the installed binary with this process's command line and environment, giving it
 * fds[i] as fd 3 + i named names[i], and wait up to `timeout_usec` for it to announce it is
 * ready. Returns 0 with *ret_pid, or -errno (logged) after making sure the child is gone:
 * the caller still owns every fd and goes on as before. */
int reexec_spawn(const int *fds, const char *const *names, size_t n, uint64_t timeout_usec,
                 pid_t *ret_pid);

/* In a new image: was it started by reexec_spawn()? */
bool reexec_started_by_old_image(void);
/* In a new image, once it accepts: MAINPID= and READY=1 to systemd, then tell the old
 * image. Does nothing in an image started otherwise. */
void reexec_announce_ready(void);
/* At start: the readiness pipe must not leak into anything this image starts later. */
void reexec_protect_ready_fd(void);
