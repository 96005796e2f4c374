// CRC-32 (zlib's polynomial) with carry-less multiplication: fold 64 bytes at a time with
// PCLMULQDQ, reduce the last 128 bits with a Barrett reduction, and let zlib do the tail of fewer
// than 16 bytes. Several times faster than zlib's table-driven code, with identical values
// (tests/cpp compare them at every length, offset and seed).
#include <zlib.h>

#include <cstddef>
#include <cstdint>

#include "shardpoint/codec.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SHARDPOINT_HAVE_CLMUL 1
#endif

namespace shardpoint {

namespace {

uint32_t zlib_crc32(uint32_t crc, const unsigned char *p, size_t len) {
    while (len > 0) {  // zlib takes uInt lengths
        uInt n = len > (1u << 30) ? (1u << 30) : uInt(len);
        crc = uint32_t(::crc32(crc, p, n));
        p += n;
        len -= n;
    }
    return crc;
}

#ifdef SHARDPOINT_HAVE_CLMUL
// Constants for folding across 512 bits (k1, k2), 128 bits (k3, k4) and 64 bits (k5): powers of x
// modulo the bit-reflected CRC-32 polynomial, as in Intel's "Fast CRC Computation Using PCLMULQDQ".
__attribute__((target("pclmul,sse4.1"))) inline __m128i fold(__m128i x, __m128i k, __m128i next) {
    __m128i lo = _mm_clmulepi64_si128(x, k, 0x00);
    __m128i hi = _mm_clmulepi64_si128(x, k, 0x11);
    return _mm_xor_si128(_mm_xor_si128(lo, hi), next);
}

// `len` is at least 64 and a multiple of 16. `crc` and the result are zlib-style (inverted) values.
__attribute__((target("pclmul,sse4.1"))) uint32_t crc32_clmul(uint32_t crc, const unsigned char *p, size_t len) {
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596, 0x0154442bd4);
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);
    __m128i x1 = _mm_loadu_si128(reinterpret_cast<const __m128i *>(p));
    __m128i x2 = _mm_loadu_si128(reinterpret_cast<const __m128i *>(p + 16));
    __m128i x3 = _mm_loadu_si128(reinterpret_cast<const __m128i *>(p + 32));
    __m128i x4 = _mm_loadu_si128(reinterpret_cast<const __m128i *>(p + 48));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128(int(~crc)));
    p += 64;
    len -= 64;
    for (; len >= 64; p += 64, len -= 64) {
        x1 = fold(x1, k1k2, _mm_loadu_si128(reinterpret_cast<const __m128i *>(p)));
        x2 = fold(x2, k1k2, _mm_loadu_si128(reinterpret_cast<const __m128i *>(p + 16)));
        x3 = fold(x3, k1k2, _mm_loadu_si128(reinterpret_cast<const __m128i *>(p + 32)));
        x4 = fold(x4, k1k2, _mm_loadu_si128(reinterpret_cast<const __m128i *>(p + 48)));
    }
    x1 = fold(x1, k3k4, x2);
    x1 = fold(x1, k3k4, x3);
    x1 = fold(x1, k3k4, x4);
    for (; len >= 16; p += 16, len -= 16) x1 = fold(x1, k3k4, _mm_loadu_si128(reinterpret_cast<const __m128i *>(p)));
    // Fold the last 128 bits to 64, then Barrett-reduce to the 32-bit remainder.
    const __m128i k5k0 = _mm_set_epi64x(0, 0x0163cd6124);
    const __m128i poly = _mm_set_epi64x(0x01f7011641, 0x01db710641);  // P(x) and its Barrett quotient
    const __m128i mask32 = _mm_setr_epi32(~0, 0, ~0, 0);
    __m128i t = _mm_clmulepi64_si128(x1, k3k4, 0x10);
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), t);
    t = _mm_srli_si128(x1, 4);
    x1 = _mm_clmulepi64_si128(_mm_and_si128(x1, mask32), k5k0, 0x00);
    x1 = _mm_xor_si128(x1, t);
    t = _mm_clmulepi64_si128(_mm_and_si128(x1, mask32), poly, 0x10);
    t = _mm_clmulepi64_si128(_mm_and_si128(t, mask32), poly, 0x00);
    x1 = _mm_xor_si128(x1, t);
    return ~uint32_t(_mm_extract_epi32(x1, 1));
}

bool have_clmul() {
    static const bool yes = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
    return yes;
}
#endif

}  // namespace

uint32_t crc32_of(const void *data, size_t len, uint32_t crc) {
    auto p = static_cast<const unsigned char *>(data);
#ifdef SHARDPOINT_HAVE_CLMUL
    if (len >= 64 && have_clmul()) {
        size_t n = len & ~size_t(15);
        crc = crc32_clmul(crc, p, n);
        p += n;
        len -= n;
    }
#endif
    return zlib_crc32(crc, p, len);
}

}  // namespace shardpoint
