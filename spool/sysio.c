/*
 * sysio.c — the library's own fd I/O as raw system calls (see sysio.h).
 * syscall(2) returns -1 and sets errno like the libc wrappers do.
 */
#include <sys/syscall.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "sysio.h"

static _Atomic(const struct sysio_placement *) placement;

/*
 * Making one of our fds (the system call, then its tag) or closing one
 * (its untag, then the close), and the scan of the host's close_range for
 * ours exclude each other: a range closed between the two steps would
 * close ours, or one the host has just opened under a number we thought
 * ours. The host's close itself runs outside the gate (it can wait out an
 * SO_LINGER): the range is announced meanwhile, and an fd we make inside
 * an announced range is closed again at once (we never keep a number the
 * host's close may take). Only with a placement (inside a host).
 */
static pthread_rwlock_t gate = PTHREAD_RWLOCK_INITIALIZER;
#define ANNOUNCED_MAX	16
static struct {
	unsigned first, last;
	bool used;
} announced[ANNOUNCED_MAX];

/* Under the gate. */
static bool
being_closed(int fd)
{
	int i;

	for (i = 0; i < ANNOUNCED_MAX; i++)
		if (announced[i].used && (unsigned)fd >= announced[i].first &&
		    (unsigned)fd <= announced[i].last)
			return true;
	return false;
}

int
sysio_announce(unsigned first, unsigned last)
{
	int i;

	for (i = 0; i < ANNOUNCED_MAX; i++)
		if (!announced[i].used) {
			announced[i].first = first;
			announced[i].last = last;
			announced[i].used = true;
			return i;
		}
	return -1;
}

void
sysio_unannounce(int slot)
{
	if (slot >= 0 && slot < ANNOUNCED_MAX)
		announced[slot].used = false;
}

bool
sysio_gate_enter(void)
{
	if (atomic_load(&placement) == NULL)
		return false;
	pthread_rwlock_rdlock(&gate);
	return true;
}

void
sysio_gate_leave(bool entered)
{
	if (entered)
		pthread_rwlock_unlock(&gate);
}

void
sysio_gate_close(bool begin)
{
	if (begin)
		pthread_rwlock_wrlock(&gate);
	else
		pthread_rwlock_unlock(&gate);
}

void
sysio_gate_reset(void)
{
	int i;

	pthread_rwlock_init(&gate, NULL);
	for (i = 0; i < ANNOUNCED_MAX; i++)
		announced[i].used = false;
}

void
sysio_place(const struct sysio_placement *p)
{
	atomic_store(&placement, p);
}

static _Atomic(int (*)(int, bool)) sync_hook;

/* fd, ours now: placed past the floor and the numbers the caller cannot
 * take, and told. */
static int
place(int fd)
{
	const struct sysio_placement *p = atomic_load(&placement);
	int nfd, floor, tries;

	if (fd < 0 || p == NULL)
		return fd;
	/* Below the floor, or a number the caller cannot take: the lowest
	 * free one past it (floor moves on only to skip the unusable). */
	floor = p->floor;
	for (tries = 0; tries < 64 && (fd < p->floor || (p->usable != NULL &&
	    !p->usable(fd))); tries++) {
		if ((nfd = sysio_dupfd_cloexec(fd, floor)) < 0)
			break;
		(void)syscall(SYS_close, fd);
		fd = nfd;
		floor = fd + 1;
	}
	if (being_closed(fd)) {
		/* The host is closing this number: not ours to keep. */
		(void)syscall(SYS_close, fd);
		errno = EMFILE;
		return -1;
	}
	if (p->opened != NULL)
		p->opened(fd);
	return fd;
}

int
sysio_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	bool g = sysio_gate_enter();
	int fd = place((int)syscall(SYS_openat, dirfd, path, flags, mode));

	sysio_gate_leave(g);
	return fd;
}

int
sysio_place_fd(int fd)
{
	return place(fd);
}

int
sysio_dup(int fd)
{
	const struct sysio_placement *p = atomic_load(&placement);

	bool g = sysio_gate_enter();
	int nfd;

	/* Straight to the floor: never a low number, even for a moment. */
	nfd = place(sysio_dupfd_cloexec(fd, p != NULL ? p->floor : 0));
	sysio_gate_leave(g);
	return nfd;
}

/* Raw, as every call of ours: libc's are cancellation points, and a
 * spool is synced with its stream's lock held (TCPSPOOL_FSYNC=always). */
int
sysio_sync_real(int fd, bool data)
{
	return (int)syscall(data ? SYS_fdatasync : SYS_fsync, fd);
}

void
sysio_sync_hook(int (*hook)(int fd, bool data))
{
	atomic_store(&sync_hook, hook);
}

int
sysio_fdatasync(int fd)
{
	int (*hook)(int, bool) = atomic_load(&sync_hook);

	return hook != NULL ? hook(fd, true) : sysio_sync_real(fd, true);
}

int
sysio_fsync(int fd)
{
	int (*hook)(int, bool) = atomic_load(&sync_hook);

	return hook != NULL ? hook(fd, false) : sysio_sync_real(fd, false);
}

static _Atomic(ssize_t (*)(int, void *, size_t, off_t)) read_hook;

ssize_t
sysio_pread_real(int fd, void *buf, size_t len, off_t off)
{
	return (ssize_t)syscall(SYS_pread64, fd, buf, len, off);
}

void
sysio_read_hook(ssize_t (*hook)(int fd, void *buf, size_t len, off_t off))
{
	atomic_store(&read_hook, hook);
}

ssize_t
sysio_pread(int fd, void *buf, size_t len, off_t off)
{
	ssize_t (*hook)(int, void *, size_t, off_t) = atomic_load(&read_hook);

	return hook != NULL ? hook(fd, buf, len, off) :
	    sysio_pread_real(fd, buf, len, off);
}

void
sysio_release(int fd)
{
	const struct sysio_placement *p = atomic_load(&placement);

	if (fd >= 0 && p != NULL && p->closing != NULL)
		p->closing(fd);
}

int
sysio_closedir(DIR *dp)
{
	bool g = sysio_gate_enter();
	int rc;

	sysio_release(dirfd(dp));
	rc = closedir(dp);
	sysio_gate_leave(g);
	return rc;
}

int
sysio_close(int fd)
{
	bool g = sysio_gate_enter();
	int rc, saved;

	sysio_release(fd);
	rc = (int)syscall(SYS_close, fd);
	saved = errno;
	sysio_gate_leave(g);
	errno = saved;
	return rc;
}

ssize_t
sysio_write(int fd, const void *buf, size_t len)
{
	return (ssize_t)syscall(SYS_write, fd, buf, len);
}

ssize_t
sysio_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	struct iovec iov = { (void *)(uintptr_t)buf, len };

	return sysio_pwritev(fd, &iov, 1, off);
}

/* The kernel takes the offset as two longs, low then high (as glibc's
 * LO_HI_LONG), on 32- and 64-bit ABIs alike. */
ssize_t
sysio_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	uint64_t u = (uint64_t)off;

	return (ssize_t)syscall(SYS_pwritev, fd, iov, iovcnt, (long)u,
	    (long)(u >> 32));
}

int
sysio_dupfd_cloexec(int fd, int floor)
{
	return (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, floor);
}
