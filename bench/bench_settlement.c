/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Settlement benchmark (docs/performance.md): fills per second written into
 * the ledger by the settlement writer, for batches of 1, 100, 1,000 and
 * 10,000 fills, with every invariant of migrations/ on (balance trigger,
 * overdraft checks, foreign keys, hash chain, synchronous commit).
 *
 * Needs a migrated database: bench/run-settlement makes one and runs this.
 *   bench-settlement --database=URL   (connect as gridex_app)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ledger.h"

#define PEOPLE 200

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, int rc, const char *detail)
{
	fprintf(stderr, "bench-settlement: %s: %s: %s\n", what, ledger_status_name(rc), detail);
	exit(1);
}

static uint64_t rng = 1;

static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

int main(int argc, char **argv)
{
	const char *url = getenv("GRIDEX_DATABASE_URL");
	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--database=", 11) == 0) {
			url = argv[i] + 11;
		} else {
			fprintf(stderr, "usage: bench-settlement [--database=URL]\n");
			return 2;
		}
	}
	if (!url) {
		fprintf(stderr,
			"bench-settlement: no database (--database or GRIDEX_DATABASE_URL)\n");
		return 2;
	}
	/* Participants with plenty of money, deposited in one batch. */
	struct ledger *l = NULL;
	int rc = ledger_open(url, "USD", &l);
	if (rc)
		die("connect", rc, ledger_error(l));
	int64_t last;
	if ((rc = ledger_last_batch(l, &last)) != 0)
		die("ledger", rc, ledger_error(l));
	if (last != 0) {
		fprintf(stderr, "bench-settlement: needs an empty ledger (bench/run-settlement)\n");
		return 1;
	}
	struct ledger_accounts acc;
	ledger_exchange_accounts(l, &acc);
	static struct ledger_transfer deposits[PEOPLE];
	for (uint32_t p = 1; p <= PEOPLE; p++) {
		char name[16];
		snprintf(name, sizeof(name), "trader%u", p);
		int64_t account;
		if ((rc = ledger_add_participant(l, p, name)) != 0 ||
		    (rc = ledger_participant_account(l, p, &account)) != 0)
			die("participant", rc, ledger_error(l));
		deposits[p - 1] = (struct ledger_transfer){.id = LEDGER_OPERATOR_ID_BASE + p,
							   .debit_account = acc.bank,
							   .credit_account = account,
							   .amount = INT64_C(1) << 50,
							   .code = LEDGER_DEPOSIT};
	}
	if ((rc = ledger_post(l, 1, deposits, PEOPLE)) != 0)
		die("deposit", rc, ledger_error(l));
	ledger_close(l);

	static const struct {
		uint32_t batch, fills;
	} runs[] = {{1, 500}, {100, 20000}, {1000, 100000}, {10000, 200000}};
	int64_t fill_id = 1, seq = 2;
	printf("%8s %9s %10s %12s %14s\n", "batch", "fills", "seconds", "fills/s", "transfers/s");
	for (size_t r = 0; r < sizeof(runs) / sizeof(runs[0]); r++) {
		struct ledger_writer_config cfg;
		ledger_writer_config_default(&cfg);
		cfg.conninfo = url;
		cfg.fees = (struct ledger_fees){.maker_bps = 5, .taker_bps = 20};
		cfg.batch_fills_max = runs[r].batch;
		struct ledger_writer *w;
		if ((rc = ledger_writer_create(&cfg, &w)) != 0)
			die("writer", rc, "");
		/* Connect before timing: one warm-up fill. */
		/* Each fill also makes its row of ledger.fills, with a product and a time. */
		struct ledger_trade f = {.fill = {.fill_id = fill_id++,
						  .buyer = 1,
						  .seller = 2,
						  .price = 1,
						  .qty = 1},
					 .product = "H100-80G/2026-12-08T10",
					 .time_ms = INT64_C(1796724000000)};
		if ((rc = ledger_writer_add_fill(w, &f, seq++, 0)) != 0 ||
		    (rc = ledger_writer_flush(w)) != 0)
			die("warm-up", rc, ledger_writer_error(w));
		double t0 = now_s();
		for (uint32_t i = 0; i < runs[r].fills; i++) {
			uint32_t b = 1 + (uint32_t)(rnd() % PEOPLE),
				 s = 1 + (uint32_t)(rnd() % PEOPLE);
			f.fill = (struct ledger_fill){.fill_id = fill_id++,
						      .buyer = b,
						      .seller = s == b ? 1 + s % PEOPLE : s,
						      .buyer_is_taker = rnd() % 2,
						      .taker_order_id = (int64_t)i + 1,
						      .maker_order_id = (int64_t)i + 2,
						      .price = 2000000 + (int64_t)(rnd() % 1000000),
						      .qty = 1 + (int64_t)(rnd() % 16)};
			f.time_ms += 1;
			if ((rc = ledger_writer_add_fill(w, &f, seq++, 0)) != 0)
				die("add", rc, ledger_writer_error(w));
			if (ledger_writer_pending(w) == runs[r].batch &&
			    (rc = ledger_writer_flush(w)) != 0)
				die("flush", rc, ledger_writer_error(w));
		}
		if ((rc = ledger_writer_flush(w)) != 0)
			die("flush", rc, ledger_writer_error(w));
		double dt = now_s() - t0;
		/* Two transfers per fill: the trade into escrow and the buyer's fee. */
		printf("%8u %9u %10.2f %12.0f %14.0f\n", runs[r].batch, runs[r].fills, dt,
		       runs[r].fills / dt, 2.0 * runs[r].fills / dt);
		ledger_writer_destroy(w);
	}
	return 0;
}
