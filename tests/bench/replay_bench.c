/*
 * replay_bench — how fast the library hands a spool back to the network,
 * and how soon after a stalled peer's window reopens. Run it under the
 * library (LD_PRELOAD=libtcpspool.so); scripts/bench.sh does.
 *
 * drain: a loopback connection whose reader waits while the application
 *   writes N MiB of the pattern.h stream (64 KiB non-blocking writes, all
 *   but the kernel's few MiB go to the spool); then the reader reads as
 *   fast as it can (256 KiB recv) until the last byte, timed from its first
 *   read. References in the same run: a plain sender (a thread making the
 *   kernel's own blocking sendto of the same bytes, bypassing any
 *   interposer) to the same kind of reader on the same loopback; plain
 *   inflate of the same bytes compressed as the spool frames them
 *   (128 KiB, level 1).
 *
 * reopen: a connection with a small window stalls; 256 KiB more are
 *   spooled; after 120 ms (the spool has flushed its frame to disk) the
 *   reader reads everything the kernel held and on until the first spooled
 *   byte arrives: the time from its first read to that byte. Reference: the
 *   same with no spool, where a thread blocked in poll(POLLOUT) sends the
 *   next bytes itself through the kernel (the best a plain program could
 *   do); it shows what the kernel's window update alone costs.
 *
 * Usage: replay_bench [MiB to drain] [reps] [reopen trials] [write size]
 * (write size 1..65536, default 65536: the spool keeps one record per
 * application write, so 28 drains a spool of server A's records)
 * Output: ROW| lines (bench_common.h) and free text on stdout.
 */
#include <poll.h>
#include <pthread.h>
#include <zlib.h>

#include "bench_common.h"

#define MAX_REPS 16
#define CHUNK (64u << 10)
#define FRAME (128u << 10)
#define PATLEN (64u << 20)	/* the stream cycles through this many bytes */

static uint8_t *pat;
static size_t patlen;
static size_t wsize = CHUNK;	/* the application's write size */

static const uint8_t *
chunk_at(uint64_t off)
{
	return pat + off % patlen;
}

/* Reads until total bytes arrived; returns seconds from the first read. */
static double
read_all(int fd, uint64_t total)
{
	static uint8_t buf[256 << 10];
	uint64_t got = 0;
	int64_t t0 = bench_ns();

	while (got < total) {
		ssize_t r = recv(fd, buf, sizeof(buf), 0);

		if (r <= 0)
			err(2, "reader: recv after %llu of %llu bytes",
			    (unsigned long long)got, (unsigned long long)total);
		got += (uint64_t)r;
	}
	return (double)(bench_ns() - t0) / 1e9;
}

static double
drain_spool(int l, uint64_t total)
{
	uint64_t off;
	int srv, cli;
	double s;

	bench_pair(l, &srv, &cli, 0, 0);
	bench_nonblock(srv);
	for (off = 0; off < total; off += wsize)
		if (write(srv, chunk_at(off), wsize) != (ssize_t)wsize)
			err(2, "write into the spool (is libtcpspool.so "
			    "preloaded?)");
	s = read_all(cli, total);
	bench_abort_close(srv);
	close(cli);
	return s;
}

struct sender {
	int fd;
	uint64_t total;
};

static void *
plain_sender(void *arg)
{
	struct sender *sd = arg;
	uint64_t off = 0;

	while (off < sd->total) {
		ssize_t r = bench_raw_send(sd->fd, chunk_at(off), CHUNK,
		    MSG_NOSIGNAL);

		if (r <= 0)
			err(2, "plain sender");
		off += (uint64_t)r;
	}
	return NULL;
}

static double
drain_plain(int l, uint64_t total)
{
	struct sender sd;
	pthread_t th;
	int srv, cli;
	double s;

	bench_pair(l, &srv, &cli, 0, 0);
	sd.fd = srv;
	sd.total = total;
	if (pthread_create(&th, NULL, plain_sender, &sd) != 0)
		errx(2, "pthread_create");
	s = read_all(cli, total);
	pthread_join(th, NULL);
	close(srv);
	close(cli);
	return s;
}

struct frames {
	uint8_t **z;
	uLongf *zlen;
	size_t n;
};

static void
make_frames(struct frames *f)
{
	size_t i;

	f->n = patlen / FRAME;
	f->z = calloc(f->n, sizeof(*f->z));
	f->zlen = calloc(f->n, sizeof(*f->zlen));
	if (f->z == NULL || f->zlen == NULL)
		err(2, "calloc");
	for (i = 0; i < f->n; i++) {
		f->zlen[i] = compressBound(FRAME);
		f->z[i] = malloc(f->zlen[i]);
		if (f->z[i] == NULL || compress2(f->z[i], &f->zlen[i],
		    pat + i * FRAME, FRAME, 1) != Z_OK)
			errx(2, "compress2");
	}
}

static double
inflate_all(const struct frames *f, uint64_t total)
{
	static uint8_t out[FRAME];
	uint64_t done = 0;
	int64_t t0 = bench_ns();
	size_t i = 0;

	while (done < total) {
		uLongf olen = FRAME;

		if (uncompress(out, &olen, f->z[i], f->zlen[i]) != Z_OK)
			errx(2, "uncompress");
		done += olen;
		i = (i + 1) % f->n;
	}
	return (double)(bench_ns() - t0) / 1e9;
}

static void
drain(int l, uint64_t total, int reps)
{
	double sp[MAX_REPS], pl[MAX_REPS], inf[MAX_REPS];
	double rs[MAX_REPS], ri[MAX_REPS], mb = (double)total / 1e6;
	struct bench_spread a, b;
	struct frames f;
	char as[64], bs[64];
	int i;

	make_frames(&f);
	for (i = 0; i < reps; i++) {
		sp[i] = drain_spool(l, total);
		pl[i] = drain_plain(l, total);
		inf[i] = inflate_all(&f, total);
		rs[i] = pl[i] / sp[i];
		ri[i] = inf[i] / sp[i];
	}
	a = bench_spread(rs, (size_t)reps);
	b = bench_spread(ri, (size_t)reps);
	double sm = bench_pct(sp, (size_t)reps, 50);
	double pm = bench_pct(pl, (size_t)reps, 50);
	double im = bench_pct(inf, (size_t)reps, 50);

	printf("drain %.0f MB: replay %.1f MB/s | plain sender %.1f MB/s "
	    "(ratio %s) | inflate %.1f MB/s (ratio %s)\n", mb, mb / sm,
	    mb / pm, bench_ratio_str(a, as, sizeof(as)), mb / im,
	    bench_ratio_str(b, bs, sizeof(bs)));
	printf("ROW|replay: drain %.0f MiB of spool (written in %zu-byte "
	    "writes) to a reader reading as fast as it can|%.1f MB/s|plain "
	    "sender on loopback (64 KiB sends): %.1f MB/s|%s|≥ 0.5x|%s\n",
	    (double)total / 1048576, wsize, mb / sm, mb / pm, as,
	    a.med >= 0.5 ? "met" : "MISSED");
	printf("ROW|replay: the same drain (%zu-byte writes)|%.1f MB/s|plain "
	    "inflate, 128 KiB frames: %.1f MB/s|%s|≥ 0.8x|%s\n", wsize,
	    mb / sm, mb / im, bs, b.med >= 0.8 ? "met" : "MISSED");
	for (i = 0; i < (int)f.n; i++)
		free(f.z[i]);
	free(f.z);
	free(f.zlen);
}

/* Time from the first read after a stall to the byte at offset held. */
static double
first_byte_after(int cli, long held)
{
	static uint8_t buf[64 << 10];
	long got = 0;
	int64_t t0 = bench_ns();

	while (got <= held) {
		ssize_t r = recv(cli, buf, sizeof(buf), 0);

		if (r <= 0)
			err(2, "reopen: recv");
		got += r;
	}
	return (double)(bench_ns() - t0);
}

static void *
poll_sender(void *arg)
{
	int fd = *(int *)arg;
	struct pollfd p = { fd, POLLOUT, 0 };

	if (poll(&p, 1, 10000) == 1)
		bench_raw_send(fd, pat, CHUNK, MSG_NOSIGNAL | MSG_DONTWAIT);
	return NULL;
}

/* Fills the kernel of a small-window connection; returns bytes it holds. */
static long
stall(int srv, int cli, int raw)
{
	long sent = 0;

	for (;;) {
		ssize_t r = raw ? bench_raw_send(srv, pat + sent, 4096,
		    MSG_DONTWAIT | MSG_NOSIGNAL) : write(srv, pat + sent, 4096);

		if (r < 0 && errno == EAGAIN)
			break;
		if (r <= 0)
			err(2, "stall");
		sent += r;
		/* Under the library nothing fails: stop once spooling. */
		if (!raw && sent > 4 * bench_kernel_held(srv, cli) &&
		    sent > (256 << 10))
			break;
	}
	usleep(20000);
	return raw ? sent : bench_kernel_held(srv, cli);
}

static void
reopen(int l, int trials)
{
	double *sp = calloc((size_t)trials, sizeof(double));
	double *pl = calloc((size_t)trials, sizeof(double));
	double r50, r99, s50, s99, p50, p99;
	int i, srv, cli;
	pthread_t th;
	long held;

	if (sp == NULL || pl == NULL)
		err(2, "calloc");
	for (i = 0; i < trials; i++) {
		bench_pair(l, &srv, &cli, 16384, 16384);
		bench_nonblock(srv);
		held = stall(srv, cli, 0);
		usleep(120000);
		sp[i] = first_byte_after(cli, held);
		bench_abort_close(srv);
		close(cli);

		bench_pair(l, &srv, &cli, 16384, 16384);
		held = stall(srv, cli, 1);
		if (pthread_create(&th, NULL, poll_sender, &srv) != 0)
			errx(2, "pthread_create");
		usleep(2000);
		pl[i] = first_byte_after(cli, held);
		pthread_join(th, NULL);
		bench_abort_close(srv);
		close(cli);
	}
	s50 = bench_pct(sp, (size_t)trials, 50);
	s99 = bench_pct(sp, (size_t)trials, 99);
	p50 = bench_pct(pl, (size_t)trials, 50);
	p99 = bench_pct(pl, (size_t)trials, 99);
	r50 = s50 / p50;
	r99 = s99 / p99;
	printf("reopen to first replayed byte (%d trials): p50 %.1f us p99 %.1f"
	    " us | poll(POLLOUT) sender p50 %.1f us p99 %.1f us\n", trials,
	    s50 / 1e3, s99 / 1e3, p50 / 1e3, p99 / 1e3);
	printf("ROW|window reopen to first replayed byte, p50 / p99 (%d trials)|"
	    "%.0f µs / %.0f µs|a thread in poll(POLLOUT) sending itself: "
	    "%.0f µs / %.0f µs|p50 %.2fx, p99 %.2fx (percentiles over all "
	    "trials)|p99 < 1 ms|%s\n", trials, s50 / 1e3, s99 / 1e3, p50 / 1e3,
	    p99 / 1e3, r50, r99, s99 < 1e6 ? "met" : "MISSED");
	free(sp);
	free(pl);
}

int
main(int argc, char **argv)
{
	uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 1024;
	int reps = argc > 2 ? atoi(argv[2]) : 3;
	int trials = argc > 3 ? atoi(argv[3]) : 100;
	long ws = argc > 4 ? atol(argv[4]) : (long)CHUNK;
	int l;

	if (ws >= 1 && ws <= (long)CHUNK)
		wsize = (size_t)ws;

	if (mib < 1)
		mib = 1;
	if (reps < 1 || reps > MAX_REPS)
		reps = 3;
	setvbuf(stdout, NULL, _IOLBF, 0);
	bench_raise_nofile();
	patlen = (size_t)(mib << 20) < PATLEN ? (size_t)(mib << 20) : PATLEN;
	patlen = patlen / FRAME * FRAME;
	pat = bench_pattern(patlen + CHUNK);
	/* The stream wraps: its first CHUNK bytes again after the end. */
	memcpy(pat + patlen, pat, CHUNK);
	l = bench_listen();
	printf("replay_bench: drain %llu MiB, median of %d runs; %d reopen "
	    "trials\n", (unsigned long long)mib, reps, trials);
	if (mib > 0)
		drain(l, (mib << 20) / CHUNK * CHUNK / wsize * wsize, reps);
	if (trials > 0)
		reopen(l, trials);
	close(l);
	free(pat);
	return 0;
}
