/*
 * replay.h — the one background thread of a process that sends spooled
 * records when a peer's window reopens.
 *
 * It owns an epoll set of the private duplicates of every registered
 * stream (EPOLLOUT, edge-triggered; EPOLLIN while lingering) and an
 * eventfd to be woken. Its epoll timeout is the earliest timer of its
 * streams (flush interval, fsync interval, status publication, linger
 * deadline): it never polls and never sleeps. Started by the first
 * registration (never in a constructor), again in a forked child by its
 * first registration.
 *
 * Every registered stream is also listed: the list holds a reference, and
 * is swept only by the thread itself between two epoll_wait calls, so an
 * event never names a freed stream.
 */
#ifndef TCPSPOOL_REPLAY_H
#define TCPSPOOL_REPLAY_H

#include <stdbool.h>
#include <stdint.h>

struct stream;

/*
 * Called under s->mu when s starts spooling: makes the private duplicate of
 * fd (F_DUPFD_CLOEXEC, high range, marked private in the fd table) and adds
 * it to the epoll set. 0, or a negative errno (nothing changed).
 */
int replay_register(struct stream *s, int fd);
/* Called under s->mu: epoll out, s no longer counted; the duplicate is
 * closed soon by the thread, outside every lock. */
void replay_unregister(struct stream *s);
/* Switch s to waiting for input (lingering). Under s->mu. */
void replay_watch_input(struct stream *s);
/* Wake the thread (a timer of a stream moved earlier). */
void replay_wake(void);
/* Notes the flush deadline of s after an append; wakes if it is new. */
void replay_note_staged(struct stream *s, int64_t since_ns);
/* Would replay_note_staged(s, since_ns) change nothing, records being
 * staged (since_ns != 0)? Under s->mu, which every change of the
 * deadline holds. */
bool replay_staged_noted(struct stream *s, int64_t since_ns);
/* Room was made in the spool dir (delivery, a spool deleted): wake the
 * threads blocked for room (overflow=block) on s and on every other
 * stream, listed or not: the quota of the whole dir is shared. s may be
 * NULL (room made by no stream of ours: an orphan swept). */
void replay_room_changed(struct stream *s);
/* A thread starts (+1) or stops (-1) waiting for room on s; s stays
 * referenced by that thread meanwhile. false if it could not be noted
 * (out of memory): the thread then waits out its timeout. */
bool replay_blocked(struct stream *s, int delta);
/* Some stream was refused with an EAGAIN of ours (s->owe_edge): the next
 * room made anywhere pokes it. Lock-free. */
void replay_note_owed(void);
/* An EPOLLOUT edge for every writer waiting on the socket of fd (see
 * replay.c); changes nothing else. */
void replay_poke(int fd);

/*
 * Process end: the thread delivers until no stream is registered or
 * deadline_ns (CLOCK_MONOTONIC), or at once if now; then it orphans what is
 * left and stops. The caller waits for that on a futex, never on a lock,
 * and at most 1.5 s past the deadline: it may be a signal handler that
 * interrupted anything. Once called, no stream registers any more.
 */
void replay_drain(int64_t deadline_ns, bool now, bool immediate);
/* replay_drain was called (lock-free). */
bool replay_exiting(void);
/* It was called by _exit or _Exit, and not on this thread: a write to a
 * spooling stream waits for the end (see stream_write). */
bool replay_exit_parks(void);

/* fork: prepare locks, parent unlocks; the child makes the lock new and
 * forgets (consistent: prepare held the lock, see replay.c). */
void replay_fork_prepare(void);
void replay_fork_parent(void);
void replay_fork_child(bool consistent);

#endif
