/* diag.c — see diag.h. */
#include "diag.h"

#include <stdio.h>
#include <stdlib.h>

#include "textesc.h"

static int diag_format(struct diag_list *l, enum diag_level level, const char *file, unsigned line,
                       unsigned column, const char *fmt, va_list ap) {
	_cleanup_free_ char *raw = NULL, *body = NULL, *message = NULL, *file_copy = NULL,
	                    *file_shown = NULL;
	struct diag *items;

	/* After a failure the pointer is undefined: forget it before the cleanup sees it. */
	if (vasprintf(&raw, fmt, ap) < 0) {
		raw = NULL;
		return -ENOMEM;
	}
	/* Names, hosts and paths in a message come from the config: escaped here once, so
	 * neither a terminal nor the journal gets a control byte from them. */
	body = textesc(raw, SIZE_MAX);
	file_shown = textesc(file, SIZE_MAX);
	if (!body || !file_shown)
		return -ENOMEM;
	if ((line > 0 ? asprintf(&message, "%s:%u:%u: %s", file_shown, line, column, body)
	              : asprintf(&message, "%s: %s", file_shown, body)) < 0) {
		message = NULL;
		return -ENOMEM;
	}
	file_copy = strdup(file);
	if (!file_copy)
		return -ENOMEM;

	items = realloc(l->items, (l->n + 1) * sizeof(*items));
	if (!items)
		return -ENOMEM;
	l->items = items;
	items[l->n] = (struct diag){
	        .level = level,
	        .file = TAKE_PTR(file_copy),
	        .line = line,
	        .column = column,
	        .message = TAKE_PTR(message),
	};
	l->n++;
	if (level == DIAG_ERROR)
		l->n_errors++;
	else if (level == DIAG_WARNING)
		l->n_warnings++;
	return 0;
}

int diag_vadd(struct diag_list *l, enum diag_level level, const char *file, unsigned line,
              unsigned column, const char *fmt, va_list ap) {
	int r;

	if (!l)
		return 0;
	r = diag_format(l, level, file, line, column, fmt, ap);
	if (r < 0)
		l->n_lost++;
	return r;
}

void diag_add(struct diag_list *l, enum diag_level level, const char *file, unsigned line,
              unsigned column, const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	(void)diag_vadd(l, level, file, line, column, fmt, ap);
	va_end(ap);
}

void diag_note_lost(struct diag_list *l) {
	if (l)
		l->n_lost++;
}

void diag_list_free(struct diag_list *l) {
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++) {
		free(l->items[i].file);
		free(l->items[i].message);
	}
	free(l->items);
	*l = (struct diag_list){};
}
