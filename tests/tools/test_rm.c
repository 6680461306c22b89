/*
 * tcpspool rm: named streams and --orphans [--older-than], never a live
 * writer's stream, never anything through a symlink or outside the spool
 * dir.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "tools_test.h"

TestSuite(tools_rm, .init = t_setup, .fini = t_teardown);

static bool
exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

static const char *
stream_path(const char *name)
{
	static char p[600];

	snprintf(p, sizeof(p), "%s/%s", t_spool, name);
	return p;
}

/*
 * Makes an orphan whose every sign of life rm --older-than reads is at
 * (CLOCK_REALTIME ns, in the past): its identity's creation time, its
 * status's time and its dir's mtime (its records' times are T_TS, 2023).
 */
static void
make_orphan_idle_since(int64_t at, char name[SPOOL_NAME_MAX])
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 3,
		.created_ns = at };
	struct spool_err e = { "" };
	struct spool_status st;
	struct spool_dir *d;
	struct timespec mtime[2];

	t_make_stream(&sp, name);
	cr_assert(spool_dir_open(t_spool, NULL, &d, &e) == 0, "%s", e.msg);
	cr_assert(spool_status_read(d, name, &st, &e) >= 0, "%s", e.msg);
	st.updated_ns = at;
	cr_assert(spool_status_release(d, name, &st, &e) == 0, "%s", e.msg);
	spool_dir_close(d);
	/* Last: writing the status renamed a file in the dir. */
	mtime[0].tv_sec = at / 1000000000LL;
	mtime[0].tv_nsec = at % 1000000000LL;
	mtime[1] = mtime[0];
	cr_assert(utimensat(AT_FDCWD, stream_path(name), mtime,
	    AT_SYMLINK_NOFOLLOW) == 0);
}

Test(tools_rm, removes_named_streams_by_name_and_prefix)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 3 };
	char a[SPOOL_NAME_MAX], b[SPOOL_NAME_MAX], c[SPOOL_NAME_MAX];
	char prefix[8], want[128];
	struct t_out o;

	t_make_stream(&sp, a);
	t_make_stream(&sp, b);
	t_make_stream(&sp, c);
	snprintf(prefix, sizeof(prefix), "%.7s", b);
	t_cli(&o, "rm", "--dir", t_spool, a, prefix, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	snprintf(want, sizeof(want), "removed %s\nremoved %s\n", a, b);
	cr_assert_str_eq(o.out, want);
	cr_assert(!exists(stream_path(a)));
	cr_assert(!exists(stream_path(b)));
	cr_assert(exists(stream_path(c)));
	t_out_free(&o);

	/* Gone: an error naming it. */
	t_cli(&o, "rm", "--dir", t_spool, a, NULL);
	cr_assert_eq(o.status, 1);
	cr_assert(strstr(o.err, a) != NULL, "%s", o.err);
	t_out_free(&o);
}

Test(tools_rm, never_removes_a_live_writers_stream)
{
	struct t_stream_spec sp = { .writer = T_LIVE_OPEN, .records = 3 };
	char name[SPOOL_NAME_MAX];
	struct t_out o;

	t_make_stream(&sp, name);
	t_cli(&o, "rm", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 1);
	cr_assert(strstr(o.err, "is running; not removed") != NULL, "%s",
	    o.err);
	cr_assert(exists(stream_path(name)));
	t_out_free(&o);
}

Test(tools_rm, orphans_removes_only_streams_whose_writer_is_gone)
{
	struct t_stream_spec dead = { .writer = T_ORPHAN, .records = 3 };
	struct t_stream_spec crashed = { .writer = T_CRASHED, .records = 3 };
	struct t_stream_spec live = { .writer = T_LIVE_OPEN, .records = 3 };
	char a[SPOOL_NAME_MAX], b[SPOOL_NAME_MAX], c[SPOOL_NAME_MAX];
	struct t_out o;

	t_make_stream(&dead, a);
	t_make_stream(&crashed, b);
	t_make_stream(&live, c);

	t_cli(&o, "rm", "-n", "--orphans", "--dir", t_spool, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	cr_assert(strstr(o.out, a) && strstr(o.out, b) && !strstr(o.out, c),
	    "%s", o.out);
	cr_assert(exists(stream_path(a)) && exists(stream_path(b)));
	t_out_free(&o);

	t_cli(&o, "rm", "--orphans", "--dir", t_spool, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	cr_assert(!exists(stream_path(a)));
	cr_assert(!exists(stream_path(b)));
	cr_assert(exists(stream_path(c)));
	t_out_free(&o);
}

Test(tools_rm, older_than_spares_recent_orphans)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 3 };
	char recent[SPOOL_NAME_MAX], idle[SPOOL_NAME_MAX], want[128];
	struct t_out o;

	t_make_stream(&sp, recent);
	make_orphan_idle_since(t_realtime_ns() - 7200 * 1000000000LL, idle);

	/* Idle for 2 h, not 3: both stay. */
	t_cli(&o, "rm", "--orphans", "--older-than", "3h", "--dir", t_spool,
	    NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	cr_assert_eq(o.out_len, 0, "%s", o.out);
	cr_assert(exists(stream_path(recent)) && exists(stream_path(idle)));
	t_out_free(&o);

	/* 90 min, in ms: the one idle for 2 h goes, the recent one stays. */
	t_cli(&o, "rm", "--orphans", "--older-than", "5400000ms", "--dir",
	    t_spool, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	snprintf(want, sizeof(want), "removed %s\n", idle);
	cr_assert_str_eq(o.out, want);
	cr_assert(!exists(stream_path(idle)));
	cr_assert(exists(stream_path(recent)));
	t_out_free(&o);
}

Test(tools_rm, never_follows_a_symlink_out_of_the_spool_dir)
{
	char victim[400], victim_file[500], link[600], name[SPOOL_NAME_MAX];
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 3 };
	struct t_out o;

	/* A dir outside the spool, reachable through a stream-like name. */
	snprintf(victim, sizeof(victim), "%s/victim", t_dir);
	cr_assert(mkdir(victim, 0700) == 0);
	snprintf(victim_file, sizeof(victim_file), "%s/0000000000000000.seg",
	    victim);
	t_write_file(victim_file, "precious", 8);
	snprintf(link, sizeof(link), "%s/00000000deadbeef", t_spool);
	cr_assert(symlink(victim, link) == 0);
	t_make_stream(&sp, name);

	t_cli(&o, "rm", "--dir", t_spool, "00000000deadbeef", NULL);
	cr_assert_eq(o.status, 1);
	cr_assert(strstr(o.err, "symlink") != NULL, "%s", o.err);
	t_out_free(&o);

	t_cli(&o, "rm", "--orphans", "--dir", t_spool, NULL);
	cr_assert_eq(o.status, 1, "%s", o.err);	/* the symlink is reported */
	cr_assert(!exists(stream_path(name)));	/* the real orphan is gone */
	t_out_free(&o);

	/* A path outside the spool dir is refused, even one named like a
	 * stream. */
	t_cli(&o, "rm", "--dir", t_spool, victim, NULL);
	cr_assert_eq(o.status, 1);
	t_out_free(&o);
	{
		char outside[500], f[600];

		snprintf(outside, sizeof(outside), "%s/0123456789abcdef", t_dir);
		cr_assert(mkdir(outside, 0700) == 0);
		snprintf(f, sizeof(f), "%s/progress", outside);
		t_write_file(f, "x", 1);
		t_cli(&o, "rm", "--dir", t_spool, outside, NULL);
		cr_assert_eq(o.status, 1);
		cr_assert(strstr(o.err, "not inside the spool dir") != NULL,
		    "%s", o.err);
		cr_assert(exists(f));
		t_out_free(&o);
	}

	cr_assert(exists(victim_file), "rm followed a symlink out of the spool");
	cr_assert(exists(link));
}

/* Issue 18 item 2: a stream the library released (peer reset) while its
 * process runs is an orphan: rm and rm --orphans remove it; a stream the
 * writer still holds stays. */
Test(tools_rm, removes_streams_released_by_their_running_writer)
{
	struct t_stream_spec rel = { .writer = T_LIVE_CLOSED, .records = 3 };
	struct t_stream_spec held = { .writer = T_LIVE_OPEN, .records = 3 };
	char a[SPOOL_NAME_MAX], b[SPOOL_NAME_MAX], h[SPOOL_NAME_MAX];
	struct t_out o;

	t_make_stream(&rel, a);
	t_make_stream(&rel, b);
	t_make_stream(&held, h);
	t_cli(&o, "rm", "--dir", t_spool, a, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	t_out_free(&o);
	cr_assert(!exists(stream_path(a)));
	t_cli(&o, "rm", "--orphans", "--dir", t_spool, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	cr_assert(strstr(o.out, b) != NULL, "%s", o.out);
	cr_assert(strstr(o.out, h) == NULL, "%s", o.out);
	t_out_free(&o);
	cr_assert(!exists(stream_path(b)));
	cr_assert(exists(stream_path(h)));
}

/* Issue 16 item 4: rm --expired removes the released orphans whose expiry
 * passed, and nothing else; ls shows each one's time left. */
Test(tools_rm, expired_removes_only_orphans_past_their_expiry)
{
	int64_t now = t_realtime_ns();
	struct t_stream_spec past = { .writer = T_LIVE_CLOSED, .records = 3,
		.expires_ns = now - 1000000000LL };
	struct t_stream_spec future = { .writer = T_LIVE_CLOSED, .records = 3,
		.expires_ns = now + 3600 * 1000000000LL };
	struct t_stream_spec kept = { .writer = T_LIVE_CLOSED, .records = 3 };
	struct t_stream_spec dead = { .writer = T_ORPHAN, .records = 3 };
	char a[SPOOL_NAME_MAX], b[SPOOL_NAME_MAX], k[SPOOL_NAME_MAX];
	char c[SPOOL_NAME_MAX], line[256];
	struct t_out o;

	t_make_stream(&past, a);
	t_make_stream(&future, b);
	t_make_stream(&kept, k);
	t_make_stream(&dead, c);

	t_cli(&o, "ls", t_spool, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	cr_assert(strstr(o.out, "expired") != NULL, "%s", o.out);
	cr_assert(strstr(o.out, "expires in 59m") != NULL ||
	    strstr(o.out, "expires in 60m") != NULL, "%s", o.out);
	t_out_free(&o);

	t_cli(&o, "rm", "--expired", "-n", "--dir", t_spool, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	snprintf(line, sizeof(line), "would remove %s", a);
	cr_assert(strstr(o.out, line) != NULL, "%s", o.out);
	t_out_free(&o);
	cr_assert(exists(stream_path(a)), "a dry run removed it");

	t_cli(&o, "rm", "--expired", "--dir", t_spool, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	snprintf(line, sizeof(line), "removed %s\n", a);
	cr_assert_str_eq(o.out, line);
	t_out_free(&o);
	cr_assert(!exists(stream_path(a)));
	cr_assert(exists(stream_path(b)), "one not yet expired went");
	cr_assert(exists(stream_path(k)), "one without an expiry went");
	cr_assert(exists(stream_path(c)), "a dead writer's orphan went");

	/* A crash while a stream was made leaves STREAM.new: one an hour
	 * old goes, a recent one (perhaps being made now) stays. */
	{
		char old_new[700], new_new[700], f[800];
		struct timespec two_h[2];

		snprintf(old_new, sizeof(old_new), "%s/0123456789abcdef.new",
		    t_spool);
		snprintf(new_new, sizeof(new_new), "%s/fedcba9876543210.new",
		    t_spool);
		cr_assert(mkdir(old_new, 0700) == 0 && mkdir(new_new, 0700) == 0);
		snprintf(f, sizeof(f), "%s/0000000000000000.open", old_new);
		t_write_file(f, "x", 1);
		clock_gettime(CLOCK_REALTIME, &two_h[0]);
		two_h[0].tv_sec -= 7200;
		two_h[1] = two_h[0];
		cr_assert(utimensat(AT_FDCWD, old_new, two_h, 0) == 0);
		t_cli(&o, "rm", "--expired", "--dir", t_spool, NULL);
		cr_assert_eq(o.status, 0, "%s", o.err);
		cr_assert_str_eq(o.out, "removed 0123456789abcdef.new\n");
		t_out_free(&o);
		cr_assert(!exists(old_new));
		cr_assert(exists(new_new), "a .new being made went");
	}

	/* A crash while a stream was removed leaves STREAM.del: it goes at
	 * once, whatever its age. */
	{
		char del[700], f[800];

		snprintf(del, sizeof(del), "%s/00000000000000aa.del", t_spool);
		cr_assert(mkdir(del, 0700) == 0);
		snprintf(f, sizeof(f), "%s/0000000000000001.seg", del);
		t_write_file(f, "x", 1);
		t_cli(&o, "rm", "--expired", "--dir", t_spool, NULL);
		cr_assert_eq(o.status, 0, "%s", o.err);
		cr_assert_str_eq(o.out, "removed 00000000000000aa.del\n");
		t_out_free(&o);
		cr_assert(!exists(del));
	}

	t_cli(&o, "rm", "--expired", "--orphans", "--dir", t_spool, NULL);
	cr_assert_eq(o.status, 64, "--expired with --orphans: %d", o.status);
	t_out_free(&o);
}

/* An expired orphan a tcpspool command holds (its flock) is left for the
 * next time, which is not a failure; one whose status is not its writer's
 * (the pid of the segment headers) is never removed. */
Test(tools_rm, expired_skips_a_held_stream_and_a_foreign_status)
{
	int64_t now = t_realtime_ns();
	struct t_stream_spec past = { .writer = T_LIVE_CLOSED, .records = 3,
		.expires_ns = now - 1000000000LL };
	char a[SPOOL_NAME_MAX], b[SPOOL_NAME_MAX], path[800], buf[2048];
	struct t_out o;
	int lock, fd;
	ssize_t n;
	char *p;

	t_make_stream(&past, a);
	t_make_stream(&past, b);

	/* a: held by another command. */
	cr_assert((lock = open(stream_path(a), O_RDONLY | O_DIRECTORY)) >= 0);
	cr_assert(flock(lock, LOCK_EX) == 0);
	/* b: its status names another pid than its segments. */
	snprintf(path, sizeof(path), "%s/status", stream_path(b));
	cr_assert((fd = open(path, O_RDWR)) >= 0);
	cr_assert((n = read(fd, buf, sizeof(buf) - 1)) > 0);
	buf[n] = '\0';
	cr_assert((p = strstr(buf, "pid=")) != NULL);
	p[4] = p[4] == '9' ? '8' : '9';	/* another writer's status */
	cr_assert(pwrite(fd, buf, (size_t)n, 0) == n);
	close(fd);

	t_cli(&o, "rm", "--expired", "--dir", t_spool, NULL);
	cr_assert_eq(o.status, 0, "a held stream is no failure: %s", o.err);
	cr_assert(strstr(o.err, "in use") != NULL, "%s", o.err);
	cr_assert_str_eq(o.out, "");
	t_out_free(&o);
	cr_assert(exists(stream_path(a)), "a held stream was removed");
	cr_assert(exists(stream_path(b)), "a foreign status was believed");
	close(lock);

	t_cli(&o, "rm", "--expired", "--dir", t_spool, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	t_out_free(&o);
	cr_assert(!exists(stream_path(a)), "released, it was not removed");
	cr_assert(exists(stream_path(b)));
}
