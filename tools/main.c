/*
 * main.c — the tcpspool command: dispatch to a subcommand (one file each,
 * cmd_NAME.c). Exit codes: 0 success, 1 error, 2 integrity problems,
 * 64 usage (see cli.h).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct command {
	const char *name;
	int (*fn)(int, char **);
} commands[] = {
	{ "run", cmd_run },
	{ "ls", cmd_ls },
	{ "stat", cmd_stat },
	{ "dump", cmd_dump },
	{ "verify", cmd_verify },
	{ "replay", cmd_replay },
	{ "rm", cmd_rm },
	{ "metrics", cmd_metrics },
	{ "top", cmd_top },
	{ "daemon", cmd_daemon },
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: tcpspool COMMAND [ARGS...]\n"
	    "\n"
	    "Keeps TCP servers alive when their clients read slowly: writes that\n"
	    "would fail with EAGAIN are spooled to disk and replayed in order.\n"
	    "\n"
	    "commands:\n"
	    "  run [OPTIONS] -- PROGRAM [ARGS...]  run PROGRAM under libtcpspool\n"
	    "  ls [DIR] [--json]                   list spooled streams\n"
	    "  stat STREAM                         segments and frames of a stream\n"
	    "  dump STREAM [--format F]            print a stream's records\n"
	    "  verify [STREAM|DIR] [--repair]      check checksums and continuity\n"
	    "  replay STREAM --to HOST:PORT        send an orphan stream's records\n"
	    "  rm STREAM... | --orphans            delete streams\n"
	    "  metrics [--textfile PATH]           figures for Prometheus\n"
	    "  top [--interval DURATION]           live view of the streams\n"
	    "  daemon [--status]                   hold spooled connections so their\n"
	    "                                      delivery outlives the server\n"
	    "\n"
	    "Every command takes --dir DIR (default $TCPSPOOL_DIR, else\n"
	    "/var/tmp/tcpspool-UID). A STREAM is its name, an unambiguous prefix\n"
	    "of it, or the path of its directory.\n"
	    "tcpspool COMMAND --help describes each command.\n"
	    "\n"
	    "exit: 0 ok, 1 error, 2 integrity problems, 64 usage.\n");
}

int
main(int argc, char **argv)
{
	size_t i;

	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "help") == 0 && argc > 2) {
		/* "tcpspool help CMD" is "tcpspool CMD --help". */
		char *help[] = { argv[2], "--help", NULL };

		for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
			if (strcmp(argv[2], commands[i].name) == 0)
				return commands[i].fn(2, help);
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "tcpspool: unknown command '%s' (see tcpspool --help)\n",
	    argv[1]);
	return EXIT_USAGE;
}
