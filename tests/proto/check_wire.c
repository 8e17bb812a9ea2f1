/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests of the frame codec (length checks before buffering, partial input,
 * boundaries) and of the generated protobuf-c code for the signed envelope.
 */
#include <string.h>

#include <check.h>

#include "gridex.pb-c.h"
#include "tap.h"
#include "wire.h"

START_TEST(decodes_complete_frames_only)
{
	uint8_t buf[16] = {0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 1, 'z'};
	const uint8_t *body = NULL;
	size_t body_bytes = 99, frame_bytes = 99;
	for (size_t len = 0; len < 7; len++)
		ck_assert_int_eq(wire_frame_decode(buf, len, 64, &body, &body_bytes, &frame_bytes),
				 WIRE_PARTIAL);
	ck_assert_ptr_null(body);
	ck_assert_uint_eq(body_bytes, 99);
	ck_assert_int_eq(wire_frame_decode(buf, 12, 64, &body, &body_bytes, &frame_bytes), WIRE_OK);
	ck_assert_ptr_eq(body, buf + 4);
	ck_assert_uint_eq(body_bytes, 3);
	ck_assert_uint_eq(frame_bytes, 7);
	ck_assert_int_eq(wire_frame_decode(buf + 7, 5, 64, &body, &body_bytes, &frame_bytes),
			 WIRE_OK);
	ck_assert_uint_eq(body_bytes, 1);
	ck_assert_int_eq(*body, 'z');
}
END_TEST

START_TEST(refuses_bad_lengths_from_the_header_alone)
{
	const uint8_t *body;
	size_t body_bytes, frame_bytes;
	uint8_t zero[4] = {0, 0, 0, 0};
	uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
	uint8_t over[4] = {0, 0, 1, 1}; /* 257 */
	uint8_t at[4] = {0, 0, 1, 0};	/* 256 */
	ck_assert_int_eq(wire_frame_decode(zero, 4, 256, &body, &body_bytes, &frame_bytes),
			 WIRE_ERR_EMPTY);
	ck_assert_int_eq(wire_frame_decode(huge, 4, 256, &body, &body_bytes, &frame_bytes),
			 WIRE_ERR_TOO_BIG);
	ck_assert_int_eq(wire_frame_decode(over, 4, 256, &body, &body_bytes, &frame_bytes),
			 WIRE_ERR_TOO_BIG);
	ck_assert_int_eq(wire_frame_decode(at, 4, 256, &body, &body_bytes, &frame_bytes),
			 WIRE_PARTIAL);
	ck_assert_int_eq(wire_frame_decode(at, 4, 0, &body, &body_bytes, &frame_bytes),
			 WIRE_ERR_ARGS);
	ck_assert_int_eq(wire_frame_decode(NULL, 4, 256, &body, &body_bytes, &frame_bytes),
			 WIRE_ERR_ARGS);
	ck_assert_int_eq(wire_frame_decode(at, 4, WIRE_FRAME_BYTES_CEILING + 1, &body, &body_bytes,
					   &frame_bytes),
			 WIRE_ERR_ARGS);
}
END_TEST

START_TEST(header_round_trip)
{
	uint8_t h[4];
	const uint8_t *body;
	size_t body_bytes, frame_bytes;
	ck_assert_int_eq(wire_frame_header(0, h), WIRE_ERR_ARGS);
	ck_assert_int_eq(wire_frame_header(WIRE_FRAME_BYTES_CEILING + 1, h), WIRE_ERR_ARGS);
	ck_assert_int_eq(wire_frame_header(WIRE_FRAME_BYTES_CEILING, h), WIRE_OK);
	ck_assert_int_eq(
		wire_frame_decode(h, 4, WIRE_FRAME_BYTES_CEILING, &body, &body_bytes, &frame_bytes),
		WIRE_PARTIAL);
	ck_assert_int_eq(wire_frame_header(0x010203, h), WIRE_OK);
	ck_assert_int_eq(h[0], 0);
	ck_assert_int_eq(h[1], 1);
	ck_assert_int_eq(h[2], 2);
	ck_assert_int_eq(h[3], 3);
}
END_TEST

START_TEST(signed_envelope_round_trip)
{
	uint8_t body_in[5] = {1, 2, 3, 4, 5}, sig_in[64];
	memset(sig_in, 0xab, sizeof(sig_in));
	Gridex__V1__SignedRequest req = GRIDEX__V1__SIGNED_REQUEST__INIT;
	req.body.data = body_in;
	req.body.len = sizeof(body_in);
	req.signature.data = sig_in;
	req.signature.len = sizeof(sig_in);
	uint8_t buf[128];
	size_t n = gridex__v1__signed_request__pack(&req, buf);
	ck_assert_uint_eq(n, gridex__v1__signed_request__get_packed_size(&req));
	Gridex__V1__SignedRequest *out = gridex__v1__signed_request__unpack(NULL, n, buf);
	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(out->body.len, 5);
	ck_assert_int_eq(memcmp(out->body.data, body_in, 5), 0);
	ck_assert_uint_eq(out->signature.len, 64);
	ck_assert_uint_eq(out->base.n_unknown_fields, 0);
	gridex__v1__signed_request__free_unpacked(out, NULL);
	/* Truncated input is refused, not half-read. */
	ck_assert_ptr_null(gridex__v1__signed_request__unpack(NULL, n - 1, buf));
}
END_TEST

static Suite *wire_suite(void)
{
	Suite *s = suite_create("wire");
	TCase *tc = tcase_create("framing");
	tcase_add_test(tc, decodes_complete_frames_only);
	tcase_add_test(tc, refuses_bad_lengths_from_the_header_alone);
	tcase_add_test(tc, header_round_trip);
	suite_add_tcase(s, tc);
	tc = tcase_create("schema");
	tcase_add_test(tc, signed_envelope_round_trip);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tap_run(wire_suite());
}
