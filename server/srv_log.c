/* SPDX-License-Identifier: Apache-2.0 */
#include "srv_log.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = 2;
static char log_path[512];
static enum srv_log_level log_min = SRV_LOG_INFO;

static int open_path(void)
{
	return open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

bool srv_log_open(const char *path, const char *level)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	for (int i = 0; i < 4; i++)
		if (level && strcmp(level, names[i]) == 0)
			log_min = (enum srv_log_level)i;
	if (path == NULL || path[0] == '\0')
		return true;
	snprintf(log_path, sizeof(log_path), "%s", path);
	int fd = open_path();
	if (fd < 0)
		return false;
	log_fd = fd;
	return true;
}

const char *srv_log_value(char *dst, size_t size, const char *src)
{
	size_t n = 0;
	for (; src && src[n] != '\0' && n + 1 < size; n++) {
		unsigned char c = (unsigned char)src[n];
		bool plain = c >= 0x20 && c != 0x7f && c != '"' && c != '\\';
		dst[n] = plain ? (char)c : '\'';
	}
	dst[n] = '\0';
	return dst;
}

bool srv_log_due(int64_t *last_ms, int64_t now)
{
	if (*last_ms != 0 && now - *last_ms < 10000)
		return false;
	*last_ms = now;
	return true;
}

bool srv_log_reopen(void)
{
	if (log_path[0] == '\0')
		return true;
	int fd = open_path();
	if (fd < 0)
		return false;
	pthread_mutex_lock(&log_lock);
	int old = log_fd;
	log_fd = fd;
	pthread_mutex_unlock(&log_lock);
	if (old > 2)
		close(old);
	return true;
}

void srv_log_close(void)
{
	if (log_fd > 2)
		close(log_fd);
	log_fd = 2;
}

void srv_log(enum srv_log_level level, const char *msg, const char *fmt, ...)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	if (level < log_min)
		return;
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line),
			 "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s msg=\"%s\"",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000000, names[level], msg);
	if (fmt && n > 0 && (size_t)n < sizeof(line) - 2) {
		line[n++] = ' ';
		va_list ap;
		va_start(ap, fmt);
		int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
		va_end(ap);
		for (char *c = line + n; m > 0 && *c != '\0'; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f)
				*c = '?';
		if (m > 0)
			n += m;
	}
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2; /* truncated: still one line */
	line[n++] = '\n';
	pthread_mutex_lock(&log_lock);
	ssize_t w = write(log_fd, line, (size_t)n);
	pthread_mutex_unlock(&log_lock);
	(void)w;
}
