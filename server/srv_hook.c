/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE /* posix_spawn_file_actions_addclosefrom_np (glibc 2.34) */
#include "srv_hook.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void srv_hook_limits_default(struct srv_hook_limits *l)
{
	*l = (struct srv_hook_limits){.timeout_ms = 30000,
				      .kill_grace_ms = 2000,
				      .stdout_bytes_max = 65536,
				      .stderr_bytes_max = 16384};
}

const char *srv_hook_outcome_name(int outcome)
{
	static const char *const names[] = {
		[SRV_HOOK_OK] = "ok",
		[SRV_HOOK_FAILED] = "failed",
		[SRV_HOOK_TIMEOUT] = "timeout",
		[SRV_HOOK_CRASHED] = "crashed",
		[SRV_HOOK_BAD_OUTPUT] = "bad_output",
		[SRV_HOOK_SPAWN] = "spawn",
	};
	return outcome >= 0 && outcome <= SRV_HOOK_SPAWN ? names[outcome] : "unknown";
}

bool srv_hook_code_is_final(const char *code)
{
	return strcmp(code, "not_enough_devices") == 0 || strcmp(code, "device_unhealthy") == 0 ||
	       strcmp(code, "workload_failed") == 0;
}

void srv_hook_result_free(struct srv_hook_result *r)
{
	json_decref(r->json);
	free(r->log);
	r->json = NULL;
	r->log = NULL;
}

static int outcome(struct srv_hook_result *r, int o, bool retryable, const char *code,
		   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int outcome(struct srv_hook_result *r, int o, bool retryable, const char *code,
		   const char *fmt, ...)
{
	r->outcome = o;
	r->retryable = retryable;
	snprintf(r->code, sizeof(r->code), "%s", code);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->message, sizeof(r->message), fmt, ap);
	va_end(ap);
	return o;
}

/* A code: 1 .. 31 bytes of [a-z0-9_]. */
static bool code_ok(const char *s)
{
	size_t n = strlen(s);
	return n >= 1 && n < SRV_HOOK_CODE_BYTES &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

int srv_hook_parse_result(const char *data, size_t len, bool exited_ok, struct srv_hook_result *r)
{
	json_decref(r->json);
	r->json = NULL;
	json_error_t err;
	json_t *j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &err);
	if (j == NULL)
		return outcome(r, SRV_HOOK_BAD_OUTPUT, true, "bad_output",
			       "stdout is not one JSON value: %s (byte %d)", err.text,
			       err.position);
	json_t *version = json_object_get(j, "version"), *ok = json_object_get(j, "ok");
	if (!json_is_object(j) || !json_is_integer(version) ||
	    json_integer_value(version) != SRV_HOOK_VERSION || !json_is_boolean(ok)) {
		json_decref(j);
		return outcome(r, SRV_HOOK_BAD_OUTPUT, true, "bad_output",
			       "the result must be an object with \"version\": %d and \"ok\"",
			       SRV_HOOK_VERSION);
	}
	if (json_is_true(ok)) {
		if (!exited_ok) {
			json_decref(j);
			return outcome(r, SRV_HOOK_BAD_OUTPUT, true, "bad_output",
				       "\"ok\": true with a non-zero exit status");
		}
		r->json = j;
		return outcome(r, SRV_HOOK_OK, false, "", "ok");
	}
	json_t *e = json_object_get(j, "error");
	json_t *code = json_object_get(e, "code"), *msg = json_object_get(e, "message"),
	       *retry = json_object_get(e, "retryable");
	if (!json_is_object(e) || !json_is_string(code) || !code_ok(json_string_value(code)) ||
	    !json_is_string(msg) || !json_is_boolean(retry)) {
		json_decref(j);
		return outcome(r, SRV_HOOK_BAD_OUTPUT, true, "bad_output",
			       "\"ok\": false needs \"error\": {\"code\": [a-z0-9_]{1,31}, "
			       "\"message\": string, \"retryable\": bool}");
	}
	if (exited_ok) {
		json_decref(j);
		return outcome(r, SRV_HOOK_BAD_OUTPUT, true, "bad_output",
			       "\"ok\": false with exit status 0");
	}
	r->json = j;
	/* The codes of failed delivery are final whatever the hook says. */
	bool final = srv_hook_code_is_final(json_string_value(code));
	return outcome(r, SRV_HOOK_FAILED, json_is_true(retry) && !final, json_string_value(code),
		       "%s", json_string_value(msg));
}

/* ---------- running ---------- */

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Waits for pid until deadline (-1: not at all); true once reaped. */
static bool reap(pid_t pid, int *status, int64_t deadline)
{
	for (;;) {
		pid_t got = waitpid(pid, status, WNOHANG);
		if (got == pid || (got < 0 && errno != EINTR))
			return true;
		if (deadline < 0 || mono_ms() >= deadline)
			return false;
		struct timespec pause = {.tv_nsec = 2000000};
		nanosleep(&pause, NULL);
	}
}

/* SIGTERM to the hook's process group, SIGKILL after the grace period. */
static void kill_group(pid_t pid, int *status, int64_t grace_ms)
{
	kill(-pid, SIGTERM);
	if (!reap(pid, status, mono_ms() + grace_ms)) {
		kill(-pid, SIGKILL);
		reap(pid, status, mono_ms() + 60000);
	}
	kill(-pid, SIGKILL); /* what the hook left behind in its group */
}

static pid_t spawn(const char *path, const char *op, int in, int out, int err, int *error)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	posix_spawn_file_actions_adddup2(&fa, in, 0);
	posix_spawn_file_actions_adddup2(&fa, out, 1);
	posix_spawn_file_actions_adddup2(&fa, err, 2);
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setpgroup(&at, 0);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
					      POSIX_SPAWN_SETSIGDEF);
	char version[32];
	snprintf(version, sizeof(version), "GRIDEX_HOOK_VERSION=%d", SRV_HOOK_VERSION);
	char *const argv[] = {(char *)path, (char *)op, NULL};
	char *const envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			      "LANG=C.UTF-8", version, NULL};
	pid_t pid = -1;
	*error = posix_spawn(&pid, path, &fa, &at, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	return *error == 0 ? pid : -1;
}

int srv_hook_call(const char *path, const char *op, const json_t *request,
		  const struct srv_hook_limits *lim, struct srv_hook_result *r)
{
	char *req = json_dumps(request, JSON_COMPACT);
	if (req == NULL) {
		*r = (struct srv_hook_result){.exit_status = -1};
		outcome(r, SRV_HOOK_SPAWN, true, "spawn",
			"cannot prepare the call: request not serializable");
		return r->outcome;
	}
	int out = srv_hook_call_text(path, op, req, strlen(req), lim, r);
	free(req);
	return out;
}

int srv_hook_call_text(const char *path, const char *op, const char *req, size_t req_len,
		       const struct srv_hook_limits *lim, struct srv_hook_result *r)
{
	*r = (struct srv_hook_result){.exit_status = -1};
	int64_t t0 = mono_ms();
	int p_in[2] = {-1, -1}, p_out[2] = {-1, -1}, p_err[2] = {-1, -1};
	char *res = NULL;
	if (pipe2(p_in, O_CLOEXEC) != 0 || pipe2(p_out, O_CLOEXEC) != 0 ||
	    pipe2(p_err, O_CLOEXEC) != 0) {
		outcome(r, SRV_HOOK_SPAWN, true, "spawn", "cannot prepare the call: %s",
			strerror(errno));
		goto out;
	}
	int error;
	pid_t pid = spawn(path, op, p_in[0], p_out[1], p_err[1], &error);
	close_fd(&p_in[0]);
	close_fd(&p_out[1]);
	close_fd(&p_err[1]);
	if (pid < 0) {
		outcome(r, SRV_HOOK_SPAWN, true, "spawn", "cannot run %s: %s", path,
			strerror(error));
		goto out;
	}
	for (int i = 0; i < 3; i++) {
		int fd = i == 0 ? p_in[1] : i == 1 ? p_out[0] : p_err[0];
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	}
	size_t req_off = 0, res_len = 0;
	res = malloc(lim->stdout_bytes_max + 1);
	r->log = malloc(lim->stderr_bytes_max + 1);
	int64_t deadline = t0 + lim->timeout_ms;
	bool too_big = false, timed_out = false;
	int status = 0;
	if (res == NULL || r->log == NULL) {
		kill_group(pid, &status, 0);
		outcome(r, SRV_HOOK_SPAWN, true, "spawn", "out of memory");
		goto out;
	}
	while (p_out[0] >= 0 || p_err[0] >= 0) {
		struct pollfd fds[3];
		nfds_t n = 0;
		if (p_in[1] >= 0)
			fds[n++] = (struct pollfd){.fd = p_in[1], .events = POLLOUT};
		if (p_out[0] >= 0)
			fds[n++] = (struct pollfd){.fd = p_out[0], .events = POLLIN};
		if (p_err[0] >= 0)
			fds[n++] = (struct pollfd){.fd = p_err[0], .events = POLLIN};
		int64_t left = deadline - mono_ms();
		if (left <= 0) {
			timed_out = true;
			break;
		}
		if (poll(fds, n, (int)(left < 1000 ? left : 1000)) < 0 && errno != EINTR)
			break;
		if (p_in[1] >= 0) {
			ssize_t w = write(p_in[1], req + req_off, req_len - req_off);
			if (w > 0)
				req_off += (size_t)w;
			if (req_off == req_len || (w < 0 && errno != EAGAIN && errno != EINTR))
				close_fd(&p_in[1]); /* all written, or the hook closed its stdin */
		}
		char buf[8192];
		if (p_out[0] >= 0) {
			ssize_t got = read(p_out[0], buf, sizeof(buf));
			if (got > 0 && res_len + (size_t)got > lim->stdout_bytes_max) {
				too_big = true;
				break;
			}
			if (got > 0) {
				memcpy(res + res_len, buf, (size_t)got);
				res_len += (size_t)got;
			} else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
				close_fd(&p_out[0]);
			}
		}
		if (p_err[0] >= 0) {
			ssize_t got = read(p_err[0], buf, sizeof(buf));
			if (got > 0) {
				size_t keep = lim->stderr_bytes_max - r->log_len;
				if (keep > (size_t)got)
					keep = (size_t)got;
				memcpy(r->log + r->log_len, buf, keep);
				r->log_len += keep;
				r->log_dropped += (size_t)got - keep;
			} else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
				close_fd(&p_err[0]);
			}
		}
	}
	if (timed_out || too_big || !reap(pid, &status, deadline)) {
		kill_group(pid, &status, lim->kill_grace_ms);
		if (too_big)
			outcome(r, SRV_HOOK_BAD_OUTPUT, true, "bad_output",
				"the result exceeds %zu bytes", lim->stdout_bytes_max);
		else
			outcome(r, SRV_HOOK_TIMEOUT, true, "timeout",
				"no result within %lld ms: killed", (long long)lim->timeout_ms);
		goto out;
	}
	if (WIFSIGNALED(status)) {
		r->signal = WTERMSIG(status);
		outcome(r, SRV_HOOK_CRASHED, true, "crashed", "killed by signal %d", r->signal);
		goto out;
	}
	r->exit_status = WEXITSTATUS(status);
	res[res_len] = '\0';
	srv_hook_parse_result(res, res_len, r->exit_status == 0, r);
	if (r->outcome == SRV_HOOK_BAD_OUTPUT && r->exit_status != 0)
		outcome(r, SRV_HOOK_CRASHED, true, "crashed", "exit status %d without a result",
			r->exit_status);
out:
	if (r->log) {
		r->log[r->log_len] = '\0';
		if (r->log_len == 0) {
			free(r->log);
			r->log = NULL;
		}
	}
	close_fd(&p_in[0]);
	close_fd(&p_in[1]);
	close_fd(&p_out[0]);
	close_fd(&p_out[1]);
	close_fd(&p_err[0]);
	close_fd(&p_err[1]);
	free(res);
	r->elapsed_ms = mono_ms() - t0;
	return r->outcome;
}
