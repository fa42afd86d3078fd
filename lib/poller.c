/* poller.c — see poller.h. */
#include "poller.h"

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "util.h"

/* Events taken per wake-up. The sd-event loop gets a turn between batches, so timers are
 * never starved by busy sockets; what is left wakes the loop again at once (the epoll fd
 * stays readable, and so does sd-event's when nested in ours: both are level-triggered). */
#define POLLER_BATCH 64

/* Dispatch `n` events as one batch. */
static void poller_dispatch(struct poller *p, const struct epoll_event *ev, int n) {
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
}

static int on_poller_ready(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
	struct epoll_event ev[POLLER_BATCH];
	(void)src, (void)revents;

	int n = epoll_wait(fd, ev, POLLER_BATCH, 0);
	if (n > 0) /* else EINTR, or woken for nothing: the loop comes back */
		poller_dispatch(userdata, ev, n);
	return 0;
}

static void on_event_ready(struct poller_handle *h, uint32_t revents) {
	struct poller *p = container_of(h, struct poller, event_entry);
	(void)revents;
	p->event_changed = true;
}

int poller_init(struct poller *p, sd_event *event, bool drive, void (*on_batch_end)(void *userdata),
                void *userdata) {
	*p = (struct poller){.fd = -EBADF,
	                     .event = event,
	                     .drives = drive,
	                     .event_changed = true,
	                     .event_entry.dispatch = on_event_ready,
	                     .on_batch_end = on_batch_end,
	                     .userdata = userdata};
	p->fd = epoll_create1(EPOLL_CLOEXEC);
	if (p->fd < 0)
		return -errno;
	int r = drive ? poller_add(p, sd_event_get_fd(event), EPOLLIN, &p->event_entry)
	              : sd_event_add_io(event, &p->source, p->fd, EPOLLIN, on_poller_ready, p);
	if (r < 0)
		p->fd = safe_close(p->fd);
	return r;
}

/* Let the driven loop dispatch all it has pending, one source per sd_event_run() as
 * sd-event does; the last run, which finds nothing, arms its timers for the next wait.
 * Returns 1 once the loop has finished, 0, or -errno. */
static int run_event(struct poller *p) {
	p->event_changed = false;
	for (unsigned i = 0; i < 1024; i++) { /* bounded: a busy loop gets its turn again */
		int r = sd_event_run(p->event, 0);
		if (sd_event_get_state(p->event) == SD_EVENT_FINISHED)
			return 1;
		if (r <= 0)
			return r;
	}
	p->event_changed = true;
	return 0;
}

int poller_run(struct poller *p) {
	struct epoll_event ev[POLLER_BATCH];

	if (!p->drives)
		return -EINVAL;
	for (;;) {
		if (p->event_changed) {
			int r = run_event(p);
			if (r < 0)
				return r;
			if (r > 0) {
				int code = 0;
				(void)sd_event_get_exit_code(p->event, &code);
				return code;
			}
		}
		int n = epoll_wait(p->fd, ev, POLLER_BATCH, p->event_changed ? 0 : -1);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0)
			poller_dispatch(p, ev, n);
	}
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
