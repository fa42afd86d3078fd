/* test-metrics.c — the exposition (lib/metrics.c) and the scrape's request parser
 * (lib/metrics_http.c): label escaping, names and types in both formats, cumulative histogram
 * buckets at their exact bounds, counters that survive the table growing, an old layout
 * refused, and the parser's contract fed byte by byte from exact-size heap buffers.
 *
 * Each table test works in its own mkdtemp directory under /tmp and removes it. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "breaker.h"
#include "metrics.h"
#include "metrics_http.h"
#include "util.h"

struct fixture {
	char dir[64];
};

static int setup(void **state) {
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-metrics.XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state) {
	struct fixture *f = *state;
	char path[128];
	snprintf(path, sizeof(path), "%s/breakers", f->dir);
	unlink(path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static int dir_open(const struct fixture *f) {
	int fd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

static struct breaker_table *open_table(const struct fixture *f) {
	_cleanup_close_ int fd = dir_open(f);
	struct breaker_table *t = NULL;
	assert_int_equal(breaker_table_open(fd, &t), 0);
	return t;
}

static char *exposition(const struct fixture *f, enum metrics_format format) {
	_cleanup_close_ int fd = dir_open(f);
	char *text = NULL;
	size_t size = 0;
	FILE *out = open_memstream(&text, &size);
	assert_non_null(out);
	assert_int_equal(metrics_print(fd, geteuid(), out, format), 0);
	assert_int_equal(fclose(out), 0);
	return text;
}

static char *label(const char *s, size_t len) {
	char *text = NULL;
	size_t size = 0;
	FILE *out = open_memstream(&text, &size);
	assert_non_null(out);
	metrics_label_value(out, s, len);
	assert_int_equal(fclose(out), 0);
	return text;
}

static void test_label_escaping(void **state) {
	(void)state;
	static const char weird[] = "a\\b\"c\nd\xff\x00z caf\xc3\xa9 \xed\xa0\x80";
	_cleanup_free_ char *e = label(weird, sizeof weird - 1);
	assert_string_equal(e, "a\\\\b\\\"c\\nd\xef\xbf\xbd\xef\xbf\xbdz caf\xc3\xa9 "
	                       "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	_cleanup_free_ char *empty = label("", 0);
	assert_string_equal(empty, "");
}

/* Every line is a comment or `name{labels} value` / `name value` with a valid name. */
static void assert_lines_well_formed(const char *text) {
	for (const char *line = text; *line;) {
		const char *end = strchr(line, '\n');
		assert_non_null(end);
		if (line[0] != '#') {
			size_t n = strspn(
			        line,
			        "abcdefghijklmnopqrstuvwxyz_:ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
			assert_true(n > 0);
			assert_true(line[n] == '{' || line[n] == ' ');
			const char *sp = end;
			while (sp > line && sp[-1] != ' ')
				sp--;
			assert_true(sp < end && strspn(sp, "0123456789.") == (size_t)(end - sp));
		}
		line = end + 1;
	}
}

static void test_exposition(void **state) {
	struct fixture *f = *state;
	struct breaker_table *t = open_table(f);
	struct circuit_breakers cb = {.set = true, .max_connections = 7};
	breaker_slot_t a, b;
	uint32_t e, odd;
	struct mapping m[2] = {{.name = (char *)"blue", .effective_weight = 50},
	                       {.name = (char *)"green", .effective_weight = 50}};
	struct mapping *ms[2] = {&m[0], &m[1]};
	struct mapping_group g = {
	        .key = (char *)"127.0.0.1|8443|-", .mappings = ms, .n_mappings = 2};

	assert_int_equal(breaker_table_entry(t, "up.example:443|plain|-|7|0", &e), 0);
	assert_int_equal(breaker_table_entry(t, "we\"ird\n:1|tls|-|0|0", &odd), 0);
	assert_int_equal(breaker_table_admit(t, e, &cb, &a), 0);
	assert_int_equal(breaker_table_admit(t, e, &cb, &b), 0);
	breaker_table_connected(t, a);
	breaker_table_release(t, b, 1234, 5678);
	/* bounds are inclusive (le): exactly 1 ms is in the first bucket, 1 ms + 1 us not */
	breaker_table_note_end(t, e, CONN_RESULT_OK, 1000);
	breaker_table_note_end(t, e, CONN_RESULT_OK, 1001);
	breaker_table_note_end(t, e, CONN_RESULT_BREAKER_OVERFLOW, 0);
	breaker_table_note_end(t, e, CONN_RESULT_IDLE_TIMEOUT, 400000000); /* over 300 s */
	breaker_table_note_end(t, BREAKER_ENTRY_NONE, CONN_RESULT_UNKNOWN_SNI, 5);
	assert_true(breaker_table_pick(t, &g, NULL) >= 0);
	breaker_table_note_failover(t, &g);
	breaker_table_note_failover(t, &g);
	assert_int_equal(breaker_table_note_config(t, 3), 0);
	assert_int_equal(breaker_table_note_config(t, 4), 0); /* the same process: one record */

	_cleanup_free_ char *text = exposition(f, METRICS_FORMAT_PROMETHEUS);
	assert_lines_well_formed(text);
	const char *l =
	        "cluster=\"up.example:443|plain|-|7|0\",service=\"up.example:443\",tls=\"plain\"";
	char want[512];
#define HAS(...)                                                                                   \
	do {                                                                                       \
		snprintf(want, sizeof want, __VA_ARGS__);                                          \
		if (!strstr(text, want))                                                           \
			fail_msg("missing: %s", want);                                             \
	} while (0)
	HAS("# TYPE tcpmap_connections_total counter\n");
	HAS("tcpmap_connections_active{%s} 1\n", l);
	HAS("tcpmap_connections_admitted_total{%s} 2\n", l);
	HAS("tcpmap_connections_total{%s,result=\"ok\"} 2\n", l);
	HAS("tcpmap_connections_total{%s,result=\"breaker_overflow\"} 1\n", l);
	HAS("tcpmap_connections_total{%s,result=\"bad_hello\"} 0\n", l);
	HAS("tcpmap_upstream_sent_bytes_total{%s} 1234\n", l);
	HAS("tcpmap_upstream_received_bytes_total{%s} 5678\n", l);
	HAS("tcpmap_breaker_max_connections{%s} 7\n", l);
	HAS("# TYPE tcpmap_connection_duration_seconds histogram\n");
	HAS("tcpmap_connection_duration_seconds_bucket{%s,le=\"0.001\"} 2\n", l);
	HAS("tcpmap_connection_duration_seconds_bucket{%s,le=\"0.005\"} 3\n", l);
	HAS("tcpmap_connection_duration_seconds_bucket{%s,le=\"300.0\"} 3\n", l);
	HAS("tcpmap_connection_duration_seconds_bucket{%s,le=\"+Inf\"} 4\n", l);
	HAS("tcpmap_connection_duration_seconds_sum{%s} 400.002001\n", l);
	HAS("tcpmap_connection_duration_seconds_count{%s} 4\n", l);
	HAS("tcpmap_group_failovers_total{group=\"127.0.0.1|8443|-\"} 2\n");
	HAS("tcpmap_group_picks_total{group=\"127.0.0.1|8443|-\",mapping=\"blue\"} 1\n");
	HAS("tcpmap_unrouted_connections_total{result=\"unknown_sni\"} 1\n");
	HAS("tcpmap_config_generation{pid=\"%d\",model=\"threaded\"} 4\n", (int)getpid());
	HAS("tcpmap_config_load_timestamp_seconds{pid=\"%d\",model=\"threaded\"} ", (int)getpid());
	assert_null(
	        strstr(strstr(text, "tcpmap_config_generation{") + 1, "tcpmap_config_generation{"));
	HAS("tcpmap_build_info{version=\"%s\",table_version=\"%u\"} 1\n", TCPMAP_VERSION,
	    BREAKER_TABLE_VERSION);
	/* a name from a config never ends a value or a line early */
	HAS("cluster=\"we\\\"ird\\n:1|tls|-|0|0\",service=\"we\\\"ird\\n:1\",tls=\"tls\"");
	/* no limit, no sample */
	assert_null(strstr(text, "tcpmap_breaker_max_connections{cluster=\"we"));
	assert_null(strstr(text, "# EOF"));
	/* buckets are cumulative: never decreasing, in order */
	unsigned long long prev = 0;
	for (const char *p = text;
	     (p = strstr(p, "tcpmap_connection_duration_seconds_bucket{cluster=\"up"));) {
		const char *nl = strchr(p, '\n');
		const char *sp = nl;
		while (sp[-1] != ' ')
			sp--;
		unsigned long long v = strtoull(sp, NULL, 10);
		assert_true(v >= prev);
		prev = v;
		p = nl;
	}

	_cleanup_free_ char *om = exposition(f, METRICS_FORMAT_OPENMETRICS);
	assert_non_null(strstr(om, "# TYPE tcpmap_connections counter\n"));
	assert_non_null(strstr(om, "# TYPE tcpmap_upstream_sent_bytes counter\n"));
	assert_non_null(strstr(om, "tcpmap_upstream_sent_bytes_total{"));
	assert_null(strstr(om, "# TYPE tcpmap_connections_total"));
	assert_non_null(strstr(om, "# TYPE tcpmap_build info\ntcpmap_build_info{"));
	assert_non_null(strstr(text, "# TYPE tcpmap_build_info gauge\ntcpmap_build_info{"));
	size_t n = strlen(om);
	assert_true(n > 6 && streq(om + n - 6, "# EOF\n"));
	assert_string_equal(metrics_content_type(METRICS_FORMAT_OPENMETRICS),
	                    "application/openmetrics-text; version=1.0.0; charset=utf-8");
	assert_string_equal(metrics_content_type(METRICS_FORMAT_PROMETHEUS),
	                    "text/plain; version=0.0.4; charset=utf-8");
	breaker_table_close(t);
}

/* A grown table carries every new counter over: a scrape must never see a reset that did
 * not happen. */
static void test_counters_survive_growth(void **state) {
	struct fixture *f = *state;
	struct breaker_table *t = open_table(f);
	struct breaker_entry_stats before, after;
	struct mapping m = {.name = (char *)"only", .effective_weight = 100};
	struct mapping *ms[1] = {&m};
	struct mapping_group g = {.key = (char *)"g", .mappings = ms, .n_mappings = 1};
	uint64_t unrouted[BREAKER_RESULTS_MAX];
	uint32_t e;

	assert_int_equal(breaker_table_entry(t, "keep:1|plain|-|0|0", &e), 0);
	for (int i = 0; i < 5; i++)
		breaker_table_note_end(t, e, CONN_RESULT_CONNECT_FAILED, 20000u * (unsigned)i);
	breaker_table_note_end(t, BREAKER_ENTRY_NONE, CONN_RESULT_NOT_TLS, 1);
	breaker_table_note_failover(t, &g);
	assert_int_equal(breaker_table_entry_stats(t, e, &before), 0);

	struct breaker_capacity want = {.clusters = 5000, .groups = 10, .slots = 10}, cap;
	assert_int_equal(breaker_table_reserve(t, &want), 0);
	assert_int_equal(breaker_table_capacity(t, &cap), 0);
	assert_true(cap.clusters >= 5000);
	assert_int_equal(breaker_table_entry_stats(t, e, &after), 0);
	assert_memory_equal(before.results, after.results, sizeof(before.results));
	assert_memory_equal(before.duration_buckets, after.duration_buckets,
	                    sizeof(before.duration_buckets));
	assert_int_equal(after.duration_sum_usec, 200000);
	assert_int_equal(after.results[CONN_RESULT_CONNECT_FAILED], 5);
	assert_int_equal(breaker_table_unrouted_results(t, unrouted), 0);
	assert_int_equal(unrouted[CONN_RESULT_NOT_TLS], 1);
	uint32_t pos = 0;
	struct breaker_group_view gv;
	assert_true(breaker_table_next_group(t, &pos, &gv));
	assert_int_equal(gv.failovers, 1);
	breaker_table_close(t);
}

static unsigned count_processes(struct breaker_table *t, pid_t pid) {
	struct breaker_process_view p;
	unsigned n = 0;
	for (uint32_t pos = 0; breaker_table_next_process(t, &pos, &p);)
		n += p.pid == pid;
	return n;
}

/* A process's config record: one per process, kept across growth, cleared once it is gone. */
static void test_process_records(void **state) {
	struct fixture *f = *state;
	struct breaker_table *t = open_table(f);
	assert_int_equal(breaker_table_note_config(t, 1), 0);

	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		struct breaker_table *c = open_table(f);
		_exit(breaker_table_note_config(c, 7) == 0 ? 0 : 1);
	}
	int status;
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(count_processes(t, child), 1);

	struct breaker_capacity want = {.clusters = 5000, .groups = 10, .slots = 10};
	assert_int_equal(breaker_table_reserve(t, &want), 0);
	assert_int_equal(count_processes(t, child), 1);
	assert_int_equal(count_processes(t, getpid()), 1);
	assert_true(breaker_table_reap(t) >= 0); /* the child is gone: its record too */
	assert_int_equal(count_processes(t, child), 0);
	assert_int_equal(count_processes(t, getpid()), 1);
	breaker_table_close(t);
}

/* A table of the previous layout is refused by readers; a writer (a new tcpmapd after an
 * upgrade) replaces it with one of this layout, which readers then take. */
static void test_old_layout_refused(void **state) {
	struct fixture *f = *state;
	breaker_table_close(open_table(f));
	char path[128];
	snprintf(path, sizeof path, "%s/breakers", f->dir);
	_cleanup_close_ int fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	uint32_t old = BREAKER_TABLE_VERSION - 1;
	assert_int_equal(pwrite(fd, &old, sizeof old, 8), (ssize_t)sizeof old);

	_cleanup_close_ int dir = dir_open(f);
	struct breaker_table *t = NULL;
	assert_int_equal(breaker_table_open_readonly(dir, geteuid(), &t), -EPROTO);
	FILE *out = fopen("/dev/null", "w");
	assert_int_equal(metrics_print(dir, geteuid(), out, METRICS_FORMAT_PROMETHEUS), -EPROTO);
	assert_int_equal(breaker_table_open(dir, &t), 0);
	t = breaker_table_close(t);
	assert_int_equal(metrics_print(dir, geteuid(), out, METRICS_FORMAT_PROMETHEUS), 0);
	fclose(out);
}

/* ---- the request parser ---- */

static enum metrics_http_parse parse_exact(const char *s, size_t len,
                                           struct metrics_http_request *req) {
	char *copy = malloc(len ? len : 1); /* exact size: ASan sees any overrun */
	assert_non_null(copy);
	memcpy(copy, s, len);
	enum metrics_http_parse r = metrics_http_parse(copy, len, req);
	free(copy);
	return r;
}

/* Every proper prefix needs more, or has its answer already and keeps it; the whole is
 * `want`. */
static void check_request(const char *s, enum metrics_http_parse want,
                          struct metrics_http_request *req) {
	size_t len = strlen(s);
	enum metrics_http_parse settled = METRICS_HTTP_NEED_MORE;
	for (size_t k = 0; k < len; k++) {
		enum metrics_http_parse r = parse_exact(s, k, req);
		if (settled != METRICS_HTTP_NEED_MORE)
			assert_int_equal(r, settled);
		settled = r;
		if (want == METRICS_HTTP_DONE) /* done once the head is in, a body or not */
			assert_int_not_equal(r, METRICS_HTTP_BAD);
	}
	assert_int_equal(parse_exact(s, len, req), want);
}

static void test_http_parse(void **state) {
	(void)state;
	struct metrics_http_request req;

	check_request("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", METRICS_HTTP_DONE, &req);
	assert_int_equal(req.method, METRICS_HTTP_GET);
	assert_true(req.metrics_path);
	assert_false(req.openmetrics);
	assert_int_equal(metrics_http_status(&req), 200);

	check_request("GET /metrics?name[]=x HTTP/1.0\nAccept: application/openmetrics-text;"
	              "version=1.0.0;q=0.5,text/plain;q=0.4\n\n",
	              METRICS_HTTP_DONE, &req);
	assert_true(req.openmetrics);
	check_request("GET /metrics HTTP/1.1\r\naccept: Application/OpenMetrics-Text; q=0\r\n\r\n",
	              METRICS_HTTP_DONE, &req);
	assert_false(req.openmetrics);
	check_request("HEAD /metrics HTTP/1.1\r\n\r\n", METRICS_HTTP_DONE, &req);
	assert_int_equal(req.method, METRICS_HTTP_HEAD);
	assert_int_equal(metrics_http_status(&req), 200);
	check_request("GET / HTTP/1.1\r\n\r\n", METRICS_HTTP_DONE, &req);
	assert_int_equal(metrics_http_status(&req), 404);
	check_request("GET /metricsx HTTP/1.1\r\n\r\n", METRICS_HTTP_DONE, &req);
	assert_int_equal(metrics_http_status(&req), 404);
	check_request("DELETE /metrics HTTP/1.1\r\n\r\n", METRICS_HTTP_DONE, &req);
	assert_int_equal(metrics_http_status(&req), 405);
	/* a body after the head is not read */
	check_request("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", METRICS_HTTP_DONE,
	              &req);
	assert_int_equal(metrics_http_status(&req), 405);

	check_request("GET /metrics HTTP/2.0\r\n\r\n", METRICS_HTTP_BAD, &req);
	check_request("GET  /metrics HTTP/1.1\r\n\r\n", METRICS_HTTP_BAD, &req);
	check_request("GET /metrics\r\n\r\n", METRICS_HTTP_BAD, &req);
	check_request("\r\n\r\n", METRICS_HTTP_BAD, &req);
	check_request("GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", METRICS_HTTP_BAD, &req);
	check_request("GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n", METRICS_HTTP_BAD, &req);
	check_request("GET /metrics HTTP/1.1\r\nX: a\rb\r\n\r\n", METRICS_HTTP_BAD, &req);
	check_request("GET /met\x01rics HTTP/1.1\r\n\r\n", METRICS_HTTP_BAD, &req);
	check_request("\x16\x03\x01\x00\xa5", METRICS_HTTP_BAD, &req);
	assert_int_equal(parse_exact("GET /metrics HTTP/1.1\r\nHost: x", 30, &req),
	                 METRICS_HTTP_NEED_MORE);
	assert_int_equal(parse_exact("", 0, &req), METRICS_HTTP_NEED_MORE);
	assert_int_equal(parse_exact("G\0", 2, &req), METRICS_HTTP_BAD);
}

int main(void) {
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_label_escaping),
	        cmocka_unit_test_setup_teardown(test_exposition, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_counters_survive_growth, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_process_records, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_old_layout_refused, setup, teardown),
	        cmocka_unit_test(test_http_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
