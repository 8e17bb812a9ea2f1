/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the ledger's own files; not part of the interface. */
#ifndef GRIDEX_LEDGER_INTERNAL_H
#define GRIDEX_LEDGER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "ledger.h"

/*
 * Decodes a bytea in PostgreSQL's hex output format ("\\x" and 64 lowercase
 * hex digits) into a 32-byte hash. Returns false for anything else.
 */
bool ledger_hash_from_hex(const char *s, uint8_t out[LEDGER_HASH_BYTES]);

#endif
