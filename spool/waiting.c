/*
 * waiting.c — streams waiting for their peer to come back (FORMAT.md §11).
 *
 * A stream whose connection broke with records left is "waiting" when the
 * interposer resumes by peer address: its status says state=waiting,
 * released, with an expiry, and an empty file
 *
 *     waiting/<key>/<created_ns, 20 digits>-<stream name>
 *
 * names it under its peer's address (key: "4-" and 8 hex digits for IPv4,
 * an IPv4-mapped IPv6 address included; "6-" and 32 for IPv6). The entry
 * is an index, made before the status and removed with the stream. Who
 * holds the stream dir's lock (flock, as every tcpspool command) owns the
 * stream: a process sending it to a new connection from that address, for
 * as long as it does (the kernel drops the lock with a process that dies,
 * and the stream is free again), or the sweep deleting it when it
 * expired. Names sort by creation, so the oldest waiting stream of an
 * address comes first, and a claim never passes one it cannot take.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <signal.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <pthread.h>
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

#define WAITING_DIR	"waiting"

int
spool_peer_key(const char *peer, char key[SPOOL_KEY_MAX])
{
	char host[INET6_ADDRSTRLEN + 1];
	struct in6_addr a6;
	struct in_addr a4;
	const char *end;
	size_t n;
	int i;

	if (peer[0] == '[') {
		if ((end = strchr(peer, ']')) == NULL ||
		    (n = (size_t)(end - peer - 1)) >= sizeof(host))
			return -EINVAL;
		memcpy(host, peer + 1, n);
		host[n] = '\0';
		if (inet_pton(AF_INET6, host, &a6) != 1)
			return -EINVAL;
		if (IN6_IS_ADDR_V4MAPPED(&a6)) {
			memcpy(&a4, &a6.s6_addr[12], 4);
			goto v4;
		}
		key[0] = '6';
		key[1] = '-';
		for (i = 0; i < 16; i++)
			snprintf(key + 2 + 2 * i, 3, "%02x", a6.s6_addr[i]);
		return 0;
	}
	if ((end = strrchr(peer, ':')) == NULL ||
	    (n = (size_t)(end - peer)) >= sizeof(host) ||
	    strncmp(peer, "unix:", 5) == 0)
		return -EAFNOSUPPORT;
	memcpy(host, peer, n);
	host[n] = '\0';
	if (inet_pton(AF_INET, host, &a4) != 1)
		return -EINVAL;
v4:
	snprintf(key, SPOOL_KEY_MAX, "4-%08" PRIx32, ntohl(a4.s_addr));
	return 0;
}

static void
entry_path(char *buf, size_t size, const char *key, int64_t created_ns,
    const char *name)
{
	snprintf(buf, size, WAITING_DIR "/%s/%020" PRId64 "-%s", key,
	    created_ns < 0 ? 0 : created_ns, name);
}

int
spool_waiting_add(struct spool_dir *d, const char *key, int64_t created_ns,
    const char *name, struct spool_err *err)
{
	char path[128];
	int fd;

	char entry[128];
	int tries = 0;

	snprintf(path, sizeof(path), WAITING_DIR "/%s", key);
	entry_path(entry, sizeof(entry), key, created_ns, name);
again:
	if ((mkdirat(d->fd, WAITING_DIR, 0700) == -1 && errno != EEXIST) ||
	    (mkdirat(d->fd, path, 0700) == -1 && errno != EEXIST)) {
		spool_seterr(err, "%s/%s: mkdir: %s", d->path, path,
		    strerror(errno));
		return -errno;
	}
	fd = sysio_openat(d->fd, entry, O_WRONLY | O_CREAT | O_EXCL |
	    O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0600);
	/* The address dir was removed with its last entry meanwhile. */
	if (fd == -1 && errno == ENOENT && tries++ < 3)
		goto again;
	if (fd == -1 && errno != EEXIST) {
		spool_seterr(err, "%s/%s: create: %s", d->path, entry,
		    strerror(errno));
		return -errno;
	}
	if (fd != -1)
		sysio_close(fd);
	return 0;
}

int
spool_waiting_take(struct spool_dir *d, const char *key, int64_t created_ns,
    const char *name)
{
	char path[128];

	int rc;

	entry_path(path, sizeof(path), key, created_ns, name);
	rc = unlinkat(d->fd, path, 0) == 0 ? 0 : -errno;
	/* An address with nothing left costs one failed open again. */
	snprintf(path, sizeof(path), WAITING_DIR "/%s", key);
	(void)unlinkat(d->fd, path, AT_REMOVEDIR);
	return rc;
}

/* An entry's name: its creation time and stream name, or false. */
static bool
entry_parse(const char *ent, int64_t *created_ns, char name[SPOOL_NAME_MAX])
{
	const char *dash;
	char digits[21];

	if (strlen(ent) != 20 + 1 + STREAM_NAME_LEN ||
	    (dash = ent + 20)[0] != '-' || !stream_name_valid(dash + 1))
		return false;
	memcpy(digits, ent, 20);
	digits[20] = '\0';
	if (strspn(digits, "0123456789") != 20)
		return false;
	*created_ns = strtonum(digits, 0, INT64_MAX, NULL);
	strlcpy(name, dash + 1, SPOOL_NAME_MAX);
	return true;
}

bool
spool_pid_alive(int32_t pid)
{
	return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}
#define pid_alive spool_pid_alive

void
spool_claimed_unlock(struct spool_claimed *c)
{
	if (c->lock_fd >= 0)
		sysio_close(c->lock_fd);
	c->lock_fd = -1;
}

/*
 * The claim's changes of a lock fd in v, each one step under fd_mu (if
 * not NULL): the fd made, locked and written in c->lock_fd; closed and
 * c->lock_fd -1; an entry moved. Whoever holds fd_mu sees in v every
 * lock fd the claim holds, once, and nothing else (spool.h).
 */
static int
lock_entry(struct spool_dir *d, struct spool_claimed *c, pthread_mutex_t *mu)
{
	int lfd;

	if (mu != NULL)
		pthread_mutex_lock(mu);
	/* Not waiting: -EWOULDBLOCK if another holds it (a process sending
	 * it, the sweep, a tcpspool command). */
	lfd = spool_stream_lock(d, c->name, 0, NULL);
	c->lock_fd = lfd >= 0 ? lfd : -1;
	if (mu != NULL)
		pthread_mutex_unlock(mu);
	return lfd;
}

static void
unlock_entry(struct spool_claimed *c, pthread_mutex_t *mu)
{
	if (mu != NULL)
		pthread_mutex_lock(mu);
	spool_claimed_unlock(c);
	if (mu != NULL)
		pthread_mutex_unlock(mu);
}

static void
move_entry(struct spool_claimed *to, struct spool_claimed *from,
    pthread_mutex_t *mu)
{
	if (to == from)
		return;
	if (mu != NULL)
		pthread_mutex_lock(mu);
	*to = *from;
	from->lock_fd = -1;
	if (mu != NULL)
		pthread_mutex_unlock(mu);
}

static int
claimed_cmp(const void *a, const void *b)
{
	const struct spool_claimed *x = a, *y = b;

	if (x->created_ns != y->created_ns)
		return x->created_ns < y->created_ns ? -1 : 1;
	return strcmp(x->name, y->name);
}

int
spool_waiting_claim(struct spool_dir *d, const char *key,
    struct spool_claimed *v, int max, pthread_mutex_t *fd_mu,
    struct spool_err *err)
{
	struct spool_claimed c;
	struct spool_status st;
	struct spool_err e;
	struct dirent *de;
	char path[128];
	struct timespec pause = { 0, 2000000 };
	int64_t now = now_real_ns();
	bool stop = false;
	int fd, lfd, rc, n = 0, i, got = 0, tries;
	DIR *dp;

	snprintf(path, sizeof(path), WAITING_DIR "/%s", key);
	fd = sysio_openat(d->fd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC, 0);
	if (fd == -1) {
		if (errno == ENOENT)
			return 0;	/* the common case: one system call */
		spool_seterr(err, "%s/%s: open: %s", d->path, path,
		    strerror(errno));
		return -errno;
	}
	if ((dp = fdopendir(fd)) == NULL) {
		sysio_close(fd);
		return -ENOMEM;
	}
	/* The max oldest entries, found first; claimed oldest first. None
	 * holds a lock fd yet. */
	c.lock_fd = -1;
	while ((de = readdir(dp)) != NULL) {
		if (!entry_parse(de->d_name, &c.created_ns, c.name))
			continue;
		if (n < max)
			v[n++] = c;
		else if (claimed_cmp(&c, &v[max - 1]) < 0)
			v[max - 1] = c;
		else
			continue;
		qsort(v, (size_t)n, sizeof(*v), claimed_cmp);
	}
	for (i = 0; i < n && !stop; i++) {
		entry_path(path, sizeof(path), key, v[i].created_ns,
		    v[i].name);
		memset(&st, 0, sizeof(st));
		if ((lfd = lock_entry(d, &v[i], fd_mu)) == -ENOENT) {
			(void)unlinkat(d->fd, path, 0);	/* stale */
			continue;
		}
		for (tries = 0; lfd == -EWOULDBLOCK && tries < 10; tries++) {
			/* A sweep or a command holds it for a moment; an
			 * expired one is the sweep's anyway. */
			if (spool_status_read(d, v[i].name, &st, &e) == 0 &&
			    st.released && st.expires_ns > 0 &&
			    st.expires_ns <= now)
				break;
			nanosleep(&pause, NULL);
			lfd = lock_entry(d, &v[i], fd_mu);
		}
		if (lfd < 0) {
			/* Expired (the sweep's), or held (sent to another
			 * connection now), or unreadable: then nothing newer
			 * passes it. */
			if (lfd == -EWOULDBLOCK && st.released &&
			    st.expires_ns > 0 && st.expires_ns <= now)
				continue;
			stop = true;
			continue;
		}
		if ((rc = spool_status_read(d, v[i].name, &st, &e)) < 0) {
			unlock_entry(&v[i], fd_mu);
			if (rc == -ENOENT)
				(void)unlinkat(d->fd, path, 0);
			else
				stop = true;
			continue;
		}
		if (st.released && (strcmp(st.state, "waiting") == 0 ||
		    strcmp(st.state, "resumed") == 0)) {
			if (st.expires_ns > 0 && st.expires_ns <= now) {
				unlock_entry(&v[i], fd_mu);	/* the sweep's */
				continue;
			}
			/* Waiting, or resumed by a process that died (its
			 * lock went with it): ours while we hold the lock. */
			v[i].status = st;
			move_entry(&v[got++], &v[i], fd_mu);
			continue;
		}
		unlock_entry(&v[i], fd_mu);
		/* Its writer is between the entry and the status that says
		 * waiting: for the next look, and nothing newer passes it.
		 * Else the entry is stale. */
		if (!st.released && pid_alive(st.pid))
			stop = true;
		else
			(void)unlinkat(d->fd, path, 0);
	}
	sysio_closedir(dp);
	/* An address with nothing left costs one failed open again. */
	snprintf(path, sizeof(path), WAITING_DIR "/%s", key);
	(void)unlinkat(d->fd, path, AT_REMOVEDIR);
	return got;
}
