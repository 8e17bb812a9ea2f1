/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Price history benchmark (docs/performance.md, "Price history"): how long
 * ledger_candles() takes, the query behind the HTTP API's /api/v1/history, for the
 * shapes a chart asks for, and ledger_trades_between(), behind /api/v1/history/trades,
 * for pages of 1,000 trades, on a ledger that bench/run-history-queries filled with
 * fills spread over days, classes and delivery hours. Each query runs 5 times; the
 * median and the slowest are printed, with the fills its range holds, the class's or
 * product's among them, and the rows answered (candles, or trades).
 *
 *   bench-history --database=URL --end-ms=T   (gridex_auditor; T: the last fill's time)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "clock.h"
#include "ledger.h"

#define RUNS	 5
#define HOUR_MS	 INT64_C(3600000)
#define DAY_MS	 (24 * HOUR_MS)
#define ROWS_MAX 1000

static int64_t count(PGconn *c, const struct ledger_candle_query *q, bool all)
{
	char sql[512];
	snprintf(sql, sizeof(sql),
		 "select count(*) from ledger.fills where traded_at >= timestamptz 'epoch' + "
		 "%" PRId64 " * interval '1 ms' and traded_at < timestamptz 'epoch' + %" PRId64
		 " * interval '1 ms'%s",
		 q->from_ms, q->to_ms,
		 all	       ? ""
		 : q->is_class ? " and starts_with(product, $1 || '/')"
			       : " and product = $1");
	const char *p[1] = {q->name};
	PGresult *r = PQexecParams(c, sql, all ? 0 : 1, NULL, p, NULL, NULL, 0);
	int64_t n =
		PQresultStatus(r) == PGRES_TUPLES_OK ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
	PQclear(r);
	return n;
}

int main(int argc, char **argv)
{
	const char *url = NULL;
	int64_t end = 0;
	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--database=", 11) == 0)
			url = argv[i] + 11;
		else if (strncmp(argv[i], "--end-ms=", 9) == 0)
			end = strtoll(argv[i] + 9, NULL, 10);
		else
			url = NULL, end = -1;
	}
	if (url == NULL || end <= 0) {
		fprintf(stderr, "usage: bench-history --database=URL --end-ms=T\n");
		return 2;
	}
	struct ledger *l = NULL;
	int rc = ledger_open(url, "USD", &l);
	PGconn *c = PQconnectdb(url);
	if (rc != LEDGER_OK || PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "bench-history: cannot connect: %s\n", ledger_error(l));
		return 1;
	}
	/* The end of the hour of the last fill: "now" for a chart. */
	int64_t now = (end / HOUR_MS + 1) * HOUR_MS;
	/* A product whose delivery hour is a day before the end: traded for 48 hours. */
	char product[64];
	time_t dh = (time_t)((now - DAY_MS) / 1000);
	struct tm tm;
	gmtime_r(&dh, &tm);
	strftime(product, sizeof(product), "H100-80G/%Y-%m-%dT%H", &tm);
	const struct {
		const char *what;
		struct ledger_candle_query q;
	} cases[] = {
		{"class, 1 min, last hour", {"H100-80G", true, now - HOUR_MS, now, 60000}},
		{"class, 1 h, last day", {"H100-80G", true, now - DAY_MS, now, HOUR_MS}},
		{"product, 1 h, its 3 days", {product, false, now - 3 * DAY_MS, now, HOUR_MS}},
		{"class, 1 h, last week", {"H100-80G", true, now - 7 * DAY_MS, now, HOUR_MS}},
		{"class, 1 d, last 20 days", {"H100-80G", true, now - 20 * DAY_MS, now, DAY_MS}},
	};
	static struct ledger_candle rows[ROWS_MAX];
	printf("%-28s %10s %10s %8s %10s %10s\n", "query", "fills_range", "of_it", "rows",
	       "median_ms", "max_ms");
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		int64_t ms[RUNS];
		size_t n = 0;
		for (int r = 0; r < RUNS; r++) {
			int64_t t0 = bench_now_us();
			rc = ledger_candles(l, &cases[k].q, 0, rows, ROWS_MAX, &n);
			ms[r] = bench_now_us() - t0;
			if (rc != LEDGER_OK) {
				fprintf(stderr, "bench-history: %s: %s\n", cases[k].what,
					ledger_error(l));
				return 1;
			}
		}
		qsort(ms, RUNS, sizeof(ms[0]), bench_cmp_i64);
		printf("%-28s %10" PRId64 " %10" PRId64 " %8zu %10.1f %10.1f\n", cases[k].what,
		       count(c, &cases[k].q, true), count(c, &cases[k].q, false), n,
		       (double)ms[RUNS / 2] / 1000.0, (double)ms[RUNS - 1] / 1000.0);
	}
	/* Pages of trades: the first of a day, one from its middle (after the last fill
	 * before noon), a product's first. */
	char sql[256];
	snprintf(sql, sizeof(sql),
		 "select max(id) from ledger.fills where traded_at < timestamptz 'epoch' + "
		 "%" PRId64 " * interval '1 ms'",
		 now - DAY_MS / 2);
	PGresult *r = PQexec(c, sql);
	int64_t mid =
		PQresultStatus(r) == PGRES_TUPLES_OK ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
	PQclear(r);
	const struct {
		const char *what;
		struct ledger_trade_query q;
	} pages[] = {
		{"class trades, day, 1st page", {"H100-80G", true, now - DAY_MS, now, 0}},
		{"class trades, day, at noon", {"H100-80G", true, now - DAY_MS, now, mid}},
		{"product trades, 1st page", {product, false, now - 3 * DAY_MS, now, 0}},
	};
	static struct ledger_trade trades[ROWS_MAX];
	for (size_t k = 0; k < sizeof(pages) / sizeof(pages[0]); k++) {
		int64_t ms[RUNS];
		size_t n = 0;
		for (int run = 0; run < RUNS; run++) {
			int64_t t0 = bench_now_us();
			rc = ledger_trades_between(l, &pages[k].q, 0, trades, ROWS_MAX, &n);
			ms[run] = bench_now_us() - t0;
			if (rc != LEDGER_OK) {
				fprintf(stderr, "bench-history: %s: %s\n", pages[k].what,
					ledger_error(l));
				return 1;
			}
		}
		qsort(ms, RUNS, sizeof(ms[0]), bench_cmp_i64);
		struct ledger_candle_query cq = {pages[k].q.name, pages[k].q.is_class,
						 pages[k].q.from_ms, pages[k].q.to_ms, 1};
		printf("%-28s %10" PRId64 " %10" PRId64 " %8zu %10.1f %10.1f\n", pages[k].what,
		       count(c, &cq, true), count(c, &cq, false), n, (double)ms[RUNS / 2] / 1000.0,
		       (double)ms[RUNS - 1] / 1000.0);
	}
	PQfinish(c);
	ledger_close(l);
	return 0;
}
