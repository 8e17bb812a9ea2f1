/* SPDX-License-Identifier: Apache-2.0 */
#include "srv_queue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srv_region.h"

int srv_queue_init(struct srv_queue *q, size_t item_bytes, size_t cap)
{
	memset(q, 0, sizeof(*q));
	q->items = srv_region_alloc(cap, item_bytes); /* NULL for 0 or an overflow too */
	if (q->items == NULL)
		return -1;
	q->item_bytes = item_bytes;
	q->cap = cap;
	q->ring = cap < SRV_QUEUE_RING_FIRST ? cap : SRV_QUEUE_RING_FIRST;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->not_empty, &ca);
	pthread_cond_init(&q->not_full, &ca);
	pthread_condattr_destroy(&ca);
	return 0;
}

void srv_queue_destroy(struct srv_queue *q)
{
	if (q->items == NULL)
		return;
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->not_empty);
	pthread_cond_destroy(&q->not_full);
	srv_region_free(q->items, q->cap, q->item_bytes);
	q->items = NULL;
}

/*
 * A full ring doubles (at most to cap). Its items run from head to the old end
 * and on from slot 0: the first part moves to the new end, so that they run
 * from the new head through the end and on from slot 0 again.
 */
static void ring_grow(struct srv_queue *q)
{
	size_t ring = q->cap - q->ring < q->ring ? q->cap : 2 * q->ring;
	if (q->head > 0) {
		size_t tail = q->ring - q->head, at = ring - tail;
		memmove(q->items + at * q->item_bytes, q->items + q->head * q->item_bytes,
			tail * q->item_bytes);
		q->head = at;
	}
	q->ring = ring;
}

/* Copies n items between the ring (from slot `at`) and flat memory. */
static void ring_copy(struct srv_queue *q, size_t at, void *flat, size_t n, bool in)
{
	size_t first = q->ring - at < n ? q->ring - at : n;
	uint8_t *slot = q->items + at * q->item_bytes;
	uint8_t *mem = flat;
	if (in) {
		memcpy(slot, mem, first * q->item_bytes);
		memcpy(q->items, mem + first * q->item_bytes, (n - first) * q->item_bytes);
	} else {
		memcpy(mem, slot, first * q->item_bytes);
		memcpy(mem + first * q->item_bytes, q->items, (n - first) * q->item_bytes);
	}
}

size_t srv_queue_push(struct srv_queue *q, const void *items, size_t n, bool block, bool *was_empty)
{
	const uint8_t *src = items;
	size_t done = 0;
	pthread_mutex_lock(&q->lock);
	if (was_empty)
		*was_empty = false;
	while (done < n && !q->closed) {
		if (q->count == q->ring && q->ring < q->cap)
			ring_grow(q);
		if (q->count == q->ring) {
			if (!block)
				break;
			pthread_cond_wait(&q->not_full, &q->lock);
			continue;
		}
		/* Empty when items go in, at the start or after waiting for room: a consumer
		 * that emptied it may sleep now. */
		if (was_empty && q->count == 0)
			*was_empty = true;
		size_t room = q->ring - q->count, k = n - done < room ? n - done : room;
		ring_copy(q, (q->head + q->count) % q->ring, (void *)(src + done * q->item_bytes),
			  k, true);
		q->count += k;
		done += k;
		if (q->count > q->high_water)
			q->high_water = q->count;
		pthread_cond_broadcast(&q->not_empty);
	}
	pthread_mutex_unlock(&q->lock);
	return done;
}

void srv_queue_push_woken(struct srv_queue *q, const void *items, size_t n, void (*wake)(void *arg),
			  void *arg)
{
	const uint8_t *src = items;
	for (size_t done = 0; done < n;) {
		size_t k = n - done < q->cap ? n - done : q->cap;
		bool was_empty = false;
		size_t in = srv_queue_push(q, src + done * q->item_bytes, k, true, &was_empty);
		if (was_empty)
			wake(arg);
		if (in < k)
			return; /* closed */
		done += k;
	}
}

size_t srv_queue_pop(struct srv_queue *q, void *items, size_t max, int timeout_ms)
{
	struct timespec until;
	if (timeout_ms > 0) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += timeout_ms / 1000;
		until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
	}
	pthread_mutex_lock(&q->lock);
	while (q->count == 0 && !q->closed && timeout_ms != 0) {
		if (timeout_ms < 0)
			pthread_cond_wait(&q->not_empty, &q->lock);
		else if (pthread_cond_timedwait(&q->not_empty, &q->lock, &until) == ETIMEDOUT)
			break;
	}
	size_t k = q->count < max ? q->count : max;
	if (k > 0) {
		ring_copy(q, q->head, items, k, false);
		q->count -= k;
		/* An emptied ring starts again at its first slot: a queue that keeps up
		 * touches only its first few pages (hot in cache), instead of walking
		 * all of its ring. */
		q->head = q->count == 0 ? 0 : (q->head + k) % q->ring;
		pthread_cond_broadcast(&q->not_full);
	}
	pthread_mutex_unlock(&q->lock);
	return k;
}

void srv_queue_close(struct srv_queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->closed = true;
	pthread_cond_broadcast(&q->not_empty);
	pthread_cond_broadcast(&q->not_full);
	pthread_mutex_unlock(&q->lock);
}

size_t srv_queue_depth(struct srv_queue *q)
{
	pthread_mutex_lock(&q->lock);
	size_t n = q->count;
	pthread_mutex_unlock(&q->lock);
	return n;
}

bool srv_queue_drained(struct srv_queue *q)
{
	pthread_mutex_lock(&q->lock);
	bool d = q->closed && q->count == 0;
	pthread_mutex_unlock(&q->lock);
	return d;
}
