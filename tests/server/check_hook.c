/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The provisioning hook runner against real processes (shell scripts written
 * for each test): the request arrives on stdin and the argument names the
 * operation; the environment is clean and the hook leads its own process
 * group; results and every error code come back as the contract says;
 * hooks that hang (even ignoring SIGTERM, even with a child holding stdout),
 * crash, print garbage, print too much, flood stderr, exit without reading
 * their request or do not exist all end in a clear outcome within the
 * timeout plus the grace period, and nothing they started survives.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "srv_hook.h"
#include "tap.h"
#include "tfile.h"

static char dir[64];
static struct srv_hook_limits lim;

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN); /* as gridexd does */
	tfile_mkdtemp(dir, sizeof(dir), "gridex-hook");
	srv_hook_limits_default(&lim);
	lim.timeout_ms = 2000;
	lim.kill_grace_ms = 300;
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* Writes an executable /bin/sh script and returns its path. */
static const char *hook(const char *name, const char *body)
{
	static char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "#!/bin/sh\n%s\n", body);
	fclose(f);
	ck_assert_int_eq(chmod(path, 0755), 0);
	return path;
}

static json_t *request(void)
{
	return json_pack("{s:i, s:s, s:i, s:[s, s], s:{s:I, s:I}}", "version", 1, "lease_id",
			 "L-42", "attempt", 1, "devices", "GPU-aaaa", "GPU-bbbb", "window",
			 "start_ms", (json_int_t)1795366800000, "end_ms",
			 (json_int_t)1795370400000);
}

static int call(const char *path, const char *op, struct srv_hook_result *r)
{
	json_t *req = request();
	int rc = srv_hook_call(path, op, req, &lim, r);
	json_decref(req);
	return rc;
}

static char *slurp(const char *name)
{
	static char buf[8192];
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

START_TEST(request_environment_and_result)
{
	char body[1024];
	snprintf(body, sizeof(body),
		 "cat > %s/request.json\n"
		 "echo \"$1\" > %s/op\n"
		 "env | sort > %s/env\n"
		 "cut -d' ' -f5 /proc/$$/stat > %s/pgid\n"
		 "echo $$ > %s/pid\n"
		 "echo 'starting the workload' >&2\n"
		 "printf '{\"version\": 1, \"ok\": true, \"lease_id\": \"L-42\", \"state\": "
		 "\"running\"}\\n'",
		 dir, dir, dir, dir, dir);
	struct srv_hook_result r;
	ck_assert_int_eq(call(hook("ok", body), "start", &r), SRV_HOOK_OK);
	ck_assert_int_eq(r.exit_status, 0);
	ck_assert_str_eq(json_string_value(json_object_get(r.json, "state")), "running");
	ck_assert_str_eq(r.log, "starting the workload\n");
	srv_hook_result_free(&r);
	/* The request arrived whole, as JSON. */
	json_error_t err;
	json_t *got = json_loads(slurp("request.json"), 0, &err);
	ck_assert_ptr_nonnull(got);
	ck_assert_str_eq(json_string_value(json_object_get(got, "lease_id")), "L-42");
	ck_assert_int_eq(json_array_size(json_object_get(got, "devices")), 2);
	json_decref(got);
	ck_assert_str_eq(slurp("op"), "start\n");
	/* Nothing of ours leaks into its environment. */
	const char *env = slurp("env");
	ck_assert_msg(strstr(env, "GRIDEX_HOOK_VERSION=1\n") && strstr(env, "LANG=C.UTF-8\n") &&
			      strstr(env, "PATH=/usr/local/sbin:") && !strstr(env, "HOME=") &&
			      !strstr(env, "GRIDEX_TEST_DATABASE_URL"),
		      "%s", env);
	/* Its own process group. */
	char pid[32];
	snprintf(pid, sizeof(pid), "%.31s", slurp("pid"));
	ck_assert_str_eq(slurp("pgid"), pid);
}
END_TEST

START_TEST(error_codes)
{
	static const char *const codes[] = {"not_enough_devices", "device_unhealthy",
					    "workload_failed", "busy"};
	for (int i = 0; i < 4; i++) {
		char body[512];
		snprintf(body, sizeof(body),
			 "cat >/dev/null\n"
			 "printf '{\"version\":1,\"ok\":false,\"error\":{\"code\":\"%s\","
			 "\"message\":\"no luck\",\"retryable\":true}}'\nexit 3",
			 codes[i]);
		struct srv_hook_result r;
		ck_assert_int_eq(call(hook("err", body), "start", &r), SRV_HOOK_FAILED);
		ck_assert_str_eq(r.code, codes[i]);
		ck_assert_str_eq(r.message, "no luck");
		ck_assert_int_eq(r.exit_status, 3);
		/* The codes of failed delivery are final even if the hook says retry. */
		ck_assert(r.retryable == (i == 3));
		ck_assert(srv_hook_code_is_final(codes[i]) == (i < 3));
		srv_hook_result_free(&r);
	}
}
END_TEST

START_TEST(bad_hooks)
{
	struct srv_hook_result r;
	/* Garbage, a result that does not follow the contract, or disagrees with the exit. */
	static const char *const bad[] = {
		"echo not json",
		"echo '{\"version\": 1, \"ok\": true} trailing'",
		"echo '[1, 2]'",
		"echo '{\"version\": 2, \"ok\": true}'",
		"echo '{\"version\": 1, \"ok\": \"yes\"}'",
		"echo '{\"version\": 1, \"ok\": false, \"error\": {\"code\": \"Bad Code\", "
		"\"message\": \"x\", \"retryable\": false}}'; exit 1",
		"echo '{\"version\": 1, \"ok\": false}'; exit 1",
		"echo '{\"version\": 1, \"ok\": false, \"error\": {\"code\": \"busy\", "
		"\"message\": \"x\", \"retryable\": true}}'",
		"echo '{\"version\": 1, \"ok\": true, \"ok\": true}'",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int o = call(hook("bad", bad[i]), "status", &r);
		ck_assert_msg(o == SRV_HOOK_BAD_OUTPUT || o == SRV_HOOK_CRASHED, "%s: %s", bad[i],
			      srv_hook_outcome_name(o));
		ck_assert(r.retryable);
		ck_assert_ptr_null(r.json);
		srv_hook_result_free(&r);
	}
	/* A crash. */
	ck_assert_int_eq(call(hook("segv", "kill -SEGV $$"), "start", &r), SRV_HOOK_CRASHED);
	ck_assert_int_eq(r.signal, SIGSEGV);
	srv_hook_result_free(&r);
	/* A non-zero exit with nothing on stdout. */
	ck_assert_int_eq(call(hook("exit", "exit 7"), "start", &r), SRV_HOOK_CRASHED);
	ck_assert_int_eq(r.exit_status, 7);
	srv_hook_result_free(&r);
	/* Too much on stdout: refused and killed at once. */
	ck_assert_int_eq(call(hook("big", "yes '{}' | head -c 10000000"), "start", &r),
			 SRV_HOOK_BAD_OUTPUT);
	ck_assert_int_lt(r.elapsed_ms, 1500);
	srv_hook_result_free(&r);
	/* A flood on stderr is capped; the result still counts. */
	ck_assert_int_eq(call(hook("noisy", "head -c 5000000 /dev/zero | tr '\\0' x >&2\n"
					    "echo '{\"version\": 1, \"ok\": true}'"),
			      "start", &r),
			 SRV_HOOK_OK);
	ck_assert_uint_eq(r.log_len, lim.stderr_bytes_max);
	ck_assert_uint_eq(r.log_len + r.log_dropped, 5000000);
	srv_hook_result_free(&r);
	/* Exits without reading a large request: fine. */
	lim.stdout_bytes_max = 1 << 20;
	json_t *req = json_pack("{s:s}", "pad", "");
	char *pad = malloc(1 << 20);
	memset(pad, 'p', (1 << 20) - 1);
	pad[(1 << 20) - 1] = '\0';
	json_object_set_new(req, "pad", json_string(pad));
	free(pad);
	ck_assert_int_eq(srv_hook_call(hook("deaf", "echo '{\"version\": 1, \"ok\": true}'"),
				       "stop", req, &lim, &r),
			 SRV_HOOK_OK);
	json_decref(req);
	srv_hook_result_free(&r);
	/* Not there, not executable. */
	char path[128];
	snprintf(path, sizeof(path), "%s/missing", dir);
	ck_assert_int_eq(call(path, "start", &r), SRV_HOOK_SPAWN);
	ck_assert_msg(strstr(r.message, "No such file") != NULL, "%s", r.message);
	srv_hook_result_free(&r);
}
END_TEST

/* Whether the process still runs (a zombie waiting for its new parent does not). */
static bool alive(const char *pidfile)
{
	int pid = atoi(slurp(pidfile));
	char path[64], stat[256] = "";
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	size_t n = fread(stat, 1, sizeof(stat) - 1, f);
	fclose(f);
	stat[n] = '\0';
	const char *state = strrchr(stat, ')');
	return state != NULL && state[1] == ' ' && state[2] != 'Z' && state[2] != 'X';
}

START_TEST(hangs_are_killed_with_their_group)
{
	struct srv_hook_result r;
	/* Sleeps: SIGTERM at the timeout. */
	ck_assert_int_eq(call(hook("sleepy", "sleep 60"), "start", &r), SRV_HOOK_TIMEOUT);
	ck_assert_int_ge(r.elapsed_ms, lim.timeout_ms);
	ck_assert_int_lt(r.elapsed_ms, lim.timeout_ms + lim.kill_grace_ms + 1000);
	ck_assert(r.retryable);
	srv_hook_result_free(&r);
	/* Ignores SIGTERM: SIGKILL after the grace period. */
	char body[512];
	snprintf(body, sizeof(body),
		 "trap '' TERM\necho $$ > %s/stubborn.pid\nwhile :; do sleep 1; done", dir);
	ck_assert_int_eq(call(hook("stubborn", body), "start", &r), SRV_HOOK_TIMEOUT);
	ck_assert_int_lt(r.elapsed_ms, lim.timeout_ms + lim.kill_grace_ms + 1500);
	ck_assert(!alive("stubborn.pid"));
	srv_hook_result_free(&r);
	/* Exits at once but leaves a child holding stdout: the child is killed too. */
	snprintf(body, sizeof(body),
		 "sleep 60 &\necho $! > %s/child.pid\necho '{\"version\": 1, \"ok\": true}'", dir);
	ck_assert_int_eq(call(hook("orphan", body), "start", &r), SRV_HOOK_TIMEOUT);
	struct timespec pause = {.tv_nsec = 100000000};
	nanosleep(&pause, NULL);
	ck_assert(!alive("child.pid"));
	srv_hook_result_free(&r);
}
END_TEST

START_TEST(parser_alone)
{
	struct srv_hook_result r = {0};
	const char ok[] = "{\"version\":1,\"ok\":true,\"state\":\"stopped\"}";
	ck_assert_int_eq(srv_hook_parse_result(ok, sizeof(ok) - 1, true, &r), SRV_HOOK_OK);
	ck_assert_int_eq(srv_hook_parse_result(ok, sizeof(ok) - 1, false, &r), SRV_HOOK_BAD_OUTPUT);
	ck_assert_ptr_null(r.json);
	ck_assert_int_eq(srv_hook_parse_result("", 0, true, &r), SRV_HOOK_BAD_OUTPUT);
	const char nul[] = "{\"version\":1,\"ok\":true}\0junk";
	ck_assert_int_eq(srv_hook_parse_result(nul, sizeof(nul) - 1, true, &r),
			 SRV_HOOK_BAD_OUTPUT);
	srv_hook_result_free(&r);
}
END_TEST

static Suite *hook_suite(void)
{
	Suite *s = suite_create("server-hook");
	TCase *tc = tcase_create("hook");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, request_environment_and_result);
	tcase_add_test(tc, error_codes);
	tcase_add_test(tc, bad_hooks);
	tcase_add_test(tc, hangs_are_killed_with_their_group);
	tcase_add_test(tc, parser_alone);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tap_run(hook_suite());
}
