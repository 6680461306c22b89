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
 * is the stream's token: whoever unlinks it (unlinkat, atomic) owns the
 * stream: a new connection from that address adopting it, or the sweep
 * deleting it when it expired. Nobody else touches a waiting stream. Names
 * sort by creation, so the oldest waiting stream of an address comes first.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <signal.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

	snprintf(path, sizeof(path), WAITING_DIR "/%s", key);
	if ((mkdirat(d->fd, WAITING_DIR, 0700) == -1 && errno != EEXIST) ||
	    (mkdirat(d->fd, path, 0700) == -1 && errno != EEXIST)) {
		spool_seterr(err, "%s/%s: mkdir: %s", d->path, path,
		    strerror(errno));
		return -errno;
	}
	entry_path(path, sizeof(path), key, created_ns, name);
	fd = sysio_openat(d->fd, path, O_WRONLY | O_CREAT | O_EXCL |
	    O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0600);
	if (fd == -1 && errno != EEXIST) {
		spool_seterr(err, "%s/%s: create: %s", d->path, path,
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

	entry_path(path, sizeof(path), key, created_ns, name);
	return unlinkat(d->fd, path, 0) == 0 ? 0 : -errno;
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

int
spool_waiting_restore(struct spool_dir *d, const char *name,
    const struct spool_status *st)
{
	struct spool_stream_info info;
	struct spool_status w = *st;
	struct spool_err e;
	char key[SPOOL_KEY_MAX];
	int rc;

	if ((rc = spool_stream_info_flags(d, name, SPOOL_INFO_QUICK, &info,
	    &e)) < 0)
		return rc;
	if (!info.id_known || (rc = spool_peer_key(info.id.peer, key)) < 0)
		return -EINVAL;
	strlcpy(w.state, "waiting", sizeof(w.state));
	w.holder = 0;
	w.updated_ns = 0;
	if ((rc = spool_waiting_add(d, key, info.id.created_ns, name,
	    &e)) < 0)
		return rc;
	return spool_status_release(d, name, &w, &e);
}

/* The stream dir's lock is free (no tcpspool command holds it). */
static bool
unlocked(struct spool_dir *d, const char *name)
{
	struct spool_err e;
	bool free_;
	int sfd;

	if ((sfd = open_stream_dir(d, name, &e)) < 0)
		return false;
	free_ = flock(sfd, LOCK_EX | LOCK_NB) == 0;
	sysio_close(sfd);	/* and with it the lock */
	return free_;
}

enum token_verdict { TOKEN_TAKE, TOKEN_RESTORE, TOKEN_LEAVE, TOKEN_DROP };

/*
 * What a claimed token's stream is. A token is made before the status
 * that says "waiting" (a writer that dies between the two leaves a token
 * that is dropped, never a waiting stream nobody can claim): a stream
 * whose writer, or whose resumed stream's holder, runs may be between
 * the two, and its token is put back. A resumed stream whose holder died
 * is taken over (from its record boundary again). Anything else is not
 * waiting: the token is stale.
 */
static enum token_verdict
token_verdict(const struct spool_status *st, int64_t now)
{
	bool take = (st->released && strcmp(st->state, "waiting") == 0) ||
	    (st->released && strcmp(st->state, "resumed") == 0 &&
	    !pid_alive(st->holder));

	/* Expired: the sweep's (a client late by its TTL gets nothing). */
	if (take && st->expires_ns > 0 && st->expires_ns <= now)
		return TOKEN_LEAVE;
	if (take)
		return TOKEN_TAKE;
	if (st->released && strcmp(st->state, "resumed") == 0)
		return TOKEN_RESTORE;
	if (!st->released && pid_alive(st->pid))
		return TOKEN_RESTORE;
	return TOKEN_DROP;
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
    struct spool_claimed *v, int max, struct spool_err *err)
{
	struct spool_claimed c;
	struct spool_status st;
	struct spool_err e;
	struct dirent *de;
	char path[128];
	int64_t now = now_real_ns();
	enum token_verdict verdict;
	bool stop = false;
	int fd, n = 0, i, got = 0;
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
	/* The max oldest entries, found first; claimed oldest first. */
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
		if (unlinkat(d->fd, path, 0) == -1)
			continue;	/* another took it first */
		/* Ours now: the stream's status says what it is. */
		if (spool_status_read(d, v[i].name, &st, &e) < 0)
			continue;	/* gone: a stale token goes too */
		verdict = token_verdict(&st, now);
		/* A tcpspool command (replay, verify) holds it: not now. */
		if (verdict == TOKEN_TAKE && !unlocked(d, v[i].name))
			verdict = TOKEN_RESTORE;
		switch (verdict) {
		case TOKEN_TAKE:
			v[i].status = st;
			v[got++] = v[i];
			break;
		case TOKEN_RESTORE:
			/* Not to be passed by a newer one: the rest wait
			 * too, for the next connection. */
			stop = true;
			/* fall through */
		case TOKEN_LEAVE:
			(void)spool_waiting_add(d, key, v[i].created_ns,
			    v[i].name, &e);
			break;
		case TOKEN_DROP:
			break;
		}
	}
	sysio_closedir(dp);
	/* An address with nothing left costs one failed open again. */
	snprintf(path, sizeof(path), WAITING_DIR "/%s", key);
	(void)unlinkat(d->fd, path, AT_REMOVEDIR);
	return got;
}
