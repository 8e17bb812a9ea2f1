/* SPDX-License-Identifier: Apache-2.0 */
#include "srv_market.h"

#include <stdlib.h>
#include <string.h>

#include "matching.h"
#include "srv_tindex.h"

__extension__ typedef unsigned __int128 u128;

struct level {
	int64_t price, qty;
	uint32_t orders;
};

struct side {
	struct level *l; /* best first */
	uint32_t n, cap;
};

struct product {
	char name[MATCHING_PRODUCT_NAME_MAX + 1];
	char cls[MATCHING_CLASS_NAME_MAX + 1];
	int64_t delivery_ms, gate_ms; /* MATCHING_NO_PERIOD, MATCHING_NO_GATE when none */
	bool live, halted, traded;    /* live: not retired (a free slot) */
	struct side bids, asks;
	int64_t last_price, volume;
	uint64_t last_trade; /* its newest trade's number (NO_TRADE: none) */
	uint32_t next_free;
};

#define NO_TRADE UINT64_MAX

/* A trade keeps its product's name: the product may be retired while its trades stay.
 * Trades are numbered in arrival order (n_trades); each links to its product's trade
 * before it, so that a product's answers read only its own trades. A link to a number
 * that has left the ring ends the list: overwriting a slot unlinks nothing. A retired
 * product's list goes with it (its trades are answered by class only; a product is
 * retired once its delivery hour has passed, and is never listed again). */
struct trade {
	char product[MATCHING_PRODUCT_NAME_MAX + 1];
	uint8_t aggressor;
	uint64_t sequence;
	int64_t price, qty, time_ms;
	uint64_t prev; /* its product's trade before it, or NO_TRADE */
};

struct srv_market {
	struct srv_market_config cfg;
	struct product *p;
	uint32_t n;		 /* slots used so far; retired ones are on the free list */
	uint32_t free_head;	 /* UINT32_MAX: none */
	struct srv_tindex index; /* product name -> its number */
	struct trade *ring;
	uint64_t n_trades; /* ever; the ring holds the last trades_kept */
};

static const char *product_name(const void *ctx, uint32_t i)
{
	const struct srv_market *m = ctx;
	return m->p[i].name;
}

int srv_market_create(const struct srv_market_config *cfg, struct srv_market **out)
{
	if (cfg->products_max < 1 || cfg->products_max > (1u << 20) || cfg->levels_max < 1 ||
	    cfg->levels_max > 100000 || cfg->trades_kept < 1 || cfg->trades_kept > (1u << 26) ||
	    cfg->gate_lead_ms < 0)
		return -1;
	struct srv_market *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return -1;
	m->cfg = *cfg;
	m->free_head = UINT32_MAX;
	m->p = calloc(cfg->products_max, sizeof(*m->p));
	m->ring = calloc(cfg->trades_kept, sizeof(*m->ring));
	if (!m->p || !srv_tindex_init(&m->index, cfg->products_max, product_name, m) || !m->ring) {
		srv_market_destroy(m);
		return -1;
	}
	*out = m;
	return 0;
}

void srv_market_destroy(struct srv_market *m)
{
	if (m == NULL)
		return;
	for (uint32_t i = 0; m->p && i < m->n; i++) { /* retired slots hold NULL */
		free(m->p[i].bids.l);
		free(m->p[i].asks.l);
	}
	free(m->p);
	srv_tindex_free(&m->index);
	free(m->ring);
	free(m);
}

/* The product's number, or UINT32_MAX; adds it when add (and there is room). */
static uint32_t product_of(struct srv_market *m, const char *name, bool add)
{
	uint32_t known = srv_tindex_get(&m->index, name);
	if (known != UINT32_MAX)
		return known;
	struct matching_product mp;
	if (!add || (m->free_head == UINT32_MAX && m->n == m->cfg.products_max) ||
	    matching_product_parse(name, strlen(name), m->cfg.gate_lead_ms, &mp) != MATCHING_OK)
		return UINT32_MAX;
	uint32_t i = m->free_head;
	if (i != UINT32_MAX)
		m->free_head = m->p[i].next_free;
	else
		i = m->n++;
	struct product *p = &m->p[i];
	memset(p, 0, sizeof(*p));
	p->live = true;
	memcpy(p->name, mp.name, sizeof(p->name));
	memcpy(p->cls, mp.class_name, sizeof(p->cls));
	p->last_trade = NO_TRADE;
	p->delivery_ms = mp.period_start_ms;
	p->gate_ms = mp.gate_ms;
	srv_tindex_put(&m->index, i);
	return i;
}

void srv_market_retire(struct srv_market *m, const char *product)
{
	uint32_t i = srv_tindex_get(&m->index, product);
	if (i == UINT32_MAX)
		return; /* never seen here: it had no levels, trades or halt */
	struct product *p = &m->p[i];
	srv_tindex_del(&m->index, product);
	free(p->bids.l);
	free(p->asks.l);
	*p = (struct product){.next_free = m->free_head};
	m->free_head = (uint32_t)(p - m->p);
}

static uint32_t find(const struct srv_market *m, const char *name)
{
	return product_of((struct srv_market *)m, name, false);
}

static bool better(uint8_t side, int64_t a, int64_t b)
{
	return side == SRV_MARKET_SIDE_BUY ? a > b : a < b;
}

void srv_market_level(struct srv_market *m, const char *product, uint8_t side, int64_t price,
		      int64_t qty, uint32_t orders)
{
	uint32_t i = product_of(m, product, true);
	if (i == UINT32_MAX || (side != SRV_MARKET_SIDE_BUY && side != SRV_MARKET_SIDE_SELL))
		return;
	struct side *s = side == SRV_MARKET_SIDE_BUY ? &m->p[i].bids : &m->p[i].asks;
	uint32_t lo = 0, hi = s->n; /* the first level not better than price */
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (better(side, s->l[mid].price, price))
			lo = mid + 1;
		else
			hi = mid;
	}
	bool here = lo < s->n && s->l[lo].price == price;
	if (qty <= 0) {
		if (here) {
			memmove(&s->l[lo], &s->l[lo + 1], (s->n - lo - 1) * sizeof(*s->l));
			s->n--;
		}
		return;
	}
	if (here) {
		s->l[lo].qty = qty;
		s->l[lo].orders = orders;
		return;
	}
	if (lo >= m->cfg.levels_max)
		return; /* deeper than kept */
	if (s->n == s->cap) {
		uint32_t cap = s->cap ? 2 * s->cap : 16;
		if (cap > m->cfg.levels_max + 1)
			cap = m->cfg.levels_max + 1;
		struct level *l = realloc(s->l, cap * sizeof(*l));
		if (l == NULL)
			return; /* the copy misses a level; the next update of it restores it */
		s->l = l;
		s->cap = cap;
	}
	memmove(&s->l[lo + 1], &s->l[lo], (s->n - lo) * sizeof(*s->l));
	s->l[lo] = (struct level){.price = price, .qty = qty, .orders = orders};
	s->n++;
	if (s->n > m->cfg.levels_max)
		s->n = m->cfg.levels_max; /* the worst level drops out */
}

void srv_market_trade(struct srv_market *m, const char *product, uint64_t sequence, int64_t price,
		      int64_t qty, uint8_t aggressor, int64_t time_ms)
{
	uint32_t i = product_of(m, product, true);
	if (i == UINT32_MAX)
		return;
	struct product *p = &m->p[i];
	p->last_price = price;
	p->traded = true;
	if (__builtin_add_overflow(p->volume, qty, &p->volume))
		p->volume = INT64_MAX; /* GPUs traded since the start: saturates, never wraps */
	struct trade *t = &m->ring[m->n_trades % m->cfg.trades_kept];
	*t = (struct trade){.aggressor = aggressor,
			    .sequence = sequence,
			    .price = price,
			    .qty = qty,
			    .time_ms = time_ms,
			    .prev = p->last_trade};
	memcpy(t->product, p->name, sizeof(t->product));
	p->last_trade = m->n_trades++;
}

void srv_market_halt(struct srv_market *m, const char *product, bool halted)
{
	uint32_t i = product_of(m, product, true);
	if (i != UINT32_MAX)
		m->p[i].halted = halted;
}

/* ---------- answers ---------- */

/* A price or time, or null when there is none. */
static json_t *int_or_null(bool has, int64_t v)
{
	return has ? json_integer(v) : json_null();
}

json_t *srv_market_products(const struct srv_market *m, int64_t now_ms)
{
	json_t *list = json_array();
	for (uint32_t i = 0; list && i < m->n; i++) {
		const struct product *p = &m->p[i];
		if (!p->live)
			continue;
		const char *state = p->halted		   ? "halted"
				    : now_ms >= p->gate_ms ? "gate_closed"
							   : "open";
		json_array_append_new(
			list,
			json_pack("{s:s, s:s, s:o, s:o, s:s, s:o, s:o, s:o, s:I}", "product",
				  p->name, "accelerator", p->cls, "delivery_start_ms",
				  int_or_null(p->delivery_ms != MATCHING_NO_PERIOD, p->delivery_ms),
				  "gate_ms",
				  int_or_null(p->gate_ms != MATCHING_NO_GATE, p->gate_ms), "state",
				  state, "best_bid",
				  int_or_null(p->bids.n > 0, p->bids.n ? p->bids.l[0].price : 0),
				  "best_ask",
				  int_or_null(p->asks.n > 0, p->asks.n ? p->asks.l[0].price : 0),
				  "last_price", int_or_null(p->traded, p->last_price), "volume",
				  (json_int_t)p->volume));
	}
	return json_pack("{s:o, s:I}", "products", list ? list : json_null(), "time_ms",
			 (json_int_t)now_ms);
}

static json_t *levels(const struct side *s, uint32_t depth)
{
	json_t *a = json_array();
	for (uint32_t i = 0; a && i < s->n && i < depth; i++)
		json_array_append_new(a, json_pack("{s:I, s:I, s:i}", "price",
						   (json_int_t)s->l[i].price, "quantity",
						   (json_int_t)s->l[i].qty, "orders",
						   (int)s->l[i].orders));
	return a;
}

json_t *srv_market_book(const struct srv_market *m, const char *product, uint32_t depth,
			const char **why, bool *not_found)
{
	*not_found = false;
	if (depth < 1 || depth > m->cfg.levels_max) {
		*why = "depth must be 1 .. snapshot_levels_max";
		return NULL;
	}
	uint32_t i = find(m, product);
	if (i == UINT32_MAX) {
		*why = "no such product: it has no book (no order was ever placed for it)";
		*not_found = true;
		return NULL;
	}
	const struct product *p = &m->p[i];
	return json_pack("{s:s, s:o, s:o}", "product", p->name, "bids", levels(&p->bids, depth),
			 "asks", levels(&p->asks, depth));
}

/* Whether trade t is of class cls. */
static bool of_class(const struct trade *t, const char *cls)
{
	size_t len = strlen(cls);
	return strncmp(t->product, cls, len) == 0 &&
	       (t->product[len] == '/' || t->product[len] == '\0');
}

/* Trade number k if it is still kept, else NULL. */
static const struct trade *kept_trade(const struct srv_market *m, uint64_t k)
{
	uint64_t kept = m->n_trades < m->cfg.trades_kept ? m->n_trades : m->cfg.trades_kept;
	if (k == NO_TRADE || k >= m->n_trades || k < m->n_trades - kept)
		return NULL;
	return &m->ring[k % m->cfg.trades_kept];
}

/* The trades of an answer, newest first: one product's (its list), or a class's (the
 * ring, read for those of the class). */
struct walk {
	const struct srv_market *m;
	const char *cls; /* NULL: the product's list */
	uint64_t next;	 /* the number of the next trade to look at */
};

static struct walk walk_of(const struct srv_market *m, uint32_t prod, const char *cls)
{
	if (prod != UINT32_MAX)
		return (struct walk){.m = m, .next = m->p[prod].last_trade};
	return (struct walk){.m = m, .cls = cls, .next = m->n_trades - 1};
}

static const struct trade *walk_next(struct walk *w)
{
	const struct trade *t;
	while ((t = kept_trade(w->m, w->next)) != NULL) {
		w->next = w->cls ? w->next - 1 : t->prev;
		if (w->cls == NULL || of_class(t, w->cls))
			return t;
	}
	return NULL;
}

/* Which trades an answer is about: one product, or every product of a class. */
static bool scope(const struct srv_market *m, const char *product, const char *accelerator,
		  uint32_t *prod, const char **cls, const char **why, bool *not_found)
{
	*not_found = false;
	if ((product == NULL) == (accelerator == NULL)) {
		*why = "give product or accelerator, one of them";
		return false;
	}
	*prod = UINT32_MAX;
	*cls = accelerator;
	if (product) {
		*prod = find(m, product);
		if (*prod == UINT32_MAX) {
			*why = "no such product: it has no book (no order was ever placed for it)";
			*not_found = true;
			return false;
		}
		return true;
	}
	for (uint32_t i = 0; i < m->n; i++)
		if (m->p[i].live && strcmp(m->p[i].cls, accelerator) == 0)
			return true;
	/* Or trades kept of its products, all of them retired since. */
	struct walk w = walk_of(m, UINT32_MAX, accelerator);
	if (walk_next(&w) != NULL)
		return true;
	*why = "no such accelerator class: none of its products has a book or a trade kept";
	*not_found = true;
	return false;
}

json_t *srv_market_trades(const struct srv_market *m, const char *product, const char *accelerator,
			  uint32_t limit, const char **why, bool *not_found)
{
	uint32_t prod;
	const char *cls;
	if (limit < 1 || limit > SRV_MARKET_ROWS_MAX) {
		*not_found = false;
		*why = "limit must be 1 .. 1000";
		return NULL;
	}
	if (!scope(m, product, accelerator, &prod, &cls, why, not_found))
		return NULL;
	json_t *a = json_array();
	struct walk w = walk_of(m, prod, cls);
	const struct trade *t;
	while (a && json_array_size(a) < limit && (t = walk_next(&w)) != NULL)
		json_array_append_new(
			a,
			json_pack("{s:s, s:o, s:I, s:I, s:s, s:I}", "product", t->product,
				  "sequence", int_or_null(t->sequence > 0, (json_int_t)t->sequence),
				  "price", (json_int_t)t->price, "quantity", (json_int_t)t->qty,
				  "aggressor",
				  t->aggressor == SRV_MARKET_SIDE_SELL ? "sell" : "buy", "time_ms",
				  (json_int_t)t->time_ms));
	return json_pack("{s:o}", "trades", a ? a : json_null());
}

struct candle {
	int64_t start, open, high, low, close, volume;
	u128 notional;
};

json_t *srv_market_candles(const struct srv_market *m, const char *product, const char *accelerator,
			   int64_t interval_ms, uint32_t limit, const char **why, bool *not_found)
{
	uint32_t prod;
	const char *cls;
	*not_found = false;
	if (interval_ms < SRV_MARKET_INTERVAL_MS_MIN || interval_ms > SRV_MARKET_INTERVAL_MS_MAX) {
		*why = "interval_ms must be 1000 .. 86400000";
		return NULL;
	}
	if (limit < 1 || limit > SRV_MARKET_ROWS_MAX) {
		*why = "limit must be 1 .. 1000";
		return NULL;
	}
	if (!scope(m, product, accelerator, &prod, &cls, why, not_found))
		return NULL;
	struct candle *c = calloc(limit, sizeof(*c));
	if (c == NULL)
		return NULL;
	/* Newest first, until a trade would begin candle limit + 1: the answer's cost is its
	 * trades'. (Journaled times never go back, so a trade's interval is never later than
	 * that of the trade after it.) */
	size_t n = 0; /* candles made, newest first */
	struct walk w = walk_of(m, prod, cls);
	const struct trade *t;
	while ((t = walk_next(&w)) != NULL) {
		int64_t start =
			t->time_ms - ((t->time_ms % interval_ms) + interval_ms) % interval_ms;
		struct candle *cur = n ? &c[n - 1] : NULL;
		if (cur == NULL || start < cur->start) {
			if (n == limit)
				break;
			cur = &c[n++];
			*cur = (struct candle){.start = start,
					       .high = t->price,
					       .low = t->price,
					       .close = t->price};
		}
		cur->open = t->price; /* the oldest so far */
		if (t->price > cur->high)
			cur->high = t->price;
		if (t->price < cur->low)
			cur->low = t->price;
		if (__builtin_add_overflow(cur->volume, t->qty, &cur->volume))
			cur->volume = INT64_MAX;
		cur->notional += (u128)t->price * (u128)t->qty;
	}
	json_t *a = json_array();
	for (size_t k = n; a && k-- > 0;) {
		const struct candle *x = &c[k];
		json_array_append_new(
			a,
			json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "start_ms",
				  (json_int_t)x->start, "open", (json_int_t)x->open, "high",
				  (json_int_t)x->high, "low", (json_int_t)x->low, "close",
				  (json_int_t)x->close, "volume", (json_int_t)x->volume, "vwap",
				  (json_int_t)(x->volume > 0 ? x->notional / (u128)x->volume : 0)));
	}
	free(c);
	return json_pack("{s:I, s:o}", "interval_ms", (json_int_t)interval_ms, "candles",
			 a ? a : json_null());
}
