/* poller.c — see poller.h. */
#include "poller.h"

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "util.h"

/* Events taken per wake-up. The outer loop gets a turn between batches, so timers and
 * accepting are never starved by busy sockets; what is left wakes the loop again at once
 * (the epoll fd stays readable). */
#define POLLER_BATCH 64

static int on_poller_ready(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
	struct poller *p = userdata;
	struct epoll_event ev[POLLER_BATCH];
	(void)src, (void)revents;

	int n = epoll_wait(fd, ev, POLLER_BATCH, 0);
	if (n <= 0)
		return 0; /* EINTR, or woken for nothing: the loop comes back */
	p->in_batch = true;
	p->batches++;
	p->batch_usec = now_usec();
	for (int i = 0; i < n; i++) {
		struct poller_handle *h = ev[i].data.ptr;
		h->dispatch(h, ev[i].events);
	}
	p->in_batch = false;
	if (p->on_batch_end)
		p->on_batch_end(p->userdata);
	return 0;
}

int poller_init(struct poller *p, sd_event *event, void (*on_batch_end)(void *userdata),
                void *userdata) {
	*p = (struct poller){.fd = -EBADF, .on_batch_end = on_batch_end, .userdata = userdata};
	p->fd = epoll_create1(EPOLL_CLOEXEC);
	if (p->fd < 0)
		return -errno;
	int r = sd_event_add_io(event, &p->source, p->fd, EPOLLIN, on_poller_ready, p);
	if (r < 0)
		p->fd = safe_close(p->fd);
	return r;
}

void poller_done(struct poller *p) {
	p->source = sd_event_source_disable_unref(p->source);
	p->fd = safe_close(p->fd);
}

int poller_add(struct poller *p, int fd, uint32_t events, struct poller_handle *h) {
	struct epoll_event ev = {.events = events, .data.ptr = h};
	return epoll_ctl(p->fd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

void poller_remove(struct poller *p, int fd) {
	if (fd >= 0)
		(void)epoll_ctl(p->fd, EPOLL_CTL_DEL, fd, NULL);
}
