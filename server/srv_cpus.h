/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which CPUs gridexd's verifier threads are pinned to (the verifier_cpus
 * setting): "auto", "off", or a list such as "2,3" or "4-7".
 */
#ifndef GRIDEX_SRV_CPUS_H
#define GRIDEX_SRV_CPUS_H

#include <stdbool.h>
#include <stddef.h>

#define SRV_CPUS_MAX 1024 /* CPU numbers are below this (glibc's CPU_SETSIZE) */

struct srv_cpus {
	int n;		       /* 0: not pinned */
	int cpu[SRV_CPUS_MAX]; /* verifier k runs on cpu[k % n] */
};

/*
 * Plans verifier_cpus = text for `verifiers` threads, in a process that may run
 * on the n_allowed CPUs of allowed (ascending; NULL: any CPU, for checking the
 * form alone). "auto": the last `verifiers` CPUs of allowed, one each (CPU 0,
 * where devices' interrupts usually land, last of all), or none when allowed
 * has fewer than that; "off": none; a list: its CPUs in order, each of them
 * allowed. False with the reason in err when text is none of these.
 */
bool srv_cpus_plan(const char *text, int verifiers, const int *allowed, int n_allowed,
		   struct srv_cpus *out, char *err, size_t err_len);

/* The CPU of each of the `verifiers` threads as text for the log ("6,7"), or "none". */
void srv_cpus_text(const struct srv_cpus *p, int verifiers, char *buf, size_t len);

#endif
