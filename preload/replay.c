/*
 * replay.c — the replay thread: an epoll set of private duplicates, an
 * eventfd, and timers taken from the streams (see replay.h).
 *
 * rp.mu guards the list, the counts and the fds below. Lock order: a
 * stream's mu, then rp.mu, then the fd table's lock. The thread itself
 * never holds rp.mu while it serves a stream.
 */
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
#include "runtime.h"
#include "stream.h"

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;	/* registered went down; the thread exited */
	bool started, stopping, exited;
	int epfd, evfd;
	struct stream **list;	/* listed streams, one reference each */
	size_t n, cap;
	size_t registered;
	/* Streams with a writer waiting for room (overflow=block), once per
	 * waiter; each is held by that waiter's own reference. */
	struct stream **blocked;
	size_t nblocked, capblocked;
} rp = { .mu = PTHREAD_MUTEX_INITIALIZER, .epfd = -1, .evfd = -1 };

static pthread_once_t rp_once = PTHREAD_ONCE_INIT;
static _Atomic bool wake_pending;
static _Atomic int blocked;

static void
init_cv(void)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&rp.cv, &ca);
	pthread_condattr_destroy(&ca);
}

static struct timespec
mono_ts(int64_t ns)
{
	return (struct timespec){ .tv_sec = ns / 1000000000LL,
		.tv_nsec = ns % 1000000000LL };
}

/* A fd of ours moved to the private range and marked private. */
static int
privatise(int fd)
{
	struct stream *old;
	int nfd, left;

	if (fd < 0)
		return fd;
	nfd = real.fcntl(fd, F_DUPFD_CLOEXEC, runtime_private_floor());
	if (nfd >= 0) {
		real.close(fd);
		fd = nfd;
	}
	if ((old = fdtab_forget(fd, &left)) != NULL)
		stream_unref(old);	/* a stale slot: number reused */
	(void)fdtab_install(fd, NULL, FDTAB_PRIVATE, &old);
	return fd;
}

static void
unprivatise_close(int fd)
{
	if (fd < 0)
		return;
	fdtab_clear_tag(fd);
	real.close(fd);
}

void
replay_wake(void)
{
	uint64_t one = 1;
	int saved = errno;

	if (rp.evfd >= 0 && !atomic_exchange(&wake_pending, true))
		(void)real.write(rp.evfd, &one, sizeof(one));
	errno = saved;
}

void
replay_note_staged(struct stream *s, int64_t since_ns)
{
	int64_t due = 0, old;

	if (since_ns != 0)
		due = since_ns +
		    (int64_t)runtime_config()->flush_ms * 1000000LL;
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
		if (rp.nblocked == rp.capblocked) {
			size_t nc = rp.capblocked ? rp.capblocked * 2 : 8;
			struct stream **v = reallocarray(rp.blocked, nc,
			    sizeof(*v));

			if (v == NULL)
				ok = false;
			else {
				rp.blocked = v;
				rp.capblocked = nc;
			}
		}
		if (ok) {
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
	size_t i;

	if (atomic_load(&s->waiters) > 0)
		pthread_cond_broadcast(&s->cv);
	if (atomic_load(&blocked) == 0)
		return;
	pthread_mutex_lock(&rp.mu);
	for (i = 0; i < rp.nblocked; i++)
		if (rp.blocked[i] != s)
			pthread_cond_broadcast(&rp.blocked[i]->cv);
	pthread_mutex_unlock(&rp.mu);
}

/* Streams whose timer is due (or ready), with a reference each. */
static size_t
collect_due(struct stream ***out, size_t *cap, int64_t now)
{
	size_t i, k = 0;

	pthread_mutex_lock(&rp.mu);
	for (i = 0; i < rp.n; i++) {
		struct stream *s = rp.list[i];
		int64_t f = atomic_load(&s->flush_due);
		int64_t l = atomic_load(&s->linger_due);
		int64_t y = atomic_load(&s->sync_due);

		if (!s->registered)
			continue;
		if (!atomic_load(&s->ready) && !(f != 0 && f <= now) &&
		    !(l != 0 && l <= now) && !(y != 0 && y <= now) &&
		    atomic_load(&s->publish_due) > now)
			continue;
		if (k == *cap) {
			size_t nc = *cap ? *cap * 2 : 16;
			struct stream **v = reallocarray(*out, nc, sizeof(*v));

			if (v == NULL)
				break;
			*out = v;
			*cap = nc;
		}
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
			if (*ndrop == *dcap) {
				size_t nc = *dcap ? *dcap * 2 : 16;
				struct stream **v = reallocarray(*drop, nc,
				    sizeof(*v));

				if (v == NULL) {
					rp.list[k++] = s;	/* next turn */
					continue;
				}
				*drop = v;
				*dcap = nc;
			}
			s->listed = false;
			(*drop)[(*ndrop)++] = s;
			continue;
		}
		rp.list[k++] = s;
		if (atomic_load(&s->ready))
			next = 0;
		if ((t = atomic_load(&s->flush_due)) != 0 && t < next)
			next = t;
		if ((t = atomic_load(&s->linger_due)) != 0 && t < next)
			next = t;
		if ((t = atomic_load(&s->sync_due)) != 0 && t < next)
			next = t;
		if ((t = atomic_load(&s->publish_due)) < next)
			next = t;
	}
	rp.n = k;
	return next;
}

static void *
replay_main(void *arg)
{
	struct stream **drop = NULL, **due = NULL;
	size_t dcap = 0, ducap = 0;
	struct epoll_event ev[64];
	uint64_t v;

	(void)arg;
	for (;;) {
		size_t ndrop = 0, ndue, i;
		int64_t next, now;
		int timeout, n, epfd;

		pthread_mutex_lock(&rp.mu);
		if (rp.stopping)
			break;
		next = sweep_locked(&drop, &ndrop, &dcap);
		epfd = rp.epfd;
		pthread_mutex_unlock(&rp.mu);
		for (i = 0; i < ndrop; i++)
			stream_unref(drop[i]);

		now = mono_ns();
		if (next == INT64_MAX)
			timeout = -1;
		else if (next <= now)
			timeout = 0;
		else if ((next - now) / 1000000 >= INT_MAX)
			timeout = INT_MAX;
		else	/* rounded up: never early, so never a busy turn */
			timeout = (int)((next - now + 999999) / 1000000);
		n = epoll_wait(epfd, ev, (int)(sizeof(ev) / sizeof(ev[0])),
		    timeout);
		/* Every stream an event names was listed under rp.mu: taking
		 * it orders us after that, in terms a race detector sees too
		 * (it cannot follow epoll through our duplicated epoll fd). */
		pthread_mutex_lock(&rp.mu);
		pthread_mutex_unlock(&rp.mu);
		for (i = 0; n > 0 && i < (size_t)n; i++) {
			if (ev[i].data.ptr == NULL) {
				atomic_store(&wake_pending, false);
				while (read(rp.evfd, &v, sizeof(v)) > 0)
					;
				continue;
			}
			stream_service(ev[i].data.ptr);
		}
		now = mono_ns();
		ndue = collect_due(&due, &ducap, now);
		for (i = 0; i < ndue; i++) {
			stream_service(due[i]);
			stream_unref(due[i]);
		}
	}
	rp.exited = true;
	pthread_cond_broadcast(&rp.cv);
	pthread_mutex_unlock(&rp.mu);
	free(drop);
	free(due);
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

	rp.epfd = privatise(real.epoll_create1(EPOLL_CLOEXEC));
	rp.evfd = privatise(real.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
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
	rp.stopping = false;
	rp.exited = false;
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

	pthread_once(&rp_once, init_cv);
	pthread_mutex_lock(&rp.mu);
	if (rp.stopping) {
		rc = -ESHUTDOWN;
		goto out;
	}
	if (!rp.started && (rc = start_locked()) < 0)
		goto out;
	if (!s->listed && rp.n == rp.cap) {
		size_t nc = rp.cap ? rp.cap * 2 : 16;
		struct stream **v = reallocarray(rp.list, nc, sizeof(*v));

		if (v == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		rp.list = v;
		rp.cap = nc;
	}
	if ((dup = real.fcntl(fd, F_DUPFD_CLOEXEC,
	    runtime_private_floor())) == -1 &&
	    (dup = real.fcntl(fd, F_DUPFD_CLOEXEC, 3)) == -1) {
		rc = -errno;
		goto out;
	}
	dup = privatise(dup);
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
		unprivatise_close(s->dup);
		s->dup = -1;
		s->registered = false;
		atomic_store(&s->ready, false);
		if (--rp.registered == 0)
			pthread_cond_broadcast(&rp.cv);
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
replay_drain(int64_t deadline_ns)
{
	struct timespec ts = mono_ts(deadline_ns);
	struct stream **left;
	size_t n = 0, i;

	pthread_once(&rp_once, init_cv);
	pthread_mutex_lock(&rp.mu);
	if (!rp.started) {
		pthread_mutex_unlock(&rp.mu);
		return;
	}
	while (rp.registered > 0)
		if (pthread_cond_timedwait(&rp.cv, &rp.mu, &ts) == ETIMEDOUT)
			break;
	rp.stopping = true;
	pthread_mutex_unlock(&rp.mu);
	atomic_store(&wake_pending, false);
	replay_wake();
	pthread_mutex_lock(&rp.mu);
	ts = mono_ts(mono_ns() + 1000000000LL);
	while (!rp.exited)
		if (pthread_cond_timedwait(&rp.cv, &rp.mu, &ts) == ETIMEDOUT)
			break;
	left = calloc(rp.n ? rp.n : 1, sizeof(*left));
	for (i = 0; left != NULL && i < rp.n; i++)
		if (rp.list[i]->registered) {
			stream_ref(rp.list[i]);
			left[n++] = rp.list[i];
		}
	pthread_mutex_unlock(&rp.mu);
	for (i = 0; i < n; i++) {
		stream_orphan_at_exit(left[i], mono_ns() + 1000000000LL);
		stream_unref(left[i]);
	}
	free(left);
}

void
replay_fork_prepare(void)
{
	pthread_once(&rp_once, init_cv);
	pthread_mutex_lock(&rp.mu);
}

void
replay_fork_parent(void)
{
	pthread_mutex_unlock(&rp.mu);
}

void
replay_fork_child(void)
{
	size_t i;

	/* Our copies of the parent's duplicates would keep its connections
	 * open after the parent finishes them. */
	for (i = 0; i < rp.n; i++)
		if (rp.list[i]->registered && rp.list[i]->dup >= 0)
			real.close(rp.list[i]->dup);
	if (rp.epfd >= 0)
		real.close(rp.epfd);
	if (rp.evfd >= 0)
		real.close(rp.evfd);
	free(rp.list);
	rp.list = NULL;
	rp.n = rp.cap = rp.registered = 0;
	/* The parent's waiters do not exist here. */
	free(rp.blocked);
	rp.blocked = NULL;
	rp.nblocked = rp.capblocked = 0;
	rp.epfd = rp.evfd = -1;
	rp.started = rp.stopping = rp.exited = false;
	atomic_store(&wake_pending, false);
	atomic_store(&blocked, 0);
	pthread_mutex_unlock(&rp.mu);
}
