/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The client side: a server is hostile input too. ServerFrame bodies as
 * libgridex decodes them into events (names made printable, arrays copied),
 * then applied to a local book, whose sequence and levels must stay sane.
 */
#include <stdlib.h>
#include <string.h>

#include "gridex/gridex.h"
#include "gridex_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	gridex_book *book;
	if (gridex_book_new("H100-80G/2026-11-22T19", &book) != GRIDEX_OK)
		abort();
	for (size_t at = 0; at + 2 <= size;) {
		size_t len = (size_t)data[at] << 8 | data[at + 1];
		at += 2;
		if (len > size - at)
			len = size - at;
		struct gridex_event ev;
		if (gridex_event_decode(data + at, len, &ev) == GRIDEX_OK) {
			for (size_t i = 0; ev.product[i]; i++)
				if (ev.product[i] < 0x20 || ev.product[i] > 0x7e)
					abort();
			int rc = gridex_book_apply(book, &ev);
			if (rc != GRIDEX_OK && rc != GRIDEX_ERR_GAP && rc != GRIDEX_ERR_PROTOCOL)
				abort();
			struct gridex_level l[8];
			size_t n = gridex_book_levels(book, GRIDEX_BUY, l, 8);
			for (size_t i = 1; i < n; i++)
				if (l[i].price >= l[i - 1].price)
					abort(); /* bids best first, distinct */
			gridex_event_free(&ev);
		}
		at += len;
	}
	gridex_book_free(book);
	return 0;
}
