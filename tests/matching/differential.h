/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The engine and a reference model written with plain arrays and linear
 * scans, fed the same random commands (orders of every time in force and
 * self-trade mode, cancels, modifies, baskets, clock advances through gate
 * closures and GTD expiries, far-away prices, full pools); every event is
 * compared field by field and matching_check_invariants() runs after every
 * command. Included by check_differential.c (a pseudo-random generator) and by
 * tests/fuzz/fuzz_engine.c (DIFF_FUZZ: the fuzzer's bytes choose); the
 * includer provides Check's ck_assert macros.
 */
#ifndef GRIDEX_TESTS_DIFFERENTIAL_H
#define GRIDEX_TESTS_DIFFERENTIAL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "matching.h"

#define REF_ORDERS_MAX 48
#define REF_LEVELS_MAX 28
#define REF_BOOKS      6
#define REF_QTY_MAX    50
#define REF_PRICE_MAX  2000000000LL

/* ---------- deterministic random numbers ---------- */

static uint64_t rng_state;

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

#ifdef DIFF_FUZZ
/* The fuzzer's bytes drive every choice: two bytes per draw, spread by the
 * mixer so that any draw can reach any value. */
static const uint8_t *fz_data;
static size_t fz_len, fz_pos;
#define DIFF_MORE() (fz_pos < fz_len)

static uint64_t rnd(void)
{
	uint64_t v = 0;
	for (int i = 0; i < 2; i++)
		v = v << 8 | (fz_pos < fz_len ? fz_data[fz_pos++] : 0);
	return mix64((rng_state += 0x9e3779b97f4a7c15ULL) ^ v);
}
#else
#define DIFF_MORE() 1

static uint64_t rnd(void)
{
	return mix64(rng_state += 0x9e3779b97f4a7c15ULL);
}
#endif

static int64_t rnd_range(int64_t lo, int64_t hi)
{
	return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

/* ---------- the reference model ---------- */

struct ref_order {
	uint64_t id;
	uint32_t account, book;
	int side, tif, stp;
	int64_t price, qty, expire;
	uint64_t seq; /* time priority */
};

struct ref_book {
	struct matching_product p;
	bool closed;
};

static struct ref {
	struct ref_order o[REF_ORDERS_MAX];
	size_t n;
	struct ref_book books[REF_BOOKS];
	int64_t now;
	uint64_t seq, fill;
	int stp_default;
	struct matching_event ev[4 * REF_ORDERS_MAX + 128];
	size_t nev;
} R;

static void ref_emit(int type, int reason, uint64_t id, uint32_t account, uint32_t book, int side,
		     int64_t price, int64_t qty)
{
	ck_assert_uint_lt(R.nev, sizeof(R.ev) / sizeof(R.ev[0]));
	R.ev[R.nev++] = (struct matching_event){.type = (uint8_t)type,
						.reason = (uint8_t)reason,
						.order_id = id,
						.account = account,
						.book = book,
						.side = (uint8_t)side,
						.price = price,
						.qty = qty};
}

static void ref_drop(size_t i)
{
	R.o[i] = R.o[--R.n];
}

static ssize_t ref_find(uint64_t id)
{
	for (size_t i = 0; i < R.n; i++)
		if (R.o[i].id == id)
			return (ssize_t)i;
	return -1;
}

static size_t ref_levels(void)
{
	size_t n = 0;
	for (size_t i = 0; i < R.n; i++) {
		bool first = true;
		for (size_t j = 0; j < i; j++)
			if (R.o[j].book == R.o[i].book && R.o[j].side == R.o[i].side &&
			    R.o[j].price == R.o[i].price)
				first = false;
		n += first;
	}
	return n;
}

static size_t ref_level_count(uint32_t book, int side, int64_t price)
{
	size_t n = 0;
	for (size_t i = 0; i < R.n; i++)
		n += R.o[i].book == book && R.o[i].side == side && R.o[i].price == price;
	return n;
}

static bool ref_crosses(int side, int64_t limit, int64_t price)
{
	return side == MATCHING_BUY ? price <= limit : price >= limit;
}

/* Whether resting a is ahead of b in the matching order of their side. */
static bool ref_ahead(const struct ref_order *a, const struct ref_order *b)
{
	if (a->price != b->price)
		return a->side == MATCHING_BUY ? a->price > b->price : a->price < b->price;
	return a->seq < b->seq;
}

/* The best resting order of the side opposite to `side` in book, or -1. */
static ssize_t ref_best(uint32_t book, int side)
{
	ssize_t best = -1;
	for (size_t i = 0; i < R.n; i++)
		if (R.o[i].book == book && R.o[i].side != side &&
		    (best < 0 || ref_ahead(&R.o[i], &R.o[best])))
			best = (ssize_t)i;
	return best;
}

static bool ref_fok_ok(uint32_t book, int side, uint32_t account, int stp, int64_t price,
		       int64_t qty)
{
	/* Walk a sorted copy of the opposite side. */
	struct ref_order side_orders[REF_ORDERS_MAX];
	size_t n = 0;
	for (size_t i = 0; i < R.n; i++)
		if (R.o[i].book == book && R.o[i].side != side)
			side_orders[n++] = R.o[i];
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && ref_ahead(&side_orders[j], &side_orders[j - 1]); j--) {
			struct ref_order t = side_orders[j];
			side_orders[j] = side_orders[j - 1];
			side_orders[j - 1] = t;
		}
	int64_t avail = 0;
	for (size_t i = 0; i < n && ref_crosses(side, price, side_orders[i].price); i++) {
		if (side_orders[i].account == account && stp != MATCHING_STP_ALLOW) {
			if (stp == MATCHING_STP_CANCEL_OLDEST)
				continue;
			return false;
		}
		avail += side_orders[i].qty;
		if (avail >= qty)
			return true;
	}
	return false;
}

/* Matches; returns false when stopped by self-trade prevention. */
static bool ref_match(struct ref_order *t)
{
	while (t->qty > 0) {
		ssize_t m = ref_best(t->book, t->side);
		if (m < 0 || !ref_crosses(t->side, t->price, R.o[m].price))
			return true;
		struct ref_order *mk = &R.o[m];
		if (mk->account == t->account && t->stp != MATCHING_STP_ALLOW) {
			if (t->stp != MATCHING_STP_CANCEL_NEWEST) {
				ref_emit(MATCHING_EV_REMOVED, MATCHING_R_SELF_TRADE, mk->id,
					 mk->account, mk->book, mk->side, mk->price, mk->qty);
				ref_drop((size_t)m);
			}
			if (t->stp != MATCHING_STP_CANCEL_OLDEST)
				return false;
			continue;
		}
		int64_t q = t->qty < mk->qty ? t->qty : mk->qty;
		t->qty -= q;
		mk->qty -= q;
		struct matching_event ev = {.type = MATCHING_EV_FILL,
					    .order_id = t->id,
					    .account = t->account,
					    .book = t->book,
					    .side = (uint8_t)t->side,
					    .maker_id = mk->id,
					    .maker_account = mk->account,
					    .fill_id = ++R.fill,
					    .price = mk->price,
					    .qty = q,
					    .taker_left = t->qty,
					    .maker_left = mk->qty};
		R.ev[R.nev++] = ev;
		if (mk->qty == 0) {
			ref_emit(MATCHING_EV_DONE, 0, mk->id, mk->account, mk->book, mk->side,
				 mk->price, 0);
			ref_drop((size_t)m);
		}
	}
	return true;
}

static void ref_finish(struct ref_order *t)
{
	bool more = ref_match(t);
	if (t->qty == 0) {
		ref_emit(MATCHING_EV_DONE, 0, t->id, t->account, t->book, t->side, t->price, 0);
	} else if (!more) {
		ref_emit(MATCHING_EV_REMOVED, MATCHING_R_SELF_TRADE, t->id, t->account, t->book,
			 t->side, t->price, t->qty);
	} else if (t->tif == MATCHING_IOC) {
		ref_emit(MATCHING_EV_REMOVED, MATCHING_R_IOC_REMAINDER, t->id, t->account, t->book,
			 t->side, t->price, t->qty);
	} else {
		ck_assert_int_ne(t->tif, MATCHING_FOK);
		t->seq = ++R.seq;
		if (t->tif != MATCHING_GTD)
			t->expire = 0;
		R.o[R.n++] = *t;
		ref_emit(MATCHING_EV_RESTING, 0, t->id, t->account, t->book, t->side, t->price,
			 t->qty);
	}
}

static int ref_check_pq(uint32_t book, int64_t price, int64_t qty)
{
	if (price < 1 || price > REF_PRICE_MAX || price % R.books[book].p.tick != 0)
		return MATCHING_R_BAD_PRICE;
	if (qty < 1 || qty > REF_QTY_MAX)
		return MATCHING_R_BAD_QTY;
	return 0;
}

static bool ref_would_cross(uint32_t book, int side, int64_t price)
{
	ssize_t m = ref_best(book, side);
	return m >= 0 && ref_crosses(side, price, R.o[m].price);
}

static void ref_submit(const struct matching_order *o)
{
	struct ref_order t = {.id = o->order_id,
			      .account = o->account,
			      .book = o->book,
			      .side = o->side,
			      .tif = o->tif,
			      .stp = o->stp ? o->stp : R.stp_default,
			      .price = o->price,
			      .qty = o->qty,
			      .expire = o->expire_ms};
	int r = 0;
	if (R.books[o->book].closed)
		r = MATCHING_R_CLOSED;
	else if ((r = ref_check_pq(o->book, o->price, o->qty)) != 0)
		;
	else if (o->tif == MATCHING_GTD && o->expire_ms <= R.now)
		r = MATCHING_R_BAD_EXPIRY;
	else if (ref_find(o->order_id) >= 0)
		r = MATCHING_R_DUPLICATE_ORDER;
	else if (o->tif != MATCHING_IOC && o->tif != MATCHING_FOK &&
		 (R.n >= REF_ORDERS_MAX || ref_levels() >= REF_LEVELS_MAX))
		r = MATCHING_R_BOOK_FULL;
	else if (o->tif == MATCHING_POST && ref_would_cross(o->book, o->side, o->price))
		r = MATCHING_R_WOULD_CROSS;
	if (r) {
		ref_emit(MATCHING_EV_REJECTED, r, t.id, t.account, t.book, t.side, t.price, t.qty);
		return;
	}
	if (t.tif == MATCHING_FOK &&
	    !ref_fok_ok(t.book, t.side, t.account, t.stp, t.price, t.qty)) {
		ref_emit(MATCHING_EV_REMOVED, MATCHING_R_FOK_KILLED, t.id, t.account, t.book,
			 t.side, t.price, t.qty);
		return;
	}
	ref_finish(&t);
}

static void ref_cancel(uint64_t id)
{
	ssize_t i = ref_find(id);
	if (i < 0) {
		ref_emit(MATCHING_EV_REJECTED, MATCHING_R_UNKNOWN_ORDER, id, 0, 0, 0, 0, 0);
		return;
	}
	struct ref_order *o = &R.o[i];
	ref_emit(MATCHING_EV_REMOVED, MATCHING_R_CANCELLED, o->id, o->account, o->book, o->side,
		 o->price, o->qty);
	ref_drop((size_t)i);
}

static void ref_modify(uint64_t id, int64_t price, int64_t qty)
{
	ssize_t i = ref_find(id);
	if (i < 0) {
		ref_emit(MATCHING_EV_REJECTED, MATCHING_R_UNKNOWN_ORDER, id, 0, 0, 0, price, qty);
		return;
	}
	struct ref_order o = R.o[i];
	int r = ref_check_pq(o.book, price, qty);
	bool keep = price == o.price && qty <= o.qty;
	if (!r && !keep && o.tif == MATCHING_POST && ref_would_cross(o.book, o.side, price))
		r = MATCHING_R_WOULD_CROSS;
	if (!r && !keep && ref_levels() >= REF_LEVELS_MAX &&
	    ref_level_count(o.book, o.side, o.price) > 1)
		r = MATCHING_R_BOOK_FULL;
	if (r) {
		ref_emit(MATCHING_EV_REJECTED, r, o.id, o.account, o.book, o.side, price, qty);
		return;
	}
	if (keep) {
		R.o[i].qty = qty;
		ref_emit(MATCHING_EV_RESTING, 0, o.id, o.account, o.book, o.side, o.price, qty);
		return;
	}
	ref_drop((size_t)i);
	o.price = price;
	o.qty = qty;
	ref_finish(&o);
}

static void ref_basket(const struct matching_basket *b)
{
	int r = 0;
	int stp = b->stp ? b->stp : R.stp_default;
	const struct matching_product *p0 = &R.books[b->books[0]].p;
	for (uint32_t i = 0; i < b->n_legs && !r; i++) {
		const struct matching_product *p = &R.books[b->books[i]].p;
		if (p->period_start_ms == MATCHING_NO_PERIOD ||
		    strcmp(p->class_name, p0->class_name) ||
		    p->period_start_ms != p0->period_start_ms + (int64_t)i * 3600000)
			r = MATCHING_R_BAD_BASKET;
	}
	for (uint32_t i = 0; i < b->n_legs && !r; i++)
		if (R.books[b->books[i]].closed)
			r = MATCHING_R_CLOSED;
	for (uint32_t i = 0; i < b->n_legs && !r; i++)
		r = ref_check_pq(b->books[i], b->price, b->qty);
	for (uint32_t i = 0; i < b->n_legs && !r; i++) {
		if (ref_find(b->order_ids[i]) >= 0)
			r = MATCHING_R_DUPLICATE_ORDER;
		for (uint32_t j = 0; j < i; j++)
			if (b->order_ids[j] == b->order_ids[i])
				r = MATCHING_R_DUPLICATE_ORDER;
	}
	for (uint32_t i = 0; i < b->n_legs && !r; i++)
		if (!ref_fok_ok(b->books[i], b->side, b->account, stp, b->price, b->qty))
			r = MATCHING_R_FOK_KILLED;
	if (r) {
		int type = r == MATCHING_R_FOK_KILLED ? MATCHING_EV_REMOVED : MATCHING_EV_REJECTED;
		for (uint32_t i = 0; i < b->n_legs; i++)
			ref_emit(type, r, b->order_ids[i], b->account, b->books[i], b->side,
				 b->price, b->qty);
		return;
	}
	for (uint32_t i = 0; i < b->n_legs; i++) {
		struct ref_order t = {.id = b->order_ids[i],
				      .account = b->account,
				      .book = b->books[i],
				      .side = b->side,
				      .tif = MATCHING_FOK,
				      .stp = stp,
				      .price = b->price,
				      .qty = b->qty};
		ref_finish(&t);
	}
}

static void ref_remove_where(int reason, bool (*pred)(const struct ref_order *, const void *),
			     const void *ctx,
			     bool (*before)(const struct ref_order *, const struct ref_order *))
{
	for (;;) {
		ssize_t pick = -1;
		for (size_t i = 0; i < R.n; i++)
			if (pred(&R.o[i], ctx) && (pick < 0 || before(&R.o[i], &R.o[pick])))
				pick = (ssize_t)i;
		if (pick < 0)
			return;
		struct ref_order *o = &R.o[pick];
		ref_emit(MATCHING_EV_REMOVED, reason, o->id, o->account, o->book, o->side, o->price,
			 o->qty);
		ref_drop((size_t)pick);
	}
}

static bool expired(const struct ref_order *o, const void *ctx)
{
	(void)ctx;
	return o->tif == MATCHING_GTD && o->expire <= R.now;
}

static bool expires_first(const struct ref_order *a, const struct ref_order *b)
{
	return a->expire != b->expire ? a->expire < b->expire : a->id < b->id;
}

static bool in_book(const struct ref_order *o, const void *ctx)
{
	return o->book == *(const uint32_t *)ctx;
}

static bool close_order(const struct ref_order *a, const struct ref_order *b)
{
	if (a->side != b->side)
		return a->side == MATCHING_BUY;
	return ref_ahead(a, b);
}

static void ref_advance(int64_t now)
{
	R.now = now;
	ref_remove_where(MATCHING_R_EXPIRED, expired, NULL, expires_first);
	for (;;) {
		int pick = -1;
		for (int b = 0; b < REF_BOOKS; b++)
			if (!R.books[b].closed && R.books[b].p.gate_ms <= now &&
			    (pick < 0 || R.books[b].p.gate_ms < R.books[pick].p.gate_ms))
				pick = b;
		if (pick < 0)
			return;
		uint32_t book = (uint32_t)pick;
		ref_remove_where(MATCHING_R_GATE_CLOSED, in_book, &book, close_order);
		R.books[pick].closed = true;
	}
}

/* ---------- the comparison ---------- */

static struct matching_engine *eng;
static struct matching_batch batch;
static uint64_t cmd_count;
static uint64_t seen_type[8], seen_reason[MATCHING_R_COUNT_];

static void compare(const char *what)
{
	ck_assert_msg(batch.n == R.nev, "cmd %llu (%s): engine %zu events, model %zu",
		      (unsigned long long)cmd_count, what, batch.n, R.nev);
	for (size_t i = 0; i < batch.n; i++) {
		const struct matching_event *a = &batch.events[i], *b = &R.ev[i];
		bool same = a->type == b->type && a->reason == b->reason &&
			    a->order_id == b->order_id && a->price == b->price && a->qty == b->qty;
		if (same && a->type != MATCHING_EV_REJECTED)
			same = a->account == b->account && a->book == b->book && a->side == b->side;
		if (same && a->type == MATCHING_EV_FILL)
			same = a->maker_id == b->maker_id && a->maker_account == b->maker_account &&
			       a->fill_id == b->fill_id && a->taker_left == b->taker_left &&
			       a->maker_left == b->maker_left;
		ck_assert_msg(same,
			      "cmd %llu (%s) event %zu: engine type %d reason %d id %llu px %lld "
			      "qty %lld; model type %d reason %d id %llu px %lld qty %lld",
			      (unsigned long long)cmd_count, what, i, a->type, a->reason,
			      (unsigned long long)a->order_id, (long long)a->price,
			      (long long)a->qty, b->type, b->reason,
			      (unsigned long long)b->order_id, (long long)b->price,
			      (long long)b->qty);
	}
	for (size_t i = 0; i < batch.n; i++) {
		seen_type[batch.events[i].type]++;
		seen_reason[batch.events[i].reason]++;
	}
	const char *why = matching_check_invariants(eng);
	ck_assert_msg(why == NULL, "cmd %llu (%s): invariant %s", (unsigned long long)cmd_count,
		      what, why ? why : "");
	ck_assert_uint_eq(matching_order_count(eng), R.n);
}

static int64_t rnd_price(uint32_t book, int side)
{
	int64_t tick = R.books[book].p.tick, px;
	uint64_t k = rnd() % 100;
	if (k < 80) /* near the touch; bids and asks overlap by a few ticks */
		px = side == MATCHING_BUY ? rnd_range(900, 1004) : rnd_range(996, 1100);
	else if (k < 90)
		px = rnd_range(1, 20000); /* around and beyond the window */
	else if (k < 97)
		px = rnd_range(1, REF_PRICE_MAX); /* far away */
	else
		px = rnd_range(-2, 0) + (rnd() % 2 ? REF_PRICE_MAX + 2 : 0); /* invalid */
	/* Mostly on the tick; sometimes off it, which the tick-5 book rejects. */
	return px > 0 && rnd() % 8 ? px - px % tick : px;
}

static uint64_t rnd_id(void)
{
	if (R.n > 0 && rnd() % 8 == 0)
		return R.o[rnd() % R.n].id; /* duplicate */
	return 1 + rnd() % 5000;
}

static void one_command(void)
{
	uint64_t k = rnd() % 100;
	cmd_count++;
	R.nev = 0;
	if (k < 52) {
		uint32_t book = (uint32_t)(rnd() % REF_BOOKS);
		struct matching_order o = {
			.order_id = rnd_id(),
			.account = 1 + (uint32_t)(rnd() % 4),
			.book = book,
			.side = (uint8_t)(rnd() % 2),
			.tif = (uint8_t)(rnd() % 5),
			.stp = (uint8_t)(rnd() % 5),
			.price = 0,
			.qty = rnd_range(-1, REF_QTY_MAX + 1),
		};
		o.price = rnd_price(book, o.side);
		o.expire_ms = R.now + rnd_range(-5, 400);
		ref_submit(&o);
		ck_assert_int_eq(matching_submit(eng, &o, &batch), MATCHING_OK);
		compare("submit");
	} else if (k < 62) {
		uint64_t id = R.n && rnd() % 6 ? R.o[rnd() % R.n].id : rnd_id();
		ref_cancel(id);
		ck_assert_int_eq(matching_cancel(eng, id, &batch), MATCHING_OK);
		compare("cancel");
	} else if (k < 88) {
		uint64_t id = R.n && rnd() % 6 ? R.o[rnd() % R.n].id : rnd_id();
		ssize_t i = ref_find(id);
		int64_t px, qty;
		if (i >= 0 && rnd() % 2) {
			px = R.o[i].price; /* same price: reduce, keep, or grow */
			qty = R.o[i].qty + rnd_range(-3, 1);
		} else {
			px = i >= 0 ? rnd_price(R.o[i].book, R.o[i].side) : rnd_price(0, 0);
			qty = rnd_range(0, REF_QTY_MAX);
		}
		ref_modify(id, px, qty);
		ck_assert_int_eq(matching_modify(eng, id, px, qty, &batch), MATCHING_OK);
		compare("modify");
	} else if (k < 95) {
		struct matching_basket b = {
			.account = 1 + (uint32_t)(rnd() % 4),
			.side = (uint8_t)(rnd() % 2),
			.stp = (uint8_t)(rnd() % 5),
			.price = rnd_range(950, 1050),
			.qty = rnd_range(1, 12),
			.n_legs = 1 + (uint32_t)(rnd() % 3),
		};
		uint32_t first = (uint32_t)(rnd() % REF_BOOKS);
		for (uint32_t i = 0; i < b.n_legs; i++) {
			b.books[i] = (first + i) % REF_BOOKS;
			b.order_ids[i] = rnd_id();
		}
		ref_basket(&b);
		ck_assert_int_eq(matching_submit_basket(eng, &b, &batch), MATCHING_OK);
		compare("basket");
	} else {
		int64_t now = R.now + rnd_range(0, 100);
		ref_advance(now);
		ck_assert_int_eq(matching_advance(eng, now, &batch), MATCHING_OK);
		compare("advance");
	}
}

static void run_seed(uint64_t seed, int commands)
{
	rng_state = seed;
	memset(&R, 0, sizeof(R));
	struct matching_config cfg;
	matching_config_default(&cfg);
	cfg.orders_max = REF_ORDERS_MAX;
	cfg.levels_max = REF_LEVELS_MAX;
	cfg.books_max = REF_BOOKS;
	cfg.price_max = REF_PRICE_MAX;
	cfg.qty_max = REF_QTY_MAX;
	cfg.seed = seed;
	cfg.stp_default = (uint8_t)(1 + seed % 4);
	R.stp_default = cfg.stp_default;
	ck_assert_int_eq(matching_create(&cfg, &eng), MATCHING_OK);
	batch.cap = matching_events_max(eng);
	batch.events = calloc(batch.cap, sizeof(*batch.events));
	ck_assert_ptr_nonnull(batch.events);
	/*
	 * Books 0-3: consecutive hours of one class closing during the run;
	 * book 4: another class, never closing; book 5: coarse tick 5.
	 */
	static const char *const names[REF_BOOKS] = {"H100/2026-11-22T14",
						     "H100/2026-11-22T15",
						     "H100/2026-11-22T16",
						     "H100/2026-11-22T17",
						     "A100",
						     "MI300X"};
	for (uint32_t b = 0; b < REF_BOOKS; b++) {
		struct matching_product *p = &R.books[b].p;
		ck_assert_int_eq(matching_product_parse(names[b], strlen(names[b]), 0, p),
				 MATCHING_OK);
		if (b < 4)
			p->gate_ms = 3000 + (int64_t)b * 1500 + rnd_range(0, 2000);
		if (b == 5)
			p->tick = 5;
		uint32_t got;
		ck_assert_int_eq(matching_book_create(eng, p, &got), MATCHING_OK);
		ck_assert_uint_eq(got, b);
	}
	for (int i = 0; i < commands && DIFF_MORE(); i++)
		one_command();
	matching_destroy(eng);
	free(batch.events);
}

#endif
