/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A market maker: keeps a bid and an ask around the mid of one product, one
 * tick either side of it, and requotes whenever the book moves. It reads the
 * book from market data (a local gridex_book, snapshot plus updates) on the
 * same connection as its orders, in one poll loop.
 *   GRIDEX_ACCOUNT=3 GRIDEX_KEY=mm.pem GRIDEX_CA=cert.pem ./example-market-maker
 */
#include <poll.h>

#include "common.h"

#define SPREAD 50000 /* 0.05 either side of the mid */

int main(void)
{
	gridex_client *c = example_connect();
	char product[64];
	example_product(product, sizeof(product), "H100-80G", 3);
	gridex_book *book;
	if (gridex_book_new(product, &book) != GRIDEX_OK ||
	    gridex_subscribe(c, product, false) != GRIDEX_OK)
		return 1;
	uint64_t bid_id = 0, ask_id = 0, next_id = (uint64_t)time(NULL) * 100;
	int64_t quoted_mid = 0;
	for (;;) {
		struct pollfd p = {.fd = gridex_fd(c), .events = POLLIN};
		poll(&p, 1, 1000);
		struct gridex_event ev;
		int rc;
		while ((rc = gridex_next_event(c, 0, &ev)) == GRIDEX_OK) {
			if (gridex_book_apply(book, &ev) == GRIDEX_ERR_GAP)
				rc = gridex_subscribe(c, product, false); /* fresh snapshot */
			gridex_event_free(&ev);
		}
		if (rc != GRIDEX_AGAIN && rc != GRIDEX_OK)
			break;
		struct gridex_level bid, ask;
		if (!gridex_book_ready(book) ||
		    gridex_book_levels(book, GRIDEX_BUY, &bid, 1) == 0 ||
		    gridex_book_levels(book, GRIDEX_SELL, &ask, 1) == 0)
			continue;
		int64_t mid = bid.price + (ask.price - bid.price) / 2;
		if (mid == quoted_mid || mid <= SPREAD)
			continue;
		/* Requote: cancel the old pair, place a new one. Answers arrive as events. */
		if (bid_id && gridex_cancel(c, bid_id, NULL) != GRIDEX_OK)
			break;
		if (ask_id && gridex_cancel(c, ask_id, NULL) != GRIDEX_OK)
			break;
		struct gridex_order q = {
			.product = product, .quantity = 2, .tif = GRIDEX_POST_ONLY};
		q.client_order_id = bid_id = next_id++;
		q.side = GRIDEX_BUY;
		q.price = mid - SPREAD;
		if (gridex_new_order(c, &q, NULL) != GRIDEX_OK)
			break;
		q.client_order_id = ask_id = next_id++;
		q.side = GRIDEX_SELL;
		q.price = mid + SPREAD;
		if (gridex_new_order(c, &q, NULL) != GRIDEX_OK)
			break;
		quoted_mid = mid;
		printf("quoting %lld / %lld\n", (long long)(mid - SPREAD),
		       (long long)(mid + SPREAD));
	}
	fprintf(stderr, "stopped: %s\n", gridex_client_error(c));
	gridex_book_free(book);
	gridex_client_free(c);
	return 1;
}
