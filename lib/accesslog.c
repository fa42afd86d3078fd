/* accesslog.c — a connection's access-log entry; see accesslog.h. Must never log anything
 * but what the entry holds: the SNI is the client's and is quoted by log.c. */
#include "accesslog.h"

#include <stdio.h>

#include "log.h"
#include "netaddr.h"

void accesslog_close(const struct accesslog_entry *e) {
	char client[NETADDR_TEXT_MAX], upstream[300], in[24], out[24], duration[24], pid[16];
	bool ok = e->result == CONN_RESULT_OK || e->result == CONN_RESULT_IDLE_TIMEOUT;
	const char *result = conn_result_name(e->result);
	const char *mapping = e->mapping ? e->mapping : "-";

	if (e->client)
		netaddr_format(e->client, client, sizeof client);
	else
		snprintf(client, sizeof client, "-");
	if (e->upstream)
		netaddr_format(e->upstream, upstream, sizeof upstream);
	else
		snprintf(upstream, sizeof upstream, "%s", e->service ? e->service : "-");
	snprintf(in, sizeof in, "%llu", (unsigned long long)e->bytes_in);
	snprintf(out, sizeof out, "%llu", (unsigned long long)e->bytes_out);
	snprintf(duration, sizeof duration, "%llu", (unsigned long long)e->duration_ms);
	snprintf(pid, sizeof pid, "%d", (int)e->pid);

	struct log_field f[] = {
	        {"MAPPING", e->mapping},
	        {"CLIENT", client},
	        {"SNI", e->sni},
	        {"UPSTREAM", upstream},
	        {"BYTES_IN", in},
	        {"BYTES_OUT", out},
	        {"DURATION_MS", duration},
	        {"RESULT", result},
	        /* journald has _PID; logfmt lines need it written */
	        {"PID", e->pid ? pid : NULL},
	};
	log_event(ok ? LOG_INFO : LOG_WARNING, TCPMAP_MID_CLOSE, "close", f, ELEMENTSOF(f),
	          "%s %s -> %s: %s, %s bytes in, %s bytes out, %s ms", mapping, client, upstream,
	          result, in, out, duration);
}
