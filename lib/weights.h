/* weights.h — a group's weights: what each mapping's written weight comes to (its share of
 * 100), and which mapping the next connection goes to by those shares.
 *
 * Pure: no sockets, no locks, no state of its own. The caller keeps the state between
 * picks; tcpmapd keeps it in the shared breaker table (breaker_table_pick), so the split is
 * exact across every process, and `tcpmapctl route` keeps a fresh one to show the first
 * pick. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "model.h"

/* Smooth weighted round-robin (nginx's algorithm) over the group's effective weights.
 * `current` has one slot per mapping (g->n_mappings), zero-initialised by the caller the
 * first time and kept between calls. `eligible` (may be NULL = all) excludes mappings,
 * e.g. whose breaker is open. Returns the chosen index, -ENOENT when no eligible mapping
 * has a weight above 0 (`current` is then left alone), or -EINVAL. The split over any
 * sum-of-weights consecutive picks is exact. */
int weights_pick(const struct mapping_group *g, int32_t *current, const bool *eligible);

/* What weights_normalise found, for the loader to report. */
enum weights_outcome {
	WEIGHTS_ALONE,       /* one mapping: it takes 100 whatever it says */
	WEIGHTS_AS_WRITTEN,  /* the written weights total 100 */
	WEIGHTS_SHARED_REST, /* mappings without a weight share what the others leave; one
	                      * whose share comes to 0 gets no traffic */
	WEIGHTS_SCALED_UP,   /* they total under 100: scaled up, largest remainder first */
	WEIGHTS_ALL_ZERO,    /* they total 0: the group gets no traffic */
	WEIGHTS_OVER_100,    /* an error: effective weights are left as they were */
};

/* Set each mapping's effective_weight from its written weight (-1 = none written) so that
 * the group's total is exactly 100 (or 0 when every weight is 0). The sum of the written
 * weights goes to *ret_total when it is not NULL. Rounding favours earlier mappings. */
enum weights_outcome weights_normalise(struct mapping_group *g, unsigned *ret_total);
