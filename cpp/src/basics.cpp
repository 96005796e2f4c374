// Errors, dtypes and checksums: the small pieces everything else uses.
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "shardpoint/codec.hpp"
#include "shardpoint/dtype.hpp"
#include "shardpoint/error.hpp"

namespace shardpoint {

void throw_errno(Code code, const std::string &what, int err) {
    if (err == ENOMEM) code = Code::out_of_memory;
    if (err == ENOSPC || err == EDQUOT) code = Code::no_space;  // whatever the step: callers must see it
    throw Error(code, what + ": " + std::strerror(err));
}

namespace {
struct DTypeInfo {
    const char *name;
    uint32_t size;
};
constexpr DTypeInfo dtype_table[dtype_count] = {
    {"bool", 1}, {"u8", 1},   {"i8", 1},   {"i16", 2},        {"i32", 4},        {"i64", 8},
    {"u16", 2},  {"u32", 4},  {"u64", 8},  {"f16", 2},        {"bf16", 2},       {"f32", 4},
    {"f64", 8},  {"complex64", 8}, {"complex128", 16}, {"f8_e4m3fn", 1}, {"f8_e5m2", 1},
};
}  // namespace

uint32_t dtype_size(int32_t value) { return dtype_valid(value) ? dtype_table[value].size : 0; }

const char *dtype_name(int32_t value) { return dtype_valid(value) ? dtype_table[value].name : nullptr; }

int32_t dtype_from_name(const std::string &name) {
    for (int32_t i = 0; i < dtype_count; ++i)
        if (name == dtype_table[i].name) return i;
    return -1;
}

namespace {
// CRC-32 keeps polynomials bit-reflected: bit 31 holds the coefficient of x^0, bit 0 that of x^31.
constexpr uint32_t crc32_poly = 0xEDB88320u;  // P without its x^32 term, reflected
constexpr uint32_t x_power_0 = 0x80000000u;  // the polynomial 1

// a * b mod P.
uint32_t multiply_mod_p(uint32_t a, uint32_t b) {
    uint32_t product = 0;
    for (uint32_t bit = x_power_0; a != 0; bit >>= 1) {  // a's terms x^0, x^1, ... until none is left
        if (a & bit) {
            product ^= b;
            a ^= bit;
        }
        b = (b & 1) ? (b >> 1) ^ crc32_poly : b >> 1;  // b *= x (an x^32 term folds back as P)
    }
    return product;
}

// x^(2^k) mod P for k = 0..63: x^(8 len) is the product of the powers of len's 8x bits.
struct PowersOfX {
    uint32_t p[64];
    PowersOfX() {
        p[0] = x_power_0 >> 1;  // x^1
        for (int k = 1; k < 64; ++k) p[k] = multiply_mod_p(p[k - 1], p[k - 1]);
    }
};
const PowersOfX powers_of_x;
}  // namespace

uint32_t crc32_shift_operator(uint64_t len) {
    uint32_t result = x_power_0;
    // The exponent is 8 * len: len's bit k is the power x^(2^(k + 3)).
    for (int k = 0; len != 0 && k + 3 < 64; ++k, len >>= 1)
        if (len & 1) result = multiply_mod_p(result, powers_of_x.p[k + 3]);
    return result;
}

uint32_t crc32_combine_with(uint32_t crc_a, uint32_t crc_b, uint32_t shift_operator) {
    return multiply_mod_p(shift_operator, crc_a) ^ crc_b;
}

uint32_t crc32_combine_of(uint32_t crc_a, uint32_t crc_b, uint64_t len_b) {
    if (crc_a == 0) return crc_b;  // 0 shifted is 0: the first piece of every extent
    return crc32_combine_with(crc_a, crc_b, crc32_shift_operator(len_b));
}

namespace {
constexpr size_t deflate_out_piece = 1u << 20;
constexpr size_t zlib_max = 1u << 30;  // zlib counts in uInt
[[noreturn]] void bad_stream() { throw Error(Code::format, "compressed extent does not inflate to its recorded length"); }
}  // namespace

Deflater::Deflater(int level, Sink sink) : sink_(std::move(sink)), out_(deflate_out_piece) {
    if (deflateInit(&zs_, level) != Z_OK) throw Error(Code::out_of_memory, "zlib deflateInit failed");
}

Deflater::~Deflater() { deflateEnd(&zs_); }

uint64_t Deflater::bound(uint64_t raw_len) { return deflateBound(&zs_, uLong(raw_len)); }

void Deflater::drain(int flush) {
    // Runs deflate until it has consumed the input (and, when finishing, ended the stream).
    for (;;) {
        zs_.next_out = out_.data();
        zs_.avail_out = uInt(out_.size());
        int rc = ::deflate(&zs_, flush);
        if (rc == Z_STREAM_ERROR) throw Error(Code::internal, "zlib deflate failed");
        size_t produced = out_.size() - zs_.avail_out;
        if (produced) sink_(out_.data(), produced);
        if (flush == Z_FINISH ? rc == Z_STREAM_END : (zs_.avail_in == 0 && zs_.avail_out != 0)) return;
    }
}

void Deflater::write(const void *data, size_t len) {
    auto p = static_cast<const Bytef *>(data);
    while (len > 0) {
        size_t n = len > zlib_max ? zlib_max : len;
        zs_.next_in = const_cast<Bytef *>(p);
        zs_.avail_in = uInt(n);
        drain(Z_NO_FLUSH);
        p += n;
        len -= n;
    }
}

void Deflater::finish() {
    zs_.next_in = nullptr;
    zs_.avail_in = 0;
    drain(Z_FINISH);
}

std::vector<unsigned char> deflate_bytes(const void *data, size_t len, int level) {
    std::vector<unsigned char> out;
    Deflater z(level, [&](const unsigned char *p, size_t n) { out.insert(out.end(), p, p + n); });
    z.write(data, len);
    z.finish();
    return out;
}

Inflater::Inflater(void *out, size_t out_len) : out_(static_cast<unsigned char *>(out)), out_len_(out_len) {
    if (inflateInit(&zs_) != Z_OK) throw Error(Code::out_of_memory, "zlib inflateInit failed");
}

Inflater::~Inflater() { inflateEnd(&zs_); }

void Inflater::write(const void *stored, size_t len) {
    auto p = static_cast<const Bytef *>(stored);
    while (len > 0) {
        if (ended_) bad_stream();  // bytes after the end of the stream
        size_t n = len > zlib_max ? zlib_max : len;
        zs_.next_in = const_cast<Bytef *>(p);
        zs_.avail_in = uInt(n);
        while (zs_.avail_in > 0 && !ended_) {
            size_t done = zs_.total_out;
            size_t room = out_len_ - done;
            // A full output (the stream's trailer may still follow) gets one spare byte:
            // producing anything into it is an overflow.
            if (room == 0) {
                zs_.next_out = &spare_;
                zs_.avail_out = 1;
            } else if (out_ == nullptr) {
                if (window_.empty()) window_.resize(deflate_out_piece);
                zs_.next_out = window_.data();
                zs_.avail_out = uInt(room > window_.size() ? window_.size() : room);
            } else {
                zs_.next_out = out_ + done;
                zs_.avail_out = uInt(room > zlib_max ? zlib_max : room);
            }
            int rc = ::inflate(&zs_, Z_NO_FLUSH);
            if (zs_.total_out > out_len_) bad_stream();
            if (rc == Z_STREAM_END) ended_ = true;
            else if (rc != Z_OK && rc != Z_BUF_ERROR) bad_stream();
            else if (rc == Z_BUF_ERROR && zs_.avail_out == 0) bad_stream();
        }
        if (zs_.avail_in > 0) bad_stream();
        p += n;
        len -= n;
    }
}

void Inflater::finish() {
    if (!ended_ || zs_.total_out != out_len_) bad_stream();
}

void inflate_bytes(const void *stored, size_t stored_len, void *out, size_t raw_len) {
    Inflater z(out, raw_len);
    z.write(stored, stored_len);
    z.finish();
}

}  // namespace shardpoint
