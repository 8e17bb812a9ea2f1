/* SPDX-License-Identifier: Apache-2.0 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include "srv_region.h"

#include <stdint.h>
#include <sys/mman.h>

void *srv_region_alloc(size_t n, size_t size)
{
	if (n == 0 || size == 0 || n > SIZE_MAX / size)
		return NULL;
	void *p = mmap(NULL, n * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void srv_region_free(void *p, size_t n, size_t size)
{
	if (p != NULL)
		munmap(p, n * size);
}
