/* test-ticketkeys.c — the shared session-ticket key table on an injected clock: the first
 * issue makes a key, the key is reused within a rotation and replaced after it, older keys
 * are accepted (to be renewed) until the window ends and refused after, a clock that went
 * back is not trusted, two handles (as two processes) share keys, a removed file is
 * followed, and a file that is not ours alone or not a table is refused.
 *
 * Every test works in its own mkdtemp directory under /tmp. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ticketkeys.h"
#include "util.h"

#define T0 ((int64_t)1800000000) /* an arbitrary "now" for the injected clock */
#define HOUR TICKETKEYS_ROTATE_SEC
#define LIFE TICKETKEYS_LIFE_SEC

struct fixture {
	char dir[64];
	int dir_fd;
};

static int setup(void **state) {
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-ticketkeys.XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	f->dir_fd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	*state = f;
	return f->dir_fd < 0 ? -1 : 0;
}

static int teardown(void **state) {
	struct fixture *f = *state;
	(void)unlinkat(f->dir_fd, TICKETKEYS_FILE_NAME, 0);
	safe_close(f->dir_fd);
	rmdir(f->dir);
	free(f);
	return 0;
}

static bool same_key(const struct ticket_key *a, const struct ticket_key *b) {
	return memcmp(a, b, sizeof *a) == 0;
}

static void test_new_table_has_no_key(void **state) {
	struct fixture *f = *state;
	struct ticket_keys *t = NULL;
	unsigned n = 99;
	uint64_t rotations = 99;
	struct stat st;

	assert_int_equal(ticketkeys_open(f->dir_fd, &t), 0);
	assert_int_equal(ticketkeys_stats(t, &n, &rotations), 0);
	assert_int_equal(n, 0);
	assert_int_equal(rotations, 0);
	assert_int_equal(fstatat(f->dir_fd, TICKETKEYS_FILE_NAME, &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	ticketkeys_close(t);
}

static void test_rotation_schedule(void **state) {
	struct fixture *f = *state;
	struct ticket_keys *t = NULL;
	struct ticket_key first, k, again;
	uint64_t rotations;
	unsigned n;

	assert_int_equal(ticketkeys_open(f->dir_fd, &t), 0);
	assert_int_equal(ticketkeys_issue(t, T0, &first), 0);
	assert_int_equal(first.created, T0);
	/* the same key for the whole hour */
	assert_int_equal(ticketkeys_issue(t, T0 + HOUR - 1, &k), 0);
	assert_true(same_key(&k, &first));
	assert_int_equal(ticketkeys_find(t, first.name, T0 + HOUR - 1, &again), 1);
	assert_true(same_key(&again, &first));
	/* due at the hour: a new key, the old one still accepted but to be renewed */
	assert_int_equal(ticketkeys_issue(t, T0 + HOUR, &k), 0);
	assert_false(same_key(&k, &first));
	assert_memory_not_equal(k.name, first.name, sizeof k.name);
	assert_int_equal(k.created, T0 + HOUR);
	assert_int_equal(ticketkeys_find(t, first.name, T0 + HOUR, &again), 2);
	assert_true(same_key(&again, &first));
	assert_int_equal(ticketkeys_find(t, k.name, T0 + HOUR, &again), 1);
	assert_int_equal(ticketkeys_stats(t, &n, &rotations), 0);
	assert_int_equal(n, 2);
	assert_int_equal(rotations, 2);
	ticketkeys_close(t);
}

static void test_refused_after_window(void **state) {
	struct fixture *f = *state;
	struct ticket_keys *t = NULL;
	struct ticket_key first, k;

	assert_int_equal(ticketkeys_open(f->dir_fd, &t), 0);
	assert_int_equal(ticketkeys_issue(t, T0, &first), 0);
	/* no one asked for a new key meanwhile: the first is still the newest, yet too old */
	assert_int_equal(ticketkeys_find(t, first.name, T0 + LIFE - 1, &k), 1);
	assert_int_equal(ticketkeys_find(t, first.name, T0 + LIFE, &k), -ENOENT);
	assert_int_equal(ticketkeys_find(t, first.name, T0 + 10 * LIFE, &k), -ENOENT);
	/* an unknown name is a full handshake too */
	uint8_t unknown[TICKETKEYS_NAME_SIZE] = {0};
	assert_int_equal(ticketkeys_find(t, unknown, T0, &k), -ENOENT);
	ticketkeys_close(t);
}

/* Hourly use for a day: at every hour the keys of the last 12 h are accepted, older ones
 * are not, and every slot a new key took had left the window. */
static void test_window_over_a_day(void **state) {
	struct fixture *f = *state;
	struct ticket_keys *t = NULL;
	struct ticket_key issued[25], k;

	assert_int_equal(ticketkeys_open(f->dir_fd, &t), 0);
	for (int h = 0; h < 25; h++) {
		int64_t now = T0 + (int64_t)h * HOUR;
		assert_int_equal(ticketkeys_issue(t, now, &issued[h]), 0);
		assert_int_equal(issued[h].created, now);
		for (int old = 0; old <= h; old++) {
			int r = ticketkeys_find(t, issued[old].name, now, &k);
			if ((int64_t)(h - old) * HOUR >= LIFE)
				assert_int_equal(r, -ENOENT);
			else
				assert_int_equal(r, old == h ? 1 : 2);
		}
	}
	unsigned n;
	assert_int_equal(ticketkeys_stats(t, &n, NULL), 0);
	assert_int_equal(n, LIFE / HOUR + 1);
	ticketkeys_close(t);
}

static void test_clock_went_back(void **state) {
	struct fixture *f = *state;
	struct ticket_keys *t = NULL;
	struct ticket_key first, k;

	assert_int_equal(ticketkeys_open(f->dir_fd, &t), 0);
	assert_int_equal(ticketkeys_issue(t, T0, &first), 0);
	/* a small step back is tolerated */
	assert_int_equal(ticketkeys_find(t, first.name, T0 - 60, &k), 1);
	assert_int_equal(ticketkeys_issue(t, T0 - 60, &k), 0);
	assert_true(same_key(&k, &first));
	/* a key "made" more than a rotation in the future is neither issued with nor taken */
	assert_int_equal(ticketkeys_find(t, first.name, T0 - HOUR - 1, &k), -ENOENT);
	assert_int_equal(ticketkeys_issue(t, T0 - HOUR - 1, &k), 0);
	assert_false(same_key(&k, &first));
	assert_int_equal(k.created, T0 - HOUR - 1);
	ticketkeys_close(t);
}

/* Two handles on one directory stand for two processes: a key one issued, the other takes,
 * and the rotation one made, the other sees. */
static void test_shared_between_handles(void **state) {
	struct fixture *f = *state;
	struct ticket_keys *a = NULL, *b = NULL;
	struct ticket_key ka, kb;

	assert_int_equal(ticketkeys_open(f->dir_fd, &a), 0);
	assert_int_equal(ticketkeys_issue(a, T0, &ka), 0);
	assert_int_equal(ticketkeys_open(f->dir_fd, &b), 0);
	assert_int_equal(ticketkeys_find(b, ka.name, T0 + 5, &kb), 1);
	assert_true(same_key(&ka, &kb));
	assert_int_equal(ticketkeys_issue(b, T0 + HOUR, &kb), 0);
	assert_int_equal(ticketkeys_issue(a, T0 + HOUR + 1, &ka), 0);
	assert_true(same_key(&ka, &kb));
	ticketkeys_close(b);
	/* the table outlives every handle: a later opener finds the keys */
	ticketkeys_close(a);
	assert_int_equal(ticketkeys_open(f->dir_fd, &a), 0);
	assert_int_equal(ticketkeys_find(a, kb.name, T0 + HOUR + 2, &ka), 1);
	ticketkeys_close(a);
}

/* Removing the file is how an operator forces a rotation: followed within the follow
 * interval, and the old keys are gone with it. */
static void test_removed_file_is_followed(void **state) {
	struct fixture *f = *state;
	struct ticket_keys *t = NULL;
	struct ticket_key old, k;

	assert_int_equal(ticketkeys_open(f->dir_fd, &t), 0);
	int64_t now = ticketkeys_now(t);
	assert_int_equal(ticketkeys_issue(t, now, &old), 0);
	assert_int_equal(unlinkat(f->dir_fd, TICKETKEYS_FILE_NAME, 0), 0);
	/* before the interval the mapping is still the old file */
	assert_int_equal(ticketkeys_find(t, old.name, now, &k), 1);
	now += TICKETKEYS_FOLLOW_SEC;
	assert_int_equal(ticketkeys_find(t, old.name, now, &k), -ENOENT);
	assert_int_equal(ticketkeys_issue(t, now, &k), 0);
	assert_memory_not_equal(k.name, old.name, sizeof k.name);
	assert_int_equal(faccessat(f->dir_fd, TICKETKEYS_FILE_NAME, F_OK, 0), 0);
	ticketkeys_close(t);
}

/* A forked relay closes the directory fd it inherited: it keeps the keys it mapped and never
 * follows, while its parent does. */
static void test_forked_child_keeps_its_mapping(void **state) {
	struct fixture *f = *state;
	struct ticket_keys *t = NULL;
	struct ticket_key old, k;

	assert_int_equal(ticketkeys_open(f->dir_fd, &t), 0);
	int64_t now = ticketkeys_now(t);
	assert_int_equal(ticketkeys_issue(t, now, &old), 0);
	assert_int_equal(unlinkat(f->dir_fd, TICKETKEYS_FILE_NAME, 0), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct ticket_key mine;
		int r = ticketkeys_find(t, old.name, now + TICKETKEYS_FOLLOW_SEC, &mine);
		bool made = faccessat(f->dir_fd, TICKETKEYS_FILE_NAME, F_OK, 0) == 0;
		_exit(r == 1 && !made ? 0 : 1);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(ticketkeys_find(t, old.name, now + TICKETKEYS_FOLLOW_SEC, &k), -ENOENT);
	ticketkeys_close(t);
}

static void write_file(struct fixture *f, mode_t mode, size_t size) {
	int fd = openat(f->dir_fd, TICKETKEYS_FILE_NAME, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	                0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void test_refuses_foreign_files(void **state) {
	struct fixture *f = *state;
	struct ticket_keys *t = NULL;

	/* readable by the group: whoever reads the keys reads every resumed session */
	assert_int_equal(ticketkeys_open(f->dir_fd, &t), 0);
	ticketkeys_close(t);
	assert_int_equal(fchmodat(f->dir_fd, TICKETKEYS_FILE_NAME, 0640, 0), 0);
	assert_int_equal(ticketkeys_open(f->dir_fd, &t), -EPERM);
	/* a second link */
	assert_int_equal(fchmodat(f->dir_fd, TICKETKEYS_FILE_NAME, 0600, 0), 0);
	assert_int_equal(linkat(f->dir_fd, TICKETKEYS_FILE_NAME, f->dir_fd, "other", 0), 0);
	assert_int_equal(ticketkeys_open(f->dir_fd, &t), -EPERM);
	assert_int_equal(unlinkat(f->dir_fd, "other", 0), 0);
	/* not a table: zeros, or another size */
	write_file(f, 0600, 4096);
	assert_int_equal(ticketkeys_open(f->dir_fd, &t), -EPROTO);
	write_file(f, 0600, 100);
	assert_int_equal(ticketkeys_open(f->dir_fd, &t), -EPROTO);
	/* a symlink is never followed */
	assert_int_equal(unlinkat(f->dir_fd, TICKETKEYS_FILE_NAME, 0), 0);
	assert_int_equal(symlinkat("/dev/null", f->dir_fd, TICKETKEYS_FILE_NAME), 0);
	assert_int_equal(ticketkeys_open(f->dir_fd, &t), -ELOOP);
}

static void test_clock_offset_env(void **state) {
	struct fixture *f = *state;
	struct ticket_keys *t = NULL, *plain = NULL;

	assert_int_equal(ticketkeys_open(f->dir_fd, &plain), 0);
	setenv(TICKETKEYS_CLOCK_OFFSET_ENV, "46800", 1);
	assert_int_equal(ticketkeys_open(f->dir_fd, &t), 0);
	unsetenv(TICKETKEYS_CLOCK_OFFSET_ENV);
	int64_t d = ticketkeys_now(t) - ticketkeys_now(plain);
	assert_true(d >= 46799 && d <= 46801);
	ticketkeys_close(t);
	ticketkeys_close(plain);
}

int main(void) {
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_new_table_has_no_key, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_rotation_schedule, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_refused_after_window, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_window_over_a_day, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_clock_went_back, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_shared_between_handles, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_removed_file_is_followed, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_forked_child_keeps_its_mapping, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_refuses_foreign_files, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_clock_offset_env, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
