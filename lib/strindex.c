/* strindex.c — see strindex.h. */
#include "strindex.h"

#include "util.h"

static uint64_t hash(const char *s) {
	/* FNV-1a: keys are config strings, not attacker-chosen at lookup time */
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	return h;
}

static struct strindex_slot *find(const struct strindex *x, const char *key) {
	size_t mask = x->cap - 1;
	for (size_t i = hash(key) & mask;; i = (i + 1) & mask)
		if (!x->slots[i].key || streq(x->slots[i].key, key))
			return &x->slots[i];
}

static int grow(struct strindex *x) {
	size_t cap = x->cap ? x->cap * 2 : 16;
	struct strindex next = {.slots = calloc(cap, sizeof(struct strindex_slot)), .cap = cap};

	if (!next.slots)
		return -ENOMEM;
	for (size_t i = 0; i < x->cap; i++)
		if (x->slots[i].key) {
			*find(&next, x->slots[i].key) = x->slots[i];
			next.n++;
		}
	free(x->slots);
	*x = next;
	return 0;
}

int strindex_put(struct strindex *x, const char *key, void *value) {
	/* at most half full, so a probe ends soon */
	if ((x->n + 1) * 2 > x->cap) {
		int r = grow(x);
		if (r < 0)
			return r;
	}
	struct strindex_slot *s = find(x, key);
	if (s->key)
		return -EEXIST;
	*s = (struct strindex_slot){.key = key, .value = value};
	x->n++;
	return 0;
}

int strindex_set(struct strindex *x, const char *key, void *value) {
	if (x->cap > 0) {
		struct strindex_slot *s = find(x, key);
		if (s->key) {
			s->value = value;
			return 0;
		}
	}
	return strindex_put(x, key, value);
}

void *strindex_get(const struct strindex *x, const char *key) {
	if (x->cap == 0)
		return NULL;
	return find(x, key)->value;
}

void strindex_done(struct strindex *x) {
	x->slots = mfree(x->slots);
	x->cap = x->n = 0;
}
