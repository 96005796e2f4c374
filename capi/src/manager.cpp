// The C ABI: the checkpoint manager (steps under a root, retention).
#include <cstring>

#include "internal.hpp"
#include "shardpoint/manager.hpp"

using namespace shardpoint;
using namespace shardpoint::capi;

struct shardpoint_manager {
    std::unique_ptr<CheckpointManager> impl;
    shardpoint_comm *comm = nullptr;  // borrowed
    std::string path;                 // shardpoint_manager_step_path's last answer
    std::vector<StepInfo> steps;      // shardpoint_manager_list's snapshot
};

namespace {

RetentionPolicy policy_of(const shardpoint_manager_options *o, bool &create) {
    RetentionPolicy p;
    create = false;
    if (!o) return p;
    if (o->version != SHARDPOINT_MANAGER_OPTIONS_VERSION)
        throw Error(Code::invalid_argument, "unsupported manager options version " + std::to_string(o->version));
    if (o->flags & ~uint32_t(SHARDPOINT_MANAGER_CREATE)) throw Error(Code::invalid_argument, "unknown manager flags");
    if (o->best_mode != SHARDPOINT_METRIC_MIN && o->best_mode != SHARDPOINT_METRIC_MAX)
        throw Error(Code::invalid_argument, "best_mode must be SHARDPOINT_METRIC_MIN or SHARDPOINT_METRIC_MAX");
    create = o->flags & SHARDPOINT_MANAGER_CREATE;
    p.keep_last = o->keep_last;
    p.keep_every = o->keep_every;
    p.keep_best = o->keep_best;
    if (o->best_metric) p.best_metric = o->best_metric;
    p.best_max = o->best_mode == SHARDPOINT_METRIC_MAX;
    return p;
}

}  // namespace

extern "C" {

int shardpoint_manager_options_init(shardpoint_manager_options *options, uint32_t version) {
    return guarded([&] {
        need(options, "options");
        if (version != SHARDPOINT_MANAGER_OPTIONS_VERSION)
            throw Error(Code::invalid_argument, "unsupported manager options version " + std::to_string(version));
        *options = SHARDPOINT_MANAGER_OPTIONS_INIT;
    });
}

int shardpoint_manager_open(shardpoint_manager **out, const char *root, shardpoint_comm *comm,
                            const shardpoint_manager_options *options) {
    return guarded([&] {
        need(out, "out");
        std::string r = text(root, "root");
        bool create = false;
        RetentionPolicy policy = policy_of(options, create);
        auto m = std::make_unique<shardpoint_manager>();
        m->impl = std::make_unique<CheckpointManager>(r, std::move(policy), create);
        m->comm = comm;
        *out = m.release();
    });
}

void shardpoint_manager_free(shardpoint_manager *manager) { delete manager; }

int shardpoint_manager_step_path(shardpoint_manager *manager, uint64_t step, const char **out_path) {
    return guarded([&] {
        need(manager, "manager");
        need(out_path, "out_path");
        manager->path = manager->impl->step_path(step);
        *out_path = manager->path.c_str();
    });
}

int shardpoint_manager_save_new(shardpoint_save **out, shardpoint_manager *manager, uint64_t step,
                                const shardpoint_save_options *options) {
    if (!manager) return fail(SHARDPOINT_EINVAL, "manager is NULL");
    std::string path;
    int rc = guarded([&] { path = manager->impl->step_path(step); });
    if (rc != 0) return rc;
    return shardpoint_save_new(out, path.c_str(), manager->comm, options);
}

int shardpoint_manager_latest_step(shardpoint_manager *manager, uint64_t *out_step) {
    return guarded([&] {
        need(manager, "manager");
        need(out_step, "out_step");
        uint64_t step = 0;
        if (!manager->impl->latest_step(step))
            throw Error(Code::not_found, "no committed step in '" + manager->impl->root() + "'");
        *out_step = step;
    });
}

int shardpoint_manager_list(shardpoint_manager *manager, uint64_t *out_count) {
    return guarded([&] {
        need(manager, "manager");
        std::vector<StepInfo> steps = manager->impl->list();
        manager->steps = std::move(steps);
        if (out_count) *out_count = manager->steps.size();
    });
}

int shardpoint_manager_step_info(const shardpoint_manager *manager, uint64_t index, shardpoint_step_info *out) {
    return guarded([&] {
        need(manager, "manager");
        need(out, "out");
        if (index >= manager->steps.size())
            throw Error(Code::range, "step index " + std::to_string(index) + " of " + std::to_string(manager->steps.size()));
        const StepInfo &s = manager->steps[size_t(index)];
        shardpoint_step_info info;
        std::memset(&info, 0, sizeof info);
        info.step = s.step;
        info.state = int32_t(s.state);
        info.busy = s.busy ? 1 : 0;
        info.path = s.path.c_str();
        info.bytes = s.bytes;
        info.disk_bytes = s.disk_bytes;
        info.file_count = s.files;
        info.time_unix_ns = s.time_unix_ns;
        info.metric = s.has_metric ? s.metric.c_str() : nullptr;
        info.message = s.message.c_str();
        *out = info;
    });
}

int shardpoint_manager_delete_step(shardpoint_manager *manager, uint64_t step) {
    return guarded([&] {
        need(manager, "manager");
        manager->impl->delete_step(step);
    });
}

int shardpoint_manager_apply_retention(shardpoint_manager *manager, uint32_t flags, shardpoint_retention_callback callback,
                                       void *user, uint64_t *out_deleted) {
    return guarded([&] {
        need(manager, "manager");
        if (flags & ~uint32_t(SHARDPOINT_RETENTION_DRY_RUN)) throw Error(Code::invalid_argument, "unknown retention flags");
        uint64_t count = 0;
        // Rank 0 alone deletes: the ranks of one job never race each other for the same steps.
        if (!manager->comm || manager->comm->impl->rank() == 0) {
            auto deleted = manager->impl->apply_retention(flags & SHARDPOINT_RETENTION_DRY_RUN,
                                                          [&](const CheckpointManager::Deleted &d) {
                return !callback || callback(user, d.step, d.bytes) == 0;
            });
            count = deleted.size();
        }
        if (out_deleted) *out_deleted = count;
    });
}

int shardpoint_manager_gc(shardpoint_manager *manager, uint32_t flags, shardpoint_gc_callback callback, void *user,
                          uint64_t *out_files, uint64_t *out_bytes) {
    return guarded([&] {
        need(manager, "manager");
        if (flags & ~uint32_t(SHARDPOINT_GC_DRY_RUN)) throw Error(Code::invalid_argument, "unknown gc flags");
        uint64_t files = 0, bytes = 0;
        manager->impl->collect_garbage(flags & SHARDPOINT_GC_DRY_RUN, [&](const GarbageFile &f) {
            if (callback && callback(user, f.name.c_str(), f.size) != 0) return false;
            ++files;
            bytes += f.size;
            return true;
        });
        if (out_files) *out_files = files;
        if (out_bytes) *out_bytes = bytes;
    });
}

int shardpoint_checkpoint_delete(const char *dir) {
    return guarded([&] { delete_checkpoint(text(dir, "dir")); });
}

}  // extern "C"
