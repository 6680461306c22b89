/*
 * ingest.c — the bytes of an admitted write into the spool, as records:
 * from the application's iovec, or read from sendfile's file and splice's
 * pipe; and the fsync=interval bookkeeping of the frames that writing
 * forms.
 */
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "replay.h"
#include "runtime.h"
#include "stream.h"
#include "stream_impl.h"
#include "util.h"

/* sendfile and splice spool at most this much per call (a short count). */
#define SPOOL_CHUNK	  (1u << 20)

/*
 * fsync=interval: a frame may have been written just now. The spool never
 * syncs it itself (defer_sync): the replay thread does, with no lock held,
 * when sync_due is reached (take_sync in pump.c). The first frame after a
 * sync arms it an interval later. From the application's thread (app),
 * the replay thread is woken to take the new timer into its epoll timeout.
 */
void
note_written(struct stream *s, bool app)
{
	const struct tcpspool_config *cfg = runtime_config();
	int64_t now;

	if (cfg->fsync != FSYNC_INTERVAL)
		return;
	now = mono_ns();
	s->wrote_ns = now;
	if (atomic_load(&s->sync_due) != 0)
		return;
	atomic_store(&s->sync_due, now +
	    (int64_t)cfg->fsync_interval_ms * NS_PER_MS);
	if (app)
		replay_wake();
}

/* Appends n iovecs as one record; false (logged once) if it failed. */
static inline bool
append_record(struct stream *s, const struct iovec *rec, int n, int64_t ts)
{
	struct spool_err e;
	int64_t before, after;

	/* A frame was written if what is staged was (it is gone, or
	 * newer). */
	before = spool_stream_staged_since(s->spool);
	if (spool_stream_append(s->spool, rec, n, ts, &e) < 0) {
		if (s->errors++ == 0)
			log_error("spool %s: append: %s", s->name, e.msg);
		return false;
	}
	after = spool_stream_staged_since(s->spool);
	if (after == 0 || after != before)
		note_written(s, true);
	return true;
}

/* Appends the bytes of iov after skip, len of them, as records. */
size_t
append_iov(struct stream *s, const struct iovec *iov, int iovcnt, size_t skip,
    size_t len)
{
	struct iovec rec[64];
	size_t done = 0, inrec = 0;
	int64_t ts = real_coarse_ns();
	int n = 0, i;

	/* The usual call: one buffer, taken whole, one record. */
	if (iovcnt == 1 && skip == 0 && len == iov[0].iov_len && len > 0 &&
	    len <= SPOOL_RECORD_MAX)
		return append_record(s, iov, 1, ts) ? len : 0;

	for (i = 0; i < iovcnt && done + inrec < len; i++) {
		const char *p = iov[i].iov_base;
		size_t l = iov[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		p += skip;
		l -= skip;
		skip = 0;
		while (l > 0 && done + inrec < len) {
			size_t take = l;

			if (take > len - done - inrec)
				take = len - done - inrec;
			if (take > SPOOL_RECORD_MAX - inrec)
				take = SPOOL_RECORD_MAX - inrec;
			rec[n++] = (struct iovec){ (void *)p, take };
			inrec += take;
			p += take;
			l -= take;
			if (n == (int)(sizeof(rec) / sizeof(rec[0])) ||
			    inrec == SPOOL_RECORD_MAX || done + inrec == len) {
				if (!append_record(s, rec, n, ts))
					return done;
				done += inrec;
				inrec = 0;
				n = 0;
			}
		}
	}
	return done;
}

/* Reads up to want bytes of w's input (file or pipe) into a buffer. */
static ssize_t
read_input(const struct wreq *w, void *buf, size_t want)
{
	size_t got = 0;
	ssize_t n;

	/* Raw system calls: libc's are cancellation points, and this runs
	 * with the stream's lock held (sendfile and splice are not
	 * cancellation points: a pending cancel must not act here). */
	while (got < want) {
		if (w->src == WSRC_FILE && w->offp != NULL)
			n = syscall(SYS_pread64, w->in_fd, (char *)buf + got,
			    want - got, *w->offp + (off_t)got);
		else
			n = syscall(SYS_read, w->in_fd, (char *)buf + got,
			    want - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return got > 0 ? (ssize_t)got : -1;
		if (n == 0)
			break;
		got += (size_t)n;
		if (w->src == WSRC_PIPE)
			break;
	}
	return (ssize_t)got;
}

/* How many bytes of w's input after done are there to take now. */
size_t
input_available(const struct wreq *w, size_t done)
{
	size_t want = w->len - done;
	struct stat st;
	off_t pos;
	int n;

	if (w->src == WSRC_IOV)
		return want;
	if (want > SPOOL_CHUNK)
		want = SPOOL_CHUNK;
	if (w->src == WSRC_PIPE) {
		if (ioctl(w->in_fd, FIONREAD, &n) == -1 || n <= 0)
			return 0;
		return (size_t)n < want ? (size_t)n : want;
	}
	if (fstat(w->in_fd, &st) == -1)
		return 0;
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return want;
	pos = w->offp ? *w->offp : lseek(w->in_fd, 0, SEEK_CUR);
	if (pos < 0 || st.st_size <= pos)
		return 0;
	if ((uint64_t)(st.st_size - pos) < want)
		want = (size_t)(st.st_size - pos);
	return want;
}

bool
wreq_rest_available(const struct wreq *w, size_t done)
{
	int saved = errno;
	bool yes = done < w->len && input_available(w, done) > 0;

	errno = saved;
	return yes;
}

/* Spools want bytes of a file or pipe input; returns the bytes taken. */
size_t
append_input(struct stream *s, const struct wreq *w, size_t want, bool drop)
{
	struct iovec iov;
	size_t took;
	ssize_t got;
	void *buf;

	if ((buf = malloc(want)) == NULL)
		return 0;
	if ((got = read_input(w, buf, want)) <= 0) {
		free(buf);
		return 0;
	}
	iov = (struct iovec){ buf, (size_t)got };
	took = drop ? (size_t)got : append_iov(s, &iov, 1, 0, (size_t)got);
	free(buf);
	if (w->src == WSRC_FILE && w->offp != NULL)
		*w->offp += (off_t)took;
	else if (w->src == WSRC_FILE && took < (size_t)got)
		lseek(w->in_fd, -(off_t)((size_t)got - took), SEEK_CUR);
	else if (took < (size_t)got) {
		s->errors++;
		log_error("spool %s: %zu bytes read from a pipe could not be "
		    "spooled and are lost", s->name, (size_t)got - took);
	}
	return took;
}
