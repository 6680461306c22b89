/*
 * spool/ never calls the fd functions libtcpspool.so interposes.
 *
 * Inside the preloaded library, spool/'s calls to open, write, close, ...
 * would bind to the library's own hooks (preload/hooks.def). This test
 * makes the same situation: the test program defines those symbols
 * itself, so the spool code linked into it binds to them exactly as it
 * would to the hooks; each definition counts its calls made from this
 * thread while a spool operation runs, and passes on to libc. Every
 * operation of the store (dir, create, append, flush, rotation, seal,
 * status, cursor, progress, trim, inspection, repair, close, removal)
 * must count none: its own I/O goes through spool/sysio.c.
 */
/* Plain names: with these, glibc's headers would rename open to open64
 * or to a fortified inline, and the definitions below would clash. */
#undef _FILE_OFFSET_BITS
#undef _FORTIFY_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/uio.h>

#include "helpers.h"
#include "sysio.h"

/* The fd symbols of preload/hooks.def that make, close or write an fd,
 * with glibc's fortified and 64-bit names for them. */
#define HOOKED(X) X(open) X(open64) X(openat) X(openat64) X(creat) \
	X(creat64) X(__open_2) X(__open64_2) X(__openat_2) X(__openat64_2) \
	X(write) X(writev) X(close) X(close_range) X(closefrom) X(dup) \
	X(dup2) X(dup3) X(fcntl) X(fcntl64)

#define ENUM(n) H_##n,
enum { HOOKED(ENUM) H_N };
#define NAME(n) #n,
static const char *names[H_N] = { HOOKED(NAME) };
static void *real[H_N];
static __thread bool armed;
static __thread unsigned calls[H_N];

static void *
next_sym(int h)
{
	if (real[h] == NULL)
		real[h] = dlsym(RTLD_NEXT, names[h]);
	return real[h];
}

static void
count(int h)
{
	if (armed)
		calls[h]++;
}

/* open, openat and fcntl: the optional third (fourth) argument. */
static bool
wants_mode(int flags)
{
	return (flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE;
}

#define OPEN_LIKE(n)							\
int n(const char *path, int flags, ...);				\
int									\
n(const char *path, int flags, ...)					\
{									\
	va_list ap;							\
	mode_t mode = 0;						\
									\
	count(H_##n);							\
	if (wants_mode(flags)) {					\
		va_start(ap, flags);					\
		mode = va_arg(ap, mode_t);				\
		va_end(ap);						\
	}								\
	return ((int (*)(const char *, int, ...))next_sym(H_##n))(path,	\
	    flags, mode);						\
}
OPEN_LIKE(open)
OPEN_LIKE(open64)

#define OPENAT_LIKE(n)							\
int n(int dfd, const char *path, int flags, ...);			\
int									\
n(int dfd, const char *path, int flags, ...)				\
{									\
	va_list ap;							\
	mode_t mode = 0;						\
									\
	count(H_##n);							\
	if (wants_mode(flags)) {					\
		va_start(ap, flags);					\
		mode = va_arg(ap, mode_t);				\
		va_end(ap);						\
	}								\
	return ((int (*)(int, const char *, int, ...))next_sym(H_##n))(	\
	    dfd, path, flags, mode);					\
}
OPENAT_LIKE(openat)
OPENAT_LIKE(openat64)

#define FCNTL_LIKE(n)							\
int n(int fd, int cmd, ...);						\
int									\
n(int fd, int cmd, ...)							\
{									\
	va_list ap;							\
	void *arg;							\
									\
	count(H_##n);							\
	va_start(ap, cmd);						\
	arg = va_arg(ap, void *);					\
	va_end(ap);							\
	return ((int (*)(int, int, ...))next_sym(H_##n))(fd, cmd, arg);	\
}
FCNTL_LIKE(fcntl)
FCNTL_LIKE(fcntl64)

/* The fixed-argument ones. */
#define FIXED(ret, n, params, args)					\
ret n params;								\
ret									\
n params								\
{									\
	count(H_##n);							\
	return ((ret (*)params)next_sym(H_##n))args;			\
}
FIXED(int, creat, (const char *p, mode_t m), (p, m))
FIXED(int, creat64, (const char *p, mode_t m), (p, m))
FIXED(int, __open_2, (const char *p, int f), (p, f))
FIXED(int, __open64_2, (const char *p, int f), (p, f))
FIXED(int, __openat_2, (int d, const char *p, int f), (d, p, f))
FIXED(int, __openat64_2, (int d, const char *p, int f), (d, p, f))
FIXED(ssize_t, write, (int fd, const void *b, size_t n), (fd, b, n))
FIXED(ssize_t, writev, (int fd, const struct iovec *v, int n), (fd, v, n))
FIXED(int, close, (int fd), (fd))
FIXED(int, close_range, (unsigned int a, unsigned int b, int f), (a, b, f))
FIXED(int, dup, (int fd), (fd))
FIXED(int, dup2, (int a, int b), (a, b))
FIXED(int, dup3, (int a, int b, int f), (a, b, f))

void closefrom(int lowfd);
void
closefrom(int lowfd)
{
	count(H_closefrom);
	((void (*)(int))next_sym(H_closefrom))(lowfd);
}

static struct tdir t;

static void
setup(void)
{
	int h;

	tdir_make(&t);
	for (h = 0; h < H_N; h++)
		(void)next_sym(h);	/* no dlsym while armed */
}

static void
teardown(void)
{
	tdir_rm(&t);
}

TestSuite(spool, .init = setup, .fini = teardown);

static void
arm(void)
{
	memset(calls, 0, sizeof(calls));
	armed = true;
}

/* Disarms, then fails naming every hooked symbol that was called. */
static void
expect_none(const char *what)
{
	char list[512] = "";
	int h;

	armed = false;
	for (h = 0; h < H_N; h++)
		if (calls[h] > 0)
			snprintf(list + strlen(list), sizeof(list) -
			    strlen(list), " %s x%u", names[h], calls[h]);
	cr_expect_str_empty(list, "%s called a hooked symbol:%s", what, list);
}

static int
count_stream(void *arg, const char *name)
{
	(void)name;
	(*(int *)arg)++;
	return 0;
}

Test(spool, store_operations_enter_no_fd_hook)
{
	struct spool_options o;
	struct spool_identity id;
	struct spool_dir *d = NULL;
	struct spool_stream *s = NULL;
	struct spool_cursor *c = NULL;
	struct spool_record r;
	struct spool_status st;
	struct spool_stream_info si;
	struct spool_err err = { "" };
	struct iovec iov;
	static uint8_t buf[3000];
	char name[SPOOL_NAME_MAX], found[SPOOL_NAME_MAX];
	int64_t seq = 0;
	int rc, i, n = 0;

	spool_options_default(&o);
	o.segment_max = 64 << 10;	/* rotations: seal and create */
	o.frame_target = 8 << 10;
	o.fsync = SPOOL_FSYNC_ALWAYS;	/* the dir and progress syncs too */
	memset(&id, 0, sizeof(id));
	memset(&st, 0, sizeof(st));
	strcpy(st.state, "spooling");
	fill(buf, sizeof(buf), 1);
	iov = (struct iovec){ buf, sizeof(buf) };

	arm();
	rc = spool_dir_open(t.spool, NULL, &d, &err);
	if (rc == 0)
		rc = spool_stream_create(d, &id, &o, &s, &err);
	for (i = 0; rc == 0 && i < 100 && seq >= 0; i++)
		seq = spool_stream_append(s, &iov, 1, i, &err);
	if (rc == 0 && seq >= 0)
		rc = spool_stream_flush(s, &err);
	if (rc == 0)
		rc = spool_status_publish(s, &st, &err);
	if (rc == 0)
		rc = spool_stream_cursor(s, &c, &err);
	for (i = 0; rc == 0 && i < 100; i++) {
		if ((rc = spool_cursor_next(c, &r, &err)) == 1)
			rc = spool_cursor_ack(c, r.seq, r.len, true, &err);
	}
	if (rc == 0)
		rc = spool_stream_trim(s, &err);
	expect_none("writing, rotating, reading, trimming");
	cr_assert_eq(rc, 0, "%d %s", rc, err.msg);
	cr_assert_eq(seq, 99);
	strcpy(name, spool_stream_name(s));

	arm();
	spool_cursor_close(c);
	for (i = 0; rc == 0 && i < 20; i++)
		seq = spool_stream_append(s, &iov, 1, i, &err);
	rc = spool_stream_close(s, SPOOL_CLOSE_KEEP, "test", &err);
	expect_none("closing a stream, keeping its files");
	cr_assert_eq(rc, 0, "%d %s", rc, err.msg);

	arm();
	rc = spool_dir_list(d, count_stream, &n);
	if (rc == 0)
		rc = spool_resolve(d, name, found, &err);
	if (rc == 0)
		rc = spool_scan(d, name, NULL, NULL, &err);
	if (rc == 0)
		rc = spool_stream_info(d, name, &si, &err);
	if (rc == 0)
		rc = spool_status_read(d, name, &st, &err);
	if (rc == 0)
		rc = (int)spool_repair(d, name, &err);
	if (rc == 0)
		rc = spool_cursor_open(d, name, &c, &err);
	if (rc == 0 && (rc = spool_cursor_next(c, &r, &err)) == 1)
		rc = spool_cursor_ack(c, r.seq, r.len / 2, true, &err);
	spool_cursor_close(c);
	if (rc == 0)
		rc = spool_stream_remove(d, name, &err);
	spool_dir_close(d);
	expect_none("inspecting, repairing, reading, removing");
	cr_assert_eq(rc, 0, "%d %s", rc, err.msg);
	cr_assert_eq(n, 1);
}

static bool
not_200_201(int fd)
{
	return fd != 200 && fd != 201;
}

/*
 * A placed fd is the lowest free number at or above the floor that the
 * caller can take: one dup, not a walk of 64 numbers past it (every fd the
 * library made cost 64 dup and close pairs, and landed 63 above the
 * floor).
 */
Test(spool, placed_fds_take_the_lowest_usable_number_past_the_floor)
{
	struct sysio_placement p = { .floor = 100 };
	struct sysio_placement q = { .floor = 200, .usable = not_200_201 };
	int a, b;

	sysio_place(&p);
	a = sysio_dup(0);
	b = sysio_dup(0);
	cr_expect_eq(a, 100, "first placed fd: %d", a);
	cr_expect_eq(b, 101, "second placed fd: %d", b);
	sysio_place(&q);
	a = sysio_dup(0);
	cr_expect_eq(a, 202, "placed past two unusable numbers: %d", a);
	sysio_place(NULL);
}
