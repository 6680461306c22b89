/*
 * stream.c — what happens to a write, a close, a shutdown of a spooled
 * connection, and what the replay thread does with it. The state machine
 * is written down in stream.h.
 */
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "classify.h"
#include "fdtab.h"
#include "log.h"
#include "real.h"
#include "replay.h"
#include "runtime.h"
#include "stream.h"

/* sendfile and splice spool at most this much per call (a short count). */
#define SPOOL_CHUNK	  (1u << 20)
/* The replay thread serves one stream at most this much before others. */
#define REPLAY_QUANTUM	  (4u << 20)
#define DISCARD_QUANTUM	  (1u << 20)
#define PERSIST_EVERY_NS  (200 * 1000000LL)
#define PUBLISH_EVERY_NS  (1000 * 1000000LL)
/* One sendmsg of the replay thread: at most this many records, this many
 * bytes copied (a record's rest up to BATCH_COPY_MAX is copied, a larger
 * one is sent from the cursor's buffer as the batch's last piece). */
#define BATCH_RECORDS	  1024
#define BATCH_BYTES	  (64u << 10)
#define BATCH_COPY_MAX	  (16u << 10)
#define NS_PER_MS	  1000000LL

int64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t
real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static struct timespec
ts_of(int64_t ns)
{
	return (struct timespec){ .tv_sec = ns / 1000000000LL,
		.tv_nsec = ns % 1000000000LL };
}

static bool
is_eagain(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK;
}

/* state changes under mu; a nested hook (SAFETY.md) reads it without. */
static void
set_state(struct stream *s, enum stream_state st)
{
	__atomic_store_n(&s->state, st, __ATOMIC_RELEASE);
}

enum stream_state
stream_state_peek(const struct stream *s)
{
	return __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
}

const char *
stream_state_name(enum stream_state st)
{
	switch (st) {
	case STREAM_DIRECT:
		return "direct";
	case STREAM_SPOOLING:
		return "spooling";
	case STREAM_LINGER:
		return "lingering";
	case STREAM_FAILED:
		return "failed";
	case STREAM_DONE:
		return "done";
	}
	return "?";
}

/* ------------------------------------------------------------ lifetime */

struct stream *
stream_new(int fd, const struct sockinfo *si)
{
	pthread_condattr_t ca;
	struct stream *s;
	int saved = errno;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		errno = saved;
		return NULL;
	}
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	atomic_init(&s->refs, 1);
	set_state(s, STREAM_DIRECT);
	s->fd = fd;
	s->dup = -1;
	s->family = si->family;
	s->id.pid = runtime_pid();
	s->id.fd = fd;
	s->id.created_ns = real_ns();
	strlcpy(s->id.local, si->local, sizeof(s->id.local));
	strlcpy(s->id.peer, si->peer, sizeof(s->id.peer));
	return s;
}

void
stream_ref(struct stream *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

/* Forgets what the batch holds (its memory stays). */
static void
batch_reset(struct replay_batch *b)
{
	b->n = b->first = b->used = b->pos = b->tail_len = 0;
	b->tail = NULL;
	b->switched = false;
}

/* Empties the batch and gives its memory back (leaving SPOOLING). */
static void
batch_free(struct replay_batch *b)
{
	if (b->p != &b->one)
		free(b->p);
	free(b->buf);
	b->p = NULL;
	b->buf = NULL;
	b->ncap = b->cap = 0;
	batch_reset(b);
}

/* Closes the reader and the writer; the files go (how) or stay. */
static void
spool_release(struct stream *s, enum spool_close_how how, const char *reason)
{
	struct spool_err e;

	batch_free(&s->batch);	/* its tail may point into the cursor */
	if (s->cur != NULL)
		spool_cursor_close(s->cur);
	s->cur = NULL;
	/* One line per stream: an append error already said why. */
	if (s->spool != NULL &&
	    spool_stream_close(s->spool, how, reason, &e) < 0 &&
	    s->errors++ == 0)
		log_warn("spool %s: close: %s", s->name, e.msg);
	s->spool = NULL;
}

void
stream_unref(struct stream *s)
{
	int saved;

	if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	saved = errno;
	spool_release(s, SPOOL_CLOSE_REMOVE, NULL);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
	errno = saved;
}

static void
wake_waiters(struct stream *s)
{
	if (atomic_load(&s->waiters) > 0)
		pthread_cond_broadcast(&s->cv);
}

/* To DONE: a delivered or discarded spool goes, the duplicate closes. */
static void
finish(struct stream *s)
{
	bool had = s->spool != NULL;

	spool_release(s, SPOOL_CLOSE_REMOVE, NULL);
	if (s->registered)
		replay_unregister(s);
	set_state(s, STREAM_DONE);
	wake_waiters(s);
	if (had)
		replay_room_changed(s);	/* its files counted in the quota */
}

/* ---------------------------------------------------------- the spool */

static int
ensure_spool(struct stream *s)
{
	struct spool_options o;
	struct spool_dir *d;
	struct spool_err e;
	int rc;

	if (s->spool != NULL)
		return 0;
	if ((d = runtime_dir()) == NULL)
		return -1;
	runtime_spool_options(&o);
	if ((rc = spool_stream_create(d, &s->id, &o, &s->spool, &e)) < 0) {
		s->spool = NULL;
		if (s->errors++ == 0)
			log_error("fd %d (peer %s): cannot create a spool, "
			    "passing through: %s", s->fd, s->id.peer, e.msg);
		return -1;
	}
	if ((rc = spool_stream_cursor(s->spool, &s->cur, &e)) < 0) {
		s->cur = NULL;
		log_error("fd %d (peer %s): cannot read its spool, passing "
		    "through: %s", s->fd, s->id.peer, e.msg);
		spool_release(s, SPOOL_CLOSE_REMOVE, NULL);
		s->errors++;
		return -1;
	}
	strlcpy(s->name, spool_stream_name(s->spool), sizeof(s->name));
	return 0;
}

static void
publish(struct stream *s, int64_t now)
{
	struct spool_status st;
	struct spool_counts c;
	struct spool_err e;

	atomic_store(&s->publish_due, now + PUBLISH_EVERY_NS);
	if (s->spool == NULL)
		return;
	memset(&st, 0, sizeof(st));
	spool_stream_counts(s->spool, &c);
	st.pid = s->id.pid;
	st.fd = s->fd;
	/* What an operator asks: is the application still writing, or has it
	 * closed and the library is delivering what is left? */
	if (s->state == STREAM_SPOOLING && s->app_gone) {
		strlcpy(st.state, "draining", sizeof(st.state));
		strlcpy(st.reason, "closed by the application",
		    sizeof(st.reason));
	} else
		strlcpy(st.state, stream_state_name(s->state),
		    sizeof(st.state));
	st.pending_bytes = c.pending_bytes;
	st.pending_records = c.pending_records;
	st.drops = s->drops;
	st.errors = s->errors;
	st.updated_ns = real_ns();
	if (spool_status_publish(s->spool, &st, &e) < 0 && s->errors++ == 0)
		log_warn("spool %s: status: %s", s->name, e.msg);
}

/* RETRY: while the writer waited, the spool was delivered and released
 * (the stream is DIRECT again): make a new one and ask again. */
enum admission { ADMIT, DROP, REFUSE, RETRY };

/*
 * Is there room for len more bytes? Applies the overflow policy; with
 * block, waits (mu released) for room up to the block timeout.
 */
static enum admission
admit(struct stream *s, uint64_t len, bool *waited)
{
	const struct tcpspool_config *cfg = runtime_config();
	const char *which;
	struct timespec ts;
	int64_t deadline;
	bool noted;
	int rc;

	if ((rc = spool_budget_check(s->spool, len, &which)) == 0)
		return ADMIT;
	if (!s->overflow_logged) {
		s->overflow_logged = true;
		log_warn("spool %s (fd %d, peer %s): %s reached, overflow=%s",
		    s->name, s->fd, s->id.peer, which,
		    cfg->overflow == OVERFLOW_DROP ? "drop" :
		    cfg->overflow == OVERFLOW_BLOCK ? "block" : "eagain");
	}
	if (cfg->overflow == OVERFLOW_DROP) {
		s->drops++;
		return DROP;
	}
	if (cfg->overflow != OVERFLOW_BLOCK)
		return REFUSE;
	deadline = mono_ns() + (int64_t)cfg->block_timeout_ms * NS_PER_MS;
	ts = ts_of(deadline);
	*waited = true;
	atomic_fetch_add(&s->waiters, 1);
	noted = replay_blocked(s, 1);
	while (rc != 0 && (s->state == STREAM_DIRECT ||
	    s->state == STREAM_SPOOLING) && s->spool != NULL) {
		if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT) {
			rc = s->spool ? spool_budget_check(s->spool, len,
			    &which) : -1;
			break;
		}
		if (s->spool != NULL)
			rc = spool_budget_check(s->spool, len, &which);
	}
	if (noted)
		(void)replay_blocked(s, -1);
	atomic_fetch_sub(&s->waiters, 1);
	if (rc == 0 && s->spool != NULL &&
	    (s->state == STREAM_DIRECT || s->state == STREAM_SPOOLING))
		return ADMIT;
	if (s->spool == NULL && s->state == STREAM_DIRECT)
		return RETRY;
	return REFUSE;
}

/*
 * fsync=interval: a frame may have been written just now. The spool syncs
 * a frame only when a later one is written after the interval, or when
 * spool_stream_sync is called after it: the replay thread makes that call
 * by the time the interval is over (sync_after_send), so that a frame left
 * alone (the application stopped writing, the peer stalls) is not left
 * unsynced. From the application's thread (app), the replay thread is
 * woken to take the new timer into its epoll timeout.
 */
static void
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

/* Appends the bytes of iov after skip, len of them, as records. */
static size_t
append_iov(struct stream *s, const struct iovec *iov, int iovcnt, size_t skip,
    size_t len)
{
	struct iovec rec[64];
	struct spool_err e;
	size_t done = 0, inrec = 0;
	int64_t ts = real_ns(), before, after;
	int n = 0, i;

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
				/* A frame was written if what is staged
				 * was (it is gone, or newer). */
				before = spool_stream_staged_since(s->spool);
				if (spool_stream_append(s->spool, rec, n, ts,
				    &e) < 0)
					goto fail;
				after = spool_stream_staged_since(s->spool);
				if (after == 0 || after != before)
					note_written(s, true);
				done += inrec;
				inrec = 0;
				n = 0;
			}
		}
	}
	return done;
fail:
	if (s->errors++ == 0)
		log_error("spool %s: append: %s", s->name, e.msg);
	return done;
}

/* Reads up to want bytes of w's input (file or pipe) into a buffer. */
static ssize_t
read_input(const struct wreq *w, void *buf, size_t want)
{
	size_t got = 0;
	ssize_t n;

	while (got < want) {
		if (w->src == WSRC_FILE && w->offp != NULL)
			n = pread(w->in_fd, (char *)buf + got, want - got,
			    *w->offp + (off_t)got);
		else
			n = read(w->in_fd, (char *)buf + got, want - got);
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
static size_t
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
static size_t
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

/*
 * An EAGAIN the kernel did not give (a quota, a write that cannot be
 * spooled yet): the kernel owes the writer no EPOLLOUT edge for it, so the
 * replay thread gives one (replay_poke) when it next makes room or
 * delivers. Under mu, or from a nested hook without it.
 */
ssize_t
invented_eagain(struct stream *s)
{
	atomic_store(&s->owe_edge, true);
	replay_note_owed();
	errno = EAGAIN;
	return -1;
}

/* What the application gets when nothing more of its call is queued. */
static ssize_t
result(size_t done, int err)
{
	if (done > 0)
		return (ssize_t)done;
	errno = err;
	return -1;
}

/*
 * Spools what follows the first done bytes of w. State DIRECT or
 * SPOOLING, mu held. Returns what the application gets.
 */
/*
 * Nothing of the rest was queued. When nothing was taken at all, the
 * EAGAIN is the kernel's only if this call's real call gave it and nothing
 * changed since (DIRECT, no wait): then the kernel owes the edge. Else it
 * is ours: the replay thread gives the edge, or it is given at once when
 * s has no replay (its socket may be empty by now).
 */
static ssize_t
refused(struct stream *s, const struct wreq *w, size_t done, bool waited)
{
	if (done > 0)
		return (ssize_t)done;
	if (s->state == STREAM_DIRECT && !waited) {
		errno = EAGAIN;
		return -1;
	}
	if (!s->registered)
		replay_poke(w->fd);
	return invented_eagain(s);
}

/*
 * Spools what follows the first done bytes of w. State DIRECT or
 * SPOOLING, mu held. Returns what the application gets. Nothing starts
 * spooling once the process end began (the replay thread takes no new
 * stream) or in a vfork child (its fd table is not the replay thread's).
 */
static ssize_t
spool_rest(struct stream *s, struct wreq *w, size_t done)
{
	size_t want, took;
	enum admission a;
	bool waited = false;

	if ((want = input_available(w, done)) == 0)
		return w->src == WSRC_FILE ? (ssize_t)done : result(done,
		    EAGAIN);
	if (s->state == STREAM_DIRECT && (replay_exiting() ||
	    !runtime_own_process()))
		return result(done, EAGAIN);
again:
	if (ensure_spool(s) < 0)
		return refused(s, w, done, waited);
	if ((a = admit(s, want, &waited)) == RETRY)
		goto again;
	if (s->state == STREAM_FAILED)
		return result(done, s->err);
	if (a == REFUSE || (s->state != STREAM_DIRECT &&
	    s->state != STREAM_SPOOLING))
		return refused(s, w, done, waited);
	if (a == DROP) {
		/* drop discards whole writes only. The kernel took part of
		 * this one: the short count, and the rest (the application's
		 * next write) is never dropped, or the peer would see a
		 * message cut and joined to the next; it waits as under
		 * eagain. */
		if (done > 0) {
			s->rest_owed = true;
			return (ssize_t)done;
		}
		if (s->rest_owed)
			return refused(s, w, 0, waited);
		if (w->src != WSRC_IOV)
			(void)append_input(s, w, want, true);
		return (ssize_t)want;
	}
	if (s->state == STREAM_DIRECT) {
		int rc = replay_register(s, w->fd);

		if (rc < 0) {
			if (s->errors++ == 0 && rc != -ESHUTDOWN)
				log_error("fd %d: cannot start replay, passing "
				    "through: %s", w->fd, strerror(-rc));
			return refused(s, w, done, waited);
		}
		set_state(s, STREAM_SPOOLING);
	}
	if (w->src == WSRC_IOV)
		took = append_iov(s, w->iov, w->iovcnt, done, want);
	else
		took = append_input(s, w, want, false);
	replay_note_staged(s, spool_stream_staged_since(s->spool));
	if (took == want)
		s->rest_owed = false;
	return result(done + took, EAGAIN);
}

ssize_t
stream_after_direct(struct stream *s, struct wreq *w, ssize_t r, int err)
{
	size_t done = r < 0 ? 0 : (size_t)r;

	if (done >= w->len && r >= 0)
		s->rest_owed = false;	/* a whole write went */
	if ((r < 0 && !is_eagain(err)) || done >= w->len || w->unspoolable)
		goto kernel;
	if (s->state != STREAM_DIRECT && s->state != STREAM_SPOOLING)
		goto kernel;
	return spool_rest(s, w, done);
kernel:
	errno = err;
	return r;
}

/* Waits (bounded) for s to leave SPOOLING; true if it did. */
static bool
wait_not_spooling(struct stream *s)
{
	int64_t deadline = mono_ns() +
	    (int64_t)runtime_config()->block_timeout_ms * NS_PER_MS;
	struct timespec ts = ts_of(deadline);

	atomic_fetch_add(&s->waiters, 1);
	while (s->state == STREAM_SPOOLING)
		if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT)
			break;
	atomic_fetch_sub(&s->waiters, 1);
	return s->state != STREAM_SPOOLING;
}

/*
 * DIRECT: the real call, made without mu, for it may block (a blocking
 * socket, SO_SNDTIMEO) and a shutdown or close from another thread must
 * not wait behind it. Order still holds: a call made here started while
 * nothing was spooled, so it is concurrent with any write that spools
 * meanwhile, and no write that returned before it began is behind it.
 * With mu held again, the rest of a short or refused call is spooled if fd
 * still names s.
 */
static ssize_t
direct_locked(struct stream *s, struct wreq *w)
{
	ssize_t r;
	int err;

	pthread_mutex_unlock(&s->mu);
	r = w->direct(w);
	err = errno;
	pthread_mutex_lock(&s->mu);
	if (fdtab_peek(w->fd) != s) {
		errno = err;
		return r;
	}
	return stream_after_direct(s, w, r, err);
}

ssize_t
stream_write(struct stream *s, struct wreq *w)
{
	ssize_t out;

	pthread_mutex_lock(&s->mu);
	if (fdtab_peek(w->fd) != s) {
		pthread_mutex_unlock(&s->mu);
		return STREAM_RETRY;
	}
again:
	switch (s->state) {
	case STREAM_DIRECT:
		out = direct_locked(s, w);
		break;
	case STREAM_SPOOLING:
		if (atomic_load(&s->shut_wr_pending)) {
			errno = EPIPE;
			out = -1;
		} else if (w->has_addr && s->family == AF_UNIX) {
			errno = EISCONN;
			out = -1;
		} else if (w->unspoolable) {
			/* Never ahead of spooled bytes: wait for the spool to
			 * empty, then go direct; else EAGAIN, as a full
			 * socket would. */
			if (wait_not_spooling(s))
				goto again;
			out = refused(s, w, 0, true);
		} else if (w->len == 0)
			out = 0;
		else
			out = spool_rest(s, w, 0);
		break;
	case STREAM_FAILED:
		errno = s->err;
		out = -1;
		break;
	default:
		/* DONE with an application fd still open: the process end
		 * orphaned what was spooled; nothing may go behind it. */
		errno = EPIPE;
		out = -1;
		break;
	}
	pthread_mutex_unlock(&s->mu);
	return out;
}

/* ------------------------------------------------------ close, shutdown */

/* SO_LINGER {1, 0} on fd: the application asks for an abortive close. */
static bool
linger_abort(int fd)
{
	struct linger l;
	socklen_t len = sizeof(l);

	return getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &len) == 0 &&
	    l.l_onoff && l.l_linger == 0;
}

void
stream_app_gone(struct stream *s, int fd)
{
	int saved = errno;

	pthread_mutex_lock(&s->mu);
	s->app_gone = true;
	switch (s->state) {
	case STREAM_DIRECT:
	case STREAM_FAILED:
		finish(s);
		break;
	case STREAM_SPOOLING:
		if (fd >= 0 && linger_abort(fd)) {
			log_info("spool %s (fd %d, peer %s): closed with "
			    "SO_LINGER 0: spool discarded, connection reset",
			    s->name, fd, s->id.peer);
			finish(s);
		} else
			log_debug("spool %s (fd %d): close deferred until "
			    "delivered", s->name, fd);
		break;
	default:
		break;
	}
	pthread_mutex_unlock(&s->mu);
	errno = saved;
}

int
stream_shutdown(struct stream *s, int fd, int how)
{
	int r;

	pthread_mutex_lock(&s->mu);
	if (s->state == STREAM_SPOOLING && (how == SHUT_WR ||
	    how == SHUT_RDWR)) {
		atomic_store(&s->shut_wr_pending, true);
		r = how == SHUT_RDWR ? real.shutdown(fd, SHUT_RD) : 0;
	} else
		r = real.shutdown(fd, how);
	pthread_mutex_unlock(&s->mu);
	return r;
}

/* A nested hook (SAFETY.md): no lock; a deferred SHUT_WR is only noted. */
int
stream_shutdown_nested(struct stream *s, int fd, int how)
{
	if (stream_state_peek(s) != STREAM_SPOOLING ||
	    (how != SHUT_WR && how != SHUT_RDWR))
		return real.shutdown(fd, how);
	atomic_store(&s->shut_wr_pending, true);
	/* drained() may have looked before we noted it: whoever takes the
	 * note does the shutdown. */
	if (stream_state_peek(s) != STREAM_SPOOLING &&
	    atomic_exchange(&s->shut_wr_pending, false))
		(void)real.shutdown(fd, SHUT_WR);
	return how == SHUT_RDWR ? real.shutdown(fd, SHUT_RD) : 0;
}

bool
stream_holds_file(struct stream *s)
{
	bool held;

	pthread_mutex_lock(&s->mu);
	held = s->ever_registered;
	pthread_mutex_unlock(&s->mu);
	return held;
}

/* -------------------------------------------------------------- replay */

static const char *
failure_reason(int err)
{
	switch (err) {
	case EPIPE:
		return "broken pipe";
	case ECONNRESET:
		return "peer reset";
	case ETIMEDOUT:
		return "timed out";
	case EIO:
		return "spool unreadable";
	default:
		return strerror(err);
	}
}

/* SPOOLING -> FAILED: the spool stays as an orphan, the app gets err. */
static void
fail(struct stream *s, int err, const char *detail)
{
	const char *reason = failure_reason(err);
	struct spool_counts c;

	spool_stream_counts(s->spool, &c);
	log_warn("spool %s (fd %d, peer %s): %s%s%s; %" PRIu64 " bytes kept "
	    "as orphan spool %s/%s", s->name, s->fd, s->id.peer, reason,
	    detail ? ": " : "", detail ? detail : "", c.pending_bytes,
	    spool_dir_path(runtime_dir()), s->name);
	spool_release(s, SPOOL_CLOSE_KEEP, reason);
	replay_unregister(s);
	s->err = err;
	set_state(s, s->app_gone ? STREAM_DONE : STREAM_FAILED);
	wake_waiters(s);
}

static void
discard_input(struct stream *s, int64_t now)
{
	char buf[16384];
	size_t total = 0;
	ssize_t n;

	while (total < DISCARD_QUANTUM) {
		n = recv(s->dup, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0) {
			total += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && is_eagain(errno) &&
		    now < atomic_load(&s->linger_due))
			return;
		finish(s);	/* EOF, error, or linger time over */
		return;
	}
	atomic_store(&s->ready, true);
}

/* Registered, under mu: the EPOLLOUT edge an invented EAGAIN owes. */
static void
pay_edge(struct stream *s)
{
	if (atomic_exchange(&s->owe_edge, false))
		replay_poke(s->dup);
}

/* The spool is empty: back to DIRECT, or on to LINGER after a close. */
static void
drained(struct stream *s, int64_t now)
{
	const struct tcpspool_config *cfg = runtime_config();
	struct spool_err e;

	atomic_store(&s->flush_due, 0);
	atomic_store(&s->sync_due, 0);	/* trim syncs what it keeps */
	batch_free(&s->batch);
	if (spool_stream_trim(s->spool, &e) < 0 && s->errors++ == 0)
		log_warn("spool %s: trim: %s", s->name, e.msg);
	replay_room_changed(s);	/* trim deleted the delivered segments */
	if (atomic_exchange(&s->shut_wr_pending, false) || s->app_gone)
		real.shutdown(s->dup, SHUT_WR);
	if (!s->app_gone) {
		/* Back to the direct path holding nothing: the spool files,
		 * fds and buffers go (the next EAGAIN makes a new spool). */
		set_state(s, STREAM_DIRECT);
		publish(s, now);
		spool_release(s, SPOOL_CLOSE_REMOVE, NULL);
		replay_room_changed(s);
		pay_edge(s);
		replay_unregister(s);
		wake_waiters(s);
		return;
	}
	set_state(s, STREAM_LINGER);
	publish(s, now);
	atomic_store(&s->linger_due, now + (int64_t)cfg->linger_ms * NS_PER_MS);
	replay_watch_input(s);
	discard_input(s, now);
}

/*
 * Writes the staged records as a frame, for the cursor to read and send
 * them. The fdatasync it may owe is left for after the sending
 * (sync_after_send): a first byte never waits for the disk.
 */
static void
flush_staged(struct stream *s, int64_t now)
{
	struct spool_err e;

	if (spool_stream_flush_nosync(s->spool, &e) < 0) {
		if (s->errors++ == 0)
			log_error("spool %s: flush: %s", s->name, e.msg);
		atomic_store(&s->flush_due, now + (int64_t)
		    runtime_config()->flush_ms * NS_PER_MS);
		return;
	}
	atomic_store(&s->flush_due, 0);
	note_written(s, false);
}

/*
 * The cursor's next record (flushing staged records once when it has
 * caught up). 1 with *rec, 0 when the spool is empty, -1 on a flush that
 * must wait, -2 after fail().
 */
static int
next_record(struct stream *s, struct spool_record *rec, int64_t now)
{
	struct spool_err e;
	int rc;

	if ((rc = spool_cursor_next(s->cur, rec, &e)) == 0 &&
	    spool_stream_staged_since(s->spool) != 0) {
		flush_staged(s, now);
		if (atomic_load(&s->flush_due) != 0)
			return -1;
		rc = spool_cursor_next(s->cur, rec, &e);
	}
	if (rc < 0) {
		fail(s, EIO, e.msg);
		return -2;
	}
	return rc;
}

/*
 * The fdatasync the policy owes: for frames flush_staged wrote (late by
 * this turn's sending only), and for any frame once sync_due is reached.
 *
 * The spool does not say whether it synced. What is known: it syncs when
 * the interval has passed since its last sync, and it never leaves a frame
 * unsynced that was written before its last sync. So after a call at now,
 * a frame written at or before now - interval is synced: either this call
 * synced, or the spool's last sync is later than that. A frame written
 * later may still be unsynced, because the spool synced after
 * sync_due was set (it is set by the first write after a sync): then the
 * call is made again one step later, until the last write is an interval
 * old. A frame written at w is synced by the first call after the spool's
 * last sync plus the interval, itself before w plus the interval; calls
 * come a step apart from then on, so it is synced by w + interval + step,
 * and the step is at most the flush interval: FORMAT.md's bound. The
 * thread runs that often while spooled writes keep coming anyway (their
 * flush timer); once they stop, sync_due is cleared an interval later.
 *
 * Under mu: the spool stream is not thread-safe, and the application's
 * appends (which may rotate the segment) are made under mu.
 */
static void
sync_after_send(struct stream *s)
{
	const struct tcpspool_config *cfg = runtime_config();
	int64_t due = atomic_load(&s->sync_due), now = mono_ns();
	int64_t interval = (int64_t)cfg->fsync_interval_ms * NS_PER_MS;
	int64_t step = (int64_t)(cfg->flush_ms < cfg->fsync_interval_ms ?
	    cfg->flush_ms : cfg->fsync_interval_ms) * NS_PER_MS;
	struct spool_err e;

	if (spool_stream_sync(s->spool, &e) < 0 && s->errors++ == 0)
		log_error("spool %s: %s", s->name, e.msg);
	if (due == 0 || now < due)
		return;
	if (s->wrote_ns <= now - interval)
		atomic_store(&s->sync_due, 0);
	else
		atomic_store(&s->sync_due, now + step);
}

/* Memory for a batch; without it, one record per batch, as it is. */
static void
batch_alloc(struct replay_batch *b)
{
	b->p = malloc(BATCH_RECORDS * sizeof(*b->p));
	b->buf = malloc(BATCH_BYTES);
	if (b->p == NULL || b->buf == NULL) {
		free(b->p);
		free(b->buf);
		b->p = &b->one;
		b->ncap = 1;
		b->buf = NULL;
		b->cap = 0;
		return;
	}
	b->ncap = BATCH_RECORDS;
	b->cap = BATCH_BYTES;
}

/*
 * Fills the empty batch from the cursor: copies the rest of each record
 * into buf, and ends with a record that is too large for what is left, or
 * that opened a new frame, kept where the cursor has it (valid until its
 * next call, which waits until the batch has gone). A record in a new
 * frame ends the batch so that all but its last piece come from one frame:
 * a short send then acknowledges an offset inside a record of the frame
 * the cursor is in, which it can return again without reading the files
 * again (see batch_sent). Frames are told apart by their data: the records
 * of one frame lie back to back in the cursor's buffer; a mistake here
 * costs a slower rewind, never a byte.
 * Returns next_record's last answer (1 when the batch is full).
 */
static int
batch_fill(struct stream *s, int64_t now)
{
	struct replay_batch *b = &s->batch;
	const uint8_t *prev_end = NULL;
	struct spool_record rec;
	struct batch_piece *p;
	size_t rest;
	bool switched;
	int rc;

	if (b->ncap == 0)
		batch_alloc(b);
	while (b->n < b->ncap) {
		if ((rc = next_record(s, &rec, now)) != 1)
			return rc;
		rest = rec.len - rec.off;
		switched = b->n > 0 && rec.data != prev_end;
		prev_end = rec.data + rec.len;
		p = &b->p[b->n++];
		p->seq = rec.seq;
		p->off = rec.off;
		p->len = rec.len;
		if (!switched && rest <= BATCH_COPY_MAX &&
		    rest <= b->cap - b->used) {
			if (rest > 0)
				memcpy(b->buf + b->used, rec.data + rec.off,
				    rest);
			b->used += rest;
			p->end = b->used;
			if (b->used == b->cap)
				break;
			continue;
		}
		b->tail = rec.data + rec.off;
		b->tail_len = rest;
		p->end = b->used + rest;
		b->switched = switched;
		break;
	}
	return 1;
}

/*
 * The socket took the batch up to pos: acknowledges what it can. All sent:
 * the last record, whole; the batch is empty. Up to a record boundary: the
 * records before it; the rest stays for the next send. Inside a record:
 * its offset, and the cursor returns the rest of it again, so the batch is
 * dropped; unless the record is in an older frame than the cursor's
 * (switched), which the cursor could return again only by reading the
 * files again from their start: then the records before it are
 * acknowledged and the batch stays, the record's bytes sent so far being
 * acknowledged with it once it has gone whole.
 * 1 if all of it was sent, 0 if not, -1 after fail().
 */
static int
batch_sent(struct stream *s)
{
	struct replay_batch *b = &s->batch;
	struct batch_piece *p;
	struct spool_err e;
	size_t start;
	int rc = 0, all = 0;

	while (b->first < b->n && b->p[b->first].end <= b->pos)
		b->first++;
	if (b->first == b->n) {
		p = &b->p[b->n - 1];
		rc = spool_cursor_ack(s->cur, p->seq, p->len, false, &e);
		batch_reset(b);
		all = 1;
	} else {
		start = b->first > 0 ? b->p[b->first - 1].end : 0;
		p = &b->p[b->first];
		if (b->pos > start && (!b->switched ||
		    b->first == b->n - 1)) {
			rc = spool_cursor_ack(s->cur, p->seq,
			    p->off + (b->pos - start), false, &e);
			batch_reset(b);
		} else if (b->first > 0) {
			p = &b->p[b->first - 1];
			rc = spool_cursor_ack(s->cur, p->seq, p->len, false,
			    &e);
		}
	}
	if (rc < 0) {
		fail(s, EIO, e.msg);
		return -1;
	}
	return all;
}

/*
 * One sendmsg of what the batch holds after pos. 2 if the socket took it
 * all, 1 if some (*n bytes), 0 if none (EAGAIN: the batch stays), -1 after
 * fail().
 */
static int
batch_send(struct stream *s, size_t *n)
{
	struct replay_batch *b = &s->batch;
	struct msghdr msg;
	struct iovec iov[2];
	int k = 0;
	ssize_t r;

	if (b->pos < b->used)
		iov[k++] = (struct iovec){ b->buf + b->pos, b->used - b->pos };
	if (b->tail_len > 0) {
		size_t skip = b->pos > b->used ? b->pos - b->used : 0;

		iov[k++] = (struct iovec){ (void *)(b->tail + skip),
		    b->tail_len - skip };
	}
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = iov;
	msg.msg_iovlen = (size_t)k;
	do
		r = k > 0 ? real.sendmsg(s->dup, &msg,
		    MSG_NOSIGNAL | MSG_DONTWAIT) : 0;
	while (r < 0 && errno == EINTR);
	if (r < 0 && is_eagain(errno))
		return 0;
	if (r < 0) {
		fail(s, errno, NULL);
		return -1;
	}
	b->pos += (size_t)r;
	*n = (size_t)r;
	if ((r = batch_sent(s)) < 0)
		return -1;
	return r == 1 ? 2 : 1;
}

/*
 * Sends what the spool holds until the socket is full or the spool is
 * empty, many records per sendmsg (a batch). What the socket refuses stays
 * in the batch, not re-read: the cursor has moved past it.
 */
static void
pump(struct stream *s, int64_t now)
{
	int64_t due = atomic_load(&s->flush_due);
	struct spool_err e;
	size_t sent = 0, n = 0;
	int rc = 1, r;

	if (due != 0 && now >= due)
		flush_staged(s, now);
	for (;;) {
		if (s->batch.n == 0) {
			if (rc != 1)
				break;	/* empty (0), or a flush must wait */
			if ((rc = batch_fill(s, now)) == -2)
				return;
			if (s->batch.n == 0)
				break;
		}
		if ((r = batch_send(s, &n)) < 0)
			return;
		if (r == 0) {
			rc = 1;	/* the socket is full: not drained */
			break;
		}
		if (r == 1)
			rc = 1;	/* a part is left (held, or to be read
				 * again): the spool is not empty; the
				 * next send sees EAGAIN, which arms the
				 * next EPOLLOUT */
		if ((sent += n) >= REPLAY_QUANTUM) {
			atomic_store(&s->ready, true);
			rc = 1;
			break;
		}
	}
	sync_after_send(s);
	if (sent > 0) {
		if (now - s->persisted_ns >= PERSIST_EVERY_NS) {
			s->persisted_ns = now;
			(void)spool_cursor_ack(s->cur, 0, 0, true, &e);
		}
		replay_room_changed(s);
		pay_edge(s);
	}
	if (rc == 0)
		drained(s, now);
}

void
stream_service(struct stream *s)
{
	int64_t now;

	pthread_mutex_lock(&s->mu);
	if (!s->registered)
		goto out;
	now = mono_ns();
	atomic_store(&s->ready, false);
	if (s->state == STREAM_SPOOLING)
		pump(s, now);
	else if (s->state == STREAM_LINGER)
		discard_input(s, now);
	if (s->registered && now >= atomic_load(&s->publish_due))
		publish(s, now);
out:
	pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------ exit */

void
stream_orphan_at_exit(struct stream *s, int64_t deadline_ns)
{
	struct timespec ts = ts_of(deadline_ns);
	struct spool_counts c;

	if (pthread_mutex_clocklock(&s->mu, CLOCK_MONOTONIC, &ts) != 0) {
		log_warn("spool %s: busy at exit, left as it is", s->name);
		return;
	}
	if (s->state == STREAM_SPOOLING) {
		spool_stream_counts(s->spool, &c);
		log_warn("spool %s (fd %d, peer %s): %" PRIu64 " bytes not "
		    "delivered within the linger time; kept as orphan spool "
		    "%s/%s", s->name, s->fd, s->id.peer, c.pending_bytes,
		    spool_dir_path(runtime_dir()), s->name);
		spool_release(s, SPOOL_CLOSE_KEEP, "exit");
		replay_unregister(s);
		set_state(s, STREAM_DONE);
	} else if (s->state == STREAM_LINGER)
		finish(s);
	pthread_mutex_unlock(&s->mu);
}
