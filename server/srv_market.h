/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The public market as the HTTP API shows it (docs/http-api.md): a copy of
 * every book's price levels, the products' states and the recent trades, kept
 * by the API's thread from the market data the core publishes (the same level
 * totals and trades subscribers get, passed on by the I/O thread), and the
 * JSON answers built from it with jansson. Not thread-safe: one owner (the
 * API's thread). No I/O, no clock: the caller passes the time.
 */
#ifndef GRIDEX_SRV_MARKET_H
#define GRIDEX_SRV_MARKET_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SRV_MARKET_ROWS_MAX	   1000 /* trades or candles in one answer */
#define SRV_MARKET_INTERVAL_MS_MIN 1000 /* candles */
#define SRV_MARKET_INTERVAL_MS_MAX 86400000
#define SRV_MARKET_SIDE_BUY	   1
#define SRV_MARKET_SIDE_SELL	   2

struct srv_market_config {
	uint32_t products_max; /* books (books_max) */
	uint32_t levels_max;   /* price levels kept per side of a book (snapshot_levels_max) */
	uint32_t trades_kept;  /* trades kept, all products, for trades and candles */
	int64_t gate_lead_ms;  /* a product's gate: its delivery hour minus this */
};

struct srv_market;

__attribute__((warn_unused_result)) int srv_market_create(const struct srv_market_config *cfg,
							  struct srv_market **out);
void srv_market_destroy(struct srv_market *m);

/* A level's new total on one side (qty 0: the level is gone). Unknown products are
 * added (until products_max). */
void srv_market_level(struct srv_market *m, const char *product, uint8_t side, int64_t price,
		      int64_t qty, uint32_t orders);
/* A trade: its product's sequence, price, quantity, aggressor side and time. */
void srv_market_trade(struct srv_market *m, const char *product, uint64_t sequence, int64_t price,
		      int64_t qty, uint8_t aggressor, int64_t time_ms);
void srv_market_halt(struct srv_market *m, const char *product, bool halted);
/* Forgets a retired product (its book and state; its trades stay for class answers). */
void srv_market_retire(struct srv_market *m, const char *product);

/*
 * The answers; NULL with the reason in why (a short text for a 400 or 404:
 * *not_found says which) when the parameters do not fit. Callers own the
 * result (json_decref).
 */
json_t *srv_market_products(const struct srv_market *m, int64_t now_ms);
json_t *srv_market_book(const struct srv_market *m, const char *product, uint32_t depth,
			const char **why, bool *not_found);
/* product or accelerator (exactly one), newest first. */
json_t *srv_market_trades(const struct srv_market *m, const char *product, const char *accelerator,
			  uint32_t limit, const char **why, bool *not_found);
/* OHLC, volume and volume-weighted average price per interval, the last limit intervals
 * that had trades, oldest first. */
json_t *srv_market_candles(const struct srv_market *m, const char *product, const char *accelerator,
			   int64_t interval_ms, uint32_t limit, const char **why, bool *not_found);

#endif
