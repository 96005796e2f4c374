// Conversion between shardpoint checkpoints and safetensors, Hugging Face's format: an 8-byte
// little-endian header length N, N bytes of JSON (padded with spaces), then the tensors' bytes,
// little-endian, C order, every byte of that buffer indexed by exactly one tensor. Both a single
// file and the sharded layout of a model directory (model-0000k-of-0000n.safetensors plus
// model.safetensors.index.json) are read and written.
//
// Memory stays bounded: tensors are copied in pieces of at most ConvertOptions::buffer_size bytes,
// each piece one contiguous run of the tensor's bytes, so a tensor larger than the buffer never
// has to be held whole; two buffers let the reading of one batch overlap the writing of another.
// Output appears only once complete: safetensors files are written under temporary names and
// renamed at the end; checkpoints are committed by the library's own save.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "shardpoint/model.hpp"
#include "shardpoint/progress.hpp"
#include "shardpoint/storage.hpp"

namespace shardpoint {

struct ConvertOptions {
    bool overwrite = false;      // replace the output (a file, a model directory's files, a checkpoint)
    bool skip_bytes = false;     // to safetensors: leave bytes entries out instead of refusing them
    bool fsync = true;           // to safetensors: fsync the files and their directory (from: save.fsync)
    uint64_t max_shard_size = 0; // to safetensors: 0 writes one file; else a sharded model directory
    uint64_t buffer_size = 64ull << 20;  // bytes per copy buffer (two: one read while the other is written)
    unsigned io_threads = 0;     // to safetensors: threads reading the checkpoint; 0: one per core
    SaveOptions save;            // from safetensors: how the checkpoint is saved
    ProgressCallback progress;   // tensor bytes copied (ProgressPhase::convert); false cancels
};

// The safetensors name of a dtype ("BF16", "F8_E4M3"); nullptr when safetensors has none.
const char *safetensors_dtype_name(DType dtype);

// One tensor of a safetensors header. `begin` and `end` are absolute offsets in the file.
struct SafetensorsTensor {
    std::string name;
    DType dtype = DType::u8;
    Dims shape;
    uint64_t begin = 0, end = 0;
};

struct SafetensorsHeader {
    uint64_t data_start = 0;                 // 8 + the header length
    std::vector<SafetensorsTensor> tensors;  // in the order of their bytes
    std::vector<std::pair<std::string, std::string>> metadata;  // __metadata__
};

// Reads and checks the header of the safetensors file `path` (`file_size` bytes, open as `fd`):
// Code::format for anything malformed or truncated (the message names the file and the tensor),
// Code::dtype for a dtype shardpoint has no equal for, Code::shape beyond shardpoint's limits.
SafetensorsHeader read_safetensors_header(int fd, uint64_t file_size, const std::string &path);

// Writes the tensors of the checkpoint in `ckpt_dir` (all of them, whole, however they were
// sharded) and its user metadata (as __metadata__) to `out_path`: one file, or, when `out_path`
// is a directory or max_shard_size is set, a model directory (see the C ABI's documentation).
void convert_to_safetensors(const std::string &ckpt_dir, const std::string &out_path, const ConvertOptions &options);

// Saves the tensors and __metadata__ of the safetensors file, index or model directory at
// `in_path` as a checkpoint in `ckpt_dir`.
void convert_from_safetensors(const std::string &in_path, const std::string &ckpt_dir, const ConvertOptions &options);

// A byte count as Hugging Face writes max_shard_size: a whole number with an optional unit,
// decimal (KB, MB, GB, TB: powers of 1000) or binary (KiB, MiB, GiB, TiB: powers of 1024), any
// case, e.g. "5GB", "500MB", "64KiB", "4096". Code::invalid_argument otherwise.
uint64_t parse_size(const std::string &text);

// The boxes that split a tensor of `shape` into pieces of at most `max_bytes` (at least one
// element's size): in C order, each piece one contiguous run of the tensor's bytes, together
// exactly the tensor. A tensor that fits, or has no element, is one piece.
std::vector<Box> contiguous_pieces(const Dims &shape, uint64_t itemsize, uint64_t max_bytes);

}  // namespace shardpoint
