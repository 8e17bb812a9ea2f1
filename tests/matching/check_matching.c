/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the matching engine: one TCase per rule (priority, time in
 * force, validation, cancel/modify, self-trade prevention, gate closure,
 * baskets, pools, wide price ranges), each with valid and invalid input and
 * the boundaries. Events are rendered as compact strings:
 *   F,taker,maker,price,qty  A,id,qty  D,id  X,id,qty,reason  R,id,reason
 * and matching_check_invariants() runs after every command.
 */
#include <stdio.h>
#include <string.h>

#include <check.h>

#include "matching.h"
#include "tap.h"

static struct matching_engine *eng;
static struct matching_batch batch;
static char rendered[1 << 16];

static void setup_with(const struct matching_config *cfg)
{
	ck_assert_int_eq(matching_create(cfg, &eng), MATCHING_OK);
	batch.cap = matching_events_max(eng);
	batch.events = calloc(batch.cap, sizeof(*batch.events));
	ck_assert_ptr_nonnull(batch.events);
}

static void setup(void)
{
	struct matching_config cfg;
	matching_config_default(&cfg);
	cfg.orders_max = 4096;
	cfg.levels_max = 4096;
	cfg.books_max = 64;
	setup_with(&cfg);
}

static void teardown(void)
{
	matching_destroy(eng);
	free(batch.events);
	eng = NULL;
}

/* A small engine (16 orders and levels) for tests that change the configuration. */
static struct matching_config small_config(void)
{
	struct matching_config cfg;
	matching_config_default(&cfg);
	cfg.orders_max = 16;
	cfg.levels_max = 16;
	return cfg;
}

/* Replaces the fixture's engine with one built from cfg. */
static void restart(const struct matching_config *cfg)
{
	teardown();
	setup_with(cfg);
}

static const char *render(void)
{
	size_t n = 0;
	rendered[0] = '\0';
	for (size_t i = 0; i < batch.n; i++) {
		const struct matching_event *e = &batch.events[i];
		const char *sep = i ? " " : "";
		int w = 0;
		switch (e->type) {
		case MATCHING_EV_FILL:
			w = snprintf(rendered + n, sizeof(rendered) - n, "%sF,%llu,%llu,%lld,%lld",
				     sep, (unsigned long long)e->order_id,
				     (unsigned long long)e->maker_id, (long long)e->price,
				     (long long)e->qty);
			break;
		case MATCHING_EV_RESTING:
			w = snprintf(rendered + n, sizeof(rendered) - n, "%sA,%llu,%lld", sep,
				     (unsigned long long)e->order_id, (long long)e->qty);
			break;
		case MATCHING_EV_DONE:
			w = snprintf(rendered + n, sizeof(rendered) - n, "%sD,%llu", sep,
				     (unsigned long long)e->order_id);
			break;
		case MATCHING_EV_REMOVED:
			w = snprintf(rendered + n, sizeof(rendered) - n, "%sX,%llu,%lld,%s", sep,
				     (unsigned long long)e->order_id, (long long)e->qty,
				     matching_reason_name(e->reason));
			break;
		case MATCHING_EV_REJECTED:
			w = snprintf(rendered + n, sizeof(rendered) - n, "%sR,%llu,%s", sep,
				     (unsigned long long)e->order_id,
				     matching_reason_name(e->reason));
			break;
		default:
			ck_abort_msg("unknown event type %d", e->type);
		}
		ck_assert_int_gt(w, 0);
		n += (size_t)w;
		ck_assert_uint_lt(n, sizeof(rendered));
	}
	const char *why = matching_check_invariants(eng);
	ck_assert_msg(why == NULL, "invariant: %s", why ? why : "");
	return rendered;
}

static uint32_t book_named(const char *name)
{
	uint32_t b;
	if (matching_book_find(eng, name, strlen(name), &b) == MATCHING_OK)
		return b;
	struct matching_product p;
	ck_assert_int_eq(matching_product_parse(name, strlen(name), 300000, &p), MATCHING_OK);
	ck_assert_int_eq(matching_book_create(eng, &p, &b), MATCHING_OK);
	return b;
}

static uint32_t book_with(const char *name, int64_t gate_ms, int64_t tick)
{
	struct matching_product p;
	uint32_t b;
	ck_assert_int_eq(matching_product_parse(name, strlen(name), 0, &p), MATCHING_OK);
	p.gate_ms = gate_ms;
	p.tick = tick;
	ck_assert_int_eq(matching_book_create(eng, &p, &b), MATCHING_OK);
	return b;
}

static const char *order_full(uint64_t id, uint32_t acct, uint32_t book, int side, int tif, int stp,
			      int64_t px, int64_t qty, int64_t expire)
{
	struct matching_order o = {
		.order_id = id,
		.account = acct,
		.book = book,
		.side = (uint8_t)side,
		.tif = (uint8_t)tif,
		.stp = (uint8_t)stp,
		.price = px,
		.qty = qty,
		.expire_ms = expire,
	};
	ck_assert_int_eq(matching_submit(eng, &o, &batch), MATCHING_OK);
	return render();
}

#define B MATCHING_BUY
#define S MATCHING_SELL

static const char *order(uint64_t id, uint32_t acct, int side, int tif, int64_t px, int64_t qty)
{
	return order_full(id, acct, book_named("H100"), side, tif, MATCHING_STP_DEFAULT, px, qty,
			  0);
}

static const char *gtc(uint64_t id, uint32_t acct, int side, int64_t px, int64_t qty)
{
	return order(id, acct, side, MATCHING_GTC, px, qty);
}

static const char *cancel(uint64_t id)
{
	ck_assert_int_eq(matching_cancel(eng, id, &batch), MATCHING_OK);
	return render();
}

static const char *modify(uint64_t id, int64_t px, int64_t qty)
{
	ck_assert_int_eq(matching_modify(eng, id, px, qty, &batch), MATCHING_OK);
	return render();
}

static const char *advance(int64_t now)
{
	ck_assert_int_eq(matching_advance(eng, now, &batch), MATCHING_OK);
	return render();
}

static const char *basket(uint64_t first_id, uint32_t acct, int side, int stp, int64_t px,
			  int64_t qty, const char *const *products, uint32_t n)
{
	struct matching_basket b = {
		.account = acct,
		.side = (uint8_t)side,
		.stp = (uint8_t)stp,
		.price = px,
		.qty = qty,
		.n_legs = n,
	};
	for (uint32_t i = 0; i < n; i++) {
		b.order_ids[i] = first_id + i;
		b.books[i] = book_named(products[i]);
	}
	ck_assert_int_eq(matching_submit_basket(eng, &b, &batch), MATCHING_OK);
	return render();
}

static int64_t open_qty(uint64_t id)
{
	struct matching_order_view v;
	if (matching_order_get(eng, id, &v) != MATCHING_OK)
		return -1;
	return v.qty;
}

/* ---------- lifecycle ---------- */

START_TEST(config_rejects_bad_values)
{
	struct matching_config cfg;
	struct matching_engine *e = (struct matching_engine *)&cfg; /* must stay untouched */
	matching_config_default(&cfg);
	cfg.orders_max = 0;
	ck_assert_int_eq(matching_create(&cfg, &e), MATCHING_ERR_CONFIG);
	ck_assert_ptr_eq(e, (struct matching_engine *)&cfg);
	matching_config_default(&cfg);
	cfg.levels_max = MATCHING_LEVELS_CEILING + 1;
	ck_assert_int_eq(matching_create(&cfg, &e), MATCHING_ERR_CONFIG);
	matching_config_default(&cfg);
	cfg.stp_default = MATCHING_STP_DEFAULT;
	ck_assert_int_eq(matching_create(&cfg, &e), MATCHING_ERR_CONFIG);
	matching_config_default(&cfg);
	cfg.price_max = 0;
	ck_assert_int_eq(matching_create(&cfg, &e), MATCHING_ERR_CONFIG);
	matching_config_default(&cfg);
	cfg.qty_max = INT64_MAX; /* qty_max * orders_max would overflow level totals */
	ck_assert_int_eq(matching_create(&cfg, &e), MATCHING_ERR_CONFIG);
	matching_destroy(NULL);
}
END_TEST

START_TEST(small_batch_is_refused_before_any_effect)
{
	struct matching_event few[4];
	struct matching_batch small = {.events = few, .cap = 4};
	struct matching_order o = {
		.order_id = 1, .account = 1, .book = book_named("H100"), .price = 100, .qty = 1};
	ck_assert_int_eq(matching_submit(eng, &o, &small), MATCHING_ERR_EVENT_BUFFER);
	ck_assert_int_eq(matching_cancel(eng, 1, NULL), MATCHING_ERR_EVENT_BUFFER);
	ck_assert_int_eq(matching_advance(eng, 5, &small), MATCHING_ERR_EVENT_BUFFER);
	ck_assert_uint_eq(matching_order_count(eng), 0);
	ck_assert_int_eq(matching_now(eng), 0);
	ck_assert_uint_eq(matching_events_max(eng), 4096 + MATCHING_EVENTS_EXTRA);
}
END_TEST

START_TEST(product_names_parse_strictly)
{
	struct matching_product p, untouched;
	memset(&untouched, 0x5a, sizeof(untouched));
	p = untouched;
	ck_assert_int_eq(matching_product_parse("H100-80G/2026-11-22T19", 22, 300000, &p),
			 MATCHING_OK);
	ck_assert_str_eq(p.class_name, "H100-80G");
	ck_assert_int_eq(p.period_start_ms, 1795374000000LL); /* 2026-11-22T19:00Z */
	ck_assert_int_eq(p.period_ms, 3600000);
	ck_assert_int_eq(p.gate_ms, 1795374000000LL - 300000);
	ck_assert_int_eq(p.tick, 1);
	ck_assert_int_eq(matching_product_parse("A100", 4, 300000, &p), MATCHING_OK);
	ck_assert_int_eq(p.period_start_ms, MATCHING_NO_PERIOD);
	ck_assert_int_eq(p.gate_ms, MATCHING_NO_GATE);
	/* A period at the epoch: the gate never goes below clock time 0. */
	ck_assert_int_eq(matching_product_parse("X/1970-01-01T00", 15, 300000, &p), MATCHING_OK);
	ck_assert_int_eq(p.gate_ms, 0);
	ck_assert_int_eq(matching_product_parse("X/2024-02-29T23", 15, 0, &p), MATCHING_OK);
	static const char *const bad[] = {
		"X/2023-02-29T10",
		"X/2026-13-01T00",
		"X/2026-11-22T24",
		"X/2026-11-31T00",
		"X/2026-11-22",
		"X/2026-11-22T1",
		"/2026-11-22T10",
		"X/",
		"A B",
		"X,Y",
		"",
		"X/1969-12-31T23",
		"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456/2026-11-22T19",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p = untouched;
		ck_assert_msg(matching_product_parse(bad[i], strlen(bad[i]), 0, &p) ==
				      MATCHING_ERR_PRODUCT,
			      "accepted %s", bad[i]);
		ck_assert_msg(memcmp(&p, &untouched, sizeof(p)) == 0, "touched output");
	}
	char longname[80];
	memset(longname, 'A', sizeof(longname));
	ck_assert_int_eq(matching_product_parse(longname, 64, 0, &p), MATCHING_ERR_PRODUCT);
	ck_assert_int_eq(matching_product_parse("X", 1, -1, &p), MATCHING_ERR_PRODUCT);
}
END_TEST

START_TEST(hour_names_walk_the_calendar)
{
	struct matching_product p;
	char name[MATCHING_PRODUCT_NAME_MAX + 1] = "untouched";
	ck_assert_int_eq(matching_product_parse("H100/2024-02-28T22", 18, 0, &p), MATCHING_OK);
	ck_assert_int_eq(matching_product_hour_name(&p, 0, name), MATCHING_OK);
	ck_assert_str_eq(name, "H100/2024-02-28T22");
	ck_assert_int_eq(matching_product_hour_name(&p, 3, name), MATCHING_OK);
	ck_assert_str_eq(name, "H100/2024-02-29T01"); /* a leap day */
	ck_assert_int_eq(matching_product_hour_name(&p, 26, name), MATCHING_OK);
	ck_assert_str_eq(name, "H100/2024-03-01T00");
	ck_assert_int_eq(matching_product_parse("A/2026-12-31T23", 15, 0, &p), MATCHING_OK);
	ck_assert_int_eq(matching_product_hour_name(&p, 1, name), MATCHING_OK);
	ck_assert_str_eq(name, "A/2027-01-01T00");
	/* Every hour of four years round-trips through the parser. */
	ck_assert_int_eq(matching_product_parse("X/2027-01-01T00", 15, 0, &p), MATCHING_OK);
	for (uint32_t h = 0; h < 4 * 366 * 24; h += 7) {
		struct matching_product q;
		ck_assert_int_eq(matching_product_hour_name(&p, h, name), MATCHING_OK);
		ck_assert_int_eq(matching_product_parse(name, strlen(name), 0, &q), MATCHING_OK);
		ck_assert_int_eq(q.period_start_ms, p.period_start_ms + (int64_t)h * 3600000);
	}
	strcpy(name, "untouched");
	ck_assert_int_eq(matching_product_parse("A100", 4, 0, &p), MATCHING_OK);
	ck_assert_int_eq(matching_product_hour_name(&p, 1, name), MATCHING_ERR_PRODUCT);
	ck_assert_str_eq(name, "untouched");
	ck_assert_int_eq(matching_product_parse("X/9999-12-31T23", 15, 0, &p), MATCHING_OK);
	ck_assert_int_eq(matching_product_hour_name(&p, 1, name), MATCHING_ERR_PRODUCT);
}
END_TEST

START_TEST(books_are_unique_and_bounded)
{
	struct matching_product p;
	uint32_t b0, b1;
	ck_assert_int_eq(matching_product_parse("A100", 4, 0, &p), MATCHING_OK);
	ck_assert_int_eq(matching_book_create(eng, &p, &b0), MATCHING_OK);
	ck_assert_int_eq(matching_book_create(eng, &p, &b1), MATCHING_ERR_EXISTS);
	ck_assert_int_eq(matching_book_find(eng, "A100", 4, &b1), MATCHING_OK);
	ck_assert_uint_eq(b0, b1);
	ck_assert_int_eq(matching_book_find(eng, "A10", 3, &b1), MATCHING_ERR_NOT_FOUND);
	p.tick = 0;
	strcpy(p.name, "A100/x");
	ck_assert_int_eq(matching_book_create(eng, &p, &b1), MATCHING_ERR_PRODUCT);
	for (int i = 1; i < 64; i++) {
		char name[16];
		snprintf(name, sizeof(name), "C%d", i);
		ck_assert_int_eq(matching_product_parse(name, strlen(name), 0, &p), MATCHING_OK);
		ck_assert_int_eq(matching_book_create(eng, &p, &b1), MATCHING_OK);
	}
	ck_assert_int_eq(matching_product_parse("C64", 3, 0, &p), MATCHING_OK);
	ck_assert_int_eq(matching_book_create(eng, &p, &b1), MATCHING_ERR_BOOKS_FULL);
	ck_assert_uint_eq(matching_book_count(eng), 64);
	ck_assert_ptr_null(matching_book_product(eng, 64));
	ck_assert(matching_book_closed(eng, 64));
}
END_TEST

START_TEST(retired_books_give_their_numbers_back)
{
	char name[32];
	uint32_t b;
	for (int i = 0; i < 64; i++) {
		snprintf(name, sizeof(name), "C%d", i);
		ck_assert_uint_eq(book_with(name, i < 62 ? 1000 : MATCHING_NO_GATE, 1),
				  (uint32_t)i);
	}
	ck_assert_str_eq(order_full(1, 1, 5, B, MATCHING_GTC, 0, 99, 1, 0), "A,1,1");
	/* Open books stay; unknown numbers are no books. */
	ck_assert_int_eq(matching_book_retire(eng, 5), MATCHING_ERR_OPEN);
	ck_assert_int_eq(matching_book_retire(eng, 64), MATCHING_ERR_NOT_FOUND);
	ck_assert_str_eq(advance(1000), "X,1,1,gate_closed");
	ck_assert_int_eq(matching_book_retire(eng, 63), MATCHING_ERR_OPEN);
	ck_assert_int_eq(matching_book_retire(eng, 5), MATCHING_OK);
	ck_assert_int_eq(matching_book_retire(eng, 5), MATCHING_ERR_NOT_FOUND);
	ck_assert_int_eq(matching_book_retire(eng, 2), MATCHING_OK);
	render(); /* the invariants, the name index's among them */
	ck_assert_uint_eq(matching_book_live(eng), 62);
	ck_assert_uint_eq(matching_book_count(eng), 64);
	ck_assert_int_eq(matching_book_find(eng, "C5", 2, &b), MATCHING_ERR_NOT_FOUND);
	ck_assert_int_eq(matching_book_find(eng, "C6", 2, &b), MATCHING_OK);
	ck_assert_uint_eq(b, 6);
	ck_assert_ptr_null(matching_book_product(eng, 5));
	ck_assert(matching_book_closed(eng, 5));
	ck_assert_str_eq(order_full(2, 1, 5, B, MATCHING_GTC, 0, 99, 1, 0), "R,2,unknown_product");
	/* New products take the lowest free numbers, then the table is full again. */
	ck_assert_uint_eq(book_with("N1", MATCHING_NO_GATE, 1), 2);
	ck_assert_uint_eq(book_with("C5", MATCHING_NO_GATE, 1), 5);
	ck_assert_str_eq(order_full(3, 1, 5, B, MATCHING_GTC, 0, 99, 1, 0), "A,3,1");
	struct matching_product p;
	ck_assert_int_eq(matching_product_parse("N3", 2, 0, &p), MATCHING_OK);
	ck_assert_int_eq(matching_book_create(eng, &p, &b), MATCHING_ERR_BOOKS_FULL);
	/* Retiring the highest numbers lowers the count past every retired one below. */
	ck_assert_int_eq(matching_book_retire(eng, 59), MATCHING_OK);
	ck_assert_int_eq(matching_book_retire(eng, 61), MATCHING_OK);
	ck_assert_uint_eq(matching_book_count(eng), 64);
	ck_assert_int_eq(matching_book_retire(eng, 60), MATCHING_OK);
	ck_assert_uint_eq(matching_book_count(eng), 64);
	render();
	ck_assert_uint_eq(book_with("N3", 1000, 1), 59);
	ck_assert_uint_eq(matching_book_live(eng), 62);
	ck_assert_str_eq(advance(2000), "");
	for (uint32_t i = 0; i < 60; i++) /* 60 and 61 are retired, 2 and 5 open */
		if (i != 2 && i != 5)
			ck_assert_int_eq(matching_book_retire(eng, i), MATCHING_OK);
	render();
	ck_assert_uint_eq(matching_book_count(eng), 64);
	ck_assert_uint_eq(matching_book_live(eng), 4);
	ck_assert_uint_eq(book_with("N4", 1000, 1), 0);
	ck_assert_int_eq(matching_book_find(eng, "C63", 3, &b), MATCHING_OK);
	ck_assert_uint_eq(b, 63);
	ck_assert_int_eq(matching_book_find(eng, "C62", 3, &b), MATCHING_OK);
	ck_assert_uint_eq(b, 62);
}
END_TEST

START_TEST(retired_numbers_shrink_the_count)
{
	for (int i = 0; i < 4; i++) {
		char name[8];
		snprintf(name, sizeof(name), "D%d", i);
		book_with(name, 10, 1);
	}
	ck_assert_str_eq(advance(10), "");
	ck_assert_int_eq(matching_book_retire(eng, 1), MATCHING_OK);
	ck_assert_int_eq(matching_book_retire(eng, 2), MATCHING_OK);
	ck_assert_uint_eq(matching_book_count(eng), 4);
	ck_assert_int_eq(matching_book_retire(eng, 3), MATCHING_OK);
	ck_assert_uint_eq(matching_book_count(eng), 1);
	ck_assert_uint_eq(matching_book_live(eng), 1);
	render();
	ck_assert_int_eq(matching_book_retire(eng, 0), MATCHING_OK);
	ck_assert_uint_eq(matching_book_count(eng), 0);
	render();
	ck_assert_uint_eq(book_with("D3", MATCHING_NO_GATE, 1), 0);
}
END_TEST

START_TEST(books_restore_at_their_numbers)
{
	struct matching_product p;
	uint32_t b;
	ck_assert_int_eq(matching_product_parse("R1", 2, 0, &p), MATCHING_OK);
	ck_assert_int_eq(matching_book_create_at(eng, &p, 3), MATCHING_OK);
	render();
	ck_assert_uint_eq(matching_book_count(eng), 4);
	ck_assert_uint_eq(matching_book_live(eng), 1);
	ck_assert_ptr_null(matching_book_product(eng, 1));
	ck_assert_int_eq(matching_book_create_at(eng, &p, 1), MATCHING_ERR_EXISTS);
	ck_assert_int_eq(matching_product_parse("R2", 2, 0, &p), MATCHING_OK);
	ck_assert_int_eq(matching_book_create_at(eng, &p, 3), MATCHING_ERR_EXISTS);
	ck_assert_int_eq(matching_book_create_at(eng, &p, 64), MATCHING_ERR_BOOKS_FULL);
	p.tick = 0;
	ck_assert_int_eq(matching_book_create_at(eng, &p, 1), MATCHING_ERR_PRODUCT);
	p.tick = 1;
	ck_assert_int_eq(matching_book_create_at(eng, &p, 1), MATCHING_OK);
	ck_assert_int_eq(matching_product_parse("R3", 2, 0, &p), MATCHING_OK);
	ck_assert_int_eq(matching_book_create(eng, &p, &b), MATCHING_OK);
	ck_assert_uint_eq(b, 0);
	ck_assert_int_eq(matching_product_parse("R4", 2, 0, &p), MATCHING_OK);
	ck_assert_int_eq(matching_book_create(eng, &p, &b), MATCHING_OK);
	ck_assert_uint_eq(b, 2);
	ck_assert_int_eq(matching_product_parse("R5", 2, 0, &p), MATCHING_OK);
	ck_assert_int_eq(matching_book_create(eng, &p, &b), MATCHING_OK);
	ck_assert_uint_eq(b, 4);
	render();
}
END_TEST

/* ---------- price-time priority ---------- */

START_TEST(best_price_then_time)
{
	ck_assert_str_eq(gtc(1, 1, S, 101, 5), "A,1,5");
	ck_assert_str_eq(gtc(2, 2, S, 100, 5), "A,2,5");
	ck_assert_str_eq(gtc(3, 3, S, 100, 5), "A,3,5");
	ck_assert_str_eq(gtc(4, 4, S, 102, 5), "A,4,5");
	/* The buyer pays each maker's own price, best price first, then time. */
	ck_assert_str_eq(gtc(10, 9, B, 101, 12),
			 "F,10,2,100,5 D,2 F,10,3,100,5 D,3 F,10,1,101,2 D,10");
	ck_assert_int_eq(open_qty(1), 3);
	ck_assert_str_eq(gtc(11, 9, B, 103, 9), "F,11,1,101,3 D,1 F,11,4,102,5 D,4 A,11,1");
	ck_assert_int_eq(open_qty(11), 1);
}
END_TEST

START_TEST(fill_equal_to_remaining_completes_both)
{
	ck_assert_str_eq(gtc(1, 1, B, 100, 7), "A,1,7");
	ck_assert_str_eq(gtc(2, 2, S, 100, 7), "F,2,1,100,7 D,1 D,2");
	ck_assert_int_eq(matching_order_count(eng), 0);
	/* One short: the maker keeps one, the taker is done. */
	ck_assert_str_eq(gtc(3, 1, B, 100, 7), "A,3,7");
	ck_assert_str_eq(gtc(4, 2, S, 99, 6), "F,4,3,100,6 D,4");
	ck_assert_int_eq(open_qty(3), 1);
}
END_TEST

START_TEST(no_trade_without_crossing)
{
	ck_assert_str_eq(gtc(1, 1, B, 100, 1), "A,1,1");
	ck_assert_str_eq(gtc(2, 2, S, 101, 1), "A,2,1");
	struct matching_level_view v[2];
	ck_assert_uint_eq(matching_book_depth(eng, book_named("H100"), S, v, 2), 1);
	ck_assert_int_eq(v[0].price, 101);
	ck_assert_str_eq(gtc(3, 3, S, 100, 2), "F,3,1,100,1 D,1 A,3,1");
	ck_assert_uint_eq(matching_book_depth(eng, book_named("H100"), S, v, 2), 2);
	ck_assert_int_eq(v[0].price, 100);
	ck_assert_int_eq(v[1].price, 101);
}
END_TEST

START_TEST(fill_events_carry_accounts_and_remainders)
{
	ck_assert_str_eq(gtc(1, 7, S, 100, 5), "A,1,5");
	ck_assert_str_eq(gtc(2, 8, B, 100, 3), "F,2,1,100,3 D,2");
	const struct matching_event *f = &batch.events[0];
	ck_assert_uint_eq(f->account, 8);
	ck_assert_uint_eq(f->maker_account, 7);
	ck_assert_int_eq(f->taker_left, 0);
	ck_assert_int_eq(f->maker_left, 2);
	ck_assert_uint_eq(f->fill_id, 1);
	ck_assert_str_eq(gtc(3, 8, B, 100, 3), "F,3,1,100,2 D,1 A,3,1");
	ck_assert_uint_eq(batch.events[0].fill_id, 2);
	ck_assert_int_eq(batch.events[0].taker_left, 1);
}
END_TEST

/* ---------- validation ---------- */

START_TEST(bad_prices_and_quantities_are_rejected)
{
	ck_assert_str_eq(gtc(1, 1, B, 0, 1), "R,1,bad_price");
	ck_assert_str_eq(gtc(1, 1, B, -5, 1), "R,1,bad_price");
	ck_assert_str_eq(gtc(1, 1, B, 1000000000001LL, 1), "R,1,bad_price");
	ck_assert_str_eq(gtc(1, 1, B, 1000000000000LL, 1), "A,1,1");
	ck_assert_str_eq(gtc(2, 1, B, 1, 0), "R,2,bad_qty");
	ck_assert_str_eq(gtc(2, 1, B, 1, -1), "R,2,bad_qty");
	ck_assert_str_eq(gtc(2, 1, B, 1, 10000001), "R,2,bad_qty");
	ck_assert_str_eq(gtc(2, 1, S, 2000000000000LL / 2, 10000000), "R,2,overflow");
	ck_assert_str_eq(gtc(2, 1, B, 1, 10000000), "A,2,10000000");
	ck_assert_str_eq(gtc(2, 1, B, 1, 1), "R,2,duplicate_order");
	ck_assert_str_eq(order_full(3, 1, 99, B, MATCHING_GTC, 0, 5, 1, 0), "R,3,unknown_product");
	ck_assert_str_eq(order_full(3, 1, book_named("H100"), 2, MATCHING_GTC, 0, 5, 1, 0),
			 "R,3,bad_order");
	ck_assert_str_eq(order_full(3, 1, book_named("H100"), B, 9, 0, 5, 1, 0), "R,3,bad_order");
	ck_assert_str_eq(order_full(3, 1, book_named("H100"), B, MATCHING_GTC, 9, 5, 1, 0),
			 "R,3,bad_order");
	ck_assert_uint_eq(matching_order_count(eng), 2);
}
END_TEST

START_TEST(coarse_tick_accepts_only_multiples)
{
	uint32_t b = book_with("T5", MATCHING_NO_GATE, 5);
	ck_assert_str_eq(order_full(1, 1, b, B, MATCHING_GTC, 0, 12, 1, 0), "R,1,bad_price");
	ck_assert_str_eq(order_full(1, 1, b, B, MATCHING_GTC, 0, 15, 1, 0), "A,1,1");
	ck_assert_str_eq(order_full(2, 2, b, S, MATCHING_GTC, 0, 15, 1, 0), "F,2,1,15,1 D,1 D,2");
}
END_TEST

/* The engine divides by the tick with a reciprocal multiply: check it is exact. */
START_TEST(tick_division_is_exact_at_the_extremes)
{
	struct matching_config cfg = small_config();
	cfg.price_max = MATCHING_PRICE_CEILING;
	cfg.qty_max = 1;
	restart(&cfg);
	static const int64_t ticks[] = {1,
					2,
					3,
					7,
					100,
					999983,
					2147483647,
					1000000000000LL,
					(INT64_C(1) << 61) + 1,
					MATCHING_PRICE_CEILING};
	uint64_t id = 1;
	for (size_t i = 0; i < sizeof(ticks) / sizeof(ticks[0]); i++) {
		char name[16];
		snprintf(name, sizeof(name), "T%zu", i);
		uint32_t b = book_with(name, MATCHING_NO_GATE, ticks[i]);
		int64_t t = ticks[i], top = MATCHING_PRICE_CEILING / t * t, twice;
		if (__builtin_mul_overflow(t, 2, &twice))
			twice = 0; /* skipped below */
		int64_t prices[] = {t, twice, top, top - t, t + 1, top - 1, t - 1, top + 1};
		for (size_t k = 0; k < sizeof(prices) / sizeof(prices[0]); k++) {
			int64_t px = prices[k];
			if (px < 1 || px > MATCHING_PRICE_CEILING)
				continue;
			const char *got = order_full(id, 1, b, B, MATCHING_IOC, 0, px, 1, 0);
			bool on_tick = px % t == 0;
			char want[64];
			snprintf(want, sizeof(want),
				 on_tick ? "X,%llu,1,ioc_remainder" : "R,%llu,bad_price",
				 (unsigned long long)id);
			ck_assert_msg(strcmp(got, want) == 0, "tick %lld price %lld: %s",
				      (long long)t, (long long)px, got);
			id++;
		}
	}
}
END_TEST

START_TEST(overflow_is_rejected_not_wrapped)
{
	struct matching_config cfg = small_config();
	cfg.price_max = MATCHING_PRICE_CEILING + 1;
	ck_assert_int_eq(matching_create(&cfg, &eng), MATCHING_ERR_CONFIG);
	cfg.price_max = MATCHING_PRICE_CEILING;
	cfg.qty_max = 1000000;
	restart(&cfg);
	const int64_t p62 = MATCHING_PRICE_CEILING, p61 = p62 / 2;
	ck_assert_str_eq(gtc(1, 1, S, p62, 1), "A,1,1");
	ck_assert_str_eq(gtc(2, 1, S, p62, 2), "R,2,overflow"); /* 2^63 */
	ck_assert_str_eq(gtc(2, 1, S, p61, 3), "A,2,3");
	ck_assert_str_eq(gtc(3, 1, S, p61, 4), "R,3,overflow");
	ck_assert_str_eq(gtc(3, 1, S, 1, 1), "A,3,1");
	ck_assert_str_eq(modify(3, p62, 2), "R,3,overflow");
	ck_assert_int_eq(open_qty(3), 1);
	/* The limit's notional is checked, even though trades happen at better prices. */
	ck_assert_str_eq(gtc(4, 2, B, p62, 5), "R,4,overflow");
	ck_assert_str_eq(gtc(4, 2, B, p61, 3), "F,4,3,1,1 D,3 F,4,2,2305843009213693952,2 D,4");
}
END_TEST

/* ---------- time in force ---------- */

START_TEST(ioc_never_rests)
{
	ck_assert_str_eq(order(1, 1, B, MATCHING_IOC, 100, 5), "X,1,5,ioc_remainder");
	ck_assert_str_eq(gtc(2, 2, S, 100, 3), "A,2,3");
	ck_assert_str_eq(order(3, 1, B, MATCHING_IOC, 100, 5),
			 "F,3,2,100,3 D,2 X,3,2,ioc_remainder");
	ck_assert_str_eq(gtc(4, 2, S, 100, 3), "A,4,3");
	ck_assert_str_eq(order(5, 1, B, MATCHING_IOC, 100, 3), "F,5,4,100,3 D,4 D,5");
	ck_assert_uint_eq(matching_order_count(eng), 0);
}
END_TEST

START_TEST(fok_all_or_nothing)
{
	ck_assert_str_eq(gtc(1, 1, S, 100, 3), "A,1,3");
	ck_assert_str_eq(gtc(2, 2, S, 101, 3), "A,2,3");
	ck_assert_str_eq(order(3, 9, B, MATCHING_FOK, 101, 7), "X,3,7,fok_killed");
	ck_assert_str_eq(order(3, 9, B, MATCHING_FOK, 100, 4), "X,3,4,fok_killed");
	ck_assert_int_eq(open_qty(1), 3);
	ck_assert_int_eq(open_qty(2), 3);
	ck_assert_str_eq(order(3, 9, B, MATCHING_FOK, 101, 6),
			 "F,3,1,100,3 D,1 F,3,2,101,3 D,2 D,3");
}
END_TEST

START_TEST(post_only_never_takes)
{
	ck_assert_str_eq(gtc(1, 1, S, 100, 3), "A,1,3");
	ck_assert_str_eq(order(2, 2, B, MATCHING_POST, 100, 1), "R,2,would_cross");
	ck_assert_str_eq(order(2, 2, B, MATCHING_POST, 99, 1), "A,2,1");
	ck_assert_str_eq(order(3, 2, S, MATCHING_POST, 99, 1), "R,3,would_cross");
	ck_assert_str_eq(order(3, 2, S, MATCHING_POST, 100, 1), "A,3,1");
	ck_assert_str_eq(modify(2, 100, 1), "R,2,would_cross");
	ck_assert_int_eq(open_qty(2), 1);
}
END_TEST

START_TEST(gtd_expires_with_the_clock)
{
	uint32_t b = book_named("H100");
	ck_assert_str_eq(order_full(1, 1, b, B, MATCHING_GTD, 0, 100, 1, 0), "R,1,bad_expiry");
	ck_assert_str_eq(advance(10), "");
	ck_assert_str_eq(order_full(1, 1, b, B, MATCHING_GTD, 0, 100, 1, 10), "R,1,bad_expiry");
	ck_assert_str_eq(order_full(1, 1, b, B, MATCHING_GTD, 0, 100, 1, 50), "A,1,1");
	ck_assert_str_eq(order_full(2, 1, b, B, MATCHING_GTD, 0, 101, 2, 30), "A,2,2");
	ck_assert_str_eq(order_full(3, 1, b, B, MATCHING_GTD, 0, 99, 3, 30), "A,3,3");
	ck_assert_str_eq(advance(29), "");
	/* Equal expiry: by order id. */
	ck_assert_str_eq(advance(30), "X,2,2,expired X,3,3,expired");
	ck_assert_str_eq(modify(1, 100, 1), "A,1,1");
	ck_assert_str_eq(advance(100), "X,1,1,expired");
	ck_assert_int_eq(matching_advance(eng, 99, &batch), MATCHING_ERR_CLOCK);
	ck_assert_int_eq(matching_now(eng), 100);
}
END_TEST

START_TEST(gtd_partial_fill_then_expiry)
{
	uint32_t b = book_named("H100");
	ck_assert_str_eq(order_full(1, 1, b, S, MATCHING_GTD, 0, 100, 5, 1000), "A,1,5");
	ck_assert_str_eq(gtc(2, 2, B, 100, 2), "F,2,1,100,2 D,2");
	ck_assert_str_eq(modify(1, 101, 3), "A,1,3");
	ck_assert_str_eq(gtc(3, 2, B, 101, 3), "F,3,1,101,3 D,1 D,3");
	ck_assert_str_eq(advance(1000), "");
}
END_TEST

/* ---------- cancel and modify ---------- */

START_TEST(cancel_removes_open_quantity)
{
	ck_assert_str_eq(cancel(1), "R,1,unknown_order");
	ck_assert_str_eq(gtc(1, 1, S, 100, 5), "A,1,5");
	ck_assert_str_eq(gtc(2, 2, B, 100, 2), "F,2,1,100,2 D,2");
	ck_assert_str_eq(cancel(1), "X,1,3,cancelled");
	ck_assert_str_eq(cancel(1), "R,1,unknown_order");
	ck_assert_str_eq(gtc(3, 2, B, 100, 2), "A,3,2");
}
END_TEST

START_TEST(modify_reduction_keeps_priority)
{
	ck_assert_str_eq(gtc(1, 1, S, 100, 5), "A,1,5");
	ck_assert_str_eq(gtc(2, 2, S, 100, 5), "A,2,5");
	ck_assert_str_eq(modify(1, 100, 4), "A,1,4");
	ck_assert_str_eq(modify(1, 100, 4), "A,1,4");
	ck_assert_str_eq(gtc(3, 3, B, 100, 4), "F,3,1,100,4 D,1 D,3");
}
END_TEST

START_TEST(modify_increase_or_price_loses_priority)
{
	ck_assert_str_eq(gtc(1, 1, S, 100, 5), "A,1,5");
	ck_assert_str_eq(gtc(2, 2, S, 100, 5), "A,2,5");
	ck_assert_str_eq(modify(1, 100, 6), "A,1,6");
	ck_assert_str_eq(gtc(3, 3, B, 100, 5), "F,3,2,100,5 D,2 D,3");
	ck_assert_str_eq(gtc(4, 2, S, 100, 5), "A,4,5");
	ck_assert_str_eq(modify(1, 101, 6), "A,1,6");
	ck_assert_str_eq(modify(1, 100, 6), "A,1,6");
	ck_assert_str_eq(gtc(5, 3, B, 100, 5), "F,5,4,100,5 D,4 D,5");
}
END_TEST

START_TEST(modify_uses_open_not_original_quantity)
{
	ck_assert_str_eq(gtc(1, 1, S, 100, 10), "A,1,10");
	ck_assert_str_eq(gtc(2, 2, S, 100, 1), "A,2,1");
	ck_assert_str_eq(gtc(3, 3, B, 100, 6), "F,3,1,100,6 D,3");
	/* Open is 4: 5 is an increase (loses priority), though below the original 10. */
	ck_assert_str_eq(modify(1, 100, 5), "A,1,5");
	ck_assert_str_eq(gtc(4, 3, B, 100, 1), "F,4,2,100,1 D,2 D,4");
	ck_assert_str_eq(modify(1, 100, 3), "A,1,3");
	ck_assert_int_eq(open_qty(1), 3);
}
END_TEST

START_TEST(modify_can_trade_at_once)
{
	ck_assert_str_eq(gtc(1, 1, S, 105, 5), "A,1,5");
	ck_assert_str_eq(gtc(2, 2, B, 100, 8), "A,2,8");
	ck_assert_str_eq(modify(2, 105, 8), "F,2,1,105,5 D,1 A,2,3");
	ck_assert_str_eq(gtc(3, 1, S, 106, 3), "A,3,3");
	ck_assert_str_eq(modify(2, 106, 3), "F,2,3,106,3 D,3 D,2");
	ck_assert_int_eq(open_qty(2), -1);
}
END_TEST

START_TEST(rejected_modify_leaves_the_order)
{
	ck_assert_str_eq(modify(9, 100, 1), "R,9,unknown_order");
	ck_assert_str_eq(gtc(1, 1, S, 100, 5), "A,1,5");
	ck_assert_str_eq(modify(1, 0, 5), "R,1,bad_price");
	ck_assert_str_eq(modify(1, 100, 0), "R,1,bad_qty");
	ck_assert_str_eq(modify(1, 100, 10000001), "R,1,bad_qty");
	ck_assert_int_eq(open_qty(1), 5);
	ck_assert_str_eq(gtc(2, 2, B, 100, 5), "F,2,1,100,5 D,1 D,2");
}
END_TEST

/* ---------- self-trade prevention ---------- */

START_TEST(stp_cancel_newest)
{
	uint32_t b = book_named("H100");
	ck_assert_str_eq(gtc(1, 2, S, 100, 2), "A,1,2");
	ck_assert_str_eq(gtc(2, 1, S, 100, 2), "A,2,2");
	ck_assert_str_eq(gtc(3, 2, S, 100, 2), "A,3,2");
	ck_assert_str_eq(
		order_full(4, 1, b, B, MATCHING_GTC, MATCHING_STP_CANCEL_NEWEST, 100, 5, 0),
		"F,4,1,100,2 D,1 X,4,3,self_trade");
	ck_assert_int_eq(open_qty(2), 2);
	ck_assert_int_eq(open_qty(3), 2);
}
END_TEST

START_TEST(stp_cancel_oldest)
{
	uint32_t b = book_named("H100");
	ck_assert_str_eq(gtc(1, 2, S, 100, 2), "A,1,2");
	ck_assert_str_eq(gtc(2, 1, S, 100, 2), "A,2,2");
	ck_assert_str_eq(gtc(3, 2, S, 100, 2), "A,3,2");
	ck_assert_str_eq(
		order_full(4, 1, b, B, MATCHING_GTC, MATCHING_STP_CANCEL_OLDEST, 100, 5, 0),
		"F,4,1,100,2 D,1 X,2,2,self_trade F,4,3,100,2 D,3 A,4,1");
}
END_TEST

START_TEST(stp_cancel_both)
{
	uint32_t b = book_named("H100");
	ck_assert_str_eq(gtc(1, 1, S, 100, 2), "A,1,2");
	ck_assert_str_eq(gtc(2, 2, S, 100, 2), "A,2,2");
	ck_assert_str_eq(order_full(3, 1, b, B, MATCHING_IOC, MATCHING_STP_CANCEL_BOTH, 100, 5, 0),
			 "X,1,2,self_trade X,3,5,self_trade");
	ck_assert_int_eq(open_qty(2), 2);
}
END_TEST

START_TEST(stp_allow_trades_with_self)
{
	uint32_t b = book_named("H100");
	ck_assert_str_eq(gtc(1, 1, S, 100, 2), "A,1,2");
	ck_assert_str_eq(order_full(2, 1, b, B, MATCHING_GTC, MATCHING_STP_ALLOW, 100, 2, 0),
			 "F,2,1,100,2 D,1 D,2");
}
END_TEST

START_TEST(stp_default_comes_from_config)
{
	struct matching_config cfg = small_config();
	cfg.stp_default = MATCHING_STP_CANCEL_OLDEST;
	restart(&cfg);
	ck_assert_str_eq(gtc(1, 1, S, 100, 2), "A,1,2");
	ck_assert_str_eq(gtc(2, 1, B, 100, 2), "X,1,2,self_trade A,2,2");
}
END_TEST

START_TEST(fok_respects_stp)
{
	uint32_t b = book_named("H100");
	ck_assert_str_eq(gtc(1, 2, S, 100, 2), "A,1,2");
	ck_assert_str_eq(gtc(2, 1, S, 100, 2), "A,2,2");
	ck_assert_str_eq(gtc(3, 2, S, 100, 2), "A,3,2");
	/* Enough quantity in total, but matching would stop at the own order: no partial trade. */
	ck_assert_str_eq(
		order_full(4, 1, b, B, MATCHING_FOK, MATCHING_STP_CANCEL_NEWEST, 100, 4, 0),
		"X,4,4,fok_killed");
	ck_assert_str_eq(order_full(4, 1, b, B, MATCHING_FOK, MATCHING_STP_CANCEL_BOTH, 100, 4, 0),
			 "X,4,4,fok_killed");
	ck_assert_int_eq(open_qty(2), 2);
	ck_assert_str_eq(
		order_full(4, 1, b, B, MATCHING_FOK, MATCHING_STP_CANCEL_OLDEST, 100, 5, 0),
		"X,4,5,fok_killed");
	ck_assert_int_eq(open_qty(2), 2);
	ck_assert_str_eq(
		order_full(4, 1, b, B, MATCHING_FOK, MATCHING_STP_CANCEL_OLDEST, 100, 4, 0),
		"F,4,1,100,2 D,1 X,2,2,self_trade F,4,3,100,2 D,3 D,4");
}
END_TEST

/* ---------- gate closure ---------- */

START_TEST(gate_closure_expires_and_closes)
{
	uint32_t b = book_with("H100/2026-11-22T19", 1000, 1);
	uint32_t other = book_named("A100");
	ck_assert_str_eq(order_full(1, 1, b, B, MATCHING_GTC, 0, 99, 1, 0), "A,1,1");
	ck_assert_str_eq(order_full(2, 1, b, B, MATCHING_GTC, 0, 100, 2, 0), "A,2,2");
	ck_assert_str_eq(order_full(3, 2, b, S, MATCHING_GTC, 0, 105, 3, 0), "A,3,3");
	ck_assert_str_eq(order_full(4, 2, other, S, MATCHING_GTC, 0, 105, 3, 0), "A,4,3");
	ck_assert_str_eq(advance(999), "");
	ck_assert(!matching_book_closed(eng, b));
	ck_assert_str_eq(advance(1000), "X,2,2,gate_closed X,1,1,gate_closed X,3,3,gate_closed");
	ck_assert(matching_book_closed(eng, b));
	ck_assert_str_eq(order_full(5, 1, b, B, MATCHING_GTC, 0, 100, 1, 0), "R,5,closed");
	ck_assert_str_eq(order_full(5, 1, b, B, MATCHING_IOC, 0, 100, 1, 0), "R,5,closed");
	ck_assert_str_eq(cancel(1), "R,1,unknown_order");
	ck_assert_int_eq(open_qty(4), 3);
	/* A book whose gate has passed is born closed. */
	uint32_t late = book_with("H100/2026-11-22T20", 500, 1);
	ck_assert(matching_book_closed(eng, late));
	ck_assert_str_eq(order_full(6, 1, late, B, MATCHING_GTC, 0, 100, 1, 0), "R,6,closed");
}
END_TEST

START_TEST(gates_close_in_time_order)
{
	uint32_t late = book_with("X/2026-11-22T20", 2000, 1);
	uint32_t early = book_with("X/2026-11-22T19", 1000, 1);
	ck_assert_str_eq(order_full(1, 1, late, S, MATCHING_GTC, 0, 10, 1, 0), "A,1,1");
	ck_assert_str_eq(order_full(2, 1, early, S, MATCHING_GTC, 0, 11, 1, 0), "A,2,1");
	ck_assert_str_eq(order_full(3, 1, early, S, MATCHING_GTD, 0, 12, 1, 3000), "A,3,1");
	/* GTD expiries first, then gates in time order. */
	ck_assert_str_eq(advance(5000), "X,3,1,expired X,2,1,gate_closed X,1,1,gate_closed");
}
END_TEST

/* ---------- baskets ---------- */

static const char *const hours4[] = {"H100/2026-11-22T14", "H100/2026-11-22T15",
				     "H100/2026-11-22T16", "H100/2026-11-22T17"};

START_TEST(basket_fills_every_leg)
{
	for (int i = 0; i < 4; i++) {
		uint32_t b = book_named(hours4[i]);
		ck_assert_str_eq(order_full(10 + i, 2, b, S, MATCHING_GTC, 0, 100 + i, 8, 0),
				 i == 0	  ? "A,10,8"
				 : i == 1 ? "A,11,8"
				 : i == 2 ? "A,12,8"
					  : "A,13,8");
	}
	ck_assert_str_eq(basket(100, 1, B, 0, 103, 8, hours4, 4),
			 "F,100,10,100,8 D,10 D,100 F,101,11,101,8 D,11 D,101 "
			 "F,102,12,102,8 D,12 D,102 F,103,13,103,8 D,13 D,103");
}
END_TEST

START_TEST(basket_one_short_leg_kills_all)
{
	for (int i = 0; i < 4; i++)
		(void)order_full(10 + i, 2, book_named(hours4[i]), S, MATCHING_GTC, 0, 100,
				 i == 2 ? 7 : 8, 0);
	ck_assert_str_eq(basket(100, 1, B, 0, 100, 8, hours4, 4),
			 "X,100,8,fok_killed X,101,8,fok_killed X,102,8,fok_killed "
			 "X,103,8,fok_killed");
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(open_qty(10 + i), i == 2 ? 7 : 8);
	/* A price limit below one leg's offer kills it too. */
	ck_assert_str_eq(basket(100, 1, B, 0, 99, 7, hours4, 4),
			 "X,100,7,fok_killed X,101,7,fok_killed X,102,7,fok_killed "
			 "X,103,7,fok_killed");
	ck_assert_str_eq(basket(100, 1, B, 0, 100, 7, hours4, 4),
			 "F,100,10,100,7 D,100 F,101,11,100,7 D,101 F,102,12,100,7 D,12 D,102 "
			 "F,103,13,100,7 D,103");
}
END_TEST

START_TEST(basket_respects_stp)
{
	(void)order_full(10, 2, book_named(hours4[0]), S, MATCHING_GTC, 0, 100, 8, 0);
	(void)order_full(11, 1, book_named(hours4[1]), S, MATCHING_GTC, 0, 100, 8, 0);
	(void)order_full(12, 2, book_named(hours4[1]), S, MATCHING_GTC, 0, 100, 8, 0);
	ck_assert_str_eq(basket(100, 1, B, MATCHING_STP_CANCEL_NEWEST, 100, 8, hours4, 2),
			 "X,100,8,fok_killed X,101,8,fok_killed");
	ck_assert_int_eq(open_qty(10), 8);
	ck_assert_str_eq(basket(100, 1, B, MATCHING_STP_CANCEL_OLDEST, 100, 8, hours4, 2),
			 "F,100,10,100,8 D,10 D,100 X,11,8,self_trade F,101,12,100,8 D,12 D,101");
}
END_TEST

START_TEST(basket_shape_is_checked)
{
	static const char *const gap[] = {"H100/2026-11-22T14", "H100/2026-11-22T16"};
	static const char *const mixed[] = {"H100/2026-11-22T14", "A100/2026-11-22T15"};
	static const char *const reversed[] = {"H100/2026-11-22T15", "H100/2026-11-22T14"};
	static const char *const noperiod[] = {"H100"};
	ck_assert_str_eq(basket(1, 1, B, 0, 100, 1, gap, 2), "R,1,bad_basket R,2,bad_basket");
	ck_assert_str_eq(basket(1, 1, B, 0, 100, 1, mixed, 2), "R,1,bad_basket R,2,bad_basket");
	ck_assert_str_eq(basket(1, 1, B, 0, 100, 1, reversed, 2), "R,1,bad_basket R,2,bad_basket");
	ck_assert_str_eq(basket(1, 1, B, 0, 100, 1, noperiod, 1), "R,1,bad_basket");
	ck_assert_str_eq(basket(1, 1, B, 0, 0, 1, hours4, 2), "R,1,bad_price R,2,bad_price");
	ck_assert_str_eq(basket(1, 1, 7, 0, 1, 1, hours4, 2), "R,1,bad_order R,2,bad_order");
	ck_assert_str_eq(basket(1, 1, B, 0, 1, 0, hours4, 2), "R,1,bad_qty R,2,bad_qty");
	(void)order_full(2, 2, book_named(hours4[0]), S, MATCHING_GTC, 0, 100, 8, 0);
	ck_assert_str_eq(basket(1, 1, B, 0, 100, 1, hours4, 2),
			 "R,1,duplicate_order R,2,duplicate_order");
	struct matching_basket bk = {.account = 1, .price = 1, .qty = 1, .n_legs = 2};
	bk.order_ids[0] = bk.order_ids[1] = 50;
	bk.books[0] = book_named(hours4[0]);
	bk.books[1] = book_named(hours4[1]);
	ck_assert_int_eq(matching_submit_basket(eng, &bk, &batch), MATCHING_OK);
	ck_assert_str_eq(render(), "R,50,duplicate_order R,50,duplicate_order");
	bk.n_legs = 0;
	ck_assert_int_eq(matching_submit_basket(eng, &bk, &batch), MATCHING_OK);
	ck_assert_str_eq(render(), "R,0,bad_basket");
	bk.n_legs = MATCHING_BASKET_LEGS_MAX + 1;
	ck_assert_int_eq(matching_submit_basket(eng, &bk, &batch), MATCHING_OK);
	ck_assert_str_eq(render(), "R,0,bad_basket");
}
END_TEST

START_TEST(basket_total_overflow)
{
	struct matching_config cfg = small_config();
	cfg.price_max = MATCHING_PRICE_CEILING;
	cfg.qty_max = 4;
	restart(&cfg);
	/* Each leg fits in int64, the sum of three does not. */
	ck_assert_str_eq(basket(1, 1, B, 0, INT64_MAX / 8, 3, hours4, 3),
			 "R,1,overflow R,2,overflow R,3,overflow");
	ck_assert_str_eq(basket(1, 1, B, 0, INT64_MAX / 8, 2, hours4, 3),
			 "X,1,2,fok_killed X,2,2,fok_killed X,3,2,fok_killed");
}
END_TEST

START_TEST(basket_into_closed_period)
{
	(void)book_with(hours4[0], 100, 1);
	(void)book_with(hours4[1], 200, 1);
	ck_assert_str_eq(advance(150), "");
	ck_assert_str_eq(basket(1, 1, B, 0, 100, 1, hours4, 2), "R,1,closed R,2,closed");
}
END_TEST

/* ---------- pools ---------- */

START_TEST(full_pools_reject_cleanly)
{
	struct matching_config cfg = small_config();
	cfg.orders_max = 3;
	cfg.levels_max = 2;
	restart(&cfg);
	ck_assert_str_eq(gtc(1, 1, B, 100, 1), "A,1,1");
	ck_assert_str_eq(gtc(2, 1, B, 99, 1), "A,2,1");
	/* Levels are full: a new resting order is refused even at an existing level. */
	ck_assert_str_eq(gtc(3, 1, B, 100, 1), "R,3,book_full");
	ck_assert_str_eq(order(3, 1, B, MATCHING_POST, 100, 1), "R,3,book_full");
	/* Taking liquidity needs no slot. */
	ck_assert_str_eq(order(4, 2, S, MATCHING_IOC, 100, 1), "F,4,1,100,1 D,1 D,4");
	ck_assert_str_eq(gtc(5, 1, B, 99, 1), "A,5,1");
	ck_assert_str_eq(gtc(6, 1, B, 98, 1), "A,6,1");
	ck_assert_str_eq(gtc(7, 1, B, 98, 1), "R,7,book_full");
	/* Moving one of two orders off a shared level needs a level that is not there. */
	ck_assert_str_eq(modify(5, 97, 1), "R,5,book_full");
	ck_assert_int_eq(open_qty(5), 1);
	/* A sole order may move: its own level is freed first. */
	ck_assert_str_eq(modify(6, 97, 1), "A,6,1");
	/* Levels 99 and 97 are taken: a free order slot alone is not enough. */
	ck_assert_str_eq(cancel(2), "X,2,1,cancelled");
	ck_assert_str_eq(gtc(7, 1, B, 98, 1), "R,7,book_full");
	ck_assert_str_eq(cancel(5), "X,5,1,cancelled");
	ck_assert_str_eq(gtc(7, 1, B, 98, 1), "A,7,1");
	ck_assert_str_eq(order(8, 2, S, MATCHING_FOK, 97, 2), "F,8,7,98,1 D,7 F,8,6,97,1 D,6 D,8");
}
END_TEST

/* ---------- wide and sparse prices ---------- */

START_TEST(prices_across_ten_orders_of_magnitude)
{
	ck_assert_str_eq(gtc(1, 1, S, 10000000000LL, 1), "A,1,1");
	ck_assert_str_eq(gtc(2, 1, S, 1, 1), "A,2,1");
	ck_assert_str_eq(gtc(3, 1, S, 5000, 1), "A,3,1");
	ck_assert_str_eq(gtc(4, 1, S, 9000000, 1), "A,4,1");
	ck_assert_str_eq(gtc(5, 1, S, 4999, 1), "A,5,1");
	struct matching_level_view v[8];
	ck_assert_uint_eq(matching_book_depth(eng, book_named("H100"), S, v, 8), 5);
	int64_t want[] = {1, 4999, 5000, 9000000, 10000000000LL};
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(v[i].price, want[i]);
	ck_assert_str_eq(gtc(10, 2, B, 10000000000LL, 5),
			 "F,10,2,1,1 D,2 F,10,5,4999,1 D,5 F,10,3,5000,1 D,3 F,10,4,9000000,1 D,4 "
			 "F,10,1,10000000000,1 D,1 D,10");
	ck_assert_uint_eq(matching_order_count(eng), 0);
}
END_TEST

START_TEST(window_recentres_on_better_bids)
{
	/* Bids climbing by more than the window each time push old levels to the tree. */
	for (int i = 0; i < 40; i++)
		ck_assert_str_ne(gtc(1 + i, 1, B, 1000 + (int64_t)i * 5000, 1), "");
	struct matching_level_view v[64];
	ck_assert_uint_eq(matching_book_depth(eng, book_named("H100"), B, v, 64), 40);
	for (int i = 0; i < 40; i++)
		ck_assert_int_eq(v[i].price, 1000 + (int64_t)(39 - i) * 5000);
	/* Cancelling the best levels refills the window from the tree. */
	for (int i = 39; i >= 20; i--)
		ck_assert_str_ne(cancel(1 + i), "");
	ck_assert_str_eq(order(100, 2, S, MATCHING_IOC, 1, 3),
			 "F,100,20,96000,1 D,20 F,100,19,91000,1 D,19 F,100,18,86000,1 D,18 D,100");
}
END_TEST

START_TEST(window_handles_asks_falling)
{
	for (int i = 0; i < 30; i++)
		ck_assert_str_ne(gtc(1 + i, 1, S, 1000000 - (int64_t)i * 7000, 2), "");
	ck_assert_str_eq(order(100, 2, B, MATCHING_IOC, 1000000, 3),
			 "F,100,30,797000,2 D,30 F,100,29,804000,1 D,100");
	/* Clear all but the worst; then a far better ask and a far worse one. */
	for (int i = 1; i < 28; i++)
		ck_assert_str_ne(cancel(1 + i), "");
	ck_assert_str_eq(gtc(200, 1, S, 5, 1), "A,200,1");
	ck_assert_str_eq(gtc(201, 1, S, 999999999, 1), "A,201,1");
	struct matching_level_view v[8];
	ck_assert_uint_eq(matching_book_depth(eng, book_named("H100"), S, v, 8), 4);
	ck_assert_int_eq(v[0].price, 5);
	ck_assert_int_eq(v[1].price, 804000);
	ck_assert_int_eq(v[2].price, 1000000);
	ck_assert_int_eq(v[3].price, 999999999);
}
END_TEST

/* ---------- suite ---------- */

static TCase *tcase(const char *name)
{
	TCase *tc = tcase_create(name);
	tcase_add_checked_fixture(tc, setup, teardown);
	return tc;
}

static Suite *matching_suite(void)
{
	Suite *s = suite_create("matching");
	TCase *tc = tcase("lifecycle");
	tcase_add_test(tc, config_rejects_bad_values);
	tcase_add_test(tc, small_batch_is_refused_before_any_effect);
	tcase_add_test(tc, product_names_parse_strictly);
	tcase_add_test(tc, hour_names_walk_the_calendar);
	tcase_add_test(tc, books_are_unique_and_bounded);
	tcase_add_test(tc, retired_books_give_their_numbers_back);
	tcase_add_test(tc, retired_numbers_shrink_the_count);
	tcase_add_test(tc, books_restore_at_their_numbers);
	suite_add_tcase(s, tc);
	tc = tcase("priority");
	tcase_add_test(tc, best_price_then_time);
	tcase_add_test(tc, fill_equal_to_remaining_completes_both);
	tcase_add_test(tc, no_trade_without_crossing);
	tcase_add_test(tc, fill_events_carry_accounts_and_remainders);
	suite_add_tcase(s, tc);
	tc = tcase("validation");
	tcase_add_test(tc, bad_prices_and_quantities_are_rejected);
	tcase_add_test(tc, coarse_tick_accepts_only_multiples);
	tcase_add_test(tc, overflow_is_rejected_not_wrapped);
	tcase_add_test(tc, tick_division_is_exact_at_the_extremes);
	suite_add_tcase(s, tc);
	tc = tcase("time_in_force");
	tcase_add_test(tc, ioc_never_rests);
	tcase_add_test(tc, fok_all_or_nothing);
	tcase_add_test(tc, post_only_never_takes);
	tcase_add_test(tc, gtd_expires_with_the_clock);
	tcase_add_test(tc, gtd_partial_fill_then_expiry);
	suite_add_tcase(s, tc);
	tc = tcase("cancel_modify");
	tcase_add_test(tc, cancel_removes_open_quantity);
	tcase_add_test(tc, modify_reduction_keeps_priority);
	tcase_add_test(tc, modify_increase_or_price_loses_priority);
	tcase_add_test(tc, modify_uses_open_not_original_quantity);
	tcase_add_test(tc, modify_can_trade_at_once);
	tcase_add_test(tc, rejected_modify_leaves_the_order);
	suite_add_tcase(s, tc);
	tc = tcase("self_trade");
	tcase_add_test(tc, stp_cancel_newest);
	tcase_add_test(tc, stp_cancel_oldest);
	tcase_add_test(tc, stp_cancel_both);
	tcase_add_test(tc, stp_allow_trades_with_self);
	tcase_add_test(tc, stp_default_comes_from_config);
	tcase_add_test(tc, fok_respects_stp);
	suite_add_tcase(s, tc);
	tc = tcase("gate");
	tcase_add_test(tc, gate_closure_expires_and_closes);
	tcase_add_test(tc, gates_close_in_time_order);
	suite_add_tcase(s, tc);
	tc = tcase("basket");
	tcase_add_test(tc, basket_fills_every_leg);
	tcase_add_test(tc, basket_one_short_leg_kills_all);
	tcase_add_test(tc, basket_respects_stp);
	tcase_add_test(tc, basket_shape_is_checked);
	tcase_add_test(tc, basket_total_overflow);
	tcase_add_test(tc, basket_into_closed_period);
	suite_add_tcase(s, tc);
	tc = tcase("pools");
	tcase_add_test(tc, full_pools_reject_cleanly);
	suite_add_tcase(s, tc);
	tc = tcase("wide_prices");
	tcase_add_test(tc, prices_across_ten_orders_of_magnitude);
	tcase_add_test(tc, window_recentres_on_better_bids);
	tcase_add_test(tc, window_handles_asks_falling);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tap_run(matching_suite());
}
