/*
 * expire.c — the end of an orphan that can never be delivered: a stream
 * released with an expiry (FORMAT.md §7, expires_ns) is deleted by
 * whoever next looks after the expiry, the interposer's sweep or
 * `tcpspool rm --expired`. Until then it is an orphan like any other:
 * listed, counted against the dir's quota, replayable.
 *
 * A stream is deleted only if its status says released=1 (its writer
 * never touches it again, FORMAT.md §7) and only under the lock every
 * tcpspool command takes on a stream dir (flock, exclusive, without
 * waiting): a replay or verify in progress keeps it until the next look.
 * A `<stream>.new` dir an hour old (a crash while a stream was made)
 * goes too, and a `<stream>.del` at once (a crash while one was removed:
 * spool_stream_remove renames a stream out of sight first). One process
 * sweeps a dir at a time (sweep.lock).
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "sysio.h"

struct sweep {
	struct spool_dir *d;
	int64_t now_ns;
	bool dry_run;
	void (*fn)(void *arg, const struct spool_expired *x);
	void *arg;
	int removed;
};

/* A waiting or resumed stream (waiting.c) leaves the registry first. */
static void
waiting_untoken(struct spool_dir *d, const char *name,
    const struct spool_status *st, const struct spool_stream_info *info)
{
	char key[SPOOL_KEY_MAX];

	if ((strcmp(st->state, "waiting") == 0 ||
	    strcmp(st->state, "resumed") == 0) && info->id_known &&
	    spool_peer_key(info->id.peer, key) == 0)
		(void)spool_waiting_take(d, key, info->id.created_ns, name);
}

static int
sweep_one(void *arg, const char *name)
{
	struct sweep *w = arg;
	struct spool_err e = { "" };
	struct spool_stream_info info;
	struct spool_status st, st2;
	struct spool_expired x;
	int sfd, rc;

	memset(&info, 0, sizeof(info));
	if (spool_status_read(w->d, name, &st, &e) < 0 || !st.released ||
	    st.expires_ns <= 0 || st.expires_ns > w->now_ns)
		return 0;	/* gone meanwhile, live, or not yet */
	/* released is believed only from the writer's own status: the pid
	 * its segment headers name (FORMAT.md §7). */
	if (spool_stream_info_flags(w->d, name, SPOOL_INFO_QUICK, &info,
	    &e) >= 0 && info.id_known && info.id.pid != st.pid)
		return 0;
	x = (struct spool_expired){ .name = name, .status = &st,
		.expired_ns = st.expires_ns, .err = "" };
	if (w->dry_run)
		goto out;
	if ((sfd = spool_stream_lock(w->d, name, 0, &e)) < 0) {
		if (sfd == -ENOENT)
			return 0;	/* removed meanwhile by another */
		if (sfd == -EWOULDBLOCK)
			x.busy = true;	/* a replay, a verify: next time */
		else
			x.err = e.msg;
		goto out;
	}
	if (spool_status_read(w->d, name, &st2, &e) < 0 ||
	    !st2.released || st2.expires_ns <= 0 ||
	    st2.expires_ns > w->now_ns) {
		/* Changed before we held it (a resumed stream given back
		 * with a new expiry): not expired after all. */
	} else if (waiting_untoken(w->d, name, &st2, &info),
	    (rc = spool_stream_remove(w->d, name, &e)) < 0) {
		if (rc != -ENOENT)
			x.err = e.msg;
	} else {
		x.removed = true;
		w->removed++;
	}
	sysio_close(sfd);	/* and with it the lock */
	if (!x.removed && !x.busy && x.err[0] == '\0')
		return 0;	/* removed by another meanwhile */
out:
	if (w->fn != NULL)
		w->fn(w->arg, &x);
	return 0;
}

/*
 * A `<stream>.new` dir (FORMAT.md §1) is a stream being made: its writer
 * renames it within milliseconds, so one an hour old was left by a crash
 * during creation. It holds no record; it is deleted with the expired.
 */
#define STALE_NEW_NS	(3600LL * 1000000000LL)

/* `<16 hex>.new` (true, *del false) or `<16 hex>.del` (*del true). */
static bool
leftover_name(const char *n, bool *del)
{
	char id[SPOOL_NAME_MAX];
	size_t len = strlen(n);

	if (len != 16 + 4 || (strcmp(n + 16, ".new") != 0 &&
	    strcmp(n + 16, ".del") != 0))
		return false;
	*del = n[17] == 'd';
	memcpy(id, n, 16);
	id[16] = '\0';
	return stream_name_valid(id);
}

static void
sweep_new_dirs(struct sweep *w)
{
	static const struct spool_status made = { .reason =
		"left by a crash while the stream was made" };
	static const struct spool_status removed = { .reason =
		"left by a crash while the stream was removed" };
	struct spool_err e = { "" };
	struct spool_expired x;
	struct dirent *de;
	struct stat st;
	bool del;
	DIR *dp;
	int fd;

	if ((fd = sysio_openat(w->d->fd, ".", O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC, 0)) == -1)
		return;
	if ((dp = fdopendir(fd)) == NULL) {
		sysio_close(fd);
		return;
	}
	while ((de = readdir(dp)) != NULL) {
		/* A .del is being removed or was left half removed: it
		 * goes at once; a .new only once an hour old. */
		if (!leftover_name(de->d_name, &del) ||
		    fstatat(w->d->fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) ||
		    !S_ISDIR(st.st_mode) || (!del &&
		    (int64_t)st.st_mtim.tv_sec * 1000000000LL +
		    st.st_mtim.tv_nsec > w->now_ns - STALE_NEW_NS))
			continue;
		x = (struct spool_expired){ .name = de->d_name,
			.status = del ? &removed : &made, .err = "",
			.expired_ns = del ? w->now_ns :
			(int64_t)st.st_mtim.tv_sec * 1000000000LL +
			STALE_NEW_NS };
		if (!w->dry_run) {
			if (remove_dir_entry(w->d, de->d_name, &e) == 0) {
				x.removed = true;
				w->removed++;
			} else
				x.err = e.msg;
		}
		if (w->fn != NULL)
			w->fn(w->arg, &x);
	}
	sysio_closedir(dp);
}

/*
 * One sweeper at a time per spool dir: `sweep.lock` (FORMAT.md §1), an
 * exclusive flock, waited for or not. -1: another holds it (not waiting)
 * or it cannot be made; the sweep then goes ahead only when waiting was
 * asked (a tcpspool command), else it is left to the other.
 */
static int
lock_sweep(struct spool_dir *d, bool wait)
{
	int fd = sysio_openat(d->fd, "sweep.lock", O_RDWR | O_CREAT |
	    O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0600);

	if (fd == -1)
		return -1;
	if (flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) == -1) {
		sysio_close(fd);
		return -1;
	}
	return fd;
}

int
spool_dir_expire(struct spool_dir *d, int64_t now_ns, unsigned flags,
    void (*fn)(void *arg, const struct spool_expired *x), void *arg)
{
	bool skip_if_busy = flags & SPOOL_EXPIRE_SKIP_IF_BUSY;
	struct sweep w = { .d = d, .now_ns = now_ns, .fn = fn, .arg = arg,
		.dry_run = flags & SPOOL_EXPIRE_DRY_RUN };
	int lock, rc;

	if ((lock = lock_sweep(d, !skip_if_busy)) == -1 && skip_if_busy)
		return 0;	/* another process sweeps now */
	if ((rc = spool_dir_list(d, sweep_one, &w)) >= 0)
		sweep_new_dirs(&w);
	if (lock != -1)
		sysio_close(lock);
	if (rc < 0)
		return rc;
	if (w.removed > 0) {
		/* Others' bytes went: the quota's next check rescans. */
		pthread_mutex_lock(&d->mu);
		d->others_at_ns = 0;
		pthread_mutex_unlock(&d->mu);
	}
	return w.removed;
}
