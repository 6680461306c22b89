/*
 * An appending thread and a replay thread on the same stream (the
 * preload's situation): every record arrives once, in order, intact, and
 * the counters end exact; then the same on a "full disk" (RLIMIT_FSIZE),
 * where the writer stalls and the reader takes the staged records from
 * its memory while the appender retries refused records. A plain
 * program (exit status 0 = pass), not a Criterion one, because
 * Criterion's process arena cannot start under TSan; the TSan build runs
 * it (suite 'concurrency'). No wait is unbounded: a reader that stops
 * says why, and the appender stops retrying once it has.
 */
#include <sys/resource.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <ftw.h>

#include "spool.h"

enum { N = 20000 };
/*
 * Polls in a row that found nothing: the appender never waits, so only a
 * lost record or a livelock gets near this; the reader then stops, and
 * the appender, seeing it stopped, fails instead of waiting for it.
 */
#define IDLE_MAX	10000000L

struct shared {
	struct spool_cursor *c;
	uint64_t got, n;
	bool bad;
	char why[SPOOL_ERR_MAX + 128];	/* when bad */
	atomic_bool stopped;	/* the reader returned */
};

static char root[4096];

static void fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static void
fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "spool-concurrency: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static void
fill(uint8_t *p, size_t len, uint64_t seq)
{
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(seq * 31 + i);
}

static bool
check(const uint8_t *p, size_t len, uint64_t seq)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] != (uint8_t)(seq * 31 + i))
			return false;
	return true;
}

static void *
reader(void *arg)
{
	struct shared *sh = arg;
	struct spool_record r;
	struct spool_losses l;
	struct spool_err err;
	long idle = 0;
	int rc;

	while (sh->got < sh->n && idle < IDLE_MAX) {
		rc = spool_cursor_next(sh->c, &r, &err);
		if (rc < 0) {
			snprintf(sh->why, sizeof(sh->why), "next: %d %s", rc,
			    err.msg);
			sh->bad = true;
			break;
		}
		if (rc == 1 && (r.seq != sh->got ||
		    !check(r.data, r.len, r.seq))) {
			spool_cursor_losses(sh->c, &l);
			snprintf(sh->why, sizeof(sh->why), "record %llu "
			    "(len %zu off %zu) where %llu was due%s; losses "
			    "%llu frames, %llu records",
			    (unsigned long long)r.seq, r.len, r.off,
			    (unsigned long long)sh->got,
			    r.seq == sh->got ? ", bytes differ" : "",
			    (unsigned long long)l.frames,
			    (unsigned long long)l.records);
			sh->bad = true;
			break;
		}
		if (rc == 0) {
			idle++;
			sched_yield();
			continue;
		}
		idle = 0;
		/* Now and then half a record first, as a short send would. */
		if (r.seq % 7 == 0 && r.off == 0 && r.len > 1) {
			if ((rc = spool_cursor_ack(sh->c, r.seq, r.len / 2,
			    false, &err)) < 0) {
				snprintf(sh->why, sizeof(sh->why),
				    "ack: %d %s", rc, err.msg);
				sh->bad = true;
				break;
			}
			continue;
		}
		if ((rc = spool_cursor_ack(sh->c, r.seq, r.len,
		    r.seq % 100 == 0, &err)) < 0) {
			snprintf(sh->why, sizeof(sh->why), "ack: %d %s", rc,
			    err.msg);
			sh->bad = true;
			break;
		}
		sh->got++;
	}
	atomic_store(&sh->stopped, true);
	return NULL;
}

/* The reader returned before the appender was done: it never will be. */
static void
reader_stopped(struct shared *sh, const char *part)
{
	if (sh->bad)
		fail("%s: reader stopped at %llu: %s", part,
		    (unsigned long long)sh->got, sh->why);
	fail("%s: reader stopped at %llu: nothing new in %ld polls in a row",
	    part, (unsigned long long)sh->got, IDLE_MAX);
}

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

/* Appends N records on a disk that refuses most frames (EFBIG). */
static void
stalled(struct spool_dir *d)
{
	struct spool_identity id;
	struct spool_options o;
	struct spool_stream *s;
	struct spool_counts cnt;
	struct spool_err err = { "" };
	struct shared sh = { .n = N };
	struct rlimit rl, old;
	struct iovec iov;
	pthread_t th;
	uint8_t buf[600];
	uint64_t i, refused = 0;
	int64_t rc;

	signal(SIGXFSZ, SIG_IGN);
	memset(&id, 0, sizeof(id));
	spool_options_default(&o);
	o.segment_max = 64 << 10;
	o.frame_target = 2 << 10;
	o.level = 0;
	o.fsync = SPOOL_FSYNC_NEVER;
	if (spool_stream_create(d, &id, &o, &s, &err) != 0 ||
	    spool_stream_cursor(s, &sh.c, &err) != 0)
		fail("%s", err.msg);
	if (getrlimit(RLIMIT_FSIZE, &old) != 0)
		fail("getrlimit");
	rl = old;
	rl.rlim_cur = 6000;	/* a header and about two frames */
	if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
		fail("setrlimit");
	if (pthread_create(&th, NULL, reader, &sh) != 0)
		fail("pthread_create");
	for (i = 0; i < N; i++) {
		iov.iov_base = buf;
		iov.iov_len = 1 + i % sizeof(buf);
		fill(buf, iov.iov_len, i);
		/* A refused record is not appended: the application's retry
		 * once the reader has taken the staged ones from memory. */
		while ((rc = spool_stream_append(s, &iov, 1, (int64_t)i,
		    &err)) == -EFBIG) {
			if (atomic_load(&sh.stopped)) {
				pthread_join(th, NULL);
				reader_stopped(&sh, "stalled");
			}
			refused++;
			sched_yield();
		}
		if (rc != (int64_t)i)
			fail("stalled append %llu: %lld %s",
			    (unsigned long long)i, (long long)rc, err.msg);
		if (i % 50 == 0) {
			(void)spool_stream_flush(s, &err);
			spool_stream_counts(s, &cnt);
		}
	}
	setrlimit(RLIMIT_FSIZE, &old);
	if (spool_stream_flush(s, &err) != 0)
		fail("flush after the stall: %s", err.msg);
	pthread_join(th, NULL);
	if (sh.bad || sh.got != N)
		reader_stopped(&sh, "stalled");
	if (refused == 0)
		fail("stalled: the disk never refused a frame");
	spool_stream_counts(s, &cnt);
	if (cnt.pending_records != 0 || cnt.pending_bytes != 0)
		fail("stalled: pending %llu records %llu bytes",
		    (unsigned long long)cnt.pending_records,
		    (unsigned long long)cnt.pending_bytes);
	if (spool_stream_trim(s, &err) != 0)
		fail("stalled: trim: %s", err.msg);
	spool_cursor_close(sh.c);
	spool_stream_close(s, SPOOL_CLOSE_REMOVE, NULL, &err);
}

int
main(void)
{
	const char *tmp = getenv("TMPDIR");
	struct spool_identity id;
	struct spool_dir *d;
	struct spool_options o;
	struct spool_stream *s;
	struct spool_counts cnt;
	struct spool_err err = { "" };
	struct shared sh = { .n = N };
	const char *which;
	struct iovec iov;
	pthread_t th;
	uint8_t buf[600];
	char path[4200];
	uint64_t i;

	snprintf(root, sizeof(root), "%s/spoolconc.XXXXXX", tmp && *tmp ? tmp :
	    "/tmp");
	if (mkdtemp(root) == NULL)
		fail("mkdtemp");
	snprintf(path, sizeof(path), "%s/spool", root);
	if (spool_dir_open(path, NULL, &d, &err) != 0)
		fail("%s", err.msg);
	memset(&id, 0, sizeof(id));
	spool_options_default(&o);
	o.segment_max = 64 << 10;	/* rotations while reading */
	o.frame_target = 2 << 10;
	o.fsync = SPOOL_FSYNC_NEVER;
	if (spool_stream_create(d, &id, &o, &s, &err) != 0 ||
	    spool_stream_cursor(s, &sh.c, &err) != 0)
		fail("%s", err.msg);
	if (pthread_create(&th, NULL, reader, &sh) != 0)
		fail("pthread_create");
	for (i = 0; i < N; i++) {
		iov.iov_base = buf;
		iov.iov_len = 1 + i % sizeof(buf);
		fill(buf, iov.iov_len, i);
		if (spool_stream_append(s, &iov, 1, (int64_t)i, &err) !=
		    (int64_t)i)
			fail("append %llu: %s", (unsigned long long)i, err.msg);
		if (i % 50 == 0 && spool_stream_flush(s, &err) != 0)
			fail("flush: %s", err.msg);
		if (i % 1000 == 0) {
			spool_stream_counts(s, &cnt);
			spool_dir_counts(d, &cnt);
			spool_budget_check(s, 10, &which);
		}
	}
	if (spool_stream_flush(s, &err) != 0)
		fail("flush: %s", err.msg);
	pthread_join(th, NULL);
	if (sh.bad || sh.got != N)
		reader_stopped(&sh, "live");
	spool_stream_counts(s, &cnt);
	if (cnt.pending_records != 0 || cnt.pending_bytes != 0 ||
	    cnt.segments > 1)
		fail("counts: pending %llu records %llu bytes, %u segments",
		    (unsigned long long)cnt.pending_records,
		    (unsigned long long)cnt.pending_bytes, cnt.segments);
	if (spool_stream_trim(s, &err) != 0)
		fail("trim: %s", err.msg);
	spool_stream_counts(s, &cnt);
	if (cnt.stored_bytes != 0)
		fail("stored %llu after trim",
		    (unsigned long long)cnt.stored_bytes);
	spool_cursor_close(sh.c);
	spool_stream_close(s, SPOOL_CLOSE_REMOVE, NULL, &err);
	stalled(d);
	spool_dir_counts(d, &cnt);
	if (cnt.stored_bytes != 0 || cnt.pending_bytes != 0)
		fail("dir counts not back to 0");
	spool_dir_close(d);
	nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
