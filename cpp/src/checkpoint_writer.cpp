#include "shardpoint/checkpoint_writer.hpp"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>

#include "describe.hpp"
#include "schema_convert.hpp"
#include "shardpoint.capnp.h"
#include "shardpoint/checkpoint.hpp"
#include "shardpoint/codec.hpp"
#include "shardpoint/error.hpp"
#include "shardpoint/layout.hpp"
#include "shardpoint/metadata_codec.hpp"
#include "shardpoint/planner.hpp"

namespace shardpoint {

namespace {

constexpr uint32_t max_ndim = 32;

void check_fqn(const std::string &fqn) {
    require(!fqn.empty(), Code::invalid_argument, "entry names must not be empty");
    require(fqn.size() <= 4096, Code::invalid_argument, "entry name longer than 4096 bytes");
    require(fqn.find('\0') == std::string::npos, Code::invalid_argument, "entry name contains NUL");
}

// --- Cap'n Proto messages of the phases ------------------------------------------------------

std::string to_bytes(capnp::MessageBuilder &message) {
    kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
    auto bytes = words.asBytes();
    return std::string(reinterpret_cast<const char *>(bytes.begin()), bytes.size());
}

// Reads a message from bytes that crossed between processes: copied into aligned words and read
// with traversal limits, like the metadata; anything malformed is the caller's invalid argument.
class MessageIn {
public:
    MessageIn(const std::string &bytes, const char *what) : what_(what) {
        if (bytes.empty() || bytes.size() % 8 != 0) bad("its length is not a positive multiple of 8");
        words_ = kj::heapArray<capnp::word>(bytes.size() / 8);
        std::memcpy(words_.begin(), bytes.data(), bytes.size());
        try {
            capnp::ReaderOptions options;
            options.traversalLimitInWords = words_.size() * 4 + 1024;
            options.nestingLimit = 16;
            reader_ = std::make_unique<capnp::FlatArrayMessageReader>(kj::ArrayPtr<const capnp::word>(words_.begin(), words_.size()), options);
        } catch (const kj::Exception &e) {
            bad(e.getDescription().cStr());
        }
    }
    template <class T>
    typename T::Reader root() {
        try {
            return reader_->getRoot<T>();
        } catch (const kj::Exception &e) {
            bad(e.getDescription().cStr());
        }
    }
    [[noreturn]] void bad(const std::string &why) const {
        throw Error(Code::invalid_argument, std::string("not a valid ") + what_ + ": " + why);
    }

private:
    const char *what_;
    kj::Array<capnp::word> words_;
    std::unique_ptr<capnp::FlatArrayMessageReader> reader_;
};

Dims dims_of(capnp::List<uint64_t>::Reader list) {
    Dims d(list.size());
    for (unsigned i = 0; i < list.size(); ++i) d[i] = list[i];
    return d;
}

void build_item(schema::PlannedItem::Builder b, const WriteItem &w) {
    b.setFqn(as_text(w.index.fqn));
    b.setKind(w.kind == EntryKind::bytes ? schema::EntryKind::BYTES : schema::EntryKind::TENSOR);
    b.setDtype(static_cast<schema::DType>(int32_t(w.dtype)));
    set_dims(b.initShape(unsigned(w.global_shape.size())), w.global_shape);
    set_dims(b.initOffsets(unsigned(w.index.offsets.size())), w.index.offsets);
    set_dims(b.initSizes(unsigned(w.sizes.size())), w.sizes);
    b.setLengthUnknown(w.length_unknown);
}

// A planned item from another rank, validated as add_tensor / add_bytes validate local ones.
WriteItem read_item(schema::PlannedItem::Reader r, const MessageIn &in) {
    WriteItem w;
    w.index.fqn = text_of(r.getFqn());
    w.kind = r.getKind() == schema::EntryKind::BYTES ? EntryKind::bytes : EntryKind::tensor;
    if (r.getKind() != schema::EntryKind::BYTES && r.getKind() != schema::EntryKind::TENSOR) in.bad("unknown entry kind");
    int32_t dtype = int32_t(r.getDtype());
    if (!dtype_valid(dtype)) in.bad("unknown dtype " + std::to_string(dtype));
    w.dtype = DType(dtype);
    w.global_shape = dims_of(r.getShape());
    w.index.offsets = dims_of(r.getOffsets());
    w.sizes = dims_of(r.getSizes());
    w.length_unknown = r.getLengthUnknown();
    if (w.length_unknown && (w.kind != EntryKind::bytes || w.sizes != Dims{0} || w.index.offsets != Dims{0}))
        in.bad("'" + w.index.fqn + "': only bytes items of sizes [0] can have an unknown length");
    try {
        check_fqn(w.index.fqn);
    } catch (const Error &e) {
        in.bad(e.what());
    }
    if (w.global_shape.size() > max_ndim) in.bad("'" + w.index.fqn + "' has more than 32 dimensions");
    if (!box_inside(w.box(), w.global_shape)) in.bad("'" + w.index.fqn + "': chunk outside its shape");
    if (w.kind == EntryKind::bytes && (w.global_shape.size() != 1 || w.sizes != w.global_shape || w.dtype != DType::u8))
        in.bad("'" + w.index.fqn + "' is a malformed bytes item");
    if (product(w.sizes) > (UINT64_MAX >> 5)) in.bad("'" + w.index.fqn + "' is too large");
    return w;
}

Extent read_extent(schema::Extent::Reader r, MessageIn &in) {
    Extent e;
    if (!read_extent_fields(r, e)) in.bad("an extent has an unknown transform");
    return e;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

CheckpointWriter::CheckpointWriter(std::string dir, SaveOptions options)
    : dir_(std::move(dir)), options_(checked_save_options(std::move(options))), storage_(dir_, options_) {
    require(!dir_.empty(), Code::invalid_argument, "empty checkpoint path");
}

void CheckpointWriter::require_phase(Phase phase, const char *call) const {
    static const char *names[] = {"adding items", "planned", "writing", "written", "finished"};
    if (phase_ != phase)
        throw Error(Code::state, std::string(call) + " is not allowed now: this save is " + names[int(phase_)] +
                                     (phase_ != Phase::adding ? " (each phase runs once, in order)" : ""));
}

void CheckpointWriter::set_up(int rank, int world_size) {
    require_phase(Phase::adding, "set up");
    require(!set_up_, Code::state, "this writer is already set up");
    require(world_size >= 1 && rank >= 0 && rank < world_size, Code::invalid_argument,
            "rank " + std::to_string(rank) + " is not in a job of " + std::to_string(world_size));
    rank_ = rank;
    world_size_ = world_size;
    storage_.set_up_storage_writer(rank == 0, rank, world_size);
    set_up_ = true;
}

void CheckpointWriter::add_item(WriteItem item) {
    require(phase_ == Phase::adding, Code::state, "this save was already planned or committed");
    auto &same = items_by_fqn_[item.index.fqn];
    if (item.kind == EntryKind::bytes && !same.empty())
        throw Error(Code::conflict, "'" + item.index.fqn + "' was already offered by this rank");
    for (size_t k : same) {
        const WriteItem &other = local_.items[k];
        if (other.kind != item.kind || other.dtype != item.dtype || other.global_shape != item.global_shape)
            throw Error(Code::conflict, "'" + item.index.fqn + "' was already offered with a different kind, dtype or shape");
        Box a = other.box(), b = item.box();
        if (product(a.sizes) > 0 && product(b.sizes) > 0 && boxes_overlap(a, b))
            throw Error(Code::conflict, "'" + item.index.fqn + "': the chunk " + describe(b) + " overlaps the chunk " +
                                            describe(a) + " already offered by this rank");
    }
    same.push_back(local_.items.size());
    local_.items.push_back(std::move(item));
}

void CheckpointWriter::drop_items_from(size_t count) {
    require(phase_ == Phase::adding, Code::state, "this save was already planned or committed");
    while (local_.items.size() > count) {
        auto same = items_by_fqn_.find(local_.items.back().index.fqn);
        same->second.pop_back();  // items are appended, so the last one of its name is this one
        if (same->second.empty()) items_by_fqn_.erase(same);
        local_.items.pop_back();
    }
}

void CheckpointWriter::add_tensor(const std::string &fqn, DType dtype, Dims shape, Dims offsets, Dims sizes,
                                  const void *data, Strides strides) {
    check_fqn(fqn);
    require(dtype_valid(int32_t(dtype)), Code::invalid_argument, "unknown dtype " + std::to_string(int32_t(dtype)));
    require(shape.size() <= max_ndim, Code::shape, "'" + fqn + "': more than 32 dimensions");
    Box box{std::move(offsets), std::move(sizes)};
    require(box_inside(box, shape), Code::shape,
            "'" + fqn + "': the chunk " + describe(box) + " lies outside the global shape " + describe(shape));
    uint64_t numel = product(box.sizes);
    require(numel <= (UINT64_MAX >> 5), Code::shape, "'" + fqn + "' is too large");
    require(numel == 0 || data != nullptr, Code::invalid_argument, "'" + fqn + "': data is NULL");
    WriteItem item;
    item.index = MetadataIndex{fqn, std::move(box.offsets)};
    item.kind = EntryKind::tensor;
    item.dtype = dtype;
    item.global_shape = std::move(shape);
    item.sizes = std::move(box.sizes);
    item.data = data;
    if (!strides.empty() && !is_c_contiguous(item.sizes, strides)) item.strides = std::move(strides);
    add_item(std::move(item));
}

void CheckpointWriter::move_item_data(size_t item, const void *data, Strides strides) {
    require(phase_ == Phase::adding, Code::state, "item memory moves only while adding");
    WriteItem &w = local_.items.at(item);
    w.data = data;
    w.strides = std::move(strides);
}

void CheckpointWriter::add_bytes(const std::string &fqn, const void *data, uint64_t len) {
    check_fqn(fqn);
    require(len == 0 || data != nullptr, Code::invalid_argument, "'" + fqn + "': data is NULL");
    WriteItem item;
    item.index = MetadataIndex{fqn, {0}};
    item.kind = EntryKind::bytes;
    item.dtype = DType::u8;
    item.global_shape = {len};
    item.sizes = {len};
    item.data = data;
    add_item(std::move(item));
}

void CheckpointWriter::set_metadata(const std::string &key, const std::string &value) {
    require(phase_ == Phase::adding, Code::state, "this save was already planned or committed");
    for (auto &kv : user_)
        if (kv.first == key) {
            kv.second = value;
            return;
        }
    user_.emplace_back(key, value);
}

void CheckpointWriter::set_framework_metadata(const std::string &key, const std::string &value) {
    require(phase_ != Phase::finished, Code::state, "this save was already finished");
    require(key.find('\0') == std::string::npos && value.find('\0') == std::string::npos, Code::invalid_argument,
            "framework metadata must not contain NUL");
    for (auto &kv : framework_)
        if (kv.first == key) {
            kv.second = value;
            return;
        }
    framework_.emplace_back(key, value);
}

void CheckpointWriter::plan_tensor(const std::string &fqn, DType dtype, Dims shape, Dims offsets, Dims sizes) {
    // add_tensor's checks, which want a non-NULL address: any will do, it is cleared right after
    // and write() refuses the item until bind_tensor gives the real one.
    static const unsigned char no_data_yet = 0;
    add_tensor(fqn, dtype, std::move(shape), std::move(offsets), std::move(sizes), &no_data_yet, {});
    local_.items.back().data = nullptr;
    local_.items.back().bound = false;
}

void CheckpointWriter::plan_bytes(const std::string &fqn) {
    add_bytes(fqn, nullptr, 0);
    WriteItem &item = local_.items.back();
    item.bound = false;
    item.length_unknown = true;
}

std::vector<uint32_t> CheckpointWriter::assigned(const std::string &final_plan) const {
    MessageIn in(final_plan, "final save plan");
    auto msg = in.root<schema::SavePlanMessage>();
    if (!msg.getFinal()) in.bad("it is a local plan, not the coordinator's final plan");
    if (msg.getRank() != uint32_t(rank_)) in.bad("it is rank " + std::to_string(msg.getRank()) + "'s plan");
    std::vector<uint32_t> items;
    for (uint32_t k : msg.getWrites()) {
        if (k >= local_.items.size()) in.bad("it names item " + std::to_string(k) + " of " + std::to_string(local_.items.size()));
        items.push_back(k);
    }
    return items;
}

void CheckpointWriter::bind_tensor(size_t item, const void *data, Strides strides) {
    require(phase_ == Phase::adding || phase_ == Phase::planned || phase_ == Phase::writing, Code::state,
            "items are bound before the save's last write");
    require(item < local_.items.size(), Code::range,
            "item " + std::to_string(item) + " of " + std::to_string(local_.items.size()) + " does not exist");
    WriteItem &w = local_.items[item];
    require(w.kind == EntryKind::tensor && !w.bound, Code::state,
            "item " + std::to_string(item) + " ('" + w.index.fqn + "') is not a tensor planned without data");
    require(product(w.sizes) == 0 || data != nullptr, Code::invalid_argument, "'" + w.index.fqn + "': data is NULL");
    w.data = data;
    w.strides = !strides.empty() && !is_c_contiguous(w.sizes, strides) ? std::move(strides) : Strides{};
    w.bound = true;
}

void CheckpointWriter::bind_bytes(size_t item, const void *data, uint64_t len) {
    require(phase_ == Phase::adding || phase_ == Phase::planned || phase_ == Phase::writing, Code::state,
            "items are bound before the save's last write");
    require(item < local_.items.size(), Code::range,
            "item " + std::to_string(item) + " of " + std::to_string(local_.items.size()) + " does not exist");
    WriteItem &w = local_.items[item];
    require(w.kind == EntryKind::bytes && !w.bound, Code::state,
            "item " + std::to_string(item) + " ('" + w.index.fqn + "') is not a bytes item planned without data");
    require(len == 0 || data != nullptr, Code::invalid_argument, "'" + w.index.fqn + "': data is NULL");
    w.data = data;
    w.global_shape = w.sizes = {len};
    w.length_unknown = false;
    w.bound = true;
}

std::string CheckpointWriter::local_plan() {
    require_phase(Phase::adding, "the local plan");
    require(set_up_, Code::state, "the writer was not set up (rank and world size)");
    capnp::MallocMessageBuilder message;
    auto plan = message.initRoot<schema::SavePlanMessage>();
    plan.setRank(uint32_t(rank_));
    auto items = plan.initItems(unsigned(local_.items.size()));
    for (size_t i = 0; i < local_.items.size(); ++i) build_item(items[unsigned(i)], local_.items[i]);
    phase_ = Phase::planned;
    return to_bytes(message);
}

std::vector<std::string> CheckpointWriter::global_plan(const std::vector<std::string> &local_plans) {
    require(set_up_ && rank_ == 0, Code::state, "only the coordinator (rank 0) makes the global plan");
    require(phase_ == Phase::planned, Code::state, "the global plan comes after the coordinator's local plan");
    require(int(local_plans.size()) == world_size_, Code::invalid_argument,
            "the global plan needs " + std::to_string(world_size_) + " local plans, got " + std::to_string(local_plans.size()));
    std::vector<SavePlan> plans(local_plans.size());
    for (size_t r = 0; r < local_plans.size(); ++r) {
        MessageIn in(local_plans[r], "local save plan");
        auto msg = in.root<schema::SavePlanMessage>();
        if (msg.getFinal()) in.bad("it is a final plan");
        if (msg.getRank() != r) in.bad("plan " + std::to_string(r) + " is rank " + std::to_string(msg.getRank()) + "'s");
        for (auto item : msg.getItems()) plans[r].items.push_back(read_item(item, in));
    }
    GlobalSavePlan global = create_global_save_plan(plans, options_.allow_partial);
    const std::string save_id = new_save_id();
    storage_.reset(save_id);
    plans = storage_.prepare_global_plan(std::move(plans));
    std::vector<std::string> finals;
    for (size_t r = 0; r < plans.size(); ++r) {
        capnp::MallocMessageBuilder message;
        auto plan = message.initRoot<schema::SavePlanMessage>();
        plan.setRank(uint32_t(r));
        plan.setFinal(true);
        plan.setSaveId(save_id);
        plan.setFileName(plans[r].file_name);
        auto writes = plan.initWrites(unsigned(global.writes[r].size()));
        for (size_t k = 0; k < global.writes[r].size(); ++k) writes.set(unsigned(k), global.writes[r][k]);
        finals.push_back(to_bytes(message));
    }
    return finals;
}

void CheckpointWriter::start_write(const std::string &final_plan, bool all_bound) {
    auto check_bound = [&](const std::vector<uint32_t> &writes) {
        for (uint32_t k : writes)
            if (all_bound && !local_.items[k].bound)
                throw Error(Code::state, "item " + std::to_string(k) + " ('" + local_.items[k].index.fqn +
                                             "') was planned without data and never bound");
    };
    if (phase_ == Phase::writing) {
        // The data file is already open for this plan: later calls must name the same one.
        if (final_plan != final_plan_)
            throw Error(Code::invalid_argument, "final save plan: not the plan this save's first write was given");
        check_bound(writes_);
        return;
    }
    require(phase_ == Phase::planned, Code::state, "write comes once per save, after the local plan (write_bound may come before it)");
    MessageIn in(final_plan, "final save plan");
    auto msg = in.root<schema::SavePlanMessage>();
    if (!msg.getFinal()) in.bad("it is a local plan, not the coordinator's final plan");
    if (msg.getRank() != uint32_t(rank_)) in.bad("it is rank " + std::to_string(msg.getRank()) + "'s plan");
    const std::string save_id = text_of(msg.getSaveId());
    std::string file_name = text_of(msg.getFileName());
    if (!is_own_file_name(file_name) || file_name.compare(5, 32, save_id) != 0)
        in.bad("data file name '" + file_name + "' is not one of this save's");
    std::vector<uint32_t> writes;
    for (uint32_t k : msg.getWrites()) {
        if (k >= local_.items.size()) in.bad("it names item " + std::to_string(k) + " of " + std::to_string(local_.items.size()));
        writes.push_back(k);
    }
    check_bound(writes);
    final_plan_ = final_plan;
    save_id_ = save_id;
    writes_ = std::move(writes);
    results_.assign(writes_.size(), WriteResult{});
    done_.assign(writes_.size(), false);
    mine_ = SavePlan{};
    mine_.file_name = std::move(file_name);  // from here on abort() removes the file
    phase_ = Phase::writing;
    storage_.reset(save_id_);
    storage_.begin_data(mine_.file_name);
    if (progress_callback_) {
        uint64_t total = 0;
        for (uint32_t k : writes_) total += local_.items[k].nbytes();
        progress_ = std::make_unique<Progress>(progress_callback_, ProgressPhase::write);
        progress_->start(total);
        progress_->throw_if_canceled();
    }
}

void CheckpointWriter::set_progress(ProgressCallback callback) {
    require(phase_ != Phase::writing && phase_ != Phase::written, Code::state, "set the progress callback before the first write");
    progress_callback_ = std::move(callback);
}

void CheckpointWriter::write_pending() {
    std::vector<size_t> batch;
    std::vector<WriteItem> items;
    for (size_t p = 0; p < writes_.size(); ++p) {
        const WriteItem &w = local_.items[writes_[p]];
        if (done_[p] || !w.bound) continue;
        batch.push_back(p);
        items.push_back(w);
    }
    std::vector<WriteResult> results;
    try {
        results = storage_.write_items(items, progress_.get());
    } catch (...) {
        write_failed_ = true;
        throw;
    }
    for (size_t j = 0; j < batch.size(); ++j) {
        results_[batch[j]] = std::move(results[j]);
        done_[batch[j]] = true;
        local_.items[writes_[batch[j]]].data = nullptr;  // written: the host may reuse the memory
    }
}

void CheckpointWriter::write_bound(const std::string &final_plan) {
    require(!write_failed_, Code::state, "an earlier write of this save failed: abort it");
    start_write(final_plan, false);
    write_pending();
}

std::string CheckpointWriter::write(const std::string &final_plan) {
    require(!write_failed_, Code::state, "an earlier write of this save failed: abort it");
    start_write(final_plan, true);
    write_pending();
    phase_ = Phase::written;
    uint64_t file_size = 0;
    try {
        file_size = storage_.end_data();
        if (progress_) progress_->finish();  // after the data file's fsync: the bytes are on disk
    } catch (...) {
        write_failed_ = true;
        throw;
    }

    capnp::MallocMessageBuilder message;
    auto out = message.initRoot<schema::WriteResultsMessage>();
    out.setRank(uint32_t(rank_));
    out.setSaveId(save_id_);
    out.setFileName(mine_.file_name);
    out.setFileSize(file_size);
    auto entries = out.initResults(unsigned(results_.size()));
    for (size_t p = 0; p < results_.size(); ++p) {
        build_item(entries[unsigned(p)].initItem(), local_.items[writes_[p]]);
        build_extent(entries[unsigned(p)].initExtent(), results_[p].extent);
    }
    return to_bytes(message);
}

void CheckpointWriter::finish(const std::vector<std::string> &write_results) {
    require(set_up_ && rank_ == 0, Code::state, "only the coordinator (rank 0) finishes the save");
    require(phase_ == Phase::written, Code::state, "finish comes once, after the coordinator's write");
    require(int(write_results.size()) == world_size_, Code::invalid_argument,
            "finish needs " + std::to_string(world_size_) + " write results, got " + std::to_string(write_results.size()));
    phase_ = Phase::finished;
    Metadata md;
    std::map<std::string, EntryMeta> entries;
    std::string save_id;
    // What the reported extents are checked against, as a reader will check them (FORMAT.md 3,
    // rule 9): a malformed report is refused here, before it becomes a checkpoint nobody opens.
    md.storage.world_size = uint32_t(world_size_);
    md.storage.block_size = options_.block_size;
    md.storage.format_major = 2;  // block transforms allowed: encode picks the version
    for (size_t r = 0; r < write_results.size(); ++r) {
        if (write_results[r].empty()) continue;  // this rank wrote nothing
        MessageIn in(write_results[r], "write results message");
        auto msg = in.root<schema::WriteResultsMessage>();
        if (msg.getRank() != r) in.bad("results " + std::to_string(r) + " are rank " + std::to_string(msg.getRank()) + "'s");
        if (save_id.empty()) save_id = text_of(msg.getSaveId());
        else if (text_of(msg.getSaveId()) != save_id) in.bad("rank " + std::to_string(r) + " wrote for another save");
        if (msg.getResults().size() == 0) continue;
        const uint32_t file_index = uint32_t(md.files.size());
        md.files.push_back(DataFileMeta{text_of(msg.getFileName()), msg.getFileSize(), uint32_t(r)});
        for (auto res : msg.getResults()) {
            WriteItem item = read_item(res.getItem(), in);
            ChunkMeta chunk;
            chunk.box = item.box();
            chunk.extent = read_extent(res.getExtent(), in);
            chunk.extent.file = file_index;
            chunk.extent.writer_rank = uint32_t(r);
            const uint32_t itemsize = dtype_size(int32_t(item.dtype));
            if (chunk.extent.raw_length != product(item.sizes) * itemsize)
                in.bad("'" + item.index.fqn + "': an extent of " + std::to_string(chunk.extent.raw_length) +
                       " raw bytes for a chunk of " + std::to_string(product(item.sizes) * itemsize));
            try {
                check_extent(chunk.extent, md, item.index.fqn, itemsize);
            } catch (const Error &e) {
                std::string why = e.what();
                const std::string prefix = "corrupt metadata: ";  // the reader's words, not ours here
                in.bad(why.compare(0, prefix.size(), prefix) == 0 ? why.substr(prefix.size()) : why);
            }
            auto it = entries.find(item.index.fqn);
            if (it == entries.end()) {
                EntryMeta entry;
                entry.fqn = item.index.fqn;
                entry.kind = item.kind;
                entry.dtype = item.dtype;
                entry.shape = item.global_shape;
                it = entries.emplace(entry.fqn, std::move(entry)).first;
            } else if (it->second.kind != item.kind || it->second.dtype != item.dtype || it->second.shape != item.global_shape) {
                in.bad("'" + item.index.fqn + "' is written with different kinds, dtypes or shapes");
            }
            it->second.chunks.push_back(std::move(chunk));
        }
    }
    for (auto &kv : entries) {
        std::sort(kv.second.chunks.begin(), kv.second.chunks.end(),
                  [](const ChunkMeta &a, const ChunkMeta &b) { return a.box.offsets < b.box.offsets; });
        md.entries.push_back(std::move(kv.second));
    }
    md.storage.checkpoint_id = options_.checkpoint_id;
    md.storage.save_id = save_id;
    md.storage.world_size = uint32_t(world_size_);
    md.storage.library_version = library_version();
    md.storage.created_unix_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    md.storage.alignment = options_.alignment;
    md.storage.block_size = options_.block_size;
    md.user = user_;
    md.framework = framework_;
    if (save_id.empty()) save_id = storage_.save_id();  // no rank wrote anything
    md.storage.save_id = save_id;
    storage_.finish(md);
}

void CheckpointWriter::abort() {
    if (!mine_.file_name.empty()) storage_.abort(mine_);
    else storage_.abort(SavePlan{});
}

}  // namespace shardpoint
