/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A seller: offers its registered GPUs (the operator set the capacity of its
 * account for the class) for each of the next 6 delivery hours at 2.40, as
 * good-till-cancelled orders, then reports fills as they come until Ctrl-C.
 *   GRIDEX_ACCOUNT=2 GRIDEX_KEY=seller.pem GRIDEX_CA=cert.pem ./example-seller 8
 */
#include "common.h"

int main(int argc, char **argv)
{
	int64_t gpus = argc > 1 ? atoll(argv[1]) : 8;
	gridex_client *c = example_connect();
	uint64_t id = (uint64_t)time(NULL) * 100;
	for (int h = 1; h <= 6; h++) {
		char product[64];
		example_product(product, sizeof(product), "H100-80G", h);
		struct gridex_order offer = {.client_order_id = id++,
					     .product = product,
					     .side = GRIDEX_SELL,
					     .price = 2400000,
					     .quantity = gpus};
		uint64_t nonce;
		if (gridex_new_order(c, &offer, &nonce) != GRIDEX_OK)
			return 1;
		int reason = example_answer(c, nonce);
		printf("%s: %s\n", product, reason ? gridex_reject_name(reason) : "offered");
	}
	/* Every fill of our offers arrives as an execution report. */
	for (;;) {
		struct gridex_event ev;
		int rc = gridex_next_event(c, -1, &ev);
		if (rc != GRIDEX_OK)
			break;
		if (ev.kind == GRIDEX_EV_REPORT && ev.report.fill_id)
			printf("sold %lld GPUs of %s at %lld micro/GPU-hour (fee %lld)\n",
			       (long long)ev.report.last_quantity, ev.report.product,
			       (long long)ev.report.last_price, (long long)ev.report.fee);
		gridex_event_free(&ev);
	}
	gridex_client_free(c);
	return 0;
}
