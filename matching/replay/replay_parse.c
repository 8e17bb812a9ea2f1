/* SPDX-License-Identifier: Apache-2.0 */
#include "replay_parse.h"

#include <stdbool.h>
#include <string.h>

#define FIELDS_MAX 12

struct field {
	const char *p;
	size_t n;
};

static bool is_field(const struct field *f, const char *lit)
{
	size_t n = strlen(lit);
	return f->n == n && memcmp(f->p, lit, n) == 0;
}

/* Unsigned decimal without sign, at most 20 digits, no overflow. */
static bool parse_u64(const struct field *f, uint64_t *out)
{
	if (f->n == 0 || f->n > 20)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < f->n; i++) {
		char c = f->p[i];
		if (c < '0' || c > '9')
			return false;
		if (__builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(c - '0'), &v))
			return false;
	}
	*out = v;
	return true;
}

/* Non-negative int64 time. */
static bool parse_time(const struct field *f, int64_t *out)
{
	uint64_t v;
	if (!parse_u64(f, &v) || v > INT64_MAX)
		return false;
	*out = (int64_t)v;
	return true;
}

/*
 * Optional '-' and up to 40 digits; values beyond int64 are clamped so that
 * the engine answers bad_price / bad_qty instead of the parser guessing.
 */
static bool parse_amount(const struct field *f, int64_t *out)
{
	size_t i = 0;
	bool neg = f->n > 0 && f->p[0] == '-';
	i += neg;
	if (f->n == i || f->n - i > 40)
		return false;
	uint64_t v = 0;
	bool big = false;
	for (; i < f->n; i++) {
		char c = f->p[i];
		if (c < '0' || c > '9')
			return false;
		if (!big && (__builtin_mul_overflow(v, 10, &v) ||
			     __builtin_add_overflow(v, (uint64_t)(c - '0'), &v) || v > INT64_MAX))
			big = true;
	}
	if (big)
		*out = neg ? INT64_MIN : INT64_MAX;
	else
		*out = neg ? -(int64_t)v : (int64_t)v;
	return true;
}

/* Printable ASCII without commas or spaces, 1..max bytes, copied NUL-terminated. */
static bool parse_token(const struct field *f, char *dst, size_t max)
{
	if (f->n == 0 || f->n > max)
		return false;
	for (size_t i = 0; i < f->n; i++) {
		unsigned char c = (unsigned char)f->p[i];
		if (c <= 0x20 || c >= 0x7f)
			return false;
	}
	memcpy(dst, f->p, f->n);
	dst[f->n] = '\0';
	return true;
}

static bool parse_side(const struct field *f, uint8_t *out)
{
	if (is_field(f, "B"))
		*out = MATCHING_BUY;
	else if (is_field(f, "S"))
		*out = MATCHING_SELL;
	else
		return false;
	return true;
}

static bool parse_tif(const struct field *f, uint8_t *out)
{
	static const struct {
		const char *name;
		uint8_t tif;
	} tifs[] = {{"GTC", MATCHING_GTC},
		    {"GTD", MATCHING_GTD},
		    {"IOC", MATCHING_IOC},
		    {"FOK", MATCHING_FOK},
		    {"POST", MATCHING_POST}};
	for (size_t i = 0; i < sizeof(tifs) / sizeof(tifs[0]); i++)
		if (is_field(f, tifs[i].name)) {
			*out = tifs[i].tif;
			return true;
		}
	return false;
}

static bool parse_stp(const struct field *f, uint8_t *out)
{
	static const struct {
		const char *name;
		uint8_t stp;
	} modes[] = {{"allow", MATCHING_STP_ALLOW},
		     {"cancel-newest", MATCHING_STP_CANCEL_NEWEST},
		     {"cancel-oldest", MATCHING_STP_CANCEL_OLDEST},
		     {"cancel-both", MATCHING_STP_CANCEL_BOTH}};
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (is_field(f, modes[i].name)) {
			*out = modes[i].stp;
			return true;
		}
	return false;
}

/* Splits "key=value" when the field starts with key and '='. */
static bool option_value(const struct field *f, const char *key, struct field *value)
{
	size_t k = strlen(key);
	if (f->n <= k || memcmp(f->p, key, k) != 0 || f->p[k] != '=')
		return false;
	value->p = f->p + k + 1;
	value->n = f->n - k - 1;
	return true;
}

/* Trailing options of N and K: expire=<ms> (N only) and stp=<mode>. */
static int parse_options(const struct field *f, size_t n, bool allow_expire, struct replay_cmd *out,
			 const char **err)
{
	bool have_expire = false, have_stp = false;
	for (size_t i = 0; i < n; i++) {
		struct field v;
		if (allow_expire && option_value(&f[i], "expire", &v)) {
			if (have_expire || !parse_time(&v, &out->expire_ms)) {
				*err = "expire= needs one time in milliseconds";
				return -1;
			}
			have_expire = true;
		} else if (option_value(&f[i], "stp", &v)) {
			if (have_stp || !parse_stp(&v, &out->stp)) {
				*err = "stp= needs one of allow, cancel-newest, cancel-oldest, "
				       "cancel-both";
				return -1;
			}
			have_stp = true;
		} else {
			*err = allow_expire ? "unknown option (expected expire=<ms> or stp=<mode>)"
					    : "unknown option (expected stp=<mode>)";
			return -1;
		}
	}
	if (out->kind == REPLAY_NEW && (out->tif == MATCHING_GTD) != have_expire) {
		*err = have_expire ? "expire= is only for GTD orders" : "GTD needs expire=<ms>";
		return -1;
	}
	return 0;
}

static int parse_new(const struct field *f, size_t n, struct replay_cmd *out, const char **err)
{
	if (n < 8) {
		*err = "N needs N,<order_id>,<account>,<product>,<B|S>,<tif>,<price>,<qty>";
		return -1;
	}
	if (!parse_u64(&f[1], &out->order_id)) {
		*err = "order id must be an unsigned 64-bit decimal";
		return -1;
	}
	if (!parse_token(&f[2], out->account, REPLAY_ACCOUNT_MAX)) {
		*err = "account must be 1-31 printable bytes without commas or spaces";
		return -1;
	}
	if (!parse_token(&f[3], out->product, MATCHING_PRODUCT_NAME_MAX)) {
		*err = "product must be 1-63 printable bytes without commas or spaces";
		return -1;
	}
	if (!parse_side(&f[4], &out->side)) {
		*err = "side must be B or S";
		return -1;
	}
	if (!parse_tif(&f[5], &out->tif)) {
		*err = "time in force must be GTC, GTD, IOC, FOK or POST";
		return -1;
	}
	if (!parse_amount(&f[6], &out->price) || !parse_amount(&f[7], &out->qty)) {
		*err = "price and quantity must be integers";
		return -1;
	}
	return parse_options(f + 8, n - 8, true, out, err);
}

static int parse_basket(const struct field *f, size_t n, struct replay_cmd *out, const char **err)
{
	uint64_t hours;
	if (n < 8) {
		*err = "K needs K,<first_order_id>,<account>,<class>/<YYYY-MM-DDTHH>,<hours>,<B|S>,"
		       "<price>,<qty>";
		return -1;
	}
	if (!parse_u64(&f[1], &out->order_id)) {
		*err = "order id must be an unsigned 64-bit decimal";
		return -1;
	}
	if (!parse_token(&f[2], out->account, REPLAY_ACCOUNT_MAX) ||
	    !parse_token(&f[3], out->product, MATCHING_PRODUCT_NAME_MAX)) {
		*err = "account (1-31 bytes) and product (1-63 bytes) must be printable tokens";
		return -1;
	}
	if (!parse_u64(&f[4], &hours) || hours < 1 || hours > MATCHING_BASKET_LEGS_MAX) {
		*err = "hours must be 1 to 48";
		return -1;
	}
	out->hours = (uint32_t)hours;
	if (out->order_id > UINT64_MAX - (hours - 1)) {
		*err = "leg order ids would pass 2^64-1";
		return -1;
	}
	if (!parse_side(&f[5], &out->side)) {
		*err = "side must be B or S";
		return -1;
	}
	if (!parse_amount(&f[6], &out->price) || !parse_amount(&f[7], &out->qty)) {
		*err = "price and quantity must be integers";
		return -1;
	}
	out->tif = MATCHING_FOK;
	return parse_options(f + 8, n - 8, false, out, err);
}

static int parse_product(const struct field *f, size_t n, struct replay_cmd *out, const char **err)
{
	if (n < 3 || n > 4) {
		*err = "P needs P,<product>,<gate_ms|never>[,tick=<micros>]";
		return -1;
	}
	if (!parse_token(&f[1], out->product, MATCHING_PRODUCT_NAME_MAX)) {
		*err = "product must be 1-63 printable bytes without commas or spaces";
		return -1;
	}
	if (is_field(&f[2], "never"))
		out->gate_ms = MATCHING_NO_GATE;
	else if (!parse_time(&f[2], &out->gate_ms)) {
		*err = "gate must be a time in milliseconds or never";
		return -1;
	}
	out->tick = 1;
	struct field v;
	if (n == 4 &&
	    (!option_value(&f[3], "tick", &v) || !parse_time(&v, &out->tick) || out->tick < 1)) {
		*err = "tick= needs a positive integer of micros";
		return -1;
	}
	return 0;
}

int replay_parse_line(const char *line, size_t len, struct replay_cmd *out, const char **err)
{
	memset(out, 0, sizeof(*out));
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len == 0 || line[0] == '#') {
		out->kind = REPLAY_SKIP;
		return 0;
	}
	if (len > REPLAY_LINE_MAX) {
		*err = "line longer than 1024 bytes";
		return -1;
	}
	struct field f[FIELDS_MAX];
	size_t n = 0;
	const char *p = line, *end = line + len;
	for (;;) {
		const char *c = memchr(p, ',', (size_t)(end - p));
		if (n == FIELDS_MAX) {
			*err = "too many fields";
			return -1;
		}
		f[n].p = p;
		f[n++].n = (size_t)((c ? c : end) - p);
		if (!c)
			break;
		p = c + 1;
	}
	if (f[0].n != 1) {
		*err = "unknown command (expected N, C, M, T, K or P)";
		return -1;
	}
	out->kind = (uint8_t)f[0].p[0];
	switch (out->kind) {
	case REPLAY_NEW:
		return parse_new(f, n, out, err);
	case REPLAY_BASKET:
		return parse_basket(f, n, out, err);
	case REPLAY_PRODUCT:
		return parse_product(f, n, out, err);
	case REPLAY_CANCEL:
		if (n != 2 || !parse_u64(&f[1], &out->order_id)) {
			*err = "C needs C,<order_id>";
			return -1;
		}
		return 0;
	case REPLAY_MODIFY:
		if (n != 4 || !parse_u64(&f[1], &out->order_id) ||
		    !parse_amount(&f[2], &out->price) || !parse_amount(&f[3], &out->qty)) {
			*err = "M needs M,<order_id>,<price>,<qty>";
			return -1;
		}
		return 0;
	case REPLAY_TIME:
		if (n != 2 || !parse_time(&f[1], &out->time_ms)) {
			*err = "T needs T,<time_ms> with a non-negative integer";
			return -1;
		}
		return 0;
	default:
		*err = "unknown command (expected N, C, M, T, K or P)";
		return -1;
	}
}
