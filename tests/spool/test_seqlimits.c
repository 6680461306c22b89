/*
 * Sequence numbers at their limits (FORMAT.md §2, §5 rule 8, §6): header
 * fields rewritten with their checksums recomputed, so only the reader's
 * rules, not a crc, can catch them. An impossible segment base_seq, frame
 * first_seq or progress position is reported (scan) and counted (cursor),
 * and never makes records vanish silently.
 */
#include <sys/stat.h>

#include <fcntl.h>

#include "helpers.h"

SPOOL_TEST_SUITE();

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

static void
put_le(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

static void
path_of(char *p, size_t len, const char *name, const char *file)
{
	snprintf(p, len, "%s/%s/%s", t.spool, name, file);
}

/* Sets a u64 field of the segment header of file, crc recomputed. */
static void
set_base(const char *name, const char *file, uint64_t base)
{
	uint8_t h[336];
	char p[8400];
	int fd;

	path_of(p, sizeof(p), name, file);
	cr_assert_geq(fd = open(p, O_RDWR), 0, "%s", p);
	cr_assert_eq(pread(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
	put_le(h + 24, base, 8);
	put_le(h + 332, crc32c(h, 332), 4);
	cr_assert_eq(pwrite(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
	close(fd);
}

/* Sets first_seq of the frame header at off, crc recomputed. */
static void
set_first_seq(const char *name, const char *file, uint64_t off, uint64_t v)
{
	uint8_t h[64];
	char p[8400];
	int fd;

	path_of(p, sizeof(p), name, file);
	cr_assert_geq(fd = open(p, O_RDWR), 0, "%s", p);
	cr_assert_eq(pread(fd, h, sizeof(h), (off_t)off), (ssize_t)sizeof(h));
	cr_assert_eq(memcmp(h, "TSFR", 4), 0);
	put_le(h + 8, v, 8);
	put_le(h + 60, crc32c(h, 60), 4);
	cr_assert_eq(pwrite(fd, h, sizeof(h), (off_t)off), (ssize_t)sizeof(h));
	close(fd);
}

/* A progress file with one valid slot (generation 1). */
static void
set_progress(const char *name, uint64_t next_seq, uint64_t next_off)
{
	uint8_t b[80];
	char p[8400];
	int fd;

	memset(b, 0, sizeof(b));
	memcpy(b, "TSPG", 4);
	put_le(b + 4, 1, 4);
	put_le(b + 8, 1, 8);
	put_le(b + 16, next_seq, 8);
	put_le(b + 24, next_off, 8);
	put_le(b + 36, crc32c(b, 36), 4);
	path_of(p, sizeof(p), name, "progress");
	unlink(p);
	cr_assert_geq(fd = open(p, O_WRONLY | O_CREAT, 0600), 0);
	cr_assert_eq(write(fd, b, sizeof(b)), (ssize_t)sizeof(b));
	close(fd);
}

/* nseg sealed segments of one 40 KB record "r<seq>" each. */
static void
make_segs(struct spool_dir *d, int nseg, char *name)
{
	struct spool_options o;
	struct spool_stream *s;
	struct spool_err err = { "" };
	static uint8_t b[40000];
	int i;

	spool_options_default(&o);
	o.segment_max = 64 << 10;
	o.frame_target = 0;
	o.level = 0;
	o.fsync = SPOOL_FSYNC_NEVER;
	s = new_stream(d, &o);
	for (i = 0; i < nseg; i++) {
		memset(b, 'x', sizeof(b));
		snprintf((char *)b, sizeof(b), "r%d", i);
		append1(s, b, sizeof(b), i);
	}
	strcpy(name, spool_stream_name(s));
	cr_assert_eq(spool_stream_close(s, SPOOL_CLOSE_KEEP, "test", &err), 0);
}

/* One segment, nframes frames of 3 64-byte records "r<seq>" each. */
static void
make_frames(struct spool_dir *d, int nframes, char *name)
{
	struct spool_options o;
	struct spool_stream *s;
	struct spool_err err = { "" };
	char b[64];
	int i, j, k;

	spool_options_default(&o);
	o.frame_target = 1 << 20;
	o.fsync = SPOOL_FSYNC_NEVER;
	s = new_stream(d, &o);
	for (i = 0, k = 0; i < nframes; i++) {
		for (j = 0; j < 3; j++, k++) {
			memset(b, 'x', sizeof(b));
			snprintf(b, sizeof(b), "r%d", k);
			append1(s, b, sizeof(b), k);
		}
		cr_assert_eq(spool_stream_flush(s, &err), 0);
	}
	strcpy(name, spool_stream_name(s));
	cr_assert_eq(spool_stream_close(s, SPOOL_CLOSE_KEEP, "test", &err), 0);
}

struct seen {
	int n;
	uint64_t seq[64];
	size_t off[64];
	struct spool_losses l;
};

/* Reads everything a fresh reader delivers. Without ack: acknowledged
 * sealed segments are deleted, and the next reader must find them. */
static void
read_all_ack(struct spool_dir *d, const char *name, struct seen *s, bool ack)
{
	struct spool_cursor *c;
	struct spool_record r;
	struct spool_err err = { "" };
	char want[16];
	int rc;

	memset(s, 0, sizeof(*s));
	cr_assert_eq(spool_cursor_open(d, name, &c, &err), 0, "%s", err.msg);
	while ((rc = spool_cursor_next(c, &r, &err)) == 1) {
		snprintf(want, sizeof(want), "r%llu", (unsigned long long)r.seq);
		cr_assert(r.seq > (1u << 20) ||
		    memcmp(r.data, want, strlen(want)) == 0,
		    "record %llu holds another's bytes",
		    (unsigned long long)r.seq);
		cr_assert_lt(s->n, 64);
		s->seq[s->n] = r.seq;
		s->off[s->n++] = r.off;
		if (ack)
			cr_assert_eq(spool_cursor_ack(c, r.seq, r.len, false,
			    &err), 0, "%s", err.msg);
	}
	cr_assert_eq(rc, 0, "next: %d %s", rc, err.msg);
	spool_cursor_losses(c, &s->l);
	spool_cursor_close(c);
}

static void
read_all(struct spool_dir *d, const char *name, struct seen *s)
{
	read_all_ack(d, name, s, false);
}

struct probs {
	int n;
	int kinds[8];
	struct spool_problem last, gap;
};

static int
on_problem(void *arg, const struct spool_problem *p)
{
	struct probs *f = arg;

	f->n++;
	f->kinds[p->kind]++;
	f->last = *p;
	if (p->kind == SPOOL_PROBLEM_SEQ_GAP)
		f->gap = *p;
	return 0;
}

static const struct spool_scan_ops ops = { NULL, NULL, on_problem };

static int
scan(struct spool_dir *d, const char *name, struct probs *f)
{
	struct spool_err err = { "" };
	int rc;

	memset(f, 0, sizeof(*f));
	rc = spool_scan(d, name, &ops, f, &err);
	cr_assert_geq(rc, 0, "%s", err.msg);
	cr_assert_eq(rc, f->n);
	return rc;
}

static void
expect_all(const struct seen *s, int n)
{
	cr_assert_eq(s->n, n, "delivered %d records of %d", s->n, n);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(s->seq[i], (uint64_t)i);
		cr_assert_eq(s->off[i], 0);
	}
}

/* The reliability test's "base_seq max": every record vanished. */
Test(spool, base_seq_max_in_oldest_segment_is_reported_not_trusted)
{
	struct spool_dir *d = open_dir(&t, NULL);
	char name[SPOOL_NAME_MAX];
	struct probs f;
	struct seen s;

	make_segs(d, 4, name);
	set_base(name, "0000000000000000.seg", UINT64_MAX);
	read_all(d, name, &s);
	expect_all(&s, 4);
	cr_assert_eq(s.l.records, 0);
	cr_assert_eq(s.l.frames, 1, "the impossible header is not counted");
	cr_assert_eq(scan(d, name, &f), 1);
	cr_assert_eq(f.kinds[SPOOL_PROBLEM_BAD_HEADER], 1);
	spool_dir_close(d);
}

Test(spool, base_seq_near_max_in_a_later_segment_is_reported)
{
	struct spool_dir *d = open_dir(&t, NULL);
	char name[SPOOL_NAME_MAX];
	struct probs f;
	struct seen s;

	make_segs(d, 4, name);
	set_base(name, "0000000000000002.seg", UINT64_MAX - 1);
	read_all(d, name, &s);
	expect_all(&s, 4);
	cr_assert_eq(s.l.records, 0);
	cr_assert_eq(scan(d, name, &f), 1);
	cr_assert_eq(f.kinds[SPOOL_PROBLEM_BAD_HEADER], 1);
	spool_dir_close(d);
}

/* base_seq below the first frame: in the oldest segment the records in
 * between are missing (counted by the reader, a gap for the scan); in a
 * later one the frames continue the stream and the header is wrong. */
Test(spool, base_seq_below_first_frame_is_a_gap_or_a_bad_header)
{
	struct spool_dir *d = open_dir(&t, NULL);
	char name[SPOOL_NAME_MAX];
	struct probs f;
	struct seen s;

	make_segs(d, 4, name);
	set_base(name, "0000000000000002.seg", 0);
	read_all(d, name, &s);
	expect_all(&s, 4);
	cr_assert_eq(scan(d, name, &f), 1);
	cr_assert_eq(f.kinds[SPOOL_PROBLEM_BAD_HEADER], 1);

	/* Oldest segment deleted (acknowledged), next one says base 0 but
	 * starts at 1: record 0 is gone, no progress says it was delivered. */
	{
		char p[8400];

		path_of(p, sizeof(p), name, "0000000000000000.seg");
		cr_assert_eq(unlink(p), 0);
		set_base(name, "0000000000000002.seg", 2);
		set_base(name, "0000000000000001.seg", 0);
	}
	read_all(d, name, &s);
	cr_assert_eq(s.n, 3);
	cr_assert_eq(s.seq[0], 1);
	cr_assert_eq(s.l.records, 1);
	cr_assert_eq(s.l.first_seq, 0);
	cr_assert_eq(s.l.last_seq, 0);
	cr_assert_eq(scan(d, name, &f), 1);
	cr_assert_eq(f.kinds[SPOOL_PROBLEM_SEQ_GAP], 1);
	cr_assert(f.last.seq_known);
	cr_assert_eq(f.last.first_seq, 0);
	cr_assert_eq(f.last.last_seq, 0);
	spool_dir_close(d);
}

/* first_seq + count would pass 2^64 - 1: the frame is corrupt. At exactly
 * 2^64 - 1 it is valid (a gap), and the reader's arithmetic holds. */
Test(spool, frame_first_seq_at_the_top_of_the_sequence_space)
{
	struct spool_dir *d = open_dir(&t, NULL);
	char name[SPOOL_NAME_MAX];
	struct probs f;
	struct seen s;

	make_frames(d, 3, name);
	/* Frame 2 (records 6..8): first_seq so that the end wraps. */
	{
		struct segoffs { uint64_t off[3]; } o;
		uint8_t h[64];
		char p[8400];
		int fd, i;

		path_of(p, sizeof(p), name, "0000000000000000.seg");
		cr_assert_geq(fd = open(p, O_RDONLY), 0);
		o.off[0] = 336;
		for (i = 1; i < 3; i++) {
			cr_assert_eq(pread(fd, h, 64, (off_t)o.off[i - 1]), 64);
			o.off[i] = o.off[i - 1] + 64 + (h[28] | h[29] << 8 |
			    h[30] << 16 | (uint64_t)h[31] << 24);
		}
		close(fd);
		set_first_seq(name, "0000000000000000.seg", o.off[2],
		    UINT64_MAX - 1);
		read_all(d, name, &s);
		cr_assert_eq(s.n, 6);
		cr_assert_eq(s.l.frames, 1);
		cr_assert_geq(scan(d, name, &f), 1);
		cr_assert_eq(f.kinds[SPOOL_PROBLEM_CORRUPT_FRAME], 1);

		/* Ends exactly at 2^64 - 1: valid, records missing before. */
		set_first_seq(name, "0000000000000000.seg", o.off[2],
		    UINT64_MAX - 3);
		read_all(d, name, &s);
		cr_assert_eq(s.n, 9);
		cr_assert_eq(s.seq[6], UINT64_MAX - 3);
		cr_assert_eq(s.seq[8], UINT64_MAX - 1);
		cr_assert_eq(s.l.first_seq, 6);
		cr_assert_eq(s.l.last_seq, UINT64_MAX - 4);
		cr_assert_eq(s.l.records, UINT64_MAX - 9);
		cr_assert_geq(scan(d, name, &f), 1);
		cr_assert_eq(f.kinds[SPOOL_PROBLEM_SEQ_GAP], 1);
		/* A gap wider than any frame's count keeps its 64-bit range. */
		cr_assert(f.gap.seq_known);
		cr_assert_eq(f.gap.first_seq, 6);
		cr_assert_eq(f.gap.last_seq, UINT64_MAX - 4);
	}
	spool_dir_close(d);
}

Test(spool, progress_past_the_last_record_is_counted_not_silent)
{
	static const uint64_t bad[] = { UINT64_MAX, UINT64_MAX - 1, 5 };
	struct spool_dir *d = open_dir(&t, NULL);
	char name[SPOOL_NAME_MAX];
	struct seen s;

	make_segs(d, 4, name);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		set_progress(name, bad[i], 0);
		read_all(d, name, &s);
		cr_assert_eq(s.n, 0);
		cr_assert_eq(s.l.frames, 1, "progress %llu not counted",
		    (unsigned long long)bad[i]);
		cr_assert_eq(s.l.records, 0);
	}
	set_progress(name, 4, 1);	/* offset in a record that is not */
	read_all(d, name, &s);
	cr_assert_eq(s.n, 0);
	cr_assert_eq(s.l.frames, 1);
	/* At the end, offset 0: everything delivered, nothing wrong. */
	set_progress(name, 4, 0);
	read_all(d, name, &s);
	cr_assert_eq(s.n, 0);
	cr_assert_eq(s.l.frames, 0);
	/* A progress inside the stream is obeyed. */
	set_progress(name, 2, 0);
	read_all(d, name, &s);
	cr_assert_eq(s.n, 2);
	cr_assert_eq(s.seq[0], 2);
	cr_assert_eq(s.l.frames, 0);
	spool_dir_close(d);
}

Test(spool, progress_offset_at_or_past_its_record_delivers_it_whole)
{
	static const uint64_t bad[] = { UINT64_MAX, 17u << 20, 40000 };
	struct spool_dir *d = open_dir(&t, NULL);
	char name[SPOOL_NAME_MAX];
	struct seen s;

	make_segs(d, 4, name);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		set_progress(name, 1, bad[i]);
		read_all(d, name, &s);
		cr_assert_eq(s.n, 3);
		cr_assert_eq(s.seq[0], 1);
		cr_assert_eq(s.off[0], 0);
		cr_assert_eq(s.l.frames, 1);
	}
	set_progress(name, 1, 39999);	/* the last byte: obeyed */
	read_all(d, name, &s);
	cr_assert_eq(s.n, 3);
	cr_assert_eq(s.off[0], 39999);
	cr_assert_eq(s.l.frames, 0);
	/* Acknowledging after an impossible offset was dropped. */
	set_progress(name, 1, UINT64_MAX);
	read_all_ack(d, name, &s, true);
	cr_assert_eq(s.n, 3);
	cr_assert_eq(s.off[0], 0);
	spool_dir_close(d);
}

/* The info summary never counts more than is there. */
Test(spool, info_with_progress_at_the_limits)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_stream_info si;
	struct spool_err err = { "" };
	char name[SPOOL_NAME_MAX];

	make_segs(d, 4, name);
	set_progress(name, UINT64_MAX, UINT64_MAX);
	cr_assert_eq(spool_stream_info(d, name, &si, &err), 0);
	cr_assert_eq(si.acked_seq, UINT64_MAX);
	cr_assert_eq(si.records, 0);
	cr_assert_eq(si.raw_bytes, 0);
	set_progress(name, 1, UINT64_MAX);
	cr_assert_eq(spool_stream_info(d, name, &si, &err), 0);
	cr_assert_eq(si.records, 3);
	cr_assert_eq(si.raw_bytes, 3 * 40000);
	set_progress(name, 1, 100);
	cr_assert_eq(spool_stream_info(d, name, &si, &err), 0);
	cr_assert_eq(si.records, 3);
	cr_assert_eq(si.raw_bytes, 3 * 40000 - 100);
	set_progress(name, 4, 0);
	cr_assert_eq(spool_stream_info(d, name, &si, &err), 0);
	cr_assert_eq(si.records, 0);
	spool_dir_close(d);
}
