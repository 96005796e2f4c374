/*
 * shardpoint.hpp - a header-only C++17 wrapper over the C ABI in shardpoint.h: RAII handles,
 * exceptions instead of codes, and LocalGroup, an in-process communicator for threads.
 * It adds no logic of its own; everything goes through the stable C ABI.
 *
 * Loads are exact: every destination is given with its size (a std::vector, a pointer and an
 * element count, or raw memory and its byte count), and a C-order destination must hold exactly
 * the box's elements (Error with SHARDPOINT_ESHAPE otherwise); with explicit strides every element
 * the box places must lie inside it (SHARDPOINT_ERANGE). read_whole/add_whole check the stored
 * shape: "destination has shape [6, 7] but 'w' is [6, 8]". The old overloads that take a bare
 * void * cannot be checked and are deprecated.
 *
 * Typed sources and destinations are any contiguous container of a C++ element type: anything
 * std::data and std::size apply to (std::vector, std::array, a C array, C++20's std::span, or
 * Span below for a pointer and a count).
 */
#ifndef SHARDPOINT_HPP
#define SHARDPOINT_HPP

#include <array>
#include <complex>
#include <condition_variable>
#include <functional>
#include <iterator>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
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

// The dtype of a C++ element type (bool, the fixed-width integers, float, double, std::complex).
// f16, bf16 and the f8 types have no C++ type here: use the raw overloads with an explicit dtype.
template <class T> constexpr int32_t dtype_of() {
    if constexpr (std::is_same_v<T, bool>) return SHARDPOINT_DTYPE_BOOL;
    else if constexpr (std::is_same_v<T, uint8_t>) return SHARDPOINT_DTYPE_U8;
    else if constexpr (std::is_same_v<T, int8_t>) return SHARDPOINT_DTYPE_I8;
    else if constexpr (std::is_same_v<T, int16_t>) return SHARDPOINT_DTYPE_I16;
    else if constexpr (std::is_same_v<T, int32_t>) return SHARDPOINT_DTYPE_I32;
    else if constexpr (std::is_same_v<T, int64_t>) return SHARDPOINT_DTYPE_I64;
    else if constexpr (std::is_same_v<T, uint16_t>) return SHARDPOINT_DTYPE_U16;
    else if constexpr (std::is_same_v<T, uint32_t>) return SHARDPOINT_DTYPE_U32;
    else if constexpr (std::is_same_v<T, uint64_t>) return SHARDPOINT_DTYPE_U64;
    else if constexpr (std::is_same_v<T, float>) return SHARDPOINT_DTYPE_F32;
    else if constexpr (std::is_same_v<T, double>) return SHARDPOINT_DTYPE_F64;
    else if constexpr (std::is_same_v<T, std::complex<float>>) return SHARDPOINT_DTYPE_COMPLEX64;
    else if constexpr (std::is_same_v<T, std::complex<double>>) return SHARDPOINT_DTYPE_COMPLEX128;
    else static_assert(sizeof(T) == 0, "no shardpoint dtype for this element type; use a raw overload");
}

// A view of `size` contiguous elements: C++20's std::span, as far as C++17 allows. Lets a
// pointer and a count go where a container is expected: save.add_whole("w", {n}, Span(p, n)).
template <class T> class Span {
public:
    constexpr Span() noexcept = default;
    constexpr Span(T *data, size_t size) noexcept : data_(data), size_(size) {}
    template <size_t N> constexpr Span(T (&array)[N]) noexcept : data_(array), size_(N) {}
    // From any contiguous container whose elements convert (std::vector<float> to Span<const float>).
    template <class C, class = std::enable_if_t<!std::is_same_v<std::remove_cv_t<C>, Span> &&
                                                std::is_convertible_v<decltype(std::data(std::declval<C &>())), T *>>>
    constexpr Span(C &container) noexcept : data_(std::data(container)), size_(std::size(container)) {}
    constexpr T *data() const noexcept { return data_; }
    constexpr size_t size() const noexcept { return size_; }
    constexpr bool empty() const noexcept { return size_ == 0; }
    constexpr T &operator[](size_t i) const noexcept { return data_[i]; }
    constexpr T *begin() const noexcept { return data_; }
    constexpr T *end() const noexcept { return data_ + size_; }

private:
    T *data_ = nullptr;
    size_t size_ = 0;
};
template <class C> Span(C &) -> Span<std::remove_pointer_t<decltype(std::data(std::declval<C &>()))>>;
template <class T, size_t N> Span(T (&)[N]) -> Span<T>;

namespace detail {

// The element type of a contiguous container (SFINAE: only for types std::data applies to, so
// std::vector<bool>, which has no element memory, is refused at compile time).
template <class C> using element_t = std::remove_pointer_t<decltype(std::data(std::declval<C &>()))>;

// Wraps a progress callable for the C ABI: `user` points at the std::function.
using ProgressFunction = std::function<bool(int32_t phase, uint64_t done, uint64_t total)>;
inline int call_progress(void *user, int32_t phase, uint64_t done, uint64_t total) {
    auto &f = *static_cast<ProgressFunction *>(user);
    try {
        return f(phase, done, total) ? 0 : 1;
    } catch (...) {
        return 1;  // an exception cannot cross the C ABI: it cancels instead
    }
}

inline std::string dims_text(const Dims &d) {
    std::string s = "[";
    for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + "]";
}

// Checks a destination of `capacity` elements whose box has `sizes` and whose first element is
// element `first`, placed by `strides` (empty: C order). C order must fit exactly; strides must
// keep every element inside the capacity. The library trusts the pointer, so this is what keeps
// the caller's memory safe.
inline void check_destination(const std::string &fqn, const Dims &sizes, uint64_t capacity, const Strides &strides,
                              uint64_t first, const char *what = "destination") {
    if (strides.empty()) {
        uint64_t numel = 1;
        for (uint64_t s : sizes) {
            if (s != 0 && numel > UINT64_MAX / s) throw Error(SHARDPOINT_ESHAPE, "box of '" + fqn + "' overflows");
            numel *= s;
        }
        if (first != 0 || numel != capacity)
            throw Error(SHARDPOINT_ESHAPE, std::string(what) + " holds " + std::to_string(capacity) + " elements but the box " +
                                               dims_text(sizes) + " of '" + fqn + "' has " + std::to_string(numel) +
                                               (first ? " (and a C-order " + std::string(what) + " starts at element 0)" : ""));
        return;
    }
    if (strides.size() != sizes.size())
        throw Error(SHARDPOINT_EINVAL, std::to_string(strides.size()) + " strides for " + std::to_string(sizes.size()) +
                                           " dimensions");
    for (uint64_t s : sizes)
        if (s == 0) {  // an empty box touches no memory
            if (first > capacity) throw Error(SHARDPOINT_ERANGE, "first element past the destination's end");
            return;
        }
    // Elements reached before and after the first one, with every product and sum checked.
    const auto outside = [&] {
        return Error(SHARDPOINT_ERANGE, "the box " + dims_text(sizes) + " of '" + fqn +
                                            "' with these strides reaches outside a " + what + " of " +
                                            std::to_string(capacity) + " elements");
    };
    uint64_t below = 0, above = 0;
    for (size_t d = 0; d < sizes.size(); ++d) {
        const uint64_t mag = strides[d] < 0 ? uint64_t(0) - uint64_t(strides[d]) : uint64_t(strides[d]);
        const uint64_t n = sizes[d] - 1;
        if (mag != 0 && n > UINT64_MAX / mag) throw outside();
        uint64_t &side = strides[d] < 0 ? below : above;
        if (side > UINT64_MAX - mag * n) throw outside();
        side += mag * n;
    }
    if (below > first || first >= capacity || above >= capacity - first) throw outside();
}

inline uint64_t whole_elements(const std::string &fqn, uint64_t bytes, int32_t dtype) {
    const uint32_t esize = shardpoint_dtype_size(dtype);
    if (esize == 0) throw Error(SHARDPOINT_EINVAL, "unknown dtype " + std::to_string(dtype));
    if (bytes % esize != 0)
        throw Error(SHARDPOINT_ESHAPE, "a destination of " + std::to_string(bytes) + " bytes for '" + fqn +
                                           "' is not a whole number of " + std::to_string(esize) + "-byte elements");
    return bytes / esize;
}

}  // namespace detail

// Save options in C++ terms. Saves are durable by default (data files, metadata and the directory
// are fsynced before commit() returns).
struct SaveOptions {
    bool overwrite = false;      // replace a checkpoint already at the path (else SHARDPOINT_EEXISTS)
    // false: SHARDPOINT_SAVE_NO_FSYNC, skip every fsync. Safe against a crash of the process, NOT
    // against a power loss or a kernel crash, after which the new checkpoint (and with overwrite
    // the previous one too) may be lost or unreadable.
    bool durable = true;
    bool allow_partial = false;  // accept tensors the ranks leave partly uncovered (else SHARDPOINT_EUNCOVERED)
    int32_t compression_level = 0;
    uint32_t codec = SHARDPOINT_CODEC_DEFAULT;  // SHARDPOINT_CODEC_*: ZSTD or ZLIB compress per block
    bool shuffle = false;        // byte-shuffle before compressing (block codecs only)
    uint32_t io_threads = 0;
    uint64_t alignment = 0;
    std::string checkpoint_id;   // empty: the directory's name

    uint32_t flags() const {
        return (overwrite ? SHARDPOINT_SAVE_OVERWRITE : 0u) | (durable ? 0u : SHARDPOINT_SAVE_NO_FSYNC) |
               (allow_partial ? SHARDPOINT_SAVE_ALLOW_PARTIAL : 0u);
    }
    // The C struct; its checkpoint_id points into this object.
    shardpoint_save_options c() const {
        shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
        o.flags = flags();
        o.compression_level = compression_level;
        o.codec = codec;
        o.filters = shuffle ? SHARDPOINT_FILTER_SHUFFLE : 0u;
        o.io_threads = io_threads;
        o.alignment = alignment;
        o.checkpoint_id = checkpoint_id.empty() ? nullptr : checkpoint_id.c_str();
        return o;
    }
};

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

// Host memory asynchronous saves copy their data into (Save::commit_async), allocated once and
// reused save after save.
class Staging {
public:
    explicit Staging(uint64_t capacity) { check(shardpoint_staging_new(&raw_, capacity)); }
    Staging(const Staging &) = delete;
    Staging &operator=(const Staging &) = delete;
    Staging(Staging &&o) noexcept : raw_(std::exchange(o.raw_, nullptr)) {}
    Staging &operator=(Staging &&o) noexcept {
        if (this != &o) {
            shardpoint_staging_free(raw_);
            raw_ = std::exchange(o.raw_, nullptr);
        }
        return *this;
    }
    ~Staging() { shardpoint_staging_free(raw_); }  // waits for a save still using it
    uint64_t capacity() const {
        uint64_t c;
        check(shardpoint_staging_capacity(raw_, &c));
        return c;
    }
    shardpoint_staging *get() const { return raw_; }

private:
    shardpoint_staging *raw_ = nullptr;
};

class Save {
public:
    Save(const std::string &dir, const Comm *comm = nullptr, const shardpoint_save_options *options = nullptr) {
        check(shardpoint_save_new(&raw_, dir.c_str(), comm ? comm->get() : nullptr, options));
    }
    Save(const std::string &dir, const Comm *comm, const SaveOptions &options) {
        const shardpoint_save_options o = options.c();  // copied by shardpoint_save_new
        check(shardpoint_save_new(&raw_, dir.c_str(), comm ? comm->get() : nullptr, &o));
    }
    Save(const Save &) = delete;
    Save &operator=(const Save &) = delete;
    Save(Save &&o) noexcept : raw_(std::exchange(o.raw_, nullptr)), progress_(std::move(o.progress_)) {}
    Save &operator=(Save &&o) noexcept {
        if (this != &o) {
            shardpoint_save_free(raw_);
            raw_ = std::exchange(o.raw_, nullptr);
            progress_ = std::move(o.progress_);
        }
        return *this;
    }
    ~Save() { shardpoint_save_free(raw_); }

    // `data` must stay valid until commit() returns.
    void add_tensor(const std::string &fqn, int32_t dtype, const Dims &shape, const Dims &offsets, const Dims &sizes,
                    const void *data, const Strides &strides = {}) {
        check(shardpoint_save_add_tensor(raw_, fqn.c_str(), dtype, uint32_t(shape.size()), shape.data(), offsets.data(),
                                         sizes.data(), data, strides.empty() ? nullptr : strides.data()));
    }
    // Typed: the dtype follows from T, and the chunk must lie inside the `count` elements at
    // `data` (C order: exactly the box's elements; strides: every element it places), the box's
    // first element at data[first]. `data` must stay valid until commit() returns.
    template <class T>
    void add_tensor(const std::string &fqn, const Dims &shape, const Dims &offsets, const Dims &sizes, const T *data,
                    size_t count, const Strides &strides = {}, size_t first = 0) {
        detail::check_destination(fqn, sizes, count, strides, first, "source");
        check(shardpoint_save_add_tensor(raw_, fqn.c_str(), dtype_of<T>(), uint32_t(shape.size()), shape.data(),
                                         offsets.data(), sizes.data(), data + first,
                                         strides.empty() ? nullptr : strides.data()));
    }
    // From a contiguous container (std::vector, std::array, a C array, Span, std::span).
    template <class C, class T = detail::element_t<const C>>
    void add_tensor(const std::string &fqn, const Dims &shape, const Dims &offsets, const Dims &sizes, const C &data,
                    const Strides &strides = {}, size_t first = 0) {
        add_tensor(fqn, shape, offsets, sizes, std::data(data), std::size(data), strides, first);
    }
    // The whole tensor of `shape`, in C order.
    template <class C, class T = detail::element_t<const C>>
    void add_whole(const std::string &fqn, const Dims &shape, const C &data) {
        add_tensor(fqn, shape, Dims(shape.size(), 0), shape, data);
    }
    void add_bytes(const std::string &fqn, const void *data, uint64_t len) {
        check(shardpoint_save_add_bytes(raw_, fqn.c_str(), data, len));
    }
    void set_metadata(const std::string &key, const std::string &value) {
        check(shardpoint_save_set_metadata(raw_, key.c_str(), value.c_str()));
    }
    // Reports the commit's write on this thread: progress(phase, done, total) returns false to
    // cancel (commit() then throws SHARDPOINT_ECANCELED and nothing is committed). An exception
    // thrown by `progress` cancels too. An empty function turns reporting off.
    void set_progress(std::function<bool(int32_t phase, uint64_t done, uint64_t total)> progress) {
        progress_ = std::make_unique<detail::ProgressFunction>(std::move(progress));
        check(shardpoint_save_set_progress(raw_, *progress_ ? detail::call_progress : nullptr, progress_.get()));
    }
    void commit() { check(shardpoint_save_commit(raw_)); }
    // The bytes of staging this rank's data takes.
    uint64_t staging_size() const {
        uint64_t n;
        check(shardpoint_save_staging_size(raw_, &n));
        return n;
    }
    // Copies the data into `staging` and commits in the background: the data may change once
    // this returns; wait() gives the outcome (throws as commit() would). `staging` must outlive
    // the save's commit.
    void commit_async(Staging &staging) { check(shardpoint_save_commit_async(raw_, staging.get())); }
    void wait() { check(shardpoint_save_wait(raw_)); }
    bool done() {
        int32_t finished;
        check(shardpoint_save_poll(raw_, &finished));
        return finished != 0;
    }
    void cancel() { check(shardpoint_save_cancel(raw_)); }

private:
    shardpoint_save *raw_ = nullptr;
    std::unique_ptr<detail::ProgressFunction> progress_;  // stable address: the C side keeps it
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
    // Collective: rank 0 reads the metadata and broadcasts it (shardpoint_reader_open_shared).
    Reader(const std::string &dir, const Comm &comm, const shardpoint_load_options *options = nullptr) {
        check(shardpoint_reader_open_shared(&raw_, dir.c_str(), options, comm.get()));
    }
    Reader(const Reader &) = delete;
    Reader &operator=(const Reader &) = delete;
    // Movable; a Load made from a Reader keeps pointing at that Reader object, so do not move a
    // Reader while a Load of it is alive.
    Reader(Reader &&o) noexcept : raw_(std::exchange(o.raw_, nullptr)), progress_(std::move(o.progress_)) {}
    Reader &operator=(Reader &&o) noexcept {
        if (this != &o) {
            shardpoint_reader_free(raw_);
            raw_ = std::exchange(o.raw_, nullptr);
            progress_ = std::move(o.progress_);
        }
        return *this;
    }
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
    // The entry named fqn (SHARDPOINT_ENOTFOUND when there is none).
    Entry entry(const std::string &fqn) const {
        uint64_t index;
        check(shardpoint_reader_find(raw_, fqn.c_str(), &index));
        shardpoint_entry_info e;
        check(shardpoint_reader_entry_info(raw_, index, &e));
        return Entry{e.fqn, e.kind, e.dtype, Dims(e.shape, e.shape + e.ndim), e.chunk_count, e.numel, e.nbytes,
                     e.stored_bytes, e.covered_numel};
    }

    // Reads the box (offsets, sizes) of tensor fqn into dst_bytes bytes of raw memory at dst, whose
    // first element receives the box's first element: in C order (no strides) the memory must
    // hold exactly the box; with strides every element must lie in [dst, dst + dst_bytes).
    void read_tensor(const std::string &fqn, int32_t dtype, const Dims &offsets, const Dims &sizes, void *dst,
                     uint64_t dst_bytes, const Strides &strides = {}) {
        detail::check_destination(fqn, sizes, detail::whole_elements(fqn, dst_bytes, dtype), strides, 0);
        check(shardpoint_reader_read_tensor(raw_, fqn.c_str(), dtype, uint32_t(offsets.size()), offsets.data(), sizes.data(),
                                            dst, strides.empty() ? nullptr : strides.data()));
    }
    // Typed: the dtype follows from T; the box's first element goes to dst[first].
    template <class T>
    void read_tensor(const std::string &fqn, const Dims &offsets, const Dims &sizes, T *dst, size_t count,
                     const Strides &strides = {}, size_t first = 0) {
        detail::check_destination(fqn, sizes, count, strides, first);
        check(shardpoint_reader_read_tensor(raw_, fqn.c_str(), dtype_of<T>(), uint32_t(offsets.size()), offsets.data(),
                                            sizes.data(), dst + first, strides.empty() ? nullptr : strides.data()));
    }
    // Into a contiguous container (std::vector, std::array, a C array, Span, std::span).
    template <class C, class T = detail::element_t<C>>
    void read_tensor(const std::string &fqn, const Dims &offsets, const Dims &sizes, C &&dst,
                     const Strides &strides = {}, size_t first = 0) {
        read_tensor(fqn, offsets, sizes, std::data(dst), std::size(dst), strides, first);
    }
    // The whole tensor fqn, whose shape the caller states: a tensor of another shape is an Error
    // with SHARDPOINT_ESHAPE naming both shapes, never a partial read.
    template <class C, class T = detail::element_t<C>> void read_whole(const std::string &fqn, const Dims &shape, C &&dst) {
        read_tensor(fqn, whole_box(fqn, shape), shape, std::forward<C>(dst));
    }
    // The whole tensor fqn into a new vector sized from the stored shape.
    template <class T> std::vector<T> read_whole(const std::string &fqn) {
        const Entry e = entry(fqn);
        std::vector<T> out(size_t(e.numel));
        read_tensor(fqn, Dims(e.shape.size(), 0), e.shape, out);
        return out;
    }

    // Unchecked: the library writes the box at dst whatever memory is there.
    [[deprecated("the destination's size is unknown: pass it (dst, dst_bytes), or a std::vector")]]
    void read_tensor(const std::string &fqn, int32_t dtype, const Dims &offsets, const Dims &sizes, void *dst,
                     const Strides &strides = {}) {
        check(shardpoint_reader_read_tensor(raw_, fqn.c_str(), dtype, uint32_t(offsets.size()), offsets.data(), sizes.data(),
                                            dst, strides.empty() ? nullptr : strides.data()));
    }

    // The zero offsets of a whole-tensor request, after checking `shape` against the stored one
    // (a missing or bytes entry is left to the library's own error).
    Dims whole_box(const std::string &fqn, const Dims &shape) const {
        uint64_t index;
        if (shardpoint_reader_find(raw_, fqn.c_str(), &index) == SHARDPOINT_OK) {
            shardpoint_entry_info e;
            check(shardpoint_reader_entry_info(raw_, index, &e));
            const Dims stored(e.shape, e.shape + e.ndim);
            if (e.kind == SHARDPOINT_ENTRY_TENSOR && stored != shape)
                throw Error(SHARDPOINT_ESHAPE, "destination has shape " + detail::dims_text(shape) + " but '" + fqn +
                                                   "' is " + detail::dims_text(stored));
        }
        return Dims(shape.size(), 0);
    }
    uint32_t block_size() const {
        uint32_t b;
        check(shardpoint_reader_block_size(raw_, &b));
        return b;
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
    // Reports verify() on the thread that calls it; see Save::set_progress. Not while another
    // thread verifies through this reader.
    void set_progress(std::function<bool(int32_t phase, uint64_t done, uint64_t total)> progress) {
        auto next = std::make_unique<detail::ProgressFunction>(std::move(progress));
        check(shardpoint_reader_set_progress(raw_, *next ? detail::call_progress : nullptr, next.get()));
        progress_ = std::move(next);
    }

private:
    shardpoint_reader *raw_ = nullptr;
    std::unique_ptr<detail::ProgressFunction> progress_;
};

class Load {
public:
    explicit Load(Reader &reader, const Comm *comm = nullptr) : reader_(&reader) {
        check(shardpoint_load_new(&raw_, reader.get(), comm ? comm->get() : nullptr));
    }
    Load(const Load &) = delete;
    Load &operator=(const Load &) = delete;
    Load(Load &&o) noexcept
        : reader_(o.reader_), raw_(std::exchange(o.raw_, nullptr)), progress_(std::move(o.progress_)) {}
    Load &operator=(Load &&o) noexcept {
        if (this != &o) {
            shardpoint_load_free(raw_);
            reader_ = o.reader_;
            raw_ = std::exchange(o.raw_, nullptr);
            progress_ = std::move(o.progress_);
        }
        return *this;
    }
    ~Load() { shardpoint_load_free(raw_); }
    // Destinations must stay valid until execute() returns; they are checked as in
    // Reader::read_tensor (C order: exactly the box; strides: inside the given memory).
    void add_tensor(const std::string &fqn, int32_t dtype, const Dims &offsets, const Dims &sizes, void *dst,
                    uint64_t dst_bytes, const Strides &strides = {}) {
        detail::check_destination(fqn, sizes, detail::whole_elements(fqn, dst_bytes, dtype), strides, 0);
        check(shardpoint_load_add_tensor(raw_, fqn.c_str(), dtype, uint32_t(offsets.size()), offsets.data(), sizes.data(),
                                         dst, strides.empty() ? nullptr : strides.data()));
    }
    template <class T>
    void add_tensor(const std::string &fqn, const Dims &offsets, const Dims &sizes, T *dst, size_t count,
                    const Strides &strides = {}, size_t first = 0) {
        detail::check_destination(fqn, sizes, count, strides, first);
        check(shardpoint_load_add_tensor(raw_, fqn.c_str(), dtype_of<T>(), uint32_t(offsets.size()), offsets.data(),
                                         sizes.data(), dst + first, strides.empty() ? nullptr : strides.data()));
    }
    // Into a contiguous container (std::vector, std::array, a C array, Span, std::span).
    template <class C, class T = detail::element_t<C>>
    void add_tensor(const std::string &fqn, const Dims &offsets, const Dims &sizes, C &&dst, const Strides &strides = {},
                    size_t first = 0) {
        add_tensor(fqn, offsets, sizes, std::data(dst), std::size(dst), strides, first);
    }
    // The whole tensor fqn of the stated shape (SHARDPOINT_ESHAPE naming both shapes otherwise).
    template <class C, class T = detail::element_t<C>> void add_whole(const std::string &fqn, const Dims &shape, C &&dst) {
        add_tensor(fqn, reader_->whole_box(fqn, shape), shape, std::forward<C>(dst));
    }
    [[deprecated("the destination's size is unknown: pass it (dst, dst_bytes), or a std::vector")]]
    void add_tensor(const std::string &fqn, int32_t dtype, const Dims &offsets, const Dims &sizes, void *dst,
                    const Strides &strides = {}) {
        check(shardpoint_load_add_tensor(raw_, fqn.c_str(), dtype, uint32_t(offsets.size()), offsets.data(), sizes.data(),
                                         dst, strides.empty() ? nullptr : strides.data()));
    }
    void add_bytes(const std::string &fqn, void *dst, uint64_t capacity) {
        check(shardpoint_load_add_bytes(raw_, fqn.c_str(), dst, capacity));
    }
    // Reports execute()'s read on this thread; see Save::set_progress.
    void set_progress(std::function<bool(int32_t phase, uint64_t done, uint64_t total)> progress) {
        progress_ = std::make_unique<detail::ProgressFunction>(std::move(progress));
        check(shardpoint_load_set_progress(raw_, *progress_ ? detail::call_progress : nullptr, progress_.get()));
    }
    void execute() { check(shardpoint_load_execute(raw_)); }

private:
    Reader *reader_;
    shardpoint_load *raw_ = nullptr;
    std::unique_ptr<detail::ProgressFunction> progress_;
};

}  // namespace cxx
}  // namespace shardpoint

#endif  // SHARDPOINT_HPP
