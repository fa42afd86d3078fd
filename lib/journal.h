/* journal.h — an entry for journald, sent in its native protocol (a datagram to
 * /run/systemd/journal/socket), without libsystemd: the relay spawner is linked with
 * nothing but libc so that each relay it forks copies little (issue 20).
 *
 * The datagram holds one field after another: "KEY=value\n" when the value has no newline,
 * else "KEY\n", the value's length as 64-bit little-endian, the value and "\n" (the
 * protocol's binary-safe form). Unlike sd_journal_sendv it never passes an oversized
 * entry through a memfd: tcpmap's entries are a few hundred bytes, and one too big for a
 * datagram fails, for the caller to log elsewhere. */
#pragma once

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#define JOURNAL_SOCKET "/run/systemd/journal/socket"

/* Serialise `n` fields, each "KEY=value" (as sd_journal_sendv takes them), into `buf`.
 * Returns the entry's length; -EINVAL for a field with no '=' or an empty key, -ENOBUFS
 * when it does not fit in `size`. Pure. */
ssize_t journal_entry_format(const struct iovec *fields, size_t n, char *buf, size_t size);

/* Open the socket now (a process about to fork children that log opens it once for all of
 * them). Returns its fd, or -errno. */
int journal_open(void);
/* In a forked child that will wait for its own entries (journal_wait_taken): a socket of
 * its own in place of the one it inherited, whose queue other processes share. Returns its
 * fd, or -errno (the inherited one is then kept). */
int journal_open_own(void);
/* Send one entry to journald. Thread-safe; the socket is opened at the first call and kept
 * (O_CLOEXEC; relayfork.c keeps it in a forked relay). Returns 0 or -errno. */
int journal_send(const struct iovec *fields, size_t n);

/* Before a short-lived process exits: wait (at most `max_ms`) until journald has read every
 * entry sent on the socket, and a moment more. journald learns an entry's unit
 * (_SYSTEMD_UNIT, what `journalctl -u` matches) from the sender's /proc/PID, which is gone
 * once the process is reaped: without the wait, the last entry of a process that exits at
 * once (a relay's close entry) is sometimes stored without its unit. Returns at once when
 * nothing was ever sent. */
void journal_wait_taken(unsigned max_ms);
