// shardpoint ls, rm and gc of a manager root: the steps of a training run (the C ABI's
// checkpoint manager).
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdlib>
#include <ctime>

#include "cli_steps.hpp"
#include "shardpoint.h"

namespace cli {

namespace {

int report(const char *cmd, const std::string &what, int rc) {
    std::fprintf(stderr, "shardpoint %s: %s: %s: %s\n", cmd, what.c_str(), shardpoint_error_name(rc), shardpoint_last_error());
    return 1;
}

shardpoint_manager *open_root(const char *cmd, const std::string &root) {
    shardpoint_manager *m = nullptr;
    int rc = shardpoint_manager_open(&m, root.c_str(), nullptr, nullptr);
    if (rc != 0) {
        report(cmd, "cannot open '" + root + "'", rc);
        return nullptr;
    }
    return m;
}

const char *state_name(int32_t state) {
    return state == SHARDPOINT_STEP_COMMITTED ? "committed" : state == SHARDPOINT_STEP_PARTIAL ? "partial" : "damaged";
}

std::string utc_time(int64_t unix_ns) {
    std::time_t t = std::time_t(unix_ns / 1000000000);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
}

struct Garbage {
    std::string name;
    uint64_t size;
};

int collect_name(void *user, const char *name, uint64_t size) {
    static_cast<std::vector<Garbage> *>(user)->push_back(Garbage{name, size});
    return 0;
}

// A step number: decimal digits, or the directory name "step-N".
bool parse_step(std::string text, uint64_t &step) {
    if (text.compare(0, 5, "step-") == 0) text = text.substr(5);
    if (text.empty() || text.size() > 20) return false;
    for (char c : text)
        if (c < '0' || c > '9') return false;
    errno = 0;
    step = std::strtoull(text.c_str(), nullptr, 10);
    return errno != ERANGE;
}

}  // namespace

int ls(const std::vector<std::string> &args, bool json) {
    if (args.size() != 1) return usage_error(args.empty() ? "ls: missing the root directory" : "ls: expected one root directory");
    const std::string &root = args[0];
    shardpoint_manager *m = open_root("ls", root);
    if (!m) return 1;
    uint64_t n = 0;
    int rc = shardpoint_manager_list(m, &n);
    std::vector<Garbage> garbage;
    if (rc == 0) rc = shardpoint_manager_gc(m, SHARDPOINT_GC_DRY_RUN, collect_name, &garbage, nullptr, nullptr);
    if (rc != 0) {
        shardpoint_manager_free(m);
        return report("ls", root, rc);
    }
    uint64_t latest = 0;
    bool have_latest = shardpoint_manager_latest_step(m, &latest) == 0;
    std::vector<shardpoint_step_info> steps(n);
    uint64_t counts[3] = {0, 0, 0}, total = 0;
    for (uint64_t i = 0; i < n; ++i) {
        shardpoint_manager_step_info(m, i, &steps[i]);
        ++counts[steps[i].state];
        total += steps[i].bytes;
    }
    if (json) {
        std::printf("{\"root\":%s,\"latest\":", json_string(root.c_str()).c_str());
        if (have_latest) std::printf("%" PRIu64, latest);
        else std::printf("null");
        std::printf(",\"steps\":[");
        for (uint64_t i = 0; i < n; ++i) {
            const shardpoint_step_info &s = steps[i];
            std::printf("%s{\"step\":%" PRIu64 ",\"state\":\"%s\",\"busy\":%s,\"path\":%s,\"bytes\":%" PRIu64
                        ",\"disk_bytes\":%" PRIu64 ",\"files\":%" PRIu64 ",\"time_unix_ns\":%" PRId64 ",\"metric\":%s,\"message\":%s}",
                        i ? "," : "", s.step, state_name(s.state), s.busy ? "true" : "false", json_string(s.path).c_str(),
                        s.bytes, s.disk_bytes, s.file_count, s.time_unix_ns, s.metric ? json_string(s.metric).c_str() : "null",
                        json_string(s.message).c_str());
        }
        std::printf("],\"garbage\":[");
        for (size_t i = 0; i < garbage.size(); ++i)
            std::printf("%s{\"name\":%s,\"size\":%" PRIu64 "}", i ? "," : "", json_string(garbage[i].name.c_str()).c_str(),
                        garbage[i].size);
        std::printf("]}\n");
    } else {
        std::printf("%s: %" PRIu64 " %s (%" PRIu64 " committed, %" PRIu64 " partial, %" PRIu64 " damaged), %s", root.c_str(),
                    n, plural(n, "step", "steps"), counts[0], counts[1], counts[2], human_bytes(double(total)).c_str());
        if (have_latest) std::printf("; latest committed step %" PRIu64 "\n", latest);
        else std::printf("; no committed step\n");
        if (n) std::printf("  %12s  %-9s  %10s  %5s  %-19s\n", "STEP", "STATE", "SIZE", "FILES", "TIME (UTC)");
        for (const shardpoint_step_info &s : steps) {
            std::string note;
            if (s.state == SHARDPOINT_STEP_PARTIAL) note = s.busy ? "being written" : s.message;
            else if (s.state == SHARDPOINT_STEP_DAMAGED) note = s.message;
            else if (s.busy) note = "being overwritten";
            std::printf("  %12" PRIu64 "  %-9s  %10s  %5" PRIu64 "  %-19s%s%s\n", s.step, state_name(s.state),
                        human_bytes(double(s.bytes)).c_str(), s.file_count, utc_time(s.time_unix_ns).c_str(),
                        note.empty() ? "" : "  ", note.c_str());
        }
        uint64_t garbage_bytes = 0;
        for (const Garbage &g : garbage) {
            garbage_bytes += g.size;
            bool leftover = g.name.compare(0, 10, ".deleting-") == 0;
            std::printf("  garbage %s (%s): %s\n", g.name.c_str(), human_bytes(double(g.size)).c_str(),
                        leftover ? "leftover of a killed deletion" : g.name.back() == '/' ? "directory of a killed save"
                                                                                           : "debris of a killed save");
        }
        if (!garbage.empty())
            std::printf("%zu garbage %s (%s): 'shardpoint gc %s' removes %s\n", garbage.size(),
                        plural(garbage.size(), "entry", "entries"), human_bytes(double(garbage_bytes)).c_str(), root.c_str(),
                        plural(garbage.size(), "it", "them"));
    }
    shardpoint_manager_free(m);
    return 0;
}

int rm(const std::vector<std::string> &args) {
    if (args.empty() || args.size() > 2) return usage_error("rm: expected ROOT STEP or a checkpoint directory");
    if (args.size() == 1) {
        int rc = shardpoint_checkpoint_delete(args[0].c_str());
        if (rc != 0) return report("rm", args[0], rc);
        std::printf("removed %s\n", args[0].c_str());
        return 0;
    }
    uint64_t step = 0;
    if (!parse_step(args[1], step)) return usage_error("rm: STEP wants a step number, got '" + args[1] + "'");
    shardpoint_manager *m = open_root("rm", args[0]);
    if (!m) return 1;
    // Its size, for the report (the deletion itself does not need the listing).
    uint64_t n = 0, bytes = 0;
    if (shardpoint_manager_list(m, &n) == 0)
        for (uint64_t i = 0; i < n; ++i) {
            shardpoint_step_info s;
            if (shardpoint_manager_step_info(m, i, &s) == 0 && s.step == step) bytes = s.bytes;
        }
    const char *path = nullptr;
    shardpoint_manager_step_path(m, step, &path);
    std::string where = path ? path : args[0];
    int rc = shardpoint_manager_delete_step(m, step);
    shardpoint_manager_free(m);
    if (rc != 0) return report("rm", where, rc);
    std::printf("removed step %" PRIu64 " (%s, %s)\n", step, where.c_str(), human_bytes(double(bytes)).c_str());
    return 0;
}

bool is_manager_root(const std::string &dir) {
    struct stat st;
    if (::stat((dir + "/shardpoint.meta").c_str(), &st) == 0) return false;  // a checkpoint itself
    shardpoint_manager *m = nullptr;
    if (shardpoint_manager_open(&m, dir.c_str(), nullptr, nullptr) != 0) return false;
    uint64_t steps = 0, garbage = 0;
    bool root = shardpoint_manager_list(m, &steps) == 0 && steps > 0;
    if (!root)
        root = shardpoint_manager_gc(m, SHARDPOINT_GC_DRY_RUN, nullptr, nullptr, &garbage, nullptr) == 0 && garbage > 0;
    shardpoint_manager_free(m);
    return root;
}

namespace {

int print_removed(void *user, const char *name, uint64_t size) {
    // Called before the removal: a failure to remove it ends gc with an error after this line.
    std::printf("%s %s (%" PRIu64 " bytes)\n", *static_cast<bool *>(user) ? "would remove" : "removing", name, size);
    return 0;
}

}  // namespace

int gc_root(const std::string &dir, bool dry_run) {
    shardpoint_manager *m = open_root("gc", dir);
    if (!m) return 1;
    uint64_t files = 0, bytes = 0;
    int rc = shardpoint_manager_gc(m, dry_run ? SHARDPOINT_GC_DRY_RUN : 0, print_removed, &dry_run, &files, &bytes);
    shardpoint_manager_free(m);
    if (rc != 0) return report("gc", dir, rc);
    std::printf("gc %s (steps): %s %" PRIu64 " %s, %" PRIu64 " bytes (%s)\n", dir.c_str(), dry_run ? "would remove" : "removed",
                files, plural(files, "file", "files"), bytes, human_bytes(double(bytes)).c_str());
    return 0;
}

}  // namespace cli
