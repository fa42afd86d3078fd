/* log.h — one logging API for every program: journald with structured fields when the
 * journal is our stderr (or asked for), else logfmt lines on stderr.
 *
 * Library code logs decisions once, where they are made; helpers return -errno and stay quiet. */
#pragma once

#include <stddef.h>
#include <syslog.h>

#include "util.h"

enum log_target {
	LOG_TARGET_AUTO,
	LOG_TARGET_JOURNAL,
	LOG_TARGET_STDERR,
};

/* Fixed MESSAGE_IDs so `journalctl MESSAGE_ID=…` finds one kind of event. Never change one. */
#define TCPMAP_MID_ACCEPT "e5ce0c5a58ae40168eba9180886d55de"
#define TCPMAP_MID_CLOSE "53e68adcd31347bea852302b8bb4a825"
#define TCPMAP_MID_CONFIG "65aaddb09d0343aa9eebadb53a313b36"
#define TCPMAP_MID_CONFIG_REJECTED "8a30314491d54d78b64d389de55dfad0"
#define TCPMAP_MID_OVERFLOW "a81c5327b0c3417682264c3138767306"
#define TCPMAP_MID_UPSTREAM_FAILED "1822719f8017442484dfd2f3ccbf2bf3"
#define TCPMAP_MID_FAILOVER "3e182dbf769e42b5bcc27337d45a6f23"
#define TCPMAP_MID_LIFECYCLE "302f5cb9ca65402fbc3720de355bbebe"
#define TCPMAP_MID_ADOPT "f33e13cd360b400a92d085f1c805d74a"
#define TCPMAP_MID_SHED "daa28fc237ad4871956e4048da650695"

/* Parse "auto", "journal" or "stderr". Returns 0 or -EINVAL. */
int log_target_from_string(const char *s, enum log_target *ret);
const char *log_target_to_string(enum log_target t);

/* Choose where logs go. AUTO picks the journal when $JOURNAL_STREAM names our stderr. */
void log_setup(enum log_target target, const char *ident);
enum log_target log_get_target(void);
void log_set_max_level(int priority);
/* Before the process exits: with the journal as the target, wait (a second at most) until
 * journald has read what was sent, so that the last entries keep their unit (journal.h,
 * journal_wait_taken). Nothing to do for stderr. */
void log_flush(void);
/* In a forked child that logs and exits (a relay): its own journal socket, so that its
 * log_flush() waits for its own entries only, not for its siblings'. */
void log_own_journal_socket(void);
int log_get_max_level(void);

/* Plain message. Returns 0 so callers can `return log_msg(...)` where that reads well. */
int log_msg(int priority, const char *fmt, ...) _printf_(2, 3);
/* Message with errno appended as ": strerror"; returns -abs(err) (or -EIO if err is 0). */
int log_errno(int priority, int err, const char *fmt, ...) _printf_(3, 4);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_error_errno(err, ...) log_errno(LOG_ERR, (err), __VA_ARGS__)
#define log_warning_errno(err, ...) log_errno(LOG_WARNING, (err), __VA_ARGS__)

/* A structured field. `key` is the suffix after TCPMAP_ in the journal ("MAPPING" becomes
 * TCPMAP_MAPPING) and is lower-cased for logfmt ("mapping=..."). NULL values are skipped. */
struct log_field {
	const char *key;
	const char *value;
};

/* One structured event: TCPMAP_EVENT=event, MESSAGE_ID=message_id, the fields, and MESSAGE. */
void log_event(int priority, const char *message_id, const char *event,
               const struct log_field *fields, size_t n_fields, const char *fmt, ...)
        _printf_(6, 7);
