/* breaker.c — the shared breaker table: one file (DIR/breakers) that every tcpmap process on
 * the host maps MAP_SHARED. It holds per-cluster connection counts and limits, one slot per
 * upstream connection (owner pid + start time, so SIGKILL leaks nothing), and for each
 * mapping group the state that weights.c picks over, so weights and limits hold across
 * processes.
 *
 * It must never trust a file it has not validated, hold a lock for longer than a few stores,
 * allocate per connection, or log above debug level: callers log the decisions. Whether a
 * slot's owner still lives is asked of proclive.c; this file never reads /proc itself. */
#include "breaker.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "proclive.h"
#include "route.h"
#include "util.h"
#include "weights.h"

/* Layout. Capacity is fixed and generous rather than grown: the file is sparse (tmpfs only
 * backs pages that were touched), and resizing a mapping that other processes hold would
 * need a remap protocol for no practical gain. A full array gives -ENOSPC. */
#define BREAKER_MAGIC "TCPMAPBT"
#define BREAKER_FILE_NAME "breakers"
#define BREAKER_HEADER_SIZE 4096u
#define BREAKER_N_ENTRIES 1024u
#define BREAKER_N_GROUPS 1024u
#define BREAKER_N_SLOTS 65536u
#define BREAKER_KEY_MAX 512u         /* bytes including the NUL */
#define BREAKER_MAPPING_NAME_MAX 64u /* for reports only; longer names are truncated */

/* Overflowing admits scan every slot for dead owners; at most this often per entry, so an
 * overload does not turn into a slot-scanning storm. The 1 s reaper covers the rest. */
#define STALE_SCAN_INTERVAL_USEC 10000u
/* How long to wait for another process to finish publishing a new entry's key. */
#define KEY_CLAIM_WAIT_USEC 2000000u

enum key_state {
	KEY_FREE = 0,
	KEY_CLAIMING = 1, /* being written by claimer_pid; readers wait */
	KEY_READY = 2,    /* key and lock are immutable from here on */
};

/* A slot's whole identity is one 64-bit word, so claiming it is one CAS:
 * bits 0..31 owner pid (tgid), 32..39 state, 40..63 entry index. */
enum slot_state {
	SLOT_FREE = 0,
	SLOT_CLAIMED = 1, /* reserved by an admit in progress; not counted */
	SLOT_PENDING = 2, /* counted as pending */
	SLOT_ACTIVE = 3,  /* counted as active */
};

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
	uint32_t reserved;
	uint64_t entries_offset;
	uint64_t groups_offset;
	uint64_t slots_offset;
	uint64_t file_size;
};

struct table_key {
	uint32_t state; /* enum key_state, atomic */
	uint32_t claimer_pid;
	uint32_t hash;
	uint32_t len;
	char name[BREAKER_KEY_MAX];
};

/* Lock discipline: `counts` and every slot transition into or out of PENDING/ACTIVE change
 * only under `lock`, a robust process-shared mutex. A holder killed mid-update is seen as
 * EOWNERDEAD by the next locker, which recounts the entry from its slots, so the counters
 * stay exactly derivable from the slots. The other counters are monotonic atomics. */
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
} __attribute__((aligned(64)));

struct breaker_slot {
	uint64_t word;            /* atomic; see enum slot_state */
	uint64_t owner_starttime; /* /proc/PID/stat field 22; 0 while not yet written */
};

#define ENTRIES_OFFSET ((uint64_t)BREAKER_HEADER_SIZE)
#define GROUPS_OFFSET (ENTRIES_OFFSET + (uint64_t)BREAKER_N_ENTRIES * sizeof(struct breaker_entry))
#define SLOTS_OFFSET (GROUPS_OFFSET + (uint64_t)BREAKER_N_GROUPS * sizeof(struct breaker_group))
#define FILE_SIZE (SLOTS_OFFSET + (uint64_t)BREAKER_N_SLOTS * sizeof(struct breaker_slot))

_Static_assert(sizeof(struct breaker_header) <= BREAKER_HEADER_SIZE, "header fits");
_Static_assert(BREAKER_N_ENTRIES < (1u << 24), "entry index fits the slot word");

struct breaker_table {
	int fd;
	bool copy; /* map is a private, read-only copy in malloc'ed memory (for reports) */
	void *map;
	size_t map_size;
	struct breaker_entry *entries;
	struct breaker_group *groups;
	struct breaker_slot *slots;
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

/* ---- keys: find-or-create in an open-addressed array, lock-free ---- */

static int mutex_init_robust(pthread_mutex_t *m) {
	pthread_mutexattr_t attr;
	int r;

	r = pthread_mutexattr_init(&attr);
	if (r)
		return -r;
	r = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	if (!r)
		r = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	if (!r)
		r = pthread_mutex_init(m, &attr);
	(void)pthread_mutexattr_destroy(&attr); /* never fails for an initialised attr */
	return -r;
}

static bool key_matches(const struct table_key *k, uint32_t hash, const char *name, size_t len) {
	return k->hash == hash && k->len == len && memcmp(k->name, name, len) == 0;
}

/* Wait until a key being claimed is published. Returns KEY_READY, or KEY_FREE when the
 * claimer died (the element stays a tombstone and probing moves past it), or -EAGAIN. */
static int key_wait_ready(struct table_key *k) {
	uint64_t deadline = now_usec() + KEY_CLAIM_WAIT_USEC;

	for (unsigned i = 0;; i++) {
		uint32_t s = LOAD(&k->state);
		if (s != KEY_CLAIMING)
			return (int)s;
		pid_t claimer = (pid_t)LOAD_RELAXED(&k->claimer_pid);
		if (claimer > 0 && proclive_owner_is_stale(NULL, claimer, 0))
			return KEY_FREE;
		if (now_usec() > deadline)
			return -EAGAIN;
		if (i < 64)
			sched_yield();
		else
			/* a signal cutting the sleep short only makes the loop look sooner */
			(void)nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	}
}

/* Index of `name` in an array of n elements of `stride` bytes, each starting with a
 * struct table_key followed by a robust mutex at `lock_offset`. Creation is a CAS on the
 * key state; keys are never deleted, so a probe that reaches a free element has proven
 * the name absent. */
static int key_find_or_create(void *base, size_t stride, uint32_t n, size_t lock_offset,
                              const char *name, uint32_t *ret) {
	size_t len = strlen(name);
	if (len == 0 || len >= BREAKER_KEY_MAX)
		return len ? -ENAMETOOLONG : -EINVAL;
	uint32_t hash = hash32(name, len);

	for (uint32_t i = 0; i < n;) {
		uint32_t idx = (hash + i) % n;
		struct table_key *k = (struct table_key *)((char *)base + (size_t)idx * stride);
		uint32_t s = LOAD(&k->state);

		if (s == KEY_FREE) {
			uint32_t expected = KEY_FREE;
			if (!CAS(&k->state, &expected, KEY_CLAIMING))
				continue; /* someone else claimed it: look at it again */
			uint64_t st;
			STORE(&k->claimer_pid, (uint32_t)proclive_self(&st));
			memcpy(k->name, name, len);
			k->name[len] = '\0';
			k->len = (uint32_t)len;
			k->hash = hash;
			int r = mutex_init_robust((pthread_mutex_t *)((char *)k + lock_offset));
			if (r < 0) {
				STORE(&k->state, KEY_FREE);
				return r;
			}
			STORE(&k->state, KEY_READY);
			*ret = idx;
			return 0;
		}
		if (s == KEY_CLAIMING) {
			int w = key_wait_ready(k);
			if (w < 0)
				return w;
			if (w == KEY_FREE && LOAD(&k->state) == KEY_CLAIMING) {
				i++; /* tombstone left by a dead claimer */
				continue;
			}
			continue; /* published (or freed): look again */
		}
		if (key_matches(k, hash, name, len)) {
			*ret = idx;
			return 0;
		}
		i++;
	}
	return -ENOSPC;
}

/* ---- the file ---- */

static void header_expected(struct breaker_header *h) {
	*h = (struct breaker_header){
	        .version = BREAKER_TABLE_VERSION,
	        .header_size = BREAKER_HEADER_SIZE,
	        .entry_size = sizeof(struct breaker_entry),
	        .n_entries = BREAKER_N_ENTRIES,
	        .group_size = sizeof(struct breaker_group),
	        .n_groups = BREAKER_N_GROUPS,
	        .slot_size = sizeof(struct breaker_slot),
	        .n_slots = BREAKER_N_SLOTS,
	        .key_max = BREAKER_KEY_MAX,
	        .group_mappings = ROUTE_MAX_GROUP_MAPPINGS,
	        .mutex_size = sizeof(pthread_mutex_t),
	        .entries_offset = ENTRIES_OFFSET,
	        .groups_offset = GROUPS_OFFSET,
	        .slots_offset = SLOTS_OFFSET,
	        .file_size = FILE_SIZE,
	};
	memcpy(h->magic, BREAKER_MAGIC, sizeof(h->magic));
}

/* Map an opened table file after checking that it is one this build can use. */
static int table_map(int fd, bool writable, struct breaker_table **ret) {
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
	if ((uint64_t)st.st_size < sizeof(found))
		return -EPROTO;
	ssize_t n = pread(fd, &found, sizeof(found), 0);
	if (n < 0)
		return -errno;
	if ((size_t)n != sizeof(found))
		return -EPROTO;
	header_expected(&expected);
	if (memcmp(&found, &expected, sizeof(found)) != 0 || (uint64_t)st.st_size != FILE_SIZE)
		return -EPROTO;

	struct breaker_table *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->map_size = FILE_SIZE;
	t->map = mmap(NULL, t->map_size, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED,
	              fd, 0);
	if (t->map == MAP_FAILED) {
		int r = -errno;
		free(t);
		return r;
	}
	t->fd = fd;
	t->entries = (struct breaker_entry *)((char *)t->map + ENTRIES_OFFSET);
	t->groups = (struct breaker_group *)((char *)t->map + GROUPS_OFFSET);
	t->slots = (struct breaker_slot *)((char *)t->map + SLOTS_OFFSET);
	*ret = t;
	return 0;
}

/* Build a complete table under a private name and link() it into place, so no process
 * ever sees a half-initialised file. Every name is relative to the checked directory fd
 * (rundir.h), never a path another user could swap. Returns an fd of the linked file, or
 * -EEXIST when another process won the race. */
static int table_create(int dir_fd) {
	char tmp[64];
	_cleanup_close_ int fd = -EBADF;
	struct breaker_header h;
	int r;

	for (int attempt = 0; fd < 0 && attempt < 16; attempt++) {
		uint64_t rnd;
		if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
			rnd = now_usec() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)attempt;
		snprintf(tmp, sizeof(tmp), ".%s.%016llx", BREAKER_FILE_NAME,
		         (unsigned long long)rnd);
		fd = openat(dir_fd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (fd < 0 && errno != EEXIST)
			return -errno;
	}
	if (fd < 0)
		return -EEXIST;

	header_expected(&h);
	/* umask must not make it unreadable for tcpmapctl status, nor anything more open. */
	if (fchmod(fd, 0644) < 0 || ftruncate(fd, (off_t)FILE_SIZE) < 0 ||
	    pwrite(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h)) {
		r = errno ? -errno : -EIO;
		(void)unlinkat(dir_fd, tmp,
		               0); /* best effort: a stray private name is never opened */
		return r;
	}
	r = linkat(dir_fd, tmp, dir_fd, BREAKER_FILE_NAME, 0) < 0 ? -errno : 0;
	(void)unlinkat(dir_fd, tmp, 0); /* best effort, as above; the linked name is what counts */
	if (r < 0)
		return r;
	return TAKE_FD(fd);
}

int breaker_table_open(int dir_fd, struct breaker_table **ret) {
	if (dir_fd < 0 || !ret)
		return -EINVAL;

	for (int attempt = 0; attempt < 4; attempt++) {
		_cleanup_close_ int fd =
		        openat(dir_fd, BREAKER_FILE_NAME, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 && errno != ENOENT)
			return -errno;
		if (fd < 0) {
			fd = table_create(dir_fd);
			if (fd == -EEXIST)
				continue; /* lost the race: open the winner's file */
			if (fd < 0)
				return fd;
		}
		int r = table_map(fd, true, ret);
		if (r < 0)
			return r;
		TAKE_FD(fd);
		log_debug("breaker table mapped");
		return 0;
	}
	return -EAGAIN;
}

/* A report reads a copy, never the live file: a table that shrinks under a mapping would
 * kill the reader with SIGBUS, and one that changes while it is read could show a name
 * half rewritten. The copy is checked like a table we map, before any field is used. */
int breaker_table_open_readonly(int dir_fd, uid_t dir_owner, struct breaker_table **ret) {
	struct breaker_header expected;
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
	if ((uint64_t)st.st_size != FILE_SIZE)
		return -EPROTO;

	_cleanup_free_ struct breaker_table *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	_cleanup_free_ void *copy = malloc(FILE_SIZE);
	if (!copy)
		return -ENOMEM;
	for (size_t off = 0; off < FILE_SIZE;) {
		ssize_t n = pread(fd, (char *)copy + off, FILE_SIZE - off, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EPROTO; /* cut short while read */
		off += (size_t)n;
	}
	header_expected(&expected);
	if (memcmp(copy, &expected, sizeof(expected)) != 0)
		return -EPROTO;

	t->fd = -EBADF;
	t->copy = true;
	t->map = TAKE_PTR(copy);
	t->map_size = FILE_SIZE;
	t->entries = (struct breaker_entry *)((char *)t->map + ENTRIES_OFFSET);
	t->groups = (struct breaker_group *)((char *)t->map + GROUPS_OFFSET);
	t->slots = (struct breaker_slot *)((char *)t->map + SLOTS_OFFSET);
	*ret = TAKE_PTR(t);
	return 0;
}

struct breaker_table *breaker_table_close(struct breaker_table *t) {
	if (!t)
		return NULL;
	if (t->copy)
		free(t->map);
	else if (t->map && t->map != MAP_FAILED)
		(void)munmap(t->map, t->map_size); /* fails only for a range we never mapped */
	safe_close(t->fd);
	free(t);
	return NULL;
}

/* ---- entries ---- */

static struct breaker_entry *entry_get(struct breaker_table *t, uint32_t entry) {
	if (!t || entry >= BREAKER_N_ENTRIES)
		return NULL;
	struct breaker_entry *e = &t->entries[entry];
	return LOAD(&e->key.state) == KEY_READY ? e : NULL;
}

int breaker_table_entry(struct breaker_table *t, const char *cluster, uint32_t *ret) {
	if (!t || !cluster || !ret)
		return -EINVAL;
	return key_find_or_create(t->entries, sizeof(struct breaker_entry), BREAKER_N_ENTRIES,
	                          offsetof(struct breaker_entry, lock), cluster, ret);
}

/* Called with the entry locked after its previous holder died: the counters may be half
 * updated, so rebuild them from the slots, which are the truth. */
static void entry_recount_locked(struct breaker_table *t, uint32_t entry) {
	uint32_t active = 0, pending = 0;

	for (uint32_t i = 0; i < BREAKER_N_SLOTS; i++) {
		uint64_t w = LOAD_RELAXED(&t->slots[i].word);
		if (w == 0 || slot_word_entry(w) != entry)
			continue;
		if (slot_word_state(w) == SLOT_PENDING)
			pending++;
		else if (slot_word_state(w) == SLOT_ACTIVE)
			active++;
	}
	STORE(&t->entries[entry].counts, (uint64_t)active << 32 | pending);
}

static int entry_lock(struct breaker_table *t, uint32_t entry) {
	struct breaker_entry *e = &t->entries[entry];
	int r = pthread_mutex_lock(&e->lock);

	if (r == EOWNERDEAD) {
		entry_recount_locked(t, entry);
		/* fails only for a mutex not robust or not inconsistent: EOWNERDEAD says both */
		(void)pthread_mutex_consistent(&e->lock);
		log_debug("breaker entry %s: lock holder died, counts rebuilt from slots",
		          e->key.name);
		return 0;
	}
	return -r;
}

static void entry_unlock(struct breaker_table *t, uint32_t entry) {
	/* fails only for a lock this thread does not hold; callers hold it */
	(void)pthread_mutex_unlock(&t->entries[entry].lock);
}

/* The numbers decide, not cb->set: a limit must never vanish because a flag was missed,
 * and an unset cb holds zeros (no limit) anyway. */
static bool counts_admit(uint64_t c, const struct circuit_breakers *cb) {
	if (!cb)
		return true;
	uint64_t all = (uint64_t)counts_active(c) + counts_pending(c);
	if (cb->max_connections && all >= cb->max_connections)
		return false;
	if (cb->max_pending_requests && counts_pending(c) >= cb->max_pending_requests)
		return false;
	return true;
}

void breaker_table_note_limits(struct breaker_table *t, uint32_t entry,
                               const struct circuit_breakers *cb) {
	struct breaker_entry *e = entry_get(t, entry);
	if (!e)
		return;
	bool set = cb && (cb->set || cb->max_connections || cb->max_pending_requests);
	uint32_t mc = cb ? cb->max_connections : 0, mp = cb ? cb->max_pending_requests : 0;
	/* Read first: a store per admit would bounce the line between every process. */
	if (LOAD_RELAXED(&e->limits_set) != set || LOAD_RELAXED(&e->max_connections) != mc ||
	    LOAD_RELAXED(&e->max_pending_requests) != mp) {
		__atomic_store_n(&e->max_connections, mc, __ATOMIC_RELAXED);
		__atomic_store_n(&e->max_pending_requests, mp, __ATOMIC_RELAXED);
		__atomic_store_n(&e->limits_set, (uint32_t)set, __ATOMIC_RELAXED);
	}
}

bool breaker_table_would_admit(struct breaker_table *t, uint32_t entry,
                               const struct circuit_breakers *cb) {
	struct breaker_entry *e = entry_get(t, entry);
	if (!e)
		return false;
	return counts_admit(LOAD(&e->counts), cb);
}

/* ---- slots ---- */

static __thread uint32_t slot_hint;
static __thread bool slot_hint_set;

/* Reserve a free slot (uncounted). Each thread starts where its last claim ended, so in
 * steady state the next slot is usually free and the search is a handful of loads. */
static int slot_claim(struct breaker_table *t, uint32_t entry, uint32_t *ret) {
	uint64_t st;
	pid_t pid = proclive_self(&st);

	if (!slot_hint_set) {
		pid_t tid = gettid();
		slot_hint = hash32((const char *)&tid, sizeof(tid)) % BREAKER_N_SLOTS;
		slot_hint_set = true;
	}
	for (uint32_t i = 0; i < BREAKER_N_SLOTS; i++) {
		uint32_t idx = (slot_hint + i) % BREAKER_N_SLOTS;
		struct breaker_slot *s = &t->slots[idx];
		uint64_t expected = 0;

		if (LOAD_RELAXED(&s->word) != 0)
			continue;
		if (!CAS(&s->word, &expected, slot_word(SLOT_CLAIMED, entry, pid)))
			continue;
		STORE(&s->owner_starttime, st);
		slot_hint = (idx + 1) % BREAKER_N_SLOTS;
		*ret = idx;
		return 0;
	}
	return -ENOSPC;
}

/* Free a slot and undo its share of the counts. Entry lock held. The start time is cleared
 * before the word, so the next claimer's start time is never mistaken for ours. */
static void slot_free_locked(struct breaker_table *t, uint32_t idx, uint64_t w) {
	struct breaker_entry *e = &t->entries[slot_word_entry(w)];
	uint64_t c = LOAD_RELAXED(&e->counts);

	if (slot_word_state(w) == SLOT_PENDING && counts_pending(c) > 0)
		STORE(&e->counts, c - 1);
	else if (slot_word_state(w) == SLOT_ACTIVE && counts_active(c) > 0)
		STORE(&e->counts, c - (1ull << 32));
	STORE(&t->slots[idx].owner_starttime, 0);
	STORE(&t->slots[idx].word, 0);
}

/* Reclaim slot idx if it still holds the stale word `w`. Takes the entry lock and checks
 * again under it: the owner may have released it and someone else claimed it since. */
static int slot_reclaim(struct breaker_table *t, uint32_t idx, uint64_t w) {
	uint32_t entry = slot_word_entry(w);
	int r;

	if (entry >= BREAKER_N_ENTRIES || !entry_get(t, entry)) {
		/* No lock to take: only a corrupt word can get here, and it counts nowhere. */
		uint64_t expected = w;
		return CAS(&t->slots[idx].word, &expected, 0) ? 1 : 0;
	}
	r = entry_lock(t, entry);
	if (r < 0)
		return r;
	bool reclaimed = false;
	if (LOAD(&t->slots[idx].word) == w &&
	    proclive_owner_is_stale(NULL, slot_word_pid(w), LOAD(&t->slots[idx].owner_starttime))) {
		slot_free_locked(t, idx, w);
		reclaimed = true;
	}
	entry_unlock(t, entry);
	if (reclaimed)
		log_debug("breaker entry %s: reclaimed slot %u of dead pid %d",
		          t->entries[entry].key.name, idx, (int)slot_word_pid(w));
	return reclaimed;
}

/* Reclaim stale slots: of one entry, or of all with `only_entry` UINT32_MAX. */
static int reclaim_stale(struct breaker_table *t, uint32_t only_entry) {
	struct proclive_cache cache_storage = {}, *cache = &cache_storage;
	int n = 0;

	for (uint32_t i = 0; i < BREAKER_N_SLOTS; i++) {
		uint64_t w = LOAD(&t->slots[i].word);
		if (w == 0)
			continue;
		if (only_entry != UINT32_MAX && slot_word_entry(w) != only_entry)
			continue;
		if (!proclive_owner_is_stale(cache, slot_word_pid(w),
		                             LOAD(&t->slots[i].owner_starttime)))
			continue;
		int r = slot_reclaim(t, i, w);
		if (r < 0)
			return r;
		n += r;
	}
	return n;
}

int breaker_table_reap(struct breaker_table *t) {
	if (!t)
		return -EINVAL;
	return reclaim_stale(t, UINT32_MAX);
}

static bool stale_scan_due(struct breaker_entry *e) {
	uint64_t now = now_usec(), last = LOAD_RELAXED(&e->last_stale_scan_usec);
	if (last != 0 && now - last < STALE_SCAN_INTERVAL_USEC)
		return false;
	return CAS(&e->last_stale_scan_usec, &last, now); /* one scanner per interval */
}

int breaker_table_admit(struct breaker_table *t, uint32_t entry, const struct circuit_breakers *cb,
                        breaker_slot_t *ret) {
	struct breaker_entry *e = entry_get(t, entry);
	uint32_t idx;
	int r;

	if (!e || !ret)
		return -EINVAL;
	if (cb)
		breaker_table_note_limits(t, entry, cb);

	r = slot_claim(t, entry, &idx);
	if (r == -ENOSPC && reclaim_stale(t, UINT32_MAX) > 0)
		r = slot_claim(t, entry, &idx);
	if (r < 0)
		return r;
	uint64_t claimed = LOAD_RELAXED(&t->slots[idx].word);

	for (int attempt = 0;; attempt++) {
		r = entry_lock(t, entry);
		if (r < 0)
			break;
		uint64_t c = LOAD_RELAXED(&e->counts);
		if (counts_admit(c, cb)) {
			STORE(&t->slots[idx].word,
			      slot_word(SLOT_PENDING, entry, slot_word_pid(claimed)));
			STORE(&e->counts, c + 1);
			entry_unlock(t, entry);
			ADD(&e->total, 1);
			*ret = idx + 1;
			return 0;
		}
		if (attempt > 0 || !stale_scan_due(e)) {
			entry_unlock(t, entry);
			r = -EBUSY;
			break;
		}
		/* Over the limit: dead processes may be holding the capacity. */
		entry_unlock(t, entry);
		r = reclaim_stale(t, entry);
		if (r < 0)
			break;
	}

	/* Give the reservation back; it was never counted. */
	STORE(&t->slots[idx].owner_starttime, 0);
	STORE(&t->slots[idx].word, 0);
	if (r == -EBUSY)
		ADD(&e->overflows, 1);
	return r;
}

/* The slot behind a handle, if this process owns it and it is counted. */
static struct breaker_slot *slot_owned(struct breaker_table *t, breaker_slot_t slot,
                                       uint64_t *ret_word) {
	uint64_t st;

	if (!t || slot == 0 || slot > BREAKER_N_SLOTS)
		return NULL;
	struct breaker_slot *s = &t->slots[slot - 1];
	uint64_t w = LOAD(&s->word);
	enum slot_state state = slot_word_state(w);
	if ((state != SLOT_PENDING && state != SLOT_ACTIVE) ||
	    slot_word_pid(w) != proclive_self(&st) || !entry_get(t, slot_word_entry(w)))
		return NULL;
	*ret_word = w;
	return s;
}

void breaker_table_connected(struct breaker_table *t, breaker_slot_t slot) {
	uint64_t w;
	struct breaker_slot *s = slot_owned(t, slot, &w);

	if (!s || slot_word_state(w) != SLOT_PENDING)
		return;
	uint32_t entry = slot_word_entry(w);
	if (entry_lock(t, entry) < 0)
		return;
	if (LOAD(&s->word) == w) {
		struct breaker_entry *e = &t->entries[entry];
		uint64_t c = LOAD_RELAXED(&e->counts);
		STORE(&s->word, slot_word(SLOT_ACTIVE, entry, slot_word_pid(w)));
		/* pending -> active in one store: the sum never moves */
		if (counts_pending(c) > 0)
			STORE(&e->counts, c - 1 + (1ull << 32));
	}
	entry_unlock(t, entry);
}

void breaker_table_connect_failed(struct breaker_table *t, breaker_slot_t slot) {
	uint64_t w;
	if (!slot_owned(t, slot, &w))
		return;
	ADD(&t->entries[slot_word_entry(w)].connect_failures, 1);
}

void breaker_table_release(struct breaker_table *t, breaker_slot_t slot, uint64_t bytes_in,
                           uint64_t bytes_out) {
	uint64_t w;
	struct breaker_slot *s = slot_owned(t, slot, &w);

	if (!s)
		return;
	uint32_t entry = slot_word_entry(w);
	struct breaker_entry *e = &t->entries[entry];
	if (bytes_in)
		ADD(&e->bytes_in, bytes_in);
	if (bytes_out)
		ADD(&e->bytes_out, bytes_out);
	if (entry_lock(t, entry) < 0)
		return;
	/* Under the lock the slot may only have moved pending -> active, or been reclaimed if
	 * we were wrongly taken for dead; free it only if it is still ours. */
	uint64_t now = LOAD(&s->word);
	if (slot_word_pid(now) == slot_word_pid(w) && slot_word_entry(now) == entry &&
	    (slot_word_state(now) == SLOT_PENDING || slot_word_state(now) == SLOT_ACTIVE))
		slot_free_locked(t, slot - 1, now);
	entry_unlock(t, entry);
}

int breaker_table_adopt(struct breaker_table *t, breaker_slot_t slot) {
	uint64_t st;
	pid_t self = proclive_self(&st);

	if (!t || slot == 0 || slot > BREAKER_N_SLOTS)
		return -EINVAL;
	struct breaker_slot *s = &t->slots[slot - 1];
	uint64_t w = LOAD(&s->word);
	enum slot_state state = slot_word_state(w);
	uint32_t entry = slot_word_entry(w);
	if ((state != SLOT_PENDING && state != SLOT_ACTIVE) || !entry_get(t, entry))
		return -ESTALE;

	int r = entry_lock(t, entry);
	if (r < 0)
		return r;
	w = LOAD(&s->word);
	state = slot_word_state(w);
	if ((state == SLOT_PENDING || state == SLOT_ACTIVE) && slot_word_entry(w) == entry) {
		/* Reapers re-check under this lock, so the two stores need not be one. */
		STORE(&s->owner_starttime, st);
		STORE(&s->word, slot_word(state, entry, self));
		r = 0;
	} else
		r = -ESTALE; /* reclaimed (or released) before we got it */
	entry_unlock(t, entry);
	return r;
}

int breaker_table_entry_stats(struct breaker_table *t, uint32_t entry,
                              struct breaker_entry_stats *ret) {
	struct breaker_entry *e = entry_get(t, entry);
	if (!e || !ret)
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
	};
	return 0;
}

int breaker_table_count_slots(struct breaker_table *t, uint32_t entry, uint32_t *ret_active,
                              uint32_t *ret_pending) {
	uint32_t active = 0, pending = 0;

	if (!entry_get(t, entry))
		return -EINVAL;
	for (uint32_t i = 0; i < BREAKER_N_SLOTS; i++) {
		uint64_t w = LOAD(&t->slots[i].word);
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

	if (!t || !g || !g->key)
		return -EINVAL;
	if (g->n_mappings == 0)
		return -ENOENT;
	if (g->n_mappings > ROUTE_MAX_GROUP_MAPPINGS)
		return -E2BIG;
	r = key_find_or_create(t->groups, sizeof(struct breaker_group), BREAKER_N_GROUPS,
	                       offsetof(struct breaker_group, lock), g->key, &idx);
	if (r < 0)
		return r;
	struct breaker_group *grp = &t->groups[idx];
	uint64_t signature = group_signature(g);

	r = pthread_mutex_lock(&grp->lock);
	if (r == EOWNERDEAD) {
		/* The dead holder may have left the weights half-stepped: restart the cycle. */
		memset(grp->current, 0, sizeof(grp->current));
		(void)pthread_mutex_consistent(&grp->lock); /* as in entry_lock */
	} else if (r)
		return -r;
	if (LOAD_RELAXED(&grp->signature) != signature)
		group_reset_locked(grp, g, signature);
	r = weights_pick(g, grp->current, eligible);
	if (r >= 0 && (size_t)r < ROUTE_MAX_GROUP_MAPPINGS)
		ADD(&grp->picks[r], 1);
	(void)pthread_mutex_unlock(&grp->lock); /* held since above */
	return r;
}

/* ---- reading for reports ---- */

/* A key's name as stored, never past its buffer even in a damaged file. */
static size_t key_len_clamped(const struct table_key *k) {
	return strnlen(k->name, MIN((size_t)k->len, (size_t)BREAKER_KEY_MAX - 1));
}

bool breaker_table_next_entry(struct breaker_table *t, uint32_t *pos,
                              struct breaker_entry_view *ret) {
	for (; t && *pos < BREAKER_N_ENTRIES; (*pos)++) {
		struct breaker_entry *e = &t->entries[*pos];
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
	for (; t && *pos < BREAKER_N_GROUPS; (*pos)++) {
		struct breaker_group *grp = &t->groups[*pos];
		if (LOAD(&grp->key.state) != KEY_READY)
			continue;
		ret->key = grp->key.name;
		ret->key_len = key_len_clamped(&grp->key);
		ret->n_mappings = MIN(LOAD(&grp->n_mappings), ROUTE_MAX_GROUP_MAPPINGS);
		for (uint32_t m = 0; m < ret->n_mappings; m++) {
			ret->mappings[m].name = grp->mapping_name[m];
			ret->mappings[m].name_len =
			        strnlen(grp->mapping_name[m], BREAKER_MAPPING_NAME_MAX - 1);
			ret->mappings[m].weight = LOAD_RELAXED(&grp->weight[m]);
			ret->mappings[m].picks = LOAD_RELAXED(&grp->picks[m]);
		}
		(*pos)++;
		return true;
	}
	return false;
}
