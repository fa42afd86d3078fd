/* test-proclive.c — telling a live owner from a dead one: ourselves, a running child, a
 * zombie, a reaped child, a reused pid (another start time), and unknown start times.
 *
 * Every child it forks is waited for; a child that outlives its test is killed by pid. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>

#include "proclive.h"
#include "util.h"

/* A child that waits for SIGKILL, at most 10 s. */
static pid_t spawn_sleeper(void) {
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		(void)nanosleep(&(struct timespec){.tv_sec = 10}, NULL);
		_exit(0);
	}
	return pid;
}

/* Wait until `pid` has exited (a zombie, not yet reaped): at most 5 s. */
static void wait_zombie(pid_t pid) {
	for (int i = 0; i < 5000; i++) {
		siginfo_t si = {0};
		assert_int_equal(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT | WNOHANG), 0);
		if (si.si_pid == pid)
			return;
		(void)nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	}
	fail_msg("child %d did not exit", (int)pid);
}

static void test_self(void **state) {
	(void)state;
	uint64_t st = 0, again = 0;

	assert_int_equal(proclive_self(&st), getpid());
	assert_true(st > 0); /* this test runs where /proc is mounted */
	assert_int_equal(proclive_self(&again), getpid());
	assert_int_equal(again, st);

	assert_false(proclive_owner_is_stale(NULL, getpid(), st));
	assert_false(proclive_owner_is_stale(NULL, getpid(), 0));
	assert_true(proclive_owner_is_stale(NULL, getpid(), st + 1));
}

/* A forked child knows itself, never its parent. */
static void test_self_after_fork(void **state) {
	(void)state;
	uint64_t parent_st;
	proclive_self(&parent_st);

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		uint64_t st;
		pid_t self = proclive_self(&st);
		_exit(self == getpid() && self != getppid() ? 0 : 1);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_live_child(void **state) {
	(void)state;
	pid_t pid = spawn_sleeper();
	struct proclive_cache cache = {0};

	/* its real start time is unknown to us here: 0 keeps it, whatever /proc says */
	assert_false(proclive_owner_is_stale(NULL, pid, 0));
	assert_false(proclive_owner_is_stale(&cache, pid, 0));
	/* a start time that is not its own: the pid was reused */
	assert_true(proclive_owner_is_stale(NULL, pid, 1));
	assert_true(proclive_owner_is_stale(&cache, pid, 1));

	assert_int_equal(kill(pid, SIGKILL), 0);
	wait_zombie(pid);
	/* killed but not yet waited for */
	assert_true(proclive_owner_is_stale(NULL, pid, 0));
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	assert_true(proclive_owner_is_stale(NULL, pid, 0));
	/* the cache answers for one pass: what it saw while the child lived stands */
	assert_false(proclive_owner_is_stale(&cache, pid, 0));
}

static void test_no_such_owner(void **state) {
	(void)state;
	assert_true(proclive_owner_is_stale(NULL, 0, 0));
	assert_true(proclive_owner_is_stale(NULL, -1, 0));
}

int main(void) {
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_self),
	        cmocka_unit_test(test_self_after_fork),
	        cmocka_unit_test(test_live_child),
	        cmocka_unit_test(test_no_such_owner),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
