// Block compression (format 2): one zlib stream or zstd frame per block, and the byte shuffle.
#include <zstd.h>
#include <zstd_errors.h>

#include <cstring>
#include <string>

#include "shardpoint/codec.hpp"
#include "shardpoint/error.hpp"

namespace shardpoint {

namespace {

// With the width known at compile time the inner loop unrolls and the stores of each byte plane
// run sequentially: several times faster than the generic loop on 2- and 4-byte elements.
template <uint32_t W>
void shuffle_fixed(const unsigned char *src, size_t n, unsigned char *dst) {
    for (size_t i = 0; i < n; ++i)
        for (uint32_t j = 0; j < W; ++j) dst[j * n + i] = src[i * W + j];
}
template <uint32_t W>
void unshuffle_fixed(const unsigned char *src, size_t n, unsigned char *dst) {
    for (size_t i = 0; i < n; ++i)
        for (uint32_t j = 0; j < W; ++j) dst[i * W + j] = src[j * n + i];
}

}  // namespace

void shuffle_bytes(const unsigned char *src, size_t len, uint32_t width, unsigned char *dst) {
    const size_t n = len / width;
    switch (width) {
        case 2: shuffle_fixed<2>(src, n, dst); break;
        case 4: shuffle_fixed<4>(src, n, dst); break;
        case 8: shuffle_fixed<8>(src, n, dst); break;
        default:
            for (size_t i = 0; i < n; ++i)
                for (uint32_t j = 0; j < width; ++j) dst[j * n + i] = src[i * width + j];
    }
    std::memcpy(dst + n * width, src + n * width, len - n * width);
}

void unshuffle_bytes(const unsigned char *src, size_t len, uint32_t width, unsigned char *dst) {
    const size_t n = len / width;
    switch (width) {
        case 2: unshuffle_fixed<2>(src, n, dst); break;
        case 4: unshuffle_fixed<4>(src, n, dst); break;
        case 8: unshuffle_fixed<8>(src, n, dst); break;
        default:
            for (size_t i = 0; i < n; ++i)
                for (uint32_t j = 0; j < width; ++j) dst[i * width + j] = src[j * n + i];
    }
    std::memcpy(dst + n * width, src + n * width, len - n * width);
}

int block_codec_max_level(Transform transform) { return transform == Transform::zstd_blocks ? 19 : 9; }

BlockCodec::BlockCodec(Transform transform, int level) : transform_(transform), level_(level) {
    if (!is_block_compressed(transform)) throw Error(Code::internal, "BlockCodec needs a block transform");
}

BlockCodec::~BlockCodec() {
    if (deflate_ready_) deflateEnd(&deflate_);
    if (inflate_ready_) inflateEnd(&inflate_);
    ZSTD_freeCCtx(static_cast<ZSTD_CCtx *>(zstd_cctx_));
    ZSTD_freeDCtx(static_cast<ZSTD_DCtx *>(zstd_dctx_));
}

size_t BlockCodec::compress(const unsigned char *raw, size_t len, unsigned char *out) {
    if (len < 2) return 0;
    if (transform_ == Transform::zstd_blocks) {
        if (!zstd_cctx_) {
            zstd_cctx_ = ZSTD_createCCtx();
            if (!zstd_cctx_) throw Error(Code::out_of_memory, "zstd: cannot create a compression context");
            ZSTD_CCtx_setParameter(static_cast<ZSTD_CCtx *>(zstd_cctx_), ZSTD_c_compressionLevel, level_);
        }
        size_t n = ZSTD_compress2(static_cast<ZSTD_CCtx *>(zstd_cctx_), out, len - 1, raw, len);
        if (ZSTD_isError(n)) {
            if (ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall) return 0;  // incompressible
            throw Error(Code::internal, std::string("zstd compression failed: ") + ZSTD_getErrorName(n));
        }
        return n;
    }
    if (!deflate_ready_) {
        if (deflateInit(&deflate_, level_) != Z_OK) throw Error(Code::out_of_memory, "zlib deflateInit failed");
        deflate_ready_ = true;
    } else {
        deflateReset(&deflate_);
    }
    deflate_.next_in = const_cast<Bytef *>(raw);
    deflate_.avail_in = uInt(len);
    deflate_.next_out = out;
    deflate_.avail_out = uInt(len - 1);
    int rc = ::deflate(&deflate_, Z_FINISH);
    if (rc == Z_STREAM_END) return len - 1 - deflate_.avail_out;
    if (rc == Z_OK || rc == Z_BUF_ERROR) return 0;  // out of room: not smaller
    throw Error(Code::internal, "zlib deflate failed");
}

void BlockCodec::decompress(const unsigned char *stored, size_t stored_len, unsigned char *out, size_t raw_len) {
    if (transform_ == Transform::zstd_blocks) {
        if (!zstd_dctx_) {
            zstd_dctx_ = ZSTD_createDCtx();
            if (!zstd_dctx_) throw Error(Code::out_of_memory, "zstd: cannot create a decompression context");
        }
        // Exactly one frame: ZSTD_decompress would also accept several back to back.
        size_t frame = ZSTD_findFrameCompressedSize(stored, stored_len);
        if (ZSTD_isError(frame) || frame != stored_len)
            throw Error(Code::format, "a block's stored bytes are not exactly one zstd frame");
        size_t n = ZSTD_decompressDCtx(static_cast<ZSTD_DCtx *>(zstd_dctx_), out, raw_len, stored, stored_len);
        if (ZSTD_isError(n)) throw Error(Code::format, std::string("a block's zstd frame is corrupt: ") + ZSTD_getErrorName(n));
        if (n != raw_len)
            throw Error(Code::format, "a block's zstd frame holds " + std::to_string(n) + " bytes, not " + std::to_string(raw_len));
        return;
    }
    if (!inflate_ready_) {
        if (inflateInit(&inflate_) != Z_OK) throw Error(Code::out_of_memory, "zlib inflateInit failed");
        inflate_ready_ = true;
    } else {
        inflateReset(&inflate_);
    }
    inflate_.next_in = const_cast<Bytef *>(stored);
    inflate_.avail_in = uInt(stored_len);
    inflate_.next_out = out;
    inflate_.avail_out = uInt(raw_len);
    int rc = ::inflate(&inflate_, Z_FINISH);
    if (rc != Z_STREAM_END || inflate_.avail_out != 0 || inflate_.avail_in != 0)
        throw Error(Code::format, "a block's zlib stream is corrupt, or not exactly " + std::to_string(raw_len) +
                                      " bytes, or followed by other bytes");
}

}  // namespace shardpoint
