/* diag.h — the list of problems a config load reports, each with FILE:LINE:COL.
 *
 * Every layer of the loader (YAML tree, fields, kinds, building) and lib/tls append to one
 * list, and the caller decides where it is printed. This file knows nothing of YAML or of
 * the model, and never prints or logs. */
#pragma once

#include <stdarg.h>
#include <stddef.h>

#include "util.h"

enum diag_level {
	DIAG_ERROR,
	DIAG_WARNING,
	DIAG_DEBUG, /* e.g. "skipping kind Mapping" */
};

/* One problem, already formatted as "FILE:LINE:COL: mapping \"NAME\": FIELD: what". */
struct diag {
	enum diag_level level;
	char *file;
	unsigned line;
	unsigned column;
	char *message; /* full text including the position prefix */
};

struct diag_list {
	struct diag *items;
	size_t n;
	size_t n_errors;
	size_t n_warnings;
	/* Diags that could not be recorded for want of memory. A load that lost one fails
	 * with -ENOMEM, since the lost one may have been an error. */
	size_t n_lost;
};

void diag_list_free(struct diag_list *l);
/* Append a diag "FILE:LINE:COL: message" (or "FILE: message" when line is 0) and count it.
 * diag_vadd returns 0, or -ENOMEM when it could not be recorded (then counted in n_lost).
 * A NULL list is a no-op. */
int diag_vadd(struct diag_list *l, enum diag_level level, const char *file, unsigned line,
              unsigned column, const char *fmt, va_list ap) _printf_(6, 0);
void diag_add(struct diag_list *l, enum diag_level level, const char *file, unsigned line,
              unsigned column, const char *fmt, ...) _printf_(6, 7);
/* Count a diag that its caller could not even format. */
void diag_note_lost(struct diag_list *l);
