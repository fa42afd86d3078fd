/* fuzz-config.c — libFuzzer harness: whole files into config_load_buffer.
 *
 * Whatever the bytes, loading must end in a model or in diagnostics, within the alias,
 * depth and size bounds, and everything it allocated must be freed here (LeakSanitizer
 * checks); no diag may carry a control character. The seeds include merge keys and keys
 * written twice (tests/fuzz/corpus/config/merge-*.yaml, duplicate-keys.yaml). The harness must
 * never write files or touch the network. */
#include <stddef.h>
#include <stdint.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
	struct config *config = NULL;
	struct diag_list diags = {};
	FILE *sink;
	int r;

	r = config_load_buffer("fuzz.yaml", (const char *)data, size, NULL, &config, &diags);
	if (r == 0) {
		/* The dumps walk the whole model, so they catch dangling pointers in it too. */
		sink = fopen("/dev/null", "w");
		if (sink) {
			config_print_show(config, sink);
			for (size_t i = 0; i < config->n_listeners; i++) {
				const struct listener *l = config->listeners[i];
				(void)config_print_route(config, l->address, l->port,
				                         "a.example.com", sink);
				(void)config_print_route(config, l->address, l->port, NULL, sink);
			}
			fclose(sink);
		}
		config_unref(config);
	} else if (config)
		__builtin_trap(); /* a failed load must not hand out a model */
	for (size_t i = 0; i < diags.n; i++) {
		if (!diags.items[i].message)
			__builtin_trap();
		/* diags are escaped where they are made (lib/textesc.h): no control byte from
		 * the input may reach a terminal or the journal through one */
		for (const unsigned char *p = (const unsigned char *)diags.items[i].message; *p;
		     p++)
			if (*p < 0x20 || *p == 0x7f ||
			    (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f))
				__builtin_trap();
	}
	diag_list_free(&diags);
	return 0;
}
