// Checksums, the deflate transform (zlib) and block compression (zlib, zstd).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include <zlib.h>

#include "shardpoint/model.hpp"

namespace shardpoint {

uint32_t crc32_of(const void *data, size_t len, uint32_t crc = 0);

// The CRC-32 kernels crc32_of chooses from (the fastest this CPU has), named for tests and
// benchmarks that check or time each one. All give zlib's values.
enum class Crc32Kernel { zlib, clmul, vpclmul };
bool crc32_kernel_available(Crc32Kernel kernel);
uint32_t crc32_with(Crc32Kernel kernel, const void *data, size_t len, uint32_t crc = 0);  // kernel must be available
// CRC-32 of A||B from crc(A), crc(B) and len(B): crc(A) * x^(8 len(B)) + crc(B) in GF(2)[x]
// modulo CRC-32's polynomial. Computed here rather than by zlib, whose fast form (crc32_combine_gen
// and _op) needs zlib 1.2.12: the library must load wherever an older zlib is the system's.
uint32_t crc32_combine_of(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);
// x^(8 len) mod P: the operator that shifts a CRC past `len` bytes, for many combines over one length.
uint32_t crc32_shift_operator(uint64_t len);
uint32_t crc32_combine_with(uint32_t crc_a, uint32_t crc_b, uint32_t shift_operator);

// Compresses pieces of input into one zlib stream (RFC 1950), handing the output to `sink` in
// pieces of at most 1 MiB: memory stays bounded whatever the input's size.
class Deflater {
public:
    using Sink = std::function<void(const unsigned char *, size_t)>;
    Deflater(int level, Sink sink);
    ~Deflater();
    Deflater(const Deflater &) = delete;
    Deflater &operator=(const Deflater &) = delete;
    // The most bytes the stream of `raw_len` input bytes can take.
    uint64_t bound(uint64_t raw_len);
    void write(const void *data, size_t len);
    void finish();

private:
    void drain(int flush);
    z_stream zs_{};
    Sink sink_;
    std::vector<unsigned char> out_;
};

// Inflates a zlib stream, fed in pieces, into exactly `out_len` bytes at `out`. Throws
// Code::format if the stream is corrupt, would overflow out_len, or ends short of it.
// With `out` null the bytes are inflated through a small window and dropped (checking only).
class Inflater {
public:
    Inflater(void *out, size_t out_len);
    ~Inflater();
    Inflater(const Inflater &) = delete;
    Inflater &operator=(const Inflater &) = delete;
    void write(const void *stored, size_t len);
    void finish();

private:
    z_stream zs_{};
    unsigned char *out_;
    size_t out_len_;
    unsigned char spare_ = 0;  // zlib needs an output buffer even for an empty stream
    std::vector<unsigned char> window_;  // checking only: where dropped bytes go
    bool ended_ = false;
};

// Whole-buffer forms of the two above.
std::vector<unsigned char> deflate_bytes(const void *data, size_t len, int level);
void inflate_bytes(const void *stored, size_t stored_len, void *out, size_t raw_len);

}  // namespace shardpoint

namespace shardpoint {

// Block compression (format 2, FORMAT.md 4): every block of an extent's raw bytes is compressed on
// its own, so blocks compress on all cores and a partial read inflates only the blocks it needs.

// Byte shuffle of `len` bytes of elements `width` bytes wide: byte j of element i moves to
// j * n + i (n = len / width), grouping the bytes that vary alike (the exponents of floats);
// the len % width trailing bytes stay at the end. unshuffle_bytes undoes it.
void shuffle_bytes(const unsigned char *src, size_t len, uint32_t width, unsigned char *dst);
void unshuffle_bytes(const unsigned char *src, size_t len, uint32_t width, unsigned char *dst);

// Compresses and decompresses single blocks with one codec; holds the codec's contexts, so
// keep one per thread.
class BlockCodec {
public:
    // `transform` is Transform::zlib_blocks or Transform::zstd_blocks; `level` is the codec's
    // (zlib 1..9, zstd 1..19; only compression uses it).
    BlockCodec(Transform transform, int level);
    ~BlockCodec();
    BlockCodec(const BlockCodec &) = delete;
    BlockCodec &operator=(const BlockCodec &) = delete;
    // Compresses `len` (> 0) bytes into `out` (room for len - 1 bytes) and returns the compressed
    // length, or 0 when compressing does not make the block smaller (store it raw then).
    size_t compress(const unsigned char *raw, size_t len, unsigned char *out);
    // Decompresses one block's stored bytes into exactly `raw_len` bytes; Code::format if they
    // are not exactly one stream or frame of that length.
    void decompress(const unsigned char *stored, size_t stored_len, unsigned char *out, size_t raw_len);

private:
    Transform transform_;
    int level_;
    z_stream deflate_{};
    z_stream inflate_{};
    bool deflate_ready_ = false, inflate_ready_ = false;
    void *zstd_cctx_ = nullptr;
    void *zstd_dctx_ = nullptr;
};

// The levels each block codec accepts.
int block_codec_max_level(Transform transform);

}  // namespace shardpoint
