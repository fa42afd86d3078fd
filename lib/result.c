/* result.c — the names of enum conn_result; see result.h. Must never rename one: operators
 * and tests match them in the journal. */
#include "result.h"

#include <stddef.h>

#include "util.h"

static const char *const result_names[_CONN_RESULT_MAX] = {
        [CONN_RESULT_OK] = "ok",
        [CONN_RESULT_IDLE_TIMEOUT] = "idle_timeout",
        [CONN_RESULT_CONNECT_FAILED] = "connect_failed",
        [CONN_RESULT_CONNECT_TIMEOUT] = "connect_timeout",
        [CONN_RESULT_BREAKER_OVERFLOW] = "breaker_overflow",
        [CONN_RESULT_UNKNOWN_SNI] = "unknown_sni",
        [CONN_RESULT_NOT_TLS] = "not_tls",
        [CONN_RESULT_HANDSHAKE_FAILED] = "handshake_failed",
        [CONN_RESULT_PREREAD_TIMEOUT] = "preread_timeout",
        [CONN_RESULT_NO_LISTENER] = "no_listener",
        [CONN_RESULT_NO_ROUTE] = "no_route",
        [CONN_RESULT_NO_WEIGHT] = "no_weight",
        [CONN_RESULT_SHED] = "shed",
        [CONN_RESULT_INTERNAL_ERROR] = "internal_error",
        [CONN_RESULT_DRAIN_TIMEOUT] = "drain_timeout",
        [CONN_RESULT_ADOPT_FAILED] = "adopt_failed",
        [CONN_RESULT_SHUTDOWN] = "shutdown",
        [CONN_RESULT_BAD_HELLO] = "bad_hello",
};

const char *conn_result_name(enum conn_result r) {
	return (size_t)r < ELEMENTSOF(result_names) && result_names[r] ? result_names[r] : "?";
}

bool conn_result_is_upstream_failure(enum conn_result r) {
	return r == CONN_RESULT_CONNECT_FAILED || r == CONN_RESULT_CONNECT_TIMEOUT;
}
