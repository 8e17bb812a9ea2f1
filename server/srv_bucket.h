/* SPDX-License-Identifier: Apache-2.0 */
/* Token buckets by text key (an address, an address and account) for the I/O
 * thread's per-address limits: thousandths of a unit, refilled at a rate a second
 * up to a burst, for at most a number of keys fixed at start. */
#ifndef GRIDEX_SRV_BUCKET_H
#define GRIDEX_SRV_BUCKET_H

#include <stdbool.h>
#include <stdint.h>

#include "srv_map.h"

struct srv_bucket {
	int64_t milli;	 /* what is left, in thousandths */
	int64_t at_ms;	 /* when it was last refilled */
	int64_t mark_ms; /* the owner's time of the key (made: when it was made); moves with it */
	char key[SRV_MAP_KEY_BYTES];
};

/* The buckets in use are b[0..n), so a sweep reads those and nothing else. */
struct srv_buckets {
	struct srv_map m; /* key -> its bucket's index in b */
	struct srv_bucket *b;
	uint32_t n, max;
	int64_t rate, cap; /* per second; the burst, in thousandths */
};

/* Room for max keys at per_second with burst; false when out of memory (then, or once
 * done with it, srv_buckets_free). */
bool srv_buckets_init(struct srv_buckets *t, uint32_t max, int64_t per_second, int64_t burst);
void srv_buckets_free(struct srv_buckets *t);
/* b refilled for the time since its last refill, up to the burst. */
void srv_buckets_refill(const struct srv_buckets *t, struct srv_bucket *b, int64_t now_ms);
/* key's bucket, refilled to now; made (full) when create and there is room; else NULL. */
struct srv_bucket *srv_buckets_get(struct srv_buckets *t, const char *key, bool create,
				   int64_t now_ms);
/* Forgets bucket i: the last takes its place (a sweep looks at i again). */
void srv_buckets_forget(struct srv_buckets *t, uint32_t i);
/* Forgets every key whose bucket is full again; how many are left. */
uint32_t srv_buckets_forget_full(struct srv_buckets *t, int64_t now_ms);

#endif
