/* options.h — one table per program: getopt_long's options and the --help text come from
 * the same rows, so an option cannot exist without its help line (or the reverse). */
#pragma once

#include <getopt.h>
#include <stddef.h>
#include <stdio.h>

struct option_row {
	struct option opt;
	const char *arg; /* shown after the option in --help; NULL for flags */
	const char *help;
};

/* Fill `out` (n + 1 entries) for getopt_long, ending with the zero entry. */
void options_to_getopt(const struct option_row *rows, size_t n, struct option *out);
/* Print "  --name ARG   help" lines, the left column `width` wide. */
void options_print_help(const struct option_row *rows, size_t n, int width, FILE *out);
