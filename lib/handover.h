/* handover.h — the state record that lets a spliced connection move from one tcpmapd to the
 * next through systemd's fd store (FDSTORE=1), across `systemctl restart` or an upgrade.
 *
 * The sockets and pipes travel as fds named after the connection; everything else a new
 * process needs (mapping, breaker slot, byte counts, idle deadline, half-close state) travels
 * in fixed-size records in a memfd. Pure encoding and parsing here: no sockets, no sd_notify. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "relay.h"

#define HANDOVER_MAGIC 0x54434d48u /* "TCMH" */
#define HANDOVER_VERSION 1
#define HANDOVER_STATE_PREFIX "tcpmap-state."

enum handover_fd_kind {
	HANDOVER_FD_CLIENT,
	HANDOVER_FD_UPSTREAM,
	HANDOVER_FD_UP_READ, /* client->upstream pipe, read end */
	HANDOVER_FD_UP_WRITE,
	HANDOVER_FD_DOWN_READ,
	HANDOVER_FD_DOWN_WRITE,
	_HANDOVER_FD_MAX,
};

struct handover_record {
	uint32_t magic;
	uint32_t version;
	char id[32];       /* "<pid>-<n>": unique across generations */
	char mapping[256]; /* the mapping's name; the new config must still have it */
	char sni[256];
	uint32_t slot; /* breaker slot, re-owned by the new process */
	uint32_t flags;
	uint64_t bytes_in, bytes_out;
	uint64_t in_pipe_up, in_pipe_down;
	uint64_t idle_remaining_ms; /* UINT64_MAX: no idle timeout */
	uint64_t started_realtime_ms;
	struct sockaddr_storage client_addr, local_addr, upstream_addr;
	uint32_t client_addr_len, local_addr_len, upstream_addr_len;
	uint32_t reserved;
};

enum {
	HANDOVER_UP_EOF = 1 << 0,
	HANDOVER_UP_SHUT = 1 << 1,
	HANDOVER_DOWN_EOF = 1 << 2,
	HANDOVER_DOWN_SHUT = 1 << 3,
	/* Accepted but not yet relaying, nothing read from the client (the hello is only
	 * peeked at) and no TLS: the next process starts it over from the client's socket
	 * alone, as if it had just accepted it. Only the client fd travels; no slot, no bytes. */
	HANDOVER_UNSTARTED = 1 << 4,
};

/* The FDNAME for one of a connection's fds: "c<id>.client", "c<id>.upr", ... */
int handover_fd_name(const char *id, enum handover_fd_kind kind, char *buf, size_t size);

/* Parse an FDNAME. Returns 0 with the id and kind, -EINVAL when the name is not one of ours
 * (a listening socket's name, say). Pure. */
int handover_parse_fd_name(const char *name, char *id, size_t id_size, enum handover_fd_kind *kind);

/* Is this FDNAME one of our state memfds? */
bool handover_is_state_name(const char *name);

/* Check a record read from a state memfd: magic, version, NUL-terminated strings, address
 * lengths within bounds, and consistent flags (shut implies eof; a pipe with bytes in it
 * on a direction already shut is impossible). Returns 0 or -EINVAL. Pure. */
int handover_record_validate(const struct handover_record *r);

/* A relay's state into a record and back (pipe ends travel as fds, not in the record). */
void handover_record_set_relay(struct handover_record *r, const struct relay_state *s);
/* The relay state a record describes, with the pipe ends taken from `fds` (set to -EBADF
 * there). Pure. */
void handover_record_get_relay(const struct handover_record *r, int fds[_HANDOVER_FD_MAX],
                               struct relay_state *ret);
