// Debris of unfinished saves and the save lock that keeps its collection safe (FORMAT.md §1, §5).
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "shardpoint/codec.hpp"
#include "shardpoint/error.hpp"
#include "shardpoint/metadata_codec.hpp"
#include "shardpoint/storage.hpp"
#include "storage_io.hpp"

namespace shardpoint {

using namespace io;

namespace {

bool is_hex_id(const std::string &s, size_t at, size_t len) {
    if (s.size() < at + len) return false;
    for (size_t i = at; i < at + len; ++i)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

bool has_prefix(const std::string &s, const std::string &prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

}  // namespace

bool is_own_file_name(const std::string &name) {
    // data-<32 hex>-r<digits>.bin
    static const std::string data = "data-", bin = ".bin";
    if (has_prefix(name, data) && is_hex_id(name, data.size(), 32) && name.size() > data.size() + 32 + 2 + bin.size() &&
        name.compare(data.size() + 32, 2, "-r") == 0 && name.compare(name.size() - bin.size(), bin.size(), bin) == 0) {
        size_t digits_at = data.size() + 34, digits_end = name.size() - bin.size();
        return std::all_of(name.begin() + long(digits_at), name.begin() + long(digits_end),
                           [](char c) { return c >= '0' && c <= '9'; });
    }
    // shardpoint.meta.tmp-<32 hex>
    static const std::string tmp = std::string(metadata_file_name) + ".tmp-";
    return has_prefix(name, tmp) && name.size() == tmp.size() + 32 && is_hex_id(name, tmp.size(), 32);
}

MetadataState metadata_state(const std::string &dir) {
    std::string path = join(dir, metadata_file_name);
    FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    if (fd.get() < 0) {
        if (errno == ENOENT || errno == ENOTDIR) return MetadataState::absent;
        // Something is there that we cannot read (a symbolic link, no permission): never replace it.
        return MetadataState::checkpoint;
    }
    struct stat st;
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return MetadataState::checkpoint;
    if (uint64_t(st.st_size) < metadata_header_size) return MetadataState::not_a_checkpoint;
    unsigned char header[metadata_header_size];
    // A failing read proves nothing about the file: it must not make a checkpoint look absent.
    pread_full(fd.get(), header, sizeof header, 0, path);
    static const unsigned char magic[8] = {'S', 'H', 'R', 'D', 'P', 'N', 'T', '\n'};
    uint32_t header_crc;
    std::memcpy(&header_crc, header + 28, 4);
    if (std::memcmp(header, magic, 8) != 0 || crc32_of(header, 28) != header_crc) return MetadataState::not_a_checkpoint;
    return MetadataState::checkpoint;
}

DirectoryLock::DirectoryLock(const std::string &dir) {
    // The lock is on the directory itself: no lock file to leave behind or to race on.
    const std::string &path = dir;
    fd_ = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd_ < 0) throw_errno(Code::io, "open directory '" + path + "' to lock it", errno);
    while (::flock(fd_, LOCK_EX) != 0) {
        if (errno == EINTR) continue;
        if (errno == ENOLCK || errno == EOPNOTSUPP || errno == EINVAL || errno == ENOSYS) return;  // no locks here
        int err = errno;
        ::close(fd_);
        fd_ = -1;
        throw_errno(Code::io, "lock '" + path + "'", err);
    }
    held_ = true;
}

DirectoryLock DirectoryLock::try_lock(const std::string &dir) {
    DirectoryLock lock;
    lock.fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (lock.fd_ < 0) throw_errno(Code::io, "open directory '" + dir + "' to lock it", errno);
    while (::flock(lock.fd_, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EINTR) continue;
        if (errno == EWOULDBLOCK) {
            ::close(lock.fd_);
            lock.fd_ = -1;
            lock.busy_ = true;
            return lock;
        }
        if (errno == ENOLCK || errno == EOPNOTSUPP || errno == EINVAL || errno == ENOSYS) return lock;  // no locks here
        int err = errno;
        ::close(lock.fd_);
        lock.fd_ = -1;
        throw_errno(Code::io, "lock '" + dir + "'", err);
    }
    lock.held_ = true;
    return lock;
}

DirectoryLock::~DirectoryLock() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the flock
}

DirectoryLock::DirectoryLock(DirectoryLock &&other) noexcept : fd_(other.fd_), held_(other.held_), busy_(other.busy_) {
    other.fd_ = -1;
    other.held_ = false;
    other.busy_ = false;
}

DirectoryLock &DirectoryLock::operator=(DirectoryLock &&other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = other.fd_;
        held_ = other.held_;
        busy_ = other.busy_;
        other.fd_ = -1;
        other.held_ = false;
        other.busy_ = false;
    }
    return *this;
}

std::vector<GarbageFile> find_garbage(const std::string &dir, const std::vector<std::string> &referenced) {
    DIR *d = ::opendir(dir.c_str());
    if (!d) {
        if (errno == ENOENT || errno == ENOTDIR) throw Error(Code::not_found, "no directory '" + dir + "'");
        throw_errno(Code::io, "list directory '" + dir + "'", errno);
    }
    std::vector<GarbageFile> garbage;
    while (struct dirent *e = ::readdir(d)) {
        std::string name = e->d_name;
        if (!is_own_file_name(name)) continue;
        if (std::find(referenced.begin(), referenced.end(), name) != referenced.end()) continue;
        struct stat st;
        if (::fstatat(dirfd(d), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
        garbage.push_back(GarbageFile{name, uint64_t(st.st_size)});
    }
    ::closedir(d);
    std::sort(garbage.begin(), garbage.end(), [](const GarbageFile &a, const GarbageFile &b) { return a.name < b.name; });
    return garbage;
}

std::vector<GarbageFile> collect_garbage(const std::string &dir, bool dry_run,
                                         const std::function<bool(const GarbageFile &)> &each) {
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) throw Error(Code::not_found, "no directory '" + dir + "'");
    DirectoryLock lock;
    if (!dry_run) lock = DirectoryLock(dir);  // a save in progress finishes first
    return collect_garbage_held(dir, dry_run, each);
}

std::vector<GarbageFile> collect_garbage_held(const std::string &dir, bool dry_run,
                                              const std::function<bool(const GarbageFile &)> &each) {
    std::vector<std::string> referenced;
    if (metadata_state(dir) == MetadataState::checkpoint) {
        // A damaged checkpoint throws here: its files may still be worth recovering.
        FileSystemReader reader(dir, LoadOptions{});
        for (const DataFileMeta &f : reader.read_metadata().files) referenced.push_back(f.name);
    }
    std::vector<GarbageFile> handled;
    for (const GarbageFile &g : find_garbage(dir, referenced)) {
        if (each && !each(g)) break;
        if (!dry_run && ::unlink(join(dir, g.name).c_str()) != 0) {
            if (errno == ENOENT) continue;
            throw_errno(Code::io, "remove '" + join(dir, g.name) + "'", errno);
        }
        handled.push_back(g);
    }
    return handled;
}

}  // namespace shardpoint
