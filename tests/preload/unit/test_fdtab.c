/*
 * The fd table: empty slots are the fast path, a slot's stream holds a
 * reference and counts its fds, tags never carry one, and a number handed
 * out again forgets what it held. Lookups take no lock: a writer that
 * removes a stream waits out every read window open at that moment.
 */
#include <criterion/criterion.h>

#include <sys/socket.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "fdtab.h"
#include "stream.h"

static struct stream *
new_stream(int fd)
{
	struct sockinfo si = { .family = AF_UNIX };

	return stream_new(fd, &si);
}

Test(fdtab, empty_slot_reads_as_nothing)
{
	cr_assert_null(fdtab_peek(5));
	cr_assert_null(fdtab_peek(-1));
	cr_assert_null(fdtab_peek(FDTAB_MAX));
	cr_assert_null(fdtab_get(5));
}

Test(fdtab, installed_stream_is_found_with_a_reference)
{
	struct stream *s = new_stream(7), *old, *g;

	cr_assert(fdtab_install(7, NULL, s, &old));
	cr_assert_null(old);
	cr_assert_eq(fdtab_peek(7), s);
	cr_assert_eq(s->app_fds, 1);
	cr_assert_eq(atomic_load(&s->refs), 2);
	g = fdtab_get(7);
	cr_assert_eq(g, s);
	cr_assert_eq(atomic_load(&s->refs), 3);
	stream_unref(g);
	stream_unref(s);
	cr_assert_eq(atomic_load(&s->refs), 1, "the slot keeps it alive");
}

Test(fdtab, install_refuses_when_the_slot_changed)
{
	struct stream *a = new_stream(9), *b = new_stream(9), *old;

	cr_assert(fdtab_install(9, NULL, a, &old));
	cr_assert_not(fdtab_install(9, NULL, b, &old));
	cr_assert_eq(fdtab_peek(9), a);
	cr_assert_eq(b->app_fds, 0);
	stream_unref(b);
}

Test(fdtab, dup_numbers_share_one_stream_until_the_last_goes)
{
	struct stream *s = new_stream(10), *old, *t;
	int left;

	cr_assert(fdtab_install(10, NULL, s, &old));
	cr_assert(fdtab_install(11, NULL, s, &old));
	cr_assert_eq(s->app_fds, 2);
	t = fdtab_take(10, &left);
	cr_assert_eq(t, s);
	cr_assert_eq(left, 1);
	stream_unref(t);
	t = fdtab_take(11, &left);
	cr_assert_eq(left, 0);
	cr_assert_null(fdtab_peek(11));
	stream_unref(t);
	stream_unref(s);
}

Test(fdtab, tags_hold_no_stream)
{
	struct stream *old;
	int left;

	cr_assert(fdtab_install(12, NULL, FDTAB_IGNORED, &old));
	cr_assert_eq(fdtab_peek(12), FDTAB_IGNORED);
	cr_assert_null(fdtab_get(12), "a tag is not a stream");
	cr_assert_null(fdtab_take(12, &left));
	cr_assert_null(fdtab_peek(12));
	cr_assert(fdtab_install(13, NULL, FDTAB_PRIVATE, &old));
	fdtab_clear_tag(13);
	cr_assert_null(fdtab_peek(13));
}

Test(fdtab, a_reused_number_forgets_the_old_stream)
{
	struct stream *s = new_stream(14), *old, *f;
	int left;

	cr_assert(fdtab_install(14, NULL, s, &old));
	f = fdtab_forget(14, &left);
	cr_assert_eq(f, s);
	cr_assert_eq(left, 0);
	cr_assert_null(fdtab_peek(14));
	stream_unref(f);
	stream_unref(s);
	cr_assert(fdtab_install(15, NULL, FDTAB_IGNORED, &old));
	cr_assert_null(fdtab_forget(15, &left));
	cr_assert_null(fdtab_peek(15));
}

static void
count(void *arg, int fd, struct stream *p)
{
	(void)fd;
	(void)p;
	(*(int *)arg)++;
}

Test(fdtab, each_visits_only_filled_slots_in_range)
{
	struct stream *old;
	int n = 0;

	cr_assert(fdtab_install(3000, NULL, FDTAB_IGNORED, &old));
	cr_assert(fdtab_install(3001, NULL, FDTAB_PRIVATE, &old));
	cr_assert(fdtab_install(900000, NULL, FDTAB_IGNORED, &old));
	fdtab_each(2990, 3005, count, &n);
	cr_assert_eq(n, 2);
	n = 0;
	fdtab_each(0, -1, count, &n);
	cr_assert_eq(n, 3);
}

Test(fdtab, fds_beyond_the_table_are_never_tracked)
{
	struct stream *old;

	cr_assert_not(fdtab_install(FDTAB_MAX, NULL, FDTAB_IGNORED, &old));
	cr_assert_null(fdtab_peek(FDTAB_MAX));
}

/* ------------------------------------------------ lock-free lookups */

static _Atomic int window_state;	/* 1 open, 2 closed */
static _Atomic bool taken;

static void *
take_it(void *arg)
{
	struct stream *t;
	int left;

	while (atomic_load(&window_state) != 1)
		sched_yield();
	t = fdtab_take(*(int *)arg, &left);
	atomic_store(&taken, true);
	return t;
}

/*
 * A reader's window is open (it may have loaded the slot and not yet
 * taken its reference): the writer that empties the slot must not hand
 * the slot's reference back before the window closes.
 */
Test(fdtab, take_waits_for_a_read_window_open_on_another_thread)
{
	struct stream *s = new_stream(20), *old;
	struct reader *r;
	pthread_t th;
	uint64_t base = fdtab_grace_waits(), v;
	bool early;
	void *got;
	int fd = 20;

	cr_assert(fdtab_install(fd, NULL, s, &old));
	cr_assert_not_null(r = fdtab_reader());
	cr_assert_eq(pthread_create(&th, NULL, take_it, &fd), 0);
	v = fdtab_window_open(r);
	atomic_store(&window_state, 1);
	/* The taker either waits for the window (counted) or, wrongly,
	 * has returned already. */
	while (fdtab_grace_waits() == base && !atomic_load(&taken))
		sched_yield();
	early = atomic_load(&taken);
	fdtab_window_close(r, v);
	cr_assert_eq(pthread_join(th, &got), 0);
	cr_assert_not(early, "fdtab_take returned inside a read window");
	cr_assert_eq(fdtab_grace_waits(), base + 1);
	cr_assert_eq(got, s);
	cr_assert_null(fdtab_peek(fd));
	stream_unref(got);
	stream_unref(s);
}

/* A window is not waited for once closed, nor a writer's own. */
Test(fdtab, closed_windows_are_not_waited_for)
{
	struct stream *s = new_stream(21), *old, *t;
	struct reader *r;
	uint64_t base = fdtab_grace_waits();
	int left;

	cr_assert(fdtab_install(21, NULL, s, &old));
	cr_assert_not_null(r = fdtab_reader());
	fdtab_window_close(r, fdtab_window_open(r));
	t = fdtab_get(21);
	cr_assert_eq(t, s);
	stream_unref(t);
	t = fdtab_take(21, &left);
	cr_assert_eq(t, s);
	cr_assert_eq(fdtab_grace_waits(), base);
	stream_unref(t);
	stream_unref(s);
}

#define CHURN_ROUNDS	20000
#define CHURN_READERS	2
static _Atomic bool churn_done;

static void *
churn_reader(void *arg)
{
	struct stream *s;
	long found = 0;

	(void)arg;
	while (!atomic_load(&churn_done)) {
		if ((s = fdtab_get(22)) == NULL)
			continue;
		/* A live stream: the slot's reference or a reader's. */
		if (atomic_load(&s->refs) < 1 || s->fd != 22)
			abort();
		found++;
		stream_unref(s);
	}
	return (void *)found;
}

/*
 * Readers look fd 22 up while the main thread puts a new stream there and
 * takes it out again, each one freed as soon as the last reference goes:
 * a reader never touches a freed stream (the ASan build sees any use
 * after free), and every stream ends with its own reference only.
 */
Test(fdtab, lookups_racing_a_closer_never_touch_a_freed_stream)
{
	pthread_t th[CHURN_READERS];
	struct stream *s, *old, *t;
	void *found;
	long total = 0;
	int i, left;

	for (i = 0; i < CHURN_READERS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, churn_reader, NULL),
		    0);
	for (i = 0; i < CHURN_ROUNDS; i++) {
		s = new_stream(22);
		cr_assert(fdtab_install(22, NULL, s, &old));
		if (i % 64 == 0)
			sched_yield();	/* let the readers find it */
		t = fdtab_take(22, &left);
		cr_assert_eq(t, s);
		stream_unref(t);	/* the slot's */
		stream_unref(s);	/* ours: freed once readers let go */
	}
	atomic_store(&churn_done, true);
	for (i = 0; i < CHURN_READERS; i++) {
		cr_assert_eq(pthread_join(th[i], &found), 0);
		total += (long)found;
	}
	cr_assert_gt(total, 0, "the readers never found a stream");
}

static void *
hold_window(void *arg)
{
	struct reader *r = fdtab_reader();
	uint64_t v;

	(void)arg;
	if (r == NULL)
		abort();
	v = fdtab_window_open(r);
	atomic_store(&window_state, 1);
	while (atomic_load(&window_state) != 2)
		sched_yield();
	fdtab_window_close(r, v);
	return NULL;
}

/*
 * fork while another thread has a window open: that thread does not
 * exist in the child, and the child's writers must not wait for it.
 */
Test(fdtab, a_fork_child_does_not_wait_for_the_parents_other_threads)
{
	struct stream *s, *old, *t;
	pthread_t th;
	int status, left;
	pid_t pid;

	(void)fdtab_reader();	/* this thread's record, made before */
	cr_assert_eq(pthread_create(&th, NULL, hold_window, NULL), 0);
	while (atomic_load(&window_state) != 1)
		sched_yield();
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		fdtab_reset_after_fork(false);
		s = new_stream(23);
		if (!fdtab_install(23, NULL, s, &old))
			_exit(2);
		t = fdtab_take(23, &left);	/* would wait forever */
		_exit(t == s ? 0 : 3);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	atomic_store(&window_state, 2);
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "child status %#x", status);
}

/*
 * A fork child whose prepare handler held our locks closes the fds the
 * private slots name (the parent's spool files and locks: a copy of an
 * flock fd would hold the lock after the parent let go); the host's fds,
 * and an ignored file, stay open; without the locks held nothing is
 * closed (the slots may be changing under another thread).
 */
Test(fdtab, a_fork_child_closes_the_parents_private_fds)
{
	struct stream *old;
	int ours[2], host[2], status;
	pid_t pid;

	cr_assert_eq(pipe(ours), 0);
	cr_assert_eq(pipe(host), 0);
	cr_assert(fdtab_install(ours[0], NULL, FDTAB_PRIVATE, &old));
	cr_assert(fdtab_install(ours[1], NULL, FDTAB_PRIVATE, &old));
	cr_assert(fdtab_install(host[1], NULL, FDTAB_IGNORED, &old));
	for (int locked = 0; locked < 2; locked++) {
		pid = fork();
		cr_assert_neq(pid, -1);
		if (pid == 0) {
			bool ours_open, host_open;

			fdtab_reset_after_fork(locked);
			ours_open = fcntl(ours[0], F_GETFD) != -1 &&
			    fcntl(ours[1], F_GETFD) != -1;
			host_open = fcntl(host[0], F_GETFD) != -1 &&
			    fcntl(host[1], F_GETFD) != -1;
			_exit(host_open && ours_open == !locked ? 0 :
			    ours_open ? 2 : 3);
		}
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		    "child (locks held %d) exit %d: 2 kept ours, 3 closed "
		    "wrongly", locked, WEXITSTATUS(status));
	}
	/* The parent's own are untouched. */
	cr_assert_neq(fcntl(ours[0], F_GETFD), -1);
	cr_assert_eq(fdtab_peek(ours[0]), FDTAB_PRIVATE);
}
