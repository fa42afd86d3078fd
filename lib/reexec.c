/* reexec.c — replacing the running tcpmapd image with the installed binary in place; see
 * reexec.h. Must never run anything between fork() and execve() in the child but system
 * calls on memory prepared before the fork (the parent has threads), and never pass the new
 * image an fd that is not named in its $LISTEN_FDNAMES or sent with its name on the channel
 * (beside them, only the channel itself). */
#include "reexec.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
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

/* The channel to the old image: a SOCK_SEQPACKET socket. An image of an older version
 * passes a pipe under the older name instead, with the connections in $LISTEN_FDS, and waits
 * only for 'R' on it. */
#define CHANNEL_FD_ENV "TCPMAP_REEXEC_CHANNEL_FD"
#define READY_FD_ENV "TCPMAP_REEXEC_READY_FD"

/* What goes over the channel, one byte first in every message: the new image says it has
 * loaded ('L') and is ready ('R'); the old image sends fds with their names ('F', each name
 * NUL-terminated, in the order of the fds), then the end ('E'). */
#define MSG_LOADED 'L'
#define MSG_READY 'R'
#define MSG_FDS 'F'
#define MSG_END 'E'
#define MSG_PID 'P' /* from the intermediate child: the new image's pid follows */
/* fds per message, below the kernel's SCM_MAX_FD (253) */
#define FDS_PER_MSG 128
#define NAME_MAX_LEN 64
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
	       strncmp(e, READY_FD_ENV "=", strlen(READY_FD_ENV) + 1) == 0 ||
	       strncmp(e, CHANNEL_FD_ENV "=", strlen(CHANNEL_FD_ENV) + 1) == 0;
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

/* Wait up to `timeout_usec` for a message on `fd`: 0 for one whose first byte is `want`,
 * -ECHILD when the peer closed its end (it exited) or said something else, -ETIMEDOUT. With
 * `want` 0 only the peer's end counts (what it said on the way is skipped). */
static int channel_wait(int fd, char want, uint64_t timeout_usec) {
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	uint64_t deadline = now_usec() + timeout_usec;
	for (;;) {
		uint64_t now = now_usec();
		int pr = poll(&pfd, 1, now >= deadline ? 0 : (int)((deadline - now + 999) / 1000));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0)
			return -errno;
		if (pr == 0)
			return -ETIMEDOUT;
		char c = 0;
		ssize_t got = recv(fd, &c, 1, MSG_DONTWAIT | MSG_TRUNC);
		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got > 0 && want == 0)
			continue;
		return got > 0 && c == want ? 0 : -ECHILD;
	}
}

void reexec_child_stop(struct reexec_child *c) {
	if (c->channel < 0)
		return;
	/* started by us, and its channel end is open until it exits, so the pid is still its
	 * own unless the channel says it has gone: wait for that, so nothing it adopted is
	 * relayed by two images once the caller takes the connections back */
	if (channel_wait(c->channel, 0, 0) != -ECHILD) {
		(void)kill(c->pid, SIGKILL);
		(void)channel_wait(c->channel, 0, 2 * 1000 * 1000);
	}
	c->channel = safe_close(c->channel);
}

void reexec_child_close(struct reexec_child *c) { c->channel = safe_close(c->channel); }

int reexec_spawn(const int *fds, const char *const *names, size_t n, uint64_t timeout_usec,
                 struct reexec_child *ret) {
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
	char listen_fds[40], listen_pid[40], channel_env[64];
	int channel[2] = {-EBADF, -EBADF};
	pid_t pid = -1;

	*ret = (struct reexec_child){.pid = 0, .channel = -EBADF};
	if (!envp || !fdnames || !all || !tmp) {
		r = log_error_errno(ENOMEM, "re-exec");
		goto out;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel) < 0) {
		r = log_error_errno(errno, "re-exec: the channel to the new image");
		goto out;
	}
	/* The sockets as systemd passes them (sd_listen_fds_with_names), and after them,
	 * outside $LISTEN_FDS, the channel. */
	char *p = stpcpy(fdnames, "LISTEN_FDNAMES=");
	for (size_t i = 0; i < n; i++) {
		p = stpcpy(p, names[i]);
		if (i + 1 < n)
			*p++ = ':';
		all[i] = fds[i];
	}
	*p = 0;
	all[n] = channel[1];
	snprintf(listen_fds, sizeof listen_fds, "LISTEN_FDS=%zu", n);
	snprintf(channel_env, sizeof channel_env, CHANNEL_FD_ENV "=%zu", 3 + n);
	strcpy(listen_pid, "LISTEN_PID=");
	size_t k = 0;
	for (size_t i = 0; i < n_env; i++)
		if (!env_is_ours(environ[i]))
			envp[k++] = environ[i];
	envp[k++] = listen_pid;
	envp[k++] = listen_fds;
	envp[k++] = fdnames;
	envp[k++] = channel_env;

	/* Twice: the new image must not be our child. systemd takes a main process whose parent
	 * is not systemd for one it cannot watch, and then does not wait for it on stop. The
	 * intermediate child exits at once, so the new image is re-parented to systemd (or to
	 * init) before it announces MAINPID=; its PID comes back on the channel. */
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
		char m[1 + sizeof grandchild] = {MSG_PID};
		memcpy(m + 1, &grandchild, sizeof grandchild);
		ssize_t _unused_ w = send(channel[1], m, sizeof m, 0);
		_exit(grandchild < 0 ? 1 : 0);
	}
	channel[1] = safe_close(channel[1]);
	(void)waitpid(middle, NULL, 0); /* it only forks and exits */
	/* the new image may have loaded before the intermediate child said its pid */
	bool loaded = false;
	for (;;) {
		char m[1 + sizeof pid];
		ssize_t got = recv(channel[0], m, sizeof m, MSG_DONTWAIT);
		if (got == 1 && m[0] == MSG_LOADED && !loaded) {
			loaded = true;
			continue;
		}
		if (got == (ssize_t)sizeof m && m[0] == MSG_PID)
			memcpy(&pid, m + 1, sizeof pid);
		break;
	}
	if (pid <= 0) {
		r = log_error_errno(ECHILD, "re-exec: fork");
		goto out;
	}
	*ret = (struct reexec_child){.pid = pid, .channel = TAKE_FD(channel[0])};

	/* Bounded: a new image that neither loads nor exits is stopped, and this one goes on.
	 * Until it has loaded, this image's workers go on accepting. */
	r = loaded ? 0 : channel_wait(ret->channel, MSG_LOADED, timeout_usec);
	if (r < 0) {
		log_error_errno(r, "re-exec: the new image (%s, pid %d) did not load", path,
		                (int)pid);
		reexec_child_stop(ret);
	}
out:
	safe_close(channel[0]);
	safe_close(channel[1]);
	free(envp);
	free(fdnames);
	free(all);
	free(tmp);
	strv_free(argv);
	return r;
}

static int send_batch(int channel, const int *fds, const char *const *names, size_t n) {
	char payload[1 + FDS_PER_MSG * NAME_MAX_LEN];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * FDS_PER_MSG)];
	} control = {};
	size_t len = 0;

	payload[len++] = MSG_FDS;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(names[i]) + 1;
		if (l > NAME_MAX_LEN)
			return -ENAMETOOLONG;
		memcpy(payload + len, names[i], l);
		len += l;
	}
	struct iovec iov = {.iov_base = payload, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov,
	                    .msg_iovlen = 1,
	                    .msg_control = control.buf,
	                    .msg_controllen = CMSG_SPACE(sizeof(int) * n)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
	memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
	return sendmsg(channel, &mh, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

int reexec_send(struct reexec_child *c, const int *fds, const char *const *names, size_t n) {
	for (size_t i = 0; i < n; i += FDS_PER_MSG) {
		int r = send_batch(c->channel, fds + i, names + i,
		                   n - i < FDS_PER_MSG ? n - i : FDS_PER_MSG);
		if (r < 0)
			return log_error_errno(r, "re-exec: passing the connections to pid %d",
			                       (int)c->pid);
	}
	char end = MSG_END;
	if (send(c->channel, &end, 1, MSG_NOSIGNAL) < 0)
		return log_error_errno(errno, "re-exec: passing the connections to pid %d",
		                       (int)c->pid);
	return 0;
}

int reexec_wait_ready(struct reexec_child *c, uint64_t timeout_usec) {
	int r = channel_wait(c->channel, MSG_READY, timeout_usec);
	if (r < 0)
		return log_error_errno(r, "re-exec: the new image (pid %d) did not get ready",
		                       (int)c->pid);
	return 0;
}

/* ---- in the new image ---- */

static int channel_fd(void) {
	const char *e = getenv(CHANNEL_FD_ENV);
	int fd = e ? atoi(e) : -1;
	return fd >= 3 ? fd : -EBADF;
}

bool reexec_started_by_old_image(void) {
	return getenv(CHANNEL_FD_ENV) != NULL || getenv(READY_FD_ENV) != NULL;
}

/* One 'F' message: hand each fd with its name to `add`; what it refuses, or what comes
 * without a name, is closed. */
static void take_batch(const char *payload, size_t len, struct msghdr *mh,
                       int (*add)(void *userdata, int fd, const char *name), void *userdata) {
	size_t off = 1;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		int fds[FDS_PER_MSG];
		memcpy(fds, CMSG_DATA(cm), sizeof(int) * (n < FDS_PER_MSG ? n : FDS_PER_MSG));
		for (size_t i = 0; i < n && i < FDS_PER_MSG; i++) {
			const char *name = off < len ? payload + off : NULL;
			if (name && memchr(name, 0, len - off)) {
				off += strlen(name) + 1;
				if (add(userdata, fds[i], name) >= 0)
					continue;
			}
			safe_close(fds[i]);
		}
	}
}

int reexec_receive(int (*add)(void *userdata, int fd, const char *name), void *userdata,
                   uint64_t timeout_usec) {
	int fd = channel_fd();
	if (fd < 0)
		return 0; /* an older image passed everything in $LISTEN_FDS */
	char loaded = MSG_LOADED;
	if (send(fd, &loaded, 1, MSG_NOSIGNAL) < 0)
		return log_error_errno(errno, "re-exec: telling the old image we have loaded");

	uint64_t deadline = now_usec() + timeout_usec;
	for (;;) {
		char payload[1 + FDS_PER_MSG * NAME_MAX_LEN];
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int) * FDS_PER_MSG)];
		} control;
		struct iovec iov = {.iov_base = payload, .iov_len = sizeof payload};
		struct msghdr mh = {.msg_iov = &iov,
		                    .msg_iovlen = 1,
		                    .msg_control = control.buf,
		                    .msg_controllen = sizeof control.buf};
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		uint64_t now = now_usec();
		if (now >= deadline)
			return log_error_errno(ETIMEDOUT, "re-exec: the old image's connections");
		int pr = poll(&pfd, 1, (int)((deadline - now + 999) / 1000));
		if (pr <= 0) {
			if (pr < 0 && errno != EINTR)
				return log_error_errno(errno,
				                       "re-exec: the old image's connections");
			continue;
		}
		ssize_t got = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got < 0)
			return log_error_errno(errno, "re-exec: the old image's connections");
		if (got > 0 && payload[0] == MSG_FDS)
			take_batch(payload, (size_t)got, &mh, add, userdata);
		else if (got > 0 && payload[0] == MSG_END)
			return 0;
		else
			/* it is gone: what came is adopted, the rest it keeps (or lost with it) */
			return log_error_errno(ECHILD, "re-exec: the old image's connections");
		if (mh.msg_flags & MSG_CTRUNC)
			log_warning("re-exec: some of the old image's connections did not arrive");
	}
}

void reexec_announce_ready(void) {
	const char *e = getenv(CHANNEL_FD_ENV) ?: getenv(READY_FD_ENV);
	if (!e)
		return;
	int fd = atoi(e);
	unsetenv(CHANNEL_FD_ENV);
	unsetenv(READY_FD_ENV);
	/* The old image is our parent and still the service's main process: take that over
	 * first (NotifyAccess=all lets systemd hear us), then say we are ready. */
	int r = sd_notifyf(0, "MAINPID=%d\nREADY=1", (int)getpid());
	if (r < 0)
		log_warning_errno(r, "telling systemd we are the main process now");
	if (fd >= 3) {
		/* write(), not send(): an older image's readiness pipe is no socket */
		char ready = MSG_READY;
		ssize_t _unused_ w = write(fd, &ready, 1); /* the old image times out without it */
		safe_close(fd);
	}
}

void reexec_protect_ready_fd(void) {
	const char *e = getenv(CHANNEL_FD_ENV) ?: getenv(READY_FD_ENV);
	int fd = e ? atoi(e) : -1;
	if (fd >= 3)
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
}
