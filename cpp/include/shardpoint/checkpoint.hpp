// The collective save and load flows (DESIGN.md §3) on top of the planner and the storage layer.
#pragma once

#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "shardpoint/checkpoint_writer.hpp"
#include "shardpoint/comm.hpp"
#include "shardpoint/model.hpp"
#include "shardpoint/planner.hpp"
#include "shardpoint/staging.hpp"
#include "shardpoint/storage.hpp"

namespace shardpoint {

std::string library_version();

// One tensor chunk of a batched add (SaveSession::add_tensors): add_tensor's arguments.
struct TensorChunk {
    std::string fqn;
    DType dtype;
    Dims global_shape, offsets, sizes;
    const void *data;
    Strides strides;
};

// One request of a batched load (LoadSession::add_tensors): add_tensor's arguments, or with
// `whole` the whole saved tensor (offsets and sizes are then ignored).
struct TensorRequest {
    std::string fqn;
    DType dtype;
    uint32_t ndim;
    bool whole;
    Dims offsets, sizes;
    void *dst;
    Strides strides;
};

// One save: each rank adds what it holds, then every rank calls commit(), which runs the
// CheckpointWriter phases over the communicator.
class SaveSession {
public:
    // `comm` may be null (single process); it is borrowed.
    SaveSession(std::string dir, Comm *comm, SaveOptions options);

    void add_tensor(const std::string &fqn, DType dtype, Dims global_shape, Dims offsets, Dims sizes, const void *data,
                    Strides strides);
    void add_bytes(const std::string &fqn, const void *data, uint64_t len);
    // All or nothing: when a chunk is refused, none of the batch is kept and the error names the
    // chunk by its position.
    void add_tensors(std::vector<TensorChunk> chunks);
    void set_metadata(const std::string &key, const std::string &value);
    // Collective: plan, write, commit. Throws the same Code on every rank (Code::rank on ranks
    // other than the one that failed).
    void commit();
    // Reports this rank's write to `callback` on the calling thread; returning false cancels the
    // save on every rank (Code::canceled here, Code::rank elsewhere) and nothing is committed.
    void set_progress(ProgressCallback callback);

    // Asynchronous commit: copies this rank's data into `staging` (Code::range, with nothing
    // changed, when it does not fit; waits first while another save uses the area), then runs
    // commit() on a thread of its own and returns: the caller's memory may change from then on.
    // The communicator is used from that thread until wait() returns, and a progress callback is
    // called there.
    void commit_async(Staging &staging);
    // The bytes of staging this rank's data takes (each item 64-byte aligned).
    uint64_t staging_bytes() const;
    // Blocks until the asynchronous commit ends and throws its error, as commit() would have;
    // later calls give the same outcome.
    void wait();
    bool finished();
    // Asks the asynchronous commit to stop: it fails with Code::canceled unless its data was
    // already written (then it commits). Returns at once.
    void cancel() { cancel_requested_ = true; }
    ~SaveSession();  // waits for an asynchronous commit

private:
    void run_commit();  // commit() without the state checks, on the calling or the background thread

    Comm *comm_;
    SingleComm single_;
    CheckpointWriter writer_;
    bool committed_ = false;
    ProgressCallback user_progress_;
    // The asynchronous commit: its thread, whether it ended and how.
    std::thread background_;
    std::mutex async_mutex_;
    std::condition_variable async_done_;
    bool async_started_ = false, async_finished_ = false;
    std::exception_ptr async_error_;
    std::atomic<bool> cancel_requested_{false};
};

// An open checkpoint: validated metadata, the storage reader and lazily built chunk indexes.
class Reader {
public:
    // With a communicator of more than one rank the constructor is collective: rank 0 reads and
    // validates the metadata file and broadcasts its bytes (or its error), so that N ranks on a
    // shared filesystem cost one metadata read, not N.
    Reader(std::string dir, LoadOptions options, Comm *comm = nullptr);

    const Metadata &metadata() const { return metadata_; }
    FileSystemReader &storage() { return storage_; }
    const LoadOptions &options() const { return storage_.options(); }
    const ChunkIndex &index_of(const EntryMeta *entry);
    // The index of the saved chunk of `entry` whose box starts at `offsets` (DCP's MetadataIndex).
    size_t find_chunk(const EntryMeta *entry, const Dims &offsets);
    uint64_t covered_numel(size_t entry) const { return covered_[entry]; }
    uint64_t stored_bytes(size_t entry) const { return stored_[entry]; }
    uint64_t total_stored_bytes() const { return total_stored_; }

private:
    Metadata read_shared_metadata(Comm &comm);

    std::string dir_;
    FileSystemReader storage_;
    Metadata metadata_;
    std::vector<uint64_t> covered_, stored_;
    uint64_t total_stored_ = 0;
    std::mutex index_mutex_;
    std::vector<std::unique_ptr<ChunkIndex>> indexes_;
};

// A batch of read requests against one Reader, planned as they are added.
class LoadSession {
public:
    // `comm` may be null; when given, execute() is collective over it.
    LoadSession(Reader &reader, Comm *comm);

    void add_tensor(const std::string &fqn, DType dtype, uint32_t ndim, Dims offsets, Dims sizes, void *dst,
                    Strides strides);
    void add_bytes(const std::string &fqn, void *dst, uint64_t capacity);
    // All or nothing, as SaveSession::add_tensors.
    void add_tensors(std::vector<TensorRequest> requests);
    // A ReadItem planned by the host framework: the box (`storage_offsets`, `lengths`) inside
    // saved chunk `chunk` of tensor `fqn`, into `dst` (the box's first element) with `strides`.
    void add_chunk(const std::string &fqn, DType dtype, size_t chunk, Dims storage_offsets, Dims lengths, void *dst,
                   Strides strides);
    uint64_t skipped() const { return skipped_; }
    // Reports this rank's read to `callback` on the calling thread; returning false cancels this
    // rank's read (Code::canceled; with a communicator, the other ranks then fail with Code::rank).
    void set_progress(ProgressCallback callback);
    void execute();

private:
    // The entry or nullptr (counted as skipped) when partial loads are allowed; throws otherwise.
    const EntryMeta *find(const std::string &fqn);
    // find(), then the entry must be a tensor of `dtype` (nothing is converted).
    const EntryMeta *find_tensor(const std::string &fqn, DType dtype);
    void add_request(ReadRequest request);

    Reader &reader_;
    Comm *comm_;
    LoadPlan plan_;
    uint64_t skipped_ = 0;
    bool executed_ = false;
    ProgressCallback progress_callback_;
};

}  // namespace shardpoint
