/*
 * fixtures/fixture.seg decoded by the offsets of spool/FORMAT.md, by hand,
 * with zlib only: if the document or the code changes alone, this fails.
 * The file (made by fixtures/make_fixture.c) is one sealed segment:
 *   records 0 "hello" ts 1000, 1 "" ts 3000 (frame 0, stored),
 *   record  2 200 x 'a' ts 900             (frame 1, raw deflate).
 */
#include <fcntl.h>
#include <zlib.h>
#include <sys/stat.h>

#include "helpers.h"

static uint8_t f[4096];
static size_t flen;

static uint32_t
u32(size_t off)
{
	return (uint32_t)f[off] | (uint32_t)f[off + 1] << 8 |
	    (uint32_t)f[off + 2] << 16 | (uint32_t)f[off + 3] << 24;
}

static uint64_t
u64(size_t off)
{
	return (uint64_t)u32(off) | (uint64_t)u32(off + 4) << 32;
}

/* CRC-32C bit by bit, as FORMAT.md defines it: independent of spool/. */
static uint32_t
crc32c(const uint8_t *p, size_t len)
{
	uint32_t c = 0xFFFFFFFFu;
	int k;

	while (len-- > 0) {
		c ^= *p++;
		for (k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
	}
	return ~c;
}

static uint32_t
crc(size_t off, size_t len)
{
	return crc32c(f + off, len);
}

static void
load(void)
{
	int fd = open(FIXTURE_DIR "/fixture.seg", O_RDONLY);
	ssize_t n;

	cr_assert_geq(fd, 0);
	n = read(fd, f, sizeof(f));
	close(fd);
	cr_assert_gt(n, 0);
	flen = (size_t)n;
}

TestSuite(spool, .init = load);

Test(spool, fixture_crc32c_check_value)
{
	cr_assert_eq(crc32c((const uint8_t *)"123456789", 9), 0xE3069283u);
}

Test(spool, fixture_segment_header_by_offsets)
{
	cr_assert_eq(flen, 545);
	cr_assert_eq(memcmp(f, "TSPOOLSG", 8), 0);
	cr_assert_eq(u32(8), 1);		/* version */
	cr_assert_eq(u32(12), 336);		/* header_len */
	cr_assert_eq(u64(16), 0);		/* segment_seq */
	cr_assert_eq(u64(24), 0);		/* base_seq */
	cr_assert_neq(u64(32), 0);		/* stream_id */
	cr_assert_eq((int64_t)u64(40), 1700000000000000000LL);
	cr_assert_eq(u32(48), 4242);		/* pid */
	cr_assert_eq(u32(52), 5);		/* fd */
	cr_assert_eq(u64(56), 64ull << 20);	/* segment_max */
	cr_assert_eq(u32(64), 1);		/* codec: deflate */
	cr_assert_eq(u32(68), 1);		/* level */
	cr_assert_str_eq((char *)f + 72, "127.0.0.1:80");
	cr_assert_str_eq((char *)f + 200, "[::1]:5555");
	cr_assert_eq(u32(328), 0);
	cr_assert_eq(u32(332), crc(0, 332));
}

Test(spool, fixture_stored_frame_by_offsets)
{
	size_t h = 336, p = h + 64;

	cr_assert_eq(memcmp(f + h, "TSFR", 4), 0);
	cr_assert_eq(u32(h + 4), 0);		/* codec: stored */
	cr_assert_eq(u64(h + 8), 0);		/* first_seq */
	cr_assert_eq(u32(h + 16), 2);		/* count */
	cr_assert_eq(u32(h + 20), 5);		/* data_len */
	cr_assert_eq(u32(h + 24), 9);		/* raw_len */
	cr_assert_eq(u32(h + 28), 9);		/* stored_len */
	cr_assert_eq((int64_t)u64(h + 32), 1000);
	cr_assert_eq((int64_t)u64(h + 40), 3000);
	cr_assert_eq(u32(h + 48), crc(p, 9));	/* payload_crc */
	cr_assert_eq(u64(h + 52), 0);
	cr_assert_eq(u32(h + 60), crc(h, 60));
	/* lengths 5, 0; times in us after first_ts: zigzag(0)=0,
	 * zigzag(2 - 0)=4. */
	cr_assert_eq(f[p], 5);
	cr_assert_eq(f[p + 1], 0);
	cr_assert_eq(f[p + 2], 0);
	cr_assert_eq(f[p + 3], 4);
	cr_assert_eq(memcmp(f + p + 4, "hello", 5), 0);
}

Test(spool, fixture_deflate_frame_by_offsets)
{
	size_t h = 409, p = h + 64;
	uint8_t raw[256];
	z_stream z;
	int i;

	cr_assert_eq(memcmp(f + h, "TSFR", 4), 0);
	cr_assert_eq(u32(h + 4), 1);		/* codec: raw deflate */
	cr_assert_eq(u64(h + 8), 2);
	cr_assert_eq(u32(h + 16), 1);
	cr_assert_eq(u32(h + 20), 200);
	cr_assert_eq(u32(h + 24), 203);
	cr_assert_eq(u32(h + 28), 8);
	cr_assert_eq((int64_t)u64(h + 32), 900);
	cr_assert_eq((int64_t)u64(h + 40), 900);
	cr_assert_eq(u32(h + 48), crc(p, 8));
	cr_assert_eq(u32(h + 60), crc(h, 60));
	memset(&z, 0, sizeof(z));
	cr_assert_eq(inflateInit2(&z, -15), Z_OK);
	z.next_in = f + p;
	z.avail_in = 8;
	z.next_out = raw;
	z.avail_out = sizeof(raw);
	cr_assert_eq(inflate(&z, Z_FINISH), Z_STREAM_END);
	cr_assert_eq(z.total_out, 203);
	inflateEnd(&z);
	/* length 200 = c8 01, timestamp delta 0, then the data. */
	cr_assert_eq(raw[0], 0xc8);
	cr_assert_eq(raw[1], 0x01);
	cr_assert_eq(raw[2], 0);
	for (i = 0; i < 200; i++)
		cr_assert_eq(raw[3 + i], 'a');
}

Test(spool, fixture_footer_by_offsets)
{
	size_t o = 481;

	cr_assert_eq(o + 64, flen);
	cr_assert_eq(memcmp(f + o, "TSFT", 4), 0);
	cr_assert_eq(u32(o + 4), 2);		/* frames */
	cr_assert_eq(u64(o + 8), 0);		/* first_seq */
	cr_assert_eq(u64(o + 16), 2);		/* last_seq */
	cr_assert_eq(u64(o + 24), 3);		/* records */
	cr_assert_eq(u64(o + 32), 205);		/* raw_bytes */
	cr_assert_eq(u64(o + 40), 545);		/* stored_bytes */
	cr_assert_eq(u32(o + 60), crc(o, 60));
}

/* And the library reads the same file to the same records. */
Test(spool, fixture_read_by_the_library)
{
	struct tdir t;
	struct spool_dir *d;
	struct spool_cursor *c;
	struct spool_record r;
	struct spool_err err = { "" };
	char path[8400];
	int fd;

	tdir_make(&t);
	d = open_dir(&t, NULL);
	snprintf(path, sizeof(path), "%s/0123456789abcdef", t.spool);
	cr_assert_eq(mkdir(path, 0700), 0);
	strcat(path, "/0000000000000000.seg");
	cr_assert_geq(fd = open(path, O_WRONLY | O_CREAT, 0600), 0);
	cr_assert_eq(write(fd, f, flen), (ssize_t)flen);
	close(fd);
	cr_assert_eq(spool_scan(d, "0123456789abcdef", NULL, NULL, &err), 0);
	cr_assert_eq(spool_cursor_open(d, "0123456789abcdef", &c, &err), 0);
	cr_assert_eq(spool_cursor_next(c, &r, &err), 1);
	cr_assert(r.seq == 0 && r.len == 5 && r.ts_ns == 1000);
	cr_assert_eq(memcmp(r.data, "hello", 5), 0);
	cr_assert_eq(spool_cursor_next(c, &r, &err), 1);
	cr_assert(r.seq == 1 && r.len == 0 && r.ts_ns == 3000);
	cr_assert_eq(spool_cursor_next(c, &r, &err), 1);
	cr_assert(r.seq == 2 && r.len == 200 && r.ts_ns == 900);
	cr_assert_eq(spool_cursor_next(c, &r, &err), 0);
	spool_cursor_close(c);
	spool_dir_close(d);
	tdir_rm(&t);
}
