/* accesslog.h — a connection's access-log entry (event=close, MESSAGE_ID TCPMAP_MID_CLOSE):
 * its fields, its message and its level, written in one place for every process that ends a
 * connection (a worker, a forked relay, a spawned relay).
 *
 * It only formats and logs what it is given: it never reads a socket or the breaker table. */
#pragma once

#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "result.h"

struct accesslog_entry {
	const char *mapping;             /* NULL: none was chosen ("-") */
	const struct sockaddr *client;   /* NULL: unknown ("-") */
	const char *sni;                 /* NULL: the client sent none */
	const struct sockaddr *upstream; /* NULL: never connected; `service` is logged */
	const char *service;             /* NULL: "-" */
	uint64_t bytes_in, bytes_out;    /* client to upstream, upstream to client */
	uint64_t duration_ms;
	enum conn_result result;
	pid_t pid; /* a relay process's own pid; 0 in tcpmapd */
};

void accesslog_close(const struct accesslog_entry *e);
