/* The tcpspool command as a user runs it: a real process, real exit codes. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* Runs the CLI with args; returns its exit status, stdout in out. */
static int
run_cli(const char *args, char *out, size_t outsz)
{
	const char *cli = getenv("TCPSPOOL_TEST_CLI");
	char cmd[4096];
	size_t n = 0;
	FILE *p;
	int st;

	cr_assert(cli != NULL, "TCPSPOOL_TEST_CLI unset: run via meson test");
	snprintf(cmd, sizeof(cmd), "'%s' %s 2>/dev/null", cli, args);
	p = popen(cmd, "r");
	cr_assert(p != NULL);
	while (n + 1 < outsz && !feof(p))
		n += fread(out + n, 1, outsz - 1 - n, p);
	out[n] = '\0';
	st = pclose(p);
	cr_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

Test(tools_cli, help_exits_0_and_lists_commands)
{
	char out[8192];

	cr_assert_eq(run_cli("--help", out, sizeof(out)), 0);
	cr_assert(strstr(out, "usage: tcpspool") != NULL);
	cr_assert(strstr(out, "replay") != NULL);
}

Test(tools_cli, unknown_command_is_a_usage_error)
{
	char out[256];

	cr_assert_eq(run_cli("frobnicate", out, sizeof(out)), 64);
}
