/*
 * crc.c — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of every structure in FORMAT.md. Chosen over zlib's crc32
 * because x86-64's SSE4.2 computes it in hardware: on stored (random)
 * payloads zlib's crc32 ran at about 0.85 GB/s, slower than inflate
 * itself, and halved read-back throughput. A table-driven version serves
 * CPUs without the instruction; both give the same values.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "internal.h"

static uint32_t table[256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void
table_init(void)
{
	uint32_t c;
	int i, k;

	for (i = 0; i < 256; i++) {
		c = (uint32_t)i;
		for (k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		table[i] = c;
	}
}

static uint32_t
crc_soft(uint32_t c, const uint8_t *p, size_t len)
{
	pthread_once(&table_once, table_init);
	while (len-- > 0)
		c = table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>

__attribute__((target("sse4.2"))) static uint32_t
crc_hw(uint32_t c, const uint8_t *p, size_t len)
{
	uint64_t c64 = c, w;

	while (len > 0 && ((uintptr_t)p & 7) != 0) {
		c64 = _mm_crc32_u8((uint32_t)c64, *p++);
		len--;
	}
	while (len >= 8) {
		memcpy(&w, p, 8);
		c64 = _mm_crc32_u64(c64, w);
		p += 8;
		len -= 8;
	}
	while (len-- > 0)
		c64 = _mm_crc32_u8((uint32_t)c64, *p++);
	return (uint32_t)c64;
}

static bool
have_hw(void)
{
	/* Every thread computes the same answer; relaxed atomics make the
	 * benign race a defined one (and TSan-clean). */
	static _Atomic int have = -1;
	int h = atomic_load_explicit(&have, memory_order_relaxed);

	if (h < 0) {
		h = __builtin_cpu_supports("sse4.2") ? 1 : 0;
		atomic_store_explicit(&have, h, memory_order_relaxed);
	}
	return h == 1;
}
#else
static uint32_t
crc_hw(uint32_t c, const uint8_t *p, size_t len)
{
	return crc_soft(c, p, len);
}

static bool
have_hw(void)
{
	return false;
}
#endif

uint32_t
spool_crc_update(uint32_t crc, const void *p, size_t len)
{
	uint32_t c = ~crc;

	c = have_hw() ? crc_hw(c, p, len) : crc_soft(c, p, len);
	return ~c;
}

uint32_t
spool_crc(const void *p, size_t len)
{
	return spool_crc_update(0, p, len);
}
