// Helpers shared by the white-box tests: temporary directories, a thread-based communicator
// for the core's Comm interface, running N ranks as threads, and deterministic data.
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "shardpoint/comm.hpp"
#include "shardpoint/error.hpp"
#include "shardpoint/layout.hpp"
#include "shardpoint/model.hpp"

namespace sptest {

// A fresh directory from mkdtemp, removed with everything in it when the object dies.
class TempDir {
public:
    TempDir() {
        const char *base = std::getenv("TMPDIR");
        std::string pattern = std::string(base && *base ? base : "/tmp") + "/shardpoint-test-XXXXXX";
        std::vector<char> buf(pattern.begin(), pattern.end());
        buf.push_back('\0');
        if (::mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        path_ = buf.data();
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;
    const std::string &path() const { return path_; }
    std::string sub(const std::string &name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

inline std::vector<unsigned char> read_file(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path);
    return std::vector<unsigned char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline void write_file(const std::string &path, const std::vector<unsigned char> &bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char *>(bytes.data()), std::streamsize(bytes.size()));
    if (!out) throw std::runtime_error("cannot write " + path);
}

// Names of the regular files in `dir`, sorted.
inline std::vector<std::string> list_dir(const std::string &dir) {
    std::vector<std::string> names;
    for (auto &e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

// Flips the bits of one byte of a file in place.
inline void flip_byte(const std::string &path, uint64_t offset) {
    auto bytes = read_file(path);
    bytes.at(offset) ^= 0xff;
    write_file(path, bytes);
}

// Deterministic bytes: a function of (seed, position) that differs between neighbours.
inline unsigned char pattern_byte(uint64_t seed, uint64_t k) {
    uint64_t x = k * 0x9E3779B97F4A7C15ull + seed * 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 32;
    return static_cast<unsigned char>(x);
}

inline std::vector<unsigned char> pattern(uint64_t seed, uint64_t n) {
    std::vector<unsigned char> v(n);
    for (uint64_t k = 0; k < n; ++k) v[k] = pattern_byte(seed, k);
    return v;
}

// A whole tensor held in memory as its C-order byte image.
struct Tensor {
    std::string fqn;
    shardpoint::DType dtype;
    shardpoint::Dims shape;
    std::vector<unsigned char> image;

    Tensor(std::string f, shardpoint::DType d, shardpoint::Dims s, uint64_t seed)
        : fqn(std::move(f)), dtype(d), shape(std::move(s)) {
        image = sptest::pattern(seed, shardpoint::product(shape) * shardpoint::dtype_size(int32_t(dtype)));
    }
    size_t itemsize() const { return shardpoint::dtype_size(int32_t(dtype)); }
    shardpoint::Box whole() const { return shardpoint::Box{shardpoint::Dims(shape.size(), 0), shape}; }

    // A WriteItem for `box`, reading straight out of the whole image (strided unless the box
    // spans whole trailing dimensions).
    shardpoint::WriteItem item(const shardpoint::Box &box) const {
        shardpoint::WriteItem w;
        w.index = shardpoint::MetadataIndex{fqn, box.offsets};
        w.kind = shardpoint::EntryKind::tensor;
        w.dtype = dtype;
        w.global_shape = shape;
        w.sizes = box.sizes;
        w.data = data_at(box);
        if (!shardpoint::is_c_contiguous(box.sizes, strides())) w.strides = strides();
        return w;
    }
    shardpoint::Strides strides() const { return shardpoint::c_strides(shape); }
    // Where the box's first element lives in the whole image.
    const unsigned char *data_at(const shardpoint::Box &box) const {
        shardpoint::Strides s = strides();
        int64_t first = 0;
        for (size_t d = 0; d < shape.size(); ++d) first += int64_t(box.offsets[d]) * s[d];
        return image.data() + first * int64_t(itemsize());
    }
    // The box's elements in C order.
    std::vector<unsigned char> expected(const shardpoint::Box &box) const {
        std::vector<unsigned char> out(shardpoint::product(box.sizes) * itemsize());
        shardpoint::gather_elements(data_at(box), box.sizes, strides(), itemsize(), 0, shardpoint::product(box.sizes),
                                    out.data());
        return out;
    }
};

// `size` threads of one process acting as ranks over the core's Comm interface. Every
// collective is a rendezvous: all ranks deposit their buffers, rank 0 copies, all leave.
class ThreadGroup {
public:
    explicit ThreadGroup(int size) : size_(size), slots_(size) {}

    class Member final : public shardpoint::Comm {
    public:
        Member(ThreadGroup *group, int rank) : group_(group), rank_(rank) {}
        int rank() const override { return rank_; }
        int size() const override { return group_->size_; }
        void gather(const void *send, uint64_t len, void *recv) override {
            group_->exchange(rank_, const_cast<void *>(send), recv, len, true);
        }
        void broadcast(void *buf, uint64_t len) override { group_->exchange(rank_, buf, buf, len, false); }

    private:
        ThreadGroup *group_;
        int rank_;
    };

    std::unique_ptr<Member> comm(int rank) { return std::make_unique<Member>(this, rank); }
    uint64_t collectives() const { return generation_; }

private:
    void exchange(int rank, void *mine, void *root_buf, uint64_t len, bool is_gather) {
        std::unique_lock<std::mutex> lock(mutex_);
        const uint64_t generation = generation_;
        slots_[rank] = mine;
        if (++arrived_ == size_) cv_.notify_all();
        if (rank == 0) {
            cv_.wait(lock, [&] { return arrived_ == size_; });
            for (int r = 0; r < size_; ++r) {
                if (is_gather) {
                    if (len) std::memcpy(static_cast<char *>(root_buf) + uint64_t(r) * len, slots_[r], len);
                } else if (r != 0 && len) {
                    std::memcpy(slots_[r], root_buf, len);
                }
            }
            arrived_ = 0;
            ++generation_;
            cv_.notify_all();
        } else {
            cv_.wait(lock, [&] { return generation_ != generation; });
        }
    }

    int size_;
    std::vector<void *> slots_;
    std::mutex mutex_;
    std::condition_variable cv_;
    int arrived_ = 0;
    uint64_t generation_ = 0;
};

// What one rank's body ended with.
struct RankResult {
    bool ok = true;
    shardpoint::Code code = shardpoint::Code::ok;
    std::string message;
};

// Runs body(rank, comm) on `n` threads, one rank each, and collects every rank's outcome.
inline std::vector<RankResult> run_ranks(int n, const std::function<void(int, shardpoint::Comm &)> &body) {
    ThreadGroup group(n);
    std::vector<RankResult> results(n);
    std::vector<std::thread> threads;
    for (int r = 0; r < n; ++r) {
        threads.emplace_back([&, r] {
            auto comm = group.comm(r);
            try {
                body(r, *comm);
            } catch (const shardpoint::Error &e) {
                results[r] = RankResult{false, e.code(), e.what()};
            } catch (const std::exception &e) {
                results[r] = RankResult{false, shardpoint::Code::internal, std::string("non-shardpoint exception: ") + e.what()};
            }
        });
    }
    for (auto &t : threads) t.join();
    return results;
}

// Asserts that `expr` throws shardpoint::Error with `code` and that its message contains every
// string in `needles`.
#define EXPECT_SP_ERROR(expr, expected_code, ...)                                                          \
    do {                                                                                                   \
        bool thrown_ = false;                                                                              \
        try {                                                                                              \
            expr;                                                                                          \
        } catch (const shardpoint::Error &e_) {                                                            \
            thrown_ = true;                                                                                \
            EXPECT_EQ(int(e_.code()), int(expected_code)) << "message: " << e_.what();                     \
            for (const std::string &needle_ : std::vector<std::string>{__VA_ARGS__})                       \
                EXPECT_TRUE(std::string(e_.what()).find(needle_) != std::string::npos)                     \
                    << "message '" << e_.what() << "' lacks '" << needle_ << "'";                          \
        }                                                                                                  \
        EXPECT_TRUE(thrown_) << #expr " did not throw";                                                    \
    } while (0)

inline bool contains(const std::string &haystack, const std::string &needle) {
    return haystack.find(needle) != std::string::npos;
}

// Disjoint boxes that no plane separates and that every dimension sees piled up: five regions of a
// [3m, 3m, m] tensor laid out as a pinwheel in the first two dimensions, each arm sliced along a
// dimension other than the one whose cut it blocks (so no straight cut goes through the whole).
inline std::vector<shardpoint::Box> pinwheel_layout(uint64_t m) {
    using shardpoint::Box;
    std::vector<Box> boxes;
    for (uint64_t i = 0; i < m; ++i) boxes.push_back(Box{{0, i, 0}, {2 * m, 1, m}});      // bottom: blocks x = m
    for (uint64_t i = 0; i < m; ++i) boxes.push_back(Box{{2 * m + i, 0, 0}, {1, 2 * m, m}});  // right: blocks y = m
    for (uint64_t i = 0; i < m; ++i) boxes.push_back(Box{{m, 2 * m, i}, {2 * m, m, 1}});  // top: blocks x = 2m
    for (uint64_t i = 0; i < m; ++i) boxes.push_back(Box{{i, m, 0}, {1, 2 * m, m}});      // left: blocks y = 2m
    boxes.push_back(Box{{m, m, 0}, {m, m, m}});                                           // centre
    return boxes;
}

}  // namespace sptest
