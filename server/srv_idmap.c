/* SPDX-License-Identifier: Apache-2.0 */
#include "srv_idmap.h"

#include <stdlib.h>

static size_t home_of(uint64_t id, size_t mask)
{
	id ^= id >> 33;
	id *= 0xff51afd7ed558ccdULL;
	id ^= id >> 33;
	return (size_t)id & mask;
}

/* The place of id, or of the empty slot that ends its run. */
static size_t place_of(const struct srv_idmap_entry *e, size_t mask, uint64_t id)
{
	size_t i = home_of(id, mask);
	while (e[i].id != 0 && e[i].id != id)
		i = (i + 1) & mask;
	return i;
}

uint32_t srv_idmap_get(const struct srv_idmap *m, uint64_t id)
{
	if (m->cap == 0 || id == 0)
		return UINT32_MAX;
	const struct srv_idmap_entry *x = &m->e[place_of(m->e, m->cap - 1, id)];
	return x->id == id ? x->val : UINT32_MAX;
}

bool srv_idmap_put(struct srv_idmap *m, uint64_t id, uint32_t val)
{
	if (id == 0)
		return false;
	if ((m->n + 1) * 2 > m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 64;
		struct srv_idmap_entry *e = calloc(cap, sizeof(*e));
		if (e == NULL)
			return false;
		for (size_t i = 0; i < m->cap; i++)
			if (m->e[i].id != 0)
				e[place_of(e, cap - 1, m->e[i].id)] = m->e[i];
		free(m->e);
		m->e = e;
		m->cap = cap;
	}
	struct srv_idmap_entry *x = &m->e[place_of(m->e, m->cap - 1, id)];
	m->n += x->id != id;
	*x = (struct srv_idmap_entry){.id = id, .val = val};
	return true;
}

bool srv_idmap_del(struct srv_idmap *m, uint64_t id)
{
	if (m->cap == 0 || id == 0)
		return false;
	size_t mask = m->cap - 1, i = place_of(m->e, mask, id);
	if (m->e[i].id != id)
		return false;
	/* Each later entry of the run moves into the hole when the hole lies between its
	 * home and its place (cyclically): it is still found from its home. */
	for (size_t j = (i + 1) & mask; m->e[j].id != 0; j = (j + 1) & mask)
		if (((j - home_of(m->e[j].id, mask)) & mask) >= ((j - i) & mask)) {
			m->e[i] = m->e[j];
			i = j;
		}
	m->e[i].id = 0;
	m->n--;
	return true;
}

void srv_idmap_free(struct srv_idmap *m)
{
	free(m->e);
	*m = (struct srv_idmap){0};
}
