// Element types. Values equal the schema's DType enum and the C ABI's shardpoint_dtype.
#pragma once

#include <cstdint>
#include <string>

namespace shardpoint {

enum class DType : int32_t {
    bool_ = 0, u8, i8, i16, i32, i64, u16, u32, u64, f16, bf16, f32, f64,
    complex64, complex128, f8_e4m3fn, f8_e5m2,
};

constexpr int32_t dtype_count = 17;

inline bool dtype_valid(int32_t value) { return value >= 0 && value < dtype_count; }
// Element size in bytes; 0 for an invalid value.
uint32_t dtype_size(int32_t value);
// Canonical lowercase name; nullptr for an invalid value.
const char *dtype_name(int32_t value);
// -1 when the name is unknown.
int32_t dtype_from_name(const std::string &name);

}  // namespace shardpoint
