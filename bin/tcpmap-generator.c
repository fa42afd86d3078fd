/* tcpmap-generator — a systemd generator (systemd.generator(7)): at boot and at every
 * `systemctl daemon-reload`, the socket units for every listener of the tcpmap config, so the
 * YAML alone decides what listens, once tcpmap.target is enabled. Wiring only: the plan is
 * lib/unitgen.c.
 *
 * It is on the boot path, so it reads only the config (no TLS secrets, no network, no
 * breaker table), never fails the boot (a broken config generates nothing, says why on
 * stderr, which systemd passes to the journal, and exits 0), and writes only into the
 * directory systemd hands it. */
#include <glob.h>
#include <stdarg.h>
#include <syslog.h>
#include <systemd/sd-journal.h>

#include "config.h"
#include "unitgen.h"
#include "util.h"

#ifndef TCPMAP_UNITDIR
#define TCPMAP_UNITDIR "/lib/systemd/system"
#endif

/* Where a generator's words reach the journal: stderr goes to the kernel log early in boot,
 * but not where there is no /dev/kmsg (a container), so once journald listens (every
 * daemon-reload) the message goes to it directly, under the generator's own name. */
_printf_(1, 2) static void report(const char *fmt, ...) {
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (access("/run/systemd/journal/socket", F_OK) == 0 &&
	    sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", LOG_ERR,
	                    "SYSLOG_IDENTIFIER=tcpmap-generator", NULL) >= 0)
		return;
	fprintf(stderr, "tcpmap-generator: %s\n", msg);
}

/* The config decides what listens only where the administrator asked for that by enabling
 * tcpmap.target (`tcpmapctl apply` does; so does `systemctl enable --now tcpmap.target`).
 * Hosts that enable socket instances one by one keep exactly the sockets they enabled: a
 * generated tcpmap@127.0.0.1:P.socket beside their tcpmap@P.socket would fight it for the
 * port. */
static bool target_enabled(void) {
	static const char *const patterns[] = {
	        TCPMAP_SYSCONFDIR "/systemd/system/*.wants/" UNITGEN_TARGET,
	        "/run/systemd/system/*.wants/" UNITGEN_TARGET,
	};
	for (size_t i = 0; i < ELEMENTSOF(patterns); i++) {
		glob_t g;
		int r = glob(patterns[i], GLOB_NOSORT, NULL, &g);
		globfree(&g);
		if (r == 0)
			return true;
	}
	return false;
}

int main(int argc, char **argv) {
	/* A test, or a curious operator, may point it at another config; systemd never sets it. */
	const char *path = getenv("TCPMAP_GENERATOR_CONFIG");
	const char *paths[1] = {path && *path ? path : TCPMAP_SYSCONFDIR "/tcpmap"};
	struct config_options opts = {.ambassador_id = getenv("AMBASSADOR_ID")};
	struct diag_list diags = {0};
	_cleanup_(config_unrefp) struct config *c = NULL;
	struct unitgen_plan plan = {0};

	if (argc != 2 && argc != 4) {
		fprintf(stderr, "usage: %s NORMAL_DIR [EARLY_DIR LATE_DIR]\n", argv[0]);
		return 1;
	}
	const char *force = getenv("TCPMAP_GENERATOR_FORCE");
	if (!(force && streq(force, "1")) && !target_enabled())
		return 0;
	if (access(paths[0], F_OK) < 0)
		return 0; /* not configured: nothing to listen on */
	int r = config_load(paths, 1, opts.ambassador_id ? &opts : NULL, &c, &diags);
	if (r < 0) {
		for (size_t i = 0; i < diags.n; i++)
			if (diags.items[i].level == DIAG_ERROR)
				report("error: %s", diags.items[i].message);
		report("%s: %s; no socket units generated, the running ones stay as they are",
		       paths[0], r == -EINVAL ? "invalid config" : strerror(-r));
		diag_list_free(&diags);
		return 0;
	}
	diag_list_free(&diags);
	r = unitgen_plan(c, &plan);
	if (r >= 0)
		r = unitgen_write(&plan, argv[1], TCPMAP_UNITDIR);
	unitgen_plan_free(&plan);
	if (r < 0) {
		report("writing units into %s: %s", argv[1], strerror(-r));
		return 0;
	}
	return 0;
}
