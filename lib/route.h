/* route.h — choosing a group by SNI and a mapping by weight. Pure: no sockets, no locks.
 * The WRR state is passed in so the caller decides where it lives (the shared table). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "model.h"

/* Most mappings one group may hold; config.c rejects more. */
#define ROUTE_MAX_GROUP_MAPPINGS 32

/* Does SNI `name` match `pattern` (exact, or "*.example.com" matching exactly one more
 * label)? Case-insensitive; a trailing dot on `name` is ignored. */
bool route_host_matches(const char *pattern, const char *name);

/* The group a connection reaches: an exact host match, else the longest wildcard match,
 * else the listener's host-less catch-all. `sni` is NULL when the client sent none or
 * was not TLS (only the catch-all can take it). NULL when nothing matches. */
struct mapping_group *route_select_group(const struct listener *l, const char *sni);

/* Smooth weighted round-robin (nginx's algorithm) over the group's effective weights.
 * `current` has one slot per mapping (g->n_mappings), zero-initialised by the caller the
 * first time and kept between calls. `eligible` (may be NULL = all) excludes mappings,
 * e.g. whose breaker is open. Returns the chosen index, or -ENOENT when no eligible
 * mapping has a weight above 0. The split over any sum-of-weights consecutive picks is exact. */
int route_wrr_pick(const struct mapping_group *g, int32_t *current, const bool *eligible);
