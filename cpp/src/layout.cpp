#include "shardpoint/layout.hpp"

#include <cstring>
#include <vector>

namespace shardpoint {

Strides c_strides(const Dims &sizes) {
    Strides s(sizes.size());
    int64_t acc = 1;
    for (size_t d = sizes.size(); d-- > 0;) {
        s[d] = acc;
        acc *= int64_t(sizes[d] ? sizes[d] : 1);
    }
    return s;
}

bool is_c_contiguous(const Dims &sizes, const Strides &strides) {
    if (strides.empty()) return true;
    int64_t acc = 1;
    for (size_t d = sizes.size(); d-- > 0;) {
        if (sizes[d] == 0) return true;
        if (sizes[d] != 1 && strides[d] != acc) return false;
        acc *= int64_t(sizes[d]);
    }
    return true;
}

void gather_elements(const unsigned char *src, const Dims &sizes, const Strides &strides, size_t itemsize,
                     uint64_t first, uint64_t count, unsigned char *dst) {
    size_t ndim = sizes.size();
    if (count == 0) return;
    if (ndim == 0) {
        std::memcpy(dst, src, itemsize);
        return;
    }
    // Multi-index of `first`, then walk the innermost dimension in runs.
    std::vector<uint64_t> idx(ndim);
    uint64_t rest = first;
    for (size_t d = ndim; d-- > 0;) {
        idx[d] = rest % sizes[d];
        rest /= sizes[d];
    }
    const size_t last = ndim - 1;
    while (count > 0) {
        int64_t offset = 0;
        for (size_t d = 0; d < ndim; ++d) offset += int64_t(idx[d]) * strides[d];
        const unsigned char *p = src + offset * int64_t(itemsize);
        uint64_t run = sizes[last] - idx[last];
        if (run > count) run = count;
        if (strides[last] == 1) {
            std::memcpy(dst, p, run * itemsize);
        } else {
            int64_t step = strides[last] * int64_t(itemsize);
            for (uint64_t k = 0; k < run; ++k) std::memcpy(dst + k * itemsize, p + int64_t(k) * step, itemsize);
        }
        dst += run * itemsize;
        count -= run;
        idx[last] += run;
        for (size_t d = last; d > 0 && idx[d] == sizes[d]; --d) {
            idx[d] = 0;
            ++idx[d - 1];
        }
    }
}

void copy_box(const unsigned char *src, const int64_t *src_strides, unsigned char *dst, const int64_t *dst_strides,
              const Dims &lengths, size_t itemsize) {
    size_t ndim = lengths.size();
    for (uint64_t n : lengths)
        if (n == 0) return;
    if (ndim == 0) {
        std::memcpy(dst, src, itemsize);
        return;
    }
    const size_t last = ndim - 1;
    const bool inner_contiguous = src_strides[last] == 1 && dst_strides[last] == 1;
    std::vector<uint64_t> idx(ndim, 0);
    for (;;) {
        int64_t so = 0, doff = 0;
        for (size_t d = 0; d < last; ++d) {
            so += int64_t(idx[d]) * src_strides[d];
            doff += int64_t(idx[d]) * dst_strides[d];
        }
        const unsigned char *s = src + so * int64_t(itemsize);
        unsigned char *t = dst + doff * int64_t(itemsize);
        if (inner_contiguous) {
            std::memcpy(t, s, lengths[last] * itemsize);
        } else {
            for (uint64_t k = 0; k < lengths[last]; ++k)
                std::memcpy(t + int64_t(k) * dst_strides[last] * int64_t(itemsize),
                            s + int64_t(k) * src_strides[last] * int64_t(itemsize), itemsize);
        }
        size_t d = last;
        for (;;) {
            if (d == 0) return;
            --d;
            if (++idx[d] < lengths[d]) break;
            idx[d] = 0;
        }
    }
}

}  // namespace shardpoint
