/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Large fixed regions: queue rings and per-call scratch arrays sized for the
 * configured maxima (hundreds of MiB in all). They are mapped anonymous memory:
 * zero, and backed by pages only where used, whatever malloc's settings (with
 * MALLOC_PERTURB_, as meson test sets it, malloc writes every byte of a block,
 * which made a restart take seconds).
 */
#ifndef GRIDEX_SRV_REGION_H
#define GRIDEX_SRV_REGION_H

#include <stddef.h>

/* n items of size bytes, zeroed; NULL when it overflows or cannot be mapped. */
void *srv_region_alloc(size_t n, size_t size);
/* Unmaps what srv_region_alloc(n, size) returned (NULL: nothing). */
void srv_region_free(void *p, size_t n, size_t size);

#endif
