/*
 * dir.c — the spool dir: opening it safely, naming and listing streams
 * and segments. A spool dir is thread-safe: its counters are atomics and
 * its budget caches sit under its mutex.
 */
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "sysio.h"

/* mkdir -p with 0700 for the folders it creates. */
static int
mkdir_parents(const char *path)
{
	char buf[4096], *p;

	if (strlcpy(buf, path, sizeof(buf)) >= sizeof(buf))
		return -ENAMETOOLONG;
	for (p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) == -1 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) == -1 && errno != EEXIST)
		return -errno;
	return 0;
}

static int
dir_check(int fd, const char *path, bool any_owner, struct spool_err *err)
{
	struct stat st;

	if (fstat(fd, &st) == -1) {
		spool_seterr(err, "%s: fstat: %s", path, strerror(errno));
		return -errno;
	}
	if (st.st_uid != geteuid() && !any_owner) {
		spool_seterr(err, "%s: owned by uid %u, not by us (uid %u)",
		    path, (unsigned)st.st_uid, (unsigned)geteuid());
		return -EPERM;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		spool_seterr(err, "%s: mode %04o is group or world writable",
		    path, (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	return 0;
}

static int dir_open(const char *path, const struct spool_limits *lim,
    bool any_owner, struct spool_dir **out, struct spool_err *err);

int
spool_dir_open(const char *path, const struct spool_limits *lim,
    struct spool_dir **out, struct spool_err *err)
{
	int rc;

	*out = NULL;
	if ((rc = mkdir_parents(path)) < 0) {
		spool_seterr(err, "%s: mkdir: %s", path, strerror(-rc));
		return rc;
	}
	return dir_open(path, lim, false, out, err);
}

int
spool_dir_inspect(const char *path, bool any_owner, struct spool_dir **out,
    struct spool_err *err)
{
	*out = NULL;
	return dir_open(path, NULL, any_owner, out, err);
}

static int
dir_open(const char *path, const struct spool_limits *lim, bool any_owner,
    struct spool_dir **out, struct spool_err *err)
{
	struct spool_dir *d;
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
		spool_seterr(err, "%s: is a symlink, refused", path);
		return -EPERM;
	}
	fd = sysio_openat(AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC, 0);
	if (fd == -1) {
		rc = errno == ELOOP ? -EPERM : -errno;
		spool_seterr(err, "%s: open: %s", path, strerror(errno));
		return rc;
	}
	if ((rc = dir_check(fd, path, any_owner, err)) < 0) {
		sysio_close(fd);
		return rc;
	}
	if ((d = calloc(1, sizeof(*d))) == NULL ||
	    (d->path = strdup(path)) == NULL) {
		free(d);
		sysio_close(fd);
		spool_seterr(err, "%s: out of memory", path);
		return -ENOMEM;
	}
	d->fd = fd;
	if (lim != NULL)
		d->lim = *lim;
	pthread_mutex_init(&d->mu, NULL);
	LIST_INIT(&d->lives);
	*out = d;
	return 0;
}

void
spool_dir_close(struct spool_dir *d)
{
	if (d == NULL)
		return;
	sysio_close(d->fd);
	pthread_mutex_destroy(&d->mu);
	free(d->path);
	free(d);
}

const char *
spool_dir_path(const struct spool_dir *d)
{
	return d->path;
}

int
spool_dir_fd(const struct spool_dir *d)
{
	return d->fd;
}

static bool
hex_name(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
			return false;
	return s[len] == '\0' || s[len] == '.';
}

bool
stream_name_valid(const char *name)
{
	return strlen(name) == STREAM_NAME_LEN && hex_name(name, STREAM_NAME_LEN);
}

bool
seg_name_parse(const char *name, uint64_t *seq, bool *sealed)
{
	const char *sfx;

	if (strlen(name) < SEG_NAME_LEN || !hex_name(name, SEG_NAME_LEN))
		return false;
	sfx = name + SEG_NAME_LEN;
	if (strcmp(sfx, ".seg") == 0)
		*sealed = true;
	else if (strcmp(sfx, ".open") == 0)
		*sealed = false;
	else
		return false;
	*seq = strtoull(name, NULL, 16);
	return true;
}

void
seg_name(char *buf, size_t len, uint64_t seq, bool sealed)
{
	snprintf(buf, len, "%016" PRIx64 "%s", seq, sealed ? ".seg" : ".open");
}

static int
seg_cmp(const void *a, const void *b)
{
	const struct seg_entry *x = a, *y = b;

	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return (int)x->sealed - (int)y->sealed;
}

/*
 * The directory read with getdents64 on sfd itself (rewound first): no
 * second open, fdopendir or close per listing, a few system calls fewer
 * for each of the thousands of streams tcpspool ls lists. sfd is its
 * caller's alone (its offset moves).
 */
struct dirent64_raw {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

int
list_segments(int sfd, struct seg_entry **out, size_t *n)
{
	struct seg_entry *v = NULL, *nv;
	size_t cnt = 0, cap = 0;
	union {
		char b[8192];
		uint64_t align;
	} buf;
	long got, pos;

	*out = NULL;
	*n = 0;
	if (lseek(sfd, 0, SEEK_SET) == -1)
		return -errno;
	while ((got = syscall(SYS_getdents64, sfd, buf.b, sizeof(buf.b))) > 0) {
		for (pos = 0; pos < got;) {
			struct dirent64_raw *de = (void *)(buf.b + pos);
			struct seg_entry e;

			pos += de->d_reclen;
			if (!seg_name_parse(de->d_name, &e.seq, &e.sealed))
				continue;
			if (cnt == cap) {
				cap = cap ? cap * 2 : 16;
				if ((nv = reallocarray(v, cap,
				    sizeof(*v))) == NULL) {
					free(v);
					return -ENOMEM;
				}
				v = nv;
			}
			v[cnt++] = e;
		}
	}
	if (got < 0) {
		int e = errno;

		free(v);
		return -e;
	}
	if (cnt > 0)
		qsort(v, cnt, sizeof(*v), seg_cmp);
	*out = v;
	*n = cnt;
	return 0;
}

int
open_stream_dir(struct spool_dir *d, const char *name, struct spool_err *err)
{
	int fd;

	if (!stream_name_valid(name)) {
		spool_seterr(err, "%s: not a stream name", name);
		return -EINVAL;
	}
	fd = sysio_openat(d->fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC, 0);
	if (fd == -1) {
		spool_seterr(err, "%s/%s: open: %s", d->path, name,
		    strerror(errno));
		return -errno;
	}
	return fd;
}

int
spool_stream_lock(struct spool_dir *d, const char *name, int wait_ms,
    struct spool_err *err)
{
	struct timespec pause = { 0, 20000000 };
	int fd, rc, tries;

	if ((fd = open_stream_dir(d, name, err)) < 0)
		return fd;
	for (tries = 0;; tries++) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return fd;
		if (errno != EWOULDBLOCK || tries >= wait_ms / 20)
			break;
		nanosleep(&pause, NULL);
	}
	rc = errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
	if (rc == -EWOULDBLOCK)
		spool_seterr(err, "%s: in use by another tcpspool command",
		    name);
	else
		spool_seterr(err, "%s/%s: flock: %s", d->path, name,
		    strerror(-rc));
	sysio_close(fd);
	return rc;
}

int
open_regular(int dirfd, const char *name, int flags, mode_t mode)
{
	struct stat st;
	int fd, e;

	fd = sysio_openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC |
	    O_NONBLOCK, mode);
	if (fd == -1)
		return -errno;
	if (fstat(fd, &st) == -1)
		e = errno;
	else if (!S_ISREG(st.st_mode))
		e = SPOOL_ENOTREG;
	else
		return fd;
	sysio_close(fd);
	return -e;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The stream names of d, sorted; the caller frees each and the vector. */
static int
list_streams(struct spool_dir *d, char ***out, size_t *n)
{
	char **v = NULL, **nv;
	size_t cnt = 0, cap = 0;
	struct dirent *de;
	DIR *dp;
	int fd;

	*out = NULL;
	*n = 0;
	if ((fd = sysio_openat(d->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC,
	    0)) == -1)
		return -errno;
	if ((dp = fdopendir(fd)) == NULL) {
		sysio_close(fd);
		return -errno;
	}
	while ((de = readdir(dp)) != NULL) {
		if (!stream_name_valid(de->d_name))
			continue;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			if ((nv = reallocarray(v, cap, sizeof(*v))) == NULL)
				goto nomem;
			v = nv;
		}
		if ((v[cnt] = strdup(de->d_name)) == NULL)
			goto nomem;
		cnt++;
	}
	sysio_closedir(dp);
	if (cnt > 0)
		qsort(v, cnt, sizeof(*v), name_cmp);
	*out = v;
	*n = cnt;
	return 0;
nomem:
	while (cnt > 0)
		free(v[--cnt]);
	free(v);
	sysio_closedir(dp);
	return -ENOMEM;
}

static void
free_names(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int
spool_dir_list(struct spool_dir *d, int (*fn)(void *, const char *),
    void *arg)
{
	char **v;
	size_t n, i;
	int rc;

	if ((rc = list_streams(d, &v, &n)) < 0)
		return rc;
	for (i = 0; i < n && rc == 0; i++)
		rc = fn(arg, v[i]);
	free_names(v, n);
	return rc;
}

int
spool_resolve(struct spool_dir *d, const char *given, char name[SPOOL_NAME_MAX],
    struct spool_err *err)
{
	size_t n, i, len = strlen(given), hits = 0;
	char **v;
	int rc;

	if ((rc = list_streams(d, &v, &n)) < 0) {
		spool_seterr(err, "%s: list: %s", d->path, strerror(-rc));
		return rc;
	}
	for (i = 0; i < n; i++) {
		if (len == 0 || strncmp(v[i], given, len) != 0)
			continue;
		if (hits++ == 0)
			strlcpy(name, v[i], SPOOL_NAME_MAX);
	}
	free_names(v, n);
	if (hits == 1)
		return 0;
	if (hits == 0) {
		spool_seterr(err, "%s: no stream named %s", d->path, given);
		return -ENOENT;
	}
	spool_seterr(err, "%s: %s is ambiguous (%zu streams)", d->path, given,
	    hits);
	return -EEXIST;
}

/*
 * Empties the dir `name` of d (a stream's, or a `.new`/`.del` one; its
 * entries are files, unlinked without being followed) and removes it.
 * An entry or the dir gone meanwhile (another remover) is not an error.
 */
int
remove_dir_entry(struct spool_dir *d, const char *name, struct spool_err *err)
{
	struct dirent *de;
	DIR *dp;
	int sfd, rc = 0;

	sfd = sysio_openat(d->fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC, 0);
	if (sfd == -1) {
		rc = -errno;
		spool_seterr(err, "%s/%s: open: %s", d->path, name,
		    strerror(-rc));
		return rc;
	}
	if ((dp = fdopendir(sfd)) == NULL) {
		rc = -errno;
		sysio_close(sfd);
		spool_seterr(err, "%s/%s: %s", d->path, name, strerror(-rc));
		return rc;
	}
	while ((de = readdir(dp)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd(dp), de->d_name, 0) == -1 &&
		    errno != ENOENT && rc == 0) {
			rc = -errno;
			spool_seterr(err, "%s/%s/%s: unlink: %s", d->path, name,
			    de->d_name, strerror(errno));
		}
	}
	sysio_closedir(dp);
	if (unlinkat(d->fd, name, AT_REMOVEDIR) == -1 && errno != ENOENT &&
	    rc == 0) {
		rc = -errno;
		spool_seterr(err, "%s/%s: rmdir: %s", d->path, name,
		    strerror(errno));
	}
	return rc;
}

/*
 * The stream goes out of every reader's sight first, renamed to
 * `<name>.del` (FORMAT.md §1), then its files: a process that ends in the
 * middle (the library's sweep runs in hosts that exit at any moment)
 * leaves a `.del` dir, which the next sweep deletes, never a stream with
 * part of its files that ls would list, count or replay. Where the file
 * system has no RENAME_NOREPLACE, in place.
 */
int
spool_stream_remove(struct spool_dir *d, const char *name,
    struct spool_err *err)
{
	char del[SPOOL_NAME_MAX + 8];
	long r;

	if (!stream_name_valid(name)) {
		spool_seterr(err, "%s: not a stream name", name);
		return -EINVAL;
	}
	snprintf(del, sizeof(del), "%s.del", name);
	r = syscall(SYS_renameat2, d->fd, name, d->fd, del, RENAME_NOREPLACE);
	if (r == -1 && errno == EEXIST) {
		/* A crash left this name's .del: it goes first. */
		(void)remove_dir_entry(d, del, err);
		r = syscall(SYS_renameat2, d->fd, name, d->fd, del,
		    RENAME_NOREPLACE);
	}
	if (r == 0)
		return remove_dir_entry(d, del, err);
	if (errno == ENOENT || errno == ENOTDIR) {
		spool_seterr(err, "%s/%s: %s", d->path, name, strerror(errno));
		return -errno;
	}
	return remove_dir_entry(d, name, err);	/* EINVAL, ENOSYS, EPERM */
}

void
spool_dir_counts(struct spool_dir *d, struct spool_counts *c)
{
	struct stream_live *l;

	memset(c, 0, sizeof(*c));
	pthread_mutex_lock(&d->mu);
	LIST_FOREACH(l, &d->lives, link) {
		c->records += atomic_load(&l->records);
		c->raw_bytes += atomic_load(&l->raw_bytes);
		c->pending_records += live_pending_records(l);
		c->pending_bytes += live_pending_bytes(l);
	}
	pthread_mutex_unlock(&d->mu);
	c->stored_bytes = atomic_load(&d->stored_bytes);
	c->segments = atomic_load(&d->segments);
}

int
list_segments_at(int dfd, const char *name, struct seg_entry **out, size_t *n)
{
	int sfd, rc;

	sfd = sysio_openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC, 0);
	if (sfd == -1)
		return -errno;
	rc = list_segments(sfd, out, n);
	sysio_close(sfd);
	return rc;
}
