// The C ABI: garbage collection of unfinished saves' debris.
#include "internal.hpp"

using namespace shardpoint;
using namespace shardpoint::capi;

extern "C" {

int shardpoint_gc(const char *dir, uint32_t flags, shardpoint_gc_callback callback, void *user, uint64_t *out_files,
                  uint64_t *out_bytes) {
    return guarded([&] {
        std::string d = text(dir, "dir");
        if (flags & ~uint32_t(SHARDPOINT_GC_DRY_RUN)) throw Error(Code::invalid_argument, "unknown gc flags");
        uint64_t count = 0, bytes = 0;
        collect_garbage(d, flags & SHARDPOINT_GC_DRY_RUN, [&](const GarbageFile &f) {
            if (callback && callback(user, f.name.c_str(), f.size) != 0) return false;
            ++count;
            bytes += f.size;
            return true;
        });
        if (out_files) *out_files = count;
        if (out_bytes) *out_bytes = bytes;
    });
}

}  // extern "C"
