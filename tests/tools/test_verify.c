/*
 * tcpspool verify on clean, torn and bit-flipped copies of known streams:
 * the exit code (0 clean, 2 integrity problems), a message naming the file,
 * the offset and the records, and --repair only where the writer is gone.
 */
#include <sys/stat.h>

#include <criterion/criterion.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools_test.h"

TestSuite(tools_verify, .init = t_setup, .fini = t_teardown);

static const char *
seg_path(const char *name, const char *file)
{
	static char p[600];

	snprintf(p, sizeof(p), "%s/%s/%s", t_spool, name, file);
	return p;
}

static off_t
file_size(const char *path)
{
	struct stat st;

	cr_assert(stat(path, &st) == 0, "%s", path);
	return st.st_size;
}

static void
flip(const char *path, off_t off)
{
	uint8_t b;
	int fd = open(path, O_RDWR);

	cr_assert(fd >= 0);
	cr_assert(pread(fd, &b, 1, off) == 1);
	b ^= 0x10;
	cr_assert(pwrite(fd, &b, 1, off) == 1);
	close(fd);
}

Test(tools_verify, a_clean_stream_and_dir_exit_0)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 12,
	    .per_frame = 4 };
	char name[SPOOL_NAME_MAX], want[128];
	struct t_out o;

	t_make_stream(&sp, name);
	snprintf(want, sizeof(want), "%s: ok, 1 segments, 3 frames, 12 "
	    "records\n", name);
	t_cli(&o, "verify", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 0, "%s%s", o.out, o.err);
	cr_assert_str_eq(o.out, want);
	t_out_free(&o);
	t_cli(&o, "verify", t_spool, NULL);		/* DIR form */
	cr_assert_eq(o.status, 0, "%s%s", o.out, o.err);
	cr_assert_str_eq(o.out, want);
	t_out_free(&o);
}

Test(tools_verify, a_torn_tail_exits_2_naming_file_and_offset)
{
	struct t_stream_spec sp = { .writer = T_CRASHED, .records = 12,
	    .per_frame = 4 };
	char name[SPOOL_NAME_MAX], want[1024];
	struct t_frame fr[4];
	const char *open_seg;
	struct t_out o;
	off_t cut;

	t_make_stream(&sp, name);
	cr_assert_eq(t_frames(name, fr, 4), 3);
	open_seg = seg_path(name, "0000000000000000.open");
	cut = (off_t)fr[2].offset + 64 + 5;	/* in the last frame's payload */
	cr_assert(truncate(open_seg, cut) == 0);

	t_cli(&o, "verify", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 2, "%s%s", o.out, o.err);
	snprintf(want, sizeof(want), "%s: offset %" PRIu64 ", 69 bytes: torn "
	    "tail, records unknown: ", open_seg, fr[2].offset);
	cr_assert(strncmp(o.out, want, strlen(want)) == 0, "%s\nwanted %s",
	    o.out, want);
	snprintf(want, sizeof(want), "\n%s: 1 problem\n", name);
	cr_assert(strstr(o.out, want) != NULL, "%s", o.out);
	t_out_free(&o);
}

Test(tools_verify, repair_cuts_the_torn_tail_of_a_dead_writer)
{
	struct t_stream_spec sp = { .writer = T_CRASHED, .records = 12,
	    .per_frame = 4 };
	char name[SPOOL_NAME_MAX], want[200];
	struct t_frame fr[4];
	const char *open_seg;
	struct t_out o;

	t_make_stream(&sp, name);
	cr_assert_eq(t_frames(name, fr, 4), 3);
	open_seg = seg_path(name, "0000000000000000.open");
	cr_assert(truncate(open_seg, (off_t)fr[2].offset + 70) == 0);

	t_cli(&o, "verify", "--repair", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 0, "%s%s", o.out, o.err);
	snprintf(want, sizeof(want), "%s: repaired: cut 70 bytes of torn "
	    "tail\n%s: ok, 1 segments, 2 frames, 8 records\n", name, name);
	cr_assert(strstr(o.out, want) != NULL, "%s", o.out);
	cr_assert_eq(file_size(open_seg), (off_t)fr[2].offset);
	t_out_free(&o);

	t_cli(&o, "verify", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 0, "%s", o.out);
	t_out_free(&o);
	t_cli(&o, "dump", "--format", "json", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	cr_assert(strstr(o.out, "{\"seq\":7,") != NULL);
	cr_assert(strstr(o.out, "{\"seq\":8,") == NULL);
	t_out_free(&o);
}

Test(tools_verify, a_live_writers_tail_is_a_note_and_never_repaired)
{
	struct t_stream_spec sp = { .writer = T_LIVE_OPEN, .records = 12,
	    .per_frame = 4 };
	char name[SPOOL_NAME_MAX];
	struct t_frame fr[4];
	const char *open_seg;
	struct t_out o;
	off_t cut;

	t_make_stream(&sp, name);
	cr_assert_eq(t_frames(name, fr, 4), 3);
	open_seg = seg_path(name, "0000000000000000.open");
	cut = (off_t)fr[2].offset + 70;
	cr_assert(truncate(open_seg, cut) == 0);

	t_cli(&o, "verify", "--repair", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 0, "%s%s", o.out, o.err);
	cr_assert(strncmp(o.out, "note: ", 6) == 0, "%s", o.out);
	cr_assert(strstr(o.out, "the writer is alive") != NULL, "%s", o.out);
	cr_assert(strstr(o.out, "repaired") == NULL, "%s", o.out);
	cr_assert_eq(file_size(open_seg), cut);
	t_out_free(&o);
}

Test(tools_verify, a_flipped_payload_bit_exits_2_with_the_records_lost)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 12,
	    .per_frame = 4 };
	char name[SPOOL_NAME_MAX], want[1024];
	struct t_frame fr[4];
	const char *seg;
	struct t_out o;

	t_make_stream(&sp, name);
	cr_assert_eq(t_frames(name, fr, 4), 3);
	seg = seg_path(name, "0000000000000000.seg");
	flip(seg, (off_t)fr[1].offset + 64 + fr[1].stored_len / 2);

	t_cli(&o, "verify", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 2, "%s%s", o.out, o.err);
	snprintf(want, sizeof(want), "%s: offset %" PRIu64 ", %" PRIu64
	    " bytes: corrupt frame, records 4..7 (4): ", seg, fr[1].offset,
	    (uint64_t)64 + fr[1].stored_len);
	cr_assert(strstr(o.out, want) != NULL, "%s\nwanted %s", o.out, want);
	cr_assert(strstr(o.out, "valid") == NULL);
	t_out_free(&o);

	/* --repair leaves a corrupt middle for readers to skip: still 2. */
	t_cli(&o, "verify", "--repair", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 2, "%s%s", o.out, o.err);
	t_out_free(&o);

	/* stat marks the frame, dump skips its records and says so. */
	t_cli(&o, "stat", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 2, "%s%s", o.out, o.err);
	cr_assert(strstr(o.out, "valid: no") != NULL, "%s", o.out);
	t_out_free(&o);
	t_cli(&o, "dump", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 2, "%s%s", o.out, o.err);
	cr_assert(strstr(o.out, "\n#3 ") != NULL);
	cr_assert(strstr(o.out, "\n#4 ") == NULL);
	cr_assert(strstr(o.out, "\n#8 ") != NULL);
	cr_assert(strstr(o.err, "4 records lost (seq 4..7)") != NULL, "%s",
	    o.err);
	t_out_free(&o);
}

Test(tools_verify, a_bad_segment_header_and_garbage_never_crash)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 12,
	    .per_frame = 4 };
	char name[SPOOL_NAME_MAX], garbage[4096];
	struct t_out o;
	size_t i;

	t_make_stream(&sp, name);
	flip(seg_path(name, "0000000000000000.seg"), 20);
	/* A later segment full of hostile bytes: frame magics, huge lengths. */
	for (i = 0; i < sizeof(garbage); i++)
		garbage[i] = (char)(i % 7 == 0 ? 'T' : i % 5 == 0 ? 0xff : i);
	memcpy(garbage, "TSPOOLSG", 8);
	memcpy(garbage + 400, "TSFR", 4);
	t_write_file(seg_path(name, "0000000000000001.open"), garbage,
	    sizeof(garbage));

	t_cli(&o, "verify", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 2, "%s%s", o.out, o.err);
	cr_assert(strstr(o.out, "0000000000000000.seg: offset 0, 336 bytes: "
	    "bad segment header") != NULL, "%s", o.out);
	cr_assert(strstr(o.out, "0000000000000001.open: offset 0") != NULL,
	    "%s", o.out);
	t_out_free(&o);
	/* ls judges by verify's rules: damaged. */
	t_cli(&o, "ls", t_spool, NULL);
	cr_assert(o.status == 1 || o.status == 2, "%d", o.status);
	t_out_free(&o);
	t_cli(&o, "stat", "--dir", t_spool, name, NULL);
	cr_assert(o.status == 1 || o.status == 2, "%d", o.status);
	t_out_free(&o);
	t_cli(&o, "dump", "--dir", t_spool, name, NULL);
	cr_assert(o.status == 1 || o.status == 2, "%d", o.status);
	t_out_free(&o);
}

Test(tools_verify, a_dir_with_one_bad_stream_exits_2_and_reports_each)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 12,
	    .per_frame = 4 };
	char good[SPOOL_NAME_MAX], bad[SPOOL_NAME_MAX], want[128];
	struct t_frame fr[4];
	struct t_out o;

	t_make_stream(&sp, good);
	t_make_stream(&sp, bad);
	cr_assert_eq(t_frames(bad, fr, 4), 3);
	flip(seg_path(bad, "0000000000000000.seg"), (off_t)fr[0].offset + 70);
	t_cli(&o, "verify", "--dir", t_spool, NULL);
	cr_assert_eq(o.status, 2, "%s%s", o.out, o.err);
	snprintf(want, sizeof(want), "%s: ok, ", good);
	cr_assert(strstr(o.out, want) != NULL, "%s", o.out);
	snprintf(want, sizeof(want), "%s: 1 problem\n", bad);
	cr_assert(strstr(o.out, want) != NULL, "%s", o.out);
	t_out_free(&o);
}

/* Every command on randomly damaged copies: a clear exit, never a crash. */
Test(tools_verify, random_damage_never_crashes_any_command, .timeout = 150)
{
	struct t_stream_spec sp = { .writer = T_CRASHED, .records = 60,
	    .per_frame = 7, .segment_max = 64 << 10 };
	static const char *const cmds[][4] = {
		{ "verify", NULL }, { "stat", NULL },
		{ "dump", "--format", "json", NULL }, { "dump", "--format", "hex",
		NULL }, { "verify", "--repair", NULL },
	};
	char name[SPOOL_NAME_MAX], file[64];
	unsigned seed = 12345, round, k, c;
	struct t_frame fr[64];
	struct t_out o;
	size_t n;

	for (round = 0; round < 12; round++) {
		t_make_stream(&sp, name);
		n = t_frames(name, fr, 64);
		cr_assert(n > 0);
		for (k = 0; k < 1 + round % 4; k++) {
			const struct t_frame *f = &fr[rand_r(&seed) % n];
			off_t size;

			/* The frame's segment, sealed or still open. */
			snprintf(file, sizeof(file), "%s.seg", f->file);
			if (access(seg_path(name, file), F_OK) != 0)
				snprintf(file, sizeof(file), "%s.open", f->file);
			size = file_size(seg_path(name, file));
			flip(seg_path(name, file), (off_t)(rand_r(&seed) %
			    (unsigned)size));
		}
		if (round % 3 == 2)	/* and a torn end */
			cr_assert(truncate(seg_path(name, file),
			    file_size(seg_path(name, file)) - 1 -
			    (off_t)(rand_r(&seed) % 200)) == 0);
		for (c = 0; c < sizeof(cmds) / sizeof(cmds[0]); c++) {
			const char *argv[8] = { "CLI", cmds[c][0], "--dir",
			    t_spool };
			int a = 4, j;

			for (j = 1; j < 4 && cmds[c][j] != NULL; j++)
				argv[a++] = cmds[c][j];
			argv[a++] = name;
			argv[a] = NULL;
			t_run(&o, argv, NULL);
			cr_assert(o.status <= 2, "%s on round %u: status %d\n%s",
			    cmds[c][0], round, o.status, o.err);
			t_out_free(&o);
		}
		t_cli(&o, "ls", "--json", t_spool, NULL);
		cr_assert(o.status <= 2, "ls: %d %s", o.status, o.err);
		t_out_free(&o);
	}
}

Test(tools_verify, hostile_status_and_progress_files_are_harmless)
{
	struct t_stream_spec sp = { .writer = T_ORPHAN, .records = 5 };
	char name[SPOOL_NAME_MAX], status[1024];
	struct t_out o, py;
	uint8_t junk[80];
	size_t i;

	t_make_stream(&sp, name);
	snprintf(status, sizeof(status),
	    "version=1\npid=-5\nfd=99999999999\nstate=\x1b[31mred\x07\n"
	    "reason=%s\npending_bytes=-1\nupdated_ns=zz\n", "\x01\xfe\\\"");
	t_write_file(seg_path(name, "status"), status, strlen(status));
	for (i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 151);
	t_write_file(seg_path(name, "progress"), junk, sizeof(junk));

	t_cli(&o, "ls", t_spool, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	cr_assert(memchr(o.out, '\x1b', o.out_len) == NULL, "%s", o.out);
	cr_assert(memchr(o.out, '\x01', o.out_len) == NULL, "%s", o.out);
	t_out_free(&o);
	t_cli(&o, "ls", "--json", t_spool, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	t_write_file(t_path("ls.json"), o.out, o.out_len);
	t_python(&py, "import json, sys\nfor l in sys.stdin: json.loads(l)\n",
	    t_path("ls.json"));
	t_out_free(&py);
	t_out_free(&o);
	/* A progress file with no valid slot means nothing was delivered. */
	t_cli(&o, "dump", "--format", "json", "--dir", t_spool, name, NULL);
	cr_assert_eq(o.status, 0, "%s", o.err);
	cr_assert(strstr(o.out, "{\"seq\":0,") != NULL, "%s", o.out);
	t_out_free(&o);
}
