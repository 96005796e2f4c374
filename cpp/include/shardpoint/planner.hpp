// Planning: which rank writes which chunk (save), and which saved bytes fill which destination
// (load). Pure functions of plans and metadata: no I/O.
#pragma once

#include <cstdint>
#include <vector>

#include "shardpoint/error.hpp"
#include "shardpoint/model.hpp"

namespace shardpoint {

// The coordinator's decision: for every rank, the indices (into its local plan) of the items it
// writes. Identical chunks offered by several ranks are written once, by the offering rank with
// the fewest bytes assigned so far (largest chunks placed first).
struct GlobalSavePlan {
    std::vector<std::vector<uint32_t>> writes;
};

// Throws Code::conflict, naming the fqn and the ranks, when ranks offer the same name with
// different kinds, dtypes or shapes, or chunks that partially overlap; and, unless
// `allow_partial`, Code::uncovered when the chunks of all ranks leave part of a tensor unsaved.
GlobalSavePlan create_global_save_plan(const std::vector<SavePlan> &local_plans, bool allow_partial = false);

// An interval index over the saved chunks of one entry: finds the chunks overlapping a box
// without comparing against every chunk. Chunks are indexed along the dimension where they
// overlap each other least (the smallest maximum number of chunk intervals covering one
// coordinate), and a tree of maximum ends finds the candidates in O((k + 1) log n) for k
// candidates, however long some intervals are (a "staircase" of chunks does not make it scan).
class ChunkIndex {
public:
    explicit ChunkIndex(const EntryMeta &entry);
    // Appends the indices of the chunks that share at least one element with `box`, in order of
    // their start along the indexed dimension.
    void overlapping(const Box &box, std::vector<size_t> &out) const;

private:
    void collect(size_t node, size_t lo_pos, size_t hi_pos, size_t limit, uint64_t lo, const Box &box,
                 std::vector<size_t> &out) const;

    const EntryMeta &entry_;
    size_t dim_ = 0;
    std::vector<size_t> order_;       // non-empty chunk indices sorted by start along dim_
    std::vector<uint64_t> starts_;    // their starts along dim_
    std::vector<uint64_t> max_end_;   // segment tree over positions: the largest end below a node
    size_t leaves_ = 0;               // positions covered by the tree (a power of two)
};

// Fills plan.items with ReadItems covering exactly each request's box. `index_of(entry)`
// returns the entry's ChunkIndex. Throws Code::uncovered when a request's box is not fully
// covered by saved chunks.
template <class IndexOf>
void create_local_load_plan(LoadPlan &plan, IndexOf &&index_of);

// The ReadItem for the overlap of request `r` with chunk `c` of its entry.
ReadItem make_read_item(size_t request_index, const ReadRequest &r, size_t c);

template <class IndexOf>
void create_local_load_plan(LoadPlan &plan, IndexOf &&index_of) {
    std::vector<size_t> hits;
    for (size_t i = 0; i < plan.requests.size(); ++i) {
        const ReadRequest &r = plan.requests[i];
        uint64_t want = product(r.box.sizes);
        if (want == 0) continue;
        hits.clear();
        index_of(r.entry).overlapping(r.box, hits);
        uint64_t covered = 0;
        for (size_t c : hits) {
            plan.items.push_back(make_read_item(i, r, c));
            covered += product(plan.items.back().lengths);
        }
        if (covered != want)
            throw Error(Code::uncovered, "entry '" + r.entry->fqn + "': the requested box is only partly saved (" +
                                             std::to_string(covered) + " of " + std::to_string(want) + " elements)");
    }
}

}  // namespace shardpoint
