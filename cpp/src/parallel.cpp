#include "shardpoint/parallel.hpp"

#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace shardpoint {

unsigned default_io_threads() {
    unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 2 : n;
}

unsigned worker_count(size_t count, unsigned threads) {
    if (threads == 0) threads = default_io_threads();
    if (threads > count) threads = unsigned(count);
    return threads == 0 ? 1 : threads;
}

void parallel_for(size_t count, unsigned threads, const std::function<void(size_t, unsigned)> &task) {
    if (count == 0) return;
    threads = worker_count(count, threads);
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    std::exception_ptr first_error;
    std::mutex error_mutex;
    auto worker = [&](unsigned id) {
        for (;;) {
            size_t i = next.fetch_add(1);
            if (i >= count || failed.load()) return;
            try {
                task(i, id);
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (!first_error) first_error = std::current_exception();
                failed = true;
            }
        }
    };
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back(worker, t);
    worker(0);
    for (auto &t : pool) t.join();
    if (first_error) std::rethrow_exception(first_error);
}

}  // namespace shardpoint
