/*
 * cmd_top.c — tcpspool top: the streams of a spool dir, redrawn every
 * interval, the largest backlog first, with each stream's drain rate and
 * when it will be empty at that rate.
 *
 * On a terminal it takes the alternate screen, redraws in place, fits the
 * rows to the window and quits on q (or SIGINT/SIGTERM), giving the
 * terminal back as it found it. When stdout is no terminal it prints one
 * plain table per interval, each after a header line and followed by a
 * blank line, for a log or a pipe.
 *
 * The drain rate is the change of a stream's pending bytes between two
 * samples (bytes per second, smoothed: half the new interval's rate plus
 * half the previous estimate). Pending bytes are read as `tcpspool ls`
 * reads them (records on disk not yet acknowledged), so a stream that
 * spools grows by frames (every TCPSPOOL_FLUSH at most) and drains by
 * acknowledgements.
 */
#include <sys/ioctl.h>

#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static const char top_usage[] =
    "usage: tcpspool top [DIR] [--dir DIR] [--interval DURATION] [--count N]\n"
    "\n"
    "Shows the streams of a spool dir, redrawn every interval, the largest\n"
    "backlog first:\n"
    "  STREAM, PID, STATE   as tcpspool ls shows them\n"
    "  PENDING, RECORDS     bytes and records not yet delivered\n"
    "  OLDEST               age of the oldest pending record\n"
    "  DRAIN/s              bytes delivered per second since the last\n"
    "                       sample (smoothed); negative while it grows\n"
    "  ETA                  when it will be empty at that rate (\"growing\",\n"
    "                       \"stalled\", or \"-\" before a second sample)\n"
    "  PEER                 the connection's peer\n"
    "On a terminal the view is redrawn in place; q quits. Otherwise one\n"
    "plain table is printed per interval.\n"
    "\n"
    "  --interval DURATION  time between samples: digits with ms, s, m\n"
    "                       (bare digits are ms); default 1s, at least 100ms\n"
    "  --count N            stop after N samples (default: until q or a\n"
    "                       signal)\n"
    "  --dir DIR            spool dir (default $TCPSPOOL_DIR or\n"
    "                       /var/tmp/tcpspool-UID)\n"
    "  -h, --help           this text\n"
    "\n"
    "exit: 0 ok, 1 the dir could not be read, 64 usage.\n";

/* One stream as sampled, and what the samples before it taught. */
struct t_row {
	char name[SPOOL_NAME_MAX];
	int32_t pid;
	char state[32];
	char peer[48];
	uint64_t pending, records;
	int64_t oldest_ns;
	bool rate_known;
	double rate;		/* bytes/s delivered; < 0 while growing */
};

struct t_sample {
	struct t_row *rows;
	size_t n, cap;
	int64_t at_ns;		/* CLOCK_MONOTONIC */
};

struct top_ctx {
	struct spool_dir *d;
	struct t_sample prev, cur;
	bool screen;		/* stdout is a terminal: redraw in place */
	bool keys;		/* stdin is a terminal: q quits */
	int rc;
};

static volatile sig_atomic_t stop_signal, resized;

static void
on_stop(int sig)
{
	stop_signal = sig;
}

static void
on_winch(int sig)
{
	resized = 1;
}

static int64_t
now_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(((const struct t_row *)a)->name,
	    ((const struct t_row *)b)->name);
}

static int
by_pending(const void *a, const void *b)
{
	const struct t_row *x = a, *y = b;

	if (x->pending != y->pending)
		return x->pending < y->pending ? 1 : -1;
	return strcmp(x->name, y->name);
}

static int
sample_one(void *arg, const char *name)
{
	struct top_ctx *c = arg;
	struct t_sample *s = &c->cur;
	struct stream_view v;
	struct t_row *r;

	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 16;
		if ((r = reallocarray(s->rows, s->cap, sizeof(*r))) == NULL) {
			warn("%s: top", spool_dir_path(c->d));
			return -1;
		}
		s->rows = r;
	}
	stream_view_load(c->d, name, &v);
	r = &s->rows[s->n++];
	memset(r, 0, sizeof(*r));
	strlcpy(r->name, name, sizeof(r->name));
	r->pid = v.pid;
	strlcpy(r->state, v.word, sizeof(r->state));
	if (v.info_ok && v.info.id_known)
		vis_str(r->peer, sizeof(r->peer), v.info.id.peer);
	else
		strlcpy(r->peer, "?", sizeof(r->peer));
	if (v.info_ok) {
		r->pending = v.info.raw_bytes;
		r->records = v.info.records;
		r->oldest_ns = v.info.records ? v.info.oldest_ts_ns : 0;
	}
	return 0;
}

/* Rates from the previous sample (both sorted by name). */
static void
rates(struct top_ctx *c)
{
	struct t_sample *cur = &c->cur, *prev = &c->prev;
	double dt = (double)(cur->at_ns - prev->at_ns) / 1e9, r;
	struct t_row *p;
	size_t i;

	if (prev->at_ns == 0 || dt <= 0)
		return;
	for (i = 0; i < cur->n; i++) {
		p = bsearch(&cur->rows[i], prev->rows, prev->n,
		    sizeof(*prev->rows), by_name);
		if (p == NULL)
			continue;
		r = ((double)p->pending - (double)cur->rows[i].pending) / dt;
		cur->rows[i].rate = p->rate_known ? (r + p->rate) / 2 : r;
		cur->rows[i].rate_known = true;
	}
}

/* Takes a sample into c->cur (sorted by name). Returns an exit code. */
static int
sample(struct top_ctx *c)
{
	int rc;

	c->cur.n = 0;
	c->cur.at_ns = now_mono_ns();
	if ((rc = spool_dir_list(c->d, sample_one, c)) != 0) {
		if (rc < 0)
			warnx("%s: %s", spool_dir_path(c->d), strerror(-rc));
		return EXIT_ERR;
	}
	qsort(c->cur.rows, c->cur.n, sizeof(*c->cur.rows), by_name);
	rates(c);
	return EXIT_OK;
}

static const char *
fmt_rate(char buf[24], const struct t_row *r)
{
	char n[16];

	if (!r->rate_known)
		return "-";
	if (r->rate >= -0.5 && r->rate <= 0.5)
		return "0";
	fmt_size(n, (uint64_t)(r->rate < 0 ? -r->rate : r->rate));
	snprintf(buf, 24, "%s%s", r->rate < 0 ? "-" : "", n);
	return buf;
}

static const char *
fmt_eta(char buf[16], const struct t_row *r)
{
	int64_t now = now_realtime_ns();

	if (r->pending == 0)
		return "empty";
	if (!r->rate_known)
		return "-";
	if (r->rate < -0.5)
		return "growing";
	if (r->rate <= 0.5)
		return "stalled";
	/* fmt_age shows now - ts: an ETA of s seconds is a "ts" s ago. */
	return fmt_age(buf, now - (int64_t)((double)r->pending / r->rate *
	    1e9) - 1, now);
}

/* One line, cut to cols (0: no limit), then a newline. */
static void
line(int cols, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
line(int cols, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (cols > 0 && strlen(buf) > (size_t)cols)
		buf[cols] = '\0';
	/* On a terminal, clear what a longer line left there. */
	printf("%s%s\n", buf, cols > 0 ? "\033[K" : "");
}

#define ROW_FMT "%-16s %8s %-10s %7s %8s %6s %8s %8s  %s"

static void
draw(struct top_ctx *c, struct t_sample *s)
{
	char when[40], pend[16], oldest[16], rate[24], eta[16], pid[16];
	char recs[24], dir[PATH_MAX];
	struct winsize ws = { 0 };
	uint64_t total = 0;
	int64_t oldest_ns = 0, now = now_realtime_ns();
	int cols = 0, room = INT_MAX;
	time_t t = time(NULL);
	struct tm tm;
	size_t i;

	qsort(s->rows, s->n, sizeof(*s->rows), by_pending);
	for (i = 0; i < s->n; i++) {
		total += s->rows[i].pending;
		if (s->rows[i].oldest_ns != 0 && (oldest_ns == 0 ||
		    s->rows[i].oldest_ns < oldest_ns))
			oldest_ns = s->rows[i].oldest_ns;
	}
	if (c->screen) {
		if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 &&
		    ws.ws_col > 0) {
			cols = ws.ws_col;
			room = ws.ws_row > 3 ? ws.ws_row - 3 : 1;
		}
		fputs("\033[H", stdout);
	}
	localtime_r(&t, &tm);
	strftime(when, sizeof(when), "%H:%M:%S", &tm);
	vis_str(dir, sizeof(dir), spool_dir_path(c->d));
	line(cols, "tcpspool top  %s  %s  %zu stream%s, %s pending, oldest %s%s",
	    dir, when, s->n, s->n == 1 ? "" : "s", fmt_size(pend, total),
	    fmt_age(oldest, oldest_ns, now), c->keys ? "  (q quits)" : "");
	line(cols, "%s", "");
	line(cols, ROW_FMT, "STREAM", "PID", "STATE", "PENDING", "RECORDS",
	    "OLDEST", "DRAIN/s", "ETA", "PEER");
	for (i = 0; i < s->n && (int)i < room; i++) {
		const struct t_row *r = &s->rows[i];

		snprintf(pid, sizeof(pid), "%d", (int)r->pid);
		snprintf(recs, sizeof(recs), "%" PRIu64, r->records);
		line(cols, ROW_FMT, r->name, pid, r->state,
		    fmt_size(pend, r->pending), recs,
		    fmt_age(oldest, r->oldest_ns, now), fmt_rate(rate, r),
		    fmt_eta(eta, r), r->peer);
	}
	if (i < s->n)
		line(cols, "... %zu more", s->n - i);
	if (c->screen)
		fputs("\033[J", stdout);	/* what is left below */
	else
		putchar('\n');
	fflush(stdout);
	/* The rates need the sample by name again. */
	qsort(s->rows, s->n, sizeof(*s->rows), by_name);
}

/* Waits until deadline (CLOCK_MONOTONIC ns), a signal, or q on the
 * terminal. False when it is time to stop. */
static bool
wait_next(struct top_ctx *c, int64_t deadline)
{
	struct pollfd pfd = { STDIN_FILENO, POLLIN, 0 };
	int64_t left;
	char ch;
	int n;

	while (!stop_signal && !resized &&
	    (left = deadline - now_mono_ns()) > 0) {
		n = poll(c->keys ? &pfd : NULL, c->keys ? 1 : 0,
		    (int)((left + 999999) / 1000000));
		if (n > 0 && (pfd.revents & (POLLHUP | POLLERR | POLLNVAL)))
			c->keys = false;	/* stdin gone: no more keys */
		if (n > 0 && (pfd.revents & POLLIN) &&
		    read(STDIN_FILENO, &ch, 1) == 1 && (ch == 'q' ||
		    ch == 'Q' || ch == 3))
			return false;
	}
	return !stop_signal;
}

static struct termios saved_tio;
static bool tio_saved;

static void
screen_take(void)
{
	struct termios tio;

	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_tio) == 0) {
		tio = saved_tio;
		tio.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		tio.c_cc[VMIN] = 0;
		tio.c_cc[VTIME] = 0;
		tio_saved = tcsetattr(STDIN_FILENO, TCSANOW, &tio) == 0;
	}
	/* The alternate screen, the cursor hidden. */
	fputs("\033[?1049h\033[?25l\033[H\033[2J", stdout);
	fflush(stdout);
}

static void
screen_give_back(void)
{
	fputs("\033[?25h\033[?1049l", stdout);
	fflush(stdout);
	if (tio_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
}

static int
top_loop(struct top_ctx *c, uint64_t interval_ms, uint64_t count)
{
	struct sigaction sa = { .sa_handler = on_stop };
	struct t_sample swap;
	uint64_t done = 0;
	int64_t next;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = on_winch;
	sigaction(SIGWINCH, &sa, NULL);
	if (c->screen)
		screen_take();
	for (;;) {
		if ((c->rc = sample(c)) != EXIT_OK)
			break;
		draw(c, &c->cur);
		/* The newest sample becomes the one rates start from. */
		swap = c->prev;
		c->prev = c->cur;
		c->cur = swap;
		if (count != 0 && ++done >= count)
			break;
		next = c->prev.at_ns + (int64_t)interval_ms * 1000000LL;
		while (wait_next(c, next)) {
			if (!resized)
				goto again;
			resized = 0;	/* a new window size: redraw */
			if (c->screen) {
				fputs("\033[2J", stdout);
				draw(c, &c->prev);
			}
		}
		break;
again:		;
	}
	if (c->screen)
		screen_give_back();
	return c->rc;
}

int
cmd_top(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "interval", required_argument, NULL, 'i' },
		{ "count", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct top_ctx c = { .rc = EXIT_OK };
	uint64_t interval_ms = 1000, count = 0;
	const char *dir = NULL;
	bool missing;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "hd:i:n:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			dir = optarg;
			break;
		case 'i':
			if (!parse_age_ms(optarg, &interval_ms) ||
			    interval_ms < 100 || interval_ms > 3600000) {
				warnx("--interval \"%s\": expected a duration "
				    "from 100ms to 1h, like 500ms or 2s",
				    optarg);
				return usage_exit(top_usage, false);
			}
			break;
		case 'n':
			if (!parse_u64(optarg, UINT32_MAX, &count)) {
				warnx("--count \"%s\": expected a number of "
				    "samples", optarg);
				return usage_exit(top_usage, false);
			}
			break;
		case 'h':
			return usage_exit(top_usage, true);
		default:
			return usage_exit(top_usage, false);
		}
	}
	if (optind < argc) {
		if (argc - optind > 1 || dir != NULL) {
			warnx("top: give one DIR, either as --dir or as "
			    "argument");
			return usage_exit(top_usage, false);
		}
		dir = argv[optind];
	}
	if ((rc = cli_dir_open(dir, &c.d, &missing)) != EXIT_OK)
		return rc;
	if (missing) {
		char path[PATH_MAX];

		if (spool_dir_default(path, sizeof(path)))
			warnx("%s: no such spool dir yet (nothing was spooled "
			    "there); give --dir to watch another", path);
		return EXIT_ERR;
	}
	c.screen = isatty(STDOUT_FILENO);
	c.keys = c.screen && isatty(STDIN_FILENO);
	rc = top_loop(&c, interval_ms, count);
	free(c.prev.rows);
	free(c.cur.rows);
	spool_dir_close(c.d);
	return rc;
}
