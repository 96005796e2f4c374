#include "shardpoint/planner.hpp"

#include <algorithm>
#include <string_view>
#include <unordered_map>

#include "shardpoint/error.hpp"

namespace shardpoint {

namespace {

struct Offer {
    uint32_t rank;
    uint32_t item;
    const WriteItem *w;
    uint64_t nbytes;
};

std::string describe(const WriteItem &w) {
    if (w.kind == EntryKind::bytes) return "bytes of length " + std::to_string(w.global_shape.at(0));
    std::string s = std::string(dtype_name(int32_t(w.dtype))) + "[";
    for (size_t d = 0; d < w.global_shape.size(); ++d) s += (d ? "," : "") + std::to_string(w.global_shape[d]);
    return s + "]";
}

bool same_box(const WriteItem &a, const WriteItem &b) { return a.index.offsets == b.index.offsets && a.sizes == b.sizes; }

bool box_less(const Offer &a, const Offer &b) {
    if (a.w->index.offsets != b.w->index.offsets) return a.w->index.offsets < b.w->index.offsets;
    if (a.w->sizes != b.w->sizes) return a.w->sizes < b.w->sizes;
    return a.rank < b.rank;
}

}  // namespace

GlobalSavePlan create_global_save_plan(const std::vector<SavePlan> &plans, bool allow_partial) {
    // Group offers by name.
    std::unordered_map<std::string_view, size_t> group_of;
    std::vector<std::vector<Offer>> groups;
    for (uint32_t r = 0; r < plans.size(); ++r) {
        for (uint32_t i = 0; i < plans[r].items.size(); ++i) {
            const WriteItem &w = plans[r].items[i];
            auto [it, inserted] = group_of.emplace(std::string_view(w.index.fqn), groups.size());
            if (inserted) groups.emplace_back();
            groups[it->second].push_back(Offer{r, i, &w, w.nbytes()});
        }
    }

    GlobalSavePlan global;
    global.writes.resize(plans.size());
    std::vector<uint64_t> load(plans.size(), 0);
    std::vector<std::vector<Offer>> replicated;  // each: the identical offers of one chunk
    uint64_t overlap_budget = overlap_check_budget(0);  // shared by every entry, as readers share it

    for (auto &offers : groups) {
        const WriteItem &first = *offers[0].w;
        for (const Offer &o : offers) {
            if (o.w->kind != first.kind || o.w->dtype != first.dtype || o.w->global_shape != first.global_shape)
                throw Error(Code::conflict, "ranks " + std::to_string(offers[0].rank) + " and " + std::to_string(o.rank) +
                                                " offer '" + first.index.fqn + "' as " + describe(first) + " and " + describe(*o.w));
        }
        // Ranks usually offer their chunks in box order already (rows, columns, grids).
        if (!std::is_sorted(offers.begin(), offers.end(), box_less)) std::sort(offers.begin(), offers.end(), box_less);
        // Runs of identical boxes: [begin, end) index ranges into `offers`.
        std::vector<std::pair<size_t, size_t>> unique;
        for (size_t k = 0; k < offers.size(); ++k) {
            if (!unique.empty() && same_box(*offers[unique.back().first].w, *offers[k].w)) unique.back().second = k + 1;
            else unique.emplace_back(k, k + 1);
        }
        std::vector<BoxRef> boxes;
        boxes.reserve(unique.size());
        for (auto &u : unique) boxes.push_back(offers[u.first].w->box_ref());
        std::pair<long, long> overlap;
        try {
            overlap_budget += overlap_check_allowance(boxes.size());
            overlap = find_overlap(boxes, overlap_budget);
        } catch (const Error &e) {
            // Too irregular a layout to check in bounded time: readers would refuse it too.
            throw Error(e.code(), "'" + first.index.fqn + "': " + e.what());
        }
        auto [a, b] = overlap;
        if (a >= 0)
            throw Error(Code::conflict, "ranks " + std::to_string(offers[unique[a].first].rank) + " and " +
                                            std::to_string(offers[unique[b].first].rank) +
                                            " offer partially overlapping chunks of '" + first.index.fqn + "'");
        if (!allow_partial && first.kind == EntryKind::tensor) {
            // The boxes are pairwise disjoint now, so their volumes add up to what they cover.
            uint64_t covered = 0;
            for (auto &u : unique) covered += product(offers[u.first].w->sizes);
            const uint64_t numel = product(first.global_shape);
            if (covered != numel)
                throw Error(Code::uncovered, "'" + first.index.fqn + "': the chunks offered by all ranks cover " +
                                                 std::to_string(covered) + " of its " + std::to_string(numel) +
                                                 " elements (" + describe(first) +
                                                 "); save the rest too, or allow partial tensors (SHARDPOINT_SAVE_ALLOW_PARTIAL)");
        }
        for (auto &u : unique) {
            const Offer &o = offers[u.first];
            if (u.second - u.first == 1) {
                global.writes[o.rank].push_back(o.item);
                load[o.rank] += o.nbytes;
            } else {
                replicated.emplace_back(offers.begin() + long(u.first), offers.begin() + long(u.second));
            }
        }
    }
    // Largest first, each to the least loaded of its offering ranks.
    std::sort(replicated.begin(), replicated.end(), [](const auto &x, const auto &y) { return x[0].nbytes > y[0].nbytes; });
    for (auto &u : replicated) {
        const Offer *best = &u[0];
        for (const Offer &o : u)
            if (load[o.rank] < load[best->rank]) best = &o;
        global.writes[best->rank].push_back(best->item);
        load[best->rank] += best->nbytes;
    }
    for (auto &w : global.writes) std::sort(w.begin(), w.end());
    return global;
}

namespace {

// The largest number of half-open intervals [start, end) that share one coordinate.
size_t max_depth(std::vector<std::pair<uint64_t, int>> &events) {
    // Ends sort before starts at the same coordinate: touching intervals do not overlap.
    std::sort(events.begin(), events.end());
    size_t depth = 0, best = 0;
    for (auto &e : events) {
        if (e.second > 0) best = std::max(best, ++depth);
        else --depth;
    }
    return best;
}

}  // namespace

ChunkIndex::ChunkIndex(const EntryMeta &entry) : entry_(entry) {
    const size_t ndim = entry.shape.size();
    for (size_t i = 0; i < entry.chunks.size(); ++i)
        if (product(entry.chunks[i].box.sizes) > 0) order_.push_back(i);  // empty chunks overlap nothing
    if (ndim == 0 || order_.empty()) return;
    size_t best_depth = SIZE_MAX;
    std::vector<std::pair<uint64_t, int>> events;
    for (size_t d = 0; d < ndim && best_depth > 1; ++d) {
        events.clear();
        for (size_t i : order_) {
            const Box &b = entry.chunks[i].box;
            events.emplace_back(b.offsets[d], 1);
            events.emplace_back(b.offsets[d] + b.sizes[d], -1);
        }
        size_t depth = max_depth(events);
        if (depth < best_depth) best_depth = depth, dim_ = d;
    }
    std::sort(order_.begin(), order_.end(), [&](size_t a, size_t b) {
        return entry.chunks[a].box.offsets[dim_] < entry.chunks[b].box.offsets[dim_];
    });
    leaves_ = 1;
    while (leaves_ < order_.size()) leaves_ *= 2;
    max_end_.assign(2 * leaves_, 0);
    for (size_t k = 0; k < order_.size(); ++k) {
        const Box &b = entry.chunks[order_[k]].box;
        starts_.push_back(b.offsets[dim_]);
        max_end_[leaves_ + k] = b.offsets[dim_] + b.sizes[dim_];
    }
    for (size_t node = leaves_ - 1; node >= 1; --node) max_end_[node] = std::max(max_end_[2 * node], max_end_[2 * node + 1]);
}

void ChunkIndex::collect(size_t node, size_t lo_pos, size_t hi_pos, size_t limit, uint64_t lo, const Box &box,
                         std::vector<size_t> &out) const {
    // Positions [lo_pos, hi_pos) under `node`; only [0, limit) start before the box ends.
    if (lo_pos >= limit || max_end_[node] <= lo) return;
    if (hi_pos - lo_pos == 1) {
        size_t chunk = order_[lo_pos];
        if (boxes_overlap(entry_.chunks[chunk].box, box)) out.push_back(chunk);
        return;
    }
    size_t mid = (lo_pos + hi_pos) / 2;
    collect(2 * node, lo_pos, mid, limit, lo, box, out);
    collect(2 * node + 1, mid, hi_pos, limit, lo, box, out);
}

void ChunkIndex::overlapping(const Box &box, std::vector<size_t> &out) const {
    if (entry_.shape.empty()) {
        for (size_t i : order_) out.push_back(i);
        return;
    }
    if (order_.empty() || product(box.sizes) == 0) return;
    uint64_t lo = box.offsets[dim_], hi = lo + box.sizes[dim_];
    size_t limit = size_t(std::lower_bound(starts_.begin(), starts_.end(), hi) - starts_.begin());
    collect(1, 0, leaves_, limit, lo, box, out);
}

ReadItem make_read_item(size_t request_index, const ReadRequest &r, size_t c) {
    const Box &chunk = r.entry->chunks[c].box;
    ReadItem item;
    item.request = request_index;
    item.entry = r.entry;
    item.chunk = c;
    size_t ndim = chunk.offsets.size();
    item.storage_offsets.resize(ndim);
    item.dest_offsets.resize(ndim);
    item.lengths.resize(ndim);
    for (size_t d = 0; d < ndim; ++d) {
        uint64_t lo = std::max(chunk.offsets[d], r.box.offsets[d]);
        uint64_t hi = std::min(chunk.offsets[d] + chunk.sizes[d], r.box.offsets[d] + r.box.sizes[d]);
        item.storage_offsets[d] = lo - chunk.offsets[d];
        item.dest_offsets[d] = lo - r.box.offsets[d];
        item.lengths[d] = hi - lo;
    }
    return item;
}

}  // namespace shardpoint
