/*
 * progress.c — the reader's persisted position (FORMAT.md §6): two slots
 * with generation numbers and a crc, so a torn write leaves the older one.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "sysio.h"

#define PROGRESS_FILE	"progress"

int
progress_load(int sfd, struct progress *p)
{
	uint8_t b[2 * PROGRESS_SLOT_LEN];
	struct progress s[2];
	bool ok[2];
	ssize_t n;
	int fd, i;

	memset(p, 0, sizeof(*p));
	if ((fd = open_regular(sfd, PROGRESS_FILE, O_RDONLY, 0)) < 0)
		return fd == -ENOENT ? 0 : fd;
	memset(b, 0, sizeof(b));
	n = pread(fd, b, sizeof(b), 0);
	sysio_close(fd);
	if (n == -1)
		return -errno;
	for (i = 0; i < 2; i++)
		ok[i] = progress_decode(b + i * PROGRESS_SLOT_LEN, &s[i]);
	if (ok[0] && (!ok[1] || s[0].generation > s[1].generation))
		*p = s[0];
	else if (ok[1])
		*p = s[1];
	return 0;
}

int
progress_open(int sfd)
{
	int fd;

	fd = open_regular(sfd, PROGRESS_FILE, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd == -EEXIST)
		fd = open_regular(sfd, PROGRESS_FILE, O_RDWR, 0);
	return fd;
}

/* Bumps p->generation and writes it to its slot; fdatasync when sync. */
int
progress_store(int fd, struct progress *p, bool sync)
{
	uint8_t b[PROGRESS_SLOT_LEN];
	ssize_t n;

	p->generation++;
	progress_encode(b, p);
	n = sysio_pwrite(fd, b, sizeof(b),
	    (off_t)(p->generation % 2) * PROGRESS_SLOT_LEN);
	if (n != (ssize_t)sizeof(b))
		return n == -1 ? -errno : -EIO;
	if (sync && sysio_fdatasync(fd) == -1)
		return -errno;
	return 0;
}
