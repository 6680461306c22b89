/*
 * fdtab.c — the per-fd table (see fdtab.h for what a slot holds).
 *
 * Lookups take no lock. A reader (fdtab_get) opens a read window, loads
 * the slot, takes a reference on the stream it holds and closes the
 * window: a window is its thread's sequence number made odd, then even
 * again. A stream leaves a slot only under the table lock (held for
 * writing; it also serialises the writers), and the writer that removed
 * it waits, before it hands the slot's reference back to be dropped,
 * until every window that was open when the slot changed has closed
 * (wait_readers). So a reader's reference is taken while the slot's still
 * holds the stream: it is never freed under a reader. Why that holds:
 * the reader stores its odd number, then loads the slot; the writer
 * stores the slot, then loads every reader's number; all four are
 * sequentially consistent, so either the writer sees the window open (and
 * waits) or the reader loads the new slot. The reader finds out whether
 * the stream is still its fd's under the stream's own lock (stream_write
 * compares the slot again, as it always did).
 *
 * Who waits on whom: a writer holds the table lock and runs only from a
 * hook that did not interrupt the library on its thread (rt_nested false),
 * so it never waits for its own thread's window; a window takes no lock
 * and calls nothing that could wait, so it ends unless its thread is
 * stopped (a signal handler that blocks, which would have blocked the
 * read lock this replaces as well). A nested hook uses fdtab_tryget, the
 * read lock: it fails at once while a writer holds the table.
 *
 * Readers' records: one per thread, made on its first lookup under the
 * table lock, listed for the writers, never freed; a thread's exit gives
 * its record back for reuse (a key destructor). A thread that could get
 * no record (out of memory, or of thread keys) reads under the read lock
 * instead, for good.
 */
#include <sys/syscall.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "fdtab.h"
#include "runtime.h"
#include "stream.h"

_Atomic(fdtab_slot *) fdtab_chunks[FDTAB_CHUNKS];
static pthread_rwlock_t tab_lock = PTHREAD_RWLOCK_INITIALIZER;

/* One thread's read windows. */
struct reader {
	_Atomic uint64_t seq;		/* odd while a window is open */
	_Atomic bool used;		/* a live thread's */
	struct reader *next;		/* table lock */
};

/* Written under the table lock; released so that a fork child, whose
 * snapshot may cut another thread's registration short, finds a whole
 * list (a record not linked yet is only lost). */
static _Atomic(struct reader *) readers;
/* This thread could get no record: it reads under the read lock. */
static struct reader no_record;
static pthread_key_t reader_key;	/* its destructor gives a record back */
static bool reader_key_made;		/* table lock */
static _Atomic uint64_t grace_waits;	/* windows a writer waited out */
static __thread struct reader *me __attribute__((tls_model("initial-exec")));

static void
reader_gone(void *arg)
{
	struct reader *r = arg;
	uint64_t v = atomic_load(&r->seq);

	me = NULL;	/* a later lookup in a destructor registers again */
	/* A window left open (a handler that longjmp'ed out of one) is
	 * closed here: the record's next owner starts even, so a writer
	 * never skips a window of its. */
	if (v & 1)
		atomic_store(&r->seq, v + 1);
	atomic_store_explicit(&r->used, false, memory_order_release);
}

/* This thread's record: NULL if none could be had (read under the lock). */
static struct reader *
reader_self(void)
{
	struct reader *r;
	bool no = false;
	int saved;

	if (me != NULL)
		return me != &no_record ? me : NULL;
	saved = errno;
	pthread_rwlock_wrlock(&tab_lock);
	if (!reader_key_made)
		reader_key_made = pthread_key_create(&reader_key,
		    reader_gone) == 0;
	for (r = atomic_load(&readers); r != NULL; r = r->next) {
		no = false;
		if (atomic_compare_exchange_strong(&r->used, &no, true))
			break;
	}
	if (r == NULL && reader_key_made &&
	    (r = calloc(1, sizeof(*r))) != NULL) {
		atomic_store(&r->used, true);
		r->next = atomic_load(&readers);
		atomic_store_explicit(&readers, r, memory_order_release);
	}
	if (r != NULL && pthread_setspecific(reader_key, r) != 0) {
		atomic_store(&r->used, false);
		r = NULL;
	}
	pthread_rwlock_unlock(&tab_lock);
	errno = saved;
	me = r != NULL ? r : &no_record;
	return r;
}

uint64_t
fdtab_window_open(struct reader *r)
{
	uint64_t v = atomic_load_explicit(&r->seq, memory_order_relaxed);

	/* Odd whatever v was: a window a handler left open (siglongjmp)
	 * is not closed by this one. Sequentially consistent: before this
	 * thread's slot load. */
	v += 1 + (v & 1);
	atomic_store(&r->seq, v);
	return v;
}

void
fdtab_window_close(struct reader *r, uint64_t v)
{
	/* Release: the reference taken in the window is seen by a writer
	 * that sees the window closed. */
	atomic_store_explicit(&r->seq, v + 1, memory_order_release);
}

struct reader *
fdtab_reader(void)
{
	return reader_self();
}

uint64_t
fdtab_grace_waits(void)
{
	return atomic_load(&grace_waits);
}

/*
 * After a stream left a slot (sequentially consistent store), with the
 * table lock released (a signal handler on a thread inside a window may
 * need it, through the nested path's tryrdlock, to return at all): waits
 * until every window open now has closed. The list is walked without the
 * lock: records are never freed and are pushed with a release store.
 */
static void
wait_readers(void)
{
	struct reader *r;
	uint64_t v;
	bool counted = false;

	for (r = atomic_load(&readers); r != NULL; r = r->next) {
		if (r == me)
			continue;	/* a writer is never inside a window */
		v = atomic_load(&r->seq);
		if ((v & 1) == 0)
			continue;
		if (!counted)
			atomic_fetch_add(&grace_waits, 1);
		counted = true;
		while (atomic_load(&r->seq) == v)
			sched_yield();
	}
}

static fdtab_slot *
slot_of(int fd, bool create)
{
	_Atomic(fdtab_slot *) *cp;
	fdtab_slot *c;

	if ((unsigned)fd >= FDTAB_MAX)
		return NULL;
	cp = &fdtab_chunks[fd >> FDTAB_CHUNK_BITS];
	c = atomic_load_explicit(cp, memory_order_acquire);
	if (c == NULL && create) {
		int saved = errno;

		/* Under the write lock: no other creator. */
		c = calloc(FDTAB_CHUNK, sizeof(*c));
		errno = saved;
		if (c == NULL)
			return NULL;
		atomic_store_explicit(cp, c, memory_order_release);
	}
	if (c == NULL)
		return NULL;
	return &c[fd & (FDTAB_CHUNK - 1)];
}

/* The stream of slot fd with a reference, under the read lock. */
static struct stream *
get_locked(int fd)
{
	struct stream *s;
	fdtab_slot *sl;

	sl = slot_of(fd, false);
	s = sl ? atomic_load_explicit(sl, memory_order_acquire) : NULL;
	if (FDTAB_IS_STREAM(s))
		stream_ref(s);
	else
		s = NULL;
	return s;
}

struct stream *
fdtab_get(int fd)
{
	struct reader *r;
	struct stream *s;
	fdtab_slot *sl;
	uint64_t v;

	if (!FDTAB_IS_STREAM(fdtab_peek(fd)))
		return NULL;
	if ((r = reader_self()) == NULL) {
		pthread_rwlock_rdlock(&tab_lock);
		s = get_locked(fd);
		pthread_rwlock_unlock(&tab_lock);
		return s;
	}
	v = fdtab_window_open(r);
	/* The chunk is there (fdtab_peek saw it) and is never freed. */
	sl = &atomic_load_explicit(&fdtab_chunks[fd >> FDTAB_CHUNK_BITS],
	    memory_order_relaxed)[fd & (FDTAB_CHUNK - 1)];
	s = atomic_load(sl);
	if (FDTAB_IS_STREAM(s))
		stream_ref(s);
	else
		s = NULL;
	fdtab_window_close(r, v);
	return s;
}

struct stream *
fdtab_tryget(int fd)
{
	struct stream *s;

	if (!FDTAB_IS_STREAM(fdtab_peek(fd)) ||
	    pthread_rwlock_tryrdlock(&tab_lock) != 0)
		return NULL;
	s = get_locked(fd);
	pthread_rwlock_unlock(&tab_lock);
	return s;
}

bool
fdtab_install(int fd, struct stream *expect, struct stream *s,
    struct stream **old)
{
	struct stream *cur;
	fdtab_slot *sl;
	bool ok = false;

	*old = NULL;
	if (!runtime_own_process())
		return false;
	pthread_rwlock_wrlock(&tab_lock);
	sl = slot_of(fd, s != NULL);
	if (sl == NULL) {
		ok = s == NULL;
		goto out;
	}
	cur = atomic_load_explicit(sl, memory_order_relaxed);
	if (cur != expect)
		goto out;
	if (FDTAB_IS_STREAM(cur)) {
		cur->app_fds--;
		*old = cur;
	}
	if (FDTAB_IS_STREAM(s)) {
		stream_ref(s);
		s->app_fds++;
	}
	atomic_store(sl, s);	/* sequentially consistent: wait_readers */
	ok = true;
out:
	pthread_rwlock_unlock(&tab_lock);
	if (ok && *old != NULL)
		wait_readers();	/* before the caller drops old's reference */
	return ok;
}

struct stream *
fdtab_take(int fd, int *left)
{
	struct stream *cur = NULL;
	fdtab_slot *sl;

	*left = 0;
	if (fdtab_peek(fd) == NULL || !runtime_own_process())
		return NULL;
	pthread_rwlock_wrlock(&tab_lock);
	if ((sl = slot_of(fd, false)) != NULL) {
		cur = atomic_load_explicit(sl, memory_order_relaxed);
		atomic_store(sl, NULL);	/* sequentially consistent */
		if (FDTAB_IS_STREAM(cur))
			*left = --cur->app_fds;
		else
			cur = NULL;
	}
	pthread_rwlock_unlock(&tab_lock);
	if (cur != NULL)
		wait_readers();	/* before the caller drops cur's reference */
	return cur;
}

void
fdtab_clear_tag(int fd)
{
	struct stream *p = fdtab_peek(fd);
	struct stream *old;

	if (p != NULL && !FDTAB_IS_STREAM(p))
		(void)fdtab_install(fd, p, NULL, &old);
}

struct stream *
fdtab_forget(int fd, int *left)
{
	struct stream *p = fdtab_peek(fd);

	*left = 0;
	if (p == NULL)
		return NULL;
	if (!FDTAB_IS_STREAM(p)) {
		fdtab_clear_tag(fd);
		return NULL;
	}
	return fdtab_take(fd, left);
}

void
fdtab_each(int lo, int hi, void (*fn)(void *arg, int fd, struct stream *p),
    void *arg)
{
	int fd;

	if (lo < 0)
		lo = 0;
	if (hi >= FDTAB_MAX || hi < 0)
		hi = FDTAB_MAX - 1;
	for (fd = lo; fd <= hi;) {
		fdtab_slot *c = atomic_load_explicit(
		    &fdtab_chunks[fd >> FDTAB_CHUNK_BITS], memory_order_acquire);
		int end = (fd | (FDTAB_CHUNK - 1));

		if (end > hi)
			end = hi;
		if (c == NULL) {
			fd = end + 1;
			continue;
		}
		for (; fd <= end; fd++) {
			struct stream *p = atomic_load_explicit(
			    &c[fd & (FDTAB_CHUNK - 1)], memory_order_acquire);

			if (p != NULL)
				fn(arg, fd, p);
		}
	}
}

/*
 * The child of fork has one thread: whatever other threads held of the
 * lock is gone with them, and glibc's rwlock cannot be unlocked here by a
 * thread that did not take it (it tells a writer by its thread id). So the
 * lock is made new rather than taken across fork; slots are plain atomic
 * words and chunks are published by one atomic store, so the table is
 * consistent without it.
 */
/*
 * The parent's streams in a child of fork: never freed (their locks may be
 * held by threads that are gone, their spools are the parent's), but kept
 * reachable, one list through the streams themselves, so that a leak
 * checker counts them as the program's memory.
 */
static struct stream *forgotten;

static void
keep_forgotten(struct stream *s)
{
	if (s->forgotten_next != NULL)
		return;		/* listed already (several slots) */
	s->forgotten_next = forgotten != NULL ? forgotten : s;	/* s ends */
	forgotten = s;
}

void
fdtab_reset_after_fork(bool close_private)
{
	struct reader *r;
	int i, j;

	pthread_rwlock_init(&tab_lock, NULL);
	/* The parent's other threads are gone, with any window they had
	 * open: their records are free. This thread has none open (a fork
	 * from a handler inside a window returns into it, and ends it). */
	for (r = atomic_load(&readers); r != NULL; r = r->next) {
		if (r == me)
			continue;
		atomic_store_explicit(&r->seq, 0, memory_order_relaxed);
		atomic_store_explicit(&r->used, false, memory_order_relaxed);
	}
	for (i = 0; i < FDTAB_CHUNKS; i++) {
		fdtab_slot *c = atomic_load_explicit(&fdtab_chunks[i],
		    memory_order_relaxed);

		if (c == NULL)
			continue;
		for (j = 0; j < FDTAB_CHUNK; j++) {
			struct stream *p = atomic_load_explicit(&c[j],
			    memory_order_relaxed);

			if (FDTAB_IS_STREAM(p))
				keep_forgotten(p);
			/* The parent's fds of ours (spool files, locks,
			 * sockets): tagged only while open (made, then
			 * tagged; untagged, then closed), never the host's. */
			if (p == FDTAB_PRIVATE && close_private)
				(void)syscall(SYS_close,
				    i * FDTAB_CHUNK + j);
			/* Tags of the child's own files stay true; a claim
			 * in flight was another thread's. */
			if (FDTAB_IS_STREAM(p) || p == FDTAB_PRIVATE ||
			    p == FDTAB_CLAIMING)
				atomic_store_explicit(&c[j], NULL,
				    memory_order_relaxed);
		}
	}
}
