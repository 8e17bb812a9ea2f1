/* SPDX-License-Identifier: Apache-2.0 */
/* Small files in a test's directory: scripts, fixtures and what processes wrote. */
#ifndef GRIDEX_TESTS_TFILE_H
#define GRIDEX_TESTS_TFILE_H

#include <stdio.h>
#include <sys/stat.h>

#include <check.h>

/* Writes dir/name with text and mode (fails the test when it cannot). */
static inline void tfile_write(const char *dir, const char *name, const char *text, mode_t mode)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	ck_assert_int_eq(chmod(path, mode), 0);
}

/* dir/name's first 16 KiB, NUL-terminated, in a static buffer; NULL when missing. */
static inline char *tfile_read(const char *dir, const char *name)
{
	static char buf[16384];
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return NULL;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

#endif
