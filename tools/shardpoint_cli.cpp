// The shardpoint command-line tool: inspect, verify and clean checkpoints, and a demo that saves
// a sharded model with several ranks and loads it back resharded. Uses only the public C ABI
// (through the header-only shardpoint.hpp wrapper), like any other program.
//
// Exit codes: 0 success, 1 the operation failed (bad checkpoint, I/O error), 2 usage error.
// When the reader of stdout goes away (`shardpoint inspect DIR | head`), the tool stops printing
// and exits with the status it would have had; it is never killed by SIGPIPE.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cli_convert.hpp"
#include "cli_steps.hpp"
#include "cli_util.hpp"
#include "shardpoint.hpp"

namespace sp = shardpoint::cxx;
using cli::human_bytes;
using cli::plural;
using cli::seconds_since;

namespace {

// ---------------------------------------------------------------------------------------------
// stdout that may be a closed pipe

int stdout_errno = 0;  // the error of the first failed write to stdout, 0 while all is well

// True once stdout refused output. Called right after printing, so errno is the write's error.
bool stdout_failed() {
    if (stdout_errno == 0 && std::ferror(stdout)) stdout_errno = errno ? errno : EIO;
    return stdout_errno != 0;
}

// The final status: a reader that went away is not our failure; any other write error is.
int finish_stdout(int rc) {
    errno = 0;
    if (std::fflush(stdout) != 0 || std::ferror(stdout)) stdout_failed();
    if (stdout_errno == 0 || stdout_errno == EPIPE) return rc;
    std::fprintf(stderr, "shardpoint: cannot write to stdout: %s\n", std::strerror(stdout_errno));
    return rc ? rc : 1;
}

// ---------------------------------------------------------------------------------------------
// formatting

void print_json_string(const char *s) { std::fputs(cli::json_string(s).c_str(), stdout); }

std::string dims_text(const uint64_t *d, uint32_t n) {
    std::string s = "[";
    for (uint32_t i = 0; i < n; ++i) s += (i ? "," : "") + std::to_string(d[i]);
    return s + "]";
}

shardpoint_reader *open_or_report(const char *cmd, const char *dir) {
    shardpoint_reader *r = nullptr;
    int rc = shardpoint_reader_open(&r, dir, nullptr);
    if (rc != 0) {
        std::fprintf(stderr, "shardpoint %s: cannot open checkpoint '%s': %s: %s\n", cmd, dir, shardpoint_error_name(rc),
                     shardpoint_last_error());
        return nullptr;
    }
    return r;
}

// ---------------------------------------------------------------------------------------------
// inspect

// `limit`: list at most this many entries (text only); UINT64_MAX lists all.
int inspect(const char *dir, bool json, uint64_t limit) {
    shardpoint_reader *r = open_or_report("inspect", dir);
    if (!r) return 1;
    shardpoint_storage_info info;
    shardpoint_reader_storage_info(r, &info);
    uint32_t block_size = 0;
    shardpoint_reader_block_size(r, &block_size);
    uint64_t n = 0, nmeta = 0;
    shardpoint_reader_entry_count(r, &n);
    shardpoint_reader_metadata_count(r, &nmeta);
    if (json) {
        std::printf("{\"checkpoint_id\":");
        print_json_string(info.checkpoint_id);
        std::printf(",\"save_id\":\"%s\",\"library_version\":\"%s\",\"format\":\"%u.%u\",\"world_size\":%d,"
                    "\"created_unix_ns\":%" PRId64 ",\"alignment\":%u,\"block_size\":%u,\"file_count\":%" PRIu64
                    ",\"stored_bytes\":%" PRIu64 ",\"metadata\":{",
                    info.save_id, info.library_version, info.format_major, info.format_minor, info.world_size,
                    info.created_unix_ns, info.alignment, block_size, info.file_count, info.total_stored_bytes);
        for (uint64_t i = 0; i < nmeta; ++i) {
            const char *k, *v;
            shardpoint_reader_metadata_at(r, i, &k, &v);
            if (i) std::putchar(',');
            print_json_string(k);
            std::putchar(':');
            print_json_string(v);
        }
        std::printf("},\"files\":[");
        for (uint64_t i = 0; i < info.file_count; ++i) {
            shardpoint_file_info f;
            shardpoint_reader_file_info(r, i, &f);
            std::printf("%s{\"name\":", i ? "," : "");
            print_json_string(f.name);
            std::printf(",\"size\":%" PRIu64 ",\"rank\":%d}", f.size, f.rank);
        }
        std::printf("],\"entries\":[");
    } else {
        std::printf("checkpoint %s (save %s, format %u.%u, written by shardpoint %s with %d %s)\n", info.checkpoint_id,
                    info.save_id, info.format_major, info.format_minor, info.library_version, info.world_size,
                    plural(uint64_t(info.world_size), "rank", "ranks"));
        std::printf("%" PRIu64 " entries, %" PRIu64 " data files, %s stored, extents aligned to %u bytes, block CRC-32 "
                    "every %u bytes\n",
                    n, info.file_count, human_bytes(double(info.total_stored_bytes)).c_str(), info.alignment, block_size);
        for (uint64_t i = 0; i < nmeta; ++i) {
            const char *k, *v;
            shardpoint_reader_metadata_at(r, i, &k, &v);
            std::printf("  metadata %s = %s\n", k, v);
        }
        for (uint64_t i = 0; i < info.file_count; ++i) {
            shardpoint_file_info f;
            shardpoint_reader_file_info(r, i, &f);
            std::printf("  file %-48s rank %-4d %10s\n", f.name, f.rank, human_bytes(double(f.size)).c_str());
        }
    }
    uint64_t partial = 0;
    for (uint64_t i = 0; i < n && !stdout_failed(); ++i) {
        shardpoint_entry_info e;
        shardpoint_reader_entry_info(r, i, &e);
        bool tensor = e.kind == SHARDPOINT_ENTRY_TENSOR;
        if (e.covered_numel < e.numel) ++partial;
        if (!json && i >= limit) continue;  // still counted for the partial summary
        if (json) {
            std::printf("%s{\"fqn\":", i ? "," : "");
            print_json_string(e.fqn);
            std::printf(",\"kind\":\"%s\"", tensor ? "tensor" : "bytes");
            if (tensor) std::printf(",\"dtype\":\"%s\",\"shape\":%s", shardpoint_dtype_name(e.dtype), dims_text(e.shape, e.ndim).c_str());
            std::printf(",\"nbytes\":%" PRIu64 ",\"stored_bytes\":%" PRIu64 ",\"numel\":%" PRIu64 ",\"covered_numel\":%" PRIu64 ",\"chunks\":[",
                        e.nbytes, e.stored_bytes, e.numel, e.covered_numel);
        } else {
            std::printf("%-40s %-6s %-16s %10s  %" PRIu64 " %s%s\n", e.fqn, tensor ? shardpoint_dtype_name(e.dtype) : "bytes",
                        tensor ? dims_text(e.shape, e.ndim).c_str() : std::to_string(e.nbytes).c_str(),
                        human_bytes(double(e.stored_bytes)).c_str(), e.chunk_count, plural(e.chunk_count, "chunk", "chunks"),
                        e.covered_numel < e.numel ? "  PARTIAL: " : "");
            if (e.covered_numel < e.numel)
                std::printf("    only %" PRIu64 " of %" PRIu64 " elements saved; the rest cannot be loaded\n", e.covered_numel, e.numel);
        }
        for (uint64_t c = 0; c < e.chunk_count; ++c) {
            shardpoint_chunk_info ci;
            shardpoint_reader_chunk_info(r, i, c, &ci);
            const char *transform = ci.transform == SHARDPOINT_TRANSFORM_DEFLATE       ? "deflate"
                                    : ci.transform == SHARDPOINT_TRANSFORM_ZLIB_BLOCKS ? (ci.shuffle_width ? "zlib-blocks+shuffle" : "zlib-blocks")
                                    : ci.transform == SHARDPOINT_TRANSFORM_ZSTD_BLOCKS ? (ci.shuffle_width ? "zstd-blocks+shuffle" : "zstd-blocks")
                                                                                       : "none";
            if (json) {
                std::printf("%s{\"offsets\":%s,\"sizes\":%s,\"file\":", c ? "," : "", dims_text(ci.offsets, tensor ? e.ndim : 0).c_str(),
                            dims_text(ci.sizes, tensor ? e.ndim : 0).c_str());
                print_json_string(ci.file);
                std::printf(",\"offset\":%" PRIu64 ",\"stored_length\":%" PRIu64 ",\"raw_length\":%" PRIu64
                            ",\"crc32\":\"%08x\",\"transform\":\"%s\",\"rank\":%d}",
                            ci.file_offset, ci.stored_length, ci.raw_length, ci.crc32, transform, ci.writer_rank);
            } else if (tensor) {
                std::printf("    rank %-3d offsets %-14s sizes %-14s %s @%" PRIu64 " %s%s\n", ci.writer_rank,
                            dims_text(ci.offsets, e.ndim).c_str(), dims_text(ci.sizes, e.ndim).c_str(), ci.file, ci.file_offset,
                            human_bytes(double(ci.stored_length)).c_str(),
                            ci.transform ? (std::string(" ") + transform).c_str() : "");
            }
        }
        if (json) std::printf("]}");
    }
    if (json) std::printf("],\"partial_entries\":%" PRIu64 "}\n", partial);
    else {
        if (n > limit)
            std::printf("... %" PRIu64 " more %s (without --limit, inspect lists them all)\n", n - limit,
                        plural(n - limit, "entry", "entries"));
        if (partial) std::printf("%" PRIu64 " %s only partly saved\n", partial, plural(partial, "entry is", "entries are"));
    }
    shardpoint_reader_free(r);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// verify and gc

int report_problem(void *user, const shardpoint_verify_problem *p) {
    auto *dir = static_cast<const char *>(user);
    std::fprintf(stderr, "shardpoint verify: BAD %s chunk %" PRIu64 " in %s/%s, bytes [%" PRIu64 ", %" PRIu64 "): %s: %s\n",
                 p->fqn, p->chunk, dir, p->file, p->file_offset, p->file_offset + p->length, shardpoint_error_name(p->code),
                 p->message);
    return 0;  // keep going: every bad extent is reported
}

int warn_unreferenced(void *user, const char *name, uint64_t size) {
    auto *dir = static_cast<const char *>(user);
    std::fprintf(stderr, "shardpoint verify: warning: %s/%s (%" PRIu64 " bytes) is named by no committed metadata "
                 "(debris of an unfinished save, or a file of a save in progress; 'shardpoint gc' removes debris)\n", dir, name, size);
    return 0;
}

int verify(const char *dir) {
    shardpoint_reader *r = open_or_report("verify", dir);
    if (!r) return 1;
    shardpoint_storage_info info;
    shardpoint_reader_storage_info(r, &info);
    uint64_t n = 0, extents = 0, partial = 0;
    shardpoint_reader_entry_count(r, &n);
    for (uint64_t i = 0; i < n; ++i) {
        shardpoint_entry_info e;
        shardpoint_reader_entry_info(r, i, &e);
        extents += e.chunk_count;
        if (e.covered_numel < e.numel) {
            ++partial;
            std::printf("note: '%s' is only partly saved (%" PRIu64 " of %" PRIu64 " elements)\n", e.fqn, e.covered_numel, e.numel);
        }
    }
    uint64_t problems = 0;
    int rc;
    {
        cli::ProgressLine line("verify");
        shardpoint_reader_set_progress(r, cli::ProgressLine::callback, &line);
        rc = shardpoint_reader_verify_each(r, report_problem, const_cast<char *>(dir), &problems);
        shardpoint_reader_set_progress(r, nullptr, nullptr);
    }
    if (rc != 0 && problems == 0) {  // verification itself could not run (or Ctrl-C stopped it)
        std::fprintf(stderr, "shardpoint verify: %s: %s\n", shardpoint_error_name(rc), shardpoint_last_error());
        problems = 1;
    }
    shardpoint_reader_free(r);

    // Unreferenced files do not make the checkpoint wrong: a warning, not a failure.
    uint64_t stray = 0, stray_bytes = 0;
    int gc_rc = shardpoint_gc(dir, SHARDPOINT_GC_DRY_RUN, warn_unreferenced, const_cast<char *>(dir), &stray, &stray_bytes);
    if (gc_rc != 0)
        std::fprintf(stderr, "shardpoint verify: warning: could not look for unreferenced files: %s: %s\n",
                     shardpoint_error_name(gc_rc), shardpoint_last_error());

    std::printf("verify %s: %" PRIu64 " %s, %" PRIu64 " %s, %" PRIu64 " bytes (%s) in %" PRIu64 " %s checked: ", dir, n,
                plural(n, "entry", "entries"), extents, plural(extents, "extent", "extents"), info.total_stored_bytes,
                human_bytes(double(info.total_stored_bytes)).c_str(), info.file_count, plural(info.file_count, "file", "files"));
    if (problems) std::printf("%" PRIu64 " %s found", problems, plural(problems, "problem", "problems"));
    else std::printf("ok, every checksum matches");
    if (partial) std::printf(", %" PRIu64 " %s partly saved", partial, plural(partial, "entry", "entries"));
    if (stray) std::printf(", %" PRIu64 " unreferenced %s (%" PRIu64 " bytes)", stray, plural(stray, "file", "files"), stray_bytes);
    std::printf("\n");
    return problems ? 1 : 0;
}

struct GcReport {
    bool dry_run;
};

int print_removed(void *user, const char *name, uint64_t size) {
    auto *g = static_cast<GcReport *>(user);
    // Called before the removal: a failure to remove it ends gc with an error after this line.
    std::printf("%s %s (%" PRIu64 " bytes)\n", g->dry_run ? "would remove" : "removing", name, size);
    return 0;
}

int gc(const char *dir, bool dry_run) {
    GcReport report{dry_run};
    uint64_t files = 0, bytes = 0;
    int rc = shardpoint_gc(dir, dry_run ? SHARDPOINT_GC_DRY_RUN : 0, print_removed, &report, &files, &bytes);
    if (rc != 0) {
        std::fprintf(stderr, "shardpoint gc: %s: %s: %s\n", dir, shardpoint_error_name(rc), shardpoint_last_error());
        return 1;
    }
    std::printf("gc %s: %s %" PRIu64 " %s, %" PRIu64 " bytes (%s)\n", dir, dry_run ? "would remove" : "removed", files,
                plural(files, "file", "files"), bytes, human_bytes(double(bytes)).c_str());
    return 0;
}

// ---------------------------------------------------------------------------------------------
// demo: a transformer-like state saved by 4 ranks, loaded back by 3 ranks resharded.

struct DemoTensor {
    std::string fqn;
    uint64_t rows, cols;
    enum Sharding { rows_split, cols_split, blocks_2x2, replicated } sharding;
};

float demo_value(uint32_t seed, uint64_t index) {
    uint32_t x = uint32_t(index * 2654435761u) ^ (seed * 40503u);
    return float(x & 0xffff) / 65536.0f - 0.5f;
}

uint32_t seed_of(const std::string &s) {
    uint32_t h = 2166136261u;
    for (char c : s) h = (h ^ uint8_t(c)) * 16777619u;
    return h;
}

std::vector<DemoTensor> demo_model(uint64_t target_bytes) {
    // Hidden size chosen so the whole state is about target_bytes of f32.
    const uint64_t layers = 8, vocab_factor = 8;
    uint64_t hidden = 128;
    while (4 * (hidden + 64) * (hidden + 64) * (vocab_factor + layers * 12) <= target_bytes) hidden += 64;
    std::vector<DemoTensor> model{{"model.embed_tokens.weight", vocab_factor * hidden, hidden, DemoTensor::rows_split}};
    for (uint64_t l = 0; l < layers; ++l) {
        std::string p = "model.layers." + std::to_string(l) + ".";
        model.push_back({p + "attn.wq", hidden, hidden, DemoTensor::cols_split});
        model.push_back({p + "attn.wk", hidden, hidden, DemoTensor::cols_split});
        model.push_back({p + "attn.wv", hidden, hidden, DemoTensor::cols_split});
        model.push_back({p + "attn.wo", hidden, hidden, DemoTensor::rows_split});
        model.push_back({p + "mlp.w1", 4 * hidden, hidden, DemoTensor::blocks_2x2});
        model.push_back({p + "mlp.w2", hidden, 4 * hidden, DemoTensor::blocks_2x2});
        model.push_back({p + "attn_norm.weight", 1, hidden, DemoTensor::replicated});
        model.push_back({p + "mlp_norm.weight", 1, hidden, DemoTensor::replicated});
        model.push_back({p + "mlp.b1", 1, 4 * hidden, DemoTensor::replicated});
    }
    model.push_back({"model.norm.weight", 1, hidden, DemoTensor::replicated});
    return model;
}

void fill(const DemoTensor &t, uint64_t r0, uint64_t c0, uint64_t nr, uint64_t nc, float *out) {
    uint32_t seed = seed_of(t.fqn);
    for (uint64_t i = 0; i < nr; ++i)
        for (uint64_t j = 0; j < nc; ++j) out[i * nc + j] = demo_value(seed, (r0 + i) * t.cols + (c0 + j));
}

int demo(const char *dir, uint64_t megabytes) {
    const int save_ranks = 4, load_ranks = 3;
    auto model = demo_model(megabytes << 20);
    uint64_t total = 0;
    for (auto &t : model) total += t.rows * t.cols * 4;
    std::printf("demo: a %zu-tensor transformer-like state, %s of f32, saved by %d ranks into %s\n", model.size(),
                human_bytes(double(total)).c_str(), save_ranks, dir);

    // Save: each rank (a thread with its own communicator) holds its shards.
    std::vector<std::vector<std::vector<float>>> shards(save_ranks);
    std::vector<std::string> errors(save_ranks > load_ranks ? save_ranks : load_ranks);
    sp::LocalGroup save_group(save_ranks);
    std::vector<sp::Comm> save_comms;
    for (int r = 0; r < save_ranks; ++r) save_comms.push_back(save_group.comm(r));
    std::vector<std::string> rng_states(save_ranks);  // blobs must outlive commit
    auto prepare = [&](int r, sp::Save &save) {
        for (auto &t : model) {
            uint64_t r0 = 0, c0 = 0, nr = t.rows, nc = t.cols;
            switch (t.sharding) {
                case DemoTensor::rows_split: r0 = t.rows * r / save_ranks, nr = t.rows * (r + 1) / save_ranks - r0; break;
                case DemoTensor::cols_split: c0 = t.cols * r / save_ranks, nc = t.cols * (r + 1) / save_ranks - c0; break;
                case DemoTensor::blocks_2x2:
                    r0 = t.rows * (r / 2) / 2, nr = t.rows * (r / 2 + 1) / 2 - r0;
                    c0 = t.cols * (r % 2) / 2, nc = t.cols * (r % 2 + 1) / 2 - c0;
                    break;
                case DemoTensor::replicated: break;
            }
            shards[r].emplace_back(nr * nc);
            fill(t, r0, c0, nr, nc, shards[r].back().data());
            save.add_tensor(t.fqn, SHARDPOINT_DTYPE_F32, {t.rows, t.cols}, {r0, c0}, {nr, nc}, shards[r].back().data());
        }
        rng_states[r] = "rng-state-of-rank-" + std::to_string(r);
        save.add_bytes("rng_state.rank" + std::to_string(r), rng_states[r].data(), rng_states[r].size());
        save.set_metadata("step", "1000");
        save.set_metadata("demo", "shardpoint");
    };
    shardpoint_save_options options = SHARDPOINT_SAVE_OPTIONS_INIT;
    options.flags = SHARDPOINT_SAVE_OVERWRITE;
    std::vector<double> save_seconds(save_ranks);
    {
        std::vector<std::thread> threads;
        std::vector<std::unique_ptr<sp::Save>> saves(save_ranks);
        for (int r = 0; r < save_ranks; ++r) {
            saves[r] = std::make_unique<sp::Save>(dir, &save_comms[r], &options);
            prepare(r, *saves[r]);
        }
        auto t0 = std::chrono::steady_clock::now();
        for (int r = 0; r < save_ranks; ++r)
            threads.emplace_back([&, r] {
                try {
                    saves[r]->commit();
                } catch (const std::exception &e) {
                    errors[r] = e.what();
                }
                save_seconds[r] = seconds_since(t0);
            });
        for (auto &t : threads) t.join();
    }
    for (int r = 0; r < save_ranks; ++r)
        if (!errors[r].empty()) {
            std::fprintf(stderr, "demo: rank %d failed to save: %s\n", r, errors[r].c_str());
            return 1;
        }
    double save_time = 0;
    for (double s : save_seconds) save_time = s > save_time ? s : save_time;

    sp::Reader reader(dir);
    auto entries = reader.entries();
    uint64_t stored = 0;
    for (auto &e : entries) stored += e.stored_bytes;
    std::printf("saved:  %zu entries, %s written (replicated tensors once) in %.3f s = %.2f GB/s\n", entries.size(),
                human_bytes(double(stored)).c_str(), save_time, double(stored) / save_time / 1e9);
    std::printf("verify: ");
    std::fflush(stdout);
    auto tv = std::chrono::steady_clock::now();
    reader.verify();
    std::printf("every CRC-32 matches (%.3f s)\n", seconds_since(tv));

    // Load: 3 ranks, every tensor split by rows (a different sharding and world size).
    sp::LocalGroup load_group(load_ranks);
    std::vector<sp::Comm> load_comms;
    for (int r = 0; r < load_ranks; ++r) load_comms.push_back(load_group.comm(r));
    std::vector<std::vector<std::vector<float>>> loaded(load_ranks);
    std::vector<double> load_seconds(load_ranks);
    std::vector<uint64_t> mismatches(load_ranks, 0);
    {
        std::vector<std::thread> threads;
        auto t0 = std::chrono::steady_clock::now();
        for (int r = 0; r < load_ranks; ++r)
            threads.emplace_back([&, r] {
                try {
                    sp::Reader rr(dir);
                    sp::Load load(rr, &load_comms[r]);
                    for (auto &t : model) {
                        uint64_t r0 = t.rows * r / load_ranks, nr = t.rows * (r + 1) / load_ranks - r0;
                        loaded[r].emplace_back(nr * t.cols);
                        load.add_tensor(t.fqn, {r0, 0}, {nr, t.cols}, loaded[r].back());
                    }
                    load.execute();
                    load_seconds[r] = seconds_since(t0);
                } catch (const std::exception &e) {
                    errors[r] = e.what();
                }
            });
        for (auto &t : threads) t.join();
    }
    double load_time = 0;
    for (int r = 0; r < load_ranks; ++r) {
        if (!errors[r].empty()) {
            std::fprintf(stderr, "demo: rank %d failed to load: %s\n", r, errors[r].c_str());
            return 1;
        }
        load_time = load_seconds[r] > load_time ? load_seconds[r] : load_time;
        for (size_t k = 0; k < model.size(); ++k) {
            const auto &t = model[k];
            uint64_t r0 = t.rows * r / load_ranks, nr = t.rows * (r + 1) / load_ranks - r0;
            std::vector<float> want(nr * t.cols);
            fill(t, r0, 0, nr, t.cols, want.data());
            if (!want.empty() && std::memcmp(want.data(), loaded[r][k].data(), want.size() * 4) != 0) ++mismatches[r];
        }
    }
    uint64_t bad = 0;
    for (auto m : mismatches) bad += m;
    std::printf("loaded: %d ranks, every tensor resharded by rows, %s in %.3f s = %.2f GB/s\n", load_ranks,
                human_bytes(double(total)).c_str(), load_time, double(total) / load_time / 1e9);
    auto blob = reader.read_bytes("rng_state.rank2");
    std::string blob_text(blob.begin(), blob.end());
    std::printf("bytes:  rng_state.rank2 = \"%s\"; metadata step = %s\n", blob_text.c_str(), reader.metadata("step").c_str());
    if (bad || blob_text != "rng-state-of-rank-2") {
        std::printf("check:  FAILED: %" PRIu64 " tensors differ from what was saved\n", bad);
        return 1;
    }
    std::printf("check:  every loaded byte equals the saved model\n");
    std::printf("inspect it with: shardpoint inspect %s\n", dir);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// command line

const char usage_text[] =
    "usage: shardpoint COMMAND [OPTIONS] DIR\n"
    "\n"
    "commands:\n"
    "  inspect [--json] [--limit N] DIR  entries, dtypes, shapes, chunks per rank and file, coverage\n"
    "  verify DIR                        read every extent and check every CRC-32; reports every bad\n"
    "                                    extent, warns about files no committed metadata names\n"
    "  gc [--dry-run] DIR                remove the debris of unfinished saves (only shardpoint's own\n"
    "                                    data-*.bin and shardpoint.meta.tmp-* files the metadata does\n"
    "                                    not name); --dry-run only lists them. On a ROOT of steps:\n"
    "                                    leftovers of killed deletions and the debris in every step\n"
    "  ls [--json] ROOT                  the steps under ROOT (step-N): state (committed, partial,\n"
    "                                    damaged), size, files, commit time; garbage gc would remove\n"
    "  rm ROOT STEP | rm DIR             delete a step, or a checkpoint directory, crash-safely\n"
    "  diff [--data] A B                 entries added, removed, changed (dtype, shape, chunking) and\n"
    "                                    metadata; --data: which values differ (CRC-32, then bytes);\n"
    "                                    exit status 0 same, 1 different, 2 trouble (as diff(1))\n"
    "  demo [--size-mb N] DIR            save a model with 4 ranks, load it with 3 ranks resharded\n"
    "  convert --to safetensors [--max-shard-size SIZE] [--skip-bytes] CKPT OUT\n"
    "                                    a checkpoint's tensors, whole, as one safetensors file, or with\n"
    "                                    --max-shard-size (5GB, 500MB) a sharded model directory with\n"
    "                                    model.safetensors.index.json; --skip-bytes leaves blobs out\n"
    "  convert --from safetensors [--compression none|zstd|zlib|deflate [--level N]] IN CKPT\n"
    "                                    a safetensors file, index or model directory as a checkpoint\n"
    "                                    (both: --overwrite, --no-fsync, --buffer-size SIZE)\n"
    "  version                           the library version (also --version)\n"
    "  help                              this text (also --help, -h)\n"
    "\n"
    "Options may come before or after DIR; '--' ends the options.\n"
    "Exit status: 0 success, 1 failure (a bad checkpoint, an I/O error), 2 usage error.\n"
    "When the reader of the output goes away (| head), the tool stops printing and exits with\n"
    "the status the command would have had.\n";

struct Option {
    const char *name;
    bool takes_value;
};

struct Command {
    const char *name;
    std::vector<Option> options;
};

const std::vector<Command> commands = {
    {"inspect", {{"--json", false}, {"--limit", true}}},
    {"verify", {}},
    {"gc", {{"--dry-run", false}}},
    {"ls", {{"--json", false}}},
    {"rm", {}},
    {"diff", {{"--data", false}}},
    {"demo", {{"--size-mb", true}}},
    {"convert", {{"--to", true}, {"--from", true}, {"--max-shard-size", true}, {"--skip-bytes", false}, {"--overwrite", false},
                 {"--no-fsync", false}, {"--compression", true}, {"--level", true}, {"--buffer-size", true}}},
    {"version", {}},
    {"help", {}},
};

struct Parsed {
    std::vector<std::string> positional;
    std::vector<std::pair<std::string, std::string>> options;  // name, value ("" for flags)
    bool help = false;
    bool has(const char *name) const {
        for (auto &o : options)
            if (o.first == name) return true;
        return false;
    }
    std::string value(const char *name) const {
        std::string v;
        for (auto &o : options)
            if (o.first == name) v = o.second;  // the last one wins, as usual
        return v;
    }
};

size_t edit_distance(const std::string &a, const std::string &b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1])});
            diag = up;
        }
    }
    return row[b.size()];
}

// The candidate closest to `word`, or "" when none is close enough to be a typo of it.
std::string closest(const std::string &word, const std::vector<std::string> &candidates) {
    std::string best;
    size_t best_d = SIZE_MAX;
    for (auto &c : candidates) {
        size_t d = edit_distance(word, c);
        if (d < best_d) best = c, best_d = d;
    }
    return best_d <= 2 && best_d < word.size() ? best : "";
}

int usage_error(const std::string &message) {
    std::fprintf(stderr, "shardpoint: %s\nTry 'shardpoint --help'.\n", message.c_str());
    return 2;
}

// Parses argv[first..] for `cmd`; returns 0 or a usage error's exit status (2).
int parse(const Command &cmd, int argc, char **argv, int first, Parsed &out) {
    bool options_done = false;
    for (int i = first; i < argc; ++i) {
        std::string a = argv[i];
        if (options_done || a.size() < 2 || a[0] != '-') {
            out.positional.push_back(a);
            continue;
        }
        if (a == "--") {
            options_done = true;
            continue;
        }
        if (a == "--help" || a == "-h") {
            out.help = true;
            continue;
        }
        std::string name = a, value;
        size_t eq = a.find('=');
        if (eq != std::string::npos) name = a.substr(0, eq), value = a.substr(eq + 1);
        const Option *opt = nullptr;
        std::vector<std::string> names;
        for (auto &o : cmd.options) {
            names.push_back(o.name);
            if (name == o.name) opt = &o;
        }
        if (!opt) {
            std::string near = closest(name, names);
            return usage_error(std::string(cmd.name) + ": unknown option '" + name + "'" +
                               (near.empty() ? "" : "; did you mean '" + near + "'?"));
        }
        if (opt->takes_value && eq == std::string::npos) {
            if (i + 1 >= argc) return usage_error(std::string(cmd.name) + ": option " + name + " needs a value");
            value = argv[++i];
        } else if (!opt->takes_value && eq != std::string::npos) {
            return usage_error(std::string(cmd.name) + ": option " + name + " takes no value (got '" + value + "')");
        }
        out.options.emplace_back(name, value);
    }
    return 0;
}

// A whole decimal number in [lo, hi], or a usage error naming the option, the text and the range.
int parse_count(const char *cmd, const char *option, const std::string &text, uint64_t lo, uint64_t hi, uint64_t &out) {
    bool digits = !text.empty() && text.size() <= 20;
    for (char c : text) digits = digits && c >= '0' && c <= '9';
    errno = 0;
    uint64_t v = digits ? std::strtoull(text.c_str(), nullptr, 10) : 0;
    if (!digits || errno == ERANGE || v < lo || v > hi)
        return usage_error(std::string(cmd) + ": " + option + " wants a whole number from " + std::to_string(lo) + " to " +
                           std::to_string(hi) + ", got '" + text + "'");
    out = v;
    return 0;
}

// Exactly one DIR argument, or a usage error saying what was given.
int one_dir(const Parsed &p, const char *cmd) {
    if (p.positional.size() == 1) return 0;
    if (p.positional.empty()) return usage_error(std::string(cmd) + ": missing the checkpoint directory");
    std::string extra;
    for (size_t i = 1; i < p.positional.size(); ++i) extra += (i > 1 ? " '" : "'") + p.positional[i] + "'";
    return usage_error(std::string(cmd) + ": expected one directory, got " + std::to_string(p.positional.size()) +
                       " arguments (extra: " + extra + ")");
}

int print_version() {
    std::printf("shardpoint %s (checkpoint formats %d to %d)\n", shardpoint_version_string(), SHARDPOINT_FORMAT_MAJOR,
                SHARDPOINT_FORMAT_MAJOR_MAX);
    return 0;
}

int run(int argc, char **argv) {
    if (argc < 2) {
        std::fputs(usage_text, stderr);
        return 2;
    }
    std::string name = argv[1];
    if (name == "--help" || name == "-h") name = "help";
    if (name == "--version" || name == "-V") name = "version";
    const Command *cmd = nullptr;
    std::vector<std::string> names;
    for (auto &c : commands) {
        names.push_back(c.name);
        if (name == c.name) cmd = &c;
    }
    if (!cmd) {
        if (!name.empty() && name[0] == '-') return usage_error("unknown option '" + name + "' (a command comes first)");
        std::string near = closest(name, names);
        return usage_error("unknown command '" + name + "'" + (near.empty() ? "" : "; did you mean '" + near + "'?"));
    }
    Parsed p;
    if (int rc = parse(*cmd, argc, argv, 2, p)) return rc;
    if (p.help || name == "help") {
        std::fputs(usage_text, stdout);
        return 0;
    }
    if (name == "version") return print_version();
    if (name == "ls") return cli::ls(p.positional, p.has("--json"));
    if (name == "rm") return cli::rm(p.positional);
    if (name == "diff") return cli::diff(p.positional, p.has("--data"));
    if (name == "convert") return run_convert(p.positional, p.options);
    if (int rc = one_dir(p, cmd->name)) return rc;
    const char *dir = p.positional[0].c_str();

    if (name == "inspect") {
        uint64_t limit = UINT64_MAX;
        if (p.has("--limit")) {
            if (p.has("--json")) return usage_error("inspect: --limit lists fewer entries as text; it does not apply to --json");
            if (int rc = parse_count("inspect", "--limit", p.value("--limit"), 0, UINT64_MAX - 1, limit)) return rc;
        }
        return inspect(dir, p.has("--json"), limit);
    }
    if (name == "verify") return verify(dir);
    if (name == "gc") return cli::is_manager_root(dir) ? cli::gc_root(dir, p.has("--dry-run")) : gc(dir, p.has("--dry-run"));
    // demo
    uint64_t mb = 512;
    if (p.has("--size-mb"))
        if (int rc = parse_count("demo", "--size-mb", p.value("--size-mb"), 1, 1u << 20, mb)) return rc;
    try {
        return demo(dir, mb);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "shardpoint demo: %s\n", e.what());
        return 1;
    }
}

}  // namespace

int main(int argc, char **argv) {
    // A closed pipe shows up as EPIPE on write (handled by finish_stdout), not as a fatal signal.
    std::signal(SIGPIPE, SIG_IGN);
    return finish_stdout(run(argc, argv));
}
