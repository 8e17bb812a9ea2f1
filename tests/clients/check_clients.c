/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libgridex and the gridex CLI against a real gridexd and PostgreSQL. Library:
 * orders, reports and queries through the public API; the event loop through
 * gridex_fd(); the local book from a snapshot and updates, equal to a fresh
 * snapshot; gap detection; reconnecting resubscribes; bad arguments are
 * errors, never crashes; prices parse and print exactly. CLI (run as a
 * process): keygen, operator commands, bid/offer crossing, account, orders,
 * fills, book, JSON output, settings from a config file and the environment,
 * usage errors (exit 2) and refusals (exit 1). Needs GRIDEX_TEST_DATABASE_URL.
 */
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <sodium.h>

#include "gridex/gridex.h"
#include "pgtest.h"
#include "tap.h"
#include "tclient.h"
#include "tfile.h"

static struct tserver srv;
static char product[64], op_key[128], a_key[128], b_key[128], ca[128];

static void product_name(char *out, size_t len, int hours_ahead)
{
	time_t t = time(NULL) + hours_ahead * 3600;
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(out, len, "H100-80G/%04d-%02d-%02dT%02d", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour);
}

static gridex_client *client(uint32_t account, const char *key)
{
	struct gridex_options o;
	gridex_options_default(&o);
	o.host = "127.0.0.1";
	o.server_name = "localhost";
	o.port = (uint16_t)srv.port;
	o.ca_file = ca;
	o.account = account;
	o.key_file = key;
	gridex_client *c;
	ck_assert_int_eq(gridex_client_new(&o, &c), GRIDEX_OK);
	ck_assert_msg(gridex_connect(c) == GRIDEX_OK, "%s", gridex_client_error(c));
	return c;
}

/* The answer to nonce: 0 for an ACK or the reject reason; other events are skipped. */
static int answer(gridex_client *c, uint64_t nonce)
{
	for (;;) {
		struct gridex_event ev;
		int rc = gridex_next_event(c, 5000, &ev);
		ck_assert_msg(rc == GRIDEX_OK, "%s", gridex_client_error(c));
		int kind = ev.kind, reason = ev.reason;
		uint64_t n = ev.nonce;
		gridex_event_free(&ev);
		if ((kind == GRIDEX_EV_ACK || kind == GRIDEX_EV_REJECT) && n == nonce)
			return kind == GRIDEX_EV_ACK ? 0 : reason;
	}
}

static void op(gridex_client *o, struct gridex_operator_request r)
{
	uint64_t n;
	ck_assert_int_eq(gridex_operator(o, &r, &n), GRIDEX_OK);
	ck_assert_int_eq(answer(o, n), 0);
}

/* Extra settings of the next setup (a hook turns leases on). */
static const char *extra_args[8] = {"--maker-bps=10", "--taker-bps=20"};

/* gridexd with an operator key file; participants 1 and 2 registered and funded. */
static void setup(void)
{
	memset(&srv, 0, sizeof(srv));
	pgtest_setup_dir(GRIDEX_TEST_MIGRATIONS);
	char dir[64];
	tfile_mkdtemp(dir, sizeof(dir), "gridex-clients");
	snprintf(op_key, sizeof(op_key), "%s/op.pem", dir);
	snprintf(a_key, sizeof(a_key), "%s/a.pem", dir);
	snprintf(b_key, sizeof(b_key), "%s/b.pem", dir);
	ck_assert_int_eq(gridex_keygen(op_key, srv.op_pk), GRIDEX_OK);
	srv.op_account = 900;
	srv.op_preset = true;
	tserver_start(&srv, extra_args);
	snprintf(ca, sizeof(ca), "%s/cert.pem", srv.dir);
	product_name(product, sizeof(product), 2);
	uint8_t pa[32], pb[32];
	ck_assert_int_eq(gridex_keygen(a_key, pa), GRIDEX_OK);
	ck_assert_int_eq(gridex_keygen(b_key, pb), GRIDEX_OK);
	ck_assert_int_eq(gridex_keygen(a_key, pa), GRIDEX_ERR_KEY); /* never overwrites */
	gridex_client *o = client(900, op_key);
	op(o, (struct gridex_operator_request){
		      .op = GRIDEX_OP_REGISTER, .account = 1, .name = "alice", .public_key = pa});
	op(o, (struct gridex_operator_request){
		      .op = GRIDEX_OP_REGISTER, .account = 2, .name = "bob", .public_key = pb});
	op(o, (struct gridex_operator_request){
		      .op = GRIDEX_OP_DEPOSIT, .account = 1, .amount = 1000000000});
	op(o,
	   (struct gridex_operator_request){
		   .op = GRIDEX_OP_CAPACITY, .account = 2, .product = "H100-80G", .quantity = 100});
	gridex_client_free(o);
}

static void teardown(void)
{
	ck_assert_int_eq(tserver_stop(&srv), 0);
	pgtest_teardown();
}

START_TEST(library_trades_queries_and_books)
{
	gridex_client *a = client(1, a_key), *b = client(2, b_key), *m = client(0, NULL);
	gridex_book *book;
	ck_assert_int_eq(gridex_book_new(product, &book), GRIDEX_OK);
	/* The product has no book yet: its empty snapshot says the subscription is in place. */
	ck_assert_int_eq(gridex_subscribe(m, product, true), GRIDEX_OK);
	struct gridex_event first;
	ck_assert_int_eq(gridex_next_event(m, 5000, &first), GRIDEX_OK);
	ck_assert_int_eq(first.kind, GRIDEX_EV_SNAPSHOT);
	ck_assert_uint_eq(first.sequence, 0);
	ck_assert_int_eq(gridex_book_apply(book, &first), GRIDEX_OK);
	gridex_event_free(&first);
	/* Orders from both sides, some crossing. */
	uint64_t n = 0;
	for (int i = 0; i < 40; i++) {
		struct gridex_order o = {.client_order_id = 100 + (uint64_t)i,
					 .product = product,
					 .side = i % 2 ? GRIDEX_SELL : GRIDEX_BUY,
					 .price = (int64_t)(20 + (i * 7) % 11) * 100000,
					 .quantity = 1 + i % 3};
		gridex_client *c = i % 2 ? b : a;
		ck_assert_int_eq(gridex_new_order(c, &o, &n), GRIDEX_OK);
		ck_assert_int_eq(answer(c, n), 0);
	}
	ck_assert_int_eq(gridex_modify(a, 100, 2500000, 2, &n), GRIDEX_OK);
	ck_assert_int_eq(answer(a, n), 0);
	ck_assert_int_eq(gridex_cancel(a, 999, &n), GRIDEX_OK);
	ck_assert_int_eq(answer(a, n), 12); /* UNKNOWN_ORDER */
	/* Queries come back as RESULT events. */
	ck_assert_int_eq(gridex_query(a, GRIDEX_Q_BALANCE, NULL, &n), GRIDEX_OK);
	struct gridex_event ev;
	bool got = false;
	while (!got) {
		ck_assert_int_eq(gridex_next_event(a, 5000, &ev), GRIDEX_OK);
		if (ev.kind == GRIDEX_EV_RESULT && ev.nonce == n) {
			ck_assert(ev.has_balance);
			ck_assert_int_gt(ev.available, 0);
			ck_assert_int_lt(ev.available, 1000000000);
			got = true;
		}
		gridex_event_free(&ev);
	}
	/* The market-data handle in a poll loop, as a caller's event loop would run it:
	 * readable, events until AGAIN. The library reads ahead (several TLS records
	 * per read), so this also checks that AGAIN leaves nothing behind that would
	 * raise no new readiness: once poll has been quiet, no event may be waiting. */
	int trades = 0;
	for (;;) {
		struct pollfd p = {.fd = gridex_fd(m), .events = POLLIN};
		int r = poll(&p, 1, 300);
		if (r == 0) {
			ck_assert_int_eq(gridex_next_event(m, 0, &ev), GRIDEX_AGAIN);
			break; /* quiet: everything arrived */
		}
		ck_assert_int_eq(r, 1);
		int rc;
		while ((rc = gridex_next_event(m, 0, &ev)) == GRIDEX_OK) {
			trades += ev.kind == GRIDEX_EV_TRADE;
			ck_assert_int_eq(gridex_book_apply(book, &ev), GRIDEX_OK);
			gridex_event_free(&ev);
		}
		ck_assert_int_eq(rc, GRIDEX_AGAIN);
	}
	ck_assert_int_gt(trades, 3);
	ck_assert(gridex_book_ready(book));
	/* Equal to a fresh snapshot from another handle. */
	gridex_client *m2 = client(0, NULL);
	ck_assert_int_eq(gridex_subscribe(m2, product, false), GRIDEX_OK);
	do {
		ck_assert_int_eq(gridex_next_event(m2, 5000, &ev), GRIDEX_OK);
	} while (ev.kind != GRIDEX_EV_SNAPSHOT && (gridex_event_free(&ev), 1));
	ck_assert_uint_eq(ev.sequence, gridex_book_sequence(book));
	struct gridex_level levels[64];
	size_t nb = gridex_book_levels(book, GRIDEX_BUY, levels, 64);
	ck_assert_uint_eq(nb, ev.n_bids);
	ck_assert_uint_gt(nb, 0);
	for (size_t i = 0; i < nb; i++)
		ck_assert(levels[i].price == ev.bids[i].price &&
			  levels[i].quantity == ev.bids[i].quantity &&
			  levels[i].orders == ev.bids[i].orders);
	size_t na = gridex_book_levels(book, GRIDEX_SELL, levels, 64);
	ck_assert_uint_eq(na, ev.n_asks);
	for (size_t i = 0; i < na; i++)
		ck_assert(levels[i].price == ev.asks[i].price &&
			  levels[i].quantity == ev.asks[i].quantity &&
			  levels[i].orders == ev.asks[i].orders);
	/* A missed update is a gap, until the next snapshot. */
	struct gridex_event skip = {.kind = GRIDEX_EV_UPDATE,
				    .sequence = gridex_book_sequence(book) + 2,
				    .side = GRIDEX_BUY,
				    .price = 100000,
				    .quantity = 1};
	snprintf(skip.product, sizeof(skip.product), "%s", product);
	ck_assert_int_eq(gridex_book_apply(book, &skip), GRIDEX_ERR_GAP);
	ck_assert(!gridex_book_ready(book));
	ck_assert_int_eq(gridex_book_apply(book, &ev), GRIDEX_OK);
	ck_assert(gridex_book_ready(book));
	gridex_event_free(&ev);
	/* A snapshot a correct server never sends (bids not best first) is refused. */
	struct gridex_level wrong[2] = {{.price = 2, .quantity = 1}, {.price = 5, .quantity = 1}};
	struct gridex_event bad = {.kind = GRIDEX_EV_SNAPSHOT, .bids = wrong, .n_bids = 2};
	snprintf(bad.product, sizeof(bad.product), "%s", product);
	ck_assert_int_eq(gridex_book_apply(book, &bad), GRIDEX_ERR_PROTOCOL);
	ck_assert(!gridex_book_ready(book));
	/* Reconnecting subscribes again: a fresh snapshot arrives without asking. */
	ck_assert_int_eq(gridex_connect(m2), GRIDEX_OK);
	do {
		ck_assert_int_eq(gridex_next_event(m2, 5000, &ev), GRIDEX_OK);
	} while (ev.kind != GRIDEX_EV_SNAPSHOT && (gridex_event_free(&ev), 1));
	ck_assert_str_eq(ev.product, product);
	gridex_event_free(&ev);
	gridex_book_free(book);
	gridex_client_free(a);
	gridex_client_free(b);
	gridex_client_free(m);
	gridex_client_free(m2);
}
END_TEST

/* Requests signed ahead (a load generator's way) go out only when sent, as they were
 * signed; the same bytes again are replays. */
START_TEST(library_presigned_requests)
{
	gridex_client *a = client(1, a_key);
	struct gridex_frames frames = {0};
	uint64_t nonces[3];
	gridex_capture(a, &frames);
	for (int i = 0; i < 3; i++) {
		struct gridex_order o = {.client_order_id = 300 + (uint64_t)i,
					 .product = product,
					 .side = GRIDEX_BUY,
					 .price = 1000000,
					 .quantity = 1};
		ck_assert_int_eq(gridex_new_order(a, &o, &nonces[i]), GRIDEX_OK);
	}
	/* A subscription made meanwhile is sent, not captured. */
	ck_assert_int_eq(gridex_subscribe(a, product, false), GRIDEX_OK);
	gridex_capture(a, NULL);
	ck_assert_uint_gt(frames.len, 3 * 64);
	struct gridex_event ev;
	int rc;
	while ((rc = gridex_next_event(a, 300, &ev)) == GRIDEX_OK) {
		ck_assert_int_eq(ev.kind, GRIDEX_EV_SNAPSHOT); /* nothing else yet */
		gridex_event_free(&ev);
	}
	ck_assert_int_eq(rc, GRIDEX_AGAIN);
	ck_assert_int_eq(gridex_send_raw(a, frames.data, frames.len), GRIDEX_OK);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(answer(a, nonces[i]), 0);
	ck_assert_int_eq(gridex_send_raw(a, frames.data, frames.len), GRIDEX_OK);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(answer(a, nonces[i]), 3); /* STALE_NONCE */
	gridex_frames_free(&frames);
	gridex_client_free(a);
}
END_TEST

START_TEST(library_refuses_bad_input)
{
	gridex_client *a = client(1, a_key), *m = client(0, NULL);
	struct gridex_order o = {.client_order_id = 1,
				 .product = product,
				 .side = GRIDEX_BUY,
				 .price = 1,
				 .quantity = 1};
	o.quantity = 0;
	ck_assert_int_eq(gridex_new_order(a, &o, NULL), GRIDEX_ERR_ARGS);
	o.quantity = 1;
	o.side = 7;
	ck_assert_int_eq(gridex_new_order(a, &o, NULL), GRIDEX_ERR_ARGS);
	o.side = GRIDEX_BUY;
	o.product = "H100-80G/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	ck_assert_int_eq(gridex_new_order(a, &o, NULL), GRIDEX_ERR_ARGS);
	ck_assert_int_eq(gridex_new_order(m, &o, NULL), GRIDEX_ERR_ARGS); /* no key */
	ck_assert_msg(strstr(gridex_client_error(m), "no account") != NULL, "%s",
		      gridex_client_error(m));
	ck_assert_int_eq(gridex_subscribe(m, "", false), GRIDEX_ERR_ARGS);
	ck_assert_int_eq(gridex_query(a, GRIDEX_Q_BALANCE, "H100-80G", NULL), GRIDEX_ERR_ARGS);
	ck_assert_int_eq(gridex_query_page(a, GRIDEX_Q_BALANCE, NULL, 5, NULL), GRIDEX_ERR_ARGS);
	/* Options and key files. */
	struct gridex_options opt;
	gridex_options_default(&opt);
	gridex_client *c = NULL;
	opt.account = 1; /* without a key file */
	ck_assert_int_eq(gridex_client_new(&opt, &c), GRIDEX_ERR_ARGS);
	opt.key_file = "/nonexistent/key.pem";
	ck_assert_int_eq(gridex_client_new(&opt, &c), GRIDEX_ERR_KEY);
	ck_assert_msg(strstr(gridex_client_error(c), "No such file") != NULL, "%s",
		      gridex_client_error(c));
	gridex_client_free(c);
	opt.key_file = ca; /* a certificate is not a private key */
	ck_assert_int_eq(gridex_client_new(&opt, &c), GRIDEX_ERR_KEY);
	gridex_client_free(c);
	/* A certificate that does not match fails the handshake clearly. */
	gridex_options_default(&opt);
	opt.host = "127.0.0.1";
	opt.port = (uint16_t)srv.port;
	opt.ca_file = ca;
	opt.server_name = "not-this-server";
	ck_assert_int_eq(gridex_client_new(&opt, &c), GRIDEX_OK);
	ck_assert_int_eq(gridex_connect(c), GRIDEX_ERR_TLS);
	ck_assert_msg(strstr(gridex_client_error(c), "certificate") != NULL, "%s",
		      gridex_client_error(c));
	ck_assert_int_eq(gridex_subscribe(c, product, false), GRIDEX_ERR_CLOSED);
	gridex_client_free(c);
	opt.server_name = NULL;
	opt.port = 1; /* nothing listens */
	ck_assert_int_eq(gridex_client_new(&opt, &c), GRIDEX_OK);
	ck_assert_int_eq(gridex_connect(c), GRIDEX_ERR_CONNECT);
	gridex_client_free(c);
	/* Prices. */
	int64_t v;
	ck_assert_int_eq(gridex_parse_price("2.45", &v), GRIDEX_OK);
	ck_assert_int_eq(v, 2450000);
	ck_assert_int_eq(gridex_parse_price("0.000001", &v), GRIDEX_OK);
	ck_assert_int_eq(v, 1);
	static const char *const bad[] = {"",	  "-1", "0",  "1.2345678", "1e3", "9223372036855",
					  "1..2", ".5", "2,5"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(gridex_parse_price(bad[i], &v) == GRIDEX_ERR_ARGS, "accepted %s",
			      bad[i]);
	char buf[32];
	gridex_format_price(2450000, buf, sizeof(buf));
	ck_assert_str_eq(buf, "2.45");
	gridex_format_price(1, buf, sizeof(buf));
	ck_assert_str_eq(buf, "0.000001");
	gridex_format_price(INT64_MIN, buf, sizeof(buf));
	ck_assert_str_eq(buf, "-9223372036854.775808");
	gridex_client_free(a);
	gridex_client_free(m);
}
END_TEST

/* ---------- the CLI ---------- */

static char out[65536];

/* Runs the CLI with the server's address and CA in the environment; returns its exit status. */
static int cli(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int cli(const char *fmt, ...)
{
	char args[2048], cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd),
		 "GRIDEX_SERVER=127.0.0.1:%d GRIDEX_CA=%s XDG_CONFIG_HOME=%s/xdg %s %s 2>&1",
		 srv.port, ca, srv.dir, GRIDEX_TEST_CLI, args);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	size_t n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	int status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

START_TEST(cli_end_to_end)
{
	/* A new participant, from keygen to a fill. */
	ck_assert_int_eq(cli("keygen %s/c.pem --json", srv.dir), 0);
	ck_assert_msg(strstr(out, "\"public_key\"") != NULL, "%s", out);
	ck_assert_int_eq(cli("--key=%s/c.pem pubkey", srv.dir), 0);
	char pub[65];
	ck_assert_int_eq(sscanf(out, "%64s", pub), 1);
	ck_assert_int_eq(cli("--account=900 --key=%s register 3 carol %s", op_key, pub), 0);
	ck_assert_int_eq(cli("--account=900 --key=%s deposit 3 100.5", op_key), 0);
	ck_assert_int_eq(cli("--account=3 --key=%s/c.pem account", srv.dir), 0);
	ck_assert_msg(strstr(out, "available      100.50") != NULL, "%s", out);
	/* Settings from a config file, overridden by a flag. */
	char cfg[1024];
	snprintf(cfg, sizeof(cfg),
		 "mkdir -p %s/xdg/gridex && printf 'account = 3\\nkey = %s/c.pem\\n' > "
		 "%s/xdg/gridex/config",
		 srv.dir, srv.dir, srv.dir);
	ck_assert_int_eq(system(cfg), 0);
	ck_assert_int_eq(cli("bid %s 2 2.5 --id=11", product), 0);
	ck_assert_msg(strstr(out, "NEW") && strstr(out, "id 11"), "%s", out);
	ck_assert_int_eq(cli("--account=2 --key=%s offer %s 1 2.4 --id=21", b_key, product), 0);
	ck_assert_msg(strstr(out, "FILL") && strstr(out, "last 1 @ 2.50"), "%s", out);
	ck_assert_int_eq(cli("orders --json"), 0);
	ck_assert_msg(strstr(out, "\"PARTIAL_FILL\"") && strstr(out, "\"leaves_quantity\":1"), "%s",
		      out);
	ck_assert_int_eq(cli("fills"), 0);
	ck_assert_msg(strstr(out, "fee 0.0025") != NULL, "%s", out); /* maker 10 bps of 2.50 */
	ck_assert_int_eq(cli("book %s --json", product), 0);
	ck_assert_msg(strstr(out, "\"bids\":[{\"price\":\"2.50\",\"quantity\":1,\"orders\":1}]"),
		      "%s", out);
	ck_assert_int_eq(cli("modify 11 2.6 3"), 0);
	ck_assert_msg(strstr(out, "REPLACED") != NULL, "%s", out);
	ck_assert_int_eq(cli("cancel --all H100-80G"), 0);
	ck_assert_msg(strstr(out, "CANCELED") != NULL, "%s", out);
	/* Refusals: exit 1 with the reason; usage errors: exit 2 with what to do. */
	ck_assert_int_eq(cli("bid %s 100000 2.5", product), 1);
	ck_assert_msg(strstr(out, "INSUFFICIENT_FUNDS") != NULL, "%s", out);
	ck_assert_int_eq(cli("cancel 12345"), 1);
	ck_assert_msg(strstr(out, "UNKNOWN_ORDER") != NULL, "%s", out);
	ck_assert_int_eq(cli("deposit 3 5"), 1); /* carol is no operator */
	ck_assert_msg(strstr(out, "NOT_AUTHORIZED") != NULL, "%s", out);
	ck_assert_int_eq(cli("leases"), 1);
	ck_assert_msg(strstr(out, "LEASES_OFF") != NULL, "%s", out);
	ck_assert_int_eq(cli("hosts"), 1);
	ck_assert_msg(strstr(out, "LEASES_OFF") != NULL, "%s", out);
	ck_assert_int_eq(cli("withdraw-host node-1"), 1);
	ck_assert_msg(strstr(out, "LEASES_OFF") != NULL, "%s", out);
	ck_assert_int_eq(cli("bid %s 2 2,5", product), 2);
	ck_assert_msg(strstr(out, "at most 6 decimals") != NULL, "%s", out);
	ck_assert_int_eq(cli("bid %s 2", product), 2);
	ck_assert_int_eq(cli("frobnicate"), 2);
	ck_assert_int_eq(cli("bid %s 1 1 --tif=forever", product), 2);
	ck_assert_int_eq(cli("--help"), 0);
	ck_assert_msg(strstr(out, "usage: gridex") != NULL, "%s", out);
	ck_assert_int_eq(cli("--server=127.0.0.1:1 book %s", product), 1);
	ck_assert_msg(strstr(out, "is gridexd running") != NULL, "%s", out);
	/* The trade tape: a trade after subscribing shows up. */
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "(sleep 1; GRIDEX_SERVER=127.0.0.1:%d GRIDEX_CA=%s %s --account=2 --key=%s offer "
		 "%s 1 "
		 "2.0 --id=22 >/dev/null) &",
		 srv.port, ca, GRIDEX_TEST_CLI, b_key, product);
	ck_assert_int_eq(cli("bid %s 1 2.1 --id=12", product), 0);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert_int_eq(cli("trades H100-80G --count=1 --seconds=10 --json"), 0);
	ck_assert_msg(strstr(out, "\"TRADE\"") && strstr(out, "\"price\":\"2.10\""), "%s", out);
}
END_TEST

/* A seller's host and a buyer's workload through the CLI; a fill becomes a lease on the
 * host's devices, listed by `gridex leases` for both (its window is two hours ahead: the
 * hook, /bin/true, is not called). */
START_TEST(cli_hosts_workloads_and_leases)
{
	ck_assert_int_eq(
		cli("--account=2 --key=%s host node-1 H100-80G nvidia GPU-1 GPU-2 GPU-3", b_key),
		0);
	ck_assert_int_eq(cli("--account=2 --key=%s host node-1 H100-80G nvidia GPU-9", b_key), 1);
	ck_assert_msg(strstr(out, "BAD_HOST") != NULL, "%s", out);
	ck_assert_int_eq(cli("--account=2 --key=%s host node-2 H100-80G intel GPU-9", b_key), 1);
	ck_assert_msg(strstr(out, "MALFORMED") != NULL, "%s", out);
	ck_assert_int_eq(cli("--account=2 --key=%s host node-2 H100-80G", b_key), 2);
	ck_assert_int_eq(cli("--account=1 --key=%s bid %s 2 2.5", a_key, product), 1);
	ck_assert_msg(strstr(out, "BAD_WORKLOAD") != NULL, "%s", out);
	ck_assert_int_eq(cli("--account=1 --key=%s workload '{\"command\": 1}'", a_key), 1);
	ck_assert_msg(strstr(out, "MALFORMED") != NULL, "%s", out);
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "printf '{\"command\": [\"/bin/echo\", \"hi\"]}' > %s/w.json",
		 srv.dir);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert_int_eq(cli("--account=1 --key=%s workload @%s/w.json", a_key, srv.dir), 0);
	ck_assert_int_eq(cli("--account=1 --key=%s bid %s 2 2.5 --id=1", a_key, product), 0);
	ck_assert_int_eq(cli("--account=2 --key=%s offer %s 2 2.5 --id=1", b_key, product), 0);
	ck_assert_int_eq(cli("--account=1 --key=%s leases --json", a_key), 0);
	ck_assert_msg(strstr(out, "\"state\":\"SCHEDULED\"") &&
			      strstr(out, "\"host\":\"node-1\"") &&
			      strstr(out, "\"devices\":[\"GPU-1\",\"GPU-2\"]") &&
			      strstr(out, "\"quantity\":2"),
		      "%s", out);
	ck_assert_int_eq(cli("--account=2 --key=%s leases", b_key), 0);
	ck_assert_msg(strstr(out, "lease 1  SCHEDULED  buyer 1 seller 2") &&
			      strstr(out, "on node-1 GPU-1,GPU-2"),
		      "%s", out);
	/* the operator sees every lease; another participant none */
	ck_assert_int_eq(cli("--account=900 --key=%s leases", op_key), 0);
	ck_assert_msg(strstr(out, "lease 1  SCHEDULED  buyer 1 seller 2") != NULL, "%s", out);
	ck_assert_int_eq(cli("keygen %s/c.pem", srv.dir), 0);
	ck_assert_int_eq(cli("--account=900 --key=%s register 3 carol %s/c.pem", op_key, srv.dir),
			 0);
	ck_assert_int_eq(cli("--account=3 --key=%s/c.pem leases", srv.dir), 0);
	ck_assert_msg(strstr(out, "(none)") != NULL, "%s", out);
	/* The seller's capacity, as if node-1 were all it had: 3 GPUs, 2 sold in that hour.
	 * Withdrawn by another participant: refused. By its seller: its GPUs no longer count,
	 * so an offer of 1 more is refused; registered again, the offer rests. */
	ck_assert_int_eq(cli("--account=900 --key=%s capacity 2 H100-80G 3", op_key), 0);
	ck_assert_int_eq(cli("--account=3 --key=%s/c.pem withdraw-host node-1", srv.dir), 1);
	ck_assert_msg(strstr(out, "BAD_HOST") != NULL, "%s", out);
	ck_assert_int_eq(cli("--account=2 --key=%s withdraw-host", b_key), 2);
	ck_assert_int_eq(cli("--account=2 --key=%s withdraw-host node-1", b_key), 0);
	ck_assert_int_eq(cli("--account=2 --key=%s offer %s 1 2.5 --id=2", b_key, product), 1);
	ck_assert_msg(strstr(out, "INSUFFICIENT_CAPACITY") != NULL, "%s", out);
	/* Hosts are listed to their seller and the operator, no one else. */
	ck_assert_int_eq(cli("--account=2 --key=%s hosts", b_key), 0);
	ck_assert_msg(strstr(out, "host node-1  H100-80G nvidia  seller 2  WITHDRAWN  1 live "
				  "lease(s) GPU-1,GPU-2,GPU-3\n"),
		      "%s", out);
	ck_assert_int_eq(cli("--account=900 --key=%s hosts --json", op_key), 0);
	ck_assert_msg(strstr(out, "\"name\":\"node-1\"") && strstr(out, "\"withdrawn\":true") &&
			      strstr(out, "\"live_leases\":1") &&
			      strstr(out, "\"devices\":[\"GPU-1\",\"GPU-2\",\"GPU-3\"]"),
		      "%s", out);
	ck_assert_int_eq(cli("--account=1 --key=%s hosts", a_key), 0);
	ck_assert_msg(strstr(out, "(none)") != NULL, "%s", out);
	ck_assert_int_eq(cli("--account=1 --key=%s hosts node-1", a_key), 2);
	ck_assert_int_eq(
		cli("--account=2 --key=%s host node-1 H100-80G nvidia GPU-1 GPU-2 GPU-3", b_key),
		0);
	ck_assert_int_eq(cli("--account=2 --key=%s offer %s 1 2.5 --id=2", b_key, product), 0);
	ck_assert_int_eq(cli("--account=2 --key=%s hosts", b_key), 0);
	ck_assert_msg(strstr(out, "host node-1  H100-80G nvidia  seller 2  IN SERVICE"), "%s", out);
}
END_TEST

static void setup_leases(void)
{
	extra_args[2] = "--hook=/bin/true";
	setup();
	extra_args[2] = NULL;
}

/* gridexd with leases on and query_rows_max = 2: every answer past two rows is cut, and
 * the CLI asks for the pages after the first. Queries: one a second, a burst of 20. */
static void setup_cut(void)
{
	extra_args[2] = "--hook=/bin/true";
	extra_args[3] = "--query-rows-max=2";
	extra_args[4] = "--queries-per-second=1";
	extra_args[5] = "--queries-burst=20";
	setup();
	extra_args[2] = extra_args[3] = extra_args[4] = extra_args[5] = NULL;
}

/* How many times text occurs in out. */
static int count_of(const char *text)
{
	int n = 0;
	for (const char *s = out; (s = strstr(s, text)) != NULL; s += strlen(text))
		n++;
	return n;
}

START_TEST(cli_follows_the_pages_of_an_answer)
{
	for (int h = 1; h <= 3; h++)
		ck_assert_int_eq(cli("--account=2 --key=%s host node-%d H100-80G nvidia GPU-%d",
				     b_key, h, h),
				 0);
	ck_assert_int_eq(cli("--account=2 --key=%s hosts", b_key), 0);
	ck_assert_msg(strstr(out, "host node-1 ") && strstr(out, "host node-2 ") &&
			      strstr(out, "host node-3 ") && count_of("host node-") == 3 &&
			      !strstr(out, "gridex:"),
		      "%s", out);
	ck_assert_int_eq(
		cli("--account=1 --key=%s workload '{\"command\": [\"/bin/true\"]}'", a_key), 0);
	for (int id = 1; id <= 8; id++) {
		ck_assert_int_eq(
			cli("--account=1 --key=%s bid %s 1 2.5 --id=%d", a_key, product, id), 0);
		if (id != 1 && id != 3 && id != 8)
			continue;
		ck_assert_int_eq(cli("--account=1 --key=%s orders", a_key), 0);
		ck_assert_msg(count_of("NEW ") == id && !strstr(out, "gridex:"), "%d: %s", id, out);
	}
	/* JSON: one list of the rows of all four pages. */
	ck_assert_int_eq(cli("--account=1 --key=%s orders --json", a_key), 0);
	ck_assert_msg(out[0] == '[' && count_of("[") == 1 && count_of("\"client_order_id\"") == 8,
		      "%s", out);
	/* Three fills, three leases: all of each, in two pages. */
	ck_assert_int_eq(cli("--account=2 --key=%s offer %s 3 2.5 --id=1", b_key, product), 0);
	ck_assert_int_eq(cli("--account=1 --key=%s fills", a_key), 0);
	ck_assert_msg(count_of(" last 1 @ ") == 3, "%s", out);
	ck_assert_int_eq(cli("--account=1 --key=%s leases", a_key), 0);
	ck_assert_msg(strstr(out, "lease 1 ") && strstr(out, "lease 2 ") &&
			      strstr(out, "lease 3 ") && count_of("lease ") == 3,
		      "%s", out);
	/* The account's queries used up, then one more a second later (and less than two):
	 * the five open orders' three pages wait for the server to allow each after the
	 * first; a first page is refused as such, not taken for a server without leases. */
	int i = 0;
	while (i++ < 40 && cli("--account=1 --key=%s account", a_key) == 0)
		;
	ck_assert_msg(strstr(out, "gridex: refused: RATE_LIMITED"), "%s", out);
	struct timespec second = {.tv_sec = 1, .tv_nsec = 100000000};
	nanosleep(&second, NULL);
	ck_assert_int_eq(cli("--account=1 --key=%s orders", a_key), 0);
	ck_assert_msg(count_of("NEW ") == 5 && !strstr(out, "gridex:"), "%s", out);
	ck_assert_int_ne(cli("--account=1 --key=%s leases", a_key), 0);
	ck_assert_msg(strstr(out, "gridex: refused: RATE_LIMITED") &&
			      !strstr(out, "provisioning hook"),
		      "%s", out);
}
END_TEST

START_TEST(examples_buyer_and_seller_trade)
{
	/* The seller offers 8 GPUs for each of the next 6 hours; the buyer takes 8 for 4 hours
	 * from the second, all or nothing. */
	char cmd[2048];
	snprintf(cmd, sizeof(cmd),
		 "GRIDEX_SERVER=127.0.0.1:%d GRIDEX_CA=%s GRIDEX_ACCOUNT=2 GRIDEX_KEY=%s timeout 6 "
		 "%s/example-seller 8 > %s/seller.out 2>&1 &",
		 srv.port, ca, b_key, GRIDEX_TEST_EXAMPLES, srv.dir);
	ck_assert_int_eq(system(cmd), 0);
	struct timespec ts = {.tv_sec = 1, .tv_nsec = 500000000};
	nanosleep(&ts, NULL);
	snprintf(cmd, sizeof(cmd),
		 "GRIDEX_SERVER=127.0.0.1:%d GRIDEX_CA=%s GRIDEX_ACCOUNT=1 GRIDEX_KEY=%s "
		 "%s/example-buyer 2>&1",
		 srv.port, ca, a_key, GRIDEX_TEST_EXAMPLES);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	size_t n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	ck_assert_int_eq(pclose(p), 0);
	int fills = 0;
	for (const char *s = out; (s = strstr(s, "FILL H100-80G/")) != NULL; s++)
		fills++;
	ck_assert_msg(fills == 4, "%s", out);
}
END_TEST

static Suite *clients_suite(void)
{
	Suite *s = suite_create("clients");
	TCase *tc = tcase_create("clients");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, library_trades_queries_and_books);
	tcase_add_test(tc, library_presigned_requests);
	tcase_add_test(tc, library_refuses_bad_input);
	tcase_add_test(tc, cli_end_to_end);
	tcase_add_test(tc, examples_buyer_and_seller_trade);
	suite_add_tcase(s, tc);
	tc = tcase_create("leases");
	tcase_add_checked_fixture(tc, setup_leases, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, cli_hosts_workloads_and_leases);
	suite_add_tcase(s, tc);
	tc = tcase_create("cut");
	tcase_add_checked_fixture(tc, setup_cut, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, cli_follows_the_pages_of_an_answer);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	int skip = pgtest_skip_without_database();
	return skip ? skip : tap_run(clients_suite());
}
