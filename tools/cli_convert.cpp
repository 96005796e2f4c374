// `shardpoint convert`: a checkpoint to safetensors (one file or a sharded model directory) and
// back, through the C ABI's conversion functions. On a terminal the progress is one line redrawn
// in place (bytes, percent, throughput); otherwise a plain line at every tenth of the way. Ctrl-C
// cancels through the progress callback, so that nothing half-written is left behind.
#include "cli_convert.hpp"

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>

#include "cli_util.hpp"
#include "shardpoint.h"

namespace {

int usage_error(const std::string &message) { return cli::usage_error("convert: " + message); }

// The tensors a checkpoint holds and their bytes (what a conversion moves), for the summary.
void count_tensors(const char *dir, uint64_t &tensors, uint64_t &bytes) {
    tensors = bytes = 0;
    shardpoint_reader *r = nullptr;
    if (shardpoint_reader_open(&r, dir, nullptr) != 0) return;
    uint64_t n = 0;
    shardpoint_reader_entry_count(r, &n);
    for (uint64_t i = 0; i < n; ++i) {
        shardpoint_entry_info e;
        shardpoint_reader_entry_info(r, i, &e);
        if (e.kind != SHARDPOINT_ENTRY_TENSOR) continue;
        ++tensors;
        bytes += e.nbytes;
    }
    shardpoint_reader_free(r);
}

bool has(const std::vector<std::pair<std::string, std::string>> &options, const char *name) {
    for (auto &o : options)
        if (o.first == name) return true;
    return false;
}

std::string value(const std::vector<std::pair<std::string, std::string>> &options, const char *name) {
    std::string v;
    for (auto &o : options)
        if (o.first == name) v = o.second;  // the last one wins
    return v;
}

}  // namespace

int run_convert(const std::vector<std::string> &positional, const std::vector<std::pair<std::string, std::string>> &options) {
    const bool to = has(options, "--to"), from = has(options, "--from");
    if (to == from) return usage_error("give exactly one of --to safetensors and --from safetensors");
    const std::string format = value(options, to ? "--to" : "--from");
    if (format != "safetensors") return usage_error("unknown format '" + format + "' (the one format is safetensors)");
    if (positional.size() != 2)
        return usage_error(to ? "wants CKPT OUT: the checkpoint directory, then the safetensors file or directory"
                              : "wants IN CKPT: the safetensors file, index or directory, then the checkpoint directory");
    for (const char *only_to : {"--max-shard-size", "--skip-bytes"})
        if (from && has(options, only_to)) return usage_error(std::string(only_to) + " applies to --to only");
    for (const char *only_from : {"--compression", "--level"})
        if (to && has(options, only_from)) return usage_error(std::string(only_from) + " applies to --from only");

    shardpoint_convert_options opts = SHARDPOINT_CONVERT_OPTIONS_INIT;
    shardpoint_save_options save = SHARDPOINT_SAVE_OPTIONS_INIT;
    if (has(options, "--overwrite")) opts.flags |= SHARDPOINT_CONVERT_OVERWRITE;
    if (has(options, "--skip-bytes")) opts.flags |= SHARDPOINT_CONVERT_SKIP_BYTES;
    if (has(options, "--no-fsync")) opts.flags |= SHARDPOINT_CONVERT_NO_FSYNC;
    for (const char *size_option : {"--max-shard-size", "--buffer-size"}) {
        if (!has(options, size_option)) continue;
        uint64_t bytes = 0;
        if (shardpoint_parse_size(value(options, size_option).c_str(), &bytes) != 0 || bytes == 0)
            return usage_error(std::string(size_option) + " wants a positive size such as 5GB, 500MB or 64MiB, got '" +
                               value(options, size_option) + "'");
        (std::strcmp(size_option, "--max-shard-size") == 0 ? opts.max_shard_size : opts.buffer_size) = bytes;
    }
    if (has(options, "--compression")) {
        const std::string codec = value(options, "--compression");
        if (codec == "zstd") save.codec = SHARDPOINT_CODEC_ZSTD;
        else if (codec == "zlib") save.codec = SHARDPOINT_CODEC_ZLIB;
        else if (codec == "deflate") save.codec = SHARDPOINT_CODEC_DEFLATE_STREAM;
        else if (codec != "none") return usage_error("--compression wants none, zstd, zlib or deflate, got '" + codec + "'");
    }
    if (has(options, "--level")) {
        const std::string level = value(options, "--level");
        char *end = nullptr;
        long v = std::strtol(level.c_str(), &end, 10);
        if (level.empty() || *end || v < 0 || v > 19) return usage_error("--level wants a whole number from 0 to 19, got '" + level + "'");
        if (save.codec == SHARDPOINT_CODEC_DEFAULT) return usage_error("--level needs --compression zstd, zlib or deflate");
        save.compression_level = int32_t(v);
    }
    opts.save_options = &save;

    cli::ProgressLine line("convert");
    opts.progress = cli::ProgressLine::callback;
    opts.progress_user = &line;
    const char *in = positional[0].c_str(), *out = positional[1].c_str();
    const char *ckpt = to ? in : out;
    int rc = to ? shardpoint_convert_to_safetensors(in, out, &opts) : shardpoint_convert_from_safetensors(in, out, &opts);
    const double elapsed = line.elapsed();
    line.end_line();
    if (rc != 0) {
        std::fprintf(stderr, "shardpoint convert: %s: %s%s\n", shardpoint_error_name(rc), shardpoint_last_error(),
                     rc == SHARDPOINT_ECANCELED ? " (nothing was written)" : "");
        return 1;
    }
    uint64_t tensors = 0, bytes = 0;
    count_tensors(ckpt, tensors, bytes);
    std::printf("converted %s to %s: %" PRIu64 " %s, %s in %.2f s (%s)\n", in, out, tensors, tensors == 1 ? "tensor" : "tensors",
                cli::human_bytes(double(bytes)).c_str(), elapsed, cli::rate(bytes, elapsed).c_str());
    return 0;
}
