/* SPDX-License-Identifier: Apache-2.0 */
/* Small files in a test's directory: scripts, fixtures and what processes wrote. */
#ifndef GRIDEX_TESTS_TFILE_H
#define GRIDEX_TESTS_TFILE_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <check.h>

/* Makes a private directory for a test: <GRIDEX_TEST_TMPDIR>/<prefix>-XXXXXX, or under
 * /tmp when that is not set. scripts/test points GRIDEX_TEST_TMPDIR at a directory of
 * its own and removes it once every suite passed. */
static inline void tfile_mkdtemp(char *dir, size_t len, const char *prefix)
{
	const char *root = getenv("GRIDEX_TEST_TMPDIR");
	int n = snprintf(dir, len, "%s/%s-XXXXXX", root && *root ? root : "/tmp", prefix);
	ck_assert_msg(n > 0 && (size_t)n < len, "GRIDEX_TEST_TMPDIR is too long");
	ck_assert_msg(mkdtemp(dir) != NULL, "cannot make a directory in %s",
		      root && *root ? root : "/tmp");
}

/* Writes dir/name with text and mode (fails the test when it cannot). A process reading
 * it meanwhile sees the old file or the new one, whole: the text goes to a file beside it,
 * renamed over it. (Written in place, a hook that read its "mode" file between the
 * truncation and the write saw it empty.) */
static inline void tfile_write(const char *dir, const char *name, const char *text, mode_t mode)
{
	char path[256], tmp[300];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	FILE *f = fopen(tmp, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(chmod(tmp, mode), 0);
	ck_assert_int_eq(rename(tmp, path), 0);
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
