/* SPDX-License-Identifier: Apache-2.0 */
/* The ledger audit: SQL checks plus the hash chain recomputed in C. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "ledger.h"
#include "ledger_internal.h"

struct audit {
	PGconn *c;
	void (*line)(bool ok, const char *check, const char *detail, void *ctx);
	void *ctx;
	int failed;
};

static void report(struct audit *a, bool ok, const char *check, const char *detail)
{
	if (!ok)
		a->failed++;
	a->line(ok, check, detail, a->ctx);
}

/* Runs a query whose first row's first column is the detail, second the verdict ('t'). */
static int check_sql(struct audit *a, const char *check, const char *sql)
{
	PGresult *res = PQexec(a->c, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) != 2) {
		char detail[512];
		snprintf(detail, sizeof(detail), "query failed: %s", PQerrorMessage(a->c));
		report(a, false, check, detail);
		PQclear(res);
		return PQstatus(a->c) == CONNECTION_OK ? LEDGER_OK : LEDGER_ERR_UNAVAILABLE;
	}
	report(a, strcmp(PQgetvalue(res, 0, 1), "t") == 0, check, PQgetvalue(res, 0, 0));
	PQclear(res);
	return LEDGER_OK;
}

static uint8_t code_of(const char *s)
{
	for (uint8_t c = LEDGER_DEPOSIT; c <= LEDGER_REFUND; c++)
		if (strcmp(ledger_code_name(c), s) == 0)
			return c;
	return 0;
}

/* Grows *rows (of size bytes each) to hold one more than k; false when out of memory. */
static bool room_for(void **rows, size_t *cap, size_t k, size_t size)
{
	if (k < *cap)
		return true;
	size_t ncap = *cap ? *cap * 2 : 1024;
	void *nr = realloc(*rows, ncap * size);
	if (!nr)
		return false;
	*rows = nr;
	*cap = ncap;
	return true;
}

/*
 * Recomputes every batch's hash from its rows (transfers, and the fills of a
 * batch of format 2, streamed together in single-row mode), checks each batch
 * links to the previous one and counts its rows.
 */
static int check_chain(struct audit *a)
{
	const char *check = "hash chain recomputes and links";
	char detail[256];
	PGresult *b = PQexec(a->c, "select id, n_transfers, prev_hash, hash, format, n_fills "
				   "from ledger.batches order by id");
	if (PQresultStatus(b) != PGRES_TUPLES_OK) {
		report(a, false, check, PQerrorMessage(a->c));
		PQclear(b);
		return LEDGER_OK;
	}
	int nb = PQntuples(b);
	struct ledger_transfer *rows = NULL;
	struct ledger_trade *trades = NULL;
	size_t cap = 0, tcap = 0;
	bool ok = true, nomem = false;
	int64_t bad_batch = 0;
	uint8_t prev[LEDGER_HASH_BYTES] = {0}, want[LEDGER_HASH_BYTES], stored[LEDGER_HASH_BYTES],
		got[LEDGER_HASH_BYTES];
	/* Kind 0: a transfer; kind 1: a fill (its taker's side, then its numbers in
	 * the columns of a transfer's). */
	if (!PQsendQuery(
		    a->c,
		    "select batch_id, 0, id, currency, code, debit_account, credit_account, "
		    "amount, coalesce(fill_id, 0), coalesce(taker_order_id, 0), "
		    "coalesce(maker_order_id, 0), coalesce(lease_id, 0) from ledger.transfers "
		    "union all "
		    "select batch_id, 1, id, product, aggressor, price, quantity, buyer, seller, "
		    "taker_order_id, maker_order_id, extract(epoch from traded_at) * 1000 "
		    "from ledger.fills order by 1, 2, 3") ||
	    !PQsetSingleRowMode(a->c)) {
		report(a, false, check, PQerrorMessage(a->c));
		PQclear(b);
		return LEDGER_OK;
	}
	PGresult *r = PQgetResult(a->c);
	for (int i = 0; i < nb && ok; i++) {
		int64_t id = strtoll(PQgetvalue(b, i, 0), NULL, 10);
		int64_t n = strtoll(PQgetvalue(b, i, 1), NULL, 10);
		int64_t format = strtoll(PQgetvalue(b, i, 4), NULL, 10);
		int64_t n_fills = strtoll(PQgetvalue(b, i, 5), NULL, 10);
		char currency[9] = "";
		size_t k = 0, kt = 0;
		bad_batch = id;
		if (!ledger_hash_from_hex(PQgetvalue(b, i, 2), want) ||
		    !ledger_hash_from_hex(PQgetvalue(b, i, 3), stored) ||
		    memcmp(want, prev, sizeof(prev)) != 0) {
			ok = false;
			break;
		}
		while (r && PQresultStatus(r) == PGRES_SINGLE_TUPLE &&
		       strtoll(PQgetvalue(r, 0, 0), NULL, 10) == id) {
			if (strcmp(PQgetvalue(r, 0, 1), "0") == 0) {
				if (!room_for((void **)&rows, &cap, k, sizeof(*rows))) {
					nomem = true;
					break;
				}
				int64_t v[7];
				for (int c = 0; c < 7; c++)
					v[c] = strtoll(PQgetvalue(r, 0, 5 + c), NULL, 10);
				if (k == 0)
					snprintf(currency, sizeof(currency), "%s",
						 PQgetvalue(r, 0, 3));
				else if (strcmp(currency, PQgetvalue(r, 0, 3)) != 0)
					ok = false;
				rows[k++] = (struct ledger_transfer){
					.id = strtoll(PQgetvalue(r, 0, 2), NULL, 10),
					.code = code_of(PQgetvalue(r, 0, 4)),
					.debit_account = v[0],
					.credit_account = v[1],
					.amount = v[2],
					.fill_id = v[3],
					.taker_order_id = v[4],
					.maker_order_id = v[5],
					.lease_id = v[6],
				};
			} else {
				if (!room_for((void **)&trades, &tcap, kt, sizeof(*trades))) {
					nomem = true;
					break;
				}
				/* What the hash reads must be the whole value. */
				if (!ledger_fill_of_row(r, 0, 2, &trades[kt++]))
					ok = false;
			}
			PQclear(r);
			r = PQgetResult(a->c);
		}
		if (nomem)
			break;
		if (format == 1)
			ledger_batch_hash(prev, id, currency, rows, k, got);
		else
			ledger_batch_hash_trades(prev, id, currency, rows, k, trades, kt, got);
		if (!ok || (int64_t)k != n || (int64_t)kt != n_fills || (format == 1 && kt > 0) ||
		    memcmp(got, stored, sizeof(got)) != 0)
			ok = false;
		memcpy(prev, stored, sizeof(prev));
	}
	/* Rows left over belong to no batch in order: the chain is broken. */
	if (ok && !nomem && r && PQresultStatus(r) == PGRES_SINGLE_TUPLE) {
		ok = false;
		bad_batch = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	}
	while (r) {
		PQclear(r);
		r = PQgetResult(a->c);
	}
	free(rows);
	free(trades);
	PQclear(b);
	if (nomem)
		return LEDGER_ERR_NOMEM;
	if (ok)
		snprintf(detail, sizeof(detail), "%d batches", nb);
	else
		snprintf(detail, sizeof(detail), "broken at batch %lld", (long long)bad_batch);
	report(a, ok, check, detail);
	return PQstatus(a->c) == CONNECTION_OK ? LEDGER_OK : LEDGER_ERR_UNAVAILABLE;
}

int ledger_audit(const char *conninfo,
		 void (*line)(bool ok, const char *check, const char *detail, void *ctx), void *ctx,
		 int *failed, char *err, size_t err_len)
{
	struct audit a = {.line = line, .ctx = ctx};
	a.c = PQconnectdb(conninfo);
	if (a.c == NULL || PQstatus(a.c) != CONNECTION_OK) {
		snprintf(err, err_len, "cannot connect: %s",
			 a.c ? PQerrorMessage(a.c) : "no memory");
		PQfinish(a.c);
		return LEDGER_ERR_UNAVAILABLE;
	}
	PGresult *res = PQexec(a.c, "begin transaction isolation level repeatable read read only; "
				    "select to_regclass('ledger.transfers') is not null, "
				    "to_regclass('ledger.fills') is not null");
	bool have = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		    strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	bool have_fills = have && strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	PQclear(res);
	if (!have_fills) {
		if (have)
			snprintf(err, err_len,
				 "the ledger schema lacks migration 0004 "
				 "(ledger.fills): its owner runs gridex-admin migrate");
		else
			snprintf(err, err_len, "no ledger schema here: %s", PQerrorMessage(a.c));
		PQfinish(a.c);
		return LEDGER_ERR_SCHEMA;
	}
	static const struct {
		const char *check, *sql;
	} checks[] = {
		{"debits equal credits per currency",
		 "select coalesce(string_agg(currency || ': debits ' || d || ', credits ' || c || "
		 "', balances ' || b, '; '), 'no transfers'), coalesce(bool_and(d = c and b = 0), "
		 "true) "
		 "from (select currency, sum(debits) d, sum(credits) c, sum(balance) b "
		 "from ledger.trial_balance group by currency) t"},
		{"every balance equals its transfers",
		 "select count(*) || ' of ' || (select count(*) from ledger.accounts) || "
		 "' accounts differ', count(*) = 0 from ledger.accounts a "
		 "where a.balance <> coalesce((select sum(case when t.credit_account = a.id "
		 "then t.amount else -t.amount end) from ledger.transfers t "
		 "where t.credit_account = a.id or t.debit_account = a.id), 0)"},
		{"no negative AVAILABLE, FEES or ESCROW",
		 "select count(*) || ' accounts below zero', count(*) = 0 from ledger.accounts "
		 "where kind <> 'BANK' and balance < 0"},
		{"escrow equals trades not yet released or refunded",
		 "select 'escrow ' || e.balance || ', open trades ' || coalesce(o.total, 0), "
		 "e.balance = coalesce(o.total, 0) from ledger.accounts e "
		 "left join (select t.currency, sum(t.amount) total from ledger.transfers t "
		 "where t.code = 'trade' and not exists (select 1 from ledger.transfers r "
		 "where r.fill_id = t.fill_id and r.code in ('escrow_release', 'refund') "
		 "and r.debit_account = t.credit_account) group by t.currency) o "
		 "on o.currency = e.currency where e.kind = 'ESCROW' "
		 "order by e.balance <> coalesce(o.total, 0) desc limit 1"},
		/* A fill's trade transfer (leg 0) moves price x quantity from its buyer to
		 * escrow in its batch; its escrow goes only to its seller; and a batch of
		 * format 2 has the fill of each of its trade transfers. */
		{"every fill agrees with its transfers",
		 "select d.n || ' of ' || (select count(*) from ledger.fills) || "
		 "' fills differ from their transfers, ' || m.n || "
		 "' trades of format 2 lack their fill', d.n = 0 and m.n = 0 "
		 "from (select count(*) n from ledger.fills f where not exists ("
		 "select 1 from ledger.transfers t "
		 "join ledger.accounts db on db.id = t.debit_account "
		 "join ledger.accounts cr on cr.id = t.credit_account "
		 "where t.id = f.id * 8 and t.code = 'trade' and t.batch_id = f.batch_id "
		 "and t.fill_id = f.id and t.amount = f.price::numeric * f.quantity "
		 "and coalesce(t.taker_order_id, 0) = f.taker_order_id "
		 "and coalesce(t.maker_order_id, 0) = f.maker_order_id "
		 "and db.kind = 'AVAILABLE' and db.participant = f.buyer and cr.kind = 'ESCROW') "
		 "or exists (select 1 from ledger.transfers r "
		 "join ledger.accounts s on s.id = r.credit_account "
		 "where r.fill_id = f.id and r.code = 'escrow_release' "
		 "and (s.kind <> 'AVAILABLE' or s.participant <> f.seller))) d, "
		 "(select count(*) n from ledger.transfers t "
		 "join ledger.batches b on b.id = t.batch_id "
		 "where b.format = 2 and t.code = 'trade' "
		 "and not exists (select 1 from ledger.fills f where f.id = t.fill_id)) m"},
	};
	int rc = LEDGER_OK;
	for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]) && rc == LEDGER_OK; i++)
		rc = check_sql(&a, checks[i].check, checks[i].sql);
	if (rc == LEDGER_OK)
		rc = check_chain(&a);
	if (rc != LEDGER_OK)
		snprintf(err, err_len, "audit interrupted: %s", PQerrorMessage(a.c));
	res = PQexec(a.c, "rollback");
	PQclear(res);
	PQfinish(a.c);
	*failed = a.failed;
	return rc;
}
