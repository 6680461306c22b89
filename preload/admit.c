/*
 * admit.c — admission and policy: whether the rest of a write may be
 * spooled (the per-stream and per-dir quotas, the overflow policy), and
 * what the application gets when it may not (an EAGAIN, owing an EPOLLOUT
 * edge when the kernel did not give it; a short count; a dropped write).
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "replay.h"
#include "runtime.h"
#include "stream.h"
#include "stream_impl.h"
#include "util.h"

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
	int rc, cancel;

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
	/* Not cancellable while it waits with mu (stream.c,
	 * wait_not_spooling, says why); bounded by the block timeout. */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
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
	pthread_setcancelstate(cancel, NULL);
	if (rc == 0 && s->spool != NULL &&
	    (s->state == STREAM_DIRECT || s->state == STREAM_SPOOLING))
		return ADMIT;
	if (s->spool == NULL && s->state == STREAM_DIRECT)
		return RETRY;
	return REFUSE;
}

/*
 * Nothing of the rest was queued. When nothing was taken at all, the
 * EAGAIN is the kernel's only if this call's real call gave it and nothing
 * changed since (DIRECT, no wait): then the kernel owes the edge. Else it
 * is ours: the replay thread gives the edge, or it is given at once when
 * s has no replay (its socket may be empty by now).
 */
ssize_t
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
 * The usual spooled write, in fewer steps: a SPOOLING stream's whole
 * one-buffer write, within the budget, staged behind records already
 * staged (no frame formed; the flush deadline their first record set
 * still stands, as replay_note_staged would leave it; not parked).
 * Returns the bytes taken, or -1 having changed nothing: the general
 * path below then decides, as it would have alone.
 */
static ssize_t
spool_quick(struct stream *s, const struct wreq *w)
{
	if (s->state != STREAM_SPOOLING || w->src != WSRC_IOV ||
	    w->iovcnt != 1 || w->len != w->iov[0].iov_len ||
	    s->spool == NULL || s->parked ||
	    !replay_staged_noted(s, spool_stream_staged_since(s->spool)) ||
	    spool_stream_append_quick(s->spool, w->iov[0].iov_base, w->len,
	    real_coarse_ns()) < 0)
		return -1;
	s->rest_owed = false;
	return (ssize_t)w->len;
}

/*
 * Spools what follows the first done bytes of w. State DIRECT or
 * SPOOLING, mu held. Returns what the application gets. Nothing starts
 * spooling once the process end began (the replay thread takes no new
 * stream) or in a vfork child (its fd table is not the replay thread's).
 */
static ssize_t
spool_rest_locked(struct stream *s, struct wreq *w, size_t done)
{
	size_t want, took;
	enum admission a;
	bool waited = false;
	ssize_t quick;

	if (done == 0 && (quick = spool_quick(s, w)) >= 0)
		return quick;
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
	note_appended(s);
	replay_note_staged(s, spool_stream_staged_since(s->spool));
	if (took == want)
		s->rest_owed = false;
	if (done + took == 0)	/* the append failed: our EAGAIN */
		return refused(s, w, 0, true);
	return result(done + took, EAGAIN);
}

/*
 * spool_rest, and a stream that is still DIRECT afterwards (refused,
 * dropped, a short count) holds no spool: stream.h's invariant, and no fd
 * or directory per connection refused at a quota.
 */
ssize_t
spool_rest(struct stream *s, struct wreq *w, size_t done)
{
	ssize_t r = spool_rest_locked(s, w, done);
	int err = errno;

	if (s->state == STREAM_DIRECT && s->spool != NULL) {
		spool_release(s, SPOOL_CLOSE_REMOVE, NULL);
		errno = err;	/* the application's answer */
	}
	return r;
}
