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
 * nor in the reader's receive queue, i.e. spooled; then, 300 ms later (the
 * spool's flush time has passed), RSS again. The figure is the growth per
 * stalled connection. The readers are in the same process: their kernel
 * buffers are not RSS.
 *
 * Usage: mem_bench [connections] [reps] [KiB to spool per connection]
 * Output: ROW| lines (bench_common.h) and free text on stdout.
 */
#include <sys/wait.h>

#include "bench_common.h"

#define MAX_REPS 16
#define CHUNK (64u << 10)

struct sample {
	long idle_kib, stalled_kib;
	long long spooled;
};

static void
one_rep(int n, long want, const uint8_t *pat, size_t patlen, struct sample *s)
{
	int *srv = calloc((size_t)n, sizeof(int));
	int *cli = calloc((size_t)n, sizeof(int));
	char msg[PATTERN_DEFAULT_SIZE];
	long long spooled = 0;
	int i, l = bench_listen();

	if (srv == NULL || cli == NULL)
		err(2, "calloc");
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
	}
	usleep(300000);
	s->stalled_kib = bench_rss_kib();
	s->spooled = spooled;
	for (i = 0; i < n; i++) {
		bench_abort_close(srv[i]);
		close(cli[i]);
	}
	close(l);
	free(srv);
	free(cli);
}

int
main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1000;
	int reps = argc > 2 ? atoi(argv[2]) : 3;
	long want = (argc > 3 ? atol(argv[3]) : 1024) * 1024;
	double per[MAX_REPS], ratio[MAX_REPS], idle[MAX_REPS], stalled[MAX_REPS];
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
		spooled += s.spooled / reps;
		printf("rep %d: %d connections, RSS idle %ld KiB, stalled %ld KiB "
		    "(%.1f KiB per stalled connection), %.1f MiB spooled\n", i,
		    n, s.idle_kib, s.stalled_kib, per[i],
		    (double)s.spooled / 1048576);
	}
	r = bench_spread(ratio, (size_t)reps);
	double pm = bench_pct(per, (size_t)reps, 50);
	double pmin = per[0], pmax = per[reps - 1];

	printf("ROW|memory: %d stalled connections, %.2f MiB spooled each|"
	    "%.1f KiB RSS per stalled connection (%.1f–%.1f); RSS %.0f MiB|"
	    "%d idle connections: RSS %.0f MiB|RSS %s|≤ 128 KiB per stalled "
	    "connection|%s\n", n, (double)spooled / n / 1048576, pm, pmin,
	    pmax, bench_pct(stalled, (size_t)reps, 50) / 1024, n,
	    bench_pct(idle, (size_t)reps, 50) / 1024,
	    bench_ratio_str(r, rs, sizeof(rs)), pm <= 128 ? "met" : "MISSED");
	free(pat);
	return 0;
}
