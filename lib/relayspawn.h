/* relayspawn.h — the relay spawner of per_connection_process: a small single-threaded
 * process (the "zygote") that forks the relay processes, so that no connection costs a fork
 * of the big multi-threaded dispatcher (its address space, its page tables, and the locks
 * its other threads may hold at that instant).
 *
 * tcpmapd starts it by fork+exec of its own running image (/proc/self/exe: the same build,
 * so the same struct relay_order), holds one end of an AF_UNIX SOCK_SEQPACKET socketpair to
 * it, and sends each admitted connection as one message: a struct relay_order and, by
 * SCM_RIGHTS, the client and upstream sockets. The spawner keeps a few children forked and
 * waiting on that socket; the kernel gives each message to exactly one of them, which then
 * becomes that connection's relay (it closes the socket to the dispatcher, so it holds no
 * other connection's fds) and asks the spawner for a replacement. The spawner itself never
 * receives a connection; it forks, reaps, logs a relay that died, and reclaims its slot.
 *
 * It knows nothing of connections: conn.c fills the order, and relayproc.c runs it in the
 * relay. It must never block the sender (a full socket is an error, and the caller forks
 * directly). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "breaker.h"

#define RELAY_ORDER_MAGIC 0x7463727au /* "tcrz" */

/* What a relay needs of its connection, the dispatcher's config being out of its reach. */
struct relay_order {
	uint32_t magic;
	uint32_t mask; /* the directions that may have bytes waiting (conn.c's PUMP_*) */
	breaker_slot_t slot;
	uint32_t breaker_entry;
	uint32_t idle_timeout_ms;  /* 0 = none */
	uint32_t drain_timeout_ms; /* on SIGTERM; 0 = end at once */
	uint32_t client_addr_len, upstream_addr_len;
	uint64_t start_usec; /* CLOCK_MONOTONIC, the same clock in every process */
	struct sockaddr_storage client_addr, upstream_addr;
	char mapping[256];
	char service[512];
	char sni[256];
};

/* The dispatcher's side. */
struct relayspawn;

/* A spawner handle, not started yet; `runtime_dir` is where the breaker table lives. */
int relayspawn_new(const char *runtime_dir, struct relayspawn **ret);
/* Stop the spawner (SIGTERM: the relays it started go on) and free the handle. NULL-safe. */
void relayspawn_free(struct relayspawn *s);
/* Start the spawner if none runs, at most once a second. Main thread only. Returns 1 when
 * started, 0 when one runs or it is too soon, or -errno (logged). */
int relayspawn_start(struct relayspawn *s);
/* A child `pid` ended (SIGCHLD, main thread): if it was the spawner, log it, drop the
 * channel (connections fork directly until the next start) and return true. */
bool relayspawn_exited(struct relayspawn *s, pid_t pid, const char *how);
/* Send one connection (any thread). Its slot is given to the spawner first, so it is
 * reclaimed, not leaked, should the spawner die with the message undelivered. Returns 0
 * (the fds are the relay's now, the caller closes its copies), or -errno with the slot the
 * caller's again: -ENOTCONN (no spawner), -EAGAIN (the spawner is behind), -EPIPE. */
int relayspawn_send(struct relayspawn *s, struct breaker_table *t, const struct relay_order *o,
                    int client_fd, int upstream_fd);

/* The spawner's side: `tcpmap-spawner --relay-spawner LOG_TARGET RUNTIME_DIR ABI` (or
 * `tcpmapd --relay-spawner ...` where the helper is missing), with the channel as fd 3.
 * The helper (bin/tcpmap-spawner.c) is a static executable of libc and the few objects a
 * relay needs: each fork of it copies a few pages, where a fork of tcpmapd's image copied
 * those of libsystemd, libyaml and their libraries (issue 20). `relay` runs a received
 * connection in a waiting child and must not return. A spawner of another build (`abi`
 * differs from relayspawn_abi()'s) refuses to start: its struct relay_order may not be
 * ours, and tcpmapd then runs its own image. */
#define RELAYSPAWN_ARG "--relay-spawner"
#define RELAYSPAWN_HELPER "tcpmap-spawner"
/* The spawner's command name (`ps`, and the tests find it so), also the helper's own. */
#define RELAYSPAWN_COMM "tcpmap-spawner"
typedef void (*relayspawn_relay_fn)(struct breaker_table *t, const struct relay_order *o,
                                    int client_fd, int upstream_fd);
/* This build's version and struct relay_order layout, as text. */
void relayspawn_abi(char *buf, size_t size);
int relayspawn_main(const char *runtime_dir, const char *abi, relayspawn_relay_fn relay);
