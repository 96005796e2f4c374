// Moving elements between strided memory and contiguous C-order bytes.
#pragma once

#include <cstddef>
#include <cstdint>

#include "shardpoint/model.hpp"

namespace shardpoint {

// C-order element strides for `sizes`.
Strides c_strides(const Dims &sizes);
// True when `strides` describe C order for `sizes` (dimensions of size 1 may have any stride).
bool is_c_contiguous(const Dims &sizes, const Strides &strides);

// Copies the elements [first, first + count) (C-order positions within `sizes`) of a strided
// array at `src` into contiguous memory at `dst`.
void gather_elements(const unsigned char *src, const Dims &sizes, const Strides &strides, size_t itemsize,
                     uint64_t first, uint64_t count, unsigned char *dst);

// Copies the box of `lengths` between two strided arrays; pointers address each box's first
// element, strides are in elements.
void copy_box(const unsigned char *src, const int64_t *src_strides, unsigned char *dst, const int64_t *dst_strides,
              const Dims &lengths, size_t itemsize);

}  // namespace shardpoint
