/*
 * cmd_metrics.c — tcpspool metrics: a spool dir's figures in the Prometheus
 * text exposition format (version 0.0.4), on stdout or, with --textfile,
 * written atomically for node_exporter's textfile collector.
 *
 * Every figure is read the way `tcpspool ls` reads it (stream_view_load,
 * spool_stream_info, stream_check): pending figures are the records on
 * disk not yet acknowledged, as ls shows them. Names follow Prometheus'
 * conventions: a tcpspool_ prefix, base units (bytes, seconds), _total on
 * counters, _info for a series whose labels are the information. Every
 * series carries dir="<spool dir>", so several dirs may be exported side
 * by side; per-stream series carry stream="<name>" too. Label values read
 * from disk are made terminal-safe (strvis) and then escaped.
 *
 * Exit: 0 written; 1 the dir or a limit could not be read, or the output
 * could not be written (the message names the path and the cause; with
 * --textfile the previous file is then left as it was).
 */
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"

static const char metrics_usage[] =
    "usage: tcpspool metrics [DIR] [--dir DIR] [--textfile PATH]\n"
    "\n"
    "Prints the spool dir's figures in the Prometheus text format:\n"
    "per stream its pending bytes and records, stored bytes, oldest\n"
    "record's age, state, drops and errors, integrity problems; per dir the\n"
    "streams by state, the drops and errors of ended streams (the ledger),\n"
    "the file system's free space and the limits TCPSPOOL_MAX,\n"
    "TCPSPOOL_MAX_STREAM and TCPSPOOL_MIN_FREE as this command's environment\n"
    "sets them (give it the server's TCPSPOOL_ variables).\n"
    "\n"
    "  --textfile PATH  write to PATH atomically (a temporary file in the\n"
    "                   same dir, then rename), for node_exporter's textfile\n"
    "                   collector; PATH should end in .prom\n"
    "  --dir DIR        spool dir (default $TCPSPOOL_DIR or /var/tmp/tcpspool-UID)\n"
    "  -h, --help       this text\n"
    "\n"
    "exit: 0 written, 1 the dir, a limit or the output failed, 64 usage.\n";

/* States a stream is counted in (tcpspool_streams); any other word the
 * library publishes is counted as "other". */
static const char *const known_states[] = { "spooling", "draining",
	"lingering", "live", "orphan", "failed", "done", "unreadable",
	"waiting", "resumed" };
#define NSTATES (sizeof(known_states) / sizeof(known_states[0]))

struct m_stream {
	struct stream_view v;
	struct stream_check chk;
};

struct m_ctx {
	struct spool_dir *d;
	struct m_stream *s;
	size_t n, cap;
	int rc;
};

static int
collect(void *arg, const char *name)
{
	struct m_ctx *c = arg;
	struct m_stream *ns;

	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 16;
		if ((ns = reallocarray(c->s, c->cap, sizeof(*ns))) == NULL) {
			warn("%s: metrics", spool_dir_path(c->d));
			return -1;
		}
		c->s = ns;
	}
	ns = &c->s[c->n++];
	stream_view_load(c->d, name, &ns->v);
	if (ns->v.gone) {
		c->n--;		/* delivered and removed since the listing */
		return 0;
	}
	/* As ls: the frames of a stream its writer holds are its writer's
	 * to read; a scrape of thousands of live streams stays cheap. */
	memset(&ns->chk, 0, sizeof(ns->chk));
	if (!ns->v.held)
		stream_check(c->d, name, ns->v.held, NULL, &ns->chk);
	if (ns->v.status_err[0] != '\0')
		warnx("%s", ns->v.status_err);
	if (!ns->v.info_ok)
		warnx("%s", ns->v.info_err);
	return 0;
}

/* A label value: \, " and newline escaped, as the format requires. */
static void
label_value(FILE *f, const char *s)
{
	putc('"', f);
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			putc(*s, f);
	}
	putc('"', f);
}

static void
family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{dir="...",stream="..."  (the caller closes the braces). */
static void
series(FILE *f, const char *name, const char *dir, const char *stream)
{
	fprintf(f, "%s{dir=", name);
	label_value(f, dir);
	if (stream != NULL) {
		fputs(",stream=", f);
		label_value(f, stream);
	}
}

static void
sample_u64(FILE *f, const char *name, const char *dir, const char *stream,
    uint64_t v)
{
	series(f, name, dir, stream);
	fprintf(f, "} %" PRIu64 "\n", v);
}

/* Per-stream figures from the files, for readable streams. */
enum stream_fig { F_PENDING_BYTES, F_PENDING_RECORDS, F_STORED_BYTES,
	F_SEGMENTS };

static uint64_t
fig(const struct m_stream *s, enum stream_fig which)
{
	const struct spool_stream_info *i = &s->v.info;

	switch (which) {
	case F_PENDING_BYTES:
		return i->raw_bytes;
	case F_PENDING_RECORDS:
		return i->records;
	case F_STORED_BYTES:
		return i->stored_bytes;
	case F_SEGMENTS:
		return i->segments;
	}
	return 0;
}

static void
stream_figures(FILE *f, const struct m_ctx *c, const char *dir,
    enum stream_fig which, const char *name, const char *help)
{
	size_t k;

	family(f, name, "gauge", help);
	for (k = 0; k < c->n; k++)
		if (c->s[k].v.info_ok)
			sample_u64(f, name, dir, c->s[k].v.name,
			    fig(&c->s[k], which));
}

static void
print_streams(FILE *f, const struct m_ctx *c, const char *dir, int64_t now)
{
	char a[SPOOL_ADDR_MAX * 4], b[SPOOL_ADDR_MAX * 4];
	const struct m_stream *s;
	uint64_t count[NSTATES + 1] = { 0 };
	size_t k, j;

	stream_figures(f, c, dir, F_PENDING_BYTES, "tcpspool_pending_bytes",
	    "Raw bytes of a stream not yet delivered (acknowledged), as on "
	    "disk.");
	stream_figures(f, c, dir, F_PENDING_RECORDS, "tcpspool_pending_records",
	    "Records (write calls) of a stream not yet delivered.");
	stream_figures(f, c, dir, F_STORED_BYTES, "tcpspool_stored_bytes",
	    "Bytes of a stream's segment files on disk, headers included.");
	stream_figures(f, c, dir, F_SEGMENTS, "tcpspool_segments",
	    "Segment files of a stream.");

	family(f, "tcpspool_oldest_record_age_seconds", "gauge",
	    "Age of a stream's oldest pending record (absent when none is "
	    "pending).");
	for (k = 0; k < c->n; k++) {
		s = &c->s[k];
		if (!s->v.info_ok || s->v.info.records == 0)
			continue;
		series(f, "tcpspool_oldest_record_age_seconds", dir, s->v.name);
		fprintf(f, "} %.3f\n", now > s->v.info.oldest_ts_ns ?
		    (double)(now - s->v.info.oldest_ts_ns) / 1e9 : 0.0);
	}

	family(f, "tcpspool_stream_state", "gauge",
	    "1 for a stream's state: the writer's published state while its "
	    "process runs, else orphan (or unreadable).");
	for (k = 0; k < c->n; k++) {
		s = &c->s[k];
		series(f, "tcpspool_stream_state", dir, s->v.name);
		fputs(",state=", f);
		label_value(f, s->v.word);
		fputs("} 1\n", f);
		for (j = 0; j < NSTATES; j++)
			if (strcmp(s->v.word, known_states[j]) == 0)
				break;
		count[j]++;
	}

	family(f, "tcpspool_stream_info", "gauge",
	    "A stream's writer and connection, as labels (value 1).");
	for (k = 0; k < c->n; k++) {
		s = &c->s[k];
		series(f, "tcpspool_stream_info", dir, s->v.name);
		fprintf(f, ",pid=\"%d\",fd=\"%d\",alive=\"%d\",local=",
		    (int)s->v.pid, (int)s->v.fd, s->v.alive ? 1 : 0);
		label_value(f, s->v.info_ok && s->v.info.id_known ?
		    vis_str(a, sizeof(a), s->v.info.id.local) : "");
		fputs(",peer=", f);
		label_value(f, s->v.info_ok && s->v.info.id_known ?
		    vis_str(b, sizeof(b), s->v.info.id.peer) : "");
		fputs("} 1\n", f);
	}

	family(f, "tcpspool_dropped_writes_total", "counter",
	    "Writes the library dropped on a stream's connection (overflow "
	    "policy drop), as its writer last published.");
	for (k = 0; k < c->n; k++)
		if (c->s[k].v.status_ok)
			sample_u64(f, "tcpspool_dropped_writes_total", dir,
			    c->s[k].v.name, c->s[k].v.status.drops);
	family(f, "tcpspool_errors_total", "counter",
	    "Spool errors on a stream (disk full, quota, I/O), as its writer "
	    "last published.");
	for (k = 0; k < c->n; k++)
		if (c->s[k].v.status_ok)
			sample_u64(f, "tcpspool_errors_total", dir,
			    c->s[k].v.name, c->s[k].v.status.errors);
	family(f, "tcpspool_integrity_problems", "gauge",
	    "Problems tcpspool verify would report for a stream (0: intact); "
	    "absent when its files could not be scanned, or while its writer "
	    "holds it (it reads them as it delivers).");
	for (k = 0; k < c->n; k++)
		if (!c->s[k].chk.failed && !c->s[k].v.held)
			sample_u64(f, "tcpspool_integrity_problems", dir,
			    c->s[k].v.name, c->s[k].chk.problems);

	family(f, "tcpspool_streams", "gauge",
	    "Streams in the spool dir by state.");
	for (j = 0; j <= NSTATES; j++) {
		series(f, "tcpspool_streams", dir, NULL);
		fputs(",state=", f);
		label_value(f, j < NSTATES ? known_states[j] : "other");
		fprintf(f, "} %" PRIu64 "\n", count[j]);
	}
}

static int
print_dir(FILE *f, struct spool_dir *d, const char *dir)
{
	struct spool_err e = { "" };
	struct tcpspool_config *cfg;
	char cerr[CONFIG_MSG_MAX];
	struct spool_ledger l;
	struct statvfs vfs;
	extern char **environ;
	int rc = EXIT_OK, r;

	if ((r = spool_ledger_read(d, &l, &e)) < 0) {
		warnx("%s", e.msg[0] ? e.msg : spool_strerror(-r));
		rc = EXIT_ERR;
	} else {
		family(f, "tcpspool_ended_streams_total", "counter",
		    "Streams that ended with drops or errors (lines of the "
		    "dir's ledger).");
		sample_u64(f, "tcpspool_ended_streams_total", dir, NULL,
		    l.streams);
		family(f, "tcpspool_ended_dropped_writes_total", "counter",
		    "Writes dropped on streams that have ended (the ledger).");
		sample_u64(f, "tcpspool_ended_dropped_writes_total", dir, NULL,
		    l.drops);
		family(f, "tcpspool_ended_errors_total", "counter",
		    "Spool errors on streams that have ended (the ledger).");
		sample_u64(f, "tcpspool_ended_errors_total", dir, NULL,
		    l.errors);
	}

	if (fstatvfs(spool_dir_fd(d), &vfs) == -1) {
		warn("%s: statvfs", dir);
		rc = EXIT_ERR;
	} else {
		family(f, "tcpspool_filesystem_avail_bytes", "gauge",
		    "Bytes free for unprivileged users on the spool dir's file "
		    "system (what TCPSPOOL_MIN_FREE is checked against).");
		sample_u64(f, "tcpspool_filesystem_avail_bytes", dir, NULL,
		    (uint64_t)vfs.f_bavail * vfs.f_frsize);
		family(f, "tcpspool_filesystem_size_bytes", "gauge",
		    "Size of the spool dir's file system.");
		sample_u64(f, "tcpspool_filesystem_size_bytes", dir, NULL,
		    (uint64_t)vfs.f_blocks * vfs.f_frsize);
	}

	if ((cfg = malloc(sizeof(*cfg))) == NULL) {
		warn("%s: metrics", dir);
		return EXIT_ERR;
	}
	if (config_parse(cfg, environ, cerr, sizeof(cerr), NULL, 0) == -1) {
		warnx("%s", cerr);
		rc = EXIT_ERR;
	} else {
		family(f, "tcpspool_min_free_bytes", "gauge",
		    "TCPSPOOL_MIN_FREE: free bytes the library keeps on the "
		    "file system (it stops spooling below).");
		sample_u64(f, "tcpspool_min_free_bytes", dir, NULL,
		    cfg->min_free);
		family(f, "tcpspool_quota_bytes", "gauge",
		    "TCPSPOOL_MAX: bytes on disk the whole spool dir may hold.");
		sample_u64(f, "tcpspool_quota_bytes", dir, NULL,
		    cfg->max_total);
		family(f, "tcpspool_stream_quota_bytes", "gauge",
		    "TCPSPOOL_MAX_STREAM: pending bytes one stream may hold.");
		sample_u64(f, "tcpspool_stream_quota_bytes", dir, NULL,
		    cfg->max_stream);
	}
	free(cfg);
	return rc;
}

/* Writes everything to f; returns an exit code. */
static int
print_metrics(FILE *f, const char *given)
{
	struct m_ctx c = { .rc = EXIT_OK };
	char dir[PATH_MAX * 4];
	bool missing;
	int rc;

	if ((rc = cli_dir_open(given, &c.d, &missing)) != EXIT_OK)
		return rc;
	if (missing) {
		/* The default dir, never created: nothing was spooled. */
		if (!spool_dir_default(dir, sizeof(dir)))
			return EXIT_ERR;
		family(f, "tcpspool_streams", "gauge",
		    "Streams in the spool dir by state.");
		sample_u64(f, "tcpspool_streams", dir, NULL, 0);
		return EXIT_OK;
	}
	vis_str(dir, sizeof(dir), spool_dir_path(c.d));
	if ((rc = spool_dir_list(c.d, collect, &c)) != 0) {
		if (rc < 0)
			warnx("%s: %s", spool_dir_path(c.d), strerror(-rc));
		c.rc = EXIT_ERR;
	} else {
		print_streams(f, &c, dir, now_realtime_ns());
		c.rc = print_dir(f, c.d, dir);
	}
	free(c.s);
	spool_dir_close(c.d);
	return c.rc;
}

/*
 * PATH.<pid>.tmp in PATH's dir (the collector reads only *.prom), written,
 * synced, renamed onto PATH: a reader sees the old file or the new one.
 */
static int
write_textfile(const char *path, const char *given)
{
	char tmp[PATH_MAX];
	FILE *f;
	int fd, rc;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path,
	    (int)getpid()) >= sizeof(tmp)) {
		warnx("%s: path too long", path);
		return EXIT_ERR;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    0644);
	if (fd == -1) {
		warn("%s", tmp);
		return EXIT_ERR;
	}
	if ((f = fdopen(fd, "w")) == NULL) {
		warn("%s", tmp);
		close(fd);
		unlink(tmp);
		return EXIT_ERR;
	}
	rc = print_metrics(f, given);
	if (fflush(f) == EOF || ferror(f) || fsync(fd) == -1) {
		warn("%s", tmp);
		rc = EXIT_ERR;
	}
	if (fclose(f) == EOF && rc == EXIT_OK) {
		warn("%s", tmp);
		rc = EXIT_ERR;
	}
	/* Only a complete set replaces the last one: a dir that could not
	 * be read leaves the previous file (its age tells it is stale). */
	if (rc != EXIT_OK) {
		unlink(tmp);
		return rc;
	}
	if (rename(tmp, path) == -1) {
		warn("rename %s to %s", tmp, path);
		unlink(tmp);
		return EXIT_ERR;
	}
	return EXIT_OK;
}

int
cmd_metrics(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "textfile", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *textfile = NULL;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "hd:t:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			dir = optarg;
			break;
		case 't':
			textfile = optarg;
			break;
		case 'h':
			return usage_exit(metrics_usage, true);
		default:
			return usage_exit(metrics_usage, false);
		}
	}
	if (optind < argc) {
		if (argc - optind > 1 || dir != NULL) {
			warnx("metrics: give one DIR, either as --dir or as "
			    "argument");
			return usage_exit(metrics_usage, false);
		}
		dir = argv[optind];
	}
	if (textfile != NULL)
		return write_textfile(textfile, dir);
	rc = print_metrics(stdout, dir);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		warn("stdout");
		return EXIT_ERR;
	}
	return rc;
}
