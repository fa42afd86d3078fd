/* server.c — the process around the connections: which sockets it serves (listeners.c
 * gathers them), worker threads, signals, reload, sd_notify. Must never close a listening
 * socket it was given by systemd (systemd owns it) and never let one bad config replace a
 * good one. */
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>

#include "server.h"

#include "breaker.h"
#include "config.h"
#include "conn.h"
#include "handoff.h"
#include "listeners.h"
#include "log.h"
#include "memlimit.h"
#include "netaddr.h"
#include "poller.h"
#include "reexec.h"
#include "relayspawn.h"
#include "rundir.h"
#include "ticketkeys.h"
#include "tls.h"
#include "unitjob.h"
#include "worker.h"

/* sd-event's queues grow with the peak number of sources and never shrink. When a worker
 * that went through a load peak is idle again, build it a fresh loop so that the memory of
 * the peak goes back (tested: RSS after 9000 connections). */
#define WORKER_REBUILD_PEAK 512
#define WORKER_EXIT_REBUILD 1

/* accept() attempts per listener event: retries after an aborted connection */
#define ACCEPT_TRIES 8
#define ACCEPT_RETRY_USEC (100 * 1000)

/* STATUS= after a close: at once, but at most this often (server.status_dirty) */
#define STATUS_MIN_USEC (200 * 1000)

/* How long a re-executing image waits for the new one to say it is ready before it takes
 * its connections back and goes on (a new image normally takes tens of ms). */
#define REEXEC_READY_TIMEOUT_USEC (5 * 1000 * 1000)
/* The name the listening sockets get in the new image's $LISTEN_FDNAMES. */
#define REEXEC_LISTEN_NAME "tcpmap-listen"

struct server {
	struct server_options opts;
	const char *runtime_dir;

	/* what connections get: the breaker table, the current config, the counters */
	struct conn_env env;
	/* the host's shared TLS session-ticket keys; NULL when they could not be opened */
	struct ticket_keys *ticket_keys;

	struct listeners listening;
	/* The sockets came from systemd (a socket unit per port, each its own instance), not
	 * bound here: load_config gives lib/tls only the listeners they serve. The local
	 * address of an Accept=yes / inetd connection counts as one such socket. */
	bool sockets_given;
	struct sockaddr_storage connection_local;
	socklen_t connection_local_len; /* 0: none */
	struct handoff_store stored;    /* from the fd store, until adopted */

	struct server_worker *workers;
	unsigned n_workers;

	uint64_t active_peak; /* since the last malloc_trim; main thread only */
	atomic_bool stopping;
	bool handover;      /* on stop, move spliced connections to systemd's fd store */
	bool stop_for_good; /* a stop no restart follows: close (and log) every connection */
	size_t n_unmapped;  /* listening sockets the current config has no mapping for */

	/* Under MemoryMax=, new connections are refused (shed) above MEM_SHED_START of the
	 * limit and taken again below MEM_SHED_STOP: the OOM killer would take every live one. */
	struct memlimit memlimit;
	atomic_bool mem_shedding;
	/* A burst can outrun the tick: while there is a limit, every MEM_CHECK_ACCEPTS accepts
	 * the worker that gets there reads the usage too. The lock guards `memlimit`. */
	pthread_mutex_t memlimit_lock;
	atomic_bool mem_limited;
	atomic_uint accepts_since_mem_check;

	sd_event *event; /* main thread's loop: signals, notify, reaping */
	bool threaded;   /* run_threaded(): workers of our own, listening sockets */

	/* Re-exec (SIGHUP with a replaced binary, or SIGUSR2): the main thread asks every
	 * worker to hand its spliced connections over into `reexec_fds`, waits until all did,
	 * starts the new image and tells them the outcome (>0: superseded, drain; <0: go on). */
	atomic_bool reexec_requested;
	pthread_mutex_t reexec_lock;
	pthread_cond_t reexec_cond;
	unsigned reexec_exported;
	int reexec_outcome;
	struct handoff_store reexec_fds;
	bool superseded;          /* a new image is the main process: drain, then exit */
	atomic_bool drain_cut;    /* SIGTERM while superseded: close what still drains */
	atomic_uint workers_done; /* superseded: the main loop ends when all are done */
	int main_wake_fd;         /* eventfd: a worker finished, or went idle */
	/* STATUS= soon after a worker goes idle, but at most every STATUS_MIN_USEC: a worker
	 * wakes the main thread only when this was clear, so a stream of short connections
	 * costs one atomic exchange each, not a wake-up and an sd_notify */
	atomic_bool status_dirty;
	uint64_t status_sent_usec;
	sd_event_source *status_timer;

	/* WatchdogSec=: the main loop pings only while every worker's loop beats too
	 * (watchdog_check). 0: no watchdog. */
	uint64_t watchdog_usec;
	uint64_t watchdog_checked_usec; /* the previous check */
	bool watchdog_tripped;          /* a worker is stuck: no more pings, ever */
};

struct accept_watch {
	struct poller_handle io;
	struct server_worker *worker;
	size_t index; /* in server.listening.fds */
	bool on;      /* registered with the poller */
};

/* A worker (worker.h) and what the server adds around it: its thread, accepting, the
 * main thread's wake-ups, and draining on stop. */
struct server_worker {
	struct worker core;
	struct server *server;
	pthread_t thread;
	struct accept_watch *accepts;  /* one per listen fd */
	sd_event_source *accept_retry; /* re-enables accepting after EMFILE */
	int wake_fd;                   /* eventfd: the main thread asks us to stop */
	sd_event_source *wake_source;
	atomic_bool rebuild_requested;
	int reserve_fd;               /* spent to accept-and-close when out of fds */
	sd_event_source *drain_timer; /* stopping: connections that could not move */
	sd_event_source *drain_check;
	bool draining;
	bool had_conns; /* at the end of the last batch: its last close updates STATUS= now */
};

static struct config *server_config_get(struct server *s) { return conn_env_config(&s->env); }

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

/* Mark the listeners none of this process's sockets serves: lib/tls loads no secret for
 * them (another instance serves them, and may be the only one given their keys). */
static void mark_listeners_served_elsewhere(const struct server *s, struct config *c) {
	if (!s->sockets_given)
		return; /* standalone: this process binds, and serves, every listener */
	for (size_t i = 0; i < c->n_listeners; i++)
		c->listeners[i]->served_elsewhere = true;
	for (size_t i = 0; i < s->listening.n; i++) {
		const struct listen_fd *lf = &s->listening.fds[i];
		struct listener *l =
		        config_find_listener(c, (const struct sockaddr *)&lf->addr, lf->addr_len);
		if (l)
			l->served_elsewhere = false;
		if (!lf->wildcard)
			continue;
		/* a socket on every address takes connections for any listener on its port */
		uint16_t port = ntohs(((const struct sockaddr_in *)&lf->addr)->sin_port);
		for (size_t j = 0; j < c->n_listeners; j++)
			if (c->listeners[j]->port == port)
				c->listeners[j]->served_elsewhere = false;
	}
	if (s->connection_local_len > 0) {
		struct listener *l = config_find_listener(
		        c, (const struct sockaddr *)&s->connection_local, s->connection_local_len);
		if (l)
			l->served_elsewhere = false;
	}
}

/* The shared session-ticket keys: without them tickets still work, but only in the
 * process that issued them (OpenSSL's own keys), so a failure is a warning. */
static void open_ticket_keys(struct server *s, int rundir_fd) {
	int r = ticketkeys_open(rundir_fd, &s->ticket_keys);
	if (r == -EPERM)
		log_warning(
		        "%s/" TICKETKEYS_FILE_NAME " is not this user's alone (mode 0600, one "
		        "link); TLS session tickets resume only in the process that issued them",
		        s->runtime_dir);
	else if (r == -EPROTO)
		log_warning("%s/" TICKETKEYS_FILE_NAME
		            " was made by an incompatible tcpmap version; "
		            "TLS session tickets resume only in the process that issued them until "
		            "it is removed",
		            s->runtime_dir);
	else if (r < 0)
		log_warning_errno(r,
		                  "cannot open %s/" TICKETKEYS_FILE_NAME "; TLS session tickets "
		                  "resume only in the process that issued them",
		                  s->runtime_dir);
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
		mark_listeners_served_elsewhere(s, c);
		c->ticket_keys = s->ticket_keys;
		r = tls_config_load(c, s->opts.secrets_dir, &diags);
		if (r < 0)
			c = config_unref(c);
	}
	log_diags(&diags, true);
	diag_list_free(&diags);
	if (r < 0)
		return r;
	/* Grow the shared table once for the whole config, not once per cluster that does not
	 * fit; a failure here shows up below, for the cluster that found no room. */
	struct breaker_capacity want;
	if (breaker_table_capacity_needed(c, &want) >= 0)
		(void)breaker_table_reserve(s->env.breakers, &want);
	for (size_t i = 0; i < c->n_mappings; i++) {
		r = breaker_table_entry(s->env.breakers, c->mappings[i]->cluster,
		                        &c->mappings[i]->breaker_entry);
		if (r < 0) {
			/* log before the unref: the cluster's name is the config's memory */
			log_error_errno(r, "breaker table: no room for cluster %s",
			                c->mappings[i]->cluster);
			config_unref(c);
			return r;
		}
		/* so that tcpmapctl status shows the limits before the first connection */
		breaker_table_note_limits(s->env.breakers, c->mappings[i]->breaker_entry,
		                          &c->mappings[i]->circuit_breakers);
	}
	*ret = c;
	return 0;
}

/* Once a new image is the main process, this one must say nothing more to systemd: with
 * NotifyAccess=all it would still be heard, and its STATUS= and STOPPING=1 are not the
 * service's any more. */
static atomic_bool notify_muted;

/* Tell systemd our state. Without a notify socket this does nothing; a failure to send is
 * systemd's to notice (a missed READY=1 times the start out), nothing we could mend. */
static void notify(const char *state) {
	if (atomic_load(&notify_muted))
		return;
	int r = sd_notify(0, state);
	if (r < 0)
		log_debug("sd_notify %s: %s, ignoring", state, strerror(-r));
}

static void notify_status(struct server *s) {
	atomic_store(&s->status_dirty, false);
	s->status_sent_usec = now_usec();
	if (atomic_load(&notify_muted))
		return;
	struct config *c = server_config_get(s);
	unsigned long long active = atomic_load(&s->env.n_active);
	char unmapped[96] = "";
	if (s->n_unmapped > 0)
		snprintf(unmapped, sizeof unmapped,
		         "; %zu socket%s without a mapping (see the log)", s->n_unmapped,
		         s->n_unmapped == 1 ? "" : "s");
	/* as notify(); the next tick sends it again anyway */
	(void)sd_notifyf(0, "STATUS=%llu active connection%s, %llu total, config generation %llu%s",
	                 active, active == 1 ? "" : "s",
	                 (unsigned long long)atomic_load(&s->env.n_total),
	                 (unsigned long long)(c ? c->generation : 0), unmapped);
	config_unref(c);
}

static int server_reexec(struct server *s, const char *why);

/* Does the config serve connections arriving on this socket? A socket on every address
 * serves whatever listener its port has, on any address. */
static bool socket_is_mapped(const struct config *c, const struct listen_fd *lf) {
	if (config_find_listener(c, (const struct sockaddr *)&lf->addr, lf->addr_len))
		return true;
	if (!lf->wildcard)
		return false;
	uint16_t port = ntohs(((const struct sockaddr_in *)&lf->addr)->sin_port);
	for (size_t i = 0; i < c->n_listeners; i++)
		if (c->listeners[i]->port == port)
			return true;
	return false;
}

static size_t warn_unmapped_sockets(struct server *s, const struct config *c) {
	size_t n = 0;
	for (size_t i = 0; i < s->listening.n; i++) {
		char a[NETADDR_TEXT_MAX];
		if (socket_is_mapped(c, &s->listening.fds[i]))
			continue;
		netaddr_format((const struct sockaddr *)&s->listening.fds[i].addr, a, sizeof a);
		log_warning(
		        "socket %s has no mapping in config generation %llu: its connections "
		        "will be closed (no_listener); add a mapping for it, or stop its socket "
		        "unit",
		        a, (unsigned long long)c->generation);
		n++;
	}
	return n;
}

static int on_sighup(sd_event_source *src, const struct signalfd_siginfo *si, void *userdata) {
	struct server *s = userdata;
	struct config *c = NULL, *old;
	(void)src, (void)si;

	if (s->superseded)
		return 0; /* the new image reloads; this one only drains */
	/* A package upgrade replaced the binary: `systemctl reload` runs the new one, which
	 * loads the config itself. Without a change this is the config reload it always was. */
	if (s->threaded && reexec_binary_changed())
		return server_reexec(s, "the binary was replaced");

	notify("RELOADING=1");
	int r = load_config(s, &c);
	if (r >= 0 && c->n_mappings == 0 && s->env.config->n_mappings > 0) {
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
		          (unsigned long long)s->env.config->generation);
		notify("READY=1");
		notify_status(s);
		return 0;
	}
	old = conn_env_swap_config(&s->env, c);
	config_unref(old);

	char gen[24], n[24];
	snprintf(gen, sizeof gen, "%llu", (unsigned long long)c->generation);
	snprintf(n, sizeof n, "%zu", c->n_mappings);
	struct log_field f[] = {{"CONFIG_GENERATION", gen}, {"MAPPINGS", n}};
	log_event(LOG_INFO, TCPMAP_MID_CONFIG, "config", f, ELEMENTSOF(f),
	          "config reloaded: generation %s, %s mappings", gen, n);
	(void)breaker_table_note_config(s->env.breakers, c->generation); /* for the metrics */
	/* Only this process's own sockets are its business: other ports are other instances'
	 * (tcpmap@PORT.socket each start their own tcpmapd), but a socket of ours that lost
	 * its mapping resets every connection from now on. */
	s->n_unmapped = warn_unmapped_sockets(s, c);
	notify("READY=1");
	notify_status(s);
	return 0;
}

static int on_sigusr2(sd_event_source *src, const struct signalfd_siginfo *si, void *userdata) {
	struct server *s = userdata;
	(void)src, (void)si;
	if (s->superseded || !s->threaded)
		return 0;
	return server_reexec(s, "SIGUSR2");
}

static void wake_workers(struct server *s) {
	for (unsigned i = 0; i < s->n_workers; i++) {
		uint64_t one = 1;
		/* an eventfd's counter only fails to take 1 when it is already huge: the worker
		 * is then woken anyway */
		ssize_t _unused_ n = write(s->workers[i].wake_fd, &one, sizeof one);
	}
}

/* The relay spawner runs while the config has a per_connection_process listener (it is
 * started at most once a second: a reload that adds one, or its death, is seen at the next
 * tick at the latest). Main thread only. */
static void tend_spawner(struct server *s) {
	if (!s->env.spawner)
		return;
	for (size_t i = 0; i < s->env.config->n_listeners; i++)
		if (s->env.config->listeners[i]->per_connection_process) {
			(void)relayspawn_start(
			        s->env.spawner); /* logged; tcpmapd forks meanwhile */
			return;
		}
}

/* Relay processes (per_connection_process) are this process's children. Each logs its own
 * connection; here they are reaped, and one that died by a signal (a crash, a kill -9) is
 * logged, and its breaker slot reclaimed at once rather than at the next tick. waitid()
 * over every child is safe: the only other child tcpmapd has, re-exec's middle process, is
 * waited for on this same thread before this handler can run. */
static int on_sigchld(sd_event_source *src, const struct signalfd_siginfo *si, void *userdata) {
	struct server *s = userdata;
	bool died = false;
	(void)src, (void)si;

	for (;;) {
		siginfo_t info = {};
		if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG) < 0 || info.si_pid == 0)
			break;
		char pid[16], how[32];
		snprintf(pid, sizeof pid, "%d", (int)info.si_pid);
		describe_child_exit(info.si_code, info.si_status, how, sizeof how);
		if (relayspawn_exited(s->env.spawner, info.si_pid, how)) {
			tend_spawner(s);
			continue;
		}
		if (info.si_code == CLD_EXITED && info.si_status == 0)
			continue;
		struct log_field f[] = {{"RELAY_PID", pid}, {"HOW", how}};
		log_event(LOG_WARNING, TCPMAP_MID_LIFECYCLE, "relay_died", f, ELEMENTSOF(f),
		          "relay process %s ended by %s: its connection is gone", pid, how);
		died = true;
	}
	if (died)
		(void)breaker_table_reap(s->env.breakers); /* best effort: the tick reaps too */
	return 0;
}

static int on_sigterm(sd_event_source *src, const struct signalfd_siginfo *si, void *userdata) {
	struct server *s = userdata;
	(void)si;

	if (s->superseded) {
		/* stop (KillMode=control-group signals every process of the service): what this
		 * old image still drains is closed now */
		atomic_store(&s->drain_cut, true);
		wake_workers(s);
		return 0;
	}

	notify("STOPPING=1");
	s->handover = handoff_available() && s->n_workers > 0 && s->listening.fds != NULL;
	/* systemd empties the fd store on a stop: what went there would vanish without a
	 * close entry, its bytes uncounted and its breaker slot held. Only a restart (a new
	 * process reads the store) is worth a hand-over; when systemd cannot say, hand over
	 * as before, which a restart needs. */
	if (s->handover) {
		enum unitjob_kind job = unitjob_current(s->runtime_dir);
		if (job == UNITJOB_STOP || job == UNITJOB_NONE) {
			s->handover = false;
			s->stop_for_good = true;
			log_info("stopping (%s job, no restart): closing every connection instead "
			         "of handing it over",
			         unitjob_kind_name(job));
		}
	}
	atomic_store(&s->stopping, true);
	return sd_event_exit(sd_event_source_get_event(src), 0);
}

/* Per mille of MemoryMax=. Shedding starts with room for a second's worth of connections
 * (tcpmapd(8), MEMORY), and stops a little lower so it does not flap. */
#define MEM_SHED_START 900
#define MEM_SHED_STOP 850

#define MEM_CHECK_ACCEPTS 32

/* With s->memlimit_lock held. */
static void check_memory_locked(struct server *s) {
	uint64_t current, max;

	bool limited = memlimit_read(&s->memlimit, &current, &max) >= 0 && max > 0;
	atomic_store(&s->mem_limited, limited);
	if (!limited)
		return;
	uint64_t permille = current * 1000 / max;
	bool was = atomic_load(&s->mem_shedding);
	if (!was && permille >= MEM_SHED_START) {
		atomic_store(&s->mem_shedding, true);
		log_warning("memory at %" PRIu64 " of MemoryMax=%" PRIu64 " bytes (%" PRIu64
		            ".%" PRIu64 "%%): refusing new connections (result shed) until below "
		            "%d%%; %llu live connections go on",
		            current, max, permille / 10, permille % 10, MEM_SHED_STOP / 10,
		            (unsigned long long)atomic_load(&s->env.n_active));
	} else if (was && permille < MEM_SHED_STOP) {
		atomic_store(&s->mem_shedding, false);
		log_info("memory at %" PRIu64 " of MemoryMax=%" PRIu64
		         " bytes: accepting new connections again",
		         current, max);
	}
}

static void check_memory(struct server *s) {
	pthread_mutex_lock(&s->memlimit_lock);
	check_memory_locked(s);
	pthread_mutex_unlock(&s->memlimit_lock);
}

/* From the accept path: cheap unless a limit is set, and never waits for the lock. */
static void check_memory_after_accept(struct server *s) {
	if (!atomic_load_explicit(&s->mem_limited, memory_order_relaxed) ||
	    atomic_fetch_add_explicit(&s->accepts_since_mem_check, 1, memory_order_relaxed) %
	                    MEM_CHECK_ACCEPTS !=
	            MEM_CHECK_ACCEPTS - 1)
		return;
	if (pthread_mutex_trylock(&s->memlimit_lock) != 0)
		return;
	check_memory_locked(s);
	pthread_mutex_unlock(&s->memlimit_lock);
}

static int on_tick(sd_event_source *src, uint64_t usec, void *userdata) {
	struct server *s = userdata;

	check_memory(s);

	/* a dead process's slots are freed at the next tick after a failure: nothing to do */
	(void)breaker_table_reap(s->env.breakers);
	tend_spawner(s);
	notify_status(s);
	for (unsigned i = 0; i < s->n_workers; i++) {
		struct server_worker *w = &s->workers[i];
		if (atomic_load(&w->core.n_conns) == 0 &&
		    atomic_load(&w->core.conns_peak) >= WORKER_REBUILD_PEAK &&
		    !atomic_exchange(&w->rebuild_requested, true)) {
			uint64_t one = 1;
			/* an eventfd's counter only fails to take 1 when it is already huge: the
			 * worker is then woken anyway */
			ssize_t _unused_ n = write(w->wake_fd, &one, sizeof one);
		}
	}
	/* glibc keeps freed memory in its arenas: after a load peak has passed, give it back */
	uint64_t active = atomic_load(&s->env.n_active);
	if (active > s->active_peak)
		s->active_peak = active;
	else if (s->active_peak >= 256 && active < s->active_peak / 2) {
		(void)malloc_trim(0); /* says only whether there was anything to give back */
		s->active_peak = active;
	}
	int r = sd_event_source_set_time(src, usec + 1000000);
	if (r < 0)
		return r;
	return sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
}

/* ---- workers ---- */

/* Every worker watches every listening socket, with EPOLLEXCLUSIVE: a new connection wakes
 * one worker, not all of them. */
static void set_accepting(struct server_worker *w, bool on) {
	for (size_t i = 0; i < w->server->listening.n; i++) {
		struct accept_watch *a = &w->accepts[i];
		const struct listen_fd *lf = &w->server->listening.fds[i];
		if (a->on == on)
			continue;
		if (on)
			a->on = poller_add(&w->core.poller, lf->fd, EPOLLIN | EPOLLEXCLUSIVE,
			                   &a->io) >= 0;
		else {
			poller_remove(&w->core.poller, lf->fd);
			a->on = false;
		}
	}
}

static int open_reserve_fd(void) { return open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC); }

static int on_accept_retry(sd_event_source *src, uint64_t usec, void *userdata) {
	struct server_worker *w = userdata;
	(void)src, (void)usec;
	/* the reserve could not be taken back while fds were short: try again now, or the next
	 * shortage would find nothing to shed with */
	if (w->reserve_fd < 0)
		w->reserve_fd = open_reserve_fd();
	set_accepting(w, true);
	return 0;
}

/* Out of fds. A connection left in the backlog would hang until fds come back, so spend the
 * reserve fd to accept and close what is waiting (the client sees the close at once), as
 * HAProxy and nginx do; if even that is impossible, pause accepting for a moment instead of
 * spinning on a backlog that cannot be taken. */
static void shed(struct server_worker *w, int listen_fd, int err) {
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
		int r;
		if (!w->accept_retry)
			r = sd_event_add_time_relative(w->core.event, &w->accept_retry,
			                               CLOCK_MONOTONIC, ACCEPT_RETRY_USEC, 10000,
			                               on_accept_retry, w);
		else {
			r = sd_event_source_set_time_relative(w->accept_retry, ACCEPT_RETRY_USEC);
			if (r >= 0)
				r = sd_event_source_set_enabled(w->accept_retry, SD_EVENT_ONESHOT);
		}
		if (r < 0) {
			/* no timer to come back: accept again at once rather than never */
			log_warning_errno(r, "worker %u: pausing accepting", w->core.index);
			set_accepting(w, true);
		}
		poller_event_changed(&w->core.poller);
	}
	worker_note_shed(&w->core, err, closed);
}

static void on_accept(struct poller_handle *h, uint32_t revents) {
	struct accept_watch *a = container_of(h, struct accept_watch, io);
	struct server_worker *w = a->worker;
	const struct listen_fd *lf = &w->server->listening.fds[a->index];
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
			if (worker_err_is_exhaustion(errno))
				shed(w, fd, errno);
			else if (errno != EAGAIN)
				log_warning_errno(errno, "accept");
			return;
		}
		check_memory_after_accept(w->server);
		if (atomic_load(&w->server->mem_shedding)) {
			/* closed at once: the client sees it, and no memory is spent on it */
			safe_close(cfd);
			worker_note_shed(&w->core, ENOMEM, 1);
			return;
		}
		/* conn_start() logs and closes what it cannot serve: nothing left to do here */
		if (lf->wildcard) {
			struct sockaddr_storage local;
			socklen_t len = sizeof local;
			if (getsockname(cfd, (struct sockaddr *)&local, &len) < 0) {
				safe_close(cfd);
				continue;
			}
			(void)conn_start(&w->server->env, &w->core, cfd, (struct sockaddr *)&local,
			                 len, (struct sockaddr *)&peer, peer_len, flags);
		} else
			(void)conn_start(&w->server->env, &w->core, cfd,
			                 (struct sockaddr *)&lf->addr, lf->addr_len,
			                 (struct sockaddr *)&peer, peer_len, flags);
		return;
	}
}

/* After each batch of socket events (the worker freed its graveyard just before). A
 * draining worker's post source (on_drain_check) fires only after sd-event dispatched
 * something, and a driving poller's batches are not that: the last connection closing in
 * one is checked here. */
static void worker_exit_if_drained(struct server_worker *w) {
	if (w->core.n_conns > 0)
		return;
	(void)sd_event_exit(w->core.event, 0); /* fails only when already exiting */
	poller_event_changed(&w->core.poller);
}

static void worker_batch_end(struct worker *core) {
	struct server_worker *w = container_of(core, struct server_worker, core);
	bool has_conns = atomic_load(&w->core.n_conns) > 0;
	if (w->had_conns && !has_conns && !atomic_exchange(&w->server->status_dirty, true)) {
		/* the tick would say it up to a second late: `systemctl status` right after a
		 * client closed would still count it */
		uint64_t one = 1;
		ssize_t _unused_ n =
		        write(w->server->main_wake_fd, &one, sizeof one); /* as wake_fd */
	}
	w->had_conns = has_conns;
	if (w->drain_check)
		worker_exit_if_drained(w);
}

static int on_drain_check(sd_event_source *src, void *userdata) {
	(void)src;
	worker_exit_if_drained(userdata);
	return 0;
}

static int on_drain_timeout(sd_event_source *src, uint64_t usec, void *userdata) {
	struct server_worker *w = userdata;
	(void)usec;
	conn_close_all(&w->core, CONN_RESULT_DRAIN_TIMEOUT);
	return sd_event_exit(sd_event_source_get_event(src), 0);
}

/* Let the worker's connections finish for up to `usec`, then close them with
 * drain_timeout; with 0, close them now with shutdown. The worker's loop ends when none is
 * left. */
static int worker_drain(struct server_worker *w, uint64_t usec) {
	int r;

	w->draining = true;
	if (w->core.n_conns == 0)
		return sd_event_exit(w->core.event, 0);
	if (usec == 0) {
		conn_close_all(&w->core, CONN_RESULT_SHUTDOWN);
		return sd_event_exit(w->core.event, 0);
	}
	r = sd_event_add_time_relative(w->core.event, &w->drain_timer, CLOCK_MONOTONIC, usec, 10000,
	                               on_drain_timeout, w);
	if (r >= 0)
		r = sd_event_add_post(w->core.event, &w->drain_check, on_drain_check, w);
	if (r < 0)
		return sd_event_exit(w->core.event, 0);
	/* a post source fires only after some other event: keep one checking until drained */
	return sd_event_source_set_enabled(w->drain_check, SD_EVENT_ON);
}

/* How long what cannot move may drain: a stop holds every new client in the socket's
 * backlog until this process exits, so only a drain the config asks for; the old image of a
 * re-exec holds no one up, so it drains for config.drain_timeout_ms (30 s by default). */
static uint64_t drain_usec(struct server *s, bool reexec) {
	struct config *c = server_config_get(s);
	uint64_t usec = reexec || c->module.drain_timeout_configured
	                        ? (uint64_t)c->module.drain_timeout_ms * 1000
	                        : 0;
	config_unref(c);
	return usec;
}

/* Stopping with a store: move what can move, let the rest (TLS) finish within a configured
 * drain_timeout_ms, or close it at once. */
static int worker_hand_over(struct server_worker *w) {
	int r;

	set_accepting(w, false);
	r = handoff_worker(&w->core);
	if (r < 0)
		/* nothing moved: every connection drains as without a store */
		log_warning_errno(r, "worker %u: no hand-over", w->core.index);
	return worker_drain(w, drain_usec(w->server, false));
}

/* Re-exec, on the worker's thread (its connections are only ever touched there): hand the
 * spliced ones over, report, and wait for the main thread to start the new image. Then
 * drain what is left, or, when the new image failed (its connections were taken back by
 * the main thread meanwhile), accept again. */
static int worker_reexec(struct server_worker *w) {
	struct server *s = w->server;
	int r, outcome;

	set_accepting(w, false);
	poller_event_changed(&w->core.poller);
	r = handoff_worker_direct(&w->core, &s->reexec_fds, &s->reexec_lock);
	if (r < 0)
		log_warning_errno(r, "worker %u: no hand-over to the new image", w->core.index);
	pthread_mutex_lock(&s->reexec_lock);
	s->reexec_exported++;
	pthread_cond_broadcast(&s->reexec_cond);
	while ((outcome = s->reexec_outcome) == 0)
		pthread_cond_wait(&s->reexec_cond, &s->reexec_lock);
	pthread_mutex_unlock(&s->reexec_lock);
	if (outcome < 0) {
		set_accepting(w, true);
		poller_event_changed(&w->core.poller);
		return 0;
	}
	return worker_drain(w, drain_usec(s, true));
}

static int on_wake(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
	struct server_worker *w = userdata;
	uint64_t v;
	(void)revents;

	/* EAGAIN when a wake-up was already read: what it says is in the flags below */
	ssize_t _unused_ n = read(fd, &v, sizeof v);
	if (w->draining) {
		if (atomic_load(&w->server->drain_cut)) {
			conn_close_all(&w->core, CONN_RESULT_SHUTDOWN);
			return sd_event_exit(sd_event_source_get_event(src), 0);
		}
		return 0;
	}
	if (atomic_load(&w->server->reexec_requested))
		return worker_reexec(w);
	if (!atomic_load(&w->server->stopping)) {
		if (atomic_exchange(&w->rebuild_requested, false) && w->core.n_conns == 0 &&
		    w->core.conns_peak >= WORKER_REBUILD_PEAK)
			return sd_event_exit(sd_event_source_get_event(src), WORKER_EXIT_REBUILD);
		return 0;
	}
	/* fails only for a source already gone: stopping goes on either way */
	(void)sd_event_source_set_enabled(src, SD_EVENT_OFF);
	if (w->server->handover)
		return worker_hand_over(w);
	if (w->server->stop_for_good) {
		set_accepting(w, false);
		return worker_drain(w, drain_usec(w->server, false));
	}
	return sd_event_exit(sd_event_source_get_event(src), 0);
}

/* Give a worker its event loop and the sources on its long-lived fds. With `event` given
 * (the inetd model) it shares the main loop. */
static int worker_attach_all(struct server_worker *w, sd_event *event) {
	struct server *s = w->server;
	int r;

	r = worker_attach(&w->core, event);
	if (r < 0)
		return r;
	r = sd_event_add_io(w->core.event, &w->wake_source, w->wake_fd, EPOLLIN, on_wake, w);
	if (r < 0)
		return r;
	w->accepts = calloc(s->listening.n ? s->listening.n : 1, sizeof *w->accepts);
	if (!w->accepts)
		return -ENOMEM;
	for (size_t i = 0; i < s->listening.n; i++)
		w->accepts[i] =
		        (struct accept_watch){.io.dispatch = on_accept, .worker = w, .index = i};
	set_accepting(w, true);
	for (size_t i = 0; i < s->listening.n; i++)
		if (!w->accepts[i].on)
			return -ENOMEM; /* what epoll_ctl() fails with here */
	w->core.conns_peak = 0;
	return 0;
}

static void worker_detach_all(struct server_worker *w) {
	w->accepts = mfree(w->accepts); /* their registrations go with the poller */
	w->accept_retry = sd_event_source_disable_unref(w->accept_retry);
	w->drain_timer = sd_event_source_disable_unref(w->drain_timer);
	w->drain_check = sd_event_source_disable_unref(w->drain_check);
	w->wake_source = sd_event_source_disable_unref(w->wake_source);
	worker_detach(&w->core);
}

static int server_worker_init(struct server_worker *w, struct server *s, unsigned index,
                              sd_event *event) {
	int r;

	w->server = s;
	w->core.on_batch_end = worker_batch_end;
	w->reserve_fd = open_reserve_fd();
	w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	r = worker_init(&w->core, index);
	if (r < 0)
		return r;
	if (w->wake_fd < 0)
		return -errno;
	/* a thread's own loop beats for the watchdog; a shared one is the main loop, which
	 * pings only when it turns anyway. Eight beats per interval: a late one is no alarm. */
	if (!event)
		w->core.heartbeat_interval_usec = s->watchdog_usec / 8;
	return worker_attach_all(w, event);
}

static void server_worker_done(struct server_worker *w) {
	conn_close_all(&w->core, CONN_RESULT_OK);
	worker_detach_all(w);
	worker_done(&w->core);
	w->wake_fd = safe_close(w->wake_fd);
	w->reserve_fd = safe_close(w->reserve_fd);
}

static void *worker_main(void *arg) {
	struct server_worker *w = arg;
	int r;

	for (;;) {
		r = worker_run(&w->core);
		if (r != WORKER_EXIT_REBUILD || atomic_load(&w->server->stopping) ||
		    w->core.n_conns > 0)
			break;
		worker_detach_all(w);
		r = worker_attach_all(w, NULL);
		if (r < 0) {
			log_error_errno(r, "worker %u: rebuilding its event loop", w->core.index);
			break;
		}
		(void)malloc_trim(0); /* says only whether there was anything to give back */
		log_debug("worker %u: event loop rebuilt after a load peak", w->core.index);
	}
	if (r < 0)
		log_error_errno(r, "worker %u: event loop failed", w->core.index);
	/* its loop is over: nothing to beat for, and nothing the watchdog should wait on */
	atomic_store(&w->core.heartbeat_usec, WORKER_HEARTBEAT_NONE);
	atomic_fetch_add(&w->server->workers_done, 1);
	uint64_t one = 1;
	ssize_t _unused_ n = write(w->server->main_wake_fd, &one, sizeof one); /* as wake_fd */
	return NULL;
}

/* ---- re-exec: the new image takes over, this one drains ---- */

/* Adoption spreads the stored connections over the workers in turn. */
struct worker_turn {
	struct server *server;
	unsigned next;
};

static struct worker *next_worker(void *userdata) {
	struct worker_turn *t = userdata;
	return &t->server->workers[t->next++ % t->server->n_workers].core;
}

static void reexec_finish(struct server *s, int outcome) {
	pthread_mutex_lock(&s->reexec_lock);
	atomic_store(&s->reexec_requested, false);
	s->reexec_outcome = outcome;
	pthread_cond_broadcast(&s->reexec_cond);
	pthread_mutex_unlock(&s->reexec_lock);
}

static int reexec_failed(struct server *s, int r) {
	log_event(LOG_ERR, TCPMAP_MID_LIFECYCLE, "reexec_failed", NULL, 0,
	          "re-exec failed, this image goes on: %s", strerror(-r));
	notify("READY=1");
	notify_status(s);
	return 0;
}

/* Start the installed binary as the new image with our listening sockets, and go on
 * accepting while it loads (reexec.h); then hand it every spliced connection, while the
 * workers wait, and once it is ready drain what is left (TLS) and exit. If the new image
 * does not get ready, take the connections back and go on. */
static int server_reexec(struct server *s, const char *why) {
	struct reexec_child child;
	int r;

	notify("RELOADING=1");
	log_info("re-executing (%s): starting a new image, accepting until it has loaded", why);
	{
		_cleanup_free_ int *listen =
		        calloc(s->listening.n ? s->listening.n : 1, sizeof *listen);
		_cleanup_free_ const char **names =
		        calloc(s->listening.n ? s->listening.n : 1, sizeof *names);
		if (!listen || !names)
			return reexec_failed(s, -ENOMEM);
		for (size_t i = 0; i < s->listening.n; i++) {
			listen[i] = s->listening.fds[i].fd;
			names[i] = REEXEC_LISTEN_NAME;
		}
		r = reexec_spawn(listen, names, s->listening.n, REEXEC_READY_TIMEOUT_USEC, &child);
		if (r < 0)
			return reexec_failed(s, r);
	}

	/* From here until the new image is ready nobody accepts: only the hand-over itself. */
	pthread_mutex_lock(&s->reexec_lock);
	s->reexec_exported = 0;
	s->reexec_outcome = 0;
	atomic_store(&s->reexec_requested, true);
	pthread_mutex_unlock(&s->reexec_lock);
	wake_workers(s);
	pthread_mutex_lock(&s->reexec_lock);
	while (s->reexec_exported < s->n_workers)
		pthread_cond_wait(&s->reexec_cond, &s->reexec_lock);
	pthread_mutex_unlock(&s->reexec_lock);

	size_t n = handoff_store_size(&s->reexec_fds);
	_cleanup_free_ int *fds = calloc(n ? n : 1, sizeof *fds);
	_cleanup_free_ const char **names = calloc(n ? n : 1, sizeof *names);
	r = -ENOMEM;
	if (fds && names) {
		for (size_t i = 0; i < n; i++)
			fds[i] = handoff_store_get(&s->reexec_fds, i, &names[i]);
		r = reexec_send(&child, fds, names, n);
		if (r >= 0)
			r = reexec_wait_ready(&child, REEXEC_READY_TIMEOUT_USEC);
	}
	if (r < 0) {
		/* gone for sure first, so no connection is relayed by two images */
		reexec_child_stop(&child);
		/* the workers wait, so their connections can be put back from here */
		handoff_adopt_all(&s->reexec_fds, &s->env, next_worker,
		                  &(struct worker_turn){.server = s});
		reexec_finish(s, -1);
		return reexec_failed(s, r);
	}
	reexec_child_close(&child);
	/* the new image has its own copies */
	handoff_store_clear(&s->reexec_fds);
	s->superseded = true;
	atomic_store(&notify_muted, true);
	atomic_store(&s->stopping, true);
	reexec_finish(s, 1);
	char new_pid[24];
	snprintf(new_pid, sizeof new_pid, "%d", (int)child.pid);
	struct log_field f[] = {{"NEW_PID", new_pid}};
	log_event(LOG_INFO, TCPMAP_MID_LIFECYCLE, "reexec", f, ELEMENTSOF(f),
	          "superseded by pid %s; draining what could not move", new_pid);
	return 0;
}

/* A worker finished: once a superseded image has none left, it is done. */
static int on_worker_done(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
	struct server *s = userdata;
	uint64_t v;
	(void)revents;
	ssize_t _unused_ n = read(fd, &v, sizeof v);
	if (s->superseded && atomic_load(&s->workers_done) >= s->n_workers)
		return sd_event_exit(sd_event_source_get_event(src), 0);
	if (!atomic_load(&s->status_dirty))
		return 0;
	/* a worker went idle: its last close counts at once, or at the end of the interval */
	uint64_t due = s->status_sent_usec + STATUS_MIN_USEC;
	if (now_usec() >= due || !s->status_timer ||
	    sd_event_source_set_time(s->status_timer, due) < 0 ||
	    sd_event_source_set_enabled(s->status_timer, SD_EVENT_ONESHOT) < 0)
		notify_status(s);
	return 0;
}

static int on_status_due(sd_event_source *src, uint64_t usec, void *userdata) {
	(void)src;
	(void)usec;
	notify_status(userdata);
	return 0;
}

/* ---- one connection, on stdin or from an Accept=yes socket ---- */

static int run_inetd(struct server *s, int fd) {
	struct server_worker w = {0};
	struct sockaddr_storage local;
	socklen_t len = sizeof local;
	int r;

	if (getsockname(fd, (struct sockaddr *)&local, &len) < 0)
		return log_error_errno(errno, "getsockname on the connection");
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return log_error_errno(errno, "fcntl");
	r = server_worker_init(&w, s, 0, s->event);
	if (r < 0) {
		server_worker_done(&w);
		return log_error_errno(r, "setting up the connection");
	}
	s->workers = &w;
	s->n_workers = 1;
	notify("READY=1");
	/* conn_start() logs and closes what it cannot serve; the loop below then ends at once */
	(void)conn_start(&s->env, &w.core, fd, (struct sockaddr *)&local, len, NULL, 0, 0);
	/* one connection, then exit: run until it is gone or we are told to stop */
	while (w.core.n_conns > 0 && !atomic_load(&s->stopping)) {
		r = sd_event_run(s->event, UINT64_MAX);
		if (r < 0)
			break;
	}
	server_worker_done(&w);
	s->workers = NULL;
	return r < 0 ? r : 0;
}

/* ---- the watchdog ---- */

/* A worker is stuck when its loop has not beaten for half of WatchdogSec=: systemd would
 * otherwise go on hearing from the main loop while that worker's connections hang. */
static void watchdog_trip(struct server *s, unsigned index, uint64_t age_usec) {
	char worker[16], stuck_ms[24];
	snprintf(worker, sizeof worker, "%u", index);
	snprintf(stuck_ms, sizeof stuck_ms, "%llu", (unsigned long long)(age_usec / 1000));
	struct log_field f[] = {{"WORKER", worker}, {"STUCK_MS", stuck_ms}};
	log_event(LOG_ERR, TCPMAP_MID_LIFECYCLE, "worker_stuck", f, ELEMENTSOF(f),
	          "worker %s made no progress for %s ms: no more watchdog pings, systemd will "
	          "restart tcpmapd",
	          worker, stuck_ms);
	s->watchdog_tripped = true;
	notify("STATUS=a worker is stuck; waiting for the watchdog to restart tcpmapd");
	/* The process will be killed (WatchdogSignal=): hand what the other workers splice to
	 * the fd store now, as a restart would, so the new process adopts it. The stuck worker
	 * never looks; its connections end with the process. Without a store the others go on
	 * serving until the kill. */
	if (!handoff_available() || !s->listening.fds)
		return;
	s->handover = true;
	atomic_store(&s->stopping, true);
	wake_workers(s);
}

static int on_watchdog(sd_event_source *src, uint64_t usec, void *userdata) {
	struct server *s = userdata;
	uint64_t now = now_usec(), limit = s->watchdog_usec / 2;
	/* The main loop itself was held up (a re-exec waits for its workers): their
	 * heartbeats are as late as it was, through no fault of theirs. Judge next time. */
	bool judge = now - s->watchdog_checked_usec <= limit;

	s->watchdog_checked_usec = now;
	/* the old image of a re-exec is no longer the service's main process */
	if (s->superseded || s->watchdog_tripped)
		return 0;
	for (unsigned i = 0; judge && i < s->n_workers; i++) {
		uint64_t age = worker_heartbeat_age(&s->workers[i].core, now);
		if (age > limit) {
			watchdog_trip(s, i, age);
			return 0;
		}
	}
	notify("WATCHDOG=1");
	int r = sd_event_source_set_time(src, usec + s->watchdog_usec / 4);
	if (r < 0)
		return r;
	return sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
}

/* Ping systemd's watchdog from the main loop, four times per WatchdogSec=, while every
 * worker beats. Without WatchdogSec= nothing is added. */
static int watchdog_start(struct server *s) {
	s->watchdog_checked_usec = now_usec();
	return sd_event_add_time_relative(s->event, NULL, CLOCK_MONOTONIC, s->watchdog_usec / 4,
	                                  s->watchdog_usec / 40, on_watchdog, s);
}

/* reexec_receive()'s hand-over fds: into the store, as systemd's would be. */
static int store_received_fd(void *userdata, int fd, const char *name) {
	if (!handoff_is_stored_name(name))
		return -EINVAL;
	return handoff_store_add(userdata, fd, name);
}

static unsigned workers_wanted(const struct server *s) {
	if (s->opts.workers > 0)
		return s->opts.workers;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	return cpus > 0 ? (unsigned)cpus : 1;
}

static int run_threaded(struct server *s) {
	unsigned n = workers_wanted(s);
	int r;

	s->workers = calloc(n, sizeof *s->workers);
	if (!s->workers)
		return log_error_errno(ENOMEM, "workers");
	for (unsigned i = 0; i < n; i++) {
		r = server_worker_init(&s->workers[i], s, i, NULL);
		if (r < 0)
			return log_error_errno(r, "worker %u", i);
	}
	s->threaded = true;
	/* before any worker runs: they read the pointer without a lock */
	r = relayspawn_new(s->runtime_dir, &s->env.spawner);
	if (r < 0)
		return log_error_errno(r, "relay spawner");
	tend_spawner(s);
	/* Started by a re-exec: the old image accepted while this one loaded; it stops now and
	 * passes its spliced connections, which are adopted before this one accepts. */
	if (reexec_started_by_old_image()) {
		(void)reexec_receive(store_received_fd, &s->stored, REEXEC_READY_TIMEOUT_USEC);
		s->stored.not_in_fdstore = true;
	}
	s->n_workers = n; /* adoption spreads over all of them */
	handoff_adopt_all(&s->stored, &s->env, next_worker, &(struct worker_turn){.server = s});
	s->n_workers = 0;
	for (unsigned i = 0; i < n; i++) {
		r = -pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]);
		if (r < 0)
			return log_error_errno(r, "starting worker %u", i);
		s->n_workers = i + 1;
	}

	char gen[24];
	snprintf(gen, sizeof gen, "%llu", (unsigned long long)s->env.config->generation);
	struct log_field f[] = {{"CONFIG_GENERATION", gen}};
	log_event(LOG_INFO, TCPMAP_MID_LIFECYCLE, "ready", f, ELEMENTSOF(f),
	          "tcpmapd %s ready: %zu sockets, %u workers, %zu mappings", TCPMAP_VERSION,
	          s->listening.n, n, s->env.config->n_mappings);
	if (reexec_started_by_old_image())
		reexec_announce_ready(); /* MAINPID= and READY=1, then the old image drains */
	else
		notify("READY=1");
	notify_status(s);

	r = sd_event_loop(s->event);

	atomic_store(&s->stopping, true);
	wake_workers(s);
	for (unsigned i = 0; i < s->n_workers; i++)
		(void)pthread_join(s->workers[i].thread, NULL); /* fails only for a bad id */
	for (unsigned i = 0; i < n; i++)
		server_worker_done(&s->workers[i]);
	free(s->workers);
	s->workers = NULL;
	relayspawn_free(s->env.spawner);
	s->env.spawner = NULL;
	log_event(LOG_INFO, TCPMAP_MID_LIFECYCLE, "stop", NULL, 0, "tcpmapd stopped");
	return r < 0 ? r : 0;
}

int server_run(const struct server_options *o) {
	reexec_remember_binary();
	struct server s = {.opts = *o};
	sigset_t mask;
	int r, connected_fd = -EBADF;
	bool own_fds = false;

	(void)pthread_mutex_init(&s.env.config_lock, NULL); /* cannot fail without attributes */
	(void)pthread_mutex_init(&s.memlimit_lock, NULL);
	(void)pthread_mutex_init(&s.reexec_lock, NULL);
	(void)pthread_cond_init(&s.reexec_cond, NULL);
	s.main_wake_fd = -EBADF;
	s.reexec_fds.not_in_fdstore = true; /* duplicates for a new image, never stored */
	reexec_protect_ready_fd();
	/* Two sockets and up to two pipes per connection: take every fd the hard limit allows,
	 * as systemd itself does for its services' soft limit. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	char rundir[4096];
	if (!o->runtime_dir) {
		r = rundir_default(rundir, sizeof rundir);
		if (r < 0)
			return log_error_errno(r, "$RUNTIME_DIRECTORY");
	}
	s.runtime_dir = o->runtime_dir ? o->runtime_dir : rundir;
	/* Another user who can replace files in it could hand us their breaker table: open it
	 * once, check it on the fd, and make the table relative to that fd (rundir.h). */
	_cleanup_close_ int rundir_fd = -EBADF;
	r = rundir_open(s.runtime_dir, true, &rundir_fd);
	if (r < 0 && rundir_refusal(r))
		return log_error_errno(r, "runtime directory %s %s", s.runtime_dir,
		                       rundir_refusal(r));
	if (r < 0)
		return log_error_errno(r, "runtime directory %s", s.runtime_dir);
	/* Keys live in this process's memory once loaded: no core dump, no ptrace by others of
	 * the same uid (lib/tls.c also keeps OpenSSL's private key numbers in its locked
	 * secure heap). A core limit of 0 also holds when fs.suid_dumpable would allow one. */
	(void)prctl(PR_SET_DUMPABLE, 0);
	(void)setrlimit(RLIMIT_CORE, &(struct rlimit){0, 0});
	r = breaker_table_open(rundir_fd, &s.env.breakers);
	if (r >= 0)
		open_ticket_keys(&s, rundir_fd);
	rundir_fd = safe_close(rundir_fd);
	if (r == -EPROTO)
		return log_error_errno(r,
		                       "%s/breakers was made by an incompatible tcpmap version; "
		                       "remove it once no tcpmap process runs",
		                       s.runtime_dir);
	if (r < 0)
		return log_error_errno(r, "cannot open the breaker table in %s", s.runtime_dir);

	(void)memlimit_init(&s.memlimit); /* without a limit there is nothing to watch */
	check_memory(&s);
	/* Where do the sockets come from? Known before the config loads: only the secrets
	 * of the listeners these sockets serve are this process's to load. */
	if (o->inetd)
		connected_fd = STDIN_FILENO;
	else {
		r = listeners_take_systemd(&s.listening, &s.stored, &connected_fd);
		if (r < 0)
			goto finish;
		own_fds = s.listening.n == 0 && connected_fd < 0;
	}
	s.sockets_given = !own_fds;
	if (connected_fd >= 0) {
		s.connection_local_len = sizeof s.connection_local;
		if (getsockname(connected_fd, (struct sockaddr *)&s.connection_local,
		                &s.connection_local_len) < 0)
			s.sockets_given = false; /* not a socket (a test's pipe): load everything */
	}
	r = load_config(&s, &s.env.config);
	if (r < 0) {
		log_error("no valid configuration, exiting");
		goto finish;
	}
	if (own_fds) {
		r = listeners_bind(&s.listening, s.env.config);
		if (r < 0)
			goto finish;
	}

	/* A process per connection loads the config once per connection: that is no news, and
	 * at info level it would flood the journal (a connection's own entries say enough). */
	char gen[24];
	snprintf(gen, sizeof gen, "%llu", (unsigned long long)s.env.config->generation);
	struct log_field f[] = {{"CONFIG_GENERATION", gen}};
	log_event(connected_fd >= 0 ? LOG_DEBUG : LOG_INFO, TCPMAP_MID_CONFIG, "config", f,
	          ELEMENTSOF(f), "config loaded: generation %s, %zu mappings, %zu listeners", gen,
	          s.env.config->n_mappings, s.env.config->n_listeners);
	if (connected_fd < 0) /* the metrics list long-running processes only */
		(void)breaker_table_note_config(s.env.breakers, s.env.config->generation);

	/* splice has no MSG_NOSIGNAL: a vanished peer is EPIPE (fails only for a bad signal) */
	(void)signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR2);
	sigaddset(&mask, SIGCHLD);
	/* before any thread starts: they inherit it (fails only for a bad `how`) */
	(void)pthread_sigmask(SIG_BLOCK, &mask, NULL);

	r = sd_event_default(&s.event);
	if (r < 0)
		goto finish;
	r = sd_event_add_signal(s.event, NULL, SIGTERM, on_sigterm, &s);
	if (r >= 0)
		r = sd_event_add_signal(s.event, NULL, SIGINT, on_sigterm, &s);
	if (r >= 0)
		r = sd_event_add_signal(s.event, NULL, SIGHUP, on_sighup, &s);
	if (r >= 0)
		r = sd_event_add_signal(s.event, NULL, SIGUSR2, on_sigusr2, &s);
	if (r >= 0)
		r = sd_event_add_signal(s.event, NULL, SIGCHLD, on_sigchld, &s);
	if (r >= 0) {
		s.main_wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		r = s.main_wake_fd < 0 ? -errno
		                       : sd_event_add_io(s.event, NULL, s.main_wake_fd, EPOLLIN,
		                                         on_worker_done, &s);
	}
	if (r >= 0 && s.main_wake_fd >= 0) {
		/* armed by on_worker_done when a STATUS= is due sooner than the tick */
		r = sd_event_add_time(s.event, &s.status_timer, CLOCK_MONOTONIC, UINT64_MAX, 10000,
		                      on_status_due, &s);
		if (r >= 0)
			r = sd_event_source_set_enabled(s.status_timer, SD_EVENT_OFF);
	}
	if (r >= 0)
		r = sd_event_add_time_relative(s.event, NULL, CLOCK_MONOTONIC, 1000000, 100000,
		                               on_tick, &s);
	if (r < 0) {
		log_error_errno(r, "setting up the main event loop");
		goto finish;
	}
	/* Only under a unit with WatchdogSec=. With worker threads the ping also needs every
	 * worker's heartbeat (watchdog_start); one connection on stdin shares the main loop,
	 * whose own ping sd-event does. Failing to set either leaves a watchdog systemd then
	 * enforces itself. */
	uint64_t watchdog_usec = 0;
	if (sd_watchdog_enabled(false, &watchdog_usec) > 0 && connected_fd < 0) {
		s.watchdog_usec = watchdog_usec;
		r = watchdog_start(&s);
		if (r < 0) {
			log_error_errno(r, "setting up the watchdog");
			goto finish;
		}
	} else
		(void)sd_event_set_watchdog(s.event, true);

	if (connected_fd >= 0)
		r = run_inetd(&s, connected_fd);
	else {
		s.n_unmapped = warn_unmapped_sockets(&s, s.env.config);
		r = run_threaded(&s);
	}

finish:
	listeners_done(&s.listening, own_fds);
	s.event = sd_event_unref(s.event);
	s.status_timer = sd_event_source_unref(s.status_timer);
	safe_close(s.main_wake_fd);
	config_unref(s.env.config);
	/* after the config: its server contexts seal tickets with these keys */
	s.ticket_keys = ticketkeys_close(s.ticket_keys);
	breaker_table_close(s.env.breakers);
	pthread_mutex_destroy(&s.env.config_lock);
	pthread_mutex_destroy(&s.memlimit_lock);
	return r;
}
