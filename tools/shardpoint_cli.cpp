// The shardpoint command-line tool: inspect and verify checkpoints, and a demo that saves a
// sharded model with several ranks and loads it back resharded. Uses only the public C ABI.
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "shardpoint.hpp"

namespace sp = shardpoint::cxx;

namespace {

void print_json_string(const char *s) {
    std::putchar('"');
    for (const unsigned char *p = reinterpret_cast<const unsigned char *>(s); *p; ++p) {
        if (*p == '"' || *p == '\\') std::printf("\\%c", *p);
        else if (*p < 0x20) std::printf("\\u%04x", *p);
        else std::putchar(*p);
    }
    std::putchar('"');
}

std::string human_bytes(double n) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (n >= 1024 && u < 4) n /= 1024, ++u;
    char buf[32];
    std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", n, units[u]);
    return buf;
}

std::string dims_text(const uint64_t *d, uint32_t n) {
    std::string s = "[";
    for (uint32_t i = 0; i < n; ++i) s += (i ? "," : "") + std::to_string(d[i]);
    return s + "]";
}

int inspect(const char *dir, bool json) {
    shardpoint_reader *r = nullptr;
    if (shardpoint_reader_open(&r, dir, nullptr) != 0) {
        std::fprintf(stderr, "shardpoint: %s\n", shardpoint_last_error());
        return 1;
    }
    shardpoint_storage_info info;
    shardpoint_reader_storage_info(r, &info);
    uint64_t n = 0, nmeta = 0;
    shardpoint_reader_entry_count(r, &n);
    shardpoint_reader_metadata_count(r, &nmeta);
    if (json) {
        std::printf("{\"checkpoint_id\":");
        print_json_string(info.checkpoint_id);
        std::printf(",\"save_id\":\"%s\",\"library_version\":\"%s\",\"format\":\"%u.%u\",\"world_size\":%d,"
                    "\"created_unix_ns\":%" PRId64 ",\"file_count\":%" PRIu64 ",\"stored_bytes\":%" PRIu64 ",\"metadata\":{",
                    info.save_id, info.library_version, info.format_major, info.format_minor, info.world_size,
                    info.created_unix_ns, info.file_count, info.total_stored_bytes);
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
        std::printf("checkpoint %s (save %s, format %u.%u, written by shardpoint %s with %d rank%s)\n", info.checkpoint_id,
                    info.save_id, info.format_major, info.format_minor, info.library_version, info.world_size,
                    info.world_size == 1 ? "" : "s");
        std::printf("%" PRIu64 " entries, %" PRIu64 " data files, %s stored\n", n, info.file_count,
                    human_bytes(double(info.total_stored_bytes)).c_str());
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
    for (uint64_t i = 0; i < n; ++i) {
        shardpoint_entry_info e;
        shardpoint_reader_entry_info(r, i, &e);
        bool tensor = e.kind == SHARDPOINT_ENTRY_TENSOR;
        if (e.covered_numel < e.numel) ++partial;
        if (json) {
            std::printf("%s{\"fqn\":", i ? "," : "");
            print_json_string(e.fqn);
            std::printf(",\"kind\":\"%s\"", tensor ? "tensor" : "bytes");
            if (tensor) std::printf(",\"dtype\":\"%s\",\"shape\":%s", shardpoint_dtype_name(e.dtype), dims_text(e.shape, e.ndim).c_str());
            std::printf(",\"nbytes\":%" PRIu64 ",\"stored_bytes\":%" PRIu64 ",\"numel\":%" PRIu64 ",\"covered_numel\":%" PRIu64 ",\"chunks\":[",
                        e.nbytes, e.stored_bytes, e.numel, e.covered_numel);
        } else {
            std::printf("%-40s %-6s %-16s %10s  %" PRIu64 " chunk%s%s\n", e.fqn, tensor ? shardpoint_dtype_name(e.dtype) : "bytes",
                        tensor ? dims_text(e.shape, e.ndim).c_str() : std::to_string(e.nbytes).c_str(),
                        human_bytes(double(e.stored_bytes)).c_str(), e.chunk_count, e.chunk_count == 1 ? "" : "s",
                        e.covered_numel < e.numel ? "  PARTIAL: " : "");
            if (e.covered_numel < e.numel)
                std::printf("    only %" PRIu64 " of %" PRIu64 " elements saved; the rest cannot be loaded\n", e.covered_numel, e.numel);
        }
        for (uint64_t c = 0; c < e.chunk_count; ++c) {
            shardpoint_chunk_info ci;
            shardpoint_reader_chunk_info(r, i, c, &ci);
            const char *transform = ci.transform == SHARDPOINT_TRANSFORM_DEFLATE ? "deflate" : "none";
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
                            human_bytes(double(ci.stored_length)).c_str(), ci.transform ? " deflate" : "");
            }
        }
        if (json) std::printf("]}");
    }
    if (json) std::printf("],\"partial_entries\":%" PRIu64 "}\n", partial);
    else if (partial) std::printf("%" PRIu64 " entr%s only partly saved\n", partial, partial == 1 ? "y is" : "ies are");
    shardpoint_reader_free(r);
    return 0;
}

int verify(const char *dir) {
    shardpoint_reader *r = nullptr;
    int rc = shardpoint_reader_open(&r, dir, nullptr);
    if (rc == 0) rc = shardpoint_reader_verify(r);
    if (rc != 0) {
        std::fprintf(stderr, "shardpoint verify: FAILED: %s: %s\n", shardpoint_error_name(rc), shardpoint_last_error());
        shardpoint_reader_free(r);
        return 1;
    }
    shardpoint_storage_info info;
    shardpoint_reader_storage_info(r, &info);
    uint64_t n = 0, partial = 0;
    shardpoint_reader_entry_count(r, &n);
    for (uint64_t i = 0; i < n; ++i) {
        shardpoint_entry_info e;
        shardpoint_reader_entry_info(r, i, &e);
        if (e.covered_numel < e.numel) {
            ++partial;
            std::printf("note: '%s' is only partly saved (%" PRIu64 " of %" PRIu64 " elements)\n", e.fqn, e.covered_numel, e.numel);
        }
    }
    std::printf("ok: %" PRIu64 " entries, %s in %" PRIu64 " file%s, every checksum matches%s\n", n,
                human_bytes(double(info.total_stored_bytes)).c_str(), info.file_count, info.file_count == 1 ? "" : "s",
                partial ? " (some entries partly saved)" : "");
    shardpoint_reader_free(r);
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

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
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
                        load.add_tensor(t.fqn, SHARDPOINT_DTYPE_F32, {r0, 0}, {nr, t.cols}, loaded[r].back().data());
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
            if (std::memcmp(want.data(), loaded[r][k].data(), want.size() * 4) != 0) ++mismatches[r];
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

int usage() {
    std::fprintf(stderr,
                 "usage: shardpoint inspect [--json] DIR   list entries, dtypes, shapes, chunks, files\n"
                 "       shardpoint verify DIR             read every extent and check every CRC-32\n"
                 "       shardpoint demo [--size-mb N] DIR save with 4 ranks, load with 3 resharded\n"
                 "       shardpoint version\n");
    return 2;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2) return usage();
    std::string cmd = argv[1];
    if (cmd == "version") {
        std::printf("shardpoint %s (format %d)\n", shardpoint_version_string(), SHARDPOINT_FORMAT_MAJOR);
        return 0;
    }
    if (cmd == "inspect") {
        bool json = argc == 4 && std::strcmp(argv[2], "--json") == 0;
        if (argc != 3 && !json) return usage();
        return inspect(argv[argc - 1], json);
    }
    if (cmd == "verify" && argc == 3) return verify(argv[2]);
    if (cmd == "demo") {
        uint64_t mb = 512;
        int i = 2;
        if (argc >= 4 && std::strcmp(argv[2], "--size-mb") == 0) mb = std::strtoull(argv[3], nullptr, 10), i = 4;
        if (argc != i + 1 || mb == 0) return usage();
        try {
            return demo(argv[i], mb);
        } catch (const std::exception &e) {
            std::fprintf(stderr, "demo: %s\n", e.what());
            return 1;
        }
    }
    return usage();
}
