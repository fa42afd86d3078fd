/* status.h — what `tcpmapctl status` prints: the live breaker table's clusters (counts,
 * limits, totals) and groups (weights, picks), as aligned text or as one JSON object. */
#pragma once

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

/* Print the table `breakers` in the directory `dir_fd` (from rundir_open_for_reading(),
 * owned by `dir_owner`) to `out`. Reads a private copy of the file, never modifying it.
 * Returns 0, -ENOENT when no tcpmap process has created it yet, -EPROTO when it is not a
 * regular file or is incompatible, -EPERM when neither root nor `dir_owner` owns it or
 * others can write it, -EIO when writing `out` failed, or another -errno. */
int status_print(int dir_fd, uid_t dir_owner, FILE *out, bool json);
