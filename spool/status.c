/*
 * status.c — the writer's live figures (FORMAT.md §7), a small text file
 * replaced atomically: written to status.tmp, then renamed onto status.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "sysio.h"

/* Replaces what would break the line format. */
static void
clean(char *dst, const char *src, size_t size)
{
	char *p;

	strlcpy(dst, src, size);
	for (p = dst; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

static int
status_write_at(struct spool_dir *d, const char *name,
    const struct spool_status *st, bool released, struct spool_err *err)
{
	char buf[1024], tmp[64], dst[64], state[16], reason[64];
	int fd, len, rc = 0;

	clean(state, st->state, sizeof(state));
	clean(reason, st->reason, sizeof(reason));
	len = snprintf(buf, sizeof(buf),
	    "version=1\npid=%" PRId32 "\nfd=%" PRId32 "\nstate=%s\n"
	    "reason=%s\npending_bytes=%" PRIu64 "\npending_records=%" PRIu64
	    "\ndrops=%" PRIu64 "\nerrors=%" PRIu64 "\nupdated_ns=%" PRId64
	    "\nreleased=%d\nidle=%d\nexpires_ns=%" PRId64 "\nholder=%" PRId32
	    "\n",
	    st->pid, st->fd, state, reason, st->pending_bytes,
	    st->pending_records, st->drops, st->errors,
	    st->updated_ns ? st->updated_ns : now_real_ns(), released ? 1 : 0,
	    st->idle && !released ? 1 : 0, released ? st->expires_ns : 0,
	    released ? st->holder : 0);
	snprintf(tmp, sizeof(tmp), "%s/status.tmp", name);
	snprintf(dst, sizeof(dst), "%s/status", name);
	unlinkat(d->fd, tmp, 0);
	fd = open_regular(d->fd, tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0) {
		spool_seterr(err, "%s/%s: create: %s", d->path, tmp,
		    spool_strerror(-fd));
		return fd;
	}
	if (sysio_write(fd, buf, (size_t)len) != len)
		rc = errno ? -errno : -EIO;
	if (sysio_close(fd) == -1 && rc == 0)
		rc = -errno;
	if (rc == 0 && renameat(d->fd, tmp, d->fd, dst) == -1)
		rc = -errno;
	if (rc < 0) {
		spool_seterr(err, "%s/%s: write: %s", d->path, tmp,
		    strerror(-rc));
		unlinkat(d->fd, tmp, 0);
	}
	return rc;
}

int
status_write(struct spool_stream *s, const struct spool_status *st,
    bool released, struct spool_err *err)
{
	return status_write_at(stream_dir(s), spool_stream_name(s), st,
	    released, err);
}

int
spool_status_release(struct spool_dir *d, const char *name,
    const struct spool_status *st, struct spool_err *err)
{
	if (!stream_name_valid(name)) {
		spool_seterr(err, "%s: not a stream name", name);
		return -EINVAL;
	}
	return status_write_at(d, name, st, true, err);
}

int
spool_status_publish(struct spool_stream *s, const struct spool_status *st,
    struct spool_err *err)
{
	stream_note_published(s, st->drops, st->errors);
	return status_write(s, st, false, err);
}

static void
status_field(struct spool_status *st, const char *k, const char *v)
{
	if (strcmp(k, "pid") == 0)
		st->pid = (int32_t)strtonum(v, INT32_MIN, INT32_MAX, NULL);
	else if (strcmp(k, "fd") == 0)
		st->fd = (int32_t)strtonum(v, INT32_MIN, INT32_MAX, NULL);
	else if (strcmp(k, "state") == 0)
		strlcpy(st->state, v, sizeof(st->state));
	else if (strcmp(k, "reason") == 0)
		strlcpy(st->reason, v, sizeof(st->reason));
	else if (strcmp(k, "pending_bytes") == 0)
		st->pending_bytes = strtoull(v, NULL, 10);
	else if (strcmp(k, "pending_records") == 0)
		st->pending_records = strtoull(v, NULL, 10);
	else if (strcmp(k, "drops") == 0)
		st->drops = strtoull(v, NULL, 10);
	else if (strcmp(k, "errors") == 0)
		st->errors = strtoull(v, NULL, 10);
	else if (strcmp(k, "updated_ns") == 0)
		st->updated_ns = strtoll(v, NULL, 10);
	else if (strcmp(k, "released") == 0)
		st->released = strcmp(v, "1") == 0;
	else if (strcmp(k, "idle") == 0)
		st->idle = strcmp(v, "1") == 0;
	else if (strcmp(k, "holder") == 0)
		st->holder = (int32_t)strtonum(v, 0, INT32_MAX, NULL);
	else if (strcmp(k, "expires_ns") == 0)
		st->expires_ns = strtonum(v, 0, INT64_MAX, NULL);
}

int
spool_status_read(struct spool_dir *d, const char *name,
    struct spool_status *st, struct spool_err *err)
{
	char buf[1024], *line, *next, *eq;
	ssize_t n;
	int sfd, fd, rc;

	memset(st, 0, sizeof(*st));
	if ((sfd = open_stream_dir(d, name, err)) < 0)
		return sfd;
	fd = open_regular(sfd, "status", O_RDONLY, 0);
	sysio_close(sfd);
	if (fd < 0) {
		spool_seterr(err, "%s/%s/status: open: %s", d->path, name,
		    spool_strerror(-fd));
		return fd;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	rc = -errno;
	sysio_close(fd);
	if (n == -1) {
		spool_seterr(err, "%s/%s/status: read: %s", d->path, name,
		    strerror(-rc));
		return rc;
	}
	buf[n] = '\0';
	for (line = buf; line != NULL && *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if ((eq = strchr(line, '=')) == NULL)
			continue;
		*eq = '\0';
		status_field(st, line, eq + 1);
	}
	return 0;
}

/* ------------------------------------------------------------ ledger */

#define LEDGER_FILE	"ledger"

int
ledger_append(struct spool_dir *d, const char *name, uint64_t drops,
    uint64_t errors, bool kept)
{
	char buf[256];
	int fd, len, rc = 0;

	len = snprintf(buf, sizeof(buf), "ended_ns=%" PRId64 " stream=%s "
	    "drops=%" PRIu64 " errors=%" PRIu64 " end=%s\n", now_real_ns(),
	    name, drops, errors, kept ? "kept" : "removed");
	if ((fd = open_regular(d->fd, LEDGER_FILE, O_WRONLY | O_APPEND |
	    O_CREAT, 0600)) < 0)
		return fd;
	/* One write with O_APPEND: lines of several writers never mix. */
	if (sysio_write(fd, buf, (size_t)len) != len)
		rc = errno ? -errno : -EIO;
	sysio_close(fd);
	return rc;
}

/* One line: "ended_ns=T stream=NAME drops=D errors=E end=WORD". */
static bool
ledger_line(const char *line, struct spool_ledger *l)
{
	unsigned long long d, e;
	long long t;
	char name[SPOOL_NAME_MAX], end[16];
	int n = 0;

	if (sscanf(line, "ended_ns=%lld stream=%31s drops=%llu errors=%llu "
	    "end=%15s%n", &t, name, &d, &e, end, &n) != 5 ||
	    line[n] != '\0' || !stream_name_valid(name))
		return false;
	l->streams++;
	l->drops += d;
	l->errors += e;
	if (t > l->last_ns)
		l->last_ns = t;
	return true;
}

int
spool_ledger_read(struct spool_dir *d, struct spool_ledger *l,
    struct spool_err *err)
{
	char buf[4096 + 1], *line, *nl;
	size_t have = 0;
	ssize_t n;
	int fd;

	memset(l, 0, sizeof(*l));
	if ((fd = open_regular(d->fd, LEDGER_FILE, O_RDONLY, 0)) < 0) {
		if (fd == -ENOENT)
			return 0;
		spool_seterr(err, "%s/%s: open: %s", d->path, LEDGER_FILE,
		    spool_strerror(-fd));
		return fd;
	}
	for (;;) {
		n = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			n = -errno;
			spool_seterr(err, "%s/%s: read: %s", d->path,
			    LEDGER_FILE, strerror(errno));
			sysio_close(fd);
			return (int)n;
		}
		have += (size_t)n;
		buf[have] = '\0';
		for (line = buf; (nl = strchr(line, '\n')) != NULL;
		    line = nl + 1) {
			*nl = '\0';
			if (!ledger_line(line, l))
				l->bad_lines++;
		}
		have -= (size_t)(line - buf);
		memmove(buf, line, have);
		if (n == 0 || have == sizeof(buf) - 1) {
			/* The end, or a line longer than any we write. */
			if (have > 0)
				l->bad_lines++;
			if (n == 0)
				break;
			have = 0;
		}
	}
	sysio_close(fd);
	return 0;
}
