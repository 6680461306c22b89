/*
 * common.c — what every subcommand needs: the spool dir, naming streams,
 * telling a live writer from an orphan, locking a stream against another
 * tcpspool command.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <ctype.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"

int
usage_exit(const char *text, bool asked)
{
	fputs(text, asked ? stdout : stderr);
	return asked ? EXIT_OK : EXIT_USAGE;
}

bool
spool_dir_default(char *buf, size_t len)
{
	const char *env = getenv("TCPSPOOL_DIR");
	struct tcpspool_config *c;
	size_t n;

	if (env != NULL && env[0] != '\0') {
		if (env[0] != '/') {
			warnx("TCPSPOOL_DIR=\"%s\": expected an absolute path",
			    env);
			return false;
		}
		if (strlcpy(buf, env, len) >= len) {
			warnx("TCPSPOOL_DIR: path too long");
			return false;
		}
		return true;
	}
	/* The library's own default, so both agree. */
	if ((c = malloc(sizeof(*c))) == NULL) {
		warn("spool dir");
		return false;
	}
	config_defaults(c);
	n = strlcpy(buf, c->dir, len);
	free(c);
	return n < len;
}

static bool dir_foreign;

bool
cli_dir_foreign(void)
{
	return dir_foreign;
}

int
cli_dir_writable(struct spool_dir *d)
{
	if (!dir_foreign)
		return EXIT_OK;
	warnx("%s: another user's spool dir is only read, never changed",
	    spool_dir_path(d));
	return EXIT_ERR;
}

int
cli_dir_open(const char *given, struct spool_dir **d, bool *missing)
{
	char path[PATH_MAX];
	struct spool_err e = { "" };
	struct stat st;
	size_t n;
	int rc;

	*d = NULL;
	if (missing != NULL)
		*missing = false;
	if (given == NULL) {
		if (!spool_dir_default(path, sizeof(path)))
			return EXIT_ERR;
	} else if (strlcpy(path, given, sizeof(path)) >= sizeof(path)) {
		warnx("%s: path too long", given);
		return EXIT_ERR;
	}
	/* "link/" would make lstat and O_NOFOLLOW follow the link. */
	for (n = strlen(path); n > 1 && path[n - 1] == '/'; n--)
		path[n - 1] = '\0';
	/* spool_dir_open creates a missing dir; inspecting never should. A
	 * missing default dir means nothing was spooled yet; a missing dir
	 * the operator named is a mistake worth a word. */
	if (lstat(path, &st) == -1) {
		if (errno == ENOENT && missing != NULL && given == NULL) {
			*missing = true;
			return EXIT_OK;
		}
		warn("%s", path);
		return EXIT_ERR;
	}
	if (!S_ISDIR(st.st_mode)) {
		warnx("%s: %s, not a spool dir", path,
		    S_ISLNK(st.st_mode) ? "a symlink" : "not a directory");
		return EXIT_ERR;
	}
	/* root may read another user's spool dir, never change it. */
	dir_foreign = geteuid() == 0 && st.st_uid != 0;
	if ((rc = spool_dir_inspect(path, dir_foreign, d, &e)) < 0) {
		warnx("%s", e.msg[0] ? e.msg : strerror(-rc));
		return EXIT_ERR;
	}
	if (dir_foreign)
		warnx("note: %s belongs to uid %u: read only", path,
		    (unsigned)st.st_uid);
	return EXIT_OK;
}

static bool
stream_name_ok(const char *s)
{
	size_t i;

	for (i = 0; i < 16; i++)
		if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
			return false;
	return s[16] == '\0';
}

bool
split_stream_path(const char *given, char *dir, size_t dirlen,
    char name[SPOOL_NAME_MAX])
{
	char buf[PATH_MAX], *slash;
	size_t n;

	if (strchr(given, '/') == NULL ||
	    strlcpy(buf, given, sizeof(buf)) >= sizeof(buf))
		return false;
	n = strlen(buf);
	while (n > 1 && buf[n - 1] == '/')
		buf[--n] = '\0';
	if ((slash = strrchr(buf, '/')) == NULL || !stream_name_ok(slash + 1))
		return false;
	strlcpy(name, slash + 1, SPOOL_NAME_MAX);
	if (slash == buf)
		slash++;	/* "/<stream>": the root is the spool dir */
	*slash = '\0';
	return strlcpy(dir, buf, dirlen) < dirlen;
}

int
stream_entry_check(struct spool_dir *d, const char *name)
{
	struct stat st;

	if (fstatat(spool_dir_fd(d), name, &st, AT_SYMLINK_NOFOLLOW) == -1) {
		warn("%s/%s", spool_dir_path(d), name);
		return EXIT_ERR;
	}
	if (!S_ISDIR(st.st_mode)) {
		warnx("%s/%s: %s, refused", spool_dir_path(d), name,
		    S_ISLNK(st.st_mode) ? "a symlink" : "not a directory");
		return EXIT_ERR;
	}
	return EXIT_OK;
}

int
cli_resolve(struct spool_dir *d, const char *given, char name[SPOOL_NAME_MAX])
{
	char dir[PATH_MAX], real_dir[PATH_MAX], real_spool[PATH_MAX];
	struct spool_err e = { "" };
	int rc;

	if (strchr(given, '/') != NULL) {
		if (!split_stream_path(given, dir, sizeof(dir), name)) {
			warnx("%s: not a stream (a stream dir is named by 16 hex "
			    "digits)", given);
			return EXIT_ERR;
		}
		if (realpath(dir, real_dir) == NULL ||
		    realpath(spool_dir_path(d), real_spool) == NULL ||
		    strcmp(real_dir, real_spool) != 0) {
			warnx("%s: not inside the spool dir %s, refused", given,
			    spool_dir_path(d));
			return EXIT_ERR;
		}
		return stream_entry_check(d, name);
	}
	if ((rc = spool_resolve(d, given, name, &e)) < 0) {
		warnx("%s", e.msg[0] ? e.msg : strerror(-rc));
		return EXIT_ERR;
	}
	return stream_entry_check(d, name);
}

int
cli_open_stream(const char *dir_opt, const char *given, struct spool_dir **d,
    char name[SPOOL_NAME_MAX])
{
	char dir[PATH_MAX];
	int rc;

	if (dir_opt == NULL && split_stream_path(given, dir, sizeof(dir), name))
		dir_opt = dir;
	if ((rc = cli_dir_open(dir_opt, d, NULL)) != EXIT_OK)
		return rc;
	if ((rc = cli_resolve(*d, given, name)) != EXIT_OK) {
		spool_dir_close(*d);
		*d = NULL;
	}
	return rc;
}

/* Boot time in ns (CLOCK_REALTIME), from /proc/stat; 0 if unknown. */
static int64_t
boot_time_ns(void)
{
	static int64_t cached = -1;
	char line[256];
	long long bt;
	FILE *f;

	if (cached >= 0)
		return cached;
	cached = 0;
	if ((f = fopen("/proc/stat", "re")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "btime %lld", &bt) == 1 && bt > 0) {
			cached = bt * 1000000000LL;
			break;
		}
	fclose(f);
	return cached;
}

/*
 * What /proc said of the last live pid asked about, for 100 ms: a spool dir's
 * thousands of streams are mostly one process's, and ls would read its
 * /proc entry once per stream.
 */
static struct {
	int32_t pid;
	int64_t at_ns;
	int64_t start_ns;	/* 0: unknown */
} last_proc;

static bool proc_alive_read(int32_t pid, int64_t *start_out);

bool
proc_alive(int32_t pid, int64_t created_ns)
{
	struct timespec ts;
	int64_t now, start = 0;
	bool alive;

	if (pid <= 0)
		return false;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
	if (last_proc.pid == pid && now - last_proc.at_ns < 100000000LL) {
		if (created_ns <= 0 || last_proc.start_ns == 0)
			return true;
		return last_proc.start_ns <= created_ns + 2000000000LL;
	}
	alive = proc_alive_read(pid, &start);
	/* Only a live answer is kept: a pid that died may be reused at once,
	 * and "dead" would let rm --orphans take a live stream. */
	last_proc.pid = alive ? pid : 0;
	last_proc.at_ns = now;
	last_proc.start_ns = start;
	if (!alive)
		return false;
	if (created_ns <= 0 || start == 0)
		return true;
	/* btime has 1 s resolution: allow 2 s of slack. */
	return start <= created_ns + 2000000000LL;
}

/* The pid is alive (not a zombie); *start_out its start time (0 unknown). */
static bool
proc_alive_read(int32_t pid, int64_t *start_out)
{
	char path[64], buf[1024], *p, state;
	unsigned long long start_ticks;
	int64_t boot, start_ns;
	long hz;
	ssize_t n;
	int fd, i;

	*start_out = 0;
	if (kill(pid, 0) == -1 && errno == ESRCH)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return errno != ENOENT;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return true;
	buf[n] = '\0';
	/* After the last ')' (the name may hold any byte): field 3, state. */
	if ((p = strrchr(buf, ')')) == NULL || sscanf(p + 1, " %c", &state) != 1)
		return true;
	if (state == 'Z' || state == 'X')
		return false;
	/* Field 22, starttime, is the 20th after the ')'. */
	for (p++, i = 0; i < 19 && p != NULL; i++)
		if ((p = strchr(p + 1, ' ')) == NULL)
			return true;
	if (sscanf(p, " %llu", &start_ticks) != 1 ||
	    (hz = sysconf(_SC_CLK_TCK)) <= 0 || (boot = boot_time_ns()) == 0)
		return true;
	start_ns = boot + (int64_t)(start_ticks / (unsigned long long)hz) *
	    1000000000LL + (int64_t)(start_ticks % (unsigned long long)hz) *
	    (1000000000LL / hz);
	*start_out = start_ns;
	return true;
}

void
stream_view_load(struct spool_dir *d, const char *name, struct stream_view *v)
{
	struct spool_err e = { "" };
	char st[32], reason[72];
	int64_t now = now_realtime_ns();
	bool quick;
	int rc;

	memset(v, 0, sizeof(*v));
	strlcpy(v->name, name, sizeof(v->name));
	rc = spool_status_read(d, name, &v->status, &e);
	v->status_ok = rc >= 0;
	if (rc < 0 && rc != -ENOENT)
		strlcpy(v->status_err, e.msg, sizeof(v->status_err));
	/* A stream whose running writer publishes its counts: its files'
	 * headers suffice, no frame is decoded (the counts are the
	 * writer's, below); confirmed once the segment header names it. */
	quick = v->status_ok && !v->status.released &&
	    proc_alive(v->status.pid, 0);
	e.msg[0] = '\0';
	rc = spool_stream_info_flags(d, name, quick ? SPOOL_INFO_QUICK : 0,
	    &v->info, &e);
	v->info_ok = rc >= 0;
	v->gone = rc == -ENOENT && !v->status_ok &&
	    faccessat(spool_dir_fd(d), name, F_OK, AT_SYMLINK_NOFOLLOW) == -1;
	if (!v->info_ok)
		snprintf(v->info_err, sizeof(v->info_err), "%s",
		    e.msg[0] ? e.msg : strerror(-rc));
	if (v->info_ok && v->info.id_known) {
		v->pid = v->info.id.pid;
		v->fd = v->info.id.fd;
	} else if (v->status_ok) {
		v->pid = v->status.pid;
		v->fd = v->status.fd;
	} else {
		v->fd = -1;
	}
	v->alive = proc_alive(v->pid, v->info_ok && v->info.id_known ?
	    v->info.id.created_ns : 0);
	/* Believed only from the writer's own status (FORMAT.md §7). */
	v->released = v->status_ok && v->status.released &&
	    v->status.pid == v->pid;
	v->held = v->alive && !v->released;
	if (quick && v->info_ok && (!v->held || !v->status_ok ||
	    v->status.pid != v->pid)) {
		/* Not the writer the status named: counted exactly. */
		rc = spool_stream_info(d, name, &v->info, &e);
		v->info_ok = rc >= 0;
		if (!v->info_ok)
			snprintf(v->info_err, sizeof(v->info_err), "%s",
			    e.msg[0] ? e.msg : strerror(-rc));
	} else if (quick && v->info_ok) {
		v->info.records = v->status.pending_records;
		v->info.raw_bytes = v->status.pending_bytes;
	}
	/* An idle status is written once: nothing changes until the peer
	 * reads (FORMAT.md §7); its age says nothing. */
	v->fresh = v->status_ok && (now - v->status.updated_ns <
	    STATUS_FRESH_NS || (v->status.idle && v->alive));
	vis_str(st, sizeof(st), v->status_ok ? v->status.state : "");
	vis_str(reason, sizeof(reason), v->status_ok ? v->status.reason : "");

	if (!v->info_ok) {
		strlcpy(v->word, "unreadable", sizeof(v->word));
	} else if (v->alive && v->released) {
		/* The library let go of it; its process still runs. */
		strlcpy(v->word, "orphan", sizeof(v->word));
		snprintf(v->why, sizeof(v->why), "%s%sreleased, process alive",
		    reason, reason[0] ? ", " : "");
	} else if (v->alive) {
		strlcpy(v->word, st[0] ? st : "live", sizeof(v->word));
		if (!v->status_ok)
			strlcpy(v->why, "no status", sizeof(v->why));
		else if (!v->fresh) {
			char age[16];

			snprintf(v->why, sizeof(v->why), "status %s old",
			    fmt_age(age, v->status.updated_ns, now));
		}
	} else {
		strlcpy(v->word, "orphan", sizeof(v->word));
		if (reason[0] != '\0')
			strlcpy(v->why, reason, sizeof(v->why));
		else if (st[0] && strcmp(st, "orphan") != 0)
			snprintf(v->why, sizeof(v->why),
			    "process gone while %s", st);
		else
			strlcpy(v->why, v->pid > 0 ? "process gone" :
			    "writer unknown", sizeof(v->why));
	}
	/* Released streams of TCPSPOOL_RESUME (FORMAT.md §11): waiting for
	 * their peer's next connection, or sent to it by a live process. */
	if (v->info_ok && v->released && !strcmp(st, "waiting")) {
		char peer[SPOOL_ADDR_MAX], *colon;

		strlcpy(peer, v->info.id_known ? v->info.id.peer : "?",
		    sizeof(peer));
		if ((colon = strrchr(peer, ':')) != NULL && colon != peer)
			*colon = '\0';
		strlcpy(v->word, "waiting", sizeof(v->word));
		snprintf(v->why, sizeof(v->why), "for peer %.64s%s%.64s", peer,
		    reason[0] ? ", " : "", reason);
	} else if (v->info_ok && v->released && v->status.holder > 0 &&
	    proc_alive(v->status.holder, 0)) {
		strlcpy(v->word, "resumed", sizeof(v->word));
		snprintf(v->why, sizeof(v->why), "%s", reason);
		v->held = true;
	}
	/* An orphan that expires (TCPSPOOL_ORPHANS=expire), a stream that
	 * waits for its peer (TCPSPOOL_RESUME): its time left. */
	if ((!strcmp(v->word, "orphan") || !strcmp(v->word, "waiting")) &&
	    v->status_ok &&
	    v->status.released && v->status.expires_ns > 0) {
		char left[16];
		size_t n = strlen(v->why);

		if (v->status.expires_ns > now)
			snprintf(v->why + n, sizeof(v->why) - n, "%sexpires in %s",
			    n ? ", " : "", fmt_age(left, now,
			    v->status.expires_ns));
		else
			snprintf(v->why + n, sizeof(v->why) - n, "%sexpired",
			    n ? ", " : "");
	}
	if (v->why[0] != '\0')
		snprintf(v->state, sizeof(v->state), "%s (%s)", v->word, v->why);
	else
		strlcpy(v->state, v->word, sizeof(v->state));
}

int
stream_lock(struct spool_dir *d, const char *name)
{
	struct spool_err e = { "" };
	int fd;

	if ((fd = spool_stream_lock(d, name, 0, &e)) < 0) {
		warnx("%s", e.msg);
		return -1;
	}
	return fd;
}

const char *
codec_name(char buf[24], uint32_t codec)
{
	if (codec == 0)
		return "stored";
	if (codec == 1)
		return "deflate";
	snprintf(buf, 24, "codec %u", (unsigned)codec);
	return buf;
}

const char *
problem_name(enum spool_problem_kind k)
{
	switch (k) {
	case SPOOL_PROBLEM_TORN_TAIL:
		return "torn tail";
	case SPOOL_PROBLEM_CORRUPT_FRAME:
		return "corrupt frame";
	case SPOOL_PROBLEM_BAD_HEADER:
		return "bad segment header";
	case SPOOL_PROBLEM_BAD_FOOTER:
		return "bad footer";
	case SPOOL_PROBLEM_SEQ_GAP:
		return "sequence gap";
	case SPOOL_PROBLEM_IO:
		return "I/O error";
	case SPOOL_PROBLEM_SEQ_REPEAT:
		return "repeated records";
	case SPOOL_PROBLEM_PROGRESS:
		return "impossible progress";
	}
	return "problem";
}

bool
print_problem(FILE *f, struct spool_dir *d, const char *name,
    const struct spool_problem *p, bool writer_holds)
{
	char file[sizeof(p->file) * 4], msg[sizeof(p->msg) * 4], recs[80];
	bool note = writer_holds && p->kind == SPOOL_PROBLEM_TORN_TAIL;
	const char *what;

	vis_str(file, sizeof(file), p->file);
	/* The spool's message repeats "path: offset O, L bytes: "; keep
	 * only what follows, the location is printed here. */
	what = strstr(p->msg, " bytes: ");
	vis_str(msg, sizeof(msg), what != NULL ? what + 8 : p->msg);
	if (p->seq_known && p->last_seq >= p->first_seq)
		snprintf(recs, sizeof(recs), "records %llu..%llu (%llu)",
		    (unsigned long long)p->first_seq,
		    (unsigned long long)p->last_seq,
		    (unsigned long long)(p->last_seq - p->first_seq + 1));
	else
		strlcpy(recs, "records unknown", sizeof(recs));
	fprintf(f, "%s%s/%s/%s: offset %llu, %llu bytes: %s, %s%s%s%s\n",
	    note ? "note: " : "", spool_dir_path(d), name, file,
	    (unsigned long long)p->offset, (unsigned long long)p->length,
	    problem_name(p->kind), recs, msg[0] ? ": " : "", msg,
	    note ? " (the writer is alive: likely a frame being written)" : "");
	return !note;
}

struct check_ctx {
	struct spool_dir *d;
	const char *name;
	bool held;
	FILE *f;
	struct stream_check *c;
};

static int
check_segment(void *arg, const struct spool_segment_info *si)
{
	((struct check_ctx *)arg)->c->segments++;
	return 0;
}

static int
check_frame(void *arg, const struct spool_frame_info *fi)
{
	struct check_ctx *x = arg;

	x->c->frames++;
	if (fi->valid)
		x->c->records += fi->count;
	return 0;
}

static int
check_problem(void *arg, const struct spool_problem *p)
{
	struct check_ctx *x = arg;
	bool counted;

	if (x->f != NULL)
		counted = print_problem(x->f, x->d, x->name, p, x->held);
	else
		counted = !(x->held && p->kind == SPOOL_PROBLEM_TORN_TAIL);
	if (counted && x->c->problems == 0) {
		FILE *m = fmemopen(x->c->first, sizeof(x->c->first), "w");

		if (m != NULL) {
			print_problem(m, x->d, x->name, p, x->held);
			fclose(m);
			x->c->first[strcspn(x->c->first, "\n")] = '\0';
		}
	}
	if (counted) {
		x->c->problems++;
		if (p->kind == SPOOL_PROBLEM_TORN_TAIL)
			x->c->torn++;
	}
	return 0;
}

void
stream_check(struct spool_dir *d, const char *name, bool held, FILE *f,
    struct stream_check *c)
{
	static const struct spool_scan_ops ops = { check_segment, check_frame,
		check_problem };
	struct check_ctx x = { d, name, held, f, c };
	struct spool_err e = { "" };
	int rc;

	memset(c, 0, sizeof(*c));
	if ((rc = spool_scan(d, name, &ops, &x, &e)) < 0) {
		warnx("%s/%s: %s", spool_dir_path(d), name,
		    e.msg[0] ? e.msg : spool_strerror(-rc));
		c->failed = true;
	}
}

bool
parse_port(const char *s, uint16_t *port)
{
	uint64_t v;

	if (!parse_u64(s, 65535, &v) || v == 0)
		return false;
	*port = (uint16_t)v;
	return true;
}
