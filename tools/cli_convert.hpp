// `shardpoint convert`: checkpoints to and from safetensors (tools/cli_convert.cpp).
#pragma once

#include <string>
#include <utility>
#include <vector>

// Runs `shardpoint convert` with its parsed arguments (options as name, value; "" for flags).
// Returns the exit status: 0 success, 1 failure, 2 usage error.
int run_convert(const std::vector<std::string> &positional, const std::vector<std::pair<std::string, std::string>> &options);
