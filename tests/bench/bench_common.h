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
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <dirent.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdbool.h>
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

/* Heap bytes in use (every arena, mmapped chunks included): the process's
 * own malloc, which the library shares. */
static inline long long
bench_heap_bytes(void)
{
	struct mallinfo2 mi = mallinfo2();

	return (long long)mi.uordblks + (long long)mi.hblkhd;
}

/* Open fds of a process (0: this one), by what they are. */
struct bench_fds {
	int total, sockets;
	int segments;		/* a path ending in .open or .seg */
	int dirs, files;	/* other paths */
	int other;		/* pipes, epoll, eventfd, ... */
};

static inline bool
bench_ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), t = strlen(tail);

	return n >= t && strcmp(s + n - t, tail) == 0;
}

static inline struct bench_fds
bench_fds(pid_t pid)
{
	struct bench_fds c = { 0, 0, 0, 0, 0, 0 };
	struct stat st;
	char dir[64], path[320], link[256];
	struct dirent *e;
	ssize_t n;
	DIR *d;

	if (pid == 0)
		pid = getpid();
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	if ((d = opendir(dir)) == NULL) {
		c.total = -1;
		return c;
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if ((n = readlink(path, link, sizeof(link) - 1)) < 0)
			continue;	/* closed meanwhile */
		link[n] = '\0';
		c.total++;
		if (strncmp(link, "socket:", 7) == 0)
			c.sockets++;
		else if (link[0] != '/')
			c.other++;
		else if (bench_ends_with(link, ".open") ||
		    bench_ends_with(link, ".seg"))
			c.segments++;
		else if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			c.dirs++;
		else
			c.files++;
	}
	closedir(d);
	return c;
}

/* What b holds more than a, per n, by kind. */
static inline const char *
bench_fds_diff_str(struct bench_fds a, struct bench_fds b, int n, char *buf,
    size_t len)
{
	snprintf(buf, len, "sockets %.2f, segment files %.2f, dirs %.2f, "
	    "other files %.2f, other %.2f", (double)(b.sockets - a.sockets) / n,
	    (double)(b.segments - a.segments) / n,
	    (double)(b.dirs - a.dirs) / n, (double)(b.files - a.files) / n,
	    (double)(b.other - a.other) / n);
	return buf;
}

/* Resident set of a process (0: this one) in KiB, -1 if it is gone. */
static inline long
bench_proc_rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	if (pid == 0)
		return bench_rss_kib();
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "VmRSS:", 6) == 0)
			kib = strtol(line + 6, NULL, 10);
	fclose(f);
	return kib;
}

/*
 * CPU ticks (utime + stime, in sysconf(_SC_CLK_TCK)) of the library's
 * threads in process pid: the tasks named "tcpspool*" or "*replay*" if
 * any task is, else every task but the main one (by elimination: right
 * for a process that starts no thread of its own). names gets how the
 * threads were found and their names.
 */
static inline long long
bench_lib_thread_ticks(pid_t pid, char *names, size_t nlen)
{
	char dir[64], path[384], text[1024], comm[64];
	long long by_name = 0, others = 0;
	char named[256] = "", unnamed[256] = "";
	struct dirent *e;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
	if ((d = opendir(dir)) == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		unsigned long long ut = 0, st = 0;
		char *p;
		FILE *f;
		size_t n;

		if (e->d_name[0] == '.' || atoi(e->d_name) == (int)pid)
			continue;
		snprintf(path, sizeof(path), "%s/%s/stat", dir, e->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		n = fread(text, 1, sizeof(text) - 1, f);
		fclose(f);
		text[n] = '\0';
		/* pid (comm) state ppid ... field 14 utime, 15 stime; comm
		 * may hold spaces and parentheses: parse from the last ')'. */
		if ((p = strrchr(text, ')')) == NULL || sscanf(p + 2,
		    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
		    &ut, &st) != 2)
			continue;
		snprintf(comm, sizeof(comm), "%.*s",
		    (int)(p - strchr(text, '(') - 1), strchr(text, '(') + 1);
		if (strncmp(comm, "tcpspool", 8) == 0 ||
		    strstr(comm, "replay") != NULL) {
			by_name += (long long)(ut + st);
			if (strstr(named, comm) == NULL)
				snprintf(named + strlen(named),
				    sizeof(named) - strlen(named), "%s%s",
				    named[0] ? "," : "", comm);
		} else {
			others += (long long)(ut + st);
			snprintf(unnamed + strlen(unnamed),
			    sizeof(unnamed) - strlen(unnamed), "%s%s",
			    unnamed[0] ? "," : "", comm);
		}
	}
	closedir(d);
	if (named[0] != '\0') {
		snprintf(names, nlen, "by name: %s", named);
		return by_name;
	}
	snprintf(names, nlen, "by elimination (no thread named tcpspool*): "
	    "%s", unnamed[0] ? unnamed : "none");
	return others;
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
