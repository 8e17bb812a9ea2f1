/* SPDX-License-Identifier: Apache-2.0 */
#include "srv_tindex.h"

#include <stdlib.h>
#include <string.h>

bool srv_tindex_init(struct srv_tindex *ix, uint64_t max,
		     const char *(*text)(const void *ctx, uint32_t v), const void *ctx)
{
	uint64_t cap = 16;
	while (cap < 2 * max)
		cap <<= 1;
	ix->slot = calloc(cap, sizeof(*ix->slot));
	ix->mask = (uint32_t)(cap - 1);
	ix->text = text;
	ix->ctx = ctx;
	randombytes_buf(ix->key, sizeof(ix->key));
	return ix->slot != NULL;
}

void srv_tindex_free(struct srv_tindex *ix)
{
	free(ix->slot);
	ix->slot = NULL;
}

static uint32_t home(const struct srv_tindex *ix, const char *s)
{
	uint64_t h;
	crypto_shorthash((unsigned char *)&h, (const unsigned char *)s, strlen(s), ix->key);
	return (uint32_t)h & ix->mask;
}

/* The slot of s: its entry, or the empty slot where it would go. */
static uint32_t pos(const struct srv_tindex *ix, const char *s)
{
	uint32_t i = home(ix, s);
	while (ix->slot[i] != 0 && strcmp(ix->text(ix->ctx, ix->slot[i] - 1), s) != 0)
		i = (i + 1) & ix->mask;
	return i;
}

uint32_t srv_tindex_get(const struct srv_tindex *ix, const char *s)
{
	uint32_t i = pos(ix, s);
	return ix->slot[i] ? ix->slot[i] - 1 : UINT32_MAX;
}

void srv_tindex_put(struct srv_tindex *ix, uint32_t v)
{
	ix->slot[pos(ix, ix->text(ix->ctx, v))] = v + 1;
}

/* The entries after the removed one in its run move back where their home lets them. */
void srv_tindex_del(struct srv_tindex *ix, const char *s)
{
	uint32_t i = pos(ix, s);
	if (ix->slot[i] == 0)
		return;
	for (uint32_t j = i;;) {
		j = (j + 1) & ix->mask;
		if (ix->slot[j] == 0)
			break;
		uint32_t k = home(ix, ix->text(ix->ctx, ix->slot[j] - 1));
		bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
		if (!stays) {
			ix->slot[i] = ix->slot[j];
			i = j;
		}
	}
	ix->slot[i] = 0;
}
