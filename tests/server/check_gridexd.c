/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gridexd end to end: a real gridexd process with TLS 1.3 on a fresh
 * PostgreSQL database, real TLS clients signing real requests. Covered: an
 * operator registers and funds participants; a bid and an offer cross, both
 * sides get execution reports and the fill settles in the ledger with the
 * right fees and a clean audit; every rejection path; market data rebuilt
 * from a snapshot plus updates equals the server's book; queries; a restart
 * that reloads participants and balances from the ledger; a client that
 * never reads is cut off while others trade; the writer lock taken again after
 * its session is lost, no batch written while another holds it; the metrics
 * endpoint; the verifier threads pinned to their CPUs; settlement halted by an item
 * the ledger refuses (orders refused, cancels taken) and resumed once the ledger is
 * repaired, also across a stop. Needs
 * GRIDEX_TEST_DATABASE_URL (./scripts/test provides it).
 */
#define _GNU_SOURCE /* sched_getaffinity */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <sodium.h>

#include "pgtest.h"
#include "tap.h"
#include "tclient.h"
#include "tfile.h"

#define BUYER  1
#define SELLER 2
#define CASH   100000000 /* 100 currency units */

static struct tserver srv;
static struct tclient op, buyer, seller;
static char product[64], product2[64];

static void start(const char *const *extra)
{
	memset(&srv, 0, sizeof(srv));
	pgtest_setup_dir(GRIDEX_TEST_MIGRATIONS);
	tserver_start(&srv, extra);
	tproduct(product, sizeof(product), "H100-80G", 2);
	tproduct(product2, sizeof(product2), "H100-80G", 3);
}

static void connect_all(void)
{
	memset(&op, 0, sizeof(op));
	tclient_reconnect(&srv, &op, &buyer, &seller);
}

/* Buyer and seller registered, funded, and the seller with 10 GPUs of H100-80G. */
static void market(void)
{
	tclient_market(&srv, &op, &buyer, BUYER, CASH, &seller, SELLER, "H100-80G", 10);
}

static void setup(void)
{
	static const char *const fees[] = {"--maker-bps=10", "--taker-bps=20", NULL};
	start(fees);
	market();
}

/* Closes the three clients and stops gridexd, which must exit cleanly. */
static void stop_all(void)
{
	tclient_close(&op);
	tclient_close(&buyer);
	tclient_close(&seller);
	int status = tserver_stop(&srv);
	ck_assert_msg(status == 0, "gridexd exit status %d: %s", status, tserver_log(&srv));
}

static void teardown(void)
{
	stop_all();
	pgtest_teardown();
}

struct report_ctx {
	int exec_type;
	uint64_t coid;
};

static bool is_report(const Gridex__V1__ServerFrame *f, void *ctx)
{
	const struct report_ctx *x = ctx;
	return f->report && (int)f->report->exec_type == x->exec_type &&
	       f->report->client_order_id == x->coid;
}

static Gridex__V1__ExecutionReport *wait_report(struct tclient *c, int exec_type, uint64_t coid)
{
	struct report_ctx x = {exec_type, coid};
	Gridex__V1__ServerFrame *f = tclient_until(c, is_report, &x);
	Gridex__V1__ExecutionReport *r = f->report;
	f->report = NULL;
	gridex__v1__server_frame__free_unpacked(f, NULL);
	return r;
}

static int64_t sql_int(const char *sql)
{
	PGconn *c = pgtest_connect(pgt.owner_url);
	int64_t v = pgtest_sql_int(c, sql);
	PQfinish(c);
	return v;
}

/* Waits until the ledger holds n fills (settlement is asynchronous). */
static void wait_fills_settled(int64_t n)
{
	for (int i = 0; i < 500; i++) {
		if (sql_int("select count(distinct fill_id) from ledger.transfers where fill_id is "
			    "not null") == n)
			return;
		struct timespec ts = {.tv_nsec = 10000000};
		nanosleep(&ts, NULL);
	}
	ck_abort_msg("fills not settled: %s", tserver_log(&srv));
}

static int64_t balance(uint32_t participant)
{
	char sql[256];
	snprintf(sql, sizeof(sql),
		 "select balance from ledger.accounts where participant = %u and kind = "
		 "'AVAILABLE'",
		 participant);
	return sql_int(sql);
}

static Gridex__V1__QueryResult *query(struct tclient *c, uint32_t type)
{
	return tclient_query(c, type);
}

START_TEST(bid_and_offer_cross_and_settle)
{
	uint64_t n = tclient_order(&buyer, 11, product, GRIDEX__V1__SIDE__BUY, 2500000, 4);
	ck_assert_int_eq(tclient_answer(&buyer, n), 0);
	Gridex__V1__ExecutionReport *r = wait_report(&buyer, GRIDEX__V1__EXEC_TYPE__NEW, 11);
	ck_assert_int_eq(r->leaves_quantity, 4);
	ck_assert_uint_gt(r->order_id, 0);
	ck_assert_int_eq((int)r->product.len, (int)strlen(product));
	gridex__v1__execution_report__free_unpacked(r, NULL);
	n = tclient_order(&seller, 21, product, GRIDEX__V1__SIDE__SELL, 2400000, 3);
	ck_assert_int_eq(tclient_answer(&seller, n), 0);
	/* The seller took: fills at the resting bid's price, taker fee 20 bps. */
	r = wait_report(&seller, GRIDEX__V1__EXEC_TYPE__FILL, 21);
	ck_assert_int_eq(r->last_price, 2500000);
	ck_assert_int_eq(r->last_quantity, 3);
	ck_assert_int_eq(r->cumulative_quantity, 3);
	ck_assert_int_eq(r->leaves_quantity, 0);
	ck_assert_int_eq(r->fee, 15000);
	uint64_t fill_id = r->fill_id;
	gridex__v1__execution_report__free_unpacked(r, NULL);
	r = wait_report(&buyer, GRIDEX__V1__EXEC_TYPE__PARTIAL_FILL, 11);
	ck_assert_int_eq(r->cumulative_quantity, 3);
	ck_assert_int_eq(r->leaves_quantity, 1);
	ck_assert_int_eq(r->fee, 7500); /* maker 10 bps of 7.5 */
	ck_assert_uint_eq(r->fill_id, fill_id);
	gridex__v1__execution_report__free_unpacked(r, NULL);
	/* Settled: notional into escrow, both fees to FEES; the audit is clean. */
	wait_fills_settled(1);
	ck_assert_int_eq(balance(BUYER), CASH - 7500000 - 7500);
	ck_assert_int_eq(sql_int("select balance from ledger.accounts where kind = 'ESCROW'"),
			 7500000);
	ck_assert_int_eq(sql_int("select balance from ledger.accounts where kind = 'FEES'"), 7500);
	ck_assert_int_eq(pgtest_audit(), 0);
	/* The server's balances equal the ledger's once settled. */
	Gridex__V1__QueryResult *q = query(&buyer, GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE);
	ck_assert_int_eq(q->balances[0]->available, balance(BUYER));
	gridex__v1__query_result__free_unpacked(q, NULL);
	q = query(&seller, GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE);
	ck_assert_int_eq(q->balances[0]->available, balance(SELLER));
	gridex__v1__query_result__free_unpacked(q, NULL);
}
END_TEST

/* One bid that takes five offers makes five fills from one input: with batches of two,
 * they still settle in one batch (its id is the input's sequence; a split batch would
 * reuse the id and be refused for ever). */
START_TEST(one_input_never_spans_two_batches)
{
	stop_all();
	static const char *const tiny[] = {"--maker-bps=10", "--taker-bps=20",
					   "--batch-fills-max=2", NULL};
	tserver_start(&srv, tiny);
	connect_all();
	for (int i = 0; i < 5; i++) {
		uint64_t n = tclient_order(&seller, 31 + (uint64_t)i, product,
					   GRIDEX__V1__SIDE__SELL, 2000000 + i * 10000, 1);
		ck_assert_int_eq(tclient_answer(&seller, n), 0);
	}
	uint64_t n = tclient_order(&buyer, 41, product, GRIDEX__V1__SIDE__BUY, 2100000, 5);
	ck_assert_int_eq(tclient_answer(&buyer, n), 0);
	Gridex__V1__ExecutionReport *r = wait_report(&buyer, GRIDEX__V1__EXEC_TYPE__FILL, 41);
	ck_assert_int_eq(r->cumulative_quantity, 5);
	gridex__v1__execution_report__free_unpacked(r, NULL);
	wait_fills_settled(5);
	ck_assert_int_eq(sql_int("select count(distinct batch_id) from ledger.transfers where "
				 "fill_id is not null"),
			 1);
	ck_assert_int_eq(pgtest_audit(), 0);
	/* Settlement goes on after it. */
	n = tclient_order(&seller, 51, product, GRIDEX__V1__SIDE__SELL, 1900000, 2);
	ck_assert_int_eq(tclient_answer(&seller, n), 0);
	n = tclient_order(&buyer, 52, product, GRIDEX__V1__SIDE__BUY, 1900000, 2);
	ck_assert_int_eq(tclient_answer(&buyer, n), 0);
	wait_fills_settled(6);
	ck_assert_int_eq(pgtest_audit(), 0);
}
END_TEST

/* How many of the server's threads bear this name (/proc/PID/task/TID/comm). */
static int threads_named(pid_t pid, const char *name)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	ck_assert_msg(d != NULL, "%s: %s", path, strerror(errno));
	int n = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		if (e->d_name[0] == '.')
			continue;
		char comm_path[512], comm[32] = "";
		snprintf(comm_path, sizeof(comm_path), "%s/%s/comm", path, e->d_name);
		FILE *f = fopen(comm_path, "r");
		if (f == NULL)
			continue; /* the thread has just ended */
		if (fgets(comm, sizeof(comm), f) != NULL) {
			comm[strcspn(comm, "\n")] = '\0';
			n += strcmp(comm, name) == 0;
		}
		fclose(f);
	}
	closedir(d);
	return n;
}

/* Requests keep their arrival order through the verifier threads: 3,000 pipelined
 * requests (balance queries) of one connection, verified by four threads, are
 * sequenced exactly in the order they were sent (time priority), and none is refused
 * for a nonce that fell out of the window. */
START_TEST(sequence_follows_arrival_order)
{
	stop_all();
	static const char *const four[] = {"--maker-bps=10",
					   "--taker-bps=20",
					   "--verifier-threads=4",
					   "--orders-per-second=0",
					   "--queries-per-second=0",
					   "--query-rows-per-second=0",
					   NULL};
	tserver_forget_journal(&srv); /* other core settings: a new journal */
	tserver_start(&srv, four);
	connect_all();
	enum { N = 3000 };
	static uint64_t nonces[N], seqs[N];
	for (int i = 0; i < N; i++) {
		Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
		q.type = GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE;
		nonces[i] = tclient_send(&buyer, &q, buyer.sk);
	}
	int answered = 0, next = 0;
	while (answered < N) {
		bool closed = false;
		Gridex__V1__ServerFrame *f = tclient_recv(&buyer, 10000, &closed);
		ck_assert_msg(f != NULL, "%d of %d answered", answered, N);
		ck_assert_msg(f->reject == NULL, "request refused: reason %d",
			      f->reject ? (int)f->reject->reason : 0);
		if (f->ack) {
			/* Answers come in sequence order; find the request by its nonce. */
			while (next < N && nonces[next] != f->ack->nonce)
				next++;
			ck_assert_msg(next < N, "an answer out of arrival order (nonce %llu)",
				      (unsigned long long)f->ack->nonce);
			seqs[next] = f->ack->sequence;
			answered++;
		}
		gridex__v1__server_frame__free_unpacked(f, NULL);
	}
	for (int i = 1; i < N; i++) /* clock ticks may take numbers in between */
		ck_assert_uint_gt(seqs[i], seqs[i - 1]);
	/* Operators tell the threads apart (top -H, ps -L): one of each, a verifier per lane. */
	const char *const names[] = {"gx-verify-0", "gx-verify-1", "gx-verify-2", "gx-verify-3",
				     "gx-journal",  "gx-core",	   "gx-ledger",	  "gx-snapshot"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		ck_assert_msg(threads_named(srv.pid, names[i]) == 1, "threads named %s: %d",
			      names[i], threads_named(srv.pid, names[i]));
	ck_assert_int_eq(threads_named(srv.pid, "gx-verify-4"), 0);
}
END_TEST

/* A journal from before segments (one file named "journal", no snapshot) is adopted as
 * the first segment: the resting order comes back from it. */
START_TEST(single_file_journal_is_adopted)
{
	uint64_t n = tclient_order(&buyer, 8, product, GRIDEX__V1__SIDE__BUY, 1500000, 2);
	ck_assert_int_eq(tclient_answer(&buyer, n), 0);
	stop_all();
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "cd %s/journal && [ $(ls journal-* | wc -l) = 1 ] && rm -f snapshot-* && "
		 "mv journal-* journal",
		 srv.dir);
	ck_assert_int_eq(system(cmd), 0);
	static const char *const fees[] = {"--maker-bps=10", "--taker-bps=20", NULL};
	tserver_start(&srv, fees);
	connect_all();
	Gridex__V1__QueryResult *r = query(&buyer, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS);
	ck_assert_uint_eq(r->n_orders, 1);
	ck_assert_uint_eq(r->orders[0]->client_order_id, 8);
	gridex__v1__query_result__free_unpacked(r, NULL);
	snprintf(cmd, sizeof(cmd),
		 "ls %s/journal/journal-00000000000000000000 >/dev/null && ! ls %s/journal/journal "
		 ">/dev/null 2>&1",
		 srv.dir, srv.dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* Signs q's body with extra raw bytes appended (an unknown field) and sends it. */
static uint64_t send_with_extra(struct tclient *c, Gridex__V1__Request *q)
{
	q->account = c->account;
	q->nonce = c->nonce++;
	q->expires_at_ms = (int64_t)time(NULL) * 1000 + 30000;
	uint8_t msg[18 + 512];
	memcpy(msg, "gridex/v1/request", 18);
	size_t body = gridex__v1__request__pack(q, msg + 18);
	const uint8_t unknown[] = {0xf8, 0x01, 0x01}; /* field 31, varint 1 */
	memcpy(msg + 18 + body, unknown, 3);
	body += 3;
	uint8_t sig[64];
	crypto_sign_detached(sig, NULL, msg, 18 + body, c->sk);
	Gridex__V1__SignedRequest sr = GRIDEX__V1__SIGNED_REQUEST__INIT;
	sr.body.data = msg + 18;
	sr.body.len = body;
	sr.signature.data = sig;
	sr.signature.len = 64;
	Gridex__V1__ClientFrame cf = GRIDEX__V1__CLIENT_FRAME__INIT;
	cf.request = &sr;
	uint8_t frame[1024];
	size_t n = gridex__v1__client_frame__pack(&cf, frame);
	ck_assert(tclient_send_frame(c, frame, n));
	return q->nonce;
}

static Gridex__V1__Request order_req(uint64_t coid, int side, int64_t price, int64_t qty)
{
	return tclient_order_req(coid, product, side, price, qty);
}

/* A framing error gets a PROTOCOL reject, then the connection closes. */
static void expect_protocol_close(struct tclient *c)
{
	bool closed = false;
	Gridex__V1__ServerFrame *f = tclient_recv(c, 5000, &closed);
	ck_assert_msg(f && f->reject && f->reject->reason == GRIDEX__V1__REJECT_REASON__PROTOCOL,
		      "expected a PROTOCOL reject");
	gridex__v1__server_frame__free_unpacked(f, NULL);
	f = tclient_recv(c, 5000, &closed);
	ck_assert_ptr_null(f);
	ck_assert(closed);
}

START_TEST(every_rejection_path)
{
	Gridex__V1__Request q = order_req(1, GRIDEX__V1__SIDE__BUY, 1000000, 1);
	uint8_t frame[2048];
	/* Bad signature: one flipped bit of the signature. */
	size_t n = tclient_pack(&buyer, &q, buyer.sk, frame, sizeof(frame));
	frame[n - 1] ^= 1;
	ck_assert(tclient_send_frame(&buyer, frame, n));
	ck_assert_int_eq(tclient_answer(&buyer, q.nonce), GRIDEX__V1__REJECT_REASON__BAD_SIGNATURE);
	/* Wrong key: signed by the seller's key for the buyer's account. */
	q = order_req(1, GRIDEX__V1__SIDE__BUY, 1000000, 1);
	ck_assert_int_eq(tclient_answer(&buyer, tclient_send(&buyer, &q, seller.sk)),
			 GRIDEX__V1__REJECT_REASON__BAD_SIGNATURE);
	/* Replayed bytes: on the same connection and on another one. */
	q = order_req(1, GRIDEX__V1__SIDE__BUY, 1000000, 1);
	n = tclient_pack(&buyer, &q, buyer.sk, frame, sizeof(frame));
	ck_assert(tclient_send_frame(&buyer, frame, n));
	ck_assert_int_eq(tclient_answer(&buyer, q.nonce), 0);
	ck_assert(tclient_send_frame(&buyer, frame, n));
	ck_assert_int_eq(tclient_answer(&buyer, q.nonce), GRIDEX__V1__REJECT_REASON__STALE_NONCE);
	struct tclient other = {0};
	tclient_connect(&other, &srv);
	ck_assert(tclient_send_frame(&other, frame, n));
	ck_assert_int_eq(tclient_answer(&other, q.nonce), GRIDEX__V1__REJECT_REASON__STALE_NONCE);
	tclient_close(&other);
	/* Expired, and expiring too far ahead. */
	q = order_req(2, GRIDEX__V1__SIDE__BUY, 1000000, 1);
	q.expires_at_ms = (int64_t)time(NULL) * 1000 - 1000;
	ck_assert_int_eq(tclient_answer(&buyer, tclient_send(&buyer, &q, buyer.sk)),
			 GRIDEX__V1__REJECT_REASON__EXPIRED);
	q = order_req(2, GRIDEX__V1__SIDE__BUY, 1000000, 1);
	q.expires_at_ms = (int64_t)time(NULL) * 1000 + 3600000;
	ck_assert_int_eq(tclient_answer(&buyer, tclient_send(&buyer, &q, buyer.sk)),
			 GRIDEX__V1__REJECT_REASON__EXPIRY_TOO_FAR);
	/* An unknown field inside the signed body. */
	q = order_req(2, GRIDEX__V1__SIDE__BUY, 1000000, 1);
	/* The reject names the request (its nonce), though nothing of it was accepted. */
	ck_assert_int_eq(tclient_answer(&buyer, send_with_extra(&buyer, &q)),
			 GRIDEX__V1__REJECT_REASON__MALFORMED);
	/* Invalid UTF-8 where a product goes. */
	q = order_req(2, GRIDEX__V1__SIDE__BUY, 1000000, 1);
	uint8_t bad[] = {'H', 0xc3, 0x28, '/', 'x'};
	q.product.data = bad;
	q.product.len = sizeof(bad);
	ck_assert_int_eq(tclient_answer(&buyer, tclient_send(&buyer, &q, buyer.sk)),
			 GRIDEX__V1__REJECT_REASON__MALFORMED);
	/* Money and capacity. */
	q = order_req(3, GRIDEX__V1__SIDE__BUY, 90000000, 2);
	ck_assert_int_eq(tclient_answer(&buyer, tclient_send(&buyer, &q, buyer.sk)),
			 GRIDEX__V1__REJECT_REASON__INSUFFICIENT_FUNDS);
	q = order_req(4, GRIDEX__V1__SIDE__SELL, 3000000, 11);
	ck_assert_int_eq(tclient_answer(&seller, tclient_send(&seller, &q, seller.sk)),
			 GRIDEX__V1__REJECT_REASON__INSUFFICIENT_CAPACITY);
	/* Someone else's order cannot be cancelled: it is not among one's own. */
	Gridex__V1__Request c = GRIDEX__V1__REQUEST__INIT;
	c.type = GRIDEX__V1__REQUEST_TYPE__CANCEL;
	c.target_client_order_id = 1; /* the buyer's resting order */
	ck_assert_int_eq(tclient_answer(&seller, tclient_send(&seller, &c, seller.sk)),
			 GRIDEX__V1__REJECT_REASON__UNKNOWN_ORDER);
	/* Operator requests from a participant; requests for another account. */
	Gridex__V1__Request d = GRIDEX__V1__REQUEST__INIT;
	d.type = GRIDEX__V1__REQUEST_TYPE__DEPOSIT;
	d.target_account = SELLER;
	d.amount = 5;
	ck_assert_int_eq(tclient_answer(&seller, tclient_send(&seller, &d, seller.sk)),
			 GRIDEX__V1__REJECT_REASON__NOT_AUTHORIZED);
	q = order_req(5, GRIDEX__V1__SIDE__BUY, 1000000, 1);
	q.account = SELLER;
	ck_assert_int_eq(tclient_answer(&buyer, tclient_send(&buyer, &q, seller.sk)),
			 GRIDEX__V1__REJECT_REASON__MALFORMED);
	/* Halted product, then resumed. */
	ck_assert_int_eq(
		tclient_operator(&op, GRIDEX__V1__REQUEST_TYPE__HALT, 0, product, 0, NULL, NULL),
		0);
	q = order_req(6, GRIDEX__V1__SIDE__BUY, 1000000, 1);
	ck_assert_int_eq(tclient_answer(&buyer, tclient_send(&buyer, &q, buyer.sk)),
			 GRIDEX__V1__REJECT_REASON__PRODUCT_HALTED);
	ck_assert_int_eq(
		tclient_operator(&op, GRIDEX__V1__REQUEST_TYPE__RESUME, 0, product, 0, NULL, NULL),
		0);
	q = order_req(6, GRIDEX__V1__SIDE__BUY, 1000000, 1);
	ck_assert_int_eq(tclient_answer(&buyer, tclient_send(&buyer, &q, buyer.sk)), 0);
	/* Unknown account. */
	struct tclient stranger = {0};
	tclient_keys(&stranger, 77);
	tclient_connect(&stranger, &srv);
	q = order_req(1, GRIDEX__V1__SIDE__BUY, 1000000, 1);
	ck_assert_int_eq(tclient_answer(&stranger, tclient_send(&stranger, &q, stranger.sk)),
			 GRIDEX__V1__REJECT_REASON__UNKNOWN_ACCOUNT);
	/* Zero-length and oversized frames close the connection after saying why. */
	const uint8_t zero[4] = {0, 0, 0, 0};
	ck_assert(tclient_write(&stranger, zero, 4));
	expect_protocol_close(&stranger);
	tclient_close(&stranger);
	tclient_connect(&stranger, &srv);
	const uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
	ck_assert(tclient_write(&stranger, huge, 4));
	expect_protocol_close(&stranger);
	tclient_close(&stranger);
	tclient_connect(&stranger, &srv);
	const uint8_t garbage[] = {0, 0, 0, 3, 0x42, 0x01, 0x00};
	ck_assert(tclient_write(&stranger, garbage, sizeof(garbage)));
	expect_protocol_close(&stranger);
	tclient_close(&stranger);
	/* Through all of it the others were served. */
	q = order_req(7, GRIDEX__V1__SIDE__BUY, 1000000, 1);
	ck_assert_int_eq(tclient_answer(&buyer, tclient_send(&buyer, &q, buyer.sk)), 0);
}
END_TEST

START_TEST(order_rate_limit)
{
	/* Its own server: one order request per second, a burst of 3; one query per second,
	 * a burst of 2. */
	stop_all();
	tserver_forget_journal(&srv); /* other core settings: a new journal */
	static const char *const slow[] = {"--orders-per-second=1", "--orders-burst=3",
					   "--queries-per-second=1", "--queries-burst=2", NULL};
	tserver_start(&srv, slow);
	connect_all();
	Gridex__V1__Request c = GRIDEX__V1__REQUEST__INIT;
	c.type = GRIDEX__V1__REQUEST_TYPE__CANCEL;
	c.target_client_order_id = 99;
	int limited = 0;
	for (int i = 0; i < 5; i++) {
		c.nonce = 0;
		int r = tclient_answer(&buyer, tclient_send(&buyer, &c, buyer.sk));
		ck_assert(r == GRIDEX__V1__REJECT_REASON__UNKNOWN_ORDER ||
			  r == GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
		limited += r == GRIDEX__V1__REJECT_REASON__RATE_LIMITED;
	}
	ck_assert_int_ge(limited, 1);
	ck_assert_int_le(limited, 2);
	/* Queries have their own bucket: two at once, then about one a second; the
	 * operator's are not limited. */
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.type = GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE;
	limited = 0;
	for (int i = 0; i < 4; i++) {
		q.nonce = 0;
		int r = tclient_answer(&seller, tclient_send(&seller, &q, seller.sk));
		ck_assert(r == 0 || r == GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
		limited += r == GRIDEX__V1__REJECT_REASON__RATE_LIMITED;
	}
	ck_assert_int_ge(limited, 1);
	ck_assert_int_le(limited, 2);
	for (int i = 0; i < 10; i++)
		gridex__v1__query_result__free_unpacked(
			query(&op, GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE), NULL);
	/* The query settings are not in the journal's fingerprint: the same journal goes on
	 * under others, and they apply (no query limit now). */
	stop_all();
	static const char *const other[] = {"--orders-per-second=1",   "--orders-burst=3",
					    "--queries-per-second=0",  "--query-rows-max=10",
					    "--query-bytes-max=65536", NULL};
	tserver_start(&srv, other);
	connect_all();
	for (int i = 0; i < 5; i++)
		gridex__v1__query_result__free_unpacked(
			query(&seller, GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE), NULL);
	/* query_rows_per_second: one bucket for every participant's queries. 63 rows hold
	 * one balance query (32 rows, and none answered) and not two; the operator's are
	 * not counted. */
	stop_all();
	static const char *const shared[] = {"--orders-per-second=1",  "--orders-burst=3",
					     "--queries-per-second=0", "--query-rows-per-second=1",
					     "--query-rows-burst=63",  NULL};
	tserver_start(&srv, shared);
	connect_all();
	q.nonce = 0;
	q.expires_at_ms = 0;
	ck_assert_int_eq(tclient_answer(&seller, tclient_send(&seller, &q, seller.sk)), 0);
	q.nonce = 0;
	q.account = 0; /* the buyer's own */
	q.expires_at_ms = 0;
	ck_assert_int_eq(tclient_answer(&buyer, tclient_send(&buyer, &q, buyer.sk)),
			 GRIDEX__V1__REJECT_REASON__RATE_LIMITED);
	for (int i = 0; i < 5; i++)
		gridex__v1__query_result__free_unpacked(
			query(&op, GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE), NULL);
}
END_TEST

/* ---------- market data ---------- */

#define LEVELS 64
struct book_model {
	int64_t qty[2][LEVELS]; /* [side index][price / 100000] */
	uint32_t orders[2][LEVELS];
	uint64_t seq;
};

static int side_index(int side)
{
	return side == GRIDEX__V1__SIDE__BUY ? 0 : 1;
}

static void model_snapshot(struct book_model *m, const Gridex__V1__BookSnapshot *s)
{
	memset(m, 0, sizeof(*m));
	m->seq = s->sequence;
	for (size_t i = 0; i < s->n_bids; i++) {
		m->qty[0][s->bids[i]->price / 100000] = s->bids[i]->quantity;
		m->orders[0][s->bids[i]->price / 100000] = s->bids[i]->orders;
	}
	for (size_t i = 0; i < s->n_asks; i++) {
		m->qty[1][s->asks[i]->price / 100000] = s->asks[i]->quantity;
		m->orders[1][s->asks[i]->price / 100000] = s->asks[i]->orders;
	}
}

static bool same_product(const ProtobufCBinaryData *b, const char *p)
{
	return b->len == strlen(p) && memcmp(b->data, p, b->len) == 0;
}

START_TEST(market_data_rebuilds_the_book)
{
	struct tclient sub = {0};
	tclient_connect(&sub, &srv);
	ck_assert_int_eq(tclient_operator(&op, GRIDEX__V1__REQUEST_TYPE__SET_CAPACITY, SELLER,
					  "H100-80G", 1000000, NULL, NULL),
			 0);
	ck_assert_int_eq(tclient_operator(&op, GRIDEX__V1__REQUEST_TYPE__DEPOSIT, BUYER, NULL,
					  INT64_C(1000000000000), NULL, NULL),
			 0);
	/* One order in each product first, so that the class subscription's answer (a
	 * snapshot per existing product) tells when the subscription is in place. */
	struct book_model m[2] = {0};
	const char *products[2] = {product, product2};
	for (int b = 0; b < 2; b++) {
		uint64_t n = tclient_order(&buyer, 900 + (uint64_t)b, products[b],
					   GRIDEX__V1__SIDE__BUY, 500000, 1);
		ck_assert_int_eq(tclient_answer(&buyer, n), 0);
	}
	tclient_subscribe(&sub, "H100-80G", true);
	for (int got = 0; got < 2;) {
		bool closed;
		Gridex__V1__ServerFrame *f = tclient_recv(&sub, 10000, &closed);
		ck_assert_msg(f && f->snapshot, "expected the class's snapshots");
		int b = same_product(&f->snapshot->product, product) ? 0 : 1;
		model_snapshot(&m[b], f->snapshot);
		ck_assert_uint_eq(m[b].seq, 1); /* the one resting bid */
		gridex__v1__server_frame__free_unpacked(f, NULL);
		got++;
	}
	uint64_t rng = 42;
	uint64_t last_b = 0, last_s = 0;
	for (int i = 0; i < 400; i++) {
		rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
		uint32_t r = (uint32_t)(rng >> 33);
		struct tclient *c = r % 2 ? &buyer : &seller;
		int side = c == &buyer ? GRIDEX__V1__SIDE__BUY : GRIDEX__V1__SIDE__SELL;
		Gridex__V1__Request q =
			order_req(1 + (r >> 8) % 100, side, (int64_t)(10 + (r >> 3) % 40) * 100000,
				  1 + (r >> 12) % 3);
		const char *p = (r >> 20) % 2 ? product : product2;
		q.product.data = (uint8_t *)p;
		q.product.len = strlen(p);
		if (r % 5 == 0) {
			q = (Gridex__V1__Request)GRIDEX__V1__REQUEST__INIT;
			q.type = GRIDEX__V1__REQUEST_TYPE__CANCEL;
			q.target_client_order_id = 1 + (r >> 8) % 100;
		}
		uint64_t n = tclient_send(c, &q, c->sk);
		if (c == &buyer)
			last_b = n;
		else
			last_s = n;
	}
	ck_assert_int_ge(tclient_answer(&buyer, last_b), 0);
	ck_assert_int_ge(tclient_answer(&seller, last_s), 0);
	/* Rebuild both books from the subscription, then ask again for fresh snapshots:
	 * they come after every update sent before them. */
	tclient_subscribe(&sub, product, false);
	tclient_subscribe(&sub, product2, false);

	int fresh = 0, updates = 0, trades = 0;
	while (fresh < 2) {
		bool closed;
		Gridex__V1__ServerFrame *f = tclient_recv(&sub, 10000, &closed);
		ck_assert_msg(f != NULL, "market data stopped");
		if (f->update) {
			int b = same_product(&f->update->product, product) ? 0 : 1;
			ck_assert_uint_eq(f->update->sequence, m[b].seq + 1);
			m[b].seq = f->update->sequence;
			int s = side_index(f->update->side);
			m[b].qty[s][f->update->price / 100000] = f->update->quantity;
			m[b].orders[s][f->update->price / 100000] = f->update->orders;
			updates++;
		} else if (f->trade) {
			trades++;
		} else if (f->snapshot) {
			int b = same_product(&f->snapshot->product, product) ? 0 : 1;
			struct book_model fresh_model;
			model_snapshot(&fresh_model, f->snapshot);
			ck_assert_uint_eq(fresh_model.seq, m[b].seq);
			ck_assert_mem_eq(fresh_model.qty, m[b].qty, sizeof(m[b].qty));
			ck_assert_mem_eq(fresh_model.orders, m[b].orders, sizeof(m[b].orders));
			fresh++;
		}
		gridex__v1__server_frame__free_unpacked(f, NULL);
	}
	ck_assert_int_gt(updates, 100);
	ck_assert_int_gt(trades, 10);
	tclient_close(&sub);
}
END_TEST

/* ---------- queries, restart, slow readers, metrics ---------- */

START_TEST(queries_and_restart)
{
	uint64_t n = tclient_order(&buyer, 5, product, GRIDEX__V1__SIDE__BUY, 2000000, 2);
	ck_assert_int_eq(tclient_answer(&buyer, n), 0);
	struct timespec t0, t1;
	clock_gettime(CLOCK_REALTIME, &t0);
	n = tclient_order(&seller, 6, product, GRIDEX__V1__SIDE__SELL, 2000000, 1);
	ck_assert_int_eq(tclient_answer(&seller, n), 0);
	clock_gettime(CLOCK_REALTIME, &t1);
	Gridex__V1__QueryResult *r = query(&buyer, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS);
	ck_assert_uint_eq(r->n_orders, 1);
	ck_assert_uint_eq(r->orders[0]->client_order_id, 5);
	ck_assert_int_eq(r->orders[0]->leaves_quantity, 1);
	ck_assert(same_product(&r->orders[0]->product, product));
	uint64_t maker_id = r->orders[0]->order_id;
	gridex__v1__query_result__free_unpacked(r, NULL);
	r = query(&seller, GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS);
	ck_assert_uint_eq(r->n_fills, 1);
	ck_assert_int_eq(r->fills[0]->last_price, 2000000);
	ck_assert_int_eq(r->fills[0]->fee, 4000); /* taker 20 bps */
	uint64_t taker_id = r->fills[0]->order_id, fill_id = r->fills[0]->fill_id;
	gridex__v1__query_result__free_unpacked(r, NULL);
	r = query(&buyer, GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE);
	ck_assert_uint_eq(r->n_balances, 1);
	int64_t available = CASH - 2000000 - 2000;
	ck_assert_int_eq(r->balances[0]->available, available);
	ck_assert_int_gt(r->balances[0]->reserved, 2000000);
	gridex__v1__query_result__free_unpacked(r, NULL);
	/* A withdrawal above what is free is refused; below it, it settles. */
	ck_assert_int_eq(tclient_operator(&op, GRIDEX__V1__REQUEST_TYPE__WITHDRAW, BUYER, NULL,
					  available, NULL, NULL),
			 GRIDEX__V1__REJECT_REASON__INSUFFICIENT_FUNDS);
	ck_assert_int_eq(tclient_operator(&op, GRIDEX__V1__REQUEST_TYPE__WITHDRAW, BUYER, NULL,
					  1000000, NULL, NULL),
			 0);
	available -= 1000000;
	/* Restart: participants, keys and balances come back from the ledger. */
	stop_all();
	ck_assert_int_eq(balance(BUYER), available);
	/* ledger.fills says what was traded, as the reports did, the seller the taker, at
	 * the time the seller's order was journaled. */
	char sql[1024];
	snprintf(sql, sizeof(sql),
		 "select count(*) from ledger.fills where id = %llu and product = '%s' and "
		 "price = 2000000 and quantity = 1 and buyer = %d and seller = %d and "
		 "aggressor = 'sell' and taker_order_id = %llu and maker_order_id = %llu and "
		 "(extract(epoch from traded_at) * 1000)::bigint between %lld and %lld",
		 (unsigned long long)fill_id, product, BUYER, SELLER, (unsigned long long)taker_id,
		 (unsigned long long)maker_id, (long long)t0.tv_sec * 1000 + t0.tv_nsec / 1000000,
		 (long long)t1.tv_sec * 1000 + t1.tv_nsec / 1000000);
	ck_assert_msg(sql_int(sql) == 1, "%s", sql);
	ck_assert_int_eq(sql_int("select count(*) from ledger.fills"), 1);
	/* The journal tools, offline: statistics, and a replay into events. */
	char cmd[4096];
	snprintf(cmd, sizeof(cmd),
		 "%s --journal-verify=%s/journal > %s/verify.out && %s --journal-replay=%s/journal "
		 "--operator-account=%u --maker-bps=10 --taker-bps=20 > %s/replay.out 2>/dev/null",
		 GRIDEX_TEST_GRIDEXD, srv.dir, srv.dir, GRIDEX_TEST_GRIDEXD, srv.dir,
		 srv.op_account, srv.dir);
	ck_assert_int_eq(system(cmd), 0);
	char text[65536];
	snprintf(cmd, sizeof(cmd), "%s/verify.out", srv.dir);
	FILE *tf = fopen(cmd, "r");
	size_t got = fread(text, 1, sizeof(text) - 1, tf);
	text[got] = '\0';
	fclose(tf);
	ck_assert_msg(strstr(text, "no torn tail") && strstr(text, "genesis 1"), "%s", text);
	snprintf(cmd, sizeof(cmd), "%s/replay.out", srv.dir);
	tf = fopen(cmd, "r");
	got = fread(text, 1, sizeof(text) - 1, tf);
	text[got] = '\0';
	fclose(tf);
	/* The buyer's bid 5: NEW, then a partial fill of 1 at 2.00. */
	ck_assert_msg(strstr(text, ",NEW_ORDER,account=1,") && strstr(text, "E,1,5,NEW,") &&
			      strstr(text, "E,1,5,PARTIAL_FILL,") &&
			      strstr(text, ",2000000,1,1,1,1\n"),
		      "%s", text);
	/* The journal replays only under the settings it was written with: another fee, or
	 * another book_retain_ms. */
	char hex[65];
	sodium_bin2hex(hex, sizeof(hex), srv.op_pk, 32);
	static const char *const changed[] = {"--taker-bps=21",
					      "--taker-bps=20 --book-retain-ms=3600000"};
	for (int i = 0; i < 2; i++) {
		snprintf(cmd, sizeof(cmd),
			 "%s --tls-cert=%s/cert.pem --tls-key=%s/key.pem --database-url='%s' "
			 "--listen=127.0.0.1:0 --metrics-listen= --journal-dir=%s/journal "
			 "--operator-account=%u --operator-key=%s --maker-bps=10 %s "
			 "--log-file=%s/mismatch.log",
			 GRIDEX_TEST_GRIDEXD, srv.dir, srv.dir, pgt.app_url, srv.dir,
			 srv.op_account, hex, changed[i], srv.dir);
		int status = system(cmd);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1, "%s", changed[i]);
		snprintf(cmd, sizeof(cmd), "%s/mismatch.log", srv.dir);
		tf = fopen(cmd, "r");
		got = fread(text, 1, sizeof(text) - 1, tf);
		text[got] = '\0';
		fclose(tf);
		ck_assert_msg(strstr(text, "under other settings") != NULL, "%s", text);
		unlink(cmd);
	}
	/* A torn tail (half a record appended) is reported, then cut by the restart. */
	snprintf(cmd, sizeof(cmd),
		 "printf '\\100\\0\\0\\0abc' >> $(ls %s/journal/journal-* | tail -1) && %s "
		 "--journal-verify=%s/journal "
		 "| grep -q 'torn'",
		 srv.dir, GRIDEX_TEST_GRIDEXD, srv.dir);
	ck_assert_int_eq(system(cmd), 0);
	static const char *const fees[] = {"--maker-bps=10", "--taker-bps=20", NULL};
	tserver_start(&srv, fees);
	connect_all();
	r = query(&buyer, GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE);
	ck_assert_int_eq(r->balances[0]->available, available);
	ck_assert_int_gt(r->balances[0]->reserved, 0); /* the resting bid came back */
	gridex__v1__query_result__free_unpacked(r, NULL);
	r = query(&buyer, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS);
	ck_assert_uint_eq(r->n_orders, 1);
	ck_assert_uint_eq(r->orders[0]->client_order_id, 5);
	ck_assert_int_eq(r->orders[0]->leaves_quantity, 1);
	gridex__v1__query_result__free_unpacked(r, NULL);
	/* Sequence numbers continue above the ledger's batches. */
	n = tclient_order(&buyer, 7, product, GRIDEX__V1__SIDE__BUY, 2000000, 1);
	struct tclient *c = &buyer;
	for (;;) {
		bool closed;
		Gridex__V1__ServerFrame *f = tclient_recv(c, 5000, &closed);
		ck_assert_ptr_nonnull(f);
		if (f->ack && f->ack->nonce == n) {
			ck_assert_int_gt(f->ack->sequence,
					 sql_int("select max(id) from ledger.batches"));
			gridex__v1__server_frame__free_unpacked(f, NULL);
			break;
		}
		gridex__v1__server_frame__free_unpacked(f, NULL);
	}
	ck_assert_int_eq(pgtest_audit(), 0);
}
END_TEST

START_TEST(slow_reader_is_dropped_others_trade_on)
{
	stop_all();
	tserver_forget_journal(&srv); /* other core settings: a new journal */
	static const char *const small[] = {"--out-buffer-soft-bytes=4096",
					    "--out-buffer-hard-bytes=16384",
					    "--orders-per-second=0", NULL};
	tserver_start(&srv, small);
	connect_all();
	ck_assert_int_eq(tclient_operator(&op, GRIDEX__V1__REQUEST_TYPE__DEPOSIT, BUYER, NULL,
					  INT64_C(1000000000000), NULL, NULL),
			 0);
	/* A subscriber that never reads; its socket buffer is small. */
	struct tclient lazy = {.rcvbuf = 4096};
	tclient_connect(&lazy, &srv);
	tclient_subscribe(&lazy, "H100-80G", true);
	uint64_t n = 0;
	for (int i = 0; i < 6000; i++) {
		Gridex__V1__Request q = order_req(1 + i % 500, GRIDEX__V1__SIDE__BUY,
						  (int64_t)(1 + i % 60) * 100000, 1);
		if (i >= 500) {
			q = (Gridex__V1__Request)GRIDEX__V1__REQUEST__INIT;
			q.type = GRIDEX__V1__REQUEST_TYPE__MODIFY;
			q.target_client_order_id = 1 + i % 500;
			q.price = (int64_t)(1 + (i * 7) % 60) * 100000;
			q.quantity = 1 + i % 3;
		}
		n = tclient_send(&buyer, &q, buyer.sk);
		if (i % 50 == 0)
			ck_assert_int_eq(tclient_answer(&buyer, n), 0);
	}
	tclient_answer(&buyer, n);
	/* The server cut the lazy subscriber off and kept serving the buyer. */
	bool closed = false;
	for (int i = 0; i < 100000 && !closed; i++) {
		Gridex__V1__ServerFrame *f = tclient_recv(&lazy, 2000, &closed);
		ck_assert_msg(f != NULL || closed,
			      "lazy subscriber still connected after %d frames: %s", i,
			      tserver_log(&srv));
		if (f)
			gridex__v1__server_frame__free_unpacked(f, NULL);
	}
	ck_assert(closed);
	tclient_close(&lazy);
	Gridex__V1__Request q = order_req(9999, GRIDEX__V1__SIDE__BUY, 100000, 1);
	ck_assert_int_eq(tclient_answer(&buyer, tclient_send(&buyer, &q, buyer.sk)), 0);
	ck_assert_msg(strstr(tserver_log(&srv), "does not read its replies") != NULL, "%s",
		      tserver_log(&srv));
}
END_TEST

/* A raw TCP connection (no TLS) to the order port. */
static int raw_connect(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv.port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* Whether the server closes fd within ms (reads and discards what it sends). */
static bool closed_within(int fd, int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char buf[4096];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
		if (n < 0)
			return false; /* timeout */
	}
}

START_TEST(connection_limits)
{
	stop_all();
	tserver_forget_journal(&srv); /* other core settings: a new journal */
	static const char *const tight[] = {"--handshake-timeout-ms=1500", "--partial-frame-ms=300",
					    "--idle-timeout-ms=2500", "--max-unauth-per-ip=5",
					    NULL};
	tserver_start(&srv, tight);
	connect_all();
	/* op, buyer and seller have not sent anything: three unauthenticated connections.
	 * Two more fit; the next is refused at accept, long before any timeout. */
	int a = raw_connect(), b = raw_connect(), c = raw_connect();
	ck_assert(closed_within(c, 1000));
	close(a);
	close(b);
	close(c);
	struct timespec settle = {.tv_nsec = 200000000}; /* the server sees the closes */
	nanosleep(&settle, NULL);
	/* A connection that never starts TLS, and garbage instead of a ClientHello. */
	int silent = raw_connect();
	ck_assert(closed_within(silent, 6000));
	close(silent);
	int garbage = raw_connect();
	ck_assert_int_eq(write(garbage, "GET / HTTP/1.0\r\n\r\n", 18), 18);
	ck_assert(closed_within(garbage, 6000));
	close(garbage);
	/* A frame started and never finished. */
	struct tclient slow = {0};
	tclient_connect(&slow, &srv);
	ck_assert(tclient_write(&slow, "\0\0", 2));
	bool closed = false;
	ck_assert_ptr_null(tclient_recv(&slow, 3000, &closed));
	ck_assert(closed);
	tclient_close(&slow);
	/* Idle: nothing sent for idle_timeout_ms. A signed request authenticates a connection
	 * (it no longer counts per IP) but idleness still closes it. The buyer's first
	 * connection was idle long enough already. */
	tclient_close(&buyer);
	tclient_connect(&buyer, &srv);
	uint64_t n = tclient_order(&buyer, 1, product, GRIDEX__V1__SIDE__BUY, 1000000, 1);
	ck_assert_int_eq(tclient_answer(&buyer, n), 0);
	Gridex__V1__ServerFrame *f;
	while ((f = tclient_recv(&buyer, 8000, &closed)) != NULL)
		gridex__v1__server_frame__free_unpacked(f, NULL);
	ck_assert(closed);
	/* A subscriber is not idle: it is receiving. */
	struct tclient sub = {0};
	tclient_connect(&sub, &srv);
	tclient_subscribe(&sub, product, false);
	f = tclient_recv(&sub, 3000, &closed);
	ck_assert_msg(f && f->snapshot, "no snapshot");
	gridex__v1__server_frame__free_unpacked(f, NULL);
	/* Longer than idle_timeout_ms (2,500). */
	ck_assert_ptr_null(tclient_recv(&sub, 4000, &closed));
	ck_assert(!closed);
	tclient_close(&sub);
	const char *log = tserver_log(&srv);
	ck_assert_msg(strstr(log, "handshake_timeout_ms") && strstr(log, "partial_frame_ms") &&
			      strstr(log, "max_unauth_per_ip") && strstr(log, "idle_timeout_ms"),
		      "%s", log);
}
END_TEST

START_TEST(one_writer_per_ledger)
{
	/* gridex-admin refuses to move money while gridexd runs... */
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "%s --database='%s' deposit %d 5 2>%s/admin.err",
		 GRIDEX_TEST_ADMIN, pgt.app_url, BUYER, srv.dir);
	int rc = system(cmd);
	ck_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
	const char *err = tfile_read(srv.dir, "admin.err");
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err, "operator requests") != NULL, "%s", err);
	/* ...and a second gridexd on the same ledger does not start. */
	snprintf(cmd, sizeof(cmd),
		 "%s --tls-cert=%s/cert.pem --tls-key=%s/key.pem --database-url='%s' "
		 "--listen=127.0.0.1:0 --metrics-listen= --log-file=%s/second.log "
		 "--journal-dir=%s/journal2",
		 GRIDEX_TEST_GRIDEXD, srv.dir, srv.dir, pgt.app_url, srv.dir, srv.dir);
	rc = system(cmd);
	ck_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
	err = tfile_read(srv.dir, "second.log");
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err, "writer lock") != NULL, "%s", err);
	/* Stopped, gridexd's journal still owns the balances: gridex-admin still refuses
	 * (a deposit the journal did not see would make the server's balances wrong). */
	stop_all();
	snprintf(cmd, sizeof(cmd), "%s --database='%s' deposit %d 5 2>%s/admin.err",
		 GRIDEX_TEST_ADMIN, pgt.app_url, BUYER, srv.dir);
	rc = system(cmd);
	ck_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
	err = tfile_read(srv.dir, "admin.err");
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err, "journal owns this ledger") != NULL, "%s", err);
	ck_assert_int_eq(balance(BUYER), CASH);
	static const char *const fees[] = {"--maker-bps=10", "--taker-bps=20", NULL};
	tserver_start(&srv, fees);
	connect_all();
}
END_TEST

/* gridexd's writer lock is on its ledger connection's session: when that session ends
 * (a restart of PostgreSQL, a terminated backend) the lock goes with it, and another
 * process may take it. gridexd writes no batch until it holds the lock again. */
START_TEST(writer_lock_is_taken_again_after_a_lost_connection)
{
	PGconn *other = pgtest_writer_lock_take();
	int64_t batches = sql_int("select count(*) from ledger.batches");
	uint64_t n = tclient_order(&buyer, 11, product, GRIDEX__V1__SIDE__BUY, 2500000, 4);
	ck_assert_int_eq(tclient_answer(&buyer, n), 0);
	n = tclient_order(&seller, 21, product, GRIDEX__V1__SIDE__SELL, 2500000, 4);
	ck_assert_int_eq(tclient_answer(&seller, n), 0);
	Gridex__V1__ExecutionReport *r = wait_report(&seller, GRIDEX__V1__EXEC_TYPE__FILL, 21);
	gridex__v1__execution_report__free_unpacked(r, NULL);
	/* Traded, not settled: the batch waits while the lock is held elsewhere. */
	struct timespec wait = {.tv_sec = 2};
	nanosleep(&wait, NULL);
	ck_assert_msg(sql_int("select count(*) from ledger.batches") == batches,
		      "a batch was written without the writer lock: %s", tserver_log(&srv));
	/* Released: the writer takes the lock and settles. */
	pgtest_writer_lock_release(other);
	wait_fills_settled(1);
	/* (Of this database: the suites beside it run gridexd on theirs.) */
	ck_assert_int_eq(pgtest_sql_int(other,
					"select count(*) from pg_locks l join pg_database d "
					"on d.oid = l.database where l.locktype = 'advisory' "
					"and l.objid = 724302 and l.granted and d.datname = "
					"current_database()"),
			 1);
	ck_assert_int_eq(pgtest_audit(), 0);
	PQfinish(other);
}
END_TEST

static const char *const stages[] = {"verify", "journal", "core", "deliver", "total", "sync"};

/* Checks the stage histograms of a metrics page; fills count[] by stage. */
static void stage_counts(const char *body, double count[6])
{
	for (int st = 0; st < 6; st++) {
		char name[128];
		snprintf(name, sizeof(name), "gridex_request_stage_seconds_count{stage=\"%s\"}",
			 stages[st]);
		count[st] = tmetric(body, name);
		ck_assert_msg(count[st] >= 0, "no %s in %s", name, body);
		/* Buckets are cumulative and end with every answer. */
		double prev = 0;
		for (const char *p = body;
		     (p = strstr(p, "gridex_request_stage_seconds_bucket{"));) {
			char want[64];
			snprintf(want, sizeof(want), "{stage=\"%s\",", stages[st]);
			const char *eol = strchr(p, '\n');
			bool mine = strncmp(p + strlen("gridex_request_stage_seconds_bucket"), want,
					    strlen(want)) == 0;
			if (mine) {
				double v = strtod(strchr(p, '}') + 2, NULL);
				ck_assert_msg(v >= prev, "%.60s", p);
				prev = v;
			}
			p = eol ? eol : p + 1;
		}
		ck_assert_msg(prev == count[st], "%s: +Inf %.0f, count %.0f", stages[st], prev,
			      count[st]);
	}
}

/* A class subscription's snapshots are of its products still open, however many closed
 * ones the class has: they once took the first 256 books of the class, oldest first,
 * so that once a class had traded 256 hours its open products got no snapshot (and
 * a client's book saw a gap at their first update). */
START_TEST(class_snapshots_are_of_open_products)
{
	/* 300 past delivery hours of one class, each given a book by a HALT. */
	char past[64];
	for (int h = 1; h <= 300; h++) {
		tproduct(past, sizeof(past), "H100-80G", -h);
		ck_assert_int_eq(tclient_operator(&op, GRIDEX__V1__REQUEST_TYPE__HALT, 0, past, 0,
						  NULL, NULL),
				 0);
	}
	const char *open[2] = {product, product2};
	for (int b = 0; b < 2; b++)
		ck_assert_int_eq(
			tclient_answer(&buyer, tclient_order(&buyer, 800 + (uint64_t)b, open[b],
							     GRIDEX__V1__SIDE__BUY, 500000, 1)),
			0);
	struct tclient sub = {0};
	tclient_connect(&sub, &srv);
	tclient_subscribe(&sub, "H100-80G", false);
	int seen[2] = {0, 0}, others = 0;
	bool closed = false;
	Gridex__V1__ServerFrame *f;
	while ((f = tclient_recv(&sub, 1000, &closed)) != NULL) {
		ck_assert_msg(f->snapshot != NULL, "a frame other than a snapshot");
		if (same_product(&f->snapshot->product, open[0]))
			seen[0]++;
		else if (same_product(&f->snapshot->product, open[1]))
			seen[1]++;
		else
			others++;
		gridex__v1__server_frame__free_unpacked(f, NULL);
	}
	ck_assert_msg(!closed, "subscriber closed");
	ck_assert_msg(seen[0] == 1 && seen[1] == 1 && others == 0,
		      "snapshots: %d and %d of the open products, %d of closed ones", seen[0],
		      seen[1], others);
	/* A closed product named on its own still gets its (empty) snapshot. */
	tproduct(past, sizeof(past), "H100-80G", -1);
	tclient_subscribe(&sub, past, false);
	f = tclient_recv(&sub, 5000, &closed);
	ck_assert_msg(f && f->snapshot && same_product(&f->snapshot->product, past),
		      "no snapshot of %s", past);
	gridex__v1__server_frame__free_unpacked(f, NULL);
	tclient_close(&sub);
}
END_TEST

START_TEST(metrics_endpoint)
{
	double before[6], after[6];
	int status0;
	char *body0 = strdup(thttp_get(srv.metrics_port, "/metrics", &status0));
	ck_assert_int_eq(status0, 200);
	stage_counts(body0, before);
	free(body0);
	uint64_t n = tclient_order(&buyer, 5, product, GRIDEX__V1__SIDE__BUY, 2000000, 2);
	ck_assert_int_eq(tclient_answer(&buyer, n), 0);
	int status;
	const char *body = thttp_get(srv.metrics_port, "/metrics", &status);
	ck_assert_msg(status == 200, "%s", body);
	ck_assert_msg(
		strstr(body, "gridex_requests_total{type=\"NEW_ORDER\",result=\"accepted\"} 1") !=
			NULL,
		"%s", body);
	ck_assert_msg(
		strstr(body,
		       "gridex_requests_total{type=\"REGISTER_ACCOUNT\",result=\"accepted\"} 2") !=
			NULL,
		"%s", body);
	ck_assert_msg(strstr(body, "gridex_connections 3") != NULL, "%s", body);
	ck_assert_msg(strstr(body, "gridex_orders_resting 1") != NULL, "%s", body);
	ck_assert_msg(strstr(body, "gridex_verify_queue_depth 0") != NULL, "%s", body);
	/* The one order went through every stage once, covered by one or more syncs. */
	stage_counts(body, after);
	for (int st = 0; st < 5; st++)
		ck_assert_msg(after[st] == before[st] + 1, "%s: %.0f then %.0f", stages[st],
			      before[st], after[st]);
	ck_assert_msg(after[5] >= before[5] + 1, "sync: %.0f then %.0f", before[5], after[5]);
	/* The seller takes the bid: every committed settlement batch is in the lag
	 * histogram once; its buckets are cumulative, 1 s is one of their bounds. */
	n = tclient_order(&seller, 6, product, GRIDEX__V1__SIDE__SELL, 2000000, 2);
	ck_assert_int_eq(tclient_answer(&seller, n), 0);
	wait_fills_settled(1);
	char *settled = strdup(thttp_get(srv.metrics_port, "/metrics", &status));
	ck_assert_int_eq(status, 200);
	double batches = tmetric(settled, "gridex_settlement_batches_total");
	double lags = tmetric(settled, "gridex_settlement_lag_seconds_count");
	ck_assert_msg(batches >= 1 && lags == batches, "batches %.0f, lag histogram %.0f", batches,
		      lags);
	double prev = 0;
	for (const char *p = settled; (p = strstr(p, "gridex_settlement_lag_seconds_bucket{le=\""));
	     p++) {
		double v = strtod(strchr(p, '}') + 2, NULL);
		ck_assert_msg(v >= prev, "%.60s", p);
		prev = v;
	}
	ck_assert_msg(prev == lags, "+Inf %.0f, count %.0f", prev, lags);
	ck_assert_msg(tmetric(settled, "gridex_settlement_lag_seconds_bucket{le=\"1\"}") >= 0,
		      "no 1 s bound");
	free(settled);
	/* An order naming a product nobody has named makes its book, for good. */
	double books = tmetric(thttp_get(srv.metrics_port, "/metrics", &status), "gridex_books");
	ck_assert_msg(books >= 1, "gridex_books %g", books);
	char fresh[64];
	tproduct(fresh, sizeof(fresh), "B200-192G", 5);
	n = tclient_order(&buyer, 7, fresh, GRIDEX__V1__SIDE__BUY, 1000000, 1);
	ck_assert_int_eq(tclient_answer(&buyer, n), 0);
	Gridex__V1__Request cancel = GRIDEX__V1__REQUEST__INIT;
	cancel.type = GRIDEX__V1__REQUEST_TYPE__CANCEL;
	cancel.target_client_order_id = 7;
	ck_assert_int_eq(tclient_answer(&buyer, tclient_send(&buyer, &cancel, buyer.sk)), 0);
	ck_assert_msg(tmetric(thttp_get(srv.metrics_port, "/metrics", &status), "gridex_books") ==
			      books + 1,
		      "gridex_books was %g", books);
	/* SIGHUP reopens the log file (logrotate moves it first). */
	char from[128], to[128];
	snprintf(from, sizeof(from), "%s/log", srv.dir);
	snprintf(to, sizeof(to), "%s/log.1", srv.dir);
	ck_assert_int_eq(rename(from, to), 0);
	kill(srv.pid, SIGHUP);
	for (int i = 0; i < 200 && strstr(tserver_log(&srv), "log reopened") == NULL; i++) {
		struct timespec ts = {.tv_nsec = 10000000};
		nanosleep(&ts, NULL);
	}
	ck_assert_msg(strstr(tserver_log(&srv), "log reopened") != NULL, "no new log");
}
END_TEST

/* The Cpus_allowed_list of gridexd's thread called name ("" when it has none). */
static const char *thread_cpus(const char *name)
{
	static char out[512];
	out[0] = '\0';
	char path[384], line[512];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)srv.pid);
	DIR *d = opendir(path);
	ck_assert_ptr_nonnull(d);
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/comm", (int)srv.pid, e->d_name);
		FILE *f = fopen(path, "r");
		bool same = f && fgets(line, sizeof(line), f) &&
			    strcspn(line, "\n") == strlen(name) &&
			    strncmp(line, name, strlen(name)) == 0;
		if (f)
			fclose(f);
		if (!same)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/status", (int)srv.pid, e->d_name);
		f = fopen(path, "r");
		ck_assert_ptr_nonnull(f);
		while (fgets(line, sizeof(line), f)) {
			if (strncmp(line, "Cpus_allowed_list:\t", 19) == 0) {
				line[strcspn(line, "\n")] = '\0';
				snprintf(out, sizeof(out), "%s", line + 19);
			}
		}
		fclose(f);
	}
	closedir(d);
	return out;
}

/* ---------- settlement refused ---------- */

/* Waits up to 15 s for gridex_settlement_halted to read value. */
static void wait_halted(double value)
{
	double got = -1;
	for (int i = 0; i < 1500; i++) {
		int status;
		got = tmetric(thttp_get(srv.metrics_port, "/metrics", &status),
			      "gridex_settlement_halted");
		if (got == value)
			return;
		struct timespec ts = {.tv_nsec = 10000000};
		nanosleep(&ts, NULL);
	}
	ck_abort_msg("gridex_settlement_halted is %.0f, not %.0f: %s", got, value,
		     tserver_log(&srv));
}

/* Participant 3 put into the ledger behind gridexd's back, under a name of its own:
 * the operator's registration of account 3 as "carol" is refused there, with the
 * deposit to carol that follows it queued behind. Returns carol's client (keys). */
static struct tclient refused_registration(void)
{
	PGconn *c = pgtest_connect(pgt.owner_url);
	pgtest_sql_ok(c, "insert into ledger.participants (id, name) values (3, 'intruder')");
	PQfinish(c);
	struct tclient carol = {0};
	tclient_keys(&carol, 3);
	ck_assert_int_eq(tclient_operator(&op, GRIDEX__V1__REQUEST_TYPE__REGISTER_ACCOUNT, 3, NULL,
					  0, carol.pk, "carol"),
			 0);
	ck_assert_int_eq(tclient_operator(&op, GRIDEX__V1__REQUEST_TYPE__DEPOSIT, 3, NULL, 5000000,
					  NULL, NULL),
			 0);
	wait_halted(1);
	ck_assert_ptr_nonnull(tserver_log_line(&srv, "settlement halted"));
	/* Nothing after the refused item reached the ledger. */
	ck_assert_int_eq(sql_int("select count(*) from ledger.accounts where participant = 3"), 0);
	return carol;
}

/* The repair: the intruder removed, behind the append-only triggers' back. */
static void repair_ledger(void)
{
	PGconn *c = pgtest_connect(pgt.owner_url);
	pgtest_sql_ok(c, "set session_replication_role = replica");
	pgtest_sql_ok(c, "delete from ledger.participants where id = 3");
	PQfinish(c);
}

/* Carol is in the ledger under her name with her deposit, and the audit is clean. */
static void carol_settled(void)
{
	/* Her account may not be there yet: 0 until it is. */
	static const char *const cash = "select coalesce(sum(balance), 0) from ledger.accounts "
					"where participant = 3 and kind = 'AVAILABLE'";
	for (int i = 0; i < 1000 && sql_int(cash) != 5000000; i++) {
		struct timespec ts = {.tv_nsec = 10000000};
		nanosleep(&ts, NULL);
	}
	ck_assert_int_eq(balance(3), 5000000);
	ck_assert_int_eq(sql_int("select count(*) from ledger.participants where id = 3 and "
				 "name = 'carol'"),
			 1);
	ck_assert_int_eq(pgtest_audit(), 0);
}

static Gridex__V1__Request modify_req(uint64_t coid, int64_t price, int64_t qty)
{
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.type = GRIDEX__V1__REQUEST_TYPE__MODIFY;
	q.target_client_order_id = coid;
	q.price = price;
	q.quantity = qty;
	return q;
}

/* The ledger refuses an item gridexd journaled: settlement halts there (nothing after
 * it may reach the ledger first), and while it is halted nothing that could trade is
 * taken: new orders and modifies are refused SETTLEMENT_HALTED, cancels and queries
 * still work. Once the ledger is repaired the item and everything behind it settle by
 * themselves, orders are taken again, and they trade and settle. */
START_TEST(refused_settlement_halts_orders_until_repaired)
{
	uint64_t n = tclient_order(&buyer, 1, product, GRIDEX__V1__SIDE__BUY, 2000000, 2);
	ck_assert_int_eq(tclient_answer(&buyer, n), 0);
	(void)refused_registration();
	n = tclient_order(&buyer, 2, product, GRIDEX__V1__SIDE__BUY, 2000000, 1);
	ck_assert_int_eq(tclient_answer(&buyer, n), GRIDEX__V1__REJECT_REASON__SETTLEMENT_HALTED);
	n = tclient_order(&seller, 3, product, GRIDEX__V1__SIDE__SELL, 2000000, 1); /* crosses */
	ck_assert_int_eq(tclient_answer(&seller, n), GRIDEX__V1__REJECT_REASON__SETTLEMENT_HALTED);
	Gridex__V1__Request q = modify_req(1, 2100000, 2);
	ck_assert_int_eq(tclient_answer(&buyer, tclient_send(&buyer, &q, buyer.sk)),
			 GRIDEX__V1__REJECT_REASON__SETTLEMENT_HALTED);
	Gridex__V1__QueryResult *r = query(&buyer, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS);
	ck_assert_uint_eq(r->n_orders, 1);
	ck_assert_int_eq(r->orders[0]->price, 2000000); /* the modify did nothing */
	gridex__v1__query_result__free_unpacked(r, NULL);
	Gridex__V1__Request c = GRIDEX__V1__REQUEST__INIT;
	c.type = GRIDEX__V1__REQUEST_TYPE__CANCEL;
	c.target_client_order_id = 1;
	ck_assert_int_eq(tclient_answer(&buyer, tclient_send(&buyer, &c, buyer.sk)), 0);
	int status;
	const char *page = thttp_get(srv.metrics_port, "/metrics", &status);
	ck_assert_double_eq(tmetric(page, "gridex_requests_total{type=\"NEW_ORDER\",result="
					  "\"SETTLEMENT_HALTED\"}"),
			    2);
	ck_assert_double_eq(tmetric(page, "gridex_fills_total"), 0);
	/* Still halted a while later: retried, still refused. */
	struct timespec later = {.tv_sec = 2};
	nanosleep(&later, NULL);
	wait_halted(1);
	repair_ledger();
	wait_halted(0);
	ck_assert_ptr_nonnull(tserver_log_line(&srv, "settlement resumed"));
	carol_settled();
	n = tclient_order(&buyer, 4, product, GRIDEX__V1__SIDE__BUY, 2500000, 2);
	ck_assert_int_eq(tclient_answer(&buyer, n), 0);
	n = tclient_order(&seller, 5, product, GRIDEX__V1__SIDE__SELL, 2500000, 2);
	ck_assert_int_eq(tclient_answer(&seller, n), 0);
	Gridex__V1__ExecutionReport *f = wait_report(&buyer, GRIDEX__V1__EXEC_TYPE__FILL, 4);
	gridex__v1__execution_report__free_unpacked(f, NULL);
	wait_fills_settled(1);
	ck_assert_int_eq(pgtest_audit(), 0);
}
END_TEST

/* A stop while settlement is halted does not wait for the ledger: gridexd leaves what
 * the ledger lacks in the journal and its last snapshot, exits 0, and the next start,
 * once the ledger is repaired, settles it. */
START_TEST(stop_while_settlement_is_halted)
{
	struct tclient carol = refused_registration();
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	stop_all();
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 10);
	ck_assert_ptr_nonnull(tserver_log_line(&srv, "settlement stopped short"));
	ck_assert_int_eq(sql_int("select count(*) from ledger.accounts where participant = 3"), 0);
	repair_ledger();
	static const char *const fees[] = {"--maker-bps=10", "--taker-bps=20", NULL};
	tserver_start(&srv, fees);
	connect_all();
	carol_settled();
	wait_halted(0);
	tclient_connect(&carol, &srv);
	Gridex__V1__QueryResult *r = query(&carol, GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE);
	ck_assert_int_eq(r->balances[0]->available, 5000000);
	gridex__v1__query_result__free_unpacked(r, NULL);
	tclient_close(&carol);
}
END_TEST

START_TEST(verifiers_are_pinned)
{
	/* The CPUs this test may run on, which gridexd inherits. */
	cpu_set_t set;
	ck_assert_int_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	int allowed[CPU_SETSIZE], n = 0, outside = -1;
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (CPU_ISSET(cpu, &set))
			allowed[n++] = cpu;
		else if (outside < 0)
			outside = cpu;
	}
	ck_assert_int_gt(n, 0);
	/* The fixture's gridexd runs with the default, off: none pinned. */
	char all[512], want[64];
	snprintf(all, sizeof(all), "%s", thread_cpus("gx-core"));
	ck_assert_str_ne(all, "");
	ck_assert_str_eq(thread_cpus("gx-verify-0"), all);
	ck_assert_str_eq(thread_cpus("gx-verify-1"), all);
	ck_assert_msg(strstr(tserver_log(&srv), "verifier_cpus=none ") != NULL, "%s",
		      tserver_log(&srv));
	stop_all();

	/* A list of one CPU: both verifiers on it, the other threads where they were. */
	char arg[64];
	snprintf(arg, sizeof(arg), "--verifier-cpus=%d", allowed[n - 1]);
	const char *one[] = {"--maker-bps=10", "--taker-bps=20", arg, NULL};
	tserver_start(&srv, one);
	snprintf(want, sizeof(want), "%d", allowed[n - 1]);
	ck_assert_str_eq(thread_cpus("gx-verify-0"), want);
	ck_assert_str_eq(thread_cpus("gx-verify-1"), want);
	ck_assert_str_eq(thread_cpus("gx-core"), all);
	ck_assert_str_eq(thread_cpus("gx-journal"), all);
	snprintf(arg, sizeof(arg), "verifier_cpus=%d,%d ", allowed[n - 1], allowed[n - 1]);
	ck_assert_msg(strstr(tserver_log(&srv), arg) != NULL, "%s", tserver_log(&srv));
	ck_assert_int_eq(tserver_stop(&srv), 0);

	/* auto: the last two CPUs, one verifier each, when there are two. */
	const char *autos[] = {"--maker-bps=10", "--taker-bps=20", "--verifier-cpus=auto", NULL};
	tserver_start(&srv, autos);
	if (n >= 2) {
		snprintf(want, sizeof(want), "%d", allowed[n - 2]);
		ck_assert_str_eq(thread_cpus("gx-verify-0"), want);
		snprintf(want, sizeof(want), "%d", allowed[n - 1]);
		ck_assert_str_eq(thread_cpus("gx-verify-1"), want);
	} else {
		ck_assert_str_eq(thread_cpus("gx-verify-0"), all);
		ck_assert_str_eq(thread_cpus("gx-verify-1"), all);
	}
	ck_assert_str_eq(thread_cpus("gx-journal"), all);
	connect_all(); /* for the teardown */

	/* A CPU gridexd may not run on: it does not start, and says why. */
	if (outside >= 0) {
		char cmd[2048];
		snprintf(cmd, sizeof(cmd),
			 "%s --tls-cert=%s/cert.pem --tls-key=%s/key.pem --database-url='%s' "
			 "--journal-dir=%s/journal --verifier-cpus=%d 2> %s/cpus.err",
			 GRIDEX_TEST_GRIDEXD, srv.dir, srv.dir, pgt.app_url, srv.dir, outside,
			 srv.dir);
		int status = system(cmd);
		ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2);
		const char *text = tfile_read(srv.dir, "cpus.err");
		ck_assert_ptr_nonnull(text);
		snprintf(want, sizeof(want), "CPU %d is not one gridexd may run on", outside);
		ck_assert_msg(strstr(text, want) != NULL, "%s", text);
	}
}
END_TEST

static Suite *gridexd_suite(void)
{
	Suite *s = suite_create("gridexd");
	TCase *tc = tcase_create("end-to-end");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, bid_and_offer_cross_and_settle);
	tcase_add_test(tc, one_input_never_spans_two_batches);
	tcase_add_test(tc, sequence_follows_arrival_order);
	tcase_add_test(tc, single_file_journal_is_adopted);
	tcase_add_test(tc, every_rejection_path);
	tcase_add_test(tc, order_rate_limit);
	tcase_add_test(tc, market_data_rebuilds_the_book);
	tcase_add_test(tc, queries_and_restart);
	tcase_add_test(tc, slow_reader_is_dropped_others_trade_on);
	tcase_add_test(tc, connection_limits);
	tcase_add_test(tc, one_writer_per_ledger);
	tcase_add_test(tc, writer_lock_is_taken_again_after_a_lost_connection);
	tcase_add_test(tc, metrics_endpoint);
	tcase_add_test(tc, class_snapshots_are_of_open_products);
	tcase_add_test(tc, verifiers_are_pinned);
	tcase_add_test(tc, refused_settlement_halts_orders_until_repaired);
	tcase_add_test(tc, stop_while_settlement_is_halted);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	int skip = pgtest_skip_without_database();
	if (skip)
		return skip;
	return tap_run(gridexd_suite());
}
