/*
 * fuzz_segment.c — arbitrary bytes as segment files, fed to everything
 * that reads them: spool_scan, spool_stream_info, a cursor (with acks,
 * which deletes segments) and spool_repair. Must never crash, hang, leak
 * or allocate without a bound.
 *
 * Input: byte 0 is flags (bit 0: first file sealed (.seg), bit 1: split
 * the rest in two segment files at the offset in bytes 1-2, bit 2: the
 * last 80 bytes are a progress file). Seed corpus: corpus/segment/.
 *
 * Built by meson with -Dfuzz=true (clang), or standalone:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I spool \
 *     tests/fuzz/fuzz_segment.c spool/[!m]*.c \
 *     $(pkg-config --cflags --libs libbsd-overlay zlib) -lpthread -o fuzz_segment
 *   ./fuzz_segment -max_total_time=60 tests/fuzz/corpus/segment
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
put(const char *file, const uint8_t *p, size_t len)
{
	char path[700];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", sdir, file);
	unlink(path);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) == -1)
		abort();
	if (len > 0 && write(fd, p, len) != (ssize_t)len)
		abort();
	close(fd);
}

static void
clear(void)
{
	char path[700];
	static const char *files[] = { "0000000000000000.seg",
	    "0000000000000000.open", "0000000000000001.open", "progress" };
	size_t i;

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", sdir, files[i]);
		unlink(path);
	}
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
	snprintf(root, sizeof(root), "%s/fuzzseg.XXXXXX",
	    tmp ? tmp : (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"));
	if (mkdtemp(root) == NULL)
		abort();
	snprintf(sdir, sizeof(sdir), "%s/spool/%s", root, NAME);
	{
		char sp[400];

		snprintf(sp, sizeof(sp), "%s/spool", root);
		if (spool_dir_open(sp, NULL, &dir, &err) != 0)
			abort();
	}
	if (mkdir(sdir, 0700) != 0)
		abort();
	atexit(cleanup);
	return 0;
}

static int
on_problem(void *arg, const struct spool_problem *p)
{
	(void)p;
	++*(int *)arg;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spool_scan_ops ops = { NULL, NULL, on_problem };
	struct spool_stream_info si;
	struct spool_cursor *c;
	struct spool_record r;
	struct spool_losses l;
	struct spool_err err;
	uint8_t flags;
	size_t split, n = 0;
	int problems = 0, rc;

	if (size < 3)
		return 0;
	flags = data[0];
	split = (size_t)data[1] | (size_t)data[2] << 8;
	data += 3;
	size -= 3;
	clear();
	if ((flags & 4) && size >= 80) {
		put("progress", data + size - 80, 80);
		size -= 80;
	}
	if ((flags & 2) && split < size) {
		put(flags & 1 ? "0000000000000000.seg" : "0000000000000000.open",
		    data, split);
		put("0000000000000001.open", data + split, size - split);
	} else
		put(flags & 1 ? "0000000000000000.seg" : "0000000000000000.open",
		    data, size);

	rc = spool_scan(dir, NAME, &ops, &problems, &err);
	if (rc >= 0 && rc != problems)
		abort();
	spool_stream_info(dir, NAME, &si, &err);
	if (spool_cursor_open(dir, NAME, &c, &err) == 0) {
		while (n < 100000 && (rc = spool_cursor_next(c, &r, &err)) == 1) {
			if (r.len > 0 && r.data[r.len - 1] == 0x5a)
				(void)r.data[0];
			if (n++ % 3 == 0)
				spool_cursor_ack(c, r.seq, r.len / 2, n % 2,
				    &err);
			else
				spool_cursor_ack(c, r.seq, r.len, n % 2, &err);
		}
		spool_cursor_losses(c, &l);
		spool_cursor_close(c);
	}
	spool_repair(dir, NAME, &err);
	spool_scan(dir, NAME, NULL, NULL, &err);
	return 0;
}

#ifdef FUZZ_STANDALONE
/* Replays files given on the command line, without libFuzzer. */
int
main(int argc, char **argv)
{
	static uint8_t buf[1 << 22];
	int i, fd;
	ssize_t len;

	LLVMFuzzerInitialize(&argc, &argv);
	for (i = 1; i < argc; i++) {
		if ((fd = open(argv[i], O_RDONLY)) == -1)
			continue;
		len = read(fd, buf, sizeof(buf));
		close(fd);
		if (len > 0)
			LLVMFuzzerTestOneInput(buf, (size_t)len);
	}
	return 0;
}
#endif
