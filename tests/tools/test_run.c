/*
 * tcpspool run: the program it starts sees the TCPSPOOL_ variables of the
 * options and the library appended to LD_PRELOAD. The program here is
 * /bin/sh printing its environment; the library really is preloaded into
 * it. In sanitizer builds an instrumented library cannot be preloaded
 * without the sanitizer runtime first, so the case without an existing
 * LD_PRELOAD checks `run --dry-run` there instead.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools_test.h"

TestSuite(tools_run, .init = t_setup, .fini = t_teardown);

/* /bin/sh is not ours: LeakSanitizer must not judge it. */
#define NO_LEAK_CHECK "ASAN_OPTIONS=detect_leaks=0:verify_asan_link_order=0"

static const char echo_env[] =
    "echo \"$LD_PRELOAD|$TCPSPOOL_DIR|$TCPSPOOL_MAX|$TCPSPOOL_FSYNC\"";

static const char *
lib(void)
{
	static char path[PATH_MAX];
	const char *l = getenv("TCPSPOOL_TEST_LIB");

	cr_assert(l != NULL);
	cr_assert(realpath(l, path) != NULL);
	return path;
}

static bool
sanitized(void)
{
	const char *s = getenv("TCPSPOOL_TEST_SANITIZE");

	return s != NULL && (strstr(s, "address") || strstr(s, "undefined") ||
	    strstr(s, "thread"));
}

/* What an LD_PRELOAD must begin with for a program to load the library:
 * the sanitizer runtime in sanitizer builds, else a harmless library. */
static const char *
runtime(void)
{
	static char buf[PATH_MAX];
	const char *p = getenv("TCPSPOOL_TEST_PRELOAD");
	char *colon;

	if (!sanitized())
		return "libz.so.1";
	cr_assert(p != NULL);
	snprintf(buf, sizeof(buf), "%s", p);
	cr_assert((colon = strrchr(buf, ':')) != NULL);
	*colon = '\0';
	return buf;
}

Test(tools_run, without_ld_preload_the_library_is_the_only_one)
{
	const char *env[] = { "LD_PRELOAD", "TCPSPOOL_LIB", "TCPSPOOL_DIR",
	    "TCPSPOOL_MAX", "TCPSPOOL_FSYNC", NO_LEAK_CHECK, NULL };
	char want[PATH_MAX * 2];
	struct t_out o;

	if (sanitized()) {
		const char *argv[] = { "CLI", "run", "--dry-run", "--dir", t_spool,
		    "--", "/bin/sh", "-c", echo_env, NULL };

		t_run(&o, argv, env);
		cr_assert_eq(o.status, 0, "%s", o.err);
		snprintf(want, sizeof(want), "\nLD_PRELOAD=%s\n", lib());
		cr_assert(strstr(o.out, want) != NULL, "%s", o.out);
		snprintf(want, sizeof(want), "TCPSPOOL_DIR=%s\n", t_spool);
		cr_assert(strstr(o.out, want) != NULL, "%s", o.out);
		t_out_free(&o);
		return;
	}
	const char *argv[] = { "CLI", "run", "--dir", t_spool, "--max", "2G",
	    "--fsync", "always", "--", "/bin/sh", "-c", echo_env, NULL };

	t_run(&o, argv, env);
	cr_assert_eq(o.status, 0, "%s", o.err);
	snprintf(want, sizeof(want), "%s|%s|2G|always\n", lib(), t_spool);
	cr_assert_str_eq(o.out, want);
	t_out_free(&o);
}

Test(tools_run, an_existing_ld_preload_is_kept_with_its_separator)
{
	char pre[PATH_MAX * 2], want[PATH_MAX * 3], envl[PATH_MAX * 2 + 16];
	const char *env[] = { envl, "TCPSPOOL_LIB", "TCPSPOOL_MAX",
	    "TCPSPOOL_FSYNC", NO_LEAK_CHECK, NULL };
	const char *argv[] = { "CLI", "run", "--dir", t_spool, "--", "/bin/sh",
	    "-c", echo_env, NULL };
	struct t_out o;

	/* Space separated: the library joins with a space. */
	snprintf(pre, sizeof(pre), "%s libm.so.6", runtime());
	snprintf(envl, sizeof(envl), "LD_PRELOAD=%s", pre);
	t_run(&o, argv, env);
	cr_assert_eq(o.status, 0, "%s", o.err);
	snprintf(want, sizeof(want), "%s %s|%s||\n", pre, lib(), t_spool);
	cr_assert_str_eq(o.out, want);
	t_out_free(&o);

	/* Colon separated: with a colon. */
	snprintf(pre, sizeof(pre), "%s:libm.so.6", runtime());
	snprintf(envl, sizeof(envl), "LD_PRELOAD=%s", pre);
	t_run(&o, argv, env);
	cr_assert_eq(o.status, 0, "%s", o.err);
	snprintf(want, sizeof(want), "%s:%s|%s||\n", pre, lib(), t_spool);
	cr_assert_str_eq(o.out, want);
	t_out_free(&o);

	/* Already there: unchanged, never twice. */
	snprintf(pre, sizeof(pre), "%s:%s", runtime(), lib());
	snprintf(envl, sizeof(envl), "LD_PRELOAD=%s", pre);
	t_run(&o, argv, env);
	cr_assert_eq(o.status, 0, "%s", o.err);
	snprintf(want, sizeof(want), "%s|%s||\n", pre, t_spool);
	cr_assert_str_eq(o.out, want);
	t_out_free(&o);
}

Test(tools_run, every_option_sets_its_variable)
{
	const char *env[] = { "TCPSPOOL_LIB", NULL };
	const char *argv[] = { "CLI", "run", "-n", "--dir", t_spool,
	    "--max-stream", "64M", "--max", "1GiB", "--min-free", "512m",
	    "--segment-size", "1M", "--level", "9", "--flush", "250ms",
	    "--fsync", "interval", "--fsync-interval", "2s", "--linger", "1m",
	    "--overflow", "block", "--block-timeout", "3s", "--ports",
	    "80,8000-8100", "--peer-ports", "443", "--log", "syslog",
	    "--log-level", "debug", "--", "prog", "a b", NULL };
	static const char *const lines[] = { "TCPSPOOL_MAX_STREAM=64M\n",
	    "TCPSPOOL_MAX=1GiB\n", "TCPSPOOL_MIN_FREE=512m\n",
	    "TCPSPOOL_SEGMENT_SIZE=1M\n", "TCPSPOOL_LEVEL=9\n",
	    "TCPSPOOL_FLUSH=250ms\n", "TCPSPOOL_FSYNC=interval\n",
	    "TCPSPOOL_FSYNC_INTERVAL=2s\n", "TCPSPOOL_LINGER=1m\n",
	    "TCPSPOOL_OVERFLOW=block\n", "TCPSPOOL_BLOCK_TIMEOUT=3s\n",
	    "TCPSPOOL_PORTS=80,8000-8100\n", "TCPSPOOL_PEER_PORTS=443\n",
	    "TCPSPOOL_LOG=syslog\n", "TCPSPOOL_LOG_LEVEL=debug\n",
	    "\nexec prog 'a b'\n" };
	struct t_out o;
	size_t i;

	t_run(&o, argv, env);
	cr_assert_eq(o.status, 0, "%s", o.err);
	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		cr_assert(strstr(o.out, lines[i]) != NULL, "no %s in:\n%s",
		    lines[i], o.out);
	t_out_free(&o);
}

Test(tools_run, a_relative_dir_becomes_absolute)
{
	const char *argv[] = { "/bin/sh", "-c",
	    "cd \"$1\" && exec \"$2\" run -n --dir spool -- true", "sh", t_dir,
	    getenv("TCPSPOOL_TEST_CLI"), NULL };
	char want[PATH_MAX];
	struct t_out o;

	t_run(&o, argv, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	snprintf(want, sizeof(want), "TCPSPOOL_DIR=%s\n", t_spool);
	cr_assert(strstr(o.out, want) != NULL, "%s", o.out);
	t_out_free(&o);
}

Test(tools_run, bad_values_are_refused_as_strictly_as_the_library)
{
	const char *bad_env[] = { "TCPSPOOL_LEVEL=12", NULL };
	const char *argv_env[] = { "CLI", "run", "--", "true", NULL };
	struct t_out o;

	t_cli(&o, "run", "--max", "12Q", "--", "true", NULL);
	cr_assert_eq(o.status, 64);
	cr_assert(strstr(o.err, "--max") && strstr(o.err, "TCPSPOOL_MAX=\"12Q\""),
	    "%s", o.err);
	t_out_free(&o);
	t_cli(&o, "run", "--fsync", "sometimes", "--", "true", NULL);
	cr_assert_eq(o.status, 64);
	t_out_free(&o);
	t_cli(&o, "run", "--level", "-1", "--", "true", NULL);
	cr_assert_eq(o.status, 64);
	t_out_free(&o);
	t_cli(&o, "run", "--linger", "25h", "--", "true", NULL);
	cr_assert_eq(o.status, 64);
	t_out_free(&o);
	t_cli(&o, "run", "--ports", "80-70", "--", "true", NULL);
	cr_assert_eq(o.status, 64);
	t_out_free(&o);
	/* From the environment: an error, not a usage error. */
	t_run(&o, argv_env, bad_env);
	cr_assert_eq(o.status, 1);
	cr_assert(strstr(o.err, "TCPSPOOL_LEVEL=\"12\"") != NULL, "%s", o.err);
	t_out_free(&o);
}

Test(tools_run, the_library_is_found_through_TCPSPOOL_LIB_or_refused)
{
	char envl[PATH_MAX + 32];
	const char *env[] = { envl, "LD_PRELOAD", NULL };
	const char *argv[] = { "CLI", "run", "-n", "--", "true", NULL };
	char want[PATH_MAX + 32];
	struct t_out o;

	snprintf(envl, sizeof(envl), "TCPSPOOL_LIB=%s", lib());
	t_run(&o, argv, env);
	cr_assert_eq(o.status, 0, "%s", o.err);
	snprintf(want, sizeof(want), "LD_PRELOAD=%s\n", lib());
	cr_assert(strstr(o.out, want) != NULL, "%s", o.out);
	t_out_free(&o);

	snprintf(envl, sizeof(envl), "TCPSPOOL_LIB=%s/nope.so", t_dir);
	t_run(&o, argv, env);
	cr_assert_eq(o.status, 1);
	cr_assert(strstr(o.err, "nope.so") != NULL, "%s", o.err);
	t_out_free(&o);
}

Test(tools_run, a_missing_program_exits_127)
{
	const char *env[] = { "LD_PRELOAD", NULL };
	const char *argv[] = { "CLI", "run", "--", "/nonexistent/prog", NULL };
	struct t_out o;

	t_run(&o, argv, env);
	cr_assert_eq(o.status, 127);
	cr_assert(strstr(o.err, "/nonexistent/prog") != NULL);
	t_out_free(&o);
}

/* Issue 18, smaller: run -n prints words a shell reads back as they were. */
Test(tools_run, dry_run_quotes_every_word_for_a_shell)
{
	const char *argv[] = { "CLI", "run", "-n", "--", "printf", "%s|",
	    "it's", "a b", "$HOME", NULL };
	struct t_out o, sh;
	char *exec_line;

	t_run(&o, argv, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	cr_assert((exec_line = strstr(o.out, "exec ")) != NULL, "%s", o.out);
	exec_line[strcspn(exec_line, "\n")] = '\0';
	/* The shell runs the words without the preload. */
	{
		const char *shv[] = { "/bin/sh", "-c", exec_line + 5, NULL };

		t_run(&sh, shv, NULL);
	}
	cr_assert_eq(sh.status, 0, "%s", sh.err);
	cr_assert_str_eq(sh.out, "it's|a b|$HOME|", "%s", sh.out);
	t_out_free(&sh);
	t_out_free(&o);
}

/* A --lib that is no ELF shared object would be ignored by the loader:
 * the program would run without the library and exit 0. */
Test(tools_run, refuses_a_library_that_is_not_an_elf_shared_object)
{
	const char *argv[] = { "CLI", "run", "--lib", "/etc/passwd", "--",
	    "true", NULL };
	struct t_out o;

	t_run(&o, argv, NULL);
	cr_assert_eq(o.status, 1, "%d", o.status);
	cr_assert(strstr(o.err, "not an ELF shared object") != NULL, "%s",
	    o.err);
	t_out_free(&o);
}
