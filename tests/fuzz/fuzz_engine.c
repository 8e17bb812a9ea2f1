/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The engine against the reference model, driven by the fuzzer's bytes: every
 * choice of tests/matching/differential.h (command kind, ids, accounts,
 * prices, quantities, time in force, self-trade mode, baskets, clock moves)
 * comes from the input. Every event is compared with the model and
 * matching_check_invariants() runs after every command.
 */
#include "fuzz_check.h"

#define DIFF_FUZZ 1
#include "differential.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	fz_data = data;
	fz_len = size;
	fz_pos = 0;
	run_seed((uint64_t)data[0] << 8 | data[1], 5000);
	return 0;
}
