/*
 * Under TCPSPOOL_FSYNC=interval no application write waits for the disk
 * (issue 13, item 1): every fdatasync and fsync of the spool runs on the
 * replay thread, with no lock an application thread takes.
 *
 * The observable is spool/'s sync seam (sysio_sync_hook). The hook notes
 * the thread of every sync, and the first one the replay thread makes is
 * held there, as a disk that never answers would hold it, until the test
 * lets it go. Meanwhile an application thread spools 4 MiB more: frames,
 * rotations of 64 KiB segments. It must finish while the sync is held
 * (a write that waited for the sync, or for a lock held across it, never
 * would), no sync may run on it, and the process's fds must not grow with
 * the segments sealed meanwhile (the spool keeps none for the sync). Once
 * the sync is let go, the sealed segments are synced: at least one sync
 * per segment sealed while it was held. Nothing here is timed: the waits
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

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "ops.h"
#include "stream.h"
#include "sysio.h"
#include "unit.h"

#define CHUNK		16384
#define BEFORE		(1u << 20)	/* spooled before the sync is held */
#define DURING		(4u << 20)	/* spooled while it is held */
#define DEADLINE_S	60

static _Atomic pid_t app_tid;		/* the application's writing thread */
static _Atomic int syncs_on_app;	/* syncs made on it: must stay 0 */
static _Atomic int syncs;
static _Atomic bool held_once;
static sem_t entered, release;

static int
hook(int fd, bool data)
{
	atomic_fetch_add(&syncs, 1);
	if ((pid_t)syscall(SYS_gettid) == app_tid)
		atomic_fetch_add(&syncs_on_app, 1);
	else if (!atomic_exchange(&held_once, true)) {
		sem_post(&entered);
		while (sem_wait(&release) == -1 && errno == EINTR)
			;
	}
	return sysio_sync_real(fd, data);
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
	return n;
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

static unsigned char *
pattern_bytes(size_t len)
{
	unsigned char *b = malloc(len);

	cr_assert(b != NULL);
	pattern_fill(b, len, 0);
	return b;
}

Test(sync, no_application_write_waits_for_the_disk_under_interval)
{
	unsigned char *b = pattern_bytes(BEFORE + DURING);
	int fds_before, synced_before;
	struct writer w;
	pthread_t t;
	int fds[2];

	unit_env("TCPSPOOL_FSYNC=interval", "TCPSPOOL_FSYNC_INTERVAL=1ms",
	    "TCPSPOOL_FLUSH=1ms", "TCPSPOOL_SEGMENT_SIZE=64K",
	    "TCPSPOOL_LEVEL=0", NULL);	/* stored: 4 MiB is 64 segments */
	sem_init(&entered, 0, 0);
	sem_init(&release, 0, 0);
	sysio_sync_hook(hook);
	unit_unix_pair(fds);

	/* Spool until the replay thread is held inside its first sync. */
	w = (struct writer){ .fd = fds[0], .buf = b, .len = BEFORE };
	sem_init(&w.done, 0, 0);
	cr_assert_eq(pthread_create(&t, NULL, writer_main, &w), 0);
	cr_assert(wait_sem(&w.done), "the first writes never returned");
	pthread_join(t, NULL);
	cr_assert(w.ok, "a write was refused");
	cr_assert(wait_sem(&entered), "the replay thread never synced");
	fds_before = count_fds();

	/* The disk does not answer: the application spools on. */
	w = (struct writer){ .fd = fds[0], .buf = b, .from = BEFORE,
		.len = DURING };
	sem_init(&w.done, 0, 0);
	cr_assert_eq(pthread_create(&t, NULL, writer_main, &w), 0);
	cr_assert(wait_sem(&w.done), "an application write waited for the "
	    "held sync (or for a lock held across it)");
	pthread_join(t, NULL);
	cr_assert(w.ok, "a write was refused while the sync was held");
	cr_expect_eq(atomic_load(&syncs_on_app), 0, "%d of %d syncs ran on "
	    "the application's thread", atomic_load(&syncs_on_app),
	    atomic_load(&syncs));
	/* 64 segments were sealed meanwhile (4 MiB, 64 KiB each). */
	cr_expect_leq(count_fds(), fds_before + 4, "fds grew from %d to %d "
	    "while the sync was held", fds_before, count_fds());

	synced_before = atomic_load(&syncs);
	sem_post(&release);
	/* The sealed segments are owed a sync each (by name); the replay
	 * thread runs it an interval later, before the reader drains. */
	for (int i = 0; i < 60000 && atomic_load(&syncs) - synced_before <
	    (int)(DURING / (64 << 10)) / 2; i++)
		usleep(1000);	/* bounded poll of a condition */
	cr_expect_geq(atomic_load(&syncs) - synced_before,
	    (int)(DURING / (64 << 10)) / 2, "only %d syncs after the release",
	    atomic_load(&syncs) - synced_before);
	cr_assert(read_pattern(fds[1], 0, BEFORE + DURING),
	    "the reader did not get every byte in order");
	sysio_sync_hook(NULL);
	op_close(fds[0]);
	close(fds[1]);
	free(b);
}

/*
 * A fork while the sync thread is inside a job's fdatasync: the child must
 * not keep the job's fd (its copy of the parent's segment), as it keeps
 * none of the parent's queued jobs. The hook holds the first sync of an
 * `.open` segment's fd (the job's own duplicate); the child reports
 * whether that number is still open in it.
 */
static _Atomic int held_fd = -1;

static bool
is_open_segment(int fd)
{
	char link[64], path[4096];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((n = readlink(link, path, sizeof(path) - 1)) <= 0)
		return false;
	path[n] = '\0';
	return n > 5 && strcmp(path + n - 5, ".open") == 0;
}

static int
hold_job_fd(int fd, bool data)
{
	int none = -1;

	if (data && (pid_t)syscall(SYS_gettid) != app_tid &&
	    is_open_segment(fd) &&
	    atomic_compare_exchange_strong(&held_fd, &none, fd)) {
		sem_post(&entered);
		while (sem_wait(&release) == -1 && errno == EINTR)
			;
	}
	return sysio_sync_real(fd, data);
}

Test(sync, a_fork_child_keeps_no_fd_of_the_running_sync_job)
{
	unsigned char *b = pattern_bytes(BEFORE);
	int fds[2], status;
	pid_t pid;

	unit_env("TCPSPOOL_FSYNC=interval", "TCPSPOOL_FSYNC_INTERVAL=1ms",
	    "TCPSPOOL_FLUSH=1ms", "TCPSPOOL_SEGMENT_SIZE=64K",
	    "TCPSPOOL_LEVEL=0", NULL);
	sem_init(&entered, 0, 0);
	sem_init(&release, 0, 0);
	app_tid = (pid_t)syscall(SYS_gettid);
	sysio_sync_hook(hold_job_fd);
	unit_unix_pair(fds);
	for (size_t off = 0; off < BEFORE; off += CHUNK)
		cr_assert_eq(op_write(fds[0], b + off, CHUNK), CHUNK);
	cr_assert(wait_sem(&entered), "no sync of a job's segment fd began");

	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0)	/* still open here: the parent's job leaked into us */
		_exit(fcntl(atomic_load(&held_fd), F_GETFD) == -1 &&
		    errno == EBADF ? 0 : 1);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	sem_post(&release);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "the fork child kept fd %d, the running sync job's segment",
	    atomic_load(&held_fd));
	cr_assert(read_pattern(fds[1], 0, BEFORE),
	    "the reader did not get every byte in order");
	sysio_sync_hook(NULL);
	op_close(fds[0]);
	close(fds[1]);
	free(b);
}
