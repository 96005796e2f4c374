// The commands of the shardpoint tool for steps and comparisons (cli_steps.cpp: ls, rm and
// gc of a manager root; cli_diff.cpp: diff). shardpoint_cli.cpp parses the command line and
// calls them; each returns the exit status. Like the rest of the tool they use only the public
// C ABI.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace cli {

// ls ROOT [--json]: the steps of a manager root, their sizes, times and states, and its garbage.
int ls(const std::vector<std::string> &args, bool json);
// rm ROOT STEP, or rm CHECKPOINT_DIR: a crash-safe deletion.
int rm(const std::vector<std::string> &args);
// True when `dir` is a manager root (it holds step-N directories or leftovers of killed
// deletions, and no checkpoint metadata of its own): `gc DIR` then collects the whole root.
bool is_manager_root(const std::string &dir);
int gc_root(const std::string &dir, bool dry_run);
// diff A B [--data]: entries added, removed and changed; with `data`, which values differ.
int diff(const std::vector<std::string> &args, bool data);

// --- shared by these files ----------------------------------------------------------------

inline int usage_error(const std::string &message) {
    std::fprintf(stderr, "shardpoint: %s\nTry 'shardpoint --help'.\n", message.c_str());
    return 2;
}

inline std::string human_bytes(double n) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (n >= 1024 && u < 4) n /= 1024, ++u;
    char buf[32];
    std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", n, units[u]);
    return buf;
}

inline std::string json_string(const char *s) {
    std::string out = "\"";
    for (const unsigned char *p = reinterpret_cast<const unsigned char *>(s); *p; ++p) {
        if (*p == '"' || *p == '\\') out += '\\', out += char(*p);
        else if (*p < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", *p);
            out += buf;
        } else out += char(*p);
    }
    return out + "\"";
}

inline const char *plural(uint64_t n, const char *one, const char *many) { return n == 1 ? one : many; }

}  // namespace cli
