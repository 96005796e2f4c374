// The golden program in C++ (tests/golden/README.md), over the header-only wrapper shardpoint.hpp:
//
//   golden_cpp write DIR WORLD   saves the golden model into DIR with WORLD ranks (threads and
//                                sp::LocalGroup)
//   golden_cpp read DIR          checks DIR against the model; exit status 0 only if all matches
//
// The model file is $SHARDPOINT_GOLDEN_MODEL, else the model.txt this program was built with.
#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "shardpoint.hpp"

namespace sp = shardpoint::cxx;

#ifndef SP_GOLDEN_MODEL
#define SP_GOLDEN_MODEL "tests/golden/model.txt"
#endif

namespace {

struct Record {
    std::string kind;  // "tensor", "bytes" or "meta"
    std::string fqn;   // tensor and bytes; the key for meta
    int32_t dtype = SHARDPOINT_DTYPE_U8;
    sp::Dims shape;    // tensors; empty for 0-d
    uint64_t length = 0;  // bytes
    std::string sharding, value;
    uint64_t seed = 0;
};

[[noreturn]] void die(const std::string &message) {
    std::fprintf(stderr, "golden_cpp: %s\n", message.c_str());
    std::exit(2);
}

uint64_t to_u64(const std::string &s, const std::string &where) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) die(where + ": '" + s + "' is not a number");
    return std::stoull(s);
}

std::vector<Record> load_model() {
    const char *env = std::getenv("SHARDPOINT_GOLDEN_MODEL");
    const std::string path = env && *env ? env : SP_GOLDEN_MODEL;
    std::ifstream in(path);
    if (!in) die("cannot open the model " + path + " (set SHARDPOINT_GOLDEN_MODEL)");
    std::vector<Record> model;
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
        line = line.substr(0, line.find('#'));
        std::istringstream fields(line);
        std::vector<std::string> f;
        for (std::string w; fields >> w;) f.push_back(w);
        if (f.empty()) continue;
        const std::string where = path + ":" + std::to_string(number);
        Record r;
        r.kind = f[0];
        if (f[0] == "tensor" && f.size() == 6) {
            r.fqn = f[1];
            if (shardpoint_dtype_from_name(f[2].c_str(), &r.dtype) != 0) die(where + ": unknown dtype " + f[2]);
            if (f[3] != "-") {
                std::istringstream dims(f[3]);
                for (std::string d; std::getline(dims, d, ',');) r.shape.push_back(to_u64(d, where));
            }
            r.sharding = f[4];
            r.seed = to_u64(f[5], where);
            bool ok = r.sharding == "replicated" || r.sharding == "rank0" || (r.sharding == "rows" && r.shape.size() >= 1) ||
                      (r.sharding == "cols" && r.shape.size() >= 2);
            if (!ok) die(where + ": " + r.fqn + " cannot be sharded '" + r.sharding + "'");
        } else if (f[0] == "bytes" && f.size() == 5) {
            r.fqn = f[1];
            r.length = to_u64(f[2], where);
            r.sharding = f[3];
            r.seed = to_u64(f[4], where);
            if (r.sharding != "replicated" && r.sharding != "rank0") die(where + ": bytes cannot be sharded '" + r.sharding + "'");
        } else if (f[0] == "meta" && f.size() == 3) {
            r.fqn = f[1];
            r.value = f[2];
        } else {
            die(where + ": malformed line");
        }
        model.push_back(r);
    }
    return model;
}

uint64_t numel(const sp::Dims &shape) {
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;
    return n;
}

// The generator rule: the byte image of a whole entry.
std::vector<unsigned char> image(const Record &r) {
    const bool is_bool = r.kind == "tensor" && r.dtype == SHARDPOINT_DTYPE_BOOL;
    const uint64_t n = r.kind == "bytes" ? r.length : numel(r.shape) * shardpoint_dtype_size(r.dtype);
    std::vector<unsigned char> out(n);
    for (uint64_t k = 0; k < n; ++k) {
        unsigned b = unsigned((k * 131 + r.seed * 17 + (k >> 11)) % 256);
        out[k] = static_cast<unsigned char>(is_bool ? b % 2 : b);
    }
    return out;
}

sp::Strides c_strides(const sp::Dims &shape) {
    sp::Strides s(shape.size());
    int64_t acc = 1;
    for (size_t d = shape.size(); d-- > 0;) s[d] = acc, acc *= int64_t(shape[d]);
    return s;
}

// A rendezvous of the rank threads before the collective commit: if one rank could not offer
// its data, no rank enters the commit (where the others would wait for it forever).
class Gate {
public:
    explicit Gate(int n) : n_(n) {}
    bool all_ok(bool mine) {
        std::unique_lock<std::mutex> lock(m_);
        ok_ = ok_ && mine;
        if (++arrived_ == n_) cv_.notify_all();
        cv_.wait(lock, [&] { return arrived_ == n_; });
        return ok_;
    }

private:
    int n_, arrived_ = 0;
    bool ok_ = true;
    std::mutex m_;
    std::condition_variable cv_;
};

int write(const std::string &dir, int world, const std::vector<Record> &model) {
    std::vector<std::vector<unsigned char>> images;
    for (const Record &r : model) images.push_back(r.kind == "meta" ? std::vector<unsigned char>{} : image(r));

    sp::LocalGroup group(world);
    Gate gate(world);
    std::vector<std::string> errors(world);
    std::vector<std::thread> threads;
    for (int rank = 0; rank < world; ++rank) {
        threads.emplace_back([&, rank] {
            sp::Comm comm = group.comm(rank);
            shardpoint_save_options options = SHARDPOINT_SAVE_OPTIONS_INIT;
            options.flags = SHARDPOINT_SAVE_OVERWRITE;
            std::unique_ptr<sp::Save> save;
            bool offered = true;
            try {
                save = std::make_unique<sp::Save>(dir, &comm, &options);
                for (size_t i = 0; i < model.size(); ++i) {
                    const Record &r = model[i];
                    const unsigned char *img = images[i].data();
                    if (r.kind == "meta") {
                        save->set_metadata(r.fqn, r.value);
                    } else if (r.kind == "bytes") {
                        if (r.sharding == "replicated" || rank == 0) save->add_bytes(r.fqn, img, r.length);
                    } else if (r.sharding == "replicated" || (r.sharding == "rank0" && rank == 0)) {
                        save->add_tensor(r.fqn, r.dtype, r.shape, sp::Dims(r.shape.size(), 0), r.shape, img);
                    } else if (r.sharding == "rows" || r.sharding == "cols") {
                        const size_t dim = r.sharding == "rows" ? 0 : 1;
                        const uint64_t n = r.shape[dim];
                        const uint64_t lo = uint64_t(rank) * n / uint64_t(world), hi = uint64_t(rank + 1) * n / uint64_t(world);
                        if (lo == hi) continue;
                        sp::Dims offsets(r.shape.size(), 0), sizes = r.shape;
                        offsets[dim] = lo;
                        sizes[dim] = hi - lo;
                        // A strided view into the whole image: the whole tensor's strides.
                        const sp::Strides strides = c_strides(r.shape);
                        const unsigned char *first = img + lo * uint64_t(strides[dim]) * shardpoint_dtype_size(r.dtype);
                        save->add_tensor(r.fqn, r.dtype, r.shape, offsets, sizes, first, strides);
                    }
                }
            } catch (const sp::Error &e) {
                errors[rank] = std::string("offer: ") + e.what();
                offered = false;
            }
            if (!gate.all_ok(offered)) return;
            try {
                save->commit();
            } catch (const sp::Error &e) {
                errors[rank] = std::string("commit: ") + e.what();
            }
        });
    }
    for (auto &t : threads) t.join();
    int failed = 0;
    for (int rank = 0; rank < world; ++rank)
        if (!errors[rank].empty()) {
            std::fprintf(stderr, "golden_cpp write %s: rank %d: %s\n", dir.c_str(), rank, errors[rank].c_str());
            ++failed;
        }
    if (failed) return 1;
    std::printf("golden_cpp write %s: %d ranks ok\n", dir.c_str(), world);
    return 0;
}

int read(const std::string &dir, const std::vector<Record> &model) {
    int misses = 0;
    auto miss = [&](const std::string &fqn, const std::string &what) {
        std::printf("MISS %s: %s\n", fqn.c_str(), what.c_str());
        ++misses;
    };
    try {
        sp::Reader reader(dir);
        std::map<std::string, sp::Entry> entries;
        for (auto &e : reader.entries()) entries.emplace(e.fqn, e);
        size_t wanted = 0;

        // Whole entries, all in one batched load; the row boxes read one by one.
        sp::Load load(reader);
        struct Check {
            std::string what;
            std::vector<unsigned char> got, want;
        };
        std::vector<Check> checks;
        checks.reserve(2 * model.size());
        for (const Record &r : model) {
            if (r.kind == "meta") {
                try {
                    std::string v = reader.metadata(r.fqn);
                    if (v != r.value) miss("meta " + r.fqn, "'" + v + "', want '" + r.value + "'");
                } catch (const sp::Error &e) {
                    miss("meta " + r.fqn, e.what());
                }
                continue;
            }
            ++wanted;
            auto it = entries.find(r.fqn);
            if (it == entries.end()) {
                miss(r.fqn, "missing");
                continue;
            }
            const sp::Entry &e = it->second;
            const std::vector<unsigned char> img = image(r);
            if (r.kind == "bytes") {
                if (e.kind != SHARDPOINT_ENTRY_BYTES || e.nbytes != r.length) {
                    miss(r.fqn, "stored as kind " + std::to_string(e.kind) + " of " + std::to_string(e.nbytes) + " bytes, want bytes of " +
                                    std::to_string(r.length));
                    continue;
                }
                checks.push_back({r.fqn + " (bytes)", std::vector<unsigned char>(r.length, 0xEE), img});
                load.add_bytes(r.fqn, checks.back().got.data(), r.length);
                continue;
            }
            if (e.kind != SHARDPOINT_ENTRY_TENSOR || e.dtype != r.dtype || e.shape != r.shape) {
                miss(r.fqn, "stored as kind " + std::to_string(e.kind) + " dtype " + (shardpoint_dtype_name(e.dtype) ? shardpoint_dtype_name(e.dtype) : "?") +
                                " ndim " + std::to_string(e.shape.size()) + ", not the model's tensor");
                continue;
            }
            checks.push_back({r.fqn + " (whole)", std::vector<unsigned char>(img.size(), 0xEE), img});
            load.add_tensor(r.fqn, r.dtype, sp::Dims(r.shape.size(), 0), r.shape, checks.back().got.data(), checks.back().got.size());
            if (!r.shape.empty() && r.shape[0] >= 2) {
                const uint64_t lo = r.shape[0] / 3, row_bytes = img.size() / r.shape[0];
                sp::Dims offsets(r.shape.size(), 0), sizes = r.shape;
                offsets[0] = lo;
                sizes[0] = r.shape[0] - lo;
                std::vector<unsigned char> got((r.shape[0] - lo) * row_bytes, 0xEE);
                try {
                    reader.read_tensor(r.fqn, r.dtype, offsets, sizes, got.data(), got.size());
                    if (!std::equal(got.begin(), got.end(), img.begin() + long(lo * row_bytes)))
                        miss(r.fqn, "rows " + std::to_string(lo) + ".." + std::to_string(r.shape[0]) + " differ from the generator");
                } catch (const sp::Error &err) {
                    miss(r.fqn, std::string("load rows: ") + err.what());
                }
            }
        }
        try {
            load.execute();
            for (auto &c : checks)
                if (c.got != c.want) miss(c.what, "differs from the generator");
        } catch (const sp::Error &err) {
            miss("(load)", err.what());
        }
        for (auto &kv : entries) {
            bool in_model = false;
            for (const Record &r : model) in_model = in_model || (r.kind != "meta" && r.fqn == kv.first);
            if (!in_model) miss(kv.first, "not in the model");
        }
        if (misses) {
            std::printf("golden_cpp read %s: %d misses\n", dir.c_str(), misses);
            return 1;
        }
        std::printf("golden_cpp read %s: %zu entries ok\n", dir.c_str(), wanted);
        return 0;
    } catch (const sp::Error &e) {
        std::printf("golden_cpp read %s: %s\n", dir.c_str(), e.what());
        return 1;
    }
}

}  // namespace

int main(int argc, char **argv) {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "write" && argc == 4) {
        const std::string w = argv[3];
        if (w.empty() || w.size() > 4 || w.find_first_not_of("0123456789") != std::string::npos || std::stoi(w) < 1 ||
            std::stoi(w) > 1024)
            die("WORLD must be 1..1024");
        return write(argv[2], std::stoi(w), load_model());
    }
    if (cmd == "read" && argc == 3) return read(argv[2], load_model());
    std::fprintf(stderr, "usage: golden_cpp write DIR WORLD | golden_cpp read DIR\n");
    return 2;
}
