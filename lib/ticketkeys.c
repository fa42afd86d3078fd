/* ticketkeys.c — see ticketkeys.h. The shared table is one page: a header checked field by
 * field on open, a robust process-shared mutex, and a ring of keys.
 *
 * It must never log key bytes (it logs nothing above debug, and never a key), never write
 * a key anywhere but the tmpfs mapping and a caller's buffer, never trust a file it has not
 * checked as ours alone (0600, our uid, one link), and never hold the lock for more than a
 * copy or one rotation (80 random bytes). */
#include "ticketkeys.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define KEYS_MAGIC "TCPMAPTK"
#define KEYS_VERSION 1u
#define KEYS_FILE_SIZE 4096u
/* Every key of the acceptance window, and the one that replaces the oldest: with a
 * rotation at most every TICKETKEYS_ROTATE_SEC, the slot overwritten has left the window. */
#define KEYS_SLOTS (TICKETKEYS_LIFE_SEC / TICKETKEYS_ROTATE_SEC + 1)

/* Checked against what this build computes before anything else is read. */
struct keys_header {
	char magic[8];
	uint32_t version;
	uint32_t file_size;
	uint32_t key_size;
	uint32_t n_keys;
	uint32_t mutex_size;
	uint32_t keys_offset;
};

/* Lock discipline: `keys` and `rotations` are read and written only under `lock`. A
 * rotation clears a slot's `created` before writing its bytes and sets it last, so a holder
 * killed mid-rotation leaves an empty slot, never a torn key: EOWNERDEAD needs no repair. */
struct keys_file {
	struct keys_header hdr;
	pthread_mutex_t lock;
	uint64_t rotations;
	struct ticket_key keys[KEYS_SLOTS];
};

_Static_assert(sizeof(struct keys_file) <= KEYS_FILE_SIZE, "the table fits its page");
_Static_assert(TICKETKEYS_LIFE_SEC % TICKETKEYS_ROTATE_SEC == 0, "the window is whole rotations");

/* One mapping of one file. A handle keeps every file it ever mapped until it is closed:
 * another thread may still be copying a key out of the old one. */
struct keys_map {
	struct keys_map *older;
	struct keys_file *file;
	dev_t dev;
	ino_t ino;
};

struct ticket_keys {
	int dir_fd;   /* the checked runtime directory: every name is relative to it */
	pid_t opener; /* a forked relay closed dir_fd (relayfork.c): it keeps its mapping */
	int64_t clock_offset;
	struct keys_map *cur;        /* atomic: the newest file mapped */
	int64_t checked_at;          /* atomic: when the name was last compared with `cur` */
	pthread_mutex_t follow_lock; /* process-local, only ever tried: one thread follows */
};

static void header_expected(struct keys_header *h) {
	*h = (struct keys_header){
	        .version = KEYS_VERSION,
	        .file_size = KEYS_FILE_SIZE,
	        .key_size = sizeof(struct ticket_key),
	        .n_keys = KEYS_SLOTS,
	        .mutex_size = sizeof(pthread_mutex_t),
	        .keys_offset = offsetof(struct keys_file, keys),
	};
	memcpy(h->magic, KEYS_MAGIC, sizeof h->magic);
}

static int random_fill(void *buf, size_t n) {
	for (size_t done = 0; done < n;) {
		ssize_t k = getrandom((char *)buf + done, n - done, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		done += (size_t)k;
	}
	return 0;
}

/* Keys are secrets: out of core files, and locked in memory so tmpfs never swaps them out
 * (best effort: RLIMIT_MEMLOCK may not allow it; the systemd default does, 8 MiB). */
static int map_keys(int fd, struct keys_file **ret) {
	void *p = mmap(NULL, KEYS_FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	(void)madvise(p, KEYS_FILE_SIZE, MADV_DONTDUMP); /* best effort: LimitCORE=0 too */
	(void)mlock(p, KEYS_FILE_SIZE);                  /* best effort, as above */
	*ret = p;
	return 0;
}

static void unmap_keys(struct keys_file *f) {
	if (f)
		(void)munmap(f, KEYS_FILE_SIZE); /* fails only for a bad address */
}

/* A new table under a private name, linked into place by the caller. */
static int build_file(int dir_fd, char ret_tmp[static 64]) {
	uint32_t salt;
	int r = random_fill(&salt, sizeof salt);
	if (r < 0)
		return r;
	snprintf(ret_tmp, 64, "." TICKETKEYS_FILE_NAME ".%d.%08x", (int)getpid(), salt);
	_cleanup_close_ int fd =
	        openat(dir_fd, ret_tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	struct keys_file *f = NULL;
	r = ftruncate(fd, KEYS_FILE_SIZE) < 0 ? -errno : 0;
	if (r >= 0)
		r = map_keys(fd, &f);
	if (r >= 0) {
		header_expected(&f->hdr);
		r = mutex_init_shared_robust(&f->lock);
	}
	unmap_keys(f);
	if (r < 0) {
		(void)unlinkat(dir_fd, ret_tmp,
		               0); /* best effort: a stray private name is never opened */
		return r;
	}
	return TAKE_FD(fd);
}

/* Map an opened file after checking it is ours alone and a table of this layout. */
static int check_and_map(int fd, struct keys_map **ret) {
	struct keys_header expected, found;
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EPROTO;
	/* Whoever can read it can decrypt every ticket (and so every resumed session's keys);
	 * whoever can write it can pick them. A hard link could be reached under another name. */
	if ((st.st_mode & 077) || st.st_uid != geteuid() || st.st_nlink != 1)
		return -EPERM;
	if (st.st_size != KEYS_FILE_SIZE)
		return -EPROTO;
	ssize_t n = pread(fd, &found, sizeof found, 0);
	if (n < 0)
		return -errno;
	header_expected(&expected);
	if ((size_t)n != sizeof found || memcmp(&found, &expected, sizeof found) != 0)
		return -EPROTO;
	struct keys_map *m = calloc(1, sizeof *m);
	if (!m)
		return -ENOMEM;
	int r = map_keys(fd, &m->file);
	if (r < 0) {
		free(m);
		return r;
	}
	m->dev = st.st_dev;
	m->ino = st.st_ino;
	*ret = m;
	return 0;
}

/* The file at the table's name, made when missing; a racing creator's file wins. */
static int open_file(int dir_fd, struct keys_map **ret) {
	for (int attempt = 0; attempt < 4; attempt++) {
		_cleanup_close_ int fd = openat(dir_fd, TICKETKEYS_FILE_NAME,
		                                O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0 && errno != ENOENT)
			return -errno;
		if (fd >= 0)
			return check_and_map(fd, ret); /* the mapping outlives the fd */
		char tmp[64];
		int built = build_file(dir_fd, tmp);
		if (built < 0)
			return built;
		_cleanup_close_ int new_fd = built;
		int r = linkat(dir_fd, tmp, dir_fd, TICKETKEYS_FILE_NAME, 0) < 0 ? -errno : 0;
		(void)unlinkat(dir_fd, tmp, 0); /* best effort, as above; the linked name counts */
		if (r == -EEXIST)
			continue; /* lost the race: open the winner's file */
		if (r < 0)
			return r;
		return check_and_map(new_fd, ret);
	}
	return -EAGAIN;
}

static int64_t clock_offset_from_env(void) {
	const char *e = getenv(TICKETKEYS_CLOCK_OFFSET_ENV);
	char *end;

	if (!e || !*e)
		return 0;
	errno = 0;
	long long v = strtoll(e, &end, 10);
	return errno || *end ? 0 : (int64_t)v;
}

int ticketkeys_open(int dir_fd, struct ticket_keys **ret) {
	if (dir_fd < 0 || !ret)
		return -EINVAL;
	struct ticket_keys *t = calloc(1, sizeof *t);
	if (!t)
		return -ENOMEM;
	(void)pthread_mutex_init(&t->follow_lock, NULL); /* cannot fail without attributes */
	t->clock_offset = clock_offset_from_env();
	t->opener = getpid();
	t->dir_fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 3);
	int r = t->dir_fd < 0 ? -errno : open_file(t->dir_fd, &t->cur);
	if (r < 0) {
		ticketkeys_close(t);
		return r;
	}
	t->checked_at = ticketkeys_now(t);
	log_debug("TLS ticket keys: table mapped");
	*ret = t;
	return 0;
}

struct ticket_keys *ticketkeys_close(struct ticket_keys *t) {
	if (!t)
		return NULL;
	for (struct keys_map *m = t->cur, *older; m; m = older) {
		older = m->older;
		unmap_keys(m->file);
		free(m);
	}
	if (t->dir_fd >= 0)
		safe_close(t->dir_fd);
	(void)pthread_mutex_destroy(&t->follow_lock);
	free(t);
	return NULL;
}

int64_t ticketkeys_now(const struct ticket_keys *t) {
	struct timespec ts;
	(void)clock_gettime(CLOCK_REALTIME, &ts); /* cannot fail for this clock */
	return (int64_t)ts.tv_sec + (t ? t->clock_offset : 0);
}

/* Every TICKETKEYS_FOLLOW_SEC: is the name still our file? Removed (a forced rotation) or
 * replaced, map what is there now, making it if missing. Never waits for another thread. */
static struct keys_file *current_file(struct ticket_keys *t, int64_t now) {
	int64_t checked = __atomic_load_n(&t->checked_at, __ATOMIC_RELAXED);
	struct keys_map *cur = __atomic_load_n(&t->cur, __ATOMIC_ACQUIRE);

	if (now - checked < TICKETKEYS_FOLLOW_SEC && now >= checked)
		return cur->file;
	/* a relay process lives for one connection, and its copy of dir_fd is gone (the fd
	 * number may even name another file now): it stays with what it inherited */
	if (getpid() != t->opener)
		return cur->file;
	if (pthread_mutex_trylock(&t->follow_lock) != 0)
		return cur->file;
	struct stat st;
	cur = t->cur;
	if (fstatat(t->dir_fd, TICKETKEYS_FILE_NAME, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    st.st_dev != cur->dev || st.st_ino != cur->ino) {
		struct keys_map *m;
		if (open_file(t->dir_fd, &m) >= 0) {
			m->older = cur;
			__atomic_store_n(&t->cur, m, __ATOMIC_RELEASE);
			cur = m;
			log_debug("TLS ticket keys: the table was replaced; following it");
		}
	}
	__atomic_store_n(&t->checked_at, now, __ATOMIC_RELAXED);
	(void)pthread_mutex_unlock(&t->follow_lock); /* ours: cannot fail */
	return cur->file;
}

static int lock_file(struct keys_file *f) {
	int r = pthread_mutex_lock(&f->lock);
	if (r == EOWNERDEAD)
		/* nothing to repair (see struct keys_file); fails only for a mutex not robust or
		 * not inconsistent, and EOWNERDEAD says it is both */
		r = pthread_mutex_consistent(&f->lock);
	return -r;
}

static void unlock_file(struct keys_file *f) {
	(void)pthread_mutex_unlock(&f->lock); /* held by us: cannot fail */
}

static int newest_slot(const struct keys_file *f) {
	int best = -1;
	for (int i = 0; i < KEYS_SLOTS; i++)
		if (f->keys[i].created != 0 &&
		    (best < 0 || f->keys[i].created > f->keys[best].created))
			best = i;
	return best;
}

/* The slot a new key goes in: an empty one, else the oldest. */
static int slot_to_replace(const struct keys_file *f) {
	int oldest = 0;
	for (int i = 0; i < KEYS_SLOTS; i++) {
		if (f->keys[i].created == 0)
			return i;
		if (f->keys[i].created < f->keys[oldest].created)
			oldest = i;
	}
	return oldest;
}

/* A clock that went back by more than a rotation makes every key look made in the future:
 * treat such keys as too old rather than trust them for the time of the jump. */
static bool clock_went_back(int64_t created, int64_t now) {
	return created - now > TICKETKEYS_ROTATE_SEC;
}

static int rotate(struct keys_file *f, int64_t now) {
	struct ticket_key *k = &f->keys[slot_to_replace(f)];

	__atomic_store_n(&k->created, 0, __ATOMIC_RELEASE);
	int r = random_fill(k->name, sizeof k->name);
	if (r >= 0)
		r = random_fill(k->aes_key, sizeof k->aes_key);
	if (r >= 0)
		r = random_fill(k->hmac_key, sizeof k->hmac_key);
	if (r < 0) {
		explicit_bzero(k, sizeof *k);
		return r;
	}
	/* 0 marks an empty slot: a clock at the epoch still makes a real key */
	__atomic_store_n(&k->created, now != 0 ? now : 1, __ATOMIC_RELEASE);
	f->rotations++;
	return 0;
}

int ticketkeys_issue(struct ticket_keys *t, int64_t now, struct ticket_key *ret) {
	if (!t || !ret)
		return -EINVAL;
	struct keys_file *f = current_file(t, now);
	int r = lock_file(f);
	if (r < 0)
		return r;
	/* keys from a clock that has since gone back would stay "newest" for the jump */
	for (int j = 0; j < KEYS_SLOTS; j++)
		if (f->keys[j].created != 0 && clock_went_back(f->keys[j].created, now)) {
			__atomic_store_n(&f->keys[j].created, 0, __ATOMIC_RELEASE);
			explicit_bzero(&f->keys[j], sizeof f->keys[j]);
		}
	int i = newest_slot(f);
	if (i < 0 || now - f->keys[i].created >= TICKETKEYS_ROTATE_SEC) {
		r = rotate(f, now);
		i = newest_slot(f);
	}
	if (r >= 0 && i >= 0)
		*ret = f->keys[i];
	unlock_file(f);
	if (r >= 0 && i < 0)
		r = -EIO; /* unreachable: a rotation that succeeded left a key */
	if (r >= 0)
		log_debug("TLS ticket keys: issuing with a key %llds old",
		          (long long)(now - ret->created));
	return r;
}

int ticketkeys_find(struct ticket_keys *t, const uint8_t name[TICKETKEYS_NAME_SIZE], int64_t now,
                    struct ticket_key *ret) {
	if (!t || !name || !ret)
		return -EINVAL;
	struct keys_file *f = current_file(t, now);
	int r = lock_file(f);
	if (r < 0)
		return r;
	r = -ENOENT;
	for (int i = 0; i < KEYS_SLOTS; i++) {
		const struct ticket_key *k = &f->keys[i];
		if (k->created == 0 || memcmp(k->name, name, TICKETKEYS_NAME_SIZE) != 0)
			continue;
		if (now - k->created >= TICKETKEYS_LIFE_SEC || clock_went_back(k->created, now))
			break; /* known, but out of the window: a full handshake */
		*ret = *k;
		r = i == newest_slot(f) ? 1 : 2;
		break;
	}
	unlock_file(f);
	return r;
}

int ticketkeys_stats(struct ticket_keys *t, unsigned *ret_keys, uint64_t *ret_rotations) {
	if (!t)
		return -EINVAL;
	struct keys_file *f = current_file(t, ticketkeys_now(t));
	int r = lock_file(f);
	if (r < 0)
		return r;
	unsigned n = 0;
	for (int i = 0; i < KEYS_SLOTS; i++)
		n += f->keys[i].created != 0;
	if (ret_keys)
		*ret_keys = n;
	if (ret_rotations)
		*ret_rotations = f->rotations;
	unlock_file(f);
	return 0;
}
