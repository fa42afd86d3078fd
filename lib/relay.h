/* relay.h — moving bytes between two connected sockets, keeping half-close: a FIN from one
 * side becomes shutdown(SHUT_WR) on the other once everything before it has been delivered.
 *
 * Small messages are copied (one recv, one send); once a read fills the copy buffer the
 * direction switches to splice(2) through a pipe until it drains. A handshake's or a
 * request's few hundred bytes so cost no pipe and no page references, and bulk costs no
 * copy.
 *
 * It knows nothing of event loops, YAML or TLS: the caller calls relay_pump() whenever
 * either socket may have become readable or writable. Edge-triggered is fine: the pump
 * runs until both directions are blocked, or, where the caller allows it
 * (short_read_drains), until a read shows its socket drained. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct relay_direction {
	int from, to;
	int pipe_r, pipe_w; /* -EBADF until the first byte needs them */
	uint64_t in_pipe;   /* bytes read from `from` not yet written to `to` */
	/* What the pipe holds at most (F_GETPIPE_SZ), 0 while unknown: a full pipe is not
	 * spliced into, since the call could only say EAGAIN. */
	uint32_t pipe_size;
	uint64_t bytes; /* bytes delivered to `to` */
	bool eof;       /* read 0 from `from` */
	bool shut;      /* shutdown(to, SHUT_WR) done */
	bool splicing;  /* a read filled the copy buffer: splice until `from` drains */
	/* Set by an edge-triggered caller while no hang-up has been seen on `from`: a read
	 * that returns less than asked has then drained it, because anything arriving later
	 * raises a new event, and the pump skips the read that could only say EAGAIN. A FIN
	 * queued behind the bytes is the exception, hence the caller's hang-up check. */
	bool short_read_drains;
};

struct relay {
	struct relay_direction up;   /* client -> upstream */
	struct relay_direction down; /* upstream -> client */
};

enum {
	RELAY_PROGRESS = 1 << 0, /* some byte moved, or an EOF was seen */
	RELAY_DONE = 1 << 1,     /* both directions finished: close both sockets; the close
	                          * sends the last FIN, which no shutdown() has */
};

void relay_init(struct relay *r, int client_fd, int upstream_fd);
/* Move what can move now. Returns a mask of RELAY_* flags, or -errno on a hard error of
 * either socket (reset, broken pipe): the caller then closes both. */
int relay_pump(struct relay *r);
/* The same for one direction or both: an event on one socket concerns only the direction
 * reading from it (readable) and the one writing to it (writable); pumping the other costs
 * a read that can only say EAGAIN. */
int relay_pump_some(struct relay *r, bool up, bool down);
/* What a relay carries from one process to the next (hand-over): per direction the bytes
 * counted, the bytes still in its pipe with the pipe's ends (-EBADF when it holds none),
 * and the half-close state. */
struct relay_direction_state {
	uint64_t bytes, in_pipe;
	int pipe_r, pipe_w;
	bool eof, shut;
};
struct relay_state {
	struct relay_direction_state up, down;
};
/* Describe the relay for a hand-over; the pipe ends named stay the relay's. */
void relay_export(const struct relay *r, struct relay_state *ret);
/* Set up a relay between two sockets from a previous process's state, taking ownership of
 * the pipe ends in it. */
void relay_import(struct relay *r, int client_fd, int upstream_fd, const struct relay_state *s);
/* The direction's pipe is full: reading its source can wait until the pipe drains, which
 * only the destination turning writable can make happen. An edge-triggered caller may stop
 * watching the source for input meanwhile: each byte the sender adds would otherwise wake
 * it for nothing. */
bool relay_direction_full(const struct relay_direction *d);
/* Close the pipes (not the sockets); a pipe with bytes in it is never reused. */
void relay_release(struct relay *r);
/* A process forked for one connection closed the pooled pipes it inherited with the rest
 * of its parent's fds: forget their numbers, which the child's own fds will reuse. */
void relay_pool_forget(void);
/* Return a direction's pipe to the pool when it is empty, so idle connections hold none. */
void relay_trim(struct relay *r);
