/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP API's price history (srv_history.h). Queries wait in a table of queue_max
 * places, each with the requests that asked for it (the API thread's alone); the
 * history's thread runs the oldest waiting one, then wakes the API's loop, which
 * answers every request of each query done. The table is the only thing the two
 * threads share, under one lock.
 */
#include "srv_history.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "ledger.h"
#include "srv_config.h"
#include "srv_log.h"
#include "srv_map.h"
#include "srv_market.h"
#include "srv_server.h"

enum { JOB_FREE, JOB_WAITING, JOB_RUNNING, JOB_DONE };
enum { OUT_OK, OUT_TIMEOUT, OUT_UNAVAILABLE, OUT_REFUSED, OUTCOMES };
static const char *const outcome_names[OUTCOMES] = {"ok", "timeout", "unavailable", "refused"};

struct waiter {
	struct evhttp_request *req;
	char addr[SRV_MAP_KEY_BYTES];
};

struct job {
	int state;	/* JOB_*; under the lock */
	uint64_t order; /* when it was queued: the oldest runs first */
	char name[LEDGER_PRODUCT_MAX + 1];
	struct srv_history_query q; /* q.name is name */
	int code;		    /* the answer, once DONE: HTTP status and JSON text */
	char *text;
	struct waiter *w; /* the API thread's: the requests to answer */
	uint32_t n_w, cap_w;
};

struct srv_history {
	char *url, *currency;
	int64_t timeout_ms;
	uint32_t per_ip_max;
	struct job *jobs;
	uint32_t n_jobs;
	uint64_t next_order;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	struct ledger_cancel *cancel; /* of the thread's connection; under the lock */
	struct event *done;	      /* on the API's loop: answers the queries done */
	int64_t logged_ms;	      /* the thread's last warning */
	struct ledger_candle rows[SRV_MARKET_ROWS_MAX];
	struct ledger_trade trades[SRV_MARKET_ROWS_MAX];
	atomic_uint_fast64_t queries[OUTCOMES];
	atomic_uint_fast64_t busy, address, joined;
	atomic_uint_fast64_t waiting; /* requests waiting for an answer */
};

static bool same_query(const struct job *j, const struct srv_history_query *q)
{
	return j->q.trades == q->trades && j->q.is_class == q->is_class &&
	       j->q.from_ms == q->from_ms && j->q.to_ms == q->to_ms &&
	       j->q.interval_ms == q->interval_ms && j->q.after_id == q->after_id &&
	       j->q.limit == q->limit && strcmp(j->name, q->name) == 0;
}

/* The answer to a query of candles: as /candles gives them, with the range. */
static char *candles_text(const struct srv_history_query *q, const struct ledger_candle *c,
			  size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(
			    a, json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "start_ms",
					 (json_int_t)c[i].start_ms, "open", (json_int_t)c[i].open,
					 "high", (json_int_t)c[i].high, "low", (json_int_t)c[i].low,
					 "close", (json_int_t)c[i].close, "volume",
					 (json_int_t)c[i].volume, "vwap", (json_int_t)c[i].vwap)) !=
		    0) {
			json_decref(a);
			a = NULL;
		}
	json_t *j =
		a ? json_pack("{s:s, s:I, s:I, s:I, s:o}", q->is_class ? "accelerator" : "product",
			      q->name, "interval_ms", (json_int_t)q->interval_ms, "from_ms",
			      (json_int_t)q->from_ms, "to_ms", (json_int_t)q->to_ms, "candles", a)
		  : NULL;
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	return text;
}

/* The answer to a query of trades: each as /trades gives them, but for the tape's
 * sequence (the fill's id instead: what `after` names), and no parties; the page's last
 * id as next_after when the page is full (null: no more). */
static char *trades_text(const struct srv_history_query *q, const struct ledger_trade *t, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, json_pack("{s:I, s:s, s:I, s:I, s:s, s:I}", "id",
						       (json_int_t)t[i].fill.fill_id, "product",
						       t[i].product, "price",
						       (json_int_t)t[i].fill.price, "quantity",
						       (json_int_t)t[i].fill.qty, "aggressor",
						       t[i].fill.buyer_is_taker ? "buy" : "sell",
						       "time_ms", (json_int_t)t[i].time_ms)) != 0) {
			json_decref(a);
			a = NULL;
		}
	json_t *next = n > 0 && n == q->limit ? json_integer((json_int_t)t[n - 1].fill.fill_id)
					      : json_null();
	json_t *j = NULL;
	if (a && next) /* "o" takes both, also when the packing fails */
		j = json_pack("{s:s, s:I, s:I, s:o, s:o}", q->is_class ? "accelerator" : "product",
			      q->name, "from_ms", (json_int_t)q->from_ms, "to_ms",
			      (json_int_t)q->to_ms, "trades", a, "next_after", next);
	else {
		json_decref(a);
		json_decref(next);
	}
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	return text;
}

static char *error_text(const char *why)
{
	json_t *j = json_pack("{s:s}", "error", why);
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	return text;
}

/* A new session for the history's thread, and its cancel handle for a stop. */
static int history_connect(struct srv_history *h, struct ledger **l)
{
	int rc = ledger_open(h->url, h->currency, l);
	struct ledger_cancel *c = rc == LEDGER_OK ? ledger_cancel_new(*l) : NULL;
	pthread_mutex_lock(&h->lock);
	ledger_cancel_free(h->cancel);
	h->cancel = c;
	bool stopping = h->stop;
	pthread_mutex_unlock(&h->lock);
	return rc == LEDGER_OK && stopping ? LEDGER_ERR_UNAVAILABLE : rc;
}

/* The history's thread: one query at a time, the oldest waiting first. */
static void *history_main(void *arg)
{
	struct srv_history *h = arg;
	struct ledger *l = NULL;
	srv_thread_name("gx-history");
	pthread_mutex_lock(&h->lock);
	while (!h->stop) {
		struct job *j = NULL;
		for (uint32_t i = 0; i < h->n_jobs; i++)
			if (h->jobs[i].state == JOB_WAITING &&
			    (j == NULL || h->jobs[i].order < j->order))
				j = &h->jobs[i];
		if (j == NULL) {
			pthread_cond_wait(&h->cond, &h->lock);
			continue;
		}
		j->state = JOB_RUNNING;
		struct srv_history_query q = j->q; /* name and range stay while it runs */
		struct ledger_candle_query cq = {q.name, q.is_class, q.from_ms, q.to_ms,
						 q.interval_ms};
		struct ledger_trade_query tq = {q.name, q.is_class, q.from_ms, q.to_ms, q.after_id};
		pthread_mutex_unlock(&h->lock);

		/* A session that was good may have been lost since (a restart of PostgreSQL):
		 * a query that finds it gone gets one new session. */
		int rc = LEDGER_OK;
		size_t n = 0;
		int64_t took = 0;
		for (int tries = 0; tries < 2; tries++) {
			bool fresh = l == NULL;
			if (fresh && (rc = history_connect(h, &l)) != LEDGER_OK)
				break;
			int64_t t0 = srv_mono_ms();
			rc = q.trades ? ledger_trades_between(l, &tq, h->timeout_ms, h->trades,
							      q.limit, &n)
				      : ledger_candles(l, &cq, h->timeout_ms, h->rows,
						       SRV_MARKET_ROWS_MAX, &n);
			took = srv_mono_ms() - t0;
			if (rc != LEDGER_ERR_UNAVAILABLE || fresh || took >= h->timeout_ms)
				break;
			ledger_close(l);
			l = NULL;
		}
		int outcome = OUT_OK, code = 200;
		char *text = NULL;
		if (rc == LEDGER_OK) {
			text = q.trades ? trades_text(&q, h->trades, n)
					: candles_text(&q, h->rows, n);
		} else if (rc == LEDGER_ERR_UNAVAILABLE && l != NULL && took >= h->timeout_ms) {
			outcome = OUT_TIMEOUT, code = 503;
			text = error_text(
				"the ledger did not answer within http_history_timeout_ms: "
				"ask for a shorter range");
		} else if (rc == LEDGER_ERR_UNAVAILABLE || rc == LEDGER_ERR_SCHEMA ||
			   rc == LEDGER_ERR_NOT_FOUND) {
			outcome = OUT_UNAVAILABLE, code = 503;
			text = error_text("the ledger cannot be read now; try again later");
		} else {
			outcome = OUT_REFUSED, code = 500;
			text = error_text("the ledger's answer was not what was asked for (see "
					  "gridexd's log)");
		}
		pthread_mutex_lock(&h->lock);
		bool stopping = h->stop; /* a query the stop cancelled: not the ledger's doing */
		pthread_mutex_unlock(&h->lock);
		if (!stopping)
			atomic_fetch_add(&h->queries[outcome], 1);
		if (outcome != OUT_OK && !stopping && srv_log_due(&h->logged_ms, srv_mono_ms())) {
			char why[300];
			srv_log(SRV_LOG_WARN, "price history not read",
				"outcome=%s took_ms=%lld error=\"%s\"", outcome_names[outcome],
				(long long)took,
				srv_log_value(why, sizeof(why),
					      l ? ledger_error(l) : "out of memory"));
		}
		if (outcome == OUT_UNAVAILABLE) {
			ledger_close(l); /* a new session next time: the cause may be gone */
			l = NULL;
		}
		pthread_mutex_lock(&h->lock);
		j->code = text ? code : 500;
		j->text = text; /* NULL: out of memory, answered without a body */
		j->state = JOB_DONE;
		event_active(h->done, EV_READ, 0);
	}
	ledger_cancel_free(h->cancel);
	h->cancel = NULL;
	pthread_mutex_unlock(&h->lock);
	ledger_close(l);
	return NULL;
}

static const char *reason_of(int code)
{
	return code == 200 ? "OK" : code == 503 ? "Service Unavailable" : "Internal Server Error";
}

/* Answers every request of j (no longer in the table) and frees what it holds. */
static void answer(struct srv_history *h, struct job *j)
{
	for (uint32_t k = 0; k < j->n_w; k++) {
		if (j->code == 503)
			evhttp_add_header(evhttp_request_get_output_headers(j->w[k].req),
					  "Retry-After", "1");
		srv_http_reply_text(j->w[k].req, j->code, reason_of(j->code), j->text);
	}
	atomic_fetch_sub(&h->waiting, j->n_w);
	free(j->text);
	free(j->w);
}

/* API thread: answers the queries done. */
static void done_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct srv_history *h = arg;
	for (uint32_t i = 0; i < h->n_jobs; i++) {
		struct job j = {.state = JOB_FREE};
		pthread_mutex_lock(&h->lock);
		if (h->jobs[i].state == JOB_DONE) {
			j = h->jobs[i];
			h->jobs[i] = (struct job){.state = JOB_FREE};
		}
		pthread_mutex_unlock(&h->lock);
		if (j.state == JOB_DONE)
			answer(h, &j);
	}
}

enum srv_history_asked srv_history_ask(struct srv_history *h, struct evhttp_request *req,
				       const struct srv_history_query *q, const char *addr)
{
	struct job *same = NULL, *free_place = NULL;
	uint32_t of_addr = 0;
	pthread_mutex_lock(&h->lock);
	for (uint32_t i = 0; i < h->n_jobs; i++) {
		struct job *j = &h->jobs[i];
		if (j->state == JOB_FREE) {
			free_place = free_place ? free_place : j;
			continue;
		}
		if (j->state != JOB_DONE && same_query(j, q))
			same = j;
		for (uint32_t k = 0; k < j->n_w; k++)
			of_addr += strcmp(j->w[k].addr, addr) == 0;
	}
	pthread_mutex_unlock(&h->lock); /* the waiters and free places are this thread's */
	if (of_addr >= h->per_ip_max) {
		atomic_fetch_add(&h->address, 1);
		return SRV_HISTORY_ADDRESS;
	}
	struct job *j = same ? same : free_place;
	if (j == NULL) {
		atomic_fetch_add(&h->busy, 1);
		return SRV_HISTORY_BUSY;
	}
	if (j->n_w == j->cap_w) {
		uint32_t cap = j->cap_w ? 2 * j->cap_w : 4;
		struct waiter *w = realloc(j->w, cap * sizeof(*w));
		if (w == NULL)
			return SRV_HISTORY_NOMEM;
		j->w = w, j->cap_w = cap;
	}
	j->w[j->n_w].req = req;
	snprintf(j->w[j->n_w].addr, sizeof(j->w[j->n_w].addr), "%s", addr);
	j->n_w++;
	atomic_fetch_add(&h->waiting, 1);
	if (same) {
		atomic_fetch_add(&h->joined, 1);
		return SRV_HISTORY_QUEUED;
	}
	snprintf(j->name, sizeof(j->name), "%s", q->name);
	j->q = *q;
	j->q.name = j->name;
	pthread_mutex_lock(&h->lock);
	j->order = h->next_order++;
	j->state = JOB_WAITING;
	pthread_cond_signal(&h->cond);
	pthread_mutex_unlock(&h->lock);
	return SRV_HISTORY_QUEUED;
}

/* What srv_history_start made, the thread not running (or never started). */
static void history_free(struct srv_history *h)
{
	if (h->done)
		event_free(h->done);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->cond);
	free(h->jobs);
	free(h->url);
	free(h->currency);
	free(h);
}

struct srv_history *srv_history_start(const struct srv_history_config *cfg, struct event_base *base)
{
	struct srv_history *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return NULL;
	h->timeout_ms = cfg->timeout_ms;
	h->per_ip_max = cfg->per_ip_max;
	h->n_jobs = cfg->queue_max;
	char err[160];
	h->url = srv_conninfo_with_timeout(cfg->database_url, 5, err, sizeof(err));
	h->currency = strdup(cfg->currency);
	h->jobs = calloc(cfg->queue_max, sizeof(*h->jobs));
	h->done = event_new(base, -1, 0, done_cb, h);
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	if (h->url == NULL || h->currency == NULL || h->jobs == NULL || h->done == NULL ||
	    pthread_create(&h->thread, NULL, history_main, h) != 0) {
		history_free(h);
		return NULL;
	}
	return h;
}

void srv_history_stop(struct srv_history *h)
{
	if (h == NULL)
		return;
	pthread_mutex_lock(&h->lock);
	h->stop = true;
	ledger_cancel_send(h->cancel); /* a query running ends now */
	pthread_cond_signal(&h->cond);
	pthread_mutex_unlock(&h->lock);
	pthread_join(h->thread, NULL);
	for (uint32_t i = 0; i < h->n_jobs; i++) {
		struct job *j = &h->jobs[i];
		if (j->state == JOB_FREE)
			continue;
		free(j->text);
		j->code = 503;
		j->text = error_text("gridexd is stopping");
		answer(h, j);
		*j = (struct job){.state = JOB_FREE};
	}
	history_free(h);
}

void srv_history_metrics(struct srv_history *h, struct evbuffer *b)
{
	evbuffer_add_printf(b, "# HELP gridex_http_history_queries_total Price history queries "
			       "run on the ledger, by outcome.\n"
			       "# TYPE gridex_http_history_queries_total counter\n");
	for (int o = 0; o < OUTCOMES; o++)
		evbuffer_add_printf(b, "gridex_http_history_queries_total{outcome=\"%s\"} %llu\n",
				    outcome_names[o],
				    (unsigned long long)(h ? atomic_load(&h->queries[o]) : 0));
	evbuffer_add_printf(
		b,
		"# HELP gridex_http_history_refused_total Price history requests refused: "
		"http_history_queue_max queries waiting (queue), or http_history_per_ip_max "
		"requests of the address (address).\n"
		"# TYPE gridex_http_history_refused_total counter\n"
		"gridex_http_history_refused_total{reason=\"queue\"} %llu\n"
		"gridex_http_history_refused_total{reason=\"address\"} %llu\n"
		"# HELP gridex_http_history_joined_total Price history requests answered with "
		"the same query asked before them, waiting or running.\n"
		"# TYPE gridex_http_history_joined_total counter\n"
		"gridex_http_history_joined_total %llu\n"
		"# HELP gridex_http_history_waiting Price history requests waiting for their "
		"answer.\n# TYPE gridex_http_history_waiting gauge\n"
		"gridex_http_history_waiting %llu\n",
		(unsigned long long)(h ? atomic_load(&h->busy) : 0),
		(unsigned long long)(h ? atomic_load(&h->address) : 0),
		(unsigned long long)(h ? atomic_load(&h->joined) : 0),
		(unsigned long long)(h ? atomic_load(&h->waiting) : 0));
}
