// Progress reports and cancellation of one long operation (a save's write, a load, a verify).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>

namespace shardpoint {

enum class ProgressPhase : int32_t { write = 1, read = 2, verify = 3, convert = 4 };

// The host's callback: `done` of `total` bytes of `phase` are through. Returns false to cancel.
using ProgressCallback = std::function<bool(ProgressPhase phase, uint64_t done, uint64_t total)>;

// Bytes are counted by any I/O thread; the callback runs only on the thread that started the
// operation (host runtimes such as Python and Go want their callbacks on a known thread), at the
// start, at most every `interval` in between, and once more when everything is through.
// Cancellation is cooperative: I/O threads stop before their next piece of work, and the
// operation then throws Code::canceled.
class Progress {
public:
    Progress(ProgressCallback callback, ProgressPhase phase);
    Progress(const Progress &) = delete;
    Progress &operator=(const Progress &) = delete;

    // Calling thread: sets the total and reports 0 of it (total may be 0).
    void start(uint64_t total);
    // Any thread.
    void advance(uint64_t bytes) noexcept { done_.fetch_add(bytes, std::memory_order_relaxed); }
    bool canceled() const noexcept { return canceled_.load(std::memory_order_relaxed); }
    // Calling thread: reports when `interval` has passed since the last report.
    void poll();
    // Calling thread: reports done == total, unless canceled.
    void finish();
    // Throws Code::canceled when the callback asked to cancel.
    void throw_if_canceled() const;

    static constexpr std::chrono::milliseconds interval{50};

private:
    void report();

    ProgressCallback callback_;
    ProgressPhase phase_;
    uint64_t total_ = 0;
    std::atomic<uint64_t> done_{0};
    std::atomic<bool> canceled_{false};
    std::chrono::steady_clock::time_point last_report_;
};

}  // namespace shardpoint
