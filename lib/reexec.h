/* reexec.h — replacing the running tcpmapd image with the installed binary in place (an
 * upgrade without an outage, as nginx's binary upgrade). The new image is started by the old
 * one with the listening sockets named in $LISTEN_FDS/$LISTEN_FDNAMES, exactly as systemd
 * would pass them, and a channel (a SOCK_SEQPACKET socket named by
 * $TCPMAP_REEXEC_CHANNEL_FD). Both images can accept on the shared sockets, so the old one
 * goes on accepting while the new one execs, loads its config and its TLS module: nobody
 * waits for that. The steps:
 *
 *   old: reexec_spawn()              new: starts, loads, reexec_receive() says 'loaded'
 *   old: stops accepting, hands its spliced connections over: reexec_send()
 *   new: adopts them (handoff.h), accepts, reexec_announce_ready(): MAINPID=, READY=1, 'ready'
 *   old: reexec_wait_ready(), then drains what could not move
 *
 * so the only time nobody accepts is the hand-over itself. An image of an older version,
 * which passes the connections in $LISTEN_FDS and waits for 'R' on a pipe, is still
 * understood by the new one.
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

/* A new image being started: its pid, and the channel to it (-EBADF once closed). */
struct reexec_child {
	pid_t pid;
	int channel;
};

/* Start the installed binary with this process's command line and environment, giving it
 * fds[i] as fd 3 + i named names[i] (the listening sockets), and wait up to `timeout_usec`
 * for it to say it has loaded. Returns 0 with *ret, or -errno (logged) after making sure the
 * child is gone: the caller still owns every fd and goes on as before. */
int reexec_spawn(const int *fds, const char *const *names, size_t n, uint64_t timeout_usec,
                 struct reexec_child *ret);
/* Pass the new image fds[i] named names[i] (duplicates: the caller still owns them), then
 * the end of them. Returns 0 or -errno (logged). */
int reexec_send(struct reexec_child *c, const int *fds, const char *const *names, size_t n);
/* Wait up to `timeout_usec` for the new image to say it is ready (it is the main process
 * then). Returns 0 or -errno (logged). */
int reexec_wait_ready(struct reexec_child *c, uint64_t timeout_usec);
/* The new image failed: kill it unless it has gone, and wait (bounded) until it has, so
 * what it was sent can be taken back. Closes the channel. */
void reexec_child_stop(struct reexec_child *c);
/* The new image is ready: close the channel. */
void reexec_child_close(struct reexec_child *c);

/* In a new image: was it started by reexec_spawn()? */
bool reexec_started_by_old_image(void);
/* In a new image, once it has loaded and is about to accept: tell the old image, and hand
 * every fd it sends to `add` with its name (closed when `add` fails) until it says that was
 * all, for up to `timeout_usec`. Returns 0 (also in an image started otherwise, or by an
 * older version, which passes them in $LISTEN_FDS), or -errno (logged) for what did not come.
 */
int reexec_receive(int (*add)(void *userdata, int fd, const char *name), void *userdata,
                   uint64_t timeout_usec);
/* In a new image, once it accepts: MAINPID= and READY=1 to systemd, then tell the old
 * image. Does nothing in an image started otherwise. */
void reexec_announce_ready(void);
/* At start: the channel must not leak into anything this image starts later. */
void reexec_protect_ready_fd(void);
