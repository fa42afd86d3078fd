/* proclive.c — process liveness through /proc: our own identity, and whether a recorded
 * owner still lives. See proclive.h.
 *
 * It must never decide that a live process is gone on uncertain evidence (a hidden /proc,
 * an unknown start time): the breaker table would then free capacity still in use. It
 * keeps no state besides this process's own identity, and knows nothing of the table. */
#include "proclive.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "util.h"

/* State (field 3) and start time (field 22) of /proc/PID/stat. The command name (field 2)
 * may hold spaces and parentheses, so fields are counted from its last ')'. */
static int proc_stat_read(pid_t pid, char *ret_state, uint64_t *ret_starttime) {
	char path[64], buf[1024];
	_cleanup_close_ int fd = -EBADF;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';

	char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return -EIO;
	p += 2;
	char state = *p;
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (!p)
			return -EIO;
		p++;
	}
	char *end;
	errno = 0;
	unsigned long long st = strtoull(p, &end, 10);
	if (errno || end == p)
		return -EIO;
	*ret_state = state;
	*ret_starttime = st;
	return 0;
}

/* A child of fork() starts over (the atfork handler), so a forked process never records
 * its parent's identity. */
static _Atomic pid_t self_pid; /* 0: not known yet */
static _Atomic uint64_t self_starttime;
static pthread_once_t self_once = PTHREAD_ONCE_INIT;

static void self_forget(void) { atomic_store(&self_pid, 0); }
/* pthread_atfork fails only with ENOMEM; a process that cannot register the handler can
 * do nothing better than go on, as it always did. */
static void self_watch_forks(void) { (void)pthread_atfork(NULL, NULL, self_forget); }

pid_t proclive_self(uint64_t *ret_starttime) {
	/* pthread_once fails only for an invalid once control, which a static one is not */
	(void)pthread_once(&self_once, self_watch_forks);
	pid_t pid = atomic_load(&self_pid);
	if (pid == 0) {
		/* threads racing here compute the same values */
		char state;
		uint64_t st = 0;
		pid = getpid();
		if (proc_stat_read(pid, &state, &st) < 0)
			st = 0; /* no /proc: stale detection falls back to pid liveness */
		atomic_store(&self_starttime, st);
		atomic_store(&self_pid, pid);
	}
	*ret_starttime = atomic_load(&self_starttime);
	return pid;
}

uint64_t proclive_starttime(pid_t pid) {
	char state;
	uint64_t st = 0;

	if (pid <= 0 || proc_stat_read(pid, &state, &st) < 0)
		return 0;
	return st;
}

static struct proclive_probe probe(pid_t pid) {
	struct proclive_probe p = {.pid = pid};
	char state;

	if (pid <= 0) {
		p.gone = true;
		return p;
	}
	/* kill() sees processes that hidepid=/ProtectProc= hide from /proc; EPERM means alive. */
	if (kill(pid, 0) < 0 && errno == ESRCH) {
		p.gone = true;
		return p;
	}
	int r = proc_stat_read(pid, &state, &p.starttime);
	if (r < 0)
		/* kill() said it lives; /proc hiding it (ProtectProc=invisible in another
		 * instance's unit) only means its start time is unknown, not that it is gone */
		p.starttime = 0;
	else if (state == 'Z' || state == 'X') /* killed but not yet waited for */
		p.gone = true;
	return p;
}

static bool probe_says_stale(const struct proclive_probe *p, uint64_t recorded_starttime) {
	if (p->gone)
		return true;
	/* A live process with another start time reused the pid. Unknown on either side
	 * (slot still being claimed, or /proc unreadable) means we cannot tell: keep it. */
	return recorded_starttime != 0 && p->starttime != 0 && p->starttime != recorded_starttime;
}

bool proclive_owner_is_stale(struct proclive_cache *cache, pid_t pid, uint64_t recorded_starttime) {
	uint64_t self_st;
	pid_t self = proclive_self(&self_st);

	if (pid == self)
		return recorded_starttime != 0 && self_st != 0 && recorded_starttime != self_st;
	if (!cache) {
		struct proclive_probe p = probe(pid);
		return probe_says_stale(&p, recorded_starttime);
	}
	struct proclive_probe *c = &cache->items[(uint32_t)pid % PROCLIVE_CACHE_SIZE];
	if (c->pid != pid)
		*c = probe(pid);
	return probe_says_stale(c, recorded_starttime);
}
