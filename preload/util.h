/*
 * util.h — small helpers every part of preload/ uses, written once: the
 * clocks, the EAGAIN test, and growing an array.
 */
#ifndef TCPSPOOL_UTIL_H
#define TCPSPOOL_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define NS_PER_MS 1000000LL
#define NS_PER_S  1000000000LL

/* CLOCK_MONOTONIC in ns: deadlines and timers. */
static inline int64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* CLOCK_REALTIME in ns: what is written to disk and shown to people. */
static inline int64_t
real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* CLOCK_REALTIME_COARSE in ns (a tick, a few ms): a record's time, read
 * on every spooled call, where the cheaper clock serves. */
static inline int64_t
real_coarse_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* An absolute time in ns as a timespec (for the *timedwait calls). */
static inline struct timespec
ts_of(int64_t ns)
{
	return (struct timespec){ .tv_sec = ns / NS_PER_S,
		.tv_nsec = ns % NS_PER_S };
}

static inline bool
is_eagain(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK;
}

/*
 * The array a (*cap elements of size bytes, n used) with room for one
 * more: a itself, or a larger one (from 16 elements, doubling), a being
 * then given back. NULL without memory: a and *cap unchanged.
 */
static inline void *
grown(void *a, size_t n, size_t *cap, size_t size)
{
	size_t nc;
	void *v;

	if (n < *cap)
		return a;
	nc = *cap ? *cap * 2 : 16;
	if ((v = reallocarray(a, nc, size)) == NULL)
		return NULL;
	*cap = nc;
	return v;
}

#endif
