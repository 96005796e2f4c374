// The host memory asynchronous saves copy their data into before writing it in the background.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace shardpoint {

// Allocated once and reused by save after save, so that a save's copy runs at memory speed:
// the pages are faulted in at creation, on huge pages where the kernel gives them, and locked in
// memory where the process may lock that much. One save uses it at a time.
class Staging {
public:
    explicit Staging(uint64_t capacity);
    ~Staging();  // waits until no save uses it
    Staging(const Staging &) = delete;
    Staging &operator=(const Staging &) = delete;

    uint64_t capacity() const { return capacity_; }
    unsigned char *bytes() const { return bytes_; }
    bool locked() const { return locked_; }
    // Blocks while another save uses the area: a second asynchronous save waits for the first.
    void acquire();
    void release();

private:
    uint64_t capacity_;
    unsigned char *bytes_ = nullptr;
    bool locked_ = false;
    std::mutex mutex_;
    std::condition_variable released_;
    bool in_use_ = false;
};

}  // namespace shardpoint
