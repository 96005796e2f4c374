// The filesystem storage layer: data files written with pwrite from many threads, CRC-32 computed
// while the bytes are hot, metadata committed atomically; reads planned as direct preads into
// the destination where the layouts agree, bounce buffers (merged across nearby ranges) elsewhere.
#include "shardpoint/storage.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/uio.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <deque>
#include <random>
#include <set>
#include <unordered_map>

#include "shardpoint/codec.hpp"
#include "shardpoint/error.hpp"
#include "shardpoint/layout.hpp"
#include "shardpoint/metadata_codec.hpp"
#include "shardpoint/parallel.hpp"

namespace shardpoint {

namespace {

constexpr uint64_t write_piece_bytes = 8ull << 20;   // unit of parallel writing
constexpr uint64_t read_piece_bytes = 16ull << 20;   // largest single read or staged slab
constexpr uint64_t merge_gap_bytes = 64ull << 10;    // nearby reads closer than this are merged
constexpr uint64_t merge_limit_bytes = 16ull << 20;  // ... into reads of at most this size

class FileDescriptor {
public:
    explicit FileDescriptor(int fd = -1) : fd_(fd) {}
    ~FileDescriptor() {
        if (fd_ >= 0) ::close(fd_);
    }
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

std::string join(const std::string &dir, const std::string &name) {
    return dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

void pwrite_full(int fd, const void *data, uint64_t len, uint64_t offset, const std::string &file) {
    auto p = static_cast<const unsigned char *>(data);
    while (len > 0) {
        ssize_t n = ::pwrite(fd, p, len > (1u << 30) ? (1u << 30) : len, off_t(offset));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno(Code::io, "write to '" + file + "'", errno);
        }
        p += n;
        len -= uint64_t(n);
        offset += uint64_t(n);
    }
}

// Reads exactly len bytes; a short file is Code::truncated.
void pread_full(int fd, void *data, uint64_t len, uint64_t offset, const std::string &file) {
    auto p = static_cast<unsigned char *>(data);
    while (len > 0) {
        ssize_t n = ::pread(fd, p, len > (1u << 30) ? (1u << 30) : len, off_t(offset));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno(Code::io, "read from '" + file + "'", errno);
        }
        if (n == 0) throw Error(Code::truncated, "data file '" + file + "' ends early at byte " + std::to_string(offset));
        p += n;
        len -= uint64_t(n);
        offset += uint64_t(n);
    }
}

void fsync_or_throw(int fd, const std::string &what) {
    if (::fsync(fd) != 0) throw_errno(Code::io, "fsync " + what, errno);
}

void fsync_directory(const std::string &dir) {
    FileDescriptor fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd.get() < 0) throw_errno(Code::io, "open directory '" + dir + "'", errno);
    fsync_or_throw(fd.get(), "directory '" + dir + "'");
}

// Asks the kernel to begin writing a range back to disk without waiting for it (a hint: errors
// surface at the final fsync).
void start_writeback(int fd, uint64_t offset, uint64_t len) {
#ifdef SYNC_FILE_RANGE_WRITE
    ::sync_file_range(fd, off_t(offset), off_t(len), SYNC_FILE_RANGE_WRITE);
#else
    (void)fd, (void)offset, (void)len;
#endif
}

bool is_contiguous(const WriteItem &w) { return w.strides.empty() || is_c_contiguous(w.sizes, w.strides); }

// One reusable staging buffer per worker, freed when the operation ends (so no thread keeps
// large buffers alive between saves or loads).
class ScratchBuffers {
public:
    ScratchBuffers(size_t tasks, unsigned threads) : buffers_(worker_count(tasks, threads)) {}
    unsigned char *get(unsigned worker, size_t len) {
        auto &b = buffers_[worker];
        if (b.size() < len) b.resize(len);
        return b.data();
    }

private:
    std::vector<std::vector<unsigned char>> buffers_;
};

}  // namespace

std::string data_file_name(const std::string &save_id, int rank) {
    char r[16];
    std::snprintf(r, sizeof r, "%05d", rank);
    return "data-" + save_id + "-r" + r + ".bin";
}

std::string new_save_id() {
    std::random_device rd;
    static const char hex[] = "0123456789abcdef";
    std::string id;
    for (int i = 0; i < 4; ++i) {
        uint32_t v = rd();
        for (int k = 0; k < 4; ++k) {
            id += hex[(v >> (8 * k + 4)) & 15];
            id += hex[(v >> (8 * k)) & 15];
        }
    }
    return id;
}

void make_directories(const std::string &dir) {
    if (dir.empty()) throw Error(Code::invalid_argument, "empty checkpoint path");
    std::string partial;
    size_t pos = 0;
    while (pos != std::string::npos) {
        pos = dir.find('/', pos + 1);
        partial = dir.substr(0, pos);
        if (partial.empty()) continue;
        if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST)
            throw_errno(Code::io, "create directory '" + partial + "'", errno);
    }
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        throw Error(Code::io, "'" + dir + "' exists and is not a directory");
}

// ---------------------------------------------------------------------------------------------
// Writing

FileSystemWriter::FileSystemWriter(std::string dir, SaveOptions options) : dir_(std::move(dir)), options_(std::move(options)) {}

void FileSystemWriter::reset(const std::string &save_id) { save_id_ = save_id; }

void FileSystemWriter::set_up_storage_writer(bool, int rank, int) {
    rank_ = rank;
    make_directories(dir_);
}

SavePlan FileSystemWriter::prepare_local_plan(SavePlan plan) { return plan; }

std::vector<SavePlan> FileSystemWriter::prepare_global_plan(std::vector<SavePlan> plans) {
    struct stat st;
    if (!options_.overwrite && ::stat(join(dir_, metadata_file_name).c_str(), &st) == 0)
        throw Error(Code::exists, "a checkpoint already exists at '" + dir_ + "' (ask for overwrite to replace it)");
    for (size_t r = 0; r < plans.size(); ++r) plans[r].file_name = data_file_name(save_id_, int(r));
    return plans;
}

std::vector<WriteResult> FileSystemWriter::write_data(const SavePlan &plan, uint64_t &file_size) {
    file_size = 0;
    if (plan.items.empty()) return {};
    std::string path = join(dir_, plan.file_name);
    FileDescriptor fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (fd.get() < 0) throw_errno(Code::io, "create data file '" + path + "'", errno);
    auto results = options_.compression_level > 0 ? write_compressed(fd.get(), plan, file_size)
                                                  : write_raw(fd.get(), plan, file_size);
    if (::ftruncate(fd.get(), off_t(file_size)) != 0) throw_errno(Code::io, "size data file '" + path + "'", errno);
    if (options_.fsync) fsync_or_throw(fd.get(), "data file '" + path + "'");
    if (::close(fd.release()) != 0) throw_errno(Code::io, "close data file '" + path + "'", errno);
    return results;
}

std::vector<WriteResult> FileSystemWriter::write_raw(int fd, const SavePlan &plan, uint64_t &file_size) {
    const uint64_t bs = options_.block_size;
    const uint64_t piece = std::max<uint64_t>(write_piece_bytes / bs, 1) * bs;
    std::vector<WriteResult> results(plan.items.size());
    struct Piece {
        size_t item;
        uint64_t begin, len;
    };
    std::vector<Piece> pieces;
    uint64_t cursor = 0;
    for (size_t i = 0; i < plan.items.size(); ++i) {
        const WriteItem &w = plan.items[i];
        uint64_t nb = w.nbytes();
        Extent &e = results[i].extent;
        results[i].index = w.index;
        e.writer_rank = uint32_t(rank_);
        e.stored_length = e.raw_length = nb;
        if (nb > 0) cursor = align_up(cursor, options_.alignment);
        e.offset = cursor;
        e.block_crc32.assign((nb + bs - 1) / bs, 0);
        cursor += nb;
        for (uint64_t b = 0; b < nb; b += piece) pieces.push_back(Piece{i, b, std::min(piece, nb - b)});
    }
    ScratchBuffers scratch(pieces.size(), options_.io_threads);
    parallel_for(pieces.size(), options_.io_threads, [&](size_t k, unsigned worker) {
        const Piece &p = pieces[k];
        const WriteItem &w = plan.items[p.item];
        Extent &e = results[p.item].extent;
        const uint32_t itemsize = dtype_size(int32_t(w.dtype));
        const unsigned char *src;
        if (is_contiguous(w)) {
            src = static_cast<const unsigned char *>(w.data) + p.begin;
        } else {
            unsigned char *buffer = scratch.get(worker, p.len);
            gather_elements(static_cast<const unsigned char *>(w.data), w.sizes, w.strides, itemsize,
                            p.begin / itemsize, p.len / itemsize, buffer);
            src = buffer;
        }
        for (uint64_t b = 0; b < p.len; b += bs)
            e.block_crc32[(p.begin + b) / bs] = crc32_of(src + b, std::min(bs, p.len - b));
        pwrite_full(fd, src, p.len, e.offset + p.begin, plan.file_name);
        // With fsync asked for, start writeback now so the disk works while we compute and
        // write the next pieces; the final fsync then has little left to wait for.
        if (options_.fsync) start_writeback(fd, e.offset + p.begin, p.len);
    });
    for (auto &r : results) {
        Extent &e = r.extent;
        uint32_t crc = 0;
        for (size_t k = 0; k < e.block_crc32.size(); ++k)
            crc = crc32_combine_of(crc, e.block_crc32[k], std::min(bs, e.stored_length - k * bs));
        e.crc32 = crc;
    }
    file_size = cursor;
    return results;
}

std::vector<WriteResult> FileSystemWriter::write_compressed(int fd, const SavePlan &plan, uint64_t &file_size) {
    std::vector<WriteResult> results(plan.items.size());
    std::mutex cursor_mutex;
    uint64_t cursor = 0;
    auto reserve = [&](uint64_t len) {
        std::lock_guard<std::mutex> lock(cursor_mutex);
        uint64_t offset = align_up(cursor, options_.alignment);
        cursor = offset + len;
        return offset;
    };
    ScratchBuffers scratch(plan.items.size(), options_.io_threads);
    parallel_for(plan.items.size(), options_.io_threads, [&](size_t i, unsigned worker) {
        const WriteItem &w = plan.items[i];
        const uint64_t nb = w.nbytes();
        const uint32_t itemsize = dtype_size(int32_t(w.dtype));
        Extent &e = results[i].extent;
        results[i].index = w.index;
        e.writer_rank = uint32_t(rank_);
        e.transform = Transform::deflate;
        e.raw_length = nb;

        // Small chunks are compressed into memory, then placed exactly. Large ones get the most
        // space their stream can take and are streamed into it through bounded buffers (the
        // unused end of the reservation stays a hole in the file): memory stays bounded.
        const bool stream = nb > write_piece_bytes;
        std::vector<unsigned char> small;
        uint64_t written = 0;
        uint32_t crc = 0;
        Deflater z(options_.compression_level, [&](const unsigned char *p, size_t n) {
            crc = crc32_of(p, n, crc);
            if (!stream) {
                small.insert(small.end(), p, p + n);
                return;
            }
            pwrite_full(fd, p, n, e.offset + written, plan.file_name);
            if (options_.fsync) start_writeback(fd, e.offset + written, n);
            written += n;
        });
        if (stream) e.offset = reserve(z.bound(nb));
        const unsigned char *src = static_cast<const unsigned char *>(w.data);
        for (uint64_t at = 0; at < nb; at += write_piece_bytes) {
            uint64_t len = std::min(write_piece_bytes, nb - at);
            if (is_contiguous(w)) {
                z.write(src + at, len);
            } else {
                unsigned char *buffer = scratch.get(worker, len);
                gather_elements(src, w.sizes, w.strides, itemsize, at / itemsize, len / itemsize, buffer);
                z.write(buffer, len);
            }
        }
        z.finish();
        if (!stream) {
            e.offset = reserve(small.size());
            pwrite_full(fd, small.data(), small.size(), e.offset, plan.file_name);
            if (options_.fsync) start_writeback(fd, e.offset, small.size());
            written = small.size();
        }
        e.stored_length = written;
        e.crc32 = crc;
    });
    file_size = cursor;
    return results;
}

void FileSystemWriter::finish(const Metadata &metadata) {
    std::vector<unsigned char> bytes = encode_metadata(metadata);
    std::string final_path = join(dir_, metadata_file_name);

    // The files of the checkpoint being replaced, to remove once the new one is committed.
    std::set<std::string> old_files;
    if (options_.overwrite) {
        try {
            FileSystemReader old(dir_, LoadOptions{});
            for (auto &f : old.read_metadata().files) old_files.insert(f.name);
        } catch (const Error &) {
            // No readable previous checkpoint: nothing of it to clean up.
        }
    }

    std::string tmp_path = join(dir_, std::string(metadata_file_name) + ".tmp-" + save_id_);
    {
        FileDescriptor fd(::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (fd.get() < 0) throw_errno(Code::io, "create '" + tmp_path + "'", errno);
        try {
            pwrite_full(fd.get(), bytes.data(), bytes.size(), 0, tmp_path);
            if (options_.fsync) fsync_or_throw(fd.get(), "'" + tmp_path + "'");
            if (::close(fd.release()) != 0) throw_errno(Code::io, "close '" + tmp_path + "'", errno);
        } catch (...) {
            ::unlink(tmp_path.c_str());
            throw;
        }
    }
    if (::rename(tmp_path.c_str(), final_path.c_str()) != 0) {
        int err = errno;
        ::unlink(tmp_path.c_str());
        throw_errno(Code::io, "rename metadata into place in '" + dir_ + "'", err);
    }
    committed_ = true;
    for (auto &f : metadata.files) old_files.erase(f.name);
    for (auto &name : old_files)
        if (is_plain_file_name(name)) ::unlink(join(dir_, name).c_str());
    // The checkpoint is committed; a failure here only means it may not yet be durable.
    if (options_.fsync) fsync_directory(dir_);
}

void FileSystemWriter::abort(const SavePlan &plan) {
    if (committed_) return;
    if (!plan.file_name.empty()) ::unlink(join(dir_, plan.file_name).c_str());
    ::unlink(join(dir_, std::string(metadata_file_name) + ".tmp-" + save_id_).c_str());
}

// ---------------------------------------------------------------------------------------------
// Reading

FileSystemReader::FileSystemReader(std::string dir, LoadOptions options) : dir_(std::move(dir)), options_(options) {}

FileSystemReader::~FileSystemReader() {
    for (auto &f : files_)
        if (f && f->fd >= 0) ::close(f->fd);
}

Metadata FileSystemReader::read_metadata() {
    std::string path = join(dir_, metadata_file_name);
    // O_NONBLOCK: opening a FIFO planted in place of the file must not hang; it fails S_ISREG.
    FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    if (fd.get() < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            throw Error(Code::not_found, "no checkpoint at '" + dir_ + "' (" + metadata_file_name + " is missing)");
        throw_errno(Code::io, "open '" + path + "'", errno);
    }
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) throw_errno(Code::io, "stat '" + path + "'", errno);
    if (!S_ISREG(st.st_mode)) throw Error(Code::format, "'" + path + "' is not a regular file");
    if (uint64_t(st.st_size) > metadata_max_body + metadata_header_size)
        throw Error(Code::format, "'" + path + "' is implausibly large for metadata");
    std::vector<unsigned char> bytes(size_t(st.st_size));
    pread_full(fd.get(), bytes.data(), bytes.size(), 0, path);
    return decode_metadata(bytes.data(), bytes.size());
}

void FileSystemReader::set_up_storage_reader(const Metadata &metadata) {
    metadata_ = &metadata;
    files_.clear();
    files_.resize(metadata.files.size());
}

const FileSystemReader::OpenFile &FileSystemReader::open_for(const Extent &extent, const EntryMeta &entry) {
    const DataFileMeta &meta = metadata_->files.at(extent.file);
    OpenFile *file;
    {
        std::lock_guard<std::mutex> lock(files_mutex_);
        auto &slot = files_[extent.file];
        if (!slot) {
            std::string path = join(dir_, meta.name);
            int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
            if (fd < 0) {
                if (errno == ENOENT)
                    throw Error(Code::not_found, "data file '" + meta.name + "' of entry '" + entry.fqn + "' is missing");
                if (errno == ELOOP)
                    throw Error(Code::path, "data file '" + meta.name + "' is a symbolic link; refusing to follow it out of the checkpoint");
                throw_errno(Code::io, "open data file '" + path + "'", errno);
            }
            auto opened = std::make_unique<OpenFile>();
            opened->fd = fd;
            struct stat st;
            if (::fstat(fd, &st) != 0) {
                ::close(fd);
                throw_errno(Code::io, "stat data file '" + path + "'", errno);
            }
            if (!S_ISREG(st.st_mode)) {
                ::close(fd);
                throw Error(Code::format, "data file '" + meta.name + "' of entry '" + entry.fqn + "' is not a regular file");
            }
            opened->size = uint64_t(st.st_size);
            slot = std::move(opened);
        }
        file = slot.get();
    }
    if (extent.offset + extent.stored_length > file->size)
        throw Error(Code::truncated, "data file '" + meta.name + "' is truncated: entry '" + entry.fqn + "' needs bytes up to " +
                                         std::to_string(extent.offset + extent.stored_length) + ", the file has " +
                                         std::to_string(file->size));
    return *file;
}

namespace {

// Checks the block CRCs of stored bytes [from, to) of an extent; `from` is block-aligned and
// `to` is block-aligned or the extent's end.
void check_blocks(const EntryMeta &entry, const Extent &e, const std::string &file, uint32_t block_size, uint64_t from,
                  uint64_t to, const unsigned char *bytes) {
    for (uint64_t k = from / block_size; k * block_size < to; ++k) {
        uint64_t start = k * block_size;
        uint64_t len = std::min<uint64_t>(block_size, e.stored_length - start);
        if (crc32_of(bytes + (start - from), len) != e.block_crc32[k])
            throw Error(Code::checksum, "checksum mismatch in entry '" + entry.fqn + "': data file '" + file + "', bytes " +
                                            std::to_string(e.offset + start) + ".." + std::to_string(e.offset + start + len));
    }
}

// Streams a compressed extent through `buffer` (read_piece_bytes long) into `out` (raw_length
// bytes; null: only check), verifying its CRC-32 when asked.
void inflate_extent(int fd, const EntryMeta &entry, const Extent &e, const std::string &file, bool verify,
                    unsigned char *out, unsigned char *buffer) {
    Inflater z(out, e.raw_length);
    uint32_t crc = 0;
    try {
        for (uint64_t at = 0; at < e.stored_length; at += read_piece_bytes) {
            uint64_t n = std::min(read_piece_bytes, e.stored_length - at);
            pread_full(fd, buffer, n, e.offset + at, file);
            if (verify) crc = crc32_of(buffer, n, crc);
            z.write(buffer, n);
        }
        z.finish();
    } catch (const Error &err) {
        // A corrupt stream is most likely corrupt bytes: say so when the CRC disagrees.
        if (err.code() != Code::format || !verify) throw;
        if (crc == e.crc32) throw Error(Code::format, "entry '" + entry.fqn + "' in data file '" + file + "': " + err.what());
    }
    if (verify && crc != e.crc32)
        throw Error(Code::checksum, "checksum mismatch in entry '" + entry.fqn + "': data file '" + file + "', compressed bytes " +
                                        std::to_string(e.offset) + ".." + std::to_string(e.offset + e.stored_length));
}

// A part of a ReadItem, resolved to stored bytes [a, b) of one extent.
// A contiguous range of an extent, starting at byte `a`, whose bytes land in the destination in
// runs of `run_bytes`, the runs placed by an odometer over `outer` with byte steps `step`.
// A contiguous destination is a single run.
struct Scatter {
    uint64_t a = 0;
    uint64_t run_bytes = 0;
    unsigned char *dst0 = nullptr;
    Dims outer;
    std::vector<int64_t> step;

    unsigned char *run_dst(uint64_t run) const {
        int64_t off = 0;
        for (size_t d = outer.size(); d-- > 0;) {
            off += int64_t(run % outer[d]) * step[d];
            run /= outer[d];
        }
        return dst0 + off;
    }
    // Calls f(dst, extent byte position, length) over the bytes [x, y), in order.
    template <class F>
    void each(uint64_t x, uint64_t y, F &&f) const {
        for (uint64_t p = x; p < y;) {
            uint64_t run = (p - a) / run_bytes, within = (p - a) % run_bytes;
            uint64_t n = std::min(run_bytes - within, y - p);
            f(run_dst(run) + within, p, n);
            p += n;
        }
    }
};

// preadv until every byte of `iov` is filled; a short file is Code::truncated.
void preadv_full(int fd, std::vector<struct iovec> &iov, uint64_t offset, const std::string &file) {
    size_t first = 0;
    while (first < iov.size()) {
        int count = int(std::min<size_t>(iov.size() - first, IOV_MAX));
        ssize_t n = ::preadv(fd, iov.data() + first, count, off_t(offset));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno(Code::io, "read from '" + file + "'", errno);
        }
        if (n == 0) throw Error(Code::truncated, "data file '" + file + "' ends early at byte " + std::to_string(offset));
        offset += uint64_t(n);
        for (uint64_t left = uint64_t(n); left > 0;) {
            struct iovec &v = iov[first];
            uint64_t take = std::min<uint64_t>(left, v.iov_len);
            v.iov_base = static_cast<char *>(v.iov_base) + take;
            v.iov_len -= take;
            left -= take;
            if (v.iov_len == 0) ++first;
        }
        while (first < iov.size() && iov[first].iov_len == 0) ++first;
    }
}

struct Piece {
    enum Kind { direct, linear, strided } kind;
    const EntryMeta *entry;
    const Extent *extent;
    int fd;
    uint64_t a, b;           // needed bytes, relative to the extent
    uint64_t read_a, read_b; // bytes to read (block-expanded when verifying)
    const Scatter *scatter;  // direct and linear: where the bytes go
    unsigned char *dst;      // strided: the slab's first element
    Dims lengths;            // strided only
    const int64_t *src_strides = nullptr;
    const int64_t *dst_strides = nullptr;
};

}  // namespace

void FileSystemReader::read_data(const LoadPlan &plan) {
    const bool verify = options_.verify;
    const uint32_t bs = metadata_->storage.block_size;
    // Per-item strides must outlive the pieces that point at them.
    std::vector<Strides> src_strides(plan.items.size()), dst_strides(plan.items.size());
    std::vector<Piece> direct, bounce;
    std::deque<Scatter> scatters;  // stable addresses: pieces point at them
    struct InflateTask {
        const EntryMeta *entry;
        const Extent *extent;
        int fd;
        std::vector<size_t> items;
    };
    std::vector<InflateTask> inflates;
    std::unordered_map<const Extent *, size_t> inflate_of;  // one inflate per compressed extent

    for (size_t i = 0; i < plan.items.size(); ++i) {
        const ReadItem &item = plan.items[i];
        const ReadRequest &req = plan.requests[item.request];
        const ChunkMeta &chunk = item.entry->chunks[item.chunk];
        const Extent &e = chunk.extent;
        const int fd = open_for(e, *item.entry).fd;
        const uint64_t isz = dtype_size(int32_t(item.entry->dtype));
        src_strides[i] = c_strides(chunk.box.sizes);
        dst_strides[i] = req.strides.empty() ? c_strides(req.box.sizes) : req.strides;
        if (e.transform == Transform::deflate) {
            auto [it, added] = inflate_of.emplace(&e, inflates.size());
            if (added) inflates.push_back(InflateTask{item.entry, &e, fd, {}});
            inflates[it->second].items.push_back(i);
            continue;
        }
        const Strides &ss = src_strides[i], &ds = dst_strides[i];
        const size_t ndim = item.lengths.size();
        int64_t src_elem = 0, dst_elem = 0;
        for (size_t d = 0; d < ndim; ++d) {
            src_elem += int64_t(item.storage_offsets[d]) * ss[d];
            dst_elem += int64_t(item.dest_offsets[d]) * ds[d];
        }
        unsigned char *dst0 = static_cast<unsigned char *>(req.dst) + dst_elem * int64_t(isz);
        size_t d0 = 0;
        while (d0 < ndim && item.lengths[d0] == 1) ++d0;
        bool src_linear = true;
        for (size_t d = d0 + 1; d < ndim; ++d) src_linear = src_linear && item.lengths[d] == chunk.box.sizes[d];
        bool dst_linear = is_c_contiguous(item.lengths, Strides(ds.begin(), ds.end()));

        // The destination's contiguous innermost part: dims [k, ndim) are in C order there.
        size_t k = ndim;
        for (int64_t acc = 1; k > 0; --k) {
            size_t d = k - 1;
            if (item.lengths[d] != 1 && ds[d] != acc) break;
            acc *= int64_t(item.lengths[d]);
        }
        uint64_t run_elems = 1;
        for (size_t d = k; d < ndim; ++d) run_elems *= item.lengths[d];
        // Contiguous saved bytes go straight into the destination: in one piece when it is
        // contiguous too, else in runs (preadv) when the runs are long enough to be worth it.
        if (src_linear && (k == 0 || run_elems * isz >= 512)) {
            const uint64_t begin = uint64_t(src_elem) * isz, end = begin + product(item.lengths) * isz;
            scatters.emplace_back();
            Scatter &sc = scatters.back();
            sc.a = begin;
            sc.dst0 = dst0;
            sc.run_bytes = k == 0 ? end - begin : run_elems * isz;
            for (size_t d = 0; d < k; ++d) {
                sc.outer.push_back(item.lengths[d]);
                sc.step.push_back(ds[d] * int64_t(isz));
            }
            for (uint64_t a = begin; a < end; a += read_piece_bytes) {
                uint64_t b = std::min(end, a + read_piece_bytes);
                auto add = [&](Piece::Kind kind, uint64_t x, uint64_t y) {
                    if (x >= y) return;
                    Piece p{kind, item.entry, &e, fd, x, y, x, y, &sc, nullptr, {}, nullptr, nullptr};
                    if (verify && kind == Piece::linear) {
                        p.read_a = x / bs * bs;
                        p.read_b = std::min<uint64_t>(align_up(y, bs), e.stored_length);
                    }
                    (kind == Piece::direct ? direct : bounce).push_back(std::move(p));
                };
                if (!verify) {
                    add(Piece::direct, a, b);
                    continue;
                }
                // Whole blocks go straight into the destination; partial blocks at either end
                // are read whole into a bounce buffer so their CRC can be checked.
                uint64_t mid_a = std::min(align_up(a, bs), b);
                uint64_t mid_b = b == e.stored_length ? b : std::max(b / bs * bs, mid_a);
                add(Piece::linear, a, mid_a);
                add(Piece::direct, mid_a, mid_b);
                add(Piece::linear, mid_b, b);
            }
            continue;
        }
        // Strided: slabs along the outermost dimension, each read as one covering range.
        const uint64_t row_bytes = uint64_t(ss[d0]) * isz;
        const uint64_t rows_per_slab = std::max<uint64_t>(1, read_piece_bytes / std::max<uint64_t>(row_bytes, 1));
        for (uint64_t j = 0; j < item.lengths[d0]; j += rows_per_slab) {
            Dims lengths = item.lengths;
            lengths[d0] = std::min(rows_per_slab, item.lengths[d0] - j);
            uint64_t first = uint64_t(src_elem) + j * uint64_t(ss[d0]);
            uint64_t last = first;
            for (size_t d = 0; d < ndim; ++d) last += (lengths[d] - 1) * uint64_t(ss[d]);
            Piece p{Piece::strided, item.entry, &e, fd, first * isz, (last + 1) * isz, first * isz, (last + 1) * isz,
                    nullptr, dst0 + int64_t(j) * ds[d0] * int64_t(isz), lengths, ss.data(), ds.data()};
            if (verify) {
                p.read_a = p.a / bs * bs;
                p.read_b = std::min<uint64_t>(align_up(p.b, bs), e.stored_length);
            }
            bounce.push_back(std::move(p));
        }
    }

    // Merge bounce reads of nearby bytes of the same file into one read.
    std::sort(bounce.begin(), bounce.end(), [](const Piece &x, const Piece &y) {
        return x.fd != y.fd ? x.fd < y.fd : x.extent->offset + x.read_a < y.extent->offset + y.read_a;
    });
    struct Batch {
        int fd;
        uint64_t start, end;  // absolute file offsets
        size_t first, count;  // pieces in `bounce`
    };
    std::vector<Batch> batches;
    for (size_t k = 0; k < bounce.size(); ++k) {
        const Piece &p = bounce[k];
        uint64_t s = p.extent->offset + p.read_a, t = p.extent->offset + p.read_b;
        if (!batches.empty()) {
            Batch &last = batches.back();
            if (last.fd == p.fd && s <= last.end + merge_gap_bytes && std::max(t, last.end) - last.start <= merge_limit_bytes) {
                last.end = std::max(last.end, t);
                ++last.count;
                continue;
            }
        }
        batches.push_back(Batch{p.fd, s, t, k, 1});
    }

    const size_t n_direct = direct.size(), n_batches = batches.size();
    auto file_name = [&](const Extent *e) -> const std::string & { return metadata_->files[e->file].name; };
    const size_t n_tasks = n_direct + n_batches + inflates.size();
    ScratchBuffers scratch(n_tasks, options_.io_threads);
    parallel_for(n_tasks, options_.io_threads, [&](size_t t, unsigned worker) {
        if (t < n_direct) {
            const Piece &p = direct[t];
            const Scatter &sc = *p.scatter;
            const std::string &name = file_name(p.extent);
            if (sc.outer.empty()) {  // one contiguous destination
                unsigned char *dst = sc.dst0 + (p.a - sc.a);
                pread_full(p.fd, dst, p.b - p.a, p.extent->offset + p.a, name);
                if (verify) check_blocks(*p.entry, *p.extent, name, bs, p.a, p.b, dst);
                return;
            }
            std::vector<struct iovec> iov;
            sc.each(p.a, p.b, [&](unsigned char *dst, uint64_t, uint64_t n) { iov.push_back({dst, size_t(n)}); });
            preadv_full(p.fd, iov, p.extent->offset + p.a, name);
            for (uint64_t at = p.a; verify && at < p.b; at += bs) {  // [p.a, p.b) is whole blocks
                uint64_t to = std::min<uint64_t>(at + bs, p.b);
                uint32_t crc = 0;
                sc.each(at, to, [&](unsigned char *dst, uint64_t, uint64_t n) { crc = crc32_of(dst, n, crc); });
                if (crc != p.extent->block_crc32[at / bs])
                    throw Error(Code::checksum, "checksum mismatch in entry '" + p.entry->fqn + "': data file '" + name +
                                                    "', bytes " + std::to_string(p.extent->offset + at) + ".." +
                                                    std::to_string(p.extent->offset + to));
            }
            return;
        }
        if (t < n_direct + n_batches) {
            const Batch &batch = batches[t - n_direct];
            unsigned char *buffer = scratch.get(worker, batch.end - batch.start);
            pread_full(batch.fd, buffer, batch.end - batch.start, batch.start, file_name(bounce[batch.first].extent));
            std::set<std::pair<const Extent *, uint64_t>> checked;  // blocks verified in this batch
            for (size_t k = batch.first; k < batch.first + batch.count; ++k) {
                const Piece &p = bounce[k];
                const unsigned char *base = buffer + (p.extent->offset - batch.start);
                for (uint64_t at = p.read_a; verify && at < p.read_b; at += bs) {
                    if (!checked.insert({p.extent, at}).second) continue;
                    uint64_t to = std::min<uint64_t>(at + bs, p.extent->stored_length);
                    check_blocks(*p.entry, *p.extent, file_name(p.extent), bs, at, to, base + at);
                }
                if (p.kind == Piece::linear)
                    p.scatter->each(p.a, p.b, [&](unsigned char *dst, uint64_t at, uint64_t n) { std::memcpy(dst, base + at, n); });
                else copy_box(base + p.a, p.src_strides, p.dst, p.dst_strides, p.lengths, dtype_size(int32_t(p.entry->dtype)));
            }
            return;
        }
        const InflateTask &task = inflates[t - n_direct - n_batches];
        const Extent &e = *task.extent;
        const uint64_t isz = dtype_size(int32_t(task.entry->dtype));
        // One request for the whole chunk into C-order memory: inflate straight into it.
        const ReadItem &first = plan.items[task.items[0]];
        const ReadRequest &first_req = plan.requests[first.request];
        const Box &chunk_box = task.entry->chunks[first.chunk].box;
        const bool direct_out = task.items.size() == 1 && first.lengths == chunk_box.sizes &&
                                is_c_contiguous(first.lengths, dst_strides[task.items[0]]);
        std::vector<unsigned char> raw;
        unsigned char *out;
        if (direct_out) {
            int64_t dst_elem = 0;
            for (size_t d = 0; d < first.lengths.size(); ++d) dst_elem += int64_t(first.dest_offsets[d]) * dst_strides[task.items[0]][d];
            out = static_cast<unsigned char *>(first_req.dst) + dst_elem * int64_t(isz);
        } else {
            raw.resize(e.raw_length);
            out = raw.data();
        }
        inflate_extent(task.fd, *task.entry, e, file_name(&e), verify, out, scratch.get(worker, read_piece_bytes));
        if (direct_out) return;
        for (size_t i : task.items) {
            const ReadItem &item = plan.items[i];
            const ReadRequest &req = plan.requests[item.request];
            int64_t src_elem = 0, dst_elem = 0;
            for (size_t d = 0; d < item.lengths.size(); ++d) {
                src_elem += int64_t(item.storage_offsets[d]) * src_strides[i][d];
                dst_elem += int64_t(item.dest_offsets[d]) * dst_strides[i][d];
            }
            copy_box(raw.data() + src_elem * int64_t(isz), src_strides[i].data(),
                     static_cast<unsigned char *>(req.dst) + dst_elem * int64_t(isz), dst_strides[i].data(), item.lengths, isz);
        }
    });
}

void FileSystemReader::verify_all() {
    const uint32_t bs = metadata_->storage.block_size;
    const uint64_t piece = std::max<uint64_t>(write_piece_bytes / bs, 1) * bs;
    struct Task {
        const EntryMeta *entry;
        const Extent *extent;
        uint64_t a, b;
    };
    std::vector<Task> tasks;
    for (const EntryMeta &entry : metadata_->entries) {
        for (const ChunkMeta &chunk : entry.chunks) {
            const Extent &e = chunk.extent;
            open_for(e, entry);
            if (e.transform == Transform::deflate || e.stored_length == 0) {
                tasks.push_back(Task{&entry, &e, 0, e.stored_length});
                continue;
            }
            uint32_t crc = 0;
            for (size_t k = 0; k < e.block_crc32.size(); ++k)
                crc = crc32_combine_of(crc, e.block_crc32[k], std::min<uint64_t>(bs, e.stored_length - k * bs));
            if (crc != e.crc32)
                throw Error(Code::format, "corrupt metadata: the block checksums of entry '" + entry.fqn + "' disagree with its CRC-32");
            for (uint64_t a = 0; a < e.stored_length; a += piece) tasks.push_back(Task{&entry, &e, a, std::min(e.stored_length, a + piece)});
        }
    }
    ScratchBuffers scratch(tasks.size(), options_.io_threads);
    parallel_for(tasks.size(), options_.io_threads, [&](size_t t, unsigned worker) {
        const Task &task = tasks[t];
        const Extent &e = *task.extent;
        const std::string &name = metadata_->files[e.file].name;
        const int fd = open_for(e, *task.entry).fd;
        if (e.transform == Transform::deflate) {
            // Checks the CRC and that the stream inflates to its raw length, keeping nothing.
            inflate_extent(fd, *task.entry, e, name, true, nullptr, scratch.get(worker, read_piece_bytes));
            return;
        }
        unsigned char *buffer = scratch.get(worker, task.b - task.a);
        pread_full(fd, buffer, task.b - task.a, e.offset + task.a, name);
        check_blocks(*task.entry, e, name, bs, task.a, task.b, buffer);
    });
}

}  // namespace shardpoint
