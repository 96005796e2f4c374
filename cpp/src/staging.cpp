#include "shardpoint/staging.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "shardpoint/error.hpp"

namespace shardpoint {

Staging::Staging(uint64_t capacity) : capacity_(capacity) {
    if (capacity == 0) return;
    void *p = ::mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        throw Error(errno == ENOMEM ? Code::out_of_memory : Code::io,
                    "allocate a staging area of " + std::to_string(capacity) + " bytes: " + std::strerror(errno));
    }
    bytes_ = static_cast<unsigned char *>(p);
#ifdef MADV_HUGEPAGE
    ::madvise(p, capacity, MADV_HUGEPAGE);  // fewer TLB misses and page faults while copying
#endif
    // Locked pages are never swapped out and are faulted in now; where locking is not allowed,
    // touching every page faults them in instead. Either way the first save copies at full speed.
    locked_ = ::mlock(p, capacity) == 0;
    if (!locked_) std::memset(p, 0, capacity);
}

Staging::~Staging() {
    {
        std::unique_lock<std::mutex> lock(mutex_);
        released_.wait(lock, [&] { return !in_use_; });
    }
    if (bytes_) ::munmap(bytes_, capacity_);
}

void Staging::acquire() {
    std::unique_lock<std::mutex> lock(mutex_);
    released_.wait(lock, [&] { return !in_use_; });
    in_use_ = true;
}

void Staging::release() {
    // Notified under the lock: a destructor woken by it cannot destroy the condition variable
    // while this call still uses it.
    std::lock_guard<std::mutex> lock(mutex_);
    in_use_ = false;
    released_.notify_all();
}

}  // namespace shardpoint
