/* tcpmapctl — inspect tcpmap's config and live state. Argument parsing and wiring only. */

#include "apply.h"
#include "metrics.h"
#include "metrics_http.h"
#include "status.h"
#include "top.h"
#include "config.h"
#include "hostcheck.h"
#include "log.h"
#include "netaddr.h"
#include "options.h"
#include "pathtrust.h"
#include "rundir.h"
#include "textesc.h"
#include "tls.h"
#include "unitgen.h"

struct ctl {
	const char **configs; /* NULL-terminated; room for every argument (main) */
	size_t n_configs;
	const char *runtime_dir;
	const char *secrets_dir;
	bool json;
	const char *address;
	const char *sni;
	int port;
	bool openmetrics;
	bool http;
	unsigned iterations;
	unsigned delay_msec;
	int sort;
};

enum {
	OPT_CONFIG = 'c',
	OPT_HELP = 'h',
	OPT_VERSION = 'V',
	OPT_RUNTIME_DIR = 0x100,
	OPT_SECRETS_DIR,
	OPT_JSON,
	OPT_PORT,
	OPT_ADDRESS,
	OPT_SNI,
	OPT_AMBASSADOR_ID,
	OPT_OPENMETRICS,
	OPT_HTTP,
	OPT_ITERATIONS,
	OPT_DELAY,
	OPT_SORT,
};

static const struct option_row rows[] = {
        {{"config", required_argument, NULL, OPT_CONFIG},
         "PATH",
         "config file or directory (repeatable; default $TCPMAP_CONFIG or " TCPMAP_SYSCONFDIR
         "/tcpmap)"},
        {{"ambassador-id", required_argument, NULL, OPT_AMBASSADOR_ID},
         "ID",
         "the Emissary instance whose documents are read (default $AMBASSADOR_ID, else default)"},
        {{"runtime-dir", required_argument, NULL, OPT_RUNTIME_DIR},
         "DIR",
         "breaker table directory for status (default $RUNTIME_DIRECTORY, else /run/tcpmap)"},
        {{"secrets-dir", required_argument, NULL, OPT_SECRETS_DIR},
         "DIR",
         "TLS secrets DIR/NAME/tls.{crt,key} (default " TCPMAP_SYSCONFDIR "/tcpmap/secrets)"},
        {{"json", no_argument, NULL, OPT_JSON}, NULL, "status: print JSON"},
        {{"port", required_argument, NULL, OPT_PORT}, "P", "route: the port a client connects to"},
        {{"address", required_argument, NULL, OPT_ADDRESS},
         "A",
         "route: the local address it connects to"},
        {{"sni", required_argument, NULL, OPT_SNI}, "HOST", "route: the SNI host the client sends"},
        {{"openmetrics", no_argument, NULL, OPT_OPENMETRICS},
         NULL,
         "metrics: OpenMetrics 1.0.0 rather than Prometheus text 0.0.4"},
        {{"http", no_argument, NULL, OPT_HTTP},
         NULL,
         "metrics: answer one HTTP request on stdin/stdout (tcpmap-metrics@.service)"},
        {{"iterations", required_argument, NULL, OPT_ITERATIONS},
         "N",
         "top: stop after N screens (default: until q)"},
        {{"delay", required_argument, NULL, OPT_DELAY},
         "S",
         "top: seconds between refreshes (default 1, at least 0.1)"},
        {{"sort", required_argument, NULL, OPT_SORT},
         "KEY",
         "top: sort by a(ctive), c(onn/s), b(ytes/s), e(rrors/s) or n(ame)"},
        {{"help", no_argument, NULL, OPT_HELP}, NULL, "show this help"},
        {{"version", no_argument, NULL, OPT_VERSION}, NULL, "show the version"},
};

/* Everything printed from a config goes through here: names, hosts and paths are the
 * config writer's bytes, and root's terminal must not run them (lib/textesc.h). The
 * output is made whole first, then copied escaped line by line. */
static int print_escaped(void (*print)(void *userdata, FILE *out), void *userdata, FILE *out) {
	_cleanup_free_ char *text = NULL;
	size_t size = 0;
	FILE *mem = open_memstream(&text, &size);

	if (!mem)
		return -ENOMEM;
	print(userdata, mem);
	if (fclose(mem) != 0)
		return -ENOMEM;
	mem = fmemopen(text, size, "r");
	if (!mem)
		return size == 0 ? 0 : -ENOMEM;
	textesc_copy_lines(mem, out);
	fclose(mem);
	return 0;
}

static void help(void) {
	printf("Usage: tcpmapctl [OPTION]... COMMAND\n\n"
	       "Commands:\n"
	       "  check [PATH]...        validate the config; exit 1 on any error\n"
	       "  show                   print listeners, groups, weights, TLS modes and timeouts\n"
	       "  route --port P [--address A] [--sni HOST]\n"
	       "                         say which group and mapping a connection reaches\n"
	       "  status [--json]        print the live breaker table\n"
	       "  metrics [--openmetrics|--http]\n"
	       "                         print the live table for Prometheus\n"
	       "  top [--delay S] [--iterations N] [--sort KEY]\n"
	       "                         a live table of clusters, refreshed every second\n"
	       "  units                  print the socket units the generator makes for the "
	       "config\n"
	       "  apply                  check the config, then make systemd listen as it says\n"
	       "  reload [UNIT]...       check the config, reload the running tcpmap@ services,\n"
	       "                         and exit 1 if any of them rejected it\n\n"
	       "Options:\n");
	options_print_help(rows, ELEMENTSOF(rows), 22, stdout);
	printf("\nSee tcpmapctl(1).\n");
}

/* Root must not follow another user's symlink to a file of their choice (pathtrust.h).
 * Returns 0, or 1 after saying which path was refused. */
static int paths_trusted(struct ctl *ctl, bool with_keys) {
	char why[512];
	int bad = 0;

	if (geteuid() != 0)
		return 0; /* a user reads only what they could read anyway */
	for (size_t i = 0; i <= ctl->n_configs; i++) {
		const char *p = i < ctl->n_configs ? ctl->configs[i] : ctl->secrets_dir;
		if (i == ctl->n_configs && (!with_keys || !p))
			break;
		int r = pathtrust_check(p, why, sizeof why);
		if (r == 0)
			continue;
		fputs("error: ", stderr);
		textesc_fputs(r == -ELOOP ? why : p, stderr);
		fprintf(stderr, ": %s\n",
		        r == -ELOOP ? "root does not follow another user's symlink" : strerror(-r));
		bad = 1;
	}
	return bad;
}

/* Load and print every diagnostic; returns 0, or 1 when the config has errors. Only check
 * and apply read the TLS keys (`with_keys`): show, route and units describe routing, and the
 * users who run them should not need to read keys (tcpmapctl(1)). */
/* `summary` (for check) receives the error and warning counts instead of a printed line. */
static int load_counted(struct ctl *ctl, bool verbose, bool with_keys, struct config **ret,
                        size_t summary[2]) {
	struct diag_list diags = {0};
	if (paths_trusted(ctl, with_keys))
		return 1;
	int r = config_load(ctl->configs, ctl->n_configs, NULL, ret, &diags);
	if (r >= 0 && with_keys) {
		/* certificates and keys are part of a valid config: check them as tcpmapd would */
		r = tls_config_load(*ret, ctl->secrets_dir, &diags);
		if (r < 0)
			*ret = config_unref(*ret);
	}

	/* diag messages are escaped where they are made (lib/diag.c) */
	for (size_t i = 0; i < diags.n; i++)
		if (diags.items[i].level != DIAG_DEBUG || verbose)
			fprintf(stderr, "%s%s\n",
			        diags.items[i].level == DIAG_ERROR     ? "error: "
			        : diags.items[i].level == DIAG_WARNING ? "warning: "
			                                               : "debug: ",
			        diags.items[i].message);
	if (r < 0 && diags.n_errors == 0)
		fprintf(stderr, "error: cannot load the config: %s\n", strerror(-r));
	size_t errors = diags.n_errors, warnings = diags.n_warnings;
	diag_list_free(&diags);
	if (summary) {
		summary[0] = errors;
		summary[1] = warnings;
	} else if (verbose)
		fprintf(stderr, "%zu error%s, %zu warning%s\n", errors, errors == 1 ? "" : "s",
		        warnings, warnings == 1 ? "" : "s");
	return r < 0 ? 1 : 0;
}

static int load(struct ctl *ctl, bool verbose, bool with_keys, struct config **ret) {
	return load_counted(ctl, verbose, with_keys, ret, NULL);
}

static int cmd_check(struct ctl *ctl) {
	_cleanup_(config_unrefp) struct config *c = NULL;
	size_t counts[2] = {0, 0};
	int r = load_counted(ctl, true, true, &c, counts);
	if (r == 0 && c->n_mappings == 0) {
		/* tcpmapd would listen on nothing: most likely another instance's documents or
		 * the wrong --ambassador-id, and never what `check` should call OK */
		fprintf(stderr,
		        "error: the config selects no TCPMapping for ambassador_id \"%s\"; "
		        "nothing to listen on\n",
		        c->module.ambassador_id);
		counts[0]++;
		r = 1;
	}
	/* what the daemon would refuse on this host is an error of the config here too */
	struct hostcheck_result host = {0};
	if (r == 0 && hostcheck_config(c, stderr, &host) >= 0) {
		counts[0] += host.errors;
		counts[1] += host.warnings;
		r = host.errors ? 1 : 0;
	}
	/* the diagnostics went to stderr; the verdict is the command's output (tcpmapctl(1)) */
	fflush(stderr);
	printf("%zu error%s, %zu warning%s\n", counts[0], counts[0] == 1 ? "" : "s", counts[1],
	       counts[1] == 1 ? "" : "s");
	if (r == 0) {
		/* every path: a user who gave three wants to see that three were read */
		for (size_t i = 0; i < ctl->n_configs; i++) {
			fputs(i ? ", " : "", stdout);
			textesc_fputs(ctl->configs[i], stdout);
		}
		printf(": %zu mappings, %zu listeners, %zu TLS contexts: OK\n", c->n_mappings,
		       c->n_listeners, c->n_tls_contexts);
	}
	return r;
}

static void print_show(void *userdata, FILE *out) { config_print_show(userdata, out); }

static int cmd_show(struct ctl *ctl) {
	_cleanup_(config_unrefp) struct config *c = NULL;
	if (load(ctl, false, false, &c) != 0)
		return 1;
	return print_escaped(print_show, c, stdout) < 0 ? 1 : 0;
}

struct route_query {
	const struct config *config;
	const struct ctl *ctl;
	int result;
};

static void print_route(void *userdata, FILE *out) {
	struct route_query *q = userdata;
	q->result = config_print_route(q->config, q->ctl->address, (uint16_t)q->ctl->port,
	                               q->ctl->sni, out);
}

static int cmd_route(struct ctl *ctl) {
	_cleanup_(config_unrefp) struct config *c = NULL;
	if (ctl->port <= 0) {
		fprintf(stderr, "tcpmapctl route: --port is required\n");
		return 2;
	}
	if (load(ctl, false, false, &c) != 0)
		return 1;
	struct route_query q = {.config = c, .ctl = ctl};
	/* 1 also when no group takes the SNI: scripts ask "does this reach anything?" */
	if (print_escaped(print_route, &q, stdout) < 0 || q.result < 0)
		return 1;
	return 0;
}

/* Why the table could not be read, with what to do about it: the usual cases are a service
 * that never ran, a user the table is kept from, and a --runtime-dir that is not the
 * services'. `file` is NULL for the directory itself. */
static int table_error(const char *cmd, const char *dir, const char *file, int r) {
	const char *why = NULL, *hint = NULL;

	fprintf(stderr, "tcpmapctl %s: ", cmd);
	textesc_fputs(dir, stderr);
	fprintf(stderr, "%s: ", file ? file : "");
	if (r == -ENOENT) {
		why = file ? "no breaker table" : "no such directory";
		hint = "no tcpmap service has run yet (the table appears when tcpmapd first runs), "
		       "or --runtime-dir is not the services' directory (" RUNDIR_DEFAULT ")";
	} else if (r == -EACCES && access(dir, R_OK | X_OK) < 0 && errno == EACCES) {
		why = "permission denied";
		hint = "run as root or as the tcpmap user (the table's upstreams and counts are "
		       "theirs alone)";
	} else if (r == -EACCES && file) {
		why = "permission denied";
		hint = "run as root or as the tcpmap user";
	} else if (r == -EPERM && file)
		why = "not written by root or the directory's owner alone, not trusted";
	else if (r == -EPROTO)
		why = "not a breaker table of this tcpmap version";
	else if (!file && rundir_refusal(r))
		why = rundir_refusal(r);
	fprintf(stderr, "%s%s%s\n", why ? why : strerror(-r), hint ? ": " : "", hint ? hint : "");
	return 1;
}

/* The runtime directory, opened for reading the table (status, metrics, top). Returns
 * 0, or 1 after saying why not. */
static int open_rundir(struct ctl *ctl, const char *cmd, char dir[static 4096], int *ret_fd,
                       uid_t *ret_owner) {
	if (ctl->runtime_dir)
		snprintf(dir, 4096, "%s", ctl->runtime_dir);
	else if (rundir_default(dir, 4096) < 0) {
		fprintf(stderr, "tcpmapctl %s: $RUNTIME_DIRECTORY is too long\n", cmd);
		return 1;
	}
	int r = rundir_open_for_reading(dir, ret_fd, ret_owner);
	return r < 0 ? table_error(cmd, dir, NULL, r) : 0;
}

static int cmd_status(struct ctl *ctl) {
	char dir[4096];
	_cleanup_close_ int dir_fd = -EBADF;
	uid_t owner;
	if (open_rundir(ctl, "status", dir, &dir_fd, &owner))
		return 1;
	int r = status_print(dir_fd, owner, stdout, ctl->json);
	return r < 0 ? table_error("status", dir, "/breakers", r) : 0;
}

struct scrape {
	int dir_fd;
	uid_t owner;
};

/* The body of a scrape's 200 (lib/metrics_http.h). */
static int scrape_body(void *userdata, bool openmetrics, FILE *out, const char **ret_content_type) {
	struct scrape *s = userdata;
	enum metrics_format f =
	        openmetrics ? METRICS_FORMAT_OPENMETRICS : METRICS_FORMAT_PROMETHEUS;
	*ret_content_type = metrics_content_type(f);
	return metrics_print(s->dir_fd, s->owner, out, f);
}

static int cmd_metrics(struct ctl *ctl) {
	char dir[4096];
	_cleanup_close_ int dir_fd = -EBADF;
	uid_t owner = 0;
	int r;
	if (ctl->http) {
		/* A scrape: the answer, even an error, goes to the client; the journal gets why. */
		if (ctl->runtime_dir)
			snprintf(dir, sizeof dir, "%s", ctl->runtime_dir);
		else if (rundir_default(dir, sizeof dir) < 0)
			return 1;
		r = rundir_open_for_reading(dir, &dir_fd, &owner);
		if (r < 0)
			fprintf(stderr, "tcpmapctl metrics: %s: %s\n", dir,
			        rundir_refusal(r) ? rundir_refusal(r) : strerror(-r));
		struct scrape scrape = {.dir_fd = dir_fd, .owner = owner};
		r = metrics_http_serve(STDIN_FILENO, STDOUT_FILENO, scrape_body, &scrape);
		if (r < 0 && r != -EPIPE && r != -ECONNRESET)
			fprintf(stderr, "tcpmapctl metrics: %s\n", strerror(-r));
		return r < 0 ? 1 : 0;
	}
	if (open_rundir(ctl, "metrics", dir, &dir_fd, &owner))
		return 1;
	r = metrics_print(dir_fd, owner, stdout,
	                  ctl->openmetrics ? METRICS_FORMAT_OPENMETRICS
	                                   : METRICS_FORMAT_PROMETHEUS);
	if (r >= 0 && fflush(stdout) != 0)
		r = -EIO;
	return r < 0 ? table_error("metrics", dir, "/breakers", r) : 0;
}

static int cmd_top(struct ctl *ctl) {
	char dir[4096];
	_cleanup_close_ int dir_fd = -EBADF;
	uid_t owner;
	if (open_rundir(ctl, "top", dir, &dir_fd, &owner))
		return 1;
	struct top_options o = {
	        .delay_msec = ctl->delay_msec ? ctl->delay_msec : 1000,
	        .iterations = ctl->iterations,
	        .sort = ctl->sort,
	};
	int r = top_run(dir_fd, owner, STDIN_FILENO, stdout, &o);
	return r < 0 ? table_error("top", dir, "/breakers", r) : 0;
}

static void print_units(void *userdata, FILE *out) { unitgen_print(userdata, TCPMAP_UNITDIR, out); }

static int cmd_units(struct ctl *ctl) {
	_cleanup_(config_unrefp) struct config *c = NULL;
	struct unitgen_plan plan = {0};
	if (load(ctl, false, false, &c) != 0)
		return 1;
	int r = unitgen_plan(c, &plan);
	if (r < 0) {
		fprintf(stderr, "tcpmapctl units: %s\n", strerror(-r));
		return 1;
	}
	print_escaped(print_units, &plan, stdout);
	unitgen_plan_free(&plan);
	return 0;
}

static int cmd_apply(struct ctl *ctl) {
	_cleanup_(config_unrefp) struct config *c = NULL;
	/* the whole check, keys included: a config tcpmapd would refuse changes nothing */
	if (load(ctl, false, true, &c) != 0) {
		fprintf(stderr, "tcpmapctl apply: the config has errors; nothing was changed\n");
		return 1;
	}
	if (!(ctl->n_configs == 1 && streq(ctl->configs[0], TCPMAP_SYSCONFDIR "/tcpmap")))
		fprintf(stderr, "tcpmapctl apply: note: systemd reads %s, not the --config given\n",
		        TCPMAP_SYSCONFDIR "/tcpmap");
	return apply_config(&(struct apply_options){.enable = true}, stdout) < 0 ? 1 : 0;
}

/* `reload [UNIT...]`: what `systemctl reload` cannot say, whether each service took the
 * config (tcpmapctl(1)). */
static int cmd_reload(struct ctl *ctl, const char *const *units, size_t n_units) {
	_cleanup_(config_unrefp) struct config *c = NULL;
	/* the whole check first, keys included: a config with errors is not sent anywhere */
	if (load(ctl, false, true, &c) != 0) {
		fprintf(stderr, "tcpmapctl reload: the config has errors; nothing was reloaded\n");
		return 1;
	}
	if (!(ctl->n_configs == 1 && streq(ctl->configs[0], TCPMAP_SYSCONFDIR "/tcpmap")))
		fprintf(stderr,
		        "tcpmapctl reload: note: the services read %s, not the --config given\n",
		        TCPMAP_SYSCONFDIR "/tcpmap");
	fflush(stderr);
	return apply_reload(units, n_units, stdout) < 0 ? 1 : 0;
}

/* An IP literal, bracketed or not, as config_find_listener_by_name reads it. */
static bool is_address_argument(const char *s) {
	size_t len = strlen(s);
	char inner[INET6_ADDRSTRLEN + 1];

	if (len > 2 && s[0] == '[' && s[len - 1] == ']') {
		if (len - 2 >= sizeof(inner))
			return false;
		memcpy(inner, s + 1, len - 2);
		inner[len - 2] = '\0';
		return netaddr_is_literal(inner);
	}
	return netaddr_is_literal(s);
}

int main(int argc, char **argv) {
	struct option longopts[ELEMENTSOF(rows) + 1];
	struct ctl ctl = {.port = -1, .secrets_dir = TCPMAP_SYSCONFDIR "/tcpmap/secrets"};
	_cleanup_free_ const char **configs = NULL;
	bool positional_paths = false;
	int c;

	/* Every argument may be a path, so this never runs out: no limit on their number. */
	configs = calloc((size_t)argc + 2, sizeof(*configs));
	if (!configs) {
		fprintf(stderr, "tcpmapctl: out of memory\n");
		return 1;
	}
	ctl.configs = configs;

	options_to_getopt(rows, ELEMENTSOF(rows), longopts);
	log_setup(LOG_TARGET_STDERR, "tcpmapctl");

	/* GNU getopt permutes: options may stand before or after the command. */
	while ((c = getopt_long(argc, argv, "c:hV", longopts, NULL)) >= 0) {
		uint64_t v;
		switch (c) {
		case OPT_CONFIG:
			ctl.configs[ctl.n_configs++] = optarg;
			break;
		case OPT_RUNTIME_DIR:
			ctl.runtime_dir = optarg;
			break;
		case OPT_SECRETS_DIR:
			ctl.secrets_dir = optarg;
			break;
		case OPT_JSON:
			ctl.json = true;
			break;
		case OPT_PORT:
			if (parse_uint(optarg, 1, 65535, &v) < 0) {
				fprintf(stderr, "tcpmapctl: --port takes 1-65535, not \"%s\"\n",
				        optarg);
				return 2;
			}
			ctl.port = (int)v;
			break;
		case OPT_ADDRESS:
			if (!is_address_argument(optarg)) {
				fputs("tcpmapctl: --address takes an IP address, not \"", stderr);
				textesc_fputs(optarg, stderr);
				fputs("\"\n", stderr);
				return 2;
			}
			ctl.address = optarg;
			break;
		case OPT_SNI:
			ctl.sni = optarg;
			break;
		case OPT_AMBASSADOR_ID:
			/* every command loads through the same variable tcpmapd reads */
			if (!*optarg || setenv("AMBASSADOR_ID", optarg, 1) < 0) {
				fprintf(stderr,
				        "tcpmapctl: --ambassador-id takes a non-empty id\n");
				return 2;
			}
			break;
		case OPT_OPENMETRICS:
			ctl.openmetrics = true;
			break;
		case OPT_HTTP:
			ctl.http = true;
			break;
		case OPT_ITERATIONS:
			if (parse_uint(optarg, 1, 1000000000, &v) < 0) {
				fprintf(stderr,
				        "tcpmapctl: --iterations takes a positive number\n");
				return 2;
			}
			ctl.iterations = (unsigned)v;
			break;
		case OPT_DELAY: {
			char *end;
			errno = 0;
			double d = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(d >= 0.1 && d <= 3600)) {
				fprintf(stderr, "tcpmapctl: --delay takes 0.1 to 3600 seconds\n");
				return 2;
			}
			ctl.delay_msec = (unsigned)(d * 1000 + 0.5);
			break;
		}
		case OPT_SORT:
			ctl.sort = optarg[0] && !optarg[1] ? top_sort_from_key(optarg[0]) : -EINVAL;
			if (ctl.sort < 0) {
				fprintf(stderr, "tcpmapctl: --sort takes a, c, b, e or n\n");
				return 2;
			}
			break;
		case OPT_HELP:
			help();
			return 0;
		case OPT_VERSION:
			printf("tcpmapctl %s\n", TCPMAP_VERSION);
			return 0;
		default:
			fprintf(stderr, "Try 'tcpmapctl --help'.\n");
			return 2;
		}
	}
	if (optind >= argc) {
		help();
		return 2;
	}
	const char *cmd = argv[optind++];
	/* `reload UNIT...`: the services to reload (default: every running tcpmap@ one) */
	const char *const *units = NULL;
	size_t n_units = 0;
	if (streq(cmd, "reload")) {
		units = (const char *const *)argv + optind;
		n_units = (size_t)(argc - optind);
		optind = argc;
	}
	/* `check PATH...`: the paths given replace --config (tcpmapctl(1)) */
	if (streq(cmd, "check"))
		for (; optind < argc; optind++) {
			if (!positional_paths)
				ctl.n_configs = 0;
			positional_paths = true;
			ctl.configs[ctl.n_configs++] = argv[optind];
		}
	if (optind < argc) {
		fputs("tcpmapctl: unexpected argument \"", stderr);
		textesc_fputs(argv[optind], stderr);
		fputs("\"\n", stderr);
		return 2;
	}
	if (ctl.n_configs == 0) {
		const char *e = getenv("TCPMAP_CONFIG");
		ctl.configs[ctl.n_configs++] = e && *e ? e : TCPMAP_SYSCONFDIR "/tcpmap";
	}
	ctl.configs[ctl.n_configs] = NULL;

	if (streq(cmd, "check"))
		return cmd_check(&ctl);
	if (streq(cmd, "show"))
		return cmd_show(&ctl);
	if (streq(cmd, "route"))
		return cmd_route(&ctl);
	if (streq(cmd, "status"))
		return cmd_status(&ctl);
	if (streq(cmd, "metrics"))
		return cmd_metrics(&ctl);
	if (streq(cmd, "top"))
		return cmd_top(&ctl);
	if (streq(cmd, "units"))
		return cmd_units(&ctl);
	if (streq(cmd, "apply"))
		return cmd_apply(&ctl);
	if (streq(cmd, "reload"))
		return cmd_reload(&ctl, units, n_units);
	fputs("tcpmapctl: unknown command \"", stderr);
	textesc_fputs(cmd, stderr);
	fputs("\"\nTry 'tcpmapctl --help'.\n", stderr);
	return 2;
}
