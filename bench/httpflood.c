/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A flood of requests at gridexd's HTTP API, to run beside bench/loadgen
 * (bench/run-e2e does, with GRIDEX_E2E_HTTP_FLOOD): what the API's answers
 * cost the order path. Each connection is a thread with a keep-alive HTTP/1.1
 * connection from an address of its own (127.0.0.2, 127.0.0.3, ...: Linux
 * answers for all of 127/8), asking for one path over and over, at a fixed
 * total rate (open loop: each request has a planned time, and one that is late
 * goes at once) or as fast as answers come (--rate=0). Prints the answers by
 * status, their rate, and the time from each request's planned send to its
 * answer (p50, p99, max). Usage:
 *   httpflood --port=P [--connections=N] [--rate=R] [--seconds=S] [--path=PATH]
 * N connections (default 8), R requests a second in all (default 400; 0: closed
 * loop), S seconds (default 10; SIGTERM or SIGINT ends it sooner, with the figures),
 * PATH (default /api/v1/products).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

#define SAMPLES_MAX 1000000 /* per connection */

static struct {
	int port, connections, seconds;
	double rate;
	const char *path;
} opt = {.connections = 8, .seconds = 10, .rate = 400, .path = "/api/v1/products"};

struct flood {
	pthread_t thread;
	int index;
	uint64_t ok, limited, other, failed; /* 200, 429, other statuses, connection errors */
	int64_t *lat_us;
	size_t n_lat;
};

static int64_t start_ns, end_ns;
static volatile sig_atomic_t stopping;

static void on_stop(int sig)
{
	(void)sig;
	stopping = 1;
}

static void die(const char *what)
{
	fprintf(stderr, "httpflood: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* A connection to 127.0.0.1:port from 127.0.0.<2 + index>; -1 when it fails. */
static int connect_from(int index)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1 + (uint32_t)index);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		goto fail;
	a.sin_port = htons((uint16_t)opt.port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

/* Reads one answer on fd (headers, then Content-Length bytes of body): its status, or -1
 * when the connection ended or the answer does not parse. buf keeps what was read past
 * it (*have bytes). */
static int read_answer(int fd, char *buf, size_t cap, size_t *have)
{
	char *end;
	for (;;) {
		buf[*have] = '\0';
		if ((end = strstr(buf, "\r\n\r\n")) != NULL)
			break;
		if (*have == cap - 1)
			return -1;
		ssize_t n = read(fd, buf + *have, cap - 1 - *have);
		if (n <= 0)
			return -1;
		*have += (size_t)n;
	}
	if (strncmp(buf, "HTTP/1.1 ", 9) != 0)
		return -1;
	int status = atoi(buf + 9);
	const char *cl = strstr(buf, "\r\nContent-Length:"); /* as evhttp writes it */
	if (cl == NULL || cl > end)
		return -1;
	size_t body = strtoul(cl + 17, NULL, 10), head = (size_t)(end + 4 - buf);
	size_t total = head + body;
	if (*have >= total) {
		memmove(buf, buf + total, *have - total);
		*have -= total;
		return status;
	}
	/* The rest of a body larger than what was read: read and dropped. */
	while (*have < total) {
		size_t want = total - *have < cap - 1 ? total - *have : cap - 1;
		ssize_t n = read(fd, buf, want);
		if (n <= 0)
			return -1;
		*have += (size_t)n;
	}
	*have = 0;
	return status;
}

static void *flood_main(void *arg)
{
	struct flood *f = arg;
	char req[512], buf[65536];
	int len = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: gridex\r\n\r\n", opt.path);
	int64_t gap_ns = opt.rate > 0 ? (int64_t)(1e9 * opt.connections / opt.rate) : 0;
	/* The connections' plans are spread over one gap. */
	int64_t planned = start_ns + gap_ns * f->index / opt.connections;
	int fd = -1;
	size_t have = 0;
	while (planned < end_ns && !stopping) {
		int64_t now = bench_now_ns();
		if (now >= end_ns)
			break;
		if (planned > now) {
			struct timespec ts = {.tv_sec = (planned - now) / 1000000000,
					      .tv_nsec = (planned - now) % 1000000000};
			nanosleep(&ts, NULL);
		} else if (gap_ns == 0) {
			planned = now;
		}
		if (fd < 0 && (fd = connect_from(f->index)) < 0) {
			f->failed++;
			planned += gap_ns > 0 ? gap_ns : 1000000; /* a closed loop waits 1 ms */
			continue;
		}
		have = 0;
		int status = write(fd, req, (size_t)len) == len
				     ? read_answer(fd, buf, sizeof(buf), &have)
				     : -1;
		if (status < 0) {
			f->failed++;
			close(fd);
			fd = -1; /* closed by the server (evicted, timed out): again */
		} else {
			if (status == 200)
				f->ok++;
			else if (status == 429)
				f->limited++;
			else
				f->other++;
			if (f->n_lat < SAMPLES_MAX)
				f->lat_us[f->n_lat++] = (bench_now_ns() - planned) / 1000;
		}
		planned += gap_ns;
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static bool option(const char *arg, const char *name, const char **value)
{
	size_t n = strlen(name);
	if (strncmp(arg, name, n) != 0 || arg[n] != '=')
		return false;
	*value = arg + n + 1;
	return true;
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *v;
		if (option(argv[i], "--port", &v))
			opt.port = atoi(v);
		else if (option(argv[i], "--connections", &v))
			opt.connections = atoi(v);
		else if (option(argv[i], "--rate", &v))
			opt.rate = atof(v);
		else if (option(argv[i], "--seconds", &v))
			opt.seconds = atoi(v);
		else if (option(argv[i], "--path", &v))
			opt.path = v;
		else {
			fprintf(stderr, "usage: httpflood --port=P [--connections=N] [--rate=R] "
					"[--seconds=S] [--path=PATH]\n");
			return 2;
		}
	}
	if (opt.port <= 0 || opt.port > 65535 || opt.connections < 1 || opt.connections > 60000 ||
	    opt.rate < 0 || opt.seconds < 1 || strlen(opt.path) > 400) {
		fprintf(stderr, "httpflood: bad options\n");
		return 2;
	}
	struct flood *fl = calloc((size_t)opt.connections, sizeof(*fl));
	if (fl == NULL)
		die("calloc");
	struct sigaction sa = {.sa_handler = on_stop};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	start_ns = bench_now_ns() + 100000000; /* once every thread has started */
	end_ns = start_ns + (int64_t)opt.seconds * 1000000000;
	for (int i = 0; i < opt.connections; i++) {
		fl[i].index = i;
		fl[i].lat_us = malloc(SAMPLES_MAX * sizeof(int64_t));
		if (fl[i].lat_us == NULL || pthread_create(&fl[i].thread, NULL, flood_main, &fl[i]))
			die("thread");
	}
	uint64_t ok = 0, limited = 0, other = 0, failed = 0;
	size_t n = 0;
	for (int i = 0; i < opt.connections; i++) {
		pthread_join(fl[i].thread, NULL);
		ok += fl[i].ok;
		limited += fl[i].limited;
		other += fl[i].other;
		failed += fl[i].failed;
		n += fl[i].n_lat;
	}
	int64_t *all = malloc((n + 1) * sizeof(int64_t));
	if (all == NULL)
		die("malloc");
	size_t k = 0;
	for (int i = 0; i < opt.connections; i++) {
		memcpy(all + k, fl[i].lat_us, fl[i].n_lat * sizeof(int64_t));
		k += fl[i].n_lat;
		free(fl[i].lat_us);
	}
	qsort(all, n, sizeof(int64_t), bench_cmp_i64);
	int64_t now = bench_now_ns();
	double seconds = (double)((now < end_ns ? now : end_ns) - start_ns) / 1e9;
	printf("http flood: %s, %d connections, offered %s%.0f/s for %.1f s\n", opt.path,
	       opt.connections, opt.rate > 0 ? "" : "(closed loop) ", opt.rate, seconds);
	printf("  answered %.0f/s: 200 %llu, 429 %llu, other %llu; connections lost %llu\n",
	       seconds > 0 ? (double)n / seconds : 0.0, (unsigned long long)ok,
	       (unsigned long long)limited, (unsigned long long)other, (unsigned long long)failed);
	if (n > 0)
		printf("  answer after planned send: p50 %lld us, p99 %lld us, max %lld us\n",
		       (long long)all[n / 2], (long long)all[n * 99 / 100], (long long)all[n - 1]);
	free(all);
	free(fl);
	return 0;
}
