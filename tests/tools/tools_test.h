/*
 * tools_test.h — what the CLI tests share: running the built tcpspool as a
 * real process, making spools with known records through the writer API,
 * and a listener that checks what a replay sends.
 *
 * Every test gets a private temporary dir (t_setup/t_teardown, the
 * Criterion .init/.fini) holding its spool dir. Nothing here writes to
 * stdout: it carries the TAP report.
 */
#ifndef TCPSPOOL_TOOLS_TEST_H
#define TCPSPOOL_TOOLS_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "spool.h"

/* ------------------------------------------------------------ processes */

struct t_out {
	int status;		/* exit code, or 128 + signal */
	char *out, *err;	/* NUL-terminated; out may hold NULs */
	size_t out_len, err_len;
};

/*
 * Runs argv (argv[0] a path; "CLI" means the tcpspool under test) with the
 * environment changed by env ("NAME=value" sets, "NAME" unsets; NULL-
 * terminated, may be NULL) and stdin from /dev/null; waits for it.
 */
void t_run(struct t_out *o, const char *const *argv, const char *const *env);
/* t_run of the CLI with the arguments up to NULL. */
void t_cli(struct t_out *o, ...) __attribute__((sentinel));
void t_out_free(struct t_out *o);

/* A process started and not waited for yet; its output goes to files. */
struct t_proc {
	pid_t pid;
	char out_path[300], err_path[300];
};
void t_spawn(struct t_proc *p, const char *const *argv,
    const char *const *env);
void t_wait(struct t_proc *p, struct t_out *o);
/*
 * t_wait with a deadline: false if the process had not ended by then (it
 * is then killed, so o still gets its output). A bound on a hang, not a
 * measure of speed: choose it far above the expected time.
 */
bool t_wait_deadline(struct t_proc *p, struct t_out *o, int ms);
/*
 * Waits until what p wrote to its stderr so far holds needle: false if it
 * did not within ms (a hang guard), or if p ended without writing it.
 * For a line a process writes after something the test can see (the
 * files it removed), before the test makes it exit.
 */
bool t_said(struct t_proc *p, const char *needle, int ms);

/* Runs python3 -c script on input (a file), returning its stdout. */
void t_python(struct t_out *o, const char *script, const char *input_path);

/* ---------------------------------------------------------------- files */

extern char t_dir[256];		/* the test's private dir */
extern char t_spool[300];	/* t_dir/spool, the spool dir */

void t_setup(void);
void t_teardown(void);
void t_write_file(const char *path, const void *p, size_t len);
/* Returns the path of a file in t_dir (static storage, one at a time). */
const char *t_path(const char *name);

/* --------------------------------------------------------------- spools */

/* The payload of record i of a "known" stream, deterministic. */
size_t t_record(uint64_t i, uint8_t *buf, size_t cap);
#define T_RECORD_MAX 8192
/* Timestamp of record i: a fixed instant plus i ms. */
#define T_TS0 1700000000123456789LL
#define T_TS(i) (T_TS0 + (int64_t)(i) * 1000000LL)

enum t_writer {
	T_ORPHAN,	/* a child process writes, closes (KEEP, "peer reset")
			 * and exits: sealed segments, a dead pid */
	T_CRASHED,	/* a child writes, flushes and _exits without closing:
			 * an .open segment, a dead pid, no status */
	T_LIVE_CLOSED,	/* this process writes and closes (KEEP): the pid is
			 * alive */
	T_LIVE_OPEN,	/* this process writes and keeps the writer open */
};

struct t_stream_spec {
	enum t_writer writer;
	uint64_t records;	/* t_record(0 .. records-1) unless recs */
	unsigned per_frame;	/* records per frame (flush after each n) */
	size_t (*rec)(uint64_t i, uint8_t *buf, size_t cap);
	const char *local, *peer;	/* default 127.0.0.1:8080 / :54321 */
	uint64_t segment_max;	/* 0: default */
	int64_t expires_ns;	/* the released status's expiry; 0: none */
	int64_t created_ns;	/* the identity's creation time; 0: now */
};

/* Makes a stream in t_spool; fills name. Returns the writer's pid. */
pid_t t_make_stream(const struct t_stream_spec *spec,
    char name[SPOOL_NAME_MAX]);
/* The bytes of records 0..n-1 of rec, concatenated; malloc'ed. */
uint8_t *t_stream_bytes(size_t (*rec)(uint64_t, uint8_t *, size_t),
    uint64_t n, size_t *len);
/* A pid that no process has (a reaped child's). */
pid_t t_dead_pid(void);
/* CLOCK_REALTIME in ns: the clock of the times a spool holds (created_ns,
 * updated_ns, expires_ns) and of the CLI's ages. */
int64_t t_realtime_ns(void);

/* Frame offsets and record ranges of a stream, from spool_scan. */
struct t_frame {
	char file[64];
	uint64_t offset, first_seq;
	uint32_t count, stored_len;
};
size_t t_frames(const char *name, struct t_frame *v, size_t cap);
/* The path of a t_frame's file (.seg, else .open); static storage. */
const char *t_segment_path(const char *name, const char *file);

/* ------------------------------------------------------------- listener */

struct t_listener;
struct t_listen_opts {
	bool unix_socket;	/* else TCP on 127.0.0.1 */
	size_t close_after;	/* close after reading this many (0: never) */
	size_t stall_after;	/* stop reading after this many until
				 * t_listener_release (0: never) */
	int rcvbuf;		/* SO_RCVBUF if > 0 */
	bool reset;		/* end with an RST (SO_LINGER 0) */
	bool end_on_release;	/* t_listener_release ends the connection
				 * (after stall_after) instead of reading on */
};
struct t_listener *t_listener_start(const struct t_listen_opts *o);
/* "127.0.0.1:PORT" or "unix:PATH", for --to. */
const char *t_listener_addr(const struct t_listener *l);
/* Waits until the listener has read at least n bytes (or closed). */
void t_listener_wait(struct t_listener *l, size_t n);
void t_listener_release(struct t_listener *l);
/*
 * Bytes the sender has not had acknowledged on the listener's TCP
 * connection (tx_queue of the peer's socket in /proc/net/tcp), -1 if not
 * found.
 */
long t_listener_peer_unacked(const struct t_listener *l);
/* Waits for the connection to end; returns what was read (owned by l). */
const uint8_t *t_listener_join(struct t_listener *l, size_t *len);
void t_listener_free(struct t_listener *l);

/* ---------------------------------------------- a server under the library */

void t_sleep_ms(long ms);
/*
 * "LD_PRELOAD=<sanitizer runtime>" when the build is sanitized (the
 * runtime must come first; `tcpspool run` appends the library), else
 * "LD_PRELOAD" (unset): an entry for t_spawn's env.
 */
void t_preload_env(char *buf, size_t len);
/* The port server_a wrote to path (a bounded wait for the file). */
int t_read_port(const char *path);
/* A client of 127.0.0.1:port that never reads, with a 4 KiB window. */
int t_connect_stalled(int port);
/*
 * Polls `tcpspool ls --json DIR` (a bounded retry on the condition) until
 * the Python expression cond, on o (one stream's JSON object), holds for
 * a stream; fills its name (and pid if not NULL).
 */
void t_wait_stream(const char *dir, const char *cond,
    char name[SPOOL_NAME_MAX], int *pid);

/* server_a under `tcpspool run --dir t_spool OPTS -- server_a --sndbuf 4096
 * --resume-fd R ARGS` (tag names its port file). */
struct t_server {
	struct t_proc proc;
	int resume;		/* write end: closing it lets server_a go on */
	int port;
};
void t_server_start(struct t_server *s, const char *tag,
    const char *const *opts, const char *const *args);
/* Lets it go on (closes resume) and waits for it (bounded: then killed). */
void t_server_end(struct t_server *s);

#endif
