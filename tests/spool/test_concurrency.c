/*
 * An appending thread and a replay thread on the same stream (the
 * preload's situation). Also run under TSan (meson -Db_sanitize=thread).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

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

enum { N = 20000 };

struct shared {
	struct spool_cursor *c;
	atomic_bool done;
	uint64_t got;
	bool bad;
};

static void *
reader(void *arg)
{
	struct shared *sh = arg;
	struct spool_record r;
	struct spool_err err;
	int rc, idle = 0;

	while (sh->got < N && idle < 2000000) {
		rc = spool_cursor_next(sh->c, &r, &err);
		if (rc < 0 || (rc == 1 && (r.seq != sh->got ||
		    !check_fill(r.data, r.len, r.seq)))) {
			sh->bad = true;
			break;
		}
		if (rc == 0) {
			idle++;
			sched_yield();
			continue;
		}
		/* Ack half a record first, now and then. */
		if (r.seq % 7 == 0 && r.off == 0 && r.len > 1) {
			if (spool_cursor_ack(sh->c, r.seq, r.len / 2, false,
			    &err) < 0) {
				sh->bad = true;
				break;
			}
			continue;
		}
		if (spool_cursor_ack(sh->c, r.seq, r.len, r.seq % 100 == 0,
		    &err) < 0) {
			sh->bad = true;
			break;
		}
		sh->got++;
	}
	return NULL;
}

Test(spool, append_and_replay_in_two_threads)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_options o;
	struct spool_stream *s;
	struct spool_counts cnt;
	struct spool_err err = { "" };
	struct shared sh = { 0 };
	pthread_t th;
	uint8_t buf[600];
	uint64_t i;

	spool_options_default(&o);
	o.segment_max = 64 << 10;	/* rotations while reading */
	o.frame_target = 2 << 10;
	o.fsync = SPOOL_FSYNC_NEVER;
	s = new_stream(d, &o);
	cr_assert_eq(spool_stream_cursor(s, &sh.c, &err), 0);
	cr_assert_eq(pthread_create(&th, NULL, reader, &sh), 0);
	for (i = 0; i < N; i++) {
		size_t len = 1 + i % sizeof(buf);

		fill(buf, len, i);
		append1(s, buf, len, (int64_t)i);
		if (i % 50 == 0)
			cr_assert_eq(spool_stream_flush(s, &err), 0, "%s",
			    err.msg);
		if (i % 5000 == 0) {
			const char *which;

			spool_stream_counts(s, &cnt);
			spool_budget_check(s, 10, &which);
		}
	}
	cr_assert_eq(spool_stream_flush(s, &err), 0);
	pthread_join(th, NULL);
	cr_assert(!sh.bad, "reader saw a wrong record at %llu",
	    (unsigned long long)sh.got);
	cr_assert_eq(sh.got, N);
	spool_stream_counts(s, &cnt);
	cr_assert_eq(cnt.pending_records, 0);
	cr_assert_eq(cnt.pending_bytes, 0);
	cr_assert_leq(cnt.segments, 1);
	cr_assert_eq(spool_stream_trim(s, &err), 0, "%s", err.msg);
	spool_stream_counts(s, &cnt);
	cr_assert_eq(cnt.stored_bytes, 0);
	spool_cursor_close(sh.c);
	spool_stream_close(s, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_dir_close(d);
}
