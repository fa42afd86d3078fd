/* options.c — see options.h. */
#include "options.h"

#include <string.h>

void options_to_getopt(const struct option_row *rows, size_t n, struct option *out) {
	for (size_t i = 0; i < n; i++)
		out[i] = rows[i].opt;
	memset(&out[n], 0, sizeof out[n]);
}

void options_print_help(const struct option_row *rows, size_t n, int width, FILE *out) {
	for (size_t i = 0; i < n; i++) {
		char left[64];
		snprintf(left, sizeof left, "--%s%s%s", rows[i].opt.name, rows[i].arg ? " " : "",
		         rows[i].arg ? rows[i].arg : "");
		fprintf(out, "  %-*s %s\n", width, left, rows[i].help);
	}
}
