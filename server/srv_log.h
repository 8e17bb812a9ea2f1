/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gridexd's log: one logfmt line per event (ts=... level=... msg="..."
 * key=value ...), written with a single write(2) so lines from different
 * threads never interleave. srv_log_reopen() is what SIGHUP does, for
 * logrotate. The server logs at its boundaries; the libraries never do.
 */
#ifndef GRIDEX_SRV_LOG_H
#define GRIDEX_SRV_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum srv_log_level { SRV_LOG_DEBUG, SRV_LOG_INFO, SRV_LOG_WARN, SRV_LOG_ERROR };

/* Opens path for appending (NULL or "": stderr). Returns false with errno set. */
bool srv_log_open(const char *path, const char *level);
bool srv_log_reopen(void);
void srv_log_close(void);

/* msg is quoted; fmt adds key=value pairs after it (may be NULL). Control characters in
 * what fmt makes become '?': a line is one line whatever its values hold. */
void srv_log(enum srv_log_level level, const char *msg, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Text from outside gridexd (a hook's answer, a library's message) as a quoted value:
 * src into dst (size bytes, cut to fit) with quotes, backslashes and control
 * characters replaced by '\''. Returns dst. */
const char *srv_log_value(char *dst, size_t size, const char *src);

/* Whether a warning that repeats is due at now (monotonic ms): it is logged the first
 * time and then at most once per 10 s. When due, *last_ms (0 at first) becomes now. */
bool srv_log_due(int64_t *last_ms, int64_t now);

#endif
