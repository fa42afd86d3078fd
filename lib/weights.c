/* weights.c — where a weight is chosen: the smooth weighted round-robin that splits a
 * group's connections among its mappings. See weights.h.
 *
 * It must never keep state of its own (the shared table keeps it, under its lock), nor
 * allocate: it runs once per connection. */
#include "weights.h"

#include <errno.h>

int weights_pick(const struct mapping_group *g, int32_t *current, const bool *eligible) {
	int32_t total = 0;
	int best = -1;

	if (!g || !current)
		return -EINVAL;

	/* nginx's smooth weighted round-robin: over any run of sum-of-weights picks each
	 * mapping is chosen exactly its weight times, and picks are interleaved rather than
	 * bunched. Ties go to the earliest mapping so the sequence is deterministic. */
	for (size_t i = 0; i < g->n_mappings; i++) {
		int32_t w = (int32_t)g->mappings[i]->effective_weight;

		if (w <= 0 || (eligible && !eligible[i]))
			continue;
		current[i] += w;
		total += w;
		if (best < 0 || current[i] > current[best])
			best = (int)i;
	}
	if (best < 0)
		return -ENOENT;
	current[best] -= total;
	return best;
}
