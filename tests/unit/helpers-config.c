/* helpers-config.c — the loader tests' shared load and diag assertions (helpers-config.h).
 *
 * Test code only: it calls cmocka's assertions, so it must never be linked into a program. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "helpers-config.h"
#include "util.h"

void loaded_free(struct loaded *l) {
	config_unref(l->config);
	diag_list_free(&l->diags);
	*l = (struct loaded){};
}

void print_diags(const struct diag_list *d) {
	for (size_t i = 0; i < d->n; i++)
		print_message("# diag[%d] %s\n", d->items[i].level, d->items[i].message);
}

struct loaded load_opts(const char *yaml, const struct config_options *opts) {
	struct loaded l = {};
	l.r = config_load_buffer("t.yaml", yaml, strlen(yaml), opts, &l.config, &l.diags);
	return l;
}

struct loaded load(const char *yaml) {
	return load_opts(yaml, NULL);
}

const struct diag *find_diag(const struct diag_list *d, enum diag_level level, unsigned line,
                             const char *needle) {
	for (size_t i = 0; i < d->n; i++)
		if (d->items[i].level == level && (line == 0 || d->items[i].line == line) &&
		    strstr(d->items[i].message, needle))
			return &d->items[i];
	return NULL;
}

void assert_diag(const struct loaded *l, enum diag_level level, unsigned line, const char *needle) {
	if (!find_diag(&l->diags, level, line, needle)) {
		print_message("# wanted level %d line %u: %s\n", level, line, needle);
		print_diags(&l->diags);
		fail();
	}
}

void assert_no_diag(const struct loaded *l, const char *needle) {
	for (size_t i = 0; i < l->diags.n; i++)
		if (strstr(l->diags.items[i].message, needle)) {
			print_diags(&l->diags);
			fail_msg("unexpected diag: %s", needle);
		}
}

void assert_error(const struct loaded *l, unsigned line, const char *needle) {
	if (l->r != -EINVAL) {
		print_diags(&l->diags);
		assert_int_equal(l->r, -EINVAL);
	}
	assert_null(l->config);
	assert_diag(l, DIAG_ERROR, line, needle);
}

void assert_ok(const struct loaded *l) {
	if (l->r != 0)
		print_diags(&l->diags);
	assert_int_equal(l->r, 0);
	assert_non_null(l->config);
}

struct mapping *find_mapping(const struct config *c, const char *name) {
	for (size_t i = 0; i < c->n_mappings; i++)
		if (streq(c->mappings[i]->name, name))
			return c->mappings[i];
	fail_msg("no mapping %s", name);
	return NULL;
}
