/*
 * fuzz_payload.c — differential target for a frame's payload check
 * (FORMAT.md §3.2): spool/format.c's payload_check, which takes eight
 * one-byte varints at a time where it can, against the plain reading one
 * varint at a time (tests/spool/payload_plain.h). fuzz_segment reaches
 * payload_check only past a frame's CRCs, so its fast path is hardly
 * fuzzed there; here the columns are the input itself.
 *
 * Both must accept and refuse the same payloads; where they accept,
 * walking the records (payload_next) must stay inside the payload, give
 * lengths that add up to data_len and end at the frame's last time.
 *
 * Input: count (u32 LE), data_len (u32 LE), last_ts - first_ts in µs
 * (i32 LE), then the payload (lengths column, times column, data).
 * Seed corpus: corpus/payload/. Built by meson with -Dfuzz=true (clang).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "../spool/payload_plain.h"

static uint32_t
le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

int
LLVMFuzzerTestOneInput(const uint8_t *in, size_t len)
{
	struct frame_header f;
	struct payload_iter it;
	struct rec_ref r;
	const uint8_t *raw;
	uint64_t sum = 0;
	uint32_t k;
	bool fast, plain;
	int64_t last = 0;

	if (len < 12)
		return 0;
	memset(&f, 0, sizeof(f));
	f.count = le32(in);
	f.data_len = le32(in + 4);
	f.first_ts = 1700000000000000000LL;
	f.last_ts = f.first_ts + (int64_t)(int32_t)le32(in + 8) * 1000;
	/* A copy of its own: ASan sees a read past the payload's end. */
	if ((raw = malloc(len - 12 + 1)) == NULL)
		return 0;
	memcpy((uint8_t *)raw, in + 12, len - 12);
	f.raw_len = (uint32_t)(len - 12);
	fast = payload_check(&f, raw, &it);
	plain = payload_check_plain(&f, raw);
	if (fast != plain)
		abort();
	if (fast) {
		for (k = 0; payload_next(&it, &r); k++) {
			if (r.data < raw || r.data + r.len > raw + f.raw_len)
				abort();
			sum += r.len;
			last = r.ts;
		}
		if (k != f.count || sum != f.data_len ||
		    (k > 0 && last != f.last_ts))
			abort();
	}
	free((void *)raw);
	return 0;
}
