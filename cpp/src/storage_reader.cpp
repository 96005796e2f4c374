// The filesystem storage reader: reads planned as direct preads into the destination where the
// layouts agree, bounce buffers (merged across nearby ranges) elsewhere; every block verified.
#include "shardpoint/storage.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

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
#include "shardpoint/verify.hpp"
#include "storage_io.hpp"

namespace shardpoint {

using namespace io;

// ---------------------------------------------------------------------------------------------
// Reading

FileSystemReader::FileSystemReader(std::string dir, LoadOptions options) : dir_(std::move(dir)), options_(options) {}

FileSystemReader::~FileSystemReader() {
    for (auto &f : files_)
        if (f && f->fd >= 0) ::close(f->fd);
}

Metadata FileSystemReader::read_metadata() {
    std::vector<unsigned char> bytes = read_metadata_bytes();
    return decode_metadata(bytes.data(), bytes.size());
}

std::vector<unsigned char> FileSystemReader::read_metadata_bytes() {
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
    return bytes;
}

namespace {

// Data files opened when the reader opens (the rest on first use): an open descriptor keeps a
// file readable after an overwrite save unlinks it (FORMAT.md 4).
constexpr size_t eagerly_opened_files = 256;

// Opens a data file for reading without following a symbolic link; 0 or an errno value
// (ENODEV: not a regular file).
int open_data_file(const std::string &path, int &fd_out, uint64_t &size_out) {
    // O_NONBLOCK: opening a FIFO planted in place of the file must not hang; it fails S_ISREG.
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return errno;
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        int err = errno;
        ::close(fd);
        return err;
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        return ENODEV;
    }
    fd_out = fd;
    size_out = uint64_t(st.st_size);
    return 0;
}

}  // namespace

void FileSystemReader::set_up_storage_reader(const Metadata &metadata) {
    metadata_ = &metadata;
    for (auto &f : files_)
        if (f && f->fd >= 0) ::close(f->fd);
    files_.clear();
    files_.resize(metadata.files.size());
    // Errors stay lazy: a file that cannot be opened now is reported when its bytes are read.
    for (size_t i = 0; i < files_.size() && i < eagerly_opened_files; ++i) {
        auto opened = std::make_unique<OpenFile>();
        if (open_data_file(join(dir_, metadata.files[i].name), opened->fd, opened->size) == 0) files_[i] = std::move(opened);
    }
}

const FileSystemReader::OpenFile &FileSystemReader::open_for(const Extent &extent, const EntryMeta &entry) {
    const DataFileMeta &meta = metadata_->files.at(extent.file);
    OpenFile *file;
    {
        std::lock_guard<std::mutex> lock(files_mutex_);
        auto &slot = files_[extent.file];
        if (!slot) {
            std::string path = join(dir_, meta.name);
            auto opened = std::make_unique<OpenFile>();
            int err = open_data_file(path, opened->fd, opened->size);
            if (err == ENOENT) {
                std::string why = "data file '" + meta.name + "' of entry '" + entry.fqn + "' is missing";
                // An overwrite save deletes the files of the checkpoint it replaced: say so.
                try {
                    Metadata now = read_metadata();
                    if (now.storage.save_id != metadata_->storage.save_id)
                        why += ": the checkpoint at '" + dir_ + "' was replaced by another save after this reader opened it";
                } catch (const Error &) {
                    why += ": the checkpoint at '" + dir_ + "' is no longer readable";
                }
                throw Error(Code::not_found, why);
            }
            if (err == ELOOP)
                throw Error(Code::path, "data file '" + meta.name + "' is a symbolic link; refusing to follow it out of the checkpoint");
            if (err == ENODEV)
                throw Error(Code::format, "data file '" + meta.name + "' of entry '" + entry.fqn + "' is not a regular file");
            if (err != 0) throw_errno(Code::io, "open data file '" + path + "'", err);
            slot = std::move(opened);
        }
        file = slot.get();
    }
    // The file may have grown since the commit; it must still hold every byte of the extent.
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
// The staging buffer a compressed extent streams through: no larger than the extent.
uint64_t inflate_buffer_bytes(const Extent &e) { return std::max<uint64_t>(1, std::min(read_piece_bytes, e.stored_length)); }

void inflate_extent(int fd, const EntryMeta &entry, const Extent &e, const std::string &file, bool verify,
                    unsigned char *out, unsigned char *buffer) {
    Inflater z(out, e.raw_length);
    uint32_t crc = 0;
    try {
        const uint64_t piece = inflate_buffer_bytes(e);
        for (uint64_t at = 0; at < e.stored_length; at += piece) {
            uint64_t n = std::min(piece, e.stored_length - at);
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

// The byte offset of run number `run` of an odometer over the dimensions `outer` (the last one
// turning fastest) with byte steps `step`.
int64_t odometer_offset(uint64_t run, const Dims &outer, const std::vector<int64_t> &step) {
    int64_t off = 0;
    for (size_t d = outer.size(); d-- > 0;) {
        off += int64_t(run % outer[d]) * step[d];
        run /= outer[d];
    }
    return off;
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

    unsigned char *run_dst(uint64_t run) const { return dst0 + odometer_offset(run, outer, step); }
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

// Where one ReadItem's elements lie in its chunk's raw bytes and go in the destination, as runs
// contiguous on both sides, in increasing order of their raw offset (C order over the outer
// dimensions). Lets a block-compressed extent be copied out block by block.
struct RunMap {
    uint64_t src0 = 0;        // raw byte offset of the item's first element
    unsigned char *dst0 = nullptr;
    uint64_t run_bytes = 0;
    uint64_t runs = 0;
    Dims outer;               // the item's lengths over the outer dimensions
    std::vector<int64_t> src_step;  // byte steps per outer dimension
    std::vector<int64_t> dst_step;

    RunMap(const ReadItem &item, const Box &chunk, const Strides &dst_strides, void *dst, uint64_t isz) {
        const Strides ss = c_strides(chunk.sizes);
        const size_t ndim = item.lengths.size();
        int64_t dst_elem = 0;
        for (size_t d = 0; d < ndim; ++d) {
            src0 += item.storage_offsets[d] * uint64_t(ss[d]) * isz;
            dst_elem += int64_t(item.dest_offsets[d]) * dst_strides[d];
        }
        dst0 = static_cast<unsigned char *>(dst) + dst_elem * int64_t(isz);
        // The innermost dimensions [k, ndim) that are contiguous in both the chunk and the destination.
        size_t k = ndim;
        for (int64_t acc_src = 1, acc_dst = 1; k > 0; --k) {
            const size_t d = k - 1;
            if (item.lengths[d] != 1 && (ss[d] != acc_src || dst_strides[d] != acc_dst)) break;
            acc_src *= int64_t(item.lengths[d]);
            acc_dst *= int64_t(item.lengths[d]);
        }
        uint64_t elems = 1;
        for (size_t d = k; d < ndim; ++d) elems *= item.lengths[d];
        run_bytes = elems * isz;
        runs = 1;
        for (size_t d = 0; d < k; ++d) {
            outer.push_back(item.lengths[d]);
            src_step.push_back(ss[d] * int64_t(isz));
            dst_step.push_back(dst_strides[d] * int64_t(isz));
            runs *= item.lengths[d];
        }
        if (run_bytes == 0) runs = 0;
    }
    uint64_t src_of(uint64_t run) const { return src0 + uint64_t(odometer_offset(run, outer, src_step)); }
    unsigned char *dst_of(uint64_t run) const { return dst0 + odometer_offset(run, outer, dst_step); }
    uint64_t src_end() const { return runs == 0 ? src0 : src_of(runs - 1) + run_bytes; }
    // Copies the item's bytes that lie in raw bytes [a, b) of the chunk, found at `raw` (byte a).
    void copy_from(const unsigned char *raw, uint64_t a, uint64_t b) const {
        // The first run that ends after a: runs are in increasing raw order.
        uint64_t lo = 0, hi = runs;
        while (lo < hi) {
            uint64_t mid = lo + (hi - lo) / 2;
            if (src_of(mid) + run_bytes <= a) lo = mid + 1;
            else hi = mid;
        }
        for (uint64_t r = lo; r < runs; ++r) {
            const uint64_t s = src_of(r);
            if (s >= b) break;
            const uint64_t x = std::max(a, s), y = std::min(b, s + run_bytes);
            std::memcpy(dst_of(r) + (x - s), raw + (x - a), y - x);
        }
    }
};

// Where each block of a block-compressed extent starts in its stored bytes.
std::vector<uint64_t> block_starts(const Extent &e) {
    std::vector<uint64_t> starts(e.block_stored_length.size() + 1, 0);
    for (size_t k = 0; k < e.block_stored_length.size(); ++k) starts[k + 1] = starts[k] + e.block_stored_length[k];
    return starts;
}

// Reads blocks [k0, k1) of a block-compressed extent (stored bytes into `stored`), checks their
// CRCs when asked, and restores their raw bytes into `raw` (raw byte k0 * block_size first).
void restore_blocks(int fd, const EntryMeta &entry, const Extent &e, const std::vector<uint64_t> &starts,
                    const std::string &file, uint32_t bs, uint64_t k0, uint64_t k1, bool verify, BlockCodec &codec,
                    unsigned char *stored, unsigned char *raw, unsigned char *shuffled) {
    pread_full(fd, stored, starts[k1] - starts[k0], e.offset + starts[k0], file);
    for (uint64_t k = k0; k < k1; ++k) {
        const unsigned char *in = stored + (starts[k] - starts[k0]);
        const uint64_t len = e.block_stored_length[k];
        const uint64_t n = std::min<uint64_t>(bs, e.raw_length - k * bs);
        unsigned char *out = raw + (k - k0) * bs;
        if (verify && crc32_of(in, len) != e.block_crc32[k])
            throw Error(Code::checksum, "checksum mismatch in entry '" + entry.fqn + "': data file '" + file + "', block " +
                                            std::to_string(k) + " (compressed bytes " + std::to_string(e.offset + starts[k]) +
                                            ".." + std::to_string(e.offset + starts[k] + len) + ")");
        if (len == n) {  // stored raw
            std::memcpy(out, in, n);
            continue;
        }
        try {
            codec.decompress(in, len, e.shuffle_width ? shuffled : out, n);
        } catch (const Error &err) {
            throw Error(err.code(), "entry '" + entry.fqn + "' in data file '" + file + "', block " + std::to_string(k) + ": " + err.what());
        }
        if (e.shuffle_width) unshuffle_bytes(shuffled, n, e.shuffle_width, out);
    }
}

}  // namespace

void FileSystemReader::read_data(const LoadPlan &plan, Progress *progress) {
    const bool verify = options_.verify;
    const uint32_t bs = metadata_->storage.block_size;
    const uint64_t verify_step = std::max<uint64_t>(bs, cache_step_bytes / bs * bs);  // whole blocks
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
    // Block-compressed extents: the items read from each, then tasks of whole blocks.
    struct BlockedExtent {
        const EntryMeta *entry;
        const Extent *extent;
        int fd;
        std::vector<uint64_t> starts;
        std::vector<RunMap> maps;
        std::vector<std::pair<uint64_t, uint64_t>> needed;  // raw byte range of each map
    };
    std::vector<BlockedExtent> blocked;
    std::unordered_map<const Extent *, size_t> blocked_of;

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
        if (is_block_compressed(e.transform)) {
            auto [it, added] = blocked_of.emplace(&e, blocked.size());
            if (added) blocked.push_back(BlockedExtent{item.entry, &e, fd, block_starts(e), {}, {}});
            blocked[it->second].maps.emplace_back(item, chunk.box, dst_strides[i], req.dst, isz);
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
        // Strided: slabs along the outermost dimension, each read as one covering range into a
        // cache-sized buffer, checked and copied from there while it is still in cache.
        const uint64_t row_bytes = uint64_t(ss[d0]) * isz;
        const uint64_t rows_per_slab = std::max<uint64_t>(1, cache_step_bytes / std::max<uint64_t>(row_bytes, 1));
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

    // Merge bounce reads of nearby bytes of the same file into one read, no larger than the cache
    // step unless a single piece is.
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
            if (last.fd == p.fd && s <= last.end + merge_gap_bytes && std::max(t, last.end) - last.start <= cache_step_bytes) {
                last.end = std::max(last.end, t);
                ++last.count;
                continue;
            }
        }
        batches.push_back(Batch{p.fd, s, t, k, 1});
    }

    // Block-compressed extents are read in groups of whole blocks (about a megabyte of raw bytes)
    // covering what their items need, each group restored and copied out by one task.
    struct BlockGroup {
        const BlockedExtent *extent;
        uint64_t k0, k1;
    };
    std::vector<BlockGroup> groups;
    const uint64_t group_blocks = std::max<uint64_t>(1, (1ull << 20) / bs);
    for (BlockedExtent &be : blocked) {
        uint64_t lo = UINT64_MAX, hi = 0;
        for (const RunMap &m : be.maps) {
            be.needed.emplace_back(m.src0, m.src_end());
            if (m.runs == 0) continue;
            lo = std::min(lo, m.src0);
            hi = std::max(hi, m.src_end());
        }
        if (lo >= hi) continue;
        for (uint64_t k = lo / bs; k * bs < hi; k += group_blocks)
            groups.push_back(BlockGroup{&be, k, std::min<uint64_t>(k + group_blocks, (hi + bs - 1) / bs)});
    }

    const size_t n_direct = direct.size(), n_batches = batches.size(), n_groups = groups.size();
    auto file_name = [&](const Extent *e) -> const std::string & { return metadata_->files[e->file].name; };
    const size_t n_tasks = n_direct + n_batches + n_groups + inflates.size();
    const unsigned workers = worker_count(n_tasks, options_.io_threads);
    std::vector<std::unique_ptr<BlockCodec>> codecs(2 * workers);  // per worker: zlib, zstd
    ScratchBuffers group_raw(n_tasks, options_.io_threads), group_shuffled(n_tasks, options_.io_threads);
    ScratchBuffers scratch(n_tasks, options_.io_threads);
    // What a task counts for progress: the bytes it reads, or for compressed data the raw bytes
    // it restores.
    auto task_bytes = [&](size_t t) -> uint64_t {
        if (t < n_direct) return direct[t].b - direct[t].a;
        if (t < n_direct + n_batches) return batches[t - n_direct].end - batches[t - n_direct].start;
        if (t < n_direct + n_batches + n_groups) {
            const BlockGroup &g = groups[t - n_direct - n_batches];
            return std::min<uint64_t>(g.k1 * bs, g.extent->extent->raw_length) - g.k0 * bs;
        }
        return inflates[t - n_direct - n_batches - n_groups].extent->raw_length;
    };
    if (progress) {
        uint64_t total = 0;
        for (size_t t = 0; t < n_tasks; ++t) total += task_bytes(t);
        progress->start(total);
    }
    auto run_task = [&](size_t t, unsigned worker) {
        if (t < n_direct) {
            const Piece &p = direct[t];
            const Scatter &sc = *p.scatter;
            const std::string &name = file_name(p.extent);
            // [p.a, p.b) is whole blocks when verifying: read it in cache-sized steps of whole
            // blocks and check each step while its bytes are still in cache.
            const uint64_t step = verify ? verify_step : p.b - p.a;
            for (uint64_t a = p.a; a < p.b; a += step) {
                const uint64_t b = std::min(p.b, a + step);
                if (sc.outer.empty()) {  // one contiguous destination
                    unsigned char *dst = sc.dst0 + (a - sc.a);
                    pread_full(p.fd, dst, b - a, p.extent->offset + a, name);
                    if (verify) check_blocks(*p.entry, *p.extent, name, bs, a, b, dst);
                    continue;
                }
                std::vector<struct iovec> iov;
                sc.each(a, b, [&](unsigned char *dst, uint64_t, uint64_t n) { iov.push_back({dst, size_t(n)}); });
                preadv_full(p.fd, iov, p.extent->offset + a, name);
                for (uint64_t at = a; verify && at < b; at += bs) {
                    uint64_t to = std::min<uint64_t>(at + bs, b);
                    uint32_t crc = 0;
                    sc.each(at, to, [&](unsigned char *dst, uint64_t, uint64_t n) { crc = crc32_of(dst, n, crc); });
                    if (crc != p.extent->block_crc32[at / bs])
                        throw Error(Code::checksum, "checksum mismatch in entry '" + p.entry->fqn + "': data file '" +
                                                        name + "', bytes " + std::to_string(p.extent->offset + at) + ".." +
                                                        std::to_string(p.extent->offset + to));
                }
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
                // Byte `x` of the piece's extent, inside the buffer (the batch may start inside the
                // extent, so the extent's own start may lie before the buffer: never form it).
                auto in_buffer = [&](uint64_t x) { return buffer + (p.extent->offset + x - batch.start); };
                for (uint64_t at = p.read_a; verify && at < p.read_b; at += bs) {
                    if (!checked.insert({p.extent, at}).second) continue;
                    uint64_t to = std::min<uint64_t>(at + bs, p.extent->stored_length);
                    check_blocks(*p.entry, *p.extent, file_name(p.extent), bs, at, to, in_buffer(at));
                }
                if (p.kind == Piece::linear)
                    p.scatter->each(p.a, p.b, [&](unsigned char *dst, uint64_t at, uint64_t n) { std::memcpy(dst, in_buffer(at), n); });
                else copy_box(in_buffer(p.a), p.src_strides, p.dst, p.dst_strides, p.lengths, dtype_size(int32_t(p.entry->dtype)));
            }
            return;
        }
        if (t < n_direct + n_batches + n_groups) {
            const BlockGroup &g = groups[t - n_direct - n_batches];
            const BlockedExtent &be = *g.extent;
            const Extent &e = *be.extent;
            auto &codec = codecs[2 * worker + (e.transform == Transform::zstd_blocks ? 1 : 0)];
            if (!codec) codec = std::make_unique<BlockCodec>(e.transform, 0);
            const uint64_t a = g.k0 * bs, b = std::min<uint64_t>(g.k1 * bs, e.raw_length);
            unsigned char *stored = scratch.get(worker, be.starts[g.k1] - be.starts[g.k0]);
            unsigned char *raw = group_raw.get(worker, b - a);
            restore_blocks(be.fd, *be.entry, e, be.starts, file_name(&e), bs, g.k0, g.k1, verify, *codec, stored, raw,
                           e.shuffle_width ? group_shuffled.get(worker, bs) : nullptr);
            for (size_t m = 0; m < be.maps.size(); ++m)
                if (be.needed[m].first < b && be.needed[m].second > a) be.maps[m].copy_from(raw, a, b);
            return;
        }
        const InflateTask &task = inflates[t - n_direct - n_batches - n_groups];
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
        inflate_extent(task.fd, *task.entry, e, file_name(&e), verify, out, scratch.get(worker, inflate_buffer_bytes(e)));
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
    };
    parallel_for(n_tasks, options_.io_threads, [&](size_t t, unsigned worker) {
        run_task(t, worker);
        if (progress) progress->advance(task_bytes(t));
    }, progress);
    if (progress) progress->finish();
}

void FileSystemReader::verify_all(Progress *progress) {
    const uint32_t bs = metadata_->storage.block_size;
    const uint64_t piece = std::max<uint64_t>(write_piece_bytes / bs, 1) * bs;
    // One slot per extent, in metadata order; the tasks of an extent fill its slot.
    struct ExtentCheck {
        const EntryMeta *entry;
        size_t chunk;
        int fd = -1;  // -1: could not be opened (problem already recorded)
        std::mutex mutex;
        uint64_t bad_blocks = 0;
        bool bad = false;
        VerifyProblem first;  // the problem at the lowest file offset
        std::vector<uint64_t> starts;  // block-compressed: where each block starts
    };
    std::deque<ExtentCheck> checks;
    struct Task {
        ExtentCheck *check;
        uint64_t a, b;  // stored bytes of the extent
    };
    std::vector<Task> tasks;
    auto problem = [](ExtentCheck &c, Code code, uint64_t offset, uint64_t length, const std::string &message) {
        VerifyProblem p;
        p.code = code;
        p.fqn = c.entry->fqn;
        p.chunk = c.chunk;
        p.file_offset = offset;
        p.length = length;
        p.message = message;
        return p;
    };
    auto record = [](ExtentCheck &c, VerifyProblem p, uint64_t blocks) {
        std::lock_guard<std::mutex> lock(c.mutex);
        c.bad_blocks += blocks;
        if (!c.bad || p.file_offset < c.first.file_offset) c.first = std::move(p);
        c.bad = true;
    };
    for (const EntryMeta &entry : metadata_->entries) {
        for (size_t ci = 0; ci < entry.chunks.size(); ++ci) {
            const Extent &e = entry.chunks[ci].extent;
            checks.emplace_back();
            ExtentCheck &check = checks.back();
            check.entry = &entry;
            check.chunk = ci;
            try {
                check.fd = open_for(e, entry).fd;
            } catch (const Error &err) {
                uint64_t from = e.offset;
                if (err.code() == Code::truncated) {  // the missing tail: from the file's end on
                    std::lock_guard<std::mutex> lock(files_mutex_);
                    from = std::max(from, files_[e.file]->size);
                }
                record(check, problem(check, err.code(), from, e.offset + e.stored_length - from, err.what()), 0);
                continue;
            }
            if (e.transform == Transform::deflate || e.stored_length == 0) {
                tasks.push_back(Task{&check, 0, e.stored_length});
                continue;
            }
            if (is_block_compressed(e.transform)) {  // a, b: block indices
                check.starts = block_starts(e);
                const uint64_t group = std::max<uint64_t>(1, write_piece_bytes / bs);
                for (uint64_t k = 0; k < e.block_crc32.size(); k += group)
                    tasks.push_back(Task{&check, k, std::min<uint64_t>(e.block_crc32.size(), k + group)});
                continue;
            }
            for (uint64_t a = 0; a < e.stored_length; a += piece) tasks.push_back(Task{&check, a, std::min(e.stored_length, a + piece)});
        }
    }
    ScratchBuffers scratch(tasks.size(), options_.io_threads), raw(tasks.size(), options_.io_threads);
    std::vector<std::unique_ptr<BlockCodec>> codecs(2 * worker_count(tasks.size(), options_.io_threads));
    // What a task counts for progress: the stored bytes it checks.
    auto task_bytes = [&](const Task &task) -> uint64_t {
        const ExtentCheck &check = *task.check;
        const Extent &e = check.entry->chunks[check.chunk].extent;
        return is_block_compressed(e.transform) && e.raw_length > 0 ? check.starts[task.b] - check.starts[task.a] : task.b - task.a;
    };
    if (progress) {
        uint64_t total = 0;
        for (const Task &task : tasks) total += task_bytes(task);
        progress->start(total);
    }
    auto check_task = [&](size_t t, unsigned worker) {
        const Task &task = tasks[t];
        ExtentCheck &check = *task.check;
        const EntryMeta &entry = *check.entry;
        const Extent &e = entry.chunks[check.chunk].extent;
        const std::string &name = metadata_->files[e.file].name;
        if (is_block_compressed(e.transform)) {
            if (e.raw_length == 0) return;  // no blocks
            // Every block's CRC, then (if it holds) that it decompresses to its raw length.
            const std::vector<uint64_t> &starts = check.starts;
            auto &codec = codecs[2 * worker + (e.transform == Transform::zstd_blocks ? 1 : 0)];
            if (!codec) codec = std::make_unique<BlockCodec>(e.transform, 0);
            try {
                unsigned char *stored = scratch.get(worker, starts[task.b] - starts[task.a]);
                pread_full(check.fd, stored, starts[task.b] - starts[task.a], e.offset + starts[task.a], name);
                unsigned char *out = raw.get(worker, bs);
                for (uint64_t k = task.a; k < task.b; ++k) {
                    const unsigned char *in = stored + (starts[k] - starts[task.a]);
                    const uint64_t len = e.block_stored_length[k], n = std::min<uint64_t>(bs, e.raw_length - k * bs);
                    if (crc32_of(in, len) != e.block_crc32[k]) {
                        record(check, problem(check, Code::checksum, e.offset + starts[k], len, ""), 1);
                        continue;
                    }
                    if (len == n) continue;  // stored raw
                    try {
                        codec->decompress(in, len, out, n);
                    } catch (const Error &err) {
                        record(check, problem(check, err.code(), e.offset + starts[k], len,
                                              "entry '" + entry.fqn + "' in data file '" + name + "', block " +
                                                  std::to_string(k) + ": " + err.what()), 0);
                    }
                }
            } catch (const Error &err) {
                record(check, problem(check, err.code(), e.offset + starts[task.a], starts[task.b] - starts[task.a], err.what()), 0);
            }
            return;
        }
        try {
            if (e.transform == Transform::deflate) {
                // Checks the CRC and that the stream inflates to its raw length, keeping nothing.
                inflate_extent(check.fd, entry, e, name, true, nullptr, scratch.get(worker, inflate_buffer_bytes(e)));
                return;
            }
            unsigned char *buffer = scratch.get(worker, task.b - task.a);
            pread_full(check.fd, buffer, task.b - task.a, e.offset + task.a, name);
            for (uint64_t k = task.a / bs; k * bs < task.b; ++k) {
                uint64_t start = k * bs, len = std::min<uint64_t>(bs, e.stored_length - start);
                if (crc32_of(buffer + (start - task.a), len) == e.block_crc32[k]) continue;
                record(check, problem(check, Code::checksum, e.offset + start, len, ""), 1);
            }
        } catch (const Error &err) {
            record(check, problem(check, err.code(), e.offset + task.a, task.b - task.a, err.what()), 0);
        }
    };
    parallel_for(tasks.size(), options_.io_threads, [&](size_t t, unsigned worker) {
        check_task(t, worker);
        if (progress) progress->advance(task_bytes(tasks[t]));
    }, progress);
    if (progress) progress->finish();

    std::vector<VerifyProblem> problems;
    for (ExtentCheck &check : checks) {
        if (!check.bad) continue;
        VerifyProblem p = std::move(check.first);
        const Extent &e = check.entry->chunks[check.chunk].extent;
        p.file = metadata_->files[e.file].name;
        if (p.message.empty())
            p.message = "checksum mismatch in entry '" + p.fqn + "': data file '" + p.file + "', " +
                        std::to_string(check.bad_blocks) + " of " + std::to_string(e.block_crc32.size()) +
                        " blocks bad, the first at bytes " + std::to_string(p.file_offset) + ".." +
                        std::to_string(p.file_offset + p.length);
        problems.push_back(std::move(p));
    }
    if (problems.empty()) return;
    const Code code = problems[0].code;
    std::string summary = problems[0].message;
    if (problems.size() > 1) summary += " (and " + std::to_string(problems.size() - 1) + " more bad extents)";
    throw VerifyFailure(code, summary, std::move(problems));
}

}  // namespace shardpoint
