/* fuzz-handover.c — hand-over records and FDNAMEs come from systemd's store, written by
 * another binary: parse anything without crashing, and round-trip what parses. */
#include <stdint.h>
#include <string.h>

#include "handover.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
	struct handover_record r;
	char name[300], id[32], again[64];
	enum handover_fd_kind kind;

	if (size >= sizeof r) {
		memcpy(&r, data, sizeof r);
		(void)handover_record_validate(&r);
	}
	size_t n = size < sizeof name - 1 ? size : sizeof name - 1;
	memcpy(name, data, n);
	name[n] = '\0';
	if (handover_parse_fd_name(name, id, sizeof id, &kind) == 0) {
		if (handover_fd_name(id, kind, again, sizeof again) != 0 ||
		    strcmp(again, name) != 0)
			__builtin_trap();
	}
	(void)handover_is_state_name(name);
	return 0;
}
