/* SPDX-License-Identifier: Apache-2.0 */
/* gridex-replay's line parser on arbitrary lines: OK or an error message,
 * never a crash; accepted commands carry sane fields. */
#include <stdlib.h>
#include <string.h>

#include "replay_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t at = 0;
	while (at < size) {
		const uint8_t *nl = memchr(data + at, '\n', size - at);
		size_t len = nl ? (size_t)(nl - (data + at)) : size - at;
		struct replay_cmd cmd;
		const char *err = NULL;
		int rc = replay_parse_line((const char *)data + at, len, &cmd, &err);
		if (rc != 0 && (err == NULL || err[0] == '\0'))
			abort(); /* every refusal says why */
		at += len + 1;
	}
	return 0;
}
