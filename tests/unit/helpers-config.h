/* helpers-config.h — what the loader's unit tests share: a load from memory kept with its
 * result and diags, and assertions on that load that print every diag when they fail.
 *
 * Test code only, linked into every unit test binary (the Makefile's TESTLIB_SRCS); it must
 * never hold a fixture of its own, so that each test file still shows what it loads. */
#pragma once

#include "config.h"

/* One load: its return value, the config it gave (NULL on error) and all its diags. */
struct loaded {
	int r;
	struct config *config;
	struct diag_list diags;
};

/* Frees what `l` holds and leaves it empty, ready for another load. */
void loaded_free(struct loaded *l);

void print_diags(const struct diag_list *d);

/* Loads `yaml` as the file "t.yaml", with `opts` (NULL: the defaults). */
struct loaded load_opts(const char *yaml, const struct config_options *opts);
struct loaded load(const char *yaml);

/* The diag at `level` on `line` (0: any line) whose message contains `needle`, or NULL. */
const struct diag *find_diag(const struct diag_list *d, enum diag_level level, unsigned line,
                             const char *needle);

void assert_diag(const struct loaded *l, enum diag_level level, unsigned line, const char *needle);
void assert_no_diag(const struct loaded *l, const char *needle);
/* The load failed with -EINVAL, gave no config, and has an error on `line` with `needle`. */
void assert_error(const struct loaded *l, unsigned line, const char *needle);
void assert_ok(const struct loaded *l);

/* The mapping called `name`; fails the test when there is none. */
struct mapping *find_mapping(const struct config *c, const char *name);

/* The header of a v2 TCPMapping document; the caller appends its spec's lines. */
#define HEAD(name)                                                                                 \
	"apiVersion: getambassador.io/v2\n"                                                        \
	"kind: TCPMapping\n"                                                                       \
	"metadata:\n"                                                                              \
	"  name: " name "\n"                                                                       \
	"spec:\n"
