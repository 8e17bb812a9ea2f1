/* SPDX-License-Identifier: Apache-2.0 */
/* Money arithmetic of the ledger: no database, every step overflow-checked. */
#include <string.h>

#include <openssl/evp.h>

#include "ledger.h"
#include "ledger_internal.h"

int ledger_fee(int64_t notional, uint32_t bps, int64_t *fee_out)
{
	if (notional < 0 || bps > LEDGER_BPS_MAX)
		return LEDGER_ERR_ARGS;
	/* notional = q * 10000 + r; fee = q * bps + ceil(r * bps / 10000), exactly. */
	int64_t q = notional / 10000, r = notional % 10000;
	int64_t fee = q * (int64_t)bps + (r * (int64_t)bps + 9999) / 10000;
	*fee_out = fee; /* <= notional because bps <= 10000 */
	return LEDGER_OK;
}

static int notional_of(const struct ledger_fill *f, int64_t *notional)
{
	if (f->fill_id < 1 || f->fill_id > LEDGER_FILL_ID_MAX || f->price < 1 || f->qty < 1)
		return LEDGER_ERR_ARGS;
	if (__builtin_mul_overflow(f->price, f->qty, notional))
		return LEDGER_ERR_OVERFLOW;
	return LEDGER_OK;
}

static struct ledger_transfer leg(const struct ledger_fill *f, int n, int64_t debit, int64_t credit,
				  int64_t amount, uint8_t code, int64_t lease_id)
{
	return (struct ledger_transfer){
		.id = (f->fill_id << 3) | n,
		.debit_account = debit,
		.credit_account = credit,
		.amount = amount,
		.code = code,
		.fill_id = f->fill_id,
		.taker_order_id = f->taker_order_id,
		.maker_order_id = f->maker_order_id,
		.lease_id = lease_id,
	};
}

int ledger_fill_transfers(const struct ledger_fill *f, const struct ledger_fees *fees,
			  const struct ledger_accounts *acc, struct ledger_transfer out[2],
			  size_t *n)
{
	int64_t notional, fee;
	int rc = notional_of(f, &notional);
	if (rc)
		return rc;
	rc = ledger_fee(notional, f->buyer_is_taker ? fees->taker_bps : fees->maker_bps, &fee);
	if (rc)
		return rc;
	int64_t total;
	if (__builtin_add_overflow(notional, fee, &total))
		return LEDGER_ERR_OVERFLOW;
	out[0] = leg(f, 0, acc->buyer, acc->escrow, notional, LEDGER_TRADE, 0);
	*n = 1;
	if (fee > 0)
		out[(*n)++] = leg(f, 1, acc->buyer, acc->fees, fee, LEDGER_FEE, 0);
	return LEDGER_OK;
}

int ledger_settle_part_transfers(const struct ledger_fill *f, const struct ledger_fees *fees,
				 const struct ledger_accounts *acc, int64_t used, int64_t total,
				 int64_t lease_id, struct ledger_transfer out[4], size_t *n)
{
	int64_t notional;
	int rc = notional_of(f, &notional);
	if (rc)
		return rc;
	if (total < 1 || used < 0 || used > total)
		return LEDGER_ERR_ARGS;
	/* The delivered share, rounded down: the seller is paid for no more than was used. */
	__extension__ typedef __int128 i128;
	int64_t released = (int64_t)((i128)notional * used / total);
	int64_t refunded = notional - released;
	uint32_t seller_bps = f->buyer_is_taker ? fees->maker_bps : fees->taker_bps;
	uint32_t buyer_bps = f->buyer_is_taker ? fees->taker_bps : fees->maker_bps;
	int64_t seller_fee, buyer_fee_paid, buyer_fee_kept;
	if ((rc = ledger_fee(released, seller_bps, &seller_fee)) != LEDGER_OK ||
	    (rc = ledger_fee(notional, buyer_bps, &buyer_fee_paid)) != LEDGER_OK ||
	    (rc = ledger_fee(released, buyer_bps, &buyer_fee_kept)) != LEDGER_OK)
		return rc;
	*n = 0;
	if (released > 0)
		out[(*n)++] = leg(f, 2, acc->escrow, acc->seller, released, LEDGER_ESCROW_RELEASE,
				  lease_id);
	if (seller_fee > 0)
		out[(*n)++] = leg(f, 3, acc->seller, acc->fees, seller_fee, LEDGER_FEE, lease_id);
	if (refunded > 0)
		out[(*n)++] = leg(f, 4, acc->escrow, acc->buyer, refunded, LEDGER_REFUND, lease_id);
	/* The buyer ends up paying the fee of what was delivered only. */
	if (buyer_fee_paid > buyer_fee_kept)
		out[(*n)++] = leg(f, 5, acc->fees, acc->buyer, buyer_fee_paid - buyer_fee_kept,
				  LEDGER_REFUND, lease_id);
	return LEDGER_OK;
}

int ledger_settle_transfers(const struct ledger_fill *f, const struct ledger_fees *fees,
			    const struct ledger_accounts *acc, bool delivered, int64_t lease_id,
			    struct ledger_transfer out[2], size_t *n)
{
	struct ledger_transfer t[4];
	int rc = ledger_settle_part_transfers(f, fees, acc, delivered ? 1 : 0, 1, lease_id, t, n);
	if (rc == LEDGER_OK)
		memcpy(out, t, *n * sizeof(*t)); /* all or nothing: at most two legs */
	return rc;
}

int ledger_parse_amount(const char *s, int64_t *micros)
{
	int64_t v = 0;
	int decimals = -1; /* digits after the point; -1 before it */
	size_t digits = 0;
	if (s == NULL || *s == '\0')
		return LEDGER_ERR_ARGS;
	for (const char *p = s; *p; p++) {
		if (*p == '.') {
			if (decimals >= 0 || digits == 0)
				return LEDGER_ERR_ARGS;
			decimals = 0;
			continue;
		}
		if (*p < '0' || *p > '9' || decimals == 6)
			return LEDGER_ERR_ARGS;
		if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *p - '0', &v))
			return LEDGER_ERR_OVERFLOW;
		digits++;
		if (decimals >= 0)
			decimals++;
	}
	if (decimals == 0)
		return LEDGER_ERR_ARGS; /* "12." */
	for (int i = decimals < 0 ? 0 : decimals; i < 6; i++)
		if (__builtin_mul_overflow(v, 10, &v))
			return LEDGER_ERR_OVERFLOW;
	if (v <= 0)
		return LEDGER_ERR_ARGS;
	*micros = v;
	return LEDGER_OK;
}

static void be64(uint8_t *p, int64_t v)
{
	uint64_t u = (uint64_t)v;
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)u;
		u >>= 8;
	}
}

/* Allocation failure in OpenSSL is fatal here: a wrong hash would be worse. */
static void digest(EVP_MD_CTX *ctx, const void *p, size_t len)
{
	if (!EVP_DigestUpdate(ctx, p, len))
		abort();
}

/* Format 1's input: the head and the transfers. */
static EVP_MD_CTX *hash_transfers(const uint8_t prev_hash[LEDGER_HASH_BYTES], int64_t batch_id,
				  const char *currency, const struct ledger_transfer *t, size_t n)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t head[16], cur[8] = {0}, row[8 * 8 + 1];
	size_t clen = strnlen(currency, sizeof(cur));
	memcpy(cur, currency, clen);
	be64(head, batch_id);
	be64(head + 8, (int64_t)n);
	if (ctx == NULL || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		abort();
	digest(ctx, prev_hash, LEDGER_HASH_BYTES);
	digest(ctx, head, sizeof(head));
	for (size_t i = 0; i < n; i++) {
		be64(row, t[i].id);
		be64(row + 8, t[i].debit_account);
		be64(row + 16, t[i].credit_account);
		be64(row + 24, t[i].amount);
		row[32] = t[i].code;
		be64(row + 33, t[i].fill_id);
		be64(row + 41, t[i].taker_order_id);
		be64(row + 49, t[i].maker_order_id);
		be64(row + 57, t[i].lease_id);
		digest(ctx, row, 65);
		digest(ctx, cur, sizeof(cur));
	}
	return ctx;
}

static void hash_end(EVP_MD_CTX *ctx, uint8_t out[LEDGER_HASH_BYTES])
{
	unsigned int len = 0;
	if (!EVP_DigestFinal_ex(ctx, out, &len) || len != LEDGER_HASH_BYTES)
		abort();
	EVP_MD_CTX_free(ctx);
}

void ledger_batch_hash(const uint8_t prev_hash[LEDGER_HASH_BYTES], int64_t batch_id,
		       const char *currency, const struct ledger_transfer *t, size_t n,
		       uint8_t out[LEDGER_HASH_BYTES])
{
	hash_end(hash_transfers(prev_hash, batch_id, currency, t, n), out);
}

void ledger_batch_hash_trades(const uint8_t prev_hash[LEDGER_HASH_BYTES], int64_t batch_id,
			      const char *currency, const struct ledger_transfer *t, size_t n,
			      const struct ledger_trade *tr, size_t n_trades,
			      uint8_t out[LEDGER_HASH_BYTES])
{
	EVP_MD_CTX *ctx = hash_transfers(prev_hash, batch_id, currency, t, n);
	uint8_t row[8 * 8 + 1 + 1 + LEDGER_PRODUCT_MAX];
	be64(row, (int64_t)n_trades);
	digest(ctx, row, 8);
	for (size_t i = 0; i < n_trades; i++) {
		const struct ledger_fill *f = &tr[i].fill;
		size_t plen = strnlen(tr[i].product, LEDGER_PRODUCT_MAX);
		be64(row, f->fill_id);
		be64(row + 8, f->price);
		be64(row + 16, f->qty);
		be64(row + 24, f->buyer);
		be64(row + 32, f->seller);
		row[40] = f->buyer_is_taker ? 1 : 0;
		be64(row + 41, f->taker_order_id);
		be64(row + 49, f->maker_order_id);
		be64(row + 57, tr[i].time_ms);
		row[65] = (uint8_t)plen;
		memcpy(row + 66, tr[i].product, plen);
		digest(ctx, row, 66 + plen);
	}
	hash_end(ctx, out);
}

bool ledger_product_valid(const char *product)
{
	size_t n = strnlen(product, LEDGER_PRODUCT_MAX + 1);
	if (n < 1 || n > LEDGER_PRODUCT_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = product[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '/' || c == ':' || c == '-'))
			return false;
	}
	return true;
}

bool ledger_hash_from_hex(const char *s, uint8_t out[LEDGER_HASH_BYTES])
{
	if (strlen(s) != 2 + 2 * LEDGER_HASH_BYTES || s[0] != '\\' || s[1] != 'x')
		return false;
	for (int i = 0; i < LEDGER_HASH_BYTES; i++) {
		unsigned v = 0;
		for (int k = 0; k < 2; k++) {
			char c = s[2 + 2 * i + k];
			if (c >= '0' && c <= '9')
				v = v * 16 + (unsigned)(c - '0');
			else if (c >= 'a' && c <= 'f')
				v = v * 16 + (unsigned)(c - 'a' + 10);
			else
				return false;
		}
		out[i] = (uint8_t)v;
	}
	return true;
}

const char *ledger_code_name(uint8_t code)
{
	static const char *const names[] = {
		[LEDGER_DEPOSIT] = "deposit",
		[LEDGER_WITHDRAWAL] = "withdrawal",
		[LEDGER_TRADE] = "trade",
		[LEDGER_FEE] = "fee",
		[LEDGER_ESCROW_RELEASE] = "escrow_release",
		[LEDGER_REFUND] = "refund",
	};
	return code >= 1 && code <= LEDGER_REFUND ? names[code] : NULL;
}

const char *ledger_status_name(int status)
{
	static const char *const names[] = {
		[LEDGER_OK] = "ok",
		[LEDGER_ERR_ARGS] = "invalid argument",
		[LEDGER_ERR_NOMEM] = "out of memory",
		[LEDGER_ERR_OVERFLOW] = "amount overflow",
		[LEDGER_ERR_UNAVAILABLE] = "database unavailable",
		[LEDGER_ERR_REFUSED] = "refused by the database",
		[LEDGER_ERR_DUPLICATE] = "batch already in the ledger",
		[LEDGER_ERR_CONFLICT] = "a different batch has this id",
		[LEDGER_ERR_NOT_FOUND] = "not found",
		[LEDGER_ERR_MIGRATION] = "migration failed",
		[LEDGER_ERR_SCHEMA] = "ledger schema missing (run gridex-admin migrate)",
	};
	return status >= 0 && status <= LEDGER_ERR_SCHEMA ? names[status] : "unknown status";
}
