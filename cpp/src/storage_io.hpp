// Internal to the filesystem storage layer (storage_writer.cpp, storage_reader.cpp, gc.cpp):
// file descriptors, full reads and writes, fsync helpers, per-worker scratch buffers.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "shardpoint/parallel.hpp"

namespace shardpoint {
namespace io {

constexpr uint64_t write_piece_bytes = 8ull << 20;   // unit of parallel writing
constexpr uint64_t read_piece_bytes = 16ull << 20;   // largest single read
constexpr uint64_t merge_gap_bytes = 64ull << 10;    // nearby reads closer than this are merged
// Extents shorter than the save's alignment gain nothing from it (they would waste more than they
// hold): they are packed at this alignment instead (format 1.2), and written in runs of up to
// pack_run_bytes with one pwrite per run.
constexpr uint64_t packed_alignment = 64;
constexpr uint64_t pack_run_bytes = 1ull << 20;
// Bytes that are checksummed or copied again after their read are read in steps of about this
// size, so that the second pass finds them in the core's L2 cache instead of in memory.
constexpr uint64_t cache_step_bytes = 512ull << 10;

// Owns a file descriptor; closes it unless released.
class FileDescriptor {
public:
    explicit FileDescriptor(int fd = -1) : fd_(fd) {}
    ~FileDescriptor();
    FileDescriptor(const FileDescriptor &) = delete;
    FileDescriptor &operator=(const FileDescriptor &) = delete;
    int get() const { return fd_; }
    int release() {
        int fd = fd_;
        fd_ = -1;
        return fd;
    }

private:
    int fd_;
};

std::string join(const std::string &dir, const std::string &name);
inline uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }
// Where an extent of `len` bytes starts at or after `cursor` (FORMAT.md section 4).
inline uint64_t extent_offset(uint64_t cursor, uint64_t len, uint64_t alignment) {
    return align_up(cursor, len >= alignment ? alignment : std::min(alignment, packed_alignment));
}

// Writes exactly len bytes (Code::io, or Code::no_space when the disk is full).
void pwrite_full(int fd, const void *data, uint64_t len, uint64_t offset, const std::string &file);
// Reads exactly len bytes; a short file is Code::truncated.
void pread_full(int fd, void *data, uint64_t len, uint64_t offset, const std::string &file);
void fsync_or_throw(int fd, const std::string &what);
void fsync_directory(const std::string &dir);
// Asks the kernel to begin writing a range back to disk without waiting for it (a hint: errors
// surface at the final fsync).
void start_writeback(int fd, uint64_t offset, uint64_t len);

// One reusable staging buffer per worker, freed when the operation ends (so no thread keeps
// large buffers alive between saves or loads).
class ScratchBuffers {
public:
    ScratchBuffers(size_t tasks, unsigned threads) : buffers_(worker_count(tasks, threads)) {}
    // At least `len` bytes, uninitialized (every use reads into them before looking).
    unsigned char *get(unsigned worker, size_t len) {
        Buffer &b = buffers_[worker];
        if (b.size < len) {
            b.bytes.reset(new unsigned char[len]);
            b.size = len;
        }
        return b.bytes.get();
    }

private:
    struct Buffer {
        std::unique_ptr<unsigned char[]> bytes;
        size_t size = 0;
    };
    std::vector<Buffer> buffers_;
};

}  // namespace io
}  // namespace shardpoint
