// Encoding and validating the metadata file. Everything read here is untrusted input.
#include "shardpoint/metadata_codec.hpp"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "schema_convert.hpp"
#include "shardpoint.capnp.h"
#include "shardpoint/codec.hpp"
#include "shardpoint/error.hpp"

namespace shardpoint {

namespace {

constexpr unsigned char magic[8] = {'S', 'H', 'R', 'D', 'P', 'N', 'T', '\n'};
constexpr uint32_t max_ndim = 32;
constexpr uint64_t max_numel = (uint64_t(1) << 59) - 1;  // so that numel * itemsize (<= 16) < 2^63
constexpr uint32_t max_world_size = 0x7fffffffu;         // ranks are int32_t in the C ABI

void put_u16(unsigned char *p, uint16_t v) { std::memcpy(p, &v, 2); }
void put_u32(unsigned char *p, uint32_t v) { std::memcpy(p, &v, 4); }
void put_u64(unsigned char *p, uint64_t v) { std::memcpy(p, &v, 8); }
uint16_t get_u16(const unsigned char *p) { uint16_t v; std::memcpy(&v, p, 2); return v; }
uint32_t get_u32(const unsigned char *p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
uint64_t get_u64(const unsigned char *p) { uint64_t v; std::memcpy(&v, p, 8); return v; }


Dims read_dims(capnp::List<uint64_t>::Reader list) {
    Dims d(list.size());
    for (unsigned i = 0; i < list.size(); ++i) d[i] = list[i];
    return d;
}

[[noreturn]] void bad(const std::string &what) { throw Error(Code::format, "corrupt metadata: " + what); }

// text_of (schema_convert.hpp) reads all of a Text, embedded NULs included, so that the checks
// below see what a C caller would otherwise see cut short.
bool has_nul(const std::string &s) { return s.find('\0') != std::string::npos; }
// `s` with NUL bytes shown as \0, for messages (which C callers read as NUL-terminated).
std::string printable(const std::string &s) {
    std::string out;
    for (char c : s) out += c == '\0' ? std::string("\\0") : std::string(1, c);
    return out;
}
void refuse_nul(const std::string &s, const std::string &what) {
    if (has_nul(s)) bad(what + " '" + printable(s) + "' contains a NUL byte");
}

bool is_save_id(const std::string &s) {
    if (s.size() != 32) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

// The CRC-32 of a raw extent's bytes from its block CRCs (FORMAT.md 4): every block but the
// last is `block_size` long, so one shift operator serves them all.
uint32_t combined_block_crc(const std::vector<uint32_t> &blocks, uint64_t stored_length, uint32_t block_size) {
    uint32_t crc = 0;
    const uint32_t shift = crc32_shift_operator(block_size);
    for (size_t k = 0; k < blocks.size(); ++k) {
        uint64_t len = std::min<uint64_t>(block_size, stored_length - uint64_t(k) * block_size);
        crc = len == block_size ? crc32_combine_with(crc, blocks[k], shift) : crc32_combine_of(crc, blocks[k], len);
    }
    return crc;
}

// Rules 9 and 10 for a block-compressed extent (FORMAT.md 3, 4): one stored length and one CRC
// per block of raw bytes, each block stored in at most its raw length, back to back, the whole
// CRC the blocks' combined.
void check_block_compressed(const Extent &e, uint32_t bs, uint32_t itemsize, const std::string &fqn) {
    const uint64_t want = (e.raw_length + bs - 1) / bs;
    if (e.block_stored_length.size() != want || e.block_crc32.size() != want)
        bad("entry '" + fqn + "' has " + std::to_string(e.block_stored_length.size()) + " block lengths and " +
            std::to_string(e.block_crc32.size()) + " block checksums, expected " + std::to_string(want) + " of each");
    if (e.shuffle_width != 0 && (e.shuffle_width != itemsize || itemsize < 2))
        bad("entry '" + fqn + "' has shuffle width " + std::to_string(e.shuffle_width) + " for elements of " +
            std::to_string(itemsize) + " bytes");
    uint64_t total = 0;
    uint32_t crc = 0;
    for (size_t k = 0; k < want; ++k) {
        const uint64_t raw = std::min<uint64_t>(bs, e.raw_length - uint64_t(k) * bs);
        const uint32_t len = e.block_stored_length[k];
        if (len == 0 || len > raw)
            bad("block " + std::to_string(k) + " of entry '" + fqn + "' claims " + std::to_string(len) + " stored bytes for " +
                std::to_string(raw) + " raw ones");
        total += len;
        crc = crc32_combine_of(crc, e.block_crc32[k], len);
    }
    if (total != e.stored_length)
        bad("the blocks of entry '" + fqn + "' add up to " + std::to_string(total) + " stored bytes, the extent has " +
            std::to_string(e.stored_length));
    if (crc != e.crc32) bad("the block checksums of entry '" + fqn + "' disagree with its CRC-32");
}

}  // namespace

void check_extent(const Extent &e, const Metadata &md, const std::string &fqn, uint32_t itemsize) {
    if (is_block_compressed(e.transform) && md.storage.format_major < 2)
        bad("entry '" + fqn + "' uses block compression, which needs format 2, in a format " +
            std::to_string(md.storage.format_major) + " file");
    if (e.writer_rank >= md.storage.world_size)
        bad("entry '" + fqn + "' was written by rank " + std::to_string(e.writer_rank) + " of a world of " +
            std::to_string(md.storage.world_size));
    if (e.file >= md.files.size()) bad("entry '" + fqn + "' names data file #" + std::to_string(e.file) + " of " + std::to_string(md.files.size()));
    const DataFileMeta &file = md.files[e.file];
    if (e.offset > file.size || e.stored_length > file.size - e.offset)
        bad("entry '" + fqn + "' lies beyond the end of data file '" + file.name + "'");
    const uint32_t bs = md.storage.block_size;
    if (is_block_compressed(e.transform)) {
        check_block_compressed(e, bs, itemsize, fqn);
        return;
    }
    if (!e.block_stored_length.empty() || e.shuffle_width != 0)
        bad("entry '" + fqn + "' has block lengths or a shuffle without block compression");
    if (e.transform == Transform::none) {
        if (e.stored_length != e.raw_length) bad("entry '" + fqn + "' has stored length != raw length without a transform");
        uint64_t want = (e.stored_length + bs - 1) / bs;
        if (e.block_crc32.size() != want)
            bad("entry '" + fqn + "' has " + std::to_string(e.block_crc32.size()) + " block checksums, expected " + std::to_string(want));
        // crc32 and the block CRCs must agree, so that load (which checks blocks) and verify agree.
        if (combined_block_crc(e.block_crc32, e.stored_length, bs) != e.crc32)
            bad("the block checksums of entry '" + fqn + "' disagree with its CRC-32");
    } else if (!e.block_crc32.empty()) {
        bad("entry '" + fqn + "' has block checksums on a compressed extent");
    } else if (e.raw_length / 1032 > e.stored_length + 1) {  // FORMAT.md 3, rule 9
        // Deflate cannot expand more than about 1032:1; a larger claim would only make readers
        // allocate memory for bytes that cannot be there.
        bad("entry '" + fqn + "' claims " + std::to_string(e.raw_length) + " raw bytes from " +
            std::to_string(e.stored_length) + " compressed ones");
    }
}

namespace {

// `itemsize`: the entry's element size (1 for bytes entries).
Extent read_extent(schema::Extent::Reader r, const Metadata &md, const std::string &fqn, uint32_t itemsize) {
    Extent e;
    if (!read_extent_fields(r, e)) bad("entry '" + fqn + "' uses an unknown transform");
    check_extent(e, md, fqn, itemsize);
    return e;
}

}  // namespace

bool is_plain_file_name(const std::string &name) {
    return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
           name.find('\\') == std::string::npos && name.find('\0') == std::string::npos &&
           name != metadata_file_name;
}

std::vector<unsigned char> encode_metadata(const Metadata &md, uint64_t max_body) {
    capnp::MallocMessageBuilder message;
    auto root = message.initRoot<schema::Checkpoint>();
    auto storage = root.initStorage();
    storage.setCheckpointId(as_text(md.storage.checkpoint_id));
    storage.setSaveId(as_text(md.storage.save_id));
    storage.setWorldSize(md.storage.world_size);
    storage.setLibraryVersion(as_text(md.storage.library_version));
    storage.setCreatedUnixNs(md.storage.created_unix_ns);
    storage.setAlignment(md.storage.alignment);
    storage.setBlockSize(md.storage.block_size);

    auto files = root.initFiles(unsigned(md.files.size()));
    for (size_t i = 0; i < md.files.size(); ++i) {
        files[unsigned(i)].setName(as_text(md.files[i].name));
        files[unsigned(i)].setSize(md.files[i].size);
        files[unsigned(i)].setRank(md.files[i].rank);
    }
    auto entries = root.initEntries(unsigned(md.entries.size()));
    for (size_t i = 0; i < md.entries.size(); ++i) {
        const EntryMeta &e = md.entries[i];
        auto eb = entries[unsigned(i)];
        eb.setFqn(as_text(e.fqn));
        if (e.kind == EntryKind::bytes) {
            build_extent(eb.initBytes(), e.chunks.at(0).extent);
            continue;
        }
        auto t = eb.initTensor();
        t.setDtype(static_cast<schema::DType>(int32_t(e.dtype)));
        set_dims(t.initShape(unsigned(e.shape.size())), e.shape);
        auto chunks = t.initChunks(unsigned(e.chunks.size()));
        for (size_t c = 0; c < e.chunks.size(); ++c) {
            auto cb = chunks[unsigned(c)];
            set_dims(cb.initOffsets(unsigned(e.shape.size())), e.chunks[c].box.offsets);
            set_dims(cb.initSizes(unsigned(e.shape.size())), e.chunks[c].box.sizes);
            build_extent(cb.initExtent(), e.chunks[c].extent);
        }
    }
    auto framework = root.initFrameworkMetadata(unsigned(md.framework.size()));
    for (size_t i = 0; i < md.framework.size(); ++i) {
        framework[unsigned(i)].setKey(as_text(md.framework[i].first));
        framework[unsigned(i)].setValue(as_text(md.framework[i].second));
    }
    auto user = root.initUserMetadata(unsigned(md.user.size()));
    for (size_t i = 0; i < md.user.size(); ++i) {
        user[unsigned(i)].setKey(as_text(md.user[i].first));
        user[unsigned(i)].setValue(as_text(md.user[i].second));
    }

    kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
    auto body = words.asBytes();
    if (body.size() > max_body) {
        uint64_t chunks = 0;
        for (const EntryMeta &e : md.entries) chunks += e.chunks.size();
        throw Error(Code::range, "the checkpoint's metadata would be " + std::to_string(body.size()) + " bytes (" +
                                     std::to_string(chunks) + " chunks), over the " + std::to_string(max_body) +
                                     " that readers accept (FORMAT.md 3): save fewer, larger chunks");
    }
    std::vector<unsigned char> out(metadata_header_size + body.size());
    std::memcpy(out.data(), magic, 8);
    // The lowest version that holds the checkpoint: 1.x readers read every checkpoint saved
    // without block compression.
    bool blocks = false;
    for (const EntryMeta &e : md.entries)
        for (const ChunkMeta &c : e.chunks) blocks = blocks || is_block_compressed(c.extent.transform);
    put_u16(out.data() + 8, uint16_t(blocks ? 2 : 1));
    put_u16(out.data() + 10, uint16_t(blocks ? format_2_minor : format_1_minor));
    put_u32(out.data() + 12, 0);
    put_u64(out.data() + 16, body.size());
    put_u32(out.data() + 24, crc32_of(body.begin(), body.size()));
    put_u32(out.data() + 28, crc32_of(out.data(), 28));
    std::memcpy(out.data() + metadata_header_size, body.begin(), body.size());
    return out;
}

Metadata decode_metadata(const unsigned char *data, size_t len) {
    if (len < metadata_header_size)
        throw Error(Code::truncated, "metadata file is truncated: " + std::to_string(len) + " bytes, the header alone is 32");
    if (std::memcmp(data, magic, 8) != 0) throw Error(Code::format, "not a shardpoint metadata file (bad magic)");
    if (crc32_of(data, 28) != get_u32(data + 28)) throw Error(Code::checksum, "metadata header fails its CRC-32");
    uint32_t major = get_u16(data + 8), minor = get_u16(data + 10);
    if (major < 1 || major > format_major_max)
        throw Error(Code::version, "checkpoint format version " + std::to_string(major) + "." + std::to_string(minor) +
                                       " is not supported (this library reads major versions 1 to " +
                                       std::to_string(format_major_max) + ")");
    uint64_t body_len = get_u64(data + 16);
    if (body_len > metadata_max_body || body_len % 8 != 0) throw Error(Code::format, "corrupt metadata: implausible length " + std::to_string(body_len));
    if (body_len > len - metadata_header_size)
        throw Error(Code::truncated, "metadata file is truncated: header announces " + std::to_string(body_len) + " bytes, " +
                                         std::to_string(len - metadata_header_size) + " present");
    if (body_len < len - metadata_header_size) throw Error(Code::format, "corrupt metadata: trailing bytes after the message");
    const unsigned char *body = data + metadata_header_size;
    if (crc32_of(body, body_len) != get_u32(data + 24)) throw Error(Code::checksum, "metadata fails its CRC-32");

    if (body_len == 0) throw Error(Code::format, "corrupt metadata: the message is empty");
    // Cap'n Proto reads words in place; copy into aligned storage first.
    std::vector<capnp::word> words(body_len / 8);
    std::memcpy(words.data(), body, body_len);
    Metadata md;
    md.storage.format_major = major;
    md.storage.format_minor = minor;
    try {
        capnp::ReaderOptions options;
        options.traversalLimitInWords = body_len / 8 * 4 + 1024;  // no amplification beyond 4x
        options.nestingLimit = 16;
        capnp::FlatArrayMessageReader reader(kj::ArrayPtr<const capnp::word>(words.data(), words.size()), options);
        // The message must fill the body: bytes after its last segment are not part of any format.
        if (reader.getEnd() != words.data() + words.size())
            bad(std::to_string((words.data() + words.size() - reader.getEnd()) * 8) +
                " bytes follow the message's last segment inside the body");
        auto root = reader.getRoot<schema::Checkpoint>();
        auto st = root.getStorage();
        md.storage.checkpoint_id = text_of(st.getCheckpointId());
        refuse_nul(md.storage.checkpoint_id, "the checkpoint id");
        md.storage.save_id = text_of(st.getSaveId());
        if (!is_save_id(md.storage.save_id))
            bad("save id '" + printable(md.storage.save_id) + "' is not 32 lowercase hexadecimal digits");
        md.storage.world_size = st.getWorldSize();
        if (md.storage.world_size < 1 || md.storage.world_size > max_world_size)
            bad("world size " + std::to_string(md.storage.world_size) + " is not between 1 and 2^31 - 1");
        md.storage.library_version = text_of(st.getLibraryVersion());
        refuse_nul(md.storage.library_version, "the library version");
        md.storage.created_unix_ns = st.getCreatedUnixNs();
        md.storage.alignment = st.getAlignment();
        md.storage.block_size = st.getBlockSize();
        uint32_t bs = md.storage.block_size;
        if (bs < 512 || (bs & (bs - 1)) != 0) bad("block size " + std::to_string(bs) + " is not a power of two >= 512");
        uint32_t align = md.storage.alignment;
        if (align == 0 || (align & (align - 1)) != 0) bad("alignment " + std::to_string(align) + " is not a power of two");

        std::set<std::string> file_names;
        for (auto f : root.getFiles()) {
            DataFileMeta file{text_of(f.getName()), f.getSize(), f.getRank()};
            if (!is_plain_file_name(file.name))
                throw Error(Code::path, "metadata names data file '" + printable(file.name) +
                                            "', which is not a plain file name inside the checkpoint directory");
            if (!file_names.insert(file.name).second) bad("data file '" + file.name + "' is listed twice");
            if (file.rank >= md.storage.world_size)
                bad("data file '" + file.name + "' was written by rank " + std::to_string(file.rank) + " of a world of " +
                    std::to_string(md.storage.world_size));
            md.files.push_back(std::move(file));
        }
        auto entries = root.getEntries();
        md.entries.reserve(entries.size());
        // One budget for the whole file, so that many irregular entries cannot add up.
        uint64_t overlap_budget = overlap_check_budget(0);
        for (auto e : entries) {
            EntryMeta entry;
            entry.fqn = text_of(e.getFqn());
            if (entry.fqn.empty()) bad("an entry has an empty name");
            refuse_nul(entry.fqn, "entry name");
            if (!md.entries.empty() && !(md.entries.back().fqn < entry.fqn))
                bad("entries are not sorted or '" + entry.fqn + "' appears twice");
            if (e.isBytes()) {
                entry.kind = EntryKind::bytes;
                entry.dtype = DType::u8;
                ChunkMeta chunk;
                chunk.extent = read_extent(e.getBytes(), md, entry.fqn, 1);
                if (chunk.extent.raw_length > max_numel)
                    throw Error(Code::shape, "entry '" + entry.fqn + "' is too large: " + std::to_string(chunk.extent.raw_length) +
                                                 " bytes, the limit is 2^59 - 1");
                entry.shape = {chunk.extent.raw_length};
                chunk.box = Box{{0}, {chunk.extent.raw_length}};
                entry.chunks.push_back(std::move(chunk));
                md.entries.push_back(std::move(entry));
                continue;
            }
            if (!e.isTensor()) bad("entry '" + entry.fqn + "' is of an unknown kind");
            auto t = e.getTensor();
            auto dt = int32_t(t.getDtype());
            if (!dtype_valid(dt)) bad("entry '" + entry.fqn + "' has unknown dtype " + std::to_string(dt));
            entry.dtype = DType(dt);
            entry.shape = read_dims(t.getShape());
            if (entry.shape.size() > max_ndim) throw Error(Code::shape, "entry '" + entry.fqn + "' has more than 32 dimensions");
            // Every dimension and the element count are < 2^59 (FORMAT.md 3, rule 9): a zero
            // dimension does not excuse a huge one.
            for (size_t d = 0; d < entry.shape.size(); ++d)
                if (entry.shape[d] > max_numel)
                    throw Error(Code::shape, "entry '" + entry.fqn + "' is too large: dimension " + std::to_string(d) + " is " +
                                                 std::to_string(entry.shape[d]) + ", the limit is 2^59 - 1");
            uint64_t numel = 0;
            try {
                numel = product(entry.shape);
            } catch (const Error &) {
                throw Error(Code::shape, "entry '" + entry.fqn + "' is too large: its element count overflows 64 bits");
            }
            if (numel > max_numel)
                throw Error(Code::shape, "entry '" + entry.fqn + "' is too large: " + std::to_string(numel) +
                                             " elements, the limit is 2^59 - 1");
            uint64_t itemsize = dtype_size(dt);
            for (auto c : t.getChunks()) {
                ChunkMeta chunk;
                chunk.box.offsets = read_dims(c.getOffsets());
                chunk.box.sizes = read_dims(c.getSizes());
                if (!box_inside(chunk.box, entry.shape))
                    throw Error(Code::shape, "metadata of entry '" + entry.fqn + "' has a chunk outside the tensor's shape");
                chunk.extent = read_extent(c.getExtent(), md, entry.fqn, uint32_t(itemsize));
                if (chunk.extent.raw_length != product(chunk.box.sizes) * itemsize)
                    bad("a chunk of entry '" + entry.fqn + "' has raw length " + std::to_string(chunk.extent.raw_length) +
                        ", expected " + std::to_string(product(chunk.box.sizes) * itemsize));
                entry.chunks.push_back(std::move(chunk));
            }
            std::vector<BoxRef> boxes;
            boxes.reserve(entry.chunks.size());
            for (auto &c : entry.chunks) boxes.push_back(ref(c.box));
            std::pair<long, long> overlap;
            try {
                overlap_budget += overlap_check_allowance(boxes.size());
                overlap = find_overlap(boxes, overlap_budget);
            } catch (const Error &err) {
                throw Error(err.code(), "entry '" + entry.fqn + "': " + err.what());
            }
            if (overlap.first >= 0)
                bad("entry '" + entry.fqn + "' has overlapping chunks (#" + std::to_string(overlap.first) + " and #" +
                    std::to_string(overlap.second) + ")");
            md.entries.push_back(std::move(entry));
        }
        for (auto kv : root.getFrameworkMetadata()) {
            md.framework.emplace_back(text_of(kv.getKey()), text_of(kv.getValue()));
            refuse_nul(md.framework.back().first, "framework metadata key");
            refuse_nul(md.framework.back().second, "the value of framework metadata key '" + printable(md.framework.back().first) + "'");
        }
        for (auto kv : root.getUserMetadata()) {
            md.user.emplace_back(text_of(kv.getKey()), text_of(kv.getValue()));
            refuse_nul(md.user.back().first, "user metadata key");
            refuse_nul(md.user.back().second, "the value of user metadata key '" + printable(md.user.back().first) + "'");
        }
    } catch (const kj::Exception &e) {
        throw Error(Code::format, std::string("corrupt metadata: ") + e.getDescription().cStr());
    }
    return md;
}

}  // namespace shardpoint
