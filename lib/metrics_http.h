/* metrics_http.h — one HTTP/1.x request read by the tcpmap-metrics@.service handler, and its
 * answer: GET (or HEAD) of /metrics, in the format the request's Accept: header asks for.
 *
 * The parser is pure: it takes the bytes received so far and never reads a socket.
 * Contract (checked by tests/unit/test-metrics.c and tests/fuzz/fuzz-metrics-http.c):
 *   - METRICS_HTTP_NEED_MORE while no line is complete and nothing seen is invalid: the same
 *     bytes with more after them may still parse;
 *   - METRICS_HTTP_BAD as soon as what is there can never be a valid request head (a bad
 *     request line, a control byte, a header line without a colon), whatever follows;
 *   - METRICS_HTTP_DONE once the head's blank line is in: *ret is filled, and bytes after
 *     the head (a body) are ignored;
 *   - a result other than NEED_MORE stays the same for every longer buffer with this prefix.
 * The caller bounds the size (METRICS_HTTP_MAX) and the time. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define METRICS_HTTP_MAX 8192u          /* the largest request head read */
#define METRICS_HTTP_TIMEOUT_MSEC 5000u /* for the whole head */

enum metrics_http_parse {
	METRICS_HTTP_NEED_MORE,
	METRICS_HTTP_DONE,
	METRICS_HTTP_BAD,
};

enum metrics_http_method {
	METRICS_HTTP_GET,
	METRICS_HTTP_HEAD,
	METRICS_HTTP_OTHER, /* answered 405 */
};

struct metrics_http_request {
	enum metrics_http_method method;
	bool metrics_path; /* /metrics, with or without a query */
	bool openmetrics;  /* Accept: lists application/openmetrics-text, q not 0 */
};

enum metrics_http_parse metrics_http_parse(const char *buf, size_t len,
                                           struct metrics_http_request *ret);

/* The status line's code for a parsed request: 200, 404 or 405. */
int metrics_http_status(const struct metrics_http_request *req);

/* What a 200 answers with: the body written to `out` in OpenMetrics or not, and its
 * Content-Type; 0 or -errno (then 503). This file knows nothing of what the body says. */
typedef int (*metrics_http_body_t)(void *userdata, bool openmetrics, FILE *out,
                                   const char **ret_content_type);

/* Serve one request on `in_fd`/`out_fd` (a socket from systemd's Accept=yes, as stdin and
 * stdout): read the head within the bounds above, answer 200 with what `body` writes, 404,
 * 405, 400, 431, or 503 when `body` fails. A client that sends nothing is let go at the
 * timeout with no answer. Returns 0 once something was answered or the client gave up, or
 * -errno (the body's error after its 503 was sent). */
int metrics_http_serve(int in_fd, int out_fd, metrics_http_body_t body, void *userdata);
