/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Differential test: hundreds of thousands of pseudo-random commands go to the
 * engine and to the reference model of differential.h (which the engine fuzz
 * harness shares); every event is compared field by field and the invariants
 * are checked after every command. Also: the engine is deterministic.
 */
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include <check.h>

#include "differential.h"
#include "matching.h"
#include "tap.h"

START_TEST(engine_matches_reference_model)
{
	for (uint64_t seed = 1; seed <= 100; seed++)
		run_seed(seed * 7919, 4000);
	ck_assert_uint_ge(cmd_count, 400000);
	/* The random mix must reach every event and every reason the model knows. */
	for (int t = MATCHING_EV_FILL; t <= MATCHING_EV_REJECTED; t++)
		ck_assert_msg(seen_type[t] >= 1000, "event type %d seen %llu times", t,
			      (unsigned long long)seen_type[t]);
	for (int r = MATCHING_R_CANCELLED; r < MATCHING_R_COUNT_; r++) {
		if (r == MATCHING_R_OVERFLOW || r == MATCHING_R_BAD_ORDER ||
		    r == MATCHING_R_UNKNOWN_PRODUCT)
			continue; /* unreachable with these limits and valid enums */
		ck_assert_msg(seen_reason[r] >= 20, "reason %s seen %llu times",
			      matching_reason_name((enum matching_reason)r),
			      (unsigned long long)seen_reason[r]);
	}
}
END_TEST

static bool events_equal(const struct matching_event *a, const struct matching_event *b)
{
	return a->type == b->type && a->reason == b->reason && a->side == b->side &&
	       a->book == b->book && a->order_id == b->order_id && a->account == b->account &&
	       a->maker_account == b->maker_account && a->maker_id == b->maker_id &&
	       a->fill_id == b->fill_id && a->price == b->price && a->qty == b->qty &&
	       a->taker_left == b->taker_left && a->maker_left == b->maker_left;
}

/* Same inputs, same events: two engines fed the same seed agree byte for byte. */
START_TEST(engine_is_deterministic)
{
	struct matching_event *first = NULL;
	size_t nfirst = 0;
	for (int round = 0; round < 2; round++) {
		uint64_t seed = 4242;
		rng_state = seed;
		memset(&R, 0, sizeof(R));
		struct matching_config cfg;
		matching_config_default(&cfg);
		cfg.orders_max = 256;
		cfg.levels_max = 256;
		ck_assert_int_eq(matching_create(&cfg, &eng), MATCHING_OK);
		batch.cap = matching_events_max(eng);
		batch.events = calloc(batch.cap, sizeof(*batch.events));
		struct matching_product p;
		uint32_t b;
		ck_assert_int_eq(matching_product_parse("H100", 4, 0, &p), MATCHING_OK);
		ck_assert_int_eq(matching_book_create(eng, &p, &b), MATCHING_OK);
		struct matching_event *all = calloc(200000, sizeof(*all));
		size_t n = 0;
		for (int i = 0; i < 20000; i++) {
			struct matching_order o = {.order_id = rnd() % 400,
						   .account = 1 + (uint32_t)(rnd() % 5),
						   .book = b,
						   .side = (uint8_t)(rnd() % 2),
						   .tif = (uint8_t)(rnd() % 5),
						   .price = rnd_range(90, 110),
						   .qty = rnd_range(1, 9),
						   .expire_ms = 1000000};
			if (rnd() % 3 == 0)
				ck_assert_int_eq(matching_cancel(eng, o.order_id, &batch),
						 MATCHING_OK);
			else
				ck_assert_int_eq(matching_submit(eng, &o, &batch), MATCHING_OK);
			for (size_t k = 0; k < batch.n && n < 200000; k++)
				all[n++] = batch.events[k];
		}
		if (round == 0) {
			first = all;
			nfirst = n;
		} else {
			ck_assert_uint_eq(n, nfirst);
			for (size_t k = 0; k < n; k++)
				ck_assert_msg(events_equal(&first[k], &all[k]), "event %zu differs",
					      k);
			free(all);
		}
		matching_destroy(eng);
		free(batch.events);
	}
	free(first);
}
END_TEST

static Suite *differential_suite(void)
{
	Suite *s = suite_create("matching-differential");
	TCase *tc = tcase_create("reference_model");
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, engine_matches_reference_model);
	tcase_add_test(tc, engine_is_deterministic);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tap_run(differential_suite());
}
