/*
 * tcpspool ls, stat and dump on spools made with the writer API, so every
 * figure and every byte is known in advance. JSON output is parsed by
 * python3's json module, not by eye.
 */
#include <sys/stat.h>

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"		/* STATUS_FRESH_NS */
#include "tools_test.h"

TestSuite(tools_inspect, .init = t_setup, .fini = t_teardown);

/* Three records that exercise escaping. */
static size_t
tricky(uint64_t i, uint8_t *buf, size_t cap)
{
	static const char *const recs[] = { "hello\n", "a\tb\0\001\377\\\"",
	    "plain text" };
	static const size_t lens[] = { 6, 8, 10 };

	memcpy(buf, recs[i % 3], lens[i % 3]);
	return lens[i % 3];
}

static void
hex(const uint8_t *p, size_t len, char *out)
{
	size_t i;

	for (i = 0; i < len; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
	out[2 * len] = '\0';
}

Test(tools_inspect, ls_shows_an_orphan_with_its_figures_in_aligned_columns)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 12,
	    .per_frame = 4 };
	char name[SPOOL_NAME_MAX], pid[16], *row, *state_h, *state_r;
	struct t_out o;
	pid_t p;

	p = t_make_stream(&sp, name);
	t_cli(&o, "ls", t_spool, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	cr_assert(strncmp(o.out, "STREAM", 6) == 0, "%s", o.out);
	cr_assert((row = strstr(o.out, name)) != NULL, "%s", o.out);
	snprintf(pid, sizeof(pid), " %d ", (int)p);
	cr_assert(strstr(row, pid) != NULL, "%s", o.out);
	cr_assert(strstr(row, " no ") != NULL, "%s", o.out);
	cr_assert(strstr(row, "127.0.0.1:8080 -> 127.0.0.1:54321") != NULL);
	cr_assert(strstr(row, "orphan (peer reset)") != NULL, "%s", o.out);
	cr_assert(strstr(row, " 12 ") != NULL, "%s", o.out);
	/* Aligned: the state starts in the header's STATE column. */
	state_h = strstr(o.out, "STATE");
	state_r = strstr(row, "orphan");
	cr_assert_eq(state_h - o.out, state_r - row, "%s", o.out);
	t_out_free(&o);
}

Test(tools_inspect, ls_json_is_one_valid_object_per_stream)
{
	struct t_stream_spec a = { .writer = T_ORPHAN, .records = 12,
	    .per_frame = 4 };
	struct t_stream_spec b = { .writer = T_CRASHED, .records = 5,
	    .per_frame = 1 };
	char na[SPOOL_NAME_MAX], nb[SPOOL_NAME_MAX], want[1024];
	size_t la, lb;
	uint8_t *ba, *bb;
	pid_t pa, pb;
	struct t_out o, py;

	pa = t_make_stream(&a, na);
	pb = t_make_stream(&b, nb);
	ba = t_stream_bytes(t_record, 12, &la);
	bb = t_stream_bytes(t_record, 5, &lb);
	t_cli(&o, "ls", "--json", "--dir", t_spool, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	t_write_file(t_path("ls.json"), o.out, o.out_len);
	t_python(&py,
	    "import json, sys\n"
	    "for line in sys.stdin:\n"
	    "    o = json.loads(line)\n"
	    "    print(o['stream'], o['pid'], o['alive'], o['fd'], o['state'],\n"
	    "          repr(o['why']), o['records'], o['raw_bytes'],\n"
	    "          o['local'], o['peer'], o['segments'],\n"
	    "          o['oldest_ns'], o['newest_ns'], o['error'],\n"
	    "          o['status'] and o['status']['fresh'])\n",
	    t_path("ls.json"));
	/* Streams come in name order. */
	if (strcmp(na, nb) < 0)
		snprintf(want, sizeof(want),
		    "%s %d False 7 orphan 'peer reset' 12 %zu 127.0.0.1:8080 "
		    "127.0.0.1:54321 1 %lld %lld None True\n"
		    "%s %d False 7 orphan 'process gone' 5 %zu 127.0.0.1:8080 "
		    "127.0.0.1:54321 1 %lld %lld None None\n",
		    na, (int)pa, la, T_TS(0), T_TS(11),
		    nb, (int)pb, lb, T_TS(0), T_TS(4));
	else
		snprintf(want, sizeof(want),
		    "%s %d False 7 orphan 'process gone' 5 %zu 127.0.0.1:8080 "
		    "127.0.0.1:54321 1 %lld %lld None None\n"
		    "%s %d False 7 orphan 'peer reset' 12 %zu 127.0.0.1:8080 "
		    "127.0.0.1:54321 1 %lld %lld None True\n",
		    nb, (int)pb, lb, T_TS(0), T_TS(4),
		    na, (int)pa, la, T_TS(0), T_TS(11));
	cr_assert_str_eq(py.out, want);
	free(ba);
	free(bb);
	t_out_free(&o);
	t_out_free(&py);
}

Test(tools_inspect, hostile_addresses_are_escaped_in_json_and_on_a_terminal)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 1,
	    .local = "unix:/tmp/\xc3\xbc.sock",
	    .peer = "evil\"\\\n\001\377end" };
	char name[SPOOL_NAME_MAX];
	struct t_out o, py;

	t_make_stream(&sp, name);
	t_cli(&o, "ls", "--json", t_spool, NULL);
	cr_assert_eq(o.status, 0);
	t_write_file(t_path("ls.json"), o.out, o.out_len);
	t_python(&py,
	    "import json, sys\n"
	    "o = json.loads(sys.stdin.read())\n"
	    "print(o['local'].encode().hex(), o['peer'].encode().hex())\n",
	    t_path("ls.json"));
	/* ü stays UTF-8; the lone 0xff byte becomes U+FFFD (ef bf bd). */
	cr_assert_str_eq(py.out, "756e69783a2f746d702fc3bc2e736f636b "
	    "6576696c225c0a01efbfbd656e64\n");
	t_out_free(&o);
	t_out_free(&py);

	t_cli(&o, "ls", t_spool, NULL);
	cr_assert_eq(o.status, 0);
	cr_assert(memchr(o.out, '\001', o.out_len) == NULL);
	cr_assert(memchr(o.out, '\377', o.out_len) == NULL);
	cr_assert(strstr(o.out, "evil\"\\\\\\n\\001\\377end") != NULL, "%s",
	    o.out);
	t_out_free(&o);
}

Test(tools_inspect, ls_shows_live_state_a_writer_publishes)
{
	struct spool_identity id = { .pid = 0, .fd = 9,
	    .local = "127.0.0.1:80", .peer = "127.0.0.1:4000" };
	struct spool_status st = { .fd = 9, .state = "spooling",
	    .pending_bytes = 4242, .pending_records = 3, .drops = 1 };
	struct spool_err e = { "" };
	struct spool_options opt;
	struct spool_stream *s;
	struct spool_dir *d;
	struct iovec iov = { "abc", 3 };
	struct t_out o, py;
	char want[256];
	int64_t written, done;
	int attempt;

	id.pid = st.pid = getpid();
	cr_assert(spool_dir_open(t_spool, NULL, &d, &e) == 0, "%s", e.msg);
	spool_options_default(&opt);
	cr_assert(spool_stream_create(d, &id, &opt, &s, &e) == 0, "%s", e.msg);
	cr_assert(spool_stream_append(s, &iov, 1, T_TS(0), &e) == 0);
	cr_assert(spool_stream_flush(s, &e) == 0);
	st.updated_ns = 1;	/* long ago: stale */
	cr_assert(spool_status_publish(s, &st, &e) == 0, "%s", e.msg);
	t_cli(&o, "ls", t_spool, NULL);
	cr_assert(strstr(o.out, "spooling (status ") != NULL, "%s", o.out);
	cr_assert(strstr(o.out, " yes ") != NULL, "%s", o.out);
	t_out_free(&o);

	/* Fresh: a status written less than STATUS_FRESH_NS before the CLI
	 * reads its clock. That read falls between written and done (our
	 * clock around the CLI's run); a run slower than STATUS_FRESH_NS (a
	 * loaded machine) proves nothing either way, and is made again. */
	for (attempt = 0;; attempt++) {
		cr_assert(attempt < 20, "20 runs of tcpspool ls each took %lld "
		    "ms or more", STATUS_FRESH_NS / 1000000);
		st.updated_ns = written = t_realtime_ns();
		cr_assert(spool_status_publish(s, &st, &e) == 0, "%s", e.msg);
		t_cli(&o, "ls", "--json", t_spool, NULL);
		done = t_realtime_ns();
		if (done - written < STATUS_FRESH_NS)
			break;
		t_out_free(&o);
	}
	cr_assert_eq(o.status, 0);
	t_write_file(t_path("ls.json"), o.out, o.out_len);
	t_python(&py,
	    "import json, sys\n"
	    "o = json.loads(sys.stdin.read())\n"
	    "s = o['status']\n"
	    "print(o['pid'], o['alive'], o['state'], repr(o['why']),\n"
	    "      s['pending_bytes'], s['pending_records'], s['drops'],\n"
	    "      s['fresh'])\n", t_path("ls.json"));
	snprintf(want, sizeof(want), "%d True spooling '' 4242 3 1 True\n",
	    (int)getpid());
	cr_assert_str_eq(py.out, want);
	t_out_free(&o);
	t_out_free(&py);

	/* Stale: a status written STATUS_FRESH_NS before the CLI ran, which
	 * reads its clock after this one. */
	st.updated_ns = t_realtime_ns() - STATUS_FRESH_NS;
	cr_assert(spool_status_publish(s, &st, &e) == 0, "%s", e.msg);
	t_cli(&o, "ls", "--json", t_spool, NULL);
	cr_assert_eq(o.status, 0);
	cr_assert(strstr(o.out, "\"fresh\":false") != NULL, "%s", o.out);
	t_out_free(&o);
	spool_stream_close(s, SPOOL_CLOSE_KEEP, "test", &e);
	spool_dir_close(d);
}

Test(tools_inspect, stat_lists_every_segment_and_frame)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 12,
	    .per_frame = 4 };
	char name[SPOOL_NAME_MAX], want[256];
	struct t_frame fr[8];
	struct t_out o;
	size_t n, i;
	pid_t p;

	p = t_make_stream(&sp, name);
	n = t_frames(name, fr, 8);
	cr_assert_eq(n, 3);
	t_cli(&o, "stat", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 0, "%s%s", o.out, o.err);
	snprintf(want, sizeof(want), "stream:   %s\n", name);
	cr_assert(strstr(o.out, want) != NULL, "%s", o.out);
	snprintf(want, sizeof(want), "pid:      %d (not running)\n", (int)p);
	cr_assert(strstr(o.out, want) != NULL, "%s", o.out);
	cr_assert(strstr(o.out, "state:    orphan (peer reset)\n") != NULL);
	cr_assert(strstr(o.out, "pending:  12 records") != NULL, "%s", o.out);
	cr_assert(strstr(o.out, "segment 0000000000000000.seg: seq: 0 "
	    "version: 1 codec: deflate") != NULL, "%s", o.out);
	cr_assert(strstr(o.out, " sealed ") != NULL, "%s", o.out);
	cr_assert(strstr(o.out, "  records: 0..11 (12)") != NULL, "%s", o.out);
	for (i = 0; i < n; i++) {
		snprintf(want, sizeof(want), "  frame offset: %" PRIu64
		    " seq: %" PRIu64 "..%" PRIu64 " count: 4 ", fr[i].offset,
		    fr[i].first_seq, fr[i].first_seq + 3);
		cr_assert(strstr(o.out, want) != NULL, "no '%s' in\n%s", want,
		    o.out);
	}
	cr_assert(strstr(o.out, "valid: no") == NULL);
	cr_assert(strstr(o.out, "\n1 segments, 3 frames, 0 problems\n") != NULL,
	    "%s", o.out);
	t_out_free(&o);

	/* An unambiguous prefix names the stream too, and so does its path. */
	{
		char prefix[8], path[512];

		snprintf(prefix, sizeof(prefix), "%.6s", name);
		t_cli(&o, "stat", "--dir", t_spool, prefix, NULL);
		cr_assert_eq(o.status, 0, "%s", o.err);
		t_out_free(&o);
		snprintf(path, sizeof(path), "%s/%s/", t_spool, name);
		t_cli(&o, "stat", path, NULL);
		cr_assert_eq(o.status, 0, "%s", o.err);
		t_out_free(&o);
	}
}

Test(tools_inspect, dump_vis_escapes_every_unsafe_byte)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 3,
	    .rec = tricky };
	char name[SPOOL_NAME_MAX];
	struct t_out o;

	t_make_stream(&sp, name);
	t_cli(&o, "dump", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	cr_assert_str_eq(o.out,
	    "#0 2023-11-14T22:13:20.123456789Z len=6: hello\\n\n"
	    "#1 2023-11-14T22:13:20.124456789Z len=8: a\\tb\\0\\001\\377\\\\\"\n"
	    "#2 2023-11-14T22:13:20.125456789Z len=10: plain text\n");
	t_out_free(&o);
}

Test(tools_inspect, dump_raw_is_the_exact_bytes)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 40,
	    .per_frame = 7 };
	char name[SPOOL_NAME_MAX];
	struct t_out o;
	uint8_t *want;
	size_t len;

	t_make_stream(&sp, name);
	want = t_stream_bytes(t_record, 40, &len);
	t_cli(&o, "dump", "--format", "raw", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	cr_assert_eq(o.out_len, len);
	cr_assert(memcmp(o.out, want, len) == 0);
	free(want);
	t_out_free(&o);
}

Test(tools_inspect, dump_hex_matches_hexdump_c)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 4 };
	char name[SPOOL_NAME_MAX], head[128], *block, *next;
	uint8_t buf[T_RECORD_MAX];
	struct t_out o, hd;
	uint64_t i;
	size_t len;

	t_make_stream(&sp, name);
	t_cli(&o, "dump", "--format", "hex", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	block = o.out;
	for (i = 0; i < 4; i++) {
		const char *argv[] = { "/usr/bin/hexdump", "-C",
		    t_path("rec.bin"), NULL };

		len = t_record(i, buf, sizeof(buf));
		t_write_file(t_path("rec.bin"), buf, len);
		t_run(&hd, argv, NULL);
		cr_assert_eq(hd.status, 0);
		snprintf(head, sizeof(head), "#%" PRIu64 " ", i);
		cr_assert(strncmp(block, head, strlen(head)) == 0, "%s", block);
		block = strchr(block, '\n') + 1;
		next = strstr(block, "\n#");
		next = next ? next + 1 : block + strlen(block);
		cr_assert_eq((size_t)(next - block), hd.out_len,
		    "record %" PRIu64 ":\n%.*s\nvs hexdump -C:\n%s", i,
		    (int)(next - block), block, hd.out);
		cr_assert(memcmp(block, hd.out, hd.out_len) == 0,
		    "record %" PRIu64 ":\n%.*s\nvs hexdump -C:\n%s", i,
		    (int)(next - block), block, hd.out);
		block = next;
		t_out_free(&hd);
	}
	t_out_free(&o);
}

Test(tools_inspect, dump_json_decodes_to_the_records)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 9,
	    .per_frame = 2 };
	char name[SPOOL_NAME_MAX], *want, line[20000], h[2 * T_RECORD_MAX + 1];
	uint8_t buf[T_RECORD_MAX];
	struct t_out o, py;
	size_t len, used = 0;
	uint64_t i;

	t_make_stream(&sp, name);
	t_cli(&o, "dump", "--format", "json", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	t_write_file(t_path("dump.json"), o.out, o.out_len);
	t_python(&py,
	    "import json, sys, base64\n"
	    "for line in sys.stdin:\n"
	    "    r = json.loads(line)\n"
	    "    d = base64.b64decode(r['data'], validate=True)\n"
	    "    print(r['seq'], r['ts_ns'], r['len'], r['delivered'],\n"
	    "          d.hex(), r['time'])\n", t_path("dump.json"));
	want = malloc(9 * sizeof(line));
	for (i = 0; i < 9; i++) {
		len = t_record(i, buf, sizeof(buf));
		hex(buf, len, h);
		used += (size_t)snprintf(want + used, sizeof(line),
		    "%" PRIu64 " %lld %zu 0 %s 2023-11-14T22:13:20.%09lldZ\n", i,
		    T_TS(i), len, h, T_TS(i) % 1000000000LL);
	}
	cr_assert_str_eq(py.out, want);
	free(want);
	t_out_free(&o);
	t_out_free(&py);
}

Test(tools_inspect, dump_from_and_count_select_records)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 12,
	    .per_frame = 5 };
	char name[SPOOL_NAME_MAX];
	struct t_out o;

	t_make_stream(&sp, name);
	t_cli(&o, "dump", "--from", "5", "--count", "3", "--dir", t_spool,
	    name, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	cr_assert(strncmp(o.out, "#5 ", 3) == 0, "%s", o.out);
	cr_assert(strstr(o.out, "\n#6 ") != NULL);
	cr_assert(strstr(o.out, "\n#7 ") != NULL);
	cr_assert(strstr(o.out, "\n#8 ") == NULL);
	t_out_free(&o);
}

Test(tools_inspect, dump_starts_where_delivery_stopped)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 4 };
	char name[SPOOL_NAME_MAX];
	struct spool_err e = { "" };
	struct spool_cursor *c;
	struct spool_record r;
	struct spool_dir *d;
	struct t_out o;
	uint8_t *all;
	size_t len, r0;

	t_make_stream(&sp, name);
	cr_assert(spool_dir_open(t_spool, NULL, &d, &e) == 0);
	cr_assert(spool_cursor_open(d, name, &c, &e) == 0, "%s", e.msg);
	cr_assert(spool_cursor_next(c, &r, &e) == 1);
	r0 = r.len;
	cr_assert(spool_cursor_next(c, &r, &e) == 1);
	cr_assert(spool_cursor_ack(c, 1, 3, true, &e) == 0, "%s", e.msg);
	spool_cursor_close(c);
	spool_dir_close(d);

	t_cli(&o, "dump", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	cr_assert(strstr(o.out, "#1 2023-11-14T22:13:20.124456789Z len=40 "
	    "delivered=3: ") == o.out, "%s", o.out);
	t_out_free(&o);
	/* raw: only what is still to deliver. */
	all = t_stream_bytes(t_record, 4, &len);
	t_cli(&o, "dump", "--format", "raw", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.out_len, len - r0 - 3);
	cr_assert(memcmp(o.out, all + r0 + 3, o.out_len) == 0);
	free(all);
	t_out_free(&o);
}

Test(tools_inspect, a_pid_recycled_after_the_stream_was_created_is_not_its_writer)
{
	/* Our pid, but the stream says it was created in 2001: long before
	 * this process started, so this process cannot be its writer. */
	struct spool_identity id = { .fd = 3, .created_ns = 1000000000LL *
	    1000000000LL, .local = "127.0.0.1:80", .peer = "127.0.0.1:81" };
	struct spool_err e = { "" };
	struct spool_options opt;
	struct spool_stream *s;
	struct spool_dir *d;
	struct iovec iov = { "abc", 3 };
	struct t_out o;

	id.pid = getpid();
	cr_assert(spool_dir_open(t_spool, NULL, &d, &e) == 0, "%s", e.msg);
	spool_options_default(&opt);
	cr_assert(spool_stream_create(d, &id, &opt, &s, &e) == 0, "%s", e.msg);
	cr_assert(spool_stream_append(s, &iov, 1, T_TS(0), &e) == 0);
	cr_assert(spool_stream_close(s, SPOOL_CLOSE_KEEP, "exit", &e) == 0);
	spool_dir_close(d);
	t_cli(&o, "ls", "--json", t_spool, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	cr_assert(strstr(o.out, "\"alive\":false") != NULL, "%s", o.out);
	cr_assert(strstr(o.out, "\"state\":\"orphan\",\"why\":\"exit\"") != NULL,
	    "%s", o.out);
	t_out_free(&o);
}

/*
 * Issue 18 item 8: dropped writes were invisible: ls's table had no drops
 * column, and once a stream was delivered its dir and its count were
 * gone. ls shows DROPS per stream and, after the table, the drops of
 * streams that have ended (the spool dir's ledger).
 */
Test(tools_inspect, ls_shows_drops_of_live_and_of_ended_streams)
{
	struct spool_identity id = { .pid = getpid(), .fd = 9 };
	struct spool_status st = { .pid = getpid(), .fd = 9 };
	struct spool_stream *gone, *live;
	struct spool_options opt;
	struct spool_err e = { "" };
	struct iovec iov = { "abc", 3 };
	struct spool_dir *d;
	struct t_out o;

	spool_options_default(&opt);
	cr_assert(spool_dir_open(t_spool, NULL, &d, &e) == 0, "%s", e.msg);
	cr_assert(spool_stream_create(d, &id, &opt, &gone, &e) == 0, "%s",
	    e.msg);
	cr_assert(spool_stream_append(gone, &iov, 1, 1, &e) >= 0, "%s", e.msg);
	strlcpy(st.state, "spooling", sizeof(st.state));
	st.drops = 3;
	st.errors = 1;
	cr_assert(spool_status_publish(gone, &st, &e) == 0, "%s", e.msg);
	/* Delivered: the stream and its dir go, the drops stay counted. */
	cr_assert(spool_stream_close(gone, SPOOL_CLOSE_REMOVE, NULL, &e) == 0,
	    "%s", e.msg);
	cr_assert(spool_stream_create(d, &id, &opt, &live, &e) == 0, "%s",
	    e.msg);
	cr_assert(spool_stream_append(live, &iov, 1, 1, &e) >= 0, "%s", e.msg);
	cr_assert(spool_stream_flush(live, &e) == 0, "%s", e.msg);
	st.drops = 7;
	st.errors = 0;
	cr_assert(spool_status_publish(live, &st, &e) == 0, "%s", e.msg);

	t_cli(&o, "ls", t_spool, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	cr_assert(strstr(o.out, "DROPS") != NULL, "%s", o.out);
	cr_assert(strstr(o.out, "  7  live\n") != NULL, "%s", o.out);
	cr_assert(strstr(o.out, "ended streams with drops or errors: 1 (3 "
	    "drops, 1 errors") != NULL, "%s", o.out);
	t_out_free(&o);
	spool_stream_close(live, SPOOL_CLOSE_REMOVE, NULL, &e);
	spool_dir_close(d);
}
