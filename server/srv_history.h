/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP API's price history (docs/http-api.md, "history"): candles of any range
 * of time, read from ledger.fills (ledger_candles) by a thread of its own with its own
 * connection, so that a slow or unreachable database never holds up the API's thread.
 * The API's thread queues a request's query and goes on; the answer is sent from the
 * API's loop when the query is done. The same query asked again while it waits or
 * runs is answered with it, not run again.
 */
#ifndef GRIDEX_SRV_HISTORY_H
#define GRIDEX_SRV_HISTORY_H

#include <stdbool.h>
#include <stdint.h>

struct evbuffer;
struct event_base;
struct evhttp_request;
struct srv_history;

/* One query: candles (ledger_candles), or a page of trades (ledger_trades_between). */
struct srv_history_query {
	bool trades;
	const char *name; /* a product, or a class with is_class */
	bool is_class;
	int64_t from_ms, to_ms;
	int64_t interval_ms; /* candles: from_ms and to_ms its multiples */
	int64_t after_id;    /* trades: after this fill (0: from the range's start) */
	uint32_t limit;	     /* trades: 1 .. SRV_MARKET_ROWS_MAX */
};

struct srv_history_config {
	const char *database_url; /* libpq URL: gridex_auditor's, or a replica's */
	const char *currency;	  /* the exchange's (ledger_open needs it) */
	int64_t timeout_ms;	  /* each query's statement_timeout */
	uint32_t queue_max;	  /* different queries waiting or running */
	uint32_t per_ip_max;	  /* requests of one address waiting */
};

/* Starts the history's thread (it connects when first asked, and again after a
 * failure); the answers are sent by an event on base, the API's loop. NULL when out of
 * memory or threads. */
struct srv_history *srv_history_start(const struct srv_history_config *cfg,
				      struct event_base *base);

enum srv_history_asked {
	SRV_HISTORY_QUEUED,  /* the answer follows from the API's loop */
	SRV_HISTORY_BUSY,    /* queue_max different queries wait or run already */
	SRV_HISTORY_ADDRESS, /* addr has per_ip_max requests waiting already */
	SRV_HISTORY_NOMEM,
};

/* API thread: queues req's query q (checked already: the ledger would take it), asked
 * from addr (srv_addr_key's key), or joins the same query. Unless QUEUED, req is still
 * the caller's to answer. */
enum srv_history_asked srv_history_ask(struct srv_history *h, struct evhttp_request *req,
				       const struct srv_history_query *q, const char *addr);

/* Once the API's loop has stopped, before its evhttp is freed: cancels the query
 * running, answers every request waiting (503), stops the thread and frees h. NULL is
 * accepted. */
void srv_history_stop(struct srv_history *h);

/* Its metrics, in the text format (any thread); h may be NULL (all zero). */
void srv_history_metrics(struct srv_history *h, struct evbuffer *b);

#endif
