/*
 * Security of the spool (FORMAT.md §1, libtcpspool(7)):
 *   - the spool dir (and any parent the library creates) is made 0700,
 *     stream dirs 0700, files 0600;
 *   - a spool dir that is a symlink, belongs to another user or is group-
 *     or world-writable is refused: pass-through (server_a behaves as
 *     without the library), one log line, nothing written there;
 *   - symlinks planted where the library opens files (progress,
 *     status.tmp) are not followed: their targets stay untouched;
 *   - an AT_SECURE process (a setgid, and where the build dir is in
 *     reach of nobody a setuid-nobody, copy of server_a that links the
 *     library, since the loader ignores LD_PRELOAD paths in a secure
 *     process) is never spooled, though the library is in its memory;
 *   - the CLI refuses stream paths outside its spool dir and stream
 *     entries that are symlinks.
 * Tests that need root (chown, setuid, setgid) skip with a message
 * otherwise.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rel.h"

#define NOBODY	65534

TestSuite(security, .init = h_setup, .fini = h_teardown, .timeout = 300);

static const char *const server_args[] = { "--sndbuf=4096", "--count=40000",
	"--no-fork", NULL };
static const char *const reader_args[] = { "--rcvbuf=4096",
	"--expect-prefix", "--count=40000", NULL };

static char bad_modes[2048];
static int nbad;

static int
check_mode(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	mode_t want = flag == FTW_D ? 0700 : 0600;

	(void)f;
	if ((flag == FTW_D || flag == FTW_F) && (st->st_mode & 07777) != want) {
		nbad++;
		snprintf(bad_modes + strlen(bad_modes), sizeof(bad_modes) -
		    strlen(bad_modes), "%s %04o; ", path,
		    (unsigned)(st->st_mode & 07777));
	}
	return 0;
}

Test(security, spool_dir_0700_stream_dirs_0700_files_0600)
{
	char made[PATH_MAX], dirvar[PATH_MAX + 16];
	const char *env[] = { dirvar, "TCPSPOOL_LINGER=60s", NULL };
	struct h_spawn o = { .preload = true, .env = env };
	struct h_story st;
	char names[4][32];

	/* Neither the dir nor its parent exists: the library makes both. */
	umask(0);
	h_fmt(made, sizeof(made), "%s/made", h_dir());
	h_fmt(dirvar, sizeof(dirvar), "TCPSPOOL_DIR=%s/spool", made);
	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=40000", NULL },
	    (const char *[]){ "--rcvbuf=4096", "--count=40000", NULL });
	h_story_wait_status(&st, "done ", 1);
	cr_assert_eq(rel_streams(dirvar + 13, names, 4), 1, "no stream in %s",
	    dirvar + 13);
	bad_modes[0] = '\0';
	nbad = 0;
	nftw(made, check_mode, 16, FTW_PHYS);
	cr_expect_eq(nbad, 0, "modes (dirs must be 0700, files 0600, even "
	    "with umask 0): %s", bad_modes);
	h_story_finish(&st);
	cr_expect_eq(h_exit_code(st.server), 0, "%s", h_describe(st.server));
	cr_expect(st.result[0].complete == 1, "%s", h_describe(st.reader[0]));
}

enum bad_dir { SYMLINK, OTHER_OWNER, GROUP_WRITABLE, WORLD_WRITABLE,
	STICKY_WORLD_WRITABLE };

struct bad_dir_case {
	enum bad_dir kind;
	char name[32];
};

static struct bad_dir_case bad_dirs[] = {
	{ SYMLINK, "symlink" },
	{ OTHER_OWNER, "owned-by-nobody" },
	{ GROUP_WRITABLE, "mode-0770" },
	{ WORLD_WRITABLE, "mode-0777" },
	{ STICKY_WORLD_WRITABLE, "mode-1777" },
};

ParameterizedTestParameters(security, unsafe_spool_dir_is_refused_passes_through)
{
	return cr_make_param_array(struct bad_dir_case, bad_dirs,
	    sizeof(bad_dirs) / sizeof(bad_dirs[0]));
}

ParameterizedTest(struct bad_dir_case *c, security,
    unsafe_spool_dir_is_refused_passes_through)
{
	char dir[PATH_MAX], target[PATH_MAX], dirvar[PATH_MAX + 16];
	const char *env[] = { dirvar, NULL };
	struct h_spawn o = { .preload = true, .env = env };
	struct h_story st;
	int lines;

	h_fmt(dir, sizeof(dir), "%s/%s", h_dir(), c->name);
	h_fmt(target, sizeof(target), "%s/target", h_dir());
	cr_assert_eq(mkdir(target, 0700), 0);
	switch (c->kind) {
	case SYMLINK:
		cr_assert_eq(symlink(target, dir), 0);
		break;
	case OTHER_OWNER:
		if (!rel_root())
			cr_skip_test("not root: cannot chown the spool dir");
		cr_assert_eq(mkdir(dir, 0700), 0);
		cr_assert_eq(chown(dir, NOBODY, NOBODY), 0, "chown: %s",
		    strerror(errno));
		snprintf(target, sizeof(target), "%s", dir);
		break;
	default:
		cr_assert_eq(mkdir(dir, 0700), 0);
		cr_assert_eq(chmod(dir, c->kind == GROUP_WRITABLE ? 0770 :
		    c->kind == WORLD_WRITABLE ? 0777 : 01777), 0);
		snprintf(target, sizeof(target), "%s", dir);
		break;
	}
	h_fmt(dirvar, sizeof(dirvar), "TCPSPOOL_DIR=%s", dir);
	h_story_start(&st, &o, 1, server_args, reader_args);
	h_story_wait_status(&st, "gaveup ", 1);
	h_story_finish(&st);
	cr_expect_eq(h_exit_code(st.server), 3, "%s: server_a did not behave "
	    "as without the library: %s", c->name, h_describe(st.server));
	cr_expect(st.result[0].valid && st.result[0].mismatch == -1, "%s: %s",
	    c->name, h_describe(st.reader[0]));
	lines = h_stderr_lines_with(st.server, "tcpspool");
	cr_expect_eq(lines, 1, "%s: expected one log line, got %d: %s",
	    c->name, lines, h_describe(st.server));
	cr_expect_eq(h_stderr_lines_with(st.server, dir), 1, "%s: the log "
	    "line does not name the dir: %s", c->name, h_describe(st.server));
	cr_expect_eq(rel_dir_bytes(target), 0, "%s: something was written "
	    "in the refused dir", c->name);
	{
		char names[4][32];

		cr_expect_eq(rel_streams(target, names, 4), 0, "%s: a stream "
		    "dir was made in the refused dir", c->name);
	}
}

static void
write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	cr_assert(fd >= 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void
expect_file(const char *path, const char *text)
{
	char got[256];

	cr_expect_eq(rel_read_file(path, got, sizeof(got)),
	    (ssize_t)strlen(text), "%s was written through a planted symlink",
	    path);
	cr_expect_str_eq(got, text, "%s was written through a planted symlink",
	    path);
}

Test(security, planted_symlinks_in_a_stream_dir_are_not_followed)
{
	static const char *const env[] = { "TCPSPOOL_LINGER=60s", NULL };
	struct h_spawn o = { .preload = true, .env = env };
	char names[4][32], sdir[PATH_MAX], link[PATH_MAX];
	char victim[3][PATH_MAX];
	static const char *const planted[] = { "progress", "status.tmp",
		"0000000000000001.open" };
	struct h_story st;

	h_story_start(&st, &o, 1,
	    (const char *[]){ "--sndbuf=4096", "--count=40000", NULL },
	    (const char *[]){ "--rcvbuf=4096", "--count=40000", NULL });
	h_story_wait_status(&st, "done ", 1);
	cr_assert_eq(rel_streams(h_spool_dir(), names, 4), 1);
	h_fmt(sdir, sizeof(sdir), "%s/%s", h_spool_dir(), names[0]);
	/* The replay persists its progress, the library republishes its
	 * status and would open a next segment: each name now points at a
	 * file of ours (the library runs as we do: following would work). */
	for (int i = 0; i < 3; i++) {
		h_fmt(victim[i], sizeof(victim[i]), "%s/victim-%d", h_dir(), i);
		write_file(victim[i], "not yours\n");
		h_fmt(link, sizeof(link), "%s/%s", sdir, planted[i]);
		unlink(link);
		cr_assert_eq(symlink(victim[i], link), 0, "symlink %s: %s",
		    link, strerror(errno));
	}
	h_story_finish(&st);
	for (int i = 0; i < 3; i++)
		expect_file(victim[i], "not yours\n");
	cr_expect_eq(h_exit_code(st.server), 0, "the host did not survive "
	    "the planted links: %s", h_describe(st.server));
	cr_expect(st.result[0].valid && st.result[0].mismatch == -1,
	    "%s", h_describe(st.reader[0]));
}

/*
 * A copy of server_a linked with the library, in the test's private dir,
 * owned by owner:group with mode (04755: setuid, 02755: setgid).
 */
static void
secure_copy(char *out, size_t len, const char *name, uid_t owner,
    gid_t group, mode_t mode)
{
	char src[PATH_MAX], bin[PATH_MAX], cmd[3 * PATH_MAX];

	h_fixture(src, sizeof(src), "../reliability/server_a_linked");
	h_fmt(bin, sizeof(bin), "%s/bin", h_dir());
	mkdir(bin, 0755);
	h_fmt(out, len, "%s/server_a_%s", bin, name);
	h_fmt(cmd, sizeof(cmd), "cp '%s' '%s'", src, out);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
	cr_assert_eq(chown(out, owner, group), 0, "chown %s: %s", out,
	    strerror(errno));
	cr_assert_eq(chmod(out, mode), 0, "chmod %s: %s", out,
	    strerror(errno));
}

static bool
maps_library(pid_t pid)
{
	static char maps[1 << 20];
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	return rel_read_file(path, maps, sizeof(maps)) > 0 &&
	    strstr(maps, "libtcpspool.so") != NULL;
}

/*
 * True if user uid can open the library where the loader of a secure
 * program looks for it (the build dir: the program's runpath, $ORIGIN
 * aside, which the loader ignores in a secure program). A clone under
 * /root (0700) is out of reach of nobody.
 */
static bool
library_readable_by(uid_t uid, gid_t gid)
{
	const char *lib = getenv("TCPSPOOL_TEST_LIB");
	pid_t pid;
	int status;

	cr_assert(lib != NULL, "TCPSPOOL_TEST_LIB unset: run via meson test");
	if ((pid = fork()) == 0) {
		if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 ||
		    setresuid(uid, uid, uid) != 0)
			_exit(2);
		_exit(access(lib, R_OK) == 0 ? 0 : 1);
	}
	cr_assert(pid > 0, "fork: %s", strerror(errno));
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/*
 * The story of an AT_SECURE process that has the library in its memory
 * (the loader ignores LD_PRELOAD paths in a secure process, so the copy
 * links it): it is passed through, sees EAGAIN as without the library,
 * says nothing and spools nothing.
 */
static void
secure_copy_is_never_spooled(const char *name, uid_t owner, gid_t group,
    mode_t mode)
{
	/* (Sanitizer builds: see setuid_asan.c.) */
	static const char *const env[] = { "TCPSPOOL_LINGER=60s", NULL };
	struct h_spawn o = { .preload = false, .env = env };
	char prog[PATH_MAX];
	struct h_argv a = { .n = 0 };
	struct h_proc *p;
	char files[1024];
	const char *line;

	/* Control: the linked copy, not secure, spools (so the library is
	 * really active in it): it writes its 1.1 MB to a reader that reads
	 * nothing until then, through a few KiB of socket buffers. */
	secure_copy(prog, sizeof(prog), "plain", geteuid(), getegid(), 0755);
	h_args(&a, "--status-fd", "3", "--sndbuf=4096", "--count=40000",
	    "--no-fork", NULL);
	p = h_spawn("plain", prog, &a, &o);
	line = h_status_line(p, "port ", 0, H_DEADLINE_MS);
	cr_assert(line != NULL, "%s", h_describe(p));
	{
		unsigned short port = (unsigned short)atoi(line + 5);
		struct h_gate gate;
		struct h_proc *r;

		h_gate_init(&gate);
		r = h_reader(0, port, &gate, "--rcvbuf=4096", "--count=40000",
		    NULL);
		cr_assert(h_status_line(p, "done ", 0, H_DEADLINE_MS) != NULL,
		    "the linked server_a did not spool (control): %s",
		    h_describe(p));
		h_gate_open(&gate);
		cr_assert(h_wait(r, H_DEADLINE_MS) && h_wait(p, H_DEADLINE_MS));
		close(gate.rfd);
		cr_assert_eq(h_exit_code(p), 0, "the linked server_a did not "
		    "spool (control): %s", h_describe(p));
		cr_assert_eq(h_exit_code(r), 0, "%s", h_describe(r));
	}
	cr_assert(h_spool_wait_empty(10000), "the control's spool stayed");

	/* The same program, secure, started by root: its reader reads
	 * nothing until it gave up, as server A does without the library. */
	secure_copy(prog, sizeof(prog), name, owner, group, mode);
	{
		struct h_argv b = { .n = 0 };
		unsigned short port;
		struct h_gate gate;
		struct h_proc *r;
		struct h_result res;

		h_args(&b, "--status-fd", "3", "--sndbuf=4096",
		    "--count=40000", "--no-fork", NULL);
		p = h_spawn(name, prog, &b, &o);
		line = h_status_line(p, "port ", 0, H_DEADLINE_MS);
		cr_assert(line != NULL, "%s", h_describe(p));
		port = (unsigned short)atoi(line + 5);
		cr_expect(maps_library(h_pid(p)), "the library is not loaded "
		    "in the %s copy: the test proves nothing", name);
		h_gate_init(&gate);
		r = h_reader(1, port, &gate, "--rcvbuf=4096", "--expect-prefix",
		    "--count=40000", NULL);
		cr_expect(h_status_line(p, "gaveup ", 0, H_DEADLINE_MS) != NULL,
		    "the %s server_a did not see EAGAIN with its reader "
		    "stopped: %s", name, h_describe(p));
		h_gate_open(&gate);
		cr_assert(h_wait(p, H_DEADLINE_MS) && h_wait(r, H_DEADLINE_MS));
		close(gate.rfd);
		cr_expect_eq(h_exit_code(p), 3, "the %s server_a did not "
		    "see EAGAIN as without the library: %s", name,
		    h_describe(p));
		cr_expect(h_reader_result(r, &res) && res.mismatch == -1,
		    "%s", h_describe(r));
		cr_expect_eq(h_stderr_lines_with(p, "tcpspool"), 0, "%s",
		    h_describe(p));
	}
	cr_expect_eq(h_spool_files(files, sizeof(files)), 0, "a %s "
	    "process spooled: %s", name, files);
}

/*
 * Setgid, run by root: AT_SECURE with the effective user unchanged, so the
 * loader finds the library in the build dir wherever the clone is, and
 * the spool dir is the process's own: only the AT_SECURE check can keep
 * it from spooling.
 */
Test(security, setgid_process_is_never_spooled)
{
	if (!rel_root())
		cr_skip_test("not root: cannot make a setgid copy of server_a");
	secure_copy_is_never_spooled("setgid", geteuid(), NOBODY, 02755);
}

/*
 * Setuid nobody, run by root: the loader runs as nobody and must reach the
 * library in the build dir, which it cannot in a clone under /root (0700).
 */
Test(security, setuid_process_is_never_spooled)
{
	if (!rel_root())
		cr_skip_test("not root: cannot make a setuid copy of server_a");
	if (!library_readable_by(NOBODY, NOBODY))
		cr_skip_test("the build dir is out of reach of user nobody (a "
		    "parent dir without o+x, as /root): the loader of a "
		    "setuid-nobody program cannot load %s; the setgid case "
		    "proves the same check", getenv("TCPSPOOL_TEST_LIB"));
	secure_copy_is_never_spooled("setuid", NOBODY, NOBODY, 04755);
}

/* A stream-looking dir with a segment-looking file, outside the spool. */
static void
outside_stream(char *out, size_t len)
{
	char dir[PATH_MAX], file[PATH_MAX + 32];

	h_fmt(dir, sizeof(dir), "%s/outside", h_dir());
	mkdir(dir, 0700);
	h_fmt(out, len, "%s/0123456789abcdef", dir);
	cr_assert_eq(mkdir(out, 0700), 0);
	h_fmt(file, sizeof(file), "%s/0000000000000000.seg", out);
	write_file(file, "precious\n");
}

Test(security, cli_refuses_streams_outside_the_spool_dir)
{
	char outside[PATH_MAX], rel[PATH_MAX], link[PATH_MAX], out[4096];
	char file[PATH_MAX + 32];
	struct h_proc *cli;
	const char *const *cmd;
	static const char *const cmds[][8] = {
		{ "rm", NULL },
		{ "dump", "--format", "raw", NULL },
		{ "verify", "--repair", NULL },
		{ "stat", NULL },
		{ "replay", "--to", "127.0.0.1:9", NULL },
	};

	outside_stream(outside, sizeof(outside));
	h_fmt(file, sizeof(file), "%s/0000000000000000.seg", outside);
	/* The same dir, as an absolute path, a relative path with "..",
	 * and a symlink planted in the spool dir under a stream's name. */
	h_fmt(rel, sizeof(rel), "%s/../outside/0123456789abcdef", h_spool_dir());
	h_fmt(link, sizeof(link), "%s/fedcba9876543210", h_spool_dir());
	cr_assert_eq(symlink(outside, link), 0);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		const char *given[] = { outside, rel, "fedcba9876543210", link };

		cmd = cmds[i];
		for (size_t g = 0; g < 4; g++) {
			struct h_argv a = { .n = 0 };
			int code;

			h_arg(&a, "%s", cmd[0]);
			h_arg(&a, "%s", given[g]);
			for (int k = 1; cmd[k] != NULL; k++)
				h_arg(&a, "%s", cmd[k]);
			h_args(&a, "--dir", h_spool_dir(), NULL);
			cli = h_spawn("cli", getenv("TCPSPOOL_TEST_CLI"), &a,
			    NULL);
			cr_assert(h_wait(cli, H_DEADLINE_MS));
			code = h_exit_code(cli);
			cr_expect(code == 1 || code == 64, "tcpspool %s %s: "
			    "exit %d, expected a refusal: %s", cmd[0],
			    given[g], code, h_describe(cli));
			cr_expect_gt(strlen(h_stderr(cli)), 0, "tcpspool %s "
			    "%s: refused without a word", cmd[0], given[g]);
			cr_expect_eq(rel_read_file(file, out, sizeof(out)), 9,
			    "tcpspool %s %s touched the outside dir", cmd[0],
			    given[g]);
		}
	}
	cli = h_cli(out, sizeof(out), "rm", "--orphans", "--dir",
	    h_spool_dir(), NULL);
	cr_expect_eq(rel_read_file(file, out, sizeof(out)), 9, "rm --orphans "
	    "followed the planted symlink: %s", h_describe(cli));
}
