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
 */
#include <sys/file.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>

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

int
spool_dir_expire(struct spool_dir *d, int64_t now_ns, bool dry_run,
    void (*fn)(void *arg, const struct spool_expired *x), void *arg)
{
	struct sweep w = { .d = d, .now_ns = now_ns, .dry_run = dry_run,
		.fn = fn, .arg = arg };
	int rc;

	if ((rc = spool_dir_list(d, sweep_one, &w)) < 0)
		return rc;
	if (w.removed > 0) {
		/* Others' bytes went: the quota's next check rescans. */
		pthread_mutex_lock(&d->mu);
		d->others_at_ns = 0;
		pthread_mutex_unlock(&d->mu);
	}
	return w.removed;
}
