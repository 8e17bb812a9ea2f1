/* SPDX-License-Identifier: Apache-2.0 */
/* The ledger's PostgreSQL side: the only file that includes libpq. */
#include "ledger.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "ledger_internal.h"

#define SQLSTATE_UNIQUE	   "23505"
#define PARTICIPANTS_CACHE 4096 /* direct-mapped cache of participant accounts */

struct ledger {
	PGconn *conn;
	char *conninfo;
	char currency[9];
	int64_t fees, escrow, bank;
	int64_t last_batch;
	uint8_t last_hash[LEDGER_HASH_BYTES];
	bool lose_next_commit;
	bool writer_lock; /* ledger_try_lock got it: every new session takes it again */
	uint32_t cache_key[PARTICIPANTS_CACHE];
	int64_t cache_val[PARTICIPANTS_CACHE]; /* 0 = empty */
	char *copy_buf;
	size_t copy_cap;
	int64_t timeout_ms; /* the session's statement_timeout as ledger_candles set it; -1: not */
	char err[512];
};

static void set_err(struct ledger *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_err(struct ledger *l, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(l->err, sizeof(l->err), fmt, ap);
	va_end(ap);
	size_t n = strlen(l->err);
	while (n > 0 && l->err[n - 1] == '\n')
		l->err[--n] = '\0';
}

static bool lost(const struct ledger *l)
{
	return l->conn == NULL || PQstatus(l->conn) != CONNECTION_OK;
}

/* Status of a failed result: UNAVAILABLE when the connection is gone. */
/* Whether an SQLSTATE says "not now" rather than "no": the connection (08), a
 * transaction rolled back for a serialization failure or a deadlock (40), resources
 * (53: disk full, out of memory, too many connections), an operator's or a timeout's
 * intervention (57: statement_timeout, shutdown, starting up), a lock not had in
 * lock_timeout (55P03), an error outside PostgreSQL such as I/O (58). The same
 * statement may pass later; a refusal (a constraint, a trigger) never will. */
static bool transient_state(const char *state)
{
	static const char *const classes[] = {"08", "40", "53", "57", "58"};
	if (state == NULL)
		return false;
	for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++)
		if (strncmp(state, classes[i], 2) == 0)
			return true;
	return strcmp(state, "55P03") == 0;
}

static int result_error(struct ledger *l, PGresult *res, const char *what)
{
	/* Decide before PQclear: the SQLSTATE string lives inside res. */
	bool transient = transient_state(res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL);
	set_err(l, "%s: %s", what, l->conn ? PQerrorMessage(l->conn) : "no connection");
	PQclear(res);
	if (lost(l) || transient)
		return LEDGER_ERR_UNAVAILABLE;
	return LEDGER_ERR_REFUSED;
}

/* Runs a command expecting no rows. */
static int exec_ok(struct ledger *l, const char *sql)
{
	PGresult *res = PQexec(l->conn, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		return result_error(l, res, sql);
	PQclear(res);
	return LEDGER_OK;
}

/* Runs a query with text parameters; *out holds the result on OK. */
static int query(struct ledger *l, const char *sql, int nparams, const char *const *params,
		 PGresult **out)
{
	PGresult *res = PQexecParams(l->conn, sql, nparams, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		return result_error(l, res, sql);
	*out = res;
	return LEDGER_OK;
}

/* A query whose only parameter $1 is an integer id. */
static int query_id(struct ledger *l, const char *sql, int64_t id, PGresult **out)
{
	char idtxt[24];
	snprintf(idtxt, sizeof(idtxt), "%lld", (long long)id);
	const char *params[1] = {idtxt};
	return query(l, sql, 1, params, out);
}

static int64_t field_i64(const PGresult *res, int row, int col)
{
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* A 32-byte hash from a bytea column. */
static bool hash_of(const PGresult *res, int row, int col, uint8_t out[LEDGER_HASH_BYTES])
{
	return ledger_hash_from_hex(PQgetvalue(res, row, col), out);
}

static int load_last_batch(struct ledger *l)
{
	PGresult *res = NULL;
	int rc = query(l, "select id, hash from ledger.batches order by id desc limit 1", 0, NULL,
		       &res);
	if (rc)
		return rc;
	l->last_batch = 0;
	memset(l->last_hash, 0, sizeof(l->last_hash));
	if (PQntuples(res) == 1) {
		l->last_batch = field_i64(res, 0, 0);
		if (!hash_of(res, 0, 1, l->last_hash)) {
			PQclear(res);
			set_err(l, "ledger.batches holds a malformed hash");
			return LEDGER_ERR_SCHEMA;
		}
	}
	PQclear(res);
	return LEDGER_OK;
}

static int take_writer_lock(struct ledger *l, bool *got);

static int connect_db(struct ledger *l)
{
	if (l->conn)
		PQfinish(l->conn);
	l->conn = PQconnectdb(l->conninfo);
	l->timeout_ms = -1; /* a new session: its own default */
	if (l->conn == NULL) {
		set_err(l, "out of memory");
		return LEDGER_ERR_NOMEM;
	}
	if (PQstatus(l->conn) != CONNECTION_OK) {
		set_err(l, "cannot connect: %s", PQerrorMessage(l->conn));
		return LEDGER_ERR_UNAVAILABLE;
	}
	PGresult *res = NULL;
	int rc = query(l,
		       "select to_regclass('ledger.transfers') is not null, "
		       "to_regclass('ledger.fills') is not null",
		       0, NULL, &res);
	if (rc)
		return rc;
	bool have = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	bool have_fills = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	PQclear(res);
	if (!have || !have_fills) {
		set_err(l, have ? "the ledger schema lacks migration 0004 (ledger.fills): run "
				  "gridex-admin migrate"
				: "no ledger schema in this database (run gridex-admin migrate)");
		return LEDGER_ERR_SCHEMA;
	}
	const char *params[1] = {l->currency};
	rc = query(l,
		   "select kind, id from ledger.accounts where currency = $1 "
		   "and kind in ('FEES', 'ESCROW', 'BANK')",
		   1, params, &res);
	if (rc)
		return rc;
	l->fees = l->escrow = l->bank = 0;
	for (int i = 0; i < PQntuples(res); i++) {
		const char *kind = PQgetvalue(res, i, 0);
		int64_t id = field_i64(res, i, 1);
		if (strcmp(kind, "FEES") == 0)
			l->fees = id;
		else if (strcmp(kind, "ESCROW") == 0)
			l->escrow = id;
		else
			l->bank = id;
	}
	PQclear(res);
	if (!l->fees || !l->escrow || !l->bank) {
		set_err(l, "currency %s has no FEES, ESCROW and BANK accounts", l->currency);
		return LEDGER_ERR_NOT_FOUND;
	}
	/* The writer lock went with the session before (a restart of PostgreSQL, a
	 * dropped connection, a terminated backend): nothing is written on this one
	 * until it holds the lock again. Another process may have taken it meanwhile. */
	if (l->writer_lock) {
		bool got = false;
		rc = take_writer_lock(l, &got);
		if (rc)
			return rc;
		if (!got) {
			set_err(l, "another process took the ledger's writer lock while the "
				   "connection was lost; nothing is written until it is free");
			PQfinish(l->conn);
			l->conn = NULL;
			return LEDGER_ERR_UNAVAILABLE;
		}
	}
	return load_last_batch(l);
}

int ledger_open(const char *conninfo, const char *currency, struct ledger **out)
{
	if (conninfo == NULL || currency == NULL || strlen(currency) < 3 || strlen(currency) > 8)
		return LEDGER_ERR_ARGS;
	for (const char *c = currency; *c; c++)
		if (*c < 'A' || *c > 'Z')
			return LEDGER_ERR_ARGS;
	struct ledger *l = calloc(1, sizeof(*l));
	if (!l)
		return LEDGER_ERR_NOMEM;
	l->conninfo = strdup(conninfo);
	if (!l->conninfo) {
		free(l);
		return LEDGER_ERR_NOMEM;
	}
	memcpy(l->currency, currency, strlen(currency) + 1);
	*out = l;
	return connect_db(l);
}

void ledger_close(struct ledger *l)
{
	if (!l)
		return;
	if (l->conn)
		PQfinish(l->conn);
	free(l->conninfo);
	free(l->copy_buf);
	free(l);
}

const char *ledger_error(const struct ledger *l)
{
	return l ? l->err : "";
}

void ledger_exchange_accounts(const struct ledger *l, struct ledger_accounts *acc)
{
	*acc = (struct ledger_accounts){.fees = l->fees, .escrow = l->escrow, .bank = l->bank};
}

void ledger_fault_lose_next_commit(struct ledger *l)
{
	l->lose_next_commit = true;
}

/* ---------- participants ---------- */

int ledger_add_participant(struct ledger *l, uint32_t id, const char *name)
{
	if (id == 0 || name == NULL)
		return LEDGER_ERR_ARGS;
	char idtxt[16];
	snprintf(idtxt, sizeof(idtxt), "%u", id);
	const char *params[2] = {idtxt, name};
	int rc = exec_ok(l, "begin");
	if (rc)
		return rc;
	PGresult *res = PQexecParams(l->conn,
				     "insert into ledger.participants (id, name) values ($1, $2) "
				     "on conflict do nothing",
				     2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		goto refused;
	PQclear(res);
	res = PQexecParams(l->conn, "select name = $2 from ledger.participants where id = $1", 2,
			   NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		goto refused;
	if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		PQclear(res);
		(void)exec_ok(l, "rollback");
		set_err(l, "participant %u or the name %s belongs to another participant", id,
			name);
		return LEDGER_ERR_REFUSED;
	}
	PQclear(res);
	const char *account_params[2] = {idtxt, l->currency};
	res = PQexecParams(l->conn,
			   "insert into ledger.accounts (currency, kind, participant) "
			   "values ($2, 'AVAILABLE', $1) on conflict do nothing",
			   2, NULL, account_params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		goto refused;
	PQclear(res);
	return exec_ok(l, "commit");
refused:
	rc = result_error(l, res, "adding a participant");
	if (!lost(l))
		(void)exec_ok(l, "rollback");
	return rc;
}

int ledger_register_key(struct ledger *l, uint32_t id, const uint8_t key[32])
{
	if (id == 0 || key == NULL)
		return LEDGER_ERR_ARGS;
	static const char digits[] = "0123456789abcdef";
	char idtxt[16], hex[2 + 64 + 1] = "\\x";
	snprintf(idtxt, sizeof(idtxt), "%u", id);
	for (int i = 0; i < 32; i++) {
		hex[2 + 2 * i] = digits[key[i] >> 4];
		hex[3 + 2 * i] = digits[key[i] & 15];
	}
	hex[66] = '\0';
	const char *params[2] = {idtxt, hex};
	PGresult *res = NULL;
	int rc = query(l,
		       "with ins as (insert into ledger.participant_keys (participant, public_key) "
		       "values ($1, $2::bytea) on conflict do nothing returning public_key) "
		       "select coalesce((select public_key from ins), "
		       "(select public_key from ledger.participant_keys where participant = $1)) "
		       "= $2::bytea",
		       2, params, &res);
	if (rc)
		return rc;
	bool same = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (!same) {
		set_err(l, "participant %u has another key", id);
		return LEDGER_ERR_REFUSED;
	}
	return LEDGER_OK;
}

int ledger_load_participants(struct ledger *l,
			     int (*each)(const struct ledger_participant *p, void *ctx), void *ctx)
{
	const char *params[1] = {l->currency};
	PGresult *res = NULL;
	int rc = query(l,
		       "select p.id, p.name, k.public_key, coalesce(a.balance, 0) "
		       "from ledger.participants p "
		       "left join ledger.participant_keys k on k.participant = p.id "
		       "left join ledger.accounts a on a.participant = p.id and a.currency = $1 "
		       "and a.kind = 'AVAILABLE' order by p.id",
		       1, params, &res);
	if (rc)
		return rc;
	for (int i = 0; i < PQntuples(res) && rc == 0; i++) {
		struct ledger_participant p = {.id = (uint32_t)field_i64(res, i, 0),
					       .available = field_i64(res, i, 3)};
		snprintf(p.name, sizeof(p.name), "%s", PQgetvalue(res, i, 1));
		p.has_key = !PQgetisnull(res, i, 2) &&
			    ledger_hash_from_hex(PQgetvalue(res, i, 2), p.public_key);
		rc = each(&p, ctx);
	}
	PQclear(res);
	return rc;
}

#define WRITER_LOCK_KEY 724302 /* 724300: migrations; 724301: the batch chain trigger */

static int take_writer_lock(struct ledger *l, bool *got)
{
	PGresult *res = NULL;
	int rc = query_id(l, "select pg_try_advisory_lock($1::bigint)", WRITER_LOCK_KEY, &res);
	if (rc)
		return rc;
	*got = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return LEDGER_OK;
}

int ledger_try_lock(struct ledger *l, bool *got)
{
	int rc = take_writer_lock(l, got);
	if (rc == LEDGER_OK && *got)
		l->writer_lock = true;
	return rc;
}

int ledger_mark_journal(struct ledger *l, int64_t seq_base)
{
	PGresult *res = NULL;
	int rc = query_id(l,
			  "insert into ledger.journal_genesis (seq_base) values ($1) "
			  "on conflict do nothing returning seq_base",
			  seq_base, &res);
	if (rc == LEDGER_OK)
		PQclear(res);
	return rc;
}

int ledger_journal_started(struct ledger *l, bool *started)
{
	PGresult *res = NULL;
	int rc = query(l, "select count(*) from ledger.journal_genesis", 0, NULL, &res);
	if (rc)
		return rc;
	*started = field_i64(res, 0, 0) > 0;
	PQclear(res);
	return LEDGER_OK;
}

int ledger_last_action(struct ledger *l, int64_t *action)
{
	int64_t next;
	int rc = ledger_next_action(l, &next);
	if (rc == LEDGER_OK)
		*action = next - 1;
	return rc;
}

int ledger_participant_account(struct ledger *l, uint32_t participant, int64_t *account)
{
	uint32_t slot = participant % PARTICIPANTS_CACHE;
	if (l->cache_val[slot] && l->cache_key[slot] == participant) {
		*account = l->cache_val[slot];
		return LEDGER_OK;
	}
	char idtxt[16];
	snprintf(idtxt, sizeof(idtxt), "%u", participant);
	const char *params[2] = {idtxt, l->currency};
	PGresult *res = NULL;
	int rc = query(l,
		       "select id from ledger.accounts where participant = $1 and currency = $2 "
		       "and kind = 'AVAILABLE'",
		       2, params, &res);
	if (rc)
		return rc;
	if (PQntuples(res) != 1) {
		PQclear(res);
		set_err(l, "participant %u has no %s account", participant, l->currency);
		return LEDGER_ERR_NOT_FOUND;
	}
	*account = field_i64(res, 0, 0);
	PQclear(res);
	l->cache_key[slot] = participant;
	l->cache_val[slot] = *account;
	return LEDGER_OK;
}

int ledger_balance(struct ledger *l, int64_t account, int64_t *balance)
{
	PGresult *res = NULL;
	int rc = query_id(l, "select balance from ledger.accounts where id = $1", account, &res);
	if (rc)
		return rc;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return LEDGER_ERR_NOT_FOUND;
	}
	*balance = field_i64(res, 0, 0);
	PQclear(res);
	return LEDGER_OK;
}

/* A column's value as one base-10 int64, strictly; with ms, a fraction of zeros may
 * follow (extract(epoch ...) * 1000 is a numeric). */
static bool whole_int(const PGresult *res, int row, int col, bool ms, int64_t *out)
{
	const char *s = PQgetvalue(res, row, col);
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (ms && *end == '.')
		end += 1 + strspn(end + 1, "0");
	if (PQgetisnull(res, row, col) || errno != 0 || end == s || *end != '\0')
		return false;
	*out = v;
	return true;
}

/* A fill's columns as ledger_fill_of_row() reads them. */
#define TRADE_COLUMNS                                                                              \
	"id, product, aggressor, price, quantity, buyer, seller, taker_order_id, "                 \
	"maker_order_id, extract(epoch from traded_at) * 1000"

bool ledger_fill_of_row(const PGresult *res, int row, int at, struct ledger_trade *t)
{
	static const int cols[8] = {0, 3, 4, 5, 6, 7, 8, 9}; /* the numbers, ms last */
	int64_t v[8] = {0};
	*t = (struct ledger_trade){0};
	if (PQnfields(res) < at + 10)
		return false;
	bool whole = true;
	for (int i = 0; i < 8; i++)
		whole &= whole_int(res, row, at + cols[i], i == 7, &v[i]);
	const char *product = PQgetvalue(res, row, at + 1),
		   *aggressor = PQgetvalue(res, row, at + 2);
	bool buy = strcmp(aggressor, "buy") == 0;
	whole &= strlen(product) <= LEDGER_PRODUCT_MAX && (buy || strcmp(aggressor, "sell") == 0) &&
		 v[3] >= 0 && v[3] <= UINT32_MAX && v[4] >= 0 && v[4] <= UINT32_MAX;
	*t = (struct ledger_trade){.fill = {.fill_id = v[0],
					    .buyer_is_taker = buy,
					    .price = v[1],
					    .qty = v[2],
					    .buyer = (uint32_t)v[3],
					    .seller = (uint32_t)v[4],
					    .taker_order_id = v[5],
					    .maker_order_id = v[6]},
				   .time_ms = v[7]};
	snprintf(t->product, sizeof(t->product), "%s", product);
	return whole;
}

static bool trade_valid(const struct ledger_trade *tr);

int ledger_recent_trades(struct ledger *l, size_t max, ledger_trade_fn *fn, void *ctx)
{
	if (max == 0)
		return LEDGER_OK;
	if (lost(l)) {
		set_err(l, "reading ledger.fills: no connection");
		return LEDGER_ERR_UNAVAILABLE;
	}
	char maxtxt[24];
	snprintf(maxtxt, sizeof(maxtxt), "%zu", max);
	const char *params[1] = {maxtxt};
	/* The columns ledger_fill_of_row() reads, as the audit reads them. */
	if (!PQsendQueryParams(
		    l->conn, "select " TRADE_COLUMNS " from ledger.fills order by id desc limit $1",
		    1, NULL, params, NULL, NULL, 0) ||
	    !PQsetSingleRowMode(l->conn)) {
		set_err(l, "reading ledger.fills: %s", PQerrorMessage(l->conn));
		return lost(l) ? LEDGER_ERR_UNAVAILABLE : LEDGER_ERR_REFUSED;
	}
	int rc = LEDGER_OK;
	PGresult *res;
	while ((res = PQgetResult(l->conn)) != NULL) {
		ExecStatusType st = PQresultStatus(res);
		if (st == PGRES_SINGLE_TUPLE && rc == LEDGER_OK) {
			struct ledger_trade t;
			if (ledger_fill_of_row(res, 0, 0, &t) && trade_valid(&t)) {
				fn(&t, ctx);
			} else {
				set_err(l,
					"ledger.fills: the row of id %.20s does not hold a valid "
					"fill",
					PQgetvalue(res, 0, 0));
				rc = LEDGER_ERR_REFUSED;
			}
		} else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK && rc == LEDGER_OK) {
			rc = result_error(l, res, "reading ledger.fills");
			continue; /* result_error cleared it */
		}
		PQclear(res);
	}
	return rc;
}

/* Whether name is a class's name: 1-31 bytes of a product's characters, no '/'. */
static bool class_valid(const char *name)
{
	size_t n = strnlen(name, LEDGER_CLASS_MAX + 1);
	return n >= 1 && n <= LEDGER_CLASS_MAX && strchr(name, '/') == NULL &&
	       ledger_product_valid(name);
}

/* The fills of a history query: the product $1 (the class $1, with $5 true: the product
 * named as the class, and those of class/; no LIKE, whose '_' is a product's character
 * too) traded in [$2, $3) (ms since 1970: the BRIN index on traded_at, migration 0005,
 * narrows a range to its pages). */
#define HISTORY_WHERE                                                                              \
	"traded_at >= timestamptz 'epoch' + $2::bigint * interval '1 millisecond' and "            \
	"traded_at < timestamptz 'epoch' + $3::bigint * interval '1 millisecond' and "             \
	"(product = $1 or ($5::boolean and starts_with(product, $1 || '/')))"

/* Whether name is a product's (a class's, with is_class), as a history query names it. */
static bool history_name_valid(const char *name, bool is_class)
{
	return name != NULL && (is_class ? class_valid(name) : ledger_product_valid(name));
}

/* The session's statement_timeout for the history's queries, set when it changes; and no
 * JIT: compiling the query costs more than it saves at these sizes (50 ms of 600 for
 * 2,000,000 fills: docs/performance.md, "Price history"). */
static int history_session(struct ledger *l, int64_t timeout_ms)
{
	if (lost(l)) {
		set_err(l, "reading ledger.fills: no connection");
		return LEDGER_ERR_UNAVAILABLE;
	}
	if (timeout_ms == l->timeout_ms)
		return LEDGER_OK;
	char t[24];
	snprintf(t, sizeof(t), "%lld", (long long)timeout_ms);
	const char *p[1] = {t};
	PGresult *res = NULL;
	int rc = query(l,
		       "select set_config('statement_timeout', $1, false), "
		       "set_config('jit', 'off', false)",
		       1, p, &res);
	if (rc)
		return rc;
	PQclear(res);
	l->timeout_ms = timeout_ms;
	return LEDGER_OK;
}

int ledger_candles(struct ledger *l, const struct ledger_candle_query *q, int64_t timeout_ms,
		   struct ledger_candle *out, size_t max, size_t *n)
{
	*n = 0;
	int64_t iv = q->interval_ms;
	if (!history_name_valid(q->name, q->is_class) || iv < 1 || q->from_ms < 0 ||
	    q->to_ms <= q->from_ms || q->from_ms % iv != 0 || q->to_ms % iv != 0 ||
	    (uint64_t)((q->to_ms - q->from_ms) / iv) > max || q->to_ms > LEDGER_TIME_MS_MAX ||
	    timeout_ms < 0) {
		set_err(l, "candles: a name, and a range of at most %zu whole intervals", max);
		return LEDGER_ERR_ARGS;
	}
	int rc = history_session(l, timeout_ms);
	if (rc)
		return rc;
	PGresult *res;
	char from[24], to[24], step[24];
	snprintf(from, sizeof(from), "%lld", (long long)q->from_ms);
	snprintf(to, sizeof(to), "%lld", (long long)q->to_ms);
	snprintf(step, sizeof(step), "%lld", (long long)iv);
	const char *params[5] = {q->name, from, to, step, q->is_class ? "t" : "f"};
	/* The query's fills, grouped by interval (date_bin: timestamp arithmetic, cheaper than
	 * grouping by milliseconds computed in numeric). Open and close are the prices of the
	 * first and last fill by id (the engine's order); the vwap is exact (numeric), rounded
	 * down. */
	res = PQexecParams(
		l->conn,
		"select (extract(epoch from b) * 1000)::bigint, o, hi, lo, c, v, w from ("
		"select date_bin($4::bigint * interval '1 millisecond', traded_at, "
		"timestamptz 'epoch') as b, (min(array[id, price]))[2] as o, max(price) as hi, "
		"min(price) as lo, (max(array[id, price]))[2] as c, sum(quantity) as v, "
		"div(sum(price::numeric * quantity), sum(quantity)) as w from ledger.fills "
		"where " HISTORY_WHERE " group by 1) k order by 1",
		5, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		return result_error(l, res, "reading candles from ledger.fills");
	int rows = PQntuples(res);
	for (int i = 0; i < rows; i++) {
		int64_t v[7];
		bool whole = PQnfields(res) == 7;
		for (int c = 0; whole && c < 7; c++)
			whole = whole_int(res, i, c, false, &v[c]);
		struct ledger_candle k = {.start_ms = v[0],
					  .open = v[1],
					  .high = v[2],
					  .low = v[3],
					  .close = v[4],
					  .volume = v[5],
					  .vwap = v[6]};
		/* What candles are: in the range, in order, each price between low and high. */
		if (!whole || (size_t)i >= max || k.start_ms < q->from_ms ||
		    k.start_ms >= q->to_ms || k.start_ms % iv != 0 ||
		    (i > 0 && k.start_ms <= out[i - 1].start_ms) || k.low <= 0 || k.low > k.high ||
		    k.open < k.low || k.open > k.high || k.close < k.low || k.close > k.high ||
		    k.vwap < k.low || k.vwap > k.high || k.volume <= 0) {
			set_err(l, "candles: row %d of the answer is not a candle of the range%s",
				i, whole ? "" : " (a volume beyond 64 bits?)");
			PQclear(res);
			*n = 0;
			return LEDGER_ERR_REFUSED;
		}
		out[i] = k;
	}
	*n = (size_t)rows;
	PQclear(res);
	return LEDGER_OK;
}

/* Whether trade t is one ledger_trades_between() may answer for q, after prev (NULL: the
 * first of the page, which must come after q->after_id). */
static bool trade_of_query(const struct ledger_trade *t, const struct ledger_trade_query *q,
			   const struct ledger_trade *prev)
{
	size_t len = strlen(q->name);
	bool named =
		strcmp(t->product, q->name) == 0 ||
		(q->is_class && strncmp(t->product, q->name, len) == 0 && t->product[len] == '/');
	bool later = prev ? t->time_ms > prev->time_ms || (t->time_ms == prev->time_ms &&
							   t->fill.fill_id > prev->fill.fill_id)
			  : t->fill.fill_id > q->after_id;
	return named && later && t->time_ms >= q->from_ms && t->time_ms < q->to_ms &&
	       trade_valid(t);
}

int ledger_trades_between(struct ledger *l, const struct ledger_trade_query *q, int64_t timeout_ms,
			  struct ledger_trade *out, size_t max, size_t *n)
{
	*n = 0;
	if (!history_name_valid(q->name, q->is_class) || q->from_ms < 0 || q->to_ms <= q->from_ms ||
	    q->to_ms > LEDGER_TIME_MS_MAX || q->after_id < 0 || q->after_id > LEDGER_FILL_ID_MAX ||
	    max == 0 || max > INT32_MAX || timeout_ms < 0) {
		set_err(l, "trades: a name, a range and a page of 1 or more");
		return LEDGER_ERR_ARGS;
	}
	int rc = history_session(l, timeout_ms);
	if (rc)
		return rc;
	char from[24], to[24], after[24], limit[24];
	snprintf(from, sizeof(from), "%lld", (long long)q->from_ms);
	snprintf(to, sizeof(to), "%lld", (long long)q->to_ms);
	snprintf(after, sizeof(after), "%lld", (long long)q->after_id);
	snprintf(limit, sizeof(limit), "%zu", max);
	const char *params[6] = {q->name, from, to, after, q->is_class ? "t" : "f", limit};
	/* Where the page starts. From a cursor inside the range: the primary key from there,
	 * in id order, until the page is full (a page costs its own fills and the others'
	 * between them). Else (the first page, or a cursor outside the range or naming no
	 * fill): the range's fills by the BRIN index on traded_at (migration 0005), the first
	 * in the order (time, id) kept (a page costs the range; ordering by id there would let
	 * the planner walk the primary key through every fill before the range). Journaled
	 * times never go back, so both orders are the fills' own. The columns are the ones
	 * ledger_fill_of_row() reads. */
	bool from_cursor = false;
	if (q->after_id > 0) {
		PGresult *r = NULL;
		int64_t ms;
		if ((rc = query_id(l,
				   "select (extract(epoch from traded_at) * 1000)::bigint from "
				   "ledger.fills where id = $1",
				   q->after_id, &r)))
			return rc;
		from_cursor = PQntuples(r) == 1 && whole_int(r, 0, 0, false, &ms) &&
			      ms >= q->from_ms && ms < q->to_ms;
		PQclear(r);
	}
	PGresult *res = PQexecParams(
		l->conn,
		from_cursor ? "select " TRADE_COLUMNS " from ledger.fills where " HISTORY_WHERE
			      " and id > $4::bigint order by id limit $6::bigint"
			    : "select " TRADE_COLUMNS " from ledger.fills where " HISTORY_WHERE
			      " and id > $4::bigint order by traded_at, id limit $6::bigint",
		6, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		return result_error(l, res, "reading trades from ledger.fills");
	int rows = PQntuples(res);
	for (int i = 0; i < rows; i++) {
		if ((size_t)i >= max || !ledger_fill_of_row(res, i, 0, &out[i]) ||
		    !trade_of_query(&out[i], q, i > 0 ? &out[i - 1] : NULL)) {
			set_err(l, "trades: the row of id %.20s is not a fill of the query",
				PQgetvalue(res, i, 0));
			PQclear(res);
			return LEDGER_ERR_REFUSED;
		}
	}
	*n = (size_t)rows;
	PQclear(res);
	return LEDGER_OK;
}

/* A PGcancel, under the name the interface gives it. */
struct ledger_cancel *ledger_cancel_new(struct ledger *l)
{
	return lost(l) ? NULL : (struct ledger_cancel *)PQgetCancel(l->conn);
}

void ledger_cancel_send(struct ledger_cancel *c)
{
	char err[256];
	if (c)
		(void)PQcancel((PGcancel *)c, err, (int)sizeof(err)); /* the query says why */
}

void ledger_cancel_free(struct ledger_cancel *c)
{
	PQfreeCancel((PGcancel *)c); /* accepts NULL */
}

int ledger_last_batch(struct ledger *l, int64_t *batch_id)
{
	int rc = load_last_batch(l);
	if (rc == LEDGER_OK)
		*batch_id = l->last_batch;
	return rc;
}

int ledger_next_action(struct ledger *l, int64_t *action)
{
	PGresult *res = NULL;
	int rc = query_id(l,
			  "select coalesce(max(id) - $1::bigint + 1, 1) from ledger.transfers "
			  "where id >= $1::bigint",
			  LEDGER_OPERATOR_ID_BASE, &res);
	if (rc)
		return rc;
	*action = field_i64(res, 0, 0);
	PQclear(res);
	return LEDGER_OK;
}

/* ---------- posting batches ---------- */

static int cmp_id(const void *a, const void *b)
{
	int64_t x = ((const struct ledger_transfer *)a)->id;
	int64_t y = ((const struct ledger_transfer *)b)->id;
	return (x > y) - (x < y);
}

static int cmp_trade(const void *a, const void *b)
{
	int64_t x = ((const struct ledger_trade *)a)->fill.fill_id;
	int64_t y = ((const struct ledger_trade *)b)->fill.fill_id;
	return (x > y) - (x < y);
}

static char *put_i64(char *p, int64_t v)
{
	char tmp[24];
	int n = 0;
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*p++ = '-';
	while (n)
		*p++ = tmp[--n];
	return p;
}

static char *put_ref(char *p, int64_t v)
{
	if (v == 0) {
		memcpy(p, "\\N", 2);
		return p + 2;
	}
	return put_i64(p, v);
}

/* Room for need bytes in the COPY buffer. */
static int copy_room(struct ledger *l, size_t need)
{
	if (need > l->copy_cap) {
		char *b = realloc(l->copy_buf, need);
		if (!b)
			return LEDGER_ERR_NOMEM;
		l->copy_buf = b;
		l->copy_cap = need;
	}
	return LEDGER_OK;
}

/* "YYYY-MM-DD HH:MM:SS.mmm+00" of ms since 1970: traded_at, exactly to the millisecond. */
static char *put_time(char *p, int64_t ms)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	p += strftime(p, 24, "%Y-%m-%d %H:%M:%S", &tm);
	*p++ = '.';
	int frac = (int)(ms % 1000);
	*p++ = (char)('0' + frac / 100);
	*p++ = (char)('0' + frac / 10 % 10);
	*p++ = (char)('0' + frac % 10);
	memcpy(p, "+00", 3);
	return p + 3;
}

/*
 * COPY text rows, the transfers' then (from *fills_at) the trades'; every field
 * is a number, a fixed token or a product name of [A-Za-z0-9._/:-], so nothing
 * needs escaping.
 */
static int build_copy(struct ledger *l, int64_t batch_id, const struct ledger_transfer *t, size_t n,
		      const struct ledger_trade *tr, size_t n_trades, size_t *len, size_t *fills_at)
{
	int rc = copy_room(l, n * 256 + n_trades * (256 + LEDGER_PRODUCT_MAX) + 1);
	if (rc)
		return rc;
	char *p = l->copy_buf;
	for (size_t i = 0; i < n; i++) {
		const char *code = ledger_code_name(t[i].code);
		if (code == NULL || t[i].amount <= 0 || t[i].id <= 0)
			return LEDGER_ERR_ARGS;
		p = put_i64(p, t[i].id);
		*p++ = '\t';
		memcpy(p, l->currency, strlen(l->currency));
		p += strlen(l->currency);
		*p++ = '\t';
		p = put_i64(p, t[i].debit_account);
		*p++ = '\t';
		p = put_i64(p, t[i].credit_account);
		*p++ = '\t';
		p = put_i64(p, t[i].amount);
		*p++ = '\t';
		memcpy(p, code, strlen(code));
		p += strlen(code);
		*p++ = '\t';
		p = put_i64(p, batch_id);
		*p++ = '\t';
		p = put_ref(p, t[i].fill_id);
		*p++ = '\t';
		p = put_ref(p, t[i].taker_order_id);
		*p++ = '\t';
		p = put_ref(p, t[i].maker_order_id);
		*p++ = '\t';
		p = put_ref(p, t[i].lease_id);
		*p++ = '\n';
	}
	*fills_at = (size_t)(p - l->copy_buf);
	for (size_t i = 0; i < n_trades; i++) {
		const struct ledger_fill *f = &tr[i].fill;
		p = put_i64(p, f->fill_id);
		*p++ = '\t';
		p = put_i64(p, batch_id);
		*p++ = '\t';
		size_t plen = strlen(tr[i].product);
		memcpy(p, tr[i].product, plen);
		p += plen;
		*p++ = '\t';
		p = put_i64(p, f->price);
		*p++ = '\t';
		p = put_i64(p, f->qty);
		*p++ = '\t';
		p = put_i64(p, f->buyer);
		*p++ = '\t';
		p = put_i64(p, f->seller);
		*p++ = '\t';
		memcpy(p, f->buyer_is_taker ? "buy\t" : "sell\t", f->buyer_is_taker ? 4 : 5);
		p += f->buyer_is_taker ? 4 : 5;
		p = put_i64(p, f->taker_order_id);
		*p++ = '\t';
		p = put_i64(p, f->maker_order_id);
		*p++ = '\t';
		p = put_time(p, tr[i].time_ms);
		*p++ = '\n';
	}
	*len = (size_t)(p - l->copy_buf);
	return LEDGER_OK;
}

/* What a trade must be before it is written; the database checks the same. */
static bool trade_valid(const struct ledger_trade *tr)
{
	const struct ledger_fill *f = &tr->fill;
	return f->fill_id >= 1 && f->fill_id <= LEDGER_FILL_ID_MAX && f->price >= 1 &&
	       f->qty >= 1 && f->buyer != 0 && f->seller != 0 && f->taker_order_id >= 0 &&
	       f->maker_order_id >= 0 && tr->time_ms >= 0 && tr->time_ms <= LEDGER_TIME_MS_MAX &&
	       ledger_product_valid(tr->product); /* reads at most LEDGER_PRODUCT_MAX + 1 bytes */
}

/*
 * Whether batch_id is in the ledger with these transfers and trades (1), with
 * other ones (2), or not at all (0). The stored hash is recomputed from the
 * stored prev_hash, since the chain head may have moved on since it was
 * written, under the stored format (a batch of format 1, written before
 * ledger.fills, has only its transfers).
 */
static int batch_present(struct ledger *l, int64_t batch_id, const struct ledger_transfer *t,
			 size_t n, const struct ledger_trade *tr, size_t n_trades,
			 uint8_t hash_out[LEDGER_HASH_BYTES], int *present)
{
	PGresult *res = NULL;
	int rc = query_id(l, "select prev_hash, hash, format from ledger.batches where id = $1",
			  batch_id, &res);
	if (rc)
		return rc;
	uint8_t prev[LEDGER_HASH_BYTES], have[LEDGER_HASH_BYTES];
	*present = 0;
	if (PQntuples(res) == 1) {
		*present = 2;
		if (hash_of(res, 0, 0, prev) && hash_of(res, 0, 1, have)) {
			if (field_i64(res, 0, 2) == 1)
				ledger_batch_hash(prev, batch_id, l->currency, t, n, hash_out);
			else
				ledger_batch_hash_trades(prev, batch_id, l->currency, t, n, tr,
							 n_trades, hash_out);
			if (memcmp(have, hash_out, sizeof(have)) == 0)
				*present = 1;
		}
	}
	PQclear(res);
	return LEDGER_OK;
}

/* Sends one COPY's rows and ends it; false when the connection is gone (dropped). */
static bool copy_rows(struct ledger *l, const char *rows, size_t len)
{
	if (PQputCopyData(l->conn, rows, (int)len) == 1 && PQputCopyEnd(l->conn, NULL) == 1)
		return true;
	set_err(l, "COPY: %s", PQerrorMessage(l->conn));
	/* Mid-COPY the protocol state is unknown: drop the connection. */
	PQfinish(l->conn);
	l->conn = NULL;
	return false;
}

/*
 * One attempt, in two round trips (three with trades): one query string holds
 * BEGIN, the batch row, the COPY of the transfers, that of the trades and the
 * COMMIT; the server runs it up to a COPY and waits for its rows, and runs the
 * COMMIT after the last. A statement that fails skips the rest of the string,
 * COMMIT included, and leaves the transaction to be rolled back. The batch
 * row's values are numbers and hexadecimal digits this function writes.
 */
static int post_once(struct ledger *l, int64_t batch_id, const uint8_t hash[LEDGER_HASH_BYTES],
		     size_t n, size_t n_trades, size_t fills_at, size_t copy_len)
{
	char prev_hex[2 * LEDGER_HASH_BYTES + 1], hash_hex[2 * LEDGER_HASH_BYTES + 1];
	if (!OPENSSL_buf2hexstr_ex(prev_hex, sizeof(prev_hex), NULL, l->last_hash,
				   LEDGER_HASH_BYTES, '\0') ||
	    !OPENSSL_buf2hexstr_ex(hash_hex, sizeof(hash_hex), NULL, hash, LEDGER_HASH_BYTES,
				   '\0')) {
		set_err(l, "hash to hexadecimal failed");
		return LEDGER_ERR_NOMEM;
	}
	char sql[1024];
	snprintf(sql, sizeof(sql),
		 "begin; set local synchronous_commit = on; "
		 "insert into ledger.batches (id, n_transfers, prev_hash, hash, format, n_fills) "
		 "values (%lld, %zu, decode('%s', 'hex'), decode('%s', 'hex'), %d, %zu); "
		 "copy ledger.transfers (id, currency, debit_account, credit_account, amount, "
		 "code, batch_id, fill_id, taker_order_id, maker_order_id, lease_id) from stdin; "
		 "%scommit",
		 (long long)batch_id, n, prev_hex, hash_hex, LEDGER_FORMAT, n_trades,
		 n_trades ? "copy ledger.fills (id, batch_id, product, price, quantity, buyer, "
			    "seller, aggressor, taker_order_id, maker_order_id, traded_at) "
			    "from stdin; "
			  : "");
	PGresult *res = PQexec(l->conn, sql);
	if (PQresultStatus(res) != PGRES_COPY_IN)
		goto failed;
	PQclear(res);
	if (!copy_rows(l, l->copy_buf, fills_at))
		return LEDGER_ERR_UNAVAILABLE;
	/* Each COPY's result (the second asks for its rows first), then the COMMIT's:
	 * "COMMIT", not the "ROLLBACK" that a COMMIT of a failed transaction answers. */
	res = PQgetResult(l->conn);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		goto failed;
	PQclear(res);
	if (n_trades) {
		res = PQgetResult(l->conn);
		if (PQresultStatus(res) != PGRES_COPY_IN)
			goto failed;
		PQclear(res);
		if (!copy_rows(l, l->copy_buf + fills_at, copy_len - fills_at))
			return LEDGER_ERR_UNAVAILABLE;
		res = PQgetResult(l->conn);
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			goto failed;
		PQclear(res);
	}
	res = PQgetResult(l->conn);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		goto failed;
	if (strcmp(PQcmdStatus(res), "COMMIT") != 0) {
		set_err(l, "posting a batch: the server answered %s to COMMIT", PQcmdStatus(res));
		PQclear(res);
		while ((res = PQgetResult(l->conn)) != NULL)
			PQclear(res);
		return LEDGER_ERR_REFUSED;
	}
	PQclear(res);
	while ((res = PQgetResult(l->conn)) != NULL)
		PQclear(res);
	if (l->lose_next_commit) {
		l->lose_next_commit = false;
		PQfinish(l->conn);
		l->conn = NULL;
		set_err(l, "connection lost after COMMIT (injected)");
		return LEDGER_ERR_UNAVAILABLE;
	}
	return LEDGER_OK;
failed:;
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	bool unique = state && strcmp(state, SQLSTATE_UNIQUE) == 0;
	int rc = result_error(l, res, "posting a batch");
	while (!lost(l) && (res = PQgetResult(l->conn)) != NULL)
		PQclear(res);
	if (!lost(l))
		(void)exec_ok(l, "rollback");
	return rc == LEDGER_ERR_REFUSED && unique ? LEDGER_ERR_DUPLICATE : rc;
}

/* Records a batch that is in the ledger as the new chain head. */
static int finish_post(struct ledger *l, int64_t batch_id, const uint8_t hash[LEDGER_HASH_BYTES],
		       int rc)
{
	if ((rc == LEDGER_OK || rc == LEDGER_ERR_DUPLICATE) && batch_id >= l->last_batch) {
		memcpy(l->last_hash, hash, LEDGER_HASH_BYTES);
		l->last_batch = batch_id;
	}
	return rc;
}

int ledger_post(struct ledger *l, int64_t batch_id, struct ledger_transfer *t, size_t n)
{
	return ledger_post_trades(l, batch_id, t, n, NULL, 0);
}

int ledger_post_trades(struct ledger *l, int64_t batch_id, struct ledger_transfer *t, size_t n,
		       struct ledger_trade *tr, size_t n_trades)
{
	if (batch_id < 1 || n < 1 || n > LEDGER_BATCH_TRANSFERS_MAX || t == NULL || n_trades > n ||
	    (n_trades && tr == NULL))
		return LEDGER_ERR_ARGS;
	qsort(t, n, sizeof(*t), cmp_id);
	if (n_trades)
		qsort(tr, n_trades, sizeof(*tr), cmp_trade);
	for (size_t i = 0; i < n_trades; i++)
		if (!trade_valid(&tr[i]) ||
		    (i > 0 && tr[i].fill.fill_id == tr[i - 1].fill.fill_id)) {
			set_err(l, "batch %lld: fill %lld is invalid or repeated",
				(long long)batch_id, (long long)tr[i].fill.fill_id);
			return LEDGER_ERR_ARGS;
		}
	/* The trade transfers (leg 0, ids fill << 3) and the trades name the same
	 * fills: both lists are in fill id order now. */
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (t[i].code != LEDGER_TRADE)
			continue;
		if (k == n_trades || t[i].fill_id != tr[k].fill.fill_id ||
		    t[i].id != tr[k].fill.fill_id << 3) {
			set_err(l, "batch %lld: trade transfer %lld has no fill beside it",
				(long long)batch_id, (long long)t[i].id);
			return LEDGER_ERR_ARGS;
		}
		k++;
	}
	if (k < n_trades) {
		set_err(l, "batch %lld: fill %lld has no trade transfer beside it",
			(long long)batch_id, (long long)tr[k].fill.fill_id);
		return LEDGER_ERR_ARGS;
	}
	size_t copy_len, fills_at;
	int rc = build_copy(l, batch_id, t, n, tr, n_trades, &copy_len, &fills_at);
	if (rc)
		return rc;
	for (int attempt = 0;; attempt++) {
		uint8_t hash[LEDGER_HASH_BYTES];
		ledger_batch_hash_trades(l->last_hash, batch_id, l->currency, t, n, tr, n_trades,
					 hash);
		rc = lost(l) ? LEDGER_ERR_UNAVAILABLE
			     : post_once(l, batch_id, hash, n, n_trades, fills_at, copy_len);
		int present = 0;
		if (rc == LEDGER_ERR_UNAVAILABLE || rc == LEDGER_ERR_DUPLICATE ||
		    rc == LEDGER_ERR_REFUSED) {
			/* Outcome unknown, an id taken, or a stale chain head: look. */
			if (lost(l) && connect_db(l) != LEDGER_OK)
				return LEDGER_ERR_UNAVAILABLE;
			int prc = batch_present(l, batch_id, t, n, tr, n_trades, hash, &present);
			if (prc)
				return prc;
			if (present == 1)
				return finish_post(l, batch_id, hash,
						   rc == LEDGER_ERR_UNAVAILABLE
							   ? LEDGER_OK
							   : LEDGER_ERR_DUPLICATE);
			if (present == 2) {
				set_err(l,
					"batch %lld is already in the ledger with other contents",
					(long long)batch_id);
				return LEDGER_ERR_CONFLICT;
			}
			/* Not in. A taken id then means a transfer id settled elsewhere. */
			if (rc == LEDGER_ERR_DUPLICATE)
				rc = LEDGER_ERR_REFUSED;
			if (attempt == 0) {
				/* Retry once, on a fresh connection and the current chain head. */
				int lrc = load_last_batch(l);
				if (lrc)
					return lrc;
				continue;
			}
		}
		return finish_post(l, batch_id, hash, rc);
	}
}

/* ---------- migrations ---------- */

struct migration {
	int version;
	char name[256];
};

static int cmp_migration(const void *a, const void *b)
{
	return ((const struct migration *)a)->version - ((const struct migration *)b)->version;
}

/* Reads a whole file (at most 4 MiB) into a NUL-terminated buffer. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		n += fread(buf + n, 1, cap - n - 1, f);
		if (ferror(f) || n < cap - 1)
			break;
		if (cap >= (4u << 20)) {
			free(buf);
			buf = NULL;
			break;
		}
		char *nb = realloc(buf, cap * 2);
		if (!nb) {
			free(buf);
			buf = NULL;
		} else {
			buf = nb;
			cap *= 2;
		}
	}
	if (buf && ferror(f)) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (buf)
		buf[n] = '\0';
	return buf;
}

static void sha256_hex(const char *s, char out[65])
{
	uint8_t md[32];
	unsigned int len = 0;
	if (!EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL))
		abort();
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Lists NNNN_name.sql files of dir, sorted; at most max. */
static int list_migrations(const char *dir, struct migration *m, size_t max, size_t *n, char *err,
			   size_t err_len)
{
	DIR *d = opendir(dir);
	if (!d) {
		snprintf(err, err_len, "cannot open %s: %s", dir, strerror(errno));
		return LEDGER_ERR_ARGS;
	}
	*n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *s = de->d_name;
		size_t len = strlen(s);
		if (len < 10 || len >= sizeof(m->name) || strcmp(s + len - 4, ".sql") != 0 ||
		    s[4] != '_' || s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9' ||
		    s[2] < '0' || s[2] > '9' || s[3] < '0' || s[3] > '9')
			continue;
		if (*n == max) {
			closedir(d);
			snprintf(err, err_len, "more than %zu migrations", max);
			return LEDGER_ERR_MIGRATION;
		}
		m[*n].version =
			(s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
		memcpy(m[*n].name, s, len + 1);
		(*n)++;
	}
	closedir(d);
	qsort(m, *n, sizeof(*m), cmp_migration);
	for (size_t i = 1; i < *n; i++)
		if (m[i].version == m[i - 1].version) {
			snprintf(err, err_len, "two migrations numbered %04d", m[i].version);
			return LEDGER_ERR_MIGRATION;
		}
	return LEDGER_OK;
}

static int migrate_one(PGconn *c, const char *dir, const struct migration *m, bool *applied,
		       char *err, size_t err_len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, m->name);
	char *sql = slurp(path);
	if (!sql) {
		snprintf(err, err_len, "cannot read %s", path);
		return LEDGER_ERR_MIGRATION;
	}
	char sum[65], ver[16];
	sha256_hex(sql, sum);
	snprintf(ver, sizeof(ver), "%d", m->version);
	const char *params[3] = {ver, m->name, sum};
	int rc = LEDGER_ERR_MIGRATION;
	PGresult *res = PQexec(c, "begin; select pg_advisory_xact_lock(724300)");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		goto out;
	PQclear(res);
	res = PQexecParams(c, "select checksum from public.schema_migrations where version = $1", 1,
			   NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		goto out;
	if (PQntuples(res) == 1) {
		bool same = strcmp(PQgetvalue(res, 0, 0), sum) == 0;
		PQclear(res);
		res = NULL;
		*applied = false;
		if (!same) {
			snprintf(err, err_len, "%s changed after it was applied", m->name);
			goto out;
		}
		rc = LEDGER_OK;
		goto out;
	}
	PQclear(res);
	res = PQexec(c, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
		goto out;
	PQclear(res);
	res = PQexecParams(c,
			   "insert into public.schema_migrations (version, name, checksum) "
			   "values ($1, $2, $3)",
			   3, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		goto out;
	PQclear(res);
	res = PQexec(c, "commit");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		goto out;
	*applied = true;
	rc = LEDGER_OK;
out:
	if (rc != LEDGER_OK && err[0] == '\0')
		snprintf(err, err_len, "%s: %s", m->name, PQerrorMessage(c));
	PQclear(res);
	if (!*applied) {
		res = PQexec(c, "rollback");
		PQclear(res);
	}
	free(sql);
	return rc;
}

int ledger_migrate(const char *conninfo, const char *dir,
		   void (*report)(int version, const char *name, bool applied, void *ctx),
		   void *ctx, char *err, size_t err_len)
{
	enum { MIGRATIONS_MAX = 1000 };
	struct migration *list = calloc(MIGRATIONS_MAX, sizeof(*list));
	size_t n;
	err[0] = '\0';
	if (!list)
		return LEDGER_ERR_NOMEM;
	int rc = list_migrations(dir, list, MIGRATIONS_MAX, &n, err, err_len);
	if (rc) {
		free(list);
		return rc;
	}
	PGconn *c = PQconnectdb(conninfo);
	if (c == NULL || PQstatus(c) != CONNECTION_OK) {
		snprintf(err, err_len, "cannot connect: %s", c ? PQerrorMessage(c) : "no memory");
		PQfinish(c);
		free(list);
		return LEDGER_ERR_UNAVAILABLE;
	}
	PGresult *res =
		PQexec(c, "set client_min_messages = warning; "
			  "create table if not exists public.schema_migrations ("
			  "version integer primary key, name text not null, "
			  "checksum text not null, applied_at timestamptz not null default now())");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		snprintf(err, err_len, "schema_migrations: %s", PQerrorMessage(c));
		PQclear(res);
		PQfinish(c);
		free(list);
		return LEDGER_ERR_MIGRATION;
	}
	PQclear(res);
	for (size_t i = 0; i < n && rc == LEDGER_OK; i++) {
		bool applied = false;
		rc = migrate_one(c, dir, &list[i], &applied, err, err_len);
		if (rc == LEDGER_OK && report)
			report(list[i].version, list[i].name, applied, ctx);
	}
	PQfinish(c);
	free(list);
	return rc;
}

/* ---------- settlement writer ---------- */

struct ledger_writer {
	struct ledger_writer_config cfg;
	char *conninfo, *currency;
	struct ledger *l;
	/* Fills, and settlements of fills' escrow (legs 2-5), in arrival order. */
	struct writer_item {
		struct ledger_trade tr; /* a settlement uses only tr.fill */
		bool settle;
		int64_t used, total, lease_id;
	} * fills;
	size_t n;
	struct writer_action {
		uint32_t participant;
		bool deposit;
		int64_t amount, seq;
	} * actions;
	size_t n_actions;		   /* pending, in the same batch as the fills */
	struct ledger_transfer *transfers; /* up to 4 per item, 1 per action */
	struct ledger_trade *trades;	   /* the batch's fills, for ledger.fills */
	size_t cap;			   /* of fills, actions and trades; transfers: 5 x */
	int64_t seq;			   /* batch id: seq of the last fill */
	int64_t first_ms;		   /* when the oldest pending fill arrived */
	bool sealed;	  /* a flush failed: the batch's contents and id are fixed */
	uint64_t retries; /* failed attempts, for tests and monitoring */
	char err[512];
};

void ledger_writer_config_default(struct ledger_writer_config *cfg)
{
	*cfg = (struct ledger_writer_config){
		.currency = "USD",
		.fees = {.maker_bps = 0, .taker_bps = 0},
		.batch_fills_max = 5000,
		.batch_ms_max = 50,
		.retry_ms_min = 10,
		.retry_ms_max = 2000,
		.retry_total_ms_max = 10000,
	};
}

int ledger_writer_create(const struct ledger_writer_config *cfg, struct ledger_writer **out)
{
	if (cfg->conninfo == NULL || cfg->currency == NULL || cfg->batch_fills_max < 1 ||
	    cfg->batch_fills_max > LEDGER_BATCH_TRANSFERS_MAX / 2 ||
	    cfg->fees.maker_bps > LEDGER_BPS_MAX || cfg->fees.taker_bps > LEDGER_BPS_MAX ||
	    cfg->retry_ms_min < 1 || cfg->retry_ms_max < cfg->retry_ms_min)
		return LEDGER_ERR_ARGS;
	struct ledger_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return LEDGER_ERR_NOMEM;
	w->cfg = *cfg;
	w->conninfo = strdup(cfg->conninfo);
	w->currency = strdup(cfg->currency);
	w->cap = cfg->batch_fills_max;
	w->fills = calloc(w->cap, sizeof(*w->fills));
	w->actions = calloc(w->cap, sizeof(*w->actions));
	w->transfers = calloc(5 * w->cap, sizeof(*w->transfers));
	w->trades = calloc(w->cap, sizeof(*w->trades));
	if (!w->conninfo || !w->currency || !w->fills || !w->actions || !w->transfers ||
	    !w->trades) {
		ledger_writer_destroy(w);
		return LEDGER_ERR_NOMEM;
	}
	w->cfg.conninfo = w->conninfo;
	w->cfg.currency = w->currency;
	*out = w;
	return LEDGER_OK;
}

void ledger_writer_destroy(struct ledger_writer *w)
{
	if (!w)
		return;
	ledger_close(w->l);
	free(w->conninfo);
	free(w->currency);
	free(w->fills);
	free(w->actions);
	free(w->transfers);
	free(w->trades);
	free(w);
}

const char *ledger_writer_error(const struct ledger_writer *w)
{
	return w->err;
}

uint64_t ledger_writer_retries(const struct ledger_writer *w)
{
	return w->retries;
}

size_t ledger_writer_pending(const struct ledger_writer *w)
{
	return w->n + w->n_actions;
}

/* Doubles the batch's room, up to what one COPY may carry. */
static bool writer_grow(struct ledger_writer *w)
{
	size_t cap = 2 * w->cap;
	if (cap > LEDGER_BATCH_TRANSFERS_MAX / 5)
		cap = LEDGER_BATCH_TRANSFERS_MAX / 5;
	if (cap <= w->cap)
		return false;
	struct writer_item *f = realloc(w->fills, cap * sizeof(*f));
	if (f)
		w->fills = f;
	struct writer_action *a = f ? realloc(w->actions, cap * sizeof(*a)) : NULL;
	if (a)
		w->actions = a;
	struct ledger_transfer *t = a ? realloc(w->transfers, 5 * cap * sizeof(*t)) : NULL;
	if (t)
		w->transfers = t;
	struct ledger_trade *tr = t ? realloc(w->trades, cap * sizeof(*tr)) : NULL;
	if (tr == NULL)
		return false;
	w->trades = tr;
	w->cap = cap;
	return true;
}

/* Whether another item may join the pending batch at seq; sets w->err if not. A full
 * batch grows for more items of its last sequence: one input's items never span two
 * batches (the batch id is the sequence, and recovery trusts it). */
static int writer_can_add(struct ledger_writer *w, int64_t seq, bool action)
{
	bool full = (action ? w->n_actions : w->n) >= w->cfg.batch_fills_max;
	if (full && !w->sealed && seq == w->seq && w->n + w->n_actions > 0 &&
	    ((action ? w->n_actions : w->n) < w->cap || writer_grow(w)))
		full = false;
	if (!w->sealed && !full && seq >= w->seq && seq >= 1)
		return LEDGER_OK;
	snprintf(w->err, sizeof(w->err), "%s",
		 w->sealed ? "a failed batch must be flushed first"
			   : (full ? "batch full: flush first" : "sequence numbers go back"));
	return w->sealed ? LEDGER_ERR_UNAVAILABLE : LEDGER_ERR_ARGS;
}

int ledger_writer_add_action(struct ledger_writer *w, uint32_t participant, int64_t amount,
			     bool deposit, int64_t seq, int64_t now_ms)
{
	int rc = writer_can_add(w, seq, true);
	if (rc)
		return rc;
	if (participant == 0 || amount < 1 || seq > LEDGER_ACTION_ID_MAX) {
		snprintf(w->err, sizeof(w->err), "invalid operator action at %lld", (long long)seq);
		return LEDGER_ERR_ARGS;
	}
	if (w->n + w->n_actions == 0)
		w->first_ms = now_ms;
	w->actions[w->n_actions++] = (struct writer_action){
		.participant = participant, .deposit = deposit, .amount = amount, .seq = seq};
	w->seq = seq;
	return LEDGER_OK;
}

int ledger_writer_add_fill(struct ledger_writer *w, const struct ledger_trade *tr, int64_t seq,
			   int64_t now_ms)
{
	struct ledger_accounts dummy = {.fees = 1, .escrow = 2, .bank = 3, .buyer = 4, .seller = 5};
	struct ledger_transfer t[2];
	size_t n;
	int rc = writer_can_add(w, seq, false);
	if (rc)
		return rc;
	rc = ledger_fill_transfers(&tr->fill, &w->cfg.fees, &dummy, t, &n);
	if (rc == LEDGER_OK && !trade_valid(tr))
		rc = LEDGER_ERR_ARGS;
	if (rc) {
		snprintf(w->err, sizeof(w->err), "fill %lld: %s", (long long)tr->fill.fill_id,
			 ledger_status_name(rc));
		return rc;
	}
	if (w->n + w->n_actions == 0)
		w->first_ms = now_ms;
	w->fills[w->n++] = (struct writer_item){.tr = *tr};
	w->seq = seq;
	return LEDGER_OK;
}

int ledger_writer_add_settle(struct ledger_writer *w, const struct ledger_fill *f, int64_t used,
			     int64_t total, int64_t lease_id, int64_t seq, int64_t now_ms)
{
	struct ledger_accounts dummy = {.fees = 1, .escrow = 2, .bank = 3, .buyer = 4, .seller = 5};
	struct ledger_transfer t[4];
	size_t n;
	int rc = writer_can_add(w, seq, false);
	if (rc)
		return rc;
	rc = ledger_settle_part_transfers(f, &w->cfg.fees, &dummy, used, total, lease_id, t, &n);
	if (rc) {
		snprintf(w->err, sizeof(w->err), "settlement of fill %lld: %s",
			 (long long)f->fill_id, ledger_status_name(rc));
		return rc;
	}
	if (w->n + w->n_actions == 0)
		w->first_ms = now_ms;
	w->fills[w->n++] = (struct writer_item){
		.tr.fill = *f, .settle = true, .used = used, .total = total, .lease_id = lease_id};
	w->seq = seq;
	return LEDGER_OK;
}

bool ledger_writer_due(const struct ledger_writer *w, int64_t now_ms)
{
	size_t pending = w->n + w->n_actions;
	return pending > 0 &&
	       (w->n >= w->cfg.batch_fills_max || w->n_actions >= w->cfg.batch_fills_max ||
		now_ms - w->first_ms >= w->cfg.batch_ms_max);
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(uint32_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* Turns the pending items into transfers with the connection's account ids, and
 * the fills among them into w->trades (*n_trades). */
static int writer_transfers(struct ledger_writer *w, size_t *m, size_t *n_trades)
{
	struct ledger_accounts acc;
	ledger_exchange_accounts(w->l, &acc);
	*m = *n_trades = 0;
	for (size_t i = 0; i < w->n; i++) {
		const struct writer_item *it = &w->fills[i];
		const struct ledger_fill *f = &it->tr.fill;
		int rc = ledger_participant_account(w->l, f->buyer, &acc.buyer);
		if (rc == LEDGER_OK)
			rc = ledger_participant_account(w->l, f->seller, &acc.seller);
		size_t k;
		if (rc == LEDGER_OK && it->settle)
			rc = ledger_settle_part_transfers(f, &w->cfg.fees, &acc, it->used,
							  it->total, it->lease_id,
							  w->transfers + *m, &k);
		else if (rc == LEDGER_OK)
			rc = ledger_fill_transfers(f, &w->cfg.fees, &acc, w->transfers + *m, &k);
		if (rc)
			return rc;
		if (!it->settle)
			w->trades[(*n_trades)++] = it->tr;
		*m += k;
	}
	for (size_t i = 0; i < w->n_actions; i++) {
		const struct writer_action *a = &w->actions[i];
		int64_t account;
		int rc = ledger_participant_account(w->l, a->participant, &account);
		if (rc)
			return rc;
		w->transfers[(*m)++] = (struct ledger_transfer){
			.id = LEDGER_OPERATOR_ID_BASE + a->seq,
			.debit_account = a->deposit ? acc.bank : account,
			.credit_account = a->deposit ? account : acc.bank,
			.amount = a->amount,
			.code = a->deposit ? LEDGER_DEPOSIT : LEDGER_WITHDRAWAL,
		};
	}
	return LEDGER_OK;
}

/* Reconnects when there is no live connection (the same struct ledger: one
 * that held the writer lock takes it again, connect_db). */
static int writer_connect(struct ledger_writer *w)
{
	if (w->l == NULL)
		return ledger_open(w->conninfo, w->currency, &w->l);
	return lost(w->l) ? connect_db(w->l) : LEDGER_OK;
}

void ledger_writer_adopt(struct ledger_writer *w, struct ledger *l)
{
	ledger_close(w->l);
	w->l = l;
}

/* Exponential backoff between attempts, bounded by retry_total_ms_max in all. */
struct backoff {
	int64_t deadline;
	uint32_t delay;
};

static struct backoff backoff_start(const struct ledger_writer *w)
{
	return (struct backoff){.deadline = mono_ms() + w->cfg.retry_total_ms_max,
				.delay = w->cfg.retry_ms_min};
}

/* After a failed attempt: waits and returns true, or false when time is up. */
static bool backoff_wait(struct ledger_writer *w, struct backoff *b)
{
	w->retries++;
	if (mono_ms() + b->delay > b->deadline)
		return false;
	sleep_ms(b->delay);
	b->delay = b->delay * 2 > w->cfg.retry_ms_max ? w->cfg.retry_ms_max : b->delay * 2;
	return true;
}

int ledger_writer_register(struct ledger_writer *w, uint32_t id, const char *name,
			   const uint8_t key[32])
{
	struct backoff b = backoff_start(w);
	for (;;) {
		int rc = writer_connect(w);
		if (rc == LEDGER_OK)
			rc = ledger_add_participant(w->l, id, name);
		if (rc == LEDGER_OK)
			rc = ledger_register_key(w->l, id, key);
		if (rc == LEDGER_OK)
			return LEDGER_OK;
		snprintf(w->err, sizeof(w->err), "participant %u: %s", id,
			 w->l ? ledger_error(w->l) : ledger_status_name(rc));
		if (rc != LEDGER_ERR_UNAVAILABLE)
			return rc;
		if (!backoff_wait(w, &b))
			return LEDGER_ERR_UNAVAILABLE;
	}
}

int ledger_writer_flush(struct ledger_writer *w)
{
	if (w->n + w->n_actions == 0)
		return LEDGER_OK;
	w->sealed = true;
	struct backoff b = backoff_start(w);
	for (;;) {
		int rc = writer_connect(w);
		size_t m = 0, n_trades = 0;
		if (rc == LEDGER_OK)
			rc = writer_transfers(w, &m, &n_trades);
		if (rc == LEDGER_OK)
			rc = ledger_post_trades(w->l, w->seq, w->transfers, m, w->trades, n_trades);
		if (rc == LEDGER_OK || rc == LEDGER_ERR_DUPLICATE) {
			w->n = w->n_actions = 0;
			w->sealed = false;
			return LEDGER_OK;
		}
		snprintf(w->err, sizeof(w->err), "batch %lld: %s", (long long)w->seq,
			 w->l ? ledger_error(w->l) : ledger_status_name(rc));
		if (rc != LEDGER_ERR_UNAVAILABLE)
			return rc;
		if (!backoff_wait(w, &b))
			return LEDGER_ERR_UNAVAILABLE;
	}
}
