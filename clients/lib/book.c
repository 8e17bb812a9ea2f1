/* SPDX-License-Identifier: Apache-2.0 */
/* A local order book kept from a snapshot and sequenced updates. */
#include <stdlib.h>
#include <string.h>

#include "gridex/gridex.h"

struct side {
	struct gridex_level *l; /* best first */
	size_t n, cap;
};

struct gridex_book {
	char product[GRIDEX_PRODUCT_MAX + 1];
	struct side side[2]; /* 0 bids, 1 asks */
	uint64_t sequence;
	bool ready;
};

int gridex_book_new(const char *product, gridex_book **out)
{
	if (product == NULL || strlen(product) > GRIDEX_PRODUCT_MAX)
		return GRIDEX_ERR_ARGS;
	gridex_book *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return GRIDEX_ERR_NOMEM;
	memcpy(b->product, product, strlen(product) + 1);
	*out = b;
	return GRIDEX_OK;
}

void gridex_book_free(gridex_book *b)
{
	if (b == NULL)
		return;
	free(b->side[0].l);
	free(b->side[1].l);
	free(b);
}

static int reserve(struct side *s, size_t n)
{
	if (n <= s->cap)
		return GRIDEX_OK;
	size_t cap = s->cap ? s->cap : 16;
	while (cap < n)
		cap *= 2;
	struct gridex_level *l = realloc(s->l, cap * sizeof(*l));
	if (l == NULL)
		return GRIDEX_ERR_NOMEM;
	s->l = l;
	s->cap = cap;
	return GRIDEX_OK;
}

static int set_side(struct side *s, const struct gridex_level *l, size_t n)
{
	if (reserve(s, n))
		return GRIDEX_ERR_NOMEM;
	if (n > 0)
		memcpy(s->l, l, n * sizeof(*l));
	s->n = n;
	return GRIDEX_OK;
}

/* Sets the level at price (bids descending, asks ascending); quantity 0 removes it. */
static int set_level(struct side *s, bool bids, const struct gridex_level *v)
{
	size_t i = 0;
	while (i < s->n && (bids ? s->l[i].price > v->price : s->l[i].price < v->price))
		i++;
	bool exists = i < s->n && s->l[i].price == v->price;
	if (v->quantity == 0) {
		if (exists) {
			memmove(&s->l[i], &s->l[i + 1], (s->n - i - 1) * sizeof(*s->l));
			s->n--;
		}
		return GRIDEX_OK;
	}
	if (!exists) {
		if (reserve(s, s->n + 1))
			return GRIDEX_ERR_NOMEM;
		memmove(&s->l[i + 1], &s->l[i], (s->n - i) * sizeof(*s->l));
		s->n++;
	}
	s->l[i] = *v;
	return GRIDEX_OK;
}

/* Levels best first, distinct prices, positive quantities: what a server must send. */
static bool side_ok(const struct gridex_level *l, size_t n, bool bids)
{
	for (size_t i = 0; i < n; i++) {
		if (l[i].price < 1 || l[i].quantity < 1)
			return false;
		if (i > 0 && (bids ? l[i].price >= l[i - 1].price : l[i].price <= l[i - 1].price))
			return false;
	}
	return true;
}

int gridex_book_apply(gridex_book *b, const struct gridex_event *ev)
{
	if (ev == NULL || strcmp(ev->product, b->product) != 0)
		return GRIDEX_OK;
	if ((ev->kind == GRIDEX_EV_SNAPSHOT &&
	     (!side_ok(ev->bids, ev->n_bids, true) || !side_ok(ev->asks, ev->n_asks, false))) ||
	    (ev->kind == GRIDEX_EV_UPDATE && (ev->price < 1 || ev->quantity < 0))) {
		b->ready = false; /* a server that sends this cannot be followed */
		return GRIDEX_ERR_PROTOCOL;
	}
	if (ev->kind == GRIDEX_EV_SNAPSHOT) {
		if (set_side(&b->side[0], ev->bids, ev->n_bids) ||
		    set_side(&b->side[1], ev->asks, ev->n_asks)) {
			b->ready = false;
			return GRIDEX_ERR_NOMEM;
		}
		b->sequence = ev->sequence;
		b->ready = true;
		return GRIDEX_OK;
	}
	if (ev->kind != GRIDEX_EV_UPDATE)
		return GRIDEX_OK;
	/* Products created after a class subscription start at 1 without a snapshot. */
	if (!b->ready && b->sequence == 0 && ev->sequence == 1)
		b->ready = true;
	if (!b->ready || ev->sequence != b->sequence + 1) {
		b->ready = false;
		return GRIDEX_ERR_GAP;
	}
	struct gridex_level v = {
		.price = ev->price, .quantity = ev->quantity, .orders = ev->orders};
	bool bids = ev->side == GRIDEX_BUY;
	if (set_level(&b->side[bids ? 0 : 1], bids, &v)) {
		b->ready = false;
		return GRIDEX_ERR_NOMEM;
	}
	b->sequence = ev->sequence;
	return GRIDEX_OK;
}

size_t gridex_book_levels(const gridex_book *b, enum gridex_side side, struct gridex_level *out,
			  size_t max)
{
	const struct side *s = &b->side[side == GRIDEX_BUY ? 0 : 1];
	size_t n = s->n < max ? s->n : max;
	if (n > 0)
		memcpy(out, s->l, n * sizeof(*out));
	return n;
}

uint64_t gridex_book_sequence(const gridex_book *b)
{
	return b->sequence;
}

bool gridex_book_ready(const gridex_book *b)
{
	return b->ready;
}
