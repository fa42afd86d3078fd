/* relaywatch.c — what a relaying connection's sockets are watched for; see relaywatch.h.
 * Must never touch a socket's bytes or end a connection: it only decides and changes what
 * epoll reports. */
#include "relaywatch.h"

#include <sys/socket.h>

/* Which directions an event on the client (or upstream) socket concerns: the one reading
 * from it when it is readable, and the one writing to it when it is writable. A writable
 * socket matters only to a direction with bytes waiting in its pipe: one with none has
 * read its source to the end, and that source's own event will say when there is more.
 * Without this, each ACK that frees send space would cost a read that can only say EAGAIN. */
int relaywatch_pump_mask(const struct relay *r, bool tls, uint32_t revents, bool client_side) {
	if (revents & (EPOLLERR | EPOLLHUP))
		return PUMP_BOTH;
	int reads = client_side ? PUMP_UP : PUMP_DOWN, writes = client_side ? PUMP_DOWN : PUMP_UP;
	int mask = revents & EPOLL_READABLE ? reads : 0; /* ERR and HUP returned above */
	if (revents & EPOLLOUT) {
		const struct relay_direction *d = writes == PUMP_UP ? &r->up : &r->down;
		if (tls || d->in_pipe > 0)
			mask |= writes;
	}
	return mask;
}

int relaywatch_idle_out(const struct relay *r, uint32_t revents, bool client_side) {
	if (!(revents & EPOLLOUT))
		return 0;
	int writes = client_side ? PUMP_DOWN : PUMP_UP;
	return (writes == PUMP_UP ? &r->up : &r->down)->in_pipe == 0 ? writes : 0;
}

/* Only what can make a pump move bytes is watched; every other edge would wake the worker
 * for a pump that finds nothing to do (bench/RESULTS.md, 2026-12-06):
 * - no EPOLLIN while the pipe the socket feeds is full (relay_direction_full): the pipe
 *   waits for its destination's EPOLLOUT, and each segment the sender adds meanwhile would
 *   be a wake-up;
 * - no EPOLLOUT once one came while the direction writing to the socket had nothing in its
 *   pipe (`idle_out`, PUMP_* of that direction), until it has bytes waiting again: send
 *   space freed after the pipe was emptied by another event is news to no one.
 * An event added back that is already pending is reported at once (poller_modify), so no
 * edge is lost. A reset or error (EPOLLERR, EPOLLHUP) is reported whatever the mask, but
 * may come while no pump can touch its socket (the pipe it feeds full, nothing to send it):
 * relaywatch_failed() then asks the socket itself, since that edge never comes again. */
void relaywatch_wanted(const struct relay *r, int idle_out, uint8_t client_unwatched,
                       uint8_t upstream_unwatched, uint8_t *ret_client, uint8_t *ret_upstream) {
	const struct relay_direction *up = &r->up, *down = &r->down;
	bool client_no_out =
	        down->in_pipe == 0 && ((client_unwatched & WATCH_NO_OUT) || (idle_out & PUMP_DOWN));
	bool upstream_no_out =
	        up->in_pipe == 0 && ((upstream_unwatched & WATCH_NO_OUT) || (idle_out & PUMP_UP));

	*ret_client =
	        (relay_direction_full(up) ? WATCH_NO_IN : 0) | (client_no_out ? WATCH_NO_OUT : 0);
	*ret_upstream = (relay_direction_full(down) ? WATCH_NO_IN : 0) |
	                (upstream_no_out ? WATCH_NO_OUT : 0);
}

uint32_t relaywatch_events(uint8_t unwatched) {
	return EPOLLRDHUP | EPOLLET | (unwatched & WATCH_NO_IN ? 0 : EPOLLIN) |
	       (unwatched & WATCH_NO_OUT ? 0 : EPOLLOUT);
}

int relaywatch_set(struct poller *p, int fd, struct poller_handle *h, uint8_t *unwatched,
                   uint8_t want) {
	if (*unwatched == want || fd < 0)
		return 0;
	int r = poller_modify(p, fd, relaywatch_events(want), h);
	if (r == 0)
		*unwatched = want;
	return r;
}

bool relaywatch_failed(int fd, uint32_t revents) {
	int err = 0;
	socklen_t len = sizeof err;

	return fd >= 0 && (revents & (EPOLLERR | EPOLLHUP)) &&
	       getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0;
}
