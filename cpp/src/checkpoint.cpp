#include "shardpoint/checkpoint.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>

#include "shardpoint/error.hpp"
#include "shardpoint/layout.hpp"
#include "shardpoint/parallel.hpp"
#include "shardpoint/metadata_codec.hpp"
#include "shardpoint/wire.hpp"
#include "describe.hpp"
#include "storage_io.hpp"

namespace shardpoint {

#ifndef SHARDPOINT_VERSION_TEXT
#define SHARDPOINT_VERSION_TEXT "0.0.0"
#endif

std::string library_version() { return SHARDPOINT_VERSION_TEXT; }

namespace {

// A collective outcome: code 0, or the error and who caused it (rank -1: the coordinator's
// decision about the whole save, reported with its own code on every rank).
struct Outcome {
    int code = 0;
    int rank = -1;
    std::string step;
    std::string message;
    bool committed = false;  // the metadata is in place despite the error: keep every data file
};

std::string encode_outcome(const Outcome &o) {
    WireWriter w;
    w.u32(uint32_t(o.code));
    w.u32(uint32_t(o.rank));
    w.str(o.step);
    w.str(o.message);
    w.u32(o.committed ? 1 : 0);
    return w.take();
}

Outcome decode_outcome(WireReader &r) {
    Outcome o;
    o.code = int(r.u32());
    o.rank = int(r.u32());
    o.step = r.str();
    o.message = r.str();
    o.committed = r.u32() != 0;
    return o;
}

// Turns an agreed failure into this rank's exception.
[[noreturn]] void raise(const Outcome &o, int my_rank) {
    if (o.rank < 0 || o.rank == my_rank) throw Error(Code(o.code), o.message);
    throw Error(Code::rank, "rank " + std::to_string(o.rank) + " failed during " + o.step + ": " + o.message);
}

Status status_of(const Error &e) { return Status{int(e.code()), -1, e.what()}; }

// A phase's message with this rank's status in front: a rank that failed still takes part in
// the collective, and the coordinator learns who failed and why.
std::string with_status(const Status &status, const std::string &message) {
    WireWriter w;
    w.u32(uint32_t(status.code));
    w.str(status.message);
    w.str(message);
    return w.take();
}

// Every rank's gathered message without its status; the first failing rank's status (if any)
// becomes the outcome of `step`.
Outcome split_all(std::vector<std::string> &gathered, std::vector<std::string> &messages, const char *step) {
    Outcome outcome;
    messages.assign(gathered.size(), std::string());
    for (size_t r = 0; r < gathered.size(); ++r) {
        WireReader rd(std::move(gathered[r]));
        int code = int(rd.u32());
        std::string why = rd.str();
        messages[r] = rd.str();
        if (code != 0 && outcome.code == 0) outcome = Outcome{code, int(r), step, why};
    }
    return outcome;
}

// Runs one phase of this rank, turning its failure into a Status.
template <class F>
Status attempt(F &&phase, const char *oom_what) {
    try {
        phase();
        return Status{};
    } catch (const Error &e) {
        return status_of(e);
    } catch (const std::bad_alloc &) {
        return Status{int(Code::out_of_memory), -1, std::string("out of memory while ") + oom_what};
    }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Save: the phases of CheckpointWriter run over a Comm.

SaveSession::SaveSession(std::string dir, Comm *comm, SaveOptions options)
    : comm_(comm ? comm : &single_), writer_(std::move(dir), std::move(options)) {}

void SaveSession::add_tensor(const std::string &fqn, DType dtype, Dims shape, Dims offsets, Dims sizes, const void *data,
                             Strides strides) {
    require(!committed_, Code::state, "this save was already committed");
    writer_.add_tensor(fqn, dtype, std::move(shape), std::move(offsets), std::move(sizes), data, std::move(strides));
}

// Runs add(i) for i in [0, count); when one throws, undo(mark) and rethrow naming position i.
template <class Add, class Undo>
static void add_all_or_nothing(size_t count, Add &&add, Undo &&undo) {
    size_t i = 0;
    try {
        for (; i < count; ++i) add(i);
    } catch (const Error &e) {
        undo();
        throw Error(e.code(), "item " + std::to_string(i) + " of the batch: " + e.what());
    } catch (...) {
        undo();
        throw;
    }
}

void SaveSession::add_tensors(std::vector<TensorChunk> chunks) {
    require(!committed_, Code::state, "this save was already committed");
    size_t mark = writer_.item_count();
    add_all_or_nothing(
        chunks.size(),
        [&](size_t i) {
            TensorChunk &c = chunks[i];
            writer_.add_tensor(c.fqn, c.dtype, std::move(c.global_shape), std::move(c.offsets), std::move(c.sizes),
                               c.data, std::move(c.strides));
        },
        [&] { writer_.drop_items_from(mark); });
}

void SaveSession::add_bytes(const std::string &fqn, const void *data, uint64_t len) {
    require(!committed_, Code::state, "this save was already committed");
    writer_.add_bytes(fqn, data, len);
}

void SaveSession::set_metadata(const std::string &key, const std::string &value) {
    require(!committed_, Code::state, "this save was already committed");
    writer_.set_metadata(key, value);
}

void SaveSession::set_progress(ProgressCallback callback) {
    require(!committed_, Code::state, "this save was already committed");
    user_progress_ = callback;
    writer_.set_progress(std::move(callback));
}

namespace {
constexpr uint64_t staging_alignment = 64;  // a cache line: copies and checksums start aligned
}

uint64_t SaveSession::staging_bytes() const {
    uint64_t total = 0;
    for (size_t i = 0; i < writer_.item_count(); ++i) total = io::align_up(total, staging_alignment) + writer_.item(i).nbytes();
    return total;
}

void SaveSession::commit_async(Staging &staging) {
    require(!committed_, Code::state, "this save was already committed");
    const uint64_t needed = staging_bytes();
    if (needed > staging.capacity())
        throw Error(Code::range, "this rank's data takes " + std::to_string(needed) + " bytes of staging, the area holds " +
                                     std::to_string(staging.capacity()));
    staging.acquire();
    struct Piece {
        size_t item;
        uint64_t first, count;  // elements (bytes for a blob) of the item, in C order
        unsigned char *dst;
    };
    std::vector<Piece> pieces;
    std::vector<unsigned char *> dst_of(writer_.item_count());
    uint64_t at = 0;
    for (size_t i = 0; i < writer_.item_count(); ++i) {
        const WriteItem &w = writer_.item(i);
        at = io::align_up(at, staging_alignment);
        dst_of[i] = staging.bytes() + at;
        const uint64_t isz = w.kind == EntryKind::bytes ? 1 : dtype_size(int32_t(w.dtype));
        const uint64_t n = w.nbytes() / isz;
        // Pieces of about 8 MiB, so that every I/O thread copies.
        const uint64_t step = std::max<uint64_t>(1, (8ull << 20) / isz);
        for (uint64_t e = 0; e < n; e += step) pieces.push_back(Piece{i, e, std::min(step, n - e), dst_of[i] + e * isz});
        at += w.nbytes();
    }
    try {
        parallel_for(pieces.size(), writer_.io_threads(), [&](size_t k, unsigned) {
            const Piece &p = pieces[k];
            const WriteItem &w = writer_.item(p.item);
            const unsigned char *src = static_cast<const unsigned char *>(w.data);
            const uint64_t isz = w.kind == EntryKind::bytes ? 1 : dtype_size(int32_t(w.dtype));
            if (w.strides.empty() || is_c_contiguous(w.sizes, w.strides)) std::memcpy(p.dst, src + p.first * isz, p.count * isz);
            else gather_elements(src, w.sizes, w.strides, isz, p.first, p.count, p.dst);
        });
    } catch (...) {
        staging.release();
        throw;
    }
    // The items now read the staging area; the caller's memory is given back if nothing starts.
    std::vector<std::pair<const void *, Strides>> original;
    for (size_t i = 0; i < writer_.item_count(); ++i) {
        original.emplace_back(writer_.item(i).data, writer_.item(i).strides);
        if (writer_.item(i).data) writer_.move_item_data(i, dst_of[i], {});
    }
    // Cancellation reaches the write through its progress callback.
    ProgressCallback user = user_progress_;
    writer_.set_progress([this, user](ProgressPhase phase, uint64_t done, uint64_t total) {
        if (cancel_requested_) return false;
        return user ? user(phase, done, total) : true;
    });
    committed_ = async_started_ = true;
    auto run = [this, &staging] {
        std::exception_ptr error;
        try {
            run_commit();
        } catch (...) {
            error = std::current_exception();
        }
        staging.release();
        std::lock_guard<std::mutex> lock(async_mutex_);
        async_error_ = error;
        async_finished_ = true;
        async_done_.notify_all();
    };
    try {
        background_ = std::thread(run);
    } catch (...) {
        for (size_t i = 0; i < original.size(); ++i) writer_.move_item_data(i, original[i].first, original[i].second);
        writer_.set_progress(user_progress_);
        staging.release();
        committed_ = async_started_ = false;
        throw;
    }
}

void SaveSession::wait() {
    require(async_started_, Code::state, "no asynchronous commit was started");
    {
        std::unique_lock<std::mutex> lock(async_mutex_);
        async_done_.wait(lock, [&] { return async_finished_; });
    }
    if (background_.joinable()) background_.join();
    if (async_error_) std::rethrow_exception(async_error_);
}

bool SaveSession::finished() {
    require(async_started_, Code::state, "no asynchronous commit was started");
    std::lock_guard<std::mutex> lock(async_mutex_);
    return async_finished_;
}

SaveSession::~SaveSession() {
    if (background_.joinable()) background_.join();
}

void SaveSession::commit() {
    require(!committed_, Code::state, "this save was already committed");
    committed_ = true;
    run_commit();
}

void SaveSession::run_commit() {
    // Whatever the outcome, the directory's save lock is free once commit returns, not only
    // when the handle is freed.
    struct ReleaseLock {
        CheckpointWriter &writer;
        ~ReleaseLock() { writer.release_lock(); }
    } release_lock{writer_};
    Comm &comm = *comm_;
    const int rank = comm.rank(), world = comm.size();

    // 1. Local plans; the coordinator gathers them and decides every rank's final plan.
    std::string local;
    Status planned_here = attempt([&] {
        writer_.set_up(rank, world);
        local = writer_.local_plan();
    }, "planning");
    std::vector<std::string> gathered = gather_strings(comm, with_status(planned_here, local));
    std::string decision;
    if (rank == 0) {
        std::vector<std::string> plans, finals;
        Outcome outcome = split_all(gathered, plans, "planning");
        if (outcome.code == 0) {
            try {
                finals = writer_.global_plan(plans);
            } catch (const Error &e) {
                outcome = Outcome{int(e.code()), -1, "planning", e.what()};
            }
        }
        WireWriter w;
        w.str(encode_outcome(outcome));
        for (int r = 0; r < world; ++r) w.str(outcome.code == 0 ? finals[r] : std::string());
        decision = w.take();
    }
    gathered.clear();
    decision = broadcast_string(comm, decision);
    WireReader dr(decision);
    WireReader outcome_reader(dr.str());
    Outcome planned = decode_outcome(outcome_reader);
    std::string final_plan;
    for (int r = 0; r < world; ++r) {
        std::string f = dr.str();
        if (r == rank) final_plan = std::move(f);
    }
    if (planned.code != 0) raise(planned, rank);

    // 2. Every rank writes what its final plan gives it.
    std::string results;
    Status wrote = attempt([&] {
        try {
            results = writer_.write(final_plan);
        } catch (const Error &e) {
            if (e.code() != Code::canceled || !cancel_requested_) throw;
        }
        // A cancel asked for while writing, even after the last progress report, still counts.
        if (cancel_requested_) throw Error(Code::canceled, "canceled by shardpoint_save_cancel");
    }, "writing");
    // A communicator failure from here on: rank 0 knows whether it committed and cleans up if it
    // did not; other ranks cannot know, so they keep their data file rather than risk deleting
    // part of a committed checkpoint (debris that the next save or shardpoint_gc removes).
    auto comm_failed = [&](const Error &e) -> Error {
        if (rank == 0) {
            writer_.abort();
            return Error(e.code(), std::string(e.what()) + (writer_.committed() ? " (after the checkpoint was committed)" : ""));
        }
        return Error(e.code(), std::string(e.what()) +
                                   " (after this rank wrote its data: whether rank 0 committed is unknown here, so its data file was kept)");
    };
    try {
        gathered = gather_strings(comm, with_status(wrote, results));
    } catch (const Error &e) {
        throw comm_failed(e);
    }

    // 3. The coordinator builds the metadata from every rank's results and commits it.
    std::string final_outcome;
    if (rank == 0) {
        std::vector<std::string> all;
        Outcome outcome = split_all(gathered, all, "writing its data");
        if (outcome.code == 0) {
            try {
                writer_.finish(all);
            } catch (const Error &e) {
                // Every rank must learn these two as they are: the checkpoint exists (not durable)
                // or another save won (exists); others are rank 0's failure.
                const bool shared = e.code() == Code::not_durable || e.code() == Code::exists;
                outcome = Outcome{int(e.code()), shared ? -1 : 0, "commit", e.what()};
                outcome.committed = writer_.committed();
            } catch (const std::bad_alloc &) {
                outcome = Outcome{int(Code::out_of_memory), 0, "commit", "out of memory while committing"};
            }
        }
        final_outcome = encode_outcome(outcome);
    }
    try {
        final_outcome = broadcast_string(comm, final_outcome);
    } catch (const Error &e) {
        throw comm_failed(e);
    }
    WireReader fr(final_outcome);
    Outcome done = decode_outcome(fr);
    if (done.code != 0) {
        if (!done.committed) writer_.abort();  // nothing was committed: remove this save's files
        raise(done, rank);
    }
}

// ---------------------------------------------------------------------------------------------
// Load

Reader::Reader(std::string dir, LoadOptions options, Comm *comm) : dir_(std::move(dir)), storage_(dir_, options) {
    metadata_ = comm && comm->size() > 1 ? read_shared_metadata(*comm) : storage_.read_metadata();
    storage_.set_up_storage_reader(metadata_);
    indexes_.resize(metadata_.entries.size());
    for (const EntryMeta &e : metadata_.entries) {
        uint64_t covered = 0, stored = 0;
        for (const ChunkMeta &c : e.chunks) {
            covered += product(c.box.sizes);
            stored += c.extent.stored_length;
        }
        covered_.push_back(covered);
        stored_.push_back(stored);
        total_stored_ += stored;
    }
}

Metadata Reader::read_shared_metadata(Comm &comm) {
    // Rank 0 decodes before it sends, so a damaged file fails every rank with rank 0's error.
    bool root = comm.rank() == 0;
    Metadata metadata;
    std::string bytes, status;
    if (root) {
        Status read = attempt([&] {
            std::vector<unsigned char> file = storage_.read_metadata_bytes();
            metadata = decode_metadata(file.data(), file.size());
            bytes.assign(file.begin(), file.end());
        }, "reading the metadata");
        WireWriter w;
        w.u32(uint32_t(read.code));
        w.str(read.message);
        status = w.take();
    }
    WireReader agreed(broadcast_string(comm, status));
    Code code = Code(agreed.u32());
    std::string why = agreed.str();
    if (code != Code::ok) throw Error(code, root ? why : "rank 0 reading the metadata: " + why);
    bytes = broadcast_string(comm, bytes);
    if (!root) metadata = decode_metadata(reinterpret_cast<const unsigned char *>(bytes.data()), bytes.size());
    return metadata;
}

const ChunkIndex &Reader::index_of(const EntryMeta *entry) {
    size_t i = size_t(entry - metadata_.entries.data());
    std::lock_guard<std::mutex> lock(index_mutex_);
    if (!indexes_[i]) indexes_[i] = std::make_unique<ChunkIndex>(*entry);
    return *indexes_[i];
}

size_t Reader::find_chunk(const EntryMeta *entry, const Dims &offsets) {
    require(offsets.size() == entry->shape.size(), Code::shape,
            "'" + entry->fqn + "' has " + std::to_string(entry->shape.size()) + " dimensions, not " + std::to_string(offsets.size()));
    // The chunks holding the element at `offsets`: at most one, as chunks are disjoint.
    std::vector<size_t> hits;
    index_of(entry).overlapping(Box{offsets, Dims(offsets.size(), 1)}, hits);
    for (size_t c : hits)
        if (entry->chunks[c].box.offsets == offsets) return c;
    throw Error(Code::not_found, "'" + entry->fqn + "' has no saved chunk at offsets " + describe(offsets));
}

LoadSession::LoadSession(Reader &reader, Comm *comm) : reader_(reader), comm_(comm) {}

const EntryMeta *LoadSession::find(const std::string &fqn) {
    require(!executed_, Code::state, "this load was already executed");
    const EntryMeta *entry = reader_.metadata().find(fqn);
    if (entry) return entry;
    if (reader_.options().allow_partial) {
        ++skipped_;
        return nullptr;
    }
    throw Error(Code::not_found, "no entry '" + fqn + "' in the checkpoint");
}

const EntryMeta *LoadSession::find_tensor(const std::string &fqn, DType dtype) {
    const EntryMeta *entry = find(fqn);
    if (!entry) return nullptr;
    require(entry->kind == EntryKind::tensor, Code::kind, "'" + fqn + "' is a bytes entry, not a tensor");
    if (dtype != entry->dtype) {
        const char *asked = dtype_name(int32_t(dtype));
        throw Error(Code::dtype, "'" + fqn + "' is " + dtype_name(int32_t(entry->dtype)) + ", not " + (asked ? asked : "an unknown dtype"));
    }
    return entry;
}

void LoadSession::add_request(ReadRequest request) {
    LoadPlan one;
    one.requests.push_back(std::move(request));
    create_local_load_plan(one, [&](const EntryMeta *e) -> const ChunkIndex & { return reader_.index_of(e); });
    for (ReadItem &item : one.items) {
        item.request = plan_.requests.size();
        plan_.items.push_back(std::move(item));
    }
    plan_.requests.push_back(std::move(one.requests[0]));
}

void LoadSession::add_tensor(const std::string &fqn, DType dtype, uint32_t ndim, Dims offsets, Dims sizes, void *dst,
                             Strides strides) {
    const EntryMeta *entry = find_tensor(fqn, dtype);
    if (!entry) return;
    require(ndim == entry->shape.size(), Code::shape,
            "'" + fqn + "' has " + std::to_string(entry->shape.size()) + " dimensions, not " + std::to_string(ndim));
    Box box{std::move(offsets), std::move(sizes)};
    require(box_inside(box, entry->shape), Code::shape,
            "'" + fqn + "': the requested box " + describe(box) + " lies outside the tensor's shape " + describe(entry->shape));
    require(product(box.sizes) == 0 || dst != nullptr, Code::invalid_argument, "'" + fqn + "': destination is NULL");
    add_request(ReadRequest{entry, std::move(box), dst, std::move(strides)});
}

void LoadSession::add_tensors(std::vector<TensorRequest> requests) {
    require(!executed_, Code::state, "this load was already executed");
    size_t requests_mark = plan_.requests.size(), items_mark = plan_.items.size();
    uint64_t skipped_mark = skipped_;
    add_all_or_nothing(
        requests.size(),
        [&](size_t i) {
            TensorRequest &r = requests[i];
            if (r.whole) {
                const EntryMeta *entry = find_tensor(r.fqn, r.dtype);
                if (!entry) return;
                r.sizes = entry->shape;
                r.offsets.assign(entry->shape.size(), 0);
            }
            add_tensor(r.fqn, r.dtype, r.ndim, std::move(r.offsets), std::move(r.sizes), r.dst, std::move(r.strides));
        },
        [&] {
            plan_.requests.erase(plan_.requests.begin() + long(requests_mark), plan_.requests.end());
            plan_.items.erase(plan_.items.begin() + long(items_mark), plan_.items.end());
            skipped_ = skipped_mark;
        });
}

void LoadSession::add_bytes(const std::string &fqn, void *dst, uint64_t capacity) {
    const EntryMeta *entry = find(fqn);
    if (!entry) return;
    require(entry->kind == EntryKind::bytes, Code::kind, "'" + fqn + "' is a tensor, not a bytes entry");
    uint64_t len = entry->shape[0];
    require(capacity >= len, Code::range,
            "'" + fqn + "' is " + std::to_string(len) + " bytes, the buffer holds " + std::to_string(capacity));
    require(len == 0 || dst != nullptr, Code::invalid_argument, "'" + fqn + "': destination is NULL");
    add_request(ReadRequest{entry, Box{{0}, {len}}, dst, {}});
}

void LoadSession::add_chunk(const std::string &fqn, DType dtype, size_t chunk, Dims storage_offsets, Dims lengths, void *dst,
                            Strides strides) {
    const EntryMeta *entry = find_tensor(fqn, dtype);
    if (!entry) return;
    require(chunk < entry->chunks.size(), Code::range,
            "'" + fqn + "' has " + std::to_string(entry->chunks.size()) + " saved chunks, not chunk " + std::to_string(chunk));
    const Box &saved = entry->chunks[chunk].box;
    Box inside{std::move(storage_offsets), std::move(lengths)};
    require(box_inside(inside, saved.sizes), Code::shape,
            "'" + fqn + "': the box " + describe(inside) + " lies outside saved chunk " + std::to_string(chunk) + " (" + describe(saved) + ")");
    require(product(inside.sizes) == 0 || dst != nullptr, Code::invalid_argument, "'" + fqn + "': destination is NULL");
    if (product(inside.sizes) == 0) return;
    ReadRequest request{entry, Box{{}, inside.sizes}, dst, std::move(strides)};
    for (size_t d = 0; d < inside.offsets.size(); ++d) request.box.offsets.push_back(saved.offsets[d] + inside.offsets[d]);
    ReadItem item;
    item.request = plan_.requests.size();
    item.entry = entry;
    item.chunk = chunk;
    item.storage_offsets = std::move(inside.offsets);
    item.dest_offsets = Dims(item.storage_offsets.size(), 0);
    item.lengths = request.box.sizes;
    plan_.items.push_back(std::move(item));
    plan_.requests.push_back(std::move(request));
}

void LoadSession::set_progress(ProgressCallback callback) {
    require(!executed_, Code::state, "this load was already executed");
    progress_callback_ = std::move(callback);
}

void LoadSession::execute() {
    require(!executed_, Code::state, "this load was already executed");
    executed_ = true;
    Status mine;
    try {
        std::unique_ptr<Progress> progress;
        if (progress_callback_) progress = std::make_unique<Progress>(progress_callback_, ProgressPhase::read);
        reader_.storage().read_data(reader_.storage().prepare_local_plan(plan_), progress.get());
    } catch (const Error &e) {
        mine = status_of(e);
    } catch (const std::bad_alloc &) {
        mine = Status{int(Code::out_of_memory), -1, "out of memory while reading"};
    }
    if (comm_ == nullptr) {
        if (mine.code != 0) throw Error(Code(mine.code), mine.message);
        return;
    }
    Status agreed = agree_on_status(*comm_, mine);
    if (agreed.code != 0) raise(Outcome{agreed.code, agreed.rank, "reading", agreed.message}, comm_->rank());
}

}  // namespace shardpoint
