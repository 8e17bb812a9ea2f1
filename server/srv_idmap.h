/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A map of nonzero 64-bit ids (lease ids, say: gridexd's own numbers, not
 * chosen by participants) to uint32 values: open addressing with linear
 * probing, at most half full, doubled as it fills, deletion by backward
 * shift (no tombstones). Only lookups depend on where an entry sits.
 */
#ifndef GRIDEX_SRV_IDMAP_H
#define GRIDEX_SRV_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct srv_idmap_entry {
	uint64_t id; /* 0: empty */
	uint32_t val;
};

struct srv_idmap {
	struct srv_idmap_entry *e;
	size_t cap, n; /* cap: 0 or a power of two */
};

/* id's value, or UINT32_MAX when it is not there. */
uint32_t srv_idmap_get(const struct srv_idmap *m, uint64_t id);
/* Puts id with val, in place of its value when it is there; false when out of memory or
 * id is 0 (m unchanged). */
bool srv_idmap_put(struct srv_idmap *m, uint64_t id, uint32_t val);
/* Removes id; whether it was there. */
bool srv_idmap_del(struct srv_idmap *m, uint64_t id);
void srv_idmap_free(struct srv_idmap *m);

#endif
