// Conversion between checkpoints and safetensors files (see safetensors.hpp). The stages:
// header parsing and validation, the input's files (one file, an index, a model directory), the
// output's files (one file or a sharded model directory), and the two copy loops, which move
// tensor bytes in bounded batches of contiguous pieces.
#include "shardpoint/safetensors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <future>
#include <map>
#include <memory>
#include <set>

#include <nlohmann/json.hpp>

#include "shardpoint/checkpoint.hpp"
#include "shardpoint/checkpoint_writer.hpp"
#include "shardpoint/error.hpp"
#include "storage_io.hpp"

namespace shardpoint {

namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

constexpr uint64_t max_header_bytes = 100000000;  // the reference implementation's limit
constexpr uint64_t max_index_bytes = 100000000;
constexpr uint64_t min_buffer_bytes = 4096;
constexpr uint64_t max_numel = (1ull << 59) - 1;  // FORMAT.md 3, rule 10
const char single_file_name[] = "model.safetensors";
const char index_file_name[] = "model.safetensors.index.json";

// --- dtypes ----------------------------------------------------------------------------------

struct DTypeName {
    DType dtype;
    const char *name;
};
const DTypeName dtype_names[] = {
    {DType::bool_, "BOOL"}, {DType::u8, "U8"},   {DType::i8, "I8"},   {DType::i16, "I16"},
    {DType::i32, "I32"},    {DType::i64, "I64"}, {DType::u16, "U16"}, {DType::u32, "U32"},
    {DType::u64, "U64"},    {DType::f16, "F16"}, {DType::bf16, "BF16"}, {DType::f32, "F32"},
    {DType::f64, "F64"},    {DType::complex64, "C64"}, {DType::f8_e4m3fn, "F8_E4M3"}, {DType::f8_e5m2, "F8_E5M2"},
};
// safetensors dtypes that shardpoint has no equal for (sub-byte floats, FNUZ and E8M0 variants).
const char *const foreign_dtypes[] = {"F4", "F6_E2M3", "F6_E3M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ"};

int32_t dtype_of_safetensors(const std::string &name) {
    for (const DTypeName &d : dtype_names)
        if (name == d.name) return int32_t(d.dtype);
    return -1;
}

// --- small helpers ---------------------------------------------------------------------------

std::string in_quotes(const std::string &s) { return "'" + s + "'"; }

[[noreturn]] void bad_file(const std::string &path, const std::string &why) {
    throw Error(Code::format, "safetensors file " + in_quotes(path) + ": " + why);
}

[[noreturn]] void bad_index(const std::string &path, const std::string &why) {
    throw Error(Code::format, "safetensors index " + in_quotes(path) + ": " + why);
}

std::string offsets_text(uint64_t begin, uint64_t end) {
    return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

bool ends_with(const std::string &s, const std::string &suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string parent_of(const std::string &path) {
    size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

bool path_exists(const std::string &path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0;
}

bool is_directory(const std::string &path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_plain_file_name(const std::string &name) {
    return !name.empty() && name != "." && name != ".." && name.find_first_of(std::string("/\\\0", 3)) == std::string::npos;
}

// model-00001-of-00003.safetensors: the names of a sharded model's files.
bool is_shard_file_name(const std::string &name) {
    unsigned k = 0, n = 0;
    int end = 0;
    if (std::sscanf(name.c_str(), "model-%5u-of-%5u.safetensors%n", &k, &n, &end) != 2) return false;
    return size_t(end) == name.size() && k >= 1 && k <= n;
}

std::string shard_file_name(size_t k, size_t n) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k, n);
    return name;
}

uint64_t read_le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

void write_le64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = (unsigned char)(v >> (8 * i));
}

// Parses JSON text, refusing duplicate keys in any object (the spec disallows them; a parser that
// keeps the last one would hide which tensor the file meant). nlohmann's message on failure.
json parse_json_strictly(const std::string &text, std::string &duplicate) {
    std::vector<std::set<std::string>> open_objects;
    auto check = [&](int, json::parse_event_t event, json &parsed) {
        if (event == json::parse_event_t::object_start) open_objects.emplace_back();
        else if (event == json::parse_event_t::object_end) open_objects.pop_back();
        else if (event == json::parse_event_t::key && !open_objects.back().insert(parsed.get<std::string>()).second &&
                 duplicate.empty())
            duplicate = parsed.get<std::string>();
        return true;
    };
    return json::parse(text, check);
}

uint64_t checked_nbytes(const Dims &shape, uint32_t itemsize, bool &overflow) {
    uint64_t numel = 1;
    overflow = false;
    for (uint64_t d : shape) {
        if (d > max_numel) overflow = true;
        if (d != 0 && numel > max_numel / d) overflow = true;
        numel = overflow ? 0 : numel * d;
    }
    if (numel > max_numel) overflow = true;
    return overflow ? 0 : numel * itemsize;
}

// --- reading one tensor's description ----------------------------------------------------------

SafetensorsTensor parse_tensor(const std::string &name, const json &value, const std::string &path) {
    const std::string what = "tensor " + in_quotes(name);
    if (!value.is_object()) bad_file(path, what + " is not described by a JSON object");
    auto dtype = value.find("dtype");
    auto shape = value.find("shape");
    auto offsets = value.find("data_offsets");
    if (dtype == value.end() || !dtype->is_string()) bad_file(path, what + " has no \"dtype\" string");
    if (shape == value.end() || !shape->is_array()) bad_file(path, what + " has no \"shape\" array");
    if (offsets == value.end() || !offsets->is_array()) bad_file(path, what + " has no \"data_offsets\" array");

    SafetensorsTensor t;
    t.name = name;
    const std::string dtype_name = dtype->get<std::string>();
    int32_t dt = dtype_of_safetensors(dtype_name);
    if (dt < 0) {
        bool foreign = std::find(std::begin(foreign_dtypes), std::end(foreign_dtypes), dtype_name) != std::end(foreign_dtypes);
        throw Error(Code::dtype, "safetensors file " + in_quotes(path) + ": " + what + " has dtype " + in_quotes(dtype_name) +
                                     (foreign ? ", which shardpoint has no dtype for" : ", which is not a safetensors dtype"));
    }
    t.dtype = DType(dt);
    if (shape->size() > 32)
        throw Error(Code::shape, "safetensors file " + in_quotes(path) + ": " + what + " has " + std::to_string(shape->size()) +
                                     " dimensions; a checkpoint holds at most 32");
    for (const json &d : *shape) {
        if (!d.is_number_unsigned()) bad_file(path, what + ": its shape holds " + d.dump() + ", not a whole number");
        t.shape.push_back(d.get<uint64_t>());
    }
    if (offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned())
        bad_file(path, what + ": \"data_offsets\" must be two whole numbers, not " + offsets->dump());
    t.begin = (*offsets)[0].get<uint64_t>();
    t.end = (*offsets)[1].get<uint64_t>();
    if (t.end < t.begin) bad_file(path, what + ": data_offsets " + offsets_text(t.begin, t.end) + " end before they begin");
    bool overflow = false;
    uint64_t nbytes = checked_nbytes(t.shape, dtype_size(dt), overflow);
    if (overflow) throw Error(Code::shape, "safetensors file " + in_quotes(path) + ": " + what + " is too large for a checkpoint");
    if (t.end - t.begin != nbytes)
        bad_file(path, what + ": data_offsets " + offsets_text(t.begin, t.end) + " hold " + std::to_string(t.end - t.begin) +
                           " bytes, but its dtype " + dtype_name + " and shape need " + std::to_string(nbytes));
    return t;
}

}  // namespace

// --- public helpers ----------------------------------------------------------------------------

const char *safetensors_dtype_name(DType dtype) {
    for (const DTypeName &d : dtype_names)
        if (d.dtype == dtype) return d.name;
    return nullptr;
}

uint64_t parse_size(const std::string &text) {
    auto invalid = [&] {
        throw Error(Code::invalid_argument, "not a size: " + in_quotes(text) +
                                                " (want a whole number with an optional unit: 5GB, 500MB, 64KiB, 4096)");
    };
    size_t i = 0;
    uint64_t value = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
        uint64_t digit = uint64_t(text[i++] - '0');
        if (value > (UINT64_MAX - digit) / 10) invalid();
        value = value * 10 + digit;
    }
    if (i == 0) invalid();
    while (i < text.size() && text[i] == ' ') ++i;
    std::string unit;
    for (; i < text.size(); ++i) unit += char(std::tolower((unsigned char)text[i]));
    static const std::pair<const char *, uint64_t> units[] = {
        {"", 1},          {"b", 1},          {"kb", 1000},         {"mb", 1000000},          {"gb", 1000000000},
        {"tb", 1000000000000}, {"kib", 1ull << 10}, {"mib", 1ull << 20}, {"gib", 1ull << 30}, {"tib", 1ull << 40},
    };
    for (const auto &u : units)
        if (unit == u.first) {
            if (value > UINT64_MAX / u.second) invalid();
            return value * u.second;
        }
    invalid();
    return 0;
}

std::vector<Box> contiguous_pieces(const Dims &shape, uint64_t itemsize, uint64_t max_bytes) {
    const size_t ndim = shape.size();
    const uint64_t numel = product(shape);
    require(itemsize >= 1 && max_bytes >= itemsize, Code::invalid_argument, "pieces smaller than one element");
    if (numel == 0 || numel <= max_bytes / itemsize) return {Box{Dims(ndim, 0), shape}};
    // The first dimension d whose rows (one index of d, all of the dimensions after it) fit:
    // pieces are runs of rows of d, at every index of the dimensions before it.
    size_t d = 0;
    uint64_t row_bytes = numel * itemsize;
    for (; d < ndim; ++d) {
        row_bytes /= shape[d];
        if (row_bytes <= max_bytes) break;
    }
    const uint64_t rows_per_piece = max_bytes / row_bytes;
    std::vector<Box> pieces;
    Dims prefix(d, 0);
    for (;;) {
        for (uint64_t i = 0; i < shape[d]; i += rows_per_piece) {
            Box b;
            b.offsets = prefix;
            b.offsets.push_back(i);
            b.offsets.resize(ndim, 0);
            b.sizes.assign(d, 1);
            b.sizes.push_back(std::min(rows_per_piece, shape[d] - i));
            b.sizes.insert(b.sizes.end(), shape.begin() + long(d) + 1, shape.end());
            pieces.push_back(std::move(b));
        }
        // The next index of the dimensions before d, in C order.
        size_t k = d;
        for (;;) {
            if (k == 0) return pieces;
            --k;
            if (++prefix[k] < shape[k]) break;
            prefix[k] = 0;
        }
    }
}

SafetensorsHeader read_safetensors_header(int fd, uint64_t file_size, const std::string &path) {
    if (file_size < 8)
        bad_file(path, "truncated: " + std::to_string(file_size) + " bytes, too short for the 8-byte header length");
    unsigned char length_bytes[8];
    io::pread_full(fd, length_bytes, 8, 0, path);
    const uint64_t header_length = read_le64(length_bytes);
    if (header_length > max_header_bytes)
        bad_file(path, "the header length " + std::to_string(header_length) + " exceeds safetensors' limit of " +
                           std::to_string(max_header_bytes) + " bytes");
    if (header_length > file_size - 8)
        bad_file(path, "truncated: the header length " + std::to_string(header_length) + " goes beyond the end of the file (" +
                           std::to_string(file_size) + " bytes)");
    std::string text(size_t(header_length), '\0');
    io::pread_full(fd, &text[0], header_length, 8, path);

    json doc;
    std::string duplicate;
    try {
        doc = parse_json_strictly(text, duplicate);
    } catch (const json::exception &e) {
        bad_file(path, std::string("the header is not valid JSON: ") + e.what());
    }
    if (!duplicate.empty()) bad_file(path, "the header has the key " + in_quotes(duplicate) + " twice");
    if (!doc.is_object()) bad_file(path, "the header is not a JSON object");

    SafetensorsHeader header;
    header.data_start = 8 + header_length;
    for (auto it = doc.begin(); it != doc.end(); ++it) {
        if (it.key() != "__metadata__") {
            header.tensors.push_back(parse_tensor(it.key(), it.value(), path));
            continue;
        }
        if (!it.value().is_object()) bad_file(path, "__metadata__ is not a JSON object");
        for (auto kv = it.value().begin(); kv != it.value().end(); ++kv) {
            if (!kv.value().is_string()) bad_file(path, "__metadata__ " + in_quotes(kv.key()) + " is not a string");
            header.metadata.emplace_back(kv.key(), kv.value().get<std::string>());
        }
    }

    // The data buffer: every byte belongs to exactly one tensor (no overlap, no gap, no tail).
    std::stable_sort(header.tensors.begin(), header.tensors.end(), [](const SafetensorsTensor &a, const SafetensorsTensor &b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    const uint64_t data_bytes = file_size - header.data_start;
    uint64_t covered = 0;
    const SafetensorsTensor *previous = nullptr;
    for (const SafetensorsTensor &t : header.tensors) {
        if (t.begin < covered)
            bad_file(path, "tensor " + in_quotes(t.name) + " (data_offsets " + offsets_text(t.begin, t.end) + ") overlaps tensor " +
                               in_quotes(previous->name) + " (" + offsets_text(previous->begin, previous->end) + ")");
        if (t.begin > covered)
            bad_file(path, "the " + std::to_string(t.begin - covered) + " data bytes before tensor " + in_quotes(t.name) +
                               " (data_offsets " + offsets_text(t.begin, t.end) + ") belong to no tensor");
        if (t.end > data_bytes)
            bad_file(path, "truncated: tensor " + in_quotes(t.name) + " (data_offsets " + offsets_text(t.begin, t.end) +
                               ") ends beyond the " + std::to_string(data_bytes) + " data bytes of the file");
        covered = t.end;
        previous = &t;
    }
    if (covered < data_bytes)
        bad_file(path, "the last " + std::to_string(data_bytes - covered) + " bytes of the file belong to no tensor");
    for (SafetensorsTensor &t : header.tensors) {
        t.begin += header.data_start;
        t.end += header.data_start;
    }
    return header;
}

namespace {

// --- the input: one file, or the files of an index ---------------------------------------------

struct Source {
    std::string path;
    uint64_t size = 0;
    SafetensorsHeader header;
};

// Opens a file for reading: its descriptor, after checking it is a regular file.
int open_regular_file(const std::string &path, uint64_t &size, const char *what) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw_errno(errno == ENOENT ? Code::not_found : Code::io, std::string("open ") + what + " " + in_quotes(path), errno);
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Error(Code::invalid_argument, std::string(what) + " " + in_quotes(path) + " is not a regular file");
    }
    size = uint64_t(st.st_size);
    return fd;
}

Source read_source(const std::string &path) {
    Source s;
    s.path = path;
    io::FileDescriptor fd(open_regular_file(path, s.size, "safetensors file"));
    s.header = read_safetensors_header(fd.get(), s.size, path);
    return s;
}

std::vector<Source> read_index(const std::string &path) {
    uint64_t size = 0;
    io::FileDescriptor fd(open_regular_file(path, size, "safetensors index"));
    if (size > max_index_bytes) bad_index(path, "larger than " + std::to_string(max_index_bytes) + " bytes");
    std::string text(size_t(size), '\0');
    if (size) io::pread_full(fd.get(), &text[0], size, 0, path);
    json doc;
    std::string duplicate;
    try {
        doc = parse_json_strictly(text, duplicate);
    } catch (const json::exception &e) {
        bad_index(path, std::string("not valid JSON: ") + e.what());
    }
    if (!duplicate.empty()) bad_index(path, "the key " + in_quotes(duplicate) + " appears twice");
    if (!doc.is_object() || !doc.contains("weight_map") || !doc["weight_map"].is_object())
        bad_index(path, "no \"weight_map\" object");

    std::map<std::string, std::string> file_of;  // tensor -> file, as the index says
    std::set<std::string> files;
    for (auto it = doc["weight_map"].begin(); it != doc["weight_map"].end(); ++it) {
        if (!it.value().is_string()) bad_index(path, "the weight_map entry of " + in_quotes(it.key()) + " is not a file name");
        const std::string file = it.value().get<std::string>();
        if (!is_plain_file_name(file))
            throw Error(Code::path, "safetensors index " + in_quotes(path) + ": the weight_map names " + in_quotes(file) +
                                        ", which is not a file beside the index");
        file_of[it.key()] = file;
        files.insert(file);
    }
    const std::string dir = parent_of(path);
    std::vector<Source> sources;
    size_t found = 0;
    for (const std::string &file : files) {
        sources.push_back(read_source(io::join(dir, file)));
        for (const SafetensorsTensor &t : sources.back().header.tensors) {
            auto it = file_of.find(t.name);
            if (it == file_of.end())
                bad_index(path, "tensor " + in_quotes(t.name) + " of " + in_quotes(file) + " is not in the weight_map");
            if (it->second != file)
                bad_index(path, "tensor " + in_quotes(t.name) + " is in " + in_quotes(file) + ", but the weight_map puts it in " +
                                    in_quotes(it->second));
            ++found;
        }
    }
    if (found != file_of.size()) {
        std::set<std::string> present;
        for (const Source &s : sources)
            for (const SafetensorsTensor &t : s.header.tensors) present.insert(t.name);
        for (const auto &kv : file_of)
            if (!present.count(kv.first))
                bad_index(path, "the weight_map puts tensor " + in_quotes(kv.first) + " in " + in_quotes(kv.second) +
                                    ", which does not hold it");
    }
    return sources;
}

// A file, an index (*.json), or a model directory (its model.safetensors, else its index).
std::vector<Source> open_sources(const std::string &in_path) {
    struct stat st;
    if (::stat(in_path.c_str(), &st) != 0)
        throw_errno(errno == ENOENT ? Code::not_found : Code::io, "safetensors input " + in_quotes(in_path), errno);
    if (S_ISDIR(st.st_mode)) {
        const std::string single = io::join(in_path, single_file_name), index = io::join(in_path, index_file_name);
        if (path_exists(single)) return {read_source(single)};
        if (path_exists(index)) return read_index(index);
        throw Error(Code::not_found,
                    "directory " + in_quotes(in_path) + " holds neither " + single_file_name + " nor " + index_file_name);
    }
    if (ends_with(in_path, ".json")) return read_index(in_path);
    return {read_source(in_path)};
}

// --- output helpers ----------------------------------------------------------------------------

// The missing directories of a path, created on request and removed again (while empty) unless
// kept: a failed conversion leaves no directory it made.
class CreatedDirectories {
public:
    explicit CreatedDirectories(std::string path) : path_(std::move(path)) {}
    CreatedDirectories(const CreatedDirectories &) = delete;
    CreatedDirectories &operator=(const CreatedDirectories &) = delete;
    ~CreatedDirectories() {
        for (auto it = created_.rbegin(); it != created_.rend(); ++it) ::rmdir(it->c_str());
    }
    void create() {
        require(!path_.empty(), Code::invalid_argument, "empty path");
        size_t pos = 0;
        while (pos != std::string::npos) {
            pos = path_.find('/', pos + 1);
            std::string partial = path_.substr(0, pos);
            if (partial.empty() || partial.back() == '/') continue;
            if (::mkdir(partial.c_str(), 0755) == 0) created_.push_back(partial);
            else if (errno != EEXIST) throw_errno(Code::io, "create directory " + in_quotes(partial), errno);
        }
        require(is_directory(path_), Code::io, in_quotes(path_) + " exists and is not a directory");
    }
    // The new directory entries survive a power loss once their parents are synced.
    void sync_parents() const {
        for (const std::string &d : created_) io::fsync_directory(parent_of(d));
    }
    void keep() { created_.clear(); }

private:
    std::string path_;
    std::vector<std::string> created_;
};

// Temporary files of a conversion, removed unless published.
class TemporaryFiles {
public:
    TemporaryFiles() = default;
    TemporaryFiles(const TemporaryFiles &) = delete;
    TemporaryFiles &operator=(const TemporaryFiles &) = delete;
    ~TemporaryFiles() {
        for (const auto &f : files_)
            if (!f.published) ::unlink(f.temporary.c_str());
    }
    // A new temporary name for `final_path`, in its directory.
    std::string add(const std::string &final_path) {
        files_.push_back(File{final_path, final_path + ".tmp-" + new_save_id(), false});
        return files_.back().temporary;
    }
    // Renames every file into place, in order (the last one is the commit point of a set).
    void publish_all(bool replace) {
        for (File &f : files_) {
            publish(f.temporary, f.final_path, replace);
            f.published = true;
        }
    }

private:
    struct File {
        std::string final_path, temporary;
        bool published;
    };
    static void publish(const std::string &tmp, const std::string &final_path, bool replace) {
        if (replace) {
            if (::rename(tmp.c_str(), final_path.c_str()) != 0) throw_errno(Code::io, "rename into " + in_quotes(final_path), errno);
            return;
        }
        // Never replace a file that appeared meanwhile: rename only if the name is free.
        if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_path.c_str(), RENAME_NOREPLACE) == 0) return;
        int err = errno;
        if (err == EINVAL || err == ENOSYS || err == ENOTSUP) {  // no RENAME_NOREPLACE here: link() refuses a taken name
            if (::link(tmp.c_str(), final_path.c_str()) == 0) {
                ::unlink(tmp.c_str());
                return;
            }
            err = errno;
        }
        if (err == EEXIST)
            throw Error(Code::exists, in_quotes(final_path) + " appeared during the conversion (ask for overwrite to replace it)");
        throw_errno(Code::io, "rename into " + in_quotes(final_path), err);
    }
    std::vector<File> files_;
};

// Reports tensor bytes copied, between batches, on the calling thread; cancels by throwing.
class ConvertProgress {
public:
    ConvertProgress(const ProgressCallback &callback, uint64_t total) {
        if (!callback) return;
        progress_ = std::make_unique<Progress>(callback, ProgressPhase::convert);
        progress_->start(total);
        progress_->throw_if_canceled();
    }
    void advance(uint64_t bytes) {
        if (!progress_) return;
        progress_->advance(bytes);
        progress_->poll();
        progress_->throw_if_canceled();
    }
    // done == total: the last chance to cancel, before anything is published.
    void finish() {
        if (!progress_) return;
        progress_->finish();
        progress_->throw_if_canceled();
    }

private:
    std::unique_ptr<Progress> progress_;
};

void check_buffer_size(uint64_t buffer_size) {
    require(buffer_size >= min_buffer_bytes, Code::invalid_argument,
            "buffer size " + std::to_string(buffer_size) + " is below the minimum of " + std::to_string(min_buffer_bytes) + " bytes");
}

// Uninitialized bytes: every use fills them before they are read.
std::unique_ptr<unsigned char[]> new_buffer(uint64_t bytes) {
    return std::unique_ptr<unsigned char[]>(new unsigned char[size_t(std::max<uint64_t>(bytes, 1))]);
}

// Two buffers used in turn, so that one is read while the other is written: buffer b % 2 for
// batch b. Uninitialized: every use fills its bytes before they are read.
class DoubleBuffer {
public:
    explicit DoubleBuffer(uint64_t bytes) : first_(new_buffer(bytes)), second_(new_buffer(bytes)) {}
    unsigned char *operator[](size_t batch) const { return batch % 2 ? second_.get() : first_.get(); }

private:
    std::unique_ptr<unsigned char[]> first_, second_;
};

// One contiguous run of a tensor's bytes, copied in one go.
struct Piece {
    size_t tensor;     // its tensor: an index into the copy loop's tensors (or the checkpoint's entries)
    Box box;
    uint64_t offset;   // where its bytes start in the file (safetensors side)
    uint64_t nbytes;
};

// Consecutive pieces grouped into batches of at most `limit` bytes: [first, last) index pairs.
std::vector<std::pair<size_t, size_t>> batches_of(const std::vector<Piece> &pieces, uint64_t limit,
                                                  const std::vector<size_t> &group_of) {
    std::vector<std::pair<size_t, size_t>> out;
    uint64_t bytes = 0;
    for (size_t i = 0; i < pieces.size(); ++i) {
        bool fits = !out.empty() && group_of[i] == group_of[out.back().first] && bytes + pieces[i].nbytes <= limit;
        if (!fits) {
            out.emplace_back(i, i);
            bytes = 0;
        }
        out.back().second = i + 1;
        bytes += pieces[i].nbytes;
    }
    return out;
}

uint64_t largest_batch(const std::vector<Piece> &pieces, const std::vector<std::pair<size_t, size_t>> &batches) {
    uint64_t largest = 0;
    for (const auto &b : batches) {
        uint64_t bytes = 0;
        for (size_t i = b.first; i < b.second; ++i) bytes += pieces[i].nbytes;
        largest = std::max(largest, bytes);
    }
    return largest;
}

void check_entry_name(const std::string &name, const std::string &path) {
    const std::string where = "safetensors file " + in_quotes(path) + ": tensor " + in_quotes(name);
    require(!name.empty(), Code::invalid_argument,
            "safetensors file " + in_quotes(path) + ": a tensor with an empty name cannot be a checkpoint entry");
    require(name.find('\0') == std::string::npos, Code::invalid_argument,
            where + " has a NUL in its name, which a checkpoint cannot hold");
    require(name.size() <= 4096, Code::invalid_argument, where + ": names of checkpoint entries are at most 4096 bytes");
}

}  // namespace

// --- safetensors -> checkpoint -----------------------------------------------------------------

void convert_from_safetensors(const std::string &in_path, const std::string &ckpt_dir, const ConvertOptions &options) {
    check_buffer_size(options.buffer_size);
    const std::vector<Source> sources = open_sources(in_path);

    // __metadata__ of every file (a sharded model repeats it in each): the first value of a key wins.
    std::vector<std::pair<std::string, std::string>> metadata;
    std::set<std::string> keys;
    for (const Source &s : sources)
        for (const auto &kv : s.header.metadata) {
            require(kv.first.find('\0') == std::string::npos && kv.second.find('\0') == std::string::npos,
                    Code::invalid_argument,
                    "safetensors file " + in_quotes(s.path) + ": __metadata__ " + in_quotes(kv.first) +
                        " holds a NUL, which a checkpoint cannot");
            if (keys.insert(kv.first).second) metadata.push_back(kv);
        }

    // Every tensor in pieces, in the order of the files' bytes; a piece is one checkpoint chunk.
    std::vector<const SafetensorsTensor *> tensors;
    std::vector<Piece> pieces;
    std::vector<size_t> source_of;  // per piece
    uint64_t total = 0;
    for (size_t s = 0; s < sources.size(); ++s)
        for (const SafetensorsTensor &t : sources[s].header.tensors) {
            check_entry_name(t.name, sources[s].path);
            const uint32_t itemsize = dtype_size(int32_t(t.dtype));
            uint64_t at = t.begin;
            for (Box &box : contiguous_pieces(t.shape, itemsize, options.buffer_size)) {
                const uint64_t nbytes = product(box.sizes) * itemsize;
                pieces.push_back(Piece{tensors.size(), std::move(box), at, nbytes});
                source_of.push_back(s);
                at += nbytes;
            }
            tensors.push_back(&t);
            total += t.end - t.begin;
        }

    CheckpointWriter writer(ckpt_dir, options.save);  // checks the options before anything is made
    CreatedDirectories created(ckpt_dir);
    try {
        created.create();
        writer.set_up(0, 1);
        for (const Piece &p : pieces) {
            const SafetensorsTensor &t = *tensors[p.tensor];
            writer.plan_tensor(t.name, t.dtype, t.shape, p.box.offsets, p.box.sizes);  // item i is piece i
        }
        for (const auto &kv : metadata) writer.set_metadata(kv.first, kv.second);
        const std::string final_plan = writer.global_plan({writer.local_plan()}).at(0);

        ConvertProgress progress(options.progress, total);
        const auto batches = batches_of(pieces, options.buffer_size, source_of);
        DoubleBuffer buffers(largest_batch(pieces, batches));
        // Batch b is read into buffers[b] on a thread of its own while batch b - 1 is written.
        std::unique_ptr<io::FileDescriptor> fd;  // used by one read at a time
        size_t open_source = SIZE_MAX;
        auto read_batch = [&](size_t b) {
            const auto &batch = batches[b];
            const Source &src = sources[source_of[batch.first]];
            if (source_of[batch.first] != open_source) {
                uint64_t size = 0;
                fd = std::make_unique<io::FileDescriptor>(open_regular_file(src.path, size, "safetensors file"));
                require(size == src.size, Code::format, "safetensors file " + in_quotes(src.path) + " changed during the conversion");
                open_source = source_of[batch.first];
            }
            const uint64_t start = pieces[batch.first].offset;
            const uint64_t bytes = pieces[batch.second - 1].offset + pieces[batch.second - 1].nbytes - start;
            if (bytes) io::pread_full(fd->get(), buffers[b], bytes, start, src.path);
        };
        std::future<void> reading;  // destroyed first: waits for a read still running
        if (!batches.empty()) reading = std::async(std::launch::async, read_batch, 0);
        for (size_t b = 0; b < batches.size(); ++b) {
            reading.get();
            if (b + 1 < batches.size()) reading = std::async(std::launch::async, read_batch, b + 1);
            const auto &batch = batches[b];
            const uint64_t start = pieces[batch.first].offset;
            for (size_t i = batch.first; i < batch.second; ++i) writer.bind_tensor(i, buffers[b] + (pieces[i].offset - start), {});
            writer.write_bound(final_plan);  // the buffer is free again
            progress.advance(pieces[batch.second - 1].offset + pieces[batch.second - 1].nbytes - start);
        }
        const std::string results = writer.write(final_plan);  // closes and fsyncs the data file
        progress.finish();
        writer.finish({results});
    } catch (...) {
        if (writer.committed()) {  // only the durability step after the commit failed: the checkpoint stays
            created.keep();
            throw;
        }
        writer.abort();
        writer.release_lock();
        throw;
    }
    created.keep();
}

// --- checkpoint -> safetensors -----------------------------------------------------------------

namespace {

// Where the output goes: one file, or a model directory (model.safetensors, or shards + index).
struct OutputLayout {
    std::string dir;                  // the directory the files go into
    std::vector<std::string> files;   // final paths, in writing order
    bool sharded = false;
    std::string index_path;           // sharded only
    std::vector<std::string> old;     // the model's files there now (replaced or removed)
};

// The files of the model already in model directory `dir`: model.safetensors, the index and the
// shard files it names (only names of the model-0000k-of-0000n.safetensors form).
std::vector<std::string> existing_model_files(const std::string &dir) {
    std::vector<std::string> found;
    const std::string single = io::join(dir, single_file_name), index = io::join(dir, index_file_name);
    if (path_exists(single)) found.push_back(single);
    if (!path_exists(index)) return found;
    found.push_back(index);
    try {
        uint64_t size = 0;
        io::FileDescriptor fd(open_regular_file(index, size, "safetensors index"));
        if (size > max_index_bytes) return found;
        std::string text(size_t(size), '\0');
        if (size) io::pread_full(fd.get(), &text[0], size, 0, index);
        json doc = json::parse(text, nullptr, false);
        if (!doc.is_object() || !doc.contains("weight_map") || !doc["weight_map"].is_object()) return found;
        std::set<std::string> names;
        for (const json &file : doc["weight_map"])
            if (file.is_string() && is_shard_file_name(file.get<std::string>())) names.insert(file.get<std::string>());
        for (const std::string &name : names)
            if (path_exists(io::join(dir, name))) found.push_back(io::join(dir, name));
    } catch (const Error &) {
        // An unreadable old index: it is replaced, its shards (unknown) are left alone.
    }
    return found;
}

OutputLayout plan_output(const std::string &out_path, uint64_t max_shard_size, size_t shard_count) {
    OutputLayout out;
    struct stat st;
    const bool exists = ::stat(out_path.c_str(), &st) == 0;
    const bool model_directory = (exists && S_ISDIR(st.st_mode)) || max_shard_size > 0 || ends_with(out_path, "/");
    if (!model_directory) {
        out.dir = parent_of(out_path);
        out.files = {out_path};
        if (path_exists(out_path)) out.old = {out_path};
        return out;
    }
    require(!exists || S_ISDIR(st.st_mode), Code::invalid_argument,
            in_quotes(out_path) + " is a file, but a sharded model is written into a directory");
    out.dir = out_path;
    while (out.dir.size() > 1 && out.dir.back() == '/') out.dir.pop_back();
    out.sharded = max_shard_size > 0;
    if (out.sharded) {
        for (size_t k = 1; k <= shard_count; ++k) out.files.push_back(io::join(out.dir, shard_file_name(k, shard_count)));
        out.index_path = io::join(out.dir, index_file_name);
    } else {
        out.files = {io::join(out.dir, single_file_name)};
    }
    if (exists) {
        out.old = existing_model_files(out.dir);
        // New names that are taken although the old index does not name them.
        for (const std::string &f : out.files)
            if (path_exists(f) && std::find(out.old.begin(), out.old.end(), f) == out.old.end()) out.old.push_back(f);
    }
    return out;
}

// The JSON text of one file's header, padded with spaces to a multiple of 8 bytes so that the data
// (and, with tensors ordered by decreasing element size, every tensor) is aligned.
std::string header_text(const Metadata &md, const std::vector<size_t> &entries) {
    ordered_json header = ordered_json::object();
    if (!md.user.empty()) {
        // Sorted by key, as a reader's JSON map gives them back: converting back and forth
        // reproduces the file byte for byte.
        std::vector<std::pair<std::string, std::string>> pairs = md.user;
        std::sort(pairs.begin(), pairs.end());
        ordered_json meta = ordered_json::object();
        for (const auto &kv : pairs) meta[kv.first] = kv.second;
        header["__metadata__"] = std::move(meta);
    }
    uint64_t offset = 0;
    for (size_t i : entries) {
        const EntryMeta &e = md.entries[i];
        const uint64_t end = offset + e.nbytes();
        header[e.fqn] = ordered_json{{"dtype", safetensors_dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {offset, end}}};
        offset = end;
    }
    std::string text;
    try {
        text = header.dump();
    } catch (const ordered_json::exception &) {
        // JSON strings are UTF-8: name the first name or value that is not.
        auto utf8 = [](const std::string &s) {
            try {
                (void)json(s).dump();
                return true;
            } catch (const json::exception &) {
                return false;
            }
        };
        for (const auto &kv : md.user)
            require(utf8(kv.first) && utf8(kv.second), Code::invalid_argument,
                    "metadata key " + in_quotes(kv.first) + " or its value is not UTF-8, which a safetensors header (JSON) requires");
        for (size_t i : entries)
            require(utf8(md.entries[i].fqn), Code::invalid_argument,
                    "tensor name " + in_quotes(md.entries[i].fqn) + " is not UTF-8, which a safetensors header (JSON) requires");
        throw;
    }
    text.append((8 - text.size() % 8) % 8, ' ');
    require(text.size() <= max_header_bytes, Code::range,
            "the safetensors header would be " + std::to_string(text.size()) + " bytes, above safetensors' limit of " +
                std::to_string(max_header_bytes) + " (use max_shard_size to spread the tensors over several files)");
    return text;
}

// Writes `text` as the whole content of a new file at `path` (exclusive create).
int create_exclusive(const std::string &path) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) throw_errno(Code::io, "create " + in_quotes(path), errno);
    return fd;
}

void close_or_throw(io::FileDescriptor &fd, const std::string &path) {
    if (::close(fd.release()) != 0) throw_errno(Code::io, "close " + in_quotes(path), errno);
}

}  // namespace

void convert_to_safetensors(const std::string &ckpt_dir, const std::string &out_path, const ConvertOptions &options) {
    check_buffer_size(options.buffer_size);
    require(!out_path.empty(), Code::invalid_argument, "empty output path");
    LoadOptions load_options;
    load_options.io_threads = options.io_threads;
    Reader reader(ckpt_dir, load_options);
    const Metadata &md = reader.metadata();

    // What goes out: every tensor, whole. Anything that cannot is refused before a byte is written.
    std::vector<size_t> chosen;
    for (size_t i = 0; i < md.entries.size(); ++i) {
        const EntryMeta &e = md.entries[i];
        if (e.kind == EntryKind::bytes) {
            if (options.skip_bytes) continue;
            throw Error(Code::kind, "bytes entry " + in_quotes(e.fqn) + " (" + std::to_string(e.nbytes()) +
                                        " bytes) has no safetensors form (leave bytes entries out with "
                                        "SHARDPOINT_CONVERT_SKIP_BYTES, the CLI's --skip-bytes)");
        }
        if (!safetensors_dtype_name(e.dtype))
            throw Error(Code::dtype, "tensor " + in_quotes(e.fqn) + " has dtype " + dtype_name(int32_t(e.dtype)) +
                                         ", which safetensors has no dtype for");
        if (reader.covered_numel(i) < e.numel())
            throw Error(Code::uncovered, "tensor " + in_quotes(e.fqn) + " is only partly saved (" +
                                             std::to_string(reader.covered_numel(i)) +
                                             " of " + std::to_string(e.numel()) + " elements): it cannot be written whole");
        require(e.fqn != "__metadata__", Code::invalid_argument,
                "a tensor named '__metadata__' cannot be written: safetensors reserves the name for metadata");
        chosen.push_back(i);
    }

    // Files: one, or shards filled in name order until the next tensor would pass the limit (a
    // tensor larger than the limit gets a shard of its own, as Hugging Face does).
    std::vector<std::vector<size_t>> groups(1);
    uint64_t group_bytes = 0, total = 0;
    for (size_t i : chosen) {
        const uint64_t n = md.entries[i].nbytes();
        if (options.max_shard_size && !groups.back().empty() && group_bytes + n > options.max_shard_size) {
            groups.emplace_back();
            group_bytes = 0;
        }
        groups.back().push_back(i);
        group_bytes += n;
        total += n;
    }
    for (auto &g : groups)  // within a file: decreasing element size, then name (every tensor aligned)
        std::stable_sort(g.begin(), g.end(), [&](size_t a, size_t b) {
            return dtype_size(int32_t(md.entries[a].dtype)) > dtype_size(int32_t(md.entries[b].dtype));
        });
    OutputLayout layout = plan_output(out_path, options.max_shard_size, groups.size());
    if (!layout.old.empty() && !options.overwrite)
        throw Error(Code::exists, in_quotes(layout.old.front()) + " already exists (ask for overwrite to replace it)");

    CreatedDirectories created(layout.dir);
    created.create();
    TemporaryFiles temporaries;
    ConvertProgress progress(options.progress, total);
    DoubleBuffer buffers(std::min(options.buffer_size, total));
    for (size_t g = 0; g < groups.size(); ++g) {
        const std::string header = header_text(md, groups[g]);
        const std::string tmp = temporaries.add(layout.files[g]);
        io::FileDescriptor fd(create_exclusive(tmp));
        std::string prefix(8, '\0');
        write_le64(reinterpret_cast<unsigned char *>(&prefix[0]), header.size());
        prefix += header;
        io::pwrite_full(fd.get(), prefix.data(), prefix.size(), 0, tmp);

        std::vector<Piece> pieces;
        uint64_t at = prefix.size();
        for (size_t i : groups[g]) {
            const EntryMeta &e = md.entries[i];
            const uint32_t itemsize = dtype_size(int32_t(e.dtype));
            for (Box &box : contiguous_pieces(e.shape, itemsize, options.buffer_size)) {
                const uint64_t nbytes = product(box.sizes) * itemsize;
                pieces.push_back(Piece{i, std::move(box), at, nbytes});
                at += nbytes;
            }
        }
        // Batch b is loaded into buffers[b] while batch b - 1 is written on a thread of its own.
        const auto batches = batches_of(pieces, options.buffer_size, std::vector<size_t>(pieces.size(), 0));
        std::future<void> writing;  // destroyed first: waits for a write still running
        uint64_t writing_bytes = 0;
        for (size_t b = 0; b < batches.size(); ++b) {
            const auto &batch = batches[b];
            const uint64_t start = pieces[batch.first].offset;
            LoadSession load(reader, nullptr);
            for (size_t i = batch.first; i < batch.second; ++i) {
                const EntryMeta &e = md.entries[pieces[i].tensor];
                load.add_tensor(e.fqn, e.dtype, uint32_t(e.shape.size()), pieces[i].box.offsets, pieces[i].box.sizes,
                                buffers[b] + (pieces[i].offset - start), {});
            }
            load.execute();  // reads and verifies the pieces' bytes
            if (writing.valid()) {
                writing.get();
                progress.advance(writing_bytes);
            }
            writing_bytes = pieces[batch.second - 1].offset + pieces[batch.second - 1].nbytes - start;
            unsigned char *data = buffers[b];
            const uint64_t bytes = writing_bytes;
            writing = std::async(std::launch::async, [&fd, &tmp, data, bytes, start] {
                if (bytes) io::pwrite_full(fd.get(), data, bytes, start, tmp);
            });
        }
        if (writing.valid()) {
            writing.get();
            progress.advance(writing_bytes);
        }
        if (options.fsync) io::fsync_or_throw(fd.get(), in_quotes(tmp));
        close_or_throw(fd, tmp);
    }
    if (layout.sharded) {
        ordered_json weight_map = ordered_json::object();
        std::vector<std::pair<std::string, size_t>> names;  // sorted by tensor name, as Hugging Face writes it
        for (size_t g = 0; g < groups.size(); ++g)
            for (size_t i : groups[g]) names.emplace_back(md.entries[i].fqn, g);
        std::sort(names.begin(), names.end());
        for (const auto &n : names) weight_map[n.first] = shard_file_name(n.second + 1, groups.size());
        ordered_json index = {{"metadata", {{"total_size", total}}}, {"weight_map", std::move(weight_map)}};
        const std::string text = index.dump(2) + "\n";
        const std::string tmp = temporaries.add(layout.index_path);  // published last: the commit point
        io::FileDescriptor fd(create_exclusive(tmp));
        io::pwrite_full(fd.get(), text.data(), text.size(), 0, tmp);
        if (options.fsync) io::fsync_or_throw(fd.get(), in_quotes(tmp));
        close_or_throw(fd, tmp);
    }
    progress.finish();

    temporaries.publish_all(options.overwrite);
    std::vector<std::string> written = layout.files;
    if (layout.sharded) written.push_back(layout.index_path);
    for (const std::string &f : layout.old)  // the replaced model's files that the new one does not reuse
        if (std::find(written.begin(), written.end(), f) == written.end()) ::unlink(f.c_str());
    if (options.fsync) {
        io::fsync_directory(layout.dir);
        created.sync_parents();
    }
    created.keep();
}

}  // namespace shardpoint
