#include "shardpoint/model.hpp"

#include <algorithm>

#include "shardpoint/error.hpp"

namespace shardpoint {

uint64_t product(const Dims &dims) {
    uint64_t n = 1;
    for (uint64_t d : dims) {
        if (d != 0 && n > UINT64_MAX / d) throw Error(Code::shape, "tensor size overflows 64 bits");
        n *= d;
    }
    return n;
}

bool box_inside(const Box &box, const Dims &shape) {
    if (box.offsets.size() != shape.size() || box.sizes.size() != shape.size()) return false;
    for (size_t d = 0; d < shape.size(); ++d)
        if (box.offsets[d] > shape[d] || box.sizes[d] > shape[d] - box.offsets[d]) return false;
    return true;
}

bool boxes_overlap(BoxRef a, BoxRef b) {
    for (size_t d = 0; d < a.offsets->size(); ++d) {
        uint64_t lo = std::max((*a.offsets)[d], (*b.offsets)[d]);
        uint64_t hi = std::min((*a.offsets)[d] + (*a.sizes)[d], (*b.offsets)[d] + (*b.sizes)[d]);
        if (lo >= hi) return false;
    }
    return true;  // also for 0-d boxes: a scalar overlaps itself
}

size_t best_split_dim(const std::vector<BoxRef> &boxes, size_t ndim) {
    size_t best = 0, best_distinct = 0;
    std::vector<uint64_t> starts(boxes.size());
    for (size_t d = 0; d < ndim; ++d) {
        for (size_t i = 0; i < boxes.size(); ++i) starts[i] = (*boxes[i].offsets)[d];
        std::sort(starts.begin(), starts.end());
        size_t distinct = size_t(std::unique(starts.begin(), starts.end()) - starts.begin());
        if (distinct > best_distinct) best = d, best_distinct = distinct;
        if (distinct == boxes.size()) break;  // cannot do better
    }
    return best;
}

std::pair<long, long> find_overlap(const std::vector<BoxRef> &boxes) {
    if (boxes.size() < 2) return {-1, -1};
    size_t ndim = boxes[0].offsets->size();
    // Empty boxes hold no element and overlap nothing.
    std::vector<size_t> order;
    order.reserve(boxes.size());
    for (size_t i = 0; i < boxes.size(); ++i)
        if (product(*boxes[i].sizes) > 0) order.push_back(i);
    if (order.size() < 2) return {-1, -1};
    if (ndim == 0) return {long(order[0]), long(order[1])};
    // Sweep along the dimension with the most distinct starts: for the usual row, column and
    // block shardings this compares each box with its few neighbours only.
    size_t d = best_split_dim(boxes, ndim);
    auto start = [&](size_t i) { return (*boxes[i].offsets)[d]; };
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return start(a) < start(b); });
    for (size_t i = 0; i < order.size(); ++i) {
        BoxRef a = boxes[order[i]];
        uint64_t a_end = (*a.offsets)[d] + (*a.sizes)[d];
        for (size_t j = i + 1; j < order.size() && start(order[j]) < a_end; ++j)
            if (boxes_overlap(a, boxes[order[j]])) return {long(order[i]), long(order[j])};
    }
    return {-1, -1};
}

uint64_t WriteItem::nbytes() const { return product(sizes) * dtype_size(int32_t(dtype)); }

uint64_t EntryMeta::nbytes() const { return product(shape) * dtype_size(int32_t(dtype)); }

const EntryMeta *Metadata::find(const std::string &fqn) const {
    auto it = std::lower_bound(entries.begin(), entries.end(), fqn,
                               [](const EntryMeta &e, const std::string &key) { return e.fqn < key; });
    return it != entries.end() && it->fqn == fqn ? &*it : nullptr;
}

}  // namespace shardpoint
