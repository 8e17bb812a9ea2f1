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

/*
 * Recomputes every batch's hash from its rows (streamed in single-row mode),
 * checks each batch links to the previous one and counts its rows.
 */
static int check_chain(struct audit *a)
{
	const char *check = "hash chain recomputes and links";
	char detail[256];
	PGresult *b = PQexec(a->c, "select id, n_transfers, prev_hash, hash from ledger.batches "
				   "order by id");
	if (PQresultStatus(b) != PGRES_TUPLES_OK) {
		report(a, false, check, PQerrorMessage(a->c));
		PQclear(b);
		return LEDGER_OK;
	}
	int nb = PQntuples(b);
	struct ledger_transfer *rows = NULL;
	size_t cap = 0;
	bool ok = true;
	int64_t bad_batch = 0;
	uint8_t prev[LEDGER_HASH_BYTES] = {0}, want[LEDGER_HASH_BYTES], stored[LEDGER_HASH_BYTES],
		got[LEDGER_HASH_BYTES];
	if (!PQsendQuery(a->c, "select batch_id, id, currency, debit_account, credit_account, "
			       "amount, code, coalesce(fill_id, 0), coalesce(taker_order_id, 0), "
			       "coalesce(maker_order_id, 0), coalesce(lease_id, 0) "
			       "from ledger.transfers order by batch_id, id") ||
	    !PQsetSingleRowMode(a->c)) {
		report(a, false, check, PQerrorMessage(a->c));
		PQclear(b);
		return LEDGER_OK;
	}
	PGresult *r = PQgetResult(a->c);
	for (int i = 0; i < nb && ok; i++) {
		int64_t id = strtoll(PQgetvalue(b, i, 0), NULL, 10);
		int64_t n = strtoll(PQgetvalue(b, i, 1), NULL, 10);
		char currency[9] = "";
		size_t k = 0;
		bad_batch = id;
		if (!ledger_hash_from_hex(PQgetvalue(b, i, 2), want) ||
		    !ledger_hash_from_hex(PQgetvalue(b, i, 3), stored) ||
		    memcmp(want, prev, sizeof(prev)) != 0) {
			ok = false;
			break;
		}
		while (r && PQresultStatus(r) == PGRES_SINGLE_TUPLE &&
		       strtoll(PQgetvalue(r, 0, 0), NULL, 10) == id) {
			if (k == cap) {
				size_t ncap = cap ? cap * 2 : 1024;
				struct ledger_transfer *nr = realloc(rows, ncap * sizeof(*rows));
				if (!nr) {
					free(rows);
					PQclear(r);
					PQclear(b);
					return LEDGER_ERR_NOMEM;
				}
				rows = nr;
				cap = ncap;
			}
			if (k == 0)
				snprintf(currency, sizeof(currency), "%s", PQgetvalue(r, 0, 2));
			else if (strcmp(currency, PQgetvalue(r, 0, 2)) != 0)
				ok = false;
			rows[k++] = (struct ledger_transfer){
				.id = strtoll(PQgetvalue(r, 0, 1), NULL, 10),
				.debit_account = strtoll(PQgetvalue(r, 0, 3), NULL, 10),
				.credit_account = strtoll(PQgetvalue(r, 0, 4), NULL, 10),
				.amount = strtoll(PQgetvalue(r, 0, 5), NULL, 10),
				.code = code_of(PQgetvalue(r, 0, 6)),
				.fill_id = strtoll(PQgetvalue(r, 0, 7), NULL, 10),
				.taker_order_id = strtoll(PQgetvalue(r, 0, 8), NULL, 10),
				.maker_order_id = strtoll(PQgetvalue(r, 0, 9), NULL, 10),
				.lease_id = strtoll(PQgetvalue(r, 0, 10), NULL, 10),
			};
			PQclear(r);
			r = PQgetResult(a->c);
		}
		ledger_batch_hash(prev, id, currency, rows, k, got);
		if (!ok || (int64_t)k != n || memcmp(got, stored, sizeof(got)) != 0)
			ok = false;
		memcpy(prev, stored, sizeof(prev));
	}
	/* Rows left over belong to no batch in order: the chain is broken. */
	if (ok && r && PQresultStatus(r) == PGRES_SINGLE_TUPLE) {
		ok = false;
		bad_batch = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	}
	while (r) {
		PQclear(r);
		r = PQgetResult(a->c);
	}
	free(rows);
	PQclear(b);
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
				    "select to_regclass('ledger.transfers') is not null");
	bool have = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		    strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (!have) {
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
