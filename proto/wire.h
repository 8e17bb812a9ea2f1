/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Frame codec: a 4-byte big-endian body length, then the body. Pure (no
 * allocation, no I/O), in the style of picohttpparser: the caller owns the
 * buffer and calls again with more bytes after WIRE_PARTIAL.
 */
#ifndef GRIDEX_WIRE_H
#define GRIDEX_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_HEADER_BYTES 4
/* Ceiling for any configured frame maximum: a 24-bit length. */
#define WIRE_FRAME_BYTES_CEILING (16u * 1024 * 1024)

enum wire_status {
	WIRE_OK = 0,
	WIRE_PARTIAL = 1,      /* need more bytes; nothing consumed */
	WIRE_ERR_EMPTY = -1,   /* length prefix of 0 */
	WIRE_ERR_TOO_BIG = -2, /* length prefix above the maximum */
	WIRE_ERR_ARGS = -3,    /* caller error: buffer too small, bad maximum */
};

/*
 * Decodes the frame at the start of buf[0..len). On WIRE_OK sets *body and
 * *body_bytes (pointing into buf) and *frame_bytes (header + body, what to
 * consume). The length is checked against body_bytes_max (1 ..
 * WIRE_FRAME_BYTES_CEILING) as soon as the header is complete, before any body
 * byte is needed, so an oversized frame is refused without buffering it.
 * Outputs are untouched unless WIRE_OK.
 */
__attribute__((warn_unused_result)) int wire_frame_decode(const uint8_t *buf, size_t len,
							  uint32_t body_bytes_max,
							  const uint8_t **body, size_t *body_bytes,
							  size_t *frame_bytes);

/*
 * Writes the 4-byte header for a body of body_bytes (1 ..
 * WIRE_FRAME_BYTES_CEILING) into out. Returns WIRE_OK or WIRE_ERR_ARGS.
 */
__attribute__((warn_unused_result)) int wire_frame_header(size_t body_bytes,
							  uint8_t out[WIRE_HEADER_BYTES]);

#endif
