// CRC-32 and the deflate transform.
#include <random>

#include "shardpoint/codec.hpp"
#include "test_util.hpp"

using namespace shardpoint;

TEST(Crc32, KnownVector) {
    const char *s = "123456789";
    EXPECT_EQ(crc32_of(s, 9), 0xCBF43926u);
    EXPECT_EQ(crc32_of(s, 0), 0u);
}

// Every kernel this CPU has, and crc32_of, give zlib's value at every length up to 4 KiB (so every path through
// the 256-, 64- and 16-byte loops and the tail), at unaligned starts and with running seeds.
TEST(Crc32, EveryKernelEqualsZlib) {
    auto data = sptest::pattern(5, 3 * 4096 + 64);
    std::mt19937_64 rng(23);
    for (Crc32Kernel kernel : {Crc32Kernel::zlib, Crc32Kernel::clmul, Crc32Kernel::vpclmul}) {
        if (!crc32_kernel_available(kernel)) continue;
        for (size_t offset : {0, 1, 7, 16, 63}) {
            for (size_t len = 0; len <= 4096; ++len) {
                uint32_t seed = len % 3 == 0 ? 0 : uint32_t(rng());
                uint32_t want = uint32_t(::crc32(seed, data.data() + offset, uInt(len)));
                ASSERT_EQ(crc32_with(kernel, data.data() + offset, len, seed), want)
                    << "kernel " << int(kernel) << " offset " << offset << " length " << len;
                ASSERT_EQ(crc32_of(data.data() + offset, len, seed), want) << "offset " << offset << " length " << len;
            }
        }
        for (int trial = 0; trial < 50; ++trial) {  // long inputs: many steps of the main loop
            size_t len = rng() % (data.size() - 64), offset = rng() % 64;
            ASSERT_EQ(crc32_with(kernel, data.data() + offset, len), uint32_t(::crc32(0, data.data() + offset, uInt(len))))
                << "kernel " << int(kernel) << " offset " << offset << " length " << len;
        }
    }
    EXPECT_TRUE(crc32_kernel_available(Crc32Kernel::zlib));
}

TEST(Crc32, IncrementalEqualsDirect) {
    auto data = sptest::pattern(1, 100000);
    uint32_t crc = crc32_of(data.data(), 40000);
    crc = crc32_of(data.data() + 40000, 60000, crc);
    EXPECT_EQ(crc, crc32_of(data.data(), data.size()));
}

TEST(Crc32, CombineEqualsDirectForRandomSplits) {
    std::mt19937_64 rng(17);
    auto data = sptest::pattern(2, 1 << 18);
    for (int trial = 0; trial < 500; ++trial) {
        size_t len = rng() % data.size();
        size_t split = len ? rng() % (len + 1) : 0;
        uint32_t a = crc32_of(data.data(), split);
        uint32_t b = crc32_of(data.data() + split, len - split);
        ASSERT_EQ(crc32_combine_of(a, b, len - split), crc32_of(data.data(), len)) << len << " split at " << split;
    }
}

TEST(Crc32, CombineOfManyBlocks) {
    // The way the writer builds an extent's CRC from its block CRCs, with a short last block.
    const size_t block = 4096;
    auto data = sptest::pattern(3, 10 * block + 123);
    uint32_t crc = 0;
    for (size_t at = 0; at < data.size(); at += block) {
        size_t n = std::min(block, data.size() - at);
        crc = crc32_combine_of(crc, crc32_of(data.data() + at, n), n);
    }
    EXPECT_EQ(crc, crc32_of(data.data(), data.size()));
}

// Our GF(2) combine against zlib's own crc32_combine64, at lengths no test buffer reaches (up to
// 2^61 bytes: every bit of the length's exponent), and the operator form used for equal blocks.
TEST(Crc32, CombineEqualsZlibAtEveryLengthScale) {
    std::mt19937_64 rng(29);
    for (int bits = 0; bits <= 61; ++bits) {
        for (int trial = 0; trial < 20; ++trial) {
            const uint64_t len = bits == 0 ? 0 : (uint64_t(1) << (bits - 1)) | (rng() & ((uint64_t(1) << (bits - 1)) - 1));
            const uint32_t a = uint32_t(rng()), b = uint32_t(rng());
            const uint32_t want = uint32_t(::crc32_combine64(a, b, z_off64_t(len)));
            ASSERT_EQ(crc32_combine_of(a, b, len), want) << "length " << len;
            ASSERT_EQ(crc32_combine_with(a, b, crc32_shift_operator(len)), want) << "length " << len;
        }
    }
    EXPECT_EQ(crc32_shift_operator(0), 0x80000000u);  // shifting past nothing multiplies by 1
}

TEST(Deflate, RoundTripAtEveryLevel) {
    std::vector<std::vector<unsigned char>> inputs = {
        {},
        {42},
        sptest::pattern(4, 1000),                 // incompressible
        std::vector<unsigned char>(300000, 7),    // very compressible
    };
    std::vector<unsigned char> text;
    for (int i = 0; i < 20000; ++i) text.push_back(uint8_t("the quick brown fox "[i % 20]));
    inputs.push_back(text);
    for (int level = 1; level <= 9; ++level) {
        for (auto &in : inputs) {
            std::vector<unsigned char> z = deflate_bytes(in.data(), in.size(), level);
            std::vector<unsigned char> out(in.size() + 1, 0xEE);
            inflate_bytes(z.data(), z.size(), out.data(), in.size());
            EXPECT_TRUE(std::equal(in.begin(), in.end(), out.begin())) << "level " << level << " size " << in.size();
            EXPECT_EQ(out.back(), 0xEE) << "inflate wrote past raw_len";
        }
    }
    auto z = deflate_bytes(inputs[3].data(), inputs[3].size(), 6);
    EXPECT_LT(z.size(), inputs[3].size() / 100);
}

TEST(DeflateError, CorruptStream) {
    auto in = sptest::pattern(5, 5000);
    auto z = deflate_bytes(in.data(), in.size(), 6);
    std::vector<unsigned char> out(in.size());
    std::mt19937_64 rng(8);
    int rejected = 0;
    for (int trial = 0; trial < 200; ++trial) {
        auto bad = z;
        bad[rng() % bad.size()] ^= uint8_t(1 + rng() % 255);
        try {
            inflate_bytes(bad.data(), bad.size(), out.data(), out.size());
            // A flip may still inflate (e.g. in a stored block): then the data differs and
            // the Adler-32 must have caught it, so success means identical output.
            EXPECT_EQ(out, in) << "trial " << trial;
        } catch (const Error &e) {
            EXPECT_EQ(e.code(), Code::format) << e.what();
            EXPECT_TRUE(sptest::contains(e.what(), "inflate")) << e.what();
            ++rejected;
        }
    }
    EXPECT_GT(rejected, 150);
}

TEST(DeflateError, GarbageIsNotAZlibStream) {
    auto garbage = sptest::pattern(6, 64);
    std::vector<unsigned char> out(64);
    EXPECT_SP_ERROR(inflate_bytes(garbage.data(), garbage.size(), out.data(), out.size()), Code::format, "inflate");
}

TEST(DeflateError, TruncatedStream) {
    auto in = sptest::pattern(7, 5000);
    auto z = deflate_bytes(in.data(), in.size(), 6);
    std::vector<unsigned char> out(in.size());
    EXPECT_SP_ERROR(inflate_bytes(z.data(), z.size() - 5, out.data(), out.size()), Code::format, "inflate");
    EXPECT_SP_ERROR(inflate_bytes(z.data(), 0, out.data(), out.size()), Code::format);
}

TEST(DeflateError, RawLengthTooSmall) {
    auto in = sptest::pattern(8, 5000);
    auto z = deflate_bytes(in.data(), in.size(), 6);
    std::vector<unsigned char> out(in.size());
    EXPECT_SP_ERROR(inflate_bytes(z.data(), z.size(), out.data(), in.size() - 1), Code::format, "recorded length");
}

TEST(DeflateError, RawLengthTooLarge) {
    auto in = sptest::pattern(9, 5000);
    auto z = deflate_bytes(in.data(), in.size(), 6);
    std::vector<unsigned char> out(in.size() + 1);
    EXPECT_SP_ERROR(inflate_bytes(z.data(), z.size(), out.data(), out.size()), Code::format, "recorded length");
}

TEST(DeflateError, TrailingBytesAfterStream) {
    auto in = sptest::pattern(10, 5000);
    auto z = deflate_bytes(in.data(), in.size(), 6);
    z.push_back(0);
    std::vector<unsigned char> out(in.size());
    EXPECT_SP_ERROR(inflate_bytes(z.data(), z.size(), out.data(), out.size()), Code::format);
}

// The fast (carry-less multiplication) CRC must equal zlib's at every length, alignment and seed.
// Streaming: any split of the input and of the stored bytes gives the same result, and a
// stream fed one byte at a time (its trailer arriving after the last output) still ends right.
TEST(Deflate, StreamingInAnyPieces) {
    std::mt19937_64 rng(5);
    for (size_t size : {size_t(0), size_t(1), size_t(1000), size_t(3u << 20)}) {
        std::vector<unsigned char> in = sptest::pattern(7, size);
        for (size_t i = 0; i < in.size(); i += 3) in[i] = 0;  // partly compressible
        std::vector<unsigned char> stored;
        size_t pieces_out = 0;
        Deflater z(6, [&](const unsigned char *p, size_t n) {
            EXPECT_LE(n, size_t(1) << 20);  // output comes in bounded pieces
            stored.insert(stored.end(), p, p + n);
            ++pieces_out;
        });
        EXPECT_GE(z.bound(size), size);
        for (size_t at = 0; at < in.size();) {
            size_t n = std::min<size_t>(in.size() - at, 1 + rng() % 200000);
            z.write(in.data() + at, n);
            at += n;
        }
        z.finish();
        EXPECT_LE(stored.size(), z.bound(size));
        for (size_t step : {size_t(1), size_t(7), size_t(65536), stored.size() + 1}) {
            if (step == 1 && stored.size() > 100000) continue;
            std::vector<unsigned char> out(size);
            Inflater inf(out.data(), out.size());
            for (size_t at = 0; at < stored.size(); at += step) inf.write(stored.data() + at, std::min(step, stored.size() - at));
            inf.finish();
            ASSERT_EQ(out, in) << "size " << size << " step " << step;
        }
    }
}

TEST(DeflateError, StreamingDetectsOverflowAndShortStreams) {
    std::vector<unsigned char> in = sptest::pattern(8, 5000);
    auto z = deflate_bytes(in.data(), in.size(), 6);
    std::vector<unsigned char> out(in.size());
    {
        Inflater small(out.data(), in.size() - 1);
        EXPECT_SP_ERROR((small.write(z.data(), z.size()), small.finish()), Code::format, "recorded length");
    }
    {
        Inflater half(out.data(), out.size());
        half.write(z.data(), z.size() / 2);
        EXPECT_SP_ERROR(half.finish(), Code::format);
    }
}
