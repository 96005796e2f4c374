// The C ABI: saving.
#include <cstddef>
#include <cstring>

#include "internal.hpp"

using namespace shardpoint;
using namespace shardpoint::capi;

namespace shardpoint {
namespace capi {

SaveOptions save_options_of(const shardpoint_save_options *o, const char *dir) {
    SaveOptions out;
    std::string d(dir);
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    out.checkpoint_id = d.substr(d.find_last_of('/') == std::string::npos ? 0 : d.find_last_of('/') + 1);
    if (!o) return out;
    if (o->version != 1 && o->version != 2) throw Error(Code::invalid_argument, "unsupported save options version");
    const uint32_t known = SHARDPOINT_SAVE_OVERWRITE | SHARDPOINT_SAVE_FSYNC | SHARDPOINT_SAVE_NO_FSYNC | SHARDPOINT_SAVE_ALLOW_PARTIAL;
    if (o->flags & ~known) throw Error(Code::invalid_argument, "unknown save flags");
    if ((o->flags & SHARDPOINT_SAVE_FSYNC) && (o->flags & SHARDPOINT_SAVE_NO_FSYNC))
        throw Error(Code::invalid_argument, "SHARDPOINT_SAVE_FSYNC and SHARDPOINT_SAVE_NO_FSYNC contradict each other");
    if (o->alignment > (1u << 30)) throw Error(Code::invalid_argument, "alignment larger than 1 GiB");
    out.overwrite = o->flags & SHARDPOINT_SAVE_OVERWRITE;
    out.fsync = !(o->flags & SHARDPOINT_SAVE_NO_FSYNC);
    out.allow_partial = o->flags & SHARDPOINT_SAVE_ALLOW_PARTIAL;
    out.compression_level = o->compression_level;
    if (o->version >= 2) {
        switch (o->codec) {
            case SHARDPOINT_CODEC_DEFAULT: break;
            case SHARDPOINT_CODEC_DEFLATE_STREAM: out.compression = Transform::deflate; break;
            case SHARDPOINT_CODEC_ZLIB: out.compression = Transform::zlib_blocks; break;
            case SHARDPOINT_CODEC_ZSTD: out.compression = Transform::zstd_blocks; break;
            default: throw Error(Code::invalid_argument, "unknown codec " + std::to_string(o->codec));
        }
        if (o->filters & ~SHARDPOINT_FILTER_SHUFFLE) throw Error(Code::invalid_argument, "unknown save filters");
        out.shuffle = o->filters & SHARDPOINT_FILTER_SHUFFLE;
    }
    out.io_threads = o->io_threads;
    if (o->alignment) out.alignment = uint32_t(o->alignment);
    if (o->checkpoint_id) out.checkpoint_id = o->checkpoint_id;
    return out;
}

}  // namespace capi
}  // namespace shardpoint

extern "C" {

int shardpoint_save_options_init(shardpoint_save_options *options, uint32_t version) {
    return guarded([&] {
        need(options, "options");
        if (version != 1 && version != 2) throw Error(Code::invalid_argument, "unsupported save options version");
        // A version 1 caller's struct ends before codec: write only what it has.
        shardpoint_save_options defaults = SHARDPOINT_SAVE_OPTIONS_INIT;
        defaults.version = version;
        std::memcpy(options, &defaults, version == 1 ? offsetof(shardpoint_save_options, codec) : sizeof defaults);
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

int shardpoint_save_add_tensors(shardpoint_save *save, const shardpoint_tensor_chunk *chunks, uint64_t count,
                                size_t chunk_struct_size) {
    return guarded([&] {
        need(save, "save");
        std::vector<TensorChunk> batch = batch_of<TensorChunk>(chunks, count, chunk_struct_size, "chunks",
                                                               [](const shardpoint_tensor_chunk &c) {
            if (!dtype_valid(c.dtype)) throw Error(Code::invalid_argument, "unknown dtype " + std::to_string(c.dtype));
            Dims shape = dims(c.global_shape, c.ndim, "global_shape");
            Dims offsets = c.chunk_offsets ? dims(c.chunk_offsets, c.ndim, "chunk_offsets") : Dims(c.ndim, 0);
            Dims sizes = c.chunk_sizes ? dims(c.chunk_sizes, c.ndim, "chunk_sizes") : shape;
            return TensorChunk{text(c.fqn, "fqn"), DType(c.dtype), std::move(shape), std::move(offsets), std::move(sizes),
                               c.data, strides_of(c.strides, c.ndim)};
        });
        save->impl->add_tensors(std::move(batch));
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

int shardpoint_save_set_progress(shardpoint_save *save, shardpoint_progress_callback callback, void *user) {
    return guarded([&] {
        need(save, "save");
        save->impl->set_progress(progress_of(callback, user));
    });
}

int shardpoint_staging_new(shardpoint_staging **out, uint64_t capacity) {
    return guarded([&] {
        need(out, "out");
        *out = nullptr;
        auto impl = std::make_unique<Staging>(capacity);
        *out = new shardpoint_staging{std::move(impl)};
    });
}

int shardpoint_staging_capacity(const shardpoint_staging *staging, uint64_t *out_capacity) {
    return guarded([&] {
        need(staging, "staging");
        need(out_capacity, "out_capacity");
        *out_capacity = staging->impl->capacity();
    });
}

void shardpoint_staging_free(shardpoint_staging *staging) { delete staging; }

int shardpoint_save_staging_size(const shardpoint_save *save, uint64_t *out_bytes) {
    return guarded([&] {
        need(save, "save");
        need(out_bytes, "out_bytes");
        *out_bytes = save->impl->staging_bytes();
    });
}

int shardpoint_save_commit_async(shardpoint_save *save, shardpoint_staging *staging) {
    return guarded([&] {
        need(save, "save");
        need(staging, "staging");
        save->impl->commit_async(*staging->impl);
    });
}

int shardpoint_save_wait(shardpoint_save *save) {
    return guarded([&] {
        need(save, "save");
        save->impl->wait();
    });
}

int shardpoint_save_poll(shardpoint_save *save, int32_t *out_finished) {
    return guarded([&] {
        need(save, "save");
        need(out_finished, "out_finished");
        *out_finished = save->impl->finished() ? 1 : 0;
    });
}

int shardpoint_save_cancel(shardpoint_save *save) {
    return guarded([&] {
        need(save, "save");
        save->impl->finished();  // ESTATE when none was started
        save->impl->cancel();
    });
}

int shardpoint_save_commit(shardpoint_save *save) {
    return guarded([&] {
        need(save, "save");
        save->impl->commit();
    });
}

void shardpoint_save_free(shardpoint_save *save) { delete save; }

}  // extern "C"
