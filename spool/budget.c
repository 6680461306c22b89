/*
 * budget.c — spool_budget_check, called before every spooled write, so it
 * must be cheap: atomics, plus at most one statvfs per 100 ms and one
 * rescan of the spool dir per second per spool dir (FORMAT.md §8).
 */
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"
#include "sysio.h"

#define FREE_EVERY_NS	(100 * 1000000LL)
#define OTHERS_EVERY_NS	(1000 * 1000000LL)

void
budget_note_written(struct spool_dir *d, uint64_t bytes)
{
	if (d->lim.min_free == 0)
		return;
	pthread_mutex_lock(&d->mu);
	d->written_since_free += bytes;
	pthread_mutex_unlock(&d->mu);
}

/* Bytes of every segment file of every stream in the spool dir. */
static uint64_t
dir_usage(struct spool_dir *d)
{
	struct seg_entry *v;
	struct dirent *de;
	struct stat st;
	uint64_t total = 0;
	char path[300];
	size_t n, i;
	DIR *dp;
	int fd;

	if ((fd = sysio_openat(d->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC,
	    0)) == -1)
		return 0;
	if ((dp = fdopendir(fd)) == NULL) {
		sysio_close(fd);
		return 0;
	}
	while ((de = readdir(dp)) != NULL) {
		if (!stream_name_valid(de->d_name) ||
		    list_segments_at(d->fd, de->d_name, &v, &n) < 0)
			continue;
		for (i = 0; i < n; i++) {
			char f[32];

			seg_name(f, sizeof(f), v[i].seq, v[i].sealed);
			snprintf(path, sizeof(path), "%s/%s", de->d_name, f);
			if (fstatat(d->fd, path, &st, AT_SYMLINK_NOFOLLOW) == 0)
				total += (uint64_t)st.st_size;
		}
		free(v);
	}
	sysio_closedir(dp);
	return total;
}

/* Others' bytes, rescanned at most once a second. Under d->mu. */
static uint64_t
others_bytes(struct spool_dir *d, int64_t now)
{
	uint64_t all, own;

	if (d->others_at_ns == 0 || now - d->others_at_ns >= OTHERS_EVERY_NS) {
		own = atomic_load(&d->stored_bytes);
		all = dir_usage(d);
		d->others_bytes = all > own ? all - own : 0;
		d->others_at_ns = now;
	}
	return d->others_bytes;
}

/* Free bytes, statvfs at most every 100 ms. Under d->mu. */
static uint64_t
free_bytes(struct spool_dir *d, int64_t now)
{
	struct statvfs sv;

	if (d->free_at_ns == 0 || now - d->free_at_ns >= FREE_EVERY_NS) {
		if (fstatvfs(d->fd, &sv) == 0) {
			d->free_bytes = (uint64_t)sv.f_bavail * sv.f_frsize;
			d->written_since_free = 0;
		}
		d->free_at_ns = now;
	}
	return d->free_bytes > d->written_since_free ?
	    d->free_bytes - d->written_since_free : 0;
}

/*
 * A stream's credit: bytes it may append without taking the dir's lock or
 * reading the clock, because the dir's limits were checked for them; they
 * count as used (d->reserved: against total_max, and against the free
 * space above min_free) until appended, so neither limit is passed. A check that the credit does not cover takes the
 * lock once and grants up to CREDIT_MAX bytes ahead (all credits of the
 * dir together under 1/32 of total_max, so that a quota is shared as
 * before within that), never more than the limits leave; a parked writer
 * gives its credit back (spool_stream_park). The check itself consumes nothing: the append does
 * (writer.c, pending_add: taken from the credit, the bytes stay counted
 * in reserved until the stream's counters are published).
 */
#define CREDIT_MAX	(64u << 10)

int
spool_budget_check(struct spool_stream *s, uint64_t len, const char **which)
{
	struct spool_dir *d = stream_dir(s);
	struct stream_live *l = stream_live(s);
	uint64_t *credit = stream_credit(s);
	uint64_t used, avail, room = UINT64_MAX, grant;
	int64_t now;
	int rc = 0;

	*which = NULL;
	if (budget_covered(d, l, *credit, len))
		return 0;
	if (d->lim.stream_max != 0 &&
	    live_pending_bytes(l) + len > d->lim.stream_max) {
		*which = "stream_max";
		return -EDQUOT;
	}
	if (d->lim.total_max == 0 && d->lim.min_free == 0)
		return 0;
	now = now_mono_ns();
	pthread_mutex_lock(&d->mu);
	if (d->lim.total_max != 0) {
		used = atomic_load(&d->stored_bytes) +
		    atomic_load(&d->staged_bytes) + others_bytes(d, now) +
		    atomic_load(&d->reserved) - *credit;
		if (used + len > d->lim.total_max) {
			*which = "total_max";
			rc = -EDQUOT;
		} else
			room = d->lim.total_max - used;
	}
	if (rc == 0 && d->lim.min_free != 0) {
		/* Others' credits are as good as written. */
		avail = free_bytes(d, now);
		used = atomic_load(&d->reserved) - *credit;
		avail = avail > used ? avail - used : 0;
		if (avail < len || avail - len < d->lim.min_free) {
			*which = "min_free";
			rc = -ENOSPC;
		} else if (avail - d->lim.min_free < room)
			room = avail - d->lim.min_free;
	}
	if (rc == 0) {
		grant = CREDIT_MAX;
		/* All credits together stay under 1/32 of total_max: a
		 * stream is refused at most that much early. */
		if (d->lim.total_max != 0 && atomic_load(&d->reserved) -
		    *credit + grant > d->lim.total_max / 32)
			grant = 0;
		if (grant < len)
			grant = len;
		if (grant > room)
			grant = room;	/* >= len: checked above */
		atomic_fetch_add(&d->reserved, grant - *credit);
		*credit = grant;
	}
	pthread_mutex_unlock(&d->mu);
	return rc;
}
