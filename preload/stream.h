/*
 * stream.h — one connection the library has spooled for, and its state
 * machine. The hook (ops.c) says which stream; the stream's files say
 * what happens, one job each: stream.c (life, the write entry point),
 * admit.c (quotas and policy), ingest.c (bytes into the spool), pump.c
 * (the replay thread's sending), linger.c (close, shutdown, process end);
 * stream_impl.h is what they call of each other. replay.c runs the thread.
 *
 * States (field state, changed only under mu):
 *
 *   DIRECT    nothing pending, no spool held (no files, fds or buffers).
 *             An application write is the real call on the application
 *             fd, made without mu (it may block); if it returns EAGAIN or
 *             a short count, mu is taken again and the rest is spooled
 *             (a new spool) and the state becomes SPOOLING.
 *   SPOOLING  bytes pending. Application writes append to the spool (never
 *             to the socket); the replay thread sends records through the
 *             private duplicate dup.
 *   LINGER    the application closed its last fd and everything was
 *             delivered: the spool was released (files removed) before
 *             the write side was shut down, so no peer sees EOF while a
 *             stream dir is left (kept only for tcpspool daemon, which
 *             lingers from it if the process dies); input is read and
 *             discarded until the peer closes or the linger time ends.
 *   FAILED    the peer went away during replay, or the spool could not be
 *             read: the spool is kept on disk as an orphan with the reason,
 *             and application writes fail with err.
 *   DONE      finished; nothing is held but memory, freed with the last
 *             reference.
 *
 * Transitions (who makes them):
 *   DIRECT   -> SPOOLING  app write got EAGAIN/short, the rest admitted (app)
 *   SPOOLING -> DIRECT    spool empty, an app fd still open (replay);
 *                         a deferred shutdown(SHUT_WR) is done first, the
 *                         spool is released, an owed EPOLLOUT edge given
 *   SPOOLING -> LINGER    spool empty, no app fd left (replay); the
 *                         spool goes first, then SHUT_WR
 *   SPOOLING -> FAILED    send error other than EAGAIN, or spool read error
 *                         (replay)
 *   SPOOLING -> DONE      last app fd closed with SO_LINGER {1, 0}: the
 *                         spool is discarded (app); process end with bytes
 *                         left after the linger time: orphan "exit" (exit)
 *   LINGER   -> DONE      peer EOF or error, or linger deadline (replay, exit)
 *   DIRECT   -> DONE      last app fd closed (app)
 *   FAILED   -> DONE      last app fd closed (app)
 *
 * Invariants:
 *   - The spool of a stream has pending bytes only in SPOOLING (and in
 *     FAILED, where it is an orphan no longer held open).
 *   - registered (the stream has a private duplicate in the replay epoll
 *     set) iff state is SPOOLING or LINGER.
 *   - No application write that began while state was not DIRECT reaches
 *     the socket directly; the switch to DIRECT happens under mu only
 *     after the last spooled byte was accepted by the kernel, so a direct
 *     write can never overtake a spooled one that returned before it
 *     began. A direct call in flight while another thread starts spooling
 *     is concurrent with that thread's write, as without the library.
 *   - mu is never held across a call that can block on the network:
 *     direct calls run without it, duplicates are closed outside every
 *     lock. The replay thread holds it only to take and return a turn:
 *     reading, inflating, sending and acknowledging run without it
 *     (pump.c, pump_turn; the spool allows a cursor beside its writer).
 *     It is held across the application's spool writes (forming a frame
 *     included); across fdatasync only under fsync=always (the writer's
 *     own frame): under interval a sync job is taken under mu and run by
 *     the sync thread holding no lock (pump.c, take_sync; syncer.c).
 *   - A parked stream (its socket took nothing for a second) holds no
 *     spool fd and no buffer: two fds, the application's and dup.
 *   - A hook entered from a signal handler that interrupted the library on
 *     the same thread (rt_nested) never takes mu: see SAFETY.md.
 *   - owe_edge: the application got an EAGAIN of ours since the last edge
 *     the replay thread gave; set without mu, cleared by the replay thread.
 *   - Lock order: stream mu, then the replay lock, then the table lock.
 */
#ifndef TCPSPOOL_STREAM_H
#define TCPSPOOL_STREAM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "spool.h"

enum stream_state {
	STREAM_DIRECT,
	STREAM_SPOOLING,
	STREAM_LINGER,
	STREAM_FAILED,
	STREAM_DONE,
};

/* A spool taken from its stream, to be closed without the stream's lock
 * (stream_impl.h, spool_detach). */
struct spool_detached {
	struct spool_cursor *cur;
	struct spool_stream *spool;
	char name[SPOOL_NAME_MAX];
};

struct stream {
	pthread_mutex_t mu;
	pthread_cond_t cv;	/* room in the spool; leaving SPOOLING */
	_Atomic int refs;
	int app_fds;		/* table slots pointing here (table lock) */

	/* Under mu. */
	enum stream_state state;
	int fd;			/* the application fd it was created for */
	int family;
	int dup;		/* private duplicate while registered, or -1 */
	int err;		/* FAILED: what application writes get */
	bool app_gone;		/* the last application fd was closed */
	/* shutdown(SHUT_WR) deferred until drained (set by a nested hook
	 * too, without mu). */
	_Atomic bool shut_wr_pending;
	bool overflow_logged;
	/* overflow=drop: the kernel took part of the last write and the
	 * application was given the short count; its rest is never dropped. */
	bool rest_owed;
	struct spool_stream *spool;
	uint64_t spool_gen;	/* spools made so far (a sync job's spool) */
	struct spool_cursor *cur;
	/* The replay thread works on cur and dup without mu (pump.c,
	 * pump_turn); an abortive close meanwhile leaves the spool to it. */
	bool pumping;
	bool abort_pending;
	/* A drained spool, closed by the replay thread once mu is released
	 * (pump.c, drained; stream_service). */
	struct spool_detached gone;
	/* The peer has read nothing for a while: the cursor and the writer
	 * gave back their fds and buffers, and the status
	 * says "stalled" without being rewritten (pump.c, park). */
	bool parked;
	struct spool_identity id;
	char name[SPOOL_NAME_MAX];
	uint64_t drops, errors;	/* of the current spool: its ledger line */
	int64_t persisted_ns;	/* last progress persist */
	/* fsync=interval: when the last call that may have written a frame
	 * returned (CLOCK_MONOTONIC ns); see take_sync in pump.c. */
	int64_t wrote_ns;
	bool sync_busy;		/* a sync job is queued or running */
	_Atomic int waiters;	/* threads waiting on cv */

	/* Under mu and the replay lock. */
	bool registered;
	bool ever_registered;
	/* The replay thread's alone: in its list of streams taking turns. */
	bool queued;
	/* Under the replay lock. */
	bool listed;
	bool orphaned;		/* process end: taken by orphan_left */
	/* Timers (CLOCK_MONOTONIC ns, 0 = none), read by the replay thread
	 * without mu. */
	_Atomic int64_t flush_due, publish_due, linger_due;
	/* The socket has been full since a turn: park then (pump.c). */
	_Atomic int64_t park_due;
	/* A frame may be unsynced: take a sync job then (pump.c, take_sync;
	 * written under mu too). */
	_Atomic int64_t sync_due;
	_Atomic bool ready;	/* more to send without waiting for EPOLLOUT */
	/* The application got an EAGAIN the kernel did not give: the replay
	 * thread owes it an EPOLLOUT edge (replay_poke). */
	_Atomic bool owe_edge;
	/* tcpspool daemon (handover.h): enum handover_state, changed under
	 * mu and by the hand-over thread (QUEUED -> HELD); ho_exit and
	 * ho_seg under mu. */
	_Atomic int ho;
	bool ho_exit;		/* process end left it to the daemon */
	uint64_t ho_seg;	/* the writer's segment of the last anchor */
	/* TCPSPOOL_RESUME: streams adopted from a former connection of the
	 * peer, sent before this one's spool (resume.h); resuming while
	 * they are not all sent (read without mu). */
	struct resume_prefix *pre;
	_Atomic bool resuming;
	/* A child of fork's list of its parent's streams (fdtab.c); the
	 * last one points to itself. */
	struct stream *forgotten_next;
};

/* What a socket is, as far as spooling goes (classify.c). */
struct sockinfo {
	int family;
	char local[SPOOL_ADDR_MAX];
	char peer[SPOOL_ADDR_MAX];
};

/* A new stream for application fd (one reference, state DIRECT). */
struct stream *stream_new(int fd, const struct sockinfo *si);
void stream_ref(struct stream *s);
void stream_unref(struct stream *s);

/* Where the bytes of an application write come from. */
enum wsrc {
	WSRC_IOV,	/* write, writev, send, sendto, sendmsg */
	WSRC_FILE,	/* sendfile: in_fd at *offp, or at its position */
	WSRC_PIPE,	/* splice: in_fd is a pipe */
};

/* One application write call, described once for every path. */
struct wreq {
	int fd;
	enum wsrc src;
	const struct iovec *iov;
	int iovcnt;
	size_t len;		/* bytes asked */
	int in_fd;
	off_t *offp;
	bool unspoolable;	/* MSG_OOB, MSG_ZEROCOPY, ancillary data */
	bool has_addr;		/* a destination address was given */
	/* The real call on fd, as the application made it. */
	ssize_t (*direct)(const struct wreq *w);
	const void *arg;
	int flags;
};

/* Returned by stream_write when fd no longer maps to s: look it up again. */
#define STREAM_RETRY (-2)

/*
 * An application write on fd, which maps to s. Returns what the
 * application gets (errno set on -1), or STREAM_RETRY.
 */
ssize_t stream_write(struct stream *s, struct wreq *w);

/*
 * The real call on a fd with no stream returned r (errno err): EAGAIN or a
 * short count on an eligible socket. Spools the rest in s (just created and
 * installed, or found installed), under its lock. Returns what the
 * application gets.
 */
ssize_t stream_after_direct(struct stream *s, struct wreq *w, ssize_t r,
    int err);

/* True if the part of w after done bytes is worth creating a stream for:
 * sendfile and splice end short at the end of their input. */
bool wreq_rest_available(const struct wreq *w, size_t done);

/*
 * The last application fd of s is gone. fd is that fd, still open (for
 * SO_LINGER), or -1 if it was closed behind our back.
 */
void stream_app_gone(struct stream *s, int fd);

/* shutdown(fd, how) on a fd of s; returns what the application gets. */
int stream_shutdown(struct stream *s, int fd, int how);
/* The same from a nested hook: takes no lock. */
int stream_shutdown_nested(struct stream *s, int fd, int how);

/* The state, read without mu (a nested hook). */
enum stream_state stream_state_peek(const struct stream *s);
/* The application gets EAGAIN that the kernel did not give: -1, errno
 * EAGAIN, and an EPOLLOUT edge owed (stream.c). Needs no lock. */
ssize_t invented_eagain(struct stream *s);
/* A duplicate of the library may keep the socket open: s was registered
 * once (its duplicate is closed by the replay thread some time after s
 * leaves the epoll set, so "registered now" would miss a window). */
bool stream_holds_file(struct stream *s);

/* For the replay thread: serve s (events from epoll, or a timer). */
void stream_service(struct stream *s);
/* The sync thread ran job j of s's spool generation gen: its result. */
void stream_sync_finished(struct stream *s, const struct spool_sync_job *j,
    uint64_t gen, int rc);
/* Streams parked (their buffers freed) since the replay thread last gave
 * memory back to the system (replay.c, give_back), and n of them done. */
unsigned stream_parks_since_trim(void);
void stream_parks_trimmed(unsigned n);

/* Process end: leaves what is still pending as an orphan "exit". */
void stream_orphan_at_exit(struct stream *s, int64_t deadline_ns);


const char *stream_state_name(enum stream_state st);


#endif
