// Runs tasks on a bounded number of threads. The first exception wins and is rethrown;
// remaining tasks are skipped.
#pragma once

#include <cstddef>
#include <functional>

#include "shardpoint/progress.hpp"

namespace shardpoint {

unsigned default_io_threads();
// The number of workers parallel_for(count, threads, ...) uses.
unsigned worker_count(size_t count, unsigned threads);
// Calls task(i, worker) for i in [0, count) on worker_count(count, threads) threads (the
// caller's thread included); `worker` < worker_count identifies the thread, e.g. to pick its
// scratch buffer. With `progress`, the caller's thread polls it between tasks (and while it waits
// for the other workers), no task starts once it is canceled, and a canceled run throws
// Code::canceled.
void parallel_for(size_t count, unsigned threads, const std::function<void(size_t, unsigned)> &task,
                  Progress *progress = nullptr);

}  // namespace shardpoint
