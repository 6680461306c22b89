/*
 * helpers.h — what the spool tests share: a private temp dir per test,
 * a spool dir in it, and small wrappers that fail the test on error.
 */
#ifndef TCPSPOOL_TEST_SPOOL_HELPERS_H
#define TCPSPOOL_TEST_SPOOL_HELPERS_H

#include <criterion/criterion.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spool.h"

struct tdir {
	char root[4096];
	char spool[4200];
};

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static inline void
tdir_make(struct tdir *t)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(t->root, sizeof(t->root), "%s/spooltest.XXXXXX",
	    tmp && *tmp ? tmp : "/tmp");
	cr_assert_not_null(mkdtemp(t->root));
	snprintf(t->spool, sizeof(t->spool), "%s/spool", t->root);
}

static inline void
tdir_rm(struct tdir *t)
{
	if (t->root[0] != '\0')
		nftw(t->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline struct spool_dir *
open_dir(struct tdir *t, const struct spool_limits *lim)
{
	struct spool_dir *d = NULL;
	struct spool_err err = { "" };
	int rc = spool_dir_open(t->spool, lim, &d, &err);

	cr_assert_eq(rc, 0, "spool_dir_open: %d %s", rc, err.msg);
	return d;
}

static inline struct spool_stream *
new_stream(struct spool_dir *d, const struct spool_options *o)
{
	struct spool_identity id;
	struct spool_stream *s = NULL;
	struct spool_err err = { "" };
	int rc;

	memset(&id, 0, sizeof(id));
	id.pid = getpid();
	id.fd = 7;
	strcpy(id.local, "127.0.0.1:80");
	strcpy(id.peer, "127.0.0.1:40000");
	rc = spool_stream_create(d, &id, o, &s, &err);
	cr_assert_eq(rc, 0, "spool_stream_create: %d %s", rc, err.msg);
	cr_assert_neq(id.stream_id, 0);
	return s;
}

/*
 * Suite "spool" with a private temp dir per test: t, made before each
 * test and removed after it (what most spool test files start with).
 */
#define SPOOL_TEST_SUITE()						\
	static struct tdir t;						\
	static void setup(void) { tdir_make(&t); }			\
	static void teardown(void) { tdir_rm(&t); }			\
	TestSuite(spool, .init = setup, .fini = teardown)

static inline int64_t
append1(struct spool_stream *s, const void *p, size_t len, int64_t ts)
{
	struct iovec iov = { (void *)p, len };
	struct spool_err err = { "" };
	int64_t seq = spool_stream_append(s, &iov, 1, ts, &err);

	cr_assert_geq(seq, 0, "append: %lld %s", (long long)seq, err.msg);
	return seq;
}

/* Deterministic bytes of record seq (xorshift on seq). */
static inline void
fill(uint8_t *p, size_t len, uint64_t seq)
{
	uint64_t x = seq * 0x9E3779B97F4A7C15ull + 1;
	size_t i;

	for (i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)(x >> 24);
		if (seq % 3 == 0)	/* some compressible records */
			p[i] = (uint8_t)('a' + i % 7);
	}
}

static inline bool
check_fill(const uint8_t *p, size_t len, uint64_t seq)
{
	uint8_t *q = malloc(len ? len : 1);
	bool ok;

	fill(q, len, seq);
	ok = memcmp(p, q, len) == 0;
	free(q);
	return ok;
}

#endif
