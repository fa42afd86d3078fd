/* memlimit.h — how close this process's cgroup is to its memory limit (MemoryMax=), so
 * tcpmapd can refuse new connections before the kernel's OOM killer takes every live one.
 *
 * Reads cgroup v2 (memory.max, memory.current of the cgroup named "0::" in
 * /proc/self/cgroup) or, on a cgroup v1 host, the memory controller's hierarchy
 * (memory.stat's hierarchical_memory_limit, else memory.limit_in_bytes, and
 * memory.usage_in_bytes of the cgroup named "N:memory:" there). Never writes; without a
 * limit it reports none. */
#pragma once

#include <stddef.h>
#include <stdint.h>

enum memlimit_kind {
	MEMLIMIT_NONE, /* no memory controller found: nothing to watch */
	MEMLIMIT_V2,
	MEMLIMIT_V1,
};

struct memlimit {
	/* where /proc/self/cgroup and /proc/self/mountinfo are read, and the prefix of every
	 * cgroup path: "" on a real system, a directory of fakes in the unit tests */
	char root[256];
	enum memlimit_kind kind;
	char dir[4096]; /* the cgroup's directory; "" with MEMLIMIT_NONE */
};

/* Find the cgroup's directory under `root` (NULL: ""). Returns 0; m->kind is MEMLIMIT_NONE
 * when there is no memory controller to read. A limit set later (`systemctl set-property
 * MemoryMax=`, or the process moved into a limited cgroup) is seen by memlimit_read. */
int memlimit_init_at(struct memlimit *m, const char *root);
static inline int memlimit_init(struct memlimit *m) { return memlimit_init_at(m, NULL); }

/* Usage and limit in bytes. Returns 0, -ENOENT when there is no limit ("max", or v1's
 * page-counter maximum), or -errno. Without a limit it looks the cgroup up again, so that
 * a process moved into a limited one is watched from its next call on. */
int memlimit_read(struct memlimit *m, uint64_t *current, uint64_t *max);

/* Parse a memory.max, memory.current, memory.limit_in_bytes or memory.usage_in_bytes text
 * ("max\n" and v1's "no limit", anything from 2^62 on, give -ENOENT). Pure. */
int memlimit_parse(const char *text, uint64_t *ret);
/* The value of `key` in a memory.stat text ("key value" lines). 0, -ENOENT when the key is
 * absent or says "no limit", -EINVAL. Pure. */
int memlimit_parse_stat(const char *text, const char *key, uint64_t *ret);
