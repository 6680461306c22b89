/*
 * Round trips: what is appended comes back, in order, byte for byte,
 * across rotations, with exact counts.
 */
#include "helpers.h"

SPOOL_TEST_SUITE();

/* Reads every record of the stream (dead-stream cursor) and checks them. */
static uint64_t
read_all(struct spool_dir *d, const char *name, const size_t *lens,
    uint64_t n, bool ack)
{
	struct spool_cursor *c;
	struct spool_record r;
	struct spool_err err = { "" };
	struct spool_losses l;
	uint64_t got = 0;
	int rc;

	cr_assert_eq(spool_cursor_open(d, name, &c, &err), 0, "%s", err.msg);
	while ((rc = spool_cursor_next(c, &r, &err)) == 1) {
		cr_assert_eq(r.seq, got, "seq %llu, expected %llu",
		    (unsigned long long)r.seq, (unsigned long long)got);
		cr_assert_lt(got, n);
		cr_assert_eq(r.len, lens[got], "record %llu: len %zu != %zu",
		    (unsigned long long)got, r.len, lens[got]);
		cr_assert(check_fill(r.data, r.len, r.seq), "record %llu bytes",
		    (unsigned long long)got);
		cr_assert_eq(r.ts_ns, (int64_t)(1000 + got * 7000));
		cr_assert_eq(r.off, 0);
		if (ack)
			cr_assert_eq(spool_cursor_ack(c, r.seq, r.len, false,
			    &err), 0, "%s", err.msg);
		got++;
	}
	cr_assert_eq(rc, 0, "next: %d %s", rc, err.msg);
	spool_cursor_losses(c, &l);
	cr_assert_eq(l.records, 0);
	cr_assert_eq(l.frames, 0);
	spool_cursor_close(c);
	return got;
}

Test(spool, random_sizes_across_rotations)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_options o;
	struct spool_stream *s;
	struct spool_counts cnt;
	struct spool_err err = { "" };
	enum { N = 300 };
	static size_t lens[N];
	uint8_t *buf = malloc(1 << 20);
	uint64_t raw = 0, i;
	char name[SPOOL_NAME_MAX];

	spool_options_default(&o);
	o.segment_max = 256 << 10;	/* many rotations */
	o.frame_target = 64 << 10;
	o.fsync = SPOOL_FSYNC_NEVER;
	s = new_stream(d, &o);
	srand(42);
	for (i = 0; i < N; i++) {
		int k = rand() % 10;

		lens[i] = k < 5 ? (size_t)(rand() % 64) :	/* tiny, 0 too */
		    k < 9 ? (size_t)(rand() % 8192) :
		    (size_t)(rand() % (1 << 20) + 1);
		if (i == 17)
			lens[i] = 1 << 20;
		fill(buf, lens[i], i);
		cr_assert_eq(append1(s, buf, lens[i], (int64_t)(1000 + i * 7000)),
		    (int64_t)i);
		raw += lens[i];
	}
	cr_assert_eq(spool_stream_flush(s, &err), 0, "%s", err.msg);
	spool_stream_counts(s, &cnt);
	cr_assert_eq(cnt.records, N);
	cr_assert_eq(cnt.raw_bytes, raw);
	cr_assert_eq(cnt.pending_records, N);
	cr_assert_eq(cnt.pending_bytes, raw);
	cr_assert_gt(cnt.segments, 3, "segments %u", cnt.segments);
	strcpy(name, spool_stream_name(s));
	/* Read while the writer is open (its files), then after closing. */
	cr_assert_eq(read_all(d, name, lens, N, false), N);
	cr_assert_eq(spool_stream_close(s, SPOOL_CLOSE_KEEP, "test", &err), 0,
	    "%s", err.msg);
	cr_assert_eq(read_all(d, name, lens, N, false), N);
	cr_assert_eq(spool_scan(d, name, NULL, NULL, &err), 0, "%s", err.msg);
	free(buf);
	spool_dir_close(d);
}

Test(spool, many_tiny_records_one_frame_each)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_options o;
	struct spool_stream *s;
	struct spool_err err = { "" };
	enum { N = 5000 };
	static size_t lens[N];
	uint8_t buf[16];
	uint64_t i;
	char name[SPOOL_NAME_MAX];

	spool_options_default(&o);
	o.segment_max = 64 << 10;
	o.frame_target = 0;	/* every append a frame */
	o.fsync = SPOOL_FSYNC_NEVER;
	s = new_stream(d, &o);
	for (i = 0; i < N; i++) {
		lens[i] = i % 16;
		fill(buf, lens[i], i);
		append1(s, buf, lens[i], (int64_t)(1000 + i * 7000));
	}
	strcpy(name, spool_stream_name(s));
	cr_assert_eq(spool_stream_close(s, SPOOL_CLOSE_KEEP, "test", &err), 0);
	cr_assert_eq(read_all(d, name, lens, N, true), N);
	spool_dir_close(d);
}

Test(spool, live_cursor_reads_and_acks_delete_segments)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_options o;
	struct spool_stream *s;
	struct spool_cursor *c;
	struct spool_record r;
	struct spool_counts cnt, dc;
	struct spool_err err = { "" };
	uint8_t buf[4000];
	uint64_t i, got = 0;
	int rc;

	spool_options_default(&o);
	o.segment_max = 64 << 10;
	o.frame_target = 8 << 10;
	o.level = 0;		/* stored: sizes are predictable */
	o.fsync = SPOOL_FSYNC_NEVER;
	s = new_stream(d, &o);
	cr_assert_eq(spool_stream_cursor(s, &c, &err), 0, "%s", err.msg);
	cr_assert_eq(spool_cursor_next(c, &r, &err), 0);	/* nothing yet */
	for (i = 0; i < 200; i++) {
		fill(buf, sizeof(buf), i);
		append1(s, buf, sizeof(buf), (int64_t)i);
	}
	/* Staged records are not visible until a frame is formed. */
	while ((rc = spool_cursor_next(c, &r, &err)) == 1) {
		cr_assert_eq(r.seq, got++);
		cr_assert(check_fill(r.data, r.len, r.seq));
		cr_assert_eq(spool_cursor_ack(c, r.seq, r.len, true, &err), 0);
	}
	cr_assert_eq(rc, 0);
	cr_assert_lt(got, 200);
	cr_assert_eq(spool_stream_flush(s, &err), 0);
	while ((rc = spool_cursor_next(c, &r, &err)) == 1) {
		cr_assert_eq(r.seq, got++);
		cr_assert_eq(spool_cursor_ack(c, r.seq, r.len, true, &err), 0);
	}
	cr_assert_eq(got, 200);
	spool_stream_counts(s, &cnt);
	cr_assert_eq(cnt.pending_records, 0);
	cr_assert_eq(cnt.pending_bytes, 0);
	/* Only the current segment is left; its size is the whole store. */
	cr_assert_eq(cnt.segments, 1, "segments %u", cnt.segments);
	spool_dir_counts(d, &dc);
	cr_assert_eq(dc.stored_bytes, cnt.stored_bytes);
	cr_assert_eq(spool_stream_trim(s, &err), 0, "%s", err.msg);
	spool_stream_counts(s, &cnt);
	cr_assert_eq(cnt.segments, 0);
	cr_assert_eq(cnt.stored_bytes, 0);
	/* Appending after a trim starts a new segment; the cursor follows. */
	append1(s, "after trim", 10, 5);
	cr_assert_eq(spool_stream_flush(s, &err), 0);
	cr_assert_eq(spool_cursor_next(c, &r, &err), 1, "%s", err.msg);
	cr_assert_eq(r.seq, 200);
	cr_assert_eq(r.len, 10);
	cr_assert_eq(memcmp(r.data, "after trim", 10), 0);
	cr_assert_eq(spool_cursor_ack(c, r.seq, r.len, true, &err), 0);
	spool_cursor_close(c);
	cr_assert_eq(spool_stream_close(s, SPOOL_CLOSE_REMOVE, NULL, &err), 0);
	spool_dir_counts(d, &dc);
	cr_assert_eq(dc.stored_bytes, 0);
	cr_assert_eq(dc.pending_bytes, 0);
	spool_dir_close(d);
}

Test(spool, fsync_always_frames_every_append)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_options o;
	struct spool_stream *s;
	struct spool_cursor *c;
	struct spool_record r;
	struct spool_err err = { "" };

	spool_options_default(&o);
	o.fsync = SPOOL_FSYNC_ALWAYS;
	s = new_stream(d, &o);
	append1(s, "one", 3, 1);
	cr_assert_eq(spool_stream_staged_since(s), 0);
	cr_assert_eq(spool_stream_cursor(s, &c, &err), 0);
	cr_assert_eq(spool_cursor_next(c, &r, &err), 1);
	cr_assert_eq(r.len, 3);
	spool_cursor_close(c);
	spool_stream_close(s, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_dir_close(d);
}
