/* rundir.h — where tcpmapd keeps its runtime state (the breaker table), as tcpmapd and
 * tcpmapctl must both find it: the first of systemd's RuntimeDirectory= entries, else
 * /run/tcpmap; and the checks that make the directory safe to use.
 *
 * Whoever can replace files in the directory decides which breaker table every tcpmap
 * process uses, so the directory is opened once, checked on its fd, and every later table
 * operation is made relative to that fd (openat, linkat), never by path again. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define RUNDIR_DEFAULT "/run/tcpmap"

/* The first entry of $RUNTIME_DIRECTORY (several RuntimeDirectory= entries arrive
 * colon-separated), else RUNDIR_DEFAULT, into buf. Returns 0, or -ENAMETOOLONG. */
int rundir_default(char *buf, size_t size);

/* Open `path` as the directory this process writes its table in, creating it (0755) when
 * `create` and missing. The last component is not followed if it is a symlink, unless the
 * symlink belongs to root or to us and sits in a directory only root or we can change (as
 * systemd's /run/tcpmap -> /run/private/tcpmap under DynamicUser=). Refuses, with:
 *   -ELOOP   a symlink another user could have planted or can replace,
 *   -ENOTDIR not a directory,
 *   -EPERM   a directory owned by another user,
 *   -EACCES  a directory group or others can write (sticky or not: others could still
 *            create the table's name first),
 * else returns 0 with *ret_fd an O_DIRECTORY fd (O_CLOEXEC). */
int rundir_open(const char *path, bool create, int *ret_fd);

/* Open `path` for reading a table another process wrote (tcpmapctl status): the same
 * symlink rule, and a directory group or others can write is refused (-EACCES). Its owner
 * may be any user (the service's dynamic user): *ret_owner says who, so the caller can
 * trust only a table owned by that user or by root. */
int rundir_open_for_reading(const char *path, int *ret_fd, uid_t *ret_owner);

/* Why rundir_open or rundir_open_for_reading refused, for a log line ("is a symlink …"). */
const char *rundir_refusal(int r);
