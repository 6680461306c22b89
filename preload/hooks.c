/*
 * hooks.c — the interposed entry points. Thin: each forwards to ops.c
 * once the real symbols are resolved; before that (a call from another
 * library's constructor, or from inside dlsym) it issues the raw system
 * call, so the host never waits on us. The list is hooks.def.
 *
 * Built without _FILE_OFFSET_BITS=64 and _FORTIFY_SOURCE, so that open,
 * sendfile, fcntl... are defined under their own names, not redirected to
 * their 64-bit twins or fortified inlines (both are hooked separately).
 */
#undef _FILE_OFFSET_BITS
#undef _FORTIFY_SOURCE

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#include "export.h"
#include "fdtab.h"
#include "ops.h"
#include "real.h"
#include "resume.h"

#define RAW(...) ((long)syscall(__VA_ARGS__))

/*
 * The fast path of the busiest write calls, inlined: one load of the
 * resolver state, one of the fd's slot, the real call. Only a result that
 * left bytes unsent goes on to ops.c.
 */
#define FAST_PATH(fd) (real_ready() && fdtab_peek(fd) == NULL && \
	!atomic_load_explicit(&resume_armed, memory_order_relaxed))
#define UNSENT(r, len) ((r) >= 0 ? (size_t)(r) < (len) : \
	(errno == EAGAIN || errno == EWOULDBLOCK))

/* ------------------------------------------------------------- writes */

TCPSPOOL_EXPORT ssize_t
send(int fd, const void *buf, size_t len, int flags)
{
	if (FAST_PATH(fd)) {
		int saved = errno;
		ssize_t r = real.send(fd, buf, len, flags);

		if (!UNSENT(r, len))
			return r;
		return op_send_after(fd, buf, len, flags, r, errno, saved);
	}
	if (!real_ready())
		return RAW(SYS_sendto, fd, buf, len, flags, NULL, 0);
	return op_send(fd, buf, len, flags);
}

TCPSPOOL_EXPORT ssize_t
sendto(int fd, const void *buf, size_t len, int flags,
    __CONST_SOCKADDR_ARG addr, socklen_t alen)
{
	if (!real_ready())
		return RAW(SYS_sendto, fd, buf, len, flags, addr, alen);
	return op_sendto(fd, buf, len, flags, addr, alen);
}

TCPSPOOL_EXPORT ssize_t
sendmsg(int fd, const struct msghdr *msg, int flags)
{
	if (FAST_PATH(fd)) {
		int saved = errno;
		ssize_t r = real.sendmsg(fd, msg, flags);

		/* One iovec is the common case; more are summed in ops.c. */
		if (r < 0 ? errno != EAGAIN && errno != EWOULDBLOCK :
		    msg->msg_iovlen == 1 && (size_t)r >= msg->msg_iov[0].iov_len)
			return r;
		return op_sendmsg_after(fd, msg, flags, r, errno, saved);
	}
	if (!real_ready())
		return RAW(SYS_sendmsg, fd, msg, flags);
	return op_sendmsg(fd, msg, flags);
}

TCPSPOOL_EXPORT int
sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
	if (!real_ready())
		return (int)RAW(SYS_sendmmsg, fd, vec, vlen, flags);
	return op_sendmmsg(fd, vec, vlen, flags);
}

TCPSPOOL_EXPORT ssize_t
write(int fd, const void *buf, size_t len)
{
	if (FAST_PATH(fd)) {
		int saved = errno;
		ssize_t r = real.write(fd, buf, len);

		if (!UNSENT(r, len))
			return r;
		return op_write_after(fd, buf, len, r, errno, saved);
	}
	if (!real_ready())
		return RAW(SYS_write, fd, buf, len);
	return op_write(fd, buf, len);
}

TCPSPOOL_EXPORT ssize_t
writev(int fd, const struct iovec *iov, int iovcnt)
{
	if (!real_ready())
		return RAW(SYS_writev, fd, iov, iovcnt);
	return op_writev(fd, iov, iovcnt);
}

TCPSPOOL_EXPORT ssize_t
sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
	if (!real_ready())
		return RAW(SYS_sendfile, out_fd, in_fd, offset, count);
	return op_sendfile(out_fd, in_fd, offset, count);
}

TCPSPOOL_EXPORT ssize_t
sendfile64(int out_fd, int in_fd, off64_t *offset, size_t count)
{
	if (!real_ready())
		return RAW(SYS_sendfile, out_fd, in_fd, offset, count);
	return op_sendfile(out_fd, in_fd, (off_t *)offset, count);
}

TCPSPOOL_EXPORT ssize_t
splice(int fd_in, off64_t *off_in, int fd_out, off64_t *off_out, size_t len,
    unsigned int flags)
{
	if (!real_ready())
		return RAW(SYS_splice, fd_in, off_in, fd_out, off_out, len,
		    flags);
	return op_splice(fd_in, (off_t *)off_in, fd_out, (off_t *)off_out,
	    len, flags);
}

/* ------------------------------------------------------- fd lifecycle */

TCPSPOOL_EXPORT int
close(int fd)
{
	if (!real_ready())
		return (int)RAW(SYS_close, fd);
	return op_close(fd);
}

TCPSPOOL_EXPORT int
close_range(unsigned int first, unsigned int last, int flags)
{
	if (!real_ready())
		return (int)RAW(SYS_close_range, first, last, flags);
	return op_close_range(first, last, flags);
}

TCPSPOOL_EXPORT void
closefrom(int lowfd)
{
	if (!real_ready()) {
		(void)RAW(SYS_close_range, lowfd, ~0U, 0);
		return;
	}
	op_closefrom(lowfd);
}

TCPSPOOL_EXPORT int
shutdown(int fd, int how)
{
	if (!real_ready())
		return (int)RAW(SYS_shutdown, fd, how);
	return op_shutdown(fd, how);
}

TCPSPOOL_EXPORT int
dup(int fd)
{
	if (!real_ready())
		return (int)RAW(SYS_dup, fd);
	return op_dup(fd);
}

TCPSPOOL_EXPORT int
dup2(int fd, int fd2)
{
	if (!real_ready()) {
		if (fd == fd2)
			return RAW(SYS_fcntl, fd, F_GETFD) == -1 ? -1 : fd2;
		return (int)RAW(SYS_dup3, fd, fd2, 0);
	}
	return op_dup2(fd, fd2);
}

TCPSPOOL_EXPORT int
dup3(int fd, int fd2, int flags)
{
	if (!real_ready())
		return (int)RAW(SYS_dup3, fd, fd2, flags);
	return op_dup3(fd, fd2, flags);
}

/* Like glibc: the third argument, whatever it is, travels as a pointer. */
TCPSPOOL_EXPORT int
fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (!real_ready())
		return (int)RAW(SYS_fcntl, fd, cmd, arg);
	return op_fcntl(fd, cmd, arg, false);
}

TCPSPOOL_EXPORT int
fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (!real_ready())
		return (int)RAW(SYS_fcntl, fd, cmd, arg);
	return op_fcntl(fd, cmd, arg, true);
}

/* ------------------------------------------------ calls that make fds */

TCPSPOOL_EXPORT int
socket(int domain, int type, int protocol)
{
	if (!real_ready())
		return (int)RAW(SYS_socket, domain, type, protocol);
	return op_new_fd(real.socket(domain, type, protocol));
}

TCPSPOOL_EXPORT int
socketpair(int domain, int type, int protocol, int fds[2])
{
	int r;

	if (!real_ready())
		return (int)RAW(SYS_socketpair, domain, type, protocol, fds);
	if ((r = real.socketpair(domain, type, protocol, fds)) == 0) {
		op_new_fd(fds[0]);
		op_new_fd(fds[1]);
	}
	return r;
}

TCPSPOOL_EXPORT int
accept(int fd, __SOCKADDR_ARG addr, socklen_t *alen)
{
	if (!real_ready())
		return (int)RAW(SYS_accept4, fd, addr, alen, 0);
	return op_new_fd(real.accept(fd, addr, alen));
}

TCPSPOOL_EXPORT int
accept4(int fd, __SOCKADDR_ARG addr, socklen_t *alen, int flags)
{
	if (!real_ready())
		return (int)RAW(SYS_accept4, fd, addr, alen, flags);
	return op_new_fd(real.accept4(fd, addr, alen, flags));
}

/* The mode argument exists only with O_CREAT or O_TMPFILE. */
#define OPEN_MODE(flags, mode)                                        \
	do {                                                          \
		va_list ap;                                           \
		if ((flags) & O_CREAT ||                              \
		    ((flags) & O_TMPFILE) == O_TMPFILE) {             \
			va_start(ap, flags);                          \
			mode = va_arg(ap, mode_t);                    \
			va_end(ap);                                   \
		}                                                     \
	} while (0)

TCPSPOOL_EXPORT int
open(const char *path, int flags, ...)
{
	mode_t mode = 0;

	OPEN_MODE(flags, mode);
	if (!real_ready())
		return (int)RAW(SYS_openat, AT_FDCWD, path, flags, mode);
	return op_new_fd(real.open(path, flags, mode));
}

TCPSPOOL_EXPORT int
open64(const char *path, int flags, ...)
{
	mode_t mode = 0;

	OPEN_MODE(flags, mode);
	if (!real_ready())
		return (int)RAW(SYS_openat, AT_FDCWD, path, flags | O_LARGEFILE,
		    mode);
	return op_new_fd(real.open64(path, flags, mode));
}

TCPSPOOL_EXPORT int
openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;

	OPEN_MODE(flags, mode);
	if (!real_ready())
		return (int)RAW(SYS_openat, dirfd, path, flags, mode);
	return op_new_fd(real.openat(dirfd, path, flags, mode));
}

TCPSPOOL_EXPORT int
openat64(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;

	OPEN_MODE(flags, mode);
	if (!real_ready())
		return (int)RAW(SYS_openat, dirfd, path, flags | O_LARGEFILE,
		    mode);
	return op_new_fd(real.openat64(dirfd, path, flags, mode));
}

/* The fortified entry points of open (they check flags, then open). */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

TCPSPOOL_EXPORT int
__open_2(const char *path, int flags)
{
	if (!real_ready())
		return (int)RAW(SYS_openat, AT_FDCWD, path, flags, 0);
	return op_new_fd(real.__open_2(path, flags));
}

TCPSPOOL_EXPORT int
__open64_2(const char *path, int flags)
{
	if (!real_ready())
		return (int)RAW(SYS_openat, AT_FDCWD, path, flags | O_LARGEFILE,
		    0);
	return op_new_fd(real.__open64_2(path, flags));
}

TCPSPOOL_EXPORT int
__openat_2(int dirfd, const char *path, int flags)
{
	if (!real_ready())
		return (int)RAW(SYS_openat, dirfd, path, flags, 0);
	return op_new_fd(real.__openat_2(dirfd, path, flags));
}

TCPSPOOL_EXPORT int
__openat64_2(int dirfd, const char *path, int flags)
{
	if (!real_ready())
		return (int)RAW(SYS_openat, dirfd, path, flags | O_LARGEFILE,
		    0);
	return op_new_fd(real.__openat64_2(dirfd, path, flags));
}

TCPSPOOL_EXPORT int
creat(const char *path, mode_t mode)
{
	if (!real_ready())
		return (int)RAW(SYS_openat, AT_FDCWD, path,
		    O_CREAT | O_WRONLY | O_TRUNC, mode);
	return op_new_fd(real.creat(path, mode));
}

TCPSPOOL_EXPORT int
creat64(const char *path, mode_t mode)
{
	if (!real_ready())
		return (int)RAW(SYS_openat, AT_FDCWD, path,
		    O_CREAT | O_WRONLY | O_TRUNC | O_LARGEFILE, mode);
	return op_new_fd(real.creat64(path, mode));
}

TCPSPOOL_EXPORT int
pipe(int fds[2])
{
	int r;

	if (!real_ready())
		return (int)RAW(SYS_pipe2, fds, 0);
	if ((r = real.pipe(fds)) == 0) {
		op_new_fd(fds[0]);
		op_new_fd(fds[1]);
	}
	return r;
}

TCPSPOOL_EXPORT int
pipe2(int fds[2], int flags)
{
	int r;

	if (!real_ready())
		return (int)RAW(SYS_pipe2, fds, flags);
	if ((r = real.pipe2(fds, flags)) == 0) {
		op_new_fd(fds[0]);
		op_new_fd(fds[1]);
	}
	return r;
}

TCPSPOOL_EXPORT int
epoll_create(int size)
{
	if (!real_ready()) {
		if (size <= 0) {
			errno = EINVAL;
			return -1;
		}
		return (int)RAW(SYS_epoll_create1, 0);
	}
	return op_new_epoll(real.epoll_create(size));
}

TCPSPOOL_EXPORT int
epoll_create1(int flags)
{
	if (!real_ready())
		return (int)RAW(SYS_epoll_create1, flags);
	return op_new_epoll(real.epoll_create1(flags));
}

TCPSPOOL_EXPORT int
eventfd(unsigned int count, int flags)
{
	if (!real_ready())
		return (int)RAW(SYS_eventfd2, count, flags);
	return op_new_fd(real.eventfd(count, flags));
}

/* -------------------------------------------------------- process end */

TCPSPOOL_EXPORT void
_exit(int status)
{
	if (real_ready()) {
		op_exit(true);
		real._exit(status);
	}
	for (;;)
		(void)syscall(SYS_exit_group, status);
}

TCPSPOOL_EXPORT void
_Exit(int status)
{
	if (real_ready()) {
		op_exit(true);
		real._Exit(status);
	}
	for (;;)
		(void)syscall(SYS_exit_group, status);
}

/* exit() and return from main: after the host's own atexit handlers. */
__attribute__((destructor)) static void
tcpspool_fini(void)
{
	if (atomic_load_explicit(&real_state, memory_order_acquire) ==
	    REAL_RESOLVED)
		op_exit(false);
}
