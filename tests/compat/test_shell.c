/*
 * Shells under the library: the redirect-then-fork pattern of every start-up
 * script. `exec 3>&1` makes the shell dup a descriptor (which activates the
 * library), then `$(...)` forks a child that sets up its pipe with dup2.
 * The library must change nothing there: the shell prints what it prints
 * without the library, within a deadline.
 *
 * Then the whole story through a wrapper: `tcpspool run -- wrapper.sh ...`
 * (wrapper.sh: redirections, command substitutions, a pipeline, then exec
 * of server_a), which must start server_a and deliver every byte to a slow
 * reader, as server_a preloaded directly does.
 *
 * On the code of 2026-12 (issue 11, item 1) the preloaded shells hang in
 * the forked child (pthread_rwlock_wrlock on the fd table's lock, broken
 * by the fork handlers), so the wrapper never reaches server_a.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "compat.h"

/* A shell line takes milliseconds; this is a hang. */
#define SHELL_MS	20000
/* server_a's story (as in tests/preload/integration/test_server_a.c):
 * 300000 messages of 28 bytes, 8.4 MB, far past what the kernel holds
 * with small buffers and a gated reader. */
#define STORY_COUNT	"300000"
#define STORY_BYTES	(300000LL * 28)

/* The shells and what they run (tr, cat, date) are not ours: in sanitizer
 * builds, where the runtime is preloaded into them, do not judge their
 * leaks at exit (LeakSanitizer would abort tr). */
#define NOT_OURS	"ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:" \
	"verify_asan_link_order=0"

TestSuite(shell, .init = h_setup, .fini = h_teardown, .timeout = 150);

static void
require(const char *program, const char *package)
{
	if (compat_which(program) == NULL)
		cr_skip("%s is not installed (apt-get install %s; "
		    "scripts/setup.sh installs it)", program, package);
}

/* What p wrote on stdout, NUL-terminated (at most 4 KiB). */
static const char *
stdout_of(struct h_proc *p)
{
	static char text[4096];
	char path[PATH_MAX];
	ssize_t r = 0;
	int fd;

	h_fmt(path, sizeof(path), "%s/%s.out", h_dir(), h_label(p));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
		r = read(fd, text, sizeof(text) - 1);
		close(fd);
	}
	text[r > 0 ? r : 0] = '\0';
	return text;
}

/*
 * Runs `shell -c line`, preloaded or not; it must exit 0 within SHELL_MS
 * having printed exactly want. A hang is reported with a backtrace of
 * every process of the shell's group (the shell and its forked children).
 */
static void
shell_line(const char *shell, const char *line, bool preload,
    const char *want)
{
	static const char *const env[] = { NOT_OURS, NULL };
	struct h_spawn o = { .preload = preload, .env = env };
	struct h_argv a = { .n = 0 };
	const char *path = compat_which(shell);
	struct h_proc *p;

	require(shell, shell);
	h_args(&a, "-c", line, NULL);
	p = h_spawn(shell, path, &a, &o);
	if (!h_wait(p, SHELL_MS))
		cr_assert_fail("%s -c '%s'%s did not finish within %d ms (a "
		    "hang); stdout so far: \"%s\"; %s\nits processes: %s",
		    shell, line, preload ? " under the library" : "",
		    SHELL_MS, stdout_of(p), h_describe(p),
		    compat_group_report(h_pid(p)));
	cr_expect_eq(h_exit_code(p), 0, "%s -c '%s': %s", shell, line,
	    h_describe(p));
	cr_expect_str_eq(stdout_of(p), want, "%s -c '%s' printed \"%s\", "
	    "expected \"%s\"", shell, line, stdout_of(p), want);
	cr_expect_eq(h_spool_files(NULL, 0), 0, "the shell spooled");
}

#define ISSUE_LINE	"exec 3>&1; x=$(echo hi); echo \"$x\""

Test(shell, baseline_without_library_bash_redirect_then_substitution)
{
	shell_line("bash", ISSUE_LINE, false, "hi\n");
}

Test(shell, bash_redirect_then_command_substitution_prints_hi)
{
	shell_line("bash", ISSUE_LINE, true, "hi\n");
}

/* /bin/sh (dash on Debian): what system() and popen() run. */
Test(shell, baseline_without_library_dash_redirect_then_substitution)
{
	shell_line("dash", ISSUE_LINE, false, "hi\n");
}

Test(shell, dash_redirect_then_command_substitution_prints_hi)
{
	shell_line("dash", ISSUE_LINE, true, "hi\n");
}

/* The other idioms of a wrapper: saving and restoring stderr, a pipeline,
 * a subshell, a substitution of a pipeline. */
#define IDIOMS_LINE	"exec 4>&2 2>/dev/null; echo one | cat; (echo two); " \
	"x=$(echo three | tr t T); echo \"$x\"; exec 2>&4 4>&-"

Test(shell, bash_pipeline_subshell_and_substitution_after_redirects)
{
	shell_line("bash", IDIOMS_LINE, true, "one\ntwo\nThree\n");
}

/*
 * `tcpspool run --dir SPOOL -- wrapper.sh LOG server_a ...`, started as a
 * user would start it (the CLI sets LD_PRELOAD and TCPSPOOL_DIR); in
 * sanitizer builds the runtime is already in LD_PRELOAD, as the library
 * needs it first.
 */
static struct h_proc *
start_wrapped_server_a(const char *log, bool preload)
{
	static char runtime[PATH_MAX * 4 + 16];
	const char *env[] = { NOT_OURS, NULL, NULL };
	struct h_spawn o = { .no_spool_dir = true, .env = env };
	struct h_argv a = { .n = 0 };
	char server[PATH_MAX], wrapper[PATH_MAX];

	h_fixture(server, sizeof(server), "server_a");
	h_fmt(wrapper, sizeof(wrapper), "%s/wrapper.sh", COMPAT_SOURCE_DIR);
	cr_assert(access(wrapper, X_OK) == 0, "%s is not executable: %s",
	    wrapper, strerror(errno));
	if (preload && *compat_preload_runtime() != '\0') {
		h_fmt(runtime, sizeof(runtime), "LD_PRELOAD=%s",
		    compat_preload_runtime());
		env[1] = runtime;
	}
	if (preload) {
		h_args(&a, "run", "--lib", getenv("TCPSPOOL_TEST_LIB"),
		    "--dir", h_spool_dir(), "--linger", "60s", "--", NULL);
		h_args(&a, wrapper, log, server, NULL);
	} else {
		h_args(&a, log, server, NULL);
	}
	h_args(&a, "--status-fd", "3", "--connections=1", "--sndbuf=4096",
	    "--count=" STORY_COUNT, NULL);
	return h_spawn("wrapper", preload ? getenv("TCPSPOOL_TEST_CLI") :
	    wrapper, &a, &o);
}

static const char *const story_reader[] = { "--rcvbuf=4096", "--send=100",
	"--read-size=4096", "--pause-us=50", "--count=" STORY_COUNT, NULL };

/* The wrapper ran its substitutions before the exec: its log says so. */
static void
check_wrapper_log(const char *log)
{
	cr_expect(strstr(compat_tail(log, 5), "wrapper: starting server_a "
	    "with ") != NULL, "the wrapper's log lacks its line: %s",
	    compat_tail(log, 5));
}

Test(shell, baseline_without_library_wrapped_server_a_gives_up)
{
	static const char *const reader[] = { "--rcvbuf=4096", "--send=100",
		"--expect-prefix", "--count=" STORY_COUNT, NULL };
	char log[PATH_MAX];
	struct h_story st;

	h_fmt(log, sizeof(log), "%s/wrapper.log", h_dir());
	compat_story_start(&st, start_wrapped_server_a(log, false), 1, reader,
	    "wrapper.sh server_a (without the library)", SHELL_MS);
	h_story_wait_status(&st, "gaveup ", 1);
	cr_assert(h_wait(st.server, H_DEADLINE_MS), "%s",
	    h_describe(st.server));
	h_story_finish(&st);
	cr_expect_eq(h_exit_code(st.server), 3, "server_a should give up "
	    "with 3 at its first EAGAIN: %s", h_describe(st.server));
	cr_expect_lt(st.result[0].bytes, STORY_BYTES, "the stream was not "
	    "truncated");
	check_wrapper_log(log);
}

Test(shell, tcpspool_run_wrapper_script_execs_server_a_which_delivers_all)
{
	char log[PATH_MAX];
	struct h_story st;

	h_fmt(log, sizeof(log), "%s/wrapper.log", h_dir());
	compat_story_start(&st, start_wrapped_server_a(log, true), 1,
	    story_reader, "tcpspool run -- wrapper.sh server_a", SHELL_MS);
	h_story_wait_status(&st, "done ", 1);
	h_story_finish(&st);
	h_story_assert_delivered(&st, STORY_BYTES);
	check_wrapper_log(log);
}
