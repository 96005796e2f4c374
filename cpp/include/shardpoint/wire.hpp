// A small binary encoding for messages between ranks (plans, results, statuses). It never
// reaches disk; the disk format is the Cap'n Proto schema.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "shardpoint/error.hpp"

namespace shardpoint {

class WireWriter {
public:
    void u32(uint32_t v) { raw(&v, sizeof v); }
    void u64(uint64_t v) { raw(&v, sizeof v); }
    void i64(int64_t v) { raw(&v, sizeof v); }
    void str(const std::string &s) { u64(s.size()); raw(s.data(), s.size()); }
    void dims(const std::vector<uint64_t> &d) { u32(uint32_t(d.size())); raw(d.data(), d.size() * 8); }
    void u32s(const std::vector<uint32_t> &d) { u64(d.size()); raw(d.data(), d.size() * 4); }
    std::string take() { return std::move(out_); }

private:
    void raw(const void *p, size_t n) {
        if (n) out_.append(static_cast<const char *>(p), n);
    }
    std::string out_;
};

class WireReader {
public:
    // Owns its bytes, so reading a temporary message is safe.
    explicit WireReader(std::string bytes) : bytes_(std::move(bytes)), p_(bytes_.data()), end_(bytes_.data() + bytes_.size()) {}
    WireReader(const WireReader &) = delete;
    WireReader &operator=(const WireReader &) = delete;
    uint32_t u32() { uint32_t v = 0; raw(&v, sizeof v); return v; }
    uint64_t u64() { uint64_t v = 0; raw(&v, sizeof v); return v; }
    int64_t i64() { int64_t v = 0; raw(&v, sizeof v); return v; }
    std::string str() {
        uint64_t n = u64();
        need(n);
        std::string s(p_, n);
        p_ += n;
        return s;
    }
    std::vector<uint64_t> dims() {
        uint32_t n = u32();
        need(uint64_t(n) * 8);
        std::vector<uint64_t> d(n);
        raw(d.data(), d.size() * 8);
        return d;
    }
    std::vector<uint32_t> u32s() {
        uint64_t n = u64();
        need(n * 4);
        std::vector<uint32_t> d(n);
        raw(d.data(), d.size() * 4);
        return d;
    }
    bool done() const { return p_ == end_; }

private:
    void need(uint64_t n) const {
        if (n > uint64_t(end_ - p_)) throw Error(Code::comm, "malformed message between ranks");
    }
    void raw(void *dst, size_t n) {
        need(n);
        if (n) std::memcpy(dst, p_, n);  // an empty vector's data() may be null
        p_ += n;
    }
    std::string bytes_;
    const char *p_;
    const char *end_;
};

}  // namespace shardpoint
