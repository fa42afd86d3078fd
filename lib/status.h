/* status.h — what `tcpmapctl status` prints: the live breaker table's clusters (counts,
 * limits, totals) and groups (weights, picks), as aligned text or as one JSON object. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

/* Print the table in DIR/breakers to `out`. Reads the file without modifying it. Returns 0,
 * -ENOENT when no tcpmap process has created it yet, -EPROTO when it is incompatible, -EIO
 * when writing `out` failed, or another -errno. */
int status_print(const char *runtime_dir, FILE *out, bool json);
