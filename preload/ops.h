/*
 * ops.h — the behaviour behind every hooked call, callable directly (the
 * unit tests do) without interposition. hooks.c only forwards here once
 * the real symbols are resolved.
 *
 * Fast path of every write: one atomic load of the fd's slot; an empty
 * slot means the real call, and only a real result of EAGAIN or a short
 * count leads further. errno is the real call's on every path that
 * returns its result, and the caller's own value when a spooled write
 * reports success.
 */
#ifndef TCPSPOOL_OPS_H
#define TCPSPOOL_OPS_H

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

ssize_t op_send(int fd, const void *buf, size_t len, int flags);
ssize_t op_sendto(int fd, const void *buf, size_t len, int flags,
    __CONST_SOCKADDR_ARG addr, socklen_t alen);
ssize_t op_sendmsg(int fd, const struct msghdr *msg, int flags);
int op_sendmmsg(int fd, struct mmsghdr *vec, unsigned vlen, int flags);
ssize_t op_write(int fd, const void *buf, size_t len);
ssize_t op_writev(int fd, const struct iovec *iov, int iovcnt);
ssize_t op_sendfile(int out_fd, int in_fd, off_t *offset, size_t count);
ssize_t op_splice(int fd_in, off_t *off_in, int fd_out, off_t *off_out,
    size_t len, unsigned flags);

/*
 * The slow half of the fast path the hooks inline for send, write and
 * sendmsg: the real call on a fd with an empty slot returned r (errno
 * err) without taking everything; saved is the caller's errno before it.
 */
ssize_t op_send_after(int fd, const void *buf, size_t len, int flags,
    ssize_t r, int err, int saved);
ssize_t op_write_after(int fd, const void *buf, size_t len, ssize_t r,
    int err, int saved);
ssize_t op_sendmsg_after(int fd, const struct msghdr *msg, int flags,
    ssize_t r, int err, int saved);

int op_close(int fd);
int op_close_range(unsigned first, unsigned last, int flags);
void op_closefrom(int lowfd);
int op_shutdown(int fd, int how);
int op_dup(int fd);
int op_dup2(int fd, int fd2);
int op_dup3(int fd, int fd2, int flags);
/* fcntl and fcntl64: arg as the caller passed it. */
int op_fcntl(int fd, int cmd, void *arg, bool is64);

/* A call handed out fd (>= 0): whatever the table knew of that number is
 * stale. Returns fd, errno untouched. */
int op_new_fd(int fd);
/* A new epoll fd of the application: op_new_fd, then tagged FDTAB_EPOLL. */
int op_new_epoll(int fd);

/* _exit, _Exit: deliver what can be, bounded by the linger time. */
/* Process end; immediate: _exit or _Exit (no code of the host runs after
 * it on this thread), else exit or return from main. */
void op_exit(bool immediate);

#endif
