/* relay.c — copy and splice pump; see relay.h. Must never lose a byte: a copied read is
 * sent at once and what the send leaves is parked in the pipe before the pump returns, so
 * no byte outlives the call in user memory; a FIN is forwarded only once the pipe is empty. */
#include "relay.h"

#include <fcntl.h>
#include <sys/socket.h>

#include "util.h"

/* systemd-socket-proxyd's bulk lead comes from large pipes; 256 KiB lets one splice move a
 * burst without a round trip through the event loop. Pages are only used while data sits
 * in the pipe. */
#define RELAY_PIPE_SIZE (256 * 1024)

/* No more than an empty pipe is sure to take in one write: two pages, which is what the
 * kernel gives a new pipe once the user's pipe quota is spent. */
#define RELAY_COPY_MAX 8192
static __thread uint8_t copy_buf[RELAY_COPY_MAX];

/* Empty pipes kept per thread for reuse: an idle connection then holds no pipe at all. */
#define PIPE_POOL_MAX 64
static __thread struct pooled_pipe {
	int rd, wr;
	uint32_t size;
} pipe_pool[PIPE_POOL_MAX];
static __thread int pipe_pool_n;

void relay_pool_forget(void) { pipe_pool_n = 0; }

/* The pipe's capacity, or 0 when it cannot be told (then every splice into it is tried). */
static uint32_t pipe_size_of(int fd) {
	int n = fcntl(fd, F_GETPIPE_SZ);
	return n > 0 ? (uint32_t)n : 0;
}

/* Give the direction a pipe unless it has one: from the pool, else a new one. */
static int direction_pipe(struct relay_direction *d) {
	int p[2];

	if (d->pipe_r >= 0)
		return 0;
	if (pipe_pool_n > 0) {
		pipe_pool_n--;
		d->pipe_r = pipe_pool[pipe_pool_n].rd;
		d->pipe_w = pipe_pool[pipe_pool_n].wr;
		d->pipe_size = pipe_pool[pipe_pool_n].size;
		return 0;
	}
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
		return -errno;
	/* best effort: pipe-max-size or the user's pipe quota may leave it smaller; the call
	 * says what the pipe got */
	int size = fcntl(p[1], F_SETPIPE_SZ, RELAY_PIPE_SIZE);
	d->pipe_r = p[0];
	d->pipe_w = p[1];
	d->pipe_size = size > 0 ? (uint32_t)size : pipe_size_of(p[1]);
	return 0;
}

/* Only an empty pipe may go back to the pool: a pooled pipe must never carry one
 * connection's bytes into another. */
static void pipe_put(struct relay_direction *d, bool empty) {
	if (d->pipe_r < 0)
		return;
	if (empty && pipe_pool_n < PIPE_POOL_MAX) {
		pipe_pool[pipe_pool_n] = (struct pooled_pipe){
		        .rd = d->pipe_r, .wr = d->pipe_w, .size = d->pipe_size};
		pipe_pool_n++;
	} else {
		safe_close(d->pipe_r);
		safe_close(d->pipe_w);
	}
	d->pipe_r = d->pipe_w = -EBADF;
	d->pipe_size = 0;
}

static void direction_init(struct relay_direction *d, int from, int to) {
	*d = (struct relay_direction){.from = from, .to = to, .pipe_r = -EBADF, .pipe_w = -EBADF};
}

void relay_init(struct relay *r, int client_fd, int upstream_fd) {
	direction_init(&r->up, client_fd, upstream_fd);
	direction_init(&r->down, upstream_fd, client_fd);
}

static bool is_soft_error(int e) { return e == EAGAIN || e == EINTR; }

/* One recv and one send through the thread's buffer, for a direction whose pipe is empty.
 * Returns the bytes read, 0 at EOF, or -errno (-EAGAIN: nothing to read). What the send
 * leaves goes into the pipe, behind which every later byte then queues. */
static ssize_t direction_copy(struct relay_direction *d) {
	ssize_t n = recv(d->from, copy_buf, sizeof copy_buf, MSG_DONTWAIT);
	if (n <= 0)
		return n < 0 ? -errno : 0;
	ssize_t sent = send(d->to, copy_buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (sent < 0) {
		if (!is_soft_error(errno))
			return -errno;
		sent = 0;
	}
	d->bytes += (uint64_t)sent;
	if (sent < n) {
		int e = direction_pipe(d);
		if (e < 0)
			return e;
		ssize_t w = write(d->pipe_w, copy_buf + sent, (size_t)(n - sent));
		if (w < 0)
			return -errno;
		if (w != n - sent)
			return -ENOBUFS; /* an empty pipe takes RELAY_COPY_MAX: never seen */
		d->in_pipe += (uint64_t)w;
	}
	return n;
}

/* The pipe holds all it can: a splice into it could only say EAGAIN. */
static bool direction_pipe_full(const struct relay_direction *d) {
	return d->pipe_size > 0 && d->in_pipe >= d->pipe_size;
}

bool relay_direction_full(const struct relay_direction *d) {
	return !d->eof && direction_pipe_full(d);
}

/* Read from `from` into the pipe. Returns the bytes read, 0 at EOF, or -errno. */
static ssize_t direction_splice_in(struct relay_direction *d) {
	int e = direction_pipe(d);
	if (e < 0)
		return e;
	if (direction_pipe_full(d))
		return -EAGAIN; /* a splice of 0 bytes would say 0, which reads as EOF */
	size_t room = d->pipe_size > 0 ? d->pipe_size - d->in_pipe : RELAY_PIPE_SIZE;
	ssize_t n = splice(d->from, NULL, d->pipe_w, NULL, room, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	if (n > 0)
		d->in_pipe += (uint64_t)n;
	return n < 0 ? -errno : n;
}

/* Returns RELAY_PROGRESS if anything moved, 0 if blocked, -errno on hard error.
 * `last`: the other direction is finished, so this one finishing ends the relay. */
static int direction_pump(struct relay_direction *d, bool last) {
	int flags = 0;
	bool drained = false;
	uint64_t spliced = 0;

	for (;;) {
		bool moved = false;

		if (!d->eof && !drained && !direction_pipe_full(d)) {
			bool copy = !d->splicing && d->in_pipe == 0;
			ssize_t n = copy ? direction_copy(d) : direction_splice_in(d);
			if (n > 0) {
				moved = true;
				if (copy && n == RELAY_COPY_MAX)
					d->splicing = true; /* bulk: the rest goes by splice */
				else if (copy && d->short_read_drains)
					drained = true;
				if (!copy)
					spliced += (uint64_t)n;
			} else if (n == 0) {
				d->eof = true;
				moved = true;
			} else if (is_soft_error((int)-n)) {
				/* drained: small messages go back to the copy. Only an empty pipe
				 * says so for sure: a pipe holding bytes may have run out of slots
				 * (each holds a page or less) before its size in bytes. */
				if (d->splicing && spliced < RELAY_COPY_MAX && d->in_pipe == 0)
					d->splicing = false;
			} else
				return (int)n;
		}
		if (d->in_pipe > 0) {
			ssize_t n = splice(d->pipe_r, NULL, d->to, NULL, d->in_pipe,
			                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0) {
				d->in_pipe -= (uint64_t)n;
				d->bytes += (uint64_t)n;
				moved = true;
			} else if (n < 0 && !is_soft_error(errno))
				return -errno;
		}
		if (!moved)
			break;
		flags |= RELAY_PROGRESS;
	}

	if (d->eof && d->in_pipe == 0 && !d->shut) {
		/* The last FIN is left to the close() that RELAY_DONE asks for: both sockets have
		 * read their EOF, so nothing unread makes that close a reset.
		 * ENOTCONN: the peer is already fully gone; the other direction will say so. */
		if (!last && shutdown(d->to, SHUT_WR) < 0 && errno != ENOTCONN)
			return -errno;
		d->shut = true;
		pipe_put(d, true);
		flags |= RELAY_PROGRESS;
	}
	return flags;
}

int relay_pump_some(struct relay *r, bool up, bool down) {
	int a = up ? direction_pump(&r->up, r->down.shut) : 0;
	if (a < 0)
		return a;
	int b = down ? direction_pump(&r->down, r->up.shut) : 0;
	if (b < 0)
		return b;
	int flags = a | b;
	if (r->up.shut && r->down.shut)
		flags |= RELAY_DONE;
	return flags;
}

int relay_pump(struct relay *r) { return relay_pump_some(r, true, true); }

void relay_trim(struct relay *r) {
	if (r->up.in_pipe == 0)
		pipe_put(&r->up, true);
	if (r->down.in_pipe == 0)
		pipe_put(&r->down, true);
}

void relay_release(struct relay *r) {
	pipe_put(&r->up, r->up.in_pipe == 0);
	pipe_put(&r->down, r->down.in_pipe == 0);
}

static void direction_export(const struct relay_direction *d, struct relay_direction_state *s) {
	/* an empty pipe carries nothing worth storing: the next process makes its own */
	bool pipe = d->in_pipe > 0;
	*s = (struct relay_direction_state){.bytes = d->bytes,
	                                    .in_pipe = d->in_pipe,
	                                    .pipe_r = pipe ? d->pipe_r : -EBADF,
	                                    .pipe_w = pipe ? d->pipe_w : -EBADF,
	                                    .eof = d->eof,
	                                    .shut = d->shut};
}

void relay_export(const struct relay *r, struct relay_state *ret) {
	direction_export(&r->up, &ret->up);
	direction_export(&r->down, &ret->down);
}

static void direction_import(struct relay_direction *d, const struct relay_direction_state *s) {
	d->bytes = s->bytes;
	d->in_pipe = s->in_pipe;
	d->pipe_r = s->pipe_r;
	d->pipe_w = s->pipe_w;
	d->pipe_size = d->pipe_r >= 0 ? pipe_size_of(d->pipe_r) : 0;
	d->eof = s->eof;
	d->shut = s->shut;
}

void relay_import(struct relay *r, int client_fd, int upstream_fd, const struct relay_state *s) {
	relay_init(r, client_fd, upstream_fd);
	direction_import(&r->up, &s->up);
	direction_import(&r->down, &s->down);
}
