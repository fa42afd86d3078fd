/* server.c — the process around the connections: where sockets come from, worker threads,
 * signals, reload, sd_notify. Must never close a listening socket it was given by systemd
 * (systemd owns it) and never let one bad config replace a good one. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "server-internal.h"
#include "tls.h"

/* sd-event's queues grow with the peak number of sources and never shrink. When a worker
 * that went through a load peak is idle again, build it a fresh loop so that the memory of
 * the peak goes back (tested: RSS after 9000 connections). */
#define WORKER_REBUILD_PEAK 512
#define WORKER_EXIT_REBUILD 1

/* accept() attempts per listener event: retries after an aborted connection */
#define ACCEPT_TRIES 8
#define ACCEPT_RETRY_USEC (100 * 1000)

struct config *server_config_get(struct server *s) {
	pthread_mutex_lock(&s->config_lock);
	struct config *c = config_ref(s->config);
	pthread_mutex_unlock(&s->config_lock);
	return c;
}

static void log_diags(const struct diag_list *d, bool rejected) {
	for (size_t i = 0; i < d->n; i++) {
		const struct diag *x = &d->items[i];
		int prio = x->level == DIAG_ERROR     ? LOG_ERR
		           : x->level == DIAG_WARNING ? LOG_WARNING
		                                      : LOG_DEBUG;
		if (x->level == DIAG_ERROR) {
			struct log_field f[] = {{"CONFIG_FILE", x->file}};
			log_event(prio, rejected ? TCPMAP_MID_CONFIG_REJECTED : TCPMAP_MID_CONFIG,
			          "config_rejected", f, ELEMENTSOF(f), "%s", x->message);
		} else
			log_msg(prio, "%s", x->message);
	}
}

/* Load the config and give every mapping its breaker entry. */
static int load_config(struct server *s, struct config **ret) {
	struct diag_list diags = {0};
	struct config *c = NULL;
	int r;

	size_t n_paths = 0;
	while (s->opts.config_paths[n_paths])
		n_paths++;
	r = config_load(s->opts.config_paths, n_paths, NULL, &c, &diags);
	if (r >= 0) {
		r = tls_config_load(c, s->opts.secrets_dir, &diags);
		if (r < 0)
			c = config_unref(c);
	}
	log_diags(&diags, true);
	diag_list_free(&diags);
	if (r < 0)
		return r;
	for (size_t i = 0; i < c->n_mappings; i++) {
		r = breaker_table_entry(s->breakers, c->mappings[i]->cluster,
		                        &c->mappings[i]->breaker_entry);
		if (r < 0) {
			config_unref(c);
			return log_error_errno(r, "breaker table: no room for cluster %s",
			                       c->mappings[i]->cluster);
		}
		/* so that tcpmapctl status shows the limits before the first connection */
		breaker_table_note_limits(s->breakers, c->mappings[i]->breaker_entry,
		                          &c->mappings[i]->circuit_breakers);
	}
	*ret = c;
	return 0;
}

static void notify_status(struct server *s) {
	struct config *c = server_config_get(s);
	sd_notifyf(0, "STATUS=%llu active connections, %llu total, config generation %llu",
	           (unsigned long long)atomic_load(&s->n_active),
	           (unsigned long long)atomic_load(&s->n_total),
	           (unsigned long long)(c ? c->generation : 0));
	config_unref(c);
}

static int on_sighup(sd_event_source *src, const struct signalfd_siginfo *si, void *userdata) {
	struct server *s = userdata;
	struct config *c = NULL, *old;
	(void)src, (void)si;

	sd_notify(0, "RELOADING=1");
	int r = load_config(s, &c);
	if (r >= 0 && c->n_mappings == 0 && s->config->n_mappings > 0) {
		/* almost always a file caught mid-write (truncated, not yet filled): taking it
		 * would close every port's new connections. Emptying a config on purpose is a stop.
		 */
		log_event(LOG_ERR, TCPMAP_MID_CONFIG_REJECTED, "config_rejected", NULL, 0,
		          "the new config has no TCPMapping; keeping the running one (to serve "
		          "nothing, "
		          "stop the service)");
		c = config_unref(c);
		r = -ENODATA;
	}
	if (r < 0) {
		struct log_field f[] = {{"RESULT", "rejected"}};
		log_event(LOG_ERR, TCPMAP_MID_CONFIG_REJECTED, "config_rejected", f, ELEMENTSOF(f),
		          "reload failed, keeping config generation %llu",
		          (unsigned long long)s->config->generation);
		sd_notify(0, "READY=1");
		notify_status(s);
		return 0;
	}
	pthread_mutex_lock(&s->config_lock);
	old = s->config;
	s->config = c;
	pthread_mutex_unlock(&s->config_lock);
	config_unref(old);

	char gen[24], n[24];
	snprintf(gen, sizeof gen, "%llu", (unsigned long long)c->generation);
	snprintf(n, sizeof n, "%zu", c->n_mappings);
	struct log_field f[] = {{"CONFIG_GENERATION", gen}, {"MAPPINGS", n}};
	log_event(LOG_INFO, TCPMAP_MID_CONFIG, "config", f, ELEMENTSOF(f),
	          "config reloaded: generation %s, %s mappings", gen, n);
	for (size_t i = 0; i < c->n_listeners; i++) {
		bool have = false;
		for (size_t j = 0; j < s->n_fds; j++)
			if (config_find_listener(c, (struct sockaddr *)&s->fds[j].addr,
			                         s->fds[j].addr_len) == c->listeners[i])
				have = true;
		if (!have)
			log_warning("port %u%s%s has no listening socket: add a socket unit for it "
			            "(tcpmapctl units) or restart",
			            c->listeners[i]->port, c->listeners[i]->address ? " on " : "",
			            c->listeners[i]->address ? c->listeners[i]->address : "");
	}
	sd_notify(0, "READY=1");
	notify_status(s);
	return 0;
}

/* Whether a stop should move connections to the fd store: only under systemd with a store
 * (FileDescriptorStoreMax= > 0, announced by the unit as TCPMAP_FDSTORE or by systemd >= 254
 * as FDSTORE). */
static bool handover_available(void) {
	const char *a = getenv("TCPMAP_FDSTORE"), *b = getenv("FDSTORE");
	if (!getenv("NOTIFY_SOCKET"))
		return false;
	return (a && *a && !streq(a, "0")) || (b && *b && !streq(b, "0"));
}

static int on_sigterm(sd_event_source *src, const struct signalfd_siginfo *si, void *userdata) {
	struct server *s = userdata;
	(void)si;

	sd_notify(0, "STOPPING=1");
	s->handover = handover_available() && s->n_workers > 0 && s->fds != NULL;
	atomic_store(&s->stopping, true);
	return sd_event_exit(sd_event_source_get_event(src), 0);
}

static int on_tick(sd_event_source *src, uint64_t usec, void *userdata) {
	struct server *s = userdata;

	breaker_table_reap(s->breakers);
	notify_status(s);
	for (unsigned i = 0; i < s->n_workers; i++) {
		struct worker *w = &s->workers[i];
		if (atomic_load(&w->n_conns) == 0 &&
		    atomic_load(&w->conns_peak) >= WORKER_REBUILD_PEAK &&
		    !atomic_exchange(&w->rebuild_requested, true)) {
			uint64_t one = 1;
			ssize_t _unused_ n = write(w->wake_fd, &one, sizeof one);
		}
	}
	/* glibc keeps freed memory in its arenas: after a load peak has passed, give it back */
	uint64_t active = atomic_load(&s->n_active);
	if (active > s->active_peak)
		s->active_peak = active;
	else if (s->active_peak >= 256 && active < s->active_peak / 2) {
		malloc_trim(0);
		s->active_peak = active;
	}
	sd_event_source_set_time(src, usec + 1000000);
	return sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
}

/* ---- workers ---- */

/* Every worker watches every listening socket, with EPOLLEXCLUSIVE: a new connection wakes
 * one worker, not all of them. */
static void set_accepting(struct worker *w, bool on) {
	for (size_t i = 0; i < w->server->n_fds; i++) {
		struct accept_watch *a = &w->accepts[i];
		const struct listen_fd *lf = &w->server->fds[i];
		if (a->on == on)
			continue;
		if (on)
			a->on = poller_add(&w->poller, lf->fd, EPOLLIN | EPOLLEXCLUSIVE, &a->io) >=
			        0;
		else {
			poller_remove(&w->poller, lf->fd);
			a->on = false;
		}
	}
}

static int on_accept_retry(sd_event_source *src, uint64_t usec, void *userdata) {
	(void)src, (void)usec;
	set_accepting(userdata, true);
	return 0;
}

static int open_reserve_fd(void) { return open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC); }

/* Out of fds. A connection left in the backlog would hang until fds come back, so spend the
 * reserve fd to accept and close what is waiting (the client sees the close at once), as
 * HAProxy and nginx do; if even that is impossible, pause accepting for a moment instead of
 * spinning on a backlog that cannot be taken. */
static void shed(struct worker *w, int listen_fd, int err) {
	unsigned closed = 0;

	if ((err == EMFILE || err == ENFILE) && w->reserve_fd >= 0) {
		w->reserve_fd = safe_close(w->reserve_fd);
		for (int i = 0; i < 1024; i++) {
			int cfd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (cfd < 0)
				break;
			safe_close(cfd);
			closed++;
		}
		w->reserve_fd = open_reserve_fd();
	}
	if (closed == 0 || w->reserve_fd < 0) {
		set_accepting(w, false);
		if (!w->accept_retry)
			sd_event_add_time_relative(w->event, &w->accept_retry, CLOCK_MONOTONIC,
			                           ACCEPT_RETRY_USEC, 10000, on_accept_retry, w);
		else {
			sd_event_source_set_time_relative(w->accept_retry, ACCEPT_RETRY_USEC);
			sd_event_source_set_enabled(w->accept_retry, SD_EVENT_ONESHOT);
		}
		poller_event_changed(&w->poller);
	}
	worker_note_shed(w, err, closed);
}

void worker_note_shed(struct worker *w, int err, unsigned closed) {
	uint64_t now = now_usec();

	w->n_shed += closed;
	if (now - w->last_shed_log_usec > 1000000) {
		w->last_shed_log_usec = now;
		char n[24], shed_n[24];
		snprintf(n, sizeof n, "%llu", (unsigned long long)w->n_conns);
		snprintf(shed_n, sizeof shed_n, "%llu", (unsigned long long)w->n_shed);
		struct log_field f[] = {{"CONNECTIONS", n}, {"SHED", shed_n}};
		log_event(LOG_WARNING, TCPMAP_MID_SHED, "shed", f, ELEMENTSOF(f),
		          "out of resources: %s; %s connections open, %s closed unserved so far",
		          strerror(err), n, shed_n);
	}
}

static void on_accept(struct poller_handle *h, uint32_t revents) {
	struct accept_watch *a = container_of(h, struct accept_watch, io);
	struct worker *w = a->worker;
	const struct listen_fd *lf = &w->server->fds[a->index];
	int fd = lf->fd;
	(void)revents;

	if (!a->on)
		return; /* taken in this batch before accepting was switched off */

	/* One connection per event, with no accept() to find the backlog empty: the listener
	 * is level-triggered, so what is left is reported again by the next epoll_wait(),
	 * which the worker does anyway. */
	unsigned flags = CONN_START_PRIVATE | (lf->nodelay ? CONN_START_NODELAY : 0);
	for (int i = 0; i < ACCEPT_TRIES; i++) {
		struct sockaddr_storage peer;
		socklen_t peer_len = sizeof peer;
		int cfd = accept4(fd, (struct sockaddr *)&peer, &peer_len,
		                  SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM)
				shed(w, fd, errno);
			else if (errno != EAGAIN)
				log_warning_errno(errno, "accept");
			return;
		}
		if (lf->wildcard) {
			struct sockaddr_storage local;
			socklen_t len = sizeof local;
			if (getsockname(cfd, (struct sockaddr *)&local, &len) < 0) {
				safe_close(cfd);
				continue;
			}
			conn_start(w, cfd, (struct sockaddr *)&local, len, (struct sockaddr *)&peer,
			           peer_len, flags);
		} else
			conn_start(w, cfd, (struct sockaddr *)&lf->addr, lf->addr_len,
			           (struct sockaddr *)&peer, peer_len, flags);
		return;
	}
}

static int on_resolver(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
	struct worker *w = userdata;
	(void)src, (void)fd, (void)revents;
	resolve_queue_dispatch(w->resolver);
	return 0;
}

/* After each batch of socket events. A draining worker's post source (on_drain_check)
 * fires only after sd-event dispatched something, and a driving poller's batches are not
 * that: the last connection closing in one is checked here. */
static void worker_exit_if_drained(struct worker *w) {
	if (w->n_conns > 0)
		return;
	sd_event_exit(w->event, 0);
	poller_event_changed(&w->poller);
}

static void worker_batch_end(void *userdata) {
	struct worker *w = userdata;
	conn_free_graveyard(w);
	if (w->drain_check)
		worker_exit_if_drained(w);
}

static int on_drain_check(sd_event_source *src, void *userdata) {
	(void)src;
	worker_exit_if_drained(userdata);
	return 0;
}

static int on_drain_timeout(sd_event_source *src, uint64_t usec, void *userdata) {
	(void)usec;
	conn_close_all(userdata, "drain_timeout");
	return sd_event_exit(sd_event_source_get_event(src), 0);
}

/* Stopping with a store: move what can move, let the rest (TLS) finish within
 * drain_timeout_ms, then close it. */
static int worker_hand_over(struct worker *w) {
	struct server *s = w->server;
	char name[64];
	int r;

	set_accepting(w, false);
	_cleanup_close_ int state = memfd_create("tcpmap-state", MFD_CLOEXEC);
	if (state < 0)
		return -errno;
	unsigned moved = conn_handover_all(w, state);
	if (moved > 0) {
		snprintf(name, sizeof name, HANDOVER_STATE_PREFIX "%d.%u", (int)getpid(), w->index);
		char msg[96];
		snprintf(msg, sizeof msg, "FDSTORE=1\nFDNAME=%s", name);
		r = sd_pid_notify_with_fds(0, false, msg, &state, 1);
		if (r <= 0)
			log_error_errno(r < 0 ? r : ENOTCONN, "storing the hand-over record %s",
			                name);
		log_info("worker %u: %u connection%s moved to the fd store, %llu draining",
		         w->index, moved, moved == 1 ? "" : "s", (unsigned long long)w->n_conns);
	}
	if (w->n_conns == 0)
		return sd_event_exit(w->event, 0);

	struct config *c = server_config_get(s);
	uint64_t drain = (uint64_t)c->module.drain_timeout_ms * 1000;
	config_unref(c);
	r = sd_event_add_time_relative(w->event, &w->drain_timer, CLOCK_MONOTONIC, drain, 10000,
	                               on_drain_timeout, w);
	if (r >= 0)
		r = sd_event_add_post(w->event, &w->drain_check, on_drain_check, w);
	if (r < 0)
		return sd_event_exit(w->event, 0);
	/* a post source fires only after some other event: keep one checking until drained */
	return sd_event_source_set_enabled(w->drain_check, SD_EVENT_ON);
}

static int on_wake(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
	struct worker *w = userdata;
	uint64_t v;
	(void)revents;

	ssize_t _unused_ n = read(fd, &v, sizeof v);
	if (!atomic_load(&w->server->stopping)) {
		if (atomic_exchange(&w->rebuild_requested, false) && w->n_conns == 0 &&
		    w->conns_peak >= WORKER_REBUILD_PEAK)
			return sd_event_exit(sd_event_source_get_event(src), WORKER_EXIT_REBUILD);
		return 0;
	}
	sd_event_source_set_enabled(src, SD_EVENT_OFF);
	if (w->server->handover)
		return worker_hand_over(w);
	return sd_event_exit(sd_event_source_get_event(src), 0);
}

/* Give a worker its event loop and the sources on its long-lived fds. With `event` given
 * (the inetd model) it shares the main loop. */
static int worker_attach(struct worker *w, sd_event *event) {
	struct server *s = w->server;
	int r;

	if (event)
		w->event = sd_event_ref(event);
	else {
		r = sd_event_new(&w->event);
		if (r < 0)
			return r;
	}
	r = conn_timer_init(w);
	if (r < 0)
		return r;
	/* a thread's own loop is driven by the poller; the main thread's has more to do */
	r = poller_init(&w->poller, w->event, !event, worker_batch_end, w);
	if (r < 0)
		return r;
	r = sd_event_add_io(w->event, &w->resolver_source, w->resolver_fd, EPOLLIN, on_resolver, w);
	if (r < 0)
		return r;
	r = sd_event_add_io(w->event, &w->wake_source, w->wake_fd, EPOLLIN, on_wake, w);
	if (r < 0)
		return r;
	w->accepts = calloc(s->n_fds ? s->n_fds : 1, sizeof *w->accepts);
	if (!w->accepts)
		return -ENOMEM;
	for (size_t i = 0; i < s->n_fds; i++)
		w->accepts[i] =
		        (struct accept_watch){.io.dispatch = on_accept, .worker = w, .index = i};
	set_accepting(w, true);
	for (size_t i = 0; i < s->n_fds; i++)
		if (!w->accepts[i].on)
			return -ENOMEM; /* what epoll_ctl() fails with here */
	w->conns_peak = 0;
	return 0;
}

static void worker_detach(struct worker *w) {
	conn_timer_done(w);
	poller_done(&w->poller);
	w->accepts = mfree(w->accepts); /* their registrations went with the poller */
	w->accept_retry = sd_event_source_disable_unref(w->accept_retry);
	w->drain_timer = sd_event_source_disable_unref(w->drain_timer);
	w->drain_check = sd_event_source_disable_unref(w->drain_check);
	w->wake_source = sd_event_source_disable_unref(w->wake_source);
	w->resolver_source = sd_event_source_disable_unref(w->resolver_source);
	w->event = sd_event_unref(w->event);
}

static int worker_init(struct worker *w, struct server *s, unsigned index, sd_event *event) {
	int r;

	w->server = s;
	w->index = index;
	w->poller.fd = -EBADF; /* worker_done() may run before worker_attach() did */
	w->reserve_fd = open_reserve_fd();
	w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->wake_fd < 0)
		return -errno;
	r = resolve_queue_new(&w->resolver, &w->resolver_fd);
	if (r < 0)
		return r;
	return worker_attach(w, event);
}

static void worker_done(struct worker *w) {
	conn_close_all(w, "ok");
	worker_detach(w);
	resolve_queue_free(w->resolver);
	safe_close(w->wake_fd);
	safe_close(w->reserve_fd);
}

static void *worker_main(void *arg) {
	struct worker *w = arg;
	int r;

	for (;;) {
		r = poller_run(&w->poller);
		if (r != WORKER_EXIT_REBUILD || atomic_load(&w->server->stopping) || w->n_conns > 0)
			break;
		worker_detach(w);
		r = worker_attach(w, NULL);
		if (r < 0) {
			log_error_errno(r, "worker %u: rebuilding its event loop", w->index);
			break;
		}
		malloc_trim(0);
		log_debug("worker %u: event loop rebuilt after a load peak", w->index);
	}
	if (r < 0)
		log_error_errno(r, "worker %u: event loop failed", w->index);
	return NULL;
}

/* ---- where the sockets come from ---- */

static bool sockaddr_is_wildcard(const struct sockaddr_storage *ss) {
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
	return false;
}

static int add_listen_fd(struct server *s, int fd) {
	struct listen_fd *lf;
	struct listen_fd *n = realloc(s->fds, (s->n_fds + 1) * sizeof *s->fds);
	if (!n)
		return -ENOMEM;
	s->fds = n;
	lf = &s->fds[s->n_fds++];
	*lf = (struct listen_fd){.fd = fd};
	lf->addr_len = sizeof lf->addr;
	if (getsockname(fd, (struct sockaddr *)&lf->addr, &lf->addr_len) < 0)
		return -errno;
	lf->wildcard = sockaddr_is_wildcard(&lf->addr);
	/* accepted sockets inherit TCP_NODELAY from their listener: one call here instead of
	 * one per connection */
	static const int one = 1;
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0)
		lf->nodelay = true;
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	return 0;
}

static unsigned workers_wanted(const struct server *s) {
	if (s->opts.workers > 0)
		return s->opts.workers;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	return cpus > 0 ? (unsigned)cpus : 1;
}

/* Binding ourselves, one socket per listener serves every worker, as systemd's do: each
 * worker watches it with EPOLLEXCLUSIVE, so a connection wakes one of them, and whichever
 * is free takes it. (Per-worker SO_REUSEPORT sockets pin a connection to one worker when
 * its SYN arrives, and it waits there while that worker is busy: a worse p99 under load.) */
static int bind_listeners(struct server *s) {
	static const int one = 1;

	for (size_t i = 0; i < s->config->n_listeners; i++) {
		struct listener *l = s->config->listeners[i];
		const struct sockaddr *sa = (const struct sockaddr *)&l->sockaddr;
		char where[80];

		snprintf(where, sizeof where, "%s:%u", l->address ? l->address : "*", l->port);
		_cleanup_close_ int fd =
		        socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return log_error_errno(errno, "socket for %s", where);
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(fd, sa, l->sockaddr_len) < 0)
			return log_error_errno(errno, "cannot listen on %s", where);
		if (listen(fd, 4096) < 0)
			return log_error_errno(errno, "listen on %s", where);
		int r = add_listen_fd(s, fd);
		if (r < 0)
			return r;
		TAKE_FD(fd);
		log_info("listening on %s", where);
	}
	return 0;
}

static bool is_listening(int fd) {
	int v = 0;
	socklen_t len = sizeof v;
	return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 && v;
}

static const char *default_runtime_dir(void) {
	static char buf[4096];
	const char *e = getenv("RUNTIME_DIRECTORY");
	if (e && *e) {
		/* several RuntimeDirectory= entries arrive colon-separated; ours is the first */
		snprintf(buf, sizeof buf, "%s", e);
		char *colon = strchr(buf, ':');
		if (colon)
			*colon = '\0';
		return buf;
	}
	return "/run/tcpmap";
}

/* ---- fds kept in systemd's store by the previous process ---- */

struct stored_fd {
	int fd;
	char *name;
};

static int stored_fd_add(struct server *s, int fd, const char *name) {
	struct stored_fd *n = realloc(s->stored, (s->n_stored + 1) * sizeof *s->stored);
	if (!n)
		return -ENOMEM;
	s->stored = n;
	s->stored[s->n_stored].name = strdup(name);
	if (!s->stored[s->n_stored].name)
		return -ENOMEM;
	s->stored[s->n_stored].fd = fd;
	s->n_stored++;
	return 0;
}

static int stored_take(struct server *s, const char *name) {
	for (size_t i = 0; i < s->n_stored; i++)
		if (s->stored[i].fd >= 0 && streq(s->stored[i].name, name))
			return TAKE_FD(s->stored[i].fd);
	return -EBADF;
}

/* Adopt what the previous process stored, spread over the workers, then empty the store of
 * every name we were given: adopted or not, nothing stays behind to grow with restarts. */
static void adopt_stored(struct server *s) {
	unsigned next_worker = 0, adopted = 0, failed = 0;

	for (size_t i = 0; i < s->n_stored; i++) {
		if (!handover_is_state_name(s->stored[i].name) || s->stored[i].fd < 0)
			continue;
		int state = TAKE_FD(s->stored[i].fd);
		struct handover_record rec;
		off_t off = 0;
		ssize_t got;

		while ((got = pread(state, &rec, sizeof rec, off)) == (ssize_t)sizeof rec) {
			off += got;
			if (handover_record_validate(&rec) < 0) {
				log_warning("%s: malformed record, skipping it", s->stored[i].name);
				failed++;
				continue;
			}
			int fds[_HANDOVER_FD_MAX];
			for (int k = 0; k < _HANDOVER_FD_MAX; k++) {
				char name[64];
				fds[k] = handover_fd_name(rec.id, k, name, sizeof name) < 0
				                 ? -EBADF
				                 : stored_take(s, name);
			}
			struct worker *w = &s->workers[next_worker++ % s->n_workers];
			if (conn_adopt(w, &rec, fds) >= 0)
				adopted++;
			else
				failed++;
		}
		safe_close(state);
	}
	for (size_t i = 0; i < s->n_stored; i++) {
		if (s->stored[i].fd >= 0) {
			log_warning("stored fd %s belongs to no connection record, closing it",
			            s->stored[i].name);
			s->stored[i].fd = safe_close(s->stored[i].fd);
		}
		sd_notifyf(0, "FDSTOREREMOVE=1\nFDNAME=%s", s->stored[i].name);
		free(s->stored[i].name);
	}
	free(s->stored);
	s->stored = NULL;
	if (adopted + failed > 0)
		log_info("adopted %u connection%s from the fd store, %u could not be", adopted,
		         adopted == 1 ? "" : "s", failed);
	s->n_stored = 0;
}

static int run_inetd(struct server *s, int fd) {
	struct worker w = {0};
	struct sockaddr_storage local;
	socklen_t len = sizeof local;
	int r;

	if (getsockname(fd, (struct sockaddr *)&local, &len) < 0)
		return log_error_errno(errno, "getsockname on the connection");
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return log_error_errno(errno, "fcntl");
	r = worker_init(&w, s, 0, s->event);
	if (r < 0) {
		worker_done(&w);
		return log_error_errno(r, "setting up the connection");
	}
	s->workers = &w;
	s->n_workers = 1;
	sd_notify(0, "READY=1");
	conn_start(&w, fd, (struct sockaddr *)&local, len, NULL, 0, 0);
	/* one connection, then exit: run until it is gone or we are told to stop */
	while (w.n_conns > 0 && !atomic_load(&s->stopping)) {
		r = sd_event_run(s->event, UINT64_MAX);
		if (r < 0)
			break;
	}
	worker_done(&w);
	s->workers = NULL;
	return r < 0 ? r : 0;
}

static int run_threaded(struct server *s) {
	unsigned n = workers_wanted(s);
	int r;

	s->workers = calloc(n, sizeof *s->workers);
	if (!s->workers)
		return log_error_errno(ENOMEM, "workers");
	for (unsigned i = 0; i < n; i++) {
		r = worker_init(&s->workers[i], s, i, NULL);
		if (r < 0)
			return log_error_errno(r, "worker %u", i);
	}
	s->n_workers = n; /* adoption spreads over all of them */
	adopt_stored(s);
	s->n_workers = 0;
	for (unsigned i = 0; i < n; i++) {
		r = -pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]);
		if (r < 0)
			return log_error_errno(r, "starting worker %u", i);
		s->n_workers = i + 1;
	}

	char gen[24];
	snprintf(gen, sizeof gen, "%llu", (unsigned long long)s->config->generation);
	struct log_field f[] = {{"CONFIG_GENERATION", gen}};
	log_event(LOG_INFO, TCPMAP_MID_LIFECYCLE, "ready", f, ELEMENTSOF(f),
	          "tcpmapd %s ready: %zu sockets, %u workers, %zu mappings", TCPMAP_VERSION,
	          s->n_fds, n, s->config->n_mappings);
	sd_notify(0, "READY=1");
	notify_status(s);

	r = sd_event_loop(s->event);

	atomic_store(&s->stopping, true);
	for (unsigned i = 0; i < s->n_workers; i++) {
		uint64_t one = 1;
		ssize_t _unused_ w = write(s->workers[i].wake_fd, &one, sizeof one);
	}
	for (unsigned i = 0; i < s->n_workers; i++)
		pthread_join(s->workers[i].thread, NULL);
	for (unsigned i = 0; i < n; i++)
		worker_done(&s->workers[i]);
	free(s->workers);
	s->workers = NULL;
	log_event(LOG_INFO, TCPMAP_MID_LIFECYCLE, "stop", NULL, 0, "tcpmapd stopped");
	return r < 0 ? r : 0;
}

int server_run(const struct server_options *o) {
	struct server s = {.opts = *o};
	sigset_t mask;
	int r, connected_fd = -EBADF;
	bool own_fds = false;

	pthread_mutex_init(&s.config_lock, NULL);
	/* Two sockets and up to two pipes per connection: take every fd the hard limit allows,
	 * as systemd itself does for its services' soft limit. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	s.runtime_dir = o->runtime_dir ? o->runtime_dir : default_runtime_dir();
	if (mkdir(s.runtime_dir, 0755) < 0 && errno != EEXIST)
		return log_error_errno(errno, "cannot create runtime directory %s", s.runtime_dir);
	/* Another user who can replace files in it could hand us their breaker table. (It may
	 * be a symlink: with DynamicUser= systemd links /run/tcpmap into /run/private.) */
	struct stat dst;
	if (stat(s.runtime_dir, &dst) < 0)
		return log_error_errno(errno, "runtime directory %s", s.runtime_dir);
	if (!S_ISDIR(dst.st_mode) ||
	    ((dst.st_mode & (S_IWGRP | S_IWOTH)) && !(dst.st_mode & S_ISVTX)))
		return log_error_errno(
		        EPERM, "runtime directory %s is not a directory only its owner can write",
		        s.runtime_dir);
	/* Keys live in this process's memory once loaded: no core dump, no ptrace by others of
	 * the same uid (lib/tls.c also keeps OpenSSL's private key numbers in its locked
	 * secure heap). */
	(void)prctl(PR_SET_DUMPABLE, 0);
	r = breaker_table_open(s.runtime_dir, &s.breakers);
	if (r == -EPROTO)
		return log_error_errno(r,
		                       "%s/breakers was made by an incompatible tcpmap version; "
		                       "remove it once no tcpmap process runs",
		                       s.runtime_dir);
	if (r < 0)
		return log_error_errno(r, "cannot open the breaker table in %s", s.runtime_dir);

	r = load_config(&s, &s.config);
	if (r < 0) {
		log_error("no valid configuration, exiting");
		goto finish;
	}
	char gen[24];
	snprintf(gen, sizeof gen, "%llu", (unsigned long long)s.config->generation);
	struct log_field f[] = {{"CONFIG_GENERATION", gen}};
	log_event(LOG_INFO, TCPMAP_MID_CONFIG, "config", f, ELEMENTSOF(f),
	          "config loaded: generation %s, %zu mappings, %zu listeners", gen,
	          s.config->n_mappings, s.config->n_listeners);

	/* Where do the sockets come from? */
	if (o->inetd)
		connected_fd = STDIN_FILENO;
	else {
		char **names = NULL;
		/* LISTEN_FDNAMES is colon-separated, so a socket unit named after an address
		 * (tcpmap@127.0.0.1:2222.socket) makes it unparseable: fall back to no names,
		 * which only costs adopting stored connections. */
		int n = sd_listen_fds_with_names(0, &names);
		if (n == -EINVAL) {
			names = NULL;
			n = sd_listen_fds(0);
		}
		unsetenv("LISTEN_PID");
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_FDNAMES");
		if (n < 0) {
			r = log_error_errno(n, "reading LISTEN_FDS");
			goto finish;
		}
		for (int i = 0; i < n; i++) {
			int fd = SD_LISTEN_FDS_START + i;
			const char *name = names && names[i] ? names[i] : "";
			char id[32];
			enum handover_fd_kind kind;

			if (handover_is_state_name(name) ||
			    handover_parse_fd_name(name, id, sizeof id, &kind) == 0) {
				r = stored_fd_add(&s, fd, name);
				if (r < 0) {
					safe_close(fd);
					log_warning_errno(r, "stored fd %s", name);
				}
			} else if (!is_listening(fd)) {
				if (connected_fd < 0)
					connected_fd = fd; /* Accept=yes: the one connection */
				else {
					log_warning("fd %d (%s) from systemd is not a listening "
					            "socket, ignoring",
					            fd, name);
					safe_close(fd);
				}
			} else {
				r = add_listen_fd(&s, fd);
				if (r < 0) {
					log_error_errno(r, "fd %d from systemd", fd);
					goto finish;
				}
			}
		}
		for (int i = 0; names && i < n; i++)
			free(names[i]);
		free(names);
		if (connected_fd >= 0 && s.n_fds > 0) {
			log_warning("got listening sockets and a connection; serving the listening "
			            "sockets");
			connected_fd = safe_close(connected_fd);
		}
		if (s.n_fds == 0 && connected_fd < 0) {
			own_fds = true;
			r = bind_listeners(&s);
			if (r < 0)
				goto finish;
		}
	}

	signal(SIGPIPE, SIG_IGN); /* splice has no MSG_NOSIGNAL: a vanished peer is EPIPE */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL); /* before any thread starts: they inherit it */

	r = sd_event_default(&s.event);
	if (r < 0)
		goto finish;
	sd_event_add_signal(s.event, NULL, SIGTERM, on_sigterm, &s);
	sd_event_add_signal(s.event, NULL, SIGINT, on_sigterm, &s);
	sd_event_add_signal(s.event, NULL, SIGHUP, on_sighup, &s);
	sd_event_set_watchdog(s.event, true);
	sd_event_add_time_relative(s.event, NULL, CLOCK_MONOTONIC, 1000000, 100000, on_tick, &s);

	if (connected_fd >= 0)
		r = run_inetd(&s, connected_fd);
	else {
		for (size_t i = 0; i < s.n_fds; i++)
			if (!config_find_listener(s.config, (struct sockaddr *)&s.fds[i].addr,
			                          s.fds[i].addr_len) &&
			    !s.fds[i].wildcard) {
				char a[INET6_ADDRSTRLEN] = "?";
				const struct sockaddr_storage *ss = &s.fds[i].addr;
				if (ss->ss_family == AF_INET)
					inet_ntop(AF_INET, &((struct sockaddr_in *)ss)->sin_addr, a,
					          sizeof a);
				else
					inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ss)->sin6_addr,
					          a, sizeof a);
				log_warning("socket %s:%u has no mapping in the config; its "
				            "connections will be closed",
				            a, ntohs(((struct sockaddr_in *)ss)->sin_port));
			}
		r = run_threaded(&s);
	}

finish:
	if (own_fds)
		for (size_t i = 0; i < s.n_fds; i++)
			safe_close(s.fds[i].fd);
	free(s.fds);
	s.event = sd_event_unref(s.event);
	config_unref(s.config);
	breaker_table_close(s.breakers);
	pthread_mutex_destroy(&s.config_lock);
	return r;
}
