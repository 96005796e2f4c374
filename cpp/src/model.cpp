#include "shardpoint/model.hpp"

#include <algorithm>
#include <iterator>
#include <set>

#include "shardpoint/error.hpp"

namespace shardpoint {

uint64_t product(const Dims &dims) {
    // A zero dimension makes the product zero whatever the others: no partial product can then
    // overflow.
    for (uint64_t d : dims)
        if (d == 0) return 0;
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

namespace {

bool box_is_empty(BoxRef b) {
    for (uint64_t s : *b.sizes)
        if (s == 0) return true;
    return false;
}

uint64_t lo_of(BoxRef b, size_t d) { return (*b.offsets)[d]; }
uint64_t hi_of(BoxRef b, size_t d) { return (*b.offsets)[d] + (*b.sizes)[d]; }

// The largest number of boxes whose intervals along `d` share one point.
size_t depth_along(const std::vector<BoxRef> &boxes, const std::vector<size_t> &ids, size_t d) {
    std::vector<std::pair<uint64_t, int>> events;  // (coordinate, -1 end / +1 start)
    events.reserve(2 * ids.size());
    for (size_t i : ids) {
        events.emplace_back(lo_of(boxes[i], d), +1);
        events.emplace_back(hi_of(boxes[i], d), -1);
    }
    std::sort(events.begin(), events.end());  // ends sort before starts at equal coordinates
    size_t depth = 0, best = 0;
    for (auto &ev : events) {
        depth = size_t(long(depth) + ev.second);
        best = std::max(best, depth);
    }
    return best;
}

// Sweep events along `d`: ends before starts at equal coordinates (intervals are half-open).
struct SweepEvent {
    uint64_t at;
    bool is_start;
    size_t box;
};

std::vector<SweepEvent> sweep_events(const std::vector<BoxRef> &boxes, const std::vector<size_t> &ids, size_t d) {
    std::vector<SweepEvent> events;
    events.reserve(2 * ids.size());
    for (size_t i : ids) {
        events.push_back(SweepEvent{lo_of(boxes[i], d), true, i});
        events.push_back(SweepEvent{hi_of(boxes[i], d), false, i});
    }
    std::sort(events.begin(), events.end(), [](const SweepEvent &x, const SweepEvent &y) {
        if (x.at != y.at) return x.at < y.at;
        if (x.is_start != y.is_start) return !x.is_start;
        return x.box < y.box;
    });
    return events;
}

// One dimension: sorted by start, disjoint intervals only need their neighbours compared.
std::pair<long, long> overlap_1d(const std::vector<BoxRef> &boxes, std::vector<size_t> ids, size_t d) {
    std::sort(ids.begin(), ids.end(), [&](size_t a, size_t b) { return lo_of(boxes[a], d) < lo_of(boxes[b], d); });
    for (size_t k = 1; k < ids.size(); ++k)
        if (lo_of(boxes[ids[k]], d) < hi_of(boxes[ids[k - 1]], d)) return {long(ids[k - 1]), long(ids[k])};
    return {-1, -1};
}

// Two dimensions: sweep along `a`. Boxes active at one coordinate all overlap along `a`, so
// (as long as no overlap was found) their intervals along `b` are pairwise disjoint: a new box
// can only meet its predecessor or successor in that order.
std::pair<long, long> overlap_2d(const std::vector<BoxRef> &boxes, const std::vector<size_t> &ids, size_t a, size_t b) {
    std::set<std::pair<uint64_t, size_t>> active;  // (start along b, box)
    for (const SweepEvent &ev : sweep_events(boxes, ids, a)) {
        BoxRef box = boxes[ev.box];
        if (!ev.is_start) {
            active.erase({lo_of(box, b), ev.box});
            continue;
        }
        auto next = active.lower_bound({lo_of(box, b), 0});
        if (next != active.end() && next->first < hi_of(box, b)) return {long(next->second), long(ev.box)};
        if (next != active.begin()) {
            auto prev = std::prev(next);
            if (hi_of(boxes[prev->second], b) > lo_of(box, b)) return {long(prev->second), long(ev.box)};
        }
        active.insert({lo_of(box, b), ev.box});
    }
    return {-1, -1};
}

// Three or more dimensions: sweep along `a`, active boxes ordered by their start along `b`. A
// new box is compared with the active boxes whose start along `b` lies in [lo - longest, hi),
// the only ones whose interval along `b` can meet [lo, hi). Exact, but the comparisons are only
// bounded by the budget.
std::pair<long, long> overlap_nd(const std::vector<BoxRef> &boxes, const std::vector<size_t> &ids, size_t a, size_t b,
                                 uint64_t &budget) {
    uint64_t longest = 0;  // along b
    for (size_t i : ids) longest = std::max(longest, (*boxes[i].sizes)[b]);
    const uint64_t budget_at_start = budget;
    std::set<std::pair<uint64_t, size_t>> active;  // (start along b, box)
    for (const SweepEvent &ev : sweep_events(boxes, ids, a)) {
        BoxRef box = boxes[ev.box];
        const uint64_t lo = lo_of(box, b), hi = hi_of(box, b);
        if (!ev.is_start) {
            active.erase({lo, ev.box});
            continue;
        }
        auto it = active.lower_bound({hi, 0});
        const uint64_t reach = lo > longest ? lo - longest : 0;
        while (it != active.begin()) {
            --it;
            if (it->first < reach) break;
            if (budget == 0)
                throw Error(Code::shape, "the chunks are too irregular to check for overlaps within " +
                                             std::to_string(budget_at_start) + " box comparisons (" +
                                             std::to_string(ids.size()) + " chunks)");
            --budget;
            if (boxes_overlap(box, boxes[it->second])) return {long(it->second), long(ev.box)};
        }
        active.insert({lo, ev.box});
    }
    return {-1, -1};
}

}  // namespace

uint64_t overlap_check_allowance(size_t boxes) {
    uint64_t log2n = 0;
    while (log2n < 63 && (uint64_t(1) << log2n) < boxes) ++log2n;
    return 64 * uint64_t(boxes) * log2n;
}

uint64_t overlap_check_budget(size_t boxes) { return overlap_check_allowance(boxes) + (uint64_t(1) << 25); }

std::pair<long, long> find_overlap(const std::vector<BoxRef> &boxes) {
    uint64_t budget = overlap_check_budget(boxes.size());
    return find_overlap(boxes, budget);
}

namespace {

std::pair<long, long> overlap_among(const std::vector<BoxRef> &boxes, std::vector<size_t> ids, uint64_t &budget);

// Splits `ids` into groups that no box crosses between: cut along `d` wherever every box so far
// ends before the next one starts. Boxes of different groups cannot overlap.
std::vector<std::vector<size_t>> separable_groups(const std::vector<BoxRef> &boxes, std::vector<size_t> ids, size_t d) {
    std::sort(ids.begin(), ids.end(), [&](size_t x, size_t y) { return lo_of(boxes[x], d) < lo_of(boxes[y], d); });
    std::vector<std::vector<size_t>> groups(1);
    uint64_t reach = 0;
    for (size_t i : ids) {
        if (!groups.back().empty() && lo_of(boxes[i], d) >= reach) groups.emplace_back();
        groups.back().push_back(i);
        reach = std::max(reach, hi_of(boxes[i], d));
    }
    return groups;
}

std::pair<long, long> overlap_among(const std::vector<BoxRef> &boxes, std::vector<size_t> ids, uint64_t &budget) {
    if (ids.size() < 2) return {-1, -1};
    // A dimension in which every box has the same interval separates nothing: drop it.
    const size_t ndim = boxes[ids[0]].offsets->size();
    std::vector<size_t> dims;
    for (size_t d = 0; d < ndim; ++d) {
        BoxRef first = boxes[ids[0]];
        bool uniform = true;
        for (size_t i : ids) uniform = uniform && lo_of(boxes[i], d) == lo_of(first, d) && hi_of(boxes[i], d) == hi_of(first, d);
        if (!uniform) dims.push_back(d);
    }
    if (dims.empty()) return {long(ids[0]), long(ids[1])};  // identical non-empty boxes (0-d too)
    if (dims.size() == 1) return overlap_1d(boxes, ids, dims[0]);
    // Sweep along the dimension where the fewest boxes are active at once, order by the next.
    std::vector<std::pair<size_t, size_t>> by_depth;  // (depth, dimension)
    for (size_t d : dims) by_depth.emplace_back(depth_along(boxes, ids, d), d);
    std::sort(by_depth.begin(), by_depth.end());
    const size_t a = by_depth[0].second, b = by_depth[1].second;
    if (dims.size() == 2) return overlap_2d(boxes, ids, a, b);
    // Layouts made of regions sliced differently (one block split by rows, the next by columns)
    // are cheap once cut apart: check each region on its own, with the dimensions it has.
    for (size_t d : dims) {
        // Each attempt sorts the boxes: it draws from the budget like comparisons do.
        budget -= std::min<uint64_t>(budget, ids.size());
        std::vector<std::vector<size_t>> groups = separable_groups(boxes, ids, d);
        if (groups.size() < 2) continue;
        for (auto &group : groups) {
            auto found = overlap_among(boxes, std::move(group), budget);
            if (found.first >= 0) return found;
        }
        return {-1, -1};
    }
    return overlap_nd(boxes, ids, a, b, budget);
}

}  // namespace

std::pair<long, long> find_overlap(const std::vector<BoxRef> &boxes, uint64_t &budget) {
    // Empty boxes hold no element and overlap nothing.
    std::vector<size_t> ids;
    ids.reserve(boxes.size());
    for (size_t i = 0; i < boxes.size(); ++i)
        if (!box_is_empty(boxes[i])) ids.push_back(i);
    return overlap_among(boxes, std::move(ids), budget);
}

uint64_t WriteItem::nbytes() const { return product(sizes) * dtype_size(int32_t(dtype)); }

uint64_t EntryMeta::nbytes() const { return product(shape) * dtype_size(int32_t(dtype)); }

const EntryMeta *Metadata::find(const std::string &fqn) const {
    auto it = std::lower_bound(entries.begin(), entries.end(), fqn,
                               [](const EntryMeta &e, const std::string &key) { return e.fqn < key; });
    return it != entries.end() && it->fqn == fqn ? &*it : nullptr;
}

}  // namespace shardpoint
