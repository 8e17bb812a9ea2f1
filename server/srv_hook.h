/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The provisioning hook runner (docs/provisioning.md): runs the configured
 * executable as `HOOK start|stop|status|reconcile` with one JSON request on
 * stdin, reads one JSON result from stdout and a size-capped log from
 * stderr. The hook gets a clean environment (PATH, LANG and
 * GRIDEX_HOOK_VERSION only), its own process group, no descriptors but the
 * three pipes, and default signal dispositions; past the call's timeout the
 * whole group gets SIGTERM, then SIGKILL after the grace period.
 *
 * A call blocks its thread until the hook is done: it belongs on a thread of
 * its own, never the event loop or the core. The caller must ignore SIGPIPE
 * (gridexd does): a hook may exit without reading its request.
 */
#ifndef GRIDEX_SRV_HOOK_H
#define GRIDEX_SRV_HOOK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SRV_HOOK_VERSION    1
#define SRV_HOOK_CODE_BYTES 32

enum srv_hook_outcome {
	SRV_HOOK_OK = 0,     /* exit 0 and {"ok": true, ...} */
	SRV_HOOK_FAILED,     /* a well-formed error result: code, message, retryable */
	SRV_HOOK_TIMEOUT,    /* not done within timeout_ms: killed */
	SRV_HOOK_CRASHED,    /* killed by a signal, or a non-zero exit without an error result */
	SRV_HOOK_BAD_OUTPUT, /* stdout is not one result object of the contract, or too big */
	SRV_HOOK_SPAWN,	     /* the hook could not be started */
};

struct srv_hook_limits {
	int64_t timeout_ms;	 /* per call, from spawn to exit */
	int64_t kill_grace_ms;	 /* between SIGTERM and SIGKILL */
	size_t stdout_bytes_max; /* a larger result is refused (and the hook killed) */
	size_t stderr_bytes_max; /* the hook's log kept; the rest is counted, not kept */
};

struct srv_hook_result {
	int outcome; /* enum srv_hook_outcome */
	bool retryable;
	int exit_status;		/* when it exited; -1 otherwise */
	int signal;			/* when a signal ended it; 0 otherwise */
	char code[SRV_HOOK_CODE_BYTES]; /* FAILED: the hook's code; others: the runner's */
	char message[256];
	json_t *json; /* OK, FAILED: the result object (json_decref it); NULL otherwise */
	char *log;    /* stderr as kept (NUL-terminated, free it); NULL when empty */
	size_t log_len, log_dropped;
	int64_t elapsed_ms;
};

void srv_hook_limits_default(struct srv_hook_limits *l);

/*
 * Runs `path op` with request (serialized compactly) on stdin. op is start,
 * stop, status or reconcile. Always fills *out (free with
 * srv_hook_result_free); returns out->outcome.
 */
int srv_hook_call(const char *path, const char *op, const json_t *request,
		  const struct srv_hook_limits *limits, struct srv_hook_result *out);
/* The same with the request already serialized: req_len bytes of req. */
int srv_hook_call_text(const char *path, const char *op, const char *req, size_t req_len,
		       const struct srv_hook_limits *limits, struct srv_hook_result *out);
void srv_hook_result_free(struct srv_hook_result *r);

/*
 * Checks a hook's stdout against the contract: exactly one JSON object with
 * "version": 1 and "ok": true (exited_ok must hold), or "ok": false with
 * "error": {"code": token, "message": string, "retryable": bool} (exited_ok
 * must not). Fills outcome OK, FAILED or BAD_OUTPUT (with the reason in
 * message), code, message, retryable and json. Pure: for the runner and the
 * fuzzer.
 */
int srv_hook_parse_result(const char *data, size_t len, bool exited_ok,
			  struct srv_hook_result *out);

/* Error codes that end in failed delivery (and a refund): not worth retrying. */
bool srv_hook_code_is_final(const char *code);

const char *srv_hook_outcome_name(int outcome);

#endif
