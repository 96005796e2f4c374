// Runs tasks on a bounded number of threads. The first exception wins and is rethrown;
// remaining tasks are skipped.
#pragma once

#include <cstddef>
#include <functional>

namespace shardpoint {

unsigned default_io_threads();
// Calls task(i) for i in [0, count) on up to `threads` threads (the caller's thread included).
void parallel_for(size_t count, unsigned threads, const std::function<void(size_t)> &task);

}  // namespace shardpoint
