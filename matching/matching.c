/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Matching engine internals.
 *
 * Layout: one pool of orders and one pool of price levels shared by every
 * book, both with intrusive free lists; an open-addressing index from order
 * id to order slot; per book side a window of MATCHING_WINDOW_TICKS slots
 * indexed by price tick around the best price with a two-level bitmap, and a
 * treap for the levels outside the window. Invariant: every level in the tree
 * is worse than every tick the window covers, and the tree is empty when the
 * window is, so the best level is always found from the bitmap alone.
 */
#include "matching.h"

#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NIL UINT32_MAX
#define WIN MATCHING_WINDOW_TICKS

struct mo {
	uint64_t id;
	int64_t price;
	int64_t qty; /* open quantity */
	int64_t expire_ms;
	uint32_t prev, next; /* FIFO within the level; next links the free list */
	uint32_t level;
	uint32_t account;
	uint32_t book;
	uint32_t heap_pos; /* position in the expiry heap, NIL when not GTD */
	uint8_t side, tif, stp, live;
};
_Static_assert(sizeof(struct mo) == 64, "an order is one cache line");

struct ml {
	int64_t price;
	int64_t tick;	     /* price / product tick */
	int64_t qty;	     /* sum of open quantities */
	uint32_t head, tail; /* head links the free list */
	uint32_t count;
	uint32_t left, right, prio; /* tree links and treap priority */
	uint8_t side, in_win;
};

struct mside {
	int64_t base; /* tick of window slot 0 */
	uint32_t nwin, ntree, root;
	uint64_t summary; /* bit w set when bits[w] != 0 */
	uint64_t bits[MATCHING_WINDOW_WORDS];
	uint32_t slot[WIN];
};

struct mbook {
	struct matching_product p;
	uint64_t tick_magic; /* UINT64_MAX / tick: division by multiplication */
	bool closed;
	bool retired; /* the number is free for the next book (see matching_book_retire) */
	uint32_t norders;
	struct mside side[2];
};

struct matching_engine {
	struct matching_config cfg;
	size_t events_max;
	int64_t now;
	int64_t next_gate; /* earliest gate of an open book */
	uint64_t next_fill;

	/*
	 * Pools: the free list holds slots given back; slots from *_fresh on
	 * were never used, and their zeroed pages stay unmapped until needed.
	 */
	struct mo *orders;
	uint32_t order_free, order_fresh, norders;
	struct ml *levels;
	uint32_t level_free, level_fresh, nlevels;

	uint32_t *index; /* order slots by hash of id, NIL = empty */
	uint32_t index_mask;
	uint32_t index_shift; /* 64 - log2(index capacity) */

	struct mbook *books;
	uint32_t nbooks;   /* numbers handed out: 0 .. nbooks-1, the last one live */
	uint32_t nretired; /* retired numbers below nbooks */
	uint64_t *retired; /* bit b: number b is retired */
	uint32_t *names;   /* book numbers by hash of name, NIL = empty */
	uint32_t names_mask;
	uint32_t *closing; /* scratch: books to close in one advance */

	uint32_t *heap; /* GTD orders, min by (expire_ms, id) */
	uint32_t heap_n;

	uint32_t scratch[WIN]; /* levels moved by a window recentre */
};

/* ---------- small helpers ---------- */

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static uint32_t pow2_at_least(uint64_t n)
{
	uint64_t p = 1;
	while (p < n)
		p <<= 1;
	assert(p <= (1ULL << 31));
	return (uint32_t)p;
}

/* Whether book is the number of a product now (neither new nor retired). */
static bool book_live(const struct matching_engine *e, uint32_t book)
{
	return book < e->nbooks && !e->books[book].retired;
}

static bool is_bid(int side)
{
	return side == MATCHING_BUY;
}

/* Whether a maker at maker_price trades with a taker of side limited at limit. */
static bool crosses(int taker_side, int64_t limit, int64_t maker_price)
{
	return is_bid(taker_side) ? maker_price <= limit : maker_price >= limit;
}

/* The next event slot; batches are sized so that it always exists. */
static struct matching_event *emit(struct matching_batch *out)
{
	assert(out->n < out->cap);
	return &out->events[out->n++];
}

static void emit_simple(struct matching_batch *out, uint8_t type, uint8_t reason,
			const struct mo *o, int64_t qty)
{
	*emit(out) = (struct matching_event){
		.type = type,
		.reason = reason,
		.side = o->side,
		.book = o->book,
		.order_id = o->id,
		.account = o->account,
		.price = o->price,
		.qty = qty,
	};
}

/*
 * price / tick and price % tick without a division instruction (~30 cycles):
 * q = price * floor((2^64-1)/tick) / 2^64 is at most 2 below the quotient for
 * price < 2^63, and the remainder fixes it.
 */
static int64_t tick_index(const struct mbook *b, int64_t price, int64_t *rem)
{
	__extension__ typedef unsigned __int128 u128;
	uint64_t p = (uint64_t)price, t = (uint64_t)b->p.tick;
	assert(price >= 1);
	uint64_t q = (uint64_t)(((u128)p * b->tick_magic) >> 64);
	uint64_t r = p - q * t;
	for (int i = 0; i < 2 && r >= t; i++) {
		q++;
		r -= t;
	}
	assert(r < t);
	*rem = (int64_t)r;
	return (int64_t)q;
}

/* ---------- window bitmap ---------- */

static void win_put(struct mside *s, struct ml *l, uint32_t li)
{
	int64_t off = l->tick - s->base;
	assert(off >= 0 && off < WIN);
	uint32_t i = (uint32_t)off;
	assert(s->slot[i] == NIL);
	s->slot[i] = li;
	s->bits[i >> 6] |= 1ULL << (i & 63);
	s->summary |= 1ULL << (i >> 6);
	s->nwin++;
	l->in_win = 1;
}

static void win_del(struct mside *s, struct ml *l)
{
	uint32_t i = (uint32_t)(l->tick - s->base);
	assert(i < WIN && s->nwin > 0);
	s->slot[i] = NIL;
	s->bits[i >> 6] &= ~(1ULL << (i & 63));
	if (s->bits[i >> 6] == 0)
		s->summary &= ~(1ULL << (i >> 6));
	s->nwin--;
	l->in_win = 0;
}

/* Highest (bid) or lowest (ask) occupied slot, NIL when empty. */
static uint32_t win_best(const struct mside *s, bool bid)
{
	if (s->summary == 0)
		return NIL;
	if (bid) {
		uint32_t w = 63 - (uint32_t)__builtin_clzll(s->summary);
		return w * 64 + 63 - (uint32_t)__builtin_clzll(s->bits[w]);
	}
	uint32_t w = (uint32_t)__builtin_ctzll(s->summary);
	return w * 64 + (uint32_t)__builtin_ctzll(s->bits[w]);
}

/* Next occupied slot worse than slot i: below it for bids, above for asks. */
static uint32_t win_next(const struct mside *s, uint32_t i, bool bid)
{
	if (bid) {
		if (i == 0)
			return NIL;
		uint32_t j = i - 1, w = j >> 6;
		uint64_t m = s->bits[w] & (~0ULL >> (63 - (j & 63)));
		if (m)
			return w * 64 + 63 - (uint32_t)__builtin_clzll(m);
		uint64_t sm = s->summary & ((1ULL << w) - 1);
		if (!sm)
			return NIL;
		w = 63 - (uint32_t)__builtin_clzll(sm);
		return w * 64 + 63 - (uint32_t)__builtin_clzll(s->bits[w]);
	}
	uint32_t j = i + 1;
	if (j >= WIN)
		return NIL;
	uint32_t w = j >> 6;
	uint64_t m = s->bits[w] & (~0ULL << (j & 63));
	if (m)
		return w * 64 + (uint32_t)__builtin_ctzll(m);
	uint64_t sm = w < 63 ? s->summary & (~0ULL << (w + 1)) : 0;
	if (!sm)
		return NIL;
	w = (uint32_t)__builtin_ctzll(sm);
	return w * 64 + (uint32_t)__builtin_ctzll(s->bits[w]);
}

/* ---------- treap of levels outside the window, keyed by tick ---------- */

static uint32_t rot_right(struct ml *L, uint32_t x)
{
	uint32_t y = L[x].left;
	L[x].left = L[y].right;
	L[y].right = x;
	return y;
}

static uint32_t rot_left(struct ml *L, uint32_t x)
{
	uint32_t y = L[x].right;
	L[x].right = L[y].left;
	L[y].left = x;
	return y;
}

static uint32_t treap_insert(struct ml *L, uint32_t root, uint32_t n)
{
	if (root == NIL)
		return n;
	assert(L[n].tick != L[root].tick);
	if (L[n].tick < L[root].tick) {
		L[root].left = treap_insert(L, L[root].left, n);
		if (L[L[root].left].prio > L[root].prio)
			root = rot_right(L, root);
	} else {
		L[root].right = treap_insert(L, L[root].right, n);
		if (L[L[root].right].prio > L[root].prio)
			root = rot_left(L, root);
	}
	return root;
}

/* Joins two treaps where every key of a is below every key of b. */
static uint32_t treap_merge(struct ml *L, uint32_t a, uint32_t b)
{
	if (a == NIL)
		return b;
	if (b == NIL)
		return a;
	if (L[a].prio > L[b].prio) {
		L[a].right = treap_merge(L, L[a].right, b);
		return a;
	}
	L[b].left = treap_merge(L, a, L[b].left);
	return b;
}

static uint32_t treap_remove(struct ml *L, uint32_t root, int64_t tick)
{
	assert(root != NIL);
	if (tick < L[root].tick)
		L[root].left = treap_remove(L, L[root].left, tick);
	else if (tick > L[root].tick)
		L[root].right = treap_remove(L, L[root].right, tick);
	else
		root = treap_merge(L, L[root].left, L[root].right);
	return root;
}

static uint32_t treap_find(const struct ml *L, uint32_t n, int64_t tick)
{
	while (n != NIL && L[n].tick != tick)
		n = tick < L[n].tick ? L[n].left : L[n].right;
	return n;
}

/* Highest (max) or lowest key. */
static uint32_t treap_extreme(const struct ml *L, uint32_t n, bool max)
{
	if (n == NIL)
		return NIL;
	for (;;) {
		uint32_t c = max ? L[n].right : L[n].left;
		if (c == NIL)
			return n;
		n = c;
	}
}

/* Largest key below tick (below) or smallest key above it. */
static uint32_t treap_neighbour(const struct ml *L, uint32_t n, int64_t tick, bool below)
{
	uint32_t best = NIL;
	while (n != NIL) {
		if (below ? L[n].tick < tick : L[n].tick > tick) {
			best = n;
			n = below ? L[n].right : L[n].left;
		} else {
			n = below ? L[n].left : L[n].right;
		}
	}
	return best;
}

/* ---------- book sides ---------- */

static void tree_put(struct matching_engine *e, struct mside *s, uint32_t li)
{
	struct ml *l = &e->levels[li];
	/* Keyed by the configured seed, so that priorities cannot be chosen from outside. */
	l->prio = (uint32_t)(mix64(e->cfg.seed ^ (uint64_t)l->tick) >> 32);
	l->left = NIL;
	l->right = NIL;
	s->root = treap_insert(e->levels, s->root, li);
	s->ntree++;
}

static void tree_del(struct matching_engine *e, struct mside *s, uint32_t li)
{
	assert(s->ntree > 0);
	s->root = treap_remove(e->levels, s->root, e->levels[li].tick);
	s->ntree--;
}

/*
 * Moves the window to start at base. Every level it held either stays in it
 * or goes to the tree; callers move the window only towards better prices
 * (recentre) or into an empty window (refill), which keeps the tree worse.
 */
static void side_recentre(struct matching_engine *e, struct mside *s, int64_t base)
{
	uint32_t n = 0;
	for (uint32_t i = win_best(s, false); i != NIL; i = win_next(s, i, false))
		e->scratch[n++] = s->slot[i];
	for (uint32_t k = 0; k < n; k++)
		win_del(s, &e->levels[e->scratch[k]]);
	assert(s->nwin == 0 && s->summary == 0);
	s->base = base;
	for (uint32_t k = 0; k < n; k++) {
		struct ml *l = &e->levels[e->scratch[k]];
		int64_t off = l->tick - base;
		if (off >= 0 && off < WIN)
			win_put(s, l, e->scratch[k]);
		else
			tree_put(e, s, e->scratch[k]);
	}
}

static void side_link(struct matching_engine *e, struct mside *s, bool bid, uint32_t li)
{
	struct ml *l = &e->levels[li];
	if (s->nwin == 0) {
		assert(s->ntree == 0);
		s->base = l->tick - WIN / 2;
	}
	int64_t off = l->tick - s->base;
	if (off >= 0 && off < WIN) {
		win_put(s, l, li);
		return;
	}
	if (bid ? off < 0 : off >= WIN) {
		tree_put(e, s, li);
		return;
	}
	side_recentre(e, s, l->tick - WIN / 2);
	win_put(s, l, li);
}

static void side_unlink(struct matching_engine *e, struct mside *s, bool bid, uint32_t li)
{
	struct ml *l = &e->levels[li];
	if (!l->in_win) {
		tree_del(e, s, li);
		return;
	}
	win_del(s, l);
	if (s->nwin > 0 || s->ntree == 0)
		return;
	/* The window emptied: centre it on the best far level and pull in the rest. */
	s->base = e->levels[treap_extreme(e->levels, s->root, bid)].tick - WIN / 2;
	for (;;) {
		uint32_t t = treap_extreme(e->levels, s->root, bid);
		if (t == NIL)
			break;
		int64_t off = e->levels[t].tick - s->base;
		if (off < 0 || off >= WIN)
			break;
		tree_del(e, s, t);
		win_put(s, &e->levels[t], t);
	}
}

static uint32_t side_best(const struct mside *s, bool bid)
{
	uint32_t i = win_best(s, bid);
	return i == NIL ? NIL : s->slot[i];
}

/* The next worse level after level li, NIL at the end. */
static uint32_t side_next(const struct matching_engine *e, const struct mside *s, bool bid,
			  uint32_t li)
{
	const struct ml *l = &e->levels[li];
	if (!l->in_win)
		return treap_neighbour(e->levels, s->root, l->tick, bid);
	uint32_t j = win_next(s, (uint32_t)(l->tick - s->base), bid);
	if (j != NIL)
		return s->slot[j];
	return treap_extreme(e->levels, s->root, bid);
}

static uint32_t side_find(const struct matching_engine *e, const struct mside *s, int64_t tick)
{
	if (s->nwin == 0)
		return NIL;
	int64_t off = tick - s->base;
	if (off >= 0 && off < WIN)
		return s->slot[off];
	return treap_find(e->levels, s->root, tick);
}

/* ---------- order index ---------- */

/*
 * Fibonacci hashing: order ids are assigned by the server (sequence numbers),
 * which this spreads perfectly; hostile ids could only slow their own replay.
 */
static uint32_t index_home(const struct matching_engine *e, uint64_t id)
{
	return (uint32_t)((id * 0x9e3779b97f4a7c15ULL) >> e->index_shift);
}

static uint32_t index_find(const struct matching_engine *e, uint64_t id)
{
	for (uint32_t h = index_home(e, id);; h = (h + 1) & e->index_mask) {
		uint32_t oi = e->index[h];
		if (oi == NIL || e->orders[oi].id == id)
			return oi;
	}
}

static void index_add(struct matching_engine *e, uint32_t oi)
{
	uint32_t h = index_home(e, e->orders[oi].id);
	while (e->index[h] != NIL)
		h = (h + 1) & e->index_mask;
	e->index[h] = oi;
}

/* Linear-probing deletion by backward shift: no tombstones. */
static void index_del(struct matching_engine *e, uint64_t id)
{
	uint32_t i = index_home(e, id);
	while (e->orders[e->index[i]].id != id)
		i = (i + 1) & e->index_mask;
	for (uint32_t j = i;;) {
		j = (j + 1) & e->index_mask;
		if (e->index[j] == NIL)
			break;
		uint32_t k = index_home(e, e->orders[e->index[j]].id);
		bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
		if (!stays) {
			e->index[i] = e->index[j];
			i = j;
		}
	}
	e->index[i] = NIL;
}

/* ---------- expiry heap ---------- */

static bool heap_less(const struct matching_engine *e, uint32_t a, uint32_t b)
{
	const struct mo *x = &e->orders[a], *y = &e->orders[b];
	return x->expire_ms != y->expire_ms ? x->expire_ms < y->expire_ms : x->id < y->id;
}

static void heap_set(struct matching_engine *e, uint32_t pos, uint32_t oi)
{
	e->heap[pos] = oi;
	e->orders[oi].heap_pos = pos;
}

static void heap_up(struct matching_engine *e, uint32_t pos)
{
	uint32_t oi = e->heap[pos];
	while (pos > 0) {
		uint32_t parent = (pos - 1) / 2;
		if (!heap_less(e, oi, e->heap[parent]))
			break;
		heap_set(e, pos, e->heap[parent]);
		pos = parent;
	}
	heap_set(e, pos, oi);
}

static void heap_down(struct matching_engine *e, uint32_t pos)
{
	uint32_t oi = e->heap[pos];
	for (;;) {
		uint32_t c = 2 * pos + 1;
		if (c >= e->heap_n)
			break;
		if (c + 1 < e->heap_n && heap_less(e, e->heap[c + 1], e->heap[c]))
			c++;
		if (!heap_less(e, e->heap[c], oi))
			break;
		heap_set(e, pos, e->heap[c]);
		pos = c;
	}
	heap_set(e, pos, oi);
}

static void heap_push(struct matching_engine *e, uint32_t oi)
{
	assert(e->heap_n < e->cfg.orders_max);
	heap_set(e, e->heap_n++, oi);
	heap_up(e, e->heap_n - 1);
}

static void heap_remove(struct matching_engine *e, uint32_t oi)
{
	uint32_t pos = e->orders[oi].heap_pos;
	assert(pos < e->heap_n && e->heap[pos] == oi);
	e->orders[oi].heap_pos = NIL;
	uint32_t last = e->heap[--e->heap_n];
	if (pos == e->heap_n)
		return;
	heap_set(e, pos, last);
	heap_up(e, pos);
	heap_down(e, e->orders[last].heap_pos);
}

/* ---------- orders in levels ---------- */

static uint32_t level_alloc(struct matching_engine *e, struct mbook *b, int side, int64_t tick)
{
	uint32_t li = e->level_free;
	if (li != NIL) {
		e->level_free = e->levels[li].head;
	} else {
		assert(e->level_fresh < e->cfg.levels_max);
		li = e->level_fresh++;
	}
	struct ml *l = &e->levels[li];
	e->nlevels++;
	*l = (struct ml){
		.price = tick * b->p.tick,
		.tick = tick,
		.head = NIL,
		.tail = NIL,
		.left = NIL,
		.right = NIL,
		.side = (uint8_t)side,
	};
	side_link(e, &b->side[side], is_bid(side), li);
	return li;
}

/* Appends order oi (price, side, book, qty set; tick = price / tick size) to its level. */
static void order_rest(struct matching_engine *e, uint32_t oi, int64_t tick)
{
	struct mo *o = &e->orders[oi];
	struct mbook *b = &e->books[o->book];
	uint32_t li = side_find(e, &b->side[o->side], tick);
	if (li == NIL)
		li = level_alloc(e, b, o->side, tick);
	struct ml *l = &e->levels[li];
	o->level = li;
	o->prev = l->tail;
	o->next = NIL;
	if (l->tail != NIL)
		e->orders[l->tail].next = oi;
	else
		l->head = oi;
	l->tail = oi;
	l->count++;
	/* Bounded: qty_max * orders_max fits (checked in matching_create). */
	l->qty += o->qty;
	b->norders++;
	if (o->tif == MATCHING_GTD)
		heap_push(e, oi);
}

/* Takes order oi out of its level (freeing an emptied level) and the heap. */
static void order_unrest(struct matching_engine *e, uint32_t oi)
{
	struct mo *o = &e->orders[oi];
	struct mbook *b = &e->books[o->book];
	struct ml *l = &e->levels[o->level];
	if (o->prev != NIL)
		e->orders[o->prev].next = o->next;
	else
		l->head = o->next;
	if (o->next != NIL)
		e->orders[o->next].prev = o->prev;
	else
		l->tail = o->prev;
	l->count--;
	l->qty -= o->qty;
	b->norders--;
	if (l->count == 0) {
		assert(l->qty == 0 && l->head == NIL);
		side_unlink(e, &b->side[o->side], is_bid(o->side), o->level);
		l->head = e->level_free;
		e->level_free = o->level;
		e->nlevels--;
	}
	o->level = NIL;
	if (o->heap_pos != NIL)
		heap_remove(e, oi);
}

static void order_free(struct matching_engine *e, uint32_t oi)
{
	struct mo *o = &e->orders[oi];
	assert(o->live && o->level == NIL);
	index_del(e, o->id);
	o->live = 0;
	o->next = e->order_free;
	e->order_free = oi;
	e->norders--;
}

static void order_remove(struct matching_engine *e, uint32_t oi, uint8_t reason,
			 struct matching_batch *out)
{
	struct mo *o = &e->orders[oi];
	emit_simple(out, MATCHING_EV_REMOVED, reason, o, o->qty);
	order_unrest(e, oi);
	order_free(e, oi);
}

/* ---------- matching ---------- */

/* The incoming side of a trade: a new order, a basket leg or a modified order. */
struct taker {
	uint64_t id;
	uint32_t account;
	uint32_t book;
	uint8_t side, tif, stp;
	int64_t price;
	int64_t qty;  /* still open */
	int64_t tick; /* price / the product's tick size */
};

static uint8_t stp_of(const struct matching_engine *e, uint8_t stp)
{
	return stp == MATCHING_STP_DEFAULT ? e->cfg.stp_default : stp;
}

/*
 * Whether t could be filled completely right now: the walk the matching loop
 * would make, without side effects. Own resting orders stop the taker
 * (cancel-newest, cancel-both), are skipped (cancel-oldest: they would be
 * cancelled) or count (allow).
 */
static bool fok_feasible(const struct matching_engine *e, const struct taker *t)
{
	const struct mbook *b = &e->books[t->book];
	const struct mside *s = &b->side[1 - t->side];
	bool opp_bid = !is_bid(t->side);
	int64_t avail = 0;
	for (uint32_t li = side_best(s, opp_bid); li != NIL; li = side_next(e, s, opp_bid, li)) {
		const struct ml *l = &e->levels[li];
		if (!crosses(t->side, t->price, l->price))
			return false;
		for (uint32_t oi = l->head; oi != NIL; oi = e->orders[oi].next) {
			const struct mo *m = &e->orders[oi];
			if (m->account == t->account && t->stp != MATCHING_STP_ALLOW) {
				if (t->stp == MATCHING_STP_CANCEL_OLDEST)
					continue;
				return false;
			}
			avail += m->qty; /* <= t->qty + qty_max: no overflow */
			if (avail >= t->qty)
				return true;
		}
	}
	return false;
}

static bool would_cross(const struct matching_engine *e, uint32_t book, int side, int64_t price)
{
	const struct mside *s = &e->books[book].side[1 - side];
	uint32_t li = side_best(s, !is_bid(side));
	return li != NIL && crosses(side, price, e->levels[li].price);
}

/* Trades t against the opposite side. Returns false when self-trade prevention stopped it. */
static bool match(struct matching_engine *e, struct taker *t, struct matching_batch *out)
{
	struct mbook *b = &e->books[t->book];
	struct mside *s = &b->side[1 - t->side];
	bool opp_bid = !is_bid(t->side);
	while (t->qty > 0) {
		uint32_t li = side_best(s, opp_bid);
		if (li == NIL || !crosses(t->side, t->price, e->levels[li].price))
			return true;
		uint32_t oi = e->levels[li].head;
		struct mo *m = &e->orders[oi];
		if (m->account == t->account && t->stp != MATCHING_STP_ALLOW) {
			if (t->stp != MATCHING_STP_CANCEL_NEWEST)
				order_remove(e, oi, MATCHING_R_SELF_TRADE, out);
			if (t->stp != MATCHING_STP_CANCEL_OLDEST)
				return false;
			continue;
		}
		int64_t q = t->qty < m->qty ? t->qty : m->qty;
		t->qty -= q;
		m->qty -= q;
		e->levels[li].qty -= q;
		*emit(out) = (struct matching_event){
			.type = MATCHING_EV_FILL,
			.side = t->side,
			.book = t->book,
			.order_id = t->id,
			.account = t->account,
			.maker_account = m->account,
			.maker_id = m->id,
			.fill_id = e->next_fill++,
			.price = m->price,
			.qty = q,
			.taker_left = t->qty,
			.maker_left = m->qty,
		};
		if (m->qty == 0) {
			emit_simple(out, MATCHING_EV_DONE, MATCHING_R_NONE, m, 0);
			order_unrest(e, oi);
			order_free(e, oi);
		}
	}
	return true;
}

static void emit_taker(struct matching_batch *out, const struct taker *t, uint8_t type,
		       uint8_t reason, int64_t qty)
{
	*emit(out) = (struct matching_event){
		.type = type,
		.reason = reason,
		.side = t->side,
		.book = t->book,
		.order_id = t->id,
		.account = t->account,
		.price = t->price,
		.qty = qty,
	};
}

/* Takes a free order slot (the caller checked there is one) and indexes its id. */
static uint32_t order_new(struct matching_engine *e, uint64_t id, uint32_t account, uint32_t book,
			  uint8_t side, uint8_t tif, uint8_t stp)
{
	uint32_t oi = e->order_free;
	if (oi != NIL) {
		e->order_free = e->orders[oi].next;
	} else {
		assert(e->order_fresh < e->cfg.orders_max);
		oi = e->order_fresh++;
	}
	e->norders++;
	e->orders[oi] = (struct mo){
		.id = id,
		.account = account,
		.book = book,
		.side = side,
		.tif = tif,
		.stp = stp,
		.live = 1,
		.heap_pos = NIL,
		.level = NIL,
	};
	index_add(e, oi);
	return oi;
}

/*
 * Runs t through the book and ends it: DONE, REMOVED (self-trade, IOC, FOK
 * remainder) or RESTING. oi is the order's slot when it already has one
 * (modify), NIL for a new order; a resting-capable new order is given one.
 */
static void execute(struct matching_engine *e, struct taker *t, uint32_t oi, int64_t expire_ms,
		    struct matching_batch *out)
{
	bool stopped = !match(e, t, out);
	if (t->qty == 0 || stopped || t->tif == MATCHING_IOC) {
		if (t->qty == 0)
			emit_taker(out, t, MATCHING_EV_DONE, MATCHING_R_NONE, 0);
		else
			emit_taker(out, t, MATCHING_EV_REMOVED,
				   stopped ? MATCHING_R_SELF_TRADE : MATCHING_R_IOC_REMAINDER,
				   t->qty);
		if (oi != NIL)
			order_free(e, oi);
		return;
	}
	assert(t->tif != MATCHING_FOK); /* checked feasible before matching */
	if (oi == NIL)
		oi = order_new(e, t->id, t->account, t->book, t->side, t->tif, t->stp);
	struct mo *o = &e->orders[oi];
	o->price = t->price;
	o->qty = t->qty;
	o->expire_ms = t->tif == MATCHING_GTD ? expire_ms : 0;
	order_rest(e, oi, t->tick);
	emit_taker(out, t, MATCHING_EV_RESTING, MATCHING_R_NONE, t->qty);
}

/* ---------- validation ---------- */

/* Validates price and quantity; *tick gets price / tick size. */
static uint8_t check_price_qty(const struct matching_engine *e, const struct mbook *b,
			       int64_t price, int64_t qty, int64_t *tick)
{
	int64_t rem;
	if (price < 1 || price > e->cfg.price_max)
		return MATCHING_R_BAD_PRICE;
	*tick = tick_index(b, price, &rem);
	if (rem != 0)
		return MATCHING_R_BAD_PRICE;
	if (qty < 1 || qty > e->cfg.qty_max)
		return MATCHING_R_BAD_QTY;
	int64_t notional;
	if (__builtin_mul_overflow(price, qty, &notional))
		return MATCHING_R_OVERFLOW;
	return MATCHING_R_NONE;
}

static bool order_room(const struct matching_engine *e)
{
	return e->order_free != NIL || e->order_fresh < e->cfg.orders_max;
}

static bool level_room(const struct matching_engine *e)
{
	return e->level_free != NIL || e->level_fresh < e->cfg.levels_max;
}

static bool has_room(const struct matching_engine *e)
{
	return order_room(e) && level_room(e);
}

/* Reasons in the order they are checked; see docs/matching.md. */
static uint8_t check_order(const struct matching_engine *e, const struct matching_order *o,
			   int64_t *tick)
{
	if (!book_live(e, o->book))
		return MATCHING_R_UNKNOWN_PRODUCT;
	if (o->side > MATCHING_SELL || o->tif > MATCHING_POST || o->stp > MATCHING_STP_ALLOW)
		return MATCHING_R_BAD_ORDER;
	const struct mbook *b = &e->books[o->book];
	if (b->closed)
		return MATCHING_R_CLOSED;
	uint8_t r = check_price_qty(e, b, o->price, o->qty, tick);
	if (r)
		return r;
	if (o->tif == MATCHING_GTD && o->expire_ms <= e->now)
		return MATCHING_R_BAD_EXPIRY;
	if (index_find(e, o->order_id) != NIL)
		return MATCHING_R_DUPLICATE_ORDER;
	if (o->tif != MATCHING_IOC && o->tif != MATCHING_FOK && !has_room(e))
		return MATCHING_R_BOOK_FULL;
	if (o->tif == MATCHING_POST && would_cross(e, o->book, o->side, o->price))
		return MATCHING_R_WOULD_CROSS;
	return MATCHING_R_NONE;
}

static int check_batch(const struct matching_engine *e, struct matching_batch *out)
{
	if (out == NULL || out->events == NULL || out->cap < e->events_max)
		return MATCHING_ERR_EVENT_BUFFER;
	out->n = 0;
	return MATCHING_OK;
}

/* ---------- commands ---------- */

int matching_submit(struct matching_engine *e, const struct matching_order *o,
		    struct matching_batch *out)
{
	int rc = check_batch(e, out);
	if (rc)
		return rc;
	struct taker t = {
		.id = o->order_id,
		.account = o->account,
		.book = o->book,
		.side = o->side,
		.tif = o->tif,
		.stp = stp_of(e, o->stp),
		.price = o->price,
		.qty = o->qty,
	};
	uint8_t r = check_order(e, o, &t.tick);
	if (r) {
		emit_taker(out, &t, MATCHING_EV_REJECTED, r, o->qty);
		return MATCHING_OK;
	}
	if (t.tif == MATCHING_FOK && !fok_feasible(e, &t)) {
		emit_taker(out, &t, MATCHING_EV_REMOVED, MATCHING_R_FOK_KILLED, t.qty);
		return MATCHING_OK;
	}
	execute(e, &t, NIL, o->expire_ms, out);
	return MATCHING_OK;
}

int matching_cancel(struct matching_engine *e, uint64_t order_id, struct matching_batch *out)
{
	int rc = check_batch(e, out);
	if (rc)
		return rc;
	uint32_t oi = index_find(e, order_id);
	if (oi == NIL) {
		*emit(out) = (struct matching_event){
			.type = MATCHING_EV_REJECTED,
			.reason = MATCHING_R_UNKNOWN_ORDER,
			.order_id = order_id,
		};
		return MATCHING_OK;
	}
	order_remove(e, oi, MATCHING_R_CANCELLED, out);
	return MATCHING_OK;
}

static uint8_t check_modify(const struct matching_engine *e, const struct mo *o, int64_t price,
			    int64_t qty, int64_t *tick)
{
	const struct mbook *b = &e->books[o->book];
	uint8_t r = check_price_qty(e, b, price, qty, tick);
	if (r)
		return r;
	assert(!(price == o->price && qty <= o->qty)); /* handled by the caller */
	if (o->tif == MATCHING_POST && would_cross(e, o->book, o->side, price))
		return MATCHING_R_WOULD_CROSS;
	/* Re-entry may need a new level while the old one stays occupied. */
	if (!level_room(e) && e->levels[o->level].count > 1)
		return MATCHING_R_BOOK_FULL;
	return MATCHING_R_NONE;
}

int matching_modify(struct matching_engine *e, uint64_t order_id, int64_t price, int64_t qty,
		    struct matching_batch *out)
{
	int rc = check_batch(e, out);
	if (rc)
		return rc;
	uint32_t oi = index_find(e, order_id);
	if (oi == NIL) {
		*emit(out) = (struct matching_event){
			.type = MATCHING_EV_REJECTED,
			.reason = MATCHING_R_UNKNOWN_ORDER,
			.order_id = order_id,
			.price = price,
			.qty = qty,
		};
		return MATCHING_OK;
	}
	struct mo *o = &e->orders[oi];
	if (price == o->price && qty >= 1 && qty <= o->qty) {
		/* A reduction in place: already valid, cannot overflow, keeps priority. */
		e->levels[o->level].qty -= o->qty - qty;
		o->qty = qty;
		emit_simple(out, MATCHING_EV_RESTING, MATCHING_R_NONE, o, qty);
		return MATCHING_OK;
	}
	int64_t tick;
	uint8_t r = check_modify(e, o, price, qty, &tick);
	if (r) {
		*emit(out) = (struct matching_event){
			.type = MATCHING_EV_REJECTED,
			.reason = r,
			.side = o->side,
			.book = o->book,
			.order_id = o->id,
			.account = o->account,
			.price = price,
			.qty = qty,
		};
		return MATCHING_OK;
	}
	struct taker t = {
		.id = o->id,
		.account = o->account,
		.book = o->book,
		.side = o->side,
		.tif = o->tif,
		.stp = o->stp,
		.price = price,
		.qty = qty,
		.tick = tick,
	};
	order_unrest(e, oi);
	execute(e, &t, oi, o->expire_ms, out);
	return MATCHING_OK;
}

static uint8_t check_basket(const struct matching_engine *e, const struct matching_basket *bk)
{
	if (bk->n_legs < 1 || bk->n_legs > MATCHING_BASKET_LEGS_MAX)
		return MATCHING_R_BAD_BASKET;
	for (uint32_t i = 0; i < bk->n_legs; i++)
		if (!book_live(e, bk->books[i]))
			return MATCHING_R_UNKNOWN_PRODUCT;
	if (bk->side > MATCHING_SELL || bk->stp > MATCHING_STP_ALLOW)
		return MATCHING_R_BAD_ORDER;
	const struct matching_product *p0 = &e->books[bk->books[0]].p;
	if (p0->period_start_ms == MATCHING_NO_PERIOD)
		return MATCHING_R_BAD_BASKET;
	for (uint32_t i = 1; i < bk->n_legs; i++) {
		const struct matching_product *p = &e->books[bk->books[i]].p;
		int64_t expect;
		if (strcmp(p->class_name, p0->class_name) != 0 || p->period_ms != p0->period_ms ||
		    p->period_start_ms == MATCHING_NO_PERIOD ||
		    __builtin_mul_overflow((int64_t)i, p0->period_ms, &expect) ||
		    __builtin_add_overflow(expect, p0->period_start_ms, &expect) ||
		    p->period_start_ms != expect)
			return MATCHING_R_BAD_BASKET;
	}
	for (uint32_t i = 0; i < bk->n_legs; i++)
		if (e->books[bk->books[i]].closed)
			return MATCHING_R_CLOSED;
	int64_t total = 0, notional, tick;
	for (uint32_t i = 0; i < bk->n_legs; i++) {
		uint8_t r = check_price_qty(e, &e->books[bk->books[i]], bk->price, bk->qty, &tick);
		if (r)
			return r;
		if (__builtin_mul_overflow(bk->price, bk->qty, &notional) ||
		    __builtin_add_overflow(total, notional, &total))
			return MATCHING_R_OVERFLOW;
	}
	for (uint32_t i = 0; i < bk->n_legs; i++) {
		if (index_find(e, bk->order_ids[i]) != NIL)
			return MATCHING_R_DUPLICATE_ORDER;
		for (uint32_t j = 0; j < i; j++)
			if (bk->order_ids[j] == bk->order_ids[i])
				return MATCHING_R_DUPLICATE_ORDER;
	}
	return MATCHING_R_NONE;
}

int matching_submit_basket(struct matching_engine *e, const struct matching_basket *bk,
			   struct matching_batch *out)
{
	int rc = check_batch(e, out);
	if (rc)
		return rc;
	uint8_t r = check_basket(e, bk);
	uint32_t n = bk->n_legs <= MATCHING_BASKET_LEGS_MAX ? bk->n_legs : 0;
	struct taker legs[MATCHING_BASKET_LEGS_MAX];
	for (uint32_t i = 0; i < n; i++)
		legs[i] = (struct taker){
			.id = bk->order_ids[i],
			.account = bk->account,
			.book = bk->books[i], /* valid unless r says otherwise */
			.side = bk->side,
			.tif = MATCHING_FOK,
			.stp = stp_of(e, bk->stp),
			.price = bk->price,
			.qty = bk->qty,
		};
	int64_t rem;
	if (r == MATCHING_R_NONE)
		for (uint32_t i = 0; i < n; i++) {
			legs[i].tick = tick_index(&e->books[legs[i].book], legs[i].price, &rem);
			if (!fok_feasible(e, &legs[i])) {
				r = MATCHING_R_FOK_KILLED;
				break;
			}
		}
	if (r) {
		uint8_t type =
			r == MATCHING_R_FOK_KILLED ? MATCHING_EV_REMOVED : MATCHING_EV_REJECTED;
		for (uint32_t i = 0; i < n; i++)
			emit_taker(out, &legs[i], type, r, bk->qty);
		if (n == 0) {
			*emit(out) = (struct matching_event){
				.type = MATCHING_EV_REJECTED,
				.reason = MATCHING_R_BAD_BASKET,
				.account = bk->account,
			};
		}
		return MATCHING_OK;
	}
	for (uint32_t i = 0; i < n; i++)
		execute(e, &legs[i], NIL, 0, out);
	return MATCHING_OK;
}

/* ---------- clock ---------- */

static void book_close(struct matching_engine *e, struct mbook *b, struct matching_batch *out)
{
	for (int side = MATCHING_BUY; side <= MATCHING_SELL; side++) {
		struct mside *s = &b->side[side];
		for (uint32_t li = side_best(s, is_bid(side)); li != NIL;
		     li = side_best(s, is_bid(side)))
			order_remove(e, e->levels[li].head, MATCHING_R_GATE_CLOSED, out);
	}
	assert(b->norders == 0);
	b->closed = true;
}

/* Whether book a closes before book b: by gate time, then book number. */
static bool closes_before(const struct matching_engine *e, uint32_t a, uint32_t b)
{
	int64_t ga = e->books[a].p.gate_ms, gb = e->books[b].p.gate_ms;
	return ga != gb ? ga < gb : a < b;
}

static void recompute_next_gate(struct matching_engine *e)
{
	e->next_gate = MATCHING_NO_GATE;
	for (uint32_t i = 0; i < e->nbooks; i++)
		if (!e->books[i].closed && e->books[i].p.gate_ms < e->next_gate)
			e->next_gate = e->books[i].p.gate_ms;
}

int matching_advance(struct matching_engine *e, int64_t now_ms, struct matching_batch *out)
{
	int rc = check_batch(e, out);
	if (rc)
		return rc;
	if (now_ms < e->now)
		return MATCHING_ERR_CLOCK;
	e->now = now_ms;
	while (e->heap_n > 0 && e->orders[e->heap[0]].expire_ms <= now_ms)
		order_remove(e, e->heap[0], MATCHING_R_EXPIRED, out);
	if (e->next_gate > now_ms)
		return MATCHING_OK;
	uint32_t n = 0;
	for (uint32_t i = 0; i < e->nbooks; i++)
		if (!e->books[i].closed && e->books[i].p.gate_ms <= now_ms) {
			/* Insertion sort: books closing at one instant are few. */
			uint32_t k = n++;
			for (; k > 0 && closes_before(e, i, e->closing[k - 1]); k--)
				e->closing[k] = e->closing[k - 1];
			e->closing[k] = i;
		}
	for (uint32_t k = 0; k < n; k++)
		book_close(e, &e->books[e->closing[k]], out);
	recompute_next_gate(e);
	return MATCHING_OK;
}

/* ---------- products ---------- */

static uint32_t name_home(const struct matching_engine *e, const char *name, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)name[i]) * 0x100000001b3ULL;
	return (uint32_t)(mix64(h) & e->names_mask);
}

int matching_book_find(const struct matching_engine *e, const char *name, size_t len,
		       uint32_t *book_out)
{
	if (len > MATCHING_PRODUCT_NAME_MAX)
		return MATCHING_ERR_NOT_FOUND;
	for (uint32_t h = name_home(e, name, len);; h = (h + 1) & e->names_mask) {
		uint32_t bi = e->names[h];
		if (bi == NIL)
			return MATCHING_ERR_NOT_FOUND;
		const char *have = e->books[bi].p.name;
		if (strlen(have) == len && memcmp(have, name, len) == 0) {
			*book_out = bi;
			return MATCHING_OK;
		}
	}
}

static bool token_ok(const char *s, size_t max, bool is_class)
{
	size_t len = strnlen(s, max + 1);
	if (len == 0 || len > max)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		bool ok = is_class ? ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')
				   : (c > 0x20 && c < 0x7f && c != ',');
		if (!ok)
			return false;
	}
	return true;
}

static bool product_ok(const struct matching_engine *e, const struct matching_product *p)
{
	return token_ok(p->name, MATCHING_PRODUCT_NAME_MAX, false) &&
	       token_ok(p->class_name, MATCHING_CLASS_NAME_MAX, true) && p->tick >= 1 &&
	       p->tick <= e->cfg.price_max &&
	       (p->period_start_ms == MATCHING_NO_PERIOD || p->period_ms >= 1);
}

static void retired_mark(struct matching_engine *e, uint32_t bi, bool retired)
{
	e->books[bi].retired = retired;
	if (retired) {
		e->books[bi].closed = true;
		e->retired[bi / 64] |= 1ULL << (bi % 64);
		e->nretired++;
	} else {
		e->retired[bi / 64] &= ~(1ULL << (bi % 64));
		e->nretired--;
	}
}

/* Gives number bi (retired, or the next new one) to product p, checked by the caller. */
static void book_fill(struct matching_engine *e, uint32_t bi, const struct matching_product *p)
{
	if (bi >= e->nbooks) {
		while (e->nbooks < bi) /* numbers skipped (a restore) are retired */
			retired_mark(e, e->nbooks++, true);
		e->nbooks++;
	} else {
		retired_mark(e, bi, false);
	}
	struct mbook *b = &e->books[bi];
	b->p = *p;
	b->tick_magic = UINT64_MAX / (uint64_t)p->tick;
	b->closed = p->gate_ms <= e->now;
	b->norders = 0;
	for (int side = 0; side < 2; side++) {
		struct mside *s = &b->side[side];
		s->base = 0;
		s->nwin = s->ntree = 0;
		s->root = NIL;
		s->summary = 0;
		memset(s->bits, 0, sizeof(s->bits));
		memset(s->slot, 0xff, sizeof(s->slot));
	}
	uint32_t h = name_home(e, p->name, strlen(p->name));
	while (e->names[h] != NIL)
		h = (h + 1) & e->names_mask;
	e->names[h] = bi;
	if (!b->closed && p->gate_ms < e->next_gate)
		e->next_gate = p->gate_ms;
}

int matching_book_create(struct matching_engine *e, const struct matching_product *p,
			 uint32_t *book_out)
{
	if (!product_ok(e, p))
		return MATCHING_ERR_PRODUCT;
	uint32_t existing;
	if (matching_book_find(e, p->name, strlen(p->name), &existing) == MATCHING_OK)
		return MATCHING_ERR_EXISTS;
	if (e->nretired == 0 && e->nbooks >= e->cfg.books_max)
		return MATCHING_ERR_BOOKS_FULL;
	uint32_t bi = e->nbooks;
	if (e->nretired > 0) { /* the lowest retired number */
		uint32_t w = 0;
		while (e->retired[w] == 0)
			w++;
		bi = w * 64 + (uint32_t)__builtin_ctzll(e->retired[w]);
	}
	book_fill(e, bi, p);
	*book_out = bi;
	return MATCHING_OK;
}

int matching_book_create_at(struct matching_engine *e, const struct matching_product *p,
			    uint32_t book)
{
	if (!product_ok(e, p))
		return MATCHING_ERR_PRODUCT;
	uint32_t existing;
	if (book_live(e, book) ||
	    matching_book_find(e, p->name, strlen(p->name), &existing) == MATCHING_OK)
		return MATCHING_ERR_EXISTS;
	if (book >= e->cfg.books_max)
		return MATCHING_ERR_BOOKS_FULL;
	book_fill(e, book, p);
	return MATCHING_OK;
}

int matching_book_retire(struct matching_engine *e, uint32_t book)
{
	if (!book_live(e, book))
		return MATCHING_ERR_NOT_FOUND;
	struct mbook *b = &e->books[book];
	if (!b->closed)
		return MATCHING_ERR_OPEN;
	/* Out of the name index by backward shift, keeping probe chains whole. */
	uint32_t i = name_home(e, b->p.name, strlen(b->p.name));
	while (e->names[i] != book)
		i = (i + 1) & e->names_mask;
	for (uint32_t j = i;;) {
		j = (j + 1) & e->names_mask;
		uint32_t bj = e->names[j];
		if (bj == NIL)
			break;
		const char *n = e->books[bj].p.name;
		uint32_t k = name_home(e, n, strlen(n));
		bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
		if (!stays) {
			e->names[i] = bj;
			i = j;
		}
	}
	e->names[i] = NIL;
	retired_mark(e, book, true);
	while (e->nbooks > 0 && e->books[e->nbooks - 1].retired) /* the last number is live */
		retired_mark(e, --e->nbooks, false);
	return MATCHING_OK;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm). */
static void civil_from_days(int64_t z, int64_t *y, int64_t *m, int64_t *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = yoe + era * 400 + (*m <= 2);
}

int matching_product_hour_name(const struct matching_product *p, uint32_t hours,
			       char out[MATCHING_PRODUCT_NAME_MAX + 1])
{
	if (p->period_start_ms == MATCHING_NO_PERIOD || p->period_start_ms < 0 ||
	    p->period_ms != 3600000)
		return MATCHING_ERR_PRODUCT;
	int64_t hour = p->period_start_ms / 3600000 + hours, y, m, d;
	civil_from_days(hour / 24, &y, &m, &d);
	if (y > 9999)
		return MATCHING_ERR_PRODUCT;
	char name[MATCHING_PRODUCT_NAME_MAX + 16];
	int n = snprintf(name, sizeof(name), "%s/%04d-%02d-%02dT%02d", p->class_name, (int)y,
			 (int)m, (int)d, (int)(hour % 24));
	if (n < 0 || n > MATCHING_PRODUCT_NAME_MAX)
		return MATCHING_ERR_PRODUCT;
	memcpy(out, name, (size_t)n + 1);
	return MATCHING_OK;
}

static bool digits(const char *s, size_t n, int64_t *out)
{
	int64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* "YYYY-MM-DDTHH" to Unix milliseconds. */
static bool parse_period(const char *s, size_t len, int64_t *ms_out)
{
	int64_t y, mo, d, h;
	if (len != 13 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || !digits(s, 4, &y) ||
	    !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) || !digits(s + 11, 2, &h))
		return false;
	static const int8_t mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 ||
	    (mo == 2 && d == 29 && !leap))
		return false;
	*ms_out = (days_from_civil(y, mo, d) * 24 + h) * 3600000;
	return true;
}

int matching_product_parse(const char *name, size_t len, int64_t gate_lead_ms,
			   struct matching_product *out)
{
	if (len == 0 || len > MATCHING_PRODUCT_NAME_MAX || gate_lead_ms < 0 ||
	    memchr(name, '\0', len) != NULL)
		return MATCHING_ERR_PRODUCT;
	const char *slash = memchr(name, '/', len);
	size_t class_len = slash ? (size_t)(slash - name) : len;
	struct matching_product p = {
		.period_start_ms = MATCHING_NO_PERIOD, .gate_ms = MATCHING_NO_GATE, .tick = 1};
	if (class_len == 0 || class_len > MATCHING_CLASS_NAME_MAX)
		return MATCHING_ERR_PRODUCT;
	memcpy(p.name, name, len);
	memcpy(p.class_name, name, class_len);
	if (slash) {
		if (!parse_period(slash + 1, len - class_len - 1, &p.period_start_ms))
			return MATCHING_ERR_PRODUCT;
		p.period_ms = 3600000;
		p.gate_ms = p.period_start_ms - gate_lead_ms;
		if (p.gate_ms < 0)
			p.gate_ms = 0;
	}
	if (!token_ok(p.name, MATCHING_PRODUCT_NAME_MAX, false) ||
	    !token_ok(p.class_name, MATCHING_CLASS_NAME_MAX, true))
		return MATCHING_ERR_PRODUCT;
	*out = p;
	return MATCHING_OK;
}

/* ---------- lifecycle and queries ---------- */

void matching_config_default(struct matching_config *cfg)
{
	*cfg = (struct matching_config){
		.orders_max = 1u << 20,
		.levels_max = 1u << 20,
		.books_max = 1024,
		.price_max = 1000000000000LL, /* 1,000,000 currency units per GPU-hour */
		.qty_max = 10000000,	      /* 10 million GPUs */
		.start_ms = 0,
		.seed = 0x6772696465780001ULL,
		.stp_default = MATCHING_STP_CANCEL_NEWEST,
	};
}

int matching_create(const struct matching_config *cfg, struct matching_engine **out)
{
	int64_t level_total;
	if (cfg->orders_max < 1 || cfg->orders_max > MATCHING_ORDERS_CEILING ||
	    cfg->levels_max < 1 || cfg->levels_max > MATCHING_LEVELS_CEILING ||
	    cfg->books_max < 1 || cfg->books_max > MATCHING_BOOKS_CEILING || cfg->price_max < 1 ||
	    cfg->price_max > MATCHING_PRICE_CEILING || cfg->qty_max < 1 ||
	    cfg->stp_default == MATCHING_STP_DEFAULT || cfg->stp_default > MATCHING_STP_ALLOW ||
	    __builtin_mul_overflow(cfg->qty_max, (int64_t)cfg->orders_max, &level_total))
		return MATCHING_ERR_CONFIG;
	struct matching_engine *e = calloc(1, sizeof(*e));
	if (!e)
		return MATCHING_ERR_NOMEM;
	e->cfg = *cfg;
	e->now = cfg->start_ms;
	e->next_gate = MATCHING_NO_GATE;
	e->next_fill = 1;
	uint32_t index_cap = pow2_at_least(2ULL * cfg->orders_max);
	uint32_t names_cap = pow2_at_least(2ULL * cfg->books_max);
	e->orders = calloc(cfg->orders_max, sizeof(*e->orders));
	e->levels = calloc(cfg->levels_max, sizeof(*e->levels));
	e->index = malloc((size_t)index_cap * sizeof(*e->index));
	e->books = calloc(cfg->books_max, sizeof(*e->books));
	e->names = malloc((size_t)names_cap * sizeof(*e->names));
	e->closing = calloc(cfg->books_max, sizeof(*e->closing));
	e->retired = calloc(((size_t)cfg->books_max + 63) / 64, sizeof(*e->retired));
	e->heap = calloc(cfg->orders_max, sizeof(*e->heap));
	if (!e->orders || !e->levels || !e->index || !e->books || !e->names || !e->closing ||
	    !e->retired || !e->heap) {
		matching_destroy(e);
		return MATCHING_ERR_NOMEM;
	}
	e->index_mask = index_cap - 1;
	e->index_shift = 64 - (uint32_t)__builtin_ctz(index_cap);
	e->events_max = (size_t)cfg->orders_max + MATCHING_EVENTS_EXTRA;
	e->names_mask = names_cap - 1;
	/*
	 * The id index is written in full here: ids hash all over it, so it
	 * would be touched in full within seconds of trading anyway, each first
	 * touch a page fault on the core's path. The pools are not: they are
	 * handed out from their start, one page fault per page of slots.
	 */
	memset(e->index, 0xff, (size_t)index_cap * sizeof(*e->index));
	memset(e->names, 0xff, (size_t)names_cap * sizeof(*e->names));
	e->order_free = NIL;
	e->level_free = NIL;
	*out = e;
	return MATCHING_OK;
}

void matching_destroy(struct matching_engine *e)
{
	if (!e)
		return;
	free(e->orders);
	free(e->levels);
	free(e->index);
	free(e->books);
	free(e->names);
	free(e->closing);
	free(e->retired);
	free(e->heap);
	free(e);
}

size_t matching_events_max(const struct matching_engine *e)
{
	return e->events_max;
}

int64_t matching_now(const struct matching_engine *e)
{
	return e->now;
}

const struct matching_product *matching_book_product(const struct matching_engine *e, uint32_t book)
{
	return book_live(e, book) ? &e->books[book].p : NULL;
}

bool matching_book_closed(const struct matching_engine *e, uint32_t book)
{
	return !book_live(e, book) || e->books[book].closed;
}

uint32_t matching_book_count(const struct matching_engine *e)
{
	return e->nbooks;
}

uint32_t matching_book_live(const struct matching_engine *e)
{
	return e->nbooks - e->nretired;
}

uint32_t matching_order_count(const struct matching_engine *e)
{
	return e->norders;
}

size_t matching_book_depth(const struct matching_engine *e, uint32_t book, enum matching_side side,
			   struct matching_level_view *out, size_t max)
{
	if (!book_live(e, book) || (side != MATCHING_BUY && side != MATCHING_SELL))
		return 0;
	const struct mside *s = &e->books[book].side[side];
	size_t n = 0;
	for (uint32_t li = side_best(s, is_bid(side)); li != NIL && n < max;
	     li = side_next(e, s, is_bid(side), li)) {
		const struct ml *l = &e->levels[li];
		out[n++] = (struct matching_level_view){
			.price = l->price, .qty = l->qty, .orders = l->count};
	}
	return n;
}

void matching_level_get(const struct matching_engine *e, uint32_t book, enum matching_side side,
			int64_t price, struct matching_level_view *out)
{
	*out = (struct matching_level_view){.price = price};
	if (!book_live(e, book) || (side != MATCHING_BUY && side != MATCHING_SELL) || price < 1)
		return;
	const struct mbook *b = &e->books[book];
	if (price % b->p.tick != 0)
		return;
	uint32_t li = side_find(e, &b->side[side], price / b->p.tick);
	if (li == NIL)
		return;
	out->qty = e->levels[li].qty;
	out->orders = e->levels[li].count;
}

static struct matching_order_view view_of(const struct mo *o)
{
	return (struct matching_order_view){
		.order_id = o->id,
		.account = o->account,
		.book = o->book,
		.side = o->side,
		.tif = o->tif,
		.stp = o->stp,
		.price = o->price,
		.qty = o->qty,
		.expire_ms = o->expire_ms,
	};
}

int matching_order_get(const struct matching_engine *e, uint64_t order_id,
		       struct matching_order_view *out)
{
	uint32_t oi = index_find(e, order_id);
	if (oi == NIL)
		return MATCHING_ERR_NOT_FOUND;
	*out = view_of(&e->orders[oi]);
	return MATCHING_OK;
}

/* ---------- snapshots ---------- */

int matching_book_orders(const struct matching_engine *e, uint32_t book, enum matching_side side,
			 int (*each)(const struct matching_order_view *o, void *ctx), void *ctx)
{
	if (!book_live(e, book) || (side != MATCHING_BUY && side != MATCHING_SELL))
		return 0;
	const struct mside *s = &e->books[book].side[side];
	for (uint32_t li = side_best(s, is_bid(side)); li != NIL;
	     li = side_next(e, s, is_bid(side), li)) {
		for (uint32_t oi = e->levels[li].head; oi != NIL; oi = e->orders[oi].next) {
			struct matching_order_view v = view_of(&e->orders[oi]);
			int rc = each(&v, ctx);
			if (rc)
				return rc;
		}
	}
	return 0;
}

uint8_t matching_restore_order(struct matching_engine *e, const struct matching_order *o)
{
	int64_t tick;
	if (o->tif == MATCHING_IOC || o->tif == MATCHING_FOK || o->stp == MATCHING_STP_DEFAULT)
		return MATCHING_R_BAD_ORDER;
	uint8_t r = check_order(e, o, &tick);
	if (r)
		return r;
	if (would_cross(e, o->book, o->side, o->price))
		return MATCHING_R_WOULD_CROSS;
	uint32_t oi = order_new(e, o->order_id, o->account, o->book, o->side, o->tif, o->stp);
	struct mo *m = &e->orders[oi];
	m->price = o->price;
	m->qty = o->qty;
	m->expire_ms = o->tif == MATCHING_GTD ? o->expire_ms : 0;
	order_rest(e, oi, tick);
	return MATCHING_R_NONE;
}

uint64_t matching_fill_seq(const struct matching_engine *e)
{
	return e->next_fill;
}

void matching_restore_fill_seq(struct matching_engine *e, uint64_t next_fill)
{
	e->next_fill = next_fill < 1 ? 1 : next_fill;
}

const char *matching_reason_name(enum matching_reason r)
{
	static const char *const names[MATCHING_R_COUNT_] = {
		[MATCHING_R_NONE] = "none",
		[MATCHING_R_CANCELLED] = "cancelled",
		[MATCHING_R_IOC_REMAINDER] = "ioc_remainder",
		[MATCHING_R_FOK_KILLED] = "fok_killed",
		[MATCHING_R_SELF_TRADE] = "self_trade",
		[MATCHING_R_EXPIRED] = "expired",
		[MATCHING_R_GATE_CLOSED] = "gate_closed",
		[MATCHING_R_UNKNOWN_ORDER] = "unknown_order",
		[MATCHING_R_DUPLICATE_ORDER] = "duplicate_order",
		[MATCHING_R_BAD_PRICE] = "bad_price",
		[MATCHING_R_BAD_QTY] = "bad_qty",
		[MATCHING_R_WOULD_CROSS] = "would_cross",
		[MATCHING_R_OVERFLOW] = "overflow",
		[MATCHING_R_BOOK_FULL] = "book_full",
		[MATCHING_R_CLOSED] = "closed",
		[MATCHING_R_BAD_EXPIRY] = "bad_expiry",
		[MATCHING_R_BAD_ORDER] = "bad_order",
		[MATCHING_R_UNKNOWN_PRODUCT] = "unknown_product",
		[MATCHING_R_BAD_BASKET] = "bad_basket",
	};
	if ((unsigned)r >= MATCHING_R_COUNT_)
		return "invalid";
	return names[r];
}

/* ---------- invariants ---------- */

/* Checks the subtree at n: keys within [lo, hi], BST and heap order. */
static const char *check_tree(const struct matching_engine *e, uint32_t n, int64_t lo, int64_t hi,
			      uint32_t *count)
{
	if (n == NIL)
		return NULL;
	const struct ml *l = &e->levels[n];
	if (l->tick < lo || l->tick > hi)
		return "tree order broken";
	if (l->in_win)
		return "tree level marked in window";
	if ((l->left != NIL && e->levels[l->left].prio > l->prio) ||
	    (l->right != NIL && e->levels[l->right].prio > l->prio))
		return "treap priority broken";
	if (++*count > e->cfg.levels_max)
		return "tree cycles";
	/* Ticks lie in [1, price_max] and price_max <= 2^62: +-1 cannot overflow. */
	const char *why = check_tree(e, l->left, lo, l->tick - 1, count);
	return why ? why : check_tree(e, l->right, l->tick + 1, hi, count);
}

static const char *check_level(const struct matching_engine *e, uint32_t bi, int side, uint32_t li,
			       uint32_t *orders)
{
	const struct ml *l = &e->levels[li];
	int64_t sum = 0;
	uint32_t count = 0, prev = NIL;
	if (l->side != side || l->price != l->tick * e->books[bi].p.tick)
		return "level side or price wrong";
	for (uint32_t oi = l->head; oi != NIL; oi = e->orders[oi].next) {
		const struct mo *o = &e->orders[oi];
		if (!o->live || o->level != li || o->book != bi || o->side != side ||
		    o->price != l->price || o->prev != prev || o->qty < 1)
			return "order in level inconsistent";
		if (index_find(e, o->id) != oi)
			return "order missing from index";
		if ((o->tif == MATCHING_GTD) != (o->heap_pos != NIL))
			return "GTD order not in expiry heap";
		if (count++ > e->cfg.orders_max)
			return "level list cycles";
		sum += o->qty;
		prev = oi;
	}
	if (l->tail != prev || l->count != count || l->qty != sum || count == 0)
		return "level totals wrong";
	*orders += count;
	return NULL;
}

static const char *check_side(const struct matching_engine *e, uint32_t bi, int side,
			      uint32_t *levels, uint32_t *orders)
{
	const struct mside *s = &e->books[bi].side[side];
	bool bid = is_bid(side);
	uint32_t nwin = 0, ntree = 0;
	for (uint32_t w = 0; w < MATCHING_WINDOW_WORDS; w++)
		if (((s->summary >> w) & 1) != (s->bits[w] != 0))
			return "window summary wrong";
	for (uint32_t i = 0; i < WIN; i++) {
		bool bit = (s->bits[i >> 6] >> (i & 63)) & 1;
		if (bit != (s->slot[i] != NIL))
			return "window bitmap wrong";
		if (!bit)
			continue;
		const struct ml *l = &e->levels[s->slot[i]];
		if (!l->in_win || l->tick != s->base + (int64_t)i)
			return "window slot wrong";
		const char *why = check_level(e, bi, side, s->slot[i], orders);
		if (why)
			return why;
		nwin++;
	}
	if (nwin != s->nwin)
		return "window count wrong";
	if (s->nwin == 0 && s->ntree != 0)
		return "far levels with an empty window";
	int64_t lo = bid ? 1 : s->base + WIN;
	int64_t hi = bid ? s->base - 1 : MATCHING_PRICE_CEILING;
	const char *why = check_tree(e, s->root, lo, hi, &ntree);
	if (why)
		return why;
	if (ntree != s->ntree)
		return "tree count wrong";
	uint32_t walked = 0;
	int64_t last = 0;
	for (uint32_t li = side_best(s, bid); li != NIL; li = side_next(e, s, bid, li)) {
		if (walked > 0 && (bid ? e->levels[li].tick >= last : e->levels[li].tick <= last))
			return "level walk out of order";
		last = e->levels[li].tick;
		if (!e->levels[li].in_win && (why = check_level(e, bi, side, li, orders)) != NULL)
			return why;
		if (++walked > nwin + ntree)
			return "level walk too long";
	}
	if (walked != nwin + ntree)
		return "level walk misses levels";
	*levels += walked;
	return NULL;
}

const char *matching_check_invariants(const struct matching_engine *e)
{
	uint32_t levels = 0, orders = 0, retired = 0, named = 0;
	for (uint32_t bi = 0; bi < e->nbooks; bi++) {
		const struct mbook *b = &e->books[bi];
		uint32_t book_orders = 0, found;
		bool bit = e->retired[bi / 64] >> (bi % 64) & 1;
		if (bit != b->retired)
			return "retired bit differs from the book";
		if (b->retired) {
			retired++;
			if (!b->closed || b->norders ||
			    b->side[0].nwin + b->side[0].ntree + b->side[1].nwin + b->side[1].ntree)
				return "retired book not empty and closed";
			continue;
		}
		if (matching_book_find(e, b->p.name, strlen(b->p.name), &found) != MATCHING_OK ||
		    found != bi)
			return "book not found by its name";
		for (int side = 0; side < 2; side++) {
			const char *why = check_side(e, bi, side, &levels, &book_orders);
			if (why)
				return why;
		}
		if (book_orders != b->norders)
			return "book order count wrong";
		if (b->closed && b->norders)
			return "closed book has orders";
		if (!b->closed && b->p.gate_ms <= e->now)
			return "book open past its gate";
		uint32_t bb = side_best(&b->side[0], true), ba = side_best(&b->side[1], false);
		if (bb != NIL && ba != NIL && e->levels[bb].price >= e->levels[ba].price)
			return "book crossed";
		orders += book_orders;
	}
	if (orders != e->norders || levels != e->nlevels)
		return "pool counts wrong";
	for (uint32_t h = 0; h <= e->names_mask; h++)
		named += e->names[h] != NIL;
	if (retired != e->nretired || named != e->nbooks - e->nretired ||
	    (e->nbooks > 0 && e->books[e->nbooks - 1].retired))
		return "book numbers wrong";
	for (uint32_t bi = e->nbooks; bi < e->cfg.books_max; bi++)
		if (e->retired[bi / 64] >> (bi % 64) & 1)
			return "retired bit past the last book";
	uint32_t free_orders = 0, free_levels = 0, indexed = 0;
	for (uint32_t oi = e->order_free; oi != NIL && free_orders <= e->cfg.orders_max;
	     oi = e->orders[oi].next)
		free_orders++;
	for (uint32_t li = e->level_free; li != NIL && free_levels <= e->cfg.levels_max;
	     li = e->levels[li].head)
		free_levels++;
	if (e->order_fresh > e->cfg.orders_max || e->level_fresh > e->cfg.levels_max ||
	    free_orders + e->norders != e->order_fresh ||
	    free_levels + e->nlevels != e->level_fresh)
		return "free lists wrong";
	for (uint32_t h = 0; h <= e->index_mask; h++)
		if (e->index[h] != NIL)
			indexed++;
	if (indexed != e->norders)
		return "index count wrong";
	for (uint32_t p = 0; p < e->heap_n; p++) {
		const struct mo *o = &e->orders[e->heap[p]];
		if (o->heap_pos != p || !o->live || o->tif != MATCHING_GTD)
			return "expiry heap entry wrong";
		if (o->expire_ms <= e->now)
			return "expired order still resting";
		if (p > 0 && heap_less(e, e->heap[p], e->heap[(p - 1) / 2]))
			return "expiry heap order broken";
	}
	return NULL;
}
