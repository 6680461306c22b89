/*
 * crc.c — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of every structure in FORMAT.md. Chosen over zlib's crc32
 * because x86-64's SSE4.2 computes it in hardware: on stored (random)
 * payloads zlib's crc32 ran at about 0.85 GB/s, slower than inflate
 * itself, and halved read-back throughput. A table-driven version serves
 * CPUs without the instruction; both give the same values.
 *
 * The crc32 instruction takes 3 cycles to give its result but can start
 * one every cycle: one chain over a buffer runs at a third of what the
 * core can do. Buffers of at least 3 x SHORT_BLOCK bytes (every frame
 * payload) are cut into three blocks whose CRCs run side by side, then
 * combined: the CRC of A then B is CRC(A) carried over len(B) zero bytes
 * (a linear map, four table lookups: shift_long, shift_short) xor the CRC
 * of B begun at 0 (Mark Adler's crc32c.c, the method of Intel's "Fast
 * CRC Computation for iSCSI Polynomial Using CRC32 Instruction"): 19-25
 * GB/s instead of 9 on this project's EPYC VM, for the frame check of the
 * replay drain (tests/bench/NOTES.md).
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

/* Block sizes of the three side-by-side chains (multiples of 8). */
#define LONG_BLOCK	2048
#define SHORT_BLOCK	256

/* The CRC register carried over LONG_BLOCK or SHORT_BLOCK zero bytes,
 * byte by byte of the register: x -> t[0][x & 0xff] ^ ... ^ t[3][x >> 24]. */
static uint32_t shift_long[4][256], shift_short[4][256];
/*
 * SHIFT_NONE -> SHIFT_BUSY (the one caller that won the exchange fills the
 * tables) -> SHIFT_READY, released after the tables. Nobody ever waits:
 * a caller that finds them not ready runs one chain. So a signal handler
 * that spools (and checksums) while its thread was filling them, or a fork
 * child of a parent whose thread was, never blocks; such a child keeps one
 * chain.
 */
enum { SHIFT_NONE, SHIFT_BUSY, SHIFT_READY };
static _Atomic int shift_state = SHIFT_NONE;

/* mat (32 columns over GF(2)) times vec. */
static uint32_t
gf2_times(const uint32_t *mat, uint32_t vec)
{
	uint32_t sum = 0;

	for (; vec != 0; vec >>= 1, mat++)
		if (vec & 1)
			sum ^= *mat;
	return sum;
}

static void
gf2_square(uint32_t *square, const uint32_t *mat)
{
	int n;

	for (n = 0; n < 32; n++)
		square[n] = gf2_times(mat, mat[n]);
}

/* The tables of the operator that carries the register over len zero
 * bytes, len a power of two. */
static void
shift_tables(uint32_t t[4][256], size_t len)
{
	uint32_t odd[32], even[32], *op = even, row = 1;
	int n;

	odd[0] = 0x82F63B78u;		/* one zero bit */
	for (n = 1; n < 32; n++, row <<= 1)
		odd[n] = row;
	gf2_square(even, odd);		/* two zero bits */
	gf2_square(odd, even);		/* four */
	for (;;) {			/* one zero byte, two, four, ... */
		gf2_square(even, odd);
		op = even;
		if ((len >>= 1) == 0)
			break;
		gf2_square(odd, even);
		op = odd;
		if ((len >>= 1) == 0)
			break;
	}
	for (n = 0; n < 256; n++) {
		t[0][n] = gf2_times(op, (uint32_t)n);
		t[1][n] = gf2_times(op, (uint32_t)n << 8);
		t[2][n] = gf2_times(op, (uint32_t)n << 16);
		t[3][n] = gf2_times(op, (uint32_t)n << 24);
	}
}

/* Are the shift tables ready? Fills them if nobody has begun. */
static bool
shift_ready(void)
{
	int st = atomic_load_explicit(&shift_state, memory_order_acquire);

	if (st == SHIFT_READY)
		return true;
	if (st != SHIFT_NONE || !atomic_compare_exchange_strong(&shift_state,
	    &st, SHIFT_BUSY))
		return false;
	shift_tables(shift_long, LONG_BLOCK);
	shift_tables(shift_short, SHORT_BLOCK);
	atomic_store_explicit(&shift_state, SHIFT_READY, memory_order_release);
	return true;
}

static uint32_t
shift(uint32_t t[4][256], uint32_t c)
{
	return t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^
	    t[2][(c >> 16) & 0xff] ^ t[3][c >> 24];
}

static inline uint64_t
load64(const uint8_t *p)
{
	uint64_t w;

	memcpy(&w, p, 8);
	return w;
}

/* Three chains over the blocks at p, p + block, p + 2 * block; c0 goes in
 * the first. Returns the register after all three. */
__attribute__((target("sse4.2"))) static uint64_t
crc_3way(uint64_t c0, const uint8_t *p, size_t block, uint32_t t[4][256])
{
	const uint8_t *end = p + block;
	uint64_t c1 = 0, c2 = 0;

	for (; p < end; p += 8) {
		c0 = _mm_crc32_u64(c0, load64(p));
		c1 = _mm_crc32_u64(c1, load64(p + block));
		c2 = _mm_crc32_u64(c2, load64(p + 2 * block));
	}
	c0 = shift(t, (uint32_t)c0) ^ c1;
	return shift(t, (uint32_t)c0) ^ c2;
}

__attribute__((target("sse4.2"))) static uint32_t
crc_hw(uint32_t c, const uint8_t *p, size_t len)
{
	uint64_t c64 = c;

	while (len > 0 && ((uintptr_t)p & 7) != 0) {
		c64 = _mm_crc32_u8((uint32_t)c64, *p++);
		len--;
	}
	if (len >= 3 * SHORT_BLOCK && shift_ready()) {
		for (; len >= 3 * LONG_BLOCK; p += 3 * LONG_BLOCK,
		    len -= 3 * LONG_BLOCK)
			c64 = crc_3way(c64, p, LONG_BLOCK, shift_long);
		for (; len >= 3 * SHORT_BLOCK; p += 3 * SHORT_BLOCK,
		    len -= 3 * SHORT_BLOCK)
			c64 = crc_3way(c64, p, SHORT_BLOCK, shift_short);
	}
	for (; len >= 8; p += 8, len -= 8)
		c64 = _mm_crc32_u64(c64, load64(p));
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
