/* relaywatch.h — what a relaying connection's two sockets are watched for, and which
 * directions of the relay an event on one of them concerns: a cleartext relay's sockets
 * are watched, as socket-proxyd's are, only for what can make a pump move bytes.
 *
 * It decides and changes epoll registrations only: it never reads, writes or closes a
 * socket, and never ends a connection (conn.c does, when a change fails). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "poller.h"
#include "relay.h"

/* The directions of a relay: up is client to upstream, down is upstream to client. */
enum { PUMP_UP = 1 << 0, PUMP_DOWN = 1 << 1, PUMP_BOTH = PUMP_UP | PUMP_DOWN };

/* Events that show the peer hung up or failed; with EPOLLIN, that the socket has something
 * for a read to find. */
#define EPOLL_HANGUP (EPOLLRDHUP | EPOLLHUP | EPOLLERR)
#define EPOLL_READABLE (EPOLLIN | EPOLL_HANGUP)

/* The events a socket is not watched for; 0 is the whole mask every socket is added with. */
enum { WATCH_NO_IN = 1 << 0, WATCH_NO_OUT = 1 << 1 };

/* Which directions (PUMP_*) the events `revents` on the client (or upstream) socket
 * concern. `tls`: the relay is a TLS one (`r` is then not read), which may need to write
 * to read and is told of every writable edge. */
int relaywatch_pump_mask(const struct relay *r, bool tls, uint32_t revents, bool client_side);

/* The direction (PUMP_*) that writes to the socket the events are on, when they say it is
 * writable while that direction has nothing in its pipe; else 0. Cleartext relays only. */
int relaywatch_idle_out(const struct relay *r, uint32_t revents, bool client_side);

/* What each socket of the cleartext relay `r` should not be watched for now (WATCH_NO_*),
 * given what it is not watched for already and `idle_out` (PUMP_*, relaywatch_idle_out()
 * of the event being handled). */
void relaywatch_wanted(const struct relay *r, int idle_out, uint8_t client_unwatched,
                       uint8_t upstream_unwatched, uint8_t *ret_client, uint8_t *ret_upstream);

/* Whether the events `revents` on the relaying socket `fd` tell of a reset or failure
 * (EPOLLERR or EPOLLHUP, with an error pending on the socket, SO_ERROR). Asked after the
 * pump: a pump touches a socket only to read what its pipe has room for or to write what
 * waits for it, so a reset that came while neither could happen (the pipe it feeds full
 * behind a peer that stopped reading, nothing due to it) is told by this one edge and never
 * again. The caller ends the relay then, as when the pump took the error itself. */
bool relaywatch_failed(int fd, uint32_t revents);

/* The epoll events (edge-triggered) of a socket not watched for `unwatched` (WATCH_NO_*). */
uint32_t relaywatch_events(uint8_t unwatched);

/* Watch `fd` (registered with `h`) for everything but `want` (WATCH_NO_*), when that is not
 * what *unwatched says already, and record it there. A closed side (fd < 0) is left alone.
 * Returns 0 or -errno (poller_modify's: only on a bug). */
int relaywatch_set(struct poller *p, int fd, struct poller_handle *h, uint8_t *unwatched,
                   uint8_t want);
