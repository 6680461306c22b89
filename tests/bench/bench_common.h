/*
 * bench_common.h — what the benchmark programs share: clocks, medians and
 * percentiles, loopback connection pairs, the pattern.h byte stream, and
 * the one output line scripts/bench.sh turns into a table row:
 *
 *   ROW|figure|measured|reference|ratio (median, min-max)|goal|verdict
 *
 * Every figure is a ratio against a reference measured in the same run,
 * the median over the repetitions with the min-max spread. Nothing here
 * asserts a time: a program exits non-zero only when it could not run.
 */
#ifndef TCPSPOOL_BENCH_COMMON_H
#define TCPSPOOL_BENCH_COMMON_H

#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../fixtures/pattern.h"

static inline int64_t
bench_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int
bench_cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Sorts v in place. */
static inline double
bench_pct(double *v, size_t n, double p)
{
	size_t i;

	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), bench_cmpd);
	i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

struct bench_spread {
	double med, min, max;
};

static inline struct bench_spread
bench_spread(double *v, size_t n)
{
	struct bench_spread s;

	s.med = bench_pct(v, n, 50);
	s.min = v[0];
	s.max = v[n - 1];
	return s;
}

/* "1.23x (1.10-1.31)" */
static inline const char *
bench_ratio_str(struct bench_spread s, char *buf, size_t len)
{
	snprintf(buf, len, "%.2fx (%.2f–%.2f)", s.med, s.min, s.max);
	return buf;
}

static inline long
bench_rss_kib(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, res = 0;

	if (f != NULL) {
		if (fscanf(f, "%ld %ld", &pages, &res) != 2)
			res = 0;
		fclose(f);
	}
	return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static inline void
bench_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* A listening socket on 127.0.0.1, any port. */
static inline int
bench_listen(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (l < 0)
		err(2, "socket");
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    listen(l, 4096) != 0)
		err(2, "bind/listen");
	return l;
}

/*
 * A loopback TCP connection: *srv the accepted (sending) end, *cli the
 * connected (reading) end. rcvbuf/sndbuf > 0 set a small window before the
 * connection exists, so that a stall is reached after little data.
 */
static inline void
bench_pair(int l, int *srv, int *cli, int rcvbuf, int sndbuf)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	int one = 1;

	if (getsockname(l, (struct sockaddr *)&a, &alen) != 0)
		err(2, "getsockname");
	*cli = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*cli < 0)
		err(2, "socket");
	if (rcvbuf > 0)
		setsockopt(*cli, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (connect(*cli, (struct sockaddr *)&a, sizeof(a)) != 0)
		err(2, "connect");
	*srv = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (*srv < 0)
		err(2, "accept");
	if (sndbuf > 0)
		setsockopt(*srv, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	setsockopt(*srv, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static inline void
bench_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Bytes the kernel holds for this connection: unsent on srv + unread on cli. */
static inline long
bench_kernel_held(int srv, int cli)
{
	int outq = 0, inq = 0;

	ioctl(srv, SIOCOUTQ, &outq);
	ioctl(cli, FIONREAD, &inq);
	return (long)outq + inq;
}

/* The pattern.h stream of 28-byte messages, len bytes of it (any cut). */
static inline uint8_t *
bench_pattern(size_t len)
{
	uint8_t *b = malloc(len + PATTERN_DEFAULT_SIZE);
	uint64_t seq = 1;
	size_t off;

	if (b == NULL)
		err(2, "malloc");
	for (off = 0; off < len; off += PATTERN_DEFAULT_SIZE)
		pattern_message((char *)b + off, PATTERN_DEFAULT_SIZE, -1, seq++);
	return b;
}

/* Sends through the kernel directly: never through an interposer. */
static inline ssize_t
bench_raw_send(int fd, const void *buf, size_t len, int flags)
{
	return syscall(SYS_sendto, fd, buf, len, flags, NULL, 0);
}

/* Sets SO_LINGER {1, 0}: a close then resets and drops any spool. */
static inline void
bench_abort_close(int fd)
{
	struct linger lg = { 1, 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

#endif
