/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests of the ledger's pure money arithmetic: fee rounding (up, by less than
 * one micro-unit, exact at int64 extremes), the transfers of fills,
 * deliveries and refunds, amount parsing, and the batch hash.
 */
#include <string.h>

#include <check.h>

#include "ledger.h"
#include "tap.h"

static const struct ledger_accounts acc = {
	.fees = 1, .escrow = 2, .bank = 3, .buyer = 10, .seller = 20};

START_TEST(fees_round_up_by_less_than_one_micro)
{
	int64_t fee;
	ck_assert_int_eq(ledger_fee(10000, 25, &fee), LEDGER_OK);
	ck_assert_int_eq(fee, 25);
	ck_assert_int_eq(ledger_fee(1, 25, &fee), LEDGER_OK);
	ck_assert_int_eq(fee, 1); /* 0.0025 rounds up */
	ck_assert_int_eq(ledger_fee(0, 25, &fee), LEDGER_OK);
	ck_assert_int_eq(fee, 0);
	ck_assert_int_eq(ledger_fee(12345, 0, &fee), LEDGER_OK);
	ck_assert_int_eq(fee, 0);
	ck_assert_int_eq(ledger_fee(12345, 10000, &fee), LEDGER_OK);
	ck_assert_int_eq(fee, 12345);
	ck_assert_int_eq(ledger_fee(INT64_MAX, 10000, &fee), LEDGER_OK);
	ck_assert_int_eq(fee, INT64_MAX);
	ck_assert_int_eq(ledger_fee(INT64_MAX, 1, &fee), LEDGER_OK);
	ck_assert_int_eq(fee, INT64_MAX / 10000 + 1);
	ck_assert_int_eq(ledger_fee(-1, 1, &fee), LEDGER_ERR_ARGS);
	ck_assert_int_eq(ledger_fee(1, 10001, &fee), LEDGER_ERR_ARGS);
	/* Against the exact value for a sweep: fee*10000 >= n*bps > (fee-1)*10000. */
	for (int64_t n = 0; n < 30000; n += 7)
		for (uint32_t bps = 0; bps <= 10000; bps += 333) {
			ck_assert_int_eq(ledger_fee(n, bps, &fee), LEDGER_OK);
			ck_assert(fee * 10000 >= n * (int64_t)bps);
			ck_assert(fee == 0 || (fee - 1) * 10000 < n * (int64_t)bps);
		}
}
END_TEST

START_TEST(fill_moves_buyer_money_to_escrow_and_fees)
{
	struct ledger_fill f = {.fill_id = 7,
				.buyer = 1,
				.seller = 2,
				.buyer_is_taker = true,
				.taker_order_id = 70,
				.maker_order_id = 71,
				.price = 2450000,
				.qty = 8};
	struct ledger_fees fees = {.maker_bps = 10, .taker_bps = 25};
	struct ledger_transfer t[2];
	size_t n;
	ck_assert_int_eq(ledger_fill_transfers(&f, &fees, &acc, t, &n), LEDGER_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(t[0].id, 7 << 3);
	ck_assert_int_eq(t[0].debit_account, 10);
	ck_assert_int_eq(t[0].credit_account, 2);
	ck_assert_int_eq(t[0].amount, 19600000);
	ck_assert_int_eq(t[0].code, LEDGER_TRADE);
	ck_assert_int_eq(t[0].fill_id, 7);
	ck_assert_int_eq(t[0].taker_order_id, 70);
	ck_assert_int_eq(t[1].id, (7 << 3) | 1);
	ck_assert_int_eq(t[1].debit_account, 10);
	ck_assert_int_eq(t[1].credit_account, 1);
	ck_assert_int_eq(t[1].amount, 49000); /* 25 bps of 19.6 */
	ck_assert_int_eq(t[1].code, LEDGER_FEE);
	/* The buyer as maker pays the maker rate; a zero fee writes no row. */
	f.buyer_is_taker = false;
	ck_assert_int_eq(ledger_fill_transfers(&f, &fees, &acc, t, &n), LEDGER_OK);
	ck_assert_int_eq(t[1].amount, 19600);
	fees.maker_bps = 0;
	ck_assert_int_eq(ledger_fill_transfers(&f, &fees, &acc, t, &n), LEDGER_OK);
	ck_assert_uint_eq(n, 1);
}
END_TEST

START_TEST(fill_input_is_checked)
{
	struct ledger_fill f = {.fill_id = 1, .price = 1, .qty = 1};
	struct ledger_fees fees = {0};
	struct ledger_transfer t[2];
	size_t n;
	f.price = INT64_MAX / 2;
	f.qty = 3;
	ck_assert_int_eq(ledger_fill_transfers(&f, &fees, &acc, t, &n), LEDGER_ERR_OVERFLOW);
	f.price = INT64_MAX / 2;
	f.qty = 2;
	fees.taker_bps = 10000;
	f.buyer_is_taker = true;
	/* The notional fits, notional plus a 100% fee does not. */
	ck_assert_int_eq(ledger_fill_transfers(&f, &fees, &acc, t, &n), LEDGER_ERR_OVERFLOW);
	f = (struct ledger_fill){.fill_id = 0, .price = 1, .qty = 1};
	ck_assert_int_eq(ledger_fill_transfers(&f, &fees, &acc, t, &n), LEDGER_ERR_ARGS);
	f.fill_id = LEDGER_FILL_ID_MAX + 1;
	ck_assert_int_eq(ledger_fill_transfers(&f, &fees, &acc, t, &n), LEDGER_ERR_ARGS);
	f.fill_id = LEDGER_FILL_ID_MAX;
	ck_assert_int_eq(ledger_fill_transfers(&f, &fees, &acc, t, &n), LEDGER_OK);
	ck_assert_int_lt(t[0].id, LEDGER_OPERATOR_ID_BASE);
	f.price = 0;
	ck_assert_int_eq(ledger_fill_transfers(&f, &fees, &acc, t, &n), LEDGER_ERR_ARGS);
	f.price = 1;
	f.qty = -1;
	ck_assert_int_eq(ledger_fill_transfers(&f, &fees, &acc, t, &n), LEDGER_ERR_ARGS);
}
END_TEST

START_TEST(delivery_and_refund_legs)
{
	struct ledger_fill f = {.fill_id = 9, .buyer_is_taker = true, .price = 1000, .qty = 3};
	struct ledger_fees fees = {.maker_bps = 100, .taker_bps = 200};
	struct ledger_transfer t[2];
	size_t n;
	ck_assert_int_eq(ledger_settle_transfers(&f, &fees, &acc, true, 55, t, &n), LEDGER_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(t[0].id, (9 << 3) | 2);
	ck_assert_int_eq(t[0].debit_account, 2);
	ck_assert_int_eq(t[0].credit_account, 20);
	ck_assert_int_eq(t[0].amount, 3000);
	ck_assert_int_eq(t[0].code, LEDGER_ESCROW_RELEASE);
	ck_assert_int_eq(t[0].lease_id, 55);
	ck_assert_int_eq(t[1].id, (9 << 3) | 3);
	ck_assert_int_eq(t[1].debit_account, 20);
	ck_assert_int_eq(t[1].credit_account, 1);
	ck_assert_int_eq(t[1].amount, 30); /* the seller was the maker: 100 bps */
	ck_assert_int_eq(ledger_settle_transfers(&f, &fees, &acc, false, 55, t, &n), LEDGER_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(t[0].id, (9 << 3) | 4);
	ck_assert_int_eq(t[0].debit_account, 2);
	ck_assert_int_eq(t[0].credit_account, 10);
	ck_assert_int_eq(t[0].amount, 3000);
	ck_assert_int_eq(t[0].code, LEDGER_REFUND);
	ck_assert_int_eq(t[1].id, (9 << 3) | 5);
	ck_assert_int_eq(t[1].debit_account, 1);
	ck_assert_int_eq(t[1].credit_account, 10);
	ck_assert_int_eq(t[1].amount, 60); /* the buyer's taker fee comes back */
}
END_TEST

/* A lease that delivered part of its window: paid pro rata, the rest and its fee back. */
START_TEST(partial_delivery_legs)
{
	struct ledger_fill f = {.fill_id = 9, .buyer_is_taker = true, .price = 1000, .qty = 3};
	struct ledger_fees fees = {.maker_bps = 100, .taker_bps = 200};
	struct ledger_transfer t[4];
	size_t n;
	ck_assert_int_eq(ledger_settle_part_transfers(&f, &fees, &acc, 20, 60, 55, t, &n),
			 LEDGER_OK);
	ck_assert_uint_eq(n, 4);
	ck_assert(t[0].id == ((9 << 3) | 2) && t[0].amount == 1000 &&
		  t[0].code == LEDGER_ESCROW_RELEASE && t[0].credit_account == 20);
	ck_assert(t[1].id == ((9 << 3) | 3) && t[1].amount == 10 && t[1].debit_account == 20);
	ck_assert(t[2].id == ((9 << 3) | 4) && t[2].amount == 2000 && t[2].code == LEDGER_REFUND &&
		  t[2].credit_account == 10);
	/* The buyer paid 60 (200 bps of 3000) and keeps paying 20 (of 1000). */
	ck_assert(t[3].id == ((9 << 3) | 5) && t[3].amount == 40 && t[3].debit_account == 1 &&
		  t[3].credit_account == 10);
	/* Rounding favours nobody: the seller's share rounds down, the rest goes back. */
	f.price = 1000;
	f.qty = 1;
	ck_assert_int_eq(ledger_settle_part_transfers(&f, &fees, &acc, 1, 3, 55, t, &n), LEDGER_OK);
	ck_assert_int_eq(t[0].amount, 333);
	ck_assert_int_eq(t[2].amount, 667);
	ck_assert_int_eq(ledger_settle_part_transfers(&f, &fees, &acc, 4, 3, 55, t, &n),
			 LEDGER_ERR_ARGS);
	ck_assert_int_eq(ledger_settle_part_transfers(&f, &fees, &acc, 0, 0, 55, t, &n),
			 LEDGER_ERR_ARGS);
	ck_assert_int_eq(ledger_settle_part_transfers(&f, &fees, &acc, -1, 3, 55, t, &n),
			 LEDGER_ERR_ARGS);
	/* Random fills and shares: escrow gives back exactly the notional; each side pays
	 * exactly its fee on the delivered share. */
	uint64_t x = 12345;
	for (int i = 0; i < 100000; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		f = (struct ledger_fill){.fill_id = 1 + i,
					 .buyer_is_taker = x >> 63,
					 .price = 1 + (int64_t)((x >> 20) % 100000000000LL),
					 .qty = 1 + (int64_t)((x >> 5) % 1000)};
		int64_t total = 1 + (int64_t)((x >> 40) % 3600),
			used = (int64_t)((x >> 12) % (total + 1));
		ck_assert_int_eq(
			ledger_settle_part_transfers(&f, &fees, &acc, used, total, 7, t, &n),
			LEDGER_OK);
		int64_t out_of_escrow = 0, seller_fee = 0, fee_back = 0, released = 0;
		for (size_t k = 0; k < n; k++) {
			int leg = (int)(t[k].id & 7);
			ck_assert_int_gt(t[k].amount, 0);
			if (leg == 2 || leg == 4)
				out_of_escrow += t[k].amount;
			released += leg == 2 ? t[k].amount : 0;
			seller_fee += leg == 3 ? t[k].amount : 0;
			fee_back += leg == 5 ? t[k].amount : 0;
		}
		int64_t notional = f.price * f.qty, want, paid, kept;
		ck_assert_int_eq(out_of_escrow, notional);
		ck_assert(released == notional * (__extension__(__int128) used) / total);
		uint32_t sbps = f.buyer_is_taker ? fees.maker_bps : fees.taker_bps;
		uint32_t bbps = f.buyer_is_taker ? fees.taker_bps : fees.maker_bps;
		ck_assert_int_eq(ledger_fee(released, sbps, &want), LEDGER_OK);
		ck_assert_int_eq(seller_fee, want);
		ck_assert_int_eq(ledger_fee(notional, bbps, &paid), LEDGER_OK);
		ck_assert_int_eq(ledger_fee(released, bbps, &kept), LEDGER_OK);
		ck_assert_int_eq(fee_back, paid - kept);
	}
}
END_TEST

START_TEST(amounts_parse_exactly)
{
	int64_t v = -1;
	ck_assert_int_eq(ledger_parse_amount("12", &v), LEDGER_OK);
	ck_assert_int_eq(v, 12000000);
	ck_assert_int_eq(ledger_parse_amount("12.5", &v), LEDGER_OK);
	ck_assert_int_eq(v, 12500000);
	ck_assert_int_eq(ledger_parse_amount("0.000001", &v), LEDGER_OK);
	ck_assert_int_eq(v, 1);
	ck_assert_int_eq(ledger_parse_amount("9223372036854.775807", &v), LEDGER_OK);
	ck_assert_int_eq(v, INT64_MAX);
	v = -1;
	static const char *const bad[] = {"",	       "0",   "0.0", "-1", "+1", "1.",	 ".5",
					  "1.0000001", "1e6", "1,5", " 1", "1 ", "1..2", "abc"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(ledger_parse_amount(bad[i], &v) == LEDGER_ERR_ARGS, "accepted '%s'",
			      bad[i]);
	ck_assert_int_eq(ledger_parse_amount("9223372036854.775808", &v), LEDGER_ERR_OVERFLOW);
	ck_assert_int_eq(ledger_parse_amount("99999999999999999999", &v), LEDGER_ERR_OVERFLOW);
	ck_assert_int_eq(v, -1);
	ck_assert_int_eq(ledger_parse_amount(NULL, &v), LEDGER_ERR_ARGS);
}
END_TEST

START_TEST(batch_hash_covers_every_field)
{
	uint8_t prev[LEDGER_HASH_BYTES] = {0}, h0[LEDGER_HASH_BYTES], h[LEDGER_HASH_BYTES];
	struct ledger_transfer base[2] = {
		{.id = 8,
		 .debit_account = 10,
		 .credit_account = 2,
		 .amount = 100,
		 .code = 3,
		 .fill_id = 1,
		 .taker_order_id = 5,
		 .maker_order_id = 6,
		 .lease_id = 0},
		{.id = 9,
		 .debit_account = 10,
		 .credit_account = 1,
		 .amount = 1,
		 .code = 4,
		 .fill_id = 1},
	};
	ledger_batch_hash(prev, 1, "USD", base, 2, h0);
	ledger_batch_hash(prev, 1, "USD", base, 2, h);
	ck_assert_int_eq(memcmp(h0, h, sizeof(h)), 0);
	ledger_batch_hash(prev, 2, "USD", base, 2, h);
	ck_assert_int_ne(memcmp(h0, h, sizeof(h)), 0);
	ledger_batch_hash(prev, 1, "EUR", base, 2, h);
	ck_assert_int_ne(memcmp(h0, h, sizeof(h)), 0);
	ledger_batch_hash(prev, 1, "USD", base, 1, h);
	ck_assert_int_ne(memcmp(h0, h, sizeof(h)), 0);
	prev[31] = 1;
	ledger_batch_hash(prev, 1, "USD", base, 2, h);
	ck_assert_int_ne(memcmp(h0, h, sizeof(h)), 0);
	prev[31] = 0;
	for (int field = 0; field < 9; field++) {
		struct ledger_transfer t[2];
		memcpy(t, base, sizeof(t));
		int64_t *f[] = {&t[1].id,
				&t[1].debit_account,
				&t[1].credit_account,
				&t[1].amount,
				NULL,
				&t[1].fill_id,
				&t[1].taker_order_id,
				&t[1].maker_order_id,
				&t[1].lease_id};
		if (f[field])
			(*f[field])++;
		else
			t[1].code++;
		ledger_batch_hash(prev, 1, "USD", t, 2, h);
		ck_assert_msg(memcmp(h0, h, sizeof(h)) != 0, "field %d not covered", field);
	}
}
END_TEST

/* Format 2 covers the transfers as format 1 does, then every field of every trade. */
START_TEST(batch_hash_covers_every_trade_field)
{
	uint8_t prev[LEDGER_HASH_BYTES] = {0}, h0[LEDGER_HASH_BYTES], h[LEDGER_HASH_BYTES];
	struct ledger_transfer t[1] = {{.id = 8,
					.debit_account = 10,
					.credit_account = 2,
					.amount = 100,
					.code = LEDGER_TRADE,
					.fill_id = 1,
					.taker_order_id = 5,
					.maker_order_id = 6}};
	struct ledger_trade base[2] = {
		{.fill = {.fill_id = 1,
			  .buyer = 3,
			  .seller = 4,
			  .buyer_is_taker = true,
			  .taker_order_id = 5,
			  .maker_order_id = 6,
			  .price = 50,
			  .qty = 2},
		 .product = "H100-80G/2026-12-08T10",
		 .time_ms = 1796724000123},
		{.fill = {.fill_id = 2, .buyer = 4, .seller = 3, .price = 7, .qty = 1},
		 .product = "H100-80G",
		 .time_ms = 1},
	};
	ledger_batch_hash_trades(prev, 1, "USD", t, 1, base, 2, h0);
	ledger_batch_hash_trades(prev, 1, "USD", t, 1, base, 2, h);
	ck_assert_int_eq(memcmp(h0, h, sizeof(h)), 0);
	/* Not format 1's hash, even without trades. */
	ledger_batch_hash(prev, 1, "USD", t, 1, h);
	ck_assert_int_ne(memcmp(h0, h, sizeof(h)), 0);
	uint8_t none[LEDGER_HASH_BYTES];
	ledger_batch_hash_trades(prev, 1, "USD", t, 1, base, 0, none);
	ck_assert_int_ne(memcmp(none, h, sizeof(h)), 0);
	ck_assert_int_ne(memcmp(none, h0, sizeof(h)), 0);
	ledger_batch_hash_trades(prev, 1, "USD", t, 1, base, 1, h);
	ck_assert_int_ne(memcmp(h0, h, sizeof(h)), 0);
	t[0].amount++;
	ledger_batch_hash_trades(prev, 1, "USD", t, 1, base, 2, h);
	ck_assert_int_ne(memcmp(h0, h, sizeof(h)), 0);
	t[0].amount--;
	for (int field = 0; field < 12; field++) {
		struct ledger_trade tr[2];
		memcpy(tr, base, sizeof(tr));
		struct ledger_fill *f = &tr[1].fill;
		int64_t *v[] = {&f->fill_id,	    &f->price,		&f->qty,
				&f->taker_order_id, &f->maker_order_id, &tr[1].time_ms};
		if (field < 6)
			(*v[field])++;
		else if (field == 6)
			f->buyer++;
		else if (field == 7)
			f->seller++;
		else if (field == 8)
			f->buyer_is_taker = true;
		else if (field == 9)
			tr[1].product[0] = 'A'; /* the same length, another byte */
		else if (field == 10)
			strcpy(tr[1].product, "H100-80G/"); /* longer */
		else
			strcpy(tr[1].product, "H100-80"); /* shorter */
		ledger_batch_hash_trades(prev, 1, "USD", t, 1, tr, 2, h);
		ck_assert_msg(memcmp(h0, h, sizeof(h)) != 0, "trade field %d not covered", field);
	}
	/* The product's length is hashed: moving a byte from one product to the next
	 * changes the hash. */
	struct ledger_trade moved[2];
	memcpy(moved, base, sizeof(moved));
	strcpy(moved[0].product, "H100-80G/2026-12-08T1");
	strcpy(moved[1].product, "0H100-80G");
	ledger_batch_hash_trades(prev, 1, "USD", t, 1, moved, 2, h);
	ck_assert_int_ne(memcmp(h0, h, sizeof(h)), 0);
	ck_assert(ledger_product_valid("H100-80G/2026-12-08T10"));
	ck_assert(ledger_product_valid("a.b_c:d-e/F9"));
	ck_assert(!ledger_product_valid(""));
	ck_assert(!ledger_product_valid("H100 80G"));
	ck_assert(!ledger_product_valid("H100\n"));
	ck_assert(!ledger_product_valid("H100'--"));
	char longest[LEDGER_PRODUCT_MAX + 2];
	memset(longest, 'x', sizeof(longest));
	longest[LEDGER_PRODUCT_MAX] = '\0';
	ck_assert(ledger_product_valid(longest));
	longest[LEDGER_PRODUCT_MAX] = 'x';
	longest[LEDGER_PRODUCT_MAX + 1] = '\0';
	ck_assert(!ledger_product_valid(longest));
}
END_TEST

/* Batching needs no database: the writer connects only when it flushes. */
START_TEST(writer_batches_by_count_or_age)
{
	struct ledger_writer_config cfg;
	ledger_writer_config_default(&cfg);
	cfg.conninfo = "postgresql:///never-used";
	cfg.batch_fills_max = 3;
	cfg.batch_ms_max = 50;
	struct ledger_writer *w;
	ck_assert_int_eq(ledger_writer_create(&cfg, &w), LEDGER_OK);
	struct ledger_trade tr = {
		.fill = {.fill_id = 1, .buyer = 1, .seller = 2, .price = 10, .qty = 1},
		.product = "A100-40G/2026-12-08T10",
		.time_ms = 1796724000000};
	struct ledger_fill *f = &tr.fill;
	ck_assert(!ledger_writer_due(w, 1000));
	ck_assert_int_eq(ledger_writer_add_fill(w, &tr, 5, 1000), LEDGER_OK);
	ck_assert(!ledger_writer_due(w, 1049));
	ck_assert(ledger_writer_due(w, 1050)); /* the oldest fill has waited batch_ms_max */
	f->fill_id = 2;
	ck_assert_int_eq(ledger_writer_add_fill(w, &tr, 4, 1001), LEDGER_ERR_ARGS); /* seq back */
	/* A fill whose product or time ledger.fills would refuse is refused here. */
	strcpy(tr.product, "A100 40G");
	ck_assert_int_eq(ledger_writer_add_fill(w, &tr, 5, 1001), LEDGER_ERR_ARGS);
	tr.product[0] = '\0';
	ck_assert_int_eq(ledger_writer_add_fill(w, &tr, 5, 1001), LEDGER_ERR_ARGS);
	strcpy(tr.product, "A100-40G");
	tr.time_ms = -1;
	ck_assert_int_eq(ledger_writer_add_fill(w, &tr, 5, 1001), LEDGER_ERR_ARGS);
	tr.time_ms = 1796724000000;
	ck_assert_uint_eq(ledger_writer_pending(w), 1);
	ck_assert_int_eq(ledger_writer_add_fill(w, &tr, 5, 1001), LEDGER_OK);
	f->fill_id = 3;
	ck_assert_int_eq(ledger_writer_add_fill(w, &tr, 6, 1002), LEDGER_OK);
	ck_assert(ledger_writer_due(w, 1002)); /* full */
	f->fill_id = 4;
	ck_assert_int_eq(ledger_writer_add_fill(w, &tr, 7, 1003), LEDGER_ERR_ARGS);
	ck_assert_uint_eq(ledger_writer_pending(w), 3);
	f->price = INT64_MAX;
	f->qty = 2;
	ledger_writer_destroy(w);
	cfg.batch_fills_max = 0;
	ck_assert_int_eq(ledger_writer_create(&cfg, &w), LEDGER_ERR_ARGS);
	cfg.batch_fills_max = 3;
	cfg.fees.taker_bps = LEDGER_BPS_MAX + 1;
	ck_assert_int_eq(ledger_writer_create(&cfg, &w), LEDGER_ERR_ARGS);
	cfg.fees.taker_bps = 0;
	ck_assert_int_eq(ledger_writer_create(&cfg, &w), LEDGER_OK);
	ck_assert_int_eq(ledger_writer_add_fill(w, &tr, 1, 0), LEDGER_ERR_OVERFLOW);
	ck_assert_uint_eq(ledger_writer_pending(w), 0);
	ledger_writer_destroy(w);
}
END_TEST

START_TEST(names)
{
	ck_assert_str_eq(ledger_code_name(LEDGER_ESCROW_RELEASE), "escrow_release");
	ck_assert_ptr_null(ledger_code_name(0));
	ck_assert_ptr_null(ledger_code_name(7));
	ck_assert_str_eq(ledger_status_name(LEDGER_ERR_DUPLICATE), "batch already in the ledger");
	ck_assert_str_eq(ledger_status_name(99), "unknown status");
}
END_TEST

static Suite *money_suite(void)
{
	Suite *s = suite_create("ledger-money");
	TCase *tc = tcase_create("fees");
	tcase_add_test(tc, fees_round_up_by_less_than_one_micro);
	suite_add_tcase(s, tc);
	tc = tcase_create("transfers");
	tcase_add_test(tc, fill_moves_buyer_money_to_escrow_and_fees);
	tcase_add_test(tc, fill_input_is_checked);
	tcase_add_test(tc, delivery_and_refund_legs);
	tcase_add_test(tc, partial_delivery_legs);
	suite_add_tcase(s, tc);
	tc = tcase_create("parsing_and_hashing");
	tcase_add_test(tc, amounts_parse_exactly);
	tcase_add_test(tc, batch_hash_covers_every_field);
	tcase_add_test(tc, batch_hash_covers_every_trade_field);
	tcase_add_test(tc, names);
	tcase_add_test(tc, writer_batches_by_count_or_age);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tap_run(money_suite());
}
