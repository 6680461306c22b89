/*
 * linger.c — the end of a connection: the application's last close (at
 * once, or deferred until the spool is delivered), shutdown (deferred
 * SHUT_WR), the LINGER state (input read and discarded until the peer
 * closes or the linger time ends, never a reset), and process end.
 */
#include <sys/socket.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>

#include "handover.h"
#include "log.h"
#include "real.h"
#include "replay.h"
#include "resume.h"
#include "runtime.h"
#include "stream.h"
#include "stream_impl.h"
#include "util.h"

/* Input read and discarded per turn while lingering. */
#define DISCARD_QUANTUM	  (1u << 20)

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
			/* The replay thread, reading the spool without mu,
			 * finishes it when it comes back (pump_turn). */
			if (s->pumping)
				s->abort_pending = true;
			else
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
	 * note does the shutdown (it looks again after leaving SPOOLING). */
	atomic_thread_fence(memory_order_seq_cst);
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

void
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

void
stream_orphan_at_exit(struct stream *s, int64_t deadline_ns)
{
	struct timespec ts = ts_of(deadline_ns);
	struct spool_counts c;

	if (pthread_mutex_clocklock(&s->mu, CLOCK_MONOTONIC, &ts) != 0) {
		log_warn("spool %s: busy at exit, left as it is", s->name);
		return;
	}
	if (s->state == STREAM_SPOOLING &&
	    atomic_load(&s->ho) == HO_HELD) {
		/* tcpspool daemon holds the connection: what is in memory is
		 * written out and the files stay for it; it continues from
		 * the kernel's count once this process is gone. */
		spool_stream_counts(s->spool, &c);
		log_info("spool %s (fd %d, peer %s): %" PRIu64 " bytes left "
		    "to tcpspool daemon", s->name, s->fd, s->id.peer,
		    c.pending_bytes);
		handover_leave_to_daemon(s);
		spool_release(s, SPOOL_CLOSE_KEEP, "daemon");
		replay_unregister(s);
		set_state(s, STREAM_DONE);
	} else if (s->state == STREAM_SPOOLING && resume_wait_at_exit(s)) {
		replay_unregister(s);
		set_state(s, STREAM_DONE);
	} else if (s->state == STREAM_SPOOLING) {
		spool_stream_counts(s->spool, &c);
		log_warn("spool %s (fd %d, peer %s): %" PRIu64 " bytes not "
		    "delivered within the linger time; kept as orphan spool "
		    "%s/%s", s->name, s->fd, s->id.peer, c.pending_bytes,
		    spool_dir_path(runtime_dir()), s->name);
		spool_release(s, SPOOL_CLOSE_KEEP, "exit");
		replay_unregister(s);
		set_state(s, STREAM_DONE);
	} else if (s->state == STREAM_LINGER) {
		/* Delivered; the daemon's copy lingers in our place. */
		if (atomic_load(&s->ho) == HO_HELD)
			handover_leave_to_daemon(s);
		finish(s);
	}
	pthread_mutex_unlock(&s->mu);
}
