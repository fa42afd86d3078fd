/* weights.c — where a weight is chosen: the shares a group's written weights come to, and
 * the smooth weighted round-robin that splits its connections by them. See weights.h.
 *
 * It must never keep state of its own (the shared table keeps it, under its lock), nor
 * allocate: weights_pick runs once per connection. It never reports: the loader does. */
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

/* The fractional part of a mapping's scaled share, in 1/total units; 0 once it has been
 * handed its extra point, so no mapping gets two. */
static unsigned scaled_remainder(const struct mapping *m, unsigned total) {
	unsigned floor = (unsigned)m->weight * 100 / total;
	return m->effective_weight > floor ? 0 : (unsigned)m->weight * 100 % total;
}

enum weights_outcome weights_normalise(struct mapping_group *g, unsigned *ret_total) {
	unsigned total = 0, n_unweighted = 0;

	for (size_t i = 0; i < g->n_mappings; i++) {
		if (g->mappings[i]->weight < 0)
			n_unweighted++;
		else
			total += (unsigned)g->mappings[i]->weight;
	}
	if (ret_total)
		*ret_total = total;

	if (g->n_mappings == 1) {
		/* The doc's weight is a share of the group; alone, a mapping takes it all. */
		g->mappings[0]->effective_weight = 100;
		return WEIGHTS_ALONE;
	}
	if (total > 100)
		return WEIGHTS_OVER_100;
	if (n_unweighted > 0) {
		unsigned remainder = 100 - total, share = remainder / n_unweighted,
		         extra = remainder % n_unweighted;
		for (size_t i = 0; i < g->n_mappings; i++) {
			struct mapping *m = g->mappings[i];
			if (m->weight >= 0) {
				m->effective_weight = (unsigned)m->weight;
				continue;
			}
			/* The first unweighted mappings take the rounding so the sum is exactly
			 * 100. */
			m->effective_weight = share + (extra > 0 ? 1 : 0);
			if (extra > 0)
				extra--;
		}
		return WEIGHTS_SHARED_REST;
	}
	if (total == 0) {
		for (size_t i = 0; i < g->n_mappings; i++)
			g->mappings[i]->effective_weight = 0;
		return WEIGHTS_ALL_ZERO;
	}
	if (total < 100) {
		/* Largest remainder: floor each share, then hand the missing points to the largest
		 * fractional parts (earlier mappings first on ties), so the total is exactly 100.
		 */
		unsigned assigned = 0;
		for (size_t i = 0; i < g->n_mappings; i++) {
			struct mapping *m = g->mappings[i];
			m->effective_weight = (unsigned)m->weight * 100 / total;
			assigned += m->effective_weight;
		}
		while (assigned < 100) {
			size_t best = 0;
			for (size_t i = 1; i < g->n_mappings; i++)
				if (scaled_remainder(g->mappings[i], total) >
				    scaled_remainder(g->mappings[best], total))
					best = i;
			g->mappings[best]->effective_weight++;
			assigned++;
		}
		return WEIGHTS_SCALED_UP;
	}
	for (size_t i = 0; i < g->n_mappings; i++)
		g->mappings[i]->effective_weight = (unsigned)g->mappings[i]->weight;
	return WEIGHTS_AS_WRITTEN;
}
