/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An index of texts that live elsewhere (a table of products, of hosts, of
 * devices) to the uint32 values that name them there: open addressing with
 * linear probing over a capacity fixed at creation, SipHash under a random key
 * (the texts may be chosen by participants), deletion by backward shift. A
 * slot holds value + 1 (0: empty); text(ctx, value) gives a value's text, so
 * an entry must be deleted before its text changes. Only lookups depend on it:
 * where an entry sits decides nothing else.
 */
#ifndef GRIDEX_SRV_TINDEX_H
#define GRIDEX_SRV_TINDEX_H

#include <stdbool.h>
#include <stdint.h>

#include <sodium.h>

struct srv_tindex {
	uint32_t *slot;
	uint32_t mask;
	unsigned char key[crypto_shorthash_KEYBYTES];
	const char *(*text)(const void *ctx, uint32_t v);
	const void *ctx;
};

/* Room for max entries (the table is at least twice that); false when out of memory. */
bool srv_tindex_init(struct srv_tindex *ix, uint64_t max,
		     const char *(*text)(const void *ctx, uint32_t v), const void *ctx);
void srv_tindex_free(struct srv_tindex *ix);
/* The value entered under s, or UINT32_MAX. */
uint32_t srv_tindex_get(const struct srv_tindex *ix, const char *s);
/* Enters v under its text (replacing the value entered under the same text); the caller
 * keeps the entries within max. */
void srv_tindex_put(struct srv_tindex *ix, uint32_t v);
/* Removes the entry of s, if any. */
void srv_tindex_del(struct srv_tindex *ix, const char *s);

#endif
