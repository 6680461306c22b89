/*
 * The interval fsync policy's bound (spool/FORMAT.md §4): a frame is
 * fdatasync'ed at most fsync_interval_ms plus one flush interval after it
 * was written, even when the application then stops writing and the peer
 * stays stalled (no EPOLLOUT, no later frame to carry the sync).
 *
 * The observable: this program defines fdatasync itself, so the spool
 * code linked into it (libtcpspool_core.a) calls this one, which notes
 * when the first sync completed and then makes the system call. Only
 * segment files are fdatasync'ed (directories get fsync).
 *
 * The interval is 1500 ms, not a multiple of the replay thread's status
 * period (1 s), which also runs the thread: a sync that waited for that
 * wake-up would come about 0.5 s late and fail the check below.
 */
#include <criterion/criterion.h>

#include <sys/socket.h>
#include <sys/syscall.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "ops.h"
#include "stream.h"
#include "unit.h"

#define INTERVAL_MS	1500
#define FLUSH_MS	100
/* Scheduling and a sanitizer's slowness; well below the 0.5 s a sync
 * riding on the status wake-up would be late by. */
#define SLACK_MS	250

static _Atomic int nsync;
static _Atomic int64_t first_sync_ns;

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int fdatasync(int fd);

int
fdatasync(int fd)
{
	long r = syscall(SYS_fdatasync, fd);
	int saved = errno;
	int64_t none = 0;

	(void)atomic_compare_exchange_strong(&first_sync_ns, &none, now_ns());
	atomic_fetch_add(&nsync, 1);
	errno = saved;
	return (int)r;
}

static void
setup(void)
{
	unit_env("TCPSPOOL_FSYNC=interval", "TCPSPOOL_FSYNC_INTERVAL=1500ms",
	    "TCPSPOOL_FLUSH=100ms", "TCPSPOOL_LINGER=0", NULL);
}

/* Waits (at most 10 s) for the first sync; its delay after t0, in ms. */
static int64_t
first_sync_after(int64_t t0)
{
	struct timespec step = { 0, 2 * 1000000L };
	int64_t deadline = t0 + 10 * 1000000000LL;

	while (atomic_load(&nsync) == 0 && now_ns() < deadline)
		nanosleep(&step, NULL);
	cr_assert_gt(atomic_load(&nsync), 0, "no fdatasync within 10 s");
	return (atomic_load(&first_sync_ns) - t0) / 1000000;
}

static void
check_bound(int64_t t0, int64_t limit_ms, const char *what)
{
	int64_t ms = first_sync_after(t0);

	cr_log_info("%s: first fdatasync %lld ms after the write", what,
	    (long long)ms);
	cr_assert_leq(ms, limit_ms + SLACK_MS, "%s: synced %lld ms after the "
	    "write, bound %lld ms", what, (long long)ms, (long long)limit_ms);
}

/* The application's write spools a frame (more than the 128 KiB frame
 * target), then nothing more happens: the peer never reads. */
Test(fsync, a_frame_left_idle_is_synced_within_the_interval,
    .init = setup)
{
	size_t len = 1u << 20;
	unsigned char *b = malloc(len);
	struct stream *s;
	int64_t t0;
	int fds[2];

	cr_assert_not_null(b);
	pattern_fill(b, len, 0);
	unit_unix_pair(fds);
	t0 = now_ns();
	cr_assert_eq(op_write(fds[0], b, len), (ssize_t)len);
	cr_assert_not_null(s = unit_stream(fds[0]));
	cr_assert_eq(stream_state_of(s), STREAM_SPOOLING);
	check_bound(t0, INTERVAL_MS, "frame");
	cr_assert_eq(stream_state_of(s), STREAM_SPOOLING, "the peer read "
	    "nothing: still spooling");
	stream_unref(s);
	free(b);
}

/* A record too small for a frame: the flush interval frames it, the
 * fsync interval syncs it. */
Test(fsync, a_staged_record_left_idle_is_synced_within_both_intervals,
    .init = setup)
{
	size_t len = 1u << 20;
	unsigned char *b = malloc(len);
	struct stream *s;
	int64_t t0;
	int fds[2];
	ssize_t r;

	cr_assert_not_null(b);
	pattern_fill(b, len, 0);
	unit_unix_pair(fds);
	/* Fill the kernel's buffers without spooling, then one record. */
	while ((r = write(fds[0], b, 4096)) > 0)
		;
	cr_assert(r == -1 && errno == EAGAIN);
	t0 = now_ns();
	cr_assert_eq(op_write(fds[0], b, 1000), 1000);
	cr_assert_not_null(s = unit_stream(fds[0]));
	cr_assert_eq(stream_state_of(s), STREAM_SPOOLING);
	check_bound(t0, INTERVAL_MS + FLUSH_MS, "staged record");
	stream_unref(s);
	free(b);
}
