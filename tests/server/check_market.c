/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP API's copy of the market alone (server/srv_market.c): levels kept
 * best first and only the best levels_max; trades in a ring that forgets the
 * oldest; candles per interval with exact VWAP across interval boundaries and
 * the ring's wrap; classes gathering their products; parameters refused with
 * a reason; retired products forgotten and their room reused; trades and
 * candles of random trading against a model that reads the whole ring (the
 * products' lists of trades, candles built newest first).
 */
#include <stdio.h>
#include <string.h>

#include <check.h>

#include "srv_market.h"
#include "tap.h"

#define P1 "H100-80G/2026-11-23T19"
#define P2 "H100-80G/2026-11-23T20"
#define T0 INT64_C(1795453200000) /* a multiple of an hour */

static struct srv_market *m;

static void setup(void)
{
	struct srv_market_config c = {
		.products_max = 4, .levels_max = 3, .trades_kept = 8, .gate_lead_ms = 300000};
	ck_assert_int_eq(srv_market_create(&c, &m), 0);
}

static void teardown(void)
{
	srv_market_destroy(m);
}

static int64_t num(json_t *o, const char *key)
{
	return (int64_t)json_integer_value(json_object_get(o, key));
}

START_TEST(levels_best_first_and_bounded)
{
	const char *why;
	bool nf;
	for (int64_t p = 10; p <= 50; p += 10)
		srv_market_level(m, P1, SRV_MARKET_SIDE_BUY, p, p / 10, 1);
	srv_market_level(m, P1, SRV_MARKET_SIDE_SELL, 70, 1, 1);
	srv_market_level(m, P1, SRV_MARKET_SIDE_SELL, 60, 2, 2);
	srv_market_level(m, P1, SRV_MARKET_SIDE_BUY, 40, 0, 0); /* gone */
	json_t *b = srv_market_book(m, P1, 3, &why, &nf);
	json_t *bids = json_object_get(b, "bids"), *asks = json_object_get(b, "asks");
	/* 50 and 30: 10 and 20 dropped out as better levels came (three are kept), 40 left */
	ck_assert_uint_eq(json_array_size(bids), 2);
	ck_assert_int_eq(num(json_array_get(bids, 0), "price"), 50);
	ck_assert_int_eq(num(json_array_get(bids, 1), "price"), 30);
	ck_assert_int_eq(num(json_array_get(asks, 0), "price"), 60);
	ck_assert_int_eq(num(json_array_get(asks, 0), "orders"), 2);
	json_decref(b);
	ck_assert_ptr_null(srv_market_book(m, P1, 4, &why, &nf));
	ck_assert(!nf);
	ck_assert_ptr_null(srv_market_book(m, P2, 1, &why, &nf));
	ck_assert(nf);
	/* products: best prices, state by the clock and halts */
	json_t *p = srv_market_products(m, T0 + 7200000 - 300000 - 1);
	json_t *x = json_array_get(json_object_get(p, "products"), 0);
	ck_assert_int_eq(num(x, "best_bid"), 50);
	ck_assert_int_eq(num(x, "best_ask"), 60);
	ck_assert(json_is_null(json_object_get(x, "last_price")));
	ck_assert_str_eq(json_string_value(json_object_get(x, "state")), "open");
	json_decref(p);
	p = srv_market_products(m, T0 + 7200000 - 300000);
	x = json_array_get(json_object_get(p, "products"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(x, "state")), "gate_closed");
	json_decref(p);
	srv_market_halt(m, P1, true);
	p = srv_market_products(m, 0);
	x = json_array_get(json_object_get(p, "products"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(x, "state")), "halted");
	json_decref(p);
}
END_TEST

START_TEST(trades_and_candles)
{
	const char *why;
	bool nf;
	/* P1: 100 x2 and 110 x1 in the first minute, 90 x3 in the third; P2: 200 x1 */
	srv_market_trade(m, P1, 1, 100, 2, SRV_MARKET_SIDE_BUY, T0 + 1000);
	srv_market_trade(m, P1, 2, 110, 1, SRV_MARKET_SIDE_SELL, T0 + 59999);
	srv_market_trade(m, P2, 1, 200, 1, SRV_MARKET_SIDE_BUY, T0 + 60000);
	srv_market_trade(m, P1, 3, 90, 3, SRV_MARKET_SIDE_BUY, T0 + 120000);
	json_t *c = srv_market_candles(m, P1, NULL, 60000, 10, &why, &nf);
	json_t *a = json_object_get(c, "candles");
	ck_assert_uint_eq(json_array_size(a), 2); /* minutes without trades are left out */
	json_t *c0 = json_array_get(a, 0), *c1 = json_array_get(a, 1);
	ck_assert_int_eq(num(c0, "start_ms"), T0);
	ck_assert_int_eq(num(c0, "open"), 100);
	ck_assert_int_eq(num(c0, "high"), 110);
	ck_assert_int_eq(num(c0, "low"), 100);
	ck_assert_int_eq(num(c0, "close"), 110);
	ck_assert_int_eq(num(c0, "volume"), 3);
	ck_assert_int_eq(num(c0, "vwap"), (200 + 110) / 3); /* 103.33 rounded down */
	ck_assert_int_eq(num(c1, "start_ms"), T0 + 120000);
	ck_assert_int_eq(num(c1, "vwap"), 90);
	json_decref(c);
	/* the class: every product's trades; the last interval only with limit=1 */
	c = srv_market_candles(m, NULL, "H100-80G", 3600000, 1, &why, &nf);
	a = json_object_get(c, "candles");
	ck_assert_uint_eq(json_array_size(a), 1);
	ck_assert_int_eq(num(json_array_get(a, 0), "volume"), 7);
	ck_assert_int_eq(num(json_array_get(a, 0), "high"), 200);
	json_decref(c);
	/* trades newest first, by product and by class */
	json_t *t = srv_market_trades(m, P1, NULL, 2, &why, &nf);
	a = json_object_get(t, "trades");
	ck_assert_uint_eq(json_array_size(a), 2);
	ck_assert_int_eq(num(json_array_get(a, 0), "sequence"), 3);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 1), "aggressor")),
			 "sell");
	json_decref(t);
	t = srv_market_trades(m, NULL, "H100-80G", 100, &why, &nf);
	ck_assert_uint_eq(json_array_size(json_object_get(t, "trades")), 4);
	json_decref(t);
	/* the ring keeps the last 8: after 10 more trades of P2, P1's are gone */
	for (int i = 0; i < 10; i++)
		srv_market_trade(m, P2, 2 + (uint64_t)i, 300, 1, SRV_MARKET_SIDE_BUY,
				 T0 + 180000 + i);
	t = srv_market_trades(m, P1, NULL, 100, &why, &nf);
	ck_assert_uint_eq(json_array_size(json_object_get(t, "trades")), 0);
	json_decref(t);
	c = srv_market_candles(m, P2, NULL, 60000, 10, &why, &nf);
	a = json_object_get(c, "candles");
	ck_assert_uint_eq(json_array_size(a), 1);
	ck_assert_int_eq(num(json_array_get(a, 0), "volume"), 8);
	json_decref(c);
	/* huge prices and volumes: VWAP exact, volume saturating */
	srv_market_trade(m, P1, 4, INT64_C(1) << 61, INT64_C(1) << 40, SRV_MARKET_SIDE_BUY,
			 T0 + 7200000);
	srv_market_trade(m, P1, 5, INT64_C(1) << 61, INT64_C(1) << 40, SRV_MARKET_SIDE_BUY,
			 T0 + 7200001);
	c = srv_market_candles(m, P1, NULL, 60000, 1, &why, &nf);
	ck_assert_int_eq(num(json_array_get(json_object_get(c, "candles"), 0), "vwap"),
			 INT64_C(1) << 61);
	json_decref(c);
	/* refusals */
	ck_assert_ptr_null(srv_market_trades(m, P1, "H100-80G", 1, &why, &nf));
	ck_assert_ptr_null(srv_market_trades(m, NULL, NULL, 1, &why, &nf));
	ck_assert_ptr_null(srv_market_trades(m, P1, NULL, 0, &why, &nf));
	ck_assert_ptr_null(srv_market_trades(m, NULL, "B200", 1, &why, &nf));
	ck_assert(nf);
	ck_assert_ptr_null(srv_market_candles(m, P1, NULL, 999, 1, &why, &nf));
	ck_assert_ptr_null(srv_market_candles(m, P1, NULL, 60000, 1001, &why, &nf));
	ck_assert(!nf);
}
END_TEST

START_TEST(bad_names_and_full_tables)
{
	const char *why;
	bool nf;
	srv_market_level(m, "not a product", SRV_MARKET_SIDE_BUY, 1, 1, 1);
	srv_market_trade(m, "", 1, 1, 1, SRV_MARKET_SIDE_BUY, T0);
	for (int h = 0; h < 6; h++) { /* products_max is 4 */
		char name[64];
		snprintf(name, sizeof(name), "A100/2026-11-23T%02d", 10 + h);
		srv_market_level(m, name, SRV_MARKET_SIDE_SELL, 5, 1, 1);
	}
	json_t *p = srv_market_products(m, 0);
	ck_assert_uint_eq(json_array_size(json_object_get(p, "products")), 4);
	json_decref(p);
	ck_assert_ptr_null(srv_market_book(m, "A100/2026-11-23T15", 1, &why, &nf));
	ck_assert(nf);
}
END_TEST

/* A retired product is forgotten and its slot serves the next; its trades stay for its class. */
START_TEST(retired_products_make_room)
{
	const char *why;
	bool nf;
	char name[64];
	for (int h = 0; h < 4; h++) { /* products_max is 4 */
		snprintf(name, sizeof(name), "A100/2026-11-23T%02d", 10 + h);
		srv_market_level(m, name, SRV_MARKET_SIDE_SELL, 5, 1, 1);
		srv_market_trade(m, name, 1, 7 + h, 1, SRV_MARKET_SIDE_BUY, T0 + h);
	}
	srv_market_retire(m, "A100/2026-11-23T11");
	srv_market_retire(m, "A100/2026-11-23T10");
	srv_market_retire(m, "A100/2026-11-23T10"); /* twice: nothing more happens */
	srv_market_retire(m, P1);		    /* never seen */
	json_t *p = srv_market_products(m, 0);
	ck_assert_uint_eq(json_array_size(json_object_get(p, "products")), 2);
	json_decref(p);
	ck_assert_ptr_null(srv_market_book(m, "A100/2026-11-23T11", 1, &why, &nf));
	ck_assert(nf);
	ck_assert_ptr_null(srv_market_trades(m, "A100/2026-11-23T10", NULL, 10, &why, &nf));
	ck_assert(nf);
	/* The two left are still found, whatever their place in the index was. */
	for (int h = 2; h < 4; h++) {
		snprintf(name, sizeof(name), "A100/2026-11-23T%02d", 10 + h);
		json_t *b = srv_market_book(m, name, 1, &why, &nf);
		ck_assert_ptr_nonnull(b);
		json_decref(b);
	}
	/* Two new products fit again, a third does not. */
	srv_market_level(m, P1, SRV_MARKET_SIDE_BUY, 3, 1, 1);
	srv_market_trade(m, P2, 1, 50, 2, SRV_MARKET_SIDE_SELL, T0 + 10);
	srv_market_level(m, "A100/2026-11-23T20", SRV_MARKET_SIDE_BUY, 3, 1, 1);
	p = srv_market_products(m, 0);
	ck_assert_uint_eq(json_array_size(json_object_get(p, "products")), 4);
	json_decref(p);
	/* A100's four trades stay, with their products' names; the new product has only its own. */
	json_t *t = srv_market_trades(m, NULL, "A100", 10, &why, &nf);
	json_t *list = json_object_get(t, "trades");
	ck_assert_uint_eq(json_array_size(list), 4);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 3), "product")),
			 "A100/2026-11-23T10");
	json_decref(t);
	t = srv_market_trades(m, P2, NULL, 10, &why, &nf);
	ck_assert_uint_eq(json_array_size(json_object_get(t, "trades")), 1);
	json_decref(t);
	/* With every A100 hour retired, the class still answers from the trades kept. */
	srv_market_retire(m, "A100/2026-11-23T12");
	srv_market_retire(m, "A100/2026-11-23T13");
	t = srv_market_candles(m, NULL, "A100", 3600000, 10, &why, &nf);
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(num(json_array_get(json_object_get(t, "candles"), 0), "volume"), 4);
	json_decref(t);
	ck_assert_ptr_null(srv_market_trades(m, NULL, "A10", 10, &why, &nf));
	ck_assert(nf);
}
END_TEST

/* ---------- trades and candles against a model ---------- */

struct mtrade {
	const char *product;
	uint64_t sequence;
	int64_t price, qty, time_ms;
	uint8_t aggressor;
};

#define KEPT 37 /* an odd ring, to wrap at every place */

static bool model_of(const struct mtrade *t, const char *product, const char *cls)
{
	if (product)
		return strcmp(t->product, product) == 0;
	size_t len = strlen(cls);
	return strncmp(t->product, cls, len) == 0 && t->product[len] == '/';
}

/* The answers as the ring read whole would give them: the trades newest first... */
static json_t *model_trades(const struct mtrade *all, size_t n, const char *product,
			    const char *cls, uint32_t limit)
{
	json_t *a = json_array();
	for (size_t k = n; k-- > (n > KEPT ? n - KEPT : 0) && json_array_size(a) < limit;)
		if (model_of(&all[k], product, cls))
			json_array_append_new(
				a,
				json_pack("{s:s, s:I, s:I, s:I, s:s, s:I}", "product",
					  all[k].product, "sequence", (json_int_t)all[k].sequence,
					  "price", (json_int_t)all[k].price, "quantity",
					  (json_int_t)all[k].qty, "aggressor",
					  all[k].aggressor == SRV_MARKET_SIDE_SELL ? "sell" : "buy",
					  "time_ms", (json_int_t)all[k].time_ms));
	return json_pack("{s:o}", "trades", a);
}

/* ...and the candles oldest first, the last limit of them. */
static json_t *model_candles(const struct mtrade *all, size_t n, const char *product,
			     const char *cls, int64_t interval, uint32_t limit)
{
	int64_t c[KEPT][6]; /* start, open, high, low, close, volume */
	int64_t notional[KEPT];
	size_t nc = 0;
	for (size_t k = n > KEPT ? n - KEPT : 0; k < n; k++) {
		const struct mtrade *t = &all[k];
		if (!model_of(t, product, cls))
			continue;
		int64_t start = t->time_ms - t->time_ms % interval;
		if (nc == 0 || start > c[nc - 1][0]) {
			int64_t *x = c[nc];
			x[0] = start;
			x[1] = x[2] = x[3] = t->price;
			x[5] = notional[nc] = 0;
			nc++;
		}
		int64_t *x = c[nc - 1];
		x[2] = t->price > x[2] ? t->price : x[2];
		x[3] = t->price < x[3] ? t->price : x[3];
		x[4] = t->price;
		x[5] += t->qty;
		notional[nc - 1] += t->price * t->qty;
	}
	json_t *a = json_array();
	for (size_t k = nc > limit ? nc - limit : 0; k < nc; k++)
		json_array_append_new(
			a, json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "start_ms",
				     (json_int_t)c[k][0], "open", (json_int_t)c[k][1], "high",
				     (json_int_t)c[k][2], "low", (json_int_t)c[k][3], "close",
				     (json_int_t)c[k][4], "volume", (json_int_t)c[k][5], "vwap",
				     (json_int_t)(notional[k] / c[k][5])));
	return json_pack("{s:I, s:o}", "interval_ms", (json_int_t)interval, "candles", a);
}

static void same(json_t *got, json_t *want, const char *what)
{
	char *g = json_dumps(got, JSON_SORT_KEYS), *w = json_dumps(want, JSON_SORT_KEYS);
	ck_assert_msg(json_equal(got, want), "%s:\n got %s\nwant %s", what, g, w);
	free(g);
	free(w);
	json_decref(got);
	json_decref(want);
}

/* Random trades of four products of three classes (one class's name the start of
 * another's), their times going forward by 0-40 s; after each, every product's and
 * class's trades and candles (random limit and interval) equal the model's: the
 * products' lists, the ring's wrap and the candles built newest first. */
START_TEST(trades_and_candles_match_a_model)
{
	static const char *const products[] = {"H100-80G/2026-11-23T19", "H100-80G/2026-11-23T20",
					       "H100-80G-SXM/2026-11-23T19", "A100/2026-11-23T19"};
	static const char *const classes[] = {"H100-80G", "H100-80G-SXM", "A100"};
	static const int64_t intervals[] = {1000, 60000, 3600000};
	static struct mtrade all[600];
	struct srv_market_config cfg = {
		.products_max = 4, .levels_max = 3, .trades_kept = KEPT, .gate_lead_ms = 300000};
	struct srv_market *mm;
	ck_assert_int_eq(srv_market_create(&cfg, &mm), 0);
	unsigned seed = 12345;
	int64_t now = T0;
	const char *why;
	bool nf;
	for (size_t n = 0; n < 600; n++) {
		struct mtrade *t = &all[n];
		now += rand_r(&seed) % 40001;
		*t = (struct mtrade){.product = products[rand_r(&seed) % 4],
				     .sequence = n + 1,
				     .price = 1 + rand_r(&seed) % 1000,
				     .qty = 1 + rand_r(&seed) % 8,
				     .time_ms = now,
				     .aggressor = (uint8_t)(1 + rand_r(&seed) % 2)};
		srv_market_trade(mm, t->product, t->sequence, t->price, t->qty, t->aggressor,
				 t->time_ms);
		for (int i = 0; i < 7; i++) {
			const char *p = i < 4 ? products[i] : NULL,
				   *c = i < 4 ? NULL : classes[i - 4];
			uint32_t limit = 1 + (uint32_t)(rand_r(&seed) % 12);
			int64_t iv = intervals[rand_r(&seed) % 3];
			json_t *got = srv_market_trades(mm, p, c, limit, &why, &nf);
			if (got == NULL) { /* not traded yet: a 404 */
				ck_assert(nf);
				json_t *want = model_trades(all, n + 1, p, c, limit);
				ck_assert_uint_eq(json_array_size(json_object_get(want, "trades")),
						  0);
				json_decref(want);
				continue;
			}
			same(got, model_trades(all, n + 1, p, c, limit), p ? p : c);
			same(srv_market_candles(mm, p, c, iv, limit, &why, &nf),
			     model_candles(all, n + 1, p, c, iv, limit), p ? p : c);
		}
	}
	srv_market_destroy(mm);
}
END_TEST

static Suite *market_suite(void)
{
	Suite *s = suite_create("server-market");
	TCase *tc = tcase_create("market");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, levels_best_first_and_bounded);
	tcase_add_test(tc, trades_and_candles);
	tcase_add_test(tc, bad_names_and_full_tables);
	tcase_add_test(tc, retired_products_make_room);
	tcase_add_test(tc, trades_and_candles_match_a_model);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tap_run(market_suite());
}
