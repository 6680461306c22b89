/*
 * syncer.c — the thread that waits for the disk: the deferred fdatasync
 * jobs of fsync=interval (pump.c, take_sync) run here, one at a time, so
 * that neither an application thread nor the replay thread ever waits for
 * a sync. A stream whose disk is slow delays its own syncs, never another
 * stream's replay.
 *
 * sq.mu guards the queue; it is never held across anything that blocks,
 * and nothing else is taken under it. A job holds a reference to its
 * stream; once run, its result is given to the stream under the stream's
 * mu (sync_done), if the stream still has the spool the job was taken
 * from (gen). Lock order: a stream's mu, then sq.mu (submit); sq.mu, then
 * the sysio gate (run_job's close); the thread takes them one at a time.
 *
 * It loads the ISA-L deflater when it starts (load_codec). It also sweeps
 * the spool dir for orphans whose expiry has passed
 * (TCPSPOOL_ORPHANS=expire; spool_dir_expire), once a process has spooled:
 * at each of its own orphans' expiry, and every ORPHAN_TTL (at most a
 * minute, at least a second) for those other processes left. A sweep
 * reads each stream's status and deletes files: the disk's time, here.
 *
 * fork: the prepare handler holds sq.mu, so the child finds the queue
 * whole; it closes the fds of the parent's jobs, queued or running, and
 * starts empty, its thread made again at its first job.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "real.h"
#include "replay.h"
#include "runtime.h"
#include "stream.h"
#include "syncer.h"
#include "sysio.h"
#include "util.h"

struct sync_item {
	struct stream *s;
	struct spool_sync_job j;
	uint64_t gen;
	struct sync_item *next;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct sync_item *head, *tail;
	int running_fd;	/* the fd of the job being run, until closed */
	int64_t sweep_at;	/* mono_ns() of the next sweep, 0: none */
	int64_t sweep_every;	/* ns between sweeps once sweeping, 0: not */
	bool started;
} sq = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER,
	.running_fd = -1 };

/*
 * One job, on this thread. Its segment fd is synced and closed here, not
 * in spool_sync_run: the fd is known to the fork handler (running_fd)
 * until it is closed, and closed under sq.mu, so a fork child closes its
 * copy of exactly that file, never a number reused since (a close of a
 * regular file does not wait for the disk: the data was synced before).
 */
static int
run_job(struct sync_item *it)
{
	struct spool_sync_job by_name = it->j;
	int fd = it->j.fd, rc;

	by_name.fd = -1;
	rc = spool_sync_run(&by_name);	/* sealed segments, the dir */
	if (fd >= 0) {
		if (sysio_fdatasync(fd) == -1 && rc == 0)
			rc = -errno;
		pthread_mutex_lock(&sq.mu);
		sysio_close(fd);
		sq.running_fd = -1;
		pthread_mutex_unlock(&sq.mu);
		it->j.fd = -1;
	}
	return rc;
}

/*
 * ISA-L is loaded here, at the start of this thread, which a process
 * starts when it first spools: a process that never spools never pays
 * for the dlopen (about 0.1 ms), and dlopen, which takes the dynamic
 * loader's lock and allocates, runs neither in a signal handler nor in a
 * hook, nor on the replay thread that a host thread inside its own dlopen
 * (a constructor writing to a spooling socket, overflow=block) could wait
 * for; nothing waits for this thread. Frames formed before it returns
 * are libdeflate's: the format is the same (spool/codec.c).
 */
static void
load_codec(void)
{
	if (spool_codec_load())
		log_debug("level-1 frames deflated by ISA-L igzip "
		    "(libisal.so.2, loaded RTLD_LOCAL|RTLD_DEEPBIND)");
	else
		log_debug("level-1 frames deflated by libdeflate or zlib: "
		    "ISA-L igzip not loaded (%s)", spool_codec_load_error());
}

static void
note_expired(void *arg, const struct spool_expired *x)
{
	(void)arg;
	if (x->removed)
		log_info("spool %s: orphan expired, removed (%" PRIu64 " bytes "
		    "undelivered, %s)", x->name, x->status->pending_bytes,
		    x->status->reason[0] ? x->status->reason : "no reason");
	else if (x->err[0] != '\0')
		log_debug("spool %s: expired orphan kept for now: %s", x->name,
		    x->err);
}

/*
 * Under sq.mu, which it leaves and takes again around the sweep: the dir
 * (runtime_dir takes rt.mu, which fork_prepare takes before sq.mu) and
 * the disk are reached with no lock of ours held. Room it made wakes the
 * writers waiting for room (overflow=block, an edge owed at the quota).
 */
static void
sweep_locked(void)
{
	struct spool_dir *d;

	sq.sweep_at = sq.sweep_every > 0 ? mono_ns() + sq.sweep_every : 0;
	pthread_mutex_unlock(&sq.mu);
	if ((d = runtime_dir()) != NULL &&
	    spool_dir_expire(d, real_ns(), SPOOL_EXPIRE_SKIP_IF_BUSY,
	    note_expired, NULL) > 0)
		replay_room_changed(NULL);
	pthread_mutex_lock(&sq.mu);
}

static bool
sweep_due(void)
{
	return sq.sweep_at != 0 && mono_ns() >= sq.sweep_at;
}

static void *
syncer_main(void *arg)
{
	struct sync_item *it;
	struct timespec ts;
	int rc;

	(void)arg;
	(void)pthread_setname_np(pthread_self(), "tcpspool-sync");
	load_codec();
	for (;;) {
		pthread_mutex_lock(&sq.mu);
		/* A sweep that is due goes first, so a queue that never
		 * empties (a slow disk) never keeps it off. */
		while (sq.head == NULL || sweep_due()) {
			if (sweep_due()) {
				sweep_locked();
				continue;
			}
			if (sq.sweep_at == 0) {
				pthread_cond_wait(&sq.cv, &sq.mu);
				continue;
			}
			ts.tv_sec = (time_t)(sq.sweep_at / NS_PER_S);
			ts.tv_nsec = (long)(sq.sweep_at % NS_PER_S);
			(void)pthread_cond_timedwait(&sq.cv, &sq.mu, &ts);
		}
		it = sq.head;
		if ((sq.head = it->next) == NULL)
			sq.tail = NULL;
		sq.running_fd = it->j.fd;
		pthread_mutex_unlock(&sq.mu);

		rc = run_job(it);	/* the disk's time: no lock held */
		stream_sync_finished(it->s, &it->j, it->gen, rc);
		stream_unref(it->s);
		free(it);
	}
	return NULL;
}

/* The queue's condition variable waits on CLOCK_MONOTONIC: a sweep's
 * time is a mono_ns() deadline, which a clock step does not move. */
static void
init_cv(void)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sq.cv, &ca);
	pthread_condattr_destroy(&ca);
}

/* Under sq.mu. */
static bool
start_locked(void)
{
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t tid;
	int rc;

	init_cv();	/* nobody waits on it before the thread runs */
	/* The host's signals are never delivered to our thread. */
	sigfillset(&all);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&tid, &attr, syncer_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		log_warn("cannot start the sync thread: %s; syncs run on the "
		    "replay thread, expired orphans are left to another "
		    "process or tcpspool rm --expired", strerror(rc));
		return false;
	}
	sq.started = true;
	return true;
}

bool
syncer_submit(struct stream *s, const struct spool_sync_job *j, uint64_t gen)
{
	struct sync_item *it = malloc(sizeof(*it));
	bool ok;

	if (it == NULL)
		return false;
	*it = (struct sync_item){ .s = s, .j = *j, .gen = gen };
	pthread_mutex_lock(&sq.mu);
	ok = sq.started || start_locked();
	if (ok) {
		stream_ref(s);
		if (sq.tail != NULL)
			sq.tail->next = it;
		else
			sq.head = it;
		sq.tail = it;
		pthread_cond_signal(&sq.cv);
	}
	pthread_mutex_unlock(&sq.mu);
	if (!ok)
		free(it);
	return ok;
}

void
syncer_sweep_at(int64_t at_ns, int64_t every_ns)
{
	/* An expiry is a wall-clock time; the wait is on the monotonic clock. */
	if (at_ns > 0) {
		int64_t in = at_ns - real_ns();

		at_ns = mono_ns() + (in > 0 ? in : 0) + 1;
	}
	pthread_mutex_lock(&sq.mu);
	if (every_ns > 0 && (sq.sweep_every == 0 || every_ns < sq.sweep_every))
		sq.sweep_every = every_ns;
	if (at_ns > 0 && (sq.sweep_at == 0 || at_ns < sq.sweep_at)) {
		sq.sweep_at = at_ns;
		if (sq.started || start_locked())
			pthread_cond_signal(&sq.cv);
	}
	pthread_mutex_unlock(&sq.mu);
}

void
syncer_fork_prepare(void)
{
	pthread_mutex_lock(&sq.mu);
}

void
syncer_fork_parent(void)
{
	pthread_mutex_unlock(&sq.mu);
}

/* consistent: the prepare handler held sq.mu (see replay_fork_child). */
void
syncer_fork_child(bool consistent)
{
	struct sync_item *it;

	/* The parent's jobs and streams are the parent's: their fds are
	 * closed here, their memory left (a stream is never freed in a
	 * child: fdtab.c, keep_forgotten). */
	for (it = consistent ? sq.head : NULL; it != NULL; it = it->next)
		if (it->j.fd >= 0)
			sysio_close(it->j.fd);
	/* The job the parent's thread was running: its fd came along. */
	if (consistent && sq.running_fd >= 0)
		sysio_close(sq.running_fd);
	sq.running_fd = -1;
	sq.sweep_at = sq.sweep_every = 0;	/* from the child's first spool */
	sq.head = sq.tail = NULL;
	sq.started = false;
	pthread_mutex_init(&sq.mu, NULL);
	init_cv();
}
