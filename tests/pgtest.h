/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A fresh, migrated database per test on the cluster named by
 * GRIDEX_TEST_DATABASE_URL, with URLs for its owner, gridex_app and
 * gridex_auditor; dropped afterwards. Shared by the integration tests.
 */
#ifndef GRIDEX_TESTS_PGTEST_H
#define GRIDEX_TESTS_PGTEST_H

#include <stdint.h>

#include <libpq-fe.h>

struct pgtest {
	char admin_url[1024]; /* the maintenance database */
	char owner_url[1024]; /* this test's database as its owner */
	char app_url[1024];
	char auditor_url[1024];
	char dbname[64];
};

extern struct pgtest pgt;

/* Check fixtures: create and migrate (from migrations_dir), then drop. */
void pgtest_setup_dir(const char *migrations_dir);
void pgtest_teardown(void);

/* Prints "1..0 # SKIP" and returns 77 when the cluster is not configured, else 0. */
int pgtest_skip_without_database(void);

PGconn *pgtest_connect(const char *url);
void pgtest_sql_ok(PGconn *c, const char *sql);
void pgtest_sql_refused(PGconn *c, const char *sql, const char *sqlstate);
int64_t pgtest_sql_int(PGconn *c, const char *sql);

/* Ends the sessions of gridex_app on this test's database (a gridexd's, which hold the
 * ledger's writer lock) and takes that lock on a new connection as the owner, which it
 * returns: no batch is written until pgtest_writer_lock_release(c). */
PGconn *pgtest_writer_lock_take(void);
void pgtest_writer_lock_release(PGconn *c);

/* Runs the audit as gridex_auditor; returns the number of failed checks. */
int pgtest_audit(void);

#endif
