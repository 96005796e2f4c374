// How messages show shapes and boxes: "[6, 8]", "offsets [0, 2] sizes [6, 4]".
#pragma once

#include <string>

#include "shardpoint/model.hpp"

namespace shardpoint {

inline std::string describe(const Dims &dims) {
    std::string s = "[";
    for (size_t d = 0; d < dims.size(); ++d) s += (d ? ", " : "") + std::to_string(dims[d]);
    return s + "]";
}

inline std::string describe(const Box &box) { return "offsets " + describe(box.offsets) + " sizes " + describe(box.sizes); }

}  // namespace shardpoint
