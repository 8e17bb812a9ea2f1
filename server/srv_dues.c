/* SPDX-License-Identifier: Apache-2.0 */
#include "srv_dues.h"

#include <stdlib.h>

static bool before(const struct srv_due *a, const struct srv_due *b)
{
	return a->at < b->at || (a->at == b->at && a->key < b->key);
}

bool srv_dues_push(struct srv_dues *h, struct srv_due d)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? 2 * h->cap : 64;
		struct srv_due *e = realloc(h->e, cap * sizeof(*e));
		if (e == NULL)
			return false;
		h->e = e;
		h->cap = cap;
	}
	size_t i = h->n++;
	for (; i > 0 && before(&d, &h->e[(i - 1) / 2]); i = (i - 1) / 2)
		h->e[i] = h->e[(i - 1) / 2];
	h->e[i] = d;
	return true;
}

/* Moves e[i] down to its place below. */
static void sift(struct srv_dues *h, size_t i)
{
	struct srv_due d = h->e[i];
	for (size_t c = 2 * i + 1; c < h->n; i = c, c = 2 * i + 1) {
		if (c + 1 < h->n && before(&h->e[c + 1], &h->e[c]))
			c++;
		if (!before(&h->e[c], &d))
			break;
		h->e[i] = h->e[c];
	}
	h->e[i] = d;
}

struct srv_due srv_dues_pop(struct srv_dues *h)
{
	struct srv_due top = h->e[0];
	h->e[0] = h->e[--h->n];
	if (h->n > 0)
		sift(h, 0);
	return top;
}

void srv_dues_heapify(struct srv_dues *h)
{
	for (size_t i = h->n / 2; i-- > 0;)
		sift(h, i);
}

bool srv_dues_ordered(const struct srv_dues *h)
{
	for (size_t i = 1; i < h->n; i++)
		if (before(&h->e[i], &h->e[(i - 1) / 2]))
			return false;
	return true;
}

void srv_dues_free(struct srv_dues *h)
{
	free(h->e);
	*h = (struct srv_dues){0};
}
