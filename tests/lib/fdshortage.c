/* fdshortage.c — an LD_PRELOAD shim for hostile-clients.bats: while the file named by
 * $TCPMAP_TEST_FD_SHORTAGE exists, the process behaves as if out of fds where it accepts:
 * accept4() and open("/", O_DIRECTORY...) (tcpmapd's reserve fd) fail with EMFILE. Then
 * spending the reserve frees nothing and tcpmapd must pause accepting; the test removes the
 * file and checks that accepting resumes. A real shortage cannot reach that pause on demand:
 * the last free fd is taken by accept() and given back when the upstream socket fails.
 * It must never change any other call, or these two while the file is absent. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

typedef int (*open_fn)(const char *, int, ...);
typedef int (*accept4_fn)(int, struct sockaddr *, socklen_t *, int);

static int short_of_fds(void) {
	const char *flag = getenv("TCPMAP_TEST_FD_SHORTAGE");
	return flag && access(flag, F_OK) == 0;
}

static int call_open(const char *name, const char *path, int flags, va_list ap) {
	mode_t mode = 0;
	if (flags & (O_CREAT | O_TMPFILE))
		mode = (mode_t)va_arg(ap, int);
	if (path && strcmp(path, "/") == 0 && (flags & O_DIRECTORY) && short_of_fds()) {
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
	int r = call_open("open", path, flags, ap);
	va_end(ap);
	return r;
}

int open64(const char *path, int flags, ...) {
	va_list ap;
	va_start(ap, flags);
	int r = call_open("open64", path, flags, ap);
	va_end(ap);
	return r;
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
	if (short_of_fds()) {
		errno = EMFILE;
		return -1;
	}
	accept4_fn real = (accept4_fn)dlsym(RTLD_NEXT, "accept4");
	if (!real) {
		errno = ENOSYS;
		return -1;
	}
	return real(fd, addr, len, flags);
}
