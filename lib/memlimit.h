/* memlimit.h — how close this process's cgroup is to its memory limit (MemoryMax=), so
 * tcpmapd can refuse new connections before the kernel's OOM killer takes every live one.
 *
 * Reads cgroup v2 files only (memory.max, memory.current of the cgroup named in
 * /proc/self/cgroup); never writes, and without cgroup v2 or a limit it reports no limit. */
#pragma once

#include <stdint.h>

struct memlimit {
	char dir[4096]; /* "" when there is no limit to watch */
};

/* Find the cgroup's directory. Returns 0 (m->dir may be "" when no limit can be read). */
int memlimit_init(struct memlimit *m);

/* Usage and limit in bytes. Returns 0, -ENOENT when there is no limit ("max"), or -errno. */
int memlimit_read(const struct memlimit *m, uint64_t *current, uint64_t *max);

/* Parse a memory.max or memory.current text ("max\n" gives -ENOENT). Pure. */
int memlimit_parse(const char *text, uint64_t *ret);
