/*
 * ops.c — what every hooked call does: find the fd's stream (one atomic
 * load), make the real call when there is none, and hand over to stream.c
 * when there is one or when the real call could not take everything.
 */
#include <sys/epoll.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "classify.h"
#include "fdtab.h"
#include "ops.h"
#include "real.h"
#include "replay.h"
#include "resume.h"
#include "runtime.h"
#include "stream.h"
#include "sysio.h"
#include "util.h"

/* Flags whose meaning a spooled copy could not keep. */
static bool
flags_unspoolable(int flags)
{
	return (flags & (MSG_OOB | MSG_ZEROCOPY)) != 0;
}

/* Sum of an iovec array; false if the kernel would refuse it. */
static bool
iov_total(const struct iovec *iov, int iovcnt, size_t *total)
{
	size_t sum = 0;
	int i;

	if (iovcnt < 0 || iovcnt > IOV_MAX || (iovcnt > 0 && iov == NULL))
		return false;
	for (i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > (size_t)SSIZE_MAX - sum)
			return false;
		sum += iov[i].iov_len;
	}
	*total = sum;
	return true;
}

/*
 * The real call on a fd with no stream returned r (errno err), leaving
 * part of the write unsent. If the fd is a socket we spool for, create its
 * stream (installed locked, so no other writer gets in between) and spool
 * the rest.
 */
static ssize_t
first_spool_locked(struct wreq *w, ssize_t r, int err, int saved)
{
	size_t done = r < 0 ? 0 : (size_t)r;
	struct stream *s, *old, *was = fdtab_peek(w->fd);
	struct sockinfo si;
	ssize_t out;

	if (!runtime_active() || replay_exiting())
		goto kernel;
	/* Another thread's write made fd a stream meanwhile: join it, as if
	 * the install below had lost (a tag other than checked: the kernel's
	 * answer). */
	if (FDTAB_IS_STREAM(was)) {
		if ((s = fdtab_get(w->fd)) == NULL)
			goto kernel;
		pthread_mutex_lock(&s->mu);
		goto joined;
	}
	if (!fdtab_unknown(was))
		goto kernel;
	switch (classify_fd(w->fd, runtime_config(), &si)) {
	case FD_NEVER:
		(void)fdtab_install(w->fd, was, FDTAB_IGNORED, &old);
		goto kernel;
	case FD_NOT_NOW:
		goto kernel;
	case FD_SPOOL:
		break;
	}
	if (!wreq_rest_available(w, done) || (s = stream_new(w->fd, &si)) ==
	    NULL)
		goto kernel;
	pthread_mutex_lock(&s->mu);
	if (!fdtab_install(w->fd, was, s, &old)) {
		pthread_mutex_unlock(&s->mu);
		stream_unref(s);
		if ((s = fdtab_get(w->fd)) == NULL)
			goto kernel;
		pthread_mutex_lock(&s->mu);
	}
joined:
	out = stream_after_direct(s, w, r, err);
	pthread_mutex_unlock(&s->mu);
	stream_unref(s);
	if (out >= 0)
		errno = saved;
	return out;
kernel:
	errno = err;
	return r;
}

/*
 * Another thread called _exit or _Exit, and the library delays that end
 * while it delivers: without the library this thread would be gone. A
 * write that left bytes unsent here (nothing spools once the end began)
 * must not let it act on an EAGAIN or a short count it would never have
 * seen (a server that gives up on EAGAIN exits with its own status before
 * the _exit's): it waits for the end, as a write to a spooling stream
 * does (stream_write). No lock is held here.
 */
static void
park_if_ending(const struct wreq *w, ssize_t r)
{
	if ((r >= 0 ? (size_t)r < w->len : is_eagain(errno)) &&
	    replay_exit_parks())
		for (;;)
			pause();
}

/* Every library lock below is taken with the thread marked (rt_enter):
 * a nested hook never reaches one (SAFETY.md, signals). */
static ssize_t
first_spool(struct wreq *w, ssize_t r, int err, int saved)
{
	ssize_t out;

	if (rt_nested()) {
		errno = err;
		return r;
	}
	rt_enter();
	out = first_spool_locked(w, r, err, saved);
	rt_leave();
	park_if_ending(w, out);
	return out;
}

/*
 * A write from a signal handler that interrupted this library on the same
 * thread: no lock may be waited on. A socket with nothing spooled gets the
 * real call and the kernel's answer, whole; one that is spooling gets
 * EAGAIN (an edge owed), as a full socket would; see SAFETY.md.
 */
static ssize_t
nested_write(struct wreq *w)
{
	struct stream *s;
	ssize_t r;

	if (fdtab_peek(w->fd) == FDTAB_CLAIMING) {
		/* Its first look at the registry is under way on another
		 * thread: nothing may pass what it may adopt. */
		replay_poke(w->fd);
		errno = EAGAIN;
		return -1;
	}
	if (!FDTAB_IS_STREAM(fdtab_peek(w->fd)))
		return w->direct(w);
	if ((s = fdtab_tryget(w->fd)) == NULL) {
		/* The table is being changed below us: an EAGAIN of ours,
		 * whose edge is given at once (no stream to owe it). */
		replay_poke(w->fd);
		errno = EAGAIN;
		return -1;
	}
	switch (stream_state_peek(s)) {
	case STREAM_DIRECT:
		r = w->direct(w);
		break;
	case STREAM_SPOOLING:
		r = invented_eagain(s);
		replay_wake();
		break;
	case STREAM_FAILED:
		errno = EPIPE;
		r = -1;
		break;
	default:
		errno = EBADF;
		r = -1;
		break;
	}
	stream_unref(s);
	return r;
}

/* Every write path: the fast path, then the stream. */
static ssize_t
write_req(struct wreq *w)
{
	int saved = errno;
	struct stream *p, *s;
	ssize_t r;

	if (rt_nested())
		return nested_write(w);
	/* Resume armed: a fd's first write looks at the registry first.
	 * Tested before the slot, so the stream path pays one relaxed load
	 * when resume is off. */
	if (atomic_load_explicit(&resume_armed, memory_order_relaxed) &&
	    ((p = fdtab_peek(w->fd)) == NULL || p == FDTAB_CLAIMING))
		resume_first_write(w->fd);
	for (;;) {
		p = fdtab_peek(w->fd);
		if (!FDTAB_IS_STREAM(p)) {
			if (p == FDTAB_CLAIMING) {
				resume_wait_claimed(w->fd);
				continue;
			}
			r = w->direct(w);
			if (r >= 0 ? (size_t)r >= w->len : !is_eagain(errno))
				return r;
			if (!fdtab_unknown(p) || w->unspoolable)
				return r;
			return first_spool(w, r, errno, saved);
		}
		rt_enter();
		if ((s = fdtab_get(w->fd)) == NULL) {
			rt_leave();
			continue;
		}
		r = stream_write(s, w);
		stream_unref(s);
		rt_leave();
		if (r == STREAM_RETRY)
			continue;
		park_if_ending(w, r);
		if (r >= 0)
			errno = saved;
		return r;
	}
}

/* ------------------------------------------------------------- writes */

struct call {
	const void *buf;
	const struct msghdr *msg;
	__CONST_SOCKADDR_ARG addr;
	socklen_t alen;
	off_t *off_in, *off_out;
	unsigned splice_flags;
};

static ssize_t
d_send(const struct wreq *w)
{
	const struct call *c = w->arg;

	return real.send(w->fd, c->buf, w->len, w->flags);
}

static ssize_t
d_sendto(const struct wreq *w)
{
	const struct call *c = w->arg;

	return real.sendto(w->fd, c->buf, w->len, w->flags, c->addr, c->alen);
}

static ssize_t
d_sendmsg(const struct wreq *w)
{
	const struct call *c = w->arg;

	return real.sendmsg(w->fd, c->msg, w->flags);
}

static ssize_t
d_write(const struct wreq *w)
{
	const struct call *c = w->arg;

	return real.write(w->fd, c->buf, w->len);
}

static ssize_t
d_writev(const struct wreq *w)
{
	return real.writev(w->fd, w->iov, w->iovcnt);
}

static ssize_t
d_sendfile(const struct wreq *w)
{
	return real.sendfile(w->fd, w->in_fd, w->offp, w->len);
}

static ssize_t
d_splice(const struct wreq *w)
{
	const struct call *c = w->arg;

	return real.splice(w->in_fd, c->off_in, w->fd, c->off_out, w->len,
	    c->splice_flags);
}

ssize_t
op_send(int fd, const void *buf, size_t len, int flags)
{
	struct iovec iov = { (void *)buf, len };
	struct call c = { .buf = buf };
	struct wreq w = { .fd = fd, .src = WSRC_IOV, .iov = &iov,
		.iovcnt = 1, .len = len, .flags = flags, .arg = &c,
		.direct = d_send, .unspoolable = flags_unspoolable(flags) };

	return write_req(&w);
}

ssize_t
op_sendto(int fd, const void *buf, size_t len, int flags,
    __CONST_SOCKADDR_ARG addr, socklen_t alen)
{
	struct iovec iov = { (void *)buf, len };
	struct call c = { .buf = buf, .addr = addr, .alen = alen };
	struct wreq w = { .fd = fd, .src = WSRC_IOV, .iov = &iov,
		.iovcnt = 1, .len = len, .flags = flags, .arg = &c,
		.direct = d_sendto, .unspoolable = flags_unspoolable(flags),
		.has_addr = alen != 0 };

	return write_req(&w);
}

static void
msg_wreq(struct wreq *w, struct call *c, int fd, const struct msghdr *msg,
    int flags, size_t len)
{
	c->msg = msg;
	*w = (struct wreq){ .fd = fd, .src = WSRC_IOV, .iov = msg->msg_iov,
		.iovcnt = (int)msg->msg_iovlen, .len = len, .flags = flags,
		.arg = c, .direct = d_sendmsg,
		.unspoolable = flags_unspoolable(flags) ||
		    msg->msg_controllen > 0,
		.has_addr = msg->msg_name != NULL && msg->msg_namelen != 0 };
}

ssize_t
op_sendmsg(int fd, const struct msghdr *msg, int flags)
{
	struct call c = { 0 };
	struct wreq w;
	size_t len;

	if (msg == NULL || msg->msg_iovlen > INT_MAX ||
	    !iov_total(msg->msg_iov, (int)msg->msg_iovlen, &len))
		return real.sendmsg(fd, msg, flags);	/* the kernel says */
	msg_wreq(&w, &c, fd, msg, flags, len);
	return write_req(&w);
}

static size_t
msg_len(const struct msghdr *m)
{
	size_t len;

	if (m->msg_iovlen > INT_MAX ||
	    !iov_total(m->msg_iov, (int)m->msg_iovlen, &len))
		return 0;
	return len;
}

/*
 * Reports per message, as the kernel would: messages sent or spooled
 * whole, then at most one short one; -1 only if the first could not go.
 */
int
op_sendmmsg(int fd, struct mmsghdr *vec, unsigned vlen, int flags)
{
	struct stream *p = fdtab_peek(fd);
	int saved = errno, r;
	unsigned i = 0;
	struct call c = { 0 };
	struct wreq w;
	ssize_t out;

	if (vlen > UIO_MAXIOV)
		vlen = UIO_MAXIOV;
	if ((p == NULL || p == FDTAB_CLAIMING) && vlen > 0 && !rt_nested() &&
	    atomic_load_explicit(&resume_armed, memory_order_relaxed)) {
		resume_first_write(fd);
		p = fdtab_peek(fd);
	}
	while (p == FDTAB_CLAIMING && !rt_nested()) {
		resume_wait_claimed(fd);	/* another thread's claim */
		p = fdtab_peek(fd);
	}
	if (p == FDTAB_CLAIMING) {	/* nested, another thread claims */
		replay_poke(fd);
		errno = EAGAIN;
		return -1;
	}
	if (!FDTAB_IS_STREAM(p)) {
		r = real.sendmmsg(fd, vec, vlen, flags);
		if (!fdtab_unknown(p) || vlen == 0 ||
		    (r < 0 && !is_eagain(errno)))
			return r;
		i = r < 0 ? 0 : (unsigned)r;
		if (i > 0 && vec[i - 1].msg_len < msg_len(&vec[i - 1].msg_hdr)) {
			/* The last one went in part: spool its rest first. */
			size_t len = msg_len(&vec[i - 1].msg_hdr);

			msg_wreq(&w, &c, fd, &vec[i - 1].msg_hdr, flags, len);
			if (w.unspoolable)
				return r;
			out = first_spool(&w, vec[i - 1].msg_len, EAGAIN,
			    saved);
			if (out < (ssize_t)len) {
				errno = saved;
				return r;
			}
			vec[i - 1].msg_len = (unsigned)len;
		}
		if (i == vlen)
			return r;
	}
	for (; i < vlen; i++) {
		size_t len;

		if (vec[i].msg_hdr.msg_iovlen > INT_MAX ||
		    !iov_total(vec[i].msg_hdr.msg_iov,
		    (int)vec[i].msg_hdr.msg_iovlen, &len)) {
			if (i > 0)
				break;
			return real.sendmmsg(fd, vec + i, 1, flags);
		}
		msg_wreq(&w, &c, fd, &vec[i].msg_hdr, flags, len);
		if ((out = write_req(&w)) < 0) {
			if (i == 0)
				return -1;
			break;
		}
		vec[i].msg_len = (unsigned)out;
		if ((size_t)out < len) {
			i++;
			break;
		}
	}
	errno = saved;
	return (int)i;
}

ssize_t
op_write(int fd, const void *buf, size_t len)
{
	struct iovec iov = { (void *)buf, len };
	struct call c = { .buf = buf };
	struct wreq w = { .fd = fd, .src = WSRC_IOV, .iov = &iov,
		.iovcnt = 1, .len = len, .arg = &c, .direct = d_write };

	return write_req(&w);
}

ssize_t
op_writev(int fd, const struct iovec *iov, int iovcnt)
{
	struct wreq w = { .fd = fd, .src = WSRC_IOV, .iov = iov,
		.iovcnt = iovcnt, .direct = d_writev };

	if (!iov_total(iov, iovcnt, &w.len))
		return real.writev(fd, iov, iovcnt);	/* the kernel says */
	return write_req(&w);
}

/*
 * The hooks' inlined fast path made the real call on a fd with an empty
 * slot and it left part of the write unsent (r, errno err; saved is the
 * caller's errno from before the call): continue as write_req would.
 */
ssize_t
op_send_after(int fd, const void *buf, size_t len, int flags, ssize_t r,
    int err, int saved)
{
	struct iovec iov = { (void *)buf, len };
	struct call c = { .buf = buf };
	struct wreq w = { .fd = fd, .src = WSRC_IOV, .iov = &iov,
		.iovcnt = 1, .len = len, .flags = flags, .arg = &c,
		.direct = d_send, .unspoolable = flags_unspoolable(flags) };

	if (w.unspoolable) {
		errno = err;
		return r;
	}
	return first_spool(&w, r, err, saved);
}

ssize_t
op_write_after(int fd, const void *buf, size_t len, ssize_t r, int err,
    int saved)
{
	struct iovec iov = { (void *)buf, len };
	struct call c = { .buf = buf };
	struct wreq w = { .fd = fd, .src = WSRC_IOV, .iov = &iov,
		.iovcnt = 1, .len = len, .arg = &c, .direct = d_write };

	return first_spool(&w, r, err, saved);
}

ssize_t
op_sendmsg_after(int fd, const struct msghdr *msg, int flags, ssize_t r,
    int err, int saved)
{
	struct call c = { 0 };
	struct wreq w;
	size_t len;

	if (msg == NULL || msg->msg_iovlen > INT_MAX ||
	    !iov_total(msg->msg_iov, (int)msg->msg_iovlen, &len)) {
		errno = err;
		return r;
	}
	msg_wreq(&w, &c, fd, msg, flags, len);
	if (w.unspoolable || (r >= 0 && (size_t)r >= len)) {
		errno = err;
		return r;
	}
	return first_spool(&w, r, err, saved);
}

ssize_t
op_sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
	struct wreq w = { .fd = out_fd, .src = WSRC_FILE, .in_fd = in_fd,
		.offp = offset, .len = count, .direct = d_sendfile };

	return write_req(&w);
}

ssize_t
op_splice(int fd_in, off_t *off_in, int fd_out, off_t *off_out, size_t len,
    unsigned flags)
{
	struct call c = { .off_in = off_in, .off_out = off_out,
		.splice_flags = flags };
	struct wreq w = { .fd = fd_out, .src = WSRC_PIPE, .in_fd = fd_in,
		.len = len, .arg = &c, .direct = d_splice };

	/* Into a socket, the input is a pipe and neither has an offset. */
	if (off_in != NULL || off_out != NULL)
		return real.splice(fd_in, off_in, fd_out, off_out, len, flags);
	return write_req(&w);
}

/* ------------------------------------------------------- fd lifecycle */

/* A stream lost an application fd; the last one going finishes it. */
static void
lost_fd(struct stream *s, int left, int fd)
{
	if (left == 0)
		stream_app_gone(s, fd);
	stream_unref(s);
}

static void
epoll_del_visit(void *arg, int epfd, struct stream *p)
{
	int fd = *(int *)arg;

	if (p == FDTAB_EPOLL)
		(void)epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
}

/*
 * The application fd is about to be closed (by close, dup2, close_range),
 * still open. If its stream's duplicate keeps the file open, the kernel
 * would keep fd's registrations in the application's epoll sets (epoll
 * watches the file, not the number) and report events for a closed fd,
 * with data the application has freed: they are removed first, from every
 * epoll fd the application made. (A vfork child changes no slot, so
 * fdtab_take finds nothing there.)
 */
static void
release_app_fd(int fd)
{
	struct stream *s;
	int left, saved = errno;

	if ((s = fdtab_take(fd, &left)) == NULL)
		return;
	if (stream_holds_file(s))
		fdtab_each(0, FDTAB_MAX - 1, epoll_del_visit, &fd);
	lost_fd(s, left, fd);
	errno = saved;
}

/* A nested hook (a signal handler inside the library) leaves a stale
 * slot as it is, as for a close we never saw: a later new fd of that
 * number finds it. */
int
op_new_fd(int fd)
{
	struct stream *s;
	int saved, left;

	if (fd < 0 || fdtab_peek(fd) == NULL || rt_nested())
		return fd;
	saved = errno;
	rt_enter();
	if ((s = fdtab_forget(fd, &left)) != NULL)
		lost_fd(s, left, -1);	/* its close was not seen */
	rt_leave();
	errno = saved;
	return fd;
}

int
op_new_epoll(int fd)
{
	struct stream *old;

	op_new_fd(fd);
	if (fd >= 0 && !rt_nested()) {
		rt_enter();
		(void)fdtab_install(fd, NULL, FDTAB_EPOLL, &old);
		rt_leave();
	}
	return fd;
}

int
op_close(int fd)
{
	struct stream *p = fdtab_peek(fd);
	int saved;

	/* A claim for this fd ends first: its tag is not another's to end,
	 * nor its adopted streams to be sent on the next connection that
	 * gets the number. */
	if (p == FDTAB_CLAIMING && !rt_nested()) {
		resume_wait_claimed(fd);
		p = fdtab_peek(fd);
	}

	if (p == NULL)
		return real.close(fd);
	if (p == FDTAB_PRIVATE)
		return 0;	/* ours: the host never opened it */
	if (rt_nested())
		return real.close(fd);	/* the slot goes stale, see op_new_fd */
	saved = errno;
	rt_enter();
	if (!FDTAB_IS_STREAM(p))
		fdtab_clear_tag(fd);
	else
		release_app_fd(fd);
	rt_leave();
	errno = saved;
	return real.close(fd);
}

struct range_scan {
	int *priv;
	size_t n, cap;
};

static void
range_visit(void *arg, int fd, struct stream *p)
{
	(void)arg;
	if (p == FDTAB_PRIVATE)
		return;		/* ours: found again in the gate */
	if (!FDTAB_IS_STREAM(p))
		fdtab_clear_tag(fd);
	else
		release_app_fd(fd);
}

/* The second scan: our fds alone, tags untouched. */
static void
private_visit(void *arg, int fd, struct stream *p)
{
	struct range_scan *rs = arg;
	int *v;

	if (p != FDTAB_PRIVATE)
		return;
	if ((v = grown(rs->priv, rs->n, &rs->cap, sizeof(*v))) == NULL)
		return;
	rs->priv = v;
	rs->priv[rs->n++] = fd;
}

/* close_range around the library's private fds, which stay open. */
int
op_close_range(unsigned first, unsigned last, int flags)
{
	struct range_scan rs = { 0 };
	unsigned start = first;
	int saved = errno, r = 0, rc, slot;
	size_t i;

	if ((flags & CLOSE_RANGE_CLOEXEC) || first > last ||
	    first >= FDTAB_MAX || rt_nested())
		return real.close_range(first, last, flags);
	rt_enter();
	/* The host's fds first (their streams released, which takes their
	 * locks); then, inside the gate that keeps the library from making
	 * an fd meanwhile, our fds are found again and spared. */
	fdtab_each((int)first, last >= FDTAB_MAX ? FDTAB_MAX - 1 : (int)last,
	    range_visit, &rs);
	sysio_gate_close(true);
	fdtab_each((int)first, last >= FDTAB_MAX ? FDTAB_MAX - 1 : (int)last,
	    private_visit, &rs);
	/* The close can wait (SO_LINGER): outside the gate, announced. */
	if ((slot = sysio_announce(first, last)) >= 0)
		sysio_gate_close(false);
	for (i = 0; i < rs.n; i++) {
		unsigned fd = (unsigned)rs.priv[i];

		if (fd > start && (rc = real.close_range(start, fd - 1,
		    flags)) != 0 && r == 0) {
			r = rc;
			saved = errno;
		}
		start = fd + 1;
	}
	/* Private fds are below FDTAB_MAX: start never wrapped. */
	if (start <= last &&
	    (rc = real.close_range(start, last, flags)) != 0 && r == 0) {
		r = rc;
		saved = errno;
	}
	if (slot >= 0) {
		sysio_gate_close(true);
		sysio_unannounce(slot);
	}
	sysio_gate_close(false);
	free(rs.priv);
	rt_leave();
	errno = saved;
	return r;
}

void
op_closefrom(int lowfd)
{
	int saved = errno;

	if (lowfd < 0)
		lowfd = 0;
	if (op_close_range((unsigned)lowfd, ~0U, 0) != 0)
		real.closefrom(lowfd);
	errno = saved;
}

int
op_shutdown(int fd, int how)
{
	struct stream *s;
	int r;

	if (!FDTAB_IS_STREAM(fdtab_peek(fd)))
		return real.shutdown(fd, how);
	if (rt_nested()) {
		if ((s = fdtab_tryget(fd)) == NULL)
			return real.shutdown(fd, how);
		r = stream_shutdown_nested(s, fd, how);
		stream_unref(s);
		return r;
	}
	rt_enter();
	if ((s = fdtab_get(fd)) == NULL)
		r = real.shutdown(fd, how);
	else {
		r = stream_shutdown(s, fd, how);
		stream_unref(s);
	}
	rt_leave();
	return r;
}

/*
 * fd has no stream yet and is being duplicated: if it is a socket we would
 * spool for, give it a stream now (DIRECT, no spool), so that both numbers
 * find it and a write through one can never overtake bytes spooled
 * through the other.
 */
static void
link_before_dup(int fd)
{
	struct stream *s, *old, *was = fdtab_peek(fd);
	struct sockinfo si;

	if (!runtime_active() || !fdtab_unknown(was))
		return;
	switch (classify_fd(fd, runtime_config(), &si)) {
	case FD_NEVER:
		(void)fdtab_install(fd, was, FDTAB_IGNORED, &old);
		return;
	case FD_NOT_NOW:
		return;
	case FD_SPOOL:
		break;
	}
	if ((s = stream_new(fd, &si)) == NULL)
		return;
	(void)fdtab_install(fd, was, s, &old);
	stream_unref(s);
}

/* nfd is a new number for the same file as fd: it shares fd's stream. */
static void
after_dup(int fd, int nfd)
{
	struct stream *p, *s, *old;
	int saved = errno;

	if (rt_nested())
		return;		/* nfd's slot is left as it is, see op_new_fd */
	op_new_fd(nfd);
	/* Both numbers must find one stream: a connection resumes (or is
	 * checked) before it gets its second number. */
	if ((fdtab_peek(fd) == NULL || fdtab_peek(fd) == FDTAB_CLAIMING) &&
	    atomic_load_explicit(&resume_armed, memory_order_relaxed))
		resume_first_write(fd);
	rt_enter();
	if (fdtab_unknown(p = fdtab_peek(fd))) {
		link_before_dup(fd);
		p = fdtab_peek(fd);
	}
	if (p == FDTAB_IGNORED || p == FDTAB_EPOLL)
		(void)fdtab_install(nfd, NULL, p, &old);
	else if (FDTAB_IS_STREAM(p) && (s = fdtab_get(fd)) != NULL) {
		if (fdtab_install(nfd, NULL, s, &old) && old != NULL)
			stream_unref(old);
		stream_unref(s);
	}
	rt_leave();
	errno = saved;
}

int
op_dup(int fd)
{
	int r = real.dup(fd);

	if (r >= 0)
		after_dup(fd, r);
	return r;
}

/* dup2/dup3 onto fd2: refuse to replace a private fd; finish fd2's stream. */
static bool
before_replace(int fd, int fd2)
{
	struct stream *p = fdtab_peek(fd2);

	if (p == FDTAB_CLAIMING && !rt_nested()) {
		resume_wait_claimed(fd2);	/* as op_close */
		p = fdtab_peek(fd2);
	}
	if (p == NULL || fd == fd2)
		return true;
	if (p == FDTAB_PRIVATE) {
		errno = EBUSY;
		return false;
	}
	if (real.fcntl(fd, F_GETFD) == -1)
		return false;	/* EBADF, as dup2 would say */
	if (rt_nested())
		return true;	/* fd2's slot goes stale, see op_new_fd */
	rt_enter();
	if (!FDTAB_IS_STREAM(p))
		fdtab_clear_tag(fd2);
	else
		release_app_fd(fd2);
	rt_leave();
	return true;
}

int
op_dup2(int fd, int fd2)
{
	int saved = errno, r;

	if (!before_replace(fd, fd2))
		return -1;
	errno = saved;
	if ((r = real.dup2(fd, fd2)) >= 0 && fd != fd2)
		after_dup(fd, r);
	return r;
}

int
op_dup3(int fd, int fd2, int flags)
{
	int saved = errno, r;

	if (fd != fd2 && !before_replace(fd, fd2))
		return -1;
	errno = saved;
	if ((r = real.dup3(fd, fd2, flags)) >= 0)
		after_dup(fd, r);
	return r;
}

int
op_fcntl(int fd, int cmd, void *arg, bool is64)
{
	int r = is64 ? real.fcntl64(fd, cmd, arg) : real.fcntl(fd, cmd, arg);

	if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC))
		after_dup(fd, r);
	return r;
}

void
op_exit(bool immediate)
{
	runtime_exit(immediate);
}
