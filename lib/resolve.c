/* resolve.c — see resolve.h. A small process-wide pool of resolver threads and a small
 * positive cache. It never calls back on a thread other than the queue owner's, and never
 * lets one name hold more than one thread: a DNS server that answers one name slowly (or
 * never) costs that name one thread, and every other name goes on being looked up. */
#include "resolve.h"

#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/eventfd.h>

#include "netaddr.h"
#include "util.h"

/* Same order of magnitude as Envoy's default DNS refresh for STRICT_DNS clusters (5 s). */
#define RESOLVE_CACHE_MS 5000
#define RESOLVE_CACHE_SIZE 64
/* Threads are started on demand, when a lookup is queued and none is idle. Bounded: each
 * one waits out glibc's own timeouts (resolv.conf's timeout x attempts) on a silent server,
 * so this many silent names at once still make the next name wait. */
#define RESOLVER_THREADS_MAX 4

struct resolve_request {
	struct resolve_request *next;
	struct resolve_queue *queue;
	uint64_t token;
	bool cancelled;
	char host[256];
	uint16_t port;
	bool v4, v6;
	resolve_callback_t callback;
	void *userdata;
	struct resolve_result result;
};

struct resolve_queue {
	int efd;
	pthread_mutex_t lock;
	struct resolve_request *done; /* finished, waiting for dispatch */
};

struct cache_entry {
	char host[256];
	uint16_t port;
	bool v4, v6;
	uint64_t expires_ms;
	struct resolve_result result;
};

static pthread_mutex_t resolver_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t resolver_cond = PTHREAD_COND_INITIALIZER;
static struct resolve_request *resolver_head, *resolver_tail;
/* being looked up by thread i, until queued as done */
static struct resolve_request *resolver_inflight[RESOLVER_THREADS_MAX];
static unsigned resolver_threads, resolver_idle;
static unsigned resolver_queued; /* requests in the queue, taken or not by a woken thread */
static uint64_t resolver_next_token = 1;
static struct cache_entry cache[RESOLVE_CACHE_SIZE];

void resolve_filter(struct resolve_result *r, bool enable_ipv4, bool enable_ipv6) {
	struct resolve_result out = {.error = 0};

	/* two passes: IPv6 first, then IPv4 */
	for (int pass = 0; pass < 2; pass++) {
		int fam = pass == 0 ? AF_INET6 : AF_INET;
		if ((fam == AF_INET6 && !enable_ipv6) || (fam == AF_INET && !enable_ipv4))
			continue;
		for (size_t i = 0; i < r->n && out.n < RESOLVE_MAX_ADDRS; i++) {
			if (r->addrs[i].ss_family != fam)
				continue;
			bool dup = false;
			for (size_t j = 0; j < out.n; j++)
				if (out.lens[j] == r->lens[i] &&
				    memcmp(&out.addrs[j], &r->addrs[i], r->lens[i]) == 0)
					dup = true;
			if (dup)
				continue;
			out.addrs[out.n] = r->addrs[i];
			out.lens[out.n] = r->lens[i];
			out.n++;
		}
	}
	out.error = out.n > 0 ? 0 : (r->error ? r->error : -EHOSTUNREACH);
	*r = out;
}

int resolve_numeric(const char *host, uint16_t port, bool enable_ipv4, bool enable_ipv6,
                    struct resolve_result *ret) {
	struct resolve_result r = {.error = 0};
	union sockaddr_ip addr;

	if (netaddr_parse_literal(host, port, NULL, &addr, &r.lens[0]) < 0)
		return -EAGAIN;
	memcpy(&r.addrs[0], &addr, r.lens[0]);
	r.n = 1;
	resolve_filter(&r, enable_ipv4, enable_ipv6);
	*ret = r;
	return 0;
}

static void lookup(struct resolve_request *req) {
	/* no AI_ADDRCONFIG: loopback-only hosts (tests, sandboxes) have no global address, and
	 * it would then hide the ::1 and 127.0.0.1 entries of /etc/hosts */
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	char port[8];
	struct resolve_result *r = &req->result;

	hints.ai_family = req->v4 && req->v6 ? AF_UNSPEC : req->v6 ? AF_INET6 : AF_INET;
	snprintf(port, sizeof port, "%u", req->port);
	int e = getaddrinfo(req->host, port, &hints, &res);
	if (e != 0) {
		r->error = e == EAI_NONAME || e == EAI_NODATA ? -EHOSTUNREACH
		           : e == EAI_AGAIN                   ? -EAGAIN
		           : e == EAI_SYSTEM                  ? -errno
		                                              : -EIO;
		return;
	}
	for (struct addrinfo *ai = res; ai && r->n < RESOLVE_MAX_ADDRS; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof r->addrs[0])
			continue;
		memcpy(&r->addrs[r->n], ai->ai_addr, ai->ai_addrlen);
		r->lens[r->n] = ai->ai_addrlen;
		r->n++;
	}
	freeaddrinfo(res);
	resolve_filter(r, req->v4, req->v6);
}

static bool cache_lookup(const char *host, uint16_t port, bool v4, bool v6,
                         struct resolve_result *ret) {
	uint64_t now = now_ms();
	bool hit = false;

	pthread_mutex_lock(&resolver_lock);
	for (size_t i = 0; i < RESOLVE_CACHE_SIZE; i++) {
		struct cache_entry *c = &cache[i];
		if (c->expires_ms > now && c->port == port && c->v4 == v4 && c->v6 == v6 &&
		    streq(c->host, host)) {
			*ret = c->result;
			hit = true;
			break;
		}
	}
	pthread_mutex_unlock(&resolver_lock);
	return hit;
}

static void cache_store(const struct resolve_request *req) {
	size_t victim = 0;

	if (req->result.error)
		return; /* never cache failures: the upstream may come up any moment */
	for (size_t i = 0; i < RESOLVE_CACHE_SIZE; i++)
		if (cache[i].expires_ms < cache[victim].expires_ms)
			victim = i;
	struct cache_entry *c = &cache[victim];
	snprintf(c->host, sizeof c->host, "%s", req->host);
	c->port = req->port;
	c->v4 = req->v4;
	c->v6 = req->v6;
	c->result = req->result;
	c->expires_ms = now_ms() + RESOLVE_CACHE_MS;
}

static bool same_lookup(const struct resolve_request *a, const struct resolve_request *b) {
	return a->port == b->port && a->v4 == b->v4 && a->v6 == b->v6 && streq(a->host, b->host);
}

/* With resolver_lock held: the first queued request whose name no thread is looking up,
 * taken off the queue; NULL when there is none. A request for a name already in flight
 * waits in the queue, then finds the answer in the cache or asks again itself. */
static struct resolve_request *take_next(void) {
	struct resolve_request **pp = &resolver_head, *prev = NULL;

	for (; *pp; prev = *pp, pp = &(*pp)->next) {
		struct resolve_request *req = *pp;
		bool busy = false;
		for (unsigned i = 0; i < resolver_threads && !busy; i++)
			busy = resolver_inflight[i] && same_lookup(resolver_inflight[i], req);
		if (busy)
			continue;
		*pp = req->next;
		if (resolver_tail == req)
			resolver_tail = prev;
		req->next = NULL;
		resolver_queued--;
		return req;
	}
	return NULL;
}

static void *resolver_thread(void *arg) {
	unsigned slot = (unsigned)(uintptr_t)arg;

	for (;;) {
		struct resolve_request *req;

		pthread_mutex_lock(&resolver_lock);
		resolver_idle++;
		while (!(req = take_next()))
			pthread_cond_wait(&resolver_cond, &resolver_lock);
		resolver_idle--;
		resolver_inflight[slot] = req;
		pthread_mutex_unlock(&resolver_lock);

		bool cached = cache_lookup(req->host, req->port, req->v4, req->v6, &req->result);
		if (!cached)
			lookup(req);

		pthread_mutex_lock(&resolver_lock);
		if (!cached)
			cache_store(req);
		struct resolve_queue *q = req->queue;
		pthread_mutex_lock(&q->lock);
		req->next = q->done;
		q->done = req;
		pthread_mutex_unlock(&q->lock);
		resolver_inflight[slot] = NULL;
		/* a request for the same name may have waited for this one */
		pthread_cond_broadcast(&resolver_cond);
		pthread_mutex_unlock(&resolver_lock);
		uint64_t one = 1;
		ssize_t _unused_ w = write(q->efd, &one, sizeof one);
	}
	return NULL;
}

/* With resolver_lock held: true when a request of `q` is queued or being looked up. */
static bool queue_has_pending(const struct resolve_queue *q) {
	for (struct resolve_request *r = resolver_head; r; r = r->next)
		if (r->queue == q)
			return true;
	for (unsigned i = 0; i < resolver_threads; i++)
		if (resolver_inflight[i] && resolver_inflight[i]->queue == q)
			return true;
	return false;
}

int resolve_queue_new(struct resolve_queue **ret, int *ret_fd) {
	struct resolve_queue *q = calloc(1, sizeof *q);
	if (!q)
		return -ENOMEM;
	q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (q->efd < 0) {
		free(q);
		return -errno;
	}
	int r = pthread_mutex_init(&q->lock, NULL);
	if (r) {
		safe_close(q->efd);
		free(q);
		return -r;
	}
	*ret = q;
	*ret_fd = q->efd;
	return 0;
}

void resolve_queue_free(struct resolve_queue *q) {
	if (!q)
		return;
	/* Requests still with the resolver thread keep a pointer to q; the process is exiting
	 * when a queue is freed, so leaving q allocated would only hide a real leak. Wait for
	 * them instead, bounded by the resolver's own timeouts. */
	bool busy = true;
	for (int i = 0; i < 500 && busy; i++) {
		pthread_mutex_lock(&resolver_lock);
		busy = queue_has_pending(q);
		pthread_mutex_unlock(&resolver_lock);
		pthread_mutex_lock(&q->lock);
		busy = busy || q->done != NULL;
		pthread_mutex_unlock(&q->lock);
		if (!busy)
			break;
		resolve_queue_dispatch(q);
		(void)usleep(10000); /* cut short by a signal: only an earlier look */
	}
	if (busy)
		/* a lookup still hangs after 5 s and will write to q when it ends: keeping q is
		 * a small leak at exit; freeing it would be a use after free */
		return;
	safe_close(q->efd);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

void resolve_queue_dispatch(struct resolve_queue *q) {
	uint64_t v;
	ssize_t _unused_ n = read(q->efd, &v, sizeof v);

	pthread_mutex_lock(&q->lock);
	struct resolve_request *list = q->done;
	q->done = NULL;
	pthread_mutex_unlock(&q->lock);

	while (list) {
		struct resolve_request *req = list;
		list = req->next;
		if (!req->cancelled)
			req->callback(&req->result, req->userdata);
		free(req);
	}
}

/* With resolver_lock held, before a request is queued: start another thread unless an
 * idle one is left over for it once every request already queued has had one (an idle
 * thread counts as idle until it wakes and takes something), and the pool has room. Fails
 * only when no thread runs at all, since then nothing would ever take the request. */
static int ensure_thread(void) {
	pthread_t t;
	pthread_attr_t attr;
	int r;

	if (resolver_idle > resolver_queued || resolver_threads >= RESOLVER_THREADS_MAX)
		return 0;
	r = pthread_attr_init(&attr);
	if (r == 0) {
		/* fails only for a value other than the two detach states */
		(void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		r = pthread_create(&t, &attr, resolver_thread, (void *)(uintptr_t)resolver_threads);
		(void)pthread_attr_destroy(&attr); /* never fails for an initialised attr */
	}
	if (r == 0) {
		resolver_threads++;
		return 0;
	}
	/* the threads already running take it in their turn */
	return resolver_threads > 0 ? 0 : -r;
}

unsigned resolve_threads_running(void) {
	pthread_mutex_lock(&resolver_lock);
	unsigned n = resolver_threads;
	pthread_mutex_unlock(&resolver_lock);
	return n;
}

int resolve_start(struct resolve_queue *q, const char *host, uint16_t port, bool enable_ipv4,
                  bool enable_ipv6, resolve_callback_t callback, void *userdata,
                  uint64_t *ret_token) {
	struct resolve_result r;

	*ret_token = 0;
	if (resolve_numeric(host, port, enable_ipv4, enable_ipv6, &r) == 0 ||
	    cache_lookup(host, port, enable_ipv4, enable_ipv6, &r)) {
		callback(&r, userdata);
		return 0;
	}

	struct resolve_request *req = calloc(1, sizeof *req);
	if (!req)
		return -ENOMEM;
	if (strlen(host) >= sizeof req->host) {
		free(req);
		return -ENAMETOOLONG;
	}
	strcpy(req->host, host);
	req->port = port;
	req->v4 = enable_ipv4;
	req->v6 = enable_ipv6;
	req->callback = callback;
	req->userdata = userdata;
	req->queue = q;

	pthread_mutex_lock(&resolver_lock);
	int e = ensure_thread();
	if (e < 0) {
		pthread_mutex_unlock(&resolver_lock);
		free(req);
		return e;
	}
	req->token = resolver_next_token++;
	*ret_token = req->token;
	if (resolver_tail)
		resolver_tail->next = req;
	else
		resolver_head = req;
	resolver_tail = req;
	resolver_queued++;
	/* every idle thread looks: the first in line may skip it for a name in flight */
	pthread_cond_broadcast(&resolver_cond);
	pthread_mutex_unlock(&resolver_lock);
	return 0;
}

void resolve_cancel(struct resolve_queue *q, uint64_t token) {
	if (token == 0)
		return;
	/* The request is either queued, being looked up, or done: mark it wherever it is. */
	pthread_mutex_lock(&resolver_lock);
	for (struct resolve_request *r = resolver_head; r; r = r->next)
		if (r->token == token)
			r->cancelled = true;
	for (unsigned i = 0; i < resolver_threads; i++)
		if (resolver_inflight[i] && resolver_inflight[i]->token == token)
			resolver_inflight[i]->cancelled = true;
	pthread_mutex_unlock(&resolver_lock);
	pthread_mutex_lock(&q->lock);
	for (struct resolve_request *r = q->done; r; r = r->next)
		if (r->token == token)
			r->cancelled = true;
	pthread_mutex_unlock(&q->lock);
}
