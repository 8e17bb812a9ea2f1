/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The read-only HTTP API (docs/http-api.md), served by the I/O thread with
 * libevent's evhttp on http_listen: products, book depth, trades and candles
 * as JSON (jansson), answered from the market copy the I/O thread keeps
 * (srv_market.c) from the market data the core publishes. Only GET; every
 * parameter checked (400 with the reason), every answer bounded.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "srv_log.h"
#include "srv_market.h"
#include "srv_server.h"

#define API_PREFIX "/api/v1/"

void srv_http_market(struct srv *s, const struct srv_out *o)
{
	if (s->market == NULL)
		return;
	if (o->kind == SRV_OUT_HALT) {
		srv_market_halt(s->market, o->product, o->halted);
		return;
	}
	const struct srv_md *m = &o->u.md;
	uint8_t side = m->side == MATCHING_BUY ? SRV_MARKET_SIDE_BUY : SRV_MARKET_SIDE_SELL;
	if (m->kind == SRV_MD_LEVEL)
		srv_market_level(s->market, o->product, side, m->price, m->qty, m->orders);
	else if (m->kind == SRV_MD_TRADE)
		srv_market_trade(s->market, o->product, m->sequence, m->price, m->qty, side,
				 m->time_ms);
}

static void reply_json(struct evhttp_request *req, int code, const char *reason, json_t *body)
{
	struct evbuffer *b = evbuffer_new();
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (b == NULL || text == NULL) {
		free(text);
		if (b)
			evbuffer_free(b);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evbuffer_add(b, text, strlen(text));
	evbuffer_add(b, "\n", 1);
	free(text);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", "application/json");
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_send_reply(req, code, reason, b);
	evbuffer_free(b);
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

static void api_cb(struct evhttp_request *req, void *arg)
{
	struct srv *s = arg;
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
	if (srv_market_create(&mc, &s->market) != 0 || (s->api = evhttp_new(s->base)) == NULL ||
	    !srv_split_host_port(s->cfg.http_listen, host, sizeof(host), &port) ||
	    (bound = evhttp_bind_socket_with_handle(s->api, host, port)) == NULL) {
		srv_log(SRV_LOG_ERROR, "cannot serve the HTTP API", "http_listen=\"%s\"",
			s->cfg.http_listen);
		return -1;
	}
	s->api_fd = evhttp_bound_socket_get_fd(bound);
	/* The books as recovered: the core thread does not run yet. */
	struct matching_level_view *bids = calloc(mc.levels_max, sizeof(*bids));
	struct matching_level_view *asks = calloc(mc.levels_max, sizeof(*asks));
	for (uint32_t b = 0; bids && asks && b < srv_core_book_count(s->core); b++) {
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
	}
	bool ok = bids && asks;
	free(bids);
	free(asks);
	if (!ok) {
		srv_log(SRV_LOG_ERROR, "HTTP API out of memory", NULL);
		return -1;
	}
	evhttp_set_allowed_methods(s->api, EVHTTP_REQ_GET);
	evhttp_set_max_headers_size(s->api, 8192);
	evhttp_set_max_body_size(s->api, 0);
	evhttp_set_timeout(s->api, 10);
	evhttp_set_gencb(s->api, api_cb, s);
	return 0;
}

void srv_http_free(struct srv *s)
{
	if (s->api)
		evhttp_free(s->api);
	s->api = NULL;
	srv_market_destroy(s->market);
	s->market = NULL;
}
