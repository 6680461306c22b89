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
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <limits.h>
#include <dlfcn.h>
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

/* -------------------------------------------------------- image end */

/*
 * exec ends the image that holds the spools, not the connections: an
 * exec that can succeed first waits for the spools to drain (op_exec,
 * runtime.c); one that fails at once (no such file, not executable, a
 * PATH search that finds nothing) waits for nothing, and after any
 * failed exec streams spool again (op_exec_failed).
 */
static bool
executable(const char *p)
{
	struct stat st;

	return faccessat(AT_FDCWD, p, X_OK, AT_EACCESS) == 0 &&
	    stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* file, or with search and no '/' in it the first match along PATH (as
 * execvp looks, "/bin:/usr/bin" when PATH is unset), is executable. */
static bool
exec_target_ok(const char *file, bool search)
{
	const char *path, *p, *e;
	char buf[PATH_MAX];
	size_t flen, dlen;

	if (file == NULL || *file == '\0')
		return false;
	if (!search || strchr(file, '/') != NULL)
		return executable(file);
	if ((path = getenv("PATH")) == NULL)
		path = "/bin:/usr/bin";
	flen = strlen(file);
	for (p = path;; p = e + 1) {
		e = strchrnul(p, ':');
		dlen = (size_t)(e - p);
		if (dlen == 0)	/* an empty entry: the current dir */
			p = ".", dlen = 1;
		if (dlen + 1 + flen < sizeof(buf)) {
			memcpy(buf, p, dlen);
			buf[dlen] = '/';
			memcpy(buf + dlen + 1, file, flen + 1);
			if (executable(buf))
				return true;
		}
		if (*e == '\0')
			return false;
	}
}

/* The real call, between op_exec and, if it returns, op_exec_failed. */
#define EXEC_AROUND(ok, call) do {				\
	bool began_ = (ok) && op_exec();			\
	int r_ = (call);					\
								\
	if (began_)						\
		op_exec_failed();	/* keeps errno */	\
	return r_;						\
} while (0)

/* Without the resolver (never in a supported glibc: a symbol missing),
 * the searching forms come from dlsym alone. */
static int
unresolved_execvpe(const char *file, char *const argv[], char *const envp[])
{
	int (*f)(const char *, char *const[], char *const[]) =
	    (int (*)(const char *, char *const[], char *const[]))dlsym(
	    RTLD_NEXT, "execvpe");

	if (f == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return f(file, argv, envp);
}

static int
exec_ve(const char *path, char *const argv[], char *const envp[])
{
	if (!real_ready())
		return (int)RAW(SYS_execve, path, argv, envp);
	EXEC_AROUND(exec_target_ok(path, false),
	    real.execve(path, argv, envp));
}

static int
exec_vpe(const char *file, char *const argv[], char *const envp[])
{
	if (!real_ready())
		return unresolved_execvpe(file, argv, envp);
	EXEC_AROUND(exec_target_ok(file, true),
	    real.execvpe(file, argv, envp));
}

TCPSPOOL_EXPORT int
execve(const char *path, char *const argv[], char *const envp[])
{
	return exec_ve(path, argv, envp);
}

TCPSPOOL_EXPORT int
execv(const char *path, char *const argv[])
{
	return exec_ve(path, argv, environ);
}

TCPSPOOL_EXPORT int
execvpe(const char *file, char *const argv[], char *const envp[])
{
	return exec_vpe(file, argv, envp);
}

TCPSPOOL_EXPORT int
execvp(const char *file, char *const argv[])
{
	return exec_vpe(file, argv, environ);
}

/* By fd: nothing to look at beforehand; a failed one lets streams spool
 * again as any does. */
TCPSPOOL_EXPORT int
execveat(int dirfd, const char *path, char *const argv[],
    char *const envp[], int flags)
{
	if (!real_ready())
		return (int)RAW(SYS_execveat, dirfd, path, argv, envp, flags);
	EXEC_AROUND(true, real.execveat(dirfd, path, argv, envp, flags));
}

TCPSPOOL_EXPORT int
fexecve(int fd, char *const argv[], char *const envp[])
{
	if (!real_ready())
		return (int)RAW(SYS_execveat, fd, "", argv, envp,
		    AT_EMPTY_PATH);
	EXEC_AROUND(fd >= 0, real.fexecve(fd, argv, envp));
}

/*
 * The list forms as glibc makes them (posix/execl.c): the arguments up to
 * the NULL after arg, counted, then copied into an argv on the stack
 * (execle: the environment follows the NULL). Each va_list is used only
 * in the function that started it (a macro, not a function taking it).
 */
/* Declares argv (argc + 1 entries, the last NULL) and fills it; leaves ap
 * started, after the list's NULL, for the caller to read on and end. */
#define LIST_ARGV(argv, arg, ap)					\
	int argc_ = 1, i_;						\
									\
	va_start(ap, arg);						\
	while (va_arg(ap, const char *) != NULL)			\
		if (++argc_ == INT_MAX - 1) {				\
			va_end(ap);					\
			errno = E2BIG;					\
			return -1;					\
		}							\
	va_end(ap);							\
	char *argv[argc_ + 1];						\
									\
	va_start(ap, arg);						\
	argv[0] = (char *)arg;						\
	for (i_ = 1; i_ <= argc_; i_++)					\
		argv[i_] = va_arg(ap, char *)

TCPSPOOL_EXPORT int
execl(const char *path, const char *arg, ...)
{
	va_list ap;
	LIST_ARGV(argv, arg, ap);

	va_end(ap);
	return exec_ve(path, argv, environ);
}

TCPSPOOL_EXPORT int
execlp(const char *file, const char *arg, ...)
{
	va_list ap;
	LIST_ARGV(argv, arg, ap);

	va_end(ap);
	return exec_vpe(file, argv, environ);
}

/* execle: the environment follows the list's NULL. */
TCPSPOOL_EXPORT int
execle(const char *path, const char *arg, ...)
{
	char **envp;
	va_list ap;
	LIST_ARGV(argv, arg, ap);

	envp = va_arg(ap, char **);
	va_end(ap);
	return exec_ve(path, argv, envp);
}

/* exit() and return from main: after the host's own atexit handlers. */
__attribute__((destructor)) static void
tcpspool_fini(void)
{
	if (atomic_load_explicit(&real_state, memory_order_acquire) ==
	    REAL_RESOLVED)
		op_exit(false);
}
