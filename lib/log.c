/* log.c — journald or logfmt. Must never block the relay for long and never log key material. */
#include "log.h"

#include <ctype.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

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
int log_get_max_level(void) { return log_max_level; }

static const char *level_name(int priority) {
	static const char *const names[] = {"emerg", "alert", "crit", "err",
					    "warning", "notice", "info", "debug"};
	return names[priority & 7];
}

/* logfmt quoting: bare when safe, else double-quoted with \" and \\ escaped and control
 * characters dropped, so a hostile SNI cannot forge a second log line. */
static void put_logfmt_value(FILE *f, const char *v) {
	bool bare = *v != '\0';
	for (const char *p = v; *p; p++)
		if (*p == ' ' || *p == '"' || *p == '=' || *p == '\\' || !isprint((unsigned char)*p)) {
			bare = false;
			break;
		}
	if (bare) {
		fputs(v, f);
		return;
	}
	fputc('"', f);
	for (const char *p = v; *p; p++) {
		if (*p == '"' || *p == '\\')
			fputc('\\', f);
		if (isprint((unsigned char)*p) || *p == '"' || *p == '\\')
			fputc(*p, f);
		else
			fputc('?', f);
	}
	fputc('"', f);
}

static void emit(int priority, const char *message_id, const char *event,
		 const struct log_field *fields, size_t n_fields, const char *message) {
	if (log_target == LOG_TARGET_JOURNAL) {
		/* MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, MESSAGE_ID, TCPMAP_EVENT + fields */
		struct iovec iov[5 + 16];
		char buf[5 + 16][512];
		size_t n = 0;

		snprintf(buf[n], sizeof buf[n], "MESSAGE=%s", message);
		n++;
		snprintf(buf[n], sizeof buf[n], "PRIORITY=%d", priority);
		n++;
		snprintf(buf[n], sizeof buf[n], "SYSLOG_IDENTIFIER=%s", log_ident);
		n++;
		if (message_id) {
			snprintf(buf[n], sizeof buf[n], "MESSAGE_ID=%s", message_id);
			n++;
		}
		if (event) {
			snprintf(buf[n], sizeof buf[n], "TCPMAP_EVENT=%s", event);
			n++;
		}
		for (size_t i = 0; i < n_fields && n < ELEMENTSOF(buf); i++) {
			if (!fields[i].value)
				continue;
			snprintf(buf[n], sizeof buf[n], "TCPMAP_%s=%s", fields[i].key, fields[i].value);
			n++;
		}
		for (size_t i = 0; i < n; i++)
			iov[i] = (struct iovec){.iov_base = buf[i], .iov_len = strlen(buf[i])};
		if (sd_journal_sendv(iov, (int)n) >= 0)
			return;
		/* journal gone: fall through to stderr rather than lose the line */
	}

	/* One fprintf-built line written with a single write so threads do not interleave. */
	char *line = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&line, &len);
	if (!f)
		return;
	fprintf(f, "level=%s", level_name(priority));
	if (event)
		fprintf(f, " event=%s", event);
	for (size_t i = 0; i < n_fields; i++) {
		if (!fields[i].value)
			continue;
		fputc(' ', f);
		for (const char *k = fields[i].key; *k; k++)
			fputc(tolower((unsigned char)*k), f);
		fputc('=', f);
		put_logfmt_value(f, fields[i].value);
	}
	fputs(" msg=", f);
	put_logfmt_value(f, message);
	fputc('\n', f);
	fclose(f);
	if (line) {
		ssize_t _unused_ r = write(STDERR_FILENO, line, len);
		free(line);
	}
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
