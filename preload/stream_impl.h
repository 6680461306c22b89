/*
 * stream_impl.h — what the files of a stream (stream.c, admit.c,
 * ingest.c, pump.c, linger.c) call of each other; nothing outside them
 * includes it. Every function here is called with the stream's mu held.
 */
#ifndef TCPSPOOL_STREAM_IMPL_H
#define TCPSPOOL_STREAM_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "stream.h"

/* stream.c */
void set_state(struct stream *s, enum stream_state st);
/* Closes the reader and the writer; the files go (how) or stay. */
void spool_release(struct stream *s, enum spool_close_how how,
    const char *reason);
/* A delivered spool leaves s under mu (into d), and is closed and
 * removed later without it: the unlinks and the rmdir of a removal never
 * hold up the application's next write. */
void spool_detach(struct stream *s, struct spool_detached *d);
void spool_detached_close(struct spool_detached *d);
void wake_waiters(struct stream *s);
/* To DONE: a delivered or discarded spool goes, the duplicate closes. */
void finish(struct stream *s);
/* The spool of s, made on first need; -1 (logged once) if it cannot be. */
int ensure_spool(struct stream *s);
/* Writes the stream's status file for `tcpspool ls`. */
void publish(struct stream *s, int64_t now);
/* What the application gets when nothing more of its call is queued. */
ssize_t result(size_t done, int err);

/* admit.c */
/* Spools what follows the first done bytes of w (DIRECT or SPOOLING);
 * returns what the application gets. */
ssize_t spool_rest(struct stream *s, struct wreq *w, size_t done);
/* Nothing of the rest was queued: EAGAIN (owing an edge when it is
 * ours) or the short count. */
ssize_t refused(struct stream *s, const struct wreq *w, size_t done,
    bool waited);

/* ingest.c */
void note_written(struct stream *s, bool app);
size_t append_iov(struct stream *s, const struct iovec *iov, int iovcnt,
    size_t skip, size_t len);
size_t append_input(struct stream *s, const struct wreq *w, size_t want,
    bool drop);
size_t input_available(const struct wreq *w, size_t done);

/* pump.c */
/* Under mu, after an application append: a parked stream's status is
 * written again, and it is parked again later. */
void note_appended(struct stream *s);

/* linger.c */
/* LINGER: reads and discards input until EOF or the linger deadline. */
void discard_input(struct stream *s, int64_t now);

#endif
