/* SPDX-License-Identifier: Apache-2.0 */
#include "srv_auth.h"

#include <assert.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "gridex.pb-c.h"
#include "srv_snapshot.h"

/* Envelope bytes around the body: two tags, two lengths, the signature. */
#define ENVELOPE_OVERHEAD_MAX (2 + 10 + 2 + SRV_SIGNATURE_BYTES)

_Static_assert(SRV_SIGN_DOMAIN_BYTES == 18, "the domain string is part of the protocol");

/* Product tokens allow [A-Za-z0-9._/:-]; account names [A-Za-z0-9._-] (no '/' or ':'). */
static bool chars_ok(const ProtobufCBinaryData *b, size_t max, bool product)
{
	if (b->len > max)
		return false;
	for (size_t i = 0; i < b->len; i++) {
		uint8_t c = b->data[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
			  (product && (c == '/' || c == ':'));
		if (!ok)
			return false;
	}
	return true;
}

bool srv_product_token_ok(const uint8_t *data, size_t len)
{
	ProtobufCBinaryData b = {.len = len, .data = (uint8_t *)data};
	return len > 0 && chars_ok(&b, SRV_PRODUCT_BYTES_MAX, true);
}

static bool token_ok(const ProtobufCBinaryData *b, bool required)
{
	if (b->len == 0)
		return !required;
	return srv_product_token_ok(b->data, b->len);
}

/* The fields only operator requests use, all absent. */
static bool no_operator_fields(const Gridex__V1__Request *q)
{
	return q->target_account == 0 && q->public_key.len == 0 && q->amount == 0 &&
	       q->name.len == 0;
}

/* Operator requests: target_account plus the fields of their kind; no order fields. */
static bool operator_fields_belong(const Gridex__V1__Request *q, bool order_fields)
{
	if (order_fields && q->type != GRIDEX__V1__REQUEST_TYPE__SET_CAPACITY)
		return false;
	if (q->client_order_id != 0 || q->target_client_order_id != 0 || q->hours != 0)
		return false;
	bool plain = q->public_key.len == 0 && q->name.len == 0;
	switch (q->type) {
	case GRIDEX__V1__REQUEST_TYPE__REGISTER_ACCOUNT:
		return q->target_account != 0 && q->public_key.len == SRV_PUBLIC_KEY_BYTES &&
		       q->name.len > 0 && chars_ok(&q->name, SRV_ACCOUNT_NAME_BYTES_MAX, false) &&
		       q->amount == 0 && q->product.len == 0;
	case GRIDEX__V1__REQUEST_TYPE__DEPOSIT:
	case GRIDEX__V1__REQUEST_TYPE__WITHDRAW:
		return q->target_account != 0 && plain && q->amount > 0 && q->product.len == 0;
	case GRIDEX__V1__REQUEST_TYPE__SET_CAPACITY:
		/* quantity may be 0 (no more capacity); the rest of the order fields not. */
		return q->target_account != 0 && plain && q->amount == 0 &&
		       token_ok(&q->product, true) && q->quantity >= 0 && q->side == 0 &&
		       q->time_in_force == 0 && q->self_trade == 0 && q->price == 0 &&
		       q->expire_ms == 0;
	case GRIDEX__V1__REQUEST_TYPE__HALT:
	case GRIDEX__V1__REQUEST_TYPE__RESUME:
		return q->target_account == 0 && plain && q->amount == 0 &&
		       token_ok(&q->product, true);
	default:
		return false;
	}
}

bool srv_vendor_ok(const char *v)
{
	return strcmp(v, "nvidia") == 0 || strcmp(v, "amd") == 0 || strcmp(v, "ascend") == 0 ||
	       strcmp(v, "cambricon") == 0;
}

/* REGISTER_HOST: a host name, a class name, a vendor and 1 .. SRV_HOST_DEVICES_MAX distinct
 * device UUIDs; nothing else. */
static bool host_fields_ok(const Gridex__V1__Request *q)
{
	char vendor[SRV_VENDOR_BYTES_MAX + 1];
	if (q->name.len == 0 || !chars_ok(&q->name, SRV_ACCOUNT_NAME_BYTES_MAX, false) ||
	    q->product.len == 0 || !chars_ok(&q->product, SRV_CLASS_BYTES_MAX, false) ||
	    q->vendor.len == 0 || q->vendor.len > SRV_VENDOR_BYTES_MAX || q->n_devices == 0 ||
	    q->n_devices > SRV_HOST_DEVICES_MAX || q->workload.len != 0)
		return false;
	memcpy(vendor, q->vendor.data, q->vendor.len);
	vendor[q->vendor.len] = '\0';
	if (memchr(vendor, '\0', q->vendor.len) != NULL || !srv_vendor_ok(vendor))
		return false;
	for (size_t i = 0; i < q->n_devices; i++) {
		const ProtobufCBinaryData *d = &q->devices[i];
		if (d->len == 0 || !chars_ok(d, SRV_DEVICE_BYTES_MAX, true))
			return false;
		for (size_t j = 0; j < i; j++)
			if (q->devices[j].len == d->len &&
			    memcmp(q->devices[j].data, d->data, d->len) == 0)
				return false;
	}
	return true;
}

static bool strings_only(json_t *v, bool array)
{
	if (array) {
		size_t i;
		json_t *arg;
		if (!json_is_array(v) || json_array_size(v) == 0)
			return false;
		json_array_foreach(v, i, arg)
		{
			if (!json_is_string(arg))
				return false;
		}
		return true;
	}
	const char *name;
	json_t *val;
	if (!json_is_object(v))
		return false;
	json_object_foreach(v, name, val)
	{
		if (name[0] == '\0' || !json_is_string(val))
			return false;
	}
	return true;
}

bool srv_workload_ok(const uint8_t *data, size_t len)
{
	if (len == 0 || len > SRV_WORKLOAD_BYTES_MAX || memchr(data, '\0', len) != NULL)
		return false;
	json_error_t err;
	json_t *w = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &err);
	bool ok = json_is_object(w) && strings_only(json_object_get(w, "command"), true);
	const char *key;
	json_t *v;
	json_object_foreach(ok ? w : NULL, key, v)
	{
		if (strcmp(key, "env") == 0)
			ok = ok && strings_only(v, false);
		else if (strcmp(key, "command") != 0)
			ok = false;
	}
	json_decref(w);
	return ok;
}

/* Requests of participants about their leases: none of the order or operator fields. */
static bool lease_fields_belong(const Gridex__V1__Request *q, bool order_fields)
{
	if (order_fields || q->client_order_id != 0 || q->target_client_order_id != 0 ||
	    q->hours != 0 || q->target_account != 0 || q->public_key.len != 0 || q->amount != 0)
		return false;
	if (q->type == GRIDEX__V1__REQUEST_TYPE__REGISTER_HOST)
		return host_fields_ok(q);
	if (q->type == GRIDEX__V1__REQUEST_TYPE__WITHDRAW_HOST)
		return q->name.len != 0 && chars_ok(&q->name, SRV_ACCOUNT_NAME_BYTES_MAX, false) &&
		       q->product.len == 0 && q->vendor.len == 0 && q->n_devices == 0 &&
		       q->workload.len == 0;
	return q->name.len == 0 && q->product.len == 0 && q->vendor.len == 0 && q->n_devices == 0 &&
	       srv_workload_ok(q->workload.data, q->workload.len);
}

/* Which fields each request type takes; anything else must be zero or empty. */
static bool fields_belong(const Gridex__V1__Request *q)
{
	bool order_fields = q->side != 0 || q->time_in_force != 0 || q->self_trade != 0 ||
			    q->price != 0 || q->quantity != 0 || q->expire_ms != 0;
	bool side_ok = q->side == GRIDEX__V1__SIDE__BUY || q->side == GRIDEX__V1__SIDE__SELL;
	bool stp_ok = q->self_trade <= GRIDEX__V1__SELF_TRADE_PREVENTION__ALLOW;
	if (q->cursor != 0 && q->type != GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS &&
	    q->type != GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS &&
	    q->type != GRIDEX__V1__REQUEST_TYPE__QUERY_LEASES &&
	    q->type != GRIDEX__V1__REQUEST_TYPE__QUERY_HOSTS)
		return false;
	if (q->type == GRIDEX__V1__REQUEST_TYPE__REGISTER_HOST ||
	    q->type == GRIDEX__V1__REQUEST_TYPE__SET_WORKLOAD ||
	    q->type == GRIDEX__V1__REQUEST_TYPE__WITHDRAW_HOST)
		return lease_fields_belong(q, order_fields);
	if (q->vendor.len != 0 || q->n_devices != 0 || q->workload.len != 0)
		return false;
	if (q->type >= GRIDEX__V1__REQUEST_TYPE__REGISTER_ACCOUNT &&
	    q->type <= GRIDEX__V1__REQUEST_TYPE__RESUME)
		return operator_fields_belong(q, order_fields);
	if (!no_operator_fields(q))
		return false;
	switch (q->type) {
	case GRIDEX__V1__REQUEST_TYPE__NEW_ORDER:
		return token_ok(&q->product, true) && side_ok && stp_ok &&
		       q->time_in_force >= GRIDEX__V1__TIME_IN_FORCE__GTC &&
		       q->time_in_force <= GRIDEX__V1__TIME_IN_FORCE__POST_ONLY &&
		       (q->time_in_force == GRIDEX__V1__TIME_IN_FORCE__GTD) ==
			       (q->expire_ms != 0) &&
		       q->client_order_id != 0 && q->target_client_order_id == 0 && q->hours == 0;
	case GRIDEX__V1__REQUEST_TYPE__NEW_BASKET:
		return token_ok(&q->product, true) && side_ok && stp_ok &&
		       (q->time_in_force == 0 ||
			q->time_in_force == GRIDEX__V1__TIME_IN_FORCE__FOK) &&
		       q->expire_ms == 0 && q->client_order_id != 0 &&
		       q->target_client_order_id == 0 && q->hours >= 1 &&
		       q->hours <= SRV_BASKET_HOURS_MAX;
	case GRIDEX__V1__REQUEST_TYPE__CANCEL:
		return q->target_client_order_id != 0 && !order_fields && q->product.len == 0 &&
		       q->client_order_id == 0 && q->hours == 0;
	case GRIDEX__V1__REQUEST_TYPE__MODIFY:
		return q->target_client_order_id != 0 && q->side == 0 && q->time_in_force == 0 &&
		       q->self_trade == 0 && q->expire_ms == 0 && q->product.len == 0 &&
		       q->client_order_id == 0 && q->hours == 0;
	case GRIDEX__V1__REQUEST_TYPE__CANCEL_ALL:
	case GRIDEX__V1__REQUEST_TYPE__QUERY_ORDERS:
	case GRIDEX__V1__REQUEST_TYPE__QUERY_FILLS:
		return token_ok(&q->product, false) && !order_fields && q->client_order_id == 0 &&
		       q->target_client_order_id == 0 && q->hours == 0;
	case GRIDEX__V1__REQUEST_TYPE__QUERY_BALANCE:
	case GRIDEX__V1__REQUEST_TYPE__QUERY_LEASES:
	case GRIDEX__V1__REQUEST_TYPE__QUERY_HOSTS:
		return q->product.len == 0 && !order_fields && q->client_order_id == 0 &&
		       q->target_client_order_id == 0 && q->hours == 0;
	default:
		return false;
	}
}

static int decode_body(const uint8_t *body, size_t len, struct srv_request *out)
{
	Gridex__V1__Request *q = gridex__v1__request__unpack(NULL, len, body);
	if (q == NULL)
		return SRV_AUTH_MALFORMED;
	int rc = SRV_AUTH_MALFORMED;
	/* Set even when refused: the sender can tell which request was malformed. */
	out->account = q->account;
	out->nonce = q->nonce;
	if (q->base.n_unknown_fields != 0 || q->account == 0 || q->nonce == 0 || !fields_belong(q))
		goto out;
	out->expires_at_ms = q->expires_at_ms;
	out->type = (uint32_t)q->type;
	out->client_order_id = q->client_order_id;
	if (q->product.len > 0) /* data is NULL when empty */
		memcpy(out->product, q->product.data, q->product.len);
	out->product[q->product.len] = '\0';
	out->side = (uint32_t)q->side;
	out->time_in_force = (uint32_t)q->time_in_force;
	out->self_trade = (uint32_t)q->self_trade;
	out->price = q->price;
	out->quantity = q->quantity;
	out->expire_ms = q->expire_ms;
	out->target_client_order_id = q->target_client_order_id;
	out->hours = q->hours;
	out->target_account = q->target_account;
	out->cursor = q->cursor;
	memset(out->public_key, 0, sizeof(out->public_key));
	if (q->public_key.len == SRV_PUBLIC_KEY_BYTES)
		memcpy(out->public_key, q->public_key.data, SRV_PUBLIC_KEY_BYTES);
	out->amount = q->amount;
	if (q->name.len > 0)
		memcpy(out->name, q->name.data, q->name.len);
	out->name[q->name.len] = '\0';
	rc = SRV_AUTH_OK;
out:
	gridex__v1__request__free_unpacked(q, NULL);
	return rc;
}

/* The fields of a decoded REGISTER_HOST or SET_WORKLOAD request that srv_request keeps
 * no copy of, read again from its body (decode checked them). */
static int lease_fields(const struct srv_request *r, struct srv_host_spec *spec,
			char workload[SRV_WORKLOAD_BYTES_MAX + 1])
{
	size_t len;
	const uint8_t *body = srv_request_body(r, &len);
	Gridex__V1__Request *q = gridex__v1__request__unpack(NULL, len, body);
	if (q == NULL)
		return SRV_AUTH_MALFORMED;
	int rc = SRV_AUTH_MALFORMED;
	if (spec && q->type == GRIDEX__V1__REQUEST_TYPE__REGISTER_HOST && host_fields_ok(q)) {
		memset(spec, 0, sizeof(*spec));
		memcpy(spec->vendor, q->vendor.data, q->vendor.len);
		spec->n_devices = (uint32_t)q->n_devices;
		for (size_t i = 0; i < q->n_devices; i++)
			memcpy(spec->devices[i], q->devices[i].data, q->devices[i].len);
		rc = SRV_AUTH_OK;
	} else if (workload && q->type == GRIDEX__V1__REQUEST_TYPE__SET_WORKLOAD &&
		   srv_workload_ok(q->workload.data, q->workload.len)) {
		memcpy(workload, q->workload.data, q->workload.len);
		workload[q->workload.len] = '\0';
		rc = SRV_AUTH_OK;
	}
	gridex__v1__request__free_unpacked(q, NULL);
	return rc;
}

int srv_request_host(const struct srv_request *r, struct srv_host_spec *out)
{
	return lease_fields(r, out, NULL);
}

int srv_request_workload(const struct srv_request *r, char out[SRV_WORKLOAD_BYTES_MAX + 1])
{
	return lease_fields(r, NULL, out);
}

int srv_request_decode(const uint8_t *frame, size_t len, size_t body_bytes_max,
		       struct srv_request *out)
{
	if (frame == NULL || out == NULL || body_bytes_max < 1 ||
	    body_bytes_max > SRV_BODY_BYTES_CEILING)
		return SRV_AUTH_ARGS;
	out->account = 0;
	out->nonce = 0;
	if (len > body_bytes_max + ENVELOPE_OVERHEAD_MAX)
		return SRV_AUTH_TOO_BIG;
	Gridex__V1__SignedRequest *sr = gridex__v1__signed_request__unpack(NULL, len, frame);
	if (sr == NULL)
		return SRV_AUTH_MALFORMED;
	int rc = SRV_AUTH_MALFORMED;
	if (sr->base.n_unknown_fields != 0 || sr->signature.len != SRV_SIGNATURE_BYTES ||
	    sr->body.len == 0)
		goto out;
	if (sr->body.len > body_bytes_max) {
		rc = SRV_AUTH_TOO_BIG;
		goto out;
	}
	rc = decode_body(sr->body.data, sr->body.len, out);
	if (rc)
		goto out;
	memcpy(out->signed_bytes, SRV_SIGN_DOMAIN, SRV_SIGN_DOMAIN_BYTES);
	memcpy(out->signed_bytes + SRV_SIGN_DOMAIN_BYTES, sr->body.data, sr->body.len);
	out->signed_len = SRV_SIGN_DOMAIN_BYTES + sr->body.len;
	memcpy(out->signature, sr->signature.data, SRV_SIGNATURE_BYTES);
out:
	gridex__v1__signed_request__free_unpacked(sr, NULL);
	return rc;
}

int srv_request_from_body(const uint8_t *body, size_t len,
			  const uint8_t signature[SRV_SIGNATURE_BYTES], struct srv_request *out)
{
	if (body == NULL || signature == NULL || out == NULL || len == 0)
		return SRV_AUTH_ARGS;
	if (len > SRV_BODY_BYTES_CEILING)
		return SRV_AUTH_TOO_BIG;
	int rc = decode_body(body, len, out);
	if (rc)
		return rc;
	memcpy(out->signed_bytes, SRV_SIGN_DOMAIN, SRV_SIGN_DOMAIN_BYTES);
	memcpy(out->signed_bytes + SRV_SIGN_DOMAIN_BYTES, body, len);
	out->signed_len = SRV_SIGN_DOMAIN_BYTES + len;
	memcpy(out->signature, signature, SRV_SIGNATURE_BYTES);
	return SRV_AUTH_OK;
}

int srv_request_verify(const struct srv_request *r, const uint8_t public_key[SRV_PUBLIC_KEY_BYTES])
{
	assert(r->signed_len > SRV_SIGN_DOMAIN_BYTES && r->signed_len <= sizeof(r->signed_bytes));
	return crypto_sign_verify_detached(r->signature, r->signed_bytes, r->signed_len,
					   public_key) == 0
		       ? SRV_AUTH_OK
		       : SRV_AUTH_BAD_SIGNATURE;
}

/* ---------- registry ---------- */

_Static_assert(SRV_NONCE_WINDOW == 64, "the window is one 64-bit word");

struct key_entry {
	uint32_t account; /* 0 = empty */
	uint64_t high;	  /* highest nonce accepted (0: none yet) */
	uint64_t seen;	  /* bit i: nonce high - 1 - i was accepted */
	uint8_t public_key[SRV_PUBLIC_KEY_BYTES];
};

struct srv_keys {
	struct key_entry *slots;
	uint32_t mask, count, max;
};

int srv_keys_create(uint32_t accounts_max, struct srv_keys **out)
{
	if (accounts_max < 1 || accounts_max > (1u << 24))
		return SRV_AUTH_ARGS;
	if (sodium_init() < 0)
		return SRV_AUTH_NOMEM;
	uint32_t cap = 1;
	while (cap < 2 * accounts_max)
		cap <<= 1;
	struct srv_keys *k = calloc(1, sizeof(*k));
	if (!k)
		return SRV_AUTH_NOMEM;
	k->slots = calloc(cap, sizeof(*k->slots));
	if (!k->slots) {
		free(k);
		return SRV_AUTH_NOMEM;
	}
	k->mask = cap - 1;
	k->max = accounts_max;
	*out = k;
	return SRV_AUTH_OK;
}

void srv_keys_destroy(struct srv_keys *k)
{
	if (!k)
		return;
	free(k->slots);
	free(k);
}

/* The account's slot, or the empty slot where it would go. */
static struct key_entry *slot_of(const struct srv_keys *k, uint32_t account)
{
	uint32_t h = (uint32_t)((account * 0x9e3779b97f4a7c15ULL) >> 32) & k->mask;
	while (k->slots[h].account != 0 && k->slots[h].account != account)
		h = (h + 1) & k->mask;
	return &k->slots[h];
}

int srv_keys_register(struct srv_keys *k, uint32_t account,
		      const uint8_t public_key[SRV_PUBLIC_KEY_BYTES])
{
	if (account == 0 || public_key == NULL)
		return SRV_AUTH_ARGS;
	if (!crypto_core_ed25519_is_valid_point(public_key))
		return SRV_AUTH_BAD_KEY;
	struct key_entry *e = slot_of(k, account);
	if (e->account == account)
		return memcmp(e->public_key, public_key, SRV_PUBLIC_KEY_BYTES) == 0
			       ? SRV_AUTH_OK
			       : SRV_AUTH_EXISTS;
	if (k->count == k->max)
		return SRV_AUTH_FULL;
	e->account = account;
	memcpy(e->public_key, public_key, SRV_PUBLIC_KEY_BYTES);
	k->count++;
	return SRV_AUTH_OK;
}

const uint8_t *srv_keys_lookup(const struct srv_keys *k, uint32_t account)
{
	if (account == 0)
		return NULL;
	const struct key_entry *e = slot_of(k, account);
	return e->account == account ? e->public_key : NULL;
}

int srv_nonce_accept(struct srv_keys *k, uint32_t account, uint64_t nonce, int64_t expires_at_ms,
		     int64_t now_ms, int64_t ahead_ms_max)
{
	struct key_entry *e = account ? slot_of(k, account) : NULL;
	if (e == NULL || e->account != account)
		return SRV_AUTH_UNKNOWN_ACCOUNT;
	int64_t latest;
	if (expires_at_ms <= now_ms)
		return SRV_AUTH_EXPIRED;
	if (__builtin_add_overflow(now_ms, ahead_ms_max, &latest))
		latest = INT64_MAX; /* the bound lies beyond every representable time */
	if (expires_at_ms > latest)
		return SRV_AUTH_EXPIRY_TOO_FAR;
	if (nonce == 0 || nonce == e->high)
		return SRV_AUTH_STALE_NONCE;
	if (nonce > e->high) {
		/* The old high moves to `shift` back: still in the window up to 64. */
		uint64_t shift = nonce - e->high;
		if (shift > SRV_NONCE_WINDOW)
			e->seen = 0;
		else if (shift == SRV_NONCE_WINDOW)
			e->seen = 1ULL << (SRV_NONCE_WINDOW - 1);
		else
			e->seen = (e->seen << shift) | (1ULL << (shift - 1));
		e->high = nonce;
		return SRV_AUTH_OK;
	}
	uint64_t back = e->high - nonce; /* >= 1 */
	if (back > SRV_NONCE_WINDOW || (e->seen >> (back - 1)) & 1)
		return SRV_AUTH_STALE_NONCE;
	e->seen |= 1ULL << (back - 1);
	return SRV_AUTH_OK;
}

void srv_keys_save(const struct srv_keys *k, struct srv_snap_w *w)
{
	srv_snap_u32(w, k->count);
	for (uint32_t h = 0; h <= k->mask; h++) {
		const struct key_entry *e = &k->slots[h];
		if (e->account == 0)
			continue;
		srv_snap_u32(w, e->account);
		srv_snap_u64(w, e->high);
		srv_snap_u64(w, e->seen);
		srv_snap_put(w, e->public_key, SRV_PUBLIC_KEY_BYTES);
	}
}

int srv_keys_load(struct srv_keys *k, struct srv_snap_r *in)
{
	uint32_t n = srv_snap_get_count(in, 20 + SRV_PUBLIC_KEY_BYTES, k->max);
	for (uint32_t i = 0; i < n && !in->error; i++) {
		uint32_t account = srv_snap_get_u32(in);
		uint64_t high = srv_snap_get_u64(in), seen = srv_snap_get_u64(in);
		uint8_t key[SRV_PUBLIC_KEY_BYTES];
		srv_snap_get(in, key, sizeof(key));
		if (in->error)
			break;
		/* An account registered already (the operator's) keeps its configured key. */
		if (account == 0 || (srv_keys_lookup(k, account) == NULL &&
				     srv_keys_register(k, account, key) != SRV_AUTH_OK)) {
			srv_snap_fail(in, "keys: an account is zero or its key invalid");
			break;
		}
		struct key_entry *e = slot_of(k, account);
		e->high = high;
		e->seen = seen;
	}
	if (!in->error && k->count < n)
		srv_snap_fail(in, "keys: an account is repeated");
	return in->error ? -1 : 0;
}

const char *srv_auth_status_name(int status)
{
	static const char *const names[] = {
		[SRV_AUTH_OK] = "ok",
		[SRV_AUTH_MALFORMED] = "malformed request",
		[SRV_AUTH_TOO_BIG] = "request too big",
		[SRV_AUTH_UNKNOWN_ACCOUNT] = "unknown account",
		[SRV_AUTH_BAD_SIGNATURE] = "bad signature",
		[SRV_AUTH_STALE_NONCE] = "stale nonce",
		[SRV_AUTH_EXPIRED] = "expired",
		[SRV_AUTH_EXPIRY_TOO_FAR] = "expiry too far ahead",
		[SRV_AUTH_FULL] = "key registry full",
		[SRV_AUTH_BAD_KEY] = "invalid public key",
		[SRV_AUTH_EXISTS] = "account has another key",
		[SRV_AUTH_ARGS] = "invalid argument",
		[SRV_AUTH_NOMEM] = "out of memory",
	};
	return status >= 0 && status <= SRV_AUTH_NOMEM ? names[status] : "unknown status";
}
