/*
 * Cursor positions: partial acks, rewind, persisted progress across
 * reopen, a torn progress slot falling back to the older one.
 */
#include <fcntl.h>

#include "helpers.h"

SPOOL_TEST_SUITE();

/* A closed stream of n records "rec-<seq>" padded to 100 bytes. */
static void
make_stream(struct spool_dir *d, int n, char name[SPOOL_NAME_MAX])
{
	struct spool_options o;
	struct spool_stream *s;
	struct spool_err err = { "" };
	char buf[100];
	int i;

	spool_options_default(&o);
	o.segment_max = 64 << 10;
	o.frame_target = 4 << 10;
	o.fsync = SPOOL_FSYNC_NEVER;
	s = new_stream(d, &o);
	for (i = 0; i < n; i++) {
		memset(buf, '.', sizeof(buf));
		snprintf(buf, sizeof(buf), "rec-%d", i);
		append1(s, buf, sizeof(buf), i);
	}
	strcpy(name, spool_stream_name(s));
	cr_assert_eq(spool_stream_close(s, SPOOL_CLOSE_KEEP, "test", &err), 0);
}

static void
expect_rec(struct spool_cursor *c, uint64_t seq, size_t off)
{
	struct spool_record r;
	struct spool_err err = { "" };
	char want[16];

	cr_assert_eq(spool_cursor_next(c, &r, &err), 1, "next: %s", err.msg);
	cr_assert_eq(r.seq, seq, "got %llu want %llu",
	    (unsigned long long)r.seq, (unsigned long long)seq);
	cr_assert_eq(r.off, off, "off %zu want %zu", r.off, off);
	cr_assert_eq(r.len, 100);
	snprintf(want, sizeof(want), "rec-%llu", (unsigned long long)seq);
	cr_assert_eq(memcmp(r.data, want, strlen(want)), 0);
}

Test(spool, partial_ack_returns_rest_of_record)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_cursor *c;
	struct spool_err err = { "" };
	char name[SPOOL_NAME_MAX];

	make_stream(d, 50, name);
	cr_assert_eq(spool_cursor_open(d, name, &c, &err), 0);
	expect_rec(c, 0, 0);
	expect_rec(c, 1, 0);
	expect_rec(c, 2, 0);
	/* 0 whole, 1 up to byte 30: next is 1 again from 30. */
	cr_assert_eq(spool_cursor_ack(c, 1, 30, false, &err), 0, "%s", err.msg);
	expect_rec(c, 1, 30);
	expect_rec(c, 2, 0);
	cr_assert_eq(spool_cursor_ack(c, 2, 100, false, &err), 0);
	expect_rec(c, 3, 0);
	/* Rewind to the first unacknowledged. */
	cr_assert_eq(spool_cursor_rewind(c), 0);
	expect_rec(c, 3, 0);
	/* An ack of something never returned is refused. */
	cr_assert_eq(spool_cursor_ack(c, 10, 1, false, &err), -EINVAL);
	/* An older position is a no-op. */
	cr_assert_eq(spool_cursor_ack(c, 0, 5, false, &err), 0);
	expect_rec(c, 4, 0);
	spool_cursor_close(c);
	spool_dir_close(d);
}

Test(spool, progress_survives_reopen_without_duplicates)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_cursor *c;
	struct spool_record r;
	struct spool_err err = { "" };
	char name[SPOOL_NAME_MAX];
	struct spool_stream_info si;
	uint64_t i;

	make_stream(d, 2000, name);	/* several segments */
	cr_assert_eq(spool_cursor_open(d, name, &c, &err), 0);
	for (i = 0; i < 1500; i++)
		expect_rec(c, i, 0);
	/* Persisted: all of 0..1199 and 40 bytes of 1200. */
	cr_assert_eq(spool_cursor_ack(c, 1199, 100, false, &err), 0);
	cr_assert_eq(spool_cursor_ack(c, 1200, 40, true, &err), 0);
	/* Acknowledged in memory only: lost on close, delivered again. */
	expect_rec(c, 1200, 40);
	cr_assert_eq(spool_cursor_ack(c, 1200, 100, false, &err), 0);
	spool_cursor_close(c);

	cr_assert_eq(spool_stream_info(d, name, &si, &err), 0, "%s", err.msg);
	cr_assert_eq(si.acked_seq, 1200);
	cr_assert_eq(si.records, 800);
	cr_assert_eq(si.raw_bytes, 800 * 100 - 40);
	cr_assert(si.id_known);
	cr_assert_str_eq(si.id.peer, "127.0.0.1:40000");

	cr_assert_eq(spool_cursor_open(d, name, &c, &err), 0);
	expect_rec(c, 1200, 40);
	for (i = 1201; i < 2000; i++)
		expect_rec(c, i, 0);
	cr_assert_eq(spool_cursor_next(c, &r, &err), 0);
	cr_assert_eq(spool_cursor_ack(c, 1999, 100, true, &err), 0);
	spool_cursor_close(c);

	/* Everything acknowledged: sealed segments are gone. */
	cr_assert_eq(spool_stream_info(d, name, &si, &err), 0);
	cr_assert_eq(si.records, 0);
	cr_assert_eq(si.segments, 0, "segments %u", si.segments);
	cr_assert_eq(spool_cursor_open(d, name, &c, &err), 0);
	cr_assert_eq(spool_cursor_next(c, &r, &err), 0);
	spool_cursor_close(c);
	spool_dir_close(d);
}

Test(spool, torn_progress_slot_keeps_older_slot)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_cursor *c;
	struct spool_err err = { "" };
	char name[SPOOL_NAME_MAX], path[4300];
	uint64_t i;
	int fd;

	make_stream(d, 100, name);
	cr_assert_eq(spool_cursor_open(d, name, &c, &err), 0);
	for (i = 0; i < 20; i++)
		expect_rec(c, i, 0);
	cr_assert_eq(spool_cursor_ack(c, 9, 100, true, &err), 0);  /* gen 1 */
	cr_assert_eq(spool_cursor_ack(c, 19, 100, true, &err), 0); /* gen 2 */
	spool_cursor_close(c);
	/* Generation 2 lives in slot 0 (offset 0): tear it. */
	snprintf(path, sizeof(path), "%s/%s/progress", t.spool, name);
	cr_assert_geq(fd = open(path, O_WRONLY), 0);
	cr_assert_eq(pwrite(fd, "\xff\xff\xff", 3, 20), 3);
	close(fd);
	cr_assert_eq(spool_cursor_open(d, name, &c, &err), 0);
	expect_rec(c, 10, 0);	/* the older slot: duplicates, not losses */
	spool_cursor_close(c);
	spool_dir_close(d);
}

/* The file offset and stored length of every frame spool_scan reports. */
struct frame_offs {
	uint64_t off[8];
	uint32_t stored[8];
	int n;
};

static int
on_frame(void *arg, const struct spool_frame_info *fi)
{
	struct frame_offs *f = arg;

	if (f->n < 8) {
		f->off[f->n] = fi->offset;
		f->stored[f->n] = fi->stored_len;
	}
	f->n++;
	return 0;
}

/*
 * Frame 1 holds record 0, frame 2 (larger, so reading it needs a larger
 * buffer) records 1..3 and has a bit flipped in its payload. The cursor
 * returns record 0, fails to load frame 2, and only then hears that 40
 * bytes of record 0 went out: the rest of record 0 must come back whole,
 * from frame 1, and nothing of frame 2.
 */
Test(spool, partial_ack_after_corrupt_next_frame_returns_rest_of_record)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_scan_ops ops = { NULL, on_frame, NULL };
	struct spool_options o;
	struct spool_stream *s;
	struct spool_cursor *c;
	struct spool_record r;
	struct spool_losses l;
	struct spool_err err = { "" };
	struct frame_offs f = { .n = 0 };
	static uint8_t buf[16 << 10];
	char name[SPOOL_NAME_MAX], path[4300];
	uint8_t b;
	uint64_t seq, at;
	int fd;

	spool_options_default(&o);
	o.level = 0;		/* stored: the flip lands in the payload */
	o.frame_target = 64 << 10;
	o.fsync = SPOOL_FSYNC_NEVER;
	s = new_stream(d, &o);
	fill(buf, 100, 0);
	append1(s, buf, 100, 0);
	cr_assert_eq(spool_stream_flush(s, &err), 0, "%s", err.msg);
	for (seq = 1; seq <= 3; seq++) {
		fill(buf, sizeof(buf), seq);
		append1(s, buf, sizeof(buf), (int64_t)seq);
	}
	strcpy(name, spool_stream_name(s));
	cr_assert_eq(spool_stream_close(s, SPOOL_CLOSE_KEEP, "test", &err), 0,
	    "%s", err.msg);
	cr_assert_eq(spool_scan(d, name, &ops, &f, &err), 0, "%s", err.msg);
	cr_assert_eq(f.n, 2);
	cr_assert_gt(f.stored[1], 2 * f.stored[0]);

	snprintf(path, sizeof(path), "%s/%s/0000000000000000.seg", t.spool,
	    name);
	cr_assert_geq(fd = open(path, O_RDWR), 0, "%s: %s", path,
	    strerror(errno));
	at = f.off[1] + 64 + f.stored[1] / 2;
	cr_assert_eq(pread(fd, &b, 1, (off_t)at), 1);
	b ^= 0x10;
	cr_assert_eq(pwrite(fd, &b, 1, (off_t)at), 1);
	close(fd);

	cr_assert_eq(spool_cursor_open(d, name, &c, &err), 0, "%s", err.msg);
	cr_assert_eq(spool_cursor_next(c, &r, &err), 1, "%s", err.msg);
	cr_assert_eq(r.seq, 0);
	cr_assert_eq(r.len, 100);
	/* Frame 2 is read, fails its checksum, and is skipped. */
	cr_assert_eq(spool_cursor_next(c, &r, &err), 0, "%s", err.msg);
	spool_cursor_losses(c, &l);
	cr_assert_eq(l.frames, 1);
	cr_assert_eq(l.records, 3);

	cr_assert_eq(spool_cursor_ack(c, 0, 40, false, &err), 0, "%s", err.msg);
	cr_assert_eq(spool_cursor_next(c, &r, &err), 1, "%s", err.msg);
	cr_assert_eq(r.seq, 0);
	cr_assert_eq(r.len, 100, "len %zu", r.len);
	cr_assert_eq(r.off, 40);
	cr_assert(check_fill(r.data, r.len, 0), "record 0 comes back changed");
	cr_assert_eq(spool_cursor_ack(c, 0, 100, false, &err), 0, "%s",
	    err.msg);
	cr_assert_eq(spool_cursor_next(c, &r, &err), 0, "%s", err.msg);
	spool_cursor_losses(c, &l);
	cr_assert_eq(l.frames, 1, "frames %llu", (unsigned long long)l.frames);
	spool_cursor_close(c);
	spool_dir_close(d);
}

/* ------------------------------------------------------------- runs */

/*
 * Runs (spool_cursor_run, spool_cursor_ack_run): a stream of records of
 * many lengths, empty ones and ones larger than a frame among them, in
 * small frames and segments; its bytes are the records' back to back.
 */
#define RUN_RECS 3000

static size_t
run_rec_len(uint64_t seq)
{
	if (seq % 50 == 7)
		return 0;
	if (seq % 400 == 123)
		return 9000;	/* more than a frame_target */
	return 1 + (size_t)(seq * 37 % 300);
}

/* The stream's bytes and where each record starts in them. */
struct run_stream {
	uint8_t *bytes;
	size_t len;
	size_t start[RUN_RECS + 1];
};

static void
run_expect(struct run_stream *x)
{
	uint64_t i;

	x->len = 0;
	for (i = 0; i < RUN_RECS; i++) {
		x->start[i] = x->len;
		x->len += run_rec_len(i);
	}
	x->start[RUN_RECS] = x->len;
	cr_assert_not_null(x->bytes = malloc(x->len));
	for (i = 0; i < RUN_RECS; i++)
		fill(x->bytes + x->start[i], run_rec_len(i), i);
}

static struct spool_stream *
run_stream_make(struct spool_dir *d, int level, bool close_it,
    char name[SPOOL_NAME_MAX])
{
	static uint8_t buf[9000];
	struct spool_options o;
	struct spool_stream *s;
	struct spool_err err = { "" };
	uint64_t i;

	spool_options_default(&o);
	o.level = level;
	o.segment_max = 64 << 10;
	o.frame_target = 4 << 10;
	o.fsync = SPOOL_FSYNC_NEVER;
	s = new_stream(d, &o);
	for (i = 0; i < RUN_RECS; i++) {
		fill(buf, run_rec_len(i), i);
		append1(s, buf, run_rec_len(i), (int64_t)i);
	}
	strcpy(name, spool_stream_name(s));
	if (!close_it) {
		cr_assert_eq(spool_stream_flush(s, &err), 0, "%s", err.msg);
		return s;
	}
	cr_assert_eq(spool_stream_close(s, SPOOL_CLOSE_KEEP, "test", &err), 0,
	    "%s", err.msg);
	return NULL;
}

/*
 * Checks the run against the stream at byte pos: it starts at pos (its
 * first record may be an empty one that opens a frame), inside its first
 * record, ends at the end of its last, and holds the stream's bytes.
 */
static void
run_check(const struct run_stream *x, const struct spool_run *run,
    size_t pos)
{
	cr_assert_lt(run->seq, RUN_RECS);
	cr_assert_eq(x->start[run->seq] + run->off, pos,
	    "run at byte %zu: seq %llu off %zu", pos,
	    (unsigned long long)run->seq, run->off);
	cr_assert(run->off == 0 || run->off < run_rec_len(run->seq));
	cr_assert_leq(run->seq + run->count, RUN_RECS);
	cr_assert_eq(pos + run->len, x->start[run->seq + run->count],
	    "run of %llu records at %zu: %zu bytes",
	    (unsigned long long)run->count, pos, run->len);
	cr_assert_eq(memcmp(run->data, x->bytes + pos, run->len), 0,
	    "run at byte %zu: bytes differ", pos);
}

/* Cuts of every kind: a byte, inside records, across several, whole. */
static size_t
run_cut(unsigned k, size_t len)
{
	static const size_t cuts[] = { 1, 29, 0, 300, 1000, 4095, 7 };
	size_t c = k % 5 == 4 ? len : cuts[k % (sizeof(cuts) / sizeof(*cuts))];

	return c < len ? c : len;
}

Test(spool, runs_deliver_every_byte_once_across_frames_and_segments)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_stream_info si;
	struct spool_losses l;
	struct spool_cursor *c;
	struct spool_run run;
	struct spool_err err = { "" };
	struct run_stream x;
	char name[SPOOL_NAME_MAX];
	size_t pos = 0, n, runs = 0, frames = 0;
	uint64_t last_seq = UINT64_MAX;
	unsigned k = 0;
	int rc;

	run_expect(&x);
	run_stream_make(d, 1, true, name);
	cr_assert_eq(spool_cursor_open(d, name, &c, &err), 0, "%s", err.msg);
	while ((rc = spool_cursor_run(c, &run, &err)) == 1) {
		run_check(&x, &run, pos);
		runs++;
		if (run.off == 0 && run.seq != last_seq)
			frames++;
		last_seq = run.seq;
		n = run_cut(k++, run.len);
		cr_assert_eq(spool_cursor_ack_run(c, n, k % 16 == 0, &err), 0,
		    "%s", err.msg);
		pos += n;
	}
	cr_assert_eq(rc, 0, "%s", err.msg);
	cr_assert_eq(pos, x.len, "delivered %zu of %zu", pos, x.len);
	/* Many records a run, and many runs: frames, not records. */
	cr_assert_gt(frames, 20);
	cr_assert_lt(runs, RUN_RECS / 4, "%zu runs", runs);
	spool_cursor_losses(c, &l);
	cr_assert_eq(l.frames, 0);
	cr_assert_eq(spool_cursor_ack(c, 0, 0, true, &err), 0, "%s", err.msg);
	spool_cursor_close(c);
	/* All acknowledged: nothing pending, the sealed segments gone. */
	cr_assert_eq(spool_stream_info(d, name, &si, &err), 0, "%s", err.msg);
	cr_assert_eq(si.records, 0, "records %llu",
	    (unsigned long long)si.records);
	cr_assert_eq(si.segments, 0, "segments %u", si.segments);
	free(x.bytes);
	spool_dir_close(d);
}

/* The run is the same until acknowledged; a cut moves its start to the
 * byte; it ends the record's pending bytes by exactly what was sent. */
Test(spool, a_cut_run_starts_again_at_the_byte_and_counts_exact_pending)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_counts cnt;
	struct spool_stream *s;
	struct spool_cursor *c;
	struct spool_run run, again;
	struct spool_err err = { "" };
	struct run_stream x;
	char name[SPOOL_NAME_MAX];
	size_t pos = 0;

	run_expect(&x);
	s = run_stream_make(d, 1, false, name);
	cr_assert_eq(spool_stream_cursor(s, &c, &err), 0, "%s", err.msg);
	cr_assert_eq(spool_cursor_run(c, &run, &err), 1, "%s", err.msg);
	run_check(&x, &run, 0);
	cr_assert_gt(run.count, 3);
	cr_assert_eq(spool_cursor_run(c, &again, &err), 1, "%s", err.msg);
	cr_assert_eq(again.data, run.data);
	cr_assert_eq(again.len, run.len);
	/* Into the third record: two whole, a part of it. */
	pos = x.start[2] + 5;
	cr_assert_eq(spool_cursor_ack_run(c, pos, false, &err), 0, "%s",
	    err.msg);
	spool_stream_counts(s, &cnt);
	cr_assert_eq(cnt.pending_bytes, x.len - pos);
	cr_assert_eq(cnt.pending_records, RUN_RECS - 2);
	/* The rest of the same run, from the same buffer, acked in two. */
	cr_assert_eq(spool_cursor_run(c, &again, &err), 1, "%s", err.msg);
	run_check(&x, &again, pos);
	cr_assert_eq(again.data, run.data + pos);
	cr_assert_eq(spool_cursor_ack_run(c, 10, false, &err), 0, "%s", err.msg);
	cr_assert_eq(spool_cursor_ack_run(c, again.len - 10, false, &err), 0,
	    "%s", err.msg);
	pos += again.len;
	spool_stream_counts(s, &cnt);
	cr_assert_eq(cnt.pending_bytes, x.len - pos);
	cr_assert_eq(cnt.pending_records, RUN_RECS - again.seq - again.count);
	/* Nothing more of that run: more than it holds is refused. */
	cr_assert_eq(spool_cursor_ack_run(c, 1, false, &err), -EINVAL);
	cr_assert_eq(spool_cursor_run(c, &run, &err), 1, "%s", err.msg);
	run_check(&x, &run, pos);
	cr_assert_eq(spool_cursor_ack_run(c, run.len + 1, false, &err),
	    -EINVAL);
	spool_cursor_close(c);
	cr_assert_eq(spool_stream_close(s, SPOOL_CLOSE_KEEP, "test", &err), 0,
	    "%s", err.msg);
	free(x.bytes);
	spool_dir_close(d);
}

/* An acknowledgement that ends exactly where empty records follow passes
 * them: the next run starts at the next byte's record, and a run of only
 * empty records is acknowledged with 0. */
Test(spool, a_run_passes_empty_records_at_its_cut)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_options o;
	struct spool_stream *s;
	struct spool_cursor *c;
	struct spool_run run;
	struct spool_err err = { "" };
	char name[SPOOL_NAME_MAX];

	spool_options_default(&o);
	o.fsync = SPOOL_FSYNC_NEVER;
	s = new_stream(d, &o);
	append1(s, "abc", 3, 0);
	append1(s, "", 0, 1);
	append1(s, "", 0, 2);
	append1(s, "de", 2, 3);
	cr_assert_eq(spool_stream_flush(s, &err), 0, "%s", err.msg);
	append1(s, "", 0, 4);
	append1(s, "", 0, 5);
	strcpy(name, spool_stream_name(s));
	cr_assert_eq(spool_stream_close(s, SPOOL_CLOSE_KEEP, "test", &err), 0);

	cr_assert_eq(spool_cursor_open(d, name, &c, &err), 0, "%s", err.msg);
	cr_assert_eq(spool_cursor_run(c, &run, &err), 1, "%s", err.msg);
	cr_assert_eq(run.seq, 0);
	cr_assert_eq(run.count, 4);
	cr_assert_eq(run.len, 5);
	cr_assert_eq(memcmp(run.data, "abcde", 5), 0);
	cr_assert_eq(spool_cursor_ack_run(c, 3, false, &err), 0, "%s", err.msg);
	cr_assert_eq(spool_cursor_run(c, &run, &err), 1, "%s", err.msg);
	cr_assert_eq(run.seq, 3, "seq %llu", (unsigned long long)run.seq);
	cr_assert_eq(run.off, 0);
	cr_assert_eq(run.count, 1);
	cr_assert_eq(spool_cursor_ack_run(c, 2, false, &err), 0, "%s", err.msg);
	/* The second frame: two empty records, nothing to send. */
	cr_assert_eq(spool_cursor_run(c, &run, &err), 1, "%s", err.msg);
	cr_assert_eq(run.seq, 4);
	cr_assert_eq(run.count, 2);
	cr_assert_eq(run.len, 0);
	cr_assert_eq(spool_cursor_ack_run(c, 0, true, &err), 0, "%s", err.msg);
	cr_assert_eq(spool_cursor_run(c, &run, &err), 0, "%s", err.msg);
	spool_cursor_close(c);
	/* All six acknowledged and persisted. */
	cr_assert_eq(spool_cursor_open(d, name, &c, &err), 0, "%s", err.msg);
	cr_assert_eq(spool_cursor_run(c, &run, &err), 0, "%s", err.msg);
	spool_cursor_close(c);
	spool_dir_close(d);
}

/*
 * A cut persisted, then the cursor parked (and, apart, closed and opened
 * again): the next run starts at the cut's byte, read from the files.
 * Records spool_cursor_next returned and not acknowledged come back in the
 * run, from the acknowledged byte.
 */
Test(spool, a_parked_or_reopened_cursor_runs_from_the_cut)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_cursor *c;
	struct spool_record r;
	struct spool_run run;
	struct spool_err err = { "" };
	struct run_stream x;
	char name[SPOOL_NAME_MAX];
	size_t pos;
	int i;

	run_expect(&x);
	run_stream_make(d, 1, true, name);
	cr_assert_eq(spool_cursor_open(d, name, &c, &err), 0, "%s", err.msg);
	/* Into the second frame, then a cut inside a record. */
	cr_assert_eq(spool_cursor_run(c, &run, &err), 1, "%s", err.msg);
	pos = run.len;
	cr_assert_eq(spool_cursor_ack_run(c, run.len, false, &err), 0);
	cr_assert_eq(spool_cursor_run(c, &run, &err), 1, "%s", err.msg);
	run_check(&x, &run, pos);
	cr_assert_gt(run.count, 2);
	pos = x.start[run.seq + 1] + 1;
	cr_assert_eq(spool_cursor_ack_run(c, pos - x.start[run.seq], true,
	    &err), 0, "%s", err.msg);

	spool_cursor_park(c);
	cr_assert_eq(spool_cursor_run(c, &run, &err), 1, "%s", err.msg);
	run_check(&x, &run, pos);
	spool_cursor_close(c);

	cr_assert_eq(spool_cursor_open(d, name, &c, &err), 0, "%s", err.msg);
	cr_assert_eq(spool_cursor_run(c, &run, &err), 1, "%s", err.msg);
	run_check(&x, &run, pos);
	/* Records from spool_cursor_next, one of them cut: the run starts
	 * again at the cut. */
	for (i = 0; i < 3; i++)
		cr_assert_eq(spool_cursor_next(c, &r, &err), 1, "%s", err.msg);
	cr_assert_eq(r.seq, run.seq + 2);
	cr_assert_eq(spool_cursor_ack(c, run.seq + 1, 4, false, &err), 0,
	    "%s", err.msg);
	pos = x.start[run.seq + 1] + 4;
	cr_assert_eq(spool_cursor_run(c, &run, &err), 1, "%s", err.msg);
	run_check(&x, &run, pos);
	spool_cursor_close(c);
	free(x.bytes);
	spool_dir_close(d);
}

/* The file offsets of every frame (up to 64) of a closed stream. */
struct frame_list {
	uint64_t off[64], first[64];
	uint32_t stored[64], count[64];
	int n;
};

static int
on_frame_list(void *arg, const struct spool_frame_info *fi)
{
	struct frame_list *f = arg;

	if (f->n < 64 && fi->segment_seq == 0) {
		f->off[f->n] = fi->offset;
		f->first[f->n] = fi->first_seq;
		f->stored[f->n] = fi->stored_len;
		f->count[f->n] = fi->count;
		f->n++;
	}
	return 0;
}

/*
 * A frame with a flipped payload byte in the middle of the first segment:
 * the runs skip exactly its records (counted as lost), deliver every other
 * byte, and never return a run across the hole.
 */
Test(spool, runs_skip_a_corrupt_frame_and_count_its_records)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_scan_ops ops = { NULL, on_frame_list, NULL };
	struct frame_list f = { .n = 0 };
	struct spool_losses l;
	struct spool_cursor *c;
	struct spool_run run;
	struct spool_err err = { "" };
	struct run_stream x;
	char name[SPOOL_NAME_MAX], path[4300];
	uint64_t lost0, lost1, seq;
	size_t pos = 0, got = 0;
	uint8_t b;
	off_t at;
	int fd, rc;

	run_expect(&x);
	run_stream_make(d, 0, true, name);	/* stored: the flip is seen */
	cr_assert_eq(spool_scan(d, name, &ops, &f, &err), 0, "%s", err.msg);
	cr_assert_gt(f.n, 4);
	lost0 = f.first[3];
	lost1 = f.first[3] + f.count[3];
	snprintf(path, sizeof(path), "%s/%s/0000000000000000.seg", t.spool,
	    name);
	cr_assert_geq(fd = open(path, O_RDWR), 0, "%s", strerror(errno));
	at = (off_t)(f.off[3] + 64 + f.stored[3] / 2);
	cr_assert_eq(pread(fd, &b, 1, at), 1);
	b ^= 0x10;
	cr_assert_eq(pwrite(fd, &b, 1, at), 1);
	close(fd);

	cr_assert_eq(spool_cursor_open(d, name, &c, &err), 0, "%s", err.msg);
	while ((rc = spool_cursor_run(c, &run, &err)) == 1) {
		if (run.off == 0 && run.seq == lost1)
			pos = x.start[lost1];	/* the hole */
		run_check(&x, &run, pos);
		cr_assert(run.seq + run.count <= lost0 || run.seq >= lost1,
		    "a run over the lost records");
		/* Cut in halves: the hole is met between two frames. */
		seq = run.len / 2 + 1 < run.len ? run.len / 2 + 1 : run.len;
		cr_assert_eq(spool_cursor_ack_run(c, seq, false, &err), 0);
		pos += seq;
		got += seq;
	}
	cr_assert_eq(rc, 0, "%s", err.msg);
	cr_assert_eq(pos, x.len);
	cr_assert_eq(got, x.len - (x.start[lost1] - x.start[lost0]));
	spool_cursor_losses(c, &l);
	cr_assert_eq(l.frames, 1);
	cr_assert_eq(l.records, lost1 - lost0);
	cr_assert_eq(l.first_seq, lost0);
	spool_cursor_close(c);
	free(x.bytes);
	spool_dir_close(d);
}
