/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Crashes: a real gridexd with PostgreSQL and three clients streaming signed
 * orders is killed with SIGKILL at a random moment, restarted, and traded
 * against again, for 12 rounds; then (second test) the same with PostgreSQL
 * stopped for 4 seconds in the middle (GRIDEX_TEST_PG_OUTAGE): trading goes
 * on and settlement catches up. After the last round: every order a client
 * saw acknowledged is resting or was filled exactly as far as its reports
 * said (or further); no fill is missing from the ledger or settled twice; the
 * audit passes; the server's balances equal the ledger's. Snapshots (every
 * 700 records) and new journal segments (every 64 KiB) happen during the
 * rounds, so restarts load snapshots and replay the segments after them.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <sodium.h>

#include "pgtest.h"
#include "tap.h"
#include "tclient.h"

#define CLIENTS	     3
#define ORDERS_MAX   20000
#define ROUND_ORDERS 400

static struct tserver srv;
static struct tclient op, cl[CLIENTS];
static char product[64];

/* What a client knows about each of its orders (indexed by client order id). */
struct known {
	int64_t qty;	/* sent; 0: never acknowledged */
	int64_t cum;	/* last cumulative quantity reported */
	bool done;	/* reported FILL */
	uint64_t nonce; /* of the NEW_ORDER request */
};
static struct known known[CLIENTS][ORDERS_MAX];
static uint64_t next_coid[CLIENTS];
static uint64_t rng = 12345;

static uint32_t rnd(uint32_t n)
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (uint32_t)(rng >> 33) % n;
}

static void connect_clients(void)
{
	memset(&op, 0, sizeof(op));
	op.account = srv.op_account;
	memcpy(op.sk, srv.op_sk, 64);
	tclient_connect(&op, &srv);
	for (int i = 0; i < CLIENTS; i++) {
		cl[i].nonce = 0; /* time-based again: above everything journaled */
		tclient_connect(&cl[i], &srv);
	}
}

static void close_clients(void)
{
	tclient_close(&op);
	for (int i = 0; i < CLIENTS; i++)
		tclient_close(&cl[i]);
}

/* Snapshots (every 700 records) and new segments (every 64 KiB) every few rounds. */
static const char *const server_args[] = {"--maker-bps=5",
					  "--taker-bps=15",
					  "--orders-per-second=0",
					  "--query-rows-max=100000",
					  "--snapshot-every-records=700",
					  "--journal-segment-bytes=65536",
					  NULL};

static void setup(void)
{
	memset(&srv, 0, sizeof(srv));
	memset(known, 0, sizeof(known));
	pgtest_setup_dir(GRIDEX_TEST_MIGRATIONS);
	tserver_start(&srv, server_args);
	tproduct(product, sizeof(product), "A100-40G", 3);
	for (int i = 0; i < CLIENTS; i++) {
		memset(&cl[i], 0, sizeof(cl[i]));
		tclient_keys(&cl[i], (uint32_t)(1 + i));
		next_coid[i] = 1;
	}
	connect_clients();
	for (int i = 0; i < CLIENTS; i++) {
		char name[16];
		snprintf(name, sizeof(name), "trader%d", i + 1);
		ck_assert_int_eq(tclient_operator(&op, GRIDEX__V1__REQUEST_TYPE__REGISTER_ACCOUNT,
						  (uint32_t)(1 + i), NULL, 0, cl[i].pk, name),
				 0);
		ck_assert_int_eq(tclient_operator(&op, GRIDEX__V1__REQUEST_TYPE__DEPOSIT,
						  (uint32_t)(1 + i), NULL, INT64_C(10000000000000),
						  NULL, NULL),
				 0);
		Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
		q.type = GRIDEX__V1__REQUEST_TYPE__SET_CAPACITY;
		q.target_account = (uint32_t)(1 + i);
		q.product.data = (uint8_t *)"A100-40G";
		q.product.len = 8;
		q.quantity = 10000000;
		ck_assert_int_eq(tclient_answer(&op, tclient_send(&op, &q, op.sk)), 0);
	}
}

static void teardown(void)
{
	close_clients();
	if (srv.pid > 0)
		ck_assert_int_eq(tserver_stop(&srv), 0);
	pgtest_teardown();
}

/* Reads what has arrived on a client, updating what it knows; false once closed. */
static bool absorb(int c, int timeout_ms)
{
	bool closed = false;
	Gridex__V1__ServerFrame *f;
	while ((f = tclient_recv(&cl[c], timeout_ms, &closed)) != NULL) {
		if (f->ack) {
			for (uint64_t k = next_coid[c] > 500 ? next_coid[c] - 500 : 1;
			     k < next_coid[c]; k++)
				if (known[c][k].nonce == f->ack->nonce && known[c][k].qty < 0)
					known[c][k].qty = -known[c][k].qty; /* acknowledged */
		}
		if (f->report && f->report->client_order_id < ORDERS_MAX) {
			struct known *k = &known[c][f->report->client_order_id];
			if (f->report->cumulative_quantity > k->cum)
				k->cum = f->report->cumulative_quantity;
			k->done = k->done || f->report->exec_type == GRIDEX__V1__EXEC_TYPE__FILL;
		}
		gridex__v1__server_frame__free_unpacked(f, NULL);
		timeout_ms = 0;
	}
	return !closed;
}

static void restart(void)
{
	close_clients();
	tserver_start(&srv, server_args);
	connect_clients();
}

/* One round: orders stream from every client until the server is killed. */
static void round_with_kill(int round, const char *outage)
{
	pid_t killer = fork();
	ck_assert_int_ge(killer, 0);
	if (killer == 0) {
		struct timespec ts = {.tv_nsec = (long)(50 + rnd(400) + round * 7) * 1000000};
		nanosleep(&ts, NULL);
		if (outage)
			_exit(system(outage) == 0 ? 0 : 1); /* this round: the database goes away */
		kill(srv.pid, SIGKILL);
		_exit(0);
	}
	bool alive[CLIENTS] = {true, true, true};
	for (int i = 0; i < ROUND_ORDERS; i++) {
		int c = (int)rnd(CLIENTS);
		if (!alive[c] || next_coid[c] >= ORDERS_MAX)
			continue;
		uint64_t coid = next_coid[c]++;
		/* The first client buys, the others sell: no self-trades, so an order leaves
		 * the book only by being filled. */
		int side = c == 0 ? GRIDEX__V1__SIDE__BUY : GRIDEX__V1__SIDE__SELL;
		int64_t qty = 1 + rnd(5);
		known[c][coid].qty = -qty; /* negative until acknowledged */
		uint8_t frame[1024];
		Gridex__V1__Request q = tclient_order_req(coid, product, side,
							  (int64_t)(95 + rnd(10)) * 10000, qty);
		size_t n = tclient_pack(&cl[c], &q, cl[c].sk, frame, sizeof(frame));
		known[c][coid].nonce = q.nonce;
		if (!tclient_send_frame(&cl[c], frame, n) || !absorb(c, 0))
			alive[c] = false;
	}
	int status;
	ck_assert_int_eq(waitpid(killer, &status, 0), killer);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	if (outage) { /* the server lived through it; let the clients hear everything */
		for (int c = 0; c < CLIENTS; c++)
			absorb(c, 500);
		return;
	}
	/* Everything the server sent before it died. */
	for (int c = 0; c < CLIENTS; c++)
		while (absorb(c, 2000))
			;
	waitpid(srv.pid, &status, 0);
	srv.pid = 0;
	restart();
}

static int64_t sql_int(const char *sql)
{
	PGconn *c = pgtest_connect(pgt.owner_url);
	int64_t v = pgtest_sql_int(c, sql);
	PQfinish(c);
	return v;
}

/* Whether the server's log (all its runs) has a line matching the basic regular
 * expression re (grep's; re holds no single quote). */
static bool log_has(const char *re)
{
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "grep -q -- '%s' %s/log", re, srv.dir);
	return system(cmd) == 0;
}

static Gridex__V1__QueryResult *query(int c, uint32_t type)
{
	return tclient_query(&cl[c], type);
}

/* The checks after the last round. */
static void verify(void)
{
	uint64_t acked = 0, checked_fills = 0;
	int64_t bought = 0; /* client 0 buys, the others sell */
	for (int c = 0; c < CLIENTS; c++) {
		Gridex__V1__QueryResult *orders = query(c, GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS);
		Gridex__V1__QueryResult *fills = query(c, GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS);
		ck_assert(!orders->truncated && !fills->truncated); /* every row is here */
		static int64_t live[ORDERS_MAX], filled[ORDERS_MAX];
		memset(live, -1, sizeof(live));
		memset(filled, 0, sizeof(filled));
		for (size_t i = 0; i < orders->n_orders; i++)
			live[orders->orders[i]->client_order_id] =
				orders->orders[i]->leaves_quantity;
		for (size_t i = 0; i < fills->n_fills; i++) {
			filled[fills->fills[i]->client_order_id] += fills->fills[i]->last_quantity;
			if (c == 0)
				bought += fills->fills[i]->last_quantity;
		}
		for (uint64_t k = 1; k < next_coid[c]; k++) {
			const struct known *o = &known[c][k];
			if (o->qty <= 0)
				continue; /* never acknowledged: it may or may not exist */
			acked++;
			/* The server is never behind what the client was told. */
			ck_assert_msg(
				filled[k] >= o->cum, "client %d order %llu: filled %lld < %lld", c,
				(unsigned long long)k, (long long)filled[k], (long long)o->cum);
			if (live[k] >= 0) {
				ck_assert_msg(!o->done,
					      "client %d order %llu reported filled, rests", c,
					      (unsigned long long)k);
				ck_assert_int_eq(live[k] + filled[k], o->qty);
			} else {
				ck_assert_msg(
					filled[k] == o->qty,
					"client %d order %llu: acknowledged, gone, filled %lld of "
					"%lld",
					c, (unsigned long long)k, (long long)filled[k],
					(long long)o->qty);
			}
			checked_fills += o->cum > 0;
		}
		gridex__v1__query_result__free_unpacked(orders, NULL);
		gridex__v1__query_result__free_unpacked(fills, NULL);
	}
	fprintf(stderr, "# %llu acknowledged orders checked, %llu with fills reported\n",
		(unsigned long long)acked, (unsigned long long)checked_fills);
	ck_assert_uint_gt(acked, 500);
	ck_assert_uint_gt(checked_fills, 50);
	/* Settlement catches up: every fill exactly once, balances equal. */
	bool equal = false;
	for (int i = 0; i < 300 && !equal; i++) {
		equal = true;
		for (int c = 0; c < CLIENTS && equal; c++) {
			Gridex__V1__QueryResult *b =
				query(c, GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE);
			char sql[256];
			snprintf(sql, sizeof(sql),
				 "select balance from ledger.accounts where participant = %d and "
				 "kind = 'AVAILABLE'",
				 c + 1);
			equal = b->balances[0]->available == sql_int(sql);
			gridex__v1__query_result__free_unpacked(b, NULL);
		}
		if (!equal) {
			struct timespec ts = {.tv_nsec = 50000000};
			nanosleep(&ts, NULL);
		}
	}
	ck_assert_msg(equal, "the server's balances never matched the ledger: %s",
		      tserver_log(&srv));
	int64_t n = sql_int("select count(distinct fill_id) from ledger.transfers where fill_id is "
			    "not null");
	ck_assert_int_gt(n, 50);
	ck_assert_int_eq(sql_int("select max(fill_id) from ledger.transfers"), n); /* no gaps */
	ck_assert_int_eq(sql_int("select count(*) from ledger.transfers where code = 'trade'"), n);
	/* ledger.fills: each of them once, through kills, snapshots and outages, with its
	 * product, and the GPUs the buyer was told it bought. */
	char sql[256];
	snprintf(sql, sizeof(sql),
		 "select count(*) from ledger.fills where product = '%s' and buyer = 1", product);
	ck_assert_int_eq(sql_int(sql), n);
	ck_assert_int_eq(sql_int("select sum(quantity) from ledger.fills"), bought);
	ck_assert_int_eq(pgtest_audit(), 0);
}

START_TEST(sigkill_at_random_moments)
{
	for (int round = 0; round < 12; round++)
		round_with_kill(round, NULL);
	verify();
	/* Restarts loaded snapshots and replayed the segments after them, archiving the rest. */
	ck_assert(log_has("msg=\"snapshot loaded\"") && log_has("msg=\"state recovered\"") &&
		  log_has("msg=\"journal segment started\"") && !log_has("level=error"));
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "ls %s/journal/archive/journal-* >/dev/null 2>&1", srv.dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* Orders from every client while PostgreSQL is down: they are acknowledged all the same.
 * Returns the process that brings the database back (wait for it). */
static pid_t trade_while_down(const char *outage)
{
	pid_t pg = fork();
	ck_assert_int_ge(pg, 0);
	if (pg == 0)
		_exit(system(outage) == 0 ? 0 : 1);
	struct timespec down = {.tv_sec = 1}; /* the stop takes well under a second */
	nanosleep(&down, NULL);
	uint64_t first[CLIENTS];
	for (int c = 0; c < CLIENTS; c++)
		first[c] = next_coid[c];
	for (int i = 0; i < ROUND_ORDERS; i++) {
		int c = i % CLIENTS;
		uint64_t coid = next_coid[c]++;
		int64_t qty = 1 + rnd(5);
		known[c][coid].qty = -qty;
		Gridex__V1__Request q = tclient_order_req(
			coid, product, c == 0 ? GRIDEX__V1__SIDE__BUY : GRIDEX__V1__SIDE__SELL,
			(int64_t)(95 + rnd(10)) * 10000, qty);
		known[c][coid].nonce = tclient_send(&cl[c], &q, cl[c].sk);
		ck_assert(absorb(c, 0));
	}
	uint64_t acked = 0, sent = 0;
	for (int wait = 0; wait < 50 && (acked < sent || sent == 0); wait++) {
		acked = sent = 0;
		for (int c = 0; c < CLIENTS; c++) {
			ck_assert(absorb(c, 100));
			for (uint64_t k = first[c]; k < next_coid[c]; k++, sent++)
				acked += known[c][k].qty > 0;
		}
	}
	fprintf(stderr, "# with the database down: %llu of %llu orders acknowledged\n",
		(unsigned long long)acked, (unsigned long long)sent);
	ck_assert_uint_eq(acked, sent);
	return pg;
}

static void wait_ok(pid_t pid)
{
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void trade_through_outage(const char *outage)
{
	wait_ok(trade_while_down(outage));
}

/* The command that stops PostgreSQL for a few seconds, or NULL (the test is skipped). */
static const char *outage_command(void)
{
	const char *outage = getenv("GRIDEX_TEST_PG_OUTAGE");
	if (outage == NULL || *outage == '\0') {
		fprintf(stderr, "# skipped: GRIDEX_TEST_PG_OUTAGE is not set\n");
		return NULL;
	}
	return outage;
}

/* A round, then orders while the database is down, and the server killed before it
 * comes back: snapshots taken meanwhile hold unsettled fills. */
static void killed_while_down(const char *outage)
{
	round_with_kill(0, NULL);
	pid_t pg = trade_while_down(outage);
	kill(srv.pid, SIGKILL); /* the database is still down */
	int status;
	waitpid(srv.pid, &status, 0);
	srv.pid = 0;
	wait_ok(pg);
}

START_TEST(database_outage_in_the_middle)
{
	const char *outage = outage_command();
	if (outage == NULL)
		return;
	round_with_kill(0, NULL);
	trade_through_outage(outage);
	round_with_kill(1, NULL); /* and a crash while settlement catches up */
	round_with_kill(2, NULL);
	verify(); /* settlement caught up: every fill in the ledger once, balances equal */
}
END_TEST

/* The server dies while the database is down, after a snapshot of unsettled fills: the
 * restart loads the snapshot (newer than the ledger) and settles what it carries. */
START_TEST(snapshot_newer_than_the_ledger)
{
	const char *outage = outage_command();
	if (outage == NULL)
		return;
	killed_while_down(outage);
	restart();
	round_with_kill(1, NULL);
	verify();
	ck_assert_msg(log_has("msg=\"snapshot loaded\".* unsettled=[1-9]"),
		      "no snapshot with unsettled fills was loaded");
	/* Nothing the ledger had was missing: no snapshot was refused for it (each says
	 * which batch the ledger had confirmed, not only where its items begin). */
	ck_assert_msg(!log_has("ledger lacks settlement batches"),
		      "a snapshot was refused for the ledger: %s", tserver_log(&srv));
}
END_TEST

/* The database restored from a backup older than the newest snapshot: the ledger
 * lacks the last batch, which that snapshot counts on. It is refused, the start
 * goes on from an older snapshot or the journal, and the lost batch is settled
 * again: every fill once, balances equal, the audit clean. */
/* Two rounds, settlement caught up (the ledger has every fill), a clean stop. */
static void settled_and_stopped(void)
{
	round_with_kill(0, NULL);
	round_with_kill(1, NULL);
	verify();
	close_clients();
	ck_assert_int_eq(tserver_stop(&srv), 0);
}

START_TEST(ledger_restored_from_an_older_backup)
{
	settled_and_stopped();
	int64_t last = sql_int("select max(id) from ledger.batches");
	ck_assert_int_gt(sql_int("select count(*) from ledger.fills where batch_id = "
				 "(select max(id) from ledger.batches)"),
			 0);
	/* What a restore would leave: the last batch gone, its balances undone. */
	PGconn *c = pgtest_connect(pgt.owner_url);
	pgtest_sql_ok(c, "set session_replication_role = replica");
	pgtest_sql_ok(c, "begin");
	pgtest_sql_ok(c,
		      "update ledger.accounts a set balance = a.balance - d.delta from "
		      "(select account, sum(delta) delta from (select credit_account account, "
		      "amount delta from ledger.transfers where batch_id = (select max(id) from "
		      "ledger.batches) union all select debit_account, -amount from "
		      "ledger.transfers where batch_id = (select max(id) from ledger.batches)) x "
		      "group by account) d where a.id = d.account");
	pgtest_sql_ok(c, "delete from ledger.fills where batch_id = (select max(id) from "
			 "ledger.batches)");
	pgtest_sql_ok(c, "delete from ledger.transfers where batch_id = (select max(id) from "
			 "ledger.batches)");
	pgtest_sql_ok(c, "delete from ledger.batches where id = (select max(id) from "
			 "ledger.batches)");
	pgtest_sql_ok(c, "commit");
	PQfinish(c);
	ck_assert_int_lt(sql_int("select max(id) from ledger.batches"), last);
	ck_assert_int_eq(pgtest_audit(), 0);
	restart();
	round_with_kill(2, NULL);
	verify(); /* the lost batch's fills are back, each once */
	ck_assert_msg(log_has("ledger lacks settlement batches"),
		      "the newest snapshot was not refused: %s", tserver_log(&srv));
}
END_TEST

/* Only a snapshot is left (a clean stop writes one; the test then deletes every segment,
 * archived ones too): the server starts from it, with its books, and a new journal
 * segment goes on from there. */
START_TEST(snapshot_without_journal)
{
	round_with_kill(0, NULL);
	round_with_kill(1, NULL);
	ck_assert_int_eq(tserver_stop(&srv), 0);
	char cmd[600];
	snprintf(cmd, sizeof(cmd),
		 "ls %s/journal/snapshot-* >/dev/null && rm -rf %s/journal/journal-* "
		 "%s/journal/archive",
		 srv.dir, srv.dir, srv.dir);
	ck_assert_int_eq(system(cmd), 0);
	restart();
	round_with_kill(2, NULL);
	verify();
	ck_assert(log_has("msg=\"snapshot loaded\""));
}
END_TEST

/* Rewrites the newest snapshot as an older gridexd wrote it: format 1's magic, the
 * body without format 2's last field (the settled batch), the hash made again. The
 * rest is the same when it holds no unsettled fill. */
static void newest_snapshot_to_format_1(void)
{
	char cmd[600], path[512];
	snprintf(cmd, sizeof(cmd), "ls %s/journal/snapshot-* | sort | tail -n 1", srv.dir);
	FILE *ls = popen(cmd, "r");
	ck_assert_ptr_nonnull(ls);
	ck_assert_ptr_nonnull(fgets(path, sizeof(path), ls));
	pclose(ls);
	path[strcspn(path, "\n")] = '\0';
	FILE *f = fopen(path, "r+b");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	long len = ftell(f);
	const size_t header = 8 + 8 + 8 + 16 + 8; /* magic, seq, time, settings, body length */
	ck_assert_int_gt(len, (long)header + 8 + crypto_generichash_BYTES);
	uint8_t *p = malloc((size_t)len);
	ck_assert_ptr_nonnull(p);
	rewind(f);
	ck_assert_uint_eq(fread(p, 1, (size_t)len, f), (size_t)len);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_mem_eq(p, "GRIDEXS2", 8);
	memcpy(p, "GRIDEXS1", 8);
	uint64_t body_len = 0;
	for (int i = 7; i >= 0; i--)
		body_len = body_len << 8 | p[header - 8 + (size_t)i];
	ck_assert_uint_eq(header + body_len + crypto_generichash_BYTES, (size_t)len);
	body_len -= 8;
	for (int i = 0; i < 8; i++)
		p[header - 8 + (size_t)i] = (uint8_t)(body_len >> (8 * i));
	size_t hashed = header + body_len;
	ck_assert_int_eq(
		crypto_generichash(p + hashed, crypto_generichash_BYTES, p, hashed, NULL, 0), 0);
	f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(p, 1, hashed + crypto_generichash_BYTES, f),
			  hashed + crypto_generichash_BYTES);
	ck_assert_int_eq(fclose(f), 0);
	free(p);
}

/* An upgrade from a gridexd that wrote snapshots of format 1. Stopped once settlement
 * had caught up, its last snapshot holds no unsettled fill and loads as it is. */
START_TEST(snapshot_of_format_1_loads)
{
	settled_and_stopped();
	newest_snapshot_to_format_1();
	restart();
	round_with_kill(2, NULL);
	verify();
	ck_assert_msg(log_has("msg=\"snapshot loaded\"") && !log_has("snapshot refused"),
		      "the snapshot of format 1 was not loaded: %s", tserver_log(&srv));
}
END_TEST

/* One with unsettled fills (the server killed while the database was down) lacks
 * what ledger.fills needs: refused with its reason, the start goes on from an older
 * snapshot or the journal, and every fill still reaches the ledger with its product. */
START_TEST(snapshot_of_format_1_with_unsettled_fills_is_refused)
{
	const char *outage = outage_command();
	if (outage == NULL)
		return;
	/* The suite's settings and a snapshot every 100 ms besides, so that the newest one
	 * surely holds fills the ledger could not take while the database was down. */
	const char *args[sizeof(server_args) / sizeof(server_args[0]) + 1];
	size_t n = 0;
	while (server_args[n] != NULL) {
		args[n] = server_args[n];
		n++;
	}
	args[n++] = "--snapshot-every-ms=100";
	args[n] = NULL;
	close_clients();
	ck_assert_int_eq(tserver_stop(&srv), 0);
	tserver_start(&srv, args);
	connect_clients();
	killed_while_down(outage);
	newest_snapshot_to_format_1();
	restart();
	round_with_kill(1, NULL);
	verify();
	ck_assert_msg(log_has("snapshot refused.*format 1.*unsettled fills") &&
			      log_has("msg=\"state recovered\""),
		      "no refusal of the snapshot of format 1: %s", tserver_log(&srv));
}
END_TEST

static Suite *crash_suite(void)
{
	Suite *s = suite_create("crash");
	TCase *tc = tcase_create("crash");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, sigkill_at_random_moments);
	tcase_add_test(tc, database_outage_in_the_middle);
	tcase_add_test(tc, snapshot_newer_than_the_ledger);
	tcase_add_test(tc, snapshot_without_journal);
	tcase_add_test(tc, ledger_restored_from_an_older_backup);
	tcase_add_test(tc, snapshot_of_format_1_loads);
	tcase_add_test(tc, snapshot_of_format_1_with_unsettled_fills_is_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	int skip = pgtest_skip_without_database();
	return skip ? skip : tap_run(crash_suite());
}
