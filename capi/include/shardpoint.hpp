/*
 * shardpoint.hpp - a header-only C++17 wrapper over the C ABI in shardpoint.h: RAII handles,
 * exceptions instead of codes, and LocalGroup, an in-process communicator for threads.
 * It adds no logic of its own; everything goes through the stable C ABI.
 */
#ifndef SHARDPOINT_HPP
#define SHARDPOINT_HPP

#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "shardpoint.h"

namespace shardpoint {
namespace cxx {

class Error : public std::runtime_error {
public:
    Error(int code, const std::string &message)
        : std::runtime_error(std::string(shardpoint_error_name(code)) + ": " + message), code_(code) {}
    int code() const noexcept { return code_; }

private:
    int code_;
};

inline void check(int rc) {
    if (rc != SHARDPOINT_OK) throw Error(rc, shardpoint_last_error());
}

using Dims = std::vector<uint64_t>;
using Strides = std::vector<int64_t>;

// A communicator handle (single process when default-constructed).
class Comm {
public:
    Comm() { check(shardpoint_comm_new_single(&raw_)); }
    explicit Comm(const shardpoint_comm_callbacks &callbacks) { check(shardpoint_comm_new_callbacks(&raw_, &callbacks)); }
    explicit Comm(shardpoint_comm *owned) : raw_(owned) {}
    Comm(Comm &&o) noexcept : raw_(std::exchange(o.raw_, nullptr)) {}
    Comm &operator=(Comm &&o) noexcept {
        std::swap(raw_, o.raw_);
        return *this;
    }
    ~Comm() { shardpoint_comm_free(raw_); }
    shardpoint_comm *get() const { return raw_; }
    int rank() const {
        int32_t r;
        check(shardpoint_comm_rank(raw_, &r));
        return r;
    }
    int size() const {
        int32_t s;
        check(shardpoint_comm_size(raw_, &s));
        return s;
    }

private:
    shardpoint_comm *raw_ = nullptr;
};

// `size` threads of one process acting as ranks: comm(r) is rank r's communicator. Each rank
// must use its communicator from one thread; the group must outlive the communicators.
class LocalGroup {
public:
    explicit LocalGroup(int size) : size_(size), slots_(size) {}

    Comm comm(int rank) {
        shardpoint_comm_callbacks cb = SHARDPOINT_COMM_CALLBACKS_INIT;
        cb.rank = rank;
        cb.size = size_;
        cb.user = new Member{this, rank};
        cb.gather = &LocalGroup::gather;
        cb.broadcast = &LocalGroup::broadcast;
        cb.destroy = [](void *user) { delete static_cast<Member *>(user); };
        return Comm(cb);
    }

private:
    struct Member {
        LocalGroup *group;
        int rank;
    };

    // Every rank deposits its pointer, rank 0 copies, then every rank waits until rank 0 is done.
    void exchange(int rank, const void *in, void *out, uint64_t len, bool is_gather) {
        std::unique_lock<std::mutex> lock(mutex_);
        const uint64_t round = round_;
        slots_[rank] = is_gather ? const_cast<void *>(in) : out;
        if (++arrived_ == size_) cv_.notify_all();
        cv_.wait(lock, [&] { return arrived_ == size_ || round_ != round; });
        if (rank == 0) {
            for (int r = 0; r < size_; ++r) {
                if (is_gather) std::memcpy(static_cast<char *>(out) + uint64_t(r) * len, slots_[r], len);
                else if (r != 0) std::memcpy(slots_[r], out, len);
            }
            arrived_ = 0;
            ++round_;
            cv_.notify_all();
        } else {
            cv_.wait(lock, [&] { return round_ != round; });
        }
    }
    static int gather(void *user, const void *send, uint64_t len, void *recv) {
        auto *m = static_cast<Member *>(user);
        m->group->exchange(m->rank, send, recv, len, true);
        return 0;
    }
    static int broadcast(void *user, void *buf, uint64_t len) {
        auto *m = static_cast<Member *>(user);
        m->group->exchange(m->rank, nullptr, buf, len, false);
        return 0;
    }

    int size_;
    std::vector<void *> slots_;
    std::mutex mutex_;
    std::condition_variable cv_;
    int arrived_ = 0;
    uint64_t round_ = 0;
};

class Save {
public:
    Save(const std::string &dir, const Comm *comm = nullptr, const shardpoint_save_options *options = nullptr) {
        check(shardpoint_save_new(&raw_, dir.c_str(), comm ? comm->get() : nullptr, options));
    }
    Save(const Save &) = delete;
    Save &operator=(const Save &) = delete;
    ~Save() { shardpoint_save_free(raw_); }

    // `data` must stay valid until commit() returns.
    void add_tensor(const std::string &fqn, int32_t dtype, const Dims &shape, const Dims &offsets, const Dims &sizes,
                    const void *data, const Strides &strides = {}) {
        check(shardpoint_save_add_tensor(raw_, fqn.c_str(), dtype, uint32_t(shape.size()), shape.data(), offsets.data(),
                                         sizes.data(), data, strides.empty() ? nullptr : strides.data()));
    }
    void add_bytes(const std::string &fqn, const void *data, uint64_t len) {
        check(shardpoint_save_add_bytes(raw_, fqn.c_str(), data, len));
    }
    void set_metadata(const std::string &key, const std::string &value) {
        check(shardpoint_save_set_metadata(raw_, key.c_str(), value.c_str()));
    }
    void commit() { check(shardpoint_save_commit(raw_)); }

private:
    shardpoint_save *raw_ = nullptr;
};

struct Entry {
    std::string fqn;
    int32_t kind;
    int32_t dtype;
    Dims shape;
    uint64_t chunk_count, numel, nbytes, stored_bytes, covered_numel;
};

class Reader {
public:
    explicit Reader(const std::string &dir, const shardpoint_load_options *options = nullptr) {
        check(shardpoint_reader_open(&raw_, dir.c_str(), options));
    }
    Reader(const Reader &) = delete;
    Reader &operator=(const Reader &) = delete;
    ~Reader() { shardpoint_reader_free(raw_); }
    shardpoint_reader *get() const { return raw_; }

    std::vector<Entry> entries() const {
        uint64_t n;
        check(shardpoint_reader_entry_count(raw_, &n));
        std::vector<Entry> out;
        for (uint64_t i = 0; i < n; ++i) {
            shardpoint_entry_info e;
            check(shardpoint_reader_entry_info(raw_, i, &e));
            out.push_back(Entry{e.fqn, e.kind, e.dtype, Dims(e.shape, e.shape + e.ndim), e.chunk_count, e.numel, e.nbytes,
                                e.stored_bytes, e.covered_numel});
        }
        return out;
    }
    std::string metadata(const std::string &key) const {
        const char *v;
        check(shardpoint_reader_metadata_get(raw_, key.c_str(), &v));
        return v;
    }
    void read_tensor(const std::string &fqn, int32_t dtype, const Dims &offsets, const Dims &sizes, void *dst,
                     const Strides &strides = {}) {
        check(shardpoint_reader_read_tensor(raw_, fqn.c_str(), dtype, uint32_t(offsets.size()), offsets.data(), sizes.data(),
                                            dst, strides.empty() ? nullptr : strides.data()));
    }
    std::vector<unsigned char> read_bytes(const std::string &fqn) {
        uint64_t index;
        check(shardpoint_reader_find(raw_, fqn.c_str(), &index));
        shardpoint_entry_info e;
        check(shardpoint_reader_entry_info(raw_, index, &e));
        std::vector<unsigned char> out(e.nbytes);
        uint64_t len;
        check(shardpoint_reader_read_bytes(raw_, fqn.c_str(), out.data(), out.size(), &len));
        return out;
    }
    void verify() { check(shardpoint_reader_verify(raw_)); }

private:
    shardpoint_reader *raw_ = nullptr;
};

class Load {
public:
    explicit Load(Reader &reader, const Comm *comm = nullptr) {
        check(shardpoint_load_new(&raw_, reader.get(), comm ? comm->get() : nullptr));
    }
    Load(const Load &) = delete;
    Load &operator=(const Load &) = delete;
    ~Load() { shardpoint_load_free(raw_); }
    // `dst` must stay valid until execute() returns.
    void add_tensor(const std::string &fqn, int32_t dtype, const Dims &offsets, const Dims &sizes, void *dst,
                    const Strides &strides = {}) {
        check(shardpoint_load_add_tensor(raw_, fqn.c_str(), dtype, uint32_t(offsets.size()), offsets.data(), sizes.data(),
                                         dst, strides.empty() ? nullptr : strides.data()));
    }
    void add_bytes(const std::string &fqn, void *dst, uint64_t capacity) {
        check(shardpoint_load_add_bytes(raw_, fqn.c_str(), dst, capacity));
    }
    void execute() { check(shardpoint_load_execute(raw_)); }

private:
    shardpoint_load *raw_ = nullptr;
};

}  // namespace cxx
}  // namespace shardpoint

#endif  // SHARDPOINT_HPP
