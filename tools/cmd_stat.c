/*
 * cmd_stat.c — tcpspool stat: everything about one stream, then one line
 * per segment and per frame, like Kafka's kafka-dump-log (offsets, count,
 * position, size, codec, checksum, valid).
 */
#include <err.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char stat_usage[] =
    "usage: tcpspool stat STREAM [--dir DIR]\n"
    "\n"
    "Shows a stream: its writer (pid, whether it runs, fd, addresses), its\n"
    "state, what is pending and acknowledged, then every segment file and\n"
    "every frame in it:\n"
    "  frame offset: O seq: A..B count: N raw: R stored: S codec: C\n"
    "        crc: 0x... first: TIME last: TIME valid: yes|no\n"
    "and every problem found (as tcpspool verify reports them).\n"
    "\n"
    "  --dir DIR    spool dir (default $TCPSPOOL_DIR or /var/tmp/tcpspool-UID)\n"
    "  -h, --help   this text\n"
    "\n"
    "exit: 0 ok, 1 error, 2 integrity problems found, 64 usage.\n";

struct stat_ctx {
	struct spool_dir *d;
	const char *name;
	bool alive;		/* the writer holds the stream */
	uint64_t segments, frames, problems;
};

static int
on_segment(void *arg, const struct spool_segment_info *si)
{
	struct stat_ctx *c = arg;
	char file[sizeof(si->file) * 4], codec[24], max[16], raw[16], st[16];

	c->segments++;
	printf("\nsegment %s: seq: %" PRIu64 " version: %" PRIu32
	    " codec: %s max: %s %s size: %" PRIu64 "\n",
	    vis_str(file, sizeof(file), si->file), si->segment_seq,
	    si->version, codec_name(codec, si->codec),
	    fmt_size(max, si->segment_max), si->sealed ? "sealed" : "open",
	    si->file_size);
	if (si->records > 0)
		printf("  records: %" PRIu64 "..%" PRIu64 " (%" PRIu64
		    ") raw: %s stored: %s\n", si->first_seq, si->last_seq,
		    si->records, fmt_size(raw, si->raw_bytes),
		    fmt_size(st, si->stored_bytes));
	else
		printf("  records: none\n");
	return 0;
}

static int
on_frame(void *arg, const struct spool_frame_info *fi)
{
	struct stat_ctx *c = arg;
	char codec[24], t0[40], t1[40];

	c->frames++;
	printf("  frame offset: %" PRIu64 " seq: %" PRIu64 "..%" PRIu64
	    " count: %" PRIu32 " raw: %" PRIu32 " stored: %" PRIu32
	    " codec: %s crc: 0x%08" PRIx32 " first: %s last: %s valid: %s\n",
	    fi->offset, fi->first_seq,
	    fi->first_seq + (fi->count ? fi->count - 1 : 0), fi->count,
	    fi->raw_len, fi->stored_len, codec_name(codec, fi->codec),
	    fi->payload_crc, fmt_time(t0, fi->first_ts_ns),
	    fmt_time(t1, fi->last_ts_ns), fi->valid ? "yes" : "no");
	return 0;
}

static int
on_problem(void *arg, const struct spool_problem *p)
{
	struct stat_ctx *c = arg;

	printf("  ");
	if (print_problem(stdout, c->d, c->name, p, c->alive))
		c->problems++;
	return 0;
}

static void
print_header(const struct stream_view *v, struct spool_dir *d)
{
	const struct spool_stream_info *i = &v->info;
	const struct spool_status *s = &v->status;
	char a[SPOOL_ADDR_MAX * 4], t[40], x[16], y[16], z[16];
	int64_t now = now_realtime_ns();

	printf("stream:   %s\n", v->name);
	printf("dir:      %s/%s\n", spool_dir_path(d), v->name);
	printf("pid:      %d (%s)\n", (int)v->pid,
	    v->alive ? "running" : "not running");
	printf("fd:       %d\n", (int)v->fd);
	if (i->id_known) {
		printf("local:    %s\n", vis_str(a, sizeof(a), i->id.local));
		printf("peer:     %s\n", vis_str(a, sizeof(a), i->id.peer));
		printf("created:  %s\n", fmt_time(t, i->id.created_ns));
	}
	printf("state:    %s\n", v->state);
	printf("pending:  %" PRIu64 " records, %s raw, %s on disk (%s), %"
	    PRIu32 " segments\n", i->records, fmt_size(x, i->raw_bytes),
	    fmt_size(y, i->stored_bytes),
	    fmt_ratio(z, i->raw_bytes, i->stored_bytes), i->segments);
	if (i->records > 0) {
		printf("oldest:   %s (%s ago)\n", fmt_time(t, i->oldest_ts_ns),
		    fmt_age(x, i->oldest_ts_ns, now));
		printf("newest:   %s (%s ago)\n", fmt_time(t, i->newest_ts_ns),
		    fmt_age(x, i->newest_ts_ns, now));
	}
	printf("next:     record %" PRIu64 " (those before it are delivered)\n",
	    i->acked_seq);
	if (v->status_ok)
		printf("status:   pending %" PRIu64 " bytes in %" PRIu64
		    " records, %" PRIu64 " drops, %" PRIu64 " errors, "
		    "updated %s (%s ago)\n", s->pending_bytes,
		    s->pending_records, s->drops, s->errors,
		    fmt_time(t, s->updated_ns), fmt_age(x, s->updated_ns, now));
	else if (v->status_err[0] != '\0')
		printf("status:   unreadable: %s\n", v->status_err);
	else
		printf("status:   none published\n");
}

int
cmd_stat(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const struct spool_scan_ops ops = { on_segment, on_frame, on_problem };
	struct spool_err e = { "" };
	char name[SPOOL_NAME_MAX];
	struct stat_ctx c = { 0 };
	const char *dir = NULL;
	struct stream_view v;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "hd:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			dir = optarg;
			break;
		case 'h':
			return usage_exit(stat_usage, true);
		default:
			return usage_exit(stat_usage, false);
		}
	}
	if (argc - optind != 1)
		return usage_exit(stat_usage, false);
	if ((rc = cli_open_stream(dir, argv[optind], &c.d, name)) != EXIT_OK)
		return rc;
	c.name = name;
	stream_view_load(c.d, name, &v);
	c.alive = v.held;
	if (v.info_ok)
		print_header(&v, c.d);
	else
		printf("stream:   %s\nstate:    %s (%s)\n", name, v.state,
		    v.info_err);
	rc = spool_scan(c.d, name, &ops, &c, &e);
	printf("\n%" PRIu64 " segments, %" PRIu64 " frames, %" PRIu64
	    " problems\n", c.segments, c.frames, c.problems);
	spool_dir_close(c.d);
	fflush(stdout);
	if (rc < 0) {
		warnx("%s", e.msg[0] ? e.msg : strerror(-rc));
		return EXIT_ERR;
	}
	return c.problems > 0 || !v.info_ok ? EXIT_INTEGRITY : EXIT_OK;
}
