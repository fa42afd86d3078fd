/* util.c — the few helpers every other file needs; nothing here knows about tcpmap itself. */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

uint64_t now_usec(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t now_ms(void) { return now_usec() / 1000u; }

int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
	uint64_t v = 0;

	if (!s || !*s)
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		if (v > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

void strv_free(char **v) {
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

int strv_push(char ***v, size_t *n, char *s) {
	if (!s)
		return -ENOMEM;
	char **nv = realloc(*v, (*n + 2) * sizeof(char *));
	if (!nv) {
		free(s);
		return -ENOMEM;
	}
	nv[(*n)++] = s;
	nv[*n] = NULL;
	*v = nv;
	return 0;
}

int mutex_init_shared_robust(void *mutex) {
	pthread_mutexattr_t attr;
	int r = pthread_mutexattr_init(&attr);

	if (r)
		return -r;
	r = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	if (!r)
		r = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	if (!r)
		r = pthread_mutex_init(mutex, &attr);
	(void)pthread_mutexattr_destroy(&attr); /* never fails for an initialised attr */
	return -r;
}

void describe_child_exit(int code, int status, char *buf, size_t size) {
	if (code == CLD_EXITED)
		snprintf(buf, size, "exit status %d", status);
	else
		snprintf(buf, size, "signal %s", sigabbrev_np(status) ?: "?");
}

int companion_path(const char *name, unsigned place, char *buf, size_t size) {
	char exe[PATH_MAX];

	if (place > 1)
		return -ERANGE;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return n < 0 ? -errno : -ENOENT;
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	if (slash)
		*slash = '\0';
	if (snprintf(buf, size, place == 0 ? "%s/%s" : "%s/../lib/tcpmap/%s", exe, name) >=
	    (int)size)
		return -ENAMETOOLONG;
	return 0;
}
