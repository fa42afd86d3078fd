/* metrics.c — the breaker table in Prometheus' text exposition format (0.0.4) and in
 * OpenMetrics 1.0.0: one family per metric, base units (bytes, seconds), `_total` on
 * counters, label values escaped.
 *
 * Presentation only, like status.c: it reads the table through breaker.h's read-only walk
 * and must never write it, know its layout, or print a byte from it unescaped. The counters
 * it prints live in the table, so they survive a restart of tcpmapd (hand-over included):
 * a scrape never shows a reset that did not happen. */
#include "metrics.h"

#include <stddef.h>

#include "breaker.h"
#include "result.h"
#include "util.h"

const char *metrics_content_type(enum metrics_format f) {
	return f == METRICS_FORMAT_OPENMETRICS
	               ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
	               : "text/plain; version=0.0.4; charset=utf-8";
}

/* Length of the well-formed UTF-8 sequence at p (no overlong forms, surrogates, or code
 * points past U+10FFFF), or 0. */
static size_t utf8_len(const uint8_t *p, size_t avail) {
	uint8_t c = p[0];
	size_t n = c < 0x80                 ? 1
	           : c >= 0xc2 && c < 0xe0  ? 2
	           : c >= 0xe0 && c < 0xf0  ? 3
	           : c >= 0xf0 && c <= 0xf4 ? 4
	                                    : 0;
	if (n == 0 || n > avail)
		return 0;
	for (size_t k = 1; k < n; k++)
		if ((p[k] & 0xc0) != 0x80)
			return 0;
	if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0) ||
	    (c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90))
		return 0;
	return n;
}

void metrics_label_value(FILE *out, const char *s, size_t len) {
	const uint8_t *p = (const uint8_t *)s;
	size_t run = 0; /* bytes from p + i - run on that pass unchanged, written in one go */

	for (size_t i = 0; i < len;) {
		size_t n = utf8_len(p + i, len - i);
		const char *subst =
		        p[i] == '\\'   ? "\\\\"
		        : p[i] == '"'  ? "\\\""
		        : p[i] == '\n' ? "\\n"
		        : n == 0 || p[i] == 0
		                ? "\xef\xbf\xbd" /* U+FFFD: the formats are UTF-8 only */
		                : NULL;
		if (!subst) {
			run += n;
			i += n;
			continue;
		}
		fwrite(p + i - run, 1, run, out);
		run = 0;
		fputs(subst, out);
		i++;
	}
	fwrite(p + len - run, 1, run, out);
}

/* A family's header. OpenMetrics names a counter family without its `_total`. */
static void family(FILE *out, enum metrics_format f, const char *name, const char *type,
                   const char *help) {
	size_t len = strlen(name);
	if (f == METRICS_FORMAT_OPENMETRICS && streq(type, "counter") && len > 6 &&
	    streq(name + len - 6, "_total"))
		len -= 6;
	/* OpenMetrics has an info type (its family named without _info); 0.0.4 a gauge of 1 */
	if (streq(type, "info")) {
		if (f == METRICS_FORMAT_OPENMETRICS && len > 5 && streq(name + len - 5, "_info"))
			len -= 5;
		else
			type = "gauge";
	}
	fprintf(out, "# HELP %.*s %s\n# TYPE %.*s %s\n", (int)len, name, help, (int)len, name,
	        type);
}

/* What a cluster key says, for readable labels: "host:port|plain|ctx|limits" gives the
 * service "host:port" and TLS origination "plain" (configbuild.c makes the key). */
static void cluster_labels_write(FILE *out, const struct breaker_entry_view *v) {
	const char *bar = memchr(v->cluster, '|', v->cluster_len);
	size_t service_len = bar ? (size_t)(bar - v->cluster) : v->cluster_len;
	const char *tls = bar ? bar + 1 : "";
	size_t tls_len = bar ? v->cluster_len - service_len - 1 : 0;
	const char *bar2 = memchr(tls, '|', tls_len);
	if (bar2)
		tls_len = (size_t)(bar2 - tls);

	fputs("cluster=\"", out);
	metrics_label_value(out, v->cluster, v->cluster_len);
	fputs("\",service=\"", out);
	metrics_label_value(out, v->cluster, service_len);
	fputs("\",tls=\"", out);
	metrics_label_value(out, tls, tls_len);
	fputc('"', out);
}

/* A cluster's labels, escaped once for every sample of it (a scrape of 1000 clusters writes
 * them some 40 000 times). */
struct cluster_row {
	struct breaker_entry_view view;
	char *labels;
};

static void cluster_labels(FILE *out, const struct cluster_row *row) { fputs(row->labels, out); }

static void sample(FILE *out, const char *name, const struct cluster_row *row, const char *extra,
                   unsigned long long value) {
	fprintf(out, "%s{%s%s} %llu\n", name, row->labels, extra ? extra : "", value);
}

/* Seconds from microseconds, exactly (no float rounding on a growing sum). */
static void seconds(FILE *out, uint64_t usec) {
	fprintf(out, "%llu.%06llu", (unsigned long long)(usec / 1000000),
	        (unsigned long long)(usec % 1000000));
}

/* `le` values as OpenMetrics writes them (a float with a fraction), valid in 0.0.4 too. */
static void bound_text(uint64_t usec, char buf[32]) {
	if (usec % 1000000 == 0)
		snprintf(buf, 32, "%llu.0", (unsigned long long)(usec / 1000000));
	else {
		snprintf(buf, 32, "%llu.%06llu", (unsigned long long)(usec / 1000000),
		         (unsigned long long)(usec % 1000000));
		for (size_t n = strlen(buf); buf[n - 1] == '0'; n--)
			buf[n - 1] = 0;
	}
}

static struct cluster_row *rows_free(struct cluster_row *rows, size_t n) {
	for (size_t i = 0; rows && i < n; i++)
		free(rows[i].labels);
	free(rows);
	return NULL;
}

static int entries_collect(struct breaker_table *t, struct cluster_row **ret, size_t *ret_n) {
	struct cluster_row *rows = NULL;
	size_t n = 0, allocated = 0;
	uint32_t pos = 0;
	struct breaker_entry_view v;

	while (breaker_table_next_entry(t, &pos, &v)) {
		if (n == allocated) {
			size_t more = allocated ? allocated * 2 : 64;
			struct cluster_row *p = reallocarray(rows, more, sizeof(*rows));
			if (!p) {
				rows_free(rows, n);
				return -ENOMEM;
			}
			rows = p;
			allocated = more;
		}
		size_t size = 0;
		rows[n] = (struct cluster_row){.view = v};
		FILE *mem = open_memstream(&rows[n].labels, &size);
		if (mem)
			cluster_labels_write(mem, &v);
		if (!mem || fclose(mem) != 0) {
			rows_free(rows, n + (mem != NULL));
			return -ENOMEM;
		}
		n++;
	}
	*ret = rows;
	*ret_n = n;
	return 0;
}

/* One number per cluster, read from its stats: the families that differ only in name, type,
 * help and field. `no_limit_is_zero`: absent when 0 (a limit that is not set). */
struct cluster_family {
	const char *name, *type, *help;
	size_t offset;
	bool is32, no_limit_is_zero;
};

#define STAT(field) offsetof(struct breaker_entry_stats, field)
#define STAT32(field) STAT(field), true
#define STAT64(field) STAT(field), false

static const struct cluster_family families_before_results[] = {
        {"tcpmap_connections_active", "gauge",
         "Upstream connections of the cluster established now.", STAT32(active), false},
        {"tcpmap_connections_pending", "gauge",
         "Upstream connections of the cluster being connected now.", STAT32(pending), false},
        {"tcpmap_connections_admitted_total", "counter",
         "Connections admitted by the cluster's circuit breaker.", STAT64(total), false},
};

static const struct cluster_family families_after_results[] = {
        {"tcpmap_upstream_sent_bytes_total", "counter",
         "Bytes relayed from clients to the cluster's upstream, counted when a "
         "connection ends.",
         STAT64(bytes_in), false},
        {"tcpmap_upstream_received_bytes_total", "counter",
         "Bytes relayed from the cluster's upstream to clients, counted when a "
         "connection ends.",
         STAT64(bytes_out), false},
        {"tcpmap_breaker_max_connections", "gauge",
         "The cluster's circuit breaker max_connections (absent: no limit).",
         STAT32(max_connections), true},
        {"tcpmap_breaker_max_pending_requests", "gauge",
         "The cluster's circuit breaker max_pending_requests (absent: no limit).",
         STAT32(max_pending_requests), true},
        {"tcpmap_breaker_overflows_total", "counter",
         "Connections refused because the cluster's circuit breaker was open.", STAT64(overflows),
         false},
        {"tcpmap_upstream_connect_failures_total", "counter",
         "Upstream connects of the cluster that failed or timed out.", STAT64(connect_failures),
         false},
};

static void write_cluster_families(FILE *out, enum metrics_format f,
                                   const struct cluster_family *fam, size_t n_fam,
                                   const struct cluster_row *rows, size_t n) {
	for (size_t k = 0; k < n_fam; k++) {
		family(out, f, fam[k].name, fam[k].type, fam[k].help);
		for (size_t i = 0; i < n; i++) {
			const char *p = (const char *)&rows[i].view.stats + fam[k].offset;
			uint64_t v = fam[k].is32 ? *(const uint32_t *)p : *(const uint64_t *)p;
			if (v || !fam[k].no_limit_is_zero)
				sample(out, fam[k].name, &rows[i], NULL, v);
		}
	}
}

static void write_entries(FILE *out, enum metrics_format f, const struct cluster_row *rows,
                          size_t n) {
	write_cluster_families(out, f, families_before_results, ELEMENTSOF(families_before_results),
	                       rows, n);

	family(out, f, "tcpmap_connections_total", "counter",
	       "Connections routed to the cluster that ended, by result (TCPMAP_RESULT= in "
	       "tcpmapd(8)).");
	for (size_t i = 0; i < n; i++)
		for (int r = 0; r < _CONN_RESULT_MAX; r++) {
			char extra[64];
			snprintf(extra, sizeof extra, ",result=\"%s\"", conn_result_name(r));
			sample(out, "tcpmap_connections_total", &rows[i], extra,
			       rows[i].view.stats.results[r]);
		}

	write_cluster_families(out, f, families_after_results, ELEMENTSOF(families_after_results),
	                       rows, n);

	family(out, f, "tcpmap_connection_duration_seconds", "histogram",
	       "How long the cluster's connections lasted, from accept to close.");
	for (size_t i = 0; i < n; i++) {
		const struct breaker_entry_stats *s = &rows[i].view.stats;
		uint64_t cumulative = 0;
		for (unsigned b = 0; b <= BREAKER_DURATION_BUCKETS; b++) {
			char le[32], extra[48];
			cumulative += s->duration_buckets[b];
			if (b < BREAKER_DURATION_BUCKETS)
				bound_text(breaker_duration_bounds_usec[b], le);
			else
				snprintf(le, sizeof le, "+Inf");
			snprintf(extra, sizeof extra, ",le=\"%s\"", le);
			sample(out, "tcpmap_connection_duration_seconds_bucket", &rows[i], extra,
			       cumulative);
		}
		fputs("tcpmap_connection_duration_seconds_sum{", out);
		cluster_labels(out, &rows[i]);
		fputs("} ", out);
		seconds(out, s->duration_sum_usec);
		fputc('\n', out);
		sample(out, "tcpmap_connection_duration_seconds_count", &rows[i], NULL, cumulative);
	}
}

static void write_groups(struct breaker_table *t, FILE *out, enum metrics_format f) {
	struct breaker_group_view g;
	uint32_t pos;

	family(out, f, "tcpmap_group_weight", "gauge",
	       "Each mapping's effective weight in its mapping group.");
	for (pos = 0; breaker_table_next_group(t, &pos, &g);)
		for (uint32_t m = 0; m < g.n_mappings; m++) {
			fputs("tcpmap_group_weight{group=\"", out);
			metrics_label_value(out, g.key, g.key_len);
			fputs("\",mapping=\"", out);
			metrics_label_value(out, g.mappings[m].name, g.mappings[m].name_len);
			fprintf(out, "\"} %d\n", g.mappings[m].weight);
		}
	family(out, f, "tcpmap_group_picks_total", "counter",
	       "Connections the weighted choice gave each mapping (restarts from 0 when the "
	       "group's mappings or weights change).");
	for (pos = 0; breaker_table_next_group(t, &pos, &g);)
		for (uint32_t m = 0; m < g.n_mappings; m++) {
			fputs("tcpmap_group_picks_total{group=\"", out);
			metrics_label_value(out, g.key, g.key_len);
			fputs("\",mapping=\"", out);
			metrics_label_value(out, g.mappings[m].name, g.mappings[m].name_len);
			fprintf(out, "\"} %llu\n", (unsigned long long)g.mappings[m].picks);
		}
	family(out, f, "tcpmap_group_failovers_total", "counter",
	       "Connections routed past a mapping whose circuit breaker was open.");
	for (pos = 0; breaker_table_next_group(t, &pos, &g);) {
		fputs("tcpmap_group_failovers_total{group=\"", out);
		metrics_label_value(out, g.key, g.key_len);
		fprintf(out, "\"} %llu\n", (unsigned long long)g.failovers);
	}
}

/* Each long-running tcpmapd and the config it runs: a reload shows as a new generation and
 * load time, a restart as a new pid. */
static void write_processes(struct breaker_table *t, FILE *out, enum metrics_format f) {
	struct breaker_process_view p;
	uint32_t pos;

	family(out, f, "tcpmap_config_generation", "gauge",
	       "The config generation each long-running tcpmapd runs (1 at start, +1 per reload).");
	for (pos = 0; breaker_table_next_process(t, &pos, &p);)
		fprintf(out, "tcpmap_config_generation{pid=\"%d\",model=\"threaded\"} %llu\n",
		        (int)p.pid, (unsigned long long)p.generation);
	family(out, f, "tcpmap_config_load_timestamp_seconds", "gauge",
	       "When each long-running tcpmapd loaded the config it runs (Unix time).");
	for (pos = 0; breaker_table_next_process(t, &pos, &p);) {
		fprintf(out, "tcpmap_config_load_timestamp_seconds{pid=\"%d\",model=\"threaded\"} ",
		        (int)p.pid);
		seconds(out, p.loaded_realtime_usec);
		fputc('\n', out);
	}
}

int metrics_write(struct breaker_table *t, FILE *out, enum metrics_format f) {
	struct cluster_row *rows = NULL;
	uint64_t unrouted[BREAKER_RESULTS_MAX];
	size_t n;

	if (!t || !out || f < 0 || f >= _METRICS_FORMAT_MAX)
		return -EINVAL;
	int r = entries_collect(t, &rows, &n);
	if (r < 0)
		return r;
	family(out, f, "tcpmap_build_info", "info",
	       "The tcpmap version that wrote this; always 1.");
	fprintf(out, "tcpmap_build_info{version=\"%s\",table_version=\"%u\"} 1\n", TCPMAP_VERSION,
	        BREAKER_TABLE_VERSION);
	write_processes(t, out, f);
	write_entries(out, f, rows, n);
	write_groups(t, out, f);
	if (breaker_table_unrouted_results(t, unrouted) >= 0) {
		family(out, f, "tcpmap_unrouted_connections_total", "counter",
		       "Connections that ended before reaching any mapping, by result.");
		for (int i = 0; i < _CONN_RESULT_MAX; i++)
			fprintf(out, "tcpmap_unrouted_connections_total{result=\"%s\"} %llu\n",
			        conn_result_name(i), (unsigned long long)unrouted[i]);
	}
	if (f == METRICS_FORMAT_OPENMETRICS)
		fputs("# EOF\n", out);
	rows_free(rows, n);
	return ferror(out) ? -EIO : 0;
}

static void breaker_table_closep(struct breaker_table **t) { breaker_table_close(*t); }

int metrics_print(int dir_fd, uid_t dir_owner, FILE *out, enum metrics_format f) {
	_cleanup_(breaker_table_closep) struct breaker_table *t = NULL;

	if (dir_fd < 0 || !out)
		return -EINVAL;
	int r = breaker_table_open_readonly(dir_fd, dir_owner, &t);
	if (r < 0)
		return r;
	return metrics_write(t, out, f);
}
