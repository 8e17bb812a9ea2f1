/* SPDX-License-Identifier: Apache-2.0 */
#include "pgtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "ledger.h"

struct pgtest pgt;

/* Rewrites the database and user of the base URL, keeping its other parameters. */
static void url_for(char *out, size_t len, const char *db, const char *user)
{
	const char *base = getenv("GRIDEX_TEST_DATABASE_URL");
	const char *q = strchr(base, '?');
	char params[768] = "";
	for (const char *p = q ? q + 1 : NULL; p && *p;) {
		const char *amp = strchr(p, '&');
		size_t plen = amp ? (size_t)(amp - p) : strlen(p), n = strlen(params);
		if (strncmp(p, "user=", 5) != 0 && plen > 0)
			snprintf(params + n, sizeof(params) - n, "%.*s&", (int)plen, p);
		p = amp ? amp + 1 : NULL;
	}
	snprintf(out, len, "postgresql:///%s?%suser=%s", db, params, user);
}

PGconn *pgtest_connect(const char *url)
{
	PGconn *c = PQconnectdb(url);
	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect %s: %s", url, PQerrorMessage(c));
	return c;
}

void pgtest_sql_ok(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
		      "%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
}

void pgtest_sql_refused(PGconn *c, const char *sql, const char *sqlstate)
{
	PGresult *r = PQexec(c, sql);
	const char *got = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	ck_assert_msg(PQresultStatus(r) == PGRES_FATAL_ERROR && got && strcmp(got, sqlstate) == 0,
		      "%s: expected SQLSTATE %s, got %s (%s)", sql, sqlstate, got ? got : "success",
		      PQerrorMessage(c));
	PQclear(r);
}

int64_t pgtest_sql_int(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1, "%s: %s", sql,
		      PQerrorMessage(c));
	int64_t v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return v;
}

/* ledger.c's WRITER_LOCK_KEY. */
#define WRITER_LOCK_SQL(f) "select " f "(724302)"

PGconn *pgtest_writer_lock_take(void)
{
	PGconn *c = pgtest_connect(pgt.owner_url);
	char sql[256];
	snprintf(sql, sizeof(sql),
		 "select count(pg_terminate_backend(pid)) from pg_stat_activity where datname = "
		 "'%s' and usename = 'gridex_app'",
		 pgt.dbname);
	ck_assert_int_gt(pgtest_sql_int(c, sql), 0);
	/* Waits for the terminated session to release it. */
	pgtest_sql_ok(c, WRITER_LOCK_SQL("pg_advisory_lock"));
	return c;
}

void pgtest_writer_lock_release(PGconn *c)
{
	pgtest_sql_ok(c, WRITER_LOCK_SQL("pg_advisory_unlock"));
}

void pgtest_setup_dir(const char *migrations_dir)
{
	static int n;
	snprintf(pgt.dbname, sizeof(pgt.dbname), "gridex_test_%d_%d", (int)getpid(), n++);
	url_for(pgt.admin_url, sizeof(pgt.admin_url), "postgres", "gridex");
	url_for(pgt.owner_url, sizeof(pgt.owner_url), pgt.dbname, "gridex");
	url_for(pgt.app_url, sizeof(pgt.app_url), pgt.dbname, "gridex_app");
	url_for(pgt.auditor_url, sizeof(pgt.auditor_url), pgt.dbname, "gridex_auditor");
	PGconn *c = pgtest_connect(pgt.admin_url);
	char sql[256];
	/* A database of this name is a leftover of a test process that died with the same
	 * pid (one that was killed, or a local run interrupted): it is nobody's now. */
	snprintf(sql, sizeof(sql), "drop database if exists %s with (force)", pgt.dbname);
	pgtest_sql_ok(c, sql);
	snprintf(sql, sizeof(sql), "create database %s", pgt.dbname);
	pgtest_sql_ok(c, sql);
	PQfinish(c);
	char err[512];
	int rc = ledger_migrate(pgt.owner_url, migrations_dir, NULL, NULL, err, sizeof(err));
	ck_assert_msg(rc == LEDGER_OK, "migrate: %s", err);
}

void pgtest_teardown(void)
{
	PGconn *c = pgtest_connect(pgt.admin_url);
	char sql[256];
	snprintf(sql, sizeof(sql), "drop database if exists %s with (force)", pgt.dbname);
	pgtest_sql_ok(c, sql);
	PQfinish(c);
}

int pgtest_skip_without_database(void)
{
	if (getenv("GRIDEX_TEST_DATABASE_URL") != NULL)
		return 0;
	printf("1..0 # SKIP GRIDEX_TEST_DATABASE_URL is not set (./scripts/test sets it)\n");
	return 77;
}

/* Audit lines go to stderr, which meson keeps in the test log. */
static void audit_line(bool ok, const char *check, const char *detail, void *ctx)
{
	(void)ctx;
	fprintf(stderr, "# audit: %s %s (%s)\n", ok ? "ok" : "FAIL", check, detail);
}

int pgtest_audit(void)
{
	char err[512];
	int failed = -1;
	int rc = ledger_audit(pgt.auditor_url, audit_line, NULL, &failed, err, sizeof(err));
	ck_assert_msg(rc == LEDGER_OK, "audit: %s", err);
	return failed;
}
