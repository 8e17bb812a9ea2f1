/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the examples: a handle from the same settings the gridex CLI reads
 * from the environment (GRIDEX_SERVER host:port, GRIDEX_CA, GRIDEX_ACCOUNT,
 * GRIDEX_KEY), and waiting for the answer to one request. */
#ifndef GRIDEX_EXAMPLES_COMMON_H
#define GRIDEX_EXAMPLES_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gridex/gridex.h"

static inline gridex_client *example_connect(void)
{
	static char host[256] = "localhost";
	struct gridex_options o;
	gridex_options_default(&o);
	const char *server = getenv("GRIDEX_SERVER");
	if (server) {
		snprintf(host, sizeof(host), "%s", server);
		char *colon = strrchr(host, ':');
		if (colon) {
			*colon = '\0';
			o.port = (uint16_t)atoi(colon + 1);
		}
	}
	o.host = host;
	o.ca_file = getenv("GRIDEX_CA");
	o.account = (uint32_t)strtoul(getenv("GRIDEX_ACCOUNT") ? getenv("GRIDEX_ACCOUNT") : "0",
				      NULL, 10);
	o.key_file = o.account ? getenv("GRIDEX_KEY") : NULL;
	gridex_client *c = NULL;
	if (gridex_client_new(&o, &c) != GRIDEX_OK || gridex_connect(c) != GRIDEX_OK) {
		fprintf(stderr, "cannot connect: %s\n", gridex_client_error(c));
		exit(1);
	}
	return c;
}

/* Prints reports while waiting; returns 0 for an ACK, else the reject reason. */
static inline int example_answer(gridex_client *c, uint64_t nonce)
{
	for (;;) {
		struct gridex_event ev;
		if (gridex_next_event(c, 10000, &ev) != GRIDEX_OK) {
			fprintf(stderr, "no answer: %s\n", gridex_client_error(c));
			exit(1);
		}
		int kind = ev.kind, reason = ev.reason;
		if (kind == GRIDEX_EV_REPORT)
			printf("%s order %llu: filled %lld, open %lld\n",
			       gridex_exec_name(ev.report.exec_type),
			       (unsigned long long)ev.report.client_order_id,
			       (long long)ev.report.cumulative_quantity,
			       (long long)ev.report.leaves_quantity);
		bool mine =
			ev.nonce == nonce && (kind == GRIDEX_EV_ACK || kind == GRIDEX_EV_REJECT);
		gridex_event_free(&ev);
		if (mine)
			return kind == GRIDEX_EV_ACK ? 0 : reason;
	}
}

/* The product of an accelerator class for the hour starting hours_ahead from now (UTC). */
static inline void example_product(char *out, size_t len, const char *cls, int hours_ahead)
{
	time_t t = time(NULL) + (time_t)hours_ahead * 3600;
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(out, len, "%s/%04d-%02d-%02dT%02d", cls, tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour);
}

#endif
