/* SPDX-License-Identifier: Apache-2.0 */
/* Resident size for the benchmarks: VmRSS of a /proc/<pid>/status file, in MiB (0 when
 * unreadable). */
#ifndef GRIDEX_BENCH_RSS_H
#define GRIDEX_BENCH_RSS_H

#include <stdio.h>

static inline double rss_mib(const char *status_path)
{
	FILE *f = fopen(status_path, "r");
	char line[256];
	double kb = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %lf", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb / 1024;
}

#endif
