/*
 * mem_bench — the memory a stalled connection costs the application's
 * process. Run it under the library (LD_PRELOAD=libtcpspool.so);
 * scripts/bench.sh does, with TCPSPOOL_DIR on the local disk.
 *
 * In a fresh child process per repetition: N loopback connections, each
 * with one 28-byte message sent and read (idle connections: the
 * reference), then RSS; then every connection's reader stops reading and
 * the application writes the pattern.h stream in 64 KiB non-blocking
 * writes until at least 1 MiB of it is neither in the kernel's send queue
 * nor in the reader's receive queue, i.e. spooled; then, once the library
 * has parked them (their fds down to the duplicate) and RSS stopped
 * falling for 2 s, RSS again. The figure is the growth per
 * stalled connection. The readers are in the same process: their kernel
 * buffers are not RSS.
 *
 * Before the idle connections, one connection is stalled, spooled and
 * drained, so that what the library keeps once per process (its thread's
 * epoll set and eventfd, the spool dir) is in the idle figures.
 *
 * The fds of a stalled spooling connection: the application's own, plus
 * what the process holds more than with the idle connections, per
 * connection (goal 2: the application's and the library's private
 * duplicate). Then every reader reads its whole stream; once the fd count
 * is back to the idle one (or 5 s passed: a bench reports, it never
 * hangs), the fds and heap bytes (mallinfo2, the library's allocations
 * included) left above the idle figures, per connection (goal 0 extra fds
 * and no buffers: under 2 KiB of heap per connection. What may stay is
 * the stream's own record, struct stream of about 0.7-0.8 KiB plus
 * malloc's overhead, which the library keeps for as long as the
 * application's fd is open; a buffer would be kilobytes more).
 *
 * Usage: mem_bench [connections] [reps] [KiB to spool per connection]
 * Output: ROW| lines (bench_common.h) and free text on stdout.
 */
#include <sys/wait.h>

#include "bench_common.h"

#define MAX_REPS 16
#define CHUNK (64u << 10)

struct sample {
	long idle_kib, stalled_kib, drained_kib;
	long long spooled;
	long long idle_heap, stalled_heap, drained_heap;
	struct bench_fds idle_fds, stalled_fds, drained_fds;
	double settle_ms;	/* from the last byte read to fds back */
};

/* Reads len bytes from fd (blocking). */
static void
read_exactly(int fd, long long len, int i)
{
	static uint8_t buf[256 << 10];

	while (len > 0) {
		ssize_t r = recv(fd, buf, len < (long long)sizeof(buf) ?
		    (size_t)len : sizeof(buf), 0);

		if (r <= 0)
			err(2, "connection %d: recv with %lld bytes to come",
			    i, len);
		len -= r;
	}
}

/* One connection through stall, spool and drain: the library's
 * once-per-process fds and memory exist from here on. */
static void
warm_up(int l, const uint8_t *pat, size_t patlen)
{
	long long sent = 0;
	int srv, cli;

	bench_pair(l, &srv, &cli, 65536, 65536);
	bench_nonblock(srv);
	while (sent - bench_kernel_held(srv, cli) < (256 << 10)) {
		if (write(srv, pat + sent % (patlen - CHUNK), CHUNK) !=
		    (ssize_t)CHUNK)
			err(2, "warm-up write (is libtcpspool.so preloaded?)");
		sent += CHUNK;
	}
	read_exactly(cli, sent, -1);
	close(srv);
	close(cli);
}

static void
one_rep(int n, long want, const uint8_t *pat, size_t patlen, struct sample *s)
{
	int *srv = calloc((size_t)n, sizeof(int));
	int *cli = calloc((size_t)n, sizeof(int));
	long long *sent_by = calloc((size_t)n, sizeof(long long));
	char msg[PATTERN_DEFAULT_SIZE];
	long long spooled = 0;
	int64_t t;
	int i, l = bench_listen();

	if (srv == NULL || cli == NULL || sent_by == NULL)
		err(2, "calloc");
	warm_up(l, pat, patlen);
	for (i = 0; i < n; i++) {
		bench_pair(l, &srv[i], &cli[i], 65536, 65536);
		bench_nonblock(srv[i]);
		if (write(srv[i], pat, sizeof(msg)) != (ssize_t)sizeof(msg) ||
		    recv(cli[i], msg, sizeof(msg), MSG_WAITALL) !=
		    (ssize_t)sizeof(msg))
			err(2, "idle connection %d", i);
	}
	usleep(300000);
	s->idle_kib = bench_rss_kib();
	s->idle_heap = bench_heap_bytes();
	s->idle_fds = bench_fds(0);
	for (i = 0; i < n; i++) {
		long sent = 0;
		size_t off = sizeof(msg);

		while (sent - bench_kernel_held(srv[i], cli[i]) < want) {
			if (off + CHUNK > patlen)
				off = 0;
			if (write(srv[i], pat + off, CHUNK) != (ssize_t)CHUNK)
				err(2, "connection %d: write after %ld bytes "
				    "(is libtcpspool.so preloaded?)", i, sent);
			sent += CHUNK;
			off += CHUNK;
		}
		spooled += sent - bench_kernel_held(srv[i], cli[i]);
		sent_by[i] = sent;
	}
	/* The library parks a connection whose socket took nothing for a
	 * second (its spool fds and buffers go): wait until every stalled
	 * connection holds at most its duplicate (fds), then until the RSS
	 * has stopped falling for 2 s (the freed pages are given back in
	 * waves). Both bounded: a library that never parks is measured as
	 * it is after 30 s. */
	t = bench_ns();
	while (bench_fds(0).total > s->idle_fds.total + n &&
	    bench_ns() - t < 30000000000LL)
		usleep(50000);
	{
		long low = bench_rss_kib(), cur;
		int64_t since = bench_ns();

		while (bench_ns() - since < 2000000000LL &&
		    bench_ns() - t < 45000000000LL) {
			usleep(100000);
			if ((cur = bench_rss_kib()) < low) {
				low = cur;
				since = bench_ns();
			}
		}
	}
	s->stalled_kib = bench_rss_kib();
	s->stalled_heap = bench_heap_bytes();
	s->stalled_fds = bench_fds(0);
	s->spooled = spooled;
	/* Drain: every reader reads its whole stream. */
	for (i = 0; i < n; i++)
		read_exactly(cli[i], sent_by[i], i);
	t = bench_ns();
	do {
		s->drained_fds = bench_fds(0);
		if (s->drained_fds.total <= s->idle_fds.total)
			break;
		usleep(10000);
	} while (bench_ns() - t < 5000000000LL);
	s->settle_ms = (double)(bench_ns() - t) / 1e6;
	s->drained_kib = bench_rss_kib();
	s->drained_heap = bench_heap_bytes();
	for (i = 0; i < n; i++) {
		bench_abort_close(srv[i]);
		close(cli[i]);
	}
	close(l);
	free(srv);
	free(cli);
	free(sent_by);
}

int
main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1000;
	int reps = argc > 2 ? atoi(argv[2]) : 3;
	long want = (argc > 3 ? atol(argv[3]) : 1024) * 1024;
	double per[MAX_REPS], ratio[MAX_REPS], idle[MAX_REPS], stalled[MAX_REPS];
	double nfds[MAX_REPS], left_fds[MAX_REPS], left_heap[MAX_REPS];
	double left_rss[MAX_REPS];
	struct sample last;
	char kinds[128], lkinds[128];
	size_t patlen = 4u << 20;
	uint8_t *pat;
	struct bench_spread r;
	long long spooled = 0;
	char rs[64];
	int i;

	if (n < 1)
		n = 1;
	if (reps < 1 || reps > MAX_REPS)
		reps = 3;
	setvbuf(stdout, NULL, _IOLBF, 0);
	bench_raise_nofile();
	pat = bench_pattern(patlen);
	for (i = 0; i < reps; i++) {
		struct sample s;
		int fds[2], st;
		pid_t pid;

		if (pipe(fds) != 0)
			err(2, "pipe");
		pid = fork();
		if (pid < 0)
			err(2, "fork");
		if (pid == 0) {
			close(fds[0]);
			one_rep(n, want, pat, patlen, &s);
			if (write(fds[1], &s, sizeof(s)) != (ssize_t)sizeof(s))
				_exit(2);
			_exit(0);
		}
		close(fds[1]);
		if (read(fds[0], &s, sizeof(s)) != (ssize_t)sizeof(s) ||
		    waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0)
			errx(2, "repetition %d failed", i);
		close(fds[0]);
		idle[i] = (double)s.idle_kib;
		stalled[i] = (double)s.stalled_kib;
		per[i] = (double)(s.stalled_kib - s.idle_kib) / n;
		ratio[i] = (double)s.stalled_kib / (double)s.idle_kib;
		/* Idle, each connection has two fds here (its reader's too):
		 * the application's one plus the growth. */
		nfds[i] = 1 + (double)(s.stalled_fds.total -
		    s.idle_fds.total) / n;
		left_fds[i] = (double)(s.drained_fds.total -
		    s.idle_fds.total) / n;
		left_heap[i] = (double)(s.drained_heap - s.idle_heap) / n;
		left_rss[i] = (double)(s.drained_kib - s.idle_kib) / n;
		spooled += s.spooled / reps;
		printf("rep %d: %d connections, RSS idle %ld KiB, stalled %ld KiB "
		    "(%.1f KiB per stalled connection), %.1f MiB spooled\n", i,
		    n, s.idle_kib, s.stalled_kib, per[i],
		    (double)s.spooled / 1048576);
		printf("rep %d: heap idle %lld B, stalled %lld B (%.1f KiB per "
		    "connection), drained %lld B; fds idle %d, stalled %d "
		    "(per connection %s), drained %d after %.0f ms (%s)\n", i,
		    s.idle_heap, s.stalled_heap,
		    (double)(s.stalled_heap - s.idle_heap) / n / 1024,
		    s.drained_heap, s.idle_fds.total, s.stalled_fds.total,
		    bench_fds_diff_str(s.idle_fds, s.stalled_fds, n, kinds,
		    sizeof(kinds)), s.drained_fds.total, s.settle_ms,
		    bench_fds_diff_str(s.idle_fds, s.drained_fds, n, lkinds,
		    sizeof(lkinds)));
		last = s;
	}
	r = bench_spread(ratio, (size_t)reps);
	double pm = bench_pct(per, (size_t)reps, 50);
	double pmin = per[0], pmax = per[reps - 1];

	printf("ROW|memory: %d stalled connections, %.2f MiB spooled each|"
	    "%.1f KiB RSS per stalled connection (%.1f–%.1f); RSS %.0f MiB|"
	    "%d idle connections: RSS %.0f MiB|RSS %s|≤ 32 KiB per stalled "
	    "connection|%s\n", n, (double)spooled / n / 1048576, pm, pmin,
	    pmax, bench_pct(stalled, (size_t)reps, 50) / 1024, n,
	    bench_pct(idle, (size_t)reps, 50) / 1024,
	    bench_ratio_str(r, rs, sizeof(rs)), pm <= 32 ? "met" : "MISSED");
	double fm = bench_pct(nfds, (size_t)reps, 50);
	double lf = bench_pct(left_fds, (size_t)reps, 50);
	double lh = bench_pct(left_heap, (size_t)reps, 50);
	double lr = bench_pct(left_rss, (size_t)reps, 50);

	printf("ROW|fds per stalled spooling connection (%d connections)|"
	    "%.2f (max of reps %.2f; the application's 1 + the library's %s, "
	    "last rep)|idle connection: 1|—|≤ 2|%s\n", n, fm,
	    nfds[reps - 1], bench_fds_diff_str(last.idle_fds, last.stalled_fds,
	    n, kinds, sizeof(kinds)), fm <= 2 ? "met" : "MISSED");
	printf("ROW|left per connection after the spool drained (%d "
	    "connections, application fds still open)|%.2f extra fds, %.0f B "
	    "of heap (RSS %+.1f KiB)|the same connections before the stall|"
	    "—|0 extra fds; heap < 2 KiB (the stream's own "
	    "record, no buffers)|%s\n", n, lf, lh, lr,
	    lf <= 0 && lh < 2048 ? "met" : "MISSED");
	free(pat);
	return 0;
}
