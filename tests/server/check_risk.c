/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests of pre-trade risk: cash reservations for bids (exact boundaries, the
 * per-GPU fee reservation, releases on better fills, cancels, IOC remainders,
 * rejects and modifies), seller capacity per delivery period, per-account
 * order limits, and a randomized run through the real matching engine in
 * which no account may ever spend or reserve more than it has.
 */
#include <string.h>

#include <check.h>

#include "ledger.h"
#include "matching.h"
#include "srv_risk.h"
#include "srv_snapshot.h"
#include "tap.h"

static struct srv_risk *risk;
static struct matching_engine *eng;
static struct matching_batch batch;
static uint32_t book19, book20;

/* Risk from cfg, and an engine of `orders` orders with the books H100 19:00 and 20:00. */
static void setup_with(const struct srv_risk_config *cfg, uint32_t orders)
{
	ck_assert_int_eq(srv_risk_create(cfg, &risk), SRV_RISK_OK);
	struct matching_config mc;
	matching_config_default(&mc);
	mc.orders_max = orders;
	mc.levels_max = orders;
	mc.books_max = 4;
	ck_assert_int_eq(matching_create(&mc, &eng), MATCHING_OK);
	batch.cap = matching_events_max(eng);
	batch.events = calloc(batch.cap, sizeof(*batch.events));
	struct matching_product p;
	ck_assert_int_eq(matching_product_parse("H100/2026-11-22T19", 18, 0, &p), MATCHING_OK);
	ck_assert_int_eq(matching_book_create(eng, &p, &book19), MATCHING_OK);
	ck_assert_int_eq(matching_product_parse("H100/2026-11-22T20", 18, 0, &p), MATCHING_OK);
	ck_assert_int_eq(matching_book_create(eng, &p, &book20), MATCHING_OK);
}

/* The risk of most tests: small tables, 10 and 25 bps fees. */
static void small_config(struct srv_risk_config *cfg)
{
	srv_risk_config_default(cfg);
	cfg->accounts_max = 16;
	cfg->orders_max = 512;
	cfg->positions_max = 64;
	cfg->capacities_max = 16;
	cfg->open_orders_per_account_max = 100;
	cfg->maker_bps = 10;
	cfg->taker_bps = 25;
}

static void setup(void)
{
	struct srv_risk_config cfg;
	small_config(&cfg);
	setup_with(&cfg, 512);
}

static void teardown(void)
{
	srv_risk_destroy(risk);
	matching_destroy(eng);
	free(batch.events);
}

static uint64_t next_id = 1;

/* Enters an order in risk, then the engine, and applies its events. */
static int place(uint32_t account, uint32_t book, int side, int tif, int64_t price, int64_t qty,
		 uint64_t *id_out)
{
	uint64_t id = next_id++;
	struct srv_risk_order o = {.order_id = id,
				   .account = account,
				   .book = book,
				   .class_id = 1,
				   .side = (uint8_t)side,
				   .price = price,
				   .qty = qty};
	int rc = srv_risk_enter(risk, &o);
	if (rc)
		return rc;
	struct matching_order mo = {.order_id = id,
				    .account = account,
				    .book = book,
				    .side = (uint8_t)side,
				    .tif = (uint8_t)tif,
				    .price = price,
				    .qty = qty};
	ck_assert_int_eq(matching_submit(eng, &mo, &batch), MATCHING_OK);
	for (size_t i = 0; i < batch.n; i++)
		srv_risk_apply(risk, &batch.events[i]);
	const char *why = srv_risk_check_invariants(risk);
	ck_assert_msg(why == NULL, "%s", why ? why : "");
	if (id_out)
		*id_out = id;
	return SRV_RISK_OK;
}

static int modify(uint64_t id, int64_t price, int64_t qty)
{
	int rc = srv_risk_modify_begin(risk, id, price, qty);
	if (rc)
		return rc;
	ck_assert_int_eq(matching_modify(eng, id, price, qty, &batch), MATCHING_OK);
	bool rejected = false;
	for (size_t i = 0; i < batch.n; i++) {
		srv_risk_apply(risk, &batch.events[i]);
		rejected |= batch.events[i].type == MATCHING_EV_REJECTED;
	}
	srv_risk_modify_end(risk, rejected);
	ck_assert_ptr_null(srv_risk_check_invariants(risk));
	return rejected ? -1 : SRV_RISK_OK;
}

static void cancel(uint64_t id)
{
	ck_assert_int_eq(matching_cancel(eng, id, &batch), MATCHING_OK);
	for (size_t i = 0; i < batch.n; i++)
		srv_risk_apply(risk, &batch.events[i]);
	ck_assert_ptr_null(srv_risk_check_invariants(risk));
}

static struct srv_risk_account acct(uint32_t account)
{
	struct srv_risk_account a;
	ck_assert_int_eq(srv_risk_account(risk, account, &a), SRV_RISK_OK);
	return a;
}

START_TEST(bids_need_cash_including_the_highest_fee)
{
	/* 10 GPUs at 1,000,000: 25 bps per GPU is 2,500, so 10,025,000 in all. */
	ck_assert_int_eq(srv_risk_add_cash(risk, 1, 10024999), SRV_RISK_OK);
	ck_assert_int_eq(place(1, book19, MATCHING_BUY, MATCHING_GTC, 1000000, 10, NULL),
			 SRV_RISK_INSUFFICIENT_FUNDS);
	ck_assert_int_eq(acct(1).reserved, 0);
	ck_assert_int_eq(srv_risk_add_cash(risk, 1, 1), SRV_RISK_OK);
	ck_assert_int_eq(place(1, book19, MATCHING_BUY, MATCHING_GTC, 1000000, 10, NULL),
			 SRV_RISK_OK);
	ck_assert_int_eq(acct(1).reserved, 10025000);
	ck_assert_int_eq(place(1, book19, MATCHING_BUY, MATCHING_GTC, 1, 1, NULL),
			 SRV_RISK_INSUFFICIENT_FUNDS);
	/* The fee per GPU rounds up: 1 micro at 25 bps reserves 2. */
	ck_assert_int_eq(srv_risk_add_cash(risk, 2, 2), SRV_RISK_OK);
	ck_assert_int_eq(place(2, book19, MATCHING_BUY, MATCHING_GTC, 1, 1, NULL), SRV_RISK_OK);
	ck_assert_int_eq(acct(2).reserved, 2);
	ck_assert_int_eq(place(9, book19, MATCHING_BUY, MATCHING_GTC, 1, 1, NULL),
			 SRV_RISK_UNKNOWN_ACCOUNT);
}
END_TEST

START_TEST(fills_charge_the_real_cost_and_release_the_rest)
{
	ck_assert_int_eq(srv_risk_add_cash(risk, 1, 100000000), SRV_RISK_OK);
	ck_assert_int_eq(srv_risk_add_cash(risk, 2, 0), SRV_RISK_OK);
	ck_assert_int_eq(srv_risk_set_capacity(risk, 2, 1, 8), SRV_RISK_OK);
	uint64_t ask;
	ck_assert_int_eq(place(2, book19, MATCHING_SELL, MATCHING_GTC, 900000, 6, &ask),
			 SRV_RISK_OK);
	/* The buyer bids 10 at 1,000,000 and takes 6 at the maker's 900,000. */
	uint64_t bid;
	ck_assert_int_eq(place(1, book19, MATCHING_BUY, MATCHING_GTC, 1000000, 10, &bid),
			 SRV_RISK_OK);
	int64_t cost = 5400000 + 13500; /* 25 bps taker fee on 5,400,000 */
	ck_assert_int_eq(acct(1).cash, 100000000 - cost);
	ck_assert_int_eq(acct(1).reserved, 4 * 1002500);
	int64_t offered, sold;
	srv_risk_position(risk, 2, book19, &offered, &sold);
	ck_assert_int_eq(offered, 0);
	ck_assert_int_eq(sold, 6);
	/* Cancelling the rest of the bid releases its reservation. */
	cancel(bid);
	ck_assert_int_eq(acct(1).reserved, 0);
	ck_assert_int_eq(acct(1).open_orders, 0);
	(void)ask;
}
END_TEST

START_TEST(ioc_remainders_and_rejects_release)
{
	ck_assert_int_eq(srv_risk_add_cash(risk, 1, 100000000), SRV_RISK_OK);
	ck_assert_int_eq(place(1, book19, MATCHING_BUY, MATCHING_IOC, 1000, 10, NULL), SRV_RISK_OK);
	ck_assert_int_eq(acct(1).reserved, 0);
	ck_assert_int_eq(acct(1).open_orders, 0);
	/* The engine refuses an off-tick or closed order: risk lets go of it too. */
	ck_assert_int_eq(place(1, 99, MATCHING_BUY, MATCHING_GTC, 1000, 10, NULL), SRV_RISK_OK);
	ck_assert_int_eq(acct(1).reserved, 0);
	ck_assert_int_eq(acct(1).cash, 100000000);
}
END_TEST

START_TEST(modifies_reserve_release_and_undo)
{
	ck_assert_int_eq(srv_risk_add_cash(risk, 1, 10025000), SRV_RISK_OK);
	uint64_t bid;
	ck_assert_int_eq(place(1, book19, MATCHING_BUY, MATCHING_POST, 500000, 10, &bid),
			 SRV_RISK_OK);
	ck_assert_int_eq(acct(1).reserved, 10 * 501250);
	ck_assert_int_eq(modify(bid, 1000000, 10), SRV_RISK_OK);
	ck_assert_int_eq(acct(1).reserved, 10025000);
	ck_assert_int_eq(modify(bid, 1000000, 11), SRV_RISK_INSUFFICIENT_FUNDS);
	ck_assert_int_eq(acct(1).reserved, 10025000);
	ck_assert_int_eq(modify(bid, 1000000, 4), SRV_RISK_OK);
	ck_assert_int_eq(acct(1).reserved, 4010000);
	/* Risk allows it, the engine refuses (post-only would cross): undone. */
	ck_assert_int_eq(srv_risk_add_cash(risk, 2, 0), SRV_RISK_OK);
	ck_assert_int_eq(srv_risk_set_capacity(risk, 2, 1, 1), SRV_RISK_OK);
	ck_assert_int_eq(place(2, book19, MATCHING_SELL, MATCHING_GTC, 1100000, 1, NULL),
			 SRV_RISK_OK);
	ck_assert_int_eq(modify(bid, 1100000, 2), -1);
	ck_assert_int_eq(acct(1).reserved, 4010000);
	cancel(bid);
	ck_assert_int_eq(acct(1).reserved, 0);
}
END_TEST

START_TEST(sellers_offer_only_their_capacity)
{
	ck_assert_int_eq(srv_risk_add_cash(risk, 2, 0), SRV_RISK_OK);
	ck_assert_int_eq(srv_risk_add_cash(risk, 1, 1000000000), SRV_RISK_OK);
	ck_assert_int_eq(place(2, book19, MATCHING_SELL, MATCHING_GTC, 100, 1, NULL),
			 SRV_RISK_INSUFFICIENT_CAPACITY);
	ck_assert_int_eq(srv_risk_set_capacity(risk, 2, 1, 8), SRV_RISK_OK);
	uint64_t a, b;
	ck_assert_int_eq(place(2, book19, MATCHING_SELL, MATCHING_GTC, 100, 5, &a), SRV_RISK_OK);
	ck_assert_int_eq(place(2, book19, MATCHING_SELL, MATCHING_GTC, 100, 4, NULL),
			 SRV_RISK_INSUFFICIENT_CAPACITY);
	/* Another hour is another period with its own 8. */
	ck_assert_int_eq(place(2, book20, MATCHING_SELL, MATCHING_GTC, 100, 8, NULL), SRV_RISK_OK);
	ck_assert_int_eq(place(2, book19, MATCHING_SELL, MATCHING_GTC, 100, 3, &b), SRV_RISK_OK);
	/* Sold GPUs stay used; cancelled offers free theirs. */
	ck_assert_int_eq(place(1, book19, MATCHING_BUY, MATCHING_IOC, 100, 5, NULL), SRV_RISK_OK);
	int64_t offered, sold;
	srv_risk_position(risk, 2, book19, &offered, &sold);
	ck_assert_int_eq(offered, 3);
	ck_assert_int_eq(sold, 5);
	cancel(b);
	ck_assert_int_eq(place(2, book19, MATCHING_SELL, MATCHING_GTC, 100, 4, NULL),
			 SRV_RISK_INSUFFICIENT_CAPACITY);
	ck_assert_int_eq(place(2, book19, MATCHING_SELL, MATCHING_GTC, 100, 3, &b), SRV_RISK_OK);
	ck_assert_int_eq(modify(b, 100, 4), SRV_RISK_INSUFFICIENT_CAPACITY);
	ck_assert_int_eq(modify(b, 100, 2), SRV_RISK_OK);
	ck_assert_int_eq(place(2, book19, MATCHING_SELL, MATCHING_GTC, 101, 1, NULL), SRV_RISK_OK);
	(void)a;
	/* Account 0 is nobody's: no position (its key would be the positions table's mark of
	 * a free slot). */
	srv_risk_position(risk, 0, book19, &offered, &sold);
	ck_assert_int_eq(offered, 0);
	ck_assert_int_eq(sold, 0);
	/* Positions go through a snapshot into a new risk, which saves the same bytes. */
	struct srv_snap_w w = {0}, w2 = {0};
	srv_risk_save(risk, &w);
	struct srv_risk_config cfg;
	small_config(&cfg);
	struct srv_risk *copy;
	ck_assert_int_eq(srv_risk_create(&cfg, &copy), SRV_RISK_OK);
	struct srv_snap_r in = {.p = w.p, .len = w.len};
	ck_assert_msg(srv_risk_load(copy, &in) == 0, "%s", in.error ? in.error : "");
	ck_assert_ptr_null(srv_risk_check_invariants(copy));
	srv_risk_position(copy, 2, book19, &offered, &sold);
	ck_assert_int_eq(sold, 5);
	srv_risk_save(copy, &w2);
	ck_assert_uint_eq(w2.len, w.len);
	ck_assert_mem_eq(w2.p, w.p, w.len);
	srv_risk_destroy(copy);
	srv_snap_w_free(&w);
	srv_snap_w_free(&w2);
	/* A snapshot with a position of account 0 is refused. */
	srv_snap_u32(&w, 0);			      /* accounts */
	srv_snap_u32(&w, 0);			      /* capacities */
	srv_snap_u32(&w, 1);			      /* positions: */
	srv_snap_u64(&w, (uint64_t)0 << 32 | book19); /* account 0 */
	srv_snap_i64(&w, 1);
	srv_snap_u32(&w, 0); /* orders */
	ck_assert_int_eq(srv_risk_create(&cfg, &copy), SRV_RISK_OK);
	in = (struct srv_snap_r){.p = w.p, .len = w.len};
	ck_assert_int_ne(srv_risk_load(copy, &in), 0);
	ck_assert_ptr_nonnull(strstr(in.error, "account 0"));
	srv_risk_destroy(copy);
	srv_snap_w_free(&w);
}
END_TEST

START_TEST(limits_and_bad_input)
{
	teardown();
	struct srv_risk_config cfg;
	srv_risk_config_default(&cfg);
	cfg.accounts_max = 2;
	cfg.orders_max = 3;
	cfg.open_orders_per_account_max = 2;
	cfg.capacities_max = 1;
	setup_with(&cfg, 16);
	/* One capacity entry: it can change, no other can be made. Its class has capacity
	 * from then on, also at 0; class numbers are below classes_max. */
	ck_assert(srv_risk_capacity_room(risk, 2, 1));
	ck_assert(!srv_risk_class_has_capacity(risk, 1));
	ck_assert_int_eq(srv_risk_set_capacity(risk, 2, 256, 4), SRV_RISK_ARGS);
	ck_assert_int_eq(srv_risk_set_capacity(risk, 2, 1, 4), SRV_RISK_OK);
	ck_assert_int_eq(srv_risk_set_capacity(risk, 2, 1, 0), SRV_RISK_OK);
	ck_assert(srv_risk_class_has_capacity(risk, 1) && !srv_risk_class_has_capacity(risk, 2));
	ck_assert(!srv_risk_class_has_capacity(risk, 256));
	ck_assert_int_eq(srv_risk_set_capacity(risk, 2, 1, 4), SRV_RISK_OK);
	ck_assert(srv_risk_capacity_room(risk, 2, 1));
	ck_assert(!srv_risk_capacity_room(risk, 2, 2) && !srv_risk_capacity_room(risk, 1, 1));
	ck_assert_int_eq(srv_risk_set_capacity(risk, 2, 2, 4), SRV_RISK_FULL);
	ck_assert_int_eq(srv_risk_add_cash(risk, 1, INT64_MAX), SRV_RISK_OK);
	ck_assert_int_eq(srv_risk_add_cash(risk, 1, 1), SRV_RISK_OVERFLOW);
	ck_assert_int_eq(srv_risk_add_cash(risk, 2, 5), SRV_RISK_OK);
	ck_assert_int_eq(srv_risk_add_cash(risk, 3, 5), SRV_RISK_FULL);
	ck_assert_int_eq(place(1, book19, MATCHING_BUY, MATCHING_GTC, INT64_MAX / 2, 3, NULL),
			 SRV_RISK_OVERFLOW);
	ck_assert_int_eq(place(1, book19, MATCHING_BUY, MATCHING_GTC, 0, 3, NULL), SRV_RISK_ARGS);
	ck_assert_int_eq(place(1, book19, MATCHING_BUY, MATCHING_GTC, 10, 0, NULL), SRV_RISK_ARGS);
	ck_assert_int_eq(place(1, book19, 7, MATCHING_GTC, 10, 1, NULL), SRV_RISK_ARGS);
	uint64_t first;
	ck_assert_int_eq(place(1, book19, MATCHING_BUY, MATCHING_GTC, 10, 1, &first), SRV_RISK_OK);
	ck_assert_int_eq(place(1, book19, MATCHING_BUY, MATCHING_GTC, 11, 1, NULL), SRV_RISK_OK);
	ck_assert_int_eq(place(1, book19, MATCHING_BUY, MATCHING_GTC, 12, 1, NULL),
			 SRV_RISK_TOO_MANY_ORDERS);
	ck_assert_int_eq(place(2, book19, MATCHING_BUY, MATCHING_GTC, 1, 1, NULL), SRV_RISK_OK);
	struct srv_risk_order dup = {
		.order_id = next_id - 1, .account = 2, .side = MATCHING_BUY, .price = 1, .qty = 1};
	ck_assert_int_eq(srv_risk_enter(risk, &dup), SRV_RISK_DUPLICATE);
	ck_assert_int_eq(srv_risk_modify_begin(risk, 999, 1, 1), SRV_RISK_ARGS);
	/* All three order slots are taken; a cancel gives one back. */
	ck_assert_int_eq(place(2, book19, MATCHING_BUY, MATCHING_GTC, 2, 1, NULL), SRV_RISK_FULL);
	cancel(first);
	ck_assert_int_eq(place(2, book19, MATCHING_BUY, MATCHING_GTC, 2, 1, NULL), SRV_RISK_OK);
	ck_assert_int_eq(place(1, book19, MATCHING_BUY, MATCHING_GTC, 3, 1, NULL), SRV_RISK_FULL);
	ck_assert_str_eq(srv_risk_status_name(SRV_RISK_INSUFFICIENT_FUNDS), "insufficient funds");
}
END_TEST

/* ---------- randomized through the engine ---------- */

static uint64_t rng = 99;

static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A retired book's positions go, and their slots serve other positions. */
START_TEST(retired_books_lose_their_positions)
{
	ck_assert_int_eq(srv_risk_add_cash(risk, 1, 1000000000), SRV_RISK_OK);
	for (uint32_t a = 2; a <= 5; a++) {
		ck_assert_int_eq(srv_risk_add_cash(risk, a, 0), SRV_RISK_OK);
		ck_assert_int_eq(srv_risk_set_capacity(risk, a, 1, 8), SRV_RISK_OK);
	}
	uint64_t open;
	for (uint32_t a = 2; a <= 5; a++)
		ck_assert_int_eq(place(a, book19, MATCHING_SELL, MATCHING_GTC, 100, 2, &open),
				 SRV_RISK_OK);
	ck_assert_int_eq(place(2, book20, MATCHING_SELL, MATCHING_GTC, 100, 8, NULL), SRV_RISK_OK);
	ck_assert_int_eq(place(1, book19, MATCHING_BUY, MATCHING_IOC, 100, 7, NULL), SRV_RISK_OK);
	/* Account 5's offer still has one GPU open: nothing is forgotten. */
	ck_assert_int_eq(srv_risk_forget_book(risk, book19), SRV_RISK_ARGS);
	int64_t offered, sold;
	srv_risk_position(risk, 5, book19, &offered, &sold);
	ck_assert_int_eq(offered + sold, 2);
	cancel(open);
	ck_assert_int_eq(srv_risk_forget_book(risk, book19), SRV_RISK_OK);
	ck_assert_ptr_null(srv_risk_check_invariants(risk));
	for (uint32_t a = 2; a <= 5; a++) {
		srv_risk_position(risk, a, book19, &offered, &sold);
		ck_assert_int_eq(offered + sold, 0);
	}
	srv_risk_position(risk, 2, book20, &offered, &sold);
	ck_assert_int_eq(offered, 8);
	ck_assert_int_eq(srv_risk_forget_book(risk, 1024), SRV_RISK_ARGS);
	/* Positions fill the table (64) again from the slots given back. */
	for (uint32_t b = 2; b < 65; b++) {
		struct srv_risk_order o = {.order_id = next_id++,
					   .account = 3,
					   .book = b,
					   .class_id = 1,
					   .side = MATCHING_SELL,
					   .price = 100,
					   .qty = 1};
		ck_assert_int_eq(srv_risk_enter(risk, &o), SRV_RISK_OK);
	}
	struct srv_risk_order o = {.order_id = next_id++,
				   .account = 3,
				   .book = 65,
				   .class_id = 1,
				   .side = MATCHING_SELL,
				   .price = 100,
				   .qty = 1};
	ck_assert_int_eq(srv_risk_enter(risk, &o), SRV_RISK_FULL);
	ck_assert_ptr_null(srv_risk_check_invariants(risk));
}
END_TEST

START_TEST(random_trading_never_overspends)
{
	int64_t start[6] = {0};
	for (uint32_t a = 1; a <= 5; a++) {
		/* One poor account, the others rich enough to trade all run long. */
		start[a] = a == 1 ? 20000000 : 5000000000LL + (int64_t)(rnd() % 5000000000LL);
		ck_assert_int_eq(srv_risk_add_cash(risk, a, start[a]), SRV_RISK_OK);
		ck_assert_int_eq(srv_risk_set_capacity(risk, a, 1, 2000), SRV_RISK_OK);
	}
	int64_t spent[6] = {0};
	uint64_t live[512];
	size_t nlive = 0;
	int refused = 0, fills = 0;
	for (int i = 0; i < 20000; i++) {
		uint32_t a = 1 + (uint32_t)(rnd() % 5);
		uint32_t book = rnd() % 2 ? book19 : book20;
		int side = (int)(rnd() % 2);
		int64_t price = 900000 + (int64_t)(rnd() % 200000);
		int64_t qty = 1 + (int64_t)(rnd() % 12);
		uint64_t k = rnd() % 10;
		if (k < 6 || nlive == 0) {
			uint64_t id = next_id++;
			struct srv_risk_order o = {.order_id = id,
						   .account = a,
						   .book = book,
						   .class_id = 1,
						   .side = (uint8_t)side,
						   .price = price,
						   .qty = qty};
			if (srv_risk_enter(risk, &o) != SRV_RISK_OK) {
				refused++;
				continue;
			}
			struct matching_order mo = {.order_id = id,
						    .account = a,
						    .book = book,
						    .side = (uint8_t)side,
						    .tif = rnd() % 4 ? MATCHING_GTC : MATCHING_IOC,
						    .stp = MATCHING_STP_ALLOW,
						    .price = price,
						    .qty = qty};
			ck_assert_int_eq(matching_submit(eng, &mo, &batch), MATCHING_OK);
		} else {
			size_t j = rnd() % nlive;
			uint64_t id = live[j];
			live[j] = live[--nlive];
			if (k < 8) {
				ck_assert_int_eq(matching_cancel(eng, id, &batch), MATCHING_OK);
			} else {
				struct matching_order_view v;
				if (matching_order_get(eng, id, &v) != MATCHING_OK ||
				    srv_risk_modify_begin(risk, id, price, qty) != SRV_RISK_OK)
					continue;
				ck_assert_int_eq(matching_modify(eng, id, price, qty, &batch),
						 MATCHING_OK);
			}
		}
		bool rejected = false;
		for (size_t e = 0; e < batch.n; e++) {
			const struct matching_event *ev = &batch.events[e];
			srv_risk_apply(risk, ev);
			rejected |= ev->type == MATCHING_EV_REJECTED;
			if (ev->type == MATCHING_EV_FILL) {
				/* The buyer pays price * qty plus its fee, by its role. */
				bool buyer_taker = ev->side == MATCHING_BUY;
				uint32_t buyer = buyer_taker ? ev->account : ev->maker_account;
				int64_t fee;
				ck_assert_int_eq(ledger_fee(ev->price * ev->qty,
							    buyer_taker ? 25 : 10, &fee),
						 LEDGER_OK);
				spent[buyer] += ev->price * ev->qty + fee;
				fills++;
			}
			if (ev->type == MATCHING_EV_RESTING && nlive < 512) {
				bool known = false;
				for (size_t q = 0; q < nlive; q++)
					known |= live[q] == ev->order_id;
				if (!known)
					live[nlive++] = ev->order_id;
			}
		}
		srv_risk_modify_end(risk, rejected);
		const char *why = srv_risk_check_invariants(risk);
		ck_assert_msg(why == NULL, "step %d: %s", i, why ? why : "");
		for (uint32_t b = 1; b <= 5; b++) {
			struct srv_risk_account s = acct(b);
			ck_assert_int_eq(s.cash, start[b] - spent[b]);
			ck_assert_int_ge(s.cash, s.reserved);
		}
	}
	/* The run must have traded and refused for this test to mean anything. */
	ck_assert_int_gt(fills, 1000);
	ck_assert_int_gt(refused, 100);
}
END_TEST

static Suite *risk_suite(void)
{
	Suite *s = suite_create("server-risk");
	TCase *tc = tcase_create("reservations");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, bids_need_cash_including_the_highest_fee);
	tcase_add_test(tc, fills_charge_the_real_cost_and_release_the_rest);
	tcase_add_test(tc, ioc_remainders_and_rejects_release);
	tcase_add_test(tc, modifies_reserve_release_and_undo);
	tcase_add_test(tc, sellers_offer_only_their_capacity);
	tcase_add_test(tc, retired_books_lose_their_positions);
	tcase_add_test(tc, limits_and_bad_input);
	suite_add_tcase(s, tc);
	tc = tcase_create("random");
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, random_trading_never_overspends);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tap_run(risk_suite());
}
