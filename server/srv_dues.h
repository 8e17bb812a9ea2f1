/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A min-heap of due times, shared by the lease book's clock and the hook
 * dispatcher's status calls: entries by time, equal times by key. What an
 * entry names is its owner's (a pointer or a slot); an entry that no longer
 * applies is the owner's to skip when it comes out, or to remove in place
 * before srv_dues_heapify().
 */
#ifndef GRIDEX_SRV_DUES_H
#define GRIDEX_SRV_DUES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct srv_due {
	int64_t at;
	uint64_t key; /* the order of equal times */
	union {
		void *ptr;
		uint32_t slot;
	} of;
};

struct srv_dues {
	struct srv_due *e; /* e[0] is the first due, when n > 0 */
	size_t n, cap;
};

/* Adds d; false when out of memory (h unchanged). */
bool srv_dues_push(struct srv_dues *h, struct srv_due d);
/* Takes the first due (h not empty). */
struct srv_due srv_dues_pop(struct srv_dues *h);
/* Makes e[0..n) a heap again, after the owner removed or changed entries in place. */
void srv_dues_heapify(struct srv_dues *h);
/* Whether e[0..n) is a heap (for checks). */
bool srv_dues_ordered(const struct srv_dues *h);
void srv_dues_free(struct srv_dues *h);

#endif
