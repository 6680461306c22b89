/*
 * scale_bench — one process under the library with N concurrently stalled
 * connections, each spooling K KiB, all delivered byte-exact when the
 * clients start reading (issue 13, item 5). scripts/bench.sh runs it with
 * 10,000 connections of 1 MiB; the test suite with 500 (meson test
 * reliability-scale-500), where only the delivery is checked.
 *
 * Three processes: this one (plain: it measures and decides), the server
 * (this program again, "serve", started with LD_PRELOAD=LIB: the
 * application under test, holding the accepted connections) and the
 * clients (a fork of this one, plain, holding the other ends, so that the
 * server's fd count is its own). Every wait is on a condition (a status
 * line on a pipe, a process's fd count, the spool dir), each bounded by
 * one deadline (--deadline): a hang guard, never a figure.
 *
 *  1. The clients connect N times to the server on 127.0.0.1 (source
 *     addresses spread over 127.0.0.1 to 127.0.0.S, --sources, so that
 *     ephemeral ports last), SO_RCVBUF --rcvbuf before connect; the
 *     server accepts, sets SO_SNDBUF --sndbuf and O_NONBLOCK. Idle
 *     figures: the server's RSS, fds, heap (mallinfo2, its own report).
 *  2. The server writes to every connection, 64 KiB writes, W bytes: K KiB
 *     plus what the kernel can hold with these buffers (twice sndbuf
 *     plus twice rcvbuf, plus 64 KiB), so at least K KiB of each is
 *     spooled. Every write must be taken whole: under the library nothing
 *     fails. Connection i's bytes are server A's stream (pattern.h,
 *     28-byte messages, which compress as that traffic does, about 10:1)
 *     from its own offset, so that no two connections carry the same
 *     bytes at the same place. Stalled figures: RSS, fds by kind, heap.
 *     The server stops before its fd limit would (it looks every 50
 *     connections: room for the next 50 at SPOOLING_FDS each, what a
 *     connection may hold while it spools, before the library parks it,
 *     plus FD_SPARE for the library's own files?): where RLIMIT_NOFILE
 *     cannot be raised (no CAP_SYS_RESOURCE) the run goes on with the
 *     connections stalled so far, the rest idle, and every ROW says so;
 *     the figures are then per stalled connection.
 *  3. Once the library has parked the stalled connections (the server's
 *     fds down to the duplicates) and its RSS stopped falling for 2 s
 *     (both bounded), the stalled figures, and the CPU of the library's thread
 *     (/proc/PID/task/TID/stat utime + stime; a thread named tcpspool* or
 *     *replay*, else every thread but the server's only one) over
 *     --cpu-ms; then `tcpspool ls --dir SPOOL` (--cli), timed.
 *  4. The clients read everything as fast as they can (epoll, 64 KiB
 *     reads) and compare every byte with the stream; the time from their
 *     start to the last byte of the last connection. Once the server's fd
 *     count is back to the idle one (or 10 s passed: a figure, reported),
 *     the figures left after the drain. Before its idle figures the
 *     server sends 256 KiB through one connection to itself, stalled then
 *     drained, so that what the library keeps once per process is not
 *     charged to the connections.
 *  5. The server closes every connection; the clients must see EOF right
 *     after the W bytes; both processes end with 0; the spool dir must end
 *     with no stream in it.
 *
 * Exit 0 only if every byte arrived, in order, exactly once, and all of
 * the above ended as said; 1 otherwise, saying what; 2 on a usage error.
 * Figures go to stdout as ROW| lines (bench_common.h) and free text; they
 * never decide the exit code.
 *
 * Usage: scale_bench --lib LIB [--connections N] [--kib K] [--sndbuf B]
 *        [--rcvbuf B] [--sources S] [--spool-dir DIR] [--cli TCPSPOOL]
 *        [--cpu-ms MS] [--deadline S]
 * LIB defaults to $TCPSPOOL_TEST_PRELOAD (the test suite's: sanitizer
 * runtime first); DIR to a new /var/tmp/tcpspool-scale.XXXXXX, removed at
 * the end. The server gets TCPSPOOL_DIR=DIR and, unless set already,
 * quotas that do not bind and TCPSPOOL_LINGER=0.
 */
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <ftw.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>

#include "bench_common.h"

#define CHUNK (64u << 10)
/* fds a connection may hold while it spools (its duplicate, segment file,
 * dir, status), and room left for the library's own files. */
#define SPOOLING_FDS 8
#define FD_SPARE 256
/* The stream cycles through this many bytes: whole 28-byte messages. */
#define PATLEN ((size_t)PATTERN_DEFAULT_SIZE * 149796)

static uint8_t *pat;	/* PATLEN + CHUNK: the start again after the end */

static struct {
	const char *lib, *cli, *dir;
	int n, sndbuf, rcvbuf, sources, cpu_ms, deadline_s;
	long kib;
	bool own_dir;
} o = { .n = 10000, .kib = 1024, .sndbuf = 16384, .rcvbuf = 16384,
	.sources = 4, .cpu_ms = 3000, .deadline_s = 600 };

static int64_t deadline;
static volatile sig_atomic_t stopped;	/* SIGINT, SIGTERM: fail now */
static pid_t server_pid = -1, client_pid = -1;

static bool
expired(void)
{
	return stopped || bench_ns() > deadline;
}

static void
on_stop(int sig)
{
	(void)sig;
	stopped = 1;
}

/* Settling after the drain is reported, never waited for past this. */
#define SETTLE_NS 10000000000LL

static void
pattern_init(void)
{
	pat = bench_pattern(PATLEN + CHUNK);
	memcpy(pat + PATLEN, pat, CHUNK);
}

/* Where connection i's stream starts in the cycle. */
static size_t
stream_start(int i)
{
	return (size_t)i * PATTERN_DEFAULT_SIZE * 1009 % PATLEN;
}

/* Bytes written to every connection: K KiB past what the kernel holds. */
static long long
per_conn_bytes(void)
{
	return o.kib * 1024 + 2LL * o.sndbuf + 2LL * o.rcvbuf + CHUNK;
}

/* --- lines on pipes ------------------------------------------------------ */

static void
say(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
say(int fd, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int len;

	va_start(ap, fmt);
	len = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (len > 0 && write(fd, line, (size_t)len) != len)
		_exit(3);	/* the orchestrator is gone */
}

/* One line from fd (without its newline), waiting until the deadline;
 * false at EOF or on time out. */
static bool
hear(int fd, char *line, size_t len)
{
	size_t n = 0;

	for (;;) {
		int64_t left = (deadline - bench_ns()) / 1000000;
		struct pollfd p = { fd, POLLIN, 0 };
		char c;

		if (expired() || poll(&p, 1, (int)(left > 1000 ? 1000 :
		    left)) < 0)
			return false;
		if (p.revents == 0)
			continue;
		if (read(fd, &c, 1) != 1)
			return false;
		if (c == '\n')
			break;
		if (n < len - 1)
			line[n++] = c;
	}
	line[n] = '\0';
	return true;
}

/* --- the server: the application under the library ----------------------- */

/*
 * One connection to itself through stall, spool and drain, before the
 * idle figures: what the library keeps once per process (its thread's
 * epoll set and eventfd, the spool dir) is then in them, not charged to
 * the connections.
 */
static void
warm_up(int l)
{
	static uint8_t buf[CHUNK];
	long long sent = 0, got = 0;
	int srv, cli;

	bench_pair(l, &srv, &cli, 16384, 16384);
	bench_nonblock(srv);
	while (sent - bench_kernel_held(srv, cli) < (256 << 10)) {
		if (write(srv, pat + sent % (PATLEN - CHUNK), CHUNK) !=
		    (ssize_t)CHUNK)
			err(1, "warm-up: write (is the library preloaded?)");
		sent += CHUNK;
	}
	while (got < sent) {
		ssize_t r = recv(cli, buf, sizeof(buf), 0);

		if (r <= 0)
			err(1, "warm-up: recv");
		got += r;
	}
	close(srv);
	close(cli);
}

static int
serve(int argc, char **argv)
{
	int n = atoi(argv[2]), l, *fd, i;
	long long per = atoll(argv[3]);
	int sndbuf = atoi(argv[4]);
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	char cmd[64];
	int64_t t;

	(void)argc;
	deadline = INT64_MAX;
	if ((fd = calloc((size_t)n, sizeof(int))) == NULL)
		err(1, "calloc");
	pattern_init();
	l = bench_listen();
	if (getsockname(l, (struct sockaddr *)&a, &alen) != 0)
		err(1, "getsockname");
	warm_up(l);
	say(3, "port %u\n", ntohs(a.sin_port));
	for (i = 0; i < n; i++) {
		if ((fd[i] = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0)
			err(1, "accept (connection %d)", i);
		setsockopt(fd[i], SOL_SOCKET, SO_SNDBUF, &sndbuf,
		    sizeof(sndbuf));
		bench_nonblock(fd[i]);
	}
	close(l);
	say(3, "accepted heap=%lld\n", bench_heap_bytes());
	while (hear(4, cmd, sizeof(cmd))) {
		if (strcmp(cmd, "spool") == 0) {
			struct rlimit rl;
			int base = bench_fds(0).total, k = n;

			getrlimit(RLIMIT_NOFILE, &rl);
			t = bench_ns();
			for (i = 0; i < n; i++) {
				size_t start = stream_start(i);
				long long done = 0;

				/* Every 50: room for twice as many more? A
				 * connection holds more fds while it spools
				 * (its spool's files) than once the library
				 * has parked it (a second later): near the
				 * limit, wait (bounded) for those to settle
				 * first, or the library, out of fds, passes
				 * an EAGAIN through as it must. */
				if (i > 0 && i % 50 == 0) {
					int now = bench_fds(0).total;
					int64_t w0 = bench_ns();

					while (now + 3000 > (int)rl.rlim_cur &&
					    now > base + 2 * i + 64 &&
					    bench_ns() - w0 < 10000000000LL) {
						usleep(50000);
						now = bench_fds(0).total;
					}
					/* Not the mean of the parked ones (2):
					 * the next 50 spool at once, before
					 * the library parks any of them (a
					 * run at a fd limit of 20000 got an
					 * EAGAIN at connection 9348 with
					 * room for twice the mean). */
					if (now + 50 * SPOOLING_FDS + FD_SPARE >
					    (int)rl.rlim_cur) {
						k = i;
						break;
					}
				}
				while (done < per) {
					size_t len = per - done < CHUNK ?
					    (size_t)(per - done) : CHUNK;
					ssize_t r = write(fd[i], pat +
					    (start + (size_t)done) % PATLEN,
					    len);

					if (r != (ssize_t)len)
						err(1, "connection %d: write "
						    "of %zu bytes at %lld got "
						    "%zd (is the library "
						    "preloaded? a quota?)", i,
						    len, done, r);
					done += r;
				}
			}
			say(3, "spooled k=%d ms=%.0f heap=%lld\n", k,
			    (double)(bench_ns() - t) / 1e6,
			    bench_heap_bytes());
		} else if (strcmp(cmd, "stat") == 0) {
			say(3, "stat heap=%lld\n", bench_heap_bytes());
		} else if (strcmp(cmd, "close") == 0) {
			for (i = 0; i < n; i++)
				close(fd[i]);
			say(3, "closed\n");
			break;
		}
	}
	free(fd);
	free(pat);
	return 0;
}

/* --- the clients --------------------------------------------------------- */

struct conn {
	int fd;
	long long got;
	bool eof;
};

static int
clients(int status, int control, unsigned short port)
{
	struct conn *c = calloc((size_t)o.n, sizeof(*c));
	struct epoll_event ev, evs[256];
	static uint8_t buf[CHUNK];
	long long per = per_conn_bytes(), total = 0;
	int i, ep, full = 0, ended = 0, k;
	char cmd[64];
	int64_t t0;

	if (c == NULL)
		err(1, "calloc");
	for (i = 0; i < o.n; i++) {
		struct sockaddr_in src = { .sin_family = AF_INET };
		struct sockaddr_in dst = { .sin_family = AF_INET };
		int one = 1;

		if ((c[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC,
		    0)) < 0)
			err(1, "socket (connection %d)", i);
		setsockopt(c[i].fd, SOL_SOCKET, SO_RCVBUF, &o.rcvbuf,
		    sizeof(o.rcvbuf));
		/* 127.0.0.1 .. 127.0.0.S, the port chosen at connect. */
		setsockopt(c[i].fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		    sizeof(one));
		src.sin_addr.s_addr = htonl(INADDR_LOOPBACK +
		    (uint32_t)(i % o.sources));
		if (bind(c[i].fd, (struct sockaddr *)&src, sizeof(src)) != 0)
			err(1, "bind (connection %d)", i);
		dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		dst.sin_port = htons(port);
		if (connect(c[i].fd, (struct sockaddr *)&dst,
		    sizeof(dst)) != 0)
			err(1, "connect (connection %d)", i);
	}
	say(status, "connected\n");
	if (!hear(control, cmd, sizeof(cmd)) || strncmp(cmd, "go ", 3) != 0)
		errx(1, "clients: no go");
	/* Connections k.. were not written to: nothing, then EOF. */
	k = atoi(cmd + 3);
	full = o.n - k;
	t0 = bench_ns();
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		err(1, "epoll_create1");
	for (i = 0; i < o.n; i++) {
		bench_nonblock(c[i].fd);
		ev.events = EPOLLIN | EPOLLRDHUP;
		ev.data.u32 = (uint32_t)i;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev) != 0)
			err(1, "epoll_ctl");
	}
	if (full == o.n)
		say(status, "delivered ms=0 bytes=0\n");
	/* Until every connection ended; "delivered" once each has all. */
	while (ended < o.n) {
		int nev = epoll_wait(ep, evs, 256, 1000);

		if (nev < 0 && errno != EINTR)
			err(1, "epoll_wait");
		if (expired())
			errx(1, "clients: %d of %d connections complete, %d "
			    "ended, when the deadline passed", full, o.n,
			    ended);
		for (int e = 0; e < nev; e++) {
			struct conn *x = &c[evs[e].data.u32];
			size_t start = stream_start((int)evs[e].data.u32);
			long long want = (int)evs[e].data.u32 < k ? per : 0;
			ssize_t r;

			while ((r = recv(x->fd, buf, sizeof(buf), 0)) > 0) {
				size_t at = (start + (size_t)x->got) % PATLEN;

				/* pat runs CHUNK past PATLEN: r <= CHUNK. */
				if (x->got + r > want || memcmp(buf, pat + at,
				    (size_t)r) != 0)
					errx(1, "connection %u: wrong bytes "
					    "at %lld..%lld (%lld expected)",
					    evs[e].data.u32, x->got,
					    x->got + r, want);
				x->got += r;
				total += r;
				if (x->got == per && ++full == o.n)
					say(status, "delivered ms=%.0f "
					    "bytes=%lld\n",
					    (double)(bench_ns() - t0) / 1e6,
					    total);
			}
			if (r == 0) {
				if (x->got != want)
					errx(1, "connection %u: EOF after "
					    "%lld of %lld bytes",
					    evs[e].data.u32, x->got, want);
				x->eof = true;
				ended++;
				epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL);
			} else if (errno != EAGAIN) {
				err(1, "connection %u: recv after %lld of "
				    "%lld bytes", evs[e].data.u32, x->got,
				    want);
			}
		}
	}
	say(status, "eof\n");
	return 0;
}

/* --- the orchestrator ---------------------------------------------------- */

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st, (void)flag, (void)f;
	(void)remove(path);
	return 0;
}

/* Stream dirs in the spool dir (its own files, the ledger, are not). */
static int
stream_files(void)
{
	char path[PATH_MAX];
	struct dirent *e;
	DIR *d;
	int n = 0;

	if ((d = opendir(o.dir)) == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		struct stat st;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", o.dir, e->d_name);
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			n++;
	}
	closedir(d);
	return n;
}

static void
fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "scale_bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	if (server_pid > 0)
		kill(server_pid, SIGKILL);
	if (client_pid > 0)
		kill(client_pid, SIGKILL);
	while (wait(NULL) > 0)
		;
	if (o.own_dir)
		nftw(o.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	exit(1);
}

static long long
field(const char *line, const char *key)
{
	const char *p = strstr(line, key);

	return p != NULL ? atoll(p + strlen(key)) : -1;
}

static void
expect(int fd, const char *who, const char *prefix, char *line, size_t len)
{
	if (!hear(fd, line, len))
		fail("%s: no '%s' line (it ended, or the deadline passed)",
		    who, prefix);
	if (strncmp(line, prefix, strlen(prefix)) != 0)
		fail("%s: '%s' where '%s' was expected", who, line, prefix);
}

static pid_t
start_server(int status_w, int control_r, long long per)
{
	char n[32], p[32], b[32], self[PATH_MAX];
	ssize_t len;
	pid_t pid;

	snprintf(n, sizeof(n), "%d", o.n);
	snprintf(p, sizeof(p), "%lld", per);
	snprintf(b, sizeof(b), "%d", o.sndbuf);
	if ((pid = fork()) < 0)
		fail("fork: %s", strerror(errno));
	if (pid > 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (dup2(status_w, 3) != 3 || dup2(control_r, 4) != 4)
		_exit(127);
	/* The test suite's own TCPSPOOL_ names are no settings of the
	 * library, which would say so on stderr. */
	for (;;) {
		extern char **environ;
		char name[128] = "";

		for (char **e = environ; *e != NULL; e++)
			if (strncmp(*e, "TCPSPOOL_TEST_", 14) == 0 ||
			    strncmp(*e, "TCPSPOOL_FIXTURE_", 17) == 0) {
				snprintf(name, sizeof(name), "%.*s",
				    (int)strcspn(*e, "="), *e);
				break;
			}
		if (name[0] == '\0')
			break;
		unsetenv(name);
	}
	setenv("LD_PRELOAD", o.lib, 1);
	setenv("TCPSPOOL_DIR", o.dir, 1);
	setenv("TCPSPOOL_MAX", "64G", 0);
	setenv("TCPSPOOL_MAX_STREAM", "64G", 0);
	setenv("TCPSPOOL_MIN_FREE", "1G", 0);
	setenv("TCPSPOOL_LINGER", "0", 0);
	/* By its own name, not "exe": the threads' names start from it. */
	if ((len = readlink("/proc/self/exe", self, sizeof(self) - 1)) < 0)
		_exit(127);
	self[len] = '\0';
	execl(self, "scale_bench", "serve", n, p, b, (char *)NULL);
	_exit(127);
}

/* Runs `CLI ls --dir DIR`, output counted; wall ms, exit code, lines. */
static double
time_ls(int *code, long *lines)
{
	int out[2], st;
	char buf[65536];
	int64_t t;
	ssize_t r;
	pid_t pid;

	if (pipe2(out, O_CLOEXEC) != 0)
		fail("pipe: %s", strerror(errno));
	t = bench_ns();
	if ((pid = fork()) == 0) {
		dup2(out[1], STDOUT_FILENO);
		execl(o.cli, "tcpspool", "ls", "--dir", o.dir, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	*lines = 0;
	while ((r = read(out[0], buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < r; i++)
			*lines += buf[i] == '\n';
	close(out[0]);
	waitpid(pid, &st, 0);
	*code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return (double)(bench_ns() - t) / 1e6;
}

static long long
task_ticks(pid_t pid)
{
	char path[64], text[1024], *p;
	unsigned long long ut = 0, st = 0;
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	if ((p = strrchr(text, ')')) == NULL || sscanf(p + 2, "%*c %*d %*d "
	    "%*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (long long)(ut + st);
}

static void
raise_nofile(int want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_max < (rlim_t)want) {
		struct rlimit up = { (rlim_t)want, (rlim_t)want };

		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			return;		/* allowed to raise it (root) */
	}
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
}

static void
usage(void)
{
	fprintf(stderr, "usage: scale_bench --lib LIB [--connections N] "
	    "[--kib K] [--sndbuf B] [--rcvbuf B]\n"
	    "       [--sources S] [--spool-dir DIR] [--cli TCPSPOOL] "
	    "[--cpu-ms MS] [--deadline S]\n");
	exit(2);
}

static void
options(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "lib", required_argument, NULL, 'l' },
		{ "connections", required_argument, NULL, 'n' },
		{ "kib", required_argument, NULL, 'k' },
		{ "sndbuf", required_argument, NULL, 's' },
		{ "rcvbuf", required_argument, NULL, 'r' },
		{ "sources", required_argument, NULL, 'a' },
		{ "spool-dir", required_argument, NULL, 'd' },
		{ "cli", required_argument, NULL, 'c' },
		{ "cpu-ms", required_argument, NULL, 'u' },
		{ "deadline", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	o.lib = getenv("TCPSPOOL_TEST_PRELOAD");
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'l': o.lib = optarg; break;
		case 'n': o.n = atoi(optarg); break;
		case 'k': o.kib = atol(optarg); break;
		case 's': o.sndbuf = atoi(optarg); break;
		case 'r': o.rcvbuf = atoi(optarg); break;
		case 'a': o.sources = atoi(optarg); break;
		case 'd': o.dir = optarg; break;
		case 'c': o.cli = optarg; break;
		case 'u': o.cpu_ms = atoi(optarg); break;
		case 't': o.deadline_s = atoi(optarg); break;
		default: usage();
		}
	}
	if (optind != argc || o.lib == NULL || o.lib[0] == '\0' || o.n < 1 ||
	    o.kib < 1 || o.sources < 1 || o.sources > 254 ||
	    o.deadline_s < 1 || o.cpu_ms < 0)
		usage();
}

int
main(int argc, char **argv)
{
	static char tmpl[] = "/var/tmp/tcpspool-scale.XXXXXX";
	int s_status[2], s_control[2], c_status[2], c_control[2];
	long long per, idle_heap, stalled_heap, drained_heap, spool_ms;
	long idle_rss, stalled_rss, drained_rss, ls_lines = 0;
	struct bench_fds idle_fds, stalled_fds, drained_fds;
	double deliver_ms = 0, ls_ms = -1, cpu_pct = -1, proc_pct = -1;
	char line[256], kinds[160], lkinds[160], names[320] = "";
	long long delivered;
	unsigned short port;
	int st, ls_code = 0, left, k;
	char capped[256] = "";
	double n;

	if (argc >= 5 && strcmp(argv[1], "serve") == 0)
		return serve(argc, argv);
	options(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	deadline = bench_ns() + (int64_t)o.deadline_s * 1000000000;
	if (o.dir == NULL) {
		if ((o.dir = mkdtemp(tmpl)) == NULL)
			err(1, "mkdtemp %s", tmpl);
		o.own_dir = true;
	}
	/* The server: N of its own, N duplicates, the spool's files. */
	raise_nofile(8 * o.n + 1024);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_stop);
	signal(SIGTERM, on_stop);
	pattern_init();
	per = per_conn_bytes();
	n = o.n;
	if (pipe2(s_status, O_CLOEXEC) != 0 || pipe2(s_control, O_CLOEXEC) ||
	    pipe2(c_status, O_CLOEXEC) || pipe2(c_control, O_CLOEXEC))
		err(1, "pipe");
	printf("scale_bench: %d connections, %lld bytes each (%ld KiB past "
	    "the kernel's buffers: SO_SNDBUF %d, SO_RCVBUF %d), spool dir "
	    "%s\n", o.n, per, o.kib, o.sndbuf, o.rcvbuf, o.dir);

	server_pid = start_server(s_status[1], s_control[0], per);
	close(s_status[1]);
	close(s_control[0]);
	expect(s_status[0], "server", "port ", line, sizeof(line));
	port = (unsigned short)atoi(line + 5);
	if ((client_pid = fork()) < 0)
		fail("fork: %s", strerror(errno));
	if (client_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(s_status[0]);
		close(s_control[1]);
		close(c_status[0]);
		close(c_control[1]);
		_exit(clients(c_status[1], c_control[0], port));
	}
	close(c_status[1]);
	close(c_control[0]);
	expect(c_status[0], "clients", "connected", line, sizeof(line));
	expect(s_status[0], "server", "accepted", line, sizeof(line));
	idle_heap = field(line, "heap=");
	idle_rss = bench_proc_rss_kib(server_pid);
	idle_fds = bench_fds(server_pid);

	say(s_control[1], "spool\n");
	expect(s_status[0], "server", "spooled", line, sizeof(line));
	spool_ms = field(line, "ms=");
	stalled_heap = field(line, "heap=");
	k = (int)field(line, "k=");
	if (k < 1)
		fail("server: no connection could be stalled (%s)", line);
	struct rlimit rl;

	getrlimit(RLIMIT_NOFILE, &rl);
	if (k < o.n) {
		snprintf(capped, sizeof(capped), " (%d asked: the fd limit "
		    "%llu, which this process could not raise, holds no more "
		    "at %.1f fds each)", o.n, (unsigned long long)rl.rlim_cur,
		    1 + (double)(bench_fds(server_pid).total - idle_fds.total) /
		    k);
		printf("scale_bench: only %d of %d connections stalled%s\n",
		    k, o.n, capped);
	}
	n = k;	/* every figure per stalled connection */
	printf("server wrote %.1f MiB into %d connections in %.1f s\n",
	    per * n / 1048576, k, spool_ms / 1e3);
	if (o.cpu_ms > 0 || o.cli != NULL) {
		/* Every frame flushed (TCPSPOOL_FLUSH, 100 ms by default). */
		usleep(1000000);
	}
	/* The library parks a connection whose socket took nothing for a
	 * second: wait (bounded) until the stalled ones hold at most their
	 * duplicate, then until the server's RSS stopped falling for 2 s
	 * (freed pages are given back in waves). A library that never parks
	 * is measured as it is. */
	{
		int64_t t0 = bench_ns(), since;
		long low, cur;

		while (bench_fds(server_pid).total > idle_fds.total + k &&
		    bench_ns() - t0 < 60000000000LL && bench_ns() < deadline)
			usleep(100000);
		low = bench_proc_rss_kib(server_pid);
		since = bench_ns();
		while (bench_ns() - since < 2000000000LL &&
		    bench_ns() - t0 < 90000000000LL && bench_ns() < deadline) {
			usleep(100000);
			if ((cur = bench_proc_rss_kib(server_pid)) < low) {
				low = cur;
				since = bench_ns();
			}
		}
	}
	stalled_rss = bench_proc_rss_kib(server_pid);
	stalled_fds = bench_fds(server_pid);
	if (o.cpu_ms > 0) {
		long long a = bench_lib_thread_ticks(server_pid, names,
		    sizeof(names)), pa = task_ticks(server_pid), b, pb;
		double hz = (double)sysconf(_SC_CLK_TCK);
		int64_t t = bench_ns();

		usleep((useconds_t)o.cpu_ms * 1000);
		b = bench_lib_thread_ticks(server_pid, names, sizeof(names));
		pb = task_ticks(server_pid);
		double s = (double)(bench_ns() - t) / 1e9;

		cpu_pct = (double)(b - a) / hz / s * 100;
		proc_pct = (double)(pb - pa) / hz / s * 100;
		printf("CPU while stalled, over %.1f s: the library's thread "
		    "(%s) %.2f %% of a core, the whole server %.2f %%\n", s,
		    names, cpu_pct, proc_pct);
	}
	if (o.cli != NULL) {
		ls_ms = time_ls(&ls_code, &ls_lines);
		printf("tcpspool ls --dir: %.0f ms, exit %d, %ld lines\n",
		    ls_ms, ls_code, ls_lines);
	}

	say(c_control[1], "go %d\n", k);
	expect(c_status[0], "clients", "delivered", line, sizeof(line));
	deliver_ms = (double)field(line, "ms=");
	delivered = field(line, "bytes=");
	printf("clients read %.1f MiB in %.1f s, byte-exact so far\n",
	    delivered / 1048576.0, deliver_ms / 1e3);
	/* The library lets go of what the drained streams held (a figure:
	 * looked at for SETTLE_NS at most). */
	int64_t settle = bench_ns() + SETTLE_NS;

	do {
		drained_fds = bench_fds(server_pid);
		if (drained_fds.total <= idle_fds.total)
			break;
		usleep(10000);
	} while (bench_ns() < settle && !expired());
	say(s_control[1], "stat\n");
	expect(s_status[0], "server", "stat", line, sizeof(line));
	drained_heap = field(line, "heap=");
	drained_rss = bench_proc_rss_kib(server_pid);

	say(s_control[1], "close\n");
	expect(s_status[0], "server", "closed", line, sizeof(line));
	expect(c_status[0], "clients", "eof", line, sizeof(line));
	if (waitpid(client_pid, &st, 0) != client_pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0)
		fail("clients ended with status %#x", st);
	client_pid = -1;
	if (waitpid(server_pid, &st, 0) != server_pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0)
		fail("server ended with status %#x", st);
	server_pid = -1;
	while ((left = stream_files()) > 0 && !expired())
		usleep(10000);
	if (left != 0)
		fail("%d streams left in the spool dir %s", left, o.dir);
	if (o.own_dir)
		nftw(o.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);

	double rss_per = (double)(stalled_rss - idle_rss) / n;
	double fds_per = 1 + (double)(stalled_fds.total - idle_fds.total) / n;
	double left_fds = (double)(drained_fds.total - idle_fds.total) / n;
	double left_heap = (double)(drained_heap - idle_heap) / n;

	printf("server: RSS idle %ld KiB, stalled %ld KiB, drained %ld KiB; "
	    "heap idle %lld B, stalled %lld B (%.1f KiB per connection), "
	    "drained %lld B; fds idle %d, stalled %d, drained %d\n", idle_rss,
	    stalled_rss, drained_rss, idle_heap, stalled_heap,
	    (double)(stalled_heap - idle_heap) / n / 1024, drained_heap,
	    idle_fds.total, stalled_fds.total, drained_fds.total);
	printf("ROW|%d stalled connections in one process%s, %.2f MiB "
	    "written to each: RSS per stalled connection|%.1f KiB (RSS %.0f "
	    "MiB; heap %.1f KiB per connection)|the same connections idle: "
	    "RSS %.0f MiB|—|≤ 32 KiB|%s\n", k, capped, per / 1048576.0,
	    rss_per,
	    stalled_rss / 1024.0, (double)(stalled_heap - idle_heap) / n /
	    1024, idle_rss / 1024.0, rss_per <= 32 ? "met" : "MISSED");
	printf("ROW|the same: fds per stalled connection|%.2f (the "
	    "application's 1 + the library's %s); %d in the process|idle: 1 "
	    "per connection, %d in the process|—|≤ 2|%s\n", fds_per,
	    bench_fds_diff_str(idle_fds, stalled_fds, k, kinds,
	    sizeof(kinds)), stalled_fds.total, idle_fds.total,
	    fds_per <= 2 && k == o.n ? "met" : "MISSED");
	if (cpu_pct >= 0)
		printf("ROW|the same: the replay thread's CPU while all are "
		    "stalled (%.1f s)|%.2f %% of a core (found %s)|the whole "
		    "server process: %.2f %%|—|near 0 (< 1 %%)|%s\n",
		    o.cpu_ms / 1e3, cpu_pct, names, proc_pct,
		    cpu_pct < 1 ? "met" : "MISSED");
	printf("ROW|the same: time to deliver everything once the clients "
	    "read (%.1f GiB, every byte checked)|%.1f s (%.0f MB/s), "
	    "byte-exact, then EOF on each|written into the spool in %.1f "
	    "s|—|all delivered byte-exact|met\n", delivered / 1073741824.0,
	    deliver_ms / 1e3, delivered / deliver_ms / 1e3, spool_ms / 1e3);
	printf("ROW|the same, after delivery (application fds still open): "
	    "left per connection|%.2f fds (%s), %.0f B of heap (RSS %+.1f "
	    "KiB)|before the stall|—|0 extra fds; heap < 2 KiB "
	    "(the stream's own record, no buffers)|%s\n",
	    left_fds, bench_fds_diff_str(idle_fds, drained_fds, k, lkinds,
	    sizeof(lkinds)), left_heap, (double)(drained_rss - idle_rss) / n,
	    left_fds <= 0 && left_heap < 2048 ? "met" : "MISSED");
	if (ls_ms >= 0)
		printf("ROW|tcpspool ls --dir on the spool dir of %d stalled "
		    "streams|%.2f s wall (exit %d, %ld lines)|—|—|< 1 s|%s\n",
		    k, ls_ms / 1e3, ls_code, ls_lines,
		    ls_ms < 1000 && ls_code == 0 ? "met" : "MISSED");
	printf("scale_bench: %d connections delivered byte-exact (%d of them "
	    "stalled and spooled)\n", o.n, k);
	return 0;
}
