/* reexec.c — replacing the running tcpmapd image with the installed binary in place; see
 * reexec.h. Must never run anything between fork() and execve() in the child but system
 * calls on memory prepared before the fork (the parent has threads), and never pass the new
 * image an fd that is not named in its $LISTEN_FDNAMES (or its readiness pipe). */
#include "reexec.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define READY_FD_ENV "TCPMAP_REEXEC_READY_FD"
#define DELETED_SUFFIX " (deleted)"

extern char **environ;

/* The path the running image was started from (the kernel appends " (deleted)" once a
 * package or `install` has replaced the file: the path is still where the new one is). */
static int own_path(char *buf, size_t size) {
	ssize_t n = readlink("/proc/self/exe", buf, size - 1);
	if (n < 0)
		return -errno;
	if ((size_t)n >= size - 1)
		return -ENAMETOOLONG;
	buf[n] = 0;
	size_t sl = strlen(DELETED_SUFFIX);
	if ((size_t)n > sl && streq(buf + n - sl, DELETED_SUFFIX))
		buf[n - sl] = 0;
	return 0;
}

/* The file at our path when we started. Not /proc/self/exe's own identity: under a wrapper
 * (valgrind, an interpreter) that is the wrapper's binary, and every reload would re-exec. */
static struct {
	bool known;
	dev_t dev;
	ino_t ino;
} started_from;

void reexec_remember_binary(void) {
	char path[4096];
	struct stat st;

	if (own_path(path, sizeof path) < 0 || stat(path, &st) < 0)
		return; /* then a reload never re-executes: the safe side */
	started_from.known = true;
	started_from.dev = st.st_dev;
	started_from.ino = st.st_ino;
}

bool reexec_binary_changed(void) {
	char path[4096];
	struct stat installed;

	if (!started_from.known || own_path(path, sizeof path) < 0 || stat(path, &installed) < 0)
		return false; /* nothing to compare: a config reload, as always */
	return installed.st_dev != started_from.dev || installed.st_ino != started_from.ino;
}

/* The running image's argv, from /proc/self/cmdline: the new one runs with the same. */
static char **own_argv(void) {
	_cleanup_close_ int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	char buf[8192];
	size_t len = 0;
	ssize_t n;

	if (fd < 0)
		return NULL;
	while (len < sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = 0;
	size_t argc = 0;
	for (size_t i = 0; i < len; i++)
		argc += buf[i] == 0;
	char **argv = calloc(argc + 2, sizeof *argv);
	if (!argv)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < len && k <= argc; i += strlen(buf + i) + 1)
		if (!(argv[k++] = strdup(buf + i))) {
			strv_free(argv);
			return NULL;
		}
	return argv;
}

static bool env_is_ours(const char *e) {
	return strncmp(e, "LISTEN_PID=", 11) == 0 || strncmp(e, "LISTEN_FDS=", 11) == 0 ||
	       strncmp(e, "LISTEN_FDNAMES=", 15) == 0 ||
	       strncmp(e, READY_FD_ENV "=", strlen(READY_FD_ENV) + 1) == 0;
}

/* Decimal digits of v into buf, NUL-terminated: async-signal-safe, for the child. */
static void format_pid(char *buf, pid_t v) {
	char tmp[24];
	int n = 0;
	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) > 0);
	while (n > 0)
		*buf++ = tmp[--n];
	*buf = 0;
}

/* In the child only: move fds[i] to 3 + i (through copies above that range, so no fd is
 * overwritten before it was copied), then exec. Returns only on failure. */
static void child_exec(const char *path, char **argv, char **envp, char *listen_pid, const int *fds,
                       int *tmp, size_t n) {
	sigset_t none;
	sigemptyset(&none);
	format_pid(listen_pid, getpid());
	for (size_t i = 0; i < n; i++)
		if ((tmp[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, (int)(3 + n))) < 0)
			return;
	for (size_t i = 0; i < n; i++)
		if (dup2(tmp[i], (int)(3 + i)) < 0)
			return;
	/* the new image blocks what it handles itself; nothing may be pending-blocked meanwhile
	 * except what it would block anyway */
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
	execve(path, argv, envp);
}

int reexec_spawn(const int *fds, const char *const *names, size_t n, uint64_t timeout_usec,
                 pid_t *ret_pid) {
	char path[4096];
	int r = own_path(path, sizeof path);
	if (r < 0)
		return log_error_errno(r, "re-exec: where the running binary lives");
	char **argv = own_argv();
	if (!argv)
		return log_error_errno(ENOMEM, "re-exec: the command line");

	size_t names_len = 1;
	for (size_t i = 0; i < n; i++)
		names_len += strlen(names[i]) + 1;
	size_t n_env = 0;
	while (environ[n_env])
		n_env++;
	char **envp = calloc(n_env + 5, sizeof *envp);
	char *fdnames = malloc(strlen("LISTEN_FDNAMES=") + names_len);
	int *all = calloc(n + 1, sizeof *all), *tmp = calloc(n + 1, sizeof *tmp);
	char listen_fds[40], listen_pid[40], ready_env[64];
	int ready[2] = {-EBADF, -EBADF};
	pid_t pid = -1;

	if (!envp || !fdnames || !all || !tmp) {
		r = log_error_errno(ENOMEM, "re-exec");
		goto out;
	}
	if (pipe2(ready, O_CLOEXEC) < 0) {
		r = log_error_errno(errno, "re-exec: readiness pipe");
		goto out;
	}
	/* The sockets and connections as systemd passes them (sd_listen_fds_with_names), and
	 * after them, outside $LISTEN_FDS, the pipe the new image says it is ready on. */
	char *p = stpcpy(fdnames, "LISTEN_FDNAMES=");
	for (size_t i = 0; i < n; i++) {
		p = stpcpy(p, names[i]);
		if (i + 1 < n)
			*p++ = ':';
		all[i] = fds[i];
	}
	*p = 0;
	all[n] = ready[1];
	snprintf(listen_fds, sizeof listen_fds, "LISTEN_FDS=%zu", n);
	snprintf(ready_env, sizeof ready_env, READY_FD_ENV "=%zu", 3 + n);
	strcpy(listen_pid, "LISTEN_PID=");
	size_t k = 0;
	for (size_t i = 0; i < n_env; i++)
		if (!env_is_ours(environ[i]))
			envp[k++] = environ[i];
	envp[k++] = listen_pid;
	envp[k++] = listen_fds;
	envp[k++] = fdnames;
	envp[k++] = ready_env;

	/* Twice: the new image must not be our child. systemd takes a main process whose parent
	 * is not systemd for one it cannot watch, and then does not wait for it on stop. The
	 * intermediate child exits at once, so the new image is re-parented to systemd (or to
	 * init) before it announces MAINPID=; its PID comes back on the pipe. */
	pid_t middle = fork();
	if (middle < 0) {
		r = log_error_errno(errno, "re-exec: fork");
		goto out;
	}
	if (middle == 0) {
		pid_t grandchild = fork();
		if (grandchild == 0) {
			child_exec(path, argv, envp, listen_pid + strlen("LISTEN_PID="), all, tmp,
			           n + 1);
			_exit(127);
		}
		ssize_t _unused_ w = write(ready[1], &grandchild, sizeof grandchild);
		_exit(grandchild < 0 ? 1 : 0);
	}
	ready[1] = safe_close(ready[1]);
	(void)waitpid(middle, NULL, 0); /* it only forks and exits */
	if (read(ready[0], &pid, sizeof pid) != (ssize_t)sizeof pid || pid <= 0) {
		r = log_error_errno(ECHILD, "re-exec: fork");
		goto out;
	}

	/* Bounded: a new image that neither gets ready nor exits is stopped, and this one goes
	 * on. */
	struct pollfd pfd = {.fd = ready[0], .events = POLLIN};
	uint64_t deadline = now_usec() + timeout_usec;
	char c = 0;
	r = -ETIMEDOUT;
	for (;;) {
		uint64_t now = now_usec();
		if (now >= deadline)
			break;
		int pr = poll(&pfd, 1, (int)((deadline - now + 999) / 1000));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			break;
		ssize_t got = read(ready[0], &c, 1);
		r = got == 1 && c == 'R' ? 0 : -ECHILD; /* EOF: it exited (or exec failed) */
		break;
	}
	if (r < 0) {
		/* started by us just now, and still ours to stop: its pipe end is open until it
		 * exits, so it has not exited (pid reuse) unless the pipe said so */
		if (r == -ETIMEDOUT)
			(void)kill(pid, SIGKILL);
		log_error_errno(r, "re-exec: the new image (%s, pid %d) did not get ready", path,
		                (int)pid);
	} else
		*ret_pid = pid;
out:
	safe_close(ready[0]);
	safe_close(ready[1]);
	free(envp);
	free(fdnames);
	free(all);
	free(tmp);
	strv_free(argv);
	return r;
}

bool reexec_started_by_old_image(void) { return getenv(READY_FD_ENV) != NULL; }

void reexec_announce_ready(void) {
	const char *e = getenv(READY_FD_ENV);
	if (!e)
		return;
	int fd = atoi(e);
	unsetenv(READY_FD_ENV);
	/* The old image is our parent and still the service's main process: take that over
	 * first (NotifyAccess=all lets systemd hear us), then say we are ready. */
	int r = sd_notifyf(0, "MAINPID=%d\nREADY=1", (int)getpid());
	if (r < 0)
		log_warning_errno(r, "telling systemd we are the main process now");
	if (fd >= 3) {
		ssize_t _unused_ w = write(fd, "R", 1); /* the old image times out without it */
		safe_close(fd);
	}
}

void reexec_protect_ready_fd(void) {
	const char *e = getenv(READY_FD_ENV);
	int fd = e ? atoi(e) : -1;
	if (fd >= 3)
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
}
