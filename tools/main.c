/*
 * main.c — the tcpspool command: dispatch to a subcommand.
 * Exit codes: 0 success, 1 error, 2 integrity problems (verify), 64 usage.
 */
#include <stdio.h>
#include <string.h>

#define EXIT_USAGE 64

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
	    "  ls [DIR]                            list spooled streams\n"
	    "  stat STREAM                         segments and frames of a stream\n"
	    "  dump STREAM                         print a stream's records\n"
	    "  verify [STREAM|DIR]                 check checksums and continuity\n"
	    "  replay STREAM --to HOST:PORT        send an orphan stream's records\n"
	    "  rm STREAM...                        delete streams\n"
	    "\n"
	    "tcpspool COMMAND --help describes each command.\n");
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "tcpspool: unknown command '%s' (see tcpspool --help)\n",
	    argv[1]);
	return EXIT_USAGE;
}
