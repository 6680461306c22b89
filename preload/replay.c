/*
 * replay.c — the replay thread: an epoll set of private duplicates, an
 * eventfd, and timers taken from the streams (see replay.h).
 *
 * rp.mu guards the list, the counts and the fds below. Lock order: a
 * stream's mu, then rp.mu, then the fd table's lock. The thread itself
 * never holds rp.mu while it serves a stream. Under rp.mu only calls that
 * cannot block run: epoll_ctl, fcntl, memory; never a close of a socket
 * (a close can wait out the application's SO_LINGER): duplicates that go
 * are put in the graveyard and closed by the thread, holding no lock.
 *
 * Process end (replay_drain) takes no lock in the exiting thread: it may
 * run in a signal handler that interrupted anything, even this library or
 * malloc. It publishes a deadline and waits on a futex word; the thread
 * delivers, orphans what is left and says it is done.
 */
#include <linux/futex.h>
#include <sys/syscall.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fdtab.h"
#include "log.h"
#include "real.h"
#include "replay.h"
#include "resume.h"
#include "runtime.h"
#include "stream.h"
#include "sysio.h"
#include "util.h"

static struct {
	pthread_mutex_t mu;
	bool started;
	int epfd, evfd;
	/* Duplicates unregistered, for the thread to close (no lock). */
	int *grave;
	size_t ngrave, capgrave;
	int closing;		/* the buried fd being closed, or -1 */
	struct stream **list;	/* listed streams, one reference each */
	size_t n, cap;
	size_t registered;
	/* Streams with a writer waiting for room (overflow=block), once per
	 * waiter; each is held by that waiter's own reference. */
	struct stream **blocked;
	size_t nblocked, capblocked;
} rp = { .mu = PTHREAD_MUTEX_INITIALIZER, .epfd = -1, .evfd = -1,
	.closing = -1 };

static _Atomic bool wake_pending;
static _Atomic bool any_owed;	/* some stream may owe an EPOLLOUT edge */
static _Atomic int wake_fd = -1;	/* rp.evfd, for replay_wake (no lock) */
static _Atomic int blocked;
/* Process end: set once by replay_drain, read by everyone without lock. */
static _Atomic bool exiting;
static _Atomic bool exit_claimed;	/* one caller sets the terms */
static _Atomic int64_t exit_deadline;
static _Atomic uint32_t exit_done;	/* a futex word: the thread is done */
static _Atomic pid_t exit_tid;		/* the thread that called it */
static _Atomic bool exit_immediate;	/* from _exit or _Exit */
static _Atomic bool thread_running;	/* the thread exists and will answer */

/*
 * The replay's own fds go the way of the spool's (sysio): placed in the
 * private range, past numbers whose slot holds a stale stream (finished
 * when the application gets that number again, never here under rp.mu),
 * tagged private (sysio_place_fd); untagged as they are closed.
 */
static void
unprivatise_close(int fd)
{
	if (fd >= 0)
		sysio_close(fd);
}

/* Under rp.mu: fd (a duplicate, out of the epoll set) is closed by the
 * thread, outside every lock. Without memory, at once. */
static void
bury_locked(int fd)
{
	int *v = grown(rp.grave, rp.ngrave, &rp.capgrave, sizeof(*v));

	if (v == NULL) {
		unprivatise_close(fd);
		return;
	}
	rp.grave = v;
	rp.grave[rp.ngrave++] = fd;
	replay_wake();
}

/*
 * The application closed its last fd (its close returned long ago): our
 * duplicate is the socket's last fd, and with the application's SO_LINGER
 * {1, N} its close would wait up to N s for the peer, holding up this
 * thread (every stream's replay) and sysio's gate (the host's
 * close_range). Linger off: the kernel finishes the close in the
 * background, as it does for any close that does not linger; the peer
 * sees the same FIN. An abort ({1, 0}) is kept: that close resets, at
 * once, as the application asked.
 */
static void
no_lingering_close(int fd)
{
	struct linger l;
	socklen_t len = sizeof(l);

	if (getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &len) == 0 &&
	    l.l_onoff && l.l_linger > 0) {
		l.l_onoff = 0;
		l.l_linger = 0;
		(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	}
}

/*
 * The thread: closes what was buried, one at a time, holding no lock. The
 * fd being closed stays named in rp.closing meanwhile, so that a child
 * forked during the close closes its copy too (replay_fork_child).
 */
static void
close_buried(void)
{
	int fd;

	for (;;) {
		pthread_mutex_lock(&rp.mu);
		rp.closing = -1;
		if (rp.ngrave == 0) {
			pthread_mutex_unlock(&rp.mu);
			return;
		}
		fd = rp.grave[--rp.ngrave];
		rp.closing = fd;
		pthread_mutex_unlock(&rp.mu);
		unprivatise_close(fd);
	}
}

void
replay_wake(void)
{
	uint64_t one = 1;
	int saved = errno, fd = atomic_load(&wake_fd);

	/* A raw system call: libc's write is a cancellation point, and an
	 * application thread calls this holding its stream's lock. */
	if (fd >= 0 && !atomic_exchange(&wake_pending, true))
		(void)syscall(SYS_write, fd, &one, sizeof(one));
	errno = saved;
}

/* The flush deadline of records staged since since_ns (0: none). */
static int64_t
flush_due_of(int64_t since_ns)
{
	if (since_ns == 0)
		return 0;
	return since_ns + (int64_t)runtime_config()->flush_ms * NS_PER_MS;
}

bool
replay_staged_noted(struct stream *s, int64_t since_ns)
{
	return since_ns != 0 && atomic_load_explicit(&s->flush_due,
	    memory_order_relaxed) == flush_due_of(since_ns);
}

void
replay_note_staged(struct stream *s, int64_t since_ns)
{
	int64_t due = flush_due_of(since_ns), old;

	old = atomic_exchange(&s->flush_due, due);
	if (old == 0 && due != 0)
		replay_wake();
}

bool
replay_blocked(struct stream *s, int delta)
{
	bool ok = true;
	size_t i;

	pthread_mutex_lock(&rp.mu);
	if (delta > 0) {
		struct stream **v = grown(rp.blocked, rp.nblocked,
		    &rp.capblocked, sizeof(*v));

		if (v == NULL)
			ok = false;
		else {
			rp.blocked = v;
			rp.blocked[rp.nblocked++] = s;
			atomic_fetch_add(&blocked, 1);
		}
	} else {
		for (i = 0; i < rp.nblocked && rp.blocked[i] != s; i++)
			;
		if (i < rp.nblocked) {
			rp.blocked[i] = rp.blocked[--rp.nblocked];
			atomic_fetch_sub(&blocked, 1);
		}
	}
	pthread_mutex_unlock(&rp.mu);
	return ok;
}

void
replay_room_changed(struct stream *s)
{
	bool owed;
	size_t i;

	if (s != NULL && atomic_load(&s->waiters) > 0)
		pthread_cond_broadcast(&s->cv);
	owed = atomic_exchange(&any_owed, false);
	if (atomic_load(&blocked) == 0 && !owed)
		return;
	pthread_mutex_lock(&rp.mu);
	for (i = 0; i < rp.nblocked; i++)
		if (rp.blocked[i] != s)
			pthread_cond_broadcast(&rp.blocked[i]->cv);
	/* Writers refused at the dir's quota wait for an edge on their own
	 * socket: room made by any stream is theirs too. */
	for (i = 0; owed && i < rp.n; i++)
		if (rp.list[i]->registered &&
		    atomic_exchange(&rp.list[i]->owe_edge, false))
			replay_poke(rp.list[i]->dup);
	pthread_mutex_unlock(&rp.mu);
}

void
replay_note_owed(void)
{
	atomic_store(&any_owed, true);
}

/*
 * Makes the kernel wake the socket's writers (EPOLLOUT, edge-triggered
 * waiters included) now if it has room, else when room is made: poll
 * marks a socket without room as wanting a wake-up (SOCK_NOSPACE), and
 * setting a socket option to its current value calls the socket's
 * write-space callback: TCP_NOTSENT_LOWAT for TCP, SO_SNDBUF (a unix
 * socket does not tune its buffer, so the lock that sets is moot).
 * Changes nothing the application can see. fd is our duplicate.
 */
void
replay_poke(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	struct timespec zero = { 0, 0 };
	socklen_t len = sizeof(int);
	int saved = errno, v;

	/* Raw: libc's poll is a cancellation point, and this runs with the
	 * stream's lock held (admit.c, refused). */
	(void)syscall(SYS_ppoll, &pfd, 1, &zero, NULL, 0);
	if (getsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, &len) == 0)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, len);
	else if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, &len) == 0) {
		v /= 2;	/* the kernel doubles what it is given */
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, len);
	}
	errno = saved;
}

/* Streams whose timer is due, with a reference each. */
static size_t
collect_due(struct stream ***out, size_t *cap, int64_t now)
{
	struct stream **v;
	size_t i, k = 0;

	pthread_mutex_lock(&rp.mu);
	for (i = 0; i < rp.n; i++) {
		struct stream *s = rp.list[i];
		int64_t f = atomic_load(&s->flush_due);
		int64_t l = atomic_load(&s->linger_due);
		int64_t y = atomic_load(&s->sync_due);
		int64_t pk = atomic_load(&s->park_due);

		if (!s->registered)
			continue;
		if (!(f != 0 && f <= now) &&
		    !(l != 0 && l <= now) && !(y != 0 && y <= now) &&
		    !(pk != 0 && pk <= now) &&
		    atomic_load(&s->publish_due) > now)
			continue;
		if ((v = grown(*out, k, cap, sizeof(*v))) == NULL)
			break;
		*out = v;
		stream_ref(s);
		(*out)[k++] = s;
	}
	pthread_mutex_unlock(&rp.mu);
	return k;
}

/*
 * Under rp.mu: drops unregistered streams from the list (their references
 * into *drop) and returns the earliest timer of the others.
 */
static int64_t
sweep_locked(struct stream ***drop, size_t *ndrop, size_t *dcap)
{
	int64_t next = INT64_MAX;
	size_t i, k = 0;

	for (i = 0; i < rp.n; i++) {
		struct stream *s = rp.list[i];
		int64_t t;

		if (!s->registered) {
			struct stream **v = grown(*drop, *ndrop, dcap,
			    sizeof(*v));

			if (v == NULL) {
				rp.list[k++] = s;	/* next turn */
				continue;
			}
			*drop = v;
			s->listed = false;
			(*drop)[(*ndrop)++] = s;
			continue;
		}
		rp.list[k++] = s;
		if ((t = atomic_load(&s->flush_due)) != 0 && t < next)
			next = t;
		if ((t = atomic_load(&s->linger_due)) != 0 && t < next)
			next = t;
		if ((t = atomic_load(&s->sync_due)) != 0 && t < next)
			next = t;
		if ((t = atomic_load(&s->park_due)) != 0 && t < next)
			next = t;
		if ((t = atomic_load(&s->publish_due)) < next)
			next = t;
	}
	rp.n = k;
	return next;
}

/* Process end, in the thread: every stream still registered gives up what
 * it has (orphan) within a bounded wait for its lock. */
static void
orphan_left(void)
{
	int64_t lock_by = atomic_load(&exit_deadline);
	struct stream *s;
	size_t i;

	if (lock_by < mono_ns())
		lock_by = mono_ns();
	lock_by += 200 * 1000000LL;
	for (;;) {
		s = NULL;
		pthread_mutex_lock(&rp.mu);
		for (i = 0; i < rp.n && s == NULL; i++)
			if (rp.list[i]->registered && !rp.list[i]->orphaned) {
				s = rp.list[i];
				s->orphaned = true;
				stream_ref(s);
			}
		pthread_mutex_unlock(&rp.mu);
		if (s == NULL)
			return;
		stream_orphan_at_exit(s, lock_by);
		stream_unref(s);
	}
}

/* The exit is over for the thread: wake the exiting thread, stop. */
static void
say_done(void)
{
	atomic_store(&exit_done, 1);
	(void)syscall(SYS_futex, &exit_done, FUTEX_WAKE_PRIVATE, INT_MAX,
	    NULL, NULL, 0);
}

static int
timeout_ms(int64_t next, int64_t now)
{
	if (next == INT64_MAX)
		return -1;
	if (next <= now)
		return 0;
	if ((next - now) / 1000000 >= INT_MAX)
		return INT_MAX;
	/* rounded up: never early, so never a busy turn */
	return (int)((next - now + 999999) / 1000000);
}

/*
 * Streams were parked: their buffers were freed, but malloc keeps freed
 * memory in the middle of its heap, so the process's RSS would not go
 * down. malloc_trim gives those pages back, but it walks the heap holding
 * each arena's lock (a fragmented heap of gigabytes: about 0.1 s during
 * which the host's malloc waits): so at most once a second, and only
 * after many parks (a wave of stalled connections), else at most every
 * TRIM_EVERY_NS. Returns when it is owed next (0: not owed).
 */
#define TRIM_EVERY_NS	(5000 * 1000000LL)
#define TRIM_MIN_NS	(1000 * 1000000LL)
#define TRIM_PARKS	32

static int64_t
give_back(int64_t now)
{
	static int64_t last;
	unsigned parks = stream_parks_since_trim();

	if (parks == 0)
		return 0;
	if (now - last < TRIM_EVERY_NS &&
	    (parks < TRIM_PARKS || now - last < TRIM_MIN_NS))
		return parks < TRIM_PARKS ? last + TRIM_EVERY_NS :
		    last + TRIM_MIN_NS;
	last = now;
	stream_parks_trimmed(parks);
	malloc_trim(0);
	return 0;
}

/*
 * Streams with more to send at once (ready: their turn's quantum was used)
 * take turns in the order they became ready, each holding a reference,
 * listed once (queued: this thread's alone).
 */
struct turns {
	struct stream **v;
	size_t n, cap;
};

static void
keep_ready(struct turns *t, struct stream *s)
{
	struct stream **v;

	if (s->queued || !atomic_load(&s->ready))
		return;
	if ((v = grown(t->v, t->n, &t->cap, sizeof(*v))) == NULL) {
		/* Without memory: the next sweep's timer finds it. */
		atomic_store(&s->publish_due, 0);
		return;
	}
	t->v = v;
	stream_ref(s);
	s->queued = true;
	t->v[t->n++] = s;
}

/* While streams take turns, the list is swept at most this often. */
#define SWEEP_NS	(1000 * 1000LL)

static void *
replay_main(void *arg)
{
	struct stream **drop = NULL, **due = NULL;
	struct turns ready = { 0 }, now_turn = { 0 };
	size_t dcap = 0, ducap = 0;
	int64_t trim_due = 0, next = 0, swept_at = 0;
	struct epoll_event ev[64];
	bool sweep = true;
	uint64_t v;
	size_t i;

	(void)arg;
	/* Named, so that an operator's top -H or a benchmark can tell it. */
	(void)pthread_setname_np(pthread_self(), "tcpspool-replay");
	for (;;) {
		size_t ndrop = 0, ndue, left;
		int64_t now, wait_until;
		struct turns t;
		int n, epfd;

		close_buried();
		now = mono_ns();
		/*
		 * The list is swept (unregistered streams dropped, the next
		 * timer found: O(streams)) whenever this thread would sleep,
		 * after a wake or a timer, and at most every SWEEP_NS while
		 * streams only take turns: 10,000 registered streams cost
		 * nothing per 256 KiB turn of one that drains.
		 */
		pthread_mutex_lock(&rp.mu);
		if (sweep || ready.n == 0 || now - swept_at >= SWEEP_NS) {
			next = sweep_locked(&drop, &ndrop, &dcap);
			swept_at = now;
			sweep = false;
		}
		left = rp.registered;
		epfd = rp.epfd;
		pthread_mutex_unlock(&rp.mu);
		for (i = 0; i < ndrop; i++)
			stream_unref(drop[i]);

		wait_until = next;
		if (trim_due != 0 && trim_due < wait_until)
			wait_until = trim_due;
		if (atomic_load(&exiting)) {
			int64_t dl = atomic_load(&exit_deadline);

			if (left == 0 || now >= dl)
				break;
			if (dl < wait_until)
				wait_until = dl;
		}
		n = epoll_wait(epfd, ev, (int)(sizeof(ev) / sizeof(ev[0])),
		    ready.n > 0 ? 0 : timeout_ms(wait_until, now));
		/* Every stream an event names was listed under rp.mu: taking
		 * it orders us after that, in terms a race detector sees too
		 * (it cannot follow epoll through our duplicated epoll fd). */
		pthread_mutex_lock(&rp.mu);
		pthread_mutex_unlock(&rp.mu);
		for (i = 0; n > 0 && i < (size_t)n; i++) {
			if (ev[i].data.ptr == NULL) {
				/* Read first, then clear: a wake between the
				 * two finds the flag set and writes nothing,
				 * and this turn, not over yet, sees what it
				 * changed. Cleared first, the read could eat
				 * the write of a wake that set the flag again,
				 * and no wake would ever write after that. */
				while (read(rp.evfd, &v, sizeof(v)) > 0)
					;
				atomic_store(&wake_pending, false);
				sweep = true;	/* a timer may be new */
				continue;
			}
			stream_service(ev[i].data.ptr);
			keep_ready(&ready, ev[i].data.ptr);
		}
		now = mono_ns();
		if (now >= next) {
			ndue = collect_due(&due, &ducap, now);
			for (i = 0; i < ndue; i++) {
				stream_service(due[i]);
				keep_ready(&ready, due[i]);
				stream_unref(due[i]);
			}
			sweep = true;
		}
		/* The streams that were ready take one turn each, in order;
		 * those still ready queue again behind the others. */
		t = ready;
		ready = now_turn;
		ready.n = 0;
		for (i = 0; i < t.n; i++) {
			t.v[i]->queued = false;
			stream_service(t.v[i]);
			keep_ready(&ready, t.v[i]);
			stream_unref(t.v[i]);
		}
		now_turn = t;
		trim_due = give_back(mono_ns());
	}
	for (i = 0; i < ready.n; i++) {
		ready.v[i]->queued = false;
		stream_unref(ready.v[i]);
	}
	free(ready.v);
	free(now_turn.v);
	orphan_left();
	close_buried();
	free(drop);
	free(due);
	say_done();
	return NULL;
}

/* Under rp.mu: the epoll set, the eventfd and the thread. */
static int
start_locked(void)
{
	struct epoll_event ev = { .events = EPOLLIN };
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t tid;
	int rc;

	bool g = sysio_gate_enter();

	rp.epfd = sysio_place_fd(real.epoll_create1(EPOLL_CLOEXEC));
	rp.evfd = sysio_place_fd(real.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	sysio_gate_leave(g);
	if (rp.epfd < 0 || rp.evfd < 0)
		goto fail_errno;
	ev.data.ptr = NULL;
	if (epoll_ctl(rp.epfd, EPOLL_CTL_ADD, rp.evfd, &ev) == -1)
		goto fail_errno;
	/* The host's signals are never delivered to our thread. */
	sigfillset(&all);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&tid, &attr, replay_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0)
		goto fail;
	rp.started = true;
	atomic_store(&wake_fd, rp.evfd);
	atomic_store(&thread_running, true);
	return 0;
fail_errno:
	rc = errno;
fail:
	unprivatise_close(rp.epfd);
	unprivatise_close(rp.evfd);
	rp.epfd = rp.evfd = -1;
	return -rc;
}

int
replay_register(struct stream *s, int fd)
{
	struct epoll_event ev = { .events = EPOLLOUT | EPOLLET };
	int saved = errno, rc = 0, dup;
	bool g;

	pthread_mutex_lock(&rp.mu);
	if (atomic_load(&exiting)) {
		rc = -ESHUTDOWN;
		goto out;
	}
	if (!rp.started && (rc = start_locked()) < 0)
		goto out;
	if (!s->listed) {
		struct stream **v = grown(rp.list, rp.n, &rp.cap, sizeof(*v));

		if (v == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		rp.list = v;
	}
	g = sysio_gate_enter();
	if ((dup = real.fcntl(fd, F_DUPFD_CLOEXEC,
	    runtime_private_floor())) == -1 &&
	    (dup = real.fcntl(fd, F_DUPFD_CLOEXEC, 3)) == -1) {
		rc = -errno;
		sysio_gate_leave(g);
		goto out;
	}
	dup = sysio_place_fd(dup);
	sysio_gate_leave(g);
	ev.data.ptr = s;
	if (epoll_ctl(rp.epfd, EPOLL_CTL_ADD, dup, &ev) == -1) {
		rc = -errno;
		unprivatise_close(dup);
		goto out;
	}
	if (!s->listed) {
		stream_ref(s);
		rp.list[rp.n++] = s;
		s->listed = true;
	}
	s->dup = dup;
	s->registered = true;
	s->ever_registered = true;
	rp.registered++;
	atomic_store(&s->flush_due, 0);
	atomic_store(&s->linger_due, 0);
	atomic_store(&s->sync_due, 0);
	atomic_store(&s->publish_due, mono_ns());
out:
	pthread_mutex_unlock(&rp.mu);
	if (rc == 0)
		replay_wake();	/* it publishes the first status */
	errno = saved;
	return rc;
}

void
replay_unregister(struct stream *s)
{
	int saved = errno;

	pthread_mutex_lock(&rp.mu);
	if (s->registered) {
		(void)epoll_ctl(rp.epfd, EPOLL_CTL_DEL, s->dup, NULL);
		if (s->app_gone)
			no_lingering_close(s->dup);
		bury_locked(s->dup);
		s->dup = -1;
		s->registered = false;
		atomic_store(&s->ready, false);
		rp.registered--;
	}
	pthread_mutex_unlock(&rp.mu);
	errno = saved;
}

void
replay_watch_input(struct stream *s)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLET };

	ev.data.ptr = s;
	pthread_mutex_lock(&rp.mu);
	if (s->registered)
		(void)epoll_ctl(rp.epfd, EPOLL_CTL_MOD, s->dup, &ev);
	pthread_mutex_unlock(&rp.mu);
}

void
replay_drain(int64_t deadline_ns, bool now, bool immediate)
{
	struct timespec ts;
	int64_t t, until;

	bool first = !atomic_exchange(&exit_claimed, true);

	if (now)
		deadline_ns = mono_ns();
	if (first) {
		/* The first caller's terms hold; a later one (another
		 * thread's exit meanwhile) only waits with it. */
		atomic_store(&exit_tid, (pid_t)syscall(SYS_gettid));
		atomic_store(&exit_immediate, immediate);
		atomic_store(&exit_deadline, deadline_ns);
		atomic_store(&exiting, true);
	}
	if (!atomic_load(&thread_running))
		return;
	if (first)
		replay_wake();
	/* The thread orphans what is left within a bounded wait after the
	 * deadline; past that, something holds it (a lock of the code this
	 * exit interrupted): the process ends without it. */
	until = deadline_ns + 1500 * 1000000LL;
	while (atomic_load(&exit_done) == 0 && (t = mono_ns()) < until) {
		ts = ts_of(until - t);	/* relative */
		(void)syscall(SYS_futex, &exit_done, FUTEX_WAIT_PRIVATE, 0, &ts,
		    NULL, 0);
	}
}

bool
replay_exiting(void)
{
	return atomic_load_explicit(&exiting, memory_order_relaxed);
}

bool
replay_exit_parks(void)
{
	return atomic_load(&exiting) && atomic_load(&exit_immediate) &&
	    (pid_t)syscall(SYS_gettid) != atomic_load(&exit_tid);
}

void
replay_fork_prepare(void)
{
	pthread_mutex_lock(&rp.mu);
}

void
replay_fork_parent(void)
{
	pthread_mutex_unlock(&rp.mu);
}

/*
 * The child has one thread and none of the parent's streams. consistent:
 * the parent's fork handler held rp.mu, so the list can be read to close
 * our copies of the parent's duplicates (they would keep its connections
 * open after the parent finishes them); without it (a fork from a signal
 * handler that interrupted this library), they are left to close-on-exec.
 */
void
replay_fork_child(bool consistent)
{
	size_t i;

	if (consistent) {
		for (i = 0; i < rp.n; i++) {
			if (rp.list[i]->registered && rp.list[i]->dup >= 0)
				real.close(rp.list[i]->dup);
			resume_fork_child_close(rp.list[i]);
		}
		for (i = 0; i < rp.ngrave; i++)
			real.close(rp.grave[i]);
		if (rp.closing >= 0)
			real.close(rp.closing);
		if (rp.epfd >= 0)
			real.close(rp.epfd);
		if (rp.evfd >= 0)
			real.close(rp.evfd);
		free(rp.list);
		free(rp.blocked);
		free(rp.grave);
	}
	rp.list = NULL;
	rp.n = rp.cap = rp.registered = 0;
	/* The parent's waiters do not exist here. */
	rp.blocked = NULL;
	rp.nblocked = rp.capblocked = 0;
	rp.grave = NULL;
	rp.ngrave = rp.capgrave = 0;
	rp.closing = -1;
	rp.epfd = rp.evfd = -1;
	rp.started = false;
	atomic_store(&wake_pending, false);
	atomic_store(&blocked, 0);
	atomic_store(&exiting, false);
	atomic_store(&exit_claimed, false);
	atomic_store(&exit_immediate, false);
	atomic_store(&exit_done, 0);
	atomic_store(&thread_running, false);
	atomic_store(&wake_fd, -1);
	/* Made new, never unlocked by a thread that may not own them. */
	pthread_mutex_init(&rp.mu, NULL);
}
