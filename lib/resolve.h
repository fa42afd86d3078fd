/* resolve.h — upstream name resolution off the event loop, with a short cache.
 *
 * Numeric addresses resolve at once. Names go to a small pool of resolver threads
 * (getaddrinfo may block for seconds on a slow DNS server; a worker's event loop must never
 * wait on it, nor should a prompt name wait behind a slow one) and the answer comes back
 * through the caller's callback on the caller's own thread, signalled through an eventfd
 * that the caller polls. One name is looked up by at most one thread at a time. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define RESOLVE_MAX_ADDRS 8

struct resolve_result {
	int error; /* 0 or -errno (-EHOSTUNREACH when no address of an allowed family) */
	size_t n;
	struct sockaddr_storage addrs[RESOLVE_MAX_ADDRS]; /* IPv6 first when both allowed */
	socklen_t lens[RESOLVE_MAX_ADDRS];
};

/* Order and filter `in` by family: IPv6 before IPv4 when both are enabled (Ambassador's
 * documented preference). Pure; exposed for tests. */
void resolve_filter(struct resolve_result *r, bool enable_ipv4, bool enable_ipv6);

/* Resolve a numeric host at once. Returns 0 and fills *ret, or -EAGAIN when `host` is a
 * name that needs the resolver thread. */
int resolve_numeric(const char *host, uint16_t port, bool enable_ipv4, bool enable_ipv6,
                    struct resolve_result *ret);

/* One queue per event loop: answers are delivered on that loop's thread. */
struct resolve_queue;
typedef void (*resolve_callback_t)(const struct resolve_result *r, void *userdata);

/* Create a queue; *ret_fd is an eventfd to watch for EPOLLIN and then call
 * resolve_queue_dispatch(). */
int resolve_queue_new(struct resolve_queue **ret, int *ret_fd);
void resolve_queue_free(struct resolve_queue *q);
/* Run the callbacks of finished lookups. */
void resolve_queue_dispatch(struct resolve_queue *q);

/* Start a lookup; `callback` runs later from resolve_queue_dispatch(), or immediately
 * (before this returns) on a cache hit or numeric host. Returns 0, or -errno when it
 * could not be queued. A pending lookup is cancelled with resolve_cancel(token). */
int resolve_start(struct resolve_queue *q, const char *host, uint16_t port, bool enable_ipv4,
                  bool enable_ipv6, resolve_callback_t callback, void *userdata,
                  uint64_t *ret_token);
void resolve_cancel(struct resolve_queue *q, uint64_t token);
/* Resolver threads started so far (for tests: the pool is bounded). */
unsigned resolve_threads_running(void);
