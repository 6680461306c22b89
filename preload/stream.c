/*
 * stream.c — a stream's life and the application's write: creation and
 * references, the spool it holds while it spools, its published status,
 * and stream_write, the entry point every write path reaches (DIRECT:
 * the real call without the lock; SPOOLING: behind the spool). The state
 * machine is written down in stream.h; the other jobs are in admit.c
 * (quotas and what the application gets), ingest.c (bytes into the
 * spool), pump.c (the replay thread's sending) and linger.c (close,
 * shutdown, process end).
 */
#include <sys/socket.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fdtab.h"
#include "handover.h"
#include "log.h"
#include "orphans.h"
#include "replay.h"
#include "resume.h"
#include "runtime.h"
#include "stream.h"
#include "stream_impl.h"
#include "util.h"

#define PUBLISH_EVERY_NS  (1000 * NS_PER_MS)

/* state changes under mu; a nested hook (SAFETY.md) reads it without. */
void
set_state(struct stream *s, enum stream_state st)
{
	enum stream_state from = s->state;

	__atomic_store_n(&s->state, st, __ATOMIC_RELEASE);
	handover_transition(s, from, st);
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

/* Closes the reader and the writer; the files go (how) or stay. */
void
spool_release(struct stream *s, enum spool_close_how how, const char *reason)
{
	struct spool_err e;
	int saved = errno;

	/* Adopted streams not sent in full wait again (before this one's
	 * spool, which is newer). */
	resume_give_back(s);
	/* A spool kept (an orphan) is replayed from its progress file:
	 * what the socket took since the last save (up to 200 ms of it) is
	 * saved now, or it would be sent again. A parked cursor saved it. */
	if (how == SPOOL_CLOSE_KEEP && s->cur != NULL && !s->parked &&
	    spool_cursor_ack(s->cur, 0, 0, true, &e) < 0 && s->errors++ == 0)
		log_warn("spool %s: progress: %s", s->name, e.msg);
	s->parked = false;
	atomic_store(&s->park_due, 0);
	if (s->cur != NULL)
		spool_cursor_close(s->cur);
	s->cur = NULL;
	/* The ledger takes the counts of the last status: make it now. */
	if (s->spool != NULL && (s->drops > 0 || s->errors > 0))
		publish(s, mono_ns());
	/* One line per stream: an append error already said why. */
	if (s->spool != NULL &&
	    spool_stream_close(s->spool, how, reason, &e) < 0 &&
	    s->errors++ == 0)
		log_warn("spool %s: close: %s", s->name, e.msg);
	s->spool = NULL;
	s->drops = s->errors = 0;	/* counted per spool, as the ledger */
	errno = saved;
}

void
spool_detach(struct stream *s, struct spool_detached *d)
{
	s->parked = false;
	atomic_store(&s->park_due, 0);
	/* The ledger takes the counts of the last status: make it now. */
	if (s->spool != NULL && (s->drops > 0 || s->errors > 0))
		publish(s, mono_ns());
	d->cur = s->cur;
	d->spool = s->spool;
	strlcpy(d->name, s->name, sizeof(d->name));
	s->cur = NULL;
	s->spool = NULL;
	s->drops = s->errors = 0;	/* counted per spool, as the ledger */
}

void
spool_detached_close(struct spool_detached *d)
{
	struct spool_err e;
	int saved = errno;

	if (d->cur != NULL)
		spool_cursor_close(d->cur);
	if (d->spool != NULL && spool_stream_close(d->spool,
	    SPOOL_CLOSE_REMOVE, NULL, &e) < 0)
		log_warn("spool %s: close: %s", d->name, e.msg);
	d->cur = NULL;
	d->spool = NULL;
	errno = saved;
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

void
wake_waiters(struct stream *s)
{
	if (atomic_load(&s->waiters) > 0)
		pthread_cond_broadcast(&s->cv);
}

/* To DONE: a delivered or discarded spool goes, the duplicate closes. */
void
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

int
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
	s->spool_gen++;
	orphan_sweeps_start();
	return 0;
}

void
publish(struct stream *s, int64_t now)
{
	struct spool_status st;
	struct spool_counts c;
	struct spool_err e;

	/* A parked stream's status stays as written until it changes. */
	atomic_store(&s->publish_due, s->parked ? INT64_MAX :
	    now + PUBLISH_EVERY_NS);
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
		strlcpy(st.reason, s->parked ? "closed by the application, "
		    "the peer reads nothing" : "closed by the application",
		    sizeof(st.reason));
	} else if (s->state == STREAM_SPOOLING && s->parked) {
		strlcpy(st.state, "spooling", sizeof(st.state));
		strlcpy(st.reason, "the peer reads nothing",
		    sizeof(st.reason));
	} else
		strlcpy(st.state, stream_state_name(s->state),
		    sizeof(st.state));
	st.pending_bytes = c.pending_bytes;
	st.pending_records = c.pending_records;
	st.drops = s->drops;
	st.errors = s->errors;
	st.updated_ns = real_ns();
	st.idle = s->parked;
	if (spool_status_publish(s->spool, &st, &e) < 0 && s->errors++ == 0)
		log_warn("spool %s: status: %s", s->name, e.msg);
	handover_note(s);
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
ssize_t
result(size_t done, int err)
{
	if (done > 0)
		return (ssize_t)done;
	errno = err;
	return -1;
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
	r = spool_rest(s, w, done);
	handover_note(s);
	return r;
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
	int cancel;

	/* A condition wait is a cancellation point, and glibc takes mu
	 * back before a cancel unwinds: the thread would die holding it
	 * (and the replay thread wait for it for ever). The wait is bounded:
	 * a cancel is acted on at the application's next cancellation
	 * point. */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
	atomic_fetch_add(&s->waiters, 1);
	while (s->state == STREAM_SPOOLING)
		if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT)
			break;
	atomic_fetch_sub(&s->waiters, 1);
	pthread_setcancelstate(cancel, NULL);
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
		if (replay_exiting() && replay_exit_parks()) {
			/* Another thread called _exit: no code of the host
			 * runs after it, and without us this thread would be
			 * gone. Its write must not keep the exit delivering
			 * more than was reported sent before: it never
			 * returns (SAFETY.md, process end). */
			pthread_mutex_unlock(&s->mu);
			for (;;)
				pause();
		}
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
		else {
			out = spool_rest(s, w, 0);
			handover_note(s);
		}
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
