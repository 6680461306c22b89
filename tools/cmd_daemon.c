/*
 * cmd_daemon.c — tcpspool daemon: holds the connections libtcpspool spools
 * for, so that their delivery outlives the server process (issue 15).
 *
 * One daemon per spool dir, listening on <dir>/daemon.sock (0600; peers of
 * another uid are refused, SO_PEERCRED). A process running the library
 * connects when one of its streams starts spooling and sends a duplicate
 * of the socket (SCM_RIGHTS) with the stream's name and its pid
 * (FORMAT.md §10). The daemon keeps that duplicate untouched while the
 * process lives, watching it through a pidfd; a release (the stream went
 * back to direct, or finished) closes it at once. When the process is
 * gone (exit, kill -9, crash), each stream it held is delivered from its
 * spool files to the same connection, starting at the first byte the
 * kernel never accepted (TCP: tcpi_bytes_acked + SIOCOUTQ against the
 * stream's origin), then shut down, lingered and closed as the library
 * would (tcpspool replay's machinery, cmd_replay.c), one thread per
 * stream.
 *
 * Every take is answered, y (held) or n (refused, and why logged with its
 * errno): only a y makes the stream ours at the process's exit.
 *
 * States of a held connection:
 *   HELD        the process lives; the duplicate is not touched
 *   (closed)    released by the process: closed at once; or the
 *               connection that handed it over ended while the process
 *               lives on, not exiting (exec: the library's connection is
 *               close-on-exec): closed, nothing delivered
 *   DELIVERING  the process died: a thread sends the rest, then FIN,
 *               linger, close, and removes the stream
 *
 * SIGTERM/SIGINT: the socket is removed and the daemon exits at once;
 * connections of live processes stay up (they hold them too), those
 * being delivered for dead processes are lost at that moment (their
 * spools stay on disk as orphans for tcpspool replay).
 */
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <dirent.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

#define STATUS_KIND	3	/* --status asks; the daemon answers in text */

static const char daemon_usage[] =
    "usage: tcpspool daemon [--dir DIR] [--linger DURATION] [--status]\n"
    "\n"
    "Holds the connections libtcpspool spools for, so that their delivery\n"
    "outlives the server process: after its exit or death (kill -9), each\n"
    "spooled stream is delivered to the same connection from the first byte\n"
    "the kernel never accepted, then closed as the library would.\n"
    "\n"
    "  --dir DIR          the spool dir (default $TCPSPOOL_DIR, else\n"
    "                     /var/tmp/tcpspool-UID); its socket is\n"
    "                     DIR/daemon.sock\n"
    "  --linger DURATION  how long to wait for a peer to take the last\n"
    "                     bytes and close (default $TCPSPOOL_LINGER, 30s)\n"
    "  --status           print what the running daemon holds\n"
    "\n"
    "With TCPSPOOL_RESUME=peer-addr in its environment, a stream whose\n"
    "client goes away while the daemon delivers it waits for the client's\n"
    "next connection from the same address (TCPSPOOL_RESUME_TTL), as the\n"
    "library's do.\n"
    "\n"
    "It removes the dir's expired streams (orphans and spools whose client\n"
    "did not come back in time) at its start, then every minute.\n"
    "\n"
    "exit: 0 ok (SIGTERM), 1 error, 64 usage.\n";

/* ----------------------------------------------------------------- log */

/* TCPSPOOL_LOG=syslog: lines go to syslog (LOG_DAEMON), not stderr. */
static bool dm_syslog;

/* The library's style (preload/log.c): "tcpspool[PID]: LEVEL: message". */
static void
dlog(const char *level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	n = snprintf(buf, sizeof(buf), "tcpspool[%d]: %s: ", (int)getpid(),
	    level);
	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (dm_syslog) {
		syslog(level[0] == 'e' ? LOG_ERR : level[0] == 'w' ?
		    LOG_WARNING : LOG_INFO, "%s", buf + n);
		return;
	}
	strlcat(buf, "\n", sizeof(buf));
	(void)write(STDERR_FILENO, buf, strlen(buf));
}

/* --------------------------------------------------------------- state */

struct held {
	char name[SPOOL_NAME_MAX];
	int fd;
	uint64_t conn;		/* the connection that handed it over */
};

/*
 * A process whose connection ended while it lives: dying (its files are
 * closed just before its pidfd turns readable) or exec'd (the library's
 * connection is close-on-exec) or closed on purpose. exiting_until > 0:
 * it was exiting (PF_EXITING); its pidfd is awaited until then.
 */
struct proc {
	pid_t pid;
	int pidfd;
	struct held *h;
	size_t nh, caph;
	uint64_t lost_conn;	/* its connection that ended, or 0 */
	int64_t exiting_until;	/* ms, CLOCK_MONOTONIC; 0: not waiting */
};

struct conn {
	int fd;
	uint64_t id;		/* 1, 2, ...: names it in held.conn */
	pid_t pid;		/* SO_PEERCRED at accept */
	_Alignas(struct spool_ho_msg)	/* read as one in place */
	uint8_t buf[sizeof(struct spool_ho_msg)];
	size_t have;
	int pending_fd;		/* passed with the message being read */
	bool ctrunc;		/* a descriptor passed with it was dropped */
};

struct delivery {
	struct delivery *next;
	char name[SPOOL_NAME_MAX];
	pid_t pid;
	int fd;
};

static struct {
	struct spool_dir *dir;
	char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
	uint32_t linger_ms;
	/* TCPSPOOL_RESUME=peer-addr: how long a stream whose client went
	 * away waits for it (TCPSPOOL_RESUME_TTL); 0: resume off. */
	uint32_t resume_ttl_ms;
	struct proc *procs;
	size_t nprocs, capprocs;
	struct conn *conns;
	size_t nconns, capconns;
	uint64_t next_conn;
	int spare;		/* /dev/null, given up to accept at EMFILE */
	int64_t listen_after;	/* ms: the listener is not polled before */
	pthread_mutex_t mu;	/* deliveries */
	struct delivery *deliveries;
} dm = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void *
grow(void *v, size_t n, size_t *cap, size_t size)
{
	void *nv;

	if (n < *cap)
		return v;
	if ((nv = reallocarray(v, *cap ? *cap * 2 : 16, size)) == NULL)
		return NULL;
	*cap = *cap ? *cap * 2 : 16;
	return nv;
}

static struct proc *
proc_find(pid_t pid)
{
	size_t i;

	for (i = 0; i < dm.nprocs; i++)
		if (dm.procs[i].pid == pid)
			return &dm.procs[i];
	return NULL;
}

static int
pidfd_of(int conn, pid_t pid)
{
	socklen_t len = sizeof(int);
	int fd = -1;

	if (getsockopt(conn, SOL_SOCKET, SO_PEERPIDFD, &fd, &len) == 0 &&
	    fd >= 0)
		return fd;
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static struct proc *
proc_add(int conn, pid_t pid)
{
	struct proc *p, *v;
	int pfd;

	if ((p = proc_find(pid)) != NULL)
		return p;
	if ((pfd = pidfd_of(conn, pid)) < 0) {
		dlog("warn", "pid %d: pidfd: %s", (int)pid, strerror(errno));
		return NULL;
	}
	(void)fcntl(pfd, F_SETFD, FD_CLOEXEC);
	if ((v = grow(dm.procs, dm.nprocs, &dm.capprocs, sizeof(*v))) ==
	    NULL) {
		close(pfd);
		return NULL;
	}
	dm.procs = v;
	p = &dm.procs[dm.nprocs++];
	memset(p, 0, sizeof(*p));
	p->pid = pid;
	p->pidfd = pfd;
	return p;
}

/* ---------------------------------------------------------- delivery */

/* Nothing left to send: FIN, read until the peer closes, close. */
static void
close_like_library(int fd, uint32_t linger_ms)
{
	int64_t deadline;
	struct timespec ts;
	struct pollfd p;
	char buf[16384];
	ssize_t n;

	(void)shutdown(fd, SHUT_WR);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	deadline = ts.tv_sec * 1000LL + ts.tv_nsec / 1000000 + linger_ms;
	for (;;) {
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0)
			continue;
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			break;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		if (ts.tv_sec * 1000LL + ts.tv_nsec / 1000000 >= deadline)
			break;
		p = (struct pollfd){ .fd = fd, .events = POLLIN | POLLRDHUP };
		(void)poll(&p, 1, 100);
	}
	close(fd);
}

static void
delivery_done(struct delivery *dv)
{
	struct delivery **pp;

	pthread_mutex_lock(&dm.mu);
	for (pp = &dm.deliveries; *pp != NULL; pp = &(*pp)->next)
		if (*pp == dv) {
			*pp = dv->next;
			break;
		}
	pthread_mutex_unlock(&dm.mu);
	free(dv);
}

/*
 * Where delivery continues: the first stream byte the kernel never
 * accepted: 1, found (pl). 0 when it cannot be known (AF_UNIX, no
 * origin, no anchor): then from the spool's progress, at-least-once.
 * -1 when it lies before the first record on disk (FORMAT.md §10):
 * bytes the kernel never took were deleted, a contradiction that is
 * reported, and the stream is kept, never guessed.
 */
static int
resume_point(struct delivery *dv, struct spool_place *pl)
{
	struct spool_origin o;
	struct spool_err e = { "" };
	uint64_t now;
	int rc;

	if ((rc = spool_origin_read(dm.dir, dv->name, &o, &e)) < 0) {
		dlog("warn", "spool %s (pid %d): %s; delivering from its "
		    "progress (bytes may repeat)", dv->name, (int)dv->pid,
		    e.msg);
		return 0;
	}
	if (!o.known || spool_socket_count(dv->fd, &now) < 0) {
		dlog("info", "spool %s (pid %d): no byte count (not TCP); "
		    "delivering from its progress (bytes may repeat)",
		    dv->name, (int)dv->pid);
		return 0;
	}
	if (now < o.count) {
		dlog("warn", "spool %s (pid %d): the socket's count went "
		    "back (%" PRIu64 " < %" PRIu64 "); delivering from its "
		    "progress", dv->name, (int)dv->pid, now, o.count);
		return 0;
	}
	if ((rc = spool_locate(dm.dir, dv->name, &o, now - o.count, pl,
	    &e)) == -ERANGE) {
		dlog("error", "spool %s (pid %d): byte %" PRIu64 " is before "
		    "the first record on disk (%s): bytes the kernel never "
		    "took were deleted; nothing delivered, the spool is kept "
		    "(tcpspool verify, tcpspool replay)", dv->name,
		    (int)dv->pid, now - o.count, e.msg);
		return -1;
	}
	if (rc < 0) {
		dlog("warn", "spool %s (pid %d): %s; delivering from its "
		    "progress (bytes may repeat)", dv->name, (int)dv->pid,
		    e.msg);
		return 0;
	}
	if (pl->at_end)
		dlog("info", "spool %s (pid %d): the kernel accepted every "
		    "spooled byte (%" PRIu64 "); closing", dv->name,
		    (int)dv->pid, pl->end_abs);
	else
		dlog("info", "spool %s (pid %d): continuing at byte %" PRIu64
		    " (record %" PRIu64 " + %" PRIu64 "), %" PRIu64
		    " bytes left", dv->name, (int)dv->pid, now - o.count,
		    pl->seq, pl->off, pl->end_abs - (now - o.count));
	return 1;
}

/* `tcpspool ls` shows the stream as "daemon" while this file names a
 * running daemon (FORMAT.md §10); it goes with the stream's dir. */
static void
mark(const char *name)
{
	char path[SPOOL_NAME_MAX + 16], buf[32];
	int fd, n;

	snprintf(path, sizeof(path), "%s/daemon", name);
	if ((fd = openat(spool_dir_fd(dm.dir), path, O_WRONLY | O_CREAT |
	    O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0)
		return;
	n = snprintf(buf, sizeof(buf), "pid=%d\n", (int)getpid());
	(void)write(fd, buf, (size_t)n);
	close(fd);
}

/*
 * TCPSPOOL_RESUME=peer-addr in the daemon's environment: the client of a
 * dead process's connection went away while the daemon delivered: the
 * stream waits for the client's next connection as the library's would
 * (FORMAT.md §11: its token, then its released status with the writer's
 * pid), and the next process of the dir whose new connection comes from
 * that address sends it first. True if it waits.
 */
static bool
wait_for_peer(struct delivery *dv)
{
	struct spool_stream_info info;
	struct spool_status st;
	struct spool_err e = { "" };
	char key[SPOOL_KEY_MAX], path[SPOOL_NAME_MAX + 16];
	struct timespec now;
	int lock;

	if (spool_stream_info_flags(dm.dir, dv->name, SPOOL_INFO_QUICK, &info,
	    &e) < 0 || !info.id_known ||
	    spool_peer_key(info.id.peer, key) < 0)
		return false;
	if (spool_status_read(dm.dir, dv->name, &st, &e) < 0)
		memset(&st, 0, sizeof(st));
	clock_gettime(CLOCK_REALTIME, &now);
	st.pid = info.id.pid;	/* believed only from the writer (§7) */
	st.fd = info.id.fd;
	strlcpy(st.state, "waiting", sizeof(st.state));
	strlcpy(st.reason, "peer went away (daemon)", sizeof(st.reason));
	st.released = true;
	st.holder = 0;
	st.idle = false;
	st.updated_ns = 0;
	st.expires_ns = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec +
	    (int64_t)dm.resume_ttl_ms * 1000000LL;
	/* Under the stream's lock (tried for up to a second: a command
	 * holding the stream, a verify, does not hold this thread for its
	 * length): no claim sees it between its registry entry and its
	 * status (FORMAT.md §11). */
	if ((lock = spool_stream_lock(dm.dir, dv->name, 1000, &e)) < 0 ||
	    spool_waiting_add(dm.dir, key, info.id.created_ns, dv->name,
	    &e) < 0 || spool_status_release(dm.dir, dv->name, &st, &e) < 0) {
		dlog("warn", "spool %s (pid %d): cannot wait for its peer: %s",
		    dv->name, (int)dv->pid, e.msg[0] ? e.msg : strerror(errno));
		if (lock >= 0)
			close(lock);
		return false;
	}
	close(lock);
	snprintf(path, sizeof(path), "%s/daemon", dv->name);
	(void)unlinkat(spool_dir_fd(dm.dir), path, 0);
	dlog("info", "spool %s (pid %d): the peer %s went away; the rest "
	    "waits %" PRIu32 " ms for its next connection from that address "
	    "(TCPSPOOL_RESUME_TTL)", dv->name, (int)dv->pid, info.id.peer,
	    dm.resume_ttl_ms);
	return true;
}

static void *
deliver_main(void *arg)
{
	struct delivery *dv = arg;
	struct spool_err e = { "" };
	struct spool_place pl;
	struct stat st;
	int64_t cut;
	int rc, rp, type = 0, fam = 0;
	bool gone = false;
	char path[SPOOL_NAME_MAX + 16];
	socklen_t len = sizeof(type);
	struct sockaddr_storage ss;
	socklen_t slen = sizeof(ss);

	(void)getsockopt(dv->fd, SOL_SOCKET, SO_TYPE, &type, &len);
	if (getsockname(dv->fd, (struct sockaddr *)&ss, &slen) == 0)
		fam = ss.ss_family;
	if (fstatat(spool_dir_fd(dm.dir), dv->name, &st,
	    AT_SYMLINK_NOFOLLOW) == -1) {
		/* Delivered and removed before the process went. */
		dlog("info", "spool %s (pid %d): nothing left to deliver; "
		    "closing", dv->name, (int)dv->pid);
		close_like_library(dv->fd, dm.linger_ms);
		delivery_done(dv);
		return NULL;
	}
	mark(dv->name);
	if ((cut = spool_repair(dm.dir, dv->name, &e)) < 0)
		dlog("warn", "spool %s: repair: %s", dv->name, e.msg);
	else if (cut > 0)
		dlog("warn", "spool %s: %" PRId64 " bytes of a torn frame cut "
		    "(the process died while writing it)", dv->name, cut);
	if ((rp = resume_point(dv, &pl)) < 0) {
		/* Kept as an orphan: the client is not sent a guess. */
		snprintf(path, sizeof(path), "%s/daemon", dv->name);
		(void)unlinkat(spool_dir_fd(dm.dir), path, 0);
		close(dv->fd);
		delivery_done(dv);
		return NULL;
	}
	rc = replay_connection(dm.dir, dv->name, dv->fd, fam == AF_UNIX,
	    rp > 0 ? &pl : NULL, dm.linger_ms, &gone);
	if (rc == EXIT_OK)
		dlog("info", "spool %s (pid %d): delivered, connection "
		    "closed", dv->name, (int)dv->pid);
	else if (gone && fam != AF_UNIX && dm.resume_ttl_ms > 0 &&
	    wait_for_peer(dv))
		;
	else
		dlog("warn", "spool %s (pid %d): delivery ended early; the "
		    "spool stays (tcpspool replay)", dv->name, (int)dv->pid);
	delivery_done(dv);
	return NULL;
}

static void
deliver(pid_t pid, struct held *h)
{
	struct delivery *dv;
	pthread_attr_t attr;
	pthread_t tid;

	if ((dv = calloc(1, sizeof(*dv))) == NULL) {
		close(h->fd);
		return;
	}
	strlcpy(dv->name, h->name, sizeof(dv->name));
	dv->pid = pid;
	dv->fd = h->fd;
	pthread_mutex_lock(&dm.mu);
	dv->next = dm.deliveries;
	dm.deliveries = dv;
	pthread_mutex_unlock(&dm.mu);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&tid, &attr, deliver_main, dv) != 0) {
		dlog("error", "spool %s: no thread to deliver it", h->name);
		close(dv->fd);
		delivery_done(dv);
	}
	pthread_attr_destroy(&attr);
}

/* ---------------------------------------------------------- messages */

static void
status_reply(int fd)
{
	struct delivery *dv;
	char line[256];
	size_t i, j;
	FILE *f;

	if ((f = fdopen(dup(fd), "w")) == NULL)
		return;
	fprintf(f, "daemon pid %d, spool dir %s\n", (int)getpid(),
	    spool_dir_path(dm.dir));
	for (i = 0; i < dm.nprocs; i++)
		for (j = 0; j < dm.procs[i].nh; j++)
			fprintf(f, "held %s pid %d\n", dm.procs[i].h[j].name,
			    (int)dm.procs[i].pid);
	pthread_mutex_lock(&dm.mu);
	for (dv = dm.deliveries; dv != NULL; dv = dv->next) {
		snprintf(line, sizeof(line), "delivering %s pid %d\n",
		    dv->name, (int)dv->pid);
		fputs(line, f);
	}
	pthread_mutex_unlock(&dm.mu);
	fclose(f);
}

/*
 * Does stream name belong to pid (its segment header says so)? 0 yes,
 * 1 no, -1 not known (why in e; errno set).
 */
static int
stream_of(const char *name, pid_t pid, struct spool_err *e)
{
	struct spool_stream_info si;
	int rc;

	if ((rc = spool_stream_info_flags(dm.dir, name, SPOOL_INFO_QUICK, &si,
	    e)) < 0) {
		errno = -rc;
		return -1;
	}
	if (!si.id_known)
		return 1;
	return si.id.pid == pid ? 0 : 1;
}

/*
 * Every take is answered with one byte (FORMAT.md §10): SPOOL_HO_OK, the
 * daemon holds the copy; SPOOL_HO_REFUSED, it does not (the stream stays
 * the process's, which lingers for it at exit). The library reads the
 * answer at once, so at most one byte is ever in flight: the send never
 * waits (and a peer gone is its own end, found by poll).
 */
static void
answer(struct conn *c, bool ok)
{
	char b = ok ? SPOOL_HO_OK : SPOOL_HO_REFUSED;

	(void)send(c->fd, &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* The take of m is refused: said once with why, answered, fd closed. */
static bool
take_refused(struct conn *c, const struct spool_ho_msg *m, int fd,
    const char *why)
{
	dlog("warn", "pid %d: hand-over of %.16s refused: %s; the process "
	    "keeps it", (int)c->pid, m->name, why);
	if (fd >= 0)
		close(fd);
	answer(c, false);
	return true;
}

/* A stream's name as the library makes them: 16 hex digits. */
static bool
stream_name(const char *name)
{
	return strspn(name, "0123456789abcdef") == 16 && name[16] == '\0';
}

/*
 * The take of a stream whose dir is gone: the process delivered it and
 * removed it before its take was read (common for a short spool). The
 * answer is a refusal, which the process's log reports as "refused (its
 * log says why)": said here, at info.
 */
static bool
take_gone(struct conn *c, const struct spool_ho_msg *m, int fd)
{
	dlog("info", "pid %d: hand-over of %.16s not taken: delivered and "
	    "removed before its hand-over was read", (int)c->pid, m->name);
	close(fd);
	answer(c, false);
	return true;
}

/* One whole message from c; false: drop the connection. */
static bool
handle(struct conn *c, const struct spool_ho_msg *m, int fd)
{
	struct spool_err e = { "" };
	struct proc *p;
	struct held *h;
	bool ctrunc = c->ctrunc;
	size_t i;
	char why[160];

	c->ctrunc = false;
	if (m->magic != SPOOL_HO_MAGIC) {
		dlog("warn", "pid %d: not a tcpspool message; disconnected",
		    (int)c->pid);
		goto refuse;
	}
	if (m->kind == STATUS_KIND) {
		status_reply(c->fd);
		goto refuse;	/* answered: the connection ends */
	}
	if (m->pid != c->pid || memchr(m->name, '\0', sizeof(m->name)) ==
	    NULL) {
		dlog("warn", "pid %d: a message for pid %d refused",
		    (int)c->pid, (int)m->pid);
		goto refuse;
	}
	p = proc_find(c->pid);
	if (m->kind == SPOOL_HO_RELEASE) {
		for (i = 0; p != NULL && i < p->nh; i++)
			if (strcmp(p->h[i].name, m->name) == 0) {
				close(p->h[i].fd);
				p->h[i] = p->h[--p->nh];
				break;
			}
		if (fd >= 0)
			close(fd);
		return true;
	}
	if (m->kind == SPOOL_HO_TAKE && fd < 0 && ctrunc)
		/* The kernel dropped the descriptor (EMFILE here). */
		return take_refused(c, m, fd, "its descriptor could not be "
		    "received (too many open files)");
	if (m->kind != SPOOL_HO_TAKE || fd < 0) {
		dlog("warn", "pid %d: message kind %u refused", (int)c->pid,
		    m->kind);
		goto refuse;
	}
	if (faccessat(spool_dir_fd(dm.dir), m->name, F_OK,
	    AT_SYMLINK_NOFOLLOW) == -1 && errno == ENOENT &&
	    stream_name(m->name))
		return take_gone(c, m, fd);
	switch (stream_of(m->name, c->pid, &e)) {
	case 0:
		break;
	case 1:
		return take_refused(c, m, fd, "not a stream of this pid");
	default:
		/* Removed between the look above and this read. */
		if (errno == ENOENT && stream_name(m->name) &&
		    faccessat(spool_dir_fd(dm.dir), m->name, F_OK,
		    AT_SYMLINK_NOFOLLOW) == -1 && errno == ENOENT)
			return take_gone(c, m, fd);
		snprintf(why, sizeof(why), "its segment header: %s",
		    e.msg[0] ? e.msg : strerror(errno));
		return take_refused(c, m, fd, why);
	}
	if (p == NULL && (p = proc_add(c->fd, c->pid)) == NULL) {
		snprintf(why, sizeof(why), "pidfd: %s", strerror(errno));
		return take_refused(c, m, fd, why);
	}
	/* Handed over again (the process reconnected): one copy, the new. */
	for (i = 0; i < p->nh; i++)
		if (strcmp(p->h[i].name, m->name) == 0) {
			close(p->h[i].fd);
			p->h[i].fd = fd;
			p->h[i].conn = c->id;
			answer(c, true);
			return true;
		}
	if ((h = grow(p->h, p->nh, &p->caph, sizeof(*h))) == NULL)
		return take_refused(c, m, fd, strerror(ENOMEM));
	p->h = h;
	h = &p->h[p->nh++];
	strlcpy(h->name, m->name, sizeof(h->name));
	h->fd = fd;
	h->conn = c->id;
	answer(c, true);
	return true;
refuse:
	if (fd >= 0)
		close(fd);
	return false;
}

/* Reads what c has; false when it is closed (or to be dropped). */
static bool
conn_read(struct conn *c)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} u;
	struct iovec iov;
	struct msghdr mh;
	struct cmsghdr *cm;
	int fds[4], fd;
	size_t k, nf;
	ssize_t n;

	for (;;) {
		iov = (struct iovec){ c->buf + c->have,
		    sizeof(c->buf) - c->have };
		mh = (struct msghdr){ .msg_iov = &iov, .msg_iovlen = 1,
		    .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
		n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return true;
		if (n > 0 && (mh.msg_flags & MSG_CTRUNC))
			c->ctrunc = true;
		for (cm = CMSG_FIRSTHDR(&mh); n > 0 && cm != NULL;
		    cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level != SOL_SOCKET ||
			    cm->cmsg_type != SCM_RIGHTS)
				continue;
			nf = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			if (nf > 4)
				nf = 4;
			memcpy(fds, CMSG_DATA(cm), nf * sizeof(int));
			for (k = 0; k < nf; k++) {
				if (c->pending_fd < 0)
					c->pending_fd = fds[k];
				else
					close(fds[k]);
			}
		}
		if (n <= 0)
			return false;
		c->have += (size_t)n;
		if (c->have < sizeof(c->buf))
			continue;
		c->have = 0;
		fd = c->pending_fd;
		c->pending_fd = -1;
		if (!handle(c, (const struct spool_ho_msg *)(void *)c->buf,
		    fd))
			return false;
	}
}

static void
conn_drop(size_t i)
{
	if (dm.conns[i].pending_fd >= 0)
		close(dm.conns[i].pending_fd);
	close(dm.conns[i].fd);
	dm.conns[i] = dm.conns[--dm.nconns];
}

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Out of fds with a peer waiting: the spare fd is given up to accept it
 * and close it at once (its library sees the connection end and keeps
 * its streams), so the listener does not stay readable for ever. Without
 * a spare (it could not be made again) the listener rests 100 ms.
 */
static void
shed_one(int ls)
{
	static int64_t said;
	int fd, saved = errno;

	if (mono_ms() - said >= 10000) {
		dlog("warn", "accept: %s; a peer turned away (its process "
		    "keeps its streams)", strerror(saved));
		said = mono_ms();
	}
	if (dm.spare >= 0) {
		close(dm.spare);
		if ((fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC)) >= 0)
			close(fd);
		dm.spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	if (dm.spare < 0)
		dm.listen_after = mono_ms() + 100;
}

/* false: nothing more to accept now. */
static bool
accept_one(int ls)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	struct conn *v;
	int fd;

	if ((fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) < 0) {
		if (errno == EMFILE || errno == ENFILE)
			shed_one(ls);
		return false;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == -1 ||
	    cr.uid != getuid()) {
		dlog("warn", "a peer of uid %d refused (the daemon's uid is "
		    "%d)", (int)cr.uid, (int)getuid());
		close(fd);
		return true;
	}
	if ((v = grow(dm.conns, dm.nconns, &dm.capconns, sizeof(*v))) ==
	    NULL) {
		dlog("warn", "pid %d: turned away: %s", (int)cr.pid,
		    strerror(ENOMEM));
		close(fd);
		return true;
	}
	dm.conns = v;
	dm.conns[dm.nconns++] = (struct conn){ .fd = fd, .id = ++dm.next_conn,
	    .pid = cr.pid, .pending_fd = -1 };
	return true;
}

/* The process is gone: what it held is delivered. */
static void
proc_died(size_t i)
{
	struct proc *p = &dm.procs[i];
	size_t j;

	/* Its last messages first: a release sent before it died. */
	for (j = 0; j < dm.nconns;) {
		if (dm.conns[j].pid == p->pid) {
			(void)conn_read(&dm.conns[j]);
			p = &dm.procs[i];	/* handle may grow procs */
			conn_drop(j);
			continue;
		}
		j++;
	}
	p = &dm.procs[i];
	for (j = 0; j < p->nh; j++) {
		dlog("info", "spool %s: pid %d is gone; delivering its spool "
		    "to the same connection", p->h[j].name, (int)p->pid);
		deliver(p->pid, &p->h[j]);
	}
	free(p->h);
	close(p->pidfd);
	dm.procs[i] = dm.procs[--dm.nprocs];
}

/* Closes the copies pid's connection cid handed over: nothing delivered. */
static void
forget_conn(struct proc *p, uint64_t cid, const char *why)
{
	size_t j, n = 0;

	for (j = 0; j < p->nh;) {
		if (p->h[j].conn == cid) {
			close(p->h[j].fd);
			p->h[j] = p->h[--p->nh];
			n++;
			continue;
		}
		j++;
	}
	if (n > 0)
		dlog("warn", "pid %d %s: its %zu connection copies closed, "
		    "nothing delivered (what it had spooled is lost, as "
		    "without the daemon)", (int)p->pid, why, n);
}

/* Is the thread whose stat file is path exiting (PF_EXITING) or a zombie?
 * 1 yes, 0 no, -1 cannot tell (read failed for another reason than its
 * end: the daemon's own fd limit, say). */
static int
thread_exiting(const char *path)
{
	char buf[1024], *q, st;
	unsigned long flags = 0;
	ssize_t n;
	int fd, i;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return errno == ENOENT || errno == ESRCH ? 1 : -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return n == 0 || errno == ESRCH ? 1 : -1;
	buf[n] = '\0';
	if ((q = strrchr(buf, ')')) == NULL || sscanf(q + 1, " %c", &st) != 1)
		return -1;
	if (st == 'Z' || st == 'X' || st == 'x')
		return 1;
	/* fields after ')': state ppid pgrp session tty tpgid flags */
	for (i = 0, q++; i < 6 && q != NULL; i++)
		q = strchr(q + 1, ' ');
	if (q == NULL || sscanf(q, " %lu", &flags) != 1)
		return -1;
	return (flags & 0x4) != 0;	/* PF_EXITING */
}

/*
 * Is pid dying: every one of its threads exiting or a zombie? 1 yes (or
 * gone), 0 one lives on (a leader that called pthread_exit is a zombie
 * whose process lives on), -1 cannot tell now.
 */
static int
dying(pid_t pid)
{
	char path[96];
	struct dirent *de;
	DIR *d;
	int r, all = 1;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if ((d = opendir(path)) == NULL)
		return errno == ENOENT || errno == ESRCH ? 1 : -1;
	while (all != 0 && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%.16s/stat",
		    (int)pid, de->d_name);
		if ((r = thread_exiting(path)) == 0)
			all = 0;
		else if (r < 0)
			all = -1;
	}
	closedir(d);
	return all;
}

/*
 * Connection c ended while its process may live. A dying process closes
 * its files before its pidfd turns readable, sometimes long before (a
 * file whose last close waits: a tty draining, a network file system):
 * while every thread is exiting it is waited for, however long, and
 * proc_died delivers. One that lives on exec'd (the library's connection
 * is close-on-exec) or closed it on purpose: the pid now runs a program
 * that may write to those sockets itself, so every copy this connection
 * handed over is closed, and nothing is delivered. Where /proc cannot
 * tell (the daemon out of fds), it looks again a second later.
 */
static void
conn_gone(const struct conn *c)
{
	struct pollfd pf;
	struct proc *p;

	if ((p = proc_find(c->pid)) == NULL)
		return;
	pf = (struct pollfd){ .fd = p->pidfd, .events = POLLIN };
	if (poll(&pf, 1, 0) > 0)
		return;		/* dead: the pidfd is seen next */
	if (dying(p->pid) == 0) {
		forget_conn(p, c->id, "lives on without its connection "
		    "(exec?)");
		return;
	}
	p->lost_conn = c->id;
	p->exiting_until = mono_ms() + 1000;
}

/* Processes that were dying, or could not be told, when their connection
 * ended and whose pidfd has not turned readable: looked at again each
 * second; one that lives on is treated as conn_gone's. */
static void
exiting_expired(void)
{
	int64_t now = mono_ms();
	struct pollfd pf;
	size_t i;

	for (i = 0; i < dm.nprocs; i++) {
		struct proc *p = &dm.procs[i];

		if (p->exiting_until == 0 || now < p->exiting_until)
			continue;
		pf = (struct pollfd){ .fd = p->pidfd, .events = POLLIN };
		if (poll(&pf, 1, 0) > 0 || dying(p->pid) != 0) {
			p->exiting_until = now + 1000;	/* still dying */
			continue;
		}
		p->exiting_until = 0;
		forget_conn(p, p->lost_conn, "lives on after its connection "
		    "ended (exec?)");
	}
}

/* ms until the next deadline of the loop, or -1. */
static int
next_timeout(void)
{
	int64_t now = mono_ms(), t = -1;
	size_t i;

	if (dm.listen_after > now)
		t = dm.listen_after - now;
	for (i = 0; i < dm.nprocs; i++)
		if (dm.procs[i].exiting_until > 0) {
			int64_t d = dm.procs[i].exiting_until - now;

			if (d < 0)
				d = 0;
			if (t < 0 || d < t)
				t = d;
		}
	return t < 0 ? -1 : (int)(t > 60000 ? 60000 : t);
}

/* --------------------------------------------------------------- sweep */

/*
 * Streams released with an expiry (orphans, FORMAT.md §7, and streams
 * waiting for their peer, §11) are deleted by whoever uses the dir after
 * the expiry. The library's processes sweep while they run; the daemon
 * does too, or a dir where no library process spools any more keeps them
 * until `tcpspool rm --expired`: from a thread of its own (a sweep of a
 * large dir must hold up neither the start nor the loop that takes
 * handovers), once it listens, then every minute; the first one's end is
 * logged. A stream is deleted only under
 * its lock (a delivery holds it) and only if its writer's status says
 * released.
 */
#define SWEEP_EVERY_S	60

static void
swept(void *arg, const struct spool_expired *x)
{
	(void)arg;
	if (x->removed)
		dlog("info", "spool %s: expired, removed (%" PRIu64 " bytes "
		    "undelivered, %s)", x->name, x->status->pending_bytes,
		    x->status->reason[0] ? x->status->reason : "no reason");
	else if (x->err[0] != '\0')
		dlog("warn", "spool %s: expired, kept for now: %s", x->name,
		    x->err);
}

/* One sweep; a failure is said once (the thread's next ones are quiet). */
static void
sweep_once(void)
{
	static bool said;
	struct timespec now;
	int rc;

	clock_gettime(CLOCK_REALTIME, &now);
	rc = spool_dir_expire(dm.dir, (int64_t)now.tv_sec * 1000000000LL +
	    now.tv_nsec, SPOOL_EXPIRE_SKIP_IF_BUSY, swept, NULL);
	if (rc < 0 && !said)
		dlog("warn", "sweep of %s: %s (said once)",
		    spool_dir_path(dm.dir), strerror(-rc));
	said = said || rc < 0;
}

static void *
sweep_main(void *arg)
{
	(void)arg;
	sweep_once();
	dlog("info", "first sweep of %s done", spool_dir_path(dm.dir));
	for (;;) {
		sleep(SWEEP_EVERY_S);
		sweep_once();
	}
	return NULL;
}

static void
sweeps_start(void)
{
	pthread_attr_t a;
	pthread_t t;

	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, sweep_main, NULL) != 0)
		dlog("warn", "no sweep thread: expired streams stay until "
		    "tcpspool rm --expired");
	pthread_attr_destroy(&a);
}

/* ---------------------------------------------------------------- main */

static int
listen_on(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old;
	int fd, probe;

	strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
	if ((probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0) {
		if (connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			warnx("a daemon already listens on %s", path);
			close(probe);
			return -1;
		}
		close(probe);
	}
	(void)unlink(path);	/* a dead daemon's */
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0)) < 0) {
		warn("socket");
		return -1;
	}
	old = umask(077);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		umask(old);
		warn("bind %s", path);
		close(fd);
		return -1;
	}
	umask(old);
	(void)chmod(path, 0600);
	if (listen(fd, 512) == -1) {
		warn("listen %s", path);
		close(fd);
		unlink(path);
		return -1;
	}
	return fd;
}

static int
ask_status(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct spool_ho_msg m = { .magic = SPOOL_HO_MAGIC,
	    .kind = STATUS_KIND, .pid = (int32_t)getpid() };
	char buf[4096];
	ssize_t n;
	int fd;

	strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		warnx("no daemon answers on %s", path);
		return EXIT_ERR;
	}
	if (write(fd, &m, sizeof(m)) != (ssize_t)sizeof(m)) {
		warn("%s", path);
		return EXIT_ERR;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)n, stdout);
	close(fd);
	return EXIT_OK;
}

/* Does a daemon answer on path? */
static bool
answers(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	bool yes;
	int fd;

	strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return false;
	yes = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return yes;
}

/*
 * The daemon outlives the command that started it: it keeps none of that
 * command's fds (a pipe of `x=$(tcpspool run --daemon ...)` would never
 * see EOF). stdin and stdout are /dev/null; stderr is the file
 * TCPSPOOL_LOG names, or /dev/null (syslog: the daemon logs there).
 */
static void
detach_fds(void)
{
	const char *log = getenv("TCPSPOOL_LOG");
	int null, fd = -1;

	if ((null = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
		_exit(127);
	(void)dup2(null, STDIN_FILENO);
	(void)dup2(null, STDOUT_FILENO);
	if (log != NULL && log[0] == '/')
		fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW |
		    O_CLOEXEC, 0600);
	(void)dup2(fd >= 0 ? fd : null, STDERR_FILENO);
	(void)syscall(SYS_close_range, 3U, ~0U, 0U);
}

int
daemon_ensure(const char *dir)
{
	char sock[sizeof(((struct sockaddr_un *)0)->sun_path)], self[PATH_MAX];
	struct timespec ts = { 0, 10 * 1000 * 1000 };
	ssize_t n;
	pid_t pid;
	int i, st;

	if ((size_t)snprintf(sock, sizeof(sock), "%s/%s", dir,
	    SPOOL_DAEMON_SOCK) >= sizeof(sock)) {
		warnx("%s: path too long for a unix socket", dir);
		return EXIT_ERR;
	}
	if (answers(sock))
		return EXIT_OK;
	if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) < 0) {
		warn("/proc/self/exe");
		return EXIT_ERR;
	}
	self[n] = '\0';
	/* Twice forked: the daemon is nobody's child (the program exec'd
	 * next must not reap it), in a session of its own. */
	if ((pid = fork()) == -1) {
		warn("fork");
		return EXIT_ERR;
	}
	if (pid == 0) {
		if (setsid() == -1 || fork() != 0)
			_exit(0);
		detach_fds();
		execl(self, "tcpspool", "daemon", "--dir", dir, (char *)NULL);
		_exit(127);
	}
	(void)waitpid(pid, &st, 0);
	for (i = 0; i < 500; i++) {
		if (answers(sock))
			return EXIT_OK;
		nanosleep(&ts, NULL);
	}
	warnx("tcpspool daemon did not answer on %s within 5 s", sock);
	return EXIT_ERR;
}

static int
serve(int ls, int sfd)
{
	struct pollfd *pf = NULL;
	size_t cap = 0, n, i, base, nconns, nprocs;

	for (;;) {
		n = 2 + dm.nconns + dm.nprocs;
		if (n > cap) {
			cap = n * 2;
			if ((pf = reallocarray(pf, cap, sizeof(*pf))) == NULL)
				err(EXIT_ERR, "daemon");
		}
		pf[0] = (struct pollfd){ .fd = sfd, .events = POLLIN };
		pf[1] = (struct pollfd){ .fd = dm.listen_after > mono_ms() ?
		    -1 : ls, .events = POLLIN };
		for (i = 0; i < dm.nconns; i++)
			pf[2 + i] = (struct pollfd){ .fd = dm.conns[i].fd,
			    .events = POLLIN };
		base = 2 + dm.nconns;
		/* Only these were polled: handling a message may add a
		 * process, and its slot in pf is a stale one. */
		nconns = dm.nconns;
		nprocs = dm.nprocs;
		for (i = 0; i < dm.nprocs; i++)
			pf[base + i] = (struct pollfd){ .fd = dm.procs[i].pidfd,
			    .events = POLLIN };
		if (poll(pf, n, next_timeout()) == -1) {
			if (errno == EINTR)
				continue;
			err(EXIT_ERR, "poll");
		}
		if (pf[0].revents) {
			free(pf);
			return EXIT_OK;
		}
		/* Messages before deaths: a release read late must still
		 * close a copy rather than deliver. Walked backwards, as a
		 * drop moves the last one into i. */
		for (i = nconns; i-- > 0;)
			if (pf[2 + i].revents && !conn_read(&dm.conns[i])) {
				struct conn c = dm.conns[i];

				conn_drop(i);
				conn_gone(&c);
			}
		for (i = nprocs; i-- > 0;)
			if (pf[base + i].revents)
				proc_died(i);
		exiting_expired();
		if (pf[1].revents)
			for (i = 0; i < 64 && accept_one(ls); i++)
				;
	}
}

static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int
cmd_daemon(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "linger", required_argument, NULL, 'l' },
		{ "status", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct spool_limits lim = { 0 };
	struct spool_err e = { "" };
	const char *dir = NULL, *env;
	char path[4096];
	bool status = false;
	sigset_t sigs;
	int ch, ls, sfd, rc;

	dm.linger_ms = 30000;
	if ((env = getenv("TCPSPOOL_LINGER")) != NULL &&
	    config_parse_duration_ms(env, &dm.linger_ms) == -1)
		dm.linger_ms = 30000;
	/* As the library reads them (one line, then off, if bad). */
	if ((env = getenv("TCPSPOOL_RESUME")) != NULL &&
	    strcmp(env, "peer-addr") == 0) {
		dm.resume_ttl_ms = CONFIG_DEFAULT_RESUME_TTL_MS;
		if ((env = getenv("TCPSPOOL_RESUME_TTL")) != NULL &&
		    (config_parse_duration_ms(env, &dm.resume_ttl_ms) == -1 ||
		    dm.resume_ttl_ms == 0)) {
			warnx("TCPSPOOL_RESUME_TTL=\"%s\": expected a duration "
			    "like 10m; resume off", env);
			dm.resume_ttl_ms = 0;
		}
	} else if (env != NULL && strcmp(env, "off") != 0)
		warnx("TCPSPOOL_RESUME=\"%s\": expected off or peer-addr; "
		    "resume off", env);
	while ((ch = getopt_long(argc, argv, "hd:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			dir = optarg;
			break;
		case 'l':
			if (config_parse_duration_ms(optarg, &dm.linger_ms) ==
			    -1) {
				warnx("--linger \"%s\": expected a duration "
				    "like 30s", optarg);
				return EXIT_USAGE;
			}
			break;
		case 's':
			status = true;
			break;
		case 'h':
			return usage_exit(daemon_usage, true);
		default:
			return usage_exit(daemon_usage, false);
		}
	}
	if (argc != optind)
		return usage_exit(daemon_usage, false);
	if (dir == NULL) {
		if (!spool_dir_default(path, sizeof(path)))
			return EXIT_ERR;
		dir = path;
	}
	if ((rc = spool_dir_open(dir, &lim, &dm.dir, &e)) < 0) {
		warnx("%s", e.msg[0] ? e.msg : strerror(-rc));
		return EXIT_ERR;
	}
	if ((size_t)snprintf(dm.sock, sizeof(dm.sock), "%s/%s",
	    spool_dir_path(dm.dir), SPOOL_DAEMON_SOCK) >= sizeof(dm.sock)) {
		warnx("%s: path too long for a unix socket",
		    spool_dir_path(dm.dir));
		return EXIT_ERR;
	}
	if (status)
		return ask_status(dm.sock);
	if ((env = getenv("TCPSPOOL_LOG")) != NULL && strcmp(env, "syslog") ==
	    0) {
		openlog("tcpspool", LOG_PID | LOG_NDELAY, LOG_DAEMON);
		dm_syslog = true;
	}
	raise_fd_limit();
	dm.spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	/* SIGPIPE never kills a delivery; SIGTERM and SIGINT end the loop. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	/* Blocked in every thread (deliveries inherit the mask); SIGHUP
	 * stays pending, unused: a terminal hang-up never stops it. */
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	sigdelset(&sigs, SIGHUP);
	if ((sfd = signalfd(-1, &sigs, SFD_CLOEXEC)) < 0) {
		warn("signalfd");
		return EXIT_ERR;
	}
	if ((ls = listen_on(dm.sock)) < 0)
		return EXIT_ERR;
	dlog("info", "daemon listening on %s", dm.sock);
	sweeps_start();
	rc = serve(ls, sfd);
	unlink(dm.sock);
	dlog("info", "daemon stopped (SIGTERM); %zu processes' connections "
	    "left to them", dm.nprocs);
	/* Deliveries in progress end with the process (see above). */
	fflush(stdout);
	_exit(rc);
}
