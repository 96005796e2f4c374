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
    b.setTransform(e.transform == Transform::deflate ? schema::Transform::DEFLATE : schema::Transform::NONE);
    auto blocks = b.initBlockCrc32(unsigned(e.block_crc32.size()));
    for (size_t i = 0; i < e.block_crc32.size(); ++i) blocks.set(unsigned(i), e.block_crc32[i]);
    b.setWriterRank(e.writer_rank);
}

}  // namespace shardpoint
