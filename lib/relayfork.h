/* relayfork.h — fork a process that is to own one connection and nothing else: the child
 * keeps only the descriptors it is given (plus stdin, stdout, stderr and the journal's
 * datagram socket) and closes every other one it inherited, whatever its O_CLOEXEC.
 *
 * It knows nothing of connections: conn.c says which fds are the connection's and builds
 * the child's event loop. It must never run anything in the child that takes a lock another
 * thread of the parent may have held at the fork: only system calls, and glibc's malloc
 * and stdio, which fork() itself resets. */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* Fork. In the parent: 0 with *ret_pid the child's pid, or -errno with *ret_pid -1 (no
 * child). In the child:
 * 0 with *ret_pid 0, every fd closed but 0-2, the `n_keep` of `keep` (-EBADF entries are
 * skipped) and the journal's socket, PR_SET_NO_NEW_PRIVS set (inherited already under the
 * unit; set again for a tcpmapd started by hand); or, when the fds could not be walked,
 * -errno with *ret_pid 0: the child must then end the connection and exit. */
int relayfork_fork(const int *keep, size_t n_keep, pid_t *ret_pid);

/* The command name (comm) of every relay process, forked here or by the spawner. */
#define RELAYFORK_COMM "tcpmap-relay"

/* In a process that is to own one connection, forked from a process that holds other
 * connections: close every fd but `keep` as above, then relayfork_mark(). 0 or -errno (the
 * fds could not be walked). */
int relayfork_isolate(const int *keep, size_t n_keep);
/* Name the process RELAYFORK_COMM and set PR_SET_NO_NEW_PRIVS: alone in a spawner's relay
 * (relayspawn.h), whose every fd is known, none another connection's. */
void relayfork_mark(void);
