// One data file larger than 4 GiB: offsets beyond 32 bits in the writer, the metadata and the
// reader. The first tensor (4.2 GiB) is a view that repeats one row through a zero stride, so
// the test needs little memory; the row length is prime to the block size, so every block's
// bytes differ and a read from a wrong (e.g. 32-bit truncated) offset cannot pass.
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <chrono>

#include "shardpoint/checkpoint.hpp"
#include "test_util.hpp"

using namespace shardpoint;

namespace {

constexpr uint64_t kRowLen = 1000003;  // prime
constexpr uint64_t kRows = 4520;       // 4520 * 1000003 bytes = 4.21 GiB
constexpr uint64_t kHugeBytes = kRows * kRowLen;

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST(BigFile, SecondTensorBeyondFourGiB) {
    sptest::TempDir tmp;
    struct statvfs vfs;
    ASSERT_EQ(::statvfs(tmp.path().c_str(), &vfs), 0);
    const uint64_t free_bytes = uint64_t(vfs.f_bavail) * vfs.f_frsize;
    if (free_bytes < (10ull << 30)) GTEST_SKIP() << "needs 10 GiB free in " << tmp.path() << ", has " << (free_bytes >> 20) << " MiB";

    const std::vector<unsigned char> row = sptest::pattern(1, kRowLen);
    const std::vector<unsigned char> tail = sptest::pattern(2, 4000);

    auto t0 = std::chrono::steady_clock::now();
    {
        SaveOptions o;
        o.io_threads = 2;
        SaveSession s(tmp.path(), nullptr, o);
        s.add_tensor("huge", DType::u8, {kRows, kRowLen}, {0, 0}, {kRows, kRowLen}, row.data(), {0, 1});
        s.add_tensor("tail", DType::f32, {1000}, {0}, {1000}, tail.data(), {});
        s.commit();
    }
    std::printf("saved %.2f GiB in %.1f s\n", double(kHugeBytes) / (1ull << 30), seconds_since(t0));

    Reader reader(tmp.path(), LoadOptions{});
    const Metadata &md = reader.metadata();
    ASSERT_EQ(md.files.size(), 1u);
    const Extent &huge = md.find("huge")->chunks.at(0).extent;
    const Extent &tail_extent = md.find("tail")->chunks.at(0).extent;
    EXPECT_EQ(huge.stored_length, kHugeBytes);
    EXPECT_GT(tail_extent.offset, kHugeBytes - 1);
    EXPECT_GT(tail_extent.offset, 1ull << 32);
    EXPECT_EQ(tail_extent.offset % 64, 0u);  // 4000 bytes: shorter than the alignment, packed
    struct stat st;
    ASSERT_EQ(::stat((tmp.path() + "/" + md.files[0].name).c_str(), &st), 0);
    EXPECT_EQ(uint64_t(st.st_size), md.files[0].size);
    EXPECT_GT(uint64_t(st.st_size), 1ull << 32);

    t0 = std::chrono::steady_clock::now();
    LoadSession load(reader, nullptr);
    // The tensor placed after 4.2 GiB, whole.
    std::vector<unsigned char> got_tail(4000);
    load.add_tensor("tail", DType::f32, 1, {0}, {1000}, got_tail.data(), {});
    // Rows around the 4 GiB boundary (row 4294 holds byte 2^32), read straight into memory.
    const uint64_t first_row = 4290, nrows = 10;
    std::vector<unsigned char> rows(nrows * kRowLen);
    load.add_tensor("huge", DType::u8, 2, {first_row, 0}, {nrows, kRowLen}, rows.data(), {});
    // A narrow column box near the end: strided reads at offsets beyond 4 GiB, partial blocks.
    const uint64_t col0 = kRowLen - 13, ncols = 13, crow0 = 4400, ncrows = kRows - 4400;
    std::vector<unsigned char> cols(ncrows * ncols);
    load.add_tensor("huge", DType::u8, 2, {crow0, col0}, {ncrows, ncols}, cols.data(), {});
    load.execute();
    std::printf("read %.1f MiB in %.2f s\n", double(rows.size() + cols.size()) / (1 << 20), seconds_since(t0));

    EXPECT_EQ(got_tail, tail);
    for (uint64_t i = 0; i < nrows; ++i)
        ASSERT_EQ(std::memcmp(rows.data() + i * kRowLen, row.data(), kRowLen), 0) << "row " << first_row + i;
    for (uint64_t i = 0; i < ncrows; ++i)
        ASSERT_EQ(std::memcmp(cols.data() + i * ncols, row.data() + col0, ncols), 0) << "row " << crow0 + i;

    // Damage one byte just past 4 GiB: the read that covers it must fail its block CRC.
    const uint64_t victim = (1ull << 32) + 12345;
    {
        FILE *f = std::fopen((tmp.path() + "/" + md.files[0].name).c_str(), "r+b");
        ASSERT_NE(f, nullptr);
        ASSERT_EQ(fseeko(f, off_t(huge.offset + victim), SEEK_SET), 0);
        int c = std::fgetc(f);
        ASSERT_EQ(fseeko(f, off_t(huge.offset + victim), SEEK_SET), 0);
        std::fputc(c ^ 0xff, f);
        std::fclose(f);
    }
    Reader damaged(tmp.path(), LoadOptions{});
    std::vector<unsigned char> one(1);
    LoadSession bad(damaged, nullptr);
    bad.add_tensor("huge", DType::u8, 2, {victim / kRowLen, victim % kRowLen}, {1, 1}, one.data(), {});
    EXPECT_SP_ERROR(bad.execute(), Code::checksum, "'huge'", std::to_string(huge.offset + victim / (1u << 20) * (1u << 20)));
}
