/* deadlines.c — see deadlines.h. Must keep every item's `position` true after each move. */
#include "deadlines.h"

#include <errno.h>
#include <stdlib.h>

static void place(struct deadline_heap *h, size_t i, struct deadline_item *it) {
	h->items[i] = it;
	it->position = i;
}

static void sift_up(struct deadline_heap *h, size_t i) {
	struct deadline_item *it = h->items[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (h->items[parent]->when <= it->when)
			break;
		place(h, i, h->items[parent]);
		i = parent;
	}
	place(h, i, it);
}

static void sift_down(struct deadline_heap *h, size_t i) {
	struct deadline_item *it = h->items[i];
	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= h->n)
			break;
		if (child + 1 < h->n && h->items[child + 1]->when < h->items[child]->when)
			child++;
		if (it->when <= h->items[child]->when)
			break;
		place(h, i, h->items[child]);
		i = child;
	}
	place(h, i, it);
}

/* Shrink when three quarters are unused: a load peak must not pin its memory. */
static void maybe_shrink(struct deadline_heap *h) {
	if (h->allocated > 64 && h->n < h->allocated / 4) {
		size_t want = h->allocated / 2;
		struct deadline_item **p = realloc(h->items, want * sizeof *p);
		if (p) {
			h->items = p;
			h->allocated = want;
		}
	}
}

static void remove_at(struct deadline_heap *h, struct deadline_item *it) {
	size_t i = it->position;
	struct deadline_item *last = h->items[--h->n];

	it->when = DEADLINE_NONE;
	if (i < h->n) {
		place(h, i, last);
		if (i > 0 && h->items[(i - 1) / 2]->when > last->when)
			sift_up(h, i);
		else
			sift_down(h, i);
	}
	maybe_shrink(h);
}

int deadline_set(struct deadline_heap *h, struct deadline_item *it, uint64_t when) {
	if (it->when != DEADLINE_NONE) {
		if (when == DEADLINE_NONE) {
			remove_at(h, it);
			return 0;
		}
		uint64_t old = it->when;
		it->when = when;
		if (when < old)
			sift_up(h, it->position);
		else
			sift_down(h, it->position);
		return 0;
	}
	if (when == DEADLINE_NONE)
		return 0;
	if (h->n == h->allocated) {
		size_t want = h->allocated ? h->allocated * 2 : 64;
		struct deadline_item **p = realloc(h->items, want * sizeof *p);
		if (!p)
			return -ENOMEM;
		h->items = p;
		h->allocated = want;
	}
	it->when = when;
	place(h, h->n, it);
	h->n++;
	sift_up(h, h->n - 1);
	return 0;
}

void deadline_heap_free(struct deadline_heap *h) {
	free(h->items);
	*h = (struct deadline_heap){0};
}
