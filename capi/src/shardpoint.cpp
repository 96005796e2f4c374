// The C ABI: translates between C and the core, and stops every exception at the boundary.
// No logic lives here beyond argument checking and handle bookkeeping.
#include "shardpoint.h"

#include <new>
#include <string>
#include <vector>

#include "shardpoint/checkpoint.hpp"
#include "shardpoint/error.hpp"

using namespace shardpoint;

struct shardpoint_comm {
    std::unique_ptr<Comm> impl;
};
struct shardpoint_save {
    std::unique_ptr<SaveSession> impl;
};
struct shardpoint_reader {
    std::unique_ptr<Reader> impl;
};
struct shardpoint_load {
    std::unique_ptr<LoadSession> impl;
};

namespace {

thread_local std::string last_message;
thread_local int last_code = 0;

int fail(int code, const char *message) noexcept {
    try {
        last_message = message;
    } catch (...) {
        last_message.clear();
    }
    last_code = code;
    return code;
}

// Runs `body`, mapping any exception to an error code and the thread's last error.
template <class Body>
int guarded(Body &&body) noexcept {
    try {
        body();
        return SHARDPOINT_OK;
    } catch (const Error &e) {
        return fail(int(e.code()), e.what());
    } catch (const std::bad_alloc &) {
        return fail(SHARDPOINT_ENOMEM, "out of memory");
    } catch (const std::exception &e) {
        return fail(SHARDPOINT_EINTERNAL, e.what());
    } catch (...) {
        return fail(SHARDPOINT_EINTERNAL, "unknown exception");
    }
}

void need(const void *p, const char *what) {
    if (p == nullptr) throw Error(Code::invalid_argument, std::string(what) + " is NULL");
}

std::string text(const char *s, const char *what) {
    need(s, what);
    return std::string(s);
}

Dims dims(const uint64_t *p, uint32_t n, const char *what) {
    if (n > SHARDPOINT_MAX_NDIM) throw Error(Code::shape, "more than 32 dimensions");
    if (n == 0) return {};
    need(p, what);
    return Dims(p, p + n);
}

Strides strides_of(const int64_t *p, uint32_t n) { return p && n ? Strides(p, p + n) : Strides{}; }

class CallbackComm final : public Comm {
public:
    explicit CallbackComm(const shardpoint_comm_callbacks &cb) : cb_(cb) {}
    ~CallbackComm() override {
        if (cb_.destroy) cb_.destroy(cb_.user);
    }
    int rank() const override { return cb_.rank; }
    int size() const override { return cb_.size; }
    void gather(const void *send, uint64_t len, void *recv) override {
        if (cb_.gather(cb_.user, send, len, rank() == 0 ? recv : nullptr) != 0)
            throw Error(Code::comm, "the communicator's gather callback failed");
    }
    void broadcast(void *buf, uint64_t len) override {
        if (cb_.broadcast(cb_.user, buf, len) != 0) throw Error(Code::comm, "the communicator's broadcast callback failed");
    }

private:
    shardpoint_comm_callbacks cb_;
};

SaveOptions save_options_of(const shardpoint_save_options *o, const char *dir) {
    SaveOptions out;
    std::string d(dir);
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    out.checkpoint_id = d.substr(d.find_last_of('/') == std::string::npos ? 0 : d.find_last_of('/') + 1);
    if (!o) return out;
    if (o->version != SHARDPOINT_SAVE_OPTIONS_VERSION) throw Error(Code::invalid_argument, "unsupported save options version");
    if (o->flags & ~uint32_t(SHARDPOINT_SAVE_OVERWRITE | SHARDPOINT_SAVE_FSYNC))
        throw Error(Code::invalid_argument, "unknown save flags");
    if (o->alignment > (1u << 30)) throw Error(Code::invalid_argument, "alignment larger than 1 GiB");
    out.overwrite = o->flags & SHARDPOINT_SAVE_OVERWRITE;
    out.fsync = o->flags & SHARDPOINT_SAVE_FSYNC;
    out.compression_level = o->compression_level;
    out.io_threads = o->io_threads;
    if (o->alignment) out.alignment = uint32_t(o->alignment);
    if (o->checkpoint_id) out.checkpoint_id = o->checkpoint_id;
    return out;
}

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

uint32_t shardpoint_version_number(void) { return SHARDPOINT_VERSION_NUMBER; }
const char *shardpoint_version_string(void) { return SHARDPOINT_VERSION_STRING; }

const char *shardpoint_last_error(void) { return last_message.c_str(); }
int shardpoint_last_error_code(void) { return last_code; }

const char *shardpoint_error_name(int code) {
    switch (code) {
        case SHARDPOINT_OK: return "SHARDPOINT_OK";
        case SHARDPOINT_EINVAL: return "SHARDPOINT_EINVAL";
        case SHARDPOINT_ENOMEM: return "SHARDPOINT_ENOMEM";
        case SHARDPOINT_EIO: return "SHARDPOINT_EIO";
        case SHARDPOINT_ENOTFOUND: return "SHARDPOINT_ENOTFOUND";
        case SHARDPOINT_EEXISTS: return "SHARDPOINT_EEXISTS";
        case SHARDPOINT_EFORMAT: return "SHARDPOINT_EFORMAT";
        case SHARDPOINT_ECHECKSUM: return "SHARDPOINT_ECHECKSUM";
        case SHARDPOINT_ETRUNCATED: return "SHARDPOINT_ETRUNCATED";
        case SHARDPOINT_EVERSION: return "SHARDPOINT_EVERSION";
        case SHARDPOINT_EDTYPE: return "SHARDPOINT_EDTYPE";
        case SHARDPOINT_ESHAPE: return "SHARDPOINT_ESHAPE";
        case SHARDPOINT_EPATH: return "SHARDPOINT_EPATH";
        case SHARDPOINT_ECONFLICT: return "SHARDPOINT_ECONFLICT";
        case SHARDPOINT_ERANK: return "SHARDPOINT_ERANK";
        case SHARDPOINT_ECOMM: return "SHARDPOINT_ECOMM";
        case SHARDPOINT_EUNCOVERED: return "SHARDPOINT_EUNCOVERED";
        case SHARDPOINT_ESTATE: return "SHARDPOINT_ESTATE";
        case SHARDPOINT_EKIND: return "SHARDPOINT_EKIND";
        case SHARDPOINT_ERANGE: return "SHARDPOINT_ERANGE";
        case SHARDPOINT_EINTERNAL: return "SHARDPOINT_EINTERNAL";
        default: return "SHARDPOINT_UNKNOWN";
    }
}

uint32_t shardpoint_dtype_size(int32_t dtype) { return shardpoint::dtype_size(dtype); }
const char *shardpoint_dtype_name(int32_t dtype) { return shardpoint::dtype_name(dtype); }

int shardpoint_dtype_from_name(const char *name, int32_t *out_dtype) {
    return guarded([&] {
        need(out_dtype, "out_dtype");
        int32_t d = shardpoint::dtype_from_name(text(name, "name"));
        if (d < 0) throw Error(Code::invalid_argument, std::string("unknown dtype name '") + name + "'");
        *out_dtype = d;
    });
}

// --- communicators ---------------------------------------------------------------------------

int shardpoint_comm_new_single(shardpoint_comm **out) {
    return guarded([&] {
        need(out, "out");
        *out = new shardpoint_comm{std::make_unique<SingleComm>()};
    });
}

int shardpoint_comm_callbacks_init(shardpoint_comm_callbacks *callbacks, uint32_t version) {
    return guarded([&] {
        need(callbacks, "callbacks");
        if (version != SHARDPOINT_COMM_CALLBACKS_VERSION) throw Error(Code::invalid_argument, "unsupported callbacks version");
        *callbacks = shardpoint_comm_callbacks SHARDPOINT_COMM_CALLBACKS_INIT;
    });
}

int shardpoint_comm_new_callbacks(shardpoint_comm **out, const shardpoint_comm_callbacks *cb) {
    return guarded([&] {
        need(out, "out");
        need(cb, "callbacks");
        if (cb->version != SHARDPOINT_COMM_CALLBACKS_VERSION) throw Error(Code::invalid_argument, "unsupported callbacks version");
        if (cb->size < 1 || cb->rank < 0 || cb->rank >= cb->size)
            throw Error(Code::invalid_argument, "rank " + std::to_string(cb->rank) + " is not in a job of " + std::to_string(cb->size));
        if (!cb->gather || !cb->broadcast) throw Error(Code::invalid_argument, "gather and broadcast callbacks are required");
        *out = new shardpoint_comm{std::make_unique<CallbackComm>(*cb)};
    });
}

int shardpoint_comm_rank(const shardpoint_comm *comm, int32_t *out_rank) {
    return guarded([&] {
        need(comm, "comm");
        need(out_rank, "out_rank");
        *out_rank = comm->impl->rank();
    });
}

int shardpoint_comm_size(const shardpoint_comm *comm, int32_t *out_size) {
    return guarded([&] {
        need(comm, "comm");
        need(out_size, "out_size");
        *out_size = comm->impl->size();
    });
}

void shardpoint_comm_free(shardpoint_comm *comm) { delete comm; }

// --- save ------------------------------------------------------------------------------------

int shardpoint_save_options_init(shardpoint_save_options *options, uint32_t version) {
    return guarded([&] {
        need(options, "options");
        if (version != SHARDPOINT_SAVE_OPTIONS_VERSION) throw Error(Code::invalid_argument, "unsupported save options version");
        *options = shardpoint_save_options SHARDPOINT_SAVE_OPTIONS_INIT;
    });
}

int shardpoint_save_new(shardpoint_save **out, const char *dir, shardpoint_comm *comm, const shardpoint_save_options *options) {
    return guarded([&] {
        need(out, "out");
        std::string d = text(dir, "dir");
        auto impl = std::make_unique<SaveSession>(d, comm ? comm->impl.get() : nullptr, save_options_of(options, dir));
        *out = new shardpoint_save{std::move(impl)};
    });
}

int shardpoint_save_add_tensor(shardpoint_save *save, const char *fqn, int32_t dtype, uint32_t ndim,
                               const uint64_t *global_shape, const uint64_t *chunk_offsets, const uint64_t *chunk_sizes,
                               const void *data, const int64_t *strides) {
    return guarded([&] {
        need(save, "save");
        if (!dtype_valid(dtype)) throw Error(Code::invalid_argument, "unknown dtype " + std::to_string(dtype));
        save->impl->add_tensor(text(fqn, "fqn"), DType(dtype), dims(global_shape, ndim, "global_shape"),
                               dims(chunk_offsets, ndim, "chunk_offsets"), dims(chunk_sizes, ndim, "chunk_sizes"), data,
                               strides_of(strides, ndim));
    });
}

int shardpoint_save_add_bytes(shardpoint_save *save, const char *fqn, const void *data, uint64_t len) {
    return guarded([&] {
        need(save, "save");
        save->impl->add_bytes(text(fqn, "fqn"), data, len);
    });
}

int shardpoint_save_set_metadata(shardpoint_save *save, const char *key, const char *value) {
    return guarded([&] {
        need(save, "save");
        save->impl->set_metadata(text(key, "key"), text(value, "value"));
    });
}

int shardpoint_save_commit(shardpoint_save *save) {
    return guarded([&] {
        need(save, "save");
        save->impl->commit();
    });
}

void shardpoint_save_free(shardpoint_save *save) { delete save; }

// --- reader ----------------------------------------------------------------------------------

int shardpoint_load_options_init(shardpoint_load_options *options, uint32_t version) {
    return guarded([&] {
        need(options, "options");
        if (version != SHARDPOINT_LOAD_OPTIONS_VERSION) throw Error(Code::invalid_argument, "unsupported load options version");
        *options = shardpoint_load_options SHARDPOINT_LOAD_OPTIONS_INIT;
    });
}

int shardpoint_reader_open(shardpoint_reader **out, const char *dir, const shardpoint_load_options *options) {
    return guarded([&] {
        need(out, "out");
        auto impl = std::make_unique<Reader>(text(dir, "dir"), load_options_of(options));
        *out = new shardpoint_reader{std::move(impl)};
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
        info.transform = c.extent.transform == Transform::deflate ? SHARDPOINT_TRANSFORM_DEFLATE : SHARDPOINT_TRANSFORM_NONE;
        info.writer_rank = int32_t(c.extent.writer_rank);
        *out = info;
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

int shardpoint_reader_verify(shardpoint_reader *reader) {
    return guarded([&] {
        need(reader, "reader");
        reader->impl->storage().verify_all();
    });
}

// --- load ------------------------------------------------------------------------------------

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

int shardpoint_load_add_bytes(shardpoint_load *load, const char *fqn, void *dst, uint64_t capacity) {
    return guarded([&] {
        need(load, "load");
        load->impl->add_bytes(text(fqn, "fqn"), dst, capacity);
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
