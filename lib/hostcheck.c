/* hostcheck.c — a config's needs against this host (see hostcheck.h). Each finding says
 * what tcpmapd would do with the same config, since a check that passes where the daemon
 * refuses is a bug. */
#include "hostcheck.h"

#include <sys/resource.h>

#include "breaker.h"
#include "util.h"

#define CAP_NET_BIND_SERVICE_BIT 10 /* linux/capability.h */

/* Can this process bind ports below the unprivileged start? Root, or CAP_NET_BIND_SERVICE
 * in the effective set (read from /proc, so no libcap is needed). */
static bool may_bind_privileged(void) {
	if (geteuid() == 0)
		return true;
	_cleanup_fclose_ FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long long caps;
		if (sscanf(line, "CapEff: %llx", &caps) == 1)
			return caps & (1ull << CAP_NET_BIND_SERVICE_BIT);
	}
	return false;
}

static unsigned unprivileged_port_start(void) {
	_cleanup_fclose_ FILE *f = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "re");
	unsigned port = 1024;
	if (f && fscanf(f, "%u", &port) != 1)
		port = 1024;
	return port;
}

static void check_table(const struct config *c, FILE *out, struct hostcheck_result *res) {
	struct breaker_capacity want, cap;
	uint64_t size;
	int r = breaker_table_capacity_needed(c, &want);
	if (r >= 0)
		r = breaker_table_capacity_for(&want, &cap, &size);
	if (r < 0) {
		fprintf(out,
		        "error: %zu mappings in %zu groups are more than a breaker table can "
		        "hold\n",
		        c->n_mappings, c->n_groups);
		res->errors++;
		return;
	}
	if (cap.clusters <= BREAKER_N_ENTRIES_MIN && cap.groups <= BREAKER_N_GROUPS_MIN)
		return; /* the table every daemon starts with: nothing to say */
	fprintf(out,
	        "note: breaker table: room for %u clusters, %u groups, %u connections "
	        "(%.1f MiB sparse; it grows when more are needed)\n",
	        cap.clusters, cap.groups, cap.slots, (double)size / (1024 * 1024));
}

/* tcpmapd raises its soft open-files limit to the hard one at start; a listener that then
 * finds no descriptor fails to bind, and the daemon refuses the config. */
static void check_open_files(const struct config *c, FILE *out, struct hostcheck_result *res) {
	struct rlimit rl;
	uint64_t need = (uint64_t)c->n_listeners + HOSTCHECK_FD_RESERVE;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
		fprintf(out,
		        "error: %zu listeners need %llu open files, over this host's limit of %llu "
		        "(ulimit -Hn; a service gets LimitNOFILE= from its unit)\n",
		        c->n_listeners, (unsigned long long)need, (unsigned long long)rl.rlim_max);
		res->errors++;
	}
}

static void check_privileged_ports(const struct config *c, FILE *out,
                                   struct hostcheck_result *res) {
	if (may_bind_privileged())
		return;
	unsigned start = unprivileged_port_start();
	for (size_t i = 0; i < c->n_listeners; i++) {
		const struct listener *l = c->listeners[i];
		if (l->port >= start)
			continue;
		fprintf(out,
		        "warning: listener %s:%u: port below %u needs a socket unit (tcpmapctl "
		        "apply) or CAP_NET_BIND_SERVICE; tcpmapd started by this user cannot bind "
		        "it\n",
		        l->address ? l->address : "*", l->port, start);
		res->warnings++;
	}
}

int hostcheck_config(const struct config *c, FILE *out, struct hostcheck_result *ret) {
	if (!c || !out || !ret)
		return -EINVAL;
	*ret = (struct hostcheck_result){0};
	check_table(c, out, ret);
	check_open_files(c, out, ret);
	check_privileged_ports(c, out, ret);
	return 0;
}
