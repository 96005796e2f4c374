// make_bad_metadata DIR VARIANT: rewrites DIR/shardpoint.meta, a valid checkpoint's metadata, into
// an invalid variant that is still well-formed Cap'n Proto with correct CRCs, so that the reader's
// validation (not the checksum) has to catch it. Uses the core's own decoder and encoder.
//
// Variants:
//   path_parent     a data file named "../x"
//   path_absolute   a data file named "/etc/passwd"
//   offset_beyond   the first tensor chunk's extent starts past the end of its data file
//   file_index      the first tensor chunk's extent names a data file that does not exist
//   chunk_outside   the first tensor chunk is moved outside the tensor's shape
//   overlap         the second chunk of the first tensor with two chunks overlaps the first
//   too_many_dims   the first tensor gets 33 dimensions
//   unknown_dtype   the first tensor gets dtype 40
//   duplicate       the first entry appears twice
//   major3          a valid message under format major version 3
//   nul_file_name   the first data file is named "x\0/../../outside" (16 bytes, the NUL included)
//   nul_fqn         the entries are renamed "a", "b" and "b\0x" (still sorted, all distinct)
//   crc_disagree    the first tensor chunk's crc32 no longer combines from its block CRCs
//   deflate_trailing the first compressed extent is copied to the end of its data file with four
//                   bytes after its zlib stream (crc32 and sizes updated to match)
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "shardpoint/codec.hpp"
#include "shardpoint/error.hpp"
#include "shardpoint/metadata_codec.hpp"

using namespace shardpoint;

namespace {

EntryMeta *first_tensor(Metadata &md, size_t min_chunks) {
    for (auto &e : md.entries)
        if (e.kind == EntryKind::tensor && !e.shape.empty() && e.chunks.size() >= min_chunks) return &e;
    throw std::runtime_error("the checkpoint has no tensor with " + std::to_string(min_chunks) + " chunks");
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: make_bad_metadata DIR VARIANT\n");
        return 2;
    }
    const std::string path = std::string(argv[1]) + "/" + metadata_file_name;
    const std::string variant = argv[2];
    try {
        std::ifstream in(path, std::ios::binary);
        std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        Metadata md = decode_metadata(bytes.data(), bytes.size());

        if (variant == "path_parent") {
            md.files.at(0).name = "../x";
        } else if (variant == "path_absolute") {
            md.files.at(0).name = "/etc/passwd";
        } else if (variant == "offset_beyond") {
            Extent &e = first_tensor(md, 1)->chunks[0].extent;
            e.offset = md.files.at(e.file).size + 4096;
        } else if (variant == "file_index") {
            first_tensor(md, 1)->chunks[0].extent.file = 99;
        } else if (variant == "chunk_outside") {
            EntryMeta *t = first_tensor(md, 1);
            t->chunks[0].box.offsets[0] += t->shape[0];
        } else if (variant == "overlap") {
            EntryMeta *t = first_tensor(md, 2);
            // Same sizes (so lengths stay consistent), shifted halfway into the first chunk.
            t->chunks[1].box.offsets = t->chunks[0].box.offsets;
            t->chunks[1].box.offsets[0] += t->chunks[0].box.sizes[0] / 2;
        } else if (variant == "too_many_dims") {
            EntryMeta *t = first_tensor(md, 1);
            t->shape.resize(33, 1);
            for (auto &c : t->chunks) {
                c.box.offsets.resize(33, 0);
                c.box.sizes.resize(33, 1);
            }
        } else if (variant == "unknown_dtype") {
            first_tensor(md, 1)->dtype = DType(40);
        } else if (variant == "duplicate") {
            md.entries.insert(md.entries.begin(), md.entries.at(0));
        } else if (variant == "nul_file_name") {
            md.files.at(0).name = std::string("x\0/../../outside", 16);
        } else if (variant == "nul_fqn") {
            if (md.entries.size() < 3) throw std::runtime_error("nul_fqn needs three entries");
            md.entries[0].fqn = "a";
            md.entries[1].fqn = "b";
            md.entries[2].fqn = std::string("b\0x", 3);
        } else if (variant == "crc_disagree") {
            first_tensor(md, 1)->chunks[0].extent.crc32 ^= 1u;
        } else if (variant == "deflate_trailing") {
            Extent *z = nullptr;
            for (auto &e : md.entries)
                for (auto &c : e.chunks)
                    if (!z && c.extent.transform == Transform::deflate && c.extent.stored_length > 0) z = &c.extent;
            if (!z) throw std::runtime_error("the checkpoint has no compressed extent");
            const std::string data = std::string(argv[1]) + "/" + md.files.at(z->file).name;
            std::fstream f(data, std::ios::binary | std::ios::in | std::ios::out);
            std::vector<char> stored(z->stored_length);
            f.seekg(std::streamoff(z->offset));
            f.read(stored.data(), std::streamsize(stored.size()));
            stored.insert(stored.end(), {0, 0, 0, 0});
            f.seekp(0, std::ios::end);
            const uint64_t at = uint64_t(f.tellp());
            f.write(stored.data(), std::streamsize(stored.size()));
            if (!f) throw std::runtime_error("cannot extend " + data);
            z->offset = at;
            z->stored_length = stored.size();
            z->crc32 = crc32_of(stored.data(), stored.size());
            md.files.at(z->file).size = std::max(md.files.at(z->file).size, at + stored.size());
        } else if (variant != "major3") {
            std::fprintf(stderr, "make_bad_metadata: unknown variant '%s'\n", variant.c_str());
            return 2;
        }

        std::vector<unsigned char> out = encode_metadata(md);
        if (variant == "major3") {
            const uint16_t major = 3;
            std::memcpy(out.data() + 8, &major, 2);
            const uint32_t crc = crc32_of(out.data(), 28);
            std::memcpy(out.data() + 28, &crc, 4);
        }
        std::ofstream o(path, std::ios::binary | std::ios::trunc);
        o.write(reinterpret_cast<const char *>(out.data()), std::streamsize(out.size()));
        if (!o) throw std::runtime_error("cannot write " + path);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "make_bad_metadata: %s\n", e.what());
        return 1;
    }
    return 0;
}
