/* apply.c — see apply.h. */
#include "apply.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "unitgen.h"
#include "util.h"

extern char **environ;

/* Run systemctl with `args` (NULL-terminated, without argv[0]). Returns 0, -errno when it
 * could not run, or -(exit status) when it failed. */
static int systemctl(FILE *out, const char *const *args) {
	const char *argv[16] = {"systemctl"};
	size_t n = 1;
	pid_t pid;
	int status;

	for (; args[n - 1] && n + 1 < ELEMENTSOF(argv); n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	int r = posix_spawnp(&pid, "systemctl", NULL, NULL, (char *const *)argv, environ);
	if (r != 0) {
		fprintf(out, "tcpmapctl apply: cannot run systemctl: %s\n", strerror(r));
		return -r;
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	fprintf(out, "tcpmapctl apply: failed:");
	for (size_t i = 0; argv[i]; i++)
		fprintf(out, " %s", argv[i]);
	fprintf(out, "\n");
	return WIFEXITED(status) ? -WEXITSTATUS(status) : -ECHILD;
}

/* The socket units the generator linked into tcpmap.target.wants/, sorted. */
static int list_generated(const char *dir, char ***ret, size_t *n_ret) {
	char path[PATH_MAX];
	_cleanup_(strv_freep) char **v = NULL;
	size_t n = 0;

	snprintf(path, sizeof path, "%s/%s.wants", dir, UNITGEN_TARGET);
	DIR *d = opendir(path);
	if (!d) {
		if (errno != ENOENT)
			return -errno;
	} else {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			char *s = strdup(e->d_name);
			if (!s || strv_push(&v, &n, s) < 0) {
				closedir(d);
				return -ENOMEM;
			}
		}
		closedir(d);
	}
	*ret = TAKE_PTR(v);
	*n_ret = n;
	return 0;
}

/* The sockets of both process models (tcpmap@, tcpmap-inetd@) listening now, as systemd
 * names them. */
static int list_active(FILE *out, char ***ret, size_t *n_ret) {
	_cleanup_(strv_freep) char **v = NULL;
	size_t n = 0;
	char line[1024];

	FILE *p = popen("systemctl list-units --plain --no-legend --state=active "
	                "'" UNITGEN_THREADED_PREFIX "*.socket' "
	                "'" UNITGEN_PER_CONNECTION_PREFIX "*.socket'",
	                "re");
	if (!p)
		return -errno;
	while (fgets(line, sizeof line, p)) {
		char *name = strtok(line, " \t\n");
		if (!name)
			continue;
		char *s = strdup(name);
		if (!s || strv_push(&v, &n, s) < 0) {
			pclose(p);
			return -ENOMEM;
		}
	}
	int status = pclose(p);
	if (status != 0) {
		fprintf(out, "tcpmapctl apply: failed: systemctl list-units\n");
		return -EIO;
	}
	*ret = TAKE_PTR(v);
	*n_ret = n;
	return 0;
}

static bool strv_has(char **v, size_t n, const char *s) {
	for (size_t i = 0; i < n; i++)
		if (streq(v[i], s))
			return true;
	return false;
}

/* "tcpmap@X.socket" -> "tcpmap@X.service" */
static void service_of(const char *socket, char *buf, size_t size) {
	size_t len = strlen(socket);
	const char *suffix = ".socket";
	size_t sl = strlen(suffix);
	if (len > sl && streq(socket + len - sl, suffix))
		snprintf(buf, size, "%.*s.service", (int)(len - sl), socket);
	else
		snprintf(buf, size, "%s", socket);
}

/* The port of a generated socket's name: the digits after the instance's last ':', or the
 * whole instance ("tcpmap@2222.socket", "tcpmap-inetd@\x5b::1\x5d:2222.socket"); 0 when the
 * name is not one of those. systemd-escape leaves ':' and digits as they are. */
static unsigned port_of(const char *socket) {
	const char *at = strchr(socket, '@'), *colon = strrchr(socket, ':');
	const char *digits = colon && colon > at ? colon + 1 : at ? at + 1 : NULL;
	char *end;

	if (!digits || !isdigit((unsigned char)*digits))
		return 0;
	unsigned long port = strtoul(digits, &end, 10);
	return streq(end, ".socket") && port <= 65535 ? (unsigned)port : 0;
}

/* Does a socket that is not listening yet want `socket`'s port? Moving a listener from one
 * process model to the other (tcpmap@P to tcpmap-inetd@P) or from one address to every
 * address renames its socket unit, and the new socket cannot bind while the old one holds
 * the port. */
static bool port_wanted_by_new(const char *socket, char **after, size_t n_after, char **before,
                               size_t n_before) {
	unsigned port = port_of(socket);
	for (size_t i = 0; port && i < n_after; i++)
		if (port_of(after[i]) == port && !strv_has(before, n_before, after[i]))
			return true;
	return false;
}

/* Close a socket the config no longer has. A tcpmap@ socket's service goes with it; a
 * tcpmap-inetd@ socket has none of its own, and the units of the connections it accepted
 * go on until their connections end, as they would on any stop of the socket. */
static int close_socket(FILE *out, const char *socket) {
	char service[UNITGEN_NAME_MAX + 8];
	int r;

	if (strncmp(socket, UNITGEN_PER_CONNECTION_PREFIX, strlen(UNITGEN_PER_CONNECTION_PREFIX)) ==
	    0)
		r = systemctl(out, (const char *[]){"stop", socket, NULL});
	else {
		service_of(socket, service, sizeof service);
		r = systemctl(out, (const char *[]){"stop", socket, service, NULL});
	}
	if (r >= 0)
		fprintf(out, "closed: %s\n", socket);
	return r;
}

int apply_config(const struct apply_options *o, FILE *out) {
	const char *dir = o->generator_dir ? o->generator_dir : APPLY_GENERATOR_DIR;
	_cleanup_(strv_freep) char **before = NULL, **after = NULL;
	_cleanup_free_ bool *closed = NULL;
	size_t n_before = 0, n_after = 0, started = 0, stopped = 0;
	int r, failed = 0;

	/* first: the generator writes units only for an enabled target (tcpmap-generator(8)) */
	if (o->enable) {
		r = systemctl(out, (const char *[]){"enable", "--quiet", UNITGEN_TARGET, NULL});
		if (r < 0)
			return r;
	}
	r = systemctl(out, (const char *[]){"daemon-reload", NULL});
	if (r < 0)
		return r;
	r = list_generated(dir, &after, &n_after);
	if (r < 0)
		return r;
	/* What listens now, not what the generator wrote last: a broken config in between
	 * generated nothing, and its sockets went on listening. */
	r = list_active(out, &before, &n_before);
	if (r < 0)
		return r;
	closed = calloc(n_before + 1, sizeof *closed);
	if (!closed)
		return -ENOMEM;
	/* The config alone decides what listens: a socket it no longer has is closed. Those
	 * whose port a new socket needs close before the target starts it; the rest after, so
	 * that nothing the target still pulls in (a socket enabled by hand) opens again. */
	for (size_t i = 0; i < n_before; i++) {
		if (strv_has(after, n_after, before[i]) ||
		    !port_wanted_by_new(before[i], after, n_after, before, n_before))
			continue;
		r = close_socket(out, before[i]);
		if (r < 0)
			failed = r;
		closed[i] = true;
		stopped++;
	}
	/* Starting the target starts every socket it wants that is not listening yet; those that
	 * are listening are left alone, with their connections. */
	r = systemctl(out, (const char *[]){"start", UNITGEN_TARGET, NULL});
	if (r < 0)
		failed = r;
	for (size_t i = 0; i < n_after; i++)
		if (!strv_has(before, n_before, after[i])) {
			fprintf(out, "listening: %s\n", after[i]);
			started++;
		}
	for (size_t i = 0; i < n_before; i++) {
		if (closed[i] || strv_has(after, n_after, before[i]))
			continue;
		r = close_socket(out, before[i]);
		if (r < 0)
			failed = r;
		stopped++;
	}
	/* Every running instance reads the whole config: reload them all. A reload keeps every
	 * connection, and try-reload-or-restart leaves services that are not running alone. The
	 * tcpmap-inetd@ units read the config anew for each connection. */
	r = systemctl(out, (const char *[]){"try-reload-or-restart", "tcpmap@*.service", NULL});
	if (r < 0)
		failed = r;
	fprintf(out, "%zu listeners in the config, %zu opened, %zu closed%s\n", n_after, started,
	        stopped, failed ? "; some steps failed (see above)" : "");
	return failed;
}

/* ---- reload ---------------------------------------------------------------------------- */

/* Run `argv` (argv[0] found in $PATH) and keep what it prints on stdout (stderr is
 * inherited), up to size - 1 bytes. 0 when it exited 0, else -EIO or -errno. */
static int capture(const char *const *argv, char *buf, size_t size) {
	posix_spawn_file_actions_t fa;
	int pipefd[2], status;
	size_t got = 0;
	pid_t pid;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
	int r = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	safe_close(pipefd[1]);
	if (r != 0) {
		safe_close(pipefd[0]);
		return -r;
	}
	for (;;) {
		char sink[4096];
		bool full = got + 1 >= size;
		ssize_t n = read(pipefd[0], full ? sink : buf + got,
		                 full ? sizeof sink : size - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (!full)
			got += (size_t)n;
	}
	buf[got] = '\0';
	safe_close(pipefd[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

struct service_state {
	unsigned long long main_pid;
	unsigned long long generation; /* 0: STATUS= names none yet */
};

static int service_state(const char *unit, struct service_state *ret) {
	char out[2048];
	int r = capture((const char *[]){"systemctl", "show", "-p", "MainPID", "-p", "StatusText",
	                                 "--", unit, NULL},
	                out, sizeof out);
	if (r < 0)
		return r;
	*ret = (struct service_state){0};
	const char *p = strstr(out, "MainPID=");
	if (p)
		ret->main_pid = strtoull(p + 8, NULL, 10);
	/* lib/server.c's STATUS=: "... config generation N[; ...]" */
	p = strstr(out, "config generation ");
	if (p)
		ret->generation = strtoull(p + 18, NULL, 10);
	return 0;
}

/* The cursor of the unit's newest journal entry ("" when none). A cursor of an entry the
 * later query matches too: journalctl 252 skips the first match after a cursor of an
 * entry the match does not cover. */
static void journal_cursor(const char *unit, char *ret, size_t size) {
	char out[4096];
	ret[0] = '\0';
	if (capture((const char *[]){"journalctl", "--no-pager", "-q", "-n", "1", "--show-cursor",
	                             "-o", "cat", "-u", unit, NULL},
	            out, sizeof out) < 0)
		return;
	const char *p = strstr(out, "-- cursor: ");
	if (p)
		snprintf(ret, size, "%.*s", (int)strcspn(p + 11, "\n"), p + 11);
}

/* Did the unit log a rejected config after `cursor`? */
static bool journal_rejected(const char *unit, const char *cursor) {
	static char out[1 << 20];
	char after[600];
	if (!cursor[0])
		return false;
	snprintf(after, sizeof after, "--after-cursor=%s", cursor);
	if (capture((const char *[]){"journalctl", "--no-pager", "-q", "-o", "json", after, "-u",
	                             unit, NULL},
	            out, sizeof out) < 0)
		return false;
	return strstr(out, "\"MESSAGE_ID\":\"" TCPMAP_MID_CONFIG_REJECTED "\"") != NULL;
}

/* The running tcpmap@ services (not the per-connection tcpmap-inetd@ ones, whose every
 * process reads the config anew). */
static int list_running(FILE *out, char ***ret, size_t *n_ret) {
	_cleanup_(strv_freep) char **v = NULL;
	size_t n = 0;
	char line[1024];

	FILE *p = popen("systemctl list-units --plain --no-legend --type=service --state=running "
	                "'tcpmap@*.service'",
	                "re");
	if (!p)
		return -errno;
	while (fgets(line, sizeof line, p)) {
		char *name = strtok(line, " \t\n");
		char *s = name ? strdup(name) : NULL;
		if (!name)
			continue;
		if (!s || strv_push(&v, &n, s) < 0) {
			free(s);
			pclose(p);
			return -ENOMEM;
		}
	}
	if (pclose(p) != 0) {
		fprintf(out, "tcpmapctl reload: failed: systemctl list-units\n");
		return -EIO;
	}
	*ret = TAKE_PTR(v);
	*n_ret = n;
	return 0;
}

#define RELOAD_WAIT_USEC (10 * 1000000ULL)
#define RELOAD_POLL_USEC (100 * 1000ULL)

static int reload_one(const char *unit, FILE *out) {
	struct service_state before, now;
	char cursor[512];
	int r;

	r = service_state(unit, &before);
	if (r < 0 || before.main_pid == 0) {
		fprintf(out, "not running: %s\n", unit);
		return -ESRCH;
	}
	journal_cursor(unit, cursor, sizeof cursor);
	r = systemctl(out, (const char *[]){"reload", "--", unit, NULL});
	if (r < 0)
		return r;
	for (uint64_t waited = 0; waited < RELOAD_WAIT_USEC; waited += RELOAD_POLL_USEC) {
		if (service_state(unit, &now) >= 0 && now.generation > 0 &&
		    (now.generation > before.generation || now.main_pid != before.main_pid)) {
			fprintf(out, "reloaded: %s: config generation %llu\n", unit,
			        now.generation);
			return 0;
		}
		if (journal_rejected(unit, cursor)) {
			fprintf(out,
			        "rejected: %s keeps config generation %llu (journalctl -u %s "
			        "MESSAGE_ID=%s says why)\n",
			        unit, before.generation, unit, TCPMAP_MID_CONFIG_REJECTED);
			return -EINVAL;
		}
		(void)usleep(RELOAD_POLL_USEC);
	}
	fprintf(out, "no answer: %s did not report a new config generation within %llu s\n", unit,
	        RELOAD_WAIT_USEC / 1000000);
	return -EINVAL;
}

int apply_reload(const char *const *units, size_t n_units, FILE *out) {
	_cleanup_(strv_freep) char **running = NULL;
	size_t n_running = 0;
	int r, failed = 0;

	if (n_units == 0) {
		r = list_running(out, &running, &n_running);
		if (r < 0)
			return r;
		if (n_running == 0) {
			fprintf(out, "no tcpmap@ service is running: nothing to reload\n");
			return 0;
		}
		units = (const char *const *)running;
		n_units = n_running;
	}
	for (size_t i = 0; i < n_units; i++) {
		r = reload_one(units[i], out);
		if (r < 0 && !failed)
			failed = r == -ESRCH ? -EINVAL : r;
	}
	return failed;
}
