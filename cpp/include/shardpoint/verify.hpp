// What FileSystemReader::verify_all finds: one problem per bad extent, in metadata order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "shardpoint/error.hpp"

namespace shardpoint {

struct VerifyProblem {
    Code code = Code::ok;
    std::string fqn;
    uint64_t chunk = 0;        // index into the entry's chunks (0 for a bytes entry)
    std::string file;          // the data file's name
    uint64_t file_offset = 0;  // the first bad byte range found in the extent: its start ...
    uint64_t length = 0;       // ... and length, in the data file
    std::string message;
};

// Thrown by verify_all when any extent is bad: the code and message are those of the first
// problem (with a count of the others); problems() lists every bad extent.
class VerifyFailure : public Error {
public:
    VerifyFailure(Code code, const std::string &message, std::vector<VerifyProblem> problems)
        : Error(code, message), problems_(std::move(problems)) {}
    const std::vector<VerifyProblem> &problems() const { return problems_; }

private:
    std::vector<VerifyProblem> problems_;
};

}  // namespace shardpoint
