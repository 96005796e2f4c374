// The commands of the shardpoint tool for steps and comparisons (cli_steps.cpp: ls, rm and
// gc of a manager root; cli_diff.cpp: diff). shardpoint_cli.cpp parses the command line and
// calls them; each returns the exit status. Like the rest of the tool they use only the public
// C ABI.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "cli_util.hpp"

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

}  // namespace cli
