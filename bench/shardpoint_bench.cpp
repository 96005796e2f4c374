// shardpoint_bench: save and load throughput of a synthetic transformer-like state through the
// public C ABI (via shardpoint.hpp), next to baselines measured in the same run on the same disk:
// dd (with and without conv=fsync) and one plain read() loop over the same number of bytes.
//
// Every measurement is repeated (--reps) and reported as its median; writes are separated by
// sync() so that one measurement does not pay for the write-back of the previous one.
// See bench/README.md for what each line means and how to read the ratios.
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "shardpoint.hpp"

namespace sp = shardpoint::cxx;

namespace {

using Dims = std::vector<uint64_t>;
constexpr uint64_t MiB = 1ull << 20;
constexpr uint64_t rss_allowance = 64 * MiB;

[[noreturn]] void die(const std::string &message) {
    std::fprintf(stderr, "shardpoint_bench: %s\n", message.c_str());
    std::exit(2);
}

double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// ---------------------------------------------------------------------------------------------
// Options

struct Options {
    uint64_t size = 2ull << 30;
    int reps = 5;
    int load_reps = 0;  // 0: as reps (loads are cheap: more reps narrow their spread)
    int compress_reps = 1;  // zlib runs at tens of MB/s: one 2 GiB rep already takes a minute or two
    std::string parent;  // the work directory is created inside it
    uint32_t threads = 0;
    int level = 1;
    std::string json;
    std::set<std::string> only;  // empty: every group
    bool keep = false;
    bool print_spec = false;
    std::string rss_child;  // internal: run one save in this process and report its peak RSS
    std::string child_dir;
};

uint64_t parse_size(const std::string &s) {
    char *end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    std::string unit = end ? end : "";
    for (auto &c : unit) c = char(std::toupper(static_cast<unsigned char>(c)));
    if (!unit.empty() && unit.back() == 'B') unit.pop_back();
    if (!unit.empty() && unit.back() == 'I') unit.pop_back();
    double mult = unit.empty() ? 1 : unit == "K" ? 1024.0 : unit == "M" ? MiB : unit == "G" ? 1024.0 * MiB : -1;
    if (v <= 0 || mult < 0) die("bad size '" + s + "' (use e.g. 2G, 256M)");
    return uint64_t(v * mult);
}

const std::set<std::string> all_groups = {"baseline", "save", "load", "cold", "reshard", "compress", "async", "rss"};

void usage() {
    std::printf(
        "usage: shardpoint_bench [options]\n"
        "  --size SIZE      state size (default 2G; K/M/G suffixes are binary)\n"
        "  --reps N         repetitions of each measurement, medians reported (default 5)\n"
        "  --load-reps N    repetitions of the warm reads and loads (default: as --reps)\n"
        "  --compress-reps N  repetitions of the compressed save (default 1)\n"
        "  --dir DIR        parent of the work directory; checkpoints and baseline files go there\n"
        "                   (default $TMPDIR, else /var/tmp)\n"
        "  --threads N      io_threads for shardpoint (default 0: one per core)\n"
        "  --level N        zstd level of the compressed save (zstd blocks, shuffled; default 1)\n"
        "  --only LIST      comma-separated groups: baseline,save,load,cold,reshard,compress,async,rss\n"
        "  --json FILE      also write the results as JSON\n"
        "  --keep           keep the work directory\n"
        "  --print-spec     print the synthetic state's entries (name dtype shape) and exit\n");
}

Options parse_args(int argc, char **argv) {
    Options o;
    const char *tmp = std::getenv("TMPDIR");
    o.parent = tmp && *tmp ? tmp : "/var/tmp";
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) die("missing value after " + a);
            return argv[++i];
        };
        if (a == "--size") o.size = parse_size(value());
        else if (a == "--reps") o.reps = std::atoi(value().c_str());
        else if (a == "--load-reps") o.load_reps = std::atoi(value().c_str());
        else if (a == "--compress-reps") o.compress_reps = std::atoi(value().c_str());
        else if (a == "--dir") o.parent = value();
        else if (a == "--threads") o.threads = uint32_t(std::atoi(value().c_str()));
        else if (a == "--level") o.level = std::atoi(value().c_str());
        else if (a == "--json") o.json = value();
        else if (a == "--keep") o.keep = true;
        else if (a == "--print-spec") o.print_spec = true;
        else if (a == "--rss-child") o.rss_child = value();
        else if (a == "--child-dir") o.child_dir = value();
        else if (a == "--only") {
            std::stringstream ss(value());
            std::string g;
            while (std::getline(ss, g, ',')) {
                if (!all_groups.count(g)) die("unknown group '" + g + "'");
                o.only.insert(g);
            }
        } else if (a == "-h" || a == "--help") {
            usage();
            std::exit(0);
        } else {
            usage();
            die("unknown option " + a);
        }
    }
    if (o.reps < 1) die("--reps must be >= 1");
    if (o.load_reps < 0) die("--load-reps must be >= 0");
    if (o.load_reps == 0) o.load_reps = o.reps;
    if (o.compress_reps < 1) die("--compress-reps must be >= 1");
    if (o.level < 1 || o.level > 19) die("--level must be 1..19");
    return o;
}

// ---------------------------------------------------------------------------------------------
// The synthetic state: a llama-like decoder in f32. Its hidden size is picked for the requested
// size and the vocabulary absorbs the remainder, so the total is within a few KiB of --size.

enum class Shard { rows, cols, blocks, replicated, blob };

struct TensorSpec {
    std::string name;
    Shard shard;  // how the 4 saving ranks hold it
    Dims shape;
    bool ones = false;  // norms start at 1.0
    bool blob() const { return shard == Shard::blob; }
    uint64_t numel() const {
        uint64_t n = 1;
        for (auto d : shape) n *= d;
        return n;
    }
    uint64_t nbytes() const { return blob() ? shape[0] : numel() * 4; }
};

constexpr int layers = 8;
constexpr uint64_t blob_bytes = 4096;

uint64_t bytes_without_vocab(uint64_t h) {
    uint64_t f = h * 11 / 4;
    uint64_t per_layer = 4 * h * h + 3 * h * f + 3 * h + f;  // 7 matrices, 2 norms, 2 biases
    return 4 * (layers * per_layer + h) + blob_bytes;
}

std::vector<TensorSpec> make_spec(uint64_t target) {
    // The largest hidden size (a multiple of 64) that leaves a vocabulary of at least 16 x hidden.
    uint64_t h = 64;
    while (bytes_without_vocab(h + 64) + 8 * 16 * (h + 64) * (h + 64) <= target) h += 64;
    uint64_t rest = target > bytes_without_vocab(h) ? target - bytes_without_vocab(h) : 0;
    uint64_t vocab = std::max<uint64_t>(64, rest / (8 * h));
    uint64_t f = h * 11 / 4;

    std::vector<TensorSpec> spec;
    spec.push_back({"tok_embeddings.weight", Shard::rows, {vocab, h}});
    for (int l = 0; l < layers; ++l) {
        std::string p = "layers." + std::to_string(l) + ".";
        spec.push_back({p + "attention_norm.weight", Shard::replicated, {h}, true});
        spec.push_back({p + "attention.wq.weight", Shard::rows, {h, h}});
        spec.push_back({p + "attention.wq.bias", Shard::rows, {h}});
        spec.push_back({p + "attention.wk.weight", Shard::rows, {h, h}});
        spec.push_back({p + "attention.wv.weight", Shard::blocks, {h, h}});
        spec.push_back({p + "attention.wo.weight", Shard::cols, {h, h}});
        spec.push_back({p + "ffn_norm.weight", Shard::replicated, {h}, true});
        spec.push_back({p + "feed_forward.w1.weight", Shard::rows, {f, h}});
        spec.push_back({p + "feed_forward.w1.bias", Shard::rows, {f}});
        spec.push_back({p + "feed_forward.w2.weight", Shard::cols, {h, f}});
        spec.push_back({p + "feed_forward.w3.weight", Shard::rows, {f, h}});
    }
    spec.push_back({"norm.weight", Shard::replicated, {h}, true});
    spec.push_back({"output.weight", Shard::blocks, {vocab, h}});
    spec.push_back({"extra_state", Shard::blob, {blob_bytes}});
    return spec;
}

// One allocation holding every tensor at a page-aligned offset, filled once.
struct Arena {
    unsigned char *base = nullptr;
    uint64_t length = 0;

    explicit Arena(uint64_t len) : length(std::max<uint64_t>(len, 4096)) {
        void *p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) die("mmap of " + std::to_string(length) + " bytes failed");
        base = static_cast<unsigned char *>(p);
        // As numpy does for its large arrays (and so every Python caller's fresh destination):
        // transparent huge pages where the kernel offers them on request. Without it a load into
        // fresh memory measures 4 KiB page faults, not the library.
        ::madvise(base, length, MADV_HUGEPAGE);
    }
    Arena(const Arena &) = delete;
    Arena &operator=(const Arena &) = delete;
    ~Arena() { ::munmap(base, length); }
};

uint64_t align_page(uint64_t x) { return (x + 4095) / 4096 * 4096; }

// Runs task(i) for i in [0, n) on every core.
void parallel(size_t n, const std::function<void(size_t)> &task) {
    unsigned threads = std::max(1u, std::thread::hardware_concurrency());
    std::atomic<size_t> next{0};
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t)
        pool.emplace_back([&] {
            for (size_t i; (i = next.fetch_add(1)) < n;) task(i);
        });
    for (auto &t : pool) t.join();
}

uint64_t splitmix(uint64_t &x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Weights uniform in [-0.05, 0.05) with 23 random mantissa-like bits: about as (in)compressible
// as trained f32 weights.
void fill(unsigned char *p, uint64_t nbytes, bool ones, uint64_t seed) {
    if (ones) {
        const float one = 1.0f;
        for (uint64_t i = 0; i + 4 <= nbytes; i += 4) std::memcpy(p + i, &one, 4);
        return;
    }
    const float scale = 0.05f / float(1 << 22);
    uint64_t state = seed, i = 0;
    for (; i + 8 <= nbytes; i += 8) {
        uint64_t x = splitmix(state);
        float v[2] = {float(int32_t(x >> 41) - (1 << 22)) * scale, float(int32_t((x >> 9) & 0x7fffff) - (1 << 22)) * scale};
        std::memcpy(p + i, v, 8);
    }
    for (uint64_t x = splitmix(state); i < nbytes; ++i, x >>= 8) p[i] = uint8_t(x);
}

// Fills regions in parallel, in 16 MiB pieces.
struct FillJob {
    unsigned char *p;
    uint64_t nbytes;
    bool ones;
    uint64_t seed;
};
void fill_all(const std::vector<FillJob> &jobs) {
    std::vector<FillJob> pieces;
    for (const FillJob &j : jobs)
        for (uint64_t a = 0; a < j.nbytes || (a == 0 && j.nbytes == 0); a += 16 * MiB) {
            pieces.push_back({j.p + a, std::min(16 * MiB, j.nbytes - a), j.ones, j.seed * 1000003 + a});
            if (j.nbytes == 0) break;
        }
    parallel(pieces.size(), [&](size_t k) { fill(pieces[k].p, pieces[k].nbytes, pieces[k].ones, pieces[k].seed); });
}

struct State {
    std::vector<TensorSpec> spec;
    std::vector<uint64_t> offset;  // of each entry in an arena laid out like the state
    uint64_t total = 0;            // sum of entry sizes (what is saved)
    uint64_t span = 0;             // arena length
};

State layout(uint64_t size) {
    State s;
    s.spec = make_spec(size);
    for (auto &t : s.spec) {
        s.offset.push_back(s.span);
        s.span += align_page(t.nbytes());
        s.total += t.nbytes();
    }
    return s;
}

void fill_state(const State &s, unsigned char *base) {
    std::vector<FillJob> jobs;
    for (size_t i = 0; i < s.spec.size(); ++i) jobs.push_back({base + s.offset[i], s.spec[i].nbytes(), s.spec[i].ones, i + 1});
    fill_all(jobs);
}

// ---------------------------------------------------------------------------------------------
// Shardings

struct Box {
    Dims offsets, sizes;
};

// Part `k` of `n` of [0, len).
std::pair<uint64_t, uint64_t> split(uint64_t len, int k, int n) {
    uint64_t a = len * uint64_t(k) / uint64_t(n), b = len * uint64_t(k + 1) / uint64_t(n);
    return {a, b - a};
}

Box whole(const TensorSpec &t) { return Box{Dims(t.shape.size(), 0), t.shape}; }

Box rows_box(const TensorSpec &t, int rank, int world) {
    Box b = whole(t);
    auto [a, n] = split(t.shape[0], rank, world);
    b.offsets[0] = a;
    b.sizes[0] = n;
    return b;
}

// The chunk rank `rank` of 4 holds when saving; nothing for blobs on ranks other than 0.
std::optional<Box> saved_box4(const TensorSpec &t, int rank) {
    switch (t.shard) {
        case Shard::blob: return rank == 0 ? std::optional<Box>(whole(t)) : std::nullopt;
        case Shard::replicated: return whole(t);
        case Shard::rows: return rows_box(t, rank, 4);
        case Shard::cols: {
            Box b = whole(t);
            auto [a, n] = split(t.shape[1], rank, 4);
            b.offsets[1] = a;
            b.sizes[1] = n;
            return b;
        }
        case Shard::blocks: {
            Box b = whole(t);
            auto [r0, rn] = split(t.shape[0], rank / 2, 2);
            auto [c0, cn] = split(t.shape[1], rank % 2, 2);
            b.offsets = {r0, c0};
            b.sizes = {rn, cn};
            return b;
        }
    }
    return std::nullopt;
}

// The chunk rank `rank` of `world` holds when every entry is split along its first dimension.
std::optional<Box> rows_layout(const TensorSpec &t, int rank, int world) {
    if (t.blob()) return rank == 0 ? std::optional<Box>(whole(t)) : std::nullopt;
    return rows_box(t, rank, world);
}

using Layout = std::function<std::optional<Box>(const TensorSpec &, int rank)>;

// A chunk in a rank's memory: C order for its own box.
struct Chunk {
    size_t entry;
    Box box;
    unsigned char *data;
};

uint64_t box_bytes(const TensorSpec &t, const Box &b) {
    if (t.blob()) return t.shape[0];
    uint64_t n = 4;
    for (auto d : b.sizes) n *= d;
    return n;
}

// A box of rows spanning every other dimension whole is one contiguous run of the full tensor.
bool is_row_slab(const TensorSpec &t, const Box &b) {
    for (size_t d = 1; d < t.shape.size(); ++d)
        if (b.offsets[d] != 0 || b.sizes[d] != t.shape[d]) return false;
    return true;
}

uint64_t slab_offset(const TensorSpec &t, const Box &b) {
    if (t.blob() || t.shape.empty()) return 0;
    return b.offsets[0] * (t.numel() / t.shape[0]) * 4;
}

// Copies a 2-D box out of a C-order tensor into contiguous memory.
void copy_out(const TensorSpec &t, const unsigned char *full, const Box &b, unsigned char *out) {
    const uint64_t row = t.shape[1] * 4, w = b.sizes[1] * 4;
    for (uint64_t r = 0; r < b.sizes[0]; ++r) std::memcpy(out + r * w, full + (b.offsets[0] + r) * row + b.offsets[1] * 4, w);
}

// Every rank's chunks under `layout`. Row slabs point into `state_base` (a rank holding a row shard
// holds exactly those bytes); other boxes are copied into `own`, sized by the first call with
// own == nullptr (returns the bytes needed). With own_all, every chunk gets its own copy and the
// returned chunks describe memory that `fill_own` must initialise (no full state needed).
struct RankChunks {
    std::vector<std::vector<Chunk>> ranks;
    uint64_t own_bytes = 0;
};

RankChunks plan_chunks(const State &s, const Layout &layout, int world, bool own_all) {
    RankChunks rc;
    rc.ranks.resize(world);
    for (int r = 0; r < world; ++r)
        for (size_t i = 0; i < s.spec.size(); ++i) {
            auto b = layout(s.spec[i], r);
            if (!b) continue;
            Chunk c{i, *b, nullptr};
            if (own_all || !is_row_slab(s.spec[i], *b)) {
                c.data = reinterpret_cast<unsigned char *>(uintptr_t(rc.own_bytes));  // offset for now
                rc.own_bytes += align_page(box_bytes(s.spec[i], *b));
            }
            rc.ranks[r].push_back(c);
        }
    return rc;
}

// Resolves chunk memory: offsets into `own` for owned chunks, into the state for row slabs.
void place_chunks(const State &s, RankChunks &rc, unsigned char *state_base, unsigned char *own, bool own_all) {
    for (auto &rank : rc.ranks)
        for (auto &c : rank) {
            const TensorSpec &t = s.spec[c.entry];
            if (own_all || !is_row_slab(t, c.box)) {
                c.data = own + uintptr_t(c.data);
                if (!own_all) copy_out(t, state_base + s.offset[c.entry], c.box, c.data);
            } else {
                c.data = state_base + s.offset[c.entry] + slab_offset(t, c.box);
            }
        }
}

// ---------------------------------------------------------------------------------------------
// Files and the system

std::string work_dir;  // removed at exit unless --keep

int remove_one(const char *path, const struct stat *, int, struct FTW *) { return ::remove(path); }

void remove_tree(const std::string &path) {
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) return;
    ::nftw(path.c_str(), remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

std::string fs_type(const std::string &dir) {
    struct statfs s;
    if (::statfs(dir.c_str(), &s) != 0) return "unknown";
    switch (uint64_t(s.f_type)) {
        case 0xEF53: return "ext4";
        case 0x58465342: return "xfs";
        case 0x9123683E: return "btrfs";
        case 0x01021994: return "tmpfs";
        case 0x794c7630: return "overlayfs";
        case 0x6969: return "nfs";
        case 0x2FC12FC1: return "zfs";
        default: {
            char b[32];
            std::snprintf(b, sizeof b, "fs 0x%" PRIx64, uint64_t(s.f_type));
            return b;
        }
    }
}

// The 1-minute load average: other work on the machine makes every number here noisy.
double load_average() {
    double l = -1;
    if (FILE *f = std::fopen("/proc/loadavg", "r")) {
        if (std::fscanf(f, "%lf", &l) != 1) l = -1;
        std::fclose(f);
    }
    return l;
}

// Bytes this process has read through read()/pread() so far (all threads): a load's delta over the
// bytes it delivers is its read amplification (whole CRC blocks read for partial requests).
uint64_t bytes_read_so_far() {
    uint64_t v = 0;
    if (FILE *f = std::fopen("/proc/self/io", "r")) {
        char line[128];
        while (std::fgets(line, sizeof line, f))
            if (std::strncmp(line, "rchar:", 6) == 0) v = std::strtoull(line + 6, nullptr, 10);
        std::fclose(f);
    }
    return v;
}

// CPU seconds (user + system) of this process's threads and of its waited-for children (dd).
double cpu_seconds() {
    double t = 0;
    for (int who : {RUSAGE_SELF, RUSAGE_CHILDREN}) {
        struct rusage u;
        ::getrusage(who, &u);
        t += double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
    }
    return t;
}

// Peak and current resident set of this process, in bytes.
uint64_t proc_status_kb(const char *field) {
    FILE *f = std::fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    uint64_t kb = 0;
    size_t n = std::strlen(field);
    while (std::fgets(line, sizeof line, f))
        if (std::strncmp(line, field, n) == 0) kb = std::strtoull(line + n, nullptr, 10);
    std::fclose(f);
    return kb * 1024;
}

bool reset_peak_rss() {
    FILE *f = std::fopen("/proc/self/clear_refs", "w");
    if (!f) return false;
    bool ok = std::fputs("5", f) >= 0;
    return std::fclose(f) == 0 && ok;
}

void write_all(int fd, const unsigned char *p, uint64_t n) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            die(std::string("write: ") + std::strerror(errno));
        }
        p += w;
        n -= uint64_t(w);
    }
}

// The state's bytes, entry after entry, in one file (the read() baseline's input).
void write_state_file(const State &s, const unsigned char *base, const std::string &path) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) die("create " + path + ": " + std::strerror(errno));
    for (size_t i = 0; i < s.spec.size(); ++i) write_all(fd, base + s.offset[i], s.spec[i].nbytes());
    ::close(fd);
}

// One read() loop of `n` bytes into `dst`; returns seconds.
double read_file(const std::string &path, unsigned char *dst, uint64_t n) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open " + path + ": " + std::strerror(errno));
    double t0 = now();
    uint64_t got = 0;
    while (got < n) {
        ssize_t r = ::read(fd, dst + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) die("read " + path + " failed or ended early");
        got += uint64_t(r);
    }
    double t = now() - t0;
    ::close(fd);
    return t;
}

double run_dd(const std::string &path, uint64_t mib, bool fsync) {
    std::string cmd = "dd if=/dev/zero of='" + path + "' bs=1M count=" + std::to_string(mib) +
                      (fsync ? " conv=fsync" : "") + " status=none";
    double t0 = now();
    int rc = std::system(cmd.c_str());
    double t = now() - t0;
    if (rc != 0) die("'" + cmd + "' failed");
    return t;
}

// The disk's sequential read limit: `dd iflag=direct` bypasses the page cache entirely.
double run_dd_read_direct(const std::string &path) {
    std::string cmd = "dd if='" + path + "' of=/dev/null bs=4M iflag=direct status=none";
    double t0 = now();
    int rc = std::system(cmd.c_str());
    double t = now() - t0;
    if (rc != 0) die("'" + cmd + "' failed");
    return t;
}

// Evicts `paths` (files, or directories whose files) from the page cache. The kernel's
// drop_caches when permitted (root), else POSIX_FADV_DONTNEED on every file, which only evicts
// clean pages: hence the sync first. Returns how it was done, for the report.
std::string drop_page_cache(const std::vector<std::string> &paths) {
    ::sync();
    int fd = ::open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        bool ok = ::write(fd, "1\n", 2) == 2;
        ::close(fd);
        if (ok) return "drop_caches";
    }
    static std::vector<std::string> files;
    files.clear();
    for (auto &p : paths)
        ::nftw(p.c_str(), [](const char *f, const struct stat *, int type, struct FTW *) {
            if (type == FTW_F) files.push_back(f);
            return 0;
        }, 16, FTW_PHYS);
    for (auto &f : files) {
        int ffd = ::open(f.c_str(), O_RDONLY | O_CLOEXEC);
        if (ffd < 0) continue;
        ::posix_fadvise(ffd, 0, 0, POSIX_FADV_DONTNEED);
        ::close(ffd);
    }
    return "fadvise(DONTNEED)";
}

// ---------------------------------------------------------------------------------------------
// Saving and loading through the C ABI

struct SaveConfig {
    uint32_t flags = SHARDPOINT_SAVE_NO_FSYNC;  // the "no fsync" rows; saves are durable by default
    int level = 0;  // > 0: zstd blocks of that level, byte-shuffled (format 2)
    uint32_t threads = 0;
};

void add_chunk(sp::Save &save, const TensorSpec &t, const Chunk &c) {
    if (t.blob()) save.add_bytes(t.name, c.data, t.shape[0]);
    else save.add_tensor(t.name, SHARDPOINT_DTYPE_F32, t.shape, c.box.offsets, c.box.sizes, c.data);
}

// Saves every rank's chunks, ranks as threads (LocalGroup) when there are several; returns seconds.
double save_ranks(const State &s, const std::vector<std::vector<Chunk>> &ranks, const std::string &dir, const SaveConfig &cfg) {
    shardpoint_save_options o = SHARDPOINT_SAVE_OPTIONS_INIT;
    o.flags = cfg.flags;
    o.compression_level = cfg.level;
    if (cfg.level > 0) {
        o.codec = SHARDPOINT_CODEC_ZSTD;
        o.filters = SHARDPOINT_FILTER_SHUFFLE;
    }
    o.io_threads = cfg.threads;
    const int world = int(ranks.size());
    if (world == 1) {
        double t0 = now();
        sp::Save save(dir, nullptr, &o);
        for (const Chunk &c : ranks[0]) add_chunk(save, s.spec[c.entry], c);
        save.commit();
        return now() - t0;
    }
    sp::LocalGroup group(world);
    std::vector<sp::Comm> comms;
    for (int r = 0; r < world; ++r) comms.push_back(group.comm(r));
    std::vector<std::string> errors(world);
    double t0 = now();
    std::vector<std::thread> threads;
    for (int r = 0; r < world; ++r)
        threads.emplace_back([&, r] {
            try {
                sp::Save save(dir, &comms[r], &o);
                for (const Chunk &c : ranks[r]) add_chunk(save, s.spec[c.entry], c);
                save.commit();
            } catch (const std::exception &e) {
                errors[r] = e.what();
            }
        });
    for (auto &t : threads) t.join();
    double t = now() - t0;
    for (int r = 0; r < world; ++r)
        if (!errors[r].empty()) die("save, rank " + std::to_string(r) + ": " + errors[r]);
    return t;
}

// A request: box `box` of entry `entry` into `dst` (C order for the box).
struct Request {
    size_t entry;
    Box box;
    unsigned char *dst;
};

void add_request(sp::Load &load, const TensorSpec &t, const Request &q) {
    if (t.blob()) load.add_bytes(t.name, q.dst, t.shape[0]);
    else {
        uint64_t elements = 1;
        for (uint64_t n : q.box.sizes) elements *= n;
        load.add_tensor(t.name, SHARDPOINT_DTYPE_F32, q.box.offsets, q.box.sizes, q.dst, elements * sizeof(float));
    }
}

// Each rank opens the checkpoint, adds its requests and executes them; returns seconds.
double load_ranks(const State &s, const std::vector<std::vector<Request>> &ranks, const std::string &dir, uint32_t flags,
                  uint32_t threads) {
    shardpoint_load_options o = SHARDPOINT_LOAD_OPTIONS_INIT;
    o.flags = flags;
    o.io_threads = threads;
    const int world = int(ranks.size());
    if (world == 1) {
        double t0 = now();
        sp::Reader reader(dir, &o);
        sp::Load load(reader);
        for (const Request &q : ranks[0]) add_request(load, s.spec[q.entry], q);
        load.execute();
        return now() - t0;
    }
    sp::LocalGroup group(world);
    std::vector<sp::Comm> comms;
    for (int r = 0; r < world; ++r) comms.push_back(group.comm(r));
    std::vector<std::string> errors(world);
    double t0 = now();
    std::vector<std::thread> pool;
    for (int r = 0; r < world; ++r)
        pool.emplace_back([&, r] {
            try {
                sp::Reader reader(dir, &o);
                sp::Load load(reader, &comms[r]);
                for (const Request &q : ranks[r]) add_request(load, s.spec[q.entry], q);
                load.execute();
            } catch (const std::exception &e) {
                errors[r] = e.what();
            }
        });
    for (auto &t : pool) t.join();
    double t = now() - t0;
    for (int r = 0; r < world; ++r)
        if (!errors[r].empty()) die("load, rank " + std::to_string(r) + ": " + errors[r]);
    return t;
}

// Requests of `world` ranks splitting every entry along its first dimension, into a destination
// laid out like the state (so each rank's part of an entry is one contiguous run of it).
std::vector<std::vector<Request>> row_requests(const State &s, int world, unsigned char *dst_base) {
    std::vector<std::vector<Request>> ranks(world);
    for (int r = 0; r < world; ++r)
        for (size_t i = 0; i < s.spec.size(); ++i) {
            auto b = rows_layout(s.spec[i], r, world);
            if (b) ranks[r].push_back(Request{i, *b, dst_base + s.offset[i] + slab_offset(s.spec[i], *b)});
        }
    return ranks;
}

bool same_as_state(const State &s, const unsigned char *state_base, const unsigned char *dst_base) {
    for (size_t i = 0; i < s.spec.size(); ++i)
        if (std::memcmp(state_base + s.offset[i], dst_base + s.offset[i], s.spec[i].nbytes()) != 0) {
            std::fprintf(stderr, "shardpoint_bench: loaded bytes of '%s' differ from the saved ones\n", s.spec[i].name.c_str());
            return false;
        }
    return true;
}

// ---------------------------------------------------------------------------------------------
// Results

struct Measurement {
    std::string key, label;
    uint64_t bytes = 0;
    std::vector<double> seconds;
    std::vector<uint64_t> read_bytes;  // bytes this process read() per rep
    std::vector<double> cpu;           // CPU seconds per rep (all threads, and dd)

    // Runs one rep of `op` (which returns its wall seconds) and records it.
    template <class Op>
    void run(Op &&op) {
        const double c0 = cpu_seconds();
        const uint64_t r0 = bytes_read_so_far();
        const double secs = op();
        cpu.push_back(cpu_seconds() - c0);
        read_bytes.push_back(bytes_read_so_far() - r0);
        seconds.push_back(secs);
    }
    // CPU seconds per GB delivered (median over reps): robust to other work on the machine.
    double cpu_per_gb() const {
        std::vector<double> v = cpu;
        std::sort(v.begin(), v.end());
        return v[v.size() / 2] / (double(bytes) / 1e9);
    }
    // Bytes read per byte delivered (median over reps); 0 when not recorded.
    double amplification() const {
        if (read_bytes.empty() || (key.rfind("load", 0) != 0 && key.rfind("read", 0) != 0)) return 0;
        std::vector<uint64_t> v = read_bytes;
        std::sort(v.begin(), v.end());
        return double(v[v.size() / 2]) / double(bytes);
    }

    double median() const {
        std::vector<double> v = seconds;
        std::sort(v.begin(), v.end());
        size_t n = v.size();
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    }
    double gbps() const { return double(bytes) / median() / 1e9; }
    double min_gbps() const { return double(bytes) / *std::max_element(seconds.begin(), seconds.end()) / 1e9; }
    double max_gbps() const { return double(bytes) / *std::min_element(seconds.begin(), seconds.end()) / 1e9; }
};

struct RssResult {
    std::string mode;
    uint64_t state_bytes = 0, rss_before = 0, hwm = 0;
    bool reset_ok = false;
    uint64_t overhead() const { return hwm > rss_before ? hwm - rss_before : 0; }
};

struct Results {
    std::deque<Measurement> ms;  // a deque: add() hands out references that must stay valid
    std::vector<RssResult> rss;
    std::map<std::string, double> extra;  // compression ratio, generation time, ...
    std::map<std::string, std::string> notes;  // how the page cache was dropped, ...

    Measurement &add(const std::string &key, const std::string &label, uint64_t bytes) {
        ms.push_back(Measurement{key, label, bytes, {}, {}, {}});
        return ms.back();
    }
    Measurement *find(const std::string &key) {
        for (auto &m : ms)
            if (m.key == key) return &m;
        return nullptr;
    }
};

// Progress on a terminal only: a log should hold results, not carriage returns.
void progress(const char *what, int rep, int reps) {
    if (!::isatty(2)) return;
    std::fprintf(stderr, "  %-44s rep %d/%d\r", what, rep + 1, reps);
    std::fflush(stderr);
}

// ---------------------------------------------------------------------------------------------
// The peak-RSS child: a fresh process that holds only the state, saves it once, and reports.

int rss_child_main(const Options &o) {
    State s = layout(o.size);
    const std::string &mode = o.rss_child;
    SaveConfig cfg;
    cfg.threads = o.threads;
    RankChunks rc;
    std::unique_ptr<Arena> state;
    std::unique_ptr<Arena> own;
    uint64_t state_bytes = 0;
    if (mode == "plain" || mode == "plain-fsync" || mode == "compressed") {
        state = std::make_unique<Arena>(s.span);
        fill_state(s, state->base);
        state_bytes = s.total;
        rc.ranks.resize(1);
        for (size_t i = 0; i < s.spec.size(); ++i) rc.ranks[0].push_back(Chunk{i, whole(s.spec[i]), state->base + s.offset[i]});
        if (mode == "plain-fsync") cfg.flags = SHARDPOINT_SAVE_FSYNC;
        if (mode == "compressed") cfg.level = o.level;
    } else if (mode == "sharded4") {
        // Four ranks, each holding its own copies of its chunks (replicated norms included).
        rc = plan_chunks(s, saved_box4, 4, true);
        own = std::make_unique<Arena>(rc.own_bytes);
        place_chunks(s, rc, nullptr, own->base, true);
        std::vector<FillJob> jobs;
        for (auto &rank : rc.ranks)
            for (auto &c : rank) {
                uint64_t n = box_bytes(s.spec[c.entry], c.box);
                jobs.push_back({c.data, n, s.spec[c.entry].ones, c.entry + 1});
                state_bytes += n;
            }
        fill_all(jobs);
    } else {
        die("unknown --rss-child mode " + mode);
    }
    const uint64_t rss_before = proc_status_kb("VmRSS:");
    const bool reset_ok = reset_peak_rss();
    save_ranks(s, rc.ranks, o.child_dir, cfg);
    const uint64_t hwm = proc_status_kb("VmHWM:");
    std::printf("rss %s %" PRIu64 " %" PRIu64 " %" PRIu64 " %d\n", mode.c_str(), state_bytes, rss_before, hwm, reset_ok ? 1 : 0);
    return 0;
}

RssResult run_rss_child(const Options &o, const std::string &mode, const std::string &dir) {
    char exe[4096];
    ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) die("readlink /proc/self/exe failed");
    exe[n] = 0;
    int fds[2];
    if (::pipe(fds) != 0) die("pipe failed");
    std::vector<std::string> args = {exe, "--rss-child", mode, "--child-dir", dir, "--size", std::to_string(o.size),
                                     "--threads", std::to_string(o.threads), "--level", std::to_string(o.level)};
    pid_t pid = ::fork();
    if (pid < 0) die("fork failed");
    if (pid == 0) {
        ::dup2(fds[1], 1);
        ::close(fds[0]);
        ::close(fds[1]);
        std::vector<char *> argv;
        for (auto &a : args) argv.push_back(const_cast<char *>(a.c_str()));
        argv.push_back(nullptr);
        ::execv(exe, argv.data());
        _exit(127);
    }
    ::close(fds[1]);
    std::string out;
    char buf[512];
    for (ssize_t r; (r = ::read(fds[0], buf, sizeof buf)) != 0;) {
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;
        out.append(buf, size_t(r));
    }
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("peak-RSS child '" + mode + "' failed");
    RssResult r;
    char m[64];
    int reset = 0;
    if (std::sscanf(out.c_str(), "rss %63s %" SCNu64 " %" SCNu64 " %" SCNu64 " %d", m, &r.state_bytes, &r.rss_before, &r.hwm,
                    &reset) != 5)
        die("peak-RSS child printed '" + out + "'");
    r.mode = mode;
    r.reset_ok = reset != 0;
    return r;
}

// ---------------------------------------------------------------------------------------------
// The run

std::string json_escape(const std::string &s) {
    std::string o;
    for (char c : s) {
        if (c == '"' || c == '\\') o += '\\';
        o += c;
    }
    return o;
}

struct Target {
    std::string name;
    std::string num, den;  // measurement keys
    double needed;
};

// Issue 9's targets where both sides are measured here (the peers' come from peers.py).
const std::vector<Target> targets = {
    {"save with fsync / dd conv=fsync", "save_fsync", "dd_fsync", 0.95},
    {"warm load CRC on / CRC off", "load_warm", "load_noverify", 0.95},
    {"warm load / plain read()", "load_warm", "read_warm", 0.8},
    {"resharded load (4->3 ranks) / matched 3-rank load", "load_resharded", "load_matched", 0.8},
    {"cold load / dd iflag=direct", "load_cold", "read_direct", 0.9},
};
const std::vector<Target> informative = {
    {"save without fsync / dd without fsync", "save_nofsync", "dd_nofsync", 0},
    {"load without CRC check / plain read()", "load_noverify", "read_warm", 0},
    {"load into fresh memory / read() into fresh memory", "load_fresh", "read_fresh", 0},
    {"resharded load / 1-rank warm load", "load_resharded", "load_warm", 0},
    {"4-rank sharded save / 1-rank save (no fsync)", "save_sharded4", "save_nofsync", 0},
    {"compressed save / save without fsync", "save_compressed", "save_nofsync", 0},
    {"async save: sync save time / time blocked (>= 5)", "async_blocked", "async_sync_ref", 0},
    {"async save: memcpy time / time blocked (>= 1)", "async_blocked", "memcpy_state", 0},
    {"async save: sync save time / time to commit (>= 0.91)", "async_total", "async_sync_ref", 0},
};

}  // namespace

int main(int argc, char **argv) {
    Options o = parse_args(argc, argv);
    if (!o.rss_child.empty()) return rss_child_main(o);
    State s = layout(o.size);
    if (o.print_spec) {
        for (auto &t : s.spec) {
            std::printf("%s %s", t.name.c_str(), t.blob() ? "u8" : t.ones ? "f32-ones" : "f32");
            for (auto d : t.shape) std::printf(" %" PRIu64, d);
            std::printf("\n");
        }
        return 0;
    }
    auto want = [&](const char *g) { return o.only.empty() || o.only.count(g) > 0; };

    ::mkdir(o.parent.c_str(), 0755);
    std::string tmpl = o.parent + "/shardpoint-bench-XXXXXX";
    std::vector<char> tbuf(tmpl.begin(), tmpl.end());
    tbuf.push_back(0);
    if (!::mkdtemp(tbuf.data())) die("mkdtemp in '" + o.parent + "': " + std::strerror(errno));
    work_dir = tbuf.data();
    if (!o.keep) std::atexit([] { remove_tree(work_dir); });
    // A closed pipe (`| head`) must not kill us before the work directory is removed.
    ::signal(SIGPIPE, SIG_IGN);

    size_t matrices = 0, vectors = 0, blobs = 0;
    for (auto &t : s.spec) (t.blob() ? blobs : t.shape.size() == 2 ? matrices : vectors)++;
    const unsigned cores = std::thread::hardware_concurrency();
    std::printf("shardpoint_bench %s: state %.2f GiB (%" PRIu64 " bytes; %zu entries: %zu matrices, %zu vectors, %zu blob; "
                "hidden %" PRIu64 ", vocab %" PRIu64 ")\n",
                shardpoint_version_string(), double(s.total) / (1024.0 * MiB), s.total, s.spec.size(), matrices, vectors, blobs,
                s.spec[1].shape[0], s.spec[0].shape[0]);
    std::printf("work dir %s (%s), %d reps (%d for warm reads, %d for compressed saves), medians; io_threads %s, %u cores\n\n",
                work_dir.c_str(), fs_type(work_dir).c_str(), o.reps, o.load_reps, o.compress_reps,
                o.threads ? std::to_string(o.threads).c_str() : "auto", cores);
    if (fs_type(work_dir) == "tmpfs") std::printf("WARNING: the work dir is on tmpfs: fsync and disk numbers mean nothing here\n\n");
    const double load_before = load_average();
    if (load_before > 1.0)
        std::printf("WARNING: load average %.2f before the run on %u cores: other work competes, expect noise\n\n", load_before, cores);

    Results res;
    double t0 = now();
    Arena state(s.span), dst(s.span);
    fill_state(s, state.base);
    std::memset(dst.base, 0, dst.length);  // fault the destination in once
    res.extra["generate_seconds"] = now() - t0;
    const std::string W = work_dir + "/";
    std::vector<std::vector<Chunk>> single(1);
    for (size_t i = 0; i < s.spec.size(); ++i) single[0].push_back(Chunk{i, whole(s.spec[i]), state.base + s.offset[i]});
    std::vector<std::vector<Request>> single_req(1);
    for (size_t i = 0; i < s.spec.size(); ++i) single_req[0].push_back(Request{i, whole(s.spec[i]), dst.base + s.offset[i]});
    SaveConfig plain;
    plain.threads = o.threads;

    // Writes, interleaved rep by rep so that slow phases of the disk hit every kind alike.
    if (want("baseline") || want("save")) {
        const uint64_t mib = (s.total + MiB - 1) / MiB;
        Measurement *dd0 = want("baseline") ? &res.add("dd_nofsync", "dd bs=1M (no fsync)", mib * MiB) : nullptr;
        Measurement *dd1 = want("baseline") ? &res.add("dd_fsync", "dd bs=1M conv=fsync", mib * MiB) : nullptr;
        Measurement *sv0 = want("save") ? &res.add("save_nofsync", "save, 1 rank (no fsync)", s.total) : nullptr;
        Measurement *sv1 = want("save") ? &res.add("save_fsync", "save, 1 rank (fsync)", s.total) : nullptr;
        // One untimed save first: the first write of a process pays one-time costs that would
        // otherwise land on whichever measurement happens to come first.
        save_ranks(s, single, W + "warmup", plain);
        ::sync();
        remove_tree(W + "warmup");
        for (int r = 0; r < o.reps; ++r) {
            progress("writes (dd, save)", r, o.reps);
            if (dd0) {
                ::sync();
                dd0->run([&] { return run_dd(W + "dd.bin", mib, false); });
                remove_tree(W + "dd.bin");
            }
            if (sv0) {
                ::sync();
                sv0->run([&] { return save_ranks(s, single, W + "ckpt-save", plain); });
                remove_tree(W + "ckpt-save");
            }
            if (dd1) {
                ::sync();
                dd1->run([&] { return run_dd(W + "dd.bin", mib, true); });
                remove_tree(W + "dd.bin");
            }
            if (sv1) {
                ::sync();
                SaveConfig c = plain;
                c.flags = SHARDPOINT_SAVE_FSYNC;
                sv1->run([&] { return save_ranks(s, single, W + "ckpt-save", c); });
                remove_tree(W + "ckpt-save");
            }
        }
        ::sync();
    }

    // Warm-cache reads: plain read() of the same bytes, and loads of a 1-rank checkpoint.
    if (want("baseline") || want("load")) {
        Measurement *rd = want("baseline") ? &res.add("read_warm", "plain read() loop, warm cache", s.total) : nullptr;
        Measurement *rdf = want("baseline") ? &res.add("read_fresh", "plain read() into fresh memory", s.total) : nullptr;
        Measurement *ld = want("load") ? &res.add("load_warm", "load, 1 rank, warm cache", s.total) : nullptr;
        Measurement *ldn = want("load") ? &res.add("load_noverify", "load, 1 rank, warm, no CRC check", s.total) : nullptr;
        Measurement *ldf = want("load") ? &res.add("load_fresh", "load, 1 rank, warm, into fresh memory", s.total) : nullptr;
        const std::string file = W + "state.bin", ckpt = W + "ckpt-load";
        if (rd) write_state_file(s, state.base, file);
        if (ld) save_ranks(s, single, ckpt, plain);
        if (rd) read_file(file, dst.base, s.total);  // make sure every page is cached
        if (ld) load_ranks(s, single_req, ckpt, 0, o.threads);
        std::memset(dst.base, 0, dst.length);
        for (int r = 0; r < o.load_reps; ++r) {
            progress("warm reads (read(), load)", r, o.load_reps);
            if (rd) rd->run([&] { return read_file(file, dst.base, s.total); });
            if (ld) {
                ld->run([&] { return load_ranks(s, single_req, ckpt, 0, o.threads); });
                if (r == 0 && !same_as_state(s, state.base, dst.base)) die("warm load returned wrong bytes");
                ldn->run([&] { return load_ranks(s, single_req, ckpt, SHARDPOINT_LOAD_NO_VERIFY, o.threads); });
            }
            // Fresh memory: what a caller pays who loads into newly allocated tensors.
            if (rdf || ldf) {
                Arena fresh(s.span);
                if (rdf) rdf->run([&] { return read_file(file, fresh.base, s.total); });
            }
            if (ldf) {
                Arena fresh(s.span);
                std::vector<std::vector<Request>> q(1);
                for (size_t i = 0; i < s.spec.size(); ++i) q[0].push_back(Request{i, whole(s.spec[i]), fresh.base + s.offset[i]});
                ldf->run([&] { return load_ranks(s, q, ckpt, 0, o.threads); });
            }
        }
        remove_tree(file);
        remove_tree(ckpt);
    }

    // Cold loads: the checkpoint's files are evicted from the page cache before every rep, next to
    // a dd iflag=direct of the same bytes in one file (the disk's sequential read limit).
    if (want("cold")) {
        Measurement &dr = res.add("read_direct", "dd iflag=direct bs=4M (cold disk read)", s.total);
        Measurement &lc = res.add("load_cold", "load, 1 rank, cold cache", s.total);
        const std::string file = W + "state-cold.bin", ckpt = W + "ckpt-cold";
        write_state_file(s, state.base, file);
        save_ranks(s, single, ckpt, plain);
        std::string how;
        for (int r = 0; r < o.reps; ++r) {
            progress("cold reads (dd iflag=direct, load)", r, o.reps);
            how = drop_page_cache({file, ckpt});
            dr.run([&] { return run_dd_read_direct(file); });
            std::memset(dst.base, 0, dst.length);
            drop_page_cache({file, ckpt});
            lc.run([&] { return load_ranks(s, single_req, ckpt, 0, o.threads); });
            if (r == 0 && !same_as_state(s, state.base, dst.base)) die("cold load returned wrong bytes");
        }
        res.notes["cache_drop"] = how;
        remove_tree(file);
        remove_tree(ckpt);
    }

    // Resharding: 4 ranks save with rows / cols / 2x2 blocks / replicated shardings, 3 ranks load
    // row-sharded; next to 3 ranks loading a checkpoint that 3 ranks saved in the same layout.
    if (want("reshard")) {
        RankChunks rc = plan_chunks(s, saved_box4, 4, false);
        Arena own(rc.own_bytes);
        place_chunks(s, rc, state.base, own.base, false);
        Measurement &sv4 = res.add("save_sharded4", "save, 4 ranks sharded (no fsync)", s.total);
        const std::string ck4 = W + "ckpt-4", ck3 = W + "ckpt-3";
        for (int r = 0; r < o.reps; ++r) {
            progress("4-rank saves", r, o.reps);
            remove_tree(ck4);
            ::sync();
            sv4.run([&] { return save_ranks(s, rc.ranks, ck4, plain); });
        }
        RankChunks rc3 = plan_chunks(s, [](const TensorSpec &t, int r) { return rows_layout(t, r, 3); }, 3, false);
        place_chunks(s, rc3, state.base, nullptr, false);
        save_ranks(s, rc3.ranks, ck3, plain);
        ::sync();
        auto req3 = row_requests(s, 3, dst.base);
        Measurement &lr = res.add("load_resharded", "load, 3 ranks from the 4-rank save", s.total);
        Measurement &lm = res.add("load_matched", "load, 3 ranks from a 3-rank save", s.total);
        load_ranks(s, req3, ck4, 0, o.threads);  // warm the cache
        load_ranks(s, req3, ck3, 0, o.threads);
        for (int r = 0; r < o.load_reps; ++r) {
            progress("3-rank loads", r, o.load_reps);
            std::memset(dst.base, 0, dst.length);
            lr.run([&] { return load_ranks(s, req3, ck4, 0, o.threads); });
            if (r == 0 && !same_as_state(s, state.base, dst.base)) die("resharded load returned wrong bytes");
            std::memset(dst.base, 0, dst.length);
            lm.run([&] { return load_ranks(s, req3, ck3, 0, o.threads); });
            if (r == 0 && !same_as_state(s, state.base, dst.base)) die("matched load returned wrong bytes");
        }
        remove_tree(ck4);
        remove_tree(ck3);
    }

    if (want("compress")) {
        Measurement &sc = res.add("save_compressed", "save, 1 rank, zstd blocks level " + std::to_string(o.level) + " (no fsync)", s.total);
        SaveConfig c = plain;
        c.level = o.level;
        const std::string ck = W + "ckpt-z";
        for (int r = 0; r < o.compress_reps; ++r) {
            progress("compressed saves", r, o.compress_reps);
            remove_tree(ck);
            ::sync();
            sc.run([&] { return save_ranks(s, single, ck, c); });
        }
        {
            sp::Reader reader(ck);
            shardpoint_storage_info info;
            sp::check(shardpoint_reader_storage_info(reader.get(), &info));
            res.extra["compression_ratio"] = double(s.total) / double(info.total_stored_bytes);
        }
        Measurement &lz = res.add("load_compressed", "load, 1 rank, compressed, warm", s.total);
        std::memset(dst.base, 0, dst.length);
        lz.run([&] { return load_ranks(s, single_req, ck, 0, o.threads); });
        if (!same_as_state(s, state.base, dst.base)) die("compressed load returned wrong bytes");
        remove_tree(ck);
        ::sync();
    }
    // Asynchronous save (durable): how long the caller is blocked (until commit_async returns)
    // and how long until the checkpoint is committed, against a synchronous durable save and one
    // memcpy of the state into prefaulted memory (the least a copy-then-write design can block).
    if (want("async")) {
        Measurement &mc = res.add("memcpy_state", "memcpy of the state (prefaulted target)", s.total);
        Measurement &sync_ref = res.add("async_sync_ref", "save, 1 rank (fsync), synchronous", s.total);
        Measurement &blocked = res.add("async_blocked", "async save: caller blocked", s.total);
        Measurement &until = res.add("async_total", "async save: until committed (fsync)", s.total);
        double t0 = now();
        Arena copy(s.span);
        std::memset(copy.base, 0, copy.length);
        sp::Staging staging(s.total + 64 * s.spec.size());
        res.extra["staging_setup_s"] = now() - t0;
        shardpoint_save_options so = SHARDPOINT_SAVE_OPTIONS_INIT;
        so.io_threads = o.threads;
        const std::string ck = W + "ckpt-async";
        for (int r = 0; r < o.reps; ++r) {
            progress("async saves", r, o.reps);
            mc.run([&] {
                double m0 = now();
                std::memcpy(copy.base, state.base, s.span);
                return now() - m0;
            });
            remove_tree(ck);
            ::sync();
            SaveConfig durable = plain;
            durable.flags = SHARDPOINT_SAVE_FSYNC;
            sync_ref.run([&] { return save_ranks(s, single, ck, durable); });
            remove_tree(ck);
            ::sync();
            double blocked_s = 0;
            until.run([&] {
                double a0 = now();
                sp::Save save(ck, nullptr, &so);
                for (const Chunk &c : single[0]) add_chunk(save, s.spec[c.entry], c);
                save.commit_async(staging);
                blocked_s = now() - a0;
                save.wait();
                return now() - a0;
            });
            blocked.seconds.push_back(blocked_s);
            blocked.cpu.push_back(until.cpu.back());
            blocked.read_bytes.push_back(0);
        }
        {
            std::vector<std::vector<Request>> q(1);
            for (size_t i = 0; i < s.spec.size(); ++i) q[0].push_back(Request{i, whole(s.spec[i]), dst.base + s.offset[i]});
            std::memset(dst.base, 0, dst.length);
            load_ranks(s, q, ck, 0, o.threads);
            if (!same_as_state(s, state.base, dst.base)) die("async save stored wrong bytes");
        }
        remove_tree(ck);
        ::sync();
    }
    if (want("rss")) {
        for (const char *mode : {"plain", "plain-fsync", "sharded4", "compressed"}) {
            progress((std::string("peak RSS child: ") + mode).c_str(), 0, 1);
            res.rss.push_back(run_rss_child(o, mode, W + "ckpt-rss-" + mode));
            remove_tree(W + "ckpt-rss-" + mode);
        }
    }
    if (::isatty(2)) std::fprintf(stderr, "%70s\r", "");

    // ---- report
    std::printf("%-46s %9s %8s   %-18s %8s  %s\n", "measurement", "median s", "GB/s", "[min .. max GB/s]", "CPU s/GB",
                "read/delivered");
    for (auto &m : res.ms) {
        char range[48];
        std::snprintf(range, sizeof range, "[%.3f .. %.3f]", m.min_gbps(), m.max_gbps());
        std::printf("%-46s %9.3f %8.3f   %-18s %8.3f", m.label.c_str(), m.median(), m.gbps(), range, m.cpu_per_gb());
        if (m.amplification() > 0) std::printf("  %.3f", m.amplification());
        std::printf("\n");
    }
    if (res.extra.count("compression_ratio")) std::printf("compression ratio (raw / stored): %.3f\n", res.extra["compression_ratio"]);
    if (res.notes.count("cache_drop"))
        std::printf("cold lines: page cache dropped with %s before every rep\n", res.notes["cache_drop"].c_str());
    const double load_after = load_average();
    std::printf("(GB = 1e9 bytes; the load_compressed line is a single run; load average %.2f before, %.2f after)\n\n",
                load_before, load_after);
    res.extra["loadavg_before"] = load_before;
    res.extra["loadavg_after"] = load_after;

    struct Verdict {
        std::string name;
        double ratio, needed;
        bool pass;
    };
    std::vector<Verdict> verdicts;
    std::printf("%-52s %8s %9s   %s\n", "target", "ratio", "needed", "result");
    for (auto &t : targets) {
        Measurement *a = res.find(t.num), *b = res.find(t.den);
        if (!a || !b) {
            std::printf("%-52s %8s %9s   %s\n", t.name.c_str(), "n/a", "", "not measured");
            continue;
        }
        double ratio = a->gbps() / b->gbps();
        bool pass = ratio >= t.needed;
        verdicts.push_back({t.name, ratio, t.needed, pass});
        std::printf("%-52s %8.3f %9s   %s\n", t.name.c_str(), ratio, (">= " + std::to_string(t.needed).substr(0, 4)).c_str(),
                    pass ? "PASS" : "FAIL");
    }
    for (auto &r : res.rss) {
        std::string name = "peak RSS during save (" + r.mode + ")";
        double mib = double(r.overhead()) / MiB;
        bool pass = r.hwm <= r.rss_before + rss_allowance;
        verdicts.push_back({name, mib, 64, pass});
        std::printf("%-52s %6.1f MiB over the state  (<= 64 MiB)   %s%s\n", name.c_str(), mib, pass ? "PASS" : "FAIL",
                    r.reset_ok ? "" : " (peak not reset: includes generation)");
    }
    std::printf("\n%-52s %8s\n", "other ratios", "ratio");
    for (auto &t : informative) {
        Measurement *a = res.find(t.num), *b = res.find(t.den);
        if (a && b) std::printf("%-52s %8.3f\n", t.name.c_str(), a->gbps() / b->gbps());
    }
    for (auto &r : res.rss)
        std::printf("peak RSS (%s): %.1f MiB = state %.1f MiB + %.1f MiB (RSS before save %.1f MiB)\n", r.mode.c_str(),
                    double(r.hwm) / MiB, double(r.state_bytes) / MiB, (double(r.hwm) - double(r.state_bytes)) / MiB,
                    double(r.rss_before) / MiB);

    if (!o.json.empty()) {
        FILE *f = std::fopen(o.json.c_str(), "w");
        if (!f) die("cannot write " + o.json);
        std::fprintf(f, "{\n  \"tool\": \"shardpoint_bench\",\n  \"version\": \"%s\",\n  \"state_bytes\": %" PRIu64
                        ",\n  \"entries\": %zu,\n  \"reps\": %d,\n  \"load_reps\": %d,\n  \"dir\": \"%s\",\n  \"fs\": \"%s\",\n  \"cores\": %u,\n",
                     shardpoint_version_string(), s.total, s.spec.size(), o.reps, o.load_reps, json_escape(work_dir).c_str(),
                     fs_type(work_dir).c_str(), cores);
        std::fprintf(f, "  \"extra\": {");
        bool first = true;
        for (auto &kv : res.extra) {
            std::fprintf(f, "%s\"%s\": %.6g", first ? "" : ", ", kv.first.c_str(), kv.second);
            first = false;
        }
        std::fprintf(f, "},\n  \"notes\": {");
        first = true;
        for (auto &kv : res.notes) {
            std::fprintf(f, "%s\"%s\": \"%s\"", first ? "" : ", ", kv.first.c_str(), json_escape(kv.second).c_str());
            first = false;
        }
        std::fprintf(f, "},\n  \"measurements\": {\n");
        for (size_t i = 0; i < res.ms.size(); ++i) {
            auto &m = res.ms[i];
            std::fprintf(f, "    \"%s\": {\"label\": \"%s\", \"bytes\": %" PRIu64 ", \"median_s\": %.6f, \"gbps\": %.6f, \"read_amplification\": %.4f, \"cpu_s_per_gb\": %.4f, \"seconds\": [",
                         m.key.c_str(), json_escape(m.label).c_str(), m.bytes, m.median(), m.gbps(), m.amplification(), m.cpu_per_gb());
            for (size_t k = 0; k < m.seconds.size(); ++k) std::fprintf(f, "%s%.6f", k ? ", " : "", m.seconds[k]);
            std::fprintf(f, "], \"cpu_seconds\": [");
            for (size_t k = 0; k < m.cpu.size(); ++k) std::fprintf(f, "%s%.6f", k ? ", " : "", m.cpu[k]);
            std::fprintf(f, "]}%s\n", i + 1 < res.ms.size() ? "," : "");
        }
        std::fprintf(f, "  },\n  \"rss\": [\n");
        for (size_t i = 0; i < res.rss.size(); ++i) {
            auto &r = res.rss[i];
            std::fprintf(f,
                         "    {\"mode\": \"%s\", \"state_bytes\": %" PRIu64 ", \"rss_before\": %" PRIu64 ", \"hwm\": %" PRIu64
                         ", \"overhead\": %" PRIu64 ", \"pass\": %s}%s\n",
                         r.mode.c_str(), r.state_bytes, r.rss_before, r.hwm, r.overhead(),
                         r.hwm <= r.rss_before + rss_allowance ? "true" : "false", i + 1 < res.rss.size() ? "," : "");
        }
        std::fprintf(f, "  ],\n  \"targets\": [\n");
        for (size_t i = 0; i < verdicts.size(); ++i)
            std::fprintf(f, "    {\"name\": \"%s\", \"value\": %.6f, \"needed\": %.6g, \"pass\": %s}%s\n",
                         json_escape(verdicts[i].name).c_str(), verdicts[i].ratio, verdicts[i].needed,
                         verdicts[i].pass ? "true" : "false", i + 1 < verdicts.size() ? "," : "");
        std::fprintf(f, "  ]\n}\n");
        std::fclose(f);
    }
    return 0;
}
