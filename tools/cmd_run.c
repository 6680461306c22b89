/*
 * cmd_run.c — tcpspool run: runs a program with libtcpspool.so preloaded,
 * like torsocks or proxychains. Options become TCPSPOOL_ variables, the
 * library is appended to whatever LD_PRELOAD already holds, then exec.
 *
 * The library is found, in order: --lib, $TCPSPOOL_LIB, the build tree
 * (../preload/libtcpspool.so next to this executable), the installed libdir.
 */
#include <sys/stat.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"

#ifndef TCPSPOOL_LIBDIR
#define TCPSPOOL_LIBDIR "/usr/local/lib"
#endif
#define LIB_NAME "libtcpspool.so"

static const char run_usage[] =
    "usage: tcpspool run [OPTIONS] [--] PROGRAM [ARGS...]\n"
    "\n"
    "Runs PROGRAM with libtcpspool.so preloaded (appended to LD_PRELOAD).\n"
    "Each option sets the TCPSPOOL_ variable named beside it; variables\n"
    "already in the environment are kept unless an option overrides them.\n"
    "\n"
    "  --dir DIR              TCPSPOOL_DIR           spool dir\n"
    "  --max-stream SIZE      TCPSPOOL_MAX_STREAM    pending bytes per stream\n"
    "  --max SIZE             TCPSPOOL_MAX           bytes on disk, whole dir\n"
    "  --min-free SIZE        TCPSPOOL_MIN_FREE      free disk to keep\n"
    "  --segment-size SIZE    TCPSPOOL_SEGMENT_SIZE  segment rotation size\n"
    "  --level N              TCPSPOOL_LEVEL         deflate level 0..9\n"
    "  --flush DURATION       TCPSPOOL_FLUSH         max time bytes stay in memory\n"
    "  --fsync POLICY         TCPSPOOL_FSYNC         never|interval|always\n"
    "  --fsync-interval DURATION TCPSPOOL_FSYNC_INTERVAL\n"
    "  --linger DURATION      TCPSPOOL_LINGER        drain bound at close and exit\n"
    "  --overflow POLICY      TCPSPOOL_OVERFLOW      eagain|block|drop\n"
    "  --block-timeout DURATION TCPSPOOL_BLOCK_TIMEOUT\n"
    "  --ports LIST           TCPSPOOL_PORTS         local ports, e.g. 80,8000-8100\n"
    "  --peer-ports LIST      TCPSPOOL_PEER_PORTS    peer ports\n"
    "  --log DEST             TCPSPOOL_LOG           stderr|syslog|/absolute/path\n"
    "  --log-level LEVEL      TCPSPOOL_LOG_LEVEL     error|warn|info|debug\n"
    "  --orphans POLICY       TCPSPOOL_ORPHANS       expire|keep|discard: a spool\n"
    "                         whose peer went away\n"
    "  --orphan-ttl DURATION  TCPSPOOL_ORPHAN_TTL    for expire (default 10m)\n"
    "  --resume MODE          TCPSPOOL_RESUME        off|peer-addr: such a spool\n"
    "                         goes first to the peer's next connection from\n"
    "                         the same IP address\n"
    "  --resume-ttl DURATION  TCPSPOOL_RESUME_TTL    how long it waits (10m)\n"
    "  --lib PATH             the library to preload (default: $TCPSPOOL_LIB,\n"
    "                         the build tree, then " TCPSPOOL_LIBDIR ")\n"
    "  --daemon               start tcpspool daemon for the spool dir unless\n"
    "                         one answers, and wait until it does\n"
    "  -n, --dry-run          print the environment and command, do not run\n"
    "  -h, --help             this text\n"
    "\n"
    "SIZE: digits with an optional K, M, G or T (powers of 1024, B or iB may\n"
    "follow, any case). DURATION: digits with ms, s, m or h (bare digits are\n"
    "ms). Values are checked by the library's own parser before the exec.\n"
    "\n"
    "Exit: PROGRAM's status; 1 on an error before the exec, 126 if PROGRAM\n"
    "cannot be executed, 127 if it is not found, 64 on a usage error.\n";

/* Every option that sets a TCPSPOOL_ variable. */
static const struct var {
	const char *opt;
	const char *var;
} vars[] = {
	{ "dir", "TCPSPOOL_DIR" },
	{ "max-stream", "TCPSPOOL_MAX_STREAM" },
	{ "max", "TCPSPOOL_MAX" },
	{ "min-free", "TCPSPOOL_MIN_FREE" },
	{ "segment-size", "TCPSPOOL_SEGMENT_SIZE" },
	{ "level", "TCPSPOOL_LEVEL" },
	{ "flush", "TCPSPOOL_FLUSH" },
	{ "fsync", "TCPSPOOL_FSYNC" },
	{ "fsync-interval", "TCPSPOOL_FSYNC_INTERVAL" },
	{ "linger", "TCPSPOOL_LINGER" },
	{ "overflow", "TCPSPOOL_OVERFLOW" },
	{ "block-timeout", "TCPSPOOL_BLOCK_TIMEOUT" },
	{ "ports", "TCPSPOOL_PORTS" },
	{ "peer-ports", "TCPSPOOL_PEER_PORTS" },
	{ "log", "TCPSPOOL_LOG" },
	{ "log-level", "TCPSPOOL_LOG_LEVEL" },
	{ "orphans", "TCPSPOOL_ORPHANS" },
	{ "orphan-ttl", "TCPSPOOL_ORPHAN_TTL" },
	{ "resume", "TCPSPOOL_RESUME" },
	{ "resume-ttl", "TCPSPOOL_RESUME_TTL" },
};
#define NVARS (sizeof(vars) / sizeof(vars[0]))

/*
 * Checks every TCPSPOOL_ variable the program will see with the library's
 * own parser (preload/config.c, a pure module), so what the library would
 * refuse is refused here, before the program starts. A bad value that an
 * option set is a usage error.
 */
static int
environment_check(const bool given[NVARS])
{
	extern char **environ;
	char err[CONFIG_MSG_MAX], warnmsg[CONFIG_MSG_MAX];
	struct tcpspool_config *cfg;
	size_t i, len;
	int rc;

	if ((cfg = malloc(sizeof(*cfg))) == NULL) {
		warn("run");
		return EXIT_ERR;
	}
	err[0] = warnmsg[0] = '\0';
	rc = config_parse(cfg, environ, err, sizeof(err), warnmsg,
	    sizeof(warnmsg));
	free(cfg);
	if (warnmsg[0] != '\0')
		warnx("warning: %s", warnmsg);
	if (rc == 0)
		return EXIT_OK;
	for (i = 0; i < NVARS; i++) {
		len = strlen(vars[i].var);
		if (given[i] && strncmp(err, vars[i].var, len) == 0 &&
		    err[len] == '=') {
			warnx("--%s: %s", vars[i].opt, err);
			return EXIT_USAGE;
		}
	}
	warnx("%s", err);
	return EXIT_ERR;
}

static bool
readable_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
	    access(path, R_OK) == 0;
}

/*
 * The loader ignores an LD_PRELOAD entry it cannot load and runs the
 * program without it: a library that is no ELF shared object would make
 * `run` a silent no-op. Checks the ELF magic and e_type ET_DYN.
 */
static bool
elf_shared_object(const char *path)
{
	unsigned char h[18];
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) == -1)
		return false;
	n = read(fd, h, sizeof(h));
	close(fd);
	/* e_type (offset 16) in the file's byte order (EI_DATA, offset 5). */
	return n == (ssize_t)sizeof(h) && memcmp(h, "\177ELF", 4) == 0 &&
	    (h[5] == 1 ? h[16] | h[17] << 8 : h[17] | h[16] << 8) == 3;
}

/* Finds the library; fills lib with an absolute path. */
static bool
find_library(const char *given, char *lib, size_t len)
{
	char exe[PATH_MAX], cand[PATH_MAX + 32], *slash;
	ssize_t n;

	if (given == NULL)
		given = getenv("TCPSPOOL_LIB");
	if (given != NULL && given[0] != '\0') {
		if (!readable_file(given)) {
			warnx("%s: library not found or not readable", given);
			return false;
		}
		if (!elf_shared_object(given)) {
			warnx("%s: not an ELF shared object, cannot be "
			    "preloaded", given);
			return false;
		}
		if (realpath(given, lib) == NULL) {
			warn("%s", given);
			return false;
		}
		return true;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		if ((slash = strrchr(exe, '/')) != NULL) {
			*slash = '\0';
			snprintf(cand, sizeof(cand), "%s/../preload/" LIB_NAME,
			    exe);
			if (readable_file(cand) && realpath(cand, lib) != NULL)
				return true;
		}
	}
	snprintf(cand, sizeof(cand), "%s/" LIB_NAME, TCPSPOOL_LIBDIR);
	if (readable_file(cand) && strlcpy(lib, cand, len) < len)
		return true;
	warnx("cannot find " LIB_NAME " (looked next to this program and in "
	    TCPSPOOL_LIBDIR "); set TCPSPOOL_LIB or use --lib");
	return false;
}

/* True if lib is already one of the entries of an LD_PRELOAD value. */
static bool
preload_has(const char *preload, const char *lib)
{
	size_t len = strlen(lib);
	const char *p = preload;

	while (*p != '\0') {
		size_t n = strcspn(p, " :");

		if (n == len && strncmp(p, lib, len) == 0)
			return true;
		p += n;
		p += strspn(p, " :");
	}
	return false;
}

static bool
set_preload(const char *lib)
{
	const char *old = getenv("LD_PRELOAD");
	char *val;
	int rc;

	if (strpbrk(lib, " :") != NULL) {
		warnx("%s: LD_PRELOAD cannot hold a path with a space or a colon",
		    lib);
		return false;
	}
	if (old == NULL || old[strspn(old, " :")] == '\0')
		return setenv("LD_PRELOAD", lib, 1) == 0;
	if (preload_has(old, lib))
		return true;
	/* Keep the separator the user chose. */
	if (asprintf(&val, "%s%c%s", old,
	    strchr(old, ' ') != NULL && strchr(old, ':') == NULL ? ' ' : ':',
	    lib) == -1)
		return false;
	rc = setenv("LD_PRELOAD", val, 1);
	free(val);
	return rc == 0;
}

/* A relative --dir is taken from the current directory. */
static bool
set_dir(const char *dir)
{
	char cwd[PATH_MAX], *abs;
	int rc;

	if (getcwd(cwd, sizeof(cwd)) == NULL) {
		warn("getcwd");
		return false;
	}
	if (asprintf(&abs, "%s/%s", cwd, dir) == -1)
		return false;
	rc = setenv("TCPSPOOL_DIR", abs, 1);
	free(abs);
	return rc == 0;
}

/* Prints s so that a POSIX shell reads it back as one word. */
static void
shell_word(const char *s)
{
	const char *p;

	if (*s != '\0' && strspn(s, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=@%+,") == strlen(s)) {
		fputs(s, stdout);
		return;
	}
	putchar('\'');
	for (p = s; *p != '\0'; p++) {
		if (*p == '\'')
			fputs("'\\''", stdout);
		else
			putchar(*p);
	}
	putchar('\'');
}

/* NAME=value, the value quoted for a shell. */
static void
shell_assignment(const char *e)
{
	const char *eq = strchr(e, '=');

	printf("%.*s=", (int)(eq - e), e);
	shell_word(eq + 1);
	putchar('\n');
}

/* What run would do, as lines a shell can run (every word quoted). */
static void
dry_run(char **cmd)
{
	extern char **environ;
	char **e;

	for (e = environ; *e != NULL; e++)
		if (strncmp(*e, "TCPSPOOL_", 9) == 0 &&
		    strncmp(*e, "TCPSPOOL_LIB=", 13) != 0 &&
		    strncmp(*e, "TCPSPOOL_TEST_", 14) != 0 &&
		    strchr(*e, '=') != NULL)
			shell_assignment(*e);
	printf("LD_PRELOAD=");
	shell_word(getenv("LD_PRELOAD"));
	printf("\nexec");
	for (; *cmd != NULL; cmd++) {
		putchar(' ');
		shell_word(*cmd);
	}
	printf("\n");
}

int
cmd_run(int argc, char **argv)
{
	struct option longopts[NVARS + 5];
	bool given[NVARS] = { false };
	const char *lib_opt = NULL;
	char lib[PATH_MAX];
	bool dry = false, with_daemon = false;
	char dir[PATH_MAX];
	size_t i, n = 0;
	int c, idx, rc;

	for (i = 0; i < NVARS; i++)
		longopts[n++] = (struct option){ vars[i].opt,
		    required_argument, NULL, 1000 + (int)i };
	longopts[n++] = (struct option){ "lib", required_argument, NULL, 'L' };
	longopts[n++] = (struct option){ "dry-run", no_argument, NULL, 'n' };
	longopts[n++] = (struct option){ "daemon", no_argument, NULL, 'D' };
	longopts[n++] = (struct option){ "help", no_argument, NULL, 'h' };
	longopts[n] = (struct option){ NULL, 0, NULL, 0 };

	while ((c = getopt_long(argc, argv, "+hn", longopts, &idx)) != -1) {
		if (c == 'h')
			return usage_exit(run_usage, true);
		if (c == 'n') {
			dry = true;
			continue;
		}
		if (c == 'L') {
			lib_opt = optarg;
			continue;
		}
		if (c == 'D') {
			with_daemon = true;
			continue;
		}
		if (c < 1000 || c >= 1000 + (int)NVARS)
			return usage_exit(run_usage, false);
		i = (size_t)(c - 1000);
		given[i] = true;
		if (i == 0 && optarg[0] != '/' && optarg[0] != '\0') {
			if (!set_dir(optarg))
				return EXIT_ERR;
		} else if (setenv(vars[i].var, optarg, 1) == -1) {
			warn("setenv");
			return EXIT_ERR;
		}
	}
	if (optind >= argc) {
		warnx("run: no PROGRAM given");
		return usage_exit(run_usage, false);
	}
	if ((rc = environment_check(given)) != EXIT_OK)
		return rc;
	if (!find_library(lib_opt, lib, sizeof(lib)) || !set_preload(lib))
		return EXIT_ERR;
	/* TCPSPOOL_LIB is the CLI's, consumed here: the library would warn
	 * about it as a variable it does not know. */
	unsetenv("TCPSPOOL_LIB");
	if (dry) {
		dry_run(argv + optind);
		return EXIT_OK;
	}
	if (with_daemon && (!spool_dir_default(dir, sizeof(dir)) ||
	    daemon_ensure(dir) != EXIT_OK))
		return EXIT_ERR;
	fflush(NULL);
	execvp(argv[optind], argv + optind);
	c = errno;
	warn("%s", argv[optind]);
	return c == ENOENT ? 127 : 126;
}
