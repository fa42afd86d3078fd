/* relayspawn.c — the relay spawner and the dispatcher's channel to it; see relayspawn.h.
 * The spawner must never hold a connection's fd itself, and the dispatcher must never wait
 * for it. */
#include "relayspawn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "journal.h"
#include "log.h"
#include "proclive.h"
#include "rundir.h"
#include "util.h"

/* Children forked and waiting for a connection: two take a burst of two workers' sends
 * while the spawner forks their replacements. */
#define STANDBY 2
/* A spawner that dies at once is not restarted in a loop. */
#define RESTART_MIN_USEC (1000 * 1000)
/* After a failed fork (EAGAIN: a pid or memory limit), try again this much later. */
#define FORK_RETRY_MS 100

/* The channel's number in the spawner. */
#define CHANNEL_FD 3

extern char **environ;

struct relayspawn {
	pthread_mutex_t lock; /* guards fd, pid, starttime: workers send, the main thread swaps */
	int fd;
	pid_t pid; /* 0: none runs */
	uint64_t starttime;
	uint64_t started_usec;
	char *runtime_dir;
	/* The helper died at once (another build's, say, refusing our order's layout): run
	 * tcpmapd's own image as the spawner from then on. */
	bool helper_failed;
	bool running_helper;
};

/* The spawner's executable: the small static helper, looked for where tcpmapd's TLS module
 * is (companion_path()); else tcpmapd's own running image with --relay-spawner. Returns true
 * when `path` is the helper. */
static bool spawner_path(const struct relayspawn *s, char *path, size_t size) {
	for (unsigned i = 0; !s->helper_failed && i < 2; i++)
		if (companion_path(RELAYSPAWN_HELPER, i, path, size) == 0 &&
		    access(path, X_OK) == 0)
			return true;
	/* the running image, not a replaced file: the same struct relay_order */
	snprintf(path, size, "/proc/self/exe");
	return false;
}

int relayspawn_new(const char *runtime_dir, struct relayspawn **ret) {
	struct relayspawn *s = calloc(1, sizeof *s);

	if (!s || !(s->runtime_dir = strdup(runtime_dir))) {
		free(s);
		return -ENOMEM;
	}
	(void)pthread_mutex_init(&s->lock, NULL); /* cannot fail without attributes */
	s->fd = -EBADF;
	*ret = s;
	return 0;
}

void relayspawn_free(struct relayspawn *s) {
	if (!s)
		return;
	if (s->pid > 0)
		(void)kill(s->pid, SIGTERM); /* it also ends when the channel closes */
	safe_close(s->fd);
	free(s->runtime_dir);
	free(s);
}

int relayspawn_start(struct relayspawn *s) {
	int sv[2];
	pid_t pid;

	if (s->pid > 0 || (s->started_usec && now_usec() - s->started_usec < RESTART_MIN_USEC))
		return 0;
	s->started_usec = now_usec();
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return log_warning_errno(errno, "relay spawner: socketpair");
	if (sv[1] == CHANNEL_FD) {
		/* dup2 onto itself would keep O_CLOEXEC */
		int moved = fcntl(sv[1], F_DUPFD_CLOEXEC, CHANNEL_FD + 1);
		safe_close(sv[1]);
		sv[1] = moved;
	}
	const char *target = log_target_to_string(log_get_target());
	char path[PATH_MAX + 64], abi[64];
	bool helper = spawner_path(s, path, sizeof path);
	relayspawn_abi(abi, sizeof abi);
	char *argv[] = {helper ? RELAYSPAWN_HELPER : "tcpmapd",
	                RELAYSPAWN_ARG,
	                (char *)target,
	                s->runtime_dir,
	                abi,
	                NULL};
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none;
	sigemptyset(&none);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	int r = sv[1] < 0 ? errno : posix_spawn_file_actions_adddup2(&fa, sv[1], CHANNEL_FD);
	if (r == 0)
		r = posix_spawnattr_setsigmask(&attr, &none);
	if (r == 0)
		r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
	/* Every symbol bound once, in the spawner: lazily, each relay would look up again the
	 * functions of the relay path the spawner never called, and fault in a copy of the
	 * GOT page it writes them to. (The static helper has none to bind.) */
	size_t n_env = 0;
	while (environ[n_env])
		n_env++;
	char **envp = r == 0 ? calloc(n_env + 2, sizeof *envp) : NULL;
	if (r == 0 && !envp)
		r = ENOMEM;
	if (r == 0) {
		envp[0] = (char *)"LD_BIND_NOW=1";
		memcpy(envp + 1, environ, n_env * sizeof *envp);
	}
	if (r == 0)
		r = posix_spawn(&pid, path, &fa, &attr, argv, envp);
	free(envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	safe_close(sv[1]);
	if (r != 0) {
		safe_close(sv[0]);
		return log_warning_errno(r, "relay spawner: cannot start it");
	}
	uint64_t st = proclive_starttime(pid);
	pthread_mutex_lock(&s->lock);
	s->fd = sv[0];
	s->pid = pid;
	s->starttime = st;
	s->running_helper = helper;
	pthread_mutex_unlock(&s->lock);

	char p[16];
	snprintf(p, sizeof p, "%d", (int)pid);
	struct log_field f[] = {{"SPAWNER_PID", p}};
	log_event(LOG_INFO, TCPMAP_MID_LIFECYCLE, "relay_spawner_started", f, ELEMENTSOF(f),
	          "relay spawner %s started", p);
	return 1;
}

bool relayspawn_exited(struct relayspawn *s, pid_t pid, const char *how) {
	if (!s || pid <= 0 || pid != s->pid)
		return false;
	pthread_mutex_lock(&s->lock);
	s->fd = safe_close(s->fd);
	s->pid = 0;
	pthread_mutex_unlock(&s->lock);
	if (s->running_helper && now_usec() - s->started_usec < RESTART_MIN_USEC)
		s->helper_failed = true;

	char p[16];
	snprintf(p, sizeof p, "%d", (int)pid);
	struct log_field f[] = {{"SPAWNER_PID", p}, {"HOW", how}};
	log_event(LOG_WARNING, TCPMAP_MID_LIFECYCLE, "relay_spawner_died", f, ELEMENTSOF(f),
	          "relay spawner %s ended by %s: relay processes are forked by tcpmapd itself "
	          "until it is restarted",
	          p, how);
	return true;
}

int relayspawn_send(struct relayspawn *s, struct breaker_table *t, const struct relay_order *o,
                    int client_fd, int upstream_fd) {
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} control = {};
	struct iovec iov = {.iov_base = (void *)o, .iov_len = sizeof *o};
	struct msghdr msg = {.msg_iov = &iov,
	                     .msg_iovlen = 1,
	                     .msg_control = control.buf,
	                     .msg_controllen = sizeof control.buf};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	int fds[2] = {client_fd, upstream_fd}, r = 0;

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof fds);
	memcpy(CMSG_DATA(cm), fds, sizeof fds);

	pthread_mutex_lock(&s->lock);
	if (s->fd < 0)
		r = -ENOTCONN;
	else if (o->slot && breaker_table_give(t, o->slot, s->pid, s->starttime) < 0)
		r = -ESTALE; /* reclaimed meanwhile: let the caller's own path say so */
	else if (sendmsg(s->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		r = -errno;
		if (o->slot)
			(void)breaker_table_adopt(t, o->slot); /* ours again: it never left */
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* ---- the spawner ---- */

struct spawner {
	struct breaker_table *breakers;
	relayspawn_relay_fn relay;
	int signal_fd;
	int taken[2]; /* a child that took a connection writes its pid here */
	pid_t standby[STANDBY];
	size_t n_standby;
	pid_t self;
};

static void forget_standby(struct spawner *z, pid_t pid) {
	for (size_t i = 0; i < z->n_standby; i++)
		if (z->standby[i] == pid) {
			z->standby[i] = z->standby[--z->n_standby];
			return;
		}
}

static bool receive_order(int chan, struct relay_order *o, int fds[2]) {
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = {.iov_base = o, .iov_len = sizeof *o};

	for (;;) {
		struct msghdr msg = {.msg_iov = &iov,
		                     .msg_iovlen = 1,
		                     .msg_control = control.buf,
		                     .msg_controllen = sizeof control.buf};
		ssize_t n = recvmsg(chan, &msg, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false; /* the dispatcher is gone */
		int got = 0;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
				got = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
				memcpy(fds, CMSG_DATA(cm), MIN(got, 2) * sizeof(int));
			}
		if (n == sizeof *o && got == 2 && o->magic == RELAY_ORDER_MAGIC &&
		    !(msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
			o->mapping[sizeof o->mapping - 1] = 0;
			o->service[sizeof o->service - 1] = 0;
			o->sni[sizeof o->sni - 1] = 0;
			return true;
		}
		for (int i = 0; i < MIN(got, 2); i++)
			safe_close(fds[i]);
		log_warning("relay spawner: a malformed order, ignored");
	}
}

/* A standby child: wait for one connection, then be its relay. */
static _Noreturn void standby_run(struct spawner *z) {
	struct relay_order o;
	int fds[2];

	safe_close(z->signal_fd);
	safe_close(z->taken[0]);
	/* a standby dies with the spawner; a relay, once it has its connection, does not */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != z->self)
		_exit(0);
	uint64_t starttime;
	/* read and cached now, not once it has a connection; the relay asks it again, for
	 * its log line and its slot, at no system call */
	pid_t self = proclive_self(&starttime);
	if (!receive_order(CHANNEL_FD, &o, fds))
		_exit(0);
	(void)prctl(PR_SET_PDEATHSIG, 0);
	ssize_t _unused_ n = write(z->taken[1], &self, sizeof self);
	safe_close(z->taken[1]);
	safe_close(CHANNEL_FD);
	z->relay(z->breakers, &o, fds[0], fds[1]);
	_exit(1);
}

static int fork_standby(struct spawner *z) {
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0)
		standby_run(z);
	z->standby[z->n_standby++] = pid;
	return 0;
}

static void reap(struct spawner *z) {
	bool died = false;

	for (;;) {
		siginfo_t info = {};
		if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG) < 0 || info.si_pid == 0)
			break;
		forget_standby(z, info.si_pid);
		if (info.si_code == CLD_EXITED && info.si_status == 0)
			continue;
		char pid[16], how[32];
		snprintf(pid, sizeof pid, "%d", (int)info.si_pid);
		describe_child_exit(info.si_code, info.si_status, how, sizeof how);
		struct log_field f[] = {{"RELAY_PID", pid}, {"HOW", how}};
		log_event(LOG_WARNING, TCPMAP_MID_LIFECYCLE, "relay_died", f, ELEMENTSOF(f),
		          "relay process %s ended by %s: its connection is gone", pid, how);
		died = true;
	}
	if (died)
		(void)breaker_table_reap(z->breakers); /* best effort: tcpmapd's tick reaps too */
}

/* What the spawner holds, released on its way out (a sanitizer build checks for leaks). */
static void spawner_done(struct spawner *z) {
	breaker_table_close(z->breakers);
	z->breakers = NULL;
	z->signal_fd = safe_close(z->signal_fd);
	z->taken[0] = safe_close(z->taken[0]);
	z->taken[1] = safe_close(z->taken[1]);
}

void relayspawn_abi(char *buf, size_t size) {
	snprintf(buf, size, "%s/%zu/%x", TCPMAP_VERSION, sizeof(struct relay_order),
	         RELAY_ORDER_MAGIC);
}

int relayspawn_main(const char *runtime_dir, const char *abi, relayspawn_relay_fn relay) {
	struct spawner z = {
	        .relay = relay, .signal_fd = -EBADF, .taken = {-EBADF, -EBADF}, .self = getpid()};
	sigset_t mask;
	int r, dir_fd = -EBADF;
	char own[64];

	relayspawn_abi(own, sizeof own);
	if (!streq(abi, own))
		return log_error_errno(EPROTO, "relay spawner: built as %s, tcpmapd sends %s", own,
		                       abi);

	/* nothing of the dispatcher but the channel: whatever else lacked O_CLOEXEC */
	(void)close_range(CHANNEL_FD + 1, ~0U, 0);
	(void)unsetenv("LD_BIND_NOW"); /* done its work at start; a relay's environment is ours */
	(void)prctl(PR_SET_NAME, RELAYSPAWN_COMM);
	(void)prctl(PR_SET_PDEATHSIG, SIGTERM); /* the channel's hang-up says it too */
	(void)signal(SIGPIPE, SIG_IGN);
	uint64_t starttime;
	(void)proclive_self(&starttime); /* its once-only setup done here, not in each child */
	r = rundir_open(runtime_dir, true, &dir_fd);
	if (r >= 0)
		r = breaker_table_open(dir_fd, &z.breakers);
	safe_close(dir_fd);
	if (r < 0)
		return log_error_errno(r, "relay spawner: breaker table in %s", runtime_dir);

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	/* blocked in the relays too: their loops take SIGTERM and SIGINT by signalfd */
	(void)sigprocmask(SIG_BLOCK, &mask, NULL);
	z.signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (log_get_target() == LOG_TARGET_JOURNAL)
		(void)journal_open(); /* once, for every relay: each inherits it */
	if (z.signal_fd < 0 || pipe2(z.taken, O_CLOEXEC | O_NONBLOCK) < 0) {
		r = log_error_errno(errno, "relay spawner: setting up");
		spawner_done(&z);
		return r;
	}

	for (;;) {
		int timeout = -1;
		while (z.n_standby < STANDBY)
			if ((r = fork_standby(&z)) < 0) {
				log_warning_errno(r, "relay spawner: cannot fork");
				timeout = FORK_RETRY_MS;
				break;
			}
		struct pollfd p[] = {{.fd = CHANNEL_FD, .events = 0},
		                     {.fd = z.signal_fd, .events = POLLIN},
		                     {.fd = z.taken[0], .events = POLLIN}};
		if (poll(p, ELEMENTSOF(p), timeout) < 0 && errno != EINTR)
			break;
		if (p[0].revents & (POLLHUP | POLLERR))
			break; /* tcpmapd is gone */
		if (p[2].revents & POLLIN) {
			pid_t taken[64];
			ssize_t n;
			while ((n = read(z.taken[0], taken, sizeof taken)) > 0)
				for (size_t i = 0; i < (size_t)n / sizeof *taken; i++)
					forget_standby(&z, taken[i]);
		}
		if (p[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			bool stop = false;
			while (read(z.signal_fd, &si, sizeof si) == sizeof si)
				if (si.ssi_signo != SIGCHLD)
					stop = true;
			reap(&z);
			if (stop)
				break;
		}
	}
	/* the relays go on: each ends its own connection (systemd signals them on a stop) */
	for (size_t i = 0; i < z.n_standby; i++)
		(void)kill(z.standby[i], SIGKILL);
	spawner_done(&z);
	return 0;
}
