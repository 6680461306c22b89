/*
 * cli.h — what the subcommands of the tcpspool command share.
 *
 * Every subcommand is a cmd_NAME(argc, argv) with argv[0] == "NAME", and
 * returns an exit code:
 *   0  success
 *   1  error (a file, a stream or the system said no)
 *   2  integrity problems found (verify; dump and replay when they had to
 *      skip corrupt records)
 *   64 usage (EX_USAGE)
 * Messages go to stderr as "tcpspool: ...", once, at the place that knows
 * what failed; stdout carries only the command's output.
 */
#ifndef TCPSPOOL_CLI_H
#define TCPSPOOL_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "spool.h"

#define EXIT_OK		0
#define EXIT_ERR	1
#define EXIT_INTEGRITY	2
#define EXIT_USAGE	64

int cmd_run(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_stat(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_metrics(int argc, char **argv);
int cmd_top(int argc, char **argv);
int cmd_daemon(int argc, char **argv);

/* ------------------------------------------------------- cmd_replay.c */

/*
 * tcpspool daemon's delivery: the records of stream name to the
 * connection fd (closed here), from byte `from` (NULL: the cursor's
 * position), then shutdown, linger and removal as `tcpspool replay`.
 * Returns an exit code; *peer_gone says whether a failure was the peer
 * going away (reset, broken pipe, timed out), progress saved.
 */
int replay_connection(struct spool_dir *d, const char *name, int fd,
    bool is_unix, const struct spool_place *from, uint32_t linger_ms,
    bool *peer_gone);

/* ------------------------------------------------------- cmd_daemon.c */

/* A daemon answers on dir's socket: one already there, or one started
 * now (detached) and waited for. Returns an exit code, message printed. */
int daemon_ensure(const char *dir);

/* ------------------------------------------------------------ common.c */

/*
 * Prints a subcommand's usage: to stdout with exit 0 for --help, to stderr
 * with exit 64 otherwise. Returns the exit code.
 */
int usage_exit(const char *text, bool asked);

/* The spool dir the library uses by default: $TCPSPOOL_DIR, else
 * /var/tmp/tcpspool-<uid>. Fills buf; false (with a message) if unusable. */
bool spool_dir_default(char *buf, size_t len);

/*
 * Opens the spool dir given (NULL: the default) for inspection: unlike the
 * library it never creates it. *missing tells a dir that does not exist
 * (then *d is NULL and the call still succeeds when missing is non-NULL).
 * Returns 0 or an exit code, the message printed.
 */
int cli_dir_open(const char *given, struct spool_dir **d, bool *missing);

/*
 * True when the spool dir opened belongs to another user: root may read
 * it (a note says so once), never change it. Commands that write (replay,
 * rm, verify --repair) call cli_dir_writable first.
 */
bool cli_dir_foreign(void);
int cli_dir_writable(struct spool_dir *d);

/*
 * Resolves a stream named by the operator: a name, an unambiguous prefix,
 * or the path of a stream dir that must lie inside the spool dir (never a
 * symlink, never out of it). Returns 0 or an exit code, the message
 * printed.
 */
int cli_resolve(struct spool_dir *d, const char *given,
    char name[SPOOL_NAME_MAX]);

/* The stream entry must be a real dir in the spool dir, not a symlink:
 * returns 0 or an exit code, the message printed. */
int stream_entry_check(struct spool_dir *d, const char *name);

/*
 * Opens the spool dir and resolves one stream in it. Without --dir (dir_opt
 * NULL), a path DIR/<stream> names its own spool dir. Returns 0 or an exit
 * code, the message printed; on success the caller closes *d.
 */
int cli_open_stream(const char *dir_opt, const char *given,
    struct spool_dir **d, char name[SPOOL_NAME_MAX]);

/*
 * If given is a path to a stream dir (DIR/<16 hex digits>), splits it into
 * the spool dir and the name; false otherwise.
 */
bool split_stream_path(const char *given, char *dir, size_t dirlen,
    char name[SPOOL_NAME_MAX]);

/*
 * True if process pid exists, is not a zombie, and started no later than
 * created_ns (CLOCK_REALTIME; 0 = unknown): a recycled pid is not the
 * writer.
 */
bool proc_alive(int32_t pid, int64_t created_ns);

/* What the operator needs to know about one stream, gathered once. */
struct stream_view {
	char name[SPOOL_NAME_MAX];
	/* Its dir went between the listing and the read (a stream delivered
	 * and removed meanwhile): not an error for a listing. */
	bool gone;
	bool info_ok;
	struct spool_stream_info info;
	char info_err[SPOOL_ERR_MAX];
	bool status_ok;
	struct spool_status status;
	char status_err[SPOOL_ERR_MAX];	/* status there, unreadable */
	int32_t pid;		/* the writer: from the segments, else status */
	int32_t fd;
	bool alive;		/* the writer process still runs */
	bool released;		/* its writer let go of it (status
				 * released=1, FORMAT.md §7) */
	bool held;		/* alive and not released: the writer may
				 * still write it; the CLI keeps off */
	bool fresh;		/* its status was updated recently */
	char word[24];		/* "spooling", "draining", "orphan", "live",
				 * "unreadable" (made terminal-safe) */
	char why[160];		/* "exit", "process gone", "status 5m old" */
	char state[192];	/* both, for tables: "orphan (exit)" */
};

/* A status older than this (while the pid lives) is shown as stale. */
#define STATUS_FRESH_NS (5LL * 1000000000LL)

void stream_view_load(struct spool_dir *d, const char *name,
    struct stream_view *v);

/*
 * An exclusive advisory lock on a stream dir (flock), so two tcpspool
 * commands never replay, repair or remove one stream at once. Returns the
 * fd to close to unlock, or -1 with a message printed.
 */
int stream_lock(struct spool_dir *d, const char *name);

/*
 * The one judgement of a stream's files every command applies (FORMAT.md
 * §5 "What counts as damaged"): spool_scan's problems, but a torn tail
 * while the writer holds the stream, which is a note. Problems are
 * printed to f when f is not NULL (as verify prints them).
 */
struct stream_check {
	uint64_t segments, frames, records;	/* as scanned */
	uint64_t problems;	/* counted ones */
	uint64_t torn;		/* of which torn tails */
	bool failed;		/* the scan failed (message printed) */
	char first[512];	/* the first problem counted, as printed */
};
void stream_check(struct spool_dir *d, const char *name, bool held, FILE *f,
    struct stream_check *c);

/* A port of HOST:PORT: digits only, 1..65535. */
bool parse_port(const char *s, uint16_t *port);

/* "stored", "deflate" or "codec N". */
const char *codec_name(char buf[24], uint32_t codec);
const char *problem_name(enum spool_problem_kind k);

/*
 * Prints one problem of a scan to f, naming the file, the offset and the
 * records concerned. A torn tail of a stream whose writer is alive is
 * likely a frame being written: it is printed as a note and not counted.
 * Returns true if it counts as an integrity problem.
 */
bool print_problem(FILE *f, struct spool_dir *d, const char *name,
    const struct spool_problem *p, bool writer_holds);

/* ------------------------------------------------------------ format.c */

int64_t now_realtime_ns(void);
/* "1.5K", "12M", "512B" (humanize_number, powers of 1024). */
const char *fmt_size(char buf[16], uint64_t n);
/* "3s", "5m", "2h", "4d" for an age in ns; "-" when unknown (ts 0). */
const char *fmt_age(char buf[16], int64_t ts_ns, int64_t now_ns);
/* "2026-11-22T02:21:24.000000123Z" (UTC); "-" when ts is 0. */
const char *fmt_time(char buf[40], int64_t ts_ns);
/* "3.2x": raw over stored; "-" when stored is 0. */
const char *fmt_ratio(char buf[16], uint64_t raw, uint64_t stored);

/* A JSON string with quotes: valid UTF-8 passes, control characters are
 * escaped, and bytes that are not UTF-8 become U+FFFD. */
void json_str(FILE *f, const char *s, size_t len);
/* Standard base64 (RFC 4648, padded), as a JSON string. */
void json_base64(FILE *f, const uint8_t *p, size_t len);

/* Terminal-safe copy of a string read from disk, truncated to fit. */
const char *vis_str(char *buf, size_t len, const char *s);

/* Terminal-safe text of a byte string (strvisx, C-style escapes). The
 * caller frees the result; NULL when out of memory. */
char *vis_bytes(const uint8_t *p, size_t len);

/* ------------------------------------------------------------- parse.c */

/* Digits only, at most max. */
bool parse_u64(const char *s, uint64_t max, uint64_t *out);
/* An age: digits with ms, s, m, h or d (bare digits are ms), in ms. */
bool parse_age_ms(const char *s, uint64_t *out);

#endif
