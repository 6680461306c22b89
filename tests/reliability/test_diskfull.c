/*
 * The spool dir on a full disk: a 2 MiB tmpfs, mounted by the test in a
 * private mount namespace (unshare(CLONE_NEWNS), so nothing outside the
 * test sees it and it goes away with the test's process). Needs root;
 * skipped with a message otherwise.
 *
 *   real ENOSPC  (TCPSPOOL_MIN_FREE=0, so only the disk says no): the
 *                overflow policy applies — with eagain server_a sees
 *                EAGAIN or a short write, as without the library, after
 *                the spool absorbed what fitted; no crash; every segment
 *                verifies; one log line; every byte server_a was told was
 *                sent reaches the reader, then EOF; the spool dir ends
 *                empty.
 *   min_free     (the default 1G floor on a 2 MiB disk): nothing is
 *                spooled at all, server_a behaves exactly as without the
 *                library, one log line.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rel.h"

static char mnt[PATH_MAX], spool[PATH_MAX];
static const char *skip_why;

static void
small_disk_setup(void)
{
	h_setup();
	skip_why = NULL;
	mnt[0] = '\0';
	if (!rel_root()) {
		skip_why = "not root: cannot mount a small filesystem";
		return;
	}
	if (unshare(CLONE_NEWNS) == -1 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == -1) {
		skip_why = "no private mount namespace (unshare)";
		return;
	}
	h_fmt(mnt, sizeof(mnt), "%s/small", h_dir());
	if (mkdir(mnt, 0700) == -1 ||
	    mount("tmpfs", mnt, "tmpfs", MS_NOSUID | MS_NODEV,
	    "size=2m,mode=0700") == -1) {
		skip_why = "mount -t tmpfs failed";
		mnt[0] = '\0';
		return;
	}
	h_fmt(spool, sizeof(spool), "%s/spool", mnt);
	if (mkdir(spool, 0700) == -1)
		skip_why = "mkdir on the small filesystem failed";
}

static void
small_disk_teardown(void)
{
	h_teardown();	/* kills the fixtures first: nothing holds the mount */
	if (mnt[0] != '\0') {
		umount2(mnt, MNT_DETACH);
		rmdir(mnt);
	}
}

TestSuite(diskfull, .init = small_disk_setup, .fini = small_disk_teardown,
    .timeout = 300);

/* Lines of p's stderr that come from the library. */
static int
library_lines(struct h_proc *p)
{
	return h_stderr_lines_with(p, "tcpspool");
}

Test(diskfull, enospc_applies_eagain_keeps_segments_valid_delivers_accepted)
{
	char dirvar[PATH_MAX + 16], out[16384];
	const char *env[] = { dirvar, "TCPSPOOL_MIN_FREE=0",
		"TCPSPOOL_LEVEL=0", "TCPSPOOL_LINGER=20s", NULL };
	struct h_spawn o = { .preload = true, .env = env };
	struct h_result *r;
	struct h_story st;
	struct h_proc *cli;
	long long told;

	if (skip_why != NULL)
		cr_skip_test("%s", skip_why);
	h_fmt(dirvar, sizeof(dirvar), "TCPSPOOL_DIR=%s", spool);
	/* Level 0 stores the pattern as it is: the 2 MiB fill up after
	 * about 2 MB of spooled writes, not 40 MB of compressed ones. */
	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=0", NULL },
	    (const char *[]){ "--rcvbuf=4096", "--expect-prefix",
	        "--count=1000000000", NULL });
	h_story_wait_status(&st, "gaveup ", 1);
	told = h_field(h_status_line(st.server, "gaveup ", 0, 0), "bytes");
	cr_expect_gt(told, 1 << 20, "server_a gave up after %lld bytes: the "
	    "spool absorbed less than 1 MiB of a 2 MiB disk", told);

	/* The disk is full and server_a's child drains at exit: every
	 * segment already written must verify (a torn tail of the live
	 * writer is a note, not a problem). */
	cli = h_cli(out, sizeof(out), "verify", "--dir", spool, NULL);
	cr_expect_eq(h_exit_code(cli), 0, "verify on the full disk: %s\n%s",
	    h_describe(cli), out);

	h_story_finish(&st);
	r = &st.result[0];
	cr_expect_eq(h_exit_code(st.server), 3, "server_a should see EAGAIN "
	    "or a short write as without the library (exit 3): %s",
	    h_describe(st.server));
	cr_assert(r->valid, "%s", h_describe(st.reader[0]));
	cr_expect_eq(r->mismatch, -1, "the stream differs at byte %lld",
	    r->mismatch);
	cr_expect_eq(r->bytes, told, "server_a was told %lld bytes were "
	    "sent, the reader got %lld (end %s): accepted bytes were lost",
	    told, r->bytes, r->end);
	cr_expect_str_eq(r->end, "EOF");
	cr_expect_eq(library_lines(st.server), 1, "expected one log line "
	    "for the full disk: %s", h_describe(st.server));
	/* Only the ledger stays: one line saying the stream had errors
	 * (FORMAT.md §9), so ls can still count them. */
	{
		char lpath[PATH_MAX + 16], line[512];
		long long left = rel_dir_bytes(spool), lbytes;

		h_fmt(lpath, sizeof(lpath), "%s/ledger", spool);
		lbytes = rel_read_file(lpath, line, sizeof(line));
		cr_expect_eq(left, lbytes < 0 ? 0 : lbytes, "spool dir not "
		    "empty after delivery: %lld bytes left", left);
		if (lbytes > 0)
			cr_expect(strstr(line, " end=removed\n") != NULL &&
			    strstr(line, " errors=0 ") == NULL, "ledger: %s",
			    line);
	}
	cr_expect_eq(h_stdout_size(st.server), 0);
}

Test(diskfull, min_free_floor_on_a_small_disk_passes_through)
{
	char dirvar[PATH_MAX + 16];
	const char *env[] = { dirvar, "TCPSPOOL_LINGER=60s", NULL };
	struct h_spawn o = { .preload = true, .env = env };
	struct h_result *r;
	struct h_story st;

	if (skip_why != NULL)
		cr_skip_test("%s", skip_why);
	h_fmt(dirvar, sizeof(dirvar), "TCPSPOOL_DIR=%s", spool);
	/* --no-fork: one process, so "one log line" is well defined. */
	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=40000", "--no-fork",
	        NULL },
	    (const char *[]){ "--rcvbuf=4096", "--expect-prefix",
	        "--count=40000", NULL });
	h_story_wait_status(&st, "gaveup ", 1);
	h_story_finish(&st);
	r = &st.result[0];
	cr_expect_eq(h_exit_code(st.server), 3, "%s", h_describe(st.server));
	cr_expect_lt(h_field(h_status_line(st.server, "gaveup ", 0, 0),
	    "bytes"), 1 << 20, "server_a wrote more than 1 MiB: something was "
	    "spooled below the free-disk floor");
	cr_assert(r->valid, "%s", h_describe(st.reader[0]));
	cr_expect_eq(r->mismatch, -1);
	cr_expect_eq(library_lines(st.server), 1, "expected one log line "
	    "for the floor: %s", h_describe(st.server));
	cr_expect_eq(rel_dir_bytes(spool), 0, "the spool dir is not empty");
}
