/*
 * sysio.h — the library's own fd I/O: raw system calls, so that inside
 * libtcpspool.so it never enters a hook.
 *
 * Inside the preloaded library, a call to open, write, close, fcntl, ...
 * binds to the library's own exported definition of that symbol (the
 * hooks of preload/hooks.def), not to libc's. A spool file opened through
 * the open hook takes the hook's path for new fd numbers (and can land
 * on the number of an application fd whose close the library never saw);
 * a write through the write hook can be taken for the application's.
 * So every call of spool/ (and of preload/log.c) that makes, closes or
 * writes an fd goes through these wrappers, which enter the kernel
 * directly. Calls the library does not hook and that glibc does not route
 * through a hooked symbol (read, pread, fstat, fstatat, fsync,
 * fdatasync, ftruncate, mkdirat, renameat, unlinkat, fdopendir, readdir,
 * closedir) stay plain libc calls.
 *
 * Like libc: -1 (or a short count) with errno set on failure. EINTR is
 * returned to the caller, as libc does; sysio_close never retries (on
 * Linux the fd is released even when close reports EINTR).
 */
#ifndef TCPSPOOL_SYSIO_H
#define TCPSPOOL_SYSIO_H

#include <sys/types.h>

#include <stdbool.h>

#include <dirent.h>
#include <sys/uio.h>

int sysio_openat(int dirfd, const char *path, int flags, mode_t mode);
int sysio_close(int fd);
ssize_t sysio_write(int fd, const void *buf, size_t len);
ssize_t sysio_pwrite(int fd, const void *buf, size_t len, off_t off);
ssize_t sysio_pwritev(int fd, const struct iovec *iov, int iovcnt,
    off_t off);
/* fcntl(fd, F_DUPFD_CLOEXEC, floor): a new fd >= floor, close-on-exec. */
int sysio_dupfd_cloexec(int fd, int floor);
/*
 * sysio_openat and sysio_dup make and tag an fd inside the gate, and
 * sysio_close untags and closes inside it; a caller that makes one itself
 * for sysio_place_fd enters it around both. The host's close of a range
 * scans for ours in the gate alone (sysio_gate_close(true) ... (false))
 * and announces the range before it leaves the gate to close. A child of
 * fork makes it new (sysio_gate_reset).
 */
bool sysio_gate_enter(void);
void sysio_gate_leave(bool entered);
void sysio_gate_close(bool begin);
void sysio_gate_reset(void);
/* In the gate's write side: [first, last] is being closed by the host
 * (a slot, or -1 if none is free: then keep the gate across the close);
 * an fd made in it meanwhile is closed again (EMFILE). Unannounce in the
 * write side too. */
int sysio_announce(unsigned first, unsigned last);
void sysio_unannounce(int slot);

/* A duplicate of fd placed and told like an fd sysio_openat returns. */
int sysio_dup(int fd);
/* fd (of another origin: an epoll fd, an eventfd, a socket duplicate)
 * placed and told the same way; the fd returned replaces it. */
int sysio_place_fd(int fd);

/*
 * fdatasync and fsync of the spool's files. Every sync of spool/ goes
 * through these, so a test can see which thread waits on the disk: a hook
 * set with sysio_sync_hook is called instead (it may call the real one,
 * sysio_sync_real). NULL restores the plain call.
 */
int sysio_fdatasync(int fd);
int sysio_fsync(int fd);
int sysio_sync_real(int fd, bool data);
void sysio_sync_hook(int (*hook)(int fd, bool data));

/*
 * pread of a segment's frames (segread.c), with the same kind of seam: a
 * test holds a reader on a disk that does not answer (sysio_read_hook; it
 * may call sysio_pread_real). NULL restores the plain call.
 */
ssize_t sysio_pread(int fd, void *buf, size_t len, off_t off);
ssize_t sysio_pread_real(int fd, void *buf, size_t len, off_t off);
void sysio_read_hook(ssize_t (*hook)(int fd, void *buf, size_t len,
    off_t off));

/*
 * Where the library's own fds go, and who is told (preload/ sets this once
 * it runs inside a host; the CLI leaves it unset). Every fd sysio_openat
 * returns is moved to floor or above when it can be (out of the numbers
 * a select()-sized host uses, out of reach of a host that closes numbers
 * it does not own), then opened(fd) is called; sysio_close and
 * sysio_release call closing(fd) before the fd goes, or before it is
 * handed to something that closes it by itself (fdopendir).
 */
struct sysio_placement {
	int floor;
	/* May fd be used (NULL: any)? Else the next free number is tried. */
	bool (*usable)(int fd);
	void (*opened)(int fd);
	void (*closing)(int fd);
};
void sysio_place(const struct sysio_placement *p);
/* fd leaves sysio's care without a close of ours. */
void sysio_release(int fd);
/* closedir of a stream fdopendir made from a sysio fd: the fd stays ours
 * (placed, told) while it is read, and is released just before glibc
 * closes it. */
int sysio_closedir(DIR *dp);

#endif
