// How ranks talk during collective calls: gather to rank 0, broadcast from rank 0.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace shardpoint {

class Comm {
public:
    virtual ~Comm() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    // Every rank sends `len` bytes; rank 0 receives size() * len bytes in rank order.
    virtual void gather(const void *send, uint64_t len, void *recv_on_root) = 0;
    // Rank 0's `len` bytes are copied into `buf` on every rank.
    virtual void broadcast(void *buf, uint64_t len) = 0;
};

class SingleComm final : public Comm {
public:
    int rank() const override { return 0; }
    int size() const override { return 1; }
    void gather(const void *send, uint64_t len, void *recv) override;
    void broadcast(void *, uint64_t) override {}
};

// Variable-length gather: rank 0 gets every rank's bytes, other ranks get an empty vector.
std::vector<std::string> gather_strings(Comm &comm, const std::string &mine);
// Rank 0's string on every rank.
std::string broadcast_string(Comm &comm, const std::string &on_root);

// The outcome of a collective step: every rank learns the first failure (lowest rank).
struct Status {
    int code = 0;        // 0 or a Code value
    int rank = -1;       // the failing rank
    std::string message;
};
// Gathers each rank's status at rank 0 and broadcasts the first failure (or success) to all.
Status agree_on_status(Comm &comm, const Status &mine);

}  // namespace shardpoint
