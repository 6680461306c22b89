/*
 * resume.c — when a client comes back (TCPSPOOL_RESUME=peer-addr).
 *
 * A stream whose peer went away (reset, broken pipe, timed out) with
 * records left is released as "waiting" for TCPSPOOL_RESUME_TTL and named
 * in the spool dir's registry under its peer's IP address (resume_wait;
 * spool/waiting.c). The first write on a connection the library knows
 * nothing of asks the registry (one openat that fails in the common case)
 * for that connection's peer address; waiting streams it can claim are
 * adopted: the connection's stream starts SPOOLING with them in front
 * (s->pre), and the replay thread sends their records first, oldest
 * stream first, each from the first byte of its first record not fully
 * delivered (a record cut by the old connection is sent again whole:
 * at-least-once per record), deleting each once sent, then the stream's
 * own spool, which holds every application write behind them. The first
 * write, not accept, because a fork-per-connection server accepts in one
 * process and writes in another.
 *
 * An adopted stream that is not sent in full (the new connection fails
 * too, the process ends, an abortive close) waits again (resume_give_back)
 * with a new expiry, before the stream's own spool: order by creation
 * keeps it first. Only what the kernel refused was ever spooled: what the
 * old connection's kernel buffers held is gone with it (README).
 */
#include <sys/socket.h>
#include <sys/syscall.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "classify.h"
#include "fdtab.h"
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

_Atomic bool resume_armed;

/*
 * A fd's first look at the registry is made under its slot's tag
 * FDTAB_CLAIMING, set from NULL by one thread (compare and swap): another
 * thread's write or dup of the same fd waits until the tag is gone
 * (resume_wait_claimed) and then finds the fd's stream, so none of its
 * bytes go ahead of adopted records; a nested hook gets an EAGAIN of ours
 * instead (ops.c). No lock is held meanwhile: other fds' first writes
 * never wait for this one's disk. Two processes' claims are kept apart by
 * the streams' dir locks (spool/waiting.c).
 *
 * The look runs with every signal blocked on its thread (what glibc lets
 * pthread_sigmask block: not its own SIGCANCEL and SIGSETXID; nor those
 * of a fault, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP and SIGSYS, which
 * blocked would kill the process instead of running the host's handler),
 * so that no handler of the host runs in the middle of it. A handler may leave a
 * write(2) with siglongjmp (write is async-signal-safe): out of a claim
 * it would leave the tag (every later writer, close or dup2 of the fd
 * waiting for it forever), the thread marked as in the library
 * (rt_depth: its later hooks all nested), the claim's dir locks held for
 * good, and maybe a lock (claims.mu, rt.mu, the allocator's). A waiter
 * that noticed an abandoned tag (an owner thread id and a generation)
 * could clear the tag, but none of the rest; blocking costs two system
 * calls on the first write of a fd while resume is on, next to the
 * classification's and the registry's own, and defers the thread's
 * signals by one look (a few system calls; about 20 ms more when a sweep
 * or a command holds a waiting stream for a moment). A signal that came
 * meanwhile is delivered when the mask is restored, after the look and
 * before the write itself: a handler that leaves then leaves a write that
 * did nothing, as without the library. (SAFETY.md, signals.)
 */

/*
 * Claims and fork. A claim's stream dir locks are flocks: held by an
 * open file description, which a fork child's copy of the fd shares, so
 * a child that lives on would keep the parent's claim locked after the
 * parent let go. A registered stream's adopted locks are closed in a
 * child by replay_fork_child (resume_fork_child_close); before that, the
 * claim in flight is named here, and resume_fork_child closes its locks.
 *
 * claims.mu guards the list and every change of a claim's lock fds (made
 * and stored, closed and set to -1, moved: spool_waiting_claim's fd_mu,
 * claim_unlock). It is a leaf: nothing else is locked under it, only
 * sysio's gate is entered (to make and close an fd), and it is taken by
 * our fork prepare handler after every other lock of ours but the log's.
 * A fork waits for it at most one openat and one flock.
 */
struct resume_claim {
	struct resume_claim *next, **prevp;
	struct spool_claimed *v;	/* lock_fd of v[0..n): ours or -1 */
	int n;
};

static struct {
	pthread_mutex_t mu;
	struct resume_claim *head;
} claims = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* rec names v[0..n) (every lock_fd -1) until claim_forget. */
static void
claim_track(struct resume_claim *rec, struct spool_claimed *v, int n)
{
	int i;

	for (i = 0; i < n; i++)
		v[i].lock_fd = -1;
	pthread_mutex_lock(&claims.mu);
	rec->v = v;
	rec->n = n;
	if ((rec->next = claims.head) != NULL)
		claims.head->prevp = &rec->next;
	rec->prevp = &claims.head;
	claims.head = rec;
	pthread_mutex_unlock(&claims.mu);
}

/* The first n of rec's entries move to v (the prefix's): rec names them
 * there from now on. */
static void
claim_move(struct resume_claim *rec, struct spool_claimed *v, int n)
{
	pthread_mutex_lock(&claims.mu);
	memcpy(v, rec->v, (size_t)n * sizeof(*v));
	rec->v = v;
	rec->n = n;
	pthread_mutex_unlock(&claims.mu);
}

/* Its locks are closed, or a registered stream holds them. */
static void
claim_forget(struct resume_claim *rec)
{
	pthread_mutex_lock(&claims.mu);
	if ((*rec->prevp = rec->next) != NULL)
		rec->next->prevp = rec->prevp;
	pthread_mutex_unlock(&claims.mu);
}

/* Lets go of one claimed stream. */
static void
claim_unlock(struct spool_claimed *c)
{
	pthread_mutex_lock(&claims.mu);
	spool_claimed_unlock(c);
	pthread_mutex_unlock(&claims.mu);
}

void
resume_fork_prepare(void)
{
	pthread_mutex_lock(&claims.mu);
}

void
resume_fork_parent(void)
{
	pthread_mutex_unlock(&claims.mu);
}

void
resume_fork_child(bool consistent)
{
	struct resume_claim *rec;
	int i;

	/* The claiming threads are the parent's: our copies of their
	 * locks go (see resume_fork_child_close). Their records are on
	 * their stacks, of which this process has a copy. */
	for (rec = consistent ? claims.head : NULL; rec != NULL;
	    rec = rec->next)
		for (i = 0; i < rec->n; i++)
			if (rec->v[i].lock_fd >= 0) {
				(void)syscall(SYS_close, rec->v[i].lock_fd);
				rec->v[i].lock_fd = -1;
			}
	claims.head = NULL;
	pthread_mutex_init(&claims.mu, NULL);
}

void
resume_arm(void)
{
	const char *v = getenv("TCPSPOOL_RESUME");

	atomic_store_explicit(&resume_armed, v != NULL && *v != '\0' &&
	    strcmp(v, "off") != 0, memory_order_relaxed);
}

static int64_t
resume_deadline(void)
{
	return real_ns() + (int64_t)runtime_config()->resume_ttl_ms *
	    NS_PER_MS;
}

/* The status of an adopted stream: delivered by this process now, which
 * holds its lock. Its pid stays the writer's (the sweep believes only
 * that one's status). */
static void
mark_adopted(struct spool_dir *d, struct spool_claimed *c, int fd)
{
	struct spool_status st = c->status;
	struct spool_err e;

	strlcpy(st.state, "resumed", sizeof(st.state));
	snprintf(st.reason, sizeof(st.reason), "sent to fd %d of pid %d",
	    fd, (int)runtime_pid());
	/* A TTL from now: a sender that dies leaves it to the next
	 * connection of the peer (FORMAT.md §11) for that long. */
	st.expires_ns = resume_deadline();
	st.updated_ns = 0;
	st.holder = runtime_pid();
	if (spool_status_release(d, c->name, &st, &e) < 0)
		log_warn("spool %s: status: %s", c->name, e.msg);
}

/* Waiting again for the peer: its entry is still in the registry (made
 * again if it is not), its status says so, and then its lock goes: no
 * claim sees it between the two (FORMAT.md §11). */
static void
wait_again(struct spool_dir *d, const char *key, struct spool_claimed *c,
    int64_t at)
{
	struct spool_status st = c->status;
	struct spool_err e;

	strlcpy(st.state, "waiting", sizeof(st.state));
	st.expires_ns = at;
	st.holder = 0;
	st.updated_ns = 0;
	if (spool_waiting_add(d, key, c->created_ns, c->name, &e) < 0 ||
	    spool_status_release(d, c->name, &st, &e) < 0)
		log_warn("spool %s: cannot wait for its peer again, kept as "
		    "an orphan: %s", c->name, e.msg);
	claim_unlock(c);
}


/* The adopted streams of pre not sent in full wait again; pre's claim in
 * flight (if any) is forgotten once its locks are let go; pre is freed. */
static void
give_back(struct resume_prefix *pre, int fd, const char *peer)
{
	struct spool_dir *d = runtime_dir();
	struct spool_err e;
	int64_t at;
	int i;

	if (pre->cur != NULL) {
		if (spool_cursor_ack(pre->cur, 0, 0, true, &e) < 0)
			log_warn("spool %s: progress: %s", pre->v[pre->i].name,
			    e.msg);
		spool_cursor_close(pre->cur);
	}
	if (pre->i < pre->n && d != NULL) {
		at = resume_deadline();
		for (i = pre->i; i < pre->n; i++)
			wait_again(d, pre->key, &pre->v[i], at);
		log_warn("fd %d (peer %s): %d resumed spool%s not sent in "
		    "full wait%s for the peer again (TCPSPOOL_RESUME_TTL)",
		    fd, peer, pre->n - pre->i, pre->n - pre->i > 1 ? "s" : "",
		    pre->n - pre->i > 1 ? "" : "s");
		syncer_sweep_at(at, 0);
	}
	for (i = 0; i < pre->n; i++)
		claim_unlock(&pre->v[i]);
	if (pre->claim != NULL)
		claim_forget(pre->claim);
	free(pre);
}

void
resume_give_back(struct stream *s)
{
	struct resume_prefix *pre = s->pre;

	if (pre == NULL)
		return;
	s->pre = NULL;
	atomic_store(&s->resuming, false);
	give_back(pre, s->fd, s->id.peer);
}

int
resume_cursor(struct stream *s, struct spool_cursor **c, struct spool_err *e)
{
	struct resume_prefix *pre = s->pre;
	int rc;

	if (pre == NULL || pre->i >= pre->n)
		return 0;
	if (pre->cur == NULL) {
		rc = spool_cursor_open(runtime_dir(), pre->v[pre->i].name,
		    &pre->cur, e);
		if (rc < 0) {
			pre->cur = NULL;
			return rc;
		}
		spool_cursor_whole_record(pre->cur);
	}
	*c = pre->cur;
	return 1;
}

void
resume_next(struct stream *s, int rc, const struct spool_err *e)
{
	struct resume_prefix *pre = s->pre;
	struct spool_claimed *c = &pre->v[pre->i];
	struct spool_dir *d = runtime_dir();
	struct spool_losses l = { 0 };
	struct spool_status st;
	struct spool_err re;

	if (pre->cur != NULL) {
		spool_cursor_losses(pre->cur, &l);
		(void)spool_cursor_ack(pre->cur, 0, 0, true, &re);
		spool_cursor_close(pre->cur);
		pre->cur = NULL;
	}
	if (rc == 0 && l.records == 0) {
		int r;

		/* Out of the registry, then gone; then our lock. */
		(void)spool_waiting_take(d, pre->key, c->created_ns, c->name);
		r = spool_stream_remove(d, c->name, &re);

		if (r < 0 && r != -ENOENT)
			log_warn("spool %s: sent, but: %s", c->name, re.msg);
		else
			log_info("fd %d (peer %s): resumed spool %s sent",
			    s->fd, s->id.peer, c->name);
	} else {
		/* What it could not read stays, for tcpspool verify. */
		st = c->status;
		strlcpy(st.state, "orphan", sizeof(st.state));
		strlcpy(st.reason, "resume: unreadable", sizeof(st.reason));
		st.expires_ns = 0;
		st.holder = 0;
		st.updated_ns = 0;
		(void)spool_status_release(d, c->name, &st, &re);
		(void)spool_waiting_take(d, pre->key, c->created_ns, c->name);
		log_error("fd %d (peer %s): resumed spool %s: %s; kept as an "
		    "orphan", s->fd, s->id.peer, c->name, rc < 0 ? e->msg :
		    "records lost to corruption");
	}
	claim_unlock(c);
	if (++pre->i >= pre->n)
		atomic_store(&s->resuming, false);
}

void
resume_park(struct stream *s)
{
	struct spool_err e;

	if (s->pre != NULL && s->pre->cur != NULL) {
		(void)spool_cursor_ack(s->pre->cur, 0, 0, true, &e);
		spool_cursor_park(s->pre->cur);
	}
}

void
resume_persist(struct stream *s)
{
	struct spool_err e;

	if (s->pre != NULL && s->pre->cur != NULL)
		(void)spool_cursor_ack(s->pre->cur, 0, 0, true, &e);
}

static bool
wait_for_peer(struct stream *s, const char *reason, const char *detail)
{
	const struct tcpspool_config *cfg = runtime_config();
	struct spool_dir *d = runtime_dir();
	char key[SPOOL_KEY_MAX], name[SPOOL_NAME_MAX];
	struct spool_counts c;
	struct spool_err e;
	int64_t at, created = s->id.created_ns;

	if (cfg->resume == RESUME_OFF || s->family == AF_UNIX || d == NULL ||
	    spool_peer_key(s->id.peer, key) < 0)
		return false;
	spool_stream_counts(s->spool, &c);
	if (c.pending_bytes == 0) {
		spool_release(s, SPOOL_CLOSE_REMOVE, NULL);
		return true;
	}
	at = resume_deadline();
	strlcpy(name, s->name, sizeof(name));
	spool_stream_set_expiry(s->spool, at);
	spool_stream_set_release_state(s->spool, "waiting");
	log_warn("spool %s (fd %d, peer %s): %s%s%s; %" PRIu64 " bytes wait "
	    "for the peer's next connection from its address for %" PRIu32
	    " ms (TCPSPOOL_RESUME_TTL)", name, s->fd, s->id.peer, reason,
	    detail ? ": " : "", detail ? detail : "", c.pending_bytes,
	    cfg->resume_ttl_ms);
	/* The token before the status (FORMAT.md §11). Adopted streams
	 * not sent in full get theirs in spool_release, before this one's
	 * status too. */
	if (spool_waiting_add(d, key, created, name, &e) < 0) {
		log_warn("spool %s: cannot wait for its peer, kept as an "
		    "orphan: %s", name, e.msg);
		spool_stream_set_release_state(s->spool, "orphan");
	}
	spool_release(s, SPOOL_CLOSE_KEEP, reason);
	syncer_sweep_at(at, 0);
	return true;
}

bool
resume_wait(struct stream *s, int err, const char *reason,
    const char *detail)
{
	return orphan_peer_gone(err) && wait_for_peer(s, reason, detail);
}

bool
resume_wait_at_exit(struct stream *s)
{
	return atomic_load(&s->resuming) &&
	    wait_for_peer(s, "exit while sending resumed spools first", NULL);
}

/* Under s's mu, s new and installed for fd: SPOOLING with nothing of its
 * own yet, registered for the replay thread, which sends s->pre first. */
static bool
start_spooling(struct stream *s, int fd)
{
	int rc;

	if (ensure_spool(s) < 0)
		return false;
	if ((rc = replay_register(s, fd)) < 0) {
		if (rc != -ESHUTDOWN)
			log_error("fd %d: cannot start replay, passing "
			    "through: %s", fd, strerror(-rc));
		spool_release(s, SPOOL_CLOSE_REMOVE, NULL);
		return false;
	}
	set_state(s, STREAM_SPOOLING);
	atomic_store(&s->ready, true);
	replay_wake();
	return true;
}

/* fd is still the connection the claim was for. */
static bool
same_peer(int fd, const struct sockinfo *si)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char peer[SPOOL_ADDR_MAX];

	if (getpeername(fd, (struct sockaddr *)&ss, &len) == -1)
		return false;
	format_addr(&ss, len, peer, sizeof(peer));
	return strcmp(peer, si->peer) == 0;
}

/*
 * Ends a claim: the slot, still FDTAB_CLAIMING unless the fd was closed
 * meanwhile, becomes to (NULL: asked again at the next write).
 */
static void
claim_end(int fd, struct stream *to)
{
	struct stream *old = NULL;

	(void)fdtab_install(fd, FDTAB_CLAIMING, to, &old);
}

static void
adopt(int fd, const struct sockinfo *si, struct resume_prefix *pre)
{
	struct spool_dir *d = runtime_dir();
	struct stream *s, *old = NULL;
	uint64_t bytes = 0;
	int i, n;

	/* fd is still the connection the claim was for (not closed, and
	 * its number given to another, meanwhile). */
	if (!same_peer(fd, si) || (s = stream_new(fd, si)) == NULL) {
		give_back(pre, fd, si->peer);
		claim_end(fd, NULL);
		return;
	}
	for (i = 0; i < pre->n; i++) {
		mark_adopted(d, &pre->v[i], fd);
		bytes += pre->v[i].status.pending_bytes;
	}
	pthread_mutex_lock(&s->mu);
	s->pre = pre;
	atomic_store(&s->resuming, true);
	/* Not installed (closed meanwhile), or replay could not start (its
	 * spool_release gave them back already): they wait again. */
	if (!fdtab_install(fd, FDTAB_CLAIMING, s, &old) ||
	    !start_spooling(s, fd)) {
		resume_give_back(s);
		claim_end(fd, NULL);
		pthread_mutex_unlock(&s->mu);
		stream_unref(s);
		return;
	}
	/* Registered: a fork child finds the locks through the replay list
	 * from here (replay_fork_child); through both, each once, until the
	 * claim is forgotten (under s->mu: no give-back frees pre before). */
	claim_forget(pre->claim);
	pre->claim = NULL;
	n = pre->n;	/* pre is the replay thread's from here */
	pthread_mutex_unlock(&s->mu);
	stream_unref(s);	/* the slot holds its own */
	log_info("fd %d (peer %s): resuming %d spool%s waiting for this "
	    "peer, %" PRIu64 " bytes, before what the application writes",
	    fd, si->peer, n, n > 1 ? "s" : "", bytes);
}

/* Under the fd's FDTAB_CLAIMING tag (si its connection, TCP): ends it,
 * one way or another. */
static void
first_write_claimed(int fd, const struct sockinfo *si)
{
	struct spool_claimed v[RESUME_MAX];
	struct resume_prefix *pre;
	struct spool_err e;
	struct spool_dir *d;
	struct resume_claim rec;
	char key[SPOOL_KEY_MAX];
	int n = 0, i;

	if (spool_peer_key(si->peer, key) < 0 || (d = runtime_dir()) ==
	    NULL) {
		claim_end(fd, FDTAB_CHECKED);
		return;
	}
	/* Nothing is allocated unless something waits for this peer. */
	claim_track(&rec, v, RESUME_MAX);
	if ((n = spool_waiting_claim(d, key, v, RESUME_MAX, &claims.mu,
	    &e)) <= 0) {
		claim_forget(&rec);
		if (n < 0)
			log_warn("fd %d (peer %s): cannot look for spools "
			    "waiting for it: %s", fd, si->peer, e.msg);
		claim_end(fd, FDTAB_CHECKED);
		return;
	}
	if ((pre = calloc(1, sizeof(*pre))) == NULL) {
		for (i = 0; i < n; i++)
			claim_unlock(&v[i]);	/* as they were */
		claim_forget(&rec);
		claim_end(fd, NULL);
		return;
	}
	claim_move(&rec, pre->v, n);
	pre->claim = &rec;
	strlcpy(pre->key, key, sizeof(pre->key));
	pre->n = n;
	adopt(fd, si, pre);	/* forgets rec */
}

void
resume_wait_claimed(int fd)
{
	struct timespec ts = { 0, 1000000 };
	int i;

	for (i = 0; fdtab_peek(fd) == FDTAB_CLAIMING; i++)
		if (i < 64)
			sched_yield();
		else
			nanosleep(&ts, NULL);	/* its claim reads the disk */
}

void
resume_first_write(int fd)
{
	struct stream *old = NULL;
	struct sockinfo si;
	sigset_t all, mask;
	int saved = errno, cancel;

	if (rt_nested())
		return;
	if (fdtab_peek(fd) == FDTAB_CLAIMING) {
		resume_wait_claimed(fd);	/* another thread's claim */
		errno = saved;
		return;
	}
	/* No handler of the host runs on this thread until the look is
	 * over (see the top of this file). */
	sigfillset(&all);
	/* Not the signals of a fault (or of a seccomp trap on openat or
	 * flock): blocked, they kill the process at once instead of running
	 * the host's handler. */
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	sigdelset(&all, SIGTRAP);
	sigdelset(&all, SIGSYS);
	pthread_sigmask(SIG_BLOCK, &all, &mask);
	rt_enter();
	if (!runtime_active() || runtime_config()->resume == RESUME_OFF) {
		atomic_store(&resume_armed, false);
		goto out;
	}
	if (replay_exiting() || !runtime_own_process())
		goto out;
	/* Classified first: only a TCP connection is ever tagged claiming
	 * (a pipe's or a file's writers never wait). */
	switch (classify_fd(fd, runtime_config(), &si)) {
	case FD_NEVER:
		(void)fdtab_install(fd, NULL, FDTAB_IGNORED, &old);
		goto out;
	case FD_NOT_NOW:
		goto out;
	case FD_SPOOL:
		break;
	}
	if (si.family == AF_UNIX) {
		(void)fdtab_install(fd, NULL, FDTAB_CHECKED, &old);
		goto out;
	}
	if (fdtab_install(fd, NULL, FDTAB_CLAIMING, &old)) {
		/* A status read is a cancellation point: a claim cancelled
		 * half way would leave the tag, and its fd's writers, stuck. */
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
		first_write_claimed(fd, &si);
		pthread_setcancelstate(cancel, NULL);
	} else if (fdtab_peek(fd) == FDTAB_CLAIMING) {
		rt_leave();
		pthread_sigmask(SIG_SETMASK, &mask, NULL);
		resume_wait_claimed(fd);	/* another thread's claim */
		errno = saved;
		return;
	}
out:
	rt_leave();
	/* A signal that came meanwhile is delivered here, the look over. */
	pthread_sigmask(SIG_SETMASK, &mask, NULL);
	errno = saved;
}

void
resume_fork_child_close(struct stream *s)
{
	int i;

	/* The parent's locks: closing our copies of their open file
	 * descriptions keeps them held by the parent (flock), and lets the
	 * parent's release be the last. Each is closed once: a claim not
	 * yet forgotten names the same entries (resume_fork_child). */
	if (s->pre == NULL)
		return;
	for (i = 0; i < s->pre->n && i < RESUME_MAX; i++)
		if (s->pre->v[i].lock_fd >= 0) {
			(void)syscall(SYS_close, s->pre->v[i].lock_fd);
			s->pre->v[i].lock_fd = -1;
		}
}
