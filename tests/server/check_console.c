/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The web console in a browser (docs/http-api.md, "The console"): a real
 * gridexd serving the console and the API, PostgreSQL, TLS clients that make
 * a market in two accelerator classes and two delivery hours; then
 * tests/browser/console.test.cjs loads every page in headless Chromium
 * (Debian's, driven by the vendored playwright-core) and checks that the
 * numbers shown equal the API's. Screenshots land in the build directory
 * (console-screenshots/). Skipped with a message where Node.js or Chromium is
 * missing (./scripts/test installs both).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "pgtest.h"
#include "tap.h"
#include "tclient.h"

#define TOKEN "console-test-token-0123456789"

static struct tserver srv;
static struct tclient op, buyer, seller;

static void order(struct tclient *c, uint64_t coid, const char *product, int side, int64_t price,
		  int64_t qty)
{
	ck_assert_int_eq(tclient_answer(c, tclient_order(c, coid, product, side, price, qty)), 0);
}

START_TEST(pages_show_what_the_api_says)
{
	static char console_arg[600];
	snprintf(console_arg, sizeof(console_arg), "--http-console-dir=%s/server/console",
		 GRIDEX_TEST_SOURCE);
	static char auditor[1100], history[1100];
	memset(&srv, 0, sizeof(srv));
	pgtest_setup_dir(GRIDEX_TEST_MIGRATIONS);
	snprintf(auditor, sizeof(auditor), "--http-auditor-database-url=%s", pgt.auditor_url);
	snprintf(history, sizeof(history), "--http-history-database-url=%s", pgt.auditor_url);
	const char *const args[] = {"--http-listen=127.0.0.1:0",
				    console_arg,
				    "--http-operator-token=" TOKEN,
				    auditor,
				    "--http-ledger-refresh-ms=500",
				    history,
				    NULL};
	tserver_start(&srv, args);
	tclient_market(&srv, &op, &buyer, 1, 1000000000, &seller, 2, "H100-80G", 100);
	ck_assert_int_eq(tclient_operator(&op, GRIDEX__V1__REQUEST_TYPE__SET_CAPACITY, 2,
					  "A100-40G", 100, NULL, NULL),
			 0);
	/* H100 in two hours: trades at 2.60 and 2.7125, resting bids and asks; the next hour
	 * and A100 with resting orders and a trade each. */
	char h1[64], h2[64], a1[64];
	tproduct(h1, sizeof(h1), "H100-80G", 2);
	tproduct(h2, sizeof(h2), "H100-80G", 3);
	tproduct(a1, sizeof(a1), "A100-40G", 2);
	uint64_t id = 1;
	order(&seller, id++, h1, GRIDEX__V1__SIDE__SELL, 2600000, 3);
	order(&buyer, id++, h1, GRIDEX__V1__SIDE__BUY, 2600000, 2);
	order(&seller, id++, h1, GRIDEX__V1__SIDE__SELL, 2712500, 2);
	order(&buyer, id++, h1, GRIDEX__V1__SIDE__BUY, 2712500, 2);
	order(&buyer, id++, h1, GRIDEX__V1__SIDE__BUY, 2500000, 4);
	order(&seller, id++, h1, GRIDEX__V1__SIDE__SELL, 2800000, 5);
	order(&seller, id++, h2, GRIDEX__V1__SIDE__SELL, 2900000, 1);
	order(&buyer, id++, h2, GRIDEX__V1__SIDE__BUY, 2900000, 1);
	order(&buyer, id++, h2, GRIDEX__V1__SIDE__BUY, 2400000, 3);
	order(&seller, id++, a1, GRIDEX__V1__SIDE__SELL, 1200000, 2);
	order(&buyer, id++, a1, GRIDEX__V1__SIDE__BUY, 1200000, 1);
	/* The API has them once a subscriber's snapshot (in sequence after them) comes. */
	int status;
	for (int i = 0; i < 500; i++) {
		const char *r =
			thttp_get(srv.http_port, "/api/v1/trades?accelerator=A100-40G", &status);
		if (strstr(thttp_body(r), "1200000"))
			break;
		struct timespec ts = {.tv_nsec = 10000000};
		nanosleep(&ts, NULL);
	}
	/* The trial balance is read every 500 ms: wait until it has every fill (14.6125 in
	 * escrow: 2 x 2.60 + 2.60 + 2.7125 + 2.90 + 1.20), after which nothing changes. */
	bool settled = false;
	for (int i = 0; i < 500 && !settled; i++) {
		const char *r = thttp_get_with(srv.http_port, "/api/v1/operator/ledger",
					       "Authorization: Bearer " TOKEN, &status);
		settled = strstr(thttp_body(r), "\"ESCROW\":{\"accounts\":1,\"balance\":14612500}");
		struct timespec ts = {.tv_nsec = 10000000};
		nanosleep(&ts, NULL);
	}
	ck_assert_msg(settled, "the trial balance never showed every fill");
	/* The console's files are served; nothing outside the directory is. */
	ck_assert_int_eq((thttp_get(srv.http_port, "/", &status), status), 200);
	ck_assert_int_eq((thttp_get(srv.http_port, "/app.js", &status), status), 200);
	ck_assert_int_eq((thttp_get(srv.http_port, "/../meson.build", &status), status), 404);
	ck_assert_int_eq((thttp_get(srv.http_port, "/.hidden.js", &status), status), 404);
	ck_assert_int_eq((thttp_get(srv.http_port, "/nope.html", &status), status), 404);

	if (access("/usr/bin/chromium", X_OK) != 0 ||
	    system("node --version >/dev/null 2>&1") != 0) {
		printf("# SKIP browser: needs node and /usr/bin/chromium (./scripts/test installs "
		       "them)\n");
		goto out;
	}
	char cmd[2048];
	snprintf(cmd, sizeof(cmd),
		 "mkdir -p %s && tar xzf %s/tests/browser/vendor/playwright-core-1.56.1.tgz -C "
		 "%s && rm -rf %s && mkdir -p %s",
		 srv.dir, GRIDEX_TEST_SOURCE, srv.dir, GRIDEX_TEST_SCREENSHOTS,
		 GRIDEX_TEST_SCREENSHOTS);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd),
		 "GRIDEX_OPERATOR_TOKEN=" TOKEN " PLAYWRIGHT_CORE=%s/package HOME=%s node "
		 "%s/tests/browser/console.test.cjs "
		 "http://127.0.0.1:%d %s 2>&1",
		 srv.dir, srv.dir, GRIDEX_TEST_SOURCE, srv.http_port, GRIDEX_TEST_SCREENSHOTS);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	static char out[65536];
	size_t n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	int rc = pclose(p);
	/* The browser test's lines as TAP comments (its "ok" lines are not TAP's). */
	static char copy[sizeof(out)];
	memcpy(copy, out, sizeof(out));
	for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n"))
		printf("# %s\n", line);
	ck_assert_msg(rc == 0, "the browser test failed:\n%s", out);
out:
	tclient_close(&op);
	tclient_close(&buyer);
	tclient_close(&seller);
	ck_assert_int_eq(tserver_stop(&srv), 0);
	pgtest_teardown();
}
END_TEST

static Suite *console_suite(void)
{
	Suite *s = suite_create("console");
	TCase *tc = tcase_create("console");
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, pages_show_what_the_api_says);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	int skip = pgtest_skip_without_database();
	if (skip)
		return skip;
	return tap_run(console_suite());
}
