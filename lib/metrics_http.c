/* metrics_http.c — the one HTTP request a tcpmap-metrics@.service process answers.
 *
 * Just enough HTTP/1.x for a Prometheus scrape: a request line, headers (only Accept: is
 * read), and an answer with Content-Length and Connection: close. It must never read more
 * than METRICS_HTTP_MAX bytes nor wait past METRICS_HTTP_TIMEOUT_MSEC, and never echo a
 * byte of the request back. */
#include "metrics_http.h"

#include <poll.h>
#include <strings.h>
#include <time.h>

#include "util.h"

/* A token character (RFC 9110 5.6.2): what a method may be made of. */
static bool is_tchar(char c) {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static size_t trimmed(const char **p, size_t len) {
	while (len > 0 && (**p == ' ' || **p == '\t'))
		(*p)++, len--;
	while (len > 0 && ((*p)[len - 1] == ' ' || (*p)[len - 1] == '\t'))
		len--;
	return len;
}

/* Is q=0 (or 0.0...) among the parameters `params` of one Accept: element? */
static bool q_is_zero(const char *params, size_t len) {
	while (len > 0) {
		const char *semi = memchr(params, ';', len);
		size_t n = semi ? (size_t)(semi - params) : len;
		const char *param = params;
		size_t plen = trimmed(&param, n);
		if (plen >= 3 && (param[0] == 'q' || param[0] == 'Q') && param[1] == '=') {
			size_t zeros = plen > 4 && param[3] == '.' ? strspn(param + 4, "0") : 0;
			return param[2] == '0' &&
			       (plen == 3 || (param[3] == '.' && 4 + zeros == plen));
		}
		params += semi ? n + 1 : n;
		len -= semi ? n + 1 : n;
	}
	return false;
}

/* Does the Accept: value ask for OpenMetrics? An element of that media type, with any
 * parameters, unless its q is 0. Preference among several types is not weighed: a
 * scraper that lists OpenMetrics at all gets it, as Prometheus itself asks. */
static bool accepts_openmetrics(const char *v, size_t len) {
	static const char want[] = "application/openmetrics-text";
	while (len > 0) {
		const char *comma = memchr(v, ',', len);
		size_t n = comma ? (size_t)(comma - v) : len;
		const char *semi = memchr(v, ';', n);
		const char *type = v;
		size_t type_len = trimmed(&type, semi ? (size_t)(semi - v) : n);
		if (type_len == sizeof want - 1 && strncasecmp(type, want, type_len) == 0)
			return !semi || !q_is_zero(semi + 1, n - (size_t)(semi + 1 - v));
		v += comma ? n + 1 : n;
		len -= comma ? n + 1 : n;
	}
	return false;
}

static enum metrics_http_parse parse_request_line(const char *p, size_t len,
                                                  struct metrics_http_request *ret) {
	size_t m = 0;
	while (m < len && is_tchar(p[m]))
		m++;
	if (m == 0 || m >= len || p[m] != ' ')
		return METRICS_HTTP_BAD;
	ret->method = m == 3 && memcmp(p, "GET", 3) == 0    ? METRICS_HTTP_GET
	              : m == 4 && memcmp(p, "HEAD", 4) == 0 ? METRICS_HTTP_HEAD
	                                                    : METRICS_HTTP_OTHER;
	const char *target = p + m + 1;
	const char *sp = memchr(target, ' ', len - m - 1);
	if (!sp || sp == target)
		return METRICS_HTTP_BAD;
	size_t target_len = (size_t)(sp - target);
	size_t version_len = len - m - 1 - target_len - 1;
	const char *version = sp + 1;
	if (version_len != 8 || memcmp(version, "HTTP/1.", 7) != 0 ||
	    (version[7] != '0' && version[7] != '1'))
		return METRICS_HTTP_BAD;
	size_t path_len = target_len;
	const char *q = memchr(target, '?', target_len);
	if (q)
		path_len = (size_t)(q - target);
	ret->metrics_path = path_len == 8 && memcmp(target, "/metrics", 8) == 0;
	return METRICS_HTTP_DONE;
}

enum metrics_http_parse metrics_http_parse(const char *buf, size_t len,
                                           struct metrics_http_request *ret) {
	struct metrics_http_request req = {.openmetrics = false};
	size_t pos = 0;
	bool first = true;

	if (!buf || !ret)
		return METRICS_HTTP_BAD;
	for (;;) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t line_end = nl ? (size_t)(nl - buf) : len;
		/* a control byte anywhere seen so far is fatal, whether or not the line is done */
		for (size_t i = pos; i < line_end; i++) {
			unsigned char c = (unsigned char)buf[i];
			if ((c < 0x20 && c != '\t' && !(c == '\r' && i + 1 == line_end && nl)) ||
			    c == 0x7f)
				return c == '\r' && !nl && i + 1 == len ? METRICS_HTTP_NEED_MORE
				                                        : METRICS_HTTP_BAD;
		}
		if (!nl)
			return METRICS_HTTP_NEED_MORE;
		size_t n = line_end - pos;
		if (n > 0 && buf[line_end - 1] == '\r')
			n--;
		const char *line = buf + pos;
		pos = line_end + 1;
		if (first) {
			if (parse_request_line(line, n, &req) == METRICS_HTTP_BAD)
				return METRICS_HTTP_BAD;
			first = false;
			continue;
		}
		if (n == 0) {
			*ret = req;
			return METRICS_HTTP_DONE;
		}
		const char *colon = memchr(line, ':', n);
		if (!colon || colon == line || line[0] == ' ' || line[0] == '\t')
			return METRICS_HTTP_BAD; /* no obsolete line folding either */
		for (const char *c = line; c < colon; c++)
			if (!is_tchar(*c))
				return METRICS_HTTP_BAD;
		if (colon - line == 6 && strncasecmp(line, "Accept", 6) == 0 &&
		    accepts_openmetrics(colon + 1, n - (size_t)(colon + 1 - line)))
			req.openmetrics = true;
	}
}

int metrics_http_status(const struct metrics_http_request *req) {
	if (!req->metrics_path)
		return 404;
	return req->method == METRICS_HTTP_OTHER ? 405 : 200;
}

static uint64_t now_msec(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int write_all(int fd, const char *p, size_t len) {
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int respond(int fd, int status, const char *reason, const char *content_type,
                   const char *body, size_t body_len, bool head_only) {
	_cleanup_free_ char *head = NULL;
	int n = asprintf(&head,
	                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
	                 "Connection: close\r\n\r\n",
	                 status, reason, content_type, body_len,
	                 status == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (n < 0) {
		head = NULL;
		return -ENOMEM;
	}
	int r = write_all(fd, head, (size_t)n);
	if (r >= 0 && !head_only)
		r = write_all(fd, body, body_len);
	return r;
}

static int respond_text(int fd, int status, const char *reason, bool head_only) {
	char body[64];
	int n = snprintf(body, sizeof body, "%d %s\n", status, reason);
	return respond(fd, status, reason, "text/plain; charset=utf-8", body, (size_t)n, head_only);
}

int metrics_http_serve(int in_fd, int out_fd, metrics_http_body_t body_writer, void *userdata) {
	char buf[METRICS_HTTP_MAX];
	size_t len = 0;
	struct metrics_http_request req;
	enum metrics_http_parse p = METRICS_HTTP_NEED_MORE;
	uint64_t deadline = now_msec() + METRICS_HTTP_TIMEOUT_MSEC;

	while (p == METRICS_HTTP_NEED_MORE) {
		if (len == sizeof buf)
			return respond_text(out_fd, 431, "Request Header Fields Too Large", false);
		uint64_t now = now_msec();
		if (now >= deadline)
			/* nothing useful came: say so if anything came at all */
			return len ? respond_text(out_fd, 408, "Request Timeout", false) : 0;
		struct pollfd pfd = {.fd = in_fd, .events = POLLIN};
		int r = poll(&pfd, 1, (int)(deadline - now));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			continue;
		ssize_t n = read(in_fd, buf + len, sizeof buf - len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0; /* the client gave up */
		len += (size_t)n;
		p = metrics_http_parse(buf, len, &req);
	}
	if (p == METRICS_HTTP_BAD)
		return respond_text(out_fd, 400, "Bad Request", false);
	bool head_only = req.method == METRICS_HTTP_HEAD;
	switch (metrics_http_status(&req)) {
	case 404:
		return respond_text(out_fd, 404, "Not Found", head_only);
	case 405:
		return respond_text(out_fd, 405, "Method Not Allowed", false);
	default:
		break;
	}

	_cleanup_free_ char *body = NULL;
	size_t size = 0;
	FILE *mem = open_memstream(&body, &size);
	if (!mem)
		return -ENOMEM;
	const char *content_type = "text/plain; charset=utf-8";
	int r = body_writer(userdata, req.openmetrics, mem, &content_type);
	if (fclose(mem) != 0 && r >= 0)
		r = -ENOMEM;
	if (r < 0) {
		(void)respond_text(out_fd, 503, "Service Unavailable", head_only);
		return r;
	}
	return respond(out_fd, 200, "OK", content_type, body, size, head_only);
}
