/* handoff.c — moving connections through systemd's fd store; see handoff.h. Must never
 * leave a name in the store that the next process would not clean up, and never close a
 * connection for the client because it could not move: it stays and drains. */
#include "handoff.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "handover.h"
#include "log.h"
#include "netaddr.h"
#include "util.h"

bool handoff_available(void) {
	const char *a = getenv("TCPMAP_FDSTORE"), *b = getenv("FDSTORE");
	if (!getenv("NOTIFY_SOCKET"))
		return false;
	return (a && *a && !streq(a, "0")) || (b && *b && !streq(b, "0"));
}

int handoff_store_fd(const char *name, int fd) {
	char msg[112];
	/* FDPOLL=0: systemd would otherwise drop a stored socket at its first EPOLLHUP, and a
	 * connection whose upstream has ended both ways may still owe the client the bytes in
	 * its pipe; the next process removes every name itself (docs/ARCHITECTURE.md) */
	int n = snprintf(msg, sizeof msg, "FDSTORE=1\nFDPOLL=0\nFDNAME=%s", name);
	if (n < 0 || (size_t)n >= sizeof msg)
		return -ENAMETOOLONG;
	int r = sd_pid_notify_with_fds(0, false, msg, &fd, 1);
	return r < 0 ? r : r == 0 ? -ENOTCONN : 0;
}

struct handoff_stored {
	int fd;
	char *name;
};

/* Where handed-over connections go: systemd's fd store (`direct` NULL), or a list of
 * duplicates for a new image this process starts itself (server.c's re-exec). */
struct handoff_sink {
	struct handoff_store *direct;
	pthread_mutex_t *lock; /* the workers fill one list */
};

static int sink_put(const struct handoff_sink *k, const char *name, int fd) {
	if (!k->direct)
		return handoff_store_fd(name, fd);
	int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (copy < 0)
		return -errno;
	pthread_mutex_lock(k->lock);
	int r = handoff_store_add(k->direct, copy, name);
	pthread_mutex_unlock(k->lock);
	if (r < 0)
		safe_close(copy);
	return r;
}

static int store_conn_fd(const struct handoff_sink *k, const char *id, enum handover_fd_kind kind,
                         int fd) {
	char name[64];
	int r = handover_fd_name(id, kind, name, sizeof name);
	if (r < 0)
		return r;
	return sink_put(k, name, fd);
}

/* Hand one connection to the sink and forget it. Returns 0, or -EBUSY when it cannot move
 * (TLS, or not relaying yet), or -errno when storing failed: it stays either way. */
static int handoff_conn(const struct handoff_sink *sink, struct conn *c, int state_fd) {
	struct handover_record rec;
	int fds[_HANDOVER_FD_MAX];
	int r = conn_export(c, &rec, fds);
	if (r < 0)
		return r;

	/* The fds first: a record without its fds is discarded by the next process, while fds
	 * without a record would be closed by it, so either order is safe; this one loses less.
	 * A pipe is stored only with bytes in it (relay_export). */
	for (int k = 0; k < _HANDOVER_FD_MAX && r >= 0; k++)
		if (fds[k] >= 0)
			r = store_conn_fd(sink, rec.id, k, fds[k]);
	if (r >= 0) {
		ssize_t n = write(state_fd, &rec, sizeof rec);
		if (n != (ssize_t)sizeof rec)
			r = n < 0 ? -errno : -EIO;
	}
	if (r < 0)
		return log_warning_errno(r, "connection %s could not move to %s, it stays", rec.id,
		                         sink->direct ? "the new image" : "the fd store");

	char client[NETADDR_TEXT_MAX], in[24], out[24];
	netaddr_format((const struct sockaddr *)&rec.client_addr, client, sizeof client);
	snprintf(in, sizeof in, "%llu", (unsigned long long)rec.bytes_in);
	snprintf(out, sizeof out, "%llu", (unsigned long long)rec.bytes_out);
	const char *mapping = rec.mapping[0] ? rec.mapping : "-"; /* not routed yet */
	struct log_field f[] = {{"MAPPING", mapping},
	                        {"CLIENT", client},
	                        {"CONNECTION", rec.id},
	                        {"BYTES_IN", in},
	                        {"BYTES_OUT", out}};
	log_event(LOG_INFO, TCPMAP_MID_ADOPT, "handover", f, ELEMENTSOF(f),
	          "%s %s: handed to %s as c%s", mapping, client,
	          sink->direct ? "the new image" : "the fd store", rec.id);
	conn_forget_moved(c);
	return 0;
}

static int hand_over_worker(struct worker *w, const struct handoff_sink *sink) {
	char name[64];
	unsigned moved = 0;

	_cleanup_close_ int state = memfd_create("tcpmap-state", MFD_CLOEXEC);
	if (state < 0)
		return -errno;
	for (struct worker_link *l = w->conns, *next; l; l = next) {
		next = l->next;
		if (handoff_conn(sink, conn_of(l), state) >= 0)
			moved++;
	}
	if (moved == 0)
		return 0;
	snprintf(name, sizeof name, HANDOVER_STATE_PREFIX "%d.%u", (int)getpid(), w->index);
	int r = sink_put(sink, name, state);
	if (r < 0)
		/* the connections' fds are in the store already, and closed here: the next
		 * process finds no record for them and closes them */
		log_error_errno(r, "storing the hand-over record %s", name);
	log_info("worker %u: %u connection%s moved to %s, %llu draining", w->index, moved,
	         moved == 1 ? "" : "s", sink->direct ? "the new image" : "the fd store",
	         (unsigned long long)w->n_conns);
	return (int)moved;
}

int handoff_worker(struct worker *w) { return hand_over_worker(w, &(struct handoff_sink){0}); }

int handoff_worker_direct(struct worker *w, struct handoff_store *to, pthread_mutex_t *lock) {
	return hand_over_worker(w, &(struct handoff_sink){.direct = to, .lock = lock});
}

size_t handoff_store_size(const struct handoff_store *s) { return s->n; }

int handoff_store_get(const struct handoff_store *s, size_t i, const char **ret_name) {
	if (i >= s->n)
		return -ERANGE;
	*ret_name = s->fds[i].name;
	return s->fds[i].fd;
}

void handoff_store_clear(struct handoff_store *s) {
	for (size_t i = 0; i < s->n; i++) {
		safe_close(s->fds[i].fd);
		free(s->fds[i].name);
	}
	s->fds = mfree(s->fds);
	s->n = 0;
}

/* ---- taking them back ---- */

bool handoff_is_stored_name(const char *name) {
	char id[32];
	enum handover_fd_kind kind;
	return handover_is_state_name(name) ||
	       handover_parse_fd_name(name, id, sizeof id, &kind) == 0;
}

int handoff_store_add(struct handoff_store *s, int fd, const char *name) {
	struct handoff_stored *n = realloc(s->fds, (s->n + 1) * sizeof *s->fds);
	if (!n)
		return -ENOMEM;
	s->fds = n;
	s->fds[s->n].name = strdup(name);
	if (!s->fds[s->n].name)
		return -ENOMEM;
	s->fds[s->n].fd = fd;
	s->n++;
	return 0;
}

static int stored_take(struct handoff_store *s, const char *name) {
	for (size_t i = 0; i < s->n; i++)
		if (s->fds[i].fd >= 0 && streq(s->fds[i].name, name))
			return TAKE_FD(s->fds[i].fd);
	return -EBADF;
}

void handoff_adopt_all(struct handoff_store *s, struct conn_env *env,
                       struct worker *(*next_worker)(void *userdata), void *userdata) {
	unsigned adopted = 0, failed = 0;

	for (size_t i = 0; i < s->n; i++) {
		if (!handover_is_state_name(s->fds[i].name) || s->fds[i].fd < 0)
			continue;
		_cleanup_close_ int state = TAKE_FD(s->fds[i].fd);
		struct handover_record rec;
		off_t off = 0;
		ssize_t got;

		while ((got = pread(state, &rec, sizeof rec, off)) == (ssize_t)sizeof rec) {
			off += got;
			if (handover_record_validate(&rec) < 0) {
				log_warning("%s: malformed record, skipping it", s->fds[i].name);
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
			if (conn_adopt(env, next_worker(userdata), &rec, fds) >= 0)
				adopted++;
			else
				failed++;
		}
		if (got < 0)
			log_warning_errno(errno, "%s: reading the records", s->fds[i].name);
	}
	for (size_t i = 0; i < s->n; i++) {
		if (s->fds[i].fd >= 0) {
			log_warning("stored fd %s belongs to no connection record, closing it",
			            s->fds[i].name);
			s->fds[i].fd = safe_close(s->fds[i].fd);
		}
		int r = s->not_in_fdstore
		                ? 0
		                : sd_notifyf(0, "FDSTOREREMOVE=1\nFDNAME=%s", s->fds[i].name);
		if (r < 0)
			log_debug("removing %s from the fd store: %s", s->fds[i].name,
			          strerror(-r));
		free(s->fds[i].name);
	}
	s->fds = mfree(s->fds);
	s->n = 0;
	if (adopted + failed > 0)
		log_info("adopted %u connection%s from the previous process, %u could not be",
		         adopted, adopted == 1 ? "" : "s", failed);
}
