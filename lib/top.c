/* top.c — `tcpmapctl top`: rates from two snapshots of the breaker table a delay apart.
 *
 * Presentation only, like status.c: it reads private snapshots (breaker_table_open_readonly)
 * and never writes the table. The terminal is driven with plain termios and ANSI sequences
 * (no curses), and is always given back as it was found, on q, on the iteration bound, or on
 * SIGINT/SIGTERM/SIGHUP. Names are escaped (textesc.h) before they reach the screen. Bytes
 * are counted when a connection ends (breaker_table_release), so a long connection's bytes
 * show when it closes. */
#include "top.h"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>

#include "breaker.h"
#include "textesc.h"
#include "util.h"

struct top_row {
	char *name;   /* the cluster key, escaped */
	uint32_t pos; /* the entry's index: the same in every snapshot */
	uint64_t total, ended, errors, bytes_in, bytes_out;
	uint32_t active, pending, max_connections;
	double conns_s, in_s, out_s, errors_s;
};

struct top_snapshot {
	struct top_row *rows;
	size_t n;
	uint64_t at_msec;
};

static volatile sig_atomic_t top_stop;
static void on_signal(int sig) {
	(void)sig;
	top_stop = 1;
}

int top_sort_from_key(int key) {
	switch (key) {
	case 'a':
		return TOP_SORT_ACTIVE;
	case 'c':
		return TOP_SORT_CONNS;
	case 'b':
		return TOP_SORT_BYTES;
	case 'e':
		return TOP_SORT_ERRORS;
	case 'n':
		return TOP_SORT_NAME;
	default:
		return -EINVAL;
	}
}

static uint64_t mono_msec(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void snapshot_free(struct top_snapshot *s) {
	for (size_t i = 0; i < s->n; i++)
		free(s->rows[i].name);
	s->rows = mfree(s->rows);
	s->n = 0;
}

/* Results that are not an error: relayed to the end, or idled out as configured. */
static bool result_is_error(int r) {
	return r != CONN_RESULT_OK && r != CONN_RESULT_IDLE_TIMEOUT && r != CONN_RESULT_SHUTDOWN;
}

static int snapshot_take(int dir_fd, uid_t owner, struct top_snapshot *ret) {
	struct breaker_table *t = NULL;
	struct breaker_entry_view v;
	size_t allocated = 0;
	uint32_t pos = 0;

	int r = breaker_table_open_readonly(dir_fd, owner, &t);
	if (r < 0)
		return r;
	*ret = (struct top_snapshot){.at_msec = mono_msec()};
	while (breaker_table_next_entry(t, &pos, &v)) {
		if (ret->n == allocated) {
			size_t more = allocated ? allocated * 2 : 64;
			struct top_row *p = reallocarray(ret->rows, more, sizeof(*p));
			if (!p) {
				r = -ENOMEM;
				break;
			}
			ret->rows = p;
			allocated = more;
		}
		struct top_row *row = &ret->rows[ret->n];
		*row = (struct top_row){
		        .name = textesc(v.cluster, v.cluster_len),
		        .pos = pos - 1, /* next_entry moved past it */
		        .total = v.stats.total + v.stats.overflows,
		        .bytes_in = v.stats.bytes_in,
		        .bytes_out = v.stats.bytes_out,
		        .active = v.stats.active,
		        .pending = v.stats.pending,
		        .max_connections = v.stats.max_connections,
		};
		if (!row->name) {
			r = -ENOMEM;
			break;
		}
		for (int k = 0; k < _CONN_RESULT_MAX; k++)
			if (result_is_error(k))
				row->errors += v.stats.results[k];
		ret->n++;
	}
	breaker_table_close(t);
	if (r < 0)
		snapshot_free(ret);
	return r;
}

static int row_compare_pos(const void *a, const void *b) {
	const struct top_row *x = a, *y = b;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Rates of `now` against `before` (sorted by pos, as a table walk gives them): rows are
 * matched by entry index and name, since entries are only ever added. */
static void rates(struct top_snapshot *now, const struct top_snapshot *before) {
	double secs = now->at_msec > before->at_msec
	                      ? (double)(now->at_msec - before->at_msec) / 1000.0
	                      : 0;
	for (size_t i = 0; i < now->n && secs > 0; i++) {
		struct top_row *r = &now->rows[i];
		const struct top_row *b =
		        bsearch(r, before->rows, before->n, sizeof(*r), row_compare_pos);
		if (!b || !streq(b->name, r->name))
			continue;
#define RATE(field) (r->field >= b->field ? (double)(r->field - b->field) / secs : 0)
		r->conns_s = RATE(total);
		r->in_s = RATE(bytes_in);
		r->out_s = RATE(bytes_out);
		r->errors_s = RATE(errors);
#undef RATE
	}
}

static enum top_sort sort_key;
static int row_compare(const void *a, const void *b) {
	const struct top_row *x = a, *y = b;
	double dx, dy;
	switch (sort_key) {
	case TOP_SORT_NAME:
		return strcmp(x->name, y->name);
	case TOP_SORT_ACTIVE:
		dx = x->active + x->pending, dy = y->active + y->pending;
		break;
	case TOP_SORT_CONNS:
		dx = x->conns_s, dy = y->conns_s;
		break;
	case TOP_SORT_BYTES:
		dx = x->in_s + x->out_s, dy = y->in_s + y->out_s;
		break;
	default:
		dx = x->errors_s, dy = y->errors_s;
		break;
	}
	return dx < dy ? 1 : dx > dy ? -1 : strcmp(x->name, y->name);
}

/* 1234 -> "1234", 12345 -> "12.3K": a rate in at most 6 columns. */
static void human(double v, char buf[16]) {
	static const char units[] = " KMGTP";
	int u = 0;
	while (v >= 10000 && u < 5) {
		v /= 1000;
		u++;
	}
	if (u == 0)
		snprintf(buf, 16, v < 10 && v != (double)(uint64_t)v ? "%.1f" : "%.0f", v);
	else
		snprintf(buf, 16, "%.1f%c", v, units[u]);
}

/* The cluster key's service part ("host:port|plain|..." -> "host:port plain"), cut to
 * `width` bytes with a "~" when longer, never inside a UTF-8 sequence (a lone continuation
 * byte could read as a C1 control). `buf` holds width + 1 bytes. */
static void name_cell(const char *name, size_t width, char *buf) {
	char tmp[256];
	snprintf(tmp, sizeof tmp, "%s", name);
	char *bar = strchr(tmp, '|');
	if (bar) {
		*bar = ' ';
		char *bar2 = strchr(bar + 1, '|');
		if (bar2)
			*bar2 = 0;
	}
	size_t len = strlen(tmp);
	if (len > width) {
		len = width - 1;
		while (len > 0 && ((unsigned char)tmp[len] & 0xc0) == 0x80)
			len--;
		tmp[len++] = '~';
	}
	memcpy(buf, tmp, len);
	buf[len] = 0;
}

#define NAME_WIDTH 30
static void draw(FILE *out, struct top_snapshot *s, enum top_sort sort, bool tty, int rows_max,
                 const char *problem) {
	static const char *const sort_names[] = {"active", "conn/s", "bytes/s", "errors/s", "name"};
	time_t now = time(NULL);
	struct tm tm;
	char clock[16];
	strftime(clock, sizeof clock, "%H:%M:%S", localtime_r(&now, &tm));

	sort_key = sort;
	if (s->n > 1)
		qsort(s->rows, s->n, sizeof(*s->rows), row_compare);
	if (tty)
		fputs("\033[H\033[2J", out);
	fprintf(out, "tcpmap top  %s  %zu clusters  sort: %s  keys: a c b e n, q quits\n", clock,
	        s->n, sort_names[sort]);
	if (problem)
		fprintf(out, "(%s)\n", problem);
	fprintf(out, "%s%-*s %6s %9s %7s %7s %7s %6s%s\n", tty ? "\033[7m" : "", NAME_WIDTH,
	        "CLUSTER", "ACTIVE", "USE/MAX", "CONN/S", "IN B/S", "OUT B/S", "ERR/S",
	        tty ? "\033[0m" : "");
	for (size_t i = 0; i < s->n && (rows_max <= 0 || (int)i < rows_max); i++) {
		const struct top_row *r = &s->rows[i];
		char name[NAME_WIDTH + 1], use[24], c[16], in[16], o[16], e[16];
		name_cell(r->name, NAME_WIDTH, name);
		if (r->max_connections)
			snprintf(use, sizeof use, "%u/%u", r->active + r->pending,
			         r->max_connections);
		else
			snprintf(use, sizeof use, "%u/-", r->active + r->pending);
		human(r->conns_s, c);
		human(r->in_s, in);
		human(r->out_s, o);
		human(r->errors_s, e);
		fprintf(out, "%-*s %6u %9s %7s %7s %7s %6s\n", NAME_WIDTH, name, r->active, use, c,
		        in, o, e);
	}
	if (!tty)
		fputc('\n', out);
	fflush(out);
}

int top_run(int dir_fd, uid_t dir_owner, int in_fd, FILE *out, const struct top_options *o) {
	struct top_snapshot before = {0};
	struct termios saved, raw;
	bool tty = isatty(fileno(out)) && isatty(in_fd);
	bool raw_set = false;
	enum top_sort sort = o->sort;
	unsigned delay = MAX(o->delay_msec, 100u);

	int r = snapshot_take(dir_fd, dir_owner, &before);
	if (r < 0)
		return r;
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	(void)sigaction(SIGINT, &sa, NULL);
	(void)sigaction(SIGTERM, &sa, NULL);
	(void)sigaction(SIGHUP, &sa, NULL);
	if (tty && tcgetattr(in_fd, &saved) == 0) {
		raw = saved;
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		raw_set = tcsetattr(in_fd, TCSANOW, &raw) == 0;
		fputs("\033[?25l", out); /* no cursor while drawing */
	}

	/* the first screen at once, with no rates yet */
	draw(out, &before, sort, tty, 0, NULL);
	if (before.n > 1)
		qsort(before.rows, before.n, sizeof(*before.rows), row_compare_pos);
	for (unsigned it = 1; !top_stop && (o->iterations == 0 || it < o->iterations); it++) {
		uint64_t wake = mono_msec() + delay;
		while (!top_stop) {
			uint64_t t = mono_msec();
			if (t >= wake)
				break;
			struct pollfd pfd = {.fd = in_fd, .events = POLLIN};
			int n = poll(&pfd, tty ? 1 : 0, (int)(wake - t));
			if (n <= 0)
				continue;
			char key;
			if (read(in_fd, &key, 1) != 1)
				continue;
			if (key == 'q' || key == 'Q') {
				top_stop = 1;
				break;
			}
			int s = top_sort_from_key(key);
			if (s >= 0) {
				/* at once, from the last snapshot; back in entry order after */
				sort = s;
				draw(out, &before, sort, tty, 0, NULL);
				if (before.n > 1)
					qsort(before.rows, before.n, sizeof(*before.rows),
					      row_compare_pos);
			}
		}
		if (top_stop)
			break;
		int rows_max = 0;
		struct winsize ws;
		if (tty && ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_row > 3)
			rows_max = ws.ws_row - 3;
		struct top_snapshot next;
		if (snapshot_take(dir_fd, dir_owner, &next) < 0) {
			draw(out, &before, sort, tty, rows_max,
			     "the table could not be read; showing the last snapshot");
		} else {
			rates(&next, &before);
			snapshot_free(&before);
			before = next;
			draw(out, &before, sort, tty, rows_max, NULL);
		}
		/* the next rates look rows up by entry index */
		if (before.n > 1)
			qsort(before.rows, before.n, sizeof(*before.rows), row_compare_pos);
	}

	if (tty) {
		fputs("\033[?25h\n", out);
		fflush(out);
	}
	if (raw_set)
		(void)tcsetattr(in_fd, TCSANOW, &saved);
	snapshot_free(&before);
	return 0;
}
