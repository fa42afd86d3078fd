/* relayproc.h — the whole life of one spawned relay process (relayspawn.h): a cleartext
 * connection whose two sockets it was handed, relayed until it ends, then its breaker slot
 * released and its access-log entry written.
 *
 * Its loop is epoll on the two sockets and a signalfd, nothing more: no sd-event, no
 * timers, no worker. The idle deadline and a stop's drain time are the epoll_wait timeout.
 * A forked process pays for every page it touches and every system call it makes, and this
 * process exists for one connection only (issue 20).
 *
 * The same semantics as a worker's relay (conn.c): half-close kept (relay.h), the idle
 * timeout from the last byte moved (result idle_timeout), SIGTERM or SIGINT ending it at
 * once (shutdown) or after the Module's drain_timeout_ms (drain_timeout), a reset or the
 * end of both directions ending it as ok. It knows nothing of the config or of TLS. */
#pragma once

#include "breaker.h"
#include "relayspawn.h"

/* Relay the connection of `o` and _exit(): never returns. SIGTERM and SIGINT must be
 * blocked (the spawner blocks them before it forks its standby children). */
_Noreturn void relayproc_run(struct breaker_table *t, const struct relay_order *o, int client_fd,
                             int upstream_fd);
