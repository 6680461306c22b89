/*
 * test_durable.c — a new stream's name is made durable: the spool dir is
 * fsynced after the stream dir was renamed from `<id>.new` to `<id>`
 * (after a power loss the rename could otherwise be lost, and the sweep
 * deletes a `.new` dir an hour old with the records in it). The
 * observable is spool/'s sync seam (sysio_sync_hook): each fsync is
 * noted with whether its fd is the spool dir and whether a `.new` dir was
 * still there at that moment.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <stdatomic.h>

#include "helpers.h"
#include "sysio.h"

static struct tdir T;
static ino_t spool_ino;
static atomic_int parent_syncs, parent_syncs_early;

static bool
new_dir_there(void)
{
	struct dirent *e;
	DIR *d = opendir(T.spool);
	bool found = false;
	size_t n;

	cr_assert_not_null(d);
	while ((e = readdir(d)) != NULL)
		if ((n = strlen(e->d_name)) > 4 &&
		    strcmp(e->d_name + n - 4, ".new") == 0)
			found = true;
	closedir(d);
	return found;
}

static int
hook(int fd, bool data)
{
	struct stat st;

	if (!data && fstat(fd, &st) == 0 && st.st_ino == spool_ino) {
		atomic_fetch_add(&parent_syncs, 1);
		if (new_dir_there())
			atomic_fetch_add(&parent_syncs_early, 1);
	}
	return sysio_sync_real(fd, data);
}

static struct spool_dir *
setup(void)
{
	struct spool_dir *d;
	struct stat st;

	tdir_make(&T);
	d = open_dir(&T, NULL);
	cr_assert_eq(stat(T.spool, &st), 0);
	spool_ino = st.st_ino;
	atomic_store(&parent_syncs, 0);
	atomic_store(&parent_syncs_early, 0);
	sysio_sync_hook(hook);
	return d;
}

static void
teardown(struct spool_dir *d)
{
	sysio_sync_hook(NULL);
	spool_dir_close(d);
	tdir_rm(&T);
}

static struct spool_options
opts(enum spool_fsync how, bool defer)
{
	struct spool_options o;

	spool_options_default(&o);
	o.fsync = how;
	o.defer_sync = defer;
	return o;
}

Test(durable, fsync_always_syncs_the_spool_dir_after_the_rename)
{
	struct spool_dir *d = setup();
	struct spool_options o = opts(SPOOL_FSYNC_ALWAYS, false);
	struct spool_err e = { "" };
	struct spool_stream *s = new_stream(d, &o);

	append1(s, "one record", 10, 1);
	cr_assert_eq(atomic_load(&parent_syncs), 1, "the spool dir was "
	    "synced %d times by the first record's sync",
	    atomic_load(&parent_syncs));
	cr_assert_eq(atomic_load(&parent_syncs_early), 0, "synced before "
	    "the rename");
	append1(s, "two record", 10, 2);
	cr_assert_eq(atomic_load(&parent_syncs), 1, "synced again");
	cr_assert_eq(spool_stream_close(s, SPOOL_CLOSE_REMOVE, NULL, &e), 0,
	    "%s", e.msg);
	teardown(d);
}

Test(durable, deferred_interval_owes_it_to_the_owners_job)
{
	struct spool_dir *d = setup();
	struct spool_options o = opts(SPOOL_FSYNC_INTERVAL, true);
	struct spool_err e = { "" };
	struct spool_sync_job j;
	struct spool_stream *s = new_stream(d, &o);

	cr_assert_eq(atomic_load(&parent_syncs), 0, "the creating thread "
	    "waited for the disk");
	cr_assert(spool_stream_sync_owed(s), "nothing owed after create");
	cr_assert(spool_stream_sync_take(s, &j));
	cr_assert(j.parent);
	spool_stream_sync_done(s, &j, spool_sync_run(&j));
	cr_assert_eq(atomic_load(&parent_syncs), 1);
	cr_assert_eq(atomic_load(&parent_syncs_early), 0);
	cr_assert(!spool_stream_sync_owed(s), "still owed after its job");
	cr_assert_eq(spool_stream_close(s, SPOOL_CLOSE_REMOVE, NULL, &e), 0,
	    "%s", e.msg);
	teardown(d);
}

Test(durable, interval_kept_stream_syncs_it_at_close)
{
	struct spool_dir *d = setup();
	struct spool_options o = opts(SPOOL_FSYNC_INTERVAL, false);
	struct spool_err e = { "" };
	struct spool_stream *s = new_stream(d, &o);

	cr_assert_eq(atomic_load(&parent_syncs), 0);
	cr_assert_eq(spool_stream_close(s, SPOOL_CLOSE_KEEP, "exit", &e), 0,
	    "%s", e.msg);
	cr_assert_eq(atomic_load(&parent_syncs), 1, "a kept stream's name "
	    "was not synced at its close");
	teardown(d);
}

Test(durable, fsync_never_never_syncs_the_spool_dir)
{
	struct spool_dir *d = setup();
	struct spool_options o = opts(SPOOL_FSYNC_NEVER, false);
	struct spool_err e = { "" };
	struct spool_stream *s = new_stream(d, &o);

	append1(s, "one record", 10, 1);
	cr_assert_eq(spool_stream_flush(s, &e), 0, "%s", e.msg);
	cr_assert_eq(spool_stream_close(s, SPOOL_CLOSE_KEEP, "exit", &e), 0,
	    "%s", e.msg);
	cr_assert_eq(atomic_load(&parent_syncs), 0);
	teardown(d);
}

/* The spool dir's fsync fails (EIO): the close of a kept stream says so,
 * it is never lost silently. */
static int
failing_hook(int fd, bool data)
{
	struct stat st;

	if (!data && fstat(fd, &st) == 0 && st.st_ino == spool_ino) {
		atomic_fetch_add(&parent_syncs, 1);
		errno = EIO;
		return -1;
	}
	return sysio_sync_real(fd, data);
}

Test(durable, a_failed_spool_dir_sync_at_close_is_reported)
{
	struct spool_dir *d = setup();
	struct spool_options o = opts(SPOOL_FSYNC_INTERVAL, false);
	struct spool_err e = { "" };
	struct spool_stream *s = new_stream(d, &o);

	sysio_sync_hook(failing_hook);
	append1(s, "one record", 10, 1);
	cr_assert_lt(spool_stream_close(s, SPOOL_CLOSE_KEEP, "exit", &e), 0,
	    "the close reported no failure");
	cr_assert(strstr(e.msg, "fsync") != NULL, "%s", e.msg);
	cr_assert_geq(atomic_load(&parent_syncs), 1);
	teardown(d);
}
