// The C ABI: versions, errors and dtypes.
#include "internal.hpp"

using namespace shardpoint;
using namespace shardpoint::capi;

namespace shardpoint {
namespace capi {
namespace {
thread_local std::string last_message;
thread_local int last_code = 0;
}  // namespace

int fail(int code, const char *message) noexcept {
    try {
        last_message = message;
    } catch (...) {
        last_message.clear();
    }
    last_code = code;
    return code;
}

}  // namespace capi
}  // namespace shardpoint

extern "C" {

uint32_t shardpoint_version_number(void) { return SHARDPOINT_VERSION_NUMBER; }
const char *shardpoint_version_string(void) { return SHARDPOINT_VERSION_STRING; }

const char *shardpoint_last_error(void) { return last_message.c_str(); }
int shardpoint_last_error_code(void) { return last_code; }

const char *shardpoint_error_name(int code) {
    switch (code) {
        case SHARDPOINT_OK: return "SHARDPOINT_OK";
        case SHARDPOINT_EINVAL: return "SHARDPOINT_EINVAL";
        case SHARDPOINT_ENOMEM: return "SHARDPOINT_ENOMEM";
        case SHARDPOINT_EIO: return "SHARDPOINT_EIO";
        case SHARDPOINT_ENOTFOUND: return "SHARDPOINT_ENOTFOUND";
        case SHARDPOINT_EEXISTS: return "SHARDPOINT_EEXISTS";
        case SHARDPOINT_EFORMAT: return "SHARDPOINT_EFORMAT";
        case SHARDPOINT_ECHECKSUM: return "SHARDPOINT_ECHECKSUM";
        case SHARDPOINT_ETRUNCATED: return "SHARDPOINT_ETRUNCATED";
        case SHARDPOINT_EVERSION: return "SHARDPOINT_EVERSION";
        case SHARDPOINT_EDTYPE: return "SHARDPOINT_EDTYPE";
        case SHARDPOINT_ESHAPE: return "SHARDPOINT_ESHAPE";
        case SHARDPOINT_EPATH: return "SHARDPOINT_EPATH";
        case SHARDPOINT_ECONFLICT: return "SHARDPOINT_ECONFLICT";
        case SHARDPOINT_ERANK: return "SHARDPOINT_ERANK";
        case SHARDPOINT_ECOMM: return "SHARDPOINT_ECOMM";
        case SHARDPOINT_EUNCOVERED: return "SHARDPOINT_EUNCOVERED";
        case SHARDPOINT_ESTATE: return "SHARDPOINT_ESTATE";
        case SHARDPOINT_EKIND: return "SHARDPOINT_EKIND";
        case SHARDPOINT_ERANGE: return "SHARDPOINT_ERANGE";
        case SHARDPOINT_ENOSPC: return "SHARDPOINT_ENOSPC";
        case SHARDPOINT_ENOTDURABLE: return "SHARDPOINT_ENOTDURABLE";
        case SHARDPOINT_ECANCELED: return "SHARDPOINT_ECANCELED";
        case SHARDPOINT_EINTERNAL: return "SHARDPOINT_EINTERNAL";
        default: return "SHARDPOINT_UNKNOWN";
    }
}

uint32_t shardpoint_dtype_size(int32_t dtype) { return shardpoint::dtype_size(dtype); }
const char *shardpoint_dtype_name(int32_t dtype) { return shardpoint::dtype_name(dtype); }

int shardpoint_dtype_from_name(const char *name, int32_t *out_dtype) {
    return guarded([&] {
        need(out_dtype, "out_dtype");
        int32_t d = shardpoint::dtype_from_name(text(name, "name"));
        if (d < 0) throw Error(Code::invalid_argument, std::string("unknown dtype name '") + name + "'");
        *out_dtype = d;
    });
}

}  // extern "C"
