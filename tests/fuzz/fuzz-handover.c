/* fuzz-handover.c — hand-over records and FDNAMEs come from systemd's store, written by
 * another binary: parse anything without crashing, round-trip what parses, and adopt what
 * validates through conn_adopt() with real fds that may disagree with the record (wrong
 * types, missing or swapped ends, pipes holding other byte counts), as a tampered store
 * would give them. An fd conn_adopt() refuses must be closed, never pooled: the harness
 * checks every pipe's write end is gone or still owned by an adopted connection. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "breaker.h"
#include "config.h"
#include "conn.h"
#include "handover.h"
#include "log.h"
#include "rundir.h"
#include "worker.h"

static struct conn_env env;
static struct worker worker;
static sd_event *event;

/* One process-wide conn_env with a config holding mapping "m", as tcpmapd's would be. */
static int adopt_setup(void) {
	static int done;
	char dir[] = "/tmp/fuzz-handover.XXXXXX";
	const char yaml[] = "apiVersion: getambassador.io/v2\nkind: TCPMapping\n"
	                    "metadata:\n  name: m\nspec:\n  port: 9\n  service: 127.0.0.1:9\n";
	struct diag_list diags = {0};
	int dir_fd = -EBADF;

	if (done)
		return done > 0 ? 0 : -1;
	done = -1;
	log_set_max_level(LOG_CRIT);
	if (!mkdtemp(dir) || rundir_open(dir, false, &dir_fd) < 0 ||
	    breaker_table_open(dir_fd, &env.breakers) < 0)
		return -1;
	close(dir_fd);
	pthread_mutex_init(&env.config_lock, NULL);
	if (config_load_buffer("f.yaml", yaml, sizeof yaml - 1, NULL, &env.config, &diags) < 0 ||
	    breaker_table_entry(env.breakers, env.config->mappings[0]->cluster,
	                        &env.config->mappings[0]->breaker_entry) < 0 ||
	    sd_event_new(&event) < 0 || worker_init(&worker, 0) < 0 ||
	    worker_attach(&worker, event) < 0)
		return -1;
	diag_list_free(&diags);
	done = 1;
	return 0;
}

/* Build the fds a record arrives with from 8 control bytes, adopt, and clean up. */
static void fuzz_adopt(struct handover_record *r, const uint8_t *ctl) {
	int a[2], b[2], up[2], down[2], fds[_HANDOVER_FD_MAX], spy[2];

	if (adopt_setup() < 0)
		return;
	if (ctl[0] & 1)
		snprintf(r->mapping, sizeof r->mapping, "m");
	if (handover_record_validate(r) < 0)
		return;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, a) < 0)
		return;
	if (socketpair(AF_UNIX,
	               ctl[0] & 2 ? SOCK_DGRAM : SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	               b) < 0 ||
	    pipe2(up, O_NONBLOCK | O_CLOEXEC) < 0 || pipe2(down, O_NONBLOCK | O_CLOEXEC) < 0)
		abort(); /* out of fds: a leak in conn_adopt */
	/* pipe contents: what the record says, or something else */
	char bytes[256] = {0};
	size_t n_up = ctl[1] & 0x80 ? ctl[1] & 0x7f : (size_t)MIN(r->in_pipe_up, 255u);
	size_t n_down = ctl[2] & 0x80 ? ctl[2] & 0x7f : (size_t)MIN(r->in_pipe_down, 255u);
	if ((n_up && write(up[1], bytes, n_up) < 0) ||
	    (n_down && write(down[1], bytes, n_down) < 0))
		abort();
	/* watch the pipes' read sides through dups: after a refusal each must reach EOF */
	spy[0] = fcntl(up[0], F_DUPFD_CLOEXEC, 0);
	spy[1] = fcntl(down[0], F_DUPFD_CLOEXEC, 0);
	if (spy[0] < 0 || spy[1] < 0)
		abort();
	fds[HANDOVER_FD_CLIENT] = a[1];
	fds[HANDOVER_FD_UPSTREAM] = b[1];
	fds[HANDOVER_FD_UP_READ] = up[0];
	fds[HANDOVER_FD_UP_WRITE] = up[1];
	fds[HANDOVER_FD_DOWN_READ] = down[0];
	fds[HANDOVER_FD_DOWN_WRITE] = down[1];
	/* ctl[3]: drop fds; ctl[4]: replace with /dev/null; ctl[5]: swap pairs */
	for (int k = 0; k < _HANDOVER_FD_MAX; k++) {
		if (ctl[3] & (1 << k))
			fds[k] = safe_close(fds[k]);
		else if (ctl[4] & (1 << k)) {
			safe_close(fds[k]);
			fds[k] = open("/dev/null", O_RDWR | O_CLOEXEC);
		}
	}
	if (ctl[5] & 1) {
		int t = fds[HANDOVER_FD_UP_READ];
		fds[HANDOVER_FD_UP_READ] = fds[HANDOVER_FD_UP_WRITE];
		fds[HANDOVER_FD_UP_WRITE] = t;
	}
	if (ctl[5] & 2) {
		int t = fds[HANDOVER_FD_UP_READ];
		fds[HANDOVER_FD_UP_READ] = fds[HANDOVER_FD_DOWN_READ];
		fds[HANDOVER_FD_DOWN_READ] = t;
	}
	if (ctl[5] & 4) {
		int t = fds[HANDOVER_FD_CLIENT];
		fds[HANDOVER_FD_CLIENT] = fds[HANDOVER_FD_UP_READ];
		fds[HANDOVER_FD_UP_READ] = t;
	}
	bool consistent = conn_adopt_check(r, fds) == NULL;
	int k = conn_adopt(&env, &worker, r, fds);
	for (int i = 0; i < _HANDOVER_FD_MAX; i++)
		if (fds[i] >= 0)
			__builtin_trap(); /* conn_adopt takes every fd */
	if (!consistent && k >= 0)
		__builtin_trap(); /* an inconsistent record was adopted */
	if (k < 0)
		for (int i = 0; i < 2; i++) {
			char buf[512];
			ssize_t got;
			while ((got = read(spy[i], buf, sizeof buf)) > 0)
				;
			if (got < 0)
				__builtin_trap(); /* EAGAIN: a write end lives on (pooled) */
		}
	conn_close_all(&worker, CONN_RESULT_OK);
	(void)sd_event_run(event, 0);
	safe_close(spy[0]);
	safe_close(spy[1]);
	safe_close(a[0]);
	safe_close(b[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
	struct handover_record r;
	char name[300], id[32], again[64];
	enum handover_fd_kind kind;

	if (size >= sizeof r) {
		memcpy(&r, data, sizeof r);
		(void)handover_record_validate(&r);
		if (size >= sizeof r + 8) {
			/* reach conn_adopt often: a valid header unless the input insists */
			if (!(data[sizeof r + 6] & 1)) {
				r.magic = HANDOVER_MAGIC;
				r.version = HANDOVER_VERSION;
				snprintf(r.id, sizeof r.id, "1-%u", data[sizeof r + 7]);
				r.sni[sizeof r.sni - 1] = '\0';
				r.mapping[sizeof r.mapping - 1] = '\0';
				r.in_pipe_up = r.in_pipe_up % 256;
				r.in_pipe_down = r.in_pipe_down % 256;
				r.client_addr_len %= sizeof r.client_addr + 1;
				r.local_addr_len %= sizeof r.local_addr + 1;
				r.upstream_addr_len %= sizeof r.upstream_addr + 1;
				r.flags &= 0xf;
			}
			fuzz_adopt(&r, data + sizeof r);
		}
	}
	size_t n = size < sizeof name - 1 ? size : sizeof name - 1;
	memcpy(name, data, n);
	name[n] = '\0';
	if (handover_parse_fd_name(name, id, sizeof id, &kind) == 0) {
		if (handover_fd_name(id, kind, again, sizeof again) != 0 ||
		    strcmp(again, name) != 0)
			__builtin_trap();
	}
	(void)handover_is_state_name(name);
	return 0;
}
