// The model of a checkpoint, in DCP's vocabulary: MetadataIndex, WriteItem, SavePlan,
// WriteResult, ReadItem, LoadPlan and Metadata.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "shardpoint/dtype.hpp"

namespace shardpoint {

using Dims = std::vector<uint64_t>;
using Strides = std::vector<int64_t>;

enum class EntryKind : int32_t { tensor = 0, bytes = 1 };
// deflate: one zlib stream per extent (format 1). zlib_blocks, zstd_blocks: every block compressed
// alone (format 2), so that blocks compress on all cores and a partial read inflates only its own.
enum class Transform : int32_t { none = 0, deflate = 1, zlib_blocks = 2, zstd_blocks = 3 };
inline bool is_block_compressed(Transform t) { return t == Transform::zlib_blocks || t == Transform::zstd_blocks; }

// Addresses one chunk of an entry: its fqn plus the chunk's offsets (empty for bytes and 0-d).
struct MetadataIndex {
    std::string fqn;
    Dims offsets;
};

// A box inside a tensor. Bytes entries are modelled as 1-d u8 tensors of their length.
struct Box {
    Dims offsets;
    Dims sizes;
};

// A box by reference: lets planning look at offsets and sizes where they already live.
struct BoxRef {
    const Dims *offsets;
    const Dims *sizes;
};
inline BoxRef ref(const Box &b) { return BoxRef{&b.offsets, &b.sizes}; }

// 1 for an empty list, 0 when any dimension is 0; else throws Code::shape on overflow.
uint64_t product(const Dims &dims);
bool box_inside(const Box &box, const Dims &shape);
bool boxes_overlap(BoxRef a, BoxRef b);  // true when they share at least one element
inline bool boxes_overlap(const Box &a, const Box &b) { return boxes_overlap(ref(a), ref(b)); }
// Indices of two overlapping boxes, or {-1, -1} when all are pairwise disjoint. Empty boxes
// overlap nothing; 0-d boxes overlap each other. O(n log n) when at most two dimensions tell the
// boxes apart; with three or more it compares at most overlap_check_budget(n) pairs and throws
// Code::shape ("too irregular") beyond that rather than spend unbounded time (FORMAT.md 3).
std::pair<long, long> find_overlap(const std::vector<BoxRef> &boxes);
// The same, drawing its comparisons from `budget` (shared by the checks of many entries).
std::pair<long, long> find_overlap(const std::vector<BoxRef> &boxes, uint64_t &budget);
// 64 * n * ceil(log2 n) + 2^25 box comparisons.
uint64_t overlap_check_budget(size_t boxes);
// The part of a budget that n more boxes add: 64 * n * ceil(log2 n).
uint64_t overlap_check_allowance(size_t boxes);
// The dimension along which boxes are best indexed: the one with the most distinct offsets.
size_t best_split_dim(const std::vector<BoxRef> &boxes, size_t ndim);

// One chunk (or blob) a rank offers to save. `data` and `strides` are local to the offering rank
// and never leave it.
struct WriteItem {
    MetadataIndex index;
    EntryKind kind = EntryKind::tensor;
    DType dtype = DType::u8;
    Dims global_shape;
    Dims sizes;
    const void *data = nullptr;
    Strides strides;  // element strides; empty means C order
    bool bound = true;            // false: planned without data, which a host binds before writing
    bool length_unknown = false;  // bytes planned before their length is known (sizes {0} until bound)

    uint64_t nbytes() const;
    Box box() const { return Box{index.offsets, sizes}; }
    BoxRef box_ref() const { return BoxRef{&index.offsets, &sizes}; }
};

// A rank's items. In the global plan only the items the rank must write are kept.
struct SavePlan {
    std::vector<WriteItem> items;
    std::string file_name;  // storage data: the data file this rank writes, set by the global plan
};

// Where stored bytes live.
struct Extent {
    uint32_t file = 0;  // index into Metadata::files
    uint64_t offset = 0;
    uint64_t stored_length = 0;
    uint64_t raw_length = 0;
    uint32_t crc32 = 0;
    Transform transform = Transform::none;
    std::vector<uint32_t> block_crc32;
    uint32_t writer_rank = 0;
    std::vector<uint32_t> block_stored_length;  // block-compressed extents only
    uint32_t shuffle_width = 0;                  // block-compressed extents only: 0 or the dtype's size
};

// Where one WriteItem landed (the file is the writing rank's file).
struct WriteResult {
    MetadataIndex index;
    Extent extent;
};

struct ChunkMeta {
    Box box;
    Extent extent;
};

struct EntryMeta {
    std::string fqn;
    EntryKind kind = EntryKind::tensor;
    DType dtype = DType::u8;  // bytes: u8
    Dims shape;               // bytes: {length}
    std::vector<ChunkMeta> chunks;

    uint64_t numel() const { return product(shape); }
    uint64_t nbytes() const;
};

struct DataFileMeta {
    std::string name;
    uint64_t size = 0;
    uint32_t rank = 0;
};

struct StorageMeta {
    std::string checkpoint_id;
    std::string save_id;
    uint32_t world_size = 1;
    std::string library_version;
    int64_t created_unix_ns = 0;
    uint32_t alignment = 4096;
    uint32_t block_size = 64u << 10;  // small enough that a partial read verifies little extra
    uint32_t format_major = 1;
    uint32_t format_minor = 2;  // what this library writes (metadata_codec.hpp)
};

struct Metadata {
    StorageMeta storage;
    std::vector<DataFileMeta> files;
    std::vector<EntryMeta> entries;  // sorted by fqn
    std::vector<std::pair<std::string, std::string>> user;
    std::vector<std::pair<std::string, std::string>> framework;  // per framework: its own metadata

    // nullptr when absent. Entries are sorted, so this is a binary search.
    const EntryMeta *find(const std::string &fqn) const;
};

// Copy `lengths` elements of a saved chunk from `storage_offsets` in it to `dest_offsets` in a
// destination (a request's box).
struct ReadItem {
    size_t request = 0;  // index of the request (destination) in the LoadPlan
    const EntryMeta *entry = nullptr;
    size_t chunk = 0;    // index into entry->chunks
    Dims storage_offsets;
    Dims dest_offsets;
    Dims lengths;
};

// A destination: a box of an entry and where its elements go.
struct ReadRequest {
    const EntryMeta *entry = nullptr;
    Box box;
    void *dst = nullptr;
    Strides strides;  // element strides of dst; empty means C order of box.sizes
};

struct LoadPlan {
    std::vector<ReadRequest> requests;
    std::vector<ReadItem> items;
};

}  // namespace shardpoint
