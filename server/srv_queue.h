/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A bounded queue of fixed-size items between gridexd's threads (any number
 * of producers and consumers). Items are copied in and out; batches move
 * under one lock. A closed queue refuses pushes and, once empty, wakes its
 * consumers with nothing: that is how the pipeline drains at shutdown.
 *
 * The room for cap items is reserved, not used: the ring starts at
 * SRV_QUEUE_RING_FIRST items and doubles only when a push finds it full, so a
 * queue sized for bursts touches (and faults in) only what its deepest
 * backlog needed, even when it never empties.
 */
#ifndef GRIDEX_SRV_QUEUE_H
#define GRIDEX_SRV_QUEUE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SRV_QUEUE_RING_FIRST 64

struct srv_queue {
	pthread_mutex_t lock;
	pthread_cond_t not_empty, not_full;
	uint8_t *items; /* room for cap items, mapped; only the first ring used */
	size_t item_bytes, cap, ring, head, count; /* count items from head, modulo ring */
	size_t high_water;			   /* most items ever held, for metrics */
	bool closed;
};

/* Errors: -1 (bad arguments or out of memory). */
__attribute__((warn_unused_result)) int srv_queue_init(struct srv_queue *q, size_t item_bytes,
						       size_t cap);
void srv_queue_destroy(struct srv_queue *q);

/*
 * Copies n items in. block: waits while the queue is full; otherwise copies
 * what fits. Returns the number copied (less than n only when not blocking,
 * or when the queue is closed). *was_empty (may be NULL) tells whether the
 * queue was empty when items went in, at the start or after waiting for room
 * (a consumer that pops until empty may have emptied it meanwhile): only then
 * does a sleeping consumer need waking by other means (an event of its loop).
 */
size_t srv_queue_push(struct srv_queue *q, const void *items, size_t n, bool block,
		      bool *was_empty);

/*
 * Copies n items in, waiting for room, for a consumer that pops until the queue is
 * empty and then sleeps until woken: calls wake(arg) whenever items went into an
 * empty queue, before waiting for room again. (A push that waits for room while the
 * wake it owes is still to come would wait for ever: so the items go in chunks of at
 * most cap, each of which waits at most until the queue is empty.)
 */
void srv_queue_push_woken(struct srv_queue *q, const void *items, size_t n, void (*wake)(void *arg),
			  void *arg);

/*
 * Copies up to max items out, waiting up to timeout_ms (-1: forever, 0: not
 * at all) for the first. Returns the number copied; 0 on timeout, or when the
 * queue is closed and empty.
 */
size_t srv_queue_pop(struct srv_queue *q, void *items, size_t max, int timeout_ms);

void srv_queue_close(struct srv_queue *q);
size_t srv_queue_depth(struct srv_queue *q);
bool srv_queue_drained(struct srv_queue *q); /* closed and empty */

#endif
