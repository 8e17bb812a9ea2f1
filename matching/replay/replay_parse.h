/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gridex-replay input grammar (docs/replay.md), one line at a time.
 * A pure parser: no allocation, no I/O; the caller owns every buffer.
 */
#ifndef GRIDEX_REPLAY_PARSE_H
#define GRIDEX_REPLAY_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "matching.h"

#define REPLAY_ACCOUNT_MAX 31
#define REPLAY_LINE_MAX	   1024

enum replay_kind {
	REPLAY_SKIP = 0,  /* empty line or comment */
	REPLAY_NEW = 'N', /* new order */
	REPLAY_CANCEL = 'C',
	REPLAY_MODIFY = 'M',
	REPLAY_TIME = 'T',
	REPLAY_BASKET = 'K',  /* FOK basket over consecutive hours */
	REPLAY_PRODUCT = 'P', /* product with an explicit gate and tick */
};

struct replay_cmd {
	uint8_t kind; /* enum replay_kind */
	uint8_t side, tif, stp;
	uint64_t order_id; /* N, C, M; the first leg's id for K */
	char account[REPLAY_ACCOUNT_MAX + 1];
	char product[MATCHING_PRODUCT_NAME_MAX + 1]; /* N, K (first leg), P */
	int64_t price, qty; /* clamped to int64: the engine rejects what is out of range */
	int64_t expire_ms;  /* N with GTD */
	int64_t time_ms;    /* T */
	uint32_t hours;	    /* K: number of legs */
	int64_t gate_ms;    /* P: MATCHING_NO_GATE for "never" */
	int64_t tick;	    /* P */
};

/*
 * Parses one line (without its newline; a trailing '\r' is accepted) into
 * out. Returns 0, or -1 with *err set to a static message; out is then
 * unspecified. Never reads past line + len.
 */
int replay_parse_line(const char *line, size_t len, struct replay_cmd *out, const char **err);

#endif
