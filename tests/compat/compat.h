/*
 * compat.h — what the real-program scenarios need beyond harness.h.
 *
 * The scenarios run programs we did not write (nginx, bash, dash, curl),
 * so they cannot report through a status pipe: the helpers here watch what
 * such programs leave behind (a port that answers, a log line, a file that
 * grows) with deadlines, compare what a client received with what was
 * served, and, when a scenario fails, gather what a reader of CI's log
 * needs to diagnose it without the machine: the tail of a log, the spool
 * dir, and a backtrace of every thread of every process of a group.
 *
 * Like harness.c, nothing here sleeps in place of a condition: the loops
 * retry a cheap check every few milliseconds, each bounded by a deadline
 * that the caller names. Nothing writes to stdout (the TAP report).
 */
#ifndef TCPSPOOL_TEST_COMPAT_H
#define TCPSPOOL_TEST_COMPAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "harness.h"

/* The bounded-retry period of every polling loop, in milliseconds. */
#define COMPAT_POLL_MS	20

long long compat_now_ms(void);
/* Sleeps for COMPAT_POLL_MS: the pause between two checks of a condition. */
void compat_poll_pause(void);

/* The absolute path of an installed program found in $PATH (or the sbin
 * directories, where nginx lives), or NULL. */
const char *compat_which(const char *name);

/* A loopback port free right now (a server may still lose it to a race). */
unsigned short compat_free_port(void);
/* True if something accepts TCP connections on 127.0.0.1:port. */
bool compat_accepts(unsigned short port);

/* Size of a file, -1 if it does not exist. */
long long compat_file_size(const char *path);
/* Lines in a file (0 if it does not exist). */
int compat_file_lines(const char *path);
/* Lines of a file that contain needle (0 if it does not exist). */
int compat_lines_with(const char *path, const char *needle);
/* The last n lines of a file, at most about 4 KiB, "(missing)" if none. */
const char *compat_tail(const char *path, int n);
/* Writes size bytes of a reproducible pseudo-random stream (seeded). */
void compat_write_stream_file(const char *path, long long size,
    uint64_t seed);

/*
 * Compares the file got with the file want. Returns true if they are equal;
 * otherwise false, with a sentence into why: the sizes and the offset of
 * the first byte that differs.
 */
bool compat_same_file(const char *got, const char *want, char *why,
    size_t len);

/* Bytes in the regular files under the test's spool dir. */
long long compat_spool_bytes(void);

/*
 * The processes of process group pgid (a harness-spawned program and what
 * it forked); at most max pids into out, returns how many.
 */
int compat_group_pids(pid_t pgid, pid_t *out, int max);

/*
 * For a failed scenario's message: for every process of group pgid, its
 * command line, wait channel and (if gdb is installed) the frames of each
 * of its threads. (Criterion with --tap drops what a test writes on
 * stderr, so a diagnosis must travel in the failure message.)
 */
const char *compat_group_report(pid_t pgid);

/*
 * Appends one line to meson-logs/compat-report.txt in the build dir: what
 * a scenario showed (did the library spool, how much), for the reader of
 * a run that passed. Criterion with --tap drops a test's stderr.
 */
void compat_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Makes the test's private dir usable by uid (the user nginx switches its
 * workers to when its master runs as root): the dir and the files in it
 * readable, the spool dir owned by uid with mode 0700, as a user gives a
 * service its own spool dir. Does nothing for uid == geteuid().
 */
void compat_share_dir_with(uid_t uid, gid_t gid);

/*
 * The user a server started by the test runs its workers (children) as:
 * "nobody" when the test is root (nginx's and apache's default), else the
 * test's own user. Fails the test if it is root and nobody is missing.
 * Returns true for nobody.
 */
bool compat_worker_user(const char *server, uid_t *uid, gid_t *gid);

/*
 * Writes a lighttpd configuration at path: the test dir's www/ served on
 * 127.0.0.1:port, its log and upload dirs in the test dir, every file
 * application/octet-stream; then extra (more lines, or "").
 */
void compat_lighttpd_config(const char *path, unsigned short port,
    const char *extra);

/*
 * The runtime part of $TCPSPOOL_TEST_PRELOAD (the sanitizer runtime that
 * must come first in LD_PRELOAD in sanitizer builds), "" in a normal build.
 */
const char *compat_preload_runtime(void);

/*
 * The story of harness.h, with a server the test started itself (a
 * wrapper that ends by exec'ing server_a): waits up to timeout_ms for
 * server's "port " status line, failing with a backtrace of its process
 * group if none comes, then starts n gated slow readers with reader_args.
 */
void compat_story_start(struct h_story *st, struct h_proc *server, int n,
    const char *const *reader_args, const char *desc, int timeout_ms);

#endif
