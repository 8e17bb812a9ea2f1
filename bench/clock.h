/* SPDX-License-Identifier: Apache-2.0 */
/* What the benchmarks time with: the monotonic clock in ns or us, and an order of int64_t
 * samples for qsort (quantiles). */
#ifndef GRIDEX_BENCH_CLOCK_H
#define GRIDEX_BENCH_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t bench_now_us(void)
{
	return bench_now_ns() / 1000;
}

static inline int bench_cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

#endif
