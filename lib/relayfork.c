/* relayfork.c — fork a process for one connection, closing what is not its own; see
 * relayfork.h. Must never, in the child, touch a lock or an object of another thread. */
#include "relayfork.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static bool is_kept(int fd, const int *keep, size_t n_keep) {
	if (fd <= STDERR_FILENO)
		return true;
	for (size_t i = 0; i < n_keep; i++)
		if (keep[i] == fd)
			return true;
	return false;
}

/* the journal's socket (journal.c): an AF_UNIX datagram socket opened once and cached by
 * number. Closing it would leave the child's access-log entry going to whatever fd next
 * takes that number. No connection is ever a datagram socket, so keeping every AF_UNIX
 * datagram socket keeps nothing of another connection. */
static bool is_journal_socket(int fd) {
	struct stat st;
	int domain = 0, type = 0;
	socklen_t len = sizeof domain;

	if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode))
		return false;
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 || domain != AF_UNIX)
		return false;
	len = sizeof type;
	return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_DGRAM;
}

/* Walk /proc/self/fd rather than close_range() over the gaps: the journal's socket has a
 * number only the walk can find. The parent of per-connection relays holds few fds (its
 * listening sockets, its loops, connections still being routed), so the walk is short. */
static int close_all_but(const int *keep, size_t n_keep) {
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	if (!d)
		return -errno;
	int dfd = dirfd(d);
	while ((e = readdir(d))) {
		char *end;
		long fd = strtol(e->d_name, &end, 10);
		if (*end || end == e->d_name || fd == dfd)
			continue;
		if (is_kept((int)fd, keep, n_keep) || is_journal_socket((int)fd))
			continue;
		(void)close((int)fd);
	}
	closedir(d);
	return 0;
}

/* TEST ONLY (tests/bats/per-connection-process.bats): with TCPMAP_TEST_FD_REPORT naming a
 * directory, each relay process writes there, in a file named by its pid, what its
 * /proc/self/fd holds once the parent's fds are closed. Documented in tcpmapd(8) as a test
 * hook; it reveals nothing a process could not read of itself. */
static void report_fds(void) {
	const char *dir = getenv("TCPMAP_TEST_FD_REPORT");
	char path[4096], line[4096 + 64];

	if (!dir || !*dir)
		return;
	snprintf(path, sizeof path, "%s/%d", dir, (int)getpid());
	int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (out < 0)
		return;
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char link[300], target[4096];
		if (e->d_name[0] == '.')
			continue;
		snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
		ssize_t n = readlink(link, target, sizeof target - 1);
		if (n < 0)
			continue;
		target[n] = 0;
		int len = snprintf(line, sizeof line, "%s %s\n", e->d_name, target);
		ssize_t _unused_ w = write(out, line, (size_t)MIN(len, (int)sizeof line - 1));
	}
	if (d)
		closedir(d);
	close(out);
}

void relayfork_mark(void) {
	/* `ps` tells relays from the dispatcher and the spawner (the tests find them so) */
	(void)prctl(PR_SET_NAME, RELAYFORK_COMM);
	(void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); /* fails only on an old kernel */
	report_fds();
}

int relayfork_isolate(const int *keep, size_t n_keep) {
	int r = close_all_but(keep, n_keep);
	if (r < 0)
		return r; /* no /proc: the child must end its connection, isolated or not */
	relayfork_mark();
	return 0;
}

int relayfork_fork(const int *keep, size_t n_keep, pid_t *ret_pid) {
	pid_t pid = fork();

	*ret_pid = pid;
	if (pid < 0)
		return -errno;
	if (pid > 0)
		return 0;
	return relayfork_isolate(keep, n_keep);
}
