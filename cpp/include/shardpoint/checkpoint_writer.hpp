// The StorageWriter contract as phases a host framework drives with its own planner and
// collectives (DCP's call sequence): set up, local plan, global plan (coordinator), write, finish
// (coordinator), abort. Plans and write results cross between ranks as Cap'n Proto messages of the
// format's schema (FORMAT.md section 7). SaveSession runs the same phases over a Comm.
#pragma once

#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "shardpoint/model.hpp"
#include "shardpoint/storage.hpp"

namespace shardpoint {

class CheckpointWriter {
public:
    // reset(): a new save of the checkpoint in directory `dir`.
    CheckpointWriter(std::string dir, SaveOptions options);

    // This process's place in the save; rank 0 is the coordinator. Creates the directory.
    void set_up(int rank, int world_size);
    int rank() const { return rank_; }

    // What this rank holds. The memory is read during write() and must stay valid until then.
    void add_tensor(const std::string &fqn, DType dtype, Dims global_shape, Dims offsets, Dims sizes, const void *data,
                    Strides strides);
    void add_bytes(const std::string &fqn, const void *data, uint64_t len);
    // Items added or planned so far, and the undo of every item added after the first `count`
    // (a batched add that failed part-way keeps none of its items).
    size_t item_count() const { return local_.items.size(); }
    void drop_items_from(size_t count);
    // Item `item` as added; and its memory moved to `data` laid out by `strides` (an asynchronous
    // save copies every item into its staging area, in C order, before it plans).
    const WriteItem &item(size_t item) const { return local_.items.at(item); }
    unsigned io_threads() const { return options_.io_threads; }
    void move_item_data(size_t item, const void *data, Strides strides);
    // Kept from the coordinator only.
    void set_metadata(const std::string &key, const std::string &value);
    void set_framework_metadata(const std::string &key, const std::string &value);

    // Items whose data comes later (hosts that resolve data only when writing, as DCP does); a
    // bytes item's length is unknown until it is bound. Items, added or planned, are numbered in
    // call order.
    void plan_tensor(const std::string &fqn, DType dtype, Dims global_shape, Dims offsets, Dims sizes);
    void plan_bytes(const std::string &fqn);
    // The items (by number) that `final_plan` assigns to this rank.
    std::vector<uint32_t> assigned(const std::string &final_plan) const;
    // Gives a planned item its memory, read during write().
    void bind_tensor(size_t item, const void *data, Strides strides);
    void bind_bytes(size_t item, const void *data, uint64_t len);
    // The number of dimensions of item `item` (0 when there is no such item).
    uint32_t item_ndim(size_t item) const {
        return item < local_.items.size() ? uint32_t(local_.items[item].sizes.size()) : 0;
    }

    // This rank's local plan (a SavePlanMessage). Ends the adding of items.
    std::string local_plan();
    // Coordinator: every rank's local plan, in rank order, to every rank's final plan. Deduplicates
    // replicated chunks, refuses conflicts and (unless allowed) uncovered tensors, takes the
    // directory's save lock, refuses an existing checkpoint unless overwriting, names the files.
    std::vector<std::string> global_plan(const std::vector<std::string> &local_plans);
    // Writes what this rank's final plan assigns it; returns a WriteResultsMessage.
    std::string write(const std::string &final_plan);
    // Writes the items of `final_plan` bound so far and not yet written, after which their
    // memory is no longer read: a host that stages its data (GPU tensors, converted dtypes) binds
    // and writes in batches of bounded size, then write() writes the rest and returns the results
    // of all. Every call of one save names the same final plan.
    void write_bound(const std::string &final_plan);
    // Coordinator: builds the metadata from every rank's write results (an empty message: that
    // rank wrote nothing) and commits it.
    void finish(const std::vector<std::string> &write_results);
    // Removes this save's files of this rank (nothing once committed).
    void abort();
    // True once finish() has published the metadata (even if a later step failed).
    bool committed() const { return storage_.committed(); }
    // Ends this save's hold on the directory's save lock, whatever its outcome.
    void release_lock() { storage_.release_lock(); }
    // Reports the write's bytes (this rank's assigned items, raw) to `callback` on the calling
    // thread; the callback returning false cancels the write (Code::canceled). Set before the
    // first write call; an empty callback turns reporting off.
    void set_progress(ProgressCallback callback);

private:
    enum class Phase { adding, planned, writing, written, finished };
    void require_phase(Phase phase, const char *call) const;
    void add_item(WriteItem item);
    // The first write call checks the plan and opens the data file; `all_bound`: refuse (before
    // anything is written) an assigned item that was never bound.
    void start_write(const std::string &final_plan, bool all_bound);
    void write_pending();                             // the bound, unwritten items of the plan

    std::string dir_;
    SaveOptions options_;
    FileSystemWriter storage_;
    int rank_ = 0, world_size_ = 1;
    bool set_up_ = false;
    Phase phase_ = Phase::adding;
    SavePlan local_;
    std::unordered_map<std::string, std::vector<size_t>> items_by_fqn_;
    std::vector<std::pair<std::string, std::string>> user_, framework_;
    SavePlan mine_;  // the data file of this rank's write: abort() removes it
    // The write in progress: its final plan, the items it assigns (local numbers), their results
    // so far (by position in the plan) and whether each is written.
    std::string final_plan_, save_id_;
    std::vector<uint32_t> writes_;
    std::vector<WriteResult> results_;
    std::vector<bool> done_;
    bool write_failed_ = false;
    ProgressCallback progress_callback_;
    std::unique_ptr<Progress> progress_;  // from the first write call while reporting
};

}  // namespace shardpoint
