/*
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

#include <sys/socket.h>
#include <sys/syscall.h>

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "ops.h"
#include "stream.h"
#include "sysio.h"
#include "unit.h"

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

Test(pump, an_application_write_never_waits_for_the_replay_threads_read,
    .timeout = 180)
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

Test(pump, an_abortive_close_never_waits_for_the_replay_threads_read,
    .timeout = 180)
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
