/*
 * cmd_rm.c — tcpspool rm: deletes streams, named, every orphan, or every
 * orphan whose expiry passed (spool_dir_expire, as the library). Acts
 * only on real stream dirs inside the spool dir (never through a symlink),
 * and never on a stream its writer still holds (its process runs and has
 * not released it, FORMAT.md §7).
 */
#include <sys/stat.h>

#include <err.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char rm_usage[] =
    "usage: tcpspool rm [--dir DIR] [-n] STREAM...\n"
    "       tcpspool rm [--dir DIR] [-n] --orphans [--older-than DURATION]\n"
    "       tcpspool rm [--dir DIR] [-n] --expired\n"
    "\n"
    "Deletes streams and everything in them: the streams named, or with\n"
    "--orphans every orphan stream: its writer process is gone, or it\n"
    "released the stream (the library lets go of a stream whose peer\n"
    "reset). A stream its writer still holds is never deleted. Prints\n"
    "\"removed STREAM\" for each.\n"
    "\n"
    "  --orphans              every orphan stream of the spool dir\n"
    "  --expired              every orphan whose expiry has passed (the\n"
    "                         library gives one to a stream whose peer went\n"
    "                         away, TCPSPOOL_ORPHANS=expire, and removes it\n"
    "                         itself within a minute of it), and\n"
    "                         STREAM.new dirs an hour old (a crash while a\n"
    "                         stream was made)\n"
    "  --older-than DURATION  with --orphans: only those idle for longer\n"
    "                         (last record, status or creation; DURATION\n"
    "                         is digits with ms, s, m, h or d)\n"
    "  -n, --dry-run          print what would be removed, remove nothing\n"
    "  --dir DIR              spool dir (default $TCPSPOOL_DIR or\n"
    "                         /var/tmp/tcpspool-UID)\n"
    "  -h, --help             this text\n"
    "\n"
    "exit: 0 ok, 1 a stream could not be removed, 64 usage.\n";

struct rm_ctx {
	struct spool_dir *d;
	bool dry;
	bool orphans;
	uint64_t older_ms;	/* 0: any age */
	int64_t now;
	int rc;
};

/* The last sign of life of a stream, CLOCK_REALTIME ns. */
static int64_t
last_activity(struct spool_dir *d, const struct stream_view *v)
{
	struct stat st;
	int64_t t = 0;

	if (v->info_ok && v->info.records > 0 && v->info.newest_ts_ns > t)
		t = v->info.newest_ts_ns;
	if (v->status_ok && v->status.updated_ns > t)
		t = v->status.updated_ns;
	if (v->info_ok && v->info.id_known && v->info.id.created_ns > t)
		t = v->info.id.created_ns;
	if (fstatat(spool_dir_fd(d), v->name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec > t)
		t = (int64_t)st.st_mtim.tv_sec * 1000000000LL +
		    st.st_mtim.tv_nsec;
	return t;
}

static int
remove_one(struct rm_ctx *c, const char *name)
{
	struct spool_err e = { "" };
	struct stream_view v;
	int lock, rc;

	if (stream_entry_check(c->d, name) != EXIT_OK)
		return EXIT_ERR;
	stream_view_load(c->d, name, &v);
	if (v.held) {
		if (c->orphans)
			return EXIT_OK;
		warnx("%s: its writer (pid %d) is running; not removed", name,
		    (int)v.pid);
		return EXIT_ERR;
	}
	if (c->older_ms > 0 && c->now - last_activity(c->d, &v) <
	    (int64_t)(c->older_ms > INT64_MAX / 1000000 ? INT64_MAX :
	    c->older_ms * 1000000))
		return EXIT_OK;
	if (c->dry) {
		printf("would remove %s (%s)\n", name, v.state);
		return EXIT_OK;
	}
	if (cli_dir_writable(c->d) != EXIT_OK ||
	    (lock = stream_lock(c->d, name)) < 0)
		return EXIT_ERR;
	rc = spool_stream_remove(c->d, name, &e);
	close(lock);
	if (rc < 0) {
		warnx("%s", e.msg[0] ? e.msg : strerror(-rc));
		return EXIT_ERR;
	}
	printf("removed %s\n", name);
	return EXIT_OK;
}

static void
each_expired(void *arg, const struct spool_expired *x)
{
	struct rm_ctx *c = arg;

	if (c->dry)
		printf("would remove %s (expired)\n", x->name);
	else if (x->removed)
		printf("removed %s\n", x->name);
	else if (x->busy)	/* not a failure: it goes next time */
		warnx("%s: in use (a replay or verify); left for now",
		    x->name);
	else if (x->err[0] != '\0') {
		warnx("%s: %s", x->name, x->err);
		c->rc = EXIT_ERR;
	}
}

static int
remove_expired(struct rm_ctx *c, const char *dir)
{
	bool missing;
	int rc;

	if ((rc = cli_dir_open(dir, &c->d, &missing)) != EXIT_OK)
		return rc;
	if (c->d == NULL)
		return EXIT_OK;	/* default dir: nothing yet */
	if (!c->dry && cli_dir_writable(c->d) != EXIT_OK) {
		spool_dir_close(c->d);
		return EXIT_ERR;
	}
	if ((rc = spool_dir_expire(c->d, c->now, c->dry ?
	    SPOOL_EXPIRE_DRY_RUN : 0, each_expired, c)) < 0) {
		warnx("%s: %s", spool_dir_path(c->d), strerror(-rc));
		c->rc = EXIT_ERR;
	}
	spool_dir_close(c->d);
	return c->rc;
}

static int
each_stream(void *arg, const char *name)
{
	struct rm_ctx *c = arg;

	if (remove_one(c, name) != EXIT_OK)
		c->rc = EXIT_ERR;
	return 0;
}

int
cmd_rm(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "orphans", no_argument, NULL, 'o' },
		{ "expired", no_argument, NULL, 'E' },
		{ "older-than", required_argument, NULL, 'O' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct rm_ctx c = { .rc = EXIT_OK };
	char name[SPOOL_NAME_MAX];
	const char *dir = NULL;
	bool missing, aged = false, expired = false;
	int ch, rc, i;

	while ((ch = getopt_long(argc, argv, "hnd:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'o':
			c.orphans = true;
			break;
		case 'E':
			expired = true;
			break;
		case 'O':
			if (!parse_age_ms(optarg, &c.older_ms)) {
				warnx("--older-than \"%s\": expected a duration "
				    "like 2h or 7d", optarg);
				return EXIT_USAGE;
			}
			aged = true;
			break;
		case 'n':
			c.dry = true;
			break;
		case 'd':
			dir = optarg;
			break;
		case 'h':
			return usage_exit(rm_usage, true);
		default:
			return usage_exit(rm_usage, false);
		}
	}
	if (expired) {
		if (c.orphans || aged || optind < argc)
			return usage_exit(rm_usage, false);
		c.now = now_realtime_ns();
		return remove_expired(&c, dir);
	}
	if (c.orphans == (optind < argc) || (aged && !c.orphans))
		return usage_exit(rm_usage, false);
	c.now = now_realtime_ns();
	if (c.orphans) {
		if ((rc = cli_dir_open(dir, &c.d, &missing)) != EXIT_OK)
			return rc;
		if (c.d == NULL)
			return EXIT_OK;	/* default dir: nothing yet */
		if ((rc = spool_dir_list(c.d, each_stream, &c)) < 0) {
			warnx("%s: %s", spool_dir_path(c.d), strerror(-rc));
			c.rc = EXIT_ERR;
		}
		spool_dir_close(c.d);
		return c.rc;
	}
	for (i = optind; i < argc; i++) {
		if (cli_open_stream(dir, argv[i], &c.d, name) != EXIT_OK) {
			c.rc = EXIT_ERR;
			continue;
		}
		if (remove_one(&c, name) != EXIT_OK)
			c.rc = EXIT_ERR;
		spool_dir_close(c.d);
	}
	return c.rc;
}
