/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests of request authentication: decoding (size caps, unknown fields,
 * tokens, fields per request type), Ed25519 over the exact bytes received
 * (bad signature, wrong key, re-encoded body), key registration (small-order
 * and invalid points refused) and the replay window and expiry.
 */
#include <string.h>

#include <check.h>
#include <sodium.h>

#include "gridex.pb-c.h"
#include "srv_auth.h"
#include "tap.h"

static uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
static uint8_t pk2[crypto_sign_PUBLICKEYBYTES], sk2[crypto_sign_SECRETKEYBYTES];

static void setup(void)
{
	ck_assert_int_ge(sodium_init(), 0);
	crypto_sign_keypair(pk, sk);
	crypto_sign_keypair(pk2, sk2);
}

static Gridex__V1__Request new_order(void)
{
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.account = 7;
	q.nonce = 1;
	q.expires_at_ms = 1000;
	q.type = GRIDEX__V1__REQUEST_TYPE__NEW_ORDER;
	q.client_order_id = 99;
	q.product.data = (uint8_t *)"H100-80G/2026-11-22T19";
	q.product.len = 22;
	q.side = GRIDEX__V1__SIDE__BUY;
	q.time_in_force = GRIDEX__V1__TIME_IN_FORCE__GTC;
	q.price = 2450000;
	q.quantity = 8;
	return q;
}

/* Serialises body bytes and an envelope signed by key over domain || body. */
static size_t envelope(const uint8_t *body, size_t body_len, const uint8_t *key, uint8_t *out)
{
	uint8_t msg[SRV_SIGN_DOMAIN_BYTES + 2048], sig[64];
	memcpy(msg, SRV_SIGN_DOMAIN, SRV_SIGN_DOMAIN_BYTES);
	memcpy(msg + SRV_SIGN_DOMAIN_BYTES, body, body_len);
	crypto_sign_detached(sig, NULL, msg, SRV_SIGN_DOMAIN_BYTES + body_len, key);
	Gridex__V1__SignedRequest sr = GRIDEX__V1__SIGNED_REQUEST__INIT;
	sr.body.data = (uint8_t *)body;
	sr.body.len = body_len;
	sr.signature.data = sig;
	sr.signature.len = 64;
	return gridex__v1__signed_request__pack(&sr, out);
}

static size_t signed_request(const Gridex__V1__Request *q, const uint8_t *key, uint8_t *out)
{
	uint8_t body[2048];
	size_t n = gridex__v1__request__pack(q, body);
	return envelope(body, n, key, out);
}

static struct srv_request r;

static int decode(const uint8_t *frame, size_t len)
{
	return srv_request_decode(frame, len, 256, &r);
}

START_TEST(valid_request_decodes_and_verifies)
{
	Gridex__V1__Request q = new_order();
	uint8_t frame[4096];
	size_t n = signed_request(&q, sk, frame);
	ck_assert_int_eq(decode(frame, n), SRV_AUTH_OK);
	ck_assert_uint_eq(r.account, 7);
	ck_assert_uint_eq(r.nonce, 1);
	ck_assert_str_eq(r.product, "H100-80G/2026-11-22T19");
	ck_assert_int_eq(r.price, 2450000);
	ck_assert_int_eq(r.quantity, 8);
	ck_assert_int_eq(srv_request_verify(&r, pk), SRV_AUTH_OK);
	ck_assert_int_eq(srv_request_verify(&r, pk2), SRV_AUTH_BAD_SIGNATURE);
}
END_TEST

START_TEST(tampering_breaks_the_signature)
{
	Gridex__V1__Request q = new_order();
	uint8_t body[512], frame[4096];
	size_t bn = gridex__v1__request__pack(&q, body);
	size_t n = envelope(body, bn, sk, frame);
	/* Flip each byte of the signed body in turn inside the frame. */
	size_t flipped_ok = 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t copy[4096];
		memcpy(copy, frame, n);
		copy[i] ^= 0x01;
		if (decode(copy, n) == SRV_AUTH_OK && srv_request_verify(&r, pk) == SRV_AUTH_OK)
			flipped_ok++;
	}
	ck_assert_uint_eq(flipped_ok, 0);
	/* A different but equivalent encoding (a redundant zero field) is not what was signed. */
	uint8_t reenc[600];
	memcpy(reenc, body, bn);
	reenc[bn] = 0x60; /* field 12 (expire_ms), varint */
	reenc[bn + 1] = 0x00;
	uint8_t forged[4096];
	Gridex__V1__SignedRequest sr = GRIDEX__V1__SIGNED_REQUEST__INIT;
	Gridex__V1__SignedRequest *orig = gridex__v1__signed_request__unpack(NULL, n, frame);
	ck_assert_ptr_nonnull(orig);
	sr.body.data = reenc;
	sr.body.len = bn + 2;
	sr.signature = orig->signature;
	size_t fn = gridex__v1__signed_request__pack(&sr, forged);
	gridex__v1__signed_request__free_unpacked(orig, NULL);
	ck_assert_int_eq(decode(forged, fn), SRV_AUTH_OK);
	ck_assert_int_eq(srv_request_verify(&r, pk), SRV_AUTH_BAD_SIGNATURE);
}
END_TEST

START_TEST(malformed_envelopes_are_refused)
{
	uint8_t frame[4096];
	ck_assert_int_eq(decode((const uint8_t *)"\xff\xff\xff", 3), SRV_AUTH_MALFORMED);
	ck_assert_int_eq(decode(frame, 0), SRV_AUTH_MALFORMED);
	/* Oversized: refused before unpacking. */
	ck_assert_int_eq(decode(frame, 256 + 79), SRV_AUTH_TOO_BIG);
	/* A body above the configured maximum. */
	uint8_t big[300];
	memset(big, 0, sizeof(big));
	size_t n = envelope(big, 257, sk, frame);
	ck_assert_int_eq(srv_request_decode(frame, n, 1024, &r), SRV_AUTH_MALFORMED);
	ck_assert_int_eq(decode(frame, n), SRV_AUTH_TOO_BIG);
	/* A short signature. */
	Gridex__V1__SignedRequest sr = GRIDEX__V1__SIGNED_REQUEST__INIT;
	uint8_t body[8] = {0x08, 0x07}, sig[63] = {0};
	sr.body.data = body;
	sr.body.len = 2;
	sr.signature.data = sig;
	sr.signature.len = 63;
	n = gridex__v1__signed_request__pack(&sr, frame);
	ck_assert_int_eq(decode(frame, n), SRV_AUTH_MALFORMED);
	/* An unknown field in the envelope. */
	Gridex__V1__Request q = new_order();
	n = signed_request(&q, sk, frame);
	frame[n] = 0x18; /* field 3, varint */
	frame[n + 1] = 0x01;
	ck_assert_int_eq(decode(frame, n + 2), SRV_AUTH_MALFORMED);
	ck_assert_int_eq(srv_request_decode(NULL, 3, 256, &r), SRV_AUTH_ARGS);
	ck_assert_int_eq(srv_request_decode(frame, n, 0, &r), SRV_AUTH_ARGS);
	ck_assert_int_eq(srv_request_decode(frame, n, SRV_BODY_BYTES_CEILING + 1, &r),
			 SRV_AUTH_ARGS);
}
END_TEST

/* Packs q with extra raw bytes appended to its body and decodes it. */
static int decode_with(const Gridex__V1__Request *q, const uint8_t *extra, size_t extra_len)
{
	uint8_t body[512], frame[4096];
	size_t bn = gridex__v1__request__pack(q, body);
	if (extra_len > 0)
		memcpy(body + bn, extra, extra_len);
	size_t n = envelope(body, bn + extra_len, sk, frame);
	return decode(frame, n);
}

START_TEST(bodies_are_checked_field_by_field)
{
	Gridex__V1__Request q = new_order();
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_OK);
	const uint8_t unknown[] = {0xf8, 0x01, 0x01}; /* field 31 */
	ck_assert_int_eq(decode_with(&q, unknown, sizeof(unknown)), SRV_AUTH_MALFORMED);
	q.account = 0;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q = new_order();
	q.nonce = 0;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	static const char *const bad_products[] = {"",
						   "H100 80G",
						   "H100\xc3\xa9",
						   "A,B",
						   "x\n",
						   "0123456789012345678901234567890123456789012345"
						   "678901234567890123"};
	for (size_t i = 0; i < sizeof(bad_products) / sizeof(bad_products[0]); i++) {
		q = new_order();
		q.product.data = (uint8_t *)bad_products[i];
		q.product.len = strlen(bad_products[i]);
		ck_assert_msg(decode_with(&q, NULL, 0) == SRV_AUTH_MALFORMED, "accepted '%s'",
			      bad_products[i]);
	}
	/* Invalid UTF-8 bytes never pass as a product. */
	q = new_order();
	uint8_t invalid[] = {'H', 0xff, 0xfe};
	q.product.data = invalid;
	q.product.len = 3;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q = new_order();
	q.side = 0;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q = new_order();
	q.side = 3;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q = new_order();
	q.time_in_force = GRIDEX__V1__TIME_IN_FORCE__GTD; /* without expire_ms */
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q.expire_ms = 5000;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_OK);
	q = new_order();
	q.expire_ms = 5000; /* expire_ms on a GTC order */
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q = new_order();
	q.client_order_id = 0;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q = new_order();
	q.target_client_order_id = 5;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q = new_order();
	q.type = 42;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
}
END_TEST

START_TEST(each_request_type_takes_its_own_fields)
{
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.account = 7;
	q.nonce = 3;
	q.type = GRIDEX__V1__REQUEST_TYPE__CANCEL;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED); /* no target */
	q.target_client_order_id = 99;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_OK);
	q.price = 1;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q.price = 0;
	q.type = GRIDEX__V1__REQUEST_TYPE__MODIFY;
	q.price = 100;
	q.quantity = 2;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_OK);
	q.side = GRIDEX__V1__SIDE__SELL;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q = (Gridex__V1__Request)GRIDEX__V1__REQUEST__INIT;
	q.account = 7;
	q.nonce = 3;
	q.type = GRIDEX__V1__REQUEST_TYPE__CANCEL_ALL;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_OK);
	q.product.data = (uint8_t *)"H100-80G";
	q.product.len = 8;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_OK);
	q.type = GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q.product.len = 0;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_OK);
	q = new_order();
	q.type = GRIDEX__V1__REQUEST_TYPE__NEW_BASKET;
	q.time_in_force = GRIDEX__V1__TIME_IN_FORCE__FOK;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED); /* no hours */
	q.hours = 4;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_OK);
	q.hours = SRV_BASKET_HOURS_MAX + 1;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q.hours = 4;
	q.time_in_force = GRIDEX__V1__TIME_IN_FORCE__IOC;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	/* Operator fields belong to operator requests only. */
	q = new_order();
	q.amount = 5;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q = new_order();
	q.target_account = 5;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	/* A cursor belongs to the four queries that come in pages. */
	q = new_order();
	q.cursor = 5;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q = (Gridex__V1__Request)GRIDEX__V1__REQUEST__INIT;
	q.account = 7;
	q.nonce = 3;
	q.cursor = UINT64_MAX;
	static const Gridex__V1__RequestType paged[] = {
		GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS, GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS,
		GRIDEX__V1__REQUEST_TYPE__QUERY_LEASES, GRIDEX__V1__REQUEST_TYPE__QUERY_HOSTS};
	for (size_t i = 0; i < sizeof(paged) / sizeof(paged[0]); i++) {
		q.type = paged[i];
		ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_OK);
		ck_assert_uint_eq(r.cursor, UINT64_MAX);
	}
	static const Gridex__V1__RequestType others[] = {GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE,
							 GRIDEX__V1__REQUEST_TYPE__CANCEL_ALL};
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		q.type = others[i];
		q.cursor = 1;
		ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
		q.cursor = 0;
		ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_OK);
	}
}
END_TEST

START_TEST(operator_requests_take_their_own_fields)
{
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	q.account = 1;
	q.nonce = 3;
	q.type = GRIDEX__V1__REQUEST_TYPE__REGISTER_ACCOUNT;
	q.target_account = 9;
	q.public_key.data = pk2;
	q.public_key.len = 32;
	q.name.data = (uint8_t *)"acme-gpu.eu_1";
	q.name.len = strlen("acme-gpu.eu_1");
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_OK);
	ck_assert_str_eq(r.name, "acme-gpu.eu_1");
	ck_assert_mem_eq(r.public_key, pk2, 32);
	ck_assert_uint_eq(r.target_account, 9);
	static const char *const bad_names[] = {
		"", "a/b", "a:b", "a b", "\xc3\xa9", "0123456789012345678901234567890x"};
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		q.name.data = (uint8_t *)bad_names[i];
		q.name.len = strlen(bad_names[i]);
		ck_assert_msg(decode_with(&q, NULL, 0) == SRV_AUTH_MALFORMED, "accepted '%s'",
			      bad_names[i]);
	}
	q.name.data = (uint8_t *)"acme";
	q.name.len = 4;
	q.public_key.len = 31;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q.public_key.len = 32;
	q.target_account = 0;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q.target_account = 9;
	q.amount = 1;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);

	q = (Gridex__V1__Request)GRIDEX__V1__REQUEST__INIT;
	q.account = 1;
	q.nonce = 3;
	q.type = GRIDEX__V1__REQUEST_TYPE__DEPOSIT;
	q.target_account = 9;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED); /* no amount */
	q.amount = -5;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q.amount = 5;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_OK);
	q.price = 1;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q.price = 0;
	q.type = GRIDEX__V1__REQUEST_TYPE__WITHDRAW;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_OK);

	q.type = GRIDEX__V1__REQUEST_TYPE__SET_CAPACITY;
	q.amount = 0;
	q.product.data = (uint8_t *)"H100-80G";
	q.product.len = 8;
	q.quantity = 0;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_OK);
	q.quantity = -1;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q.quantity = 8;
	q.side = GRIDEX__V1__SIDE__BUY;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q.side = 0;

	q.type = GRIDEX__V1__REQUEST_TYPE__HALT;
	q.quantity = 0;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED); /* a target */
	q.target_account = 0;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_OK);
	q.type = GRIDEX__V1__REQUEST_TYPE__RESUME;
	q.product.len = 0;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
}
END_TEST

START_TEST(host_requests_take_their_own_fields)
{
	Gridex__V1__Request q = GRIDEX__V1__REQUEST__INIT;
	ProtobufCBinaryData dev = {.len = 8, .data = (uint8_t *)"GPU-aaaa"};
	q.account = 7;
	q.nonce = 3;
	q.type = GRIDEX__V1__REQUEST_TYPE__REGISTER_HOST;
	q.name = (ProtobufCBinaryData){.len = 6, .data = (uint8_t *)"node-1"};
	q.product = (ProtobufCBinaryData){.len = 8, .data = (uint8_t *)"H100-80G"};
	q.vendor = (ProtobufCBinaryData){.len = 6, .data = (uint8_t *)"nvidia"};
	q.n_devices = 1;
	q.devices = &dev;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_OK);
	ck_assert_str_eq(r.name, "node-1");
	/* WITHDRAW_HOST takes the name alone */
	q.type = GRIDEX__V1__REQUEST_TYPE__WITHDRAW_HOST;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q.n_devices = 0;
	q.vendor.len = 0;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED); /* a class */
	q.product.len = 0;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_OK);
	ck_assert_uint_eq(r.type, GRIDEX__V1__REQUEST_TYPE__WITHDRAW_HOST);
	ck_assert_str_eq(r.name, "node-1");
	/* QUERY_HOSTS takes nothing */
	q.type = GRIDEX__V1__REQUEST_TYPE__QUERY_HOSTS;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q.name.len = 0;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_OK);
	q.product = (ProtobufCBinaryData){.len = 8, .data = (uint8_t *)"H100-80G"};
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q.product.len = 0;
	q.target_account = 3;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q.target_account = 0;
	q.type = GRIDEX__V1__REQUEST_TYPE__WITHDRAW_HOST;
	q.name = (ProtobufCBinaryData){.len = 6, .data = (uint8_t *)"node-1"};
	q.target_account = 9;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q.target_account = 0;
	q.quantity = 1;
	ck_assert_int_eq(decode_with(&q, NULL, 0), SRV_AUTH_MALFORMED);
	q.quantity = 0;
	static const char *const bad_names[] = {"", "a/b", "a b",
						"0123456789012345678901234567890x"};
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		q.name.data = (uint8_t *)bad_names[i];
		q.name.len = strlen(bad_names[i]);
		ck_assert_msg(decode_with(&q, NULL, 0) == SRV_AUTH_MALFORMED, "accepted '%s'",
			      bad_names[i]);
	}
}
END_TEST

START_TEST(keys_are_validated_at_registration)
{
	struct srv_keys *k;
	ck_assert_int_eq(srv_keys_create(2, &k), SRV_AUTH_OK);
	ck_assert_int_eq(srv_keys_register(k, 1, pk), SRV_AUTH_OK);
	ck_assert_int_eq(srv_keys_register(k, 1, pk), SRV_AUTH_OK);
	ck_assert_int_eq(srv_keys_register(k, 1, pk2), SRV_AUTH_EXISTS);
	ck_assert_int_eq(srv_keys_register(k, 0, pk2), SRV_AUTH_ARGS);
	/* The identity point (small order) and a point off the curve. */
	uint8_t identity[32] = {1};
	ck_assert_int_eq(srv_keys_register(k, 2, identity), SRV_AUTH_BAD_KEY);
	uint8_t zero[32] = {0};
	ck_assert_int_eq(srv_keys_register(k, 2, zero), SRV_AUTH_BAD_KEY);
	uint8_t off[32];
	memset(off, 0xff, sizeof(off));
	off[31] = 0x7f;
	ck_assert_int_eq(srv_keys_register(k, 2, off), SRV_AUTH_BAD_KEY);
	ck_assert_int_eq(srv_keys_register(k, 2, pk2), SRV_AUTH_OK);
	ck_assert_int_eq(srv_keys_register(k, 3, pk2), SRV_AUTH_FULL);
	ck_assert_ptr_nonnull(srv_keys_lookup(k, 1));
	ck_assert_int_eq(memcmp(srv_keys_lookup(k, 2), pk2, 32), 0);
	ck_assert_ptr_null(srv_keys_lookup(k, 3));
	ck_assert_ptr_null(srv_keys_lookup(k, 0));
	srv_keys_destroy(k);
	ck_assert_int_eq(srv_keys_create(0, &k), SRV_AUTH_ARGS);
	srv_keys_destroy(NULL);
}
END_TEST

START_TEST(nonces_replay_window)
{
	struct srv_keys *k;
	ck_assert_int_eq(srv_keys_create(4, &k), SRV_AUTH_OK);
	ck_assert_int_eq(srv_keys_register(k, 7, pk), SRV_AUTH_OK);
#define ACCEPT(n) srv_nonce_accept(k, 7, (n), 2000, 1000, 60000)
	ck_assert_int_eq(srv_nonce_accept(k, 8, 1, 2000, 1000, 60000), SRV_AUTH_UNKNOWN_ACCOUNT);
	ck_assert_int_eq(ACCEPT(0), SRV_AUTH_STALE_NONCE);
	ck_assert_int_eq(ACCEPT(10), SRV_AUTH_OK);
	ck_assert_int_eq(ACCEPT(10), SRV_AUTH_STALE_NONCE);
	/* Out of order inside the window, once each. */
	ck_assert_int_eq(ACCEPT(5), SRV_AUTH_OK);
	ck_assert_int_eq(ACCEPT(5), SRV_AUTH_STALE_NONCE);
	ck_assert_int_eq(ACCEPT(9), SRV_AUTH_OK);
	ck_assert_int_eq(ACCEPT(12), SRV_AUTH_OK);
	ck_assert_int_eq(ACCEPT(11), SRV_AUTH_OK);
	ck_assert_int_eq(ACCEPT(10), SRV_AUTH_STALE_NONCE);
	ck_assert_int_eq(ACCEPT(9), SRV_AUTH_STALE_NONCE);
	ck_assert_int_eq(ACCEPT(5), SRV_AUTH_STALE_NONCE);
	/* A jump of exactly the window: the old highest is 64 back and still known. */
	ck_assert_int_eq(ACCEPT(12 + 64), SRV_AUTH_OK);
	ck_assert_int_eq(ACCEPT(12), SRV_AUTH_STALE_NONCE);
	ck_assert_int_eq(ACCEPT(13), SRV_AUTH_OK);
	ck_assert_int_eq(ACCEPT(11), SRV_AUTH_STALE_NONCE); /* 65 back: outside */
	/* A jump beyond the window forgets everything below it. */
	ck_assert_int_eq(ACCEPT(1000), SRV_AUTH_OK);
	ck_assert_int_eq(ACCEPT(936), SRV_AUTH_OK); /* 64 back */
	ck_assert_int_eq(ACCEPT(935), SRV_AUTH_STALE_NONCE);
	ck_assert_int_eq(ACCEPT(76), SRV_AUTH_STALE_NONCE);
	ck_assert_int_eq(ACCEPT(UINT64_MAX), SRV_AUTH_OK);
	ck_assert_int_eq(ACCEPT(UINT64_MAX), SRV_AUTH_STALE_NONCE);
	ck_assert_int_eq(ACCEPT(UINT64_MAX - 1), SRV_AUTH_OK);
#undef ACCEPT
	srv_keys_destroy(k);
}
END_TEST

START_TEST(expiry_window)
{
	struct srv_keys *k;
	ck_assert_int_eq(srv_keys_create(4, &k), SRV_AUTH_OK);
	ck_assert_int_eq(srv_keys_register(k, 7, pk), SRV_AUTH_OK);
	ck_assert_int_eq(srv_nonce_accept(k, 7, 1, 1000, 1000, 60000), SRV_AUTH_EXPIRED);
	ck_assert_int_eq(srv_nonce_accept(k, 7, 1, 999, 1000, 60000), SRV_AUTH_EXPIRED);
	ck_assert_int_eq(srv_nonce_accept(k, 7, 1, 61001, 1000, 60000), SRV_AUTH_EXPIRY_TOO_FAR);
	ck_assert_int_eq(srv_nonce_accept(k, 7, 1, INT64_MAX, INT64_MAX - 5, 60000),
			 SRV_AUTH_OK); /* now + ahead overflows: the expiry is still checked */
	ck_assert_int_eq(srv_nonce_accept(k, 7, 2, 61000, 1000, 60000), SRV_AUTH_OK);
	/* A refused request records nothing: its nonce is still free. */
	ck_assert_int_eq(srv_nonce_accept(k, 7, 3, 10, 1000, 60000), SRV_AUTH_EXPIRED);
	ck_assert_int_eq(srv_nonce_accept(k, 7, 3, 2000, 1000, 60000), SRV_AUTH_OK);
	ck_assert_str_eq(srv_auth_status_name(SRV_AUTH_STALE_NONCE), "stale nonce");
	srv_keys_destroy(k);
}
END_TEST

static Suite *auth_suite(void)
{
	Suite *s = suite_create("server-auth");
	TCase *tc = tcase_create("requests");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, valid_request_decodes_and_verifies);
	tcase_add_test(tc, tampering_breaks_the_signature);
	tcase_add_test(tc, malformed_envelopes_are_refused);
	tcase_add_test(tc, bodies_are_checked_field_by_field);
	tcase_add_test(tc, each_request_type_takes_its_own_fields);
	tcase_add_test(tc, operator_requests_take_their_own_fields);
	tcase_add_test(tc, host_requests_take_their_own_fields);
	suite_add_tcase(s, tc);
	tc = tcase_create("replay");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, keys_are_validated_at_registration);
	tcase_add_test(tc, nonces_replay_window);
	tcase_add_test(tc, expiry_window);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tap_run(auth_suite());
}
