/* noreserve.c — an LD_PRELOAD shim for hostile-clients.bats: while the file named by
 * $TCPMAP_TEST_NO_RESERVE exists, open("/", O_DIRECTORY...) fails with EMFILE, so tcpmapd
 * cannot take back the reserve fd it spends when out of fds and must pause accepting
 * instead. That pause, and accepting again after it, is otherwise never reached by a test.
 * It must never change any other open(). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

typedef int (*open_fn)(const char *, int, ...);

static int refused(const char *path, int flags) {
	const char *flag = getenv("TCPMAP_TEST_NO_RESERVE");
	return flag && path && strcmp(path, "/") == 0 && (flags & O_DIRECTORY) &&
	       access(flag, F_OK) == 0;
}

static int call(const char *name, const char *path, int flags, va_list ap) {
	mode_t mode = 0;
	if (flags & (O_CREAT | O_TMPFILE))
		mode = (mode_t)va_arg(ap, int);
	if (refused(path, flags)) {
		errno = EMFILE;
		return -1;
	}
	open_fn real = (open_fn)dlsym(RTLD_NEXT, name);
	if (!real) {
		errno = ENOSYS;
		return -1;
	}
	return real(path, flags, mode);
}

int open(const char *path, int flags, ...) {
	va_list ap;
	va_start(ap, flags);
	int r = call("open", path, flags, ap);
	va_end(ap);
	return r;
}

int open64(const char *path, int flags, ...) {
	va_list ap;
	va_start(ap, flags);
	int r = call("open64", path, flags, ap);
	va_end(ap);
	return r;
}
