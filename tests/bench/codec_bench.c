/*
 * codec_bench — which raw-DEFLATE library the spool should use (issue 14).
 *
 * Compares zlib, libdeflate and ISA-L igzip, each at level 1 (the spool's
 * default), on the frames the spool would write: each data set is cut into
 * 128 KiB frames the way spool/writer.c cuts them (a frame is formed when
 * the staged raw payload reaches 128 KiB), and each frame's raw payload is
 * built in the three columns of spool/FORMAT.md §3.2 (varint lengths,
 * zigzag microsecond deltas, data). For every library and data set:
 *   ratio         raw payload bytes / compressed bytes (a frame that does
 *                 not shrink counts at its compressed size, not stored)
 *   deflate MB/s  raw payload bytes per second, one frame per call, one
 *                 core, the library's state reused across frames
 *   inflate MB/s  raw payload bytes per second, the same library decoding
 *                 its own frames into an exact-size buffer
 * and every compressed frame is read back by zlib's raw inflate
 * (inflateInit2 -15) and compared with the raw payload: a frame that zlib
 * does not decode to exactly the same bytes makes the program exit 1.
 * Then the bytes each library's state costs (malloc'd, mallinfo2).
 *
 * Data sets, the generators of spool_bench.c (same seeds) and
 * replay_bench.c:
 *   0 28-byte messages  "seq=0000000001 Hello World!\n", one record each
 *   1 JSON log lines    about 190 bytes each
 *   2 random bytes      xorshift64, 512-byte records
 *   3 large records     the pattern.h stream in 64 KiB writes (as the
 *                       replay drain writes it)
 * Record timestamps 30 ns apart (spool_bench reads the clock in a tight
 * loop: microsecond deltas mostly 0).
 *
 * Usage: codec_bench [MiB per data set] [reps]
 * Output: a table and ROW| lines (bench_common.h); the timings are medians
 * over the repetitions with their min-max spread, in the thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID: on a shared machine the wall clock also counts
 * the time other processes had the core). Nothing is asserted on a time:
 * the exit status says only whether every frame was read back.
 */
#include <malloc.h>
#include <zlib.h>

#ifdef HAVE_LIBDEFLATE
#include <libdeflate.h>
#endif
#ifdef HAVE_ISAL
#include <isa-l/igzip_lib.h>
#endif

#include "bench_common.h"

#define FRAME_TARGET	(128u << 10)
#define MAX_REPS	16
#define NSETS		4

struct data {
	const char *name;
	uint8_t *buf;
	size_t len;
	size_t *off;		/* record i is buf[off[i] .. off[i+1]) */
	size_t n;
	size_t cap;
};

struct frame {
	uint8_t *raw;
	size_t raw_len;
	uint8_t *z;		/* the library's output, per library */
	size_t zlen;
};

struct frames {
	struct frame *f;
	size_t n;
	size_t raw_total;
};

/* ------------------------------------------------ data (spool_bench.c) */

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
add_rec(struct data *d, const void *p, size_t len)
{
	if (d->n + 2 > d->cap) {
		d->cap = d->cap ? d->cap * 2 : 1024;
		d->off = realloc(d->off, d->cap * sizeof(*d->off));
		if (d->off == NULL)
			err(2, "realloc");
	}
	memcpy(d->buf + d->len, p, len);
	d->off[d->n++] = d->len;
	d->len += len;
	d->off[d->n] = d->len;
}

static void
make_data(struct data *d, int kind, size_t size)
{
	static const char *lv[] = { "info", "info", "info", "warn", "error",
	    "debug" };
	static const char *path[] = { "/v1/items", "/v1/users", "/health",
	    "/v2/orders", "/v1/search" };
	static const char *names[NSETS] = { "28-byte messages",
	    "JSON log lines", "random bytes", "large records (64 KiB)" };
	char line[512];
	uint64_t i;
	int n;

	memset(d, 0, sizeof(*d));
	d->name = names[kind];
	if ((d->buf = malloc(size + 4096 + (64u << 10))) == NULL)
		err(2, "malloc");
	if (kind == 3) {
		uint8_t *pat = bench_pattern(size + (64u << 10));

		while (d->len < size)
			add_rec(d, pat + d->len, 64u << 10);
		free(pat);
		return;
	}
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
			add_rec(d, line, 512);
			for (k = 0; k < 64; k++)
				w[k] = xr();
			memcpy(line, w, 512);
		}
		add_rec(d, line, (size_t)n);
	}
}

/* ------------------------------------- frames (spool/FORMAT.md §3.2) */

static size_t
put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

static void
frame_build(struct frames *fs, const struct data *d, size_t r0, size_t r1)
{
	size_t cnt = r1 - r0, data_len = d->off[r1] - d->off[r0];
	uint8_t *raw = malloc(cnt * 20 + data_len), *p = raw;
	int64_t prev = 0, us;
	struct frame *f;
	size_t i;

	if (raw == NULL)
		err(2, "malloc");
	for (i = r0; i < r1; i++)
		p += put_varint(p, d->off[i + 1] - d->off[i]);
	for (i = r0; i < r1; i++) {
		us = (int64_t)((i - r0) * 30) / 1000;
		p += put_varint(p, (uint64_t)((us - prev) << 1) ^
		    (uint64_t)((us - prev) >> 63));
		prev = us;
	}
	memcpy(p, d->buf + d->off[r0], data_len);
	p += data_len;
	fs->f = realloc(fs->f, (fs->n + 1) * sizeof(*fs->f));
	if (fs->f == NULL)
		err(2, "realloc");
	f = &fs->f[fs->n++];
	memset(f, 0, sizeof(*f));
	f->raw = raw;
	f->raw_len = (size_t)(p - raw);
	/* Room for any library's worst case on incompressible input. */
	if ((f->z = malloc(f->raw_len + f->raw_len / 8 + 4096)) == NULL)
		err(2, "malloc");
	fs->raw_total += f->raw_len;
}

/* As the writer: a frame when the staged payload reaches the target. */
static void
frames_make(struct frames *fs, const struct data *d)
{
	size_t i, r0 = 0, staged = 0;

	memset(fs, 0, sizeof(*fs));
	for (i = 0; i < d->n; i++) {
		size_t len = d->off[i + 1] - d->off[i];

		staged += len + 2 + (len >= 128) + (len >= 16384);
		if (staged >= FRAME_TARGET) {
			frame_build(fs, d, r0, i + 1);
			r0 = i + 1;
			staged = 0;
		}
	}
	if (r0 < d->n)
		frame_build(fs, d, r0, d->n);
}

static void
frames_free(struct frames *fs)
{
	size_t i;

	for (i = 0; i < fs->n; i++) {
		free(fs->f[i].raw);
		free(fs->f[i].z);
	}
	free(fs->f);
}

/* ------------------------------------------------------------ libraries */

struct lib {
	const char *name;
	void *(*new_c)(void);
	void (*free_c)(void *);
	size_t (*deflate)(void *, const uint8_t *, size_t, uint8_t *, size_t);
	void *(*new_d)(void);
	void (*free_d)(void *);
	int (*inflate)(void *, const uint8_t *, size_t, uint8_t *, size_t);
};

static void *
zl_new_c(void)
{
	z_stream *z = calloc(1, sizeof(*z));

	if (z == NULL || deflateInit2(z, 1, Z_DEFLATED, -15, 8,
	    Z_DEFAULT_STRATEGY) != Z_OK)
		errx(2, "deflateInit2");
	return z;
}

static void
zl_free_c(void *p)
{
	deflateEnd(p);
	free(p);
}

static size_t
zl_deflate(void *p, const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
	z_stream *z = p;

	if (deflateReset(z) != Z_OK)
		return 0;
	z->next_in = (uint8_t *)in;
	z->avail_in = (uInt)n;
	z->next_out = out;
	z->avail_out = (uInt)cap;
	if (deflate(z, Z_FINISH) != Z_STREAM_END)
		return 0;
	return cap - z->avail_out;
}

static void *
zl_new_d(void)
{
	z_stream *z = calloc(1, sizeof(*z));

	if (z == NULL || inflateInit2(z, -15) != Z_OK)
		errx(2, "inflateInit2");
	return z;
}

static void
zl_free_d(void *p)
{
	inflateEnd(p);
	free(p);
}

/* 0 when in decodes to exactly n bytes and ends exactly at its end. */
static int
zl_inflate(void *p, const uint8_t *in, size_t inlen, uint8_t *out, size_t n)
{
	z_stream *z = p;

	if (inflateReset(z) != Z_OK)
		return -1;
	z->next_in = (uint8_t *)in;
	z->avail_in = (uInt)inlen;
	z->next_out = out;
	z->avail_out = (uInt)n;
	return inflate(z, Z_FINISH) == Z_STREAM_END && z->avail_out == 0 &&
	    z->avail_in == 0 ? 0 : -1;
}

#ifdef HAVE_LIBDEFLATE
static void *
ld_new_c(void)
{
	void *c = libdeflate_alloc_compressor(1);

	if (c == NULL)
		errx(2, "libdeflate_alloc_compressor");
	return c;
}

static void
ld_free_c(void *p)
{
	libdeflate_free_compressor(p);
}

static size_t
ld_deflate(void *p, const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
	return libdeflate_deflate_compress(p, in, n, out, cap);
}

static void *
ld_new_d(void)
{
	void *d = libdeflate_alloc_decompressor();

	if (d == NULL)
		errx(2, "libdeflate_alloc_decompressor");
	return d;
}

static void
ld_free_d(void *p)
{
	libdeflate_free_decompressor(p);
}

static int
ld_inflate(void *p, const uint8_t *in, size_t inlen, uint8_t *out, size_t n)
{
	size_t used;

	return libdeflate_deflate_decompress_ex(p, in, inlen, out, n, &used,
	    NULL) == LIBDEFLATE_SUCCESS && used == inlen ? 0 : -1;
}
#endif

#ifdef HAVE_ISAL
struct isal_c {
	struct isal_zstream s;
	uint8_t level_buf[ISAL_DEF_LVL1_DEFAULT];
};

static void *
is_new_c(void)
{
	struct isal_c *c = calloc(1, sizeof(*c));

	if (c == NULL)
		err(2, "calloc");
	return c;
}

static size_t
is_deflate(void *p, const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
	struct isal_c *c = p;

	isal_deflate_stateless_init(&c->s);
	c->s.level = 1;
	c->s.level_buf = c->level_buf;
	c->s.level_buf_size = sizeof(c->level_buf);
	c->s.end_of_stream = 1;
	c->s.flush = NO_FLUSH;
	c->s.gzip_flag = IGZIP_DEFLATE;
	c->s.next_in = (uint8_t *)in;
	c->s.avail_in = (uint32_t)n;
	c->s.next_out = out;
	c->s.avail_out = (uint32_t)cap;
	if (isal_deflate_stateless(&c->s) != COMP_OK)
		return 0;
	return c->s.total_out;
}

static void *
is_new_d(void)
{
	struct inflate_state *s = calloc(1, sizeof(*s));

	if (s == NULL)
		err(2, "calloc");
	return s;
}

static int
is_inflate(void *p, const uint8_t *in, size_t inlen, uint8_t *out, size_t n)
{
	struct inflate_state *s = p;

	isal_inflate_init(s);
	s->crc_flag = ISAL_DEFLATE;
	s->next_in = (uint8_t *)in;
	s->avail_in = (uint32_t)inlen;
	s->next_out = out;
	s->avail_out = (uint32_t)n;
	return isal_inflate_stateless(s) == ISAL_DECOMP_OK &&
	    s->avail_out == 0 && s->avail_in == 0 ? 0 : -1;
}
#endif

static const struct lib libs[] = {
	{ "zlib", zl_new_c, zl_free_c, zl_deflate, zl_new_d, zl_free_d,
	    zl_inflate },
#ifdef HAVE_LIBDEFLATE
	{ "libdeflate", ld_new_c, ld_free_c, ld_deflate, ld_new_d, ld_free_d,
	    ld_inflate },
#endif
#ifdef HAVE_ISAL
	{ "ISA-L igzip", is_new_c, free, is_deflate, is_new_d, free,
	    is_inflate },
#endif
};
#define NLIBS (sizeof(libs) / sizeof(libs[0]))

/* ---------------------------------------------------------- measurement */

struct fig {
	double ratio;
	struct bench_spread def, inf;	/* MB/s */
};

static int64_t
cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Bytes of heap a constructor takes (mallinfo2, a fresh allocation). */
static size_t
heap_of(void *(*ctor)(void), void (*dtor)(void *))
{
	size_t before = mallinfo2().uordblks, after;
	void *p = ctor();

	after = mallinfo2().uordblks;
	dtor(p);
	return after - before;
}

static void
measure(const struct lib *lib, struct frames *fs, int reps, struct fig *fig)
{
	double def[MAX_REPS], inf[MAX_REPS], mb = (double)fs->raw_total / 1e6;
	size_t i, zsum = 0, big = 0;
	void *c = lib->new_c(), *d = lib->new_d(), *zr = zl_new_d();
	uint8_t *out;
	int r;

	for (i = 0; i < fs->n; i++)
		big = fs->f[i].raw_len > big ? fs->f[i].raw_len : big;
	if ((out = malloc(big)) == NULL)
		err(2, "malloc");
	for (r = 0; r < reps; r++) {
		int64_t t0 = cpu_ns();

		for (i = 0; i < fs->n; i++) {
			struct frame *f = &fs->f[i];

			f->zlen = lib->deflate(c, f->raw, f->raw_len, f->z,
			    f->raw_len + f->raw_len / 8 + 4096);
		}
		def[r] = mb / ((double)(cpu_ns() - t0) / 1e9);
	}
	for (i = 0; i < fs->n; i++) {
		struct frame *f = &fs->f[i];

		/* The check that matters: zlib reads what the library wrote. */
		if (f->zlen == 0 || zl_inflate(zr, f->z, f->zlen, out,
		    f->raw_len) != 0 || memcmp(out, f->raw, f->raw_len) != 0)
			errx(1, "%s: frame %zu (%zu bytes) not read back by "
			    "zlib inflate", lib->name, i, f->raw_len);
		zsum += f->zlen;
	}
	for (r = 0; r < reps; r++) {
		int64_t t0 = cpu_ns();

		for (i = 0; i < fs->n; i++) {
			struct frame *f = &fs->f[i];

			if (lib->inflate(d, f->z, f->zlen, out,
			    f->raw_len) != 0)
				errx(1, "%s: frame %zu not read back by "
				    "itself", lib->name, i);
		}
		inf[r] = mb / ((double)(cpu_ns() - t0) / 1e9);
	}
	fig->ratio = (double)fs->raw_total / (double)zsum;
	fig->def = bench_spread(def, (size_t)reps);
	fig->inf = bench_spread(inf, (size_t)reps);
	free(out);
	lib->free_c(c);
	lib->free_d(d);
	zl_free_d(zr);
}

int
main(int argc, char **argv)
{
	size_t mib = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 32;
	int reps = argc > 2 ? atoi(argv[2]) : 5, k;
	struct fig fig[NSETS][NLIBS];
	size_t l;

	if (mib < 1 || mib > 1024)
		mib = 32;
	if (reps < 1 || reps > MAX_REPS)
		reps = 5;
	printf("codec_bench: %zu MiB per data set, %d reps, 128 KiB frames "
	    "in the spool's columns, level 1, one core, CPU time; every "
	    "frame read back by zlib inflate\n\n", mib, reps);
	printf("%-24s %-12s %7s %18s %18s\n", "data set", "library", "ratio",
	    "deflate MB/s", "inflate MB/s");
	for (k = 0; k < NSETS; k++) {
		struct frames fs;
		struct data d;

		make_data(&d, k, mib << 20);
		frames_make(&fs, &d);
		for (l = 0; l < NLIBS; l++) {
			struct fig *g = &fig[k][l];

			measure(&libs[l], &fs, reps, g);
			printf("%-24s %-12s %7.2f %8.0f (%4.0f-%4.0f) "
			    "%8.0f (%4.0f-%4.0f)\n", d.name, libs[l].name,
			    g->ratio, g->def.med, g->def.min, g->def.max,
			    g->inf.med, g->inf.min, g->inf.max);
		}
		for (l = 1; l < NLIBS; l++) {
			struct fig *g = &fig[k][l], *z = &fig[k][0];

			printf("ROW|codec: %s level 1, %s (128 KiB frames), "
			    "ratio / deflate / inflate|%.2f / %.0f MB/s / "
			    "%.0f MB/s|zlib level 1: %.2f / %.0f MB/s / "
			    "%.0f MB/s|size %.3fx, deflate %.2fx, inflate "
			    "%.2fx|report|—\n", libs[l].name, d.name, g->ratio,
			    g->def.med, g->inf.med, z->ratio, z->def.med,
			    z->inf.med, z->ratio / g->ratio,
			    g->def.med / z->def.med, g->inf.med / z->inf.med);
		}
		frames_free(&fs);
		free(d.buf);
		free(d.off);
	}
	printf("\nstate per compressor / decompressor (heap, level 1):\n");
	for (l = 0; l < NLIBS; l++)
		printf("  %-12s %7zu B / %7zu B\n", libs[l].name,
		    heap_of(libs[l].new_c, libs[l].free_c),
		    heap_of(libs[l].new_d, libs[l].free_d));
	return 0;
}
