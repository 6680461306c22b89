/*
 * Frames are raw DEFLATE whatever library wrote them (FORMAT.md §3.2):
 * for every deflater this build has (zlib always, libdeflate and ISA-L
 * igzip when the build found them), streams of each data set are written
 * through the spool, then every frame of every segment is decoded by
 * hand, by the offsets of FORMAT.md, with zlib's raw inflate only, and the
 * records compared byte for byte. Then the spool's own reader reads what
 * each deflater wrote with each inflater (zlib, libdeflate), the codec's
 * edge cases, and the codec from threads and from a fork child.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <zlib.h>

#include "helpers.h"
#include "internal.h"
#include "payload_plain.h"
#include "../fixtures/pattern.h"

#define SET_BYTES	(768u << 10)

static const enum codec_backend backends[] = {
	CODEC_BACKEND_ZLIB, CODEC_BACKEND_LIBDEFLATE, CODEC_BACKEND_ISAL,
};
#define NBACKENDS (sizeof(backends) / sizeof(backends[0]))

/*
 * Deflates with b from now on (inflating with zlib); false if not built.
 * ISA-L is there once loaded (codec_isal_is_loaded_where_built checks
 * that a build with it loads it).
 */
static bool
deflate_with(enum codec_backend b)
{
	(void)spool_codec_load();
	return codec_backend_force(b, CODEC_BACKEND_ZLIB) == 0;
}

/* Deflates with b, inflates with the build's inflater; false if not built. */
static bool
code_with(enum codec_backend b)
{
	return codec_backend_force(b, CODEC_BACKEND_LIBDEFLATE) == 0 ||
	    deflate_with(b);
}

/* Inflates with b from now on (deflating with zlib); false if not built. */
static bool
inflate_with(enum codec_backend b)
{
	return codec_backend_force(CODEC_BACKEND_ZLIB, b) == 0;
}

struct recs {
	const char *name;
	uint8_t *buf;
	size_t *off;		/* record i is buf[off[i] .. off[i+1]) */
	size_t n, len, cap, bufcap;
	bool compressible;	/* some frame must be codec 1 */
};

static uint64_t rng;

static uint64_t
xr(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void
rec_add(struct recs *r, const void *p, size_t len)
{
	if (r->n + 2 > r->cap) {
		r->cap = r->cap ? r->cap * 2 : 256;
		r->off = realloc(r->off, r->cap * sizeof(*r->off));
		cr_assert_not_null(r->off);
	}
	/* Never NULL, even before a first empty record: r->buf + 0 and a
	 * memcpy to NULL are undefined (clang's UBSan says so). */
	if (r->buf == NULL || r->len + len > r->bufcap) {
		r->bufcap = (r->len + len) * 2 + 64;
		r->buf = realloc(r->buf, r->bufcap);
		cr_assert_not_null(r->buf);
	}
	if (len > 0)
		memcpy(r->buf + r->len, p, len);
	r->off[r->n++] = r->len;
	r->len += len;
	r->off[r->n] = r->len;
}

enum set {
	SET_28, SET_JSON, SET_RANDOM, SET_LARGE, SET_EMPTY, SET_ONE,
	SET_MIXED, NSETS
};

static void
recs_make(struct recs *r, enum set k)
{
	static uint8_t big[64u << 10];
	char line[512];
	uint64_t i;
	int n;

	memset(r, 0, sizeof(*r));
	rng = 88172645463325252ull;
	r->compressible = true;
	switch (k) {
	case SET_28:
		r->name = "28-byte messages";
		for (i = 1; r->len < SET_BYTES; i++) {
			pattern_message(line, PATTERN_DEFAULT_SIZE, -1, i);
			rec_add(r, line, PATTERN_DEFAULT_SIZE);
		}
		break;
	case SET_JSON:
		r->name = "JSON log lines";
		for (i = 1; r->len < SET_BYTES; i++) {
			n = snprintf(line, sizeof(line), "{\"ts\":\"2024-05-01T"
			    "12:%02llu:%02llu.%06lluZ\",\"level\":\"%s\","
			    "\"req\":%llu,\"status\":%d,"
			    "\"user\":\"u%05llu\"}\n",
			    (unsigned long long)(i / 60000 % 60),
			    (unsigned long long)(i / 1000 % 60),
			    (unsigned long long)(xr() % 1000000),
			    xr() % 3 ? "info" : "warn", (unsigned long long)i,
			    xr() % 10 ? 200 : 404,
			    (unsigned long long)(xr() % 20000));
			rec_add(r, line, (size_t)n);
		}
		break;
	case SET_RANDOM:
		r->name = "random bytes";
		r->compressible = false;
		while (r->len < SET_BYTES) {
			for (n = 0; n < 1024; n++)
				big[n] = (uint8_t)(xr() >> 24);
			rec_add(r, big, 1024);
		}
		break;
	case SET_LARGE:
		r->name = "large records";
		for (i = 1; r->len < SET_BYTES; ) {
			size_t o;

			for (o = 0; o + PATTERN_DEFAULT_SIZE <= sizeof(big);
			    o += PATTERN_DEFAULT_SIZE)
				pattern_message((char *)big + o,
				    PATTERN_DEFAULT_SIZE, -1, i++);
			rec_add(r, big, sizeof(big));
		}
		break;
	case SET_EMPTY:
		r->name = "empty records";
		for (i = 0; i < 5000; i++)
			rec_add(r, NULL, 0);
		break;
	case SET_ONE:
		r->name = "1-byte records";
		for (i = 0; i < 70000; i++) {
			line[0] = (char)(xr() >> 60);	/* 16 values */
			rec_add(r, line, 1);
		}
		break;
	default:
		r->name = "mixed: empty, 1 byte, large, random";
		r->compressible = false;
		for (i = 0; i < 40; i++) {
			rec_add(r, NULL, 0);
			line[0] = (char)i;
			rec_add(r, line, 1);
			for (n = 0; n < 3000; n++)
				big[n] = (uint8_t)(xr() >> 24);
			rec_add(r, big, i % 2 ? 3000 : 40000);
		}
		break;
	}
}

static void
recs_free(struct recs *r)
{
	free(r->buf);
	free(r->off);
}

/* The timestamp of record i: irregular, some far apart. */
static int64_t
ts_of(size_t i)
{
	return 1700000000000000000LL + (int64_t)(i * 731) +
	    (i % 97 == 0 ? 5000000 : 0) * (int64_t)(i / 97);
}

/* Writes r as one stream; returns its name in name. */
static void
write_stream(struct spool_dir *d, const struct recs *r, char *name)
{
	struct spool_options o;
	struct spool_stream *s;
	struct spool_err err = { "" };
	size_t i;

	spool_options_default(&o);
	o.fsync = SPOOL_FSYNC_NEVER;
	o.segment_max = 256u << 10;	/* several segments */
	s = new_stream(d, &o);
	for (i = 0; i < r->n; i++)
		append1(s, r->buf + r->off[i], r->off[i + 1] - r->off[i],
		    ts_of(i));
	cr_assert_eq(spool_stream_flush(s, &err), 0, "%s", err.msg);
	strcpy(name, spool_stream_name(s));
	cr_assert_eq(spool_stream_close(s, SPOOL_CLOSE_KEEP, "test", &err), 0,
	    "%s", err.msg);
}

/* ------------------------------------- by hand: FORMAT.md, zlib only */

static uint32_t
u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static uint64_t
u64(const uint8_t *p)
{
	return (uint64_t)u32(p) | (uint64_t)u32(p + 4) << 32;
}

/* CRC-32C, table-driven from FORMAT.md's polynomial; independent of spool/. */
static uint32_t
crc32c(const uint8_t *p, size_t len)
{
	static uint32_t t[256];
	uint32_t c = 0xFFFFFFFFu;

	if (t[1] == 0)
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t v = i;

			for (int k = 0; k < 8; k++)
				v = v & 1 ? (v >> 1) ^ 0x82F63B78u : v >> 1;
			t[i] = v;
		}
	while (len-- > 0)
		c = t[(c ^ *p++) & 0xFF] ^ (c >> 8);
	return ~c;
}

static uint64_t
varint(const uint8_t **p, const uint8_t *end)
{
	uint64_t v = 0;
	int shift = 0;

	for (;;) {
		cr_assert_lt(*p, end, "varint runs past the payload");
		cr_assert_lt(shift, 70);
		v |= (uint64_t)(**p & 0x7F) << shift;
		shift += 7;
		if ((*(*p)++ & 0x80) == 0)
			return v;
	}
}

/* zlib's raw inflate: exactly raw_len bytes, ending exactly at zlen. */
static void
zlib_inflate_exact(const uint8_t *z, size_t zlen, uint8_t *out,
    size_t raw_len)
{
	z_stream s;
	int rc;

	memset(&s, 0, sizeof(s));
	cr_assert_eq(inflateInit2(&s, -15), Z_OK);
	s.next_in = (uint8_t *)z;
	s.avail_in = (uInt)zlen;
	s.next_out = out;
	s.avail_out = (uInt)raw_len;
	rc = inflate(&s, Z_FINISH);
	cr_assert_eq(rc, Z_STREAM_END, "zlib inflate: %d (%s)", rc,
	    s.msg ? s.msg : "");
	cr_assert_eq(s.avail_out, 0, "short by %u bytes", s.avail_out);
	cr_assert_eq(s.avail_in, 0, "%u bytes after the stream", s.avail_in);
	inflateEnd(&s);
}

struct walk {
	const struct recs *r;
	size_t next;		/* record expected next */
	size_t frames[2];	/* per codec */
};

/* Checks one frame's records against the data set. */
static void
frame_records(struct walk *w, const uint8_t *h, const uint8_t *raw,
    size_t raw_len)
{
	uint32_t count = u32(h + 16), data_len = u32(h + 20), i;
	int64_t first_ts = (int64_t)u64(h + 32), us = 0;
	const uint8_t *lp = raw, *end = raw + raw_len, *tp, *dp;
	uint64_t len;

	cr_assert_eq(u64(h + 8), w->next, "first_seq");
	/* Three columns: lengths, times, then the data (FORMAT.md §3.2). */
	tp = raw;
	for (i = 0; i < count; i++)
		(void)varint(&tp, end);
	dp = tp;
	for (i = 0; i < count; i++)
		(void)varint(&dp, end);
	cr_assert_eq((size_t)(end - dp), data_len, "data column");
	for (i = 0; i < count; i++, w->next++) {
		size_t k = w->next, want;
		uint64_t zz;

		cr_assert_lt(k, w->r->n, "more records than written");
		want = w->r->off[k + 1] - w->r->off[k];
		len = varint(&lp, end);
		cr_assert_eq(len, want, "record %zu: length", k);
		zz = varint(&tp, end);
		us += (int64_t)((zz >> 1) ^ -(zz & 1));
		cr_assert_eq(first_ts + us * 1000, ts_of(k) - (ts_of(k) -
		    first_ts) % 1000, "record %zu: time", k);
		cr_assert(want == 0 || memcmp(dp, w->r->buf + w->r->off[k],
		    want) == 0, "record %zu: bytes", k);
		dp += want;
	}
}

static void
segment_by_hand(struct walk *w, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	uint8_t *f, *raw;
	size_t pos = 336, size;

	cr_assert_geq(fd, 0, "%s", path);
	cr_assert_eq(fstat(fd, &st), 0);
	size = (size_t)st.st_size;
	f = malloc(size);
	cr_assert_not_null(f);
	cr_assert_eq(read(fd, f, size), (ssize_t)size);
	close(fd);
	cr_assert_eq(memcmp(f, "TSPOOLSG", 8), 0);
	cr_assert_eq(u32(f + 332), crc32c(f, 332), "segment header crc");
	while (pos + 64 <= size && memcmp(f + pos, "TSFR", 4) == 0) {
		const uint8_t *h = f + pos, *p = h + 64;
		uint32_t codec = u32(h + 4), raw_len = u32(h + 24);
		uint32_t stored_len = u32(h + 28);

		cr_assert_eq(u32(h + 60), crc32c(h, 60), "frame header crc");
		cr_assert_leq(pos + 64 + stored_len, size);
		cr_assert_eq(u32(h + 48), crc32c(p, stored_len), "payload crc");
		cr_assert(codec == 0 || codec == 1, "codec %u", codec);
		raw = malloc(raw_len + 1);
		cr_assert_not_null(raw);
		if (codec == 1) {
			cr_assert_lt(stored_len, raw_len);
			zlib_inflate_exact(p, stored_len, raw, raw_len);
		} else {
			cr_assert_eq(stored_len, raw_len);
			memcpy(raw, p, raw_len);
		}
		frame_records(w, h, raw, raw_len);
		w->frames[codec]++;
		free(raw);
		pos += 64 + stored_len;
	}
	if (strstr(path, ".seg") != NULL)
		cr_assert(pos + 64 == size && memcmp(f + pos, "TSFT", 4) == 0,
		    "%s: footer after the last frame", path);
	else
		cr_assert_eq(pos, size, "%s: bytes after the last frame", path);
	free(f);
}

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every segment of the stream, in order, decoded by hand. */
static void
stream_by_hand(struct walk *w, const char *spool, const char *name)
{
	char dir[8192], path[8500], *names[1024];
	struct dirent *e;
	size_t n = 0, i;
	DIR *dp;

	snprintf(dir, sizeof(dir), "%s/%s", spool, name);
	cr_assert_not_null(dp = opendir(dir));
	while ((e = readdir(dp)) != NULL)
		if (strstr(e->d_name, ".seg") || strstr(e->d_name, ".open")) {
			cr_assert_lt(n, 1024);
			names[n++] = strdup(e->d_name);
		}
	closedir(dp);
	qsort(names, n, sizeof(*names), cmp_names);
	cr_assert_gt(n, 0);
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		segment_by_hand(w, path);
		free(names[i]);
	}
}

/*
 * A build with ISA-L's headers (HAVE_ISAL_BUILD, from tests/spool/meson.build)
 * loads libisal.so.2 at run time and deflates level 1 with it; and the
 * load keeps its names out of the global scope (RTLD_LOCAL): linked, or
 * dlopened RTLD_GLOBAL, build_heap would be found there.
 */
Test(spool, codec_isal_is_loaded_where_built)
{
#ifdef HAVE_ISAL_BUILD
	cr_assert(spool_codec_load(), "%s", spool_codec_load_error());
	cr_assert_null(spool_codec_load_error());
	cr_assert(spool_codec_load(), "a second call");
	cr_assert(codec_deflater_available(CODEC_BACKEND_ISAL));
	cr_assert_null(dlsym(RTLD_DEFAULT, "build_heap"));
	cr_assert_null(dlsym(RTLD_DEFAULT, "isal_deflate"));
#else
	cr_assert_not(spool_codec_load());
	cr_assert_not(codec_deflater_available(CODEC_BACKEND_ISAL));
	cr_assert_not_null(spool_codec_load_error());
#endif
}

Test(spool, codec_frames_of_every_backend_decode_with_zlib)
{
	struct tdir t;
	struct spool_dir *d;
	char name[SPOOL_NAME_MAX];
	size_t b, tested = 0;
	int k;

	tdir_make(&t);
	d = open_dir(&t, NULL);
	for (b = 0; b < NBACKENDS; b++) {
		if (!deflate_with(backends[b]))
			continue;	/* not in this build */
		tested++;
		for (k = 0; k < NSETS; k++) {
			struct recs r;
			struct walk w = { 0 };

			recs_make(&r, (enum set)k);
			w.r = &r;
			write_stream(d, &r, name);
			stream_by_hand(&w, t.spool, name);
			cr_assert_eq(w.next, r.n, "%s, %s: %zu of %zu records",
			    codec_backend_name(backends[b]), r.name, w.next,
			    r.n);
			if (r.compressible)
				cr_assert_gt(w.frames[1], 0, "%s, %s: no frame "
				    "deflated", codec_backend_name(backends[b]),
				    r.name);
			recs_free(&r);
		}
	}
	cr_assert_geq(tested, 1);
	spool_dir_close(d);
	tdir_rm(&t);
}

/* What each deflater wrote, the spool's reader reads with each inflater. */
Test(spool, codec_backends_read_each_others_frames)
{
	struct tdir t;
	struct spool_dir *d;
	char name[SPOOL_NAME_MAX];
	size_t wb, rb;
	int k;

	tdir_make(&t);
	d = open_dir(&t, NULL);
	for (wb = 0; wb < NBACKENDS; wb++)
		for (rb = 0; rb < NBACKENDS; rb++)
			for (k = 0; k < NSETS; k++) {
				struct spool_cursor *c;
				struct spool_record rec;
				struct spool_err err = { "" };
				struct recs r;
				size_t i = 0;
				int rc;

				if (codec_backend_force(backends[wb],
				    backends[rb]) != 0)
					continue;	/* not in this build */
				recs_make(&r, (enum set)k);
				write_stream(d, &r, name);
				cr_assert_eq(spool_cursor_open(d, name, &c,
				    &err), 0, "%s", err.msg);
				while ((rc = spool_cursor_next(c, &rec,
				    &err)) == 1) {
					cr_assert_lt(i, r.n);
					cr_assert_eq(rec.len, r.off[i + 1] -
					    r.off[i]);
					cr_assert(rec.len == 0 ||
					    memcmp(rec.data, r.buf + r.off[i],
					    rec.len) == 0);
					i++;
				}
				cr_assert_eq(rc, 0, "%s", err.msg);
				cr_assert_eq(i, r.n, "%s by %s, %s",
				    codec_backend_name(backends[wb]),
				    codec_backend_name(backends[rb]), r.name);
				spool_cursor_close(c);
				recs_free(&r);
			}
	spool_dir_close(d);
	tdir_rm(&t);
}

/* ------------------------------------------------- the codec directly */

static uint8_t text[100000];

static void
text_make(void)
{
	size_t i;

	for (i = 0; i + PATTERN_DEFAULT_SIZE <= sizeof(text);
	    i += PATTERN_DEFAULT_SIZE)
		pattern_message((char *)text + i, PATTERN_DEFAULT_SIZE, -1, i);
	memset(text + i, '.', sizeof(text) - i);
}

Test(spool, codec_deflate_edges)
{
	static uint8_t lvl1[NBACKENDS][sizeof(text)];
	size_t lvl1_len[NBACKENDS] = { 0 };
	struct codec_out z;
	uint8_t rnd[4096], back[sizeof(text)];
	struct iovec iov[5];
	size_t b, c, i, n;

	text_make();
	rng = 1;
	for (i = 0; i < sizeof(rnd); i++)
		rnd[i] = (uint8_t)(xr() >> 24);
	for (b = 0; b < NBACKENDS; b++) {
		if (!deflate_with(backends[b]))
			continue;
		/* Nothing, one byte, level 0, incompressible: store. */
		iov[0] = (struct iovec){ text, 0 };
		cr_assert_eq(codec_deflate(iov, 1, 0, 1, &z), 0);
		codec_release(&z);
		iov[0] = (struct iovec){ text, 1 };
		cr_assert_eq(codec_deflate(iov, 1, 1, 1, &z), 0);
		codec_release(&z);
		iov[0] = (struct iovec){ text, sizeof(text) };
		cr_assert_eq(codec_deflate(iov, 1, sizeof(text), 0, &z), 0);
		codec_release(&z);
		iov[0] = (struct iovec){ rnd, sizeof(rnd) };
		cr_assert_eq(codec_deflate(iov, 1, sizeof(rnd), 1, &z), 0);
		cr_assert_null(z.p);
		codec_release(&z);
		/* Empty iovecs in the middle and at the end, levels 1..9. */
		iov[0] = (struct iovec){ text, 1000 };
		iov[1] = (struct iovec){ text, 0 };
		iov[2] = (struct iovec){ text + 1000, sizeof(text) - 1000 };
		iov[3] = (struct iovec){ text, 0 };
		for (int level = 1; level <= 9; level += 4) {
			n = codec_deflate(iov, 4, sizeof(text), level, &z);
			cr_assert_gt(n, 0);
			cr_assert_lt(n, sizeof(text) / 4);
			zlib_inflate_exact(z.p, n, back, sizeof(text));
			cr_assert_eq(memcmp(back, text, sizeof(text)), 0);
			if (level == 1) {
				memcpy(lvl1[b], z.p, n);
				lvl1_len[b] = n;
			}
			codec_release(&z);
		}
	}
	/* Each forced deflater wrote level 1 itself: no two streams alike. */
	for (b = 0; b < NBACKENDS; b++)
		for (c = b + 1; c < NBACKENDS; c++)
			cr_assert(lvl1_len[b] == 0 || lvl1_len[b] != lvl1_len[c] ||
			    memcmp(lvl1[b], lvl1[c], lvl1_len[b]) != 0,
			    "%s and %s wrote the same bytes",
			    codec_backend_name(backends[b]),
			    codec_backend_name(backends[c]));
}

/*
 * Around the store rule's bound (deflate must save 1/64): random bytes,
 * then text, in three iovecs as the writer's columns, in proportions that
 * put the deflated size below, at and above the bound. Whatever a
 * deflater returns is either 0 (store) or a whole stream within the bound.
 */
Test(spool, codec_deflate_at_the_store_bound)
{
	static uint8_t buf[32768], back[sizeof(buf)];
	struct codec_out z;
	struct iovec iov[3];
	size_t b, k, n, bound = sizeof(buf) - sizeof(buf) / 64;
	size_t stored, deflated;

	text_make();
	for (b = 0; b < NBACKENDS; b++) {
		if (!deflate_with(backends[b]))
			continue;
		stored = deflated = 0;
		for (k = sizeof(buf) * 9 / 10; k <= sizeof(buf); k += 64) {
			rng = 7 + k;
			for (size_t i = 0; i < k; i++)
				buf[i] = (uint8_t)(xr() >> 24);
			memcpy(buf + k, text, sizeof(buf) - k);
			iov[0] = (struct iovec){ buf, 100 };
			iov[1] = (struct iovec){ buf + 100, 300 };
			iov[2] = (struct iovec){ buf + 400, sizeof(buf) - 400 };
			n = codec_deflate(iov, 3, sizeof(buf), 1, &z);
			if (n == 0) {
				cr_assert_null(z.p);
				stored++;
			} else {
				cr_assert_leq(n, bound, "%s: %zu bytes",
				    codec_backend_name(backends[b]), n);
				zlib_inflate_exact(z.p, n, back, sizeof(buf));
				cr_assert_eq(memcmp(back, buf, sizeof(buf)), 0);
				deflated++;
			}
			codec_release(&z);
		}
		cr_assert(stored > 0 && deflated > 0, "%s: %zu stored, %zu "
		    "deflated: the bound was not crossed",
		    codec_backend_name(backends[b]), stored, deflated);
	}
}

/*
 * After a frame, the upper halves of the vector registers are clean: the
 * processor's XINUSE bits for AVX (2) and the upper 256 bits of ZMM0-15
 * (6) are clear. ISA-L 2.30 leaves them set (codec.c), and legacy-SSE
 * code in the thread, the host program's too, then runs slower.
 */
#if defined(__x86_64__)
#include <cpuid.h>

static uint64_t
xinuse(void)
{
	uint32_t lo, hi;

	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(1));
	return (uint64_t)hi << 32 | lo;
}

Test(spool, codec_leaves_vector_uppers_clean)
{
	unsigned a, b, c, d;
	struct iovec iov[3];
	struct codec_out z;
	uint64_t in_use;
	size_t k, n;

	if (!__get_cpuid_count(0xd, 1, &a, &b, &c, &d) || !(a & 1u << 2))
		cr_skip_test("no XGETBV with ECX=1 on this processor");
	text_make();
	for (k = 0; k < NBACKENDS; k++) {
		if (!deflate_with(backends[k]))
			continue;
		iov[0] = (struct iovec){ text, 500 };
		iov[1] = (struct iovec){ text + 500, 500 };
		iov[2] = (struct iovec){ text + 1000, sizeof(text) - 1000 };
		n = codec_deflate(iov, 3, sizeof(text), 1, &z);
		in_use = xinuse();	/* before any libc call clears them */
		cr_assert_gt(n, 0);
		cr_assert_eq(in_use & (1u << 2 | 1u << 6), 0, "%s: XINUSE "
		    "%#llx", codec_backend_name(backends[k]),
		    (unsigned long long)in_use);
		codec_release(&z);
	}
}
#endif

/* A stream zlib wrote, and what codec_inflate must refuse. */
Test(spool, codec_inflate_exact_or_refused)
{
	uint8_t z[sizeof(text) + 64], back[sizeof(text) + 16];
	uLongf zlen;
	z_stream s;
	size_t b;

	text_make();
	memset(&s, 0, sizeof(s));
	cr_assert_eq(deflateInit2(&s, 6, Z_DEFLATED, -15, 8,
	    Z_DEFAULT_STRATEGY), Z_OK);
	s.next_in = text;
	s.avail_in = sizeof(text);
	s.next_out = z;
	s.avail_out = sizeof(z);
	cr_assert_eq(deflate(&s, Z_FINISH), Z_STREAM_END);
	zlen = s.total_out;
	deflateEnd(&s);
	z[zlen] = 0;	/* a byte after the stream */
	for (b = 0; b < NBACKENDS; b++) {
		if (!inflate_with(backends[b]))
			continue;
		cr_assert(codec_inflate(z, zlen, back, sizeof(text)));
		cr_assert_eq(memcmp(back, text, sizeof(text)), 0);
		cr_assert_not(codec_inflate(z, zlen - 1, back, sizeof(text)),
		    "truncated stream");
		cr_assert_not(codec_inflate(z, zlen + 1, back, sizeof(text)),
		    "a byte after the stream");
		cr_assert_not(codec_inflate(z, zlen, back, sizeof(text) - 1),
		    "more output than raw_len");
		cr_assert_not(codec_inflate(z, zlen, back, sizeof(text) + 1),
		    "less output than raw_len");
		cr_assert_not(codec_inflate(z, 0, back, 1), "nothing");
	}
}

/* ----------------------------------------------------------------- crc */

/* CRC-32C bit by bit, as FORMAT.md defines it. */
static uint32_t
crc32c_bitwise(uint32_t crc, const uint8_t *p, size_t len)
{
	uint32_t c = ~crc;
	int k;

	while (len-- > 0) {
		c ^= *p++;
		for (k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
	}
	return ~c;
}

/*
 * spool_crc runs three chains side by side on long buffers and combines
 * them (crc.c): every length around its block sizes, at every alignment,
 * and cut anywhere through spool_crc_update, gives the bitwise value.
 */
Test(spool, crc32c_equals_bitwise_at_every_length_and_alignment)
{
	static const size_t big[] = { 767, 768, 769, 6143, 6144, 6145,
	    6144 + 767, 6144 + 768, 2 * 6144 + 8, 13001, 131072, 131083,
	    200003 };
	size_t cap = 200003 + 16, len, off, i, cut;
	uint8_t *b = malloc(cap);
	uint64_t x = 88172645463325252ull;

	cr_assert_not_null(b);
	for (i = 0; i < cap; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		b[i] = (uint8_t)x;
	}
	cr_assert_eq(spool_crc("123456789", 9), 0xE3069283u);
	for (off = 0; off < 8; off++)
		for (len = 0; len <= 1600; len++)
			cr_assert_eq(spool_crc(b + off, len),
			    crc32c_bitwise(0, b + off, len),
			    "length %zu at offset %zu", len, off);
	for (i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
		uint32_t want = crc32c_bitwise(0, b + 3, big[i]);

		cr_assert_eq(spool_crc(b + 3, big[i]), want, "length %zu",
		    big[i]);
		for (cut = 0; cut <= big[i]; cut += 1 + big[i] / 7)
			cr_assert_eq(spool_crc_update(spool_crc(b + 3, cut),
			    b + 3 + cut, big[i] - cut), want,
			    "length %zu cut at %zu", big[i], cut);
	}
	free(b);
}

/* ------------------------------------------------------- payload check */

static uint64_t rnd_state = 0x9E3779B97F4A7C15ull;

static uint64_t
rnd(uint64_t n)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state % n;
}

/*
 * payload_check takes eight one-byte varints at a time where it can
 * (format.c): on columns of short and long lengths, small and large time
 * deltas of both signs, it accepts what the plain reading accepts, walks
 * to the same records, and, with any byte of the columns changed, still
 * refuses exactly what the plain reading refuses.
 */
Test(spool, payload_check_equals_plain_reading)
{
	static uint8_t raw[1 << 18];
	struct frame_header f;
	struct payload_iter it;
	struct rec_ref r;
	uint32_t len[64], k, cols;
	int64_t us[64], q;
	int trial, flip;
	size_t at;

	for (trial = 0; trial < 3000; trial++) {
		memset(&f, 0, sizeof(f));
		f.count = 1 + (uint32_t)rnd(64);
		at = 0;
		for (k = 0; k < f.count; k++) {
			len[k] = (uint32_t)(rnd(4) ? rnd(128) : rnd(3000));
			f.data_len += len[k];
			at += varint_put(raw + at, len[k]);
		}
		q = 0;
		for (k = 0; k < f.count; k++) {
			us[k] = rnd(4) ? (int64_t)rnd(129) - 64 :
			    (int64_t)rnd(200001) - 100000;
			q += us[k];
			at += varint_put(raw + at, zigzag(us[k]));
		}
		cols = (uint32_t)at;
		memset(raw + at, 0x5a, f.data_len);
		f.raw_len = cols + f.data_len;
		f.first_ts = 7000;
		f.last_ts = 7000 + q * 1000;
		cr_assert(payload_check_plain(&f, raw));
		cr_assert(payload_check(&f, raw, &it), "trial %d", trial);
		for (q = 0, k = 0; k < f.count; k++) {
			q += us[k];
			cr_assert(payload_next(&it, &r));
			cr_assert_eq(r.len, len[k]);
			cr_assert_eq(r.ts, 7000 + q * 1000);
		}
		cr_assert_not(payload_next(&it, &r));
		for (flip = 0; flip < 8; flip++) {
			size_t b = (size_t)rnd(cols);
			uint8_t was = raw[b];

			raw[b] ^= (uint8_t)(1u << rnd(8));
			cr_assert_eq(payload_check(&f, raw, &it),
			    payload_check_plain(&f, raw), "trial %d byte %zu",
			    trial, b);
			raw[b] = was;
		}
		f.data_len++;		/* the lengths no longer add up */
		cr_assert_not(payload_check(&f, raw, &it));
		f.data_len--;
		f.last_ts += 1000;	/* nor the times */
		cr_assert_not(payload_check(&f, raw, &it));
	}
}

/* ------------------------------------------------------ threads, fork */

static void *
roundtrips(void *arg)
{
	uint8_t *back = malloc(sizeof(text));
	struct iovec iov[2];
	struct codec_out z;
	size_t n, i, cut;
	long bad = 0;

	(void)arg;
	for (i = 0; i < 60; i++) {
		cut = (i * 7919) % sizeof(text);
		iov[0] = (struct iovec){ text, cut };
		iov[1] = (struct iovec){ text + cut, sizeof(text) - cut };
		n = codec_deflate(iov, 2, sizeof(text), 1 + (int)(i % 3), &z);
		if (n == 0 || !codec_inflate(z.p, n, back, sizeof(text)) ||
		    memcmp(back, text, sizeof(text)) != 0)
			bad++;
		codec_release(&z);
	}
	free(back);
	return (void *)bad;
}

Test(spool, codec_from_threads)
{
	pthread_t th[8];
	size_t b;
	void *bad;
	int i;

	text_make();
	for (b = 0; b < NBACKENDS; b++) {
		if (!code_with(backends[b]))
			continue;
		for (i = 0; i < 8; i++)
			cr_assert_eq(pthread_create(&th[i], NULL, roundtrips,
			    NULL), 0);
		for (i = 0; i < 8; i++) {
			cr_assert_eq(pthread_join(th[i], &bad), 0);
			cr_assert_null(bad, "%s: thread %d: %ld bad trips",
			    codec_backend_name(backends[b]), i, (long)bad);
		}
	}
}

/*
 * A fork while other threads hold scratches (a deflate result not yet
 * released) and the cache holds idle ones: the child codes frames at
 * once, and the parent's threads release theirs after the fork. The
 * threads wait outside malloc at the fork: ASan's allocator (GCC 12) is
 * not fork-safe the way glibc's malloc is, and a test of the codec must
 * not hang on it.
 */
static pthread_barrier_t at_fork;

static void *
hold_across_fork(void *arg)
{
	uint8_t *back = malloc(sizeof(text));
	struct iovec iov = { text, sizeof(text) };
	struct codec_out z;
	size_t n;
	long bad = 0;

	(void)arg;
	n = codec_deflate(&iov, 1, sizeof(text), 1, &z);
	pthread_barrier_wait(&at_fork);		/* the fork */
	pthread_barrier_wait(&at_fork);
	if (n == 0 || !codec_inflate(z.p, n, back, sizeof(text)) ||
	    memcmp(back, text, sizeof(text)) != 0)
		bad++;
	codec_release(&z);
	free(back);
	return (void *)bad;
}

Test(spool, codec_in_fork_child_while_parent_threads_hold_scratch)
{
	pthread_t th[6];
	size_t b;
	void *bad;
	int i, status;
	pid_t pid;

	text_make();
	for (b = 0; b < NBACKENDS; b++) {
		if (!code_with(backends[b]))
			continue;
		cr_assert_null(roundtrips(NULL));	/* idle scratch cached */
		cr_assert_eq(pthread_barrier_init(&at_fork, NULL, 7), 0);
		for (i = 0; i < 6; i++)
			cr_assert_eq(pthread_create(&th[i], NULL,
			    hold_across_fork, NULL), 0);
		pthread_barrier_wait(&at_fork);
		pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0)
			_exit(roundtrips(NULL) == NULL ? 0 : 1);
		pthread_barrier_wait(&at_fork);
		for (i = 0; i < 6; i++) {
			cr_assert_eq(pthread_join(th[i], &bad), 0);
			cr_assert_null(bad, "%s: thread %d",
			    codec_backend_name(backends[b]), i);
		}
		pthread_barrier_destroy(&at_fork);
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		    "%s: fork child: status %#x",
		    codec_backend_name(backends[b]), status);
	}
}
