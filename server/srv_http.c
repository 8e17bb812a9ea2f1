/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE /* gettid */
/*
 * The read-only HTTP API (docs/http-api.md), served with libevent's evhttp on
 * http_listen by a thread of its own: products, book depth, trades and candles
 * as JSON (jansson), answered from the API thread's copy of the market
 * (srv_market.c), which the market data the core publishes keeps current (the
 * I/O thread passes it on). Only GET; every parameter checked (400 with the
 * reason), every answer bounded.
 *
 * Some answers cost a millisecond or more (docs/performance.md, "The HTTP API's
 * answers"): on a thread of its own, they never hold up the I/O thread, which
 * reads and answers the order connections.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <libpq-fe.h>
#include <sodium.h>

#include "srv_addr.h"
#include "srv_bucket.h"
#include "srv_history.h"
#include "srv_hook.h"
#include "srv_lease.h"
#include "srv_log.h"
#include "srv_map.h"
#include "srv_market.h"
#include "srv_server.h"
#include "srv_tindex.h"
#include "srv_wjob.h"

#define API_PREFIX "/api/v1/"

/* ---------- the operator's trial balance: read by a thread of its own ---------- */

/*
 * The ledger is read as gridex_auditor every http_ledger_refresh_ms by a thread
 * of its own (a database that is slow or down never holds up the API's thread);
 * the API's thread serves the last result, with its time.
 */
struct srv_ledger_view {
	struct srv *s;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	char *json; /* the last result (or error), as JSON text */
};

static json_t *number_text(const char *v)
{
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	return errno == 0 && *end == '\0' && end != v ? json_integer(n) : json_string(v);
}

/* One read of the ledger in a read-only snapshot; NULL with the reason in err. */
static json_t *ledger_read(PGconn *c, char *err, size_t cap)
{
	static const char *const sql[] = {
		"begin isolation level repeatable read read only",
		"select currency, kind, count(*), coalesce(sum(balance), 0)::text from "
		"ledger.accounts group by currency, kind order by currency, kind",
		"select a.currency, p.id, p.name, a.balance from ledger.accounts a join "
		"ledger.participants p on p.id = a.participant where a.kind = 'AVAILABLE' "
		"order by p.id, a.currency limit 1000",
		"select coalesce(max(id), 0), count(*) from ledger.batches", "commit"};
	PGresult *r[5] = {0};
	json_t *out = NULL;
	for (int i = 0; i < 5; i++) {
		r[i] = PQexec(c, sql[i]);
		ExecStatusType st = PQresultStatus(r[i]);
		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
			snprintf(err, cap, "%s", PQerrorMessage(c));
			err[strcspn(err, "\n")] = '\0';
			goto done;
		}
	}
	json_t *cur = json_object(), *parts = json_array();
	for (int i = 0; cur && i < PQntuples(r[1]); i++) {
		const char *ccy = PQgetvalue(r[1], i, 0);
		json_t *c1 = json_object_get(cur, ccy);
		if (c1 == NULL) {
			c1 = json_pack("{s:o, s:b}", "kinds", json_object(), "balanced", 1);
			json_object_set_new(cur, ccy, c1);
		}
		json_object_set_new(json_object_get(c1, "kinds"), PQgetvalue(r[1], i, 1),
				    json_pack("{s:I, s:o}", "accounts",
					      (json_int_t)atoll(PQgetvalue(r[1], i, 2)), "balance",
					      number_text(PQgetvalue(r[1], i, 3))));
	}
	/* Double entry: every currency's balances sum to zero (checked in SQL's numeric). */
	PGresult *z = PQexec(c, "select currency, sum(balance) = 0 from ledger.accounts group by "
				"currency");
	for (int i = 0; PQresultStatus(z) == PGRES_TUPLES_OK && i < PQntuples(z); i++)
		json_object_set_new(json_object_get(cur, PQgetvalue(z, i, 0)), "balanced",
				    json_boolean(PQgetvalue(z, i, 1)[0] == 't'));
	PQclear(z);
	for (int i = 0; parts && i < PQntuples(r[2]); i++)
		json_array_append_new(parts, json_pack("{s:s, s:I, s:s, s:I}", "currency",
						       PQgetvalue(r[2], i, 0), "id",
						       (json_int_t)atoll(PQgetvalue(r[2], i, 1)),
						       "name", PQgetvalue(r[2], i, 2), "available",
						       (json_int_t)atoll(PQgetvalue(r[2], i, 3))));
	out = json_pack("{s:o, s:o, s:{s:I, s:I}}", "currencies", cur ? cur : json_null(),
			"participants", parts ? parts : json_null(), "batches", "last",
			(json_int_t)atoll(PQgetvalue(r[3], 0, 0)), "count",
			(json_int_t)atoll(PQgetvalue(r[3], 0, 1)));
done:
	for (int i = 0; i < 5; i++)
		PQclear(r[i]);
	return out;
}

static void *ledger_view_main(void *arg)
{
	struct srv_ledger_view *v = arg;
	struct srv *s = v->s;
	PGconn *c = NULL;
	srv_thread_name("gx-ledger-view");
	const char *keys[] = {"dbname", "connect_timeout", "options", NULL};
	const char *vals[] = {s->cfg.http_auditor_database_url, "5", "-c statement_timeout=10000",
			      NULL};
	pthread_mutex_lock(&v->lock);
	while (!v->stop) {
		pthread_mutex_unlock(&v->lock);
		char err[256] = "";
		json_t *j = NULL;
		if (c == NULL || PQstatus(c) != CONNECTION_OK) {
			PQfinish(c);
			c = PQconnectdbParams(keys, vals, 1);
		}
		if (PQstatus(c) != CONNECTION_OK) {
			snprintf(err, sizeof(err), "%s", PQerrorMessage(c));
			err[strcspn(err, "\n")] = '\0';
		} else {
			j = ledger_read(c, err, sizeof(err));
		}
		if (j == NULL) {
			j = json_pack("{s:s}", "error", err[0] ? err : "out of memory");
			srv_log(SRV_LOG_WARN, "trial balance not read", "error=\"%s\"", err);
		}
		json_object_set_new(j, "as_of_ms", json_integer(srv_now_ms()));
		char *text = json_dumps(j, JSON_COMPACT);
		json_decref(j);
		pthread_mutex_lock(&v->lock);
		if (text) {
			free(v->json);
			v->json = text;
		}
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		int64_t ns = until.tv_nsec + (s->cfg.http_ledger_refresh_ms % 1000) * 1000000;
		until.tv_sec += s->cfg.http_ledger_refresh_ms / 1000 + ns / 1000000000;
		until.tv_nsec = ns % 1000000000;
		while (!v->stop && pthread_cond_timedwait(&v->cond, &v->lock, &until) == 0)
			;
	}
	pthread_mutex_unlock(&v->lock);
	PQfinish(c);
	return NULL;
}

bool srv_http_bearer_ok(struct evhttp_request *req, const char *token)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	size_t n = strlen(token);
	return token[0] != '\0' && h != NULL && strncmp(h, "Bearer ", 7) == 0 &&
	       strlen(h + 7) == n && sodium_memcmp(h + 7, token, n) == 0;
}

/* Whether the request carries the operator's bearer token. */
static bool operator_ok(const struct srv *s, struct evhttp_request *req)
{
	return srv_http_bearer_ok(req, s->cfg.http_operator_token);
}

/* Leases by state, settlement and hook calls: the core's and ledger thread's figures. */
static json_t *operator_status(struct srv *s)
{
	struct srv_metrics *m = &s->m;
	json_t *leases = json_object(), *hooks = json_object();
	for (uint8_t st = 1; leases && st <= 3; st++)
		json_object_set_new(leases, srv_lease_state_name(st),
				    json_integer((json_int_t)atomic_load(&m->leases[st])));
	for (int o = 0; hooks && o < 6; o++)
		json_object_set_new(hooks, srv_hook_outcome_name(o),
				    json_integer((json_int_t)atomic_load(&m->hook_calls[o])));
	return json_pack(
		"{s:b, s:o, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:b}, s:I, s:I}", "leases_on",
		s->cfg.hook[0] != '\0', "live_leases", leases ? leases : json_null(), "hook_calls",
		hooks ? hooks : json_null(), "settlement", "lag_ms",
		(json_int_t)atomic_load(&m->settlement_lag_ms), "pending",
		(json_int_t)(srv_queue_depth(&s->writer_q) + atomic_load(&m->settlement_pending)),
		"batches", (json_int_t)atomic_load(&m->batches), "retries",
		(json_int_t)atomic_load(&m->settlement_retries), "errors",
		(json_int_t)atomic_load(&m->settlement_errors), "halted",
		(int)atomic_load(&m->settlement_halted), "sequence",
		(json_int_t)atomic_load(&m->sequence), "time_ms", (json_int_t)srv_now_ms());
}

/* ---------- the API's thread, and the market data the I/O thread passes it ---------- */

/*
 * The I/O thread stages the market data of each batch it takes from the core (a level,
 * a trade, a halt, a product retired) and passes the batch on, before it writes the
 * batch's replies, through a queue of http_market_queue_max items; the API's thread
 * applies what waits there when woken, and before each answer, so that an answer has
 * all the I/O thread had passed on when it was asked for. Applying an item costs a
 * hash lookup, far less than an answer: the queue fills only while the API's thread
 * does not run at all, and then the I/O thread waits until it has taken some (no
 * market data is lost).
 */
enum { FEED_LEVEL = 1, FEED_TRADE, FEED_HALT, FEED_RETIRED };
#define FEED_BATCH 256

struct feed_item {
	uint8_t kind; /* FEED_* */
	uint8_t side; /* SRV_MARKET_SIDE_* */
	bool halted;
	uint32_t orders;
	uint64_t sequence;
	int64_t price, qty, time_ms;
	char product[MATCHING_PRODUCT_NAME_MAX + 1];
};

struct srv_api_feed {
	struct srv_queue q; /* I/O thread -> API thread */
	bool q_made;
	struct event *wake; /* on api_base, made active when q stops being empty */
	struct event *stop; /* on api_base: leave the loop */
	pthread_t thread;
	bool running;
	struct feed_item stage[FEED_BATCH]; /* the I/O thread's, not yet passed on */
	size_t n_stage;
};

static void feed_wake(void *f)
{
	event_active(((struct srv_api_feed *)f)->wake, EV_READ, 0);
}

void srv_http_market_flush(struct srv *s)
{
	struct srv_api_feed *f = s->api_feed;
	if (f == NULL || f->n_stage == 0)
		return;
	srv_queue_push_woken(&f->q, f->stage, f->n_stage, feed_wake, f);
	f->n_stage = 0;
}

void srv_http_market(struct srv *s, const struct srv_out *o)
{
	struct srv_api_feed *f = s->api_feed;
	if (f == NULL)
		return;
	struct feed_item *it = &f->stage[f->n_stage];
	*it = (struct feed_item){.halted = o->halted};
	memcpy(it->product, o->product, sizeof(it->product));
	if (o->kind == SRV_OUT_HALT || o->kind == SRV_OUT_RETIRED) {
		it->kind = o->kind == SRV_OUT_HALT ? FEED_HALT : FEED_RETIRED;
	} else {
		const struct srv_md *m = &o->u.md;
		if (m->kind != SRV_MD_LEVEL && m->kind != SRV_MD_TRADE)
			return;
		it->kind = m->kind == SRV_MD_LEVEL ? FEED_LEVEL : FEED_TRADE;
		it->side = m->side == MATCHING_BUY ? SRV_MARKET_SIDE_BUY : SRV_MARKET_SIDE_SELL;
		it->orders = m->orders;
		it->sequence = m->sequence;
		it->price = m->price;
		it->qty = m->qty;
		it->time_ms = m->time_ms;
	}
	if (++f->n_stage == FEED_BATCH)
		srv_http_market_flush(s);
}

/* API thread: applies the market data waiting in the queue, up to rounds batches; whether
 * some may be left. */
static bool feed_apply(struct srv *s, int rounds)
{
	struct feed_item items[FEED_BATCH];
	size_t n = 0;
	while (rounds-- > 0 && (n = srv_queue_pop(&s->api_feed->q, items, FEED_BATCH, 0)) > 0) {
		for (size_t i = 0; i < n; i++) {
			const struct feed_item *it = &items[i];
			switch (it->kind) {
			case FEED_LEVEL:
				srv_market_level(s->market, it->product, it->side, it->price,
						 it->qty, it->orders);
				break;
			case FEED_TRADE:
				srv_market_trade(s->market, it->product, it->sequence, it->price,
						 it->qty, it->side, it->time_ms);
				break;
			case FEED_HALT:
				srv_market_halt(s->market, it->product, it->halted);
				break;
			case FEED_RETIRED:
				srv_market_retire(s->market, it->product);
				break;
			}
		}
	}
	return n > 0;
}

static void feed_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct srv *s = arg;
	/* Bounded per wake-up, so that requests are not starved: then comes back. */
	if (feed_apply(s, 64))
		event_active(s->api_feed->wake, EV_READ, 0);
}

static void feed_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct srv *s = arg;
	event_base_loopbreak(s->api_base);
}

/*
 * The API's thread runs http_thread_nice below the rest of gridexd: when the CPUs are
 * busy, the order path's threads come first (at the default, 10, a busy API thread
 * weighs about a tenth of one of them with Linux's scheduler). With idle CPUs it runs
 * as fast as ever. Linux keeps a nice value per thread.
 */
static void *api_main(void *arg)
{
	struct srv *s = arg;
	srv_thread_name("gx-http");
	if (s->cfg.http_thread_nice > 0) {
		id_t tid = (id_t)gettid();
		errno = 0;
		int now = getpriority(PRIO_PROCESS, tid);
		int want = now + (int)s->cfg.http_thread_nice;
		if (errno != 0 || setpriority(PRIO_PROCESS, tid, want > 19 ? 19 : want) != 0)
			srv_log(SRV_LOG_WARN, "cannot lower the HTTP API thread's priority",
				"http_thread_nice=%lld error=\"%s\"",
				(long long)s->cfg.http_thread_nice, strerror(errno));
	}
	event_base_loop(s->api_base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

void srv_http_reply_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
	struct evbuffer *b = text ? evbuffer_new() : NULL;
	if (b == NULL || evbuffer_add(b, text, strlen(text)) != 0 ||
	    evbuffer_add(b, "\n", 1) != 0) {
		if (b)
			evbuffer_free(b);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", "application/json");
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_send_reply(req, code, reason, b);
	evbuffer_free(b);
}

static void reply_json(struct evhttp_request *req, int code, const char *reason, json_t *body)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	srv_http_reply_text(req, code, reason, text);
	free(text);
}

/* A 429 or 503 that may be asked again in a second, with the reason. */
static void reply_retry(struct evhttp_request *req, int code, const char *why)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
	reply_json(req, code, code == 429 ? "Too Many Requests" : "Service Unavailable",
		   json_pack("{s:s}", "error", why));
}

static void reply_error(struct evhttp_request *req, int code, const char *why)
{
	reply_json(req, code, code == 404 ? "Not Found" : "Bad Request",
		   json_pack("{s:s}", "error", why));
}

/* Every parameter of q is one of allowed[]; a product or class name is a token. */
static const char *params_ok(const struct evkeyvalq *q, const char *const *allowed)
{
	for (const struct evkeyval *kv = q->tqh_first; kv; kv = kv->next.tqe_next) {
		bool known = false;
		for (size_t i = 0; allowed[i]; i++)
			known |= strcmp(kv->key, allowed[i]) == 0;
		if (!known)
			return "a parameter this endpoint does not take";
		if ((strcmp(kv->key, "product") == 0 || strcmp(kv->key, "accelerator") == 0) &&
		    !srv_product_token_ok((const uint8_t *)kv->value, strlen(kv->value)))
			return "product and accelerator are 1-63 bytes of [A-Za-z0-9._/:-]";
		for (const struct evkeyval *o = kv->next.tqe_next; o; o = o->next.tqe_next)
			if (strcmp(o->key, kv->key) == 0)
				return "a parameter given twice";
	}
	return NULL;
}

/* A decimal parameter in [min, max], or def when absent; false when it is not one. */
static bool number(const struct evkeyvalq *q, const char *key, int64_t min, int64_t max,
		   int64_t def, int64_t *out)
{
	const char *v = evhttp_find_header(q, key);
	if (v == NULL) {
		*out = def;
		return true;
	}
	if (*v < '0' || *v > '9' || strlen(v) > 18)
		return false;
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (errno != 0 || *end != '\0' || n < min || n > max)
		return false;
	*out = n;
	return true;
}

/* The console's files: "/" is index.html; other names are one path component of
 * [a-z0-9_-] with a known extension (nothing else is read: no "..", no directories). */
static void console_file(struct srv *s, struct evhttp_request *req, const char *path)
{
	static const struct {
		const char *ext, *type;
	} types[] = {{".html", "text/html; charset=utf-8"},
		     {".css", "text/css; charset=utf-8"},
		     {".js", "text/javascript; charset=utf-8"},
		     {".svg", "image/svg+xml"}};
	const char *name = strcmp(path, "/") == 0 ? "index.html" : path + 1;
	const char *type = NULL;
	size_t len = strlen(name), base = strcspn(name, ".");
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(name + base, types[i].ext) == 0)
			type = types[i].type;
	bool ok = type != NULL && base > 0 && len < 64 &&
		  strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-") == base;
	char file[SRV_CONFIG_TEXT_MAX + 80];
	snprintf(file, sizeof(file), "%s/%s", s->cfg.http_console_dir, name);
	/* Small files, read whole (the console is a few pages). */
	int fd = ok ? open(file, O_RDONLY | O_CLOEXEC) : -1;
	struct stat st;
	struct evbuffer *b = evbuffer_new();
	char *data = NULL;
	ok = fd >= 0 && b != NULL && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	     st.st_size <= (1 << 20) && (data = malloc((size_t)st.st_size + 1)) != NULL &&
	     read(fd, data, (size_t)st.st_size) == (ssize_t)st.st_size &&
	     evbuffer_add(b, data, (size_t)st.st_size) == 0;
	free(data);
	if (fd >= 0)
		close(fd);
	if (!ok) {
		if (b)
			evbuffer_free(b);
		reply_error(req, 404, "no such page");
		return;
	}
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-cache");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(h, "Content-Security-Policy",
			  "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'");
	evhttp_send_reply(req, HTTP_OK, "OK", b);
	evbuffer_free(b);
}

/*
 * Requests per address on the HTTP API's port. Some answers cost the API's thread a
 * millisecond or more (the product list, a class's candles, a full page of trades:
 * docs/performance.md, "The HTTP API's answers"), CPU time the order path shares on a
 * machine of few cores, so one address may ask http_requests_per_ip_per_second, with a burst of
 * http_requests_per_ip_burst; beyond, 429. A bucket per address (srv_addr_key,
 * srv_bucket.h); the table holds 4 x http_connections_max addresses, and one whose
 * bucket has filled up again is forgotten when room is needed. With the table full of
 * addresses that asked lately, a new address is refused too: the orders come first.
 */
struct srv_http_limit {
	struct srv_buckets t;
	atomic_uint_fast64_t refused; /* requests answered 429 (read by /metrics) */
	int64_t logged_ms;	      /* the last warning; one per 10 s */
};

/* A request's peer: its address (for the log) and what the per-address limits count it
 * as (srv_addr_key); known false once its connection is gone. */
struct peer {
	bool known;
	char ip[SRV_MAP_KEY_BYTES], key[SRV_MAP_KEY_BYTES];
};

static struct peer peer_of(struct evhttp_request *req)
{
	struct peer p = {0};
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	const struct sockaddr *sa = conn ? evhttp_connection_get_addr(conn) : NULL;
	if (sa != NULL) {
		srv_addr_key(sa, p.ip, p.key, SRV_MAP_KEY_BYTES);
		p.known = true;
	}
	return p;
}

/* Whether the peer may have an answer now (and charges it one). */
static bool limit_allows(struct srv *s, const struct peer *p)
{
	struct srv_http_limit *L = s->api_limit;
	if (L == NULL || !p->known) /* gone already: nothing is sent */
		return true;
	int64_t now = srv_mono_ms();
	struct srv_bucket *b = srv_buckets_get(&L->t, p->key, false, now);
	if (b == NULL && (L->t.n < L->t.max || srv_buckets_forget_full(&L->t, now) < L->t.max))
		b = srv_buckets_get(&L->t, p->key, true, now);
	if (b != NULL && b->milli >= 1000) {
		b->milli -= 1000;
		return true;
	}
	atomic_fetch_add(&L->refused, 1);
	if (srv_log_due(&L->logged_ms, now))
		srv_log(SRV_LOG_WARN, "HTTP request refused", "ip=%s reason=%s", p->ip,
			b ? "http_requests_per_ip_per_second" : "too_many_addresses");
	return false;
}

/*
 * /history (candles: whole intervals, at most SRV_MARKET_ROWS_MAX of them) and
 * /history/trades (a page of trades, after the trade `after`): the parameters checked,
 * then the query queued for the history's thread (srv_history.c). NULL once req is
 * answered or queued; else why it is refused (400, or 404 with the history off).
 */
static const char *history_ask(struct srv *s, struct evhttp_request *req, const struct peer *peer,
			       const struct evkeyvalq *q, bool trades)
{
	if (s->history == NULL)
		return "price history is off (http_history_database_url)";
	const char *product = evhttp_find_header(q, "product");
	const char *cls = evhttp_find_header(q, "accelerator");
	int64_t iv = 1, from, to, after = 0, limit = 0;
	if ((product == NULL) == (cls == NULL))
		return "give product or accelerator, one of them";
	if (cls && (strlen(cls) > MATCHING_CLASS_NAME_MAX || strchr(cls, '/') != NULL))
		return "accelerator is 1-31 bytes of [A-Za-z0-9._:-]";
	if (!trades && !number(q, "interval_ms", SRV_MARKET_INTERVAL_MS_MIN,
			       SRV_MARKET_INTERVAL_MS_MAX, 3600000, &iv))
		return "interval_ms must be 1000 .. 86400000";
	if (trades && (!number(q, "limit", 1, SRV_MARKET_ROWS_MAX, 100, &limit) ||
		       !number(q, "after", 0, LEDGER_FILL_ID_MAX, 0, &after)))
		return "limit must be 1 .. 1000, and after a trade's id";
	/* By default, candles: the 100 intervals up to the one now (a partial one included);
	 * trades: the last hour, to now. */
	int64_t now = srv_now_ms();
	int64_t span = trades ? 3600000 : 100 * iv;
	if (!number(q, "to_ms", 1, LEDGER_TIME_MS_MAX, trades ? now + 1 : (now / iv + 1) * iv,
		    &to) ||
	    !number(q, "from_ms", 0, LEDGER_TIME_MS_MAX, to > span ? to - span : 0, &from))
		return "from_ms and to_ms must be times in Unix milliseconds";
	if (from >= to)
		return "from_ms must come before to_ms";
	if (from % iv != 0 || to % iv != 0)
		return "from_ms and to_ms must be multiples of interval_ms";
	if (!trades && (to - from) / iv > SRV_MARKET_ROWS_MAX)
		return "at most 1000 intervals from from_ms to to_ms";
	if (!peer->known) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL); /* gone: nothing is sent */
		return NULL;
	}
	struct srv_history_query hq = {.trades = trades,
				       .name = cls ? cls : product,
				       .is_class = cls != NULL,
				       .from_ms = from,
				       .to_ms = to,
				       .interval_ms = trades ? 0 : iv,
				       .after_id = after,
				       .limit = (uint32_t)limit};
	switch (srv_history_ask(s->history, req, &hq, peer->key)) {
	case SRV_HISTORY_QUEUED:
		break;
	case SRV_HISTORY_BUSY:
		reply_retry(req, 503,
			    "too many price history queries wait for the ledger "
			    "(http_history_queue_max)");
		break;
	case SRV_HISTORY_ADDRESS:
		reply_retry(req, 429,
			    "this address has too many price history requests waiting "
			    "(http_history_per_ip_max)");
		break;
	case SRV_HISTORY_NOMEM:
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		break;
	}
	return NULL;
}

static void api_cb(struct evhttp_request *req, void *arg)
{
	struct srv *s = arg;
	feed_apply(s, INT_MAX); /* all the I/O thread has passed on by now */
	struct peer peer = peer_of(req);
	if (!limit_allows(s, &peer)) {
		reply_retry(
			req, 429,
			"too many requests from this address (http_requests_per_ip_per_second)");
		return;
	}
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
	struct evkeyvalq q = {0}; /* empty: evhttp_parse_query_str fills it */
	if (path && strncmp(path, API_PREFIX, strlen(API_PREFIX)) != 0 &&
	    s->cfg.http_console_dir[0] != '\0') {
		console_file(s, req, path);
		return;
	}
	if (path == NULL || strncmp(path, API_PREFIX, strlen(API_PREFIX)) != 0) {
		reply_error(req, 404, "no such endpoint (docs/http-api.md)");
		return;
	}
	if (query && evhttp_parse_query_str(query, &q) != 0) {
		reply_error(req, 400, "the query string does not parse");
		return;
	}
	const char *what = path + strlen(API_PREFIX);
	if (strncmp(what, "operator/", 9) == 0) {
		if (query && query[0] != '\0') {
			reply_error(req, 400, "operator endpoints take no parameters");
		} else if (s->cfg.http_operator_token[0] == '\0') {
			reply_error(req, 404, "operator endpoints are off (http_operator_token)");
		} else if (!operator_ok(s, req)) {
			evhttp_add_header(evhttp_request_get_output_headers(req),
					  "WWW-Authenticate", "Bearer realm=\"gridex operator\"");
			reply_json(req, 401, "Unauthorized",
				   json_pack("{s:s}", "error",
					     "the operator's bearer token is needed"));
		} else if (strcmp(what + 9, "status") == 0) {
			reply_json(req, HTTP_OK, "OK", operator_status(s));
		} else if (strcmp(what + 9, "ledger") == 0 && s->ledger_view) {
			pthread_mutex_lock(&s->ledger_view->lock);
			json_t *j = s->ledger_view->json
					    ? json_loads(s->ledger_view->json, 0, NULL)
					    : json_pack("{s:s}", "error", "not read yet");
			pthread_mutex_unlock(&s->ledger_view->lock);
			reply_json(req, HTTP_OK, "OK", j);
		} else {
			reply_error(
				req, 404,
				strcmp(what + 9, "ledger") == 0
					? "no trial balance: http_auditor_database_url is not set"
					: "no such endpoint (docs/http-api.md)");
		}
		evhttp_clear_headers(&q);
		return;
	}
	const char *product = evhttp_find_header(&q, "product");
	const char *cls = evhttp_find_header(&q, "accelerator");
	const char *why = NULL;
	bool not_found = false;
	json_t *body = NULL;
	int64_t depth, limit, interval;
	if (strcmp(what, "products") == 0) {
		static const char *const ok[] = {NULL};
		if ((why = params_ok(&q, ok)) == NULL)
			body = srv_market_products(s->market, srv_now_ms());
	} else if (strcmp(what, "book") == 0) {
		static const char *const ok[] = {"product", "depth", NULL};
		if ((why = params_ok(&q, ok)) == NULL && product == NULL)
			why = "product is required";
		else if (why == NULL &&
			 !number(&q, "depth", 1, s->cfg.snapshot_levels_max, 20, &depth))
			why = "depth must be 1 .. snapshot_levels_max";
		else if (why == NULL)
			body = srv_market_book(s->market, product, (uint32_t)depth, &why,
					       &not_found);
	} else if (strcmp(what, "trades") == 0) {
		static const char *const ok[] = {"product", "accelerator", "limit", NULL};
		if ((why = params_ok(&q, ok)) == NULL &&
		    !number(&q, "limit", 1, SRV_MARKET_ROWS_MAX, 100, &limit))
			why = "limit must be 1 .. 1000";
		else if (why == NULL)
			body = srv_market_trades(s->market, product, cls, (uint32_t)limit, &why,
						 &not_found);
	} else if (strcmp(what, "candles") == 0) {
		static const char *const ok[] = {"product", "accelerator", "interval_ms", "limit",
						 NULL};
		if ((why = params_ok(&q, ok)) == NULL &&
		    (!number(&q, "limit", 1, SRV_MARKET_ROWS_MAX, 100, &limit) ||
		     !number(&q, "interval_ms", SRV_MARKET_INTERVAL_MS_MIN,
			     SRV_MARKET_INTERVAL_MS_MAX, 3600000, &interval)))
			why = "limit must be 1 .. 1000 and interval_ms 1000 .. 86400000";
		else if (why == NULL)
			body = srv_market_candles(s->market, product, cls, interval,
						  (uint32_t)limit, &why, &not_found);
	} else if (strcmp(what, "history") == 0 || strcmp(what, "history/trades") == 0) {
		bool trades = what[7] == '/';
		static const char *const ok[] = {"product", "accelerator", "interval_ms",
						 "from_ms", "to_ms",	   NULL};
		static const char *const ok_trades[] = {
			"product", "accelerator", "from_ms", "to_ms", "after", "limit", NULL};
		if ((why = params_ok(&q, trades ? ok_trades : ok)) == NULL &&
		    (why = history_ask(s, req, &peer, &q, trades)) == NULL) {
			evhttp_clear_headers(&q);
			return; /* answered, now or once the ledger has */
		}
		not_found = s->history == NULL;
	} else {
		why = "no such endpoint (docs/http-api.md)";
		not_found = true;
	}
	evhttp_clear_headers(&q);
	if (body)
		reply_json(req, HTTP_OK, "OK", body);
	else if (why)
		reply_error(req, not_found ? 404 : 400, why);
	else
		evhttp_send_error(req, HTTP_INTERNAL, NULL); /* out of memory */
}

/* ---------- the HTTP ports' connections ---------- */

/*
 * libevent 2.1's evhttp neither caps its connections nor says when one closes; it
 * only lets us make each connection's bufferevent (evhttp_set_bevcb), when it has
 * accepted the socket and before it sets the descriptor. So a port counts the
 * bufferevents it makes, holding a reference to each until the loop turns (learn_cb)
 * and it can read the descriptor, with the identity of its socket (device and inode:
 * a descriptor number is reused, a live socket's inode is not). A connection is known
 * to have closed when its descriptor no longer names that socket (sweep). When
 * http_connections_max are open the port stops accepting (srv_port_pause); every
 * accept_retry_ms it looks whether one has closed. Connections that arrive meanwhile
 * wait in the kernel's backlog, and the descriptors stay with the other ports. While
 * one waits there (the listening socket is readable), each look also shuts down the
 * port's oldest connection once it is http_evict_after_ms old (srv_http_make_room), so
 * that connections held open cannot keep newcomers out.
 *
 * Once the descriptor is known, so is the peer: an address (srv_addr_key) with
 * http_connections_per_ip_max open has its next connection shut down unserved, so that
 * one address cannot take all of a port's connections.
 *
 * Each port's thread (the API's for http_listen, the I/O thread for metrics_listen)
 * also sweeps every second, and publishes how many are open for /metrics.
 */
struct http_fresh {
	struct bufferevent *bev; /* a reference held */
	bool refuse;		 /* TLS could not be set up: closed unserved */
};

struct http_sock {
	evutil_socket_t fd;
	dev_t dev;
	ino_t ino;
	bool counted;		     /* in ips under key */
	bool shut;		     /* shut down by us: refused or evicted */
	int64_t opened_ms;	     /* when it was counted (monotonic) */
	char key[SRV_MAP_KEY_BYTES]; /* its peer's address, as the per-address limit counts */
};

struct srv_http_conns {
	struct srv_port *port;
	bool tls;
	uint32_t max;		  /* http_connections_max */
	struct event *learn;	  /* reads the descriptors of the fresh connections */
	struct http_fresh *fresh; /* accepted this loop turn */
	uint32_t n_fresh;
	struct http_sock *open; /* the others that were open when last looked at */
	uint32_t n_open;
	struct srv_map ips;	/* address -> its counted connections among open */
	uint32_t per_ip_max;	/* http_connections_per_ip_max */
	int64_t evict_after_ms; /* http_evict_after_ms */
	struct event *look;	/* every second: forgets the closed connections */
	/* For /metrics, which the I/O thread answers while the port may be another's: */
	atomic_uint_fast64_t open_seen; /* open when last looked at */
	atomic_uint_fast64_t full;	/* times the port stopped accepting at max */
	atomic_uint_fast64_t refused;	/* shut down unserved: per_ip_max, or no TLS */
	atomic_uint_fast64_t evicted;	/* connections closed to make room */
	int64_t logged_full_ms;		/* the last warning of each kind; one per 10 s */
	int64_t logged_refused_ms;
	int64_t logged_evicted_ms;
};

/* Whether o's descriptor still names the socket it was counted with (a closed one's
 * number may have been reused for another). */
static bool http_sock_same(const struct http_sock *o)
{
	struct stat st;
	return fstat(o->fd, &st) == 0 && st.st_dev == o->dev && st.st_ino == o->ino;
}

/* Forgets the connections that have closed (of address key only, when not NULL); how
 * many are open. */
static uint32_t http_sweep(struct srv_http_conns *h, const char *key)
{
	for (uint32_t i = 0; i < h->n_open;) {
		const struct http_sock *o = &h->open[i];
		if ((key && (!o->counted || strcmp(o->key, key) != 0)) || http_sock_same(o)) {
			i++;
			continue;
		}
		uint32_t *n = o->counted ? srv_map_get(&h->ips, o->key) : NULL;
		if (n && --*n == 0)
			srv_map_del(&h->ips, o->key);
		h->open[i] = h->open[--h->n_open];
	}
	atomic_store(&h->open_seen, h->n_fresh + h->n_open);
	return h->n_fresh + h->n_open;
}

static void http_look_cb(evutil_socket_t unused, short what, void *arg)
{
	(void)unused;
	(void)what;
	http_sweep(arg, NULL);
}

/* Counts fd's connection under its peer's address: false when that address has
 * per_ip_max open already. */
static bool http_count_peer(struct srv_http_conns *h, evutil_socket_t fd, struct http_sock *o)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char ip[SRV_MAP_KEY_BYTES];
	if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
		return true; /* gone already: evhttp will find out */
	srv_addr_key((struct sockaddr *)&ss, ip, o->key, sizeof(o->key));
	uint32_t *n = srv_map_get(&h->ips, o->key);
	if (n && *n >= h->per_ip_max) {
		http_sweep(h, o->key); /* some may have closed since last looked at */
		n = srv_map_get(&h->ips, o->key);
	}
	if (n && *n >= h->per_ip_max) {
		if (srv_log_due(&h->logged_refused_ms, srv_mono_ms()))
			srv_log(SRV_LOG_WARN, "HTTP connection refused",
				"port=%s ip=%s reason=http_connections_per_ip_max", h->port->name,
				ip);
		return false;
	}
	if (n == NULL && (n = srv_map_put(&h->ips, o->key, 0)) == NULL)
		return true; /* cannot happen: the map holds as many as open may */
	(*n)++;
	o->counted = true;
	return true;
}

static void http_learn_cb(evutil_socket_t unused, short what, void *arg)
{
	(void)unused;
	(void)what;
	struct srv_http_conns *h = arg;
	for (uint32_t i = 0; i < h->n_fresh; i++) {
		struct bufferevent *bev = h->fresh[i].bev;
		evutil_socket_t fd = bufferevent_getfd(bev);
		struct stat st;
		if (fd >= 0 && fstat(fd, &st) == 0) {
			/* Joins open only once counted: counting may sweep open, which moves its
			 * entries. */
			struct http_sock o = {.fd = fd,
					      .dev = st.st_dev,
					      .ino = st.st_ino,
					      .opened_ms = srv_mono_ms()};
			if (!http_count_peer(h, fd, &o) || h->fresh[i].refuse) {
				/* evhttp sees the end of the stream and frees the connection */
				shutdown(fd, SHUT_RDWR);
				o.shut = true;
				atomic_fetch_add(&h->refused, 1);
			}
			h->open[h->n_open++] = o;
		}
		bufferevent_decref(bev); /* frees it (and closes fd) if evhttp has already */
	}
	h->n_fresh = 0;
	atomic_store(&h->open_seen, h->n_open);
}

bool srv_http_room(struct srv_port *p)
{
	struct srv_http_conns *h = p->http;
	return h == NULL || h->n_fresh + h->n_open < h->max || http_sweep(h, NULL) < h->max;
}

void srv_http_make_room(struct srv_port *p)
{
	struct srv_http_conns *h = p->http;
	if (h == NULL || h->evict_after_ms == 0)
		return;
	struct pollfd waiting = {.fd = evconnlistener_get_fd(p->l), .events = POLLIN};
	if (poll(&waiting, 1, 0) != 1)
		return; /* nobody waits to be accepted */
	struct http_sock *oldest = NULL;
	for (uint32_t i = 0; i < h->n_open; i++)
		if (!h->open[i].shut &&
		    (oldest == NULL || h->open[i].opened_ms < oldest->opened_ms))
			oldest = &h->open[i];
	int64_t now = srv_mono_ms();
	if (oldest == NULL || now - oldest->opened_ms < h->evict_after_ms ||
	    !http_sock_same(oldest))
		return; /* (a descriptor that names another socket now is never shut down) */
	shutdown(oldest->fd, SHUT_RDWR); /* evhttp frees it; the next look finds room */
	oldest->shut = true;
	atomic_fetch_add(&h->evicted, 1);
	if (srv_log_due(&h->logged_evicted_ms, now))
		srv_log(SRV_LOG_WARN, "HTTP port full; its oldest connection closed for a new one",
			"port=%s age_ms=%lld http_evict_after_ms=%lld", p->name,
			(long long)(now - oldest->opened_ms), (long long)h->evict_after_ms);
}

/* evhttp's bufferevent for a connection it accepted on port arg. */
static struct bufferevent *http_bev(struct event_base *base, void *arg)
{
	struct srv_port *p = arg;
	struct srv_http_conns *h = p->http;
	struct bufferevent *bev = NULL;
	bool refuse = false;
	if (h->tls) {
		SSL *ssl = SSL_new(p->s->tls);
		if (ssl)
			bev = bufferevent_openssl_socket_new(
				base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
		refuse = bev == NULL; /* never plain HTTP on a TLS port */
	}
	if (bev == NULL)
		bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		return NULL; /* out of memory: evhttp will be too */
	if (!srv_http_room(p)) {
		/* Cannot happen: the port stopped accepting at max, and libevent's listener
		 * accepts no more once its callback has disabled it. This one goes uncounted
		 * (and would not be refused). */
		srv_port_pause(p);
		return bev;
	}
	bufferevent_incref(bev);
	h->fresh[h->n_fresh++] = (struct http_fresh){.bev = bev, .refuse = refuse};
	event_active(h->learn, EV_TIMEOUT, 1);
	if (!srv_http_room(p)) {
		atomic_fetch_add(&h->full, 1);
		srv_port_pause(p);
		if (srv_log_due(&h->logged_full_ms, srv_mono_ms()))
			srv_log(SRV_LOG_WARN, "HTTP port full; new connections wait",
				"port=%s http_connections_max=%u", p->name, h->max);
	}
	return bev;
}

int srv_http_port(struct srv *s, struct evhttp *http, struct evhttp_bound_socket *bound,
		  const char *name, bool tls)
{
	if (srv_port_guard(s, evhttp_bound_socket_get_listener(bound), name) != 0)
		return -1;
	struct srv_port *p = &s->ports[s->n_ports - 1];
	struct srv_http_conns *h = calloc(1, sizeof(*h));
	p->http = h;
	if (h == NULL)
		return -1;
	h->port = p;
	h->tls = tls;
	h->max = (uint32_t)s->cfg.http_connections_max;
	h->per_ip_max = (uint32_t)s->cfg.http_connections_per_ip_max;
	h->evict_after_ms = s->cfg.http_evict_after_ms;
	h->fresh = calloc(h->max, sizeof(*h->fresh));
	h->open = calloc(h->max, sizeof(*h->open));
	/* On the loop of the port's thread (the API's, or the I/O thread for /metrics). */
	struct event_base *base = evconnlistener_get_base(p->l);
	h->learn = event_new(base, -1, 0, http_learn_cb, h);
	h->look = event_new(base, -1, EV_PERSIST, http_look_cb, h);
	struct timeval second = {.tv_sec = 1};
	if (!h->fresh || !h->open || !h->learn || !h->look || event_add(h->look, &second) != 0 ||
	    !srv_map_init(&h->ips, h->max))
		return -1;
	evhttp_set_bevcb(http, http_bev, p);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET);
	evhttp_set_max_headers_size(http, (ev_ssize_t)s->cfg.http_headers_bytes_max);
	evhttp_set_max_body_size(http, 0);
	int64_t ms = s->cfg.http_timeout_ms;
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	evhttp_set_timeout_tv(http, &tv);
	return 0;
}

static uint64_t open_now(struct srv_http_conns *h)
{
	return atomic_load(&h->open_seen);
}

static uint64_t times_full(struct srv_http_conns *h)
{
	return atomic_load(&h->full);
}

static uint64_t times_refused(struct srv_http_conns *h)
{
	return atomic_load(&h->refused);
}

static uint64_t times_evicted(struct srv_http_conns *h)
{
	return atomic_load(&h->evicted);
}

/* A metric family with a line for each HTTP port: value(its connections). */
static void port_family(struct srv *s, struct evbuffer *b, const char *name, const char *type,
			const char *help, uint64_t (*value)(struct srv_http_conns *))
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	for (size_t i = 0; i < s->n_ports; i++)
		if (s->ports[i].http)
			evbuffer_add_printf(b, "%s{port=\"%s\"} %llu\n", name, s->ports[i].name,
					    (unsigned long long)value(s->ports[i].http));
}

void srv_http_port_metrics(struct srv *s, struct evbuffer *b)
{
	port_family(s, b, "gridex_http_connections", "gauge",
		    "Open connections of an HTTP port (at most http_connections_max).", open_now);
	port_family(s, b, "gridex_http_port_full_total", "counter",
		    "Times an HTTP port stopped accepting with http_connections_max open.",
		    times_full);
	port_family(s, b, "gridex_http_connections_refused_total", "counter",
		    "Connections an HTTP port shut down unserved: their address had "
		    "http_connections_per_ip_max open (or TLS could not be set up).",
		    times_refused);
	port_family(
		s, b, "gridex_http_connections_evicted_total", "counter",
		"Connections an HTTP port closed, when full with one waiting, because they were "
		"its oldest and open http_evict_after_ms or longer.",
		times_evicted);
	evbuffer_add_printf(
		b,
		"# HELP gridex_http_requests_refused_total Requests of the HTTP API "
		"answered 429: their address was over http_requests_per_ip_per_second "
		"and its burst.\n# TYPE gridex_http_requests_refused_total counter\n"
		"gridex_http_requests_refused_total %llu\n",
		(unsigned long long)(s->api_limit ? atomic_load(&s->api_limit->refused) : 0));
	evbuffer_add_printf(
		b,
		"# HELP gridex_http_market_queue_depth Market data waiting for the HTTP "
		"API's thread (at most http_market_queue_max).\n"
		"# TYPE gridex_http_market_queue_depth gauge\n"
		"gridex_http_market_queue_depth %llu\n",
		(unsigned long long)(s->api_feed ? srv_queue_depth(&s->api_feed->q) : 0));
	srv_history_metrics(s->history, b);
}

void srv_http_port_free(struct srv_port *p)
{
	struct srv_http_conns *h = p->http;
	if (h == NULL)
		return;
	for (uint32_t i = 0; i < h->n_fresh; i++)
		bufferevent_decref(h->fresh[i].bev);
	if (h->learn)
		event_free(h->learn);
	if (h->look)
		event_free(h->look);
	free(h->fresh);
	free(h->open);
	free(h->ips.e);
	free(h);
	p->http = NULL;
}

/* ---------- the trades kept, at start ---------- */

/* The kept trades survive a restart: the newest http_trades_kept are the unsettled
 * fills (above the ledger's last batch, from the snapshot or the journal) and, before
 * them, the newest rows of ledger.fills. Each gets its product's tape sequence by
 * counting back from its book's current one (a fill is one print on its book's tape,
 * in fill order); a product whose book is retired has no current one, and its
 * trades get 0, answered as null. */

struct hist_trade {
	uint32_t product;  /* in hist.p */
	uint64_t sequence; /* 0: not known */
	int64_t price, qty, time_ms;
	uint8_t side; /* SRV_MARKET_SIDE_*: the aggressor's */
};

struct hist_product {
	char name[SRV_PRODUCT_BYTES_MAX + 1];
	uint64_t next; /* the tape sequence of its next older trade; 0: not known */
	size_t newest; /* the index of its newest trade in hist.t (SIZE_MAX: none) */
	bool live;     /* it has a book (retired otherwise, or not made since a start
			* without the journal) */
};

struct hist {
	struct hist_trade *t; /* newest first */
	size_t n, max;
	struct hist_product *p;
	uint32_t n_p, max_p;
	struct srv_tindex ix; /* product name to its index in p */
	size_t from_ledger;
};

static const char *hist_name(const void *ctx, uint32_t v)
{
	const struct hist *h = ctx;
	return h->p[v].name;
}

static struct hist_product *hist_product(struct hist *h, const char *name)
{
	uint32_t i = srv_tindex_get(&h->ix, name);
	if (i != UINT32_MAX)
		return &h->p[i];
	if (h->n_p == h->max_p)
		return NULL;
	struct hist_product *p = &h->p[h->n_p];
	*p = (struct hist_product){.newest = SIZE_MAX};
	memcpy(p->name, name, strnlen(name, SRV_PRODUCT_BYTES_MAX));
	srv_tindex_put(&h->ix, h->n_p++);
	return p;
}

static void hist_add(struct hist *h, const struct ledger_trade *tr)
{
	struct hist_product *p = h->n < h->max ? hist_product(h, tr->product) : NULL;
	if (p == NULL)
		return;
	if (p->newest == SIZE_MAX)
		p->newest = h->n;
	struct hist_trade *t = &h->t[h->n++];
	*t = (struct hist_trade){.product = (uint32_t)(p - h->p),
				 .sequence = p->next,
				 .price = tr->fill.price,
				 .qty = tr->fill.qty,
				 .time_ms = tr->time_ms,
				 .side = tr->fill.buyer_is_taker ? SRV_MARKET_SIDE_BUY
								 : SRV_MARKET_SIDE_SELL};
	if (p->next > 0)
		p->next--;
}

static void hist_from_ledger(const struct ledger_trade *tr, void *ctx)
{
	struct hist *h = ctx;
	hist_add(h, tr);
	h->from_ledger++;
}

/* Gathers the history newest first (every book's product entered first, with its
 * tape's sequence), then gives it to the market oldest first, retiring each product
 * without a book after its newest trade, as the live market did. */
static void hist_load(struct srv *s, struct hist *h)
{
	int64_t t0 = srv_mono_ms();
	for (size_t i = s->n_resent; i-- > 0;)
		if (s->resent[i].kind == SRV_W_FILL)
			hist_add(h, &s->resent[i].u.trade);
	size_t unsettled = h->n;
	if (h->n < h->max && s->lock) {
		int rc = ledger_recent_trades(s->lock, h->max - h->n, hist_from_ledger, h);
		if (rc != LEDGER_OK)
			srv_log(SRV_LOG_WARN, "trade history partly loaded",
				"status=%s error=\"%s\" from_ledger=%zu", ledger_status_name(rc),
				ledger_error(s->lock), h->from_ledger);
	}
	for (size_t i = h->n; i-- > 0;) {
		const struct hist_trade *t = &h->t[i];
		const struct hist_product *p = &h->p[t->product];
		srv_market_trade(s->market, p->name, t->sequence, t->price, t->qty, t->side,
				 t->time_ms);
		if (p->newest == i && !p->live)
			srv_market_retire(s->market, p->name);
	}
	srv_log(SRV_LOG_INFO, "trade history loaded",
		"trades=%zu unsettled=%zu from_ledger=%zu ms=%lld", h->n, unsettled, h->from_ledger,
		(long long)(srv_mono_ms() - t0));
}

static void hist_free(struct hist *h)
{
	srv_tindex_free(&h->ix);
	free(h->t);
	free(h->p);
}

int srv_http_init(struct srv *s)
{
	s->api_fd = -1;
	if (s->cfg.http_listen[0] == '\0')
		return 0;
	struct srv_market_config mc = {.products_max = (uint32_t)s->cfg.books_max,
				       .levels_max = (uint32_t)s->cfg.snapshot_levels_max,
				       .trades_kept = (uint32_t)s->cfg.http_trades_kept,
				       .gate_lead_ms = s->cfg.gate_lead_ms};
	char host[256];
	uint16_t port;
	struct evhttp_bound_socket *bound = NULL;
	struct srv_api_feed *f = calloc(1, sizeof(*f));
	s->api_feed = f; /* freed by srv_http_free, also when only half made */
	if (f == NULL || srv_queue_init(&f->q, sizeof(struct feed_item),
					(size_t)s->cfg.http_market_queue_max) != 0) {
		srv_log(SRV_LOG_ERROR, "HTTP API out of memory", NULL);
		return -1;
	}
	f->q_made = true;
	if ((s->api_base = event_base_new()) == NULL ||
	    (f->wake = event_new(s->api_base, -1, 0, feed_wake_cb, s)) == NULL ||
	    (f->stop = event_new(s->api_base, -1, 0, feed_stop_cb, s)) == NULL ||
	    srv_market_create(&mc, &s->market) != 0 || (s->api = evhttp_new(s->api_base)) == NULL ||
	    !srv_split_host_port(s->cfg.http_listen, host, sizeof(host), &port) ||
	    (bound = evhttp_bind_socket_with_handle(s->api, host, port)) == NULL) {
		srv_log(SRV_LOG_ERROR, "cannot serve the HTTP API", "http_listen=\"%s\"",
			s->cfg.http_listen);
		return -1;
	}
	s->api_fd = evhttp_bound_socket_get_fd(bound);
	if (srv_http_port(s, s->api, bound, "http_listen", s->cfg.http_tls) != 0)
		return -1;
	/* The books as recovered (the core thread does not run yet), then the trades kept. */
	struct matching_level_view *bids = calloc(mc.levels_max, sizeof(*bids));
	struct matching_level_view *asks = calloc(mc.levels_max, sizeof(*asks));
	uint32_t n_books = srv_core_book_count(s->core);
	struct hist h = {.max = mc.trades_kept, .max_p = n_books + mc.trades_kept};
	h.t = malloc(h.max * sizeof(*h.t));
	h.p = malloc((size_t)h.max_p * sizeof(*h.p));
	bool ok = h.t && h.p && srv_tindex_init(&h.ix, h.max_p, hist_name, &h);
	for (uint32_t b = 0; ok && bids && asks && b < n_books; b++) {
		size_t nb, na;
		uint64_t level_seq, trade_seq;
		const char *name = srv_core_book_name(s->core, b);
		if (!srv_core_snapshot(s->core, b, bids, &nb, asks, &na, mc.levels_max, &level_seq,
				       &trade_seq))
			continue;
		for (size_t i = 0; i < nb; i++)
			srv_market_level(s->market, name, SRV_MARKET_SIDE_BUY, bids[i].price,
					 bids[i].qty, bids[i].orders);
		for (size_t i = 0; i < na; i++)
			srv_market_level(s->market, name, SRV_MARKET_SIDE_SELL, asks[i].price,
					 asks[i].qty, asks[i].orders);
		srv_market_halt(s->market, name, srv_core_halted(s->core, b));
		struct hist_product *p = hist_product(&h, name); /* room: one per book */
		if (p) {
			p->live = true;
			p->next = trade_seq;
		}
	}
	ok = ok && bids && asks;
	if (ok)
		hist_load(s, &h);
	hist_free(&h);
	free(bids);
	free(asks);
	if (!ok) {
		srv_log(SRV_LOG_ERROR, "HTTP API out of memory", NULL);
		return -1;
	}
	if (s->cfg.http_requests_per_ip_per_second > 0) {
		struct srv_http_limit *L = calloc(1, sizeof(*L));
		s->api_limit = L; /* freed by srv_http_free, also when only half made */
		if (L == NULL || !srv_buckets_init(&L->t, 4 * (uint32_t)s->cfg.http_connections_max,
						   s->cfg.http_requests_per_ip_per_second,
						   s->cfg.http_requests_per_ip_burst)) {
			srv_log(SRV_LOG_ERROR, "HTTP API out of memory", NULL);
			return -1;
		}
	}
	evhttp_set_gencb(s->api, api_cb, s);
	if (s->cfg.http_operator_token[0] != '\0' && s->cfg.http_auditor_database_url[0] != '\0') {
		struct srv_ledger_view *v = calloc(1, sizeof(*v));
		if (v == NULL)
			return -1;
		v->s = s;
		pthread_mutex_init(&v->lock, NULL);
		pthread_cond_init(&v->cond, NULL);
		if (pthread_create(&v->thread, NULL, ledger_view_main, v) != 0) {
			free(v);
			return -1;
		}
		s->ledger_view = v;
	}
	if (s->cfg.http_history_database_url[0] != '\0') {
		struct srv_history_config hc = {
			.database_url = s->cfg.http_history_database_url,
			.currency = s->cfg.currency,
			.timeout_ms = s->cfg.http_history_timeout_ms,
			.queue_max = (uint32_t)s->cfg.http_history_queue_max,
			.per_ip_max = (uint32_t)s->cfg.http_history_per_ip_max};
		if ((s->history = srv_history_start(&hc, s->api_base)) == NULL) {
			srv_log(SRV_LOG_ERROR, "cannot start the price history's thread", NULL);
			return -1;
		}
	}
	if (pthread_create(&f->thread, NULL, api_main, s) != 0) {
		srv_log(SRV_LOG_ERROR, "cannot start the HTTP API's thread", NULL);
		return -1;
	}
	f->running = true;
	return 0;
}

void srv_http_free(struct srv *s)
{
	struct srv_api_feed *f = s->api_feed;
	if (f && f->running) {
		event_active(f->stop, EV_READ, 0); /* stays active until the loop runs it */
		pthread_join(f->thread, NULL);
		f->running = false;
	}
	srv_history_stop(s->history); /* answers those waiting, before evhttp_free */
	s->history = NULL;
	struct srv_ledger_view *v = s->ledger_view;
	if (v) {
		pthread_mutex_lock(&v->lock);
		v->stop = true;
		pthread_cond_signal(&v->cond);
		pthread_mutex_unlock(&v->lock);
		pthread_join(v->thread, NULL);
		free(v->json);
		pthread_mutex_destroy(&v->lock);
		pthread_cond_destroy(&v->cond);
		free(v);
		s->ledger_view = NULL;
	}
	if (s->api)
		evhttp_free(s->api);
	s->api = NULL;
	if (s->api_limit)
		srv_buckets_free(&s->api_limit->t);
	free(s->api_limit);
	s->api_limit = NULL;
	srv_market_destroy(s->market);
	s->market = NULL;
	if (f) {
		if (f->wake)
			event_free(f->wake);
		if (f->stop)
			event_free(f->stop);
		if (f->q_made)
			srv_queue_destroy(&f->q);
		free(f);
		s->api_feed = NULL;
	}
}
