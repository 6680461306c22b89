/*
 * Errors an operator can act on (issue 17 item 4): every command given a
 * spool dir that is missing, or is a file, exits 1 with one message naming
 * the path and the cause; a corrupt or hostile spool is reported, never a
 * crash or a hang.
 */
#include <sys/stat.h>

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tools_test.h"

TestSuite(tools_errors, .init = t_setup, .fini = t_teardown, .timeout = 120);

/* Every command that reads a spool dir, with its arguments after --dir. */
static const char *const commands[][5] = {
	{ "ls", NULL },
	{ "stat", "0123456789abcdef", NULL },
	{ "dump", "0123456789abcdef", NULL },
	{ "verify", NULL },
	{ "replay", "0123456789abcdef", "--to", "127.0.0.1:9", NULL },
	{ "rm", "0123456789abcdef", NULL },
	{ "rm", "--orphans", NULL },
	{ "metrics", NULL },
	{ "top", "--count", "1", NULL },
};

static void
each_command_fails_naming(const char *dir, const char *cause)
{
	const char *argv[10];
	struct t_out o;
	size_t i, k, n;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		n = 0;
		argv[n++] = "CLI";
		argv[n++] = commands[i][0];
		argv[n++] = "--dir";
		argv[n++] = dir;
		for (k = 1; k < 5 && commands[i][k] != NULL; k++)
			argv[n++] = commands[i][k];
		argv[n] = NULL;
		t_run(&o, argv, NULL);
		cr_assert_eq(o.status, 1, "%s: exit %d: %s", commands[i][0],
		    o.status, o.err);
		cr_assert(strstr(o.err, dir) != NULL && strstr(o.err, cause) !=
		    NULL, "%s --dir %s: %s", commands[i][0], dir, o.err);
		cr_assert_eq(o.out_len, 0, "%s: %s", commands[i][0], o.out);
		t_out_free(&o);
	}
}

Test(tools_errors, a_missing_dir_is_named_with_its_cause)
{
	each_command_fails_naming("/does/not/exist",
	    "No such file or directory");
}

Test(tools_errors, a_file_for_a_dir_is_named_with_its_cause)
{
	t_write_file(t_path("plain"), "x", 1);
	each_command_fails_naming(t_path("plain"), "not a directory");
}

Test(tools_errors, a_corrupt_spool_is_reported_never_a_crash)
{
	struct t_stream_spec spec = { .writer = T_ORPHAN, .records = 20,
		.per_frame = 4 };
	char name[SPOOL_NAME_MAX], path[700];
	struct t_frame fr[16];
	struct t_out o;
	int fd;

	t_make_stream(&spec, name);
	cr_assert(t_frames(name, fr, 16) >= 2);
	snprintf(path, sizeof(path), "%s", t_segment_path(name, fr[0].file));
	/* The segment header and the first frame overwritten. */
	cr_assert((fd = open(path, O_WRONLY)) >= 0);
	cr_assert(pwrite(fd, "\xff\xff\xff\xff\xff\xff\xff\xff", 8, 0) == 8);
	cr_assert(pwrite(fd, "\xff\xff\xff\xff", 4, (off_t)fr[0].offset) ==
	    4);
	close(fd);
	/* A stream dir that is a FIFO, another that is a plain file. */
	snprintf(path, sizeof(path), "%s/00000000000000aa", t_spool);
	cr_assert(mkfifo(path, 0600) == 0);
	snprintf(path, sizeof(path), "%s/00000000000000bb", t_spool);
	t_write_file(path, "junk", 4);

	t_cli(&o, "ls", "--dir", t_spool, NULL);
	cr_assert(o.status == 1 || o.status == 2, "ls: %d %s", o.status, o.err);
	cr_assert(strstr(o.err, name) != NULL, "%s", o.err);
	t_out_free(&o);
	t_cli(&o, "metrics", "--dir", t_spool, NULL);
	cr_assert(o.status < 64, "metrics: %d %s", o.status, o.err);
	cr_assert(strstr(o.out, "tcpspool_streams{") != NULL, "%s", o.out);
	t_out_free(&o);
	t_cli(&o, "top", "--dir", t_spool, "--count", "2", "--interval",
	    "100ms", NULL);
	cr_assert_eq(o.status, 0, "top: %s", o.err);
	cr_assert(strstr(o.out, name) != NULL, "%s", o.out);
	t_out_free(&o);
	t_cli(&o, "verify", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 2, "verify: %d %s", o.status, o.err);
	t_out_free(&o);
}

Test(tools_errors, a_textfile_that_cannot_be_written_is_named)
{
	struct t_out o;

	t_cli(&o, "metrics", "--dir", t_spool, "--textfile",
	    "/does/not/exist/tcpspool.prom", NULL);
	cr_assert_eq(o.status, 1);
	cr_assert(strstr(o.err, "/does/not/exist/tcpspool.prom") != NULL &&
	    strstr(o.err, "No such file or directory") != NULL, "%s", o.err);
	t_out_free(&o);
}
