// The C ABI: the storage-layer writer phases.
#include "internal.hpp"

using namespace shardpoint;
using namespace shardpoint::capi;

struct shardpoint_writer {
    std::unique_ptr<CheckpointWriter> impl;
    std::string local_plan, results;  // byte strings returned to the caller
    std::vector<std::string> finals;
    std::vector<uint32_t> assigned;
};

namespace {

std::vector<std::string> messages(uint32_t count, const void *const *data, const uint64_t *lens) {
    if (count) {
        need(data, "the message array");
        need(lens, "the length array");
    }
    std::vector<std::string> out;
    for (uint32_t i = 0; i < count; ++i) {
        if (lens[i]) need(data[i], "a message");
        out.emplace_back(static_cast<const char *>(data[i]), size_t(lens[i]));
    }
    return out;
}

void give(const std::string &bytes, const void **out, uint64_t *out_len) {
    *out = bytes.data();
    *out_len = bytes.size();
}

}  // namespace

extern "C" {

int shardpoint_writer_new(shardpoint_writer **out, const char *dir, const shardpoint_save_options *options) {
    return guarded([&] {
        need(out, "out");
        std::string d = text(dir, "dir");
        auto w = std::make_unique<shardpoint_writer>();
        w->impl = std::make_unique<CheckpointWriter>(d, save_options_of(options, dir));
        *out = w.release();
    });
}

void shardpoint_writer_free(shardpoint_writer *writer) { delete writer; }

int shardpoint_writer_set_up(shardpoint_writer *writer, int32_t rank, int32_t world_size) {
    return guarded([&] {
        need(writer, "writer");
        writer->impl->set_up(rank, world_size);
    });
}

int shardpoint_writer_add_tensor(shardpoint_writer *writer, const char *fqn, int32_t dtype, uint32_t ndim,
                                 const uint64_t *global_shape, const uint64_t *chunk_offsets, const uint64_t *chunk_sizes,
                                 const void *data, const int64_t *strides) {
    return guarded([&] {
        need(writer, "writer");
        if (!dtype_valid(dtype)) throw Error(Code::invalid_argument, "unknown dtype " + std::to_string(dtype));
        writer->impl->add_tensor(text(fqn, "fqn"), DType(dtype), dims(global_shape, ndim, "global_shape"),
                                 dims(chunk_offsets, ndim, "chunk_offsets"), dims(chunk_sizes, ndim, "chunk_sizes"), data,
                                 strides_of(strides, ndim));
    });
}

int shardpoint_writer_add_bytes(shardpoint_writer *writer, const char *fqn, const void *data, uint64_t len) {
    return guarded([&] {
        need(writer, "writer");
        writer->impl->add_bytes(text(fqn, "fqn"), data, len);
    });
}

int shardpoint_writer_set_metadata(shardpoint_writer *writer, const char *key, const char *value) {
    return guarded([&] {
        need(writer, "writer");
        writer->impl->set_metadata(text(key, "key"), text(value, "value"));
    });
}

int shardpoint_writer_set_framework_metadata(shardpoint_writer *writer, const char *key, const char *value) {
    return guarded([&] {
        need(writer, "writer");
        writer->impl->set_framework_metadata(text(key, "key"), text(value, "value"));
    });
}

int shardpoint_writer_plan_tensor(shardpoint_writer *writer, const char *fqn, int32_t dtype, uint32_t ndim,
                                  const uint64_t *global_shape, const uint64_t *chunk_offsets, const uint64_t *chunk_sizes) {
    return guarded([&] {
        need(writer, "writer");
        if (!dtype_valid(dtype)) throw Error(Code::invalid_argument, "unknown dtype " + std::to_string(dtype));
        writer->impl->plan_tensor(text(fqn, "fqn"), DType(dtype), dims(global_shape, ndim, "global_shape"),
                                  dims(chunk_offsets, ndim, "chunk_offsets"), dims(chunk_sizes, ndim, "chunk_sizes"));
    });
}

int shardpoint_writer_plan_bytes(shardpoint_writer *writer, const char *fqn) {
    return guarded([&] {
        need(writer, "writer");
        writer->impl->plan_bytes(text(fqn, "fqn"));
    });
}

int shardpoint_writer_assigned(shardpoint_writer *writer, const void *final_plan, uint64_t len, const uint32_t **out_items,
                               uint64_t *out_count) {
    return guarded([&] {
        need(writer, "writer");
        need(out_items, "out_items");
        need(out_count, "out_count");
        if (len) need(final_plan, "final_plan");
        writer->assigned = writer->impl->assigned(std::string(static_cast<const char *>(final_plan), size_t(len)));
        *out_items = writer->assigned.data();
        *out_count = writer->assigned.size();
    });
}

int shardpoint_writer_bind_tensor(shardpoint_writer *writer, uint64_t item, const void *data, const int64_t *strides) {
    return guarded([&] {
        need(writer, "writer");
        writer->impl->bind_tensor(size_t(item), data, strides_of(strides, writer->impl->item_ndim(size_t(item))));
    });
}

int shardpoint_writer_bind_bytes(shardpoint_writer *writer, uint64_t item, const void *data, uint64_t len) {
    return guarded([&] {
        need(writer, "writer");
        writer->impl->bind_bytes(size_t(item), data, len);
    });
}

int shardpoint_writer_local_plan(shardpoint_writer *writer, const void **out_plan, uint64_t *out_len) {
    return guarded([&] {
        need(writer, "writer");
        need(out_plan, "out_plan");
        need(out_len, "out_len");
        writer->local_plan = writer->impl->local_plan();
        give(writer->local_plan, out_plan, out_len);
    });
}

int shardpoint_writer_global_plan(shardpoint_writer *writer, uint32_t count, const void *const *plans, const uint64_t *lens) {
    return guarded([&] {
        need(writer, "writer");
        writer->finals = writer->impl->global_plan(messages(count, plans, lens));
    });
}

int shardpoint_writer_final_plan(const shardpoint_writer *writer, uint32_t rank, const void **out_plan, uint64_t *out_len) {
    return guarded([&] {
        need(writer, "writer");
        need(out_plan, "out_plan");
        need(out_len, "out_len");
        if (writer->finals.empty()) throw Error(Code::state, "no global plan was made by this writer");
        if (rank >= writer->finals.size())
            throw Error(Code::range, "rank " + std::to_string(rank) + " is not in a job of " + std::to_string(writer->finals.size()));
        give(writer->finals[rank], out_plan, out_len);
    });
}

int shardpoint_writer_write(shardpoint_writer *writer, const void *final_plan, uint64_t len, const void **out_results,
                            uint64_t *out_len) {
    return guarded([&] {
        need(writer, "writer");
        need(out_results, "out_results");
        need(out_len, "out_len");
        if (len) need(final_plan, "final_plan");
        writer->results = writer->impl->write(std::string(static_cast<const char *>(final_plan), size_t(len)));
        give(writer->results, out_results, out_len);
    });
}

int shardpoint_writer_write_bound(shardpoint_writer *writer, const void *final_plan, uint64_t len) {
    return guarded([&] {
        need(writer, "writer");
        if (len) need(final_plan, "final_plan");
        writer->impl->write_bound(std::string(static_cast<const char *>(final_plan), size_t(len)));
    });
}

int shardpoint_writer_finish(shardpoint_writer *writer, uint32_t count, const void *const *results, const uint64_t *lens) {
    return guarded([&] {
        need(writer, "writer");
        writer->impl->finish(messages(count, results, lens));
    });
}

int shardpoint_writer_abort(shardpoint_writer *writer) {
    return guarded([&] {
        need(writer, "writer");
        writer->impl->abort();
    });
}

int shardpoint_writer_set_progress(shardpoint_writer *writer, shardpoint_progress_callback callback, void *user) {
    return guarded([&] {
        need(writer, "writer");
        writer->impl->set_progress(progress_of(callback, user));
    });
}

int shardpoint_writer_committed(const shardpoint_writer *writer, int32_t *out_committed) {
    return guarded([&] {
        need(writer, "writer");
        need(out_committed, "out_committed");
        *out_committed = writer->impl->committed() ? 1 : 0;
    });
}

}  // extern "C"
