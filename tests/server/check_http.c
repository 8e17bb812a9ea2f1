/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP API end to end (docs/http-api.md): a real gridexd with
 * --http-listen, a real PostgreSQL, real TLS clients trading; every number the
 * API shows is checked against what the trading produced and against the
 * book snapshot subscribers get; halts show; bad parameters get a 400 with a
 * reason, unknown things a 404; a restart keeps the books.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "pgtest.h"
#include "tap.h"
#include "tclient.h"

#define BUYER  1
#define SELLER 2

static struct tserver srv;
static struct tclient op, buyer, seller;
static char product[64];
static const char *const args[] = {"--http-listen=127.0.0.1:0", "--http-headers-bytes-max=2048",
				   "--http-timeout-ms=1000", NULL};

/* gridexd on the database pgtest_setup_dir() made, and the market. */
static void start(const char *const *with)
{
	memset(&srv, 0, sizeof(srv));
	tserver_start(&srv, with);
	ck_assert_int_gt(srv.http_port, 0);
	tproduct(product, sizeof(product), "H100-80G", 2);
	tclient_market(&srv, &op, &buyer, BUYER, 1000000000, &seller, SELLER, "H100-80G", 100);
}

static void setup(void)
{
	pgtest_setup_dir(GRIDEX_TEST_MIGRATIONS);
	start(args);
}

static void teardown(void)
{
	tclient_close(&op);
	tclient_close(&buyer);
	tclient_close(&seller);
	ck_assert_int_eq(tserver_stop(&srv), 0);
	pgtest_teardown();
}

/* GET path: its status, and its body parsed (a JSON object, or the test fails). */
static json_t *get(const char *path, int *status)
{
	const char *resp = thttp_get(srv.http_port, path, status);
	ck_assert_msg(strstr(resp, "Content-Type: application/json") != NULL, "%s", resp);
	json_error_t e;
	json_t *j = json_loads(thttp_body(resp), 0, &e);
	ck_assert_msg(json_is_object(j), "%s: %s", path, resp);
	return j;
}

/* a, b and c, one after the other (a static buffer). */
static const char *cat(const char *a, const char *b, const char *c)
{
	static char path[512];
	snprintf(path, sizeof(path), "%s%s%s", a, b, c);
	return path;
}

static json_t *get_ok(const char *path)
{
	int status;
	json_t *j = get(path, &status);
	ck_assert_msg(status == 200, "%s: %d", path, status);
	return j;
}

/* A 400 or 404 with a reason. */
static void refused(const char *path, int want)
{
	int status;
	json_t *j = get(path, &status);
	ck_assert_msg(status == want, "%s: %d", path, status);
	ck_assert_msg(json_string_length(json_object_get(j, "error")) > 0, "%s", path);
	json_decref(j);
}

static void order(struct tclient *c, uint64_t coid, int side, int64_t price, int64_t qty)
{
	ck_assert_int_eq(tclient_answer(c, tclient_order(c, coid, product, side, price, qty)), 0);
}

static int64_t num(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	ck_assert_msg(json_is_integer(v), "%s is not an integer", key);
	return (int64_t)json_integer_value(v);
}

static bool is_snapshot(const Gridex__V1__ServerFrame *f, void *ctx)
{
	(void)ctx;
	return f->snapshot != NULL;
}

/* The API follows the market data a moment after the acknowledgements: waits for the
 * product's state. */
static void wait_state(const char *state)
{
	for (int i = 0; i < 500; i++) {
		json_t *j = get_ok(cat("/api/v1/products", "", ""));
		json_t *p = json_array_get(json_object_get(j, "products"), 0);
		bool there = strcmp(json_string_value(json_object_get(p, "state")), state) == 0;
		json_decref(j);
		if (there)
			return;
		struct timespec ts = {.tv_nsec = 10000000};
		nanosleep(&ts, NULL);
	}
	ck_abort_msg("the product never became %s", state);
}

START_TEST(market_api_matches_the_market)
{
	json_t *j = get_ok(cat("/api/v1/products", "", ""));
	ck_assert_uint_eq(json_array_size(json_object_get(j, "products")), 0);
	json_decref(j);
	/* Asks at 2.60 (3 GPUs) and 2.70 (2); a bid takes 2 @ 2.60, another 1 @ 2.60 and
	 * 1 @ 2.70; then bids rest at 2.60 (2) and 2.50 (4). */
	order(&seller, 1, GRIDEX__V1__SIDE__SELL, 2600000, 3);
	order(&seller, 2, GRIDEX__V1__SIDE__SELL, 2700000, 2);
	order(&buyer, 1, GRIDEX__V1__SIDE__BUY, 2600000, 2);
	order(&buyer, 2, GRIDEX__V1__SIDE__BUY, 2700000, 2);
	order(&buyer, 3, GRIDEX__V1__SIDE__BUY, 2600000, 2);
	order(&buyer, 4, GRIDEX__V1__SIDE__BUY, 2500000, 4);
	/* book: bids 2.60 x2, 2.50 x4; asks 2.70 x1 */
	tclient_subscribe(&buyer, product, false);
	Gridex__V1__ServerFrame *f = tclient_until(&buyer, is_snapshot, NULL);
	j = get_ok(cat("/api/v1/book?product=", product, ""));
	json_t *bids = json_object_get(j, "bids"), *asks = json_object_get(j, "asks");
	ck_assert_uint_eq(json_array_size(bids), f->snapshot->n_bids);
	ck_assert_uint_eq(json_array_size(asks), f->snapshot->n_asks);
	for (size_t i = 0; i < f->snapshot->n_bids; i++) {
		ck_assert_int_eq(num(json_array_get(bids, i), "price"),
				 f->snapshot->bids[i]->price);
		ck_assert_int_eq(num(json_array_get(bids, i), "quantity"),
				 f->snapshot->bids[i]->quantity);
		ck_assert_int_eq(num(json_array_get(bids, i), "orders"),
				 f->snapshot->bids[i]->orders);
	}
	for (size_t i = 0; i < f->snapshot->n_asks; i++)
		ck_assert_int_eq(num(json_array_get(asks, i), "price"),
				 f->snapshot->asks[i]->price);
	ck_assert_int_eq(num(json_array_get(bids, 0), "price"), 2600000);
	ck_assert_int_eq(num(json_array_get(bids, 0), "quantity"), 2);
	ck_assert_int_eq(num(json_array_get(bids, 1), "price"), 2500000);
	ck_assert_int_eq(num(json_array_get(asks, 0), "price"), 2700000);
	ck_assert_int_eq(num(json_array_get(asks, 0), "quantity"), 1);
	gridex__v1__server_frame__free_unpacked(f, NULL);
	json_decref(j);
	/* trades, newest first: 1 @ 2.70, 1 @ 2.60 (order 2), 2 @ 2.60 (order 1) */
	j = get_ok(cat("/api/v1/trades?product=", product, ""));
	json_t *tr = json_object_get(j, "trades");
	ck_assert_uint_eq(json_array_size(tr), 3);
	ck_assert_int_eq(num(json_array_get(tr, 0), "price"), 2700000);
	ck_assert_int_eq(num(json_array_get(tr, 0), "quantity"), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(tr, 0), "aggressor")),
			 "buy");
	ck_assert_int_eq(num(json_array_get(tr, 2), "price"), 2600000);
	ck_assert_int_eq(num(json_array_get(tr, 2), "quantity"), 2);
	ck_assert_int_gt(num(json_array_get(tr, 0), "sequence"),
			 num(json_array_get(tr, 1), "sequence"));
	json_decref(j);
	j = get_ok(cat("/api/v1/trades?accelerator=", "H100-80G", "&limit=2"));
	ck_assert_uint_eq(json_array_size(json_object_get(j, "trades")), 2);
	json_decref(j);
	/* one hourly candle: open 2.60, high 2.70, low 2.60, close 2.70, 4 GPUs, VWAP 2.625 */
	j = get_ok(cat("/api/v1/candles?product=", product, "&interval_ms=3600000"));
	json_t *c = json_array_get(json_object_get(j, "candles"), 0);
	ck_assert_uint_eq(json_array_size(json_object_get(j, "candles")), 1);
	ck_assert_int_eq(num(c, "open"), 2600000);
	ck_assert_int_eq(num(c, "high"), 2700000);
	ck_assert_int_eq(num(c, "low"), 2600000);
	ck_assert_int_eq(num(c, "close"), 2700000);
	ck_assert_int_eq(num(c, "volume"), 4);
	ck_assert_int_eq(num(c, "vwap"), (2 * 2600000 + 2600000 + 2700000) / 4);
	ck_assert_int_eq(num(c, "start_ms") % 3600000, 0);
	json_decref(j);
	/* products: best bid and ask, last price, volume, open; then halted and back */
	j = get_ok(cat("/api/v1/products", "", ""));
	json_t *p = json_array_get(json_object_get(j, "products"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(p, "product")), product);
	ck_assert_str_eq(json_string_value(json_object_get(p, "accelerator")), "H100-80G");
	ck_assert_str_eq(json_string_value(json_object_get(p, "state")), "open");
	ck_assert_int_eq(num(p, "best_bid"), 2600000);
	ck_assert_int_eq(num(p, "best_ask"), 2700000);
	ck_assert_int_eq(num(p, "last_price"), 2700000);
	ck_assert_int_eq(num(p, "volume"), 4);
	ck_assert_int_eq(num(p, "gate_ms"), num(p, "delivery_start_ms") - 300000);
	json_decref(j);
	ck_assert_int_eq(
		tclient_operator(&op, GRIDEX__V1__REQUEST_TYPE__HALT, 0, product, 0, NULL, NULL),
		0);
	wait_state("halted");
	ck_assert_int_eq(
		tclient_operator(&op, GRIDEX__V1__REQUEST_TYPE__RESUME, 0, product, 0, NULL, NULL),
		0);
	wait_state("open");
	/* a restart keeps the books (trades are since the start) */
	tclient_close(&op);
	tclient_close(&buyer);
	tclient_close(&seller);
	ck_assert_int_eq(tserver_stop(&srv), 0);
	tserver_start(&srv, args);
	tclient_reconnect(&srv, &op, &buyer, &seller);
	j = get_ok(cat("/api/v1/book?product=", product, "&depth=1"));
	ck_assert_uint_eq(json_array_size(json_object_get(j, "bids")), 1);
	ck_assert_int_eq(num(json_array_get(json_object_get(j, "bids"), 0), "price"), 2600000);
	ck_assert_int_eq(num(json_array_get(json_object_get(j, "asks"), 0), "quantity"), 1);
	json_decref(j);
}
END_TEST

/* A TCP connection to the HTTP API. */
/* A plain TCP connection to 127.0.0.1:port. */
static int tcp_to(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

START_TEST(bad_requests_get_a_reason)
{
	order(&seller, 1, GRIDEX__V1__SIDE__SELL, 2600000, 3);
	char path[256];
	refused("/api/v1/book", 400);
	snprintf(path, sizeof(path), "/api/v1/book?product=%s&depth=0", product);
	refused(path, 400);
	snprintf(path, sizeof(path), "/api/v1/book?product=%s&depth=abc", product);
	refused(path, 400);
	snprintf(path, sizeof(path), "/api/v1/book?product=%s&depth=100000000000000000000",
		 product);
	refused(path, 400);
	snprintf(path, sizeof(path), "/api/v1/book?product=%s&colour=red", product);
	refused(path, 400);
	snprintf(path, sizeof(path), "/api/v1/book?product=%s&product=%s", product, product);
	refused(path, 400);
	refused("/api/v1/book?product=H100%3Cscript%3E", 400);
	refused("/api/v1/book?product=A100-40G/2026-01-01T00", 404);
	snprintf(path, sizeof(path), "/api/v1/trades?product=%s&accelerator=H100-80G", product);
	refused(path, 400);
	refused("/api/v1/trades", 400);
	refused("/api/v1/trades?accelerator=H100-80G&limit=1001", 400);
	refused("/api/v1/candles?accelerator=H100-80G&interval_ms=999", 400);
	refused("/api/v1/candles?accelerator=B200", 404);
	refused("/api/v1/history?accelerator=H100-80G", 404); /* off */
	refused("/api/v1/nope", 404);
	refused("/other", 404);
	int status;
	const char *r = thttp_get(srv.http_port, "/api/v1/products?x=1", &status);
	ck_assert_int_eq(status, 400);
	(void)r;
	/* Headers within http_headers_bytes_max (2 KiB here) are read, larger ones are not. */
	char header[4096];
	memset(header, 'a', sizeof(header));
	memcpy(header, "X-Padding: ", 11);
	header[1000] = '\0';
	thttp_get_with(srv.http_port, "/api/v1/products", header, &status);
	ck_assert_int_eq(status, 200);
	thttp_get_with(srv.metrics_port, "/metrics", header, &status);
	ck_assert_int_eq(status, 200);
	header[1000] = 'a';
	header[3500] = '\0';
	/* On the API's port and on /metrics' alike. */
	const int ports[] = {srv.http_port, srv.metrics_port};
	const char *const paths[] = {"/api/v1/products", "/metrics"};
	for (int i = 0; i < 2; i++) {
		int fd = tcp_to(ports[i]);
		char req[4096 + 64], answer[512] = "";
		int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n%s\r\n\r\n", paths[i],
				 header);
		ck_assert_int_eq(write(fd, req, (size_t)n), n);
		ssize_t got = read(fd, answer, sizeof(answer) - 1);
		answer[got > 0 ? got : 0] = '\0';
		ck_assert_msg(strncmp(answer, "HTTP/1.1 400", 12) == 0, "%s: %s", paths[i], answer);
		close(fd);
	}
	/* A connection that sends nothing is closed after http_timeout_ms (1 s here). */
	for (int i = 0; i < 2; i++) {
		int fd = tcp_to(ports[i]);
		struct timeval tv = {.tv_sec = 5};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		char b;
		ck_assert_int_eq(recv(fd, &b, 1, 0), 0);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
		ck_assert_msg(ms >= 900 && ms < 4000, "%s: closed after %ld ms", paths[i], ms);
		close(fd);
	}
	/* the server trades on */
	order(&buyer, 1, GRIDEX__V1__SIDE__BUY, 2600000, 1);
}
END_TEST

/* The status of the answer that arrives on fd within ms milliseconds; 0: none came. */
static int answer_within(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, ms) != 1)
		return 0;
	char b[64] = "";
	ssize_t n = read(fd, b, sizeof(b) - 1);
	ck_assert_msg(n >= 12 && strncmp(b, "HTTP/1.", 7) == 0, "not an answer: %s", b);
	return atoi(b + 9);
}

/* A metric of the server's, waited for (5 s) to reach want. */
static void wait_metric(const char *name, double want)
{
	double v = -1;
	for (int i = 0; i < 500; i++) {
		int status;
		v = tmetric(thttp_get(srv.metrics_port, "/metrics", &status), name);
		ck_assert_int_eq(status, 200);
		if (v == want)
			return;
		struct timespec ts = {.tv_nsec = 10000000};
		nanosleep(&ts, NULL);
	}
	ck_abort_msg("%s is %g, not %g", name, v, want);
}

START_TEST(an_http_port_holds_at_most_http_connections_max)
{
	static const char *const cap_args[] = {"--http-listen=127.0.0.1:0",
					       "--http-connections-max=4",
					       "--http-evict-after-ms=0", NULL};
	const char *gauge = "gridex_http_connections{port=\"http_listen\"}";
	memset(&srv, 0, sizeof(srv));
	pgtest_setup_dir(GRIDEX_TEST_MIGRATIONS);
	tserver_start(&srv, cap_args);
	/* Four connections that send nothing fill the API's port. */
	int idle[4];
	for (int i = 0; i < 4; i++)
		idle[i] = tcp_to(srv.http_port);
	wait_metric(gauge, 4);
	/* A fifth gets through the kernel's backlog but is not served while they are open. */
	int fifth = tcp_to(srv.http_port);
	const char req[] = "GET /api/v1/products HTTP/1.0\r\n\r\n";
	ck_assert_int_eq(write(fifth, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	ck_assert_int_eq(answer_within(fifth, 700), 0);
	/* /metrics is a port of its own: it answers meanwhile, and tells. */
	int status;
	const char *m = thttp_get(srv.metrics_port, "/metrics", &status);
	ck_assert_int_eq(status, 200);
	ck_assert_msg(tmetric(m, gauge) == 4, "%s", m);
	ck_assert_msg(tmetric(m, "gridex_http_port_full_total{port=\"http_listen\"}") >= 1, "%s",
		      m);
	ck_assert_msg(tmetric(m, "gridex_http_port_full_total{port=\"metrics_listen\"}") == 0, "%s",
		      m);
	/* One closes: the fifth is served. */
	close(idle[0]);
	ck_assert_int_eq(answer_within(fifth, 5000), 200);
	close(fifth);
	/* Closed connections are not counted: one after another, many more are served. */
	for (int i = 0; i < 20; i++) {
		thttp_get(srv.http_port, "/api/v1/products", &status);
		ck_assert_int_eq(status, 200);
	}
	for (int i = 1; i < 4; i++)
		close(idle[i]);
	wait_metric(gauge, 0);
	ck_assert_int_eq(tserver_stop(&srv), 0);
	pgtest_teardown();
}
END_TEST

/* A plain TCP connection to 127.0.0.1:port from 127.0.0.<from>. */
static int tcp_from(int port, int from)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK - 1 + (uint32_t)from);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* Whether fd ends (end of stream or reset) within 5 s with no answer. */
static bool closed_unanswered(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, 5000) != 1)
		return false;
	char b[64];
	return read(fd, b, sizeof(b)) <= 0;
}

START_TEST(an_address_holds_at_most_http_connections_per_ip_max)
{
	static const char *const cap_args[] = {"--http-listen=127.0.0.1:0",
					       "--http-connections-max=8",
					       "--http-connections-per-ip-max=2", NULL};
	const char *gauge = "gridex_http_connections{port=\"http_listen\"}";
	const char req[] = "GET /api/v1/products HTTP/1.0\r\n\r\n";
	memset(&srv, 0, sizeof(srv));
	pgtest_setup_dir(GRIDEX_TEST_MIGRATIONS);
	tserver_start(&srv, cap_args);
	int idle[2] = {tcp_from(srv.http_port, 2), tcp_from(srv.http_port, 2)};
	wait_metric(gauge, 2);
	/* A third from 127.0.0.2 is closed unserved... */
	int third = tcp_from(srv.http_port, 2);
	ck_assert_int_eq(write(third, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	ck_assert(closed_unanswered(third));
	close(third);
	/* ...while another address is served. */
	int other = tcp_from(srv.http_port, 3);
	ck_assert_int_eq(write(other, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	ck_assert_int_eq(answer_within(other, 5000), 200);
	close(other);
	int status;
	const char *m = thttp_get(srv.metrics_port, "/metrics", &status);
	ck_assert_msg(tmetric(m, "gridex_http_connections_refused_total{port=\"http_listen\"}") ==
			      1,
		      "%s", m);
	/* Once one of its connections has closed, 127.0.0.2 is served again (no scrape of
	 * /metrics in between to have looked: the count is mended when the address is at
	 * its limit). */
	ck_assert_int_eq(shutdown(idle[0], SHUT_WR), 0);
	ck_assert(closed_unanswered(idle[0])); /* the server has closed its end */
	close(idle[0]);
	int again = tcp_from(srv.http_port, 2);
	ck_assert_int_eq(write(again, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	ck_assert_int_eq(answer_within(again, 5000), 200);
	close(again);
	close(idle[1]);
	/* Once all have closed, 127.0.0.2 holds two at once again: none of the connections
	 * above is left counted. (The one accepted while its address's count was being
	 * mended, "again", was once never uncounted: each such connection lowered its
	 * address's limit for good.) */
	wait_metric(gauge, 0);
	int two[2] = {tcp_from(srv.http_port, 2), tcp_from(srv.http_port, 2)};
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(write(two[i], req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
		ck_assert_msg(answer_within(two[i], 5000) == 200, "connection %d of two", i);
		close(two[i]);
	}
	m = thttp_get(srv.metrics_port, "/metrics", &status);
	ck_assert_msg(tmetric(m, "gridex_http_connections_refused_total{port=\"http_listen\"}") ==
			      1,
		      "%s", m);
	ck_assert_int_eq(tserver_stop(&srv), 0);
	pgtest_teardown();
}
END_TEST

/* One request from 127.0.0.<from> on a connection of its own: the answer's status. */
static int status_from(int from)
{
	const char req[] = "GET /api/v1/products HTTP/1.0\r\n\r\n";
	int fd = tcp_from(srv.http_port, from);
	ck_assert_int_eq(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	char b[512] = "";
	size_t n = 0;
	ssize_t k;
	while (n < sizeof(b) - 1 && (k = read(fd, b + n, sizeof(b) - 1 - n)) > 0)
		n += (size_t)k;
	close(fd);
	ck_assert_msg(strncmp(b, "HTTP/1.", 7) == 0, "not an answer: %s", b);
	if (atoi(b + 9) == 429)
		ck_assert_msg(strstr(b, "Retry-After: 1") != NULL, "%s", b);
	return atoi(b + 9);
}

START_TEST(an_address_asks_at_most_http_requests_per_ip_per_second)
{
	/* One request a second, a burst of two; room for 4 addresses (4 x connections). */
	static const char *const cap_args[] = {
		"--http-listen=127.0.0.1:0", "--http-connections-max=1",
		"--http-requests-per-ip-per-second=1", "--http-requests-per-ip-burst=2", NULL};
	memset(&srv, 0, sizeof(srv));
	pgtest_setup_dir(GRIDEX_TEST_MIGRATIONS);
	tserver_start(&srv, cap_args);
	/* The burst, then 429 (each on a connection of its own: the bucket is the
	 * address's, not a connection's), while another address is served. */
	ck_assert_int_eq(status_from(2), 200);
	ck_assert_int_eq(status_from(2), 200);
	ck_assert_int_eq(status_from(2), 429);
	ck_assert_int_eq(status_from(3), 200);
	/* A second later 127.0.0.2 has earned one more, and 127.0.0.3's bucket is full. */
	struct timespec wait = {.tv_sec = 1, .tv_nsec = 100000000};
	nanosleep(&wait, NULL);
	ck_assert_int_eq(status_from(2), 200);
	/* Addresses 4 and 5 fill the table; 6 takes the place of 3, whose bucket is full
	 * (it is forgotten); 7 finds no room and is refused, the orders' thread first. */
	for (int from = 4; from <= 6; from++)
		ck_assert_int_eq(status_from(from), 200);
	ck_assert_int_eq(status_from(7), 429);
	/* /metrics is not limited: wait_metric scrapes it as often as it likes. */
	wait_metric("gridex_http_requests_refused_total", 2);
	ck_assert_int_eq(tserver_stop(&srv), 0);
	pgtest_teardown();
}
END_TEST

START_TEST(a_full_http_port_closes_its_oldest_connection_for_a_newcomer)
{
	static const char *const cap_args[] = {"--http-listen=127.0.0.1:0",
					       "--http-connections-max=4",
					       "--http-evict-after-ms=3000", NULL};
	memset(&srv, 0, sizeof(srv));
	pgtest_setup_dir(GRIDEX_TEST_MIGRATIONS);
	tserver_start(&srv, cap_args);
	/* One connection, then three more 2 s later: all idle, the port full. */
	int idle[4];
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	idle[0] = tcp_to(srv.http_port);
	wait_metric("gridex_http_connections{port=\"http_listen\"}", 1);
	struct timespec two = {.tv_sec = 2};
	nanosleep(&two, NULL);
	for (int i = 1; i < 4; i++)
		idle[i] = tcp_to(srv.http_port);
	wait_metric("gridex_http_connections{port=\"http_listen\"}", 4);
	/* A newcomer waits while every connection is younger than 3 s; then the oldest is
	 * closed for it, and the others, younger still, stay. */
	int fifth = tcp_to(srv.http_port);
	const char req[] = "GET /api/v1/products HTTP/1.0\r\n\r\n";
	ck_assert_int_eq(write(fifth, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long left = 2800 - ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
	if (left > 0)
		ck_assert_int_eq(answer_within(fifth, (int)left), 0);
	ck_assert_int_eq(answer_within(fifth, 5000), 200);
	ck_assert(closed_unanswered(idle[0]));
	for (int i = 1; i < 4; i++) {
		struct pollfd p = {.fd = idle[i], .events = POLLIN};
		ck_assert_msg(poll(&p, 1, 0) == 0, "connection %d closed too", i);
	}
	int status;
	const char *m = thttp_get(srv.metrics_port, "/metrics", &status);
	ck_assert_msg(tmetric(m, "gridex_http_connections_evicted_total{port=\"http_listen\"}") ==
			      1,
		      "%s", m);
	/* Full again with nobody waiting: old connections are left alone. */
	close(fifth);
	close(idle[0]);
	idle[0] = tcp_to(srv.http_port);
	wait_metric("gridex_http_connections{port=\"http_listen\"}", 4);
	struct timespec later = {.tv_sec = 4};
	nanosleep(&later, NULL); /* the three of 2 s are over 3 s old now */
	for (int i = 0; i < 4; i++) {
		struct pollfd p = {.fd = idle[i], .events = POLLIN};
		ck_assert_msg(poll(&p, 1, 0) == 0, "connection %d closed with nobody waiting", i);
	}
	for (int i = 0; i < 4; i++)
		close(idle[i]);
	ck_assert_int_eq(tserver_stop(&srv), 0);
	pgtest_teardown();
}
END_TEST

#define TOKEN	      "op-token-0123456789abcdef"
#define METRICS_TOKEN "metrics-token-0123456789"

static void setup_operator(void)
{
	static char auditor[1100];
	static const char *op_args[] = {
		"--http-listen=127.0.0.1:0",	"--http-operator-token=" TOKEN,	  auditor,
		"--http-ledger-refresh-ms=500", "--metrics-token=" METRICS_TOKEN, NULL};
	pgtest_setup_dir(GRIDEX_TEST_MIGRATIONS);
	snprintf(auditor, sizeof(auditor), "--http-auditor-database-url=%s", pgt.auditor_url);
	start(op_args);
}

static json_t *get_operator(const char *path, const char *token, int *status)
{
	char header[128];
	snprintf(header, sizeof(header), "Authorization: Bearer %s", token);
	const char *resp = thttp_get_with(srv.http_port, path, token ? header : NULL, status);
	json_t *j = json_loads(thttp_body(resp), 0, NULL);
	ck_assert_msg(json_is_object(j), "%s: %s", path, resp);
	return j;
}

START_TEST(operator_endpoints_need_the_token_and_read_the_ledger)
{
	int status;
	/* /metrics with metrics_token set: only with that token (not the operator's). */
	const char *m = thttp_get(srv.metrics_port, "/metrics", &status);
	ck_assert_int_eq(status, 401);
	ck_assert_ptr_null(strstr(m, "gridex_connections"));
	thttp_get_with(srv.metrics_port, "/metrics", "Authorization: Bearer " TOKEN, &status);
	ck_assert_int_eq(status, 401);
	m = thttp_get_with(srv.metrics_port, "/metrics", "Authorization: Bearer " METRICS_TOKEN,
			   &status);
	ck_assert_int_eq(status, 200);
	ck_assert_ptr_nonnull(strstr(m, "gridex_connections "));
	json_t *j = get_operator("/api/v1/operator/status", NULL, &status);
	ck_assert_int_eq(status, 401);
	json_decref(j);
	j = get_operator("/api/v1/operator/status", "op-token-0123456789abcdeX", &status);
	ck_assert_int_eq(status, 401);
	json_decref(j);
	j = get_operator("/api/v1/operator/ledger", "short", &status);
	ck_assert_int_eq(status, 401);
	json_decref(j);
	j = get_operator("/api/v1/operator/status?x=1", TOKEN, &status);
	ck_assert_int_eq(status, 400);
	json_decref(j);
	j = get_operator("/api/v1/operator/status", TOKEN, &status);
	ck_assert_int_eq(status, 200);
	ck_assert(json_is_false(json_object_get(j, "leases_on")));
	ck_assert_int_gt(num(j, "sequence"), 0);
	ck_assert(json_is_object(json_object_get(j, "settlement")));
	ck_assert(json_is_false(json_object_get(json_object_get(j, "settlement"), "halted")));
	json_decref(j);
	/* a fill of 2 GPUs at 2.50: 5.00 in escrow, the buyer's 1000 less it, BANK -1000 */
	order(&seller, 1, GRIDEX__V1__SIDE__SELL, 2500000, 2);
	order(&buyer, 1, GRIDEX__V1__SIDE__BUY, 2500000, 2);
	json_t *usd = NULL;
	for (int i = 0; i < 300; i++) {
		j = get_operator("/api/v1/operator/ledger", TOKEN, &status);
		ck_assert_int_eq(status, 200);
		usd = json_object_get(json_object_get(j, "currencies"), "USD");
		json_t *esc = json_object_get(json_object_get(usd, "kinds"), "ESCROW");
		if (esc && num(esc, "balance") == 5000000)
			break;
		json_decref(j);
		j = NULL;
		struct timespec ts = {.tv_nsec = 20000000};
		nanosleep(&ts, NULL);
	}
	ck_assert_msg(j != NULL, "the trial balance never showed the fill");
	json_t *kinds = json_object_get(usd, "kinds");
	ck_assert_int_eq(num(json_object_get(kinds, "AVAILABLE"), "balance"), 1000000000 - 5000000);
	ck_assert_int_eq(num(json_object_get(kinds, "BANK"), "balance"), -1000000000);
	ck_assert(json_is_true(json_object_get(usd, "balanced")));
	json_t *parts = json_object_get(j, "participants");
	ck_assert_uint_eq(json_array_size(parts), 2);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(parts, 0), "name")),
			 "buyer");
	ck_assert_int_eq(num(json_array_get(parts, 0), "available"), 1000000000 - 5000000);
	ck_assert_int_ge(num(json_object_get(j, "batches"), "count"), 1);
	ck_assert_int_gt(num(j, "as_of_ms"), 0);
	json_decref(j);
}
END_TEST

START_TEST(the_api_over_tls)
{
	static const char *const tls_args[] = {
		"--http-listen=127.0.0.1:0", "--http-tls=1",
		"--metrics-tls=1",	     "--metrics-token=" METRICS_TOKEN,
		"--http-connections-max=2",  NULL};
	memset(&srv, 0, sizeof(srv));
	pgtest_setup_dir(GRIDEX_TEST_MIGRATIONS);
	tserver_start(&srv, tls_args);
	int status;
	const char *r;
	/* TLS connections that closed are not counted either (at most 2 open here). */
	for (int i = 0; i < 6; i++) {
		r = thttps_get(&srv, srv.http_port, "/api/v1/products", NULL, &status);
		ck_assert_msg(status == 200, "%s", r);
		ck_assert_msg(strstr(thttp_body(r), "\"products\":[]") != NULL, "%s", r);
	}
	/* /metrics over TLS, its token still required. */
	r = thttps_get(&srv, srv.metrics_port, "/metrics", NULL, &status);
	ck_assert_msg(status == 401, "%s", r);
	r = thttps_get(&srv, srv.metrics_port, "/metrics", "Authorization: Bearer " METRICS_TOKEN,
		       &status);
	ck_assert_msg(status == 200, "%s", r);
	ck_assert_ptr_nonnull(strstr(thttp_body(r), "gridex_connections "));
	/* plain HTTP gets no answer from either TLS port */
	const int ports[] = {srv.http_port, srv.metrics_port};
	for (int i = 0; i < 2; i++) {
		int fd = tcp_to(ports[i]);
		const char plain[] = "GET /metrics HTTP/1.0\r\n\r\n";
		ck_assert_int_eq(write(fd, plain, sizeof(plain) - 1), (ssize_t)sizeof(plain) - 1);
		char buf[256] = "";
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		ck_assert_msg(n <= 0 || strncmp(buf, "HTTP/1.", 7) != 0, "plain HTTP answered: %s",
			      buf);
	}
	ck_assert_int_eq(tserver_stop(&srv), 0);
	pgtest_teardown();
}
END_TEST

/* ---------- trades kept across restarts ---------- */

static size_t listed(const char *name, bool *there);

/* What the API says of the trades: the class's trades, each product's, the class's
 * candles, and the products' last prices and volumes (one JSON object). */
static json_t *history(const char *p1, const char *p2)
{
	json_t *h = json_pack("{s:o, s:o, s:o, s:o}", "class",
			      get_ok("/api/v1/trades?accelerator=H100-80G"), "candles",
			      get_ok("/api/v1/candles?accelerator=H100-80G&interval_ms=60000"),
			      "p1", get_ok(cat("/api/v1/trades?product=", p1, "")), "p2",
			      get_ok(cat("/api/v1/trades?product=", p2, "")));
	json_t *products = get_ok("/api/v1/products"), *prices = json_array();
	json_t *list = json_object_get(products, "products");
	for (size_t i = 0; i < json_array_size(list); i++) {
		json_t *p = json_array_get(list, i);
		json_array_append_new(prices, json_pack("{s:O, s:O, s:O}", "product",
							json_object_get(p, "product"), "last_price",
							json_object_get(p, "last_price"), "volume",
							json_object_get(p, "volume")));
	}
	json_decref(products);
	json_object_set_new(h, "prices", prices);
	return h;
}

/* Waits until the API has seen n trades of the class. */
static void wait_trades(size_t n)
{
	for (int i = 0; i < 500; i++) {
		json_t *j = get_ok("/api/v1/trades?accelerator=H100-80G");
		size_t got = json_array_size(json_object_get(j, "trades"));
		json_decref(j);
		if (got == n)
			return;
		struct timespec ts = {.tv_nsec = 10000000};
		nanosleep(&ts, NULL);
	}
	ck_abort_msg("the API never showed %zu trades", n);
}

static int64_t ledger_fills(void)
{
	PGconn *c = pgtest_connect(pgt.owner_url);
	int64_t n = pgtest_sql_int(c, "select count(*) from ledger.fills");
	PQfinish(c);
	return n;
}

/* Waits (5 s) until settlement has put n fills in ledger.fills, and no more. */
static void wait_ledger_fills(int64_t n)
{
	for (int i = 0; i < 500 && ledger_fills() < n; i++) {
		struct timespec ts = {.tv_nsec = 10000000};
		nanosleep(&ts, NULL);
	}
	ck_assert_int_eq(ledger_fills(), n);
}

/* Closes the clients and stops gridexd: SIGTERM (which must exit 0), or SIGKILL. */
static void stop_server(bool clean)
{
	tclient_close(&op);
	tclient_close(&buyer);
	tclient_close(&seller);
	if (clean) {
		ck_assert_int_eq(tserver_stop(&srv), 0);
	} else {
		kill(srv.pid, SIGKILL);
		int status;
		waitpid(srv.pid, &status, 0);
		srv.pid = 0;
	}
}

/* A fill of qty GPUs of p at price, the seller taking the buyer's resting bid. */
static void fill(const char *p, uint64_t coid, int64_t price, int64_t qty)
{
	ck_assert_int_eq(tclient_answer(&buyer, tclient_order(&buyer, coid, p,
							      GRIDEX__V1__SIDE__BUY, price, qty)),
			 0);
	ck_assert_int_eq(tclient_answer(&seller, tclient_order(&seller, coid, p,
							       GRIDEX__V1__SIDE__SELL, price, qty)),
			 0);
}

/* The trades kept, their candles, last prices and volumes come back after a restart:
 * from the ledger once settled; from the journal for fills the ledger does not have
 * yet (the server killed while another session held the writer lock); and, after a
 * start without the journal (no books), as trades of products that have no book, with
 * no sequence, in their class's answers only. */
START_TEST(trades_kept_survive_restarts)
{
	char p2[64];
	tproduct(p2, sizeof(p2), "H100-80G", 3);
	fill(product, 1, 2500000, 2);
	fill(product, 2, 2600000, 1);
	fill(p2, 3, 2400000, 3);
	fill(product, 4, 2700000, 1);
	wait_trades(4);
	json_t *before = history(product, p2);
	wait_ledger_fills(4);
	stop_server(true);
	tserver_start(&srv, args);
	tclient_reconnect(&srv, &op, &buyer, &seller);
	json_t *after = history(product, p2);
	ck_assert_msg(json_equal(before, after), "before %s\nafter %s",
		      json_dumps(before, JSON_COMPACT), json_dumps(after, JSON_COMPACT));
	ck_assert_ptr_nonnull(tserver_log_line(&srv, "trades=4 unsettled=0 from_ledger=4"));
	json_decref(before);
	json_decref(after);
	/* Two more fills that the ledger cannot take: another session holds the writer
	 * lock (gridexd's sessions ended first), and gridexd is killed. */
	PGconn *other = pgtest_writer_lock_take();
	fill(p2, 5, 2450000, 1);
	fill(product, 6, 2800000, 2);
	wait_trades(6);
	before = history(product, p2);
	stop_server(false);
	ck_assert_int_eq(ledger_fills(), 4);
	pgtest_writer_lock_release(other);
	PQfinish(other);
	tserver_start(&srv, args);
	tclient_reconnect(&srv, &op, &buyer, &seller);
	after = history(product, p2);
	ck_assert_msg(json_equal(before, after), "before %s\nafter %s",
		      json_dumps(before, JSON_COMPACT), json_dumps(after, JSON_COMPACT));
	ck_assert_ptr_nonnull(tserver_log_line(&srv, "trades=6 unsettled=2 from_ledger=4"));
	json_decref(after);
	/* Without the journal: the same trades, candles and prices of the class, but no
	 * book, so no product answers and no sequences. */
	wait_ledger_fills(6);
	stop_server(true);
	tserver_forget_journal(&srv);
	tserver_start(&srv, args);
	tclient_reconnect(&srv, &op, &buyer, &seller);
	json_t *trades = get_ok("/api/v1/trades?accelerator=H100-80G");
	json_t *was = json_object_get(before, "class");
	ck_assert_uint_eq(json_array_size(json_object_get(trades, "trades")), 6);
	for (size_t i = 0; i < 6; i++) {
		json_t *t = json_array_get(json_object_get(trades, "trades"), i);
		json_t *w = json_deep_copy(json_array_get(json_object_get(was, "trades"), i));
		ck_assert(json_is_null(json_object_get(t, "sequence")));
		json_object_set_new(w, "sequence", json_null());
		ck_assert_msg(json_equal(t, w), "%s", json_dumps(t, JSON_COMPACT));
		json_decref(w);
	}
	json_decref(trades);
	json_t *candles = get_ok("/api/v1/candles?accelerator=H100-80G&interval_ms=60000");
	ck_assert(json_equal(candles, json_object_get(before, "candles")));
	json_decref(candles);
	refused(cat("/api/v1/trades?product=", product, ""), 404);
	bool there;
	ck_assert_uint_eq(listed(product, &there), 0);
	json_decref(before);
}
END_TEST

static const char *const retire_args[] = {"--http-listen=127.0.0.1:0", "--books-max=4",
					  "--book-retain-ms=1", NULL};

static void setup_retire(void)
{
	pgtest_setup_dir(GRIDEX_TEST_MIGRATIONS);
	start(retire_args);
}

/* How many products the API lists, and whether name is one of them. */
static size_t listed(const char *name, bool *there)
{
	json_t *j = get_ok("/api/v1/products");
	json_t *list = json_object_get(j, "products");
	size_t n = json_array_size(list);
	*there = false;
	for (size_t i = 0; i < n; i++)
		*there |= strcmp(json_string_value(
					 json_object_get(json_array_get(list, i), "product")),
				 name) == 0;
	json_decref(j);
	return n;
}

/* Books of past hours are retired, in the engine and in the API, and their room serves
 * new hours: four books at most, and ten past hours halted one after the other. */
START_TEST(past_books_are_retired_and_their_room_reused)
{
	order(&buyer, 1, GRIDEX__V1__SIDE__BUY, 2500000, 2);
	order(&seller, 2, GRIDEX__V1__SIDE__SELL, 2500000, 1);
	wait_metric("gridex_books", 1);
	/* An hour beyond product_horizon_ms (31 days by default) makes no book. */
	char far[64];
	tproduct(far, sizeof(far), "H100-80G", 32 * 24);
	ck_assert_int_eq(tclient_answer(&buyer, tclient_order(&buyer, 3, far, GRIDEX__V1__SIDE__BUY,
							      1000000, 1)),
			 GRIDEX__V1__REJECT_REASON__UNKNOWN_PRODUCT);
	char past[64];
	bool there;
	for (int h = 1; h <= 10; h++) {
		tproduct(past, sizeof(past), "H100-80G", -h);
		ck_assert_int_eq(tclient_operator(&op, GRIDEX__V1__REQUEST_TYPE__HALT, 0, past, 0,
						  NULL, NULL),
				 0);
		wait_metric("gridex_books", 1);
	}
	/* The API forgot them too (its copy follows a moment later), and kept the trade. */
	for (int i = 0; i < 500 && (listed(past, &there) != 1 || there); i++) {
		struct timespec ts = {.tv_nsec = 10000000};
		nanosleep(&ts, NULL);
	}
	ck_assert_uint_eq(listed(product, &there), 1);
	ck_assert(there);
	refused(cat("/api/v1/book?product=", past, ""), 404);
	json_t *j = get_ok("/api/v1/trades?accelerator=H100-80G");
	ck_assert_uint_eq(json_array_size(json_object_get(j, "trades")), 1);
	json_decref(j);
	/* Three more hours ahead fill the four books; the open product stays. */
	char next[64];
	for (int h = 3; h <= 5; h++) {
		tproduct(next, sizeof(next), "H100-80G", h);
		ck_assert_int_eq(
			tclient_answer(&buyer, tclient_order(&buyer, 10 + (uint64_t)h, next,
							     GRIDEX__V1__SIDE__BUY, 1000000, 1)),
			0);
	}
	wait_metric("gridex_books", 4);
	order(&buyer, 20, GRIDEX__V1__SIDE__BUY, 2400000, 1);
	/* The same after a restart from the snapshot of the clean stop, and after one that
	 * replays the whole journal (no snapshot): retirement replays as it happened. */
	for (int restart = 0; restart < 2; restart++) {
		tclient_close(&op);
		tclient_close(&buyer);
		tclient_close(&seller);
		ck_assert_int_eq(tserver_stop(&srv), 0);
		if (restart == 1) {
			char cmd[512];
			snprintf(cmd, sizeof(cmd), "rm -f %s/journal/snapshot-*", srv.dir);
			ck_assert_int_eq(system(cmd), 0);
		}
		tserver_start(&srv, retire_args);
		tclient_reconnect(&srv, &op, &buyer, &seller);
		wait_metric("gridex_books", 4);
		ck_assert_uint_eq(listed(product, &there), 4);
		ck_assert(there);
		refused(cat("/api/v1/book?product=", past, ""), 404);
		order(&buyer, 21 + (uint64_t)restart, GRIDEX__V1__SIDE__BUY, 2300000, 1);
	}
}
END_TEST

/*
 * The API answers on a thread of its own: an answer that takes long holds up the API,
 * not the orders. The console's files are read on that thread, and opening a FIFO
 * blocks until someone opens it for writing: a file that takes as long as the test
 * likes to read.
 */
static char slow_dir[64], slow_fifo[96];

static void setup_slow_with(const char *more)
{
	static char console[96];
	static const char *slow_args[] = {"--http-listen=127.0.0.1:0", console, NULL, NULL};
	slow_args[2] = more;
	snprintf(slow_dir, sizeof(slow_dir), "/tmp/gridex-slow.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(slow_dir));
	snprintf(slow_fifo, sizeof(slow_fifo), "%s/slow.js", slow_dir);
	ck_assert_int_eq(mkfifo(slow_fifo, 0600), 0);
	snprintf(console, sizeof(console), "--http-console-dir=%s", slow_dir);
	pgtest_setup_dir(GRIDEX_TEST_MIGRATIONS);
	start(slow_args);
}

static void setup_slow(void)
{
	setup_slow_with(NULL);
}

static void setup_slow_small_queue(void)
{
	setup_slow_with("--http-market-queue-max=16");
}

static void teardown_slow(void)
{
	/* A failed test may leave the API's thread in the file's open(): gridexd could not
	 * stop. */
	int w = open(slow_fifo, O_WRONLY | O_NONBLOCK);
	if (w >= 0)
		close(w);
	teardown();
	unlink(slow_fifo);
	rmdir(slow_dir);
}

/* A request on a connection of its own, sent and left to be answered. */
static int ask(const char *path)
{
	char req[128];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
	int fd = tcp_to(srv.http_port);
	ck_assert_int_eq(write(fd, req, (size_t)n), n);
	return fd;
}

/* Asks for the slow file, and returns a request that waits behind it: asked until one
 * goes 300 ms unanswered (those answered came before the API's thread was in open()). */
static int stall_api(int *slow)
{
	*slow = ask("/slow.js");
	for (int i = 0; i < 50; i++) {
		int fd = ask("/api/v1/products");
		if (answer_within(fd, 300) == 0)
			return fd;
		close(fd);
	}
	ck_abort_msg("the API never waited for the slow file");
	return -1;
}

/* The nice value of gridexd's thread named name, or of its main thread when name is NULL
 * (its name is valgrind's under valgrind); -100: none such. */
static int thread_nice(const char *name)
{
	char path[300], line[512];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)srv.pid);
	DIR *d = opendir(path);
	ck_assert_ptr_nonnull(d);
	int nice = -100;
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		snprintf(path, sizeof(path), "/proc/%d/task/%s/stat", (int)srv.pid, e->d_name);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		size_t n = fread(line, 1, sizeof(line) - 1, f);
		fclose(f);
		line[n] = '\0';
		/* pid (comm) state ppid ... : nice is the 19th field, the 17th after comm */
		char *comm = strchr(line, '('), *end = strrchr(line, ')');
		if (comm == NULL || end == NULL ||
		    (name == NULL && atoi(e->d_name) != (int)srv.pid) ||
		    (name && (strncmp(comm + 1, name, (size_t)(end - comm - 1)) != 0 ||
			      strlen(name) != (size_t)(end - comm - 1))))
			continue;
		char *p = end + 2;
		for (int field = 3; field < 19 && p; field++)
			p = strchr(p, ' ') ? strchr(p, ' ') + 1 : NULL;
		ck_assert_ptr_nonnull(p);
		nice = atoi(p);
	}
	closedir(d);
	return nice;
}

/* Lets the API's thread's open() of the slow file return: opens the FIFO for writing,
 * which succeeds once that open() waits for a writer (ENXIO before: tried for 10 s). */
static void open_slow_file(void)
{
	int w = -1;
	for (int i = 0; i < 1000 && w < 0; i++) {
		w = open(slow_fifo, O_WRONLY | O_NONBLOCK);
		if (w < 0) {
			ck_assert_int_eq(errno, ENXIO);
			struct timespec ts = {.tv_nsec = 10000000};
			nanosleep(&ts, NULL);
		}
	}
	ck_assert_msg(w >= 0, "the API's thread never opened the slow file");
	close(w);
}

START_TEST(a_slow_answer_holds_up_the_api_not_the_orders)
{
	/* The API's thread runs http_thread_nice (10) nicer than the rest. */
	int base = thread_nice(NULL);
	ck_assert_int_gt(base, -100);
	ck_assert_int_eq(thread_nice("gx-http"), base + 10 > 19 ? 19 : base + 10);
	ck_assert_int_eq(thread_nice("gx-core"), base);
	int slow, waiting = stall_api(&slow);
	/* Meanwhile orders are answered, and they trade. */
	order(&seller, 1, GRIDEX__V1__SIDE__SELL, 2600000, 3);
	order(&buyer, 1, GRIDEX__V1__SIDE__BUY, 2600000, 2);
	/* The file opened (and found to be no file): the API answers both, then again, with
	 * the trade made while it waited. */
	open_slow_file();
	ck_assert_int_eq(answer_within(slow, 5000), 404);
	ck_assert_int_eq(answer_within(waiting, 5000), 200);
	close(slow);
	close(waiting);
	json_t *j = get_ok(cat("/api/v1/trades?product=", product, ""));
	ck_assert_uint_eq(json_array_size(json_object_get(j, "trades")), 1);
	ck_assert_int_eq(num(json_array_get(json_object_get(j, "trades"), 0), "quantity"), 2);
	json_decref(j);
}
END_TEST

/* With http_market_queue_max items waiting for the API's thread, the I/O thread waits
 * for it: nothing is lost. */
START_TEST(market_data_waits_for_a_stalled_api_and_none_is_lost)
{
	int slow, waiting = stall_api(&slow);
	/* 20 trades and their levels: more than the 16 the queue holds. Sent without waiting
	 * for their answers, which come once the API's thread takes from the queue. Each
	 * bid is at the highest ask's price: whatever order the two connections' requests
	 * arrive in, every order trades. */
	uint64_t sells[20], buys[20];
	for (int i = 0; i < 20; i++) {
		sells[i] = tclient_order(&seller, 100 + (uint64_t)i, product,
					 GRIDEX__V1__SIDE__SELL, 2600000 + i * 10000, 1);
		buys[i] = tclient_order(&buyer, 100 + (uint64_t)i, product, GRIDEX__V1__SIDE__BUY,
					2790000, 1);
	}
	struct timespec ts = {.tv_nsec = 300000000};
	nanosleep(&ts, NULL);
	open_slow_file();
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(tclient_answer(&seller, sells[i]), 0);
		ck_assert_int_eq(tclient_answer(&buyer, buys[i]), 0);
	}
	ck_assert_int_eq(answer_within(slow, 5000), 404);
	ck_assert_int_eq(answer_within(waiting, 5000), 200);
	close(slow);
	close(waiting);
	json_t *j = get_ok(cat("/api/v1/trades?product=", product, ""));
	json_t *tr = json_object_get(j, "trades");
	ck_assert_uint_eq(json_array_size(tr), 20);
	int64_t sequence = INT64_MAX;
	for (size_t i = 0; i < 20; i++) { /* newest first */
		ck_assert_int_lt(num(json_array_get(tr, i), "sequence"), sequence);
		sequence = num(json_array_get(tr, i), "sequence");
		ck_assert_int_eq(num(json_array_get(tr, i), "quantity"), 1);
	}
	json_decref(j);
	j = get_ok(cat("/api/v1/book?product=", product, ""));
	ck_assert_uint_eq(json_array_size(json_object_get(j, "bids")), 0);
	ck_assert_uint_eq(json_array_size(json_object_get(j, "asks")), 0);
	json_decref(j);
}
END_TEST

/* A case of s (its fixture, when set_up is given), for its tests to be added to. */
/* ---------- price history from the ledger ---------- */

static char history_url[1100];
static const char *history_args[] = {"--http-listen=127.0.0.1:0",
				     history_url,
				     NULL, /* http_history_timeout_ms: setup_history() */
				     "--http-history-queue-max=2",
				     "--http-history-per-ip-max=3",
				     NULL,
				     NULL};

static void setup_history(void)
{
	pgtest_setup_dir(GRIDEX_TEST_MIGRATIONS);
	snprintf(history_url, sizeof(history_url), "--http-history-database-url=%s",
		 pgt.auditor_url);
	history_args[2] = "--http-history-timeout-ms=60000"; /* no timeout meets a test */
	history_args[5] = NULL;
	start(history_args);
}

/* A request on a connection of its own, its answer left to read. */
static int send_get(const char *path)
{
	int fd = tcp_to(srv.http_port);
	char req[600];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
	ck_assert_int_eq(write(fd, req, (size_t)n), n);
	return fd;
}

/* The whole answer on fd (HTTP/1.0: until the server closes), within ms. */
static const char *read_answer(int fd, int ms)
{
	static char b[8192];
	size_t n = 0;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	while (n < sizeof(b) - 1 && poll(&p, 1, ms) == 1) {
		ssize_t got = read(fd, b + n, sizeof(b) - 1 - n);
		if (got <= 0)
			break;
		n += (size_t)got;
	}
	b[n] = '\0';
	close(fd);
	return b;
}

/* Whether an answer's status line is code's. */
static bool is_status(const char *answer, int code)
{
	char line[16];
	snprintf(line, sizeof(line), " %d ", code);
	return strncmp(answer, "HTTP/1.", 7) == 0 && strncmp(answer + 8, line, 5) == 0;
}

/* The candles of an answer (the array itself: a new reference). */
static json_t *candles_of(json_t *answer)
{
	json_t *c = json_incref(json_object_get(answer, "candles"));
	ck_assert_msg(json_is_array(c), "%s", json_dumps(answer, JSON_COMPACT));
	json_decref(answer);
	return c;
}

/* /history's candles for a product or class (key=value) over [from, from + 1000 x iv). */
static json_t *ledger_candles_of(const char *what, int64_t from, int64_t iv)
{
	char path[300];
	snprintf(path, sizeof(path), "/api/v1/history?%s&interval_ms=%lld&from_ms=%lld&to_ms=%lld",
		 what, (long long)iv, (long long)from, (long long)(from + 1000 * iv));
	return candles_of(get_ok(path));
}

/* The API's candles from its trades kept, of the same. */
static json_t *kept_candles_of(const char *what, int64_t iv)
{
	char path[300];
	snprintf(path, sizeof(path), "/api/v1/candles?%s&interval_ms=%lld&limit=1000", what,
		 (long long)iv);
	return candles_of(get_ok(path));
}

/* /history/trades of what over [from, from + a day), page by page (limit trades each):
 * every trade, oldest first, without its id (checked to rise). */
static json_t *ledger_trades_of(const char *what, int64_t from, int limit)
{
	json_t *all = json_array();
	int64_t after = 0, last_id = 0;
	for (int pages = 0;; pages++) {
		ck_assert_int_lt(pages, 100);
		char path[300];
		snprintf(path, sizeof(path),
			 "/api/v1/history/trades?%s&from_ms=%lld&to_ms=%lld&limit=%d&after=%lld",
			 what, (long long)from, (long long)(from + 86400000), limit,
			 (long long)after);
		json_t *j = get_ok(path), *t = json_object_get(j, "trades");
		for (size_t i = 0; i < json_array_size(t); i++) {
			json_t *x = json_deep_copy(json_array_get(t, i));
			int64_t id = num(x, "id");
			ck_assert_int_gt(id, last_id);
			last_id = id;
			json_object_del(x, "id");
			json_array_append_new(all, x);
		}
		json_t *next = json_object_get(j, "next_after");
		bool more = !json_is_null(next);
		ck_assert_uint_eq(json_array_size(t) == (size_t)limit, more);
		if (more)
			after = (int64_t)json_integer_value(next);
		json_decref(j);
		if (!more)
			return all;
	}
}

/* The API's trades kept of what, oldest first, without their tape sequence. */
static json_t *kept_trades_of(const char *what)
{
	char path[300];
	snprintf(path, sizeof(path), "/api/v1/trades?%s&limit=1000", what);
	json_t *j = get_ok(path), *t = json_object_get(j, "trades"), *all = json_array();
	for (size_t i = json_array_size(t); i-- > 0;) {
		json_t *x = json_deep_copy(json_array_get(t, i));
		json_object_del(x, "sequence");
		json_array_append_new(all, x);
	}
	json_decref(j);
	return all;
}

/*
 * /history reads the candles of any range from ledger.fills: equal to the API's own
 * candles of its trades kept, for a class and each product, by the minute and by the
 * second; still all there after a restart that keeps one trade. Bad ranges are 400.
 * A ledger that holds the query up (a lock on ledger.fills) holds up no other answer;
 * the query ends at http_history_timeout_ms with 503, the same query asked meanwhile
 * gets the same answer without a second query, a third different one finds the queue
 * full (503), a fourth request of the address finds its limit (429), and a client gone
 * before its answer costs nothing. A session the database ended is replaced, and a
 * stop with a query held up is prompt.
 */
START_TEST(price_history_reads_the_ledger)
{
	int64_t from = (int64_t)time(NULL) * 1000 / 60000 * 60000 - 60000;
	char p2[64], w1[100], w2[100];
	tproduct(p2, sizeof(p2), "H100-80G", 3);
	fill(product, 1, 2500000, 2);
	fill(product, 2, 2600000, 1);
	fill(p2, 3, 2400000, 3);
	struct timespec pause = {.tv_nsec = 300000000}; /* the next trades a second later, or so */
	nanosleep(&pause, NULL);
	nanosleep(&pause, NULL);
	nanosleep(&pause, NULL);
	nanosleep(&pause, NULL);
	fill(product, 4, 2700000, 1);
	fill(p2, 5, 2450000, 4);
	wait_trades(5);
	wait_ledger_fills(5);
	snprintf(w1, sizeof(w1), "product=%s", product);
	snprintf(w2, sizeof(w2), "product=%s", p2);
	const char *const whats[] = {"accelerator=H100-80G", w1, w2};
	const int64_t ivs[] = {60000, 1000};
	json_t *before[6];
	for (int k = 0; k < 6; k++) {
		before[k] = ledger_candles_of(whats[k / 2], from, ivs[k % 2]);
		json_t *kept = kept_candles_of(whats[k / 2], ivs[k % 2]);
		ck_assert_msg(json_equal(before[k], kept), "%s by %lld: ledger %s, kept %s",
			      whats[k / 2], (long long)ivs[k % 2], json_dumps(before[k], 0),
			      json_dumps(kept, 0));
		ck_assert_uint_gt(json_array_size(before[k]), 0);
		json_decref(kept);
	}
	/* /history/trades: the same trades as the trades kept, in pages of 2 and of 100. */
	json_t *trades_before[3];
	for (int k = 0; k < 3; k++) {
		trades_before[k] = ledger_trades_of(whats[k], from, 2);
		json_t *kept_t = kept_trades_of(whats[k]),
		       *big = ledger_trades_of(whats[k], from, 100);
		ck_assert_msg(json_equal(trades_before[k], kept_t) && json_equal(big, kept_t),
			      "%s: ledger %s, kept %s", whats[k], json_dumps(trades_before[k], 0),
			      json_dumps(kept_t, 0));
		ck_assert_uint_eq(json_array_size(kept_t), k == 0 ? 5 : k == 1 ? 3 : 2);
		json_decref(kept_t);
		json_decref(big);
	}
	/* Whole intervals, at most 1,000 of them, a product or a class. */
	char path[300];
	const char *const bad[] = {
		"accelerator=H100-80G&interval_ms=60000&from_ms=1000&to_ms=120000",
		"accelerator=H100-80G&interval_ms=60000&from_ms=120000&to_ms=120000",
		"accelerator=H100-80G&interval_ms=1000&from_ms=0&to_ms=1001000",
		"accelerator=H100-80G&interval_ms=999",
		"accelerator=H100-80G/x",
		"accelerator=H100-80G&from_ms=-3600000",
		"accelerator=H100-80G&limit=5",
		"interval_ms=60000",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(path, sizeof(path), "/api/v1/history?%s", bad[i]);
		refused(path, 400);
	}
	snprintf(path, sizeof(path), "/api/v1/history?%s&accelerator=H100-80G", w1);
	refused(path, 400);
	const char *const bad_trades[] = {
		"accelerator=H100-80G&limit=0",		  "accelerator=H100-80G&limit=1001",
		"accelerator=H100-80G&after=-1",	  "accelerator=H100-80G&from_ms=5&to_ms=5",
		"accelerator=H100-80G&interval_ms=60000", "limit=5",
	};
	for (size_t i = 0; i < sizeof(bad_trades) / sizeof(bad_trades[0]); i++) {
		snprintf(path, sizeof(path), "/api/v1/history/trades?%s", bad_trades[i]);
		refused(path, 400);
	}
	/* The default range: the last hour, to now. */
	json_t *def = get_ok("/api/v1/history/trades?accelerator=H100-80G");
	ck_assert_int_eq(num(def, "to_ms") - num(def, "from_ms"), 3600000);
	ck_assert_uint_eq(json_array_size(json_object_get(def, "trades")), 5);
	ck_assert(json_is_null(json_object_get(def, "next_after")));
	json_decref(def);
	/* The default range: the last 100 hours, up to the one now. */
	def = get_ok("/api/v1/history?accelerator=H100-80G");
	ck_assert_int_eq(num(def, "interval_ms"), 3600000);
	ck_assert_int_eq(num(def, "to_ms") - num(def, "from_ms"), 100 * 3600000);
	ck_assert_uint_eq(json_array_size(json_object_get(def, "candles")), 1);
	json_decref(def);

	/* One trade kept: the API's candles hold one, the ledger's all. */
	stop_server(true);
	history_args[5] = "--http-trades-kept=1";
	tserver_start(&srv, history_args);
	tclient_reconnect(&srv, &op, &buyer, &seller);
	json_t *kept = kept_candles_of(whats[0], 60000);
	ck_assert_uint_eq(json_array_size(kept), 1);
	json_decref(kept);
	for (int k = 0; k < 6; k++) {
		json_t *after = ledger_candles_of(whats[k / 2], from, ivs[k % 2]);
		ck_assert_msg(json_equal(before[k], after), "%s by %lld after the restart: %s",
			      whats[k / 2], (long long)ivs[k % 2], json_dumps(after, 0));
		json_decref(after);
		json_decref(before[k]);
	}
	for (int k = 0; k < 3; k++) {
		json_t *after = ledger_trades_of(whats[k], from, 3);
		ck_assert_msg(json_equal(trades_before[k], after), "%s after the restart: %s",
			      whats[k], json_dumps(after, 0));
		json_decref(after);
		json_decref(trades_before[k]);
	}

	/* The ledger holds the queries up: another session locks ledger.fills. */
	int status;
	const char *ok_metric = "gridex_http_history_queries_total{outcome=\"ok\"}";
	double ok_before = tmetric(thttp_get(srv.metrics_port, "/metrics", &status), ok_metric);
	PGconn *c = pgtest_connect(pgt.owner_url);
	pgtest_sql_ok(c, "begin");
	pgtest_sql_ok(c, "lock table ledger.fills in access exclusive mode");
	int a = send_get("/api/v1/history?accelerator=H100-80G&interval_ms=60000");
	ck_assert_int_eq(answer_within(a, 200), 0); /* waits for the ledger */
	int b = send_get("/api/v1/history?accelerator=H100-80G&interval_ms=1000");
	ck_assert_int_eq(answer_within(b, 100), 0);
	/* A third different query: the queue (2) is full. */
	snprintf(path, sizeof(path), "/api/v1/history?%s", w1);
	const char *r = thttp_get(srv.http_port, path, &status);
	ck_assert_msg(status == 503 && strstr(r, "Retry-After: 1") != NULL &&
			      strstr(r, "http_history_queue_max") != NULL,
		      "%s", r);
	/* The same query as a's: answered with it. */
	int a2 = send_get("/api/v1/history?accelerator=H100-80G&interval_ms=60000");
	ck_assert_int_eq(answer_within(a2, 100), 0);
	/* A fourth request of this address, the same query as one waiting: 429. */
	r = thttp_get(srv.http_port, "/api/v1/history?accelerator=H100-80G&interval_ms=1000",
		      &status);
	ck_assert_msg(status == 429 && strstr(r, "http_history_per_ip_max") != NULL, "%s", r);
	/* Everything else answers meanwhile, and the orders trade. */
	json_decref(get_ok("/api/v1/products"));
	close(b); /* gone before its answer */
	fill(product, 6, 2650000, 1);
	ck_assert_int_eq(answer_within(a, 100), 0);
	/* The lock let go: both requests of the query get its one answer. */
	pgtest_sql_ok(c, "commit");
	static char first[8192];
	snprintf(first, sizeof(first), "%s", read_answer(a, 5000));
	const char *ans = read_answer(a2, 5000);
	ck_assert_msg(is_status(first, 200) && strstr(first, "\"candles\"") != NULL, "%s", first);
	ck_assert_msg(strcmp(strstr(first, "\r\n\r\n"), strstr(ans, "\r\n\r\n")) == 0, "%s\n%s",
		      first, ans);
	wait_metric("gridex_http_history_waiting", 0); /* b's query ran, for no one */
	r = thttp_get(srv.metrics_port, "/metrics", &status);
	ck_assert_double_eq(tmetric(r, ok_metric), ok_before + 2); /* a's and b's */
	ck_assert_double_eq(tmetric(r, "gridex_http_history_joined_total"), 1);
	ck_assert_double_eq(tmetric(r, "gridex_http_history_refused_total{reason=\"queue\"}"), 1);
	ck_assert_double_eq(tmetric(r, "gridex_http_history_refused_total{reason=\"address\"}"), 1);

	/* The database ends the history's session: the next query gets a new one. */
	PGconn *aud = pgtest_connect(pgt.auditor_url);
	ck_assert_int_eq(pgtest_sql_int(aud, "select count(pg_terminate_backend(pid)) from "
					     "pg_stat_activity where usename = 'gridex_auditor' "
					     "and datname = current_database() and pid <> "
					     "pg_backend_pid()"),
			 1);
	PQfinish(aud);
	json_t *again = ledger_candles_of(whats[1], from, 60000);
	ck_assert_uint_gt(json_array_size(again), 0);
	json_decref(again);

	/* Two requests in a row on one connection, the first waiting for the ledger: both
	 * answered, in order. */
	int p = tcp_to(srv.http_port);
	const char *two = "GET /api/v1/history?accelerator=H100-80G&interval_ms=60000 HTTP/1.1\r\n"
			  "Host: x\r\n\r\nGET /api/v1/products HTTP/1.1\r\nHost: x\r\n"
			  "Connection: close\r\n\r\n";
	ck_assert_int_eq(write(p, two, strlen(two)), (ssize_t)strlen(two));
	ans = read_answer(p, 5000);
	const char *second = strstr(ans + 1, "HTTP/1.1 200");
	const char *candles = strstr(ans, "\"candles\"");
	ck_assert_msg(is_status(ans, 200) && second != NULL && candles != NULL &&
			      candles < second && strstr(second, "\"products\"") != NULL,
		      "%s", ans);

	/* A stop with a query held up: the query is cancelled, the stop prompt. */
	pgtest_sql_ok(c, "begin");
	pgtest_sql_ok(c, "lock table ledger.fills in access exclusive mode");
	a = send_get("/api/v1/history?accelerator=H100-80G&interval_ms=60000");
	ck_assert_int_eq(answer_within(a, 300), 0);
	stop_server(true);
	ans = read_answer(a, 5000); /* 503 "stopping", or closed unanswered */
	ck_assert_msg(ans[0] == '\0' || is_status(ans, 503), "%s", ans);
	pgtest_sql_ok(c, "commit");

	/* A query held up past http_history_timeout_ms (1 s here) gets 503, and is cancelled. */
	history_args[2] = "--http-history-timeout-ms=1000";
	tserver_start(&srv, history_args);
	tclient_reconnect(&srv, &op, &buyer, &seller);
	pgtest_sql_ok(c, "begin");
	pgtest_sql_ok(c, "lock table ledger.fills in access exclusive mode");
	ans = read_answer(send_get("/api/v1/history?accelerator=H100-80G&interval_ms=60000"), 5000);
	ck_assert_msg(is_status(ans, 503) && strstr(ans, "http_history_timeout_ms") != NULL &&
			      strstr(ans, "Retry-After: 1") != NULL,
		      "%s", ans);
	r = thttp_get(srv.metrics_port, "/metrics", &status);
	ck_assert_double_eq(tmetric(r, "gridex_http_history_queries_total{outcome=\"timeout\"}"),
			    1);
	ck_assert_ptr_nonnull(tserver_log_line(&srv, "outcome=timeout"));
	pgtest_sql_ok(c, "commit");
	PQfinish(c);
}
END_TEST

static TCase *add_case(Suite *s, const char *name, SFun set_up, SFun tear_down)
{
	TCase *tc = tcase_create(name);
	if (set_up)
		tcase_add_checked_fixture(tc, set_up, tear_down);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
	return tc;
}

static Suite *http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *tc = add_case(s, "http", setup, teardown);
	tcase_add_test(tc, market_api_matches_the_market);
	tcase_add_test(tc, bad_requests_get_a_reason);
	tcase_add_test(tc, trades_kept_survive_restarts);
	tc = add_case(s, "history", setup_history, teardown);
	tcase_add_test(tc, price_history_reads_the_ledger);
	tc = add_case(s, "operator", setup_operator, teardown);
	tcase_add_test(tc, operator_endpoints_need_the_token_and_read_the_ledger);
	tc = add_case(s, "tls", NULL, NULL);
	tcase_add_test(tc, the_api_over_tls);
	tc = add_case(s, "cap", NULL, NULL);
	tcase_add_test(tc, an_http_port_holds_at_most_http_connections_max);
	tcase_add_test(tc, an_address_holds_at_most_http_connections_per_ip_max);
	tcase_add_test(tc, a_full_http_port_closes_its_oldest_connection_for_a_newcomer);
	tcase_add_test(tc, an_address_asks_at_most_http_requests_per_ip_per_second);
	tc = add_case(s, "retire", setup_retire, teardown);
	tcase_add_test(tc, past_books_are_retired_and_their_room_reused);
	tc = add_case(s, "thread", setup_slow, teardown_slow);
	tcase_add_test(tc, a_slow_answer_holds_up_the_api_not_the_orders);
	tc = add_case(s, "thread-queue", setup_slow_small_queue, teardown_slow);
	tcase_add_test(tc, market_data_waits_for_a_stalled_api_and_none_is_lost);
	return s;
}

int main(void)
{
	int skip = pgtest_skip_without_database();
	if (skip)
		return skip;
	return tap_run(http_suite());
}
