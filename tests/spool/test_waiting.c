/*
 * test_waiting.c — streams waiting for their peer (spool/waiting.c,
 * FORMAT.md §11): the peer key, the registry's tokens (claimed once,
 * oldest first, stale and hostile entries dropped), the sweep that
 * removes an expired waiting stream only with its token, and a cursor
 * that starts a resumed stream at a record boundary.
 */
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <time.h>

#include "helpers.h"

#define NS 1000000000LL

static struct tdir t;

static void setup(void) { tdir_make(&t); }
static void teardown(void) { tdir_rm(&t); }

TestSuite(waiting, .init = setup, .fini = teardown);

static int64_t
real_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec * NS + ts.tv_nsec;
}

Test(waiting, peer_keys)
{
	char k[SPOOL_KEY_MAX];

	cr_assert_eq(spool_peer_key("127.0.0.1:40000", k), 0);
	cr_assert_str_eq(k, "4-7f000001");
	cr_assert_eq(spool_peer_key("10.1.2.3:1", k), 0);
	cr_assert_str_eq(k, "4-0a010203");
	/* An IPv4-mapped address is its IPv4 one: a dual-stack server sees
	 * the same client under both forms. */
	cr_assert_eq(spool_peer_key("[::ffff:127.0.0.1]:5", k), 0);
	cr_assert_str_eq(k, "4-7f000001");
	cr_assert_eq(spool_peer_key("[::1]:80", k), 0);
	cr_assert_str_eq(k, "6-00000000000000000000000000000001");
	cr_assert_eq(spool_peer_key("[fe80::1]:80", k), 0);
	cr_assert_str_eq(k, "6-fe800000000000000000000000000001");
	cr_assert_eq(spool_peer_key("unix:/run/x.sock", k), -EAFNOSUPPORT);
	cr_assert_eq(spool_peer_key("unix:@abstract", k), -EAFNOSUPPORT);
	cr_assert_eq(spool_peer_key("", k), -EAFNOSUPPORT);
	cr_assert_eq(spool_peer_key("[::1", k), -EINVAL);
	cr_assert_eq(spool_peer_key("[nonsense]:1", k), -EINVAL);
	cr_assert_eq(spool_peer_key("300.1.1.1:80", k), -EINVAL);
	cr_assert_eq(spool_peer_key("../../etc:80", k), -EINVAL);
}

/* A stream released as waiting with records a..b, its created_ns set. */
static void
make_waiting(struct spool_dir *d, const char *key, int64_t created,
    int64_t expires, int records, char name[SPOOL_NAME_MAX])
{
	struct spool_identity id;
	struct spool_options o;
	struct spool_stream *s = NULL;
	struct spool_err e = { "" };
	char msg[32];
	int i;

	spool_options_default(&o);
	memset(&id, 0, sizeof(id));
	id.pid = getpid();
	id.fd = 5;
	id.created_ns = created;
	strcpy(id.local, "127.0.0.1:80");
	strcpy(id.peer, "127.0.0.1:40000");
	cr_assert_eq(spool_stream_create(d, &id, &o, &s, &e), 0, "%s", e.msg);
	for (i = 0; i < records; i++) {
		snprintf(msg, sizeof(msg), "record %d\n", i);
		append1(s, msg, strlen(msg), 0);
	}
	strlcpy(name, spool_stream_name(s), SPOOL_NAME_MAX);
	spool_stream_set_expiry(s, expires);
	spool_stream_set_release_state(s, "waiting");
	cr_assert_eq(spool_stream_close(s, SPOOL_CLOSE_KEEP, "peer reset",
	    &e), 0, "%s", e.msg);
	cr_assert_eq(spool_waiting_add(d, key, created, name, &e), 0, "%s",
	    e.msg);
}

Test(waiting, claimed_once_oldest_first)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_claimed v[4];
	struct spool_err e = { "" };
	char a[SPOOL_NAME_MAX], b[SPOOL_NAME_MAX], c[SPOOL_NAME_MAX];
	int64_t later = real_now() + 600 * NS;

	/* Made in another order than their creation times. */
	make_waiting(d, "4-7f000001", 3000, later, 3, c);
	make_waiting(d, "4-7f000001", 1000, later, 3, a);
	make_waiting(d, "4-7f000002", 2000, later, 3, b);
	cr_assert_eq(spool_waiting_claim(d, "4-7f000001", v, 4, NULL, &e), 2,
	    "%s", e.msg);
	cr_assert_str_eq(v[0].name, a);
	cr_assert_eq(v[0].created_ns, 1000);
	cr_assert_str_eq(v[1].name, c);
	cr_assert_str_eq(v[0].status.state, "waiting");
	cr_assert_str_eq(v[0].status.reason, "peer reset");
	cr_assert_eq(v[0].status.expires_ns, later);
	/* Held by the first claim (its locks): a second one takes none. */
	cr_assert_eq(spool_waiting_claim(d, "4-7f000001", v, 4, NULL, &e), 0);
	/* Another address's stream is not touched. */
	cr_assert_eq(spool_waiting_claim(d, "4-7f000002", v, 4, NULL, &e), 1);
	cr_assert_str_eq(v[0].name, b);
	/* An address nothing ever waited for: 0, no error. */
	cr_assert_eq(spool_waiting_claim(d, "6-00000000000000000000000000000001",
	    v, 4, NULL, &e), 0);
	spool_dir_close(d);
}

/* What a sender does with a stream it sent: out of the registry, gone. */
static void
delivered(struct spool_dir *d, struct spool_claimed *c)
{
	struct spool_err e = { "" };

	cr_assert_eq(spool_waiting_take(d, "4-7f000001", c->created_ns,
	    c->name), 0);
	cr_assert_eq(spool_stream_remove(d, c->name, &e), 0, "%s", e.msg);
	spool_claimed_unlock(c);
}

Test(waiting, claim_takes_the_oldest_max)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_claimed v[2];
	struct spool_err e = { "" };
	char n[5][SPOOL_NAME_MAX];
	int64_t later = real_now() + 600 * NS;
	int i;

	for (i = 4; i >= 0; i--)
		make_waiting(d, "4-7f000001", 100 + i, later, 1, n[i]);
	cr_assert_eq(spool_waiting_claim(d, "4-7f000001", v, 2, NULL, &e), 2);
	cr_assert_str_eq(v[0].name, n[0]);
	cr_assert_str_eq(v[1].name, n[1]);
	/* Held: another claim passes none of them, not even to newer. */
	{
		struct spool_claimed w[2];

		cr_assert_eq(spool_waiting_claim(d, "4-7f000001", w, 2,
		    NULL, &e), 0);
	}
	delivered(d, &v[0]);
	delivered(d, &v[1]);
	cr_assert_eq(spool_waiting_claim(d, "4-7f000001", v, 2, NULL, &e), 2);
	cr_assert_str_eq(v[0].name, n[2]);
	cr_assert_str_eq(v[1].name, n[3]);
	delivered(d, &v[0]);
	delivered(d, &v[1]);
	cr_assert_eq(spool_waiting_claim(d, "4-7f000001", v, 2, NULL, &e), 1);
	cr_assert_str_eq(v[0].name, n[4]);
	delivered(d, &v[0]);
	/* The address dir went with its last entry. */
	{
		char path[8192];

		snprintf(path, sizeof(path), "%s/waiting/4-7f000001", t.spool);
		cr_assert_eq(access(path, F_OK), -1);
	}
	spool_dir_close(d);
}

Test(waiting, stale_and_hostile_entries_are_never_claimed)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_claimed v[4];
	struct spool_err e = { "" };
	struct spool_status st;
	char a[SPOOL_NAME_MAX], gone[SPOOL_NAME_MAX], live[SPOOL_NAME_MAX];
	char path[8192];
	int64_t later = real_now() + 600 * NS;
	int fd;

	make_waiting(d, "4-7f000001", 10, later, 2, gone);
	make_waiting(d, "4-7f000001", 20, later, 2, live);
	make_waiting(d, "4-7f000001", 30, later, 2, a);
	/* Removed by hand since: its token is stale. */
	cr_assert_eq(spool_stream_remove(d, gone, &e), 0, "%s", e.msg);
	/* Another says it is no longer waiting (an operator replayed it
	 * elsewhere): not claimed, its token dropped. */
	cr_assert_eq(spool_status_read(d, live, &st, &e), 0);
	strcpy(st.state, "orphan");
	cr_assert_eq(spool_status_release(d, live, &st, &e), 0);
	/* Names that are not tokens: ignored, left alone. */
	snprintf(path, sizeof(path), "%s/waiting/4-7f000001/junk", t.spool);
	cr_assert_geq(fd = open(path, O_CREAT | O_WRONLY, 0600), 0);
	close(fd);
	snprintf(path, sizeof(path),
	    "%s/waiting/4-7f000001/00000000000000000001-zzzzzzzzzzzzzzzz",
	    t.spool);
	cr_assert_geq(fd = open(path, O_CREAT | O_WRONLY, 0600), 0);
	close(fd);
	snprintf(path, sizeof(path),
	    "%s/waiting/4-7f000001/0000000000000000000x-%s", t.spool, a);
	cr_assert_geq(fd = open(path, O_CREAT | O_WRONLY, 0600), 0);
	close(fd);
	cr_assert_eq(spool_waiting_claim(d, "4-7f000001", v, 4, NULL, &e), 1);
	cr_assert_str_eq(v[0].name, a);
	snprintf(path, sizeof(path), "%s/waiting/4-7f000001/junk", t.spool);
	cr_assert_eq(access(path, F_OK), 0, "a foreign file was removed");
	cr_assert_eq(spool_waiting_claim(d, "4-7f000001", v, 4, NULL, &e), 0);
	/* A key that is a file, not a dir: an error, no crash. */
	snprintf(path, sizeof(path), "%s/waiting/4-01020304", t.spool);
	cr_assert_geq(fd = open(path, O_CREAT | O_WRONLY, 0600), 0);
	close(fd);
	cr_assert_lt(spool_waiting_claim(d, "4-01020304", v, 4, NULL, &e), 0);
	cr_assert_neq(e.msg[0], '\0');
	spool_dir_close(d);
}

Test(waiting, sweep_removes_an_expired_waiting_stream_not_one_being_sent)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_claimed v[4];
	struct spool_err e = { "" };
	char a[SPOOL_NAME_MAX], b[SPOOL_NAME_MAX], path[8192];
	int64_t now = real_now(), exp = now + 10 * NS;

	make_waiting(d, "4-7f000001", 1, exp, 2, a);
	make_waiting(d, "4-7f000002", 2, exp, 2, b);
	/* b is claimed by a new connection of its peer before it expires,
	 * and is still being sent when it does. */
	cr_assert_eq(spool_waiting_claim(d, "4-7f000002", v, 4, NULL, &e), 1);
	cr_assert_eq(spool_dir_expire(d, exp - NS, 0, NULL, NULL), 0);
	cr_assert_eq(spool_dir_expire(d, exp + NS, 0, NULL, NULL), 1);
	snprintf(path, sizeof(path), "%s/%s", t.spool, a);
	cr_assert_eq(access(path, F_OK), -1, "expired waiting stream kept");
	snprintf(path, sizeof(path), "%s/waiting/4-7f000001/%020d-%s",
	    t.spool, 1, a);
	cr_assert_eq(access(path, F_OK), -1, "its entry was left");
	snprintf(path, sizeof(path), "%s/%s", t.spool, b);
	cr_assert_eq(access(path, F_OK), 0, "a stream being sent was removed");
	/* Its sender died (its lock went with it): expired, it goes. */
	spool_claimed_unlock(&v[0]);
	cr_assert_eq(spool_dir_expire(d, exp + NS, 0, NULL, NULL), 1);
	cr_assert_eq(access(path, F_OK), -1);
	spool_dir_close(d);
}

/* A client late by its TTL gets nothing: an expired stream is the
 * sweep's, and its token stays for it. */
Test(waiting, an_expired_stream_is_not_claimed)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_claimed v[4];
	struct spool_err e = { "" };
	char a[SPOOL_NAME_MAX], b[SPOOL_NAME_MAX];
	int64_t now = real_now();

	make_waiting(d, "4-7f000001", 1, now - NS, 2, a);
	make_waiting(d, "4-7f000001", 2, now + 600 * NS, 2, b);
	cr_assert_eq(spool_waiting_claim(d, "4-7f000001", v, 4, NULL, &e), 1);
	cr_assert_str_eq(v[0].name, b);
	cr_assert_eq(spool_dir_expire(d, now, 0, NULL, NULL), 1);
	spool_dir_close(d);
}

/* With fd_mu, what a fork handler holding it would find in v: the lock
 * fd of each stream claimed, and -1 in every other entry (one expired and
 * let go, one held by another, one behind it never tried); fd_mu free. */
Test(waiting, a_claim_names_in_v_only_the_locks_it_holds)
{
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_claimed v[4];
	struct spool_err e = { "" };
	char a[SPOOL_NAME_MAX], b[SPOOL_NAME_MAX], c[SPOOL_NAME_MAX];
	char x[SPOOL_NAME_MAX], path[8192];
	int64_t now = real_now();
	int cfd, i;

	make_waiting(d, "4-7f000001", 1, now - NS, 2, a);
	make_waiting(d, "4-7f000001", 2, now + 600 * NS, 2, b);
	make_waiting(d, "4-7f000001", 3, now + 600 * NS, 2, c);
	make_waiting(d, "4-7f000001", 4, now + 600 * NS, 2, x);
	snprintf(path, sizeof(path), "%s/%s", t.spool, c);
	cfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(cfd, 0);
	cr_assert_eq(flock(cfd, LOCK_EX), 0);
	for (i = 0; i < 4; i++)
		v[i].lock_fd = -1;
	cr_assert_eq(spool_waiting_claim(d, "4-7f000001", v, 4, &mu, &e), 1,
	    "%s", e.msg);
	cr_assert_str_eq(v[0].name, b);
	cr_assert_geq(v[0].lock_fd, 0);
	for (i = 1; i < 4; i++)
		cr_assert_eq(v[i].lock_fd, -1, "v[%d] (%s) names fd %d", i,
		    v[i].name, v[i].lock_fd);
	cr_assert_eq(pthread_mutex_trylock(&mu), 0);
	pthread_mutex_unlock(&mu);
	spool_claimed_unlock(&v[0]);
	close(cfd);
	spool_dir_close(d);
}

/* A sender that died while sending a resumed stream: the kernel dropped
 * its lock, and the next claim takes the stream over at once. */
Test(waiting, a_resumed_stream_whose_sender_died_is_taken_over)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_claimed v[4];
	struct spool_err e = { "" };
	struct spool_status st;
	char a[SPOOL_NAME_MAX];
	int64_t now = real_now(), exp = now + 600 * NS;

	make_waiting(d, "4-7f000001", 1, exp, 2, a);
	cr_assert_eq(spool_waiting_claim(d, "4-7f000001", v, 4, NULL, &e), 1);
	st = v[0].status;
	strcpy(st.state, "resumed");
	st.holder = getpid();
	cr_assert_eq(spool_status_release(d, a, &st, &e), 0);
	/* Being sent: nobody else takes it, the sweep leaves it. */
	{
		struct spool_claimed w[4];

		cr_assert_eq(spool_waiting_claim(d, "4-7f000001", w, 4,
		    NULL, &e), 0);
	}
	cr_assert_eq(spool_dir_expire(d, exp + NS, 0, NULL, NULL), 0);
	/* Its sender is gone. */
	spool_claimed_unlock(&v[0]);
	cr_assert_eq(spool_waiting_claim(d, "4-7f000001", v, 4, NULL, &e), 1);
	cr_assert_str_eq(v[0].name, a);
	cr_assert_str_eq(v[0].status.state, "resumed");
	spool_claimed_unlock(&v[0]);
	spool_dir_close(d);
}

Test(waiting, a_resumed_cursor_starts_at_the_record_boundary)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_cursor *c;
	struct spool_record r;
	struct spool_run run;
	struct spool_err e = { "" };
	char name[SPOOL_NAME_MAX];

	make_waiting(d, "4-7f000001", 1, real_now() + 600 * NS, 3, name);
	/* The old connection took record 0 and 4 bytes of record 1. */
	cr_assert_eq(spool_cursor_open(d, name, &c, &e), 0, "%s", e.msg);
	cr_assert_eq(spool_cursor_next(c, &r, &e), 1);
	cr_assert_eq(spool_cursor_next(c, &r, &e), 1);
	cr_assert_eq(spool_cursor_ack(c, 1, 4, true, &e), 0, "%s", e.msg);
	spool_cursor_close(c);
	/* Read plainly: from byte 4 of record 1. */
	cr_assert_eq(spool_cursor_open(d, name, &c, &e), 0);
	cr_assert_eq(spool_cursor_run(c, &run, &e), 1);
	cr_assert_eq(run.seq, 1);
	cr_assert_eq(run.off, 4);
	spool_cursor_close(c);
	/* Resumed: record 1 again whole, then 2, and so persisted. */
	cr_assert_eq(spool_cursor_open(d, name, &c, &e), 0);
	spool_cursor_whole_record(c);
	cr_assert_eq(spool_cursor_run(c, &run, &e), 1);
	cr_assert_eq(run.seq, 1);
	cr_assert_eq(run.off, 0);
	cr_assert_eq(run.len, strlen("record 1\n") + strlen("record 2\n"));
	cr_assert_eq(memcmp(run.data, "record 1\nrecord 2\n", run.len), 0);
	cr_assert_eq(spool_cursor_ack_run(c, 3, true, &e), 0, "%s", e.msg);
	spool_cursor_close(c);
	cr_assert_eq(spool_cursor_open(d, name, &c, &e), 0);
	cr_assert_eq(spool_cursor_run(c, &run, &e), 1);
	cr_assert_eq(run.seq, 1);
	cr_assert_eq(run.off, 3, "progress after a resumed ack: %zu", run.off);
	spool_cursor_close(c);
	spool_dir_close(d);
}
/* The entry comes before the status that says waiting: a claim that
 * finds a stream whose writer runs and has not written that status yet
 * leaves the entry for the next look; one whose writer died there drops
 * it. */
Test(waiting, an_entry_ahead_of_its_status)
{
	struct spool_dir *d = open_dir(&t, NULL);
	struct spool_claimed v[4];
	struct spool_err e = { "" };
	struct spool_status st;
	char a[SPOOL_NAME_MAX], b[SPOOL_NAME_MAX], path[8192];
	int64_t later = real_now() + 600 * NS;
	pid_t dead;
	FILE *f;

	make_waiting(d, "4-7f000001", 1, later, 2, a);
	make_waiting(d, "4-7f000001", 2, later, 2, b);
	cr_assert_eq(spool_status_read(d, a, &st, &e), 0);
	snprintf(path, sizeof(path), "%s/%s/status", t.spool, a);
	cr_assert_not_null(f = fopen(path, "w"));
	fprintf(f, "version=1\npid=%d\nstate=spooling\nreleased=0\n",
	    (int)getpid());
	fclose(f);
	/* Nor does the newer b pass it meanwhile. */
	cr_assert_eq(spool_waiting_claim(d, "4-7f000001", v, 4, NULL, &e), 0);
	cr_assert_eq(spool_status_release(d, a, &st, &e), 0);
	cr_assert_eq(spool_waiting_claim(d, "4-7f000001", v, 4, NULL, &e), 2);
	cr_assert_str_eq(v[0].name, a);
	spool_claimed_unlock(&v[0]);
	spool_claimed_unlock(&v[1]);
	{
		struct spool_err re = { "" };

		cr_assert_eq(spool_waiting_take(d, "4-7f000001", 2, b), 0);
		cr_assert_eq(spool_stream_remove(d, b, &re), 0);
	}
	/* A writer that died before its status: the entry is dropped. */
	if ((dead = fork()) == 0)
		_exit(0);
	cr_assert_eq(waitpid(dead, NULL, 0), dead);
	cr_assert_not_null(f = fopen(path, "w"));
	fprintf(f, "version=1\npid=%d\nstate=spooling\nreleased=0\n",
	    (int)dead);
	fclose(f);
	cr_assert_eq(spool_waiting_claim(d, "4-7f000001", v, 4, NULL, &e), 0);
	snprintf(path, sizeof(path), "%s/waiting/4-7f000001/%020d-%s",
	    t.spool, 1, a);
	cr_assert_eq(access(path, F_OK), -1, "a stale entry was kept");
	spool_dir_close(d);
}
