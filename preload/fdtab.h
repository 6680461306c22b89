/*
 * fdtab.h — the per-fd table: fd number -> what the library knows of it.
 *
 * A slot holds one of:
 *   NULL            nothing known: every hooked call passes straight through
 *                   (the fast path: one atomic load, no lock, no syscall);
 *   FDTAB_IGNORED   checked once, never spooled (pipe, file, datagram socket,
 *                   filtered port): also the fast path;
 *   FDTAB_PRIVATE   a private fd of the library (a replay duplicate): the
 *                   application may not close or replace it;
 *   FDTAB_EPOLL     an epoll fd of the application: when a stream keeps a
 *                   closed fd's file open, its registrations there are
 *                   removed (SAFETY.md, epoll); writes pass through;
 *   FDTAB_CHECKED   a connection that may spool, whose peer had nothing
 *                   waiting for it at its first write (TCPSPOOL_RESUME,
 *                   resume.h): as NULL, but not asked again;
 *   FDTAB_CLAIMING  a thread looks at the registry for this fd's first
 *                   write (resume.c): other writers of the fd wait, a
 *                   nested hook gets an EAGAIN of ours;
 *   a stream        this application fd writes to that stream (several fds,
 *                   after dup, may share one stream).
 *
 * Invariants:
 *   - A slot holding a stream holds one reference on it, and that stream's
 *     app_fds counts every slot pointing to it. Both change only under the
 *     table lock, in fdtab_install, fdtab_take and fdtab_reset_after_fork.
 *   - Readers that find a stream take their own reference in a read
 *     window (fdtab_get, no lock) that a writer removing that stream waits
 *     out before it returns the slot's reference, so a stream is never
 *     freed under a reader (fdtab.c says why). The table lock serialises
 *     the writers; a nested hook reads under it (fdtab_tryget).
 *   - fds at or above FDTAB_MAX are never tracked: they pass through.
 *   - A vfork child (runtime_own_process() false) changes no slot: the
 *     table is its parent's memory.
 * Chunks are allocated on first install and never freed.
 */
#ifndef TCPSPOOL_FDTAB_H
#define TCPSPOOL_FDTAB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct stream;

#define FDTAB_CHUNK_BITS 10
#define FDTAB_CHUNK	 (1 << FDTAB_CHUNK_BITS)
#define FDTAB_CHUNKS	 4096
#define FDTAB_MAX	 (FDTAB_CHUNK * FDTAB_CHUNKS) /* 4 Mi fds */

#define FDTAB_IGNORED ((struct stream *)(uintptr_t)1)
#define FDTAB_PRIVATE ((struct stream *)(uintptr_t)2)
#define FDTAB_EPOLL ((struct stream *)(uintptr_t)3)
#define FDTAB_CHECKED ((struct stream *)(uintptr_t)4)
#define FDTAB_CLAIMING ((struct stream *)(uintptr_t)5)
#define FDTAB_IS_STREAM(p) ((uintptr_t)(p) > 5)

/* Nothing that decides yet: a fd whose first EAGAIN makes a stream. */
static inline bool
fdtab_unknown(const struct stream *p)
{
	return p == NULL || p == FDTAB_CHECKED;
}

typedef _Atomic(struct stream *) fdtab_slot;
extern _Atomic(fdtab_slot *) fdtab_chunks[FDTAB_CHUNKS];

/* What the slot holds, without a reference: for the fast path only. */
static inline struct stream *
fdtab_peek(int fd)
{
	fdtab_slot *c;

	if ((unsigned)fd >= FDTAB_MAX)
		return NULL;
	c = atomic_load_explicit(&fdtab_chunks[fd >> FDTAB_CHUNK_BITS],
	    memory_order_acquire);
	if (c == NULL)
		return NULL;
	return atomic_load_explicit(&c[fd & (FDTAB_CHUNK - 1)],
	    memory_order_acquire);
}

/* The stream of fd with a new reference (stream_unref it), or NULL.
 * Takes no lock (but the table lock once per thread, on its first
 * call); never from a nested hook. */
struct stream *fdtab_get(int fd);
/* The same without waiting for the lock (NULL if it is held for writing):
 * for a nested hook (SAFETY.md, signals). */
struct stream *fdtab_tryget(int fd);

/*
 * Puts s (a stream, or a tag) in slot fd if it holds expect. A stream gets
 * a reference and app_fds + 1; a stream replaced loses them, and is
 * returned through *old with the slot's reference (NULL if none) so the
 * caller can finish it outside the table lock. False if the slot did not
 * hold expect, or fd cannot be tracked (or memory is short).
 */
bool fdtab_install(int fd, struct stream *expect, struct stream *s,
    struct stream **old);

/*
 * Empties slot fd; returns its stream with the slot's reference, or NULL.
 * *left is how many slots still point to that stream.
 */
struct stream *fdtab_take(int fd, int *left);

/* Empties slot fd if it holds a tag (cheap when it holds nothing). */
void fdtab_clear_tag(int fd);

/*
 * Called with a fd number the kernel just handed out: whatever the slot
 * held belongs to a fd closed behind our back. Returns the stream it held
 * (with the slot's reference, *left as in fdtab_take) or NULL.
 */
struct stream *fdtab_forget(int fd, int *left);

/* Visits every non-empty slot in [lo, hi], without the lock (a snapshot;
 * fn may use the table). */
void fdtab_each(int lo, int hi, void (*fn)(void *arg, int fd,
    struct stream *p), void *arg);

/*
 * In the child of fork (no lock is taken across fork): the table lock made
 * new; stream and private slots emptied, the parent's streams forgotten
 * (leaked on purpose: their locks may be held by threads that are gone);
 * ignored and epoll tags kept, they describe the child's files too. With
 * close_private (the fork's prepare handler held our locks), the fds the
 * private slots name are closed: the child's copies of the parent's spool
 * files, stream and sweep locks (an flock the child's copy holds outlives
 * the parent's unlock) and sockets; they are the parent's, and a child
 * that lives on would keep them, and the disk space of removed spools.
 */
void fdtab_reset_after_fork(bool close_private);

/*
 * For the tests: this thread's read-window record (NULL if none could be
 * made), a window opened and closed by hand as fdtab_get does, and how
 * many times a writer found a window open and waited for it.
 */
struct reader;
struct reader *fdtab_reader(void);
uint64_t fdtab_window_open(struct reader *r);
void fdtab_window_close(struct reader *r, uint64_t v);
uint64_t fdtab_grace_waits(void);

#endif
