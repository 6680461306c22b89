/*
 * preload_bench — the library's figures, printed, never asserted:
 *
 *   fast path    64-byte sends to a fast reader over loopback TCP and
 *                AF_UNIX, the same binary with and without the library,
 *                interleaved rounds in the same run; median ns per send and
 *                the ratio (goal: at most 1.03); and, in one preloaded
 *                process, 64-byte write(2)s to /dev/null through the
 *                library's write and libc's, alternating: the hook's own
 *                cost without a reader thread's scheduling noise
 *   spooled send latency at the application of a 64-byte send on a
 *                socket whose peer does not read (every byte spooled):
 *                p50, p99, max
 *   reopen       the peer drains its socket; time until the next byte
 *                arrives: from the replay thread (library) and, for
 *                comparison, from a writer thread waiting in poll(POLLOUT)
 *                (no library)
 *
 * Usage: preload_bench [LIBTCPSPOOL.so]   (default: $TCPSPOOL_TEST_LIB,
 * else ../../../preload/libtcpspool.so next to this program). Each figure
 * is measured in a child process started with or without LD_PRELOAD.
 */
#include <sys/socket.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void
die(const char *what)
{
	perror(what);
	exit(1);
}

/* fds[0] the writer, fds[1] the reader. */
static void
make_pair(const char *kind, int fds[2], int sndbuf, int rcvbuf)
{
	if (strcmp(kind, "unix") == 0) {
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
			die("socketpair");
	} else {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		socklen_t len = sizeof(sin);
		int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (lfd < 0 || bind(lfd, (void *)&sin, sizeof(sin)) ||
		    listen(lfd, 1) || getsockname(lfd, (void *)&sin, &len))
			die("listen");
		fds[1] = socket(AF_INET, SOCK_STREAM, 0);
		if (rcvbuf)
			setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &rcvbuf,
			    sizeof(rcvbuf));
		if (connect(fds[1], (void *)&sin, sizeof(sin)) != 0)
			die("connect");
		if ((fds[0] = accept(lfd, NULL, NULL)) < 0)
			die("accept");
		setsockopt(fds[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		close(lfd);
	}
	if (sndbuf)
		setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sndbuf,
		    sizeof(sndbuf));
	if (rcvbuf)
		setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &rcvbuf,
		    sizeof(rcvbuf));
}

static void *
drain(void *arg)
{
	static __thread char buf[1 << 20];
	int fd = *(int *)arg;

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	return NULL;
}

static int
cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static void
percentiles(const char *what, int64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp64);
	printf("%s p50 %.1f us  p99 %.1f us  max %.1f us  (n=%zu)\n", what,
	    v[n / 2] / 1e3, v[n * 99 / 100] / 1e3, v[n - 1] / 1e3, n);
}

/* Child: ns per 64-byte send to a fast reader. */
static int
child_fast(const char *kind, long n)
{
	char msg[64] = { 0 };
	pthread_t t;
	int64_t t0;
	int fds[2];
	long i;

	make_pair(kind, fds, 0, 0);
	pthread_create(&t, NULL, drain, &fds[1]);
	for (i = 0; i < n / 10; i++)	/* warm up */
		if (send(fds[0], msg, sizeof(msg), 0) != sizeof(msg))
			die("send");
	t0 = now_ns();
	for (i = 0; i < n; i++)
		if (send(fds[0], msg, sizeof(msg), 0) != sizeof(msg))
			die("send");
	printf("%.2f\n", (double)(now_ns() - t0) / (double)n);
	shutdown(fds[0], SHUT_WR);
	pthread_join(t, NULL);
	return 0;
}

static int
cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/*
 * Child (preloaded): the hook's own cost, in one process and without a
 * reader thread's noise: 64-byte write(2)s to /dev/null through the
 * library's write and through libc's, alternating rounds.
 */
static int
child_hookcost(long n)
{
	ssize_t (*libc_write)(int, const void *, size_t);
	double hooked[21], direct[21], d[21];
	char msg[64] = { 0 };
	int fd = open("/dev/null", O_WRONLY), r;
	void *h = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	long i;

	if (h == NULL || (libc_write = (ssize_t (*)(int, const void *,
	    size_t))dlsym(h, "write")) == NULL || fd < 0)
		die("libc write");
	if ((void *)libc_write == (void *)write)
		die("library not loaded");
	for (r = 0; r < 21; r++) {
		int64_t t0 = now_ns();

		for (i = 0; i < n; i++)
			if (write(fd, msg, sizeof(msg)) != sizeof(msg))
				die("write");
		hooked[r] = (double)(now_ns() - t0) / (double)n;
		t0 = now_ns();
		for (i = 0; i < n; i++)
			if (libc_write(fd, msg, sizeof(msg)) != sizeof(msg))
				die("write");
		direct[r] = (double)(now_ns() - t0) / (double)n;
		d[r] = hooked[r] - direct[r];
	}
	qsort(hooked, 21, sizeof(double), cmpd);
	qsort(direct, 21, sizeof(double), cmpd);
	qsort(d, 21, sizeof(double), cmpd);
	printf("fast path, 64-byte write(2) to /dev/null, same process: libc "
	    "%.1f ns, through the library %.1f ns; difference median %+.1f ns "
	    "per call [%+.1f, %+.1f] (21 rounds of %ld)\n", direct[10],
	    hooked[10], d[10], d[0], d[20], n);
	return 0;
}

/* Child (preloaded): latency of spooled sends. */
static int
child_spooled(long n)
{
	static char big[1 << 20];
	int64_t *lat = calloc((size_t)n, sizeof(*lat));
	char msg[64] = { 0 };
	pthread_t t;
	int fds[2];
	long i;

	make_pair("unix", fds, 4096, 4096);
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	if (send(fds[0], big, sizeof(big), 0) != sizeof(big))
		die("send (library not loaded?)");
	for (i = 0; i < n; i++) {
		int64_t t0 = now_ns();

		if (send(fds[0], msg, sizeof(msg), 0) != sizeof(msg))
			die("send");
		lat[i] = now_ns() - t0;
	}
	percentiles("spooled 64-byte send at the application:", lat,
	    (size_t)n);
	pthread_create(&t, NULL, drain, &fds[1]);
	close(fds[0]);
	pthread_join(t, NULL);
	return 0;
}

struct blocked_writer {
	int fd;
	long bytes;
};

/* An event-loop writer, as a server that handles EAGAIN would be. */
static void *
write_blocking(void *arg)
{
	struct blocked_writer *w = arg;
	static char buf[65536];
	long left = w->bytes;

	fcntl(w->fd, F_SETFL, O_NONBLOCK);
	while (left > 0) {
		struct pollfd p = { .fd = w->fd, .events = POLLOUT };
		ssize_t r = send(w->fd, buf, left < (long)sizeof(buf) ?
		    (size_t)left : sizeof(buf), MSG_NOSIGNAL);

		if (r < 0 && errno == EAGAIN) {
			poll(&p, 1, -1);
			continue;
		}
		if (r <= 0)
			break;
		left -= r;
	}
	return NULL;
}

/*
 * Child: the reader empties its socket, then waits for the next byte.
 * With the library, a non-blocking writer has spooled everything first;
 * without, a writer thread is blocked in send.
 */
static int
child_reopen(const char *kind, bool lib, long rounds)
{
	const long total = 16L << 20;
	static char buf[4 << 20];
	int64_t *lat = calloc((size_t)rounds, sizeof(*lat));
	struct blocked_writer w;
	char title[128];
	pthread_t t;
	int fds[2];
	long i, k = 0;

	make_pair(kind, fds, 4096, 4096);
	fcntl(fds[1], F_SETFL, O_NONBLOCK);
	if (lib) {
		fcntl(fds[0], F_SETFL, O_NONBLOCK);
		for (i = 0; i < total; i += 65536)
			if (send(fds[0], buf, 65536, 0) != 65536)
				die("send (library not loaded?)");
	} else {
		w = (struct blocked_writer){ fds[0], total };
		pthread_create(&t, NULL, write_blocking, &w);
	}
	/* Wait for the first bytes, then measure each refill. */
	for (i = 0; i < rounds + 10; i++) {
		struct pollfd p = { .fd = fds[1], .events = POLLIN };
		int64_t t0;

		if (poll(&p, 1, 10000) != 1) {
			fprintf(stderr, "round %ld: ", i);
			die("poll: nothing arrives");
		}
		while (read(fds[1], buf, sizeof(buf)) > 0)
			;
		t0 = now_ns();
		if (poll(&p, 1, 10000) != 1)
			die("poll: nothing arrives");
		if (i >= 10)
			lat[k++] = now_ns() - t0;
	}
	snprintf(title, sizeof(title), "reopen to next byte, %s, %s:", kind,
	    lib ? "replay thread (library)" : "event-loop writer (no library)");
	percentiles(title, lat, (size_t)k);
	fflush(stdout);
	if (!lib) {
		close(fds[1]);
		pthread_join(t, NULL);
	}
	_exit(0);	/* the library's spool: not worth draining */
}

/* Runs this program as a child, maybe preloaded; returns its stdout. */
static void
run_child(const char *self, const char *lib, const char *spool,
    char *const args[], char *out, size_t outlen)
{
	int p[2], st;
	ssize_t n, got = 0;
	pid_t pid;

	if (pipe(p) != 0)
		die("pipe");
	if ((pid = fork()) == 0) {
		char *argv[8] = { (char *)self };
		int i;

		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		setenv("PRELOAD_BENCH_CHILD", "1", 1);
		setenv("TCPSPOOL_DIR", spool, 1);
		setenv("TCPSPOOL_LINGER", "0", 1);
		setenv("TCPSPOOL_LOG_LEVEL", "error", 1);
		if (lib)
			setenv("LD_PRELOAD", lib, 1);
		else
			unsetenv("LD_PRELOAD");
		for (i = 0; args[i] && i < 6; i++)
			argv[i + 1] = args[i];
		execv(self, argv);
		_exit(127);
	}
	close(p[1]);
	while ((n = read(p[0], out + got, outlen - 1 - (size_t)got)) > 0)
		got += n;
	out[got] = '\0';
	close(p[0]);
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "child %s failed (%#x)\n", args[0], st);
		exit(1);
	}
}

int
main(int argc, char **argv)
{
	char self[PATH_MAX], libpath[PATH_MAX], spool[] =
	    "/var/tmp/tcpspool-bench.XXXXXX", out[4096];
	const char *lib;
	const char *kinds[] = { "tcp", "unix" };
	int rounds = 11, i, k;

	if (getenv("PRELOAD_BENCH_CHILD")) {
		if (strcmp(argv[1], "fast") == 0)
			return child_fast(argv[2], atol(argv[3]));
		if (strcmp(argv[1], "hookcost") == 0)
			return child_hookcost(atol(argv[2]));
		if (strcmp(argv[1], "spooled") == 0)
			return child_spooled(atol(argv[2]));
		if (strcmp(argv[1], "reopen") == 0)
			return child_reopen(argv[2], strcmp(argv[3], "lib") == 0,
			    atol(argv[4]));
		return 2;
	}
	if (realpath("/proc/self/exe", self) == NULL)
		die("/proc/self/exe");
	if (argc > 1)
		lib = argv[1];
	else if ((lib = getenv("TCPSPOOL_TEST_LIB")) == NULL) {
		char tmp[PATH_MAX];

		strcpy(tmp, self);
		snprintf(libpath, sizeof(libpath),
		    "%s/../../../preload/libtcpspool.so", dirname(tmp));
		lib = libpath;
	}
	if (access(lib, R_OK) != 0)
		die(lib);
	if (mkdtemp(spool) == NULL)
		die("mkdtemp");
	printf("library: %s\nspool dir: %s\n", lib, spool);
	run_child(self, lib, spool, (char *[]){ "hookcost", "1000000", NULL },
	    out, sizeof(out));
	fputs(out, stdout);
	for (k = 0; k < 2; k++) {
		char *const args[] = { "fast", (char *)kinds[k], "500000", NULL };
		double plain[16], with[16], ratio[16];

		for (i = 0; i < rounds; i++) {
			run_child(self, NULL, spool, args, out, sizeof(out));
			plain[i] = atof(out);
			run_child(self, lib, spool, args, out, sizeof(out));
			with[i] = atof(out);
			ratio[i] = with[i] / plain[i];
		}
		qsort(plain, (size_t)rounds, sizeof(double), cmpd);
		qsort(with, (size_t)rounds, sizeof(double), cmpd);
		qsort(ratio, (size_t)rounds, sizeof(double), cmpd);
		printf("fast path, 64 bytes, %s: without %.1f ns, with "
		    "%.1f ns (medians of %d rounds); ratio median %.3f "
		    "[min %.3f, max %.3f]\n", kinds[k], plain[rounds / 2],
		    with[rounds / 2], rounds, ratio[rounds / 2], ratio[0],
		    ratio[rounds - 1]);
		fflush(stdout);
	}
	run_child(self, lib, spool, (char *[]){ "spooled", "200000", NULL },
	    out, sizeof(out));
	fputs(out, stdout);
	for (k = 0; k < 2; k++) {
		run_child(self, NULL, spool, (char *[]){ "reopen",
		    (char *)kinds[k], "kernel", "1000", NULL }, out,
		    sizeof(out));
		fputs(out, stdout);
		run_child(self, lib, spool, (char *[]){ "reopen",
		    (char *)kinds[k], "lib", "1000", NULL }, out, sizeof(out));
		fputs(out, stdout);
	}
	fflush(stdout);
	if (fork() == 0)
		execlp("rm", "rm", "-rf", spool, (char *)NULL);
	wait(NULL);
	return 0;
}
