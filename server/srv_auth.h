/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Request authentication for gridexd (docs/protocol.md).
 *
 * Three steps, split by who may run them:
 *   srv_request_decode()  any thread: size caps, protobuf unpack of the
 *                         envelope and the body, unknown fields, tokens,
 *                         which fields belong to which request type;
 *   srv_request_verify()  any thread (the verifier pool): Ed25519 over the
 *                         domain string and the exact body bytes received;
 *   srv_nonce_accept()    one thread, in sequence order (the sequencer): the
 *                         replay window and the expiry.
 * None of them allocates after creation except protobuf-c's unpack, whose
 * input is capped first. Nothing here logs.
 */
#ifndef GRIDEX_SRV_AUTH_H
#define GRIDEX_SRV_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SRV_MUST_USE __attribute__((warn_unused_result))

/* Signed bytes: this domain string, its terminating NUL, then the body. */
#define SRV_SIGN_DOMAIN	      "gridex/v1/request"
#define SRV_SIGN_DOMAIN_BYTES (sizeof(SRV_SIGN_DOMAIN)) /* with the NUL */
#define SRV_PUBLIC_KEY_BYTES  32
#define SRV_SIGNATURE_BYTES   64
#define SRV_PRODUCT_BYTES_MAX 63
/* Nonces below the highest seen that may still arrive (out of order, once). */
#define SRV_NONCE_WINDOW 64
/* A request body is small: a few dozen bytes. Larger is hostile. */
#define SRV_BODY_BYTES_CEILING 1024
#define SRV_BASKET_HOURS_MAX   48
/* Participant names, as the ledger stores them. */
#define SRV_ACCOUNT_NAME_BYTES_MAX 31
/* REGISTER_HOST and SET_WORKLOAD (docs/provisioning.md). */
#define SRV_CLASS_BYTES_MAX    31 /* an accelerator class (MATCHING_CLASS_NAME_MAX) */
#define SRV_HOST_DEVICES_MAX   16 /* UUIDs of one host: they fit one request body */
#define SRV_DEVICE_BYTES_MAX   63
#define SRV_VENDOR_BYTES_MAX   15
#define SRV_WORKLOAD_BYTES_MAX 768

enum srv_auth_status {
	SRV_AUTH_OK = 0,
	SRV_AUTH_MALFORMED, /* unparseable, unknown fields, bad token, stray fields */
	SRV_AUTH_TOO_BIG,   /* above the configured body size */
	SRV_AUTH_UNKNOWN_ACCOUNT,
	SRV_AUTH_BAD_SIGNATURE,
	SRV_AUTH_STALE_NONCE,	 /* below the window, or already seen */
	SRV_AUTH_EXPIRED,	 /* expires_at_ms <= now */
	SRV_AUTH_EXPIRY_TOO_FAR, /* expires_at_ms > now + expiry_ahead_ms_max */
	SRV_AUTH_FULL,		 /* the key registry is full */
	SRV_AUTH_BAD_KEY,	 /* not a valid Ed25519 point of prime order */
	SRV_AUTH_EXISTS,	 /* account already has another key */
	SRV_AUTH_ARGS,
	SRV_AUTH_NOMEM,
};

/* A decoded, structurally valid request. Names are NUL-terminated copies. */
struct srv_request {
	uint32_t account;
	uint64_t nonce;
	int64_t expires_at_ms;
	uint32_t type; /* Gridex__V1__RequestType */
	uint64_t client_order_id;
	char product[SRV_PRODUCT_BYTES_MAX + 1]; /* "" when absent */
	uint32_t side, time_in_force, self_trade;
	int64_t price, quantity, expire_ms;
	uint64_t target_client_order_id;
	uint32_t hours;
	uint32_t target_account;		  /* operator requests */
	uint8_t public_key[SRV_PUBLIC_KEY_BYTES]; /* REGISTER_ACCOUNT */
	int64_t amount;				  /* DEPOSIT, WITHDRAW */
	char name[SRV_ACCOUNT_NAME_BYTES_MAX +
		  1];	 /* REGISTER_ACCOUNT, REGISTER_HOST; "" when absent */
	uint64_t cursor; /* QUERY_ORDERS, QUERY_FILLS, QUERY_LEASES, QUERY_HOSTS; 0: first page */
	/* The signed bytes exactly as received: the domain, its NUL, the body. */
	uint8_t signed_bytes[SRV_SIGN_DOMAIN_BYTES + SRV_BODY_BYTES_CEILING];
	size_t signed_len;
	uint8_t signature[SRV_SIGNATURE_BYTES];
};

/*
 * Decodes a SignedRequest (the bytes of ClientFrame.request, or a bare
 * SignedRequest) from frame[0..len). body_bytes_max (1 ..
 * SRV_BODY_BYTES_CEILING) caps the inner body; the envelope is refused before
 * unpacking when it could not fit one. On OK, out holds the decoded fields and
 * a copy of the signed bytes as received (never a re-encoding).
 * Errors: TOO_BIG, MALFORMED, ARGS. On failure out->account and out->nonce are
 * the body's when it unpacked (a refused request can still be named), else 0;
 * the rest of out is unspecified.
 */
SRV_MUST_USE int srv_request_decode(const uint8_t *frame, size_t len, size_t body_bytes_max,
				    struct srv_request *out);

/*
 * The same result from a body and its signature as the journal keeps them
 * (srv_request_decode() minus the envelope). Errors: TOO_BIG, MALFORMED, ARGS.
 */
SRV_MUST_USE int srv_request_from_body(const uint8_t *body, size_t len,
				       const uint8_t signature[SRV_SIGNATURE_BYTES],
				       struct srv_request *out);

/* The body of a decoded request (inside r->signed_bytes, after the domain). */
static inline const uint8_t *srv_request_body(const struct srv_request *r, size_t *len)
{
	*len = r->signed_len - SRV_SIGN_DOMAIN_BYTES;
	return r->signed_bytes + SRV_SIGN_DOMAIN_BYTES;
}

/* Whether data[0..len) is a product or accelerator class name: 1 ..
 * SRV_PRODUCT_BYTES_MAX bytes of [A-Za-z0-9._/:-] (requests and subscriptions). */
bool srv_product_token_ok(const uint8_t *data, size_t len);

/* Whether v names a vendor the hook contract knows: nvidia, amd, ascend, cambricon. */
bool srv_vendor_ok(const char *v);
/* Whether data[0..len) is a workload: a JSON object (no duplicate keys) of at most
 * SRV_WORKLOAD_BYTES_MAX bytes with "command", a non-empty array of strings, and
 * optionally "env", an object of strings; nothing else. */
bool srv_workload_ok(const uint8_t *data, size_t len);

/* A REGISTER_HOST request's vendor and devices (NUL-terminated). */
struct srv_host_spec {
	char vendor[SRV_VENDOR_BYTES_MAX + 1];
	uint32_t n_devices;
	char devices[SRV_HOST_DEVICES_MAX][SRV_DEVICE_BYTES_MAX + 1];
};
/* Reads them from a decoded REGISTER_HOST request's body (decode checked them; the
 * request keeps no copy). Errors: MALFORMED (another type). */
SRV_MUST_USE int srv_request_host(const struct srv_request *r, struct srv_host_spec *out);
/* Copies a decoded SET_WORKLOAD request's workload, NUL-terminated. Errors: MALFORMED. */
SRV_MUST_USE int srv_request_workload(const struct srv_request *r,
				      char out[SRV_WORKLOAD_BYTES_MAX + 1]);

/* Ed25519 check of r->signature over r->signed_bytes. Errors: BAD_SIGNATURE. */
SRV_MUST_USE int srv_request_verify(const struct srv_request *r,
				    const uint8_t public_key[SRV_PUBLIC_KEY_BYTES]);

/* ---------- registry of accounts: keys and replay state ---------- */

struct srv_keys;

/* Creates a registry for up to accounts_max accounts. Errors: ARGS, NOMEM. */
SRV_MUST_USE int srv_keys_create(uint32_t accounts_max, struct srv_keys **out);
void srv_keys_destroy(struct srv_keys *k);

/*
 * Registers account's public key, refusing keys that are not valid points of
 * the prime-order subgroup (crypto_core_ed25519_is_valid_point: small-order
 * and non-canonical keys would let signatures be forged or replayed).
 * Registering the same key again is OK. Errors: BAD_KEY, EXISTS, FULL, ARGS.
 */
SRV_MUST_USE int srv_keys_register(struct srv_keys *k, uint32_t account,
				   const uint8_t public_key[SRV_PUBLIC_KEY_BYTES]);

/* The account's key, or NULL. The pointer stays valid until destroy. */
const uint8_t *srv_keys_lookup(const struct srv_keys *k, uint32_t account);

/*
 * Accepts (and records) a verified request's nonce and expiry at time now_ms:
 * the expiry must satisfy now_ms < expires_at_ms <= now_ms + ahead_ms_max;
 * the nonce must be above the account's highest, or one of the
 * SRV_NONCE_WINDOW below it not seen yet. Nothing is recorded on failure.
 * Errors: UNKNOWN_ACCOUNT, EXPIRED, EXPIRY_TOO_FAR, STALE_NONCE.
 */
SRV_MUST_USE int srv_nonce_accept(struct srv_keys *k, uint32_t account, uint64_t nonce,
				  int64_t expires_at_ms, int64_t now_ms, int64_t ahead_ms_max);

/* Snapshots: every account's key and nonce window; load fills a new, empty
 * registry (-1 with the reason in in->error). */
struct srv_snap_w;
struct srv_snap_r;
void srv_keys_save(const struct srv_keys *k, struct srv_snap_w *w);
SRV_MUST_USE int srv_keys_load(struct srv_keys *k, struct srv_snap_r *in);

const char *srv_auth_status_name(int status);

#endif
