// Errors of the core: one exception type carrying a stable code (the C ABI's shardpoint_error).
#pragma once

#include <stdexcept>
#include <string>

namespace shardpoint {

enum class Code : int {
    ok = 0,
    invalid_argument = -1,
    out_of_memory = -2,
    io = -3,
    not_found = -4,
    exists = -5,
    format = -6,
    checksum = -7,
    truncated = -8,
    version = -9,
    dtype = -10,
    shape = -11,
    path = -12,
    conflict = -13,
    rank = -14,
    comm = -15,
    uncovered = -16,
    state = -17,
    kind = -18,
    range = -19,
    no_space = -20,
    not_durable = -21,
    canceled = -22,
    internal = -99,
};

class Error : public std::runtime_error {
public:
    Error(Code code, const std::string &message) : std::runtime_error(message), code_(code) {}
    Code code() const noexcept { return code_; }

private:
    Code code_;
};

// Throws Error(code, message) when `condition` is false.
inline void require(bool condition, Code code, const std::string &message) {
    if (!condition) throw Error(code, message);
}

// An Error with the message of errno appended: "open data file x: No such file or directory".
[[noreturn]] void throw_errno(Code code, const std::string &what, int err);

}  // namespace shardpoint
