#include "shardpoint/parallel.hpp"

#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "shardpoint/error.hpp"

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

Progress::Progress(ProgressCallback callback, ProgressPhase phase) : callback_(std::move(callback)), phase_(phase) {}

void Progress::report() {
    last_report_ = std::chrono::steady_clock::now();
    if (canceled()) return;
    if (!callback_(phase_, std::min(done_.load(std::memory_order_relaxed), total_), total_)) canceled_ = true;
}

void Progress::start(uint64_t total) {
    total_ = total;
    done_ = 0;
    report();
}

void Progress::poll() {
    if (std::chrono::steady_clock::now() - last_report_ >= interval) report();
}

void Progress::finish() {
    if (canceled()) return;
    done_ = total_;
    report();
}

void Progress::throw_if_canceled() const {
    if (canceled()) throw Error(Code::canceled, "canceled by the progress callback");
}

void parallel_for(size_t count, unsigned threads, const std::function<void(size_t, unsigned)> &task, Progress *progress) {
    if (count == 0) return;
    threads = worker_count(count, threads);
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    std::exception_ptr first_error;
    std::mutex mutex;  // guards first_error and running
    std::condition_variable finished;
    unsigned running = threads - 1;  // helper threads still working
    auto stop = [&] { return failed.load() || (progress && progress->canceled()); };
    auto record = [&] {
        std::lock_guard<std::mutex> lock(mutex);
        if (!first_error) first_error = std::current_exception();
        failed = true;
    };
    auto worker = [&](unsigned id) {
        for (;;) {
            size_t i = next.fetch_add(1);
            if (i >= count || stop()) return;
            try {
                task(i, id);
                if (id == 0 && progress) progress->poll();
            } catch (...) {
                record();
            }
        }
    };
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < threads; ++t)
        pool.emplace_back([&, t] {
            worker(t);
            std::lock_guard<std::mutex> lock(mutex);
            --running;
            finished.notify_one();
        });
    worker(0);
    if (progress) {  // keep reporting while the other workers finish their last tasks
        std::unique_lock<std::mutex> lock(mutex);
        while (running > 0) {
            if (finished.wait_for(lock, Progress::interval, [&] { return running == 0; })) break;
            lock.unlock();
            try {
                progress->poll();
            } catch (...) {
                record();
            }
            lock.lock();
        }
    }
    for (auto &t : pool) t.join();
    if (first_error) std::rethrow_exception(first_error);
    if (progress) progress->throw_if_canceled();
}

}  // namespace shardpoint
