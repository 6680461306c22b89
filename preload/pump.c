/*
 * pump.c — what the replay thread does for a SPOOLING stream: send the
 * cursor's runs of records (the decoded frame's data, no copy) through the
 * private duplicate, acknowledge what the socket took to the byte, flush
 * and sync on the policy's timers, and hand the connection back when the
 * spool is empty (to DIRECT, or to LINGER after a close), or give up on it
 * (FAILED, an orphan).
 */
#include <sys/socket.h>

#include <errno.h>
#include <stdio.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "handover.h"
#include "log.h"
#include "orphans.h"
#include "real.h"
#include "replay.h"
#include "resume.h"
#include "runtime.h"
#include "stream.h"
#include "stream_impl.h"
#include "syncer.h"
#include "util.h"

/* The replay thread serves one stream at most this much before others. */
#define REPLAY_QUANTUM	  (256u << 10)
#define PERSIST_EVERY_NS  (200 * NS_PER_MS)
/* A stream whose socket took nothing for this long is parked. */
#define PARK_AFTER_NS	  (1000 * NS_PER_MS)

/* Streams parked since the replay thread last gave memory back. */
static _Atomic unsigned parks_since_trim;

/* A spool that could not be read for want of fds or memory, again. */
#define RETRY_NS	  (100 * NS_PER_MS)

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

/* SPOOLING -> FAILED: the spool is an orphan (orphans.c), the app gets err. */
static void
fail(struct stream *s, int err, const char *detail)
{
	orphan_release(s, err, failure_reason(err), detail);
	replay_unregister(s);
	s->err = err;
	set_state(s, s->app_gone ? STREAM_DONE : STREAM_FAILED);
	wake_waiters(s);
}

/* Registered, under mu: the EPOLLOUT edge an invented EAGAIN owes. */
static void
pay_edge(struct stream *s)
{
	if (atomic_exchange(&s->owe_edge, false))
		replay_poke(s->dup);
}

/*
 * SPOOLING -> LINGER: the application closed and every byte is the
 * kernel's. The spool holds nothing left to deliver or recover, so it goes
 * now, before the FIN: a peer that has seen EOF (and a process killed
 * after it did) never finds a stream dir left behind, and the peer's close
 * later costs this thread no disk work while other streams wait for it.
 * A stream tcpspool daemon holds keeps its spool until the peer closes:
 * the daemon lingers from it if the process dies first. One whose take
 * is only queued (or was refused) does not: should the daemon read its
 * take later, it finds no stream dir and refuses it, saying so in its log
 * (cmd_daemon.c, handle: take_gone); a take it had already answered, its
 * dir removed before the daemon's delivery looked, ends there (deliver_main:
 * nothing left to deliver).
 */
static void
to_linger(struct stream *s, int64_t now)
{
	const struct tcpspool_config *cfg = runtime_config();
	struct spool_err e;

	atomic_store(&s->shut_wr_pending, false);
	if (atomic_load(&s->ho) != HO_HELD)
		spool_release(s, SPOOL_CLOSE_REMOVE, NULL);
	else if (spool_stream_trim(s->spool, &e) < 0 && s->errors++ == 0)
		log_warn("spool %s: trim: %s", s->name, e.msg);
	replay_room_changed(s);
	real.shutdown(s->dup, SHUT_WR);
	set_state(s, STREAM_LINGER);
	publish(s, now);
	atomic_store(&s->linger_due, now + (int64_t)cfg->linger_ms * NS_PER_MS);
	replay_watch_input(s);
	discard_input(s, now);
}

/* The spool is empty: back to DIRECT, or on to LINGER after a close. */
static void
drained(struct stream *s, int64_t now)
{
	struct spool_counts c;

	/* The cursor found nothing more; the spool must agree, or the
	 * release below would delete undelivered records. */
	spool_stream_counts(s->spool, &c);
	if (c.pending_bytes > 0) {
		fail(s, EIO, "records pending that the spool cannot read");
		return;
	}
	atomic_store(&s->flush_due, 0);
	/* Everything was delivered: nothing left on disk needs a sync. */
	atomic_store(&s->sync_due, 0);
	if (s->app_gone) {
		to_linger(s, now);
		return;
	}
	if (atomic_exchange(&s->shut_wr_pending, false))
		real.shutdown(s->dup, SHUT_WR);
	/* Back to the direct path holding nothing: the spool files, fds and
	 * buffers go (the next EAGAIN makes a new spool). */
	set_state(s, STREAM_DIRECT);
	/* A nested shutdown that noted SHUT_WR after our look above saw
	 * SPOOLING and left it to us. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_exchange(&s->shut_wr_pending, false))
		real.shutdown(s->dup, SHUT_WR);
	/* Its files go once mu is released (stream_service): the
	 * application's next write, direct now, never waits for the unlinks
	 * (no trim first: the whole dir goes). No status is written for a
	 * dir about to go. */
	spool_detach(s, &s->gone);
	pay_edge(s);
	replay_unregister(s);
	wake_waiters(s);
}

/*
 * Writes the staged records as a frame, for the cursor to read and send
 * them. The fdatasync it owes is a job for later (take_sync), run without
 * the lock: a first byte never waits for the disk.
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
 * fsync=interval: the spool defers every sync to us (defer_sync), and we
 * run it with mu released, so that no application write on this stream
 * waits for the disk (and no other stream waits for this one's: the
 * thread holds no lock meanwhile). note_written arms sync_due an interval
 * after the first frame written since the last sync; when it is reached, a
 * job takes what is owed (the open segment as far as it is written,
 * sealed segments, the stream dir's new names) and syncs it. Frames
 * written while it ran arm the next one an interval after this one, so a
 * frame written at w is synced by w + interval (+ the sync's own time):
 * FORMAT.md's bound.
 */
static bool
take_sync(struct stream *s, int64_t now, struct spool_sync_job *j)
{
	int64_t due = atomic_load(&s->sync_due);

	if (due == 0 || now < due || s->spool == NULL)
		return false;
	if (s->sync_busy) {
		/* The job in flight arms the next one when it is done. */
		atomic_store(&s->sync_due, 0);
		return false;
	}
	if (spool_stream_sync_take(s->spool, j))
		return true;
	/* Nothing could be taken (no fd for the open segment): again an
	 * interval later if something is still owed. */
	atomic_store(&s->sync_due, spool_stream_sync_owed(s->spool) ? now +
	    (int64_t)runtime_config()->fsync_interval_ms * NS_PER_MS : 0);
	return false;
}

/* Under mu, the job's spool still s's: its result, and the next due. */
static void
sync_done(struct stream *s, const struct spool_sync_job *j, int rc)
{
	int64_t interval = (int64_t)runtime_config()->fsync_interval_ms *
	    NS_PER_MS;

	spool_stream_sync_done(s->spool, j, rc);
	/* Every failure counts (the stream's errors, the ledger): the data
	 * it was for may not be on disk. One log line per stream. */
	if (rc < 0 && s->errors++ == 0)
		log_error("spool %s: fdatasync: %s; what it was for may be "
		    "lost on power failure", s->name, strerror(-rc));
	if (rc < 0 || spool_stream_sync_owed(s->spool))
		atomic_store(&s->sync_due, j->at_ns + interval);
	else
		atomic_store(&s->sync_due, 0);
}

/*
 * The socket has taken nothing for PARK_AFTER_NS: a stalled connection
 * gives back what it holds (stream.h, issue 13's 32 KiB and 2 fds): the
 * cursor's buffers and fds (what the socket took is acknowledged to the
 * byte already, the rest is read again later), the writer's segment fd. Not while
 * a frame or a deferred sync is still to come: again later then. The next
 * EPOLLOUT reads the spool again from the files (one frame's inflate).
 * The status says "stalled" once and is not rewritten until something
 * changes: a thread with 10,000 stalled connections sleeps.
 */
static void
park(struct stream *s, int64_t now)
{
	struct spool_err e;

	atomic_store(&s->park_due, 0);
	if (s->parked)
		return;
	if (spool_stream_staged_since(s->spool) != 0 ||
	    !spool_stream_park(s->spool)) {
		atomic_store(&s->park_due, now + PARK_AFTER_NS);
		return;
	}
	/* Everything the socket took is acknowledged (run_send). Persisted
	 * now: a parked stream is the likeliest orphan, whose replay would
	 * send again what the progress file does not say. */
	(void)spool_cursor_ack(s->cur, 0, 0, true, &e);
	spool_cursor_park(s->cur);
	resume_park(s);
	s->parked = true;
	atomic_fetch_add(&parks_since_trim, 1);
	publish(s, now);
}


unsigned
stream_parks_since_trim(void)
{
	return atomic_load(&parks_since_trim);
}

void
stream_parks_trimmed(unsigned n)
{
	atomic_fetch_sub(&parks_since_trim, n);
}

/* Something changed on a parked stream: its status is written again. */
static void
unpark(struct stream *s, int64_t now)
{
	if (!s->parked)
		return;
	s->parked = false;
	atomic_store(&s->publish_due, now);
}

void
note_appended(struct stream *s)
{
	int64_t now;

	if (!s->parked)
		return;
	now = mono_ns();
	unpark(s, now);
	/* The socket is still full: parked again a while later (the segment
	 * the append opened is closed then). The thread may sleep with no
	 * timer: it looks again now. */
	atomic_store(&s->park_due, now + PARK_AFTER_NS);
	replay_wake();
}

/* How a pump without mu ended (pump_unlocked). */
enum pump_end {
	PUMP_FULL,	/* the socket took no more */
	PUMP_EMPTY,	/* the cursor has nothing more: maybe drained */
	PUMP_QUANTUM,	/* this turn's share was sent; more at once */
	PUMP_SEND_ERR,	/* the connection failed: err */
	PUMP_READ_ERR,	/* the spool could not be read or acknowledged */
	PUMP_RETRY,	/* out of fds or memory for now: again later */
};

/*
 * One sendmsg of the first len bytes of the cursor's run, without mu,
 * acknowledged to the byte the socket took (the cursor keeps the rest:
 * nothing is held between turns). The bytes are the decoded frame's own,
 * sent where they lie. *n bytes taken, 0 if none (EAGAIN), -1 on a send
 * error (*err), -2 when the acknowledgement failed (*e).
 */
static int
run_send(struct stream *s, struct spool_cursor *cur,
    const struct spool_run *run, size_t len, size_t *n, int *err,
    struct spool_err *e)
{
	struct iovec iov = { (void *)run->data, len };
	struct msghdr msg;
	ssize_t r;

	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	do
		r = real.sendmsg(s->dup, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	if (r < 0 && is_eagain(errno))
		return 0;
	if (r < 0) {
		*err = errno;
		return -1;
	}
	*n = (size_t)r;
	if (spool_cursor_ack_run(cur, (size_t)r, false, e) < 0)
		return -2;
	return 1;
}

/*
 * The pump's work, without mu (pump_turn holds the stream for it: the
 * cursor and dup are the replay thread's alone meanwhile). Takes the
 * records a frame at a time from the cursor as one run (the rest of the
 * decoded frame's data), sends each run with one sendmsg, at most what is
 * left of the turn's quantum, and acknowledges what the socket took,
 * until the socket is full, the cursor has nothing more, or the quantum is
 * sent. What the socket refuses stays in the cursor, unacknowledged: the
 * next turn's run starts with it.
 */
static enum pump_end
pump_unlocked(struct stream *s, int64_t now, size_t *sent, int *err,
    struct spool_err *e)
{
	struct spool_cursor *cur;
	struct spool_run run;
	enum pump_end end;
	size_t n = 0, len;
	int rc, r;

	for (;;) {
		/* Streams adopted from the peer's former connection first
		 * (resume.c), each until its cursor has nothing more. */
		cur = s->cur;
		if (atomic_load_explicit(&s->resuming, memory_order_relaxed) &&
		    (rc = resume_cursor(s, &cur, e)) != 0) {
			if (rc < 0 && (rc == -EMFILE || rc == -ENFILE ||
			    rc == -ENOMEM)) {
				end = PUMP_RETRY;
				break;
			}
			if (rc < 0) {
				resume_next(s, rc, e);
				continue;
			}
		}
		if ((rc = spool_cursor_run(cur, &run, e)) <= 0) {
			if (rc == -EMFILE || rc == -ENFILE || rc == -ENOMEM)
				end = PUMP_RETRY;
			else if (cur != s->cur) {
				resume_next(s, rc, e);
				continue;
			} else
				end = rc < 0 ? PUMP_READ_ERR : PUMP_EMPTY;
			break;
		}
		len = run.len;
		if (len > REPLAY_QUANTUM - *sent)
			len = REPLAY_QUANTUM - *sent;
		if (len == 0) {
			/* Only empty records: passed without a send. */
			if (spool_cursor_ack_run(cur, 0, false, e) < 0) {
				end = PUMP_READ_ERR;
				break;
			}
			continue;
		}
		if ((r = run_send(s, cur, &run, len, &n, err, e)) < 0) {
			end = r == -1 ? PUMP_SEND_ERR : PUMP_READ_ERR;
			break;
		}
		if (r == 0) {
			end = PUMP_FULL;
			break;
		}
		/* A part may be left (the socket took less); the next send
		 * sees EAGAIN, which arms the next EPOLLOUT. */
		if ((*sent += n) >= REPLAY_QUANTUM) {
			end = PUMP_QUANTUM;
			break;
		}
	}
	if (*sent > 0 && now - s->persisted_ns >= PERSIST_EVERY_NS) {
		struct spool_err pe;

		s->persisted_ns = now;
		(void)spool_cursor_ack(s->cur, 0, 0, true, &pe);
		resume_persist(s);
	}
	return end;
}

/*
 * A SPOOLING stream's turn, entered and left with mu held; mu is released
 * for the reading, inflating and sending (pump_unlocked), so that an
 * application write on this stream never waits for them, and taken again
 * to look at what the spool says: the writer's objects (staging, flush,
 * counts) are touched only under mu. While released, s->pumping tells the
 * application's abortive close (linger.c) to leave the spool to us
 * (abort_pending); nothing else frees the cursor or dup
 * meanwhile: fail, drained and the exit's orphaning run on this thread.
 *
 * "Empty" from the cursor is decided under mu: records appended while we
 * pumped (counted by the spool's records) mean another round, not a
 * drained spool; none appended and bytes still pending mean the spool
 * cannot read what it holds, which drained() must never delete.
 */
static void
pump_turn(struct stream *s, int64_t now)
{
	int64_t due = atomic_load(&s->flush_due);
	struct spool_counts c;
	struct spool_err e;
	enum pump_end end;
	size_t sent = 0;
	uint64_t appended;
	bool empty = false;
	int round, err = 0;

	if (due != 0 && now >= due)
		flush_staged(s, now);
	for (round = 0; round < 3; round++) {
		spool_stream_counts(s->spool, &c);
		appended = c.records;
		s->pumping = true;
		pthread_mutex_unlock(&s->mu);
		end = pump_unlocked(s, now, &sent, &err, &e);
		pthread_mutex_lock(&s->mu);
		s->pumping = false;
		if (s->abort_pending) {
			finish(s);	/* closed with SO_LINGER 0 meanwhile */
			return;
		}
		if (end != PUMP_EMPTY)
			break;
		if (spool_stream_staged_since(s->spool) != 0) {
			flush_staged(s, now);
			if (atomic_load(&s->flush_due) != 0)
				break;	/* the flush must wait */
			end = PUMP_QUANTUM;	/* its frame: this round or
						 * the next turn */
			continue;
		}
		spool_stream_counts(s->spool, &c);
		if (c.pending_bytes == 0) {
			empty = true;
			break;
		}
		if (c.records == appended) {
			fail(s, EIO, "records pending that the spool "
			    "cannot read");
			return;
		}
		/* Appended while we pumped: another round (or turn). */
		end = PUMP_QUANTUM;
	}
	switch (end) {
	case PUMP_QUANTUM:
		atomic_store(&s->ready, true);
		break;
	case PUMP_SEND_ERR:
		fail(s, err, NULL);
		return;
	case PUMP_READ_ERR:
		fail(s, EIO, e.msg);
		return;
	case PUMP_RETRY:
		/* Out of fds or memory for now (the host's own use counts):
		 * not a damaged spool. Read it again later; the host's writes
		 * never see an error for it. */
		if (s->errors++ == 0)
			log_warn("spool %s: %s; retrying", s->name, e.msg);
		atomic_store(&s->flush_due, now + RETRY_NS);
		break;
	default:
		break;
	}
	if (end == PUMP_FULL) {
		if (sent > 0 || atomic_load(&s->park_due) == 0)
			atomic_store(&s->park_due, now + PARK_AFTER_NS);
	} else
		atomic_store(&s->park_due, 0);
	if (sent > 0) {
		unpark(s, now);
		replay_room_changed(s);
		pay_edge(s);
	}
	if (empty)
		drained(s, now);
}

void
stream_service(struct stream *s)
{
	struct spool_detached gone;
	struct spool_sync_job j;
	uint64_t gen;
	int64_t now;
	int rc;

	pthread_mutex_lock(&s->mu);
	if (!s->registered)
		goto out;
	now = mono_ns();
	atomic_store(&s->ready, false);
	if (s->state == STREAM_SPOOLING && s->spool != NULL) {
		pump_turn(s, now);	/* may drain to LINGER, which reads */
		if (s->state == STREAM_SPOOLING &&
		    atomic_load(&s->park_due) != 0 &&
		    now >= atomic_load(&s->park_due))
			park(s, now);
	} else if (s->state == STREAM_LINGER)
		discard_input(s, now);
	if (s->state != STREAM_SPOOLING)
		atomic_store(&s->sync_due, 0);	/* only SPOOLING takes one */
	if (s->registered && now >= atomic_load(&s->publish_due))
		publish(s, now);
	if (s->state == STREAM_SPOOLING && take_sync(s, now, &j)) {
		gen = s->spool_gen;
		/* The sync thread waits for the disk (syncer.c); without it,
		 * this thread does, with mu released. */
		atomic_store(&s->sync_due, 0);
		s->sync_busy = true;
		if (!syncer_submit(s, &j, gen)) {
			pthread_mutex_unlock(&s->mu);
			rc = spool_sync_run(&j);
			pthread_mutex_lock(&s->mu);
			s->sync_busy = false;
			if (s->spool != NULL && s->spool_gen == gen)
				sync_done(s, &j, rc);
		}
	}
out:
	gone = s->gone;
	s->gone.cur = NULL;
	s->gone.spool = NULL;
	pthread_mutex_unlock(&s->mu);
	if (gone.spool != NULL || gone.cur != NULL) {
		spool_detached_close(&gone);	/* the disk's time: no lock */
		/* Its files no longer count in the dir's quota: writers
		 * waiting for room (overflow=block) look again. */
		pthread_mutex_lock(&s->mu);
		replay_room_changed(s);
		pthread_mutex_unlock(&s->mu);
	}
}

void
stream_sync_finished(struct stream *s, const struct spool_sync_job *j,
    uint64_t gen, int rc)
{
	pthread_mutex_lock(&s->mu);
	s->sync_busy = false;
	if (s->spool != NULL && s->spool_gen == gen)
		sync_done(s, j, rc);
	if (s->state != STREAM_SPOOLING || s->spool == NULL) {
		/* Lingering or gone: nothing takes a sync any more (a timer
		 * left set would spin the replay thread). */
		atomic_store(&s->sync_due, 0);
	} else {
		/* A newer spool (the stream drained and spooled again while
		 * the job ran) may owe a sync whose timer take_sync cleared
		 * while this job was busy: armed again. */
		if (atomic_load(&s->sync_due) == 0 &&
		    spool_stream_sync_owed(s->spool))
			atomic_store(&s->sync_due, mono_ns());
		/* The next due time may be earlier than the replay thread's
		 * sleep: it looks again. */
		if (atomic_load(&s->sync_due) != 0)
			replay_wake();
	}
	pthread_mutex_unlock(&s->mu);
}
