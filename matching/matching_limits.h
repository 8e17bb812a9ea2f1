/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compile-time limits of the matching engine, each with its reason.
 * Run-time capacities (orders, levels, books) live in struct matching_config.
 */
#ifndef GRIDEX_MATCHING_LIMITS_H
#define GRIDEX_MATCHING_LIMITS_H

#include <stdint.h>

/*
 * Price levels per book side held in the tick-indexed window around the best
 * price. Levels outside the window live in an ordered tree. 4096 = 64 * 64 so
 * that a two-level bitmap (one summary word over 64 words) finds the next
 * occupied tick in two count-trailing-zeros steps.
 */
#define MATCHING_WINDOW_TICKS 4096
#define MATCHING_WINDOW_WORDS (MATCHING_WINDOW_TICKS / 64)

/* Longest product name, e.g. "H100-80G/2026-11-22T19" (63 bytes plus NUL). */
#define MATCHING_PRODUCT_NAME_MAX 63

/* Longest accelerator class, e.g. "H100-80G" (31 bytes plus NUL). */
#define MATCHING_CLASS_NAME_MAX 31

/* Legs of one FOK basket: two days of hourly periods. */
#define MATCHING_BASKET_LEGS_MAX 48

/* Hard ceilings of the run-time capacities: order and level indices are u32. */
#define MATCHING_ORDERS_CEILING (1u << 30)
#define MATCHING_LEVELS_CEILING (1u << 30)
#define MATCHING_BOOKS_CEILING	(1u << 20)

/*
 * Highest configurable price_max: 2^62 keeps every tick difference the window
 * computes (tick - base, with |base| <= 2^62 + WINDOW) inside int64.
 */
#define MATCHING_PRICE_CEILING (INT64_C(1) << 62)

/*
 * Events a single command can produce beyond one per resting order: the
 * incoming order's terminal event, or one per basket leg, plus a margin.
 */
#define MATCHING_EVENTS_EXTRA (2 * MATCHING_BASKET_LEGS_MAX + 8)

_Static_assert(MATCHING_WINDOW_TICKS == 64 * 64, "two-level bitmap needs 4096 ticks");
_Static_assert(MATCHING_BASKET_LEGS_MAX >= 24, "a basket must cover at least a day of hours");

#endif
