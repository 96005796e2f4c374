// The save planner (dedup, balance, conflicts), the chunk index and the load planner.
#include <chrono>
#include <map>
#include <random>
#include <set>
#include <tuple>

#include "shardpoint/planner.hpp"
#include "test_util.hpp"

using namespace shardpoint;
using sptest::contains;

namespace {

WriteItem tensor_item(const std::string &fqn, DType dtype, Dims shape, Dims offsets, Dims sizes) {
    WriteItem w;
    w.index = MetadataIndex{fqn, std::move(offsets)};
    w.kind = EntryKind::tensor;
    w.dtype = dtype;
    w.global_shape = std::move(shape);
    w.sizes = std::move(sizes);
    return w;
}

WriteItem bytes_item(const std::string &fqn, uint64_t len) {
    WriteItem w;
    w.index = MetadataIndex{fqn, {0}};
    w.kind = EntryKind::bytes;
    w.dtype = DType::u8;
    w.global_shape = {len};
    w.sizes = {len};
    return w;
}

// Bytes each rank is assigned by the global plan.
std::vector<uint64_t> loads_of(const GlobalSavePlan &g, const std::vector<SavePlan> &plans) {
    std::vector<uint64_t> load(plans.size(), 0);
    for (size_t r = 0; r < plans.size(); ++r)
        for (uint32_t i : g.writes[r]) load[r] += plans[r].items.at(i).nbytes();
    return load;
}

using ChunkKey = std::tuple<std::string, Dims, Dims>;

// Every distinct chunk offered is written exactly once, by a rank that offered it.
void expect_each_chunk_written_once(const GlobalSavePlan &g, const std::vector<SavePlan> &plans) {
    ASSERT_EQ(g.writes.size(), plans.size());
    std::map<ChunkKey, std::set<size_t>> offered_by;
    for (size_t r = 0; r < plans.size(); ++r)
        for (auto &w : plans[r].items) offered_by[ChunkKey{w.index.fqn, w.index.offsets, w.sizes}].insert(r);
    std::map<ChunkKey, int> written;
    for (size_t r = 0; r < plans.size(); ++r) {
        EXPECT_TRUE(std::is_sorted(g.writes[r].begin(), g.writes[r].end()));
        for (uint32_t i : g.writes[r]) {
            ASSERT_LT(i, plans[r].items.size());
            const WriteItem &w = plans[r].items[i];
            ChunkKey key{w.index.fqn, w.index.offsets, w.sizes};
            ++written[key];
            EXPECT_TRUE(offered_by[key].count(r)) << w.index.fqn << " written by rank " << r << " which did not offer it";
        }
    }
    for (auto &kv : offered_by) EXPECT_EQ(written[kv.first], 1) << std::get<0>(kv.first) << " is not written exactly once";
}

}  // namespace

TEST(GlobalSavePlan, WritesIdenticalChunksOnce) {
    const int world = 4;
    std::vector<SavePlan> plans(world);
    for (int r = 0; r < world; ++r) {
        plans[r].items.push_back(tensor_item("rep", DType::f32, {16, 16}, {0, 0}, {16, 16}));
        plans[r].items.push_back(tensor_item("rows", DType::f32, {8, 4}, {uint64_t(2 * r), 0}, {2, 4}));
        if (r % 2 == 1) plans[r].items.push_back(bytes_item("blob", 100));
        plans[r].items.push_back(tensor_item("private" + std::to_string(r), DType::i64, {3}, {0}, {3}));
    }
    GlobalSavePlan g = create_global_save_plan(plans);
    expect_each_chunk_written_once(g, plans);
    // Unique chunks stay with their only offerer.
    for (int r = 0; r < world; ++r) {
        std::set<std::string> mine;
        for (uint32_t i : g.writes[r]) mine.insert(plans[r].items[i].index.fqn);
        EXPECT_TRUE(mine.count("rows")) << "rank " << r;
        EXPECT_TRUE(mine.count("private" + std::to_string(r))) << "rank " << r;
    }
}

TEST(GlobalSavePlan, SpreadsReplicatedChunksEvenly) {
    const int world = 4;
    std::vector<SavePlan> plans(world);
    for (int r = 0; r < world; ++r)
        for (int k = 0; k < 8; ++k) plans[r].items.push_back(tensor_item("rep" + std::to_string(k), DType::u8, {1024}, {0}, {1024}));
    GlobalSavePlan g = create_global_save_plan(plans);
    expect_each_chunk_written_once(g, plans);
    for (int r = 0; r < world; ++r) EXPECT_EQ(g.writes[r].size(), 2u) << "rank " << r;
}

TEST(GlobalSavePlan, ReplicatedChunksAvoidTheBusiestRank) {
    const int world = 4;
    std::vector<SavePlan> plans(world);
    plans[0].items.push_back(tensor_item("big_private", DType::u8, {8192}, {0}, {8192}));
    for (int r = 0; r < world; ++r)
        for (int k = 0; k < 8; ++k) plans[r].items.push_back(tensor_item("rep" + std::to_string(k), DType::u8, {1024}, {0}, {1024}));
    GlobalSavePlan g = create_global_save_plan(plans);
    expect_each_chunk_written_once(g, plans);
    auto load = loads_of(g, plans);
    EXPECT_EQ(load[0], 8192u) << "rank 0 already writes 8 KiB and should get no replicated chunk";
    uint64_t lo = *std::min_element(load.begin() + 1, load.end()), hi = *std::max_element(load.begin() + 1, load.end());
    EXPECT_LE(hi - lo, 1024u);
}

TEST(GlobalSavePlan, ReplicatedChunkGoesOnlyToOfferingRanks) {
    std::vector<SavePlan> plans(4);
    plans[0].items.push_back(tensor_item("x", DType::u8, {100}, {0}, {100}));
    for (int r : {1, 2}) plans[r].items.push_back(tensor_item("shared", DType::f64, {64}, {0}, {64}));
    GlobalSavePlan g = create_global_save_plan(plans);
    expect_each_chunk_written_once(g, plans);
    EXPECT_TRUE(g.writes[3].empty());
    EXPECT_EQ(g.writes[1].size() + g.writes[2].size(), 1u);
}

// Greedy largest-first placement: with every rank offering every chunk, the spread between the
// most and least loaded rank never exceeds the largest chunk.
TEST(GlobalSavePlan, RandomReplicatedLoadsStayWithinOneChunk) {
    std::mt19937_64 rng(7);
    for (int trial = 0; trial < 50; ++trial) {
        int world = 2 + int(rng() % 6);
        int chunks = 1 + int(rng() % 40);
        std::vector<uint64_t> sizes(chunks);
        for (auto &s : sizes) s = 1 + rng() % 5000;
        std::vector<SavePlan> plans(world);
        for (int r = 0; r < world; ++r)
            for (int k = 0; k < chunks; ++k)
                plans[r].items.push_back(tensor_item("t" + std::to_string(k), DType::u8, {sizes[k]}, {0}, {sizes[k]}));
        GlobalSavePlan g = create_global_save_plan(plans);
        expect_each_chunk_written_once(g, plans);
        auto load = loads_of(g, plans);
        uint64_t spread = *std::max_element(load.begin(), load.end()) - *std::min_element(load.begin(), load.end());
        EXPECT_LE(spread, *std::max_element(sizes.begin(), sizes.end())) << "trial " << trial;
    }
}

TEST(GlobalSavePlan, EmptyPlansGiveEmptyWrites) {
    std::vector<SavePlan> plans(3);
    GlobalSavePlan g = create_global_save_plan(plans);
    ASSERT_EQ(g.writes.size(), 3u);
    for (auto &w : g.writes) EXPECT_TRUE(w.empty());
}

TEST(GlobalSavePlanConflict, DtypeMismatch) {
    std::vector<SavePlan> plans(3);
    plans[0].items.push_back(tensor_item("layer.w", DType::f32, {4, 4}, {0, 0}, {2, 4}));
    plans[2].items.push_back(tensor_item("layer.w", DType::f16, {4, 4}, {2, 0}, {2, 4}));
    EXPECT_SP_ERROR(create_global_save_plan(plans), Code::conflict, "'layer.w'", "ranks 0 and 2", "f32", "f16");
}

TEST(GlobalSavePlanConflict, ShapeMismatch) {
    std::vector<SavePlan> plans(2);
    plans[0].items.push_back(tensor_item("emb", DType::f32, {4, 4}, {0, 0}, {2, 4}));
    plans[1].items.push_back(tensor_item("emb", DType::f32, {4, 5}, {2, 0}, {2, 5}));
    EXPECT_SP_ERROR(create_global_save_plan(plans), Code::conflict, "'emb'", "ranks 0 and 1", "[4,4]", "[4,5]");
}

TEST(GlobalSavePlanConflict, TensorAndBytesUnderOneName) {
    std::vector<SavePlan> plans(2);
    plans[0].items.push_back(tensor_item("state", DType::u8, {10}, {0}, {10}));
    plans[1].items.push_back(bytes_item("state", 10));
    EXPECT_SP_ERROR(create_global_save_plan(plans), Code::conflict, "'state'", "ranks 0 and 1", "bytes");
}

TEST(GlobalSavePlanConflict, BytesOfDifferentLengths) {
    std::vector<SavePlan> plans(3);
    plans[1].items.push_back(bytes_item("optim", 10));
    plans[2].items.push_back(bytes_item("optim", 11));
    EXPECT_SP_ERROR(create_global_save_plan(plans), Code::conflict, "'optim'", "ranks 1 and 2", "10", "11");
}

TEST(GlobalSavePlanConflict, PartiallyOverlappingRows) {
    std::vector<SavePlan> plans(4);
    plans[0].items.push_back(tensor_item("w", DType::f32, {8, 4}, {0, 0}, {1, 4}));
    plans[1].items.push_back(tensor_item("w", DType::f32, {8, 4}, {1, 0}, {3, 4}));
    plans[3].items.push_back(tensor_item("w", DType::f32, {8, 4}, {3, 0}, {2, 4}));
    EXPECT_SP_ERROR(create_global_save_plan(plans), Code::conflict, "'w'", "ranks 1 and 3", "overlap");
}

TEST(GlobalSavePlanConflict, PartiallyOverlappingBlocks) {
    std::vector<SavePlan> plans(2);
    plans[0].items.push_back(tensor_item("blk", DType::i32, {6, 6}, {0, 0}, {4, 4}));
    plans[1].items.push_back(tensor_item("blk", DType::i32, {6, 6}, {3, 3}, {3, 3}));
    EXPECT_SP_ERROR(create_global_save_plan(plans), Code::conflict, "'blk'", "ranks 0 and 1", "overlap");
}

TEST(GlobalSavePlanConflict, ChunkContainedInAnother) {
    std::vector<SavePlan> plans(2);
    plans[0].items.push_back(tensor_item("c", DType::u8, {10, 10}, {0, 0}, {10, 10}));
    plans[1].items.push_back(tensor_item("c", DType::u8, {10, 10}, {2, 2}, {3, 3}));
    EXPECT_SP_ERROR(create_global_save_plan(plans), Code::conflict, "'c'", "ranks 0 and 1");
}

TEST(GlobalSavePlan, TouchingAndEmptyChunksDoNotConflict) {
    std::vector<SavePlan> plans(3);
    plans[0].items.push_back(tensor_item("t", DType::u8, {4, 4}, {0, 0}, {2, 2}));
    plans[1].items.push_back(tensor_item("t", DType::u8, {4, 4}, {0, 2}, {2, 2}));
    plans[2].items.push_back(tensor_item("t", DType::u8, {4, 4}, {2, 0}, {2, 4}));
    plans[2].items.push_back(tensor_item("t", DType::u8, {4, 4}, {1, 1}, {0, 2}));  // holds no element
    GlobalSavePlan g = create_global_save_plan(plans);
    expect_each_chunk_written_once(g, plans);
}

// ---------------------------------------------------------------------------------------------
// ChunkIndex against brute force

namespace {

bool brute_overlap(const Box &a, const Box &b) {
    for (size_t d = 0; d < a.offsets.size(); ++d) {
        uint64_t lo = std::max(a.offsets[d], b.offsets[d]);
        uint64_t hi = std::min(a.offsets[d] + a.sizes[d], b.offsets[d] + b.sizes[d]);
        if (lo >= hi) return false;
    }
    return true;
}

Box random_box(std::mt19937_64 &rng, const Dims &shape, bool allow_empty) {
    Box b;
    for (uint64_t n : shape) {
        uint64_t lo = rng() % (n + (allow_empty ? 1 : 0));
        uint64_t max_len = n - lo;
        uint64_t len = allow_empty ? rng() % (max_len + 1) : 1 + rng() % max_len;
        b.offsets.push_back(lo);
        b.sizes.push_back(len);
    }
    return b;
}

// Splits each dimension at random cut points: the chunks tile the tensor exactly.
std::vector<Box> random_grid(std::mt19937_64 &rng, const Dims &shape) {
    std::vector<std::vector<uint64_t>> cuts(shape.size());
    for (size_t d = 0; d < shape.size(); ++d) {
        std::set<uint64_t> c{0, shape[d]};
        int extra = int(rng() % 5);
        for (int k = 0; k < extra; ++k) c.insert(rng() % (shape[d] + 1));
        cuts[d].assign(c.begin(), c.end());
    }
    size_t total = 1;
    for (auto &c : cuts) total *= c.size() - 1;
    std::vector<Box> boxes;
    for (size_t k = 0; k < total; ++k) {
        Box b;
        size_t rest = k;
        for (size_t d = shape.size(); d-- > 0;) {
            size_t i = rest % (cuts[d].size() - 1);
            rest /= cuts[d].size() - 1;
            b.offsets.insert(b.offsets.begin(), cuts[d][i]);
            b.sizes.insert(b.sizes.begin(), cuts[d][i + 1] - cuts[d][i]);
        }
        boxes.push_back(b);
    }
    return boxes;
}

EntryMeta entry_with(const Dims &shape, const std::vector<Box> &boxes) {
    EntryMeta e;
    e.fqn = "t";
    e.dtype = DType::f32;
    e.shape = shape;
    for (auto &b : boxes) e.chunks.push_back(ChunkMeta{b, Extent{}});
    return e;
}

Dims random_shape(std::mt19937_64 &rng) {
    Dims shape(1 + rng() % 4);
    for (auto &n : shape) n = 1 + rng() % 12;
    return shape;
}

}  // namespace

TEST(ChunkIndex, FindsExactlyTheOverlappingChunksOfRandomBoxes) {
    std::mt19937_64 rng(42);
    for (int trial = 0; trial < 300; ++trial) {
        Dims shape = random_shape(rng);
        std::vector<Box> boxes;
        int n = 1 + int(rng() % 30);
        // Arbitrary (possibly overlapping, possibly empty) boxes: the index must not rely on
        // the chunks being disjoint.
        for (int k = 0; k < n; ++k) boxes.push_back(random_box(rng, shape, true));
        EntryMeta e = entry_with(shape, boxes);
        ChunkIndex index(e);
        for (int q = 0; q < 40; ++q) {
            Box query = random_box(rng, shape, q % 5 == 0);
            std::vector<size_t> got;
            index.overlapping(query, got);
            std::sort(got.begin(), got.end());
            std::vector<size_t> want;
            for (size_t c = 0; c < boxes.size(); ++c)
                if (brute_overlap(boxes[c], query)) want.push_back(c);
            ASSERT_EQ(got, want) << "trial " << trial << " query " << q;
        }
    }
}

TEST(ChunkIndex, GridPartitions) {
    std::mt19937_64 rng(3);
    for (int trial = 0; trial < 200; ++trial) {
        Dims shape = random_shape(rng);
        std::vector<Box> boxes = random_grid(rng, shape);
        std::shuffle(boxes.begin(), boxes.end(), rng);
        EntryMeta e = entry_with(shape, boxes);
        ChunkIndex index(e);
        for (int q = 0; q < 30; ++q) {
            Box query = random_box(rng, shape, false);
            std::vector<size_t> got;
            index.overlapping(query, got);
            std::sort(got.begin(), got.end());
            std::vector<size_t> want;
            for (size_t c = 0; c < boxes.size(); ++c)
                if (brute_overlap(boxes[c], query)) want.push_back(c);
            ASSERT_EQ(got, want) << "trial " << trial;
        }
    }
}

// Seconds to find, for every chunk, the chunks overlapping its own box (each finds itself).
double time_self_queries(const EntryMeta &e) {
    ChunkIndex index(e);
    auto t0 = std::chrono::steady_clock::now();
    std::vector<size_t> got;
    for (size_t c = 0; c < e.chunks.size(); ++c) {
        got.clear();
        index.overlapping(e.chunks[c].box, got);
        EXPECT_EQ(got, std::vector<size_t>{c});
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A staircase (chunk i: rows [i, i + n), column i) overlaps along rows everywhere; the index
// must pick columns and stay as fast as for a plain row layout of as many chunks (a ratio, not a
// wall-clock budget: the machine may be slow or busy).
TEST(ChunkIndex, StaircaseCostsNoMoreThanRows) {
    const uint64_t n = 20000;
    std::vector<Box> stairs, rows;
    for (uint64_t i = 0; i < n; ++i) {
        stairs.push_back(Box{{i, i}, {n, 1}});
        rows.push_back(Box{{i, 0}, {1, n}});
    }
    EntryMeta staircase = entry_with({2 * n, n}, stairs), plain = entry_with({n, n}, rows);
    double t_plain = time_self_queries(plain), t_stairs = time_self_queries(staircase);
    EXPECT_LT(t_stairs, 5 * t_plain + 0.05) << "staircase " << t_stairs << " s, rows " << t_plain << " s";
}

// Chunks that are long along every dimension somewhere (two arms at right angles) are found
// exactly, whichever dimension the index picks.
TEST(ChunkIndex, PinwheelArmsAreFoundExactly) {
    const uint64_t n = 1000;
    std::vector<Box> arms;
    for (uint64_t i = 0; i < n; ++i) {
        arms.push_back(Box{{i, n + 1 + i}, {1, n}});          // long along columns (top right)
        arms.push_back(Box{{n + 1 + i, 2 * n + 1 + i}, {n, 1}});  // long along rows (bottom right)
    }
    EntryMeta e = entry_with({3 * n + 2, 3 * n + 2}, arms);
    time_self_queries(e);  // checks every answer
}

TEST(ChunkIndex, ScalarEntry) {
    EntryMeta e = entry_with({}, {Box{{}, {}}});
    ChunkIndex index(e);
    std::vector<size_t> got;
    index.overlapping(Box{{}, {}}, got);
    EXPECT_EQ(got, std::vector<size_t>{0});
}

// ---------------------------------------------------------------------------------------------
// Load plans

namespace {

// Checks that the plan's items tile every request's box exactly once and map consistently
// between storage and destination coordinates.
void expect_exact_cover(const LoadPlan &plan) {
    std::vector<std::vector<int>> hits(plan.requests.size());
    for (size_t i = 0; i < plan.requests.size(); ++i) hits[i].assign(product(plan.requests[i].box.sizes), 0);
    for (const ReadItem &item : plan.items) {
        ASSERT_LT(item.request, plan.requests.size());
        const ReadRequest &r = plan.requests[item.request];
        ASSERT_EQ(item.entry, r.entry);
        ASSERT_LT(item.chunk, r.entry->chunks.size());
        const Box &chunk = r.entry->chunks[item.chunk].box;
        size_t ndim = r.box.offsets.size();
        ASSERT_EQ(item.lengths.size(), ndim);
        for (size_t d = 0; d < ndim; ++d) {
            ASSERT_GT(item.lengths[d], 0u);
            EXPECT_EQ(chunk.offsets[d] + item.storage_offsets[d], r.box.offsets[d] + item.dest_offsets[d]);
            EXPECT_LE(item.storage_offsets[d] + item.lengths[d], chunk.sizes[d]);
            EXPECT_LE(item.dest_offsets[d] + item.lengths[d], r.box.sizes[d]);
        }
        // Mark every destination element this item writes.
        uint64_t count = product(item.lengths);
        for (uint64_t k = 0; k < count; ++k) {
            uint64_t rest = k, flat = 0, stride = 1;
            for (size_t d = ndim; d-- > 0;) {
                uint64_t at = item.dest_offsets[d] + rest % item.lengths[d];
                rest /= item.lengths[d];
                flat += at * stride;
                stride *= r.box.sizes[d];
            }
            ++hits[item.request][flat];
        }
    }
    for (size_t i = 0; i < hits.size(); ++i)
        for (size_t k = 0; k < hits[i].size(); ++k) ASSERT_EQ(hits[i][k], 1) << "request " << i << " element " << k;
}

}  // namespace

TEST(LoadPlan, CoversRandomRequestsExactly) {
    std::mt19937_64 rng(11);
    for (int trial = 0; trial < 200; ++trial) {
        Dims shape = random_shape(rng);
        std::vector<Box> boxes = random_grid(rng, shape);
        std::shuffle(boxes.begin(), boxes.end(), rng);
        EntryMeta e = entry_with(shape, boxes);
        ChunkIndex index(e);
        LoadPlan plan;
        for (int q = 0; q < 6; ++q) plan.requests.push_back(ReadRequest{&e, random_box(rng, shape, q == 5), nullptr, {}});
        create_local_load_plan(plan, [&](const EntryMeta *) -> const ChunkIndex & { return index; });
        expect_exact_cover(plan);
    }
}

TEST(LoadPlan, ThrowsUncoveredWhenAChunkIsMissing) {
    std::mt19937_64 rng(5);
    int uncovered = 0, covered = 0;
    for (int trial = 0; trial < 200; ++trial) {
        Dims shape = random_shape(rng);
        std::vector<Box> boxes = random_grid(rng, shape);
        if (boxes.size() < 2) continue;
        size_t dropped = rng() % boxes.size();
        Box hole = boxes[dropped];
        boxes.erase(boxes.begin() + long(dropped));
        EntryMeta e = entry_with(shape, boxes);
        e.fqn = "layers.7.mlp.w2";
        ChunkIndex index(e);
        Box query = random_box(rng, shape, false);
        LoadPlan plan;
        plan.requests.push_back(ReadRequest{&e, query, nullptr, {}});
        auto run = [&] { create_local_load_plan(plan, [&](const EntryMeta *) -> const ChunkIndex & { return index; }); };
        if (brute_overlap(hole, query)) {
            ++uncovered;
            EXPECT_SP_ERROR(run(), Code::uncovered, "'layers.7.mlp.w2'", "partly saved");
        } else {
            ++covered;
            run();
            expect_exact_cover(plan);
        }
    }
    EXPECT_GT(uncovered, 20);
    EXPECT_GT(covered, 20);
}

TEST(LoadPlan, EmptyRequestNeedsNoChunk) {
    EntryMeta e = entry_with({4, 4}, {});
    ChunkIndex index(e);
    LoadPlan plan;
    plan.requests.push_back(ReadRequest{&e, Box{{1, 1}, {0, 3}}, nullptr, {}});
    create_local_load_plan(plan, [&](const EntryMeta *) -> const ChunkIndex & { return index; });
    EXPECT_TRUE(plan.items.empty());
}

TEST(GlobalSavePlanCoverage, GapLeftByAllRanksIsRefusedBeforeWriting) {
    std::vector<SavePlan> plans(3);
    plans[0].items.push_back(tensor_item("w", DType::f32, {8, 4}, {0, 0}, {3, 4}));
    plans[2].items.push_back(tensor_item("w", DType::f32, {8, 4}, {4, 0}, {4, 4}));  // row 3 missing
    EXPECT_SP_ERROR(create_global_save_plan(plans), Code::uncovered, "'w'", "28 of its 32", "ALLOW_PARTIAL");
    GlobalSavePlan g = create_global_save_plan(plans, /*allow_partial=*/true);
    expect_each_chunk_written_once(g, plans);
}

TEST(GlobalSavePlanCoverage, ReplicatedAndBlockCoverageIsComplete) {
    std::vector<SavePlan> plans(4);
    for (int r = 0; r < 4; ++r) {
        // Every rank holds the whole bias; the weight is a 2x2 grid of blocks.
        plans[r].items.push_back(tensor_item("b", DType::f32, {6}, {0}, {6}));
        plans[r].items.push_back(tensor_item("w", DType::f32, {4, 6}, {uint64_t(r / 2) * 2, uint64_t(r % 2) * 3}, {2, 3}));
    }
    plans[1].items.push_back(tensor_item("empty", DType::i8, {0, 5}, {0, 0}, {0, 5}));
    plans[2].items.push_back(tensor_item("scalar", DType::f64, {}, {}, {}));
    plans[3].items.push_back(bytes_item("blob", 3));
    GlobalSavePlan g = create_global_save_plan(plans);
    expect_each_chunk_written_once(g, plans);
}

TEST(GlobalSavePlanCoverage, EmptyChunksCoverNothing) {
    std::vector<SavePlan> plans(2);
    plans[0].items.push_back(tensor_item("v", DType::u8, {5}, {0}, {0}));
    plans[1].items.push_back(tensor_item("v", DType::u8, {5}, {5}, {0}));
    EXPECT_SP_ERROR(create_global_save_plan(plans), Code::uncovered, "'v'", "0 of its 5");
}

// The planner refuses what readers would refuse, before any byte is written.
TEST(GlobalSavePlanConflict, TooIrregularLayoutIsRefusedAtSaveTime) {
    const uint64_t m = 20000;
    std::vector<SavePlan> plans(2);
    std::vector<Box> layout = sptest::pinwheel_layout(m);
    for (size_t k = 0; k < layout.size(); ++k)
        plans[k % 2].items.push_back(tensor_item("pin", DType::u8, {3 * m, 3 * m, m}, layout[k].offsets, layout[k].sizes));
    EXPECT_SP_ERROR(create_global_save_plan(plans), Code::shape, "'pin'", "too irregular");
    std::vector<Box> small = sptest::pinwheel_layout(5);
    std::vector<SavePlan> fine(1);
    for (auto &b : small) fine[0].items.push_back(tensor_item("pin", DType::u8, {15, 15, 5}, b.offsets, b.sizes));
    expect_each_chunk_written_once(create_global_save_plan(fine), fine);
}
