/*
 * cmd_ls.c — tcpspool ls: one row per stream of a spool dir, in aligned
 * columns for a person or one JSON object per line for a script.
 */
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char ls_usage[] =
    "usage: tcpspool ls [DIR] [--dir DIR] [--json]\n"
    "\n"
    "Lists the streams of a spool dir, one row each:\n"
    "  STREAM  the stream's name (accepted by the other commands, as is any\n"
    "          unambiguous prefix)\n"
    "  PID     the writer's process id; LIVE says whether it still runs\n"
    "  FD      the connection's fd in that process\n"
    "  LOCAL -> PEER  the connection's addresses\n"
    "  STATE   the writer's published state while its process runs and\n"
    "          publishes (spooling, draining, ...); otherwise orphan and why\n"
    "          (\"released\": the writer let go of it while it runs)\n"
    "  RECORDS, RAW, DISK  records and bytes not yet delivered, raw and as\n"
    "          stored; RATIO raw/stored\n"
    "  OLDEST, NEWEST  age of the oldest and newest pending record\n"
    "  SEGS    segment files\n"
    "  DROPS   writes the library dropped on this connection (overflow\n"
    "          policy drop), as its writer last published; \"-\" if unknown\n"
    "  CHECK   ok, or the number of problems tcpspool verify reports (every\n"
    "          frame is read and checked: the same rules as verify, dump\n"
    "          and replay)\n"
    "After the table, the drops and errors of streams that have ended\n"
    "(the spool dir's ledger), if any.\n"
    "\n"
    "  --json       one JSON object per stream and line (sizes in bytes,\n"
    "               times in ns since the epoch)\n"
    "  --dir DIR    spool dir (default $TCPSPOOL_DIR or /var/tmp/tcpspool-UID)\n"
    "  -h, --help   this text\n"
    "\n"
    "exit: 0 ok, 1 a stream or the dir could not be read, 2 a stream is\n"
    "damaged, 64 usage.\n";

enum { C_STREAM, C_PID, C_LIVE, C_FD, C_ADDR, C_STATE, C_RECORDS, C_RAW,
	C_DISK, C_RATIO, C_OLDEST, C_NEWEST, C_SEGS, C_DROPS, C_CHECK, NCOLS };

static const char *const heads[NCOLS] = { "STREAM", "PID", "LIVE", "FD",
	"LOCAL -> PEER", "STATE", "RECORDS", "RAW", "DISK", "RATIO", "OLDEST",
	"NEWEST", "SEGS", "DROPS", "CHECK" };
/* Left-aligned columns; the others are figures, right-aligned. */
static const bool left[NCOLS] = { [C_STREAM] = true, [C_LIVE] = true,
	[C_ADDR] = true, [C_STATE] = true, [C_CHECK] = true };

struct row {
	char cell[NCOLS][300];
};

struct ls_ctx {
	struct spool_dir *d;
	bool json;
	int64_t now;
	struct row *rows;
	size_t n, cap;
	int rc;
};

static void
fill_row(struct row *r, const struct stream_view *v,
    const struct stream_check *chk, int64_t now)
{
	const struct spool_stream_info *i = &v->info;
	char a[SPOOL_ADDR_MAX * 4], b[SPOOL_ADDR_MAX * 4];

	memset(r, 0, sizeof(*r));
	if (v->status_ok)
		snprintf(r->cell[C_DROPS], sizeof(r->cell[0]), "%" PRIu64,
		    v->status.drops);
	else
		strlcpy(r->cell[C_DROPS], "-", sizeof(r->cell[0]));
	if (v->held)
		strlcpy(r->cell[C_CHECK], "live", sizeof(r->cell[0]));
	else if (chk->failed)
		strlcpy(r->cell[C_CHECK], "unreadable", sizeof(r->cell[0]));
	else if (chk->problems == 0)
		strlcpy(r->cell[C_CHECK], "ok", sizeof(r->cell[0]));
	else
		snprintf(r->cell[C_CHECK], sizeof(r->cell[0]), "%" PRIu64
		    " problem%s", chk->problems, chk->problems == 1 ? "" : "s");
	snprintf(r->cell[C_STREAM], sizeof(r->cell[0]), "%s", v->name);
	snprintf(r->cell[C_PID], sizeof(r->cell[0]), "%d", (int)v->pid);
	snprintf(r->cell[C_LIVE], sizeof(r->cell[0]), "%s",
	    v->alive ? "yes" : "no");
	snprintf(r->cell[C_FD], sizeof(r->cell[0]), "%d", (int)v->fd);
	if (v->info_ok && i->id_known)
		snprintf(r->cell[C_ADDR], sizeof(r->cell[0]), "%s -> %s",
		    vis_str(a, sizeof(a), i->id.local),
		    vis_str(b, sizeof(b), i->id.peer));
	else
		snprintf(r->cell[C_ADDR], sizeof(r->cell[0]), "?");
	snprintf(r->cell[C_STATE], sizeof(r->cell[0]), "%s", v->state);
	if (!v->info_ok) {
		int c;

		for (c = C_RECORDS; c <= C_SEGS; c++)
			strlcpy(r->cell[c], "-", sizeof(r->cell[0]));
		return;
	}
	snprintf(r->cell[C_RECORDS], sizeof(r->cell[0]), "%" PRIu64,
	    i->records);
	fmt_size(r->cell[C_RAW], i->raw_bytes);
	fmt_size(r->cell[C_DISK], i->stored_bytes);
	fmt_ratio(r->cell[C_RATIO], i->raw_bytes, i->stored_bytes);
	fmt_age(r->cell[C_OLDEST], i->records ? i->oldest_ts_ns : 0, now);
	fmt_age(r->cell[C_NEWEST], i->records ? i->newest_ts_ns : 0, now);
	snprintf(r->cell[C_SEGS], sizeof(r->cell[0]), "%" PRIu32, i->segments);
}

static void
print_json(const struct stream_view *v, const struct stream_check *chk)
{
	const struct spool_stream_info *i = &v->info;
	const struct spool_status *s = &v->status;

	printf("{\"stream\":");
	json_str(stdout, v->name, strlen(v->name));
	printf(",\"pid\":%d,\"alive\":%s,\"released\":%s,\"fd\":%d",
	    (int)v->pid, v->alive ? "true" : "false",
	    v->released ? "true" : "false", (int)v->fd);
	if (chk->failed || v->held)
		printf(",\"problems\":null");
	else
		printf(",\"problems\":%" PRIu64, chk->problems);
	printf(",\"state\":");
	json_str(stdout, v->word, strlen(v->word));
	printf(",\"why\":");
	json_str(stdout, v->why, strlen(v->why));
	if (v->info_ok && i->id_known) {
		printf(",\"local\":");
		json_str(stdout, i->id.local, strnlen(i->id.local,
		    SPOOL_ADDR_MAX));
		printf(",\"peer\":");
		json_str(stdout, i->id.peer, strnlen(i->id.peer,
		    SPOOL_ADDR_MAX));
		printf(",\"created_ns\":%" PRId64, i->id.created_ns);
	} else {
		printf(",\"local\":null,\"peer\":null,\"created_ns\":null");
	}
	if (v->info_ok) {
		printf(",\"records\":%" PRIu64 ",\"raw_bytes\":%" PRIu64
		    ",\"stored_bytes\":%" PRIu64 ",\"segments\":%" PRIu32
		    ",\"acked_seq\":%" PRIu64, i->records, i->raw_bytes,
		    i->stored_bytes, i->segments, i->acked_seq);
		if (i->stored_bytes > 0)
			printf(",\"ratio\":%.3f", (double)i->raw_bytes /
			    (double)i->stored_bytes);
		else
			printf(",\"ratio\":null");
		if (i->records > 0)
			printf(",\"oldest_ns\":%" PRId64 ",\"newest_ns\":%"
			    PRId64, i->oldest_ts_ns, i->newest_ts_ns);
		else
			printf(",\"oldest_ns\":null,\"newest_ns\":null");
		printf(",\"error\":null");
	} else {
		printf(",\"error\":");
		json_str(stdout, v->info_err, strlen(v->info_err));
	}
	if (v->status_ok)
		printf(",\"status\":{\"pending_bytes\":%" PRIu64
		    ",\"pending_records\":%" PRIu64 ",\"drops\":%" PRIu64
		    ",\"errors\":%" PRIu64 ",\"updated_ns\":%" PRId64
		    ",\"fresh\":%s}", s->pending_bytes, s->pending_records,
		    s->drops, s->errors, s->updated_ns,
		    v->fresh ? "true" : "false");
	else
		printf(",\"status\":null");
	printf("}\n");
}

/*
 * tcpspool daemon marks a stream it delivers for a dead writer with a
 * file "daemon" in its dir holding "pid=N" (FORMAT.md §10): the pid of a
 * running daemon makes the stream's state "daemon" (not an orphan: the
 * CLI keeps off it).
 */
static void
daemon_view(struct spool_dir *d, const char *name, struct stream_view *v)
{
	char path[SPOOL_NAME_MAX + 16], buf[64];
	const char *e;
	ssize_t n;
	long long pid;
	int fd;

	snprintf(path, sizeof(path), "%s/daemon", name);
	if ((fd = openat(spool_dir_fd(d), path, O_RDONLY | O_NOFOLLOW |
	    O_CLOEXEC | O_NONBLOCK)) < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 4 || strncmp(buf, "pid=", 4) != 0)
		return;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	pid = strtonum(buf + 4, 1, INT32_MAX, &e);
	if (e != NULL || (kill((pid_t)pid, 0) == -1 && errno == ESRCH))
		return;
	strlcpy(v->word, "daemon", sizeof(v->word));
	snprintf(v->why, sizeof(v->why), "tcpspool daemon (pid %lld) "
	    "delivers it", pid);
	snprintf(v->state, sizeof(v->state), "daemon (pid %lld)", pid);
	v->held = true;
}

static int
each_stream(void *arg, const char *name)
{
	struct ls_ctx *c = arg;
	struct stream_check chk;
	struct stream_view v;
	struct row *nr;

	stream_view_load(c->d, name, &v);
	if (v.gone)
		return 0;	/* delivered and removed since the listing */
	daemon_view(c->d, name, &v);
	/* A stream its writer holds is read by that writer as it delivers
	 * (a damaged frame makes it an orphan, checked here then), and its
	 * files change while we read: ls checks every frame of the others
	 * only, so that thousands of live streams list in well under a
	 * second. verify checks any stream's files now. */
	memset(&chk, 0, sizeof(chk));
	if (!v.held)
		stream_check(c->d, name, v.held, NULL, &chk);
	if (v.status_err[0] != '\0')
		warnx("%s", v.status_err);
	if (!v.info_ok) {
		warnx("%s", v.info_err);
		c->rc = EXIT_ERR;
	} else if (chk.failed)
		c->rc = EXIT_ERR;
	else if (chk.problems > 0) {
		warnx("%s: damaged, %" PRIu64 " problem%s (tcpspool verify "
		    "lists them); the first: %s", name, chk.problems,
		    chk.problems == 1 ? "" : "s", chk.first);
		if (c->rc == EXIT_OK)
			c->rc = EXIT_INTEGRITY;
	}
	if (c->json) {
		print_json(&v, &chk);
		return 0;
	}
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 16;
		if ((nr = reallocarray(c->rows, c->cap, sizeof(*nr))) == NULL) {
			warn("ls");
			return -1;
		}
		c->rows = nr;
	}
	fill_row(&c->rows[c->n++], &v, &chk, c->now);
	return 0;
}

static void
print_cell(const char *s, size_t w, bool left_aligned, bool last)
{
	if (last && left_aligned)
		printf("%s\n", s);
	else if (left_aligned)
		printf("%-*s", (int)w, s);
	else
		printf("%*s", (int)w, s);
	if (!last)
		printf("  ");
	else if (!left_aligned)
		printf("\n");
}

static void
print_table(const struct ls_ctx *c)
{
	size_t w[NCOLS], i, k;

	for (k = 0; k < NCOLS; k++) {
		w[k] = strlen(heads[k]);
		for (i = 0; i < c->n; i++)
			if (strlen(c->rows[i].cell[k]) > w[k])
				w[k] = strlen(c->rows[i].cell[k]);
	}
	for (k = 0; k < NCOLS; k++)
		print_cell(heads[k], w[k], left[k], k == NCOLS - 1);
	for (i = 0; i < c->n; i++)
		for (k = 0; k < NCOLS; k++)
			print_cell(c->rows[i].cell[k], w[k], left[k],
			    k == NCOLS - 1);
}

/* What outlives the streams: drops and errors of those that ended. */
static void
print_ledger(struct spool_dir *d)
{
	struct spool_err e = { "" };
	struct spool_ledger l;
	char age[16];
	int rc;

	if ((rc = spool_ledger_read(d, &l, &e)) < 0) {
		warnx("%s", e.msg[0] ? e.msg : spool_strerror(-rc));
		return;
	}
	if (l.streams == 0)
		return;
	printf("ended streams with drops or errors: %" PRIu64 " (%" PRIu64
	    " drops, %" PRIu64 " errors; last %s ago; %s/ledger)\n",
	    l.streams, l.drops, l.errors,
	    fmt_age(age, l.last_ns, now_realtime_ns()), spool_dir_path(d));
}

int
cmd_ls(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ls_ctx c = { .rc = EXIT_OK };
	const char *dir = NULL;
	bool missing;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "hjd:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'j':
			c.json = true;
			break;
		case 'd':
			dir = optarg;
			break;
		case 'h':
			return usage_exit(ls_usage, true);
		default:
			return usage_exit(ls_usage, false);
		}
	}
	if (optind < argc) {
		if (argc - optind > 1 || dir != NULL) {
			warnx("ls: give one DIR, either as --dir or as argument");
			return usage_exit(ls_usage, false);
		}
		dir = argv[optind];
	}
	if ((rc = cli_dir_open(dir, &c.d, &missing)) != EXIT_OK)
		return rc;
	if (missing)
		return EXIT_OK;	/* nothing was ever spooled there */
	c.now = now_realtime_ns();
	if ((rc = spool_dir_list(c.d, each_stream, &c)) != 0) {
		if (rc < 0)
			warnx("%s: %s", spool_dir_path(c.d), strerror(-rc));
		c.rc = EXIT_ERR;
	}
	if (!c.json && c.n > 0)
		print_table(&c);
	if (!c.json)
		print_ledger(c.d);
	free(c.rows);
	spool_dir_close(c.d);
	if (fflush(stdout) == EOF)
		return EXIT_ERR;
	return c.rc;
}
