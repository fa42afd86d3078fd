/* fuzz-metrics-http.c — libFuzzer harness for the scrape's request parser
 * (lib/metrics_http.h), checking its written contract rather than only crashes: an answer
 * other than "need more" never changes for a longer buffer with the same prefix, a request
 * it accepts is answered 200, 404 or 405, and a whole buffer's answer is the one its every
 * prefix settled on. Violations are __builtin_trap(). Buffers are exact-size heap copies so
 * ASan sees overruns. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "metrics_http.h"

#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x))                                                                          \
			__builtin_trap();                                                          \
	} while (0)

static enum metrics_http_parse parse_copy(const uint8_t *data, size_t len,
                                          struct metrics_http_request *req) {
	char *copy = malloc(len ? len : 1);
	CHECK(copy);
	memcpy(copy, data, len);
	enum metrics_http_parse r = metrics_http_parse(copy, len, req);
	free(copy);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
	struct metrics_http_request req, again;

	if (size > METRICS_HTTP_MAX)
		size = METRICS_HTTP_MAX; /* the handler never reads more */
	enum metrics_http_parse whole = parse_copy(data, size, &req);
	CHECK(whole == METRICS_HTTP_NEED_MORE || whole == METRICS_HTTP_DONE ||
	      whole == METRICS_HTTP_BAD);
	if (whole == METRICS_HTTP_DONE) {
		int status = metrics_http_status(&req);
		CHECK(status == 200 || status == 404 || status == 405);
	}
	/* prefix stability: the first prefix with an answer has the whole buffer's answer */
	enum metrics_http_parse settled = METRICS_HTTP_NEED_MORE;
	for (size_t k = 0; k <= size && settled == METRICS_HTTP_NEED_MORE; k += 1 + k / 16) {
		settled = parse_copy(data, k, &again);
		if (settled != METRICS_HTTP_NEED_MORE) {
			CHECK(settled == whole);
			if (whole == METRICS_HTTP_DONE)
				CHECK(memcmp(&req, &again, sizeof req) == 0);
		}
	}
	return 0;
}
