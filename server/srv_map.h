/* SPDX-License-Identifier: Apache-2.0 */
/* A small map of gridexd's I/O thread: text keys to uint32 values, open addressing,
 * a capacity fixed at start. */
#ifndef GRIDEX_SRV_MAP_H
#define GRIDEX_SRV_MAP_H

#include <stdbool.h>
#include <stdint.h>

#define SRV_MAP_KEY_BYTES 64 /* a key's bytes with its NUL; longer keys are cut */

struct srv_map_entry {
	char key[SRV_MAP_KEY_BYTES];
	uint32_t val;
	bool used;
};

struct srv_map {
	struct srv_map_entry *e;
	uint32_t mask, count, max;
};

/* Room for max keys (the table is at least twice that); false when out of memory.
 * free(m->e) frees it. */
bool srv_map_init(struct srv_map *m, uint32_t max);
/* key's value, or NULL. */
uint32_t *srv_map_get(struct srv_map *m, const char *key);
/* Puts key with val; NULL when the map holds max keys already. */
uint32_t *srv_map_put(struct srv_map *m, const char *key, uint32_t val);
void srv_map_del(struct srv_map *m, const char *key);

#endif
