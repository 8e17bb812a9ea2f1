/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A buyer: "8 H100s for 4 consecutive hours, starting 2 hours from now, at
 * 2.60 or less per GPU-hour, all or nothing". One FOK basket does it: every
 * hour fills completely or nothing trades.
 *   GRIDEX_ACCOUNT=1 GRIDEX_KEY=buyer.pem GRIDEX_CA=cert.pem ./example-buyer
 */
#include "common.h"

int main(void)
{
	gridex_client *c = example_connect();
	char first_hour[64];
	example_product(first_hour, sizeof(first_hour), "H100-80G", 2);
	struct gridex_order basket = {
		.client_order_id = (uint64_t)time(NULL) * 100, /* legs take this id, +1, +2, +3 */
		.product = first_hour,
		.side = GRIDEX_BUY,
		.price = 2600000, /* micro-currency per GPU-hour: 2.60 */
		.quantity = 8,
		.hours = 4,
	};
	uint64_t nonce;
	if (gridex_new_order(c, &basket, &nonce) != GRIDEX_OK) {
		fprintf(stderr, "%s\n", gridex_client_error(c));
		return 1;
	}
	int reason = example_answer(c, nonce);
	if (reason) {
		printf("refused: %s\n", gridex_reject_name(reason));
		return 1;
	}
	/* The fills (or the cancellation of every leg) follow the acknowledgement. */
	struct gridex_event ev;
	while (gridex_next_event(c, 1000, &ev) == GRIDEX_OK) {
		if (ev.kind == GRIDEX_EV_REPORT)
			printf("%s %s: %lld GPUs\n", gridex_exec_name(ev.report.exec_type),
			       ev.report.product, (long long)ev.report.cumulative_quantity);
		gridex_event_free(&ev);
	}
	gridex_client_free(c);
	return 0;
}
