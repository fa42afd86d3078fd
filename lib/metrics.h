/* metrics.h — the breaker table as Prometheus scrapes it: the text exposition format 0.0.4,
 * or OpenMetrics 1.0.0, for `tcpmapctl metrics` and the tcpmap-metrics@.service handler. */
#pragma once

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

struct breaker_table;

enum metrics_format {
	METRICS_FORMAT_PROMETHEUS, /* text/plain; version=0.0.4 */
	METRICS_FORMAT_OPENMETRICS,
	_METRICS_FORMAT_MAX,
};

/* The Content-Type header value of a format. */
const char *metrics_content_type(enum metrics_format f);

/* Write `s` (`len` bytes) as a label value's inside: backslash, double quote and newline
 * escaped as the formats require, and bytes that are not well-formed UTF-8 as U+FFFD, so
 * that a name from a config can never end the value or the line early. */
void metrics_label_value(FILE *out, const char *s, size_t len);

/* Every metric of table `t` (opened read-only) to `out`. Returns 0, or -EIO when writing
 * failed, -ENOMEM. */
int metrics_write(struct breaker_table *t, FILE *out, enum metrics_format f);

/* Open the table `breakers` in `dir_fd` (rundir_open_for_reading(), owned by `dir_owner`)
 * and write its metrics; errors as in status_print() (status.h). */
int metrics_print(int dir_fd, uid_t dir_owner, FILE *out, enum metrics_format f);
