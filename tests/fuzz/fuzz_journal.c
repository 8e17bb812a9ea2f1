/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The journal reader on arbitrary files (after the magic, so that records are
 * reached): every record it accepts must be sane, a request record must decode
 * or be refused cleanly, and the valid and torn byte counts must add up.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "srv_auth.h"
#include "srv_journal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check(const struct srv_jrec *r, void *ctx)
{
	(void)ctx;
	if (r->kind == SRV_J_REQUEST) {
		if (r->body_len == 0 || r->body_len > SRV_BODY_BYTES_CEILING)
			abort();
		static struct srv_request req;
		(void)srv_request_from_body(r->body, r->body_len, r->signature, &req);
	} else if (r->kind == SRV_J_GENESIS) {
		for (uint32_t i = 0; i < r->n_participants; i++)
			if (strlen(r->participants[i].name) == 0 ||
			    strlen(r->participants[i].name) > SRV_ACCOUNT_NAME_BYTES_MAX)
				abort();
	} else if (r->kind == SRV_J_LEASE) {
		if (r->lease_id == 0 || r->lease_event < 1 || r->lease_event > 3 ||
		    strlen(r->lease_code) >= sizeof(r->lease_code))
			abort();
	} else if (r->kind != SRV_J_TICK) {
		abort();
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	if (path[0] == '\0')
		snprintf(path, sizeof(path), "/tmp/gridex-fuzz-journal-%d", (int)getpid());
	FILE *f = fopen(path, "wb");
	if (f == NULL)
		abort();
	fwrite(SRV_JOURNAL_MAGIC, 1, SRV_JOURNAL_MAGIC_BYTES, f);
	fwrite(data, 1, size, f);
	fclose(f);
	struct srv_journal_stats st;
	int rc = srv_journal_scan(path, check, NULL, &st);
	if (rc == SRV_JOURNAL_OK &&
	    st.valid_bytes + st.torn_bytes != SRV_JOURNAL_MAGIC_BYTES + (uint64_t)size)
		abort();
	unlink(path);
	return 0;
}
