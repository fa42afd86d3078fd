/* result.h — how a connection ended: one enum, one name for each in the access log
 * (TCPMAP_RESULT=, documented in tcpmapd(8)), and which of them an upstream is blamed for.
 * Pure: no state, no I/O. */
#pragma once

#include <stdbool.h>

/* How a connection ended: TCPMAP_RESULT= in its access-log entry (see tcpmapd(8)). */
enum conn_result {
	CONN_RESULT_OK,               /* relayed until a side closed or reset */
	CONN_RESULT_IDLE_TIMEOUT,     /* no byte in either direction for idle_timeout_ms */
	CONN_RESULT_CONNECT_FAILED,   /* the upstream refused, or did not resolve */
	CONN_RESULT_CONNECT_TIMEOUT,  /* not connected within connect_timeout_ms */
	CONN_RESULT_BREAKER_OVERFLOW, /* the cluster's circuit breaker is open */
	CONN_RESULT_UNKNOWN_SNI,      /* no mapping for the SNI (or for none) */
	CONN_RESULT_NOT_TLS,          /* a TLS-only port got something else */
	CONN_RESULT_HANDSHAKE_FAILED, /* a TLS handshake with either side failed */
	CONN_RESULT_PREREAD_TIMEOUT,  /* no ClientHello within preread_timeout_ms */
	CONN_RESULT_NO_LISTENER,      /* accepted on a socket no mapping listens on */
	CONN_RESULT_NO_ROUTE,         /* no mapping group of the listener takes it */
	CONN_RESULT_NO_WEIGHT,        /* every mapping of its group has weight 0 */
	CONN_RESULT_SHED,             /* this process is out of fds or memory */
	CONN_RESULT_INTERNAL_ERROR,   /* a socket could not be watched (epoll) */
	CONN_RESULT_DRAIN_TIMEOUT,    /* still open when a stop's drain time ran out */
	CONN_RESULT_ADOPT_FAILED,     /* could not be taken over from the fd store */
	CONN_RESULT_SHUTDOWN,         /* closed by a stop with no drain configured */
	CONN_RESULT_BAD_HELLO,        /* a malformed or oversized ClientHello: alerted */
	_CONN_RESULT_MAX,
};

/* The name in the log; "?" for a value out of range. */
const char *conn_result_name(enum conn_result r);
/* Is it the upstream's fault, before it was ever connected? What its circuit breaker
 * counts as a connect failure, and what is logged as upstream_failed. */
bool conn_result_is_upstream_failure(enum conn_result r);
