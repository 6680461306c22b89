/*
 * No Test here sets .timeout: Criterion's runner leaks its timeout record
 * now and then when such tests run in parallel (LeakSanitizer in the ASan
 * build); meson's timeout is the hang guard.
 *
 * The replay thread holds a stream's lock only to take or return a turn
 * (issue 13, item 2): reading the spool, inflating and sending run without
 * it, so an application call on the stream never waits for them.
 *
 * The observable is spool/'s read seam (sysio_read_hook): once armed, the
 * first pread of a segment that the replay thread makes is held there, as
 * a disk that does not answer would hold it, until the test lets it go.
 * Meanwhile the application writes more on the same connection, or closes
 * it: the call must return while the read is held (under a lock held
 * across the read it never would). Afterwards every byte arrives in order,
 * or the abortive close's spool is gone. Nothing here is timed: the waits
 * are on conditions, with deadlines that only turn a hang into a failure.
 */
#include <criterion/criterion.h>

#include <dirent.h>

#include <sys/socket.h>
#include <sys/syscall.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


#include "ops.h"
#include "real.h"
#include "stream.h"
#include "sysio.h"
#include "unit.h"
#include "util.h"

#define CHUNK		16384
#define BEFORE		(2u << 20)	/* spooled before the read is held */
#define DURING		(2u << 20)	/* written while it is held */
#define DEADLINE_S	60

static _Atomic pid_t app_tid;
static _Atomic bool armed, held_once;
static sem_t entered, release;

static ssize_t
hook(int fd, void *buf, size_t len, off_t off)
{
	if (atomic_load(&armed) && (pid_t)syscall(SYS_gettid) != app_tid &&
	    !atomic_exchange(&held_once, true)) {
		sem_post(&entered);
		while (sem_wait(&release) == -1 && errno == EINTR)
			;
	}
	return sysio_pread_real(fd, buf, len, off);
}

static bool
wait_sem(sem_t *s)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += DEADLINE_S;
	while (sem_timedwait(s, &ts) == -1)
		if (errno != EINTR)
			return false;
	return true;
}

struct writer {
	int fd;
	const unsigned char *buf;
	size_t from, len;
	bool ok;
	sem_t done;
};

static void *
writer_main(void *arg)
{
	struct writer *w = arg;
	size_t off;

	app_tid = (pid_t)syscall(SYS_gettid);
	w->ok = true;
	for (off = 0; off < w->len && w->ok; off += CHUNK)
		w->ok = op_write(w->fd, w->buf + w->from + off, CHUNK) == CHUNK;
	sem_post(&w->done);
	return NULL;
}

/* Runs a writer on its own thread; true if it returned within the
 * deadline (it is joined then). */
static bool
write_on_thread(struct writer *w)
{
	pthread_t t;

	sem_init(&w->done, 0, 0);
	cr_assert_eq(pthread_create(&t, NULL, writer_main, w), 0);
	if (!wait_sem(&w->done))
		return false;
	pthread_join(t, NULL);
	return true;
}

struct reader {
	int fd;
	uint64_t n;
	bool ok;
};

static void *
reader_main(void *arg)
{
	struct reader *r = arg;

	r->ok = read_pattern(r->fd, 0, r->n);
	return NULL;
}

static unsigned char *
pattern_bytes(size_t len)
{
	unsigned char *b = malloc(len);

	cr_assert(b != NULL);
	pattern_fill(b, len, 0);
	return b;
}

/* Spools BEFORE bytes on fds[0] (nobody reads), arms the hook, and starts
 * a reader of n bytes on fds[1]: the replay thread then reads the spool,
 * and is held at its first pread. */
static const char *
spool_then_hold(int fds[2], const unsigned char *b, struct reader *r,
    pthread_t *rt, uint64_t n)
{
	struct writer w = { .fd = fds[0], .buf = b, .len = BEFORE };
	const char *dir;

	dir = unit_env("TCPSPOOL_LEVEL=0", "TCPSPOOL_SEGMENT_SIZE=64K",
	    "TCPSPOOL_FLUSH=1ms", "TCPSPOOL_LINGER=0", NULL);
	sem_init(&entered, 0, 0);
	sem_init(&release, 0, 0);
	sysio_read_hook(hook);
	unit_unix_pair(fds);
	w.fd = fds[0];
	cr_assert(write_on_thread(&w), "the first writes never returned");
	cr_assert(w.ok, "a write was refused");
	atomic_store(&armed, true);
	*r = (struct reader){ .fd = fds[1], .n = n };
	cr_assert_eq(pthread_create(rt, NULL, reader_main, r), 0);
	cr_assert(wait_sem(&entered), "the replay thread never read the "
	    "spool");
	return dir;
}

Test(pump, an_application_write_never_waits_for_the_replay_threads_read)
{
	unsigned char *b = pattern_bytes(BEFORE + DURING);
	struct reader r;
	struct writer w;
	pthread_t rt;
	int fds[2];

	spool_then_hold(fds, b, &r, &rt, BEFORE + DURING);
	w = (struct writer){ .fd = fds[0], .buf = b, .from = BEFORE,
		.len = DURING };
	cr_assert(write_on_thread(&w), "an application write on the stream "
	    "waited for the replay thread's read of the spool");
	cr_assert(w.ok, "a write was refused while the read was held");
	sem_post(&release);
	pthread_join(rt, NULL);
	cr_assert(r.ok, "the reader did not get every byte in order");
	sysio_read_hook(NULL);
	op_close(fds[0]);
	close(fds[1]);
	free(b);
}

struct closer {
	int fd;
	int rc;
	sem_t done;
};

static void *
closer_main(void *arg)
{
	struct closer *c = arg;

	app_tid = (pid_t)syscall(SYS_gettid);
	c->rc = op_close(c->fd);
	sem_post(&c->done);
	return NULL;
}

Test(pump, an_abortive_close_never_waits_for_the_replay_threads_read)
{
	unsigned char *b = pattern_bytes(BEFORE);
	struct linger l = { 1, 0 };
	const char *dir;
	struct closer c;
	struct stream *s;
	struct reader r;
	pthread_t rt, ct;
	int fds[2];

	/* The reader expects more than will ever come: the reset ends it. */
	dir = spool_then_hold(fds, b, &r, &rt, BEFORE + 1);
	cr_assert_not_null(s = unit_stream(fds[0]));
	cr_assert_eq(setsockopt(fds[0], SOL_SOCKET, SO_LINGER, &l, sizeof(l)),
	    0);
	c = (struct closer){ .fd = fds[0] };
	sem_init(&c.done, 0, 0);
	cr_assert_eq(pthread_create(&ct, NULL, closer_main, &c), 0);
	cr_assert(wait_sem(&c.done), "close with SO_LINGER 0 waited for the "
	    "replay thread's read of the spool");
	pthread_join(ct, NULL);
	cr_assert_eq(c.rc, 0);
	sem_post(&release);
	/* The replay thread, back from the read, discards the spool. */
	cr_assert(wait_state(s, STREAM_DONE), "the stream never finished");
	pthread_join(rt, NULL);
	cr_assert_not(r.ok, "the reader got a whole stream that was reset");
	cr_assert_eq(spool_dir_entries(dir), 0, "the discarded spool is "
	    "still on disk");
	stream_unref(s);
	sysio_read_hook(NULL);
	close(fds[1]);
	free(b);
}

/* Open fds of this process. */
static int
count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	cr_assert(d != NULL);
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1;	/* opendir's own */
}

/* Waits until s is parked (the replay thread does it once the socket has
 * taken nothing for a while); false after 30 s. */
static bool
wait_parked(struct stream *s)
{
	struct timespec step = { 0, 5 * 1000000L };
	bool parked = false;
	int i;

	for (i = 0; i < 6000 && !parked; i++) {
		pthread_mutex_lock(&s->mu);
		parked = s->parked;
		pthread_mutex_unlock(&s->mu);
		if (!parked)
			nanosleep(&step, NULL);	/* polls a condition */
	}
	return parked;
}

/* Writes [from, to) of the pattern in writes of varied sizes: many small
 * records in one frame, records larger than a frame. */
static void
write_varied(int fd, const unsigned char *b, size_t from, size_t to)
{
	static const size_t sizes[] = { 28, 1000, 70000, 3, 16384, 200000 };
	size_t off = from, k = 0, n;

	while (off < to) {
		n = sizes[k++ % (sizeof(sizes) / sizeof(sizes[0]))];
		if (n > to - off)
			n = to - off;
		cr_assert_eq(op_write(fd, b + off, n), (ssize_t)n);
		off += n;
	}
}

/*
 * A connection whose peer stops reading gives back what the replay side
 * holds (issue 13, item 4): its spool fds (2 fds left: the application's
 * and the private duplicate) and its batch and frame buffers; then the
 * peer reads a part, stops again (parked again, with a record cut by the
 * socket in the middle), and finally reads everything, byte-exact.
 */
Test(pump, a_stalled_stream_parks_and_delivers_every_byte_after)
{
	size_t total = 6u << 20, half = 2u << 20;
	unsigned char *b = pattern_bytes(total);
	int fds[2], parked_fds, direct_fds;
	struct stream *s;

	unit_env("TCPSPOOL_SEGMENT_SIZE=256K", "TCPSPOOL_FSYNC=interval",
	    "TCPSPOOL_FSYNC_INTERVAL=20ms", "TCPSPOOL_FLUSH=5ms", NULL);
	unit_unix_pair(fds);
	write_varied(fds[0], b, 0, total / 2);
	cr_assert_not_null(s = unit_stream(fds[0]));
	cr_assert(wait_parked(s), "a stalled stream was never parked");
	parked_fds = count_fds();

	/* The peer reads a part; the stream runs, and stalls again. */
	cr_assert(read_pattern(fds[1], 0, half));
	write_varied(fds[0], b, total / 2, total);
	cr_assert(wait_parked(s), "the stream was not parked again");
	cr_expect_eq(count_fds(), parked_fds, "parked again, it holds %d fds "
	    "more than the first time", count_fds() - parked_fds);

	cr_assert(read_pattern(fds[1], half, total - half),
	    "the reader did not get every byte in order");
	cr_assert(wait_state(s, STREAM_DIRECT));
	/* The duplicate is closed by the replay thread just after. */
	for (int i = 0; i < 6000 && (direct_fds = count_fds()) >= parked_fds;
	    i++)
		usleep(5000);	/* bounded poll of a condition */
	/* Parked, the stream held one fd more than back on the direct path:
	 * the private duplicate, and none of the spool's. */
	cr_expect_eq(parked_fds, direct_fds + 1, "parked: %d fds, direct: %d "
	    "(the duplicate alone should differ)", parked_fds, direct_fds);
	stream_unref(s);
	op_close(fds[0]);
	close(fds[1]);
	free(b);
}

static _Atomic bool sync_held_once;
static sem_t sync_entered, sync_release;

/* The first sync not made on the application's thread waits for the
 * test, as a disk that does not answer would. */
static int
sync_hook(int fd, bool data)
{
	if ((pid_t)syscall(SYS_gettid) != app_tid &&
	    !atomic_exchange(&sync_held_once, true)) {
		sem_post(&sync_entered);
		while (sem_wait(&sync_release) == -1 && errno == EINTR)
			;
	}
	return sysio_sync_real(fd, data);
}

/*
 * One stream's disk does not answer (its fdatasync is held): another
 * stream is still replayed, every byte (issue 13, item 2: a slow disk
 * never delays another stream). Under fsync=interval the syncs run on a
 * thread of their own, never on the replay thread.
 */
Test(pump, a_held_sync_never_delays_another_streams_replay)
{
	unsigned char *b = pattern_bytes(BEFORE);
	struct writer w;
	int a[2], c[2];

	unit_env("TCPSPOOL_FSYNC=interval", "TCPSPOOL_FSYNC_INTERVAL=1ms",
	    "TCPSPOOL_FLUSH=1ms", "TCPSPOOL_LEVEL=0", NULL);
	sem_init(&sync_entered, 0, 0);
	sem_init(&sync_release, 0, 0);
	sysio_sync_hook(sync_hook);
	unit_unix_pair(a);
	unit_unix_pair(c);
	w = (struct writer){ .fd = a[0], .buf = b, .len = BEFORE };
	cr_assert(write_on_thread(&w) && w.ok);
	cr_assert(wait_sem(&sync_entered), "no sync was ever made");

	/* The disk holds a sync; the other connection spools and its peer
	 * reads: everything arrives meanwhile. */
	w = (struct writer){ .fd = c[0], .buf = b, .len = BEFORE };
	cr_assert(write_on_thread(&w) && w.ok, "a write waited for the sync");
	cr_assert(read_pattern(c[1], 0, BEFORE), "the other stream was not "
	    "replayed while a sync was held");

	sem_post(&sync_release);
	cr_assert(read_pattern(a[1], 0, BEFORE));
	sysio_sync_hook(NULL);
	op_close(a[0]);
	op_close(c[0]);
	close(a[1]);
	close(c[1]);
	free(b);
}

/* Under fsync=always a write to a parked stream writes its frame at once
 * (nothing staged, no flush timer): the stream is parked again all the
 * same, holding no segment fd, and its status is written again. */
Test(pump, a_write_to_a_parked_stream_under_fsync_always_parks_again)
{
	size_t total = 2u << 20;
	unsigned char *b = pattern_bytes(total);
	int fds[2], parked_fds;
	struct stream *s;
	bool parked;

	unit_env("TCPSPOOL_FSYNC=always", NULL);
	unit_unix_pair(fds);
	write_varied(fds[0], b, 0, total / 2);
	cr_assert_not_null(s = unit_stream(fds[0]));
	cr_assert(wait_parked(s));
	parked_fds = count_fds();
	write_varied(fds[0], b, total / 2, total);
	pthread_mutex_lock(&s->mu);
	parked = s->parked;
	pthread_mutex_unlock(&s->mu);
	cr_assert_not(parked, "a write left the stream marked parked");
	cr_assert(wait_parked(s), "not parked again after a write");
	cr_expect_eq(count_fds(), parked_fds, "parked again with %d fds more",
	    count_fds() - parked_fds);
	cr_assert(read_pattern(fds[1], 0, total));
	stream_unref(s);
	op_close(fds[0]);
	close(fds[1]);
	free(b);
}

struct range_closer {
	unsigned fd;
	_Atomic pid_t tid;
	_Atomic bool done;
};

static void *
range_closer_main(void *arg)
{
	struct range_closer *c = arg;

	atomic_store(&c->tid, (pid_t)syscall(SYS_gettid));
	(void)op_close_range(c->fd, c->fd, 0);
	atomic_store(&c->done, true);
	return NULL;
}

/* True once thread tid is inside system call nr (it blocks there). */
static bool
in_syscall(pid_t tid, long nr)
{
	char path[64], buf[64];
	long cur = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	if ((f = fopen(path, "r")) == NULL)
		return false;
	if (fgets(buf, sizeof(buf), f) != NULL)
		cur = strtol(buf, NULL, 10);
	fclose(f);
	return cur == nr;
}

/*
 * A close_range that waits out an SO_LINGER (a socket with unsent bytes
 * to a peer that reads nothing) never holds up the library (review of
 * issue 13's gate): another connection starts spooling, and its peer
 * gets every byte, while the close still waits.
 */
Test(pump, a_lingering_close_range_never_holds_up_another_connection)
{
	size_t total = 1u << 20;
	unsigned char *b = pattern_bytes(total), junk[4096] = { 0 };
	struct linger l = { 1, 8 };
	struct range_closer c = { 0 };
	int tcp[2], u[2], hi, i;
	pthread_t t;

	unit_env(NULL);
	unit_tcp_pair(tcp);
	/* The kernel's own buffers full, past the library: nothing unsent
	 * is ever read, so the close lingers its 8 s. */
	while (write(tcp[0], junk, sizeof(junk)) > 0)
		;
	cr_assert_eq(errno, EAGAIN);
	cr_assert(fcntl(tcp[0], F_SETFL, 0) == 0);
	cr_assert(setsockopt(tcp[0], SOL_SOCKET, SO_LINGER, &l,
	    sizeof(l)) == 0);
	hi = op_fcntl(tcp[0], F_DUPFD_CLOEXEC, (void *)900, false);
	cr_assert(hi >= 900);
	cr_assert_eq(op_close(tcp[0]), 0);
	c.fd = (unsigned)hi;
	cr_assert_eq(pthread_create(&t, NULL, range_closer_main, &c), 0);
	for (i = 0; i < 6000 && !(atomic_load(&c.tid) != 0 &&
	    in_syscall(atomic_load(&c.tid), SYS_close_range)); i++)
		usleep(1000);	/* bounded poll of a condition */
	cr_assert(in_syscall(atomic_load(&c.tid), SYS_close_range),
	    "the close_range never blocked");

	unit_unix_pair(u);
	cr_assert_eq(op_write(u[0], b, total), (ssize_t)total);
	cr_assert(read_pattern(u[1], 0, total));
	cr_assert_not(atomic_load(&c.done), "the spooling connection waited "
	    "for another thread's lingering close_range");
	pthread_join(t, NULL);
	op_close(u[0]);
	close(u[1]);
	close(tcp[1]);
	free(b);
}

/* Syncs made off the application's thread; the first one waits for the
 * test (a disk that does not answer) once held is armed. */
static _Atomic int late_syncs;
static _Atomic bool late_held;
static sem_t late_entered, late_release;

static int
late_sync_hook(int fd, bool data)
{
	if ((pid_t)syscall(SYS_gettid) != app_tid) {
		atomic_fetch_add(&late_syncs, 1);
		if (!atomic_exchange(&late_held, true)) {
			sem_post(&late_entered);
			while (sem_wait(&late_release) == -1 && errno == EINTR)
				;
		}
	}
	return sysio_sync_real(fd, data);
}

static void
late_setup(int fds[2], const unsigned char *b, const char *linger)
{
	struct writer w;

	unit_env("TCPSPOOL_FSYNC=interval", "TCPSPOOL_FSYNC_INTERVAL=5ms",
	    "TCPSPOOL_FLUSH=1ms", "TCPSPOOL_LEVEL=0", linger, NULL);
	sem_init(&late_entered, 0, 0);
	sem_init(&late_release, 0, 0);
	sysio_sync_hook(late_sync_hook);
	unit_unix_pair(fds);
	w = (struct writer){ .fd = fds[0], .buf = b, .len = BEFORE };
	cr_assert(write_on_thread(&w) && w.ok);
	cr_assert(wait_sem(&late_entered), "no sync was ever made");
}

/* Polls (bounded, 30 s) until cond(s) holds under s's mu. */
static bool
wait_locked(struct stream *s, bool (*cond)(struct stream *))
{
	bool ok = false;
	int i;

	for (i = 0; i < 6000 && !ok; i++) {
		pthread_mutex_lock(&s->mu);
		ok = cond(s);
		pthread_mutex_unlock(&s->mu);
		if (!ok)
			usleep(5000);	/* bounded poll of a condition */
	}
	return ok;
}

static bool
sync_idle(struct stream *s)
{
	return !s->sync_busy;
}

static bool
sync_owed_untimed(struct stream *s)
{
	return s->state == STREAM_SPOOLING && s->spool != NULL &&
	    spool_stream_sync_owed(s->spool) &&
	    atomic_load(&s->sync_due) == 0;
}

/*
 * A sync job that finishes after its stream drained and lingers leaves no
 * timer behind (review: the replay thread spun on it, about 0.8 of a core,
 * for the whole linger time).
 */
Test(pump, a_late_sync_leaves_no_timer_on_a_lingering_stream)
{
	unsigned char *b = pattern_bytes(BEFORE);
	struct stream *s;
	int a[2];

	late_setup(a, b, "TCPSPOOL_LINGER=60s");
	cr_assert_not_null(s = unit_stream(a[0]));
	cr_assert_eq(op_close(a[0]), 0);
	cr_assert(read_pattern(a[1], 0, BEFORE));
	cr_assert(wait_state(s, STREAM_LINGER));
	sem_post(&late_release);	/* the job gives its result late */
	cr_assert(wait_locked(s, sync_idle), "the job never finished");
	cr_assert_eq(atomic_load(&s->sync_due), 0, "a lingering stream kept "
	    "a sync timer nothing will take");
	sysio_sync_hook(NULL);
	stream_unref(s);
	close(a[1]);
	free(b);
}

/*
 * A stream drains and spools again while its old spool's sync job is
 * held: the new spool's frames still get their sync once the job is done
 * (review: their timer was cleared while the job was busy and never armed
 * again, so they stayed unsynced and the stream never parked).
 */
Test(pump, a_stream_that_spools_again_during_a_sync_gets_its_own)
{
	unsigned char *b = pattern_bytes(BEFORE);
	struct stream *s;
	struct writer w;
	int a[2], before;

	late_setup(a, b, "TCPSPOOL_LINGER=0");
	cr_assert_not_null(s = unit_stream(a[0]));
	cr_assert(read_pattern(a[1], 0, BEFORE));
	cr_assert(wait_state(s, STREAM_DIRECT));
	w = (struct writer){ .fd = a[0], .buf = b, .len = BEFORE };
	cr_assert(write_on_thread(&w) && w.ok);
	/* Its sync came due while the old job is busy: taken by nobody. */
	cr_assert(wait_locked(s, sync_owed_untimed), "the new spool's sync "
	    "was never deferred behind the busy job");
	before = atomic_load(&late_syncs);
	sem_post(&late_release);
	for (int i = 0; i < 6000 && atomic_load(&late_syncs) == before; i++)
		usleep(5000);	/* bounded poll of a condition */
	cr_assert_gt(atomic_load(&late_syncs), before, "the new spool's "
	    "frames were never synced");
	sysio_sync_hook(NULL);
	cr_assert(read_pattern(a[1], 0, BEFORE));
	op_close(a[0]);
	stream_unref(s);
	close(a[1]);
	free(b);
}

/*
 * The application set SO_LINGER {1, 300} and closed a connection whose peer
 * stopped reading after the spool drained: the library's last close of it
 * never waits those 300 s (review: it did, on the replay thread, holding up
 * every other stream and the host's close_range). Another connection is
 * replayed meanwhile; before, it waited past the test's timeout.
 */
Test(pump, the_librarys_last_close_of_a_lingering_socket_never_waits)
{
	unsigned char *b = pattern_bytes(BEFORE), junk[1024];
	struct linger l = { 1, 300 };	/* past meson's 120 s timeout */
	struct stream *s;
	int tcp[2], u[2];

	unit_env("TCPSPOOL_LINGER=100ms", NULL);
	unit_tcp_pair(tcp);
	cr_assert(setsockopt(tcp[0], SOL_SOCKET, SO_LINGER, &l,
	    sizeof(l)) == 0);
	cr_assert_eq(op_write(tcp[0], b, BEFORE), (ssize_t)BEFORE);
	cr_assert_not_null(s = unit_stream(tcp[0]));
	cr_assert_eq(op_close(tcp[0]), 0);
	/* The peer reads until the spool is delivered, then no more: the
	 * kernel still holds unacknowledged bytes and the FIN. */
	for (int i = 0; i < 60000 && stream_state_of(s) == STREAM_SPOOLING;
	    i++)
		if (read(tcp[1], junk, sizeof(junk)) <= 0)
			usleep(1000);	/* bounded poll of a condition */
	cr_assert(wait_state(s, STREAM_DONE), "the linger never ended");

	unit_unix_pair(u);
	cr_assert_eq(op_write(u[0], b, BEFORE), (ssize_t)BEFORE);
	cr_assert(read_pattern(u[1], 0, BEFORE), "another connection was "
	    "not replayed");
	op_close(u[0]);
	close(u[1]);
	stream_unref(s);
	close(tcp[1]);
	free(b);
}

/*
 * Runs (issue 14): the replay thread sends the rest of a decoded frame
 * with one sendmsg and acknowledges what the socket took to the byte. Here
 * its sends are cut wherever the test says: inside records of every size,
 * at their ends, inside the frame's first and last ones; every byte must
 * still arrive once, in order. The cut is the seam real.sendmsg (the table
 * the library calls the system through), replaced before the replay
 * thread starts; the application's own sends pass through whole.
 */
static ssize_t (*next_sendmsg)(int, const struct msghdr *, int);
static _Atomic unsigned cut_calls, cut_short;

static bool
on_replay_thread(void)
{
	char name[16];

	return pthread_getname_np(pthread_self(), name, sizeof(name)) == 0 &&
	    strcmp(name, "tcpspool-replay") == 0;
}

static ssize_t
cut_sendmsg(int fd, const struct msghdr *m, int flags)
{
	static const size_t caps[] = { 1, 27, 29, 3, 56, 1000, 2813, 28,
		4096, 70001 };
	struct iovec iov[8];
	struct msghdr c = *m;
	size_t cap, want = 0, total = 0, i;

	if (!on_replay_thread())
		return next_sendmsg(fd, m, flags);
	cap = caps[atomic_fetch_add(&cut_calls, 1) %
	    (sizeof(caps) / sizeof(caps[0]))];
	c.msg_iov = iov;
	c.msg_iovlen = 0;
	for (i = 0; i < m->msg_iovlen; i++) {
		want += m->msg_iov[i].iov_len;
		if (i >= 8 || total == cap)
			continue;
		iov[i] = m->msg_iov[i];
		if (iov[i].iov_len > cap - total)
			iov[i].iov_len = cap - total;
		total += iov[i].iov_len;
		c.msg_iovlen++;
	}
	if (want > total)
		atomic_fetch_add(&cut_short, 1);
	return next_sendmsg(fd, &c, flags);
}

/* After unit_env, before the first stream: the replay thread starts with
 * the first registration, so it only ever sees the cut. */
static void
cut_replay_sends(void)
{
	next_sendmsg = real.sendmsg;
	real.sendmsg = cut_sendmsg;
}

/* Writes [from, to) of the pattern in writes of n bytes. */
static void
write_records(int fd, const unsigned char *b, size_t from, size_t to,
    size_t n)
{
	size_t off;

	for (off = from; off < to; off += n) {
		size_t k = n < to - off ? n : to - off;

		cr_assert_eq(op_write(fd, b + off, k), (ssize_t)k);
	}
}

static void
cut_sends_deliver_every_byte(size_t total, bool varied)
{
	unsigned char *b = pattern_bytes(total);
	struct stream *s;
	int fds[2];

	unit_env("TCPSPOOL_SEGMENT_SIZE=64K", "TCPSPOOL_FLUSH=1ms", NULL);
	cut_replay_sends();
	unit_tcp_pair(fds);
	if (varied)
		write_varied(fds[0], b, 0, total);
	else
		write_records(fds[0], b, 0, total, 28);
	cr_assert_not_null(s = unit_stream(fds[0]));
	cr_assert(read_pattern(fds[1], 0, total),
	    "the reader did not get every byte once, in order");
	cr_assert(wait_state(s, STREAM_DIRECT), "the spool never drained");
	cr_assert_gt(atomic_load(&cut_short), 50, "only %u sends were cut",
	    atomic_load(&cut_short));
	stream_unref(s);
	op_close(fds[0]);
	close(fds[1]);
	free(b);
}

Test(pump, sends_cut_inside_28_byte_records_deliver_every_byte_once)
{
	cut_sends_deliver_every_byte(1u << 20, false);
}

Test(pump, sends_cut_inside_large_records_deliver_every_byte_once)
{
	cut_sends_deliver_every_byte(6u << 20, true);
}

/* What the spool still has to deliver. */
static uint64_t
pending_bytes(struct stream *s)
{
	struct spool_counts c = { 0 };

	pthread_mutex_lock(&s->mu);
	if (s->spool != NULL)
		spool_stream_counts(s->spool, &c);
	pthread_mutex_unlock(&s->mu);
	return c.pending_bytes;
}

/*
 * The socket stops taking bytes in the middle of a 28-byte record (the
 * pending bytes are then not a multiple of 28), the stream is parked with
 * the rest of its run unsent; once the peer reads again, the record goes
 * on from the byte after the cut, read again from the files. A park on a
 * record's boundary (1 in 28) is let through and the peer reads a little
 * more, until one cuts a record.
 */
Test(pump, a_stream_parked_in_the_middle_of_a_run_goes_on_at_the_byte)
{
	size_t total = 2u << 20, got = 100000 + 13;
	unsigned char *b = pattern_bytes(total);
	struct stream *s;
	int fds[2], round;
	uint64_t left;

	unit_env("TCPSPOOL_SEGMENT_SIZE=64K", "TCPSPOOL_FLUSH=1ms", NULL);
	unit_tcp_pair(fds);
	write_records(fds[0], b, 0, total, 28);
	cr_assert_not_null(s = unit_stream(fds[0]));
	cr_assert(read_pattern(fds[1], 0, got));
	for (round = 0; round < 20; round++) {
		cr_assert(read_pattern(fds[1], got, 1000 + 13 * round));
		got += 1000 + 13 * round;
		cr_assert(wait_parked(s), "a stalled stream was never parked");
		left = pending_bytes(s);
		cr_assert_gt(left, 0);
		if (left % 28 != 0)
			break;
	}
	cr_assert_lt(round, 20, "every park fell on a record's boundary");
	cr_assert(read_pattern(fds[1], got, total - got),
	    "after the park the reader did not get every byte once");
	cr_assert(wait_state(s, STREAM_DIRECT));
	stream_unref(s);
	op_close(fds[0]);
	close(fds[1]);
	free(b);
}

static bool
nothing_staged(struct stream *s)
{
	return s->state != STREAM_SPOOLING || s->spool == NULL ||
	    spool_stream_staged_since(s->spool) == 0;
}

/*
 * Small writes behind records already staged take the quick path
 * (admit.c, spool_quick), which leaves the flush deadline to the first
 * record's: with the reader stalled (no turn of the replay thread ever
 * flushes them), the flush timer alone must still write them as a frame.
 */
Test(pump, small_writes_behind_staged_records_reach_a_frame_on_the_timer)
{
	enum { SMALL = 28, NSMALL = 300 };
	unsigned char *b = pattern_bytes(BEFORE + SMALL * NSMALL);
	struct stream *s;
	int a[2], i;

	unit_env("TCPSPOOL_FLUSH=20ms", NULL);
	unit_unix_pair(a);
	cr_assert_eq(op_write(a[0], b, BEFORE), (ssize_t)BEFORE);
	for (i = 0; i < NSMALL; i++)
		cr_assert_eq(op_write(a[0], b + BEFORE + i * SMALL, SMALL),
		    SMALL);
	cr_assert_not_null(s = unit_stream(a[0]));
	cr_assert_eq(stream_state_of(s), STREAM_SPOOLING);
	cr_assert(wait_locked(s, nothing_staged), "records staged behind the "
	    "first small write were never written: no flush timer");
	cr_assert(read_pattern(a[1], 0, BEFORE + SMALL * NSMALL));
	cr_assert(wait_state(s, STREAM_DIRECT));
	stream_unref(s);
	op_close(a[0]);
	close(a[1]);
	free(b);
}

/*
 * A flush deadline the replay thread moved (a refused read, PUMP_RETRY,
 * puts it RETRY_NS out) is set back by the next write to what the first
 * staged record's flush interval gives, as before the quick path: that
 * path takes a write only when the deadline is what replay_note_staged
 * would store.
 */
Test(pump, a_write_sets_a_moved_flush_deadline_back)
{
	enum { SMALL = 28 };
	unsigned char *b = pattern_bytes(BEFORE + 2 * SMALL);
	const int64_t flush = 30000 * NS_PER_MS;	/* never due here */
	int64_t since, due;
	struct stream *s;
	int a[2];

	unit_env("TCPSPOOL_FLUSH=30s", NULL);
	unit_unix_pair(a);
	cr_assert_eq(op_write(a[0], b, BEFORE), (ssize_t)BEFORE);
	cr_assert_eq(op_write(a[0], b + BEFORE, SMALL), SMALL);
	cr_assert_not_null(s = unit_stream(a[0]));
	pthread_mutex_lock(&s->mu);
	cr_assert_eq(s->state, STREAM_SPOOLING);
	since = spool_stream_staged_since(s->spool);
	cr_assert_neq(since, 0, "the small write was not staged");
	cr_assert_eq(atomic_load(&s->flush_due), since + flush);
	/* Moved 10 s later, as a retry moves it. */
	atomic_store(&s->flush_due, since + flush + 10000 * NS_PER_MS);
	pthread_mutex_unlock(&s->mu);
	cr_assert_eq(op_write(a[0], b + BEFORE + SMALL, SMALL), SMALL);
	pthread_mutex_lock(&s->mu);
	due = atomic_load(&s->flush_due);
	pthread_mutex_unlock(&s->mu);
	cr_assert_eq(due, since + flush, "the write left the moved deadline "
	    "(%lld ns late)", (long long)(due - since - flush));
	cr_assert(read_pattern(a[1], 0, BEFORE + 2 * SMALL));
	cr_assert(wait_state(s, STREAM_DIRECT));
	stream_unref(s);
	op_close(a[0]);
	close(a[1]);
	free(b);
}
