// Shared by the C ABI's translation units: the handle structs, the exception firewall
// (`guarded`) and argument helpers. No logic lives in the C ABI beyond argument checking and
// handle bookkeeping.
#pragma once

#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "shardpoint.h"
#include "shardpoint/checkpoint.hpp"
#include "shardpoint/error.hpp"

struct shardpoint_comm {
    std::unique_ptr<shardpoint::Comm> impl;
};
struct shardpoint_save {
    std::unique_ptr<shardpoint::SaveSession> impl;
};
struct shardpoint_staging {
    std::unique_ptr<shardpoint::Staging> impl;
};
struct shardpoint_reader {
    std::unique_ptr<shardpoint::Reader> impl;
    // shardpoint_reader_set_progress: copied by each verify, so that it may change meanwhile.
    std::mutex progress_mutex;
    shardpoint::ProgressCallback progress;
    // shardpoint_reader_entry_names: every fqn, NUL-terminated, built on first use.
    std::once_flag names_once;
    std::string names;
};
struct shardpoint_load {
    std::unique_ptr<shardpoint::LoadSession> impl;
};

namespace shardpoint {
namespace capi {

// Records a failure as the calling thread's last error; returns `code`.
int fail(int code, const char *message) noexcept;

// Runs `body`, mapping any exception to an error code and the thread's last error.
template <class Body>
int guarded(Body &&body) noexcept {
    try {
        body();
        return SHARDPOINT_OK;
    } catch (const Error &e) {
        return fail(int(e.code()), e.what());
    } catch (const std::bad_alloc &) {
        return fail(SHARDPOINT_ENOMEM, "out of memory");
    } catch (const std::exception &e) {
        return fail(SHARDPOINT_EINTERNAL, e.what());
    } catch (...) {
        return fail(SHARDPOINT_EINTERNAL, "unknown exception");
    }
}

inline void need(const void *p, const char *what) {
    if (p == nullptr) throw Error(Code::invalid_argument, std::string(what) + " is NULL");
}

inline std::string text(const char *s, const char *what) {
    need(s, what);
    return std::string(s);
}

inline Dims dims(const uint64_t *p, uint32_t n, const char *what) {
    if (n > SHARDPOINT_MAX_NDIM) throw Error(Code::shape, "more than 32 dimensions");
    if (n == 0) return {};
    need(p, what);
    return Dims(p, p + n);
}

// The core's save options from the C struct (NULL: defaults); the checkpoint id defaults to the
// directory's name.
SaveOptions save_options_of(const shardpoint_save_options *options, const char *dir);

// The core's progress callback over the C one (empty for NULL): a nonzero return cancels.
inline ProgressCallback progress_of(shardpoint_progress_callback callback, void *user) {
    if (!callback) return {};
    return [callback, user](ProgressPhase phase, uint64_t done, uint64_t total) {
        return callback(user, int32_t(phase), done, total) == 0;
    };
}

inline Strides strides_of(const int64_t *p, uint32_t n) { return p && n ? Strides(p, p + n) : Strides{}; }

// The core's form of a caller's array of versioned structs (`struct_size`: the caller's
// sizeof, the array's stride; at least our version 1 of the struct), converted element by
// element before anything is added, so that a bad element is refused with nothing kept.
template <class Core, class CStruct, class Convert>
std::vector<Core> batch_of(const CStruct *items, uint64_t count, size_t struct_size, const char *what, Convert &&convert) {
    if (count == 0) return {};
    need(items, what);
    if (struct_size < sizeof(CStruct))
        throw Error(Code::invalid_argument, std::string(what) + ": struct size " + std::to_string(struct_size) +
                                                " is smaller than version 1's " + std::to_string(sizeof(CStruct)));
    std::vector<Core> out;
    out.reserve(size_t(count));
    const char *base = reinterpret_cast<const char *>(items);
    for (uint64_t i = 0; i < count; ++i) {
        const CStruct &item = *reinterpret_cast<const CStruct *>(base + i * struct_size);
        try {
            out.push_back(convert(item));
        } catch (const Error &e) {
            throw Error(e.code(), "item " + std::to_string(i) + " of the batch: " + e.what());
        }
    }
    return out;
}

}  // namespace capi
}  // namespace shardpoint
