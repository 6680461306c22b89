/*
 * cmd_verify.c — tcpspool verify: checks every checksum and the sequence
 * continuity of one stream or of a whole spool dir, reports each problem
 * with its file, offset and records, and with --repair truncates torn
 * tails of streams whose writer is gone. Exit codes as rsyslog's segqueue
 * tool: 0 clean, 1 error, 2 integrity problems.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <err.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char verify_usage[] =
    "usage: tcpspool verify [STREAM|DIR] [--repair] [--dir DIR]\n"
    "\n"
    "Checks every segment header, frame checksum, payload and footer, the\n"
    "continuity of record sequence numbers and the progress file, of one\n"
    "stream or of every stream in a spool dir (default: the spool dir).\n"
    "Each problem is printed as\n"
    "  DIR/STREAM/FILE: offset O, L bytes: KIND, records A..B (N): detail\n"
    "KIND is torn tail, corrupt frame, bad segment header, bad footer,\n"
    "sequence gap, repeated records, impossible progress or I/O error\n"
    "(a file that is not a regular file, a FIFO, is one). A torn tail\n"
    "while the writer still holds the stream is most likely a frame being\n"
    "written: it is printed as a note and not counted. replay, dump and ls\n"
    "judge a stream by the same rules. Then one line per stream:\n"
    "\"STREAM: ok ...\" or \"STREAM: N problems\".\n"
    "\n"
    "  --repair     truncate torn tails (the incomplete frame at the end of\n"
    "               an .open segment) of orphan streams (writer gone, or\n"
    "               released); corrupt frames in the middle are left for\n"
    "               readers to skip\n"
    "  --dir DIR    spool dir (default $TCPSPOOL_DIR or /var/tmp/tcpspool-UID)\n"
    "  -h, --help   this text\n"
    "\n"
    "exit: 0 clean (after repairs, if any), 1 error, 2 integrity problems,\n"
    "64 usage.\n";

/* Verifies (and repairs) one stream; returns its exit code. */
static int
verify_stream(struct spool_dir *d, const char *name, bool repair)
{
	struct spool_err e = { "" };
	struct stream_check c;
	struct stream_view v;
	int64_t cut;
	int lock;

	stream_view_load(d, name, &v);
	stream_check(d, name, v.held, stdout, &c);
	if (c.failed)
		return EXIT_ERR;
	if (repair && c.torn > 0) {
		if (v.held) {
			printf("%s: not repaired: its writer (pid %d) is "
			    "running\n", name, (int)v.pid);
		} else if (cli_dir_writable(d) != EXIT_OK ||
		    (lock = stream_lock(d, name)) < 0) {
			return EXIT_ERR;
		} else {
			cut = spool_repair(d, name, &e);
			close(lock);
			if (cut < 0) {
				warnx("%s/%s: repair: %s", spool_dir_path(d),
				    name, e.msg[0] ? e.msg :
				    spool_strerror((int)-cut));
				return EXIT_ERR;
			}
			printf("%s: repaired: cut %" PRId64 " bytes of torn "
			    "tail\n", name, cut);
			stream_check(d, name, v.held, NULL, &c);
			if (c.failed)
				return EXIT_ERR;
		}
	}
	if (c.problems == 0) {
		printf("%s: ok, %" PRIu64 " segments, %" PRIu64 " frames, %"
		    PRIu64 " records\n", name, c.segments, c.frames, c.records);
		return EXIT_OK;
	}
	printf("%s: %" PRIu64 " problem%s\n", name, c.problems,
	    c.problems == 1 ? "" : "s");
	return EXIT_INTEGRITY;
}

struct all_ctx {
	bool repair;
	struct spool_dir *d;
	int rc;
	unsigned streams;
};

static int
each_stream(void *arg, const char *name)
{
	struct all_ctx *a = arg;
	int rc = verify_stream(a->d, name, a->repair);

	a->streams++;
	if (rc == EXIT_ERR || (rc == EXIT_INTEGRITY && a->rc == EXIT_OK))
		a->rc = rc;
	return 0;
}

static bool
is_dir(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A bare word of hex digits is a stream name or prefix. */
static bool
looks_like_stream(const char *s)
{
	char dir[PATH_MAX], name[SPOOL_NAME_MAX];

	if (split_stream_path(s, dir, sizeof(dir), name))
		return true;
	if (strchr(s, '/') != NULL || *s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (!isdigit((unsigned char)*s) && !(*s >= 'a' && *s <= 'f'))
			return false;
	return true;
}

int
cmd_verify(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "repair", no_argument, NULL, 'r' },
		{ "dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct all_ctx a = { .rc = EXIT_OK };
	char name[SPOOL_NAME_MAX];
	const char *dir = NULL, *target = NULL;
	bool missing;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "hd:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'r':
			a.repair = true;
			break;
		case 'd':
			dir = optarg;
			break;
		case 'h':
			return usage_exit(verify_usage, true);
		default:
			return usage_exit(verify_usage, false);
		}
	}
	if (argc - optind > 1)
		return usage_exit(verify_usage, false);
	if (argc - optind == 1)
		target = argv[optind];

	/* A path that is no stream is a spool dir: a missing one is named
	 * as given, never confused with the default dir. */
	if (target != NULL && (looks_like_stream(target) ||
	    (strchr(target, '/') == NULL && !is_dir(target)))) {
		if ((rc = cli_open_stream(dir, target, &a.d, name)) != EXIT_OK)
			return rc;
		rc = verify_stream(a.d, name, a.repair);
		spool_dir_close(a.d);
		return fflush(stdout) == EOF ? EXIT_ERR : rc;
	}
	if (target != NULL) {
		if (dir != NULL) {
			warnx("verify: give one DIR, either as --dir or as "
			    "argument");
			return usage_exit(verify_usage, false);
		}
		dir = target;
	}
	if ((rc = cli_dir_open(dir, &a.d, &missing)) != EXIT_OK)
		return rc;
	if (a.d == NULL)
		return EXIT_OK;	/* no spool dir yet: nothing to verify */
	if ((rc = spool_dir_list(a.d, each_stream, &a)) < 0) {
		warnx("%s: %s", spool_dir_path(a.d), strerror(-rc));
		a.rc = EXIT_ERR;
	}
	spool_dir_close(a.d);
	return fflush(stdout) == EOF ? EXIT_ERR : a.rc;
}
