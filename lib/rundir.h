/* rundir.h — where tcpmapd keeps its runtime state (the breaker table), as tcpmapd and
 * tcpmapctl must both find it: the first of systemd's RuntimeDirectory= entries, else
 * /run/tcpmap. Reads the environment only; creates nothing. */
#pragma once

#include <stddef.h>

#define RUNDIR_DEFAULT "/run/tcpmap"

/* The first entry of $RUNTIME_DIRECTORY (several RuntimeDirectory= entries arrive
 * colon-separated), else RUNDIR_DEFAULT, into buf. Returns 0, or -ENAMETOOLONG. */
int rundir_default(char *buf, size_t size);
