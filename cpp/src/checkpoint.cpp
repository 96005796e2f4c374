#include "shardpoint/checkpoint.hpp"

#include <algorithm>
#include <chrono>
#include <map>

#include "shardpoint/error.hpp"
#include "shardpoint/layout.hpp"
#include "shardpoint/metadata_codec.hpp"
#include "shardpoint/wire.hpp"

namespace shardpoint {

#ifndef SHARDPOINT_VERSION_TEXT
#define SHARDPOINT_VERSION_TEXT "0.0.0"
#endif

std::string library_version() { return SHARDPOINT_VERSION_TEXT; }

namespace {

constexpr uint32_t max_ndim = 32;

// "[6, 8]"; and a box as "offsets [0, 2] sizes [6, 4]": messages show the offending numbers.
std::string describe(const Dims &dims) {
    std::string s = "[";
    for (size_t d = 0; d < dims.size(); ++d) s += (d ? ", " : "") + std::to_string(dims[d]);
    return s + "]";
}
std::string describe(const Box &box) { return "offsets " + describe(box.offsets) + " sizes " + describe(box.sizes); }

void check_fqn(const std::string &fqn) {
    require(!fqn.empty(), Code::invalid_argument, "entry names must not be empty");
    require(fqn.size() <= 4096, Code::invalid_argument, "entry name longer than 4096 bytes");
    require(fqn.find('\0') == std::string::npos, Code::invalid_argument, "entry name contains NUL");
}

std::string encode_plan(const Status &status, const SavePlan &plan) {
    WireWriter w;
    w.u32(uint32_t(status.code));
    w.str(status.message);
    w.u64(plan.items.size());
    for (const WriteItem &item : plan.items) {
        w.u32(uint32_t(item.kind));
        w.str(item.index.fqn);
        w.u32(uint32_t(item.dtype));
        w.dims(item.global_shape);
        w.dims(item.index.offsets);
        w.dims(item.sizes);
    }
    return w.take();
}

SavePlan decode_plan(std::string bytes, Status &status) {
    WireReader r(std::move(bytes));
    status.code = int(r.u32());
    status.message = r.str();
    SavePlan plan;
    uint64_t n = r.u64();
    for (uint64_t i = 0; i < n; ++i) {
        WriteItem item;
        item.kind = EntryKind(r.u32());
        item.index.fqn = r.str();
        item.dtype = DType(r.u32());
        item.global_shape = r.dims();
        item.index.offsets = r.dims();
        item.sizes = r.dims();
        plan.items.push_back(std::move(item));
    }
    return plan;
}

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

}  // namespace

// ---------------------------------------------------------------------------------------------
// Save

SaveSession::SaveSession(std::string dir, Comm *comm, SaveOptions options)
    : dir_(std::move(dir)), comm_(comm ? comm : &single_), options_(std::move(options)) {
    require(!dir_.empty(), Code::invalid_argument, "empty checkpoint path");
    require(options_.alignment >= 1 && (options_.alignment & (options_.alignment - 1)) == 0, Code::invalid_argument,
            "alignment must be a power of two");
    require(options_.compression_level >= 0 && options_.compression_level <= 9, Code::invalid_argument,
            "compression level must be 0 (none) to 9");
}

void SaveSession::add_item(WriteItem item) {
    require(!committed_, Code::state, "this save was already committed");
    auto &same = items_by_fqn_[item.index.fqn];
    for (size_t k : same) {
        const WriteItem &other = local_.items[k];
        if (other.kind != item.kind || other.dtype != item.dtype || other.global_shape != item.global_shape)
            throw Error(Code::conflict, "'" + item.index.fqn + "' was already offered with a different kind, dtype or shape");
        Box a = other.box(), b = item.box();
        if (product(a.sizes) > 0 && product(b.sizes) > 0 && boxes_overlap(a, b))
            throw Error(Code::conflict, "'" + item.index.fqn + "': this chunk overlaps one already offered by this rank");
    }
    same.push_back(local_.items.size());
    local_.items.push_back(std::move(item));
}

void SaveSession::add_tensor(const std::string &fqn, DType dtype, Dims shape, Dims offsets, Dims sizes, const void *data,
                             Strides strides) {
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

void SaveSession::add_bytes(const std::string &fqn, const void *data, uint64_t len) {
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

void SaveSession::set_metadata(const std::string &key, const std::string &value) {
    require(!committed_, Code::state, "this save was already committed");
    for (auto &kv : user_)
        if (kv.first == key) {
            kv.second = value;
            return;
        }
    user_.emplace_back(key, value);
}

void SaveSession::commit() {
    require(!committed_, Code::state, "this save was already committed");
    committed_ = true;
    Comm &comm = *comm_;
    const int rank = comm.rank(), world = comm.size();
    FileSystemWriter writer(dir_, options_);

    // 1. Local plan; the coordinator gathers every plan and decides the global plan.
    Status local;
    try {
        writer.set_up_storage_writer(rank == 0, rank, world);
        local_ = writer.prepare_local_plan(std::move(local_));
    } catch (const Error &e) {
        local = status_of(e);
    }
    std::vector<std::string> gathered = gather_strings(comm, encode_plan(local, local_));

    std::vector<SavePlan> plans;  // coordinator only
    GlobalSavePlan global;        // coordinator only
    std::string decision;
    if (rank == 0) {
        Outcome outcome;
        std::string save_id = new_save_id();
        try {
            std::vector<Status> statuses(world);
            for (int r = 0; r < world; ++r) plans.push_back(decode_plan(std::move(gathered[r]), statuses[r]));
            for (int r = 0; r < world && outcome.code == 0; ++r)
                if (statuses[r].code != 0) outcome = Outcome{statuses[r].code, r, "planning", statuses[r].message};
            if (outcome.code == 0) {
                global = create_global_save_plan(plans, options_.allow_partial);
                writer.reset(save_id);
                plans = writer.prepare_global_plan(std::move(plans));
            }
        } catch (const Error &e) {
            outcome = Outcome{int(e.code()), -1, "planning", e.what()};
        }
        WireWriter w;
        w.str(encode_outcome(outcome));
        w.str(save_id);
        for (int r = 0; r < world; ++r) w.u32s(outcome.code == 0 ? global.writes[r] : std::vector<uint32_t>{});
        decision = w.take();
    }
    gathered.clear();
    decision = broadcast_string(comm, decision);
    WireReader dr(decision);
    WireReader outcome_reader(dr.str());
    Outcome planned = decode_outcome(outcome_reader);
    const std::string save_id = dr.str();
    std::vector<uint32_t> my_writes;
    for (int r = 0; r < world; ++r) {
        auto w = dr.u32s();
        if (r == rank) my_writes = std::move(w);
    }
    if (planned.code != 0) raise(planned, rank);

    // 2. Every rank writes what the global plan gave it.
    writer.reset(save_id);
    SavePlan mine;
    mine.file_name = data_file_name(save_id, rank);
    for (uint32_t k : my_writes) {
        require(k < local_.items.size(), Code::comm, "global plan names an item this rank does not have");
        mine.items.push_back(local_.items[k]);
    }
    Status wrote;
    std::vector<WriteResult> results;
    uint64_t file_size = 0;
    try {
        results = writer.write_data(mine, file_size);
    } catch (const Error &e) {
        wrote = status_of(e);
    } catch (const std::bad_alloc &) {
        wrote = Status{int(Code::out_of_memory), -1, "out of memory while writing"};
    }
    WireWriter rw;
    rw.u32(uint32_t(wrote.code));
    rw.str(wrote.message);
    rw.u64(file_size);
    rw.u64(results.size());
    for (const WriteResult &res : results) {
        const Extent &e = res.extent;
        rw.u64(e.offset);
        rw.u64(e.stored_length);
        rw.u64(e.raw_length);
        rw.u32(e.crc32);
        rw.u32(uint32_t(e.transform));
        rw.u32s(e.block_crc32);
    }
    // A communicator failure from here on: rank 0 knows whether it committed and cleans up if it
    // did not; other ranks cannot know, so they keep their data file rather than risk deleting
    // part of a committed checkpoint (an unreferenced data file is harmless garbage).
    auto comm_failed = [&](const Error &e) -> Error {
        if (rank == 0) {
            writer.abort(mine);
            return Error(e.code(), std::string(e.what()) + (writer.committed() ? " (after the checkpoint was committed)" : ""));
        }
        return Error(e.code(), std::string(e.what()) +
                                   " (after this rank wrote its data: whether rank 0 committed is unknown here, so its data file was kept)");
    };
    try {
        gathered = gather_strings(comm, rw.take());
    } catch (const Error &e) {
        throw comm_failed(e);
    }

    // 3. The coordinator builds the metadata and commits it.
    std::string final_outcome;
    if (rank == 0) {
        Outcome outcome;
        Metadata md;
        std::map<std::string, EntryMeta> entries;
        for (int r = 0; r < world && outcome.code == 0; ++r) {
            WireReader rr(std::move(gathered[r]));
            int code = int(rr.u32());
            std::string message = rr.str();
            uint64_t size = rr.u64();
            uint64_t count = rr.u64();
            if (code != 0) {
                outcome = Outcome{code, r, "writing its data", message};
                break;
            }
            if (count == 0) continue;
            const uint32_t file_index = uint32_t(md.files.size());
            md.files.push_back(DataFileMeta{plans[r].file_name, size, uint32_t(r)});
            // The results come back in the order of the writes the coordinator assigned.
            const std::vector<uint32_t> &writes = global.writes[r];
            require(writes.size() == count, Code::comm, "rank " + std::to_string(r) + " returned an unexpected number of results");
            for (uint64_t j = 0; j < count; ++j) {
                const WriteItem &item = plans[r].items[writes[j]];
                ChunkMeta chunk;
                chunk.box = item.box();
                Extent &e = chunk.extent;
                e.file = file_index;
                e.offset = rr.u64();
                e.stored_length = rr.u64();
                e.raw_length = rr.u64();
                e.crc32 = rr.u32();
                e.transform = Transform(rr.u32());
                e.block_crc32 = rr.u32s();
                e.writer_rank = uint32_t(r);
                auto it = entries.find(item.index.fqn);
                if (it == entries.end()) {
                    EntryMeta entry;
                    entry.fqn = item.index.fqn;
                    entry.kind = item.kind;
                    entry.dtype = item.dtype;
                    entry.shape = item.global_shape;
                    it = entries.emplace(entry.fqn, std::move(entry)).first;
                }
                it->second.chunks.push_back(std::move(chunk));
            }
        }
        if (outcome.code == 0) {
            try {
                for (auto &kv : entries) {
                    std::sort(kv.second.chunks.begin(), kv.second.chunks.end(),
                              [](const ChunkMeta &a, const ChunkMeta &b) { return a.box.offsets < b.box.offsets; });
                    md.entries.push_back(std::move(kv.second));
                }
                md.storage.checkpoint_id = options_.checkpoint_id;
                md.storage.save_id = save_id;
                md.storage.world_size = uint32_t(world);
                md.storage.library_version = library_version();
                md.storage.created_unix_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                 std::chrono::system_clock::now().time_since_epoch()).count();
                md.storage.alignment = options_.alignment;
                md.storage.block_size = options_.block_size;
                md.user = user_;
                writer.finish(md);
            } catch (const Error &e) {
                // Every rank must learn these two as they are: the checkpoint exists (not durable)
                // or another save won (exists); others are rank 0's failure.
                const bool shared = e.code() == Code::not_durable || e.code() == Code::exists;
                outcome = Outcome{int(e.code()), shared ? -1 : 0, "commit", e.what()};
                outcome.committed = writer.committed();
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
        if (!done.committed) writer.abort(mine);  // nothing was committed: remove this save's files
        raise(done, rank);
    }
}

// ---------------------------------------------------------------------------------------------
// Load

Reader::Reader(std::string dir, LoadOptions options) : dir_(std::move(dir)), storage_(dir_, options) {
    metadata_ = storage_.read_metadata();
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

const ChunkIndex &Reader::index_of(const EntryMeta *entry) {
    size_t i = size_t(entry - metadata_.entries.data());
    std::lock_guard<std::mutex> lock(index_mutex_);
    if (!indexes_[i]) indexes_[i] = std::make_unique<ChunkIndex>(*entry);
    return *indexes_[i];
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
    const EntryMeta *entry = find(fqn);
    if (!entry) return;
    require(entry->kind == EntryKind::tensor, Code::kind, "'" + fqn + "' is a bytes entry, not a tensor");
    if (dtype != entry->dtype) {
        const char *asked = dtype_name(int32_t(dtype));
        throw Error(Code::dtype, "'" + fqn + "' is " + dtype_name(int32_t(entry->dtype)) + ", not " + (asked ? asked : "an unknown dtype"));
    }
    require(ndim == entry->shape.size(), Code::shape,
            "'" + fqn + "' has " + std::to_string(entry->shape.size()) + " dimensions, not " + std::to_string(ndim));
    Box box{std::move(offsets), std::move(sizes)};
    require(box_inside(box, entry->shape), Code::shape,
            "'" + fqn + "': the requested box " + describe(box) + " lies outside the tensor's shape " + describe(entry->shape));
    require(product(box.sizes) == 0 || dst != nullptr, Code::invalid_argument, "'" + fqn + "': destination is NULL");
    add_request(ReadRequest{entry, std::move(box), dst, std::move(strides)});
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

void LoadSession::execute() {
    require(!executed_, Code::state, "this load was already executed");
    executed_ = true;
    Status mine;
    try {
        reader_.storage().read_data(reader_.storage().prepare_local_plan(plan_));
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
