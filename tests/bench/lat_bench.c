/*
 * lat_bench — one-way latency of paced small messages, sender to reader,
 * on loopback: what a path (plain kernel, the library's direct path, a
 * relay) adds per message when the reader keeps up.
 *
 *   lat_bench send COUNT INTERVAL_US   listens on 127.0.0.1 (any port),
 *                                      prints "port P" on stdout, accepts
 *                                      one connection and sends COUNT
 *                                      64-byte messages, one every
 *                                      INTERVAL_US, each carrying its
 *                                      CLOCK_MONOTONIC send time; then
 *                                      closes
 *   lat_bench recv PORT                connects, reads to EOF, prints
 *                                      "count N p50_ns X p99_ns Y"
 * The clocks agree: both ends are on this machine.
 *
 *   lat_bench drain LIB [REPS] [STALL_MS] [RUN_MS] [RATE]
 *       the application's own cost while its spool fills and drains
 *       (issue 13): a writer of 28-byte sendmsg calls (server A's
 *       messages, pattern.h) paced at RATE calls a second (default
 *       200000; in 1 ms ticks) on a non-blocking loopback connection with
 *       default buffers and Nagle on, as server A's; its reader (a thread)
 *       reads nothing for STALL_MS (2000), then reads as fast as it can
 *       (256 KiB recv) to the end of the run, RUN_MS after the stall
 *       (1000). Every sendmsg call is timed (CLOCK_MONOTONIC around the
 *       call alone). Without the library the writer gets EAGAIN once the
 *       kernel's buffers are full, as server A did; this writer then
 *       waits in poll(POLLOUT), untimed, and sends the rest: the best a
 *       plain event-loop program does. Each repetition runs three child
 *       processes of this program, in turn: without the library, with
 *       LIB preloaded and TCPSPOOL_FSYNC=never, with interval (the rest
 *       of the environment's TCPSPOOL_ variables pass through). The
 *       reader checks every byte against pattern.h. Prints ROW| lines:
 *       p50 / p99 / p99.9 / max of the calls of each run, the medians
 *       over repetitions (max: the largest), against the writer without
 *       the library; and the time from the first read to the last byte
 *       written before it (the backlog: spool and kernel). Goal: the
 *       slowest call at most twice the plain writer's slowest in the same
 *       run. Not an absolute bound: on a shared 2-core machine the plain
 *       writer's slowest call is itself milliseconds (preemption), and
 *       what the issue saw was 19.8 ms (an fdatasync on the application's
 *       thread) against 5 ms.
 *   lat_bench drain-child STALL_MS RUN_MS RATE   one run, one line
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>

#include "bench_common.h"

#define MSG 64

static int
do_send(long count, long interval_us)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	uint8_t msg[MSG];
	int l = bench_listen(), fd;
	long i;

	if (getsockname(l, (struct sockaddr *)&a, &alen) != 0)
		err(2, "getsockname");
	printf("port %u\n", ntohs(a.sin_port));
	fflush(stdout);
	if ((fd = accept(l, NULL, NULL)) < 0)
		err(2, "accept");
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	memset(msg, '.', sizeof(msg));
	msg[MSG - 1] = '\n';
	for (i = 0; i < count; i++) {
		struct timespec d = { 0, interval_us * 1000 };
		int64_t t = bench_ns();

		memcpy(msg, &t, sizeof(t));
		if (send(fd, msg, sizeof(msg), MSG_NOSIGNAL) != MSG)
			err(2, "send");
		nanosleep(&d, NULL);
	}
	close(fd);
	close(l);
	return 0;
}

static int
do_recv(const char *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	size_t n = 0, cap = 1 << 16, have = 0;
	double *lat = malloc(cap * sizeof(double));
	uint8_t buf[MSG * 64];
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	ssize_t r;

	if (lat == NULL || fd < 0)
		err(2, "setup");
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)atoi(port));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		err(2, "connect");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	while ((r = recv(fd, buf + have, sizeof(buf) - have, 0)) > 0) {
		int64_t now = bench_ns();
		size_t off;

		have += (size_t)r;
		for (off = 0; off + MSG <= have; off += MSG) {
			int64_t t;

			memcpy(&t, buf + off, sizeof(t));
			if (n == cap && (lat = realloc(lat,
			    (cap *= 2) * sizeof(double))) == NULL)
				err(2, "realloc");
			lat[n++] = (double)(now - t);
		}
		memmove(buf, buf + off, have - off);
		have -= off;
	}
	if (r < 0)
		err(2, "recv");
	printf("count %zu p50_ns %.0f p99_ns %.0f\n", n, bench_pct(lat, n, 50),
	    bench_pct(lat, n, 99));
	return n > 0 ? 0 : 1;
}

/* --- drain: the application's call times while its spool drains --- */

#define DRAIN_MSG PATTERN_DEFAULT_SIZE
#define DRAIN_MAX_REPS 16

static struct {
	int fd;
	int64_t t_read;		/* when the reader starts reading */
	_Atomic long long written;	/* bytes the writer was told went */
	_Atomic bool done;		/* the writer closed the connection */
	long long backlog;	/* written when the reader began */
	int64_t backlog_ns;	/* from the first read to its last byte */
	long long got;
	long long mismatch;	/* offset of the first wrong byte, or -1 */
} dr;

static void *
drain_reader(void *arg)
{
	static uint8_t buf[256 << 10];
	char want[DRAIN_MSG];
	long long off = 0;
	uint64_t seq = 1;
	size_t pos = 0;
	ssize_t r;

	(void)arg;
	pattern_message(want, sizeof(want), -1, seq);
	dr.mismatch = -1;
	struct timespec until = { dr.t_read / 1000000000,
		dr.t_read % 1000000000 };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until,
	    NULL) == EINTR)
		;
	dr.t_read = bench_ns();
	dr.backlog = atomic_load(&dr.written);
	dr.backlog_ns = -1;
	while ((r = recv(dr.fd, buf, sizeof(buf), 0)) > 0) {
		dr.got += r;
		if (dr.backlog_ns < 0 && dr.got >= dr.backlog)
			dr.backlog_ns = bench_ns() - dr.t_read;
		for (ssize_t i = 0; i < r; i++, off++) {
			if (dr.mismatch < 0 && buf[i] != (uint8_t)want[pos])
				dr.mismatch = off;
			if (++pos == DRAIN_MSG) {
				pattern_message(want, sizeof(want), -1, ++seq);
				pos = 0;
			}
		}
	}
	if (r < 0)
		err(2, "drain reader: recv");
	return NULL;
}

static int
drain_child(long stall_ms, long run_ms, long rate)
{
	size_t cap = (size_t)rate * (size_t)(stall_ms + run_ms) / 1000 + 1024;
	double *lat = malloc(cap * sizeof(double));
	char msg[DRAIN_MSG];
	size_t n = 0, pos = 0;
	uint64_t seq = 1;
	long long calls = 0, eagain = 0, due;
	int64_t t0, end, tick, now;
	int l = bench_listen(), srv, cli, zero = 0;
	pthread_t th;

	if (lat == NULL)
		err(2, "malloc");
	bench_pair(l, &srv, &cli, 0, 0);
	setsockopt(srv, IPPROTO_TCP, TCP_NODELAY, &zero, sizeof(zero));
	bench_nonblock(srv);
	dr.fd = cli;
	pattern_message(msg, sizeof(msg), -1, seq);
	t0 = bench_ns();
	dr.t_read = t0 + stall_ms * 1000000;	/* when the reader starts */
	end = t0 + (stall_ms + run_ms) * 1000000;
	if (pthread_create(&th, NULL, drain_reader, NULL) != 0)
		errx(2, "pthread_create");
	/* Each 1 ms tick sends what is due by then; the run ends at end
	 * (a late tick never carries it past). */
	for (tick = t0; (now = bench_ns()) < end; tick += 1000000) {
		struct timespec ts = { tick / 1000000000, tick % 1000000000 };

		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts,
		    NULL) == EINTR)
			;
		now = bench_ns();
		due = (long long)((double)((now < end ? now : end) - t0) *
		    rate / 1e9);
		while (calls < due) {
			struct iovec iov = { msg + pos, DRAIN_MSG - pos };
			struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
			int64_t a = bench_ns();
			ssize_t r = sendmsg(srv, &mh, MSG_NOSIGNAL);
			int64_t b = bench_ns();

			if (n < cap)
				lat[n++] = (double)(b - a);
			if (r < 0 && errno == EAGAIN) {
				struct pollfd p = { srv, POLLOUT, 0 };

				eagain++;
				poll(&p, 1, -1);
				continue;
			}
			if (r <= 0)
				err(2, "sendmsg");
			atomic_fetch_add(&dr.written, r);
			pos += (size_t)r;
			if (pos < DRAIN_MSG)
				continue;	/* the rest of a short write */
			pattern_message(msg, sizeof(msg), -1, ++seq);
			pos = 0;
			calls++;
		}
	}
	/* The rest of a message cut by a short write, then the end. */
	while (pos > 0 && pos < DRAIN_MSG) {
		struct pollfd p = { srv, POLLOUT, 0 };
		ssize_t r = send(srv, msg + pos, DRAIN_MSG - pos, MSG_NOSIGNAL);

		if (r > 0)
			pos += (size_t)r, atomic_fetch_add(&dr.written, r);
		else if (r < 0 && errno == EAGAIN)
			poll(&p, 1, -1);
		else
			err(2, "send");
	}
	shutdown(srv, SHUT_WR);
	pthread_join(th, NULL);
	close(srv);
	close(cli);
	close(l);
	if (dr.got != atomic_load(&dr.written) || dr.mismatch >= 0)
		errx(2, "reader got %lld of %lld bytes, first wrong at %lld",
		    dr.got, (long long)atomic_load(&dr.written), dr.mismatch);
	/* bench_pct sorts: lat[n - 1] is the largest after it. */
	double p50 = bench_pct(lat, n, 50), p99 = bench_pct(lat, n, 99);
	double p999 = bench_pct(lat, n, 99.9);

	printf("calls %zu rate %.0f eagain %lld p50 %.0f p99 %.0f p999 %.0f "
	    "max %.0f backlog %lld backlog_ms %.1f\n", n,
	    (double)calls / ((double)(now - t0) / 1e9), eagain, p50, p99,
	    p999, lat[n - 1], dr.backlog, (double)dr.backlog_ns / 1e6);
	free(lat);
	return 0;
}

struct drain_run {	/* every field a double: see drain_med */
	double p50, p99, p999, max, backlog_ms, rate, eagain, backlog;
};

/* Runs one drain-child, with LD_PRELOAD=lib and TCPSPOOL_FSYNC=fsync if
 * lib is not NULL, without LD_PRELOAD otherwise. */
static void
drain_spawn(const char *lib, const char *fsync, const char *const *args,
    struct drain_run *out)
{
	char line[512];
	int fds[2], st;
	size_t len = 0;
	ssize_t r;
	pid_t pid;

	if (pipe(fds) != 0)
		err(2, "pipe");
	if ((pid = fork()) < 0)
		err(2, "fork");
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		if (lib != NULL) {
			setenv("LD_PRELOAD", lib, 1);
			setenv("TCPSPOOL_FSYNC", fsync, 1);
		} else {
			unsetenv("LD_PRELOAD");
		}
		execv("/proc/self/exe", (char *const *)args);
		_exit(127);
	}
	close(fds[1]);
	while (len < sizeof(line) - 1 &&
	    (r = read(fds[0], line + len, sizeof(line) - 1 - len)) > 0)
		len += (size_t)r;
	line[len] = '\0';
	close(fds[0]);
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0 || sscanf(line, "calls %*u rate %lf eagain "
	    "%lf p50 %lf p99 %lf p999 %lf max %lf backlog %lf backlog_ms "
	    "%lf", &out->rate, &out->eagain, &out->p50, &out->p99, &out->p999,
	    &out->max, &out->backlog, &out->backlog_ms) != 8)
		errx(2, "drain run (%s%s) failed: %s", lib ? "fsync=" :
		    "without the library", lib ? fsync : "", line);
	fprintf(stdout, "  %s%s: %s", lib ? "fsync=" : "without the library",
	    lib ? fsync : "", line);
}

static double
drain_med(struct drain_run *v, int n, size_t field)
{
	double x[DRAIN_MAX_REPS];

	for (int i = 0; i < n; i++)
		x[i] = *(double *)((char *)&v[i] + field);
	return bench_pct(x, (size_t)n, field == offsetof(struct drain_run,
	    max) ? 100 : 50);
}

static int
do_drain(int argc, char **argv)
{
	const char *lib = argv[2];
	int reps = argc > 3 ? atoi(argv[3]) : 3;
	const char *stall = argc > 4 ? argv[4] : "2000";
	const char *run = argc > 5 ? argv[5] : "1000";
	const char *rate = argc > 6 ? argv[6] : "200000";
	const char *args[] = { "lat_bench", "drain-child", stall, run, rate,
		NULL };
	static const char *const modes[] = { "never", "interval" };
	struct drain_run plain[DRAIN_MAX_REPS], lib_[2][DRAIN_MAX_REPS];
	char pl[160];

	if (reps < 1 || reps > DRAIN_MAX_REPS)
		reps = 3;
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("drain: 28-byte sendmsg at %s/s, reader stalls %s ms, then "
	    "reads for %s ms; %d repetitions\n", rate, stall, run, reps);
	for (int i = 0; i < reps; i++) {
		drain_spawn(NULL, NULL, args, &plain[i]);
		for (int m = 0; m < 2; m++)
			drain_spawn(lib, modes[m], args, &lib_[m][i]);
	}
#define MED(v, f) drain_med(v, reps, offsetof(struct drain_run, f))
	snprintf(pl, sizeof(pl), "%.2f / %.2f / %.1f / %.1f µs; backlog "
	    "%.1f MB read in %.0f ms", MED(plain, p50) / 1e3,
	    MED(plain, p99) / 1e3, MED(plain, p999) / 1e3,
	    MED(plain, max) / 1e3, MED(plain, backlog) / 1e6,
	    MED(plain, backlog_ms));
	for (int m = 0; m < 2; m++) {
		struct drain_run *v = lib_[m];

		printf("ROW|application write latency while the spool fills "
		    "and drains, TCPSPOOL_FSYNC=%s (28-byte sendmsg at %s/s, "
		    "reader stalls %s ms then reads), p50 / p99 / p99.9 / max|"
		    "%.2f / %.2f / %.1f / %.1f µs; backlog %.1f MB drained in "
		    "%.0f ms|without the library (waits in poll when the "
		    "kernel is full): %s|max %.2fx, p99.9 %.2fx (medians of "
		    "%d runs, max of max)|max ≤ 2x without the library (no "
		    "wait for the disk or the replay thread)|%s\n", modes[m], rate, stall,
		    MED(v, p50) / 1e3, MED(v, p99) / 1e3, MED(v, p999) / 1e3,
		    MED(v, max) / 1e3, MED(v, backlog) / 1e6,
		    MED(v, backlog_ms), pl, MED(v, max) / MED(plain, max),
		    MED(v, p999) / MED(plain, p999), reps,
		    MED(v, max) <= 2 * MED(plain, max) ? "met" : "MISSED");
	}
#undef MED
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "send") == 0)
		return do_send(atol(argv[2]), atol(argv[3]));
	if (argc == 3 && strcmp(argv[1], "recv") == 0)
		return do_recv(argv[2]);
	if (argc >= 3 && argc <= 7 && strcmp(argv[1], "drain") == 0)
		return do_drain(argc, argv);
	if (argc == 5 && strcmp(argv[1], "drain-child") == 0)
		return drain_child(atol(argv[2]), atol(argv[3]),
		    atol(argv[4]));
	fprintf(stderr, "usage: lat_bench send COUNT INTERVAL_US | "
	    "lat_bench recv PORT |\n"
	    "       lat_bench drain LIB [REPS] [STALL_MS] [RUN_MS] [RATE]\n");
	return 2;
}
