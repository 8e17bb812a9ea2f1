/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The exchange core and the ledger agree (needs the PostgreSQL that
 * ./scripts/test starts): participants are funded in both, random orders of
 * five accounts go through the core, its fills go through the settlement
 * writer, and after every settled batch each participant's AVAILABLE balance
 * in the ledger equals the cash the core's risk holds for it, to the
 * micro-unit. The audit is clean at the end.
 */
#include <string.h>

#include <check.h>

#include "gridex.pb-c.h"
#include "ledger.h"
#include "pgtest.h"
#include "srv_core.h"
#include "tap.h"

#define PEOPLE 5
#define NOW    1795366800000LL

static uint64_t rng = 7;

static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void setup(void)
{
	pgtest_setup_dir(GRIDEX_TEST_MIGRATIONS);
}

START_TEST(core_and_ledger_agree_after_every_batch)
{
	const struct ledger_fees fees = {.maker_bps = 10, .taker_bps = 25};
	struct srv_core_config cfg;
	srv_core_config_default(&cfg);
	cfg.matching.orders_max = 4096;
	cfg.matching.levels_max = 4096;
	cfg.matching.books_max = 8;
	cfg.risk.accounts_max = 16;
	cfg.risk.orders_max = 4096;
	cfg.risk.positions_max = 64;
	cfg.risk.capacities_max = 16;
	cfg.risk.maker_bps = fees.maker_bps;
	cfg.risk.taker_bps = fees.taker_bps;
	cfg.accounts_max = 16;
	cfg.client_ids_max = 4096;
	struct srv_core *core;
	ck_assert_int_eq(srv_core_create(&cfg, &core), SRV_CORE_OK);
	struct srv_core_out out;
	ck_assert_int_eq(srv_core_out_alloc(core, &out), SRV_CORE_OK);

	/* Participants: funded in the ledger by one deposit batch, and in the core. */
	struct ledger *l = NULL;
	ck_assert_int_eq(ledger_open(pgt.app_url, "USD", &l), LEDGER_OK);
	struct ledger_accounts acc;
	ledger_exchange_accounts(l, &acc);
	struct ledger_transfer deposits[PEOPLE];
	int64_t account_id[PEOPLE + 1];
	uint8_t pk[32] = {0};
	pk[0] = 0x58; /* the Ed25519 base point: a valid key; nothing is signed here */
	for (int i = 1; i < 32; i++)
		pk[i] = 0x66;
	uint32_t cls;
	ck_assert_int_eq(srv_core_class_id(core, "H100-80G", &cls), SRV_CORE_OK);
	for (uint32_t p = 1; p <= PEOPLE; p++) {
		char name[16];
		snprintf(name, sizeof(name), "trader%u", p);
		int64_t cash = 200000000 + (int64_t)(rnd() % 300000000);
		ck_assert_int_eq(ledger_add_participant(l, p, name), LEDGER_OK);
		ck_assert_int_eq(ledger_participant_account(l, p, &account_id[p]), LEDGER_OK);
		deposits[p - 1] = (struct ledger_transfer){.id = LEDGER_OPERATOR_ID_BASE + p,
							   .debit_account = acc.bank,
							   .credit_account = account_id[p],
							   .amount = cash,
							   .code = LEDGER_DEPOSIT};
		ck_assert_int_eq(srv_core_register(core, p, pk), SRV_CORE_OK);
		ck_assert_int_eq(srv_risk_add_cash(srv_core_risk(core), p, cash), SRV_RISK_OK);
		ck_assert_int_eq(srv_risk_set_capacity(srv_core_risk(core), p, cls, 60),
				 SRV_RISK_OK);
	}
	ck_assert_int_eq(ledger_post(l, 1, deposits, PEOPLE), LEDGER_OK);

	struct ledger_writer_config wc;
	ledger_writer_config_default(&wc);
	wc.conninfo = pgt.app_url;
	wc.fees = fees;
	wc.batch_fills_max = 5000;
	struct ledger_writer *w;
	ck_assert_int_eq(ledger_writer_create(&wc, &w), LEDGER_OK);

	static const char *const hours[] = {"H100-80G/2026-11-22T19", "H100-80G/2026-11-22T20"};
	uint64_t nonce[PEOPLE + 1] = {0}, coid = 1;
	int fills = 0, batches = 0;
	for (int i = 0; i < 3000; i++) {
		uint32_t a = 1 + (uint32_t)(rnd() % PEOPLE);
		struct srv_request r = {.account = a,
					.nonce = ++nonce[a],
					.expires_at_ms = NOW + 1000,
					.type = GRIDEX__V1__REQUEST_TYPE__NEW_ORDER,
					.client_order_id = coid++,
					.side = rnd() % 2 ? GRIDEX__V1__SIDE__BUY
							  : GRIDEX__V1__SIDE__SELL,
					.time_in_force = rnd() % 3 ? GRIDEX__V1__TIME_IN_FORCE__GTC
								   : GRIDEX__V1__TIME_IN_FORCE__IOC,
					.price = 1900000 + (int64_t)(rnd() % 200000),
					.quantity = 1 + (int64_t)(rnd() % 6)};
		strcpy(r.product, hours[rnd() % 2]);
		if (rnd() % 5 == 0) { /* now and then cancel an older order instead */
			r.type = GRIDEX__V1__REQUEST_TYPE__CANCEL;
			r.target_client_order_id = 1 + rnd() % coid;
			r.client_order_id = 0;
			r.side = r.time_in_force = 0;
			r.price = r.quantity = 0;
			r.product[0] = '\0';
		}
		ck_assert_int_eq(srv_core_handle(core, &r, NOW, &out), SRV_CORE_OK);
		for (size_t f = 0; f < out.n_fills; f++, fills++)
			ck_assert_int_eq(ledger_writer_add_fill(w, &out.fills[f], 1000 + i, 0),
					 LEDGER_OK);
		if (i % 100 != 99)
			continue;
		ck_assert_msg(ledger_writer_flush(w) == LEDGER_OK, "%s", ledger_writer_error(w));
		batches++;
		for (uint32_t p = 1; p <= PEOPLE; p++) {
			struct srv_risk_account s;
			int64_t balance;
			ck_assert_int_eq(srv_risk_account(srv_core_risk(core), p, &s), SRV_RISK_OK);
			ck_assert_int_eq(ledger_balance(l, account_id[p], &balance), LEDGER_OK);
			ck_assert_msg(balance == s.cash,
				      "step %d participant %u: ledger %lld, core %lld", i, p,
				      (long long)balance, (long long)s.cash);
			ck_assert_int_ge(s.cash, s.reserved);
		}
	}
	ck_assert_int_gt(fills, 200); /* the run must trade to mean anything */
	ck_assert_int_eq(batches, 30);
	ck_assert_int_eq(pgtest_audit(), 0);
	ledger_writer_destroy(w);
	ledger_close(l);
	srv_core_destroy(core);
	srv_core_out_free(&out);
}
END_TEST

static Suite *core_ledger_suite(void)
{
	Suite *s = suite_create("server-core-ledger");
	TCase *tc = tcase_create("settlement");
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, setup, pgtest_teardown);
	tcase_add_test(tc, core_and_ledger_agree_after_every_batch);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	int skip = pgtest_skip_without_database();
	return skip ? skip : tap_run(core_ledger_suite());
}
