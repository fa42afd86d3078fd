/* weights.h — which mapping of a group the next connection goes to, by weight.
 *
 * Pure: no sockets, no locks, no state of its own. The caller keeps the state between
 * picks; tcpmapd keeps it in the shared breaker table (breaker_table_pick), so the split is
 * exact across every process, and `tcpmapctl route` keeps a fresh one to show the first
 * pick. The weights themselves are the group's effective weights, normalised by the loader
 * to total 100. */
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
