/* tcpmap-spawner — tcpmapd's relay spawner for per_connection_process (relayspawn.h),
 * started by tcpmapd only: `tcpmap-spawner --relay-spawner LOG_TARGET RUNTIME_DIR ABI`, the
 * channel to tcpmapd as fd 3. Linked statically with libc and the objects a relay needs,
 * so that each relay it forks copies little. Its log lines say SYSLOG_IDENTIFIER=tcpmapd,
 * as the relays have always done. */
#include <string.h>

#include "log.h"
#include "relayproc.h"
#include "relayspawn.h"

int main(int argc, char **argv) {
	enum log_target target;

	if (argc != 5 || strcmp(argv[1], RELAYSPAWN_ARG) != 0 ||
	    log_target_from_string(argv[2], &target) < 0)
		return 2;
	log_setup(target, "tcpmapd");
	return relayspawn_main(argv[3], argv[4], relayproc_run) < 0 ? 1 : 0;
}
