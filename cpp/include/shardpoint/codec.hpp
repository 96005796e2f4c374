// Checksums and the deflate transform (zlib).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace shardpoint {

uint32_t crc32_of(const void *data, size_t len, uint32_t crc = 0);
// CRC-32 of A||B from crc(A), crc(B) and len(B).
uint32_t crc32_combine_of(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

// A zlib stream (RFC 1950) of `len` bytes at `data`.
std::vector<unsigned char> deflate_bytes(const void *data, size_t len, int level);
// Inflates a zlib stream into exactly `raw_len` bytes at `out`; throws Code::format if the
// stream is corrupt or does not inflate to exactly raw_len bytes.
void inflate_bytes(const void *stored, size_t stored_len, void *out, size_t raw_len);

}  // namespace shardpoint
