// Shared by the fuzz targets and the seed generator: the data pool, a private checkpoint
// directory per fuzzing process, and one routine that drives the C ABI's reading surface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fuzz {

// Harness controls carried in the metadata header's flags word (bytes 12..15), which version-1
// readers ignore. Without kRawHeader the harness repairs the body length and both CRCs before
// writing the file, so that mutations reach the Cap'n Proto message instead of dying at a CRC.
constexpr uint32_t kRawHeader = 1u << 31;  // write the input exactly as given
constexpr uint32_t kNoVerify = 1u << 30;   // open the reader with SHARDPOINT_LOAD_NO_VERIFY

// The directory of data files every seed's metadata refers to (env SHARDPOINT_FUZZ_POOL, else
// the build tree's pool/), as written by fuzz_seeds.
std::string pool_dir();

// A fresh directory (under /dev/shm when it exists) holding copies of the pool's data files;
// removed at exit. Copies, not links: data files are opened with O_NOFOLLOW.
std::string make_workdir();

std::vector<unsigned char> read_file(const std::string &path);
void write_file(const std::string &path, const unsigned char *data, size_t len);

// Sets the body length to the bytes present (zero-padding the body to a multiple of 8) and
// recomputes the body and header CRC-32s. Inputs shorter than the header are left alone.
void repair_header(std::vector<unsigned char> &file);
uint32_t header_flags(const unsigned char *data, size_t len);

// Opens the checkpoint in `dir`, queries everything, verifies every extent and loads every
// entry (whole tensors, each chunk, an inner box, a strided copy) within a memory budget.
// Returns the code of shardpoint_reader_open. Aborts on any result the header rules out for
// untrusted input: SHARDPOINT_EINTERNAL, SHARDPOINT_ENOMEM, or a code outside the known set.
int exercise_reader(const std::string &dir, bool no_verify);

// Aborts with `what` and the thread's last error when `code` is not acceptable.
void check_code(int code, const char *what);

}  // namespace fuzz
