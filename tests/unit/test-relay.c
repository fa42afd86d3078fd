/* test-relay.c — the copy-and-splice pump with its per-thread pipe pool: a pooled pipe never
 * carries one connection's bytes into another, a pipe holding bytes is never pooled, small
 * messages take no pipe, what a send leaves waits in order, and a FIN is forwarded only
 * after everything before it. Real sockets (socketpairs), no event loop. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "relay.h"
#include "util.h"

/* client <-> [cfd | relay | ufd] <-> upstream */
struct pair {
	int client, cfd, ufd, upstream;
	struct relay r;
};

static void pair_open(struct pair *p) {
	int a[2], b[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b), 0);
	p->client = a[0];
	p->cfd = a[1];
	p->ufd = b[0];
	p->upstream = b[1];
	relay_init(&p->r, p->cfd, p->ufd);
}

static void pair_close(struct pair *p) {
	relay_release(&p->r);
	safe_close(p->client);
	safe_close(p->cfd);
	safe_close(p->ufd);
	safe_close(p->upstream);
}

static void fill(uint8_t *buf, size_t n, uint8_t seed) {
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)(seed + i * 31);
}

static size_t drain(int fd, uint8_t *buf, size_t size) {
	size_t got = 0;
	for (;;) {
		ssize_t n = read(fd, buf + got, size - got);
		if (n <= 0)
			return got;
		got += (size_t)n;
	}
}

static void test_pooled_pipes_never_mix(void **state) {
	(void)state;
	struct pair p[4];
	static uint8_t out[64 * 1024], in[64 * 1024];

	for (int i = 0; i < 4; i++)
		pair_open(&p[i]);
	/* many rounds, each relay in turn, trimming after each so pipes go round the pool */
	for (int round = 0; round < 50; round++)
		for (int i = 0; i < 4; i++) {
			size_t n = 1000 + (size_t)(round * 97 + i * 13) % 30000;
			fill(out, n, (uint8_t)(round * 4 + i));
			assert_int_equal(write(p[i].client, out, n), (ssize_t)n);
			int r = relay_pump(&p[i].r);
			assert_true(r >= 0 && (r & RELAY_PROGRESS));
			relay_trim(&p[i].r);
			assert_int_equal(p[i].r.up.pipe_r, -EBADF); /* empty: back in the pool */
			assert_int_equal(drain(p[i].upstream, in, sizeof in), n);
			assert_memory_equal(in, out, n);
		}
	for (int i = 0; i < 4; i++)
		pair_close(&p[i]);
}

/* the byte at stream offset k, so partial writes and reads can be checked anywhere */
static uint8_t stream_byte(size_t k) { return (uint8_t)(k * 131 + (k >> 11)); }

static void test_full_pipe_is_not_pooled(void **state) {
	(void)state;
	struct pair a, b;
	static uint8_t out[256 * 1024], in[256 * 1024];
	size_t sent_a = 0;

	pair_open(&a);
	pair_open(&b);
	/* stuff a's upstream until its socket is full: bytes stay in a's pipe */
	for (int i = 0; i < 256; i++) {
		for (size_t k = 0; k < sizeof out; k++)
			out[k] = stream_byte(sent_a + k);
		ssize_t n = write(a.client, out, sizeof out);
		if (n > 0)
			sent_a += (size_t)n;
		assert_true(relay_pump(&a.r) >= 0);
		if (a.r.up.in_pipe > 0 && n <= 0)
			break;
	}
	assert_true(a.r.up.in_pipe > 0);
	int held = a.r.up.pipe_r;
	relay_trim(&a.r);
	assert_int_equal(a.r.up.pipe_r, held); /* kept: it holds a's bytes */

	/* b must get a different pipe and only its own bytes */
	uint8_t bout[4096];
	fill(bout, sizeof bout, 99);
	assert_int_equal(write(b.client, bout, sizeof bout), (ssize_t)sizeof bout);
	assert_true(relay_pump(&b.r) >= 0);
	assert_int_not_equal(b.r.up.pipe_r, held);
	assert_int_equal(drain(b.upstream, in, sizeof in), sizeof bout);
	assert_memory_equal(in, bout, sizeof bout);

	/* every one of a's bytes arrives, in order, as its upstream reads */
	size_t got = 0;
	for (int i = 0; i < 10000 && got < sent_a; i++) {
		size_t n = drain(a.upstream, in, sizeof in);
		for (size_t k = 0; k < n; k++)
			if (in[k] != stream_byte(got + k))
				fail_msg("byte %zu differs", got + k);
		got += n;
		assert_true(relay_pump(&a.r) >= 0);
	}
	assert_int_equal(got, sent_a);
	pair_close(&a);
	pair_close(&b);
}

static void test_fin_after_the_bytes(void **state) {
	(void)state;
	struct pair p;
	uint8_t out[10000], in[20000];

	pair_open(&p);
	fill(out, sizeof out, 3);
	assert_int_equal(write(p.client, out, sizeof out), (ssize_t)sizeof out);
	assert_int_equal(shutdown(p.client, SHUT_WR), 0);
	int r = relay_pump(&p.r);
	assert_true(r >= 0);
	assert_true(p.r.up.eof && p.r.up.shut);
	assert_false(r & RELAY_DONE); /* the other direction is still open */
	size_t got = 0;
	ssize_t n;
	while ((n = read(p.upstream, in + got, sizeof in - got)) > 0)
		got += (size_t)n;
	assert_int_equal(n, 0); /* EOF after exactly the bytes */
	assert_int_equal(got, sizeof out);
	assert_memory_equal(in, out, sizeof out);
	/* the answer still flows back, then both are done */
	assert_int_equal(write(p.upstream, "late answer", 11), 11);
	assert_int_equal(shutdown(p.upstream, SHUT_WR), 0);
	r = relay_pump(&p.r);
	assert_true(r >= 0 && (r & RELAY_DONE));
	assert_int_equal(read(p.client, in, sizeof in), 11);
	assert_memory_equal(in, "late answer", 11);
	assert_int_equal(p.r.up.bytes, sizeof out);
	assert_int_equal(p.r.down.bytes, 11);
	pair_close(&p);
}

/* A message that fits the copy buffer goes by recv and send and takes no pipe; a bigger one
 * switches the direction to splice, and small traffic afterwards switches it back. */
static void test_small_messages_take_no_pipe(void **state) {
	(void)state;
	struct pair p;
	static uint8_t out[20000], in[20000];

	pair_open(&p);
	fill(out, 500, 1);
	assert_int_equal(write(p.client, out, 500), 500);
	assert_true(relay_pump(&p.r) & RELAY_PROGRESS);
	assert_int_equal(p.r.up.pipe_r, -EBADF);
	assert_false(p.r.up.splicing);
	assert_int_equal(drain(p.upstream, in, sizeof in), 500);
	assert_memory_equal(in, out, 500);

	fill(out, sizeof out, 2);
	assert_int_equal(write(p.client, out, sizeof out), (ssize_t)sizeof out);
	assert_true(relay_pump(&p.r) & RELAY_PROGRESS);
	assert_true(p.r.up.splicing);
	assert_true(p.r.up.pipe_r >= 0);
	assert_int_equal(drain(p.upstream, in, sizeof in), sizeof out);
	assert_memory_equal(in, out, sizeof out);

	/* a small message by splice finds the socket drained: back to copying */
	fill(out, 100, 3);
	assert_int_equal(write(p.client, out, 100), 100);
	assert_true(relay_pump(&p.r) & RELAY_PROGRESS);
	assert_false(p.r.up.splicing);
	assert_int_equal(drain(p.upstream, in, sizeof in), 100);
	assert_memory_equal(in, out, 100);
	assert_int_equal(p.r.up.bytes, 500 + sizeof out + 100);
	pair_close(&p);
}

/* A copied message the upstream cannot take waits in the pipe, and what the client sends
 * next queues behind it: the upstream gets every byte, in order. */
static void test_unsent_copy_waits_in_the_pipe(void **state) {
	(void)state;
	struct pair p;
	static uint8_t filler[4096], out[9000], in[64 * 1024];
	size_t filled = 0;

	pair_open(&p);
	memset(filler, 0xee, sizeof filler);
	for (int i = 0; i < 100000; i++) { /* the upstream's socket full */
		ssize_t n = write(p.ufd, filler, sizeof filler);
		if (n <= 0)
			break;
		filled += (size_t)n;
	}
	assert_true(filled > 0);
	for (size_t k = 0; k < sizeof out; k++)
		out[k] = stream_byte(k);
	assert_int_equal(write(p.client, out, 6000), 6000);
	assert_true(relay_pump(&p.r) >= 0);
	assert_int_equal(p.r.up.in_pipe, 6000);
	assert_int_equal(write(p.client, out + 6000, 3000), 3000);
	assert_true(relay_pump(&p.r) >= 0);
	assert_int_equal(p.r.up.in_pipe, 9000);

	size_t got = 0, skipped = 0;
	for (int i = 0; i < 1000 && got < sizeof out; i++) {
		size_t n = drain(p.upstream, in, sizeof in), k = 0;
		for (; k < n && skipped < filled; k++, skipped++)
			assert_int_equal(in[k], 0xee);
		for (; k < n; k++, got++)
			if (in[k] != stream_byte(got))
				fail_msg("byte %zu differs", got);
		assert_true(relay_pump(&p.r) >= 0);
	}
	assert_int_equal(got, sizeof out);
	assert_int_equal(p.r.up.in_pipe, 0);
	pair_close(&p);
}

/* short_read_drains: a short read ends the reading, so a FIN queued behind the bytes is
 * not seen; that is why the caller clears it once an event has shown a hang-up. */
static void test_short_read_ends_reading_until_a_hangup_is_seen(void **state) {
	(void)state;
	struct pair p;
	uint8_t in[64];

	pair_open(&p);
	assert_int_equal(write(p.client, "hello", 5), 5);
	assert_int_equal(shutdown(p.client, SHUT_WR), 0);
	p.r.up.short_read_drains = true;
	assert_true(relay_pump(&p.r) & RELAY_PROGRESS);
	assert_false(p.r.up.eof);
	assert_int_equal(drain(p.upstream, in, sizeof in), 5);
	assert_memory_equal(in, "hello", 5);

	p.r.up.short_read_drains = false; /* the event showed EPOLLRDHUP */
	assert_true(relay_pump(&p.r) & RELAY_PROGRESS);
	assert_true(p.r.up.eof && p.r.up.shut);
	assert_int_equal(read(p.upstream, in, sizeof in), 0);
	pair_close(&p);
}

/* A connected TCP pair on loopback: *a and *b are the two ends, both non-blocking. */
static void tcp_pair(int *a, int *b) {
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof sin;
	_cleanup_close_ int l = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(l >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&sin, sizeof sin), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&sin, &len), 0);
	*a = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(*a >= 0);
	assert_int_equal(connect(*a, (struct sockaddr *)&sin, sizeof sin), 0);
	*b = accept4(l, NULL, NULL, SOCK_NONBLOCK);
	assert_true(*b >= 0);
	assert_int_equal(fcntl(*a, F_SETFL, O_NONBLOCK), 0);
}

/* The direction that finishes last sends no shutdown(): the caller's close() on RELAY_DONE
 * carries that FIN, after every byte, and as a FIN rather than a reset. */
static void test_last_fin_comes_from_close(void **state) {
	(void)state;
	struct pair p;
	uint8_t in[64];

	tcp_pair(&p.client, &p.cfd);
	tcp_pair(&p.ufd, &p.upstream);
	relay_init(&p.r, p.cfd, p.ufd);

	assert_int_equal(write(p.client, "question", 8), 8);
	assert_int_equal(shutdown(p.client, SHUT_WR), 0);
	int r = 0;
	for (int i = 0; i < 100 && !p.r.up.shut; i++, usleep(1000))
		r = relay_pump(&p.r);
	assert_true(r >= 0 && p.r.up.shut && !(r & RELAY_DONE));
	assert_int_equal(drain(p.upstream, in, sizeof in), 8);
	assert_int_equal(read(p.upstream, in, sizeof in), 0); /* the first FIN was forwarded */

	assert_int_equal(write(p.upstream, "answer", 6), 6);
	assert_int_equal(shutdown(p.upstream, SHUT_WR), 0);
	for (int i = 0; i < 100 && !(r & RELAY_DONE); i++, usleep(1000))
		r = relay_pump(&p.r);
	assert_true(r >= 0 && (r & RELAY_DONE) && p.r.down.shut);
	usleep(20000);
	assert_int_equal(read(p.client, in, sizeof in), 6);
	errno = 0;
	assert_int_equal(read(p.client, in, sizeof in), -1); /* no FIN yet: no shutdown() */
	assert_int_equal(errno, EAGAIN);

	relay_release(&p.r);
	p.cfd = safe_close(p.cfd);
	p.ufd = safe_close(p.ufd);
	ssize_t n = -1;
	errno = EAGAIN;
	for (int i = 0; i < 100 && n < 0 && errno == EAGAIN; i++, usleep(1000))
		n = read(p.client, in, sizeof in);
	assert_int_equal(n, 0); /* a clean EOF, not ECONNRESET */
	safe_close(p.client);
	safe_close(p.upstream);
}

/* Bulk into an upstream that does not read: the pipe fills to no more than its size, and
 * neither a full pipe nor an EAGAIN while it holds bytes turns splicing off (issue 19: that
 * EAGAIN was taken for a drained client, and the next bytes went by copy). Once the upstream
 * reads, every byte arrives in order. */
static void test_full_pipe_keeps_splicing(void **state) {
	(void)state;
	struct pair p;
	static uint8_t out[4 << 20], in[1 << 20];
	size_t written = 0, got = 0;

	tcp_pair(&p.client, &p.cfd);
	tcp_pair(&p.ufd, &p.upstream);
	/* small fixed buffers toward the upstream, so its side fills long before `out` ends */
	int small = 64 * 1024;
	assert_int_equal(setsockopt(p.ufd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
	assert_int_equal(setsockopt(p.upstream, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
	relay_init(&p.r, p.cfd, p.ufd);
	for (size_t k = 0; k < sizeof out; k++)
		out[k] = stream_byte(k);

	for (int i = 0; i < 200; i++, usleep(1000)) {
		ssize_t n = write(p.client, out + written, sizeof out - written);
		if (n > 0)
			written += (size_t)n;
		assert_true(relay_pump(&p.r) >= 0);
		if (p.r.up.splicing) {
			assert_true(p.r.up.pipe_size > 0);
			assert_true(p.r.up.in_pipe <= p.r.up.pipe_size);
			assert_true(relay_direction_full(&p.r.up) ==
			            (p.r.up.in_pipe >= p.r.up.pipe_size));
		}
		if (n <= 0 && p.r.up.in_pipe > 0)
			break; /* the client's socket, the pipe and the upstream's side full */
	}
	assert_true(p.r.up.in_pipe > 0);
	assert_true(relay_pump(&p.r) >= 0); /* nothing can move: EAGAIN with bytes in the pipe */
	assert_true(p.r.up.splicing);

	for (int i = 0; i < 20000 && got < sizeof out; i++) {
		ssize_t n = write(p.client, out + written, sizeof out - written);
		if (n > 0)
			written += (size_t)n;
		assert_true(relay_pump(&p.r) >= 0);
		size_t m = drain(p.upstream, in, sizeof in);
		for (size_t k = 0; k < m; k++, got++)
			if (in[k] != stream_byte(got))
				fail_msg("byte %zu differs", got);
		if (m == 0)
			usleep(100);
	}
	assert_int_equal(got, sizeof out);
	assert_int_equal(p.r.up.bytes, sizeof out);
	relay_release(&p.r);
	safe_close(p.client);
	safe_close(p.cfd);
	safe_close(p.ufd);
	safe_close(p.upstream);
}

int main(void) {
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_pooled_pipes_never_mix),
	        cmocka_unit_test(test_full_pipe_is_not_pooled),
	        cmocka_unit_test(test_fin_after_the_bytes),
	        cmocka_unit_test(test_last_fin_comes_from_close),
	        cmocka_unit_test(test_full_pipe_keeps_splicing),
	        cmocka_unit_test(test_small_messages_take_no_pipe),
	        cmocka_unit_test(test_unsent_copy_waits_in_the_pipe),
	        cmocka_unit_test(test_short_read_ends_reading_until_a_hangup_is_seen),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
