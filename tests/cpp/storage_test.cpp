// The filesystem storage layer, driven directly: FileSystemWriter writes items and commits the
// metadata, FileSystemReader reads boxes back (direct, bounce, merged, strided, compressed) and
// detects damage.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <future>
#include <iterator>
#include <map>
#include <random>

#include <zstd.h>

#include "shardpoint/codec.hpp"
#include "shardpoint/layout.hpp"
#include "shardpoint/metadata_codec.hpp"
#include "shardpoint/planner.hpp"
#include "shardpoint/storage.hpp"
#include "test_util.hpp"

using namespace shardpoint;
using sptest::contains;
using sptest::TempDir;
using sptest::Tensor;

namespace {

constexpr uint32_t kBlock = 4096;  // small blocks: partial-block reads with small tensors

WriteItem blob_item(const std::string &fqn, const std::vector<unsigned char> &bytes) {
    WriteItem w;
    w.index = MetadataIndex{fqn, {0}};
    w.kind = EntryKind::bytes;
    w.dtype = DType::u8;
    w.global_shape = {bytes.size()};
    w.sizes = {bytes.size()};
    w.data = bytes.data();
    return w;
}

SaveOptions small_block_options(int compression = 0) {
    SaveOptions o;
    o.block_size = kBlock;
    o.alignment = 4096;
    o.compression_level = compression;
    o.io_threads = 2;
    return o;
}

// The single-process save flow on FileSystemWriter; returns the committed metadata.
Metadata save_items(const std::string &dir, const std::vector<WriteItem> &items, SaveOptions options,
                    uint64_t *file_size_out = nullptr) {
    FileSystemWriter writer(dir, options);
    std::string save_id = new_save_id();
    writer.reset(save_id);
    writer.set_up_storage_writer(true, 0, 1);
    SavePlan local;
    local.items = items;
    local = writer.prepare_local_plan(local);
    std::vector<SavePlan> global = writer.prepare_global_plan({local});
    EXPECT_EQ(global[0].file_name, data_file_name(save_id, 0));
    uint64_t file_size = 0;
    std::vector<WriteResult> results = writer.write_data(global[0], file_size);
    if (file_size_out) *file_size_out = file_size;
    EXPECT_EQ(results.size(), items.size());

    Metadata md;
    md.storage.save_id = save_id;
    md.storage.checkpoint_id = "storage-test";
    md.storage.alignment = options.alignment;
    md.storage.block_size = options.block_size;
    md.storage.library_version = "test";
    md.files.push_back(DataFileMeta{global[0].file_name, file_size, 0});
    std::map<std::string, EntryMeta> entries;
    for (size_t i = 0; i < items.size(); ++i) {
        EXPECT_EQ(results[i].index.fqn, items[i].index.fqn);
        EntryMeta &e = entries[items[i].index.fqn];
        e.fqn = items[i].index.fqn;
        e.kind = items[i].kind;
        e.dtype = items[i].dtype;
        e.shape = items[i].global_shape;
        e.chunks.push_back(ChunkMeta{items[i].box(), results[i].extent});
    }
    for (auto &kv : entries) {
        std::sort(kv.second.chunks.begin(), kv.second.chunks.end(),
                  [](const ChunkMeta &a, const ChunkMeta &b) { return a.box.offsets < b.box.offsets; });
        md.entries.push_back(kv.second);
    }
    writer.finish(md);
    return md;
}

// An opened checkpoint and the means to run load plans against it.
class Opened {
public:
    explicit Opened(const std::string &dir, LoadOptions options = LoadOptions{}) : reader_(dir, options) {
        md_ = reader_.read_metadata();
        reader_.set_up_storage_reader(md_);
        for (auto &e : md_.entries) indexes_.emplace(&e, std::make_unique<ChunkIndex>(e));
    }
    const Metadata &metadata() const { return md_; }
    FileSystemReader &reader() { return reader_; }
    const EntryMeta &entry(const std::string &fqn) const {
        const EntryMeta *e = md_.find(fqn);
        if (!e) throw std::runtime_error("no entry " + fqn);
        return *e;
    }
    void read(std::vector<ReadRequest> requests) {
        LoadPlan plan;
        plan.requests = std::move(requests);
        create_local_load_plan(plan, [&](const EntryMeta *e) -> const ChunkIndex & { return *indexes_.at(e); });
        reader_.read_data(plan);
    }
    // Reads `box` of `fqn` into a fresh C-order buffer.
    std::vector<unsigned char> read_box(const std::string &fqn, const Box &box) {
        const EntryMeta &e = entry(fqn);
        std::vector<unsigned char> out(product(box.sizes) * dtype_size(int32_t(e.dtype)), 0xCD);
        read({ReadRequest{&e, box, out.data(), {}}});
        return out;
    }

private:
    FileSystemReader reader_;
    Metadata md_;
    std::map<const EntryMeta *, std::unique_ptr<ChunkIndex>> indexes_;
};

Box random_box(std::mt19937_64 &rng, const Dims &shape) {
    Box b;
    for (uint64_t n : shape) {
        uint64_t lo = rng() % n, len = 1 + rng() % (n - lo);
        b.offsets.push_back(lo);
        b.sizes.push_back(len);
    }
    return b;
}

// FORMAT.md section 4: an extent at least `alignment` long starts at a multiple of it, a shorter
// one (packed) at a multiple of min(alignment, 64).
uint64_t required_alignment(const Extent &x, uint64_t alignment) {
    return x.stored_length >= alignment ? alignment : std::min<uint64_t>(alignment, 64);
}

std::string data_path(const std::string &dir, const Metadata &md, const EntryMeta &e, size_t chunk = 0) {
    return dir + "/" + md.files[e.chunks[chunk].extent.file].name;
}

}  // namespace

TEST(Storage, RoundTripOfContiguousStridedBytesAndScalarItems) {
    TempDir tmp;
    Tensor rows("model.rows", DType::f32, {64, 50}, 1);
    Tensor cols("model.cols", DType::i16, {30, 40}, 2);
    Tensor scalar("model.step", DType::f64, {}, 3);
    Tensor empty("model.empty", DType::bf16, {0, 5}, 4);
    std::vector<unsigned char> blob = sptest::pattern(5, 10000);
    std::vector<WriteItem> items = {
        rows.item(Box{{0, 0}, {20, 50}}),   // contiguous rows
        rows.item(Box{{20, 0}, {44, 50}}),
        cols.item(Box{{0, 0}, {30, 15}}),   // strided columns
        cols.item(Box{{0, 15}, {30, 25}}),
        scalar.item(scalar.whole()),
        empty.item(empty.whole()),
        blob_item("optim.state", blob),
    };
    uint64_t file_size = 0;
    Metadata md = save_items(tmp.path(), items, small_block_options(), &file_size);

    // The data file: every extent aligned as its length asks, CRCs right, the file exactly as long
    // as recorded.
    const std::string file = tmp.path() + "/" + md.files[0].name;
    auto bytes = sptest::read_file(file);
    EXPECT_EQ(bytes.size(), file_size);
    for (auto &e : md.entries)
        for (auto &c : e.chunks) {
            const Extent &x = c.extent;
            if (x.stored_length) {
                EXPECT_EQ(x.offset % required_alignment(x, 4096), 0u) << e.fqn;
            }
            ASSERT_LE(x.offset + x.stored_length, bytes.size());
            EXPECT_EQ(x.crc32, crc32_of(bytes.data() + x.offset, x.stored_length)) << e.fqn;
            ASSERT_EQ(x.block_crc32.size(), (x.stored_length + kBlock - 1) / kBlock) << e.fqn;
            for (size_t k = 0; k < x.block_crc32.size(); ++k) {
                uint64_t n = std::min<uint64_t>(kBlock, x.stored_length - k * kBlock);
                EXPECT_EQ(x.block_crc32[k], crc32_of(bytes.data() + x.offset + k * kBlock, n)) << e.fqn << " block " << k;
            }
        }
    // No temporary metadata left behind; the metadata decodes to what was committed.
    EXPECT_EQ(sptest::list_dir(tmp.path()), (std::vector<std::string>{md.files[0].name, "shardpoint.meta"}));

    Opened ck(tmp.path());
    EXPECT_EQ(ck.metadata().entries.size(), 5u);
    for (const Tensor *t : {&rows, &cols, &scalar, &empty})
        EXPECT_EQ(ck.read_box(t->fqn, t->whole()), t->expected(t->whole())) << t->fqn;
    EXPECT_EQ(ck.read_box("optim.state", Box{{0}, {blob.size()}}), blob);
    ck.reader().verify_all();
}

// Extents shorter than the alignment are packed: 20,000 tensors of 256 bytes take 5.12 MB, not
// 82 MB; large ones between them stay aligned; the gaps are zeros, never stale memory; strided
// small chunks are gathered into the packed runs; every byte reads back and verifies.
TEST(Storage, ShortExtentsArePackedAndLargeOnesStayAligned) {
    TempDir tmp;
    std::vector<Tensor> small;
    for (int i = 0; i < 20000; ++i) small.emplace_back("p." + std::to_string(i), DType::f32, Dims{64}, 100 + i);
    Tensor odd("odd", DType::u8, {37}, 7);                 // 37 bytes: the next extent needs a gap
    Tensor big("big", DType::f32, {3000}, 8);               // 12000 bytes: aligned to 4096
    Tensor strided("strided", DType::i16, {20, 30}, 9);     // a column box: gathered
    std::vector<WriteItem> items;
    for (int i = 0; i < 10000; ++i) items.push_back(small[size_t(i)].item(small[size_t(i)].whole()));
    items.push_back(odd.item(odd.whole()));
    items.push_back(big.item(big.whole()));
    items.push_back(strided.item(Box{{0, 10}, {20, 7}}));
    for (int i = 10000; i < 20000; ++i) items.push_back(small[size_t(i)].item(small[size_t(i)].whole()));
    uint64_t file_size = 0;
    Metadata md = save_items(tmp.path(), items, small_block_options(), &file_size);

    const uint64_t data_bytes = 20000 * 256 + 37 + 12000 + 20 * 7 * 2;
    EXPECT_LE(file_size, data_bytes + data_bytes / 10) << "short extents are not packed";
    auto bytes = sptest::read_file(tmp.path() + "/" + md.files[0].name);
    ASSERT_EQ(bytes.size(), file_size);
    std::vector<std::pair<uint64_t, uint64_t>> extents;
    for (auto &e : md.entries)
        for (auto &c : e.chunks) {
            EXPECT_EQ(c.extent.offset % required_alignment(c.extent, 4096), 0u) << e.fqn;
            extents.push_back({c.extent.offset, c.extent.offset + c.extent.stored_length});
        }
    EXPECT_EQ(md.find("big")->chunks[0].extent.offset % 4096, 0u);
    std::sort(extents.begin(), extents.end());
    uint64_t at = 0;
    for (auto [begin, end] : extents) {
        ASSERT_LE(at, begin) << "extents overlap";
        for (; at < begin; ++at) ASSERT_EQ(bytes[at], 0) << "gap byte " << at << " is not zero";
        at = end;
    }

    Opened ck(tmp.path());
    for (int i : {0, 1, 9999, 10000, 15000, 19999})
        EXPECT_EQ(ck.read_box(small[size_t(i)].fqn, small[size_t(i)].whole()), small[size_t(i)].expected(small[size_t(i)].whole()));
    EXPECT_EQ(ck.read_box("odd", odd.whole()), odd.expected(odd.whole()));
    EXPECT_EQ(ck.read_box("big", big.whole()), big.expected(big.whole()));
    EXPECT_EQ(ck.read_box("strided", Box{{0, 10}, {20, 7}}), strided.expected(Box{{0, 10}, {20, 7}}));
    ck.reader().verify_all();
}

TEST(Storage, ReadsThatStartAndEndMidBlock) {
    TempDir tmp;
    Tensor flat("flat", DType::u8, {100000}, 11);         // 25 blocks, the last one short
    Tensor grid("grid", DType::u16, {200, 300}, 12);      // rows of 600 bytes across blocks
    save_items(tmp.path(), {flat.item(flat.whole()), grid.item(grid.whole())}, small_block_options());
    for (bool verify : {true, false}) {
        LoadOptions lo;
        lo.verify = verify;
        lo.io_threads = 2;
        Opened ck(tmp.path(), lo);
        std::mt19937_64 rng(verify ? 1 : 2);
        for (int q = 0; q < 150; ++q) {
            Box b = random_box(rng, flat.shape);
            ASSERT_EQ(ck.read_box("flat", b), flat.expected(b)) << "verify " << verify << " [" << b.offsets[0] << "+" << b.sizes[0];
        }
        for (uint64_t a : {0ull, 1ull, 4095ull, 4096ull, 4097ull, 98303ull, 98304ull, 99999ull}) {
            Box b{{a}, {100000 - a}};
            ASSERT_EQ(ck.read_box("flat", b), flat.expected(b)) << a;
            Box c{{0}, {a + 1}};
            ASSERT_EQ(ck.read_box("flat", c), flat.expected(c)) << a;
        }
        for (int q = 0; q < 100; ++q) {
            Box b = random_box(rng, grid.shape);
            ASSERT_EQ(ck.read_box("grid", b), grid.expected(b)) << "verify " << verify;
        }
    }
}

TEST(Storage, StridedAndReversedDestinations) {
    TempDir tmp;
    Tensor grid("grid", DType::f32, {37, 53}, 21);
    save_items(tmp.path(), {grid.item(Box{{0, 0}, {20, 53}}), grid.item(Box{{20, 0}, {17, 53}})}, small_block_options());
    Opened ck(tmp.path());
    const EntryMeta &e = ck.entry("grid");
    Box box{{5, 7}, {25, 40}};
    auto want = grid.expected(box);  // C order, 25 x 40 floats

    // Fortran order into a padded buffer.
    std::vector<float> fortran(26 * 40, -1.0f);
    ck.read({ReadRequest{&e, box, fortran.data(), {1, 26}}});
    // Rows reversed: the box's first row lands in the buffer's last row.
    std::vector<float> reversed(25 * 40, -1.0f);
    ck.read({ReadRequest{&e, box, reversed.data() + 24 * 40, {-40, 1}}});
    for (int i = 0; i < 25; ++i)
        for (int j = 0; j < 40; ++j) {
            float w;
            std::memcpy(&w, want.data() + size_t(i * 40 + j) * 4, 4);
            ASSERT_EQ(std::memcmp(&fortran[size_t(i + j * 26)], &w, 4), 0) << i << "," << j;
            ASSERT_EQ(std::memcmp(&reversed[size_t((24 - i) * 40 + j)], &w, 4), 0) << i << "," << j;
        }
    for (int j = 0; j < 40; ++j) EXPECT_EQ(fortran[size_t(25 + j * 26)], -1.0f) << "padding row written";
}

TEST(Storage, MergedReadsOfManySmallItems) {
    TempDir tmp;
    std::vector<Tensor> tensors;
    tensors.reserve(300);
    std::mt19937_64 rng(31);
    for (int k = 0; k < 300; ++k) {
        char name[32];
        std::snprintf(name, sizeof name, "small.%03d", k);
        tensors.emplace_back(name, k % 2 ? DType::u8 : DType::i32, Dims{1 + rng() % 9, 1 + rng() % 11}, 100 + k);
    }
    std::vector<WriteItem> items;
    for (auto &t : tensors) items.push_back(t.item(t.whole()));
    save_items(tmp.path(), items, small_block_options());

    Opened ck(tmp.path());
    // One plan with every tensor whole plus a partial box of each: hundreds of small reads
    // a few KiB apart, which the reader merges into large ones.
    std::vector<std::vector<unsigned char>> whole(tensors.size()), part(tensors.size());
    std::vector<Box> boxes;
    std::vector<ReadRequest> requests;
    for (size_t k = 0; k < tensors.size(); ++k) {
        const Tensor &t = tensors[k];
        boxes.push_back(random_box(rng, t.shape));
        whole[k].assign(t.image.size(), 0xEE);
        part[k].assign(product(boxes[k].sizes) * t.itemsize(), 0xEE);
        requests.push_back(ReadRequest{&ck.entry(t.fqn), t.whole(), whole[k].data(), {}});
        requests.push_back(ReadRequest{&ck.entry(t.fqn), boxes[k], part[k].data(), {}});
    }
    ck.read(requests);
    for (size_t k = 0; k < tensors.size(); ++k) {
        ASSERT_EQ(whole[k], tensors[k].image) << tensors[k].fqn;
        ASSERT_EQ(part[k], tensors[k].expected(boxes[k])) << tensors[k].fqn;
    }
}

TEST(Storage, ColumnReadsOfAWideTensor) {
    TempDir tmp;
    Tensor wide("wide", DType::f64, {300, 700}, 41);  // 1.6 MiB: rows span blocks
    save_items(tmp.path(), {wide.item(wide.whole())}, small_block_options());
    Opened ck(tmp.path());
    std::vector<std::vector<unsigned char>> cols(7);
    std::vector<ReadRequest> requests;
    for (uint64_t c = 0; c < 7; ++c) {
        cols[c].assign(300 * 100 * 8, 0);
        requests.push_back(ReadRequest{&ck.entry("wide"), Box{{0, c * 100}, {300, 100}}, cols[c].data(), {}});
    }
    ck.read(requests);
    for (uint64_t c = 0; c < 7; ++c) ASSERT_EQ(cols[c], wide.expected(Box{{0, c * 100}, {300, 100}})) << "column block " << c;
}

// Column chunks read back by rows: the saved bytes are contiguous, the destination is runs of
// one chunk's width, so they are read straight into place (preadv) with block CRCs checked over
// the scattered runs; partial blocks at either end go through a bounce buffer.
TEST(Storage, RowReadsOfColumnChunksScatterIntoPlace) {
    TempDir tmp;
    Tensor t("t", DType::u8, {40, 12288}, 43);
    save_items(tmp.path(), {t.item(Box{{0, 0}, {40, 6144}}), t.item(Box{{0, 6144}, {40, 6144}})}, small_block_options());
    for (bool verify : {true, false}) {
        LoadOptions lo;
        lo.verify = verify;
        Opened ck(tmp.path(), lo);
        for (Box b : {Box{{3, 0}, {34, 12288}}, Box{{0, 0}, {40, 12288}}, Box{{1, 0}, {1, 12288}}, Box{{5, 3000}, {30, 6000}}})
            ASSERT_EQ(ck.read_box("t", b), t.expected(b)) << "verify " << verify << " rows " << b.offsets[0];
        // Into a wider destination (the left half of each row of a [34, 24576] buffer).
        std::vector<unsigned char> wide(34 * 24576, 0xEE);
        ck.read({ReadRequest{&ck.entry("t"), Box{{3, 0}, {34, 12288}}, wide.data(), {24576, 1}}});
        auto want = t.expected(Box{{3, 0}, {34, 12288}});
        for (size_t r = 0; r < 34; ++r) {
            ASSERT_EQ(0, std::memcmp(wide.data() + r * 24576, want.data() + r * 12288, 12288)) << "row " << r;
            ASSERT_EQ(wide[r * 24576 + 12288], 0xEE) << "row " << r << " overran";
        }
    }
    // A flipped byte in the middle of the second chunk is caught on the scattered path.
    Metadata md;
    {
        Opened ck(tmp.path());
        md = ck.metadata();
    }
    const Extent &e = md.find("t")->chunks[1].extent;
    sptest::flip_byte(tmp.path() + "/" + md.files[e.file].name, e.offset + 20 * 6144 + 100);
    Opened ck(tmp.path());
    EXPECT_SP_ERROR(ck.read_box("t", Box{{3, 0}, {34, 12288}}), Code::checksum, "'t'");
    LoadOptions lo;
    lo.verify = false;
    Opened unchecked(tmp.path(), lo);
    auto got = unchecked.read_box("t", Box{{3, 0}, {34, 12288}});
    EXPECT_NE(got, t.expected(Box{{3, 0}, {34, 12288}}));
}

TEST(Storage, CompressedExtents) {
    TempDir tmp;
    Tensor noisy("noisy", DType::u16, {40, 60}, 51);
    Tensor zeros("zeros", DType::f32, {128, 256}, 52);
    std::fill(zeros.image.begin(), zeros.image.end(), 0);
    std::vector<unsigned char> blob(50000, 'z');
    std::vector<WriteItem> items = {noisy.item(Box{{0, 0}, {40, 25}}), noisy.item(Box{{0, 25}, {40, 35}}),  // strided
                                    zeros.item(zeros.whole()), blob_item("blob", blob)};
    save_items(tmp.path(), items, small_block_options(6));

    Opened ck(tmp.path());
    for (auto &e : ck.metadata().entries)
        for (auto &c : e.chunks) {
            EXPECT_EQ(c.extent.transform, Transform::deflate) << e.fqn;
            EXPECT_TRUE(c.extent.block_crc32.empty()) << e.fqn;
            if (c.extent.stored_length) {
                EXPECT_EQ(c.extent.offset % required_alignment(c.extent, 4096), 0u) << e.fqn;
            }
        }
    EXPECT_LT(ck.entry("zeros").chunks[0].extent.stored_length, 1000u);
    EXPECT_EQ(ck.read_box("noisy", noisy.whole()), noisy.image);
    EXPECT_EQ(ck.read_box("zeros", zeros.whole()), zeros.image);
    EXPECT_EQ(ck.read_box("blob", Box{{0}, {blob.size()}}), blob);
    std::mt19937_64 rng(5);
    for (int q = 0; q < 40; ++q) {
        Box b = random_box(rng, noisy.shape);
        ASSERT_EQ(ck.read_box("noisy", b), noisy.expected(b));
    }
    // A transposed destination of a compressed chunk.
    std::vector<uint16_t> t(60 * 40);
    ck.read({ReadRequest{&ck.entry("noisy"), noisy.whole(), t.data(), {1, 40}}});
    for (int i = 0; i < 40; ++i)
        for (int j = 0; j < 60; ++j)
            ASSERT_EQ(std::memcmp(&t[size_t(i + j * 40)], noisy.image.data() + size_t(i * 60 + j) * 2, 2), 0);
    ck.reader().verify_all();
}

// Chunks larger than the 8 MiB streaming threshold are deflated through bounded buffers into a
// reservation of the stream's worst-case size; contiguous and strided sources, whole and box reads.
TEST(Storage, LargeCompressedExtentsAreStreamed) {
    TempDir tmp;
    Tensor big("big", DType::f32, {2048, 2048}, 61);  // 16 MiB
    for (size_t i = 0; i < big.image.size(); i += 4) big.image[i] = 0;  // partly compressible
    std::vector<WriteItem> items = {big.item(Box{{0, 0}, {2048, 1200}}),   // strided source, 9.4 MiB: streamed
                                    big.item(Box{{0, 1200}, {2048, 848}})}; // strided, 6.6 MiB: in memory
    Tensor flat("flat", DType::u8, {20u << 20}, 62);                        // contiguous, 20 MiB
    for (size_t i = 0; i < flat.image.size(); i += 2) flat.image[i] = 7;
    items.push_back(flat.item(flat.whole()));
    uint64_t file_size = 0;
    save_items(tmp.path(), items, small_block_options(1), &file_size);

    Opened ck(tmp.path());
    const Extent &e = ck.entry("flat").chunks[0].extent;
    EXPECT_EQ(e.transform, Transform::deflate);
    EXPECT_LT(e.stored_length, e.raw_length);
    EXPECT_EQ(ck.read_box("flat", flat.whole()), flat.image);
    EXPECT_EQ(ck.read_box("big", big.whole()), big.image);
    Box rows{{100, 0}, {900, 2048}};
    EXPECT_EQ(ck.read_box("big", rows), big.expected(rows));
    ck.reader().verify_all();
}

TEST(StorageError, FlippedDataByteIsDetected) {
    TempDir tmp;
    Tensor t("layers.0.w", DType::u8, {10 * kBlock}, 61);
    Metadata md = save_items(tmp.path(), {t.item(t.whole())}, small_block_options());
    const EntryMeta &e = md.entries[0];
    // Damage one byte in block 6.
    const uint64_t victim = 6 * kBlock + 100;
    sptest::flip_byte(data_path(tmp.path(), md, e), e.chunks[0].extent.offset + victim);

    {
        Opened ck(tmp.path());
        EXPECT_SP_ERROR(ck.read_box(t.fqn, Box{{victim}, {1}}), Code::checksum, "'layers.0.w'", md.files[0].name);
        EXPECT_SP_ERROR(ck.read_box(t.fqn, t.whole()), Code::checksum, "'layers.0.w'");
        // Blocks without damage still read: verification is per block.
        Box clean{{kBlock}, {3 * kBlock + 10}};
        EXPECT_EQ(ck.read_box(t.fqn, clean), t.expected(clean));
        EXPECT_SP_ERROR(ck.reader().verify_all(), Code::checksum, "'layers.0.w'");
    }
    // Without verification the damaged byte comes through: proof the CRC is what caught it.
    LoadOptions no_verify;
    no_verify.verify = false;
    Opened ck(tmp.path(), no_verify);
    auto got = ck.read_box(t.fqn, Box{{victim}, {1}});
    EXPECT_EQ(got[0], uint8_t(t.image[victim] ^ 0xff));
}

TEST(StorageError, FlippedByteInStridedReadIsDetected) {
    TempDir tmp;
    Tensor t("grid", DType::u8, {100, 100}, 62);
    Metadata md = save_items(tmp.path(), {t.item(t.whole())}, small_block_options());
    sptest::flip_byte(data_path(tmp.path(), md, md.entries[0]), md.entries[0].chunks[0].extent.offset + 50 * 100 + 50);
    Opened ck(tmp.path());
    EXPECT_SP_ERROR(ck.read_box("grid", Box{{40, 45}, {20, 10}}), Code::checksum, "'grid'");
}

TEST(StorageError, FlippedCompressedByteIsDetected) {
    TempDir tmp;
    Tensor t("z", DType::u8, {20000}, 63);
    Metadata md = save_items(tmp.path(), {t.item(t.whole())}, small_block_options(1));
    const Extent &x = md.entries[0].chunks[0].extent;
    sptest::flip_byte(data_path(tmp.path(), md, md.entries[0]), x.offset + x.stored_length / 2);
    Opened ck(tmp.path());
    EXPECT_SP_ERROR(ck.read_box("z", Box{{10}, {5}}), Code::checksum, "'z'", "compressed");
    EXPECT_SP_ERROR(ck.reader().verify_all(), Code::checksum, "'z'");
}

TEST(StorageError, TruncatedDataFile) {
    TempDir tmp;
    Tensor t("w", DType::f32, {5000}, 64);
    Metadata md = save_items(tmp.path(), {t.item(t.whole())}, small_block_options());
    std::string path = data_path(tmp.path(), md, md.entries[0]);
    ASSERT_EQ(::truncate(path.c_str(), 10000), 0);
    Opened ck(tmp.path());
    EXPECT_SP_ERROR(ck.read_box("w", Box{{0}, {10}}), Code::truncated, md.files[0].name, "'w'");
    EXPECT_SP_ERROR(ck.reader().verify_all(), Code::truncated, md.files[0].name);
}

TEST(StorageError, MissingDataFile) {
    TempDir tmp;
    Tensor t("w", DType::f32, {100}, 65);
    Metadata md = save_items(tmp.path(), {t.item(t.whole())}, small_block_options());
    ASSERT_EQ(::unlink(data_path(tmp.path(), md, md.entries[0]).c_str()), 0);
    Opened ck(tmp.path());
    EXPECT_SP_ERROR(ck.read_box("w", Box{{0}, {10}}), Code::not_found, md.files[0].name, "missing");
    EXPECT_SP_ERROR(ck.reader().verify_all(), Code::not_found, md.files[0].name);
}

TEST(StorageError, DataFileReplacedBySymlink) {
    TempDir tmp, elsewhere;
    Tensor t("w", DType::f32, {100}, 66);
    Metadata md = save_items(tmp.path(), {t.item(t.whole())}, small_block_options());
    std::string path = data_path(tmp.path(), md, md.entries[0]);
    std::string target = elsewhere.sub("outside.bin");
    ASSERT_EQ(::rename(path.c_str(), target.c_str()), 0);
    ASSERT_EQ(::symlink(target.c_str(), path.c_str()), 0);
    Opened ck(tmp.path());
    EXPECT_SP_ERROR(ck.read_box("w", Box{{0}, {10}}), Code::path, "symbolic link");
}

TEST(StorageError, NoCheckpoint) {
    TempDir tmp;
    FileSystemReader reader(tmp.path(), LoadOptions{});
    EXPECT_SP_ERROR(reader.read_metadata(), Code::not_found, tmp.path(), "shardpoint.meta");
    FileSystemReader missing(tmp.sub("does/not/exist"), LoadOptions{});
    EXPECT_SP_ERROR(missing.read_metadata(), Code::not_found);
}

TEST(StorageError, MetadataIsADirectory) {
    TempDir tmp;
    ASSERT_EQ(::mkdir(tmp.sub("shardpoint.meta").c_str(), 0755), 0);
    FileSystemReader reader(tmp.path(), LoadOptions{});
    EXPECT_SP_ERROR(reader.read_metadata(), Code::format, "not a regular file");
}

TEST(StorageError, ExistingCheckpointNeedsOverwrite) {
    TempDir tmp;
    Tensor t("w", DType::u8, {10}, 67);
    save_items(tmp.path(), {t.item(t.whole())}, small_block_options());
    FileSystemWriter writer(tmp.path(), small_block_options());
    writer.reset(new_save_id());
    writer.set_up_storage_writer(true, 0, 1);
    EXPECT_SP_ERROR(writer.prepare_global_plan({SavePlan{}}), Code::exists, tmp.path(), "overwrite");
}

TEST(Storage, OverwriteReplacesTheOldFiles) {
    TempDir tmp;
    Tensor a("a", DType::u8, {1000}, 68), b("b", DType::u8, {2000}, 69);
    Metadata first = save_items(tmp.path(), {a.item(a.whole())}, small_block_options());
    SaveOptions o = small_block_options();
    o.overwrite = true;
    o.fsync = true;
    Metadata second = save_items(tmp.path(), {b.item(b.whole())}, o);
    EXPECT_NE(first.files[0].name, second.files[0].name);
    EXPECT_EQ(sptest::list_dir(tmp.path()), (std::vector<std::string>{second.files[0].name, "shardpoint.meta"}));
    Opened ck(tmp.path());
    EXPECT_EQ(ck.metadata().entries.size(), 1u);
    EXPECT_EQ(ck.read_box("b", b.whole()), b.image);
}

TEST(Storage, AbortRemovesTheDataFile) {
    TempDir tmp;
    Tensor t("w", DType::u8, {10000}, 70);
    FileSystemWriter writer(tmp.path(), small_block_options());
    writer.reset(new_save_id());
    writer.set_up_storage_writer(true, 0, 1);
    SavePlan plan;
    plan.items = {t.item(t.whole())};
    plan = writer.prepare_global_plan({plan})[0];
    uint64_t size = 0;
    writer.write_data(plan, size);
    EXPECT_EQ(sptest::list_dir(tmp.path()), std::vector<std::string>{plan.file_name});
    writer.abort(plan);
    EXPECT_TRUE(sptest::list_dir(tmp.path()).empty());
}

TEST(Storage, RankWithNothingToWriteCreatesNoFile) {
    TempDir tmp;
    FileSystemWriter writer(tmp.path(), small_block_options());
    writer.reset(new_save_id());
    writer.set_up_storage_writer(false, 3, 4);
    SavePlan plan;
    plan.file_name = data_file_name("x", 3);
    uint64_t size = 99;
    EXPECT_TRUE(writer.write_data(plan, size).empty());
    EXPECT_EQ(size, 0u);
    EXPECT_TRUE(sptest::list_dir(tmp.path()).empty());
}

TEST(Storage, DataFileNames) {
    EXPECT_EQ(data_file_name("abc", 7), "data-abc-r00007.bin");
    EXPECT_EQ(data_file_name("abc", 123456), "data-abc-r123456.bin");
    std::string id = new_save_id();
    EXPECT_EQ(id.size(), 32u);
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos);
    EXPECT_NE(id, new_save_id());
}

TEST(Storage, AlignmentOptions) {
    for (uint32_t alignment : {1u, 512u, 65536u}) {
        TempDir tmp;
        Tensor a("a", DType::u8, {1001}, 80), b("b", DType::i16, {7, 9}, 81);
        std::vector<unsigned char> blob = sptest::pattern(82, 333);
        SaveOptions o = small_block_options();
        o.alignment = alignment;
        Metadata md = save_items(tmp.path(), {a.item(a.whole()), b.item(b.whole()), blob_item("c", blob)}, o);
        for (auto &e : md.entries)
            EXPECT_EQ(e.chunks[0].extent.offset % required_alignment(e.chunks[0].extent, alignment), 0u)
                << e.fqn << " alignment " << alignment;
        Opened ck(tmp.path());
        EXPECT_EQ(ck.read_box("a", a.whole()), a.image);
        EXPECT_EQ(ck.read_box("b", b.whole()), b.image);
        EXPECT_EQ(ck.read_box("c", Box{{0}, {blob.size()}}), blob);
        ck.reader().verify_all();
    }
}

// ---------------------------------------------------------------------------------------------
// A crafted checkpoint directory must not hang or exhaust the reader.

namespace {

// Runs `body` on its own thread. If it is still running after `seconds`, calls `unblock`
// (which must make it return) and reports the hang.
bool finishes_within(double seconds, const std::function<void()> &body, const std::function<void()> &unblock) {
    auto done = std::async(std::launch::async, body);
    if (done.wait_for(std::chrono::duration<double>(seconds)) == std::future_status::ready) {
        done.get();
        return true;
    }
    unblock();
    done.get();
    return false;
}

// Opening the write end lets a reader blocked in open(2) on the FIFO go on (and see EOF).
void release_fifo(const std::string &path) {
    int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK);
    if (fd >= 0) ::close(fd);
}

}  // namespace

TEST(StorageError, MetadataFileIsAFifo) {
    TempDir tmp;
    const std::string meta = tmp.sub("shardpoint.meta");
    ASSERT_EQ(::mkfifo(meta.c_str(), 0644), 0);
    bool threw = false;
    bool in_time = finishes_within(
        3.0,
        [&] {
            try {
                FileSystemReader reader(tmp.path(), LoadOptions{});
                reader.read_metadata();
            } catch (const Error &e) {
                threw = true;
                EXPECT_EQ(e.code(), Code::format) << e.what();
            }
        },
        [&] { release_fifo(meta); });
    EXPECT_TRUE(in_time) << "opening a checkpoint whose metadata file is a FIFO hangs in open(2)";
    EXPECT_TRUE(threw);
}

TEST(StorageError, DataFileIsAFifo) {
    TempDir tmp;
    Tensor t("w", DType::f32, {100}, 83);
    Metadata md = save_items(tmp.path(), {t.item(t.whole())}, small_block_options());
    const std::string data = data_path(tmp.path(), md, md.entries[0]);
    ASSERT_EQ(::unlink(data.c_str()), 0);
    ASSERT_EQ(::mkfifo(data.c_str(), 0644), 0);
    bool threw = false;
    bool in_time = finishes_within(
        3.0,
        [&] {
            try {
                Opened ck(tmp.path());
                ck.read_box("w", t.whole());
            } catch (const Error &e) {
                threw = true;
                EXPECT_TRUE(contains(e.what(), md.files[0].name)) << e.what();
            }
        },
        [&] { release_fifo(data); });
    EXPECT_TRUE(in_time) << "reading a tensor whose data file is a FIFO hangs in open(2)";
    EXPECT_TRUE(threw);
}

// A compressed extent whose metadata claims an absurd raw length (1 TiB from 100 stored bytes;
// zlib cannot expand beyond ~1032:1) must be refused as corrupt, not allocated.
TEST(StorageError, CompressedExtentWithAbsurdRawLength) {
    TempDir tmp;
    Tensor t("z", DType::u8, {5000}, 84);
    Metadata md = save_items(tmp.path(), {t.item(t.whole())}, small_block_options(6));
    const uint64_t huge = 1ull << 40;
    md.entries[0].shape = {huge};
    md.entries[0].chunks[0].box = Box{{0}, {huge}};
    md.entries[0].chunks[0].extent.raw_length = huge;
    auto bytes = encode_metadata(md);
    sptest::write_file(tmp.sub("shardpoint.meta"), bytes);

    auto expect_format_error = [&](const char *what, const std::function<void()> &body) {
        try {
            body();
            ADD_FAILURE() << what << ": no error";
        } catch (const Error &e) {
            EXPECT_EQ(e.code(), Code::format) << what << ": " << e.what();
            EXPECT_TRUE(contains(e.what(), "'z'")) << what << ": " << e.what();
        } catch (const std::bad_alloc &) {
            ADD_FAILURE() << what << ": tried to allocate the claimed raw length (std::bad_alloc)";
        }
    };
    expect_format_error("open + verify_all", [&] {
        Opened ck(tmp.path());
        ck.reader().verify_all();
    });
    expect_format_error("open + read 10 bytes", [&] {
        Opened ck(tmp.path());
        ck.read_box("z", Box{{0}, {10}});
    });
}

// --- Block compression (format 2) ---------------------------------------------------------------

namespace {

SaveOptions block_options(Transform codec, bool shuffle) {
    SaveOptions o = small_block_options();
    o.compression = codec;
    o.shuffle = shuffle;
    return o;
}

// Floats with a narrow range of exponents (as trained weights have): compressible once shuffled.
Tensor weights(const std::string &fqn, Dims shape, uint64_t seed) {
    Tensor t(fqn, DType::f32, std::move(shape), seed);
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    for (size_t i = 0; i < t.image.size(); i += 4) {
        float v = normal(rng);
        std::memcpy(&t.image[i], &v, 4);
    }
    return t;
}

uint16_t header_major(const std::string &dir) {
    std::ifstream in(dir + "/shardpoint.meta", std::ios::binary);
    unsigned char h[10];
    in.read(reinterpret_cast<char *>(h), 10);
    return uint16_t(h[8] | (h[9] << 8));
}

}  // namespace

TEST(Storage, BlockCompressedExtentsRoundTripWithEveryCodec) {
    for (Transform codec : {Transform::zlib_blocks, Transform::zstd_blocks})
        for (bool shuffle : {false, true}) {
            SCOPED_TRACE(std::string(codec == Transform::zstd_blocks ? "zstd" : "zlib") + (shuffle ? " shuffled" : ""));
            TempDir tmp;
            Tensor noisy("noisy", DType::u16, {40, 60}, 51);  // incompressible: blocks stored raw
            Tensor w = weights("w", {96, 130}, 52);           // 12.2 blocks: a short last block
            Tensor zeros("zeros", DType::f32, {128, 256}, 53);
            std::fill(zeros.image.begin(), zeros.image.end(), 0);
            Tensor empty("empty", DType::bf16, {0, 4}, 54);
            Tensor scalar("scalar", DType::f64, {}, 55);
            std::vector<unsigned char> blob(50000, 'z');
            std::vector<WriteItem> items = {noisy.item(Box{{0, 0}, {40, 25}}), noisy.item(Box{{0, 25}, {40, 35}}),  // strided
                                            w.item(Box{{0, 0}, {50, 130}}), w.item(Box{{50, 0}, {46, 130}}),
                                            zeros.item(zeros.whole()), empty.item(empty.whole()),
                                            scalar.item(scalar.whole()), blob_item("blob", blob)};
            save_items(tmp.path(), items, block_options(codec, shuffle));
            EXPECT_EQ(header_major(tmp.path()), 2);

            Opened ck(tmp.path());
            EXPECT_EQ(ck.metadata().storage.format_major, 2u);
            for (auto &e : ck.metadata().entries)
                for (auto &c : e.chunks) {
                    const Extent &x = c.extent;
                    EXPECT_EQ(x.transform, codec) << e.fqn;
                    EXPECT_LE(x.stored_length, x.raw_length) << e.fqn;
                    EXPECT_EQ(x.block_stored_length.size(), (x.raw_length + kBlock - 1) / kBlock) << e.fqn;
                    const uint32_t itemsize = dtype_size(int32_t(e.dtype));
                    EXPECT_EQ(x.shuffle_width, shuffle && e.kind == EntryKind::tensor && itemsize > 1 ? itemsize : 0u) << e.fqn;
                    if (x.raw_length >= 4096) EXPECT_EQ(x.offset % 4096, 0u) << e.fqn;
                }
            for (uint32_t len : ck.entry("noisy").chunks[0].extent.block_stored_length) EXPECT_LE(len, kBlock);
            EXPECT_EQ(ck.entry("noisy").chunks[0].extent.stored_length, ck.entry("noisy").chunks[0].extent.raw_length);
            EXPECT_LT(ck.entry("zeros").chunks[0].extent.stored_length, 2000u);
            EXPECT_LT(ck.entry("w").chunks[0].extent.stored_length, ck.entry("w").chunks[0].extent.raw_length);
            for (Tensor *t : {&noisy, &w, &zeros, &empty, &scalar}) EXPECT_EQ(ck.read_box(t->fqn, t->whole()), t->image) << t->fqn;
            EXPECT_EQ(ck.read_box("blob", Box{{0}, {blob.size()}}), blob);
            std::mt19937_64 rng(5);
            for (int q = 0; q < 40; ++q) {
                Box b = random_box(rng, w.shape);
                ASSERT_EQ(ck.read_box("w", b), w.expected(b));
                b = random_box(rng, noisy.shape);
                ASSERT_EQ(ck.read_box("noisy", b), noisy.expected(b));
            }
            // A transposed destination.
            std::vector<float> t(130 * 96);
            ck.read({ReadRequest{&ck.entry("w"), w.whole(), t.data(), {1, 96}}});
            for (size_t i = 0; i < 96; ++i)
                for (size_t j = 0; j < 130; ++j) ASSERT_EQ(std::memcmp(&t[j * 96 + i], &w.image[(i * 130 + j) * 4], 4), 0);
            ck.reader().verify_all();
        }
}

TEST(Storage, UncompressedAndStreamDeflateSavesStayFormatOne) {
    for (int level : {0, 3}) {
        TempDir tmp;
        Tensor t("t", DType::f32, {1000}, 56);
        save_items(tmp.path(), {t.item(t.whole())}, small_block_options(level));
        EXPECT_EQ(header_major(tmp.path()), 1) << level;
    }
}

TEST(Storage, PartialReadOfBlockCompressedExtentTouchesOnlyItsBlocks) {
    TempDir tmp;
    Tensor w = weights("w", {400, 256}, 57);  // 1024 bytes a row: 4 rows a block
    Metadata md = save_items(tmp.path(), {w.item(w.whole())}, block_options(Transform::zstd_blocks, true));
    const Extent &x = md.entries[0].chunks[0].extent;
    // Damage the last block: rows 396..399.
    uint64_t last_start = x.stored_length - x.block_stored_length.back();
    sptest::flip_byte(data_path(tmp.path(), md, md.entries[0]), x.offset + last_start + 3);
    Opened ck(tmp.path());
    Box head{{0, 10}, {390, 100}};
    EXPECT_EQ(ck.read_box("w", head), w.expected(head));
    EXPECT_SP_ERROR(ck.read_box("w", Box{{395, 0}, {2, 4}}), Code::checksum, "'w'", "block 99");
    EXPECT_SP_ERROR(ck.reader().verify_all(), Code::checksum, "'w'", "1 of 100 blocks bad");
}

TEST(StorageError, CorruptBlockWithMatchingChecksumIsAFormatError) {
    for (Transform codec : {Transform::zlib_blocks, Transform::zstd_blocks}) {
        TempDir tmp;
        Tensor w = weights("w", {64, 256}, 58);
        Metadata md = save_items(tmp.path(), {w.item(w.whole())}, block_options(codec, false));
        // Rewrite block 2's stored bytes as garbage of the same length and make every CRC agree:
        // only the decompressor can tell.
        std::string meta_path = tmp.path() + "/shardpoint.meta";
        std::ifstream in(meta_path, std::ios::binary);
        std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        in.close();
        Metadata on_disk = decode_metadata(bytes.data(), bytes.size());
        Extent &x = on_disk.entries[0].chunks[0].extent;
        ASSERT_LT(x.block_stored_length[2], kBlock);
        uint64_t start = 0;
        for (int k = 0; k < 2; ++k) start += x.block_stored_length[k];
        std::vector<unsigned char> garbage(x.block_stored_length[2], 0x5A);
        {
            std::fstream f(data_path(tmp.path(), md, md.entries[0]), std::ios::binary | std::ios::in | std::ios::out);
            f.seekp(std::streamoff(x.offset + start));
            f.write(reinterpret_cast<const char *>(garbage.data()), std::streamsize(garbage.size()));
        }
        x.block_crc32[2] = crc32_of(garbage.data(), garbage.size());
        uint32_t crc = 0;
        for (size_t k = 0; k < x.block_crc32.size(); ++k) crc = crc32_combine_of(crc, x.block_crc32[k], x.block_stored_length[k]);
        x.crc32 = crc;
        auto out = encode_metadata(on_disk);
        std::ofstream(meta_path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char *>(out.data()), std::streamsize(out.size()));
        Opened ck(tmp.path());
        EXPECT_SP_ERROR(ck.read_box("w", Box{{9, 0}, {1, 256}}), Code::format, "'w'", "block 2");
        EXPECT_EQ(ck.read_box("w", Box{{0, 0}, {8, 256}}), w.expected(Box{{0, 0}, {8, 256}}));  // blocks 0 and 1
        EXPECT_SP_ERROR(ck.reader().verify_all(), Code::format, "'w'", "block 2");
    }
}

TEST(StorageError, ShuffleWithoutBlockCodecIsRefused) {
    SaveOptions o = small_block_options(6);
    o.shuffle = true;
    EXPECT_SP_ERROR(FileSystemWriter("/tmp/never", o), Code::invalid_argument, "shuffle");
    o = block_options(Transform::zstd_blocks, false);
    o.compression_level = 20;
    EXPECT_SP_ERROR(FileSystemWriter("/tmp/never", o), Code::invalid_argument, "level 20");
}

// FORMAT.md 4, read the way a second implementation would: block k's stored bytes at
// offset + sum of the earlier stored lengths, one zstd frame (or raw when as long as the block),
// byte j of element i at j * m + i, the tail in place. Checked with libzstd directly, not with
// the library's own reader or unshuffle.
TEST(Storage, BlockCompressedBytesAreWhatFormatMdSays) {
    TempDir tmp;
    Tensor w = weights("w", {3001}, 59);  // 12004 bytes: blocks of 4096, 4096, 3812
    Tensor noisy("noisy", DType::u16, {5000}, 60);
    Metadata md = save_items(tmp.path(), {w.item(w.whole()), noisy.item(noisy.whole())}, block_options(Transform::zstd_blocks, true));
    for (const Tensor *t : {&w, &noisy}) {
        const EntryMeta &e = *md.find(t->fqn);
        const Extent &x = e.chunks[0].extent;
        ASSERT_EQ(x.shuffle_width, t->itemsize());
        std::ifstream in(data_path(tmp.path(), md, e), std::ios::binary);
        std::vector<unsigned char> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        uint64_t at = x.offset;
        std::vector<unsigned char> raw;
        for (size_t k = 0; k < x.block_stored_length.size(); ++k) {
            const uint64_t len = x.block_stored_length[k];
            const uint64_t n = std::min<uint64_t>(kBlock, x.raw_length - k * kBlock);
            ASSERT_EQ(crc32_of(file.data() + at, len), x.block_crc32[k]);
            std::vector<unsigned char> block(n);
            if (len == n) {
                std::memcpy(block.data(), file.data() + at, n);
            } else {
                std::vector<unsigned char> shuffled(n);
                ASSERT_EQ(ZSTD_decompress(shuffled.data(), n, file.data() + at, len), n);
                const size_t width = x.shuffle_width, m = n / width;
                for (size_t i = 0; i < m; ++i)
                    for (size_t j = 0; j < width; ++j) block[i * width + j] = shuffled[j * m + i];
                for (size_t b = m * width; b < n; ++b) block[b] = shuffled[b];
            }
            raw.insert(raw.end(), block.begin(), block.end());
            at += len;
        }
        EXPECT_EQ(at, x.offset + x.stored_length);
        EXPECT_EQ(raw, t->image) << t->fqn;
        if (t == &w) EXPECT_LT(x.stored_length, x.raw_length);  // the frames were decoded, not copied
    }
}

TEST(Codec, ShuffleMovesByteJOfElementIToJTimesMPlusI) {
    // 3 elements of 4 bytes and a 2-byte tail: the byte planes, then the tail as it was.
    const std::vector<unsigned char> src = {0x00, 0x01, 0x02, 0x03, 0x10, 0x11, 0x12, 0x13, 0x20, 0x21, 0x22, 0x23, 0xA0, 0xA1};
    std::vector<unsigned char> out(src.size()), back(src.size());
    shuffle_bytes(src.data(), src.size(), 4, out.data());
    EXPECT_EQ(out, (std::vector<unsigned char>{0x00, 0x10, 0x20, 0x01, 0x11, 0x21, 0x02, 0x12, 0x22, 0x03, 0x13, 0x23, 0xA0, 0xA1}));
    unshuffle_bytes(out.data(), out.size(), 4, back.data());
    EXPECT_EQ(back, src);
    for (uint32_t width : {2u, 3u, 8u, 16u}) {
        std::vector<unsigned char> v = sptest::pattern(width, 1000), s(1000), r(1000);
        shuffle_bytes(v.data(), v.size(), width, s.data());
        const size_t m = 1000 / width;
        for (size_t i = 0; i < m; ++i)
            for (size_t j = 0; j < width; ++j) ASSERT_EQ(s[j * m + i], v[i * width + j]) << width;
        unshuffle_bytes(s.data(), s.size(), width, r.data());
        ASSERT_EQ(r, v) << width;
    }
}
