/* tcpmapd — the dispatcher. Only option parsing and wiring; the work is in lib/server.c. */

#include <string.h>

#include "conn.h"
#include "log.h"
#include "options.h"
#include "relayproc.h"
#include "server.h"

enum {
	OPT_CONFIG = 'c',
	OPT_HELP = 'h',
	OPT_VERSION = 'V',
	OPT_SECRETS_DIR = 0x100,
	OPT_RUNTIME_DIR,
	OPT_WORKERS,
	OPT_LOG_TARGET,
	OPT_INETD,
	OPT_AMBASSADOR_ID,
};

/* One table: getopt_long's options and the --help text come from the same rows. */
static const struct option_row rows[] = {
        {{"config", required_argument, NULL, OPT_CONFIG},
         "PATH",
         "config file or directory (repeatable; default $TCPMAP_CONFIG or " TCPMAP_SYSCONFDIR
         "/tcpmap)"},
        {{"secrets-dir", required_argument, NULL, OPT_SECRETS_DIR},
         "DIR",
         "Kubernetes-style TLS secrets DIR/NAME/tls.{crt,key} (default " TCPMAP_SYSCONFDIR
         "/tcpmap/secrets)"},
        {{"ambassador-id", required_argument, NULL, OPT_AMBASSADOR_ID},
         "ID",
         "read the documents for this Emissary instance (default $AMBASSADOR_ID, else default)"},
        {{"runtime-dir", required_argument, NULL, OPT_RUNTIME_DIR},
         "DIR",
         "where the shared breaker table lives (default $RUNTIME_DIRECTORY, else /run/tcpmap)"},
        {{"workers", required_argument, NULL, OPT_WORKERS},
         "N",
         "worker threads (default: one per online CPU)"},
        {{"log-target", required_argument, NULL, OPT_LOG_TARGET},
         "auto|journal|stderr",
         "where logs go (default auto: the journal when stderr is connected to it)"},
        {{"inetd", no_argument, NULL, OPT_INETD},
         NULL,
         "serve the one connection on stdin, then exit"},
        {{"help", no_argument, NULL, OPT_HELP}, NULL, "show this help"},
        {{"version", no_argument, NULL, OPT_VERSION}, NULL, "show the version"},
};

static void help(void) {
	printf("Usage: tcpmapd [OPTION]...\n"
	       "Relay TCP connections as Ambassador TCPMappings say, on sockets from systemd or "
	       "its own.\n\n");
	options_print_help(rows, ELEMENTSOF(rows), 34, stdout);
	printf("\nSignals: SIGHUP reloads the config (or re-executes a replaced binary), SIGUSR2 "
	       "re-executes, SIGTERM stops. See tcpmapd(8).\n");
}

int main(int argc, char **argv) {
	struct option longopts[ELEMENTSOF(rows) + 1];
	const char *configs[64];
	size_t n_configs = 0;
	struct server_options o = {.secrets_dir = TCPMAP_SYSCONFDIR "/tcpmap/secrets"};
	enum log_target target = LOG_TARGET_AUTO;
	int c;

	if (argc == 5 && strcmp(argv[1], RELAYSPAWN_ARG) == 0) {
		/* tcpmapd's own relay spawner where its helper is missing (relayspawn.h), never
		 * started by hand */
		if (log_target_from_string(argv[2], &target) < 0)
			return 2;
		log_setup(target, "tcpmapd");
		return relayspawn_main(argv[3], argv[4], relayproc_run) < 0 ? 1 : 0;
	}
	options_to_getopt(rows, ELEMENTSOF(rows), longopts);

	while ((c = getopt_long(argc, argv, "c:hV", longopts, NULL)) >= 0) {
		uint64_t v;
		switch (c) {
		case OPT_CONFIG:
			if (n_configs + 1 >= ELEMENTSOF(configs)) {
				fprintf(stderr, "tcpmapd: too many --config options\n");
				return 2;
			}
			configs[n_configs++] = optarg;
			break;
		case OPT_SECRETS_DIR:
			o.secrets_dir = optarg;
			break;
		case OPT_RUNTIME_DIR:
			o.runtime_dir = optarg;
			break;
		case OPT_AMBASSADOR_ID:
			/* the loader reads it from there, at start and on every reload, as
			 * Emissary reads AMBASSADOR_ID */
			if (!*optarg || setenv("AMBASSADOR_ID", optarg, 1) < 0) {
				fprintf(stderr, "tcpmapd: --ambassador-id takes a non-empty id\n");
				return 2;
			}
			break;
		case OPT_WORKERS:
			if (parse_uint(optarg, 1, 1024, &v) < 0) {
				fprintf(stderr,
				        "tcpmapd: --workers takes a number from 1 to 1024, not "
				        "\"%s\"\n",
				        optarg);
				return 2;
			}
			o.workers = (unsigned)v;
			break;
		case OPT_LOG_TARGET:
			if (log_target_from_string(optarg, &target) < 0) {
				fprintf(stderr,
				        "tcpmapd: --log-target takes auto, journal or stderr, not "
				        "\"%s\"\n",
				        optarg);
				return 2;
			}
			break;
		case OPT_INETD:
			o.inetd = true;
			break;
		case OPT_HELP:
			help();
			return 0;
		case OPT_VERSION:
			printf("tcpmapd %s\n", TCPMAP_VERSION);
			return 0;
		default:
			fprintf(stderr, "Try 'tcpmapd --help'.\n");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tcpmapd: unexpected argument \"%s\"\nTry 'tcpmapd --help'.\n",
		        argv[optind]);
		return 2;
	}
	if (n_configs == 0) {
		const char *e = getenv("TCPMAP_CONFIG");
		configs[n_configs++] = e && *e ? e : TCPMAP_SYSCONFDIR "/tcpmap";
	}
	configs[n_configs] = NULL;
	o.config_paths = configs;

	log_setup(target, "tcpmapd");
	int r = server_run(&o);
	/* the last entries (an Accept=yes process's close, the "stopped" line) keep their unit */
	log_flush();
	return r < 0 ? 1 : 0;
}
