// Moving elements between strided memory and C order, against naive element-by-element
// references on random shapes and strides (negative and zero included); and the disjointness
// check of chunk boxes against a brute-force oracle.
#include <chrono>
#include <random>

#include "shardpoint/layout.hpp"
#include "test_util.hpp"

using namespace shardpoint;

namespace {

// A strided array inside a larger buffer: `origin` is where element [0,...,0] lives.
struct StridedArray {
    Dims sizes;
    Strides strides;
    size_t itemsize;
    std::vector<unsigned char> buffer;
    int64_t origin = 0;  // in elements

    unsigned char *at(const std::vector<uint64_t> &idx) {
        int64_t off = origin;
        for (size_t d = 0; d < idx.size(); ++d) off += int64_t(idx[d]) * strides[d];
        return buffer.data() + off * int64_t(itemsize);
    }
    unsigned char *base() { return buffer.data() + origin * int64_t(itemsize); }
};

// Random strides: a random order of dimensions, random padding, random signs; zero strides
// (broadcast) only when `allow_zero`, since a destination must not alias itself.
StridedArray random_array(std::mt19937_64 &rng, const Dims &sizes, size_t itemsize, bool allow_zero) {
    StridedArray a;
    a.sizes = sizes;
    a.itemsize = itemsize;
    size_t ndim = sizes.size();
    std::vector<size_t> order(ndim);
    for (size_t d = 0; d < ndim; ++d) order[d] = d;
    std::shuffle(order.begin(), order.end(), rng);
    a.strides.assign(ndim, 0);
    int64_t acc = 1 + int64_t(rng() % 2);  // sometimes every element is spaced out
    for (size_t k = ndim; k-- > 0;) {
        size_t d = order[k];
        a.strides[d] = acc;
        acc *= int64_t(sizes[d] + rng() % 3);
    }
    for (size_t d = 0; d < ndim; ++d) {
        if (rng() % 3 == 0) a.strides[d] = -a.strides[d];
        if (allow_zero && rng() % 6 == 0) a.strides[d] = 0;
    }
    int64_t lo = 0, hi = 0;
    for (size_t d = 0; d < ndim; ++d) {
        int64_t span = int64_t(sizes[d] ? sizes[d] - 1 : 0) * a.strides[d];
        (span < 0 ? lo : hi) += span;
    }
    a.origin = -lo + 3;  // a little slack before and after to catch stray writes
    a.buffer.resize(size_t(hi - lo + 7) * itemsize);
    for (size_t k = 0; k < a.buffer.size(); ++k) a.buffer[k] = uint8_t(rng());
    return a;
}

std::vector<uint64_t> unravel(uint64_t k, const Dims &sizes) {
    std::vector<uint64_t> idx(sizes.size());
    for (size_t d = sizes.size(); d-- > 0;) {
        idx[d] = k % sizes[d];
        k /= sizes[d];
    }
    return idx;
}

Dims random_sizes(std::mt19937_64 &rng, bool allow_zero) {
    Dims sizes(rng() % 5);
    for (auto &n : sizes) n = (allow_zero && rng() % 10 == 0) ? 0 : 1 + rng() % 6;
    return sizes;
}

const size_t kItemsizes[] = {1, 2, 4, 8, 16};

}  // namespace

TEST(Layout, CStrides) {
    EXPECT_EQ(c_strides({}), Strides{});
    EXPECT_EQ(c_strides({5}), (Strides{1}));
    EXPECT_EQ(c_strides({2, 3, 4}), (Strides{12, 4, 1}));
    EXPECT_EQ(c_strides({2, 0, 4}), (Strides{4, 4, 1}));
}

TEST(Layout, IsCContiguous) {
    EXPECT_TRUE(is_c_contiguous({2, 3}, {}));
    EXPECT_TRUE(is_c_contiguous({2, 3}, {3, 1}));
    EXPECT_FALSE(is_c_contiguous({2, 3}, {1, 2}));
    EXPECT_FALSE(is_c_contiguous({2, 3}, {-3, 1}));
    EXPECT_FALSE(is_c_contiguous({2, 3}, {4, 1}));
    EXPECT_TRUE(is_c_contiguous({1, 3}, {99, 1}));  // a size-1 dimension's stride is irrelevant
    EXPECT_TRUE(is_c_contiguous({2, 0}, {7, 7}));   // no element at all
    EXPECT_FALSE(is_c_contiguous({4}, {0}));
}

TEST(Layout, GatherElementsMatchesNaiveReference) {
    std::mt19937_64 rng(99);
    for (int trial = 0; trial < 3000; ++trial) {
        Dims sizes = random_sizes(rng, true);
        size_t itemsize = kItemsizes[rng() % 5];
        StridedArray src = random_array(rng, sizes, itemsize, true);
        uint64_t numel = product(sizes);
        uint64_t first = numel ? rng() % numel : 0;
        uint64_t count = numel ? rng() % (numel - first + 1) : 0;
        if (trial % 4 == 0) first = 0, count = numel;  // the whole array, often

        std::vector<unsigned char> want(count * itemsize + 16, 0xAB), got = want;
        for (uint64_t k = 0; k < count; ++k)
            std::memcpy(want.data() + k * itemsize, src.at(unravel(first + k, sizes)), itemsize);
        gather_elements(src.base(), sizes, src.strides, itemsize, first, count, got.data());
        ASSERT_EQ(got, want) << "trial " << trial << " ndim " << sizes.size() << " first " << first << " count " << count;
    }
}

TEST(Layout, GatherElementsOfScalar) {
    const uint64_t value = 0x0123456789abcdefull;
    uint64_t out = 0;
    gather_elements(reinterpret_cast<const unsigned char *>(&value), {}, {}, 8, 0, 1, reinterpret_cast<unsigned char *>(&out));
    EXPECT_EQ(out, value);
}

TEST(Layout, CopyBoxMatchesNaiveReference) {
    std::mt19937_64 rng(1234);
    for (int trial = 0; trial < 3000; ++trial) {
        Dims lengths = random_sizes(rng, true);
        size_t itemsize = kItemsizes[rng() % 5];
        StridedArray src = random_array(rng, lengths, itemsize, true);
        StridedArray dst = random_array(rng, lengths, itemsize, false);
        StridedArray want = dst;
        uint64_t n = product(lengths);
        for (uint64_t k = 0; k < n; ++k) {
            auto idx = unravel(k, lengths);
            std::memcpy(want.at(idx), src.at(idx), itemsize);
        }
        copy_box(src.base(), src.strides.data(), dst.base(), dst.strides.data(), lengths, itemsize);
        // The whole destination buffer, padding included: nothing outside the box changes.
        ASSERT_EQ(dst.buffer, want.buffer) << "trial " << trial << " ndim " << lengths.size();
    }
}

TEST(Layout, CopyBoxBetweenSubBoxesOfLargerArrays) {
    // A 3x4 box at (1,2) of a 5x7 C-order source into a 3x4 box at (0,1) of a Fortran-order 4x6.
    std::vector<int32_t> src(5 * 7), dst(4 * 6, -1);
    for (size_t k = 0; k < src.size(); ++k) src[k] = int32_t(k);
    const int64_t ss[] = {7, 1}, ds[] = {1, 4};
    copy_box(reinterpret_cast<const unsigned char *>(&src[1 * 7 + 2]), ss, reinterpret_cast<unsigned char *>(&dst[0 + 1 * 4]), ds,
             {3, 4}, 4);
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 6; ++j) {
            int32_t want = (i < 3 && j >= 1 && j < 5) ? int32_t((1 + i) * 7 + 2 + (j - 1)) : -1;
            EXPECT_EQ(dst[size_t(i + j * 4)], want) << i << "," << j;
        }
}

// --- find_overlap: pairwise disjointness of chunk boxes ---------------------------------------

namespace {

std::vector<BoxRef> refs_of(const std::vector<Box> &boxes) {
    std::vector<BoxRef> refs;
    for (const Box &b : boxes) refs.push_back(ref(b));
    return refs;
}

// The O(n^2) oracle.
bool any_overlap_brute_force(const std::vector<Box> &boxes) {
    for (size_t i = 0; i < boxes.size(); ++i)
        for (size_t j = i + 1; j < boxes.size(); ++j)
            if (boxes_overlap(boxes[i], boxes[j])) return true;
    return false;
}

void expect_agrees_with_oracle(const std::vector<Box> &boxes, const std::string &what) {
    auto [a, b] = find_overlap(refs_of(boxes));
    ASSERT_EQ(a >= 0, any_overlap_brute_force(boxes)) << what;
    if (a >= 0) {
        ASSERT_NE(a, b) << what;
        ASSERT_TRUE(boxes_overlap(boxes[size_t(a)], boxes[size_t(b)])) << what << ": #" << a << " and #" << b;
    }
}

// Cells of a random grid over `shape` (some dropped, some empty boxes added), shuffled.
std::vector<Box> random_grid(std::mt19937_64 &rng, size_t ndim) {
    std::vector<std::vector<uint64_t>> cuts(ndim);
    for (size_t d = 0; d < ndim; ++d) {
        cuts[d] = {0};
        for (size_t k = 0, parts = 1 + rng() % 4; k < parts; ++k) cuts[d].push_back(cuts[d].back() + 1 + rng() % 3);
    }
    std::vector<Box> boxes;
    std::vector<size_t> cell(ndim, 0);
    for (;;) {
        if (rng() % 5 != 0) {
            Box b;
            for (size_t d = 0; d < ndim; ++d) {
                b.offsets.push_back(cuts[d][cell[d]]);
                b.sizes.push_back(cuts[d][cell[d] + 1] - cuts[d][cell[d]]);
            }
            boxes.push_back(b);
        }
        size_t d = 0;
        while (d < ndim && ++cell[d] == cuts[d].size() - 1) cell[d++] = 0;
        if (d == ndim) break;
    }
    if (ndim > 0 && rng() % 2) {  // an empty box anywhere overlaps nothing
        Box e = boxes.empty() ? Box{Dims(ndim, 0), Dims(ndim, 1)} : boxes[rng() % boxes.size()];
        e.sizes[rng() % ndim] = 0;
        boxes.push_back(e);
    }
    std::shuffle(boxes.begin(), boxes.end(), rng);
    return boxes;
}

}  // namespace

TEST(FindOverlap, StaircaseIn2D) {
    const uint64_t n = 3000;
    std::vector<Box> boxes;  // chunk i: rows [i, n), column i
    for (uint64_t i = 0; i < n; ++i) boxes.push_back(Box{{i, i}, {n - i, 1}});
    EXPECT_EQ(find_overlap(refs_of(boxes)).first, -1);
    boxes.push_back(Box{{n - 1, 0}, {1, 2}});  // meets columns 0 and 1 in the last row
    auto [a, b] = find_overlap(refs_of(boxes));
    ASSERT_GE(a, 0);
    EXPECT_TRUE(boxes_overlap(boxes[size_t(a)], boxes[size_t(b)]));
}

TEST(FindOverlap, StaircaseIn3D) {
    const uint64_t n = 3000;
    std::vector<Box> boxes;  // apart only along the last dimension; long along the other two
    for (uint64_t i = 0; i < n; ++i) boxes.push_back(Box{{i, i % 7, i}, {n, 7, 1}});
    EXPECT_EQ(find_overlap(refs_of(boxes)).first, -1);
    boxes.push_back(Box{{n / 2 + 1, (n / 2) % 7, n / 2}, {1, 1, 1}});  // inside chunk n / 2
    auto [a, b] = find_overlap(refs_of(boxes));
    ASSERT_GE(a, 0);
    EXPECT_TRUE(boxes_overlap(boxes[size_t(a)], boxes[size_t(b)]));
}

TEST(FindOverlap, BlockGridIn3DStaysWithinBudget) {
    std::vector<Box> boxes;  // 40 x 40 x 40 blocks of 2 x 3 x 5
    for (uint64_t i = 0; i < 40; ++i)
        for (uint64_t j = 0; j < 40; ++j)
            for (uint64_t k = 0; k < 40; ++k) boxes.push_back(Box{{2 * i, 3 * j, 5 * k}, {2, 3, 5}});
    EXPECT_EQ(find_overlap(refs_of(boxes)).first, -1);
}

TEST(FindOverlap, EmptyAndZeroDimensionalBoxes) {
    EXPECT_EQ(find_overlap(refs_of({Box{{}, {}}})).first, -1);
    EXPECT_GE(find_overlap(refs_of({Box{{}, {}}, Box{{}, {}}})).first, 0);  // two scalars
    EXPECT_EQ(find_overlap(refs_of({Box{{0, 0}, {4, 0}}, Box{{0, 0}, {4, 4}}, Box{{1, 0}, {0, 4}}})).first, -1);
    // identical boxes: no dimension tells them apart
    EXPECT_GE(find_overlap(refs_of({Box{{1, 2}, {3, 4}}, Box{{1, 2}, {3, 4}}})).first, 0);
    // half-open: touching is not overlapping, in the sweep dimension too
    EXPECT_EQ(find_overlap(refs_of({Box{{0, 0, 0}, {2, 2, 2}}, Box{{2, 0, 0}, {2, 2, 2}}, Box{{0, 2, 0}, {4, 2, 2}}})).first, -1);
}

TEST(FindOverlap, RandomDisjointGridsAgreeWithBruteForce) {
    std::mt19937_64 rng(11);
    for (int iter = 0; iter < 3000; ++iter) {
        std::vector<Box> boxes = random_grid(rng, 1 + size_t(iter % 4));
        ASSERT_FALSE(any_overlap_brute_force(boxes));
        expect_agrees_with_oracle(boxes, "grid " + std::to_string(iter));
    }
}

TEST(FindOverlap, RandomBoxSetsAgreeWithBruteForce) {
    std::mt19937_64 rng(12);
    int overlapping = 0;
    for (int iter = 0; iter < 6000; ++iter) {
        const size_t ndim = size_t(iter % 5), n = 2 + rng() % 10;
        std::vector<Box> boxes;
        if (rng() % 2) boxes = random_grid(rng, std::max<size_t>(ndim, 1));
        // random boxes in a small space, so that overlaps and near misses are frequent
        for (size_t k = 0; k < n; ++k) {
            Box b;
            size_t nd = boxes.empty() ? ndim : boxes[0].offsets.size();
            for (size_t d = 0; d < nd; ++d) {
                b.offsets.push_back(rng() % 8);
                b.sizes.push_back(rng() % 4);
            }
            if (rng() % 3 == 0) boxes.push_back(b);
        }
        overlapping += any_overlap_brute_force(boxes);
        expect_agrees_with_oracle(boxes, "set " + std::to_string(iter));
    }
    EXPECT_GT(overlapping, 1000);
}

// Regions sliced differently (three staircases, each apart along another dimension, in separate
// regions) pile up in every dimension, but planes separate the regions: each is checked on its own.
TEST(FindOverlap, RegionsSlicedDifferentlyAreCheckedApart) {
    const uint64_t m = 20000;
    std::vector<Box> boxes;
    for (uint64_t i = 0; i < m; ++i) {
        boxes.push_back(Box{{i, 0, 0}, {1, m, m}});
        boxes.push_back(Box{{m, i, 0}, {m, 1, m}});
        boxes.push_back(Box{{2 * m, 0, i}, {m, m, 1}});
    }
    EXPECT_EQ(find_overlap(refs_of(boxes)).first, -1);
    boxes.push_back(Box{{m + 5, 7, 3}, {1, 1, 1}});  // inside a box of the second region
    auto found = find_overlap(refs_of(boxes));
    EXPECT_TRUE(found.first == long(boxes.size() - 1) || found.second == long(boxes.size() - 1));
}

// No plane separates a pinwheel and every dimension sees its boxes piled up: no sweep is cheap,
// so the check refuses within its budget rather than spend unbounded time.
TEST(FindOverlap, TooIrregularLayoutsAreRefusedWithinTheBudget) {
    std::vector<Box> boxes = sptest::pinwheel_layout(20000);
    ASSERT_FALSE(any_overlap_brute_force(sptest::pinwheel_layout(6)));  // the layout is valid
    EXPECT_EQ(find_overlap(refs_of(sptest::pinwheel_layout(6))).first, -1);
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_SP_ERROR(find_overlap(refs_of(boxes)), Code::shape, "too irregular", "80001 chunks");
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    RecordProperty("refusal_ms", int(seconds * 1000));
}
