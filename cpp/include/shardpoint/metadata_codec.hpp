// The metadata file: a fixed header followed by a single-segment Cap'n Proto message (FORMAT.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "shardpoint/model.hpp"

namespace shardpoint {

constexpr char metadata_file_name[] = "shardpoint.meta";
constexpr size_t metadata_header_size = 32;
constexpr uint64_t metadata_max_body = 1ull << 30;  // 1 GiB: larger is refused as garbage
// A checkpoint is written in the lowest version that can hold it: 1.2 unless an extent is block
// compressed, which only 2.0 readers understand (FORMAT.md 6).
constexpr uint32_t format_major_max = 2;
constexpr uint32_t format_1_minor = 2;  // 1.1: Checkpoint.frameworkMetadata; 1.2: short extents packed
constexpr uint32_t format_2_minor = 0;  // 2.0: block-compressed extents

// Header and message, ready to be written. A message longer than `max_body` fails with
// Code::range: a writer must never commit metadata that readers refuse as garbage.
std::vector<unsigned char> encode_metadata(const Metadata &metadata, uint64_t max_body = metadata_max_body);

// Parses and validates a whole metadata file. Every number is untrusted: the result has
// in-range file indices, plain file names, chunks inside their shapes, pairwise disjoint chunks,
// extents inside their files' recorded sizes and consistent lengths.
Metadata decode_metadata(const unsigned char *data, size_t len);

// FORMAT.md 3, rule 9 for one extent of entry `fqn` (elements of `itemsize` bytes, 1 for bytes
// entries) against `md`'s files, world size, block size and format version; Code::format if any
// number disagrees. Readers check every extent of a file with it; the finish phase checks the
// extents the ranks report before they become metadata.
void check_extent(const Extent &extent, const Metadata &md, const std::string &fqn, uint32_t itemsize);

// True when `name` is a plain file name (no separator, not "." or "..", no NUL, not empty).
bool is_plain_file_name(const std::string &name);

}  // namespace shardpoint
