/* The tcpspool command as a user runs it: a real process, real exit codes. */
#include <sys/stat.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tools_test.h"

TestSuite(tools_cli, .init = t_setup, .fini = t_teardown);

static const char *const commands[] = { "run", "ls", "stat", "dump",
	"verify", "replay", "rm" };

Test(tools_cli, help_exits_0_and_lists_commands)
{
	struct t_out o;
	size_t i;

	t_cli(&o, "--help", NULL);
	cr_assert_eq(o.status, 0);
	cr_assert(strstr(o.out, "usage: tcpspool") != NULL);
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		cr_assert(strstr(o.out, commands[i]) != NULL, "%s", commands[i]);
	t_out_free(&o);
}

Test(tools_cli, every_subcommand_help_exits_0_on_stdout)
{
	char want[64];
	struct t_out o;
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		t_cli(&o, commands[i], "--help", NULL);
		cr_assert_eq(o.status, 0, "%s --help: %d", commands[i],
		    o.status);
		snprintf(want, sizeof(want), "usage: tcpspool %s", commands[i]);
		cr_assert(strncmp(o.out, want, strlen(want)) == 0,
		    "%s --help printed: %s", commands[i], o.out);
		cr_assert(strstr(o.out, "exit") != NULL,
		    "%s --help documents no exit codes", commands[i]);
		cr_assert_eq(o.err_len, 0);
		t_out_free(&o);
	}
}

Test(tools_cli, unknown_command_is_a_usage_error)
{
	struct t_out o;

	t_cli(&o, "frobnicate", NULL);
	cr_assert_eq(o.status, 64);
	t_out_free(&o);
	t_cli(&o, NULL);
	cr_assert_eq(o.status, 64);
	t_out_free(&o);
}

Test(tools_cli, bad_options_and_missing_arguments_are_usage_errors)
{
	struct t_out o;

	t_cli(&o, "ls", "--frob", NULL);
	cr_assert_eq(o.status, 64);
	t_out_free(&o);
	t_cli(&o, "stat", NULL);
	cr_assert_eq(o.status, 64);
	cr_assert(strstr(o.err, "usage: tcpspool stat") != NULL);
	t_out_free(&o);
	t_cli(&o, "dump", "x", "--format", "pdf", NULL);
	cr_assert_eq(o.status, 64);
	t_out_free(&o);
	t_cli(&o, "dump", "x", "--count", "-1", NULL);
	cr_assert_eq(o.status, 64);
	t_out_free(&o);
	t_cli(&o, "replay", "x", NULL);		/* no --to */
	cr_assert_eq(o.status, 64);
	t_out_free(&o);
	t_cli(&o, "rm", NULL);
	cr_assert_eq(o.status, 64);
	t_out_free(&o);
	t_cli(&o, "rm", "abc", "--orphans", NULL);
	cr_assert_eq(o.status, 64);
	t_out_free(&o);
	t_cli(&o, "rm", "--older-than", "1h", "abc", NULL);
	cr_assert_eq(o.status, 64);
	t_out_free(&o);
	t_cli(&o, "rm", "--orphans", "--older-than", "1y", NULL);
	cr_assert_eq(o.status, 64);
	t_out_free(&o);
	t_cli(&o, "run", NULL);
	cr_assert_eq(o.status, 64);
	t_out_free(&o);
}

Test(tools_cli, a_missing_stream_is_an_error_naming_it)
{
	struct t_out o;

	t_cli(&o, "stat", "--dir", t_spool, "0123", NULL);
	cr_assert_eq(o.status, 1);
	cr_assert(strstr(o.err, "0123") != NULL, "%s", o.err);
	t_out_free(&o);
}

Test(tools_cli, a_missing_default_spool_dir_is_empty_and_created_by_nobody)
{
	char missing[400], env[420];
	const char *argv[] = { "CLI", "ls", NULL };
	const char *envv[] = { env, NULL };
	struct t_out o;

	snprintf(missing, sizeof(missing), "%s/none", t_dir);
	snprintf(env, sizeof(env), "TCPSPOOL_DIR=%s", missing);
	t_run(&o, argv, envv);
	cr_assert_eq(o.status, 0, "%s", o.err);
	cr_assert_eq(o.out_len, 0);
	cr_assert(access(missing, F_OK) == -1);
	t_out_free(&o);
}

/* A dir the operator names that does not exist is a mistake: every
 * command that takes a dir says so (exit 1), none creates it. */
Test(tools_cli, a_mistyped_dir_is_an_error_everywhere)
{
	char missing[400];
	struct t_out o;

	snprintf(missing, sizeof(missing), "%s/none", t_dir);
	t_cli(&o, "ls", missing, NULL);
	cr_assert_eq(o.status, 1, "ls: %d", o.status);
	cr_assert(strstr(o.err, missing) != NULL, "%s", o.err);
	t_out_free(&o);
	t_cli(&o, "ls", "--dir", missing, NULL);
	cr_assert_eq(o.status, 1, "ls --dir: %d", o.status);
	t_out_free(&o);
	t_cli(&o, "verify", "--dir", missing, NULL);
	cr_assert_eq(o.status, 1, "verify --dir: %d", o.status);
	cr_assert(strstr(o.err, missing) != NULL, "%s", o.err);
	t_out_free(&o);
	/* The path given is named, not the default dir. */
	t_cli(&o, "verify", missing, NULL);
	cr_assert_eq(o.status, 1, "verify PATH: %d", o.status);
	cr_assert(strstr(o.err, missing) != NULL, "%s", o.err);
	t_out_free(&o);
	t_cli(&o, "rm", "--orphans", "--dir", missing, NULL);
	cr_assert_eq(o.status, 1, "rm --orphans: %d", o.status);
	cr_assert(strstr(o.err, missing) != NULL, "%s", o.err);
	t_out_free(&o);
	cr_assert(access(missing, F_OK) == -1);
}

/* A trailing slash made lstat and O_NOFOLLOW follow a symlinked --dir. */
Test(tools_cli, a_symlinked_dir_is_refused_with_or_without_a_slash)
{
	char link[400], slash[410];
	struct t_out o;

	cr_assert(mkdir(t_spool, 0700) == 0 || errno == EEXIST);
	snprintf(link, sizeof(link), "%s/link", t_dir);
	snprintf(slash, sizeof(slash), "%s/", link);
	cr_assert(symlink(t_spool, link) == 0);
	t_cli(&o, "ls", "--dir", link, NULL);
	cr_assert_eq(o.status, 1, "%d", o.status);
	cr_assert(strstr(o.err, "symlink") != NULL, "%s", o.err);
	t_out_free(&o);
	t_cli(&o, "ls", "--dir", slash, NULL);
	cr_assert_eq(o.status, 1, "%d", o.status);
	cr_assert(strstr(o.err, "symlink") != NULL, "%s", o.err);
	t_out_free(&o);
}
