// Multi-process tests over MPI: real processes started by mpirun, one rank each.
//
//   save DIR        (4 ranks) saves the model: 2-D blocks, rows, replicated, rank-private
//                   tensors, a partly saved tensor and bytes entries; checks file sizes
//   load-rows DIR   (3 ranks) loads every tensor row-sharded and compares every byte
//   load-cols DIR   (2 ranks) loads 2-D tensors column-sharded (1-D ones by rows)
//   load-whole DIR  (1 rank)  loads everything whole and verifies every checksum
//   shared-open DIR (3 ranks) as load-rows, with the metadata read by rank 0 alone (run under
//                   the fault shim that fails metadata opens on ranks 1 and 2)
//   bad-load DIR    (3 ranks) bad requests get their codes; a rank reading damaged bytes fails
//                   with SHARDPOINT_ECHECKSUM, the others with SHARDPOINT_ERANK naming it
//   rank-failure    (4 ranks) rank 2's write fails (file size limit): every rank reports it,
//                   nothing is committed, the previous checkpoint stays intact
//   conflict        (4 ranks) incompatible offers: SHARDPOINT_ECONFLICT on every rank
//
// Every rank counts its failed checks; the job exits 0 only when no rank failed any.
#include <dirent.h>
#include <mpi.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "shardpoint.hpp"
#include "shardpoint_mpi.h"

namespace sp = shardpoint::cxx;

namespace {

int g_rank = 0, g_size = 1;
int g_failures = 0;

void check(bool ok, const std::string &what) {
    if (!ok) {
        ++g_failures;
        std::fprintf(stderr, "[rank %d] FAIL: %s\n", g_rank, what.c_str());
    }
}

bool contains(const std::string &s, const std::string &needle) { return s.find(needle) != std::string::npos; }

// Runs `body`, expecting it to fail with `code` and a message containing each needle.
void expect_error(const std::string &what, int code, const std::vector<std::string> &needles, const std::function<void()> &body) {
    try {
        body();
        check(false, what + ": succeeded, expected " + shardpoint_error_name(code));
    } catch (const sp::Error &e) {
        check(e.code() == code, what + ": got " + e.what() + ", expected " + shardpoint_error_name(code));
        for (auto &n : needles) check(contains(e.what(), n), what + ": message '" + e.what() + "' lacks '" + n + "'");
    }
}

// --- the model -------------------------------------------------------------------------------

enum class Sharding { blocks2d, rows, replicated, rank_private, half_rows };

struct TensorSpec {
    std::string fqn;
    int32_t dtype;
    sp::Dims shape;
    Sharding sharding;
};

enum class BytesSharding { rank0, per_rank, replicated };

struct BytesSpec {
    std::string fqn;
    uint64_t length;
    BytesSharding sharding;
};

constexpr int kSaveWorld = 4;

std::vector<TensorSpec> tensor_specs() {
    std::vector<TensorSpec> t = {
        {"model.blocks", SHARDPOINT_DTYPE_F32, {64, 96}, Sharding::blocks2d},
        {"model.rows", SHARDPOINT_DTYPE_BF16, {101, 40}, Sharding::rows},
        {"model.rep", SHARDPOINT_DTYPE_F64, {256, 512}, Sharding::replicated},  // 1 MiB
        {"model.step", SHARDPOINT_DTYPE_I64, {}, Sharding::replicated},
        {"model.half", SHARDPOINT_DTYPE_U16, {40, 6}, Sharding::half_rows},
    };
    for (int r = 0; r < kSaveWorld; ++r)
        t.push_back({"private." + std::to_string(r), SHARDPOINT_DTYPE_I32, {uint64_t(1000 + r)}, Sharding::rank_private});
    return t;
}

std::vector<BytesSpec> bytes_specs() {
    std::vector<BytesSpec> b = {{"optim.state", 5000, BytesSharding::rank0}, {"shared.config", 300, BytesSharding::replicated}};
    for (int r = 0; r < kSaveWorld; ++r) b.push_back({"rng." + std::to_string(r), uint64_t(32 + r), BytesSharding::per_rank});
    return b;
}

uint64_t numel(const sp::Dims &d) {
    uint64_t n = 1;
    for (auto x : d) n *= x;
    return n;
}

uint64_t fnv1a(const std::string &s) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
}

// Every byte of an entry's whole image is a function of (save seed, fqn, position).
std::vector<unsigned char> image(const std::string &fqn, uint64_t nbytes, uint64_t seed) {
    std::vector<unsigned char> v(nbytes);
    const uint64_t s = fnv1a(fqn) ^ (seed * 0x9E3779B97F4A7C15ull);
    for (uint64_t k = 0; k < nbytes; ++k) {
        uint64_t x = (k + 1) * 0xBF58476D1CE4E5B9ull ^ s;
        x ^= x >> 31;
        x *= 0x94D049BB133111EBull;
        v[k] = uint8_t(x ^ (x >> 29));
    }
    return v;
}

std::vector<unsigned char> image(const TensorSpec &t, uint64_t seed) {
    return image(t.fqn, numel(t.shape) * shardpoint_dtype_size(t.dtype), seed);
}

sp::Strides c_strides(const sp::Dims &shape) {
    sp::Strides s(shape.size());
    int64_t acc = 1;
    for (size_t d = shape.size(); d-- > 0;) s[d] = acc, acc *= int64_t(shape[d]);
    return s;
}

uint64_t first_element(const sp::Dims &shape, const sp::Dims &offsets) {
    auto s = c_strides(shape);
    uint64_t e = 0;
    for (size_t d = 0; d < shape.size(); ++d) e += offsets[d] * uint64_t(s[d]);
    return e;
}

// The box's bytes in C order, cut out of the whole image.
std::vector<unsigned char> box_bytes(const std::vector<unsigned char> &img, const sp::Dims &shape, size_t isz,
                                     const sp::Dims &off, const sp::Dims &sizes) {
    std::vector<unsigned char> out(numel(sizes) * isz);
    auto s = c_strides(shape);
    std::vector<uint64_t> idx(sizes.size(), 0);
    for (uint64_t k = 0; k < numel(sizes); ++k) {
        uint64_t e = 0;
        for (size_t d = 0; d < sizes.size(); ++d) e += (off[d] + idx[d]) * uint64_t(s[d]);
        std::memcpy(out.data() + k * isz, img.data() + e * isz, isz);
        for (size_t d = sizes.size(); d-- > 0;) {
            if (++idx[d] < sizes[d]) break;
            idx[d] = 0;
        }
    }
    return out;
}

std::pair<uint64_t, uint64_t> part(uint64_t n, int r, int w) {
    uint64_t lo = uint64_t(r) * n / uint64_t(w), hi = uint64_t(r + 1) * n / uint64_t(w);
    return {lo, hi - lo};
}

struct Chunk {
    sp::Dims offsets, sizes;
};

// The chunks rank r of kSaveWorld offers of a tensor.
std::vector<Chunk> offered(const TensorSpec &t, int r) {
    sp::Dims zero(t.shape.size(), 0);
    switch (t.sharding) {
        case Sharding::replicated: return {{zero, t.shape}};
        case Sharding::rank_private: return t.fqn == "private." + std::to_string(r) ? std::vector<Chunk>{{zero, t.shape}} : std::vector<Chunk>{};
        case Sharding::rows: {
            auto [lo, n] = part(t.shape[0], r, kSaveWorld);
            return {{{lo, 0}, {n, t.shape[1]}}};
        }
        case Sharding::half_rows: {  // only rows [0, shape[0] / 2) are ever saved, by ranks 0 and 1
            if (r > 1) return {};
            auto [lo, n] = part(t.shape[0] / 2, r, 2);
            return {{{lo, 0}, {n, t.shape[1]}}};
        }
        case Sharding::blocks2d: {  // a 2 x 2 grid
            auto [r0, nr] = part(t.shape[0], r / 2, 2);
            auto [c0, nc] = part(t.shape[1], r % 2, 2);
            return {{{r0, c0}, {nr, nc}}};
        }
    }
    return {};
}

// Offers this rank's part of the model; the images must outlive the commit.
void offer_model(sp::Save &save, int r, uint64_t seed, std::vector<std::vector<unsigned char>> &keep) {
    for (const TensorSpec &t : tensor_specs()) {
        keep.push_back(image(t, seed));
        const size_t isz = shardpoint_dtype_size(t.dtype);
        for (const Chunk &c : offered(t, r))
            save.add_tensor(t.fqn, t.dtype, t.shape, c.offsets, c.sizes, keep.back().data() + first_element(t.shape, c.offsets) * isz,
                            c_strides(t.shape));
    }
    for (const BytesSpec &b : bytes_specs()) {
        bool mine = b.sharding == BytesSharding::replicated || (b.sharding == BytesSharding::rank0 && r == 0) ||
                    (b.sharding == BytesSharding::per_rank && b.fqn == "rng." + std::to_string(r));
        if (!mine) continue;
        keep.push_back(image(b.fqn, b.length, seed));
        save.add_bytes(b.fqn, keep.back().data(), b.length);
    }
    save.set_metadata("step", "500");
    save.set_metadata("seed", std::to_string(seed));
}

// Bytes the model stores when every chunk is written exactly once.
uint64_t unique_model_bytes() {
    uint64_t n = 0;
    for (const TensorSpec &t : tensor_specs()) {
        uint64_t elems = t.sharding == Sharding::half_rows ? (t.shape[0] / 2) * t.shape[1] : numel(t.shape);
        n += elems * shardpoint_dtype_size(t.dtype);
    }
    for (const BytesSpec &b : bytes_specs()) n += b.length;
    return n;
}

sp::Comm mpi_comm() {
    shardpoint_comm *raw = nullptr;
    sp::check(shardpoint_comm_new_mpi(&raw, MPI_COMM_WORLD));
    return sp::Comm(raw);
}

void save_model(const std::string &dir, uint64_t seed, bool overwrite, sp::Comm &comm) {
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    // model.half is saved half on purpose.
    o.flags = (overwrite ? SHARDPOINT_SAVE_OVERWRITE : 0) | SHARDPOINT_SAVE_ALLOW_PARTIAL;
    o.io_threads = 1;  // one core per rank is plenty here, and the machine is small
    sp::Save save(dir, &comm, &o);
    std::vector<std::vector<unsigned char>> keep;
    offer_model(save, comm.rank(), seed, keep);
    save.commit();
}

std::vector<std::string> list_dir(const std::string &dir) {
    std::vector<std::string> names;
    for (auto &e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

std::vector<unsigned char> read_file(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<unsigned char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A fresh directory made by rank 0 and shared with every rank.
std::string shared_temp_dir() {
    char path[4096] = {0};
    if (g_rank == 0) {
        const char *base = getenv("TMPDIR");
        std::snprintf(path, sizeof path, "%s/shardpoint-mpi-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(path)) MPI_Abort(MPI_COMM_WORLD, 3);
    }
    MPI_Bcast(path, sizeof path, MPI_CHAR, 0, MPI_COMM_WORLD);
    return path;
}

void remove_shared_dir(const std::string &dir) {
    MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank == 0) std::filesystem::remove_all(dir);
}

// --- loading and comparing -------------------------------------------------------------------

enum class Split { rows, cols, whole };

// Loads, collectively over `comm`, this rank's part of every entry of the model saved with
// `seed`, and compares every byte with the generator.
void load_and_compare(const std::string &dir, sp::Comm &comm, Split split, uint64_t seed, bool shared_open = false) {
    const int r = comm.rank(), w = comm.size();
    sp::Reader reader = shared_open ? sp::Reader(dir, comm) : sp::Reader(dir);
    check(reader.metadata("step") == "500", "user metadata 'step'");
    check(reader.metadata("seed") == std::to_string(seed), "user metadata 'seed' (which save is this?)");
    auto entries = reader.entries();
    check(entries.size() == tensor_specs().size() + bytes_specs().size(), "entry count " + std::to_string(entries.size()));

    sp::Load load(reader, &comm);
    struct Pending {
        std::string what;
        std::vector<unsigned char> got, want;
    };
    std::vector<Pending> pending;
    pending.reserve(64);
    for (const TensorSpec &t : tensor_specs()) {
        const size_t isz = shardpoint_dtype_size(t.dtype);
        sp::Dims off(t.shape.size(), 0), sizes = t.shape;
        if (t.sharding == Sharding::half_rows) sizes[0] = t.shape[0] / 2;  // only what was saved
        if (split == Split::rows && !t.shape.empty()) std::tie(off[0], sizes[0]) = part(sizes[0], r, w);
        if (split == Split::cols && t.shape.size() >= 2) std::tie(off[1], sizes[1]) = part(t.shape[1], r, w);
        if (split == Split::cols && t.shape.size() == 1) std::tie(off[0], sizes[0]) = part(t.shape[0], r, w);
        auto img = image(t, seed);
        pending.push_back({t.fqn, std::vector<unsigned char>(numel(sizes) * isz, 0xEE), box_bytes(img, t.shape, isz, off, sizes)});
        load.add_tensor(t.fqn, t.dtype, off, sizes, pending.back().got.data(), pending.back().got.size());
    }
    for (const BytesSpec &b : bytes_specs()) {
        pending.push_back({b.fqn, std::vector<unsigned char>(b.length, 0xEE), image(b.fqn, b.length, seed)});
        load.add_bytes(b.fqn, pending.back().got.data(), b.length);
    }
    load.execute();
    for (auto &p : pending) check(p.got == p.want, p.what + ": loaded bytes differ from the generator");
}

// --- commands --------------------------------------------------------------------------------

void cmd_save(const std::string &dir) {
    sp::Comm comm = mpi_comm();
    save_model(dir, 1, true, comm);
    MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank != 0) return;
    sp::Reader reader(dir);
    shardpoint_storage_info info;
    sp::check(shardpoint_reader_storage_info(reader.get(), &info));
    check(info.world_size == kSaveWorld, "world size");
    check(info.file_count == kSaveWorld, "every rank wrote a data file: " + std::to_string(info.file_count));
    // Every chunk stored exactly once.
    check(info.total_stored_bytes == unique_model_bytes(),
          "stored " + std::to_string(info.total_stored_bytes) + " bytes, the model has " + std::to_string(unique_model_bytes()));
    uint64_t extents = 0;
    for (auto &e : reader.entries()) {
        extents += e.chunk_count;
        if (e.fqn == "model.rep" || e.fqn == "model.step" || e.fqn == "shared.config")
            check(e.chunk_count == 1, e.fqn + " (replicated) has " + std::to_string(e.chunk_count) + " chunks");
        if (e.fqn == "model.half") check(e.covered_numel * 2 == e.numel, "model.half is half saved");
    }
    // The files on disk: the unique bytes plus alignment padding, far less than one more copy of
    // the 1 MiB replicated tensor.
    uint64_t on_disk = 0;
    for (auto &name : list_dir(dir)) {
        if (name.rfind("data-", 0) != 0) continue;
        struct stat st;
        stat((dir + "/" + name).c_str(), &st);
        on_disk += uint64_t(st.st_size);
    }
    check(on_disk >= unique_model_bytes() && on_disk <= unique_model_bytes() + extents * info.alignment,
          "data files hold " + std::to_string(on_disk) + " bytes for " + std::to_string(unique_model_bytes()) + " unique bytes");
    check(on_disk < unique_model_bytes() + (1u << 20), "the replicated tensor was written more than once");
    std::printf("saved %" PRIu64 " unique bytes in %" PRIu64 " files (%" PRIu64 " bytes on disk)\n", unique_model_bytes(),
                info.file_count, on_disk);
}

void cmd_load(const std::string &dir, Split split) {
    sp::Comm comm = mpi_comm();
    load_and_compare(dir, comm, split, 1);
    if (split == Split::whole) {
        sp::Reader reader(dir);
        reader.verify();
    }
}

// Run with the fault shim on every rank but 0, failing its first two opens of the metadata file:
// a plain open proves the fault is armed; the shared open must then not touch the file at all.
void cmd_shared_open(const std::string &dir) {
    sp::Comm comm = mpi_comm();
    if (g_rank != 0)
        expect_error("plain open with the metadata file failing", SHARDPOINT_EIO, {}, [&] { sp::Reader reader(dir); });
    load_and_compare(dir, comm, Split::rows, 1, true);
    // Rank 0's failure is every rank's, with rank 0's code.
    std::string missing = dir + "-no-such-checkpoint";
    expect_error("shared open of a missing checkpoint", SHARDPOINT_ENOTFOUND,
                 {g_rank == 0 ? "no checkpoint at" : "rank 0 reading the metadata: no checkpoint at"},
                 [&] { sp::Reader reader(missing, comm); });
}

void cmd_bad_load(const std::string &dir) {
    sp::Comm comm = mpi_comm();
    {
        sp::Reader reader(dir);
        sp::Load load(reader, &comm);
        std::vector<unsigned char> buf(1 << 20);
        expect_error("unknown tensor", SHARDPOINT_ENOTFOUND, {"'no.such'"},
                     [&] { load.add_tensor("no.such", SHARDPOINT_DTYPE_F32, {0}, {1}, buf.data(), 4); });
        expect_error("unknown blob", SHARDPOINT_ENOTFOUND, {"'no.blob'"}, [&] { load.add_bytes("no.blob", buf.data(), 10); });
        expect_error("tensor request on bytes", SHARDPOINT_EKIND, {"'optim.state'"},
                     [&] { load.add_tensor("optim.state", SHARDPOINT_DTYPE_U8, {0}, {10}, buf.data(), 10); });
        expect_error("bytes request on tensor", SHARDPOINT_EKIND, {"'model.rows'"}, [&] { load.add_bytes("model.rows", buf.data(), buf.size()); });
        expect_error("wrong dtype", SHARDPOINT_EDTYPE, {"'model.blocks'", "f32", "f64"},
                     [&] { load.add_tensor("model.blocks", SHARDPOINT_DTYPE_F64, {0, 0}, {1, 1}, buf.data(), 8); });
        expect_error("wrong ndim", SHARDPOINT_ESHAPE, {"'model.blocks'"},
                     [&] { load.add_tensor("model.blocks", SHARDPOINT_DTYPE_F32, {0, 0, 0}, {1, 1, 1}, buf.data(), 4); });
        expect_error("box outside", SHARDPOINT_ESHAPE, {"'model.blocks'", "outside"},
                     [&] { load.add_tensor("model.blocks", SHARDPOINT_DTYPE_F32, {60, 0}, {5, 1}, buf.data(), 20); });
        expect_error("uncovered box", SHARDPOINT_EUNCOVERED, {"'model.half'"},
                     [&] { load.add_tensor("model.half", SHARDPOINT_DTYPE_U16, {19, 0}, {2, 6}, buf.data(), 24); });
        expect_error("small bytes buffer", SHARDPOINT_ERANGE, {"'optim.state'", "5000"}, [&] { load.add_bytes("optim.state", buf.data(), 4999); });
        // The failed requests left nothing behind: the collective load still runs.
        std::vector<unsigned char> step(8);
        load.add_tensor("model.step", SHARDPOINT_DTYPE_I64, {}, {}, step.data(), step.size());
        load.execute();
        check(step == image("model.step", 8, 1), "model.step after failed requests");
        expect_error("execute twice", SHARDPOINT_ESTATE, {}, [&] { load.execute(); });
    }
    {
        shardpoint_load_options o = SHARDPOINT_LOAD_OPTIONS_INIT;
        o.flags = SHARDPOINT_LOAD_ALLOW_PARTIAL;
        sp::Reader reader(dir, &o);
        shardpoint_load *raw = nullptr;
        sp::check(shardpoint_load_new(&raw, reader.get(), comm.get()));
        char buf[16];
        check(shardpoint_load_add_bytes(raw, "no.blob", buf, sizeof buf) == SHARDPOINT_OK, "ALLOW_PARTIAL skips a missing blob");
        uint64_t skipped = 0;
        shardpoint_load_skipped_count(raw, &skipped);
        check(skipped == 1, "one skipped request");
        check(shardpoint_load_execute(raw) == SHARDPOINT_OK, std::string("partial load: ") + shardpoint_last_error());
        shardpoint_load_free(raw);
    }

    // A damaged copy: rank 1 alone reads the damaged extent.
    std::string copy = shared_temp_dir();
    if (g_rank == 0) {
        for (auto &name : list_dir(dir)) std::filesystem::copy_file(dir + "/" + name, copy + "/" + name);
        sp::Reader reader(copy);
        uint64_t index;
        sp::check(shardpoint_reader_find(reader.get(), "private.1", &index));
        shardpoint_chunk_info c;
        sp::check(shardpoint_reader_chunk_info(reader.get(), index, 0, &c));
        std::string path = copy + "/" + c.file;
        FILE *f = std::fopen(path.c_str(), "r+b");
        std::fseek(f, long(c.file_offset + 17), SEEK_SET);
        int byte = std::fgetc(f);
        std::fseek(f, long(c.file_offset + 17), SEEK_SET);
        std::fputc(byte ^ 0x55, f);
        std::fclose(f);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    {
        sp::Reader reader(copy);
        sp::Load load(reader, &comm);
        std::vector<unsigned char> buf(4 * 1001);
        std::string name = g_rank == 1 ? "private.1" : "private.0";
        uint64_t n = g_rank == 1 ? 1001 : 1000;
        load.add_tensor(name, SHARDPOINT_DTYPE_I32, {0}, {n}, buf.data(), 4 * n);
        if (g_rank == 1) {
            expect_error("damaged extent", SHARDPOINT_ECHECKSUM, {"'private.1'", "data-"}, [&] { load.execute(); });
        } else {
            expect_error("another rank's damaged extent", SHARDPOINT_ERANK, {"rank 1", "'private.1'"}, [&] { load.execute(); });
        }
    }
    remove_shared_dir(copy);
}

// Lowers this process's file size limit so that writing past it fails with EFBIG.
void limit_file_size(rlim_t bytes) {
    signal(SIGXFSZ, SIG_IGN);
    rlimit lim;
    getrlimit(RLIMIT_FSIZE, &lim);
    lim.rlim_cur = bytes;
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0) MPI_Abort(MPI_COMM_WORLD, 4);
}

void cmd_rank_failure() {
    const std::string base = shared_temp_dir(), dir = base + "/ckpt";
    sp::Comm comm = mpi_comm();
    save_model(dir, 1, false, comm);
    std::vector<std::string> listing;
    std::vector<unsigned char> meta;
    if (g_rank == 0) listing = list_dir(dir), meta = read_file(dir + "/shardpoint.meta");

    // Rank 2 can write at most 1 MiB per file and offers 3 MiB more: its write fails midway.
    std::vector<unsigned char> big(3u << 20, 0x42);
    rlimit saved;
    getrlimit(RLIMIT_FSIZE, &saved);
    if (g_rank == 2) limit_file_size(1u << 20);
    {
        shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
        o.flags = SHARDPOINT_SAVE_OVERWRITE | SHARDPOINT_SAVE_ALLOW_PARTIAL;  // model.half is half saved
        sp::Save save(dir, &comm, &o);
        std::vector<std::vector<unsigned char>> keep;
        offer_model(save, g_rank, 2, keep);
        if (g_rank == 2) save.add_tensor("big.r2", SHARDPOINT_DTYPE_U8, {big.size()}, {0}, {big.size()}, big.data());
        if (g_rank == 2)
            expect_error("the failing rank", SHARDPOINT_EIO, {"File too large", "r00002"}, [&] { save.commit(); });
        else
            expect_error("a rank whose peer failed", SHARDPOINT_ERANK, {"rank 2", "writing", "File too large"}, [&] { save.commit(); });
    }
    if (g_rank == 2) setrlimit(RLIMIT_FSIZE, &saved);
    MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank == 0) {
        check(list_dir(dir) == listing, "the failed save changed the directory's files");
        check(read_file(dir + "/shardpoint.meta") == meta, "the failed save changed the metadata");
    }
    // The previous checkpoint (seed 1) loads intact on every rank.
    load_and_compare(dir, comm, Split::rows, 1);
    remove_shared_dir(base);
}

void cmd_conflict() {
    std::string dir = shared_temp_dir();
    sp::Comm comm = mpi_comm();
    std::vector<float> data(64, 1.0f);
    {
        sp::Save save(dir, &comm);
        save.add_tensor("ok", SHARDPOINT_DTYPE_F32, {4, 16}, {uint64_t(g_rank), 0}, {1, 16}, data.data());
        if (g_rank == 3) save.add_tensor("layer.w", SHARDPOINT_DTYPE_F16, {8, 8}, {4, 0}, {4, 8}, data.data());
        if (g_rank == 1) save.add_tensor("layer.w", SHARDPOINT_DTYPE_F32, {8, 8}, {0, 0}, {4, 8}, data.data());
        expect_error("dtype conflict", SHARDPOINT_ECONFLICT, {"'layer.w'", "ranks 1 and 3"}, [&] { save.commit(); });
    }
    {
        sp::Save save(dir, &comm);
        // Rows [2r, 2r+3): each rank's chunk overlaps the next one's.
        save.add_tensor("emb", SHARDPOINT_DTYPE_F32, {16, 4}, {uint64_t(2 * g_rank), 0}, {3, 4}, data.data());
        expect_error("overlap conflict", SHARDPOINT_ECONFLICT, {"'emb'", "overlap"}, [&] { save.commit(); });
    }
    {
        sp::Save save(dir, &comm);
        std::vector<unsigned char> blob(10 + (g_rank == 2 ? 1 : 0));
        save.add_bytes("blob", blob.data(), blob.size());
        expect_error("blob length conflict", SHARDPOINT_ECONFLICT, {"'blob'"}, [&] { save.commit(); });
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank == 0) check(list_dir(dir).empty(), "a conflicting save wrote files");
    // An existing checkpoint without OVERWRITE.
    save_model(dir, 1, false, comm);
    expect_error("existing checkpoint", SHARDPOINT_EEXISTS, {"overwrite"}, [&] { save_model(dir, 2, false, comm); });
    load_and_compare(dir, comm, Split::rows, 1);
    remove_shared_dir(dir);
}

}  // namespace

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    std::string cmd = argc > 1 ? argv[1] : "";
    std::string dir = argc > 2 ? argv[2] : "";
    auto need = [&](int world, bool needs_dir) {
        if (g_size != world || (needs_dir && dir.empty())) {
            if (g_rank == 0) std::fprintf(stderr, "usage: mpirun -np %d %s %s%s\n", world, argv[0], cmd.c_str(), needs_dir ? " DIR" : "");
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
    };
    try {
        if (cmd == "save") need(4, true), cmd_save(dir);
        else if (cmd == "load-rows") need(3, true), cmd_load(dir, Split::rows);
        else if (cmd == "load-cols") need(2, true), cmd_load(dir, Split::cols);
        else if (cmd == "load-whole") need(1, true), cmd_load(dir, Split::whole);
        else if (cmd == "bad-load") need(3, true), cmd_bad_load(dir);
        else if (cmd == "shared-open") need(3, true), cmd_shared_open(dir);
        else if (cmd == "rank-failure") need(4, false), cmd_rank_failure();
        else if (cmd == "conflict") need(4, false), cmd_conflict();
        else {
            if (g_rank == 0) std::fprintf(stderr, "unknown command '%s'\n", cmd.c_str());
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
    } catch (const std::exception &e) {
        // An unexpected failure on one rank would leave the others waiting in a collective.
        std::fprintf(stderr, "[rank %d] unexpected: %s\n", g_rank, e.what());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    int total = 0;
    MPI_Allreduce(&g_failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (g_rank == 0) std::printf("%s %s: %d failed checks\n", cmd.c_str(), total ? "FAILED" : "passed", total);
    MPI_Finalize();
    return total ? 1 : 0;
}
