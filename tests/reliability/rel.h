/*
 * rel.h — helpers the reliability tests share on top of the integration
 * harness (tests/preload/integration/harness.h): the expected stream of
 * server_a (pattern.h) located and compared at any offset, the spool dir
 * measured, the documented progress file read by its offsets (FORMAT.md
 * §6, independent of spool/), a listener that captures what `tcpspool
 * replay` sends, and /proc figures of a process.
 *
 * Like the harness, nothing here sleeps in place of a condition and nothing
 * writes to stdout.
 */
#ifndef TCPSPOOL_TEST_REL_H
#define TCPSPOOL_TEST_REL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "harness.h"

/* Message size server_a and slow_reader use unless told otherwise. */
#define REL_MSG 28

/*
 * The offset in server_a's unthreaded stream (messages of size REL_MSG)
 * at which buf[0..len) sits, found from the first whole message in it and
 * then checked byte for byte: >= 0, or -1 if buf is not a piece of the
 * stream (or holds no whole message).
 */
long long rel_locate(const uint8_t *buf, size_t len);
/* True if buf[0..len) equals the stream's bytes at offset off. */
bool rel_matches(const uint8_t *buf, size_t len, long long off);

/* Bytes of the regular files under dir (recursively), -1 if unreadable. */
long long rel_dir_bytes(const char *dir);
/*
 * Waits (a bounded retry on the condition: the only thing to wait on is
 * the dir) until the files under dir hold at least bytes; false on timeout.
 */
bool rel_wait_dir_bytes(const char *dir, long long bytes, int timeout_ms);

/* The names of the stream dirs (16 hex digits) in spool dir; count. */
int rel_streams(const char *spool, char names[][32], int max);

/*
 * A stream's persisted replay position, read from its progress file by
 * the documented offsets (two 40-byte slots, crc32c, highest generation).
 * false if there is no valid slot (the position is then (0, 0)).
 */
bool rel_progress(const char *stream_dir, uint64_t *next_seq,
    uint64_t *next_off);

/* A listener on 127.0.0.1 (port into *port); the fd. */
int rel_listen(unsigned short *port);
/*
 * Accepts one connection on lfd and reads it to EOF (or error) into a
 * malloc'ed buffer (*out, *len); the end ("EOF", or an errno name) into
 * end. Fails the test if nothing connects or EOF never comes in time.
 */
void rel_capture(int lfd, uint8_t **out, size_t *len, char *end,
    size_t endlen, int timeout_ms);

/* The CLI started (not waited for) with the arguments (NULL-ended). */
struct h_proc *rel_cli_start(const char *label, ...)
    __attribute__((sentinel));

/* Open fds of a process that are sockets, -1 if it is gone. */
int rel_socket_count(pid_t pid);
/* Open fds and resident set (KiB) of a process, -1 if it is gone. */
int rel_fd_count(pid_t pid);
long rel_rss_kib(pid_t pid);

/* The child pids of pid (from /proc/PID/task/PID/children). */
int rel_children(pid_t pid, pid_t *out, int max);

/* True when the tests run as root (mounts, chown, setuid). */
bool rel_root(void);

/* Reads a whole file (at most max bytes) into out, NUL-terminated. */
ssize_t rel_read_file(const char *path, char *out, size_t max);

#endif
