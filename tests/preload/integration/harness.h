/*
 * harness.h — real processes for the integration tests.
 *
 * Every test gets a private directory (mkdtemp) holding the spool dir that
 * every preloaded fixture gets as TCPSPOOL_DIR, the fixtures' stdout and
 * stderr files and the slow readers' result files. A fixture is spawned in
 * its own process group with a clean environment (no inherited LD_PRELOAD
 * or TCPSPOOL_ variable), LD_PRELOAD=$TCPSPOOL_TEST_PRELOAD when asked (the
 * sanitizer runtime comes first there in sanitizer builds), and fd 3 a pipe
 * the harness reads server_a's status lines from.
 *
 * Nothing here sleeps for a fixed time: every wait is on a condition (a
 * pidfd, a status pipe, a file's presence) with a deadline, and a missed
 * deadline fails the test with what the fixtures printed. h_teardown (the
 * tests' .fini) kills whatever is left of the process groups it started.
 * Nothing here writes to stdout: it carries the TAP report.
 */
#ifndef TCPSPOOL_TEST_HARNESS_H
#define TCPSPOOL_TEST_HARNESS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * Checks that work in Criterion tests (built normally) and in plain
 * programs (built with H_PLAIN, for the TSan build, where Criterion cannot
 * start): H_ASSERT ends the test, H_EXPECT records a failure and goes on.
 * The message is a printf format and arguments, or nothing (then the
 * condition's text is the message); the macros prefix the format with a
 * space, which h_fail drops.
 */
void h_fail(bool fatal, const char *file, int line, const char *cond,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Failures recorded so far (plain programs exit 1 if any). */
int h_failures(void);
#define H_ASSERT(cond, ...) do { if (!(cond)) h_fail(true, __FILE__, \
	__LINE__, #cond, " " __VA_ARGS__); } while (0)
#define H_EXPECT(cond, ...) do { if (!(cond)) h_fail(false, __FILE__, \
	__LINE__, #cond, " " __VA_ARGS__); } while (0)
#define H_FAIL(...) h_fail(true, __FILE__, __LINE__, "", " " __VA_ARGS__)

/* Deadline for one phase of a scenario; Criterion's .timeout is the last
 * resort above it. */
#define H_DEADLINE_MS	90000
#define H_TEST_TIMEOUT	150

/* An argument vector built piece by piece, storage included. */
struct h_argv {
	char *v[128];
	int n;
	char buf[16384];
	size_t used;
};

/* snprintf that fails the test rather than truncate. */
void h_fmt(char *out, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends one formatted argument (printf-style). */
void h_arg(struct h_argv *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends each string argument up to a NULL. */
void h_args(struct h_argv *a, ...) __attribute__((sentinel));

struct h_spawn {
	bool preload;			/* LD_PRELOAD the library */
	bool no_spool_dir;		/* leave TCPSPOOL_DIR unset */
	const char *const *env;		/* more NAME=value, NULL-terminated */
	struct { int child, parent; } fds[4];	/* parent fd -> child fd */
	int nfds;
};

struct h_proc;

void h_setup(void);
void h_teardown(void);
const char *h_dir(void);
const char *h_spool_dir(void);
/* $TCPSPOOL_FIXTURE_DIR/name into out. */
void h_fixture(char *out, size_t len, const char *name);

/* Spawns prog (argv->v[0] is set to it) with o; never NULL. */
struct h_proc *h_spawn(const char *label, const char *prog,
    struct h_argv *argv, const struct h_spawn *o);
pid_t h_pid(const struct h_proc *p);
const char *h_label(const struct h_proc *p);

/* Waits until p has exited (true) or timeout_ms passed (false). */
bool h_wait(struct h_proc *p, int timeout_ms);
/* Exit code, or 128 + signal; -1 while running. */
int h_exit_code(const struct h_proc *p);
bool h_killed_by(const struct h_proc *p, int sig);

/*
 * The nth (0-based) status line of p starting with prefix, waiting up to
 * timeout_ms for it; NULL if the pipe ends or time runs out first.
 */
const char *h_status_line(struct h_proc *p, const char *prefix, int nth,
    int timeout_ms);
/* Every status line that has arrived so far. */
const char *h_status_text(struct h_proc *p);
/* How many status lines starting with prefix have arrived so far. */
int h_status_count(struct h_proc *p, const char *prefix);
/* The value of key=N in a status or result line, or -1. */
long long h_field(const char *line, const char *key);

/* What p wrote (NUL-terminated, at most 64 KiB kept, the tail). */
const char *h_stderr(struct h_proc *p);
long long h_stdout_size(const struct h_proc *p);
/* What p wrote on its stdout (NUL-terminated, the first 64 KiB). */
const char *h_stdout(struct h_proc *p);
/* Lines of p's stderr containing needle. */
int h_stderr_lines_with(struct h_proc *p, const char *needle);
/*
 * Waits until a line of p's stderr holds needle (a bounded retry on the
 * file: nothing to wait on but its growth): false if it did not within
 * timeout_ms, or if p ended without writing it. For what the library logs
 * at the moment it does something (a quota reached), before the test acts.
 */
bool h_said(struct h_proc *p, const char *needle, int timeout_ms);

/* A gate: readers block on the read end until h_gate_open. */
struct h_gate { int rfd, wfd; };
void h_gate_init(struct h_gate *g);
void h_gate_open(struct h_gate *g);

/*
 * server_a with --status-fd 3 and the given extra arguments (NULL-ended);
 * waits for its port. Its env/preload come from o.
 */
struct h_proc *h_server_a(const struct h_spawn *o, unsigned short *port,
    ...) __attribute__((sentinel));

/*
 * slow_reader number id connecting to port, gated by g (may be NULL), with
 * --result-file in the test's dir and the extra arguments (NULL-ended).
 */
struct h_proc *h_reader(int id, unsigned short port, struct h_gate *g, ...)
    __attribute__((sentinel));

struct h_result {
	bool valid;
	long long bytes, messages, missing, mismatch;
	char end[32];
	int err, complete, http;
};
/* Parses a finished reader's result file. */
bool h_reader_result(struct h_proc *p, struct h_result *r);

/* Regular files under the spool dir; names (relative) into list. */
int h_spool_files(char *list, size_t len);
/* Waits (bounded retry on the condition) until the spool dir holds no
 * regular file; true if it got there. */
bool h_spool_wait_empty(int timeout_ms);
/* Whether every file the spool dir still holds is in a stream removal
 * under way (`<name>.del/`, FORMAT.md §1): one a process began and did
 * not finish because it was killed; the next sweep deletes it. */
bool h_spool_only_removals(void);

/* Sends sig to p's whole process group (p and the children it forked). */
void h_kill_group(struct h_proc *p, int sig);

/*
 * Runs the tcpspool CLI ($TCPSPOOL_TEST_CLI) with the given arguments
 * (NULL-ended) and TCPSPOOL_DIR set to the test's spool dir, waits for it;
 * returns it (exit code, stderr) and its stdout in out.
 */
struct h_proc *h_cli(char *out, size_t outlen, ...) __attribute__((sentinel));

/* One line describing p for an assertion message: exit, stderr tail. */
const char *h_describe(struct h_proc *p);

#endif

/* Appends each string of a NULL-terminated list (list may be NULL). */
void h_argv_list(struct h_argv *a, const char *const *list);

/*
 * The story most tests tell: server_a (o says preloaded or not, and the
 * environment) serves n slow readers, gated: they connect, then read nothing
 * until every connection has written its whole stream (n "done" lines), so
 * that the writes meet a full window however the machine is loaded. Then the
 * gate opens, the readers drain, server_a ends.
 */
#define H_MAX_READERS 64
struct h_story {
	struct h_proc *server;
	unsigned short port;
	struct h_proc *reader[H_MAX_READERS];
	struct h_result result[H_MAX_READERS];
	int n;
	struct h_gate gate;
	char desc[512];		/* server_a's arguments, for messages */
};
/* Spawns server_a with server_args and n readers with reader_args. */
void h_story_start(struct h_story *st, const struct h_spawn *o, int n,
    const char *const *server_args, const char *const *reader_args);
/* Waits for n lines starting with prefix ("done ", "gaveup ", ...); fails
 * the test, saying why, if the server reports anything else first. */
void h_story_wait_status(struct h_story *st, const char *prefix, int n);
/* Opens the gate, waits for every reader (results parsed), then server. */
void h_story_finish(struct h_story *st);
/* The two halves of h_story_finish. */
void h_story_finish_readers(struct h_story *st);
void h_story_wait_server(struct h_story *st);
/* Every reader got exactly bytes_each bytes in order, then EOF; server_a
 * exited 0 with nothing on stdout; the spool dir ends empty. */
void h_story_assert_delivered(struct h_story *st, long long bytes_each);
