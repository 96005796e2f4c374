// Storage: where and how bytes are written and read. Follows DCP's StorageWriter /
// StorageReader call sequence; FileSystemWriter / FileSystemReader implement it on a directory.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "shardpoint/model.hpp"
#include "shardpoint/progress.hpp"

namespace shardpoint {

struct SaveOptions {
    bool overwrite = false;
    bool fsync = true;           // durable by default (FORMAT.md section 5)
    bool allow_partial = false;  // accept tensors whose chunks leave part of the shape uncovered
    // How extents are stored. none with compression_level 1..9 means deflate (what 0.1 did).
    // zlib_blocks and zstd_blocks compress every block alone (format 2); level 0 is their fast
    // default (1). shuffle byte-shuffles each block of a tensor before compressing it.
    Transform compression = Transform::none;
    int compression_level = 0;
    bool shuffle = false;
    unsigned io_threads = 0;    // 0: one per core
    uint32_t alignment = 4096;
    uint32_t block_size = 64u << 10;  // small enough that a partial read verifies little extra
    std::string checkpoint_id;
};

// `o` with its compression spelled out (legacy level-only deflate made explicit, a codec's level 0
// made its default); Code::invalid_argument for a bad alignment, level or shuffle.
SaveOptions checked_save_options(SaveOptions o);

struct LoadOptions {
    bool verify = true;
    bool allow_partial = false;
    unsigned io_threads = 0;
};

// Save side, in call order: reset, set_up_storage_writer, prepare_local_plan,
// prepare_global_plan (coordinator), write_data, finish (coordinator); abort on failure.
class StorageWriter {
public:
    virtual ~StorageWriter() = default;
    virtual void reset(const std::string &save_id) = 0;
    virtual void set_up_storage_writer(bool is_coordinator, int rank, int world_size) = 0;
    virtual SavePlan prepare_local_plan(SavePlan plan) = 0;
    virtual std::vector<SavePlan> prepare_global_plan(std::vector<SavePlan> plans) = 0;
    // Writes the plan's items; returns where each landed (same order as plan.items) and the
    // data file's final size.
    virtual std::vector<WriteResult> write_data(const SavePlan &plan, uint64_t &file_size) = 0;
    virtual void finish(const Metadata &metadata) = 0;
    virtual void abort(const SavePlan &plan) = 0;
};

// Load side: read_metadata, set_up_storage_reader, prepare_local_plan, read_data.
class StorageReader {
public:
    virtual ~StorageReader() = default;
    virtual Metadata read_metadata() = 0;
    virtual void set_up_storage_reader(const Metadata &metadata) = 0;
    virtual LoadPlan prepare_local_plan(LoadPlan plan) = 0;
    virtual void read_data(const LoadPlan &plan) = 0;
};

// The name of the data file rank `rank` writes during save `save_id`.
std::string data_file_name(const std::string &save_id, int rank);
// The temporary name the metadata is written under before it is published.
std::string metadata_temp_name(const std::string &save_id);
// 32 random lowercase hex digits.
std::string new_save_id();
// Creates `dir` and its parents. With `durable`, fsyncs the parent of every directory it created
// so that the new directory entries survive a power loss.
void make_directories(const std::string &dir, bool durable);

// True for the names only shardpoint's own saves create and may therefore delete as debris:
// `data-<32 hex>-r<digits>.bin` and `shardpoint.meta.tmp-<32 hex>`.
bool is_own_file_name(const std::string &name);

// What `DIR/shardpoint.meta` is. A file that is empty, shorter than the header or whose header
// fails its magic or CRC (what a power cut can leave of an unsynced write) is not a checkpoint and
// never blocks a save; one with a valid header is a checkpoint, even if its body is damaged.
enum class MetadataState { absent, not_a_checkpoint, checkpoint };
MetadataState metadata_state(const std::string &dir);

// The save lock of a checkpoint directory: an exclusive flock on the directory itself, held by
// the coordinator for a whole save and by garbage collection, so that neither ever mistakes the
// files of a save in progress for debris. Filesystems without flock give no lock (held() false).
class DirectoryLock {
public:
    DirectoryLock() = default;
    explicit DirectoryLock(const std::string &dir);  // blocks until the lock is free
    ~DirectoryLock();
    DirectoryLock(DirectoryLock &&other) noexcept;
    DirectoryLock &operator=(DirectoryLock &&other) noexcept;
    bool held() const { return held_; }
    // Without waiting (for deleting whole checkpoints, which must skip a save in progress, not
    // wait for it): busy() is true when someone else holds the lock; then nothing is held.
    static DirectoryLock try_lock(const std::string &dir);
    bool busy() const { return busy_; }
    // The locked directory's descriptor (-1 when none), e.g. to check which directory was locked.
    int fd() const { return fd_; }

private:
    int fd_ = -1;
    bool held_ = false;
    bool busy_ = false;
};

struct GarbageFile {
    std::string name;
    uint64_t size = 0;
};
// The files of `dir` with shardpoint's own names that `referenced` does not contain.
std::vector<GarbageFile> find_garbage(const std::string &dir, const std::vector<std::string> &referenced);
// shardpoint_gc: finds (and unless dry_run, removes under the save lock) the garbage of `dir`
// relative to its committed metadata, calling `each` for every file before it is removed; `each`
// returns false to stop. Returns the files handled. Throws the reader's error when the metadata
// is damaged (then nothing is removed).
std::vector<GarbageFile> collect_garbage(const std::string &dir, bool dry_run,
                                         const std::function<bool(const GarbageFile &)> &each);
// The same for a caller that already holds the directory's save lock (or, with dry_run, none).
std::vector<GarbageFile> collect_garbage_held(const std::string &dir, bool dry_run,
                                              const std::function<bool(const GarbageFile &)> &each);

class FileSystemWriter final : public StorageWriter {
public:
    FileSystemWriter(std::string dir, SaveOptions options);
    void reset(const std::string &save_id) override;
    void set_up_storage_writer(bool is_coordinator, int rank, int world_size) override;
    SavePlan prepare_local_plan(SavePlan plan) override;
    // Takes the directory's save lock, refuses (Code::exists) when a checkpoint is present and
    // overwrite is off, names files.
    std::vector<SavePlan> prepare_global_plan(std::vector<SavePlan> plans) override;
    std::vector<WriteResult> write_data(const SavePlan &plan, uint64_t &file_size) override;
    // The same in batches, for hosts that stage their data and want bounded memory: begin_data,
    // then write_items any number of times (each batch's memory is free again once it returns),
    // then end_data. Items land in the file in call order; the file is created by the first
    // non-empty batch.
    void begin_data(const std::string &file_name);
    // With `progress`, counts the items' raw bytes as they are written and stops when canceled.
    std::vector<WriteResult> write_items(const std::vector<WriteItem> &items, Progress *progress = nullptr);
    uint64_t end_data();  // sizes, fsyncs and closes the data file: its final size
    ~FileSystemWriter();
    FileSystemWriter(const FileSystemWriter &) = delete;
    FileSystemWriter &operator=(const FileSystemWriter &) = delete;
    // Commit (FORMAT.md section 5): directory fsync (data file names), metadata through a
    // temporary name, fsync, publish (the commit point; never replaces a concurrent winner unless
    // overwriting), directory fsync (Code::not_durable if it fails), then removes the replaced
    // checkpoint's files and the debris of killed saves.
    void finish(const Metadata &metadata) override;
    void abort(const SavePlan &plan) override;
    // True once finish() has put the new metadata in place: from then on the data files belong
    // to a committed checkpoint and must never be removed by abort().
    bool committed() const { return committed_; }
    const std::string &save_id() const { return save_id_; }
    // Ends the save's hold on the directory's save lock (finish and abort do it too).
    void release_lock() { lock_ = DirectoryLock(); }

private:
    std::vector<WriteResult> write_raw(const std::vector<WriteItem> &items, Progress *progress);
    std::vector<WriteResult> write_compressed(const std::vector<WriteItem> &items, Progress *progress);
    std::vector<WriteResult> write_block_compressed(const std::vector<WriteItem> &items, Progress *progress);

    // Publishes the temporary metadata file as shardpoint.meta: the commit point.
    void publish(const std::string &tmp_path, const std::string &final_path);

    std::string dir_;
    SaveOptions options_;
    std::string save_id_;
    int rank_ = 0;
    bool committed_ = false;
    DirectoryLock lock_;          // coordinator only, from prepare_global_plan to destruction
    bool replace_metadata_ = false;  // overwrite asked, or the existing file is not a checkpoint
    // The data file being written (begin_data .. end_data): its name, descriptor (-1 until the
    // first non-empty batch) and end so far.
    std::string data_name_;
    int data_fd_ = -1;
    uint64_t data_end_ = 0;
};

class FileSystemReader final : public StorageReader {
public:
    FileSystemReader(std::string dir, LoadOptions options);
    ~FileSystemReader() override;
    Metadata read_metadata() override;
    // The metadata file's bytes, checked to be a plausibly sized regular file but not decoded.
    std::vector<unsigned char> read_metadata_bytes();
    void set_up_storage_reader(const Metadata &metadata) override;
    LoadPlan prepare_local_plan(LoadPlan plan) override { return plan; }
    void read_data(const LoadPlan &plan) override { read_data(plan, nullptr); }
    // With `progress`, counts the bytes read (raw bytes for compressed extents) and stops when
    // canceled.
    void read_data(const LoadPlan &plan, Progress *progress);
    // Reads every extent and checks every CRC-32 (whatever options.verify says); with
    // `progress`, counts the stored bytes checked.
    void verify_all(Progress *progress = nullptr);
    const LoadOptions &options() const { return options_; }

private:
    struct OpenFile {
        int fd = -1;
        uint64_t size = 0;
    };
    // Opens data file `index` once (thread-safe) and checks that `extent` lies inside it.
    const OpenFile &open_for(const Extent &extent, const EntryMeta &entry);

    std::string dir_;
    LoadOptions options_;
    const Metadata *metadata_ = nullptr;
    std::mutex files_mutex_;
    std::vector<std::unique_ptr<OpenFile>> files_;
};

}  // namespace shardpoint
