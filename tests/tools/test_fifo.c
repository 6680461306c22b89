/*
 * Issue 18 item 4: a FIFO where a file or a dir of the spool belongs (the
 * status, the progress, a sealed or an open segment, the ledger, a stream
 * entry) hung every command: the opens blocked for a writer that never
 * came. Every command must return by itself, with a message naming what
 * is wrong, and rm must still be able to remove the stream.
 */
#include <sys/stat.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tools_test.h"

TestSuite(tools_fifo, .init = t_setup, .fini = t_teardown, .timeout = 150);

/* Arrays, not pointers: Criterion copies parameters to another process. */
struct place {
	char file[32];	/* in the stream dir; "": the stream entry */
	char word[32];	/* what the commands must say */
};

static struct place places[] = {
	{ "status", "not a regular file" },
	{ "progress", "not a regular file" },
	{ "0000000000000000.seg", "not a regular file" },
	{ "0000000000000001.open", "not a regular file" },
	{ "ledger", "not a regular file" },
	{ "", "not a directory" },
};

ParameterizedTestParameters(tools_fifo, every_command_returns_with_a_message)
{
	return cr_make_param_array(struct place, places,
	    sizeof(places) / sizeof(places[0]));
}

/* Runs the CLI with argv; it must end by itself, well before the bound. */
static void
run(struct t_out *o, const char *const *argv)
{
	struct t_proc p;

	t_spawn(&p, argv, NULL);
	cr_assert(t_wait_deadline(&p, o, 20000), "tcpspool %s hangs on a "
	    "FIFO", argv[1]);
	cr_assert_lt(o->status, 128, "tcpspool %s died: %s", argv[1], o->err);
}

ParameterizedTest(struct place *pl, tools_fifo,
    every_command_returns_with_a_message)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 20,
	    .per_frame = 4, .segment_max = 64 << 10 };
	char name[SPOOL_NAME_MAX], path[700], both[1 << 14];
	static const char *const cmds[] = { "ls", "stat", "dump", "verify",
		"replay", "rm" };
	struct t_out o;
	size_t i;

	t_make_stream(&sp, name);
	if (pl->file[0] == '\0') {
		/* The stream entry itself: the real dir goes, a FIFO comes. */
		snprintf(path, sizeof(path), "rm -rf '%s/%s'", t_spool, name);
		cr_assert(system(path) == 0);
		snprintf(path, sizeof(path), "%s/%s", t_spool, name);
	} else if (strcmp(pl->file, "ledger") == 0) {
		snprintf(path, sizeof(path), "%s/ledger", t_spool);
	} else {
		snprintf(path, sizeof(path), "%s/%s/%s", t_spool, name,
		    pl->file);
		unlink(path);
	}
	cr_assert(mkfifo(path, 0600) == 0, "mkfifo %s", path);

	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		const char *argv[] = { "CLI", cmds[i], "--dir", t_spool, name,
		    "--to", "127.0.0.1:9", NULL };

		if (strcmp(cmds[i], "ls") == 0)
			argv[4] = NULL;
		if (strcmp(cmds[i], "replay") != 0)
			argv[5] = NULL;
		run(&o, argv);
		snprintf(both, sizeof(both), "%s%s", o.out, o.err);
		if (strcmp(cmds[i], "rm") == 0 && pl->file[0] != '\0') {
			/* The stream goes, FIFO and all. */
			cr_assert_eq(o.status, 0, "rm: %s", both);
		} else if (strcmp(pl->file, "status") == 0 ||
		    strcmp(pl->file, "ledger") == 0) {
			/* Only the writer's figures, or the drops of ended
			 * streams, are hidden: the commands that show them
			 * say why; the others need neither. */
			cr_assert_leq(o.status, 2, "%s: %d: %s", cmds[i],
			    o.status, both);
			if (strcmp(cmds[i], "ls") == 0 ||
			    (strcmp(cmds[i], "stat") == 0 &&
			    strcmp(pl->file, "status") == 0))
				cr_assert(strcasestr(both, pl->word) != NULL,
				    "%s says nothing of the FIFO: %s", cmds[i],
				    both);
		} else {
			cr_assert(o.status == 1 || o.status == 2, "%s: exit "
			    "%d: %s", cmds[i], o.status, both);
			cr_assert(strcasestr(both, pl->word) != NULL, "%s says "
			    "nothing of the FIFO: %s", cmds[i], both);
		}
		t_out_free(&o);
	}
}
