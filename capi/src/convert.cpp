// The C ABI: conversion to and from safetensors (the work is in cpp/src/safetensors.cpp).
#include <cstring>

#include "internal.hpp"
#include "shardpoint/safetensors.hpp"

using namespace shardpoint;
using namespace shardpoint::capi;

namespace {

// The core's options from the C struct (NULL: defaults). `ckpt_dir` names the checkpoint side,
// whose directory name is the default checkpoint id.
ConvertOptions convert_options_of(const shardpoint_convert_options *o, const char *ckpt_dir) {
    ConvertOptions out;
    const shardpoint_save_options *save = o ? o->save_options : nullptr;
    out.save = save_options_of(save, ckpt_dir);
    if (!o) return out;
    if (o->version != SHARDPOINT_CONVERT_OPTIONS_VERSION)
        throw Error(Code::invalid_argument, "unsupported convert options version " + std::to_string(o->version));
    const uint32_t known = SHARDPOINT_CONVERT_OVERWRITE | SHARDPOINT_CONVERT_SKIP_BYTES | SHARDPOINT_CONVERT_NO_FSYNC;
    if (o->flags & ~known) throw Error(Code::invalid_argument, "unknown convert flags");
    if (o->reserved != 0) throw Error(Code::invalid_argument, "convert options: reserved must be 0");
    out.overwrite = o->flags & SHARDPOINT_CONVERT_OVERWRITE;
    out.skip_bytes = o->flags & SHARDPOINT_CONVERT_SKIP_BYTES;
    out.fsync = !(o->flags & SHARDPOINT_CONVERT_NO_FSYNC);
    out.max_shard_size = o->max_shard_size;
    if (o->buffer_size) out.buffer_size = o->buffer_size;
    out.io_threads = o->io_threads;
    out.progress = progress_of(o->progress, o->progress_user);
    if (out.overwrite) out.save.overwrite = true;
    if (!out.fsync) out.save.fsync = false;
    if (out.save.io_threads == 0) out.save.io_threads = o->io_threads;
    return out;
}

}  // namespace

extern "C" {

int shardpoint_convert_options_init(shardpoint_convert_options *options, uint32_t version) {
    return guarded([&] {
        need(options, "options");
        if (version != SHARDPOINT_CONVERT_OPTIONS_VERSION)
            throw Error(Code::invalid_argument, "unsupported convert options version " + std::to_string(version));
        shardpoint_convert_options defaults = SHARDPOINT_CONVERT_OPTIONS_INIT;
        std::memcpy(options, &defaults, sizeof defaults);
    });
}

int shardpoint_convert_to_safetensors(const char *ckpt_dir, const char *out_path, const shardpoint_convert_options *options) {
    return guarded([&] {
        std::string ckpt = text(ckpt_dir, "ckpt_dir"), out = text(out_path, "out_path");
        convert_to_safetensors(ckpt, out, convert_options_of(options, ckpt_dir));
    });
}

int shardpoint_convert_from_safetensors(const char *in_path, const char *ckpt_dir, const shardpoint_convert_options *options) {
    return guarded([&] {
        std::string in = text(in_path, "in_path"), ckpt = text(ckpt_dir, "ckpt_dir");
        convert_from_safetensors(in, ckpt, convert_options_of(options, ckpt_dir));
    });
}

int shardpoint_parse_size(const char *text_in, uint64_t *out_bytes) {
    return guarded([&] {
        need(out_bytes, "out_bytes");
        *out_bytes = parse_size(text(text_in, "text"));
    });
}

}  // extern "C"
