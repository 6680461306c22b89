/*
 * Cursor positions: partial acks, rewind, persisted progress across
 * reopen, a torn progress slot falling back to the older one.
 */
#include <fcntl.h>

#include "helpers.h"

static struct tdir t;

static void
setup(void)
{
	tdir_make(&t);
}

static void
teardown(void)
{
	tdir_rm(&t);
}

TestSuite(spool, .init = setup, .fini = teardown);

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
