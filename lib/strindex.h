/* strindex.h — a string-keyed index for building and querying the model: open addressing
 * over a power-of-two table, so looking up a group key, a listener or a port costs the same
 * with 10 mappings or 50 000.
 *
 * It stores pointers only: keys and values belong to the caller and must outlive the index.
 * No deletion (the model is built once and then only read). Not thread-safe for writes;
 * concurrent lookups of a finished index are fine. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct strindex_slot {
	const char *key; /* NULL: empty */
	void *value;
};

struct strindex {
	struct strindex_slot *slots;
	size_t cap; /* a power of two, or 0 */
	size_t n;
};

/* Insert key -> value. Returns 0, -EEXIST when the key is there already (nothing changed),
 * or -ENOMEM. */
int strindex_put(struct strindex *x, const char *key, void *value);
/* Insert key -> value, or replace the value of a key that is there. 0 or -ENOMEM. */
int strindex_set(struct strindex *x, const char *key, void *value);
/* The value for key, or NULL. */
void *strindex_get(const struct strindex *x, const char *key);
void strindex_done(struct strindex *x);
