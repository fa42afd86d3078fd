/* log.c — journald or logfmt. Must never block the relay for long and never log key material. */
#include "log.h"

#include <ctype.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "journal.h"

static enum log_target log_target = LOG_TARGET_STDERR;
static int log_max_level = LOG_INFO;
static const char *log_ident = "tcpmap";

static const char *const target_names[] = {
        [LOG_TARGET_AUTO] = "auto",
        [LOG_TARGET_JOURNAL] = "journal",
        [LOG_TARGET_STDERR] = "stderr",
};

int log_target_from_string(const char *s, enum log_target *ret) {
	for (size_t i = 0; i < ELEMENTSOF(target_names); i++)
		if (streq(s, target_names[i])) {
			*ret = (enum log_target)i;
			return 0;
		}
	return -EINVAL;
}

const char *log_target_to_string(enum log_target t) {
	return (size_t)t < ELEMENTSOF(target_names) ? target_names[t] : "?";
}

/* systemd sets JOURNAL_STREAM=dev:ino for the stream it connected to stdout/stderr; when it
 * matches our stderr, native journal entries carry the same unit metadata and more fields. */
static bool stderr_is_journal(void) {
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return false;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_setup(enum log_target target, const char *ident) {
	if (ident)
		log_ident = ident;
	if (target == LOG_TARGET_AUTO)
		target = stderr_is_journal() ? LOG_TARGET_JOURNAL : LOG_TARGET_STDERR;
	log_target = target;
	const char *lvl = getenv("TCPMAP_LOG_LEVEL");
	if (lvl && streq(lvl, "debug"))
		log_max_level = LOG_DEBUG;
}

enum log_target log_get_target(void) { return log_target; }
void log_set_max_level(int priority) { log_max_level = priority; }

/* Bounded: a relay waits here after its connection is over, and a journald far behind must
 * not keep thousands of finished relays alive. Past it an entry may lose its unit. */
#define LOG_FLUSH_MAX_MS 250

void log_flush(void) {
	if (log_target == LOG_TARGET_JOURNAL)
		journal_wait_taken(LOG_FLUSH_MAX_MS);
}

void log_own_journal_socket(void) {
	if (log_target == LOG_TARGET_JOURNAL)
		(void)journal_open_own(); /* failed: the inherited one still works */
}
int log_get_max_level(void) { return log_max_level; }

static const char *level_name(int priority) {
	static const char *const names[] = {"emerg",   "alert",  "crit", "err",
	                                    "warning", "notice", "info", "debug"};
	return names[priority & 7];
}

/* A line under construction on the stack: the access log runs once per connection, and
 * stdio streams (open_memstream, a putc per character) cost more than the relay itself.
 * Overlong lines are cut, never overflowed. */
struct line {
	char buf[4096];
	size_t len;
};

static void line_put(struct line *l, const char *s, size_t n) {
	n = MIN(n, sizeof l->buf - 1 - l->len);
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void line_puts(struct line *l, const char *s) { line_put(l, s, strlen(s)); }

static void line_putc(struct line *l, char c) { line_put(l, &c, 1); }

static bool logfmt_bare(char c) {
	return c != ' ' && c != '"' && c != '=' && c != '\\' && isprint((unsigned char)c);
}

/* logfmt quoting: bare when safe, else double-quoted with \" and \\ escaped and control
 * characters replaced, so a hostile SNI cannot forge a second log line. */
static void line_put_value(struct line *l, const char *v) {
	const char *p = v;
	while (*p && logfmt_bare(*p))
		p++;
	if (*v && !*p) {
		line_put(l, v, (size_t)(p - v));
		return;
	}
	line_putc(l, '"');
	for (p = v; *p; p++) {
		if (*p == '"' || *p == '\\') {
			line_putc(l, '\\');
			line_putc(l, *p);
		} else
			line_putc(l, isprint((unsigned char)*p) ? *p : '?');
	}
	line_putc(l, '"');
}

/* One "KEY=value" segment of the buffer, as an iovec for journal_send. */
static void journal_field(struct line *l, struct iovec *iov, size_t *n, const char *key,
                          const char *key_suffix, const char *value) {
	size_t start = l->len;
	line_puts(l, key);
	line_puts(l, key_suffix);
	line_putc(l, '=');
	line_puts(l, value);
	iov[(*n)++] = (struct iovec){.iov_base = l->buf + start, .iov_len = l->len - start};
}

static void emit_stderr(int priority, const char *event, const struct log_field *fields,
                        size_t n_fields, const char *message) {
	struct line l;

	l.len = 0;
	line_puts(&l, "level=");
	line_puts(&l, level_name(priority));
	if (event) {
		line_puts(&l, " event=");
		line_puts(&l, event);
	}
	for (size_t i = 0; i < n_fields; i++) {
		if (!fields[i].value)
			continue;
		line_putc(&l, ' ');
		for (const char *k = fields[i].key; *k; k++)
			line_putc(&l, (char)tolower((unsigned char)*k));
		line_putc(&l, '=');
		line_put_value(&l, fields[i].value);
	}
	line_puts(&l, " msg=");
	line_put_value(&l, message);
	line_putc(&l, '\n');
	/* one write per line, so that threads never interleave within a line */
	ssize_t _unused_ w = write(STDERR_FILENO, l.buf, l.len);
}

static void emit(int priority, const char *message_id, const char *event,
                 const struct log_field *fields, size_t n_fields, const char *message) {
	if (log_target == LOG_TARGET_JOURNAL) {
		/* MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, MESSAGE_ID, TCPMAP_EVENT + fields */
		struct iovec iov[5 + 16];
		struct line l;
		size_t n = 0;
		char prio[2] = {(char)('0' + (priority & 7)), 0};

		l.len = 0;
		journal_field(&l, iov, &n, "MESSAGE", "", message);
		journal_field(&l, iov, &n, "PRIORITY", "", prio);
		journal_field(&l, iov, &n, "SYSLOG_IDENTIFIER", "", log_ident);
		if (message_id)
			journal_field(&l, iov, &n, "MESSAGE_ID", "", message_id);
		if (event)
			journal_field(&l, iov, &n, "TCPMAP_EVENT", "", event);
		for (size_t i = 0; i < n_fields && n < ELEMENTSOF(iov); i++)
			if (fields[i].value)
				journal_field(&l, iov, &n, "TCPMAP_", fields[i].key,
				              fields[i].value);
		if (journal_send(iov, n) >= 0)
			return;
		/* journal gone: fall through to stderr rather than lose the line */
	}
	emit_stderr(priority, event, fields, n_fields, message);
}

static void vlog(int priority, const char *message_id, const char *event,
                 const struct log_field *fields, size_t n_fields, const char *fmt, va_list ap) {
	char message[1024];

	if ((priority & 7) > log_max_level)
		return;
	vsnprintf(message, sizeof message, fmt, ap);
	emit(priority & 7, message_id, event, fields, n_fields, message);
}

int log_msg(int priority, const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	vlog(priority, NULL, NULL, NULL, 0, fmt, ap);
	va_end(ap);
	return 0;
}

int log_errno(int priority, int err, const char *fmt, ...) {
	char message[1024];
	va_list ap;

	err = err < 0 ? -err : err;
	if ((priority & 7) <= log_max_level) {
		va_start(ap, fmt);
		vsnprintf(message, sizeof message, fmt, ap);
		va_end(ap);
		log_msg(priority, "%s: %s", message, strerror(err ? err : EIO));
	}
	return err ? -err : -EIO;
}

void log_event(int priority, const char *message_id, const char *event,
               const struct log_field *fields, size_t n_fields, const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	vlog(priority, message_id, event, fields, n_fields, fmt, ap);
	va_end(ap);
}
