/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the ledger's own files; not part of the interface. */
#ifndef GRIDEX_LEDGER_INTERNAL_H
#define GRIDEX_LEDGER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "ledger.h"

/*
 * Decodes a bytea in PostgreSQL's hex output format ("\\x" and 64 lowercase
 * hex digits) into a 32-byte hash. Returns false for anything else.
 */
bool ledger_hash_from_hex(const char *s, uint8_t out[LEDGER_HASH_BYTES]);

/*
 * Columns at, at + 1, ... of row `row` of res as a row of ledger.fills: id, product,
 * aggressor, price, quantity, buyer, seller, taker_order_id, maker_order_id, and
 * traded_at in ms (extract(epoch ...) * 1000). Fills *t with what it reads (the
 * product cut to LEDGER_PRODUCT_MAX bytes) and returns whether every value was read
 * whole: a false one would hash, or be kept, as something else (not an integer, a
 * participant beyond 32 bits, a product beyond LEDGER_PRODUCT_MAX bytes, an aggressor
 * but buy or sell, a fraction of a millisecond). The audit and ledger_recent_trades()
 * read fills with it.
 */
bool ledger_fill_of_row(const PGresult *res, int row, int at, struct ledger_trade *t);

#endif
