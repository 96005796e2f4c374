// The metadata file: round trip of a rich Metadata, every validation error, and robustness
// against random corruption.
#include <chrono>
#include <functional>
#include <random>

#include <capnp/any.h>
#include <capnp/message.h>
#include <capnp/serialize.h>

#include "shardpoint.capnp.h"
#include <unistd.h>

#include "shardpoint/checkpoint_writer.hpp"
#include "shardpoint/codec.hpp"
#include "shardpoint/metadata_codec.hpp"
#include "test_util.hpp"

using namespace shardpoint;

namespace {

constexpr uint32_t kBlock = 4096;

// The extent CRC that block CRCs combine to (FORMAT.md 4), as a decoder must find it.
uint32_t crc_of_blocks(const std::vector<uint32_t> &blocks, uint64_t len, uint32_t block_size) {
    uint32_t crc = 0;
    for (size_t k = 0; k < blocks.size(); ++k) crc = crc32_combine_of(crc, blocks[k], std::min<uint64_t>(block_size, len - k * block_size));
    return crc;
}

Extent raw_extent(uint32_t file, uint64_t offset, uint64_t len, uint32_t writer) {
    Extent e;
    e.file = file;
    e.offset = offset;
    e.stored_length = e.raw_length = len;
    e.crc32 = 0x1000u + uint32_t(len);
    e.transform = Transform::none;
    for (uint64_t b = 0; b < len; b += kBlock) e.block_crc32.push_back(uint32_t(b * 31 + len));
    e.crc32 = crc_of_blocks(e.block_crc32, len, kBlock);
    e.writer_rank = writer;
    return e;
}

EntryMeta bytes_entry(const std::string &fqn, Extent extent) {
    EntryMeta e;
    e.fqn = fqn;
    e.kind = EntryKind::bytes;
    e.dtype = DType::u8;
    e.shape = {extent.raw_length};
    e.chunks.push_back(ChunkMeta{Box{{0}, {extent.raw_length}}, std::move(extent)});
    return e;
}

EntryMeta tensor_entry(const std::string &fqn, DType dtype, Dims shape) {
    EntryMeta e;
    e.fqn = fqn;
    e.kind = EntryKind::tensor;
    e.dtype = dtype;
    e.shape = std::move(shape);
    return e;
}

// A valid metadata with every kind of entry, several files, a compressed extent, a partly saved
// tensor, a 0-d tensor, multi-block extents and non-ASCII text.
Metadata rich_metadata() {
    Metadata md;
    md.storage.checkpoint_id = "run-7/step-1200";
    md.storage.save_id = "0123456789abcdef0123456789abcdef";
    md.storage.world_size = 4;
    md.storage.library_version = "0.1.0";
    md.storage.created_unix_ns = 1732842000123456789;
    md.storage.alignment = 4096;
    md.storage.block_size = kBlock;
    md.files = {{"data-0123456789abcdef0123456789abcdef-r00000.bin", 1u << 20, 0},
                {"data-0123456789abcdef0123456789abcdef-r00001.bin", 9u << 20, 1},
                {"data-0123456789abcdef0123456789abcdef-r00003.bin", 8192, 3}};

    md.entries.push_back(bytes_entry("a.blob", raw_extent(0, 0, 100, 0)));
    md.entries.push_back(bytes_entry("b.empty_blob", raw_extent(0, 4096, 0, 0)));

    EntryMeta scalar = tensor_entry("c.step", DType::i64, {});
    scalar.chunks.push_back(ChunkMeta{Box{{}, {}}, raw_extent(2, 0, 8, 3)});
    md.entries.push_back(scalar);

    EntryMeta w = tensor_entry("d.weight", DType::f32, {8, 6});
    w.chunks.push_back(ChunkMeta{Box{{0, 0}, {4, 6}}, raw_extent(0, 8192, 96, 0)});
    w.chunks.push_back(ChunkMeta{Box{{4, 0}, {4, 6}}, raw_extent(2, 4096, 96, 3)});
    md.entries.push_back(w);

    EntryMeta z = tensor_entry("e.compressed", DType::bf16, {10});
    Extent ze;
    ze.file = 0;
    ze.offset = 12288;
    ze.stored_length = 17;
    ze.raw_length = 20;
    ze.crc32 = 0xdeadbeef;
    ze.transform = Transform::deflate;
    ze.writer_rank = 0;
    z.chunks.push_back(ChunkMeta{Box{{0}, {10}}, ze});
    md.entries.push_back(z);

    EntryMeta partial = tensor_entry("f.partial", DType::u8, {100, 3});
    partial.chunks.push_back(ChunkMeta{Box{{0, 0}, {10, 3}}, raw_extent(0, 16384, 30, 0)});
    md.entries.push_back(partial);

    EntryMeta big = tensor_entry("g.big", DType::f64, {1024, 1024});  // 8 MiB: 2048 block CRCs
    big.chunks.push_back(ChunkMeta{Box{{0, 0}, {1024, 1024}}, raw_extent(1, 4096, 8u << 20, 1)});
    md.entries.push_back(big);

    EntryMeta empty = tensor_entry("h.empty", DType::f16, {0, 4});
    md.entries.push_back(empty);

    EntryMeta uni = tensor_entry("i.\xc3\xbc" "n\xc3\xaf" "c\xc3\xb8" "d\xc3\xa9", DType::complex128, {2});
    uni.chunks.push_back(ChunkMeta{Box{{0}, {2}}, raw_extent(0, 20480, 32, 0)});
    md.entries.push_back(uni);

    md.user = {{"step", "1200"}, {"\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87", "\xd0\xb7\xd0\xbd\xd0\xb0\xd1\x87"}, {"empty", ""}};
    md.framework = {{"torch.dcp", "{\"planner_data\": {\"a.b\": [\"a\", \"b\"]}}"}, {"jax", ""}};
    return md;
}

void expect_same_extent(const Extent &a, const Extent &b, const std::string &where) {
    EXPECT_EQ(a.file, b.file) << where;
    EXPECT_EQ(a.offset, b.offset) << where;
    EXPECT_EQ(a.stored_length, b.stored_length) << where;
    EXPECT_EQ(a.raw_length, b.raw_length) << where;
    EXPECT_EQ(a.crc32, b.crc32) << where;
    EXPECT_EQ(a.transform, b.transform) << where;
    EXPECT_EQ(a.block_crc32, b.block_crc32) << where;
    EXPECT_EQ(a.block_stored_length, b.block_stored_length) << where;
    EXPECT_EQ(a.shuffle_width, b.shuffle_width) << where;
    EXPECT_EQ(a.writer_rank, b.writer_rank) << where;
}

void expect_same_metadata(const Metadata &a, const Metadata &b) {
    EXPECT_EQ(a.storage.checkpoint_id, b.storage.checkpoint_id);
    EXPECT_EQ(a.storage.save_id, b.storage.save_id);
    EXPECT_EQ(a.storage.world_size, b.storage.world_size);
    EXPECT_EQ(a.storage.library_version, b.storage.library_version);
    EXPECT_EQ(a.storage.created_unix_ns, b.storage.created_unix_ns);
    EXPECT_EQ(a.storage.alignment, b.storage.alignment);
    EXPECT_EQ(a.storage.block_size, b.storage.block_size);
    EXPECT_EQ(a.storage.format_major, b.storage.format_major);
    EXPECT_EQ(a.storage.format_minor, b.storage.format_minor);
    ASSERT_EQ(a.files.size(), b.files.size());
    for (size_t i = 0; i < a.files.size(); ++i) {
        EXPECT_EQ(a.files[i].name, b.files[i].name);
        EXPECT_EQ(a.files[i].size, b.files[i].size);
        EXPECT_EQ(a.files[i].rank, b.files[i].rank);
    }
    ASSERT_EQ(a.entries.size(), b.entries.size());
    for (size_t i = 0; i < a.entries.size(); ++i) {
        const EntryMeta &x = a.entries[i], &y = b.entries[i];
        EXPECT_EQ(x.fqn, y.fqn);
        EXPECT_EQ(x.kind, y.kind) << x.fqn;
        EXPECT_EQ(x.dtype, y.dtype) << x.fqn;
        EXPECT_EQ(x.shape, y.shape) << x.fqn;
        ASSERT_EQ(x.chunks.size(), y.chunks.size()) << x.fqn;
        for (size_t c = 0; c < x.chunks.size(); ++c) {
            EXPECT_EQ(x.chunks[c].box.offsets, y.chunks[c].box.offsets) << x.fqn;
            EXPECT_EQ(x.chunks[c].box.sizes, y.chunks[c].box.sizes) << x.fqn;
            expect_same_extent(x.chunks[c].extent, y.chunks[c].extent, x.fqn + " chunk " + std::to_string(c));
        }
    }
    EXPECT_EQ(a.user, b.user);
    EXPECT_EQ(a.framework, b.framework);
}

Metadata decode(const std::vector<unsigned char> &bytes) { return decode_metadata(bytes.data(), bytes.size()); }

uint32_t get32(const std::vector<unsigned char> &b, size_t at) {
    uint32_t v;
    std::memcpy(&v, b.data() + at, 4);
    return v;
}
void put16(std::vector<unsigned char> &b, size_t at, uint16_t v) { std::memcpy(b.data() + at, &v, 2); }
void put32(std::vector<unsigned char> &b, size_t at, uint32_t v) { std::memcpy(b.data() + at, &v, 4); }
void put64(std::vector<unsigned char> &b, size_t at, uint64_t v) { std::memcpy(b.data() + at, &v, 8); }

// Recomputes both CRCs so that a change reaches the checks behind them.
void fix_crcs(std::vector<unsigned char> &b) {
    uint64_t body_len;
    std::memcpy(&body_len, b.data() + 16, 8);
    if (b.size() >= 32 + body_len) put32(b, 24, crc32_of(b.data() + 32, body_len));
    put32(b, 28, crc32_of(b.data(), 28));
}

}  // namespace

TEST(MetadataCodec, RoundTripOfRichMetadata) {
    Metadata md = rich_metadata();
    std::vector<unsigned char> bytes = encode_metadata(md);
    ASSERT_GE(bytes.size(), metadata_header_size);
    EXPECT_EQ(std::memcmp(bytes.data(), "SHRDPNT\n", 8), 0);
    uint16_t major, minor;
    std::memcpy(&major, bytes.data() + 8, 2);
    std::memcpy(&minor, bytes.data() + 10, 2);
    EXPECT_EQ(major, 1);
    EXPECT_EQ(minor, 2);  // 1.1: frameworkMetadata; 1.2: short extents packed
    uint64_t body_len;
    std::memcpy(&body_len, bytes.data() + 16, 8);
    EXPECT_EQ(body_len + 32, bytes.size());
    EXPECT_EQ(get32(bytes, 24), crc32_of(bytes.data() + 32, body_len));
    EXPECT_EQ(get32(bytes, 28), crc32_of(bytes.data(), 28));

    Metadata back = decode(bytes);
    expect_same_metadata(md, back);
    // Encoding is deterministic: the decoded metadata encodes to the same bytes.
    EXPECT_EQ(encode_metadata(back), bytes);
    ASSERT_NE(back.find("d.weight"), nullptr);
    EXPECT_EQ(back.find("d.weight")->chunks.size(), 2u);
    EXPECT_EQ(back.find("zzz"), nullptr);
}

TEST(MetadataCodec, EmptyCheckpointRoundTrips) {
    Metadata md;
    md.storage.save_id = "ffffffffffffffffffffffffffffffff";
    expect_same_metadata(md, decode(encode_metadata(md)));
}

// A writer never produces metadata its readers refuse: over the limit, encoding fails (and so
// the save, before anything is committed) with a clear error instead of writing garbage.
TEST(MetadataCodecError, MetadataOverTheLimitIsNotEncoded) {
    Metadata md = rich_metadata();
    const uint64_t body = encode_metadata(md).size() - metadata_header_size;
    EXPECT_EQ(encode_metadata(md, body).size(), body + metadata_header_size);  // exactly at the limit
    try {
        encode_metadata(md, body - 8);
        FAIL() << "metadata over the limit was encoded";
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), Code::range);
        EXPECT_NE(std::string(e.what()).find("readers accept"), std::string::npos) << e.what();
    }
}

TEST(MetadataCodec, NewerMinorVersionIsRead) {
    auto bytes = encode_metadata(rich_metadata());
    put16(bytes, 10, 7);
    fix_crcs(bytes);
    Metadata md = decode(bytes);
    EXPECT_EQ(md.storage.format_minor, 7u);
    EXPECT_EQ(md.entries.size(), rich_metadata().entries.size());
}

TEST(MetadataCodecError, BadMagic) {
    auto bytes = encode_metadata(rich_metadata());
    bytes[3] = 'X';
    EXPECT_SP_ERROR(decode(bytes), Code::format, "magic");
}

TEST(MetadataCodecError, HeaderCrc) {
    auto bytes = encode_metadata(rich_metadata());
    bytes[12] ^= 1;  // the flags: covered by the header CRC only
    EXPECT_SP_ERROR(decode(bytes), Code::checksum, "header");
}

TEST(MetadataCodecError, BodyCrc) {
    auto bytes = encode_metadata(rich_metadata());
    bytes[bytes.size() / 2] ^= 0x40;
    EXPECT_SP_ERROR(decode(bytes), Code::checksum, "CRC-32");
}

TEST(MetadataCodecError, UnsupportedMajorVersion) {
    auto bytes = encode_metadata(rich_metadata());
    put16(bytes, 8, 3);
    put16(bytes, 10, 3);
    fix_crcs(bytes);
    EXPECT_SP_ERROR(decode(bytes), Code::version, "3.3", "not supported", "1 to 2");
}

// Found by the fuzzer: a header announcing an empty body (valid CRCs) was copied through NULL.
TEST(MetadataCodecError, EmptyBodyIsMalformed) {
    auto bytes = encode_metadata(rich_metadata());
    bytes.resize(32);
    put64(bytes, 16, 0);
    fix_crcs(bytes);
    EXPECT_SP_ERROR(decode(bytes), Code::format, "empty");
}

TEST(MetadataCodecError, MajorVersionZero) {
    auto bytes = encode_metadata(rich_metadata());
    put16(bytes, 8, 0);
    fix_crcs(bytes);
    EXPECT_SP_ERROR(decode(bytes), Code::version, "0." + std::to_string(format_1_minor));
}

TEST(MetadataCodecError, TruncatedHeader) {
    auto bytes = encode_metadata(rich_metadata());
    bytes.resize(20);
    EXPECT_SP_ERROR(decode(bytes), Code::truncated, "20 bytes");
    EXPECT_SP_ERROR(decode_metadata(bytes.data(), 0), Code::truncated);
}

TEST(MetadataCodecError, TruncatedBody) {
    auto bytes = encode_metadata(rich_metadata());
    bytes.resize(bytes.size() - 8);
    EXPECT_SP_ERROR(decode(bytes), Code::truncated, "truncated");
}

TEST(MetadataCodecError, TrailingBytes) {
    auto bytes = encode_metadata(rich_metadata());
    bytes.insert(bytes.end(), 8, 0);
    EXPECT_SP_ERROR(decode(bytes), Code::format, "trailing");
}

TEST(MetadataCodecError, BodyLengthNotWholeWords) {
    auto bytes = encode_metadata(rich_metadata());
    uint64_t body_len;
    std::memcpy(&body_len, bytes.data() + 16, 8);
    put64(bytes, 16, body_len - 3);
    fix_crcs(bytes);
    EXPECT_SP_ERROR(decode(bytes), Code::format, "length");
}

TEST(MetadataCodecError, ImplausibleBodyLength) {
    auto bytes = encode_metadata(rich_metadata());
    put64(bytes, 16, uint64_t(1) << 40);
    fix_crcs(bytes);
    EXPECT_SP_ERROR(decode(bytes), Code::format, "implausible");
}

TEST(MetadataCodecError, UnsortedEntries) {
    Metadata md = rich_metadata();
    std::swap(md.entries[2], md.entries[3]);
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "not sorted");
}

TEST(MetadataCodecError, DuplicateEntries) {
    Metadata md = rich_metadata();
    md.entries.insert(md.entries.begin() + 4, md.entries[3]);
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "'d.weight'", "twice");
}

TEST(MetadataCodecError, EmptyEntryName) {
    Metadata md = rich_metadata();
    md.entries.insert(md.entries.begin(), bytes_entry("", raw_extent(0, 0, 4, 0)));
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "empty name");
}

TEST(MetadataCodecError, FileIndexOutOfRange) {
    Metadata md = rich_metadata();
    md.entries[3].chunks[1].extent.file = 3;
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "'d.weight'", "#3");
}

TEST(MetadataCodecError, FileIndexOutOfRangeInBytesEntry) {
    Metadata md = rich_metadata();
    md.entries[0].chunks[0].extent.file = 0xffffffffu;
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "'a.blob'");
}

class NonPlainFileName : public ::testing::TestWithParam<std::string> {};

TEST_P(NonPlainFileName, IsRejectedWithPathError) {
    Metadata md = rich_metadata();
    md.files[1].name = GetParam();
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::path, "'" + GetParam() + "'", "plain file name");
    EXPECT_FALSE(is_plain_file_name(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(MetadataCodecError, NonPlainFileName,
                         ::testing::Values("..", ".", "", "/abs", "/etc/passwd", "a/b", "../escape.bin", "sub/",
                                           "a\\b", "shardpoint.meta"),
                         [](const ::testing::TestParamInfo<std::string> &info) { return "case" + std::to_string(info.index); });

TEST(MetadataCodec, PlainFileNamesAreAccepted) {
    for (std::string name : {"data-x-r00000.bin", "a", "..hidden", "x..y", ".bin", "shardpoint.meta.old"})
        EXPECT_TRUE(is_plain_file_name(name)) << name;
}

TEST(MetadataCodecError, ExtentBeyondFileSize) {
    Metadata md = rich_metadata();
    md.entries[3].chunks[1].extent.offset = 8192 - 95;  // file #2 is 8192 bytes; 96 needed
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "'d.weight'", "beyond the end", md.files[2].name);
}

TEST(MetadataCodecError, ExtentOffsetBeyondFileSize) {
    Metadata md = rich_metadata();
    md.entries[1].chunks[0].extent.offset = (1u << 20) + 1;  // an empty extent, but past the end
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "'b.empty_blob'", "beyond the end");
}

TEST(MetadataCodecError, ExtentLengthWrapsAround) {
    Metadata md = rich_metadata();
    Extent &e = md.entries[0].chunks[0].extent;
    e.offset = 16;
    e.stored_length = e.raw_length = UINT64_MAX - 8;  // offset + length overflows 64 bits
    e.block_crc32.clear();
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "'a.blob'");
}

TEST(MetadataCodecError, ChunkOutsideShape) {
    Metadata md = rich_metadata();
    md.entries[3].chunks[1].box.offsets = {5, 0};  // rows 5..9 of an 8-row tensor
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::shape, "'d.weight'", "outside");
}

TEST(MetadataCodecError, ChunkWithWrongNumberOfDimensions) {
    Metadata md = rich_metadata();
    md.entries[3].chunks[0].box = Box{{0}, {24}};
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::shape, "'d.weight'");
}

TEST(MetadataCodecError, TooManyDimensions) {
    Metadata md = rich_metadata();
    EntryMeta e = tensor_entry("j.deep", DType::u8, Dims(33, 1));
    md.entries.push_back(e);
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::shape, "'j.deep'", "32");
}

TEST(MetadataCodecError, TensorTooLarge) {
    Metadata md = rich_metadata();
    md.entries.push_back(tensor_entry("j.huge", DType::u8, {uint64_t(1) << 30, uint64_t(1) << 30}));
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::shape, "'j.huge'", "too large");
}

TEST(MetadataCodecError, TensorSizeOverflows64Bits) {
    Metadata md = rich_metadata();
    md.entries.push_back(tensor_entry("j.overflow", DType::u8, {uint64_t(1) << 40, uint64_t(1) << 30}));
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::shape, "'j.overflow'");
}

TEST(MetadataCodecError, UnknownDtype) {
    Metadata md = rich_metadata();
    md.entries[3].dtype = DType(40);
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "'d.weight'", "dtype");
}

TEST(MetadataCodecError, OverlappingChunks) {
    Metadata md = rich_metadata();
    md.entries[3].chunks[1].box = Box{{3, 0}, {4, 6}};  // rows 3..6 overlap rows 0..3
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "'d.weight'", "overlapping");
}

TEST(MetadataCodecError, WrongRawLength) {
    Metadata md = rich_metadata();
    Extent &e = md.entries[3].chunks[0].extent;
    e.raw_length = e.stored_length = 95;
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "'d.weight'", "raw length 95", "96");
}

TEST(MetadataCodecError, WrongRawLengthOfCompressedChunk) {
    Metadata md = rich_metadata();
    md.entries[4].chunks[0].extent.raw_length = 22;
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "'e.compressed'", "raw length 22");
}

TEST(MetadataCodecError, StoredLengthDiffersWithoutTransform) {
    Metadata md = rich_metadata();
    md.entries[0].chunks[0].extent.stored_length = 99;
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "'a.blob'", "stored length");
}

TEST(MetadataCodecError, TooFewBlockCrcs) {
    Metadata md = rich_metadata();
    md.entries[6].chunks[0].extent.block_crc32.pop_back();
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "'g.big'", "2047", "2048");
}

TEST(MetadataCodecError, TooManyBlockCrcs) {
    Metadata md = rich_metadata();
    md.entries[1].chunks[0].extent.block_crc32.push_back(0);  // an empty blob has no block
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "'b.empty_blob'", "block checksums");
}

TEST(MetadataCodecError, BlockCrcsOnCompressedExtent) {
    Metadata md = rich_metadata();
    md.entries[4].chunks[0].extent.block_crc32 = {1};
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "'e.compressed'", "compressed");
}

TEST(MetadataCodecError, BadBlockSize) {
    for (uint32_t bs : {0u, 256u, 3000u, 4097u}) {
        Metadata md = rich_metadata();
        md.storage.block_size = bs;
        EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "block size " + std::to_string(bs));
    }
}

TEST(MetadataCodecError, BodyIsNotACapnProtoMessage) {
    std::vector<unsigned char> bytes(32 + 64, 0xff);
    std::memcpy(bytes.data(), "SHRDPNT\n", 8);
    put16(bytes, 8, 1);
    put16(bytes, 10, 0);
    put32(bytes, 12, 0);
    put64(bytes, 16, 64);
    fix_crcs(bytes);
    EXPECT_SP_ERROR(decode(bytes), Code::format, "corrupt metadata");
}

// Random corruption: decoding either succeeds or throws shardpoint::Error; nothing else
// escapes and nothing crashes. Half of the cases recompute the CRCs so the damage reaches the
// Cap'n Proto parser and the validation behind it.
TEST(MetadataCodec, RandomCorruptionNeverCrashes) {
    const std::vector<unsigned char> valid = encode_metadata(rich_metadata());
    std::mt19937_64 rng(2024);
    int decoded = 0, rejected = 0;
    for (int iter = 0; iter < 2000; ++iter) {
        std::vector<unsigned char> bytes = valid;
        const bool reach_body = iter % 2 == 1;
        switch (rng() % 4) {
            case 0: {  // flip a few bits
                int flips = 1 + int(rng() % 4);
                for (int k = 0; k < flips; ++k) bytes[rng() % bytes.size()] ^= uint8_t(1u << (rng() % 8));
                break;
            }
            case 1:  // truncate
                bytes.resize(rng() % bytes.size());
                break;
            case 2: {  // overwrite a word of the body with a random value
                size_t words = (bytes.size() - 32) / 8;
                uint64_t v = rng();
                if (rng() % 2) v &= 0xffff;  // small numbers: counts and indices
                put64(bytes, 32 + 8 * (rng() % words), v);
                break;
            }
            default: {  // random bytes over a stretch
                size_t at = rng() % bytes.size(), n = 1 + rng() % 32;
                for (size_t k = at; k < std::min(bytes.size(), at + n); ++k) bytes[k] = uint8_t(rng());
                break;
            }
        }
        if (reach_body && bytes.size() >= 32) fix_crcs(bytes);
        try {
            Metadata md = decode(bytes);
            ++decoded;
            // What decodes must satisfy the decoder's promises.
            for (size_t i = 1; i < md.entries.size(); ++i) ASSERT_LT(md.entries[i - 1].fqn, md.entries[i].fqn);
            for (auto &f : md.files) ASSERT_TRUE(is_plain_file_name(f.name));
            for (auto &e : md.entries)
                for (auto &c : e.chunks) {
                    ASSERT_LT(c.extent.file, md.files.size());
                    ASSERT_LE(c.extent.offset + c.extent.stored_length, md.files[c.extent.file].size);
                }
        } catch (const Error &) {
            ++rejected;
        } catch (const std::exception &e) {
            FAIL() << "iteration " << iter << ": non-shardpoint exception " << typeid(e).name() << ": " << e.what();
        }
    }
    EXPECT_GT(rejected, 500);
    RecordProperty("decoded", decoded);
}

// Structured corruption: random fields of a valid metadata get random (often boundary) values,
// the result is encoded with valid CRCs and decoded. Decoding either succeeds with its promises
// kept or throws shardpoint::Error.
TEST(MetadataCodec, RandomFieldMutationsAreValidatedOrRejected) {
    std::mt19937_64 rng(77);
    auto any_u64 = [&]() -> uint64_t {
        switch (rng() % 6) {
            case 0: return 0;
            case 1: return rng() % 16;
            case 2: return UINT64_MAX - rng() % 16;
            case 3: return uint64_t(1) << (rng() % 64);
            case 4: return rng() % (1u << 24);
            default: return rng();
        }
    };
    int decoded = 0, rejected = 0;
    for (int iter = 0; iter < 2000; ++iter) {
        Metadata md = rich_metadata();
        const int mutations = 1 + int(rng() % 3);
        for (int k = 0; k < mutations; ++k) {
            EntryMeta &e = md.entries[rng() % md.entries.size()];
            ChunkMeta *c = e.chunks.empty() ? nullptr : &e.chunks[rng() % e.chunks.size()];
            switch (rng() % 12) {
                case 0: if (c) c->extent.offset = any_u64(); break;
                case 1: if (c) c->extent.stored_length = any_u64(); break;
                case 2: if (c) c->extent.raw_length = any_u64(); break;
                case 3: if (c) c->extent.file = uint32_t(any_u64()); break;
                case 4: if (c && !c->box.offsets.empty()) c->box.offsets[rng() % c->box.offsets.size()] = any_u64(); break;
                case 5: if (c && !c->box.sizes.empty()) c->box.sizes[rng() % c->box.sizes.size()] = any_u64(); break;
                case 6: if (!e.shape.empty()) e.shape[rng() % e.shape.size()] = any_u64(); break;
                case 7: md.files[rng() % md.files.size()].size = any_u64(); break;
                case 8: if (c) c->extent.block_crc32.resize(rng() % 5); break;
                case 9: md.storage.block_size = uint32_t(any_u64()); break;
                case 10: e.dtype = DType(rng() % 20); break;
                default: if (c) c->box.offsets.push_back(any_u64()), c->box.sizes.push_back(1); break;
            }
        }
        try {
            Metadata back = decode(encode_metadata(md));
            ++decoded;
            for (auto &e : back.entries) {
                for (auto &c : e.chunks) {
                    ASSERT_LT(c.extent.file, back.files.size());
                    ASSERT_LE(c.extent.stored_length, back.files[c.extent.file].size);
                    ASSERT_LE(c.extent.offset, back.files[c.extent.file].size - c.extent.stored_length);
                    ASSERT_TRUE(box_inside(c.box, e.shape)) << e.fqn;
                    if (e.kind == EntryKind::tensor) {
                        ASSERT_EQ(c.extent.raw_length, product(c.box.sizes) * dtype_size(int32_t(e.dtype))) << e.fqn;
                    }
                }
            }
        } catch (const Error &) {
            ++rejected;
        } catch (const std::exception &e) {
            FAIL() << "iteration " << iter << ": non-shardpoint exception " << typeid(e).name() << ": " << e.what();
        }
    }
    EXPECT_GT(rejected, 1000);
    EXPECT_GT(decoded, 20);
}

// --- names are read whole: NUL bytes are refused, never cut at ------------------------------

TEST(MetadataCodecError, NulInDataFileNameIsAPathError) {
    Metadata md = rich_metadata();
    md.files[1].name = std::string("x\0/../../outside", 16);
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::path, "x\\0/../../outside", "plain file name");
}

TEST(MetadataCodecError, FqnWithNulIsRefusedNotTakenForADuplicate) {
    Metadata md;
    md.storage.save_id = "0123456789abcdef0123456789abcdef";
    md.files = {{"data.bin", 4096, 0}};
    md.entries.push_back(bytes_entry("b", raw_extent(0, 0, 4, 0)));
    md.entries.push_back(bytes_entry(std::string("b\0x", 3), raw_extent(0, 8, 4, 0)));
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "'b\\0x'", "NUL");
    try {
        decode(encode_metadata(md));
    } catch (const Error &e) {
        EXPECT_EQ(std::string(e.what()).find("twice"), std::string::npos) << e.what();
    }
}

TEST(MetadataCodecError, NulInUserMetadataAndIdsIsRefused) {
    const std::string nul("a\0b", 3);
    auto with = [&](const std::function<void(Metadata &)> &change) {
        Metadata md = rich_metadata();
        change(md);
        return encode_metadata(md);
    };
    EXPECT_SP_ERROR(decode(with([&](Metadata &md) { md.user[0].first = nul; })), Code::format, "key", "NUL");
    EXPECT_SP_ERROR(decode(with([&](Metadata &md) { md.user[0].second = nul; })), Code::format, "value", "NUL");
    EXPECT_SP_ERROR(decode(with([&](Metadata &md) { md.framework[0].first = nul; })), Code::format, "framework", "NUL");
    EXPECT_SP_ERROR(decode(with([&](Metadata &md) { md.framework[0].second = nul; })), Code::format, "framework", "NUL");
    EXPECT_SP_ERROR(decode(with([&](Metadata &md) { md.storage.checkpoint_id = nul; })), Code::format, "checkpoint id", "NUL");
    EXPECT_SP_ERROR(decode(with([&](Metadata &md) { md.storage.library_version = nul; })), Code::format, "library version");
    EXPECT_SP_ERROR(decode(with([&](Metadata &md) { md.storage.save_id[5] = '\0'; })), Code::format, "save id");
}

// --- storage fields ----------------------------------------------------------------------------

TEST(MetadataCodecError, SaveIdMustBe32LowercaseHexDigits) {
    for (std::string id : {"0123456789ABCDEF0123456789abcdef", "0123456789abcdef0123456789abcde", "",
                           "0123456789abcdef0123456789abcdef0", "0123456789abcdeg0123456789abcdef"}) {
        Metadata md = rich_metadata();
        md.storage.save_id = id;
        EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "save id '" + id + "'");
    }
}

TEST(MetadataCodecError, AlignmentMustBeAPowerOfTwo) {
    for (uint32_t a : {0u, 3u, 4097u, 0xffffffffu}) {
        Metadata md = rich_metadata();
        md.storage.alignment = a;
        EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "alignment " + std::to_string(a));
    }
    for (uint32_t a : {1u, 512u, 1u << 31}) {
        Metadata md = rich_metadata();
        md.storage.alignment = a;
        EXPECT_EQ(decode(encode_metadata(md)).storage.alignment, a);
    }
}

TEST(MetadataCodecError, WorldSizeAndRanks) {
    Metadata md = rich_metadata();  // world of 4; files of ranks 0, 1, 3
    md.storage.world_size = 0;
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "world size 0");
    md.storage.world_size = 0x80000000u;
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "world size 2147483648");
    md.storage.world_size = 3;  // file #2 was written by rank 3
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, md.files[2].name, "rank 3 of a world of 3");
    md = rich_metadata();
    md.entries[3].chunks[1].extent.writer_rank = 4;
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "'d.weight'", "rank 4 of a world of 4");
}

TEST(MetadataCodecError, DuplicateDataFileNames) {
    Metadata md = rich_metadata();
    md.files[2].name = md.files[0].name;
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, md.files[0].name, "listed twice");
}

// --- the message and the body ------------------------------------------------------------------

TEST(MetadataCodec, MessagesOfSeveralSegmentsAreRead) {
    std::vector<unsigned char> bytes = encode_metadata(rich_metadata());
    EXPECT_GT(get32(bytes, 32) + 1, 1u) << "the rich metadata should need more than one segment";
    expect_same_metadata(decode(bytes), rich_metadata());
}

TEST(MetadataCodecError, BytesAfterTheMessageInsideTheBody) {
    std::vector<unsigned char> bytes = encode_metadata(rich_metadata());
    bytes.resize(bytes.size() + 16, 0);
    uint64_t body_len;
    std::memcpy(&body_len, bytes.data() + 16, 8);
    put64(bytes, 16, body_len + 16);
    fix_crcs(bytes);
    EXPECT_SP_ERROR(decode(bytes), Code::format, "16 bytes follow the message");
}

// --- checksums ---------------------------------------------------------------------------------

TEST(MetadataCodecError, BlockCrcsMustCombineToTheExtentCrc) {
    Metadata md = rich_metadata();
    md.entries[6].chunks[0].extent.block_crc32[100] ^= 1;  // g.big: 2048 blocks
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "'g.big'", "disagree");
    md = rich_metadata();
    md.entries[0].chunks[0].extent.crc32 ^= 1;
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "'a.blob'", "disagree");
    md = rich_metadata();
    md.entries[1].chunks[0].extent.crc32 = 7;  // an empty extent's CRC is 0
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "'b.empty_blob'", "disagree");
}

TEST(MetadataCodec, DeflateExpansionBoundIsExact) {
    // Accepted iff floor(rawLength / 1032) <= storedLength + 1.
    auto with_raw = [](uint64_t raw) {
        Metadata md = rich_metadata();
        Extent e;
        e.file = 1;
        e.offset = 0;
        e.stored_length = 17;
        e.raw_length = raw;
        e.transform = Transform::deflate;
        md.entries.insert(md.entries.begin(), bytes_entry("0.z", e));
        return encode_metadata(md);
    };
    EXPECT_EQ(decode(with_raw(1032 * 19 - 1)).entries[0].chunks[0].extent.raw_length, 1032u * 19 - 1);
    EXPECT_SP_ERROR(decode(with_raw(1032 * 19)), Code::format, "'0.z'", "19608 raw bytes from 17");
}

// --- sizes -------------------------------------------------------------------------------------

TEST(MetadataCodec, ElementCountLimitIsTwoToThe59Exclusive) {
    const uint64_t limit = uint64_t(1) << 59;
    auto with_shape = [](DType dtype, Dims shape) {
        Metadata md = rich_metadata();
        md.entries.push_back(tensor_entry("j.x", dtype, std::move(shape)));
        return encode_metadata(md);
    };
    // complex128: (2^59 - 1) * 16 bytes < 2^63
    EXPECT_EQ(decode(with_shape(DType::complex128, {limit - 1})).entries.back().numel(), limit - 1);
    EXPECT_SP_ERROR(decode(with_shape(DType::u8, {limit})), Code::shape, "'j.x'", "too large");
    EXPECT_SP_ERROR(decode(with_shape(DType::u8, {uint64_t(1) << 30, uint64_t(1) << 29})), Code::shape, "'j.x'", "too large");
    // A zero dimension makes no elements but does not excuse a dimension beyond the limit.
    EXPECT_SP_ERROR(decode(with_shape(DType::u8, {0, uint64_t(1) << 63})), Code::shape, "'j.x'", "dimension 1");
    EXPECT_EQ(decode(with_shape(DType::u8, {uint64_t(1) << 58, uint64_t(1) << 58, 0})).entries.back().numel(), 0u);
    EXPECT_EQ(decode(with_shape(DType::u8, {0, limit - 1})).entries.back().numel(), 0u);
}

// --- opening metadata costs O(n log n) whatever the chunk layout -------------------------------

namespace {

// One tensor of `n` one-block chunks, boxes from `box_of(i)`.
std::vector<unsigned char> many_chunks(size_t n, Dims shape, const std::function<Box(size_t)> &box_of) {
    Metadata md;
    md.storage.save_id = "0123456789abcdef0123456789abcdef";
    md.storage.block_size = 1u << 30;
    EntryMeta t = tensor_entry("t", DType::u8, std::move(shape));
    uint64_t cursor = 0;
    for (size_t i = 0; i < n; ++i) {
        Box box = box_of(i);
        Extent e;
        e.offset = cursor;
        e.stored_length = e.raw_length = product(box.sizes);
        e.block_crc32 = {uint32_t(i)};
        e.crc32 = uint32_t(i);
        cursor += e.stored_length;
        t.chunks.push_back(ChunkMeta{std::move(box), std::move(e)});
    }
    md.files = {{"data.bin", cursor, 0}};
    md.entries.push_back(std::move(t));
    return encode_metadata(md);
}

double seconds_to_decode(const std::vector<unsigned char> &bytes) {
    double best = 1e9;
    for (int rep = 0; rep < 3; ++rep) {
        auto t0 = std::chrono::steady_clock::now();
        Metadata md = decode(bytes);
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        EXPECT_EQ(md.entries.size(), 1u);
    }
    return best;
}

}  // namespace

TEST(MetadataCodec, StaircaseOpensAsFastAsRows) {
    const size_t n = 60000, k = n / 2;
    // Chunk i: rows [i, i + k), column i. Disjoint, yet each overlaps k others along rows.
    auto staircase = many_chunks(n, {n + k, n}, [&](size_t i) { return Box{{i, i}, {k, 1}}; });
    auto rows = many_chunks(n, {n, 30}, [&](size_t i) { return Box{{i, 0}, {1, 30}}; });
    const double t_stairs = seconds_to_decode(staircase), t_rows = seconds_to_decode(rows);
    RecordProperty("staircase_ms", int(t_stairs * 1000));
    RecordProperty("rows_ms", int(t_rows * 1000));
    EXPECT_LT(t_stairs, 5 * t_rows) << "staircase " << t_stairs << " s, rows " << t_rows << " s";
}

// --- the traversal limit: 4 * (body length / 8) + 1024 words ---------------------------------

namespace {

// A valid header around a message whose `files` list holds `n` zero-sized structs: one word in
// the body, n words for the traversal limit (Cap'n Proto counts such elements as a word each).
std::vector<unsigned char> zero_sized_files(uint32_t n, uint64_t &limit_words) {
    capnp::MallocMessageBuilder message;
    auto root = message.initRoot<schema::Checkpoint>();
    auto storage = root.initStorage();
    storage.setSaveId("0123456789abcdef0123456789abcdef");
    storage.setWorldSize(1);
    storage.setAlignment(4096);
    storage.setBlockSize(4096);
    capnp::AnyStruct::Builder any(kj::mv(root));
    any.getPointerSection()[1].initAsListOfAnyStruct(0, 0, n);
    kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
    std::vector<unsigned char> bytes(32 + words.asBytes().size(), 0);
    std::memcpy(bytes.data(), "SHRDPNT\n", 8);
    put16(bytes, 8, 1);
    put64(bytes, 16, words.asBytes().size());
    std::memcpy(bytes.data() + 32, words.asBytes().begin(), words.asBytes().size());
    fix_crcs(bytes);
    limit_words = 4 * (words.size()) + 1024;
    return bytes;
}

}  // namespace

TEST(MetadataCodecError, TraversalLimit) {
    uint64_t limit = 0;
    zero_sized_files(1, limit);
    // Within the limit the files are read (and refused for their empty names) ...
    EXPECT_SP_ERROR(decode(zero_sized_files(uint32_t(limit / 2), limit)), Code::path, "plain file name");
    // ... beyond it the message is refused before they are.
    EXPECT_SP_ERROR(decode(zero_sized_files(uint32_t(limit + 1), limit)), Code::format, "corrupt metadata");
    EXPECT_SP_ERROR(decode(zero_sized_files(1u << 28, limit)), Code::format, "corrupt metadata");
}

// Through the decoder, a layout beyond the comparison budget is a shape error naming the entry.
TEST(MetadataCodecError, TooIrregularLayoutIsRefused) {
    const uint64_t m = 20000;
    std::vector<Box> layout = sptest::pinwheel_layout(m);
    layout.pop_back();  // without the centre (a hole): every other chunk fits in one CRC block
    auto bytes = many_chunks(layout.size(), {3 * m, 3 * m, m}, [&](size_t k) { return layout[k]; });
    EXPECT_SP_ERROR(decode(bytes), Code::shape, "'t'", "too irregular");
}

// --- Block-compressed extents (format 2): every number of the block table is checked ------------

namespace {

// One f32 tensor "w" of 3000 elements in one block-compressed extent (blocks of 100 stored bytes).
Metadata block_metadata(Transform transform = Transform::zstd_blocks, uint32_t shuffle = 4) {
    Metadata md;
    md.storage.save_id = "0123456789abcdef0123456789abcdef";
    md.storage.world_size = 1;
    md.storage.alignment = 4096;
    md.storage.block_size = kBlock;
    md.files = {{"data-0123456789abcdef0123456789abcdef-r00000.bin", 1u << 20, 0}};
    EntryMeta w;
    w.fqn = "w";
    w.dtype = DType::f32;
    w.shape = {3000};
    ChunkMeta c;
    c.box = Box{{0}, {3000}};
    Extent &e = c.extent;
    e.transform = transform;
    e.raw_length = 12000;
    e.shuffle_width = shuffle;
    for (uint64_t b = 0; b < e.raw_length; b += kBlock) {
        e.block_stored_length.push_back(100);
        e.block_crc32.push_back(uint32_t(0xabc + b));
        e.crc32 = crc32_combine_of(e.crc32, e.block_crc32.back(), 100);
        e.stored_length += 100;
    }
    w.chunks.push_back(c);
    md.entries.push_back(w);
    return md;
}

void fix_block_crc(Extent &e) {
    e.crc32 = 0;
    for (size_t k = 0; k < e.block_crc32.size(); ++k) e.crc32 = crc32_combine_of(e.crc32, e.block_crc32[k], e.block_stored_length[k]);
}

}  // namespace

TEST(MetadataCodec, BlockCompressedExtentRoundTripsAsFormatTwo) {
    for (Transform t : {Transform::zlib_blocks, Transform::zstd_blocks}) {
        Metadata md = block_metadata(t);
        auto bytes = encode_metadata(md);
        EXPECT_EQ(bytes[8], 2);
        Metadata back = decode(bytes);
        EXPECT_EQ(back.storage.format_major, 2u);
        const Extent &x = back.entries[0].chunks[0].extent;
        EXPECT_EQ(x.transform, t);
        EXPECT_EQ(x.block_stored_length, md.entries[0].chunks[0].extent.block_stored_length);
        EXPECT_EQ(x.shuffle_width, 4u);
        EXPECT_EQ(x.crc32, md.entries[0].chunks[0].extent.crc32);
    }
}

TEST(MetadataCodecError, BlockCompressionInAFormatOneFile) {
    auto bytes = encode_metadata(block_metadata());
    put16(bytes, 8, 1);
    fix_crcs(bytes);
    EXPECT_SP_ERROR(decode(bytes), Code::format, "'w'", "needs format 2");
}

TEST(MetadataCodecError, BlockTableThatLies) {
    auto refused = [](std::function<void(Extent &)> lie, std::vector<std::string> needles) {
        Metadata md = block_metadata();
        lie(md.entries[0].chunks[0].extent);
        try {
            decode(encode_metadata(md));
            ADD_FAILURE() << "accepted: " << needles[0];
        } catch (const Error &e) {
            EXPECT_EQ(e.code(), Code::format) << e.what();
            for (auto &n : needles) EXPECT_TRUE(sptest::contains(e.what(), n)) << e.what() << " lacks " << n;
        }
    };
    refused([](Extent &e) { e.block_stored_length.pop_back(); }, {"'w'", "block lengths"});
    refused([](Extent &e) { e.block_crc32.push_back(0); }, {"'w'", "block checksums"});
    refused([](Extent &e) { e.block_stored_length[0] = kBlock + 1; e.stored_length += kBlock - 99; fix_block_crc(e); },
            {"block 0", "stored bytes for"});
    refused([](Extent &e) { e.block_stored_length[1] = 0; e.stored_length -= 100; fix_block_crc(e); }, {"block 1", "claims 0"});
    refused([](Extent &e) { e.stored_length += 1; }, {"add up to"});
    refused([](Extent &e) { e.block_crc32[0] ^= 1; }, {"disagree"});
    refused([](Extent &e) { e.shuffle_width = 2; }, {"shuffle width 2", "4 bytes"});
    refused([](Extent &e) { e.shuffle_width = 8; }, {"shuffle width 8"});
    // The block fields belong to block compression only.
    Metadata md = rich_metadata();
    md.entries[6].chunks[0].extent.shuffle_width = 4;
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "'g.big'", "without block compression");
    md = rich_metadata();
    md.entries[6].chunks[0].extent.block_stored_length = {1};
    EXPECT_SP_ERROR(decode(encode_metadata(md)), Code::format, "'g.big'", "without block compression");
}

// --- The finish phase checks the extents the ranks report as a reader would ---------------------

namespace {

// One rank's save of "w" (f32 [2048]) up to its write results, which `lie` then rewrites; returns
// the finish phase's error (or "" if finish accepted the results).
std::string finish_with_lying_results(const std::string &dir, SaveOptions options, std::function<void(schema::Extent::Builder)> lie) {
    std::vector<float> w(2048, 0.25f);
    CheckpointWriter writer(dir, options);
    writer.set_up(0, 1);
    writer.add_tensor("w", DType::f32, {2048}, {0}, {2048}, w.data(), {});
    std::vector<std::string> finals = writer.global_plan({writer.local_plan()});
    std::string results = writer.write(finals[0]);
    // Decode, lie, encode again.
    kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word *>(results.data()), results.size() / 8);
    capnp::FlatArrayMessageReader reader(words);
    capnp::MallocMessageBuilder builder;
    builder.setRoot(reader.getRoot<schema::WriteResultsMessage>());
    lie(builder.getRoot<schema::WriteResultsMessage>().getResults()[0].getExtent());
    auto flat = capnp::messageToFlatArray(builder);
    std::string lied(reinterpret_cast<const char *>(flat.asBytes().begin()), flat.asBytes().size());
    try {
        writer.finish({lied});
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), Code::invalid_argument) << e.what();
        writer.abort();
        return e.what();
    }
    return "";
}

}  // namespace

TEST(FinishPhase, ExtentsThatReadersWouldRefuseAreRefusedBeforeTheCommit) {
    sptest::TempDir tmp;
    SaveOptions raw;
    SaveOptions zstd;
    zstd.compression = Transform::zstd_blocks;
    struct Case {
        SaveOptions options;
        std::function<void(schema::Extent::Builder)> lie;
        std::string needle;
    };
    std::vector<Case> cases = {
        {raw, [](schema::Extent::Builder e) { e.setOffset(1u << 30); }, "beyond the end"},
        {raw, [](schema::Extent::Builder e) { e.setCrc32(e.getCrc32() ^ 1); }, "disagree"},
        {raw, [](schema::Extent::Builder e) { e.setRawLength(4); e.setStoredLength(4); }, "raw bytes for a chunk of 8192"},
        {raw, [](schema::Extent::Builder e) { e.initBlockCrc32(0); }, "block checksums"},
        {raw, [](schema::Extent::Builder e) { e.setShuffleWidth(4); }, "without block compression"},
        {zstd, [](schema::Extent::Builder e) { e.initBlockStoredLength(0); }, "block lengths"},
        {zstd, [](schema::Extent::Builder e) { e.setShuffleWidth(3); }, "shuffle width 3"},
    };
    for (size_t i = 0; i < cases.size(); ++i) {
        const std::string dir = tmp.path() + "/c" + std::to_string(i);
        std::string why = finish_with_lying_results(dir, cases[i].options, cases[i].lie);
        EXPECT_TRUE(sptest::contains(why, cases[i].needle)) << i << ": " << why;
        EXPECT_TRUE(sptest::contains(why, "'w'")) << i << ": " << why;
        EXPECT_FALSE(sptest::contains(why, "corrupt metadata")) << why;
        EXPECT_NE(::access((dir + "/shardpoint.meta").c_str(), F_OK), 0) << i << ": a checkpoint was committed";
    }
    // Unaltered results commit.
    EXPECT_EQ(finish_with_lying_results(tmp.path() + "/ok", zstd, [](schema::Extent::Builder) {}), "");
    EXPECT_EQ(::access((tmp.path() + "/ok/shardpoint.meta").c_str(), F_OK), 0);
}
