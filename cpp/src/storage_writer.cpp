// The filesystem storage writer: data files written with pwrite from many threads, CRC-32
// computed while the bytes are hot, metadata committed atomically (FORMAT.md section 5).
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
#include "storage_io.hpp"

namespace shardpoint {

using namespace io;

namespace {

bool is_contiguous(const WriteItem &w) { return w.strides.empty() || is_c_contiguous(w.sizes, w.strides); }

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

std::string metadata_temp_name(const std::string &save_id) { return std::string(metadata_file_name) + ".tmp-" + save_id; }

void make_directories(const std::string &dir, bool durable) {
    if (dir.empty()) throw Error(Code::invalid_argument, "empty checkpoint path");
    std::vector<std::string> parents;  // the parent of every component of the path
    size_t pos = 0;
    while (pos != std::string::npos) {
        pos = dir.find('/', pos + 1);
        std::string partial = dir.substr(0, pos);
        if (partial.empty() || partial.back() == '/') continue;
        if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST)
            throw_errno(Code::io, "create directory '" + partial + "'", errno);
        size_t slash = partial.find_last_of('/');
        parents.push_back(slash == std::string::npos ? "." : slash == 0 ? "/" : partial.substr(0, slash));
    }
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        throw Error(Code::io, "'" + dir + "' exists and is not a directory");
    if (!durable) return;
    // A directory entry is durable only once its parent is fsynced. Even a component that exists
    // may come from a save killed before its fsync, so every one is made durable, not just the new.
    for (const std::string &parent : parents) {
        FileDescriptor fd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (fd.get() < 0) {
            if (errno == EACCES || errno == EPERM) continue;  // not ours to sync: an ancestor we may not open
            throw_errno(Code::io, "open directory '" + parent + "'", errno);
        }
        fsync_or_throw(fd.get(), "directory '" + parent + "'");
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

// The options with the compression spelled out: legacy level-only deflate made explicit, a block
// codec's level 0 made its fast default; contradictions refused.
SaveOptions checked_save_options(SaveOptions o) {
    require(o.alignment >= 1 && (o.alignment & (o.alignment - 1)) == 0, Code::invalid_argument,
            "alignment must be a power of two");
    if (o.compression == Transform::none && o.compression_level != 0) o.compression = Transform::deflate;
    const int max_level = is_block_compressed(o.compression) ? block_codec_max_level(o.compression) : 9;
    require(o.compression_level >= 0 && o.compression_level <= max_level, Code::invalid_argument,
            "compression level " + std::to_string(o.compression_level) + " is not between 0 (the codec's default) and " +
                std::to_string(max_level));
    if (o.compression_level == 0 && o.compression != Transform::none)
        o.compression_level = o.compression == Transform::deflate ? 6 : 1;
    require(!o.shuffle || is_block_compressed(o.compression), Code::invalid_argument,
            "the byte shuffle needs a block codec (zlib or zstd blocks)");
    return o;
}

FileSystemWriter::FileSystemWriter(std::string dir, SaveOptions options)
    : dir_(std::move(dir)), options_(checked_save_options(std::move(options))) {}

void FileSystemWriter::reset(const std::string &save_id) { save_id_ = save_id; }

void FileSystemWriter::set_up_storage_writer(bool, int rank, int) {
    rank_ = rank;
    make_directories(dir_, options_.fsync);
}

SavePlan FileSystemWriter::prepare_local_plan(SavePlan plan) { return plan; }

std::vector<SavePlan> FileSystemWriter::prepare_global_plan(std::vector<SavePlan> plans) {
    // Held until this writer is destroyed: concurrent saves into one directory run one after the
    // other, and none ever sees another's files as debris.
    lock_ = DirectoryLock(dir_);
    MetadataState state = metadata_state(dir_);
    if (state == MetadataState::checkpoint && !options_.overwrite)
        throw Error(Code::exists, "a checkpoint already exists at '" + dir_ + "' (ask for overwrite to replace it)");
    replace_metadata_ = options_.overwrite || state == MetadataState::not_a_checkpoint;
    for (size_t r = 0; r < plans.size(); ++r) plans[r].file_name = data_file_name(save_id_, int(r));
    return plans;
}

std::vector<WriteResult> FileSystemWriter::write_data(const SavePlan &plan, uint64_t &file_size) {
    begin_data(plan.file_name);
    std::vector<WriteResult> results = write_items(plan.items);
    file_size = end_data();
    return results;
}

FileSystemWriter::~FileSystemWriter() {
    if (data_fd_ >= 0) ::close(data_fd_);
}

void FileSystemWriter::begin_data(const std::string &file_name) {
    if (data_fd_ >= 0) ::close(data_fd_);
    data_fd_ = -1;
    data_name_ = file_name;
    data_end_ = 0;
}

std::vector<WriteResult> FileSystemWriter::write_items(const std::vector<WriteItem> &items, Progress *progress) {
    if (items.empty()) return {};
    if (progress) progress->throw_if_canceled();
    if (data_fd_ < 0) {
        std::string path = join(dir_, data_name_);
        data_fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (data_fd_ < 0) throw_errno(Code::io, "create data file '" + path + "'", errno);
    }
    if (is_block_compressed(options_.compression)) return write_block_compressed(items, progress);
    return options_.compression == Transform::deflate ? write_compressed(items, progress) : write_raw(items, progress);
}

uint64_t FileSystemWriter::end_data() {
    if (data_fd_ < 0) return 0;  // nothing written: no file
    FileDescriptor fd(data_fd_);
    data_fd_ = -1;
    const std::string path = join(dir_, data_name_);
    if (::ftruncate(fd.get(), off_t(data_end_)) != 0) throw_errno(Code::io, "size data file '" + path + "'", errno);
    if (options_.fsync) fsync_or_throw(fd.get(), "data file '" + path + "'");
    if (::close(fd.release()) != 0) throw_errno(Code::io, "close data file '" + path + "'", errno);
    return data_end_;
}

std::vector<WriteResult> FileSystemWriter::write_raw(const std::vector<WriteItem> &items, Progress *progress) {
    const int fd = data_fd_;
    const uint64_t bs = options_.block_size;
    const uint64_t piece = std::max<uint64_t>(write_piece_bytes / bs, 1) * bs;
    std::vector<WriteResult> results(items.size());
    // A piece is part of one large extent, or a run of `count` whole small (packed) extents
    // written with one pwrite from a buffer.
    struct Piece {
        size_t item;
        uint64_t begin, len;
        size_t count;  // 0: part of item `item`; else items [item, item + count), packed
    };
    std::vector<Piece> pieces;
    uint64_t cursor = data_end_;
    for (size_t i = 0; i < items.size(); ++i) {
        const WriteItem &w = items[i];
        uint64_t nb = w.nbytes();
        Extent &e = results[i].extent;
        results[i].index = w.index;
        e.writer_rank = uint32_t(rank_);
        e.stored_length = e.raw_length = nb;
        if (nb > 0) cursor = extent_offset(cursor, nb, options_.alignment);
        e.offset = cursor;
        e.block_crc32.assign((nb + bs - 1) / bs, 0);
        cursor += nb;
        if (nb == 0) continue;
        if (nb >= options_.alignment) {
            for (uint64_t b = 0; b < nb; b += piece) pieces.push_back(Piece{i, b, std::min(piece, nb - b), 0});
            continue;
        }
        Piece *run = pieces.empty() ? nullptr : &pieces.back();
        if (run && run->count > 0 && run->item + run->count == i && e.offset + nb - run->begin <= pack_run_bytes) {
            run->len = e.offset + nb - run->begin;  // extend the run (begin, len: file offsets)
            ++run->count;
        } else {
            pieces.push_back(Piece{i, e.offset, nb, 1});
        }
    }
    ScratchBuffers scratch(pieces.size(), options_.io_threads);
    parallel_for(pieces.size(), options_.io_threads, [&](size_t k, unsigned worker) {
        const Piece &p = pieces[k];
        if (p.count > 0) {  // small extents: gathered into one zeroed buffer (no stale memory in the gaps)
            unsigned char *buffer = scratch.get(worker, p.len);
            std::memset(buffer, 0, p.len);
            for (size_t i = p.item; i < p.item + p.count; ++i) {
                const WriteItem &w = items[i];
                Extent &e = results[i].extent;
                unsigned char *dst = buffer + (e.offset - p.begin);
                if (e.stored_length == 0) continue;
                if (is_contiguous(w)) std::memcpy(dst, w.data, e.stored_length);
                else gather_elements(static_cast<const unsigned char *>(w.data), w.sizes, w.strides,
                                     dtype_size(int32_t(w.dtype)), 0, e.stored_length / dtype_size(int32_t(w.dtype)), dst);
                for (uint64_t b = 0; b < e.stored_length; b += bs)
                    e.block_crc32[b / bs] = crc32_of(dst + b, std::min(bs, e.stored_length - b));
            }
            pwrite_full(fd, buffer, p.len, p.begin, data_name_);
            if (options_.fsync) start_writeback(fd, p.begin, p.len);
            if (progress)
                for (size_t i = p.item; i < p.item + p.count; ++i) progress->advance(results[i].extent.stored_length);
            return;
        }
        const WriteItem &w = items[p.item];
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
        pwrite_full(fd, src, p.len, e.offset + p.begin, data_name_);
        // With fsync asked for, start writeback now so the disk works while we compute and
        // write the next pieces; the final fsync then has little left to wait for.
        if (options_.fsync) start_writeback(fd, e.offset + p.begin, p.len);
        if (progress) progress->advance(p.len);
    }, progress);
    for (auto &r : results) {
        Extent &e = r.extent;
        uint32_t crc = 0;
        for (size_t k = 0; k < e.block_crc32.size(); ++k)
            crc = crc32_combine_of(crc, e.block_crc32[k], std::min(bs, e.stored_length - k * bs));
        e.crc32 = crc;
    }
    data_end_ = cursor;
    return results;
}

std::vector<WriteResult> FileSystemWriter::write_compressed(const std::vector<WriteItem> &items, Progress *progress) {
    const int fd = data_fd_;
    std::vector<WriteResult> results(items.size());
    std::mutex cursor_mutex;
    uint64_t cursor = data_end_;
    auto reserve = [&](uint64_t len) {
        std::lock_guard<std::mutex> lock(cursor_mutex);
        uint64_t offset = extent_offset(cursor, len, options_.alignment);
        cursor = offset + len;
        return offset;
    };
    ScratchBuffers scratch(items.size(), options_.io_threads);
    parallel_for(items.size(), options_.io_threads, [&](size_t i, unsigned worker) {
        const WriteItem &w = items[i];
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
            pwrite_full(fd, p, n, e.offset + written, data_name_);
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
            pwrite_full(fd, small.data(), small.size(), e.offset, data_name_);
            if (options_.fsync) start_writeback(fd, e.offset, small.size());
            written = small.size();
        }
        e.stored_length = written;
        e.crc32 = crc;
        if (progress) progress->advance(nb);
    }, progress);
    data_end_ = cursor;
    return results;
}

std::vector<WriteResult> FileSystemWriter::write_block_compressed(const std::vector<WriteItem> &items, Progress *progress) {
    const int fd = data_fd_;
    const uint64_t bs = options_.block_size;
    // A piece is a run of whole blocks of one item, compressed by one task into its own buffer.
    const uint64_t blocks_per_piece = std::max<uint64_t>(1, (1ull << 20) / bs);
    std::vector<WriteResult> results(items.size());
    struct Piece {
        size_t item;
        uint64_t first_block, blocks;
    };
    std::vector<Piece> pieces;
    for (size_t i = 0; i < items.size(); ++i) {
        const WriteItem &w = items[i];
        const uint64_t nb = w.nbytes(), itemsize = dtype_size(int32_t(w.dtype));
        Extent &e = results[i].extent;
        results[i].index = w.index;
        e.writer_rank = uint32_t(rank_);
        e.transform = options_.compression;
        e.raw_length = nb;
        e.shuffle_width = options_.shuffle && w.kind == EntryKind::tensor && itemsize > 1 ? uint32_t(itemsize) : 0;
        const uint64_t blocks = (nb + bs - 1) / bs;
        e.block_crc32.assign(blocks, 0);
        e.block_stored_length.assign(blocks, 0);
        for (uint64_t b = 0; b < blocks; b += blocks_per_piece) pieces.push_back(Piece{i, b, std::min(blocks_per_piece, blocks - b)});
    }

    const unsigned workers = worker_count(pieces.size(), options_.io_threads);
    std::vector<std::unique_ptr<BlockCodec>> codecs(workers);
    ScratchBuffers gathered(pieces.size(), options_.io_threads), shuffled(pieces.size(), options_.io_threads);
    // Windows of pieces: compressed in parallel, then written in order, back to back, so that
    // memory stays bounded by the window whatever the size of the save.
    const size_t window = 4 * size_t(workers);
    std::vector<std::vector<unsigned char>> out(window);
    std::vector<uint64_t> out_len(window);
    uint64_t cursor = data_end_;
    for (size_t first = 0; first < pieces.size(); first += window) {
        const size_t count = std::min(window, pieces.size() - first);
        parallel_for(count, options_.io_threads, [&](size_t k, unsigned worker) {
            const Piece &p = pieces[first + k];
            const WriteItem &w = items[p.item];
            Extent &e = results[p.item].extent;
            const uint32_t itemsize = dtype_size(int32_t(w.dtype));
            const uint64_t begin = p.first_block * bs, len = std::min(p.blocks * bs, e.raw_length - begin);
            const unsigned char *src = static_cast<const unsigned char *>(w.data) + begin;
            if (!is_contiguous(w)) {
                unsigned char *buffer = gathered.get(worker, len);
                gather_elements(static_cast<const unsigned char *>(w.data), w.sizes, w.strides, itemsize, begin / itemsize,
                                len / itemsize, buffer);
                src = buffer;
            }
            if (!codecs[worker]) codecs[worker] = std::make_unique<BlockCodec>(options_.compression, options_.compression_level);
            out[k].resize(len);
            unsigned char *dst = out[k].data();
            uint64_t stored = 0;
            for (uint64_t at = 0; at < len; at += bs) {
                const uint64_t n = std::min(bs, len - at);
                const unsigned char *raw = src + at;
                const unsigned char *input = raw;
                if (e.shuffle_width) {
                    unsigned char *buffer = shuffled.get(worker, bs);
                    shuffle_bytes(raw, n, e.shuffle_width, buffer);
                    input = buffer;
                }
                size_t packed = codecs[worker]->compress(input, n, dst + stored);
                if (packed == 0) {  // not smaller: the block is stored raw (and unshuffled)
                    std::memcpy(dst + stored, raw, n);
                    packed = n;
                }
                const uint64_t block = p.first_block + at / bs;
                e.block_stored_length[block] = uint32_t(packed);
                e.block_crc32[block] = crc32_of(dst + stored, packed);
                stored += packed;
            }
            out_len[k] = stored;
            if (progress) progress->advance(len);  // compressed: written right after this window
        }, progress);
        for (size_t k = 0; k < count; ++k) {
            const Piece &p = pieces[first + k];
            Extent &e = results[p.item].extent;
            if (p.first_block == 0) {
                cursor = extent_offset(cursor, e.raw_length, options_.alignment);
                e.offset = cursor;
            }
            pwrite_full(fd, out[k].data(), out_len[k], cursor, data_name_);
            if (options_.fsync) start_writeback(fd, cursor, out_len[k]);
            cursor += out_len[k];
        }
    }
    for (size_t i = 0; i < items.size(); ++i) {
        Extent &e = results[i].extent;
        if (e.raw_length == 0) {  // no blocks, no piece: placed here
            e.offset = cursor;
            continue;
        }
        uint32_t crc = 0;
        for (size_t k = 0; k < e.block_crc32.size(); ++k) {
            crc = crc32_combine_of(crc, e.block_crc32[k], e.block_stored_length[k]);
            e.stored_length += e.block_stored_length[k];
        }
        e.crc32 = crc;
    }
    data_end_ = cursor;
    return results;
}

void FileSystemWriter::finish(const Metadata &metadata) {
    std::vector<unsigned char> bytes = encode_metadata(metadata);
    const std::string final_path = join(dir_, metadata_file_name);
    const std::string tmp_path = join(dir_, metadata_temp_name(save_id_));

    // The files of the checkpoint being replaced, removed only once the new one is durable.
    std::vector<std::string> replaced;
    if (options_.overwrite) {
        try {
            FileSystemReader old(dir_, LoadOptions{});
            for (auto &f : old.read_metadata().files) replaced.push_back(f.name);
        } catch (const Error &) {
            // No readable previous checkpoint: nothing of it to clean up.
        }
    }

    // Every rank's data file is fsynced; fsyncing the directory makes their names durable too,
    // before any metadata can name them.
    if (options_.fsync) fsync_directory(dir_);
    {
        FileDescriptor fd(::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
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
    publish(tmp_path, final_path);
    committed_ = true;

    if (options_.fsync) {
        try {
            fsync_directory(dir_);
        } catch (const Error &e) {
            throw Error(Code::not_durable, "the checkpoint at '" + dir_ + "' was committed, but making it durable failed (" +
                                               e.what() + "); the previous checkpoint's files were kept");
        }
    }
    // Only now is it safe to delete what the new checkpoint does not name. Failures here leave
    // debris, which the next save or shardpoint_gc removes.
    std::vector<std::string> keep;
    for (auto &f : metadata.files) keep.push_back(f.name);
    for (auto &name : replaced)
        if (std::find(keep.begin(), keep.end(), name) == keep.end() && is_plain_file_name(name)) ::unlink(join(dir_, name).c_str());
    if (lock_.held()) {
        try {
            for (const GarbageFile &g : find_garbage(dir_, keep)) ::unlink(join(dir_, g.name).c_str());
        } catch (const Error &) {
            // Listing failed: the debris stays for the next save or shardpoint_gc.
        }
    }
    release_lock();  // the save is over: the next one need not wait for this handle to be freed
}

void FileSystemWriter::publish(const std::string &tmp_path, const std::string &final_path) {
    auto refuse = [&] {
        ::unlink(tmp_path.c_str());
        throw Error(Code::exists, "another save committed a checkpoint at '" + dir_ + "' first (ask for overwrite to replace it)");
    };
    auto failed = [&](const char *what, int err) {
        ::unlink(tmp_path.c_str());
        throw_errno(Code::io, std::string(what) + " metadata into place in '" + dir_ + "'", err);
    };
    if (replace_metadata_) {
        if (::rename(tmp_path.c_str(), final_path.c_str()) != 0) failed("rename", errno);
        return;
    }
    // Never replace a checkpoint another process committed meanwhile (e.g. on a filesystem where
    // the lock does not work): rename only if the name is free.
    if (::renameat2(AT_FDCWD, tmp_path.c_str(), AT_FDCWD, final_path.c_str(), RENAME_NOREPLACE) == 0) return;
    if (errno == EEXIST) refuse();
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) failed("rename", errno);
    // No RENAME_NOREPLACE on this filesystem: link() fails if the name is taken.
    if (::link(tmp_path.c_str(), final_path.c_str()) == 0) {
        ::unlink(tmp_path.c_str());  // if this fails the temporary file is debris, the commit stands
        return;
    }
    if (errno == EEXIST) refuse();
    if (errno != EPERM && errno != ENOTSUP && errno != EOPNOTSUPP) failed("link", errno);
    // No hard links either: check, then rename; exclusive only as far as the save lock is.
    if (metadata_state(dir_) == MetadataState::checkpoint) refuse();
    if (::rename(tmp_path.c_str(), final_path.c_str()) != 0) failed("rename", errno);
}

void FileSystemWriter::abort(const SavePlan &plan) {
    if (data_fd_ >= 0) ::close(data_fd_);
    data_fd_ = -1;
    if (committed_) return release_lock();
    if (!plan.file_name.empty()) ::unlink(join(dir_, plan.file_name).c_str());
    ::unlink(join(dir_, metadata_temp_name(save_id_)).c_str());
    release_lock();
}

}  // namespace shardpoint
