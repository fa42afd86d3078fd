/* ticketkeys.h — the TLS session-ticket keys every tcpmap process on the host shares, so a
 * ticket one tcpmapd issued resumes in any other: a restarted service, another forked relay,
 * another tcpmap-inetd@ instance. One small file ($RUNTIME_DIRECTORY/tls-ticket-keys, on
 * tmpfs) mapped MAP_SHARED by each of them.
 *
 * The schedule (tcpmapd(8), "Session tickets"): a new key every TICKETKEYS_ROTATE_SEC; tickets
 * are issued with the newest key only; a key is accepted until TICKETKEYS_LIFE_SEC after it
 * was made, and a ticket under an older or unknown key gets a full handshake. Rotation is
 * done by whichever process first needs the newest key once it is due, under the table's
 * robust mutex. Removing the file forces a rotation: every process makes or maps a new one
 * within TICKETKEYS_FOLLOW_SEC of its next handshake.
 *
 * Knows nothing of OpenSSL (lib/tlsticket.c turns these keys into ticket encryption). Key
 * bytes never leave the mapping except into a caller's buffer, are never logged, and the
 * mapping is kept out of core files and (as far as RLIMIT_MEMLOCK allows) out of swap.
 * Thread-safe. A forked child keeps using the mapping it inherited, but never follows a
 * removed file (a relay process closes the directory fd; it lives for one connection). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define TICKETKEYS_FILE_NAME "tls-ticket-keys"
#define TICKETKEYS_ROTATE_SEC (60 * 60)    /* a new key every hour */
#define TICKETKEYS_LIFE_SEC (12 * 60 * 60) /* each accepted for 12 h after it was made */
#define TICKETKEYS_FOLLOW_SEC 10           /* how soon a removed file is noticed */
#define TICKETKEYS_NAME_SIZE 16            /* what OpenSSL carries in the ticket */
#define TICKETKEYS_AES_SIZE 32             /* AES-256-CBC */
#define TICKETKEYS_HMAC_SIZE 32            /* HMAC-SHA256 */
/* Test only: seconds added to this process's clock for the key schedule (never for
 * anything else), so a test can age a ticket past the window. tcpmapd(8), ENVIRONMENT. */
#define TICKETKEYS_CLOCK_OFFSET_ENV "TCPMAP_TEST_TICKET_CLOCK_OFFSET"

struct ticket_keys;

/* One key as a caller uses it: a copy, to be wiped (explicit_bzero) once used. */
struct ticket_key {
	uint8_t name[TICKETKEYS_NAME_SIZE];
	uint8_t aes_key[TICKETKEYS_AES_SIZE];
	uint8_t hmac_key[TICKETKEYS_HMAC_SIZE];
	int64_t created; /* seconds on the schedule's clock; 0 in an empty slot */
};

/* Open (creating if missing, mode 0600) the table in the runtime directory `dir_fd` (from
 * rundir_open, which checked who can change it; the table keeps its own copy of the fd).
 * A new table holds no key: the first ticket makes one. Returns 0, -EPERM when the file is
 * not ours alone (another owner, group or others may read or write it, a hard link),
 * -EPROTO when it is no table of this version, or another -errno. */
int ticketkeys_open(int dir_fd, struct ticket_keys **ret);
struct ticket_keys *ticketkeys_close(struct ticket_keys *t); /* returns NULL */

/* Now on the schedule's clock: CLOCK_REALTIME seconds plus the test offset, if any. */
int64_t ticketkeys_now(const struct ticket_keys *t);

/* The key to issue a ticket with at `now`: the newest, after making a new one when none is
 * younger than TICKETKEYS_ROTATE_SEC (or the clock went back more than that). Returns 0
 * with *ret filled, or -errno (no ticket is issued then). */
int ticketkeys_issue(struct ticket_keys *t, int64_t now, struct ticket_key *ret);
/* The key named `name`, when it is still accepted at `now` (made less than
 * TICKETKEYS_LIFE_SEC ago). Returns 1 when it is the newest key, 2 when an older one (the
 * ticket should be renewed), -ENOENT when unknown or too old (a full handshake), or -errno. */
int ticketkeys_find(struct ticket_keys *t, const uint8_t name[TICKETKEYS_NAME_SIZE], int64_t now,
                    struct ticket_key *ret);

/* How many keys the table holds and how many rotations it has seen (tests, reports; no
 * key bytes). */
int ticketkeys_stats(struct ticket_keys *t, unsigned *ret_keys, uint64_t *ret_rotations);
