/*
 * spool_bench — figures for the spool layer, on the same bytes each time:
 *   (a) 28-byte messages "seq=0000000001 Hello World!\n", increasing,
 *   (b) JSON log lines, (c) random bytes (1 KiB records).
 * For each: append throughput vs zlib compress2 level 1 over the same
 * bytes, stored size vs gzip -1 of the stream (and vs raw), read-back
 * throughput vs plain inflate, then the memory of 10,000 idle streams.
 * Medians of several runs. Usage: spool_bench [MiB per data set] [reps] [only data set 0|1|2]
 */
#include <sys/resource.h>
#include <sys/stat.h>

#include <dirent.h>
#include <malloc.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "spool.h"

struct data {
	const char *name;
	uint8_t *buf;
	size_t len;
	size_t *off;		/* record i is buf[off[i] .. off[i+1]) */
	size_t n;
};

static char root[4096];

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t
realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmpd);
	return v[n / 2];
}

static void
add_rec(struct data *d, const void *p, size_t len, size_t *cap)
{
	if (d->n + 2 > *cap) {
		*cap = *cap ? *cap * 2 : 1024;
		d->off = realloc(d->off, *cap * sizeof(*d->off));
	}
	memcpy(d->buf + d->len, p, len);
	d->off[d->n++] = d->len;
	d->len += len;
	d->off[d->n] = d->len;
}

static uint64_t rng = 88172645463325252ull;

static uint64_t
xr(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void
make_data(struct data *d, int kind, size_t size)
{
	static const char *lv[] = { "info", "info", "info", "warn", "error",
	    "debug" };
	static const char *path[] = { "/v1/items", "/v1/users", "/health",
	    "/v2/orders", "/v1/search" };
	char line[512];
	size_t cap = 0;
	uint64_t i;
	int n;

	memset(d, 0, sizeof(*d));
	d->buf = malloc(size + 4096);
	for (i = 1; d->len < size; i++) {
		if (kind == 0) {
			n = snprintf(line, sizeof(line),
			    "seq=%010llu Hello World!\n", (unsigned long long)i);
		} else if (kind == 1) {
			n = snprintf(line, sizeof(line),
			    "{\"ts\":\"2024-05-01T12:%02llu:%02llu.%06lluZ\","
			    "\"level\":\"%s\",\"service\":\"api\",\"req\":%llu,"
			    "\"path\":\"%s/%llu\",\"status\":%d,\"ms\":%.1f,"
			    "\"user\":\"u%05llu\"}\n",
			    (unsigned long long)(i / 60000 % 60),
			    (unsigned long long)(i / 1000 % 60),
			    (unsigned long long)(xr() % 1000000),
			    lv[xr() % 6], (unsigned long long)i, path[xr() % 5],
			    (unsigned long long)(xr() % 100000),
			    xr() % 10 ? 200 : 404, (double)(xr() % 5000) / 10,
			    (unsigned long long)(xr() % 20000));
		} else {
			uint64_t w[128];
			int k;

			for (k = 0; k < 128; k++)
				w[k] = xr();
			memcpy(line, w, 512);
			n = 512;
			add_rec(d, line, 512, &cap);
			for (k = 0; k < 64; k++)
				w[k] = xr();
			memcpy(line, w, 512);
		}
		add_rec(d, line, (size_t)n, &cap);
	}
	d->name = kind == 0 ? "28-byte messages" : kind == 1 ?
	    "JSON log lines" : "random bytes";
}

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

struct result {
	double append_s, compress_s, read_s, inflate_s;
	uint64_t stored, gzip, raw;
};

static size_t
gzip1_size(const struct data *d)
{
	z_stream z;
	uLong bound;
	uint8_t *out;
	size_t len;

	memset(&z, 0, sizeof(z));
	deflateInit2(&z, 1, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
	bound = deflateBound(&z, d->len);
	out = malloc(bound);
	z.next_in = d->buf;
	z.avail_in = (uInt)d->len;
	z.next_out = out;
	z.avail_out = (uInt)bound;
	deflate(&z, Z_FINISH);
	len = z.total_out;
	deflateEnd(&z);
	free(out);
	return len;
}

static void
run_once(struct spool_dir *dir, const struct data *d, struct result *r)
{
	struct spool_options o;
	struct spool_identity id;
	struct spool_stream *s;
	struct spool_cursor *c;
	struct spool_record rec;
	struct spool_counts cnt;
	struct spool_err err;
	struct iovec iov;
	char name[SPOOL_NAME_MAX];
	uLongf zlen = compressBound(d->len);
	uint8_t *z = malloc(zlen), *back = malloc(d->len);
	int64_t *ts = malloc(d->n * sizeof(*ts));
	uLongf blen = d->len;
	volatile uint64_t sink = 0;
	size_t i;
	double t0;

	memset(&id, 0, sizeof(id));
	strcpy(id.local, "127.0.0.1:80");
	strcpy(id.peer, "127.0.0.1:40000");
	spool_options_default(&o);
	o.fsync = SPOOL_FSYNC_NEVER;
	if (spool_stream_create(dir, &id, &o, &s, &err) != 0) {
		fprintf(stderr, "create: %s\n", err.msg);
		exit(1);
	}
	/* Timestamps as the interposer takes them, read before timing. */
	for (i = 0; i < d->n; i++)
		ts[i] = realtime_ns();
	t0 = now();
	for (i = 0; i < d->n; i++) {
		iov.iov_base = d->buf + d->off[i];
		iov.iov_len = d->off[i + 1] - d->off[i];
		if (spool_stream_append(s, &iov, 1, ts[i], &err) < 0) {
			fprintf(stderr, "append: %s\n", err.msg);
			exit(1);
		}
	}
	spool_stream_flush(s, &err);
	r->append_s = now() - t0;
	spool_stream_counts(s, &cnt);
	r->stored = cnt.stored_bytes;
	r->raw = d->len;
	strcpy(name, spool_stream_name(s));
	spool_stream_close(s, SPOOL_CLOSE_KEEP, "bench", &err);

	t0 = now();
	compress2(z, &zlen, d->buf, d->len, 1);
	r->compress_s = now() - t0;

	t0 = now();
	spool_cursor_open(dir, name, &c, &err);
	/* As a replay does: each record acknowledged (not persisted). */
	while (spool_cursor_next(c, &rec, &err) == 1) {
		sink += rec.len + (rec.len ? rec.data[0] : 0);
		spool_cursor_ack(c, rec.seq, rec.len, false, &err);
	}
	spool_cursor_close(c);
	r->read_s = now() - t0;

	t0 = now();
	uncompress(back, &blen, z, zlen);
	r->inflate_s = now() - t0;
	sink += back[blen / 2];
	spool_stream_remove(dir, name, &err);
	if (sink == 42)
		fprintf(stderr, "\n");	/* keeps the reads */
	free(z);
	free(back);
	free(ts);
}

static void
bench(struct spool_dir *dir, const struct data *d, int reps)
{
	double a[16], c[16], rd[16], inf[16], mb = (double)d->len / 1e6;
	struct result r;
	int i;

	for (i = 0; i < reps; i++) {
		run_once(dir, d, &r);
		a[i] = r.append_s;
		c[i] = r.compress_s;
		rd[i] = r.read_s;
		inf[i] = r.inflate_s;
	}
	double am = median(a, reps), cm = median(c, reps);
	double rm = median(rd, reps), im = median(inf, reps);
	size_t gz = gzip1_size(d);

	printf("\n(%s) %zu records, %.1f MB, avg %.0f bytes/record\n", d->name,
	    d->n, mb, (double)d->len / (double)d->n);
	printf("  append     %8.1f MB/s %10.0f rec/s | compress2 -1 %8.1f MB/s"
	    " | ratio %.2f (goal >= 0.8)\n", mb / am, (double)d->n / am,
	    mb / cm, cm / am);
	printf("  stored     %10llu B | gzip -1 %10zu B | ratio %.3f "
	    "(goal <= 1.00) | vs raw %.3f\n", (unsigned long long)r.stored,
	    gz, (double)r.stored / (double)gz,
	    (double)r.stored / (double)r.raw);
	printf("  read back  %8.1f MB/s %10.0f rec/s | inflate      %8.1f MB/s"
	    " | ratio %.2f (goal >= 0.8)\n", mb / rm, (double)d->n / rm,
	    mb / im, im / rm);
}

static long
rss_kib(void)
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

static void
idle_streams(struct spool_dir *dir, int n)
{
	struct spool_stream **v = calloc((size_t)n, sizeof(*v));
	struct spool_identity id;
	struct spool_err err;
	struct iovec iov = { "hello\n", 6 };
	struct rlimit rl;
	long before, after;
	size_t heap0, heap1;
	int i;

	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	memset(&id, 0, sizeof(id));
	strcpy(id.local, "127.0.0.1:80");
	strcpy(id.peer, "127.0.0.1:40000");
	before = rss_kib();
	heap0 = mallinfo2().uordblks;
	for (i = 0; i < n; i++) {
		struct spool_options o;

		spool_options_default(&o);
		o.fsync = SPOOL_FSYNC_NEVER;
		if (spool_stream_create(dir, &id, &o, &v[i], &err) != 0) {
			fprintf(stderr, "create %d: %s\n", i, err.msg);
			exit(1);
		}
		/* Used once: a record spooled and written, then idle. */
		spool_stream_append(v[i], &iov, 1, realtime_ns(), &err);
		spool_stream_flush(v[i], &err);
		spool_stream_trim(v[i], &err);
	}
	after = rss_kib();
	heap1 = mallinfo2().uordblks;
	printf("\n%d idle streams (one record each, written, trimmed): "
	    "RSS +%ld KiB, heap in use +%zu KiB (%.0f bytes/stream), no fd "
	    "held, no zlib state\n", n, after - before,
	    (heap1 - heap0) / 1024, (double)(heap1 - heap0) / n);
	for (i = 0; i < n; i++)
		spool_stream_close(v[i], SPOOL_CLOSE_REMOVE, NULL, &err);
	free(v);
}

int
main(int argc, char **argv)
{
	const char *tmp = getenv("TMPDIR");
	size_t mib = argc > 1 ? (size_t)atoi(argv[1]) : 32;
	int reps = argc > 2 ? atoi(argv[2]) : 5, k;
	int only = argc > 3 ? atoi(argv[3]) : -1;	/* one data set */
	struct spool_dir *dir;
	struct spool_err err;
	char path[4200];
	struct data d;

	if (reps < 1 || reps > 16)
		reps = 5;
	snprintf(root, sizeof(root), "%s/spoolbench.XXXXXX", tmp ? tmp : "/tmp");
	if (mkdtemp(root) == NULL)
		return 1;
	snprintf(path, sizeof(path), "%s/spool", root);
	if (spool_dir_open(path, NULL, &dir, &err) != 0) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	/* Level 1 by the deflater libtcpspool.so uses: ISA-L where it loads
	 * (its sync thread loads it at the first spool), else libdeflate. */
	(void)spool_codec_load();
	printf("spool_bench: %zu MiB per data set, median of %d runs, "
	    "frame_target 128 KiB, level 1, fsync never, dir %s\n", mib, reps,
	    root);
	printf("level-1 deflater: %s\n", spool_codec_load_error() == NULL ?
	    "ISA-L igzip" : HAVE_LIBDEFLATE_NAME);
	if (only < 0)
		idle_streams(dir, 10000);
	for (k = 0; k < 3; k++) {
		if (only >= 0 && k != only)
			continue;
		make_data(&d, k, mib << 20);
		bench(dir, &d, reps);
		free(d.buf);
		free(d.off);
	}
	spool_dir_close(dir);
	nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
