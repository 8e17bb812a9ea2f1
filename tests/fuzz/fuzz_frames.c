/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the I/O thread does with bytes from a connection: frames cut with
 * wire_frame_decode() under several maxima, each split as a ClientFrame, its
 * request decoded by srv_request_decode() (size caps, unknown fields, field
 * rules, tokens) and its Subscribe/Unsubscribe unpacked. Nothing may crash,
 * leak or read out of bounds; decoded requests must hold their invariants.
 */
#include <stdlib.h>
#include <string.h>

#include "gridex.pb-c.h"
#include "srv_auth.h"
#include "srv_frames.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one_frame(const uint8_t *body, size_t len)
{
	int field;
	const uint8_t *inner;
	size_t inner_len;
	if (srv_client_frame_split(body, len, &field, &inner, &inner_len) != 0)
		return;
	if (inner < body || inner + inner_len != body + len)
		abort(); /* the split must point inside and end at the frame's end */
	if (field == SRV_CF_REQUEST) {
		static struct srv_request r;
		if (srv_request_decode(inner, inner_len, 1024, &r) == SRV_AUTH_OK &&
		    (r.account == 0 || r.nonce == 0 || r.signed_len <= SRV_SIGN_DOMAIN_BYTES ||
		     r.signed_len > SRV_SIGN_DOMAIN_BYTES + 1024 ||
		     memcmp(r.signed_bytes, SRV_SIGN_DOMAIN, SRV_SIGN_DOMAIN_BYTES) != 0 ||
		     strlen(r.product) > SRV_PRODUCT_BYTES_MAX ||
		     strlen(r.name) > SRV_ACCOUNT_NAME_BYTES_MAX))
			abort();
	} else if (field == SRV_CF_SUBSCRIBE) {
		Gridex__V1__Subscribe *s = gridex__v1__subscribe__unpack(NULL, inner_len, inner);
		if (s)
			gridex__v1__subscribe__free_unpacked(s, NULL);
	} else {
		Gridex__V1__Unsubscribe *u =
			gridex__v1__unsubscribe__unpack(NULL, inner_len, inner);
		if (u)
			gridex__v1__unsubscribe__free_unpacked(u, NULL);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t maxima[] = {1, 64, 4096, WIRE_FRAME_BYTES_CEILING};
	for (size_t m = 0; m < sizeof(maxima) / sizeof(maxima[0]); m++) {
		size_t at = 0;
		while (at < size) {
			const uint8_t *body;
			size_t body_len, frame_len;
			int rc = wire_frame_decode(data + at, size - at, maxima[m], &body,
						   &body_len, &frame_len);
			if (rc != WIRE_OK)
				break;
			if (frame_len != WIRE_HEADER_BYTES + body_len || body_len > maxima[m] ||
			    body_len == 0 || frame_len > size - at)
				abort();
			if (m == 2)
				one_frame(body, body_len);
			at += frame_len;
		}
	}
	return 0;
}
