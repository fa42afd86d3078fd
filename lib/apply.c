/* apply.c — see apply.h. */
#include "apply.h"

#include <dirent.h>
#include <spawn.h>
#include <sys/wait.h>

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

/* The tcpmap@ sockets listening now, as systemd names them. */
static int list_active(FILE *out, char ***ret, size_t *n_ret) {
	_cleanup_(strv_freep) char **v = NULL;
	size_t n = 0;
	char line[1024];

	FILE *p = popen("systemctl list-units --plain --no-legend --state=active 'tcpmap@*.socket'",
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

int apply_config(const struct apply_options *o, FILE *out) {
	const char *dir = o->generator_dir ? o->generator_dir : APPLY_GENERATOR_DIR;
	_cleanup_(strv_freep) char **before = NULL, **after = NULL;
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
	/* The config alone decides what listens: a tcpmap@ socket it no longer has is closed. */
	for (size_t i = 0; i < n_before; i++) {
		char service[UNITGEN_NAME_MAX + 8];
		if (strv_has(after, n_after, before[i]))
			continue;
		service_of(before[i], service, sizeof service);
		r = systemctl(out, (const char *[]){"stop", before[i], service, NULL});
		if (r < 0)
			failed = r;
		else
			fprintf(out, "closed: %s\n", before[i]);
		stopped++;
	}
	/* Every running instance reads the whole config: reload them all. A reload keeps every
	 * connection, and try-reload-or-restart leaves services that are not running alone. */
	r = systemctl(out, (const char *[]){"try-reload-or-restart", "tcpmap@*.service", NULL});
	if (r < 0)
		failed = r;
	fprintf(out, "%zu listeners in the config, %zu opened, %zu closed%s\n", n_after, started,
	        stopped, failed ? "; some steps failed (see above)" : "");
	return failed;
}
