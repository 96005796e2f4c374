#include "fuzz_common.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "shardpoint.h"
#include "shardpoint/codec.hpp"

#ifndef SHARDPOINT_FUZZ_DEFAULT_POOL
#define SHARDPOINT_FUZZ_DEFAULT_POOL "pool"
#endif

namespace fuzz {

namespace {

// What one input may make the harness allocate for destinations: entries above the per-entry
// cap are only queried and verified, never loaded.
constexpr uint64_t kMaxEntryBytes = 16u << 20;
constexpr uint64_t kMaxBytesPerInput = 64u << 20;
constexpr uint64_t kMaxChunksLoaded = 64;

std::string g_workdir;

[[noreturn]] void die(const std::string &what) {
    std::fprintf(stderr, "fuzz harness: %s\n", what.c_str());
    std::abort();
}

void remove_workdir() {
    if (g_workdir.empty()) return;
    if (DIR *d = ::opendir(g_workdir.c_str())) {
        while (struct dirent *e = ::readdir(d)) {
            if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
            ::unlink((g_workdir + "/" + e->d_name).c_str());
        }
        ::closedir(d);
    }
    ::rmdir(g_workdir.c_str());
}

uint32_t get_u32(const unsigned char *p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
void put_u32(unsigned char *p, uint32_t v) { std::memcpy(p, &v, 4); }
void put_u64(unsigned char *p, uint64_t v) { std::memcpy(p, &v, 8); }

bool known_code(int code) { return (code <= 0 && code >= SHARDPOINT_ENOTDURABLE) || code == SHARDPOINT_EINTERNAL; }

// Codes that hostile bytes must never produce: a bug, a huge allocation, or a harness call the
// library considers invalid although every argument came from the reader itself.
bool forbidden(int code) {
    return !known_code(code) || code == SHARDPOINT_EINTERNAL || code == SHARDPOINT_ENOMEM || code == SHARDPOINT_EINVAL;
}

int on_problem(void *user, const shardpoint_verify_problem *p) {
    if (!p || !p->fqn || !p->file || !p->message) die("verify_each reported a problem with a NULL string");
    if (p->code >= 0 || forbidden(p->code))
        die("verify_each reported " + std::string(shardpoint_error_name(p->code)) + ": " + p->message);
    ++*static_cast<uint64_t *>(user);
    return 0;
}

// One load session of many requests: the library allocates its scratch buffers once per
// execute, so batching keeps an input cheap. Destinations are left uninitialized on purpose:
// zero-filling megabytes per input would cost more than the code under test.
class Batch {
public:
    Batch(shardpoint_reader *r, uint64_t &budget) : budget_(budget) {
        check_code(shardpoint_load_new(&load_, r, nullptr), "load_new");
    }
    ~Batch() { shardpoint_load_free(load_); }
    Batch(const Batch &) = delete;
    Batch &operator=(const Batch &) = delete;

    void tensor(const shardpoint_entry_info &e, const std::vector<uint64_t> &offsets, const std::vector<uint64_t> &sizes,
                const int64_t *strides) {
        uint64_t numel = 1;
        for (uint64_t s : sizes) numel *= s;  // inside a validated shape: cannot overflow
        uint64_t nbytes = numel * shardpoint_dtype_size(e.dtype);
        unsigned char *dst = take(nbytes);
        if (!dst) return;
        check_code(shardpoint_load_add_tensor(load_, e.fqn, e.dtype, e.ndim, e.ndim ? offsets.data() : nullptr,
                                              e.ndim ? sizes.data() : nullptr, dst, strides),
                   "load_add_tensor");
    }
    void bytes(const shardpoint_entry_info &e) {
        if (unsigned char *dst = take(e.nbytes)) check_code(shardpoint_load_add_bytes(load_, e.fqn, dst, e.nbytes), "load_add_bytes");
    }
    void execute() { check_code(shardpoint_load_execute(load_), "load_execute"); }

private:
    unsigned char *take(uint64_t nbytes) {
        if (nbytes > kMaxEntryBytes || nbytes > budget_) return nullptr;
        budget_ -= nbytes;
        buffers_.emplace_back(new unsigned char[std::max<uint64_t>(nbytes, 1)]);
        return buffers_.back().get();
    }
    shardpoint_load *load_ = nullptr;
    uint64_t &budget_;
    std::vector<std::unique_ptr<unsigned char[]>> buffers_;
};

// One batch over every entry (the library allocates its scratch buffers once per execute, and
// a compressed extent costs a 16 MiB one): whole entries (partly saved ones are refused at add
// time), each saved chunk, a box that cuts through chunks and CRC blocks (one element off every
// face), and the whole tensor into a column-major destination (the strided scatter path).
void load_all(shardpoint_reader *r, const std::vector<shardpoint_entry_info> &entries) {
    uint64_t budget = kMaxBytesPerInput;
    Batch batch(r, budget);
    for (uint64_t i = 0; i < entries.size(); ++i) {
        const auto &e = entries[i];
        if (e.kind == SHARDPOINT_ENTRY_BYTES) {
            batch.bytes(e);
            continue;
        }
        std::vector<uint64_t> zero(e.ndim, 0), shape(e.shape, e.shape + e.ndim);
        batch.tensor(e, zero, shape, nullptr);
        for (uint64_t c = 0; c < e.chunk_count && c < kMaxChunksLoaded; ++c) {
            shardpoint_chunk_info ci;
            check_code(shardpoint_reader_chunk_info(r, i, c, &ci), "chunk_info");
            if (ci.file == nullptr) die("chunk_info gave a NULL file name");
            if (e.ndim == 0) continue;
            batch.tensor(e, std::vector<uint64_t>(ci.offsets, ci.offsets + e.ndim),
                         std::vector<uint64_t>(ci.sizes, ci.sizes + e.ndim), nullptr);
        }
        if (e.ndim == 0) continue;
        std::vector<uint64_t> inner_off(e.ndim), inner_sz(e.ndim);
        for (uint32_t d = 0; d < e.ndim; ++d) {
            inner_off[d] = shape[d] > 2 ? 1 : 0;
            inner_sz[d] = shape[d] > 2 ? shape[d] - 2 : shape[d];
        }
        batch.tensor(e, inner_off, inner_sz, nullptr);
        // Only tensors small enough to load: their strides cannot overflow.
        if (e.ndim < 2 || e.numel == 0 || e.nbytes > kMaxEntryBytes) continue;
        std::vector<int64_t> strides(e.ndim);
        int64_t step = 1;
        for (uint32_t d = 0; d < e.ndim; ++d) {
            strides[d] = step;
            step *= int64_t(shape[d]);
        }
        batch.tensor(e, zero, shape, strides.data());
    }
    batch.execute();
}

}  // namespace

void check_code(int code, const char *what) {
    if (code == SHARDPOINT_OK) return;
    if (forbidden(code))
        die(std::string(what) + " returned " + shardpoint_error_name(code) + " (" + std::to_string(code) +
            ") on untrusted input: " + shardpoint_last_error());
    if (shardpoint_last_error()[0] == '\0') die(std::string(what) + " failed without a message");
}

std::string pool_dir() {
    const char *env = std::getenv("SHARDPOINT_FUZZ_POOL");
    return env && *env ? env : SHARDPOINT_FUZZ_DEFAULT_POOL;
}

std::string make_workdir() {
    std::string pool = pool_dir();
    DIR *d = ::opendir(pool.c_str());
    if (!d) die("no data pool at '" + pool + "': run fuzz_seeds first (scripts/fuzz.sh does) or set SHARDPOINT_FUZZ_POOL");
    struct stat st;
    const char *tmp = std::getenv("TMPDIR");
    std::string base = ::stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && ::access("/dev/shm", W_OK) == 0
                           ? "/dev/shm"
                           : (tmp && *tmp ? tmp : "/tmp");
    std::string tmpl = base + "/shardpoint-fuzz-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) die("mkdtemp under " + base + " failed");
    g_workdir = buf.data();
    std::atexit(remove_workdir);
    size_t copied = 0;
    while (struct dirent *e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name.size() < 4 || name.compare(name.size() - 4, 4, ".bin") != 0) continue;
        std::vector<unsigned char> bytes = read_file(pool + "/" + name);
        write_file(g_workdir + "/" + name, bytes.data(), bytes.size());
        ++copied;
    }
    ::closedir(d);
    if (copied == 0) die("the data pool '" + pool + "' holds no data files");
    return g_workdir;
}

std::vector<unsigned char> read_file(const std::string &path) {
    std::vector<unsigned char> out;
    FILE *f = std::fopen(path.c_str(), "rb");
    if (!f) die("cannot open " + path);
    unsigned char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.insert(out.end(), buf, buf + n);
    std::fclose(f);
    return out;
}

void write_file(const std::string &path, const unsigned char *data, size_t len) {
    // Write a new file and rename it into place: a reader never sees a half-written file and
    // the old inode (maybe still open elsewhere) is left intact.
    std::string tmp = path + ".fuzz-tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) die("cannot create " + tmp);
    for (size_t at = 0; at < len;) {
        ssize_t n = ::write(fd, data + at, len - at);
        if (n <= 0) die("cannot write " + tmp);
        at += size_t(n);
    }
    ::close(fd);
    if (::rename(tmp.c_str(), path.c_str()) != 0) die("cannot rename " + tmp);
}

uint32_t header_flags(const unsigned char *data, size_t len) { return len >= 16 ? get_u32(data + 12) : 0; }

void repair_header(std::vector<unsigned char> &file) {
    if (file.size() < 32) return;
    while ((file.size() - 32) % 8 != 0) file.push_back(0);
    uint64_t body = file.size() - 32;
    put_u64(file.data() + 16, body);
    put_u32(file.data() + 24, shardpoint::crc32_of(file.data() + 32, body));
    put_u32(file.data() + 28, shardpoint::crc32_of(file.data(), 28));
}

int exercise_reader(const std::string &dir, bool no_verify) {
    shardpoint_load_options opts = SHARDPOINT_LOAD_OPTIONS_INIT;
    opts.io_threads = 1;  // deterministic and cheap: one fuzzing process per core
    if (no_verify) opts.flags |= SHARDPOINT_LOAD_NO_VERIFY;
    shardpoint_reader *r = nullptr;
    int rc = shardpoint_reader_open(&r, dir.c_str(), &opts);
    if (rc != SHARDPOINT_OK) {
        if (r != nullptr) die("reader_open failed but set *out");
        check_code(rc, "reader_open");
        return rc;
    }

    shardpoint_storage_info si;
    check_code(shardpoint_reader_storage_info(r, &si), "storage_info");
    for (uint64_t i = 0; i < si.file_count; ++i) {
        shardpoint_file_info fi;
        check_code(shardpoint_reader_file_info(r, i, &fi), "file_info");
    }
    uint64_t kv = 0;
    check_code(shardpoint_reader_metadata_count(r, &kv), "metadata_count");
    for (uint64_t i = 0; i < kv; ++i) {
        const char *k = nullptr, *v = nullptr;
        check_code(shardpoint_reader_metadata_at(r, i, &k, &v), "metadata_at");
        const char *got = nullptr;
        check_code(shardpoint_reader_metadata_get(r, k, &got), "metadata_get");
    }

    uint64_t problems = 0, seen = 0;
    int vrc = shardpoint_reader_verify_each(r, on_problem, &seen, &problems);
    check_code(vrc, "verify_each");
    if (problems != seen) die("verify_each counted " + std::to_string(problems) + " problems but reported " + std::to_string(seen));
    if ((vrc == SHARDPOINT_OK) != (problems == 0)) die("verify_each's result disagrees with its problem count");
    if (problems > 0) {
        // The first-error form must fail too (checked only here: a clean verify costs a full pass).
        int first = shardpoint_reader_verify(r);
        check_code(first, "verify");
        if (first == SHARDPOINT_OK) die("verify_each found problems but verify succeeded");
    }

    uint64_t count = 0;
    check_code(shardpoint_reader_entry_count(r, &count), "entry_count");
    std::vector<shardpoint_entry_info> entries(count);
    for (uint64_t i = 0; i < count; ++i) {
        check_code(shardpoint_reader_entry_info(r, i, &entries[i]), "entry_info");
        uint64_t found = 0;
        check_code(shardpoint_reader_find(r, entries[i].fqn, &found), "find");
    }
    load_all(r, entries);
    shardpoint_reader_free(r);
    return SHARDPOINT_OK;
}

}  // namespace fuzz
