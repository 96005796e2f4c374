// shardpoint_plan_bench: planning time at scale, white box against the C++ core.
//
// Simulates --ranks ranks (default 1024) that each offer a chunk of each of --tensors tensors
// (default 2000): 60% row-sharded, 20% column-sharded, 10% in a 2-D block grid, 10% replicated
// 1-D vectors offered identically by every rank. Measures
//   - save planning: create_global_save_plan over every rank's local SavePlan;
//   - the metadata of the resulting checkpoint: build, encode, decode (what opening a reader costs);
//   - load planning, resharded: every rank of a job of the same size asks for a 2-D block of every
//     matrix on a different grid and for every vector whole; ChunkIndex build for every entry,
//     then create_local_load_plan per rank; and one rank's requests through the real
//     Reader + LoadSession path on a metadata file on disk.
//   - opening hostile metadata: a tensor of 60,000 "staircase" chunks (disjoint, yet each overlaps
//     30,000 others along its rows) against a benign tensor of 60,000 row chunks, and the ratio.
// Target: save planning < 1 s, and one rank's load planning (index build included) < 1 s.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "shardpoint/checkpoint.hpp"
#include "shardpoint/codec.hpp"
#include "shardpoint/metadata_codec.hpp"
#include "shardpoint/planner.hpp"

using namespace shardpoint;

namespace {

double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

[[noreturn]] void die(const std::string &m) {
    std::fprintf(stderr, "shardpoint_plan_bench: %s\n", m.c_str());
    std::exit(2);
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// The metadata of one u8 tensor of `n` one-block chunks whose boxes come from `box_of(i)`.
template <class BoxOf>
std::vector<unsigned char> one_tensor_metadata(uint64_t n, Dims shape, BoxOf box_of) {
    Metadata md;
    md.storage.save_id = "0123456789abcdef0123456789abcdef";
    md.storage.block_size = 1u << 30;
    EntryMeta t;
    t.fqn = "t";
    t.dtype = DType::u8;
    t.shape = std::move(shape);
    uint64_t cursor = 0;
    for (uint64_t i = 0; i < n; ++i) {
        ChunkMeta c;
        c.box = box_of(i);
        c.extent.offset = cursor;
        c.extent.stored_length = c.extent.raw_length = product(c.box.sizes);
        c.extent.crc32 = uint32_t(i);
        c.extent.block_crc32 = {uint32_t(i)};  // one block: the extent's CRC is the block's
        cursor += c.extent.stored_length;
        t.chunks.push_back(std::move(c));
    }
    md.files = {{"data.bin", cursor, 0}};
    md.entries.push_back(std::move(t));
    return encode_metadata(md);
}

double median_decode_seconds(const std::vector<unsigned char> &bytes, int reps) {
    std::vector<double> times;
    for (int k = 0; k < reps; ++k) {
        double t0 = now();
        Metadata md = decode_metadata(bytes.data(), bytes.size());
        times.push_back(now() - t0);
        if (md.entries.size() != 1) die("decoded metadata lost its entry");
    }
    return median(times);
}

enum class Kind { rows, cols, blocks, replicated };

struct Tensor {
    std::string fqn;
    Kind kind;
    Dims shape;
};

std::vector<Tensor> make_tensors(int count) {
    std::vector<Tensor> ts;
    for (int i = 0; i < count; ++i) {
        Tensor t;
        char name[96];
        std::snprintf(name, sizeof name, "model.layers.%d.block.param_%d.weight", i / 10, i);
        t.fqn = name;
        int k = i % 10;
        t.kind = k < 6 ? Kind::rows : k < 8 ? Kind::cols : k < 9 ? Kind::blocks : Kind::replicated;
        if (t.kind == Kind::replicated) t.shape = {8192};
        else t.shape = {8192 + 1024 * uint64_t(i % 4), 8192};
        ts.push_back(std::move(t));
    }
    return ts;
}

std::pair<uint64_t, uint64_t> split(uint64_t len, uint64_t k, uint64_t n) {
    uint64_t a = len * k / n, b = len * (k + 1) / n;
    return {a, b - a};
}

// A grid of g0 x g1 = world cells, as square as the divisors of `world` allow.
std::pair<int, int> grid(int world) {
    int g0 = 1;
    for (int d = 1; d * d <= world; ++d)
        if (world % d == 0) g0 = d;
    return {g0, world / g0};
}

Box block_box(const Dims &shape, int rank, int world) {
    auto [g0, g1] = grid(world);
    auto [r0, rn] = split(shape[0], uint64_t(rank / g1), uint64_t(g0));
    auto [c0, cn] = split(shape[1], uint64_t(rank % g1), uint64_t(g1));
    return Box{{r0, c0}, {rn, cn}};
}

// The chunk rank `rank` saves.
Box saved_box(const Tensor &t, int rank, int world) {
    switch (t.kind) {
        case Kind::rows: {
            auto [a, n] = split(t.shape[0], uint64_t(rank), uint64_t(world));
            return Box{{a, 0}, {n, t.shape[1]}};
        }
        case Kind::cols: {
            auto [a, n] = split(t.shape[1], uint64_t(rank), uint64_t(world));
            return Box{{0, a}, {t.shape[0], n}};
        }
        case Kind::blocks: return block_box(t.shape, rank, world);
        case Kind::replicated: return Box{{0}, t.shape};
    }
    return {};
}

// The box rank `rank` of the loading job asks for: a block of every matrix on a grid transposed
// against the saving one (so row- and column-sharded tensors are resharded), vectors whole.
Box requested_box(const Tensor &t, int rank, int world) {
    if (t.shape.size() == 1) return Box{{0}, t.shape};
    auto [g0, g1] = grid(world);
    auto [r0, rn] = split(t.shape[0], uint64_t(rank % g0), uint64_t(g0));
    auto [c0, cn] = split(t.shape[1], uint64_t(rank / g0), uint64_t(g1));
    return Box{{r0, c0}, {rn, cn}};
}

struct Options {
    int ranks = 1024;
    int tensors = 2000;
    int reps = 3;
    int load_ranks = -1;  // ranks whose load plans are built (-1: all)
    std::string dir;
    std::string json;
};

}  // namespace

int main(int argc, char **argv) {
    Options o;
    const char *tmp = std::getenv("TMPDIR");
    o.dir = tmp && *tmp ? tmp : "/var/tmp";
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) die("missing value after " + a);
            return argv[++i];
        };
        if (a == "--ranks") o.ranks = std::atoi(value().c_str());
        else if (a == "--tensors") o.tensors = std::atoi(value().c_str());
        else if (a == "--reps") o.reps = std::atoi(value().c_str());
        else if (a == "--load-ranks") o.load_ranks = std::atoi(value().c_str());
        else if (a == "--dir") o.dir = value();
        else if (a == "--json") o.json = value();
        else {
            std::printf("usage: shardpoint_plan_bench [--ranks N] [--tensors N] [--reps N] [--load-ranks N] [--dir DIR] [--json FILE]\n");
            return a == "-h" || a == "--help" ? 0 : 2;
        }
    }
    if (o.ranks < 1 || o.tensors < 1 || o.reps < 1) die("--ranks, --tensors and --reps must be >= 1");
    const int world = o.ranks;
    const int load_ranks = o.load_ranks < 0 || o.load_ranks > world ? world : o.load_ranks;
    std::vector<Tensor> tensors = make_tensors(o.tensors);

    // ---- local plans, as the coordinator holds them after gathering
    double t0 = now();
    std::vector<SavePlan> plans(world);
    for (int r = 0; r < world; ++r) {
        plans[r].items.reserve(tensors.size());
        for (const Tensor &t : tensors) {
            WriteItem w;
            Box b = saved_box(t, r, world);
            w.index = MetadataIndex{t.fqn, b.offsets};
            w.kind = EntryKind::tensor;
            w.dtype = DType::bf16;
            w.global_shape = t.shape;
            w.sizes = b.sizes;
            plans[r].items.push_back(std::move(w));
        }
    }
    const double build_plans = now() - t0;
    uint64_t offers = 0;
    for (auto &p : plans) offers += p.items.size();

    // ---- save planning
    std::vector<double> save_times;
    GlobalSavePlan global;
    for (int k = 0; k < o.reps; ++k) {
        t0 = now();
        global = create_global_save_plan(plans);
        save_times.push_back(now() - t0);
    }
    uint64_t writes = 0;
    for (auto &w : global.writes) writes += w.size();
    uint64_t replicated = 0;
    for (auto &t : tensors) replicated += t.kind == Kind::replicated;
    const uint64_t expect = uint64_t(world) * (tensors.size() - replicated) + replicated;
    if (writes != expect) die("global plan has " + std::to_string(writes) + " writes, expected " + std::to_string(expect));
    // Printed now: a scale whose metadata no reader accepts (below) still reports its planning.
    std::printf("save planning, %d ranks x %d tensors (%" PRIu64 " offers): %.3f s (median of %d)\n", world, o.tensors,
                offers, median(save_times), o.reps);
    std::fflush(stdout);

    // ---- the resulting metadata
    t0 = now();
    Metadata md;
    md.storage.checkpoint_id = "plan-bench";
    md.storage.save_id = "0123456789abcdef0123456789abcdef";
    md.storage.world_size = uint32_t(world);
    md.storage.library_version = library_version();
    std::map<std::string, EntryMeta> entries;
    for (int r = 0; r < world; ++r) {
        uint64_t cursor = 0;
        if (global.writes[r].empty()) continue;
        const uint32_t file = uint32_t(md.files.size());
        for (uint32_t k : global.writes[r]) {
            const WriteItem &w = plans[r].items[k];
            ChunkMeta c;
            c.box = w.box();
            Extent &e = c.extent;
            e.file = file;
            cursor = (cursor + 4095) / 4096 * 4096;
            e.offset = cursor;
            e.stored_length = e.raw_length = w.nbytes();
            // Made-up block CRCs, and the extent CRC they combine to (which decoding checks).
            e.block_crc32.assign((e.stored_length + md.storage.block_size - 1) / md.storage.block_size, uint32_t(cursor * 2654435761u));
            e.crc32 = 0;
            for (size_t b = 0; b < e.block_crc32.size(); ++b)
                e.crc32 = crc32_combine_of(e.crc32, e.block_crc32[b], std::min<uint64_t>(md.storage.block_size, e.stored_length - b * md.storage.block_size));
            e.writer_rank = uint32_t(r);
            cursor += e.stored_length;
            auto it = entries.find(w.index.fqn);
            if (it == entries.end()) {
                EntryMeta em;
                em.fqn = w.index.fqn;
                em.dtype = w.dtype;
                em.shape = w.global_shape;
                it = entries.emplace(em.fqn, std::move(em)).first;
            }
            it->second.chunks.push_back(std::move(c));
        }
        char name[80];
        std::snprintf(name, sizeof name, "data-%s-r%05d.bin", md.storage.save_id.c_str(), r);
        md.files.push_back(DataFileMeta{name, cursor, uint32_t(r)});
    }
    for (auto &kv : entries) {
        std::sort(kv.second.chunks.begin(), kv.second.chunks.end(),
                  [](const ChunkMeta &a, const ChunkMeta &b) { return a.box.offsets < b.box.offsets; });
        md.entries.push_back(std::move(kv.second));
    }
    entries.clear();
    const double build_md = now() - t0;
    uint64_t chunks = 0;
    for (auto &e : md.entries) chunks += e.chunks.size();

    std::vector<double> enc_times, dec_times;
    std::vector<unsigned char> bytes;
    for (int k = 0; k < o.reps; ++k) {
        t0 = now();
        try {
            bytes = encode_metadata(md);
        } catch (const Error &e) {
            die(std::string(e.what()) + " (try fewer --ranks or --tensors)");
        }
        enc_times.push_back(now() - t0);
        t0 = now();
        Metadata back = decode_metadata(bytes.data(), bytes.size());
        dec_times.push_back(now() - t0);
        if (back.entries.size() != md.entries.size()) die("decoded metadata lost entries");
    }
    const uint64_t md_bytes = bytes.size();

    // ---- load planning, resharded, for every rank of the loading job
    t0 = now();
    std::vector<std::unique_ptr<ChunkIndex>> indexes;
    for (const EntryMeta &e : md.entries) indexes.push_back(std::make_unique<ChunkIndex>(e));
    const double index_build = now() - t0;
    auto index_of = [&](const EntryMeta *e) -> const ChunkIndex & { return *indexes[size_t(e - md.entries.data())]; };
    std::vector<const EntryMeta *> entry_of;  // tensors[i] -> its entry
    for (const Tensor &t : tensors) {
        const EntryMeta *e = md.find(t.fqn);
        if (!e) die("entry " + t.fqn + " missing");
        entry_of.push_back(e);
    }
    static unsigned char sink;  // requests need a destination; nothing is read
    std::vector<double> rank_times;
    uint64_t items_total = 0, items_max = 0;
    for (int k = 0; k < load_ranks; ++k) {
        const int r = int(uint64_t(k) * uint64_t(world) / uint64_t(load_ranks));
        double a = now();
        LoadPlan plan;
        plan.requests.reserve(tensors.size());
        for (size_t i = 0; i < tensors.size(); ++i) plan.requests.push_back(ReadRequest{entry_of[i], requested_box(tensors[i], r, world), &sink, {}});
        create_local_load_plan(plan, index_of);
        rank_times.push_back(now() - a);
        items_total += plan.items.size();
        items_max = std::max<uint64_t>(items_max, plan.items.size());
    }
    const double load_all = [&] {
        double s = 0;
        for (double t : rank_times) s += t;
        return s;
    }();
    const double rank_max = *std::max_element(rank_times.begin(), rank_times.end());

    // ---- one rank through the real path: metadata file on disk, Reader, LoadSession.
    std::string tmpl = o.dir + "/shardpoint-plan-bench-XXXXXX";
    std::vector<char> tb(tmpl.begin(), tmpl.end());
    tb.push_back(0);
    if (!::mkdtemp(tb.data())) die("mkdtemp in " + o.dir + " failed");
    const std::string dir = tb.data();
    {
        std::ofstream f(dir + "/" + metadata_file_name, std::ios::binary);
        f.write(reinterpret_cast<const char *>(bytes.data()), std::streamsize(bytes.size()));
        if (!f) die("cannot write metadata file");
    }
    bytes = {};
    t0 = now();
    auto reader = std::make_unique<Reader>(dir, LoadOptions{});
    const double open_reader = now() - t0;
    t0 = now();
    {
        LoadSession session(*reader, nullptr);
        for (const Tensor &t : tensors) {
            Box b = requested_box(t, world / 2 + 1, world);
            session.add_tensor(t.fqn, DType::bf16, uint32_t(t.shape.size()), b.offsets, b.sizes, &sink, {});
        }
    }
    const double session_plan = now() - t0;
    reader.reset();
    std::remove((dir + "/" + metadata_file_name).c_str());
    ::rmdir(dir.c_str());

    // ---- hostile metadata: the staircase against rows of the same count
    const uint64_t stairs_n = 60000, stairs_k = stairs_n / 2;
    const auto stairs_md = one_tensor_metadata(stairs_n, {stairs_n + stairs_k, stairs_n},
                                               [&](uint64_t i) { return Box{{i, i}, {stairs_k, 1}}; });
    const auto rows_md = one_tensor_metadata(stairs_n, {stairs_n, 30}, [](uint64_t i) { return Box{{i, 0}, {1, 30}}; });
    const double stairs_dec = median_decode_seconds(stairs_md, o.reps), rows_dec = median_decode_seconds(rows_md, o.reps);

    // ---- report
    const double save_plan = median(save_times), enc = median(enc_times), dec = median(dec_times);
    const double one_rank = index_build + rank_max;
    std::printf("shardpoint_plan_bench: %d ranks x %d tensors (%" PRIu64 " offered chunks; %" PRIu64
                " written after deduplication), median of %d\n\n",
                world, o.tensors, offers, writes, o.reps);
    std::printf("%-62s %10s\n", "step", "seconds");
    std::printf("%-62s %10.3f\n", "build the local SavePlans (setup, not planning)", build_plans);
    std::printf("%-62s %10.3f\n", "save planning: create_global_save_plan", save_plan);
    std::printf("%-62s %10.3f\n", "metadata: build from the global plan", build_md);
    std::printf("%-62s %10.3f   (%" PRIu64 " entries, %" PRIu64 " chunks, %.1f MiB, %.1f B/chunk)\n", "metadata: encode",
                enc, uint64_t(md.entries.size()), chunks, double(md_bytes) / (1 << 20), double(md_bytes) / double(chunks ? chunks : 1));
    std::printf("%-62s %10.3f\n", "metadata: decode and validate", dec);
    std::printf("%-62s %10.3f\n", "metadata: encode + decode", enc + dec);
    std::printf("%-62s %10.3f\n", "load: ChunkIndex for every entry", index_build);
    std::printf("%-62s %10.4f   (max %.4f; %" PRIu64 " ReadItems at most)\n", "load: one rank's resharded plan (median)",
                median(rank_times), rank_max, items_max);
    std::printf("%-62s %10.3f   (%d ranks, %" PRIu64 " ReadItems)\n", "load: every rank's plan, one after another", load_all,
                load_ranks, items_total);
    std::printf("%-62s %10.3f\n", "load, real path: open Reader (read + decode metadata file)", open_reader);
    std::printf("%-62s %10.3f\n", "load, real path: LoadSession.add_tensor x all tensors, 1 rank", session_plan);
    std::printf("%-62s %10.3f   (%.1f MiB)\n", "hostile metadata: decode 60,000 staircase chunks", stairs_dec,
                double(stairs_md.size()) / (1 << 20));
    std::printf("%-62s %10.3f   (%.1f MiB)\n", "hostile metadata: decode 60,000 row chunks", rows_dec,
                double(rows_md.size()) / (1 << 20));
    std::printf("%-62s %10.2f\n", "hostile metadata: staircase / rows (ratio)", stairs_dec / rows_dec);
    std::printf("\n%-62s %10s %8s  %s\n", "target", "seconds", "needed", "result");
    const bool save_ok = save_plan < 1.0, load_ok = one_rank < 1.0;
    std::printf("%-62s %10.3f %8s  %s\n", "save planning", save_plan, "< 1", save_ok ? "PASS" : "FAIL");
    std::printf("%-62s %10.3f %8s  %s\n", "load planning, one rank (index build + slowest rank)", one_rank, "< 1",
                load_ok ? "PASS" : "FAIL");

    if (!o.json.empty()) {
        FILE *f = std::fopen(o.json.c_str(), "w");
        if (!f) die("cannot write " + o.json);
        std::fprintf(f,
                     "{\n  \"tool\": \"shardpoint_plan_bench\",\n  \"ranks\": %d,\n  \"tensors\": %d,\n  \"offers\": %" PRIu64
                     ",\n  \"writes\": %" PRIu64 ",\n  \"chunks\": %" PRIu64 ",\n  \"metadata_bytes\": %" PRIu64 ",\n"
                     "  \"seconds\": {\"build_local_plans\": %.6f, \"save_planning\": %.6f, \"metadata_build\": %.6f, "
                     "\"metadata_encode\": %.6f, \"metadata_decode\": %.6f, \"index_build\": %.6f, \"load_plan_rank_median\": %.6f, "
                     "\"load_plan_rank_max\": %.6f, \"load_plan_all_ranks\": %.6f, \"reader_open\": %.6f, "
                     "\"session_plan_one_rank\": %.6f, \"decode_staircase_60k\": %.6f, \"decode_rows_60k\": %.6f},\n"
                     "  \"load_ranks\": %d,\n  \"read_items_total\": %" PRIu64 ",\n"
                     "  \"targets\": [{\"name\": \"save planning\", \"value\": %.6f, \"needed\": 1, \"pass\": %s},\n"
                     "              {\"name\": \"load planning, one rank\", \"value\": %.6f, \"needed\": 1, \"pass\": %s}]\n}\n",
                     world, o.tensors, offers, writes, chunks, md_bytes, build_plans, save_plan, build_md, enc, dec, index_build,
                     median(rank_times), rank_max, load_all, open_reader, session_plan, stairs_dec, rows_dec, load_ranks, items_total, save_plan,
                     save_ok ? "true" : "false", one_rank, load_ok ? "true" : "false");
        std::fclose(f);
    }
    return 0;
}
