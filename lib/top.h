/* top.h — `tcpmapctl top`: the breaker table as a live table, one row per cluster, refreshed
 * every `delay`, like systemd-cgtop. Full screen on a terminal (sort keys, q quits); plain
 * repeated tables otherwise. */
#pragma once

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

enum top_sort {
	TOP_SORT_ACTIVE,
	TOP_SORT_CONNS,
	TOP_SORT_BYTES,
	TOP_SORT_ERRORS,
	TOP_SORT_NAME,
	_TOP_SORT_MAX,
};

struct top_options {
	unsigned delay_msec; /* between refreshes; at least 100 */
	unsigned iterations; /* 0: until q (or forever when not on a terminal) */
	enum top_sort sort;
};

/* The sort a key selects ('a', 'c', 'b', 'e', 'n'), or -EINVAL. */
int top_sort_from_key(int key);

/* Run on the table in `dir_fd` (rundir_open_for_reading(), owned by `dir_owner`), drawing
 * to `out`, reading keys from `in` when both are terminals. Returns 0, or -errno when the
 * table could not be read the first time (later failures show on screen and it goes on). */
int top_run(int dir_fd, uid_t dir_owner, int in_fd, FILE *out, const struct top_options *o);
