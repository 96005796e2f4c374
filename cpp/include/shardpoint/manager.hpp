// The checkpoint manager: a root directory holding one ordinary checkpoint per training step
// (`step-<N>`), with listing, crash-safe deletion and retention (README: Steps and retention).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "shardpoint/storage.hpp"

namespace shardpoint {

// Which committed steps retention keeps. Each rule that is on keeps some steps; a step is kept
// when any rule keeps it, and the newest committed step always is. With every rule off,
// retention deletes no committed step.
struct RetentionPolicy {
    uint64_t keep_last = 0;   // the newest keep_last committed steps; 0: off
    uint64_t keep_every = 0;  // steps whose number is a multiple of keep_every; 0: off
    std::string best_metric;  // user metadata key whose value (a decimal number) ranks steps
    bool best_max = false;    // larger values are better (else smaller ones)
    uint64_t keep_best = 0;   // the keep_best best-ranked steps; steps without the value never rank
    bool any() const { return keep_last || keep_every || keep_best; }
};

enum class StepState { committed = 0, partial = 1, damaged = 2 };

struct StepInfo {
    uint64_t step = 0;
    StepState state = StepState::partial;
    bool busy = false;  // a save held the step's lock when it was listed
    std::string path;
    uint64_t bytes = 0, disk_bytes = 0, files = 0;  // regular files under the step's directory
    int64_t time_unix_ns = 0;  // committed: the metadata's creation time; else the directory's mtime
    bool has_metric = false;   // the policy's best_metric is among the user metadata
    std::string metric;
    std::string message;  // partial and damaged: what is wrong
};

// "step-<N>", N in decimal without leading zeros.
std::string step_dir_name(uint64_t step);
// True, with the step, for exactly the names step_dir_name makes.
bool parse_step_dir_name(const std::string &name, uint64_t &step);
// True for the hidden name a deletion gives a directory before removing its files:
// ".deleting-<name>-<16 lowercase hex>".
bool is_deletion_name(const std::string &name);

// The committed steps `policy` does not keep, ascending (never the newest committed one).
std::vector<uint64_t> retention_victims(const std::vector<StepInfo> &steps, const RetentionPolicy &policy);

enum class DeleteOutcome { deleted, busy, declined };

// Deletes directory `dir` so that it is never seen half deleted: takes its save lock without
// waiting (busy: a save holds it, nothing is touched), calls `confirm` (may be empty; false keeps
// the directory: declined), renames the directory to a hidden name beside it (it vanishes from
// listings at once), fsyncs the parent, removes the metadata first and then every other file.
// A process killed in between leaves a hidden directory: garbage that
// CheckpointManager::collect_garbage and apply_retention remove. `bytes` (may be null) receives
// the size of the files removed. `attempts` > 1 retries a busy lock (briefly held by a listing)
// that many times, 2 ms apart.
DeleteOutcome delete_directory(const std::string &dir, const std::function<bool()> &confirm, uint64_t *bytes,
                               int attempts = 1);

// shardpoint_checkpoint_delete: delete_directory of a checkpoint directory (Code::not_found when
// it holds no metadata file, Code::state when a save holds its lock). Returns the bytes removed.
uint64_t delete_checkpoint(const std::string &dir);

class CheckpointManager {
public:
    // Code::not_found when `root` does not exist (with `create` it is made, parents included),
    // Code::invalid_argument when it is not a directory.
    CheckpointManager(std::string root, RetentionPolicy policy, bool create);

    const std::string &root() const { return root_; }
    const RetentionPolicy &policy() const { return policy_; }
    std::string step_path(uint64_t step) const;

    // Every step directory, by step number, with its state. Directories being deleted (hidden
    // names) are never listed; neither are entries that are not directories.
    std::vector<StepInfo> list() const;
    // The highest committed step; false when there is none.
    bool latest_step(uint64_t &step) const;
    // Deletes step `step` (in any state; retention rules do not apply). Code::not_found,
    // Code::state (a save holds its lock). Returns the bytes removed.
    uint64_t delete_step(uint64_t step);

    struct Deleted {
        uint64_t step;
        uint64_t bytes;
    };
    // Deletes the committed steps the policy does not keep and the partial steps below the newest
    // committed one that hold nothing but a killed save's debris, skipping steps a save holds;
    // removes leftovers of killed deletions. `each` (may be empty) is called for every step
    // before it is deleted; false stops (it and the rest are kept). With dry_run only reports.
    std::vector<Deleted> apply_retention(bool dry_run, const std::function<bool(const Deleted &)> &each);
    // Leftovers of killed deletions (reported as ".deleting-...-<hex>/"), the debris of killed
    // saves inside every step that no save holds ("step-N/data-....bin"), and partial steps
    // below the newest committed one left empty by that ("step-N/"). Damaged steps are left as
    // they are. `each` as for collect_garbage (false stops).
    std::vector<GarbageFile> collect_garbage(bool dry_run, const std::function<bool(const GarbageFile &)> &each);

private:
    std::string root_;
    RetentionPolicy policy_;
};

}  // namespace shardpoint
