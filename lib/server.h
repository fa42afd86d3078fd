/* server.h — tcpmapd's process: the three ways of getting sockets (systemd listening fds,
 * one connected fd, or binding the config's listeners itself), the worker threads, signals,
 * reload and sd_notify. bin/tcpmapd.c only fills server_options. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "log.h"

struct server_options {
	const char **config_paths; /* files or directories; NULL-terminated */
	const char *secrets_dir;
	const char *runtime_dir;
	unsigned workers; /* 0 = one per online CPU */
	bool inetd;       /* the connection is on stdin */
};

/* Run until SIGTERM/SIGINT (or, with one connected fd, until that connection ends).
 * Returns 0, or -errno for a start-up failure (already logged). */
int server_run(const struct server_options *o);
