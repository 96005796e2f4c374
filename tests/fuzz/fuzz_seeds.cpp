// Writes what the fuzz targets run on, from real checkpoints:
//   POOL/*.bin              data files of every seed checkpoint (the fuzzers copy them)
//   POOL/datafile.meta      valid metadata for fuzz_datafile (one data file, raw + deflate)
//   META_CORPUS/*.meta      seed inputs for fuzz_metadata
//   DATA_CORPUS/*.bin       seed inputs for fuzz_datafile
// Seeds: the committed golden checkpoints (tests/golden/v1-*) and checkpoints saved here with the
// library (deflate, blobs, 0-d and zero-size tensors, many chunks, partial tensors, small and
// default CRC blocks). Generated checkpoints get a fixed save id, file names and time, so the same
// build always writes the same pool and a committed regression input keeps finding its data.
//
// usage: fuzz_seeds POOL META_CORPUS DATA_CORPUS
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "shardpoint/checkpoint.hpp"
#include "shardpoint/dtype.hpp"
#include "shardpoint/metadata_codec.hpp"

namespace fs = std::filesystem;
using namespace shardpoint;

namespace {

std::string g_pool, g_meta_corpus;

// tests/golden/README.md's generator rule: byte k of the whole tensor's C-order image.
std::vector<unsigned char> image(uint64_t nbytes, unsigned seed, bool boolean) {
    std::vector<unsigned char> out(nbytes);
    for (uint64_t k = 0; k < nbytes; ++k) {
        unsigned char b = (unsigned char)((k * 131 + seed * 17 + (k >> 11)) % 256);
        out[k] = boolean ? b % 2 : b;
    }
    return out;
}

struct Tensor {
    std::string fqn;
    DType dtype;
    Dims shape;
    std::vector<Box> chunks;  // empty: one chunk, the whole tensor
};

// Splits dimension `dim` of `shape` into `parts` nearly equal pieces (each a chunk).
std::vector<Box> split(const Dims &shape, size_t dim, uint64_t parts) {
    std::vector<Box> out;
    for (uint64_t r = 0; r < parts; ++r) {
        Box b{Dims(shape.size(), 0), shape};
        b.offsets[dim] = r * shape[dim] / parts;
        b.sizes[dim] = (r + 1) * shape[dim] / parts - b.offsets[dim];
        out.push_back(b);
    }
    return out;
}

// Every chunk of `grid` (chunk sizes per dimension) tiling `shape`.
std::vector<Box> tile(const Dims &shape, const Dims &grid) {
    std::vector<Box> out;
    Dims at(shape.size(), 0);
    for (;;) {
        Box b{at, Dims(shape.size())};
        for (size_t d = 0; d < shape.size(); ++d) b.sizes[d] = std::min(grid[d], shape[d] - at[d]);
        out.push_back(b);
        size_t d = shape.size();
        while (d > 0) {
            --d;
            at[d] += grid[d];
            if (at[d] < shape[d]) break;
            at[d] = 0;
            if (d == 0) return out;
        }
        if (shape.empty()) return out;
    }
}

void add(SaveSession &s, const Tensor &t, unsigned seed, std::vector<std::vector<unsigned char>> &keep) {
    size_t item = dtype_size(int32_t(t.dtype));
    uint64_t numel = product(t.shape);
    keep.push_back(image(numel * item, seed, t.dtype == DType::bool_));
    const unsigned char *whole = keep.back().data();
    // Chunks point into the whole tensor with its C-order strides (the writer's strided path).
    Strides strides(t.shape.size());
    int64_t step = 1;
    for (size_t d = t.shape.size(); d-- > 0;) {
        strides[d] = step;
        step *= int64_t(t.shape[d]);
    }
    std::vector<Box> chunks = t.chunks.empty() ? std::vector<Box>{Box{Dims(t.shape.size(), 0), t.shape}} : t.chunks;
    for (const Box &b : chunks) {
        uint64_t first = 0;
        for (size_t d = 0; d < t.shape.size(); ++d) first += b.offsets[d] * uint64_t(strides[d]);
        s.add_tensor(t.fqn, t.dtype, t.shape, b.offsets, b.sizes, whole + first * item, strides);
    }
}

void write_seed(const std::string &name, std::vector<unsigned char> meta) {
    fuzz::write_file(g_meta_corpus + "/" + name + ".meta", meta.data(), meta.size());
    // The same metadata once more, opened without CRC checks of tensor bytes.
    uint32_t flags;
    std::memcpy(&flags, meta.data() + 12, 4);
    flags |= fuzz::kNoVerify;
    std::memcpy(meta.data() + 12, &flags, 4);
    fuzz::repair_header(meta);
    fuzz::write_file(g_meta_corpus + "/" + name + "-noverify.meta", meta.data(), meta.size());
}

// Saves one checkpoint, then gives it a fixed identity and moves its data files into the pool.
Metadata save(const std::string &name, unsigned id, SaveOptions opts, const std::vector<Tensor> &tensors,
              const std::vector<std::pair<std::string, std::vector<unsigned char>>> &blobs) {
    std::string dir = g_pool + "/scratch/" + name;
    fs::remove_all(dir);
    opts.fsync = false;
    opts.io_threads = 1;
    opts.checkpoint_id = name;
    SaveSession s(dir, nullptr, opts);
    std::vector<std::vector<unsigned char>> keep;
    unsigned seed = 1;
    for (const Tensor &t : tensors) add(s, t, seed++, keep);
    for (const auto &b : blobs) s.add_bytes(b.first, b.second.data(), b.second.size());
    s.set_metadata("seed", name);
    s.set_metadata("empty", "");
    s.commit();

    std::vector<unsigned char> bytes = fuzz::read_file(dir + "/" + metadata_file_name);
    Metadata md = decode_metadata(bytes.data(), bytes.size());
    char save_id[33];
    std::snprintf(save_id, sizeof save_id, "f0220000000000000000000000%06x", id);
    md.storage.save_id = save_id;
    md.storage.created_unix_ns = 0;
    md.storage.library_version = "fuzz";
    for (DataFileMeta &f : md.files) {
        std::vector<unsigned char> data = fuzz::read_file(dir + "/" + f.name);
        char fname[64];
        std::snprintf(fname, sizeof fname, "data-%s-r%05u.bin", save_id, f.rank);
        f.name = fname;
        fuzz::write_file(g_pool + "/" + f.name, data.data(), data.size());
    }
    fs::remove_all(dir);
    write_seed("gen-" + name, encode_metadata(md));
    return md;
}

// One data file holding checkpoint `a`'s single file followed by `b`'s, with b's entries renamed
// "z.<fqn>" (so the entries stay sorted) and their offsets moved: raw and deflated extents side
// by side for fuzz_datafile.
void merge_for_datafile(Metadata a, const Metadata &b, const std::string &data_corpus) {
    if (a.files.size() != 1 || b.files.size() != 1) throw std::runtime_error("merge needs one file per checkpoint");
    std::vector<unsigned char> data = fuzz::read_file(g_pool + "/" + a.files[0].name);
    std::vector<unsigned char> tail = fuzz::read_file(g_pool + "/" + b.files[0].name);
    while (data.size() % a.storage.alignment != 0) data.push_back(0);
    uint64_t shift = data.size();
    data.insert(data.end(), tail.begin(), tail.end());
    for (EntryMeta e : b.entries) {
        e.fqn = "z." + e.fqn;
        for (ChunkMeta &c : e.chunks) c.extent.offset += shift;
        a.entries.push_back(e);
    }
    a.files[0].name = "data-f0220000000000000000000000ffffff-r00000.bin";
    a.files[0].size = data.size();
    a.storage.save_id = "f0220000000000000000000000ffffff";
    a.storage.checkpoint_id = "datafile";
    if (a.storage.block_size != b.storage.block_size) throw std::runtime_error("merge needs one block size");
    std::vector<unsigned char> meta = encode_metadata(a);
    decode_metadata(meta.data(), meta.size());  // still valid
    fuzz::write_file(g_pool + "/" + a.files[0].name, data.data(), data.size());
    fuzz::write_file(g_pool + "/datafile.meta", meta.data(), meta.size());
    fuzz::write_file(data_corpus + "/datafile.bin", data.data(), data.size());
    // A truncated copy and an empty file: the short-file paths from the start.
    fuzz::write_file(data_corpus + "/datafile-half.bin", data.data(), data.size() / 2);
    fuzz::write_file(data_corpus + "/empty.bin", data.data(), 0);
}

std::vector<Tensor> mixed_tensors() {
    return {
        {"a.bool", DType::bool_, {7}, {}},
        {"b.bf16", DType::bf16, {3, 5, 7}, split({3, 5, 7}, 1, 3)},
        {"e.f32", DType::f32, {64, 32}, tile({64, 32}, {32, 16})},
        {"f.scalar", DType::f64, {}, {}},
        {"g.zero", DType::i32, {0, 5}, {}},
        {"h.i64", DType::i64, {300}, split({300}, 0, 2)},
        {"i.c128", DType::complex128, {4, 3}, split({4, 3}, 0, 4)},
        {"j.f8", DType::f8_e4m3fn, {5, 1, 9}, {}},
    };
}

std::vector<std::pair<std::string, std::vector<unsigned char>>> mixed_blobs() {
    return {{"c.blob", image(1500, 7, false)}, {"d.empty", {}}};
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s POOL META_CORPUS DATA_CORPUS\n", argv[0]);
        return 2;
    }
    g_pool = argv[1];
    g_meta_corpus = argv[2];
    std::string data_corpus = argv[3];
    try {
        for (const std::string &d : {g_pool, g_meta_corpus, data_corpus}) fs::create_directories(d);
        for (const auto &f : fs::directory_iterator(g_pool))
            if (f.is_regular_file()) fs::remove(f.path());

        // The committed golden checkpoints, as written by C, Go, Python and Rust.
        size_t golden = 0;
        for (const auto &d : fs::directory_iterator(SHARDPOINT_GOLDEN_DIR)) {
            std::string name = d.path().filename().string();
            if (!d.is_directory() || name.rfind("v1-", 0) != 0) continue;
            for (const auto &f : fs::directory_iterator(d.path()))
                if (f.path().extension() == ".bin") fs::copy_file(f.path(), g_pool + "/" + f.path().filename().string());
            write_seed("golden-" + name, fuzz::read_file(d.path().string() + "/" + metadata_file_name));
            ++golden;
        }

        SaveOptions small;  // 512-byte CRC blocks and alignment: many blocks in small files
        small.block_size = 512;
        small.alignment = 512;
        Metadata raw = save("mixed", 1, small, mixed_tensors(), mixed_blobs());
        SaveOptions deflate = small;
        deflate.compression_level = 6;
        Metadata packed = save("deflate", 2, deflate, mixed_tensors(), mixed_blobs());

        save("manychunks", 3, small,
             {{"grid.u8", DType::u8, {64, 64}, tile({64, 64}, {8, 8})},
              {"line.f16", DType::f16, {1000}, split({1000}, 0, 100)},
              {"cube.u16", DType::u16, {4, 4, 4}, tile({4, 4, 4}, {1, 1, 1})}},
             {});

        SaveOptions partial = small;
        partial.allow_partial = true;
        save("partial", 4, partial,
             {{"quad.f32", DType::f32, {8, 8}, {Box{{0, 0}, {4, 4}}, Box{{4, 4}, {4, 4}}}},
              {"gap.i16", DType::i16, {10}, {Box{{0}, {3}}, Box{{5}, {5}}}}},
             {});

        SaveOptions defaults;  // 64 KiB blocks, 4 KiB alignment; chunks cut mid-block
        save("bigblock", 5, defaults, {{"big.f32", DType::f32, {100000}, {Box{{0}, {33333}}, Box{{33333}, {66667}}}}},
             {{"blob", image(70000, 3, false)}});

        merge_for_datafile(raw, packed, data_corpus);
        fs::remove_all(g_pool + "/scratch");
        std::printf("fuzz_seeds: %zu golden and 5 generated checkpoints; pool %s\n", golden, g_pool.c_str());
    } catch (const std::exception &e) {
        std::fprintf(stderr, "fuzz_seeds: %s\n", e.what());
        return 1;
    }
    return 0;
}
