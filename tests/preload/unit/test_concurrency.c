/*
 * Threads through the library's logic, as a plain program (Criterion does
 * not start under TSan, and the TSan build runs suite 'concurrency'):
 *
 *   two_threads_one_fd            two writers share one spooling socket:
 *                                 every message arrives whole, each
 *                                 writer's messages in its own order
 *   many_threads_many_fds         8 writers on 8 sockets, each stream
 *                                 byte-exact at its reader
 *
 * Usage: test_preload_unit_concurrency SCENARIO; exit 0 when it holds.
 */
#include <sys/socket.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ops.h"
#include "unit.h"

#define MSG	  64
#define PER_THREAD 20000

#define CHECK(c, ...)                                                 \
	do {                                                          \
		if (!(c)) {                                           \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                 \
			fputc('\n', stderr);                          \
			exit(1);                                      \
		}                                                     \
	} while (0)

struct writer {
	int fd;
	int id;
};

static void *
two_writer(void *arg)
{
	struct writer *w = arg;
	unsigned char m[MSG];
	uint32_t seq;

	for (seq = 0; seq < PER_THREAD; seq++) {
		m[0] = (unsigned char)w->id;
		memcpy(m + 1, &seq, sizeof(seq));
		pattern_fill(m + 5, MSG - 5, seq * 31u + (uint32_t)w->id);
		/* Alternate the paths: one sendmsg, one write. */
		if (seq & 1) {
			struct iovec iov[2] = { { m, 5 }, { m + 5, MSG - 5 } };
			struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };

			CHECK(op_sendmsg(w->fd, &mh, 0) == MSG, "sendmsg: %s",
			    strerror(errno));
		} else
			CHECK(op_write(w->fd, m, MSG) == MSG, "write: %s",
			    strerror(errno));
	}
	return NULL;
}

static int
two_threads_one_fd(void)
{
	unsigned char m[MSG], expect[MSG - 5];
	struct writer w[2];
	pthread_t t[2];
	uint32_t next[2] = { 0, 0 }, seq;
	size_t have = 0;
	int fds[2], i;

	unit_env(NULL);
	unit_unix_pair(fds);
	for (i = 0; i < 2; i++) {
		w[i] = (struct writer){ fds[0], i };
		CHECK(pthread_create(&t[i], NULL, two_writer, &w[i]) == 0,
		    "pthread_create");
	}
	while (next[0] < PER_THREAD || next[1] < PER_THREAD) {
		ssize_t n = read(fds[1], m + have, MSG - have);

		if (n < 0 && errno == EINTR)
			continue;
		CHECK(n > 0, "read: %zd (%s) at %u/%u", n, strerror(errno),
		    next[0], next[1]);
		if ((have += (size_t)n) < MSG)
			continue;
		have = 0;
		CHECK(m[0] < 2, "message torn: writer id %u", m[0]);
		memcpy(&seq, m + 1, sizeof(seq));
		CHECK(seq == next[m[0]], "writer %u: got %u, expected %u",
		    m[0], seq, next[m[0]]);
		pattern_fill(expect, sizeof(expect), seq * 31u + m[0]);
		CHECK(memcmp(m + 5, expect, sizeof(expect)) == 0,
		    "writer %u message %u torn", m[0], seq);
		next[m[0]]++;
	}
	for (i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	op_close(fds[0]);
	close(fds[1]);
	return 0;
}

#define NPAIRS	   8
#define PER_STREAM (2u << 20)

struct pair {
	int fds[2];
	bool ok;
};

static void *
stream_writer(void *arg)
{
	struct pair *p = arg;
	unsigned char *b = malloc(PER_STREAM);
	uint64_t off = 0;
	unsigned sz = 1;

	pattern_fill(b, PER_STREAM, 0);
	while (off < PER_STREAM) {
		size_t n = sz < PER_STREAM - off ? sz : PER_STREAM - off;

		CHECK(op_send(p->fds[0], b + off, n, MSG_NOSIGNAL) ==
		    (ssize_t)n, "send: %s", strerror(errno));
		off += n;
		sz = sz * 3 % 70001 + 1;
	}
	free(b);
	CHECK(op_close(p->fds[0]) == 0, "close");
	return NULL;
}

static void *
stream_reader(void *arg)
{
	struct pair *p = arg;

	p->ok = read_pattern(p->fds[1], 0, PER_STREAM) && read_eof(p->fds[1]);
	return NULL;
}

static int
many_threads_many_fds(void)
{
	struct pair p[NPAIRS];
	pthread_t w[NPAIRS], r[NPAIRS];
	int i;

	unit_env(NULL);
	for (i = 0; i < NPAIRS; i++) {
		unit_unix_pair(p[i].fds);
		CHECK(pthread_create(&w[i], NULL, stream_writer, &p[i]) == 0 &&
		    pthread_create(&r[i], NULL, stream_reader, &p[i]) == 0,
		    "pthread_create");
	}
	for (i = 0; i < NPAIRS; i++) {
		pthread_join(w[i], NULL);
		pthread_join(r[i], NULL);
		CHECK(p[i].ok, "stream %d not byte-exact", i);
		close(p[i].fds[1]);
	}
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "two_threads_one_fd") == 0)
		return two_threads_one_fd();
	if (argc == 2 && strcmp(argv[1], "many_threads_many_fds") == 0)
		return many_threads_many_fds();
	fprintf(stderr, "usage: %s two_threads_one_fd|many_threads_many_fds\n",
	    argv[0]);
	return 2;
}
