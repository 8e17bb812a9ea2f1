/* SPDX-License-Identifier: Apache-2.0 */
#include "srv_bucket.h"

#include <stdio.h>
#include <stdlib.h>

bool srv_buckets_init(struct srv_buckets *t, uint32_t max, int64_t per_second, int64_t burst)
{
	*t = (struct srv_buckets){.max = max, .rate = per_second, .cap = burst * 1000};
	return srv_map_init(&t->m, max) && (t->b = calloc(max, sizeof(*t->b))) != NULL;
}

void srv_buckets_free(struct srv_buckets *t)
{
	free(t->m.e);
	free(t->b);
	t->m.e = NULL;
	t->b = NULL;
}

void srv_buckets_refill(const struct srv_buckets *t, struct srv_bucket *b, int64_t now_ms)
{
	int64_t refill = (now_ms - b->at_ms) * t->rate;
	b->milli = refill >= t->cap - b->milli ? t->cap : b->milli + refill;
	b->at_ms = now_ms;
}

struct srv_bucket *srv_buckets_get(struct srv_buckets *t, const char *key, bool create,
				   int64_t now_ms)
{
	uint32_t *i = srv_map_get(&t->m, key);
	if (i == NULL) {
		if (!create || (i = srv_map_put(&t->m, key, t->n)) == NULL)
			return NULL; /* max keys counted already */
		struct srv_bucket *b = &t->b[t->n++];
		*b = (struct srv_bucket){.milli = t->cap, .at_ms = now_ms, .mark_ms = now_ms};
		snprintf(b->key, sizeof(b->key), "%s", key);
	}
	struct srv_bucket *b = &t->b[*i];
	srv_buckets_refill(t, b, now_ms);
	return b;
}

void srv_buckets_forget(struct srv_buckets *t, uint32_t i)
{
	struct srv_bucket *b = &t->b[i];
	srv_map_del(&t->m, b->key);
	if (i != --t->n) {
		*b = t->b[t->n];
		srv_map_put(&t->m, b->key, i); /* its entry, there already */
	}
}

uint32_t srv_buckets_forget_full(struct srv_buckets *t, int64_t now_ms)
{
	for (uint32_t i = 0; i < t->n;) {
		srv_buckets_refill(t, &t->b[i], now_ms);
		if (t->b[i].milli < t->cap)
			i++;
		else
			srv_buckets_forget(t, i);
	}
	return t->n;
}
