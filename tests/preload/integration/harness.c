/*
 * harness.c — see harness.h. Failures inside the harness are test failures
 * (H_ASSERT), reported with what the fixtures said.
 */
#ifndef H_PLAIN
#include <criterion/criterion.h>
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define MAX_PROCS	128
#define STATUS_CAP	65536
#define ERR_KEEP	65536

struct h_proc {
	char label[64];
	pid_t pid;
	int pidfd;
	bool reaped;
	int wstatus;
	int status_fd;			/* read end of the child's fd 3 */
	bool status_eof;
	char status[STATUS_CAP];
	size_t status_len;
	char out_path[PATH_MAX], err_path[PATH_MAX];
	char err_text[ERR_KEEP + 1];
};

static struct {
	char dir[PATH_MAX];
	char spool[PATH_MAX];
	struct h_proc *procs[MAX_PROCS];
	int nprocs;
} h;

extern char **environ;

static int failures;

void
h_fail(bool fatal, const char *file, int line, const char *cond,
    const char *fmt, ...)
{
	static char msg[8192];
	va_list ap;
	int n;

	n = snprintf(msg, sizeof(msg), "%s:%d: ", file, line);
	va_start(ap, fmt);
	if (*fmt == ' ')
		fmt++;
	if (*fmt != '\0')
		vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	else
		snprintf(msg + n, sizeof(msg) - (size_t)n, "%s", cond);
	va_end(ap);
	failures++;
#ifdef H_PLAIN
	fprintf(stderr, "FAIL %s\n", msg);
	if (fatal) {
		h_teardown();
		exit(1);
	}
#else
	if (fatal)
		cr_assert_fail("%s", msg);
	cr_expect_fail("%s", msg);
#endif
}

int
h_failures(void)
{
	return failures;
}

void
h_fmt(char *out, size_t len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, len, fmt, ap);
	va_end(ap);
	H_ASSERT(n >= 0 && (size_t)n < len, "string too long: %s", out);
}

void
h_arg(struct h_argv *a, const char *fmt, ...)
{
	va_list ap;
	int n;

	H_ASSERT(a->n < (int)(sizeof(a->v) / sizeof(a->v[0])) - 1,
	    "too many arguments");
	va_start(ap, fmt);
	n = vsnprintf(a->buf + a->used, sizeof(a->buf) - a->used, fmt, ap);
	va_end(ap);
	H_ASSERT(n >= 0 && (size_t)n < sizeof(a->buf) - a->used,
	    "arguments too long");
	if (a->n == 0)
		a->n = 1;	/* v[0] is the program, set by h_spawn */
	a->v[a->n++] = a->buf + a->used;
	a->v[a->n] = NULL;
	a->used += (size_t)n + 1;
}

static void
h_vargs(struct h_argv *a, va_list ap)
{
	const char *s;

	while ((s = va_arg(ap, const char *)) != NULL)
		h_arg(a, "%s", s);
}

void
h_args(struct h_argv *a, ...)
{
	va_list ap;

	va_start(ap, a);
	h_vargs(a, ap);
	va_end(ap);
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
left_ms(long long deadline)
{
	long long left = deadline - now_ms();

	return left < 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

void
h_setup(void)
{
	const char *tmp = getenv("TMPDIR");

	H_ASSERT(getenv("TCPSPOOL_TEST_PRELOAD") != NULL &&
	    getenv("TCPSPOOL_FIXTURE_DIR") != NULL,
	    "TCPSPOOL_TEST_PRELOAD/TCPSPOOL_FIXTURE_DIR unset: run via meson test");
	snprintf(h.dir, sizeof(h.dir), "%s/tcpspool-integ.XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	H_ASSERT(mkdtemp(h.dir) != NULL, "mkdtemp %s: %s", h.dir,
	    strerror(errno));
	h_fmt(h.spool, sizeof(h.spool), "%s/spool", h.dir);
	H_ASSERT(mkdir(h.spool, 0700) == 0, "mkdir %s: %s", h.spool,
	    strerror(errno));
}

static int
remove_entry(const char *path, const struct stat *st, int flag,
    struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	remove(path);
	return 0;
}

void
h_teardown(void)
{
	for (int i = 0; i < h.nprocs; i++) {
		struct h_proc *p = h.procs[i];

		/* The group outlives its leader only through our fixtures'
		 * own children, so the id cannot name anyone else's group. */
		if (kill(-p->pid, 0) == 0)
			kill(-p->pid, SIGKILL);
		if (!p->reaped)
			waitpid(p->pid, NULL, 0);
		if (p->pidfd >= 0)
			close(p->pidfd);
		if (p->status_fd >= 0)
			close(p->status_fd);
		free(p);
	}
	h.nprocs = 0;
	if (h.dir[0] != '\0' && getenv("TCPSPOOL_TEST_KEEP") == NULL)
		nftw(h.dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	h.dir[0] = '\0';
}

const char *
h_dir(void)
{
	return h.dir;
}

const char *
h_spool_dir(void)
{
	return h.spool;
}

void
h_fixture(char *out, size_t len, const char *name)
{
	h_fmt(out, len, "%s/%s", getenv("TCPSPOOL_FIXTURE_DIR"), name);
}

/* True if list has an entry for the name of var ("NAME=..."). */
static bool
named_in(const char *const *list, const char *var)
{
	size_t len = strcspn(var, "=");

	for (; list != NULL && *list != NULL; list++)
		if (strncmp(*list, var, len) == 0 && (*list)[len] == '=')
			return true;
	return false;
}

/*
 * The child's environment: ours without LD_PRELOAD or any TCPSPOOL_ name
 * (the test's own TCPSPOOL_TEST_* would be unknown names to the library),
 * then LD_PRELOAD, the private TCPSPOOL_DIR unless o names another, o->env
 * (which overrides an inherited variable of the same name).
 */
static char **
child_env(const struct h_spawn *o, char *spool_var, size_t spool_len)
{
	static char *envp[1024];
	static char preload[PATH_MAX * 4];
	bool o_has_dir = false;
	int n = 0;

	for (char **e = environ; *e != NULL && n < 1000; e++)
		if (strncmp(*e, "LD_PRELOAD=", 11) != 0 &&
		    strncmp(*e, "TCPSPOOL_", 9) != 0 && !named_in(o->env, *e))
			envp[n++] = *e;
	if (o->preload) {
		snprintf(preload, sizeof(preload), "LD_PRELOAD=%s",
		    getenv("TCPSPOOL_TEST_PRELOAD"));
		envp[n++] = preload;
	}
	for (const char *const *e = o->env; e != NULL && *e != NULL; e++)
		if (strncmp(*e, "TCPSPOOL_DIR=", 13) == 0)
			o_has_dir = true;
	if (!o->no_spool_dir && !o_has_dir) {
		snprintf(spool_var, spool_len, "TCPSPOOL_DIR=%s", h.spool);
		envp[n++] = spool_var;
	}
	for (const char *const *e = o->env; e != NULL && *e != NULL; e++) {
		H_ASSERT(n < 1020, "environment too large");
		envp[n++] = (char *)*e;
	}
	envp[n] = NULL;
	return envp;
}

/* In the child, after fork: descriptors, then exec. Never returns. */
static void
exec_child(const char *prog, char **argv, char **envp, const struct h_spawn *o,
    int status_w, const char *out, const char *errp)
{
	int fd;

	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if ((fd = open("/dev/null", O_RDONLY)) >= 0 && fd != 0) {
		dup2(fd, 0);
		close(fd);
	}
	if ((fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0) {
		dup2(fd, 1);
		close(fd);
	}
	if ((fd = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0) {
		dup2(fd, 2);
		close(fd);
	}
	/* Move every source above the targets first so dup2 never clobbers
	 * a source that is also a target. */
	int src[5], dst[5], n = 0;

	if (status_w >= 0) {
		src[n] = status_w;
		dst[n++] = 3;
	}
	for (int i = 0; i < o->nfds; i++) {
		src[n] = o->fds[i].parent;
		dst[n++] = o->fds[i].child;
	}
	for (int i = 0; i < n; i++)
		src[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 64);
	for (int i = 0; i < n; i++)
		dup2(src[i], dst[i]);	/* dup2 clears FD_CLOEXEC */
	execve(prog, argv, envp);
	dprintf(2, "harness: exec %s: %s\n", prog, strerror(errno));
	_exit(127);
}

struct h_proc *
h_spawn(const char *label, const char *prog, struct h_argv *argv,
    const struct h_spawn *o)
{
	static const struct h_spawn none;
	char spool_var[PATH_MAX + 16];
	struct h_proc *p;
	int sp[2] = { -1, -1 };
	char **envp;

	if (o == NULL)
		o = &none;
	H_ASSERT(h.nprocs < MAX_PROCS, "too many processes");
	H_ASSERT((p = calloc(1, sizeof(*p))) != NULL);
	snprintf(p->label, sizeof(p->label), "%s", label);
	h_fmt(p->out_path, sizeof(p->out_path), "%s/%s.out", h.dir, label);
	h_fmt(p->err_path, sizeof(p->err_path), "%s/%s.err", h.dir, label);
	if (argv->n == 0)
		argv->n = 1;
	argv->v[0] = (char *)prog;
	argv->v[argv->n] = NULL;
	H_ASSERT(pipe2(sp, O_CLOEXEC) == 0);
	envp = child_env(o, spool_var, sizeof(spool_var));
	p->pid = fork();
	H_ASSERT(p->pid >= 0, "fork: %s", strerror(errno));
	if (p->pid == 0)
		exec_child(prog, argv->v, envp, o, sp[1], p->out_path,
		    p->err_path);
	close(sp[1]);
	p->status_fd = sp[0];
	fcntl(p->status_fd, F_SETFL, O_NONBLOCK);
	p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
	h.procs[h.nprocs++] = p;
	return p;
}

pid_t
h_pid(const struct h_proc *p)
{
	return p->pid;
}

const char *
h_label(const struct h_proc *p)
{
	return p->label;
}

static bool
try_reap(struct h_proc *p)
{
	if (!p->reaped && waitpid(p->pid, &p->wstatus, WNOHANG) == p->pid)
		p->reaped = true;
	return p->reaped;
}

bool
h_wait(struct h_proc *p, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;

	while (!try_reap(p)) {
		struct pollfd pfd = { .fd = p->pidfd, .events = POLLIN };
		int left = left_ms(deadline);

		if (left == 0)
			return false;
		if (p->pidfd >= 0)
			poll(&pfd, 1, left);
		else	/* no pidfd: a bounded retry on the condition */
			poll(NULL, 0, left < 10 ? left : 10);
	}
	return true;
}

int
h_exit_code(const struct h_proc *p)
{
	if (!p->reaped)
		return -1;
	if (WIFEXITED(p->wstatus))
		return WEXITSTATUS(p->wstatus);
	return 128 + WTERMSIG(p->wstatus);
}

bool
h_killed_by(const struct h_proc *p, int sig)
{
	return p->reaped && WIFSIGNALED(p->wstatus) &&
	    WTERMSIG(p->wstatus) == sig;
}

/* Reads what the status pipe holds now; false at EOF. */
static void
pump_status(struct h_proc *p)
{
	while (!p->status_eof) {
		ssize_t r;

		if (p->status_len >= STATUS_CAP - 1) {
			p->status_eof = true;	/* full: stop, keep what we have */
			break;
		}
		r = read(p->status_fd, p->status + p->status_len,
		    STATUS_CAP - 1 - p->status_len);
		if (r > 0) {
			p->status_len += (size_t)r;
			p->status[p->status_len] = '\0';
		} else if (r == 0) {
			p->status_eof = true;
		} else {
			break;	/* EAGAIN: nothing more now */
		}
	}
}

/* The nth complete line starting with prefix in what has arrived. */
static const char *
find_line(struct h_proc *p, const char *prefix, int nth)
{
	static char line[4][512];
	static int slot;
	size_t plen = strlen(prefix);
	const char *s = p->status;

	while (*s != '\0') {
		const char *nl = strchr(s, '\n');

		if (nl == NULL)
			break;	/* incomplete line */
		if ((size_t)(nl - s) >= plen && strncmp(s, prefix, plen) == 0 &&
		    nth-- == 0) {
			char *out = line[slot++ % 4];
			size_t len = (size_t)(nl - s) < 511 ? (size_t)(nl - s) : 511;

			memcpy(out, s, len);
			out[len] = '\0';
			return out;
		}
		s = nl + 1;
	}
	return NULL;
}

const char *
h_status_line(struct h_proc *p, const char *prefix, int nth, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	const char *line;

	for (;;) {
		struct pollfd pfd = { .fd = p->status_fd, .events = POLLIN };

		pump_status(p);
		if ((line = find_line(p, prefix, nth)) != NULL)
			return line;
		if (p->status_eof || left_ms(deadline) == 0)
			return NULL;
		poll(&pfd, 1, left_ms(deadline));
	}
}

const char *
h_status_text(struct h_proc *p)
{
	pump_status(p);
	return p->status;
}

int
h_status_count(struct h_proc *p, const char *prefix)
{
	int n = 0;

	pump_status(p);
	while (find_line(p, prefix, n) != NULL)
		n++;
	return n;
}

long long
h_field(const char *line, const char *key)
{
	size_t klen = strlen(key);
	const char *s = line;

	if (line == NULL)
		return -1;
	while ((s = strstr(s, key)) != NULL) {
		if ((s == line || s[-1] == ' ') && s[klen] == '=')
			return strtoll(s + klen + 1, NULL, 10);
		s += klen;
	}
	return -1;
}

const char *
h_stderr(struct h_proc *p)
{
	int fd = open(p->err_path, O_RDONLY | O_CLOEXEC);
	off_t size, from;
	ssize_t r = 0;

	p->err_text[0] = '\0';
	if (fd < 0)
		return p->err_text;
	size = lseek(fd, 0, SEEK_END);
	from = size > ERR_KEEP ? size - ERR_KEEP : 0;
	if (size > 0)
		r = pread(fd, p->err_text, (size_t)(size - from), from);
	p->err_text[r > 0 ? r : 0] = '\0';
	close(fd);
	return p->err_text;
}

long long
h_stdout_size(const struct h_proc *p)
{
	struct stat st;

	return stat(p->out_path, &st) == 0 ? (long long)st.st_size : -1;
}

const char *
h_stdout(struct h_proc *p)
{
	static char text[ERR_KEEP + 1];
	int fd = open(p->out_path, O_RDONLY | O_CLOEXEC);
	ssize_t r = 0;

	if (fd >= 0) {
		r = read(fd, text, ERR_KEEP);
		close(fd);
	}
	text[r > 0 ? r : 0] = '\0';
	return text;
}

int
h_stderr_lines_with(struct h_proc *p, const char *needle)
{
	const char *s = h_stderr(p);
	int n = 0;

	while (*s != '\0') {
		const char *nl = strchr(s, '\n');
		size_t len = nl != NULL ? (size_t)(nl - s) : strlen(s);
		char line[1024];

		snprintf(line, sizeof(line), "%.*s", (int)len, s);
		if (strstr(line, needle) != NULL)
			n++;
		s += len + (nl != NULL);
	}
	return n;
}

bool
h_said(struct h_proc *p, const char *needle, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;

	for (;;) {
		/* Reaped first: what it wrote before it ended is all there. */
		bool ended = try_reap(p);

		if (h_stderr_lines_with(p, needle) > 0)
			return true;
		if (ended || left_ms(deadline) == 0)
			return false;
		poll(NULL, 0, 20);
	}
}

void
h_gate_init(struct h_gate *g)
{
	int fds[2];

	H_ASSERT(pipe2(fds, O_CLOEXEC) == 0);
	g->rfd = fds[0];
	g->wfd = fds[1];
}

void
h_gate_open(struct h_gate *g)
{
	if (g->wfd >= 0)
		close(g->wfd);
	g->wfd = -1;
}

struct h_proc *
h_server_a(const struct h_spawn *o, unsigned short *port, ...)
{
	static int nserver;
	struct h_argv a = { .n = 0 };
	char prog[PATH_MAX], label[32];
	struct h_proc *p;
	const char *line;
	va_list ap;

	h_fixture(prog, sizeof(prog), "server_a");
	h_args(&a, "--status-fd", "3", NULL);
	va_start(ap, port);
	h_vargs(&a, ap);
	va_end(ap);
	snprintf(label, sizeof(label), "server_a-%d", nserver++);
	p = h_spawn(label, prog, &a, o);
	line = h_status_line(p, "port ", 0, H_DEADLINE_MS);
	H_ASSERT(line != NULL, "server_a announced no port: %s", h_describe(p));
	*port = (unsigned short)strtol(line + 5, NULL, 10);
	return p;
}

struct h_proc *
h_reader(int id, unsigned short port, struct h_gate *g, ...)
{
	struct h_spawn o = { .nfds = 0 };
	struct h_argv a = { .n = 0 };
	char prog[PATH_MAX], label[32];
	va_list ap;

	h_fixture(prog, sizeof(prog), "slow_reader");
	snprintf(label, sizeof(label), "reader-%d", id);
	h_arg(&a, "--port=%u", port);
	h_arg(&a, "--result-file=%s/%s.result", h.dir, label);
	if (g != NULL) {
		h_args(&a, "--start-fd", "4", NULL);
		o.fds[o.nfds].child = 4;
		o.fds[o.nfds++].parent = g->rfd;
	}
	va_start(ap, g);
	h_vargs(&a, ap);
	va_end(ap);
	return h_spawn(label, prog, &a, &o);
}

bool
h_reader_result(struct h_proc *p, struct h_result *r)
{
	char path[PATH_MAX], line[512];
	FILE *f;

	memset(r, 0, sizeof(*r));
	r->mismatch = -1;
	h_fmt(path, sizeof(path), "%s/%s.result", h.dir, p->label);
	if ((f = fopen(path, "re")) == NULL)
		return false;
	if (fgets(line, sizeof(line), f) != NULL &&
	    sscanf(line, "bytes=%lld messages=%lld missing=%lld mismatch=%lld "
	    "end=%31s errno=%d complete=%d http=%d", &r->bytes, &r->messages,
	    &r->missing, &r->mismatch, r->end, &r->err, &r->complete,
	    &r->http) == 8)
		r->valid = true;
	fclose(f);
	return r->valid;
}

static struct {
	char *list;
	size_t len, used;
	int n;
	size_t base;
} walk;

static int
count_file(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	if (flag != FTW_F)
		return 0;
	if (ftw->level == 1 && strcmp(path + ftw->base, "ledger") == 0)
		return 0;	/* the ledger outlives streams (FORMAT.md §9) */
	if (ftw->level == 1 && strcmp(path + ftw->base, "sweep.lock") == 0)
		return 0;	/* so does the sweepers' lock (the daemon sweeps
				 * at its start) */
	walk.n++;
	if (walk.list != NULL && walk.used < walk.len) {
		int w = snprintf(walk.list + walk.used, walk.len - walk.used,
		    "%s%s", walk.used ? " " : "", path + walk.base);

		if (w > 0)
			walk.used += (size_t)w;
		if (walk.used >= walk.len)
			walk.used = walk.len - 1;
	}
	return 0;
}

int
h_spool_files(char *list, size_t len)
{
	walk.list = list;
	walk.len = len;
	walk.used = 0;
	walk.n = 0;
	walk.base = strlen(h.spool) + 1;
	if (list != NULL && len > 0)
		list[0] = '\0';
	nftw(h.spool, count_file, 16, FTW_PHYS);
	return walk.n;
}

static int
count_not_removal(const char *path, const struct stat *st, int flag,
    struct FTW *ftw)
{
	const char *rel = path + walk.base, *slash;

	(void)st;
	if (flag != FTW_F || (ftw->level == 1 &&
	    (strcmp(rel, "ledger") == 0 || strcmp(rel, "sweep.lock") == 0)))
		return 0;
	/* The top-level dir it is in: a removal under way is "<name>.del". */
	slash = strchr(rel, '/');
	if (slash == NULL || slash - rel < 4 || strncmp(slash - 4, ".del",
	    4) != 0)
		walk.n++;
	return 0;
}

bool
h_spool_only_removals(void)
{
	walk.list = NULL;
	walk.len = walk.used = 0;
	walk.n = 0;
	walk.base = strlen(h.spool) + 1;
	nftw(h.spool, count_not_removal, 16, FTW_PHYS);
	return walk.n == 0;
}

bool
h_spool_wait_empty(int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;

	/* Bounded retry on the condition: nothing to wait on but the dir. */
	while (h_spool_files(NULL, 0) != 0) {
		if (left_ms(deadline) == 0)
			return false;
		poll(NULL, 0, 20);
	}
	return true;
}

const char *
h_describe(struct h_proc *p)
{
	static char text[4][ERR_KEEP + 256];
	static int slot;
	char *out = text[slot++ % 4];
	const char *err = h_stderr(p);
	size_t len = strlen(err);

	try_reap(p);
	if (len > 3000)
		err += len - 3000;
	snprintf(out, sizeof(text[0]), "[%s pid %d %s%d; stderr: %s]",
	    p->label, (int)p->pid, p->reaped ? "exit " : "running ",
	    h_exit_code(p), err);
	return out;
}

void
h_argv_list(struct h_argv *a, const char *const *list)
{
	for (; list != NULL && *list != NULL; list++)
		h_arg(a, "%s", *list);
}

void
h_story_start(struct h_story *st, const struct h_spawn *o, int n,
    const char *const *server_args, const char *const *reader_args)
{
	struct h_argv a = { .n = 0 };
	char prog[PATH_MAX], conns[32];
	const char *line;

	H_ASSERT(n >= 1 && n <= H_MAX_READERS);
	memset(st, 0, sizeof(*st));
	st->n = n;
	h_gate_init(&st->gate);
	h_fixture(prog, sizeof(prog), "server_a");
	snprintf(conns, sizeof(conns), "--connections=%d", n);
	h_args(&a, "--status-fd", "3", conns, NULL);
	h_argv_list(&a, server_args);
	for (int i = 1; i < a.n; i++) {
		strlcat(st->desc, a.v[i], sizeof(st->desc));
		strlcat(st->desc, " ", sizeof(st->desc));
	}
	if (o != NULL && o->preload)
		strlcat(st->desc, "(preloaded)", sizeof(st->desc));
	st->server = h_spawn("server_a", prog, &a, o);
	line = h_status_line(st->server, "port ", 0, H_DEADLINE_MS);
	H_ASSERT(line != NULL, "server_a announced no port: %s",
	    h_describe(st->server));
	st->port = (unsigned short)strtol(line + 5, NULL, 10);
	for (int i = 0; i < n; i++) {
		struct h_spawn ro = { .nfds = 1 };
		char label[32];

		memset(&a, 0, sizeof(a));
		h_fixture(prog, sizeof(prog), "slow_reader");
		snprintf(label, sizeof(label), "reader-%d", i);
		h_arg(&a, "--port=%u", st->port);
		h_arg(&a, "--result-file=%s/%s.result", h.dir, label);
		h_args(&a, "--start-fd", "4", NULL);
		h_argv_list(&a, reader_args);
		ro.fds[0].child = 4;
		ro.fds[0].parent = st->gate.rfd;
		st->reader[i] = h_spawn(label, prog, &a, &ro);
	}
}

void
h_story_wait_status(struct h_story *st, const char *prefix, int n)
{
	long long deadline = now_ms() + H_DEADLINE_MS;

	for (int i = 0; i < n; i++) {
		const char *line = h_status_line(st->server, prefix, i,
		    left_ms(deadline));

		if (line != NULL)
			continue;
		H_FAIL("server_a %s\nreported %d of %d \"%s\" lines; "
		    "status so far:\n%s\nserver: %s", st->desc, i, n, prefix,
		    st->server->status, h_describe(st->server));
	}
}

void
h_story_finish_readers(struct h_story *st)
{
	long long deadline = now_ms() + H_DEADLINE_MS;

	h_gate_open(&st->gate);
	for (int i = 0; i < st->n; i++) {
		struct h_proc *r = st->reader[i];

		H_ASSERT(h_wait(r, left_ms(deadline)),
		    "server_a %s: %s did not finish in time: %s; server: %s",
		    st->desc, r->label, h_describe(r), h_describe(st->server));
		h_reader_result(r, &st->result[i]);
	}
	if (st->gate.rfd >= 0)
		close(st->gate.rfd);
	st->gate.rfd = -1;
}

void
h_story_wait_server(struct h_story *st)
{
	H_ASSERT(h_wait(st->server, H_DEADLINE_MS), "server_a %s did not "
	    "exit after its readers finished: %s", st->desc,
	    h_describe(st->server));
}

void
h_story_finish(struct h_story *st)
{
	h_story_finish_readers(st);
	h_story_wait_server(st);
}

void
h_story_assert_delivered(struct h_story *st, long long bytes_each)
{
	char files[1024];

	for (int i = 0; i < st->n; i++) {
		struct h_result *r = &st->result[i];
		struct h_proc *p = st->reader[i];

		H_ASSERT(r->valid, "server_a %s: %s left no result: %s",
		    st->desc, p->label, h_describe(p));
		H_EXPECT(r->mismatch == -1, "server_a %s: %s: the stream "
		    "differs at byte %lld (of %lld received): %s", st->desc,
		    p->label, r->mismatch, r->bytes, h_describe(p));
		H_EXPECT(r->bytes == bytes_each, "%s received %lld bytes, "
		    "expected %lld (end %s): %s", p->label, r->bytes,
		    bytes_each, r->end, h_describe(p));
		H_EXPECT(strcmp(r->end, "EOF") == 0, "%s: the stream ended with %s, "
		    "not EOF, after %lld bytes", p->label, r->end, r->bytes);
		H_EXPECT(h_exit_code(p) == 0, "%s: %s", p->label,
		    h_describe(p));
	}
	H_EXPECT(h_exit_code(st->server) == 0, "server_a %s did not "
	    "finish cleanly (3: it saw EAGAIN or a short write): %s; "
	    "status:\n%s", st->desc, h_describe(st->server),
	    st->server->status);
	H_EXPECT(h_stdout_size(st->server) == 0,
	    "server_a wrote on its stdout");
	H_EXPECT(h_spool_wait_empty(10000), "spool dir not empty after "
	    "delivery: %d files: %s", h_spool_files(files, sizeof(files)),
	    files);
}

void
h_kill_group(struct h_proc *p, int sig)
{
	if (kill(-p->pid, 0) == 0)
		kill(-p->pid, sig);
}

struct h_proc *
h_cli(char *out, size_t outlen, ...)
{
	static int ncli;
	struct h_argv a = { .n = 0 };
	char label[32];
	struct h_proc *p;
	va_list ap;
	ssize_t r;
	int fd;

	H_ASSERT(getenv("TCPSPOOL_TEST_CLI") != NULL, "TCPSPOOL_TEST_CLI unset");
	va_start(ap, outlen);
	h_vargs(&a, ap);
	va_end(ap);
	h_fmt(label, sizeof(label), "cli-%d", ncli++);
	p = h_spawn(label, getenv("TCPSPOOL_TEST_CLI"), &a, NULL);
	H_ASSERT(h_wait(p, H_DEADLINE_MS), "tcpspool did not finish: %s",
	    h_describe(p));
	out[0] = '\0';
	if ((fd = open(p->out_path, O_RDONLY | O_CLOEXEC)) >= 0) {
		r = read(fd, out, outlen - 1);
		out[r > 0 ? r : 0] = '\0';
		close(fd);
	}
	return p;
}
