// shardpoint diff A B [--data]: what differs between two checkpoints. Entries added, removed and
// changed (kind, dtype, shape, chunking) and user metadata; with --data, which values differ:
// chunks with the same box are compared by their stored CRC-32 first (equal stored bytes need no
// read) and by their bytes when the CRCs cannot decide; tensors chunked differently are read and
// compared in pieces of bounded size.
//
// Exit status, as diff(1): 0 no differences, 1 differences, 2 usage error or failure.
#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <map>
#include <memory>

#include "cli_steps.hpp"
#include "shardpoint.h"

namespace cli {

namespace {

constexpr uint64_t piece_bytes = 8ull << 20;  // read at most this much of each side at once

struct Chunk {
    std::vector<uint64_t> offsets, sizes;
    uint64_t stored_length, raw_length;
    uint32_t crc32, shuffle_width;
    int32_t transform;
    bool operator<(const Chunk &o) const { return offsets < o.offsets; }
};

struct Entry {
    shardpoint_entry_info info;
    std::vector<uint64_t> shape;
    std::vector<Chunk> chunks;  // sorted by offsets
};

struct Side {
    const char *dir;
    shardpoint_reader *reader = nullptr;
    std::map<std::string, Entry> entries;
    std::map<std::string, std::string> metadata;
    ~Side() { shardpoint_reader_free(reader); }
};

int failure(const std::string &what, int rc) {
    std::fprintf(stderr, "shardpoint diff: %s: %s: %s\n", what.c_str(), shardpoint_error_name(rc), shardpoint_last_error());
    return 2;
}

int open_side(Side &s) {
    int rc = shardpoint_reader_open(&s.reader, s.dir, nullptr);
    if (rc != 0) return failure(std::string("cannot open checkpoint '") + s.dir + "'", rc);
    uint64_t n = 0, nmeta = 0;
    shardpoint_reader_entry_count(s.reader, &n);
    for (uint64_t i = 0; i < n; ++i) {
        Entry e;
        shardpoint_reader_entry_info(s.reader, i, &e.info);
        e.shape.assign(e.info.shape, e.info.shape + e.info.ndim);
        uint32_t ndim = e.info.kind == SHARDPOINT_ENTRY_TENSOR ? e.info.ndim : 0;
        for (uint64_t c = 0; c < e.info.chunk_count; ++c) {
            shardpoint_chunk_info ci;
            shardpoint_reader_chunk_info(s.reader, i, c, &ci);
            Chunk k{std::vector<uint64_t>(ci.offsets, ci.offsets + ndim), std::vector<uint64_t>(ci.sizes, ci.sizes + ndim),
                    ci.stored_length, ci.raw_length, ci.crc32, ci.shuffle_width, ci.transform};
            e.chunks.push_back(std::move(k));
        }
        std::sort(e.chunks.begin(), e.chunks.end());
        std::string fqn = e.info.fqn;
        s.entries.emplace(fqn, std::move(e));
    }
    shardpoint_reader_metadata_count(s.reader, &nmeta);
    for (uint64_t i = 0; i < nmeta; ++i) {
        const char *k, *v;
        shardpoint_reader_metadata_at(s.reader, i, &k, &v);
        s.metadata[k] = v;
    }
    return 0;
}

std::string dims_text(const std::vector<uint64_t> &d) {
    std::string s = "[";
    for (size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
    return s + "]";
}

std::string describe(const Entry &e) {
    if (e.info.kind != SHARDPOINT_ENTRY_TENSOR) return "bytes (" + std::to_string(e.info.nbytes) + ")";
    return std::string(shardpoint_dtype_name(e.info.dtype)) + " " + dims_text(e.shape);
}

bool same_boxes(const Entry &a, const Entry &b) {
    if (a.chunks.size() != b.chunks.size()) return false;
    for (size_t i = 0; i < a.chunks.size(); ++i)
        if (a.chunks[i].offsets != b.chunks[i].offsets || a.chunks[i].sizes != b.chunks[i].sizes) return false;
    return true;
}

// Stored bytes that are certainly equal: same transform, length and CRC-32.
bool same_stored(const Chunk &a, const Chunk &b) {
    return a.transform == b.transform && a.shuffle_width == b.shuffle_width && a.stored_length == b.stored_length &&
           a.raw_length == b.raw_length && a.crc32 == b.crc32;
}

// What comparing values found in one entry.
struct Values {
    uint64_t differing = 0, compared = 0;  // elements (bytes for blobs)
    std::vector<uint64_t> first;           // coordinates of the first differing element
    bool have_first = false;
    uint64_t by_crc = 0, by_bytes = 0;     // chunks decided by CRC-32, by reading
    uint64_t bytes_read = 0;
    int rc = 0;
    std::string error;
};

// Compares the box (`offsets`, `sizes`) of tensor `fqn` in both readers, in pieces of at most
// piece_bytes per side: whole trailing dimensions, split along the first one that fits.
void compare_box(shardpoint_reader *ra, shardpoint_reader *rb, const char *fqn, int32_t dtype,
                 const std::vector<uint64_t> &offsets, const std::vector<uint64_t> &sizes, Values &v) {
    const uint32_t ndim = uint32_t(sizes.size());
    const uint64_t esize = shardpoint_dtype_size(dtype);
    for (uint64_t s : sizes)
        if (s == 0) return;
    std::vector<uint64_t> tail(ndim + 1, 1);  // tail[k]: elements of dimensions k.. of the box
    for (uint32_t k = ndim; k-- > 0;) tail[k] = tail[k + 1] * sizes[k];
    uint32_t d = 0;  // split along d: dimensions after it are read whole
    while (d + 1 < ndim && tail[d + 1] * esize > piece_bytes) ++d;
    uint64_t row = ndim ? tail[d + 1] : 1;  // elements of one index of dimension d
    uint64_t step = ndim ? std::max<uint64_t>(1, std::min<uint64_t>(sizes[d], piece_bytes / (row * esize))) : 1;
    std::unique_ptr<unsigned char[]> a(new unsigned char[size_t(step * row * esize)]);
    std::unique_ptr<unsigned char[]> b(new unsigned char[size_t(step * row * esize)]);
    std::vector<uint64_t> idx(d, 0);  // position in dimensions before d
    std::vector<uint64_t> po(offsets), ps(sizes);
    for (;;) {
        for (uint32_t k = 0; k < d; ++k) po[k] = offsets[k] + idx[k], ps[k] = 1;
        for (uint64_t j = 0; j < (ndim ? sizes[d] : 1); j += step) {
            uint64_t n = ndim ? std::min(step, sizes[d] - j) : 1;
            if (ndim) po[d] = offsets[d] + j, ps[d] = n;
            int rc = shardpoint_reader_read_tensor(ra, fqn, dtype, ndim, po.data(), ps.data(), a.get(), nullptr);
            if (rc == 0) rc = shardpoint_reader_read_tensor(rb, fqn, dtype, ndim, po.data(), ps.data(), b.get(), nullptr);
            if (rc != 0) {
                v.rc = rc;
                v.error = shardpoint_last_error();
                return;
            }
            uint64_t elems = n * row;
            v.bytes_read += 2 * elems * esize;
            v.compared += elems;
            if (std::memcmp(a.get(), b.get(), size_t(elems * esize)) == 0) continue;
            for (uint64_t e = 0; e < elems; ++e) {
                if (std::memcmp(a.get() + e * esize, b.get() + e * esize, size_t(esize)) == 0) continue;
                ++v.differing;
                if (!v.have_first) {  // element e of the piece, in C order of the piece's box
                    v.have_first = true;
                    v.first = po;
                    uint64_t rest = e;
                    for (uint32_t k = ndim; k-- > 0;) v.first[k] += rest % ps[k], rest /= ps[k];
                }
            }
        }
        // Next index of the dimensions before d (an odometer); done after the last.
        uint32_t k = d;
        while (k > 0 && ++idx[k - 1] == sizes[k - 1]) idx[--k] = 0;
        if (k == 0) break;
    }
}

void compare_values(Side &A, Side &B, const std::string &fqn, const Entry &ea, const Entry &eb, Values &v) {
    if (ea.info.kind != SHARDPOINT_ENTRY_TENSOR) {
        if (ea.chunks.size() == 1 && eb.chunks.size() == 1 && same_stored(ea.chunks[0], eb.chunks[0])) {
            ++v.by_crc;
            v.compared = ea.info.nbytes;
            return;
        }
        ++v.by_bytes;
        std::vector<unsigned char> a(size_t(ea.info.nbytes) + 1), b(size_t(eb.info.nbytes) + 1);
        uint64_t la = 0, lb = 0;
        int rc = shardpoint_reader_read_bytes(A.reader, fqn.c_str(), a.data(), a.size(), &la);
        if (rc == 0) rc = shardpoint_reader_read_bytes(B.reader, fqn.c_str(), b.data(), b.size(), &lb);
        if (rc != 0) {
            v.rc = rc;
            v.error = shardpoint_last_error();
            return;
        }
        v.bytes_read += la + lb;
        v.compared = std::max(la, lb);
        for (uint64_t i = 0; i < v.compared; ++i)
            if (i >= la || i >= lb || a[i] != b[i]) {
                if (!v.have_first) v.have_first = true, v.first = {i};
                ++v.differing;
            }
        return;
    }
    if (same_boxes(ea, eb)) {
        for (size_t c = 0; c < ea.chunks.size(); ++c) {
            if (same_stored(ea.chunks[c], eb.chunks[c])) {
                ++v.by_crc;
                uint64_t n = 1;
                for (uint64_t s : ea.chunks[c].sizes) n *= s;
                v.compared += n;
                continue;
            }
            ++v.by_bytes;
            compare_box(A.reader, B.reader, fqn.c_str(), ea.info.dtype, ea.chunks[c].offsets, ea.chunks[c].sizes, v);
            if (v.rc) return;
        }
        return;
    }
    if (ea.info.covered_numel < ea.info.numel || eb.info.covered_numel < eb.info.numel) {
        v.error = "chunked differently and only partly saved: values not compared";
        return;
    }
    ++v.by_bytes;
    compare_box(A.reader, B.reader, fqn.c_str(), ea.info.dtype, std::vector<uint64_t>(ea.shape.size(), 0), ea.shape, v);
}

}  // namespace

int diff(const std::vector<std::string> &args, bool data) {
    if (args.size() != 2) return usage_error("diff: expected two checkpoint directories, got " + std::to_string(args.size()));
    Side A, B;
    A.dir = args[0].c_str();
    B.dir = args[1].c_str();
    if (int rc = open_side(A)) return rc;
    if (int rc = open_side(B)) return rc;

    std::vector<std::string> names;
    for (auto &e : A.entries) names.push_back(e.first);
    for (auto &e : B.entries)
        if (!A.entries.count(e.first)) names.push_back(e.first);
    std::sort(names.begin(), names.end());

    std::printf("--- %s\n+++ %s\n", A.dir, B.dir);
    uint64_t added = 0, removed = 0, changed = 0, differ = 0, same = 0, uncompared = 0, by_crc = 0, by_bytes = 0, read = 0;
    for (const std::string &fqn : names) {
        auto ia = A.entries.find(fqn), ib = B.entries.find(fqn);
        if (ib == B.entries.end()) {
            ++removed;
            std::printf("- removed  %s  %s\n", fqn.c_str(), describe(ia->second).c_str());
            continue;
        }
        if (ia == A.entries.end()) {
            ++added;
            std::printf("+ added    %s  %s\n", fqn.c_str(), describe(ib->second).c_str());
            continue;
        }
        const Entry &ea = ia->second, &eb = ib->second;
        std::string what;
        auto note = [&](const std::string &s) { what += (what.empty() ? "" : "; ") + s; };
        bool comparable = true;
        if (ea.info.kind != eb.info.kind) {
            note("kind " + describe(ea) + " -> " + describe(eb));
            comparable = false;
        } else if (ea.info.kind == SHARDPOINT_ENTRY_TENSOR) {
            if (ea.info.dtype != eb.info.dtype)
                note(std::string("dtype ") + shardpoint_dtype_name(ea.info.dtype) + " -> " + shardpoint_dtype_name(eb.info.dtype));
            if (ea.shape != eb.shape) note("shape " + dims_text(ea.shape) + " -> " + dims_text(eb.shape));
            comparable = what.empty();
            if (comparable && !same_boxes(ea, eb)) {
                if (ea.chunks.size() != eb.chunks.size())
                    note("chunking " + std::to_string(ea.chunks.size()) + " -> " + std::to_string(eb.chunks.size()) + " chunks");
                else
                    note("chunking: other chunk boxes (" + std::to_string(ea.chunks.size()) + " chunks)");
            }
        } else if (ea.info.nbytes != eb.info.nbytes) {
            note("length " + std::to_string(ea.info.nbytes) + " -> " + std::to_string(eb.info.nbytes) + " bytes");
        }
        if (!what.empty()) {
            ++changed;
            std::printf("~ changed  %s  %s\n", fqn.c_str(), what.c_str());
        }
        if (!data || !comparable) {
            if (what.empty()) ++same;
            continue;
        }
        Values v;
        compare_values(A, B, fqn, ea, eb, v);
        by_crc += v.by_crc, by_bytes += v.by_bytes, read += v.bytes_read;
        if (v.rc) {
            std::fprintf(stderr, "shardpoint diff: %s: %s: %s\n", fqn.c_str(), shardpoint_error_name(v.rc), v.error.c_str());
            return 2;
        }
        if (!v.error.empty()) {
            ++uncompared;
            std::printf("? values   %s  %s\n", fqn.c_str(), v.error.c_str());
        } else if (v.differing) {
            ++differ;
            const char *unit = ea.info.kind == SHARDPOINT_ENTRY_TENSOR ? "elements" : "bytes";
            std::printf("~ values   %s  %" PRIu64 " of %" PRIu64 " %s differ, first at %s\n", fqn.c_str(), v.differing,
                        v.compared, unit, dims_text(v.first).c_str());
        } else if (what.empty()) {
            ++same;
        }
    }
    uint64_t meta_changes = 0;
    for (auto &kv : A.metadata) {
        auto it = B.metadata.find(kv.first);
        if (it == B.metadata.end()) {
            ++meta_changes;
            std::printf("- metadata %s = %s\n", json_string(kv.first.c_str()).c_str(), json_string(kv.second.c_str()).c_str());
        } else if (it->second != kv.second) {
            ++meta_changes;
            std::printf("~ metadata %s: %s -> %s\n", json_string(kv.first.c_str()).c_str(), json_string(kv.second.c_str()).c_str(),
                        json_string(it->second.c_str()).c_str());
        }
    }
    for (auto &kv : B.metadata)
        if (!A.metadata.count(kv.first)) {
            ++meta_changes;
            std::printf("+ metadata %s = %s\n", json_string(kv.first.c_str()).c_str(), json_string(kv.second.c_str()).c_str());
        }
    std::printf("diff: %" PRIu64 " added, %" PRIu64 " removed, %" PRIu64 " changed", added, removed, changed);
    if (data) std::printf(", %" PRIu64 " with other values", differ);
    std::printf(", %" PRIu64 " %s, %" PRIu64 " metadata %s\n", same,
                data ? "identical" : "alike (same kind, dtype, shape, chunking; --data compares values)", meta_changes,
                plural(meta_changes, "change", "changes"));
    if (data)
        std::printf("values: %" PRIu64 " %s equal by CRC-32, %" PRIu64 " compared by reading (%s read)%s\n", by_crc,
                    plural(by_crc, "chunk", "chunks"), by_bytes, human_bytes(double(read)).c_str(),
                    uncompared ? ", some entries not compared" : "");
    return added || removed || changed || differ || uncompared || meta_changes ? 1 : 0;
}

}  // namespace cli
