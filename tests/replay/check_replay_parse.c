/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests of the gridex-replay line parser: every command of the grammar, its
 * optional fields, and malformed lines (which must give an error, never a
 * guess). The tool itself runs as a process in run-scenarios.sh.
 */
#include <string.h>

#include <check.h>

#include "replay_parse.h"
#include "tap.h"

static struct replay_cmd c;
static const char *err;

static int parse(const char *line)
{
	err = NULL;
	return replay_parse_line(line, strlen(line), &c, &err);
}

START_TEST(new_order_fields)
{
	ck_assert_int_eq(parse("N,42,alice,H100/2026-11-22T19,B,GTC,2500000,8"), 0);
	ck_assert_int_eq(c.kind, REPLAY_NEW);
	ck_assert_uint_eq(c.order_id, 42);
	ck_assert_str_eq(c.account, "alice");
	ck_assert_str_eq(c.product, "H100/2026-11-22T19");
	ck_assert_int_eq(c.side, MATCHING_BUY);
	ck_assert_int_eq(c.tif, MATCHING_GTC);
	ck_assert_int_eq(c.price, 2500000);
	ck_assert_int_eq(c.qty, 8);
	ck_assert_int_eq(c.stp, MATCHING_STP_DEFAULT);
	ck_assert_int_eq(parse("N,1,a,p,S,POST,1,1\r"), 0);
	ck_assert_int_eq(c.side, MATCHING_SELL);
	ck_assert_int_eq(c.tif, MATCHING_POST);
	ck_assert_int_eq(parse("N,1,a,p,S,IOC,1,1,stp=cancel-both"), 0);
	ck_assert_int_eq(c.stp, MATCHING_STP_CANCEL_BOTH);
	ck_assert_int_eq(parse("N,1,a,p,S,GTD,1,1,expire=5000,stp=allow"), 0);
	ck_assert_int_eq(c.tif, MATCHING_GTD);
	ck_assert_int_eq(c.expire_ms, 5000);
	ck_assert_int_eq(c.stp, MATCHING_STP_ALLOW);
	ck_assert_int_eq(parse("N,18446744073709551615,a,p,B,FOK,1,1"), 0);
	ck_assert_uint_eq(c.order_id, UINT64_MAX);
}
END_TEST

START_TEST(amounts_out_of_range_reach_the_engine)
{
	ck_assert_int_eq(parse("N,1,a,p,B,GTC,-5,0"), 0);
	ck_assert_int_eq(c.price, -5);
	ck_assert_int_eq(c.qty, 0);
	ck_assert_int_eq(parse("N,1,a,p,B,GTC,99999999999999999999999,1"), 0);
	ck_assert_int_eq(c.price, INT64_MAX);
	ck_assert_int_eq(parse("N,1,a,p,B,GTC,1,-99999999999999999999999"), 0);
	ck_assert_int_eq(c.qty, INT64_MIN);
	ck_assert_int_eq(parse("N,1,a,p,B,GTC,9223372036854775807,1"), 0);
	ck_assert_int_eq(c.price, INT64_MAX);
}
END_TEST

START_TEST(other_commands)
{
	ck_assert_int_eq(parse("C,7"), 0);
	ck_assert_int_eq(c.kind, REPLAY_CANCEL);
	ck_assert_uint_eq(c.order_id, 7);
	ck_assert_int_eq(parse("M,7,100,3"), 0);
	ck_assert_int_eq(c.kind, REPLAY_MODIFY);
	ck_assert_int_eq(c.price, 100);
	ck_assert_int_eq(c.qty, 3);
	ck_assert_int_eq(parse("T,1795374000000"), 0);
	ck_assert_int_eq(c.kind, REPLAY_TIME);
	ck_assert_int_eq(c.time_ms, 1795374000000LL);
	ck_assert_int_eq(parse("K,100,bob,H100/2026-11-22T14,4,B,3000000,8,stp=cancel-oldest"), 0);
	ck_assert_int_eq(c.kind, REPLAY_BASKET);
	ck_assert_uint_eq(c.hours, 4);
	ck_assert_int_eq(c.tif, MATCHING_FOK);
	ck_assert_int_eq(c.stp, MATCHING_STP_CANCEL_OLDEST);
	ck_assert_int_eq(parse("P,H100/2026-11-22T14,1000,tick=5"), 0);
	ck_assert_int_eq(c.kind, REPLAY_PRODUCT);
	ck_assert_int_eq(c.gate_ms, 1000);
	ck_assert_int_eq(c.tick, 5);
	ck_assert_int_eq(parse("P,A100,never"), 0);
	ck_assert_int_eq(c.gate_ms, MATCHING_NO_GATE);
	ck_assert_int_eq(c.tick, 1);
	ck_assert_int_eq(parse(""), 0);
	ck_assert_int_eq(c.kind, REPLAY_SKIP);
	ck_assert_int_eq(parse("# a comment, with commas"), 0);
	ck_assert_int_eq(c.kind, REPLAY_SKIP);
}
END_TEST

START_TEST(malformed_lines_are_errors)
{
	static const char *const bad[] = {
		"X,1",
		"NN,1,a,p,B,GTC,1,1",
		"N,1,a,p,B,GTC,1",
		"N,-1,a,p,B,GTC,1,1",
		"N,18446744073709551616,a,p,B,GTC,1,1",
		"N,1,,p,B,GTC,1,1",
		"N,1,a,,B,GTC,1,1",
		"N,1,a b,p,B,GTC,1,1",
		"N,1,abcdefghijklmnopqrstuvwxyz0123456,p,B,GTC,1,1",
		"N,1,a,p,X,GTC,1,1",
		"N,1,a,p,B,DAY,1,1",
		"N,1,a,p,B,gtc,1,1",
		"N,1,a,p,B,GTC,1.5,1",
		"N,1,a,p,B,GTC,,1",
		"N,1,a,p,B,GTC,-,1",
		"N,1,a,p,B,GTD,1,1",
		"N,1,a,p,B,GTC,1,1,expire=5",
		"N,1,a,p,B,GTD,1,1,expire=5,expire=6",
		"N,1,a,p,B,GTC,1,1,stp=never",
		"N,1,a,p,B,GTC,1,1,color=red",
		"C",
		"C,1,2",
		"C,x",
		"M,1,2",
		"T,-1",
		"T,",
		"T,1,2",
		"K,1,a,H100/2026-11-22T14,0,B,1,1",
		"K,1,a,H100/2026-11-22T14,49,B,1,1",
		"K,18446744073709551615,a,H100/2026-11-22T14,2,B,1,1",
		"K,1,a,H100/2026-11-22T14,2,B,1,1,expire=5",
		"P,A100",
		"P,A100,soon",
		"P,A100,5,tick=0",
		"P,A100,5,step=2",
		"N,1,a,p,B,GTC,1,1,stp=allow,stp=allow,stp=allow,stp=allow,x",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(parse(bad[i]) == -1, "accepted: %s", bad[i]);
		ck_assert_ptr_nonnull(err);
	}
	char nul[] = "N,1,a\0b,p,B,GTC,1,1";
	ck_assert_int_eq(replay_parse_line(nul, sizeof(nul) - 1, &c, &err), -1);
	char longline[REPLAY_LINE_MAX + 10];
	memset(longline, '1', sizeof(longline));
	memcpy(longline, "C,", 2);
	ck_assert_int_eq(replay_parse_line(longline, sizeof(longline), &c, &err), -1);
}
END_TEST

static Suite *replay_parse_suite(void)
{
	Suite *s = suite_create("replay-parse");
	TCase *tc = tcase_create("grammar");
	tcase_add_test(tc, new_order_fields);
	tcase_add_test(tc, amounts_out_of_range_reach_the_engine);
	tcase_add_test(tc, other_commands);
	tcase_add_test(tc, malformed_lines_are_errors);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tap_run(replay_parse_suite());
}
