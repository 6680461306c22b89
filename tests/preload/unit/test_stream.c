/*
 * The spool decision and the stream state machine, driven through ops.c
 * directly: EAGAIN and short writes on stream sockets are spooled and
 * reported whole, everything else is the kernel's answer; later writes go
 * behind the spool; the stream returns to DIRECT once the spool is empty;
 * close, shutdown, dup, a peer gone and the overflow policies.
 */
#include <criterion/criterion.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fdtab.h"
#include "ops.h"
#include "stream.h"
#include "unit.h"

#define BIG (1u << 20)

static unsigned char *
pattern_buf(size_t len, uint64_t from)
{
	unsigned char *b = malloc(len);

	cr_assert_not_null(b);
	pattern_fill(b, len, from);
	return b;
}

/* Writes with op_write until the stream is spooling; returns bytes. */
static uint64_t
fill_until_spooling(int fd)
{
	unsigned char *b = pattern_buf(BIG, 0);
	ssize_t r = op_write(fd, b, BIG);

	cr_assert_eq(r, (ssize_t)BIG, "a short write is reported whole");
	free(b);
	return BIG;
}

Test(decision, short_write_spools_the_rest_and_reports_it_whole)
{
	struct stream *s;
	int fds[2];

	unit_env(NULL);
	unit_unix_pair(fds);
	fill_until_spooling(fds[0]);
	cr_assert_not_null(s = unit_stream(fds[0]));
	cr_assert_eq(stream_state_of(s), STREAM_SPOOLING);
	cr_assert(read_pattern(fds[1], 0, BIG));
	cr_assert(wait_state(s, STREAM_DIRECT), "empty spool: back to DIRECT");
	stream_unref(s);
}

Test(decision, eagain_spools_the_whole_buffer)
{
	unsigned char *b = pattern_buf(BIG + 4096, 0);
	struct stream *s;
	ssize_t r;
	int fds[2];

	unit_env(NULL);
	unit_unix_pair(fds);
	/* Fill the kernel with the real call first, so ours gets EAGAIN. */
	uint64_t off = 0;
	while ((r = send(fds[0], b + off, 512, MSG_DONTWAIT)) > 0)
		off += (uint64_t)r;
	cr_assert(errno == EAGAIN);
	r = op_send(fds[0], b + off, 4096, 0);
	cr_assert_eq(r, 4096);
	cr_assert_not_null(s = unit_stream(fds[0]));
	cr_assert(read_pattern(fds[1], 0, off + 4096));
	cr_assert(wait_state(s, STREAM_DIRECT));
	stream_unref(s);
	free(b);
}

Test(decision, a_complete_write_creates_nothing)
{
	unsigned char b[100];
	int fds[2];

	unit_env(NULL);
	unit_unix_pair(fds);
	pattern_fill(b, sizeof(b), 0);
	cr_assert_eq(op_write(fds[0], b, sizeof(b)), (ssize_t)sizeof(b));
	cr_assert_null(fdtab_peek(fds[0]));
}

Test(decision, datagram_socket_gets_the_kernels_eagain)
{
	char b[2048] = { 0 };
	ssize_t r;
	int fds[2];

	unit_env(NULL);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_DGRAM, 0, fds), 0);
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	while ((r = op_send(fds[0], b, sizeof(b), 0)) > 0)
		;
	cr_assert_eq(r, -1);
	cr_assert_eq(errno, EAGAIN);
	cr_assert_eq(fdtab_peek(fds[0]), FDTAB_IGNORED, "asked once only");
	cr_assert_eq(op_send(fds[0], b, sizeof(b), 0), -1);
	cr_assert_eq(errno, EAGAIN);
}

Test(decision, pipe_gets_the_kernels_eagain)
{
	char b[4096] = { 0 };
	ssize_t r;
	int p[2];

	unit_env(NULL);
	cr_assert_eq(pipe2(p, O_NONBLOCK), 0);
	while ((r = op_write(p[1], b, sizeof(b))) > 0)
		;
	cr_assert_eq(r, -1);
	cr_assert_eq(errno, EAGAIN);
	cr_assert_eq(fdtab_peek(p[1]), FDTAB_IGNORED);
}

Test(decision, other_errors_pass_through_with_their_errno)
{
	char b[16] = { 0 };

	unit_env(NULL);
	errno = 0;
	cr_assert_eq(op_write(-1, b, sizeof(b)), -1);
	cr_assert_eq(errno, EBADF);
	cr_assert_eq(op_send(0x7fff, b, sizeof(b), 0), -1);
	cr_assert_eq(errno, EBADF);
}

Test(decision, success_after_spooling_keeps_the_callers_errno)
{
	unsigned char *b = pattern_buf(BIG, 0);
	int fds[2];

	unit_env(NULL);
	unit_unix_pair(fds);
	errno = 12345;
	cr_assert_eq(op_write(fds[0], b, BIG), (ssize_t)BIG);
	cr_assert_eq(errno, 12345, "the host never sees our errno");
	errno = 54321;
	cr_assert_eq(op_write(fds[0], b, 100), 100);
	cr_assert_eq(errno, 54321);
	cr_assert(read_pattern(fds[1], 0, BIG));
	free(b);
}

Test(decision, disabled_by_environment_passes_through)
{
	unsigned char *b = pattern_buf(BIG, 0);
	ssize_t r;
	int fds[2];

	unit_env("TCPSPOOL_DISABLE=1", NULL);
	unit_unix_pair(fds);
	r = op_write(fds[0], b, BIG);
	cr_assert(r > 0 && r < (ssize_t)BIG, "the kernel's short count");
	cr_assert_null(fdtab_peek(fds[0]));
	free(b);
}

Test(decision, invalid_environment_passes_through)
{
	unsigned char *b = pattern_buf(BIG, 0);
	ssize_t r;
	int fds[2];

	unit_env("TCPSPOOL_MAX_STREAM=12Q", NULL);
	unit_unix_pair(fds);
	r = op_write(fds[0], b, BIG);
	cr_assert(r > 0 && r < (ssize_t)BIG);
	free(b);
}

/* Every write path, while spooling, lands behind the spool in order. */
Test(ordering, every_write_path_goes_behind_the_spool)
{
	unsigned char *b = pattern_buf(BIG + 65536, 0);
	uint64_t off;
	struct iovec iov[3];
	struct msghdr mh = { 0 };
	struct mmsghdr mm[2];
	struct stream *s;
	int fds[2];

	unit_env(NULL);
	unit_unix_pair(fds);
	off = fill_until_spooling(fds[0]);
	cr_assert_eq(op_send(fds[0], b + off, 1000, MSG_DONTWAIT), 1000);
	off += 1000;
	cr_assert_eq(op_sendto(fds[0], b + off, 1000, 0, NULL, 0), 1000);
	off += 1000;
	iov[0] = (struct iovec){ b + off, 10 };
	iov[1] = (struct iovec){ b + off + 10, 0 };
	iov[2] = (struct iovec){ b + off + 10, 990 };
	cr_assert_eq(op_writev(fds[0], iov, 3), 1000);
	off += 1000;
	iov[0] = (struct iovec){ b + off, 700 };
	mh.msg_iov = iov;
	mh.msg_iovlen = 1;
	cr_assert_eq(op_sendmsg(fds[0], &mh, 0), 700);
	off += 700;
	memset(mm, 0, sizeof(mm));
	iov[1] = (struct iovec){ b + off, 300 };
	iov[2] = (struct iovec){ b + off + 300, 500 };
	mm[0].msg_hdr.msg_iov = &iov[1];
	mm[0].msg_hdr.msg_iovlen = 1;
	mm[1].msg_hdr.msg_iov = &iov[2];
	mm[1].msg_hdr.msg_iovlen = 1;
	cr_assert_eq(op_sendmmsg(fds[0], mm, 2, 0), 2);
	cr_assert_eq(mm[0].msg_len, 300);
	cr_assert_eq(mm[1].msg_len, 500);
	off += 800;
	cr_assert(read_pattern(fds[1], 0, off));
	cr_assert_not_null(s = unit_stream(fds[0]));
	cr_assert(wait_state(s, STREAM_DIRECT));
	/* And direct again afterwards. */
	cr_assert_eq(op_write(fds[0], b + off, 100), 100);
	cr_assert(read_pattern(fds[1], off, 100));
	stream_unref(s);
	free(b);
}

Test(ordering, sendmmsg_spools_the_rest_of_a_short_message)
{
	unsigned char *b = pattern_buf(3 * BIG, 0);
	struct mmsghdr mm[3];
	struct iovec iov[3];
	int fds[2], i;

	unit_env(NULL);
	unit_unix_pair(fds);
	memset(mm, 0, sizeof(mm));
	for (i = 0; i < 3; i++) {
		iov[i] = (struct iovec){ b + (size_t)i * BIG, BIG };
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	cr_assert_eq(op_sendmmsg(fds[0], mm, 3, 0), 3);
	for (i = 0; i < 3; i++)
		cr_assert_eq(mm[i].msg_len, BIG);
	cr_assert(read_pattern(fds[1], 0, 3 * (uint64_t)BIG));
	free(b);
}

static int
pattern_file(uint64_t len)
{
	char path[] = "/tmp/tcpspool-unit-file.XXXXXX";
	unsigned char *b = pattern_buf(len, 0);
	int fd = mkstemp(path);

	cr_assert(fd >= 0);
	unlink(path);
	cr_assert_eq(write(fd, b, len), (ssize_t)len);
	free(b);
	return fd;
}

Test(ordering, sendfile_with_offset_pointer_leaves_the_file_position)
{
	int fds[2], f = pattern_file(3 * BIG);
	uint64_t sent = 0;
	off_t off = 0;
	ssize_t r;

	unit_env(NULL);
	unit_unix_pair(fds);
	lseek(f, 17, SEEK_SET);
	while (sent < 3 * (uint64_t)BIG) {
		r = op_sendfile(fds[0], f, &off, 3 * BIG - sent);
		cr_assert(r > 0, "sendfile %zd (%s)", r, strerror(errno));
		sent += (uint64_t)r;
		cr_assert_eq((uint64_t)off, sent);
	}
	cr_assert_eq(lseek(f, 0, SEEK_CUR), 17);
	cr_assert_eq(op_sendfile(fds[0], f, &off, 100), 0, "at EOF");
	cr_assert(read_pattern(fds[1], 0, sent));
}

Test(ordering, sendfile_without_offset_advances_the_file_position)
{
	int fds[2], f = pattern_file(3 * BIG);
	uint64_t sent = 0;
	ssize_t r;

	unit_env(NULL);
	unit_unix_pair(fds);
	lseek(f, 0, SEEK_SET);
	while (sent < 3 * (uint64_t)BIG) {
		r = op_sendfile(fds[0], f, NULL, 3 * BIG);
		cr_assert(r > 0);
		sent += (uint64_t)r;
		cr_assert_eq((uint64_t)lseek(f, 0, SEEK_CUR), sent);
	}
	cr_assert_eq(sent, 3 * (uint64_t)BIG, "never past EOF");
	cr_assert(read_pattern(fds[1], 0, sent));
}

Test(ordering, splice_from_a_pipe_goes_behind_the_spool)
{
	unsigned char *b = pattern_buf(BIG + 60000, 0);
	int fds[2], p[2];
	uint64_t off;
	ssize_t r;

	unit_env(NULL);
	unit_unix_pair(fds);
	off = fill_until_spooling(fds[0]);
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(write(p[1], b + off, 60000), 60000);
	r = op_splice(p[0], NULL, fds[0], NULL, 60000, SPLICE_F_NONBLOCK);
	cr_assert_eq(r, 60000);
	off += 60000;
	cr_assert(read_pattern(fds[1], 0, off));
	free(b);
}

/*
 * The replay thread sends many records per sendmsg: with 28-byte records
 * (server A's) over several frames and a reader taking odd amounts, its
 * sends end inside records, on record boundaries and across frames; every
 * byte still arrives once, in order.
 */
Test(ordering, small_records_replayed_in_batches_through_short_reads)
{
	const size_t rec = 28, nrec = 60000;	/* about 13 frames */
	unsigned char *b = pattern_buf(rec * nrec, 0);
	unsigned char buf[4099];
	struct stream *s;
	uint64_t got = 0, total = rec * nrec;
	size_t i, k = 0;
	int fds[2];

	unit_env(NULL);
	unit_unix_pair(fds);
	for (i = 0; i < nrec; i++)
		cr_assert_eq(op_write(fds[0], b + i * rec, rec), (ssize_t)rec);
	cr_assert_not_null(s = unit_stream(fds[0]));
	while (got < total) {
		size_t want = 1 + (k++ * 977) % sizeof(buf);
		struct pollfd p = { .fd = fds[1], .events = POLLIN };
		ssize_t r;

		if (want > total - got)
			want = total - got;
		cr_assert_gt(poll(&p, 1, 30000), 0, "no byte for 30 s");
		r = read(fds[1], buf, want);
		cr_assert_gt(r, 0);
		for (ssize_t j = 0; j < r; j++)
			cr_assert_eq(buf[j], pattern(got + (uint64_t)j),
			    "byte %llu differs",
			    (unsigned long long)(got + (uint64_t)j));
		got += (uint64_t)r;
	}
	cr_assert(wait_state(s, STREAM_DIRECT));
	stream_unref(s);
	free(b);
}

Test(lifecycle, close_with_pending_spool_delivers_then_eof)
{
	struct stream *s;
	const char *dir;
	int fds[2];

	dir = unit_env(NULL);
	unit_unix_pair(fds);
	fill_until_spooling(fds[0]);
	cr_assert_not_null(s = unit_stream(fds[0]));
	cr_assert_eq(op_close(fds[0]), 0, "released at once");
	cr_assert_null(fdtab_peek(fds[0]));
	cr_assert_eq(fcntl(fds[0], F_GETFD), -1, "the number is free again");
	cr_assert(read_pattern(fds[1], 0, BIG));
	cr_assert(read_eof(fds[1]), "EOF after the last byte, no reset");
	close(fds[1]);
	cr_assert(wait_state(s, STREAM_DONE), "our end closes after the peer's");
	cr_assert_eq(spool_dir_entries(dir), 0, "delivered spool removed");
	stream_unref(s);
}

Test(lifecycle, reused_fd_number_never_sees_the_old_stream)
{
	int fds[2], again[2];

	unit_env(NULL);
	unit_unix_pair(fds);
	fill_until_spooling(fds[0]);
	cr_assert_eq(op_close(fds[0]), 0);
	unit_unix_pair(again);
	op_new_fd(again[0]);
	op_new_fd(again[1]);
	cr_assert_null(fdtab_peek(fds[0]));
	cr_assert_eq(op_write(fds[0] == again[0] ? again[0] : again[1],
	    "x", 1), 1);
	cr_assert(read_pattern(fds[1], 0, BIG));
	cr_assert(read_eof(fds[1]));
}

Test(lifecycle, shutdown_wr_waits_for_the_spool)
{
	struct stream *s;
	int fds[2];

	unit_env(NULL);
	unit_unix_pair(fds);
	fill_until_spooling(fds[0]);
	cr_assert_eq(op_shutdown(fds[0], SHUT_WR), 0);
	cr_assert_eq(op_write(fds[0], "x", 1), -1);
	cr_assert_eq(errno, EPIPE, "as after a real shutdown, no SIGPIPE");
	cr_assert(read_pattern(fds[1], 0, BIG));
	cr_assert(read_eof(fds[1]), "FIN after the last spooled byte");
	cr_assert_not_null(s = unit_stream(fds[0]));
	cr_assert(wait_state(s, STREAM_DIRECT));
	stream_unref(s);
}

Test(lifecycle, dup_shares_the_stream_close_waits_for_the_last_fd)
{
	struct stream *s;
	int fds[2], d;

	unit_env(NULL);
	unit_unix_pair(fds);
	fill_until_spooling(fds[0]);
	d = op_dup(fds[0]);
	cr_assert(d >= 0);
	cr_assert_eq(fdtab_peek(d), fdtab_peek(fds[0]));
	cr_assert_eq(op_close(fds[0]), 0);
	cr_assert_not_null(s = unit_stream(d));
	cr_assert_eq(stream_state_of(s), STREAM_SPOOLING);
	cr_assert_eq(op_write(d, "", 0), 0);
	cr_assert(read_pattern(fds[1], 0, BIG));
	cr_assert(wait_state(s, STREAM_DIRECT), "still open through dup");
	cr_assert_eq(op_close(d), 0);
	cr_assert(read_eof(fds[1]));
	stream_unref(s);
}

Test(lifecycle, linger_zero_close_discards_and_resets)
{
	struct linger l = { 1, 0 };
	const char *dir;
	char buf[4096];
	int fds[2];
	ssize_t n;

	dir = unit_env(NULL);
	unit_tcp_pair(fds);
	fill_until_spooling(fds[0]);
	cr_assert_eq(setsockopt(fds[0], SOL_SOCKET, SO_LINGER, &l,
	    sizeof(l)), 0);
	cr_assert_eq(op_close(fds[0]), 0);
	while ((n = read(fds[1], buf, sizeof(buf))) > 0)
		;
	cr_assert_eq(n, -1);
	cr_assert_eq(errno, ECONNRESET);
	cr_assert_eq(spool_dir_entries(dir), 0, "spool discarded");
}

Test(lifecycle, peer_gone_fails_the_next_write_and_keeps_an_orphan)
{
	struct sigaction sa = { .sa_handler = SIG_DFL };
	struct stream *s;
	const char *dir;
	int fds[2];

	sigaction(SIGPIPE, &sa, NULL);	/* a SIGPIPE would kill the test */
	dir = unit_env(NULL);
	unit_unix_pair(fds);
	fill_until_spooling(fds[0]);
	cr_assert_not_null(s = unit_stream(fds[0]));
	close(fds[1]);
	cr_assert(wait_state(s, STREAM_FAILED));
	cr_assert_eq(op_write(fds[0], "x", 1), -1);
	cr_assert(errno == EPIPE || errno == ECONNRESET, "errno %d", errno);
	cr_assert_eq(spool_dir_entries(dir), 1, "orphan spool kept");
	cr_assert_eq(op_close(fds[0]), 0);
	stream_unref(s);
}

Test(overflow, eagain_policy_refuses_only_what_it_cannot_queue)
{
	unsigned char *b = pattern_buf(BIG, 0);
	uint64_t off = 0;
	ssize_t r;
	int fds[2];

	unit_env("TCPSPOOL_MAX_STREAM=256K", NULL);
	unit_unix_pair(fds);
	while ((r = op_write(fds[0], b + off % BIG, 16384)) == 16384)
		off += 16384;
	cr_assert_eq(r, -1, "nothing of this call could be queued");
	cr_assert_eq(errno, EAGAIN);
	cr_assert(off >= 256 * 1024, "the quota was used first");
	free(b);
}

Test(overflow, drop_policy_reports_success_and_counts)
{
	unsigned char *b = pattern_buf(BIG, 0);
	struct stream *s;
	int fds[2], i;

	unit_env("TCPSPOOL_MAX_STREAM=64K", "TCPSPOOL_OVERFLOW=drop", NULL);
	unit_unix_pair(fds);
	for (i = 0; i < 64; i++)
		cr_assert_eq(op_write(fds[0], b, 16384), 16384);
	cr_assert_not_null(s = unit_stream(fds[0]));
	pthread_mutex_lock(&s->mu);
	cr_assert(s->drops > 0);
	pthread_mutex_unlock(&s->mu);
	stream_unref(s);
	free(b);
}

/* Message k of the drop test: its number in every byte. */
#define MSG_LEN (96u << 10)

/* Reads what fd has now; returns the bytes read. */
static size_t
read_available(int fd, unsigned char *out, size_t cap)
{
	size_t got = 0;
	ssize_t n;

	while (got < cap && (n = recv(fd, out + got, cap - got,
	    MSG_DONTWAIT)) > 0)
		got += (size_t)n;
	return got;
}

/*
 * A write larger than the quota: the kernel takes part of it, and the rest
 * cannot be spooled. Under drop the application gets the short count and
 * sends the rest again, as it would to a socket; the peer must see every
 * message it gets whole, never one cut and joined to the next.
 */
Test(overflow, drop_policy_never_cuts_a_message)
{
	size_t cap = 64 * MSG_LEN, got = 0, off, i;
	unsigned char *msg = malloc(MSG_LEN), *in = malloc(cap);
	struct pollfd pfd;
	int fds[2], k, partial = 0;
	ssize_t r;

	cr_assert(msg != NULL && in != NULL);
	unit_env("TCPSPOOL_MAX_STREAM=64K", "TCPSPOOL_OVERFLOW=drop", NULL);
	unit_unix_pair(fds);
	for (k = 1; k <= 24; k++) {
		memset(msg, k, MSG_LEN);
		for (off = 0; off < MSG_LEN;) {
			r = op_write(fds[0], msg + off, MSG_LEN - off);
			if (r > 0) {
				partial += off + (size_t)r < MSG_LEN;
				off += (size_t)r;
				continue;
			}
			cr_assert(r < 0 && errno == EAGAIN, "write: %s",
			    strerror(errno));
			/* Only the rest of a cut write waits: the reader
			 * makes room, and the socket says when. */
			cr_assert(off > 0, "a whole write refused under drop");
			got += read_available(fds[1], in + got, cap - got);
			pfd = (struct pollfd){ .fd = fds[0], .events = POLLOUT };
			cr_assert_eq(poll(&pfd, 1, 30000), 1,
			    "no POLLOUT for the rest of message %d", k);
		}
		if (k % 4 == 0)	/* now and then the reader keeps up */
			got += read_available(fds[1], in + got, cap - got);
	}
	cr_assert_eq(op_shutdown(fds[0], SHUT_WR), 0);	/* after the spool */
	for (;;) {
		pfd = (struct pollfd){ .fd = fds[1], .events = POLLIN };
		cr_assert_eq(poll(&pfd, 1, 30000), 1, "the spool never came");
		r = recv(fds[1], in + got, cap - got, 0);
		cr_assert(r >= 0);
		if (r == 0)
			break;
		got += (size_t)r;
	}
	cr_assert(got % MSG_LEN == 0, "%zu bytes: a message was cut", got);
	for (off = 0, k = 0; off < got; off += MSG_LEN) {
		cr_assert(in[off] > k, "message %d after %d", in[off], k);
		k = in[off];
		for (i = 0; i < MSG_LEN; i++)
			cr_assert_eq(in[off + i], k, "message %d cut at %zu",
			    k, i);
	}
	cr_assert(partial > 0, "the kernel never took part of a write: the "
	    "test proves nothing");
	op_close(fds[0]);
	close(fds[1]);
	free(msg);
	free(in);
}

struct reader {
	int fd;
	uint64_t n;
	bool ok;
};

static void *
reader_main(void *arg)
{
	struct reader *r = arg;

	r->ok = read_pattern(r->fd, 0, r->n);
	return NULL;
}

Test(overflow, block_policy_waits_for_room)
{
	unsigned char *b = pattern_buf(4 * BIG, 0);
	struct reader rd;
	pthread_t t;
	uint64_t off;
	int fds[2];

	unit_env("TCPSPOOL_MAX_STREAM=128K", "TCPSPOOL_OVERFLOW=block",
	    "TCPSPOOL_BLOCK_TIMEOUT=60s", NULL);
	unit_unix_pair(fds);
	rd = (struct reader){ fds[1], 4 * (uint64_t)BIG, false };
	cr_assert_eq(pthread_create(&t, NULL, reader_main, &rd), 0);
	for (off = 0; off < 4 * (uint64_t)BIG; off += 16384)
		cr_assert_eq(op_write(fds[0], b + off, 16384), 16384,
		    "blocks for room, never refuses while the reader reads");
	pthread_join(t, NULL);
	cr_assert(rd.ok);
	free(b);
}

struct writer {
	int fd;
	const unsigned char *buf;
	size_t len;
	ssize_t r;
};

static void *
writer_main(void *arg)
{
	struct writer *w = arg;

	w->r = op_write(w->fd, w->buf, w->len);
	return NULL;
}

/* A thread blocked for room on s (overflow=block). */
static void
wait_blocked(int fd)
{
	struct stream *s;
	int i;

	for (i = 0; i < 30000; i++) {
		if ((s = unit_stream(fd)) != NULL) {
			bool blocked = atomic_load(&s->waiters) > 0;

			stream_unref(s);
			if (blocked)
				return;
		}
		usleep(1000);
	}
	cr_assert_fail("the writer never blocked for room");
}

Test(overflow, block_policy_wakes_a_first_spool_when_another_stream_drains)
{
	unsigned char *b = pattern_buf(BIG, 0);
	struct timespec t0, t1;
	struct writer w;
	pthread_t t;
	int a[2], c[2], i;

	unit_env("TCPSPOOL_MAX=512K", "TCPSPOOL_LEVEL=0",
	    "TCPSPOOL_OVERFLOW=block", "TCPSPOOL_BLOCK_TIMEOUT=60s", NULL);
	unit_unix_pair(a);
	unit_unix_pair(c);
	for (i = 0; i < 6; i++)		/* a fills most of the dir quota */
		cr_assert_eq(op_write(a[0], b + i * 65536, 65536), 65536);
	/* c's first spool does not fit: it waits for room, on a stream the
	 * replay thread does not know yet. */
	w = (struct writer){ c[0], b, 256 * 1024, 0 };
	cr_assert_eq(pthread_create(&t, NULL, writer_main, &w), 0);
	wait_blocked(c[0]);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert(read_pattern(a[1], 0, 6 * 65536));
	pthread_join(t, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert_eq(w.r, 256 * 1024);
	cr_assert_lt(t1.tv_sec - t0.tv_sec, 30, "woken by the room a's "
	    "delivery made, not at the end of the 60 s block timeout");
	cr_assert(read_pattern(c[1], 0, 256 * 1024));
	free(b);
}

Test(oob, urgent_data_never_overtakes_the_spool)
{
	int fds[2];

	unit_env("TCPSPOOL_BLOCK_TIMEOUT=0", NULL);
	unit_tcp_pair(fds);
	fill_until_spooling(fds[0]);
	cr_assert_eq(op_send(fds[0], "!", 1, MSG_OOB), -1);
	cr_assert_eq(errno, EAGAIN, "as a full socket would answer");
	cr_assert(read_pattern(fds[1], 0, BIG));
}

Test(lifecycle, a_dup_made_before_spooling_shares_the_stream)
{
	unsigned char *b = pattern_buf(2 * BIG, 0);
	int fds[2], d;

	unit_env(NULL);
	unit_unix_pair(fds);
	d = op_fcntl(fds[0], F_DUPFD_CLOEXEC, (void *)50, false);
	cr_assert(d >= 50);
	cr_assert_eq(fdtab_peek(d), fdtab_peek(fds[0]));
	cr_assert_eq(op_write(fds[0], b, BIG), (ssize_t)BIG);
	cr_assert_eq(op_write(d, b + BIG, BIG), (ssize_t)BIG,
	    "behind the bytes spooled through the other number");
	cr_assert(read_pattern(fds[1], 0, 2 * (uint64_t)BIG));
	free(b);
}

Test(lifecycle, close_range_spares_the_private_duplicate)
{
	int fds[2], w, r;

	unit_env(NULL);
	unit_unix_pair(fds);
	/* The writer gets the highest application number, so the range
	 * [w, ~0] holds it and the library's duplicate, and nothing of the
	 * test runner's. */
	w = op_fcntl(fds[0], F_DUPFD_CLOEXEC, (void *)900, false);
	cr_assert(w >= 900);
	cr_assert_eq(op_close(fds[0]), 0);
	r = fds[1];
	fill_until_spooling(w);
	cr_assert_eq(op_close_range((unsigned)w, ~0U, 0), 0);
	cr_assert_eq(fcntl(w, F_GETFD), -1, "the application's fd is closed");
	cr_assert(read_pattern(r, 0, BIG), "the duplicate still delivers");
	cr_assert(read_eof(r));
}

/* Reads until s is back on the direct path, its spool gone. */
static bool
drain_to_direct(struct stream *s, int rfd)
{
	unsigned char buf[65536];
	struct pollfd pfd;

	for (int i = 0; i < 3000; i++) {	/* 3000 x 10 ms: a hang fails */
		while (recv(rfd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
			;
		pthread_mutex_lock(&s->mu);
		bool direct = s->state == STREAM_DIRECT && s->spool == NULL;
		pthread_mutex_unlock(&s->mu);
		if (direct)
			return true;
		pfd = (struct pollfd){ .fd = rfd, .events = POLLIN };
		(void)poll(&pfd, 1, 10);
	}
	return false;
}

/* The writes dropped, so far, as the stream counts them. */
static uint64_t
drops_of(struct stream *s)
{
	uint64_t d;

	pthread_mutex_lock(&s->mu);
	d = s->drops;
	pthread_mutex_unlock(&s->mu);
	return d;
}

/* Spools 1 MiB more into a 64 KiB quota under drop; returns the drops. */
static uint64_t
spool_with_drops(struct stream *s, int wfd, const unsigned char *b)
{
	uint64_t before = drops_of(s);

	for (int i = 0; i < 64; i++)
		cr_assert_eq(op_write(wfd, b, 16384), 16384);
	return drops_of(s) - before;
}

/*
 * The ledger has one line per spool, with that spool's drops: a
 * connection that spools, drains and spools again counts the first
 * spool's drops once (it counted them again in the second's line).
 */
Test(overflow, the_ledger_counts_each_spools_drops_once)
{
	unsigned char *b = pattern_buf(BIG, 0);
	struct spool_ledger l;
	struct spool_dir *d;
	struct spool_err e;
	struct stream *s;
	uint64_t d1, d2;
	int fds[2];

	unit_env("TCPSPOOL_MAX_STREAM=64K", "TCPSPOOL_OVERFLOW=drop", NULL);
	unit_unix_pair(fds);
	for (int i = 0; i < 64; i++)
		cr_assert_eq(op_write(fds[0], b, 16384), 16384);
	cr_assert_not_null(s = unit_stream(fds[0]));
	d1 = drops_of(s);
	cr_assert(d1 > 0, "nothing dropped: the quota was never reached");
	cr_assert(drain_to_direct(s, fds[1]), "the first spool never drained");
	d2 = spool_with_drops(s, fds[0], b);
	cr_assert(d2 > 0, "nothing dropped the second time");
	cr_assert(drain_to_direct(s, fds[1]), "the second spool never drained");

	/* The replay thread closes a drained spool (its ledger line) just
	 * after it leaves the stream: wait for both lines. */
	cr_assert_eq(spool_dir_inspect(getenv("TCPSPOOL_DIR"), false, &d, &e),
	    0, "%s", e.msg);
	for (int i = 0; i < 3000; i++) {
		cr_assert_eq(spool_ledger_read(d, &l, &e), 0, "%s", e.msg);
		if (l.streams >= 2)
			break;
		usleep(10000);	/* bounded poll of a condition */
	}
	spool_dir_close(d);
	cr_expect_eq(l.streams, 2, "%" PRIu64 " ledger lines", l.streams);
	cr_expect_eq(l.drops, d1 + d2, "ledger: %" PRIu64 " drops, the "
	    "spools dropped %" PRIu64 " and %" PRIu64, l.drops, d1, d2);
	stream_unref(s);
	op_close(fds[0]);
	close(fds[1]);
	free(b);
}

struct cancellee {
	int fd;
	const unsigned char *buf;
	_Atomic uint64_t done;
};

static void *
cancellee_main(void *arg)
{
	struct cancellee *c = arg;

	for (uint64_t off = 0; off < 4 * (uint64_t)BIG; off += 16384) {
		if (op_write(c->fd, c->buf + off, 16384) != 16384)
			break;
		atomic_store(&c->done, off + 16384);
		pthread_testcancel();
	}
	return NULL;
}

/*
 * A writer waiting for room (overflow=block) is cancelled. The wait is a
 * condition wait, a cancellation point, and glibc takes the stream's
 * lock back before a cancel unwinds: the thread died holding it, and the
 * replay thread (and every later writer) waited for it for ever. The
 * cancel is now acted on once the write returned, at the application's
 * next cancellation point; every byte written is delivered.
 */
Test(overflow, a_writer_cancelled_while_it_waits_for_room_keeps_the_stream)
{
	unsigned char *b = pattern_buf(4 * BIG, 0);
	struct cancellee c = { .buf = b };
	struct stream *s = NULL;
	struct reader rd;
	pthread_t t, r;
	void *ret;
	int fds[2], i;

	unit_env("TCPSPOOL_MAX_STREAM=128K", "TCPSPOOL_OVERFLOW=block",
	    "TCPSPOOL_BLOCK_TIMEOUT=60s", "TCPSPOOL_LINGER=1s", NULL);
	unit_unix_pair(fds);
	c.fd = fds[0];
	cr_assert_eq(pthread_create(&t, NULL, cancellee_main, &c), 0);
	/* Bounded retry on the condition: the writer waits for room. */
	for (i = 0; i < 30000; i++) {
		if (s == NULL)
			s = unit_stream(fds[0]);
		if (s != NULL && atomic_load(&s->waiters) > 0)
			break;
		poll(NULL, 0, 1);
	}
	cr_assert(s != NULL && atomic_load(&s->waiters) > 0,
	    "the writer never waited for room");
	cr_assert_eq(pthread_cancel(t), 0);
	/* Room: the reader takes everything written so far, and on. */
	rd = (struct reader){ fds[1], 0, false };
	rd.n = atomic_load(&c.done) + 16384;
	cr_assert_eq(pthread_create(&r, NULL, reader_main, &rd), 0);
	cr_assert_eq(pthread_join(t, &ret), 0);
	cr_assert_eq(ret, PTHREAD_CANCELED);
	cr_assert(wait_state(s, STREAM_DIRECT), "the stream never drained: "
	    "its lock was left held by the cancelled writer");
	cr_assert_eq(atomic_load(&c.done), rd.n, "the write that waited "
	    "returned whole before the cancel");
	cr_assert_eq(pthread_join(r, NULL), 0);
	cr_assert(rd.ok);
	stream_unref(s);
	free(b);
}
