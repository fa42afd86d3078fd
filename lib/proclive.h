/* proclive.h — is the process that recorded (pid, start time) still that process?
 *
 * The breaker table records an owner for each connection slot; these answers tell a live
 * owner from a dead one, or from an unrelated process that reused its pid. Linux-only: it
 * reads /proc/PID/stat, and falls back to kill(pid, 0) where /proc hides a process. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* This process's pid, and its start time in *ret_starttime (0 when /proc cannot tell).
 * Read once per process and cached: glibc does not cache getpid(), and every admit and
 * release asks. A child of fork() reads its own again, never its parent's. Thread-safe. */
pid_t proclive_self(uint64_t *ret_starttime);
/* Another process's start time, 0 when /proc cannot tell. */
uint64_t proclive_starttime(pid_t pid);

/* A pass over many slots owned by a few processes asks about the same pids again and
 * again: a cache (zero-initialised, one per pass) makes that a few /proc reads. */
#define PROCLIVE_CACHE_SIZE 256u
struct proclive_probe {
	pid_t pid;
	bool gone;
	uint64_t starttime; /* 0 = unknown */
};
struct proclive_cache {
	struct proclive_probe items[PROCLIVE_CACHE_SIZE];
};

/* Has the owner recorded as `pid` with `recorded_starttime` (0 = not known) gone: exited,
 * a zombie, or its pid now held by another process? When either start time is unknown and
 * the pid lives, the answer is no: a live owner must never be taken for dead. `cache` may
 * be NULL (ask /proc now). */
bool proclive_owner_is_stale(struct proclive_cache *cache, pid_t pid, uint64_t recorded_starttime);
