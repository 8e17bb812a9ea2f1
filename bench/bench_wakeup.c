/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The machine's floor under gridexd's latency: how long a sleeping thread
 * takes to run again once another thread signals it (a pthread condition
 * variable, as the pipeline's queues use), and how far past its time a
 * thread's short sleep ends. A request crosses about six such hand-offs
 * between the load generator, the I/O thread, a verifier, the journal and the
 * core, so their tail bounds the acknowledgement's tail whatever gridexd
 * does. Usage:
 *   bench-wakeup [--count=N] [--gap-us=U] [--busy=K]
 * N hand-offs (default 20000), U µs apart (default 200), with K more threads
 * spinning on Ed25519 verifications the whole time (default 0; 2 on a 2-core
 * machine is what the verifiers do at the maximum).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "clock.h"

static struct {
	pthread_mutex_t lock;
	pthread_cond_t go, done;
	int64_t signalled; /* when the waker signalled; 0: nothing pending */
	int64_t woke;	   /* when the sleeper ran */
	bool stop;
} hand = {.lock = PTHREAD_MUTEX_INITIALIZER,
	  .go = PTHREAD_COND_INITIALIZER,
	  .done = PTHREAD_COND_INITIALIZER};

static atomic_bool spinning = true;

static void *sleeper(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&hand.lock);
	for (;;) {
		while (hand.signalled == 0 && !hand.stop)
			pthread_cond_wait(&hand.go, &hand.lock);
		if (hand.stop)
			break;
		hand.woke = bench_now_ns();
		pthread_cond_signal(&hand.done);
		while (hand.woke != 0 && !hand.stop)
			pthread_cond_wait(&hand.go, &hand.lock);
	}
	pthread_mutex_unlock(&hand.lock);
	return NULL;
}

static void *spinner(void *arg)
{
	(void)arg;
	uint8_t pk[32], sk[64], msg[71], sig[64];
	crypto_sign_keypair(pk, sk);
	randombytes_buf(msg, sizeof(msg));
	crypto_sign_detached(sig, NULL, msg, sizeof(msg), sk);
	while (atomic_load_explicit(&spinning, memory_order_relaxed))
		if (crypto_sign_verify_detached(sig, msg, sizeof(msg), pk) != 0)
			abort(); /* our own signature: cannot fail */
	return NULL;
}

static void print_quantiles(const char *what, int64_t *v, long n)
{
	qsort(v, (size_t)n, sizeof(*v), bench_cmp_i64);
	printf("%s: p50 %.1f us  p99 %.1f us  p99.9 %.1f us  max %.1f us\n", what,
	       (double)v[n / 2] / 1e3, (double)v[n * 99 / 100] / 1e3,
	       (double)v[n * 999 / 1000] / 1e3, (double)v[n - 1] / 1e3);
}

static void usage(void)
{
	fprintf(stderr, "usage: bench-wakeup [--count=N] [--gap-us=U] [--busy=K]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	long count = 20000, gap_us = 200, busy = 0;
	for (int i = 1; i < argc; i++) {
		char *end = NULL;
		if (strncmp(argv[i], "--count=", 8) == 0)
			count = strtol(argv[i] + 8, &end, 10);
		else if (strncmp(argv[i], "--gap-us=", 9) == 0)
			gap_us = strtol(argv[i] + 9, &end, 10);
		else if (strncmp(argv[i], "--busy=", 7) == 0)
			busy = strtol(argv[i] + 7, &end, 10);
		else
			usage();
		if (end == NULL || *end != '\0')
			usage();
	}
	if (count < 1000 || count > 10000000 || gap_us < 1 || gap_us > 1000000 || busy < 0 ||
	    busy > 256)
		usage();
	if (sodium_init() < 0) {
		fprintf(stderr, "bench-wakeup: libsodium did not start\n");
		return 1;
	}
	int64_t *wake = malloc((size_t)count * sizeof(*wake));
	int64_t *over = malloc((size_t)count * sizeof(*over));
	pthread_t *spin = calloc((size_t)busy + 1, sizeof(*spin));
	pthread_t sl;
	if (!wake || !over || !spin || pthread_create(&sl, NULL, sleeper, NULL) != 0) {
		fprintf(stderr, "bench-wakeup: out of memory or threads\n");
		return 1;
	}
	for (long k = 0; k < busy; k++)
		if (pthread_create(&spin[k], NULL, spinner, NULL) != 0) {
			fprintf(stderr, "bench-wakeup: cannot start a busy thread\n");
			return 1;
		}
	struct timespec gap = {.tv_sec = gap_us / 1000000, .tv_nsec = gap_us % 1000000 * 1000};
	for (long i = 0; i < count; i++) {
		/* The sleep between hand-offs is the second measure: how late it ends. */
		int64_t t = bench_now_ns();
		while (nanosleep(&gap, NULL) != 0 && errno == EINTR)
			;
		over[i] = bench_now_ns() - t - gap_us * 1000;
		pthread_mutex_lock(&hand.lock);
		hand.signalled = bench_now_ns();
		pthread_cond_signal(&hand.go);
		while (hand.woke == 0)
			pthread_cond_wait(&hand.done, &hand.lock);
		wake[i] = hand.woke - hand.signalled;
		hand.woke = hand.signalled = 0;
		pthread_cond_signal(&hand.go);
		pthread_mutex_unlock(&hand.lock);
	}
	pthread_mutex_lock(&hand.lock);
	hand.stop = true;
	pthread_cond_broadcast(&hand.go);
	pthread_mutex_unlock(&hand.lock);
	pthread_join(sl, NULL);
	atomic_store(&spinning, false);
	for (long k = 0; k < busy; k++)
		pthread_join(spin[k], NULL);
	printf("%ld hand-offs %ld us apart, %ld busy threads\n", count, gap_us, busy);
	print_quantiles("condition variable signal to the sleeper running", wake, count);
	print_quantiles("a sleep's end past its time", over, count);
	free(wake);
	free(over);
	free(spin);
	return 0;
}
