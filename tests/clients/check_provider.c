/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gridex-provider, called through the hook runner exactly as gridexd calls a
 * hook, on a fixture inventory of four GPUs with a fake nvidia-smi and a
 * stand-in workload that records its environment: the workload sees exactly
 * the leased UUIDs, runs in the lease's process group and is stopped at the
 * window's end; a repeated start returns the running lease; stop is
 * idempotent; devices not on the host, unhealthy or leased to another lease
 * are refused with the contract's codes; a workload found on a device it
 * does not hold is stopped and reported; reconcile stops what should not
 * run and starts what should; the state survives the agent (a new process
 * each call), and calls sharing its directory take turns; with systemd
 * pinning, the transient unit allows the leased device nodes only.
 */
#define _DEFAULT_SOURCE /* mknod, S_IFCHR */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "srv_hook.h"
#include "tap.h"
#include "tfile.h"

static char dir[64], hook_path[128];
static struct srv_hook_limits lim;

static void write_file(const char *name, const char *text, mode_t mode)
{
	tfile_write(dir, name, text, mode);
}

static char *read_file(const char *name)
{
	return tfile_read(dir, name);
}

static void configure(const char *pinning)
{
	char text[2048];
	snprintf(text, sizeof(text),
		 "{\"state_dir\": \"%s/state\", \"inventory_file\": \"%s/inventory.json\",\n"
		 " \"nvidia_smi\": \"%s/nvidia-smi\", \"systemd_run\": \"%s/systemd-run\",\n"
		 " \"systemctl\": \"%s/systemctl\", \"pinning\": \"%s\", \"start_wait_ms\": 300}\n",
		 dir, dir, dir, dir, dir, pinning);
	write_file("config.json", text, 0644);
}

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	tfile_mkdtemp(dir, sizeof(dir), "gridex-provider");
	srv_hook_limits_default(&lim);
	lim.timeout_ms = 10000;
	write_file("inventory.json",
		   "[{\"uuid\": \"GPU-aaaa\", \"name\": \"H100\", \"node\": \"/dev/nvidia0\"},\n"
		   " {\"uuid\": \"GPU-bbbb\", \"name\": \"H100\", \"node\": \"/dev/nvidia1\"},\n"
		   " {\"uuid\": \"GPU-cccc\", \"name\": \"H100\", \"node\": \"/dev/nvidia2\"},\n"
		   " {\"uuid\": \"GPU-dddd\", \"name\": \"H100\", \"node\": \"/dev/nvidia3\", "
		   "\"healthy\": false}]\n",
		   0644);
	/* nvidia-smi: the compute apps are what the test writes into apps.csv. */
	char text[1024];
	snprintf(text, sizeof(text),
		 "#!/bin/sh\ncase \"$1\" in --query-compute-apps=*) cat %s/apps.csv 2>/dev/null;; "
		 "*) exit 1;; esac\n",
		 dir);
	write_file("nvidia-smi", text, 0755);
	/* systemd-run: records its arguments. */
	snprintf(text, sizeof(text),
		 "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done > %s/unit.args\n", dir);
	write_file("systemd-run", text, 0755);
	/* systemctl: records what it is asked; the unit is active until stopped. */
	snprintf(text, sizeof(text),
		 "#!/bin/sh\necho \"$*\" >> %s/systemctl.calls\n"
		 "case \"$1\" in is-active) [ ! -f %s/unit.stopped ];; stop) touch "
		 "%s/unit.stopped;; "
		 "esac\n",
		 dir, dir, dir);
	write_file("systemctl", text, 0755);
	/* The stand-in workload: its environment, its group, then it waits to be stopped. */
	snprintf(text, sizeof(text),
		 "#!/bin/sh\nenv | sort > %s/env.$GRIDEX_LEASE_ID\n"
		 "cut -d' ' -f5 /proc/$$/stat > %s/pgid.$GRIDEX_LEASE_ID\n"
		 "echo $$ > %s/pid.$GRIDEX_LEASE_ID\nexec sleep 60\n",
		 dir, dir, dir);
	write_file("workload", text, 0755);
	snprintf(text, sizeof(text), "#!/bin/sh\nexec %s --config=%s/config.json \"$@\"\n",
		 GRIDEX_TEST_PROVIDER, dir);
	write_file("hook", text, 0755);
	snprintf(hook_path, sizeof(hook_path), "%s/hook", dir);
	configure("process");
}

static void teardown(void)
{
	char cmd[256];
	/* Anything still running from a failed test: its group id is in pgid.* files. */
	snprintf(cmd, sizeof(cmd),
		 "for f in %s/pgid.*; do [ -f \"$f\" ] && kill -9 -- -\"$(cat $f)\" 2>/dev/null; "
		 "done; rm -rf %s",
		 dir, dir);
	(void)system(cmd);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static json_t *lease(const char *id, const char *d1, const char *d2, int64_t window_ms)
{
	char workload[128];
	snprintf(workload, sizeof(workload), "%s/workload", dir);
	json_t *devices = json_array();
	json_array_append_new(devices, json_string(d1));
	if (d2)
		json_array_append_new(devices, json_string(d2));
	return json_pack("{s:i, s:s, s:i, s:s, s:s, s:o, s:{s:I, s:I}, s:i, "
			 "s:{s:[s], s:{s:s}}}",
			 "version", 1, "lease_id", id, "attempt", 1, "vendor", "nvidia", "model",
			 "H100-80G", "devices", devices, "window", "start_ms", (json_int_t)now_ms(),
			 "end_ms", (json_int_t)(now_ms() + window_ms), "grace_ms", 300, "workload",
			 "command", workload, "env", "JOB", "train");
}

static int call(const char *op, json_t *req, struct srv_hook_result *r)
{
	int o = srv_hook_call(hook_path, op, req, &lim, r);
	json_decref(req);
	return o;
}

static const char *state_of(const struct srv_hook_result *r)
{
	return json_string_value(json_object_get(r->json, "state"));
}

/* Whether the process of pid.<lease> still runs (zombies do not). */
static bool running(const char *lease_id)
{
	char name[64];
	snprintf(name, sizeof(name), "pid.%s", lease_id);
	const char *pid = read_file(name);
	if (pid == NULL)
		return false;
	char path[64], stat[512] = "";
	snprintf(path, sizeof(path), "/proc/%d/stat", atoi(pid));
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	size_t n = fread(stat, 1, sizeof(stat) - 1, f);
	fclose(f);
	stat[n] = '\0';
	const char *p = strrchr(stat, ')');
	return p && p[2] != 'Z' && p[2] != 'X';
}

/* Waits until a file the workload writes has a whole line. */
static void wait_for(const char *name)
{
	const char *text = NULL;
	for (int i = 0; i < 300; i++) {
		text = read_file(name);
		if (text && strchr(text, '\n'))
			return;
		struct timespec pause = {.tv_nsec = 10000000};
		nanosleep(&pause, NULL);
	}
	ck_abort_msg("%s never written", name);
}

START_TEST(lease_runs_on_its_devices_until_the_window_ends)
{
	struct srv_hook_result r;
	ck_assert_int_eq(call("start", lease("L-1", "GPU-aaaa", "GPU-cccc", 2500), &r),
			 SRV_HOOK_OK);
	ck_assert_str_eq(state_of(&r), "running");
	srv_hook_result_free(&r);
	wait_for("pid.L-1"); /* written after its environment */
	/* Exactly the leased UUIDs, by UUID, and nothing of the agent's environment. */
	const char *env = read_file("env.L-1");
	ck_assert_msg(strstr(env, "CUDA_VISIBLE_DEVICES=GPU-aaaa,GPU-cccc\n") &&
			      strstr(env, "GRIDEX_LEASE_ID=L-1\n") && strstr(env, "JOB=train\n") &&
			      !strstr(env, "GRIDEX_HOOK_VERSION"),
		      "env: %s", env);
	ck_assert(running("L-1"));
	/* A repeated start returns the running lease; status says running. */
	ck_assert_int_eq(call("start", lease("L-1", "GPU-aaaa", "GPU-cccc", 2500), &r),
			 SRV_HOOK_OK);
	ck_assert_str_eq(state_of(&r), "running");
	srv_hook_result_free(&r);
	ck_assert_int_eq(
		call("status", json_pack("{s:i, s:s}", "version", 1, "lease_id", "L-1"), &r),
		SRV_HOOK_OK);
	ck_assert_str_eq(state_of(&r), "running");
	srv_hook_result_free(&r);
	/* Its devices are taken; the unhealthy one and one not here are refused. */
	ck_assert_int_eq(call("start", lease("L-2", "GPU-cccc", NULL, 2500), &r), SRV_HOOK_FAILED);
	ck_assert_str_eq(r.code, "not_enough_devices");
	ck_assert(!r.retryable);
	srv_hook_result_free(&r);
	ck_assert_int_eq(call("start", lease("L-3", "GPU-dddd", NULL, 2500), &r), SRV_HOOK_FAILED);
	ck_assert_str_eq(r.code, "device_unhealthy");
	srv_hook_result_free(&r);
	ck_assert_int_eq(call("start", lease("L-4", "GPU-zzzz", NULL, 2500), &r), SRV_HOOK_FAILED);
	ck_assert_str_eq(r.code, "not_enough_devices");
	srv_hook_result_free(&r);
	/* The window ends: the supervisor stops the workload without being asked. */
	for (int i = 0; i < 100 && running("L-1"); i++) {
		struct timespec pause = {.tv_nsec = 50000000};
		nanosleep(&pause, NULL);
	}
	ck_assert(!running("L-1"));
	const char *log = NULL; /* the supervisor's last line follows the workload's end */
	for (int i = 0; i < 100; i++) {
		log = read_file("state/L-1.log");
		if (log && strstr(log, "at the end of its window"))
			break;
		struct timespec pause = {.tv_nsec = 20000000};
		nanosleep(&pause, NULL);
	}
	ck_assert_msg(log && strstr(log, "at the end of its window") != NULL, "log: %s",
		      log ? log : "(none)");
	ck_assert_int_eq(
		call("status", json_pack("{s:i, s:s}", "version", 1, "lease_id", "L-1"), &r),
		SRV_HOOK_OK);
	ck_assert_str_eq(state_of(&r), "completed");
	srv_hook_result_free(&r);
	/* Stop is idempotent, for a finished and for an unknown lease. */
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(call("stop",
				      json_pack("{s:i, s:s}", "version", 1, "lease_id",
						i ? "L-unknown" : "L-1"),
				      &r),
				 SRV_HOOK_OK);
		ck_assert_str_eq(state_of(&r), "stopped");
		srv_hook_result_free(&r);
	}
}
END_TEST

START_TEST(workload_on_a_foreign_device_is_stopped)
{
	/* nvidia-smi will report the workload's process on a device it does not hold. */
	char text[512];
	snprintf(text, sizeof(text),
		 "#!/bin/sh\nenv > %s/env.L-9\necho $$ > %s/pid.L-9\n"
		 "echo \"$$, GPU-bbbb\" > %s/apps.csv\nexec sleep 60\n",
		 dir, dir, dir);
	write_file("workload", text, 0755);
	struct srv_hook_result r;
	ck_assert_int_eq(call("start", lease("L-9", "GPU-aaaa", NULL, 60000), &r), SRV_HOOK_FAILED);
	ck_assert_str_eq(r.code, "workload_failed");
	ck_assert_msg(strstr(r.message, "GPU-bbbb") != NULL, "%s", r.message);
	srv_hook_result_free(&r);
	ck_assert(!running("L-9"));
}
END_TEST

START_TEST(reconcile_and_stop)
{
	struct srv_hook_result r;
	ck_assert_int_eq(call("start", lease("L-5", "GPU-aaaa", NULL, 60000), &r), SRV_HOOK_OK);
	srv_hook_result_free(&r);
	wait_for("pid.L-5");
	/* Reconcile: L-5 should not run any more, L-6 should. */
	json_t *req = json_pack("{s:i, s:[o]}", "version", 1, "leases",
				lease("L-6", "GPU-bbbb", NULL, 60000));
	ck_assert_int_eq(call("reconcile", req, &r), SRV_HOOK_OK);
	ck_assert_int_eq(json_integer_value(json_object_get(r.json, "stopped")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(r.json, "started")), 1);
	srv_hook_result_free(&r);
	ck_assert(!running("L-5"));
	wait_for("pid.L-6");
	ck_assert(running("L-6"));
	ck_assert_int_eq(call("stop", json_pack("{s:i, s:s}", "version", 1, "lease_id", "L-6"), &r),
			 SRV_HOOK_OK);
	srv_hook_result_free(&r);
	ck_assert(!running("L-6"));
	/* A request the agent cannot use. */
	ck_assert_int_eq(call("start", json_pack("{s:i}", "version", 2), &r), SRV_HOOK_FAILED);
	ck_assert_str_eq(r.code, "bad_request");
	srv_hook_result_free(&r);
}
END_TEST

/* Calls that share a state directory run one after another: while another holds its
 * lock, a call waits (here past its timeout), and runs once the lock is free. */
START_TEST(calls_sharing_the_state_take_turns)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/state", dir);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/state/lock", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(flock(fd, LOCK_EX), 0);
	struct srv_hook_result r;
	lim.timeout_ms = 700;
	lim.kill_grace_ms = 100;
	ck_assert_int_eq(
		call("status", json_pack("{s:i, s:s}", "version", 1, "lease_id", "L-9"), &r),
		SRV_HOOK_TIMEOUT);
	srv_hook_result_free(&r);
	close(fd);
	ck_assert_int_eq(
		call("status", json_pack("{s:i, s:s}", "version", 1, "lease_id", "L-9"), &r),
		SRV_HOOK_OK);
	ck_assert_str_eq(state_of(&r), "unknown");
	srv_hook_result_free(&r);
}
END_TEST

START_TEST(systemd_unit_allows_the_leased_nodes_only)
{
	configure("systemd");
	struct srv_hook_result r;
	ck_assert_int_eq(call("start", lease("L-7", "GPU-bbbb", "GPU-cccc", 60000), &r),
			 SRV_HOOK_OK);
	srv_hook_result_free(&r);
	const char *args = read_file("unit.args");
	ck_assert_ptr_nonnull(args);
	ck_assert_msg(strstr(args, "--unit=gridex-lease-L-7\n") &&
			      strstr(args, "--property=DevicePolicy=closed\n") &&
			      strstr(args, "--property=DeviceAllow=/dev/nvidia1 rw\n") &&
			      strstr(args, "--property=DeviceAllow=/dev/nvidia2 rw\n") &&
			      !strstr(args, "/dev/nvidia0") && !strstr(args, "/dev/nvidia3") &&
			      strstr(args, "--property=RuntimeMaxSec=") &&
			      strstr(args, "--setenv=CUDA_VISIBLE_DEVICES=GPU-bbbb,GPU-cccc\n"),
		      "%s", args);
	/* Status and stop go through the unit. */
	ck_assert_int_eq(
		call("status", json_pack("{s:i, s:s}", "version", 1, "lease_id", "L-7"), &r),
		SRV_HOOK_OK);
	ck_assert_str_eq(state_of(&r), "running");
	srv_hook_result_free(&r);
	ck_assert_int_eq(call("stop", json_pack("{s:i, s:s}", "version", 1, "lease_id", "L-7"), &r),
			 SRV_HOOK_OK);
	srv_hook_result_free(&r);
	ck_assert_msg(strstr(read_file("systemctl.calls"), "stop gridex-lease-L-7.service\n") !=
			      NULL,
		      "%s", read_file("systemctl.calls"));
	ck_assert_int_eq(
		call("status", json_pack("{s:i, s:s}", "version", 1, "lease_id", "L-7"), &r),
		SRV_HOOK_OK);
	ck_assert_str_eq(state_of(&r), "unknown"); /* stopped and forgotten */
	srv_hook_result_free(&r);
}
END_TEST

/* Leases on a host without systemd ("pinning": "cgroup"): the workload runs in a device
 * cgroup that lets it open its leased node and no other. Two stand-in GPU nodes (character
 * devices of a local-use major with no driver): opening the leased one fails with ENXIO
 * (no such device, but allowed), the other with EPERM (the allow-list). Needs root, mknod
 * and a cgroup hierarchy the agent may write (v1 devices, or v2 with BPF): skipped with the
 * reason where the machine does not allow it. */
/* The cgroup v2 mount point, or "" (to test that hierarchy too where the machine has both). */
static void cgroup2_mount(char *out, size_t cap)
{
	out[0] = '\0';
	FILE *f = fopen("/proc/self/mounts", "r");
	char dev[256], mnt[256], type[64];
	while (f && fscanf(f, "%255s %255s %63s %*[^\n]", dev, mnt, type) == 3)
		if (strcmp(type, "cgroup2") == 0) {
			snprintf(out, cap, "%s", mnt);
			break;
		}
	if (f)
		fclose(f);
}

/* One lease in a device cgroup under cgroup_dir ("" lets the agent choose): true when it
 * ran and the allow-list held; false when the agent could not pin here (printed). */
static bool allow_list_holds(const char *cgroup_dir, const char *id)
{
	char text[2048];
	snprintf(text, sizeof(text),
		 "{\"state_dir\": \"%s/state\", \"inventory_file\": \"%s/inventory.json\",\n"
		 " \"nvidia_smi\": \"%s/nvidia-smi\", \"pinning\": \"cgroup\", \"cgroup_dir\": "
		 "\"%s\", \"start_wait_ms\": 300}\n",
		 dir, dir, dir, cgroup_dir);
	write_file("config.json", text, 0644);
	unlink(strcat(strcpy(text, dir), "/open1"));
	struct srv_hook_result r;
	int out = call("start", lease(id, "GPU-x0", NULL, 10000), &r);
	if (out == SRV_HOOK_FAILED && strcmp(r.code, "pinning_failed") == 0) {
		printf("# SKIP device_allow_list (%s): %s\n", cgroup_dir[0] ? cgroup_dir : "auto",
		       r.message);
		srv_hook_result_free(&r);
		return false;
	}
	ck_assert_msg(out == SRV_HOOK_OK, "%s: %s", r.code, r.message);
	srv_hook_result_free(&r);
	char name[64];
	snprintf(name, sizeof(name), "pid.%s", id);
	wait_for(name);
	const char *o1 = read_file("open1");
	ck_assert_msg(o1 && strstr(o1, "Operation not permitted"), "the other GPU: %s", o1);
	const char *o0 = read_file("open0");
	ck_assert_msg(o0 && !strstr(o0, "Operation not permitted") &&
			      strstr(o0, "No such device or address"),
		      "the leased GPU: %s", o0);
	ck_assert_int_eq(call("stop", json_pack("{s:i, s:s}", "version", 1, "lease_id", id), &r),
			 SRV_HOOK_OK);
	srv_hook_result_free(&r);
	ck_assert(!running(id));
	return true;
}

/* Leases on a host without systemd ("pinning": "cgroup"): the workload runs in a device
 * cgroup that lets it open its leased node and no other. Two stand-in GPU nodes (character
 * devices of a local-use major with no driver): opening the leased one fails with ENXIO
 * (no such device, but allowed), the other with EPERM (the allow-list). Needs root, mknod
 * and a cgroup hierarchy the agent may write (v1 devices, or v2 with BPF): skipped with the
 * reason where the machine does not allow it. Both hierarchies where there are two. */
START_TEST(device_allow_list)
{
	char path[256];
	if (geteuid() != 0) {
		printf("# SKIP device_allow_list: needs root (device nodes, cgroups)\n");
		return;
	}
	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/gpu%d", dir, i);
		if (mknod(path, S_IFCHR | 0666, makedev(240, (unsigned)i)) != 0) {
			printf("# SKIP device_allow_list: cannot make device nodes here: %s\n",
			       strerror(errno));
			return;
		}
	}
	char text[1024];
	snprintf(text, sizeof(text),
		 "[{\"uuid\": \"GPU-x0\", \"name\": \"H100\", \"node\": \"%s/gpu0\"},\n"
		 " {\"uuid\": \"GPU-x1\", \"name\": \"H100\", \"node\": \"%s/gpu1\"}]\n",
		 dir, dir);
	write_file("inventory.json", text, 0644);
	snprintf(text, sizeof(text),
		 "#!/bin/sh\n( exec 3< %s/gpu0 ) 2> %s/open0\n( exec 3< %s/gpu1 ) 2> %s/open1\n"
		 "echo $$ > %s/pid.$GRIDEX_LEASE_ID\nexec sleep 60\n",
		 dir, dir, dir, dir, dir);
	write_file("workload", text, 0755);
	bool any = allow_list_holds("", "L-9");
	char v2[256];
	cgroup2_mount(v2, sizeof(v2));
	if (v2[0] && strcmp(v2, "/sys/fs/cgroup") != 0) /* "" took it already when it is v2 */
		any |= allow_list_holds(v2, "L-10");
	if (!any)
		printf("# SKIP device_allow_list: no cgroup hierarchy could pin a workload here\n");
}
END_TEST

static Suite *provider_suite(void)
{
	Suite *s = suite_create("provider");
	TCase *tc = tcase_create("provider");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, lease_runs_on_its_devices_until_the_window_ends);
	tcase_add_test(tc, device_allow_list);
	tcase_add_test(tc, workload_on_a_foreign_device_is_stopped);
	tcase_add_test(tc, reconcile_and_stop);
	tcase_add_test(tc, calls_sharing_the_state_take_turns);
	tcase_add_test(tc, systemd_unit_allows_the_leased_nodes_only);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tap_run(provider_suite());
}
