/*
 * Out of space and quotas: a full disk (EFBIG from RLIMIT_FSIZE) leaves a
 * valid segment and reports the errno; each budget limit refuses exactly
 * the write that would exceed it; accounting stays exact.
 */
#include <sys/resource.h>
#include <sys/stat.h>

#include <dirent.h>
#include <signal.h>

#include "helpers.h"
#include "internal.h"

SPOOL_TEST_SUITE();

/* Sum of the sizes of a stream's segment files, by stat. */
static uint64_t
disk_bytes(const char *name)
{
	char p[8400], f[8700];
	struct dirent *de;
	struct stat st;
	uint64_t sum = 0;
	DIR *dp;

	snprintf(p, sizeof(p), "%s/%s", t.spool, name);
	cr_assert_not_null(dp = opendir(p));
	while ((de = readdir(dp)) != NULL) {
		size_t n = strlen(de->d_name);

		if (n < 5 || (strcmp(de->d_name + n - 4, ".seg") != 0 &&
		    strcmp(de->d_name + n - 5, ".open") != 0))
			continue;
		snprintf(f, sizeof(f), "%s/%s", p, de->d_name);
		cr_assert_eq(stat(f, &st), 0);
		sum += (uint64_t)st.st_size;
	}
	closedir(dp);
	return sum;
}

/* Criterion runs each test in its own process: the rlimit stays here. */
Test(spool, efbig_keeps_segment_valid_and_reports_errno)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_options o;
	struct spool_stream *s;
	struct spool_counts cnt;
	struct spool_cursor *c;
	struct spool_record r;
	struct spool_err err = { "" };
	struct rlimit rl, old;
	struct iovec iov;
	uint8_t b[1000];
	int64_t seq = 0, ok = 0;
	char name[SPOOL_NAME_MAX];

	signal(SIGXFSZ, SIG_IGN);
	spool_options_default(&o);
	o.frame_target = 0;
	o.level = 0;
	o.fsync = SPOOL_FSYNC_NEVER;
	s = new_stream(d, &o);
	strcpy(name, spool_stream_name(s));
	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
	rl = old;
	rl.rlim_cur = 10000;
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	memset(b, 'z', sizeof(b));
	iov.iov_base = b;
	iov.iov_len = sizeof(b);
	while ((seq = spool_stream_append(s, &iov, 1, ok, &err)) >= 0)
		cr_assert_eq(seq, ok++);
	cr_assert_eq(seq, -EFBIG, "append: %lld %s", (long long)seq, err.msg);
	cr_assert(strstr(err.msg, "offset") != NULL, "%s", err.msg);
	cr_assert_eq(ok, 9);	/* 336 + 9 * 1067 <= 10000 < 336 + 10 * 1067 */
	spool_stream_counts(s, &cnt);
	cr_assert_eq(cnt.records, (uint64_t)ok);
	cr_assert_eq(cnt.pending_records, (uint64_t)ok);
	cr_assert_eq(cnt.stored_bytes, disk_bytes(name));
	cr_assert_eq(spool_scan(d, name, NULL, NULL, &err), 0);
	/* The disk frees up: the next append works and takes the next seq. */
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
	cr_assert_eq(spool_stream_append(s, &iov, 1, ok, &err), ok);
	cr_assert_eq(spool_stream_cursor(s, &c, &err), 0);
	for (seq = 0; seq <= ok; seq++) {
		cr_assert_eq(spool_cursor_next(c, &r, &err), 1);
		cr_assert_eq(r.seq, (uint64_t)seq);
	}
	spool_cursor_close(c);
	spool_stream_close(s, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_dir_close(d);
}

Test(spool, efbig_with_staged_records_keeps_them_staged)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_options o;
	struct spool_stream *s;
	struct spool_err err = { "" };
	struct rlimit rl, old;
	struct spool_cursor *c;
	struct spool_record r;
	uint8_t b[3000];
	int i;

	signal(SIGXFSZ, SIG_IGN);
	spool_options_default(&o);
	o.frame_target = 1 << 20;
	o.level = 0;
	o.fsync = SPOOL_FSYNC_NEVER;
	s = new_stream(d, &o);
	memset(b, 'q', sizeof(b));
	for (i = 0; i < 5; i++)
		append1(s, b, sizeof(b), i);
	getrlimit(RLIMIT_FSIZE, &old);
	rl = old;
	rl.rlim_cur = 4096;
	setrlimit(RLIMIT_FSIZE, &rl);
	cr_assert_eq(spool_stream_flush(s, &err), -EFBIG);
	cr_assert_neq(spool_stream_staged_since(s), 0);
	setrlimit(RLIMIT_FSIZE, &old);
	cr_assert_eq(spool_stream_flush(s, &err), 0);
	cr_assert_eq(spool_stream_cursor(s, &c, &err), 0);
	for (i = 0; i < 5; i++)
		cr_assert_eq(spool_cursor_next(c, &r, &err), 1);
	cr_assert_eq(spool_cursor_next(c, &r, &err), 0);
	spool_cursor_close(c);
	spool_stream_close(s, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_dir_close(d);
}

Test(spool, stream_max_refuses_the_write_that_exceeds_it)
{
	struct spool_limits lim = { .stream_max = 1000 };
	struct spool_dir *d = open_dir(&t, &lim);
	struct spool_stream *s = new_stream(d, NULL);
	struct spool_cursor *c;
	struct spool_record r;
	struct spool_err err = { "" };
	const char *which;
	uint8_t b[300] = { 0 };

	append1(s, b, 300, 1);
	append1(s, b, 300, 2);
	append1(s, b, 300, 3);
	cr_assert_eq(spool_budget_check(s, 100, &which), 0);
	cr_assert_eq(spool_budget_check(s, 101, &which), -EDQUOT);
	cr_assert_str_eq(which, "stream_max");
	cr_assert_eq(spool_stream_flush(s, &err), 0);
	cr_assert_eq(spool_stream_cursor(s, &c, &err), 0);
	cr_assert_eq(spool_cursor_next(c, &r, &err), 1);
	cr_assert_eq(spool_cursor_ack(c, r.seq, 50, false, &err), 0);
	cr_assert_eq(spool_budget_check(s, 151, &which), -EDQUOT);
	cr_assert_eq(spool_budget_check(s, 150, &which), 0);
	cr_assert_eq(spool_cursor_next(c, &r, &err), 1);	/* rest of 0 */
	cr_assert_eq(spool_cursor_ack(c, r.seq, r.len, false, &err), 0);
	cr_assert_eq(spool_budget_check(s, 400, &which), 0);
	cr_assert_eq(spool_budget_check(s, 401, &which), -EDQUOT);
	spool_cursor_close(c);
	spool_stream_close(s, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_dir_close(d);
}

Test(spool, total_max_counts_staged_stored_and_other_processes)
{
	struct spool_limits lim = { .total_max = 100000 };
	struct spool_dir *d, *other;
	struct spool_stream *s, *o;
	struct spool_counts own, oc;
	struct spool_err err = { "" };
	const char *which;
	uint64_t used;
	uint8_t b[5000] = { 1 };
	char oname[SPOOL_NAME_MAX];

	/* "Another process": its own spool_dir handle, then it goes away. */
	other = open_dir(&t, NULL);
	o = new_stream(other, NULL);
	append1(o, b, sizeof(b), 1);
	spool_stream_flush(o, &err);
	spool_stream_counts(o, &oc);
	strcpy(oname, spool_stream_name(o));
	d = open_dir(&t, &lim);
	s = new_stream(d, NULL);
	append1(s, b, sizeof(b), 1);		/* staged */
	append1(s, b, 1000, 2);
	cr_assert_eq(spool_stream_flush(s, &err), 0);
	append1(s, b, 700, 3);			/* staged */
	spool_dir_counts(d, &own);
	used = own.stored_bytes + 700 + oc.stored_bytes;
	cr_assert_eq(own.stored_bytes, disk_bytes(spool_stream_name(s)));
	cr_assert_eq(oc.stored_bytes, disk_bytes(oname));
	cr_assert_eq(spool_budget_check(s, lim.total_max - used, &which), 0);
	cr_assert_eq(spool_budget_check(s, lim.total_max - used + 1, &which),
	    -EDQUOT);
	cr_assert_str_eq(which, "total_max");
	spool_stream_close(o, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_stream_close(s, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_dir_close(other);
	spool_dir_close(d);
}

Test(spool, min_free_refuses_when_the_disk_is_too_full)
{
	struct spool_limits lim = { .min_free = 1ull << 62 };
	struct spool_dir *d = open_dir(&t, &lim);
	struct spool_stream *s = new_stream(d, NULL);
	struct spool_err err = { "" };
	const char *which;

	cr_assert_eq(spool_budget_check(s, 1, &which), -ENOSPC);
	cr_assert_str_eq(which, "min_free");
	spool_stream_close(s, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_dir_close(d);
	lim.min_free = 1;
	d = open_dir(&t, &lim);
	s = new_stream(d, NULL);
	cr_assert_eq(spool_budget_check(s, 1, &which), 0);
	cr_assert_null(which);
	spool_stream_close(s, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_dir_close(d);
}

Test(spool, accounting_exact_after_acks_and_deletes)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_options o;
	struct spool_stream *s;
	struct spool_cursor *c;
	struct spool_record r;
	struct spool_counts cnt, dc;
	struct spool_err err = { "" };
	uint8_t b[2000];
	uint64_t raw = 0, acked = 0;
	int i;

	spool_options_default(&o);
	o.segment_max = 64 << 10;
	o.frame_target = 16 << 10;
	o.fsync = SPOOL_FSYNC_NEVER;
	s = new_stream(d, &o);
	cr_assert_eq(spool_stream_cursor(s, &c, &err), 0);
	for (i = 0; i < 400; i++) {
		fill(b, (size_t)(i * 5 % 2000), (uint64_t)i);
		append1(s, b, (size_t)(i * 5 % 2000), i);
		raw += (uint64_t)(i * 5 % 2000);
	}
	spool_stream_flush(s, &err);
	for (i = 0; i < 250; i++) {
		cr_assert_eq(spool_cursor_next(c, &r, &err), 1);
		cr_assert_eq(spool_cursor_ack(c, r.seq, r.len, false, &err), 0);
		acked += r.len;
		if (i % 50 == 0) {
			spool_stream_counts(s, &cnt);
			cr_assert_eq(cnt.stored_bytes,
			    disk_bytes(spool_stream_name(s)));
		}
	}
	spool_stream_counts(s, &cnt);
	spool_dir_counts(d, &dc);
	cr_assert_eq(cnt.raw_bytes, raw);
	cr_assert_eq(cnt.pending_bytes, raw - acked);
	cr_assert_eq(cnt.pending_records, 150);
	cr_assert_eq(cnt.stored_bytes, disk_bytes(spool_stream_name(s)));
	cr_assert_eq(dc.stored_bytes, cnt.stored_bytes);
	cr_assert_eq(dc.pending_bytes, cnt.pending_bytes);
	cr_assert_lt(cnt.segments, 10);
	spool_cursor_close(c);
	spool_stream_close(s, SPOOL_CLOSE_KEEP, "test", &err);
	spool_dir_counts(d, &dc);
	cr_assert_eq(dc.stored_bytes, 0);
	cr_assert_eq(dc.pending_bytes, 0);
	spool_dir_close(d);
}

/* ------------------------------------------------ a stalled writer */

static void
fsize_limit(rlim_t cur)
{
	struct rlimit rl;

	signal(SIGXFSZ, SIG_IGN);
	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
	rl.rlim_cur = cur;
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

static struct spool_stream *
stall_stream(struct spool_dir *d, uint32_t target)
{
	struct spool_options o;

	spool_options_default(&o);
	o.frame_target = target;
	o.level = 0;
	o.fsync = SPOOL_FSYNC_NEVER;
	return new_stream(d, &o);
}

static void
rec_of(uint8_t *b, size_t len, int64_t seq)
{
	memset(b, 'a' + (int)(seq % 26), len);
	snprintf((char *)b, len, "r%lld", (long long)seq);
}

static void
next_is(struct spool_cursor *c, uint64_t seq, size_t len)
{
	struct spool_record r;
	struct spool_err err = { "" };
	uint8_t want[3000];
	int rc = spool_cursor_next(c, &r, &err);

	cr_assert_eq(rc, 1, "next: %d %s (wanted record %llu)", rc, err.msg,
	    (unsigned long long)seq);
	cr_assert_eq(r.seq, seq);
	cr_assert_eq(r.len, len);
	cr_assert_eq(r.off, 0);
	rec_of(want, len, (int64_t)seq);
	cr_assert_eq(memcmp(r.data, want, len), 0);
}

static void
ack(struct spool_cursor *c, uint64_t seq, size_t len, bool persist)
{
	struct spool_err err = { "" };

	cr_assert_eq(spool_cursor_ack(c, seq, len, persist, &err), 0, "%s",
	    err.msg);
}

/* The diskfull story: the frame cannot be written, the records were
 * accepted; the writer's cursor delivers them from memory, and once all
 * are acknowledged they are dropped, never written, and the disk freed. */
Test(spool, stalled_writer_delivers_staged_records_from_memory)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_stream *s = stall_stream(d, 1 << 20);
	struct spool_err err = { "" };
	struct spool_cursor *c;
	struct spool_counts cnt;
	struct spool_stream_info si;
	struct spool_record r;
	char name[SPOOL_NAME_MAX];
	uint8_t b[3000];
	int i;

	strcpy(name, spool_stream_name(s));
	cr_assert_eq(spool_stream_cursor(s, &c, &err), 0);
	for (i = 0; i < 2; i++) {	/* two on disk first */
		rec_of(b, sizeof(b), i);
		append1(s, b, sizeof(b), i);
	}
	cr_assert_eq(spool_stream_flush(s, &err), 0);
	for (; i < 5; i++) {
		rec_of(b, sizeof(b), i);
		append1(s, b, sizeof(b), i);
	}
	fsize_limit(8192);
	cr_assert_eq(spool_stream_flush(s, &err), -EFBIG);
	for (i = 0; i < 5; i++) {
		next_is(c, (uint64_t)i, sizeof(b));
		ack(c, (uint64_t)i, sizeof(b), true);
	}
	cr_assert_eq(spool_cursor_next(c, &r, &err), 0);
	/* The progress file never passes what the files hold. */
	cr_assert_eq(spool_stream_info(d, name, &si, &err), 0);
	cr_assert_eq(si.acked_seq, 2);
	spool_stream_counts(s, &cnt);
	cr_assert_eq(cnt.pending_records, 0);
	cr_assert_eq(cnt.pending_bytes, 0);
	/* All acknowledged: the flush drops them and the segment, still
	 * on the "full" disk. */
	cr_assert_eq(spool_stream_flush(s, &err), 0, "%s", err.msg);
	cr_assert_eq(spool_stream_staged_since(s), 0);
	cr_assert_eq(disk_bytes(name), 0);
	spool_stream_counts(s, &cnt);
	cr_assert_eq(cnt.stored_bytes, 0);
	cr_assert_eq(cnt.segments, 0);
	/* Room again: the next records follow with their own numbers. */
	fsize_limit(RLIM_INFINITY);
	for (i = 5; i < 7; i++) {
		rec_of(b, sizeof(b), i);
		cr_assert_eq(append1(s, b, sizeof(b), i), i);
	}
	cr_assert_eq(spool_stream_flush(s, &err), 0);
	next_is(c, 5, sizeof(b));
	next_is(c, 6, sizeof(b));
	cr_assert_eq(spool_cursor_next(c, &r, &err), 0);
	{
		struct spool_losses l;

		spool_cursor_losses(c, &l);
		cr_assert_eq(l.frames, 0);
		cr_assert_eq(l.records, 0);
	}
	/* What is on disk starts at 5, no gap, nothing wrong. */
	cr_assert_eq(spool_scan(d, name, NULL, NULL, &err), 0, "%s", err.msg);
	spool_cursor_close(c);
	spool_stream_close(s, SPOOL_CLOSE_KEEP, "test", &err);
	{
		struct spool_cursor *c2;

		cr_assert_eq(spool_cursor_open(d, name, &c2, &err), 0);
		cr_assert_eq(spool_cursor_next(c2, &r, &err), 1);
		cr_assert_eq(r.seq, 5);	/* not yet acknowledged */
		spool_cursor_close(c2);
	}
	spool_dir_close(d);
}

/* Delivered from memory, then written when the disk has room: each
 * record is delivered once, and the progress catches up. */
Test(spool, stalled_records_written_later_are_not_delivered_twice)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_stream *s = stall_stream(d, 1 << 20);
	struct spool_err err = { "" };
	struct spool_stream_info si;
	struct spool_cursor *c;
	struct spool_record r;
	char name[SPOOL_NAME_MAX];
	uint8_t b[3000];
	int i;

	strcpy(name, spool_stream_name(s));
	cr_assert_eq(spool_stream_cursor(s, &c, &err), 0);
	for (i = 0; i < 5; i++) {
		rec_of(b, sizeof(b), i);
		append1(s, b, sizeof(b), i);
	}
	fsize_limit(4096);
	cr_assert_eq(spool_stream_flush(s, &err), -EFBIG);
	for (i = 0; i < 3; i++) {
		next_is(c, (uint64_t)i, sizeof(b));
		ack(c, (uint64_t)i, sizeof(b), true);
	}
	/* A partial send of record 3, then a rewind: still from memory. */
	next_is(c, 3, sizeof(b));
	ack(c, 3, 100, false);
	cr_assert_eq(spool_cursor_next(c, &r, &err), 1);
	cr_assert_eq(r.seq, 3);
	cr_assert_eq(r.off, 100);
	fsize_limit(RLIM_INFINITY);
	cr_assert_eq(spool_stream_flush(s, &err), 0, "%s", err.msg);
	/* The frame holds 0..4; only 4 is new to the cursor. */
	next_is(c, 4, sizeof(b));
	cr_assert_eq(spool_cursor_next(c, &r, &err), 0);
	ack(c, 4, sizeof(b), true);
	cr_assert_eq(spool_stream_info(d, name, &si, &err), 0);
	cr_assert_eq(si.acked_seq, 5);
	cr_assert_eq(spool_scan(d, name, NULL, NULL, &err), 0, "%s", err.msg);
	spool_cursor_close(c);
	spool_stream_close(s, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_dir_close(d);
}

/* A record whose append failed (the frame it triggered could not be
 * written) is not appended: the cursor never sees it in memory, and its
 * sequence number goes to the next record. */
Test(spool, stalled_writer_never_shows_a_refused_record)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_stream *s = stall_stream(d, 10000);
	struct spool_err err = { "" };
	struct spool_cursor *c;
	struct spool_record r;
	struct spool_counts cnt;
	struct iovec iov;
	uint8_t b[3000];
	int i;

	cr_assert_eq(spool_stream_cursor(s, &c, &err), 0);
	for (i = 0; i < 3; i++) {	/* 9000 raw bytes: below the target */
		rec_of(b, sizeof(b), i);
		append1(s, b, sizeof(b), i);
	}
	fsize_limit(4096);
	rec_of(b, sizeof(b), 3);
	iov = (struct iovec){ b, sizeof(b) };
	cr_assert_eq(spool_stream_append(s, &iov, 1, 3, &err), -EFBIG);
	for (i = 0; i < 3; i++)
		next_is(c, (uint64_t)i, sizeof(b));
	cr_assert_eq(spool_cursor_next(c, &r, &err), 0);
	cr_assert_eq(spool_stream_append(s, &iov, 1, 3, &err), -EFBIG);
	cr_assert_eq(spool_cursor_next(c, &r, &err), 0);
	spool_stream_counts(s, &cnt);
	cr_assert_eq(cnt.records, 3);
	fsize_limit(RLIM_INFINITY);
	cr_assert_eq(append1(s, b, sizeof(b), 3), 3);
	next_is(c, 3, sizeof(b));
	cr_assert_eq(spool_cursor_next(c, &r, &err), 0);
	spool_cursor_close(c);
	spool_stream_close(s, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_dir_close(d);
}

/*
 * Budget credits (budget.c): a check covered by the stream's credit takes
 * no lock, and credits count as used, so two streams appending in turns
 * never take the dir past total_max together, are refused at most 1/32 of
 * it early, and a closed stream's unused credit is given back.
 */
Test(spool, credits_never_let_two_streams_pass_total_max)
{
	struct spool_limits lim = { .total_max = 200000 };
	struct spool_dir *d = open_dir(&t, &lim);
	struct spool_stream *a = new_stream(d, NULL), *b = new_stream(d, NULL);
	struct spool_stream *s;
	struct spool_counts c;
	struct spool_err err = { "" };
	const char *which;
	uint8_t rec[997] = { 7 };
	uint64_t appended = 0;
	int i, refused = 0;

	for (i = 0; i < 1000 && refused < 2; i++) {
		s = i % 2 ? b : a;
		if (spool_budget_check(s, sizeof(rec), &which) != 0) {
			cr_assert_str_eq(which, "total_max");
			refused++;
			continue;
		}
		append1(s, rec, sizeof(rec), i);
		appended += sizeof(rec);
	}
	cr_assert_eq(refused, 2, "total_max never refused");
	spool_dir_counts(d, &c);
	/* Nothing flushed: all of it is staged, counted raw. */
	cr_assert_leq(appended, lim.total_max);
	/* Credits refuse at most 1/32 of the quota early. */
	cr_assert_geq(appended + sizeof(rec), lim.total_max -
	    lim.total_max / 32, "refused with %llu bytes of room",
	    (unsigned long long)(lim.total_max - appended));
	/* Past the limit is refused, whatever the credits. */
	cr_assert_eq(spool_budget_check(b, lim.total_max - appended + 1,
	    &which), -EDQUOT);
	/* a goes: its staged bytes and its credit are b's to use. */
	cr_assert_eq(spool_stream_close(a, SPOOL_CLOSE_REMOVE, NULL, &err), 0);
	cr_assert_eq(spool_budget_check(b, lim.total_max - appended / 2 - 2000,
	    &which), 0);
	spool_stream_close(b, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_dir_close(d);
}

/*
 * min_free counts every stream's credit as written (review F7): with
 * 96 KiB above min_free, one stream's 64 KiB credit leaves another too
 * little for 64 KiB, until the first closes and gives its credit back.
 * The free space is set in the dir's cache (budget.c reads statvfs at
 * most every 100 ms), so the disk's real state cannot move the test.
 */
Test(spool, min_free_counts_other_streams_credits)
{
	struct spool_limits lim = { .min_free = (10u << 20) - (96u << 10) };
	struct spool_dir *d = open_dir(&t, &lim);
	struct spool_stream *a = new_stream(d, NULL), *b = new_stream(d, NULL);
	struct spool_err err = { "" };
	const char *which;

	pthread_mutex_lock(&d->mu);
	d->free_bytes = 10u << 20;
	d->free_at_ns = INT64_MAX / 2;	/* "just read": no statvfs */
	d->written_since_free = 0;
	pthread_mutex_unlock(&d->mu);

	cr_assert_eq(spool_budget_check(a, 1, &which), 0, "%s", which);
	cr_assert_geq(atomic_load(&d->reserved), 64u << 10,
	    "a got no credit: the test proves nothing");
	cr_assert_eq(spool_budget_check(b, 64u << 10, &which), -ENOSPC,
	    "b passed min_free with a's credit unseen");
	cr_assert_str_eq(which, "min_free");
	cr_assert_eq(spool_stream_close(a, SPOOL_CLOSE_REMOVE, NULL, &err), 0);
	cr_assert_eq(spool_budget_check(b, 64u << 10, &which), 0,
	    "a's credit was not given back");
	spool_stream_close(b, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_dir_close(d);
}

/*
 * A cut inside the first record that only the stalled writer's memory
 * holds: the progress file must not name an offset inside a record that
 * is not in the files (FORMAT.md §6), or a reader after a crash finds a
 * position past the end of what is written and reports a lost frame.
 */
Test(spool, a_cut_inside_a_staged_record_is_persisted_as_everything_written)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_stream *s = stall_stream(d, 1 << 20);
	struct spool_err err = { "" };
	struct spool_stream_info si;
	struct spool_cursor *c;
	char name[SPOOL_NAME_MAX];
	uint8_t b[3000];
	int i;

	strcpy(name, spool_stream_name(s));
	cr_assert_eq(spool_stream_cursor(s, &c, &err), 0);
	for (i = 0; i < 2; i++) {	/* two on disk */
		rec_of(b, sizeof(b), i);
		append1(s, b, sizeof(b), i);
	}
	cr_assert_eq(spool_stream_flush(s, &err), 0);
	for (; i < 5; i++) {	/* three staged, the disk "full" */
		rec_of(b, sizeof(b), i);
		append1(s, b, sizeof(b), i);
	}
	fsize_limit(8192);
	cr_assert_eq(spool_stream_flush(s, &err), -EFBIG);
	for (i = 0; i < 2; i++) {
		next_is(c, (uint64_t)i, sizeof(b));
		ack(c, (uint64_t)i, sizeof(b), false);
	}
	next_is(c, 2, sizeof(b));
	ack(c, 2, 100, true);	/* the socket took 100 bytes of record 2 */
	cr_assert_eq(spool_stream_info(d, name, &si, &err), 0, "%s", err.msg);
	cr_assert_eq(si.acked_seq, 2, "progress at record %llu",
	    (unsigned long long)si.acked_seq);
	/* A reader of the files alone (the writer crashed here) finds
	 * everything delivered and nothing lost. */
	{
		struct spool_cursor *c2;
		struct spool_losses l;
		struct spool_record r;

		cr_assert_eq(spool_cursor_open(d, name, &c2, &err), 0, "%s",
		    err.msg);
		cr_assert_eq(spool_cursor_next(c2, &r, &err), 0,
		    "record %llu offset %zu after the progress",
		    (unsigned long long)r.seq, r.off);
		spool_cursor_losses(c2, &l);
		cr_assert_eq(l.frames, 0, "the progress named a byte of a "
		    "record not in the files: %llu frame(s) reported lost",
		    (unsigned long long)l.frames);
		spool_cursor_close(c2);
	}
	fsize_limit(RLIM_INFINITY);
	spool_cursor_close(c);
	spool_stream_close(s, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_dir_close(d);
}
