/* route.h — choosing a group by SNI. Pure: no sockets, no locks. Choosing a mapping of the
 * group by weight is weights.h's. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "model.h"

/* Most mappings one group may hold; config.c rejects more. */
#define ROUTE_MAX_GROUP_MAPPINGS 32

/* Does SNI `name` match `pattern` (exact, or "*.example.com" matching one or more labels
 * before ".example.com", as Envoy's server_names do)? Case-insensitive; a trailing dot on
 * `name` is ignored. */
bool route_host_matches(const char *pattern, const char *name);

/* The group a connection reaches: an exact host match, else the longest wildcard match,
 * else the listener's host-less catch-all. `sni` is NULL when the client sent none or
 * was not TLS (only the catch-all can take it). NULL when nothing matches. */
struct mapping_group *route_select_group(const struct listener *l, const char *sni);
