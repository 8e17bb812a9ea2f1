/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The provisioning hook's result parser on arbitrary stdout, as a hook that
 * misbehaves would print it: every outcome is one of the contract's, a
 * failure has a valid code, and only OK and FAILED keep the JSON.
 */
#include <stdlib.h>
#include <string.h>

#include "srv_hook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (int exited_ok = 0; exited_ok < 2; exited_ok++) {
		struct srv_hook_result r = {0};
		int o = srv_hook_parse_result((const char *)data, size, exited_ok, &r);
		if (o != r.outcome ||
		    (o != SRV_HOOK_OK && o != SRV_HOOK_FAILED && o != SRV_HOOK_BAD_OUTPUT))
			abort();
		if ((o == SRV_HOOK_BAD_OUTPUT) != (r.json == NULL))
			abort();
		if (o == SRV_HOOK_FAILED && (exited_ok || strlen(r.code) == 0 ||
					     (srv_hook_code_is_final(r.code) && r.retryable)))
			abort();
		if (o == SRV_HOOK_OK && !exited_ok)
			abort();
		srv_hook_result_free(&r);
	}
	return 0;
}
