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
 * goes too.
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

static int
sweep_one(void *arg, const char *name)
{
	struct sweep *w = arg;
	struct spool_err e = { "" };
	struct spool_status st;
	struct spool_expired x;
	int sfd;

	if (spool_status_read(w->d, name, &st, &e) < 0 || !st.released ||
	    st.expires_ns <= 0 || st.expires_ns > w->now_ns)
		return 0;	/* gone meanwhile, live, or not yet */
	x = (struct spool_expired){ .name = name, .status = &st,
		.expired_ns = st.expires_ns, .err = "" };
	if (w->dry_run)
		goto out;
	if ((sfd = open_stream_dir(w->d, name, &e)) < 0) {
		x.err = sfd == -ENOENT ? "" : e.msg;
		if (sfd == -ENOENT)
			return 0;	/* removed meanwhile by another */
		goto out;
	}
	if (flock(sfd, LOCK_EX | LOCK_NB) == -1) {
		x.err = errno == EWOULDBLOCK ? "in use by a tcpspool command" :
		    strerror(errno);
	} else if (spool_stream_remove(w->d, name, &e) < 0) {
		x.err = e.msg;
	} else {
		x.removed = true;
		w->removed++;
	}
	sysio_close(sfd);	/* and with it the lock */
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

static bool
stale_new_name(const char *n)
{
	char id[SPOOL_NAME_MAX];
	size_t len = strlen(n);

	if (len != 16 + 4 || strcmp(n + 16, ".new") != 0)
		return false;
	memcpy(id, n, 16);
	id[16] = '\0';
	return stream_name_valid(id);
}

/* Its files, then itself; 0 or a negative errno. */
static int
remove_new_dir(struct spool_dir *d, const char *name)
{
	struct dirent *de;
	DIR *dp;
	int fd, rc = 0;

	if ((fd = sysio_openat(d->fd, name, O_RDONLY | O_DIRECTORY |
	    O_NOFOLLOW | O_CLOEXEC, 0)) == -1)
		return -errno;
	if ((dp = fdopendir(fd)) == NULL) {
		rc = -errno;
		sysio_close(fd);
		return rc;
	}
	while ((de = readdir(dp)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0 &&
		    unlinkat(dirfd(dp), de->d_name, 0) == -1 && rc == 0)
			rc = -errno;
	sysio_closedir(dp);
	if (unlinkat(d->fd, name, AT_REMOVEDIR) == -1 && rc == 0)
		rc = -errno;
	return rc;
}

static void
sweep_new_dirs(struct sweep *w)
{
	static const struct spool_status none = { .reason =
		"left by a crash while the stream was made" };
	struct spool_expired x;
	struct dirent *de;
	struct stat st;
	DIR *dp;
	int fd, rc;

	if ((fd = sysio_openat(w->d->fd, ".", O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC, 0)) == -1)
		return;
	if ((dp = fdopendir(fd)) == NULL) {
		sysio_close(fd);
		return;
	}
	while ((de = readdir(dp)) != NULL) {
		if (!stale_new_name(de->d_name) ||
		    fstatat(w->d->fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) ||
		    !S_ISDIR(st.st_mode) ||
		    (int64_t)st.st_mtim.tv_sec * 1000000000LL +
		    st.st_mtim.tv_nsec > w->now_ns - STALE_NEW_NS)
			continue;
		x = (struct spool_expired){ .name = de->d_name, .status = &none,
			.expired_ns = (int64_t)st.st_mtim.tv_sec * 1000000000LL +
			STALE_NEW_NS, .err = "" };
		if (!w->dry_run) {
			if ((rc = remove_new_dir(w->d, de->d_name)) == 0) {
				x.removed = true;
				w->removed++;
			} else
				x.err = strerror(-rc);
		}
		if (w->fn != NULL)
			w->fn(w->arg, &x);
	}
	sysio_closedir(dp);
}

int
spool_dir_expire(struct spool_dir *d, int64_t now_ns, bool dry_run,
    void (*fn)(void *arg, const struct spool_expired *x), void *arg)
{
	struct sweep w = { .d = d, .now_ns = now_ns, .dry_run = dry_run,
		.fn = fn, .arg = arg };
	int rc;

	if ((rc = spool_dir_list(d, sweep_one, &w)) < 0)
		return rc;
	sweep_new_dirs(&w);
	if (w.removed > 0) {
		/* Others' bytes went: the quota's next check rescans. */
		pthread_mutex_lock(&d->mu);
		d->others_at_ns = 0;
		pthread_mutex_unlock(&d->mu);
	}
	return w.removed;
}
