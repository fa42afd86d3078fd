/* deadlines.h — a min-heap of connection deadlines, so a worker needs one timer source in
 * its event loop instead of one per connection (sd-event's timer queues grow with the peak
 * number of timers and never shrink; this heap gives its memory back).
 *
 * Pure data structure: no clock, no event loop. Each item records its own heap position so
 * that moving or removing it costs O(log n). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define DEADLINE_NONE UINT64_MAX

struct deadline_item {
	uint64_t when;   /* DEADLINE_NONE when not in the heap */
	size_t position; /* index in the heap, valid while `when` != DEADLINE_NONE */
};

struct deadline_heap {
	struct deadline_item **items;
	size_t n, allocated;
};

/* Put `it` in the heap at `when`, or move it there if it already is. DEADLINE_NONE removes
 * it. Returns 0 or -ENOMEM (then `it` is not in the heap). */
int deadline_set(struct deadline_heap *h, struct deadline_item *it, uint64_t when);
static inline void deadline_remove(struct deadline_heap *h, struct deadline_item *it) {
	(void)deadline_set(h, it, DEADLINE_NONE);
}
/* The earliest item, or NULL. */
static inline struct deadline_item *deadline_peek(const struct deadline_heap *h) {
	return h->n > 0 ? h->items[0] : NULL;
}
void deadline_heap_free(struct deadline_heap *h);
