// Between the core's model and Cap'n Proto builders of the schema: shared by the metadata codec
// and the storage-layer phase messages, so both write extents and texts the same way.
#pragma once

#include <string>

#include "shardpoint.capnp.h"
#include "shardpoint/model.hpp"

namespace shardpoint {

// Text of the whole string: a std::string would otherwise be converted up to its first NUL.
inline capnp::Text::Reader as_text(const std::string &s) { return capnp::Text::Reader(s.data(), s.size()); }

// The whole Text, embedded NULs included (validation decides about them).
inline std::string text_of(capnp::Text::Reader t) { return std::string(t.begin(), t.size()); }

inline void set_dims(capnp::List<uint64_t>::Builder list, const Dims &dims) {
    for (size_t i = 0; i < dims.size(); ++i) list.set(unsigned(i), dims[i]);
}

inline void build_extent(schema::Extent::Builder b, const Extent &e) {
    b.setFile(e.file);
    b.setOffset(e.offset);
    b.setStoredLength(e.stored_length);
    b.setRawLength(e.raw_length);
    b.setCrc32(e.crc32);
    b.setTransform(static_cast<schema::Transform>(int32_t(e.transform)));  // same values (model.hpp)
    auto blocks = b.initBlockCrc32(unsigned(e.block_crc32.size()));
    for (size_t i = 0; i < e.block_crc32.size(); ++i) blocks.set(unsigned(i), e.block_crc32[i]);
    b.setWriterRank(e.writer_rank);
    if (!e.block_stored_length.empty()) {
        auto lengths = b.initBlockStoredLength(unsigned(e.block_stored_length.size()));
        for (size_t i = 0; i < e.block_stored_length.size(); ++i) lengths.set(unsigned(i), e.block_stored_length[i]);
    }
    b.setShuffleWidth(e.shuffle_width);
}

// The extent's fields as they are, unvalidated; false when its transform is not one this
// library knows (the caller refuses it in its own terms).
inline bool read_extent_fields(schema::Extent::Reader r, Extent &e) {
    e.file = r.getFile();
    e.offset = r.getOffset();
    e.stored_length = r.getStoredLength();
    e.raw_length = r.getRawLength();
    e.crc32 = r.getCrc32();
    e.writer_rank = r.getWriterRank();
    auto blocks = r.getBlockCrc32();
    e.block_crc32.resize(blocks.size());
    for (unsigned i = 0; i < blocks.size(); ++i) e.block_crc32[i] = blocks[i];
    auto lengths = r.getBlockStoredLength();
    e.block_stored_length.resize(lengths.size());
    for (unsigned i = 0; i < lengths.size(); ++i) e.block_stored_length[i] = lengths[i];
    e.shuffle_width = r.getShuffleWidth();
    switch (r.getTransform()) {
        case schema::Transform::NONE: e.transform = Transform::none; return true;
        case schema::Transform::DEFLATE: e.transform = Transform::deflate; return true;
        case schema::Transform::ZLIB_BLOCKS: e.transform = Transform::zlib_blocks; return true;
        case schema::Transform::ZSTD_BLOCKS: e.transform = Transform::zstd_blocks; return true;
    }
    return false;
}

}  // namespace shardpoint
