/*
 * The spool dir: safe opening, stream names, prefixes, status files.
 */
#include <sys/stat.h>

#include <errno.h>

#include "helpers.h"

SPOOL_TEST_SUITE();

Test(spool, dir_open_creates_0700_with_parents)
{
	struct spool_dir *d;
	struct spool_err err = { "" };
	char p[8400];
	struct stat st;

	snprintf(p, sizeof(p), "%s/a/b/c", t.root);
	cr_assert_eq(spool_dir_open(p, NULL, &d, &err), 0, "%s", err.msg);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0700);
	cr_assert_geq(spool_dir_fd(d), 0);
	cr_assert_str_eq(spool_dir_path(d), p);
	spool_dir_close(d);
}

Test(spool, dir_open_refuses_symlink)
{
	struct spool_dir *d = NULL;
	struct spool_err err = { "" };
	char real[8400], link[8400];

	snprintf(real, sizeof(real), "%s/real", t.root);
	snprintf(link, sizeof(link), "%s/link", t.root);
	cr_assert_eq(mkdir(real, 0700), 0);
	cr_assert_eq(symlink(real, link), 0);
	cr_assert_eq(spool_dir_open(link, NULL, &d, &err), -EPERM);
	cr_assert_null(d);
	cr_assert(strstr(err.msg, "symlink") != NULL, "%s", err.msg);
}

Test(spool, dir_open_refuses_world_writable)
{
	struct spool_dir *d = NULL;
	struct spool_err err = { "" };
	char p[8400];

	snprintf(p, sizeof(p), "%s/wide", t.root);
	cr_assert_eq(mkdir(p, 0700), 0);
	cr_assert_eq(chmod(p, 0777), 0);
	cr_assert_eq(spool_dir_open(p, NULL, &d, &err), -EPERM);
	cr_assert(strstr(err.msg, "writable") != NULL, "%s", err.msg);
	cr_assert_eq(chmod(p, 0770), 0);
	cr_assert_eq(spool_dir_open(p, NULL, &d, &err), -EPERM);
}

static int
collect(void *arg, const char *name)
{
	int *n = arg;

	cr_assert_eq(strlen(name), 16);
	(*n)++;
	return 0;
}

Test(spool, stream_names_list_resolve_remove)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_stream *a = new_stream(d, NULL), *b = new_stream(d, NULL);
	struct spool_err err = { "" };
	char name[SPOOL_NAME_MAX], bogus[8400], prefix[17];
	int n = 0;
	size_t k;
	struct stat st;

	snprintf(bogus, sizeof(bogus), "%s/not-a-stream", t.spool);
	cr_assert_eq(mkdir(bogus, 0700), 0);
	cr_assert_eq(spool_dir_list(d, collect, &n), 0);
	cr_assert_eq(n, 2);
	snprintf(bogus, sizeof(bogus), "%s/%s", t.spool, spool_stream_name(a));
	cr_assert_eq(stat(bogus, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0700);
	/* The shortest prefix that tells a from b resolves to a. */
	for (k = 1; k <= 16; k++) {
		memcpy(prefix, spool_stream_name(a), k);
		prefix[k] = '\0';
		if (strncmp(prefix, spool_stream_name(b), k) != 0)
			break;
	}
	cr_assert_eq(spool_resolve(d, prefix, name, &err), 0, "%s", err.msg);
	cr_assert_str_eq(name, spool_stream_name(a));
	cr_assert_eq(spool_resolve(d, "", name, &err), -ENOENT);
	cr_assert_eq(spool_resolve(d, "zz", name, &err), -ENOENT);
	cr_assert_eq(spool_resolve(d, "../x", name, &err), -ENOENT);
	strcpy(name, spool_stream_name(b));
	cr_assert_eq(spool_stream_close(b, SPOOL_CLOSE_KEEP, "exit", &err), 0);
	cr_assert_eq(spool_stream_remove(d, name, &err), 0, "%s", err.msg);
	cr_assert_eq(spool_stream_remove(d, "../../etc", &err), -EINVAL);
	n = 0;
	spool_dir_list(d, collect, &n);
	cr_assert_eq(n, 1);
	spool_stream_close(a, SPOOL_CLOSE_REMOVE, NULL, &err);
	spool_dir_close(d);
}

Test(spool, status_publish_and_read)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_stream *s = new_stream(d, NULL);
	struct spool_status st, rd;
	struct spool_err err = { "" };
	char name[SPOOL_NAME_MAX];

	memset(&st, 0, sizeof(st));
	st.pid = 1234;
	st.fd = 9;
	strcpy(st.state, "spooling");
	strcpy(st.reason, "line\nbreak");
	st.pending_bytes = 1ull << 40;
	st.pending_records = 77;
	st.drops = 1;
	st.errors = 2;
	st.updated_ns = 123456789;
	cr_assert_eq(spool_status_publish(s, &st, &err), 0, "%s", err.msg);
	strcpy(name, spool_stream_name(s));
	cr_assert_eq(spool_status_read(d, name, &rd, &err), 0, "%s", err.msg);
	cr_assert_eq(rd.pid, 1234);
	cr_assert_eq(rd.fd, 9);
	cr_assert_str_eq(rd.state, "spooling");
	cr_assert_str_eq(rd.reason, "line break");
	cr_assert_eq(rd.pending_bytes, 1ull << 40);
	cr_assert_eq(rd.pending_records, 77);
	cr_assert_eq(rd.drops, 1);
	cr_assert_eq(rd.errors, 2);
	cr_assert_eq(rd.updated_ns, 123456789);
	cr_assert_eq(spool_stream_close(s, SPOOL_CLOSE_KEEP, "peer reset",
	    &err), 0);
	cr_assert_eq(spool_status_read(d, name, &rd, &err), 0);
	cr_assert_str_eq(rd.state, "orphan");
	cr_assert_str_eq(rd.reason, "peer reset");
	spool_dir_close(d);
}
