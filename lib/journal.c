/* journal.c — journald's native protocol; see journal.h. Must never write a partial entry,
 * and never log itself (log.c is its caller). */
#include "journal.h"

#include <endian.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <sys/un.h>
#include <unistd.h>

#include "util.h"

/* An entry's longest: log.c builds each in a 4 KiB line, and the binary form adds 9 bytes
 * to a field at most. */
#define JOURNAL_ENTRY_MAX 8192

ssize_t journal_entry_format(const struct iovec *fields, size_t n, char *buf, size_t size) {
	size_t len = 0;

	for (size_t i = 0; i < n; i++) {
		const char *f = fields[i].iov_base;
		size_t flen = fields[i].iov_len;
		const char *eq = memchr(f, '=', flen);
		if (!eq || eq == f)
			return -EINVAL;
		size_t klen = (size_t)(eq - f), vlen = flen - klen - 1;
		const char *value = eq + 1;
		bool binary = memchr(value, '\n', vlen) != NULL;
		size_t need = binary ? klen + 1 + 8 + vlen + 1 : flen + 1;
		if (need > size - len)
			return -ENOBUFS;
		if (!binary) {
			memcpy(buf + len, f, flen);
			len += flen;
		} else {
			uint64_t le = htole64((uint64_t)vlen);
			memcpy(buf + len, f, klen);
			len += klen;
			buf[len++] = '\n';
			memcpy(buf + len, &le, sizeof le);
			len += sizeof le;
			memcpy(buf + len, value, vlen);
			len += vlen;
		}
		buf[len++] = '\n';
	}
	return (ssize_t)len;
}

/* The send buffer libsystemd asks for too: a burst of entries waits in it rather than
 * blocking the sender while journald is busy. */
#define JOURNAL_SNDBUF (8 * 1024 * 1024)

/* The socket, opened once: a thread that loses the race closes its own. */
static atomic_int shared = -1;

int journal_open(void) {
	int fd = atomic_load(&shared);

	if (fd >= 0)
		return fd;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int sndbuf = JOURNAL_SNDBUF;
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf); /* best effort */
	int expected = -1;
	if (!atomic_compare_exchange_strong(&shared, &expected, fd)) {
		close(fd);
		return expected;
	}
	return fd;
}

int journal_send(const struct iovec *fields, size_t n) {
	static const struct sockaddr_un addr = {.sun_family = AF_UNIX, .sun_path = JOURNAL_SOCKET};
	char buf[JOURNAL_ENTRY_MAX];
	ssize_t len = journal_entry_format(fields, n, buf, sizeof buf);
	int fd = journal_open();

	if (len < 0)
		return (int)len;
	if (fd < 0)
		return fd;
	if (sendto(fd, buf, (size_t)len, MSG_NOSIGNAL, (const struct sockaddr *)&addr,
	           sizeof addr) < 0)
		return -errno;
	return 0;
}

int journal_open_own(void) {
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int old = atomic_exchange(&shared, fd);
	if (old >= 0)
		close(old); /* this process's copy only: the parent keeps its own */
	return fd;
}

/* Until journald reads a datagram it stays charged to the sending socket, so SIOCOUTQ
 * falling to 0 says every entry sent on it (by this process, or by another one sharing the
 * socket) has been read. journald then reads the sender's cgroup from /proc/PID: the grace
 * covers that step, which must happen before the sender is reaped. */
#define JOURNAL_READ_GRACE_NS (5 * 1000 * 1000)

void journal_wait_taken(unsigned max_ms) {
	static const struct timespec ms = {.tv_nsec = 1000 * 1000},
	                             grace = {.tv_nsec = JOURNAL_READ_GRACE_NS};
	int fd = atomic_load(&shared), queued = 0;

	if (fd < 0)
		return; /* nothing was ever sent */
	for (unsigned i = 0; i < max_ms; i++) {
		if (ioctl(fd, SIOCOUTQ, &queued) < 0 || queued == 0)
			break;
		(void)nanosleep(&ms, NULL);
	}
	if (queued == 0)
		(void)nanosleep(&grace, NULL);
}
