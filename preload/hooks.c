/*
 * hooks.c — the interposed entry points. Thin: each says which fd and
 * which real call; the behaviour lives elsewhere. Before the real table is
 * resolved, a hook issues the raw system call so the host never waits on us.
 */
#include <errno.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "export.h"
#include "real.h"

TCPSPOOL_EXPORT ssize_t
send(int fd, const void *buf, size_t len, int flags)
{
	if (!real_resolve())
		return syscall(SYS_sendto, fd, buf, len, flags, NULL, 0);
	return real.send(fd, buf, len, flags);
}

TCPSPOOL_EXPORT ssize_t
write(int fd, const void *buf, size_t len)
{
	if (!real_resolve())
		return syscall(SYS_write, fd, buf, len);
	return real.write(fd, buf, len);
}

TCPSPOOL_EXPORT int
close(int fd)
{
	if (!real_resolve())
		return syscall(SYS_close, fd);
	return real.close(fd);
}
