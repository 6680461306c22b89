/*
 * Bad input, at the process level.
 *
 * Environment: every TCPSPOOL_ variable with an empty, negative, huge,
 * non-numeric and suffix-garbage value (and, for the two paths, escapes
 * with ".." and control bytes), given to a real server_a under the
 * library: an invalid value gives one stderr line naming the variable and
 * the whole process passes through (server_a gives up at its first EAGAIN,
 * exit 3, as without the library; nothing is spooled or created); a value
 * that is valid (an empty port list means every port) spools as usual.
 * The parser itself is unit-tested and fuzzed (tests/preload/config,
 * tests/fuzz/config); this is the same promise seen from outside.
 *
 * Spool files: a spool made by the library (kill -9 after the writes, so
 * it has sealed segments and an .open one) is copied, damaged one way per
 * copy — truncated at every structure boundary, bit-flipped in every
 * header field, frame fields set to every limit of FORMAT.md §2 with the
 * header checksum recomputed (so the reader's bounds, not its crc, must
 * catch them), hostile progress files — and given to `tcpspool verify`,
 * `dump`, `replay` and `ls`. None may crash or hang, and all four must
 * give the outcome of one table (struct variant: damaged, exit 2, or
 * clean, exit 0), so they judge every damaged stream alike (issue 18); a
 * replay that says it delivered everything (exit 0) must have sent
 * exactly what the undamaged spool holds.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rel.h"

TestSuite(badinput, .init = h_setup, .fini = h_teardown, .timeout = 300);

/* ------------------------------------------------------ environment */

struct var_case {
	char name[32];
	bool empty_port_list;	/* "" is valid for it */
	bool path;		/* also try path escapes */
};

static struct var_case vars[] = {
	{ "TCPSPOOL_DISABLE", false, false },
	{ "TCPSPOOL_DIR", false, true },
	{ "TCPSPOOL_MAX_STREAM", false, false },
	{ "TCPSPOOL_MAX", false, false },
	{ "TCPSPOOL_MIN_FREE", false, false },
	{ "TCPSPOOL_SEGMENT_SIZE", false, false },
	{ "TCPSPOOL_LEVEL", false, false },
	{ "TCPSPOOL_FLUSH", false, false },
	{ "TCPSPOOL_FSYNC", false, false },
	{ "TCPSPOOL_FSYNC_INTERVAL", false, false },
	{ "TCPSPOOL_LINGER", false, false },
	{ "TCPSPOOL_OVERFLOW", false, false },
	{ "TCPSPOOL_BLOCK_TIMEOUT", false, false },
	{ "TCPSPOOL_PORTS", true, false },
	{ "TCPSPOOL_PEER_PORTS", true, false },
	{ "TCPSPOOL_LOG", false, true },
	{ "TCPSPOOL_LOG_LEVEL", false, false },
};

static const char *const values[] = {
	"",				/* empty */
	"-1",				/* negative */
	"99999999999999999999999999",	/* huge */
	"abc",				/* non-numeric */
	"12Qx",				/* suffix garbage */
	" 1",				/* leading blank */
	"1\x01",			/* a control byte */
};
static const char *const path_values[] = {
	"/tmp/../etc/tcpspool-escape",
	"/tmp/tcpspool-x/../../etc/tcpspool-escape",
	"tcpspool-relative",
	"./tcpspool-relative",
	"/tmp/tcpspool-\nnewline",
};

ParameterizedTestParameters(badinput, every_variable_rejects_bad_values_and_passes_through)
{
	return cr_make_param_array(struct var_case, vars,
	    sizeof(vars) / sizeof(vars[0]));
}

/* One run of server_a with name=value; invalid: pass-through expected. */
static void
run_with(const char *name, const char *value, bool valid)
{
	char var[256], files[1024];
	const char *env[] = { var, "TCPSPOOL_LINGER=60s", NULL };
	struct h_spawn o = { .preload = true, .env = env };
	struct h_result *r;
	struct h_story st;
	int lines;

	if (strcmp(name, "TCPSPOOL_LINGER") == 0)
		env[1] = NULL;
	h_fmt(var, sizeof(var), "%s=%s", name, value);
	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=40000", "--no-fork",
	        NULL },
	    (const char *[]){ "--rcvbuf=4096", "--expect-prefix",
	        "--count=40000", NULL });
	if (valid) {
		h_story_wait_status(&st, "done ", 1);
		h_story_finish(&st);
		h_story_assert_delivered(&st, 40000LL * REL_MSG);
		return;
	}
	h_story_wait_status(&st, "gaveup ", 1);
	h_story_finish(&st);
	r = &st.result[0];
	lines = h_stderr_lines_with(st.server, name);
	cr_expect_eq(lines, 1, "%s=\"%s\": expected one stderr line naming "
	    "the variable, got %d: %s", name, value, lines,
	    h_describe(st.server));
	cr_expect_eq(h_exit_code(st.server), 3, "%s=\"%s\": server_a did not "
	    "behave as without the library: %s", name, value,
	    h_describe(st.server));
	cr_expect(r->valid && r->mismatch == -1, "%s=\"%s\": %s", name, value,
	    h_describe(st.reader[0]));
	cr_expect_eq(h_spool_files(files, sizeof(files)), 0, "%s=\"%s\": "
	    "something was spooled: %s", name, value, files);
	cr_expect_eq(h_stdout_size(st.server), 0, "%s: output on stdout",
	    name);
	if (strchr(value, '/') != NULL || strncmp(value, "tcpspool-", 9) == 0)
		cr_expect_neq(access(value, F_OK), 0, "%s=\"%s\" was created",
		    name, value);
}

ParameterizedTest(struct var_case *v, badinput,
    every_variable_rejects_bad_values_and_passes_through)
{
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
		run_with(v->name, values[i], v->empty_port_list &&
		    values[i][0] == '\0');
	for (size_t i = 0; v->path && i < sizeof(path_values) /
	    sizeof(path_values[0]); i++)
		run_with(v->name, path_values[i], false);
}

/* ------------------------------------------------------ spool files */

static char base_stream[32];

/* A spool with sealed segments and an .open one, its writer killed. */
static void
make_base_spool(void)
{
	static const char *const env[] = { "TCPSPOOL_LINGER=60s",
		"TCPSPOOL_SEGMENT_SIZE=64K", "TCPSPOOL_LEVEL=1", NULL };
	struct h_spawn o = { .preload = true, .env = env };
	struct h_story st;
	char names[4][32];

	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=150000", NULL },
	    (const char *[]){ "--rcvbuf=4096", "--expect-prefix",
	        "--count=150000", NULL });
	h_story_wait_status(&st, "done ", 1);
	h_kill_group(st.server, SIGKILL);
	h_story_wait_server(&st);
	h_story_finish_readers(&st);
	cr_assert_eq(rel_streams(h_spool_dir(), names, 4), 1);
	snprintf(base_stream, sizeof(base_stream), "%s", names[0]);
}

static uint32_t
crc32c(const uint8_t *p, size_t len)
{
	uint32_t c = 0xFFFFFFFFu;

	while (len--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
	}
	return c ^ 0xFFFFFFFFu;
}

static void
put_le(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

enum damage { TRUNCATE, FLIP, FRAME_FIELD, SEG_FIELD, PROGRESS };

/*
 * The one table of expected outcomes (issue 18 item 7): every variant is
 * either damaged (verify, dump, replay and ls all exit 2, by the one rule
 * of FORMAT.md §5 "What counts as damaged") or clean (all exit 0: the
 * field is information only). The four commands must agree with the
 * table and so with each other.
 */
struct variant {
	enum damage how;
	bool open_seg;		/* the .open segment, else the first .seg */
	long long at;		/* offset (negative: from the end) */
	int width;		/* field width in bytes */
	uint64_t value;
	const char *what;
	bool benign;		/* clean: information only, readers
				 * ignore it; every other variant is
				 * damaged */
};

#define MiB (1u << 20)
static const struct variant variants[] = {
	{ TRUNCATE, false, 0, 0, 0, "seg truncated to 0", false },
	{ TRUNCATE, false, 1, 0, 0, "seg truncated to 1", false },
	{ TRUNCATE, false, 335, 0, 0, "seg truncated in its header", false },
	{ TRUNCATE, false, 336, 0, 0, "seg truncated after its header", false },
	{ TRUNCATE, false, 336 + 63, 0, 0, "seg truncated in a frame header", false },
	{ TRUNCATE, false, 336 + 64, 0, 0, "seg truncated after a frame header", false },
	{ TRUNCATE, false, 336 + 65, 0, 0, "seg truncated in a payload", false },
	{ TRUNCATE, false, -64, 0, 0, "seg without its footer", false },
	{ TRUNCATE, false, -1, 0, 0, "seg short of one byte", false },
	{ TRUNCATE, true, 336 + 64, 0, 0, "open truncated after a frame header", false },
	{ TRUNCATE, true, -1, 0, 0, "open short of one byte", false },
	{ FLIP, false, 0, 0, 0x01, "flip: segment magic", false },
	{ FLIP, false, 8, 0, 0x02, "flip: version", false },
	{ FLIP, false, 12, 0, 0x80, "flip: header_len", false },
	{ FLIP, false, 16, 0, 0x01, "flip: segment_seq", false },
	{ FLIP, false, 24, 0, 0x01, "flip: base_seq", false },
	{ FLIP, false, 199, 0, 0x41, "flip: local address NUL", false },
	{ FLIP, false, 332, 0, 0x01, "flip: header crc", false },
	{ FLIP, false, 336, 0, 0x01, "flip: frame magic", false },
	{ FLIP, false, 336 + 16, 0, 0x10, "flip: frame count", false },
	{ FLIP, false, 336 + 24, 0, 0x10, "flip: frame raw_len", false },
	{ FLIP, false, 336 + 28, 0, 0x10, "flip: frame stored_len", false },
	{ FLIP, false, 336 + 48, 0, 0x01, "flip: payload crc", false },
	{ FLIP, false, 336 + 70, 0, 0x04, "flip: payload byte", false },
	{ FLIP, false, -64, 0, 0x01, "flip: footer magic", false },
	{ FLIP, false, -40, 0, 0x01, "flip: footer records", false },
	{ FLIP, true, 336 + 100, 0, 0x20, "flip: open payload byte", false },
	{ FRAME_FIELD, false, 4, 4, 2, "codec 2", false },
	{ FRAME_FIELD, false, 4, 4, UINT32_MAX, "codec max", false },
	{ FRAME_FIELD, false, 8, 8, UINT64_MAX, "first_seq max", false },
	{ FRAME_FIELD, false, 8, 8, 1000000, "first_seq far ahead", false },
	{ FRAME_FIELD, false, 16, 4, 0, "count 0", false },
	{ FRAME_FIELD, false, 16, 4, UINT32_MAX, "count max", false },
	{ FRAME_FIELD, false, 20, 4, UINT32_MAX, "data_len max", false },
	{ FRAME_FIELD, false, 24, 4, 0, "raw_len 0", false },
	{ FRAME_FIELD, false, 24, 4, 32 * MiB, "raw_len at the limit", false },
	{ FRAME_FIELD, false, 24, 4, 32 * MiB + 1, "raw_len over the limit", false },
	{ FRAME_FIELD, false, 24, 4, UINT32_MAX, "raw_len max", false },
	{ FRAME_FIELD, false, 28, 4, 0, "stored_len 0", false },
	{ FRAME_FIELD, false, 28, 4, 70000, "stored_len past the file", false },
	{ FRAME_FIELD, false, 28, 4, 32 * MiB, "stored_len at the limit", false },
	{ FRAME_FIELD, false, 28, 4, UINT32_MAX, "stored_len max", false },
	{ FRAME_FIELD, false, 32, 8, (uint64_t)INT64_MIN, "first_ts min", false },
	{ SEG_FIELD, false, 8, 4, 2, "version 2", false },
	{ SEG_FIELD, false, 12, 4, 337, "header_len 337", false },
	{ SEG_FIELD, false, 12, 4, UINT32_MAX, "header_len max", false },
	{ SEG_FIELD, false, 56, 8, 0, "segment_max 0", true },
	{ SEG_FIELD, false, 56, 8, UINT64_MAX, "segment_max max", true },
	{ SEG_FIELD, false, 24, 8, UINT64_MAX, "base_seq max", false },
	{ PROGRESS, false, 16, 8, UINT64_MAX, "progress next_seq max", false },
	{ PROGRESS, false, 24, 8, UINT64_MAX, "progress next_off max", false },
	{ PROGRESS, false, 24, 8, 17 * MiB, "progress next_off past a record", false },
};

/* The first .seg (or the .open) file of the stream dir sdir. */
static void
pick_segment(const char *sdir, bool open_seg, char *out, size_t len)
{
	char cmd[PATH_MAX + 128], line[PATH_MAX];
	FILE *f;

	h_fmt(cmd, sizeof(cmd), "ls '%s' | grep '\\.%s$' | head -n 1", sdir,
	    open_seg ? "open" : "seg");
	cr_assert((f = popen(cmd, "r")) != NULL);
	line[0] = '\0';
	if (fgets(line, sizeof(line), f) == NULL)
		line[0] = '\0';
	pclose(f);
	line[strcspn(line, "\n")] = '\0';
	cr_assert(line[0] != '\0', "no .%s segment in %s",
	    open_seg ? "open" : "seg", sdir);
	h_fmt(out, len, "%s/%s", sdir, line);
}

static void
apply(const struct variant *v, const char *sdir)
{
	char path[PATH_MAX];
	uint8_t b[80];
	struct stat st;
	long long at;
	int fd;

	if (v->how == PROGRESS) {
		uint8_t h[336];

		/* One valid slot (generation 1) with the hostile field, at
		 * the first record on disk (the oldest segment's base_seq):
		 * what the kill left acknowledged varies, the table not. */
		pick_segment(sdir, false, path, sizeof(path));
		cr_assert((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0);
		cr_assert_eq(pread(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
		close(fd);
		memset(b, 0, sizeof(b));
		memcpy(b, "TSPG", 4);
		put_le(b + 4, 1, 4);
		put_le(b + 8, 1, 8);
		memcpy(b + 16, h + 24, 8);
		put_le(b + v->at, v->value, v->width);
		put_le(b + 36, crc32c(b, 36), 4);
		h_fmt(path, sizeof(path), "%s/progress", sdir);
		unlink(path);
		cr_assert((fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC,
		    0600)) >= 0);
		cr_assert_eq(write(fd, b, sizeof(b)), (ssize_t)sizeof(b));
		close(fd);
		return;
	}
	pick_segment(sdir, v->open_seg, path, sizeof(path));
	cr_assert((fd = open(path, O_RDWR | O_CLOEXEC)) >= 0);
	cr_assert_eq(fstat(fd, &st), 0);
	at = v->at < 0 ? st.st_size + v->at : v->at;
	switch (v->how) {
	case TRUNCATE:
		cr_assert_eq(ftruncate(fd, at), 0);
		break;
	case FLIP:
		cr_assert_eq(pread(fd, b, 1, at), 1);
		b[0] ^= (uint8_t)v->value;
		cr_assert_eq(pwrite(fd, b, 1, at), 1);
		break;
	case FRAME_FIELD:	/* the first frame, header crc recomputed */
		cr_assert_eq(pread(fd, b, 64, 336), 64);
		put_le(b + v->at, v->value, v->width);
		put_le(b + 60, crc32c(b, 60), 4);
		cr_assert_eq(pwrite(fd, b, 64, 336), 64);
		break;
	case SEG_FIELD: {	/* the segment header, crc recomputed */
		uint8_t h[336];

		cr_assert_eq(pread(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
		put_le(h + v->at, v->value, v->width);
		put_le(h + 332, crc32c(h, 332), 4);
		cr_assert_eq(pwrite(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
		break;
	}
	default:
		break;
	}
	close(fd);
}

/* A CLI run that must end by itself, not by a signal. */
static struct h_proc *
cli_run(const char *what, struct h_argv *a)
{
	struct h_proc *p = h_spawn("cli", getenv("TCPSPOOL_TEST_CLI"), a, NULL);

	cr_assert(h_wait(p, H_DEADLINE_MS), "%s: tcpspool %s hangs: %s", what,
	    a->v[1], h_describe(p));
	cr_expect_lt(h_exit_code(p), 128, "%s: tcpspool %s crashed: %s", what,
	    a->v[1], h_describe(p));
	cr_expect_eq(h_stderr_lines_with(p, "Sanitizer"), 0, "%s: %s", what,
	    h_describe(p));
	cr_expect_eq(h_stderr_lines_with(p, "runtime error"), 0, "%s: %s",
	    what, h_describe(p));
	return p;
}

/* replay --keep to a listener; what it sent into *got. */
static struct h_proc *
replay_variant(const char *what, const char *spool, size_t *got,
    long long *start)
{
	static uint8_t buf[8 << 20];
	struct h_argv a = { .n = 0 };
	unsigned short port;
	struct h_proc *p;
	int lfd, cfd = -1;

	*got = 0;
	*start = -1;
	lfd = rel_listen(&port);
	h_args(&a, "replay", base_stream, "--keep", "--linger", "1s", "--dir",
	    spool, "--to", NULL);
	h_arg(&a, "127.0.0.1:%u", port);
	p = h_spawn("replay", getenv("TCPSPOOL_TEST_CLI"), &a, NULL);
	/* Accept and read until the replay ends; it may never connect. */
	for (int idle = 0; idle < 9000;) {
		struct pollfd pfd = { .fd = cfd >= 0 ? cfd : lfd,
			.events = POLLIN };
		ssize_t r;

		if (poll(&pfd, 1, 10) == 1) {
			if (cfd < 0) {
				cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
				continue;
			}
			r = read(cfd, buf + *got, sizeof(buf) - *got);
			if (r > 0) {
				*got += (size_t)r;
				continue;
			}
			break;	/* EOF or error */
		}
		if (cfd < 0 && h_wait(p, 0))
			break;	/* ended without connecting */
		idle++;	/* 10 ms with nothing: at most 90 s in all */
	}
	if (cfd >= 0)
		close(cfd);
	close(lfd);
	cr_assert(h_wait(p, H_DEADLINE_MS), "%s: replay hangs: %s", what,
	    h_describe(p));
	cr_expect_lt(h_exit_code(p), 128, "%s: replay crashed: %s", what,
	    h_describe(p));
	if (*got > 0)
		*start = rel_locate(buf, *got);
	return p;
}

/* The harness keeps at most 128 processes per test: 4 per variant. */
#define PER_TEST 28
#define NVARIANTS (sizeof(variants) / sizeof(variants[0]))

ParameterizedTestParameters(badinput, damaged_spool_files_get_clear_messages_and_exit_codes)
{
	static int chunks[(NVARIANTS + PER_TEST - 1) / PER_TEST];

	for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++)
		chunks[i] = (int)i;
	return cr_make_param_array(int, chunks,
	    sizeof(chunks) / sizeof(chunks[0]));
}

ParameterizedTest(int *chunk, badinput,
    damaged_spool_files_get_clear_messages_and_exit_codes)
{
	char cmd[3 * PATH_MAX], spool[PATH_MAX], sdir[PATH_MAX];
	size_t first = (size_t)*chunk * PER_TEST, base_len;
	long long base_start;

	make_base_spool();
	/* kill -9 may cut a frame being written: the base must be clean. */
	{
		struct h_argv a = { .n = 0 };
		struct h_proc *p;

		h_args(&a, "verify", base_stream, "--repair", "--dir",
		    h_spool_dir(), NULL);
		p = cli_run("base", &a);
		cr_assert_eq(h_exit_code(p), 0, "%s", h_describe(p));
	}
	/* What a replay of the undamaged spool sends. */
	{
		struct h_proc *p;

		h_fmt(spool, sizeof(spool), "%s/base", h_dir());
		cr_assert_eq(mkdir(spool, 0700), 0);
		h_fmt(cmd, sizeof(cmd), "cp -a '%s/%s' '%s/'", h_spool_dir(),
		    base_stream, spool);
		cr_assert_eq(system(cmd), 0);
		p = replay_variant("undamaged", spool, &base_len, &base_start);
		cr_assert_eq(h_exit_code(p), 0, "%s", h_describe(p));
		cr_assert_geq(base_start, 0);
	}
	for (size_t i = first; i < NVARIANTS && i < first + PER_TEST; i++) {
		const struct variant *v = &variants[i];
		struct h_argv a = { .n = 0 }, b = { .n = 0 }, c = { .n = 0 };
		struct h_proc *p;
		long long start;
		size_t got;
		int code, want;

		h_fmt(spool, sizeof(spool), "%s/v%zu", h_dir(), i);
		cr_assert_eq(mkdir(spool, 0700), 0);
		h_fmt(cmd, sizeof(cmd), "cp -a '%s/%s' '%s/'", h_spool_dir(),
		    base_stream, spool);
		cr_assert_eq(system(cmd), 0);
		h_fmt(sdir, sizeof(sdir), "%s/%s", spool, base_stream);
		apply(v, sdir);

		want = v->benign ? 0 : 2;
		h_args(&a, "verify", base_stream, "--dir", spool, NULL);
		p = cli_run(v->what, &a);
		code = h_exit_code(p);
		cr_expect_eq(code, want, "%s: verify exit %d, the table says "
		    "%d: %s", v->what, code, want, h_describe(p));

		h_args(&b, "dump", base_stream, "--format", "raw", "--dir",
		    spool, NULL);
		p = cli_run(v->what, &b);
		code = h_exit_code(p);
		cr_expect_eq(code, want, "%s: dump exit %d, the table says "
		    "%d: %s", v->what, code, want, h_describe(p));
		if (code != 0)
			cr_expect_gt(strlen(h_stderr(p)), 0, "%s: dump exit "
			    "%d without a word", v->what, code);

		h_args(&c, "ls", "--dir", spool, NULL);
		p = cli_run(v->what, &c);
		code = h_exit_code(p);
		cr_expect_eq(code, want, "%s: ls exit %d, the table says "
		    "%d: %s", v->what, code, want, h_describe(p));

		p = replay_variant(v->what, spool, &got, &start);
		code = h_exit_code(p);
		cr_expect_eq(code, want, "%s: replay exit %d, the table says "
		    "%d: %s", v->what, code, want, h_describe(p));
		if (code != 0)
			cr_expect_gt(strlen(h_stderr(p)), 0, "%s: replay exit "
			    "%d without a word", v->what, code);
		if (code == 0 && got > 0)
			cr_expect_geq(start, 0, "%s: replay said it delivered "
			    "everything but sent %zu bytes that are not one "
			    "piece of the stream", v->what, got);
		/* "All delivered" (exit 0) from a damaged spool must mean all
		 * of it: the same bytes as the undamaged one. */
		if (code == 0 && v->how != PROGRESS)
			cr_expect(got == base_len && start == base_start,
			    "%s: replay exit 0 (all delivered) but it sent %zu "
			    "bytes from stream offset %lld; the undamaged spool "
			    "holds %zu bytes from %lld: records were dropped "
			    "silently", v->what, got, start, base_len,
			    base_start);
	}
}
