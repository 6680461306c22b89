/*
 * unit.h — helpers for the unit tests of preload/: the library's logic is
 * called directly (ops.c, stream.c), without interposition, on socketpairs
 * and loopback sockets whose small buffers force EAGAIN. Waits are on
 * conditions (poll, the stream's condition variable), never on time.
 */
#ifndef TCPSPOOL_UNIT_H
#define TCPSPOOL_UNIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "stream.h"

/* Byte i of the test stream. */
static inline unsigned char
pattern(uint64_t i)
{
	return (unsigned char)(i * 131 + (i >> 8) * 7 + 1);
}

void pattern_fill(unsigned char *buf, size_t len, uint64_t from);

/*
 * Points TCPSPOOL_DIR at a fresh private dir (and sets the other
 * variables given as "NAME=value" pairs, NULL-terminated); call before the
 * first operation of a test; it also resolves the real symbols, as a hook
 * would. Returns the dir, which is removed with all it holds at exit.
 */
const char *unit_env(const char *first, ...);

/* socketpair(AF_UNIX, SOCK_STREAM): fds[0] non-blocking with a small send
 * buffer (the writer), fds[1] a small receive buffer (the reader). */
void unit_unix_pair(int fds[2]);
/* The same over loopback TCP. */
void unit_tcp_pair(int fds[2]);

/* Reads exactly n bytes from fd and checks them against the pattern from
 * offset from; returns false (with a message) on the first difference. */
bool read_pattern(int fd, uint64_t from, uint64_t n);
/* True if the next read on fd sees EOF (waits for it). */
bool read_eof(int fd);

/* The stream of fd (a reference) or NULL. */
struct stream *unit_stream(int fd);
/* Waits until s is in state st; false after 30 s (a failure, not a
 * timing assumption). */
bool wait_state(struct stream *s, enum stream_state st);
enum stream_state stream_state_of(struct stream *s);

/* Number of stream dirs in the spool dir. */
int spool_dir_entries(const char *dir);

#endif
