/*
 * payload_plain.h — payload_check as FORMAT.md §3.2 words it, one varint
 * at a time: the reference that spool/format.c's payload_check (eight
 * one-byte varints at a time where it can) must equal. Shared by the unit
 * test (test_codec.c) and the differential fuzz target (fuzz_payload.c).
 * Needs internal.h.
 */
#ifndef TCPSPOOL_TEST_PAYLOAD_PLAIN_H
#define TCPSPOOL_TEST_PAYLOAD_PLAIN_H

static inline bool
payload_check_plain(const struct frame_header *f, const uint8_t *raw)
{
	const uint8_t *p = raw, *end = raw + f->raw_len;
	uint64_t v, sum = 0;
	int64_t q = 0;
	uint32_t i;
	size_t n;

	for (i = 0; i < f->count; i++) {
		if ((n = varint_get(p, (size_t)(end - p), &v)) == 0 ||
		    v > SPOOL_RECORD_MAX)
			return false;
		sum += v;
		p += n;
	}
	for (i = 0; i < f->count; i++) {
		if ((n = varint_get(p, (size_t)(end - p), &v)) == 0)
			return false;
		q = (int64_t)((uint64_t)q + (uint64_t)unzigzag(v));
		p += n;
	}
	return sum == f->data_len && (uint64_t)(end - p) == sum &&
	    q == ts_us(f->last_ts, f->first_ts);
}

#endif
