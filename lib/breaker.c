/* breaker.c — the shared breaker table: one file (DIR/breakers) that every tcpmap process on
 * the host maps MAP_SHARED. It holds per-cluster connection counts and limits, one slot per
 * upstream connection (owner pid + start time, so SIGKILL leaks nothing), and for each
 * mapping group the state that weights.c picks over, so weights and limits hold across
 * processes.
 *
 * Capacity follows what the table must hold: it is sized at creation from what the opener
 * asks for, and when a reload brings more clusters or groups, or connections use every
 * slot, a larger table is built privately and renamed into place (see "growing" below).
 * Entry, group and slot numbers never change across a move, so a slot handle carried in a
 * hand-over record stays valid.
 *
 * It must never trust a file it has not validated, hold a lock for longer than a few stores
 * (growing aside, which holds only its own locks), allocate per connection, or log above
 * debug level: callers log the decisions. Whether a slot's owner still lives is asked of
 * proclive.c; this file never reads /proc itself. */
#include "breaker.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "proclive.h"
#include "route.h"
#include "util.h"
#include "weights.h"

/* Layout. The file is sparse (tmpfs only backs pages that were touched), so a generous
 * capacity costs address space, not memory. */
#define BREAKER_MAGIC "TCPMAPBT"
#define BREAKER_FILE_NAME "breakers"
#define BREAKER_HEADER_SIZE 4096u
#define BREAKER_LIVE_OFFSET 2048u    /* the header's mutable half, after the layout */
#define BREAKER_KEY_MAX 512u         /* bytes including the NUL */
#define BREAKER_MAPPING_NAME_MAX 64u /* for reports only; longer names are truncated */
/* Ceilings a file must stay under to be trusted: the entry index must fit the slot word's
 * 24 bits, and a slot handle must fit 32 bits with room to spare. */
#define BREAKER_MAX_ENTRIES (1u << 22)
#define BREAKER_MAX_GROUPS (1u << 20)
#define BREAKER_MAX_SLOTS (1u << 26)

const uint64_t breaker_duration_bounds_usec[BREAKER_DURATION_BUCKETS] = {
        1000, 5000, 10000, 50000, 100000, 500000, 1000000, 5000000, 10000000, 60000000, 300000000,
};

/* Overflowing admits scan every slot for dead owners; at most this often per entry, so an
 * overload does not turn into a slot-scanning storm. The 1 s reaper covers the rest. */
#define STALE_SCAN_INTERVAL_USEC 10000u

enum key_state {
	KEY_FREE = 0,
	KEY_READY = 2, /* key and lock are immutable from here on */
};

/* A table's life: live, then (while a grower copies it) frozen, then moved. Every change
 * to shared state is made under a lock that is taken, and the state checked under it, so
 * a frozen table takes no change the copy would miss. */
enum table_state {
	TABLE_LIVE = 0,
	TABLE_FROZEN = 1, /* a grower is copying it: changes wait, then follow */
	TABLE_MOVED = 2,  /* a larger table replaced it at the same path: follow */
};

/* A slot's whole identity is one 64-bit word, so claiming it is one CAS:
 * bits 0..31 owner pid (tgid), 32..39 state, 40..63 entry index. */
enum slot_state {
	SLOT_FREE = 0,
	SLOT_CLAIMED = 1, /* reserved by an admit in progress; not counted */
	SLOT_PENDING = 2, /* counted as pending */
	SLOT_ACTIVE = 3,  /* counted as active */
};

/* The layout half of the header: written once, before the file is published, and checked
 * field by field against what this build computes for the capacities it names. */
struct breaker_header {
	char magic[8];
	uint32_t version;
	uint32_t header_size;
	uint32_t entry_size;
	uint32_t n_entries;
	uint32_t group_size;
	uint32_t n_groups;
	uint32_t slot_size;
	uint32_t n_slots;
	uint32_t key_max;
	uint32_t group_mappings;
	uint32_t mutex_size;
	uint32_t n_entry_buckets; /* hash index over the entries; a power of two */
	uint32_t n_group_buckets;
	uint32_t live_offset;
	uint64_t entries_offset;
	uint64_t groups_offset;
	uint64_t slots_offset;
	uint64_t entry_buckets_offset;
	uint64_t group_buckets_offset;
	uint64_t file_size;
};

/* The mutable half. Entries and groups are dense arrays filled in order under
 * create_lock, so an index never changes, even across a move; the bucket arrays map a
 * key's hash to index + 1 (0 = empty) by linear probing at most half full. */
struct breaker_live {
	uint32_t state; /* enum table_state, atomic */
	uint32_t grower_pid;
	uint64_t grower_starttime;
	uint32_t n_entries_used;     /* atomic */
	uint32_t n_groups_used;      /* atomic */
	pthread_mutex_t create_lock; /* adding a key; growing holds it too */
	pthread_mutex_t grow_lock;   /* one grower at a time, across processes */
	/* Connections that ended before a mapping was chosen (unknown SNI, not TLS, ...), by
	 * enum conn_result: they have no cluster entry to be counted in. Changed under
	 * create_lock, which a grower holds for the copy. */
	uint64_t unrouted_results[BREAKER_RESULTS_MAX];
	/* Long-running processes and the config each runs (for the metrics), under create_lock
	 * too: a record of a dead process is cleared by the next reaper or reused. */
	struct breaker_process_record {
		uint32_t pid; /* 0: free */
		uint32_t reserved;
		uint64_t starttime;
		uint64_t generation;
		uint64_t loaded_realtime_usec;
	} processes[BREAKER_PROCESSES_MAX];
};

struct table_key {
	uint32_t state; /* enum key_state, atomic */
	uint32_t reserved;
	uint32_t hash;
	uint32_t len;
	char name[BREAKER_KEY_MAX];
};

/* Lock discipline: `counts`, every other counter, and every slot transition into or out
 * of PENDING/ACTIVE change only under `lock`, a robust process-shared mutex, with the
 * table checked live under it. A holder killed mid-update is seen as EOWNERDEAD by the
 * next locker, which recounts the entry from its slots, so the counters stay exactly
 * derivable from the slots. */
struct breaker_entry {
	struct table_key key;
	pthread_mutex_t lock;
	uint64_t counts; /* active << 32 | pending: one word, so readers see a consistent pair */
	uint64_t total;
	uint64_t overflows;
	uint64_t connect_failures;
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t last_stale_scan_usec;
	uint32_t limits_set;
	uint32_t max_connections;
	uint32_t max_pending_requests;
	uint32_t reserved;
	/* For the metrics, counted once per connection at its real end (an adopted one by the
	 * process that adopted it): ended connections by enum conn_result, and their durations
	 * in BREAKER_DURATION_BOUNDS_USEC buckets (not cumulative; the last is over the top). */
	uint64_t results[BREAKER_RESULTS_MAX];
	uint64_t duration_buckets[BREAKER_DURATION_BUCKETS + 1];
	uint64_t duration_sum_usec;
} __attribute__((aligned(64)));

struct breaker_group {
	struct table_key key;
	pthread_mutex_t lock;
	uint64_t signature; /* of the mapping names and weights the state was computed for */
	uint32_t n_mappings;
	uint32_t reserved;
	int32_t weight[ROUTE_MAX_GROUP_MAPPINGS];
	int32_t current[ROUTE_MAX_GROUP_MAPPINGS];
	uint64_t picks[ROUTE_MAX_GROUP_MAPPINGS];
	char mapping_name[ROUTE_MAX_GROUP_MAPPINGS][BREAKER_MAPPING_NAME_MAX];
	uint64_t failovers; /* never reset: a counter for the metrics, unlike picks */
} __attribute__((aligned(64)));

struct breaker_slot {
	uint64_t word;            /* atomic; see enum slot_state */
	uint64_t owner_starttime; /* /proc/PID/stat field 22; 0 while not yet written */
};

_Static_assert(sizeof(struct breaker_header) <= BREAKER_LIVE_OFFSET, "layout half fits");
_Static_assert(BREAKER_LIVE_OFFSET + sizeof(struct breaker_live) <= BREAKER_HEADER_SIZE,
               "live half fits");
_Static_assert(_CONN_RESULT_MAX <= BREAKER_RESULTS_MAX, "every result has its counter");
_Static_assert(BREAKER_MAX_ENTRIES < (1u << 24), "entry index fits the slot word");
_Static_assert(BREAKER_N_ENTRIES_MIN <= BREAKER_MAX_ENTRIES &&
                       BREAKER_N_GROUPS_MIN <= BREAKER_MAX_GROUPS &&
                       BREAKER_N_SLOTS_MIN <= BREAKER_MAX_SLOTS,
               "floors under ceilings");

/* One mapping of one table file. A handle keeps every mapping it ever followed until it
 * is closed: another thread may still be reading the old one. A move doubles at least one
 * capacity, so the chain stays short. */
struct table_map {
	struct table_map *older;
	int fd; /* -EBADF for a snapshot, whose map is malloc'ed */
	void *map;
	size_t map_size;
	struct breaker_header hdr; /* the validated copy: bounds come from here, never the file */
	struct breaker_live *live;
	struct breaker_entry *entries;
	struct breaker_group *groups;
	struct breaker_slot *slots;
	uint32_t *entry_buckets;
	uint32_t *group_buckets;
};

struct breaker_table {
	int dir_fd; /* the checked runtime directory (rundir.h): every name is relative to it */
	bool writable;
	bool copy;             /* a private snapshot for a report (open_readonly): never followed */
	struct table_map *cur; /* atomic: the newest mapping followed */
	pthread_mutex_t follow_lock; /* process-local: one thread follows or grows at a time */
};

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define LOAD_RELAXED(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)
#define CAS(p, expected, desired)                                                                  \
	__atomic_compare_exchange_n((p), (expected), (desired), false, __ATOMIC_ACQ_REL,           \
	                            __ATOMIC_ACQUIRE)

static inline uint64_t slot_word(enum slot_state state, uint32_t entry, pid_t pid) {
	return (uint64_t)entry << 40 | (uint64_t)state << 32 | (uint32_t)pid;
}
static inline enum slot_state slot_word_state(uint64_t w) {
	return (enum slot_state)((w >> 32) & 0xff);
}
static inline uint32_t slot_word_entry(uint64_t w) { return (uint32_t)(w >> 40); }
static inline pid_t slot_word_pid(uint64_t w) { return (pid_t)(uint32_t)w; }

static inline uint32_t counts_active(uint64_t c) { return (uint32_t)(c >> 32); }
static inline uint32_t counts_pending(uint64_t c) { return (uint32_t)c; }

static uint32_t hash32(const char *s, size_t len) {
	uint32_t h = 2166136261u; /* FNV-1a */
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)s[i]) * 16777619u;
	return h;
}

static uint64_t hash64_update(uint64_t h, const void *p, size_t len) {
	const uint8_t *b = p;
	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

static void sleep_a_little(unsigned i) {
	if (i < 64)
		sched_yield();
	else
		/* a signal cutting the sleep short only makes the loop look sooner */
		(void)nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
}

/* ---- layout ---- */

static uint32_t roundup_pow2(uint64_t n) {
	uint32_t p = 1;
	while (p < n && p < (1u << 31))
		p <<= 1;
	return p;
}

/* Room for `want` with a quarter spare, never under the floor nor over the ceiling. */
static uint32_t capacity_for(uint64_t want, uint32_t floor, uint32_t ceiling) {
	uint64_t n = want + want / 4;
	return (uint32_t)MIN(MAX(n, (uint64_t)floor), (uint64_t)ceiling);
}

static uint64_t align_up(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

static void header_for(struct breaker_header *h, uint32_t n_entries, uint32_t n_groups,
                       uint32_t n_slots) {
	*h = (struct breaker_header){
	        .version = BREAKER_TABLE_VERSION,
	        .header_size = BREAKER_HEADER_SIZE,
	        .entry_size = sizeof(struct breaker_entry),
	        .n_entries = n_entries,
	        .group_size = sizeof(struct breaker_group),
	        .n_groups = n_groups,
	        .slot_size = sizeof(struct breaker_slot),
	        .n_slots = n_slots,
	        .key_max = BREAKER_KEY_MAX,
	        .group_mappings = ROUTE_MAX_GROUP_MAPPINGS,
	        .mutex_size = sizeof(pthread_mutex_t),
	        .n_entry_buckets = roundup_pow2((uint64_t)n_entries * 2),
	        .n_group_buckets = roundup_pow2((uint64_t)n_groups * 2),
	        .live_offset = BREAKER_LIVE_OFFSET,
	};
	memcpy(h->magic, BREAKER_MAGIC, sizeof(h->magic));
	h->entries_offset = BREAKER_HEADER_SIZE;
	h->groups_offset = align_up(h->entries_offset + (uint64_t)n_entries * h->entry_size, 64);
	h->slots_offset = align_up(h->groups_offset + (uint64_t)n_groups * h->group_size, 64);
	h->entry_buckets_offset =
	        align_up(h->slots_offset + (uint64_t)n_slots * sizeof(struct breaker_slot), 64);
	h->group_buckets_offset = align_up(
	        h->entry_buckets_offset + (uint64_t)h->n_entry_buckets * sizeof(uint32_t), 64);
	h->file_size = align_up(
	        h->group_buckets_offset + (uint64_t)h->n_group_buckets * sizeof(uint32_t), 4096);
}

int breaker_table_capacity_for(const struct breaker_capacity *want,
                               struct breaker_capacity *ret_capacity, uint64_t *ret_file_size) {
	struct breaker_header h;

	if (!want)
		return -EINVAL;
	if (want->clusters > BREAKER_MAX_ENTRIES || want->groups > BREAKER_MAX_GROUPS ||
	    want->slots > BREAKER_MAX_SLOTS)
		return -E2BIG;
	header_for(&h, capacity_for(want->clusters, BREAKER_N_ENTRIES_MIN, BREAKER_MAX_ENTRIES),
	           capacity_for(want->groups, BREAKER_N_GROUPS_MIN, BREAKER_MAX_GROUPS),
	           capacity_for(want->slots, BREAKER_N_SLOTS_MIN, BREAKER_MAX_SLOTS));
	if (ret_capacity)
		*ret_capacity = (struct breaker_capacity){
		        .clusters = h.n_entries, .groups = h.n_groups, .slots = h.n_slots};
	if (ret_file_size)
		*ret_file_size = h.file_size;
	return 0;
}

int breaker_table_capacity_needed(const struct config *c, struct breaker_capacity *ret) {
	if (!c || !ret)
		return -EINVAL;
	/* Every mapping's cluster at most once: an upper bound, cheap and never short. */
	*ret = (struct breaker_capacity){
	        .clusters = c->n_mappings > UINT32_MAX ? UINT32_MAX : (uint32_t)c->n_mappings,
	        .groups = c->n_groups > UINT32_MAX ? UINT32_MAX : (uint32_t)c->n_groups,
	        .slots = BREAKER_N_SLOTS_MIN,
	};
	return breaker_table_capacity_for(ret, NULL, NULL);
}

/* ---- mapping a file ---- */

static void map_free(struct table_map *m) {
	while (m) {
		struct table_map *older = m->older;
		if (m->fd < 0)
			free(m->map); /* a snapshot (breaker_table_open_readonly) */
		else if (m->map && m->map != MAP_FAILED)
			(void)munmap(m->map, m->map_size); /* fails only for a range never mapped */
		safe_close(m->fd);
		free(m);
		m = older;
	}
}

/* Map an opened table file after checking that it is one this build can use: the layout
 * half of its header must be exactly what this build computes for the capacities it
 * names, and the file exactly that long. */
static int map_file(int fd, bool writable, struct table_map **ret) {
	struct breaker_header expected, found;
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EPROTO;
	/* Anyone who can write the table can starve every breaker, or feed a writer indices
	 * it must then distrust: a table we write must be ours alone, and not a hard link that
	 * another user planted and can reach under another name. */
	if (writable &&
	    ((st.st_mode & (S_IWGRP | S_IWOTH)) || st.st_uid != geteuid() || st.st_nlink != 1))
		return -EPERM;
	if ((uint64_t)st.st_size < BREAKER_HEADER_SIZE)
		return -EPROTO;
	ssize_t n = pread(fd, &found, sizeof(found), 0);
	if (n < 0)
		return -errno;
	if ((size_t)n != sizeof(found))
		return -EPROTO;
	if (found.n_entries < BREAKER_N_ENTRIES_MIN || found.n_entries > BREAKER_MAX_ENTRIES ||
	    found.n_groups < BREAKER_N_GROUPS_MIN || found.n_groups > BREAKER_MAX_GROUPS ||
	    found.n_slots < BREAKER_N_SLOTS_MIN || found.n_slots > BREAKER_MAX_SLOTS)
		return -EPROTO;
	header_for(&expected, found.n_entries, found.n_groups, found.n_slots);
	if (memcmp(&found, &expected, sizeof(found)) != 0 ||
	    (uint64_t)st.st_size != expected.file_size)
		return -EPROTO;

	struct table_map *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->fd = -EBADF;
	m->hdr = expected;
	m->map_size = expected.file_size;
	m->map = mmap(NULL, m->map_size, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED,
	              fd, 0);
	if (m->map == MAP_FAILED) {
		int r = -errno;
		free(m);
		return r;
	}
	m->fd = fd;
	char *base = m->map;
	m->live = (struct breaker_live *)(base + BREAKER_LIVE_OFFSET);
	m->entries = (struct breaker_entry *)(base + expected.entries_offset);
	m->groups = (struct breaker_group *)(base + expected.groups_offset);
	m->slots = (struct breaker_slot *)(base + expected.slots_offset);
	m->entry_buckets = (uint32_t *)(base + expected.entry_buckets_offset);
	m->group_buckets = (uint32_t *)(base + expected.group_buckets_offset);
	*ret = m;
	return 0;
}

/* Used counts as far as this mapping's bounds allow: a damaged file never sends a walk
 * past the arrays. */
static uint32_t entries_used(const struct table_map *m) {
	return MIN(LOAD(&m->live->n_entries_used), m->hdr.n_entries);
}
static uint32_t groups_used(const struct table_map *m) {
	return MIN(LOAD(&m->live->n_groups_used), m->hdr.n_groups);
}

/* ---- keys: lock-free lookup in a hash index, creation under create_lock ---- */

/* One of the two keyed arrays (entries or groups) of a mapping. */
struct key_array {
	char *base;
	size_t stride;
	size_t lock_offset;
	uint32_t capacity;
	uint32_t *used;
	uint32_t *buckets;
	uint32_t mask;
};

static struct key_array entry_keys(struct table_map *m) {
	return (struct key_array){.base = (char *)m->entries,
	                          .stride = sizeof(struct breaker_entry),
	                          .lock_offset = offsetof(struct breaker_entry, lock),
	                          .capacity = m->hdr.n_entries,
	                          .used = &m->live->n_entries_used,
	                          .buckets = m->entry_buckets,
	                          .mask = m->hdr.n_entry_buckets - 1};
}

static struct key_array group_keys(struct table_map *m) {
	return (struct key_array){.base = (char *)m->groups,
	                          .stride = sizeof(struct breaker_group),
	                          .lock_offset = offsetof(struct breaker_group, lock),
	                          .capacity = m->hdr.n_groups,
	                          .used = &m->live->n_groups_used,
	                          .buckets = m->group_buckets,
	                          .mask = m->hdr.n_group_buckets - 1};
}

static struct table_key *key_at(const struct key_array *a, uint32_t idx) {
	return (struct table_key *)(a->base + (size_t)idx * a->stride);
}

static bool key_matches(const struct table_key *k, uint32_t hash, const char *name, size_t len) {
	return k->hash == hash && k->len == len && memcmp(k->name, name, len) == 0;
}

enum probe_result {
	PROBE_FOUND,
	PROBE_ABSENT,
	PROBE_UNSURE, /* met a key still being created: ask again under create_lock */
};

/* Find `name` by probing from its hash. The index is at most half full, so a probe ends
 * at an empty bucket within a few steps; keys are never deleted. */
static enum probe_result key_probe(const struct key_array *a, uint32_t hash, const char *name,
                                   size_t len, uint32_t *ret_idx, uint32_t *ret_bucket) {
	for (uint32_t i = 0; i <= a->mask; i++) {
		uint32_t bucket = (hash + i) & a->mask;
		uint32_t b = LOAD(&a->buckets[bucket]);
		if (b == 0) {
			*ret_bucket = bucket;
			return PROBE_ABSENT;
		}
		if (b > a->capacity)
			continue; /* damaged: never followed */
		struct table_key *k = key_at(a, b - 1);
		if (LOAD(&k->state) != KEY_READY)
			return PROBE_UNSURE;
		if (key_matches(k, hash, name, len)) {
			*ret_idx = b - 1;
			return PROBE_FOUND;
		}
	}
	return PROBE_UNSURE; /* a full index is damage: the locked path decides */
}

/* A creator died holding create_lock. Its key, if it reached the index, was completely
 * written (the bucket is stored last but one), so finish it; otherwise the next creator
 * overwrites it. */
static void key_recover_locked(const struct key_array *a) {
	uint32_t idx = LOAD_RELAXED(a->used), bucket;
	if (idx >= a->capacity)
		return;
	struct table_key *k = key_at(a, idx);
	if (k->len == 0 || k->len >= BREAKER_KEY_MAX)
		return;
	uint32_t found;
	if (key_probe(a, k->hash, k->name, k->len, &found, &bucket) == PROBE_UNSURE ||
	    LOAD(&k->state) == KEY_READY) {
		STORE(&k->state, KEY_READY);
		STORE(a->used, idx + 1);
	}
}

static int create_lock(struct table_map *m, const struct key_array *a) {
	int r = pthread_mutex_lock(&m->live->create_lock);
	if (r == EOWNERDEAD) {
		key_recover_locked(a);
		(void)pthread_mutex_consistent(&m->live->create_lock); /* as in entry_lock */
		return 0;
	}
	return -r;
}

static void create_unlock(struct table_map *m) {
	(void)pthread_mutex_unlock(&m->live->create_lock); /* held by this thread */
}

/* Add `name` at the next dense index. create_lock held, the table live, the name absent
 * with `bucket` its free bucket. -ENOSPC when the array is full (the caller grows). */
static int key_create_locked(const struct key_array *a, uint32_t hash, const char *name, size_t len,
                             uint32_t bucket, uint32_t *ret) {
	uint32_t idx = LOAD_RELAXED(a->used);
	if (idx >= a->capacity)
		return -ENOSPC;
	struct table_key *k = key_at(a, idx);
	/* A dead creator may have left a partial key here; none of it was published. */
	memset((char *)k, 0, a->stride);
	memcpy(k->name, name, len);
	k->len = (uint32_t)len;
	k->hash = hash;
	int r = mutex_init_shared_robust((pthread_mutex_t *)((char *)k + a->lock_offset));
	if (r < 0)
		return r;
	STORE(&a->buckets[bucket], idx + 1);
	STORE(&k->state, KEY_READY);
	STORE(a->used, idx + 1);
	*ret = idx;
	return 0;
}

/* ---- creating, following and growing the file ---- */

/* Build a complete table under a private name in `dir`: the layout of `h`, and, when
 * `from` is given, every key, counter, slot and weight state of that (frozen) table at
 * the same indices. Returns the fd with *ret_tmp naming it; the caller links or renames. */
static int table_build(int dir_fd, const struct breaker_header *h, const struct table_map *from,
                       char **ret_tmp) {
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = -EBADF;
	int r;

	for (int attempt = 0; fd < 0 && attempt < 16; attempt++) {
		uint64_t rnd;
		if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
			rnd = now_usec() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)attempt;
		tmp = mfree(tmp);
		if (asprintf(&tmp, ".%s.%016llx", BREAKER_FILE_NAME, (unsigned long long)rnd) < 0) {
			tmp = NULL;
			return -ENOMEM;
		}
		fd = openat(dir_fd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST)
			return -errno;
	}
	if (fd < 0)
		return -EEXIST;

	/* The same mode whatever the umask: upstream addresses and byte counts are the owner's. */
	if (fchmod(fd, 0600) < 0 || ftruncate(fd, (off_t)h->file_size) < 0) {
		r = -errno;
		(void)unlinkat(dir_fd, tmp,
		               0); /* best effort: a stray private name is never opened */
		return r;
	}
	/* Every page now, while a full runtime directory is still an error to report: a page of
	 * a sparse file that cannot be allocated later is a SIGBUS in whichever process first
	 * touches it, in the middle of an admit. */
	r = posix_fallocate(fd, 0, (off_t)h->file_size);
	if (r != 0 && r != EOPNOTSUPP && r != EINVAL) {
		(void)unlinkat(dir_fd, tmp, 0);
		return -r;
	}
	char *base = mmap(NULL, h->file_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		r = -errno;
		(void)unlinkat(dir_fd, tmp, 0);
		return r;
	}
	memcpy(base, h, sizeof(*h));
	struct table_map to = {
	        .hdr = *h,
	        .live = (struct breaker_live *)(base + BREAKER_LIVE_OFFSET),
	        .entries = (struct breaker_entry *)(base + h->entries_offset),
	        .groups = (struct breaker_group *)(base + h->groups_offset),
	        .slots = (struct breaker_slot *)(base + h->slots_offset),
	        .entry_buckets = (uint32_t *)(base + h->entry_buckets_offset),
	        .group_buckets = (uint32_t *)(base + h->group_buckets_offset),
	};
	r = mutex_init_shared_robust(&to.live->create_lock);
	if (r >= 0)
		r = mutex_init_shared_robust(&to.live->grow_lock);
	if (r >= 0 && from) {
		struct key_array ea = entry_keys(&to), ga = group_keys(&to);
		uint32_t n_entries = entries_used(from), n_groups = groups_used(from);

		for (uint32_t i = 0; r >= 0 && i < n_entries; i++) {
			const struct breaker_entry *src = &from->entries[i];
			struct breaker_entry *dst = &to.entries[i];
			uint32_t found, bucket;

			*dst = (struct breaker_entry){
			        .key = src->key,
			        .total = src->total,
			        .overflows = src->overflows,
			        .connect_failures = src->connect_failures,
			        .bytes_in = src->bytes_in,
			        .bytes_out = src->bytes_out,
			        .limits_set = src->limits_set,
			        .max_connections = src->max_connections,
			        .max_pending_requests = src->max_pending_requests,
			        .duration_sum_usec = src->duration_sum_usec,
			};
			memcpy(dst->results, src->results, sizeof(dst->results));
			memcpy(dst->duration_buckets, src->duration_buckets,
			       sizeof(dst->duration_buckets));
			/* a mutex is never copied: the old one may even be held */
			r = mutex_init_shared_robust(&dst->lock);
			dst->key.len = MIN(dst->key.len, BREAKER_KEY_MAX - 1);
			if (r >= 0 && key_probe(&ea, dst->key.hash, dst->key.name, dst->key.len,
			                        &found, &bucket) == PROBE_ABSENT)
				to.entry_buckets[bucket] = i + 1;
			dst->key.state = KEY_READY;
		}
		for (uint32_t i = 0; r >= 0 && i < n_groups; i++) {
			const struct breaker_group *src = &from->groups[i];
			struct breaker_group *dst = &to.groups[i];
			uint32_t found, bucket;

			memcpy(dst, src, sizeof(*dst));
			r = mutex_init_shared_robust(&dst->lock);
			dst->key.len = MIN(dst->key.len, BREAKER_KEY_MAX - 1);
			if (r >= 0 && key_probe(&ga, dst->key.hash, dst->key.name, dst->key.len,
			                        &found, &bucket) == PROBE_ABSENT)
				to.group_buckets[bucket] = i + 1;
			dst->key.state = KEY_READY;
		}
		/* Slots keep their numbers, since handles travel in hand-over records; the
		 * counts are derived from them, so the copy is exact by construction. A slot
		 * merely claimed by an admit in progress is not copied: that admit sees the
		 * table frozen under its entry lock and claims again in the new one. */
		uint32_t n_slots = MIN(from->hdr.n_slots, h->n_slots);
		for (uint32_t i = 0; i < n_slots; i++) {
			uint64_t w = LOAD(&from->slots[i].word);
			enum slot_state s = slot_word_state(w);
			uint32_t e = slot_word_entry(w);
			if ((s != SLOT_PENDING && s != SLOT_ACTIVE) || e >= n_entries)
				continue;
			to.slots[i].word = w;
			to.slots[i].owner_starttime = LOAD(&from->slots[i].owner_starttime);
			to.entries[e].counts += s == SLOT_ACTIVE ? 1ull << 32 : 1;
		}
		to.live->n_entries_used = n_entries;
		to.live->n_groups_used = n_groups;
		memcpy(to.live->unrouted_results, from->live->unrouted_results,
		       sizeof(to.live->unrouted_results));
		memcpy(to.live->processes, from->live->processes, sizeof(to.live->processes));
	}
	(void)munmap(base, h->file_size); /* mapped just above */
	if (r < 0) {
		(void)unlinkat(dir_fd, tmp, 0);
		return r;
	}
	*ret_tmp = TAKE_PTR(tmp);
	return TAKE_FD(fd);
}

/* The path names the file: when it no longer names the one we map, a grower replaced it. */
static bool map_is_published(const struct breaker_table *t, const struct table_map *m) {
	struct stat a, b;
	if (fstatat(t->dir_fd, BREAKER_FILE_NAME, &a, AT_SYMLINK_NOFOLLOW) < 0 ||
	    fstat(m->fd, &b) < 0)
		return false;
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Wait while a grower copies `m`. A grower that died mid-copy left it frozen: if it
 * published its copy, that copy holds every change (none was made after the freeze), so
 * the old table is marked moved; otherwise it becomes live again. */
static void table_wait_settled(struct breaker_table *t, struct table_map *m) {
	for (unsigned i = 0; LOAD(&m->live->state) == TABLE_FROZEN; i++) {
		pid_t grower = (pid_t)LOAD_RELAXED(&m->live->grower_pid);
		if (t->writable && grower > 0 &&
		    proclive_owner_is_stale(NULL, grower, LOAD(&m->live->grower_starttime))) {
			uint32_t expected = TABLE_FROZEN;
			(void)CAS(&m->live->state, &expected,
			          map_is_published(t, m) ? TABLE_LIVE : TABLE_MOVED);
			continue;
		}
		sleep_a_little(i);
	}
}

static struct table_map *table_cur(struct breaker_table *t);

/* Map the file the path names now, in place of `stale`. follow_lock held. */
static int table_follow_locked(struct breaker_table *t, struct table_map *stale) {
	for (int attempt = 0; attempt < 64; attempt++) {
		_cleanup_close_ int fd =
		        openat(t->dir_fd, BREAKER_FILE_NAME,
		               (t->writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		struct table_map *m;
		int r = map_file(fd, t->writable, &m);
		if (r < 0)
			return r;
		TAKE_FD(fd);
		if (LOAD(&m->live->state) == TABLE_MOVED && attempt < 63) {
			map_free(m); /* moved again meanwhile: the path names a newer one */
			continue;
		}
		m->older = stale;
		STORE(&t->cur, m);
		log_debug("breaker table: followed to a table of %u entries, %u groups, %u slots",
		          m->hdr.n_entries, m->hdr.n_groups, m->hdr.n_slots);
		return 1;
	}
	return -EAGAIN;
}

int breaker_table_follow(struct breaker_table *t) {
	if (!t)
		return -EINVAL;
	struct table_map *m = LOAD(&t->cur);
	if (LOAD(&m->live->state) != TABLE_MOVED)
		return 0;
	int r = -pthread_mutex_lock(&t->follow_lock);
	if (r < 0)
		return r;
	if (LOAD(&t->cur) == m)
		r = table_follow_locked(t, m);
	else
		r = 1;                               /* another thread followed */
	(void)pthread_mutex_unlock(&t->follow_lock); /* held since above */
	return r;
}

/* The mapping to work on: the current one, after following a move. One acquire load on
 * the fast path. A failure to follow leaves the old mapping, whose state changes are
 * refused (frozen or moved), so nothing is lost: the operation fails instead. */
static struct table_map *table_cur(struct breaker_table *t) {
	struct table_map *m = LOAD(&t->cur);
	if (__builtin_expect(LOAD(&m->live->state) == TABLE_MOVED, 0) && !t->copy) {
		if (breaker_table_follow(t) < 0)
			log_debug("breaker table: cannot follow a moved table");
		m = LOAD(&t->cur);
	}
	return m;
}

/* Replace `m` by a table with room for at least the given capacities: freeze it, let
 * every change in flight finish (each is made under an entry, group or create lock that
 * is checked live), copy it privately, rename the copy over the path, and mark the old one
 * moved. Growers are serialised by grow_lock in the old table (robust, so a grower's death
 * frees it; flock would not do, since forked workers share the parent's open file), and in
 * this process by follow_lock. Returns 0 once the caller may retry on table_cur(t). */
static int table_grow(struct breaker_table *t, struct table_map *m, uint32_t n_entries,
                      uint32_t n_groups, uint32_t n_slots) {
	_cleanup_free_ char *tmp = NULL;
	struct breaker_header h;
	int r;

	if (!t->writable)
		return -EROFS;
	r = -pthread_mutex_lock(&t->follow_lock);
	if (r < 0)
		return r;
	if (LOAD(&t->cur) != m) {
		(void)pthread_mutex_unlock(&t->follow_lock); /* held since above */
		return 0;
	}
	r = pthread_mutex_lock(&m->live->grow_lock);
	if (r == EOWNERDEAD)
		(void)pthread_mutex_consistent(&m->live->grow_lock); /* settled just below */
	else if (r) {
		(void)pthread_mutex_unlock(&t->follow_lock);
		return -r;
	}
	table_wait_settled(t, m); /* a frozen table here had a grower that died */
	if (LOAD(&m->live->state) != TABLE_LIVE || !map_is_published(t, m)) {
		/* another process grew it: follow */
		(void)pthread_mutex_unlock(&m->live->grow_lock);
		if (LOAD(&m->live->state) == TABLE_LIVE)
			r = -ESTALE; /* replaced outside this protocol: refuse to clobber it */
		else
			r = table_follow_locked(t, m);
		(void)pthread_mutex_unlock(&t->follow_lock);
		return MIN(r, 0);
	}

	header_for(&h, MAX(n_entries, m->hdr.n_entries), MAX(n_groups, m->hdr.n_groups),
	           MAX(n_slots, m->hdr.n_slots));
	uint64_t st;
	STORE(&m->live->grower_pid, (uint32_t)proclive_self(&st));
	STORE(&m->live->grower_starttime, st);
	__atomic_store_n(&m->live->state, TABLE_FROZEN, __ATOMIC_SEQ_CST);

	/* Barriers: whoever holds a lock now finishes; whoever takes one later sees frozen. */
	struct key_array ea = entry_keys(m);
	r = create_lock(m, &ea);
	if (r >= 0) {
		uint32_t ne = entries_used(m), ng = groups_used(m);
		for (uint32_t i = 0; i < ne; i++) {
			pthread_mutex_t *l = &m->entries[i].lock;
			int k = pthread_mutex_lock(l);
			if (k == EOWNERDEAD)
				(void)pthread_mutex_consistent(l); /* counts are rebuilt below */
			if (k == 0 || k == EOWNERDEAD)
				(void)pthread_mutex_unlock(l);
		}
		for (uint32_t i = 0; i < ng; i++) {
			pthread_mutex_t *l = &m->groups[i].lock;
			int k = pthread_mutex_lock(l);
			if (k == EOWNERDEAD)
				(void)pthread_mutex_consistent(
				        l); /* the WRR cycle restarts at worst */
			if (k == 0 || k == EOWNERDEAD)
				(void)pthread_mutex_unlock(l);
		}

		_cleanup_close_ int fd = table_build(t->dir_fd, &h, m, &tmp);
		r = fd;
		if (fd >= 0) {
			r = renameat(t->dir_fd, tmp, t->dir_fd, BREAKER_FILE_NAME) < 0 ? -errno : 0;
			if (r < 0) /* best effort: a stray private name is never opened */
				(void)unlinkat(t->dir_fd, tmp, 0);
		}
		/* Moved when published, else live again: the old table holds everything. */
		STORE(&m->live->state, r >= 0 ? TABLE_MOVED : TABLE_LIVE);
		create_unlock(m);
	} else
		STORE(&m->live->state, TABLE_LIVE);
	(void)pthread_mutex_unlock(&m->live->grow_lock);
	if (r >= 0) {
		log_debug("breaker table: grown to %u entries, %u groups, %u slots", h.n_entries,
		          h.n_groups, h.n_slots);
		r = table_follow_locked(t, m);
	}
	(void)pthread_mutex_unlock(&t->follow_lock); /* held since above */
	return MIN(r, 0);
}

/* Find or create `name` in the entries (or groups) of the current table, growing the
 * table when the array is full. */
static int key_find_or_create(struct breaker_table *t, bool groups, const char *name,
                              uint32_t *ret) {
	size_t len = strlen(name);
	if (len == 0 || len >= BREAKER_KEY_MAX)
		return len ? -ENAMETOOLONG : -EINVAL;
	uint32_t hash = hash32(name, len);

	for (;;) {
		struct table_map *m = table_cur(t);
		struct key_array a = groups ? group_keys(m) : entry_keys(m);
		uint32_t bucket;

		if (key_probe(&a, hash, name, len, ret, &bucket) == PROBE_FOUND)
			return 0;
		if (!t->writable)
			return -ENOENT;
		int r = create_lock(m, &a);
		if (r < 0)
			return r;
		if (LOAD(&m->live->state) != TABLE_LIVE) {
			create_unlock(m);
			table_wait_settled(t, m);
			continue;
		}
		enum probe_result p = key_probe(&a, hash, name, len, ret, &bucket);
		if (p == PROBE_FOUND) {
			create_unlock(m);
			return 0;
		}
		r = p == PROBE_ABSENT ? key_create_locked(&a, hash, name, len, bucket, ret) : -EIO;
		create_unlock(m);
		if (r != -ENOSPC)
			return r;
		/* half as much again: a reload adding a few thousand clusters grows once */
		uint64_t more = (uint64_t)a.capacity + a.capacity / 2;
		if (a.capacity >= (groups ? BREAKER_MAX_GROUPS : BREAKER_MAX_ENTRIES))
			return -ENOSPC;
		r = table_grow(t, m,
		               groups ? m->hdr.n_entries
		                      : (uint32_t)MIN(more, (uint64_t)BREAKER_MAX_ENTRIES),
		               groups ? (uint32_t)MIN(more, (uint64_t)BREAKER_MAX_GROUPS)
		                      : m->hdr.n_groups,
		               m->hdr.n_slots);
		if (r < 0)
			return r;
	}
}

static int table_new(int dir_fd, bool writable, struct breaker_table **ret) {
	struct breaker_table *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->writable = writable;
	t->dir_fd = -EBADF;
	int r = -pthread_mutex_init(&t->follow_lock, NULL);
	if (r < 0) {
		free(t);
		return r;
	}
	/* our own copy of the directory fd: the caller may close theirs */
	t->dir_fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 3);
	if (t->dir_fd < 0) {
		r = -errno;
		breaker_table_close(t);
		return r;
	}
	*ret = t;
	return 0;
}

/* A table made by an older tcpmap (our magic, a lower layout version): what an upgrade
 * finds in the runtime directory while the old image still drains. */
static bool table_is_older(int fd) {
	struct {
		char magic[8];
		uint32_t version;
	} h;
	return pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h) &&
	       memcmp(h.magic, BREAKER_MAGIC, sizeof(h.magic)) == 0 &&
	       h.version < BREAKER_TABLE_VERSION;
}

/* Put a new table of this layout in place of an older one. The older layout cannot be
 * read, so counts start anew; processes still running the old version keep their mapping
 * of the old file, so until they exit, limits are counted apart (an upgrade's window,
 * tcpmapd(8)). Connections they hand over are counted anew when adopted (conn_adopt).
 * Processes of this version that find the older file at once serialise on a lock file,
 * so exactly one replaces it. */
static int table_replace_older(struct breaker_table *t, const struct breaker_capacity *cap) {
	_cleanup_close_ int lock = openat(t->dir_fd, "." BREAKER_FILE_NAME ".upgrade",
	                                  O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	int r;

	if (lock < 0)
		return -errno;
	if (flock(lock, LOCK_EX) < 0)
		return -errno;
	_cleanup_close_ int fd =
	        openat(t->dir_fd, BREAKER_FILE_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || !table_is_older(fd))
		return 0; /* replaced (or removed) by another process meanwhile: open that */
	struct breaker_header h;
	_cleanup_free_ char *tmp = NULL;
	header_for(&h, cap->clusters, cap->groups, cap->slots);
	_cleanup_close_ int nfd = table_build(t->dir_fd, &h, NULL, &tmp);
	if (nfd < 0)
		return nfd;
	r = renameat(t->dir_fd, tmp, t->dir_fd, BREAKER_FILE_NAME) < 0 ? -errno : 0;
	if (r < 0)
		(void)unlinkat(t->dir_fd, tmp, 0);
	else
		log_debug("breaker table: replaced a table of an older tcpmap");
	return r; /* the lock goes with its fd */
}

static int table_open(int dir_fd, bool writable, const struct breaker_capacity *want,
                      struct breaker_table **ret) {
	struct breaker_table *t;

	if (dir_fd < 0 || !ret)
		return -EINVAL;
	int r = table_new(dir_fd, writable, &t);
	if (r < 0)
		return r;

	struct breaker_capacity cap = {0};
	r = breaker_table_capacity_for(want ? want : &cap, &cap, NULL);
	for (int attempt = 0; r >= 0 && attempt < 4; attempt++) {
		_cleanup_close_ int fd =
		        openat(t->dir_fd, BREAKER_FILE_NAME,
		               (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 && (errno != ENOENT || !writable)) {
			r = -errno;
			break;
		}
		if (fd < 0) {
			struct breaker_header h;
			_cleanup_free_ char *tmp = NULL;

			header_for(&h, cap.clusters, cap.groups, cap.slots);
			fd = table_build(t->dir_fd, &h, NULL, &tmp);
			if (fd < 0) {
				r = fd;
				break;
			}
			r = linkat(t->dir_fd, tmp, t->dir_fd, BREAKER_FILE_NAME, 0) < 0 ? -errno
			                                                                : 0;
			/* best effort, as above; the linked name is what counts */
			(void)unlinkat(t->dir_fd, tmp, 0);
			if (r == -EEXIST) {
				r = 0;
				continue; /* lost the race: open the winner's file */
			}
			if (r < 0)
				break;
		}
		struct table_map *m;
		r = map_file(fd, writable, &m);
		if (r == -EPROTO && writable && table_is_older(fd)) {
			r = table_replace_older(t, &cap);
			if (r >= 0)
				continue; /* open the table that replaced it */
		}
		if (r < 0)
			break;
		TAKE_FD(fd);
		t->cur = m;
		if (LOAD(&m->live->state) == TABLE_MOVED)
			(void)breaker_table_follow(t); /* opened in the instant of a move */
		log_debug("breaker table mapped");
		if (want && writable)
			r = breaker_table_reserve(t, want);
		if (r < 0)
			break;
		*ret = t;
		return 0;
	}
	breaker_table_close(t);
	return r < 0 ? r : -EAGAIN;
}

int breaker_table_open(int dir_fd, struct breaker_table **ret) {
	return table_open(dir_fd, true, NULL, ret);
}

int breaker_table_open_sized(int dir_fd, const struct breaker_capacity *want,
                             struct breaker_table **ret) {
	return table_open(dir_fd, true, want, ret);
}

/* A report reads a snapshot, never the live file: a table that shrinks under a mapping
 * would kill the reader with SIGBUS, and one another user could write would show what they
 * like. The copy is checked like a table we map, before any field is used. */
int breaker_table_open_readonly(int dir_fd, uid_t dir_owner, struct breaker_table **ret) {
	struct breaker_header found, expected;
	struct stat st;

	if (dir_fd < 0 || !ret)
		return -EINVAL;
	/* O_NONBLOCK: a FIFO put in the table's place must not wedge the reader in open(). */
	_cleanup_close_ int fd =
	        openat(dir_fd, BREAKER_FILE_NAME, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EPROTO;
	/* Only the tcpmap processes that own the directory, or root, write a table we believe. */
	if ((st.st_uid != 0 && st.st_uid != dir_owner) || (st.st_mode & (S_IWGRP | S_IWOTH)))
		return -EPERM;
	ssize_t n = pread(fd, &found, sizeof(found), 0);
	if (n < 0)
		return -errno;
	if ((size_t)n != sizeof(found) || found.n_entries < BREAKER_N_ENTRIES_MIN ||
	    found.n_entries > BREAKER_MAX_ENTRIES || found.n_groups < BREAKER_N_GROUPS_MIN ||
	    found.n_groups > BREAKER_MAX_GROUPS || found.n_slots < BREAKER_N_SLOTS_MIN ||
	    found.n_slots > BREAKER_MAX_SLOTS)
		return -EPROTO;
	header_for(&expected, found.n_entries, found.n_groups, found.n_slots);
	if (memcmp(&found, &expected, sizeof(found)) != 0 ||
	    (uint64_t)st.st_size != expected.file_size)
		return -EPROTO;

	_cleanup_free_ void *copy = malloc(expected.file_size);
	if (!copy)
		return -ENOMEM;
	for (size_t off = 0; off < expected.file_size;) {
		n = pread(fd, (char *)copy + off, expected.file_size - off, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EPROTO; /* cut short while read */
		off += (size_t)n;
	}
	/* the header again, in the copy: the file may have changed between the two reads */
	if (memcmp(copy, &expected, sizeof(expected)) != 0)
		return -EPROTO;

	struct breaker_table *t;
	int r = table_new(dir_fd, false, &t);
	if (r < 0)
		return r;
	struct table_map *m = calloc(1, sizeof(*m));
	if (!m) {
		breaker_table_close(t);
		return -ENOMEM;
	}
	char *base = copy;
	*m = (struct table_map){
	        .fd = -EBADF,
	        .map = TAKE_PTR(copy),
	        .map_size = expected.file_size,
	        .hdr = expected,
	        .live = (struct breaker_live *)(base + BREAKER_LIVE_OFFSET),
	        .entries = (struct breaker_entry *)(base + expected.entries_offset),
	        .groups = (struct breaker_group *)(base + expected.groups_offset),
	        .slots = (struct breaker_slot *)(base + expected.slots_offset),
	        .entry_buckets = (uint32_t *)(base + expected.entry_buckets_offset),
	        .group_buckets = (uint32_t *)(base + expected.group_buckets_offset),
	};
	t->copy = true;
	t->cur = m;
	*ret = t;
	return 0;
}

int breaker_table_reserve(struct breaker_table *t, const struct breaker_capacity *want) {
	struct breaker_capacity cap;

	if (!t || !want)
		return -EINVAL;
	int r = breaker_table_capacity_for(want, &cap, NULL);
	if (r < 0)
		return r;
	for (;;) {
		struct table_map *m = table_cur(t);
		/* room for what is wanted, not the spare quarter: that is for the next grow */
		if (m->hdr.n_entries >= want->clusters && m->hdr.n_groups >= want->groups &&
		    m->hdr.n_slots >= want->slots)
			return 0;
		r = table_grow(t, m, cap.clusters, cap.groups, cap.slots);
		if (r < 0)
			return r;
	}
}

int breaker_table_capacity(struct breaker_table *t, struct breaker_capacity *ret) {
	if (!t || !ret)
		return -EINVAL;
	struct table_map *m = table_cur(t);
	*ret = (struct breaker_capacity){
	        .clusters = m->hdr.n_entries, .groups = m->hdr.n_groups, .slots = m->hdr.n_slots};
	return 0;
}

struct breaker_table *breaker_table_close(struct breaker_table *t) {
	if (!t)
		return NULL;
	map_free(t->cur);
	(void)pthread_mutex_destroy(&t->follow_lock); /* nobody holds it at close */
	safe_close(t->dir_fd);
	free(t);
	return NULL;
}

/* ---- entries ---- */

static struct breaker_entry *entry_get(struct table_map *m, uint32_t entry) {
	if (entry >= entries_used(m))
		return NULL;
	struct breaker_entry *e = &m->entries[entry];
	return LOAD(&e->key.state) == KEY_READY ? e : NULL;
}

int breaker_table_entry(struct breaker_table *t, const char *cluster, uint32_t *ret) {
	if (!t || !cluster || !ret)
		return -EINVAL;
	return key_find_or_create(t, false, cluster, ret);
}

/* Called with the entry locked after its previous holder died: the counters may be half
 * updated, so rebuild them from the slots, which are the truth. */
static void entry_recount_locked(struct table_map *m, uint32_t entry) {
	uint32_t active = 0, pending = 0;

	for (uint32_t i = 0; i < m->hdr.n_slots; i++) {
		uint64_t w = LOAD_RELAXED(&m->slots[i].word);
		if (w == 0 || slot_word_entry(w) != entry)
			continue;
		if (slot_word_state(w) == SLOT_PENDING)
			pending++;
		else if (slot_word_state(w) == SLOT_ACTIVE)
			active++;
	}
	STORE(&m->entries[entry].counts, (uint64_t)active << 32 | pending);
}

static int entry_lock(struct table_map *m, uint32_t entry) {
	struct breaker_entry *e = &m->entries[entry];
	int r = pthread_mutex_lock(&e->lock);

	if (r == EOWNERDEAD) {
		entry_recount_locked(m, entry);
		/* fails only for a mutex not robust or not inconsistent: EOWNERDEAD says both */
		(void)pthread_mutex_consistent(&e->lock);
		log_debug("breaker entry %s: lock holder died, counts rebuilt from slots",
		          e->key.name);
		return 0;
	}
	return -r;
}

static void entry_unlock(struct table_map *m, uint32_t entry) {
	/* fails only for a lock this thread does not hold; callers hold it */
	(void)pthread_mutex_unlock(&m->entries[entry].lock);
}

/* Lock an entry for a change. -ESTALE when the table is frozen or moved: nothing may
 * change in it any more, so the caller retries on table_cur(t) (this waits for the move). */
static int entry_lock_live(struct breaker_table *t, struct table_map *m, uint32_t entry) {
	int r = entry_lock(m, entry);
	if (r < 0)
		return r;
	if (__builtin_expect(LOAD(&m->live->state) != TABLE_LIVE, 0)) {
		entry_unlock(m, entry);
		table_wait_settled(t, m);
		return -ESTALE;
	}
	return 0;
}

/* The numbers decide, not cb->set: a limit must never vanish because a flag was missed,
 * and an unset cb holds zeros (no limit) anyway. */
static bool counts_admit(uint64_t c, const struct circuit_breakers *cb) {
	if (!cb)
		return true;
	/* a written `max_connections: 0` is a limit of zero, as in Envoy: nothing is admitted */
	if (cb->refuse_all)
		return false;
	uint64_t all = (uint64_t)counts_active(c) + counts_pending(c);
	if (cb->max_connections && all >= cb->max_connections)
		return false;
	if (cb->max_pending_requests && counts_pending(c) >= cb->max_pending_requests)
		return false;
	return true;
}

void breaker_table_note_limits(struct breaker_table *t, uint32_t entry,
                               const struct circuit_breakers *cb) {
	bool set = cb && (cb->set || cb->max_connections || cb->max_pending_requests);
	uint32_t mc = cb ? cb->max_connections : 0, mp = cb ? cb->max_pending_requests : 0;

	if (!t || !t->writable)
		return;
	for (;;) {
		struct table_map *m = table_cur(t);
		struct breaker_entry *e = entry_get(m, entry);
		if (!e)
			return;
		/* Read first: a store per admit would bounce the line between every process. */
		if (LOAD_RELAXED(&e->limits_set) == set &&
		    LOAD_RELAXED(&e->max_connections) == mc &&
		    LOAD_RELAXED(&e->max_pending_requests) == mp)
			return;
		int r = entry_lock_live(t, m, entry);
		if (r == -ESTALE)
			continue;
		if (r < 0)
			return;
		__atomic_store_n(&e->max_connections, mc, __ATOMIC_RELAXED);
		__atomic_store_n(&e->max_pending_requests, mp, __ATOMIC_RELAXED);
		__atomic_store_n(&e->limits_set, (uint32_t)set, __ATOMIC_RELAXED);
		entry_unlock(m, entry);
		return;
	}
}

bool breaker_table_would_admit(struct breaker_table *t, uint32_t entry,
                               const struct circuit_breakers *cb) {
	if (!t)
		return false;
	struct breaker_entry *e = entry_get(table_cur(t), entry);
	if (!e)
		return false;
	return counts_admit(LOAD(&e->counts), cb);
}

/* ---- slots ---- */

static __thread uint32_t slot_hint;
static __thread bool slot_hint_set;

/* Reserve a free slot (uncounted). Each thread starts where its last claim ended, so in
 * steady state the next slot is usually free and the search is a handful of loads. */
static int slot_claim(struct table_map *m, uint32_t entry, uint32_t *ret) {
	uint64_t st;
	pid_t pid = proclive_self(&st);
	uint32_t n = m->hdr.n_slots;

	if (!slot_hint_set) {
		pid_t tid = gettid();
		slot_hint = hash32((const char *)&tid, sizeof(tid));
		slot_hint_set = true;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint32_t idx = (slot_hint + i) % n;
		struct breaker_slot *s = &m->slots[idx];
		uint64_t expected = 0;

		if (LOAD_RELAXED(&s->word) != 0)
			continue;
		if (!CAS(&s->word, &expected, slot_word(SLOT_CLAIMED, entry, pid)))
			continue;
		STORE(&s->owner_starttime, st);
		slot_hint = (idx + 1) % n;
		*ret = idx;
		return 0;
	}
	return -ENOSPC;
}

/* Give back a reservation that was never counted. */
static void slot_unclaim(struct table_map *m, uint32_t idx) {
	STORE(&m->slots[idx].owner_starttime, 0);
	STORE(&m->slots[idx].word, 0);
}

/* Free a slot and undo its share of the counts. Entry lock held. The start time is cleared
 * before the word, so the next claimer's start time is never mistaken for ours. */
static void slot_free_locked(struct table_map *m, uint32_t idx, uint64_t w) {
	struct breaker_entry *e = &m->entries[slot_word_entry(w)];
	uint64_t c = LOAD_RELAXED(&e->counts);

	if (slot_word_state(w) == SLOT_PENDING && counts_pending(c) > 0)
		STORE(&e->counts, c - 1);
	else if (slot_word_state(w) == SLOT_ACTIVE && counts_active(c) > 0)
		STORE(&e->counts, c - (1ull << 32));
	slot_unclaim(m, idx);
}

/* Reclaim slot idx if it still holds the stale word `w`. Takes the entry lock and checks
 * again under it: the owner may have released it and someone else claimed it since.
 * Returns 1 when reclaimed, 0 when not, -ESTALE when the table moved. */
static int slot_reclaim(struct breaker_table *t, struct table_map *m, uint32_t idx, uint64_t w) {
	uint32_t entry = slot_word_entry(w);
	int r;

	if (!entry_get(m, entry)) {
		/* No lock to take: only a corrupt word can get here, and it counts nowhere. */
		uint64_t expected = w;
		return CAS(&m->slots[idx].word, &expected, 0) ? 1 : 0;
	}
	r = entry_lock_live(t, m, entry);
	if (r < 0)
		return r;
	bool reclaimed = false;
	if (LOAD(&m->slots[idx].word) == w &&
	    proclive_owner_is_stale(NULL, slot_word_pid(w), LOAD(&m->slots[idx].owner_starttime))) {
		slot_free_locked(m, idx, w);
		reclaimed = true;
	}
	entry_unlock(m, entry);
	if (reclaimed)
		log_debug("breaker entry %s: reclaimed slot %u of dead pid %d",
		          m->entries[entry].key.name, idx, (int)slot_word_pid(w));
	return reclaimed;
}

/* Reclaim stale slots: of one entry, or of all with `only_entry` UINT32_MAX. */
static int reclaim_stale(struct breaker_table *t, struct table_map *m, uint32_t only_entry) {
	struct proclive_cache cache_storage = {}, *cache = &cache_storage;
	int n = 0;

	for (uint32_t i = 0; i < m->hdr.n_slots; i++) {
		uint64_t w = LOAD(&m->slots[i].word);
		if (w == 0)
			continue;
		if (only_entry != UINT32_MAX && slot_word_entry(w) != only_entry)
			continue;
		if (!proclive_owner_is_stale(cache, slot_word_pid(w),
		                             LOAD(&m->slots[i].owner_starttime)))
			continue;
		int r = slot_reclaim(t, m, i, w);
		if (r < 0)
			return r;
		n += r;
	}
	return n;
}

static void processes_reap(struct breaker_table *t);

int breaker_table_reap(struct breaker_table *t) {
	if (!t)
		return -EINVAL;
	if (!t->writable)
		return -EROFS;
	processes_reap(t);
	for (;;) {
		/* table_cur follows a move, so an idle process lets go of an old table */
		int r = reclaim_stale(t, table_cur(t), UINT32_MAX);
		if (r != -ESTALE)
			return r;
	}
}

static bool stale_scan_due(struct breaker_entry *e) {
	uint64_t now = now_usec(), last = LOAD_RELAXED(&e->last_stale_scan_usec);
	if (last != 0 && now - last < STALE_SCAN_INTERVAL_USEC)
		return false;
	return CAS(&e->last_stale_scan_usec, &last, now); /* one scanner per interval */
}

/* One admit attempt on mapping m. -ESTALE: the table moved, try again on the new one. */
static int admit_on(struct breaker_table *t, struct table_map *m, uint32_t entry,
                    const struct circuit_breakers *cb, breaker_slot_t *ret) {
	struct breaker_entry *e = entry_get(m, entry);
	uint32_t idx;
	int r;

	if (!e)
		return -EINVAL;
	r = slot_claim(m, entry, &idx);
	if (r == -ENOSPC && reclaim_stale(t, m, UINT32_MAX) > 0)
		r = slot_claim(m, entry, &idx);
	if (r == -ENOSPC) {
		/* Every slot holds a live connection: double them. */
		if (m->hdr.n_slots >= BREAKER_MAX_SLOTS)
			return -ENOSPC;
		r = table_grow(t, m, m->hdr.n_entries, m->hdr.n_groups,
		               (uint32_t)MIN((uint64_t)m->hdr.n_slots * 2, BREAKER_MAX_SLOTS));
		return r < 0 ? r : -ESTALE;
	}
	if (r < 0)
		return r;
	uint64_t claimed = LOAD_RELAXED(&m->slots[idx].word);

	for (int attempt = 0;; attempt++) {
		r = entry_lock_live(t, m, entry);
		if (r < 0)
			break;
		uint64_t c = LOAD_RELAXED(&e->counts);
		if (counts_admit(c, cb)) {
			STORE(&m->slots[idx].word,
			      slot_word(SLOT_PENDING, entry, slot_word_pid(claimed)));
			STORE(&e->counts, c + 1);
			ADD(&e->total, 1);
			entry_unlock(m, entry);
			*ret = idx + 1;
			return 0;
		}
		/* with a limit of zero no reclaimed slot could ever let this one in */
		if (attempt > 0 || cb->refuse_all || !stale_scan_due(e)) {
			ADD(&e->overflows, 1);
			entry_unlock(m, entry);
			r = -EBUSY;
			break;
		}
		/* Over the limit: dead processes may be holding the capacity. */
		entry_unlock(m, entry);
		r = reclaim_stale(t, m, entry);
		if (r < 0)
			break;
	}
	slot_unclaim(m, idx);
	return r;
}

int breaker_table_admit(struct breaker_table *t, uint32_t entry, const struct circuit_breakers *cb,
                        breaker_slot_t *ret) {
	if (!t || !ret || !t->writable)
		return -EINVAL;
	if (cb)
		breaker_table_note_limits(t, entry, cb);
	for (;;) {
		int r = admit_on(t, table_cur(t), entry, cb, ret);
		if (r != -ESTALE)
			return r;
	}
}

/* The slot behind a handle, if this process owns it and it is counted. */
static struct breaker_slot *slot_owned(struct table_map *m, breaker_slot_t slot,
                                       uint64_t *ret_word) {
	uint64_t st;

	if (slot == 0 || slot > m->hdr.n_slots)
		return NULL;
	struct breaker_slot *s = &m->slots[slot - 1];
	uint64_t w = LOAD(&s->word);
	enum slot_state state = slot_word_state(w);
	if ((state != SLOT_PENDING && state != SLOT_ACTIVE) ||
	    slot_word_pid(w) != proclive_self(&st) || !entry_get(m, slot_word_entry(w)))
		return NULL;
	*ret_word = w;
	return s;
}

/* Lock the entry of a slot this process owns, on the current table (after following a
 * move: the slot has the same number there). NULL when the handle is not ours. */
static struct table_map *slot_lock_owned(struct breaker_table *t, breaker_slot_t slot,
                                         uint64_t *ret_word) {
	if (!t || !t->writable)
		return NULL;
	for (;;) {
		struct table_map *m = table_cur(t);
		if (!slot_owned(m, slot, ret_word))
			return NULL;
		int r = entry_lock_live(t, m, slot_word_entry(*ret_word));
		if (r == -ESTALE)
			continue;
		return r < 0 ? NULL : m;
	}
}

void breaker_table_connected(struct breaker_table *t, breaker_slot_t slot) {
	uint64_t w;
	struct table_map *m = slot_lock_owned(t, slot, &w);
	if (!m)
		return;
	uint32_t entry = slot_word_entry(w);
	struct breaker_slot *s = &m->slots[slot - 1];
	if (LOAD(&s->word) == w && slot_word_state(w) == SLOT_PENDING) {
		struct breaker_entry *e = &m->entries[entry];
		uint64_t c = LOAD_RELAXED(&e->counts);
		STORE(&s->word, slot_word(SLOT_ACTIVE, entry, slot_word_pid(w)));
		/* pending -> active in one store: the sum never moves */
		if (counts_pending(c) > 0)
			STORE(&e->counts, c - 1 + (1ull << 32));
	}
	entry_unlock(m, entry);
}

void breaker_table_connect_failed(struct breaker_table *t, breaker_slot_t slot) {
	uint64_t w;
	struct table_map *m = slot_lock_owned(t, slot, &w);
	if (!m)
		return;
	ADD(&m->entries[slot_word_entry(w)].connect_failures, 1);
	entry_unlock(m, slot_word_entry(w));
}

void breaker_table_release(struct breaker_table *t, breaker_slot_t slot, uint64_t bytes_in,
                           uint64_t bytes_out) {
	uint64_t w;
	struct table_map *m = slot_lock_owned(t, slot, &w);
	if (!m)
		return;
	uint32_t entry = slot_word_entry(w);
	struct breaker_entry *e = &m->entries[entry];
	ADD(&e->bytes_in, bytes_in);
	ADD(&e->bytes_out, bytes_out);
	/* Under the lock the slot may only have moved pending -> active, or been reclaimed if
	 * we were wrongly taken for dead; free it only if it is still ours. */
	uint64_t now = LOAD(&m->slots[slot - 1].word);
	if (slot_word_pid(now) == slot_word_pid(w) && slot_word_entry(now) == entry &&
	    (slot_word_state(now) == SLOT_PENDING || slot_word_state(now) == SLOT_ACTIVE))
		slot_free_locked(m, slot - 1, now);
	entry_unlock(m, entry);
}

static unsigned duration_bucket(uint64_t usec) {
	unsigned i = 0;
	while (i < BREAKER_DURATION_BUCKETS && usec > breaker_duration_bounds_usec[i])
		i++;
	return i;
}

void breaker_table_note_end(struct breaker_table *t, uint32_t entry, enum conn_result result,
                            uint64_t duration_usec) {
	unsigned r_idx =
	        (unsigned)result < BREAKER_RESULTS_MAX ? (unsigned)result : BREAKER_RESULTS_MAX - 1;
	if (!t || !t->writable)
		return;
	for (;;) {
		struct table_map *m = table_cur(t);
		if (entry == BREAKER_ENTRY_NONE) {
			/* rare (scanners, misdirected clients): the table-wide lock is enough */
			struct key_array ea = entry_keys(m);
			if (create_lock(m, &ea) < 0)
				return;
			if (LOAD(&m->live->state) != TABLE_LIVE) {
				create_unlock(m);
				table_wait_settled(t, m);
				continue;
			}
			ADD(&m->live->unrouted_results[r_idx], 1);
			create_unlock(m);
			return;
		}
		struct breaker_entry *e = entry_get(m, entry);
		if (!e)
			return;
		int r = entry_lock_live(t, m, entry);
		if (r == -ESTALE)
			continue;
		if (r < 0)
			return;
		ADD(&e->results[r_idx], 1);
		ADD(&e->duration_buckets[duration_bucket(duration_usec)], 1);
		ADD(&e->duration_sum_usec, duration_usec);
		entry_unlock(m, entry);
		return;
	}
}

int breaker_table_adopt(struct breaker_table *t, breaker_slot_t slot) {
	uint64_t st;
	pid_t self = proclive_self(&st);

	return breaker_table_give(t, slot, self, st);
}

int breaker_table_give(struct breaker_table *t, breaker_slot_t slot, pid_t self, uint64_t st) {
	if (self <= 0 || !t || !t->writable || slot == 0)
		return -EINVAL;
	for (;;) {
		/* The handle was made by a process that may have followed a move before us:
		 * table_cur follows too, and the numbers are the same in every copy. */
		struct table_map *m = table_cur(t);
		if (slot > m->hdr.n_slots)
			return -ESTALE;
		struct breaker_slot *s = &m->slots[slot - 1];
		uint64_t w = LOAD(&s->word);
		enum slot_state state = slot_word_state(w);
		uint32_t entry = slot_word_entry(w);
		if ((state != SLOT_PENDING && state != SLOT_ACTIVE) || !entry_get(m, entry))
			return -ESTALE;

		int r = entry_lock_live(t, m, entry);
		if (r == -ESTALE)
			continue;
		if (r < 0)
			return r;
		w = LOAD(&s->word);
		state = slot_word_state(w);
		if ((state == SLOT_PENDING || state == SLOT_ACTIVE) &&
		    slot_word_entry(w) == entry) {
			/* Reapers re-check under this lock, so the two stores need not be one. */
			STORE(&s->owner_starttime, st);
			STORE(&s->word, slot_word(state, entry, self));
			r = 0;
		} else
			r = -ESTALE; /* reclaimed (or released) before we got it */
		entry_unlock(m, entry);
		return r;
	}
}

size_t breaker_table_fds(struct breaker_table *t, int fds[2]) {
	struct table_map *m = t ? LOAD(&t->cur) : NULL;
	size_t n = 0;

	if (!t)
		return 0;
	if (t->dir_fd >= 0)
		fds[n++] = t->dir_fd;
	if (m && m->fd >= 0)
		fds[n++] = m->fd;
	return n;
}

int breaker_table_entry_stats(struct breaker_table *t, uint32_t entry,
                              struct breaker_entry_stats *ret) {
	if (!t || !ret)
		return -EINVAL;
	struct breaker_entry *e = entry_get(table_cur(t), entry);
	if (!e)
		return -EINVAL;
	uint64_t c = LOAD(&e->counts);
	*ret = (struct breaker_entry_stats){
	        .active = counts_active(c),
	        .pending = counts_pending(c),
	        .max_connections = LOAD_RELAXED(&e->max_connections),
	        .max_pending_requests = LOAD_RELAXED(&e->max_pending_requests),
	        .total = LOAD_RELAXED(&e->total),
	        .overflows = LOAD_RELAXED(&e->overflows),
	        .connect_failures = LOAD_RELAXED(&e->connect_failures),
	        .bytes_in = LOAD_RELAXED(&e->bytes_in),
	        .bytes_out = LOAD_RELAXED(&e->bytes_out),
	        .duration_sum_usec = LOAD_RELAXED(&e->duration_sum_usec),
	};
	for (unsigned i = 0; i < BREAKER_RESULTS_MAX; i++)
		ret->results[i] = LOAD_RELAXED(&e->results[i]);
	for (unsigned i = 0; i <= BREAKER_DURATION_BUCKETS; i++)
		ret->duration_buckets[i] = LOAD_RELAXED(&e->duration_buckets[i]);
	return 0;
}

int breaker_table_count_slots(struct breaker_table *t, uint32_t entry, uint32_t *ret_active,
                              uint32_t *ret_pending) {
	uint32_t active = 0, pending = 0;

	if (!t)
		return -EINVAL;
	struct table_map *m = table_cur(t);
	if (!entry_get(m, entry))
		return -EINVAL;
	for (uint32_t i = 0; i < m->hdr.n_slots; i++) {
		uint64_t w = LOAD(&m->slots[i].word);
		if (w == 0 || slot_word_entry(w) != entry)
			continue;
		active += slot_word_state(w) == SLOT_ACTIVE;
		pending += slot_word_state(w) == SLOT_PENDING;
	}
	if (ret_active)
		*ret_active = active;
	if (ret_pending)
		*ret_pending = pending;
	return 0;
}

/* ---- groups: the state weights_pick works over, one per group key ---- */

static uint64_t group_signature(const struct mapping_group *g) {
	uint64_t h = 14695981039346656037ull;
	h = hash64_update(h, &g->n_mappings, sizeof(g->n_mappings));
	for (size_t i = 0; i < g->n_mappings; i++) {
		const struct mapping *m = g->mappings[i];
		const char *name = m && m->name ? m->name : "";
		uint32_t w = m ? m->effective_weight : 0;
		h = hash64_update(h, name, strlen(name) + 1);
		h = hash64_update(h, &w, sizeof(w));
	}
	return h ? h : 1; /* 0 is a fresh group's value: never match it */
}

/* New mapping set or weights (a reload): state computed for the old ones would skew the
 * split, so start over, picks included. */
static void group_reset_locked(struct breaker_group *grp, const struct mapping_group *g,
                               uint64_t signature) {
	memset(grp->current, 0, sizeof(grp->current));
	for (size_t i = 0; i < ROUTE_MAX_GROUP_MAPPINGS; i++) {
		const struct mapping *m = i < g->n_mappings ? g->mappings[i] : NULL;
		grp->weight[i] = m ? (int32_t)m->effective_weight : 0;
		__atomic_store_n(&grp->picks[i], 0, __ATOMIC_RELAXED);
		memset(grp->mapping_name[i], 0, BREAKER_MAPPING_NAME_MAX);
		if (m && m->name)
			strncpy(grp->mapping_name[i], m->name, BREAKER_MAPPING_NAME_MAX - 1);
	}
	STORE(&grp->n_mappings, (uint32_t)g->n_mappings);
	STORE(&grp->signature, signature);
}

int breaker_table_pick(struct breaker_table *t, const struct mapping_group *g,
                       const bool *eligible) {
	uint32_t idx;
	int r;

	if (!t || !g || !g->key || !t->writable)
		return -EINVAL;
	if (g->n_mappings == 0)
		return -ENOENT;
	if (g->n_mappings > ROUTE_MAX_GROUP_MAPPINGS)
		return -E2BIG;
	uint64_t signature = group_signature(g);
	for (;;) {
		r = key_find_or_create(t, true, g->key, &idx);
		if (r < 0)
			return r;
		struct table_map *m = table_cur(t);
		if (idx >= groups_used(m))
			continue; /* found in a table that moved since: find it again */
		struct breaker_group *grp = &m->groups[idx];

		r = pthread_mutex_lock(&grp->lock);
		if (r == EOWNERDEAD) {
			/* The dead holder may have left the weights half-stepped: restart. */
			memset(grp->current, 0, sizeof(grp->current));
			(void)pthread_mutex_consistent(&grp->lock); /* as in entry_lock */
		} else if (r)
			return -r;
		if (LOAD(&m->live->state) != TABLE_LIVE) {
			(void)pthread_mutex_unlock(&grp->lock); /* held since above */
			table_wait_settled(t, m);
			continue;
		}
		if (LOAD_RELAXED(&grp->signature) != signature)
			group_reset_locked(grp, g, signature);
		r = weights_pick(g, grp->current, eligible);
		if (r >= 0 && (size_t)r < ROUTE_MAX_GROUP_MAPPINGS)
			ADD(&grp->picks[r], 1);
		(void)pthread_mutex_unlock(&grp->lock); /* held since above */
		return r;
	}
}

void breaker_table_note_failover(struct breaker_table *t, const struct mapping_group *g) {
	uint32_t idx;

	if (!t || !g || !g->key || !t->writable)
		return;
	for (;;) {
		if (key_find_or_create(t, true, g->key, &idx) < 0)
			return;
		struct table_map *m = table_cur(t);
		if (idx >= groups_used(m))
			continue; /* as in breaker_table_pick */
		struct breaker_group *grp = &m->groups[idx];
		int r = pthread_mutex_lock(&grp->lock);
		if (r == EOWNERDEAD) {
			memset(grp->current, 0,
			       sizeof(grp->current)); /* as in breaker_table_pick */
			(void)pthread_mutex_consistent(&grp->lock);
		} else if (r)
			return;
		if (LOAD(&m->live->state) != TABLE_LIVE) {
			(void)pthread_mutex_unlock(&grp->lock); /* held since above */
			table_wait_settled(t, m);
			continue;
		}
		ADD(&grp->failovers, 1);
		(void)pthread_mutex_unlock(&grp->lock); /* held since above */
		return;
	}
}

/* ---- reading for reports ---- */

/* A key's name as stored, never past its buffer even in a damaged file. */
static size_t key_len_clamped(const struct table_key *k) {
	return strnlen(k->name, MIN((size_t)k->len, (size_t)BREAKER_KEY_MAX - 1));
}

/* Indices are the same in every copy of the table, so a walk may follow a move midway. */
bool breaker_table_next_entry(struct breaker_table *t, uint32_t *pos,
                              struct breaker_entry_view *ret) {
	if (!t)
		return false;
	struct table_map *m = table_cur(t);
	for (uint32_t n = entries_used(m); *pos < n; (*pos)++) {
		struct breaker_entry *e = &m->entries[*pos];
		if (LOAD(&e->key.state) != KEY_READY)
			continue;
		ret->cluster = e->key.name;
		ret->cluster_len = key_len_clamped(&e->key);
		/* cannot fail: the entry is in range and ready */
		(void)breaker_table_entry_stats(t, *pos, &ret->stats);
		(*pos)++;
		return true;
	}
	return false;
}

bool breaker_table_next_group(struct breaker_table *t, uint32_t *pos,
                              struct breaker_group_view *ret) {
	if (!t)
		return false;
	struct table_map *m = table_cur(t);
	for (uint32_t n = groups_used(m); *pos < n; (*pos)++) {
		struct breaker_group *grp = &m->groups[*pos];
		if (LOAD(&grp->key.state) != KEY_READY)
			continue;
		ret->key = grp->key.name;
		ret->key_len = key_len_clamped(&grp->key);
		ret->n_mappings = MIN(LOAD(&grp->n_mappings), ROUTE_MAX_GROUP_MAPPINGS);
		ret->failovers = LOAD_RELAXED(&grp->failovers);
		for (uint32_t i = 0; i < ret->n_mappings; i++) {
			ret->mappings[i].name = grp->mapping_name[i];
			ret->mappings[i].name_len =
			        strnlen(grp->mapping_name[i], BREAKER_MAPPING_NAME_MAX - 1);
			ret->mappings[i].weight = LOAD_RELAXED(&grp->weight[i]);
			ret->mappings[i].picks = LOAD_RELAXED(&grp->picks[i]);
		}
		(*pos)++;
		return true;
	}
	return false;
}

int breaker_table_unrouted_results(struct breaker_table *t, uint64_t ret[BREAKER_RESULTS_MAX]) {
	if (!t || !ret)
		return -EINVAL;
	struct table_map *m = table_cur(t);
	for (unsigned i = 0; i < BREAKER_RESULTS_MAX; i++)
		ret[i] = LOAD_RELAXED(&m->live->unrouted_results[i]);
	return 0;
}

/* ---- long-running processes and their configs ---- */

/* Lock the table-wide create_lock on a live table, following moves; NULL on error. */
static struct table_map *live_lock(struct breaker_table *t) {
	for (;;) {
		struct table_map *m = table_cur(t);
		struct key_array ea = entry_keys(m);
		if (create_lock(m, &ea) < 0)
			return NULL;
		if (LOAD(&m->live->state) == TABLE_LIVE)
			return m;
		create_unlock(m);
		table_wait_settled(t, m);
	}
}

int breaker_table_note_config(struct breaker_table *t, uint64_t generation) {
	uint64_t st;
	pid_t self = proclive_self(&st);
	struct timespec ts;

	if (!t || !t->writable)
		return -EINVAL;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct table_map *m = live_lock(t);
	if (!m)
		return -EIO;
	struct breaker_process_record *p = m->live->processes, *use = NULL;
	/* ours, else a free one, else a dead process's, else the longest unchanged */
	for (unsigned i = 0; !use && i < BREAKER_PROCESSES_MAX; i++)
		if (p[i].pid == (uint32_t)self && p[i].starttime == st)
			use = &p[i];
	for (unsigned i = 0; !use && i < BREAKER_PROCESSES_MAX; i++)
		if (p[i].pid == 0 || proclive_owner_is_stale(NULL, (pid_t)p[i].pid, p[i].starttime))
			use = &p[i];
	if (!use) {
		use = &p[0];
		for (unsigned i = 1; i < BREAKER_PROCESSES_MAX; i++)
			if (p[i].loaded_realtime_usec < use->loaded_realtime_usec)
				use = &p[i];
	}
	*use = (struct breaker_process_record){
	        .pid = (uint32_t)self,
	        .starttime = st,
	        .generation = generation,
	        .loaded_realtime_usec = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000,
	};
	create_unlock(m);
	return 0;
}

static void processes_reap(struct breaker_table *t) {
	struct table_map *m = table_cur(t);
	bool any = false;

	/* most seconds there is nothing to clear: look before taking the lock */
	for (unsigned i = 0; i < BREAKER_PROCESSES_MAX; i++) {
		uint32_t pid = LOAD_RELAXED(&m->live->processes[i].pid);
		any = any || (pid != 0 && proclive_owner_is_stale(
		                                  NULL, (pid_t)pid,
		                                  LOAD_RELAXED(&m->live->processes[i].starttime)));
	}
	if (!any || !(m = live_lock(t)))
		return;
	for (unsigned i = 0; i < BREAKER_PROCESSES_MAX; i++) {
		struct breaker_process_record *p = &m->live->processes[i];
		if (p->pid != 0 && proclive_owner_is_stale(NULL, (pid_t)p->pid, p->starttime))
			*p = (struct breaker_process_record){0};
	}
	create_unlock(m);
}

bool breaker_table_next_process(struct breaker_table *t, uint32_t *pos,
                                struct breaker_process_view *ret) {
	if (!t)
		return false;
	struct table_map *m = table_cur(t);
	for (; *pos < BREAKER_PROCESSES_MAX; (*pos)++) {
		const struct breaker_process_record *p = &m->live->processes[*pos];
		uint32_t pid = LOAD_RELAXED(&p->pid);
		if (pid == 0)
			continue;
		*ret = (struct breaker_process_view){
		        .pid = (pid_t)pid,
		        .generation = LOAD_RELAXED(&p->generation),
		        .loaded_realtime_usec = LOAD_RELAXED(&p->loaded_realtime_usec),
		};
		(*pos)++;
		return true;
	}
	return false;
}
