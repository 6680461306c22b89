/*
 * fuzz_status.c — arbitrary bytes as a stream's status file and the spool
 * dir's ledger (FORMAT.md §7, §9), fed to what reads them: spool_status_read,
 * spool_ledger_read and the orphan sweep (spool_dir_expire, which deletes
 * a stream whose status says it was released and has expired). Must never
 * crash, hang or leak, and must delete nothing but a released, expired
 * stream.
 *
 * Input: byte 0 is flags (bit 0: the rest is the ledger, else the status;
 * bit 1: the stream also has a registry entry, FORMAT.md §11, which a
 * claim takes only for a released stream, before the sweep).
 * Seed corpus: corpus/status/. Built by meson with -Dfuzz=true (clang).
 */
#include <sys/stat.h>

#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spool.h"

#define NAME	"00000000000000ff"

static char root[256];
static char spool[400];
static char sdir[512];
static struct spool_dir *dir;

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void
cleanup(void)
{
	spool_dir_close(dir);
	nftw(root, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static void
put(const char *path, const uint8_t *p, size_t len)
{
	int fd;

	unlink(path);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) == -1)
		abort();
	if (len > 0 && write(fd, p, len) != (ssize_t)len)
		abort();
	close(fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct spool_err err;
	const char *tmp = getenv("TMPDIR");

	(void)argc;
	(void)argv;
	snprintf(root, sizeof(root), "%s/fuzzstatus.XXXXXX",
	    tmp ? tmp : (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"));
	if (mkdtemp(root) == NULL)
		abort();
	snprintf(spool, sizeof(spool), "%s/spool", root);
	snprintf(sdir, sizeof(sdir), "%s/%s", spool, NAME);
	if (spool_dir_open(spool, NULL, &dir, &err) != 0)
		abort();
	atexit(cleanup);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spool_status st;
	struct spool_ledger l;
	struct spool_err err;
	char path[700];
	struct stat sb;
	int n;

	if (size < 1)
		return 0;
	mkdir(sdir, 0700);	/* the sweep may have removed it */
	if (data[0] & 1) {
		snprintf(path, sizeof(path), "%s/ledger", spool);
		put(path, data + 1, size - 1);
		(void)spool_ledger_read(dir, &l, &err);
		return 0;
	}
	snprintf(path, sizeof(path), "%s/status", sdir);
	put(path, data + 1, size - 1);
	if (spool_status_read(dir, NAME, &st, &err) != 0)
		return 0;
	if (data[0] & 2) {
		struct spool_claimed v[2];

		if (spool_waiting_add(dir, "4-7f000001", 1, NAME, &err) != 0)
			abort();
		n = spool_waiting_claim(dir, "4-7f000001", v, 2, NULL, &err);
		if (n < 0 || n > 1 || (n == 1 && (!st.released ||
		    strcmp(v[0].name, NAME) != 0)))
			abort();
		if (n == 1)
			spool_claimed_unlock(&v[0]);
		/* A token put back (a writer that runs): gone for the next. */
		(void)spool_waiting_take(dir, "4-7f000001", 1, NAME);
	}
	n = spool_dir_expire(dir, INT64_MAX, 0, NULL, NULL);
	/* Deleted exactly when the status says released and expiring. */
	if ((n == 1) != (st.released && st.expires_ns > 0))
		abort();
	if ((stat(sdir, &sb) == 0) == (n == 1))
		abort();
	return 0;
}
