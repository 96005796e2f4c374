// Shared helpers of the filesystem storage layer (see storage_io.hpp).
#include "storage_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "shardpoint/error.hpp"

namespace shardpoint {
namespace io {

FileDescriptor::~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
}

std::string join(const std::string &dir, const std::string &name) {
    return dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
}

void pwrite_full(int fd, const void *data, uint64_t len, uint64_t offset, const std::string &file) {
    auto p = static_cast<const unsigned char *>(data);
    while (len > 0) {
        ssize_t n = ::pwrite(fd, p, len > (1u << 30) ? (1u << 30) : len, off_t(offset));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno(Code::io, "write to '" + file + "'", errno);
        }
        p += n;
        len -= uint64_t(n);
        offset += uint64_t(n);
    }
}

// Reads exactly len bytes; a short file is Code::truncated.
void pread_full(int fd, void *data, uint64_t len, uint64_t offset, const std::string &file) {
    auto p = static_cast<unsigned char *>(data);
    while (len > 0) {
        ssize_t n = ::pread(fd, p, len > (1u << 30) ? (1u << 30) : len, off_t(offset));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno(Code::io, "read from '" + file + "'", errno);
        }
        if (n == 0) throw Error(Code::truncated, "data file '" + file + "' ends early at byte " + std::to_string(offset));
        p += n;
        len -= uint64_t(n);
        offset += uint64_t(n);
    }
}

void fsync_or_throw(int fd, const std::string &what) {
    if (::fsync(fd) != 0) throw_errno(Code::io, "fsync " + what, errno);
}

void fsync_directory(const std::string &dir) {
    FileDescriptor fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd.get() < 0) throw_errno(Code::io, "open directory '" + dir + "'", errno);
    fsync_or_throw(fd.get(), "directory '" + dir + "'");
}

// Asks the kernel to begin writing a range back to disk without waiting for it (a hint: errors
// surface at the final fsync).
void start_writeback(int fd, uint64_t offset, uint64_t len) {
#ifdef SYNC_FILE_RANGE_WRITE
    ::sync_file_range(fd, off_t(offset), off_t(len), SYNC_FILE_RANGE_WRITE);
#else
    (void)fd, (void)offset, (void)len;
#endif
}


}  // namespace io
}  // namespace shardpoint
