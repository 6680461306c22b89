/*
 * The fd table: empty slots are the fast path, a slot's stream holds a
 * reference and counts its fds, tags never carry one, and a number handed
 * out again forgets what it held.
 */
#include <criterion/criterion.h>

#include <sys/socket.h>

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
