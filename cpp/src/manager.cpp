// The checkpoint manager: steps under a root, crash-safe deletion, retention and root gc.
#include "shardpoint/manager.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <thread>

#include "shardpoint/error.hpp"
#include "shardpoint/metadata_codec.hpp"
#include "storage_io.hpp"

namespace shardpoint {

using namespace io;

namespace {

const std::string step_prefix = "step-";
const std::string deleting_prefix = ".deleting-";
constexpr int max_tree_depth = 32;  // deeper trees are not ours: refuse rather than recurse on

bool is_hex(const std::string &s, size_t at, size_t len) {
    if (s.size() < at + len) return false;
    for (size_t i = at; i < at + len; ++i)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

// The names in an open directory (without "." and ".."); `fd` stays open.
std::vector<std::string> names_in(int fd, const std::string &what) {
    int dup_fd = ::openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dup_fd < 0) throw_errno(Code::io, "open directory '" + what + "'", errno);
    DIR *d = ::fdopendir(dup_fd);
    if (!d) {
        int err = errno;
        ::close(dup_fd);
        throw_errno(Code::io, "list directory '" + what + "'", err);
    }
    std::vector<std::string> names;
    while (struct dirent *e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name != "." && name != "..") names.push_back(name);
    }
    ::closedir(d);
    return names;
}

int open_directory(const std::string &path) {
    return ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

struct TreeSize {
    uint64_t bytes = 0, disk_bytes = 0, files = 0;
};

// The regular files under directory `fd` (symbolic links are not followed).
void measure_tree(int fd, const std::string &what, TreeSize &size, int depth = 0) {
    if (depth > max_tree_depth) throw Error(Code::invalid_argument, "'" + what + "' is nested too deeply");
    for (const std::string &name : names_in(fd, what)) {
        struct stat st;
        if (::fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
        if (S_ISDIR(st.st_mode)) {
            FileDescriptor sub(::openat(fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (sub.get() >= 0) measure_tree(sub.get(), join(what, name), size, depth + 1);
        } else if (S_ISREG(st.st_mode)) {
            size.bytes += uint64_t(st.st_size);
            size.disk_bytes += uint64_t(st.st_blocks) * 512;
            ++size.files;
        }
    }
}

// Removes everything inside directory `fd` (not the directory itself). Entries that vanish
// meanwhile (another remover) are fine.
void remove_tree_contents(int fd, const std::string &what, int depth = 0) {
    if (depth > max_tree_depth) throw Error(Code::invalid_argument, "'" + what + "' is nested too deeply");
    for (const std::string &name : names_in(fd, what)) {
        struct stat st;
        if (::fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT) continue;
            throw_errno(Code::io, "stat '" + join(what, name) + "'", errno);
        }
        if (S_ISDIR(st.st_mode)) {
            FileDescriptor sub(::openat(fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (sub.get() < 0) {
                if (errno == ENOENT) continue;
                throw_errno(Code::io, "open directory '" + join(what, name) + "'", errno);
            }
            remove_tree_contents(sub.get(), join(what, name), depth + 1);
        }
        if (::unlinkat(fd, name.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) != 0 && errno != ENOENT)
            throw_errno(Code::io, "remove '" + join(what, name) + "'", errno);
    }
}

// `dir` without trailing slashes, split into its parent and its last component.
void split_path(const std::string &dir, std::string &parent, std::string &base) {
    std::string d = dir;
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    size_t slash = d.find_last_of('/');
    parent = slash == std::string::npos ? "." : slash == 0 ? "/" : d.substr(0, slash);
    base = slash == std::string::npos ? d : d.substr(slash + 1);
    if (base.empty() || base == "." || base == ".." || base == "/")
        throw Error(Code::invalid_argument, "cannot delete '" + dir + "': name a directory by its own name");
}

bool same_file(const struct stat &a, const struct stat &b) { return a.st_dev == b.st_dev && a.st_ino == b.st_ino; }

// Removes the hidden directory `hidden` (already renamed away), metadata first so that even a
// rename undone by a power loss brings back a step without metadata: never one half removed.
void remove_hidden(const std::string &hidden, uint64_t *bytes) {
    FileDescriptor fd(open_directory(hidden));
    if (fd.get() < 0) {
        if (errno == ENOENT) return;  // someone else finished it
        throw_errno(Code::io, "open directory '" + hidden + "'", errno);
    }
    if (bytes) {
        TreeSize size;
        measure_tree(fd.get(), hidden, size);
        *bytes = size.bytes;
    }
    if (::unlinkat(fd.get(), metadata_file_name, 0) == 0) ::fsync(fd.get());  // best effort: see above
    remove_tree_contents(fd.get(), hidden);
    if (::rmdir(hidden.c_str()) != 0 && errno != ENOENT) throw_errno(Code::io, "remove directory '" + hidden + "'", errno);
}

// delete_directory once the lock is held (or, on a filesystem without locks, not needed).
void delete_locked(const std::string &dir, const DirectoryLock &lock, uint64_t *bytes) {
    std::string parent, base;
    split_path(dir, parent, base);
    struct stat before, locked;
    if (::lstat(dir.c_str(), &before) != 0) {
        if (errno == ENOENT) throw Error(Code::not_found, "no directory '" + dir + "'");
        throw_errno(Code::io, "stat '" + dir + "'", errno);
    }
    if (!S_ISDIR(before.st_mode)) throw Error(Code::invalid_argument, "'" + dir + "' is not a directory");
    // The path must still name the directory we locked (not one put in its place meanwhile).
    if (lock.fd() >= 0 && (::fstat(lock.fd(), &locked) != 0 || !same_file(before, locked)))
        throw Error(Code::state, "'" + dir + "' was replaced while it was being locked");
    std::string hidden = join(parent, deleting_prefix + base.substr(0, 200) + "-" + new_save_id().substr(0, 16));
    if (::rename(dir.c_str(), hidden.c_str()) != 0) {
        if (errno == ENOENT) throw Error(Code::not_found, "no directory '" + dir + "'");
        throw_errno(Code::io, "rename '" + dir + "' to '" + hidden + "'", errno);
    }
    struct stat after;
    if (::lstat(hidden.c_str(), &after) != 0 || !same_file(before, after)) {
        // Another directory took the name between our check and the rename: give it back.
        ::rename(hidden.c_str(), dir.c_str());
        throw Error(Code::state, "'" + dir + "' was replaced while it was being deleted");
    }
    // The rename is the deletion's commit point: make it durable before removing any file.
    // (If this fsync fails, removing the metadata first still never leaves a half-removed step.)
    try {
        fsync_directory(parent);
    } catch (const Error &) {
    }
    remove_hidden(hidden, bytes);
}

// True when directory `dir` holds nothing but what a killed save leaves: files with
// shardpoint's own debris names and a metadata file that is not a checkpoint (a torn write).
bool holds_only_debris(const std::string &dir) {
    FileDescriptor fd(open_directory(dir));
    if (fd.get() < 0) return false;
    for (const std::string &name : names_in(fd.get(), dir)) {
        struct stat st;
        if (::fstatat(fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) return false;
        if (name == metadata_file_name) {
            if (metadata_state(dir) == MetadataState::checkpoint) return false;
        } else if (!is_own_file_name(name)) {
            return false;
        }
    }
    return true;
}

bool parse_metric(const std::string &text, double &value) {
    if (text.empty()) return false;
    char *end = nullptr;
    errno = 0;
    value = std::strtod(text.c_str(), &end);
    return end == text.c_str() + text.size() && errno != ERANGE && std::isfinite(value);
}

struct Inspect {
    bool measure = true;  // sizes and file count
    bool probe = true;    // whether a save holds the lock
};

StepInfo inspect_step(const std::string &path, uint64_t step, const RetentionPolicy &policy, Inspect how) {
    StepInfo info;
    info.step = step;
    info.path = path;
    FileDescriptor fd(open_directory(path));
    if (fd.get() < 0) {
        info.message = "cannot open the directory";
        return info;
    }
    struct stat st;
    if (::fstat(fd.get(), &st) == 0)
        info.time_unix_ns = int64_t(st.st_mtim.tv_sec) * 1000000000 + int64_t(st.st_mtim.tv_nsec);
    if (how.measure) {
        TreeSize size;
        try {
            measure_tree(fd.get(), path, size);
        } catch (const Error &) {
        }
        info.bytes = size.bytes, info.disk_bytes = size.disk_bytes, info.files = size.files;
    }
    if (how.probe) {
        try {
            info.busy = DirectoryLock::try_lock(path).busy();
        } catch (const Error &) {
        }
    }
    switch (metadata_state(path)) {
        case MetadataState::absent:
            info.message = info.busy ? "being written" : "no metadata: a save in progress or the debris of a killed one";
            return info;
        case MetadataState::not_a_checkpoint:
            info.message = "metadata is not a checkpoint (a torn write): the debris of a killed save";
            return info;
        case MetadataState::checkpoint: break;
    }
    Metadata metadata;
    try {
        metadata = FileSystemReader(path, LoadOptions{}).read_metadata();
    } catch (const Error &e) {
        info.state = StepState::damaged;
        info.message = e.what();
        return info;
    }
    // Committed metadata is not enough: every data file it names must be there, whole.
    for (const DataFileMeta &f : metadata.files) {
        struct stat fs;
        if (::fstatat(fd.get(), f.name.c_str(), &fs, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(fs.st_mode)) {
            info.state = StepState::damaged;
            info.message = "data file '" + f.name + "' is missing";
            return info;
        }
        if (uint64_t(fs.st_size) < f.size) {
            info.state = StepState::damaged;
            info.message = "data file '" + f.name + "' is shorter than its metadata says";
            return info;
        }
    }
    info.state = StepState::committed;
    info.message.clear();
    info.time_unix_ns = metadata.storage.created_unix_ns;
    if (!policy.best_metric.empty())
        for (const auto &kv : metadata.user)
            if (kv.first == policy.best_metric) info.has_metric = true, info.metric = kv.second;
    return info;
}

// inspect_step, or false when the directory went away meanwhile: a step that a deletion renamed
// while it was looked at is not listed at all, not even as partial.
bool inspect_present(const std::string &path, uint64_t step, const RetentionPolicy &policy, Inspect how, StepInfo &out) {
    struct stat before, after;
    if (::lstat(path.c_str(), &before) != 0) return false;
    out = inspect_step(path, step, policy, how);
    if (out.state == StepState::committed) return true;  // all of it was there, whole
    return ::lstat(path.c_str(), &after) == 0 && same_file(before, after);
}

// The step directories of `root` (by step, ascending): name checked, a real directory.
std::vector<std::pair<uint64_t, std::string>> step_dirs(const std::string &root) {
    FileDescriptor fd(open_directory(root));
    if (fd.get() < 0) {
        if (errno == ENOENT || errno == ENOTDIR) throw Error(Code::not_found, "no directory '" + root + "'");
        throw_errno(Code::io, "open directory '" + root + "'", errno);
    }
    std::vector<std::pair<uint64_t, std::string>> out;
    for (const std::string &name : names_in(fd.get(), root)) {
        uint64_t step;
        struct stat st;
        if (!parse_step_dir_name(name, step)) continue;
        if (::fstatat(fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) continue;
        out.emplace_back(step, join(root, name));
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::string> deletion_leftovers(const std::string &root) {
    FileDescriptor fd(open_directory(root));
    if (fd.get() < 0) throw_errno(Code::io, "open directory '" + root + "'", errno);
    std::vector<std::string> out;
    for (const std::string &name : names_in(fd.get(), root)) {
        struct stat st;
        if (!is_deletion_name(name)) continue;
        if (::fstatat(fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) continue;
        out.push_back(name);
    }
    std::sort(out.begin(), out.end());
    return out;
}

// DirectoryLock::try_lock of a directory that another deleter may remove at any moment: false
// when it is gone.
bool lock_if_present(const std::string &dir, DirectoryLock &lock) {
    try {
        lock = DirectoryLock::try_lock(dir);
        return true;
    } catch (const Error &) {
        struct stat st;
        if (::lstat(dir.c_str(), &st) != 0 && errno == ENOENT) return false;
        throw;
    }
}

// True when `dir` still names the directory `lock` holds (not one put in its place meanwhile).
bool still_locked(const std::string &dir, const DirectoryLock &lock) {
    struct stat a, b;
    if (lock.fd() < 0) return true;  // no locks on this filesystem: nothing to compare
    return ::lstat(dir.c_str(), &a) == 0 && ::fstat(lock.fd(), &b) == 0 && same_file(a, b);
}

uint64_t tree_bytes(const std::string &dir) {
    FileDescriptor fd(open_directory(dir));
    TreeSize size;
    if (fd.get() >= 0) measure_tree(fd.get(), dir, size);
    return size.bytes;
}

}  // namespace

std::string step_dir_name(uint64_t step) { return step_prefix + std::to_string(step); }

bool parse_step_dir_name(const std::string &name, uint64_t &step) {
    if (name.compare(0, step_prefix.size(), step_prefix) != 0) return false;
    std::string digits = name.substr(step_prefix.size());
    if (digits.empty() || digits.size() > 20 || (digits.size() > 1 && digits[0] == '0')) return false;
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) return false;
    errno = 0;
    unsigned long long v = std::strtoull(digits.c_str(), nullptr, 10);
    if (errno == ERANGE) return false;
    step = uint64_t(v);
    return true;
}

bool is_deletion_name(const std::string &name) {
    // .deleting-<name>-<16 hex>
    const size_t tail = 1 + 16;
    return name.compare(0, deleting_prefix.size(), deleting_prefix) == 0 && name.size() > deleting_prefix.size() + tail &&
           name[name.size() - tail] == '-' && is_hex(name, name.size() - 16, 16);
}

std::vector<uint64_t> retention_victims(const std::vector<StepInfo> &steps, const RetentionPolicy &policy) {
    std::vector<const StepInfo *> committed;
    for (const StepInfo &s : steps)
        if (s.state == StepState::committed) committed.push_back(&s);
    std::sort(committed.begin(), committed.end(), [](const StepInfo *a, const StepInfo *b) { return a->step < b->step; });
    if (committed.empty() || !policy.any()) return {};
    std::vector<bool> keep(committed.size(), false);
    keep.back() = true;  // the newest committed step, always
    for (size_t i = 0; i < committed.size(); ++i) {
        if (policy.keep_last && committed.size() - i <= policy.keep_last) keep[i] = true;
        if (policy.keep_every && committed[i]->step % policy.keep_every == 0) keep[i] = true;
    }
    if (policy.keep_best) {
        std::vector<std::pair<double, size_t>> ranked;  // (value, index) of steps with a number
        for (size_t i = 0; i < committed.size(); ++i) {
            double v;
            if (committed[i]->has_metric && parse_metric(committed[i]->metric, v)) ranked.emplace_back(v, i);
        }
        // Best first; on equal values the newer step wins.
        std::sort(ranked.begin(), ranked.end(), [&](const std::pair<double, size_t> &a, const std::pair<double, size_t> &b) {
            if (a.first != b.first) return policy.best_max ? a.first > b.first : a.first < b.first;
            return a.second > b.second;
        });
        for (size_t k = 0; k < ranked.size() && k < policy.keep_best; ++k) keep[ranked[k].second] = true;
    }
    std::vector<uint64_t> victims;
    for (size_t i = 0; i < committed.size(); ++i)
        if (!keep[i]) victims.push_back(committed[i]->step);
    return victims;
}

DeleteOutcome delete_directory(const std::string &dir, const std::function<bool()> &confirm, uint64_t *bytes,
                               int attempts) {
    struct stat st;
    if (::lstat(dir.c_str(), &st) != 0) {
        if (errno == ENOENT) throw Error(Code::not_found, "no directory '" + dir + "'");
        throw_errno(Code::io, "stat '" + dir + "'", errno);
    }
    if (!S_ISDIR(st.st_mode)) throw Error(Code::invalid_argument, "'" + dir + "' is not a directory");
    DirectoryLock lock;
    for (int i = 0; i == 0 || (i < attempts && lock.busy()); ++i) {
        if (i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        if (!lock_if_present(dir, lock)) throw Error(Code::not_found, "no directory '" + dir + "'");
    }
    if (lock.busy()) return DeleteOutcome::busy;
    if (confirm && !confirm()) return DeleteOutcome::declined;
    delete_locked(dir, lock, bytes);
    return DeleteOutcome::deleted;
}

uint64_t delete_checkpoint(const std::string &dir) {
    struct stat st;
    if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) throw Error(Code::not_found, "no directory '" + dir + "'");
    // Only what is (or was meant to be) a checkpoint: never an arbitrary directory tree.
    if (metadata_state(dir) == MetadataState::absent)
        throw Error(Code::not_found, "no checkpoint at '" + dir + "' (" + metadata_file_name + " is missing)");
    uint64_t bytes = 0;
    if (delete_directory(dir, {}, &bytes, 10) == DeleteOutcome::busy)
        throw Error(Code::state, "'" + dir + "' is being written (a save holds its lock)");
    return bytes;
}

CheckpointManager::CheckpointManager(std::string root, RetentionPolicy policy, bool create)
    : root_(std::move(root)), policy_(std::move(policy)) {
    while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
    if (root_.empty()) throw Error(Code::invalid_argument, "the root directory is empty");
    if (policy_.keep_best && policy_.best_metric.empty())
        throw Error(Code::invalid_argument, "keep_best needs best_metric (the user metadata key that ranks steps)");
    if (!policy_.keep_best && !policy_.best_metric.empty())
        throw Error(Code::invalid_argument, "best_metric is set but keep_best is 0");
    if (create) make_directories(root_, true);
    struct stat st;
    if (::stat(root_.c_str(), &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) throw Error(Code::not_found, "no directory '" + root_ + "'");
        throw_errno(Code::io, "stat '" + root_ + "'", errno);
    }
    if (!S_ISDIR(st.st_mode)) throw Error(Code::invalid_argument, "'" + root_ + "' is not a directory");
}

std::string CheckpointManager::step_path(uint64_t step) const { return join(root_, step_dir_name(step)); }

std::vector<StepInfo> CheckpointManager::list() const {
    std::vector<StepInfo> out;
    StepInfo info;
    for (const auto &d : step_dirs(root_))
        if (inspect_present(d.second, d.first, policy_, Inspect{}, info)) out.push_back(info);
    return out;
}

bool CheckpointManager::latest_step(uint64_t &step) const {
    auto dirs = step_dirs(root_);
    StepInfo info;
    for (auto it = dirs.rbegin(); it != dirs.rend(); ++it)
        if (inspect_present(it->second, it->first, policy_, Inspect{false, false}, info) &&
            info.state == StepState::committed) {
            step = it->first;
            return true;
        }
    return false;
}

uint64_t CheckpointManager::delete_step(uint64_t step) {
    std::string path = step_path(step);
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        throw Error(Code::not_found, "no step " + std::to_string(step) + " in '" + root_ + "'");
    uint64_t bytes = 0;
    // A listing probes locks for an instant: retry a little before calling the step busy.
    if (delete_directory(path, {}, &bytes, 10) == DeleteOutcome::busy)
        throw Error(Code::state, "step " + std::to_string(step) + " is being written (a save holds its lock)");
    return bytes;
}

std::vector<CheckpointManager::Deleted> CheckpointManager::apply_retention(
    bool dry_run, const std::function<bool(const Deleted &)> &each) {
    if (!dry_run)
        for (const std::string &name : deletion_leftovers(root_)) {
            std::string path = join(root_, name);
            DirectoryLock lock;
            // Gone: another process removed it. Busy: its deleter is still at it.
            if (lock_if_present(path, lock) && !lock.busy()) remove_hidden(path, nullptr);
        }
    std::vector<StepInfo> steps = list();
    std::vector<uint64_t> victims = retention_victims(steps, policy_);
    bool have_newest = false;
    uint64_t newest = 0;
    for (const StepInfo &s : steps)
        if (s.state == StepState::committed) have_newest = true, newest = s.step;
    std::vector<Deleted> deleted;
    for (const StepInfo &s : steps) {
        bool victim = std::binary_search(victims.begin(), victims.end(), s.step);
        // A partial step below the newest committed one is a killed save's (a save in progress
        // holds the lock from its planning on); one above it may be a save just starting.
        bool debris = s.state == StepState::partial && have_newest && s.step < newest && !s.busy &&
                      holds_only_debris(s.path);
        if (!victim && !debris) continue;
        Deleted d{s.step, s.bytes};
        if (dry_run) {
            if (each && !each(d)) break;
            deleted.push_back(d);
            continue;
        }
        bool stop = false;
        DeleteOutcome outcome = DeleteOutcome::declined;
        try {
            outcome = delete_directory(s.path, [&] {
                // Under the lock: a save may have come since the listing.
                if (debris && (metadata_state(s.path) == MetadataState::checkpoint || !holds_only_debris(s.path)))
                    return false;
                if (each && !each(d)) {
                    stop = true;
                    return false;
                }
                return true;
            }, &d.bytes);
        } catch (const Error &e) {
            if (e.code() == Code::not_found) continue;  // deleted meanwhile by someone else
            throw;
        }
        if (stop) break;
        if (outcome == DeleteOutcome::deleted) deleted.push_back(d);
    }
    return deleted;
}

std::vector<GarbageFile> CheckpointManager::collect_garbage(bool dry_run,
                                                            const std::function<bool(const GarbageFile &)> &each) {
    std::vector<GarbageFile> handled;
    for (const std::string &name : deletion_leftovers(root_)) {
        std::string path = join(root_, name);
        GarbageFile g{name + "/", tree_bytes(path)};
        if (dry_run) {
            if (each && !each(g)) return handled;
            handled.push_back(g);
            continue;
        }
        DirectoryLock lock;
        if (!lock_if_present(path, lock) || lock.busy()) continue;  // gone, or its deleter is still at it
        if (each && !each(g)) return handled;
        remove_hidden(path, nullptr);
        handled.push_back(g);
    }
    uint64_t newest = 0;
    bool have_newest = latest_step(newest);
    for (const auto &d : step_dirs(root_)) {
        const std::string prefix = step_dir_name(d.first) + "/";
        DirectoryLock lock;
        // Busy: a save in progress, whose files are not debris. Gone: deleted meanwhile.
        if (!dry_run && (!lock_if_present(d.second, lock) || lock.busy() || !still_locked(d.second, lock))) continue;
        StepInfo info;
        if (!inspect_present(d.second, d.first, policy_, Inspect{false, false}, info)) continue;  // deleted meanwhile
        StepState state = info.state;
        if (state == StepState::damaged) continue;  // left as it is, for recovery
        bool stopped = false;
        try {
            collect_garbage_held(d.second, dry_run, [&](const GarbageFile &f) {
                GarbageFile g{prefix + f.name, f.size};
                if (each && !each(g)) {
                    stopped = true;
                    return false;
                }
                handled.push_back(g);
                return true;
            });
        } catch (const Error &e) {
            if (e.code() == Code::not_found) continue;  // deleted meanwhile
            throw;
        }
        if (stopped) return handled;
        // A partial step below the newest committed one holding only debris (none left, unless
        // this is a dry run): the directory of a killed save.
        if (state == StepState::partial && have_newest && d.first < newest && holds_only_debris(d.second)) {
            GarbageFile g{prefix, 0};
            if (each && !each(g)) return handled;
            if (!dry_run) {
                try {
                    delete_locked(d.second, lock, nullptr);
                } catch (const Error &e) {
                    if (e.code() != Code::not_found) throw;
                }
            }
            handled.push_back(g);
        }
    }
    return handled;
}

}  // namespace shardpoint
