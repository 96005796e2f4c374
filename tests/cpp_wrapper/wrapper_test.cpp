// Tests of shardpoint.hpp, the header-only C++ wrapper: exact loads, save options, error codes.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "shardpoint.hpp"

namespace sp = shardpoint::cxx;
namespace fs = std::filesystem;

namespace {

class TempDir {
public:
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "shardpoint-cxx-XXXXXX").string();
        path_ = mkdtemp(tmpl.data());
    }
    ~TempDir() { fs::remove_all(path_); }
    std::string operator/(const std::string &name) const { return (fs::path(path_) / name).string(); }

private:
    std::string path_;
};

// The code of the sp::Error that f throws (0 when it throws none); the message goes to *message.
template <class F> int code_of(F &&f, std::string *message = nullptr) {
    try {
        f();
    } catch (const sp::Error &e) {
        if (message) *message = e.what();
        return e.code();
    }
    return 0;
}

// A 6x8 f32 tensor "w" (values 0..47) and a blob.
std::vector<float> save_w(const std::string &dir) {
    std::vector<float> w(48);
    for (size_t i = 0; i < w.size(); ++i) w[i] = float(i);
    sp::Save save(dir);
    save.add_tensor("w", SHARDPOINT_DTYPE_F32, {6, 8}, {0, 0}, {6, 8}, w.data());
    save.add_bytes("blob", "abc", 3);
    save.commit();
    return w;
}

}  // namespace

TEST(CppWrapper, WholeTensorIntoAnotherShapeIsAShapeError) {
    TempDir t;
    save_w(t / "c");
    sp::Reader r(t / "c");
    const std::vector<sp::Dims> wrong = {{6, 7}, {6, 9}, {7, 8}, {8, 6}, {48}, {6, 8, 1}};
    for (const sp::Dims &shape : wrong) {
        uint64_t n = 1;
        for (uint64_t s : shape) n *= s;
        std::vector<float> dst(n, -1.0f);
        std::string msg;
        EXPECT_EQ(code_of([&] { r.read_whole("w", shape, dst); }, &msg), SHARDPOINT_ESHAPE) << sp::detail::dims_text(shape);
        EXPECT_EQ(msg, "SHARDPOINT_ESHAPE: destination has shape " + sp::detail::dims_text(shape) + " but 'w' is [6, 8]");
        sp::Load load(r);
        EXPECT_EQ(code_of([&] { load.add_whole("w", shape, dst); }), SHARDPOINT_ESHAPE);
        for (float v : dst) ASSERT_EQ(v, -1.0f);
    }
    std::vector<float> ok(48);
    r.read_whole("w", {6, 8}, ok);
    EXPECT_EQ(ok[47], 47.0f);
    EXPECT_EQ(r.read_whole<float>("w"), ok);
}

TEST(CppWrapper, COrderDestinationsHoldTheBoxExactly) {
    TempDir t;
    const std::vector<float> w = save_w(t / "c");
    sp::Reader r(t / "c");
    std::vector<float> big(49), small(47), exact(48);
    std::string msg;
    EXPECT_EQ(code_of([&] { r.read_tensor("w", {0, 0}, {6, 8}, big); }, &msg), SHARDPOINT_ESHAPE);
    EXPECT_EQ(msg, "SHARDPOINT_ESHAPE: destination holds 49 elements but the box [6, 8] of 'w' has 48");
    EXPECT_EQ(code_of([&] { r.read_tensor("w", {0, 0}, {6, 8}, small); }), SHARDPOINT_ESHAPE);
    EXPECT_EQ(code_of([&] { r.read_tensor("w", {1, 1}, {2, 3}, big.data(), 7); }), SHARDPOINT_ESHAPE);
    EXPECT_EQ(code_of([&] { r.read_tensor("w", SHARDPOINT_DTYPE_F32, {0, 0}, {6, 8}, big.data(), 4 * 49); }),
              SHARDPOINT_ESHAPE);
    EXPECT_EQ(code_of([&] { r.read_tensor("w", SHARDPOINT_DTYPE_F32, {0, 0}, {6, 8}, big.data(), 4 * 48 - 2); }),
              SHARDPOINT_ESHAPE);
    {
        sp::Load load(r);
        EXPECT_EQ(code_of([&] { load.add_tensor("w", {0, 0}, {6, 8}, big); }), SHARDPOINT_ESHAPE);
        EXPECT_EQ(code_of([&] { load.add_tensor("w", SHARDPOINT_DTYPE_F32, {0, 0}, {6, 8}, small.data(), 4 * 47); }),
                  SHARDPOINT_ESHAPE);
    }
    // Strides that leave the destination.
    EXPECT_EQ(code_of([&] { r.read_tensor("w", {0, 0}, {6, 8}, exact, {1, 7}); }), SHARDPOINT_ERANGE);
    EXPECT_EQ(code_of([&] { r.read_tensor("w", {0, 0}, {6, 8}, exact, {-8, 1}); }), SHARDPOINT_ERANGE);
    r.read_tensor("w", {0, 0}, {6, 8}, exact);
    EXPECT_EQ(exact, w);
    // Reversed rows: first element at index 40, strides (-8, 1).
    std::vector<float> rev(48);
    r.read_tensor("w", {0, 0}, {6, 8}, rev, {-8, 1}, 40);
    EXPECT_EQ(rev[0], 40.0f);
    EXPECT_EQ(rev[40], 0.0f);
}

TEST(CppWrapper, WrongDestinationDtype) {
    TempDir t;
    save_w(t / "c");
    sp::Reader r(t / "c");
    std::vector<double> d(48);
    std::vector<int32_t> i(48);
    std::vector<uint8_t> h(96);
    EXPECT_EQ(code_of([&] { r.read_whole("w", {6, 8}, d); }), SHARDPOINT_EDTYPE);
    EXPECT_EQ(code_of([&] { r.read_tensor("w", {0, 0}, {6, 8}, i); }), SHARDPOINT_EDTYPE);
    EXPECT_EQ(code_of([&] { r.read_tensor("w", SHARDPOINT_DTYPE_F16, {0, 0}, {6, 8}, h.data(), h.size()); }),
              SHARDPOINT_EDTYPE);
    sp::Load load(r);
    EXPECT_EQ(code_of([&] { load.add_whole("w", {6, 8}, i); }), SHARDPOINT_EDTYPE);
}

TEST(CppWrapper, ExplicitBoxesStillLoadParts) {
    TempDir t;
    const std::vector<float> w = save_w(t / "c");
    sp::Reader r(t / "c");
    std::vector<float> cols(42);
    r.read_tensor("w", {0, 1}, {6, 7}, cols);  // columns 1..7, asked for
    for (int i = 0; i < 6; ++i)
        for (int j = 0; j < 7; ++j) ASSERT_EQ(cols[size_t(i * 7 + j)], w[size_t(i * 8 + j + 1)]);
    std::vector<float> big(100, -1.0f), rows(16);
    {
        sp::Load load(r);
        load.add_tensor("w", {3, 4}, {2, 3}, big, {10, 1}, 11);  // a box inside a larger buffer
        load.add_tensor("w", {2, 0}, {2, 8}, rows);
        load.execute();
    }
    EXPECT_EQ(big[11], w[28]);
    EXPECT_EQ(big[23], w[38]);
    EXPECT_EQ(big[10], -1.0f);
    EXPECT_EQ(rows, std::vector<float>(w.begin() + 16, w.begin() + 32));
}

TEST(CppWrapper, MissingAndBytesEntriesKeepTheirErrors) {
    TempDir t;
    save_w(t / "c");
    sp::Reader r(t / "c");
    std::vector<float> dst(42);
    std::vector<uint8_t> b(3);
    EXPECT_EQ(code_of([&] { r.read_whole("nope", {6, 7}, dst); }), SHARDPOINT_ENOTFOUND);
    EXPECT_EQ(code_of([&] { r.read_whole("blob", {3}, b); }), SHARDPOINT_EKIND);
}

TEST(CppWrapper, SaveOptions) {
    sp::SaveOptions o;
    EXPECT_EQ(o.flags(), 0u);
    o.durable = false;
    EXPECT_EQ(o.flags(), uint32_t(SHARDPOINT_SAVE_NO_FSYNC));
    o.allow_partial = true;
    o.overwrite = true;
    EXPECT_EQ(o.flags(), 0x1u | 0x4u | 0x8u);
    o.checkpoint_id = "run-7";
    EXPECT_STREQ(o.c().checkpoint_id, "run-7");

    TempDir t;
    sp::SaveOptions fast;
    fast.durable = false;
    fast.checkpoint_id = "fast";
    {
        int32_t x[2] = {1, 2};
        sp::Save save(t / "fast", nullptr, fast);
        save.add_tensor("x", SHARDPOINT_DTYPE_I32, {2}, {0}, {2}, x);
        save.commit();
    }
    sp::Reader r(t / "fast");
    EXPECT_EQ(r.read_whole<int32_t>("x"), (std::vector<int32_t>{1, 2}));
    EXPECT_GT(r.block_size(), 0u);
}

TEST(CppWrapper, AnUncoveredSaveFailsAndLeavesNothing) {
    TempDir t;
    const std::string dir = t / "gap";
    std::vector<int32_t> data(9);
    std::string msg;
    EXPECT_EQ(code_of(
                  [&] {
                      sp::Save save(dir);
                      save.add_tensor("t", SHARDPOINT_DTYPE_I32, {4, 3}, {0, 0}, {3, 3}, data.data());  // row 3 missing
                      save.commit();
                  },
                  &msg),
              SHARDPOINT_EUNCOVERED);
    EXPECT_NE(msg.find("'t'"), std::string::npos) << msg;
    EXPECT_EQ(code_of([&] { sp::Reader r(dir); }), SHARDPOINT_ENOTFOUND);
    if (fs::exists(dir)) {
        for (const auto &e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().filename(), "shardpoint.lock");
    }
    sp::SaveOptions partial;
    partial.allow_partial = true;
    {
        sp::Save save(dir, nullptr, partial);
        save.add_tensor("t", SHARDPOINT_DTYPE_I32, {4, 3}, {0, 0}, {3, 3}, data.data());
        save.commit();
    }
    sp::Reader r(dir);
    EXPECT_EQ(r.entry("t").covered_numel, 9u);
}

TEST(CppWrapper, NewErrorCodes) {
    EXPECT_STREQ(shardpoint_error_name(SHARDPOINT_ENOSPC), "SHARDPOINT_ENOSPC");
    EXPECT_STREQ(shardpoint_error_name(SHARDPOINT_ENOTDURABLE), "SHARDPOINT_ENOTDURABLE");
    sp::Error e(SHARDPOINT_ENOSPC, "disk full");
    EXPECT_EQ(e.code(), -20);
    EXPECT_STREQ(e.what(), "SHARDPOINT_ENOSPC: disk full");
}

// Typed adds: the dtype comes from the element type, and a source must hold the chunk, as a
// destination must hold the box (the library trusts the pointer).
TEST(CppWrapper, TypedAddsDeduceTheDtypeAndCheckTheSource) {
    TempDir t;
    std::vector<int64_t> ids = {1, 2, 3, 4, 5, 6};
    std::vector<double> rows = {0.5, 1.5, 2.5, 3.5};  // rows 1..2 of a [3, 2] tensor
    std::vector<float> column(3 * 4);
    for (size_t i = 0; i < column.size(); ++i) column[i] = float(i);
    {
        sp::Save save(t / "c");
        save.add_whole("ids", {2, 3}, ids);
        save.add_tensor("part", {3, 2}, {1, 0}, {2, 2}, rows);
        // column 1 of a row-major [3, 4] buffer: a strided source of 3 elements
        save.add_tensor("col", {3}, {0}, {3}, column.data(), column.size(), {4}, 1);
        std::string msg;
        EXPECT_EQ(code_of([&] { save.add_tensor("short", {2, 3}, {0, 0}, {2, 3}, ids.data(), 5); }, &msg), SHARDPOINT_ESHAPE);
        EXPECT_NE(msg.find("source holds 5 elements"), std::string::npos) << msg;
        EXPECT_EQ(code_of([&] { save.add_tensor("far", {3}, {0}, {3}, column.data(), column.size(), {4}, 4); }),
                  SHARDPOINT_ERANGE);
        EXPECT_EQ(code_of([&] { save.commit(); }), SHARDPOINT_EUNCOVERED);  // row 0 of "part" is missing
    }
    sp::SaveOptions opts;
    opts.allow_partial = true;
    {
        sp::Save save(t / "c", nullptr, opts);
        save.add_whole("ids", {2, 3}, ids);
        save.add_tensor("part", {3, 2}, {1, 0}, {2, 2}, rows);
        save.add_tensor("col", {3}, {0}, {3}, column.data(), column.size(), {4}, 1);
        save.commit();
    }
    sp::Reader r(t / "c");
    EXPECT_EQ(r.entry("ids").dtype, SHARDPOINT_DTYPE_I64);
    EXPECT_EQ(r.entry("part").dtype, SHARDPOINT_DTYPE_F64);
    EXPECT_EQ(r.read_whole<int64_t>("ids"), ids);
    std::vector<double> back(4);
    r.read_tensor("part", {1, 0}, {2, 2}, back);
    EXPECT_EQ(back, rows);
    EXPECT_EQ(r.read_whole<float>("col"), (std::vector<float>{1, 5, 9}));
}

// Handles move: the moved-to object owns the handle, the moved-from one frees nothing.
TEST(CppWrapper, HandlesAreMovable) {
    TempDir t;
    std::vector<float> w = {1, 2, 3, 4};
    std::vector<sp::Save> saves;
    {
        sp::Save save(t / "c");
        save.add_whole("w", {4}, w);
        saves.push_back(std::move(save));  // the vector now owns it
    }
    sp::Save other(t / "unused");
    other = std::move(saves.back());   // the unused save is freed, this one moves on
    other.commit();
    sp::Reader first(t / "c");
    sp::Reader reader(std::move(first));
    EXPECT_EQ(reader.read_whole<float>("w"), w);
    std::vector<float> dst(4);
    sp::Load load(reader);
    load.add_whole("w", {4}, dst);
    sp::Load moved(std::move(load));
    moved.execute();
    EXPECT_EQ(dst, w);
    sp::Reader assigned(t / "c");
    assigned = std::move(reader);
    EXPECT_EQ(assigned.read_whole<float>("w"), w);
}

// Typed sources and destinations are any contiguous container: std::array, C arrays, Span over a
// pointer and a count; their sizes are checked as a std::vector's are.
TEST(CppWrapper, ContainersAndSpansAreSourcesAndDestinations) {
    TempDir t;
    const std::array<int32_t, 6> ids = {1, 2, 3, 4, 5, 6};
    const double scale[2] = {0.25, 0.75};
    std::unique_ptr<float[]> heap(new float[8]);
    for (int i = 0; i < 8; ++i) heap[size_t(i)] = float(i) * 1.5f;
    {
        sp::Save save(t / "c");
        save.add_whole("ids", {2, 3}, ids);
        save.add_whole("scale", {2}, scale);
        save.add_whole("heap", {2, 4}, sp::Span<const float>(heap.get(), 8));
        EXPECT_EQ(code_of([&] { save.add_whole("short", {3, 3}, ids); }), SHARDPOINT_ESHAPE);
        save.commit();
    }
    sp::Reader r(t / "c");
    std::array<int32_t, 6> ids_back{};
    r.read_whole("ids", {2, 3}, ids_back);
    EXPECT_EQ(ids_back, ids);
    double scale_back[2] = {0, 0};
    r.read_whole("scale", {2}, scale_back);
    EXPECT_EQ(scale_back[0], 0.25);
    EXPECT_EQ(scale_back[1], 0.75);
    std::vector<float> row(4);
    r.read_tensor("heap", {1, 0}, {1, 4}, sp::Span<float>(row));  // a Span over a vector
    EXPECT_EQ(row, (std::vector<float>{6, 7.5f, 9, 10.5f}));
    std::unique_ptr<float[]> out(new float[8]());
    sp::Load load(r);
    load.add_whole("heap", {2, 4}, sp::Span<float>(out.get(), 8));
    std::array<int32_t, 5> too_small{};
    EXPECT_EQ(code_of([&] { load.add_whole("ids", {2, 3}, too_small); }), SHARDPOINT_ESHAPE);
    load.execute();
    for (size_t i = 0; i < 8; ++i) EXPECT_EQ(out[i], heap[i]);
    sp::Span<const float> view(heap.get(), 8);
    EXPECT_EQ(view.size(), 8u);
    EXPECT_EQ(view[3], 4.5f);
    EXPECT_EQ(std::distance(view.begin(), view.end()), 8);
}

// Progress: reports on this thread end at done == total; returning false (or throwing) cancels
// with SHARDPOINT_ECANCELED and the previous checkpoint stays.
TEST(CppWrapper, ProgressReportsAndCancels) {
    TempDir t;
    std::vector<float> w(1 << 20, 0.5f), v(1 << 20, 1.5f);
    uint64_t last_done = 0, last_total = 0;
    int calls = 0;
    auto note = [&](int32_t phase, uint64_t done, uint64_t total) {
        EXPECT_TRUE(phase == SHARDPOINT_PROGRESS_WRITE || phase == SHARDPOINT_PROGRESS_READ ||
                    phase == SHARDPOINT_PROGRESS_VERIFY);
        last_done = done, last_total = total, ++calls;
        return true;
    };
    {
        sp::Save save(t / "c");
        save.add_whole("w", {1 << 20}, w);
        save.set_progress(note);
        save.commit();
    }
    EXPECT_GE(calls, 2);
    EXPECT_EQ(last_total, w.size() * sizeof(float));
    EXPECT_EQ(last_done, last_total);
    for (int how = 0; how < 2; ++how) {
        sp::SaveOptions opts;
        opts.overwrite = true;
        sp::Save save(t / "c", nullptr, opts);
        save.add_whole("w", {1 << 20}, v);
        save.set_progress([&](int32_t, uint64_t, uint64_t) -> bool {
            if (how) throw std::runtime_error("stop");
            return false;
        });
        std::string msg;
        EXPECT_EQ(code_of([&] { save.commit(); }, &msg), SHARDPOINT_ECANCELED);
        EXPECT_NE(msg.find("canceled"), std::string::npos) << msg;
    }
    sp::Reader r(t / "c");
    EXPECT_EQ(r.read_whole<float>("w"), w);  // the canceled saves changed nothing
    calls = 0;
    r.set_progress(note);
    r.verify();
    EXPECT_EQ(last_done, w.size() * sizeof(float));
    std::vector<float> dst(w.size());
    sp::Load load(r);
    load.add_whole("w", {1 << 20}, dst);
    load.set_progress([](int32_t, uint64_t, uint64_t) { return false; });
    EXPECT_EQ(code_of([&] { load.execute(); }), SHARDPOINT_ECANCELED);
}

// Asynchronous saves through the wrapper: the data may change once commit_async returns.
TEST(CppWrapper, AsyncSaveKeepsWhatItCopied) {
    TempDir t;
    std::vector<float> w(1 << 16, 2.5f);
    sp::Staging staging(1 << 20);
    EXPECT_EQ(staging.capacity(), 1u << 20);
    {
        sp::Save save(t / "c");
        save.add_whole("w", {1 << 16}, w);
        EXPECT_GE(save.staging_size(), w.size() * sizeof(float));
        save.commit_async(staging);
        std::fill(w.begin(), w.end(), -1.0f);
        save.wait();
        EXPECT_TRUE(save.done());
    }
    sp::Reader r(t / "c");
    EXPECT_EQ(r.read_whole<float>("w"), std::vector<float>(1 << 16, 2.5f));
    sp::Staging small(16);
    sp::SaveOptions opts;
    opts.overwrite = true;
    sp::Save save(t / "c", nullptr, opts);
    save.add_whole("w", {1 << 16}, w);
    EXPECT_EQ(code_of([&] { save.commit_async(small); }), SHARDPOINT_ERANGE);
    EXPECT_EQ(code_of([&] { save.wait(); }), SHARDPOINT_ESTATE);
}
