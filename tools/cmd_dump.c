/*
 * cmd_dump.c — tcpspool dump: the records of a stream not yet delivered,
 * in order: escaped for a terminal, as hexdump -C, raw, or JSON. Read-only:
 * it never acknowledges anything.
 */
#include <err.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char dump_usage[] =
    "usage: tcpspool dump STREAM [--from SEQ] [--count N]\n"
    "                     [--format vis|hex|raw|json] [--dir DIR]\n"
    "\n"
    "Prints the records of STREAM not yet delivered, oldest first.\n"
    "  --format vis   (default) one line per record:\n"
    "                   #SEQ TIME len=LEN[ delivered=OFF]: PAYLOAD\n"
    "                 the payload escaped for a terminal (strvis, C style:\n"
    "                 \\n, \\t, \\\\, \\ooo octal for other bytes)\n"
    "  --format hex   a line \"#SEQ TIME len=LEN\" then the payload as\n"
    "                 hexdump -C prints it (every line: repeated lines are\n"
    "                 not folded into \"*\")\n"
    "  --format raw   only the bytes still to deliver, exactly, nothing\n"
    "                 else (what tcpspool replay would send)\n"
    "  --format json  one object per line: {\"seq\", \"ts_ns\", \"time\",\n"
    "                 \"len\", \"delivered\", \"data\"}, data being the whole\n"
    "                 payload in base64 (RFC 4648)\n"
    "  --from SEQ     start at record SEQ\n"
    "  --count N      at most N records\n"
    "  --dir DIR      spool dir (default $TCPSPOOL_DIR or /var/tmp/tcpspool-UID)\n"
    "  -h, --help     this text\n"
    "\n"
    "A record partly delivered already shows delivered=OFF: the first OFF\n"
    "bytes reached the peer. TIME is UTC.\n"
    "\n"
    "The stream is checked first by the rules of tcpspool verify; each\n"
    "problem is printed on stderr, and what can be read is printed.\n"
    "\n"
    "exit: 0 ok, 1 error, 2 the stream is damaged (corrupt or missing\n"
    "records, torn tail, ...: see tcpspool verify), 64 usage.\n";

enum fmt { F_VIS, F_HEX, F_RAW, F_JSON };

static void
hexdump_c(const uint8_t *p, size_t len)
{
	size_t off, i;

	for (off = 0; off < len; off += 16) {
		size_t n = len - off < 16 ? len - off : 16;

		printf("%08zx ", off);
		for (i = 0; i < 16; i++) {
			if (i == 8)
				putchar(' ');
			if (i < n)
				printf(" %02x", p[off + i]);
			else
				printf("   ");
		}
		printf("  |");
		for (i = 0; i < n; i++)
			putchar(p[off + i] >= 0x20 && p[off + i] < 0x7f ?
			    p[off + i] : '.');
		printf("|\n");
	}
	printf("%08zx\n", len);
}

static bool
print_record(enum fmt f, const struct spool_record *r)
{
	char t[40], *vis;

	switch (f) {
	case F_RAW:
		return fwrite(r->data + r->off, 1, r->len - r->off, stdout) ==
		    r->len - r->off;
	case F_JSON:
		printf("{\"seq\":%" PRIu64 ",\"ts_ns\":%" PRId64 ",\"time\":\"%s\""
		    ",\"len\":%zu,\"delivered\":%zu,\"data\":", r->seq, r->ts_ns,
		    fmt_time(t, r->ts_ns), r->len, r->off);
		json_base64(stdout, r->data, r->len);
		printf("}\n");
		return true;
	case F_HEX:
		printf("#%" PRIu64 " %s len=%zu", r->seq, fmt_time(t, r->ts_ns),
		    r->len);
		if (r->off > 0)
			printf(" delivered=%zu", r->off);
		printf("\n");
		hexdump_c(r->data, r->len);
		return true;
	case F_VIS:
		if ((vis = vis_bytes(r->data, r->len)) == NULL) {
			warnx("out of memory for a record of %zu bytes", r->len);
			return false;
		}
		printf("#%" PRIu64 " %s len=%zu", r->seq, fmt_time(t, r->ts_ns),
		    r->len);
		if (r->off > 0)
			printf(" delivered=%zu", r->off);
		printf(": %s\n", vis);
		free(vis);
		return true;
	}
	return false;
}

int
cmd_dump(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "from", required_argument, NULL, 'f' },
		{ "count", required_argument, NULL, 'c' },
		{ "format", required_argument, NULL, 'F' },
		{ "dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t from = 0, count = UINT64_MAX, shown = 0;
	struct spool_err e = { "" };
	struct spool_cursor *cur;
	struct spool_losses loss;
	struct spool_record r;
	struct stream_check chk;
	struct stream_view v;
	struct spool_dir *d;
	char name[SPOOL_NAME_MAX];
	const char *dir = NULL;
	enum fmt f = F_VIS;
	int ch, rc, exit_rc = EXIT_OK;

	while ((ch = getopt_long(argc, argv, "hd:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'f':
			if (!parse_u64(optarg, UINT64_MAX, &from)) {
				warnx("--from \"%s\": expected a record sequence "
				    "number", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'c':
			if (!parse_u64(optarg, UINT64_MAX, &count)) {
				warnx("--count \"%s\": expected a number", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'F':
			if (strcmp(optarg, "vis") == 0)
				f = F_VIS;
			else if (strcmp(optarg, "hex") == 0)
				f = F_HEX;
			else if (strcmp(optarg, "raw") == 0)
				f = F_RAW;
			else if (strcmp(optarg, "json") == 0)
				f = F_JSON;
			else {
				warnx("--format \"%s\": expected vis, hex, raw or "
				    "json", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'd':
			dir = optarg;
			break;
		case 'h':
			return usage_exit(dump_usage, true);
		default:
			return usage_exit(dump_usage, false);
		}
	}
	if (argc - optind != 1)
		return usage_exit(dump_usage, false);
	if ((rc = cli_open_stream(dir, argv[optind], &d, name)) != EXIT_OK)
		return rc;
	/* The rules of verify first: what cannot be read is listed. */
	stream_view_load(d, name, &v);
	stream_check(d, name, v.held, stderr, &chk);
	if (chk.failed) {
		spool_dir_close(d);
		return EXIT_ERR;
	}
	if ((rc = spool_cursor_open(d, name, &cur, &e)) < 0) {
		warnx("%s", e.msg[0] ? e.msg : strerror(-rc));
		spool_dir_close(d);
		return EXIT_ERR;
	}
	while (shown < count) {
		if ((rc = spool_cursor_next(cur, &r, &e)) < 0) {
			warnx("%s", e.msg[0] ? e.msg : strerror(-rc));
			exit_rc = EXIT_ERR;
			break;
		}
		if (rc == 0)
			break;
		if (r.seq < from)
			continue;
		if (!print_record(f, &r)) {
			exit_rc = EXIT_ERR;
			break;
		}
		shown++;
	}
	spool_cursor_losses(cur, &loss);
	if (loss.records > 0)
		warnx("%s: %" PRIu64 " corrupt regions skipped, %" PRIu64
		    " records lost (seq %" PRIu64 "..%" PRIu64 "); see tcpspool "
		    "verify", name, loss.frames, loss.records, loss.first_seq,
		    loss.last_seq);
	else if (loss.frames > 0)
		warnx("%s: %" PRIu64 " corrupt regions skipped (records "
		    "unknown); see tcpspool verify", name, loss.frames);
	else if (chk.problems > 0)
		warnx("%s: damaged (%" PRIu64 " problem%s listed above); see "
		    "tcpspool verify", name, chk.problems,
		    chk.problems == 1 ? "" : "s");
	if ((loss.records > 0 || loss.frames > 0 || chk.problems > 0) &&
	    exit_rc == EXIT_OK)
		exit_rc = EXIT_INTEGRITY;
	spool_cursor_close(cur);
	spool_dir_close(d);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		warn("stdout");
		return EXIT_ERR;
	}
	return exit_rc;
}
