/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The journal's group commit: records of a typical order size (a 60-byte
 * signed body) appended in groups of N, one write + fdatasync per group, as
 * the journal thread does under load. Prints records/s and the latency of one
 * group's write + fdatasync (what a request waits for at most, beyond its
 * share of the group). Usage: bench-journal [--dir=DIR] [--records=N]
 * (DIR: a directory on the disk the journal will live on; default /tmp).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "srv_journal.h"

int main(int argc, char **argv)
{
	const char *dir = "/tmp";
	long total = 200000;
	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--dir=", 6) == 0)
			dir = argv[i] + 6;
		else if (strncmp(argv[i], "--records=", 10) == 0)
			total = atol(argv[i] + 10);
		else {
			fprintf(stderr, "usage: bench-journal [--dir=DIR] [--records=N]\n");
			return 2;
		}
	}
	char path[512];
	snprintf(path, sizeof(path), "%s/bench-journal-%d", dir, (int)getpid());
	static struct srv_jrec r = {.kind = SRV_J_REQUEST, .body_len = 60};
	memset(r.body, 7, sizeof(r.body));
	printf("journal group commit in %s: %ld records of a 60-byte body each\n", dir, total);
	printf("%8s %14s %12s %12s %12s\n", "group", "records/s", "sync p50", "sync p99",
	       "sync max");
	static const int groups[] = {1, 10, 100, 1000};
	for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
		unlink(path);
		struct srv_journal *j;
		if (srv_journal_open(path, 0, &j) != SRV_JOURNAL_OK) {
			perror(path);
			return 1;
		}
		long n = groups[g] == 1 ? total / 20 : total; /* one sync per record is slow */
		long syncs = n / groups[g];
		int64_t *lat = malloc((size_t)syncs * sizeof(*lat));
		int64_t t0 = bench_now_us();
		for (long s = 0; s < syncs; s++) {
			for (int k = 0; k < groups[g]; k++) {
				r.seq = (uint64_t)(s * groups[g] + k + 1);
				if (srv_journal_append(j, &r) != SRV_JOURNAL_OK)
					return 1;
			}
			int64_t a = bench_now_us();
			if (srv_journal_sync(j) != SRV_JOURNAL_OK) {
				perror("fdatasync");
				return 1;
			}
			lat[s] = bench_now_us() - a;
		}
		double secs = (double)(bench_now_us() - t0) / 1e6;
		qsort(lat, (size_t)syncs, sizeof(*lat), bench_cmp_i64);
		printf("%8d %14.0f %9lld us %9lld us %9lld us\n", groups[g], (double)n / secs,
		       (long long)lat[syncs / 2], (long long)lat[syncs * 99 / 100],
		       (long long)lat[syncs - 1]);
		free(lat);
		srv_journal_close(j);
	}
	unlink(path);
	return 0;
}
