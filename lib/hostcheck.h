/* hostcheck.h — what a config needs of this host that the config itself cannot say: room in
 * the breaker table, open files for its listeners, the right to bind ports below 1024.
 * `tcpmapctl check` asks it, so that a config check passes only when tcpmapd could run the
 * same config here. It reads limits and /proc; it never binds, opens the table, or changes
 * a limit. */
#pragma once

#include <stdio.h>

#include "model.h"

/* File descriptors tcpmapd keeps besides its listeners: log, signal and timer fds, the
 * breaker table, the notify socket, and a few connections accepted at once. */
#define HOSTCHECK_FD_RESERVE 64u

struct hostcheck_result {
	unsigned errors;   /* tcpmapd would refuse this config or fail to run it here */
	unsigned warnings; /* it would run here only under conditions check cannot see */
};

/* Check `c` against this host, printing one "error: " or "warning: " line per finding (and
 * a "note: " line on the table's size) to `out`. Returns 0 or -errno. */
int hostcheck_config(const struct config *c, FILE *out, struct hostcheck_result *ret);
