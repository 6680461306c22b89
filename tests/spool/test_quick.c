/*
 * spool_stream_append_quick: the usual append in fewer steps. What it
 * takes must read back exactly as spool_stream_append's records would
 * (same sequence numbers, bytes, times, counts), across frames, segments
 * and the staging buffers a full frame leaves sized for the next; and it
 * must refuse, changing nothing, whatever only the general path may do:
 * a first record, a frame to form, a stalled writer, the budget's lock or
 * refusal.
 */
#include <malloc.h>

#include "helpers.h"

SPOOL_TEST_SUITE();

/* Record i's length: mostly small, some large, a few near a frame. */
static size_t
len_of(uint64_t i)
{
	if (i % 1009 == 500)
		return 70000;
	if (i % 97 == 3)
		return 5000;
	return (size_t)(i % 40) + 1;
}

static int64_t
ts_of(uint64_t i)
{
	return (int64_t)(1000 + i * 7000);
}

/* Appends record i as the library does: quick first, else the budget
 * check and the general append. Counts which path took it. */
static void
append_as_library(struct spool_stream *s, uint64_t i, uint8_t *buf,
    unsigned *quick, unsigned *general)
{
	const char *which;
	int64_t seq;

	fill(buf, len_of(i), i);
	seq = spool_stream_append_quick(s, buf, len_of(i), ts_of(i));
	if (seq >= 0) {
		(*quick)++;
	} else {
		(*general)++;
		cr_assert_eq(spool_budget_check(s, len_of(i), &which), 0,
		    "record %llu refused: %s", (unsigned long long)i, which);
		seq = append1(s, buf, len_of(i), ts_of(i));
	}
	cr_assert_eq(seq, (int64_t)i, "record %llu got seq %lld",
	    (unsigned long long)i, (long long)seq);
}

static void
read_back(struct spool_dir *d, const char *name, uint64_t n)
{
	struct spool_cursor *c;
	struct spool_record r;
	struct spool_err err = { "" };
	struct spool_losses l;
	uint64_t got = 0;
	int rc;

	cr_assert_eq(spool_cursor_open(d, name, &c, &err), 0, "%s", err.msg);
	while ((rc = spool_cursor_next(c, &r, &err)) == 1) {
		cr_assert_eq(r.seq, got);
		cr_assert_eq(r.len, len_of(got), "record %llu: len %zu",
		    (unsigned long long)got, r.len);
		cr_assert(check_fill(r.data, r.len, r.seq), "record %llu bytes",
		    (unsigned long long)got);
		cr_assert_eq(r.ts_ns, ts_of(got));
		got++;
	}
	cr_assert_eq(rc, 0, "next: %d %s", rc, err.msg);
	cr_assert_eq(got, n, "read %llu of %llu records",
	    (unsigned long long)got, (unsigned long long)n);
	spool_cursor_losses(c, &l);
	cr_assert_eq(l.records, 0);
	cr_assert_eq(l.frames, 0);
	spool_cursor_close(c);
}

static void
round_trip(const struct spool_limits *lim)
{
	struct spool_dir *d = open_dir(&t, lim);
	struct spool_options o;
	struct spool_stream *s;
	struct spool_err err = { "" };
	struct spool_counts sc;
	enum { N = 30000 };
	static uint8_t buf[70000];
	unsigned quick = 0, general = 0;
	uint64_t i, raw = 0;
	char name[SPOOL_NAME_MAX];

	spool_options_default(&o);
	o.segment_max = 256 << 10;	/* rotations too */
	o.fsync = SPOOL_FSYNC_NEVER;
	s = new_stream(d, &o);
	for (i = 0; i < N; i++) {
		append_as_library(s, i, buf, &quick, &general);
		raw += len_of(i);
	}
	spool_stream_counts(s, &sc);
	cr_assert_eq(sc.records, N);
	cr_assert_eq(sc.raw_bytes, raw);
	/* Both paths ran, the quick one for most records. */
	cr_assert_gt(quick, N / 2, "quick %u, general %u", quick, general);
	cr_assert_gt(general, 30, "quick %u, general %u", quick, general);
	strcpy(name, spool_stream_name(s));
	cr_assert_eq(spool_stream_close(s, SPOOL_CLOSE_KEEP, "test", &err), 0,
	    "%s", err.msg);
	read_back(d, name, N);
	spool_dir_close(d);
}

Test(spool, quick_appends_read_back_as_the_general_path)
{
	round_trip(NULL);
}

Test(spool, quick_appends_within_a_dir_budget_read_back_too)
{
	struct spool_limits lim = { .total_max = 256u << 20,
		.stream_max = 128u << 20 };

	round_trip(&lim);
}

/* A refused quick append changed nothing: the counts are as before. */
static void
refused(struct spool_stream *s, const void *p, size_t len, const char *why)
{
	struct spool_counts a, b;

	spool_stream_counts(s, &a);
	cr_assert_lt(spool_stream_append_quick(s, p, len, 5), 0,
	    "quick append taken: %s", why);
	spool_stream_counts(s, &b);
	cr_assert_eq(b.records, a.records, "%s", why);
	cr_assert_eq(b.raw_bytes, a.raw_bytes, "%s", why);
}

Test(spool, quick_append_refuses_what_only_the_general_path_may_do)
{
	struct spool_limits lim = { .stream_max = 10000 };
	struct spool_dir *d = open_dir(&t, &lim);
	struct spool_options o;
	struct spool_stream *s, *always;
	struct spool_err err = { "" };
	static uint8_t big[130u << 10];
	const char *which;
	uint8_t rec[28];

	memset(rec, 'q', sizeof(rec));
	spool_options_default(&o);
	o.fsync = SPOOL_FSYNC_NEVER;
	s = new_stream(d, &o);
	refused(s, rec, sizeof(rec), "the first record (its time starts)");
	append1(s, big, 9000, 1);
	cr_assert_eq(spool_stream_append_quick(s, rec, sizeof(rec), 2), 1);
	refused(s, rec, 0, "an empty record");
	refused(s, big, SPOOL_RECORD_MAX + 1u, "a record over the maximum");
	/* stream_max: 9028 bytes pending, 972 more allowed (the staging
	 * has room for them: 16 KiB). */
	refused(s, big, 973, "over stream_max");
	cr_assert_eq(spool_budget_check(s, 973, &which), -EDQUOT);
	cr_assert_eq(spool_stream_append_quick(s, big, 972, 3), 2);
	/* A record the staging has no room for: the general path grows it. */
	spool_stream_close(s, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_dir_close(d);
	d = open_dir(&t, NULL);
	s = new_stream(d, &o);
	append1(s, rec, sizeof(rec), 1);
	refused(s, big, 4096, "a buffer to grow");
	/* A record that fills the frame: the general path forms it. */
	refused(s, big, o.frame_target, "a frame to form");
	append1(s, big, o.frame_target, 2);	/* forms it */
	refused(s, rec, sizeof(rec), "the first record of the next frame");
	spool_stream_close(s, SPOOL_CLOSE_REMOVE, NULL, &err);

	/* fsync=always: every append is a frame. */
	o.fsync = SPOOL_FSYNC_ALWAYS;
	always = new_stream(d, &o);
	append1(always, rec, sizeof(rec), 1);
	refused(always, rec, sizeof(rec), "fsync=always");
	spool_stream_close(always, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_dir_close(d);
}

Test(spool, quick_append_beyond_the_credit_leaves_the_dir_lock_to_the_check)
{
	struct spool_limits lim = { .total_max = 64u << 20 };
	struct spool_dir *d = open_dir(&t, &lim);
	struct spool_stream *s;
	struct spool_err err = { "" };
	static uint8_t big[70000];
	const char *which;
	uint8_t rec[28];

	memset(rec, 'c', sizeof(rec));
	s = new_stream(d, NULL);
	/* A record larger than any credit: the check grants exactly it. */
	cr_assert_eq(spool_budget_check(s, sizeof(big), &which), 0);
	append1(s, big, sizeof(big), 1);
	/* No credit left: the check takes the dir's lock for more. */
	refused(s, rec, sizeof(rec), "beyond the credit");
	cr_assert_eq(spool_budget_check(s, sizeof(rec), &which), 0);
	cr_assert_eq(spool_stream_append_quick(s, rec, sizeof(rec), 2), 1);
	spool_stream_close(s, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_dir_close(d);
}

/* Bytes malloc has given out, from its heap or mapped (glibc). */
static size_t
heap_in_use(void)
{
	struct mallinfo2 m = mallinfo2();

	return m.uordblks + m.hblkhd;
}

/*
 * A full frame leaves its staging sized for the next; a frame a large
 * record filled must not: after one 4 MiB record, a frame of small
 * records stages in about what a frame needs, not 4 MiB.
 */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

Test(spool, a_large_record_leaves_no_large_staging_behind)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_options o;
	struct spool_stream *s;
	struct spool_err err = { "" };
	static uint8_t big[4u << 20];
	uint8_t rec[28];
	size_t before, after;
	int i, quick = 0;

#ifdef UNDER_ASAN
	cr_skip_test("ASan's allocator does not answer mallinfo2");
#endif
	memset(rec, 's', sizeof(rec));
	spool_options_default(&o);
	o.fsync = SPOOL_FSYNC_NEVER;
	s = new_stream(d, &o);
	append1(s, rec, sizeof(rec), 1);
	before = heap_in_use();
	append1(s, big, sizeof(big), 2);	/* a frame of its own */
	append1(s, rec, sizeof(rec), 3);	/* the next frame's first */
	after = heap_in_use();
	cr_assert_lt(after, before + (1u << 20), "one small record staged "
	    "after a 4 MiB one holds %zu bytes more heap", after - before);
	/* Small records fill frames as usual after it, most of them quick
	 * once a full frame sized the staging again. */
	for (i = 0; i < 20000; i++)
		if (spool_stream_append_quick(s, rec, sizeof(rec), 4) < 0)
			append1(s, rec, sizeof(rec), 4);
		else
			quick++;
	cr_assert_gt(quick, 15000, "only %d of 20000 appends were quick",
	    quick);
	spool_stream_close(s, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_dir_close(d);
}
