/* tools_test.c — see tools_test.h. */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <netinet/in.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tools_test.h"

extern char **environ;

char t_dir[256];
char t_spool[300];

/* ------------------------------------------------------------ processes */

static void
apply_env(const char *const *env)
{
	for (; env != NULL && *env != NULL; env++) {
		const char *eq = strchr(*env, '=');

		if (eq == NULL) {
			unsetenv(*env);
		} else {
			char name[256];

			snprintf(name, sizeof(name), "%.*s", (int)(eq - *env),
			    *env);
			setenv(name, eq + 1, 1);
		}
	}
}

static const char *
cli_path(void)
{
	const char *cli = getenv("TCPSPOOL_TEST_CLI");

	cr_assert(cli != NULL, "TCPSPOOL_TEST_CLI unset: run via meson test");
	return cli;
}

void
t_spawn(struct t_proc *p, const char *const *argv, const char *const *env)
{
	static unsigned seq;
	int in, out, err;

	snprintf(p->out_path, sizeof(p->out_path), "%s/proc%u.out", t_dir,
	    seq);
	snprintf(p->err_path, sizeof(p->err_path), "%s/proc%u.err", t_dir,
	    seq++);
	fflush(NULL);
	p->pid = fork();
	cr_assert(p->pid >= 0);
	if (p->pid > 0)
		return;
	in = open("/dev/null", O_RDONLY);
	out = open(p->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	err = open(p->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (in < 0 || out < 0 || err < 0)
		_exit(120);
	dup2(in, 0);
	dup2(out, 1);
	dup2(err, 2);
	apply_env(env);
	execv(strcmp(argv[0], "CLI") == 0 ? cli_path() : argv[0],
	    (char *const *)argv);
	_exit(127);
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t cap = 0, n = 0, r;

	cr_assert(f != NULL, "%s: %s", path, strerror(errno));
	do {
		if (n + 4096 + 1 > cap) {
			cap = (n + 4096 + 1) * 2;
			buf = realloc(buf, cap);
			cr_assert(buf != NULL);
		}
		r = fread(buf + n, 1, 4096, f);
		n += r;
	} while (r > 0);
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

void
t_wait(struct t_proc *p, struct t_out *o)
{
	int st;

	cr_assert(waitpid(p->pid, &st, 0) == p->pid);
	o->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	o->out = slurp(p->out_path, &o->out_len);
	o->err = slurp(p->err_path, &o->err_len);
}

bool
t_wait_deadline(struct t_proc *p, struct t_out *o, int ms)
{
	struct timespec tick = { 0, 5 * 1000000L }, t0, now;
	bool ended = true;
	siginfo_t si;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* A bounded retry on the condition (the process ended). */
	for (;;) {
		si.si_pid = 0;
		if (waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG |
		    WNOWAIT) == -1 || si.si_pid != 0)
			break;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - t0.tv_sec) * 1000 +
		    (now.tv_nsec - t0.tv_nsec) / 1000000 > ms) {
			kill(p->pid, SIGKILL);
			ended = false;
			break;
		}
		nanosleep(&tick, NULL);
	}
	t_wait(p, o);
	return ended;
}

bool
t_said(struct t_proc *p, const char *needle, int ms)
{
	struct timespec tick = { 0, 20 * 1000000L }, t0, now;
	bool said, ended;
	siginfo_t si;
	size_t len;
	char *err;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* A bounded retry on the condition (the line is in the file). */
	for (;;) {
		si.si_pid = 0;
		ended = waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG |
		    WNOWAIT) == -1 || si.si_pid != 0;
		err = slurp(p->err_path, &len);
		said = strstr(err, needle) != NULL;
		free(err);
		if (said || ended)
			return said;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - t0.tv_sec) * 1000 +
		    (now.tv_nsec - t0.tv_nsec) / 1000000 > ms)
			return false;
		nanosleep(&tick, NULL);
	}
}

void
t_run(struct t_out *o, const char *const *argv, const char *const *env)
{
	struct t_proc p;

	t_spawn(&p, argv, env);
	t_wait(&p, o);
}

void
t_cli(struct t_out *o, ...)
{
	const char *argv[64];
	va_list ap;
	int n = 0;

	argv[n++] = "CLI";
	va_start(ap, o);
	while ((argv[n] = va_arg(ap, const char *)) != NULL)
		cr_assert(++n < 63);
	va_end(ap);
	t_run(o, argv, NULL);
}

void
t_out_free(struct t_out *o)
{
	free(o->out);
	free(o->err);
	o->out = o->err = NULL;
}

void
t_python(struct t_out *o, const char *script, const char *input_path)
{
	const char *argv[] = { "/bin/sh", "-c",
	    "exec python3 -c \"$0\" < \"$1\"", script, input_path, NULL };

	t_run(o, argv, NULL);
	cr_assert_eq(o->status, 0, "python3 failed: %s", o->err);
}

/* ---------------------------------------------------------------- files */

void
t_setup(void)
{
	snprintf(t_dir, sizeof(t_dir), "/tmp/tcpspool-tools-XXXXXX");
	cr_assert(mkdtemp(t_dir) != NULL);
	snprintf(t_spool, sizeof(t_spool), "%s/spool", t_dir);
	cr_assert(mkdir(t_spool, 0700) == 0);
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	return remove(path);
}

void
t_teardown(void)
{
	if (t_dir[0] != '\0')
		nftw(t_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void
t_write_file(const char *path, const void *p, size_t len)
{
	FILE *f = fopen(path, "w");

	cr_assert(f != NULL);
	cr_assert(fwrite(p, 1, len, f) == len);
	cr_assert(fclose(f) == 0);
}

const char *
t_path(const char *name)
{
	static char buf[512];

	snprintf(buf, sizeof(buf), "%s/%s", t_dir, name);
	return buf;
}

/* --------------------------------------------------------------- spools */

size_t
t_record(uint64_t i, uint8_t *buf, size_t cap)
{
	size_t n, k;

	switch (i % 4) {
	case 0:
		return (size_t)snprintf((char *)buf, cap, "hello %llu\n",
		    (unsigned long long)i);
	case 1:		/* every control byte and some high ones */
		n = 40;
		for (k = 0; k < n; k++)
			buf[k] = (uint8_t)(k < 32 ? k : 0xd0 + k + i);
		return n;
	case 2:
		return (size_t)snprintf((char *)buf, cap,
		    "tab\there \"quoted\" \\ back %llu", (unsigned long long)i);
	default:	/* a longer run that compresses */
		n = 100 + (size_t)(i % 50);
		for (k = 0; k < n; k++)
			buf[k] = (uint8_t)('a' + (i * 7 + k) % 26);
		return n;
	}
}

uint8_t *
t_stream_bytes(size_t (*rec)(uint64_t, uint8_t *, size_t), uint64_t n,
    size_t *len)
{
	uint8_t one[T_RECORD_MAX], *all = NULL;
	size_t cap = 0, used = 0, k;
	uint64_t i;

	for (i = 0; i < n; i++) {
		k = rec(i, one, sizeof(one));
		if (used + k > cap) {
			cap = (used + k) * 2 + 4096;
			all = realloc(all, cap);
			cr_assert(all != NULL);
		}
		memcpy(all + used, one, k);
		used += k;
	}
	*len = used;
	return all != NULL ? all : malloc(1);
}

pid_t
t_dead_pid(void)
{
	pid_t p = fork();

	cr_assert(p >= 0);
	if (p == 0)
		_exit(0);
	cr_assert(waitpid(p, NULL, 0) == p);
	return p;
}

int64_t
t_realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Writes the stream; in a child for the dead-writer kinds. */
static void
write_stream(const struct t_stream_spec *sp, pid_t pid, char *name,
    struct spool_stream **keep)
{
	size_t (*rec)(uint64_t, uint8_t *, size_t) = sp->rec ? sp->rec :
	    t_record;
	struct spool_identity id;
	struct spool_options o;
	struct spool_err e = { "" };
	struct spool_stream *s;
	struct spool_dir *d;
	uint8_t buf[T_RECORD_MAX];
	struct iovec iov;
	uint64_t i;

	cr_assert(spool_dir_open(t_spool, NULL, &d, &e) == 0, "%s", e.msg);
	memset(&id, 0, sizeof(id));
	id.pid = pid;
	id.fd = 7;
	id.created_ns = sp->created_ns;
	strlcpy(id.local, sp->local ? sp->local : "127.0.0.1:8080",
	    sizeof(id.local));
	strlcpy(id.peer, sp->peer ? sp->peer : "127.0.0.1:54321",
	    sizeof(id.peer));
	spool_options_default(&o);
	o.level = 6;
	o.frame_target = 16u << 20;
	if (sp->segment_max)
		o.segment_max = sp->segment_max;
	cr_assert(spool_stream_create(d, &id, &o, &s, &e) == 0, "%s", e.msg);
	for (i = 0; i < sp->records; i++) {
		iov.iov_base = buf;
		iov.iov_len = rec(i, buf, sizeof(buf));
		cr_assert(spool_stream_append(s, &iov, 1, T_TS(i), &e) ==
		    (int64_t)i, "%s", e.msg);
		if (sp->per_frame && (i + 1) % sp->per_frame == 0)
			cr_assert(spool_stream_flush(s, &e) == 0, "%s", e.msg);
	}
	cr_assert(spool_stream_flush(s, &e) == 0, "%s", e.msg);
	strlcpy(name, spool_stream_name(s), SPOOL_NAME_MAX);
	if (sp->writer == T_CRASHED)
		return;	/* the child _exits with the writer open */
	if (sp->writer == T_LIVE_OPEN) {
		*keep = s;
		return;
	}
	spool_stream_set_expiry(s, sp->expires_ns);
	cr_assert(spool_stream_close(s, SPOOL_CLOSE_KEEP, "peer reset", &e) ==
	    0, "%s", e.msg);
	spool_dir_close(d);
}

/* Live writers stay open until the test process exits. */
static struct spool_stream *kept[16];
static int nkept;

pid_t
t_make_stream(const struct t_stream_spec *sp, char name[SPOOL_NAME_MAX])
{
	int pfd[2], st;
	pid_t pid;
	char buf[SPOOL_NAME_MAX] = "";

	if (sp->writer == T_LIVE_CLOSED || sp->writer == T_LIVE_OPEN) {
		struct spool_stream *s = NULL;

		write_stream(sp, getpid(), name, &s);
		if (s != NULL && nkept < 16)
			kept[nkept++] = s;	/* stays open until exit */
		return getpid();
	}
	cr_assert(pipe(pfd) == 0);
	fflush(NULL);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		close(pfd[0]);
		write_stream(sp, getpid(), buf, NULL);
		if (write(pfd[1], buf, strlen(buf)) < 0)
			_exit(2);
		_exit(0);
	}
	close(pfd[1]);
	memset(buf, 0, sizeof(buf));
	cr_assert(read(pfd[0], buf, sizeof(buf) - 1) > 0);
	close(pfd[0]);
	cr_assert(waitpid(pid, &st, 0) == pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	strlcpy(name, buf, SPOOL_NAME_MAX);
	return pid;
}

struct frames_ctx {
	struct t_frame *v;
	size_t n, cap;
};

static int
frame_cb(void *arg, const struct spool_frame_info *fi)
{
	struct frames_ctx *c = arg;

	if (c->n < c->cap) {
		struct t_frame *f = &c->v[c->n];

		snprintf(f->file, sizeof(f->file), "%016llx",
		    (unsigned long long)fi->segment_seq);
		f->offset = fi->offset;
		f->first_seq = fi->first_seq;
		f->count = fi->count;
		f->stored_len = fi->stored_len;
	}
	c->n++;
	return 0;
}

size_t
t_frames(const char *name, struct t_frame *v, size_t cap)
{
	struct spool_scan_ops ops = { NULL, frame_cb, NULL };
	struct frames_ctx c = { v, 0, cap };
	struct spool_err e = { "" };
	struct spool_dir *d;

	cr_assert(spool_dir_open(t_spool, NULL, &d, &e) == 0, "%s", e.msg);
	cr_assert(spool_scan(d, name, &ops, &c, &e) >= 0, "%s", e.msg);
	spool_dir_close(d);
	return c.n;
}

const char *
t_segment_path(const char *name, const char *file)
{
	static char path[700];

	snprintf(path, sizeof(path), "%s/%s/%s.seg", t_spool, name, file);
	if (access(path, F_OK) != 0)
		snprintf(path, sizeof(path), "%s/%s/%s.open", t_spool, name,
		    file);
	return path;
}

/* ------------------------------------------------------------- listener */

struct t_listener {
	struct t_listen_opts o;
	int lfd;
	char addr[200];
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint8_t *buf;
	size_t len, cap;
	bool released, done;
};

static void *
listener_main(void *arg)
{
	struct t_listener *l = arg;
	uint8_t chunk[16384];
	size_t want;
	ssize_t n;
	int fd;

	fd = accept(l->lfd, NULL, NULL);
	for (; fd >= 0;) {
		pthread_mutex_lock(&l->mu);
		while (l->o.stall_after && l->len >= l->o.stall_after &&
		    !l->released)
			pthread_cond_wait(&l->cv, &l->mu);
		if (l->released && l->o.end_on_release) {
			pthread_mutex_unlock(&l->mu);
			break;
		}
		want = sizeof(chunk);
		if (l->o.close_after && l->o.close_after - l->len < want)
			want = l->o.close_after - l->len;
		if (l->o.stall_after && !l->released &&
		    l->o.stall_after - l->len < want)
			want = l->o.stall_after - l->len;
		pthread_mutex_unlock(&l->mu);
		if (want == 0)
			break;
		n = read(fd, chunk, want);
		if (n <= 0)
			break;
		pthread_mutex_lock(&l->mu);
		if (l->len + (size_t)n > l->cap) {
			l->cap = (l->len + (size_t)n) * 2;
			l->buf = realloc(l->buf, l->cap);
		}
		memcpy(l->buf + l->len, chunk, (size_t)n);
		l->len += (size_t)n;
		pthread_cond_broadcast(&l->cv);
		pthread_mutex_unlock(&l->mu);
	}
	if (fd >= 0 && l->o.reset)
		setsockopt(fd, SOL_SOCKET, SO_LINGER,
		    &(struct linger){ .l_onoff = 1, .l_linger = 0 },
		    sizeof(struct linger));
	if (fd >= 0)
		close(fd);
	pthread_mutex_lock(&l->mu);
	l->done = true;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

struct t_listener *
t_listener_start(const struct t_listen_opts *o)
{
	struct t_listener *l = calloc(1, sizeof(*l));

	cr_assert(l != NULL);
	l->o = *o;
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cv, NULL);
	if (o->unix_socket) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };

		cr_assert(strlen(t_dir) + 13 < sizeof(sun.sun_path));
		memcpy(sun.sun_path, t_dir, strlen(t_dir));
		memcpy(sun.sun_path + strlen(t_dir), "/listen.sock", 13);
		unlink(sun.sun_path);
		l->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
		cr_assert(l->lfd >= 0);
		if (o->rcvbuf > 0)
			setsockopt(l->lfd, SOL_SOCKET, SO_RCVBUF, &o->rcvbuf,
			    sizeof(o->rcvbuf));
		cr_assert(bind(l->lfd, (struct sockaddr *)&sun,
		    sizeof(sun)) == 0);
		snprintf(l->addr, sizeof(l->addr), "unix:%s", sun.sun_path);
	} else {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		socklen_t len = sizeof(sin);

		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		l->lfd = socket(AF_INET, SOCK_STREAM, 0);
		cr_assert(l->lfd >= 0);
		if (o->rcvbuf > 0)
			setsockopt(l->lfd, SOL_SOCKET, SO_RCVBUF, &o->rcvbuf,
			    sizeof(o->rcvbuf));
		cr_assert(bind(l->lfd, (struct sockaddr *)&sin,
		    sizeof(sin)) == 0);
		cr_assert(getsockname(l->lfd, (struct sockaddr *)&sin,
		    &len) == 0);
		snprintf(l->addr, sizeof(l->addr), "127.0.0.1:%u",
		    (unsigned)ntohs(sin.sin_port));
	}
	cr_assert(listen(l->lfd, 4) == 0);
	cr_assert(pthread_create(&l->th, NULL, listener_main, l) == 0);
	return l;
}

const char *
t_listener_addr(const struct t_listener *l)
{
	return l->addr;
}

void
t_listener_wait(struct t_listener *l, size_t n)
{
	struct timespec dl;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 60;
	pthread_mutex_lock(&l->mu);
	while (l->len < n && !l->done)
		if (pthread_cond_timedwait(&l->cv, &l->mu, &dl) == ETIMEDOUT)
			break;
	ok = l->len >= n || l->done;
	pthread_mutex_unlock(&l->mu);
	cr_assert(ok, "listener got %zu bytes, wanted %zu", l->len, n);
}

void
t_listener_release(struct t_listener *l)
{
	pthread_mutex_lock(&l->mu);
	l->released = true;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

const uint8_t *
t_listener_join(struct t_listener *l, size_t *len)
{
	pthread_join(l->th, NULL);
	close(l->lfd);
	l->lfd = -1;
	*len = l->len;
	return l->buf;
}

void
t_listener_free(struct t_listener *l)
{
	if (l->lfd >= 0) {
		shutdown(l->lfd, SHUT_RDWR);
		close(l->lfd);
	}
	free(l->buf);
	free(l);
}

long
t_listener_peer_unacked(const struct t_listener *l)
{
	const char *colon = strrchr(l->addr, ':');
	unsigned lport, rport, tx, rx;
	char line[512];
	long best = -1;
	FILE *f;

	if (colon == NULL || (f = fopen("/proc/net/tcp", "re")) == NULL)
		return -1;
	lport = (unsigned)atoi(colon + 1);
	/* "sl local rem st tx_queue:rx_queue ...", addresses as HEX:PORT. */
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, " %*d: %*x:%*x %*x:%x %*x %x:%x", &rport, &tx,
		    &rx) == 3 && rport == lport && (long)tx > best)
			best = (long)tx;
	fclose(f);
	return best;
}

/* ---------------------------------------------- a server under the library */

void
t_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static bool
sanitized(void)
{
	const char *s = getenv("TCPSPOOL_TEST_SANITIZE");

	return s != NULL && (strstr(s, "address") || strstr(s, "undefined") ||
	    strstr(s, "thread"));
}

void
t_preload_env(char *buf, size_t len)
{
	const char *p = getenv("TCPSPOOL_TEST_PRELOAD");
	char *colon;

	if (!sanitized() || p == NULL) {
		snprintf(buf, len, "LD_PRELOAD");	/* unset */
		return;
	}
	snprintf(buf, len, "LD_PRELOAD=%s", p);
	cr_assert((colon = strrchr(buf, ':')) != NULL);
	*colon = '\0';
}

int
t_read_port(const char *path)
{
	FILE *f;
	int port = 0, i;

	for (i = 0; i < 1000 && port == 0; i++) {
		if ((f = fopen(path, "r")) != NULL) {
			if (fscanf(f, "%d", &port) != 1)
				port = 0;
			fclose(f);
		}
		if (port == 0)
			t_sleep_ms(20);
	}
	cr_assert(port > 0, "server_a announced no port");
	return port;
}

int
t_connect_stalled(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	/* CLOEXEC: a server started later must not hold it open. */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), small = 4096;

	cr_assert(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	return fd;
}

void
t_wait_stream(const char *dir, const char *cond, char name[SPOOL_NAME_MAX],
    int *pid)
{
	char prog[2048], json[400];
	struct t_out o, py;
	int i, p;

	snprintf(json, sizeof(json), "%s/ls-wait.json", t_dir);
	snprintf(prog, sizeof(prog),
	    "import json, sys\n"
	    "for line in sys.stdin:\n"
	    "    o = json.loads(line)\n"
	    "    s = o['status']\n"
	    "    if %s:\n"
	    "        print(o['stream'], o['pid'])\n"
	    "        break\n", cond);
	for (i = 0; i < 600; i++) {
		t_cli(&o, "ls", "--json", dir, NULL);
		t_write_file(json, o.out, o.out_len);
		t_out_free(&o);
		t_python(&py, prog, json);
		if (sscanf(py.out, "%16s %d", name, &p) == 2) {
			t_out_free(&py);
			if (pid != NULL)
				*pid = p;
			return;
		}
		t_out_free(&py);
		t_sleep_ms(50);
	}
	cr_assert_fail("no stream with %s appeared in ls --json", cond);
}

void
t_server_start(struct t_server *s, const char *tag, const char *const *opts,
    const char *const *args)
{
	const char *fdir = getenv("TCPSPOOL_FIXTURE_DIR");
	char pre[PATH_MAX + 16], fixture[PATH_MAX], port_file[400];
	char resume[16];
	const char *env[] = { pre, "TCPSPOOL_LIB", NULL };
	const char *argv[64];
	int pfd[2], n = 0, i;

	cr_assert(fdir != NULL);
	snprintf(fixture, sizeof(fixture), "%s/server_a", fdir);
	snprintf(port_file, sizeof(port_file), "%s/port-%s", t_dir, tag);
	cr_assert(pipe2(pfd, O_CLOEXEC) == 0);
	cr_assert(fcntl(pfd[0], F_SETFD, 0) == 0);	/* server_a's end */
	snprintf(resume, sizeof(resume), "%d", pfd[0]);
	t_preload_env(pre, sizeof(pre));
	argv[n++] = "CLI";
	argv[n++] = "run";
	argv[n++] = "--dir";
	argv[n++] = t_spool;
	argv[n++] = "--log-level";
	argv[n++] = "error";
	for (i = 0; opts[i] != NULL; i++)
		argv[n++] = opts[i];
	argv[n++] = "--";
	argv[n++] = fixture;
	argv[n++] = "--port-file";
	argv[n++] = port_file;
	argv[n++] = "--sndbuf";
	argv[n++] = "4096";
	argv[n++] = "--resume-fd";
	argv[n++] = resume;
	for (i = 0; args[i] != NULL; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	t_spawn(&s->proc, argv, env);
	close(pfd[0]);
	s->resume = pfd[1];
	s->port = t_read_port(port_file);
}

void
t_server_end(struct t_server *s)
{
	struct t_out o;

	close(s->resume);
	if (!t_wait_deadline(&s->proc, &o, 120000))
		cr_log_warn("server_a did not end: killed");
	t_out_free(&o);
}
