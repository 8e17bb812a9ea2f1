/* SPDX-License-Identifier: Apache-2.0 */
#include "srv_map.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t key_hash(const char *key)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (size_t i = 0; i < SRV_MAP_KEY_BYTES && key[i]; i++)
		h = (h ^ (uint8_t)key[i]) * 16777619u;
	return h;
}

bool srv_map_init(struct srv_map *m, uint32_t max)
{
	uint32_t cap = 16;
	while (cap < 2 * max)
		cap <<= 1;
	m->e = calloc(cap, sizeof(*m->e));
	m->mask = cap - 1;
	m->max = max;
	m->count = 0;
	return m->e != NULL;
}

static uint32_t map_pos(const struct srv_map *m, const char *key)
{
	uint32_t h = key_hash(key) & m->mask;
	while (m->e[h].used && strncmp(m->e[h].key, key, SRV_MAP_KEY_BYTES) != 0)
		h = (h + 1) & m->mask;
	return h;
}

uint32_t *srv_map_get(struct srv_map *m, const char *key)
{
	uint32_t h = map_pos(m, key);
	return m->e[h].used ? &m->e[h].val : NULL;
}

uint32_t *srv_map_put(struct srv_map *m, const char *key, uint32_t val)
{
	uint32_t h = map_pos(m, key);
	if (!m->e[h].used) {
		if (m->count == m->max)
			return NULL;
		m->e[h].used = true;
		snprintf(m->e[h].key, SRV_MAP_KEY_BYTES, "%s", key);
		m->count++;
	}
	m->e[h].val = val;
	return &m->e[h].val;
}

/* Deletes without tombstones: the entries after it in its run move back where their
 * hash lets them. */
void srv_map_del(struct srv_map *m, const char *key)
{
	uint32_t i = map_pos(m, key);
	if (!m->e[i].used)
		return;
	for (uint32_t j = i;;) {
		j = (j + 1) & m->mask;
		if (!m->e[j].used)
			break;
		uint32_t k = key_hash(m->e[j].key) & m->mask;
		bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
		if (!stays) {
			m->e[i] = m->e[j];
			i = j;
		}
	}
	m->e[i].used = false;
	m->count--;
}
