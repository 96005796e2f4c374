// libFuzzer target: the input is a checkpoint's metadata file (shardpoint.meta). It is decoded in
// memory by the core, then written into a directory holding real data files (the pool, see
// fuzz_seeds.cpp) and driven through the C ABI: open, inspect, verify, load every entry.
//
// Beyond sanitizer reports, the harness aborts when:
//  - a call returns SHARDPOINT_EINTERNAL, ENOMEM or EINVAL (hostile bytes must give a format,
//    checksum, shape, path, ... error, never an internal one or an attempt at a huge allocation);
//  - decode_metadata throws anything but shardpoint::Error;
//  - decode_metadata and shardpoint_reader_open disagree about the same bytes;
//  - re-encoding the decoded metadata does not decode back to the same metadata.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "shardpoint.h"
#include "shardpoint/error.hpp"
#include "shardpoint/metadata_codec.hpp"

namespace {

std::string g_dir;

[[noreturn]] void die(const std::string &what) {
    std::fprintf(stderr, "fuzz_metadata: %s\n", what.c_str());
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
    g_dir = fuzz::make_workdir();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    std::vector<unsigned char> file(data, data + size);
    uint32_t flags = fuzz::header_flags(data, size);
    if (!(flags & fuzz::kRawHeader)) fuzz::repair_header(file);

    int decoded = SHARDPOINT_OK;
    try {
        shardpoint::Metadata md = shardpoint::decode_metadata(file.data(), file.size());
        // The encoder is the decoder's inverse on everything the decoder accepts.
        std::vector<unsigned char> once = shardpoint::encode_metadata(md);
        shardpoint::Metadata again = shardpoint::decode_metadata(once.data(), once.size());
        std::vector<unsigned char> twice = shardpoint::encode_metadata(again);
        if (once != twice) die("decode(encode(metadata)) differs from metadata");
    } catch (const shardpoint::Error &e) {
        decoded = int(e.code());
        if (decoded == SHARDPOINT_EINTERNAL || decoded == SHARDPOINT_ENOMEM) die(std::string("decode_metadata: ") + e.what());
    } catch (const std::exception &e) {
        die(std::string("decode_metadata threw a foreign exception: ") + e.what());
    }

    fuzz::write_file(g_dir + "/shardpoint.meta", file.data(), file.size());
    int opened = fuzz::exercise_reader(g_dir, flags & fuzz::kNoVerify);
    // Opening reads the same bytes through decode_metadata; it may only add checks of its own.
    if (decoded != SHARDPOINT_OK && opened != decoded)
        die("decode_metadata refused the input with " + std::to_string(decoded) + " but reader_open returned " +
            std::to_string(opened));
    return 0;
}
