/* SPDX-License-Identifier: Apache-2.0 */
/* Runs a Check suite with TAP on stdout, which `meson test` reads. */
#ifndef GRIDEX_TESTS_TAP_H
#define GRIDEX_TESTS_TAP_H

#include <stdlib.h>

#include <check.h>

static inline int tap_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_set_tap(sr, "-");
	srunner_run_all(sr, CK_SILENT);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
