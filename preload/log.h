/*
 * log.h — the library's only voice: one line per event, never on stdout.
 *
 * Lines look like "tcpspool[PID]: LEVEL: message" and go to stderr (fd 2,
 * with the real write, never through our own hooks), to syslog, or appended
 * to a file opened O_APPEND|O_CLOEXEC|O_NOFOLLOW. A write failure is
 * ignored. errno is preserved across every call. Safe from any thread.
 * LEVEL is error, warn, info or debug; control bytes in the message become
 * '?', a line longer than 2 KiB is cut and ends in "...". Never writes to
 * fd 0 or 1; writes fd 2 only while it is the stderr of the first line (or
 * any file or terminal), never to a socket the host has since put there.
 * Not async-signal-safe. In a setuid (AT_SECURE) process a file destination
 * is ignored and lines go to stderr.
 */
#ifndef TCPSPOOL_LOG_H
#define TCPSPOOL_LOG_H

#include "config.h"

/* Applies the destination and level (before config: stderr, warn). */
void log_configure(const struct tcpspool_config *c);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * For the library's pthread_atfork handlers: prepare takes the log's lock
 * (call it after taking every other lock, since code holding them may log),
 * parent and child release it (call them first).
 */
void log_fork_prepare(void);
void log_fork_parent(void);
void log_fork_child(void);

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
