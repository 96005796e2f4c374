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

uint32_t crc32_combine_of(uint32_t crc_a, uint32_t crc_b, uint64_t len_b) {
    return uint32_t(::crc32_combine(crc_a, crc_b, z_off_t(len_b)));
}

std::vector<unsigned char> deflate_bytes(const void *data, size_t len, int level) {
    z_stream zs{};
    if (deflateInit(&zs, level) != Z_OK) throw Error(Code::out_of_memory, "zlib deflateInit failed");
    std::vector<unsigned char> out(deflateBound(&zs, uLong(len)));
    zs.next_in = static_cast<Bytef *>(const_cast<void *>(data));
    zs.next_out = out.data();
    size_t in_left = len, out_left = out.size();
    int rc;
    do {
        zs.avail_in = uInt(in_left > (1u << 30) ? (1u << 30) : in_left);
        zs.avail_out = uInt(out_left > (1u << 30) ? (1u << 30) : out_left);
        uInt before_in = zs.avail_in, before_out = zs.avail_out;
        rc = ::deflate(&zs, in_left == zs.avail_in ? Z_FINISH : Z_NO_FLUSH);
        in_left -= before_in - zs.avail_in;
        out_left -= before_out - zs.avail_out;
    } while (rc == Z_OK || (rc == Z_BUF_ERROR && out_left > 0));
    deflateEnd(&zs);
    if (rc != Z_STREAM_END) throw Error(Code::internal, "zlib deflate failed");
    out.resize(zs.total_out);
    return out;
}

void inflate_bytes(const void *stored, size_t stored_len, void *out, size_t raw_len) {
    // zlib refuses a null output buffer, even for an empty stream: give it a byte it must not use.
    unsigned char spare;
    if (raw_len == 0) {
        z_stream zs{};
        if (inflateInit(&zs) != Z_OK) throw Error(Code::out_of_memory, "zlib inflateInit failed");
        zs.next_in = static_cast<Bytef *>(const_cast<void *>(stored));
        zs.avail_in = uInt(stored_len > (1u << 30) ? (1u << 30) : stored_len);
        zs.next_out = &spare;
        zs.avail_out = 1;
        int rc = ::inflate(&zs, Z_FINISH);
        bool ok = rc == Z_STREAM_END && zs.total_out == 0 && zs.total_in == stored_len;
        inflateEnd(&zs);
        if (!ok) throw Error(Code::format, "compressed extent does not inflate to its recorded length");
        return;
    }
    z_stream zs{};
    if (inflateInit(&zs) != Z_OK) throw Error(Code::out_of_memory, "zlib inflateInit failed");
    zs.next_in = static_cast<Bytef *>(const_cast<void *>(stored));
    zs.next_out = static_cast<Bytef *>(out);
    size_t in_left = stored_len, out_left = raw_len;
    int rc;
    do {
        zs.avail_in = uInt(in_left > (1u << 30) ? (1u << 30) : in_left);
        zs.avail_out = uInt(out_left > (1u << 30) ? (1u << 30) : out_left);
        uInt before_in = zs.avail_in, before_out = zs.avail_out;
        rc = ::inflate(&zs, Z_NO_FLUSH);
        in_left -= before_in - zs.avail_in;
        out_left -= before_out - zs.avail_out;
        if (rc == Z_BUF_ERROR && (in_left == 0 || out_left == 0)) break;
    } while (rc == Z_OK || rc == Z_BUF_ERROR);
    inflateEnd(&zs);
    if (rc != Z_STREAM_END || out_left != 0 || in_left != 0)
        throw Error(Code::format, "compressed extent does not inflate to its recorded length");
}

}  // namespace shardpoint
