/* config.h — YAML (TCPMapping, TLSContext, Module) to the model in model.h.
 *
 * Loading is pure with respect to the process: it reads files and returns a model or
 * diagnostics; it never touches sockets, the breaker table or the log. */
#pragma once

#include <stdio.h>

#include "diag.h"
#include "model.h"
#include "util.h"

struct config_options {
	const char *ambassador_id; /* NULL = "default" */
	/* Bounds that keep hostile files cheap to reject. 0 = the defaults below. */
	size_t max_file_size;       /* default 16 MiB */
	size_t max_alias_expansion; /* total nodes produced through aliases; default 10000 */
	size_t max_depth;           /* nesting depth; default 64 */
};

/* Load every path in order. A path that is a directory contributes its *.yaml and *.yml
 * files in lexical order (not recursive). Returns:
 *   0        and *ret set to a new model (refcount 1); diags may hold warnings;
 *   -EINVAL  the config has errors, all of them in diags; *ret untouched;
 *   -ENOENT/-EACCES/... a path could not be read (also reported in diags).
 * Each call gets a new generation number. */
int config_load(const char *const *paths, size_t n_paths, const struct config_options *opts,
                struct config **ret, struct diag_list *diags);

/* Same as config_load, but from a memory buffer named `name` (for tests and fuzzing). */
int config_load_buffer(const char *name, const char *data, size_t size,
                       const struct config_options *opts, struct config **ret,
                       struct diag_list *diags);

/* Human-readable dumps for tcpmapctl show / route. */
void config_print_show(const struct config *c, FILE *out);
/* Explain which group and mappings a connection to (address, port) with `sni` reaches.
 * Returns 0, -ENOENT when nothing listens there, or -ESRCH when no group takes the SNI. */
int config_print_route(const struct config *c, const char *address, uint16_t port, const char *sni,
                       FILE *out);
