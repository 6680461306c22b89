/*
 * scenario.h — one run of a real program serving compat_client(s), the
 * shape every scenario after nginx's takes: start the program (it and what
 * it forks are one process group), wait until it listens, start clients,
 * watch them to their end while polling the spool dir for the largest
 * backlog, compare what each client received with what was served, stop
 * the program by its pid, and say in compat-report.txt what happened.
 *
 * A failure's message is the whole diagnosis, since Criterion's TAP drops
 * stderr: the bytes each client received and how its connection ended,
 * the program's log, `tcpspool ls`, the spool dir, and gdb's backtrace of
 * every process of the program's group (and of a second group, such as a
 * proxy's backend).
 */
#ifndef TCPSPOOL_TEST_SCENARIO_H
#define TCPSPOOL_TEST_SCENARIO_H

#include <stdbool.h>
#include <limits.h>

#include "compat.h"

#define SCN_MAX_CLIENTS	8

/* How a compat_client ended: its result line, parsed. */
struct scn_result {
	bool valid;
	long long bytes, sent, ms;
	char end[32];		/* EOF, TIMEOUT, ECONNRESET, ... */
};

struct scn_client {
	struct h_proc *proc;
	char out[PATH_MAX];	/* what it received */
	struct scn_result r;
};

struct scn {
	char what[200];			/* "redis-server 7.0.15, ..." */
	bool preload;
	struct h_proc *server;		/* the program (a group leader) */
	struct h_proc *backend;		/* another group to report, or NULL */
	char log[PATH_MAX];		/* the program's log, "" = its stderr */
	struct scn_client client[SCN_MAX_CLIENTS];
	int nclients;
	struct h_gate gate;		/* the clients started with a gate */
	long long spool_max;		/* most bytes seen in the spool dir */
	int spool_files_max;
	bool peer_gone;			/* a client left with a backlog: the
					 * spool dir may keep an orphan */
};

/* Skips the test, naming the package, if program is not installed. */
void scn_require(const char *program, const char *package);

/* Starts a scenario: what names it in every message and report line. */
void scn_init(struct scn *s, bool preload, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* True if a socket listens on 127.0.0.1:port (read from /proc/net/tcp:
 * unlike a connect, it starts nothing in the program). */
bool scn_listening(unsigned short port);

/* Bytes in the send queues of the established connections whose local
 * port is port (the server's side), from /proc/net/tcp; -1 if none. */
long long scn_send_queue(unsigned short port);

/*
 * Waits up to timeout_ms for port to listen. Returns false if the server
 * exited first (the caller may retry on another port if it lost a race);
 * fails the test on the deadline.
 */
bool scn_wait_listening(struct scn *s, unsigned short port, int timeout_ms);

/*
 * Starts a compat_client labelled label on port, its received bytes into
 * the test's dir as label.got, with args (NULL-ended list, may be NULL)
 * and, if gated, --gate-fd on the scenario's gate (h_gate_init'ed on the
 * first gated client). Returns its index.
 */
int scn_client(struct scn *s, const char *label, unsigned short port,
    bool gated, const char *const *args);

/* Waits up to timeout_ms for client i's "ready" line. */
void scn_wait_ready(struct scn *s, int i, int timeout_ms);

/* One look at the spool dir (the largest backlog so far). */
void scn_look(struct scn *s);

/*
 * Waits until client i exits, polling the spool dir; fails the test if
 * the server exits meanwhile (unless server_may_exit), or on the
 * deadline. Parses its result line.
 */
void scn_wait_client(struct scn *s, int i, int timeout_ms,
    bool server_may_exit);

/*
 * Client i received exactly the file want, then the server's FIN: else
 * the test fails with the diagnosis.
 */
void scn_expect_delivered(struct scn *s, int i, const char *want);

/* Client i (run with --body) got a "200 OK" response header (its
 * output's .head file): else the test fails, with the header. */
void scn_expect_ok_head(struct scn *s, int i);

/*
 * Client i (run without --body) received n HTTP/1.1 responses, each
 * "200 OK" whose body, sized by Content-Length or sent chunked, is the
 * file want[k], nothing after them, then the server's FIN: else the test
 * fails with the diagnosis. For pipelined requests on one connection.
 */
void scn_expect_responses(struct scn *s, int i, const char *const *want,
    int n);

/* Fails the test: why, then the whole diagnosis. Never returns. */
void scn_fail(struct scn *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/*
 * Stops the program: sig to its pid (the group leader; it stops what it
 * forked), waits up to timeout_ms, fails with backtraces if it does not
 * stop. Returns its exit code (128 + signal if killed).
 */
int scn_stop(struct scn *s, struct h_proc *p, int sig, int timeout_ms);

/*
 * Under the library: the spool dir ends empty (everything delivered and
 * deleted) within 10 s, unless peer_gone. Then the report line: what
 * happened, the largest backlog, "(the library spooled)" or "(nothing
 * spooled: only shows the library stays out of the way)".
 */
void scn_finish(struct scn *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The program's version, the first line of `prog args` (stdout or
 * stderr), trimmed to what follows the first word matching "v?[0-9]". */
const char *scn_version(const char *prog, const char *arg);

#endif
