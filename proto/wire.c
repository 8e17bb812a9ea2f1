/* SPDX-License-Identifier: Apache-2.0 */
#include "wire.h"

#include <assert.h>

int wire_frame_decode(const uint8_t *buf, size_t len, uint32_t body_bytes_max, const uint8_t **body,
		      size_t *body_bytes, size_t *frame_bytes)
{
	if ((buf == NULL && len > 0) || body_bytes_max == 0 ||
	    body_bytes_max > WIRE_FRAME_BYTES_CEILING)
		return WIRE_ERR_ARGS;
	if (len < WIRE_HEADER_BYTES)
		return WIRE_PARTIAL;
	uint32_t n = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 |
		     (uint32_t)buf[3];
	if (n == 0)
		return WIRE_ERR_EMPTY;
	if (n > body_bytes_max)
		return WIRE_ERR_TOO_BIG;
	if (len - WIRE_HEADER_BYTES < n)
		return WIRE_PARTIAL;
	*body = buf + WIRE_HEADER_BYTES;
	*body_bytes = n;
	*frame_bytes = (size_t)n + WIRE_HEADER_BYTES;
	assert(*frame_bytes <= len);
	return WIRE_OK;
}

int wire_frame_header(size_t body_bytes, uint8_t out[WIRE_HEADER_BYTES])
{
	if (body_bytes == 0 || body_bytes > WIRE_FRAME_BYTES_CEILING)
		return WIRE_ERR_ARGS;
	uint32_t n = (uint32_t)body_bytes;
	out[0] = (uint8_t)(n >> 24);
	out[1] = (uint8_t)(n >> 16);
	out[2] = (uint8_t)(n >> 8);
	out[3] = (uint8_t)n;
	return WIRE_OK;
}
