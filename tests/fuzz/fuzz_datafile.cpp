// libFuzzer target: fixed, valid metadata (pool/datafile.meta: raw and deflated tensors, blobs,
// one data file) and fuzzed bytes for its one data file. Verification checks every CRC (each
// mismatch must be reported, never crash); loads run without CRC checks, so that damaged deflate
// streams and short files reach the inflater and the scatter code instead of stopping at a CRC.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "shardpoint.h"
#include "shardpoint/metadata_codec.hpp"

namespace {

std::string g_dir;
std::string g_data_name;

[[noreturn]] void die(const std::string &what) {
    std::fprintf(stderr, "fuzz_datafile: %s\n", what.c_str());
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
    g_dir = fuzz::make_workdir();
    std::vector<unsigned char> meta = fuzz::read_file(fuzz::pool_dir() + "/datafile.meta");
    shardpoint::Metadata md = shardpoint::decode_metadata(meta.data(), meta.size());
    if (md.files.size() != 1) die("datafile.meta must name exactly one data file");
    g_data_name = md.files[0].name;
    fuzz::write_file(g_dir + "/shardpoint.meta", meta.data(), meta.size());
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz::write_file(g_dir + "/" + g_data_name, data, size);
    // The metadata is valid: opening must succeed whatever the data file holds.
    if (fuzz::exercise_reader(g_dir, true) != SHARDPOINT_OK) die(std::string("reader_open failed: ") + shardpoint_last_error());
    return 0;
}
