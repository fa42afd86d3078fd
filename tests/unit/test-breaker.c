/* test-breaker.c — the shared breaker table: file creation and validation, admission limits,
 * exact counts under many forked processes, reclaim of a SIGKILLed owner's slots, exact WRR
 * splits across processes, and the status dump.
 *
 * Every test works in its own mkdtemp directory under /tmp and waits for (or kills, by pid)
 * every process it forks; every loop is bounded in count and time. */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>

#include "breaker.h"
#include "log.h"
#include "proclive.h"
#include "rundir.h"
#include "status.h"
#include "util.h"
#include "weights.h"

#define MAX_CHILDREN 8

struct fixture {
	char dir[64];
	pid_t children[MAX_CHILDREN + 1];
	size_t n_children;
};

static int setup(void **state) {
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-breaker.XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state) {
	struct fixture *f = *state;
	char path[128];

	/* Whatever a failed test left running is stopped by pid. */
	for (size_t i = 0; i < f->n_children; i++)
		if (f->children[i] > 0) {
			kill(f->children[i], SIGKILL);
			waitpid(f->children[i], NULL, 0);
		}
	snprintf(path, sizeof(path), "%s/breakers", f->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/out.json", f->dir);
	unlink(path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static pid_t fork_child(struct fixture *f) {
	assert_true(f->n_children < ELEMENTSOF(f->children));
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid > 0)
		f->children[f->n_children++] = pid;
	return pid;
}

/* Wait for a child with a deadline; returns its exit status, or -1 (then it is killed). */
static int wait_child(struct fixture *f, pid_t pid, unsigned timeout_ms) {
	uint64_t deadline = now_ms() + timeout_ms;
	int status;

	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			break;
		if (now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			status = -1;
			break;
		}
		nanosleep(&(struct timespec){.tv_nsec = 2000000}, NULL);
	}
	for (size_t i = 0; i < f->n_children; i++)
		if (f->children[i] == pid)
			f->children[i] = 0;
	if (status == -1 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/* The table in DIR, through the same checked directory fd tcpmapd and tcpmapctl use. */
static int table_open_in(const char *dir, struct breaker_table **ret) {
	_cleanup_close_ int fd = -EBADF;
	int r = rundir_open(dir, false, &fd);
	return r < 0 ? r : breaker_table_open(fd, ret);
}

static int table_open_sized_in(const char *dir, const struct breaker_capacity *want,
                               struct breaker_table **ret) {
	_cleanup_close_ int fd = -EBADF;
	int r = rundir_open(dir, false, &fd);
	return r < 0 ? r : breaker_table_open_sized(fd, want, ret);
}

static int reader_open_in(const char *dir, struct breaker_table **ret) {
	_cleanup_close_ int fd = -EBADF;
	uid_t owner;
	int r = rundir_open_for_reading(dir, &fd, &owner);
	return r < 0 ? r : breaker_table_open_readonly(fd, owner, ret);
}

static int status_print_in(const char *dir, FILE *out, bool json) {
	_cleanup_close_ int fd = -EBADF;
	uid_t owner;
	int r = rundir_open_for_reading(dir, &fd, &owner);
	return r < 0 ? r : status_print(fd, owner, out, json);
}

static struct breaker_table *open_table(struct fixture *f) {
	struct breaker_table *t = NULL;
	assert_int_equal(table_open_in(f->dir, &t), 0);
	assert_non_null(t);
	return t;
}

static void assert_counts(struct breaker_table *t, uint32_t entry, uint32_t active,
                          uint32_t pending) {
	struct breaker_entry_stats s;
	uint32_t slot_active, slot_pending;

	assert_int_equal(breaker_table_entry_stats(t, entry, &s), 0);
	assert_int_equal(s.active, active);
	assert_int_equal(s.pending, pending);
	/* the counters must agree with the slots they summarise */
	assert_int_equal(breaker_table_count_slots(t, entry, &slot_active, &slot_pending), 0);
	assert_int_equal(slot_active, active);
	assert_int_equal(slot_pending, pending);
}

static void test_open_create_reopen(void **state) {
	struct fixture *f = *state;
	struct breaker_table *t = open_table(f);
	uint32_t a, b, again;
	char path[128], name[600];
	struct stat st;

	snprintf(path, sizeof(path), "%s/breakers", f->dir);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_uid, geteuid());

	assert_int_equal(breaker_table_entry(t, "svc-a:80", &a), 0);
	assert_int_equal(breaker_table_entry(t, "svc-b:80", &b), 0);
	assert_int_not_equal(a, b);
	assert_int_equal(breaker_table_entry(t, "svc-a:80", &again), 0);
	assert_int_equal(again, a);
	assert_int_equal(breaker_table_entry(t, "", &again), -EINVAL);
	memset(name, 'x', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	assert_int_equal(breaker_table_entry(t, name, &again), -ENAMETOOLONG);
	t = breaker_table_close(t);
	assert_null(t);

	/* a second process (and a second open) sees the same entries */
	t = open_table(f);
	assert_int_equal(breaker_table_entry(t, "svc-b:80", &again), 0);
	assert_int_equal(again, b);
	struct breaker_table *t2 = open_table(f);
	assert_int_equal(breaker_table_entry(t2, "svc-a:80", &again), 0);
	assert_int_equal(again, a);
	breaker_table_close(t2);
	breaker_table_close(t);

	/* the temporary file used for race-free creation is gone */
	DIR *d = opendir(f->dir);
	assert_non_null(d);
	struct dirent *de;
	unsigned n = 0;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' || (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")))
			n++;
	closedir(d);
	assert_int_equal(n, 1);
}

/* Many processes creating the table and the same entry at once agree on one of each. */
static void test_concurrent_create(void **state) {
	struct fixture *f = *state;
	int fds[2];

	assert_int_equal(pipe(fds), 0);
	for (int i = 0; i < 6; i++) {
		if (fork_child(f) == 0) {
			struct breaker_table *t = NULL;
			uint32_t e = UINT32_MAX;
			int r = table_open_in(f->dir, &t);
			if (r == 0)
				r = breaker_table_entry(t, "shared-cluster", &e);
			if (write(fds[1], &e, sizeof(e)) != sizeof(e))
				_exit(3);
			_exit(r == 0 ? 0 : 2);
		}
	}
	close(fds[1]);
	uint32_t first = UINT32_MAX;
	for (size_t i = 0; i < 6; i++) {
		uint32_t e;
		assert_int_equal(read(fds[0], &e, sizeof(e)), sizeof(e));
		if (first == UINT32_MAX)
			first = e;
		assert_int_equal(e, first);
	}
	close(fds[0]);
	for (size_t i = 0; i < 6; i++)
		assert_int_equal(wait_child(f, f->children[i], 10000), 0);

	struct breaker_table *t = open_table(f);
	uint32_t e;
	assert_int_equal(breaker_table_entry(t, "shared-cluster", &e), 0);
	assert_int_equal(e, first);
	breaker_table_close(t);
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode) {
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void test_version_mismatch(void **state) {
	struct fixture *f = *state;
	struct breaker_table *t = NULL;
	char path[128];
	static char header[8192];

	snprintf(path, sizeof(path), "%s/breakers", f->dir);

	/* right magic, another version */
	memset(header, 0, sizeof(header));
	memcpy(header, "TCPMAPBT", 8);
	uint32_t version = 999;
	memcpy(header + 8, &version, sizeof(version));
	write_file(path, header, sizeof(header), 0644);
	assert_int_equal(table_open_in(f->dir, &t), -EPROTO);
	assert_null(t);
	assert_int_equal(status_print_in(f->dir, stdout, false), -EPROTO);

	/* right magic, an older version: what an upgrade finds while the old image drains. A
	 * reader refuses it; a writer puts a table of this layout in its place, under the same
	 * name, and a second writer opens that one */
	version = BREAKER_TABLE_VERSION - 1;
	memcpy(header + 8, &version, sizeof(version));
	write_file(path, header, sizeof(header), 0600);
	assert_int_equal(status_print_in(f->dir, stdout, false), -EPROTO);
	struct stat before, after;
	assert_int_equal(stat(path, &before), 0);
	assert_int_equal(table_open_in(f->dir, &t), 0);
	assert_int_equal(stat(path, &after), 0);
	assert_true(before.st_ino != after.st_ino);
	struct breaker_table *t2 = NULL;
	assert_int_equal(table_open_in(f->dir, &t2), 0);
	uint32_t e1, e2;
	assert_int_equal(breaker_table_entry(t, "upgraded", &e1), 0);
	assert_int_equal(breaker_table_entry(t2, "upgraded", &e2), 0);
	assert_int_equal(e1, e2); /* one table, not two */
	t2 = breaker_table_close(t2);
	t = breaker_table_close(t);
	memset(header + 8, 0, sizeof(version));

	/* another magic */
	memcpy(header, "NOTATABL", 8);
	write_file(path, header, sizeof(header), 0644);
	assert_int_equal(table_open_in(f->dir, &t), -EPROTO);

	/* too short to hold a header (not something a crashed creator can leave: it links
	 * only finished files) */
	write_file(path, header, 10, 0644);
	assert_int_equal(table_open_in(f->dir, &t), -EPROTO);

	/* a valid table that others may write is refused */
	assert_int_equal(unlink(path), 0);
	t = open_table(f);
	breaker_table_close(t);
	t = NULL;
	assert_int_equal(chmod(path, 0666), 0);
	assert_int_equal(table_open_in(f->dir, &t), -EPERM);
	assert_int_equal(chmod(path, 0644), 0);

	/* a valid table with its size changed is a layout mismatch */
	assert_int_equal(truncate(path, 1 << 20), 0);
	assert_int_equal(table_open_in(f->dir, &t), -EPROTO);

	/* a symlink is never followed */
	assert_int_equal(unlink(path), 0);
	assert_int_equal(symlink("/dev/null", path), 0);
	assert_int_equal(table_open_in(f->dir, &t), -ELOOP);
	assert_int_equal(unlink(path), 0);
}

static void test_admit_release_limits(void **state) {
	struct fixture *f = *state;
	struct breaker_table *t = open_table(f);
	struct circuit_breakers cb = {.set = true, .max_connections = 3, .max_pending_requests = 2};
	struct breaker_entry_stats s;
	breaker_slot_t a, b, c, d;
	uint32_t e;

	assert_int_equal(breaker_table_entry(t, "limited", &e), 0);
	assert_true(breaker_table_would_admit(t, e, &cb));
	assert_int_equal(breaker_table_admit(t, e, &cb, &a), 0);
	assert_int_equal(breaker_table_admit(t, e, &cb, &b), 0);
	assert_int_not_equal(a, 0);
	assert_int_not_equal(a, b);
	assert_counts(t, e, 0, 2);

	/* pending is full */
	assert_false(breaker_table_would_admit(t, e, &cb));
	assert_int_equal(breaker_table_admit(t, e, &cb, &c), -EBUSY);
	assert_int_equal(breaker_table_entry_stats(t, e, &s), 0);
	assert_int_equal(s.overflows, 1);

	breaker_table_connected(t, a);
	assert_counts(t, e, 1, 1);
	breaker_table_connected(t, a); /* twice is harmless */
	assert_counts(t, e, 1, 1);
	assert_true(breaker_table_would_admit(t, e, &cb));
	assert_int_equal(breaker_table_admit(t, e, &cb, &c), 0);
	assert_counts(t, e, 1, 2);

	/* max_connections counts pending and active together */
	breaker_table_connected(t, b);
	assert_counts(t, e, 2, 1);
	assert_int_equal(breaker_table_admit(t, e, &cb, &d), -EBUSY);

	breaker_table_connect_failed(t, c);
	breaker_table_release(t, c, 0, 0);
	assert_counts(t, e, 2, 0);
	breaker_table_release(t, a, 100, 200);
	breaker_table_release(t, b, 1, 2);
	breaker_table_release(t, b, 1, 2); /* a released handle is ignored */
	assert_counts(t, e, 0, 0);

	assert_int_equal(breaker_table_entry_stats(t, e, &s), 0);
	assert_int_equal(s.total, 3);
	assert_int_equal(s.overflows, 2);
	assert_int_equal(s.connect_failures, 1);
	assert_int_equal(s.bytes_in, 101);
	assert_int_equal(s.bytes_out, 202);
	assert_int_equal(s.max_connections, 3);
	assert_int_equal(s.max_pending_requests, 2);

	/* no breakers: no limit */
	struct circuit_breakers none = {0};
	breaker_slot_t many[50];
	for (size_t i = 0; i < ELEMENTSOF(many); i++)
		assert_int_equal(breaker_table_admit(t, e, &none, &many[i]), 0);
	assert_counts(t, e, 0, 50);
	for (size_t i = 0; i < ELEMENTSOF(many); i++)
		breaker_table_release(t, many[i], 0, 0);
	assert_counts(t, e, 0, 0);
	assert_int_equal(breaker_table_entry_stats(t, e, &s), 0);
	assert_int_equal(s.max_connections, 0);

	/* bad handles */
	breaker_table_release(t, 0, 0, 0);
	breaker_table_connected(t, UINT32_MAX);
	assert_int_equal(breaker_table_admit(t, 5000, &cb, &a), -EINVAL);
	assert_int_equal(breaker_table_adopt(t, a), -ESTALE);
	breaker_table_close(t);
}

/* `max_connections: 0` (Envoy's limit of zero): every admit overflows, even when idle */
static void test_refuse_all(void **state) {
	struct fixture *f = *state;
	struct breaker_table *t = open_table(f);
	struct circuit_breakers cb = {.set = true, .max_connections = 0, .refuse_all = true};
	struct breaker_entry_stats s;
	breaker_slot_t a;
	uint32_t e;

	assert_int_equal(breaker_table_entry(t, "refused", &e), 0);
	assert_counts(t, e, 0, 0);
	for (int i = 0; i < 3; i++) {
		assert_false(breaker_table_would_admit(t, e, &cb));
		assert_int_equal(breaker_table_admit(t, e, &cb, &a), -EBUSY);
	}
	assert_counts(t, e, 0, 0);
	assert_int_equal(breaker_table_entry_stats(t, e, &s), 0);
	assert_int_equal(s.total, 0);
	assert_int_equal(s.overflows, 3);

	/* an adopted connection (NULL limits) was admitted once already: still counted */
	assert_int_equal(breaker_table_admit(t, e, NULL, &a), 0);
	assert_counts(t, e, 0, 1);
	breaker_table_release(t, a, 0, 0);
	breaker_table_close(t);
}

#define HAMMER_CHILDREN 8
#define HAMMER_ROUNDS 10000
#define HAMMER_LIMIT 4

static void test_hammer(void **state) {
	struct fixture *f = *state;
	struct breaker_table *t = open_table(f);
	struct circuit_breakers cb = {.set = true, .max_connections = HAMMER_LIMIT};
	struct breaker_entry_stats s;
	uint32_t e, max_seen = 0;
	uint64_t samples = 0, busy_samples = 0;

	/* Child 0 holds its first slot until the sampler below has seen it (bounded: 10 s), so
	 * "the sampler saw the entry busy" holds on a loaded machine too, where the children
	 * could otherwise run between two samples. */
	int seen[2];
	bool released = false;
	assert_int_equal(pipe2(seen, O_CLOEXEC), 0);
	assert_int_equal(breaker_table_entry(t, "hammered", &e), 0);
	for (int i = 0; i < HAMMER_CHILDREN; i++) {
		if (fork_child(f) == 0) {
			/* each child maps the table itself, as a separate tcpmap process would */
			struct breaker_table *ct = NULL;
			safe_close(seen[1]); /* only the sampler's copy may keep child 0 waiting */
			if (table_open_in(f->dir, &ct) < 0)
				_exit(2);
			for (int n = 0; n < HAMMER_ROUNDS; n++) {
				breaker_slot_t slot;
				int r = breaker_table_admit(ct, e, &cb, &slot);
				if (r == -EBUSY)
					continue;
				if (r < 0)
					_exit(3);
				if (n % 2)
					breaker_table_connected(ct, slot);
				if (i == 0 && n == 0) {
					struct pollfd p = {.fd = seen[0], .events = POLLIN};
					(void)poll(&p, 1, 10000);
				}
				breaker_table_release(ct, slot, 1, 2);
			}
			breaker_table_close(ct);
			_exit(0);
		}
	}

	/* sample while they run: the limit holds at every instant */
	uint64_t deadline = now_ms() + 120000;
	size_t running = HAMMER_CHILDREN;
	while (running > 0 && now_ms() < deadline) {
		for (int k = 0; k < 1000; k++) {
			assert_int_equal(breaker_table_entry_stats(t, e, &s), 0);
			max_seen = MAX(max_seen, s.active + s.pending);
			busy_samples += s.active + s.pending > 0;
			samples++;
		}
		if (busy_samples > 0 && !released) {
			seen[1] = safe_close(seen[1]);
			released = true;
		}
		running = 0;
		for (size_t i = 0; i < f->n_children; i++) {
			if (f->children[i] == 0)
				continue;
			int status;
			pid_t r = waitpid(f->children[i], &status, WNOHANG);
			if (r == f->children[i]) {
				assert_true(WIFEXITED(status));
				assert_int_equal(WEXITSTATUS(status), 0);
				f->children[i] = 0;
			} else
				running++;
		}
	}
	safe_close(seen[0]);
	safe_close(seen[1]);
	assert_int_equal(running, 0);
	assert_true(max_seen <= HAMMER_LIMIT);
	assert_true(busy_samples > 0);

	assert_counts(t, e, 0, 0);
	assert_int_equal(breaker_table_entry_stats(t, e, &s), 0);
	assert_int_equal(s.total + s.overflows, (uint64_t)HAMMER_CHILDREN * HAMMER_ROUNDS);
	assert_true(s.total > 0);
	assert_int_equal(s.bytes_in, s.total);
	assert_int_equal(s.bytes_out, 2 * s.total);
	print_message("# %llu admitted, %llu overflows, %llu samples, max seen %u\n",
	              (unsigned long long)s.total, (unsigned long long)s.overflows,
	              (unsigned long long)samples, max_seen);
	breaker_table_close(t);
}

/* Processes SIGKILLed at random points of admit/connect/release, some inside the entry
 * lock: after a reap the counters still equal the slots, and nothing is left taken. */
static void test_sigkill_while_hammering(void **state) {
	struct fixture *f = *state;
	struct breaker_table *t = open_table(f);
	struct circuit_breakers cb = {.set = true, .max_connections = HAMMER_LIMIT};
	breaker_slot_t slot;
	uint32_t e;

	assert_int_equal(breaker_table_entry(t, "massacre", &e), 0);
	for (int round = 0; round < 10; round++) {
		for (int i = 0; i < HAMMER_CHILDREN; i++) {
			if (fork_child(f) == 0) {
				struct breaker_table *ct = NULL;
				if (table_open_in(f->dir, &ct) < 0)
					_exit(2);
				for (int n = 0; n < 5 * HAMMER_ROUNDS * HAMMER_CHILDREN; n++) {
					if (breaker_table_admit(ct, e, &cb, &slot) < 0)
						continue;
					breaker_table_connected(ct, slot);
					breaker_table_release(ct, slot, 1, 1);
				}
				_exit(0);
			}
		}
		nanosleep(&(struct timespec){.tv_nsec = 30000000}, NULL);
		for (size_t i = 0; i < f->n_children; i++)
			if (f->children[i] > 0)
				kill(f->children[i], SIGKILL);
		for (size_t i = 0; i < f->n_children; i++)
			if (f->children[i] > 0)
				wait_child(f, f->children[i], 10000);
		f->n_children = 0;

		assert_true(breaker_table_reap(t) >= 0);
		assert_counts(t, e, 0, 0);
		/* the entry lock is usable, whoever died holding it */
		assert_int_equal(breaker_table_admit(t, e, &cb, &slot), 0);
		breaker_table_release(t, slot, 0, 0);
		assert_counts(t, e, 0, 0);
	}
	breaker_table_close(t);
}

/* A child that holds `n` slots on `entry` (one of them active) until it is killed. */
static pid_t spawn_holder(struct fixture *f, uint32_t entry, const struct circuit_breakers *cb,
                          int n) {
	int fds[2];
	char ok;

	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork_child(f);
	if (pid == 0) {
		struct breaker_table *ct = NULL;
		close(fds[0]);
		if (table_open_in(f->dir, &ct) < 0)
			_exit(2);
		for (int i = 0; i < n; i++) {
			breaker_slot_t slot;
			if (breaker_table_admit(ct, entry, cb, &slot) < 0)
				_exit(3);
			if (i == 0)
				breaker_table_connected(ct, slot);
		}
		if (write(fds[1], "x", 1) != 1)
			_exit(4);
		for (int i = 0; i < 600; i++) /* bounded: the parent kills it long before */
			sleep(1);
		_exit(5);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], &ok, 1), 1);
	close(fds[0]);
	return pid;
}

static void test_sigkill_reclaimed_by_admit(void **state) {
	struct fixture *f = *state;
	struct breaker_table *t = open_table(f);
	struct circuit_breakers cb = {.set = true, .max_connections = 3};
	struct breaker_entry_stats s;
	breaker_slot_t slot;
	uint32_t e;

	assert_int_equal(breaker_table_entry(t, "victim", &e), 0);
	pid_t pid = spawn_holder(f, e, &cb, 3);
	assert_counts(t, e, 1, 2);
	assert_false(breaker_table_would_admit(t, e, &cb));

	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(wait_child(f, pid, 10000), -1); /* killed, not exited */

	/* the next admit on the entry finds the capacity held by a dead process */
	assert_int_equal(breaker_table_admit(t, e, &cb, &slot), 0);
	assert_counts(t, e, 0, 1);
	breaker_table_release(t, slot, 0, 0);
	assert_counts(t, e, 0, 0);
	assert_int_equal(breaker_table_entry_stats(t, e, &s), 0);
	assert_int_equal(s.overflows, 0);
	assert_int_equal(s.total, 4);
	breaker_table_close(t);
}

static void test_sigkill_reclaimed_by_reap(void **state) {
	struct fixture *f = *state;
	struct breaker_table *t = open_table(f);
	struct circuit_breakers none = {0};
	breaker_slot_t mine;
	uint32_t e;

	assert_int_equal(breaker_table_entry(t, "reaped", &e), 0);
	/* admitting before the fork caches our identity: the child must not inherit it, or
	 * its slots would look like ours and never be reaped */
	assert_int_equal(breaker_table_admit(t, e, &none, &mine), 0);
	pid_t pid = spawn_holder(f, e, &none, 3);
	assert_counts(t, e, 1, 3);
	assert_int_equal(breaker_table_reap(t), 0); /* everyone is alive */

	assert_int_equal(kill(pid, SIGKILL), 0);
	/* leave it a zombie: dead, though its pid still answers kill(pid, 0) */
	siginfo_t info;
	assert_int_equal(waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT), 0);
	assert_int_equal(breaker_table_reap(t), 3);
	assert_counts(t, e, 0, 1);
	assert_int_equal(wait_child(f, pid, 10000), -1);

	breaker_table_release(t, mine, 0, 0);
	assert_counts(t, e, 0, 0);
	assert_int_equal(breaker_table_reap(t), 0);
	breaker_table_close(t);
}

/* A slot handed to another process is re-owned by it: the old owner can no longer free
 * it, and the new owner's death frees it. */
static void test_adopt(void **state) {
	struct fixture *f = *state;
	struct breaker_table *t = open_table(f);
	struct circuit_breakers none = {0};
	struct breaker_entry_stats s;
	breaker_slot_t slot;
	uint32_t e;
	int to_child[2], to_parent[2];
	char c;

	assert_int_equal(breaker_table_entry(t, "handed-over", &e), 0);
	assert_int_equal(breaker_table_admit(t, e, &none, &slot), 0);
	breaker_table_connected(t, slot);
	assert_int_equal(pipe(to_child), 0);
	assert_int_equal(pipe(to_parent), 0);
	pid_t pid = fork_child(f);
	if (pid == 0) {
		struct breaker_table *ct = NULL;
		close(to_child[1]);
		close(to_parent[0]);
		if (table_open_in(f->dir, &ct) < 0)
			_exit(2);
		c = (char)(breaker_table_adopt(ct, slot) == 0 ? 'y' : 'n');
		if (write(to_parent[1], &c, 1) != 1 || read(to_child[0], &c, 1) != 1)
			_exit(3);
		if (c == 'r')
			breaker_table_release(ct, slot, 5, 6);
		_exit(0);
	}
	close(to_child[0]);
	close(to_parent[1]);
	assert_int_equal(read(to_parent[0], &c, 1), 1);
	assert_int_equal(c, 'y');

	breaker_table_release(t, slot, 0, 0); /* not ours any more: ignored */
	assert_counts(t, e, 1, 0);
	assert_int_equal(breaker_table_reap(t), 0);
	assert_counts(t, e, 1, 0);

	assert_int_equal(write(to_child[1], "r", 1), 1);
	assert_int_equal(wait_child(f, pid, 10000), 0);
	assert_counts(t, e, 0, 0);
	assert_int_equal(breaker_table_entry_stats(t, e, &s), 0);
	assert_int_equal(s.bytes_in, 5);
	assert_int_equal(s.bytes_out, 6);
	close(to_child[1]);
	close(to_parent[0]);

	/* adopted by a process that then exits without releasing: reaped */
	assert_int_equal(breaker_table_admit(t, e, &none, &slot), 0);
	assert_int_equal(pipe(to_child), 0);
	assert_int_equal(pipe(to_parent), 0);
	pid = fork_child(f);
	if (pid == 0) {
		struct breaker_table *ct = NULL;
		close(to_child[1]);
		close(to_parent[0]);
		if (table_open_in(f->dir, &ct) < 0)
			_exit(2);
		c = (char)(breaker_table_adopt(ct, slot) == 0 ? 'y' : 'n');
		if (write(to_parent[1], &c, 1) != 1 || read(to_child[0], &c, 1) != 1)
			_exit(3);
		_exit(0);
	}
	close(to_child[0]);
	close(to_parent[1]);
	assert_int_equal(read(to_parent[0], &c, 1), 1);
	assert_int_equal(c, 'y');
	assert_int_equal(write(to_child[1], "q", 1), 1);
	assert_int_equal(wait_child(f, pid, 10000), 0);
	close(to_child[1]);
	close(to_parent[0]);
	assert_counts(t, e, 0, 1);
	assert_int_equal(breaker_table_reap(t), 1);
	assert_counts(t, e, 0, 0);
	assert_int_equal(breaker_table_adopt(t, slot), -ESTALE);
	breaker_table_close(t);
}

/* A slot given to another process (the relay spawner, on its way to a relay) is that
 * process's: the giver's release is ignored, its death frees it, and taking it back
 * (breaker_table_adopt) works while it lives. */
static void test_give(void **state) {
	struct fixture *f = *state;
	struct breaker_table *t = open_table(f);
	struct circuit_breakers none = {0};
	breaker_slot_t slot;
	uint32_t e;
	int to_child[2];
	char c;

	assert_int_equal(breaker_table_entry(t, "given", &e), 0);
	assert_int_equal(breaker_table_admit(t, e, &none, &slot), 0);
	breaker_table_connected(t, slot);
	assert_int_equal(pipe(to_child), 0);
	pid_t pid = fork_child(f);
	if (pid == 0) {
		close(to_child[1]);
		_exit(read(to_child[0], &c, 1) == 1 ? 0 : 3);
	}
	close(to_child[0]);
	assert_int_equal(breaker_table_give(t, slot, pid, proclive_starttime(pid)), 0);
	assert_int_equal(breaker_table_give(t, slot, 0, 0), -EINVAL);
	breaker_table_release(t, slot, 0, 0); /* not ours any more: ignored */
	assert_counts(t, e, 1, 0);
	assert_int_equal(breaker_table_reap(t), 0); /* its owner lives */

	/* a send that failed: the giver takes it back, and its release counts again */
	assert_int_equal(breaker_table_adopt(t, slot), 0);
	breaker_table_release(t, slot, 0, 0);
	assert_counts(t, e, 0, 0);

	/* given, and the owner dies with it undelivered: reaped */
	assert_int_equal(breaker_table_admit(t, e, &none, &slot), 0);
	assert_int_equal(breaker_table_give(t, slot, pid, proclive_starttime(pid)), 0);
	assert_int_equal(write(to_child[1], "q", 1), 1);
	assert_int_equal(wait_child(f, pid, 10000), 0);
	close(to_child[1]);
	assert_counts(t, e, 0, 1);
	assert_int_equal(breaker_table_reap(t), 1);
	assert_counts(t, e, 0, 0);
	breaker_table_close(t);
}

#define WRR_CHILDREN 4
#define WRR_PICKS 250

static void test_wrr_pick_across_processes(void **state) {
	struct fixture *f = *state;
	struct breaker_table *t = open_table(f);
	struct mapping m[2] = {
	        {.name = (char *)"ten", .effective_weight = 10},
	        {.name = (char *)"ninety", .effective_weight = 90},
	};
	struct mapping *ms[2] = {&m[0], &m[1]};
	struct mapping_group g = {.key = (char *)"|9000|", .mappings = ms, .n_mappings = 2};

	uint64_t *picks =
	        mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(picks != MAP_FAILED);

	for (int i = 0; i < WRR_CHILDREN; i++) {
		if (fork_child(f) == 0) {
			struct breaker_table *ct = NULL;
			if (table_open_in(f->dir, &ct) < 0)
				_exit(2);
			for (int n = 0; n < WRR_PICKS; n++) {
				int r = breaker_table_pick(ct, &g, NULL);
				if (r < 0 || r > 1)
					_exit(3);
				__atomic_add_fetch(&picks[r], 1, __ATOMIC_RELAXED);
			}
			_exit(0);
		}
	}
	for (size_t i = 0; i < f->n_children; i++)
		assert_int_equal(wait_child(f, f->children[i], 30000), 0);
	assert_int_equal(picks[0], 100);
	assert_int_equal(picks[1], 900);

	/* ineligible mappings are skipped */
	bool only_ten[2] = {true, false};
	assert_int_equal(breaker_table_pick(t, &g, only_ten), 0);
	bool neither[2] = {false, false};
	assert_int_equal(breaker_table_pick(t, &g, neither), -ENOENT);

	/* a reload that changes the weights restarts the state: exact again from there */
	m[0].effective_weight = 50;
	m[1].effective_weight = 50;
	unsigned count[2] = {0, 0};
	for (int n = 0; n < 100; n++) {
		int r = breaker_table_pick(t, &g, NULL);
		assert_true(r == 0 || r == 1);
		count[r]++;
	}
	assert_int_equal(count[0], 50);
	assert_int_equal(count[1], 50);

	struct mapping_group empty = {.key = (char *)"|9001|"};
	assert_int_equal(breaker_table_pick(t, &empty, NULL), -ENOENT);
	munmap(picks, 4096);
	breaker_table_close(t);
}

/* ---- growing: a larger table replaces the file while others hold slots in it ---- */

static ino_t table_inode(struct fixture *f) {
	char path[128];
	struct stat st;
	snprintf(path, sizeof(path), "%s/breakers", f->dir);
	assert_int_equal(stat(path, &st), 0);
	return st.st_ino;
}

static void create_entries(struct breaker_table *t, const char *prefix, unsigned n) {
	for (unsigned i = 0; i < n; i++) {
		char name[64];
		uint32_t e;
		snprintf(name, sizeof(name), "%s-%u:443", prefix, i);
		assert_int_equal(breaker_table_entry(t, name, &e), 0);
	}
}

#define GROW_HOLDERS 4

/* Children hold every slot a limit allows while the parent grows the table past 3000
 * clusters: the limit holds in the new table, releases made through the old mapping land
 * in the new one, the counters, the entry index and the WRR sequence continue exactly. */
static void test_grow_while_children_hold_slots(void **state) {
	struct fixture *f = *state;
	struct breaker_table *t = open_table(f);
	struct circuit_breakers cb = {.set = true, .max_connections = GROW_HOLDERS};
	struct breaker_capacity cap;
	struct breaker_entry_stats s;
	breaker_slot_t extra;
	uint32_t e, again;
	int held[2], go[2], go2[2];

	assert_int_equal(pipe2(held, O_CLOEXEC), 0);
	assert_int_equal(pipe2(go, O_CLOEXEC), 0);
	assert_int_equal(pipe2(go2, O_CLOEXEC), 0);
	assert_int_equal(breaker_table_entry(t, "held:443", &e), 0);
	for (int i = 0; i < GROW_HOLDERS; i++) {
		if (fork_child(f) == 0) {
			struct breaker_table *ct = NULL;
			breaker_slot_t slot;
			char c;
			if (table_open_in(f->dir, &ct) < 0 ||
			    breaker_table_admit(ct, e, &cb, &slot) < 0)
				_exit(2);
			if (write(held[1], &slot, sizeof(slot)) != sizeof(slot) ||
			    read(go[0], &c, 1) != 1)
				_exit(3);
			/* the parent grew the table meanwhile: the limit still holds here */
			breaker_slot_t over;
			if (breaker_table_admit(ct, e, &cb, &over) != -EBUSY)
				_exit(4);
			/* nobody releases before every holder has been refused */
			if (write(held[1], &over, sizeof(over)) != sizeof(over) ||
			    read(go2[0], &c, 1) != 1)
				_exit(6);
			if (i % 2)
				breaker_table_connected(ct, slot);
			breaker_table_release(ct, slot, 10, 20);
			if (breaker_table_capacity(ct, &cap) < 0 || cap.clusters < 3000)
				_exit(5);
			breaker_table_close(ct);
			_exit(0);
		}
	}
	for (int i = 0; i < GROW_HOLDERS; i++) {
		breaker_slot_t slot;
		assert_int_equal(read(held[0], &slot, sizeof(slot)), sizeof(slot));
	}
	assert_counts(t, e, 0, GROW_HOLDERS);

	/* a WRR cycle half run before the move */
	struct mapping m[2] = {
	        {.name = (char *)"ten", .effective_weight = 10},
	        {.name = (char *)"ninety", .effective_weight = 90},
	};
	struct mapping *ms[2] = {&m[0], &m[1]};
	struct mapping_group g = {.key = (char *)"|9000|", .mappings = ms, .n_mappings = 2};
	int32_t reference[ROUTE_MAX_GROUP_MAPPINGS] = {0};
	for (int n = 0; n < 37; n++)
		assert_int_equal(breaker_table_pick(t, &g, NULL),
		                 weights_pick(&g, reference, NULL));

	ino_t before = table_inode(f);
	assert_int_equal(breaker_table_capacity(t, &cap), 0);
	assert_int_equal(cap.clusters, BREAKER_N_ENTRIES_MIN);
	create_entries(t, "grow", 3000);
	assert_int_equal(breaker_table_capacity(t, &cap), 0);
	assert_true(cap.clusters >= 3001);
	assert_int_not_equal(table_inode(f), before);

	/* same index, same counts, the limit still full */
	assert_int_equal(breaker_table_entry(t, "held:443", &again), 0);
	assert_int_equal(again, e);
	assert_counts(t, e, 0, GROW_HOLDERS);
	assert_int_equal(breaker_table_admit(t, e, &cb, &extra), -EBUSY);
	for (int n = 37; n < 100; n++)
		assert_int_equal(breaker_table_pick(t, &g, NULL),
		                 weights_pick(&g, reference, NULL));

	assert_int_equal(write(go[1], "gggg", GROW_HOLDERS), GROW_HOLDERS);
	for (int i = 0; i < GROW_HOLDERS; i++) {
		breaker_slot_t refused;
		assert_int_equal(read(held[0], &refused, sizeof(refused)), sizeof(refused));
	}
	assert_int_equal(write(go2[1], "gggg", GROW_HOLDERS), GROW_HOLDERS);
	for (size_t i = 0; i < f->n_children; i++)
		assert_int_equal(wait_child(f, f->children[i], 30000), 0);
	assert_counts(t, e, 0, 0);
	assert_int_equal(breaker_table_entry_stats(t, e, &s), 0);
	assert_int_equal(s.total, GROW_HOLDERS);
	assert_int_equal(s.overflows, GROW_HOLDERS + 1);
	assert_int_equal(s.bytes_in, 10 * GROW_HOLDERS);
	assert_int_equal(s.max_connections, GROW_HOLDERS);

	/* a report reads a snapshot (breaker_table_open_readonly): one taken before a further
	 * move keeps what it read, and one taken after it sees every cluster */
	struct breaker_table *reader = NULL;
	assert_int_equal(reader_open_in(f->dir, &reader), 0);
	create_entries(t, "more", 3000);
	uint32_t pos = 0, n_seen = 0;
	struct breaker_entry_view v;
	while (breaker_table_next_entry(reader, &pos, &v))
		n_seen++;
	assert_int_equal(n_seen, 3001);
	breaker_table_close(reader);
	assert_int_equal(reader_open_in(f->dir, &reader), 0);
	for (pos = 0, n_seen = 0; breaker_table_next_entry(reader, &pos, &v);)
		n_seen++;
	assert_int_equal(n_seen, 6001);
	breaker_table_close(reader);
	for (int i = 0; i < 2; i++) {
		close(held[i]);
		close(go[i]);
		close(go2[i]);
	}
	breaker_table_close(t);
}

#define GROW_HAMMER_ROUNDS 20000

/* Children admit and release under a limit while the parent grows the table six times
 * over (clusters, groups and slots): the limit holds at every instant and every admit is
 * accounted for. */
static void test_hammer_while_growing(void **state) {
	struct fixture *f = *state;
	struct breaker_table *t = open_table(f);
	struct circuit_breakers cb = {.set = true, .max_connections = HAMMER_LIMIT};
	struct breaker_entry_stats s;
	uint32_t e, max_seen = 0;

	assert_int_equal(breaker_table_entry(t, "hammered", &e), 0);
	for (int i = 0; i < HAMMER_CHILDREN; i++) {
		if (fork_child(f) == 0) {
			struct breaker_table *ct = NULL;
			if (table_open_in(f->dir, &ct) < 0)
				_exit(2);
			for (int n = 0; n < GROW_HAMMER_ROUNDS; n++) {
				breaker_slot_t slot;
				int r = breaker_table_admit(ct, e, &cb, &slot);
				if (r == -EBUSY)
					continue;
				if (r < 0)
					_exit(3);
				if (n % 2)
					breaker_table_connected(ct, slot);
				breaker_table_release(ct, slot, 1, 2);
			}
			breaker_table_close(ct);
			_exit(0);
		}
	}
	for (unsigned round = 0; round < 6; round++) {
		char prefix[16];
		snprintf(prefix, sizeof(prefix), "r%u", round);
		create_entries(t, prefix, 700u << (round / 2));
		if (round == 3)
			assert_int_equal(breaker_table_reserve(
			                         t, &(struct breaker_capacity){.clusters = 1,
			                                                       .groups = 5000,
			                                                       .slots = 200000}),
			                 0);
		assert_int_equal(breaker_table_entry_stats(t, e, &s), 0);
		max_seen = MAX(max_seen, s.active + s.pending);
	}
	for (size_t i = 0; i < f->n_children; i++)
		assert_int_equal(wait_child(f, f->children[i], 120000), 0);
	assert_true(max_seen <= HAMMER_LIMIT);
	assert_counts(t, e, 0, 0);
	assert_int_equal(breaker_table_entry_stats(t, e, &s), 0);
	assert_int_equal(s.total + s.overflows, (uint64_t)HAMMER_CHILDREN * GROW_HAMMER_ROUNDS);
	assert_int_equal(s.bytes_out, 2 * s.total);
	struct breaker_capacity cap;
	assert_int_equal(breaker_table_capacity(t, &cap), 0);
	assert_true(cap.groups >= 5000 && cap.slots >= 200000);
	print_message("# %llu admitted, %llu overflows while growing to %u clusters\n",
	              (unsigned long long)s.total, (unsigned long long)s.overflows, cap.clusters);
	breaker_table_close(t);
}

/* 70 000 connections on one unlimited cluster: the slots double past the old 65 536. */
static void test_slots_grow_past_65536(void **state) {
	struct fixture *f = *state;
	struct breaker_table *t = open_table(f);
	struct circuit_breakers none = {0};
	struct breaker_capacity cap;
	enum { N = 70000 };
	breaker_slot_t *slots = calloc(N, sizeof(*slots));
	uint32_t e;

	assert_non_null(slots);
	assert_int_equal(breaker_table_entry(t, "unlimited:80", &e), 0);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(breaker_table_admit(t, e, &none, &slots[i]), 0);
	assert_int_equal(breaker_table_capacity(t, &cap), 0);
	assert_true(cap.slots > 65536);
	assert_counts(t, e, 0, N);
	for (size_t i = 0; i < N; i++)
		breaker_table_release(t, slots[i], 0, 0);
	assert_counts(t, e, 0, 0);
	free(slots);
	breaker_table_close(t);
}

/* A table made for a large config is that large from the start. */
static void test_open_sized(void **state) {
	struct fixture *f = *state;
	struct breaker_table *t = NULL;
	struct breaker_capacity cap, want = {.clusters = 15000, .groups = 3000};

	assert_int_equal(table_open_sized_in(f->dir, &want, &t), 0);
	assert_int_equal(breaker_table_capacity(t, &cap), 0);
	assert_true(cap.clusters >= 15000 && cap.groups >= 3000 && cap.slots >= 65536);
	breaker_table_close(t);
	want.clusters = 1u << 30;
	assert_int_equal(breaker_table_capacity_for(&want, NULL, NULL), -E2BIG);
}

static char *dump_to_string(const char *dir, bool json, int *ret) {
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	assert_non_null(out);
	*ret = status_print_in(dir, out, json);
	fclose(out);
	return buf;
}

static void test_dump(void **state) {
	struct fixture *f = *state;
	struct breaker_table *t = open_table(f);
	struct circuit_breakers cb = {.set = true, .max_connections = 7, .max_pending_requests = 3};
	struct mapping m[2] = {
	        {.name = (char *)"blue", .effective_weight = 10},
	        {.name = (char *)"green", .effective_weight = 90},
	};
	struct mapping *ms[2] = {&m[0], &m[1]};
	struct mapping_group g = {
	        .key = (char *)"127.0.0.1|8443|a.example.com", .mappings = ms, .n_mappings = 2};
	breaker_slot_t a, b;
	uint32_t e, odd, named;
	int r;

	assert_int_equal(breaker_table_entry(t, "upstream.example:443|tls|7|3", &e), 0);
	/* a key as lib/configbuild.c makes it: shown as its service and TLS mode */
	assert_int_equal(breaker_table_entry(t, "[::1]:8443|tls-context|ctx|refuse-0|0", &named),
	                 0);
	assert_int_equal(breaker_table_entry(t, "we\"ird\\na\tme\xff", &odd), 0);
	/* well-formed UTF-8 passes through; a surrogate and an overlong form do not */
	assert_int_equal(breaker_table_entry(t, "caf\xc3\xa9-\xed\xa0\x80-\xe0\x80\xaf", &odd), 0);
	breaker_table_note_limits(t, odd, NULL);
	assert_int_equal(breaker_table_admit(t, e, &cb, &a), 0);
	assert_int_equal(breaker_table_admit(t, e, &cb, &b), 0);
	breaker_table_connected(t, a);
	breaker_table_release(t, b, 1234, 5678);
	for (int i = 0; i < 10; i++)
		assert_true(breaker_table_pick(t, &g, NULL) >= 0);

	_cleanup_free_ char *text = dump_to_string(f->dir, false, &r);
	assert_int_equal(r, 0);
	print_message("%s", text);
	assert_non_null(strstr(text, "SERVICE"));
	/* a key not of configbuild's form is shown whole */
	assert_non_null(strstr(text, "upstream.example:443|tls|7|3"));
	const char *row = strstr(text, "\n[::1]:8443 ");
	assert_non_null(row);
	assert_true(strstr(row, "tls:ctx") < strchr(row + 1, '\n'));
	assert_null(strstr(text, "refuse-"));
	assert_non_null(strstr(text, "127.0.0.1:8443/a.example.com"));
	assert_non_null(strstr(text, "green"));
	assert_non_null(strstr(text, "5678"));
	/* aligned: every cluster line as long as the header line */
	char *line2 = strchr(text, '\n') + 1;
	assert_int_equal(strchr(line2, '\n') - line2, strchr(text, '\n') - text);

	_cleanup_free_ char *json = dump_to_string(f->dir, true, &r);
	assert_int_equal(r, 0);
	/* cmocka prints at most 1 KiB a message: one line per cluster */
	for (const char *p = json; *p;) {
		const char *end = strstr(p, "},{");
		size_t n = end ? (size_t)(end - p) + 2 : strlen(p);
		print_message("%.*s\n", (int)MIN(n, 900u), p);
		p += n;
	}
	assert_non_null(strstr(json,
	                       "\"cluster\":\"upstream.example:443|tls|7|3\","
	                       "\"key\":\"upstream.example:443|tls|7|3\","
	                       "\"service\":\"upstream.example:443|tls|7|3\",\"tls\":\"?\","
	                       "\"active\":1,\"pending\":0,\"max_connections\":7,"
	                       "\"max_pending_requests\":3,\"total\":2,\"overflows\":0,"
	                       "\"connect_failures\":0,\"bytes_in\":1234,\"bytes_out\":5678}"));
	assert_non_null(strstr(json, "\"key\":\"[::1]:8443|tls-context|ctx|refuse-0|0\","
	                             "\"service\":\"[::1]:8443\",\"tls\":\"tls:ctx\""));
	assert_non_null(strstr(json, "{\"key\":\"127.0.0.1|8443|a.example.com\","
	                             "\"name\":\"127.0.0.1:8443/a.example.com\""));
	assert_non_null(strstr(json, "{\"name\":\"blue\",\"weight\":10,\"picks\":1}"));
	assert_non_null(strstr(json, "{\"name\":\"green\",\"weight\":90,\"picks\":9}"));
	assert_non_null(strstr(json, "we\\\"ird\\\\na\\u0009me\\ufffd"));
	assert_non_null(strstr(json, "caf\xc3\xa9-\\ufffd\\ufffd\\ufffd-\\ufffd\\ufffd\\ufffd\""));

	/* and it parses as JSON */
	char path[128], cmd[256];
	snprintf(path, sizeof(path), "%s/out.json", f->dir);
	write_file(path, json, strlen(json), 0644);
	if (system("command -v python3 >/dev/null 2>&1") == 0) {
		snprintf(cmd, sizeof(cmd),
		         "python3 -c 'import json,sys; d=json.load(sys.stdin); "
		         "assert len(d[\"clusters\"])==4 and len(d[\"groups\"])==1' < %s",
		         path);
		assert_int_equal(system(cmd), 0);
	}

	breaker_table_release(t, a, 0, 0);
	breaker_table_close(t);

	/* no table yet */
	char missing[160];
	snprintf(missing, sizeof(missing), "%s/nonexistent", f->dir);
	_cleanup_free_ char *none = dump_to_string(missing, false, &r);
	assert_int_equal(r, -ENOENT);
}

int main(void) {
	/* TEST_DEBUG=1 shows the table's debug lines: reclaims, broken locks */
	log_setup(LOG_TARGET_STDERR, "test-breaker");
	if (getenv("TEST_DEBUG"))
		log_set_max_level(LOG_DEBUG);
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_open_create_reopen, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_concurrent_create, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_version_mismatch, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_admit_release_limits, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_refuse_all, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_hammer, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_sigkill_while_hammering, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_sigkill_reclaimed_by_admit, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_sigkill_reclaimed_by_reap, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_adopt, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_give, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_wrr_pick_across_processes, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_grow_while_children_hold_slots, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_hammer_while_growing, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_slots_grow_past_65536, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_open_sized, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_dump, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
