/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What one query costs gridexd: the core thread's part (srv_core_handle, which
 * every other request waits behind) and the pipeline thread's (packing the
 * answer, srv_frame_result). The core holds a full recent-fills ring
 * (fills_recent_max fills, each kept for its buyer and its seller) and one
 * account with `orders` resting bids. Timed, each many times:
 *   - QUERY_FILLS by an account with no fills (the whole ring is read);
 *   - QUERY_FILLS by the buyer of every fill (its newest query_rows_max);
 *   - QUERY_ORDERS by the account with the resting bids;
 *   - the second pages of both, and of QUERY_ORDERS when the cursor's order
 *     has gone (the account's orders are walked to the first older one);
 *   - packing an answer of query_rows_max order rows.
 * Usage: bench-queries [--fills=N (fills_recent_max)] [--orders=N] [--rows=N]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "clock.h"
#include "gridex.pb-c.h"
#include "srv_core.h"
#include "srv_frames.h"
#include "srv_risk.h"

#define NOW	INT64_C(1795366800000) /* 2026-11-22T17:00Z */
#define PRODUCT "H100-80G/2026-11-22T19"

static struct srv_core *core;
static struct srv_core_out out;
static uint64_t nonce = 1;

static void handle(struct srv_request *r)
{
	r->nonce = nonce++;
	r->expires_at_ms = NOW + 60000;
	if (srv_core_handle(core, r, NOW, &out) != SRV_CORE_OK || out.n_reports == 0 ||
	    out.reports[0].kind != SRV_REPORT_ACK) {
		fprintf(stderr, "bench-queries: request of type %u refused\n", r->type);
		exit(1);
	}
}

static struct srv_request order(uint32_t account, uint64_t coid, int side, int64_t qty)
{
	struct srv_request r = {.account = account,
				.type = GRIDEX__V1__REQUEST_TYPE__NEW_ORDER,
				.client_order_id = coid,
				.side = (uint32_t)side,
				.time_in_force = GRIDEX__V1__TIME_IN_FORCE__GTC,
				.price = side == GRIDEX__V1__SIDE__BUY ? 2000000 : 2000000,
				.quantity = qty};
	strcpy(r.product, PRODUCT);
	return r;
}

/* Microseconds per call of one query type by account (asking for the page after
 * cursor), over n calls. */
static double time_page(uint32_t account, uint32_t type, uint64_t cursor, int n, size_t *rows)
{
	int64_t t0 = bench_now_ns();
	for (int i = 0; i < n; i++) {
		struct srv_request q = {.account = account, .type = type, .cursor = cursor};
		handle(&q);
	}
	*rows = out.n_rows;
	return (double)(bench_now_ns() - t0) / n / 1e3;
}

static double time_query(uint32_t account, uint32_t type, int n, size_t *rows)
{
	return time_page(account, type, 0, n, rows);
}

/* The cursor of the page after the one a query of account asks for now. */
static uint64_t next_page(uint32_t account, uint32_t type)
{
	size_t n;
	time_query(account, type, 1, &n);
	return out.rows_cut ? out.cursors[n - 1] : 0;
}

static const char *book_name(uint32_t book, void *ctx)
{
	(void)ctx;
	return srv_core_book_name(core, book);
}

static long arg(int argc, char **argv, const char *name, long def)
{
	size_t n = strlen(name);
	for (int i = 1; i < argc; i++)
		if (strncmp(argv[i], name, n) == 0 && argv[i][n] == '=')
			return strtol(argv[i] + n + 1, NULL, 10);
	return def;
}

int main(int argc, char **argv)
{
	long fills = arg(argc, argv, "--fills", 65536);
	long orders = arg(argc, argv, "--orders", 10000);
	long rows = arg(argc, argv, "--rows", 1000);
	if (sodium_init() < 0 || fills < 1 || orders < 1 || rows < 1 || rows > 100000) {
		fprintf(stderr, "usage: bench-queries [--fills=N] [--orders=N] [--rows=N]\n");
		return 2;
	}
	struct srv_core_config cfg;
	srv_core_config_default(&cfg);
	cfg.matching.orders_max = (uint32_t)orders + 16;
	cfg.matching.levels_max = 64;
	cfg.risk.orders_max = (uint32_t)orders + 16;
	cfg.risk.maker_bps = 10;
	cfg.risk.taker_bps = 20;
	cfg.client_ids_max = (uint32_t)(fills + orders + 16);
	cfg.orders_per_second = 0;
	cfg.queries_per_second = cfg.query_rows_per_second = 0;
	cfg.fills_recent_max = (uint32_t)fills;
	cfg.query_rows_max = (uint32_t)rows;
	cfg.operator_account = 9;
	uint8_t pk[32], sk[64];
	crypto_sign_keypair(pk, sk);
	if (srv_core_create(&cfg, &core) != SRV_CORE_OK || srv_core_out_alloc(core, &out)) {
		fprintf(stderr, "bench-queries: cannot create the core\n");
		return 1;
	}
	uint32_t cls;
	if (srv_core_class_id(core, "H100-80G", &cls) != SRV_CORE_OK)
		return 1;
	for (uint32_t a = 1; a <= 4; a++)
		if (srv_core_register(core, a, pk) != SRV_CORE_OK ||
		    srv_risk_add_cash(srv_core_risk(core), a, INT64_C(1) << 50) != SRV_RISK_OK)
			return 1;
	if (srv_risk_set_capacity(srv_core_risk(core), 2, cls, 1000000) != SRV_RISK_OK)
		return 1;
	/* fills fills of one GPU: buyer 1 takes the resting offers of seller 2 one by one. */
	int64_t t0 = bench_now_ns();
	for (long i = 0; i < fills; i += 100000) {
		long n = fills - i < 100000 ? fills - i : 100000;
		struct srv_request ask = order(2, (uint64_t)(1 + i), GRIDEX__V1__SIDE__SELL, n);
		handle(&ask);
		for (long k = 0; k < n; k++) {
			struct srv_request bid =
				order(1, (uint64_t)(1 + i + k), GRIDEX__V1__SIDE__BUY, 1);
			handle(&bid);
		}
	}
	/* orders resting bids of account 3, below the offers. */
	uint64_t first_oid = 0;
	for (long i = 0; i < orders; i++) {
		struct srv_request bid = order(3, (uint64_t)(1 + i), GRIDEX__V1__SIDE__BUY, 1);
		bid.price = 1000000;
		handle(&bid);
		if (i == 0)
			first_oid = out.reports[1].order_id;
	}
	printf("set-up: %ld fills, %ld resting orders in %.3f s\n", fills, orders,
	       (double)(bench_now_ns() - t0) / 1e9);
	size_t n;
	double us = time_query(4, GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS, 200, &n);
	printf("core QUERY_FILLS, no fills of its own (whole ring):  %9.1f us  rows=%zu\n", us, n);
	us = time_query(1, GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS, 200, &n);
	printf("core QUERY_FILLS, buyer of every fill:                %9.1f us  rows=%zu\n", us, n);
	us = time_query(3, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS, 200, &n);
	printf("core QUERY_ORDERS, %ld resting:                    %9.1f us  rows=%zu\n", orders,
	       us, n);
	us = time_query(3, GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE, 2000, &n);
	printf("core QUERY_BALANCE:                                   %9.1f us\n", us);
	/* Second pages: where they start is found from the cursor. */
	uint64_t cur = next_page(1, GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS);
	us = time_page(1, GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS, cur, 200, &n);
	printf("core QUERY_FILLS, buyer of every fill, second page:   %9.1f us  rows=%zu\n", us, n);
	cur = next_page(3, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS);
	us = time_page(3, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS, cur, 200, &n);
	printf("core QUERY_ORDERS, second page:                       %9.1f us  rows=%zu\n", us, n);
	/* The worst start: the cursor's order has gone, and every other is newer. */
	struct srv_request cancel = {.account = 3,
				     .type = GRIDEX__V1__REQUEST_TYPE__CANCEL,
				     .target_client_order_id = 1};
	handle(&cancel);
	us = time_page(3, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS, first_oid, 200, &n);
	printf("core QUERY_ORDERS, the cursor's order gone (a walk):  %9.1f us  rows=%zu\n", us, n);
	/* The pipeline thread's part: the answer of the last QUERY_ORDERS, packed. */
	time_query(3, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS, 1, &n);
	struct srv_answer a = {
		.account = 3, .nonce = 1, .bytes_max = 4u << 20, .cursors = out.cursors};
	int64_t p0 = bench_now_ns();
	size_t bytes = 0;
	for (int i = 0; i < 200; i++) {
		uint8_t *b = srv_frame_result(&a, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS, out.rows,
					      out.n_rows, 0, 0, "USD", book_name, NULL, &bytes);
		if (b == NULL)
			return 1;
		free(b);
	}
	printf("pack an answer of %zu order rows:                   %9.1f us  bytes=%zu\n", n,
	       (double)(bench_now_ns() - p0) / 200 / 1e3, bytes);
	srv_core_out_free(&out);
	srv_core_destroy(core);
	return 0;
}
