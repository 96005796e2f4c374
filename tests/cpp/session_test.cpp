// The collective flows: SaveSession / Reader / LoadSession with threads as ranks.
#include <signal.h>
#include <sys/resource.h>

#include <atomic>
#include <random>
#include <thread>

#include "shardpoint/checkpoint.hpp"
#include "shardpoint/metadata_codec.hpp"
#include "test_util.hpp"

using namespace shardpoint;
using sptest::contains;
using sptest::RankResult;
using sptest::run_ranks;
using sptest::TempDir;
using sptest::Tensor;

namespace {

// [floor(r*n/W), floor((r+1)*n/W)) as (offset, size).
std::pair<uint64_t, uint64_t> part(uint64_t n, int r, int w) {
    uint64_t lo = uint64_t(r) * n / uint64_t(w), hi = uint64_t(r + 1) * n / uint64_t(w);
    return {lo, hi - lo};
}

Box rows_part(const Dims &shape, int r, int w) {
    Box b{Dims(shape.size(), 0), shape};
    auto [lo, n] = part(shape[0], r, w);
    b.offsets[0] = lo;
    b.sizes[0] = n;
    return b;
}

Box cols_part(const Dims &shape, int r, int w) {
    Box b{Dims(shape.size(), 0), shape};
    auto [lo, n] = part(shape[1], r, w);
    b.offsets[1] = lo;
    b.sizes[1] = n;
    return b;
}

SaveOptions test_save_options(bool overwrite = false) {
    SaveOptions o;
    o.overwrite = overwrite;
    o.io_threads = 2;
    o.checkpoint_id = "session-test";
    return o;
}

LoadOptions test_load_options() {
    LoadOptions o;
    o.io_threads = 2;
    return o;
}

// A small model with every kind of sharding. `seed` changes every byte, so two saves with
// different seeds are told apart by their contents.
struct Model {
    int world;
    Tensor blocks, rows, rep, step;
    std::vector<Tensor> priv;
    std::vector<unsigned char> optim, shared;
    std::vector<std::vector<unsigned char>> rng;

    Model(int w, uint64_t seed)
        : world(w),
          blocks("model.blocks", DType::f32, {8, 12}, seed + 1),
          rows("model.rows", DType::i64, {10, 3}, seed + 2),
          rep("model.rep", DType::bf16, {33, 7}, seed + 3),
          step("model.step", DType::i64, {}, seed + 4),
          optim(sptest::pattern(seed + 5, 3000)),
          shared(sptest::pattern(seed + 6, 777)) {
        for (int r = 0; r < w; ++r) {
            priv.emplace_back("private." + std::to_string(r), DType::u8, Dims{uint64_t(5 + r)}, seed + 10 + r);
            rng.push_back(sptest::pattern(seed + 100 + r, 16 + r));
        }
    }

    // 2-D blocks on a 2 x (world/2) grid (world must be even), rows, replicated, rank-private.
    void offer(SaveSession &s, int r) const {
        auto add = [&](const Tensor &t, const Box &b) { s.add_tensor(t.fqn, t.dtype, t.shape, b.offsets, b.sizes, t.data_at(b), t.strides()); };
        Box blk{{part(8, r / (world / 2), 2).first, part(12, r % (world / 2), world / 2).first},
                {part(8, r / (world / 2), 2).second, part(12, r % (world / 2), world / 2).second}};
        add(blocks, blk);
        add(rows, rows_part(rows.shape, r, world));
        add(rep, rep.whole());
        add(step, step.whole());
        add(priv[r], priv[r].whole());
        if (r == 0) s.add_bytes("optim.state", optim.data(), optim.size());
        s.add_bytes("shared.blob", shared.data(), shared.size());
        s.add_bytes("rng." + std::to_string(r), rng[r].data(), rng[r].size());
        s.set_metadata("step", "1200");
        s.set_metadata("rank_written", std::to_string(r));  // only the coordinator's pairs are kept
    }

    std::vector<std::string> names() const {
        std::vector<std::string> n = {blocks.fqn, rows.fqn, rep.fqn, step.fqn, "optim.state", "shared.blob"};
        for (int r = 0; r < world; ++r) n.push_back(priv[r].fqn), n.push_back("rng." + std::to_string(r));
        std::sort(n.begin(), n.end());
        return n;
    }
};

std::vector<RankResult> save_model(const std::string &dir, const Model &m, SaveOptions options) {
    return run_ranks(m.world, [&](int r, Comm &comm) {
        SaveSession s(dir, &comm, options);
        m.offer(s, r);
        s.commit();
    });
}

void expect_all_ok(const std::vector<RankResult> &results) {
    for (size_t r = 0; r < results.size(); ++r) EXPECT_TRUE(results[r].ok) << "rank " << r << ": " << results[r].message;
}

// Loads everything of `m` whole on one rank (no communicator) and compares every byte.
void expect_model_loads_whole(const std::string &dir, const Model &m) {
    Reader reader(dir, test_load_options());
    LoadSession load(reader, nullptr);
    std::vector<std::vector<unsigned char>> got;
    got.reserve(64);
    std::vector<const Tensor *> tensors = {&m.blocks, &m.rows, &m.rep, &m.step};
    for (auto &p : m.priv) tensors.push_back(&p);
    for (const Tensor *t : tensors) {
        got.emplace_back(t->image.size(), 0xEE);
        load.add_tensor(t->fqn, t->dtype, uint32_t(t->shape.size()), Dims(t->shape.size(), 0), t->shape, got.back().data(), {});
    }
    std::vector<std::pair<std::string, const std::vector<unsigned char> *>> blobs = {{"optim.state", &m.optim}, {"shared.blob", &m.shared}};
    for (int r = 0; r < m.world; ++r) blobs.emplace_back("rng." + std::to_string(r), &m.rng[r]);
    for (auto &b : blobs) {
        got.emplace_back(b.second->size(), 0xEE);
        load.add_bytes(b.first, got.back().data(), got.back().size());
    }
    load.execute();
    size_t k = 0;
    for (const Tensor *t : tensors) EXPECT_EQ(got[k++], t->image) << t->fqn;
    for (auto &b : blobs) EXPECT_EQ(got[k++], *b.second) << b.first;
}

// Lowers this process's file size limit (RLIMIT_FSIZE) for the guard's lifetime: writes past
// it fail with EFBIG, a real I/O error, instead of raising SIGXFSZ.
class FileSizeLimit {
public:
    explicit FileSizeLimit(rlim_t bytes) {
        getrlimit(RLIMIT_FSIZE, &old_);
        old_handler_ = signal(SIGXFSZ, SIG_IGN);
        rlimit lim = old_;
        lim.rlim_cur = bytes;
        ok_ = setrlimit(RLIMIT_FSIZE, &lim) == 0;
    }
    ~FileSizeLimit() {
        setrlimit(RLIMIT_FSIZE, &old_);
        signal(SIGXFSZ, old_handler_);
    }
    bool ok() const { return ok_; }

private:
    rlimit old_{};
    sighandler_t old_handler_;
    bool ok_ = false;
};

}  // namespace

TEST(Session, FourRanksSaveThreeRanksLoadResharded) {
    TempDir tmp;
    const std::string dir = tmp.sub("ckpt");
    Model m(4, 1000);
    expect_all_ok(save_model(dir, m, test_save_options()));

    Reader reader(dir, test_load_options());
    const Metadata &md = reader.metadata();
    std::vector<std::string> names;
    for (auto &e : md.entries) names.push_back(e.fqn);
    EXPECT_EQ(names, m.names());
    EXPECT_EQ(md.storage.world_size, 4u);
    EXPECT_EQ(md.storage.checkpoint_id, "session-test");
    EXPECT_EQ(md.storage.library_version, library_version());
    EXPECT_EQ(md.user, (std::vector<std::pair<std::string, std::string>>{{"step", "1200"}, {"rank_written", "0"}}));
    // Replicated entries are stored once; sharded ones once per rank.
    EXPECT_EQ(md.find("model.rep")->chunks.size(), 1u);
    EXPECT_EQ(md.find("model.step")->chunks.size(), 1u);
    EXPECT_EQ(md.find("shared.blob")->chunks.size(), 1u);
    EXPECT_EQ(md.find("model.blocks")->chunks.size(), 4u);
    EXPECT_EQ(md.find("model.rows")->chunks.size(), 4u);
    for (int r = 0; r < 4; ++r) EXPECT_EQ(md.find("private." + std::to_string(r))->chunks[0].extent.writer_rank, uint32_t(r));
    // Every byte written once: stored bytes equal the model's bytes.
    uint64_t model_bytes = m.blocks.image.size() + m.rows.image.size() + m.rep.image.size() + m.step.image.size() +
                           m.optim.size() + m.shared.size();
    for (int r = 0; r < 4; ++r) model_bytes += m.priv[r].image.size() + m.rng[r].size();
    EXPECT_EQ(reader.total_stored_bytes(), model_bytes);
    for (size_t i = 0; i < md.entries.size(); ++i) EXPECT_EQ(reader.covered_numel(i), md.entries[i].numel()) << md.entries[i].fqn;

    // Three ranks: rows of every tensor (columns for the blocks), blobs whole, all collective.
    const int W = 3;
    auto results = run_ranks(W, [&](int r, Comm &comm) {
        Reader rd(dir, test_load_options());
        LoadSession load(rd, &comm);
        Box blk = cols_part(m.blocks.shape, r, W), rw = rows_part(m.rows.shape, r, W), rp = rows_part(m.rep.shape, r, W);
        std::vector<unsigned char> b(product(blk.sizes) * 4), w(product(rw.sizes) * 8), p(product(rp.sizes) * 2), s(8);
        std::vector<unsigned char> sh(m.shared.size()), op(m.optim.size());
        load.add_tensor("model.blocks", DType::f32, 2, blk.offsets, blk.sizes, b.data(), {});
        load.add_tensor("model.rows", DType::i64, 2, rw.offsets, rw.sizes, w.data(), {});
        load.add_tensor("model.rep", DType::bf16, 2, rp.offsets, rp.sizes, p.data(), {});
        load.add_tensor("model.step", DType::i64, 0, {}, {}, s.data(), {});
        load.add_bytes("shared.blob", sh.data(), sh.size());
        load.add_bytes("optim.state", op.data(), op.size() + 10);  // a larger buffer is fine
        load.execute();
        EXPECT_EQ(b, m.blocks.expected(blk)) << "rank " << r;
        EXPECT_EQ(w, m.rows.expected(rw)) << "rank " << r;
        EXPECT_EQ(p, m.rep.expected(rp)) << "rank " << r;
        EXPECT_EQ(s, m.step.image) << "rank " << r;
        EXPECT_EQ(sh, m.shared) << "rank " << r;
        EXPECT_EQ(op, m.optim) << "rank " << r;
    });
    expect_all_ok(results);
    expect_model_loads_whole(dir, m);
}

// Found by the fuzzer: partial reads of a chunk that starts past its file's first block went
// through a bounce buffer addressed from before its start (UB that UBSan reports). Every value
// must arrive, for boxes inside one block, across blocks and across both chunks.
TEST(Session, PartialReadsThroughBounceBuffersOfALaterChunk) {
    TempDir tmp;
    const std::string dir = tmp.sub("ckpt");
    const uint64_t n = 100000, split = 33333;
    std::vector<float> values(n);
    for (uint64_t i = 0; i < n; ++i) values[i] = float(i) * 0.5f;
    SaveSession s(dir, nullptr, test_save_options());
    s.add_tensor("t", DType::f32, {n}, {0}, {split}, values.data(), {});
    s.add_tensor("t", DType::f32, {n}, {split}, {n - split}, values.data() + split, {});
    s.commit();
    Reader reader(dir, test_load_options());
    for (auto [lo, len] : std::vector<std::pair<uint64_t, uint64_t>>{{20000, 100}, {1, n - 2}, {split + 7, 10}, {50000, 30000}}) {
        std::vector<float> got(len, -1.0f);
        LoadSession load(reader, nullptr);
        load.add_tensor("t", DType::f32, 1, {lo}, {len}, got.data(), {});
        load.execute();
        EXPECT_TRUE(std::equal(got.begin(), got.end(), values.begin() + long(lo))) << "box [" << lo << ", +" << len << ")";
    }
}

TEST(Session, CompressedMultiRankSave) {
    TempDir tmp;
    Model m(2, 7);
    SaveOptions o = test_save_options();
    o.compression_level = 3;
    o.fsync = true;
    expect_all_ok(save_model(tmp.path(), m, o));
    Reader reader(tmp.path(), test_load_options());
    for (auto &e : reader.metadata().entries)
        for (auto &c : e.chunks) EXPECT_EQ(c.extent.transform, Transform::deflate) << e.fqn;
    reader.storage().verify_all();
    expect_model_loads_whole(tmp.path(), m);
}

// A rank whose write fails for a real reason (the file size limit: EFBIG) makes every rank
// fail: it reports its I/O error, the others SHARDPOINT_ERANK naming it. Nothing is committed and
// the checkpoint that was there stays intact and loadable.
TEST(Session, RankFailingMidSaveLeavesPreviousCheckpointIntact) {
    TempDir tmp;
    const std::string dir = tmp.sub("ckpt");
    Model before(4, 1);
    expect_all_ok(save_model(dir, before, test_save_options()));
    const auto listing = sptest::list_dir(dir);
    const auto meta_bytes = sptest::read_file(dir + "/shardpoint.meta");

    Model after(4, 2);  // different bytes: a committed second save would show
    std::vector<unsigned char> big(4u << 20, 0x5a);  // rank 2's extra tensor, past the limit
    std::vector<RankResult> results;
    {
        FileSizeLimit limit(1u << 20);
        ASSERT_TRUE(limit.ok());
        results = run_ranks(4, [&](int r, Comm &comm) {
            SaveSession s(dir, &comm, test_save_options(true));
            after.offer(s, r);
            if (r == 2) s.add_tensor("big.r2", DType::u8, {big.size()}, {0}, {big.size()}, big.data(), {});
            s.commit();
        });
    }
    ASSERT_FALSE(results[2].ok);
    EXPECT_EQ(results[2].code, Code::io) << results[2].message;
    EXPECT_TRUE(contains(results[2].message, "File too large")) << results[2].message;
    EXPECT_TRUE(contains(results[2].message, "-r00002.bin")) << results[2].message;
    for (int r : {0, 1, 3}) {
        ASSERT_FALSE(results[r].ok) << "rank " << r << " did not learn of rank 2's failure";
        EXPECT_EQ(results[r].code, Code::rank) << results[r].message;
        EXPECT_TRUE(contains(results[r].message, "rank 2")) << results[r].message;
        EXPECT_TRUE(contains(results[r].message, "writing")) << results[r].message;
        EXPECT_TRUE(contains(results[r].message, "File too large")) << results[r].message;
    }
    EXPECT_EQ(sptest::list_dir(dir), listing) << "the failed save left files behind or removed old ones";
    EXPECT_EQ(sptest::read_file(dir + "/shardpoint.meta"), meta_bytes);
    expect_model_loads_whole(dir, before);
    Reader reader(dir, test_load_options());
    reader.storage().verify_all();
}

// The failing rank may be the coordinator itself.
TEST(Session, CoordinatorFailingMidSave) {
    TempDir tmp;
    const std::string dir = tmp.sub("ckpt");
    Model before(2, 3);
    expect_all_ok(save_model(dir, before, test_save_options()));
    const auto listing = sptest::list_dir(dir);
    std::vector<unsigned char> big(4u << 20, 1);
    std::vector<RankResult> results;
    {
        FileSizeLimit limit(1u << 20);
        ASSERT_TRUE(limit.ok());
        results = run_ranks(2, [&](int r, Comm &comm) {
            SaveSession s(dir, &comm, test_save_options(true));
            before.offer(s, r);
            if (r == 0) s.add_tensor("big.r0", DType::u8, {big.size()}, {0}, {big.size()}, big.data(), {});
            s.commit();
        });
    }
    EXPECT_EQ(results[0].code, Code::io) << results[0].message;
    EXPECT_EQ(results[1].code, Code::rank) << results[1].message;
    EXPECT_TRUE(contains(results[1].message, "rank 0")) << results[1].message;
    EXPECT_EQ(sptest::list_dir(dir), listing);
    expect_model_loads_whole(dir, before);
}

// The coordinator fails while committing the metadata (it is larger than the file size limit,
// the data files are not): every rank fails, the others naming rank 0 and the commit step; the
// data files of the failed save are removed and the previous checkpoint stays.
TEST(Session, CoordinatorFailingAtCommit) {
    TempDir tmp;
    const std::string dir = tmp.sub("ckpt");
    Model before(2, 4);
    expect_all_ok(save_model(dir, before, test_save_options()));
    const auto listing = sptest::list_dir(dir);
    const auto meta_bytes = sptest::read_file(dir + "/shardpoint.meta");

    std::vector<uint8_t> tiny(3000, 7);
    std::vector<RankResult> results;
    {
        FileSizeLimit limit(64u << 10);
        ASSERT_TRUE(limit.ok());
        results = run_ranks(2, [&](int r, Comm &comm) {
            SaveOptions o = test_save_options(true);
            o.alignment = 1;  // 3000 one-byte tensors: a 3000-byte data file, a ~300 KiB metadata file
            SaveSession s(dir, &comm, o);
            if (r == 1)
                for (int k = 0; k < 3000; ++k) s.add_tensor("t." + std::to_string(k), DType::u8, {1}, {0}, {1}, &tiny[size_t(k)], {});
            s.commit();
        });
    }
    EXPECT_EQ(results[0].code, Code::io) << results[0].message;
    EXPECT_TRUE(contains(results[0].message, "File too large")) << results[0].message;
    EXPECT_EQ(results[1].code, Code::rank) << results[1].message;
    EXPECT_TRUE(contains(results[1].message, "rank 0")) << results[1].message;
    EXPECT_TRUE(contains(results[1].message, "commit")) << results[1].message;
    EXPECT_EQ(sptest::list_dir(dir), listing) << "data or temporary metadata files of the failed save remain";
    EXPECT_EQ(sptest::read_file(dir + "/shardpoint.meta"), meta_bytes);
    expect_model_loads_whole(dir, before);
}

// The C ABI promises that one Reader may serve concurrent loads.
TEST(Session, ConcurrentLoadsFromOneReader) {
    TempDir tmp;
    Model m(4, 21);
    expect_all_ok(save_model(tmp.path(), m, test_save_options()));
    Reader reader(tmp.path(), test_load_options());
    std::atomic<int> mismatches{0}, errors{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            std::mt19937_64 rng{uint64_t(t)};
            for (int q = 0; q < 50; ++q) {
                const Tensor &x = q % 2 ? m.rep : m.blocks;
                Box b;
                for (uint64_t n : x.shape) {
                    uint64_t lo = rng() % n, len = 1 + rng() % (n - lo);
                    b.offsets.push_back(lo);
                    b.sizes.push_back(len);
                }
                std::vector<unsigned char> got(product(b.sizes) * x.itemsize());
                try {
                    LoadSession load(reader, nullptr);
                    load.add_tensor(x.fqn, x.dtype, 2, b.offsets, b.sizes, got.data(), {});
                    load.execute();
                    if (got != x.expected(b)) ++mismatches;
                } catch (const Error &) {
                    ++errors;
                }
            }
        });
    }
    for (auto &th : threads) th.join();
    EXPECT_EQ(mismatches.load(), 0);
    EXPECT_EQ(errors.load(), 0);
}

// A rank that cannot even prepare (its directory path runs through a regular file) fails the
// planning step on every rank; nothing is written anywhere.
TEST(Session, RankFailingWhilePlanning) {
    TempDir tmp;
    const std::string dir = tmp.sub("ckpt");
    sptest::write_file(tmp.sub("plain-file"), {1, 2, 3});
    Model m(4, 5);
    auto results = run_ranks(4, [&](int r, Comm &comm) {
        SaveSession s(r == 1 ? tmp.sub("plain-file/ckpt") : dir, &comm, test_save_options());
        m.offer(s, r);
        s.commit();
    });
    EXPECT_EQ(results[1].code, Code::io) << results[1].message;
    for (int r : {0, 2, 3}) {
        EXPECT_EQ(results[r].code, Code::rank) << results[r].message;
        EXPECT_TRUE(contains(results[r].message, "rank 1")) << results[r].message;
        EXPECT_TRUE(contains(results[r].message, "planning")) << results[r].message;
    }
    EXPECT_TRUE(sptest::list_dir(dir).empty());
}

TEST(Session, ConflictingDtypesFailOnEveryRank) {
    TempDir tmp;
    std::vector<float> f(16, 1.0f);
    auto results = run_ranks(4, [&](int r, Comm &comm) {
        SaveSession s(tmp.path(), &comm, test_save_options());
        s.add_tensor("ok", DType::f32, {4, 4}, {uint64_t(r), 0}, {1, 4}, f.data(), {});
        if (r == 1) s.add_tensor("layer.w", DType::f32, {4, 4}, {0, 0}, {2, 4}, f.data(), {});
        if (r == 3) s.add_tensor("layer.w", DType::f16, {4, 4}, {2, 0}, {2, 4}, f.data(), {});
        s.commit();
    });
    for (int r = 0; r < 4; ++r) {
        EXPECT_EQ(results[r].code, Code::conflict) << "rank " << r << ": " << results[r].message;
        EXPECT_TRUE(contains(results[r].message, "'layer.w'")) << results[r].message;
        EXPECT_TRUE(contains(results[r].message, "ranks 1 and 3")) << results[r].message;
    }
    EXPECT_TRUE(sptest::list_dir(tmp.path()).empty()) << "a conflict is found before any byte is written";
}

TEST(Session, PartiallyOverlappingOffersFailOnEveryRank) {
    TempDir tmp;
    std::vector<double> d(100, 2.0);
    auto results = run_ranks(3, [&](int r, Comm &comm) {
        SaveSession s(tmp.path(), &comm, test_save_options());
        // Rows [3r, 3r+4): each rank's chunk overlaps the next rank's by one row.
        s.add_tensor("emb", DType::f64, {10, 10}, {uint64_t(3 * r), 0}, {4, 10}, d.data(), {});
        s.commit();
    });
    for (int r = 0; r < 3; ++r) {
        EXPECT_EQ(results[r].code, Code::conflict) << results[r].message;
        EXPECT_TRUE(contains(results[r].message, "'emb'")) << results[r].message;
        EXPECT_TRUE(contains(results[r].message, "overlap")) << results[r].message;
    }
    EXPECT_TRUE(sptest::list_dir(tmp.path()).empty());
}

TEST(Session, ExistingCheckpointWithoutOverwriteFailsOnEveryRank) {
    TempDir tmp;
    Model m(2, 9);
    expect_all_ok(save_model(tmp.path(), m, test_save_options()));
    auto listing = sptest::list_dir(tmp.path());
    auto results = save_model(tmp.path(), Model(2, 10), test_save_options(false));
    for (auto &r : results) {
        EXPECT_EQ(r.code, Code::exists) << r.message;
        EXPECT_TRUE(contains(r.message, "overwrite")) << r.message;
    }
    EXPECT_EQ(sptest::list_dir(tmp.path()), listing);
    expect_model_loads_whole(tmp.path(), m);
}

TEST(Session, OverwriteReplacesTheCheckpoint) {
    TempDir tmp;
    expect_all_ok(save_model(tmp.path(), Model(4, 11), test_save_options()));
    Model second(2, 12);
    expect_all_ok(save_model(tmp.path(), second, test_save_options(true)));
    expect_model_loads_whole(tmp.path(), second);
    Reader reader(tmp.path(), test_load_options());
    // Only the new save's files remain.
    std::vector<std::string> want{"shardpoint.meta"};
    for (auto &f : reader.metadata().files) want.push_back(f.name);
    std::sort(want.begin(), want.end());
    EXPECT_EQ(sptest::list_dir(tmp.path()), want);
}

// One rank's read fails (a damaged extent only it reads): it reports the checksum error, the
// others SHARDPOINT_ERANK naming it.
TEST(Session, RankFailingDuringLoad) {
    TempDir tmp;
    Model m(4, 13);
    expect_all_ok(save_model(tmp.path(), m, test_save_options()));
    {
        Reader reader(tmp.path(), test_load_options());
        const Metadata &md = reader.metadata();
        const EntryMeta *victim = md.find("private.2");
        sptest::flip_byte(tmp.path() + "/" + md.files[victim->chunks[0].extent.file].name, victim->chunks[0].extent.offset + 3);
    }
    auto results = run_ranks(3, [&](int r, Comm &comm) {
        Reader reader(tmp.path(), test_load_options());
        LoadSession load(reader, &comm);
        std::vector<unsigned char> buf(100);
        const Tensor &t = r == 1 ? m.priv[2] : m.priv[0];
        load.add_tensor(t.fqn, DType::u8, 1, {0}, t.shape, buf.data(), {});
        load.execute();
    });
    EXPECT_EQ(results[1].code, Code::checksum) << results[1].message;
    EXPECT_TRUE(contains(results[1].message, "'private.2'")) << results[1].message;
    for (int r : {0, 2}) {
        EXPECT_EQ(results[r].code, Code::rank) << results[r].message;
        EXPECT_TRUE(contains(results[r].message, "rank 1")) << results[r].message;
        EXPECT_TRUE(contains(results[r].message, "reading")) << results[r].message;
    }
}

TEST(Session, ScalarAndEmptyEntries) {
    TempDir tmp;
    int64_t scalar = -42;
    auto results = run_ranks(2, [&](int r, Comm &comm) {
        SaveSession s(tmp.path(), &comm, test_save_options());
        s.add_tensor("scalar", DType::i64, {}, {}, {}, &scalar, {});
        s.add_tensor("empty", DType::f32, {0, 3}, {0, 0}, {0, 3}, nullptr, {});
        if (r == 1) s.add_bytes("empty.blob", nullptr, 0);
        s.commit();
    });
    expect_all_ok(results);
    Reader reader(tmp.path(), test_load_options());
    EXPECT_EQ(reader.metadata().find("scalar")->chunks.size(), 1u);
    int64_t got = 0;
    LoadSession load(reader, nullptr);
    load.add_tensor("scalar", DType::i64, 0, {}, {}, &got, {});
    load.add_tensor("empty", DType::f32, 2, {0, 0}, {0, 3}, nullptr, {});
    load.add_bytes("empty.blob", nullptr, 0);
    load.execute();
    EXPECT_EQ(got, -42);
    reader.storage().verify_all();
}

// ---------------------------------------------------------------------------------------------
// Bad requests, each with its own code

class SessionErrors : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new TempDir();
        model_ = new Model(2, 77);
        // "partial" has rows 0..4 of 10 saved only.
        std::vector<unsigned char> rows(5 * 4, 9);
        auto results = run_ranks(2, [&](int r, Comm &comm) {
            SaveOptions o = test_save_options();
            o.allow_partial = true;  // "partial" on purpose
            SaveSession s(dir_->path(), &comm, o);
            model_->offer(s, r);
            if (r == 0) s.add_tensor("partial", DType::u8, {10, 4}, {0, 0}, {5, 4}, rows.data(), {});
            s.commit();
        });
        for (auto &r : results) ASSERT_TRUE(r.ok) << r.message;
    }
    static void TearDownTestSuite() {
        delete model_;
        delete dir_;
    }
    static TempDir *dir_;
    static Model *model_;
};
TempDir *SessionErrors::dir_ = nullptr;
Model *SessionErrors::model_ = nullptr;

TEST_F(SessionErrors, UnknownEntry) {
    Reader reader(dir_->path(), test_load_options());
    LoadSession load(reader, nullptr);
    char buf[8];
    EXPECT_SP_ERROR(load.add_tensor("no.such.tensor", DType::f32, 1, {0}, {1}, buf, {}), Code::not_found, "'no.such.tensor'");
    EXPECT_SP_ERROR(load.add_bytes("no.such.blob", buf, 8), Code::not_found, "'no.such.blob'");
}

TEST_F(SessionErrors, AllowPartialSkipsUnknownEntries) {
    LoadOptions o = test_load_options();
    o.allow_partial = true;
    Reader reader(dir_->path(), o);
    LoadSession load(reader, nullptr);
    char buf[8];
    load.add_tensor("no.such.tensor", DType::f32, 1, {0}, {1}, buf, {});
    load.add_bytes("no.such.blob", buf, 8);
    std::vector<unsigned char> s(8);
    load.add_tensor("model.step", DType::i64, 0, {}, {}, s.data(), {});
    load.execute();
    EXPECT_EQ(load.skipped(), 2u);
    EXPECT_EQ(s, model_->step.image);
}

TEST_F(SessionErrors, WrongKind) {
    Reader reader(dir_->path(), test_load_options());
    LoadSession load(reader, nullptr);
    std::vector<unsigned char> buf(4096);
    EXPECT_SP_ERROR(load.add_tensor("optim.state", DType::u8, 1, {0}, {10}, buf.data(), {}), Code::kind, "'optim.state'", "bytes");
    EXPECT_SP_ERROR(load.add_bytes("model.rows", buf.data(), buf.size()), Code::kind, "'model.rows'", "tensor");
}

TEST_F(SessionErrors, WrongDtype) {
    Reader reader(dir_->path(), test_load_options());
    LoadSession load(reader, nullptr);
    std::vector<unsigned char> buf(4096);
    EXPECT_SP_ERROR(load.add_tensor("model.blocks", DType::f16, 2, {0, 0}, {8, 12}, buf.data(), {}), Code::dtype, "'model.blocks'",
                    "f32", "f16");
}

TEST_F(SessionErrors, WrongNumberOfDimensions) {
    Reader reader(dir_->path(), test_load_options());
    LoadSession load(reader, nullptr);
    std::vector<unsigned char> buf(4096);
    EXPECT_SP_ERROR(load.add_tensor("model.blocks", DType::f32, 1, {0}, {96}, buf.data(), {}), Code::shape, "'model.blocks'",
                    "2 dimensions");
}

TEST_F(SessionErrors, BoxOutsideTheTensor) {
    Reader reader(dir_->path(), test_load_options());
    LoadSession load(reader, nullptr);
    std::vector<unsigned char> buf(4096);
    EXPECT_SP_ERROR(load.add_tensor("model.blocks", DType::f32, 2, {6, 0}, {3, 12}, buf.data(), {}), Code::shape, "'model.blocks'",
                    "outside");
    EXPECT_SP_ERROR(load.add_tensor("model.blocks", DType::f32, 2, {0, UINT64_MAX}, {1, 2}, buf.data(), {}), Code::shape);
}

TEST_F(SessionErrors, UncoveredBox) {
    Reader reader(dir_->path(), test_load_options());
    LoadSession load(reader, nullptr);
    std::vector<unsigned char> buf(40);
    EXPECT_SP_ERROR(load.add_tensor("partial", DType::u8, 2, {3, 0}, {4, 4}, buf.data(), {}), Code::uncovered, "'partial'",
                    "8 of 16");
    load.add_tensor("partial", DType::u8, 2, {1, 1}, {4, 3}, buf.data(), {});  // inside the saved rows
    load.execute();
}

TEST_F(SessionErrors, BytesBufferTooSmall) {
    Reader reader(dir_->path(), test_load_options());
    LoadSession load(reader, nullptr);
    std::vector<unsigned char> buf(2999);
    EXPECT_SP_ERROR(load.add_bytes("optim.state", buf.data(), buf.size()), Code::range, "'optim.state'", "3000", "2999");
}

TEST_F(SessionErrors, NullDestination) {
    Reader reader(dir_->path(), test_load_options());
    LoadSession load(reader, nullptr);
    EXPECT_SP_ERROR(load.add_tensor("model.rows", DType::i64, 2, {0, 0}, {1, 1}, nullptr, {}), Code::invalid_argument, "'model.rows'");
    EXPECT_SP_ERROR(load.add_bytes("optim.state", nullptr, 5000), Code::invalid_argument, "'optim.state'");
}

TEST_F(SessionErrors, ExecuteTwice) {
    Reader reader(dir_->path(), test_load_options());
    LoadSession load(reader, nullptr);
    load.execute();
    EXPECT_SP_ERROR(load.execute(), Code::state, "already");
    char buf[8];
    EXPECT_SP_ERROR(load.add_tensor("model.step", DType::i64, 0, {}, {}, buf, {}), Code::state, "already");
}

TEST(SaveErrors, LocalMistakesAreCaughtWhenAdded) {
    TempDir tmp;
    std::vector<float> data(64);
    SaveSession s(tmp.path(), nullptr, test_save_options());
    EXPECT_SP_ERROR(s.add_tensor("", DType::f32, {4}, {0}, {4}, data.data(), {}), Code::invalid_argument, "empty");
    EXPECT_SP_ERROR(s.add_tensor(std::string("a\0b", 3), DType::f32, {4}, {0}, {4}, data.data(), {}), Code::invalid_argument, "NUL");
    EXPECT_SP_ERROR(s.add_tensor("t", DType(99), {4}, {0}, {4}, data.data(), {}), Code::invalid_argument, "dtype");
    EXPECT_SP_ERROR(s.add_tensor("t", DType::f32, {4}, {2}, {3}, data.data(), {}), Code::shape, "'t'", "outside");
    EXPECT_SP_ERROR(s.add_tensor("t", DType::f32, {4, 4}, {0}, {4}, data.data(), {}), Code::shape, "'t'");
    EXPECT_SP_ERROR(s.add_tensor("t", DType::f32, Dims(33, 1), Dims(33, 0), Dims(33, 1), data.data(), {}), Code::shape, "32");
    EXPECT_SP_ERROR(s.add_tensor("t", DType::f32, {4}, {0}, {4}, nullptr, {}), Code::invalid_argument, "NULL");
    EXPECT_SP_ERROR(s.add_bytes("b", nullptr, 4), Code::invalid_argument, "NULL");
    s.add_tensor("t", DType::f32, {8, 8}, {0, 0}, {4, 8}, data.data(), {});
    EXPECT_SP_ERROR(s.add_tensor("t", DType::f32, {8, 8}, {2, 0}, {4, 8}, data.data(), {}), Code::conflict, "'t'", "overlaps");
    EXPECT_SP_ERROR(s.add_tensor("t", DType::f64, {8, 8}, {4, 0}, {4, 8}, data.data(), {}), Code::conflict, "'t'");
    EXPECT_SP_ERROR(s.add_bytes("t", data.data(), 4), Code::conflict, "'t'");
    s.add_tensor("t", DType::f32, {8, 8}, {4, 0}, {4, 8}, data.data(), {});
    s.commit();
    EXPECT_SP_ERROR(s.commit(), Code::state, "already");
    EXPECT_SP_ERROR(s.add_bytes("late", data.data(), 4), Code::state, "already");
    EXPECT_SP_ERROR(s.set_metadata("k", "v"), Code::state, "already");
}

TEST(SaveErrors, BadOptions) {
    SaveOptions o;
    o.alignment = 3000;
    EXPECT_SP_ERROR(SaveSession("x", nullptr, o), Code::invalid_argument, "alignment");
    o = SaveOptions{};
    o.compression_level = 10;
    EXPECT_SP_ERROR(SaveSession("x", nullptr, o), Code::invalid_argument, "compression");
    EXPECT_SP_ERROR(SaveSession("", nullptr, SaveOptions{}), Code::invalid_argument, "empty");
}

TEST(ReaderErrors, NoCheckpoint) {
    TempDir tmp;
    EXPECT_SP_ERROR(Reader(tmp.path(), LoadOptions{}), Code::not_found, tmp.path());
}

TEST(ReaderErrors, CorruptMetadataFile) {
    TempDir tmp;
    expect_all_ok(save_model(tmp.path(), Model(2, 5), test_save_options()));
    sptest::flip_byte(tmp.sub("shardpoint.meta"), 100);
    EXPECT_SP_ERROR(Reader(tmp.path(), LoadOptions{}), Code::checksum, "CRC-32");
}
