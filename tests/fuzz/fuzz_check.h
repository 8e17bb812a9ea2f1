/* SPDX-License-Identifier: Apache-2.0 */
/* Check's assertions for code shared with the Check suites, as aborts that
 * libFuzzer reports with the input that caused them. */
#ifndef GRIDEX_FUZZ_CHECK_H
#define GRIDEX_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define ck_assert_msg(cond, ...)                                                                   \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)
#define ck_assert(cond)		 ck_assert_msg(cond, "assertion failed: %s", #cond)
#define ck_assert_int_eq(a, b)	 ck_assert((a) == (b))
#define ck_assert_uint_eq(a, b)	 ck_assert((a) == (b))
#define ck_assert_ptr_nonnull(p) ck_assert((p) != NULL)
#define ck_assert_int_ne(a, b)	 ck_assert((a) != (b))
#define ck_assert_uint_lt(a, b)	 ck_assert((a) < (b))
#define ck_assert_uint_le(a, b)	 ck_assert((a) <= (b))

#endif
