/* route.c — which group an SNI reaches on a listener. Which mapping of that group the next
 * connection goes to is weights.c's answer.
 *
 * Pure functions over the immutable model: no sockets, no locks, no allocation; this file
 * must never keep state of its own. */
#include "route.h"

#include <string.h>
#include <strings.h>

bool route_host_matches(const char *pattern, const char *name) {
	size_t name_len, pattern_len;

	if (!pattern || !name)
		return false;

	/* "example.com." is the same DNS name as "example.com". */
	name_len = strlen(name);
	if (name_len > 0 && name[name_len - 1] == '.')
		name_len--;
	if (name_len == 0)
		return false;

	if (pattern[0] == '*' && pattern[1] == '.') {
		const char *suffix = pattern + 1; /* ".example.com" */
		size_t suffix_len = strlen(suffix);

		if (name_len <= suffix_len)
			return false;
		/* Envoy's server_names (a filter chain's SNI match, which Emissary's TCPMapping
		 * host becomes) let "*.example.com" stand for any non-empty prefix, so it takes
		 * "a.example.com" and "a.b.example.com" alike; the most specific wildcard is
		 * chosen by the caller (longest suffix first). This is not RFC 6125's
		 * one-label rule for certificate names, and need not be: it picks a route. */
		return strncasecmp(name + name_len - suffix_len, suffix, suffix_len) == 0;
	}

	pattern_len = strlen(pattern);
	if (pattern_len > 0 && pattern[pattern_len - 1] == '.')
		pattern_len--;
	return pattern_len == name_len && strncasecmp(pattern, name, name_len) == 0;
}

struct mapping_group *route_select_group(const struct listener *l, const char *sni) {
	if (!l)
		return NULL;
	if (!sni || !*sni)
		return l->catch_all;

	/* Exact hosts beat wildcards whatever their order in the file. */
	for (size_t i = 0; i < l->n_groups; i++) {
		struct mapping_group *g = l->groups[i];
		if (g->host && !g->host_is_wildcard && route_host_matches(g->host, sni))
			return g;
	}
	/* config.c sorts wildcards longest first, so the first match is the most specific. */
	for (size_t i = 0; i < l->n_groups; i++) {
		struct mapping_group *g = l->groups[i];
		if (g->host && g->host_is_wildcard && route_host_matches(g->host, sni))
			return g;
	}
	return l->catch_all;
}
