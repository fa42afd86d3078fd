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

#define N_NUMERIC_COLUMNS 9
static const char *const entry_columns[1 + N_NUMERIC_COLUMNS] = {
        "CLUSTER", "ACTIVE",    "PENDING",          "MAX_CONN", "MAX_PENDING",
        "TOTAL",   "OVERFLOWS", "CONNECT_FAILURES", "BYTES_IN", "BYTES_OUT",
};

static void entry_row_cells(const struct breaker_entry_view *row,
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
		if ((c == 2 || c == 3) && v[c] == 0)
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
	int width[1 + N_NUMERIC_COLUMNS];

	int r = entries_collect(t, &rows, &n);
	if (r < 0)
		return r;

	if (json) {
		fputs("\"clusters\":[", out);
		for (size_t i = 0; i < n; i++) {
			const struct breaker_entry_stats *s = &rows[i].stats;
			fputs(i ? ",{\"cluster\":" : "{\"cluster\":", out);
			json_string(out, rows[i].cluster, rows[i].cluster_len);
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

	for (int c = 0; c <= N_NUMERIC_COLUMNS; c++)
		width[c] = (int)strlen(entry_columns[c]);
	for (size_t i = 0; i < n; i++) {
		char cells[N_NUMERIC_COLUMNS][24];
		entry_row_cells(&rows[i], cells);
		width[0] = MAX(width[0], MIN(text_width(rows[i].cluster, rows[i].cluster_len), 80));
		for (int c = 0; c < N_NUMERIC_COLUMNS; c++)
			width[c + 1] = MAX(width[c + 1], (int)strlen(cells[c]));
	}
	fprintf(out, "%-*s", width[0], entry_columns[0]);
	for (int c = 1; c <= N_NUMERIC_COLUMNS; c++)
		fprintf(out, "  %*s", width[c], entry_columns[c]);
	fputc('\n', out);
	for (size_t i = 0; i < n; i++) {
		char cells[N_NUMERIC_COLUMNS][24];
		entry_row_cells(&rows[i], cells);
		text_cell(out, rows[i].cluster, rows[i].cluster_len, width[0]);
		for (int c = 0; c < N_NUMERIC_COLUMNS; c++)
			fprintf(out, "  %*s", width[c + 1], cells[c]);
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
			key_width = MAX(key_width, MIN(text_width(g.key, g.key_len), 80));
			for (uint32_t m = 0; m < g.n_mappings; m++)
				name_width = MAX(name_width, text_width(g.mappings[m].name,
				                                        g.mappings[m].name_len));
		}
		fprintf(out, "%-*s  %-*s  %6s  %10s\n", key_width, "GROUP", name_width, "MAPPING",
		        "WEIGHT", "PICKS");
	}

	for (pos = 0; breaker_table_next_group(t, &pos, &g);) {
		if (json) {
			fputs(first ? "{\"key\":" : ",{\"key\":", out);
			json_string(out, g.key, g.key_len);
			fputs(",\"mappings\":[", out);
		} else if (g.n_mappings == 0) {
			text_cell(out, g.key, g.key_len, 0);
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
				text_cell(out, g.key, m ? 0 : g.key_len, key_width);
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
