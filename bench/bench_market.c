/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the HTTP API's market answers cost (server/srv_market.c), on the API's thread
 * (before 2026-12-07, evening, on the I/O thread, where each answer delayed the orders
 * behind it; CPU time is still shared with the order path). The copy holds http_trades_kept trades
 * (default 100,000) of `products` products (default 1,024, books_max) of 4 accelerator classes, a
 * trade of each product in turn, except one quiet product whose single trade is the oldest kept.
 * Timed, each 20 times (fastest and median): the trades of a busy product, of the quiet one, and of
 * a class (the default limit, 100, and a full page of 1,000); candles (hourly, the default limit)
 * of a product and of a class; the product list. Usage: bench-market [--trades=N] [--products=N]
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "srv_market.h"

#define NOW  INT64_C(1795366800000) /* 2026-11-23T08:00Z */
#define HOUR INT64_C(3600000)

static const char *const classes[4] = {"H100-80G", "A100-80G", "L40S", "MI300X"};

/* Product i: a class and an hour in turn. */
static void product_name(uint32_t i, char *out, size_t size)
{
	time_t t = (time_t)((NOW + HOUR * (int64_t)(i / 4)) / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	char hour[32];
	strftime(hour, sizeof(hour), "%Y-%m-%dT%H", &tm);
	snprintf(out, size, "%s/%s", classes[i % 4], hour);
}

enum { TRIES = 20 };

static void timed(const char *what, json_t *(*ask)(const struct srv_market *, const void *),
		  const struct srv_market *m, const void *arg)
{
	int64_t t[TRIES];
	size_t rows = 0;
	for (int k = 0; k < TRIES; k++) {
		int64_t a = bench_now_ns();
		json_t *j = ask(m, arg);
		t[k] = bench_now_ns() - a;
		if (j == NULL) {
			fprintf(stderr, "bench-market: %s answered nothing\n", what);
			exit(1);
		}
		json_t *a1 = json_object_get(j, "trades");
		json_t *a2 = json_object_get(j, "candles");
		json_t *a3 = json_object_get(j, "products");
		rows = json_array_size(a1 ? a1 : a2 ? a2 : a3);
		json_decref(j);
	}
	qsort(t, TRIES, sizeof(*t), bench_cmp_i64);
	printf("%s rows=%zu us_min=%.1f us_median=%.1f\n", what, rows, t[0] / 1e3,
	       t[TRIES / 2] / 1e3);
}

struct ask {
	const char *product, *accelerator;
};

static json_t *trades(const struct srv_market *m, const void *arg)
{
	const struct ask *a = arg;
	const char *why;
	bool not_found;
	return srv_market_trades(m, a->product, a->accelerator, 100, &why, &not_found);
}

static json_t *trades_page(const struct srv_market *m, const void *arg)
{
	const struct ask *a = arg;
	const char *why;
	bool not_found;
	return srv_market_trades(m, a->product, a->accelerator, SRV_MARKET_ROWS_MAX, &why,
				 &not_found);
}

static json_t *candles(const struct srv_market *m, const void *arg)
{
	const struct ask *a = arg;
	const char *why;
	bool not_found;
	return srv_market_candles(m, a->product, a->accelerator, HOUR, 100, &why, &not_found);
}

static json_t *products(const struct srv_market *m, const void *arg)
{
	(void)arg;
	return srv_market_products(m, NOW);
}

int main(int argc, char **argv)
{
	long n_trades = 100000, n_products = 1024; /* http_trades_kept, books_max */
	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--trades=", 9) == 0)
			n_trades = atol(argv[i] + 9);
		else if (strncmp(argv[i], "--products=", 11) == 0)
			n_products = atol(argv[i] + 11);
		else {
			fprintf(stderr, "usage: bench-market [--trades=N] [--products=N]\n");
			return 2;
		}
	}
	if (n_trades < 2 || n_trades > (1L << 26) || n_products < 2 || n_products > 65536) {
		fprintf(stderr, "bench-market: --trades is 2 .. 2^26, --products 2 .. 65536\n");
		return 2;
	}
	struct srv_market_config cfg = {.products_max = (uint32_t)n_products,
					.levels_max = 100, /* snapshot_levels_max */
					.trades_kept = (uint32_t)n_trades,
					.gate_lead_ms = 300000};
	struct srv_market *m;
	if (srv_market_create(&cfg, &m) != 0) {
		fprintf(stderr, "bench-market: cannot create the market copy\n");
		return 1;
	}
	char quiet[64], busy[64], name[64];
	product_name(0, quiet, sizeof(quiet));
	product_name(1, busy, sizeof(busy));
	for (long i = 0; i < n_products; i++) {
		product_name((uint32_t)i, name, sizeof(name));
		srv_market_level(m, name, SRV_MARKET_SIDE_BUY, 2000000, 8, 1);
	}
	srv_market_trade(m, quiet, 1, 2500000, 1, SRV_MARKET_SIDE_BUY, NOW - 1);
	for (long i = 1; i < n_trades; i++) {
		product_name((uint32_t)(1 + (i - 1) % (n_products - 1)), name, sizeof(name));
		srv_market_trade(m, name, (uint64_t)i, 2500000 + i % 1000, 1 + i % 8,
				 i % 2 ? SRV_MARKET_SIDE_BUY : SRV_MARKET_SIDE_SELL, NOW + i);
	}
	printf("trades_kept=%ld products=%ld\n", n_trades, n_products);
	struct ask a_busy = {.product = busy}, a_quiet = {.product = quiet},
		   a_class = {.accelerator = classes[1]};
	timed("trades_busy_product", trades, m, &a_busy);
	timed("trades_quiet_product", trades, m, &a_quiet);
	timed("trades_class", trades, m, &a_class);
	timed("trades_class_page", trades_page, m, &a_class);
	timed("candles_busy_product", candles, m, &a_busy);
	timed("candles_class", candles, m, &a_class);
	timed("products", products, m, NULL);
	srv_market_destroy(m);
	return 0;
}
