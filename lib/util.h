/* util.h — scope-bound cleanup and small helpers shared by every file.
 *
 * An fd variable that holds nothing holds -EBADF; destructors accept "nothing"
 * and return it, so `fd = safe_close(fd)` and `p = mfree(p)` leave no dangling value. */
#pragma once

#include <stddef.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _likely_(x) __builtin_expect(!!(x), 1)
#define _unlikely_(x) __builtin_expect(!!(x), 0)

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline int safe_close(int fd) {
	if (fd >= 0) {
		int saved = errno;
		close(fd);
		errno = saved;
	}
	return -EBADF;
}

static inline void *mfree(void *p) {
	free(p);
	return NULL;
}

static inline void closep(int *fd) { safe_close(*fd); }
static inline void freep(void *p) { free(*(void **)p); }
static inline void fclosep(FILE **f) {
	if (*f)
		fclose(*f);
}

#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_fclose_ _cleanup_(fclosep)

/* Hand ownership out of a cleanup-scoped variable. */
#define TAKE_PTR(p)                                                                                \
	({                                                                                         \
		__typeof__(p) _tp = (p);                                                           \
		(p) = NULL;                                                                        \
		_tp;                                                                               \
	})
#define TAKE_FD(fd)                                                                                \
	({                                                                                         \
		int _tf = (fd);                                                                    \
		(fd) = -EBADF;                                                                     \
		_tf;                                                                               \
	})

static inline bool streq(const char *a, const char *b) { return strcmp(a, b) == 0; }
static inline bool streq_ptr(const char *a, const char *b) {
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

/* NULL-terminated string vectors. strv_push takes ownership of `s` (freed on failure) and
 * keeps *n and the terminating NULL right. */
void strv_free(char **v);
static inline void strv_freep(char ***v) { strv_free(*v); }
int strv_push(char ***v, size_t *n, char *s);

/* Monotonic clock in milliseconds / microseconds. */
uint64_t now_ms(void);
uint64_t now_usec(void);

/* Parse a decimal unsigned integer in [min, max]; the whole string must be digits.
 * Returns 0, -EINVAL (not a number) or -ERANGE. */
int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret);

/* A mutex that lives in a shared mapping and survives its holder's death (the next locker
 * gets EOWNERDEAD instead of waiting forever). Returns 0 or a negative errno. */
int mutex_init_shared_robust(void *mutex);

/* How a child ended (waitid's si_code and si_status), for a log line: "exit status N" or
 * "signal NAME". */
void describe_child_exit(int code, int status, char *buf, size_t size);

/* Where tcpmapd's companion files (its TLS module, its relay spawner) are looked for, place by
 * place: 0, beside the running executable (a build tree); 1, ../lib/tcpmap/ from it (`make
 * install`: PREFIX/sbin and PREFIX/lib/tcpmap). Only those two, never a search path that an
 * environment could change. Writes place `place`'s path of `name` into buf. Returns 0,
 * -ERANGE past the last place, or a negative errno when this executable cannot be found. */
int companion_path(const char *name, unsigned place, char *buf, size_t size);
