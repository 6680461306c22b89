/*
 * handover.c — streams given to `tcpspool daemon` (handover.h): the
 * origin record, the queue of messages, and the thread that sends them.
 *
 * Lock rule: ho.mu guards the queue, the connection's fd number and the
 * list of streams the daemon holds; it is taken under a stream's mu
 * (never the reverse) and held to queue or dequeue, and to make or close
 * the thread's own fds (a socket, a duplicate: running_close says why
 * no such close can wait); no system call that can block runs under it
 * (lock order: stream mu, ho.mu, sysio's gate). The thread sends, and
 * awaits the daemon's answers, with no lock held.
 *
 * Counts for process end (atomics, read without lock from a handler):
 * live_n streams are SPOOLING or LINGER; held_n of them the daemon holds.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "handover.h"
#include "log.h"
#include "real.h"
#include "runtime.h"
#include "sysio.h"
#include "util.h"

struct ho_node {
	struct ho_node *next;
	struct spool_ho_msg m;
	int fd;			/* take: our duplicate to send, else -1 */
	struct stream *s;	/* one reference */
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct ho_node *head, *tail;
	bool thread;		/* started (in this process) */
	/* The thread's; closed by it or by a child. Read without lock at
	 * process end (handover_covers_all). */
	_Atomic int conn;
	/* The thread's other fds while it uses them (syncer.c's running_fd
	 * pattern): made, and closed, under mu, so a child forked meanwhile
	 * closes its copies (a copy of a duplicate would keep the parent's
	 * connection open and delay its FIN). */
	int running_fd;		/* the duplicate being sent */
	int readopt_fd;		/* readopt's duplicate being sent */
	int connecting;		/* the connection being made */
	struct stream **held;	/* the daemon has them, a reference each */
	size_t nheld, capheld;
} ho = { .mu = PTHREAD_MUTEX_INITIALIZER, .conn = -1, .running_fd = -1,
    .readopt_fd = -1, .connecting = -1 };

static _Atomic int live_n, held_n;
static _Atomic bool said_absent;

static bool
is_live(enum stream_state st)
{
	return st == STREAM_SPOOLING || st == STREAM_LINGER;
}

/*
 * fork: called by runtime.c's handlers, in its lock order (stream mu,
 * ho.mu, sysio's gate: ho.mu after rp.mu and sq.mu, which no holder of
 * ho.mu takes). Not a pthread_atfork of our own: handlers run in reverse
 * order of registration, so another library's handler registered between
 * the runtime's and ours would have run with ho.mu held and outside the
 * runtime's nested mark, and deadlocked on ho.mu in a hook that starts a
 * stream's spool (take) on the forking thread.
 */
void
handover_fork_prepare(void)
{
	pthread_mutex_lock(&ho.mu);
}

void
handover_fork_parent(void)
{
	pthread_mutex_unlock(&ho.mu);
}

/* The child: the connection, the queue and the held streams are the
 * parent's. Our copies of the fds go; the memory is left (the parent's
 * streams are forgotten the same way, fdtab.c). */
void
handover_fork_child(bool consistent)
{
	struct ho_node *n;

	if (consistent) {
		for (n = ho.head; n != NULL; n = n->next)
			if (n->fd >= 0)
				(void)syscall(SYS_close, n->fd);
		if (ho.conn >= 0)
			(void)syscall(SYS_close, ho.conn);
		if (ho.running_fd >= 0)
			(void)syscall(SYS_close, ho.running_fd);
		if (ho.readopt_fd >= 0)
			(void)syscall(SYS_close, ho.readopt_fd);
		if (ho.connecting >= 0)
			(void)syscall(SYS_close, ho.connecting);
	}
	ho.head = ho.tail = NULL;
	ho.conn = -1;
	ho.running_fd = ho.readopt_fd = ho.connecting = -1;
	ho.thread = false;
	ho.held = NULL;
	ho.nheld = ho.capheld = 0;
	atomic_store(&live_n, 0);
	atomic_store(&held_n, 0);
	pthread_mutex_init(&ho.mu, NULL);
}

/* Is a daemon's socket in the spool dir? One stat, no connect. */
static bool
daemon_present(struct spool_dir *d)
{
	struct stat st;

	if (syscall(SYS_newfstatat, spool_dir_fd(d), SPOOL_DAEMON_SOCK, &st,
	    AT_SYMLINK_NOFOLLOW) == -1)
		return false;
	return S_ISSOCK(st.st_mode);
}

/*
 * Closes *slot (ho.running_fd, readopt_fd, connecting) under ho.mu, so
 * that a child forked meanwhile never closes a number reused since. A
 * duplicate of s's socket is closed there only while s still holds its
 * own (s->dup, under s->mu): then ours is not the socket's last fd and
 * its close cannot wait out an SO_LINGER with ho.mu held (application
 * threads take ho.mu). Otherwise it is closed holding no lock (a child
 * forked in that instant keeps a copy until it execs or exits).
 */
static void
running_close(int *slot, struct stream *s)
{
	bool held_by_s = true;
	int fd;

	if (s != NULL)
		pthread_mutex_lock(&s->mu);
	if (s != NULL)
		held_by_s = s->dup >= 0;
	pthread_mutex_lock(&ho.mu);
	fd = *slot;
	*slot = -1;
	if (held_by_s && fd >= 0)
		sysio_close(fd);
	pthread_mutex_unlock(&ho.mu);
	if (s != NULL)
		pthread_mutex_unlock(&s->mu);
	if (!held_by_s && fd >= 0)
		sysio_close(fd);
}

static int
connect_daemon(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct spool_dir *d = runtime_dir();
	struct timeval tv = { .tv_sec = 2 };
	bool g;
	int fd;

	if (d == NULL || (size_t)snprintf(sa.sun_path, sizeof(sa.sun_path),
	    "%s/%s", spool_dir_path(d), SPOOL_DAEMON_SOCK) >=
	    sizeof(sa.sun_path))
		return -1;
	pthread_mutex_lock(&ho.mu);
	g = sysio_gate_enter();
	fd = (int)syscall(SYS_socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0)
		fd = sysio_place_fd(fd);
	sysio_gate_leave(g);
	ho.connecting = fd;
	pthread_mutex_unlock(&ho.mu);
	if (fd < 0)
		return -1;
	/* A daemon that does not read never holds this thread for long. */
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (syscall(SYS_connect, fd, &sa, sizeof(sa)) == -1) {
		log_debug("tcpspool daemon at %s: %s", sa.sun_path,
		    strerror(errno));
		running_close(&ho.connecting, NULL);
		return -1;
	}
	/* It becomes ho.conn in the same section that stops naming it
	 * connecting: a child forked at any moment closes its copy. */
	pthread_mutex_lock(&ho.mu);
	ho.connecting = -1;
	ho.conn = fd;
	pthread_mutex_unlock(&ho.mu);
	log_debug("tcpspool daemon at %s: connected", sa.sun_path);
	return fd;
}

static int
send_msg(int fd, const struct spool_ho_msg *m, int pass)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { (void *)m, sizeof(*m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;
	long r;

	if (pass >= 0) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &pass, sizeof(int));
	}
	do
		r = syscall(SYS_sendmsg, fd, &mh, MSG_NOSIGNAL);
	while (r == -1 && errno == EINTR);
	return r == (long)sizeof(*m) ? 0 : -1;
}

/*
 * The daemon's answer to the take just sent (FORMAT.md §10): 1 held,
 * 0 refused, -1 none within 2 s or the connection ended (then it is
 * dropped: the daemon closes what it took on it, readopt hands over
 * anew). Only this thread reads the connection, one answer per take, so
 * nothing else is ever waiting in it.
 */
static int
await_answer(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int64_t until = 0, now;
	bool started = false;
	char b;
	long r;

	for (;;) {
		r = syscall(SYS_recvfrom, fd, &b, 1, MSG_DONTWAIT, NULL, NULL);
		if (r == 1)
			return b == SPOOL_HO_OK ? 1 : 0;
		if (r == 0 || (errno != EAGAIN && errno != EINTR))
			return -1;
		now = mono_ns() / NS_PER_MS;
		if (!started) {
			until = now + 2000;
			started = true;
		} else if (now >= until)
			return -1;
		(void)poll(&p, 1, (int)(until - now));
	}
}

static void
held_add(struct stream *s)
{
	struct stream **v;

	pthread_mutex_lock(&ho.mu);
	if ((v = grown(ho.held, ho.nheld, &ho.capheld, sizeof(*v))) != NULL) {
		ho.held = v;
		ho.held[ho.nheld++] = s;
		s = NULL;
	}
	pthread_mutex_unlock(&ho.mu);
	if (s != NULL)
		stream_unref(s);
}

static void
held_remove(struct stream *s)
{
	struct stream *found = NULL;
	size_t i;

	pthread_mutex_lock(&ho.mu);
	for (i = 0; i < ho.nheld; i++)
		if (ho.held[i] == s) {
			found = s;
			ho.held[i] = ho.held[--ho.nheld];
			break;
		}
	pthread_mutex_unlock(&ho.mu);
	if (found != NULL)
		stream_unref(found);
}

static void readopt(bool drop);

/* One message sent (or not: no daemon); the node is used up. */
static void
deliver(struct ho_node *n)
{
	int expect = HO_QUEUED, conn;

	if (n->m.kind == SPOOL_HO_TAKE)
		readopt(false);	/* a daemon gone is noticed first */
	pthread_mutex_lock(&ho.mu);
	conn = ho.conn;
	pthread_mutex_unlock(&ho.mu);
	if (conn < 0 && n->m.kind == SPOOL_HO_TAKE) {
		conn = connect_daemon();	/* ho.conn once connected */
	}
	if (conn >= 0 && send_msg(conn, &n->m, n->fd) < 0) {
		log_warn("tcpspool daemon: %s of %s not sent: %s",
		    n->m.kind == SPOOL_HO_TAKE ? "hand-over" : "release",
		    n->m.name, strerror(errno));
		conn = -1;
		/* A daemon gone: the streams it held come back to us (and
		 * go to a new one if it answers). One that does not read
		 * (the send timed out) keeps its connection. */
		readopt(false);
	} else if (conn >= 0 && n->m.kind == SPOOL_HO_TAKE) {
		switch (await_answer(conn)) {
		case 1:
			break;
		case 0:
			log_info("spool %s: tcpspool daemon refused it (its "
			    "log says why); this process delivers it alone",
			    n->m.name);
			conn = -1;
			break;
		default:
			log_warn("tcpspool daemon: no answer to the hand-over "
			    "of %s; this process delivers it alone",
			    n->m.name);
			conn = -1;
			readopt(true);
			break;
		}
	}
	if (n->fd >= 0)
		running_close(&ho.running_fd, n->s);	/* n->fd */
	if (n->m.kind == SPOOL_HO_TAKE) {
		/* Held only on the daemon's yes: a stream never held is the
		 * process's, which lingers for it at exit. */
		if (conn >= 0 && atomic_compare_exchange_strong(&n->s->ho,
		    &expect, HO_HELD)) {
			atomic_fetch_add(&held_n, 1);
			log_debug("spool %s: handed over to tcpspool daemon",
			    n->m.name);
			held_add(n->s);
			n->s = NULL;
		}
	} else
		held_remove(n->s);
	if (n->s != NULL)
		stream_unref(n->s);
	free(n);
}

/* The daemon's end of conn is gone (it never writes to us). */
static bool
conn_dead(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };

	return poll(&p, 1, 0) != 0;
}

/*
 * The daemon went away: the streams it held are ours alone again (the
 * process lingers for them at exit). A daemon that answers later gets
 * them again: a take each, with a new duplicate of the socket, for those
 * still spooling (their origin file is the one written at the first
 * take). drop: the connection is given up even if the daemon is there
 * (it did not answer a take): it closes the copies it took on it.
 */
static void
readopt(bool drop)
{
	static bool said;
	struct stream **v = NULL;
	struct spool_ho_msg m;
	size_t n = 0, i;
	int conn, fd, expect, rc = 0;

	pthread_mutex_lock(&ho.mu);
	conn = ho.conn;
	pthread_mutex_unlock(&ho.mu);
	if (conn >= 0 && !drop && !conn_dead(conn))
		return;		/* the usual case: it answers */
	pthread_mutex_lock(&ho.mu);
	if (ho.nheld > 0 && (v = malloc(ho.nheld * sizeof(*v))) != NULL) {
		n = ho.nheld;
		for (i = 0; i < n; i++) {
			v[i] = ho.held[i];
			stream_ref(v[i]);
		}
	}
	pthread_mutex_unlock(&ho.mu);
	if (conn >= 0) {
		for (i = 0; i < n; i++) {
			expect = HO_HELD;
			if (atomic_compare_exchange_strong(&v[i]->ho, &expect,
			    HO_QUEUED))
				atomic_fetch_sub(&held_n, 1);
		}
		if (n > 0)
			log_warn("tcpspool daemon went away: %zu streams "
			    "delivered by this process alone until one "
			    "answers again", n);
		/* Closed where it stops being ho.conn (a unix socket's close
		 * never waits): a child forked meanwhile has no copy. */
		pthread_mutex_lock(&ho.mu);
		ho.conn = -1;
		sysio_close(conn);
		pthread_mutex_unlock(&ho.mu);
		said = false;
	}
	if (n == 0 || (conn = connect_daemon()) < 0)	/* ho.conn */
		goto out;
	for (i = 0; i < n; i++) {
		struct stream *s = v[i];

		fd = -1;
		pthread_mutex_lock(&s->mu);
		if (s->registered && s->dup >= 0 &&
		    atomic_load(&s->ho) == HO_QUEUED) {
			pthread_mutex_lock(&ho.mu);
			fd = ho.readopt_fd = sysio_dup(s->dup);
			pthread_mutex_unlock(&ho.mu);
		}
		memset(&m, 0, sizeof(m));
		m.magic = SPOOL_HO_MAGIC;
		m.kind = SPOOL_HO_TAKE;
		m.pid = (int32_t)runtime_pid();
		strlcpy(m.name, s->name, sizeof(m.name));
		pthread_mutex_unlock(&s->mu);
		if (fd < 0)
			continue;
		expect = HO_QUEUED;
		rc = send_msg(conn, &m, fd) == 0 ? await_answer(conn) : -1;
		running_close(&ho.readopt_fd, s);	/* fd */
		if (rc == 1 && atomic_compare_exchange_strong(&s->ho, &expect,
		    HO_HELD))
			atomic_fetch_add(&held_n, 1);
		if (rc < 0)
			break;
	}
	if (rc < 0) {
		/* No answer: a late one would be read as the next take's.
		 * The connection is given up (the daemon, seeing it end while
		 * this process lives, lets go of what it took on it), the
		 * streams are ours again, and the next look tries anew. */
		for (i = 0; i < n; i++) {
			expect = HO_HELD;
			if (atomic_compare_exchange_strong(&v[i]->ho, &expect,
			    HO_QUEUED))
				atomic_fetch_sub(&held_n, 1);
		}
		pthread_mutex_lock(&ho.mu);
		if (ho.conn == conn) {
			ho.conn = -1;
			sysio_close(conn);
		}
		pthread_mutex_unlock(&ho.mu);
		goto out;
	}
	if (!said)
		log_info("tcpspool daemon answers again: %zu streams handed "
		    "over anew", n);
	said = true;
out:
	for (i = 0; i < n; i++)
		stream_unref(v[i]);
	free(v);
}

static void *
ho_main(void *arg)
{
	struct timespec ts;
	struct ho_node *n;

	(void)arg;
	(void)pthread_setname_np(pthread_self(), "tcpspool-handover");
	for (;;) {
		pthread_mutex_lock(&ho.mu);
		while (ho.head == NULL && ho.nheld == 0)
			pthread_cond_wait(&ho.cv, &ho.mu);
		if (ho.head == NULL) {
			/* Streams are held: look at the daemon every second
			 * (gone? back?). */
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += 1;
			(void)pthread_cond_timedwait(&ho.cv, &ho.mu, &ts);
		}
		n = ho.head;
		if (n != NULL && (ho.head = n->next) == NULL)
			ho.tail = NULL;
		if (n != NULL)
			ho.running_fd = n->fd;
		pthread_mutex_unlock(&ho.mu);
		if (n != NULL)
			deliver(n);
		else
			readopt(false);
	}
	return NULL;
}

/* Under ho.mu. */
static bool
start_locked(void)
{
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t tid;
	int rc;

	if (ho.thread)
		return true;
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&ho.cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	sigfillset(&all);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&tid, &attr, ho_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		log_warn("tcpspool daemon: no hand-over thread: %s",
		    strerror(rc));
		return false;
	}
	ho.thread = true;
	return true;
}

/* Queues a message for s (a reference taken); fd is passed with it. */
static bool
enqueue(struct stream *s, uint32_t kind, int fd)
{
	struct ho_node *n;
	bool ok;

	if ((n = calloc(1, sizeof(*n))) == NULL)
		return false;
	n->m.magic = SPOOL_HO_MAGIC;
	n->m.kind = kind;
	n->m.pid = (int32_t)runtime_pid();
	strlcpy(n->m.name, s->name, sizeof(n->m.name));
	n->fd = fd;
	n->s = s;
	pthread_mutex_lock(&ho.mu);
	if ((ok = start_locked())) {
		stream_ref(s);
		if (ho.tail != NULL)
			ho.tail->next = n;
		else
			ho.head = n;
		ho.tail = n;
		pthread_cond_signal(&ho.cv);
	}
	pthread_mutex_unlock(&ho.mu);
	if (!ok)
		free(n);
	return ok;
}

/* DIRECT -> SPOOLING: the origin, then the take. */
static void
take(struct stream *s)
{
	struct spool_dir *d;
	struct spool_err e;
	uint64_t count = 0;
	bool known;
	int fd, saved = errno;

	if (s->spool == NULL || s->dup < 0 || !runtime_own_process() ||
	    (d = runtime_dir()) == NULL)
		goto out;
	if (!daemon_present(d)) {
		if (!atomic_exchange(&said_absent, true))
			log_debug("no tcpspool daemon in %s: streams are "
			    "delivered by this process only",
			    spool_dir_path(d));
		goto out;
	}
	known = s->family != AF_UNIX && spool_socket_count(s->dup, &count) == 0;
	if (spool_origin_begin(s->spool, known, count, &e) < 0) {
		if (s->errors++ == 0)
			log_warn("spool %s: origin: %s; not handed over",
			    s->name, e.msg);
		goto out;
	}
	s->ho_seg = 0;
	if ((fd = sysio_dup(s->dup)) < 0)
		goto out;
	atomic_store(&s->ho, HO_QUEUED);
	if (!enqueue(s, SPOOL_HO_TAKE, fd)) {
		atomic_store(&s->ho, HO_NONE);
		sysio_close(fd);
	}
out:
	errno = saved;
}

/* SPOOLING/LINGER -> DIRECT, FAILED, DONE: the daemon lets go. */
static void
release(struct stream *s)
{
	int prev = atomic_exchange(&s->ho, HO_NONE);
	int saved = errno;

	if (prev == HO_HELD)
		atomic_fetch_sub(&held_n, 1);
	if (prev == HO_NONE || s->ho_exit)
		return;
	(void)enqueue(s, SPOOL_HO_RELEASE, -1);
	errno = saved;
}

void
handover_transition(struct stream *s, enum stream_state from,
    enum stream_state to)
{
	if (from == to)
		return;
	if (!is_live(from) && is_live(to))
		atomic_fetch_add(&live_n, 1);
	else if (is_live(from) && !is_live(to))
		atomic_fetch_sub(&live_n, 1);
	/* A stream sending adopted streams first is not handed over: the
	 * daemon would send its own spool ahead of them (resume.h). */
	if (from == STREAM_DIRECT && to == STREAM_SPOOLING &&
	    !atomic_load(&s->resuming))
		take(s);
	else if (is_live(from) && !is_live(to))
		release(s);
}

void
handover_note(struct stream *s)
{
	struct spool_err e;
	int saved;

	if (atomic_load_explicit(&s->ho, memory_order_relaxed) == HO_NONE ||
	    s->spool == NULL)
		return;
	saved = errno;
	if (spool_origin_anchor(s->spool, &s->ho_seg, &e) < 0 &&
	    s->errors++ == 0)
		log_warn("spool %s: origin anchor: %s", s->name, e.msg);
	errno = saved;
}

void
handover_leave_to_daemon(struct stream *s)
{
	s->ho_exit = true;
}

/*
 * Process end: true only if the daemon still answers. It never writes to
 * us, so anything to read is its end (EOF, reset): a daemon that died
 * holds nothing, and this process delivers (lingers) as without one.
 * One poll, no lock: callable from a signal handler.
 */
bool
handover_covers_all(void)
{
	int h = atomic_load(&held_n), l = atomic_load(&live_n);
	struct pollfd p = { .fd = atomic_load(&ho.conn),
	    .events = POLLIN | POLLRDHUP };
	int saved = errno, n;

	if (h <= 0 || h < l || p.fd < 0)
		return false;
	n = poll(&p, 1, 0);
	errno = saved;
	return n == 0;
}
