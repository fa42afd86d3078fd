/* breaker.h — the shared-memory breaker table: per-cluster connection counts and limits,
 * and per-group WRR state, shared by every tcpmap process on the host through one mmap'ed
 * file ($RUNTIME_DIRECTORY/breakers).
 *
 * Counts are derived from per-connection slots that record owner pid and start time, so a
 * process killed with SIGKILL leaks nothing: its slots are reclaimed when next seen.
 *
 * Capacity follows the need: the file is sized at creation from what the opener asks for
 * (never under 1024 clusters, 1024 groups and 65536 connection slots), and when clusters,
 * groups or slots run out a larger table replaces it at the same path. Every process that
 * maps the old one follows on its next operation (one atomic load when nothing moved);
 * entry, group and slot numbers are the same in every copy, so handles stay valid. Every
 * process sharing the file must share one pid namespace, since owners are recognised by
 * pid and start time. Thread-safe. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "model.h"
#include "result.h"
#include "route.h"

struct breaker_table;

/* A held slot; 0 means none. */
typedef uint32_t breaker_slot_t;

/* The smallest table ever made; a config needing more gets more. */
#define BREAKER_N_ENTRIES_MIN 1024u
#define BREAKER_N_GROUPS_MIN 1024u
#define BREAKER_N_SLOTS_MIN 65536u

/* What a table must hold: distinct cluster keys, mapping groups, concurrent connections. */
struct breaker_capacity {
	uint32_t clusters;
	uint32_t groups;
	uint32_t slots;
};

/* What the daemon needs for config `c` (an upper bound: every mapping's cluster counted),
 * with slots at the floor. -E2BIG when it is beyond what a table can ever hold. */
int breaker_table_capacity_needed(const struct config *c, struct breaker_capacity *ret);
/* The capacity a table made for `want` gets (a quarter spare, the floors), and its file's
 * size in bytes (allocated whole when made, so a full runtime directory is an error then
 * rather than a SIGBUS later). -E2BIG as above. Either out
 * pointer may be NULL. */
int breaker_table_capacity_for(const struct breaker_capacity *want,
                               struct breaker_capacity *ret_capacity, uint64_t *ret_file_size);

/* Open (creating if needed, mode 0600) `breakers` in the directory `dir_fd` (from
 * rundir_open(), which checked who can change it; the table keeps its own copy of the fd).
 * Returns 0, -EPROTO when the file was made by an incompatible version (logged by the
 * caller), -EPERM when it is not ours alone to write, or another -errno. */
int breaker_table_open(int dir_fd, struct breaker_table **ret);
/* The same, with room for at least `want`: a new file is made that large, and an existing
 * smaller one is grown (see breaker_table_reserve). */
int breaker_table_open_sized(int dir_fd, const struct breaker_capacity *want,
                             struct breaker_table **ret);
struct breaker_table *breaker_table_close(struct breaker_table *t); /* returns NULL */

/* Make room for `want` now (a reload with more clusters or groups calls it before adding
 * them, so the table grows once rather than doubling several times). Growing never refuses
 * a connection nor breaks a limit: the old table is frozen for the copy, changes wait for
 * it (milliseconds per thousand entries) and continue on the new table. */
int breaker_table_reserve(struct breaker_table *t, const struct breaker_capacity *want);
/* The capacity of the table this handle works on now. */
int breaker_table_capacity(struct breaker_table *t, struct breaker_capacity *ret);

/* Map the table that replaced this one, if it was replaced; every operation does this
 * itself, so calling it is only needed to let go of an old table's memory sooner in a
 * process that is idle (the daemon's 1 s timer: breaker_table_reap follows too). Returns
 * 1 when it followed, 0 when nothing moved, or -errno. */
int breaker_table_follow(struct breaker_table *t);

/* The layout version the file carries; a file of another version gives -EPROTO. */
#define BREAKER_TABLE_VERSION 3u

/* Room for a counter per enum conn_result, with space to grow without a new layout. */
#define BREAKER_RESULTS_MAX 32u
/* Connection durations are counted in buckets with these upper bounds (microseconds; the
 * Prometheus histogram's `le`, in seconds), and one more bucket above the last. */
#define BREAKER_DURATION_BUCKETS 11u
extern const uint64_t breaker_duration_bounds_usec[BREAKER_DURATION_BUCKETS];
/* Long-running processes whose config the table records (breaker_table_note_config). */
#define BREAKER_PROCESSES_MAX 32u
/* The `entry` of a connection that ended before any mapping was chosen. */
#define BREAKER_ENTRY_NONE UINT32_MAX

/* Read `breakers` in `dir_fd` (from rundir_open_for_reading()) into private memory for a
 * report: never creates it, never writes it, never maps it. -ENOENT when no tcpmap process
 * has created it yet, -EPROTO when it is not a regular file or is incompatible, -EPERM
 * when it belongs to neither root nor `dir_owner` or group or others can write it. Only
 * the reading functions below (and breaker_table_entry_stats) may be used on it. */
int breaker_table_open_readonly(int dir_fd, uid_t dir_owner, struct breaker_table **ret);

/* Index of the entry for cluster key `cluster`, created on first use (the table grows when
 * full). Constant time expected: a hash index at most half full. -ENOSPC only past the
 * largest table there can be. The index is stable for the table's life, across moves. */
int breaker_table_entry(struct breaker_table *t, const char *cluster, uint32_t *ret);

/* Would a new connection to this entry be admitted now? (for failover before admitting) */
bool breaker_table_would_admit(struct breaker_table *t, uint32_t entry,
                               const struct circuit_breakers *cb);

/* Take a pending slot for a new upstream connection (the slots double when every one is
 * taken). Returns 0 with *ret set, or -EBUSY
 * when over max_connections or max_pending_requests (the overflow is counted). A NULL `cb`
 * counts the connection without checking or recording limits (a connection adopted from a
 * previous process was admitted once already). */
int breaker_table_admit(struct breaker_table *t, uint32_t entry, const struct circuit_breakers *cb,
                        breaker_slot_t *ret);
/* Pending becomes active once the upstream connect succeeds. */
void breaker_table_connected(struct breaker_table *t, breaker_slot_t slot);
/* Count a failed upstream connect (the slot is still released with _release). */
void breaker_table_connect_failed(struct breaker_table *t, breaker_slot_t slot);
/* Free the slot and add the connection's byte counts to the entry. */
void breaker_table_release(struct breaker_table *t, breaker_slot_t slot, uint64_t bytes_in,
                           uint64_t bytes_out);
/* Count how a connection ended and how long it lasted, for the metrics: in `entry`, or, as
 * BREAKER_ENTRY_NONE, in the table's own record of connections that reached no mapping.
 * Called once per connection, at its real end, by whichever process ends it (a connection
 * handed over is counted by the process that adopted it, never at the hand-over). */
void breaker_table_note_end(struct breaker_table *t, uint32_t entry, enum conn_result result,
                            uint64_t duration_usec);
/* Record that this process now runs config generation `generation` (loaded now), for the
 * metrics. For long-running processes (a process per connection would churn the few
 * records): the record is cleared by the reaper once the process is gone. */
int breaker_table_note_config(struct breaker_table *t, uint64_t generation);
/* Count a failover in group `g` (a connection routed past an open circuit breaker). */
void breaker_table_note_failover(struct breaker_table *t, const struct mapping_group *g);
/* Re-own a slot under this process (after a hand-over from another process). */
int breaker_table_adopt(struct breaker_table *t, breaker_slot_t slot);
/* Make process `pid` (started at `starttime`, 0 = unknown) a slot's owner: a connection on
 * its way to a process that has not adopted it yet (relayspawn.h) is reclaimed by the reaper
 * should that process die with it undelivered, rather than held by a live sender forever. */
int breaker_table_give(struct breaker_table *t, breaker_slot_t slot, pid_t pid, uint64_t starttime);
/* The descriptors the table itself holds (its directory, its current file), for a process
 * forked for one connection to keep while it closes the rest. Returns how many (0-2). */
size_t breaker_table_fds(struct breaker_table *t, int fds[2]);

/* Pick a mapping of `g` with weights_pick (weights.h), over the state kept in the table
 * under g->key, so the split is exact across processes. `eligible` as in weights_pick.
 * Returns an index or -ENOENT. */
int breaker_table_pick(struct breaker_table *t, const struct mapping_group *g,
                       const bool *eligible);

/* Reclaim every slot whose owner died (or whose pid was reused). The daemon calls this
 * once a second, so capacity leaked by a SIGKILLed process comes back within 1 s even
 * when nobody admits on its entry; it follows a moved table first. Returns the number of
 * slots reclaimed, or -errno. */
int breaker_table_reap(struct breaker_table *t);

/* Record the limits configured for an entry, for status printing before the first admit
 * (admit records them too). */
void breaker_table_note_limits(struct breaker_table *t, uint32_t entry,
                               const struct circuit_breakers *cb);

/* A consistent snapshot of one entry's counters; limits are the last ones seen, 0 = none. */
struct breaker_entry_stats {
	uint32_t active;
	uint32_t pending;
	uint32_t max_connections;
	uint32_t max_pending_requests;
	uint64_t total; /* admitted */
	uint64_t overflows;
	uint64_t connect_failures;
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t results[BREAKER_RESULTS_MAX]; /* ended connections by enum conn_result */
	uint64_t duration_buckets[BREAKER_DURATION_BUCKETS + 1]; /* per bucket, not cumulative */
	uint64_t duration_sum_usec;
};
int breaker_table_entry_stats(struct breaker_table *t, uint32_t entry,
                              struct breaker_entry_stats *ret);

/* Count an entry's taken slots by walking the slot array (slow: for tests and checks that
 * the counters agree with the slots). */
int breaker_table_count_slots(struct breaker_table *t, uint32_t entry, uint32_t *ret_active,
                              uint32_t *ret_pending);

/* Walking the table for a report. Names point into the mapping (valid until close) and
 * are not NUL-terminated: use the lengths. Each call fills *ret with the next entry (or
 * group) in use at or after *pos and moves *pos past it; false at the end. Start at 0. */
struct breaker_entry_view {
	const char *cluster;
	size_t cluster_len;
	struct breaker_entry_stats stats;
};
bool breaker_table_next_entry(struct breaker_table *t, uint32_t *pos,
                              struct breaker_entry_view *ret);
/* The recorded long-running processes, walked as next_entry walks entries. */
struct breaker_process_view {
	pid_t pid;
	uint64_t generation;
	uint64_t loaded_realtime_usec;
};
bool breaker_table_next_process(struct breaker_table *t, uint32_t *pos,
                                struct breaker_process_view *ret);
/* Connections that ended before reaching a mapping, by enum conn_result. */
int breaker_table_unrouted_results(struct breaker_table *t, uint64_t ret[BREAKER_RESULTS_MAX]);

struct breaker_group_view {
	const char *key;
	size_t key_len;
	uint32_t n_mappings;
	uint64_t failovers;
	struct {
		const char *name; /* truncated to 63 bytes in the table */
		size_t name_len;
		int32_t weight;
		uint64_t picks; /* since the group's weights last changed */
	} mappings[ROUTE_MAX_GROUP_MAPPINGS];
};
bool breaker_table_next_group(struct breaker_table *t, uint32_t *pos,
                              struct breaker_group_view *ret);
