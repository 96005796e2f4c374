// The C ABI: opening checkpoints, reading metadata, verifying and loading.
#include "internal.hpp"
#include "shardpoint/verify.hpp"

using namespace shardpoint;
using namespace shardpoint::capi;

namespace {

LoadOptions load_options_of(const shardpoint_load_options *o) {
    LoadOptions out;
    if (!o) return out;
    if (o->version != SHARDPOINT_LOAD_OPTIONS_VERSION) throw Error(Code::invalid_argument, "unsupported load options version");
    if (o->flags & ~uint32_t(SHARDPOINT_LOAD_NO_VERIFY | SHARDPOINT_LOAD_ALLOW_PARTIAL))
        throw Error(Code::invalid_argument, "unknown load flags");
    out.verify = !(o->flags & SHARDPOINT_LOAD_NO_VERIFY);
    out.allow_partial = o->flags & SHARDPOINT_LOAD_ALLOW_PARTIAL;
    out.io_threads = o->io_threads;
    return out;
}

}  // namespace

extern "C" {

int shardpoint_load_options_init(shardpoint_load_options *options, uint32_t version) {
    return guarded([&] {
        need(options, "options");
        if (version != SHARDPOINT_LOAD_OPTIONS_VERSION) throw Error(Code::invalid_argument, "unsupported load options version");
        *options = shardpoint_load_options SHARDPOINT_LOAD_OPTIONS_INIT;
    });
}

int shardpoint_reader_open(shardpoint_reader **out, const char *dir, const shardpoint_load_options *options) {
    return shardpoint_reader_open_shared(out, dir, options, nullptr);
}

int shardpoint_reader_open_shared(shardpoint_reader **out, const char *dir, const shardpoint_load_options *options,
                                  shardpoint_comm *comm) {
    return guarded([&] {
        need(out, "out");
        auto impl = std::make_unique<Reader>(text(dir, "dir"), load_options_of(options), comm ? comm->impl.get() : nullptr);
        auto *reader = new shardpoint_reader;
        reader->impl = std::move(impl);
        *out = reader;
    });
}

void shardpoint_reader_free(shardpoint_reader *reader) { delete reader; }

int shardpoint_reader_storage_info(const shardpoint_reader *reader, shardpoint_storage_info *out) {
    return guarded([&] {
        need(reader, "reader");
        need(out, "out");
        const Metadata &md = reader->impl->metadata();
        shardpoint_storage_info info{};
        info.checkpoint_id = md.storage.checkpoint_id.c_str();
        info.save_id = md.storage.save_id.c_str();
        info.library_version = md.storage.library_version.c_str();
        info.created_unix_ns = md.storage.created_unix_ns;
        info.world_size = int32_t(md.storage.world_size);
        info.format_major = md.storage.format_major;
        info.format_minor = md.storage.format_minor;
        info.alignment = md.storage.alignment;
        info.file_count = md.files.size();
        info.total_stored_bytes = reader->impl->total_stored_bytes();
        *out = info;
    });
}

int shardpoint_reader_file_info(const shardpoint_reader *reader, uint64_t index, shardpoint_file_info *out) {
    return guarded([&] {
        need(reader, "reader");
        need(out, "out");
        const auto &files = reader->impl->metadata().files;
        if (index >= files.size()) throw Error(Code::range, "file index " + std::to_string(index) + " out of range");
        shardpoint_file_info info{};
        info.name = files[index].name.c_str();
        info.size = files[index].size;
        info.rank = int32_t(files[index].rank);
        *out = info;
    });
}

int shardpoint_reader_entry_count(const shardpoint_reader *reader, uint64_t *out_count) {
    return guarded([&] {
        need(reader, "reader");
        need(out_count, "out_count");
        *out_count = reader->impl->metadata().entries.size();
    });
}

int shardpoint_reader_entry_info(const shardpoint_reader *reader, uint64_t index, shardpoint_entry_info *out) {
    return guarded([&] {
        need(reader, "reader");
        need(out, "out");
        const auto &entries = reader->impl->metadata().entries;
        if (index >= entries.size()) throw Error(Code::range, "entry index " + std::to_string(index) + " out of range");
        const EntryMeta &e = entries[index];
        shardpoint_entry_info info{};
        info.fqn = e.fqn.c_str();
        bool tensor = e.kind == EntryKind::tensor;
        info.kind = tensor ? SHARDPOINT_ENTRY_TENSOR : SHARDPOINT_ENTRY_BYTES;
        info.dtype = tensor ? int32_t(e.dtype) : -1;
        info.ndim = tensor ? uint32_t(e.shape.size()) : 0;
        info.shape = tensor && !e.shape.empty() ? e.shape.data() : nullptr;
        info.chunk_count = e.chunks.size();
        info.numel = e.numel();
        info.nbytes = e.nbytes();
        info.stored_bytes = reader->impl->stored_bytes(index);
        info.covered_numel = reader->impl->covered_numel(index);
        *out = info;
    });
}

int shardpoint_reader_find(const shardpoint_reader *reader, const char *fqn, uint64_t *out_index) {
    return guarded([&] {
        need(reader, "reader");
        need(out_index, "out_index");
        const Metadata &md = reader->impl->metadata();
        const EntryMeta *e = md.find(text(fqn, "fqn"));
        if (!e) throw Error(Code::not_found, std::string("no entry '") + fqn + "' in the checkpoint");
        *out_index = uint64_t(e - md.entries.data());
    });
}

int shardpoint_reader_chunk_info(const shardpoint_reader *reader, uint64_t index, uint64_t chunk, shardpoint_chunk_info *out) {
    return guarded([&] {
        need(reader, "reader");
        need(out, "out");
        const Metadata &md = reader->impl->metadata();
        if (index >= md.entries.size()) throw Error(Code::range, "entry index " + std::to_string(index) + " out of range");
        const EntryMeta &e = md.entries[index];
        if (chunk >= e.chunks.size()) throw Error(Code::range, "chunk index " + std::to_string(chunk) + " out of range");
        const ChunkMeta &c = e.chunks[chunk];
        bool tensor = e.kind == EntryKind::tensor && !e.shape.empty();
        shardpoint_chunk_info info{};
        info.offsets = tensor ? c.box.offsets.data() : nullptr;
        info.sizes = tensor ? c.box.sizes.data() : nullptr;
        info.file = md.files[c.extent.file].name.c_str();
        info.file_offset = c.extent.offset;
        info.stored_length = c.extent.stored_length;
        info.raw_length = c.extent.raw_length;
        info.crc32 = c.extent.crc32;
        info.transform = int32_t(c.extent.transform);  // the SHARDPOINT_TRANSFORM_* values
        info.shuffle_width = c.extent.shuffle_width;
        info.writer_rank = int32_t(c.extent.writer_rank);
        *out = info;
    });
}

int shardpoint_reader_entry_names(const shardpoint_reader *reader, const char **out_names, uint64_t *out_len) {
    return guarded([&] {
        need(reader, "reader");
        need(out_names, "out_names");
        need(out_len, "out_len");
        auto *mutable_reader = const_cast<shardpoint_reader *>(reader);  // the cache only
        std::call_once(mutable_reader->names_once, [&] {
            std::string names;
            for (const EntryMeta &e : reader->impl->metadata().entries) names.append(e.fqn).push_back('\0');
            mutable_reader->names = std::move(names);
        });
        *out_names = reader->names.data();
        *out_len = reader->names.size();
    });
}

int shardpoint_reader_chunk_boxes(const shardpoint_reader *reader, uint64_t index, uint64_t first, uint64_t count,
                                  uint64_t *offsets, uint64_t *sizes) {
    return guarded([&] {
        need(reader, "reader");
        const auto &entries = reader->impl->metadata().entries;
        if (index >= entries.size()) throw Error(Code::range, "entry index " + std::to_string(index) + " out of range");
        const EntryMeta &e = entries[index];
        if (first > e.chunks.size() || count > e.chunks.size() - first)
            throw Error(Code::range, "chunks " + std::to_string(first) + " + " + std::to_string(count) + " of an entry with " +
                                         std::to_string(e.chunks.size()));
        const size_t ndim = e.kind == EntryKind::tensor ? e.shape.size() : 0;
        if (ndim == 0 || count == 0) return;
        need(offsets, "offsets");
        need(sizes, "sizes");
        for (uint64_t k = 0; k < count; ++k) {
            const Box &box = e.chunks[first + k].box;
            std::copy(box.offsets.begin(), box.offsets.end(), offsets + k * ndim);
            std::copy(box.sizes.begin(), box.sizes.end(), sizes + k * ndim);
        }
    });
}

int shardpoint_reader_metadata_count(const shardpoint_reader *reader, uint64_t *out_count) {
    return guarded([&] {
        need(reader, "reader");
        need(out_count, "out_count");
        *out_count = reader->impl->metadata().user.size();
    });
}

int shardpoint_reader_metadata_at(const shardpoint_reader *reader, uint64_t index, const char **out_key, const char **out_value) {
    return guarded([&] {
        need(reader, "reader");
        need(out_key, "out_key");
        need(out_value, "out_value");
        const auto &user = reader->impl->metadata().user;
        if (index >= user.size()) throw Error(Code::range, "metadata index " + std::to_string(index) + " out of range");
        *out_key = user[index].first.c_str();
        *out_value = user[index].second.c_str();
    });
}

int shardpoint_reader_metadata_get(const shardpoint_reader *reader, const char *key, const char **out_value) {
    return guarded([&] {
        need(reader, "reader");
        need(out_value, "out_value");
        std::string k = text(key, "key");
        for (const auto &kv : reader->impl->metadata().user)
            if (kv.first == k) {
                *out_value = kv.second.c_str();
                return;
            }
        throw Error(Code::not_found, "no user metadata key '" + k + "'");
    });
}

int shardpoint_reader_block_size(const shardpoint_reader *reader, uint32_t *out_block_size) {
    return guarded([&] {
        need(reader, "reader");
        need(out_block_size, "out_block_size");
        *out_block_size = reader->impl->metadata().storage.block_size;
    });
}

int shardpoint_reader_set_progress(shardpoint_reader *reader, shardpoint_progress_callback callback, void *user) {
    return guarded([&] {
        need(reader, "reader");
        std::lock_guard<std::mutex> lock(reader->progress_mutex);
        reader->progress = progress_of(callback, user);
    });
}

// Verifies every extent, reporting to the reader's progress callback when it has one.
static void verify_reporting(shardpoint_reader *reader) {
    ProgressCallback callback;
    {
        std::lock_guard<std::mutex> lock(reader->progress_mutex);
        callback = reader->progress;
    }
    if (!callback) return reader->impl->storage().verify_all();
    Progress progress(std::move(callback), ProgressPhase::verify);
    reader->impl->storage().verify_all(&progress);
}

int shardpoint_reader_verify(shardpoint_reader *reader) {
    return guarded([&] {
        need(reader, "reader");
        verify_reporting(reader);
    });
}

int shardpoint_reader_verify_each(shardpoint_reader *reader, shardpoint_verify_callback callback, void *user,
                                  uint64_t *out_problems) {
    return guarded([&] {
        need(reader, "reader");
        // The extents are checked on the worker threads; the reports are delivered here, in
        // metadata order, once all are known.
        std::vector<VerifyProblem> problems;
        try {
            verify_reporting(reader);
        } catch (const VerifyFailure &failure) {
            problems = failure.problems();
            if (callback) {
                for (const VerifyProblem &p : problems) {
                    shardpoint_verify_problem report{};
                    report.fqn = p.fqn.c_str();
                    report.chunk = p.chunk;
                    report.file = p.file.c_str();
                    report.file_offset = p.file_offset;
                    report.length = p.length;
                    report.code = int32_t(p.code);
                    report.message = p.message.c_str();
                    if (callback(user, &report) != 0) break;
                }
            }
            if (out_problems) *out_problems = problems.size();
            throw;
        }
        if (out_problems) *out_problems = 0;
    });
}

// --- load ------------------------------------------------------------------------------------

int shardpoint_load_set_progress(shardpoint_load *load, shardpoint_progress_callback callback, void *user) {
    return guarded([&] {
        need(load, "load");
        load->impl->set_progress(progress_of(callback, user));
    });
}

int shardpoint_load_new(shardpoint_load **out, shardpoint_reader *reader, shardpoint_comm *comm) {
    return guarded([&] {
        need(out, "out");
        need(reader, "reader");
        *out = new shardpoint_load{std::make_unique<LoadSession>(*reader->impl, comm ? comm->impl.get() : nullptr)};
    });
}

int shardpoint_load_add_tensor(shardpoint_load *load, const char *fqn, int32_t dtype, uint32_t ndim, const uint64_t *box_offsets,
                               const uint64_t *box_sizes, void *dst, const int64_t *strides) {
    return guarded([&] {
        need(load, "load");
        load->impl->add_tensor(text(fqn, "fqn"), DType(dtype), ndim, dims(box_offsets, ndim, "box_offsets"),
                               dims(box_sizes, ndim, "box_sizes"), dst, strides_of(strides, ndim));
    });
}

int shardpoint_load_add_tensors(shardpoint_load *load, const shardpoint_tensor_request *requests, uint64_t count,
                                size_t request_struct_size) {
    return guarded([&] {
        need(load, "load");
        std::vector<TensorRequest> batch = batch_of<TensorRequest>(requests, count, request_struct_size, "requests",
                                                                   [](const shardpoint_tensor_request &r) {
            bool whole = r.box_sizes == nullptr;
            Dims offsets = whole ? Dims{} : dims(r.box_offsets, r.ndim, "box_offsets");
            Dims sizes = whole ? Dims{} : dims(r.box_sizes, r.ndim, "box_sizes");
            return TensorRequest{text(r.fqn, "fqn"), DType(r.dtype), r.ndim, whole, std::move(offsets), std::move(sizes),
                                 r.dst, strides_of(r.strides, r.ndim)};
        });
        load->impl->add_tensors(std::move(batch));
    });
}

int shardpoint_load_add_bytes(shardpoint_load *load, const char *fqn, void *dst, uint64_t capacity) {
    return guarded([&] {
        need(load, "load");
        load->impl->add_bytes(text(fqn, "fqn"), dst, capacity);
    });
}

int shardpoint_load_add_chunk(shardpoint_load *load, const char *fqn, int32_t dtype, uint64_t chunk, uint32_t ndim,
                              const uint64_t *storage_offsets, const uint64_t *lengths, void *dst, const int64_t *strides) {
    return guarded([&] {
        need(load, "load");
        Dims offs = dims(storage_offsets, ndim, "storage_offsets"), lens = dims(lengths, ndim, "lengths");
        load->impl->add_chunk(text(fqn, "fqn"), DType(dtype), size_t(chunk), std::move(offs), std::move(lens), dst,
                              strides_of(strides, ndim));
    });
}

int shardpoint_reader_framework_metadata_get(const shardpoint_reader *reader, const char *key, const char **out_value) {
    return guarded([&] {
        need(reader, "reader");
        need(out_value, "out_value");
        std::string k = text(key, "key");
        for (const auto &kv : reader->impl->metadata().framework)
            if (kv.first == k) {
                *out_value = kv.second.c_str();
                return;
            }
        throw Error(Code::not_found, "no framework metadata under '" + k + "'");
    });
}

int shardpoint_reader_find_chunk(shardpoint_reader *reader, uint64_t index, uint32_t ndim, const uint64_t *offsets,
                                 uint64_t *out_chunk) {
    return guarded([&] {
        need(reader, "reader");
        need(out_chunk, "out_chunk");
        const auto &entries = reader->impl->metadata().entries;
        if (index >= entries.size()) throw Error(Code::range, "entry index " + std::to_string(index) + " out of range");
        *out_chunk = reader->impl->find_chunk(&entries[index], dims(offsets, ndim, "offsets"));
    });
}

int shardpoint_load_skipped_count(const shardpoint_load *load, uint64_t *out_count) {
    return guarded([&] {
        need(load, "load");
        need(out_count, "out_count");
        *out_count = load->impl->skipped();
    });
}

int shardpoint_load_execute(shardpoint_load *load) {
    return guarded([&] {
        need(load, "load");
        load->impl->execute();
    });
}

void shardpoint_load_free(shardpoint_load *load) { delete load; }

int shardpoint_reader_read_tensor(shardpoint_reader *reader, const char *fqn, int32_t dtype, uint32_t ndim,
                                  const uint64_t *box_offsets, const uint64_t *box_sizes, void *dst, const int64_t *strides) {
    return guarded([&] {
        need(reader, "reader");
        LoadSession load(*reader->impl, nullptr);
        load.add_tensor(text(fqn, "fqn"), DType(dtype), ndim, dims(box_offsets, ndim, "box_offsets"),
                        dims(box_sizes, ndim, "box_sizes"), dst, strides_of(strides, ndim));
        load.execute();
    });
}

int shardpoint_reader_read_bytes(shardpoint_reader *reader, const char *fqn, void *dst, uint64_t capacity, uint64_t *out_len) {
    return guarded([&] {
        need(reader, "reader");
        need(out_len, "out_len");
        std::string name = text(fqn, "fqn");
        const EntryMeta *e = reader->impl->metadata().find(name);
        LoadSession load(*reader->impl, nullptr);
        load.add_bytes(name, dst, capacity);
        load.execute();
        *out_len = e ? e->shape[0] : 0;
    });
}

}  // extern "C"
