// Checksums and the deflate transform (zlib).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include <zlib.h>

namespace shardpoint {

uint32_t crc32_of(const void *data, size_t len, uint32_t crc = 0);

// The CRC-32 kernels crc32_of chooses from (the fastest this CPU has), named for tests and
// benchmarks that check or time each one. All give zlib's values.
enum class Crc32Kernel { zlib, clmul, vpclmul };
bool crc32_kernel_available(Crc32Kernel kernel);
uint32_t crc32_with(Crc32Kernel kernel, const void *data, size_t len, uint32_t crc = 0);  // kernel must be available
// CRC-32 of A||B from crc(A), crc(B) and len(B).
uint32_t crc32_combine_of(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

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
