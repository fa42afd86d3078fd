/* status.c — the breaker table as `tcpmapctl status` shows it: a text table for people, or
 * one JSON object for scripts (field names as in tcpmapctl(1)).
 *
 * Presentation only: it reads the table through breaker.h's read-only walk and must never
 * write it, know its layout, or print a byte from it unescaped (names come from configs
 * and may hold anything: JSON gets valid UTF-8, a terminal gets no control bytes). */
#include "status.h"

#include "breaker.h"
#include "textesc.h"
#include "util.h"

static void json_string(FILE *out, const char *s, size_t len) {
	const uint8_t *p = (const uint8_t *)s;

	fputc('"', out);
	for (size_t i = 0; i < len;) {
		uint8_t c = p[i];
		if (c == '"' || c == '\\') {
			fprintf(out, "\\%c", c);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			fprintf(out, "\\u%04x", c);
			i++;
		} else if (c < 0x80) {
			fputc(c, out);
			i++;
		} else {
			/* Pass well-formed UTF-8 through; anything else would make invalid JSON. */
			size_t n = c >= 0xf0 && c <= 0xf4  ? 4
			           : c >= 0xe0 && c < 0xf0 ? 3
			           : c >= 0xc2 && c < 0xe0 ? 2
			                                   : 0;
			bool ok = n > 0 && i + n <= len;
			for (size_t k = 1; ok && k < n; k++)
				ok = (p[i + k] & 0xc0) == 0x80;
			/* no overlong forms, surrogates, or code points past U+10FFFF */
			if (ok &&
			    ((c == 0xe0 && p[i + 1] < 0xa0) || (c == 0xed && p[i + 1] >= 0xa0) ||
			     (c == 0xf0 && p[i + 1] < 0x90) || (c == 0xf4 && p[i + 1] >= 0x90)))
				ok = false;
			if (ok) {
				fwrite(p + i, 1, n, out);
				i += n;
			} else {
				fputs("\\ufffd", out);
				i++;
			}
		}
	}
	fputc('"', out);
}

/* A cluster's key is lib/configbuild.c's "SERVICE|plain|-|MAX_CONN|MAX_PENDING" (tls or
 * tls-context and the context's name instead of plain and -; "refuse-0" for a written
 * `max_connections: 0`). People read the service and the TLS mode; the limits have their
 * own columns. A key not of that form is shown whole as the service. */
struct cluster_name {
	const char *service;
	size_t service_len;
	char tls[160]; /* "plain", "tls" or "tls:CONTEXT" (the name as in the key, unescaped) */
	bool refuse_all;
};

static void cluster_name_parse(const char *key, size_t len, struct cluster_name *ret) {
	const char *field[5];
	size_t flen[5], n = 0, start = 0;

	*ret = (struct cluster_name){.service = key, .service_len = len};
	snprintf(ret->tls, sizeof ret->tls, "?");
	for (size_t i = 0; i <= len && n < 5; i++)
		if (i == len || key[i] == '|') {
			field[n] = key + start;
			flen[n++] = i - start;
			start = i + 1;
		}
	if (n < 5)
		return;
	ret->service_len = flen[0];
	if (flen[1] == 11 && memcmp(field[1], "tls-context", 11) == 0)
		snprintf(ret->tls, sizeof ret->tls, "tls:%.*s", (int)MIN(flen[2], 150), field[2]);
	else
		snprintf(ret->tls, sizeof ret->tls, "%.*s", (int)MIN(flen[1], 150), field[1]);
	ret->refuse_all = flen[3] >= 7 && memcmp(field[3], "refuse-", 7) == 0;
}

/* A group's key is "ADDRESS|PORT|HOST" ("*" for none): shown as ADDRESS:PORT, and
 * ADDRESS:PORT/HOST for a group that routes by SNI. */
static char *group_name(const char *key, size_t len) {
	const char *bar1 = memchr(key, '|', len);
	const char *bar2 = bar1 ? memchr(bar1 + 1, '|', len - (size_t)(bar1 + 1 - key)) : NULL;
	char *name = NULL;

	if (!bar2)
		return strndup(key, len);
	const char *addr = key, *port = bar1 + 1, *host = bar2 + 1;
	size_t alen = (size_t)(bar1 - key), plen = (size_t)(bar2 - port),
	       hlen = len - (size_t)(host - key);
	bool v6 = memchr(addr, ':', alen) != NULL, any_host = hlen == 1 && *host == '*';
	if (asprintf(&name, "%s%.*s%s:%.*s%s%.*s", v6 ? "[" : "", (int)alen, addr, v6 ? "]" : "",
	             (int)plen, port, any_host ? "" : "/", any_host ? 0 : (int)hlen, host) < 0)
		return NULL;
	return name;
}

#define N_NUMERIC_COLUMNS 9
#define N_NAME_COLUMNS 2
static const char *const entry_columns[N_NAME_COLUMNS + N_NUMERIC_COLUMNS] = {
        "SERVICE", "TLS",       "ACTIVE",           "PENDING",  "MAX_CONN",  "MAX_PENDING",
        "TOTAL",   "OVERFLOWS", "CONNECT_FAILURES", "BYTES_IN", "BYTES_OUT",
};

static void entry_row_cells(const struct breaker_entry_view *row, const struct cluster_name *name,
                            char cells[N_NUMERIC_COLUMNS][24]) {
	const uint64_t v[N_NUMERIC_COLUMNS] = {
	        row->stats.active,
	        row->stats.pending,
	        row->stats.max_connections,
	        row->stats.max_pending_requests,
	        row->stats.total,
	        row->stats.overflows,
	        row->stats.connect_failures,
	        row->stats.bytes_in,
	        row->stats.bytes_out,
	};
	for (int c = 0; c < N_NUMERIC_COLUMNS; c++) {
		if (c == 2 && v[c] == 0 && name->refuse_all)
			snprintf(cells[c], 24, "0"); /* `max_connections: 0`: nothing admitted */
		else if ((c == 2 || c == 3) && v[c] == 0)
			snprintf(cells[c], 24, "-"); /* no limit */
		else
			snprintf(cells[c], 24, "%llu", (unsigned long long)v[c]);
	}
}

/* Text output goes to a terminal: C0, DEL and C1 bytes in a name must neither move the
 * columns nor drive the terminal, so every name is printed as textesc() writes it. */
static int text_width(const char *s, size_t len) {
	_cleanup_free_ char *e = textesc(s, len);
	return e ? (int)strlen(e) : (int)len * 4;
}

static void text_cell(FILE *out, const char *s, size_t len, int width) {
	_cleanup_free_ char *e = textesc(s, len);
	if (!e) {
		for (size_t i = 0; i < len; i++) /* out of memory: still nothing raw */
			fputc((uint8_t)s[i] < 0x20 || (uint8_t)s[i] >= 0x7f ? '?' : s[i], out);
	} else
		fputs(e, out);
	for (int pad = width - (e ? (int)strlen(e) : (int)len); pad > 0; pad--)
		fputc(' ', out);
}

/* Every cluster entry in use, in table order. NULL with *ret_n 0 for an empty table. */
static int entries_collect(struct breaker_table *t, struct breaker_entry_view **ret,
                           size_t *ret_n) {
	_cleanup_free_ struct breaker_entry_view *rows = NULL;
	size_t n = 0, allocated = 0;
	uint32_t pos = 0;
	struct breaker_entry_view v;

	while (breaker_table_next_entry(t, &pos, &v)) {
		if (n == allocated) {
			size_t more = allocated ? allocated * 2 : 64;
			struct breaker_entry_view *p = reallocarray(rows, more, sizeof(*rows));
			if (!p)
				return -ENOMEM;
			rows = p;
			allocated = more;
		}
		rows[n++] = v;
	}
	*ret = TAKE_PTR(rows);
	*ret_n = n;
	return 0;
}

static int print_entries(struct breaker_table *t, FILE *out, bool json) {
	_cleanup_free_ struct breaker_entry_view *rows = NULL;
	size_t n;
	int width[N_NAME_COLUMNS + N_NUMERIC_COLUMNS];
	struct cluster_name name;

	int r = entries_collect(t, &rows, &n);
	if (r < 0)
		return r;

	if (json) {
		fputs("\"clusters\":[", out);
		for (size_t i = 0; i < n; i++) {
			const struct breaker_entry_stats *s = &rows[i].stats;
			cluster_name_parse(rows[i].cluster, rows[i].cluster_len, &name);
			/* "cluster" and "key": the raw key ("cluster", its first name, stays) */
			fputs(i ? ",{\"cluster\":" : "{\"cluster\":", out);
			json_string(out, rows[i].cluster, rows[i].cluster_len);
			fputs(",\"key\":", out);
			json_string(out, rows[i].cluster, rows[i].cluster_len);
			fputs(",\"service\":", out);
			json_string(out, name.service, name.service_len);
			fputs(",\"tls\":", out);
			json_string(out, name.tls, strlen(name.tls));
			fprintf(out,
			        ",\"active\":%u,\"pending\":%u,\"max_connections\":%u,"
			        "\"max_pending_requests\":%u,\"total\":%llu,\"overflows\":%llu,"
			        "\"connect_failures\":%llu,\"bytes_in\":%llu,\"bytes_out\":%llu}",
			        s->active, s->pending, s->max_connections, s->max_pending_requests,
			        (unsigned long long)s->total, (unsigned long long)s->overflows,
			        (unsigned long long)s->connect_failures,
			        (unsigned long long)s->bytes_in, (unsigned long long)s->bytes_out);
		}
		fputc(']', out);
		return 0;
	}

	for (int c = 0; c < N_NAME_COLUMNS + N_NUMERIC_COLUMNS; c++)
		width[c] = (int)strlen(entry_columns[c]);
	for (size_t i = 0; i < n; i++) {
		char cells[N_NUMERIC_COLUMNS][24];
		cluster_name_parse(rows[i].cluster, rows[i].cluster_len, &name);
		entry_row_cells(&rows[i], &name, cells);
		width[0] = MAX(width[0], MIN(text_width(name.service, name.service_len), 80));
		width[1] = MAX(width[1], MIN(text_width(name.tls, strlen(name.tls)), 40));
		for (int c = 0; c < N_NUMERIC_COLUMNS; c++)
			width[c + N_NAME_COLUMNS] =
			        MAX(width[c + N_NAME_COLUMNS], (int)strlen(cells[c]));
	}
	fprintf(out, "%-*s  %-*s", width[0], entry_columns[0], width[1], entry_columns[1]);
	for (int c = N_NAME_COLUMNS; c < N_NAME_COLUMNS + N_NUMERIC_COLUMNS; c++)
		fprintf(out, "  %*s", width[c], entry_columns[c]);
	fputc('\n', out);
	for (size_t i = 0; i < n; i++) {
		char cells[N_NUMERIC_COLUMNS][24];
		cluster_name_parse(rows[i].cluster, rows[i].cluster_len, &name);
		entry_row_cells(&rows[i], &name, cells);
		text_cell(out, name.service, name.service_len, width[0]);
		fputs("  ", out);
		text_cell(out, name.tls, strlen(name.tls), width[1]);
		for (int c = 0; c < N_NUMERIC_COLUMNS; c++)
			fprintf(out, "  %*s", width[c + N_NAME_COLUMNS], cells[c]);
		fputc('\n', out);
	}
	return 0;
}

static void print_groups(struct breaker_table *t, FILE *out, bool json) {
	int key_width = (int)strlen("GROUP"), name_width = (int)strlen("MAPPING");
	bool first = true;
	struct breaker_group_view g;
	uint32_t pos;

	if (json)
		fputs("\"groups\":[", out);
	else {
		/* first pass: column widths */
		for (pos = 0; breaker_table_next_group(t, &pos, &g);) {
			_cleanup_free_ char *gname = group_name(g.key, g.key_len);
			key_width = MAX(key_width, MIN(gname ? text_width(gname, strlen(gname))
			                                     : text_width(g.key, g.key_len),
			                               80));
			for (uint32_t m = 0; m < g.n_mappings; m++)
				name_width = MAX(name_width, text_width(g.mappings[m].name,
				                                        g.mappings[m].name_len));
		}
		fprintf(out, "%-*s  %-*s  %6s  %10s\n", key_width, "GROUP", name_width, "MAPPING",
		        "WEIGHT", "PICKS");
	}

	for (pos = 0; breaker_table_next_group(t, &pos, &g);) {
		_cleanup_free_ char *gname = group_name(g.key, g.key_len);
		const char *shown = gname ? gname : g.key;
		size_t shown_len = gname ? strlen(gname) : g.key_len;
		if (json) {
			fputs(first ? "{\"key\":" : ",{\"key\":", out);
			json_string(out, g.key, g.key_len);
			fputs(",\"name\":", out);
			json_string(out, shown, shown_len);
			fputs(",\"mappings\":[", out);
		} else if (g.n_mappings == 0) {
			text_cell(out, shown, shown_len, 0);
			fputc('\n', out);
		}
		first = false;
		for (uint32_t m = 0; m < g.n_mappings; m++) {
			const char *name = g.mappings[m].name;
			size_t name_len = g.mappings[m].name_len;
			int weight = g.mappings[m].weight;
			unsigned long long picks = g.mappings[m].picks;
			if (json) {
				fputs(m ? ",{\"name\":" : "{\"name\":", out);
				json_string(out, name, name_len);
				fprintf(out, ",\"weight\":%d,\"picks\":%llu}", weight, picks);
			} else {
				text_cell(out, shown, m ? 0 : shown_len, key_width);
				fputs("  ", out);
				text_cell(out, name, name_len, name_width);
				fprintf(out, "  %6d  %10llu\n", weight, picks);
			}
		}
		if (json)
			fputs("]}", out);
	}
	if (json)
		fputc(']', out);
}

static void breaker_table_closep(struct breaker_table **t) { breaker_table_close(*t); }

int status_print(int dir_fd, uid_t dir_owner, FILE *out, bool json) {
	_cleanup_(breaker_table_closep) struct breaker_table *t = NULL;
	int r;

	if (dir_fd < 0 || !out)
		return -EINVAL;
	r = breaker_table_open_readonly(dir_fd, dir_owner, &t);
	if (r < 0)
		return r;

	if (json) {
		fprintf(out, "{\"version\":%u,", BREAKER_TABLE_VERSION);
		r = print_entries(t, out, true);
		if (r < 0)
			return r;
		fputc(',', out);
		print_groups(t, out, true);
		fputs("}\n", out);
	} else {
		r = print_entries(t, out, false);
		if (r < 0)
			return r;
		fputc('\n', out);
		print_groups(t, out, false);
	}
	return ferror(out) ? -EIO : 0;
}
