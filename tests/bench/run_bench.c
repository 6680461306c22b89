/*
 * run_bench — the replay thread's read path alone: what spool_cursor_run
 * costs per byte (pread, checksum, inflate, frame check, acknowledgement),
 * without a socket, so that a change to spool/ can be measured apart from
 * the kernel's sendmsg and from the reader (tests/bench/NOTES.md, "Replay
 * drain").
 *
 * Each repetition writes MiB of the pattern.h stream in records of the
 * given size through spool_stream_append (the level-1 deflater the build
 * loads: ISA-L igzip where libisal.so.2 loads), flushes, then takes every
 * byte back with the stream's own cursor as the pump does, one run at a
 * time, each acknowledged whole, timed in the thread's CPU time (on a
 * shared machine the wall clock also counts other processes' turns). The
 * spool is under $TMPDIR (default /var/tmp) and removed.
 *
 * Usage: run_bench [MiB] [record size] [reps]   (defaults 128 65536 5)
 * Output: one line, the median and min–max of the CPU per byte.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/uio.h>

#include "bench_common.h"
#include "spool.h"

#define MAX_REPS 16

static double
thread_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One repetition: the read path's CPU seconds per byte. */
static double
one_rep(struct spool_dir *d, const uint8_t *pat, size_t total, size_t wsize)
{
	struct spool_identity id = { 0 };
	struct spool_options o;
	struct spool_stream *s;
	struct spool_cursor *c;
	struct spool_run run;
	struct spool_err e;
	size_t off, got = 0;
	double t0, t;

	spool_options_default(&o);
	o.fsync = SPOOL_FSYNC_NEVER;
	id.pid = (int32_t)getpid();
	snprintf(id.local, sizeof(id.local), "127.0.0.1:1");
	snprintf(id.peer, sizeof(id.peer), "127.0.0.1:2");
	if (spool_stream_create(d, &id, &o, &s, &e) < 0)
		errx(2, "spool_stream_create: %s", e.msg);
	for (off = 0; off < total; off += wsize) {
		struct iovec v = { (void *)(pat + off), wsize };

		if (spool_stream_append(s, &v, 1, bench_ns(), &e) < 0)
			errx(2, "spool_stream_append: %s", e.msg);
	}
	if (spool_stream_flush(s, &e) < 0 || spool_stream_cursor(s, &c, &e) < 0)
		errx(2, "flush or cursor: %s", e.msg);
	t0 = thread_cpu_s();
	while (spool_cursor_run(c, &run, &e) == 1) {
		got += run.len;
		if (spool_cursor_ack_run(c, run.len, false, &e) < 0)
			errx(2, "spool_cursor_ack_run: %s", e.msg);
	}
	t = thread_cpu_s() - t0;
	if (got != total)
		errx(2, "read back %zu of %zu bytes", got, total);
	spool_cursor_close(c);
	(void)spool_stream_close(s, SPOOL_CLOSE_REMOVE, "run_bench", &e);
	return t / (double)total;
}

int
main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 128;
	size_t wsize = argc > 2 ? strtoul(argv[2], NULL, 10) : 65536;
	int reps = argc > 3 ? atoi(argv[3]) : 5, i;
	struct spool_limits lim = { 1ull << 40, 1ull << 40, 0 };
	const char *tmp = getenv("TMPDIR");
	double v[MAX_REPS];
	struct bench_spread sp;
	struct spool_dir *d;
	struct spool_err e;
	char path[4096];
	size_t total;
	uint8_t *pat;

	if (mib < 1 || mib > 4096 || wsize < 1 || wsize > 65536 ||
	    reps < 1 || reps > MAX_REPS)
		errx(2, "usage: run_bench [MiB] [record size] [reps]");
	total = (mib << 20) / wsize * wsize;	/* whole records */
	snprintf(path, sizeof(path), "%s/run_bench.XXXXXX",
	    tmp != NULL ? tmp : "/var/tmp");
	if (mkdtemp(path) == NULL)
		err(2, "mkdtemp");
	if (spool_dir_open(path, &lim, &d, &e) < 0)
		errx(2, "spool_dir_open: %s", e.msg);
	(void)spool_codec_load();
	pat = bench_pattern(total);
	for (i = 0; i < reps; i++)
		v[i] = one_rep(d, pat, total, wsize) * 1e9;
	sp = bench_spread(v, (size_t)reps);
	printf("read path, %zu-byte records, %zu MiB: %.3f ns of CPU per byte "
	    "(median of %d, %.3f–%.3f)\n", wsize, mib, sp.med, reps, sp.min,
	    sp.max);
	spool_dir_close(d);
	if (rmdir(path) != 0)
		warn("rmdir %s", path);
	free(pat);
	return 0;
}
