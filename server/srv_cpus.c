/* SPDX-License-Identifier: Apache-2.0 */
#include "srv_cpus.h"

#include <stdio.h>
#include <string.h>

/* A CPU number at *p (decimal digits, below SRV_CPUS_MAX); advances *p. -1: none. */
static int cpu_number(const char **p)
{
	const char *s = *p;
	int v = 0;
	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (*s - '0');
		if (v >= SRV_CPUS_MAX)
			return -1;
	}
	*p = s;
	return v;
}

static bool is_allowed(int cpu, const int *allowed, int n_allowed)
{
	if (allowed == NULL)
		return true;
	for (int i = 0; i < n_allowed; i++) {
		if (allowed[i] == cpu)
			return true;
	}
	return false;
}

static bool fail(struct srv_cpus *out, char *err, size_t err_len, const char *text)
{
	out->n = 0;
	snprintf(err, err_len,
		 "verifier_cpus \"%s\" is not auto, off or a list of CPUs such as 2,3 or 4-7",
		 text);
	return false;
}

bool srv_cpus_plan(const char *text, int verifiers, const int *allowed, int n_allowed,
		   struct srv_cpus *out, char *err, size_t err_len)
{
	out->n = 0;
	if (strcmp(text, "off") == 0)
		return true;
	if (strcmp(text, "auto") == 0) {
		if (allowed == NULL || verifiers < 1 || n_allowed < verifiers)
			return true; /* sharing CPUs: left to the scheduler */
		for (int i = 0; i < verifiers; i++)
			out->cpu[out->n++] = allowed[n_allowed - verifiers + i];
		return true;
	}
	const char *p = text;
	for (;;) {
		int lo = cpu_number(&p), hi = lo;
		if (lo < 0)
			return fail(out, err, err_len, text);
		if (*p == '-') {
			p++;
			if ((hi = cpu_number(&p)) < lo)
				return fail(out, err, err_len, text);
		}
		for (int c = lo; c <= hi; c++) {
			if (!is_allowed(c, allowed, n_allowed)) {
				out->n = 0;
				snprintf(err, err_len,
					 "verifier_cpus: CPU %d is not one gridexd may run on", c);
				return false;
			}
			if (out->n == SRV_CPUS_MAX)
				return fail(out, err, err_len, text);
			out->cpu[out->n++] = c;
		}
		if (*p == '\0')
			return true;
		if (*p++ != ',')
			return fail(out, err, err_len, text);
	}
}

void srv_cpus_text(const struct srv_cpus *p, int verifiers, char *buf, size_t len)
{
	if (p->n == 0) {
		snprintf(buf, len, "none");
		return;
	}
	size_t used = 0;
	buf[0] = '\0';
	for (int i = 0; i < verifiers && used < len; i++) {
		int w = snprintf(buf + used, len - used, "%s%d", i ? "," : "", p->cpu[i % p->n]);
		if (w < 0)
			return;
		used += (size_t)w;
	}
}
