/* uring-relay.c — a measuring device for issue 19, never part of tcpmapd: one listener
 * relayed to one upstream on loopback, by the same per-direction relay logic driven either
 * by an edge-triggered epoll loop (--mode epoll, tcpmapd's syscall pattern) or by io_uring
 * (--mode uring). Everything but the event mechanism is shared, so the two modes' numbers
 * isolate what io_uring changes. It must never be installed or run by `make check`; it
 * trusts its arguments and exits on the first setup error. See bench/uring/README.md. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* as lib/relay.c: 256 KiB pipes, empty ones pooled per thread */
#define PIPE_SIZE (256 * 1024)
#define PIPE_POOL_MAX 64
/* --copy: recv and send through a buffer per direction instead of splice through a pipe */
#define COPY_BUF 65536

static bool copy_mode;

static int listen_fd = -1;
static struct sockaddr_in target;

static void die(const char *what) {
	fprintf(stderr, "uring-relay: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* ---- the relay logic both modes share -------------------------------------------------- */

struct direction {
	int from, to;
	int pipe_r, pipe_w;
	uint8_t *buf; /* --copy: in place of the pipe; in_pipe bytes from buf + off */
	size_t off;
	size_t in_pipe;
	bool eof, shut;
	int pending; /* uring: ring ops of this direction in flight */
};

struct conn {
	int client_fd, upstream_fd;
	bool connected, failed, cancelled;
	bool closed; /* epoll: closed in this batch, freed after it */
	struct conn *next_closed;
	int pending; /* uring: ring ops of the connection (connect, cancels) in flight */
	struct direction up, down;
} __attribute__((aligned(16)));

static __thread struct { int r, w; } pipe_pool[PIPE_POOL_MAX];
static __thread int pipe_pool_n;

static __thread uint8_t *buf_pool[PIPE_POOL_MAX];
static __thread int buf_pool_n;

static int direction_pipe(struct direction *d) {
	int p[2];
	if (copy_mode) {
		if (d->buf)
			return 0;
		d->buf = buf_pool_n > 0 ? buf_pool[--buf_pool_n] : malloc(COPY_BUF);
		return d->buf ? 0 : -ENOMEM;
	}
	if (d->pipe_r >= 0)
		return 0;
	if (pipe_pool_n > 0) {
		pipe_pool_n--;
		d->pipe_r = pipe_pool[pipe_pool_n].r;
		d->pipe_w = pipe_pool[pipe_pool_n].w;
		return 0;
	}
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
		return -errno;
	(void)fcntl(p[1], F_SETPIPE_SZ, PIPE_SIZE);
	d->pipe_r = p[0];
	d->pipe_w = p[1];
	return 0;
}

/* only an empty pipe goes back to the pool */
static void direction_pipe_put(struct direction *d) {
	if (d->buf) {
		if (buf_pool_n < PIPE_POOL_MAX)
			buf_pool[buf_pool_n++] = d->buf;
		else
			free(d->buf);
		d->buf = NULL;
	}
	if (d->pipe_r < 0)
		return;
	if (d->in_pipe == 0 && pipe_pool_n < PIPE_POOL_MAX) {
		pipe_pool[pipe_pool_n].r = d->pipe_r;
		pipe_pool[pipe_pool_n].w = d->pipe_w;
		pipe_pool_n++;
	} else {
		close(d->pipe_r);
		close(d->pipe_w);
	}
	d->pipe_r = d->pipe_w = -1;
}

static struct conn *conn_new(int client_fd, int upstream_fd) {
	struct conn *c = aligned_alloc(16, sizeof *c);
	if (!c)
		return NULL;
	*c = (struct conn){.client_fd = client_fd, .upstream_fd = upstream_fd};
	c->up = (struct direction){
	        .from = client_fd, .to = upstream_fd, .pipe_r = -1, .pipe_w = -1};
	c->down = (struct direction){
	        .from = upstream_fd, .to = client_fd, .pipe_r = -1, .pipe_w = -1};
	return c;
}

/* What a direction must do next. */
enum step {
	STEP_READ,  /* splice from its source into the pipe (then on out) */
	STEP_WRITE, /* the pipe holds bytes: splice them out */
	STEP_SHUT,  /* EOF read and the pipe empty: forward the FIN */
	STEP_DONE,
};

static enum step direction_step(const struct direction *d) {
	if (d->in_pipe > 0)
		return STEP_WRITE;
	if (!d->eof)
		return STEP_READ;
	return d->shut ? STEP_DONE : STEP_SHUT;
}

/* A splice into the pipe said n (bytes, 0 at EOF, -errno). Returns -errno on a hard error. */
static int direction_read_done(struct direction *d, ssize_t n) {
	if (n > 0)
		d->in_pipe += (size_t)n;
	else if (n == 0)
		d->eof = true;
	else if (n != -EAGAIN && n != -EINTR)
		return (int)n;
	return 0;
}

static int direction_write_done(struct direction *d, ssize_t n) {
	if (n > 0) {
		d->in_pipe -= (size_t)n;
		d->off = d->in_pipe > 0 ? d->off + (size_t)n : 0;
	} else if (n < 0 && n != -EAGAIN && n != -EINTR)
		return (int)n;
	return 0;
}

/* The FIN goes on with shutdown(), except the last one: as tcpmapd, the close() that ends
 * the connection sends it. Returns true when shutdown() is to be called. */
static bool direction_shut(struct direction *d, const struct direction *other) {
	d->shut = true;
	direction_pipe_put(d);
	return !other->shut;
}

static bool conn_done(const struct conn *c) { return c->up.shut && c->down.shut; }

static int upstream_socket(void) {
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd >= 0)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

static void conn_free(struct conn *c) {
	direction_pipe_put(&c->up);
	direction_pipe_put(&c->down);
	free(c);
}

/* An accepted client's connection with its upstream socket, connecting at once when
 * `connect_now` (the epoll mode; the ring connects as an operation of its own). NULL, with
 * both sockets closed, when any step fails. */
static struct conn *conn_for_client(int cfd, bool connect_now) {
	int ufd = upstream_socket();
	struct conn *c = NULL;

	if (ufd >= 0 &&
	    (!connect_now || connect(ufd, (struct sockaddr *)&target, sizeof target) == 0 ||
	     errno == EINPROGRESS))
		c = conn_new(cfd, ufd);
	if (!c) {
		close(cfd);
		if (ufd >= 0)
			close(ufd);
	}
	return c;
}

/* ---- --mode epoll: tcpmapd's pattern ---------------------------------------------------- */

/* epoll data: the listener is NULL; a connection's two fds are told apart by the low bit */
static void epoll_pump_direction(struct direction *d, struct direction *other, bool *failed) {
	for (;;) {
		ssize_t n;
		int r = 0;
		switch (direction_step(d)) {
		case STEP_READ:
			if (direction_pipe(d) < 0) {
				*failed = true;
				return;
			}
			if (copy_mode)
				n = recv(d->from, d->buf, COPY_BUF, MSG_DONTWAIT);
			else
				n = splice(d->from, NULL, d->pipe_w, NULL, PIPE_SIZE - d->in_pipe,
				           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			r = direction_read_done(d, n < 0 ? -errno : n);
			if (r == 0 && n < 0)
				return; /* wait for the next edge */
			break;
		case STEP_WRITE:
			if (copy_mode)
				n = send(d->to, d->buf + d->off, d->in_pipe,
				         MSG_DONTWAIT | MSG_NOSIGNAL);
			else
				n = splice(d->pipe_r, NULL, d->to, NULL, d->in_pipe,
				           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			r = direction_write_done(d, n < 0 ? -errno : n);
			if (r == 0 && n < 0)
				return;
			break;
		case STEP_SHUT:
			if (direction_shut(d, other) && shutdown(d->to, SHUT_WR) < 0 &&
			    errno != ENOTCONN)
				r = -errno;
			break;
		case STEP_DONE:
			return;
		}
		if (r < 0) {
			*failed = true;
			return;
		}
	}
}

/* Freed after the batch: a later event of the same batch may still name the connection. */
static __thread struct conn *closed_in_batch;

static void epoll_conn_close(struct conn *c) {
	/* close() drops the epoll registrations too */
	close(c->client_fd);
	close(c->upstream_fd);
	c->closed = true;
	c->next_closed = closed_in_batch;
	closed_in_batch = c;
}

static void epoll_on_conn(struct conn *c, bool upstream_side, uint32_t ev) {
	if (c->closed)
		return;
	if (!c->connected) {
		if (!upstream_side || !(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		int err = 0;
		socklen_t len = sizeof err;
		if (ev & (EPOLLERR | EPOLLHUP))
			(void)getsockopt(c->upstream_fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err || (ev & EPOLLERR)) {
			epoll_conn_close(c);
			return;
		}
		c->connected = true;
	}
	epoll_pump_direction(&c->up, &c->down, &c->failed);
	if (!c->failed)
		epoll_pump_direction(&c->down, &c->up, &c->failed);
	if (c->failed || conn_done(c))
		epoll_conn_close(c);
}

static void epoll_accept(int ep) {
	/* as tcpmapd: one accept per event of the level-triggered listener */
	int cfd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (cfd < 0)
		return;
	struct conn *c = conn_for_client(cfd, true);
	if (!c)
		return;
	struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET};
	e.data.u64 = (uintptr_t)c;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, c->client_fd, &e) < 0)
		goto fail;
	e.data.u64 = (uintptr_t)c | 1;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, c->upstream_fd, &e) < 0)
		goto fail;
	return;
fail:
	epoll_conn_close(c);
}

static void *epoll_worker(void *arg) {
	(void)arg;
	struct epoll_event ev[64];
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	struct epoll_event le = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = 0};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &le) < 0)
		die("epoll_ctl listener");
	for (;;) {
		int n = epoll_wait(ep, ev, 64, -1);
		for (int i = 0; i < n; i++) {
			if (ev[i].data.u64 == 0) {
				epoll_accept(ep);
				continue;
			}
			struct conn *c = (struct conn *)(uintptr_t)(ev[i].data.u64 & ~(uint64_t)1);
			epoll_on_conn(c, ev[i].data.u64 & 1, ev[i].events);
		}
		while (closed_in_batch) {
			struct conn *c = closed_in_batch;
			closed_in_batch = c->next_closed;
			conn_free(c);
		}
	}
	return NULL;
}

/* ---- --mode uring ------------------------------------------------------------------------ */

/* user_data: a connection's address with the op in its low four bits; 0 is the accept, and
 * OP_IGNORE ops (closes, shutdowns of a finished connection's fds) carry no connection. */
enum op {
	OP_ACCEPT = 0,
	OP_CONNECT,
	OP_CANCEL,
	OP_POLL,       /* + direction bit */
	OP_SPLICE_IN,  /* or the recv of --copy */
	OP_SPLICE_OUT, /* or the send of --copy */
	OP_SHUTDOWN,
	OP_IGNORE,
};
#define OP_BITS 4
#define OP_DOWN 8 /* the op belongs to the down direction */

static bool link_connect; /* --link: connect linked to the first read chain of the client */

struct uring_worker {
	struct io_uring ring;
};

static struct io_uring_sqe *sqe_get(struct io_uring *ring) {
	struct io_uring_sqe *s = io_uring_get_sqe(ring);
	while (!s) {
		/* the SQ is full: hand it to the kernel now */
		io_uring_submit(ring);
		s = io_uring_get_sqe(ring);
	}
	return s;
}

static void sqe_tag(struct io_uring_sqe *s, struct conn *c, unsigned op) {
	io_uring_sqe_set_data64(s, (uintptr_t)c | op);
}

static void uring_arm_accept(struct io_uring *ring) {
	struct io_uring_sqe *s = sqe_get(ring);
	io_uring_prep_multishot_accept(s, listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	io_uring_sqe_set_data64(s, OP_ACCEPT);
}

/* One direction's next step as linked ring ops: poll for readiness, then the splice, for a
 * read also the splice out of the pipe (a nonblocking splice from a pipe moves what is
 * there), so the common case is one submission and one batch of completions. Hard links:
 * io_uring counts a splice that moved less than asked as failed, which would cancel the
 * splice out after every short read; one that runs for nothing only says EAGAIN. */
static void uring_direction_go(struct io_uring *ring, struct conn *c, struct direction *d,
                               struct direction *other, unsigned dirbit) {
	struct io_uring_sqe *s;

	if (d->pending > 0 || c->failed)
		return;
	switch (direction_step(d)) {
	case STEP_READ:
		if (direction_pipe(d) < 0) {
			c->failed = true;
			return;
		}
		if (copy_mode) {
			/* recv waits for data inside the ring (its internal poll), inline, not in
			 * io-wq; the send needs the length, so it goes in the next submission */
			s = sqe_get(ring);
			io_uring_prep_recv(s, d->from, d->buf, COPY_BUF, 0);
			sqe_tag(s, c, OP_SPLICE_IN | dirbit);
			d->pending = 1;
			break;
		}
		s = sqe_get(ring);
		io_uring_prep_poll_add(s, d->from, POLLIN | POLLRDHUP);
		sqe_tag(s, c, OP_POLL | dirbit);
		s->flags |= IOSQE_IO_HARDLINK;
		s = sqe_get(ring);
		io_uring_prep_splice(s, d->from, -1, d->pipe_w, -1, PIPE_SIZE,
		                     SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		sqe_tag(s, c, OP_SPLICE_IN | dirbit);
		s->flags |= IOSQE_IO_HARDLINK;
		s = sqe_get(ring);
		io_uring_prep_splice(s, d->pipe_r, -1, d->to, -1, PIPE_SIZE,
		                     SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		sqe_tag(s, c, OP_SPLICE_OUT | dirbit);
		d->pending = 3;
		break;
	case STEP_WRITE:
		if (copy_mode) {
			s = sqe_get(ring);
			io_uring_prep_send(s, d->to, d->buf + d->off, d->in_pipe, MSG_NOSIGNAL);
			sqe_tag(s, c, OP_SPLICE_OUT | dirbit);
			d->pending = 1;
			break;
		}
		s = sqe_get(ring);
		io_uring_prep_poll_add(s, d->to, POLLOUT);
		sqe_tag(s, c, OP_POLL | dirbit);
		s->flags |= IOSQE_IO_HARDLINK;
		s = sqe_get(ring);
		io_uring_prep_splice(s, d->pipe_r, -1, d->to, -1, d->in_pipe,
		                     SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		sqe_tag(s, c, OP_SPLICE_OUT | dirbit);
		d->pending = 2;
		break;
	case STEP_SHUT:
		if (direction_shut(d, other)) {
			s = sqe_get(ring);
			io_uring_prep_shutdown(s, d->to, SHUT_WR);
			sqe_tag(s, c, OP_SHUTDOWN | dirbit);
			d->pending = 1;
		}
		break;
	case STEP_DONE:
		break;
	}
}

static void uring_conn_close(struct io_uring *ring, struct conn *c) {
	struct io_uring_sqe *s = sqe_get(ring);
	io_uring_prep_close(s, c->client_fd);
	io_uring_sqe_set_data64(s, OP_IGNORE);
	s = sqe_get(ring);
	io_uring_prep_close(s, c->upstream_fd);
	io_uring_sqe_set_data64(s, OP_IGNORE);
	conn_free(c);
}

/* After any completion of c: go on, or end it once nothing of it is in flight. */
static void uring_conn_advance(struct io_uring *ring, struct conn *c) {
	if (c->connected && !c->failed) {
		uring_direction_go(ring, c, &c->up, &c->down, 0);
		uring_direction_go(ring, c, &c->down, &c->up, OP_DOWN);
	}
	int in_flight = c->pending + c->up.pending + c->down.pending;
	if (in_flight == 0 && (c->failed || conn_done(c))) {
		uring_conn_close(ring, c);
		return;
	}
	if (c->failed && !c->cancelled) {
		/* a poll waiting on the other side would wait forever: cancel all on both fds */
		struct io_uring_sqe *s = sqe_get(ring);
		io_uring_prep_cancel_fd(s, c->client_fd, IORING_ASYNC_CANCEL_ALL);
		sqe_tag(s, c, OP_CANCEL);
		s = sqe_get(ring);
		io_uring_prep_cancel_fd(s, c->upstream_fd, IORING_ASYNC_CANCEL_ALL);
		sqe_tag(s, c, OP_CANCEL);
		c->pending += 2;
		c->cancelled = true;
	}
}

static void uring_on_accept(struct io_uring *ring, int cfd) {
	struct conn *c = conn_for_client(cfd, false);
	if (!c)
		return;
	struct io_uring_sqe *s = sqe_get(ring);
	io_uring_prep_connect(s, c->upstream_fd, (struct sockaddr *)&target, sizeof target);
	sqe_tag(s, c, OP_CONNECT);
	c->pending = 1;
	if (link_connect) {
		/* the client's first read chain runs right behind the connect, in the same
		 * submission: one trip through the loop less per connection */
		s->flags |= IOSQE_IO_LINK;
		c->connected = true; /* a failed connect cancels the chain, and so fails c */
		uring_direction_go(ring, c, &c->up, &c->down, 0);
	}
}

static void uring_on_cqe(struct io_uring *ring, struct io_uring_cqe *cqe) {
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	unsigned op = ud & ((1u << OP_BITS) - 1);
	struct conn *c = (struct conn *)(uintptr_t)(ud & ~(uint64_t)((1u << OP_BITS) - 1));
	int res = cqe->res;

	if (op == OP_ACCEPT) {
		if (res >= 0)
			uring_on_accept(ring, res);
		if (!(cqe->flags & IORING_CQE_F_MORE))
			uring_arm_accept(ring);
		return;
	}
	if (op == OP_IGNORE)
		return;
	struct direction *d = op & OP_DOWN ? &c->down : &c->up;
	switch (op & ~OP_DOWN) {
	case OP_CONNECT:
		c->pending--;
		if (res < 0)
			c->failed = true;
		else
			c->connected = true;
		break;
	case OP_CANCEL:
		c->pending--;
		break;
	case OP_POLL:
		d->pending--;
		if (res < 0 && res != -ECANCELED)
			c->failed = true;
		break;
	case OP_SPLICE_IN:
		d->pending--;
		if (res != -ECANCELED && direction_read_done(d, res) < 0)
			c->failed = true;
		break;
	case OP_SPLICE_OUT:
		d->pending--;
		if (res != -ECANCELED && direction_write_done(d, res) < 0)
			c->failed = true;
		break;
	case OP_SHUTDOWN:
		d->pending--;
		if (res < 0 && res != -ENOTCONN)
			c->failed = true;
		break;
	}
	uring_conn_advance(ring, c);
}

static void *uring_worker(void *arg) {
	(void)arg;
	struct io_uring ring;
	struct io_uring_params p = {.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
	                                     IORING_SETUP_SINGLE_ISSUER |
	                                     IORING_SETUP_DEFER_TASKRUN};
	int r = io_uring_queue_init_params(4096, &ring, &p);
	if (r < 0) {
		/* kernels before 6.1 lack DEFER_TASKRUN */
		p = (struct io_uring_params){.flags = IORING_SETUP_SUBMIT_ALL};
		r = io_uring_queue_init_params(4096, &ring, &p);
	}
	if (r < 0) {
		errno = -r;
		die("io_uring_queue_init");
	}
	uring_arm_accept(&ring);
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;

		/* one io_uring_enter: submit what the last batch queued and wait for one more */
		r = io_uring_submit_and_wait(&ring, 1);
		if (r < 0 && r != -EINTR && r != -ETIME && r != -EBUSY) {
			errno = -r;
			die("io_uring_submit_and_wait");
		}
		io_uring_for_each_cqe(&ring, head, cqe) {
			uring_on_cqe(&ring, cqe);
			seen++;
		}
		io_uring_cq_advance(&ring, seen);
	}
	return NULL;
}

/* ---- main ---------------------------------------------------------------------------------- */

static void usage(void) {
	fprintf(stderr, "usage: uring-relay --mode epoll|uring [--link] [--copy] [--workers N] "
	                "LISTEN_PORT TARGET_PORT\n"
	                "  relays 127.0.0.1:LISTEN_PORT to 127.0.0.1:TARGET_PORT until SIGTERM\n");
	exit(2);
}

int main(int argc, char **argv) {
	const char *mode = NULL;
	int workers = 2, i;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--mode") && i + 1 < argc)
			mode = argv[++i];
		else if (!strcmp(argv[i], "--workers") && i + 1 < argc)
			workers = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--link"))
			link_connect = true;
		else if (!strcmp(argv[i], "--copy"))
			copy_mode = true;
		else
			usage();
	}
	if (!mode || argc - i != 2 || workers < 1 || workers > 64)
		usage();
	bool uring = !strcmp(mode, "uring");
	if (!uring && strcmp(mode, "epoll"))
		usage();

	target = (struct sockaddr_in){.sin_family = AF_INET,
	                              .sin_port = htons((uint16_t)atoi(argv[i + 1])),
	                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct sockaddr_in la = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)atoi(argv[i])),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int one = 1;
	/* one listener shared by the workers, as tcpmapd's */
	listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (listen_fd < 0)
		die("socket");
	(void)setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	/* accepted sockets inherit TCP_NODELAY, as in lib/listeners.c */
	(void)setsockopt(listen_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (bind(listen_fd, (struct sockaddr *)&la, sizeof la) < 0 || listen(listen_fd, 4096) < 0)
		die("bind/listen");

	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	pthread_sigmask(SIG_BLOCK, &ss, NULL);
	signal(SIGPIPE, SIG_IGN);
	for (int w = 0; w < workers; w++) {
		pthread_t t;
		if (pthread_create(&t, NULL, uring ? uring_worker : epoll_worker, NULL) != 0)
			die("pthread_create");
	}
	int sig;
	sigwait(&ss, &sig);
	_exit(0); /* the workers never stop: leave without running exit handlers under them */
}
